package models

import "github.com/tokenflow/tokenflow/internal/onnx"

// propagation is attn1 of the propagation pass (DESIGN.md section 3,
// propagation pass) for one layer: Channels-wide tokens, computed in Type
// (the UNet's weight type). It is the body of tokenflowAttn.propagate,
// factored out so that NearestGraph runs the very same nodes on their own.
type propagation struct {
	Channels int64
	Type     onnx.DataType
}

// propagationIn are the values one propagation layer reads.
type propagationIn struct {
	X        onnx.Value // [Gn,S,C] in Type: norm1 output, G groups [source | uncond_1..P | cond_1..P]
	KfTokens onnx.Value // float32 [K,S,C]: the keyframes' source-branch tokens
	KfAttn   onnx.Value // float32 [GK,S,C]: the keyframes' attn1 outputs, all groups
	Pivots   onnx.Value // int64 [2]: keyframe slots of the two pivots
	Weights  onnx.Value // float32 [n]: the first pivot's weight per frame
}

// build returns attn1's propagated output out [Gn,S,C] (in Type) and the
// nearest-neighbour indices idx [2,n*S] (int64; row p is pivot p's).
//
// Steps (DESIGN.md section 3, propagation pass):
//  1. X = source-third tokens, unit rows.
//  2. each pivot's tokens, unit rows.
//  3. cosine similarity X·Pᵀ and argmax over the pivot's tokens (ArgMax
//     keeps the first index on ties).
//  4. each branch's cached attention output of each pivot, gathered at idx.
//  5. out = w G1 + (1 - w) G2.
func (p propagation) build(g *onnx.Graph, in propagationIn) (out, idx onnx.Value) {
	dt := p.Type
	C := p.Channels
	x := in.X
	S := g.ShapeRange(x, 1, 2) // [1]
	// the batch is G groups of n frames, n the weights' length
	n := g.ShapeRange(in.Weights, 0, 1)
	G := g.Div(g.ShapeRange(x, 0, 1), n)
	// 1. X = source-group tokens, unit rows. [n,S,C]
	xs := unitRows(g, rows(g, x, g.Ints(0), n))
	// 2. the two pivots' tokens, unit rows. [K,S,C] -> [2,S,C]
	pv := unitRows(g, toDT(g, g.Gather(in.KfTokens, in.Pivots, 0), dt))
	// 3. cosine similarity and argmax (first index on ties):
	// [1,nS,C] x [2,C,S] -> [2,nS,S] -> idx [2,nS]
	sim := g.MatMul(g.Reshape(xs, 1, -1, C), g.Transpose(pv, 0, 2, 1))
	idx = g.ArgMax(sim, 2, false)
	// 4. gather each group's cached attention output at idx.
	// kf_attn [GK,S,C] -> [G,K,S,C] -> pivots [G,2,S,C] -> [G,2S,C]
	ka := g.ReshapeTo(in.KfAttn, g.Concat(0, G, g.Ints(-1), S, g.Ints(C)))
	pa := g.ReshapeTo(toDT(g, g.Gather(ka, in.Pivots, 1), dt), g.Concat(0, G, g.Ints(-1, C)))
	// pivot 2's rows start at S: idx + [0, S] -> [2nS]
	offs := g.Unsqueeze(g.Concat(0, g.Ints(0), S), 1)
	flat := g.Reshape(g.Add(idx, offs), -1)
	got := g.Gather(pa, flat, 1) // [G, 2nS, C]
	// [G,2nS,C] -> [G,2,n,S,C]; w [n] -> [1,1,n,1,1]
	got = g.ReshapeTo(got, g.Concat(0, G, g.Ints(2, -1), S, g.Ints(C)))
	two := g.Split(got, 1, 2)
	w := toDT(g, g.Reshape(in.Weights, 1, 1, -1, 1, 1), dt)
	one := toDT(g, g.Scalar(1), dt)
	// 5. out = w G1 + (1 - w) G2, [G,1,n,S,C] -> [Gn,S,C]
	out = g.Add(g.Mul(w, two[0]), g.Mul(g.Sub(one, w), two[1]))
	out = g.ReshapeTo(out, g.Concat(0, g.Ints(-1), S, g.Ints(C)))
	return out, idx
}

// NearestGraph I/O names.
const (
	NNInX        = "x"         // float32 [3n,S,C]: [source | uncond | cond] tokens
	NNInKfTokens = "kf_tokens" // float32 [K,S,C]
	NNInKfAttn   = "kf_attn"   // float32 [3K,S,C]
	NNInPivots   = InPivots    // int64 [2]
	NNInWeights  = InPivotWeights
	NNOutIdx     = "idx" // int64 [2,nS]: each source token's nearest token of pivot 0 and 1
	NNOutAttn    = "out" // float32 [3n,S,C]: the propagated attn1 output
)

// NearestGraph is one layer's propagation (token matching, gather and
// blend) of the TokenFlow UNet as a graph of its own, for tokens of
// channels values computed in dt (onnx.Float or onnx.Float16; inputs and
// outputs are float32 either way). It builds exactly the nodes the
// propagation branch of TokenFlowGraph builds, so tests can compare them
// with the host reference (internal/tokens.NearestCosine).
func NearestGraph(channels int64, dt onnx.DataType) (*onnx.Graph, error) {
	g := onnx.NewGraph("tokenflow_nearest")
	x := g.Input(NNInX, onnx.Float, onnx.P("frames3"), onnx.P("tokens"), onnx.D(channels))
	in := propagationIn{
		X:        toDT(g, x, dt),
		KfTokens: g.Input(NNInKfTokens, onnx.Float, onnx.P("keyframes"), onnx.P("tokens"), onnx.D(channels)),
		KfAttn:   g.Input(NNInKfAttn, onnx.Float, onnx.P("keyframes3"), onnx.P("tokens"), onnx.D(channels)),
		Pivots:   g.Input(NNInPivots, onnx.Int64, onnx.D(2)),
		Weights:  g.Input(NNInWeights, onnx.Float, onnx.P("frames")),
	}
	out, idx := propagation{Channels: channels, Type: dt}.build(g, in)
	g.Output(NNOutIdx, idx, onnx.Int64, onnx.D(2), onnx.P("rows"))
	g.Output(NNOutAttn, fromDT(g, out, dt), onnx.Float, onnx.P("frames3"), onnx.P("tokens"), onnx.D(channels))
	if err := g.Err(); err != nil {
		return nil, err
	}
	return g, nil
}
