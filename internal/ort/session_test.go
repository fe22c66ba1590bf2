package ort_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
)

func TestRunWrongInputCount(t *testing.T) {
	s := newSession(t, addGraph(), []string{"a", "b"}, []string{"y"})
	x := ort.New([]int64{2}, []float32{1, 2})
	for _, ins := range [][]ort.Tensor{{x}, {x, x, x}, nil} {
		_, err := s.Run(t.Context(), ins...)
		want := fmt.Sprintf("%d inputs given, graph takes 2", len(ins))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Run with %d inputs: %v, want an error saying %q", len(ins), err, want)
		}
	}
}

// Names are checked by ONNX Runtime when the session runs, not when it is
// created (checking earlier would cost a second load of the model).
func TestRunUnknownName(t *testing.T) {
	x := ort.New([]int64{1}, []float32{1})
	for _, c := range []struct {
		ins, outs []string
		bad       string
	}{
		{[]string{"a", "zz"}, []string{"y"}, "zz"},
		{[]string{"a", "b"}, []string{"yy"}, "yy"},
	} {
		s := newSession(t, addGraph(), c.ins, c.outs)
		_, err := s.Run(t.Context(), x, x)
		if err == nil || !strings.Contains(err.Error(), c.bad) {
			t.Errorf("Run with names %v -> %v: %v, want an error naming %q", c.ins, c.outs, err, c.bad)
		}
	}
}

func TestRunBadTensors(t *testing.T) {
	s := newSession(t, addGraph(), []string{"a", "b"}, []string{"y"})
	good := ort.New([]int64{3}, []float32{1, 2, 3})
	cases := []struct {
		name string
		b    ort.Tensor
		want string
	}{
		{"too few elements", ort.New([]int64{4}, []float32{1, 2, 3}), "needs 4 elements, have 3"},
		{"unsupported element type", ort.Tensor{Shape: []int64{3}, Data: []int16{1, 2, 3}}, "[]int16"},
		{"wrong element type for the graph", ort.New([]int64{3}, []int64{1, 2, 3}), "run:"},
		{"wrong length for the other input", ort.New([]int64{2}, []float32{1, 2}), "run:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Run(t.Context(), good, c.b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Run: %v, want an error containing %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
			if errors.Is(err, ort.ErrCanceled) {
				t.Errorf("error %q wraps ErrCanceled", err)
			}
		})
	}
	// The session still works after failed runs.
	out, err := s.Run(t.Context(), good, good)
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0].Data.([]float32); got[2] != 6 {
		t.Errorf("after errors, 3+3 = %v", got[2])
	}
}

func TestRunClosedSession(t *testing.T) {
	s := newSession(t, addGraph(), []string{"a", "b"}, []string{"y"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	x := ort.New([]int64{1}, []float32{1})
	if _, err := s.Run(t.Context(), x, x); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Run after Close: %v, want an error saying the session is closed", err)
	}
}

func TestRunCanceledBeforeStart(t *testing.T) {
	s := newSession(t, addGraph(), []string{"a", "b"}, []string{"y"})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	x := ort.New([]int64{1}, []float32{1})
	_, err := s.Run(ctx, x, x)
	if !errors.Is(err, ort.ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a canceled context: %v, want ErrCanceled wrapping context.Canceled", err)
	}
}

// slowGraph is x times w, n times over, x and w [d,d] inputs: many short
// nodes, so that ONNX Runtime sees the terminate flag soon after it is set.
// (w is an input, not a constant, so that the session does not prepack a
// copy of it for each node.)
func slowGraph(n int, d int64) *onnx.Graph {
	g := onnx.NewGraph("slow")
	x := g.Input("x", onnx.Float, onnx.D(d), onnx.D(d))
	w := g.Input("w", onnx.Float, onnx.D(d), onnx.D(d))
	for i := 0; i < n; i++ {
		x = g.MatMul(x, w)
	}
	g.Output("y", x, onnx.Float)
	return g
}

// slowInputs are x and w for slowGraph: w = 1/d keeps values bounded.
func slowInputs(d int64) []ort.Tensor {
	w := make([]float32, d*d)
	for i := range w {
		w[i] = 1 / float32(d)
	}
	return []ort.Tensor{ort.New([]int64{d, d}, make([]float32, d*d)), ort.New([]int64{d, d}, w)}
}

func TestRunCanceledMidRun(t *testing.T) {
	const d = 512
	// 1000 MatMuls of 512^3 multiply-adds, 2.7e11 flops: over a second even
	// at the peak of one AVX-512 core, each node about a millisecond.
	s := newSession(t, slowGraph(1000, d), []string{"x", "w"}, []string{"y"})
	x := slowInputs(d)
	for _, c := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 100*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := c.ctx()
			defer cancel()
			start := time.Now()
			_, err := s.Run(ctx, x...)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("the run finished in %v before it was canceled: make the graph slower", took)
			}
			if !errors.Is(err, ort.ErrCanceled) || !errors.Is(err, c.want) {
				t.Errorf("Run: %v, want ErrCanceled wrapping %v", err, c.want)
			}
			// Canceled at 100ms; stopping takes at most one node more.
			if took > time.Second {
				t.Errorf("Run returned %v after it started, canceled at 100ms", took)
			}
			t.Logf("returned after %v", took)
		})
	}
	// Nothing stays terminated: each run has its own run options, so a short
	// run completes and the slow session fails later only for its own reasons.
	small := newSession(t, slowGraph(2, d), []string{"x", "w"}, []string{"y"})
	if _, err := small.Run(t.Context(), x...); err != nil {
		t.Errorf("run after cancellations: %v", err)
	}
	bad := ort.New([]int64{2, 2}, make([]float32, 4))
	if _, err := s.Run(context.Background(), bad, bad); err == nil || errors.Is(err, ort.ErrCanceled) {
		t.Errorf("wrongly shaped run after cancellations: %v, want a plain run error", err)
	}
}

// Cancelling just as runs finish must neither crash nor hang (the terminate
// callback may still be running when Run returns).
func TestRunCancelRace(t *testing.T) {
	s := newSession(t, slowGraph(2, 32), []string{"x", "w"}, []string{"y"})
	x := slowInputs(32)
	for i := 0; i < 200; i++ {
		ctx, cancel := context.WithCancel(t.Context())
		go cancel()
		_, err := s.Run(ctx, x...)
		if err != nil && !errors.Is(err, ort.ErrCanceled) {
			t.Fatalf("run %d: %v", i, err)
		}
		cancel()
	}
}

// Every supported element type goes in and comes out as the same Go type.
func TestTensorTypes(t *testing.T) {
	g := onnx.NewGraph("types")
	f := g.Input("f32", onnx.Float, onnx.D(2), onnx.D(3))
	d := g.Input("f64", onnx.Double, onnx.D(3))
	i64 := g.Input("i64", onnx.Int64, onnx.D(3))
	i32 := g.Input("i32", onnx.Int32, onnx.D(3))
	u8 := g.Input("u8", onnx.Uint8, onnx.D(3))
	b := g.Input("bool", onnx.Bool, onnx.D(3))
	g.Output("f32_out", g.Add(f, f), onnx.Float)
	g.Output("f64_out", g.Neg(d), onnx.Double)
	g.Output("i64_out", g.Mul(i64, i64), onnx.Int64)
	g.Output("i32_out", g.Sub(i32, g.Cast(u8, onnx.Int32)), onnx.Int32)
	g.Output("u8_out", g.Add(u8, u8), onnx.Uint8)
	g.Output("bool_out", g.Op("Not", []onnx.Value{b}), onnx.Bool)
	ins := []string{"f32", "f64", "i64", "i32", "u8", "bool"}
	outs := []string{"f32_out", "f64_out", "i64_out", "i32_out", "u8_out", "bool_out"}
	s := newSession(t, g, ins, outs)
	out, err := s.Run(t.Context(),
		ort.New([]int64{2, 3}, []float32{1, 2, 3, 4, 5, 6.5}),
		ort.New([]int64{3}, []float64{1.5, -2, math.Pi}),
		ort.New([]int64{3}, []int64{3, -4, 1 << 40}),
		ort.New([]int64{3}, []int32{10, -20, math.MaxInt32}),
		ort.New([]int64{3}, []uint8{1, 100, 200}),
		ort.New([]int64{3}, []bool{true, false, true}),
	)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got ort.Tensor, shape []int64, want any) {
		t.Helper()
		if fmt.Sprint(got.Shape) != fmt.Sprint(shape) {
			t.Errorf("%s shape: (-want +got)\n-%v\n+%v", name, shape, got.Shape)
		}
		if fmt.Sprintf("%T %v", got.Data, got.Data) != fmt.Sprintf("%T %v", want, want) {
			t.Errorf("%s: (-want +got)\n-%T %v\n+%T %v", name, want, want, got.Data, got.Data)
		}
	}
	check("f32", out[0], []int64{2, 3}, []float32{2, 4, 6, 8, 10, 13})
	check("f64", out[1], []int64{3}, []float64{-1.5, 2, -math.Pi})
	check("i64", out[2], []int64{3}, []int64{9, 16, 0}) // 2^80 wraps to 0
	check("i32", out[3], []int64{3}, []int32{9, -120, math.MaxInt32 - 200})
	check("u8", out[4], []int64{3}, []uint8{2, 200, 144}) // 400 wraps to 144
	check("bool", out[5], []int64{3}, []bool{false, true, false})

	if _, err := ort.Data[int64](out[0]); err == nil || !strings.Contains(err.Error(), "float32") {
		t.Errorf("Data[int64] of a float32 tensor: %v, want an error naming float32", err)
	}
	if got := out[0].Len(); got != 6 {
		t.Errorf("Len() = %d, want 6", got)
	}
}

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
