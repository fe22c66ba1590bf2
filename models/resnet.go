package models

import "github.com/tokenflow/tokenflow/internal/onnx"

// ResnetBlock2D — diffusers: models/resnet.py, ResnetBlock2D (time scale
// shift "default", no up/down sampling inside, silu).
type ResnetBlock2D struct {
	In, Out     int64
	TembChannel int64 // 0: no time embedding (the VAE's resnets)
	Groups      int64
	Eps         float32
	// Hook, when set, rewrites the residual branch after conv2, before the
	// shortcut is added (TokenFlow's feature injection).
	Hook func(g *onnx.Graph, h onnx.Value) onnx.Value
}

// Build computes shortcut(x) + h (output_scale_factor 1) with
// h = conv2(silu(norm2(conv1(silu(norm1(x))) + proj(silu(temb))))).
func (r ResnetBlock2D) Build(g *onnx.Graph, s Scope, x, temb onnx.Value) onnx.Value {
	g.Push(s.Path())
	defer g.Pop()
	h := g.SiLU(groupNorm(g, s.Sub("norm1"), x, r.Groups, r.In, r.Eps))
	h = conv2d(g, s.Sub("conv1"), h, r.In, r.Out, 3, 1, 1)
	if r.TembChannel > 0 {
		t := linear(g, s.Sub("time_emb_proj"), g.SiLU(temb), r.TembChannel, r.Out, true)
		// [B,C] -> [B,C,1,1]
		h = g.Add(h, g.Unsqueeze(t, 2, 3))
	}
	h = g.SiLU(groupNorm(g, s.Sub("norm2"), h, r.Groups, r.Out, r.Eps))
	h = conv2d(g, s.Sub("conv2"), h, r.Out, r.Out, 3, 1, 1)
	if r.Hook != nil {
		h = r.Hook(g, h)
	}
	short := x
	if r.In != r.Out {
		short = conv2d(g, s.Sub("conv_shortcut"), x, r.In, r.Out, 1, 1, 0)
	}
	return g.Add(short, h)
}

// Downsample2D — diffusers: models/resnet.py, Downsample2D with use_conv:
// a stride-2 3x3 conv; padding 0 pads only right and bottom first (the VAE).
type Downsample2D struct {
	Channels int64
	Padding  int64
}

func (d Downsample2D) Build(g *onnx.Graph, s Scope, x onnx.Value) onnx.Value {
	if d.Padding == 0 {
		// pad (left 0, right 1, top 0, bottom 1) with zeros
		x = g.Op("Pad", []onnx.Value{x, g.Ints(0, 0, 0, 0, 0, 0, 1, 1)}, onnx.AString("mode", "constant"))
	}
	return conv2d(g, s.Sub("conv"), x, d.Channels, d.Channels, 3, 2, d.Padding)
}

// Upsample2D — diffusers: models/resnet.py, Upsample2D with use_conv:
// nearest 2x (or to the size of the skip connection it will join), then a
// 3x3 conv.
type Upsample2D struct{ Channels int64 }

// Build upsamples x; like, when valid, gives the target spatial size.
func (u Upsample2D) Build(g *onnx.Graph, s Scope, x, like onnx.Value) onnx.Value {
	if like.Valid() {
		x = g.ResizeNearestTo(x, like)
	} else {
		x = g.ResizeNearest2x(x)
	}
	return conv2d(g, s.Sub("conv"), x, u.Channels, u.Channels, 3, 1, 1)
}
