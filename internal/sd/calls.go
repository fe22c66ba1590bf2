package sd

import (
	"context"
	"fmt"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/video"
	"github.com/tokenflow/tokenflow/models"
)

// Latents are [N, C, h, w] float32, row-major.
type Latents struct {
	Shape [4]int64
	Data  []float32
}

// Frame returns latent i's values (a view).
func (l Latents) Frame(i int) []float32 {
	n := int(l.Shape[1] * l.Shape[2] * l.Shape[3])
	return l.Data[i*n : (i+1)*n]
}

// FrameSize is C*h*w.
func (l Latents) FrameSize() int { return int(l.Shape[1] * l.Shape[2] * l.Shape[3]) }

// Gather makes a batch of the listed frames.
func (l Latents) Gather(idx []int) Latents {
	n := l.FrameSize()
	out := Latents{Shape: [4]int64{int64(len(idx)), l.Shape[1], l.Shape[2], l.Shape[3]}, Data: make([]float32, 0, n*len(idx))}
	for _, i := range idx {
		out.Data = append(out.Data, l.Frame(i)...)
	}
	return out
}

// Range makes a batch of frames [start, end).
func (l Latents) Range(start, end int) Latents {
	n := l.FrameSize()
	return Latents{Shape: [4]int64{int64(end - start), l.Shape[1], l.Shape[2], l.Shape[3]}, Data: l.Data[start*n : end*n]}
}

func (l Latents) tensor() ort.Tensor { return ort.New(l.Shape[:], l.Data) }

// TextEmbeds are text encoder states [n, 77, C].
type TextEmbeds struct {
	N, Seq, Width int
	Data          []float32
}

// Row returns embedding i (a view).
func (e TextEmbeds) Row(i int) []float32 {
	n := e.Seq * e.Width
	return e.Data[i*n : (i+1)*n]
}

// Repeat builds a batch from rows: row i repeated counts[i] times, in order.
func (e TextEmbeds) Repeat(rows []int, counts []int) TextEmbeds {
	out := TextEmbeds{Seq: e.Seq, Width: e.Width}
	for k, r := range rows {
		for j := 0; j < counts[k]; j++ {
			out.Data = append(out.Data, e.Row(r)...)
			out.N++
		}
	}
	return out
}

func (e TextEmbeds) tensor() ort.Tensor {
	return ort.New([]int64{int64(e.N), int64(e.Seq), int64(e.Width)}, e.Data)
}

// EncodeText runs the text encoder on each prompt (one at a time, as the
// official code calls it). A prompt longer than the tokenizer's 77 tokens
// is truncated with a warning on the log.
func (p *Pipeline) EncodeText(ctx context.Context, prompts ...string) (TextEmbeds, error) {
	s, err := p.Session("text_encoder", "text_encoder",
		func(w *models.Weights) (*onnx.Graph, error) {
			return (&models.CLIPText{Config: p.TextConfig, Weights: w}).Graph()
		})
	if err != nil {
		return TextEmbeds{}, err
	}
	out := TextEmbeds{Seq: p.Tokenizer.MaxLength(), Width: p.TextConfig.HiddenSize}
	for _, prompt := range prompts {
		ids, truncated := p.Tokenizer.Encode(prompt)
		if truncated && p.opts.Log != nil {
			fmt.Fprintf(p.opts.Log, "warning: prompt %q is longer than %d tokens; the rest is ignored\n", clip(prompt, 40), p.Tokenizer.MaxLength()-2)
		}
		res, err := run(ctx, s, ort.New([]int64{1, int64(len(ids))}, ids))
		if err != nil {
			return TextEmbeds{}, fmt.Errorf("text encoder: %w", err)
		}
		out.Data = append(out.Data, res[0]...)
		out.N++
	}
	return out, nil
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "..."
}

// LatentSize is the latent grid for a frame size.
func (p *Pipeline) LatentSize(size video.Size) (h, w int64) {
	return int64(size.H / 8), int64(size.W / 8)
}

// vaeBatch is how many frames one VAE run takes. The VAE's activations at
// full resolution are large (a 512x512 frame's decoder holds several
// 128x512x512 tensors), and batching buys little on CPU, so it runs frame
// by frame: the results are the same, the memory peak a fraction.
const vaeBatch = 1

// EncodeFrames VAE-encodes frames: z0 = mean(2*frame - 1) * scaling_factor,
// frames read as uint8/255 like torchvision's ToTensor.
func (p *Pipeline) EncodeFrames(ctx context.Context, frames []video.Frame, progress func(done int)) (Latents, error) {
	if len(frames) == 0 {
		return Latents{}, fmt.Errorf("no frames to encode")
	}
	s, err := p.Session("vae_encoder", "vae",
		func(w *models.Weights) (*onnx.Graph, error) {
			return (&models.VAE{Config: p.VAEConfig, Weights: w}).EncoderGraph()
		})
	if err != nil {
		return Latents{}, err
	}
	W, H := frames[0].Width, frames[0].Height
	lat := int64(p.VAEConfig.LatentChannels)
	out := Latents{Shape: [4]int64{int64(len(frames)), lat, int64(H / 8), int64(W / 8)}}
	scale := float32(p.VAEConfig.ScalingFactor)
	batch := vaeBatch
	for start := 0; start < len(frames); start += batch {
		end := min(start+batch, len(frames))
		x := make([]float32, 0, (end-start)*3*W*H)
		for _, f := range frames[start:end] {
			x = appendCHW(x, f)
		}
		res, err := run(ctx, s, ort.New([]int64{int64(end - start), 3, int64(H), int64(W)}, x))
		if err != nil {
			return Latents{}, fmt.Errorf("vae encoder: %w", err)
		}
		for _, v := range res[0] {
			out.Data = append(out.Data, v*scale)
		}
		if progress != nil {
			progress(end)
		}
	}
	return out, nil
}

// appendCHW appends an RGB24 frame as [3,H,W] in [-1,1]: 2*(u/255) - 1.
func appendCHW(x []float32, f video.Frame) []float32 {
	n := f.Width * f.Height
	base := len(x)
	x = append(x, make([]float32, 3*n)...)
	for i := 0; i < n; i++ {
		for c := 0; c < 3; c++ {
			v := float32(f.Pix[3*i+c]) / 255
			x[base+c*n+i] = 2*v - 1
		}
	}
	return x
}

// DecodeLatents VAE-decodes latents into RGB frames:
// clamp(decoder(z / scaling_factor)/2 + 0.5, 0, 1), then uint8 by
// truncation of 255*v as torchvision's ToPILImage does.
func (p *Pipeline) DecodeLatents(ctx context.Context, z Latents, progress func(done int)) ([]video.Frame, error) {
	s, err := p.Session("vae_decoder", "vae",
		func(w *models.Weights) (*onnx.Graph, error) {
			return (&models.VAE{Config: p.VAEConfig, Weights: w}).DecoderGraph()
		})
	if err != nil {
		return nil, err
	}
	n := int(z.Shape[0])
	H, W := int(z.Shape[2])*8, int(z.Shape[3])*8
	inv := float32(1 / p.VAEConfig.ScalingFactor)
	batch := vaeBatch
	frames := make([]video.Frame, 0, n)
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		in := z.Range(start, end)
		x := make([]float32, len(in.Data))
		for i, v := range in.Data {
			x[i] = inv * v
		}
		res, err := run(ctx, s, ort.New(in.Shape[:], x))
		if err != nil {
			return nil, fmt.Errorf("vae decoder: %w", err)
		}
		for k := 0; k < end-start; k++ {
			frames = append(frames, toFrame(start+k, res[0][k*3*H*W:(k+1)*3*H*W], W, H))
		}
		if progress != nil {
			progress(end)
		}
	}
	return frames, nil
}

// toFrame converts decoder output [3,H,W] to an RGB24 frame.
func toFrame(index int, chw []float32, W, H int) video.Frame {
	n := W * H
	pix := make([]byte, 3*n)
	for i := 0; i < n; i++ {
		for c := 0; c < 3; c++ {
			v := chw[c*n+i]/2 + 0.5
			v = min(max(v, 0), 1)
			pix[3*i+c] = byte(v * 255)
		}
	}
	return video.Frame{Index: index, Width: W, Height: H, Pix: pix}
}
