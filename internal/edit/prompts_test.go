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

// TestEditPromptsEqualSingleRuns: three prompts edited together (in one
// call per pass, and in calls of two prompts) give each prompt exactly the
// latents of its own single-prompt edit; the source group goes once into
// every call.
func TestEditPromptsEqualSingleRuns(t *testing.T) {
	const steps, P = 3, 3
	ddim, ts := defaultDDIM(t, steps)
	params := edit.Params{Steps: steps, Guidance: 7.5, PnPAttn: 0.5, PnPConv: 0.8, BatchSize: 4, Keyframes: keyframes.Random, Seed: 3}
	all := promptInputs(10, ts, P)
	want := make([]tensor.Tensor, P)
	for p := range P {
		want[p] = runSingle(t, ddim, all, p, params)
	}
	for _, tc := range []struct {
		perCall int
		calls   []string // of the first step
	}{
		{0, []string{"key groups=7", "prop groups=7 n=4", "prop groups=7 n=4", "prop groups=7 n=2"}},
		{2, []string{"key groups=5", "prop groups=5 n=4", "prop groups=5 n=4", "prop groups=5 n=2",
			"key groups=3", "prop groups=3 n=4", "prop groups=3 n=4", "prop groups=3 n=2"}},
	} {
		t.Run(fmt.Sprintf("per_call=%d", tc.perCall), func(t *testing.T) {
			f := &groupUNet{}
			p := params
			p.PromptsPerCall = tc.perCall
			xs, errs := runPrompts(t, f, ddim, all, p)
			for p := range P {
				if errs[p] != nil {
					t.Fatalf("prompt %d: %v", p+1, errs[p])
				}
				if !slices.Equal(xs[p].Data, want[p].Data) {
					t.Errorf("prompt %d: latents differ from its own run's", p+1)
				}
			}
			var first []string
			for _, c := range f.calls[:len(tc.calls)] {
				first = append(first, c[len(fmt.Sprintf("t%d ", ts[0])):])
			}
			if !slices.Equal(first, tc.calls) || len(f.calls) != steps*len(tc.calls) {
				t.Errorf("calls (-want +got):\n-%q x %d steps\n+%q", tc.calls, steps, f.calls)
			}
		})
	}
}

// TestEditPromptsOneFails: the second of three prompts goes NaN; it
// stops with its error naming the step, and is left out of every later
// pass; the others finish with their own runs' latents.
func TestEditPromptsOneFails(t *testing.T) {
	const steps, P = 3, 3
	ddim, ts := defaultDDIM(t, steps)
	params := edit.Params{Steps: steps, Guidance: 7.5, BatchSize: 4, Keyframes: keyframes.Middle}
	all := promptInputs(10, ts, P)
	f := &groupUNet{nanText: 2} // prompt 2's cond rows
	xs, errs := runPrompts(t, f, ddim, all, params)
	var nf *tensor.NonFiniteError
	if !errors.As(errs[1], &nf) || nf.Step != 1 || nf.Frame != 0 || xs[1].Data != nil {
		t.Fatalf("prompt 2: error %v, latents %d values; want a NaN error at step 1, frame 0, and none", errs[1], xs[1].Len())
	}
	// step 1: all three until the first batch, then two; later steps two.
	wantCalls := []string{"key groups=7", "prop groups=7 n=4", "prop groups=5 n=4", "prop groups=5 n=2"}
	for range steps - 1 {
		wantCalls = append(wantCalls, "key groups=5", "prop groups=5 n=4", "prop groups=5 n=4", "prop groups=5 n=2")
	}
	var got []string
	for _, c := range f.calls {
		_, rest, _ := cutWord(c)
		got = append(got, rest)
	}
	if !slices.Equal(got, wantCalls) {
		t.Errorf("calls (-want +got):\n-%q\n+%q", wantCalls, got)
	}
	for _, p := range []int{0, 2} {
		want := runSingle(t, ddim, all, p, params)
		if errs[p] != nil || !slices.Equal(xs[p].Data, want.Data) {
			t.Errorf("prompt %d: error %v, or latents that differ from its own run's", p+1, errs[p])
		}
	}
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
