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
	c, err := OpenModel(dir, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// unetGraph opens c's float32 UNet and builds its plain graph; the weights
// are closed when t ends.
func unetGraph(t testing.TB, c *Checkpoint) (*UNet, *onnx.Graph) {
	t.Helper()
	u := openUNet(t, c)
	g, err := u.Graph(UNetGraphOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u, g
}

// openUNet opens c's float32 UNet; its weights are closed when t ends.
func openUNet(t testing.TB, c *Checkpoint) *UNet {
	t.Helper()
	u, err := c.UNet(onnx.Float)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Weights.Close() })
	return u
}

// unetSession opens a UNet graph with its sample, timestep and text inputs.
func unetSession(t testing.TB, g *onnx.Graph) *ort.Session {
	t.Helper()
	return session(t, g, []string{InSample, InTimestep, InTextEmbeds}, []string{OutSample})
}

// checkUNetCase runs case cs ("a", "b", ...) of an expected unet.safetensors
// through s and compares the noise prediction within rel*max|ref| + abs.
func checkUNetCase(t testing.TB, s *ort.Session, exp *fixture.File, what, cs string, rel, abs float64) {
	t.Helper()
	x, xs := exp.F32(cs + ".sample")
	ts, _ := exp.I64(cs + ".timestep")
	e, es := exp.F32(cs + ".encoder_hidden_states")
	want, _ := exp.F32(cs + ".noise_pred")
	out := runF32(t, s, ort.New(xs, x), ort.Scalar(ts[0]), ort.New(es, e))
	fixture.Close(t, what+" case "+cs, out[0], want, rel, abs)
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
	return textSession(t, g)
}

// textSession opens a text encoder graph with its ids input and both outputs.
func textSession(t testing.TB, g *onnx.Graph) *ort.Session {
	t.Helper()
	return session(t, g, []string{InInputIDs}, []string{OutHiddenState, OutPoolerOutput})
}

// checkTextEncoder runs the ids of an expected text_encoder.safetensors
// through s and compares last_hidden_state within rel*max|ref| + abs. It
// returns the outputs and the ids with their shape.
func checkTextEncoder(t testing.TB, s *ort.Session, exp *fixture.File, what string, rel, abs float64) (out [][]float32, ids, shape []int64) {
	t.Helper()
	ids, shape = exp.I64("input_ids")
	want, _ := exp.F32("last_hidden_state")
	out = runF32(t, s, ort.New(shape, ids))
	fixture.Close(t, what+" text encoder last_hidden_state", out[0], want, rel, abs)
	return out, ids, shape
}

// floatVAE opens c's float32 VAE; its weights are closed when t ends.
func floatVAE(t testing.TB, c *Checkpoint) *VAE {
	t.Helper()
	v, err := c.VAE(onnx.Float)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Weights.Close() })
	return v
}

// checkVAE compares v's encoder (posterior mean) and decoder with an
// expected vae.safetensors within rel*max|ref| + abs.
func checkVAE(t testing.TB, v *VAE, exp *fixture.File, what string, rel, abs float64) {
	t.Helper()
	enc, dec := vaeSessions(t, v)
	x, xs := exp.F32("encode_input")
	mean, _ := exp.F32("encode_mean")
	got := runF32(t, enc, ort.New(xs, x))[0]
	fixture.Close(t, what+" vae encoder posterior mean", got, mean, rel, abs)
	z, zs := exp.F32("decode_input")
	want, _ := exp.F32("decode_output")
	got = runF32(t, dec, ort.New(zs, z))[0]
	fixture.Close(t, what+" vae decoder", got, want, rel, abs)
}

// vaeSessions are sessions of v's encoder and decoder graphs.
func vaeSessions(t testing.TB, v *VAE) (enc, dec *ort.Session) {
	t.Helper()
	open := func(build func() (*onnx.Graph, error), in, out string) *ort.Session {
		t.Helper()
		g, err := build()
		if err != nil {
			t.Fatal(err)
		}
		return session(t, g, []string{in}, []string{out})
	}
	return open(v.EncoderGraph, InImage, OutLatent), open(v.DecoderGraph, InLatent, OutImage)
}
