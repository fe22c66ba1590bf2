package models

import (
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
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
		ids, shape := exp.I64("input_ids")
		want, _ := exp.F32("last_hidden_state")
		s := session(t, g, []string{InInputIDs}, []string{OutHiddenState, OutPoolerOutput})
		fixture.Close(t, "fp16 text encoder", runF32(t, s, ort.New(shape, ids))[0], want, rel, 0)
	})
	t.Run("vae", func(t *testing.T) {
		exp := fixture.Open(t, fixture.Expected(t, model, "vae.safetensors"))
		eg, err := v.EncoderGraph()
		if err != nil {
			t.Fatal(err)
		}
		x, xs := exp.F32("encode_input")
		mean, _ := exp.F32("encode_mean")
		fixture.Close(t, "fp16 vae encoder", runF32(t, session(t, eg, []string{InImage}, []string{OutLatent}), ort.New(xs, x))[0], mean, rel, 0)
		dg, err := v.DecoderGraph()
		if err != nil {
			t.Fatal(err)
		}
		z, zs := exp.F32("decode_input")
		img, _ := exp.F32("decode_output")
		fixture.Close(t, "fp16 vae decoder", runF32(t, session(t, dg, []string{InLatent}, []string{OutImage}), ort.New(zs, z))[0], img, rel, 0)
	})
	t.Run("unet", func(t *testing.T) {
		g, err := u.Graph(UNetGraphOptions{})
		if err != nil {
			t.Fatal(err)
		}
		exp := fixture.Open(t, fixture.Expected(t, model, "unet.safetensors"))
		x, xs := exp.F32("a.sample")
		ts, _ := exp.I64("a.timestep")
		e, es := exp.F32("a.encoder_hidden_states")
		want, _ := exp.F32("a.noise_pred")
		s := session(t, g, []string{InSample, InTimestep, InTextEmbeds}, []string{OutSample})
		fixture.Close(t, "fp16 unet", runF32(t, s, ort.New(xs, x), ort.Scalar(ts[0]), ort.New(es, e))[0], want, rel, 0)
	})
}
