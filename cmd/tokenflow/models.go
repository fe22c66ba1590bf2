package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/version"
	"github.com/tokenflow/tokenflow/internal/video"
	"github.com/tokenflow/tokenflow/models"
)

func newCmdModels(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "models",
		Short: "Inspect a Stable Diffusion checkpoint or write it as ONNX graphs",
		Long: `A model is a diffusers-format Stable Diffusion folder (model_index.json, unet/,
vae/, text_encoder/, tokenizer/, scheduler/ with config.json and safetensors
weights), or a hub id such as stabilityai/stable-diffusion-2-1-base already in
the local Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or
~/.cache/huggingface/hub), or a single-file .safetensors checkpoint in the
original (CompVis / Stability) layout, with its inference YAML given by
--original-config or its architecture detected from the tensors (see
docs/models.md). Nothing is downloaded.`,
	}
	cmd.AddCommand(newCmdModelsExport(g, nil), newCmdModelsInfo(g, nil))
	return cmd
}

// modelsFlags words the settings of models export and info as theirs: the
// model is their argument, not a flag.
var modelsFlags = flagNames{"model": "model", "original_config": "--original-config", "ort_lib": "--ort-lib", "dtype": "--dtype"}

// modelSource is the model `models export` and `models info` act on: their
// argument and, for a single file, its original inference YAML.
type modelSource struct {
	Model          string
	OriginalConfig string // --original-config, for a single-file model
}

// open opens the model; a single file's conversion is reported on log.
func (m *modelSource) open(log io.Writer) (*models.Checkpoint, error) {
	return models.OpenModel(m.Model, models.OpenOptions{OriginalConfig: m.OriginalConfig, Log: log})
}

// modelsCommand finishes a models subcommand acting on o: <model> is its
// one argument and --original-config its flag; it calls runF when a test
// gives one, else run, whose errors modelsFlags words.
func modelsCommand[O any](cmd *cobra.Command, o *O, m *modelSource, runF func(context.Context, *O) error, run func(*O) error) *cobra.Command {
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		m.Model = args[0]
		if runF != nil {
			return runF(cmd.Context(), o)
		}
		return modelsFlags.wordErr(run(o))
	}
	cmd.Flags().StringVar(&m.OriginalConfig, "original-config", "", "original inference YAML of a single-file <model>")
	return cmd
}

// ExportOptions are `models export`'s inputs.
type ExportOptions struct {
	*globalOptions
	modelSource
	Out   string
	DType string
	Force bool
}

func newCmdModelsExport(g *globalOptions, runF func(context.Context, *ExportOptions) error) *cobra.Command {
	o := &ExportOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "export <model> --out DIR",
		Short: "Write the text encoder, VAE encoder/decoder and UNet as ONNX graphs",
		Long: `Writes DIR/text_encoder/model.onnx, DIR/vae_encoder/model.onnx,
DIR/vae_decoder/model.onnx and DIR/unet/model.onnx, each with its weights
beside it in weights.pb, plus the tokenizer and scheduler files and a
model_index.json: the folder diffusers' OnnxStableDiffusionPipeline (and tools
following its layout) load as it is, with the input names and types it feeds
(text encoder input_ids int32; UNet sample, timestep as a float32 [1],
encoder_hidden_states). The graphs use ONNX Runtime's com.microsoft operators,
so they need ONNX Runtime. In fp32 the weights are hard-linked from the
checkpoint when it is on the same file system (copied otherwise); --dtype fp16
converts them, keeping normalisations and attention in float32 (SD 2.x gives
NaN otherwise), with float32 inputs and outputs.`,
	}
	cmd.Flags().StringVar(&o.Out, "out", "", "output folder (required)")
	cmd.Flags().StringVar(&o.DType, "dtype", "fp32", "weight type: fp32 or fp16")
	cmd.Flags().BoolVar(&o.Force, "force", false, "write into a folder that already holds an export")
	return modelsCommand(cmd, o, &o.modelSource, runF, runModelsExport)
}

func runModelsExport(o *ExportOptions) error {
	if o.Out == "" {
		return usageErr("models export: --out DIR is required")
	}
	dt, err := sd.ParseDType(o.DType)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(o.Out, "unet", "model.onnx")); err == nil && !o.Force {
		return fmt.Errorf("--out %s already holds an export: pass --force to overwrite it", o.Out)
	}
	c, err := o.open(o.Err)
	if err != nil {
		return err
	}
	if err := models.Export(c, o.Out, models.ExportOptions{Type: dt.GraphType(), Producer: "tokenflow", Version: version.Version, Log: o.Err}); err != nil {
		return err
	}
	fmt.Fprintln(o.globalOptions.Out, o.Out)
	return nil
}

// InfoOptions are `models info`'s inputs.
type InfoOptions struct {
	*globalOptions
	modelSource
	Size string
	JSON bool
}

func newCmdModelsInfo(g *globalOptions, runF func(context.Context, *InfoOptions) error) *cobra.Command {
	o := &InfoOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "info <model>",
		Short: "Print a checkpoint's family, sizes and self-attention layers",
		Long: `Prints the checkpoint's family (SD 1.x / 2.x), its component sizes, and the
self-attention layers TokenFlow acts on, with their token shapes per frame at
the given frame size.`,
	}
	cmd.Flags().StringVar(&o.Size, "size", "512x512", "frame size WxH (multiples of 8) for the token shapes")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return modelsCommand(cmd, o, &o.modelSource, runF, runModelsInfo)
}

type layerInfo struct {
	Path     string `json:"path"`
	Tokens   int    `json:"tokens"`
	Height   int    `json:"height"`
	Width    int    `json:"width"`
	Channels int64  `json:"channels"`
	Heads    int64  `json:"heads"`
}

type modelInfo struct {
	Path       string           `json:"path"`
	Family     string           `json:"family"`
	Components map[string]int64 `json:"parameters"`
	Bytes      map[string]int64 `json:"bytes"`
	CrossDim   int              `json:"cross_attention_dim"`
	Frame      string           `json:"frame_size"`
	Latent     string           `json:"latent_size"`
	Layers     []layerInfo      `json:"self_attention_layers"`
}

func runModelsInfo(o *InfoOptions) error {
	size, err := video.ParseSize(o.Size)
	if err != nil {
		return usageErr("%v", err)
	}
	c, err := o.open(o.Err)
	if err != nil {
		return err
	}
	cfg, err := c.UNetConfig()
	if err != nil {
		return err
	}
	info := modelInfo{Path: c.Source(), Family: cfg.Family(), Components: map[string]int64{}, Bytes: map[string]int64{}, CrossDim: cfg.CrossDims[0],
		Frame: size.String(), Latent: fmt.Sprintf("%dx%d", size.W/8, size.H/8)}
	for _, comp := range []string{"unet", "vae", "text_encoder"} {
		w, err := c.Weights(comp, onnx.Float)
		if err != nil {
			return err
		}
		for _, name := range w.Names() {
			t, _ := w.Info(name)
			info.Components[comp] += t.NumElements()
			info.Bytes[comp] += t.Length
		}
		w.Close()
	}
	for _, l := range cfg.SelfAttentionLayers() {
		h, w := l.Tokens(size.H/8, size.W/8)
		info.Layers = append(info.Layers, layerInfo{Path: l.Path, Tokens: h * w, Height: h, Width: w, Channels: l.Channels, Heads: l.Heads})
	}
	out := o.Out
	if o.JSON {
		return printJSON(out, info)
	}
	fmt.Fprintf(out, "model       %s\nfamily      %s\n", info.Path, info.Family)
	for _, comp := range []string{"unet", "vae", "text_encoder"} {
		fmt.Fprintf(out, "%-11s %.1f M parameters, %.1f MB\n", comp, float64(info.Components[comp])/1e6, float64(info.Bytes[comp])/1e6)
	}
	fmt.Fprintf(out, "text width  %d\nframe       %s (latent %s)\n\nself-attention layers (tokens per frame [H x W] x channels, heads):\n", info.CrossDim, info.Frame, info.Latent)
	for _, l := range info.Layers {
		fmt.Fprintf(out, "  %-55s %6d [%dx%d] x %d, %d heads\n", l.Path, l.Tokens, l.Height, l.Width, l.Channels, l.Heads)
	}
	return nil
}
