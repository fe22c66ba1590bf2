package main

// End-to-end runs of `tokenflow edit` with the tiny models: real binary,
// real ffmpeg, real ONNX Runtime.

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/video"
)

// editPasses is the UNet frame evaluations of an edit of n frames in
// batches of b over steps steps: per step, a keyframe pass over the K =
// ceil(n/b) keyframes and a propagation pass over all n frames, each for
// the source, negative and prompt conditionings.
func editPasses(steps, n, b int) int64 {
	k := (n + b - 1) / b
	return int64(steps * (3*k + 3*n))
}

// checkStderrProgress checks that a successful run wrote no error line.
func checkStderrProgress(t *testing.T, r runResult) {
	t.Helper()
	for _, l := range strings.Split(r.Stderr, "\n") {
		if strings.HasPrefix(l, "tokenflow: ") {
			t.Errorf("error line on stderr of a successful run: %q", l)
		}
	}
}

// TestEditClipWithAudio edits a generated 12-frame clip with sound: the
// output keeps the frame count, the frame rate and the audio, at the
// working size. Batches of 5 over 12 frames make the last batch smaller.
func TestEditClipWithAudio(t *testing.T) {
	d := t.TempDir()
	audioClip(t, d)
	const steps, n, b = 5, 12, 5
	res, r := tfJSON[editResult](t, d, "edit", "--model", model(t, "tiny-sd21"), "--prompt", "a watercolor painting",
		"--size", "32x32", "--steps", fmt.Sprint(steps), "--inversion-steps", fmt.Sprint(steps), "--batch-size", fmt.Sprint(b),
		"--cache-dir", filepath.Join(d, "cache"), "--json", "in.mp4")
	checkStderrProgress(t, r)
	// The default output is <input>.tokenflow.mp4 next to the input.
	if res.Output != "in.tokenflow.mp4" {
		t.Errorf("output %q, want in.tokenflow.mp4", res.Output)
	}
	if res.Frames != n || res.Size != "32x32" || res.FPS != "12/1" || res.InversionReused || res.Keyframes != "random" {
		t.Errorf("result %+v: want 12 frames, 32x32, 12/1 fps, a fresh inversion, random keyframes", res)
	}
	if want := int64(steps*n) + editPasses(steps, n, b); res.UNetFrames != want {
		t.Errorf("unet_frame_evaluations %d, want %d (inversion %d + edit %d)", res.UNetFrames, want, steps*n, editPasses(steps, n, b))
	}
	if !strings.HasPrefix(res.CacheDir, filepath.Join(d, "cache", "inversions")+string(filepath.Separator)) {
		t.Errorf("cache_dir %q is not under --cache-dir", res.CacheDir)
	}

	var vid, aud *probeStream
	streams := ffprobe(t, filepath.Join(d, "in.tokenflow.mp4"))
	for i := range streams {
		switch streams[i].CodecType {
		case "video":
			vid = &streams[i]
		case "audio":
			aud = &streams[i]
		}
	}
	if vid == nil || aud == nil {
		t.Fatalf("output streams %+v: want a video and an audio stream", streams)
	}
	if vid.NbReadFrames != "12" || vid.Width != 32 || vid.Height != 32 || vid.RFrameRate != "12/1" || vid.AvgFrameRate != "12/1" {
		t.Errorf("video stream %+v: want 12 frames of 32x32 at 12/1", *vid)
	}
	vd, ad := atof(t, vid.Duration), atof(t, aud.Duration)
	if math.Abs(vd-ad) > 1.0/12 {
		t.Errorf("audio lasts %gs, video %gs: more than one frame (1/12 s) apart", ad, vd)
	}
	t.Logf("output: %d frames %dx%d at %s, %.3fs; audio %.3fs", 12, vid.Width, vid.Height, vid.RFrameRate, vd, ad)
}

// TestEditReusesInversion: a second edit of the same clip with another
// prompt reuses the cached inversion, so its UNet work is the edit's alone.
func TestEditReusesInversion(t *testing.T) {
	d := t.TempDir()
	frames := fixtureFrames(t, "tiny-sd15")
	const steps, n, b = 5, 8, 3
	run := func(prompt, out string) editResult {
		res, r := tfJSON[editResult](t, d, "edit", "--model", model(t, "tiny-sd15"), "--prompt", prompt, "--inversion-prompt", "a ball",
			"--size", "32x32", "--steps", fmt.Sprint(steps), "--inversion-steps", fmt.Sprint(steps), "--batch-size", fmt.Sprint(b),
			"--cache-dir", filepath.Join(d, "cache"), "-o", filepath.Join(d, out), "--json", frames)
		checkStderrProgress(t, r)
		if _, err := os.Stat(filepath.Join(d, out)); err != nil {
			t.Errorf("no output: %v", err)
		}
		return res
	}
	first := run("a red cube", "cube.mp4")
	if first.InversionReused {
		t.Errorf("first edit: inversion_reused true on an empty cache")
	}
	if want := int64(steps*n) + editPasses(steps, n, b); first.UNetFrames != want {
		t.Errorf("first edit: unet_frame_evaluations %d, want %d (inversion + edit)", first.UNetFrames, want)
	}
	second := run("a green pyramid", "pyramid.mp4")
	if !second.InversionReused {
		t.Errorf("second edit: inversion_reused false, want true")
	}
	if want := editPasses(steps, n, b); second.UNetFrames != want {
		t.Errorf("second edit: unet_frame_evaluations %d, want exactly the edit's %d = %d x (3x%d keyframes + 3x%d frames)",
			second.UNetFrames, want, steps, (n+b-1)/b, n)
	}
	if second.CacheDir != first.CacheDir {
		t.Errorf("second edit used cache entry %s, the first %s", second.CacheDir, first.CacheDir)
	}
}

// TestEditFramesDirAndLongPrompt: --frames-dir gets one PNG per frame at
// the working size; a prompt past the text encoder's 77 tokens runs, with a
// warning.
func TestEditFramesDirAndLongPrompt(t *testing.T) {
	d := t.TempDir()
	frames := fixtureFrames(t, "tiny-sd15")
	long := strings.TrimSpace(strings.Repeat("a very detailed oil painting of a small red ball on a wooden table, ", 10))
	res, r := tfJSON[editResult](t, d, "edit", "--model", model(t, "tiny-sd15"), "--prompt", long,
		"--size", "48x32", "--steps", "2", "--inversion-steps", "2", "--batch-size", "4",
		"--cache-dir", filepath.Join(d, "cache"), "-o", filepath.Join(d, "out.mp4"), "--frames-dir", filepath.Join(d, "frames"), "--json", frames)
	checkStderrProgress(t, r)
	var warned bool
	for _, l := range strings.Split(r.Stderr, "\n") {
		if strings.HasPrefix(l, "warning: ") && strings.Contains(l, "prompt") && strings.Contains(l, "tokens") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning about the long prompt on stderr:\n%s", r.Stderr)
	}
	if res.FramesDir != filepath.Join(d, "frames") {
		t.Errorf("frames_dir %q", res.FramesDir)
	}
	names := testenv.DirNames(t, filepath.Join(d, "frames"))
	for _, name := range names {
		if got := pngSize(t, filepath.Join(d, "frames", name)); got.X != 48 || got.Y != 32 {
			t.Errorf("%s is %dx%d, want the working size 48x32", name, got.X, got.Y)
		}
	}
	var want []string
	for i := range 8 {
		want = append(want, video.FrameFileName(i))
	}
	if !slices.Equal(names, want) {
		t.Errorf("--frames-dir holds %q, want %q", names, want)
	}
}

// TestEditBatchLargerThanClip: --batch-size above the frame count is one
// batch of all frames (one keyframe), not an error.
func TestEditBatchLargerThanClip(t *testing.T) {
	d := t.TempDir()
	const steps, n = 2, 8
	res, r := tfJSON[editResult](t, d, "edit", "--model", model(t, "tiny-sd15"), "--prompt", "a red cube",
		"--size", "32x32", "--steps", fmt.Sprint(steps), "--inversion-steps", fmt.Sprint(steps), "--batch-size", "20",
		"--cache-dir", filepath.Join(d, "cache"), "-o", filepath.Join(d, "out.mp4"), "--json", fixtureFrames(t, "tiny-sd15"))
	checkStderrProgress(t, r)
	if res.Frames != n {
		t.Errorf("frames %d, want %d", res.Frames, n)
	}
	if want := int64(steps*n) + editPasses(steps, n, n); res.UNetFrames != want {
		t.Errorf("unet_frame_evaluations %d, want %d (one batch, one keyframe)", res.UNetFrames, want)
	}
	if _, err := os.Stat(filepath.Join(d, "out.mp4")); err != nil {
		t.Error(err)
	}
}

// TestEditConfigEndToEnd runs edit from an official-style config file
// alone, then with a flag overriding one of its keys.
func TestEditConfigEndToEnd(t *testing.T) {
	d := t.TempDir()
	outDir := filepath.Join(d, "results")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(d, "config_pnp.yaml")
	yaml := fmt.Sprintf(`seed: 1
device: 'cpu'
output_path: %q
data_path: %q
latents_path: %q
n_inversion_steps: 2
n_frames: 4
guidance_scale: 7.5
n_timesteps: 2
prompt: "a red cube"
negative_prompt: "ugly, blurry, low res, unrealistic, unaesthetic"
batch_size: 2
pnp_attn_t: 0.5
pnp_f_t: 0.8
# this tool's own keys
model: %q
size: 32x32
`, outDir, fixtureFrames(t, "tiny-sd15"), filepath.Join(d, "cache"), model(t, "tiny-sd15"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	res, _ := tfJSON[editResult](t, d, "edit", "--config", cfg, "--json")
	// output_path is a folder: the output is <input name>.tokenflow.mp4 in it.
	if want := filepath.Join(outDir, "input_frames.tokenflow.mp4"); res.Output != want {
		t.Errorf("output %q, want %q", res.Output, want)
	}
	if res.Frames != 4 || res.Size != "32x32" {
		t.Errorf("frames %d size %s, want n_frames 4 and size 32x32", res.Frames, res.Size)
	}
	if want := int64(2*4) + editPasses(2, 4, 2); res.UNetFrames != want {
		t.Errorf("unet_frame_evaluations %d, want %d (n_timesteps 2, batch_size 2)", res.UNetFrames, want)
	}
	if !strings.HasPrefix(res.CacheDir, filepath.Join(d, "cache")) {
		t.Errorf("cache_dir %q is not under latents_path", res.CacheDir)
	}
	res, _ = tfJSON[editResult](t, d, "edit", "--config", cfg, "--frames", "6", "-o", filepath.Join(d, "six.mp4"), "--json")
	if res.Frames != 6 || res.Output != filepath.Join(d, "six.mp4") {
		t.Errorf("with --frames 6 -o six.mp4: frames %d output %q", res.Frames, res.Output)
	}
}

// TestEditStepsOffTheInversionGrid: an edit whose timesteps the requested
// inversion does not visit (7 steps: 1, 143, ...; 10 steps: 1, 101, ...)
// inverts on both grids together (16 steps, the shared timestep 1 once),
// says so on stderr, and edits; the entry is reused by the same command.
func TestEditStepsOffTheInversionGrid(t *testing.T) {
	d := t.TempDir()
	args := []string{"edit", "--model", model(t, "tiny-sd15"), "--prompt", "a red cube", "--size", "32x32",
		"--steps", "7", "--inversion-steps", "10", "--batch-size", "4", "--keyframes", "middle",
		"--cache-dir", filepath.Join(d, "cache"), "--json", fixtureFrames(t, "tiny-sd15")}
	res, r := tfJSON[editResult](t, d, append(args, "-o", filepath.Join(d, "a.mp4"))...)
	if !strings.Contains(r.Stderr, "the 10-step grid does not visit every timestep of the 7-step edit; inverting on both grids together (16 steps)") {
		t.Errorf("stderr does not say the grids were joined:\n%s", r.Stderr)
	}
	if want := int64(16*8) + editPasses(7, 8, 4); res.UNetFrames != want {
		t.Errorf("%d UNet frame evaluations, want %d (a 16-step inversion and a 7-step edit)", res.UNetFrames, want)
	}
	again, _ := tfJSON[editResult](t, d, append(args, "-o", filepath.Join(d, "b.mp4"))...)
	if !again.InversionReused || again.UNetFrames != editPasses(7, 8, 4) {
		t.Errorf("the same command again: inversion_reused %v, %d evaluations; want the joined inversion reused", again.InversionReused, again.UNetFrames)
	}
}
