package main

// Two runs on one video: the second waits for the first's inversion and
// reuses it; --force replaces an entry only once the new one is complete.

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSecondRunWaitsAndReuses(t *testing.T) {
	d := t.TempDir()
	args := []string{"invert", "--model", model(t, "tiny-sd15"), "--size", "64x64", "--steps", "100", "--save-steps", "10",
		"--cache-dir", filepath.Join(d, "cache"), "--json", fixtureFrames(t, "tiny-sd15")}
	first := start(t, tfCommand(t, d, args...))
	if !first.lines.waitFor("vae encode:", 2*time.Minute) {
		first.cmd.Process.Kill()
		t.Fatalf("the first run never started its inversion:\n%s", first.lines.wait())
	}
	// The first run holds the entry's lock now: the second must wait.
	second := tf(t, d, args...)
	res1, ok := first.exited(10 * time.Minute)
	if !ok || res1.Code != 0 {
		t.Fatalf("first run: ended %v: %v", ok, res1)
	}
	if second.Code != 0 {
		t.Fatalf("second run: %v", second)
	}
	if !strings.Contains(second.Stderr, "another tokenflow run is working on this inversion") {
		t.Errorf("the second run did not say it waits:\n%s", second.Stderr)
	}
	var r1, r2 invertResult
	if err := json.Unmarshal([]byte(res1.Stdout), &r1); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(second.Stdout), &r2); err != nil {
		t.Fatal(err)
	}
	if r1.Reused || r1.UNetFrames != 100*8 {
		t.Errorf("first run: reused %v, %d evaluations; want a fresh inversion (800)", r1.Reused, r1.UNetFrames)
	}
	if !r2.Reused || r2.UNetFrames != 0 || r2.CacheDir != r1.CacheDir {
		t.Errorf("second run: reused %v, %d evaluations, entry %s; want the first run's entry %s, reused", r2.Reused, r2.UNetFrames, r2.CacheDir, r1.CacheDir)
	}
}
