package sd

import (
	"context"
	"fmt"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/models"
)

func (p *Model) textSession() (*ort.Session, error) {
	return p.Session("text_encoder", "text_encoder", p.buildText)
}

func (p *Model) buildText(w *models.Weights) (*onnx.Graph, error) {
	return (&models.CLIPText{Config: p.TextConfig, Weights: w}).Graph()
}

// EncodeText runs the text encoder on each prompt (one at a time, as the
// official code calls it) and returns their states [len(prompts),77,C]. A
// prompt longer than the tokenizer's 77 tokens is truncated with a warning
// on the log. A prompt encoded before by this Model (the inversion prompt,
// which the inversion and then the edit need) is not encoded again: each
// prompt runs alone, so its states do not depend on the call.
func (p *Model) EncodeText(ctx context.Context, prompts ...string) (tensor.Tensor, error) {
	seq, width := int64(p.Tokenizer.MaxLength()), int64(p.TextConfig.HiddenSize)
	out := tensor.Zeros(int64(len(prompts)), seq, width)
	for i, prompt := range prompts {
		states, err := p.textStates(ctx, prompt)
		if err != nil {
			return tensor.Tensor{}, err
		}
		copy(out.Row(i).Data, states)
	}
	return out, nil
}

// textStates is one prompt's text encoder states, remembered for the run.
func (p *Model) textStates(ctx context.Context, prompt string) ([]float32, error) {
	p.mu.Lock()
	states, ok := p.texts[prompt]
	p.mu.Unlock()
	if ok {
		return states, nil
	}
	s, err := p.textSession()
	if err != nil {
		return nil, err
	}
	ids, truncated := p.Tokenizer.Encode(prompt)
	if truncated && p.opts.Log != nil {
		fmt.Fprintf(p.opts.Log, "warning: prompt %q is longer than %d tokens; the rest is ignored\n", shorten(prompt, 40), p.Tokenizer.MaxLength()-2)
	}
	res, err := run(ctx, s, ort.New([]int64{1, int64(len(ids))}, ids))
	if err != nil {
		return nil, fmt.Errorf("text encoder: %w", err)
	}
	p.mu.Lock()
	p.texts[prompt] = res[0]
	p.mu.Unlock()
	return res[0], nil
}

// shorten cuts s to n runes, marking the cut with "...".
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "..."
}

// vaeSession is the session of one of the VAE's graphs (its encoder's or
// its decoder's).
func (p *Model) vaeSession(name string, graph func(*models.VAE) (*onnx.Graph, error)) (*ort.Session, error) {
	return p.Session(name, "vae", func(w *models.Weights) (*onnx.Graph, error) {
		return graph(&models.VAE{Config: p.VAEConfig, Weights: w})
	})
}

// EncodePixels VAE-encodes images [N,3,H,W] with values in [-1,1] (the
// caller maps pixels u to 2*u/255 - 1, as torchvision's ToTensor then the
// official 2x-1 do) into latents [N,C,H/8,W/8]: the posterior mean times
// scaling_factor.
func (p *Model) EncodePixels(ctx context.Context, x tensor.Tensor) (tensor.Tensor, error) {
	s, err := p.vaeSession("vae_encoder", (*models.VAE).EncoderGraph)
	if err != nil {
		return tensor.Tensor{}, err
	}
	res, err := run(ctx, s, ort.New(x.Shape, x.Data))
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("vae encoder: %w", err)
	}
	scale := float32(p.VAEConfig.ScalingFactor)
	for i, v := range res[0] {
		res[0][i] = v * scale
	}
	lat := int64(p.VAEConfig.LatentChannels)
	return tensor.New([]int64{x.Shape[0], lat, x.Shape[2] / 8, x.Shape[3] / 8}, res[0])
}

// DecodeLatents VAE-decodes latents [N,C,h,w] into images [N,3,8h,8w] with
// values in [0,1]: clamp(decoder(z / scaling_factor)/2 + 0.5, 0, 1), as
// the official decode_latents.
func (p *Model) DecodeLatents(ctx context.Context, z tensor.Tensor) (tensor.Tensor, error) {
	s, err := p.vaeSession("vae_decoder", (*models.VAE).DecoderGraph)
	if err != nil {
		return tensor.Tensor{}, err
	}
	inv := float32(1 / p.VAEConfig.ScalingFactor)
	x := make([]float32, len(z.Data))
	for i, v := range z.Data {
		x[i] = inv * v
	}
	res, err := run(ctx, s, ort.New(z.Shape, x))
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("vae decoder: %w", err)
	}
	for i, v := range res[0] {
		res[0][i] = min(max(v/2+0.5, 0), 1)
	}
	return tensor.New([]int64{z.Shape[0], 3, z.Shape[2] * 8, z.Shape[3] * 8}, res[0])
}
