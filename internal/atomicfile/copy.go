package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
)

// CopyDir copies the files of the folder src into dst (made if missing),
// each written as WriteFile writes it: whole or not at all. Sub-folders
// and names starting with "." are left out; links are followed, as in a
// Hugging Face snapshot, whose files are links into its blobs.
func CopyDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
