package onnx_test

import (
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
)

// TestIfSharesOuterWeights builds an If whose branches both use one outer
// initializer, and checks each branch's result and that the weight is held
// once, in the root graph.
func TestIfSharesOuterWeights(t *testing.T) {
	g := onnx.NewGraph("if")
	x := g.Input("x", onnx.Float, onnx.D(3))
	c := g.Input("c", onnx.Bool, onnx.D(1))
	w := g.ConstF32([]int64{3}, 1, 2, 3)
	outs := g.If(c, []onnx.DataType{onnx.Float, onnx.Float},
		func(b *onnx.Graph) []onnx.Value {
			return []onnx.Value{b.Mul(x, w), b.Slice(x, []int64{0}, []int64{0}, []int64{0})}
		},
		func(b *onnx.Graph) []onnx.Value { return []onnx.Value{b.Add(x, w), x} })
	g.Output("y", outs[0], onnx.Float, onnx.D(3))
	g.Output("z", outs[1], onnx.Float, onnx.P("n"))
	for _, n := range g.Proto().Nodes {
		for _, a := range n.Attrs {
			if a.G != nil && len(a.G.Initializers) > 0 {
				t.Errorf("branch %s holds %d initializers; every initializer belongs in the root graph", a.G.Name, len(a.G.Initializers))
			}
		}
	}
	for _, cs := range []struct {
		cond bool
		y    []float32
		zLen int
	}{{true, []float32{10, 40, 90}, 0}, {false, []float32{11, 22, 33}, 3}} {
		out := run(t, g, []string{"x", "c"}, []string{"y", "z"}, ort.New([]int64{3}, []float32{10, 20, 30}), ort.New([]int64{1}, []bool{cs.cond}))
		closeTo(t, "y", data[float32](t, out[0]), cs.y, 0, 0)
		if got := len(data[float32](t, out[1])); got != cs.zLen {
			t.Errorf("cond %v: z has %d elements, want %d", cs.cond, got, cs.zLen)
		}
	}
}
