package onnx_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
)

func TestGraphErrors(t *testing.T) {
	cases := []struct {
		name  string
		build func(g *onnx.Graph)
		want  string // in the error
	}{
		{"input twice", func(g *onnx.Graph) {
			g.Input("x", onnx.Float, onnx.D(1))
			g.Input("x", onnx.Float, onnx.D(1))
		}, `"x" used twice`},
		{"initializer named like an input", func(g *onnx.Graph) {
			x := g.Input("w", onnx.Float, onnx.D(1))
			w := g.Initializer(&onnx.Tensor{Name: "w", Type: onnx.Float, Dims: []int64{1}, Raw: make([]byte, 4)})
			g.Output("y", g.Add(x, w), onnx.Float)
		}, `"w" used twice`},
		{"output named like an input", func(g *onnx.Graph) {
			x := g.Input("x", onnx.Float, onnx.D(1))
			y := g.Input("y", onnx.Float, onnx.D(1))
			g.Output("y", g.Add(x, y), onnx.Float)
		}, `"y" used twice`},
		{"two outputs with one name", func(g *onnx.Graph) {
			x := g.Input("x", onnx.Float, onnx.D(1))
			g.Output("y", g.Neg(x), onnx.Float)
			g.Output("y", g.Exp(x), onnx.Float)
		}, `"y" used twice`},
		{"empty input name", func(g *onnx.Graph) {
			g.Input("", onnx.Float, onnx.D(1))
		}, "empty tensor name"},
		{"Pop without Push", func(g *onnx.Graph) {
			g.Push("a")
			g.Pop()
			g.Pop()
		}, "Pop"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := onnx.NewGraph("bad")
			c.build(g) // must not panic
			m, err := g.Model("test", "0")
			if err == nil || m != nil {
				t.Fatalf("Model() = %v, %v; want an error", m, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			if g.Err() == nil || g.Err().Error() != err.Error() {
				t.Errorf("Err() = %v, want %v", g.Err(), err)
			}
		})
	}
}

// Names the builder generates (node outputs, constants) must not collide with
// names the caller chose, whatever they are.
func TestGeneratedNamesAvoidUserNames(t *testing.T) {
	g := onnx.NewGraph("names")
	a := g.Input("Add_1", onnx.Float, onnx.D(2))
	b := g.Input("const_2", onnx.Float, onnx.D(2))
	c := g.Input("Mul_3", onnx.Float, onnx.D(2))
	y := g.Mul(g.Add(a, b), g.Add(c, g.Scalar(1)))
	g.Output("Mul_4", y, onnx.Float)
	if g.Err() != nil {
		t.Fatal(g.Err())
	}
	out := run(t, g, []string{"Add_1", "const_2", "Mul_3"}, []string{"Mul_4"},
		ort.New([]int64{2}, []float32{1, 2}), ort.New([]int64{2}, []float32{10, 20}), ort.New([]int64{2}, []float32{3, 4}))
	closeTo(t, "y", data[float32](t, out[0]), []float32{44, 110}, 0, 0)
}

func TestPushPopNames(t *testing.T) {
	g := onnx.NewGraph("scopes")
	x := g.Input("x", onnx.Float, onnx.D(2))
	g.Push("down_blocks")
	g.Push("0")
	y := g.Neg(x)
	g.Pop()
	z := g.Exp(y)
	g.Pop()
	g.Output("y", g.Sigmoid(z), onnx.Float)
	var got []string
	for _, n := range g.Proto().Nodes {
		got = append(got, n.Name)
	}
	want := []string{"down_blocks.0/Neg_1", "down_blocks/Exp_2", "Sigmoid_3", "Identity_4"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("node names: (-want +got)\n-%q\n+%q", want, got)
	}
}

func TestConstantsShared(t *testing.T) {
	g := onnx.NewGraph("consts")
	a, b := g.Scalar(2), g.Scalar(2)
	if a != b {
		t.Errorf("two Scalar(2) are %q and %q, want one shared constant", a.Name(), b.Name())
	}
	if c := g.ConstF32([]int64{1}, 2); c == a {
		t.Errorf("ConstF32([1], 2) shares %q with the rank-0 Scalar(2)", c.Name())
	}
	if c := g.ConstI64(nil, 2); c == a {
		t.Errorf("ConstI64(2) shares %q with the float Scalar(2)", c.Name())
	}
	if got := len(g.Proto().Initializers); got != 3 {
		t.Errorf("%d initializers, want 3", got)
	}
}

// buildSample is a graph touching every kind of field the writer emits:
// attributes of each kind, optional inputs, initializers, symbolic dims.
func buildSample() *onnx.Graph {
	g := onnx.NewGraph("sample")
	x := g.Input("x", onnx.Float, onnx.P("batch"), onnx.D(4), onnx.P("h"), onnx.P("w"))
	w := g.Initializer(&onnx.Tensor{Name: "w", Type: onnx.Float, Dims: []int64{4, 4, 3, 3}, Raw: rawF32(rnd(1, 144, -1, 1))})
	g.Push("block")
	y := g.Conv2D(x, w, onnx.Value{}, onnx.ConvAttrs{Kernel: 3, Pad: 1})
	y = g.GroupNorm(y, g.ConstF32([]int64{4}, 1, 1, 1, 1), g.ConstF32([]int64{4}, 0, 0, 0, 0), 2, 4, 1e-5)
	y = g.ResizeNearest2x(g.SiLU(y))
	g.Pop()
	g.Output("y", y, onnx.Float, onnx.P("batch"), onnx.D(4), onnx.P("h2"), onnx.P("w2"))
	return g
}

func TestMarshalDeterministic(t *testing.T) {
	marshal := func() []byte {
		m, err := buildSample().Model("tokenflow", "1.2.3")
		if err != nil {
			t.Fatal(err)
		}
		m.Opsets["com.example"] = 3
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, again) {
			t.Fatal("one model marshalled twice gives different bytes")
		}
		return b
	}
	first := marshal()
	for i := 0; i < 5; i++ { // map iteration order varies run to run
		if !bytes.Equal(first, marshal()) {
			t.Fatal("the same graph built twice marshals to different bytes")
		}
	}
}

func TestMarshalErrors(t *testing.T) {
	if _, err := (&onnx.Model{}).Marshal(); err == nil {
		t.Error("Marshal of a model without graph: no error")
	}
	g := onnx.NewGraph("bad-attr")
	g.Node("", "Identity", 1, []onnx.Value{g.Input("x", onnx.Float, onnx.D(1))}, onnx.Attr{Name: "odd", Kind: 99})
	m, err := g.Model("test", "0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Marshal(); err == nil || !strings.Contains(err.Error(), "odd") {
		t.Errorf("Marshal with an attribute of unknown kind: error %v, want one naming the attribute", err)
	}
}

// One session must serve inputs of different sizes along its symbolic dims.
func TestSymbolicDimsTwoSizes(t *testing.T) {
	scale, bias := rnd(90, 4, 0.5, 2), rnd(91, 4, -1, 1)
	g := onnx.NewGraph("symbolic")
	x := g.Input("x", onnx.Float, onnx.P("batch"), onnx.D(4), onnx.P("h"), onnx.P("w"))
	g.Output("norm", g.ResizeNearest2x(g.GroupNorm(x, g.ConstF32([]int64{4}, scale...), g.ConstF32([]int64{4}, bias...), 2, 4, 1e-5)), onnx.Float)
	// [B,C,H,W] -> [B,C,HW] -> softmax over HW
	g.Output("attn", g.Softmax(g.Reshape(x, 0, 0, -1), -1), onnx.Float)
	s := session(t, g, []string{"x"}, []string{"norm", "attn"})
	for i, xs := range [][]int64{{1, 4, 3, 5}, {2, 4, 6, 2}, {1, 4, 3, 5}} {
		in := rnd(uint64(92+i), numel(xs), -2, 2)
		out, err := s.Run(t.Context(), ort.New(xs, in))
		if err != nil {
			t.Fatalf("run %d with shape %v: %v", i, xs, err)
		}
		norm := refResizeNearest(refGroupNorm(in, xs, 2, scale, bias, 1e-5), xs, int(2*xs[2]), int(2*xs[3]))
		hasShape(t, "norm", out[0], xs[0], 4, 2*xs[2], 2*xs[3])
		closeTo(t, "norm", data[float32](t, out[0]), norm, 1e-5, 0) // as TestGroupNorm
		flat := []int64{xs[0], 4, xs[2] * xs[3]}
		hasShape(t, "attn", out[1], flat...)
		closeTo(t, "attn", data[float32](t, out[1]), refSoftmax(in, flat, 2), 1e-6, 0) // as TestSoftmax
	}
}

// Attributes serialize right as ONNX Runtime reads them: Constant nodes
// carry ints and float attributes; If carries two subgraphs.
func TestAttributeKinds(t *testing.T) {
	g := onnx.NewGraph("attrs")
	x := g.Input("x", onnx.Float, onnx.D(3))
	cond := g.Input("cond", onnx.Bool, onnx.D(1))
	constant := func(a onnx.Attr) onnx.Value { return g.Node("", "Constant", 1, nil, a)[0] }
	iv := constant(onnx.AInts("value_ints", 1, 3))
	sv := constant(onnx.AFloat("value_float", 0.5))
	// x * 0.5, reshaped to [1,3] by the ints
	g.Output("consts", g.ReshapeTo(g.Mul(x, sv), iv), onnx.Float)

	branch := func(name string, v float32) *onnx.GraphProto {
		b := onnx.NewGraph(name)
		b.Output(name+"_y", b.ConstF32([]int64{3}, v, v, v), onnx.Float, onnx.D(3))
		return b.Proto()
	}
	picked := g.Node("", "If", 1, []onnx.Value{cond}, onnx.AGraph("then_branch", branch("then", 1)), onnx.AGraph("else_branch", branch("else", -1)))[0]
	g.Output("if", g.Mul(x, picked), onnx.Float)

	s := session(t, g, []string{"x", "cond"}, []string{"consts", "if"})
	for _, c := range []struct {
		cond bool
		sign float32
	}{{true, 1}, {false, -1}} {
		out, err := s.Run(t.Context(), ort.New([]int64{3}, []float32{4, 5, 6}), ort.New([]int64{1}, []bool{c.cond}))
		if err != nil {
			t.Fatal(err)
		}
		hasShape(t, "consts", out[0], 1, 3)
		closeTo(t, "consts", data[float32](t, out[0]), []float32{2, 2.5, 3}, 0, 0)
		closeTo(t, "if", data[float32](t, out[1]), []float32{4 * c.sign, 5 * c.sign, 6 * c.sign}, 0, 0)
	}
}
