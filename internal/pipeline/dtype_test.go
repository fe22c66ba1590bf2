package pipeline

import (
	"errors"
	"testing"

	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/sd"
)

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
