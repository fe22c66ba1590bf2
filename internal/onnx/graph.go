package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Opset versions the builder writes against.
const (
	OpsetONNX      = 17
	OpsetMicrosoft = 1
	DomainMS       = "com.microsoft"
)

// Value names a tensor in a graph under construction. The zero Value is an
// omitted optional input.
type Value struct{ name string }

// Name is the tensor's name in the graph.
func (v Value) Name() string { return v.name }

// Valid reports whether v names a tensor.
func (v Value) Valid() bool { return v.name != "" }

// Graph builds a GraphProto node by node. Blocks add nodes to it; nothing runs.
// A subgraph (an If branch) shares its root's names, constants and
// initializers: every initializer lives in the root graph, so branches that
// use the same weights share one copy.
type Graph struct {
	proto  GraphProto
	prefix []string
	*graphState
}

// graphState is what a root graph and its subgraphs share.
type graphState struct {
	root    *Graph
	counter int
	consts  map[string]Value
	used    map[string]bool
	err     error
}

// NewGraph starts an empty graph.
func NewGraph(name string) *Graph {
	g := &Graph{proto: GraphProto{Name: name}, graphState: &graphState{consts: map[string]Value{}, used: map[string]bool{}}}
	g.root = g
	return g
}

// If adds an If node on cond (a one-element bool tensor). then and els
// build the two branches in subgraphs, which may use any value of the
// enclosing graphs, and return the branch outputs, whose element types are
// types. It returns the If node's outputs.
func (g *Graph) If(cond Value, types []DataType, then, els func(b *Graph) []Value) []Value {
	branch := func(kind string, build func(*Graph) []Value) *GraphProto {
		sub := &Graph{proto: GraphProto{Name: g.fresh("If_" + kind)}, prefix: slices.Clone(g.prefix), graphState: g.graphState}
		outs := build(sub)
		if len(outs) != len(types) {
			g.fail(fmt.Errorf("onnx: If %s branch returns %d values, want %d", kind, len(outs), len(types)))
			return &sub.proto
		}
		for i, v := range outs {
			// A branch output must be produced inside the branch.
			name := sub.fresh("out")
			sub.used[name] = true
			sub.proto.Nodes = append(sub.proto.Nodes, &Node{Name: name, OpType: "Identity", Inputs: []string{v.name}, Outputs: []string{name}})
			sub.proto.Outputs = append(sub.proto.Outputs, ValueInfo{Name: name, Type: types[i]})
		}
		return &sub.proto
	}
	thenG := branch("then", then)
	elseG := branch("else", els)
	return g.Node("", "If", len(types), []Value{cond}, AGraph("then_branch", thenG), AGraph("else_branch", elseG))
}

// Push prefixes the names of the nodes added until the matching Pop
// (for readable graphs and profiles: "down_blocks.0.resnets.1/Conv_12").
func (g *Graph) Push(scope string) { g.prefix = append(g.prefix, scope) }

// Pop undoes the last Push; a Pop without Push is kept as the graph's error.
func (g *Graph) Pop() {
	if len(g.prefix) == 0 {
		g.fail(fmt.Errorf("onnx: Pop without a matching Push"))
		return
	}
	g.prefix = g.prefix[:len(g.prefix)-1]
}

// fresh is a new node name for op under the current scope.
func (g *Graph) fresh(op string) string { return g.unique(strings.Join(g.prefix, "."), op) }

// unique is "scope/op_N" (or "op_N"), skipping names already taken: a caller
// may well name an input "Add_1".
func (g *Graph) unique(scope, op string) string {
	for {
		g.counter++
		name := fmt.Sprintf("%s_%d", op, g.counter)
		if scope != "" {
			name = scope + "/" + name
		}
		if !g.used[name] && !g.used[name+":0"] {
			return name
		}
	}
}

// claim records name as taken; a clash is kept as the graph's error.
func (g *Graph) claim(name string) {
	switch {
	case name == "":
		g.fail(fmt.Errorf("onnx: empty tensor name"))
	case g.used[name]:
		g.fail(fmt.Errorf("onnx: tensor name %q used twice", name))
	}
	g.used[name] = true
}

func (g *Graph) fail(err error) {
	if g.err == nil {
		g.err = err
	}
}

// Err is the first construction error (a name used twice, ...), if any.
func (g *Graph) Err() error { return g.err }

// Input declares a graph input. Dims use D for fixed and P for symbolic sizes.
func (g *Graph) Input(name string, t DataType, dims ...Dim) Value {
	g.claim(name)
	g.proto.Inputs = append(g.proto.Inputs, ValueInfo{Name: name, Type: t, Dims: dims})
	return Value{name}
}

// Output exposes v as a graph output called name (through an Identity node
// when v already has another name).
func (g *Graph) Output(name string, v Value, t DataType, dims ...Dim) {
	if v.name != name {
		g.proto.Nodes = append(g.proto.Nodes, &Node{Name: g.fresh("Identity"), OpType: "Identity", Inputs: []string{v.name}, Outputs: []string{name}})
		g.claim(name)
	}
	g.proto.Outputs = append(g.proto.Outputs, ValueInfo{Name: name, Type: t, Dims: dims})
}

// Initializer adds a weight tensor (to the root graph) and returns it as a
// value.
func (g *Graph) Initializer(t *Tensor) Value {
	g.claim(t.Name)
	g.root.proto.Initializers = append(g.root.proto.Initializers, t)
	return Value{t.Name}
}

// Root is the outermost graph (g itself unless g is an If branch).
func (g *Graph) Root() *Graph { return g.root }

// Proto is the graph built so far.
func (g *Graph) Proto() *GraphProto { return &g.proto }

// Model wraps the graph into a model with the builder's opsets, or returns
// the first construction error.
func (g *Graph) Model(producer, version string) (*Model, error) {
	if g.err != nil {
		return nil, g.err
	}
	return &Model{
		Opsets:          map[string]int64{"": OpsetONNX, DomainMS: OpsetMicrosoft},
		ProducerName:    producer,
		ProducerVersion: version,
		Graph:           &g.proto,
	}, nil
}

// Node adds one node with n outputs and returns them.
func (g *Graph) Node(domain, op string, n int, inputs []Value, attrs ...Attr) []Value {
	name := g.fresh(op)
	node := &Node{Name: name, OpType: op, Domain: domain, Attrs: attrs}
	for _, in := range inputs {
		node.Inputs = append(node.Inputs, in.name)
	}
	outs := make([]Value, n)
	for i := range outs {
		out := name
		if n > 1 {
			out = fmt.Sprintf("%s:%d", name, i)
		}
		g.claim(out)
		node.Outputs = append(node.Outputs, out)
		outs[i] = Value{out}
	}
	g.proto.Nodes = append(g.proto.Nodes, node)
	return outs
}

// Op adds a single-output ai.onnx node.
func (g *Graph) Op(op string, inputs []Value, attrs ...Attr) Value {
	return g.Node("", op, 1, inputs, attrs...)[0]
}

// --- constants ---

// ConstF32 is a float32 constant tensor, shared when repeated.
func (g *Graph) ConstF32(dims []int64, v ...float32) Value {
	raw, _ := binary.Append(nil, binary.LittleEndian, v) // a []float32 always encodes
	return g.constant(Float, dims, raw)
}

// ConstI64 is an int64 constant tensor, shared when repeated.
func (g *Graph) ConstI64(dims []int64, v ...int64) Value {
	raw, _ := binary.Append(nil, binary.LittleEndian, v) // an []int64 always encodes
	return g.constant(Int64, dims, raw)
}

// Ints is a 1-D int64 constant (shapes, axes, starts...).
func (g *Graph) Ints(v ...int64) Value { return g.ConstI64([]int64{int64(len(v))}, v...) }

// Scalar is a rank-0 float32 constant.
func (g *Graph) Scalar(v float32) Value { return g.ConstF32(nil, v) }

func (g *Graph) constant(t DataType, dims []int64, raw []byte) Value {
	key := fmt.Sprint(t, dims, string(raw))
	if v, ok := g.consts[key]; ok {
		return v
	}
	v := g.Initializer(&Tensor{Name: g.unique("", "const"), Type: t, Dims: dims, Raw: raw})
	g.consts[key] = v
	return v
}

// --- elementwise ---

func (g *Graph) Add(a, b Value) Value { return g.Op("Add", []Value{a, b}) }
func (g *Graph) Sub(a, b Value) Value { return g.Op("Sub", []Value{a, b}) }
func (g *Graph) Mul(a, b Value) Value { return g.Op("Mul", []Value{a, b}) }
func (g *Graph) Div(a, b Value) Value { return g.Op("Div", []Value{a, b}) }
func (g *Graph) Pow(a, b Value) Value { return g.Op("Pow", []Value{a, b}) }

func (g *Graph) Sigmoid(x Value) Value { return g.Op("Sigmoid", []Value{x}) }
func (g *Graph) Erf(x Value) Value     { return g.Op("Erf", []Value{x}) }
func (g *Graph) Sin(x Value) Value     { return g.Op("Sin", []Value{x}) }
func (g *Graph) Cos(x Value) Value     { return g.Op("Cos", []Value{x}) }
func (g *Graph) Exp(x Value) Value     { return g.Op("Exp", []Value{x}) }
func (g *Graph) Sqrt(x Value) Value    { return g.Op("Sqrt", []Value{x}) }
func (g *Graph) Neg(x Value) Value     { return g.Op("Neg", []Value{x}) }
func (g *Graph) Identity(x Value) Value {
	return g.Op("Identity", []Value{x})
}

// Where selects a where cond is true, else b.
func (g *Graph) Where(cond, a, b Value) Value { return g.Op("Where", []Value{cond, a, b}) }

// Cast converts x to type t.
func (g *Graph) Cast(x Value, t DataType) Value {
	return g.Op("Cast", []Value{x}, AInt("to", int64(t)))
}

// SiLU is x * sigmoid(x).
func (g *Graph) SiLU(x Value) Value { return g.Mul(x, g.Sigmoid(x)) }

// GELU is the exact (erf) GELU, 0.5 x (1 + erf(x / sqrt 2)), written in the
// pattern ONNX Runtime fuses into its Gelu kernel.
func (g *Graph) GELU(x Value) Value {
	e := g.Erf(g.Div(x, g.Scalar(float32(math.Sqrt2))))
	return g.Mul(g.Mul(x, g.Add(e, g.Scalar(1))), g.Scalar(0.5))
}

// QuickGELU is x * sigmoid(1.702 x), CLIP's activation.
func (g *Graph) QuickGELU(x Value) Value {
	return g.Mul(x, g.Sigmoid(g.Mul(x, g.Scalar(1.702))))
}

// --- linear algebra ---

func (g *Graph) MatMul(a, b Value) Value { return g.Op("MatMul", []Value{a, b}) }

// Gemm is alpha*A'*B' + beta*C with optional transposes.
func (g *Graph) Gemm(a, b, c Value, transA, transB bool) Value {
	return g.Op("Gemm", []Value{a, b, c}, AInt("transA", b2i(transA)), AInt("transB", b2i(transB)))
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// ConvAttrs are Conv's attributes for 2-D convolutions.
type ConvAttrs struct {
	Kernel int64
	Stride int64
	Pad    int64
	Group  int64
}

// Conv2D is a 2-D convolution with square kernel, stride and symmetric
// padding; b may be the zero Value.
func (g *Graph) Conv2D(x, w, b Value, a ConvAttrs) Value {
	stride := a.Stride
	if stride == 0 {
		stride = 1
	}
	attrs := []Attr{
		AInts("kernel_shape", a.Kernel, a.Kernel),
		AInts("strides", stride, stride),
		AInts("pads", a.Pad, a.Pad, a.Pad, a.Pad),
		AInts("dilations", 1, 1),
	}
	if a.Group > 1 {
		attrs = append(attrs, AInt("group", a.Group))
	}
	ins := []Value{x, w}
	if b.Valid() {
		ins = append(ins, b)
	}
	return g.Op("Conv", ins, attrs...)
}

// --- shape ---

// Reshape to shape (0 copies the input's dim, -1 is inferred).
func (g *Graph) Reshape(x Value, shape ...int64) Value {
	return g.Op("Reshape", []Value{x, g.Ints(shape...)})
}

// ReshapeTo reshapes to a shape computed in the graph.
func (g *Graph) ReshapeTo(x, shape Value) Value { return g.Op("Reshape", []Value{x, shape}) }

// Transpose permutes x's axes.
func (g *Graph) Transpose(x Value, perm ...int64) Value {
	return g.Op("Transpose", []Value{x}, AInts("perm", perm...))
}

// Concat joins values along axis.
func (g *Graph) Concat(axis int64, vs ...Value) Value {
	return g.Op("Concat", vs, AInt("axis", axis))
}

// Slice takes x[starts:ends] along axes (steps 1).
func (g *Graph) Slice(x Value, axes, starts, ends []int64) Value {
	return g.Op("Slice", []Value{x, g.Ints(starts...), g.Ints(ends...), g.Ints(axes...)})
}

// SliceDyn is Slice with starts and ends computed in the graph.
func (g *Graph) SliceDyn(x, starts, ends, axes Value) Value {
	return g.Op("Slice", []Value{x, starts, ends, axes})
}

// Split cuts x along axis into pieces of the given sizes, or into n equal
// pieces when sizes is empty.
func (g *Graph) Split(x Value, axis int64, n int, sizes ...int64) []Value {
	ins := []Value{x}
	attrs := []Attr{AInt("axis", axis)}
	if len(sizes) > 0 {
		n = len(sizes)
		ins = append(ins, g.Ints(sizes...))
	}
	// At opset 17 a Split without sizes cuts into len(outputs) equal pieces.
	return g.Node("", "Split", n, ins, attrs...)
}

// Gather picks x's entries along axis at idx.
func (g *Graph) Gather(x, idx Value, axis int64) Value {
	return g.Op("Gather", []Value{x, idx}, AInt("axis", axis))
}

// GatherElements picks x's entries along axis at idx (same rank as x).
func (g *Graph) GatherElements(x, idx Value, axis int64) Value {
	return g.Op("GatherElements", []Value{x, idx}, AInt("axis", axis))
}

// Unsqueeze inserts axes of size 1.
func (g *Graph) Unsqueeze(x Value, axes ...int64) Value {
	return g.Op("Unsqueeze", []Value{x, g.Ints(axes...)})
}

// Squeeze removes axes of size 1.
func (g *Graph) Squeeze(x Value, axes ...int64) Value {
	return g.Op("Squeeze", []Value{x, g.Ints(axes...)})
}

// Shape is x's shape as int64 [rank]; ShapeRange keeps dims [start, end).
func (g *Graph) Shape(x Value) Value { return g.Op("Shape", []Value{x}) }

func (g *Graph) ShapeRange(x Value, start, end int64) Value {
	return g.Op("Shape", []Value{x}, AInt("start", start), AInt("end", end))
}

// Expand broadcasts x to shape.
func (g *Graph) Expand(x, shape Value) Value { return g.Op("Expand", []Value{x, shape}) }

// --- reductions and normalization ---

// Softmax along axis.
func (g *Graph) Softmax(x Value, axis int64) Value {
	return g.Op("Softmax", []Value{x}, AInt("axis", axis))
}

// ArgMax along axis (first index on ties).
func (g *Graph) ArgMax(x Value, axis int64, keepDims bool) Value {
	return g.Op("ArgMax", []Value{x}, AInt("axis", axis), AInt("keepdims", b2i(keepDims)), AInt("select_last_index", 0))
}

// ReduceSum over axes.
func (g *Graph) ReduceSum(x Value, keepDims bool, axes ...int64) Value {
	return g.Op("ReduceSum", []Value{x, g.Ints(axes...)}, AInt("keepdims", b2i(keepDims)))
}

// ReduceMean over axes (an attribute at opset 17).
func (g *Graph) ReduceMean(x Value, keepDims bool, axes ...int64) Value {
	return g.Op("ReduceMean", []Value{x}, AInts("axes", axes...), AInt("keepdims", b2i(keepDims)))
}

// LayerNorm normalizes over the last axis with scale and bias.
func (g *Graph) LayerNorm(x, scale, bias Value, eps float32) Value {
	return g.Op("LayerNormalization", []Value{x, scale, bias}, AInt("axis", -1), AFloat("epsilon", eps))
}

// GroupNorm normalizes x [B,C,...] over groups of channels, then applies the
// per-channel scale and bias [C]. It is written as InstanceNormalization over
// [B, groups, rest], which ONNX Runtime runs as one kernel.
func (g *Graph) GroupNorm(x, scale, bias Value, groups, channels int64, eps float32) Value {
	shape := g.Shape(x)
	// [B,C,H,W] -> [B,G,C/G*H*W]
	grouped := g.Reshape(x, 0, groups, -1)
	ones := slices.Repeat([]float32{1}, int(groups))
	zeros := make([]float32, groups)
	normed := g.Op("InstanceNormalization", []Value{grouped, g.ConstF32([]int64{groups}, ones...), g.ConstF32([]int64{groups}, zeros...)}, AFloat("epsilon", eps))
	// [B,G,C/G*H*W] -> [B,C,H,W]
	back := g.ReshapeTo(normed, shape)
	// scale and bias [C] -> [C,1,1] to broadcast over H,W
	s := g.Reshape(scale, channels, 1, 1)
	b := g.Reshape(bias, channels, 1, 1)
	return g.Add(g.Mul(back, s), b)
}

// ResizeNearestTo resizes x [B,C,H,W] to the spatial size of like (nearest,
// as torch's F.interpolate(mode="nearest") does).
func (g *Graph) ResizeNearestTo(x, like Value) Value {
	sizes := g.Concat(0, g.ShapeRange(x, 0, 2), g.ShapeRange(like, 2, 4))
	return g.Op("Resize", []Value{x, {}, {}, sizes}, nearest...)
}

// ResizeNearest2x doubles x's spatial size (nearest).
func (g *Graph) ResizeNearest2x(x Value) Value {
	return g.Op("Resize", []Value{x, {}, g.ConstF32([]int64{4}, 1, 1, 2, 2)}, nearest...)
}

// nearest are Resize's attributes for torch's nearest interpolation.
var nearest = []Attr{
	AString("mode", "nearest"),
	AString("coordinate_transformation_mode", "asymmetric"),
	AString("nearest_mode", "floor"),
}

// --- attention ---

// MultiHeadAttention is com.microsoft's fused attention: q [B,S,D],
// k and v [B,L,D] -> [B,S,D], softmax(q k^T * scale) v per head.
func (g *Graph) MultiHeadAttention(q, k, v Value, heads int64, scale float32) Value {
	return g.Node(DomainMS, "MultiHeadAttention", 1, []Value{q, k, v}, AInt("num_heads", heads), AFloat("scale", scale))[0]
}
