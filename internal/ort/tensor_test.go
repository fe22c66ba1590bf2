package ort_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
)

// Float16 inputs travel as their bits; the graph casts them to float32.
func TestFloat16Input(t *testing.T) {
	g := onnx.NewGraph("half")
	g.Output("y", g.Cast(g.Input("x", onnx.Float16, onnx.D(2), onnx.D(4)), onnx.Float), onnx.Float)
	s := newSession(t, g, []string{"x"}, []string{"y"})
	bits := []ort.Float16{0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x3555, 0x7C00, 0x8000}
	want := []float32{1, -2, 0.5, 65504, 0x1p-24, 0.333251953125, float32(math.Inf(1)), float32(math.Copysign(0, -1))}
	out, err := s.Run(t.Context(), ort.New([]int64{2, 4}, bits))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ort.Data[float32](out[0])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out[0].Shape) != "[2 4]" {
		t.Errorf("shape %v, want [2 4]", out[0].Shape)
	}
	for i := range want { // exact: every float16 is a float32
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("float16 %#04x -> %g, want %g", uint16(bits[i]), got[i], want[i])
		}
	}
	if _, err := s.Run(t.Context(), ort.New([]int64{2, 4}, bits[:7])); err == nil || !strings.Contains(err.Error(), "needs 8 elements, have 7") {
		t.Errorf("float16 tensor too short: %v", err)
	}
}

// onnxruntime_go cannot read float16 outputs back; Run says so instead of
// returning truncated data.
func TestFloat16OutputRefused(t *testing.T) {
	g := onnx.NewGraph("half-out")
	g.Output("y", g.Cast(g.Input("x", onnx.Float, onnx.D(2)), onnx.Float16), onnx.Float16)
	s := newSession(t, g, []string{"x"}, []string{"y"})
	_, err := s.Run(t.Context(), ort.New([]int64{2}, []float32{1, 2}))
	if err == nil || !strings.Contains(err.Error(), "float32") || !strings.Contains(err.Error(), "output y") {
		t.Errorf("float16 output: %v, want an error naming the output and asking for float32", err)
	}
}

func TestScalars(t *testing.T) {
	g := onnx.NewGraph("scalars")
	x := g.Input("x", onnx.Float, []onnx.Dim{}...) // rank 0
	step := g.Input("step", onnx.Int64, []onnx.Dim{}...)
	v := g.Input("v", onnx.Float, onnx.D(3))
	g.Output("y", g.Add(g.Mul(v, x), g.Cast(step, onnx.Float)), onnx.Float)
	g.Output("sum", g.ReduceSum(v, false), onnx.Float) // rank 0
	g.Output("sum1", g.ReduceSum(v, true, 0), onnx.Float)

	in := []ort.Tensor{ort.Scalar[float32](2), ort.Scalar[int64](981), ort.New([]int64{3}, []float32{1, 2, 3})}
	t.Run("inputs", func(t *testing.T) {
		s := newSession(t, g, []string{"x", "step", "v"}, []string{"y", "sum1"})
		out, err := s.Run(t.Context(), in...)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(out[0].Shape, out[0].Data); got != "[3] [983 985 987]" {
			t.Errorf("y = %s, want [3] [983 985 987]", got)
		}
		if got := fmt.Sprint(out[1].Shape, out[1].Data); got != "[1] [6]" {
			t.Errorf("sum1 = %s, want [1] [6]", got)
		}
	})
	t.Run("output", func(t *testing.T) {
		s := newSession(t, g, []string{"x", "step", "v"}, []string{"y", "sum"})
		_, err := s.Run(t.Context(), in...)
		if err == nil || !strings.Contains(err.Error(), "output sum") || !strings.Contains(err.Error(), "[1]") {
			t.Errorf("rank-0 output: %v, want an error naming it and the way out", err)
		}
	})
}

func TestEmptyTensor(t *testing.T) {
	s := newSession(t, addGraph(), []string{"a", "b"}, []string{"y"})
	e := ort.New([]int64{0}, []float32{})
	out, err := s.Run(t.Context(), e, e)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(out[0].Shape, out[0].Len()); got != "[0] 0" {
		t.Errorf("empty + empty = shape and length %s, want [0] 0", got)
	}
}

func TestStats(t *testing.T) {
	s := newSession(t, addGraph(), []string{"a", "b"}, []string{"y"})
	x := ort.New([]int64{4}, []float32{1, 2, 3, 4})
	inRun0, calls0 := ort.Stats()
	for i := 0; i < 3; i++ {
		if _, err := s.Run(t.Context(), x, x); err != nil {
			t.Fatal(err)
		}
	}
	s.Run(t.Context(), x) // wrong input count: never reaches ONNX Runtime
	inRun1, calls1 := ort.Stats()
	if calls1-calls0 != 3 {
		t.Errorf("Stats() counted %d calls, want 3", calls1-calls0)
	}
	if d := inRun1 - inRun0; d <= 0 || d > time.Second {
		t.Errorf("Stats() counted %v inside Run for three tiny runs", d)
	}
}
