package main

// A newcomer's first hour (issue 14), through the real binary: output
// formats by extension, the working size and the work announced before it
// starts, doctor and the model, one vocabulary across invert and edit, a
// reused inversion said on stderr, and no absurd rate on a terminal's
// first progress tick.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

// tiny is the cheapest real run: 32x32, two steps.
var tiny = []string{"--size", "32x32", "--steps", "2", "--inversion-steps", "2"}

// formatOf is ffprobe's container name and first video codec of a file.
func formatOf(t *testing.T, path string) (format, codec string) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "format=format_name:stream=codec_name",
		"-of", "default=noprint_wrappers=1:nokey=1", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("ffprobe %s: %q", path, out)
	}
	return f[1], f[0] // ffprobe prints the stream section first
}

// TestEditOutFormat: --out's extension chooses the container (o.webm is
// WebM with VP9); an extension no format has is refused before any work.
func TestEditOutFormat(t *testing.T) {
	frames := fixtureFrames(t, "tiny-sd15")
	args := func(d, out string) []string {
		return append([]string{"edit", "--model", model(t, "tiny-sd15"), "-p", "a red cube", "--frames", "4",
			"--cache-dir", filepath.Join(d, "cache"), "--out", out, frames}, tiny...)
	}
	d := t.TempDir()
	tfOK(t, d, args(d, "o.webm")...)
	if format, codec := formatOf(t, filepath.Join(d, "o.webm")); !strings.Contains(format, "webm") || codec != "vp9" {
		t.Errorf("o.webm is %s with %s, want WebM with VP9", format, codec)
	}

	d = t.TempDir()
	r := tf(t, d, args(d, "o.avi")...)
	checkErrorLine(t, r, "--out o.avi", ".avi", ".webm")
	if r.Code != exitUsage {
		t.Errorf("exit %d, want %d (usage)", r.Code, exitUsage)
	}
	if got := listTree(t, d); !slices.Equal(got, []string{"./"}) {
		t.Errorf("a refused --out o.avi wrote %q", got)
	}
	if strings.Contains(r.Stderr, "working size") || strings.Contains(r.Stderr, "vae encode") {
		t.Errorf("work started before --out o.avi was refused:\n%s", r.Stderr)
	}
}

// evaluationsLine is the announced "UNet frame evaluations: N" of stderr,
// checked to come before any progress line.
func evaluationsLine(t *testing.T, stderr string) int64 {
	t.Helper()
	progressLine := regexp.MustCompile(`^[a-z ]+: \d+/\d+ `)
	for _, l := range strings.Split(stderr, "\n") {
		if progressLine.MatchString(l) {
			t.Fatalf("progress %q before the announced work:\n%s", l, stderr)
		}
		var n int64
		if _, err := fmt.Sscanf(l, "UNet frame evaluations: %d", &n); err == nil {
			return n
		}
	}
	t.Fatalf("no \"UNet frame evaluations: N\" line on stderr:\n%s", stderr)
	return 0
}

// TestWorkingSizeSaid: a 96x64 clip is worked at 624x416 (about 512x512
// pixels), and stderr says so, before the work, with --size to keep its
// own size; the UNet work announced is the work done (JSON), for an
// inversion, an edit that inverts, and an edit that reuses.
func TestWorkingSizeSaid(t *testing.T) {
	d := t.TempDir()
	audioClip(t, d)
	res, r := tfJSON[invertResult](t, d, "invert", "--model", model(t, "tiny-sd21"), "--frames", "1",
		"--inversion-steps", "1", "--cache-dir", filepath.Join(d, "cache"), "--json", "in.mp4")
	want := "working size 624x416: the video's 96x64 scaled up to about 512x512 pixels, the model's native size; --size 96x64 keeps its own"
	if !strings.Contains(r.Stderr, want+"\n") {
		t.Errorf("stderr does not say %q:\n%s", want, r.Stderr)
	}
	if res.Size != "624x416" {
		t.Errorf("size %s, want 624x416", res.Size)
	}
	if n := evaluationsLine(t, r.Stderr); n != res.UNetFrames || n != 1 {
		t.Errorf("announced %d UNet frame evaluations, made %d; want 1 (1 step x 1 frame)", n, res.UNetFrames)
	}

	// An edit at a given size, over a folder named frame_001.jpg, ...:
	// announced, then reused and said so.
	frames := filepath.Join(d, "frames")
	if err := os.Mkdir(frames, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		cmd := exec.Command("ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", fmt.Sprintf("color=c=0x%02x4080:s=40x24", 40*i),
			"-frames:v", "1", filepath.Join(frames, fmt.Sprintf("frame_%03d.jpg", i+1)))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg: %v: %s", err, out)
		}
	}
	const n, b = 5, 2
	edit := func(out string) (editResult, runResult) {
		return tfJSON[editResult](t, d, append([]string{"edit", "--model", model(t, "tiny-sd15"), "-p", "a red cube", "--batch-size", fmt.Sprint(b),
			"--cache-dir", filepath.Join(d, "cache"), "-o", out, "--json", frames}, tiny...)...)
	}
	first, r := edit("a.mp4")
	if !strings.Contains(r.Stderr, "working size 32x32 (the video is 40x24)\n") {
		t.Errorf("stderr does not give the working size asked for:\n%s", r.Stderr)
	}
	if got, want := evaluationsLine(t, r.Stderr), int64(2*n)+editPasses(2, n, b); got != want || first.UNetFrames != want {
		t.Errorf("announced %d UNet frame evaluations, made %d; want %d (inversion + edit)", got, first.UNetFrames, want)
	}
	if first.Frames != n {
		t.Errorf("frames %d, want the folder's %d", first.Frames, n)
	}
	second, r := edit("b.mp4")
	if !second.InversionReused || !strings.Contains(r.Stderr, "inversion: reusing the cached inversion in "+second.CacheDir+"\n") {
		t.Errorf("inversion_reused %v; stderr does not say the inversion in %s is reused:\n%s", second.InversionReused, second.CacheDir, r.Stderr)
	}
	if got, want := evaluationsLine(t, r.Stderr), editPasses(2, n, b); got != want || second.UNetFrames != want {
		t.Errorf("reused: announced %d UNet frame evaluations, made %d; want the edit's %d", got, second.UNetFrames, want)
	}
}

// TestDoctorModel: doctor checks the model the default command would
// use. Missing (an empty Hugging Face cache): exit 1, and the command that
// fetches it. In the hub cache, or given by --model: its family and folder.
func TestDoctorModel(t *testing.T) {
	testenv.ORTLibrary(t)
	hub := t.TempDir()
	run := func(args ...string) runResult {
		cmd := tfCommand(t, "", args...)
		cmd.Env = append(cmd.Env, "HF_HUB_CACHE="+hub, "HF_HOME="+filepath.Join(hub, "home"), "HOME="+hub)
		return runCmd(t, cmd)
	}

	r := run("doctor")
	checkErrorLine(t, r, "model stabilityai/stable-diffusion-2-1-base", "huggingface-cli download stabilityai/stable-diffusion-2-1-base")
	if l := reportLine(t, r.Stdout, "model"); !strings.Contains(l, "MISSING") || !strings.Contains(l, "huggingface-cli download stabilityai/stable-diffusion-2-1-base") {
		t.Errorf("model line %q: want MISSING and the download command", l)
	}
	if l := reportLine(t, r.Stdout, "cuda"); !strings.Contains(l, "optional") && !strings.Contains(l, "ready") {
		t.Errorf("cuda line %q: want it informational", l)
	}

	tiny21 := model(t, "tiny-sd21")
	r = run("doctor", "--model", tiny21)
	if r.Code != 0 {
		t.Fatalf("doctor --model %s: %v", tiny21, r)
	}
	if l := reportLine(t, r.Stdout, "model"); !strings.Contains(l, "SD 2.x ("+tiny21+")") {
		t.Errorf("model line %q: want SD 2.x and its folder", l)
	}

	// The default hub id, present in the cache as the hub lays it out: a
	// snapshot folder of links, named by refs/main.
	snap := hubRepo(t, hub, "stabilityai/stable-diffusion-2-1-base", "0123abc", tiny21, true)
	r = run("doctor")
	if r.Code != 0 {
		t.Fatalf("doctor with the default model in the hub cache: %v", r)
	}
	if l := reportLine(t, r.Stdout, "model"); !strings.Contains(l, "SD 2.x (stabilityai/stable-diffusion-2-1-base, "+snap+")") {
		t.Errorf("model line %q: want SD 2.x, the hub id and its snapshot folder", l)
	}
}

// timingVocabulary are the names of the phases: JSON "seconds" keys and
// progress labels alike.
var timingVocabulary = []string{"probe+hash", "model identity", "decode video", "vae encode", "inversion", "reconstruction", "edit",
	"edit keyframe passes", "edit propagation passes", "vae decode", "write video", "session creation", "in onnxruntime", "total",
	// the time sessions took to make, in all and per model component (the
	// run waited "session creation" of it: the rest overlapped other work)
	"session creation (all)", "session creation: text_encoder", "session creation: unet", "session creation: vae_encoder",
	"session creation: vae_decoder"}

// checkVocabulary checks that the JSON's timings and the progress lines
// use the phase names, each of want among the timings.
func checkVocabulary(t *testing.T, stdout, stderr string, want ...string) {
	t.Helper()
	var v struct {
		Seconds map[string]float64 `json:"seconds"`
	}
	if err := jsonUnmarshal(stdout, &v); err != nil {
		t.Fatal(err)
	}
	for k := range v.Seconds {
		if !slices.Contains(timingVocabulary, k) {
			t.Errorf("JSON timing %q is not a phase name %q", k, timingVocabulary)
		}
	}
	for _, w := range want {
		if _, ok := v.Seconds[w]; !ok {
			t.Errorf("no JSON timing %q in %v", w, v.Seconds)
		}
	}
	progressLine := regexp.MustCompile(`^([a-z ]+): \d+/\d+ `)
	for _, l := range strings.Split(stderr, "\n") {
		if m := progressLine.FindStringSubmatch(l); m != nil && !slices.Contains(timingVocabulary, m[1]) {
			t.Errorf("progress label %q is not a phase name %q", m[1], timingVocabulary)
		}
	}
}

// TestInvertSpeaksEditsWords: invert takes --inversion-steps and --steps
// as edit does, and its entry is the one edit then reuses; the old
// spellings (--steps alone meaning the inversion's, --save-steps) still
// make the same entry, with a note; --steps alone follows a shorter
// inversion; the JSON says inversion_reused (and reused, the old name);
// timings and progress lines name the phases alike.
func TestInvertSpeaksEditsWords(t *testing.T) {
	d := t.TempDir()
	frames := fixtureFrames(t, "tiny-sd15")
	base := []string{"--model", model(t, "tiny-sd15"), "--size", "32x32", "--frames", "4", "--cache-dir", filepath.Join(d, "cache"), "--json"}
	invert := func(extra ...string) (invertResult, runResult, map[string]any) {
		res, r := tfJSON[invertResult](t, d, append(append([]string{"invert"}, base...), append(extra, frames)...)...)
		var raw map[string]any
		if err := jsonUnmarshal(r.Stdout, &raw); err != nil {
			t.Fatal(err)
		}
		return res, r, raw
	}

	res, r, raw := invert("--inversion-steps", "3", "--steps", "3", "--reconstruct")
	if raw["inversion_reused"] != false || raw["reused"] != false || len(res.KeptTimesteps) != 3 {
		t.Errorf("first invert: inversion_reused %v, reused %v, kept %v; want a fresh 3-step entry", raw["inversion_reused"], raw["reused"], res.KeptTimesteps)
	}
	if strings.Contains(r.Stderr, "note:") {
		t.Errorf("a note for the new spelling:\n%s", r.Stderr)
	}
	checkVocabulary(t, r.Stdout, r.Stderr, "decode video", "vae encode", "inversion", "reconstruction", "vae decode", "write video")
	entry := res.CacheDir

	ed, r := tfJSON[editResult](t, d, append(append([]string{"edit", "-p", "a red cube", "-o", filepath.Join(d, "out.mp4"),
		"--inversion-steps", "3", "--steps", "3"}, base...), frames)...)
	if !ed.InversionReused || ed.CacheDir != entry {
		t.Errorf("edit with the same --inversion-steps and --steps: inversion_reused %v, entry %s; want %s reused", ed.InversionReused, ed.CacheDir, entry)
	}
	checkVocabulary(t, r.Stdout, r.Stderr, "edit", "vae decode", "write video")

	for _, old := range [][]string{{"--steps", "3", "--save-steps", "3"}, {"--steps", "3"}} {
		res, r, raw = invert(old...)
		if res.CacheDir != entry || raw["inversion_reused"] != true || raw["reused"] != true {
			t.Errorf("invert %s: entry %s, inversion_reused %v, reused %v; want %s reused", old, res.CacheDir, raw["inversion_reused"], raw["reused"], entry)
		}
		if !strings.Contains(r.Stderr, "note: --steps without --inversion-steps is read the old way, as --inversion-steps 3: write --inversion-steps 3") {
			t.Errorf("invert %s: no note giving the new spelling:\n%s", old, r.Stderr)
		}
	}
	res, r, _ = invert("--inversion-steps", "3", "--save-steps", "3")
	if res.CacheDir != entry || !strings.Contains(r.Stderr, "note: --save-steps is the old spelling of --steps: write --steps 3") {
		t.Errorf("invert --save-steps 3: entry %s (want %s), stderr:\n%s", res.CacheDir, entry, r.Stderr)
	}
	r = tf(t, d, append(append([]string{"invert", "--inversion-steps", "3", "--steps", "3", "--save-steps", "3"}, base...), frames)...)
	checkErrorLine(t, r, "--save-steps is the old spelling of --steps")

	// --steps 2 alone: a 2-step inversion, the editing schedule following
	// it (not the default 50).
	res, _, _ = invert("--steps", "2")
	if len(res.KeptTimesteps) != 2 || res.UNetFrames != 2*4 {
		t.Errorf("invert --steps 2: kept %v, %d evaluations; want 2 timesteps, 8 evaluations", res.KeptTimesteps, res.UNetFrames)
	}
}

// TestHelpVocabulary: every command's help uses the same step and phase
// words: no --save-steps, no "invert --steps" for the inversion's steps.
func TestHelpVocabulary(t *testing.T) {
	for _, args := range [][]string{{"edit", "--help"}, {"invert", "--help"}, {"models", "--help"}, {"models", "export", "--help"},
		{"models", "info", "--help"}, {"doctor", "--help"}, {"--help"}} {
		r := tfOK(t, "", args...)
		for _, bad := range []string{"save-steps", "invert --steps", "decode+", "+encode"} {
			if strings.Contains(r.Stdout, bad) {
				t.Errorf("tokenflow %s mentions %q:\n%s", strings.Join(args, " "), bad, r.Stdout)
			}
		}
	}
	inv := tfOK(t, "", "invert", "--help").Stdout
	for _, want := range []string{"--inversion-steps int", "--steps int", "as edit's --steps", "as edit's --inversion-steps"} {
		if !strings.Contains(inv, want) {
			t.Errorf("invert --help does not say %q:\n%s", want, inv)
		}
	}
	if ed := tfOK(t, "", "edit", "--help").Stdout; !strings.Contains(ed, "as invert's --inversion-steps") {
		t.Errorf("edit --help does not tie --inversion-steps to invert's:\n%s", ed)
	}
	if doc := tfOK(t, "", "doctor", "--help").Stdout; !strings.Contains(doc, "--model") {
		t.Errorf("doctor --help has no --model:\n%s", doc)
	}
}

// TestTerminalProgressRate runs an edit with stderr on a terminal (a
// pseudo-terminal from script(1)): the bars show their counts, and no rate
// until one has been measured over a second, so none at all in this short
// run (the first tick used to show rates like "35607 frames/s").
func TestTerminalProgressRate(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		testenv.Missing(t, "script(1), for a pseudo-terminal (Debian/Ubuntu: util-linux)")
	}
	d := t.TempDir()
	args := append([]string{tfBin, "edit", "--model", model(t, "tiny-sd15"), "-p", "a red cube", "--frames", "4",
		"--cache-dir", filepath.Join(d, "cache"), "-o", filepath.Join(d, "out.mp4")}, tiny...)
	args = append(args, fixtureFrames(t, "tiny-sd15"))
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	cmd := exec.Command(script, "-qefc", strings.Join(quoted, " ")+" >/dev/null", "/dev/null")
	cmd.Env = append(tfEnv(t), "COLUMNS=100", "LINES=30")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	text := string(out)
	if !strings.Contains(text, "vae encode") || !regexp.MustCompile(`\(\d/4\)`).MatchString(text) {
		t.Fatalf("no progress bar on the terminal:\n%q", text)
	}
	if m := regexp.MustCompile(`[\d.]+ [a-z-]+/(s|min|hr)`).FindString(text); m != "" {
		t.Errorf("a rate %q in a run of well under a second per bar:\n%q", m, text)
	}
	if _, err := os.Stat(filepath.Join(d, "out.mp4")); err != nil {
		t.Error(err)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// TestInvertSchedule: invert's step flags, new and old spellings, resolve
// to the inversion's steps and the editing schedule, and errors about them
// name the flag as given.
func TestInvertSchedule(t *testing.T) {
	for _, c := range []struct {
		args           []string
		inv, steps     int
		invFlag, sFlag string
		note           string // a fragment; "" for none
	}{
		{nil, 500, 50, "--inversion-steps", "--steps", ""},
		{[]string{"--inversion-steps", "10"}, 10, 10, "--inversion-steps", "--steps", ""}, // the schedule follows a shorter inversion
		{[]string{"--inversion-steps", "100"}, 100, 50, "--inversion-steps", "--steps", ""},
		{[]string{"--inversion-steps", "100", "--steps", "30"}, 100, 30, "--inversion-steps", "--steps", ""},
		{[]string{"--steps", "30", "--inversion-steps", "10"}, 10, 30, "--inversion-steps", "--steps", ""},
		// the old spellings
		{[]string{"--steps", "10"}, 10, 10, "--steps", "--steps", "write --inversion-steps 10 ("},
		{[]string{"--steps", "500"}, 500, 50, "--steps", "--steps", "write --inversion-steps 500 ("},
		{[]string{"--steps", "100", "--save-steps", "10"}, 100, 10, "--steps", "--save-steps", "write --inversion-steps 100 --steps 10"},
		{[]string{"--inversion-steps", "100", "--save-steps", "10"}, 100, 10, "--inversion-steps", "--save-steps", "write --steps 10"},
		{[]string{"--save-steps", "10"}, 500, 10, "--inversion-steps", "--save-steps", "write --steps 10"},
	} {
		got, _, err := parseArgs(t, newCmdInvert, append(c.args, "in.mp4")...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		inv, steps, names, note, err := got.schedule()
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if inv != c.inv || steps != c.steps || names.flag("inversion_steps") != c.invFlag || names.flag("steps") != c.sFlag {
			t.Errorf("%v: inversion %d (%s), steps %d (%s); want %d (%s), %d (%s)", c.args, inv, names.flag("inversion_steps"), steps, names.flag("steps"),
				c.inv, c.invFlag, c.steps, c.sFlag)
		}
		if (c.note == "") != (note == "") || !strings.Contains(note, c.note) {
			t.Errorf("%v: note %q, want one with %q", c.args, note, c.note)
		}
	}
}
