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
	Steps           int
	SaveSteps       int
	Reconstruct     bool
	Force           bool
}

func newCmdInvert(g *globalOptions, runF func(context.Context, *InvertOptions) error) *cobra.Command {
	o := &InvertOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "invert [flags] <video or frame folder>",
		Short: "DDIM-invert a clip once, so that many edits can reuse it",
		Long: `invert encodes the clip's frames with the VAE and runs DDIM inversion with the
inversion prompt, keeping the latents at every timestep of the editing schedule.
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
			if runF != nil {
				return runF(cmd.Context(), o)
			}
			return runInvert(cmd.Context(), o)
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.InversionPrompt, "inversion-prompt", "", "prompt describing the source clip (may be empty)")
	cmd.Flags().IntVar(&o.Steps, "steps", pipeline.DefaultInversionSteps, "DDIM inversion steps")
	cmd.Flags().IntVar(&o.SaveSteps, "save-steps", pipeline.DefaultSteps, "length of the editing schedule whose latents are kept (edit's --steps)")
	cmd.Flags().BoolVar(&o.Reconstruct, "reconstruct", false, "also write reconstruction.mp4 (DDIM sampling back from the inversion)")
	cmd.Flags().BoolVar(&o.Force, "force", false, "recompute even when a matching inversion is cached")
	return cmd
}

// invertFlags words invert's settings as its flags.
var invertFlags = sourceFlags.with(flagNames{"inversion_steps": "--steps", "steps": "--save-steps"})

type invertJSON struct {
	CacheDir       string             `json:"cache_dir"`
	Reused         bool               `json:"reused"`
	Frames         int                `json:"frames"`
	Size           string             `json:"size"`
	KeptTimesteps  []int              `json:"kept_timesteps"`
	UNetFrames     int64              `json:"unet_frame_evaluations"`
	Reconstruction string             `json:"reconstruction,omitempty"`
	Seconds        map[string]float64 `json:"seconds"`
	PeakRSSMB      float64            `json:"peak_rss_mb,omitempty"`
}

func runInvert(ctx context.Context, o *InvertOptions) error {
	req, err := o.sourceOptions.request(o.globalOptions, o.Input)
	if err != nil {
		return err
	}
	req.InversionPrompt, req.InversionSteps, req.Steps = o.InversionPrompt, o.Steps, o.SaveSteps
	req.Reconstruct, req.Force = o.Reconstruct, o.Force
	res, err := pipeline.Invert(ctx, req)
	if err != nil {
		return invertFlags.wordErr(err)
	}
	if !o.JSON {
		fmt.Fprintln(o.Out, res.CacheDir)
		return nil
	}
	return printJSON(o.Out, invertJSON{CacheDir: res.CacheDir, Reused: res.Reused, Frames: res.Frames, Size: res.Size.String(),
		KeptTimesteps: res.Kept, UNetFrames: res.UNetFrames, Reconstruction: res.Reconstruction, Seconds: seconds(res.Timings), PeakRSSMB: peakRSSMB()})
}
