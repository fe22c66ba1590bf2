package inversion_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/tokenflow/tokenflow/internal/inversion"
	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/tensor"
)

// invertAll runs inversion.Invert on a copy of z0 and returns a copy of
// the latents at every kept timestep.
func invertAll(ctx context.Context, d inversion.Denoiser, s *scheduler.DDIM, z0, cond tensor.Tensor, p inversion.Params) (map[int]tensor.Tensor, error) {
	kept := map[int]tensor.Tensor{}
	err := inversion.Invert(ctx, d, s, z0.Clone(), cond, p, func(_ context.Context, _, t int, z tensor.Tensor, keep bool) error {
		if keep {
			kept[t] = z.Clone()
		}
		return nil
	})
	return kept, err
}

// TestInvertResumes: an inversion continued from the latents after step
// k (Params.From, as a killed run resumes from its state) hands the sink
// the same steps after k and the same latents, bit for bit, as the
// uninterrupted run; a sink's error ends the inversion at once.
func TestInvertResumes(t *testing.T) {
	cfg := scheduler.DefaultConfig()
	cfg.BetaStart, cfg.BetaEnd, cfg.BetaSchedule = 0.00085, 0.012, "scaled_linear"
	cfg.StepsOffset = 1
	ddim, err := scheduler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	z0 := tensor.Zeros(3, 4, 2, 3)
	eps := make([]float32, 24)
	for i := range z0.Data {
		z0.Data[i] = float32(0.8 * math.Sin(0.3+0.7*float64(i)))
	}
	for i := range eps {
		eps[i] = float32(1.1 * math.Cos(1.9+0.45*float64(i)))
	}
	// An epsilon model answering a noise that depends on z, so that every
	// step's input matters.
	d := denoiserFunc(func(x tensor.Tensor) tensor.Tensor {
		out := tensor.Zeros(x.Shape...)
		for i, v := range x.Data {
			out.Data[i] = eps[i%len(eps)] + 0.25*float32(math.Sin(float64(v)))
		}
		return out
	})
	p := inversion.Params{Steps: 10, SaveSteps: 5, BatchSize: 2}
	type seen struct {
		step, t int
		kept    bool
		z       tensor.Tensor
	}
	run := func(z tensor.Tensor, p inversion.Params, stopAfter int) ([]seen, error) {
		var got []seen
		err := inversion.Invert(context.Background(), d, ddim, z, tensor.Zeros(1, 77, 8), p, func(_ context.Context, step, ts int, z tensor.Tensor, kept bool) error {
			got = append(got, seen{step, ts, kept, z.Clone()})
			if step == stopAfter {
				return errStop
			}
			return nil
		})
		return got, err
	}
	whole, err := run(z0.Clone(), p, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(whole) != 10 {
		t.Fatalf("the sink saw %d steps, want 10", len(whole))
	}
	plan, err := ddim.PlanInversion(10, 5)
	if err != nil {
		t.Fatal(err)
	}
	var kept []int
	for i, s := range whole {
		if s.step != i || s.t != plan.Walk[i] {
			t.Fatalf("the sink saw step %d at timestep %d, want step %d at %d", s.step, s.t, i, plan.Walk[i])
		}
		if s.kept {
			kept = append(kept, s.t)
		}
	}
	if !slices.Equal(kept, plan.Kept) {
		t.Errorf("kept timesteps %v, want the plan's %v", kept, plan.Kept)
	}
	const k = 3
	part, err := run(z0.Clone(), p, k)
	if !errors.Is(err, errStop) || len(part) != k+1 {
		t.Fatalf("the sink's error: Invert = %v after %d steps, want errStop after %d", err, len(part), k+1)
	}
	p.From = k + 1
	rest, err := run(part[k].z.Clone(), p, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 10-(k+1) {
		t.Fatalf("the resumed inversion ran %d steps, want %d", len(rest), 10-(k+1))
	}
	for i, s := range rest {
		w := whole[k+1+i]
		if s.step != w.step || s.t != w.t || s.kept != w.kept {
			t.Fatalf("resumed step %+v, want step %d t %d kept %v", s, w.step, w.t, w.kept)
		}
		for j := range w.z.Data {
			if math.Float32bits(s.z.Data[j]) != math.Float32bits(w.z.Data[j]) {
				t.Fatalf("step %d: resumed latents differ at %d: %v, want %v", s.step, j, s.z.Data[j], w.z.Data[j])
			}
		}
	}
	p.From = 11
	if _, err := run(z0.Clone(), p, -1); err == nil {
		t.Error("a resume past the walk's end was accepted")
	}
}

var errStop = errors.New("stop")

type denoiserFunc func(x tensor.Tensor) tensor.Tensor

func (f denoiserFunc) UNet(_ context.Context, x tensor.Tensor, _ int, _ tensor.Tensor) (tensor.Tensor, error) {
	return f(x), nil
}
