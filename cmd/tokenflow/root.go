package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/version"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// errUsage marks a bad flag, argument or setting: Main maps it to exit
// status 2. Errors match it through usageError.
var errUsage = errors.New("usage")

// usageError is a usage error; its message is what the user sees.
type usageError struct{ err error }

func (e *usageError) Error() string        { return e.err.Error() }
func (e *usageError) Unwrap() error        { return e.err }
func (e *usageError) Is(target error) bool { return target == errUsage }

// usageErr formats a usage error (exit status 2).
func usageErr(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// globalOptions are the flags every command takes.
type globalOptions struct {
	ORTLib string
	Out    io.Writer
	Err    io.Writer
}

// Main runs the command line and returns the exit status. Errors are printed
// as one line on stderr; this is the one place that maps errors to statuses.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(&globalOptions{Out: stdout, Err: stderr})
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	msg, code := err.Error(), exitError
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, ort.ErrCanceled):
		msg, code = "interrupted", exitInterrupted
	case errors.Is(err, errUsage):
		code = exitUsage
	}
	fmt.Fprintf(stderr, "tokenflow: %s\n", firstLine(msg))
	return code
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func newRootCmd(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "tokenflow",
		Short: "Edit a video from a text prompt with Stable Diffusion, consistently across frames",
		Long: `tokenflow edits a video from a text prompt with a pre-trained Stable Diffusion
model and keeps the edit consistent from frame to frame (TokenFlow, ICLR 2024).

  tokenflow edit --prompt "a marble sculpture of a woman running" in.mp4
  tokenflow invert --inversion-prompt "a woman running" in.mp4
  tokenflow models export <model> --out DIR
  tokenflow doctor

Results go to stdout (a path, or JSON with --json); progress and errors go to
stderr. The exit status is 0 on success, 1 on failure, 2 on bad usage and 130
when interrupted.`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.ORTLib, "ort-lib", "", "ONNX Runtime shared library (default: $ONNXRUNTIME_LIB, next to the binary, or make's install folder)")
	root.SetVersionTemplate("tokenflow {{.Version}}\n")
	root.AddCommand(newCmdDoctor(g, nil), newCmdModels(g), newCmdInvert(g, nil), newCmdEdit(g, nil))
	root.InitDefaultCompletionCmd() // added now, so that usageArgs covers it too
	root.SetFlagErrorFunc(flagError)
	usageArgs(root)
	return root
}
