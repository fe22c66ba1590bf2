package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestInvertResumesAfterSIGKILL kills an inversion with SIGKILL (no
// chance to clean up) once its progress on stderr shows step k done,
// runs the same command again, and checks that it resumes from a step at
// or after k (saying so), does only the remaining steps, and leaves the
// entry an uninterrupted run makes: the same latents.safetensors, byte for
// byte, and no state or partial folder.
func TestInvertResumesAfterSIGKILL(t *testing.T) {
	const steps, frames, k = 40, 8, 12
	d := t.TempDir()
	args := func(cache string) []string {
		return []string{"invert", "--model", model(t, "tiny-sd15"), "--size", "64x64", "--inversion-steps", fmt.Sprint(steps), "--steps", "10",
			"--batch-size", "4", "--cache-dir", cache, "--json", fixtureFrames(t, "tiny-sd15")}
	}
	killed, whole := filepath.Join(d, "killed"), filepath.Join(d, "whole")

	// 1. killed once step k is done: a progress line at every batch
	cmd := tfCommand(t, d, args(killed)...)
	cmd.Env = append(cmd.Env, progressIntervalEnv+"=0s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sent := false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		var done, total int
		if _, err := fmt.Sscanf(line, "inversion: %d/%d frame-steps", &done, &total); err == nil && !sent && done >= k*frames {
			if done == total {
				t.Fatalf("the inversion was complete before the kill: %q", line)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			sent = true
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !sent || !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the run was not killed at step %d (sent %v, %v):\n%s", k, sent, err, log.String())
	}
	partials, _ := filepath.Glob(filepath.Join(killed, "inversions", ".*.partial", "state.safetensors"))
	if len(partials) != 1 {
		t.Fatalf("the killed run left states %q, want one", partials)
	}

	// 2. the same command again: it resumes and completes
	res, r := tfJSON[invertResult](t, d, args(killed)...)
	_, after, ok := strings.Cut(r.Stderr, "inversion: resuming at step ")
	var at, of int
	if ok {
		fmt.Sscanf(after, "%d of %d", &at, &of)
	}
	if at < k || at > steps || of != steps {
		t.Fatalf("the second run did not resume at a step from %d of %d:\n%s", k, steps, r.Stderr)
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
