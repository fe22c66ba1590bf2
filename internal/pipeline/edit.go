package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/progress"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/video"
)

// EditResult is what Edit did.
type EditResult struct {
	Output      string // the edited video
	Inversion   InvertResult
	Frames      int
	Size        video.Size
	FPS         video.Rational
	Latents     string // --save-latents' file, when asked for
	FramesDir   string // the PNG folder, when asked for
	UNetFrames  int64  // UNet frame evaluations this call made (inversion included)
	Timings     Timings
	KeyframeSet string // the keyframe policy used
}

// Edit runs a TokenFlow edit: the inversion (cached or computed), the
// edit, decoding and writing. The output appears only when complete.
func Edit(ctx context.Context, req EditRequest) (*EditResult, error) {
	if req.Out == "" {
		req.Out = defaultOut(req.Input)
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	j, err := open(ctx, &req.InvertRequest)
	if err != nil {
		return nil, err
	}
	defer j.close()

	// 1. the inversion, cached or computed
	entry, lat, reused, err := j.inversion(ctx, true)
	if err != nil {
		return nil, err
	}
	j.lock.Release() // the latents are in memory: other runs may use the entry

	res := &EditResult{Output: req.Out, Frames: j.rng.Count, Size: j.size, FPS: j.info.RangeFPS(j.rng), KeyframeSet: req.Keyframes.String(),
		Inversion: InvertResult{CacheDir: entry.Dir, Reused: reused, Frames: j.rng.Count, Size: j.size, Kept: entry.Manifest.Kept}}

	// 2. the edit
	t := time.Now()
	texts, err := j.model.EncodeText(ctx, req.InversionPrompt, req.NegativePrompt, req.Prompt)
	if err != nil {
		return nil, err
	}
	// Every prompt is encoded: free the text encoder's memory for the UNet.
	j.model.Release("text_encoder")
	var bar progress.Reporter // made at the first report, when the total is known
	params := edit.Params{Steps: req.Steps, Guidance: req.Guidance, PnPAttn: req.PnPAttn, PnPConv: req.PnPConv,
		BatchSize: req.BatchSize, Keyframes: req.Keyframes, Seed: req.Seed,
		Progress: func(done, total int) {
			if bar == nil {
				bar = progress.New(req.Progress, "edit", "frame-passes", total)
			}
			bar.Set(done)
		}}
	e, err := edit.New(j.model, j.model.Scheduler, edit.Inputs{
		Z0: lat.Z0, Noisy: lat.Noisy, Source: texts.Row(0), Negative: texts.Row(1), Prompt: texts.Row(2),
	}, params)
	if err != nil {
		return nil, err
	}
	x, err := e.Run(ctx)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return nil, nonFinite(err, "nothing was written")
	}
	j.times["edit"] = time.Since(t)
	j.times["edit keyframe passes"] = e.KeyframeTime
	j.times["edit propagation passes"] = e.PropagateTime
	if bad := x.Finite(); bad >= 0 {
		return nil, fmt.Errorf("the edit gave a NaN or infinite latent (frame %d): nothing was written", bad/x.RowSize())
	}

	// 3. decode and write
	if req.SaveLatents != "" {
		if err := saveLatents(req.SaveLatents, x, req.Overwrite); err != nil {
			return nil, err
		}
		res.Latents = req.SaveLatents
	}
	if req.FramesDir != "" {
		if err := os.MkdirAll(req.FramesDir, 0o755); err != nil {
			return nil, param.Errorf("frames_dir", req.FramesDir, "%w", err)
		}
		res.FramesDir = req.FramesDir
	}
	write := func(enc *video.Encoder, f video.Frame) error {
		if req.FramesDir != "" {
			if err := video.WritePNG(filepath.Join(req.FramesDir, video.FrameFileName(f.Index)), f, video.PNGOptions{NoClobber: !req.Overwrite}); err != nil {
				return err
			}
		}
		return enc.WriteFrame(f)
	}
	if err := j.decodeEach(ctx, x, write, req.Out, req.Overwrite); err != nil {
		return nil, err
	}
	res.UNetFrames = j.model.UNetFrames() - j.unet0
	res.Timings = j.finish()
	return res, nil
}

// saveLatents writes x as a safetensors file holding "latents".
func saveLatents(path string, x tensor.Tensor, overwrite bool) error {
	var opts []atomicfile.Option
	if !overwrite {
		opts = append(opts, atomicfile.NoClobber())
	}
	f, err := atomicfile.Create(path, opts...)
	if err != nil {
		return param.Errorf("save_latents", path, "%w", err)
	}
	defer f.Abort()
	if err := safetensors.Write(f, []safetensors.Tensor{safetensors.FromFloat32("latents", x.Shape, x.Data)}, nil); err != nil {
		return param.Errorf("save_latents", path, "%w", err)
	}
	if err := f.Commit(); err != nil {
		return param.Errorf("save_latents", path, "%w", err)
	}
	return nil
}
