package edit_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/tensor"
)

// TestFirstKept: the official timesteps[int(1 - start*len(timesteps)):],
// worked out by hand in Python's float64 arithmetic.
func TestFirstKept(t *testing.T) {
	for _, tc := range []struct {
		start float64
		steps int
		kept  int
		why   string
	}{
		{0.9, 50, 44, "int(1-45.0) = -44: the last 44, not 45"},
		{0.6, 10, 5, "int(1-6.0) = -5 (the conformance run: 401..1)"},
		{0.5, 10, 4, "int(1-5.0) = -4"},
		{1, 50, 49, "int(1-50) = -49: start 1 still drops the first timestep"},
		{1, 2, 1, "int(1-2) = -1"},
		{1, 1, 1, "int(1-1) = 0: everything"},
		{0.7, 10, 6, "0.7*10 = 7.000000000000001, int(-6.000000000000001) = -6"},
		{0.3, 10, 2, "0.3*10 = 3.0000000000000004, int(-2.0000000000000004) = -2"},
		{0.58, 50, 27, "0.58*50 = 28.999999999999996, int(-27.999999999999996) = -27, not 28"},
		{0.2, 10, 1, "int(1-2.0) = -1: one step"},
		{0.15, 10, 10, "int(1-1.5) = int(-0.5) = 0: every step"},
		{0.1, 10, 10, "int(1-1.0) = 0: every step"},
		{0.05, 10, 10, "int(1-0.5) = int(0.5) = 0: every step"},
		{0.9, 500, 449, "int(1-450.0) = -449"},
		{0.999, 1000, 998, "int(1-999.0) = -998"},
	} {
		t.Run(fmt.Sprintf("start%v_steps%d", tc.start, tc.steps), func(t *testing.T) {
			first := edit.FirstKept(tc.start, tc.steps)
			if got := tc.steps - first; got != tc.kept {
				t.Errorf("FirstKept(%v, %d) = %d: keeps %d timesteps, want %d (%s)", tc.start, tc.steps, first, got, tc.kept, tc.why)
			}
		})
	}
}

// sdeditInputs are fakeInputs with values that tell the latents apart.
func sdeditInputs(n int, ts []int) edit.Inputs {
	in := fakeInputs(n, ts)
	for i := range mem(in).Z0.Data {
		mem(in).Z0.Data[i] = float32(math.Sin(float64(i)))
	}
	for _, t := range ts {
		z := mem(in).Noisy[t]
		for i := range z.Data {
			z.Data[i] = float32(t)/1000 + float32(math.Cos(float64(i+t)))
		}
	}
	return in
}

// TestSDEditLoop drives the SDEdit loop with a fake UNet: 4 steps, start
// 0.75 keeps the last 2 (int(1 - 3.0) = -2); every pass has both
// injections off; the start latents are the inversion's noise of the
// noisiest timestep added to z0 at the first kept timestep.
func TestSDEditLoop(t *testing.T) {
	const steps = 4
	ddim, ts := defaultDDIM(t, steps)
	in := sdeditInputs(10, ts)
	f := &fakeUNet{}
	p := edit.Params{Steps: steps, Guidance: 7.5, PnPAttn: 1, PnPConv: 1, BatchSize: 4, Keyframes: keyframes.Middle,
		SDEdit: &edit.SDEdit{Start: 0.75}}
	e := newEditor(t, f, ddim, in, p)
	if got := e.Timesteps(); !slices.Equal(got, ts[2:]) {
		t.Fatalf("timesteps %v, want the last two of %v", got, ts)
	}
	x, err := e.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	eps, _ := ddim.NoiseFromSample(mem(in).Noisy[ts[0]].Data, mem(in).Z0.Data, ts[0])
	want, _ := ddim.AddNoise(mem(in).Z0.Data, eps, ts[2])
	if !slices.Equal(x.Data, want) {
		t.Errorf("start latents %v..., want add_noise(z0, eps of ts[0], ts[2]) %v...", x.Data[:3], want[:3])
	}
	if _, err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, t := range ts[2:] {
		calls = append(calls,
			fmt.Sprintf("t%d key [2 6 9] qk=false conv=false", t),
			fmt.Sprintf("t%d prop n=4 pivots=2,2 conv=false", t),
			fmt.Sprintf("t%d prop n=4 pivots=6,2 conv=false", t),
			fmt.Sprintf("t%d prop n=2 pivots=9,6 conv=false", t))
	}
	if !slices.Equal(f.calls, calls) {
		t.Errorf("passes mismatch (-want +got):\n-%q\n+%q", calls, f.calls)
	}

	// The same settings without SDEdit: every step, with injection.
	p.SDEdit = nil
	f = &fakeUNet{}
	e = newEditor(t, f, ddim, in, p)
	if _, err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 4*steps || f.calls[0] != fmt.Sprintf("t%d key [2 6 9] qk=true conv=true", ts[0]) {
		t.Errorf("PnP passes %q", f.calls)
	}
}

// TestSDEditNeedsOnlyKeptTimesteps: the inversion must hold the kept
// timesteps (and gives the noise from its noisiest), not the dropped ones.
func TestSDEditNeedsOnlyKeptTimesteps(t *testing.T) {
	ddim, ts := defaultDDIM(t, 4)
	p := edit.Params{Steps: 4, Guidance: 7.5, BatchSize: 4, Keyframes: keyframes.Middle, SDEdit: &edit.SDEdit{Start: 0.75}}
	if _, err := edit.New(&fakeUNet{}, ddim, sdeditInputs(3, ts[2:]), p); err != nil {
		t.Errorf("an inversion holding the kept timesteps %v: %v", ts[2:], err)
	}
	if _, err := edit.New(&fakeUNet{}, ddim, sdeditInputs(3, ts[:3]), p); err == nil {
		t.Error("an inversion without the last kept timestep was accepted")
	}
	for _, s := range []float64{0, -0.5, 1.01, math.NaN(), math.Inf(1)} {
		p.SDEdit.Start = s
		if _, err := edit.New(&fakeUNet{}, ddim, sdeditInputs(3, ts), p); err == nil {
			t.Errorf("start %v was accepted", s)
		}
	}
}

// TestSDEditGaussianNoise: use_ddim_noise false is one seeded Gaussian
// noise shared by every frame, the same for the same seed, another for
// another seed, and the start latents are z0 noised with it.
func TestSDEditGaussianNoise(t *testing.T) {
	ddim, ts := defaultDDIM(t, 10)
	const n = 5
	in := sdeditInputs(n, ts)
	start := func(seed uint64) tensor.Tensor {
		t.Helper()
		p := edit.Params{Steps: 10, Guidance: 7.5, BatchSize: 2, Keyframes: keyframes.Random, Seed: seed,
			SDEdit: &edit.SDEdit{Start: 0.6, Gaussian: true}}
		e := newEditor(t, &fakeUNet{}, ddim, in, p)
		x, err := e.Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	a, b, c := start(1), start(1), start(2)
	if !slices.Equal(a.Data, b.Data) {
		t.Error("two runs with seed 1 start from different latents")
	}
	if slices.Equal(a.Data, c.Data) {
		t.Error("seeds 1 and 2 start from the same latents")
	}
	noise, err := edit.SharedNoise(1, n, mem(in).Z0.Shape[1:])
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ddim.AddNoise(mem(in).Z0.Data, noise.Data, ts[5]) // the first kept
	if !slices.Equal(a.Data, want) {
		t.Errorf("start latents %v..., want add_noise(z0, shared noise, ts[5]) %v...", a.Data[:3], want[:3])
	}
	// one noise for all frames
	if !slices.Equal(noise.Shape, mem(in).Z0.Shape) {
		t.Fatalf("noise shape %v, want %v", noise.Shape, mem(in).Z0.Shape)
	}
	for f := 1; f < n; f++ {
		if !slices.Equal(noise.Row(f).Data, noise.Row(0).Data) {
			t.Errorf("frame %d has other noise than frame 0", f)
		}
	}
	// and it is not the inversion's
	eps, _ := ddim.NoiseFromSample(mem(in).Noisy[ts[0]].Data, mem(in).Z0.Data, ts[0])
	if slices.Equal(noise.Data, eps) {
		t.Error("Gaussian noise is the inversion's")
	}
}

// TestSharedNoiseIsGaussian: mean 0, variance 1, within 5 standard errors
// on 100 000 draws, and an odd row size filled.
func TestSharedNoiseIsGaussian(t *testing.T) {
	x, err := edit.SharedNoise(7, 1, []int64{1, 313, 319})
	if err != nil {
		t.Fatal(err)
	}
	var sum, sq float64
	for _, v := range x.Data {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	m := float64(len(x.Data))
	mean, variance := sum/m, sq/m-(sum/m)*(sum/m)
	if se := 1 / math.Sqrt(m); math.Abs(mean) > 5*se || math.Abs(variance-1) > 5*math.Sqrt(2)*se {
		t.Errorf("mean %.4f, variance %.4f of %d draws: not standard normal", mean, variance, len(x.Data))
	}
	if x.Data[len(x.Data)-1] == 0 {
		t.Error("the last value of an odd-sized row is not drawn")
	}
	if _, err := edit.SharedNoise(7, 0, []int64{4, 2, 2}); err == nil {
		t.Error("noise for 0 frames")
	}
}
