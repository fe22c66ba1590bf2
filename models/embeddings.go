package models

import (
	"math"

	"github.com/tokenflow/tokenflow/internal/onnx"
)

// Timesteps — diffusers: models/embeddings.py, Timesteps and
// get_timestep_embedding: sinusoidal features of the timestep,
// [cos | sin] when FlipSinToCos.
type Timesteps struct {
	Channels     int64
	FlipSinToCos bool
	FreqShift    float64
}

// Build maps t [B] (float32) to [B, Channels].
func (ts Timesteps) Build(g *onnx.Graph, t onnx.Value) onnx.Value {
	half := ts.Channels / 2
	// exponent_i = -ln(10000) * i / (half - shift), computed in float32 as
	// torch does, then exp.
	freqs := make([]float32, half)
	for i := range freqs {
		e := float32(-math.Log(10000)) * float32(i)
		e = e / float32(float64(half)-ts.FreqShift)
		freqs[i] = float32(math.Exp(float64(e)))
	}
	// [B] -> [B,1] * [half] -> [B,half]
	arg := g.Mul(g.Unsqueeze(t, 1), g.ConstF32([]int64{half}, freqs...))
	sin, cos := g.Sin(arg), g.Cos(arg)
	if ts.FlipSinToCos {
		return g.Concat(1, cos, sin)
	}
	return g.Concat(1, sin, cos)
}

// TimestepEmbedding — diffusers: models/embeddings.py, TimestepEmbedding:
// linear_1, silu, linear_2.
type TimestepEmbedding struct{ In, Out int64 }

func (te TimestepEmbedding) Build(g *onnx.Graph, s Scope, x onnx.Value) onnx.Value {
	h := g.SiLU(linear(g, s.Sub("linear_1"), x, te.In, te.Out, true))
	return linear(g, s.Sub("linear_2"), h, te.Out, te.Out, true)
}
