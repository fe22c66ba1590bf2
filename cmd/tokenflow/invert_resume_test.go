package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInvertResumesAfterSIGKILL kills an inversion with SIGKILL (no
// chance to clean up) once its progress on stderr shows step k done, at
// several points: the first run at step 3, the run that resumes it at step
// 25; runs the same command a third time, and checks that each run resumes
// from a step at or after the last kill's (saying so), the last does only
// the remaining steps, and the entry is the one an uninterrupted run makes:
// the same latents.safetensors, byte for byte, and no state or partial
// folder.
func TestInvertResumesAfterSIGKILL(t *testing.T) {
	const steps, frames = 40, 8
	d := t.TempDir()
	args := func(cache string) []string {
		return []string{"invert", "--model", model(t, "tiny-sd15"), "--size", "64x64", "--inversion-steps", fmt.Sprint(steps), "--steps", "10",
			"--batch-size", "4", "--cache-dir", cache, "--json", fixtureFrames(t, "tiny-sd15")}
	}
	killed, whole := filepath.Join(d, "killed"), filepath.Join(d, "whole")

	// resumedAt is the step a run's log says it resumed at, 0 if none.
	resumedAt := func(stderr string) int {
		_, after, ok := strings.Cut(stderr, "inversion: resuming at step ")
		var at, of int
		if ok {
			fmt.Sscanf(after, "%d of %d", &at, &of)
			if of != steps {
				t.Fatalf("resumed %d of %d, want of %d:\n%s", at, of, steps, stderr)
			}
		}
		return at
	}
	// 1. killed once step k is done (a progress line at every step's end);
	// the next run resumes at k or later and is killed in turn
	last := 0
	for _, k := range []int{3, 25} {
		r := start(t, tfCommand(t, d, args(killed)...))
		line := fmt.Sprintf("inversion: step %d/%d done", k, steps)
		if !r.lines.waitFor(line, 3*time.Minute) {
			t.Fatalf("no %q line before the run ended:\n%s", line, r.lines.wait())
		}
		if err := r.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		res, ok := r.exited(time.Minute)
		if !ok {
			t.Fatal("still running a minute after SIGKILL")
		}
		if res.Code != -1 || strings.Contains(res.Stdout, "cache_dir") {
			t.Fatalf("the run ended before the kill at step %d:\n%v", k, res)
		}
		if at := resumedAt(res.Stderr); (last == 0) != (at == 0) || at < last {
			t.Fatalf("the run killed at step %d resumed at %d, after a kill at step %d:\n%s", k, at, last, res.Stderr)
		}
		partials, _ := filepath.Glob(filepath.Join(killed, "inversions", ".*.partial", "state.safetensors"))
		if len(partials) != 1 {
			t.Fatalf("the run killed at step %d left states %q, want one", k, partials)
		}
		last = k
	}

	// 2. the same command again: it resumes and completes
	res, r := tfJSON[invertResult](t, d, args(killed)...)
	at := resumedAt(r.Stderr)
	if at < last || at > steps {
		t.Fatalf("the last run did not resume at a step from %d of %d:\n%s", last, steps, r.Stderr)
	}
	if res.Reused || res.UNetFrames != int64((steps-(at-1))*frames) {
		t.Errorf("resumed run: reused %v, unet_frame_evaluations %d, want the %d remaining steps (%d)", res.Reused, res.UNetFrames, steps-(at-1), (steps-(at-1))*frames)
	}

	// 3. an uninterrupted run's entry is the same, byte for byte
	ref, _ := tfJSON[invertResult](t, d, args(whole)...)
	if filepath.Base(ref.CacheDir) != filepath.Base(res.CacheDir) {
		t.Fatalf("entries %s and %s: not the same key", ref.CacheDir, res.CacheDir)
	}
	got, err := os.ReadFile(filepath.Join(res.CacheDir, "latents.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(ref.CacheDir, "latents.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the resumed entry's latents.safetensors (%d bytes) differs from the uninterrupted run's (%d bytes)", len(got), len(want))
	}
	if m1, m2 := readManifest(t, res.CacheDir), readManifest(t, ref.CacheDir); m1.LatentsCRC != m2.LatentsCRC {
		t.Errorf("manifest CRCs %s and %s", m1.LatentsCRC, m2.LatentsCRC)
	}

	// 4. nothing stale: no partial folder, no state
	for _, cache := range []string{killed, whole} {
		ents, err := os.ReadDir(filepath.Join(cache, "inversions"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".partial") || strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("%s left in %s", e.Name(), cache)
			}
		}
		if _, err := os.Stat(filepath.Join(res.CacheDir, "state.safetensors")); err == nil {
			t.Error("the entry holds a state")
		}
	}
	// and the entry is used as it is
	again, _ := tfJSON[invertResult](t, d, args(killed)...)
	if !again.Reused || again.UNetFrames != 0 {
		t.Errorf("the resumed entry is not reused: %+v", again)
	}
}
