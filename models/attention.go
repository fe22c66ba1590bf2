package models

import (
	"fmt"
	"math"

	"github.com/tokenflow/tokenflow/internal/onnx"
)

// Attention — diffusers: models/attention_processor.py, Attention. It owns
// the projections; what self-attention computes with them is its processor's
// business (AttnProcessor), chosen per layer by module path.
type Attention struct {
	Scope    Scope
	QueryDim int64
	CrossDim int64 // key/value input width (QueryDim for self-attention)
	Heads    int64
	HeadDim  int64
	Bias     bool // projection biases (the VAE's attention has them)
	OutBias  bool
	InnerDim int64
}

func newAttention(s Scope, queryDim, crossDim, heads, headDim int64) *Attention {
	return &Attention{Scope: s, QueryDim: queryDim, CrossDim: crossDim, Heads: heads, HeadDim: headDim, OutBias: true, InnerDim: heads * headDim}
}

// Q, K and V project hidden states [B,S,C] to [B,S,inner].
func (a *Attention) Q(g *onnx.Graph, x onnx.Value) onnx.Value {
	return linear(g, a.Scope.Sub("to_q"), x, a.QueryDim, a.InnerDim, a.Bias)
}

func (a *Attention) K(g *onnx.Graph, ctx onnx.Value) onnx.Value {
	return linear(g, a.Scope.Sub("to_k"), ctx, a.CrossDim, a.InnerDim, a.Bias)
}

func (a *Attention) V(g *onnx.Graph, ctx onnx.Value) onnx.Value {
	return linear(g, a.Scope.Sub("to_v"), ctx, a.CrossDim, a.InnerDim, a.Bias)
}

// Out is the output projection to_out.0 (to_out.1 is dropout).
func (a *Attention) Out(g *onnx.Graph, h onnx.Value) onnx.Value {
	return linear(g, a.Scope.Sub("to_out").Index(0), h, a.InnerDim, a.QueryDim, a.OutBias)
}

// Attend is multi-head scaled dot-product attention: q [B,S,inner],
// k and v [B,L,inner] -> [B,S,inner], scale HeadDim^-1/2.
func (a *Attention) Attend(g *onnx.Graph, q, k, v onnx.Value) onnx.Value {
	return attention(g, a.Scope, q, k, v, a.Heads, float32(1/math.Sqrt(float64(a.HeadDim))))
}

// Layer describes a self-attention layer to its processor.
type Layer struct {
	Path     string // diffusers module path, e.g. "up_blocks.1.attentions.2.transformer_blocks.0.attn1"
	Channels int64
	Heads    int64
	// Down is the layer's spatial downscale from the latent (1, 2, 4, 8).
	Down int
}

// AttnProcessor computes a self-attention layer's output (after to_out,
// before the residual add) from the block's normalised hidden states x
// [B,S,C]. A processor may add graph inputs and outputs of its own; its
// state crosses the graph boundary only that way.
type AttnProcessor interface {
	Apply(g *onnx.Graph, a *Attention, x onnx.Value, l Layer) onnx.Value
}

// PlainAttn is ordinary self-attention, as diffusers' AttnProcessor.
type PlainAttn struct{}

func (PlainAttn) Apply(g *onnx.Graph, a *Attention, x onnx.Value, _ Layer) onnx.Value {
	return a.Out(g, a.Attend(g, a.Q(g, x), a.K(g, x), a.V(g, x)))
}

// Processors assigns a processor to each self-attention layer by module
// path: ByPath first, then Default. Building checks that every layer got
// one and that every ByPath entry names a real layer.
type Processors struct {
	ByPath  map[string]AttnProcessor
	Default AttnProcessor
	used    map[string]bool
}

func (p *Processors) pick(path string) (AttnProcessor, error) {
	if p.used == nil {
		p.used = map[string]bool{}
	}
	if pr, ok := p.ByPath[path]; ok {
		p.used[path] = true
		return pr, nil
	}
	if p.Default != nil {
		return p.Default, nil
	}
	return nil, fmt.Errorf("no attention processor for %s", path)
}

func (p *Processors) checkAllUsed() error {
	for path := range p.ByPath {
		if !p.used[path] {
			return fmt.Errorf("attention processor assigned to %s, which is not a self-attention layer of this UNet", path)
		}
	}
	return nil
}

// FeedForward — diffusers: models/attention.py, FeedForward with GEGLU:
// proj to 2*inner, hidden * gelu(gate), back to dim. The projection's two
// halves are two Gemms over the halves of its weight rather than one Gemm
// and a Split: the same numbers (a Gemm's output column does not depend on
// the others), without copying the [tokens, 2*inner] product, the largest
// tensor of the block (a Split took 3 % of a UNet pass).
type FeedForward struct{ Dim int64 }

func (f FeedForward) Build(g *onnx.Graph, s Scope, x onnx.Value) onnx.Value {
	inner := 4 * f.Dim
	proj := s.Sub("net").Index(0).Sub("proj")
	hidden := linearPart(g, proj, x, f.Dim, inner, true, 0, 2)
	gate := linearPart(g, proj, x, f.Dim, inner, true, 1, 2)
	h := g.Mul(hidden, gelu(g, s, gate))
	return linear(g, s.Sub("net").Index(2), h, inner, f.Dim, true)
}

// BasicTransformerBlock — diffusers: models/attention.py,
// BasicTransformerBlock (layer_norm, self-attention attn1, cross-attention
// attn2, GEGLU feed-forward).
type BasicTransformerBlock struct {
	Dim, Heads, HeadDim, CrossDim int64
	Layer                         Layer
	Processor                     AttnProcessor
}

func (b BasicTransformerBlock) Build(g *onnx.Graph, s Scope, x, ctx onnx.Value) onnx.Value {
	g.Push(s.Path())
	defer g.Pop()
	// 1. self-attention through the layer's processor
	n := layerNorm(g, s.Sub("norm1"), x, b.Dim, 1e-5)
	attn1 := newAttention(s.Sub("attn1"), b.Dim, b.Dim, b.Heads, b.HeadDim)
	x = g.Add(b.Processor.Apply(g, attn1, n, b.Layer), x)
	// 2. cross-attention on the text
	n = layerNorm(g, s.Sub("norm2"), x, b.Dim, 1e-5)
	attn2 := newAttention(s.Sub("attn2"), b.Dim, b.CrossDim, b.Heads, b.HeadDim)
	x = g.Add(attn2.Out(g, attn2.Attend(g, attn2.Q(g, n), attn2.K(g, ctx), attn2.V(g, ctx))), x)
	// 3. feed-forward
	n = layerNorm(g, s.Sub("norm3"), x, b.Dim, 1e-5)
	return g.Add(FeedForward{Dim: b.Dim}.Build(g, s.Sub("ff"), n), x)
}

// Transformer2DModel — diffusers: models/transformer_2d.py,
// Transformer2DModel for continuous inputs, one transformer block.
type Transformer2DModel struct {
	Channels, Heads, CrossDim int64
	Groups                    int64
	Linear                    bool // use_linear_projection: Linear vs 1x1 conv proj_in/proj_out
	Down                      int
	Procs                     *Processors
	err                       *error
}

func (t Transformer2DModel) Build(g *onnx.Graph, s Scope, x, ctx onnx.Value) onnx.Value {
	headDim := t.Channels / t.Heads
	inner := t.Heads * headDim
	residual := x
	h := groupNorm(g, s.Sub("norm"), x, t.Groups, t.Channels, 1e-6)
	shape := g.Shape(x)
	if t.Linear {
		// [B,C,H,W] -> [B,HW,C]
		h = g.Transpose(g.Reshape(h, 0, t.Channels, -1), 0, 2, 1)
		h = linear(g, s.Sub("proj_in"), h, t.Channels, inner, true)
	} else {
		h = conv2d(g, s.Sub("proj_in"), h, t.Channels, inner, 1, 1, 0)
		// [B,inner,H,W] -> [B,HW,inner]
		h = g.Transpose(g.Reshape(h, 0, inner, -1), 0, 2, 1)
	}
	block := s.Sub("transformer_blocks").Index(0)
	layer := Layer{Path: block.Sub("attn1").Path(), Channels: inner, Heads: t.Heads, Down: t.Down}
	proc, err := t.Procs.pick(layer.Path)
	if err != nil && *t.err == nil {
		*t.err = err
	}
	if proc == nil {
		proc = PlainAttn{}
	}
	h = BasicTransformerBlock{Dim: inner, Heads: t.Heads, HeadDim: headDim, CrossDim: t.CrossDim, Layer: layer, Processor: proc}.Build(g, block, h, ctx)
	if t.Linear {
		h = linear(g, s.Sub("proj_out"), h, inner, t.Channels, true)
		// [B,HW,C] -> [B,C,H,W]
		h = g.ReshapeTo(g.Transpose(h, 0, 2, 1), shape)
	} else {
		// [B,HW,inner] -> [B,inner,H,W]
		h = g.ReshapeTo(g.Transpose(h, 0, 2, 1), g.Concat(0, g.ShapeRange(x, 0, 1), g.Ints(inner), g.ShapeRange(x, 2, 4)))
		h = conv2d(g, s.Sub("proj_out"), h, inner, t.Channels, 1, 1, 0)
	}
	return g.Add(h, residual)
}
