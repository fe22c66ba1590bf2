// Package testenv decides what a test does when the real runtime it needs
// (ffmpeg, ONNX Runtime) is missing: skip with a reason when run by hand, fail
// under `make test`, which sets TOKENFLOW_REQUIRE_RUNTIME=1 after installing
// both, so CI can never pass by skipping.
package testenv

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/ort"
)

// RequireVar is the environment variable that turns "runtime missing" skips
// into failures.
const RequireVar = "TOKENFLOW_REQUIRE_RUNTIME"

// Missing skips t, or fails it when the runtime is required.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(RequireVar) == "1" {
		t.Fatalf("%s is missing and %s=1: `make test` installs it", what, RequireVar)
	}
	t.Skipf("%s is missing (run `make test` to install it)", what)
}

// FFmpeg makes sure ffmpeg and ffprobe are on PATH.
func FFmpeg(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			Missing(t, tool)
		}
	}
}

// ORTLibrary returns the ONNX Runtime shared library to load in tests:
// $ONNXRUNTIME_LIB, else the Makefile's install folder (.ort/ at the module
// root, found by walking up from the test's working directory).
func ORTLibrary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ONNXRUNTIME_LIB"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		Missing(t, "ONNX Runtime library "+p+" (from $ONNXRUNTIME_LIB)")
	}
	if root := ModuleRoot(); root != "" {
		p := filepath.Join(root, ".ort", "lib", "libonnxruntime.so.1")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	Missing(t, "ONNX Runtime library")
	return ""
}

// ModuleRoot is the folder holding go.mod above the working directory, or "".
func ModuleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// ORT loads the ONNX Runtime library (once per process: ort.Init keeps its
// first result) for a test that runs graphs.
func ORT(t testing.TB) {
	t.Helper()
	if err := ort.Init(ORTLibrary(t)); err != nil {
		t.Fatal(err)
	}
}

// UnwritableDir returns a folder this process cannot create files in. Root
// ignores permission bits, so as root it uses sysfs, where nobody may create
// files; without either the test is skipped.
func UnwritableDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		return dir
	}
	os.Remove(probe)
	if err := os.WriteFile("/sys/tokenflow-probe", nil, 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "/sys"
	}
	t.Skip("no unwritable folder available (running as root without sysfs)")
	return ""
}

// DirNames lists the names in dir, sorted, failing t when it cannot be read.
func DirNames(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// LoaderFinds says, without dlopen, whether the dynamic loader's search
// finds name with ldPath as $LD_LIBRARY_PATH: in those folders, the
// default ones or the ldconfig cache. Tests compare it with what the code
// under test reports; it skips t when ldconfig cannot be asked.
func LoaderFinds(t testing.TB, ldPath, name string) bool {
	t.Helper()
	for _, d := range append(filepath.SplitList(ldPath), "/lib", "/usr/lib", "/lib64", "/usr/lib64") {
		if d != "" {
			if _, err := os.Stat(filepath.Join(d, name)); err == nil {
				return true
			}
		}
	}
	ldconfig, err := exec.LookPath("ldconfig")
	if err != nil {
		ldconfig = "/sbin/ldconfig"
	}
	out, err := exec.Command(ldconfig, "-p").Output()
	if err != nil {
		t.Skipf("ldconfig -p: %v: cannot tell independently what the loader finds", err)
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// ErrorLine fails t unless err is an error of one line that mentions every
// one of want.
func ErrorLine(t testing.TB, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	OneLine(t, err.Error(), want...)
}

// OneLine fails t unless the error message msg is one line that mentions
// every one of want.
func OneLine(t testing.TB, msg string, want ...string) {
	t.Helper()
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
}
