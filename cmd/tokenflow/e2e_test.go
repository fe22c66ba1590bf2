package main

// End-to-end runs of `tokenflow edit` with the tiny models (one prompt,
// several prompts, v-prediction models): real binary, real ffmpeg, real
// ONNX Runtime.

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
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

// v-prediction models (the SD 2.x 768 family) through the CLI, on the tiny
// SD 2.1-shaped model marked v_prediction (testdata/vprediction/).

func vModel(t *testing.T) string { return fixture.Path(t, "vprediction", "tiny-sd21-v") }

// TestVPredictionEndToEnd: invert with its reconstruction, then edit from
// that inversion, with a v-prediction model.
func TestVPredictionEndToEnd(t *testing.T) {
	d := t.TempDir()
	frames := fixtureFrames(t, "tiny-sd21")
	common := []string{"--model", vModel(t), "--inversion-prompt", "a ball", "--size", "32x32",
		"--inversion-steps", "4", "--steps", "2", "--batch-size", "4", "--cache-dir", filepath.Join(d, "cache"), "--json"}
	inv, _ := tfJSON[invertResult](t, d, append(append([]string{"invert", "--reconstruct"}, common...), frames)...)
	if inv.Reused || inv.Frames != 8 || inv.Size != "32x32" || !slices.Equal(inv.KeptTimesteps, []int{1, 501, 751}) {
		t.Errorf("invert: %+v; want a fresh inversion of 8 frames at 32x32 keeping timesteps 1, 501, 751", inv)
	}
	if st, err := os.Stat(inv.Reconstruction); err != nil || st.Size() == 0 {
		t.Errorf("no reconstruction video: %v", err)
	}
	latents := filepath.Join(d, "latents.safetensors")
	out := filepath.Join(d, "out.mp4")
	ed, r := tfJSON[editResult](t, d, append(append([]string{"edit", "--prompt", "a red cube", "-o", out, "--save-latents", latents}, common...), frames)...)
	checkStderrProgress(t, r)
	if !ed.InversionReused || ed.CacheDir != inv.CacheDir {
		t.Errorf("edit: inversion_reused %v in %s, want the inversion of %s", ed.InversionReused, ed.CacheDir, inv.CacheDir)
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Errorf("no edited video: %v", err)
	}
	got, shape := fixture.Open(t, latents).F32("latents")
	if !slices.Equal(shape, []int64{8, 4, 4, 4}) {
		t.Errorf("latents of shape %v, want [8 4 4 4]", shape)
	}
	for i, v := range got {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("latent %d is %g", i, v)
		}
	}
}

// TestVPredictionReadsV: the model of testdata/vprediction/ is the SD 2.1
// conformance model with the same weights, so its UNet output U on z0 at
// timestep 1 is the epsilon model's. A 1-step inversion (timestep 1, from
// the final alpha a_0) gives z = A z0 + B eps with A = sqrt(a_1/a_0), B =
// sqrt(1-a_1) - sqrt(a_1) sqrt(1-a_0)/sqrt(a_0): eps = U for the epsilon
// model, eps = sqrt(a_1) U + sqrt(1-a_1) z0 for the v model. So, in
// float64 from the epsilon model's cache entry and the schedule's formula
// (scaled_linear, 0.00085 to 0.012 over 1000 steps),
//
//	z_v = A z0 + sqrt(a_1) (z_eps - A z0) + B sqrt(1-a_1) z0.
//
// Reading v as noise would give z_v = z_eps instead: 5e-4 |z0| away.
func TestVPredictionReadsV(t *testing.T) {
	d := t.TempDir()
	frames := fixtureFrames(t, "tiny-sd21")
	entry := func(m string) (z0, z1 []float32) {
		res, _ := tfJSON[invertResult](t, d, "invert", "--model", m, "--inversion-prompt", "a ball", "--size", "32x32",
			"--inversion-steps", "1", "--steps", "1", "--cache-dir", filepath.Join(d, "cache"), "--json", frames)
		f := fixture.Open(t, filepath.Join(res.CacheDir, "latents.safetensors"))
		z0, _ = f.F32("latents")
		z1, _ = f.F32("noisy_latents_1")
		return z0, z1
	}
	z0, zEps := entry(model(t, "tiny-sd21"))
	z0v, zV := entry(vModel(t))
	if !slices.Equal(z0, z0v) {
		t.Fatal("the two models' VAE latents differ: they share the VAE")
	}
	lo, hi := math.Sqrt(0.00085), math.Sqrt(0.012)
	beta := func(i int) float64 { b := lo + (hi-lo)*float64(i)/999; return b * b }
	a0 := 1 - beta(0)
	a1 := a0 * (1 - beta(1))
	A := math.Sqrt(a1 / a0)
	B := math.Sqrt(1-a1) - math.Sqrt(a1)*math.Sqrt(1-a0)/math.Sqrt(a0)
	var worst, asEps, scale float64
	for i := range z0 {
		x, e := float64(z0[i]), float64(zEps[i])
		want := A*x + math.Sqrt(a1)*(e-A*x) + B*math.Sqrt(1-a1)*x
		worst = math.Max(worst, math.Abs(float64(zV[i])-want))
		asEps = math.Max(asEps, math.Abs(e-want))
		scale = math.Max(scale, math.Abs(x))
	}
	// float32 latents of size ~scale (~4): each run rounds a few
	// operations (2^-24 relative each) and the schedule is float32 (a_t
	// within ~1e-7 of float64's). Measured 6e-7 (0.15e-6 of the scale);
	// 2e-6 of the scale is 14 times that, and 250 times below what
	// reading v as noise would give.
	tol := 2e-6 * scale
	t.Logf("max |z_v - float64 identity| %.3g (tolerance %.3g); reading v as noise would be %.3g off", worst, tol, asEps)
	if worst > tol {
		t.Errorf("the v model's inverted latents are %.3g from the float64 identity, want <= %.3g", worst, tol)
	}
	if asEps <= 10*tol {
		t.Errorf("the check cannot tell v from noise: %.3g vs tolerance %.3g", asEps, tol)
	}
}

// TestVPredictionDefaultSize: a v model's UNet says sample_size 96, so a
// 64x64 clip is worked at 768x768 (96 x the VAE's 8), said before any work.
// The run is stopped once it has said so: the work at 768x768 is not the
// point.
func TestVPredictionDefaultSize(t *testing.T) {
	d := t.TempDir()
	r := interrupt(t, d, "working size", "invert", "--model", vModel(t), "--frames", "1", "--inversion-steps", "50", "--steps", "10",
		"--cache-dir", filepath.Join(d, "cache"), fixtureFrames(t, "tiny-sd21"))
	want := "working size 768x768: the video's 64x64 scaled up to about 768x768 pixels, the model's native size; --size 64x64 keeps its own"
	if !strings.Contains(r.Stderr, want+"\n") {
		t.Errorf("stderr does not say %q:\n%s", want, r.Stderr)
	}
}

// TestVPredictionSingleFile: a single-file SD 2.x checkpoint with its
// 768-v YAML (parameterization: "v") is accepted and inverts.
func TestVPredictionSingleFile(t *testing.T) {
	d := t.TempDir()
	file := fixture.Path(t, "conformance", "single-file", "tiny-sd21-ldm.safetensors")
	yaml := fixture.Path(t, "vprediction", "tiny-sd21-ldm-v.yaml")
	res, r := tfJSON[invertResult](t, d, "invert", "--model", file, "--original-config", yaml, "--size", "32x32", "--frames", "2",
		"--inversion-steps", "2", "--steps", "2", "--cache-dir", filepath.Join(d, "cache"), "--json", fixtureFrames(t, "tiny-sd21"))
	if res.Frames != 2 || len(res.KeptTimesteps) != 2 {
		t.Errorf("invert: %+v", res)
	}
	if strings.Contains(r.Stderr, "assuming noise prediction") {
		t.Errorf("the YAML was not read:\n%s", r.Stderr)
	}
}

// TestSamplePredictionRefused: a model predicting the sample itself (no
// Stable Diffusion checkpoint does; the path is not exercised end to end)
// is refused in one line before any work.
func TestSamplePredictionRefused(t *testing.T) {
	d := t.TempDir()
	m := filepath.Join(d, "x0-model")
	if err := os.CopyFS(m, os.DirFS(model(t, "tiny-sd21"))); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(m, "scheduler", "scheduler_config.json")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), `"epsilon"`, `"sample"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := tf(t, d, "invert", "--model", m, "--size", "32x32", "--inversion-steps", "2", "--steps", "2",
		"--cache-dir", filepath.Join(d, "cache"), fixtureFrames(t, "tiny-sd21"))
	line := checkErrorLine(t, r)
	if r.Code == 0 || !strings.Contains(line, "--model "+m+": predicts the sample itself") {
		t.Errorf("exit %d, line %q: want the sample-prediction model refused", r.Code, line)
	}
	if strings.Contains(r.Stderr, "vae encode") || strings.Contains(r.Stderr, "decode video") {
		t.Errorf("work started before the refusal:\n%s", r.Stderr)
	}
}

// Several prompts in one run (README "Several prompts"), through the real
// binary, ONNX Runtime and ffmpeg.

// promptRunArgs are the settings of the runs compared below: the inv10
// fixture's, with random keyframes (so that the runs must draw the same).
func promptRunArgs(t *testing.T, name, cacheDir string) []string {
	return []string{"edit", "--model", model(t, name), "--inversion-prompt", "a ball",
		"--inversion-steps", "10", "--steps", "10", "--batch-size", "4", "--keyframes", "random", "--seed", "7",
		"--size", "64x64", "--fps", "10", "--cache-dir", cacheDir, "--json"}
}

// TestEditPromptsMatchSingleRuns: three prompts edited in one run give
// each prompt's --save-latents equal to a run of that prompt alone (same
// seed and settings), bit for bit: the one run's UNet calls hold
// [source | uncond_1..3 | cond_1..3] where the single runs' hold [source |
// uncond | cond], and ONNX Runtime's CPU kernels compute each batch row on
// its own (models.TestTokenFlowGraphPrompts checks that per pass). The one
// run inverts once and makes 1 + 2x3 = 7 UNet branch evaluations per frame
// and pass where three runs make 9.
func TestEditPromptsMatchSingleRuns(t *testing.T) {
	prompts := []string{"a red cube", "a bronze statue", "a watercolor painting"}
	for _, name := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			in := fixtureFrames(t, name)
			args := func(cache string) []string { return promptRunArgs(t, name, filepath.Join(d, cache)) }
			var want [][]float32
			for i, p := range prompts {
				lat := filepath.Join(d, fmt.Sprintf("single%d.safetensors", i+1))
				res, _ := tfJSON[editResult](t, d, append(args("single-cache"), "--prompt", p,
					"-o", filepath.Join(d, fmt.Sprintf("single%d.mp4", i+1)), "--save-latents", lat, in)...)
				if len(res.Prompts) != 1 || res.Prompts[0].Prompt != p || res.Output == "" {
					t.Fatalf("single run of %q: %+v", p, res)
				}
				got, _ := fixture.Open(t, lat).F32("latents")
				want = append(want, got)
			}

			res, r := tfJSON[editResult](t, d, append(args("multi-cache"), "--prompt", prompts[0], "--prompt", prompts[1], "--prompt", prompts[2],
				"-o", filepath.Join(d, "multi-{n}-{slug}.mp4"), "--save-latents", filepath.Join(d, "multi-{n}.safetensors"), in)...)
			if res.InversionReused {
				t.Error("the run reused an inversion from an empty cache")
			}
			// one inversion (10 steps x 8 frames), then 10 steps x 7 branches
			// x (2 keyframes + 8 frames)
			if wantEvals := int64(10*8 + 10*7*(2+8)); res.UNetFrames != wantEvals || res.PromptsPerCall != 3 {
				t.Errorf("unet_frame_evaluations %d, prompts_per_call %d; want %d and 3", res.UNetFrames, res.PromptsPerCall, wantEvals)
			}
			if !strings.Contains(r.Stderr, "3 prompts, 3 per UNet call: 7 branches per frame") {
				t.Errorf("stderr does not announce the shared passes:\n%s", r.Stderr)
			}
			if len(res.Prompts) != 3 {
				t.Fatalf("%d JSON entries, want 3: %+v", len(res.Prompts), res.Prompts)
			}
			for i, p := range res.Prompts {
				wantOut := filepath.Join(d, fmt.Sprintf("multi-%d-%s.mp4", i+1, strings.ReplaceAll(prompts[i], " ", "-")))
				if p.Prompt != prompts[i] || p.Output != wantOut || p.Error != "" || p.Latents != filepath.Join(d, fmt.Sprintf("multi-%d.safetensors", i+1)) {
					t.Errorf("entry %d: %+v, want output %s", i+1, p, wantOut)
				}
				if _, err := os.Stat(p.Output); err != nil {
					t.Errorf("prompt %d: %v", i+1, err)
				}
				got, _ := fixture.Open(t, p.Latents).F32("latents")
				diff := fixture.Close(t, fmt.Sprintf("prompt %d (%q) of the one run vs its own run", i+1, prompts[i]), got, want[i], 0, 0)
				t.Logf("prompt %d: max|diff| %g", i+1, diff.MaxAbs)
			}
			if slices.Equal(want[0], want[1]) {
				t.Fatal("two prompts gave the same latents: the comparison above would not see a prompt swapped")
			}

			// Two prompts per UNet call: the calls [source | uncond_1,2 |
			// cond_1,2] and [source | uncond_3 | cond_3], the same latents.
			if name == "tiny-sd21" {
				res, _ := tfJSON[editResult](t, d, append(args("multi-cache"), "--prompt", prompts[0], "--prompt", prompts[1], "--prompt", prompts[2],
					"--prompts-per-call", "2", "-o", filepath.Join(d, "two-{n}.mp4"), "--save-latents", filepath.Join(d, "two-{n}.safetensors"), in)...)
				if wantEvals := int64(10 * (5 + 3) * (2 + 8)); res.UNetFrames != wantEvals || res.PromptsPerCall != 2 || !res.InversionReused {
					t.Errorf("--prompts-per-call 2: unet_frame_evaluations %d, prompts_per_call %d, inversion reused %v; want %d, 2, true", res.UNetFrames, res.PromptsPerCall, res.InversionReused, wantEvals)
				}
				for i, p := range res.Prompts {
					got, _ := fixture.Open(t, p.Latents).F32("latents")
					fixture.Close(t, fmt.Sprintf("prompt %d, two per call, vs its own run", i+1), got, want[i], 0, 0)
				}
			}

			// Without --json: one output path per line, in order.
			rr := tfOK(t, d, append(slices.DeleteFunc(args("multi-cache"), func(s string) bool { return s == "--json" }),
				"--prompt", prompts[0], "--prompt", prompts[1], "-o", filepath.Join(d, "plain-{n}.mp4"), in)...)
			if got := strings.Fields(rr.Stdout); !slices.Equal(got, []string{filepath.Join(d, "plain-1.mp4"), filepath.Join(d, "plain-2.mp4")}) {
				t.Errorf("stdout %q", rr.Stdout)
			}
		})
	}
}

// TestEditPromptsOneFails: one prompt of two goes infinite (guidance 3e38
// overflows float32 wherever its cond and uncond noise differ by more than
// about 1), the other does not (it is the negative prompt itself, so its
// cond and uncond noise are equal and the guidance adds exactly 0). The
// other one's outputs are written and equal its own run's; the failed
// one's are not; the exit status is 1 and the last line names the prompt.
func TestEditPromptsOneFails(t *testing.T) {
	const name = "tiny-sd21"
	d := t.TempDir()
	in := fixtureFrames(t, name)
	args := append(promptRunArgs(t, name, filepath.Join(d, "cache")), "--guidance", "3e38", "--negative-prompt", "a ball")
	single := filepath.Join(d, "single.safetensors")
	tfJSON[editResult](t, d, append(args, "--prompt", "a ball", "-o", filepath.Join(d, "single.mp4"), "--save-latents", single, in)...)

	r := tf(t, d, append(args, "--prompt", "a ball", "--prompt", "a red cube",
		"-o", filepath.Join(d, "out-{n}.mp4"), "--save-latents", filepath.Join(d, "out-{n}.safetensors"), in)...)
	if r.Code != exitError {
		t.Fatalf("exit %d, want %d\n%v", r.Code, exitError, r)
	}
	checkErrorLine(t, r, "1 of 2 prompts failed, the others' outputs are written", `prompt 2 ("a red cube")`,
		"edit step 1 of 10", "NaN or infinite latents", "nothing was written for it")
	var res editResult
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("stdout is not the JSON result: %v\n%v", err, r)
	}
	if len(res.Prompts) != 2 || res.Prompts[0].Error != "" || res.Prompts[1].Error == "" || res.Prompts[1].Output != "" {
		t.Fatalf("entries %+v", res.Prompts)
	}
	for _, p := range []string{"out-2.mp4", "out-2.safetensors"} {
		if _, err := os.Stat(filepath.Join(d, p)); err == nil {
			t.Errorf("the failed prompt's %s was written", p)
		}
	}
	want, _ := fixture.Open(t, single).F32("latents")
	got, _ := fixture.Open(t, filepath.Join(d, "out-1.safetensors")).F32("latents")
	fixture.Close(t, "the prompt that finished vs its own run", got, want, 0, 0)
	if _, err := os.Stat(filepath.Join(d, "out-1.mp4")); err != nil {
		t.Error(err)
	}
}

// TestEditPromptsNaming: the default names of several prompts, --prompts
// FILE, and the usage errors: one path for several prompts, two prompts on
// one path, an existing output of any prompt; all before any work.
func TestEditPromptsNaming(t *testing.T) {
	const name = "tiny-sd21"
	d := t.TempDir()
	in := filepath.Join(d, "clip")
	copyDir(t, fixtureFrames(t, name), in)
	list := filepath.Join(d, "prompts.txt")
	if err := os.WriteFile(list, []byte("# styles\nA Marble statue!\n\n   \n  a bronze statue  \n# done\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(d, "cache")
	base := []string{"edit", "--model", model(t, name), "--inversion-steps", "2", "--steps", "2", "--frames", "2",
		"--size", "64x64", "--keyframes", "middle", "--cache-dir", cache}

	// usage errors first: nothing is done, not even the cache folder
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--prompt", "a", "--prompt", "b", "-o", filepath.Join(d, "x.mp4")},
			[]string{"--out " + filepath.Join(d, "x.mp4") + ": names one file for 2 prompts: give a template holding {n} (the prompt's number) or {slug} (its words), e.g. " + filepath.Join(d, "x-{n}.mp4")}},
		{[]string{"--prompt", "a", "--prompts", list, "--save-latents", filepath.Join(d, "l.safetensors")},
			[]string{"--save-latents", "names one file for 3 prompts"}},
		{[]string{"--prompt", "a b", "--prompt", "A B", "-o", filepath.Join(d, "{slug}.mp4")},
			[]string{"--out " + filepath.Join(d, "a-b.mp4") + ": is the path of prompts 1 and 2 (the same words): put {n} in the template"}},
		{[]string{"--prompts", filepath.Join(d, "missing.txt")}, []string{"--prompts " + filepath.Join(d, "missing.txt") + ": no such file or directory"}},
	} {
		r := tf(t, d, append(append(slices.Clone(base), tc.args...), in)...)
		if r.Code != exitUsage {
			t.Errorf("%q: exit %d, want %d\n%v", tc.args, r.Code, exitUsage, r)
			continue
		}
		checkErrorLine(t, r, tc.want...)
	}
	// an existing output of the second prompt stops the run before any work
	second := filepath.Join(d, "clip.2-a-bronze-statue.tokenflow.mp4")
	if err := os.WriteFile(second, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := tf(t, d, append(append(slices.Clone(base), "--prompts", list), in)...)
	checkErrorLine(t, r, second+" already exists: pass --force to overwrite it")
	if _, err := os.Stat(cache); err == nil {
		t.Errorf("the refused run made the cache folder %s", cache)
	}
	if _, err := os.Stat(filepath.Join(d, "clip.1-a-marble-statue-.tokenflow.mp4")); err == nil {
		t.Error("the refused run wrote the first prompt's output")
	}
	if err := os.Remove(second); err != nil {
		t.Fatal(err)
	}

	// --prompts FILE and the default names
	res, _ := tfJSON[editResult](t, d, append(append(slices.Clone(base), "--json", "--prompts", list, "--frames-dir", filepath.Join(d, "frames-{n}")), in)...)
	var got []string
	for _, p := range res.Prompts {
		got = append(got, p.Prompt, filepath.Base(p.Output), filepath.Base(p.FramesDir))
	}
	want := []string{"A Marble statue!", "clip.1-a-marble-statue-.tokenflow.mp4", "frames-1", "a bronze statue", "clip.2-a-bronze-statue.tokenflow.mp4", "frames-2"}
	if !slices.Equal(got, want) {
		t.Errorf("prompts and outputs (-want +got):\n-%q\n+%q", want, got)
	}
	for _, p := range res.Prompts {
		for _, f := range []string{p.Output, filepath.Join(p.FramesDir, "00001.png")} {
			if _, err := os.Stat(f); err != nil {
				t.Error(err)
			}
		}
	}
}

// TestPromptFlags: --prompt repeats in order; the command line's prompts
// replace a config's list, its --negative-prompt the config's list.
func TestPromptFlags(t *testing.T) {
	v, err := parseEdit(t, "--prompt", "a", "-p", "b", "--prompt", "c", "--prompts", "f.txt", "in")
	if err != nil || v.Prompt != "a" || !slices.Equal(v.Prompts, []string{"b", "c"}) || v.PromptsFile != "f.txt" {
		t.Errorf("repeated --prompt: %+v, %v", v, err)
	}
	cfg := writeConfig(t, "prompt: [x, y]\nnegative_prompt: [n1, n2]\n")
	v, err = parseEdit(t, "--config", cfg, "--prompt", "a", "--negative-prompt", "m", "in")
	if err != nil || v.Prompt != "a" || len(v.Prompts) != 0 || v.NegativePrompt != "m" || v.NegativePrompts != nil {
		t.Errorf("flags over a config's lists: %+v, %v", v, err)
	}
	v, err = parseEdit(t, "--config", cfg, "in")
	if err != nil || v.Prompt != "x" || !slices.Equal(v.Prompts, []string{"y"}) || !slices.Equal(v.NegativePrompts, []string{"n1", "n2"}) {
		t.Errorf("a config's lists: %+v, %v", v, err)
	}
}
