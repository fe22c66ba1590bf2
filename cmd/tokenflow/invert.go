package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tokenflow/tokenflow/internal/pipeline"
)

// InvertOptions are `invert`'s inputs.
type InvertOptions struct {
	*globalOptions
	sourceOptions
	Input           string
	InversionPrompt string
	InversionSteps  int
	Steps           int // the editing schedule, as edit's --steps
	Reconstruct     bool
	Force           bool

	// SaveSteps is the old --save-steps (now --steps); with --steps given
	// and no --inversion-steps, --steps is read the old way, as the
	// inversion's steps (users have scripts).
	SaveSteps                 int
	invSet, stepsSet, saveSet bool
}

func newCmdInvert(g *globalOptions, runF func(context.Context, *InvertOptions) error) *cobra.Command {
	o := &InvertOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "invert [flags] <video or frame folder>",
		Short: "DDIM-invert a clip once, so that many edits can reuse it",
		Long: `invert encodes the clip's frames with the VAE and runs DDIM inversion with the
inversion prompt (--inversion-steps), keeping the latents at every timestep of
the editing schedule (--steps, as edit takes it: by default 50, or
--inversion-steps when fewer).
The result is cached (see --cache-dir) under a key made of the video's bytes,
the model, the size, the frame range, the inversion prompt and the step counts;
'tokenflow edit' with the same settings reuses it without running the UNet.

It prints the cache folder on stdout (or JSON with --json). --reconstruct also
DDIM-samples back from the inverted latents and writes reconstruction.mp4 in
that folder: if the reconstruction does not look like the clip, edits will not
either.

The input is any video ffmpeg reads, or a folder of numbered frames
(00000.png, 00001.png, ... or .jpg) played at --fps.`,
		Args: invertArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Input = args[0]
			o.afterParse(cmd.Flags())
			fs := cmd.Flags()
			o.invSet, o.stepsSet, o.saveSet = fs.Changed("inversion-steps"), fs.Changed("steps"), fs.Changed("save-steps")
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runInvert(cmd.Context(), o)
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.InversionPrompt, "inversion-prompt", "", "prompt describing the source clip (may be empty)")
	cmd.Flags().IntVar(&o.InversionSteps, "inversion-steps", pipeline.DefaultInversionSteps, "DDIM inversion steps (as edit's --inversion-steps)")
	cmd.Flags().IntVar(&o.Steps, "steps", pipeline.DefaultSteps, "denoising steps of the edits to come, whose timesteps' latents are kept (as edit's --steps; 50, or --inversion-steps when fewer)")
	cmd.Flags().IntVar(&o.SaveSteps, "save-steps", pipeline.DefaultSteps, "old spelling of --steps")
	cmd.Flags().MarkHidden("save-steps")
	cmd.Flags().BoolVar(&o.Reconstruct, "reconstruct", false, "also write reconstruction.mp4 (DDIM sampling back from the inversion)")
	cmd.Flags().BoolVar(&o.Force, "force", false, "recompute even when a matching inversion is cached")
	return cmd
}

// invertFlags words invert's settings as its flags.
var invertFlags = sourceFlags.with(flagNames{"inversion_steps": "--inversion-steps", "steps": "--steps"})

// schedule resolves the step flags, new and old spellings, into the
// inversion's steps and the editing schedule's, with the flag names that
// word errors about them as given, and a note when an old spelling was
// used.
func (o *InvertOptions) schedule() (inversion, steps int, names flagNames, note string, err error) {
	names = invertFlags
	inversion, steps = o.InversionSteps, o.Steps
	legacy := o.stepsSet && !o.invSet // `invert --steps N`: the inversion's steps
	switch {
	case legacy:
		inversion = o.Steps
		names = names.with(flagNames{"inversion_steps": "--steps"})
		spelled := fmt.Sprintf("--inversion-steps %d", inversion)
		if o.saveSet {
			steps = o.SaveSteps
			names = names.with(flagNames{"steps": "--save-steps"})
			spelled += fmt.Sprintf(" --steps %d", steps)
		}
		note = fmt.Sprintf("--steps without --inversion-steps is read the old way, as --inversion-steps %d: write %s (--steps is the editing schedule, as edit takes it)", inversion, spelled)
	case o.saveSet && o.stepsSet:
		return 0, 0, nil, "", usageErr("--save-steps is the old spelling of --steps: give one of them")
	case o.saveSet:
		steps = o.SaveSteps
		names = names.with(flagNames{"steps": "--save-steps"})
		note = fmt.Sprintf("--save-steps is the old spelling of --steps: write --steps %d", steps)
	}
	if !o.stepsSet && !o.saveSet || legacy && !o.saveSet {
		// The editing schedule follows a shorter inversion.
		steps = min(pipeline.DefaultSteps, inversion)
	}
	return inversion, steps, names, note, nil
}

type invertJSON struct {
	CacheDir        string             `json:"cache_dir"`
	InversionReused bool               `json:"inversion_reused"` // as edit's
	Reused          bool               `json:"reused"`           // the old name, for scripts
	Frames          int                `json:"frames"`
	Size            string             `json:"size"`
	KeptTimesteps   []int              `json:"kept_timesteps"`
	DType           string             `json:"dtype"`
	UNetFrames      int64              `json:"unet_frame_evaluations"`
	Reconstruction  string             `json:"reconstruction,omitempty"`
	Seconds         map[string]float64 `json:"seconds"`
	PeakRSSMB       float64            `json:"peak_rss_mb,omitempty"`
}

func runInvert(ctx context.Context, o *InvertOptions) error {
	req, err := o.sourceOptions.request(o.globalOptions, o.Input)
	if err != nil {
		return err
	}
	inv, steps, names, note, err := o.schedule()
	if err != nil {
		return err
	}
	req.InversionPrompt, req.InversionSteps, req.Steps = o.InversionPrompt, inv, steps
	req.Reconstruct, req.Force = o.Reconstruct, o.Force
	if note != "" {
		// said once the settings are known good, so that a refused run
		// stays one error line
		if err := req.Validate(); err != nil {
			return names.wordErr(err)
		}
		fmt.Fprintf(o.Err, "note: %s\n", note)
	}
	res, err := pipeline.Invert(ctx, req)
	if err != nil {
		return names.wordErr(err)
	}
	if !o.JSON {
		fmt.Fprintln(o.Out, res.CacheDir)
		return nil
	}
	return printJSON(o.Out, invertJSON{CacheDir: res.CacheDir, InversionReused: res.Reused, Reused: res.Reused, Frames: res.Frames, Size: res.Size.String(),
		KeptTimesteps: res.Kept, DType: string(res.DType), UNetFrames: res.UNetFrames, Reconstruction: res.Reconstruction, Seconds: seconds(res.Timings), PeakRSSMB: peakRSSMB()})
}
