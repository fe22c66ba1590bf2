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
// weights[i] of the first), and returns the model's output [3n,C,h,w]:
// the predicted noise, or v for a v-prediction model (the scheduler's
// prediction_type says which; the edit converts it to noise).
//
// With m prompts in one call, x is 1 + 2m groups of K (or n) frames,
// [source | uncond_1..uncond_m | cond_1..cond_m]: the source group once,
// its injected features shared by every prompt; the cache and the noise
// are in the same groups. One prompt is m = 1, the thirds above.
//
// WindowKeyframePass is KeyframePass for a windowed step (see Window):
// every edited group also attends to its group's kept anchor keys/values
// (anchors nil: none), and with keep it returns this pass's own
// keys/values of the edited groups (after query/key injection), [2m,K*S,C]
// per layer. With anchors nil and keep false it is KeyframePass.
type UNet interface {
	KeyframePass(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, keyframes []int) (*tokens.PivotCache, error)
	WindowKeyframePass(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, keyframes []int, anchors *tokens.AnchorKV, keep bool) (*tokens.PivotCache, *tokens.AnchorKV, error)
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
	// PromptsPerCall bounds how many prompts share one UNet call (0: all
	// of them). A call over m prompts holds 1 + 2m groups of frames, so
	// its memory grows with m (see the pipeline's estimate); prompts in
	// separate calls give the same results, the source group is then
	// evaluated once per call.
	PromptsPerCall int
	// KeyframeWindow is W, the most keyframes one keyframe pass attends
	// to (0: no bound, every step official). A step with more keyframes
	// than W is windowed (see Window); with at most W it is the official
	// keyframe pass, bit for bit.
	KeyframeWindow int
	// SDEdit, when set, makes the edit the official SDEdit variant (see
	// SDEdit): it runs only the schedule's kept timesteps, from the
	// noise it says, with no injection (PnPAttn and PnPConv are unused).
	SDEdit *SDEdit
	// Progress, when set, is told after each pass how many frame
	// evaluations of total are done.
	Progress func(done, total int)
}

// Inputs are what the edit starts from: the inversion and the prompts'
// text states.
type Inputs struct {
	Inversion Inversion     // z0 and the inverted latents, read as needed
	Source    tensor.Tensor // inversion prompt's states [1,77,C]
	Negative  tensor.Tensor // [1,77,C] for every prompt, or one row per prompt
	Prompt    tensor.Tensor // [P,77,C]: one row per prompt to edit with
}

// Inversion is the inverted clip as the edit reads it, one tensor of all
// frames at a time: Start reads z0 and the most inverted latents, each
// step the latents at its timestep, so that only the current timestep's
// stay in memory. The cache entry (cache.Reader) reads them from disk;
// Memory holds them.
type Inversion interface {
	// Shape is [N,C,h,w], the shape of every tensor.
	Shape() []int64
	// Kept is the kept timesteps, ascending.
	Kept() []int
	// Latents reads z0, the frames' VAE latents.
	Latents(ctx context.Context) (tensor.Tensor, error)
	// At reads the inverted latents at kept timestep t.
	At(ctx context.Context, t int) (tensor.Tensor, error)
}

// Memory is an Inversion held in memory: Z0 and the inverted latents by
// kept timestep.
type Memory struct {
	Z0    tensor.Tensor
	Noisy map[int]tensor.Tensor
}

func (m *Memory) Shape() []int64 { return m.Z0.Shape }
func (m *Memory) Kept() []int    { return slices.Sorted(maps.Keys(m.Noisy)) }
func (m *Memory) Latents(context.Context) (tensor.Tensor, error) {
	return m.Z0, nil
}
func (m *Memory) At(_ context.Context, t int) (tensor.Tensor, error) {
	z, ok := m.Noisy[t]
	switch {
	case !ok:
		return tensor.Tensor{}, fmt.Errorf("edit: the inversion has no latents for timestep %d", t)
	case !tensor.SameShape(z, m.Z0):
		return tensor.Tensor{}, fmt.Errorf("edit: inverted latents at timestep %d have shape %v, want %v", t, z.Shape, m.Z0.Shape)
	}
	return z, nil
}

// Editor runs one edit.
type Editor struct {
	u       UNet
	ddim    *scheduler.DDIM
	sched   *scheduler.Schedule
	in      Inputs
	p       Params
	ts      []int
	inject  pnp.Schedule
	kf      [][]int
	texts   tensor.Tensor // rows [source, negative_1..P, prompt_1..P]
	n       int
	prompts int
	// passText caches, by frames per group and prompts, the text states of
	// a pass: [source x n | negative_p x n ... | prompt_p x n ...]; they do
	// not change across steps.
	passText map[string]tensor.Tensor
	// noInject turns all injection off (SDEdit); shared is SDEdit's
	// Gaussian noise of every frame, or empty for the inversion's.
	noInject bool
	shared   tensor.Tensor

	// Time spent in keyframe and propagation passes.
	KeyframeTime, PropagateTime time.Duration
	// PeakPivots is the most keyframes' pivots a windowed step has held
	// at once (0 when no step was windowed); held are those of the
	// windowed step running.
	PeakPivots int
	held       map[int]*tokens.PivotCache
}

// New prepares the schedules of an edit of in with p, and checks that the
// inputs fit together.
func New(u UNet, ddim *scheduler.DDIM, in Inputs, p Params) (*Editor, error) {
	if in.Inversion == nil {
		return nil, fmt.Errorf("edit: no inversion to start from")
	}
	shape := in.Inversion.Shape()
	if len(shape) != 4 || shape[0] < 1 {
		return nil, fmt.Errorf("edit: latents of shape %v: want [N,C,h,w] with N at least 1", shape)
	}
	n := int(shape[0])
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
	kept := in.Inversion.Kept()
	for _, t := range ts {
		if !slices.Contains(kept, t) {
			return nil, fmt.Errorf("edit: the inversion has no latents for timestep %d of the %d-step edit", t, p.Steps)
		}
	}
	if m, ok := in.Inversion.(*Memory); ok {
		for _, t := range ts {
			if _, err := m.At(context.Background(), t); err != nil {
				return nil, err
			}
		}
	}
	batch := min(p.BatchSize, n)
	kf, err := keyframes.Schedule(p.Keyframes, p.Seed, len(ts), n, batch)
	if err != nil {
		return nil, err
	}
	P := in.Prompt.N()
	neg := in.Negative
	if neg.N() == 1 && P > 1 {
		neg = neg.Repeat([]int{0}, []int{P})
	}
	texts, err := tensor.Concat(in.Source, neg, in.Prompt)
	if err != nil || P < 1 || in.Source.N() != 1 || neg.N() != P {
		return nil, fmt.Errorf("edit: want one row of text states per prompt (the negative's once or per prompt), of one shape: have %v, %v and %v", in.Source.Shape, in.Negative.Shape, in.Prompt.Shape)
	}
	e := &Editor{u: u, ddim: ddim, sched: sched, in: in, p: p, ts: ts, inject: pnp.NewSchedule(ts, p.PnPAttn, p.PnPConv),
		kf: kf, texts: texts, n: n, prompts: P, passText: map[string]tensor.Tensor{}}
	if sd := p.SDEdit; sd != nil {
		e.inject, e.noInject = pnp.Schedule{}, true
		if sd.Gaussian {
			if e.shared, err = SharedNoise(p.Seed, n, shape[1:]); err != nil {
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

// Window is step i's keyframe schedule under Params.KeyframeWindow.
func (e *Editor) Window(i int) Window { return WindowPlan(len(e.kf[i]), e.p.KeyframeWindow) }

// injection is the Plug-and-Play injection at timestep t.
func (e *Editor) injection(t int) pnp.Injection {
	if e.noInject {
		return pnp.Injection{} // SDEdit: not even the official t == 1000 rule
	}
	return e.inject.At(t)
}

// Start is the edit's starting latents: the inversion's noise
// eps = (z_tmax - sqrt(a_tmax) z0)/sqrt(1 - a_tmax), tmax the most inverted
// kept timestep, added back to z0 at the schedule's first timestep.
//
// With SDEdit's Gaussian noise, that noise is added instead.
func (e *Editor) Start(ctx context.Context) (tensor.Tensor, error) {
	z0, err := e.in.Inversion.Latents(ctx)
	if err != nil {
		return tensor.Tensor{}, err
	}
	if e.shared.Len() > 0 {
		x, err := e.ddim.AddNoise(z0.Data, e.shared.Data, e.ts[0])
		if err != nil {
			return tensor.Tensor{}, err
		}
		return tensor.New(z0.Shape, x)
	}
	tmax := slices.Max(e.in.Inversion.Kept())
	zT, err := e.in.Inversion.At(ctx, tmax)
	if err != nil {
		return tensor.Tensor{}, err
	}
	eps, err := e.ddim.NoiseFromSample(zT.Data, z0.Data, tmax)
	if err != nil {
		return tensor.Tensor{}, err
	}
	x, err := e.ddim.AddNoise(z0.Data, eps, e.ts[0])
	if err != nil {
		return tensor.Tensor{}, err
	}
	return tensor.New(z0.Shape, x)
}

// Run edits from Start to the final latents, for an edit of one prompt.
func (e *Editor) Run(ctx context.Context) (tensor.Tensor, error) {
	if e.prompts != 1 {
		return tensor.Tensor{}, fmt.Errorf("edit: Run edits one prompt, this edit has %d: use RunPrompts", e.prompts)
	}
	xs, errs, err := e.RunPrompts(ctx)
	if err != nil {
		return tensor.Tensor{}, err
	}
	return xs[0], errs[0]
}

// RunPrompts edits every prompt from Start to its final latents, xs[p].
// A prompt whose latents go NaN or infinite stops there, its
// *tensor.NonFiniteError in errs[p] (xs[p] empty), and the others go on;
// err is an error that stopped them all (the UNet's, cancellation).
func (e *Editor) RunPrompts(ctx context.Context) (xs []tensor.Tensor, errs []error, err error) {
	x, err := e.Start(ctx)
	if err != nil {
		return nil, nil, err
	}
	s := State{Xs: make([]tensor.Tensor, e.prompts), Errs: make([]error, e.prompts)}
	for p := range s.Xs {
		s.Xs[p] = x
	}
	return e.RunFrom(ctx, s, nil)
}

// State is where an edit stands between two steps: Step steps are done,
// Xs[p] is prompt p's latents after them (empty for a prompt that has
// failed, Errs[p] its error). A state given to RunFrom is what an earlier
// run's after callback was given: the steps from State.Step on then give
// the latents an uninterrupted run gives, bit for bit.
type State struct {
	Step int
	Xs   []tensor.Tensor
	Errs []error
}

// RunFrom runs the steps from s.Step to the last on s (s is not changed)
// and returns every prompt's final latents and errors, as RunPrompts.
// After each step, after (when set) is given the new state; an error
// from it stops the run and is returned. A state with every step done
// returns its latents as they are.
func (e *Editor) RunFrom(ctx context.Context, s State, after func(State) error) (xs []tensor.Tensor, errs []error, err error) {
	if s.Step < 0 || s.Step > len(e.ts) || len(s.Xs) != e.prompts || len(s.Errs) != e.prompts {
		return nil, nil, fmt.Errorf("edit: a state at step %d of %d with %d prompts' latents and %d errors, for an edit of %d steps and %d prompts",
			s.Step, len(e.ts), len(s.Xs), len(s.Errs), len(e.ts), e.prompts)
	}
	xs, errs = slices.Clone(s.Xs), slices.Clone(s.Errs)
	for i := s.Step; i < len(e.ts); i++ {
		if !slices.ContainsFunc(xs, func(x tensor.Tensor) bool { return x.Data != nil }) {
			break // every prompt failed
		}
		next, stepErrs, err := e.StepPrompts(ctx, i, xs)
		if err != nil {
			return nil, nil, err
		}
		for p, err := range stepErrs {
			if err != nil {
				errs[p] = err
			}
		}
		xs = next
		if after != nil {
			if err := after(State{Step: i + 1, Xs: slices.Clone(xs), Errs: slices.Clone(errs)}); err != nil {
				return nil, nil, err
			}
		}
	}
	return xs, errs, nil
}

// Steps is the number of denoising steps the edit runs.
func (e *Editor) Steps() int { return len(e.ts) }

// Schedule is every step's keyframes (Keyframes of each step).
func (e *Editor) Schedule() [][]int { return e.kf }

// Total is the edit's work in frame evaluations, as Params.Progress
// counts it.
func (e *Editor) Total() int { return len(e.ts) * (len(e.kf[0]) + e.n) * e.prompts }

// textFor is the text states of a pass over n frames per group for the
// prompts ps: [source x n | negative_p x n ... | prompt_p x n ...].
func (e *Editor) textFor(n int, ps []int) tensor.Tensor {
	key := fmt.Sprint(n, ps)
	t, ok := e.passText[key]
	if !ok {
		rows := []int{0}
		for _, p := range ps {
			rows = append(rows, 1+p)
		}
		for _, p := range ps {
			rows = append(rows, 1+e.prompts+p)
		}
		counts := make([]int, len(rows))
		for k := range counts {
			counts[k] = n
		}
		t = e.texts.Repeat(rows, counts)
		e.passText[key] = t
	}
	return t
}

// groups is the batch [src[idx] | xs[p][idx] ... | xs[p][idx] ...] of the
// prompts ps: the source once, then each prompt's latents for its uncond
// and again for its cond group.
func groups(src tensor.Tensor, xs []tensor.Tensor, ps, idx []int) tensor.Tensor {
	parts := []tensor.Tensor{src.Gather(idx)}
	for _, p := range ps {
		parts = append(parts, xs[p].Gather(idx))
	}
	parts = append(parts, parts[1:]...)
	out, _ := tensor.Concat(parts...) // one shape: checked by New
	return out
}

// keepGroups is the pivot cache of a pass over m prompts (K keyframes per
// group) narrowed to the prompts at positions keep of the m.
func keepGroups(c *tokens.PivotCache, m int, keep []int) *tokens.PivotCache {
	K := len(c.Keyframes)
	var idx []int
	add := func(g int) {
		for k := range K {
			idx = append(idx, g*K+k)
		}
	}
	add(0)
	for _, j := range keep {
		add(1 + j)
	}
	for _, j := range keep {
		add(1 + m + j)
	}
	out := &tokens.PivotCache{Keyframes: c.Keyframes, Tokens: c.Tokens, Attn: map[string]tensor.Tensor{}}
	for path, a := range c.Attn {
		out.Attn[path] = a.Gather(idx)
	}
	return out
}

// chunks splits the prompts ps into the calls' prompt lists.
func (e *Editor) chunks(ps []int) [][]int {
	m := e.p.PromptsPerCall
	if m < 1 {
		m = len(ps)
	}
	var out [][]int
	for len(ps) > 0 {
		k := min(m, len(ps))
		out = append(out, ps[:k])
		ps = ps[k:]
	}
	return out
}

// Step runs denoising step i (timestep ts[i]) on x and returns the new
// latents, for an edit of one prompt; x is not changed. Latents that come
// out NaN or infinite end the step with a *tensor.NonFiniteError naming
// it, its timestep and the frame.
func (e *Editor) Step(ctx context.Context, i int, x tensor.Tensor) (tensor.Tensor, error) {
	if e.prompts != 1 {
		return tensor.Tensor{}, fmt.Errorf("edit: Step edits one prompt, this edit has %d: use StepPrompts", e.prompts)
	}
	xs, errs, err := e.StepPrompts(ctx, i, []tensor.Tensor{x})
	if err != nil {
		return tensor.Tensor{}, err
	}
	return xs[0], errs[0]
}

// StepPrompts runs denoising step i (timestep ts[i]) on every prompt's
// latents xs[p] (an empty tensor: a prompt that has failed, skipped) and
// returns the new latents; xs is not changed. A prompt whose latents come
// out NaN or infinite gets a *tensor.NonFiniteError naming the step, its
// timestep and the frame in errs[p], and empty latents; it is left out of
// the step's remaining passes. err is an error that stops every prompt.
//
// The prompts of one call (Params.PromptsPerCall) share its source group:
// one keyframe pass and one propagation pass per batch for all of them.
func (e *Editor) StepPrompts(ctx context.Context, i int, xs []tensor.Tensor) (next []tensor.Tensor, errs []error, err error) {
	if len(xs) != e.prompts {
		return nil, nil, fmt.Errorf("edit: %d prompts' latents for an edit of %d", len(xs), e.prompts)
	}
	t := e.ts[i]
	src, err := e.in.Inversion.At(ctx, t) // read once per step
	if err != nil {
		return nil, nil, err
	}
	inj := e.injection(t)
	kf := e.kf[i]
	win := e.Window(i)
	batch := min(e.p.BatchSize, e.n)
	per := len(kf) + e.n
	done := i * per * e.prompts
	next = make([]tensor.Tensor, e.prompts)
	errs = make([]error, e.prompts)
	var active []int
	for p, x := range xs {
		if x.Data != nil {
			active = append(active, p)
		}
	}
	plan, err := propagate.Plan(e.n, batch, kf)
	if err != nil {
		return nil, nil, err
	}
	g := float32(e.p.Guidance)
	for _, ps := range e.chunks(active) {
		// 1. keyframe pass: the pivot cache of this timestep; windowed,
		// the anchors' pass, the other keyframes' passes as batches need
		// them (step 2)
		pass := func(slots []int, anchors *tokens.AnchorKV, keep bool) (*tokens.PivotCache, *tokens.AnchorKV, error) {
			return e.keyframePass(ctx, src, xs, ps, t, kf, slots, anchors, keep, &done)
		}
		var cache *tokens.PivotCache
		var w *window
		if win.Windowed() {
			w = newWindow(e, win, kf, pass)
			if err := w.start(); err != nil {
				return nil, nil, err
			}
		} else if cache, _, err = pass(win.Chunks[0], nil, false); err != nil {
			return nil, nil, err
		}

		// 2. one propagation pass per batch, guidance, DDIM step
		outs := make([]tensor.Tensor, len(ps))
		for j := range outs {
			outs[j] = tensor.Zeros(xs[ps[j]].Shape...)
		}
		live := slices.Clone(ps)    // the prompts still finite, and their
		pos := make([]int, len(ps)) // positions in ps (the cache's groups)
		for j := range pos {
			pos[j] = j
		}
		for bi, b := range plan {
			if len(live) == 0 {
				break
			}
			c := cache
			pivots := [2]int{b.PivotSlots[0], b.PivotSlots[0]}
			if len(b.PivotSlots) > 1 {
				pivots[1] = b.PivotSlots[1]
			}
			if w != nil {
				if c, pivots, err = w.forBatch(bi); err != nil {
					return nil, nil, err
				}
			}
			start := time.Now()
			idx := make([]int, 0, b.End-b.Start)
			for f := b.Start; f < b.End; f++ {
				idx = append(idx, f)
			}
			m := len(idx)
			if len(live) < len(ps) {
				c = keepGroups(c, len(ps), pos)
			}
			noise, err := e.u.PropagationPass(ctx, groups(src, xs, live, idx), t, e.textFor(m, live), inj, c, pivots, b.Weights)
			if err != nil {
				return nil, nil, err
			}
			e.PropagateTime += time.Since(start)
			// noise = [source | uncond_1.. | cond_1..]; guided = u + g (c - u),
			// in epsilon space: a v-prediction model's outputs are converted
			// to eps first (for epsilon models Epsilon is the output itself).
			fs := xs[live[0]].RowSize()
			L := len(live)
			var failed []int
			for j, p := range live {
				xb := xs[p].Rows(b.Start, b.End).Data
				u, err := e.ddim.Epsilon(noise.Data[(1+j)*m*fs:(2+j)*m*fs], xb, t)
				if err != nil {
					return nil, nil, err
				}
				c, err := e.ddim.Epsilon(noise.Data[(1+L+j)*m*fs:(2+L+j)*m*fs], xb, t)
				if err != nil {
					return nil, nil, err
				}
				guided := make([]float32, m*fs)
				for k := range guided {
					guided[k] = u[k] + float32(g*(c[k]-u[k])) // no fused multiply-add: PyTorch rounds the product
				}
				nx, err := e.sched.StepEpsilon(guided, t, xb)
				if err != nil {
					return nil, nil, err
				}
				out := outs[pos[j]]
				copy(out.Data[b.Start*fs:b.End*fs], nx)
				if err := tensor.CheckFinite(out.Rows(b.Start, b.End), b.Start, "edit", i, len(e.ts), t); err != nil {
					errs[p] = err
					failed = append(failed, j)
				}
			}
			for k := len(failed) - 1; k >= 0; k-- {
				live = slices.Delete(live, failed[k], failed[k]+1)
				pos = slices.Delete(pos, failed[k], failed[k]+1)
			}
			done += m * L
			e.progress(done)
			if w != nil {
				w.done(bi)
			}
		}
		e.held = nil
		for j, p := range ps {
			if errs[p] == nil {
				next[p] = outs[j]
			}
		}
	}
	e.progress((i + 1) * per * e.prompts)
	return next, errs, nil
}

func (e *Editor) progress(done int) {
	if e.p.Progress != nil {
		e.p.Progress(done, e.Total())
	}
}
