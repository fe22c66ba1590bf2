package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenflow/tokenflow/internal/inversion"
	"github.com/tokenflow/tokenflow/internal/ort"
)

// InvertOptions are `invert`'s inputs.
type InvertOptions struct {
	*globalOptions
	clipOptions
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
	cmd.Flags().IntVar(&o.Steps, "steps", 500, "DDIM inversion steps")
	cmd.Flags().IntVar(&o.SaveSteps, "save-steps", 50, "length of the editing schedule whose latents are kept (edit's --steps)")
	cmd.Flags().BoolVar(&o.Reconstruct, "reconstruct", false, "also write reconstruction.mp4 (DDIM sampling back from the inversion)")
	cmd.Flags().BoolVar(&o.Force, "force", false, "recompute even when a matching inversion is cached")
	return cmd
}

func (o *InvertOptions) check() error {
	if err := o.clipOptions.check(); err != nil {
		return err
	}
	if o.Steps < 1 {
		return usageErr("--steps %d: must be at least 1", o.Steps)
	}
	if o.SaveSteps < 1 {
		return usageErr("--save-steps %d: must be at least 1", o.SaveSteps)
	}
	if o.SaveSteps > o.Steps {
		return usageErr("--save-steps %d is larger than --steps %d: the inversion cannot provide more editing timesteps than it has steps", o.SaveSteps, o.Steps)
	}
	return nil
}

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
	begin := time.Now()
	if err := o.check(); err != nil {
		return err
	}
	if _, err := os.Stat(o.Input); err != nil {
		return fmt.Errorf("%s: no such file or folder", o.Input)
	}
	p, req, err := prepareInversion(o.globalOptions, &o.clipOptions, o.Input,
		inversion.Request{InversionPrompt: o.InversionPrompt, Steps: o.Steps, SaveSteps: o.SaveSteps, Reconstruct: o.Reconstruct, Force: o.Force},
		"--steps", "--save-steps")
	if err != nil {
		return err
	}
	defer p.Close()
	res, err := inversion.Run(ctx, p, req)
	if err != nil {
		return err
	}
	if !o.JSON {
		fmt.Fprintln(o.Out, res.Entry.Dir)
		return nil
	}
	out := invertJSON{CacheDir: res.Entry.Dir, Reused: res.Reused, Frames: res.Range.Count, Size: res.Size.String(),
		KeptTimesteps: res.Entry.Manifest.Kept, UNetFrames: res.UNetFrames, Seconds: map[string]float64{}}
	if o.Reconstruct {
		out.Reconstruction = res.Entry.ReconstructionPath()
	}
	for k, v := range res.Timings {
		out.Seconds[k] = v.Seconds()
	}
	inRun, _ := ort.Stats()
	inORT := inRun + ort.CreateTime()
	out.Seconds["in onnxruntime"] = inORT.Seconds()
	out.Seconds["session creation"] = ort.CreateTime().Seconds()
	out.Seconds["total"] = time.Since(begin).Seconds()
	out.PeakRSSMB = peakRSSMB()
	enc := json.NewEncoder(o.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
