package models

import (
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
)

// Conformance tolerance for component graphs: the issue's
// max|ours - ref| <= 1e-4 * max|ref| + 1e-5. The reference is float32 torch;
// its own float64 twin deviates by ~1e-6 relative (MANIFEST.md), and a
// float32 re-implementation with other summation orders lands near 1e-5.
const compRel, compAbs = 1e-4, 1e-5

func TestUNetConformance(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			c := openCheckpoint(t, fixture.Model(t, model))
			u, err := c.UNet(onnx.Float)
			if err != nil {
				t.Fatal(err)
			}
			defer u.Weights.Close()
			g, err := u.Graph(UNetGraphOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s := session(t, g, []string{InSample, InTimestep, InTextEmbeds}, []string{OutSample})
			exp := fixture.Open(t, fixture.Expected(t, model, "unet.safetensors"))
			for _, cs := range []string{"a", "b", "c"} {
				x, xs := exp.F32(cs + ".sample")
				ts, _ := exp.I64(cs + ".timestep")
				e, es := exp.F32(cs + ".encoder_hidden_states")
				want, _ := exp.F32(cs + ".noise_pred")
				out := runF32(t, s, ort.New(xs, x), ort.Scalar(ts[0]), ort.New(es, e))
				fixture.Close(t, model+" unet case "+cs, out[0], want, compRel, compAbs)
			}
		})
	}
}
