package edit_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/tensor"
)

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
