package sd

import (
	"context"
	"fmt"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/pnp"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/tokens"
	"github.com/tokenflow/tokenflow/models"
)

// The UNet is one session of the TokenFlow graph (models.TokenFlowGraph):
// plain, keyframe and propagation passes are modes of the same graph, so
// the weights are in memory once. Plug-and-Play injection goes where
// package pnp says.

// unetCall is one evaluation's inputs by name.
type unetCall map[string]ort.Tensor

func (p *Model) unetSession() (*ort.Session, error) {
	return p.Session("unet", "unet", p.buildUNet)
}

func (p *Model) buildUNet(w *models.Weights) (*onnx.Graph, error) {
	return (&models.UNet{Config: p.UNetConfig, Weights: w}).TokenFlowGraph(models.Injection{QK: pnp.QKLayers, Conv: pnp.ConvLayers})
}

// callUNet runs the TokenFlow UNet on latents x [B,C,h,w] at timestep t
// with text states [B,77,C]; inputs c does not name get empty or off
// values.
func (p *Model) callUNet(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor, mode int64, c unetCall) (map[string]ort.Tensor, error) {
	s, err := p.unetSession()
	if err != nil {
		return nil, err
	}
	if text.N() != x.N() {
		return nil, fmt.Errorf("unet: %d latents but %d text states", x.N(), text.N())
	}
	c[models.InSample] = ort.New(x.Shape, x.Data)
	c[models.InTimestep] = ort.Scalar(int64(t))
	c[models.InTextEmbeds] = ort.New(text.Shape, text.Data)
	c[models.InAttnMode] = ort.New([]int64{1}, []int64{mode})
	args := make([]ort.Tensor, len(s.Inputs()))
	for i, name := range s.Inputs() {
		v, ok := c[name]
		switch {
		case ok:
		case name == models.InQKInject || name == models.InConvInject:
			v = flag(false)
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
	p.unetFrames.Add(int64(x.N()))
	res := make(map[string]ort.Tensor, len(outs))
	for i, name := range s.Outputs() {
		res[name] = outs[i]
	}
	return res, nil
}

// hostTensor converts a float32 output of ONNX Runtime.
func hostTensor(v ort.Tensor) (tensor.Tensor, error) {
	d, err := ort.Data[float32](v)
	if err != nil {
		return tensor.Tensor{}, err
	}
	return tensor.New(v.Shape, d)
}

// UNet evaluates the plain UNet: latents x [B,C,h,w] at timestep t with
// text states [B,77,C] -> predicted noise [B,C,h,w].
func (p *Model) UNet(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor) (tensor.Tensor, error) {
	out, err := p.callUNet(ctx, x, t, text, models.ModePlain, unetCall{})
	if err != nil {
		return tensor.Tensor{}, err
	}
	return hostTensor(out[models.OutSample])
}

func flag(b bool) ort.Tensor { return ort.New([]int64{1}, []bool{b}) }

// KeyframePass runs the keyframe pass on x = [source | uncond | cond] of K
// keyframes each (3K latents, text likewise), or 1 + 2m such groups for m
// prompts, and returns its pivot cache. Its noise prediction is not used
// by TokenFlow.
func (p *Model) KeyframePass(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, keyframes []int) (*tokens.PivotCache, error) {
	c, _, err := p.WindowKeyframePass(ctx, x, t, text, inj, keyframes, nil, false)
	return c, err
}

// WindowKeyframePass is KeyframePass for a windowed step (edit.Window):
// the edited groups also attend to the anchors' kept keys/values (nil:
// none, the official pass), and with keep it also returns this pass's own
// keys/values of the edited groups, to be the anchors of the step's later
// passes.
func (p *Model) WindowKeyframePass(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, keyframes []int, anchors *tokens.AnchorKV, keep bool) (*tokens.PivotCache, *tokens.AnchorKV, error) {
	// pivot_weights' length tells the graph the group size, K; the keyframe
	// pass does not read their values.
	groupSize := make([]float32, len(keyframes))
	call := unetCall{models.InQKInject: flag(inj.QK), models.InConvInject: flag(inj.Conv),
		models.InPivotWeights: ort.New([]int64{int64(len(keyframes))}, groupSize)}
	if anchors != nil {
		for path, v := range anchors.Keys {
			call[models.InAnchorKeys(path)] = ort.New(v.Shape, v.Data)
		}
		for path, v := range anchors.Values {
			call[models.InAnchorValues(path)] = ort.New(v.Shape, v.Data)
		}
	}
	mode := int64(models.ModeKeyframe)
	if keep {
		mode = models.ModeKeyframeKeep
	}
	out, err := p.callUNet(ctx, x, t, text, mode, call)
	if err != nil {
		return nil, nil, err
	}
	c := &tokens.PivotCache{Keyframes: keyframes, Tokens: map[string]tensor.Tensor{}, Attn: map[string]tensor.Tensor{}}
	var kv *tokens.AnchorKV
	if keep {
		kv = &tokens.AnchorKV{Keyframes: keyframes, Keys: map[string]tensor.Tensor{}, Values: map[string]tensor.Tensor{}}
	}
	for _, l := range p.UNetConfig.SelfAttentionLayers() {
		if c.Tokens[l.Path], err = hostTensor(out[models.OutTokens(l.Path)]); err != nil {
			return nil, nil, err
		}
		if c.Attn[l.Path], err = hostTensor(out[models.OutAttn(l.Path)]); err != nil {
			return nil, nil, err
		}
		if kv == nil {
			continue
		}
		if kv.Keys[l.Path], err = hostTensor(out[models.OutKeys(l.Path)]); err != nil {
			return nil, nil, err
		}
		if kv.Values[l.Path], err = hostTensor(out[models.OutValues(l.Path)]); err != nil {
			return nil, nil, err
		}
	}
	return c, kv, nil
}

// PropagationPass runs the propagation pass on x = [source | uncond |
// cond] of one batch's n frames (3n latents; or 1 + 2m groups of n for m
// prompts, the group size given by len(weights)): every self-attention output
// is gathered from the pivot cache's keyframes pivots[0] and pivots[1]
// (slots in the cache) and blended with weights[i] for frame i on the
// first. It returns the predicted noise, [3n,C,h,w] for one prompt.
func (p *Model) PropagationPass(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor, inj pnp.Injection, c *tokens.PivotCache, pivots [2]int, weights []float32) (tensor.Tensor, error) {
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
		return tensor.Tensor{}, err
	}
	return hostTensor(out[models.OutSample])
}
