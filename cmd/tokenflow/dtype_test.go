package main

// --dtype: fp16 edits against fp32 ones through the real binary, the
// cache key by dtype, the default by device, and bad values.

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/sd"
)

// Bounds of an fp16 edit's final latents against the fp32 edit's, each
// from its own inversion (8 frames of 64x64, 10 inversion and 10 editing
// steps, guidance 7.5), relative to max|fp32|. fp16 keeps 11 significant
// bits: each rounding is off by up to 2^-11 (about 5e-4) relative, 8192
// times float32's 2^-24. One fp16 UNet pass, with normalisations and
// attention in float32, lands within 1e-3 to 4e-3 of the fp32 pass
// (internal/sd TestFP16Modes); the inversion's z_T within 3e-3 to 5.5e-3
// after 10 steps. The edit amplifies that: guidance multiplies the
// difference of the two branches by 7.5; TokenFlow's nearest-neighbour
// matches, decided in the fixture by margins down to 2.6e-6 (far below
// fp16's 1e-3), flip for some tokens (one propagation pass moves by up to
// 7e-2 at a point); and 10 DDIM steps carry every error on. The same
// pipeline, float32 against the official float64 twin, ends about 1.3e-5
// apart (conformance_test.go): scaled by 8192 that predicts about 1e-1 for
// fp16. Measured: tiny-sd15 0.134 of max|ref| (rel L2 0.096), tiny-sd21
// 0.075 (rel L2 0.030). The bounds are about twice those. They catch NaN,
// a graph whose fp16 weights or casts are wrong (rel L2 of 1 and more),
// not a small change of setting: on these tiny random models fp16 moves
// the edit as much as guidance 7 instead of 7.5 does (rel L2 0.054).
const (
	fp16EditRel = 0.25
	fp16EditL2  = 0.2
)

// TestEditFP16 edits the fixture clip with --dtype fp32 and --dtype fp16 on
// the CPU provider, each from its own inversion: the fp16 inversion is a
// cache entry of its own, which `invert --dtype fp16` finds again; the
// fp16 latents are finite and near the fp32 ones. Without --dtype the CPU
// runs fp32 and reuses the fp32 entry.
func TestEditFP16(t *testing.T) {
	for _, name := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			cacheDir := filepath.Join(d, "cache")
			common := []string{"--model", model(t, name), "--inversion-prompt", "a ball",
				"--inversion-steps", "10", "--steps", "10", "--batch-size", "4",
				"--size", "64x64", "--fps", "10", "--cache-dir", cacheDir, "--json"}
			edit := func(out string, dtype ...string) (editResult, []float32) {
				t.Helper()
				latents := filepath.Join(d, out+".safetensors")
				args := append([]string{"edit", "--prompt", "a red cube", "--keyframes", "middle",
					"-o", filepath.Join(d, out+".mp4"), "--save-latents", latents}, common...)
				args = append(append(args, dtype...), fixtureFrames(t, name))
				res, _ := tfJSON[editResult](t, d, args...)
				got, _ := fixture.Open(t, latents).F32("latents")
				return res, got
			}
			r32, want := edit("fp32", "--dtype", "fp32")
			r16, got := edit("fp16", "--dtype", "fp16")
			if r32.DType != "fp32" || r16.DType != "fp16" {
				t.Fatalf("dtype in the results: %q and %q, want fp32 and fp16", r32.DType, r16.DType)
			}
			if r16.InversionReused || r16.CacheDir == r32.CacheDir {
				t.Fatalf("the fp16 edit took the fp32 inversion (inversion_reused %v, %s)", r16.InversionReused, r16.CacheDir)
			}
			for i, v := range got {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("fp16 latents[%d] = %v", i, v)
				}
			}
			// the inversions, for the record (bounded through the edit)
			z32 := fixture.Open(t, filepath.Join(r32.CacheDir, "latents.safetensors"))
			z16 := fixture.Open(t, filepath.Join(r16.CacheDir, "latents.safetensors"))
			for _, n := range []string{"latents", "noisy_latents_901"} {
				a, _ := z16.F32(n)
				b, _ := z32.F32(n)
				t.Logf("fp16 vs fp32 inversion %s: %v", n, fixture.Compare(a, b))
			}
			diff := fixture.Close(t, "fp16 vs fp32 edit, final latents", got, want, fp16EditRel, 0)
			if diff.RelL2 > fp16EditL2 {
				t.Errorf("fp16 vs fp32 edit: rel L2 %.3g > %g", diff.RelL2, fp16EditL2)
			}

			inv, _ := tfJSON[invertResult](t, d, append(append([]string{"invert"}, common...), "--dtype", "fp16", fixtureFrames(t, name))...)
			if !inv.InversionReused || inv.CacheDir != r16.CacheDir || inv.DType != "fp16" {
				t.Errorf("invert --dtype fp16: reused %v in %s (dtype %q); want the fp16 edit's entry %s", inv.InversionReused, inv.CacheDir, inv.DType, r16.CacheDir)
			}
			rDef, _ := edit("default")
			if rDef.DType != "fp32" || !rDef.InversionReused || rDef.CacheDir != r32.CacheDir {
				t.Errorf("edit without --dtype on the CPU: dtype %q, reused %v in %s; want fp32 reusing %s", rDef.DType, rDef.InversionReused, rDef.CacheDir, r32.CacheDir)
			}
		})
	}
}

// TestDTypeDefaultFollowsDevice: without --dtype the request leaves the
// dtype to the pipeline, which runs fp16 on CUDA and fp32 on the CPU;
// --dtype overrides either.
func TestDTypeDefaultFollowsDevice(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want sd.DType
	}{
		{nil, sd.FP32},
		{[]string{"--device", "cpu"}, sd.FP32},
		{[]string{"--device", "cuda"}, sd.FP16},
		{[]string{"--device", "cuda", "--dtype", "fp32"}, sd.FP32},
		{[]string{"--device", "cpu", "--dtype", "fp16"}, sd.FP16},
		{[]string{"--dtype", "float16"}, sd.FP16},
	} {
		for _, command := range []string{"edit", "invert"} {
			var got sd.DType
			g := &globalOptions{Out: io.Discard, Err: io.Discard}
			capture := func(o *sourceOptions) error {
				r, err := o.request(g, "in.mp4")
				got = r.GraphDType()
				return err
			}
			cmd := newCmdEdit(g, func(_ context.Context, o *EditOptions) error { return capture(&o.sourceOptions) })
			if command == "invert" {
				cmd = newCmdInvert(g, func(_ context.Context, o *InvertOptions) error { return capture(&o.sourceOptions) })
			}
			cmd.SetArgs(append(tc.args, "in.mp4"))
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("%s %s: dtype %q, want %q", command, strings.Join(tc.args, " "), got, tc.want)
			}
		}
	}
}

// TestDTypeBadValues: a wrong --dtype, on the command line or in a
// --config file, is one usage line naming the flag, before any work.
func TestDTypeBadValues(t *testing.T) {
	d := t.TempDir()
	in := filepath.Join(d, "in.mp4")
	if err := os.WriteFile(in, []byte("not read"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(d, "edit.yaml")
	if err := os.WriteFile(cfg, []byte("prompt: x\ndtype: half\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"edit", "-p", "x", "--dtype", "fp8", in}, "tokenflow: --dtype fp8: want fp16 or fp32\n"},
		{[]string{"edit", "-p", "x", "--device", "cuda", "--dtype", "FP16", in}, "tokenflow: --dtype FP16: want fp16 or fp32\n"},
		{[]string{"invert", "--dtype", "bf16", in}, "tokenflow: --dtype bf16: want fp16 or fp32\n"},
		{[]string{"edit", "--config", cfg, in}, "tokenflow: --dtype half: want fp16 or fp32\n"}, // as --device's value in a config
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(tc.args, &stdout, &stderr)
			line := stderr.String()
			if code != exitUsage || strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "tokenflow: ") {
				t.Errorf("exit %d, stderr %q: want exit %d and one \"tokenflow: \" line", code, line, exitUsage)
			}
			if line != tc.want {
				t.Errorf("stderr %q, want %q", line, tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}
