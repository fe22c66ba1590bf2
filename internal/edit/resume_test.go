package edit_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/tensor"
)

// TestRunFromState: the states RunFrom's callback is given continue the
// edit: run from the state after step k in a new Editor, the final latents
// are the uninterrupted run's bit for bit, and only steps k.. run.
func TestRunFromState(t *testing.T) {
	const steps = 5
	ddim, ts := defaultDDIM(t, steps)
	p := edit.Params{Steps: steps, Guidance: 7.5, PnPAttn: 0.5, PnPConv: 0.8, BatchSize: 4, Keyframes: keyframes.Random, Seed: 3}
	in := fakeInputs(10, ts)
	for _, z := range mem(in).Noisy { // not all zero, so that the steps move the latents
		for k := range z.Data {
			z.Data[k] = float32(k%7) / 7
		}
	}
	full := &fakeUNet{}
	e, err := edit.New(full, ddim, in, p)
	if err != nil {
		t.Fatal(err)
	}
	x0, err := e.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var states []edit.State
	want, _, err := e.RunFrom(context.Background(), edit.State{Xs: []tensor.Tensor{x0}, Errs: make([]error, 1)}, func(s edit.State) error {
		states = append(states, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != steps {
		t.Fatalf("%d states for %d steps", len(states), steps)
	}
	for k, s := range states {
		if s.Step != k+1 {
			t.Errorf("state %d says step %d", k, s.Step)
		}
	}
	if !slices.Equal(states[steps-1].Xs[0].Data, want[0].Data) {
		t.Errorf("the last state's latents are not the result")
	}
	for _, k := range []int{1, 3} {
		f := &fakeUNet{}
		e2, err := edit.New(f, ddim, in, p)
		if err != nil {
			t.Fatal(err)
		}
		got, errs, err := e2.RunFrom(context.Background(), states[k-1], nil)
		if err != nil || errs[0] != nil {
			t.Fatal(err, errs[0])
		}
		if !slices.Equal(got[0].Data, want[0].Data) {
			t.Errorf("resumed after step %d: latents differ from the uninterrupted run's", k)
		}
		if !strings.HasPrefix(f.calls[0], "t"+strconv.Itoa(ts[k])+" key") || len(f.calls) != len(full.calls)*(steps-k)/steps {
			t.Errorf("resumed after step %d: passes %q, want only those of steps %d..", k, f.calls, k)
		}
	}
	// Every step done: the state's latents as they are, no pass.
	f := &fakeUNet{}
	e3, _ := edit.New(f, ddim, in, p)
	got, _, err := e3.RunFrom(context.Background(), states[steps-1], nil)
	if err != nil || !slices.Equal(got[0].Data, want[0].Data) || len(f.calls) != 0 {
		t.Errorf("a finished state: err %v, %d passes", err, len(f.calls))
	}
	// The callback's error stops the run after that step.
	stop := errors.New("stop")
	f = &fakeUNet{}
	e4, _ := edit.New(f, ddim, in, p)
	n := 0
	if _, _, err := e4.RunFrom(context.Background(), states[0], func(edit.State) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("callback error: %v after %d calls", err, n)
	}
	// A state that does not fit the edit is refused.
	if _, _, err := e4.RunFrom(context.Background(), edit.State{Step: steps + 1, Xs: states[0].Xs, Errs: states[0].Errs}, nil); err == nil {
		t.Errorf("a state past the last step was accepted")
	}
}
