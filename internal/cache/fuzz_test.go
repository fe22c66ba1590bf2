package cache

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzManifest hands Lookup arbitrary bytes as an entry's manifest.json,
// next to a real latents.safetensors. Lookup must not panic and must not
// fail with an I/O error; it returns a one-line reason, or an entry that is
// truly valid: one whose manifest passes every check and whose latents load
// back exactly as stored. The seed corpus (testdata/fuzz/FuzzManifest)
// holds a real manifest Store wrote for these latents, and near misses.
func FuzzManifest(f *testing.F) {
	root := f.TempDir()
	want := testLatents(1)
	stored, err := StoreContext(context.Background(), root, testManifest(), want, false)
	if err != nil {
		f.Fatal(err)
	}
	real, err := os.ReadFile(filepath.Join(stored.Dir, manifestName))
	if err != nil {
		f.Fatal(err)
	}
	latents, err := os.ReadFile(filepath.Join(stored.Dir, latentsName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real) // this run's own, whatever its creation time
	f.Fuzz(func(t *testing.T, manifest []byte) {
		root := t.TempDir()
		dir := Dir(root, testKey())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, latentsName), latents, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, manifestName), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		e, reason, err := LookupContext(context.Background(), root, testKey())
		switch {
		case err != nil:
			t.Fatalf("Lookup failed with an error: %v", err)
		case e == nil && reason == "":
			t.Fatalf("Lookup found no entry and gave no reason")
		case e != nil && reason != "":
			t.Fatalf("Lookup gave an entry and the reason %q", reason)
		case e == nil:
			if strings.ContainsAny(reason, "\n\r") {
				t.Fatalf("reason is not one line: %q", reason)
			}
			return
		}
		// An accepted entry is truly valid.
		if r := e.Manifest.check(testKey()); r != "" {
			t.Fatalf("accepted a manifest its own check refuses: %s", r)
		}
		if !reflect.DeepEqual(e.Manifest.Key, testKey()) {
			t.Fatalf("accepted a manifest for another key: %+v", e.Manifest.Key)
		}
		got, err := e.Load()
		if err != nil {
			t.Fatalf("accepted an entry that does not load: %v", err)
		}
		testSameLatents(t, got, want)
	})
}
