package sd

import (
	"context"
	"fmt"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/tokens"
	"github.com/tokenflow/tokenflow/models"
)

// The UNet is one session of the TokenFlow graph (models.TokenFlowGraph):
// plain, keyframe and propagation passes are modes of the same graph, so
// the weights are in memory once.

// unetCall is one evaluation's inputs by name.
type unetCall map[string]ort.Tensor

func (p *Pipeline) unetSession() (*ort.Session, error) {
	return p.Session("unet", "unet", func(w *models.Weights) (*onnx.Graph, error) {
		return (&models.UNet{Config: p.UNetConfig, Weights: w}).TokenFlowGraph()
	})
}

// Layers are the UNet's self-attention layers at a latent size.
func (p *Pipeline) Layers(h, w int) []tokens.Layer {
	return tokens.Registry(p.UNetConfig, h, w)
}

// callUNet runs the TokenFlow UNet; inputs it does not name get empty or
// off values.
func (p *Pipeline) callUNet(ctx context.Context, x Latents, t int, text TextEmbeds, mode int64, c unetCall) (map[string]ort.Tensor, error) {
	s, err := p.unetSession()
	if err != nil {
		return nil, err
	}
	if int64(text.N) != x.Shape[0] {
		return nil, fmt.Errorf("unet: %d latents but %d text states", x.Shape[0], text.N)
	}
	c[models.InSample] = x.tensor()
	c[models.InTimestep] = ort.Scalar(int64(t))
	c[models.InTextEmbeds] = text.tensor()
	c[models.InAttnMode] = ort.New([]int64{1}, []int64{mode})
	off := ort.New([]int64{1}, []bool{false})
	args := make([]ort.Tensor, len(s.Inputs()))
	for i, name := range s.Inputs() {
		v, ok := c[name]
		switch {
		case ok:
		case name == models.InQKInject || name == models.InConvInject:
			v = off
		case name == models.InPivots:
			v = ort.New([]int64{2}, []int64{0, 0})
		case name == models.InPivotWeights:
			v = ort.New([]int64{0}, []float32{})
		default:
			// per-layer keyframe inputs: empty when unused
			ch, ok := p.kfChannels[name]
			if !ok {
				return nil, fmt.Errorf("unet: no value for input %s", name)
			}
			v = ort.New([]int64{0, 0, ch}, []float32{})
		}
		args[i] = v
	}
	outs, err := s.Run(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("unet: %w", err)
	}
	p.unetFrames.Add(x.Shape[0])
	res := make(map[string]ort.Tensor, len(outs))
	for i, name := range s.Outputs() {
		res[name] = outs[i]
	}
	return res, nil
}

func latentsOf(t ort.Tensor, shape [4]int64) (Latents, error) {
	d, err := ort.Data[float32](t)
	if err != nil {
		return Latents{}, err
	}
	return Latents{Shape: shape, Data: d}, nil
}

// UNet evaluates the plain UNet: sample [B,4,h,w] at timestep t with text
// states [B,77,C] -> predicted noise [B,4,h,w].
func (p *Pipeline) UNet(ctx context.Context, x Latents, t int, text TextEmbeds) (Latents, error) {
	out, err := p.callUNet(ctx, x, t, text, models.ModePlain, unetCall{})
	if err != nil {
		return Latents{}, err
	}
	return latentsOf(out[models.OutSample], x.Shape)
}

// Injection switches PnP injection for one pass.
type Injection struct {
	QK   bool // query/key injection in the decoder's self-attention
	Conv bool // feature injection in up_blocks.1.resnets.1
}

func flag(b bool) ort.Tensor { return ort.New([]int64{1}, []bool{b}) }

// KeyframePass runs the keyframe pass on x = [source | uncond | cond] of K
// keyframes each (3K latents, text likewise) and returns its pivot cache.
// Its noise prediction is not used by TokenFlow.
func (p *Pipeline) KeyframePass(ctx context.Context, x Latents, t int, text TextEmbeds, inj Injection, keyframes []int) (*tokens.PivotCache, error) {
	out, err := p.callUNet(ctx, x, t, text, models.ModeKeyframe, unetCall{models.InQKInject: flag(inj.QK), models.InConvInject: flag(inj.Conv)})
	if err != nil {
		return nil, err
	}
	c := &tokens.PivotCache{Keyframes: keyframes, Tokens: map[string]tokens.Tensor{}, Attn: map[string]tokens.Tensor{}}
	for _, l := range p.UNetConfig.SelfAttentionLayers() {
		for name, dst := range map[string]map[string]tokens.Tensor{models.OutTokens(l.Path): c.Tokens, models.OutAttn(l.Path): c.Attn} {
			v := out[name]
			d, err := ort.Data[float32](v)
			if err != nil {
				return nil, err
			}
			dst[l.Path] = tokens.Tensor{Shape: v.Shape, Data: d}
		}
	}
	return c, nil
}

// PropagationPass runs the propagation pass on x = [source | uncond |
// cond] of one batch's n frames (3n latents): every self-attention output
// is gathered from the pivot cache's keyframes pivots[0] and pivots[1]
// (slots in the cache) and blended with weights[i] for frame i on the
// first. It returns the predicted noise [3n,4,h,w].
func (p *Pipeline) PropagationPass(ctx context.Context, x Latents, t int, text TextEmbeds, inj Injection, c *tokens.PivotCache, pivots [2]int, weights []float32) (Latents, error) {
	call := unetCall{
		models.InConvInject:   flag(inj.Conv),
		models.InPivots:       ort.New([]int64{2}, []int64{int64(pivots[0]), int64(pivots[1])}),
		models.InPivotWeights: ort.New([]int64{int64(len(weights))}, weights),
	}
	for path, v := range c.Tokens {
		call[models.InKeyTokens(path)] = ort.New(v.Shape, v.Data)
	}
	for path, v := range c.Attn {
		call[models.InKeyAttn(path)] = ort.New(v.Shape, v.Data)
	}
	out, err := p.callUNet(ctx, x, t, text, models.ModePropagate, call)
	if err != nil {
		return Latents{}, err
	}
	return latentsOf(out[models.OutSample], x.Shape)
}
