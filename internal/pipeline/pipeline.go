// Package pipeline is tokenflow as a library call: Invert and Edit take a
// request, do the whole job (probe, hash, decode, VAE-encode, invert or
// reuse the cached inversion, edit, VAE-decode, write) and return what was
// done. The command line, the tests and Go programs all call it; it knows
// nothing of flags. Settings are checked once, here, before any work;
// errors about a setting are *param.Error named by the request's fields.
package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokenflow/tokenflow/internal/cache"
	"github.com/tokenflow/tokenflow/internal/inversion"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/progress"
	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/version"
	"github.com/tokenflow/tokenflow/internal/video"
)

// Timings are the time spent per phase, named as the progress lines name
// them: "probe+hash", "decode video", "vae encode", "inversion",
// "reconstruction", "edit" (of which "edit keyframe passes" and "edit
// propagation passes"), "vae decode", "write video"; and "session
// creation" (the time the run waited for sessions being made), "session
// creation (all)" and "session creation: <component>" (the time they took
// to make, mostly overlapping other work), "in onnxruntime" and "total".
// "reconstruction" includes its own vae decode and write video.
type Timings map[string]time.Duration

// InvertResult is what Invert did.
type InvertResult struct {
	CacheDir       string // the cache entry's folder
	Reused         bool   // the entry was in the cache
	Frames         int
	Size           video.Size
	Kept           []int    // the kept timesteps, ascending
	DType          sd.DType // the graphs' element type
	Reconstruction string   // reconstruction.mp4, when asked for
	UNetFrames     int64    // UNet frame evaluations this call made
	Timings        Timings
}

// job is one request's opened model, source and cache key.
type job struct {
	req    *InvertRequest
	model  *sd.Model
	info   video.Info
	rng    video.Range // resolved
	size   video.Size
	key    cache.Key
	root   string
	lock   *cache.Lock // the entry's, while held
	walk   int         // timesteps the inversion visits
	times  Timings
	start  time.Time
	unet0  int64
	ortRun time.Duration
	ortNew time.Duration
	wait0  time.Duration // the model's SessionWait at open
	// An edit's prompts, and how many share a UNet call (0 until memory
	// chooses, when the request leaves it to the estimate).
	prompts, perCall int
	window           int // the edit's keyframe window (EditRequest.KeyframeWindow)

	// invBatch is the inversion's frames per UNet call (memory sets it).
	invBatch int

	// editSteps is the steps the edit runs when not all of req.Steps
	// (SDEdit); 0 for all.
	editSteps int
	// from is the inversion steps a resumed inversion had done.
	from int
}

// open loads ONNX Runtime and the model, checks the schedule against the
// scheduler, probes and hashes the source, makes sure the cache can be
// written, and identifies the model: everything before the first real work.
// An edit (edit true), which always runs the UNet, starts making the UNet's
// session once the checks have passed, while the model's identity is read.
func open(ctx context.Context, r *InvertRequest, edit bool) (_ *job, err error) {
	j := &job{req: r, times: Timings{}, start: time.Now()}
	j.ortRun, _ = ort.Stats()
	j.ortNew = ort.CreateTime()
	root, err := cache.Root(r.CacheDir)
	if err != nil {
		return nil, err
	}
	j.root = root
	// With CUDA, this also probes the provider and its libraries: a missing
	// one is said now, before any work.
	if err := ort.InitDevice(r.ORTLib, r.Device); err != nil {
		return nil, err
	}
	m, err := sd.Open(sd.Options{Model: r.Model, OriginalConfig: r.OriginalConfig, Device: r.Device, DType: r.GraphDType(), Threads: r.Threads, Log: r.Log, CacheRoot: root})
	if err != nil {
		return nil, err
	}
	j.model, j.unet0 = m, m.UNetFrames()
	j.wait0 = m.SessionWait()
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	// Noise (SD 1.x, SD 2.x-base) and v (SD 2.x 768) prediction are
	// converted to noise where the inversion and the edit need it; no Stable
	// Diffusion checkpoint predicts the sample itself, and that path is
	// not exercised end to end, so it is refused.
	if p := m.Scheduler.Config().PredictionType; p == "sample" {
		return nil, param.Errorf("model", r.Model, "predicts the sample itself (its scheduler's prediction_type is %s): only epsilon and v_prediction models are supported", p)
	}
	if err := j.plan(); err != nil {
		return nil, err
	}
	if err := j.probe(ctx); err != nil {
		return nil, err
	}
	// The cache must be writable before any work is done for it.
	if err := cache.Prepare(root); err != nil {
		return nil, err
	}
	if edit {
		m.Prepare()
	}
	// Last, once every check has passed: the model's identity reads its
	// weight files the first time (then remembered in the cache folder).
	t := time.Now()
	if j.key.ModelID, err = m.Identify(); err != nil {
		return nil, err
	}
	j.times["model identity"] = time.Since(t)
	return j, nil
}

// memory estimates the run's peak and checks it against the machine.
func (j *job) memory(forEdit bool) error {
	weights, err := j.model.WeightBytes()
	if err != nil {
		return err
	}
	layers := j.model.UNetConfig.SelfAttentionLayers()
	heads := 1
	if len(layers) > 0 {
		heads = int(layers[0].Heads)
	}
	// The latents of all frames held at once (the cache streams the rest):
	// the inversion's z; the edit's latents and next latents of each prompt
	// of a call, and the step's source latents.
	resident := 1
	if forEdit {
		resident = 1 + 2*max(j.prompts, 1)
	}
	act := int64(4)
	if j.req.GraphDType() == sd.FP16 {
		act = 2 // activations in fp16 (attention scores stay float32)
	}
	est := func(perCall int) Memory {
		return estimate(weights, heads, j.rng.Count, resident, j.req.BatchSize, j.size.H/8, j.size.W/8, act, forEdit, perCall, j.window)
	}
	if forEdit {
		j.perCall = choosePerCall(j.prompts, j.perCall, est)
	}
	m := est(max(j.perCall, 1))
	// The inversion's batch: asked, or the edit's batch size. Larger
	// batches ran no faster per frame and raised the peak (the arena keeps
	// the plain passes' larger activations): docs/performance.md.
	invPass := func(b int) int64 {
		return estimate(weights, heads, j.rng.Count, resident, b, j.size.H/8, j.size.W/8, act, false, 1, 0).Pass
	}
	j.invBatch = cmp.Or(j.req.InversionBatch, j.req.BatchSize)
	m.Pass = max(m.Pass, invPass(j.invBatch))
	return j.checkMemory(m)
}

func (j *job) close() {
	j.lock.Release()
	j.model.Close()
}

// plan lays out the inversion, saying on the log when its grid had to be
// joined with the edit's.
func (j *job) plan() error {
	r := j.req
	s := j.model.Scheduler
	plan, err := s.PlanInversion(r.InversionSteps, r.Steps)
	switch {
	case errors.Is(err, scheduler.ErrTimestep) && r.InversionSteps > s.MaxSteps():
		return param.Errorf("inversion_steps", r.InversionSteps, "this model's schedule would reach a timestep past its last; give %d or fewer", s.MaxSteps())
	case errors.Is(err, scheduler.ErrTimestep) && r.Steps > s.MaxSteps():
		return param.Errorf("steps", r.Steps, "this model's schedule would reach a timestep past its last; give %d or fewer", s.MaxSteps())
	case err != nil:
		return err
	}
	if plan.Joined && r.Log != nil {
		fmt.Fprintf(r.Log, "inversion: the %d-step grid does not visit every timestep of the %d-step edit; inverting on both grids together (%d steps)\n",
			r.InversionSteps, r.Steps, len(plan.Walk))
	}
	j.walk = len(plan.Walk)
	return nil
}

// probe reads the source's metadata, resolves the frame range and size,
// hashes the source and makes the cache key (but its ModelID).
func (j *job) probe(ctx context.Context) error {
	t := time.Now()
	r := j.req
	fps := r.FolderFPS
	if fps.Num == 0 {
		fps = video.DefaultFolderFPS
	}
	info, err := video.Probe(ctx, r.Input, fps)
	if err != nil {
		return err
	}
	if j.rng, err = r.Range.Resolve(info); err != nil {
		return err
	}
	j.info, j.size = info, r.Size
	if j.size.IsZero() {
		j.size = video.DefaultSizeAt(info.DisplaySize(), nativeSide(j.model))
	}
	sum, err := hashInput(ctx, r.Input, info.Folder)
	if err != nil {
		return err
	}
	j.key = cache.Key{VideoSHA256: sum, Width: j.size.W, Height: j.size.H, // ModelID: open, last
		Start: j.rng.Start, Count: j.rng.Count, Stride: j.rng.Stride,
		InversionPrompt: r.InversionPrompt, InversionSteps: r.InversionSteps, SaveSteps: r.Steps}
	if info.Folder {
		j.key.FolderFPS = fps.String()
	}
	if r.GraphDType() == sd.FP16 {
		j.key.DType = string(sd.FP16) // fp32 keys have none: their IDs predate the field
	}
	j.times["probe+hash"] = time.Since(t)
	return nil
}

// nativeSide is the pixel side the model was trained at: the UNet's
// sample_size times the VAE's downsampling factor (64 x 8 = 512 for SD 1.x
// and 2.x-base, 96 x 8 = 768 for the SD 2.x 768 models); 0 when the config
// does not say (video.DefaultSizeAt then takes 512).
func nativeSide(m *sd.Model) int {
	if m.UNetConfig.SampleSize <= 0 || len(m.VAEConfig.BlockOutChannels) == 0 {
		return 0
	}
	return m.UNetConfig.SampleSize << (len(m.VAEConfig.BlockOutChannels) - 1)
}

// lockEntry takes the cache entry's lock, so that two runs on one video do
// not both compute its inversion: the second says it waits, then reuses.
// job.close releases it.
func (j *job) lockEntry(ctx context.Context) error {
	lock, err := cache.Acquire(ctx, j.root, j.key, func(path string) {
		if j.req.Log != nil {
			fmt.Fprintf(j.req.Log, "another tokenflow run is working on this inversion (lock %s): waiting for it\n", path)
		}
	})
	j.lock = lock
	return err
}

// inversion finds the request's inversion in the cache or computes and
// stores it, holding the entry's lock. forEdit says an edit follows: the
// work announced counts it.
func (j *job) inversion(ctx context.Context, forEdit bool) (*cache.Entry, bool, error) {
	r := j.req
	if err := j.memory(forEdit); err != nil {
		return nil, false, err
	}
	if err := j.lockEntry(ctx); err != nil {
		return nil, false, err
	}
	if !r.Force {
		entry, reason, err := cache.LookupContext(ctx, j.root, j.key)
		if err != nil {
			return nil, false, err
		}
		if reason != "" && r.Log != nil {
			fmt.Fprintf(r.Log, "inversion cache %s: %s; rebuilding\n", cache.Dir(j.root, j.key), reason)
		}
		if entry != nil {
			j.announce(entry, forEdit)
			return entry, true, nil
		}
	}
	entry, err := j.invert(ctx, forEdit)
	return entry, false, err
}

// invert computes the inversion into a new entry, streaming: the frames
// are decoded and VAE-encoded one at a time, z0 and the latents of each
// kept timestep are written to the entry in the making as they are made,
// and after every step a state to resume from is committed next to it
// (cache.Partial). An interrupted inversion of the same key is continued
// from its last step, unless the request says NoResume. The entry becomes
// visible only when complete.
func (j *job) invert(ctx context.Context, forEdit bool) (*cache.Entry, error) {
	r := j.req
	plan, err := j.model.Scheduler.PlanInversion(r.InversionSteps, r.Steps)
	if err != nil {
		return nil, err
	}
	n := j.rng.Count
	m := cache.Manifest{Key: j.key, Tool: version.Version,
		Video:  cache.VideoInfo{Path: r.Input, FPS: j.info.FPS.String(), Frames: j.info.Frames, Width: j.info.DisplaySize().W, Height: j.info.DisplaySize().H, HasAudio: j.info.HasAudio},
		Model:  cache.ModelInfo{Ref: r.Model, Dir: j.model.Dir(), ID: j.model.ID()},
		Kept:   plan.Kept,
		Latent: [4]int64{int64(n), int64(j.model.VAEConfig.LatentChannels), int64(j.size.H / 8), int64(j.size.W / 8)}}
	note := func(s string) {
		if r.Log != nil {
			fmt.Fprintln(r.Log, s)
		}
	}
	part, resume, err := cache.Begin(ctx, j.root, m, cache.Options{Walk: plan.Walk, NoResume: r.NoResume, Note: note})
	if err != nil {
		return nil, err
	}
	// Whatever ends the run keeps the last committed state for the next
	// one, but a failed run's (NaN), and one with nothing committed yet.
	checkpointed := resume != nil
	defer func() {
		if checkpointed {
			part.Close()
		} else {
			part.Discard()
		}
	}()

	j.model.Prepare() // the UNet's session is made while the frames are encoded (or the state read)

	var z tensor.Tensor
	if resume != nil {
		j.from, z = resume.Step, resume.Z
		j.announce(nil, forEdit)
		if r.Log != nil {
			if j.from < len(plan.Walk) {
				fmt.Fprintf(r.Log, "inversion: resuming at step %d of %d from %s\n", j.from+1, len(plan.Walk), resume.Dir)
			} else {
				fmt.Fprintf(r.Log, "inversion: resuming after its last step (%d) from %s\n", len(plan.Walk), resume.Dir)
			}
		}
	} else {
		j.announce(nil, forEdit)
		// 1. frames -> z0, into the entry first
		if z, err = j.encodeVideo(ctx); err != nil {
			return nil, err
		}
		if err := part.WriteZ0(ctx, z); err != nil {
			return nil, err
		}
		if err := part.Checkpoint(ctx, 0, z); err != nil {
			return nil, err
		}
		checkpointed = true
	}
	j.model.Release("vae_encoder") // not needed again: free its memory for the UNet

	// 2. DDIM inversion, each step into the entry and the state
	t, w := time.Now(), j.model.SessionWait()
	cond, err := j.model.EncodeText(ctx, r.InversionPrompt)
	if err != nil {
		return nil, err
	}
	// The report is made at the first batch's end: what was done before
	// (a resumed run's steps, the first batch with its session waits)
	// counts as done, not in the rate. A line at each step's end.
	var bar progress.StepReporter
	err = inversion.Invert(ctx, j.model, j.model.Scheduler, z, cond,
		inversion.Params{Steps: r.InversionSteps, SaveSteps: r.Steps, BatchSize: j.invBatch, From: j.from, Progress: func(done, _ int) {
			if bar == nil {
				bar = progress.NewSteps(r.Progress, "inversion", "frame-steps", j.walk*n, j.walk, j.from, done)
			}
			bar.Set(done)
		}},
		func(ctx context.Context, step, t int, z tensor.Tensor, kept bool) error {
			if kept {
				if err := part.Append(ctx, t, z); err != nil {
					return err
				}
			}
			if err := part.Checkpoint(ctx, step+1, z); err != nil {
				return err
			}
			bar.StepDone(step+1, (step+1)*n) // made by the step's last batch
			return nil
		})
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		if errors.Is(err, tensor.ErrNonFinite) {
			checkpointed = false // never resume into the same NaN
		}
		return nil, nonFinite(err, "nothing was stored")
	}
	j.times["inversion"] = j.since(t, w)

	// 3. the entry into place; Force replaces a valid one. (Without Force
	// the lookup above found none valid, under the lock still held.)
	entry, err := part.Commit(ctx, true)
	if err != nil {
		return nil, err
	}
	return entry, nil
}

// announce says on the log, before the work, the working size (and that
// it is not the video's) and how many UNet frame evaluations the call will
// make; and which cached inversion it reuses (entry, nil when none).
// Settings are named in braces ("{size}"), for the caller to word.
func (j *job) announce(entry *cache.Entry, forEdit bool) {
	r := j.req
	if r.Log == nil {
		return
	}
	src := j.info.DisplaySize()
	switch {
	case !r.Size.IsZero() || j.size == src:
		fmt.Fprintf(r.Log, "working size %s (the video is %s)\n", j.size, src)
	default:
		way := "up"
		if j.size.W*j.size.H < src.W*src.H {
			way = "down"
		}
		m := video.SizeMultiple
		own := video.Size{W: max(src.W/m*m, m), H: max(src.H/m*m, m)}
		side := nativeSide(j.model)
		if side <= 0 {
			side = int(math.Sqrt(video.TargetArea))
		}
		fmt.Fprintf(r.Log, "working size %s: the video's %s scaled %s to about %dx%d pixels, the model's native size; {size} %s keeps its own\n",
			j.size, src, way, side, side, own)
	}
	if entry != nil {
		fmt.Fprintf(r.Log, "inversion: reusing the cached inversion in %s\n", entry.Dir)
	}
	n := j.rng.Count
	var total int64
	var parts []string
	if entry == nil {
		steps := j.walk - j.from // a resumed inversion has the rest to do
		total += int64(steps * n)
		parts = append(parts, fmt.Sprintf("inversion %d steps x %d frames", steps, n))
	}
	if r.Reconstruct && !forEdit && (entry == nil || !exists(entry.ReconstructionPath())) {
		total += int64(j.walk * n)
		parts = append(parts, fmt.Sprintf("reconstruction %d steps x %d frames", j.walk, n))
	}
	if forEdit {
		b := min(max(r.BatchSize, 1), n)
		k := (n + b - 1) / b
		// per call over m prompts, 1 + 2m groups: the source once
		P, m := max(j.prompts, 1), max(j.perCall, 1)
		calls := (P + m - 1) / m
		groups := 2*P + calls
		steps := cmp.Or(j.editSteps, r.Steps)
		total += int64(steps * groups * (k + n))
		parts = append(parts, fmt.Sprintf("edit %d steps x %d x (%s + %d frames)", steps, groups, plural(k, "keyframe"), n))
		if P > 1 {
			fmt.Fprintf(r.Log, "%d prompts, %d per UNet call: %d branches per frame (the source's shared) where separate runs take %d\n", P, m, groups, 3*P)
		}
	}
	if total == 0 {
		return
	}
	fmt.Fprintf(r.Log, "UNet frame evaluations: %d (%s)\n", total, strings.Join(parts, ", "))
}

// plural is "1 keyframe", "2 keyframes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// since is the time since t less the time spent waiting for sessions
// since the model's SessionWait was w: a phase's own time.
func (j *job) since(t time.Time, w time.Duration) time.Duration {
	return time.Since(t) - (j.model.SessionWait() - w)
}

// finish records the run's totals in the timings.
func (j *job) finish() Timings {
	run, _ := ort.Stats()
	// Sessions made in the background while other work ran (sd.Prepare)
	// count in "session creation (all)", and in "session creation" only
	// for the time the run waited for them.
	created := ort.CreateTime() - j.ortNew
	waited := j.model.SessionWait() - j.wait0
	j.times["session creation (all)"] = created
	for name, d := range j.model.SessionTimes() {
		j.times["session creation: "+name] = d
	}
	j.times["session creation"] = waited
	j.times["in onnxruntime"] = run - j.ortRun + waited
	j.times["total"] = time.Since(j.start)
	return j.times
}

// Invert finds the inversion req asks for in the cache, or computes and
// stores it. Nothing is stored unless the inversion completed: an
// interrupted run leaves nothing a later run accepts.
func Invert(ctx context.Context, req InvertRequest) (*InvertResult, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	j, err := open(ctx, &req, false)
	if err != nil {
		return nil, err
	}
	defer j.close()
	entry, reused, err := j.inversion(ctx, false)
	if err != nil {
		return nil, err
	}
	res := &InvertResult{CacheDir: entry.Dir, Reused: reused, Frames: j.rng.Count, Size: j.size, Kept: entry.Manifest.Kept, DType: req.GraphDType()}
	if req.Reconstruct {
		res.Reconstruction = entry.ReconstructionPath()
		if !exists(res.Reconstruction) {
			if err := j.reconstruct(ctx, entry); err != nil {
				return nil, err
			}
		}
	}
	res.UNetFrames = j.model.UNetFrames() - j.unet0
	res.Timings = j.finish()
	return res, nil
}

// reconstruct DDIM-samples back from the most inverted latent, decodes,
// and writes the entry's reconstruction.mp4 (atomically).
func (j *job) reconstruct(ctx context.Context, entry *cache.Entry) error {
	t := time.Now()
	r := j.req
	kept := entry.Manifest.Kept
	cond, err := j.model.EncodeText(ctx, r.InversionPrompt)
	if err != nil {
		return err
	}
	rd, err := entry.Open()
	if err != nil {
		return err
	}
	zT, err := rd.At(ctx, kept[len(kept)-1]) // the one tensor it needs
	rd.Close()
	if err != nil {
		return err
	}
	bar := progress.New(r.Progress, "reconstruction", "frame-steps", j.walk*zT.N())
	x, err := inversion.Reconstruct(ctx, j.model, j.model.Scheduler, zT, cond,
		inversion.Params{Steps: r.InversionSteps, SaveSteps: r.Steps, BatchSize: j.invBatch, Progress: func(done, _ int) { bar.Set(done) }})
	bar.Finish()
	if err != nil {
		return nonFinite(err, "no reconstruction was written")
	}
	if err := j.writeVideo(ctx, entry.ReconstructionPath(), x, true); err != nil {
		return err
	}
	j.times["reconstruction"] = time.Since(t)
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// DefaultOut is where Edit writes when the request names no Out:
// <input>.tokenflow.mp4 next to the input.
func DefaultOut(input string) string {
	clean := filepath.Clean(input)
	return clean[:len(clean)-len(filepath.Ext(clean))] + ".tokenflow.mp4"
}
