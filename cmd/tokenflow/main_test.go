package main

// End-to-end tests run the real binary, built once here, with os/exec: the
// exit codes, stdout and stderr they check are the ones a user sees. They
// need ONNX Runtime and ffmpeg (testenv skips without them, or fails under
// `make test`). Flag parsing is tested in process through runF.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// tfBin is the tokenflow binary TestMain builds; testTmp is TestMain's
// folder, removed after the tests, for files the tests share.
var tfBin, testTmp string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokenflow-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testTmp = dir
	tfBin = filepath.Join(dir, "tokenflow")
	build := exec.Command("go", "build", "-o", tfBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build tokenflow for the tests: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runResult is what one run of the binary did.
type runResult struct {
	Code           int
	Stdout, Stderr string
}

func (r runResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// tfEnv is the environment of the binary: ours without the variables that
// change its defaults, with the ONNX Runtime library and a throwaway cache
// (so that a run without --cache-dir never writes into the user's cache).
func tfEnv(t *testing.T) []string {
	t.Helper()
	lib := testenv.ORTLibrary(t)
	return append(userEnv(), "ONNXRUNTIME_LIB="+lib, "TOKENFLOW_CACHE="+filepath.Join(t.TempDir(), "default-cache"))
}

// userEnv is our environment without the variables that change the
// binary's defaults (TOKENFLOW_MODEL, TOKENFLOW_CACHE, ONNXRUNTIME_LIB).
func userEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "TOKENFLOW_MODEL", "TOKENFLOW_CACHE", "ONNXRUNTIME_LIB":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// tfCommand prepares a run of the binary in dir ("" for the test's own).
func tfCommand(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	testenv.FFmpeg(t)
	cmd := exec.Command(tfBin, args...)
	cmd.Dir = dir
	cmd.Env = tfEnv(t)
	return cmd
}

// tf runs the binary to completion.
func tf(t *testing.T, dir string, args ...string) runResult {
	t.Helper()
	return runCmd(t, tfCommand(t, dir, args...))
}

// runCmd runs cmd to completion and says what it did; it fails t when cmd
// could not run or exit (an exit status is a result, not a failure).
func runCmd(t *testing.T, cmd *exec.Cmd) runResult {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := runResult{Stdout: out.String(), Stderr: errb.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("tokenflow %s: %v", strings.Join(cmd.Args[1:], " "), err)
		}
		r.Code = ee.ExitCode()
	}
	return r
}

// tfRefused runs the binary in d (as tf) for a run that must refuse
// before any work: it checks that the run printed nothing on stdout and
// left d's tree, and the bytes of each file named in keep, as they were.
func tfRefused(t *testing.T, d string, keep []string, args ...string) runResult {
	t.Helper()
	before := listTree(t, d)
	saved := map[string][]byte{}
	for _, name := range keep {
		if b, err := os.ReadFile(filepath.Join(d, name)); err == nil {
			saved[name] = b
		}
	}
	r := tf(t, d, args...)
	if r.Stdout != "" {
		t.Errorf("stdout %q, want nothing", r.Stdout)
	}
	if after := listTree(t, d); !slices.Equal(before, after) {
		t.Errorf("the run wrote files: before %q, after %q", before, after)
	}
	for name, b := range saved {
		if got, _ := os.ReadFile(filepath.Join(d, name)); string(got) != string(b) {
			t.Errorf("%s changed", name)
		}
	}
	return r
}

// tfOK runs the binary and fails the test unless it exits 0.
func tfOK(t *testing.T, dir string, args ...string) runResult {
	t.Helper()
	r := tf(t, dir, args...)
	if r.Code != 0 {
		t.Fatalf("tokenflow %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// tfJSON runs the binary (with --json among args) and decodes stdout.
func tfJSON[T any](t *testing.T, dir string, args ...string) (T, runResult) {
	t.Helper()
	r := tfOK(t, dir, args...)
	var v T
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		t.Fatalf("tokenflow %s: stdout is not the JSON result: %v\n%v", strings.Join(args, " "), err, r)
	}
	return v, r
}

// editResult and invertResult are the --json outputs, as the commands
// write them.
type (
	editResult   = editJSON
	invertResult = invertJSON
)

// model is a tiny conformance model's folder; frames the fixture clip of 8
// PNGs at 64x64.
func model(t *testing.T, name string) string { return fixture.Model(t, name) }

func fixtureFrames(t *testing.T, modelName string) string {
	return fixture.Expected(t, modelName, "tokenflow_inv10", "input_frames")
}

// clipWithAudio is a 1 s, 96x64, 12 fps H.264 clip with a 440 Hz AAC
// track, made once by ffmpeg's lavfi sources (testsrc2 + sine) for all tests.
var clipWithAudio = sync.OnceValues(func() (string, error) {
	path := filepath.Join(testTmp, "in.mp4")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", "lavfi", "-i", "testsrc2=size=96x64:rate=12",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ffmpeg: %v: %s", err, out)
	}
	return path, nil
})

// audioClip copies the shared clip into dir and returns its path.
func audioClip(t *testing.T, dir string) string {
	t.Helper()
	testenv.FFmpeg(t)
	src, err := clipWithAudio()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "in.mp4")
	copyFile(t, src, dst)
	return dst
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies a flat folder of files.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
	}
}

// listTree is every path under dir (relative, sorted), with file sizes, for
// "nothing was written" checks.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if info.IsDir() {
			out = append(out, rel+"/")
		} else {
			out = append(out, fmt.Sprintf("%s (%d bytes)", rel, info.Size()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// checkErrorLine checks the contract for a failed run: a non-zero exit and
// exactly one "tokenflow: ..." line, the last one on stderr, holding every
// wanted fragment. Progress lines may come before it.
func checkErrorLine(t *testing.T, r runResult, want ...string) string {
	t.Helper()
	if r.Code == 0 {
		t.Fatalf("exit 0, want a failure\n%v", r)
	}
	if !strings.HasSuffix(r.Stderr, "\n") {
		t.Errorf("stderr does not end with a newline: %q", r.Stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.Stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "tokenflow: ") {
		t.Fatalf("last stderr line %q does not start with \"tokenflow: \"\n%v", last, r)
	}
	for _, l := range lines[:len(lines)-1] {
		if strings.HasPrefix(l, "tokenflow: ") {
			t.Errorf("more than one error line on stderr:\n%s", r.Stderr)
		}
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("error line %q does not mention %q", last, w)
		}
	}
	return last
}

// probe is what ffprobe says about a media file.
type probeStream struct {
	CodecType    string `json:"codec_type"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	RFrameRate   string `json:"r_frame_rate"`
	AvgFrameRate string `json:"avg_frame_rate"`
	NbReadFrames string `json:"nb_read_frames"`
	Duration     string `json:"duration"`
}

func ffprobe(t *testing.T, path string) []probeStream {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var v struct {
		Streams []probeStream `json:"streams"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	return v.Streams
}

func atof(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return f
}

// pngSize decodes a PNG's header.
func pngSize(t *testing.T, path string) image.Point {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return image.Pt(c.Width, c.Height)
}

// lineWatcher collects a running command's stderr lines and lets a test
// wait for one.
type lineWatcher struct {
	mu    sync.Mutex
	lines []string
	cond  chan struct{} // closed and replaced on every new line or at EOF
	done  bool
}

func watchLines(r io.Reader) *lineWatcher {
	w := &lineWatcher{cond: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			close(w.cond)
			w.cond = make(chan struct{})
			w.mu.Unlock()
		}
		w.mu.Lock()
		w.done = true
		close(w.cond)
		w.mu.Unlock()
	}()
	return w
}

// waitFor blocks until a line with the prefix arrives, stderr ends, or the
// timeout passes; it reports whether the line came.
func (w *lineWatcher) waitFor(prefix string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		w.mu.Lock()
		for _, l := range w.lines {
			if strings.HasPrefix(l, prefix) {
				w.mu.Unlock()
				return true
			}
		}
		if w.done {
			w.mu.Unlock()
			return false
		}
		c := w.cond
		w.mu.Unlock()
		select {
		case <-c:
		case <-ctx.Done():
			return false
		}
	}
}

// wait blocks until stderr is closed, then returns everything read.
func (w *lineWatcher) wait() string {
	for {
		w.mu.Lock()
		if w.done {
			defer w.mu.Unlock()
			if len(w.lines) == 0 {
				return ""
			}
			return strings.Join(w.lines, "\n") + "\n"
		}
		c := w.cond
		w.mu.Unlock()
		<-c
	}
}
