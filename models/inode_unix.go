//go:build unix

package models

import (
	"os"
	"syscall"
)

// inodeOf is the file's inode number (0 when the platform has none).
func inodeOf(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Ino)
	}
	return 0
}
