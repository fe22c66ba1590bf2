package param

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestError(t *testing.T) {
	err := Errorf("steps", 20, "is more than {inversion_steps} %d", 10)
	if got, want := err.Error(), "steps 20: is more than inversion_steps 10"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatal("not a *param.Error")
	}
	flags := map[string]string{"steps": "--save-steps", "inversion_steps": "--steps"}
	if got, want := pe.Words(func(s string) string { return flags[s] }), "--save-steps 20: is more than --steps 10"; got != want {
		t.Errorf("Words = %q, want %q", got, want)
	}
	if got := Errorf("keyframes", "", "unknown").Error(); got != `keyframes "": unknown` {
		t.Errorf("empty value: %q", got)
	}
	if got := Reasonf("prompt", "is required").Error(); got != "prompt: is required" {
		t.Errorf("no value: %q", got)
	}
	wrapped := Errorf("cache_dir", "/c", "is not writable: %w", fs.ErrPermission)
	if !errors.Is(wrapped, fs.ErrPermission) || !strings.Contains(wrapped.Error(), "permission denied") {
		t.Errorf("wrapping lost: %v", wrapped)
	}
	if AtLeast("n", 1, 1) != nil || AtLeast("n", 0, 1) == nil || Fraction("f", 0.5) != nil || Fraction("f", 1.5) == nil {
		t.Error("AtLeast/Fraction bounds wrong")
	}
}
