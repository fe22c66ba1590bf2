package ort_test

import (
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
)

// benchAdd runs y = a + b on float32 tensors of the given shape and reports,
// besides ns/op, the share of each call spent inside ONNX Runtime's Run
// (ns-in-ort/op, as Stats measures it: onnxruntime_go's RunWithOptions,
// which includes its copy of each output into Go memory); the rest is ours:
// wrapping the inputs, creating the run options, the cancellation hook.
func benchAdd(b *testing.B, shape ...int64) {
	dims := make([]onnx.Dim, len(shape))
	n := int64(1)
	for i, d := range shape {
		dims[i] = onnx.D(d)
		n *= d
	}
	g := onnx.NewGraph("bench-add")
	g.Output("y", g.Add(g.Input("a", onnx.Float, dims...), g.Input("b", onnx.Float, dims...)), onnx.Float)
	s := newSession(b, g, []string{"a", "b"}, []string{"y"})
	x := ort.New(shape, make([]float32, n))
	ctx := b.Context()
	b.SetBytes(3 * 4 * n) // two inputs in, one output out
	b.ReportAllocs()
	inRun0, _ := ort.Stats()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Run(ctx, x, x); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	inRun1, _ := ort.Stats()
	b.ReportMetric(float64((inRun1-inRun0)/time.Duration(b.N)), "ns-in-ort/op")
}

// BenchmarkRunOverhead is the fixed cost of one Run: a 4-element Add.
func BenchmarkRunOverhead(b *testing.B) { benchAdd(b, 4) }

// BenchmarkRunAdd1x4x64x64 is a latent-sized Add ([1,4,64,64], 64 KiB per
// tensor): per-call cost that grows with the data crossing the boundary.
func BenchmarkRunAdd1x4x64x64(b *testing.B) { benchAdd(b, 1, 4, 64, 64) }
