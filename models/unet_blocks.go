package models

import "github.com/tokenflow/tokenflow/internal/onnx"

// unetEnv is what every UNet block shares while one graph is built.
type unetEnv struct {
	cfg   *UNetConfig
	temb  onnx.Value
	ctx   onnx.Value // encoder_hidden_states
	procs *Processors
	hooks map[string]ResnetHook
	used  map[string]bool
	err   error
}

// ResnetHook rewrites a resnet's residual branch after conv2 (feature
// injection); chosen by the resnet's module path.
type ResnetHook func(g *onnx.Graph, h onnx.Value) onnx.Value

func (e *unetEnv) resnet(g *onnx.Graph, s Scope, x onnx.Value, in, out int64) onnx.Value {
	r := ResnetBlock2D{In: in, Out: out, TembChannel: int64(e.cfg.TimeEmbedDim()), Groups: int64(e.cfg.NormNumGroups), Eps: float32(e.cfg.NormEps)}
	if h, ok := e.hooks[s.Path()]; ok {
		r.Hook = h
		e.used[s.Path()] = true
	}
	return r.Build(g, s, x, e.temb)
}

func (e *unetEnv) transformer(g *onnx.Graph, s Scope, x onnx.Value, channels, heads, crossDim int64, down int) onnx.Value {
	return Transformer2DModel{Channels: channels, Heads: heads, CrossDim: crossDim, Groups: int64(e.cfg.NormNumGroups), Linear: e.cfg.UseLinearProjection, Down: down, Procs: e.procs, err: &e.err}.Build(g, s, x, e.ctx)
}

// DownBlock — diffusers: models/unet_2d_blocks.py, CrossAttnDownBlock2D
// (CrossAttn true) and DownBlock2D: resnets (each followed by a transformer
// when CrossAttn), then a stride-2 downsampler unless final. Returns the
// hidden states and the skip connections it adds.
type DownBlock struct {
	In, Out       int64
	Layers        int
	CrossAttn     bool
	Heads         int64
	CrossDim      int64
	AddDownsample bool
	Down          int
}

func (d DownBlock) Build(g *onnx.Graph, e *unetEnv, s Scope, x onnx.Value) (onnx.Value, []onnx.Value) {
	var skips []onnx.Value
	for i := 0; i < d.Layers; i++ {
		in := d.Out
		if i == 0 {
			in = d.In
		}
		x = e.resnet(g, s.Sub("resnets").Index(i), x, in, d.Out)
		if d.CrossAttn {
			x = e.transformer(g, s.Sub("attentions").Index(i), x, d.Out, d.Heads, d.CrossDim, d.Down)
		}
		skips = append(skips, x)
	}
	if d.AddDownsample {
		x = Downsample2D{Channels: d.Out, Padding: int64(e.cfg.DownsamplePadding)}.Build(g, s.Sub("downsamplers").Index(0), x)
		skips = append(skips, x)
	}
	return x, skips
}

// MidBlock — diffusers: models/unet_2d_blocks.py, UNetMidBlock2DCrossAttn:
// resnet, then (transformer, resnet).
type MidBlock struct {
	Channels, Heads, CrossDim int64
	Down                      int
}

func (m MidBlock) Build(g *onnx.Graph, e *unetEnv, s Scope, x onnx.Value) onnx.Value {
	x = e.resnet(g, s.Sub("resnets").Index(0), x, m.Channels, m.Channels)
	x = e.transformer(g, s.Sub("attentions").Index(0), x, m.Channels, m.Heads, m.CrossDim, m.Down)
	return e.resnet(g, s.Sub("resnets").Index(1), x, m.Channels, m.Channels)
}

// UpBlock — diffusers: models/unet_2d_blocks.py, CrossAttnUpBlock2D and
// UpBlock2D: each resnet takes the hidden states concatenated with one skip
// connection (last first); then an upsampler unless final, resizing to the
// next skip's size.
type UpBlock struct {
	In, PrevOut, Out int64
	Layers           int
	CrossAttn        bool
	Heads, CrossDim  int64
	AddUpsample      bool
	Down             int
}

func (u UpBlock) Build(g *onnx.Graph, e *unetEnv, s Scope, x onnx.Value, skips []onnx.Value, upTo onnx.Value) onnx.Value {
	for i := 0; i < u.Layers; i++ {
		skip := skips[len(skips)-1-i]
		skipCh := u.Out
		if i == u.Layers-1 {
			skipCh = u.In
		}
		in := u.Out
		if i == 0 {
			in = u.PrevOut
		}
		// [B,in,H,W] ++ [B,skip,H,W] along channels
		x = g.Concat(1, x, skip)
		x = e.resnet(g, s.Sub("resnets").Index(i), x, in+skipCh, u.Out)
		if u.CrossAttn {
			x = e.transformer(g, s.Sub("attentions").Index(i), x, u.Out, u.Heads, u.CrossDim, u.Down)
		}
	}
	if u.AddUpsample {
		x = Upsample2D{Channels: u.Out}.Build(g, s.Sub("upsamplers").Index(0), x, upTo)
	}
	return x
}
