package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/inversion"
	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/progress"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/video"
)

// defaultNegative is the official TokenFlow negative prompt.
const defaultNegative = "ugly, blurry, low res, unrealistic, unaesthetic"

// EditOptions are `edit`'s inputs.
type EditOptions struct {
	*globalOptions
	clipOptions
	Input           string
	Prompt          string
	NegativePrompt  string
	InversionPrompt string
	InversionSteps  int
	Steps           int
	Guidance        float64
	PnPAttn         float64
	PnPConv         float64
	Keyframes       string
	Seed            uint64
	Out             string
	Force           bool
	SaveLatents     string
	FramesDir       string
	Config          string
	outDir          string // output_path of an official config
}

func newCmdEdit(g *globalOptions, runF func(context.Context, *EditOptions) error) *cobra.Command {
	o := &EditOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "edit --prompt PROMPT [flags] <video or frame folder>",
		Short: "Edit a clip from a text prompt, consistently across frames (TokenFlow)",
		Long: `edit changes the clip's appearance to match --prompt while keeping its layout
and motion, by the TokenFlow method: at every denoising step one keyframe per
batch is edited jointly (extended attention with Plug-and-Play injection), and
the other frames take the keyframes' self-attention tokens by nearest-neighbour
correspondence, so the edit does not flicker.

It first inverts the clip (see 'tokenflow invert') unless a matching inversion
is cached: editing one clip with many prompts inverts it once. The output keeps
the input's frame rate and audio; its path is printed on stdout (JSON with
--json). An existing output is never overwritten without --force.

A clip whose frame count is not a multiple of --batch-size is handled whole:
the last batch is smaller (the official code drops those frames).

--config reads a YAML file: the official TokenFlow config_pnp.yaml keys
(prompt, negative_prompt, n_timesteps, guidance_scale, pnp_attn_t, pnp_f_t,
batch_size, n_frames, n_inversion_steps, seed, sd_version, data_path,
output_path, latents_path, device) work as they are, as do this tool's flag
names with underscores (inversion_prompt, keyframes, size, model, out, ...).
Flags given on the command line override the file.`,
		Args: editArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Input = args[0]
			}
			o.afterParse(cmd.Flags())
			if o.Config != "" {
				c, err := loadConfig(o.Config)
				if err != nil {
					return err
				}
				if err := c.apply(o, cmd.Flags(), o.Config); err != nil {
					return err
				}
			}
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runEdit(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	o.addFlags(fs)
	fs.StringVarP(&o.Prompt, "prompt", "p", "", "what the edited clip should show (required)")
	fs.StringVar(&o.NegativePrompt, "negative-prompt", defaultNegative, "what it should not show")
	fs.StringVar(&o.InversionPrompt, "inversion-prompt", "", "prompt describing the source clip, for the inversion (may be empty)")
	fs.IntVar(&o.InversionSteps, "inversion-steps", 500, "DDIM inversion steps (as 'tokenflow invert --steps')")
	fs.IntVar(&o.Steps, "steps", 50, "denoising steps of the edit")
	fs.Float64Var(&o.Guidance, "guidance", 7.5, "classifier-free guidance scale")
	fs.Float64Var(&o.PnPAttn, "pnp-attn", 0.5, "fraction of the steps with query/key injection, in [0,1]")
	fs.Float64Var(&o.PnPConv, "pnp-conv", 0.8, "fraction of the steps with feature injection, in [0,1]")
	fs.StringVar(&o.Keyframes, "keyframes", "random", "keyframe of each batch: random (seeded) or middle (reproducible across implementations)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the random keyframe choice")
	fs.StringVarP(&o.Out, "out", "o", "", "output video (default: <input>.tokenflow.mp4)")
	fs.BoolVar(&o.Force, "force", false, "overwrite an existing output")
	fs.StringVar(&o.SaveLatents, "save-latents", "", "also write the final latents to this safetensors file (tensor \"latents\")")
	fs.StringVar(&o.FramesDir, "frames-dir", "", "also write the edited frames as PNGs into this folder")
	fs.StringVar(&o.Config, "config", "", "YAML file of settings (official config_pnp.yaml keys accepted)")
	return cmd
}

// outputPath is --out, or <input>.tokenflow.mp4 (in output_path when an
// official config names one).
func (o *EditOptions) outputPath() string {
	if o.Out != "" {
		return o.Out
	}
	base := strings.TrimSuffix(filepath.Clean(o.Input), filepath.Ext(o.Input)) + ".tokenflow.mp4"
	if o.outDir != "" {
		return filepath.Join(o.outDir, filepath.Base(base))
	}
	return base
}

// check validates everything that can be checked before any work.
func (o *EditOptions) check() error {
	if strings.TrimSpace(o.Prompt) == "" {
		return usageErr("--prompt is required: say what the edited clip should show")
	}
	if o.Input == "" {
		return usageErr("no input: give a video file or a folder of frames")
	}
	if err := o.clipOptions.check(); err != nil {
		return err
	}
	switch {
	case o.Steps < 1:
		return usageErr("--steps %d: must be at least 1", o.Steps)
	case o.InversionSteps < 1:
		return usageErr("--inversion-steps %d: must be at least 1", o.InversionSteps)
	case o.Steps > o.InversionSteps:
		return usageErr("--steps %d is larger than --inversion-steps %d: the inversion must have at least as many steps as the edit", o.Steps, o.InversionSteps)
	case o.Guidance < 0 || o.Guidance != o.Guidance:
		return usageErr("--guidance %g: must not be negative", o.Guidance)
	case !(o.PnPAttn >= 0 && o.PnPAttn <= 1):
		return usageErr("--pnp-attn %g: must be between 0 and 1", o.PnPAttn)
	case !(o.PnPConv >= 0 && o.PnPConv <= 1):
		return usageErr("--pnp-conv %g: must be between 0 and 1", o.PnPConv)
	}
	if _, err := keyframes.ParsePolicy(o.Keyframes); err != nil {
		return usageErr("%v", err)
	}
	if _, err := os.Stat(o.Input); err != nil {
		return fmt.Errorf("%s: no such file or folder", o.Input)
	}
	if o.outDir != "" {
		// an official config's output_path: created as the official code does
		if err := os.MkdirAll(o.outDir, 0o755); err != nil {
			return fmt.Errorf("output_path %s: %w", o.outDir, err)
		}
	}
	out := o.outputPath()
	if err := checkNew(out, "--out", o.Force); err != nil {
		return err
	}
	if o.SaveLatents != "" {
		if err := checkNew(o.SaveLatents, "--save-latents", o.Force); err != nil {
			return err
		}
	}
	if o.FramesDir != "" && !o.Force {
		if pngs, _ := filepath.Glob(filepath.Join(o.FramesDir, "*.png")); len(pngs) > 0 {
			return fmt.Errorf("--frames-dir %s already holds PNG files: pass --force to overwrite them, or choose an empty folder", o.FramesDir)
		}
	}
	return nil
}

// checkNew checks, before any work, that path can be written: its folder
// exists, and it does not exist unless force.
func checkNew(path, flag string, force bool) error {
	if _, err := os.Stat(path); err == nil && !force {
		return fmt.Errorf("%s already exists: pass --force to overwrite it, or %s to write elsewhere", path, flag)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return fmt.Errorf("%s %s: folder %s does not exist", flag, path, filepath.Dir(path))
	}
	return nil
}

type editJSON struct {
	Output          string             `json:"output"`
	CacheDir        string             `json:"cache_dir"`
	InversionReused bool               `json:"inversion_reused"`
	Frames          int                `json:"frames"`
	Size            string             `json:"size"`
	FPS             string             `json:"fps"`
	Keyframes       string             `json:"keyframes"`
	UNetFrames      int64              `json:"unet_frame_evaluations"`
	Latents         string             `json:"latents,omitempty"`
	FramesDir       string             `json:"frames_dir,omitempty"`
	Seconds         map[string]float64 `json:"seconds"`
	PeakRSSMB       float64            `json:"peak_rss_mb,omitempty"`
}

func runEdit(ctx context.Context, o *EditOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	begin := time.Now()
	out := o.outputPath()
	p, req, err := prepareInversion(o.globalOptions, &o.clipOptions, o.Input,
		inversion.Request{InversionPrompt: o.InversionPrompt, Steps: o.InversionSteps, SaveSteps: o.Steps, NeedLatents: true},
		"--inversion-steps", "--steps")
	if err != nil {
		return err
	}
	defer p.Close()

	// 1. the inversion, cached or computed
	inv, err := inversion.Run(ctx, p, req)
	if err != nil {
		return err
	}
	seconds := map[string]float64{}
	for k, v := range inv.Timings {
		seconds[k] = v.Seconds()
	}

	// 2. the edit
	t := time.Now()
	texts, err := p.EncodeText(ctx, o.InversionPrompt, o.NegativePrompt, o.Prompt)
	if err != nil {
		return err
	}
	// Every prompt is encoded: free the text encoder's memory for the UNet.
	p.Release("text_encoder")
	row := func(i int) sd.TextEmbeds {
		return sd.TextEmbeds{N: 1, Seq: texts.Seq, Width: texts.Width, Data: texts.Row(i)}
	}
	lat := inv.Latents
	policy, _ := keyframes.ParsePolicy(o.Keyframes)
	n := int(lat.Shape[0])
	var bar progress.Reporter // made at the first report, when the total is known
	params := edit.Params{Steps: o.Steps, Guidance: o.Guidance, PnPAttn: o.PnPAttn, PnPConv: o.PnPConv,
		BatchSize: o.BatchSize, Keyframes: policy, Seed: o.Seed}
	params.Progress = func(done, total int) {
		if bar == nil {
			bar = progress.New(progressOut(o.globalOptions), "edit", "frame-passes", total)
		}
		bar.Set(done)
	}
	e, err := edit.New(p, p.Scheduler, edit.Inputs{
		Z0: sd.Latents{Shape: lat.Shape, Data: lat.Z0}, Noisy: lat.Noisy,
		Source: row(0), Negative: row(1), Prompt: row(2),
	}, params)
	if err != nil {
		return err
	}
	x, err := e.Run(ctx)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	seconds["edit"] = time.Since(t).Seconds()
	seconds["edit keyframe passes"] = e.KeyframeTime.Seconds()
	seconds["edit propagation passes"] = e.PropagateTime.Seconds()

	// 3. decode and write
	t = time.Now()
	frames, err := p.DecodeLatents(ctx, x, nil)
	if err != nil {
		return err
	}
	seconds["vae decode"] = time.Since(t).Seconds()
	if o.SaveLatents != "" {
		if err := saveLatents(o.SaveLatents, x, o.Force); err != nil {
			return err
		}
	}
	if o.FramesDir != "" {
		if err := os.MkdirAll(o.FramesDir, 0o755); err != nil {
			return fmt.Errorf("--frames-dir %s: %w", o.FramesDir, err)
		}
		named := make([]video.Frame, len(frames))
		for i, f := range frames {
			named[i] = f
			named[i].Index = i
		}
		if err := video.WritePNGs(o.FramesDir, named, video.PNGOptions{NoClobber: !o.Force}); err != nil {
			return err
		}
	}
	t = time.Now()
	fps := inv.Info.ClipFPS(inv.Range)
	clip := &video.Clip{Size: inv.Size, FPS: fps, Range: inv.Range, Frames: frames}
	if err := video.Encode(ctx, out, clip, video.EncodeOptions{FPS: fps, Audio: inv.Info.AudioFor(inv.Range), NoClobber: !o.Force}); err != nil {
		return err
	}
	seconds["encode"] = time.Since(t).Seconds()
	seconds["total"] = time.Since(begin).Seconds()
	inRun, _ := ort.Stats()
	inORT := inRun + ort.CreateTime()
	seconds["in onnxruntime"] = inORT.Seconds()
	seconds["session creation"] = ort.CreateTime().Seconds()

	if !o.JSON {
		fmt.Fprintln(o.globalOptions.Out, out)
		return nil
	}
	res := editJSON{Output: out, CacheDir: inv.Entry.Dir, InversionReused: inv.Reused, Frames: n, Size: inv.Size.String(), FPS: fps.String(),
		Keyframes: o.Keyframes, UNetFrames: p.UNetFrames(), Latents: o.SaveLatents, FramesDir: o.FramesDir, Seconds: seconds}
	res.PeakRSSMB = peakRSSMB()
	enc := json.NewEncoder(o.globalOptions.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// saveLatents writes x as a safetensors file holding "latents".
func saveLatents(path string, x sd.Latents, force bool) error {
	var opts []atomicfile.Option
	if !force {
		opts = append(opts, atomicfile.NoClobber())
	}
	f, err := atomicfile.Create(path, opts...)
	if err != nil {
		return fmt.Errorf("--save-latents: %w", err)
	}
	defer f.Abort()
	if err := safetensors.Write(f, []safetensors.Tensor{safetensors.FromFloat32("latents", x.Shape[:], x.Data)}, nil); err != nil {
		return fmt.Errorf("--save-latents %s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("--save-latents %s: %w", path, err)
	}
	return nil
}
