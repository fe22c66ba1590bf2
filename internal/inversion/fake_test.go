package inversion_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/tokenflow/tokenflow/internal/inversion"
	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/tensor"
)

// nanDenoiser predicts zero noise, except that its first call at timestep
// nanAt after call number start (1-based) has a NaN in row row. It counts
// its calls.
type nanDenoiser struct {
	nanAt, start, row int
	calls, after      int // calls in all; calls after the NaN was given
	given             bool
}

func (d *nanDenoiser) UNet(_ context.Context, x tensor.Tensor, t int, text tensor.Tensor) (tensor.Tensor, error) {
	d.calls++
	if d.given {
		d.after++
	}
	eps := tensor.Zeros(x.Shape...)
	if t == d.nanAt && !d.given && x.N() > d.row && d.calls > d.start {
		eps.Row(d.row).Data[2] = float32(math.NaN())
		d.given = true
	}
	return eps, nil
}

// TestInvertStopsOnNaN: an inversion step whose latents go NaN ends the
// inversion at once, with one line naming the step, its timestep and the
// frame. Five frames in batches of 2: the NaN comes in the second batch's
// second row, frame 3.
func TestInvertStopsOnNaN(t *testing.T) {
	ddim, err := scheduler.New(scheduler.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := ddim.PlanInversion(10, 2)
	if err != nil {
		t.Fatal(err)
	}
	at := plan.Walk[4]
	// Three calls a step (batches of 2, 2, 1): the second batch of step 4
	// (0-based) is call 4*3+2.
	d := &nanDenoiser{nanAt: at, start: 4*3 + 1, row: 1}
	z0 := tensor.Zeros(5, 4, 2, 3)
	_, err = invertAll(context.Background(), d, ddim, z0, tensor.Zeros(1, 77, 8), inversion.Params{Steps: 10, SaveSteps: 2, BatchSize: 2})
	var nf *tensor.NonFiniteError
	if !errors.As(err, &nf) || !errors.Is(err, tensor.ErrNonFinite) {
		t.Fatalf("Invert = %v, want a *tensor.NonFiniteError", err)
	}
	want := &tensor.NonFiniteError{Phase: "inversion", Step: 5, Steps: 10, Timestep: at, Frame: 3}
	if *nf != *want {
		t.Errorf("error %q, want %q", nf, want)
	}
	if d.after != 0 {
		t.Errorf("%d UNet calls after the NaN: the inversion went on", d.after)
	}
}

// TestReconstructStopsOnNaN: the same for the reconstruction's steps.
func TestReconstructStopsOnNaN(t *testing.T) {
	ddim, err := scheduler.New(scheduler.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	sched, err := ddim.Schedule(10)
	if err != nil {
		t.Fatal(err)
	}
	ts := sched.Timesteps()
	d := &nanDenoiser{nanAt: ts[7], start: 7*3 + 1, row: 0}
	_, err = inversion.Reconstruct(context.Background(), d, ddim, tensor.Zeros(5, 4, 2, 3), tensor.Zeros(1, 77, 8), inversion.Params{Steps: 10, BatchSize: 2})
	want := fmt.Sprintf("reconstruction step 8 of 10 (timestep %d) gave NaN or infinite latents (frame 2)", ts[7])
	if err == nil || err.Error() != want {
		t.Fatalf("Reconstruct = %v, want %q", err, want)
	}
	if d.after != 0 {
		t.Errorf("%d UNet calls after the NaN: the reconstruction went on", d.after)
	}
}
