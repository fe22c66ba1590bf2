package pipeline

import (
	"cmp"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/video"
)

// Official TokenFlow defaults (configs/config_pnp.yaml, preprocess.py).
const (
	DefaultModel          = "stabilityai/stable-diffusion-2-1-base"
	DefaultNegativePrompt = "ugly, blurry, low res, unrealistic, unaesthetic"
	DefaultSteps          = 50
	DefaultInversionSteps = 500
	DefaultGuidance       = 7.5
	DefaultPnPAttn        = 0.5
	DefaultPnPConv        = 0.8
	DefaultBatchSize      = 8
	// DefaultKeyframeWindow is W, the most keyframes a keyframe pass
	// attends to (edit.Params.KeyframeWindow): chosen by measurement,
	// docs/ARCHITECTURE.md "Bounded keyframe attention".
	DefaultKeyframeWindow = 8
)

// DefaultStrength is the official SDEdit start (configs/config_sdedit.yaml).
const DefaultStrength = 0.9

// ErrExists marks an output that already exists and may not be replaced.
var ErrExists = errors.New("already exists")

// Source is which video to read and how.
type Source struct {
	Input     string         // a media file, or a folder of numbered frames
	FolderFPS video.Rational // a folder's frame rate (zero: video.DefaultFolderFPS)
	Size      video.Size     // working size (zero: video.DefaultSizeAt of the displayed size and the model's native side)
	Range     video.Range    // which frames (Count video.ToEnd: all from Start; Stride at least 1)
}

// Runtime is which model runs where.
type Runtime struct {
	Model          string     // a diffusers folder, a hub id in the local Hugging Face cache, or a single .safetensors file
	OriginalConfig string     // a single file's original inference YAML ("" detects the architecture)
	ORTLib         string     // the ONNX Runtime library ("" finds one; see ort.FindLibrary)
	Device         ort.Device // cpu or cuda
	DType          sd.DType   // the graphs' element type, fp16 or fp32 ("": GraphDType's default for the device)
	Threads        int        // ONNX Runtime's intra-op threads (0: all cores)
}

// GraphDType is the element type the run's graphs compute in: DType, or
// by default fp16 on CUDA and fp32 on the CPU (sd.DefaultDType).
func (r *Runtime) GraphDType() sd.DType {
	if r.DType != "" {
		return r.DType
	}
	return sd.DefaultDType(r.Device)
}

// InvertRequest asks for a video's inversion, from the cache or computed.
type InvertRequest struct {
	Source
	Runtime
	InversionPrompt string
	InversionSteps  int  // DDIM inversion steps
	Steps           int  // the editing schedule whose timesteps are kept (its grid joins the inversion's where they differ)
	BatchSize       int  // frames per UNet call
	Reconstruct     bool // also write reconstruction.mp4 into the entry
	Force           bool // recompute even when a valid entry exists
	// NoResume starts over even when an interrupted run of the same key
	// (the inversion, or an edit) left a state to continue from; that
	// state is removed.
	NoResume bool
	CacheDir string
	Log      io.Writer // one-line notes: why an entry is rebuilt, warnings
	Progress io.Writer // progress bars or lines; nil for none

	// InversionBatch is frames per UNet call of the inversion and the
	// reconstruction (0: BatchSize). Frames are inverted independently and
	// ONNX Runtime gives a frame the same bits whatever its batch, so it is
	// not part of the cache key.
	InversionBatch int
}

// EditRequest asks for a TokenFlow edit of a video. Its inversion settings
// (InvertRequest) choose, or make, the inversion it starts from; Force
// there recomputes it.
type EditRequest struct {
	InvertRequest
	Prompt string
	// Prompts are more prompts, each edited from the same inversion in the
	// same run, after Prompt when that is set: one output each (Targets).
	Prompts        []string
	NegativePrompt string
	// NegativePrompts, when set, is each prompt's own negative prompt, one
	// per prompt in order, instead of NegativePrompt for all.
	NegativePrompts []string
	// PromptsPerCall bounds how many prompts share one UNet call; 0 takes
	// as many as the memory estimate fits in the memory available now.
	// The passes of a call over m prompts need up to m times one prompt's
	// memory at the same batch size.
	PromptsPerCall int
	Guidance       float64
	PnPAttn        float64 // fraction of the steps with query/key injection
	PnPConv        float64 // fraction of the steps with feature injection
	Keyframes      keyframes.Policy
	Seed           uint64
	// KeyframeWindow is W (edit.Params.KeyframeWindow): a step with more
	// keyframes (batches) than W is windowed, one with at most W is the
	// official keyframe pass; 0 is no bound (always official). 1 is
	// refused: a window needs room for an anchor.
	KeyframeWindow int
	// Out is the output video; SaveLatents and FramesDir, when not "",
	// where the final latents and the edited frames (PNGs) also go. With
	// several prompts each is a template holding {n} (the prompt's
	// position, from 1) or {slug} (PromptSlug), and Out "" is
	// DefaultPromptOut's names (see Targets).
	Out         string
	SaveLatents string
	FramesDir   string
	Overwrite   bool // replace existing outputs

	// SDEdit, when set, makes the edit the official SDEdit variant
	// (edit.SDEdit: noise to the step Start gives, sample without
	// injection; PnPAttn and PnPConv are unused); nil is the PnP edit.
	SDEdit *edit.SDEdit
}

// Validate checks every setting that needs no model, as Invert does before
// any work (callers need not call it). Errors are *param.Error named by the
// request's settings.
func (r *InvertRequest) Validate() error {
	if r.Input == "" {
		return param.Reasonf("input", "no input: give a video file or a folder of frames")
	}
	rg := r.Range
	checks := []error{
		param.AtLeast("batch_size", r.BatchSize, 1),
		param.AtLeast("inversion_batch", r.InversionBatch, 0),
		param.AtLeast("inversion_steps", r.InversionSteps, 1),
		param.AtLeast("steps", r.Steps, 1),
		param.AtLeast("threads", r.Threads, 0),
		param.AtLeast("start", rg.Start, 0),
		param.AtLeast("stride", rg.Stride, 1),
	}
	if rg.Count != video.ToEnd {
		checks = append(checks, param.AtLeast("frames", rg.Count, 1))
	}
	if s := r.Size; !s.IsZero() && (s.W < 8 || s.H < 8 || s.W%8 != 0 || s.H%8 != 0) {
		checks = append(checks, param.Errorf("size", s, "want sides that are multiples of 8"))
	}
	if r.DType != "" {
		if _, err := sd.ParseDType(string(r.DType)); err != nil {
			checks = append(checks, err)
		}
	}
	if f := r.FolderFPS; f.Num != 0 && !f.Valid() {
		checks = append(checks, param.Errorf("fps", f, "want a positive frame rate"))
	}
	if err := cmp.Or(checks...); err != nil {
		return err
	}
	if _, err := os.Stat(r.Input); err != nil {
		return param.Errorf("input", r.Input, "no such file or folder")
	}
	return nil
}

// Validate checks every setting that needs no model, as Edit does before
// any work (callers need not call it); Out must be set.
func (r *EditRequest) Validate() error {
	prompts := r.AllPrompts()
	if len(prompts) == 0 {
		return param.Reasonf("prompt", "is required: say what the edited video should show")
	}
	for i, p := range prompts {
		if strings.TrimSpace(p) == "" {
			if len(prompts) == 1 {
				return param.Reasonf("prompt", "is required: say what the edited video should show")
			}
			return param.Reasonf("prompt", "number %d of %d is empty: say what each edited video should show", i+1, len(prompts))
		}
	}
	if n := len(r.NegativePrompts); n > 0 && n != len(prompts) {
		return param.Reasonf("negative_prompt", "gives %d negative prompts for %d prompts: give one for all, or one per prompt", n, len(prompts))
	}
	checks := []error{
		param.AtLeast("prompts_per_call", r.PromptsPerCall, 0),
		keyframeWindow(r.KeyframeWindow),
		param.Fraction("pnp_attn", r.PnPAttn),
		param.Fraction("pnp_conv", r.PnPConv),
	}
	if !(r.Guidance >= 0) || math.IsInf(r.Guidance, 0) {
		checks = append(checks, param.Errorf("guidance", r.Guidance, "must be a number, not negative"))
	}
	if sd := r.SDEdit; sd != nil && !(sd.Start > 0 && sd.Start <= 1) {
		checks = append(checks, param.Errorf("strength", sd.Start, "must be above 0 and at most 1: the share of the denoising steps to run (the official start)"))
	}
	if err := cmp.Or(checks...); err != nil {
		return err
	}
	if err := r.InvertRequest.Validate(); err != nil {
		return err
	}
	targets, err := r.Targets()
	if err != nil {
		return err
	}
	for _, t := range targets {
		if err := t.validate(r.Input, r.Overwrite); err != nil {
			return err
		}
	}
	return nil
}

// keyframeWindow checks W: 0 (no bound) or at least 2.
func keyframeWindow(w int) error {
	if w < 0 || w == 1 {
		return param.Errorf("keyframe_window", w, "must be 0 (no bound: every step the official keyframe pass) or at least 2 (half of it anchors)")
	}
	return nil
}

// validate checks one prompt's outputs before any work.
func (t Target) validate(input string, overwrite bool) error {
	// The input is never an output, --force or not: checked before
	// "exists", whose message suggests overwriting.
	for _, o := range []struct{ name, path string }{{"out", t.Out}, {"save_latents", t.SaveLatents}, {"frames_dir", t.FramesDir}} {
		if err := notInput(o.name, o.path, input); err != nil {
			return err
		}
	}
	if err := checkNew("out", t.Out, overwrite); err != nil {
		return err
	}
	if _, err := video.OutputFormat(t.Out); err != nil {
		return &param.Error{Name: "out", Value: t.Out, Reason: strings.TrimPrefix(err.Error(), t.Out+": "), Err: err}
	}
	if t.SaveLatents != "" {
		if err := checkNew("save_latents", t.SaveLatents, overwrite); err != nil {
			return err
		}
	}
	if t.FramesDir != "" {
		if st, err := os.Stat(filepath.Dir(t.FramesDir)); err != nil || !st.IsDir() {
			return param.Errorf("frames_dir", t.FramesDir, "folder %s does not exist", filepath.Dir(t.FramesDir))
		}
		if pngs, _ := filepath.Glob(filepath.Join(t.FramesDir, "*.png")); len(pngs) > 0 && !overwrite {
			return param.Errorf("frames_dir", t.FramesDir, "holds PNG files: %w", ErrExists)
		}
	}
	return nil
}

// ErrIsInput marks an output setting that names the input (the same file,
// through a link too, or a place inside the input's frame folder).
var ErrIsInput = errors.New("is the input")

// notInput refuses an output path that would write over the input: the
// same file (os.SameFile, so symbolic and hard links are seen through),
// or, for a frame folder input, the folder itself or a path inside it.
func notInput(name, out, input string) error {
	if out == "" {
		return nil
	}
	in, err := os.Stat(input)
	if err != nil {
		return nil // Validate has said the input is missing
	}
	if st, err := os.Stat(out); err == nil && os.SameFile(st, in) {
		return param.Kindf(ErrIsInput, name, out, "is the input %s: the edit would replace it; give another path", input)
	}
	if !in.IsDir() {
		return nil
	}
	// out's folders, innermost first, compared by identity with the input
	// folder (links and ".." resolved by the file system, not by text).
	abs, err := filepath.Abs(out)
	if err != nil {
		return nil
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		if st, err := os.Stat(dir); err == nil && os.SameFile(st, in) {
			return param.Kindf(ErrIsInput, name, out, "is inside the input folder %s: give a path outside it", input)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// checkNew checks, before any work, that path can be written: its folder
// exists, and it does not exist unless overwrite.
func checkNew(name, path string, overwrite bool) error {
	if _, err := os.Stat(path); err == nil && !overwrite {
		return param.Errorf(name, path, "%w", ErrExists)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return param.Errorf(name, path, "folder %s does not exist", filepath.Dir(path))
	}
	return nil
}
