package main

// Frame folders whose files the hash once ignored (00000.PNG) must key the
// cache by their content, like any other input.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// upperFolder copies the first n fixture frames into a folder as
// 00000.PNG, ...; with reverse they go in the opposite order, so that the
// two folders hold the same files under other numbers: another video.
func upperFolder(t *testing.T, dir string, n int, reverse bool) string {
	t.Helper()
	src := fixtureFrames(t, "tiny-sd15")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		j := i
		if reverse {
			j = n - 1 - i
		}
		b, err := os.ReadFile(filepath.Join(src, frameName(j, ".png")))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, frameName(i, ".PNG")), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func frameName(i int, ext string) string {
	return string([]byte{'0', '0', '0', byte('0' + i/10), byte('0' + i%10)}) + ext
}

// TestUppercaseFramesKeyTheCache: two folders of .PNG frames with the
// same count, size and prompt but other pictures get two cache entries
// (on af077e2 both hashed to the hash of nothing and shared one).
func TestUppercaseFramesKeyTheCache(t *testing.T) {
	d := t.TempDir()
	invert := func(folder string) invertResult {
		res, _ := tfJSON[invertResult](t, d, "invert", "--model", model(t, "tiny-sd15"), "--size", "32x32",
			"--inversion-steps", "2", "--steps", "2", "--cache-dir", filepath.Join(d, "cache"), "--json", folder)
		return res
	}
	a := invert(upperFolder(t, filepath.Join(d, "a"), 4, false))
	b := invert(upperFolder(t, filepath.Join(d, "b"), 4, true))
	if b.Reused || a.CacheDir == b.CacheDir {
		t.Errorf("two folders of other .PNG frames share the cache entry %s (second run reused %v)", b.CacheDir, b.Reused)
	}
	again := invert(filepath.Join(d, "a"))
	if !again.Reused || again.CacheDir != a.CacheDir {
		t.Errorf("the same .PNG folder again: reused %v in %s, want %s", again.Reused, again.CacheDir, a.CacheDir)
	}
}

// TestSizeThatCannotFit: a working size whose run needs more memory than
// the machine has is refused in one line before any work (the largest
// frame the size limits allow, at which one full-resolution attention
// matrix alone takes terabytes).
func TestSizeThatCannotFit(t *testing.T) {
	d := t.TempDir()
	r := tf(t, d, "invert", "--model", model(t, "tiny-sd15"), "--size", "4096x4096", "--inversion-steps", "2", "--steps", "2",
		"--cache-dir", filepath.Join(d, "cache"), fixtureFrames(t, "tiny-sd15"))
	line := checkErrorLine(t, r)
	if r.Code != exitUsage || !strings.Contains(line, "--size 4096x4096: a run at this size needs about") ||
		!strings.Contains(line, "more than this machine's") || !strings.Contains(line, "give a smaller --size, --batch-size or fewer --frames") {
		t.Errorf("exit %d, line %q: want a usage error saying the run cannot fit", r.Code, line)
	}
	if strings.Contains(r.Stderr, "vae encode") || strings.Contains(r.Stderr, "decode video") {
		t.Errorf("work started before the refusal:\n%s", r.Stderr)
	}
	if entries, _ := os.ReadDir(filepath.Join(d, "cache", "inversions")); len(entries) > 0 {
		t.Errorf("the refused run left %d files in the cache", len(entries))
	}
}
