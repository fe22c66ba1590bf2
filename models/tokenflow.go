package models

import (
	"math"

	"github.com/tokenflow/tokenflow/internal/onnx"
)

// The TokenFlow UNet is one graph for the three ways the edit runs the UNet,
// chosen per call by the attn_mode input, so the weights are held once:
//
//	0 plain:       ordinary self-attention (inversion, reconstruction);
//	1 keyframe:    batch [source | uncond | cond] of K keyframes each; the
//	               uncond and cond thirds attend to all K keyframes of their
//	               third (extended attention), with PnP query/key injection
//	               where qk_inject is on; outputs the pivot cache;
//	2 propagation: batch [source | uncond | cond] of n frames; attn1 is not
//	               evaluated: its output is gathered from two keyframes'
//	               cached outputs at the source tokens' nearest neighbours
//	               (cosine similarity) and blended by pivot_weights;
//	3 keyframe, keeping keys/values: mode 1, and it also outputs each
//	               layer's self-attention keys and values of the edited
//	               groups (after injection: the ones the pass used), for
//	               the anchors of a windowed step (package edit, Window).
//
// In modes 1 and 3 the per-layer inputs anchor_keys/anchor_values, when
// not empty, are kept anchors' keys and values [2P,A*S,C] (A anchors, S
// tokens each): every edited group's keys and values are its own K*S
// followed by its group's anchors' A*S along the sequence axis, so each
// query of the pass also attends to the anchors. Empty, the pass is the
// official keyframe pass (the concatenation adds nothing).
//
// Feature injection (conv_inject) replaces up_blocks.1.resnets.1's residual
// branch of the uncond and cond thirds by the source third's, in modes 1
// and 2. Each self-attention layer is an If on the mode; the weights are
// initializers of the root graph, shared by the branches.
//
// Several prompts share one pass: in modes 1 and 2 the batch is 1 + 2P
// groups of n frames, [source | uncond_1..uncond_P | cond_1..cond_P]; the
// source group is evaluated once and every edited group takes its
// injected features and, in mode 2, its nearest-neighbour matches. One
// prompt is P = 1, the thirds above. n is the length of pivot_weights, or,
// when that is empty, a third of the batch (see groups).
const (
	InAttnMode     = "attn_mode"     // int64 [1]
	InQKInject     = "qk_inject"     // bool [1]
	InConvInject   = "conv_inject"   // bool [1]
	InPivots       = "pivots"        // int64 [2]: keyframe slots of the first and second pivot
	InPivotWeights = "pivot_weights" // float32 [n]: the first pivot's weight per frame; its length is the frames per group (keyframe mode: K, or empty for three groups)

	ModePlain        = 0
	ModeKeyframe     = 1
	ModePropagate    = 2
	ModeKeyframeKeep = 3
)

// Per-layer TokenFlow I/O names: keyframe-pass outputs, and the same
// tensors fed back to propagation passes.
func OutTokens(layer string) string   { return "tokens/" + layer } // [K,S,C] source-branch tokens (norm1 output)
func OutAttn(layer string) string     { return "attn/" + layer }   // [(1+2P)K,S,C] attn1 outputs of all groups
func InKeyTokens(layer string) string { return "kf_tokens/" + layer }
func InKeyAttn(layer string) string   { return "kf_attn/" + layer }

// Per-layer keys/values of a windowed keyframe pass (modes 1 and 3): the
// anchors' inputs, and the outputs mode 3 keeps ([2P,K*S,C]; empty in
// other modes).
func InAnchorKeys(layer string) string   { return "anchor_keys/" + layer }
func InAnchorValues(layer string) string { return "anchor_values/" + layer }
func OutKeys(layer string) string        { return "keys/" + layer }
func OutValues(layer string) string      { return "values/" + layer }

// tokenflowState holds the graph inputs every TokenFlow processor shares.
type tokenflowState struct {
	ready           bool
	isKey, isProp   onnx.Value
	isKeep          onnx.Value
	qk, conv        onnx.Value
	pivots, weights onnx.Value
}

func (st *tokenflowState) init(g *onnx.Graph) {
	if st.ready {
		return
	}
	st.ready = true
	mode := g.Input(InAttnMode, onnx.Int64, onnx.D(1))
	st.isKeep = g.Op("Equal", []onnx.Value{mode, g.Ints(ModeKeyframeKeep)})
	st.isKey = g.Op("Or", []onnx.Value{g.Op("Equal", []onnx.Value{mode, g.Ints(ModeKeyframe)}), st.isKeep})
	st.isProp = g.Op("Equal", []onnx.Value{mode, g.Ints(ModePropagate)})
	st.qk = g.Input(InQKInject, onnx.Bool, onnx.D(1))
	st.conv = g.Input(InConvInject, onnx.Bool, onnx.D(1))
	st.pivots = g.Input(InPivots, onnx.Int64, onnx.D(2))
	st.weights = g.Input(InPivotWeights, onnx.Float, onnx.P("frames"))
}

// groups splits a TokenFlow batch x [B,...] into its groups: n, the frames
// per group, is pivot_weights' length, or B/3 when that is empty (a
// keyframe pass of one prompt may give no weights); G = B/n is 1 + 2P for
// P prompts. Both int64 [1].
func (st *tokenflowState) groups(g *onnx.Graph, x onnx.Value) (n, G onnx.Value) {
	B := g.ShapeRange(x, 0, 1)
	nw := g.ShapeRange(st.weights, 0, 1)
	n = g.Where(g.Op("Equal", []onnx.Value{nw, g.Ints(0)}), g.Div(B, g.Ints(3)), nw)
	return n, g.Div(B, n)
}

// rows is x[from:to] along axis 0 (from, to int64 [1]).
func rows(g *onnx.Graph, x, from, to onnx.Value) onnx.Value {
	return g.SliceDyn(x, from, to, g.Ints(0))
}

// toEnd is an end index past any batch.
const toEnd = math.MaxInt64

// tokenflowAttn is the self-attention processor of the TokenFlow UNet;
// injectQK marks the layers with Plug-and-Play query/key injection.
type tokenflowAttn struct {
	st       *tokenflowState
	injectQK bool
}

func (p tokenflowAttn) Apply(g *onnx.Graph, a *Attention, x onnx.Value, l Layer) onnx.Value {
	st := p.st
	st.init(g)
	dt := a.Scope.w.Type
	types := []onnx.DataType{dt, dt, dt, dt, dt}
	kfTokens := g.Input(InKeyTokens(l.Path), onnx.Float, onnx.P("keyframes"), onnx.P("tokens_"+l.Path), onnx.D(l.Channels))
	kfAttn := g.Input(InKeyAttn(l.Path), onnx.Float, onnx.P("keyframes3"), onnx.P("tokens_"+l.Path), onnx.D(l.Channels))
	anchorK := g.Input(InAnchorKeys(l.Path), onnx.Float, onnx.P("anchor_groups"), onnx.P("anchor_tokens_"+l.Path), onnx.D(l.Channels))
	anchorV := g.Input(InAnchorValues(l.Path), onnx.Float, onnx.P("anchor_groups"), onnx.P("anchor_tokens_"+l.Path), onnx.D(l.Channels))
	outs := g.If(st.isProp, types,
		func(b *onnx.Graph) []onnx.Value {
			return p.propagate(b, a, x, l, kfTokens, kfAttn)
		},
		func(b *onnx.Graph) []onnx.Value {
			return b.If(st.isKey, types,
				func(bb *onnx.Graph) []onnx.Value { return p.keyframe(bb, a, x, l, anchorK, anchorV) },
				func(bb *onnx.Graph) []onnx.Value {
					out := PlainAttn{}.Apply(bb, a, x, l)
					e := empty(bb, x)
					return []onnx.Value{out, e, e, e, e}
				})
		})
	g.Output(OutTokens(l.Path), fromDT(g, outs[1], dt), onnx.Float, onnx.P("keyframes"), onnx.P("tokens_"+l.Path), onnx.D(l.Channels))
	g.Output(OutAttn(l.Path), fromDT(g, outs[2], dt), onnx.Float, onnx.P("keyframes3"), onnx.P("tokens_"+l.Path), onnx.D(l.Channels))
	g.Output(OutKeys(l.Path), fromDT(g, outs[3], dt), onnx.Float, onnx.P("kept_groups"), onnx.P("kept_tokens_"+l.Path), onnx.D(l.Channels))
	g.Output(OutValues(l.Path), fromDT(g, outs[4], dt), onnx.Float, onnx.P("kept_groups"), onnx.P("kept_tokens_"+l.Path), onnx.D(l.Channels))
	return outs[0]
}

// empty is x[0:0]: a branch's placeholder for outputs its mode has not.
func empty(g *onnx.Graph, x onnx.Value) onnx.Value {
	return g.Slice(x, []int64{0}, []int64{0}, []int64{0})
}

// fromDT casts v from dt to float32, toDT from float32 to dt (no node when
// dt is float32).
func fromDT(g *onnx.Graph, v onnx.Value, dt onnx.DataType) onnx.Value {
	if dt == onnx.Float {
		return v
	}
	return g.Cast(v, onnx.Float)
}

func toDT(g *onnx.Graph, v onnx.Value, dt onnx.DataType) onnx.Value {
	if dt == onnx.Float {
		return v
	}
	return g.Cast(v, dt)
}

// keyframe is the keyframe pass: x [(1+2P)K,S,C] = [source | uncond_1..P
// | cond_1..P], K keyframes per group; anchorK and anchorV [2P,A*S,C] are
// kept anchors' keys and values (A = 0: none).
func (p tokenflowAttn) keyframe(g *onnx.Graph, a *Attention, x onnx.Value, l Layer, anchorK, anchorV onnx.Value) []onnx.Value {
	K, G := p.st.groups(g, x)
	q, k, v := a.Q(g, x), a.K(g, x), a.V(g, x)
	// The source group, frame by frame: [K,S,D]; the 2P edited groups,
	// each group's K frames as one sequence of K*S tokens so that every
	// query sees the keys of all keyframes (extended attention):
	// [2PK,S,D] -> [2P,K*S,D].
	zero := g.Ints(0)
	edited := g.Concat(0, g.Sub(G, g.Ints(1)), g.Ints(-1, a.InnerDim))
	src := func(t onnx.Value) onnx.Value { return rows(g, t, zero, K) }
	ext := func(t onnx.Value) onnx.Value { return g.ReshapeTo(rows(g, t, K, g.Ints(toEnd)), edited) }
	q0, k0, v0 := src(q), src(k), src(v)
	qe, ke, ve := ext(q), ext(k), ext(v)
	if p.injectQK {
		// PnP: every edited group takes the source's queries and keys,
		// frame for frame, when injection is on at this timestep.
		// [K,S,D] -> [1,K*S,D], broadcast over the groups.
		seq := func(t onnx.Value) onnx.Value { return g.Reshape(t, 1, -1, a.InnerDim) }
		qe = g.Where(p.st.qk, seq(q0), qe)
		ke = g.Where(p.st.qk, seq(k0), ke)
	}
	// Windowed step: each edited group's own keys/values, then its
	// anchors' ([2P,A*S,D]; an empty input reshapes to [2P,0,D] and the
	// concatenation is the pass's own).
	dt := a.Scope.w.Type
	anchor := func(t onnx.Value) onnx.Value { return g.ReshapeTo(toDT(g, t, dt), edited) }
	ka := g.Concat(1, ke, anchor(anchorK))
	va := g.Concat(1, ve, anchor(anchorV))
	srcOut := a.Attend(g, q0, k0, v0)
	extOut := a.Attend(g, qe, ka, va)
	// [2P,K*S,D] -> [2PK,S,D]
	extOut = g.ReshapeTo(extOut, g.Concat(0, g.Ints(-1), g.ShapeRange(x, 1, 2), g.Ints(a.InnerDim)))
	out := a.Out(g, g.Concat(0, srcOut, extOut))
	tokens := rows(g, x, zero, K)
	kept := g.If(p.st.isKeep, []onnx.DataType{dt, dt},
		func(b *onnx.Graph) []onnx.Value { return []onnx.Value{b.Identity(ke), b.Identity(ve)} },
		func(b *onnx.Graph) []onnx.Value { e := empty(b, x); return []onnx.Value{e, e} })
	return []onnx.Value{out, tokens, out, kept[0], kept[1]}
}

// propagate is the propagation pass: x [(1+2P)n,S,C]; attn1's output comes from
// the keyframes' cached outputs (DESIGN.md section 3, propagation pass).
func (p tokenflowAttn) propagate(g *onnx.Graph, a *Attention, x onnx.Value, l Layer, kfTokens, kfAttn onnx.Value) []onnx.Value {
	st := p.st
	out, _ := propagation{Channels: l.Channels, Type: a.Scope.w.Type}.build(g, propagationIn{
		X: x, KfTokens: kfTokens, KfAttn: kfAttn, Pivots: st.pivots, Weights: st.weights,
	})
	e := empty(g, x)
	return []onnx.Value{out, e, e, e, e}
}

// unitRows divides each row (last axis) by its Euclidean norm, as the
// official batch_cosine_sim does (no epsilon).
func unitRows(g *onnx.Graph, x onnx.Value) onnx.Value {
	return g.Div(x, g.Sqrt(g.ReduceSum(g.Mul(x, x), true, -1)))
}

// Injection says where Plug-and-Play injection happens, by diffusers module
// path: QK lists self-attention layers (".attn1") whose queries and keys
// the edited branches take from the source branch, Conv lists resnets whose
// residual branch they take. Which layers is the caller's policy (package
// pnp); every path must name a layer of this UNet.
type Injection struct {
	QK   []string
	Conv []string
}

// TokenFlowGraph builds the TokenFlow UNet (see the constants above for its
// extra inputs and outputs) with injection in the layers inj names.
func (u *UNet) TokenFlowGraph(inj Injection) (*onnx.Graph, error) {
	st := &tokenflowState{}
	procs := Processors{Default: tokenflowAttn{st: st}, ByPath: map[string]AttnProcessor{}}
	for _, path := range inj.QK {
		procs.ByPath[path] = tokenflowAttn{st: st, injectQK: true}
	}
	hooks := map[string]ResnetHook{}
	for _, path := range inj.Conv {
		hooks[path] = func(g *onnx.Graph, h onnx.Value) onnx.Value {
			st.init(g)
			// every edited group takes the source's residual branch:
			// [n,...] of the source, repeated G times.
			return g.If(st.conv, []onnx.DataType{u.Weights.Type},
				func(b *onnx.Graph) []onnx.Value {
					n, G := st.groups(b, h)
					src := rows(b, h, b.Ints(0), n)
					return []onnx.Value{b.Op("Tile", []onnx.Value{src, b.Concat(0, G, b.Ints(1, 1, 1))})}
				},
				func(b *onnx.Graph) []onnx.Value { return []onnx.Value{h} })[0]
		}
	}
	return u.Graph(UNetGraphOptions{Name: "unet_tokenflow", Processors: procs, ResnetHooks: hooks})
}
