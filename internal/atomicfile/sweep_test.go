package atomicfile

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSweep: a temporary name claimed by a living writer stays; once
// released (as when its process dies) it is swept; names that are not
// this destination's temporary names always stay.
func TestSweep(t *testing.T) {
	d, path, f := create(t, false)
	dir, err := CreateDir(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Abort()
	if err := os.WriteFile(filepath.Join(dir.Name(), "inside"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	releaseFile, err := Claim(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	releaseDir, err := Claim(dir.Name())
	if err != nil {
		t.Fatal(err)
	}
	others := []string{".out.mp4.tmp-xyz", ".out.mp4.tmp-0123456789abcde", ".in.mp4.tmp-0123456789abcdef", "out.mp4.tmp-0123456789abcdef"}
	for _, name := range others {
		if err := os.WriteFile(filepath.Join(d, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if removed, err := Sweep(path); err != nil || len(removed) != 0 {
		t.Fatalf("Sweep with both claimed = %q, %v; want nothing removed", removed, err)
	}
	releaseFile()
	if removed, err := Sweep(path); err != nil || !slices.Equal(removed, []string{f.Name()}) {
		t.Fatalf("Sweep after the file's release = %q, %v; want %s", removed, err, f.Name())
	}
	releaseDir()
	if removed, err := Sweep(path); err != nil || !slices.Equal(removed, []string{dir.Name()}) {
		t.Fatalf("Sweep after the folder's release = %q, %v; want %s", removed, err, dir.Name())
	}
	for _, name := range others {
		if _, err := os.Stat(filepath.Join(d, name)); err != nil {
			t.Errorf("Sweep removed %s", name)
		}
	}
}

// TestRemoveClaimed: what this process claims is removed at once.
func TestRemoveClaimed(t *testing.T) {
	d := t.TempDir()
	dir, err := CreateDir(filepath.Join(d, "frames"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Claim(dir.Name()); err != nil {
		t.Fatal(err)
	}
	RemoveClaimed()
	if _, err := os.Stat(dir.Name()); !os.IsNotExist(err) {
		t.Errorf("%s is still there (%v)", dir.Name(), err)
	}
}
