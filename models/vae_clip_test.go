package models

import (
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
)

func TestVAEConformance(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			c := openCheckpoint(t, fixture.Model(t, model))
			checkVAE(t, floatVAE(t, c), fixture.Open(t, fixture.Expected(t, model, "vae.safetensors")), model, compRel, compAbs)
		})
	}
}

func TestTextEncoderConformance(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			s := textEncoderSession(t, openCheckpoint(t, fixture.Model(t, model)))
			exp := fixture.Open(t, fixture.Expected(t, model, "text_encoder.safetensors"))
			out, ids, shape := checkTextEncoder(t, s, exp, model, compRel, compAbs)
			// pooler_output is the hidden state at each row's end token
			// (the first position of the highest id).
			C := len(out[0]) / len(ids)
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
