package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/pipeline"
	"github.com/tokenflow/tokenflow/internal/version"
	"github.com/tokenflow/tokenflow/models"
)

// DoctorOptions are doctor's inputs.
type DoctorOptions struct {
	*globalOptions
	Device string
	Model  string // the model edit and invert would open
}

func newCmdDoctor(g *globalOptions, runF func(context.Context, *DoctorOptions) error) *cobra.Command {
	opts := &DoctorOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Show what tokenflow finds (ONNX Runtime, execution providers, ffmpeg, the model, the CUDA stack) and what is missing",
		Long: `Show what tokenflow finds and what is missing: the ONNX Runtime library and its
execution providers, ffmpeg and ffprobe, the model edit and invert would use
(--model, default $TOKENFLOW_MODEL, else stabilityai/stable-diffusion-2-1-base:
its folder and family, or how to fetch it; no weights are loaded), and, line by
line, the CUDA stack that --device cuda needs (the CUDA build of ONNX Runtime
from make deps-cuda, its provider libraries, each NVIDIA library the provider
loads, the GPU) with the next step to take.

CUDA is optional: doctor exits 1 when something --device cpu (the default)
needs is missing: ONNX Runtime, ffmpeg, ffprobe or the model. With --device cuda it loads the CUDA build instead, probes
the provider as edit and invert do, and also exits 1 when the CUDA stack is
incomplete.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dev, err := ort.ParseDevice(opts.Device)
			if err != nil {
				return doctorFlags.wordErr(err)
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runDoctor(cmd.Context(), opts, dev)
		},
	}
	model := cmp.Or(os.Getenv("TOKENFLOW_MODEL"), pipeline.DefaultModel)
	cmd.Flags().StringVar(&opts.Model, "model", model, "check this model: diffusers folder, hub id in the local Hugging Face cache, or single-file .safetensors checkpoint ($TOKENFLOW_MODEL)")
	cmd.Flags().StringVar(&opts.Device, "device", "cpu", "check for this execution device: cpu, or cuda (load the CUDA build and fail when its stack is incomplete)")
	return cmd
}

// doctorFlags words the settings doctor's report names as its flags.
var doctorFlags = flagNames{"device": "--device", "ort_lib": "--ort-lib", "model": "--model", "original_config": "--original-config"}

func runDoctor(ctx context.Context, o *DoctorOptions, dev ort.Device) error {
	w := o.Out
	var missing []string
	fmt.Fprintf(w, "tokenflow     %s\n", version.Version)
	initErr := ort.InitDevice(o.ORTLib, dev)
	if ort.LibraryPath() == "" {
		fmt.Fprintf(w, "onnxruntime   MISSING: %s\n", doctorFlags.text(initErr))
		step := "run `make deps`, or pass --ort-lib"
		if dev == ort.CUDA {
			step = "run `make deps-cuda`, or pass --ort-lib a GPU build"
		}
		missing = append(missing, fmt.Sprintf("ONNX Runtime (%s; %s)", doctorFlags.text(initErr), step))
	} else {
		fmt.Fprintf(w, "onnxruntime   %s (%s)\n", ort.Version(), ort.LibraryPath())
		fmt.Fprintf(w, "providers     %s\n", strings.Join(ort.Providers(), ", "))
	}
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		v, err := toolVersion(ctx, tool)
		if err != nil {
			fmt.Fprintf(w, "%-13s MISSING: %v\n", tool, err)
			missing = append(missing, tool+" (Debian/Ubuntu: apt-get install ffmpeg)")
			continue
		}
		fmt.Fprintf(w, "%-13s %s\n", tool, v)
	}
	if m := checkModel(w, o.Model); m != "" {
		missing = append(missing, m)
	}
	cudaErr := writeCUDAStack(w, o, dev, initErr)
	if dev == ort.CUDA && cudaErr != nil && ort.LibraryPath() != "" {
		missing = append(missing, doctorFlags.text(cudaErr))
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s", strings.Join(missing, "; "))
	}
	return nil
}

// checkModel writes the model's line of the report: found, with its
// family and folder, or missing with what to do. It opens the model's
// configs only (no weights) and returns what is missing ("" for nothing).
func checkModel(w io.Writer, model string) string {
	c, err := models.OpenModel(model, models.OpenOptions{})
	var cfg *models.UNetConfig
	if err == nil {
		cfg, err = c.UNetConfig()
	}
	if err != nil {
		text := doctorFlags.text(err)
		fmt.Fprintf(w, "model         MISSING: %s\n", text)
		if errors.Is(err, models.ErrModelNotFound) && !strings.HasPrefix(model, ".") && !filepath.IsAbs(model) && strings.Count(model, "/") == 1 {
			return fmt.Sprintf("model %s (fetch it once with `huggingface-cli download %s`, or pass --model a diffusers folder)", model, model)
		}
		return text
	}
	where := c.Source()
	if where != model {
		where = model + ", " + where
	}
	fmt.Fprintf(w, "model         %s (%s)\n", cfg.Family(), where)
	return ""
}

// writeCUDAStack writes the CUDA section of the report, one line per part
// of the stack, and returns what keeps --device cuda from running (nil when
// nothing does).
func writeCUDAStack(w io.Writer, o *DoctorOptions, dev ort.Device, initErr error) error {
	s := ort.InspectCUDA(o.ORTLib)
	err := s.Err()
	// With --device cuda the provider was also started by ONNX Runtime
	// (InitDevice): a failure there that the file checks did not foresee.
	var probeErr error
	if err == nil && dev == ort.CUDA && initErr != nil && ort.LibraryPath() != "" {
		probeErr, err = initErr, initErr
	}
	switch {
	case err == nil:
		fmt.Fprintf(w, "cuda          ready: --device cuda can run\n")
	case dev == ort.CUDA:
		fmt.Fprintf(w, "cuda          NOT READY\n")
	default:
		fmt.Fprintf(w, "cuda          not ready (optional: only --device cuda needs it)\n")
	}
	if s.Library == "" {
		fmt.Fprintf(w, "  library     MISSING: %s\n", doctorFlags.text(s.LibraryErr))
	} else {
		from := doctorFlags.words(s.From)
		if s.Installed != "" {
			from += ": " + s.Installed
		}
		fmt.Fprintf(w, "  library     %s (%s)\n", s.Library, from)
	}
	for _, l := range s.Providers {
		fmt.Fprintf(w, "  provider    %s\n", libLine(l, 34))
	}
	if s.Library != "" && s.NeedsFrom == "" {
		fmt.Fprintf(w, "  needs       (the provider could not be read; the libraries below are those of the build make deps-cuda installs)\n")
	}
	for _, l := range s.Needs {
		fmt.Fprintf(w, "  needs       %s\n", libLine(l, 18))
	}
	fmt.Fprintf(w, "  gpu         %s\n", gpuLine(s))
	step := s.Step()
	if probeErr != nil {
		fmt.Fprintf(w, "  onnxruntime MISSING: %s\n", doctorFlags.text(probeErr))
		var ce *ort.CUDAError
		if errors.As(probeErr, &ce) {
			step = ce.Step
		}
	}
	if err == nil {
		step = "run edit or invert with --device cuda"
	}
	fmt.Fprintf(w, "  next step   %s\n", doctorFlags.words(step))
	return err
}

// libLine is one library of the CUDA stack: its name (padded to width),
// then where it was found or why it was not, and what it is part of.
func libLine(l ort.Lib, width int) string {
	what := ""
	if l.What != "" {
		what = " (" + l.What + ")"
	}
	if l.Err != nil {
		return fmt.Sprintf("%-*s MISSING%s: %v", width, l.Name, what, l.Err)
	}
	return fmt.Sprintf("%-*s %s%s", width, l.Name, l.Path, what)
}

// gpuLine is what the driver says about GPUs.
func gpuLine(s ort.CUDAStack) string {
	g := s.GPU
	var b strings.Builder
	if g.Err != nil {
		fmt.Fprintf(&b, "NOT VISIBLE: %v", g.Err)
	}
	for i, d := range g.Devices {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d: %s, %d MB, compute capability %s", d.Index, d.Name, d.MemoryMB, d.Capability)
	}
	if g.DriverCUDA > 0 {
		fmt.Fprintf(&b, " (driver supports CUDA %d.%d)", g.DriverCUDA/1000, g.DriverCUDA%1000/10)
		if s.DriverTooOld() {
			fmt.Fprintf(&b, ": TOO OLD, the provider needs CUDA %d", s.CUDAMajor)
		}
	}
	if g.Err != nil {
		if g.DeviceNode {
			b.WriteString("; /dev/nvidia0 exists")
		} else {
			b.WriteString("; no /dev/nvidia0")
		}
	}
	return b.String()
}

// toolVersion is the version word of `tool -version`'s first line.
func toolVersion(ctx context.Context, tool string) (string, error) {
	path, err := exec.LookPath(tool)
	if err != nil {
		return "", fmt.Errorf("%s not found on PATH", tool)
	}
	out, err := exec.CommandContext(ctx, path, "-hide_banner", "-version").Output()
	if err != nil {
		return "", fmt.Errorf("%s -version: %v", path, err)
	}
	line := firstLine(string(out))
	if f := strings.Fields(line); len(f) >= 3 {
		return f[2] + " (" + path + ")", nil
	}
	return line, nil
}
