package scheduler

import (
	"math"
	"path/filepath"
	"testing"
)

// fixture is the path of a conformance copy under the module's testdata/.
func fixture(parts ...string) string {
	return filepath.Join(append([]string{"..", "..", "testdata", "conformance"}, parts...)...)
}

// fixtureConfig reads a tiny conformance model's scheduler config.
func fixtureConfig(t *testing.T, model string) Config {
	t.Helper()
	cfg, err := LoadConfig(fixture(model, "scheduler", "scheduler_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// convert is v with every value converted to U: float32 to float64 is
// exact, and so is float64 to float32 for the golden inputs, which
// golden.py rounded to float32.
func convert[U, T float32 | float64](v []T) []U {
	out := make([]U, len(v))
	for i, x := range v {
		out[i] = U(x)
	}
	return out
}

// through is x moved by each of moves in turn (e.g. a move and its
// inverse), failing t on an error.
func through(t *testing.T, x []float32, moves ...func([]float32) ([]float32, error)) []float32 {
	t.Helper()
	for _, move := range moves {
		var err error
		if x, err = move(x); err != nil {
			t.Fatal(err)
		}
	}
	return x
}

// diff is the worst elementwise disagreement between two tensors.
type diff struct {
	index     int     // where |got - want| - tol is largest
	got, want float64 // the values there
	maxAbs    float64 // max |got - want|
	maxRel    float64 // max |got - want| / max |want|
}

// compare measures got against want with tolerance |got-want| <= atol +
// rtol*|want| and fails t at the worst element, naming its index, both
// values and the tolerance.
func compare[F float32 | float64](t *testing.T, name string, got, want []F, rtol, atol float64) diff {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	d := diff{index: -1}
	worst := math.Inf(-1)
	var scale float64
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		scale = math.Max(scale, math.Abs(w))
		e := math.Abs(g - w)
		if g != g || w != w { // NaN on either side is always a failure
			if !(g != g && w != w) {
				e = math.Inf(1)
			} else {
				e = 0
			}
		}
		d.maxAbs = math.Max(d.maxAbs, e)
		if over := e - (atol + rtol*math.Abs(w)); over > worst {
			worst, d.index, d.got, d.want = over, i, g, w
		}
	}
	if scale > 0 {
		d.maxRel = d.maxAbs / scale
	}
	if worst > 0 {
		t.Errorf("%s: worst at index %d: got %.9g, want %.9g (|diff| %.3g > atol %.3g + rtol %.3g x |want|); max abs %.3g, max rel %.3g",
			name, d.index, d.got, d.want, math.Abs(d.got-d.want), atol, rtol, d.maxAbs, d.maxRel)
	}
	return d
}
