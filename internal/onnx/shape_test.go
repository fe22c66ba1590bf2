package onnx_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
)

// Shape and data-movement ops copy values without arithmetic: their results
// must match the reference exactly (tolerance 0).

// iota32 is 0, 1, 2, ...: every element is its own flat offset, so a wrong
// permutation or stride shows up as a wrong value.
func iota32(n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(i)
	}
	return out
}

func TestReshape(t *testing.T) {
	xs := []int64{2, 3, 4}
	x := iota32(24)
	cases := []struct {
		shape []int64
		want  []int64
	}{
		{[]int64{0, -1}, []int64{2, 12}},
		{[]int64{-1, 4}, []int64{6, 4}},
		{[]int64{0, 0, 2, 2}, []int64{2, 3, 2, 2}},
		{[]int64{4, 0, -1}, []int64{4, 3, 2}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.shape), func(t *testing.T) {
			g := onnx.NewGraph("reshape")
			g.Output("y", g.Reshape(g.Input("x", onnx.Float, onnx.P("b"), onnx.D(3), onnx.D(4)), c.shape...), onnx.Float)
			out := run(t, g, []string{"x"}, []string{"y"}, ort.New(xs, x))
			hasShape(t, "y", out[0], c.want...)
			closeTo(t, "Reshape", data[float32](t, out[0]), x, 0, 0)
		})
	}
	t.Run("ReshapeTo", func(t *testing.T) {
		g := onnx.NewGraph("reshape-to")
		in := g.Input("x", onnx.Float, dims(xs...)...)
		like := g.Input("like", onnx.Float, onnx.P("a"), onnx.P("b"))
		g.Output("y", g.ReshapeTo(in, g.Shape(like)), onnx.Float)
		out := run(t, g, []string{"x", "like"}, []string{"y"}, ort.New(xs, x), ort.New([]int64{8, 3}, make([]float32, 24)))
		hasShape(t, "y", out[0], 8, 3)
		closeTo(t, "ReshapeTo", data[float32](t, out[0]), x, 0, 0)
	})
}

func TestTranspose(t *testing.T) {
	xs := []int64{2, 3, 4}
	x := iota32(24)
	for _, perm := range [][]int64{{2, 0, 1}, {0, 2, 1}, {1, 0, 2}} {
		t.Run(fmt.Sprint(perm), func(t *testing.T) {
			g := onnx.NewGraph("transpose")
			g.Output("y", g.Transpose(g.Input("x", onnx.Float, dims(xs...)...), perm...), onnx.Float)
			out := run(t, g, []string{"x"}, []string{"y"}, ort.New(xs, x))
			ys := []int64{xs[perm[0]], xs[perm[1]], xs[perm[2]]}
			want := make([]float32, 24)
			for i := range want {
				yi := unravel(i, ys)
				xi := make([]int64, 3)
				for k, p := range perm {
					xi[p] = yi[k] // y[i0,i1,i2] = x[...] with x's axis perm[k] at i_k
				}
				want[i] = x[offset(xi, xs)]
			}
			hasShape(t, "y", out[0], ys...)
			closeTo(t, "Transpose", data[float32](t, out[0]), want, 0, 0)
		})
	}
}

func TestConcat(t *testing.T) {
	as, bs := []int64{2, 1, 3}, []int64{2, 2, 3}
	a, b := iota32(6), rnd(70, 12, 100, 200)
	for _, axis := range []int64{1, -2} {
		t.Run(fmt.Sprint("axis ", axis), func(t *testing.T) {
			g := onnx.NewGraph("concat")
			g.Output("y", g.Concat(axis, g.Input("a", onnx.Float, dims(as...)...), g.Input("b", onnx.Float, dims(bs...)...)), onnx.Float)
			out := run(t, g, []string{"a", "b"}, []string{"y"}, ort.New(as, a), ort.New(bs, b))
			var want []float32
			for n := 0; n < 2; n++ {
				want = append(want, a[n*3:n*3+3]...)
				want = append(want, b[n*6:n*6+6]...)
			}
			hasShape(t, "y", out[0], 2, 3, 3)
			closeTo(t, "Concat", data[float32](t, out[0]), want, 0, 0)
		})
	}
}

func TestSlice(t *testing.T) {
	xs := []int64{2, 5, 4}
	x := iota32(40)
	cases := []struct {
		name               string
		axes, starts, ends []int64
		lo, hi             [3]int64 // kept range per axis, [lo, hi)
	}{
		{"middle", []int64{1}, []int64{1}, []int64{4}, [3]int64{0, 1, 0}, [3]int64{2, 4, 4}},
		{"two axes, negative start, clamped end", []int64{1, 2}, []int64{1, -3}, []int64{4, 100}, [3]int64{0, 1, 1}, [3]int64{2, 4, 4}},
		{"negative axis and end", []int64{-1, 0}, []int64{0, 1}, []int64{-1, 2}, [3]int64{1, 0, 0}, [3]int64{2, 5, 3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := onnx.NewGraph("slice")
			g.Output("y", g.Slice(g.Input("x", onnx.Float, dims(xs...)...), c.axes, c.starts, c.ends), onnx.Float)
			out := run(t, g, []string{"x"}, []string{"y"}, ort.New(xs, x))
			var want []float32
			for i := c.lo[0]; i < c.hi[0]; i++ {
				for j := c.lo[1]; j < c.hi[1]; j++ {
					for k := c.lo[2]; k < c.hi[2]; k++ {
						want = append(want, x[(i*5+j)*4+k])
					}
				}
			}
			hasShape(t, "y", out[0], c.hi[0]-c.lo[0], c.hi[1]-c.lo[1], c.hi[2]-c.lo[2])
			closeTo(t, "Slice", data[float32](t, out[0]), want, 0, 0)
		})
	}
	t.Run("SliceDyn", func(t *testing.T) {
		g := onnx.NewGraph("slice-dyn")
		in := g.Input("x", onnx.Float, dims(xs...)...)
		starts := g.Input("starts", onnx.Int64, onnx.D(1))
		g.Output("y", g.SliceDyn(in, starts, g.Ints(5), g.Ints(1)), onnx.Float)
		out := run(t, g, []string{"x", "starts"}, []string{"y"}, ort.New(xs, x), ort.New([]int64{1}, []int64{3}))
		want := append(append([]float32(nil), x[12:20]...), x[32:40]...)
		hasShape(t, "y", out[0], 2, 2, 4)
		closeTo(t, "SliceDyn", data[float32](t, out[0]), want, 0, 0)
	})
}

func TestSplit(t *testing.T) {
	xs := []int64{2, 6, 3}
	x := iota32(36)
	cases := []struct {
		name  string
		n     int
		sizes []int64
		want  []int64 // sizes along axis 1
	}{
		{"equal", 3, nil, []int64{2, 2, 2}},
		{"sized", 0, []int64{1, 3, 2}, []int64{1, 3, 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := onnx.NewGraph("split")
			parts := g.Split(g.Input("x", onnx.Float, dims(xs...)...), 1, c.n, c.sizes...)
			if len(parts) != len(c.want) {
				t.Fatalf("Split returned %d values, want %d", len(parts), len(c.want))
			}
			var names []string
			for i, p := range parts {
				name := fmt.Sprint("y", i)
				g.Output(name, p, onnx.Float)
				names = append(names, name)
			}
			out := run(t, g, []string{"x"}, names, ort.New(xs, x))
			var at int64
			for i, size := range c.want {
				var want []float32
				for n := int64(0); n < 2; n++ {
					want = append(want, x[(n*6+at)*3:(n*6+at+size)*3]...)
				}
				at += size
				hasShape(t, names[i], out[i], 2, size, 3)
				closeTo(t, names[i], data[float32](t, out[i]), want, 0, 0)
			}
		})
	}
}

func TestGather(t *testing.T) {
	t.Run("axis 0", func(t *testing.T) {
		xs := []int64{5, 3}
		x := iota32(15)
		idx := []int64{4, 0, -1, 2} // -1 counts from the end
		g := onnx.NewGraph("gather")
		g.Output("y", g.Gather(g.Input("x", onnx.Float, dims(xs...)...), g.Input("i", onnx.Int64, onnx.D(2), onnx.D(2)), 0), onnx.Float)
		out := run(t, g, []string{"x", "i"}, []string{"y"}, ort.New(xs, x), ort.New([]int64{2, 2}, idx))
		var want []float32
		for _, r := range []int{4, 0, 4, 2} {
			want = append(want, x[r*3:r*3+3]...)
		}
		hasShape(t, "y", out[0], 2, 2, 3)
		closeTo(t, "Gather", data[float32](t, out[0]), want, 0, 0)
	})
	t.Run("axis 1", func(t *testing.T) {
		xs := []int64{2, 4, 3}
		x := iota32(24)
		idx := []int64{3, 1}
		g := onnx.NewGraph("gather")
		g.Output("y", g.Gather(g.Input("x", onnx.Float, dims(xs...)...), g.Input("i", onnx.Int64, onnx.D(2)), 1), onnx.Float)
		out := run(t, g, []string{"x", "i"}, []string{"y"}, ort.New(xs, x), ort.New([]int64{2}, idx))
		var want []float32
		for n := 0; n < 2; n++ {
			for _, r := range idx {
				want = append(want, x[(n*4+int(r))*3:(n*4+int(r))*3+3]...)
			}
		}
		hasShape(t, "y", out[0], 2, 2, 3)
		closeTo(t, "Gather", data[float32](t, out[0]), want, 0, 0)
	})
}

func TestGatherElements(t *testing.T) {
	xs, is := []int64{2, 3, 4}, []int64{2, 3, 2}
	x := iota32(24)
	idx := []int64{3, 0, 1, 1, 2, 3, 0, 0, 3, 2, 1, 0}
	for _, axis := range []int64{2, -1} {
		t.Run(fmt.Sprint("axis ", axis), func(t *testing.T) {
			g := onnx.NewGraph("gather-elements")
			g.Output("y", g.GatherElements(g.Input("x", onnx.Float, dims(xs...)...), g.Input("i", onnx.Int64, dims(is...)...), axis), onnx.Float)
			out := run(t, g, []string{"x", "i"}, []string{"y"}, ort.New(xs, x), ort.New(is, idx))
			want := make([]float32, len(idx))
			for p := range want {
				at := unravel(p, is)
				at[2] = idx[p] // y[i][j][k] = x[i][j][idx[i][j][k]]
				want[p] = x[offset(at, xs)]
			}
			hasShape(t, "y", out[0], is...)
			closeTo(t, "GatherElements", data[float32](t, out[0]), want, 0, 0)
		})
	}
}

func TestUnsqueezeSqueeze(t *testing.T) {
	xs := []int64{2, 3}
	x := iota32(6)
	g := onnx.NewGraph("unsqueeze")
	in := g.Input("x", onnx.Float, dims(xs...)...)
	u := g.Unsqueeze(in, 0, -1)
	g.Output("u", u, onnx.Float)
	g.Output("s", g.Squeeze(u, 0, 3), onnx.Float)
	g.Output("u2", g.Unsqueeze(in, 1), onnx.Float)
	out := run(t, g, []string{"x"}, []string{"u", "s", "u2"}, ort.New(xs, x))
	hasShape(t, "u", out[0], 1, 2, 3, 1)
	hasShape(t, "s", out[1], 2, 3)
	hasShape(t, "u2", out[2], 2, 1, 3)
	for i, o := range out {
		closeTo(t, fmt.Sprint("output ", i), data[float32](t, o), x, 0, 0)
	}
}

func TestWhere(t *testing.T) {
	cs, as, bs := []int64{2, 1, 4}, []int64{2, 3, 4}, []int64{1}
	cond := []bool{true, false, false, true, false, true, true, false}
	a, b := rnd(71, 24, -1, 1), []float32{42}
	g := onnx.NewGraph("where")
	y := g.Where(g.Input("c", onnx.Bool, dims(cs...)...), g.Input("a", onnx.Float, dims(as...)...), g.Input("b", onnx.Float, dims(bs...)...))
	g.Output("y", y, onnx.Float)
	out := run(t, g, []string{"c", "a", "b"}, []string{"y"}, ort.New(cs, cond), ort.New(as, a), ort.New(bs, b))
	want := make([]float32, 24)
	for i := range want {
		idx := unravel(i, as)
		if cond[offset(idx, cs)] {
			want[i] = a[i]
		} else {
			want[i] = b[0]
		}
	}
	hasShape(t, "y", out[0], as...)
	closeTo(t, "Where", data[float32](t, out[0]), want, 0, 0)
}

func TestExpand(t *testing.T) {
	xs := []int64{3, 1}
	x := []float32{1, 2, 3}
	g := onnx.NewGraph("expand")
	g.Output("y", g.Expand(g.Input("x", onnx.Float, dims(xs...)...), g.Ints(2, 1, 4)), onnx.Float)
	out := run(t, g, []string{"x"}, []string{"y"}, ort.New(xs, x))
	want := make([]float32, 24)
	for i := range want {
		want[i] = x[offset(unravel(i, []int64{2, 3, 4}), xs)]
	}
	hasShape(t, "y", out[0], 2, 3, 4)
	closeTo(t, "Expand", data[float32](t, out[0]), want, 0, 0)
}

func TestCast(t *testing.T) {
	x := []float32{2.7, -2.7, 0, 0.5, -0.25, 1e6, 3, -1}
	shape := []int64{2, 4}
	g := onnx.NewGraph("cast")
	in := g.Input("x", onnx.Float, dims(shape...)...)
	g.Output("i64", g.Cast(in, onnx.Int64), onnx.Int64)
	g.Output("i32", g.Cast(in, onnx.Int32), onnx.Int32)
	g.Output("b", g.Cast(in, onnx.Bool), onnx.Bool)
	g.Output("f", g.Cast(g.Cast(in, onnx.Int64), onnx.Float), onnx.Float)
	g.Output("h", g.Cast(g.Cast(in, onnx.Float16), onnx.Float), onnx.Float)
	out := run(t, g, []string{"x"}, []string{"i64", "i32", "b", "f", "h"}, ort.New(shape, x))
	for i := range out {
		hasShape(t, fmt.Sprint("output ", i), out[i], shape...)
	}
	// Float to integer truncates toward zero (C's conversion, as numpy's
	// astype does); nonzero is true.
	sameInts(t, "float32->int64", data[int64](t, out[0]), []int64{2, -2, 0, 0, 0, 1000000, 3, -1})
	sameInts(t, "float32->int32", data[int32](t, out[1]), []int32{2, -2, 0, 0, 0, 1000000, 3, -1})
	sameInts(t, "float32->bool", data[bool](t, out[2]), []bool{true, true, false, true, true, true, true, true})
	closeTo(t, "float32->int64->float32", data[float32](t, out[3]), []float32{2, -2, 0, 0, 0, 1e6, 3, -1}, 0, 0)
	// Through float16: 2.7 rounds to 2.69921875 (10-bit mantissa), 1e6
	// overflows to +Inf, the rest are exact.
	inf := float32(math.Inf(1))
	closeTo(t, "float32->float16->float32", data[float32](t, out[4]), []float32{2.69921875, -2.69921875, 0, 0.5, -0.25, inf, 3, -1}, 0, 0)
}

func TestShape(t *testing.T) {
	g := onnx.NewGraph("shape")
	in := g.Input("x", onnx.Float, onnx.P("b"), onnx.D(3), onnx.P("h"), onnx.P("w"))
	g.Output("all", g.Shape(in), onnx.Int64)
	g.Output("hw", g.ShapeRange(in, 2, 4), onnx.Int64)
	g.Output("bc", g.ShapeRange(in, 0, 2), onnx.Int64)
	s := session(t, g, []string{"x"}, []string{"all", "hw", "bc"})
	for _, xs := range [][]int64{{2, 3, 5, 7}, {1, 3, 4, 2}} {
		out, err := s.Run(t.Context(), ort.New(xs, make([]float32, numel(xs))))
		if err != nil {
			t.Fatal(err)
		}
		sameInts(t, "Shape", data[int64](t, out[0]), xs)
		sameInts(t, "ShapeRange(2,4)", data[int64](t, out[1]), xs[2:])
		sameInts(t, "ShapeRange(0,2)", data[int64](t, out[2]), xs[:2])
	}
}
