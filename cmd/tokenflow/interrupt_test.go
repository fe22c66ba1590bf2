package main

// SIGINT: a run stops with exit 130 and one line, leaves no output and no
// cache entry a later run would accept.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// interrupt starts the binary, waits for a stderr line starting with after
// (progress showing that work has started), sends SIGINT, and returns how
// the run ended. The run must still be working when the signal comes: the
// callers give it far more work than the wait.
func interrupt(t *testing.T, dir, after string, args ...string) runResult {
	t.Helper()
	r := start(t, tfCommand(t, dir, args...))
	if !r.lines.waitFor(after, 2*time.Minute) {
		r.cmd.Process.Kill()
		t.Fatalf("no %q line on stderr before the run ended:\n%s", after, r.lines.wait())
	}
	r.signal(syscall.SIGINT)
	sent := time.Now()
	res, ok := r.exited(time.Minute)
	if !ok {
		t.Fatalf("still running a minute after SIGINT")
	}
	t.Logf("stopped %v after SIGINT", time.Since(sent).Round(time.Millisecond))
	return res
}

// checkInterrupted checks a run stopped by SIGINT while its task named by
// after (a progress label) was still running.
func checkInterrupted(t *testing.T, r runResult, after string) {
	t.Helper()
	if r.Code != exitInterrupted {
		t.Errorf("exit %d, want %d (interrupted)\n%v", r.Code, exitInterrupted, r)
	}
	if line := checkErrorLine(t, r); line != "tokenflow: interrupted" {
		t.Errorf("error line %q, want \"tokenflow: interrupted\"", line)
	}
	if r.Stdout != "" {
		t.Errorf("stdout %q, want nothing", r.Stdout)
	}
	// The signal came while there was work left.
	for _, l := range strings.Split(r.Stderr, "\n") {
		if strings.HasPrefix(l, after) && strings.Contains(l, "(100%)") {
			t.Errorf("the %s step had finished before the signal: %q; give the run more work", strings.TrimSuffix(after, ":"), l)
		}
	}
}

// TestInvertInterrupted stops an inversion of 100 steps (several seconds
// of UNet work) once its frames are encoded; no entry is accepted from it,
// and the next run completes one: the whole inversion, or the rest of it
// when the interrupted run had committed steps to resume from (it says
// where it resumes; see TestInvertResumesAfterSIGKILL).
func TestInvertInterrupted(t *testing.T) {
	d := t.TempDir()
	cache := filepath.Join(d, "cache")
	args := []string{"invert", "--model", model(t, "tiny-sd15"), "--size", "64x64", "--steps", "100", "--save-steps", "10",
		"--cache-dir", cache, "--json", fixtureFrames(t, "tiny-sd15")}
	r := interrupt(t, d, "vae encode:", args...)
	checkInterrupted(t, r, "inversion:")
	// No entry: the inversions folder holds nothing with an entry's name.
	if ents, err := os.ReadDir(filepath.Join(cache, "inversions")); err == nil {
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				t.Errorf("the interrupted run left %s in the cache", e.Name())
			}
		}
	}
	res, r2 := tfJSON[invertResult](t, d, args...)
	done := 0 // steps the interrupted run committed
	if _, after, ok := strings.Cut(r2.Stderr, "inversion: resuming at step "); ok {
		fmt.Sscanf(after, "%d", &done)
		done--
	}
	if res.Reused || res.UNetFrames != int64(100-done)*8 {
		t.Errorf("run after the interrupted one: reused %v, unet_frame_evaluations %d: want the inversion's %d remaining steps (%d)", res.Reused, res.UNetFrames, 100-done, (100-done)*8)
	}
	res2, _ := tfJSON[invertResult](t, d, args...)
	if !res2.Reused || res2.UNetFrames != 0 || res2.CacheDir != res.CacheDir {
		t.Errorf("the completed entry is not accepted: %+v", res2)
	}
}

// TestEditInterrupted stops an edit after its inversion, in the editing
// loop: no video, no temporary file beside where it would go.
func TestEditInterrupted(t *testing.T) {
	d := t.TempDir()
	out := filepath.Join(d, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	r := interrupt(t, d, "inversion:", "edit", "--model", model(t, "tiny-sd15"), "--prompt", "a red cube",
		"--size", "64x64", "--steps", "20", "--inversion-steps", "20", "--batch-size", "4",
		"--cache-dir", filepath.Join(d, "cache"), "-o", filepath.Join(out, "edited.mp4"),
		"--save-latents", filepath.Join(out, "latents.safetensors"), "--frames-dir", filepath.Join(out, "frames"),
		fixtureFrames(t, "tiny-sd15"))
	checkInterrupted(t, r, "edit:")
	if got := listTree(t, out); len(got) != 1 || got[0] != "./" {
		t.Errorf("the interrupted edit left files in its output folder: %q", got)
	}
}
