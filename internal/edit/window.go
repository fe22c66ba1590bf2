package edit

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/tokens"
)

// Bounded keyframe attention (docs/ARCHITECTURE.md, "Bounded keyframe
// attention"). A step has K keyframes, one per batch. With a window W and
// K <= W (or W = 0) the step's keyframe pass is the official one: all K
// keyframes in one pass, every edited group attending to all of them.
// With K > W the step is windowed:
//
//	A = W/2 anchors (integer division), the keyframe slots (positions in
//	    the step's keyframe list, i.e. batch indices)
//	        a_j = floor((2j+1) K / (2A)),  j = 0..A-1,
//	    the middles of A equal parts of the clip's keyframes;
//	the anchors' pass comes first: the A anchors together, extended
//	    attention among themselves exactly as the official pass, and it
//	    keeps each layer's keys/values of the edited groups (after
//	    Plug-and-Play query/key injection: what the pass used);
//	the other K - A slots, in clip order, go in chunks of at most W - A
//	    consecutive ones; each chunk's pass attends to its own keyframes
//	    plus the anchors' kept keys/values (the anchors are not
//	    recomputed and not attended to by one another again).
//
// Propagation is interleaved: batches go in clip order; before batch b
// the chunk holding slot b runs if it has not; batch b reads the pivots of
// slots b and b-1; after it, slot b-1's pivots are dropped (batch b was
// the last to need them). Every propagation pass reads the step's starting
// latents, so the order changes no result. Pivots held at once: the
// anchors still pending, one chunk and the previous slot, at most W + 1.

// Window is the keyframe schedule of one step.
type Window struct {
	// Anchors are the anchors' slots, ascending; empty for the official
	// pass (K <= W, or no window).
	Anchors []int
	// Chunks are the other slots in clip order, at most W - A each; for
	// the official pass, one chunk of all K slots.
	Chunks [][]int
}

// Windowed says whether the step uses the windowed rule.
func (w Window) Windowed() bool { return len(w.Anchors) > 0 }

// WindowPlan is the keyframe schedule of a step of K keyframes under
// window W (0: no window). W = 1 is not a window (no room for an anchor):
// the pipeline refuses it; here it counts as none.
func WindowPlan(K, W int) Window {
	all := make([]int, K)
	for i := range all {
		all[i] = i
	}
	if W < 2 || K <= W {
		return Window{Chunks: [][]int{all}}
	}
	A := W / 2
	w := Window{}
	isAnchor := map[int]bool{}
	for j := range A {
		a := (2*j + 1) * K / (2 * A)
		w.Anchors = append(w.Anchors, a)
		isAnchor[a] = true
	}
	var rest []int
	for _, s := range all {
		if !isAnchor[s] {
			rest = append(rest, s)
		}
	}
	for len(rest) > 0 {
		n := min(W-A, len(rest))
		w.Chunks = append(w.Chunks, rest[:n])
		rest = rest[n:]
	}
	return w
}

// window is the pivots of one windowed step for the prompts of one call:
// it runs the keyframe passes when a batch needs them and holds each
// slot's pivots until no pending batch needs them.
type window struct {
	e       *Editor
	plan    Window
	kf      []int // the step's keyframes (frame of each slot)
	pass    func(slots []int, anchors *tokens.AnchorKV, keep bool) (*tokens.PivotCache, *tokens.AnchorKV, error)
	anchors *tokens.AnchorKV
	next    int // the next chunk to run
	chunkOf map[int]int
}

func newWindow(e *Editor, plan Window, kf []int, pass func([]int, *tokens.AnchorKV, bool) (*tokens.PivotCache, *tokens.AnchorKV, error)) *window {
	w := &window{e: e, plan: plan, kf: kf, pass: pass, chunkOf: map[int]int{}}
	for c, slots := range plan.Chunks {
		for _, s := range slots {
			w.chunkOf[s] = c
		}
	}
	e.held = map[int]*tokens.PivotCache{}
	return w
}

// start runs the anchors' pass.
func (w *window) start() error {
	c, kv, err := w.pass(w.plan.Anchors, nil, true)
	if err != nil {
		return err
	}
	if kv == nil {
		return fmt.Errorf("edit: the anchors' keyframe pass kept no keys/values")
	}
	w.anchors = kv
	w.hold(w.plan.Anchors, c)
	return nil
}

// hold splits a pass's pivot cache (its keyframes the slots) into one
// cache per slot, layer by layer, letting go of each layer of the pass's
// cache once copied.
func (w *window) hold(slots []int, c *tokens.PivotCache) {
	K := len(slots)
	per := make([]*tokens.PivotCache, K)
	for j, s := range slots {
		per[j] = &tokens.PivotCache{Keyframes: []int{w.kf[s]}, Tokens: map[string]tensor.Tensor{}, Attn: map[string]tensor.Tensor{}}
	}
	for path, v := range c.Tokens {
		for j := range per {
			per[j].Tokens[path] = v.Gather([]int{j})
		}
		delete(c.Tokens, path)
	}
	for path, v := range c.Attn {
		G := v.N() / K
		for j := range per {
			idx := make([]int, G)
			for g := range idx {
				idx[g] = g*K + j
			}
			per[j].Attn[path] = v.Gather(idx)
		}
		delete(c.Attn, path)
	}
	for j, s := range slots {
		w.e.held[s] = per[j]
	}
	w.e.PeakPivots = max(w.e.PeakPivots, len(w.e.held))
}

// forBatch returns the pivot cache batch b propagates from and the
// pivots' slots in it, running the chunk that holds slot b if it has not
// run yet.
func (w *window) forBatch(b int) (*tokens.PivotCache, [2]int, error) {
	if _, ok := w.e.held[b]; !ok {
		c, ok := w.chunkOf[b]
		if !ok || c != w.next {
			return nil, [2]int{}, fmt.Errorf("edit: windowed step: the pivots of keyframe slot %d are not held (chunk %d next)", b, w.next)
		}
		cache, _, err := w.pass(w.plan.Chunks[c], w.anchors, false)
		if err != nil {
			return nil, [2]int{}, err
		}
		w.next++
		w.hold(w.plan.Chunks[c], cache)
	}
	if b == 0 {
		return w.e.held[0], [2]int{0, 0}, nil
	}
	prev, ok := w.e.held[b-1]
	if !ok {
		return nil, [2]int{}, fmt.Errorf("edit: windowed step: the pivots of keyframe slot %d were dropped too early", b-1)
	}
	return joinPivots(w.e.held[b], prev), [2]int{0, 1}, nil
}

// done drops what batch b was the last to need: slot b-1's pivots.
func (w *window) done(b int) {
	delete(w.e.held, b-1)
}

// joinPivots is one cache of the keyframes of a and b (one keyframe
// each, G groups alike), in that order: tokens [2,S,C], attention
// outputs group by group [a_0, b_0, a_1, b_1, ...].
func joinPivots(a, b *tokens.PivotCache) *tokens.PivotCache {
	out := &tokens.PivotCache{Keyframes: []int{a.Keyframes[0], b.Keyframes[0]}, Tokens: map[string]tensor.Tensor{}, Attn: map[string]tensor.Tensor{}}
	for path, v := range a.Tokens {
		out.Tokens[path], _ = tensor.Concat(v, b.Tokens[path]) // one shape: one graph's outputs
	}
	for path, v := range a.Attn {
		w := b.Attn[path]
		G := v.N()
		parts := make([]tensor.Tensor, 0, 2*G)
		for g := range G {
			parts = append(parts, v.Row(g), w.Row(g))
		}
		out.Attn[path], _ = tensor.Concat(parts...)
	}
	return out
}

// HeldPivots are the frames whose pivots a windowed step holds now,
// ascending (for tests and logs: empty outside a windowed step).
func (e *Editor) HeldPivots() []int {
	var out []int
	for _, c := range e.held {
		out = append(out, c.Keyframes[0])
	}
	slices.Sort(out)
	return out
}

// keyframePass runs one keyframe pass of the prompts ps over the slots
// of step i's keyframes, counting its time and progress.
func (e *Editor) keyframePass(ctx context.Context, src tensor.Tensor, xs []tensor.Tensor, ps []int, t int, kf []int, slots []int, anchors *tokens.AnchorKV, keep bool, done *int) (*tokens.PivotCache, *tokens.AnchorKV, error) {
	frames := make([]int, len(slots))
	for j, s := range slots {
		frames[j] = kf[s]
	}
	start := time.Now()
	inj := e.injection(t)
	var c *tokens.PivotCache
	var kv *tokens.AnchorKV
	var err error
	if anchors == nil && !keep {
		c, err = e.u.KeyframePass(ctx, groups(src, xs, ps, frames), t, e.textFor(len(frames), ps), inj, frames)
	} else {
		c, kv, err = e.u.WindowKeyframePass(ctx, groups(src, xs, ps, frames), t, e.textFor(len(frames), ps), inj, frames, anchors, keep)
	}
	if err != nil {
		return nil, nil, err
	}
	e.KeyframeTime += time.Since(start)
	*done += len(frames) * len(ps)
	e.progress(*done)
	return c, kv, nil
}
