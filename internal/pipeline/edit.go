package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
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
	Output      string // the edited video (with several prompts, the first's; see Prompts)
	Inversion   InvertResult
	Frames      int
	Size        video.Size
	FPS         video.Rational
	Latents     string // --save-latents' file, when asked for
	FramesDir   string // the PNG folder, when asked for
	UNetFrames  int64  // UNet frame evaluations this call made (inversion included)
	Timings     Timings
	KeyframeSet string // the keyframe policy used
	// Prompts is each prompt's outputs, or why it has none, in order (one
	// entry for one prompt).
	Prompts []PromptResult
	// PromptsPerCall is how many prompts shared a UNet call.
	PromptsPerCall int
	// ResumedSteps is the steps an interrupted run of this edit had done,
	// which this one continued (0: it started from the first).
	ResumedSteps int
	// KeyframeRule is which keyframe pass the steps used (KeyframeRule).
	KeyframeRule KeyframeRule
}

// KeyframeRule says which keyframe pass an edit's steps use: the
// official one (all K keyframes in one pass) when K <= W or W = 0, else
// the windowed one (edit.Window): A anchors, the others in chunks of at
// most W - A.
type KeyframeRule struct {
	Windowed bool
	K        int // keyframes per step: one per batch
	W        int // the window (0: none)
	A        int // anchors (windowed only)
	Chunk    int // the most keyframes of a chunk pass (windowed only)
	// PeakPivots is the most keyframes' pivots held at once (windowed).
	PeakPivots int
}

func (r KeyframeRule) String() string {
	if !r.Windowed {
		if r.W == 0 {
			return fmt.Sprintf("official (K=%d keyframes in one pass, no window)", r.K)
		}
		return fmt.Sprintf("official (K=%d keyframes in one pass, K <= W=%d)", r.K, r.W)
	}
	return fmt.Sprintf("windowed (K=%d keyframes > W=%d: A=%d anchors, then chunks of at most %d attending to them)", r.K, r.W, r.A, r.Chunk)
}

// PromptResult is one prompt's outputs (Target), or why it has none.
type PromptResult struct {
	Target
	Err error // nil when its outputs are written
}

// PromptsError is an edit of several prompts some of which failed: theirs
// are not written, the other prompts' outputs are.
type PromptsError struct {
	Failed []PromptResult // the prompts that failed, each with its Err
	Number []int          // their positions among the edit's prompts, from 1
	N      int            // the edit's prompts
}

func (e *PromptsError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		parts[i] = fmt.Sprintf("prompt %d (%q): %v", e.Number[i], shortPrompt(f.Prompt), f.Err)
	}
	return fmt.Sprintf("%d of %d prompts failed, the others' outputs are written: %s", len(e.Failed), e.N, strings.Join(parts, "; "))
}

func (e *PromptsError) Unwrap() []error {
	errs := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		errs[i] = f.Err
	}
	return errs
}

// shortPrompt cuts a prompt to 40 runes for a message.
func shortPrompt(p string) string {
	if r := []rune(p); len(r) > 40 {
		return string(r[:40]) + "..."
	}
	return p
}

// Edit runs a TokenFlow edit: the inversion (cached or computed), the
// edit, decoding and writing. The outputs appear only when complete.
//
// Several prompts (EditRequest.Prompts) are edited in one run from the one
// inversion, the model opened and the video decoded once, the source
// branch evaluated once per pass for all of them; each prompt's latents
// are those of its own run. A prompt that fails (NaN) leaves the others
// to finish: Edit then returns the result and a *PromptsError naming it.
func Edit(ctx context.Context, req EditRequest) (*EditResult, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	targets, err := req.Targets()
	if err != nil {
		return nil, err
	}
	P := len(targets)
	// The outputs' temporary names are made now, so that an unwritable
	// folder is said before any work; each prompt's become its outputs
	// together, once its video is complete.
	outs := make([]*outputs, P)
	defer func() {
		for _, o := range outs {
			if o != nil {
				o.abort()
			}
		}
	}()
	for i, t := range targets {
		if outs[i], err = stageOutputs(t, req.Overwrite); err != nil {
			return nil, err
		}
	}
	j, err := open(ctx, &req.InvertRequest, true)
	if err != nil {
		return nil, err
	}
	defer j.close()
	j.prompts, j.perCall, j.window = P, req.PromptsPerCall, req.KeyframeWindow
	if req.SDEdit != nil {
		j.editSteps = req.Steps - edit.FirstKept(req.SDEdit.Start, req.Steps)
	}

	// 1. the inversion, cached or computed
	entry, reused, err := j.inversion(ctx, true)
	if err != nil {
		return nil, err
	}
	// The edit reads the entry's latents one timestep at a time from the
	// file opened now, which stays readable even if another run replaces
	// the entry: other runs may use the entry.
	inv, err := entry.Open()
	if err != nil {
		return nil, err
	}
	defer inv.Close()
	j.lock.Release()

	res := &EditResult{Output: targets[0].Out, Frames: j.rng.Count, Size: j.size, FPS: j.info.RangeFPS(j.rng), KeyframeSet: req.Keyframes.String(),
		Inversion:      InvertResult{CacheDir: entry.Dir, Reused: reused, Frames: j.rng.Count, Size: j.size, Kept: entry.Manifest.Kept, DType: req.GraphDType()},
		PromptsPerCall: j.perCall}

	// 2. the edit
	t, w := time.Now(), j.model.SessionWait()
	// [inversion prompt | negative, once or per prompt | prompts]
	texts := []string{req.InversionPrompt}
	negs := 1
	if len(req.NegativePrompts) > 0 {
		negs = P
		for _, tg := range targets {
			texts = append(texts, tg.NegativePrompt)
		}
	} else {
		texts = append(texts, req.NegativePrompt)
	}
	for _, tg := range targets {
		texts = append(texts, tg.Prompt)
	}
	states, err := j.model.EncodeText(ctx, texts...)
	if err != nil {
		return nil, err
	}
	// Every prompt is encoded: free the text encoder's memory for the UNet.
	j.model.Release("text_encoder")
	var bar progress.StepReporter // made once the edit knows its work
	params := edit.Params{Steps: req.Steps, Guidance: req.Guidance, PnPAttn: req.PnPAttn, PnPConv: req.PnPConv,
		BatchSize: req.BatchSize, Keyframes: req.Keyframes, Seed: req.Seed, PromptsPerCall: j.perCall, SDEdit: req.SDEdit,
		KeyframeWindow: req.KeyframeWindow,
		Progress:       func(done, _ int) { bar.Set(done) }}
	e, err := edit.New(j.model, j.model.Scheduler, edit.Inputs{
		Inversion: inv, Source: states.Row(0), Negative: states.Rows(1, 1+negs), Prompt: states.Rows(1+negs, 1+negs+P),
	}, params)
	if err != nil {
		return nil, err
	}
	rule := KeyframeRule{K: len(e.Keyframes(0)), W: req.KeyframeWindow}
	if w := e.Window(0); w.Windowed() {
		rule.Windowed, rule.A, rule.Chunk = true, len(w.Anchors), len(w.Chunks[0])
	}
	res.KeyframeRule = rule
	if req.Log != nil {
		fmt.Fprintf(req.Log, "keyframe pass: %s\n", rule)
	}
	// An interrupted run of this edit left its state: continue from it.
	state := j.newEditState(&req, targets, entry)
	from := state.prepare(e, inv.Shape(), P, req.NoResume)
	if from == nil {
		x, err := e.Start(ctx)
		if err != nil {
			return nil, err
		}
		from = &edit.State{Xs: make([]tensor.Tensor, P), Errs: make([]error, P)}
		for p := range from.Xs {
			from.Xs[p] = x
		}
	}
	res.ResumedSteps = from.Step
	perStep := e.Total() / e.Steps()
	bar = progress.NewSteps(req.Progress, "edit", "frame-passes", e.Total(), e.Steps(), from.Step, from.Step*perStep)
	xs, errs, err := e.RunFrom(ctx, *from, func(s edit.State) error {
		state.save(e, s)
		bar.StepDone(s.Step, s.Step*perStep)
		return nil
	})
	bar.Finish()
	res.KeyframeRule.PeakPivots = e.PeakPivots
	if err == nil && P == 1 && errs[0] != nil {
		state.remove() // the edit is over: its one prompt failed
		err = errs[0]
	}
	if err != nil {
		return nil, nonFinite(err, "nothing was written")
	}
	j.times["edit"] = j.since(t, w)
	j.times["edit keyframe passes"] = e.KeyframeTime - (j.model.SessionWait() - w) // a reused inversion's first pass may wait for the UNet
	j.times["edit propagation passes"] = e.PropagateTime
	// Every step checked its latents (tensor.CheckFinite): the xs of the
	// prompts without an error are finite.

	// 3. decode and write each prompt's outputs, each under its temporary
	// name; 4. they appear together, or none of them
	perr := &PromptsError{N: P}
	writeFailed := false // an output of a finished prompt could not be written: its state stays
	for i, tg := range targets {
		err := errs[i]
		if err == nil {
			err = j.writeOutputs(ctx, outs[i], xs[i])
		}
		outs[i].abort()
		outs[i] = nil
		switch {
		case err == nil:
		case P == 1 || ctx.Err() != nil:
			return nil, err
		default:
			if errs[i] != nil {
				err = fmt.Errorf("%w: nothing was written for it", err)
			} else {
				writeFailed = true
			}
			perr.Failed = append(perr.Failed, PromptResult{Target: tg, Err: err})
			perr.Number = append(perr.Number, i+1)
		}
		res.Prompts = append(res.Prompts, PromptResult{Target: tg, Err: err})
	}
	// Every output is written (or its prompt failed): the edit is done.
	if !writeFailed {
		state.remove()
	}
	res.Latents, res.FramesDir = targets[0].SaveLatents, targets[0].FramesDir
	res.UNetFrames = j.model.UNetFrames() - j.unet0
	res.Timings = j.finish()
	if len(perr.Failed) > 0 {
		return res, perr
	}
	return res, nil
}

// writeOutputs decodes and writes one prompt's latents x into its outputs
// out, and commits them.
func (j *job) writeOutputs(ctx context.Context, out *outputs, x tensor.Tensor) error {
	if out.latents != nil {
		if err := writeLatents(out.latents, x); err != nil {
			return err
		}
	}
	write := func(enc *video.Encoder, f video.Frame) error {
		if out.frames != nil {
			if err := video.WritePNG(filepath.Join(out.frames.Name(), video.FrameFileName(f.Index)), f); err != nil {
				return err
			}
		}
		return enc.WriteFrame(f)
	}
	if err := j.decodeEach(ctx, x, write, out.videoTmp, true); err != nil {
		return out.unstage(err)
	}
	return out.commit()
}

// outputs are an edit's outputs while they are written: each under a
// temporary name of atomicfile's next to its final path, claimed by this
// process (atomicfile.Claim), so that the next run writing there sweeps
// them if this one is killed.
type outputs struct {
	t         Target
	overwrite bool
	video     *atomicfile.Dir  // a folder next to Out; the encoder writes videoTmp inside it
	videoTmp  string           // the finished video, before it moves to Out
	latents   *atomicfile.File // SaveLatents' temporary file, or nil
	frames    *atomicfile.Dir  // FramesDir's temporary folder, or nil
	release   []func()
}

// stageOutputs sweeps what killed runs left next to the request's outputs
// and makes their temporary names.
func stageOutputs(req Target, overwrite bool) (o *outputs, err error) {
	o = &outputs{t: req, overwrite: overwrite}
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
		if o.latents, err = atomicfile.Create(req.SaveLatents, 0o666, false); err != nil {
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
	msg := strings.ReplaceAll(err.Error(), o.videoTmp, o.t.Out)
	if o.frames != nil {
		msg = strings.ReplaceAll(msg, o.frames.Name(), o.t.FramesDir)
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
	r := o.t
	var placed []string // new paths, removed again on failure
	undo := func() {
		for _, p := range placed {
			os.RemoveAll(p)
		}
	}
	if o.latents != nil {
		isNew := !exists(r.SaveLatents)
		if err := atomicfile.Rename(o.latents.Name(), r.SaveLatents, !o.overwrite); err != nil {
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
	if err := atomicfile.Rename(o.videoTmp, r.Out, !o.overwrite); err != nil {
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
	r := o.t
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
		if err := atomicfile.Rename(filepath.Join(o.frames.Name(), e.Name()), dst, !o.overwrite); err != nil {
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
// flushed to disk; the file moves to its final name at commit. The data
// is converted 1 MiB at a time, not as a copy of x.
func writeLatents(f *atomicfile.File, x tensor.Tensor) error {
	hdr, err := safetensors.Header([]safetensors.Spec{{Name: "latents", DType: safetensors.F32, Shape: x.Shape}}, nil)
	if err != nil {
		return writeErr(f.Path(), err)
	}
	if _, err := f.Write(hdr); err != nil {
		return writeErr(f.Path(), err)
	}
	buf := make([]byte, 1<<20)
	for v := x.Data; len(v) > 0; {
		k := min(len(v), len(buf)/4)
		for i, e := range v[:k] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(e))
		}
		if _, err := f.Write(buf[:4*k]); err != nil {
			return writeErr(f.Path(), err)
		}
		v = v[k:]
	}
	if err := atomicfile.Sync(f.Name()); err != nil {
		return writeErr(f.Path(), err)
	}
	return nil
}
