package models

import (
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
)

func TestVAEConformance(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			c := openCheckpoint(t, fixture.Model(t, model))
			v, err := c.VAE(onnx.Float)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Weights.Close()
			exp := fixture.Open(t, fixture.Expected(t, model, "vae.safetensors"))

			eg, err := v.EncoderGraph()
			if err != nil {
				t.Fatal(err)
			}
			enc := session(t, eg, []string{InImage}, []string{OutLatent})
			x, xs := exp.F32("encode_input")
			mean, _ := exp.F32("encode_mean")
			got := runF32(t, enc, ort.New(xs, x))[0]
			fixture.Close(t, model+" vae encoder posterior mean", got, mean, compRel, compAbs)

			dg, err := v.DecoderGraph()
			if err != nil {
				t.Fatal(err)
			}
			dec := session(t, dg, []string{InLatent}, []string{OutImage})
			z, zs := exp.F32("decode_input")
			want, _ := exp.F32("decode_output")
			got = runF32(t, dec, ort.New(zs, z))[0]
			fixture.Close(t, model+" vae decoder", got, want, compRel, compAbs)
		})
	}
}

func TestTextEncoderConformance(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			c := openCheckpoint(t, fixture.Model(t, model))
			m, err := c.TextEncoder(onnx.Float)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Weights.Close()
			g, err := m.Graph()
			if err != nil {
				t.Fatal(err)
			}
			s := session(t, g, []string{InInputIDs}, []string{OutHiddenState, OutPoolerOutput})
			exp := fixture.Open(t, fixture.Expected(t, model, "text_encoder.safetensors"))
			ids, shape := exp.I64("input_ids")
			want, _ := exp.F32("last_hidden_state")
			out := runF32(t, s, ort.New(shape, ids))
			fixture.Close(t, model+" text encoder last_hidden_state", out[0], want, compRel, compAbs)
			// pooler_output is the hidden state at each row's end token
			// (the first position of the highest id).
			C := len(want) / len(ids)
			S := int(shape[1])
			var wantPool []float32
			for b := 0; b < int(shape[0]); b++ {
				best := 0
				for j := 1; j < S; j++ {
					if ids[b*S+j] > ids[b*S+best] {
						best = j
					}
				}
				wantPool = append(wantPool, out[0][(b*S+best)*C:(b*S+best+1)*C]...)
			}
			fixture.Close(t, model+" text encoder pooler_output", out[1], wantPool, 0, 0)
		})
	}
}
