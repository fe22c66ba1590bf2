package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/version"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitInterrupted = 130 // SIGINT: 128+2, as a shell reports it
	exitTerminated  = 143 // SIGTERM: 128+15
)

// testPanicEnv, set to 1, makes Main panic on purpose: it exists only for
// the test of the top-level recover (TestPanicIsOneLine); users never set it.
const testPanicEnv = "TOKENFLOW_TEST_PANIC"

// errUsage marks a bad flag, argument or setting: Main maps it to exit
// status 2. Errors match it through usageError.
var errUsage = errors.New("usage")

// usageError is a usage error; its message is what the user sees.
type usageError string

func (e usageError) Error() string      { return string(e) }
func (usageError) Is(target error) bool { return target == errUsage }

// usageErr formats a usage error (exit status 2).
func usageErr(format string, a ...any) error {
	return usageError(fmt.Sprintf(format, a...))
}

// globalOptions are the flags every command takes.
type globalOptions struct {
	ORTLib string
	Out    io.Writer
	Err    io.Writer
}

// Main runs the command line and returns the exit status. Errors are printed
// as one line on stderr; this is the one place that maps errors to statuses.
//
// Signals: the first SIGINT or SIGTERM cancels the run, which stops at the
// next check, removes its temporary files and exits 130 or 143. A second
// one ends the process at once (for a phase that cannot be cancelled, such
// as ONNX Runtime building a session): the temporary files the pipeline
// holds are removed, then it exits. A panic becomes one line and a file
// holding the stack trace.
func Main(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if v := recover(); v != nil {
			code = panicked(v, debug.Stack(), stderr)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan os.Signal, 2)
	signal.Notify(got, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(got)
	var first atomic.Value // the os.Signal that cancelled ctx
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case sig := <-got:
			first.Store(sig)
			fmt.Fprintln(stderr, "stopping: a second signal stops at once")
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-got:
			atomicfile.RemoveClaimed()
			word, code := signalExit(sig)
			fmt.Fprintf(stderr, "tokenflow: %s\n", word)
			os.Exit(code)
		case <-done:
		}
	}()
	if os.Getenv(testPanicEnv) == "1" {
		panic("the test panic asked for by " + testPanicEnv)
	}

	if !progressFromEnv(stderr) {
		return exitUsage
	}
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
		sig, _ := first.Load().(os.Signal)
		msg, code = signalExit(sig)
	case errors.Is(err, errUsage):
		code = exitUsage
	}
	fmt.Fprintf(stderr, "tokenflow: %s\n", firstLine(msg))
	return code
}

// signalExit is what a run stopped by sig says and its exit status.
func signalExit(sig os.Signal) (string, int) {
	if sig == syscall.SIGTERM {
		return "terminated", exitTerminated
	}
	return "interrupted", exitInterrupted
}

// panicked reports a panic as one line naming a file that holds the stack
// trace (in the temporary folder), and returns the exit status.
func panicked(v any, stack []byte, stderr io.Writer) int {
	name := filepath.Join(os.TempDir(), "tokenflow-panic-"+time.Now().UTC().Format("20060102-150405.000000000")+".txt")
	report := fmt.Sprintf("tokenflow %s: panic: %v\n\n%s", version.Version, v, stack)
	where := "the stack trace is in " + name
	if err := os.WriteFile(name, []byte(report), 0o644); err != nil {
		where = "the stack trace could not be saved: " + err.Error()
	}
	fmt.Fprintf(stderr, "tokenflow: internal error: %s; %s; please report it\n", firstLine(fmt.Sprint(v)), where)
	return exitError
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
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
stderr. The exit status is 0 on success, 1 on failure, 2 on bad usage, 130
when interrupted (SIGINT) and 143 when terminated (SIGTERM); a second signal
stops at once.`,
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
