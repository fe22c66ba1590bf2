// Package testmodel writes random-weight Stable Diffusion checkpoints in
// diffusers layout, with the exact architecture of a released model, for
// benchmarks: the graphs, sessions and memory of a full-size model, without
// downloading one.
//
// The parameter list (names and shapes) is not written down here: it comes
// from building each graph with models.RecordShapes, so a checkpoint written
// by this package is by construction what the builders read. Weights are
// float32, drawn so that activations stay near unit scale (see initValue).
package testmodel

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/models"
)

// Spec is a checkpoint architecture: the config.json of each component, as
// diffusers and transformers write them.
type Spec struct {
	Name        string // names the cached folder, e.g. "sd21-base"
	UNet        map[string]any
	VAE         map[string]any
	TextEncoder map[string]any
	ModelIndex  map[string]any
}

// SD21Base is the architecture of stabilityai/stable-diffusion-2-1-base
// (its unet, vae and text_encoder config.json files).
func SD21Base() Spec {
	return Spec{
		Name: "sd21-base",
		UNet: map[string]any{
			"_class_name":            "UNet2DConditionModel",
			"_diffusers_version":     "0.10.0.dev0",
			"act_fn":                 "silu",
			"attention_head_dim":     []int{5, 10, 20, 20},
			"block_out_channels":     []int{320, 640, 1280, 1280},
			"center_input_sample":    false,
			"cross_attention_dim":    1024,
			"down_block_types":       []string{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"},
			"downsample_padding":     1,
			"dual_cross_attention":   false,
			"flip_sin_to_cos":        true,
			"freq_shift":             0,
			"in_channels":            4,
			"layers_per_block":       2,
			"mid_block_scale_factor": 1,
			"norm_eps":               1e-05,
			"norm_num_groups":        32,
			"num_class_embeds":       nil,
			"only_cross_attention":   false,
			"out_channels":           4,
			"sample_size":            64,
			"up_block_types":         []string{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"},
			"upcast_attention":       false,
			"use_linear_projection":  true,
		},
		VAE: map[string]any{
			"_class_name":        "AutoencoderKL",
			"_diffusers_version": "0.10.0.dev0",
			"act_fn":             "silu",
			"block_out_channels": []int{128, 256, 512, 512},
			"down_block_types":   []string{"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"},
			"in_channels":        3,
			"latent_channels":    4,
			"layers_per_block":   2,
			"norm_num_groups":    32,
			"out_channels":       3,
			"sample_size":        512,
			"scaling_factor":     0.18215,
			"up_block_types":     []string{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"},
		},
		TextEncoder: map[string]any{
			"architectures":           []string{"CLIPTextModel"},
			"attention_dropout":       0.0,
			"bos_token_id":            0,
			"dropout":                 0.0,
			"eos_token_id":            2,
			"hidden_act":              "gelu",
			"hidden_size":             1024,
			"initializer_factor":      1.0,
			"initializer_range":       0.02,
			"intermediate_size":       4096,
			"layer_norm_eps":          1e-05,
			"max_position_embeddings": 77,
			"model_type":              "clip_text_model",
			"num_attention_heads":     16,
			"num_hidden_layers":       23,
			"pad_token_id":            1,
			"projection_dim":          512,
			"torch_dtype":             "float32",
			"transformers_version":    "4.25.0.dev0",
			"vocab_size":              49408,
		},
		ModelIndex: map[string]any{
			"_class_name":             "StableDiffusionPipeline",
			"_diffusers_version":      "0.10.0.dev0",
			"feature_extractor":       []any{nil, nil},
			"requires_safety_checker": false,
			"safety_checker":          []any{nil, nil},
			"scheduler":               []string{"diffusers", "PNDMScheduler"},
			"text_encoder":            []string{"transformers", "CLIPTextModel"},
			"tokenizer":               []string{"transformers", "CLIPTokenizer"},
			"unet":                    []string{"diffusers", "UNet2DConditionModel"},
			"vae":                     []string{"diffusers", "AutoencoderKL"},
		},
	}
}

// Summary describes a written checkpoint.
type Summary struct {
	Dir        string      `json:"dir"`
	Seed       uint64      `json:"seed"`
	Components []Component `json:"components"`
}

// Component is one weight file of a written checkpoint.
type Component struct {
	Name    string `json:"name"` // "unet", "vae", "text_encoder"
	File    string `json:"file"` // path relative to the checkpoint folder
	Tensors int    `json:"tensors"`
	Params  int64  `json:"params"`
	Bytes   int64  `json:"bytes"` // size of the safetensors file
}

// Component returns the named component, or false.
func (s *Summary) Component(name string) (Component, bool) {
	for _, c := range s.Components {
		if c.Name == name {
			return c, true
		}
	}
	return Component{}, false
}

// Write writes the checkpoint spec describes, with random weights, into
// dir: the config.json files and model_index.json, weights as F32
// safetensors streamed to disk (a 3.5 GB UNet never sits in memory), and
// assets' tokenizer/ and scheduler/ folders.
func Write(dir, assets string, spec Spec, seed uint64) (*Summary, error) {
	for _, sub := range []string{"tokenizer", "scheduler"} {
		if st, err := os.Stat(filepath.Join(assets, sub)); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("test model assets %s: no %s/ folder to copy", assets, sub)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("write test model: %w", err)
	}
	if err := writeJSON(filepath.Join(dir, "model_index.json"), spec.ModelIndex); err != nil {
		return nil, err
	}
	for _, sub := range []string{"tokenizer", "scheduler"} {
		if err := atomicfile.CopyDir(filepath.Join(assets, sub), filepath.Join(dir, sub)); err != nil {
			return nil, fmt.Errorf("copy test model assets: %w", err)
		}
	}
	sum := &Summary{Dir: dir, Seed: seed}
	for _, c := range spec.components() {
		shapes, err := c.writeConfig(filepath.Join(dir, c.name, "config.json"))
		if err != nil {
			return nil, err
		}
		rel := filepath.Join(c.name, c.file)
		n, size, err := writeRandomSafetensors(filepath.Join(dir, rel), shapes, seed)
		if err != nil {
			return nil, err
		}
		sum.Components = append(sum.Components, Component{Name: c.name, File: rel, Tensors: len(shapes), Params: n, Bytes: size})
	}
	return sum, nil
}

// Shapes is a spec's parameter list per component ("unet", "vae",
// "text_encoder"), recorded from the graph builders.
func Shapes(spec Spec) (map[string]map[string][]int64, error) {
	tmp, err := os.MkdirTemp("", "tokenflow-testmodel-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := map[string]map[string][]int64{}
	for _, c := range spec.components() {
		if out[c.name], err = c.writeConfig(filepath.Join(tmp, c.name, "config.json")); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// component is one weight file of a spec: its folder and file name, its
// config, and how its parameter list is recorded from a config file.
type component struct {
	name, file string
	config     map[string]any
	shapes     func(configPath string) (map[string][]int64, error)
}

func (spec Spec) components() []component {
	return []component{
		{"unet", "diffusion_pytorch_model.safetensors", spec.UNet, unetShapes},
		{"vae", "diffusion_pytorch_model.safetensors", spec.VAE, vaeShapes},
		{"text_encoder", "model.safetensors", spec.TextEncoder, textEncoderShapes},
	}
}

// writeConfig writes c's config.json at cfgPath and returns c's parameter
// list, read back from that file the way a checkpoint is read, so that
// defaults and validation are the builders' own.
func (c component) writeConfig(cfgPath string) (map[string][]int64, error) {
	if err := os.MkdirAll(filepath.Dir(cfgPath), 0o755); err != nil {
		return nil, fmt.Errorf("write test model: %w", err)
	}
	if err := writeJSON(cfgPath, c.config); err != nil {
		return nil, err
	}
	shapes, err := c.shapes(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("test model %s: %w", c.name, err)
	}
	return shapes, nil
}

// Count is the number of parameters in a parameter list.
func Count(shapes map[string][]int64) int64 {
	var n int64
	for _, s := range shapes {
		n += numElements(s)
	}
	return n
}

// recorded loads a component's config with load and builds its graphs with
// build on weights that only record what they are asked for: the shapes of
// the component's parameters.
func recorded[C any](component, cfgPath string, load func(string) (C, error), build func(C, *models.Weights) error) (map[string][]int64, error) {
	cfg, err := load(cfgPath)
	if err != nil {
		return nil, err
	}
	rec := models.RecordShapes(component)
	if err := build(cfg, rec); err != nil {
		return nil, err
	}
	return rec.Recorded(), nil
}

func unetShapes(cfgPath string) (map[string][]int64, error) {
	return recorded("unet", cfgPath, models.LoadUNetConfig, func(cfg *models.UNetConfig, w *models.Weights) error {
		_, err := (&models.UNet{Config: cfg, Weights: w}).Graph(models.UNetGraphOptions{})
		return err
	})
}

func vaeShapes(cfgPath string) (map[string][]int64, error) {
	return recorded("vae", cfgPath, models.LoadVAEConfig, func(cfg *models.VAEConfig, w *models.Weights) error {
		v := &models.VAE{Config: cfg, Weights: w}
		if _, err := v.EncoderGraph(); err != nil {
			return err
		}
		_, err := v.DecoderGraph()
		return err
	})
}

func textEncoderShapes(cfgPath string) (map[string][]int64, error) {
	return recorded("text_encoder", cfgPath, models.LoadCLIPTextConfig, func(cfg *models.CLIPTextConfig, w *models.Weights) error {
		_, err := (&models.CLIPText{Config: cfg, Weights: w}).Graph()
		return err
	})
}

// writeJSON writes v as indented JSON (keys sorted, as diffusers'
// to_json_string does).
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}
