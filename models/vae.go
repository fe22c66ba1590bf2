package models

import (
	"math"

	"github.com/tokenflow/tokenflow/internal/onnx"
)

// VAEConfig is vae/config.json of an AutoencoderKL (diffusers:
// models/autoencoder_kl.py). Missing keys take diffusers' defaults.
type VAEConfig struct {
	path string

	InChannels       int      `json:"in_channels"`
	OutChannels      int      `json:"out_channels"`
	DownBlockTypes   []string `json:"down_block_types"`
	UpBlockTypes     []string `json:"up_block_types"`
	BlockOutChannels []int    `json:"block_out_channels"`
	LayersPerBlock   int      `json:"layers_per_block"`
	ActFn            string   `json:"act_fn"`
	LatentChannels   int      `json:"latent_channels"`
	NormNumGroups    int      `json:"norm_num_groups"`
	ScalingFactor    float64  `json:"scaling_factor"`
}

// LoadVAEConfig reads and validates vae/config.json.
func LoadVAEConfig(path string) (*VAEConfig, error) {
	c := VAEConfig{InChannels: 3, OutChannels: 3, BlockOutChannels: []int{64}, LayersPerBlock: 1, ActFn: "silu",
		LatentChannels: 4, NormNumGroups: 32, ScalingFactor: 0.18215,
		DownBlockTypes: []string{"DownEncoderBlock2D"}, UpBlockTypes: []string{"UpDecoderBlock2D"}}
	if err := readConfig(path, &c); err != nil {
		return nil, err
	}
	c.path = path
	p := path
	n := len(c.BlockOutChannels)
	if n == 0 {
		return nil, fieldError(p, "block_out_channels", "is empty")
	}
	if err := blockTypes(p, "down_block_types", c.DownBlockTypes, n, "DownEncoderBlock2D"); err != nil {
		return nil, err
	}
	if err := blockTypes(p, "up_block_types", c.UpBlockTypes, n, "UpDecoderBlock2D"); err != nil {
		return nil, err
	}
	switch {
	case c.ActFn != "silu":
		return nil, unsupported(p, "act_fn", "%q (only silu is implemented)", c.ActFn)
	case c.ScalingFactor <= 0 || math.IsNaN(c.ScalingFactor):
		return nil, fieldError(p, "scaling_factor", "must be positive, have %g", c.ScalingFactor)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"in_channels", c.InChannels}, {"out_channels", c.OutChannels}, {"layers_per_block", c.LayersPerBlock}, {"latent_channels", c.LatentChannels}, {"norm_num_groups", c.NormNumGroups}} {
		if err := positive(p, f.name, f.v); err != nil {
			return nil, err
		}
	}
	if err := allPositive(p, "block_out_channels", c.BlockOutChannels); err != nil {
		return nil, err
	}
	// The geometry the pipeline relies on: RGB pixels, 4 latent channels
	// (the UNet's in_channels and out_channels), and a downscale of 8 (a
	// downsampler after every block but the last: 4 blocks).
	switch {
	case n != vaeBlocks:
		return nil, unsupported(p, "block_out_channels", "has %d entries, a VAE scale factor of 2^%d; tokenflow needs a scale factor of %d (%d entries), as every SD 1.x/2.x VAE has", n, n-1, vaeDownScale, vaeBlocks)
	case c.InChannels != 3:
		return nil, unsupported(p, "in_channels", "%d; the VAE must encode RGB images (in_channels 3)", c.InChannels)
	case c.OutChannels != 3:
		return nil, unsupported(p, "out_channels", "%d; the VAE must decode to RGB images (out_channels 3)", c.OutChannels)
	case c.LatentChannels != LatentChannels:
		return nil, unsupported(p, "latent_channels", "%d; the UNet takes and predicts %d latent channels (its in_channels and out_channels), so the VAE's latent_channels must be %d", c.LatentChannels, LatentChannels, LatentChannels)
	}
	for i, ch := range c.BlockOutChannels {
		if ch%c.NormNumGroups != 0 {
			return nil, fieldError(p, "norm_num_groups", "%d does not divide block_out_channels[%d] = %d", c.NormNumGroups, i, ch)
		}
	}
	return &c, nil
}

// VAE — diffusers: models/autoencoder_kl.py, AutoencoderKL.
type VAE struct {
	Config  *VAEConfig
	Weights *Weights
}

// VAE graph I/O names.
const (
	InImage      = "sample"
	OutLatent    = "latent_sample"
	InLatent     = "latent_sample"
	OutImage     = "sample"
	vaeNormEps   = 1e-6
	vaeDownScale = 8
	vaeBlocks    = 4 // 3 downsamplers: 2^3 = vaeDownScale
)

// LatentChannels is the number of latent channels every supported model
// has: the VAE's latent_channels, the UNet's in_channels and out_channels.
const LatentChannels = 4

func (v *VAE) resnet(g *onnx.Graph, s Scope, x onnx.Value, in, out int64) onnx.Value {
	return ResnetBlock2D{In: in, Out: out, Groups: int64(v.Config.NormNumGroups), Eps: vaeNormEps}.Build(g, s, x, onnx.Value{})
}

// midBlock — diffusers: UNetMidBlock2D with one single-head attention:
// resnet, attention, resnet.
func (v *VAE) midBlock(g *onnx.Graph, s Scope, x onnx.Value, ch int64) onnx.Value {
	x = v.resnet(g, s.Sub("resnets").Index(0), x, ch, ch)
	x = v.attention(g, s.Sub("attentions").Index(0), x, ch)
	return v.resnet(g, s.Sub("resnets").Index(1), x, ch, ch)
}

// attention is the VAE's spatial self-attention with group norm and a
// residual connection (diffusers Attention with residual_connection).
// Older checkpoints name its weights query/key/value/proj_attn; they are
// read under either name.
func (v *VAE) attention(g *onnx.Graph, s Scope, x onnx.Value, ch int64) onnx.Value {
	g.Push(s.Path())
	defer g.Pop()
	residual := x
	shape := g.Shape(x)
	h := groupNorm(g, s.Sub("group_norm"), x, int64(v.Config.NormNumGroups), ch, vaeNormEps)
	// [B,C,H,W] -> [B,HW,C]
	h = g.Transpose(g.Reshape(h, 0, ch, -1), 0, 2, 1)
	proj := func(cur, legacy Scope) Scope {
		if !cur.Has("weight") && legacy.Has("weight") {
			return legacy
		}
		return cur
	}
	q := linear(g, proj(s.Sub("to_q"), s.Sub("query")), h, ch, ch, true)
	k := linear(g, proj(s.Sub("to_k"), s.Sub("key")), h, ch, ch, true)
	val := linear(g, proj(s.Sub("to_v"), s.Sub("value")), h, ch, ch, true)
	a := attention(g, s, q, k, val, 1, float32(1/math.Sqrt(float64(ch))))
	a = linear(g, proj(s.Sub("to_out").Index(0), s.Sub("proj_attn")), a, ch, ch, true)
	// [B,HW,C] -> [B,C,H,W]
	a = g.ReshapeTo(g.Transpose(a, 0, 2, 1), shape)
	return g.Add(a, residual)
}

// EncoderGraph builds vae_encoder: sample [B,3,H,W] in [-1,1] ->
// latent_sample [B,4,H/8,W/8], the posterior mean (quant_conv(encoder(x))
// first half; the caller multiplies by scaling_factor).
func (v *VAE) EncoderGraph() (*onnx.Graph, error) {
	c := v.Config
	g := onnx.NewGraph("vae_encoder")
	dt := v.Weights.Type
	root := v.Weights.Root("")
	s := root.Sub("encoder")
	n := len(c.BlockOutChannels)
	ch := func(i int) int64 { return int64(c.BlockOutChannels[i]) }
	in := g.Input(InImage, onnx.Float, onnx.P("batch"), onnx.D(int64(c.InChannels)), onnx.P("height"), onnx.P("width"))
	x := toDT(g, in, dt)
	x = conv2d(g, s.Sub("conv_in"), x, int64(c.InChannels), ch(0), 3, 1, 1)
	prev := ch(0)
	for i := 0; i < n; i++ {
		bs := s.Sub("down_blocks").Index(i)
		for j := 0; j < c.LayersPerBlock; j++ {
			x = v.resnet(g, bs.Sub("resnets").Index(j), x, prev, ch(i))
			prev = ch(i)
		}
		if i < n-1 {
			x = Downsample2D{Channels: ch(i), Padding: 0}.Build(g, bs.Sub("downsamplers").Index(0), x)
		}
	}
	x = v.midBlock(g, s.Sub("mid_block"), x, ch(n-1))
	x = g.SiLU(groupNorm(g, s.Sub("conv_norm_out"), x, int64(c.NormNumGroups), ch(n-1), vaeNormEps))
	lat := int64(c.LatentChannels)
	x = conv2d(g, s.Sub("conv_out"), x, ch(n-1), 2*lat, 3, 1, 1)
	x = conv2d(g, root.Sub("quant_conv"), x, 2*lat, 2*lat, 1, 1, 0)
	// moments [B,2L,h,w] -> mean [B,L,h,w]
	mean := g.Slice(x, []int64{1}, []int64{0}, []int64{lat})
	mean = fromDT(g, mean, dt)
	g.Output(OutLatent, mean, onnx.Float, onnx.P("batch"), onnx.D(lat), onnx.P("latent_height"), onnx.P("latent_width"))
	return finish(g, v.Weights)
}

// DecoderGraph builds vae_decoder: latent_sample [B,4,h,w] (already divided
// by scaling_factor) -> sample [B,3,8h,8w], roughly in [-1,1].
func (v *VAE) DecoderGraph() (*onnx.Graph, error) {
	c := v.Config
	g := onnx.NewGraph("vae_decoder")
	dt := v.Weights.Type
	root := v.Weights.Root("")
	s := root.Sub("decoder")
	n := len(c.BlockOutChannels)
	ch := func(i int) int64 { return int64(c.BlockOutChannels[i]) }
	lat := int64(c.LatentChannels)
	in := g.Input(InLatent, onnx.Float, onnx.P("batch"), onnx.D(lat), onnx.P("latent_height"), onnx.P("latent_width"))
	x := toDT(g, in, dt)
	x = conv2d(g, root.Sub("post_quant_conv"), x, lat, lat, 1, 1, 0)
	x = conv2d(g, s.Sub("conv_in"), x, lat, ch(n-1), 3, 1, 1)
	x = v.midBlock(g, s.Sub("mid_block"), x, ch(n-1))
	prev := ch(n - 1)
	for i := 0; i < n; i++ {
		out := ch(n - 1 - i)
		bs := s.Sub("up_blocks").Index(i)
		for j := 0; j < c.LayersPerBlock+1; j++ {
			x = v.resnet(g, bs.Sub("resnets").Index(j), x, prev, out)
			prev = out
		}
		if i < n-1 {
			x = Upsample2D{Channels: out}.Build(g, bs.Sub("upsamplers").Index(0), x, onnx.Value{})
		}
	}
	x = g.SiLU(groupNorm(g, s.Sub("conv_norm_out"), x, int64(c.NormNumGroups), ch(0), vaeNormEps))
	x = conv2d(g, s.Sub("conv_out"), x, ch(0), int64(c.OutChannels), 3, 1, 1)
	x = fromDT(g, x, dt)
	g.Output(OutImage, x, onnx.Float, onnx.P("batch"), onnx.D(int64(c.OutChannels)), onnx.P("height"), onnx.P("width"))
	return finish(g, v.Weights)
}

// finish reports the first weight or graph construction error.
func finish(g *onnx.Graph, w *Weights) (*onnx.Graph, error) {
	if err := w.Err(); err != nil {
		return nil, err
	}
	if err := g.Err(); err != nil {
		return nil, err
	}
	return g, nil
}

// VAE loads the autoencoder's config and weights.
func (c *Checkpoint) VAE(t onnx.DataType) (*VAE, error) {
	cfg, w, err := component(c, "vae", t, LoadVAEConfig)
	if err != nil {
		return nil, err
	}
	return &VAE{Config: cfg, Weights: w}, nil
}
