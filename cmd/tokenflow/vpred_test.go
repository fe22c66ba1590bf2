package main

// v-prediction models (the SD 2.x 768 family) through the CLI, on the tiny
// SD 2.1-shaped model marked v_prediction (testdata/vprediction/).

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
)

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
