package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
		req.Out = DefaultOut(req.Input)
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	// The outputs' temporary names are made now, so that an unwritable
	// folder is said before any work; they become the outputs together,
	// once the video is complete.
	out, err := stageOutputs(&req)
	if err != nil {
		return nil, err
	}
	defer out.abort()
	j, err := open(ctx, &req.InvertRequest)
	if err != nil {
		return nil, err
	}
	defer j.close()
	if req.SDEdit != nil {
		j.editSteps = req.Steps - edit.FirstKept(req.SDEdit.Start, req.Steps)
	}

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
		BatchSize: req.BatchSize, Keyframes: req.Keyframes, Seed: req.Seed, SDEdit: req.SDEdit,
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
	// Every step checked its latents (tensor.CheckFinite): x is finite.

	// 3. decode and write, each output under its temporary name
	if out.latents != nil {
		if err := writeLatents(out.latents, x); err != nil {
			return nil, err
		}
	}
	write := func(enc *video.Encoder, f video.Frame) error {
		if out.frames != nil {
			if err := video.WritePNG(filepath.Join(out.frames.Name(), video.FrameFileName(f.Index)), f, video.PNGOptions{}); err != nil {
				return err
			}
		}
		return enc.WriteFrame(f)
	}
	if err := j.decodeEach(ctx, x, write, out.videoTmp, true); err != nil {
		return nil, out.unstage(err)
	}
	// 4. all outputs appear, or none
	if err := out.commit(); err != nil {
		return nil, err
	}
	res.Latents, res.FramesDir = req.SaveLatents, req.FramesDir
	res.UNetFrames = j.model.UNetFrames() - j.unet0
	res.Timings = j.finish()
	return res, nil
}

// outputs are an edit's outputs while they are written: each under a
// temporary name of atomicfile's next to its final path, claimed by this
// process (atomicfile.Claim), so that the next run writing there sweeps
// them if this one is killed.
type outputs struct {
	req      *EditRequest
	video    *atomicfile.Dir  // a folder next to Out; the encoder writes videoTmp inside it
	videoTmp string           // the finished video, before it moves to Out
	latents  *atomicfile.File // SaveLatents' temporary file, or nil
	frames   *atomicfile.Dir  // FramesDir's temporary folder, or nil
	release  []func()
}

// stageOutputs sweeps what killed runs left next to the request's outputs
// and makes their temporary names.
func stageOutputs(req *EditRequest) (o *outputs, err error) {
	o = &outputs{req: req}
	defer func() {
		if err != nil {
			o.abort()
		}
	}()
	for _, p := range []string{req.Out, req.SaveLatents, req.FramesDir} {
		if p != "" {
			atomicfile.Sweep(p)
		}
	}
	if o.video, err = atomicfile.CreateDir(req.Out); err != nil {
		return nil, stageErr("out", req.Out, err)
	}
	if err := o.claim(o.video.Name()); err != nil {
		return nil, stageErr("out", req.Out, err)
	}
	// The same base name, so that the encoder picks the same format.
	o.videoTmp = filepath.Join(o.video.Name(), filepath.Base(req.Out))
	if req.SaveLatents != "" {
		if o.latents, err = atomicfile.Create(req.SaveLatents); err != nil {
			return nil, stageErr("save_latents", req.SaveLatents, err)
		}
		if err := o.claim(o.latents.Name()); err != nil {
			return nil, stageErr("save_latents", req.SaveLatents, err)
		}
	}
	if req.FramesDir != "" {
		if o.frames, err = atomicfile.CreateDir(req.FramesDir); err != nil {
			return nil, stageErr("frames_dir", req.FramesDir, err)
		}
		if err := o.claim(o.frames.Name()); err != nil {
			return nil, stageErr("frames_dir", req.FramesDir, err)
		}
	}
	return o, nil
}

// stageErr is the failure to make an output's temporary name, before any
// work: a setting error naming the output.
func stageErr(name, path string, err error) error {
	reason := err.Error()
	var ae *atomicfile.Error
	if errors.As(err, &ae) {
		reason = ae.Msg
	}
	return &param.Error{Name: name, Value: path, Reason: reason, Err: err}
}

// writeErr is a failure to write an output after the work: one line
// naming the file and the system's reason ("file too large", "no space
// left on device"), without the temporary name.
func writeErr(path string, err error) error {
	return fmt.Errorf("write %s: %w", path, atomicfile.Cause(err))
}

// unstage is err with the outputs' temporary names replaced by their
// final paths: the user knows the paths they gave, not ours.
func (o *outputs) unstage(err error) error {
	msg := strings.ReplaceAll(err.Error(), o.videoTmp, o.req.Out)
	if o.frames != nil {
		msg = strings.ReplaceAll(msg, o.frames.Name(), o.req.FramesDir)
	}
	if msg == err.Error() {
		return err
	}
	return &unstagedError{msg, err}
}

type unstagedError struct {
	msg string
	err error
}

func (e *unstagedError) Error() string { return e.msg }
func (e *unstagedError) Unwrap() error { return e.err }

func (o *outputs) claim(tmp string) error {
	release, err := atomicfile.Claim(tmp)
	if err != nil {
		return err
	}
	o.release = append(o.release, release)
	return nil
}

// commit moves every finished output to its final path: the latents, the
// frames, the video last. If one cannot move, those already moved that
// replaced nothing are removed again, so the outputs appear together or
// not at all (a replaced file is not brought back: --force said it may go).
func (o *outputs) commit() error {
	r := o.req
	var placed []string // new paths, removed again on failure
	undo := func() {
		for _, p := range placed {
			os.RemoveAll(p)
		}
	}
	if o.latents != nil {
		isNew := !exists(r.SaveLatents)
		if err := atomicfile.Rename(o.latents.Name(), r.SaveLatents, !r.Overwrite); err != nil {
			return err
		}
		if isNew {
			placed = append(placed, r.SaveLatents)
		}
	}
	if o.frames != nil {
		moved, err := o.commitFrames()
		placed = append(placed, moved...)
		if err != nil {
			undo()
			return err
		}
	}
	if err := atomicfile.Rename(o.videoTmp, r.Out, !r.Overwrite); err != nil {
		undo()
		return err
	}
	o.abort() // the temporary names are empty or gone: remove them
	return nil
}

// commitFrames moves the PNG folder into place: by one rename when
// FramesDir does not exist or is empty, else file by file into it. It
// returns the paths it made.
func (o *outputs) commitFrames() ([]string, error) {
	r := o.req
	ents, err := os.ReadDir(r.FramesDir)
	if len(ents) == 0 {
		isNew := err != nil
		if err := o.frames.Commit(); err != nil {
			return nil, err
		}
		if isNew {
			return []string{r.FramesDir}, nil
		}
		return nil, nil
	}
	pngs, err := os.ReadDir(o.frames.Name())
	if err != nil {
		return nil, err
	}
	var placed []string
	for _, e := range pngs {
		dst := filepath.Join(r.FramesDir, e.Name())
		isNew := !exists(dst)
		if err := atomicfile.Rename(filepath.Join(o.frames.Name(), e.Name()), dst, !r.Overwrite); err != nil {
			return placed, err
		}
		if isNew {
			placed = append(placed, dst)
		}
	}
	return placed, nil
}

// abort removes whatever temporary names are left, and drops the claims.
func (o *outputs) abort() {
	if o.latents != nil {
		o.latents.Abort()
	}
	if o.frames != nil {
		o.frames.Abort()
	}
	if o.video != nil {
		o.video.Abort()
	}
	for _, release := range o.release {
		release()
	}
	o.release = nil
}

// writeLatents writes x into f as a safetensors file holding "latents",
// flushed to disk; the file moves to its final name at commit.
func writeLatents(f *atomicfile.File, x tensor.Tensor) error {
	if err := safetensors.Write(f, []safetensors.Tensor{safetensors.FromFloat32("latents", x.Shape, x.Data)}, nil); err != nil {
		return writeErr(f.Path(), err)
	}
	if err := atomicfile.Sync(f.Name()); err != nil {
		return writeErr(f.Path(), err)
	}
	return nil
}
