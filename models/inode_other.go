//go:build !unix

package models

import "os"

// inodeOf is the file's inode number (0 when the platform has none).
func inodeOf(os.FileInfo) uint64 { return 0 }
