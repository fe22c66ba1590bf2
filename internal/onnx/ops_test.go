package onnx_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
)

// Each builder op runs in ONNX Runtime (float32) and is compared with a
// float64 reference loop on the same float32 inputs (ref_test.go). Shapes are
// small, odd and batched so that a wrong axis or stride cannot pass.

// ulp32 is float32's relative rounding step (2^-23): a single correctly
// rounded float32 operation lands within half of it of the exact result, and
// the float64 reference rounded to float32 adds at most another half.
const ulp32 = 1.0 / (1 << 23)

func TestBinaryBroadcast(t *testing.T) {
	sign := func(v []float32) []float32 { // |b| in [0.5, 2): no division blow-up
		for i := range v {
			if i%2 == 1 {
				v[i] = -v[i]
			}
		}
		return v
	}
	cases := []struct {
		name   string
		as, bs []int64
		op     func(g *onnx.Graph, a, b onnx.Value) onnx.Value
		f      func(x, y float64) float64
	}{
		{"Add", []int64{2, 3, 4}, []int64{3, 1}, (*onnx.Graph).Add, func(x, y float64) float64 { return x + y }},
		{"Sub", []int64{4}, []int64{2, 3, 4}, (*onnx.Graph).Sub, func(x, y float64) float64 { return x - y }},
		{"Mul", []int64{2, 1, 5}, []int64{1, 3, 1}, (*onnx.Graph).Mul, func(x, y float64) float64 { return x * y }},
		{"Div", []int64{2, 3, 5}, []int64{2, 1, 5}, (*onnx.Graph).Div, func(x, y float64) float64 { return x / y }},
		{"Pow", []int64{3, 2}, []int64{2}, (*onnx.Graph).Pow, func(x, y float64) float64 { return math.Pow(x, y) }},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := rnd(uint64(10+i), numel(c.as), 0.5, 2)
			b := sign(rnd(uint64(20+i), numel(c.bs), 0.5, 2))
			if c.name == "Pow" {
				b = []float32{2, -1.5}
			}
			g := onnx.NewGraph(c.name)
			y := c.op(g, g.Input("a", onnx.Float, dims(c.as...)...), g.Input("b", onnx.Float, dims(c.bs...)...))
			g.Output("y", y, onnx.Float)
			out := run(t, g, []string{"a", "b"}, []string{"y"}, ort.New(c.as, a), ort.New(c.bs, b))
			want, ws := refBinary(a, c.as, b, c.bs, c.f)
			hasShape(t, "y", out[0], ws...)
			tol := ulp32 // one rounding
			if c.name == "Pow" {
				tol = 4 * ulp32 // powf through exp/log is good to a few ulp
			}
			closeTo(t, c.name, data[float32](t, out[0]), want, 0, tol)
		})
	}
}

func TestUnary(t *testing.T) {
	shape := []int64{2, 3, 7}
	x := rnd(3, numel(shape), -6, 6)
	x[0], x[1], x[2] = 0, -0.5, 1e-4
	sigmoid := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	// ONNX Runtime evaluates exp, tanh, erf, logistic and sin/cos with
	// vectorized polynomial approximations (MLAS, Eigen) good to a few float32
	// ulp; on values of order 1 that is below 1e-6 absolute. The fused GELU
	// kernel also differs from erf(x/sqrt2) by the rounding of the division.
	const atol, rtol = 1e-6, 4 * ulp32
	cases := []struct {
		name string
		op   func(g *onnx.Graph, x onnx.Value) onnx.Value
		f    func(float64) float64
	}{
		{"Sigmoid", (*onnx.Graph).Sigmoid, sigmoid},
		{"Erf", (*onnx.Graph).Erf, math.Erf},
		{"Sin", (*onnx.Graph).Sin, math.Sin},
		{"Cos", (*onnx.Graph).Cos, math.Cos},
		{"Exp", (*onnx.Graph).Exp, math.Exp},
		{"Neg", (*onnx.Graph).Neg, func(v float64) float64 { return -v }},
		{"Identity", (*onnx.Graph).Identity, func(v float64) float64 { return v }},
		{"SiLU", (*onnx.Graph).SiLU, func(v float64) float64 { return v * sigmoid(v) }},
		{"GELU", (*onnx.Graph).GELU, func(v float64) float64 { return 0.5 * v * (1 + math.Erf(v/math.Sqrt2)) }},
		{"QuickGELU", (*onnx.Graph).QuickGELU, func(v float64) float64 { return v * sigmoid(1.702*v) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := onnx.NewGraph(c.name)
			g.Output("y", c.op(g, g.Input("x", onnx.Float, dims(shape...)...)), onnx.Float)
			out := run(t, g, []string{"x"}, []string{"y"}, ort.New(shape, x))
			hasShape(t, "y", out[0], shape...)
			closeTo(t, c.name, data[float32](t, out[0]), refUnary(x, c.f), atol, rtol)
		})
	}
	t.Run("Sqrt", func(t *testing.T) {
		pos := rnd(4, numel(shape), 0, 9)
		g := onnx.NewGraph("sqrt")
		g.Output("y", g.Sqrt(g.Input("x", onnx.Float, dims(shape...)...)), onnx.Float)
		out := run(t, g, []string{"x"}, []string{"y"}, ort.New(shape, pos))
		closeTo(t, "Sqrt", data[float32](t, out[0]), refUnary(pos, math.Sqrt), 0, ulp32) // IEEE sqrt: one rounding
	})
}

func TestMatMul3Dx2D(t *testing.T) {
	as, bs := []int64{2, 3, 5}, []int64{5, 4}
	a, b := rnd(5, numel(as), -1, 1), rnd(6, numel(bs), -1, 1)
	g := onnx.NewGraph("matmul")
	g.Output("y", g.MatMul(g.Input("a", onnx.Float, dims(as...)...), g.Input("b", onnx.Float, dims(bs...)...)), onnx.Float)
	out := run(t, g, []string{"a", "b"}, []string{"y"}, ort.New(as, a), ort.New(bs, b))
	want, ws := refMatMul(a, as, b, bs)
	hasShape(t, "y", out[0], ws...)
	// 5-term dot products of values in [-1,1): float32 accumulation is off by
	// at most 5 roundings of partial sums below 5, i.e. < 5*5*2^-24 = 1.5e-6.
	closeTo(t, "MatMul", data[float32](t, out[0]), want, 2e-6, 0)
}

func TestGemm(t *testing.T) {
	const m, k, n = 3, 5, 4
	for _, c := range []struct{ transA, transB bool }{{false, true}, {true, false}, {true, true}, {false, false}} {
		t.Run(fmt.Sprintf("transA=%v,transB=%v", c.transA, c.transB), func(t *testing.T) {
			as, bs := []int64{m, k}, []int64{k, n}
			if c.transA {
				as = []int64{k, m}
			}
			if c.transB {
				bs = []int64{n, k}
			}
			a, b, bias := rnd(7, m*k, -1, 1), rnd(8, k*n, -1, 1), rnd(9, n, -1, 1)
			g := onnx.NewGraph("gemm")
			y := g.Gemm(g.Input("a", onnx.Float, dims(as...)...), g.Input("b", onnx.Float, dims(bs...)...),
				g.Input("c", onnx.Float, onnx.D(n)), c.transA, c.transB)
			g.Output("y", y, onnx.Float)
			out := run(t, g, []string{"a", "b", "c"}, []string{"y"}, ort.New(as, a), ort.New(bs, b), ort.New([]int64{n}, bias))
			want := make([]float32, m*n)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					s := float64(bias[j])
					for q := 0; q < k; q++ {
						ai := a[i*k+q]
						if c.transA {
							ai = a[q*m+i]
						}
						bj := b[q*n+j]
						if c.transB {
							bj = b[j*k+q]
						}
						s += float64(ai) * float64(bj)
					}
					want[i*n+j] = float32(s)
				}
			}
			hasShape(t, "y", out[0], m, n)
			// 5 products plus the bias, all below 1: < 6*6*2^-24 = 2.1e-6.
			closeTo(t, "Gemm", data[float32](t, out[0]), want, 3e-6, 0)
		})
	}
}

func TestConv2D(t *testing.T) {
	cases := []struct {
		name    string
		xs, ws  []int64
		a       onnx.ConvAttrs
		hasBias bool
	}{
		{"3x3 pad 1 bias", []int64{2, 3, 7, 5}, []int64{4, 3, 3, 3}, onnx.ConvAttrs{Kernel: 3, Pad: 1}, true},
		{"3x3 pad 1 stride 2 no bias", []int64{2, 3, 7, 5}, []int64{4, 3, 3, 3}, onnx.ConvAttrs{Kernel: 3, Pad: 1, Stride: 2}, false},
		{"3x3 pad 1 stride 2 bias", []int64{2, 3, 6, 6}, []int64{5, 3, 3, 3}, onnx.ConvAttrs{Kernel: 3, Pad: 1, Stride: 2}, true},
		{"1x1 bias", []int64{2, 3, 7, 5}, []int64{6, 3, 1, 1}, onnx.ConvAttrs{Kernel: 1}, true},
		{"1x1 no bias", []int64{2, 3, 7, 5}, []int64{6, 3, 1, 1}, onnx.ConvAttrs{Kernel: 1}, false},
		{"3x3 groups 2", []int64{2, 4, 5, 5}, []int64{6, 2, 3, 3}, onnx.ConvAttrs{Kernel: 3, Pad: 1, Group: 2}, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := rnd(uint64(30+i), numel(c.xs), -1, 1)
			w := rnd(uint64(40+i), numel(c.ws), -1, 1)
			var bias []float32
			g := onnx.NewGraph("conv")
			in := g.Input("x", onnx.Float, dims(c.xs...)...)
			wv := g.Initializer(&onnx.Tensor{Name: "w", Type: onnx.Float, Dims: c.ws, Raw: rawF32(w)})
			var bv onnx.Value
			if c.hasBias {
				bias = rnd(uint64(50+i), int(c.ws[0]), -1, 1)
				bv = g.Initializer(&onnx.Tensor{Name: "b", Type: onnx.Float, Dims: c.ws[:1], Raw: rawF32(bias)})
			}
			g.Output("y", g.Conv2D(in, wv, bv, c.a), onnx.Float)
			out := run(t, g, []string{"x"}, []string{"y"}, ort.New(c.xs, x))
			stride, group := int(c.a.Stride), int(c.a.Group)
			if stride == 0 {
				stride = 1
			}
			if group == 0 {
				group = 1
			}
			want, ws := refConv2D(x, c.xs, w, c.ws, bias, stride, int(c.a.Pad), group)
			hasShape(t, "y", out[0], ws...)
			// Up to 27 products of values in [-1,1) plus a bias: the worst-case
			// float32 accumulation error is 28*28*2^-24 = 4.7e-5; typical
			// errors are a few 1e-7, so 1e-5 still catches any wrong tap.
			closeTo(t, c.name, data[float32](t, out[0]), want, 1e-5, 0)
		})
	}
}

func TestMultiHeadAttention(t *testing.T) {
	// Cross attention as in the UNet: 2 queries batches of 3 tokens attend to 5
	// keys; 3 heads of 4 channels; a scale that is not 1/sqrt(head size), so a
	// kernel ignoring the attribute fails.
	const b, s, l, d, heads = 2, 3, 5, 12, 3
	const scale = 0.37
	q := rnd(60, b*s*d, -1.5, 1.5)
	k := rnd(61, b*l*d, -1.5, 1.5)
	v := rnd(62, b*l*d, -1, 1)
	g := onnx.NewGraph("mha")
	y := g.MultiHeadAttention(
		g.Input("q", onnx.Float, onnx.P("b"), onnx.P("s"), onnx.D(d)),
		g.Input("k", onnx.Float, onnx.P("b"), onnx.P("l"), onnx.D(d)),
		g.Input("v", onnx.Float, onnx.P("b"), onnx.P("l"), onnx.D(d)), heads, scale)
	g.Output("y", y, onnx.Float, onnx.P("b"), onnx.P("s"), onnx.D(d))
	out := run(t, g, []string{"q", "k", "v"}, []string{"y"},
		ort.New([]int64{b, s, d}, q), ort.New([]int64{b, l, d}, k), ort.New([]int64{b, l, d}, v))
	hasShape(t, "y", out[0], b, s, d)
	// Scores are 4-term dots (error ~1e-7), softmax goes through MLAS's
	// approximate exp (a few ulp), and the output is a 5-term convex
	// combination of values below 1: all together well under 1e-5.
	closeTo(t, "MultiHeadAttention", data[float32](t, out[0]), refMHA(q, k, v, b, s, l, d, heads, scale), 1e-5, 0)
}

func rawF32(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		u := math.Float32bits(x)
		b = append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return b
}
