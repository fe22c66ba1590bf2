package models

import (
	"encoding/json"
	"strings"
)

// UNetConfig is unet/config.json of a UNet2DConditionModel
// (diffusers: models/unet_2d_condition.py, register_to_config arguments).
// Missing keys take diffusers' defaults.
type UNetConfig struct {
	path string

	SampleSize                int       `json:"sample_size"`
	InChannels                int       `json:"in_channels"`
	OutChannels               int       `json:"out_channels"`
	CenterInputSample         bool      `json:"center_input_sample"`
	FlipSinToCos              bool      `json:"flip_sin_to_cos"`
	FreqShift                 float64   `json:"freq_shift"`
	DownBlockTypes            []string  `json:"down_block_types"`
	MidBlockType              *string   `json:"mid_block_type"`
	UpBlockTypes              []string  `json:"up_block_types"`
	OnlyCrossAttention        any       `json:"only_cross_attention"`
	BlockOutChannels          []int     `json:"block_out_channels"`
	LayersPerBlock            IntOrList `json:"layers_per_block"`
	DownsamplePadding         int       `json:"downsample_padding"`
	ActFn                     string    `json:"act_fn"`
	NormNumGroups             int       `json:"norm_num_groups"`
	NormEps                   float64   `json:"norm_eps"`
	CrossAttentionDim         IntOrList `json:"cross_attention_dim"`
	TransformerLayersPerBlock IntOrList `json:"transformer_layers_per_block"`
	EncoderHidDim             *int      `json:"encoder_hid_dim"`
	AttentionHeadDim          IntOrList `json:"attention_head_dim"`
	NumAttentionHeads         IntOrList `json:"num_attention_heads"`
	DualCrossAttention        bool      `json:"dual_cross_attention"`
	UseLinearProjection       bool      `json:"use_linear_projection"`
	ClassEmbedType            *string   `json:"class_embed_type"`
	AdditionEmbedType         *string   `json:"addition_embed_type"`
	NumClassEmbeds            *int      `json:"num_class_embeds"`
	ResnetTimeScaleShift      string    `json:"resnet_time_scale_shift"`
	ResnetSkipTimeAct         bool      `json:"resnet_skip_time_act"`
	ResnetOutScaleFactor      float64   `json:"resnet_out_scale_factor"`
	TimeEmbeddingType         string    `json:"time_embedding_type"`
	TimeEmbeddingDim          *int      `json:"time_embedding_dim"`
	TimeEmbeddingActFn        *string   `json:"time_embedding_act_fn"`
	TimestepPostAct           *string   `json:"timestep_post_act"`
	TimeCondProjDim           *int      `json:"time_cond_proj_dim"`
	ConvInKernel              int       `json:"conv_in_kernel"`
	ConvOutKernel             int       `json:"conv_out_kernel"`
	AttentionType             string    `json:"attention_type"`
	ClassEmbeddingsConcat     bool      `json:"class_embeddings_concat"`
	CrossAttentionNorm        *string   `json:"cross_attention_norm"`

	// Derived by Validate: per down block, in order.
	Heads        []int `json:"-"`
	CrossDims    []int `json:"-"`
	LayersPerBlk []int `json:"-"`
}

// defaultUNetConfig holds diffusers 0.20.2's constructor defaults.
func defaultUNetConfig() UNetConfig {
	return UNetConfig{
		InChannels: 4, OutChannels: 4, FlipSinToCos: true,
		DownBlockTypes:       []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"},
		UpBlockTypes:         []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"},
		BlockOutChannels:     []int{320, 640, 1280, 1280},
		LayersPerBlock:       IntOrList{Set: true, One: 2},
		DownsamplePadding:    1,
		ActFn:                "silu",
		NormNumGroups:        32,
		NormEps:              1e-5,
		CrossAttentionDim:    IntOrList{Set: true, One: 1280},
		AttentionHeadDim:     IntOrList{Set: true, One: 8},
		ResnetTimeScaleShift: "default",
		ResnetOutScaleFactor: 1,
		TimeEmbeddingType:    "positional",
		ConvInKernel:         3,
		ConvOutKernel:        3,
		AttentionType:        "default",
	}
}

// LoadUNetConfig reads and validates unet/config.json.
func LoadUNetConfig(path string) (*UNetConfig, error) {
	c := defaultUNetConfig()
	if err := readConfig(path, &c); err != nil {
		return nil, err
	}
	c.path = path
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// TimeEmbedDim is the width of the time embedding (4x the first block).
func (c *UNetConfig) TimeEmbedDim() int { return c.BlockOutChannels[0] * 4 }

// Validate checks the config and fills the derived per-block fields. What
// the builders do not implement is refused with ErrUnsupported, naming the
// field.
func (c *UNetConfig) Validate() error {
	p := c.path
	n := len(c.BlockOutChannels)
	if n == 0 {
		return fieldError(p, "block_out_channels", "is empty")
	}
	if err := allPositive(p, "block_out_channels", c.BlockOutChannels); err != nil {
		return err
	}
	if err := blockTypes(p, "down_block_types", c.DownBlockTypes, n, "CrossAttnDownBlock2D", "DownBlock2D"); err != nil {
		return err
	}
	if err := blockTypes(p, "up_block_types", c.UpBlockTypes, n, "CrossAttnUpBlock2D", "UpBlock2D"); err != nil {
		return err
	}
	if c.MidBlockType != nil && *c.MidBlockType != "UNetMidBlock2DCrossAttn" {
		return unsupported(p, "mid_block_type", "%q (supported: UNetMidBlock2DCrossAttn)", *c.MidBlockType)
	}
	// TokenFlow edits text-to-image latents: 4 channels in, 4 out (the
	// VAE's latent_channels). Other UNets build, but fail deep in ONNX
	// Runtime with a shape error; refuse them here, naming what they are.
	switch c.InChannels {
	case LatentChannels:
	case 5:
		return unsupported(p, "in_channels", "5 is a depth-conditioned UNet (latent and depth map); only text-to-image UNets with in_channels 4 are supported")
	case 8:
		return unsupported(p, "in_channels", "8 is an image-conditioned UNet (as InstructPix2Pix); only text-to-image UNets with in_channels 4 are supported")
	case 9:
		return unsupported(p, "in_channels", "9 is an inpainting UNet (latent, mask and masked image); only text-to-image UNets with in_channels 4 are supported")
	default:
		return unsupported(p, "in_channels", "%d; only text-to-image UNets with in_channels 4 are supported", c.InChannels)
	}
	if c.OutChannels != LatentChannels {
		return unsupported(p, "out_channels", "%d; the UNet must predict noise of the 4 latent channels it takes (out_channels 4)", c.OutChannels)
	}
	if err := positive(p, "norm_num_groups", c.NormNumGroups); err != nil {
		return err
	}
	for i, ch := range c.BlockOutChannels {
		if ch%c.NormNumGroups != 0 {
			return fieldError(p, "norm_num_groups", "%d does not divide block_out_channels[%d] = %d", c.NormNumGroups, i, ch)
		}
	}
	var err error
	if c.LayersPerBlk, err = c.LayersPerBlock.perBlock(p, "layers_per_block", n); err != nil {
		return err
	}
	if err := allPositive(p, "layers_per_block", c.LayersPerBlk); err != nil {
		return err
	}
	// diffusers (<= 0.20) reads attention_head_dim as the number of heads
	// when num_attention_heads is not given: SD 1.x's 8 heads, SD 2.x's
	// [5,10,20,20] heads of 64 channels.
	heads := c.AttentionHeadDim
	field := "attention_head_dim"
	if c.NumAttentionHeads.Set {
		heads, field = c.NumAttentionHeads, "num_attention_heads"
	}
	if c.Heads, err = heads.perBlock(p, field, n); err != nil {
		return err
	}
	if err := allPositive(p, field, c.Heads); err != nil {
		return err
	}
	for i, h := range c.Heads {
		if c.BlockOutChannels[i]%h != 0 {
			return fieldError(p, field, "%d heads do not divide block_out_channels[%d] = %d", h, i, c.BlockOutChannels[i])
		}
	}
	if c.CrossDims, err = c.CrossAttentionDim.perBlock(p, "cross_attention_dim", n); err != nil {
		return err
	}
	if err := allPositive(p, "cross_attention_dim", c.CrossDims); err != nil {
		return err
	}
	if c.TransformerLayersPerBlock.Set {
		tl, err := c.TransformerLayersPerBlock.perBlock(p, "transformer_layers_per_block", n)
		if err != nil {
			return err
		}
		for _, v := range tl {
			if v != 1 {
				return unsupported(p, "transformer_layers_per_block", "%v (only 1 is implemented)", tl)
			}
		}
	}
	switch {
	case c.AdditionEmbedType != nil:
		return unsupported(p, "addition_embed_type", "%q (SDXL-style addition embeddings are not implemented)", *c.AdditionEmbedType)
	case c.ClassEmbedType != nil:
		return unsupported(p, "class_embed_type", "%q is not implemented", *c.ClassEmbedType)
	case c.NumClassEmbeds != nil:
		return unsupported(p, "num_class_embeds", "class embeddings are not implemented")
	case c.EncoderHidDim != nil:
		return unsupported(p, "encoder_hid_dim", "an encoder hidden projection is not implemented")
	case c.ActFn != "silu":
		return unsupported(p, "act_fn", "%q (only silu is implemented)", c.ActFn)
	case c.ResnetTimeScaleShift != "default":
		return unsupported(p, "resnet_time_scale_shift", "%q (only default is implemented)", c.ResnetTimeScaleShift)
	case c.ResnetOutScaleFactor != 1:
		return unsupported(p, "resnet_out_scale_factor", "%g (only 1 is implemented)", c.ResnetOutScaleFactor)
	case c.TimeEmbeddingType != "positional":
		return unsupported(p, "time_embedding_type", "%q (only positional is implemented)", c.TimeEmbeddingType)
	case c.ConvInKernel != 3:
		return unsupported(p, "conv_in_kernel", "%d (only 3 is implemented)", c.ConvInKernel)
	case c.ConvOutKernel != 3:
		return unsupported(p, "conv_out_kernel", "%d (only 3 is implemented)", c.ConvOutKernel)
	case c.AttentionType != "default":
		return unsupported(p, "attention_type", "%q (only default is implemented)", c.AttentionType)
	case c.CrossAttentionNorm != nil:
		return unsupported(p, "cross_attention_norm", "%q is not implemented", *c.CrossAttentionNorm)
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"dual_cross_attention", c.DualCrossAttention}, {"resnet_skip_time_act", c.ResnetSkipTimeAct},
		{"time_embedding_dim", c.TimeEmbeddingDim != nil}, {"time_embedding_act_fn", c.TimeEmbeddingActFn != nil},
		{"timestep_post_act", c.TimestepPostAct != nil}, {"time_cond_proj_dim", c.TimeCondProjDim != nil},
		{"class_embeddings_concat", c.ClassEmbeddingsConcat}, {"center_input_sample", c.CenterInputSample},
	} {
		if f.set {
			return unsupported(p, f.name, "is not implemented")
		}
	}
	switch v := c.OnlyCrossAttention.(type) {
	case nil, bool:
		if v == true {
			return unsupported(p, "only_cross_attention", "is not implemented")
		}
	default:
		b, _ := json.Marshal(v)
		if string(b) != "["+strings.TrimSuffix(strings.Repeat("false,", n), ",")+"]" {
			return unsupported(p, "only_cross_attention", "%s is not implemented", b)
		}
	}
	return nil
}
