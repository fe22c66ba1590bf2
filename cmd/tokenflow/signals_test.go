package main

// Signals and panics through the real binary: SIGTERM exits 143, a second
// signal ends the run at once even in a phase that cannot be cancelled,
// and a panic is one line plus a file holding the stack trace.

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// running is a started run of the binary.
type running struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  *lineWatcher
	stdout *strings.Builder
	done   chan error
}

func start(t *testing.T, cmd *exec.Cmd) *running {
	t.Helper()
	r := &running{t: t, cmd: cmd, stdout: &strings.Builder{}, done: make(chan error, 1)}
	cmd.Stdout = r.stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.lines = watchLines(stderr)
	go func() {
		r.lines.wait() // cmd.Wait closes the pipe: read it all first
		r.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-r.done
	})
	return r
}

func (r *running) signal(sig syscall.Signal) {
	r.t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("send %v: %v", sig, err)
	}
}

// exited waits up to timeout for the run to end and returns how it ended;
// ok is false if it is still running.
func (r *running) exited(timeout time.Duration) (res runResult, ok bool) {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for Cleanup
		res = runResult{Stdout: r.stdout.String(), Stderr: r.lines.wait()}
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			res.Code = ee.ExitCode()
		case err != nil:
			r.t.Fatal(err)
		}
		return res, true
	case <-time.After(timeout):
		return runResult{}, false
	}
}

// TestSIGTERM: a run terminated during its edit exits 143 with one line
// and leaves no output and no temporary file.
func TestSIGTERM(t *testing.T) {
	d := t.TempDir()
	out := filepath.Join(d, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	r := start(t, tfCommand(t, d, "edit", "--model", model(t, "tiny-sd15"), "--prompt", "a red cube",
		"--size", "64x64", "--steps", "20", "--inversion-steps", "20", "--batch-size", "4",
		"--cache-dir", filepath.Join(d, "cache"), "-o", filepath.Join(out, "edited.mp4"),
		"--save-latents", filepath.Join(out, "latents.safetensors"), "--frames-dir", filepath.Join(out, "frames"),
		fixtureFrames(t, "tiny-sd15")))
	if !r.lines.waitFor("inversion:", 2*time.Minute) {
		r.cmd.Process.Kill()
		t.Fatalf("no progress before the run ended:\n%s", r.lines.wait())
	}
	r.signal(syscall.SIGTERM)
	res, ok := r.exited(time.Minute)
	if !ok {
		t.Fatal("still running a minute after SIGTERM")
	}
	checkInterruptedBy(t, res, exitTerminated, "tokenflow: terminated", "edit:")
	if got := listTree(t, out); len(got) != 1 || got[0] != "./" {
		t.Errorf("the terminated edit left files in its output folder: %q", got)
	}
}

// checkInterruptedBy checks a run stopped by a signal while its task named
// by after (a progress label) was still running.
func checkInterruptedBy(t *testing.T, r runResult, code int, line, after string) {
	t.Helper()
	if r.Code != code {
		t.Errorf("exit %d, want %d\n%v", r.Code, code, r)
	}
	if got := checkErrorLine(t, r); got != line {
		t.Errorf("error line %q, want %q", got, line)
	}
	if r.Stdout != "" {
		t.Errorf("stdout %q, want nothing", r.Stdout)
	}
	for _, l := range strings.Split(r.Stderr, "\n") {
		if after != "" && strings.HasPrefix(l, after) && strings.Contains(l, "(100%)") {
			t.Errorf("the %s step had finished before the signal: %q; give the run more work", strings.TrimSuffix(after, ":"), l)
		}
	}
}

// stuckModel is a copy of a model folder (links to its files) whose JSON
// files are named pipes nobody writes: opening the model blocks in the
// kernel, as reading a hung network mount does, and no cancellation can
// reach it. It stands for the phases we cannot interrupt (ONNX Runtime
// building a session).
func stuckModel(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case info.IsDir() && rel == "expected":
			return filepath.SkipDir
		case info.IsDir():
			return os.MkdirAll(target, 0o755)
		case strings.HasSuffix(p, ".json"):
			return syscall.Mkfifo(target, 0o644)
		}
		return os.Symlink(p, target)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSecondSignal: the first SIGINT cancels the run, which cannot stop
// while it is blocked opening the model; the second ends it at once, exit
// 130, and the temporary names of its outputs, made before the model was
// opened, are removed.
func TestSecondSignal(t *testing.T) {
	d := t.TempDir()
	m := filepath.Join(d, "model")
	stuckModel(t, model(t, "tiny-sd15"), m)
	out := filepath.Join(d, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	r := start(t, tfCommand(t, d, "edit", "--model", m, "--prompt", "a red cube", "--size", "32x32",
		"--cache-dir", filepath.Join(d, "cache"), "-o", filepath.Join(out, "edited.mp4"),
		"--save-latents", filepath.Join(out, "latents.safetensors"), "--frames-dir", filepath.Join(out, "frames"),
		fixtureFrames(t, "tiny-sd15")))
	// The outputs' temporary names come first, then the model blocks.
	temps := regexp.MustCompile(`^\.(edited\.mp4|latents\.safetensors|frames)\.tmp-[0-9a-f]{16}/? `)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		n := 0
		for _, p := range listTree(t, out) {
			if temps.MatchString(p + " ") {
				n++
			}
		}
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no temporary outputs after a minute: %q", listTree(t, out))
		}
	}
	time.Sleep(500 * time.Millisecond)
	r.signal(syscall.SIGINT)
	if !r.lines.waitFor("stopping: a second signal stops at once", 10*time.Second) {
		r.cmd.Process.Kill()
		t.Fatalf("the first SIGINT was not acknowledged:\n%s", r.lines.wait())
	}
	if res, ended := r.exited(2 * time.Second); ended {
		t.Fatalf("the run ended on the first signal: the model open did not block, the test proves nothing\n%v", res)
	}
	r.signal(syscall.SIGINT)
	sent := time.Now()
	res, ok := r.exited(5 * time.Second)
	if !ok {
		t.Fatal("still running 5 s after the second SIGINT")
	}
	t.Logf("stopped %v after the second SIGINT", time.Since(sent).Round(time.Millisecond))
	checkInterruptedBy(t, res, exitInterrupted, "tokenflow: interrupted", "")
	if got := listTree(t, out); len(got) != 1 || got[0] != "./" {
		t.Errorf("the run left files in its output folder: %q", got)
	}
}

// TestPanicIsOneLine: a panic (asked for by the test-only hook) is one
// line naming a file that holds the stack trace, exit 1.
func TestPanicIsOneLine(t *testing.T) {
	tmp := t.TempDir()
	cmd := tfCommand(t, "", "doctor")
	cmd.Env = append(cmd.Env, testPanicEnv+"=1", "TMPDIR="+tmp)
	r := runCmd(t, cmd)
	if r.Code != exitError {
		t.Errorf("exit %d, want %d", r.Code, exitError)
	}
	line := checkErrorLine(t, r)
	if strings.Count(r.Stderr, "\n") != 1 {
		t.Errorf("stderr is not one line:\n%s", r.Stderr)
	}
	m := regexp.MustCompile(`^tokenflow: internal error: the test panic asked for by TOKENFLOW_TEST_PANIC; the stack trace is in (` +
		regexp.QuoteMeta(tmp) + `/tokenflow-panic-[0-9.-]+\.txt); please report it$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("error line %q", line)
	}
	b, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"panic: the test panic", "goroutine 1", "main.Main("} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s does not hold %q:\n%s", m[1], want, b)
		}
	}
}
