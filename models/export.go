package models

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenflow/tokenflow/internal/onnx"
)

// Family names the Stable Diffusion generation a checkpoint belongs to.
func (c *UNetConfig) Family() string {
	// SD 2.x fixes the head width at 64 (attention_head_dim is a per-block
	// head count list) and uses linear projections; SD 1.x fixes 8 heads.
	if c.UseLinearProjection || c.AttentionHeadDim.List != nil {
		return "SD 2.x"
	}
	return "SD 1.x"
}

// Tokens is the layer's token grid for a latent of h x w: each downsampler
// halves a side, rounding up (stride-2 conv with padding 1).
func (l Layer) Tokens(h, w int) (int, int) {
	for d := 1; d < l.Down; d *= 2 {
		h, w = (h+1)/2, (w+1)/2
	}
	return h, w
}

// ExportOptions configure Export.
type ExportOptions struct {
	Type     onnx.DataType // onnx.Float or onnx.Float16
	Producer string        // tool name and version, written into the models
	Version  string
	// Log receives one line per written graph (may be nil).
	Log io.Writer
}

// exported lists the graphs Export writes: folder, builder.
type graphBuild struct {
	dir   string
	build func() (*onnx.Graph, error)
}

// Export writes the checkpoint's graphs into out: text_encoder/model.onnx,
// vae_encoder/model.onnx, vae_decoder/model.onnx, unet/model.onnx, each
// with its weights beside it (linked or copied from the checkpoint in
// fp32, converted into weights.bin in fp16), plus the tokenizer and
// scheduler files, so any ONNX Runtime can load the folder.
func Export(c *Checkpoint, out string, o ExportOptions) error {
	if o.Type != onnx.Float && o.Type != onnx.Float16 {
		return fmt.Errorf("export: unsupported dtype %s", o.Type)
	}
	u, err := c.UNet(o.Type)
	if err != nil {
		return err
	}
	defer u.Weights.Close()
	v, err := c.VAE(o.Type)
	if err != nil {
		return err
	}
	defer v.Weights.Close()
	te, err := c.TextEncoder(o.Type)
	if err != nil {
		return err
	}
	defer te.Weights.Close()
	builds := []graphBuild{
		{"text_encoder", te.Graph},
		{"vae_encoder", v.EncoderGraph},
		{"vae_decoder", v.DecoderGraph},
		{"unet", func() (*onnx.Graph, error) { return u.Graph(UNetGraphOptions{}) }},
	}
	for _, b := range builds {
		g, err := b.build()
		if err != nil {
			return err
		}
		m, err := g.Model(o.Producer, o.Version)
		if err != nil {
			return err
		}
		dir := filepath.Join(out, b.dir)
		if err := onnx.Save(m, dir, "model.onnx", onnx.SaveOptions{DataFile: "weights.bin", InlineLimit: 1024}); err != nil {
			return fmt.Errorf("export %s: %w", b.dir, err)
		}
		if o.Log != nil {
			fmt.Fprintf(o.Log, "wrote %s\n", filepath.Join(dir, "model.onnx"))
		}
	}
	for _, sub := range []string{"tokenizer", "scheduler"} {
		if err := copyDir(c.Path(sub), filepath.Join(out, sub)); err != nil {
			return fmt.Errorf("export %s: %w", sub, err)
		}
	}
	if _, err := os.Stat(c.Path("model_index.json")); err == nil {
		if err := copyFile(c.Path("model_index.json"), filepath.Join(out, "model_index.json")); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	return nil
}

func copyDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
