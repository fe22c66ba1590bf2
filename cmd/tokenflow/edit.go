package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/pipeline"
)

// EditOptions are `edit`'s inputs.
type EditOptions struct {
	*globalOptions
	sourceOptions
	Input           string
	Prompt          string   // the first --prompt
	Prompts         []string // the later --prompt values, then a config's list after its first
	PromptsFile     string   // --prompts: more prompts, one per line
	NegativePrompt  string
	NegativePrompts []string // a config's negative_prompt list, one per prompt
	PromptsPerCall  int
	InversionPrompt string
	InversionSteps  int
	Steps           int
	Guidance        float64
	PnPAttn         float64
	PnPConv         float64
	Keyframes       string
	Seed            uint64
	KeyframeWindow  int
	Out             string
	Force           bool
	SaveLatents     string
	FramesDir       string
	Config          string
	outDir          string // output_path of an official config

	// Mode is --mode: pnp (the default) or sdedit, whose settings are
	// Strength (the official start) and DDIMNoise (use_ddim_noise).
	Mode      string
	Strength  float64
	DDIMNoise bool
	modeFlags map[string]string // the mode-specific flags given, with their values
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

--mode sdedit is the official SDEdit variant (run_tokenflow_sdedit.py): the
clip is noised part-way down the schedule with its inversion's noise
(--ddim-noise=false: one seeded Gaussian noise shared by all frames), then
sampled with the same keyframes, extended attention and propagation but no
Plug-and-Play injection. --strength is the official start: of --steps it
runs the last int(strength x steps) - 1 (0.9 of 50: 44), or all of them
when strength x steps is below 2. See docs/sdedit.md.

--config reads a YAML file: the official TokenFlow config_pnp.yaml keys
(prompt, negative_prompt, n_timesteps, guidance_scale, pnp_attn_t, pnp_f_t,
batch_size, n_frames, n_inversion_steps, seed, sd_version, data_path,
output_path, latents_path, device) work as they are, as do this tool's flag
names with underscores (inversion_prompt, keyframes, size, model, out, ...).
The official config_sdedit.yaml works too: its use_ddim_noise selects
--mode sdedit, and in an SDEdit edit the key start is the official start
(--strength); in a PnP edit start is the first frame (--start).
Flags given on the command line override the file.

Several prompts: repeat --prompt, or give --prompts FILE (one per line; blank
lines and # comments ignored), or a list as the config's prompt. They are
edited in one run from one inversion, the source branch of the UNet shared:
each output is what a run of that prompt alone gives. With several prompts
the outputs are <input>.<n>-<slug>.tokenflow.mp4 (n from 1; slug: the prompt
lower-cased, every character but letters and digits turned into -, cut to
40), and --out, --save-latents and --frames-dir must be templates holding {n}
or {slug}. A prompt that fails (NaN) does not stop the others: the exit
status is 1 and the message names it.`,
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
	fs.VarP(&promptFlag{first: &o.Prompt, rest: &o.Prompts}, "prompt", "p", "what the edited clip should show (required; repeat it for several edits of the clip in one run)")
	fs.StringVar(&o.PromptsFile, "prompts", "", "file of more prompts, one per line, each edited like a repeated --prompt")
	fs.IntVar(&o.PromptsPerCall, "prompts-per-call", 0, "with several prompts, how many share one UNet call; a call's memory grows up to this times one prompt's (default: as many as fit in the memory available)")
	fs.StringVar(&o.NegativePrompt, "negative-prompt", pipeline.DefaultNegativePrompt, "what it should not show (for every prompt)")
	fs.StringVar(&o.InversionPrompt, "inversion-prompt", "", "prompt describing the source clip, for the inversion (may be empty)")
	fs.IntVar(&o.InversionSteps, "inversion-steps", pipeline.DefaultInversionSteps, "DDIM inversion steps (as invert's --inversion-steps)")
	fs.IntVar(&o.Steps, "steps", pipeline.DefaultSteps, "denoising steps of the edit")
	fs.Float64Var(&o.Guidance, "guidance", pipeline.DefaultGuidance, "classifier-free guidance scale")
	fs.Float64Var(&o.PnPAttn, "pnp-attn", pipeline.DefaultPnPAttn, "fraction of the steps with query/key injection, in [0,1]")
	fs.Float64Var(&o.PnPConv, "pnp-conv", pipeline.DefaultPnPConv, "fraction of the steps with feature injection, in [0,1]")
	fs.StringVar(&o.Keyframes, "keyframes", "random", "keyframe of each batch: random (seeded) or middle (reproducible across implementations)")
	fs.IntVar(&o.KeyframeWindow, "keyframe-window", pipeline.DefaultKeyframeWindow, "the most keyframes (one per batch) a keyframe pass attends to: a longer clip's steps go windowed, anchors plus chunks, in bounded memory; up to it the pass is the official one; 0: no bound")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the random keyframe choice (and of --mode sdedit's Gaussian noise)")
	fs.StringVarP(&o.Out, "out", "o", "", "output video (default: <input>.tokenflow.mp4); with several prompts a template holding {n} or {slug} (default: <input>.{n}-{slug}.tokenflow.mp4)")
	fs.BoolVar(&o.Force, "force", false, "overwrite an existing output")
	fs.StringVar(&o.SaveLatents, "save-latents", "", "also write the final latents to this safetensors file (tensor \"latents\")")
	fs.StringVar(&o.FramesDir, "frames-dir", "", "also write the edited frames as PNGs into this folder")
	fs.StringVar(&o.Config, "config", "", "YAML file of settings (official config_pnp.yaml and config_sdedit.yaml keys accepted)")
	fs.StringVar(&o.Mode, "mode", "pnp", "pnp (Plug-and-Play injection) or sdedit (noise the clip part-way, sample without injection; see docs/sdedit.md)")
	fs.Float64Var(&o.Strength, "strength", pipeline.DefaultStrength, "sdedit: the official start, in (0,1]: the share of the steps to run (0.9 of 50 runs the last 44)")
	fs.BoolVar(&o.DDIMNoise, "ddim-noise", true, "sdedit: noise the clip with its inversion's noise; false: one seeded Gaussian noise shared by all frames")
	return cmd
}

// outputPath is --out, or <input>.tokenflow.mp4 (in output_path when an
// official config names one); with several prompts, "" for the pipeline's
// default names, or their template in output_path.
func (o *EditOptions) outputPath(several bool) string {
	if o.Out != "" {
		return o.Out
	}
	base := pipeline.DefaultOut(o.Input)
	if several {
		if o.outDir == "" {
			return ""
		}
		base = pipeline.DefaultPromptTemplate(o.Input)
	}
	if o.outDir != "" {
		return filepath.Join(o.outDir, filepath.Base(base))
	}
	return base
}

// editFlags words edit's settings as its flags.
var editFlags = sourceFlags.with(flagNames{
	"prompt": "--prompt", "inversion_steps": "--inversion-steps", "steps": "--steps", "guidance": "--guidance",
	"pnp_attn": "--pnp-attn", "pnp_conv": "--pnp-conv", "out": "--out", "save_latents": "--save-latents",
	"frames_dir": "--frames-dir", "keyframes": "--keyframes", "negative_prompt": "--negative-prompt",
	"prompts_per_call": "--prompts-per-call", "keyframe_window": "--keyframe-window",
	// the placeholders of output templates, named as they are written
	"n": pipeline.PlaceN, "slug": pipeline.PlaceSlug,
	"strength": "--strength", "no_resume": "--no-resume",
})

// request turns the flags into the pipeline's request.
func (o *EditOptions) request() (pipeline.EditRequest, error) {
	inv, err := o.sourceOptions.request(o.globalOptions, o.Input)
	if err != nil {
		return pipeline.EditRequest{}, err
	}
	inv.InversionPrompt, inv.InversionSteps, inv.Steps = o.InversionPrompt, o.InversionSteps, o.Steps
	inv.Log = logWords{o.globalOptions.Err, editFlags} // the edit's notes name its own flags
	kf, err := keyframes.ParsePolicy(o.Keyframes)
	if err != nil {
		return pipeline.EditRequest{}, usageErr("--keyframes %s: want random or middle", o.Keyframes)
	}
	sd, err := o.sdedit()
	if err != nil {
		return pipeline.EditRequest{}, err
	}
	if o.outDir != "" {
		// an official config's output_path: created as the official code does
		if err := os.MkdirAll(o.outDir, 0o755); err != nil {
			return pipeline.EditRequest{}, fmt.Errorf("output_path %s: %w", o.outDir, err)
		}
	}
	prompts := o.Prompts
	if o.PromptsFile != "" {
		more, err := readPrompts(o.PromptsFile)
		if err != nil {
			return pipeline.EditRequest{}, err
		}
		prompts = append(slices.Clone(prompts), more...)
	}
	several := len(prompts) > 1 || len(prompts) == 1 && o.Prompt != ""
	return pipeline.EditRequest{InvertRequest: inv, Prompt: o.Prompt, Prompts: prompts, NegativePrompt: o.NegativePrompt,
		NegativePrompts: o.NegativePrompts, PromptsPerCall: o.PromptsPerCall,
		Guidance: o.Guidance, PnPAttn: o.PnPAttn, PnPConv: o.PnPConv, Keyframes: kf, Seed: o.Seed, KeyframeWindow: o.KeyframeWindow,
		Out: o.outputPath(several), SaveLatents: o.SaveLatents, FramesDir: o.FramesDir, Overwrite: o.Force, SDEdit: sd}, nil
}

// afterParse records which optional flags were given: sourceOptions',
// and those of one mode only.
func (o *EditOptions) afterParse(fs *pflag.FlagSet) {
	o.sourceOptions.afterParse(fs)
	o.modeFlags = map[string]string{}
	for _, name := range []string{"strength", "ddim-noise", "pnp-attn", "pnp-conv"} {
		if f := fs.Lookup(name); f != nil && f.Changed {
			o.modeFlags[name] = f.Value.String()
		}
	}
}

// sdedit is --mode's SDEdit settings, nil for pnp. A flag of the other
// mode is refused rather than ignored.
func (o *EditOptions) sdedit() (*edit.SDEdit, error) {
	only := func(mode, todo string, flags ...string) error {
		for _, name := range flags {
			if v, ok := o.modeFlags[name]; ok {
				return usageErr("--%s %s: applies only to --mode %s: %s", name, v, mode, todo)
			}
		}
		return nil
	}
	switch o.Mode {
	case "pnp":
		return nil, only("sdedit", "add --mode sdedit, or leave it out", "strength", "ddim-noise")
	case "sdedit":
		if err := only("pnp", "SDEdit injects nothing; leave it out", "pnp-attn", "pnp-conv"); err != nil {
			return nil, err
		}
		return &edit.SDEdit{Start: o.Strength, Gaussian: !o.DDIMNoise}, nil
	}
	return nil, usageErr("--mode %s: want pnp or sdedit", o.Mode)
}

// check checks the settings as the edit will, before any work.
func (o *EditOptions) check() error {
	req, err := o.request()
	if err != nil {
		return err
	}
	return editFlags.wordErr(req.Validate())
}

type editJSON struct {
	Output          string             `json:"output,omitempty"`
	CacheDir        string             `json:"cache_dir"`
	InversionReused bool               `json:"inversion_reused"`
	Frames          int                `json:"frames"`
	Size            string             `json:"size"`
	FPS             string             `json:"fps"`
	Keyframes       string             `json:"keyframes"`
	DType           string             `json:"dtype"`
	Mode            string             `json:"mode"`
	UNetFrames      int64              `json:"unet_frame_evaluations"`
	Latents         string             `json:"latents,omitempty"`
	FramesDir       string             `json:"frames_dir,omitempty"`
	Seconds         map[string]float64 `json:"seconds"`
	PeakRSSMB       float64            `json:"peak_rss_mb,omitempty"`
	Prompts         []promptJSON       `json:"prompts"`
	PromptsPerCall  int                `json:"prompts_per_call"`
	ResumedSteps    int                `json:"resumed_steps,omitempty"`
	KeyframeRule    keyframeRuleJSON   `json:"keyframe_rule"`
}

// keyframeRuleJSON is which keyframe pass the steps used (pipeline.KeyframeRule).
type keyframeRuleJSON struct {
	Rule       string `json:"rule"` // "official" or "windowed"
	K          int    `json:"keyframes"`
	W          int    `json:"window"`
	A          int    `json:"anchors,omitempty"`
	Chunk      int    `json:"chunk,omitempty"`
	PeakPivots int    `json:"peak_pivots,omitempty"`
}

// promptJSON is one prompt's entry: its outputs, or its error.
type promptJSON struct {
	Prompt         string `json:"prompt"`
	NegativePrompt string `json:"negative_prompt"`
	Output         string `json:"output,omitempty"`
	Latents        string `json:"latents,omitempty"`
	FramesDir      string `json:"frames_dir,omitempty"`
	Error          string `json:"error,omitempty"`
}

func runEdit(ctx context.Context, o *EditOptions) error {
	req, err := o.request()
	if err != nil {
		return err
	}
	res, err := pipeline.Edit(ctx, req)
	// Several prompts of which some failed: the others' outputs are
	// reported, then the error.
	var perr *pipeline.PromptsError
	if err != nil && (res == nil || !errors.As(err, &perr)) {
		return editFlags.wordErr(err)
	}
	if o.JSON {
		j := editJSON{CacheDir: res.Inversion.CacheDir, InversionReused: res.Inversion.Reused,
			Frames: res.Frames, Size: res.Size.String(), FPS: res.FPS.String(), Keyframes: o.Keyframes, UNetFrames: res.UNetFrames,
			DType: string(res.Inversion.DType), Mode: o.Mode, Seconds: seconds(res.Timings), PeakRSSMB: peakRSSMB(), PromptsPerCall: res.PromptsPerCall,
			ResumedSteps: res.ResumedSteps}
		r := res.KeyframeRule
		j.KeyframeRule = keyframeRuleJSON{Rule: "official", K: r.K, W: r.W, A: r.A, Chunk: r.Chunk, PeakPivots: r.PeakPivots}
		if r.Windowed {
			j.KeyframeRule.Rule = "windowed"
		}
		if len(res.Prompts) == 1 {
			j.Output, j.Latents, j.FramesDir = res.Output, res.Latents, res.FramesDir
		}
		for _, p := range res.Prompts {
			e := promptJSON{Prompt: p.Prompt, NegativePrompt: p.NegativePrompt}
			if p.Err != nil {
				e.Error = editFlags.text(p.Err)
			} else {
				e.Output, e.Latents, e.FramesDir = p.Out, p.SaveLatents, p.FramesDir
			}
			j.Prompts = append(j.Prompts, e)
		}
		if err := printJSON(o.globalOptions.Out, j); err != nil {
			return err
		}
	} else {
		for _, p := range res.Prompts {
			if p.Err == nil {
				fmt.Fprintln(o.globalOptions.Out, p.Out)
			}
		}
	}
	if perr != nil {
		return &failedErr{editFlags.text(err), err}
	}
	return nil
}
