package main

// Resuming through the real binary: an edit killed with SIGKILL after
// edit step k leaves its state beside the inversion, an inversion its
// entry in the making; the same command run again says it resumes and ends
// with the uninterrupted run's latents, bit for bit, and no state left. A
// state of other settings is not used; --no-resume starts over.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// resumeSteps is the edits' steps: a tiny-model step takes about 0.2 s
// here, far longer than a kill takes to land.
const resumeSteps = 8

// resumeCase is one edit, run by the tests of this file in its own folder
// with a shared cache.
type resumeCase struct {
	t       *testing.T
	dir     string
	cache   string
	prompts []string // --prompt values
	extra   []string // more flags
}

// args is the edit's command line writing into out (a folder); with
// several prompts the outputs are templates.
func (c *resumeCase) args(out string, more ...string) []string {
	a := []string{"edit", "--model", model(c.t, "tiny-sd15"), "--size", "64x64", "--steps", strconv.Itoa(resumeSteps),
		"--inversion-steps", "8", "--batch-size", "4", "--cache-dir", c.cache, "--json"}
	for _, p := range c.prompts {
		a = append(a, "--prompt", p)
	}
	name := "edited"
	if len(c.prompts) > 1 {
		name = "edited-{n}"
	}
	a = append(a, "-o", filepath.Join(out, name+".mp4"), "--save-latents", filepath.Join(out, name+".safetensors"))
	a = append(a, c.extra...)
	a = append(a, more...)
	return append(a, fixtureFrames(c.t, "tiny-sd15"))
}

// outDir makes a fresh output folder.
func (c *resumeCase) outDir(name string) string {
	c.t.Helper()
	out := filepath.Join(c.dir, name)
	if err := os.Mkdir(out, 0o755); err != nil {
		c.t.Fatal(err)
	}
	return out
}

// latents reads the latents files in out, by name.
func (c *resumeCase) latents(out string) map[string][]byte {
	c.t.Helper()
	files, _ := filepath.Glob(filepath.Join(out, "*.safetensors"))
	if len(files) != len(c.prompts) {
		c.t.Fatalf("%s holds %d latents files, want %d", out, len(files), len(c.prompts))
	}
	m := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			c.t.Fatal(err)
		}
		m[filepath.Base(f)] = b
	}
	return m
}

// states are the edit states in the cache.
func (c *resumeCase) states() []string {
	m, _ := filepath.Glob(filepath.Join(c.cache, "inversions", "*.edit-*"))
	dot, _ := filepath.Glob(filepath.Join(c.cache, "inversions", ".*.edit-*"))
	return append(m, dot...)
}

// killAt starts the edit and kills it (SIGKILL) once its progress says
// edit step k is done; it returns the run's stderr.
func (c *resumeCase) killAt(k int, out string, more ...string) string {
	c.t.Helper()
	r := start(c.t, tfCommand(c.t, c.dir, c.args(out, more...)...))
	line := fmt.Sprintf("edit: step %d/%d done", k, resumeSteps)
	if !r.lines.waitFor(line, 3*time.Minute) {
		c.t.Fatalf("no %q line before the run ended:\n%s", line, r.lines.wait())
	}
	if err := r.cmd.Process.Kill(); err != nil {
		c.t.Fatal(err)
	}
	res, ok := r.exited(time.Minute)
	if !ok {
		c.t.Fatal("still running a minute after SIGKILL")
	}
	if res.Code != -1 || strings.Contains(res.Stderr, fmt.Sprintf("step %d/%d done", resumeSteps, resumeSteps)) {
		c.t.Fatalf("the run ended before the kill:\n%v", res)
	}
	return res.Stderr
}

var resumedLine = regexp.MustCompile(`(?m)^edit: resuming at step (\d+) of (\d+) from (.+\.edit-[0-9a-f]{24}\.safetensors)$`)

// resumed is the step a run's log says it resumed at (1-based), and the
// state's path; 0 when it did not resume.
func resumed(stderr string) (int, string) {
	m := resumedLine.FindStringSubmatch(stderr)
	if m == nil {
		return 0, ""
	}
	step, _ := strconv.Atoi(m[1])
	if m[2] != strconv.Itoa(resumeSteps) {
		return -1, m[3]
	}
	return step, m[3]
}

func newResumeCase(t *testing.T, prompts ...string) *resumeCase {
	d := t.TempDir()
	return &resumeCase{t: t, dir: d, cache: filepath.Join(d, "cache"), prompts: prompts}
}

// reference runs the edit uninterrupted and returns its latents; it
// leaves no state.
func (c *resumeCase) reference() map[string][]byte {
	c.t.Helper()
	out := c.outDir("reference")
	res, r := tfJSON[editResult](c.t, c.dir, c.args(out)...)
	if res.ResumedSteps != 0 || strings.Contains(r.Stderr, "resuming") {
		c.t.Fatalf("the first run resumed:\n%v", r)
	}
	if s := c.states(); len(s) != 0 {
		c.t.Errorf("the finished run left states: %q", s)
	}
	return c.latents(out)
}

// killAndResume kills the edit after step k, checks the state it left,
// runs the same command again and checks it resumed after step k and
// ends with want's latents and no state.
func (c *resumeCase) killAndResume(k int, want map[string][]byte) {
	c.t.Helper()
	out := c.outDir(fmt.Sprintf("killed-at-%d", k))
	c.killAt(k, out)
	states := c.states()
	if len(states) != 1 || !strings.HasSuffix(states[0], ".safetensors") || strings.HasPrefix(filepath.Base(states[0]), ".") {
		c.t.Fatalf("after the kill at step %d: states %q, want one", k, states)
	}
	res, r := tfJSON[editResult](c.t, c.dir, c.args(out)...)
	step, path := resumed(r.Stderr)
	// The kill lands after step k's line; the run may have finished one
	// more step by then, never all.
	if step < k+1 || step > resumeSteps || path != states[0] {
		c.t.Fatalf("killed after step %d: the next run's log says resuming at step %d from %q (state %s), want step %d or a little later:\n%s",
			k, step, path, states[0], k+1, r.Stderr)
	}
	if res.ResumedSteps != step-1 {
		c.t.Errorf("resumed_steps %d, the log says step %d", res.ResumedSteps, step)
	}
	// Only the steps left are run: step lines from step on, none before.
	if strings.Contains(r.Stderr, fmt.Sprintf("edit: step %d/%d done", step-1, resumeSteps)) ||
		!strings.Contains(r.Stderr, fmt.Sprintf("edit: step %d/%d done", resumeSteps, resumeSteps)) {
		c.t.Errorf("resumed at step %d: the step lines are not those of steps %d..%d:\n%s", step, step, resumeSteps, r.Stderr)
	}
	got := c.latents(out)
	for name, b := range want {
		if !bytes.Equal(got[name], b) {
			c.t.Errorf("killed after step %d, resumed at step %d: %s differs from the uninterrupted run's", k, step, name)
		}
	}
	if s := c.states(); len(s) != 0 {
		c.t.Errorf("the resumed run left states: %q", s)
	}
	// The killed run's temporary outputs were swept: only the outputs.
	var names []string
	for _, n := range listTree(c.t, out) {
		if n != "./" {
			names = append(names, n)
		}
	}
	if len(names) != 2*len(c.prompts) || slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, ".") }) {
		c.t.Errorf("output folder after the resumed run: %q", names)
	}
}

// TestEditResumeAfterKill kills the edit with SIGKILL after steps 2 and 5;
// each time the same command continues and ends bit for bit where the
// uninterrupted run does.
func TestEditResumeAfterKill(t *testing.T) {
	c := newResumeCase(t, "a red cube")
	want := c.reference()
	for _, k := range []int{2, 5} {
		c.killAndResume(k, want)
	}
}

// TestEditResumeOtherSettings: a state written with other settings (here
// another guidance, then another prompt) is not used, and is left alone
// for its own edit, which then continues it; --no-resume starts over and
// removes the state.
func TestEditResumeOtherSettings(t *testing.T) {
	c := newResumeCase(t, "a red cube")
	want := c.reference()
	c.killAt(3, c.outDir("killed"))
	states := c.states()
	if len(states) != 1 {
		t.Fatalf("states after the kill: %q", states)
	}
	// Another guidance; another prompt.
	blue := &resumeCase{t: t, dir: c.dir, cache: c.cache, prompts: []string{"a blue ball"}}
	for i, args := range [][]string{c.args(c.outDir("other-guidance"), "--guidance", "5"), blue.args(c.outDir("other-prompt"))} {
		res, r := tfJSON[editResult](t, c.dir, args...)
		if step, _ := resumed(r.Stderr); step != 0 || res.ResumedSteps != 0 {
			t.Errorf("other settings %d: the edit resumed the state of another edit:\n%s", i, r.Stderr)
		}
		if got := c.states(); !slices.Equal(got, states) {
			t.Errorf("other settings %d: states %q after it, want the other edit's %q left alone", i, got, states)
		}
	}
	// --no-resume: starts over, says so, removes the state.
	out := c.outDir("no-resume")
	res, r := tfJSON[editResult](t, c.dir, c.args(out, "--no-resume")...)
	if step, _ := resumed(r.Stderr); step != 0 || res.ResumedSteps != 0 || !strings.Contains(r.Stderr, "edit: starting over (--no-resume): removed the state of an interrupted run, "+states[0]) {
		t.Errorf("--no-resume: resumed %d steps; log:\n%s", res.ResumedSteps, r.Stderr)
	}
	if !strings.Contains(r.Stderr, fmt.Sprintf("edit: step 1/%d done", resumeSteps)) {
		t.Errorf("--no-resume did not run from step 1:\n%s", r.Stderr)
	}
	got := c.latents(out)
	for name, b := range want {
		if !bytes.Equal(got[name], b) {
			t.Errorf("--no-resume: %s differs from the first run's", name)
		}
	}
	if s := c.states(); len(s) != 0 {
		t.Errorf("states after --no-resume: %q", s)
	}
}

// TestEditResumeTwoPrompts: an edit of two prompts killed after step 3
// resumes both, each ending bit for bit as uninterrupted.
func TestEditResumeTwoPrompts(t *testing.T) {
	c := newResumeCase(t, "a red cube", "a blue ball")
	want := c.reference()
	c.killAndResume(3, want)
}

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
