package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

func TestFile(t *testing.T) {
	tests := []struct {
		name      string
		existing  string // content already at the path, "" for none
		noClobber bool
		commit    bool
		wantErr   error  // from Create or Commit
		wantFinal string // content at the path afterwards, "" for no file
	}{
		{name: "commit new", commit: true, wantFinal: "new"},
		{name: "commit replaces", existing: "old", commit: true, wantFinal: "new"},
		{name: "abort leaves nothing", commit: false},
		{name: "abort keeps the old file", existing: "old", commit: false, wantFinal: "old"},
		{name: "no-clobber new", noClobber: true, commit: true, wantFinal: "new"},
		{name: "no-clobber refuses existing", existing: "old", noClobber: true, commit: true, wantErr: fs.ErrExist, wantFinal: "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.mp4")
			if tt.existing != "" {
				if err := os.WriteFile(path, []byte(tt.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := func() error {
				f, err := Create(path, 0o666, tt.noClobber)
				if err != nil {
					return err
				}
				defer f.Abort()
				if filepath.Dir(f.Name()) != dir || !strings.HasPrefix(filepath.Base(f.Name()), ".out.mp4.tmp-") {
					t.Errorf("temporary name %s, want .out.mp4.tmp-* in %s", f.Name(), dir)
				}
				if _, err := f.Write([]byte("new")); err != nil {
					return err
				}
				return end(f, tt.commit)
			}()
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			checkEnded(t, err, tt.wantErr, path, "", tt.wantFinal)
		})
	}
}

// end commits w (a *File or *Dir), or aborts it when commit is false.
func end(w interface {
	Commit() error
	Abort() error
}, commit bool) error {
	if !commit {
		return w.Abort()
	}
	return w.Commit()
}

// checkEnded checks how a write of path ended: the error against wantErr;
// the content of path (of path/inside for a folder) against want, or no
// path at all when want is ""; and that path's folder holds nothing else.
func checkEnded(t *testing.T, err, wantErr error, path, inside, want string) {
	t.Helper()
	if !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
		t.Fatalf("err = %v, want %v", err, wantErr)
	}
	got, rerr := os.ReadFile(filepath.Join(path, inside))
	switch {
	case want == "" && rerr == nil:
		t.Errorf("%s exists with %q, want nothing", path, got)
	case want != "" && string(got) != want:
		t.Errorf("%s holds %q (%v), want %q", filepath.Join(path, inside), got, rerr, want)
	}
	wantNames := []string{}
	if want != "" {
		wantNames = []string{filepath.Base(path)}
	}
	if names := testenv.DirNames(t, filepath.Dir(path)); !slices.Equal(names, wantNames) && !(len(names) == 0 && len(wantNames) == 0) {
		t.Errorf("%s holds %v, want %v", filepath.Dir(path), names, wantNames)
	}
}

// create starts a write of out.mp4 in a folder of the test's own, aborted
// when the test ends.
func create(t *testing.T, noClobber bool) (dir, path string, f *File) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "out.mp4")
	f, err := Create(path, 0o666, noClobber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Abort() })
	return dir, path, f
}

func TestNoClobberCommitRace(t *testing.T) {
	// The path appears between Create and Commit: Commit must refuse it and
	// leave the newcomer alone.
	dir, path, f := create(t, true)
	f.Write([]byte("mine"))
	if err := os.WriteFile(path, []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := f.Commit()
	if !errors.Is(err, ErrExist) {
		t.Fatalf("Commit = %v, want ErrExist", err)
	}
	if want := path + ": already exists (not replaced)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if got, _ := os.ReadFile(path); string(got) != "theirs" {
		t.Errorf("existing file now holds %q", got)
	}
	if got := testenv.DirNames(t, dir); !slices.Equal(got, []string{"out.mp4"}) {
		t.Errorf("folder holds %v, want only out.mp4", got)
	}
}

func TestCommitTwice(t *testing.T) {
	_, path, f := create(t, false)
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := f.Abort(); err != nil {
		t.Errorf("Abort after Commit = %v, want nil", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Abort after Commit removed the file: %v", err)
	}
	if err := f.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
}

func TestPermissionsLikeOSCreate(t *testing.T) {
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref")
	if err := os.WriteFile(ref, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o666); err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(ref)
	st2, _ := os.Stat(filepath.Join(dir, "a"))
	if st1.Mode() != st2.Mode() {
		t.Errorf("mode %v, os.WriteFile gives %v", st2.Mode(), st1.Mode())
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "manifest.json")
	if err := WriteFile(path, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "two" {
		t.Errorf("file holds %q, want %q", got, "two")
	}
	if got := testenv.DirNames(t, dir); !slices.Equal(got, []string{"manifest.json"}) {
		t.Errorf("folder holds %v", got)
	}
}

func TestCreateErrors(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ro := testenv.UnwritableDir(t)
	tests := []struct {
		name    string
		path    string
		wantIs  error
		wantMsg string
	}{
		{"unwritable folder", filepath.Join(ro, "out.mp4"), fs.ErrPermission,
			filepath.Join(ro, "out.mp4") + ": cannot create: folder " + ro + " is not writable"},
		{"missing folder", filepath.Join(base, "nope", "out.mp4"), fs.ErrNotExist,
			filepath.Join(base, "nope", "out.mp4") + ": cannot create: folder " + filepath.Join(base, "nope") + " does not exist"},
		{"folder is a file", filepath.Join(file, "out.mp4"), nil,
			filepath.Join(file, "out.mp4") + ": cannot create: " + file + " is not a folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, create := range []struct {
				kind string
				fn   func(string) error
			}{
				{"file", func(p string) error { _, err := Create(p, 0o666, false); return err }},
				{"dir", func(p string) error { _, err := CreateDir(p); return err }},
				{"WriteFile", func(p string) error { return WriteFile(p, []byte("x"), 0o644) }},
			} {
				err := create.fn(tt.path)
				if err == nil {
					t.Fatalf("%s: no error", create.kind)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("%s: %v is not %v", create.kind, err, tt.wantIs)
				}
				if err.Error() != tt.wantMsg {
					t.Errorf("%s: error\n got %q\nwant %q", create.kind, err, tt.wantMsg)
				}
			}
		})
	}
}

func TestDir(t *testing.T) {
	tests := []struct {
		name     string
		existing bool // a non-empty folder already at the path
		commit   bool
		wantErr  error
		wantFile string // content of path/data afterwards, "" for none
	}{
		{name: "commit", commit: true, wantFile: "new"},
		{name: "abort leaves nothing", commit: false},
		{name: "never replaces a full folder", existing: true, commit: true, wantErr: ErrExist, wantFile: "old"},
		{name: "abort keeps the old folder", existing: true, commit: false, wantFile: "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			path := filepath.Join(parent, "cache-1")
			if tt.existing {
				os.Mkdir(path, 0o755)
				os.WriteFile(filepath.Join(path, "data"), []byte("old"), 0o644)
			}
			err := func() error {
				d, err := CreateDir(path)
				if err != nil {
					return err
				}
				defer d.Abort()
				if err := os.WriteFile(filepath.Join(d.Name(), "data"), []byte("new"), 0o644); err != nil {
					return err
				}
				if err := os.Mkdir(filepath.Join(d.Name(), "sub"), 0o755); err != nil {
					return err
				}
				if err := WriteFile(filepath.Join(d.Name(), "sub", "x"), []byte("x"), 0o644); err != nil {
					return err
				}
				return end(d, tt.commit)
			}()
			checkEnded(t, err, tt.wantErr, path, "data", tt.wantFile)
		})
	}
}
