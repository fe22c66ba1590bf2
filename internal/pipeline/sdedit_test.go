package pipeline

import (
	"errors"
	"math"
	"testing"

	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/param"
)

// TestValidateSDEdit: SDEdit's start (the strength setting) is checked
// before any work: above 0, at most 1, a number.
func TestValidateSDEdit(t *testing.T) {
	for _, tc := range []struct {
		start float64
		ok    bool
	}{
		{0.9, true}, {1, true}, {0.01, true}, {0.6, true},
		{0, false}, {-0.1, false}, {1.0000001, false}, {2, false}, {math.NaN(), false}, {math.Inf(1), false},
	} {
		r := validEdit(t)
		r.SDEdit = &edit.SDEdit{Start: tc.start, Gaussian: true}
		err := r.Validate()
		var pe *param.Error
		switch {
		case tc.ok && err != nil:
			t.Errorf("start %v: %v", tc.start, err)
		case !tc.ok && (!errors.As(err, &pe) || pe.Name != "strength"):
			t.Errorf("start %v: validate = %v, want a param.Error naming strength", tc.start, err)
		}
	}
	// PnP ignores SDEdit's setting entirely.
	r := validEdit(t)
	if err := r.Validate(); err != nil {
		t.Errorf("a PnP request: %v", err)
	}
}
