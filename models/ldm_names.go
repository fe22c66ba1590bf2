package models

import (
	"strconv"
	"strings"
)

// Renaming original (CompVis / Stability "LDM") tensor names to diffusers
// names: a table of whole-prefix rules (STYLE.md 6). A rule applies to a
// name equal to its From, or starting with From followed by a dot; the
// longest such From wins. What follows the prefix is renamed by the rule's
// local table (a module's own parts, e.g. a resnet's in_layers.0 -> norm1)
// or kept as is. Never a substring replacement: "out.0" does not touch
// "out_layers.0", and "input_blocks.1" does not touch "input_blocks.10".
//
// Facts (which LDM module becomes which diffusers module) as in diffusers
// v0.20.2 convert_from_ckpt.py; the tables are our own.

// renameRule maps the tensors under From to To.
type renameRule struct {
	From, To string
	// Local renames the rest of the name below From (nil: kept).
	Local renameTable
	// Drop: the tensors are not used (e.g. SD 2's last text block).
	Drop bool
	// Split: the tensor stacks len(Split) tensors along its first axis
	// (OpenCLIP's in_proj q, k, v); each part gets one of these names.
	Split []string
	// Squeeze: a [O,I,1,1] 1x1 convolution weight becomes a [O,I] linear
	// weight (the VAE's attention in LDM files).
	Squeeze bool
}

type renameTable []renameRule

// renamed is one target tensor made from a source tensor.
type renamed struct {
	Name        string
	Part, Parts int // Parts > 1: part Part of a tensor split along axis 0
	Squeeze     bool
}

// matches reports whether From is a whole dotted prefix of name, and the
// rest of the name after it ("" when name == From).
func (r renameRule) matches(name string) (string, bool) {
	if name == r.From {
		return "", true
	}
	if strings.HasPrefix(name, r.From+".") {
		return name[len(r.From)+1:], true
	}
	return "", false
}

// rename maps name; ok is false when no rule applies. A dropped tensor
// gives ok with no targets.
func (t renameTable) rename(name string) ([]renamed, bool) {
	best := -1
	var rest string
	for i, r := range t {
		if s, ok := r.matches(name); ok && (best < 0 || len(r.From) > len(t[best].From)) {
			best, rest = i, s
		}
	}
	if best < 0 {
		return nil, false
	}
	r := t[best]
	switch {
	case r.Drop:
		return nil, true
	case r.Split != nil:
		if rest != "" {
			return nil, false
		}
		out := make([]renamed, len(r.Split))
		for i, n := range r.Split {
			out[i] = renamed{Name: join(r.To, n), Part: i, Parts: len(r.Split)}
		}
		return out, true
	}
	if rest == "" {
		return []renamed{{Name: r.To, Squeeze: r.Squeeze}}, true
	}
	if sub, ok := r.Local.rename(rest); ok { // a nil Local renames nothing
		for i := range sub {
			sub[i].Name = join(r.To, sub[i].Name)
			sub[i].Squeeze = sub[i].Squeeze || r.Squeeze
		}
		return sub, true
	}
	return []renamed{{Name: join(r.To, rest), Squeeze: r.Squeeze}}, true
}

func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "." + b
}

func idx(prefix string, i ...int) string {
	for _, v := range i {
		prefix += "." + strconv.Itoa(v)
	}
	return prefix
}

// ldmResnet: openaimodel ResBlock -> diffusers ResnetBlock2D.
var ldmResnet = renameTable{
	{From: "in_layers.0", To: "norm1"},
	{From: "in_layers.2", To: "conv1"},
	{From: "emb_layers.1", To: "time_emb_proj"},
	{From: "out_layers.0", To: "norm2"},
	{From: "out_layers.3", To: "conv2"},
	{From: "skip_connection", To: "conv_shortcut"},
}

// unetRenames is the table for the UNet below model.diffusion_model, for
// a UNet of len(attn) levels of layers resnets each; attn[i] says whether
// level i (from the top) has transformers. SpatialTransformer's parts
// (norm, proj_in, transformer_blocks.0.attn1.to_q, ...) keep their names.
func unetRenames(levels, layers int, attn []bool) renameTable {
	t := renameTable{
		{From: "time_embed.0", To: "time_embedding.linear_1"},
		{From: "time_embed.2", To: "time_embedding.linear_2"},
		{From: "input_blocks.0.0", To: "conv_in"},
		{From: "out.0", To: "conv_norm_out"},
		{From: "out.2", To: "conv_out"},
		{From: "middle_block.0", To: "mid_block.resnets.0", Local: ldmResnet},
		{From: "middle_block.1", To: "mid_block.attentions.0"},
		{From: "middle_block.2", To: "mid_block.resnets.1", Local: ldmResnet},
	}
	// input_blocks: 1 + level*(layers+1) + l; the last of each level but
	// the lowest is its downsampler.
	for b := 0; b < levels; b++ {
		for l := 0; l < layers; l++ {
			i := 1 + b*(layers+1) + l
			t = append(t, renameRule{From: idx("input_blocks", i, 0), To: idx("down_blocks", b) + idx(".resnets", l), Local: ldmResnet})
			if attn[b] {
				t = append(t, renameRule{From: idx("input_blocks", i, 1), To: idx("down_blocks", b) + idx(".attentions", l)})
			}
		}
		if b < levels-1 {
			t = append(t, renameRule{From: idx("input_blocks", (b+1)*(layers+1), 0) + ".op", To: idx("down_blocks", b) + ".downsamplers.0.conv"})
		}
	}
	// output_blocks: up block b is level levels-1-b; layers+1 resnets; the
	// last of each but the top level ends with the upsampler (after the
	// transformer when there is one).
	for b := 0; b < levels; b++ {
		hasAttn := attn[levels-1-b]
		for l := 0; l <= layers; l++ {
			i := b*(layers+1) + l
			t = append(t, renameRule{From: idx("output_blocks", i, 0), To: idx("up_blocks", b) + idx(".resnets", l), Local: ldmResnet})
			up := 1
			if hasAttn {
				t = append(t, renameRule{From: idx("output_blocks", i, 1), To: idx("up_blocks", b) + idx(".attentions", l)})
				up = 2
			}
			if l == layers && b < levels-1 {
				t = append(t, renameRule{From: idx("output_blocks", i, up), To: idx("up_blocks", b) + ".upsamplers.0"})
			}
		}
	}
	return t
}

// ldmVAEResnet: ldm ResnetBlock -> diffusers ResnetBlock2D (norm1, conv1,
// norm2, conv2 keep their names).
var ldmVAEResnet = renameTable{{From: "nin_shortcut", To: "conv_shortcut"}}

// ldmVAEAttention: ldm AttnBlock (1x1 convolutions) -> diffusers Attention
// (linear layers).
var ldmVAEAttention = renameTable{
	{From: "norm", To: "group_norm"},
	{From: "q", To: "to_q", Squeeze: true},
	{From: "k", To: "to_k", Squeeze: true},
	{From: "v", To: "to_v", Squeeze: true},
	{From: "proj_out", To: "to_out.0", Squeeze: true},
}

// vaeRenames is the table for the VAE below first_stage_model, for levels
// levels of layers resnets (the decoder has layers+1 per level; its up.i
// is diffusers' up_blocks.levels-1-i).
func vaeRenames(levels, layers int) renameTable {
	t := renameTable{
		{From: "quant_conv", To: "quant_conv"},
		{From: "post_quant_conv", To: "post_quant_conv"},
		{From: "loss", Drop: true}, // training-only discriminator some files keep
	}
	for _, part := range []string{"encoder", "decoder"} {
		t = append(t,
			renameRule{From: part + ".conv_in", To: part + ".conv_in"},
			renameRule{From: part + ".conv_out", To: part + ".conv_out"},
			renameRule{From: part + ".norm_out", To: part + ".conv_norm_out"},
			renameRule{From: part + ".mid.block_1", To: part + ".mid_block.resnets.0", Local: ldmVAEResnet},
			renameRule{From: part + ".mid.block_2", To: part + ".mid_block.resnets.1", Local: ldmVAEResnet},
			renameRule{From: part + ".mid.attn_1", To: part + ".mid_block.attentions.0", Local: ldmVAEAttention},
		)
	}
	for i := 0; i < levels; i++ {
		for j := 0; j < layers; j++ {
			t = append(t, renameRule{From: idx("encoder.down", i) + idx(".block", j), To: idx("encoder.down_blocks", i) + idx(".resnets", j), Local: ldmVAEResnet})
		}
		if i < levels-1 {
			t = append(t, renameRule{From: idx("encoder.down", i) + ".downsample.conv", To: idx("encoder.down_blocks", i) + ".downsamplers.0.conv"})
		}
		up := levels - 1 - i
		for j := 0; j <= layers; j++ {
			t = append(t, renameRule{From: idx("decoder.up", i) + idx(".block", j), To: idx("decoder.up_blocks", up) + idx(".resnets", j), Local: ldmVAEResnet})
		}
		if i > 0 {
			t = append(t, renameRule{From: idx("decoder.up", i) + ".upsample.conv", To: idx("decoder.up_blocks", up) + ".upsamplers.0.conv"})
		}
	}
	return t
}

// clipRenames is the table for SD 1's text encoder below
// cond_stage_model.transformer: transformers' own CLIPTextModel names,
// under text_model. (recent files) or directly (files saved with older
// transformers).
var clipRenames = renameTable{
	{From: "text_model", To: "text_model"},
	{From: "text_model.embeddings.position_ids", Drop: true},
	{From: "embeddings", To: "text_model.embeddings"},
	{From: "embeddings.position_ids", Drop: true},
	{From: "encoder", To: "text_model.encoder"},
	{From: "final_layer_norm", To: "text_model.final_layer_norm"},
}

// openCLIPBlock: an OpenCLIP ResidualAttentionBlock -> CLIPEncoderLayer.
var openCLIPBlock = renameTable{
	{From: "ln_1", To: "layer_norm1"},
	{From: "ln_2", To: "layer_norm2"},
	{From: "mlp.c_fc", To: "mlp.fc1"},
	{From: "mlp.c_proj", To: "mlp.fc2"},
	{From: "attn.out_proj", To: "self_attn.out_proj"},
	{From: "attn.in_proj_weight", To: "self_attn", Split: []string{"q_proj.weight", "k_proj.weight", "v_proj.weight"}},
	{From: "attn.in_proj_bias", To: "self_attn", Split: []string{"q_proj.bias", "k_proj.bias", "v_proj.bias"}},
}

// openCLIPRenames is the table for SD 2's text encoder below
// cond_stage_model.model, for an OpenCLIP text tower of blocks blocks of
// which the last is not used (SD 2 reads the penultimate layer's output,
// then ln_final). The image tower and projections are not used.
func openCLIPRenames(blocks int) renameTable {
	t := renameTable{
		{From: "token_embedding", To: "text_model.embeddings.token_embedding"},
		{From: "positional_embedding", To: "text_model.embeddings.position_embedding.weight"},
		{From: "ln_final", To: "text_model.final_layer_norm"},
		{From: "text_projection", Drop: true},
		{From: "logit_scale", Drop: true},
		{From: "attn_mask", Drop: true},
		{From: "visual", Drop: true},
	}
	for i := 0; i < blocks; i++ {
		r := renameRule{From: idx("transformer.resblocks", i), To: idx("text_model.encoder.layers", i), Local: openCLIPBlock}
		if i == blocks-1 {
			r = renameRule{From: idx("transformer.resblocks", i), Drop: true}
		}
		t = append(t, r)
	}
	return t
}
