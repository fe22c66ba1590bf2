package onnx

import (
	"errors"
	"os"
	"testing"
)

// FailHardLinks makes Save's hard links fail until t ends, as they do across
// file systems, so that its symlink fallback runs.
func FailHardLinks(t testing.TB) {
	old := linkFile
	linkFile = func(oldname, newname string) error {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: errors.New("invalid cross-device link (test)")}
	}
	t.Cleanup(func() { linkFile = old })
}
