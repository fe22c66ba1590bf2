package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/pipeline"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/video"
)

// sourceOptions are the flags that say which video, which model and where
// things run; invert and edit share them.
type sourceOptions struct {
	Model     string
	Size      string
	Start     int
	Frames    int
	Stride    int
	FolderFPS string
	Device    string
	DType     string
	Threads   int
	CacheDir  string
	BatchSize int
	InvBatch  int
	JSON      bool
	NoResume  bool
	framesSet bool

	// OriginalConfig is --original-config: a single-file checkpoint's
	// original inference YAML.
	OriginalConfig string
}

func (o *sourceOptions) addFlags(fs *pflag.FlagSet) {
	model := cmp.Or(os.Getenv("TOKENFLOW_MODEL"), pipeline.DefaultModel)
	fs.StringVar(&o.Model, "model", model, "diffusers folder, hub id in the local Hugging Face cache, or single-file .safetensors checkpoint ($TOKENFLOW_MODEL)")
	fs.StringVar(&o.OriginalConfig, "original-config", "", "original inference YAML of a single-file --model (v1-inference.yaml, v2-inference.yaml; default: detect from the tensors)")
	fs.StringVar(&o.Size, "size", "", "working size WxH, multiples of 8 (default: the video's aspect ratio at about the model's native size, 512x512 pixels, or 768x768 for SD 2.x 768 models)")
	fs.IntVar(&o.Start, "start", 0, "first frame to use (from 0)")
	fs.IntVar(&o.Frames, "frames", 0, "number of frames to use (default: all from --start)")
	fs.IntVar(&o.Stride, "stride", 1, "use every n-th frame")
	fs.StringVar(&o.FolderFPS, "fps", strconv.Itoa(video.DefaultFolderFPS.Num), "frame rate of an input folder of numbered frames")
	fs.StringVar(&o.Device, "device", "cpu", "execution device: cpu or cuda (cuda: run make deps-cuda, or give a GPU build of ONNX Runtime with --ort-lib; see docs/gpu.md)")
	fs.StringVar(&o.DType, "dtype", "", "graph precision: fp16 or fp32 (default: fp16 with --device cuda, fp32 on cpu; normalisations and attention stay float32)")
	fs.IntVar(&o.Threads, "threads", 0, "CPU threads for ONNX Runtime (default: all cores)")
	fs.StringVar(&o.CacheDir, "cache-dir", "", "inversion cache folder (default: $TOKENFLOW_CACHE, else the user cache folder)")
	fs.IntVar(&o.BatchSize, "batch-size", pipeline.DefaultBatchSize, "frames per batch")
	fs.IntVar(&o.InvBatch, "inversion-batch", 0, "frames per UNet call of the inversion (default: --batch-size; the result is the same)")
	fs.BoolVar(&o.JSON, "json", false, "print the result as JSON")
	fs.BoolVar(&o.NoResume, "no-resume", false, "start over: do not continue from the state a killed run with the same settings left (it is removed)")
}

// afterParse records which optional flags were given.
func (o *sourceOptions) afterParse(fs *pflag.FlagSet) {
	o.framesSet = fs.Changed("frames")
}

// request parses the flags that have a syntax of their own into the
// pipeline's request; the pipeline checks the values.
func (o *sourceOptions) request(g *globalOptions, input string) (pipeline.InvertRequest, error) {
	r := pipeline.InvertRequest{
		Source:    pipeline.Source{Input: input, Range: video.Range{Start: o.Start, Count: video.ToEnd, Stride: o.Stride}},
		Runtime:   pipeline.Runtime{Model: o.Model, OriginalConfig: o.OriginalConfig, ORTLib: g.ORTLib, Threads: o.Threads},
		BatchSize: o.BatchSize, InversionBatch: o.InvBatch, CacheDir: o.CacheDir, NoResume: o.NoResume, Log: logWords{g.Err, sourceFlags}, Progress: g.Err,
	}
	if o.framesSet {
		r.Range.Count = max(o.Frames, 0) // -1 given by hand is an error, not "all"
	}
	dev, err := ort.ParseDevice(o.Device)
	if err != nil {
		return r, sourceFlags.wordErr(err)
	}
	r.Device = dev
	if o.DType != "" {
		if r.DType, err = sd.ParseDType(o.DType); err != nil {
			return r, sourceFlags.wordErr(err)
		}
	}
	if o.Size != "" {
		if r.Size, err = video.ParseSize(o.Size); err != nil {
			return r, sourceFlags.wordErr(err)
		}
	}
	if r.FolderFPS, err = video.ParseRational(o.FolderFPS); err != nil {
		return r, usageErr("--fps %s: want a frame rate like 10 or 30000/1001", o.FolderFPS)
	}
	return r, nil
}

// flagNames words a request's setting names as one command's flags.
type flagNames map[string]string

// sourceFlags are the flags sourceOptions adds, by setting name, and the
// root's --ort-lib.
var sourceFlags = flagNames{
	"input": "input", "model": "--model", "original_config": "--original-config", "size": "--size",
	"start": "--start", "frames": "--frames", "stride": "--stride", "fps": "--fps", "device": "--device", "dtype": "--dtype",
	"threads": "--threads", "cache_dir": "--cache-dir", "batch_size": "--batch-size", "ort_lib": "--ort-lib", "no_resume": "--no-resume",
	"inversion_batch": "--inversion-batch",
}

// flag is a setting's name on this command (the setting's own name when
// the command has no flag for it).
func (f flagNames) flag(setting string) string {
	if name, ok := f[setting]; ok {
		return name
	}
	return setting
}

// words is a library's text with every setting in braces ("pass {ort_lib}
// a GPU build") named as the command's flag.
func (f flagNames) words(text string) string { return param.Render(text, f.flag) }

// logWords is a library's log with the settings it names in braces
// ("{size} 320x240 keeps its own") put as the command's flags; other
// braces are left as they are.
type logWords struct {
	w     io.Writer
	names flagNames
}

func (l logWords) Write(p []byte) (int, error) {
	text := param.Render(string(p), func(setting string) string {
		if name, ok := l.names[setting]; ok {
			return name
		}
		return "{" + setting + "}"
	})
	if _, err := io.WriteString(l.w, text); err != nil {
		return 0, err
	}
	return len(p), nil
}

// wordedError is a library error that names settings, with a method that
// names them in a caller's terms: *param.Error, *ort.CUDAError and ort's
// library-not-found errors.
type wordedError interface {
	error
	Words(name func(string) string) string
}

// text is err's message with the settings its library named put as the
// command's flags: the worded error's part of the message is replaced by
// its words, around it the message is as it is.
func (f flagNames) text(err error) string {
	var w wordedError
	if !errors.As(err, &w) {
		return err.Error()
	}
	return strings.Replace(err.Error(), w.Error(), w.Words(f.flag), 1)
}

// failedErr is an error of a run that failed, in the command's words; it
// unwraps to the library's error.
type failedErr struct {
	msg string
	err error
}

func (e *failedErr) Error() string { return e.msg }
func (e *failedErr) Unwrap() error { return e.err }

// checkedByUse are the settings a library checks by using them: opening
// the model or the cache, loading ONNX Runtime. A bad one fails the run
// (exit 1), it is not bad usage.
var checkedByUse = map[string]bool{"cache_dir": true, "model": true, "original_config": true, "ort_lib": true}

func (f flagNames) with(more flagNames) flagNames {
	out := flagNames{}
	maps.Copy(out, f)
	maps.Copy(out, more)
	return out
}

// wordErr turns a library's *param.Error into the command's words: the
// setting's flag, and what to do. Settings checked before any work are
// usage errors (exit 2). Other errors that name settings (ort's) are
// worded as they are.
func (f flagNames) wordErr(err error) error {
	var pe *param.Error
	if !errors.As(err, &pe) {
		var w wordedError
		if errors.As(err, &w) {
			return &failedErr{f.text(err), err}
		}
		return err
	}
	name := f.flag(pe.Name)
	msg := pe.Words(f.flag)
	switch {
	case pe.Name == "input" && pe.Value == "":
		return usageErr("%s", pe.Reason)
	case pe.Name == "input":
		return fmt.Errorf("%s: %s", pe.Value, pe.Reason)
	case pe.Value == "":
		msg = name + " " + strings.TrimPrefix(msg, name+": ")
	}
	if errors.Is(err, pipeline.ErrExists) {
		return fmt.Errorf("%s already exists: pass --force to overwrite it, or %s to write elsewhere", pe.Value, name)
	}
	if checkedByUse[pe.Name] {
		// in the context the library gave it ("export unet: ...")
		return &failedErr{strings.Replace(err.Error(), pe.Error(), msg, 1), err}
	}
	return usageErr("%s", msg)
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

// seconds converts timings for JSON.
func seconds(t pipeline.Timings) map[string]float64 {
	out := make(map[string]float64, len(t))
	for k, v := range t {
		out[k] = v.Seconds()
	}
	return out
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
