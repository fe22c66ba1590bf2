package atomicfile

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

// TestCopyDir: the files (and the files links name) are copied, byte for
// byte, into a folder made for them; sub-folders and hidden names are not;
// a file already in dst is replaced.
func TestCopyDir(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "made", "here")
	for name, text := range map[string]string{"vocab.json": "{}", "merges.txt": "a b\n", ".hidden": "x", "sub/inner": "y", "blob": "linked"} {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("blob", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := CopyDir(src, dst); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "vocab.json"), []byte(`{"a":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CopyDir(src, dst); err != nil {
		t.Fatal(err)
	}
	if got, want := testenv.DirNames(t, dst), []string{"blob", "link", "merges.txt", "vocab.json"}; !slices.Equal(got, want) {
		t.Errorf("dst holds %q, want %q", got, want)
	}
	for name, want := range map[string]string{"vocab.json": `{"a":1}`, "merges.txt": "a b\n", "link": "linked"} {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != want {
			t.Errorf("%s holds %q (%v), want %q", name, got, err, want)
		}
		if fi, err := os.Lstat(filepath.Join(dst, name)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s is not a regular file (%v)", name, err)
		}
	}
	if err := CopyDir(filepath.Join(src, "missing"), dst); err == nil {
		t.Error("copying a missing folder succeeded")
	}
}
