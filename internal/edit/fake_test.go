package edit_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/pnp"
	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/tokens"
)

// fakeUNet records the passes the edit loop asks for and answers with
// values that encode what it was given: the noise of frame row i is the
// row's first latent value, so guidance and the DDIM step can be checked
// by hand.
type fakeUNet struct {
	calls []string
}

func (f *fakeUNet) KeyframePass(_ context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, kf []int) (*tokens.PivotCache, error) {
	if x.N() != 3*len(kf) || text.N() != x.N() {
		return nil, fmt.Errorf("keyframe pass: %d latents, %d text rows for %d keyframes", x.N(), text.N(), len(kf))
	}
	f.calls = append(f.calls, fmt.Sprintf("t%d key %v qk=%v conv=%v", t, kf, inj.QK, inj.Conv))
	return &tokens.PivotCache{Keyframes: slices.Clone(kf)}, nil
}

func (f *fakeUNet) PropagationPass(_ context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, c *tokens.PivotCache, pivots [2]int, w []float32) (tensor.Tensor, error) {
	n := x.N() / 3
	if x.N() != 3*n || text.N() != x.N() || len(w) != n {
		return tensor.Tensor{}, fmt.Errorf("propagation pass: %d latents, %d text rows, %d weights", x.N(), text.N(), len(w))
	}
	f.calls = append(f.calls, fmt.Sprintf("t%d prop n=%d pivots=%d,%d conv=%v", t, n, c.Keyframes[pivots[0]], c.Keyframes[pivots[1]], inj.Conv))
	// noise: uncond 0, cond 1, so guided noise = g
	out := tensor.Zeros(x.Shape...)
	for i := range n {
		row := out.Row(2*n + i).Data
		for k := range row {
			row[k] = 1
		}
	}
	return out, nil
}

// defaultDDIM is the DDIM scheduler of scheduler.DefaultConfig and its
// timesteps for an edit of steps steps.
func defaultDDIM(t *testing.T, steps int) (*scheduler.DDIM, []int) {
	t.Helper()
	ddim, err := scheduler.New(scheduler.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ts, err := ddim.Timesteps(steps)
	if err != nil {
		t.Fatal(err)
	}
	return ddim, ts
}

// newEditor is edit.New's editor; an error fails t.
func newEditor(t *testing.T, u edit.UNet, ddim *scheduler.DDIM, in edit.Inputs, p edit.Params) *edit.Editor {
	t.Helper()
	e, err := edit.New(u, ddim, in, p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func fakeInputs(n int, ts []int) edit.Inputs {
	z0 := tensor.Zeros(int64(n), 4, 2, 3)
	in := edit.Inputs{Inversion: &edit.Memory{Z0: z0, Noisy: map[int]tensor.Tensor{}}}
	for _, t := range ts {
		mem(in).Noisy[t] = tensor.Zeros(int64(n), 4, 2, 3)
	}
	text := tensor.Zeros(1, 77, 8)
	in.Source, in.Negative, in.Prompt = text, text, text
	return in
}

// TestEditLoopControlFlow drives the loop with a fake UNet: 10 frames in
// batches of 4 (a smaller last batch of 2), middle keyframes, injection
// windows of 2 steps (query/key) and 3 steps (features) out of 4.
func TestEditLoopControlFlow(t *testing.T) {
	const steps = 4
	ddim, ts := defaultDDIM(t, steps) // 751, 501, 251, 1
	f := &fakeUNet{}
	e := newEditor(t, f, ddim, fakeInputs(10, ts), edit.Params{Steps: steps, Guidance: 7.5, PnPAttn: 0.5, PnPConv: 0.75, BatchSize: 4, Keyframes: keyframes.Middle})
	if _, err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, t := range ts {
		qk, conv := i < 2, i < 3
		want = append(want,
			fmt.Sprintf("t%d key [2 6 9] qk=%v conv=%v", t, qk, conv),
			fmt.Sprintf("t%d prop n=4 pivots=2,2 conv=%v", t, conv),
			fmt.Sprintf("t%d prop n=4 pivots=6,2 conv=%v", t, conv),
			fmt.Sprintf("t%d prop n=2 pivots=9,6 conv=%v", t, conv))
	}
	if !slices.Equal(f.calls, want) {
		t.Errorf("passes mismatch (-want +got):\n-%q\n+%q", want, f.calls)
	}
}

// TestEditLoopGuidance checks one step's arithmetic against the scheduler:
// with uncond noise 0 and cond noise 1, the guided noise is g everywhere.
func TestEditLoopGuidance(t *testing.T) {
	ddim, ts := defaultDDIM(t, 2)
	e := newEditor(t, &fakeUNet{}, ddim, fakeInputs(3, ts), edit.Params{Steps: 2, Guidance: 2.5, BatchSize: 2, Keyframes: keyframes.Middle})
	x := tensor.Zeros(3, 4, 2, 3)
	got, err := e.Step(context.Background(), 0, x)
	if err != nil {
		t.Fatal(err)
	}
	sched, _ := ddim.Schedule(2)
	g := make([]float32, x.Len())
	for i := range g {
		g[i] = 2.5
	}
	want, _ := sched.Step(g, ts[0], x.Data)
	if !slices.Equal(got.Data, want) {
		t.Errorf("step 0 = %v, want the DDIM step of noise 2.5: %v", got.Data[:4], want[:4])
	}
}

func TestEditInputsChecked(t *testing.T) {
	ddim, ts := defaultDDIM(t, 2)
	in := fakeInputs(3, ts[:1])
	_, err := edit.New(&fakeUNet{}, ddim, in, edit.Params{Steps: 2, BatchSize: 2})
	if err == nil {
		t.Fatal("an inversion without the edit's timesteps was accepted")
	}
	in = fakeInputs(3, ts)
	mem(in).Noisy[ts[1]] = tensor.Zeros(2, 4, 2, 3)
	if _, err := edit.New(&fakeUNet{}, ddim, in, edit.Params{Steps: 2, BatchSize: 2}); err == nil {
		t.Fatal("inverted latents of another shape were accepted")
	}
}

// nanUNet is fakeUNet, except that at timestep nanAt its second
// propagation pass (the second batch) gives NaN noise for the batch's
// frame row (in the cond third).
type nanUNet struct {
	fakeUNet
	nanAt, frame, passes int
}

func (f *nanUNet) PropagationPass(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, c *tokens.PivotCache, pivots [2]int, w []float32) (tensor.Tensor, error) {
	out, err := f.fakeUNet.PropagationPass(ctx, x, t, text, inj, c, pivots, w)
	if err != nil || t != f.nanAt {
		return out, err
	}
	if f.passes++; f.passes == 2 {
		n := x.N() / 3
		out.Row(2*n + f.frame).Data[1] = float32(math.NaN())
	}
	return out, nil
}

// TestEditLoopStopsOnNaN: a step whose latents go NaN ends the edit at
// once, with one line naming the phase, the step, its timestep and the
// frame; no later pass runs.
func TestEditLoopStopsOnNaN(t *testing.T) {
	const steps = 4
	ddim, ts := defaultDDIM(t, steps) // 750, 500, 250, 0 (DefaultConfig)
	// 10 frames in batches of 4: frame 1 of the second batch is frame 5.
	f := &nanUNet{nanAt: ts[2], frame: 1}
	e := newEditor(t, f, ddim, fakeInputs(10, ts), edit.Params{Steps: steps, Guidance: 7.5, BatchSize: 4, Keyframes: keyframes.Middle})
	_, err := e.Run(context.Background())
	var nf *tensor.NonFiniteError
	if !errors.As(err, &nf) || !errors.Is(err, tensor.ErrNonFinite) {
		t.Fatalf("Run = %v, want a *tensor.NonFiniteError", err)
	}
	if want := "edit step 3 of 4 (timestep 250) gave NaN or infinite latents (frame 5)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if last := f.calls[len(f.calls)-1]; last != "t250 prop n=4 pivots=6,2 conv=false" {
		t.Errorf("the last pass was %q: the loop went on after the NaN", last)
	}
}

// TestEditLoopVPrediction: with a v-prediction model the fake's outputs
// (uncond 0, cond 1) are v; the edit guides in epsilon space and steps, and
// lands where diffusers' v-prediction DDIM step of the guided output does
// (computed here in float64: x0 = sqrt(a_t) x - sqrt(1-a_t) v, eps =
// sqrt(a_t) v + sqrt(1-a_t) x, x_prev = sqrt(a_prev) x0 + sqrt(1-a_prev) eps).
func TestEditLoopVPrediction(t *testing.T) {
	cfg := scheduler.DefaultConfig()
	cfg.PredictionType, cfg.ClipSample = "v_prediction", false
	ddim, err := scheduler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := ddim.Timesteps(2) // 500, 0
	e := newEditor(t, &fakeUNet{}, ddim, fakeInputs(3, ts), edit.Params{Steps: 2, Guidance: 2.5, BatchSize: 2, Keyframes: keyframes.Middle})
	x := tensor.Zeros(3, 4, 2, 3)
	for i := range x.Data {
		x.Data[i] = float32(i%7)/3 - 1
	}
	for i, tt := range ts {
		got, err := e.Step(context.Background(), i, x)
		if err != nil {
			t.Fatal(err)
		}
		a32, _ := ddim.AlphaCumprod(tt)
		p32, _ := ddim.AlphaCumprod(tt - 500)
		a, ap := float64(a32), float64(p32)
		const v = 2.5 // 0 + 2.5 (1 - 0)
		for k, xv := range x.Data {
			xk := float64(xv)
			x0 := math.Sqrt(a)*xk - math.Sqrt(1-a)*v
			eps := math.Sqrt(a)*v + math.Sqrt(1-a)*xk
			want := math.Sqrt(ap)*x0 + math.Sqrt(1-ap)*eps
			// float32 arithmetic on values of size ~3, amplified by at
			// most 1/sqrt(a_500) ~ 1.8 where x0 comes back from eps.
			if d := math.Abs(float64(got.Data[k]) - want); d > 1e-5 {
				t.Fatalf("t=%d: latent %d is %.7g, want %.7g (diffusers' v step), |diff| %.2g", tt, k, got.Data[k], want, d)
			}
		}
	}
}

// mem is the in-memory inversion of test inputs.
func mem(in edit.Inputs) *edit.Memory { return in.Inversion.(*edit.Memory) }

// WindowKeyframePass of the fake records the pass with the anchors it
// attends to and whether it keeps keys/values; the keys/values it keeps
// name the pass's keyframes.
func (f *fakeUNet) WindowKeyframePass(_ context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, kf []int, anchors *tokens.AnchorKV, keep bool) (*tokens.PivotCache, *tokens.AnchorKV, error) {
	if x.N() != 3*len(kf) || text.N() != x.N() {
		return nil, nil, fmt.Errorf("keyframe pass: %d latents, %d text rows for %d keyframes", x.N(), text.N(), len(kf))
	}
	var a []int
	if anchors != nil {
		a = anchors.Keyframes
	}
	f.calls = append(f.calls, fmt.Sprintf("t%d key %v anchors=%v keep=%v qk=%v conv=%v", t, kf, a, keep, inj.QK, inj.Conv))
	var kv *tokens.AnchorKV
	if keep {
		kv = &tokens.AnchorKV{Keyframes: slices.Clone(kf)}
	}
	return &tokens.PivotCache{Keyframes: slices.Clone(kf)}, kv, nil
}

// heldUNet is fakeUNet that also records, at each propagation pass, the
// frames whose pivots the editor holds.
type heldUNet struct {
	fakeUNet
	e *edit.Editor
}

func (f *heldUNet) PropagationPass(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, c *tokens.PivotCache, pivots [2]int, w []float32) (tensor.Tensor, error) {
	out, err := f.fakeUNet.PropagationPass(ctx, x, t, text, inj, c, pivots, w)
	f.calls[len(f.calls)-1] += fmt.Sprintf(" held=%v cache=%v", f.e.HeldPivots(), c.Keyframes)
	return out, err
}

// groupUNet is a fake UNet whose answers depend on each group's own
// latents, text and cached keyframe values, and on nothing else, as the
// real one's do: a pass over several prompts must give each prompt what
// a pass of it alone gives, and a wrong group anywhere (in the batch, the
// text or the narrowed cache) shows in the results.
type groupUNet struct {
	calls []string
	// nanText: rows whose text states start with this value get NaN noise.
	nanText float32
}

func (f *groupUNet) KeyframePass(_ context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, kf []int) (*tokens.PivotCache, error) {
	K := len(kf)
	G := x.N() / K
	if x.N() != G*K || G < 3 || G%2 != 1 || text.N() != x.N() {
		return nil, fmt.Errorf("keyframe pass: %d latents, %d text rows for %d keyframes", x.N(), text.N(), K)
	}
	f.calls = append(f.calls, fmt.Sprintf("t%d key groups=%d", t, G))
	attn := tensor.Zeros(int64(G*K), 1)
	for r := range G * K {
		attn.Data[r] = text.Row(r).Data[0] + 0.01*x.Row(r).Data[0]
	}
	return &tokens.PivotCache{Keyframes: slices.Clone(kf), Tokens: map[string]tensor.Tensor{}, Attn: map[string]tensor.Tensor{"l": attn}}, nil
}

func (f *groupUNet) PropagationPass(_ context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, c *tokens.PivotCache, pivots [2]int, w []float32) (tensor.Tensor, error) {
	n := len(w)
	G := x.N() / n
	K := len(c.Keyframes)
	if x.N() != G*n || G < 3 || G%2 != 1 || text.N() != x.N() || c.Attn["l"].N() != G*K {
		return tensor.Tensor{}, fmt.Errorf("propagation pass: %d latents, %d text rows, %d weights, cache of %d rows", x.N(), text.N(), n, c.Attn["l"].N())
	}
	f.calls = append(f.calls, fmt.Sprintf("t%d prop groups=%d n=%d", t, G, n))
	out := tensor.Zeros(x.Shape...)
	for g := range G {
		a := c.Attn["l"].Data
		for i := range n {
			r := g*n + i
			v := 0.1*x.Row(r).Data[0] + text.Row(r).Data[0] + w[i]*a[g*K+pivots[0]] + (1-w[i])*a[g*K+pivots[1]]
			if text.Row(r).Data[0] == f.nanText {
				v = float32(math.NaN())
			}
			row := out.Row(r).Data
			for k := range row {
				row[k] = v * float32(k+1) / 8
			}
		}
	}
	return out, nil
}

// promptInputs are fakeInputs with P prompts: text states filled with
// source -1, negative 0.5 and prompt p p+1.
func promptInputs(n int, ts []int, P int) edit.Inputs {
	in := fakeInputs(n, ts)
	fill := func(rows int, v func(int) float32) tensor.Tensor {
		t := tensor.Zeros(int64(rows), 77, 8)
		for r := range rows {
			for k := range t.Row(r).Data {
				t.Row(r).Data[k] = v(r)
			}
		}
		return t
	}
	for k := range mem(in).Z0.Data {
		mem(in).Z0.Data[k] = float32(k%7) / 7
	}
	for _, t := range ts {
		z := mem(in).Noisy[t]
		for k := range z.Data {
			z.Data[k] = float32(k%5)/5 + float32(t)/1000
		}
	}
	in.Source = fill(1, func(int) float32 { return -1 })
	in.Negative = fill(1, func(int) float32 { return 0.5 })
	in.Prompt = fill(P, func(p int) float32 { return float32(p + 1) })
	return in
}

// WindowKeyframePass of groupUNet: each edited group's pivot values also
// take its own group's anchor keys/values, and the keys/values it keeps
// are its edited groups' own, so a group mixed up anywhere (kept, passed
// or narrowed) changes the results.
func (f *groupUNet) WindowKeyframePass(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, kf []int, anchors *tokens.AnchorKV, keep bool) (*tokens.PivotCache, *tokens.AnchorKV, error) {
	c, err := f.KeyframePass(ctx, x, t, text, inj, kf)
	if err != nil {
		return nil, nil, err
	}
	K := len(kf)
	G := x.N() / K
	a := c.Attn["l"].Data
	if anchors != nil {
		k, v := anchors.Keys["l"], anchors.Values["l"]
		if k.N() != G-1 || v.N() != G-1 {
			return nil, nil, fmt.Errorf("keyframe pass: anchors of %d groups for %d edited groups", k.N(), G-1)
		}
		for g := 1; g < G; g++ {
			var sum float32
			for j, kk := range k.Row(g - 1).Data {
				sum += 0.001*kk*float32(j+1) + 0.002*v.Row(g - 1).Data[j]
			}
			for i := range K {
				a[g*K+i] += sum
			}
		}
	}
	var kv *tokens.AnchorKV
	if keep {
		kv = &tokens.AnchorKV{Keyframes: slices.Clone(kf), Keys: map[string]tensor.Tensor{"l": tensor.Zeros(int64(G-1), int64(K), 1)}, Values: map[string]tensor.Tensor{"l": tensor.Zeros(int64(G-1), int64(K), 1)}}
		for g := 1; g < G; g++ {
			for i := range K {
				kv.Keys["l"].Data[(g-1)*K+i] = a[g*K+i]
				kv.Values["l"].Data[(g-1)*K+i] = x.Row(g*K + i).Data[0]
			}
		}
	}
	return c, kv, nil
}

// runPrompts edits all the prompts of in together with f.
func runPrompts(t *testing.T, f *groupUNet, ddim *scheduler.DDIM, in edit.Inputs, p edit.Params) ([]tensor.Tensor, []error) {
	t.Helper()
	e := newEditor(t, f, ddim, in, p)
	xs, errs, err := e.RunPrompts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return xs, errs
}

// runSingle edits prompt p of all alone.
func runSingle(t *testing.T, ddim *scheduler.DDIM, all edit.Inputs, p int, params edit.Params) tensor.Tensor {
	t.Helper()
	in := all
	in.Prompt = all.Prompt.Row(p)
	e := newEditor(t, &groupUNet{}, ddim, in, params)
	x, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func cutWord(s string) (string, string, bool) {
	for i := range s {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
