package inversion_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/inversion"
	"github.com/tokenflow/tokenflow/internal/pipeline"
	"github.com/tokenflow/tokenflow/internal/sdtest"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/video"
)

// fixturePixels decodes the fixture video's PNG folder (lossless, 64x64)
// into the VAE's input.
func fixturePixels(t testing.TB, model string) tensor.Tensor {
	t.Helper()
	testenv.FFmpeg(t)
	ctx := context.Background()
	in, err := video.Probe(ctx, fixture.Expected(t, model, "tokenflow_inv10", "input_frames"), video.Rational{})
	if err != nil {
		t.Fatal(err)
	}
	var px []tensor.Tensor
	for f, err := range video.Frames(ctx, in, video.DecodeOptions{Size: video.Size{W: 64, H: 64}, Range: video.Whole()}) {
		if err != nil {
			t.Fatal(err)
		}
		px = append(px, pipeline.Pixels(f))
	}
	x, err := tensor.Concat(px...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// Tolerances. The reference is float32 torch; MANIFEST.md's float64 twin
// puts its own noise at ~5e-6 of max|value| for the inverted latents and
// ~3e-5 for the reconstruction (which runs the UNet 20-40 more times).
// Ours runs other float32 kernels (ONNX Runtime), so we allow ~20x that:
// 1e-4 relative for encoding and inversion, 1e-3 for the reconstruction.
const (
	invRel   = 1e-4
	reconRel = 1e-3
)

func TestInversionConformance(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		for _, run := range []struct {
			dir   string
			steps int
		}{{"tokenflow_inv10", 10}, {"tokenflow_inv20", 20}} {
			t.Run(model+"/"+run.dir, func(t *testing.T) {
				ctx := context.Background()
				p := sdtest.Open(t, model)
				exp := fixture.Open(t, fixture.Expected(t, model, run.dir, "tokenflow.safetensors"))
				z0, err := p.EncodePixels(ctx, fixturePixels(t, model))
				if err != nil {
					t.Fatal(err)
				}
				want, _ := exp.F32("preprocess.latents")
				fixture.Close(t, "z0", z0.Data, want, invRel, 0)

				cond, err := p.EncodeText(ctx, "a ball")
				if err != nil {
					t.Fatal(err)
				}
				want, _ = exp.F32("preprocess.inversion_cond")
				fixture.Close(t, "inversion prompt states", cond.Data, want, invRel, 0)

				before := p.UNetFrames()
				noisy, err := invertAll(ctx, p, p.Scheduler, z0, cond, inversion.Params{Steps: run.steps, SaveSteps: 10, BatchSize: 4})
				if err != nil {
					t.Fatal(err)
				}
				if got := p.UNetFrames() - before; got != int64(run.steps*8) {
					t.Errorf("inversion evaluated %d frames, want %d", got, run.steps*8)
				}
				last := 0
				for _, name := range exp.Names() {
					var ts int
					if _, err := fmt.Sscanf(name, "preprocess.inverted_latents.t%04d", &ts); err != nil {
						continue
					}
					got, ok := noisy[ts]
					if !ok {
						t.Errorf("timestep %d not kept", ts)
						continue
					}
					want, _ := exp.F32(name)
					fixture.Close(t, fmt.Sprintf("z_%d", ts), got.Data, want, invRel, 0)
					last = max(last, ts)
				}
				if len(noisy) != len(exp.Names())-countOther(exp.Names()) {
					t.Errorf("kept %d timesteps, fixture has %d", len(noisy), len(exp.Names())-countOther(exp.Names()))
				}

				recon, err := inversion.Reconstruct(ctx, p, p.Scheduler, noisy[last], cond, inversion.Params{Steps: run.steps, BatchSize: 4})
				if err != nil {
					t.Fatal(err)
				}
				want, _ = exp.F32("preprocess.ddim_recon_latents")
				fixture.Close(t, "reconstruction", recon.Data, want, reconRel, 0)
			})
		}
	}
}

func countOther(names []string) int {
	n := 0
	for _, name := range names {
		var ts int
		if _, err := fmt.Sscanf(name, "preprocess.inverted_latents.t%04d", &ts); err != nil {
			n++
		}
	}
	return n
}
