package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/version"
)

// DoctorOptions are doctor's inputs.
type DoctorOptions struct {
	*globalOptions
}

func newCmdDoctor(g *globalOptions, runF func(context.Context, *DoctorOptions) error) *cobra.Command {
	opts := &DoctorOptions{globalOptions: g}
	return &cobra.Command{
		Use:   "doctor",
		Short: "Show what tokenflow finds (ONNX Runtime, execution providers, ffmpeg) and what is missing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runDoctor(cmd.Context(), opts)
		},
	}
}

// errMissing is returned by doctor when something is missing.
var errMissing = errors.New("missing")

func runDoctor(ctx context.Context, o *DoctorOptions) error {
	w := o.Out
	var missing []string
	fmt.Fprintf(w, "tokenflow     %s\n", version.Version)
	if err := ort.Init(o.ORTLib); err != nil {
		fmt.Fprintf(w, "onnxruntime   MISSING: %v\n", err)
		missing = append(missing, fmt.Sprintf("ONNX Runtime (%v; run `make deps`, or pass --ort-lib)", err))
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
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", errMissing, strings.Join(missing, "; "))
	}
	return nil
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
