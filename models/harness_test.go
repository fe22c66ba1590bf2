package models

import (
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/testenv/ortsession"
)

// session saves g into a temporary folder (weights linked next to it, as
// `models export` does) and opens it in ONNX Runtime.
func session(t testing.TB, g *onnx.Graph, inputs, outputs []string) *ort.Session {
	t.Helper()
	return ortsession.Saved(t, g, ort.SessionOptions{Inputs: inputs, Outputs: outputs, Threads: 2})
}

func runF32(t testing.TB, s *ort.Session, inputs ...ort.Tensor) [][]float32 {
	t.Helper()
	return ortsession.RunF32(t, s, inputs...)
}

func openCheckpoint(t testing.TB, dir string) *Checkpoint {
	t.Helper()
	c, err := OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// unetGraph opens c's float32 UNet and builds its plain graph; the weights
// are closed when t ends.
func unetGraph(t testing.TB, c *Checkpoint) (*UNet, *onnx.Graph) {
	t.Helper()
	u, err := c.UNet(onnx.Float)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Weights.Close() })
	g, err := u.Graph(UNetGraphOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u, g
}

// unetSession opens a UNet graph with its sample, timestep and text inputs.
func unetSession(t testing.TB, g *onnx.Graph) *ort.Session {
	t.Helper()
	return session(t, g, []string{InSample, InTimestep, InTextEmbeds}, []string{OutSample})
}

// checkUNetCase runs case cs ("a", "b", ...) of an expected unet.safetensors
// through s and compares the noise prediction within the conformance
// tolerance.
func checkUNetCase(t testing.TB, s *ort.Session, exp *fixture.File, what, cs string) {
	t.Helper()
	x, xs := exp.F32(cs + ".sample")
	ts, _ := exp.I64(cs + ".timestep")
	e, es := exp.F32(cs + ".encoder_hidden_states")
	want, _ := exp.F32(cs + ".noise_pred")
	out := runF32(t, s, ort.New(xs, x), ort.Scalar(ts[0]), ort.New(es, e))
	fixture.Close(t, what+" case "+cs, out[0], want, compRel, compAbs)
}

// textEncoderSession opens c's float32 text encoder graph; the weights are
// closed when t ends.
func textEncoderSession(t testing.TB, c *Checkpoint) *ort.Session {
	t.Helper()
	m, err := c.TextEncoder(onnx.Float)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Weights.Close() })
	g, err := m.Graph()
	if err != nil {
		t.Fatal(err)
	}
	return session(t, g, []string{InInputIDs}, []string{OutHiddenState, OutPoolerOutput})
}

// checkVAE compares c's float32 VAE encoder (posterior mean) and decoder
// with an expected vae.safetensors within the conformance tolerance.
func checkVAE(t testing.TB, c *Checkpoint, exp *fixture.File, model string) {
	t.Helper()
	v, err := c.VAE(onnx.Float)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Weights.Close() })
	eg, err := v.EncoderGraph()
	if err != nil {
		t.Fatal(err)
	}
	x, xs := exp.F32("encode_input")
	mean, _ := exp.F32("encode_mean")
	got := runF32(t, session(t, eg, []string{InImage}, []string{OutLatent}), ort.New(xs, x))[0]
	fixture.Close(t, model+" vae encoder posterior mean", got, mean, compRel, compAbs)
	dg, err := v.DecoderGraph()
	if err != nil {
		t.Fatal(err)
	}
	z, zs := exp.F32("decode_input")
	want, _ := exp.F32("decode_output")
	got = runF32(t, session(t, dg, []string{InLatent}, []string{OutImage}), ort.New(zs, z))[0]
	fixture.Close(t, model+" vae decoder", got, want, compRel, compAbs)
}
