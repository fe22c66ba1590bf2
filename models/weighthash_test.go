package models

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/fixture"
)

// countHashes makes contentHash count the files it reads, by path.
func countHashes(t *testing.T) map[string]int {
	t.Helper()
	reads := map[string]int{}
	var mu sync.Mutex // files are hashed side by side
	orig := contentHash
	contentHash = func(path string) (string, error) {
		mu.Lock()
		reads[filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path)]++
		mu.Unlock()
		return orig(path)
	}
	t.Cleanup(func() { contentHash = orig })
	return reads
}

func identity(t *testing.T, model, root string) string {
	t.Helper()
	c, err := OpenModel(model, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Identity(root)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// flipWeightByte changes one byte of the unet's weight data (the last
// float's top byte), leaving the header, size and layout alone.
func flipWeightByte(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0x01
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestIdentityCoversWeightBytes: two copies of a model that differ in one
// byte of one weight (same configs, same header) are two models.
func TestIdentityCoversWeightBytes(t *testing.T) {
	a, b := copyModel(t, "tiny-sd15"), copyModel(t, "tiny-sd15")
	if ia, ib := identity(t, a, ""), identity(t, b, ""); ia != ib {
		t.Fatalf("identical copies have identities %s and %s", ia, ib)
	}
	flipWeightByte(t, b)
	root := t.TempDir()
	if ia, ib := identity(t, a, root), identity(t, b, root); ia == ib {
		t.Errorf("models differing in a unet weight share identity %s", ia)
	}
}

// TestIdentityMemo: the weights are read once; later identities use the
// memo in the cache root; a touched or replaced file is read again; a
// corrupt memo is ignored and rewritten.
func TestIdentityMemo(t *testing.T) {
	model, root := copyModel(t, "tiny-sd15"), t.TempDir()
	unet := filepath.Join(model, "unet", "diffusion_pytorch_model.safetensors")
	memoPath := filepath.Join(root, weightMemoName)
	reads := countHashes(t)
	total := func() int {
		n := 0
		for _, c := range reads {
			n += c
		}
		return n
	}

	id := identity(t, model, root)
	if total() != 3 || reads["unet/diffusion_pytorch_model.safetensors"] != 1 {
		t.Fatalf("first identity read %v, want each of the 3 weight files once", reads)
	}
	if id2 := identity(t, model, root); id2 != id || total() != 3 {
		t.Fatalf("second identity %s (first %s) read %v: want the same, from the memo", id2, id, reads)
	}

	// The memo is what the second run used: a hash recorded there (as if
	// the file had had other bytes) is taken without reading the file.
	editMemo := func(f func(m *weightMemo)) {
		t.Helper()
		var m weightMemo
		b, err := os.ReadFile(memoPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		f(&m)
		b, _ = json.Marshal(m)
		if err := os.WriteFile(memoPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	real, _ := filepath.EvalSymlinks(unet)
	editMemo(func(m *weightMemo) {
		e, ok := m.Files[real]
		if !ok {
			t.Fatalf("memo has no entry for %s: %v", real, m.Files)
		}
		e.SHA256 = strings.Repeat("0", 64)
		m.Files[real] = e
	})
	if got := identity(t, model, root); got == id || total() != 3 {
		t.Fatalf("with the memo's unet hash changed: identity %s (was %s), reads %v: the memo was not used", got, id, reads)
	}

	// Touching the file (new mtime) reads it again, and the true hash is back.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(unet, later, later); err != nil {
		t.Fatal(err)
	}
	if got := identity(t, model, root); got != id || reads["unet/diffusion_pytorch_model.safetensors"] != 2 || total() != 4 {
		t.Fatalf("after touching the unet: identity %s (want %s), reads %v: want the unet read again, only it", got, id, reads)
	}

	// Replaced by a copy with the same size and mtime: another inode, read again.
	b, err := os.ReadFile(unet)
	if err != nil {
		t.Fatal(err)
	}
	tmp := unet + ".new"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(tmp, later, later)
	if err := os.Rename(tmp, unet); err != nil {
		t.Fatal(err)
	}
	if got := identity(t, model, root); got != id || reads["unet/diffusion_pytorch_model.safetensors"] != 3 {
		t.Fatalf("after replacing the unet by a copy: identity %s (want %s), reads %v: want it read again", got, id, reads)
	}

	// A corrupt memo is ignored (everything read again) and rewritten.
	if err := os.WriteFile(memoPath, []byte("{\"version\": 1, \"files\": [garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := total()
	if got := identity(t, model, root); got != id || total() != before+3 {
		t.Fatalf("with a corrupt memo: identity %s (want %s), %d reads (want 3)", got, id, total()-before)
	}
	if got := identity(t, model, root); got != id || total() != before+3 {
		t.Fatalf("after the corrupt memo was rewritten: %d more reads, want none", total()-before-3)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("cache root holds %v, want only %s (no temporary files left)", names, weightMemoName)
	}
}

// A model's identity keys every cache entry made with it: a change of how
// it is computed (the order files are hashed in, say) would silently make
// every user's cached inversions unreachable. This pins the tiny model's.
func TestIdentityIsStable(t *testing.T) {
	const want = "2d35f331f22d577337cf389c" // tiny-sd21, computed before the files were hashed side by side
	if got := identity(t, fixture.Model(t, "tiny-sd21"), t.TempDir()); got != want {
		t.Errorf("identity of tiny-sd21 is %s, was %s: cached inversions would not be found again", got, want)
	}
}
