package onnx_test

import (
	"fmt"
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
)

func TestSoftmax(t *testing.T) {
	xs := []int64{2, 3, 5}
	x := rnd(80, 30, -4, 4)
	for _, axis := range []int64{-1, 1, 0} {
		t.Run(fmt.Sprint("axis ", axis), func(t *testing.T) {
			g := onnx.NewGraph("softmax")
			g.Output("y", g.Softmax(g.Input("x", onnx.Float, dims(xs...)...), axis), onnx.Float)
			out := run(t, g, []string{"x"}, []string{"y"}, ort.New(xs, x))
			a := int(axis)
			if a < 0 {
				a += len(xs)
			}
			hasShape(t, "y", out[0], xs...)
			// Probabilities below 1 through MLAS's approximate exp (a few ulp)
			// and a 5-term sum: 1e-6 absolute.
			closeTo(t, "Softmax", data[float32](t, out[0]), refSoftmax(x, xs, a), 1e-6, 0)
		})
	}
}

func TestLayerNorm(t *testing.T) {
	xs := []int64{2, 3, 7}
	x := rnd(81, 42, -3, 5) // non-zero mean
	scale, bias := rnd(82, 7, 0.5, 2), rnd(83, 7, -1, 1)
	quiet := rnd(89, 42, -0.003, 0.003) // variance ~3e-6: eps matters
	for _, c := range []struct {
		name string
		x    []float32
		eps  float32
	}{{"spread", x, 1e-5}, {"quiet", quiet, 1e-5}, {"quiet", quiet, 1e-6}} {
		t.Run(fmt.Sprint(c.name, " eps ", c.eps), func(t *testing.T) {
			g := onnx.NewGraph("layernorm")
			y := g.LayerNorm(g.Input("x", onnx.Float, onnx.P("b"), onnx.P("n"), onnx.D(7)),
				g.ConstF32([]int64{7}, scale...), g.ConstF32([]int64{7}, bias...), c.eps)
			g.Output("y", y, onnx.Float)
			out := run(t, g, []string{"x"}, []string{"y"}, ort.New(xs, c.x))
			hasShape(t, "y", out[0], xs...)
			// Normalized values are O(1) times scales below 2; float32 mean
			// and variance over 7 values are good to ~1e-7 relative, the
			// reciprocal square root to a few ulp: 1e-5 absolute leaves a
			// 10x margin.
			closeTo(t, "LayerNorm", data[float32](t, out[0]), refLayerNorm(c.x, xs, scale, bias, float64(c.eps)), 1e-5, 0)
		})
	}
}

func TestGroupNorm(t *testing.T) {
	// SD's GroupNorm(32, C) has 32 groups; here 3 groups of 2 channels on an
	// odd 3x5 image, batch 2, with channels of different offsets and scales so
	// that normalizing per channel or per image instead of per group fails.
	xs := []int64{2, 6, 3, 5}
	x := rnd(84, numel(xs), -1, 1)
	for i := range x {
		c := unravel(i, xs)[1]
		x[i] = x[i]*float32(1+c) + float32(c)*0.7 - 1
	}
	// A second input whose groups have a variance of about 3e-6, comparable
	// to eps: there eps = 1e-5 and 1e-6 give clearly different results, so
	// eps must be used, and inside the square root.
	quiet := rnd(88, numel(xs), -0.003, 0.003)
	scale, bias := rnd(85, 6, 0.5, 2), rnd(86, 6, -1, 1)
	for _, c := range []struct {
		name string
		x    []float32
	}{{"spread", x}, {"quiet", quiet}} {
		for _, eps := range []float32{1e-5, 1e-6} {
			t.Run(fmt.Sprint(c.name, " eps ", eps), func(t *testing.T) {
				g := onnx.NewGraph("groupnorm")
				y := g.GroupNorm(g.Input("x", onnx.Float, onnx.P("b"), onnx.D(6), onnx.P("h"), onnx.P("w")),
					g.ConstF32([]int64{6}, scale...), g.ConstF32([]int64{6}, bias...), 3, 6, eps)
				g.Output("y", y, onnx.Float)
				out := run(t, g, []string{"x"}, []string{"y"}, ort.New(xs, c.x))
				hasShape(t, "y", out[0], xs...)
				// As LayerNorm: O(1) normalized values, 30-value statistics.
				closeTo(t, "GroupNorm", data[float32](t, out[0]), refGroupNorm(c.x, xs, 3, scale, bias, float64(eps)), 1e-5, 0)
			})
		}
	}
}

func TestReduce(t *testing.T) {
	xs := []int64{2, 3, 5}
	x := rnd(87, 30, -1, 1)
	cases := []struct {
		name string
		mean bool
		keep bool
		axes []int64
	}{
		{"sum axis 1 keep", false, true, []int64{1}},
		{"sum axes 0,2", false, false, []int64{0, 2}},
		{"sum axis -1", false, false, []int64{-1}},
		{"mean axis -1 keep", true, true, []int64{-1}},
		{"mean axes 1,2", true, false, []int64{1, 2}},
		{"mean axis 0", true, false, []int64{0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := onnx.NewGraph("reduce")
			in := g.Input("x", onnx.Float, dims(xs...)...)
			var y onnx.Value
			if c.mean {
				y = g.ReduceMean(in, c.keep, c.axes...)
			} else {
				y = g.ReduceSum(in, c.keep, c.axes...)
			}
			g.Output("y", y, onnx.Float)
			out := run(t, g, []string{"x"}, []string{"y"}, ort.New(xs, x))
			var axes []int
			for _, a := range c.axes {
				if a < 0 {
					a += int64(len(xs))
				}
				axes = append(axes, int(a))
			}
			want, ws := refReduce(x, xs, c.mean, axes...)
			if !c.keep {
				var squeezed []int64
				for i, d := range ws {
					if !contains(axes, i) {
						squeezed = append(squeezed, d)
					}
				}
				ws = squeezed
			}
			hasShape(t, "y", out[0], ws...)
			// Sums of up to 15 values below 1: < 15*15*2^-24 = 1.3e-5 worst
			// case, ~1e-7 typical.
			closeTo(t, c.name, data[float32](t, out[0]), want, 2e-6, 0)
		})
	}
}

func contains(s []int, v int) bool {
	for _, e := range s {
		if e == v {
			return true
		}
	}
	return false
}

func TestArgMax(t *testing.T) {
	xs := []int64{2, 3, 4}
	// Ties on purpose: the first index must win.
	x := []float32{
		1, 5, 2, 2,
		3, 5, 2, 7,
		3, 0, 2, 7,

		-1, -1, -1, 4,
		-1, 0, -2, 4,
		-3, 0, -1, 4,
	}
	cases := []struct {
		axis  int64
		keep  bool
		shape []int64
		want  []int64
	}{
		{1, false, []int64{2, 4}, []int64{1, 0, 0, 1, 0, 1, 0, 0}},
		{1, true, []int64{2, 1, 4}, []int64{1, 0, 0, 1, 0, 1, 0, 0}},
		{-1, false, []int64{2, 3}, []int64{1, 3, 3, 3, 3, 3}},
		{0, false, []int64{3, 4}, []int64{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("axis %d keep %v", c.axis, c.keep), func(t *testing.T) {
			g := onnx.NewGraph("argmax")
			g.Output("y", g.ArgMax(g.Input("x", onnx.Float, dims(xs...)...), c.axis, c.keep), onnx.Int64)
			out := run(t, g, []string{"x"}, []string{"y"}, ort.New(xs, x))
			hasShape(t, "y", out[0], c.shape...)
			sameInts(t, "ArgMax", data[int64](t, out[0]), c.want)
		})
	}
}

func TestResizeNearest(t *testing.T) {
	xs := []int64{2, 3, 3, 2}
	x := iota32(numel(xs)) // every pixel distinct: any wrong source shows
	t.Run("2x", func(t *testing.T) {
		g := onnx.NewGraph("resize2x")
		g.Output("y", g.ResizeNearest2x(g.Input("x", onnx.Float, onnx.P("b"), onnx.D(3), onnx.P("h"), onnx.P("w"))), onnx.Float)
		out := run(t, g, []string{"x"}, []string{"y"}, ort.New(xs, x))
		hasShape(t, "y", out[0], 2, 3, 6, 4)
		closeTo(t, "ResizeNearest2x", data[float32](t, out[0]), refResizeNearest(x, xs, 6, 4), 0, 0)
	})
	for _, to := range [][2]int64{{5, 3}, {6, 4}, {2, 1}, {7, 7}, {3, 2}} {
		t.Run(fmt.Sprintf("to %dx%d", to[0], to[1]), func(t *testing.T) {
			g := onnx.NewGraph("resize-to")
			in := g.Input("x", onnx.Float, onnx.P("b"), onnx.D(3), onnx.P("h"), onnx.P("w"))
			like := g.Input("like", onnx.Float, onnx.D(1), onnx.D(1), onnx.P("H"), onnx.P("W"))
			g.Output("y", g.ResizeNearestTo(in, like), onnx.Float)
			out := run(t, g, []string{"x", "like"}, []string{"y"},
				ort.New(xs, x), ort.New([]int64{1, 1, to[0], to[1]}, make([]float32, to[0]*to[1])))
			hasShape(t, "y", out[0], 2, 3, to[0], to[1])
			closeTo(t, "ResizeNearestTo", data[float32](t, out[0]), refResizeNearest(x, xs, int(to[0]), int(to[1])), 0, 0)
		})
	}
}
