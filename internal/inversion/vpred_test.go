package inversion_test

import (
	"context"
	"math"
	"testing"

	"github.com/tokenflow/tokenflow/internal/inversion"
	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/tensor"
)

// vOracle is a v-prediction model that knows the noise: told (z, t), it
// answers the v of the clean sample it sees in z at timestep t's noise
// level, x0 = (z - sqrt(1-a_t) eps*) / sqrt(a_t), and of the noise eps*:
// v = sqrt(a_t) eps* - sqrt(1-a_t) x0, computed in float64. An epsilon
// model alike would answer eps* itself, with which DDIM inversion and
// sampling follow z_t = sqrt(a_t) z0 + sqrt(1-a_t) eps* exactly.
type vOracle struct {
	ddim *scheduler.DDIM
	eps  []float32 // eps* of one frame
}

func (o vOracle) UNet(_ context.Context, x tensor.Tensor, t int, _ tensor.Tensor) (tensor.Tensor, error) {
	a32, err := o.ddim.AlphaCumprod(t)
	if err != nil {
		return tensor.Tensor{}, err
	}
	a := float64(a32)
	out := tensor.Zeros(x.Shape...)
	for i, z := range x.Data {
		e := float64(o.eps[i%len(o.eps)])
		x0 := (float64(z) - math.Sqrt(1-a)*e) / math.Sqrt(a)
		out.Data[i] = float32(math.Sqrt(a)*e - math.Sqrt(1-a)*x0)
	}
	return out, nil
}

// TestVPredictionInvertReconstruct: with v-prediction the inversion reads
// the model's output as noise at the timestep the model is told, so the
// oracle's inversion lands on the forward process's z_t at every kept
// timestep (float64 closed form), and the reconstruction comes back to z0: both as TokenFlow's
// epsilon inversion does with an epsilon model. (Reading v as noise, or
// converting it at the latent's own previous level as diffusers'
// DDIMInverseScheduler does, misses z_t.)
func TestVPredictionInvertReconstruct(t *testing.T) {
	cfg := scheduler.DefaultConfig()
	cfg.BetaStart, cfg.BetaEnd, cfg.BetaSchedule = 0.00085, 0.012, "scaled_linear"
	cfg.ClipSample, cfg.SetAlphaToOne, cfg.StepsOffset = false, false, 1
	cfg.PredictionType = "v_prediction"
	ddim, err := scheduler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const frames, row = 3, 4 * 2 * 3
	z0 := tensor.Zeros(frames, 4, 2, 3)
	eps := make([]float32, row)
	for i := range z0.Data {
		z0.Data[i] = float32(0.8 * math.Sin(0.3+0.7*float64(i)))
	}
	for i := range eps {
		eps[i] = float32(1.1 * math.Cos(1.9+0.45*float64(i)))
	}
	o := vOracle{ddim: ddim, eps: eps}
	p := inversion.Params{Steps: 10, SaveSteps: 10, BatchSize: 2}
	kept, err := invertAll(context.Background(), o, ddim, z0, tensor.Zeros(1, 77, 8), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 10 {
		t.Fatalf("%d kept timesteps, want 10", len(kept))
	}
	// Tolerance: float32 steps on values of size ~2, each a few ulps,
	// amplified by at most 1/sqrt(a_t) ~ 15 where x0 comes back from eps,
	// over 10 steps: 2e-5 absolute.
	const tol = 2e-5
	// The walk starts with z0 at the final alpha a_0 (set_alpha_to_one
	// false), as TokenFlow's inversion does: its clean sample is
	// (z0 - sqrt(1-a_0) eps*) / sqrt(a_0).
	f32, _ := ddim.AlphaCumprod(-1)
	af := float64(f32)
	clean := make([]float64, len(z0.Data))
	for i, v := range z0.Data {
		clean[i] = (float64(v) - math.Sqrt(1-af)*float64(eps[i%row])) / math.Sqrt(af)
	}
	last, worstAll := -1, 0.0
	for ts, z := range kept {
		a32, _ := ddim.AlphaCumprod(ts)
		a := float64(a32)
		worst := 0.0
		for i, v := range z.Data {
			want := math.Sqrt(a)*clean[i] + math.Sqrt(1-a)*float64(eps[i%row])
			worst = math.Max(worst, math.Abs(float64(v)-want))
		}
		if worst > tol {
			t.Errorf("inverted latents at t=%d: max |diff| %.3g from sqrt(a_t) x0 + sqrt(1-a_t) eps*, want <= %g", ts, worst, tol)
		}
		last, worstAll = max(last, ts), math.Max(worstAll, worst)
	}
	t.Logf("inversion: max |diff| from the forward process %.3g", worstAll)
	back, err := inversion.Reconstruct(context.Background(), o, ddim, kept[last], tensor.Zeros(1, 77, 8), p)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i, v := range back.Data {
		worst = math.Max(worst, math.Abs(float64(v-z0.Data[i])))
	}
	t.Logf("reconstruction from t=%d: max |diff| from z0 %.3g", last, worst)
	if worst > tol {
		t.Errorf("reconstruction: max |diff| %.3g from z0, want <= %g", worst, tol)
	}
}
