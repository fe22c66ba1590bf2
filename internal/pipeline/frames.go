package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tokenflow/tokenflow/internal/progress"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/video"
)

// The VAE's activations at full resolution are large (a 512x512 frame's
// decoder holds several 128x512x512 tensors) and batching buys little on
// CPU, so the VAE runs frame by frame: the results are the same, the
// memory peak a fraction.

// Pixels converts an rgb24 frame to the VAE's input [1,3,H,W] in [-1,1]:
// 2*(u/255) - 1, as torchvision's ToTensor then the official 2x-1.
func Pixels(f video.Frame) tensor.Tensor {
	n := f.Width * f.Height
	x := tensor.Zeros(1, 3, int64(f.Height), int64(f.Width))
	for i := range n {
		for c := range 3 {
			v := float32(f.Pix[3*i+c]) / 255
			x.Data[c*n+i] = 2*v - 1
		}
	}
	return x
}

// Frame converts a decoded image [1,3,H,W] in [0,1] to an rgb24 frame,
// byte(255*v) by truncation as torchvision's ToPILImage.
func Frame(index int, img tensor.Tensor) video.Frame {
	H, W := int(img.Shape[2]), int(img.Shape[3])
	n := W * H
	pix := make([]byte, 3*n)
	for i := range n {
		for c := range 3 {
			pix[3*i+c] = byte(img.Data[c*n+i] * 255)
		}
	}
	return video.Frame{Index: index, Width: W, Height: H, Pix: pix}
}

// encodeVideo decodes the job's frames and VAE-encodes them one by one
// into z0 [N,C,h,w]; decoded frames are dropped as soon as they are
// encoded, and each frame's latents go straight into their row of z0.
func (j *job) encodeVideo(ctx context.Context) (tensor.Tensor, error) {
	bar := progress.New(j.req.Progress, "vae encode", "frames", j.rng.Count)
	defer bar.Finish()
	// The timings split the interleaved work: "vae encode" is the VAE's,
	// "decode video" the rest (ffmpeg, conversion).
	t := time.Now()
	var vae time.Duration
	defer func() {
		j.times["vae encode"] += vae
		j.times["decode video"] += time.Since(t) - vae
	}()
	var z tensor.Tensor // [N,C,h,w], made at the first frame
	n := 0
	for f, err := range video.Frames(ctx, j.info, video.DecodeOptions{Size: j.size, Range: j.rng}) {
		if err != nil {
			return tensor.Tensor{}, err
		}
		tv := time.Now()
		lat, err := j.model.EncodePixels(ctx, Pixels(f))
		vae += time.Since(tv)
		if err != nil {
			return tensor.Tensor{}, err
		}
		if bad := lat.Finite(); bad >= 0 {
			return tensor.Tensor{}, nonFinite(fmt.Errorf("the vae encoder gave %w in its latents (frame %d)", tensor.ErrNonFinite, n), "nothing was stored")
		}
		if n == 0 {
			z = tensor.Zeros(append([]int64{int64(j.rng.Count)}, lat.Shape[1:]...)...)
		}
		if n >= z.N() || !slices.Equal(lat.Shape[1:], z.Shape[1:]) {
			return tensor.Tensor{}, fmt.Errorf("vae encode: frame %d gave latents of shape %v, want [1 %v] of %d frames", n, lat.Shape, z.Shape[1:], z.N())
		}
		copy(z.Row(n).Data, lat.Data)
		n++
		bar.Set(n)
	}
	if n != j.rng.Count {
		return tensor.Tensor{}, fmt.Errorf("vae encode: the video gave %d frames, want %d", n, j.rng.Count)
	}
	return z, nil
}

// writeVideo VAE-decodes x frame by frame and encodes the frames into a
// video at path (atomically), with the source's frame rate and audio.
func (j *job) writeVideo(ctx context.Context, path string, x tensor.Tensor, overwrite bool) error {
	return j.decodeEach(ctx, x, func(enc *video.Encoder, f video.Frame) error { return enc.WriteFrame(f) }, path, overwrite)
}

// decodeEach VAE-decodes x frame by frame, hands each frame to fn with the
// encoder of path, and commits the video when all frames are written.
func (j *job) decodeEach(ctx context.Context, x tensor.Tensor, fn func(*video.Encoder, video.Frame) error, path string, overwrite bool) error {
	t := time.Now()
	fps := j.info.RangeFPS(j.rng)
	notice := func(msg string) {
		if j.req.Log != nil {
			fmt.Fprintln(j.req.Log, msg)
		}
	}
	// Times keeps a variable-frame-rate source's timing (nil when even).
	enc, err := video.NewEncoder(ctx, path, j.size, video.EncodeOptions{FPS: fps, Times: j.info.RangeTimes(j.rng),
		Audio: j.info.AudioFor(j.rng), NoClobber: !overwrite, Notice: notice})
	if err != nil {
		return err
	}
	defer enc.Abort()
	bar := progress.New(j.req.Progress, "vae decode", "frames", x.N())
	defer bar.Finish()
	// "vae decode" is the VAE's time, "write video" the rest (ffmpeg,
	// PNGs).
	var vae time.Duration
	for i := range x.N() {
		tv := time.Now()
		img, err := j.model.DecodeLatents(ctx, x.Row(i))
		vae += time.Since(tv)
		if err != nil {
			return err
		}
		// Finite latents can still decode to NaN (byte(NaN*255) is any
		// pixel): never write a frame from them.
		if img.Finite() >= 0 {
			return nonFinite(fmt.Errorf("the vae decoder gave %w in its pixels (frame %d)", tensor.ErrNonFinite, i), "nothing was written")
		}
		if err := fn(enc, Frame(i, img)); err != nil {
			return err
		}
		bar.Set(i + 1)
	}
	if err := enc.Commit(); err != nil {
		return err
	}
	j.times["vae decode"] += vae
	j.times["write video"] += time.Since(t) - vae
	return nil
}

// nonFinite completes a NaN/Inf error (tensor.ErrNonFinite) with what was
// kept and what to do: sd runs every graph in float32, so "use fp32", the
// usual advice for fp16 overflow, does not apply; broken weights are the
// likely cause. Other errors are returned as they are.
func nonFinite(err error, kept string) error {
	if !errors.Is(err, tensor.ErrNonFinite) {
		return err
	}
	return fmt.Errorf("%w: %s; the model already runs in float32, so this is not an fp16 overflow: its weights may be broken (try it freshly downloaded, or another model)", err, kept)
}
