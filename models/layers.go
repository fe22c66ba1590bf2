package models

import "github.com/tokenflow/tokenflow/internal/onnx"

// The torch.nn layers every block uses, written as graph nodes. In fp16
// graphs, normalisations and attention run in float32: their inputs are cast
// up and their outputs cast back (SD 2.x overflows in fp16 otherwise).

// linear is torch.nn.Linear over the last axis: x [..., in] -> [..., out].
// The weight [out,in] is used as stored (Gemm transB), so ONNX Runtime needs
// no transposed copy of it.
func linear(g *onnx.Graph, s Scope, x onnx.Value, in, out int64, bias bool) onnx.Value {
	return linearPart(g, s, x, in, out, bias, 0, 1)
}

// linearPart is the part-th of parts equal slices of a linear layer's
// outputs (out is the slice's width): the same numbers as those outputs of
// the whole layer, without computing the rest.
func linearPart(g *onnx.Graph, s Scope, x onnx.Value, in, out int64, bias bool, part, parts int64) onnx.Value {
	w := s.ParamPart(g, "weight", part, parts, parts*out, in)
	var b onnx.Value
	if bias {
		b = s.ParamPart(g, "bias", part, parts, parts*out)
	}
	lead := g.ShapeRange(x, 0, -1)
	// [..., in] -> [N, in]
	flat := g.Reshape(x, -1, in)
	y := g.Gemm(flat, w, b, false, true)
	// [N, out] -> [..., out]
	return g.ReshapeTo(y, g.Concat(0, lead, g.Ints(out)))
}

// conv2d is torch.nn.Conv2d with a square kernel and symmetric padding.
func conv2d(g *onnx.Graph, s Scope, x onnx.Value, in, out, kernel, stride, pad int64) onnx.Value {
	w := s.Param(g, "weight", out, in, kernel, kernel)
	b := s.Param(g, "bias", out)
	return g.Conv2D(x, w, b, onnx.ConvAttrs{Kernel: kernel, Stride: stride, Pad: pad})
}

// toF32 and fromF32 bracket a float32 island in an fp16 graph.
func toF32(g *onnx.Graph, s Scope, x onnx.Value) onnx.Value { return fromDT(g, x, s.w.Type) }

func fromF32(g *onnx.Graph, s Scope, x onnx.Value) onnx.Value { return toDT(g, x, s.w.Type) }

// groupNorm is torch.nn.GroupNorm(groups, channels, eps) with affine weights.
func groupNorm(g *onnx.Graph, s Scope, x onnx.Value, groups, channels int64, eps float32) onnx.Value {
	y := g.GroupNorm(toF32(g, s, x), s.ParamF32(g, "weight", channels), s.ParamF32(g, "bias", channels), groups, channels, eps)
	return fromF32(g, s, y)
}

// layerNorm is torch.nn.LayerNorm(channels, eps) over the last axis.
func layerNorm(g *onnx.Graph, s Scope, x onnx.Value, channels int64, eps float32) onnx.Value {
	y := g.LayerNorm(toF32(g, s, x), s.ParamF32(g, "weight", channels), s.ParamF32(g, "bias", channels), eps)
	return fromF32(g, s, y)
}

// attention runs softmax(q k^T * scale) v over heads, in float32.
func attention(g *onnx.Graph, s Scope, q, k, v onnx.Value, heads int64, scale float32) onnx.Value {
	y := g.MultiHeadAttention(toF32(g, s, q), toF32(g, s, k), toF32(g, s, v), heads, scale)
	return fromF32(g, s, y)
}

// gelu and quickGELU run in float32 (their constants are float32).
func gelu(g *onnx.Graph, s Scope, x onnx.Value) onnx.Value {
	return fromF32(g, s, g.GELU(toF32(g, s, x)))
}

func quickGELU(g *onnx.Graph, s Scope, x onnx.Value) onnx.Value {
	return fromF32(g, s, g.QuickGELU(toF32(g, s, x)))
}
