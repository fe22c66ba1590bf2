package pipeline

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/video"
)

// validEdit is an edit request every check accepts, for an input that
// exists (validation needs no model).
func validEdit(t *testing.T) EditRequest {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.mp4")
	if err := os.WriteFile(in, []byte("not read by validation"), 0o644); err != nil {
		t.Fatal(err)
	}
	return EditRequest{
		InvertRequest: InvertRequest{Source: Source{Input: in, Range: video.Whole()}, InversionSteps: 500, Steps: 50, BatchSize: 8},
		Prompt:        "a red car", Guidance: 7.5, PnPAttn: 0.5, PnPConv: 0.8, Out: filepath.Join(dir, "out.mp4"),
	}
}

// sdeditStart makes a request an SDEdit one from start.
func sdeditStart(start float64) func(*EditRequest) {
	return func(r *EditRequest) { r.SDEdit = &edit.SDEdit{Start: start, Gaussian: true} }
}

// TestValidate: every setting is checked before any work, and the error
// names the setting as the request does (the command line words it). A PnP
// request ("valid") ignores SDEdit's setting entirely.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(r *EditRequest)
		want   string // the setting the error names; "" for none
	}{
		{"valid", func(r *EditRequest) {}, ""},
		{"no prompt", func(r *EditRequest) { r.Prompt = "  " }, "prompt"},
		{"no input", func(r *EditRequest) { r.Input = "" }, "input"},
		{"missing input", func(r *EditRequest) { r.Input += ".gone" }, "input"},
		{"steps 0", func(r *EditRequest) { r.Steps = 0 }, "steps"},
		{"inversion steps 0", func(r *EditRequest) { r.InversionSteps = 0 }, "inversion_steps"},
		{"more steps than inversion (grids joined)", func(r *EditRequest) { r.Steps = 600 }, ""},
		{"batch 0", func(r *EditRequest) { r.BatchSize = 0 }, "batch_size"},
		{"threads -1", func(r *EditRequest) { r.Threads = -1 }, "threads"},
		{"start -1", func(r *EditRequest) { r.Range.Start = -1 }, "start"},
		{"stride 0", func(r *EditRequest) { r.Range.Stride = 0 }, "stride"},
		{"frames 0", func(r *EditRequest) { r.Range.Count = 0 }, "frames"},
		{"size 12x8", func(r *EditRequest) { r.Size = video.Size{W: 12, H: 8} }, "size"},
		{"fps 0/1", func(r *EditRequest) { r.FolderFPS = video.Rational{Num: -1, Den: 1} }, "fps"},
		{"guidance -1", func(r *EditRequest) { r.Guidance = -1 }, "guidance"},
		{"guidance NaN", func(r *EditRequest) { r.Guidance = math.NaN() }, "guidance"},
		{"pnp attn 1.5", func(r *EditRequest) { r.PnPAttn = 1.5 }, "pnp_attn"},
		{"pnp conv NaN", func(r *EditRequest) { r.PnPConv = math.NaN() }, "pnp_conv"},
		{"out folder missing", func(r *EditRequest) { r.Out = filepath.Join(r.Out, "x", "y.mp4") }, "out"},
		{"out exists", func(r *EditRequest) { os.WriteFile(r.Out, nil, 0o644) }, "out"},
		{"out exists, overwrite", func(r *EditRequest) { os.WriteFile(r.Out, nil, 0o644); r.Overwrite = true }, ""},
		// SDEdit's start (the strength setting): above 0, at most 1, a number
		{"sdedit start 0.9", sdeditStart(0.9), ""},
		{"sdedit start 1", sdeditStart(1), ""},
		{"sdedit start 0.01", sdeditStart(0.01), ""},
		{"sdedit start 0.6", sdeditStart(0.6), ""},
		{"sdedit start 0", sdeditStart(0), "strength"},
		{"sdedit start -0.1", sdeditStart(-0.1), "strength"},
		{"sdedit start 1.0000001", sdeditStart(1.0000001), "strength"},
		{"sdedit start 2", sdeditStart(2), "strength"},
		{"sdedit start NaN", sdeditStart(math.NaN()), "strength"},
		{"sdedit start +Inf", sdeditStart(math.Inf(1)), "strength"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := validEdit(t)
			tc.change(&r)
			err := r.Validate()
			var pe *param.Error
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("validate: %v", err)
			case tc.want == "":
			case !errors.As(err, &pe):
				t.Fatalf("validate = %v, want a param.Error naming %s", err, tc.want)
			case pe.Name != tc.want:
				t.Errorf("validate = %v, names %q, want %q", err, pe.Name, tc.want)
			}
		})
	}
}

// TestEditRefusesBeforeWork: a bad setting is refused by Edit itself, with
// no model opened and nothing written.
func TestEditRefusesBeforeWork(t *testing.T) {
	r := validEdit(t)
	r.Steps = 0
	r.Model = filepath.Join(t.TempDir(), "no-such-model")
	_, err := Edit(context.Background(), r)
	var pe *param.Error
	if !errors.As(err, &pe) || pe.Name != "steps" {
		t.Fatalf("Edit = %v, want the steps setting refused", err)
	}
	if _, err := os.Stat(r.Out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Edit refused but left %s (%v)", r.Out, err)
	}
}

// TestDType: the request's dtype is checked with the other settings, and
// without one the graphs' dtype follows the device.
func TestDType(t *testing.T) {
	for _, tc := range []struct {
		dev  ort.Device
		dt   sd.DType
		want sd.DType
	}{
		{"", "", sd.FP32}, {ort.CPU, "", sd.FP32}, {ort.CUDA, "", sd.FP16},
		{ort.CUDA, sd.FP32, sd.FP32}, {ort.CPU, sd.FP16, sd.FP16},
	} {
		r := validEdit(t)
		r.Device, r.DType = tc.dev, tc.dt
		if err := r.Validate(); err != nil {
			t.Errorf("device %q dtype %q: %v", tc.dev, tc.dt, err)
		}
		if got := r.GraphDType(); got != tc.want {
			t.Errorf("device %q dtype %q: graphs in %q, want %q", tc.dev, tc.dt, got, tc.want)
		}
	}
	r := validEdit(t)
	r.DType = "fp8"
	var pe *param.Error
	if err := r.Validate(); !errors.As(err, &pe) || pe.Name != "dtype" || pe.Value != "fp8" {
		t.Errorf("dtype fp8: %v, want a *param.Error naming dtype", err)
	}
}
