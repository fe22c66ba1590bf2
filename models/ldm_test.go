package models

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/safetensors"
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

// TestSingleFileBadFiles: each bad single file is refused with one line
// saying what is wrong.
func TestSingleFileBadFiles(t *testing.T) {
	src := fixture.Read(t, singlePath(t, "tiny-sd15-ldm", ".safetensors"))
	yamlText := fixture.Read(t, singlePath(t, "tiny-sd15-ldm", ".yaml"))
	d := t.TempDir()
	write, fake := fixture.Writers(t, d)
	textEnc := map[string][]int64{"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": {49408, 64}}
	withText := func(m map[string][]int64) map[string][]int64 {
		for k, v := range textEnc {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		file    string
		yaml    string
		is      error
		wantAll []string
		setting string // the *param.Error's Name; "" for none
	}{
		{"not a checkpoint", fake("lora.safetensors", map[string][]int64{"lora_unet_down_blocks_0.alpha": {}, "foo.weight": {4, 4}}),
			"", nil, []string{"lora.safetensors", "not a Stable Diffusion checkpoint", "model.diffusion_model."}, ""},
		{"SDXL", fake("sdxl.safetensors", map[string][]int64{
			"conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": {49408, 64},
			"model.diffusion_model.input_blocks.0.0.weight":                                    {32, 4, 3, 3},
			"model.diffusion_model.label_emb.0.0.weight":                                       {128, 2816},
		}), "", ErrUnsupported, []string{"sdxl.safetensors", "SDXL", "conditioner.embedders"}, ""},
		{"inpainting", fake("inpaint.safetensors", withText(map[string][]int64{
			"model.diffusion_model.input_blocks.0.0.weight": {32, 9, 3, 3},
		})), "", ErrUnsupported, []string{"inpaint.safetensors", "inpainting", "9 input channels"}, ""},
		{"missing", filepath.Join(d, "gone.safetensors"), "", ErrModelNotFound, []string{"gone.safetensors", "no such file"}, "model"},
		{"truncated", write("truncated.safetensors", src[:len(src)/2]), "", safetensors.ErrInvalid, []string{"truncated.safetensors"}, "model"},
		{"YAML disagrees", write("tiny.safetensors", src),
			write("bad.yaml", bytes.Replace(yamlText, []byte("model_channels: 32"), []byte("model_channels: 64"), 1)),
			nil, []string{"bad.yaml", "model.params.unet_config.params.model_channels", "64", "32"}, "original_config"},
		{"YAML of the other family", write("tiny2.safetensors", src), singlePath(t, "tiny-sd21-ldm", ".yaml"),
			nil, []string{"cond_stage_config.target", "FrozenOpenCLIPEmbedder", "CLIP"}, "original_config"},
		{"no UNet", fake("vae-only.safetensors", withText(map[string][]int64{"first_stage_model.encoder.conv_in.weight": {32, 3, 3, 3}})),
			"", ErrArchitecture, []string{"vae-only.safetensors", "UNet", "model.diffusion_model.input_blocks.0.0.weight"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenModel(tt.file, OpenOptions{OriginalConfig: tt.yaml, CacheRoot: t.TempDir()})
			checkErrorLine(t, err, tt.is, tt.wantAll...)
			var pe *param.Error
			if errors.As(err, &pe) != (tt.setting != "") || pe != nil && pe.Name != tt.setting {
				t.Errorf("error %#v: want a *param.Error for %q", err, tt.setting)
			}
			t.Log(err)
		})
	}
}

// TestSingleFileEMA: a file with EMA copies converts the EMA weights for
// the UNet and says so.
func TestSingleFileEMA(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ema.safetensors")
	data, err := os.ReadFile(singlePath(t, "tiny-sd15-ldm", ".safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	const convIn = "model.diffusion_model.input_blocks.0.0.weight"
	var orig []float32
	rewriteWeights(t, path, func(ts []safetensors.Tensor) []safetensors.Tensor {
		in, err := safetensors.Open(singlePath(t, "tiny-sd15-ldm", ".safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		for _, name := range in.Names() {
			if !strings.HasPrefix(name, ldmUNet+".") {
				continue
			}
			v, err := in.Float32(name)
			if err != nil {
				t.Fatal(err)
			}
			if name == convIn {
				orig = v
			}
			half := make([]float32, len(v))
			for i, x := range v {
				half[i] = x / 2
			}
			flat := "model_ema." + strings.ReplaceAll(strings.TrimPrefix(name, "model."), ".", "")
			ts = append(ts, safetensors.FromFloat32(flat, in.Tensor(name).Shape, half))
		}
		return append(ts, safetensors.FromFloat32("model_ema.decay", nil, []float32{0.9999}))
	})
	var log bytes.Buffer
	c, err := OpenModel(path, OpenOptions{OriginalConfig: singlePath(t, "tiny-sd15-ldm", ".yaml"), CacheRoot: t.TempDir(), Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	files, err := c.WeightFiles("unet")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "EMA") {
		t.Errorf("log %q does not mention the EMA weights", log.String())
	}
	f := fixture.Open(t, files[0])
	got, _ := f.F32("conv_in.weight")
	for i := range got {
		if got[i] != orig[i]/2 {
			t.Fatalf("conv_in.weight[%d] = %g, want the EMA copy's %g (the plain weight is %g)", i, got[i], orig[i]/2, orig[i])
		}
	}
	for _, n := range f.Names() {
		if strings.HasPrefix(n, "model_ema") || strings.Contains(n, "diffusion_model") {
			t.Errorf("converted UNet holds %s", n)
		}
	}
}
