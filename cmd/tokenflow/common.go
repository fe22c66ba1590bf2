package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/tokenflow/tokenflow/internal/inversion"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/video"
)

// defaultModel is the official tool's default (sd_version 2.1).
const defaultModel = "stabilityai/stable-diffusion-2-1-base"

// clipOptions are the flags that say which clip, which model and where
// things run; invert and edit share them.
type clipOptions struct {
	Model     string
	Size      string
	Start     int
	Frames    int
	Stride    int
	FolderFPS string
	Device    string
	Threads   int
	CacheDir  string
	BatchSize int
	JSON      bool
	framesSet bool
}

func (o *clipOptions) addFlags(fs *pflag.FlagSet) {
	model := os.Getenv("TOKENFLOW_MODEL")
	if model == "" {
		model = defaultModel
	}
	fs.StringVar(&o.Model, "model", model, "diffusers folder, or hub id in the local Hugging Face cache ($TOKENFLOW_MODEL)")
	fs.StringVar(&o.Size, "size", "", "working size WxH, multiples of 8 (default: the clip's aspect ratio at about 512x512 pixels)")
	fs.IntVar(&o.Start, "start", 0, "first frame to use (from 0)")
	fs.IntVar(&o.Frames, "frames", 0, "number of frames to use (default: all from --start)")
	fs.IntVar(&o.Stride, "stride", 1, "use every n-th frame")
	fs.StringVar(&o.FolderFPS, "fps", "10", "frame rate of an input folder of numbered frames")
	fs.StringVar(&o.Device, "device", "cpu", "execution device: cpu or cuda (cuda needs a GPU build of ONNX Runtime, see --ort-lib)")
	fs.IntVar(&o.Threads, "threads", 0, "CPU threads for ONNX Runtime (default: all cores)")
	fs.StringVar(&o.CacheDir, "cache-dir", "", "inversion cache folder (default: $TOKENFLOW_CACHE, else the user cache folder)")
	fs.IntVar(&o.BatchSize, "batch-size", 8, "frames per batch")
	fs.BoolVar(&o.JSON, "json", false, "print the result as JSON")
}

// afterParse records which optional flags were given.
func (o *clipOptions) afterParse(fs *pflag.FlagSet) {
	o.framesSet = fs.Changed("frames")
}

// check validates the flags that need no file access.
func (o *clipOptions) check() error {
	if o.BatchSize < 1 {
		return usageErr("--batch-size %d: must be at least 1", o.BatchSize)
	}
	if o.Threads < 0 {
		return usageErr("--threads %d: must be 0 (all cores) or more", o.Threads)
	}
	if o.Stride < 1 {
		return usageErr("--stride %d: must be at least 1", o.Stride)
	}
	if o.Start < 0 {
		return usageErr("--start %d: must be 0 or more", o.Start)
	}
	if o.framesSet && o.Frames < 1 {
		return usageErr("--frames %d: must be at least 1", o.Frames)
	}
	if _, err := ort.ParseDevice(o.Device); err != nil {
		return usageErr("%v", err)
	}
	if o.Size != "" {
		if _, err := video.ParseSize(o.Size); err != nil {
			return usageErr("%v", err)
		}
	}
	if _, err := video.ParseRational(o.FolderFPS); err != nil {
		return usageErr("--fps %s: want a frame rate like 10 or 30000/1001", o.FolderFPS)
	}
	return nil
}

func (o *clipOptions) size() video.Size {
	if o.Size == "" {
		return video.Size{}
	}
	s, _ := video.ParseSize(o.Size)
	return s
}

func (o *clipOptions) folderFPS() video.Rational {
	r, _ := video.ParseRational(o.FolderFPS)
	return r
}

func (o *clipOptions) frameRange() video.Range {
	r := video.Range{Start: o.Start, Count: video.ToEnd, Stride: o.Stride}
	if o.framesSet {
		r.Count = o.Frames
	}
	return r
}

// openPipeline loads ONNX Runtime for the device (for CUDA, probing the
// provider before any work) and opens the model.
func openPipeline(g *globalOptions, o *clipOptions) (*sd.Pipeline, error) {
	dev, _ := ort.ParseDevice(o.Device)
	if err := ort.InitDevice(g.ORTLib, dev); err != nil {
		return nil, err
	}
	return sd.Open(sd.Options{Model: o.Model, Device: dev, Threads: o.Threads, Log: g.Err})
}

// progressOut is where progress goes: stderr, which draws bars only when it
// is a terminal.
func progressOut(g *globalOptions) io.Writer { return g.Err }

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// checkSchedule checks that an inversion of steps steps can serve an edit of
// saveSteps steps, wording the error with the command's own flag names.
func checkSchedule(p *sd.Pipeline, steps, saveSteps int, stepsFlag, saveFlag string) error {
	_, err := p.Scheduler.PlanInversion(steps, saveSteps)
	var me *scheduler.MismatchError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &me) && me.Missing == 0:
		return usageErr("%s %d is larger than %s %d: the inversion must have at least as many steps as the edit", saveFlag, saveSteps, stepsFlag, steps)
	case errors.As(err, &me):
		return usageErr("%s %d does not fit %s %d: editing timestep %d is not among the inversion's timesteps (%s); %s values that fit %s %d: %s",
			saveFlag, saveSteps, stepsFlag, steps, me.Missing, me.Walk, saveFlag, stepsFlag, steps, me.Fits)
	case errors.Is(err, scheduler.ErrTimestep):
		return usageErr("%s %d / %s %d: %v", stepsFlag, steps, saveFlag, saveSteps, err)
	}
	return err
}

// peakRSSMB is the process's peak resident set size in MB (VmHWM), or 0
// where /proc does not tell.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(rest), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

// prepareInversion opens the model and completes req with what invert and
// edit share: the clip, the cache, the model and where notes and progress
// go. It checks the step counts (named by the command's own flags) before
// any work is done.
func prepareInversion(g *globalOptions, o *clipOptions, input string, req inversion.Request, stepsFlag, saveFlag string) (*sd.Pipeline, inversion.Request, error) {
	root, err := inversion.CacheRoot(o.CacheDir)
	if err != nil {
		return nil, req, err
	}
	p, err := openPipeline(g, o)
	if err != nil {
		return nil, req, err
	}
	if err := checkSchedule(p, req.Steps, req.SaveSteps, stepsFlag, saveFlag); err != nil {
		p.Close()
		return nil, req, err
	}
	req.Input, req.FolderFPS, req.Size, req.Range = input, o.folderFPS(), o.size(), o.frameRange()
	req.BatchSize, req.CacheRoot, req.ModelRef = o.BatchSize, root, o.Model
	req.Log, req.Progress = g.Err, progressOut(g)
	return p, req, nil
}
