package video

import (
	"cmp"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	ffmpeg "github.com/u2takey/ffmpeg-go"
)

// commonArgs go before every ffmpeg command line ffmpeg-go builds: no
// banner, no interaction on the terminal, no progress, errors only.
var commonArgs = []string{"-hide_banner", "-nostdin", "-nostats", "-v", "error"}

// command makes the exec.Cmd running tool (ffmpeg or ffprobe, found on
// PATH) with args, killed when ctx ends; its stderr is kept for messages.
func command(ctx context.Context, tool string, args ...string) (*exec.Cmd, *tailBuffer, error) {
	bin, err := exec.LookPath(tool)
	if err != nil {
		return nil, nil, newError(ErrFFmpegMissing, err, "%s not found on PATH; install ffmpeg (e.g. apt install ffmpeg)", tool)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	stderr := &tailBuffer{}
	cmd.Stderr = stderr
	// After a kill, do not wait long for pipes a child may still hold.
	cmd.WaitDelay = 5 * time.Second
	return cmd, stderr, nil
}

// ffmpegArgs is the command line of an ffmpeg-go graph, after commonArgs.
func ffmpegArgs(s *ffmpeg.Stream) []string {
	return append(slices.Clone(commonArgs), s.GetArgs()...)
}

// maxFilterArg is the longest filter graph passed on the command line;
// Linux refuses single arguments over 128 KiB (MAX_ARG_STRLEN).
const maxFilterArg = 64 << 10

// commandWithScript is command for the ffmpeg-go graph s, but a filter graph too long for the
// command line (frame times of a long variable-rate clip) goes to ffmpeg in
// a temporary file (-filter_complex_script) whose path it returns for the
// caller to remove once ffmpeg has ended ("" when none was made).
func commandWithScript(ctx context.Context, s *ffmpeg.Stream) (*exec.Cmd, *tailBuffer, string, error) {
	cmd, stderr, err := command(ctx, "ffmpeg", ffmpegArgs(s)...)
	if err != nil {
		return nil, nil, "", err
	}
	i := slices.Index(cmd.Args, "-filter_complex")
	if i < 0 || i+1 >= len(cmd.Args) || len(cmd.Args[i+1]) <= maxFilterArg {
		return cmd, stderr, "", nil
	}
	f, err := os.CreateTemp("", "tokenflow-filter-*.txt")
	if err != nil {
		return nil, nil, "", newError(ErrFFmpeg, err, "write ffmpeg's filter script: %v", atomicfile.CauseText(err))
	}
	_, err = f.WriteString(cmd.Args[i+1])
	if err = cmp.Or(err, f.Close()); err != nil {
		os.Remove(f.Name())
		return nil, nil, "", newError(ErrFFmpeg, err, "write ffmpeg's filter script %s: %v", f.Name(), atomicfile.CauseText(err))
	}
	cmd.Args[i], cmd.Args[i+1] = "-filter_complex_script", f.Name()
	return cmd, stderr, f.Name(), nil
}

// ffmpegInput is how a path goes to ffmpeg: absolute, so that a name
// starting with "-" or holding "something:" is not taken for an option or a
// protocol.
func ffmpegInput(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// tailBuffer keeps the last few KiB written to it: ffmpeg's stderr, of which
// errors quote at most a short summary.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 8 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(p), nil
}

// Summary is the gist of ffmpeg's stderr in one short line: the last two
// distinct messages, without "[demuxer @ 0x...]" prefixes, the file name
// ffmpeg puts in front, or generic closing lines.
func (t *tailBuffer) Summary(paths ...string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return summarize(string(t.buf), paths...)
}

var (
	contextPrefix = regexp.MustCompile(`^\[[^\]]* @ 0x[0-9a-f]+\]\s*`)
	genericLines  = []string{
		"Conversion failed!",
		"Error marking filters as finished",
		"Cannot determine format of input stream",
		"Error opening output files",
		"Error opening input files",
		"Exiting normally",
		"Finishing stream",
		"Nothing was written into output file",
	}
)

func summarize(stderr string, paths ...string) string {
	var msgs []string
	for _, line := range strings.Split(strings.ReplaceAll(stderr, "\r", "\n"), "\n") {
		line = strings.TrimSpace(contextPrefix.ReplaceAllString(strings.TrimSpace(line), ""))
		for _, p := range paths {
			if p != "" {
				line = strings.TrimPrefix(line, p+": ")
			}
		}
		generic := func(g string) bool { return strings.HasPrefix(line, g) }
		if line != "" && !slices.ContainsFunc(genericLines, generic) {
			msgs = append(msgs, line)
		}
	}
	msgs = slices.Compact(msgs) // a message repeated line after line counts once
	if len(msgs) > 2 {
		msgs = msgs[len(msgs)-2:]
	}
	s := strings.Join(msgs, "; ")
	const maxLen = 160
	if len(s) > maxLen {
		s = "..." + s[len(s)-maxLen+3:]
	}
	return s
}

// ctxErr is the error to report when a command ended because ctx did.
func ctxErr(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		cause := context.Cause(ctx)
		if cause == nil || errors.Is(cause, err) {
			return newError(err, nil, "%s: %v", what, err)
		}
		return newError(err, cause, "%s: %v", what, cause)
	}
	return nil
}
