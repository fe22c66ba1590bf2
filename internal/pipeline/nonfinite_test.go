package pipeline

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/tensor"
)

// TestNonFiniteMessage: a NaN from a loop reaches the user as one line
// naming the phase, step, timestep and frame, what was kept, and a hint
// that is true of this build (the graphs run in float32, so no "use fp32");
// other errors pass unchanged.
func TestNonFiniteMessage(t *testing.T) {
	err := nonFinite(&tensor.NonFiniteError{Phase: "inversion", Step: 12, Steps: 500, Timestep: 221, Frame: 3}, "nothing was stored")
	msg := err.Error()
	for _, want := range []string{"inversion step 12 of 500 (timestep 221) gave NaN or infinite latents (frame 3)", "nothing was stored", "already runs in float32"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("%q is not one line", msg)
	}
	if !errors.Is(err, tensor.ErrNonFinite) {
		t.Errorf("%q is not tensor.ErrNonFinite", msg)
	}
	if got := nonFinite(io.EOF, "nothing was stored"); got != io.EOF {
		t.Errorf("nonFinite(io.EOF) = %v, want it unchanged", got)
	}
}
