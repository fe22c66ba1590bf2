package models

import (
	"reflect"
	"testing"
)

// TestLDMRenameTables pins the whole-prefix rename tables on their own:
// every module kind, the index arithmetic, and the near-misses a substring
// replacement would get wrong.
func TestLDMRenameTables(t *testing.T) {
	unet := unetRenames(4, 2, []bool{true, true, true, false})
	vae := vaeRenames(4, 2)
	openCLIP := openCLIPRenames(3)
	one := func(n string) []renamed { return []renamed{{Name: n}} }
	tests := []struct {
		table renameTable
		in    string
		want  []renamed // nil with ok: dropped
		ok    bool
	}{
		{unet, "time_embed.0.weight", one("time_embedding.linear_1.weight"), true},
		{unet, "time_embed.2.bias", one("time_embedding.linear_2.bias"), true},
		{unet, "input_blocks.0.0.weight", one("conv_in.weight"), true},
		{unet, "input_blocks.1.0.in_layers.0.weight", one("down_blocks.0.resnets.0.norm1.weight"), true},
		{unet, "input_blocks.2.0.emb_layers.1.bias", one("down_blocks.0.resnets.1.time_emb_proj.bias"), true},
		{unet, "input_blocks.1.1.proj_in.weight", one("down_blocks.0.attentions.0.proj_in.weight"), true},
		{unet, "input_blocks.3.0.op.weight", one("down_blocks.0.downsamplers.0.conv.weight"), true},
		// "input_blocks.1" must not catch "input_blocks.10".
		{unet, "input_blocks.10.0.out_layers.3.weight", one("down_blocks.3.resnets.0.conv2.weight"), true},
		{unet, "input_blocks.4.0.skip_connection.weight", one("down_blocks.1.resnets.0.conv_shortcut.weight"), true},
		{unet, "input_blocks.10.1.proj_in.weight", nil, false}, // level 3 has no transformers
		{unet, "input_blocks.12.0.in_layers.0.weight", nil, false},
		{unet, "middle_block.0.in_layers.2.weight", one("mid_block.resnets.0.conv1.weight"), true},
		{unet, "middle_block.1.transformer_blocks.0.attn2.to_k.weight", one("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"), true},
		{unet, "middle_block.2.out_layers.0.bias", one("mid_block.resnets.1.norm2.bias"), true},
		{unet, "output_blocks.0.0.in_layers.0.weight", one("up_blocks.0.resnets.0.norm1.weight"), true},
		{unet, "output_blocks.2.1.conv.weight", one("up_blocks.0.upsamplers.0.conv.weight"), true}, // no transformer: upsampler is .1
		{unet, "output_blocks.5.1.norm.weight", one("up_blocks.1.attentions.2.norm.weight"), true},
		{unet, "output_blocks.5.2.conv.bias", one("up_blocks.1.upsamplers.0.conv.bias"), true}, // after the transformer: .2
		{unet, "output_blocks.11.1.proj_out.weight", one("up_blocks.3.attentions.2.proj_out.weight"), true},
		{unet, "output_blocks.11.2.conv.weight", nil, false}, // the top level has no upsampler
		// "out.0" must not catch "out_layers.0" nor "output_blocks".
		{unet, "out.0.weight", one("conv_norm_out.weight"), true},
		{unet, "out.2.bias", one("conv_out.bias"), true},
		{unet, "out.1.weight", nil, false},

		{vae, "encoder.conv_in.weight", one("encoder.conv_in.weight"), true},
		{vae, "encoder.norm_out.bias", one("encoder.conv_norm_out.bias"), true},
		{vae, "encoder.down.1.block.0.nin_shortcut.weight", one("encoder.down_blocks.1.resnets.0.conv_shortcut.weight"), true},
		{vae, "encoder.down.2.downsample.conv.weight", one("encoder.down_blocks.2.downsamplers.0.conv.weight"), true},
		{vae, "encoder.down.3.downsample.conv.weight", nil, false},
		{vae, "encoder.mid.attn_1.q.weight", []renamed{{Name: "encoder.mid_block.attentions.0.to_q.weight", Squeeze: true}}, true},
		{vae, "decoder.mid.attn_1.proj_out.bias", []renamed{{Name: "decoder.mid_block.attentions.0.to_out.0.bias", Squeeze: true}}, true},
		{vae, "decoder.mid.attn_1.norm.weight", one("decoder.mid_block.attentions.0.group_norm.weight"), true},
		{vae, "decoder.mid.block_2.conv1.weight", one("decoder.mid_block.resnets.1.conv1.weight"), true},
		// The decoder's up.i is diffusers' up_blocks.(3-i), with 3 resnets.
		{vae, "decoder.up.0.block.2.norm1.weight", one("decoder.up_blocks.3.resnets.2.norm1.weight"), true},
		{vae, "decoder.up.3.upsample.conv.weight", one("decoder.up_blocks.0.upsamplers.0.conv.weight"), true},
		{vae, "decoder.up.0.upsample.conv.weight", nil, false},
		{vae, "post_quant_conv.bias", one("post_quant_conv.bias"), true},
		{vae, "loss.discriminator.main.0.weight", nil, true},

		{clipRenames, "text_model.encoder.layers.0.self_attn.q_proj.weight", one("text_model.encoder.layers.0.self_attn.q_proj.weight"), true},
		{clipRenames, "text_model.embeddings.position_ids", nil, true},
		{clipRenames, "embeddings.token_embedding.weight", one("text_model.embeddings.token_embedding.weight"), true},

		{openCLIP, "token_embedding.weight", one("text_model.embeddings.token_embedding.weight"), true},
		{openCLIP, "positional_embedding", one("text_model.embeddings.position_embedding.weight"), true},
		{openCLIP, "ln_final.bias", one("text_model.final_layer_norm.bias"), true},
		{openCLIP, "transformer.resblocks.1.mlp.c_fc.bias", one("text_model.encoder.layers.1.mlp.fc1.bias"), true},
		{openCLIP, "transformer.resblocks.0.attn.out_proj.weight", one("text_model.encoder.layers.0.self_attn.out_proj.weight"), true},
		{openCLIP, "transformer.resblocks.0.attn.in_proj_weight", []renamed{
			{Name: "text_model.encoder.layers.0.self_attn.q_proj.weight", Part: 0, Parts: 3},
			{Name: "text_model.encoder.layers.0.self_attn.k_proj.weight", Part: 1, Parts: 3},
			{Name: "text_model.encoder.layers.0.self_attn.v_proj.weight", Part: 2, Parts: 3},
		}, true},
		{openCLIP, "transformer.resblocks.1.attn.in_proj_bias", []renamed{
			{Name: "text_model.encoder.layers.1.self_attn.q_proj.bias", Part: 0, Parts: 3},
			{Name: "text_model.encoder.layers.1.self_attn.k_proj.bias", Part: 1, Parts: 3},
			{Name: "text_model.encoder.layers.1.self_attn.v_proj.bias", Part: 2, Parts: 3},
		}, true},
		{openCLIP, "transformer.resblocks.2.ln_1.weight", nil, true}, // the last block: penultimate rule
		{openCLIP, "text_projection", nil, true},
		{openCLIP, "transformer.resblocks.3.ln_1.weight", nil, false},
		{openCLIP, "positional_embedding_extra", nil, false}, // a whole prefix, not a substring
	}
	for _, tt := range tests {
		got, ok := tt.table.rename(tt.in)
		if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("rename(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
