package models

import (
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
)

// TestFP16Graphs builds every graph in fp16 for the SD 2.x-style model and
// runs it in ONNX Runtime's CPU provider against the fp32 references. The
// tolerance is fp16's: ~1e-3 relative per rounding, compounded over the
// layers; normalisations and attention run in float32 (SD 2.x overflows
// otherwise), so the error stays near a percent of the output's range.
func TestFP16Graphs(t *testing.T) {
	const rel = 3e-2
	model := "tiny-sd21"
	c := openCheckpoint(t, fixture.Model(t, model))
	te, err := c.TextEncoder(onnx.Float16)
	if err != nil {
		t.Fatal(err)
	}
	defer te.Weights.Close()
	v, err := c.VAE(onnx.Float16)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Weights.Close()
	u, err := c.UNet(onnx.Float16)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Weights.Close()

	t.Run("text_encoder", func(t *testing.T) {
		g, err := te.Graph()
		if err != nil {
			t.Fatal(err)
		}
		exp := fixture.Open(t, fixture.Expected(t, model, "text_encoder.safetensors"))
		checkTextEncoder(t, textSession(t, g), exp, "fp16", rel, 0)
	})
	t.Run("vae", func(t *testing.T) {
		checkVAE(t, v, fixture.Open(t, fixture.Expected(t, model, "vae.safetensors")), "fp16", rel, 0)
	})
	t.Run("unet", func(t *testing.T) {
		g, err := u.Graph(UNetGraphOptions{})
		if err != nil {
			t.Fatal(err)
		}
		exp := fixture.Open(t, fixture.Expected(t, model, "unet.safetensors"))
		checkUNetCase(t, unetSession(t, g), exp, "fp16 unet", "a", rel, 0)
	})
}
