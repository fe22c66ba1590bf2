package models

import (
	"cmp"
	"fmt"

	"github.com/tokenflow/tokenflow/internal/onnx"
)

// UNet — diffusers: models/unet_2d_condition.py, UNet2DConditionModel.
type UNet struct {
	Config  *UNetConfig
	Weights *Weights
}

// UNetGraphOptions choose what a UNet graph computes besides the plain
// network: self-attention processors and resnet hooks by module path.
type UNetGraphOptions struct {
	Name        string
	Processors  Processors
	ResnetHooks map[string]ResnetHook
}

// UNet graph I/O names.
const (
	InSample     = "sample"
	InTimestep   = "timestep"
	InTextEmbeds = "encoder_hidden_states"
	OutSample    = "out_sample"
)

// Graph builds the UNet: sample [B,4,h,w] float32, timestep int64 (scalar
// or [B]), encoder_hidden_states [B,77,C] float32 -> out_sample [B,4,h,w].
// Batch, height and width are dynamic; h and w need not be multiples of 8:
// each upsampler resizes to the size of the skip connection it joins, as
// diffusers does.
func (u *UNet) Graph(o UNetGraphOptions) (*onnx.Graph, error) {
	c := u.Config
	if o.Processors.Default == nil && o.Processors.ByPath == nil {
		o.Processors.Default = PlainAttn{}
	}
	g := onnx.NewGraph(cmp.Or(o.Name, "unet"))
	s := u.Weights.Root("")
	dt := u.Weights.Type
	n := len(c.BlockOutChannels)
	ch := func(i int) int64 { return int64(c.BlockOutChannels[i]) }

	sampleIn := g.Input(InSample, onnx.Float, onnx.P("batch"), onnx.D(int64(c.InChannels)), onnx.P("height"), onnx.P("width"))
	tIn := g.Input(InTimestep, onnx.Int64)
	ctxIn := g.Input(InTextEmbeds, onnx.Float, onnx.P("batch"), onnx.P("sequence"), onnx.D(int64(c.CrossDims[0])))
	sample, ctx := toDT(g, sampleIn, dt), toDT(g, ctxIn, dt)

	// 1. time: the timestep broadcast to the batch, sinusoidal features,
	// then the embedding MLP. [] or [B] -> [B]
	t := g.Expand(g.Cast(g.Reshape(tIn, -1), onnx.Float), g.ShapeRange(sampleIn, 0, 1))
	tf := Timesteps{Channels: ch(0), FlipSinToCos: c.FlipSinToCos, FreqShift: c.FreqShift}.Build(g, t)
	tf = toDT(g, tf, dt)
	temb := TimestepEmbedding{In: ch(0), Out: int64(c.TimeEmbedDim())}.Build(g, s.Sub("time_embedding"), tf)

	env := &unetEnv{cfg: c, temb: temb, ctx: ctx, procs: &o.Processors, hooks: o.ResnetHooks, used: map[string]bool{}}

	// 2. pre-process
	x := conv2d(g, s.Sub("conv_in"), sample, int64(c.InChannels), ch(0), 3, 1, 1)
	skips := []onnx.Value{x}

	// 3. down: block i works at downscale 2^i
	for i, typ := range c.DownBlockTypes {
		blk := DownBlock{In: ch(max(i-1, 0)), Out: ch(i), Layers: c.LayersPerBlk[i], CrossAttn: typ == "CrossAttnDownBlock2D",
			Heads: int64(c.Heads[i]), CrossDim: int64(c.CrossDims[i]), AddDownsample: i < n-1, Down: 1 << i}
		var added []onnx.Value
		x, added = blk.Build(g, env, s.Sub("down_blocks").Index(i), x)
		skips = append(skips, added...)
	}

	// 4. mid
	x = MidBlock{Channels: ch(n - 1), Heads: int64(c.Heads[n-1]), CrossDim: int64(c.CrossDims[n-1]), Down: 1 << (n - 1)}.Build(g, env, s.Sub("mid_block"), x)

	// 5. up: reversed channels, heads, layers and downscales; each block
	// takes layers+1 skips from the end.
	prevOut := ch(n - 1)
	for i, typ := range c.UpBlockTypes {
		r := n - 1 - i
		out := ch(r)
		in := ch(max(r-1, 0))
		layers := c.LayersPerBlk[r] + 1
		mine := skips[len(skips)-layers:]
		skips = skips[:len(skips)-layers]
		var upTo onnx.Value
		final := i == n-1
		if !final {
			upTo = skips[len(skips)-1]
		}
		blk := UpBlock{In: in, PrevOut: prevOut, Out: out, Layers: layers, CrossAttn: typ == "CrossAttnUpBlock2D",
			Heads: int64(c.Heads[r]), CrossDim: int64(c.CrossDims[r]), AddUpsample: !final, Down: 1 << r}
		x = blk.Build(g, env, s.Sub("up_blocks").Index(i), x, mine, upTo)
		prevOut = out
	}

	// 6. post-process
	x = g.SiLU(groupNorm(g, s.Sub("conv_norm_out"), x, int64(c.NormNumGroups), ch(0), float32(c.NormEps)))
	x = conv2d(g, s.Sub("conv_out"), x, ch(0), int64(c.OutChannels), 3, 1, 1)
	x = fromDT(g, x, dt)
	g.Output(OutSample, x, onnx.Float, onnx.P("batch"), onnx.D(int64(c.OutChannels)), onnx.P("height"), onnx.P("width"))

	if err := cmp.Or(u.Weights.Err(), env.err, o.Processors.checkAllUsed()); err != nil {
		return nil, err
	}
	for path := range o.ResnetHooks {
		if !env.used[path] {
			return nil, fmt.Errorf("resnet hook assigned to %s, which is not a resnet of this UNet", path)
		}
	}
	return finish(g, u.Weights)
}

// SelfAttentionLayers lists the UNet's self-attention layers in graph
// order (down, mid, up), with their widths and downscales.
func (c *UNetConfig) SelfAttentionLayers() []Layer {
	var out []Layer
	n := len(c.BlockOutChannels)
	add := func(prefix string, i, count int, channels, heads int64, down int) {
		for j := 0; j < count; j++ {
			out = append(out, Layer{Path: fmt.Sprintf("%s.%d.attentions.%d.transformer_blocks.0.attn1", prefix, i, j), Channels: channels, Heads: heads, Down: down})
		}
	}
	for i, typ := range c.DownBlockTypes {
		if typ == "CrossAttnDownBlock2D" {
			add("down_blocks", i, c.LayersPerBlk[i], int64(c.BlockOutChannels[i]), int64(c.Heads[i]), 1<<i)
		}
	}
	out = append(out, Layer{Path: "mid_block.attentions.0.transformer_blocks.0.attn1", Channels: int64(c.BlockOutChannels[n-1]), Heads: int64(c.Heads[n-1]), Down: 1 << (n - 1)})
	for i, typ := range c.UpBlockTypes {
		r := n - 1 - i
		if typ == "CrossAttnUpBlock2D" {
			add("up_blocks", i, c.LayersPerBlk[r]+1, int64(c.BlockOutChannels[r]), int64(c.Heads[r]), 1<<r)
		}
	}
	return out
}
