// Package edit is the TokenFlow edit loop (DESIGN.md section 4): per
// timestep, a keyframe pass that fills the pivot cache, then one
// propagation pass per batch, classifier-free guidance and the DDIM step.
// It asks the model for UNet passes through the UNet interface.
package edit

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/pnp"
	"github.com/tokenflow/tokenflow/internal/propagate"
	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/tokens"
)

// UNet is what the edit asks of the model (sd.Pipeline).
type UNet interface {
	KeyframePass(ctx context.Context, x sd.Latents, t int, text sd.TextEmbeds, inj sd.Injection, keyframes []int) (*tokens.PivotCache, error)
	PropagationPass(ctx context.Context, x sd.Latents, t int, text sd.TextEmbeds, inj sd.Injection, c *tokens.PivotCache, pivots [2]int, weights []float32) (sd.Latents, error)
}

// Params are the edit's settings; the official defaults are Steps 50,
// Guidance 7.5, PnPAttn 0.5, PnPConv 0.8, BatchSize 8.
type Params struct {
	Steps     int
	Guidance  float64
	PnPAttn   float64
	PnPConv   float64
	BatchSize int
	Keyframes keyframes.Policy
	Seed      uint64
	// Progress, when set, is told after each pass how many frame
	// evaluations of total are done.
	Progress func(done, total int)
}

// Inputs are what the edit starts from: the inversion and three prompts'
// text states (one row each).
type Inputs struct {
	Z0       sd.Latents        // VAE latents of the clip
	Noisy    map[int][]float32 // inverted latents by kept timestep
	Source   sd.TextEmbeds     // inversion prompt
	Negative sd.TextEmbeds
	Prompt   sd.TextEmbeds
}

// Editor runs one edit.
type Editor struct {
	u      UNet
	ddim   *scheduler.DDIM
	sched  *scheduler.Schedule
	in     Inputs
	p      Params
	ts     []int
	inject pnp.Schedule
	kf     [][]int
	texts  sd.TextEmbeds // rows [source, negative, prompt]
	n      int
	// passText caches, by frames per third, the text states of a pass:
	// [source x n | negative x n | prompt x n]; they do not change across
	// steps.
	passText map[int]sd.TextEmbeds

	// Time spent in keyframe and propagation passes.
	KeyframeTime, PropagateTime time.Duration
}

// New checks the settings against the inputs and prepares the schedules.
func New(u UNet, ddim *scheduler.DDIM, in Inputs, p Params) (*Editor, error) {
	if p.Steps < 1 {
		return nil, fmt.Errorf("--steps %d: must be at least 1", p.Steps)
	}
	if p.BatchSize < 1 {
		return nil, fmt.Errorf("--batch-size %d: must be at least 1", p.BatchSize)
	}
	if p.Guidance < 0 {
		return nil, fmt.Errorf("--guidance %g: must not be negative", p.Guidance)
	}
	n := int(in.Z0.Shape[0])
	if n < 1 {
		return nil, fmt.Errorf("no frames to edit")
	}
	sched, err := ddim.Schedule(p.Steps)
	if err != nil {
		return nil, fmt.Errorf("--steps: %w", err)
	}
	ts := sched.Timesteps()
	for _, t := range ts {
		if _, ok := in.Noisy[t]; !ok {
			return nil, fmt.Errorf("the inversion has no latents for timestep %d of the %d-step edit: invert with --save-steps %d", t, p.Steps, p.Steps)
		}
	}
	inject, err := pnp.NewSchedule(ts, p.PnPAttn, p.PnPConv)
	if err != nil {
		return nil, err
	}
	kf, err := keyframes.Schedule(p.Keyframes, p.Seed, len(ts), n, min(p.BatchSize, n))
	if err != nil {
		return nil, err
	}
	texts := sd.TextEmbeds{N: 3, Seq: in.Source.Seq, Width: in.Source.Width}
	for _, e := range []sd.TextEmbeds{in.Source, in.Negative, in.Prompt} {
		if e.N != 1 || e.Seq != texts.Seq || e.Width != texts.Width {
			return nil, fmt.Errorf("edit: text states must be one row of [%d,%d]", texts.Seq, texts.Width)
		}
		texts.Data = append(texts.Data, e.Data...)
	}
	return &Editor{u: u, ddim: ddim, sched: sched, in: in, p: p, ts: ts, inject: inject, kf: kf, texts: texts, n: n, passText: map[int]sd.TextEmbeds{}}, nil
}

// Timesteps is the editing schedule, descending.
func (e *Editor) Timesteps() []int { return e.ts }

// Keyframes are the keyframes of step i, one per batch.
func (e *Editor) Keyframes(i int) []int { return e.kf[i] }

// Start is the edit's starting latents: the inversion's noise
// eps = (z_tmax - sqrt(a_tmax) z0)/sqrt(1 - a_tmax), tmax the most inverted
// kept timestep, added back to z0 at the schedule's first timestep.
func (e *Editor) Start() (sd.Latents, error) {
	kept := make([]int, 0, len(e.in.Noisy))
	for t := range e.in.Noisy {
		kept = append(kept, t)
	}
	sort.Ints(kept)
	tmax := kept[len(kept)-1]
	eps, err := e.ddim.NoiseFromSample(e.in.Noisy[tmax], e.in.Z0.Data, tmax)
	if err != nil {
		return sd.Latents{}, err
	}
	x, err := e.ddim.AddNoise(e.in.Z0.Data, eps, e.ts[0])
	if err != nil {
		return sd.Latents{}, err
	}
	return sd.Latents{Shape: e.in.Z0.Shape, Data: x}, nil
}

// Run edits from Start to the final latents.
func (e *Editor) Run(ctx context.Context) (sd.Latents, error) {
	x, err := e.Start()
	if err != nil {
		return sd.Latents{}, err
	}
	for i := range e.ts {
		if x, err = e.Step(ctx, i, x); err != nil {
			return sd.Latents{}, err
		}
	}
	return x, nil
}

// textFor is the text states of a pass over n frames per third.
func (e *Editor) textFor(n int) sd.TextEmbeds {
	t, ok := e.passText[n]
	if !ok {
		t = e.texts.Repeat([]int{0, 1, 2}, []int{n, n, n})
		e.passText[n] = t
	}
	return t
}

// triple is the batch [src[idx] | x[idx] | x[idx]].
func triple(src, x sd.Latents, idx []int) sd.Latents {
	a, b := src.Gather(idx), x.Gather(idx)
	out := sd.Latents{Shape: a.Shape, Data: make([]float32, 0, 3*len(a.Data))}
	out.Shape[0] *= 3
	out.Data = append(append(append(out.Data, a.Data...), b.Data...), b.Data...)
	return out
}

// Step runs denoising step i (timestep ts[i]) on x and returns the new
// latents; x is not changed.
func (e *Editor) Step(ctx context.Context, i int, x sd.Latents) (sd.Latents, error) {
	t := e.ts[i]
	src := sd.Latents{Shape: e.in.Z0.Shape, Data: e.in.Noisy[t]}
	inj := sd.Injection{QK: e.inject.QK(t), Conv: e.inject.Conv(t)}
	kf := e.kf[i]
	batch := min(e.p.BatchSize, e.n)
	per := len(kf) + e.n
	done := i * per

	// 1. keyframe pass: the pivot cache of this timestep
	start := time.Now()
	cache, err := e.u.KeyframePass(ctx, triple(src, x, kf), t, e.textFor(len(kf)), inj, kf)
	if err != nil {
		return sd.Latents{}, err
	}
	e.KeyframeTime += time.Since(start)
	done += len(kf)
	e.progress(done)

	// 2. one propagation pass per batch, guidance, DDIM step
	plan, err := propagate.Plan(e.n, batch, kf)
	if err != nil {
		return sd.Latents{}, err
	}
	out := sd.Latents{Shape: x.Shape, Data: make([]float32, len(x.Data))}
	g := float32(e.p.Guidance)
	for _, b := range plan {
		start := time.Now()
		idx := make([]int, 0, b.End-b.Start)
		for f := b.Start; f < b.End; f++ {
			idx = append(idx, f)
		}
		m := len(idx)
		pivots := [2]int{b.PivotSlots[0], b.PivotSlots[0]}
		if len(b.PivotSlots) > 1 {
			pivots[1] = b.PivotSlots[1]
		}
		noise, err := e.u.PropagationPass(ctx, triple(src, x, idx), t, e.textFor(m), inj, cache, pivots, b.Weights)
		if err != nil {
			return sd.Latents{}, err
		}
		e.PropagateTime += time.Since(start)
		// noise = [source | uncond | cond]; guided = u + g (c - u)
		fs := x.FrameSize()
		u := noise.Data[m*fs : 2*m*fs]
		c := noise.Data[2*m*fs : 3*m*fs]
		guided := make([]float32, m*fs)
		for k := range guided {
			guided[k] = u[k] + g*(c[k]-u[k])
		}
		next, err := e.sched.Step(guided, t, x.Range(b.Start, b.End).Data)
		if err != nil {
			return sd.Latents{}, err
		}
		copy(out.Data[b.Start*fs:b.End*fs], next)
		done += m
		e.progress(done)
	}
	return out, nil
}

func (e *Editor) progress(done int) {
	if e.p.Progress != nil {
		e.p.Progress(done, len(e.ts)*(len(e.kf[0])+e.n))
	}
}
