package scheduler

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/tokenflow/tokenflow/internal/safetensors"
)

func mustNew(t *testing.T, cfg Config) *DDIM {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sdConfig() Config {
	cfg := DefaultConfig()
	cfg.BetaStart, cfg.BetaEnd, cfg.BetaSchedule = 0.00085, 0.012, "scaled_linear"
	cfg.ClipSample, cfg.SetAlphaToOne, cfg.StepsOffset = false, false, 1
	return cfg
}

// diffusers tests/schedulers/test_scheduler_ddim.py, test_steps_offset: the
// default config with steps_offset 1 gives [801, 601, 401, 201, 1] for 5
// steps (and [800, ..., 0] without the offset).
func TestTimestepsDiffusers(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		n      int
		want   []int
	}{
		{"leading offset 1", func(c *Config) { c.StepsOffset = 1 }, 5, []int{801, 601, 401, 201, 1}},
		{"leading offset 0", func(c *Config) {}, 5, []int{800, 600, 400, 200, 0}},
		{"leading 1 step", func(c *Config) { c.StepsOffset = 1 }, 1, []int{1}},
		{"leading all steps", func(c *Config) {}, 1000, nil}, // checked below: 999..0
		{"trailing", func(c *Config) { c.TimestepSpacing = "trailing" }, 5, []int{999, 799, 599, 399, 199}},
		{"trailing 3", func(c *Config) { c.TimestepSpacing = "trailing" }, 3, []int{999, 666, 332}},
		{"linspace", func(c *Config) { c.TimestepSpacing = "linspace" }, 5, []int{999, 749, 500, 250, 0}},
		{"linspace 1", func(c *Config) { c.TimestepSpacing = "linspace" }, 1, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.modify(&cfg)
			got, err := mustNew(t, cfg).Timesteps(tt.n)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == nil {
				for i := tt.n - 1; i >= 0; i-- {
					want = append(want, i)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Timesteps(%d) (-want +got):\n- %v\n+ %v", tt.n, want, got)
			}
		})
	}
}

func TestTimestepsErrors(t *testing.T) {
	s := mustNew(t, sdConfig())
	for _, n := range []int{0, -3, 1001} {
		if _, err := s.Timesteps(n); !errors.Is(err, ErrTimestep) {
			t.Errorf("Timesteps(%d) error = %v, want ErrTimestep", n, err)
		}
	}
	// 1000 steps with steps_offset 1 would reach timestep 1000.
	_, err := s.Timesteps(1000)
	if want := "timestep out of range: 1000 inference steps with leading spacing and steps_offset 1 give timestep 1000, outside [0, 1000)"; err == nil || err.Error() != want {
		t.Errorf("Timesteps(1000) error:\n got: %v\nwant: %s", err, want)
	}
}

// The conformance fixtures: DDIMScheduler.from_pretrained(<model>/scheduler)
// values from diffusers v0.20.2 (torch 1.13 CPU, float32), for both tiny
// models (their scheduler configs are identical, the files too).
func TestConformanceScheduler(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			cfg := fixtureConfig(t, model)
			s := mustNew(t, cfg)
			f, err := safetensors.Open(fixture(model, "expected", "scheduler.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f32 := func(name string) []float32 {
				t.Helper()
				v, err := f.Float32(name)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}

			// Tolerance 0: the tables are computed with the same float32
			// operations as torch's kernels (see linspace32 and New), so any
			// difference at all is a modelling error, not rounding noise.
			d := compare(t, "betas", s.betas, f32("betas"), 0, 0)
			t.Logf("betas: max abs error %g", d.maxAbs)
			d = compare(t, "alphas_cumprod", s.AlphasCumprod(), f32("alphas_cumprod"), 0, 0)
			t.Logf("alphas_cumprod: max abs error %g", d.maxAbs)
			compare(t, "final_alpha_cumprod", []float32{s.finalAlpha}, f32("final_alpha_cumprod"), 0, 0)

			for _, n := range []int{10, 20, 50, 500} {
				want, err := f.Int64(fmt.Sprintf("timesteps_%d", n))
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.Timesteps(n)
				if err != nil {
					t.Fatal(err)
				}
				g := make([]int64, len(got))
				for i, v := range got {
					g[i] = int64(v)
				}
				if !reflect.DeepEqual(g, want) {
					t.Errorf("Timesteps(%d) (-want +got):\n- %v\n+ %v", n, want, g)
				}
			}

			sample, eps := f32("step.sample"), f32("step.model_output")
			sched, err := s.Schedule(50)
			if err != nil {
				t.Fatal(err)
			}
			ts := sched.Timesteps()
			for _, i := range []int{0, 25, 49} {
				got, err := sched.Step(eps, ts[i], sample)
				if err != nil {
					t.Fatal(err)
				}
				// Tolerance 0 as well: Step performs diffusers' float32
				// operations in diffusers' order (sqrt, multiply, subtract,
				// divide, each rounded), so it reproduces torch bit for bit;
				// the fixture's own float32-vs-float64 deviation (~2e-7
				// relative) would be the tolerance of any other evaluation
				// order.
				name := fmt.Sprintf("step.prev_sample_i%d (t=%d)", i, ts[i])
				d := compare(t, name, got, f32(fmt.Sprintf("step.prev_sample_i%d", i)), 0, 0)
				t.Logf("%s: max abs error %g, max rel %g", name, d.maxAbs, d.maxRel)
			}
			got, err := s.AddNoise(sample, eps, 901)
			if err != nil {
				t.Fatal(err)
			}
			d = compare(t, "add_noise.t901", got, f32("add_noise.t901"), 0, 0)
			t.Logf("add_noise.t901: max abs error %g", d.maxAbs)
		})
	}
}

// Reference float64 formulas of the DDIM step, for the cases without a
// fixture (v_prediction, sample, clipping, inversion).
func ddimRef(pred string, out, x []float32, aModel, aFrom, aTo float64, clip float64) []float64 {
	res := make([]float64, len(x))
	for i := range x {
		o, xi := float64(out[i]), float64(x[i])
		var eps, x0 float64
		switch pred {
		case "epsilon":
			eps = o
		case "v_prediction":
			eps = math.Sqrt(aModel)*o + math.Sqrt(1-aModel)*xi
			if aModel == aFrom {
				x0 = math.Sqrt(aModel)*xi - math.Sqrt(1-aModel)*o
			}
		case "sample":
			eps = (xi - math.Sqrt(aModel)*o) / math.Sqrt(1-aModel)
			if aModel == aFrom {
				x0 = o
			}
		}
		if pred == "epsilon" || aModel != aFrom {
			x0 = (xi - math.Sqrt(1-aFrom)*eps) / math.Sqrt(aFrom)
		}
		if clip > 0 {
			x0 = math.Max(-clip, math.Min(clip, x0))
		}
		res[i] = math.Sqrt(aTo)*x0 + math.Sqrt(1-aTo)*eps
	}
	return res
}

func probe(n int, seed float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(1.3 * math.Sin(seed+0.7*float64(i)))
	}
	return v
}

func TestStepPredictionTypes(t *testing.T) {
	x, out := probe(64, 0.3), probe(64, 2.1)
	for _, pred := range []string{"epsilon", "v_prediction", "sample"} {
		for _, clip := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s clip=%v", pred, clip), func(t *testing.T) {
				cfg := sdConfig()
				cfg.PredictionType, cfg.ClipSample = pred, clip
				s := mustNew(t, cfg)
				sched, err := s.Schedule(50)
				if err != nil {
					t.Fatal(err)
				}
				for _, tt := range []int{981, 481, 1} {
					got, err := sched.Step(out, tt, x)
					if err != nil {
						t.Fatal(err)
					}
					aT := float64(s.alphasCumprod[tt])
					aPrev := float64(s.finalAlpha)
					if p := tt - 20; p >= 0 {
						aPrev = float64(s.alphasCumprod[p])
					}
					c := 0.0
					if clip {
						c = 1
					}
					want := ddimRef(pred, out, x, aT, aT, aPrev, c)
					// A handful of float32 roundings, each <= 2^-24
					// relative, amplified by at most 1/sqrt(a_t) ~ 15 at
					// t=981: 1e-5 relative to the tensor's scale is ample.
					compare(t, fmt.Sprintf("t=%d", tt), convert[float64](got), want, 0, 1e-5*maxAbs(want))
				}
			})
		}
	}
}

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

// InvertStep performs TokenFlow's float32 operations in TokenFlow's order
// (preprocess.py ddim_inversion), so it equals them bit for bit.
func TestInvertStepMatchesTokenFlowOps(t *testing.T) {
	s := mustNew(t, sdConfig())
	z, eps := probe(64, 0.5), probe(64, 1.7)
	for _, c := range []struct{ t, prev int }{{1, -1}, {101, 1}, {951, 901}} {
		got, err := s.InvertStep(eps, c.t, c.prev, z)
		if err != nil {
			t.Fatal(err)
		}
		aT := s.alphasCumprod[c.t]
		aPrev := s.finalAlpha
		if c.prev >= 0 {
			aPrev = s.alphasCumprod[c.prev]
		}
		mu, muPrev := sqrt32(aT), sqrt32(aPrev)
		sigma, sigmaPrev := sqrt32(1-aT), sqrt32(1-aPrev)
		want := make([]float32, len(z))
		for i := range z {
			predX0 := (z[i] - float32(sigmaPrev*eps[i])) / muPrev
			want[i] = float32(mu*predX0) + float32(sigma*eps[i])
		}
		compare(t, fmt.Sprintf("invert %d->%d", c.prev, c.t), got, want, 0, 0)
	}
}

// DDIM with a fixed eps is exactly reversible: inverting from t_prev to t
// and stepping back from t lands on the start (up to float32 rounding).
func TestInvertThenStepRoundTrip(t *testing.T) {
	for _, pred := range []string{"epsilon", "v_prediction", "sample"} {
		t.Run(pred, func(t *testing.T) {
			cfg := sdConfig()
			cfg.PredictionType = pred
			s := mustNew(t, cfg)
			plan, err := s.PlanInversion(10, 10)
			if err != nil {
				t.Fatal(err)
			}
			sched, err := s.Schedule(10)
			if err != nil {
				t.Fatal(err)
			}
			z0, out := probe(64, 0.9), probe(64, 4.2)
			for i, tt := range plan.Walk {
				// Step 0 starts from final_alpha_cumprod, which Step reaches
				// only from t=1; non-epsilon outputs are read relative to
				// the sample they came with, so the same output does not
				// undo the move (the float64 checks below cover them).
				if i == 0 || pred != "epsilon" {
					continue
				}
				back := through(t, z0,
					func(z0 []float32) ([]float32, error) { return s.InvertStep(out, tt, plan.Prev(i), z0) },
					func(zt []float32) ([]float32, error) { return sched.Step(out, tt, zt) })
				// Two DDIM moves in float32: errors of a few ulps of the
				// values, times 1/sqrt(a_t) <= 15. 2e-5 absolute on unit
				// values covers that with margin.
				compare(t, fmt.Sprintf("invert+step at t=%d", tt), back, z0, 0, 2e-5)
			}
			// The first inversion step starts from final_alpha_cumprod and
			// matches the float64 formula.
			got, err := s.InvertStep(out, plan.Walk[0], plan.Prev(0), z0)
			if err != nil {
				t.Fatal(err)
			}
			aT := float64(s.alphasCumprod[plan.Walk[0]])
			want := ddimRef(pred, out, z0, aT, float64(s.finalAlpha), aT, 0)
			compare(t, "first inversion step", convert[float64](got), want, 0, 1e-5*maxAbs(want))
			// And a later one.
			got, err = s.InvertStep(out, plan.Walk[5], plan.Prev(5), z0)
			if err != nil {
				t.Fatal(err)
			}
			aT = float64(s.alphasCumprod[plan.Walk[5]])
			want = ddimRef(pred, out, z0, aT, float64(s.alphasCumprod[plan.Walk[4]]), aT, 0)
			compare(t, "inversion step 5", convert[float64](got), want, 0, 1e-5*maxAbs(want))
		})
	}
}

func TestNoiseFromSampleInvertsAddNoise(t *testing.T) {
	s := mustNew(t, sdConfig())
	x0, eps := probe(64, 0.1), probe(64, 3.3)
	for _, tt := range []int{1, 501, 901, 999} {
		got := through(t, eps,
			func(eps []float32) ([]float32, error) { return s.AddNoise(x0, eps, tt) },
			func(xt []float32) ([]float32, error) { return s.NoiseFromSample(xt, x0, tt) })
		// Rounding of x_t (~1 ulp of |x_t| <= 2) divided by sqrt(1-a_t),
		// which is 0.03 at t=1: up to ~1e-5 there.
		compare(t, fmt.Sprintf("t=%d", tt), got, eps, 0, 2e-5)
	}
}

func TestBetaSchedules(t *testing.T) {
	t.Run("linear endpoints", func(t *testing.T) {
		s := mustNew(t, DefaultConfig())
		b := s.betas
		if b[0] != float32(0.0001) || b[999] != float32(0.02) {
			t.Errorf("linear betas run %g..%g, want 0.0001..0.02", b[0], b[999])
		}
		if s.finalAlpha != 1 {
			t.Errorf("set_alpha_to_one: final = %g", s.finalAlpha)
		}
	})
	t.Run("cosine", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.BetaSchedule = "squaredcos_cap_v2"
		s := mustNew(t, cfg)
		b := s.betas
		if b[999] != float32(0.999) {
			t.Errorf("last cosine beta = %g, want the 0.999 cap", b[999])
		}
		// beta_0 = 1 - alpha_bar(1/T)/alpha_bar(0), in float64 then float32.
		ab := func(x float64) float64 { c := math.Cos((x + 0.008) / 1.008 * math.Pi / 2); return c * c }
		if want := float32(1 - ab(0.001)/ab(0)); b[0] != want {
			t.Errorf("first cosine beta = %g, want %g", b[0], want)
		}
	})
	t.Run("trained", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.NumTrainTimesteps = 3
		cfg.TrainedBetas = []float64{0.1, 0.2, 0.5}
		s := mustNew(t, cfg)
		// alphas = 1 - float32(beta) in float32; the product runs in
		// float64 and each prefix is rounded to float32.
		a0, a1, a2 := 1-float32(0.1), 1-float32(0.2), 1-float32(0.5)
		want := []float32{a0, float32(float64(a0) * float64(a1)), float32(float64(a0) * float64(a1) * float64(a2))}
		compare(t, "alphas_cumprod", s.AlphasCumprod(), want, 0, 0)
	})
	t.Run("linspace32 small n", func(t *testing.T) {
		// torch.linspace(0, 1, n) values are exact in float32 for these n.
		compare(t, "n=5", linspace32(0, 1, 5), []float32{0, 0.25, 0.5, 0.75, 1}, 0, 0)
		compare(t, "n=1", linspace32(3, 7, 1), []float32{3}, 0, 0)
		got := linspace32(0, 40, 41) // vectorised part (32) and scalar tail
		for i, v := range got {
			if v != float32(i) {
				t.Fatalf("linspace32(0, 40, 41)[%d] = %g", i, v)
			}
		}
	})
}

func TestFMA32(t *testing.T) {
	tests := []struct{ a, b, c, want float32 }{
		{2, 3, 4, 10},
		{0.1, 10, -1, float32(float64(float32(0.1))*10 - 1)},
		// (1+2^-23) + 2^-24 - 2^-70 is just below a float32 tie, so it
		// rounds down to 1+2^-23; a float64 FMA would round it onto the
		// tie 1+2^-23+2^-24 first, which float32 then rounds to even,
		// 1+2^-22.
		{0x1p-24 * (1 + 0x1p-23), 1 - 0x1p-23, 1 + 0x1p-23, 1 + 0x1p-23},
	}
	for _, tt := range tests {
		if got := fma32(tt.a, tt.b, tt.c); got != tt.want {
			t.Errorf("fma32(%g, %g, %g) = %.10g, want %.10g", tt.a, tt.b, tt.c, got, tt.want)
		}
	}
}

func TestStepErrors(t *testing.T) {
	s := mustNew(t, sdConfig())
	sched, err := s.Schedule(10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sched.Step(make([]float32, 3), 1000, make([]float32, 3)); !errors.Is(err, ErrTimestep) {
		t.Errorf("Step(t=1000) error = %v", err)
	}
	if _, err := sched.Step(make([]float32, 3), 901, make([]float32, 4)); err == nil {
		t.Error("Step with mismatched lengths succeeded")
	}
	if _, err := s.InvertStep(make([]float32, 3), 101, 201, make([]float32, 3)); !errors.Is(err, ErrTimestep) {
		t.Errorf("InvertStep downwards error = %v", err)
	}
	if _, err := s.AddNoise(make([]float32, 3), make([]float32, 3), -1); !errors.Is(err, ErrTimestep) {
		t.Errorf("AddNoise(t=-1) error = %v", err)
	}
}
