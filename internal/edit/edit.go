// Package edit is the TokenFlow edit loop (docs/ARCHITECTURE.md, "The
// edit"): per timestep, a keyframe pass that fills the pivot cache, then
// one propagation pass per batch, classifier-free guidance and the DDIM
// step. It asks the model for UNet passes through the UNet interface, in
// host tensors, so tests can drive it with a fake.
package edit

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/pnp"
	"github.com/tokenflow/tokenflow/internal/propagate"
	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/tokens"
)

// UNet is what the edit asks of the model (sd.Model implements it).
//
// KeyframePass runs the UNet on x = [source | uncond | cond] of K keyframes
// each, text states alike, and returns the pivot cache of the K keyframes.
// PropagationPass runs it on one batch's [source | uncond | cond] of n
// frames each, taking every self-attention output from the pivot cache's
// slots pivots[0] and pivots[1] blended with weights (frame i takes
// weights[i] of the first), and returns the predicted noise [3n,C,h,w].
type UNet interface {
	KeyframePass(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, keyframes []int) (*tokens.PivotCache, error)
	PropagationPass(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, c *tokens.PivotCache, pivots [2]int, weights []float32) (tensor.Tensor, error)
}

// Params are the edit's settings, valid as the pipeline checks them (Steps
// and BatchSize at least 1, Guidance not negative, PnPAttn and PnPConv in
// [0,1]); the official defaults are Steps 50, Guidance 7.5, PnPAttn 0.5,
// PnPConv 0.8, BatchSize 8.
type Params struct {
	Steps     int
	Guidance  float64
	PnPAttn   float64
	PnPConv   float64
	BatchSize int
	Keyframes keyframes.Policy
	Seed      uint64
	// SDEdit, when set, makes the edit the official SDEdit variant (see
	// SDEdit): it runs only the schedule's kept timesteps, from the
	// noise it says, with no injection (PnPAttn and PnPConv are unused).
	SDEdit *SDEdit
	// Progress, when set, is told after each pass how many frame
	// evaluations of total are done.
	Progress func(done, total int)
}

// Inputs are what the edit starts from: the inversion and three prompts'
// text states (one row each).
type Inputs struct {
	Z0       tensor.Tensor         // VAE latents of the video [N,C,h,w]
	Noisy    map[int]tensor.Tensor // inverted latents by kept timestep
	Source   tensor.Tensor         // inversion prompt's states [1,77,C]
	Negative tensor.Tensor
	Prompt   tensor.Tensor
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
	texts  tensor.Tensor // rows [source, negative, prompt]
	n      int
	// passText caches, by frames per third, the text states of a pass:
	// [source x n | negative x n | prompt x n]; they do not change across
	// steps.
	passText map[int]tensor.Tensor
	// noInject turns all injection off (SDEdit); shared is SDEdit's
	// Gaussian noise of every frame, or empty for the inversion's.
	noInject bool
	shared   tensor.Tensor

	// Time spent in keyframe and propagation passes.
	KeyframeTime, PropagateTime time.Duration
}

// New prepares the schedules of an edit of in with p, and checks that the
// inputs fit together.
func New(u UNet, ddim *scheduler.DDIM, in Inputs, p Params) (*Editor, error) {
	n := in.Z0.N()
	if n < 1 || len(in.Z0.Shape) != 4 {
		return nil, fmt.Errorf("edit: latents of shape %v: want [N,C,h,w] with N at least 1", in.Z0.Shape)
	}
	sched, err := ddim.Schedule(p.Steps)
	if err != nil {
		return nil, err
	}
	ts := sched.Timesteps()
	if sd := p.SDEdit; sd != nil {
		if !(sd.Start > 0 && sd.Start <= 1) {
			return nil, fmt.Errorf("edit: SDEdit start %v: want a number in (0, 1]", sd.Start)
		}
		ts = ts[FirstKept(sd.Start, len(ts)):]
	}
	for _, t := range ts {
		z, ok := in.Noisy[t]
		if !ok {
			return nil, fmt.Errorf("edit: the inversion has no latents for timestep %d of the %d-step edit", t, p.Steps)
		}
		if !tensor.SameShape(z, in.Z0) {
			return nil, fmt.Errorf("edit: inverted latents at timestep %d have shape %v, want %v", t, z.Shape, in.Z0.Shape)
		}
	}
	batch := min(p.BatchSize, n)
	kf, err := keyframes.Schedule(p.Keyframes, p.Seed, len(ts), n, batch)
	if err != nil {
		return nil, err
	}
	texts, err := tensor.Concat(in.Source, in.Negative, in.Prompt)
	if err != nil || texts.N() != 3 {
		return nil, fmt.Errorf("edit: want one row of text states per prompt, of one shape: have %v, %v and %v", in.Source.Shape, in.Negative.Shape, in.Prompt.Shape)
	}
	e := &Editor{u: u, ddim: ddim, sched: sched, in: in, p: p, ts: ts, inject: pnp.NewSchedule(ts, p.PnPAttn, p.PnPConv),
		kf: kf, texts: texts, n: n, passText: map[int]tensor.Tensor{}}
	if sd := p.SDEdit; sd != nil {
		e.inject, e.noInject = pnp.Schedule{}, true
		if sd.Gaussian {
			if e.shared, err = SharedNoise(p.Seed, n, in.Z0.Shape[1:]); err != nil {
				return nil, err
			}
		}
	}
	return e, nil
}

// Timesteps is the editing schedule, descending.
func (e *Editor) Timesteps() []int { return e.ts }

// Keyframes are the keyframes of step i, one per batch.
func (e *Editor) Keyframes(i int) []int { return e.kf[i] }

// Start is the edit's starting latents: the inversion's noise
// eps = (z_tmax - sqrt(a_tmax) z0)/sqrt(1 - a_tmax), tmax the most inverted
// kept timestep, added back to z0 at the schedule's first timestep.
//
// With SDEdit's Gaussian noise, that noise is added instead.
func (e *Editor) Start() (tensor.Tensor, error) {
	if e.shared.Len() > 0 {
		x, err := e.ddim.AddNoise(e.in.Z0.Data, e.shared.Data, e.ts[0])
		if err != nil {
			return tensor.Tensor{}, err
		}
		return tensor.New(e.in.Z0.Shape, x)
	}
	tmax := slices.Max(slices.Collect(maps.Keys(e.in.Noisy)))
	eps, err := e.ddim.NoiseFromSample(e.in.Noisy[tmax].Data, e.in.Z0.Data, tmax)
	if err != nil {
		return tensor.Tensor{}, err
	}
	x, err := e.ddim.AddNoise(e.in.Z0.Data, eps, e.ts[0])
	if err != nil {
		return tensor.Tensor{}, err
	}
	return tensor.New(e.in.Z0.Shape, x)
}

// Run edits from Start to the final latents.
func (e *Editor) Run(ctx context.Context) (tensor.Tensor, error) {
	x, err := e.Start()
	if err != nil {
		return tensor.Tensor{}, err
	}
	for i := range e.ts {
		if x, err = e.Step(ctx, i, x); err != nil {
			return tensor.Tensor{}, err
		}
	}
	return x, nil
}

// textFor is the text states of a pass over n frames per third.
func (e *Editor) textFor(n int) tensor.Tensor {
	t, ok := e.passText[n]
	if !ok {
		t = e.texts.Repeat([]int{0, 1, 2}, []int{n, n, n})
		e.passText[n] = t
	}
	return t
}

// triple is the batch [src[idx] | x[idx] | x[idx]].
func triple(src, x tensor.Tensor, idx []int) tensor.Tensor {
	b := x.Gather(idx)
	out, _ := tensor.Concat(src.Gather(idx), b, b) // one shape: checked by New
	return out
}

// Step runs denoising step i (timestep ts[i]) on x and returns the new
// latents; x is not changed. Latents that come out NaN or infinite end the
// step with a *tensor.NonFiniteError naming it, its timestep and the frame.
func (e *Editor) Step(ctx context.Context, i int, x tensor.Tensor) (tensor.Tensor, error) {
	t := e.ts[i]
	src := e.in.Noisy[t]
	inj := e.inject.At(t)
	if e.noInject {
		inj = pnp.Injection{} // SDEdit: not even the official t == 1000 rule
	}
	kf := e.kf[i]
	batch := min(e.p.BatchSize, e.n)
	per := len(kf) + e.n
	done := i * per

	// 1. keyframe pass: the pivot cache of this timestep
	start := time.Now()
	cache, err := e.u.KeyframePass(ctx, triple(src, x, kf), t, e.textFor(len(kf)), inj, kf)
	if err != nil {
		return tensor.Tensor{}, err
	}
	e.KeyframeTime += time.Since(start)
	done += len(kf)
	e.progress(done)

	// 2. one propagation pass per batch, guidance, DDIM step
	plan, err := propagate.Plan(e.n, batch, kf)
	if err != nil {
		return tensor.Tensor{}, err
	}
	out := tensor.Zeros(x.Shape...)
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
			return tensor.Tensor{}, err
		}
		e.PropagateTime += time.Since(start)
		// noise = [source | uncond | cond]; guided = u + g (c - u)
		fs := x.RowSize()
		u := noise.Data[m*fs : 2*m*fs]
		c := noise.Data[2*m*fs : 3*m*fs]
		guided := make([]float32, m*fs)
		for k := range guided {
			guided[k] = u[k] + float32(g*(c[k]-u[k])) // no fused multiply-add: PyTorch rounds the product
		}
		next, err := e.sched.Step(guided, t, x.Rows(b.Start, b.End).Data)
		if err != nil {
			return tensor.Tensor{}, err
		}
		copy(out.Data[b.Start*fs:b.End*fs], next)
		if err := tensor.CheckFinite(out.Rows(b.Start, b.End), b.Start, "edit", i, len(e.ts), t); err != nil {
			return tensor.Tensor{}, err
		}
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
