package scheduler

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// vGolden is testdata/vprediction/golden.json: DDIM with v-prediction in
// float64, written by golden.py from diffusers' formulas, independently of
// this package.
type vGolden struct {
	Guidance float64   `json:"guidance"`
	X        []float64 `json:"x"`
	V        []float64 `json:"v"`
	U        []float64 `json:"u"`
	C        []float64 `json:"c"`
	Convert  []struct {
		T   int       `json:"t"`
		Eps []float64 `json:"eps"`
		X0  []float64 `json:"x0"`
	} `json:"convert"`
	Step []struct {
		T    int       `json:"t"`
		Prev []float64 `json:"prev_sample"`
	} `json:"step"`
	Invert []struct {
		Prev int       `json:"prev"`
		T    int       `json:"t"`
		Z    []float64 `json:"z"`
	} `json:"invert"`
	GuidedStep []struct {
		T    int       `json:"t"`
		Prev []float64 `json:"prev_sample"`
	} `json:"guided_step"`
}

func loadVGolden(t *testing.T) vGolden {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "vprediction", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g vGolden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	n := len(g.X)
	if n == 0 || len(g.V) != n || len(g.U) != n || len(g.C) != n || len(g.Convert) == 0 || len(g.Step) == 0 || len(g.Invert) == 0 || len(g.GuidedStep) == 0 {
		t.Fatalf("golden.json: missing parts: %d values, %d conversions, %d steps, %d inversion steps, %d guided steps",
			n, len(g.Convert), len(g.Step), len(g.Invert), len(g.GuidedStep))
	}
	return g
}

// vTol is the tolerance against the float64 golden values, relative to the
// largest golden value of the tensor. The float32 path rounds the schedule
// (betas in float32, each alphas_cumprod prefix rounded to float32: up to
// ~1e-6 relative apart from float64's at t=999) and a handful of
// elementwise operations (2^-24 each), amplified by at most 1/sqrt(a_t) ~
// 15 at t=981 where x0 comes back from eps. Measured: at most 4.3e-7 of
// the scale, 2.4e-6 for the guided steps (see there); 1e-5 is the bound the
// existing float64 checks of Step use.
const vTol = 1e-5

func TestVPredictionGolden(t *testing.T) {
	g := loadVGolden(t)
	cfg := sdConfig()
	cfg.PredictionType = "v_prediction"
	s := mustNew(t, cfg)
	sched, err := s.Schedule(50)
	if err != nil {
		t.Fatal(err)
	}
	x, v := convert[float32](g.X), convert[float32](g.V)
	check := func(name string, got []float32, want []float64, scale float64) {
		t.Helper()
		d := compare(t, name, convert[float64](got), want, 0, vTol*scale)
		t.Logf("%s: max error %.3g of the scale %.3g (%.3g)", name, d.maxAbs, scale, d.maxAbs/scale)
	}
	for _, c := range g.Convert {
		eps, err := s.Epsilon(v, x, c.T)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("eps t=%d", c.T), eps, c.Eps, maxAbs(c.Eps))
		_, x0 := s.predict(v, x, s.alphasCumprod[c.T])
		check(fmt.Sprintf("x0 t=%d", c.T), x0, c.X0, maxAbs(c.X0))
	}
	for _, c := range g.Step {
		got, err := sched.Step(v, c.T, x)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("step t=%d", c.T), got, c.Prev, maxAbs(c.Prev))
		// The same step from the converted eps (the edit's path).
		eps, err := s.Epsilon(v, x, c.T)
		if err != nil {
			t.Fatal(err)
		}
		got, err = sched.StepEpsilon(eps, c.T, x)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("step from eps t=%d", c.T), got, c.Prev, maxAbs(c.Prev))
	}
	for _, c := range g.Invert {
		got, err := s.InvertStep(v, c.T, c.Prev, x)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("invert %d->%d", c.Prev, c.T), got, c.Z, maxAbs(c.Z))
	}
	// Guidance in epsilon space, as the edit does it, against diffusers'
	// guidance on the model output: equal, as eps is linear in v for a
	// fixed sample.
	u, c := convert[float32](g.U), convert[float32](g.C)
	gs := float32(g.Guidance)
	for _, gc := range g.GuidedStep {
		eu, err := s.Epsilon(u, x, gc.T)
		if err != nil {
			t.Fatal(err)
		}
		ec, err := s.Epsilon(c, x, gc.T)
		if err != nil {
			t.Fatal(err)
		}
		guided := make([]float32, len(x))
		for i := range guided {
			guided[i] = eu[i] + float32(gs*(ec[i]-eu[i]))
		}
		got, err := sched.StepEpsilon(guided, gc.T, x)
		if err != nil {
			t.Fatal(err)
		}
		// The guided output (up to ~20 here) makes x_prev a difference of
		// terms of the size of x that nearly cancel (|x_prev| ~ 0.1 at
		// t=21), so the error scale is the terms', |x|: the float32
		// schedule's own rounding, times the large guided eps.
		check(fmt.Sprintf("guided step t=%d", gc.T), got, gc.Prev, maxAbs(g.X)+maxAbs(gc.Prev))
		// diffusers' own order (guidance on v, then Step) lands as close.
		gv := make([]float32, len(x))
		for i := range gv {
			gv[i] = u[i] + float32(gs*(c[i]-u[i]))
		}
		if got, err = sched.Step(gv, gc.T, x); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("guided on v, step t=%d", gc.T), got, gc.Prev, maxAbs(g.X)+maxAbs(gc.Prev))
	}
}

// For epsilon models the conversions are the identity (the same slice) and
// StepEpsilon is Step, bit for bit: epsilon results do not move.
func TestEpsilonModelsUnchanged(t *testing.T) {
	s := mustNew(t, sdConfig())
	sched, err := s.Schedule(50)
	if err != nil {
		t.Fatal(err)
	}
	x, out := probe(64, 0.3), probe(64, 2.1)
	for _, tt := range []int{981, 481, 1} {
		eps, err := s.Epsilon(out, x, tt)
		if err != nil {
			t.Fatal(err)
		}
		if &eps[0] != &out[0] {
			t.Errorf("t=%d: Epsilon of an epsilon model's output is a copy, want the output itself", tt)
		}
		a, err := sched.Step(out, tt, x)
		if err != nil {
			t.Fatal(err)
		}
		b, err := sched.StepEpsilon(eps, tt, x)
		if err != nil {
			t.Fatal(err)
		}
		compare(t, fmt.Sprintf("StepEpsilon vs Step t=%d", tt), b, a, 0, 0)
	}
	if _, err := s.Epsilon(out, x[:3], 1); err == nil {
		t.Error("Epsilon with mismatched lengths succeeded")
	}
	if _, err := s.Epsilon(out, x, 1000); err == nil {
		t.Error("Epsilon at timestep 1000 succeeded")
	}
}
