package onnx_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/testenv/ortsession"
)

// run builds g with the given inputs and outputs and evaluates it.
func run(t testing.TB, g *onnx.Graph, inputs []string, outputs []string, vals ...ort.Tensor) []ort.Tensor {
	t.Helper()
	return ortsession.Run(t, session(t, g, inputs, outputs), vals...)
}

// closeTo reports the worst element of got against want with tolerance
// atol + rtol*|want|.
func closeTo(t testing.TB, what string, got, want []float32, atol, rtol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	worst, wi := 0.0, -1
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		lim := atol + rtol*math.Abs(float64(want[i]))
		if math.IsNaN(float64(got[i])) || d > lim {
			if d >= worst || math.IsNaN(d) {
				worst, wi = d, i
			}
		}
	}
	if wi >= 0 {
		t.Errorf("%s: worst at [%d]: got %g, want %g (|diff| %.3g > atol %g + rtol %g*|want|)", what, wi, got[wi], want[wi], worst, atol, rtol)
	}
}

// data is x's elements, failing t when they are not of type T.
func data[T ort.Elem](t testing.TB, x ort.Tensor) []T {
	t.Helper()
	return ortsession.Data[T](t, x)
}

func TestSmokeAdd(t *testing.T) {
	g := onnx.NewGraph("add")
	a := g.Input("a", onnx.Float, onnx.P("n"))
	b := g.Input("b", onnx.Float, onnx.P("n"))
	g.Output("y", g.Add(a, g.Mul(b, g.Scalar(2))), onnx.Float, onnx.P("n"))
	out := run(t, g, []string{"a", "b"}, []string{"y"},
		ort.New([]int64{3}, []float32{1, 2, 3}), ort.New([]int64{3}, []float32{10, 20, 30}))
	closeTo(t, "y", data[float32](t, out[0]), []float32{21, 42, 63}, 0, 0)
}

// session builds g into a session for several runs; it is closed when t ends.
func session(t testing.TB, g *onnx.Graph, inputs, outputs []string) *ort.Session {
	t.Helper()
	return ortsession.New(t, g, ort.SessionOptions{Inputs: inputs, Outputs: outputs, Threads: 1})
}

// sameInts fails t when got differs from want, showing both (-want +got).
func sameInts[T int64 | int32 | uint8 | bool](t testing.TB, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: (-want +got)\n-%v\n+%v", what, want, got)
	}
}

// hasShape fails t when x's shape is not want.
func hasShape(t testing.TB, what string, x ort.Tensor, want ...int64) {
	t.Helper()
	sameInts(t, what+" shape", x.Shape, want)
}

// rnd is n values uniform in [lo, hi), the same for the same seed.
func rnd(seed uint64, n int, lo, hi float64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x7f4a7c15))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return out
}

// dims turns a fixed shape into input dims.
func dims(shape ...int64) []onnx.Dim {
	out := make([]onnx.Dim, len(shape))
	for i, d := range shape {
		out[i] = onnx.D(d)
	}
	return out
}
