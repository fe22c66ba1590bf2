package main

// The CUDA path, through the real binary: doctor's report of the CUDA stack,
// doctor --device cuda, and edit --device cuda failing before any work.
// These tests use the real files of `make deps-cuda` (.ort/cuda at the
// module root) and skip, saying so, when it has not been run: make test does
// not download its 290 MB. No GPU is needed, except by
// TestEditCUDAMatchesCPU, which is skipped without a complete CUDA stack.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// cudaFiles are what `make deps-cuda` installs into .ort/cuda.
var cudaFiles = []string{"libonnxruntime.so.1", "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"}

// cudaNeeds are the libraries its CUDA provider loads (readelf -d: NEEDED,
// without the system's; and cuDNN, which it opens itself).
var cudaNeeds = []string{"libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudart.so.13", "libcudnn.so.9", "libcuda.so.1"}

// ortRoot is the module's .ort folder with the CPU build in lib/ and the
// CUDA build in cuda/; the test is skipped without the CUDA build.
func ortRoot(t *testing.T) string {
	t.Helper()
	testenv.ORTLibrary(t)
	root := filepath.Join(testenv.ModuleRoot(), ".ort")
	if _, err := os.Stat(filepath.Join(root, "lib", "libonnxruntime.so.1")); err != nil {
		testenv.Missing(t, "ONNX Runtime library in "+filepath.Join(root, "lib"))
	}
	for _, f := range cudaFiles {
		if _, err := os.Stat(filepath.Join(root, "cuda", f)); err != nil {
			testenv.Missing(t, fmt.Sprintf("the CUDA build of ONNX Runtime (%s; `make deps-cuda` installs it)", filepath.Join(root, "cuda", f)))
		}
	}
	return root
}

// cudaBin is tokenflow linked as `make` links it, with the install folders
// of make deps and make deps-cuda, so that --device cuda finds .ort/cuda by
// itself.
var cudaBin = sync.OnceValues(func() (string, error) {
	root := filepath.Join(testenv.ModuleRoot(), ".ort")
	bin := filepath.Join(testTmp, "tokenflow-make")
	const pkg = "github.com/tokenflow/tokenflow/internal/ort"
	out, err := exec.Command("go", "build", "-ldflags",
		"-X "+pkg+".InstallDir="+filepath.Join(root, "lib")+" -X "+pkg+".CUDADir="+filepath.Join(root, "cuda"),
		"-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &exec.ExitError{Stderr: out}
	}
	return bin, nil
})

// tfMake runs the make-linked binary without $ONNXRUNTIME_LIB (so that it
// finds its libraries as a user's would), with extra environment entries.
func tfMake(t *testing.T, dir string, env []string, args ...string) runResult {
	t.Helper()
	testenv.FFmpeg(t)
	bin, err := cudaBin()
	if err != nil {
		t.Fatalf("build tokenflow with make's link flags: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(userEnv(), "TOKENFLOW_CACHE="+filepath.Join(t.TempDir(), "default-cache")), env...)
	return runCmd(t, cmd)
}

// reportLine is the line of doctor's report that starts with prefix
// (after the indent), failing t when there is none.
func reportLine(t *testing.T, report, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(report, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("no line starting with %q in doctor's report:\n%s", prefix, report)
	return ""
}

// TestDoctorCUDAStack: doctor (CPU, the default) reports the CUDA stack
// line by line and still exits 0 when it is incomplete. One needed library
// is put on $LD_LIBRARY_PATH (a real shared library under the name
// libcurand.so.10) to see doctor find it there, as the provider's loader
// would; the others are found or missing as the loader's search says.
func TestDoctorCUDAStack(t *testing.T) {
	root := ortRoot(t)
	ld := t.TempDir()
	copyFile(t, filepath.Join(root, "cuda", "libonnxruntime_providers_shared.so"), filepath.Join(ld, "libcurand.so.10"))
	ldPath := ld
	if old := os.Getenv("LD_LIBRARY_PATH"); old != "" {
		ldPath += ":" + old
	}
	r := tfMake(t, "", []string{"LD_LIBRARY_PATH=" + ldPath}, "doctor", "--model", model(t, "tiny-sd21"))
	if r.Code != 0 {
		t.Fatalf("doctor exits %d with the CPU stack complete: the CUDA stack is optional\n%v", r.Code, r)
	}
	if r.Stderr != "" {
		t.Errorf("stderr %q, want nothing", r.Stderr)
	}
	out := r.Stdout
	if l := reportLine(t, out, "onnxruntime"); !strings.Contains(l, filepath.Join(root, "lib", "libonnxruntime.so.1")) {
		t.Errorf("doctor loaded %q, want the CPU build of make deps (the CPU path is unchanged)", l)
	}
	if l := reportLine(t, out, "library"); !strings.Contains(l, filepath.Join(root, "cuda", "libonnxruntime.so.1")) || !strings.Contains(l, "onnxruntime-node@1.29.0") {
		t.Errorf("CUDA library line %q: want .ort/cuda/libonnxruntime.so.1 and the npm packages it came from", l)
	}
	for _, p := range []string{"libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"} {
		if l := reportLine(t, out, "provider    "+p); !strings.Contains(l, filepath.Join(root, "cuda", p)) || strings.Contains(l, "MISSING") {
			t.Errorf("provider line %q: want it found in %s", l, filepath.Join(root, "cuda"))
		}
	}
	var missing []string
	for _, lib := range cudaNeeds {
		l := reportLine(t, out, "needs       "+lib)
		finds := testenv.LoaderFinds(t, ldPath, lib)
		switch {
		case finds && strings.Contains(l, "MISSING"):
			t.Errorf("%s: the loader's search finds it, doctor says %q", lib, l)
		case !finds && !strings.Contains(l, "MISSING"):
			t.Errorf("%s: not in the loader's search, doctor says %q", lib, l)
		}
		if !finds {
			missing = append(missing, lib)
		}
	}
	if l := reportLine(t, out, "needs       libcurand.so.10"); !strings.Contains(l, filepath.Join(ld, "libcurand.so.10")) {
		t.Errorf("libcurand.so.10 line %q: want it found on $LD_LIBRARY_PATH at %s", l, filepath.Join(ld, "libcurand.so.10"))
	}
	gpu := reportLine(t, out, "gpu")
	if slices.Contains(missing, "libcuda.so.1") && !strings.Contains(gpu, "NOT VISIBLE: libcuda.so.1") {
		t.Errorf("gpu line %q: without libcuda.so.1, want NOT VISIBLE naming it", gpu)
	}
	status, step := reportLine(t, out, "cuda"), reportLine(t, out, "next step")
	if len(missing) > 0 {
		if !strings.Contains(status, "not ready") {
			t.Errorf("status %q with %v missing, want not ready", status, missing)
		}
		for _, w := range []string{"install", "docs/gpu.md", "doctor --device cuda"} {
			if !strings.Contains(step, w) {
				t.Errorf("next step %q does not say %q", step, w)
			}
		}
	}
	t.Logf("doctor:\n%s", out)
}

// TestDoctorDeviceCUDA: doctor --device cuda loads the CUDA build and fails,
// one line naming every missing library, when the stack is incomplete.
func TestDoctorDeviceCUDA(t *testing.T) {
	root := ortRoot(t)
	r := tfMake(t, "", nil, "doctor", "--device", "cuda", "--model", model(t, "tiny-sd21"))
	if l := reportLine(t, r.Stdout, "onnxruntime"); !strings.Contains(l, "1.29.0 ("+filepath.Join(root, "cuda", "libonnxruntime.so.1")+")") {
		t.Errorf("onnxruntime line %q: want the CUDA build 1.29.0 from %s", l, filepath.Join(root, "cuda"))
	}
	var missing []string
	for _, lib := range cudaNeeds {
		if !testenv.LoaderFinds(t, os.Getenv("LD_LIBRARY_PATH"), lib) {
			missing = append(missing, lib)
		}
	}
	if len(missing) == 0 {
		t.Skipf("every CUDA library is installed here: doctor --device cuda exits %d\n%s", r.Code, r.Stdout)
	}
	line := checkErrorLine(t, r, append([]string{"CUDA", "install"}, missing...)...)
	if !strings.Contains(r.Stdout, "NOT READY") {
		t.Errorf("report does not say NOT READY:\n%s", r.Stdout)
	}
	t.Logf("error line: %s", line)
}

// TestEditCUDAFailsEarly: edit --device cuda with the CUDA stack incomplete
// stops at start-up with one line naming the missing libraries and the
// step. The input is not a video: an error about CUDA rather than about
// decoding shows that the probe comes before the clip is read, and nothing
// is written.
func TestEditCUDAFailsEarly(t *testing.T) {
	ortRoot(t)
	var missing []string
	for _, lib := range cudaNeeds {
		if !testenv.LoaderFinds(t, os.Getenv("LD_LIBRARY_PATH"), lib) {
			missing = append(missing, lib)
		}
	}
	if len(missing) == 0 {
		t.Skip("every CUDA library is installed here: edit --device cuda does not fail")
	}
	d := garbageClip(t)
	r := tfMake(t, d, nil, "edit", "--model", model(t, "tiny-sd21"), "--prompt", "a red cube",
		"--steps", "2", "--inversion-steps", "2", "--device", "cuda", "--cache-dir", filepath.Join(d, "cache"), "in.mp4")
	checkErrorLine(t, r, append([]string{"CUDA: missing", "install", "--device cpu"}, missing...)...)
	checkNothingWritten(t, d, r)
}

// TestEditCUDAOnCPUBuild: --device cuda with the CPU build named (here by
// $ONNXRUNTIME_LIB) fails at start-up naming the provider library it lacks
// and make deps-cuda. It needs no CUDA install.
func TestEditCUDAOnCPUBuild(t *testing.T) {
	lib := testenv.ORTLibrary(t)
	d := garbageClip(t)
	r := tf(t, d, "edit", "--model", model(t, "tiny-sd21"), "--prompt", "a red cube",
		"--steps", "2", "--inversion-steps", "2", "--device", "cuda", "--cache-dir", filepath.Join(d, "cache"), "in.mp4")
	checkErrorLine(t, r, "libonnxruntime_providers_cuda.so", lib, "$ONNXRUNTIME_LIB", "make deps-cuda", "--device cpu")
	checkNothingWritten(t, d, r)
}

// garbageClip is a folder holding in.mp4, 4 KB of random bytes.
func garbageClip(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	b := make([]byte, 4096)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(d, "in.mp4"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// checkNothingWritten fails t when the run printed a result or wrote
// anything beside the input.
func checkNothingWritten(t *testing.T, d string, r runResult) {
	t.Helper()
	if r.Stdout != "" {
		t.Errorf("stdout %q, want nothing", r.Stdout)
	}
	entries, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "in.mp4" {
			t.Errorf("the run wrote %s", e.Name())
		}
	}
	if regexp.MustCompile(`(?i)decod|ffmpeg|ffprobe|frame`).MatchString(r.Stderr) {
		t.Errorf("stderr mentions decoding: the clip was read before the CUDA probe\n%s", r.Stderr)
	}
}

// TestEditCUDAMatchesCPU runs the tiny model's edit on the GPU and on the
// CPU and compares the final latents. It needs a complete CUDA stack and a
// GPU; without them (on the machines the tests run on so far) it is
// skipped, naming what is missing.
func TestEditCUDAMatchesCPU(t *testing.T) {
	root := ortRoot(t)
	old := ort.CUDADir
	ort.CUDADir = filepath.Join(root, "cuda")
	t.Cleanup(func() { ort.CUDADir = old })
	t.Setenv("ONNXRUNTIME_LIB", "")
	if s := ort.InspectCUDA(""); s.Err() != nil {
		t.Skipf("no complete CUDA stack here: %v", s.Err())
	}
	d := t.TempDir()
	run := func(dev string) []float32 {
		t.Helper()
		latents := filepath.Join(d, dev+".safetensors")
		r := tfMake(t, d, nil, "edit", "--model", model(t, "tiny-sd21"), "--prompt", "a red cube", "--inversion-prompt", "a ball",
			"--inversion-steps", "10", "--steps", "10", "--batch-size", "4", "--keyframes", "middle", "--size", "64x64", "--fps", "10",
			"--device", dev, "--cache-dir", filepath.Join(d, "cache-"+dev), "-o", filepath.Join(d, dev+".mp4"),
			"--save-latents", latents, fixtureFrames(t, "tiny-sd21"))
		if r.Code != 0 {
			t.Fatalf("edit --device %s: %v", dev, r)
		}
		got, _ := fixture.Open(t, latents).F32("latents")
		return got
	}
	cpu, gpu := run("cpu"), run("cuda")
	// fp32 on both sides, but the GPU's convolutions and matrix products run
	// other algorithms (and TF32 on Ampere and newer, ONNX Runtime's
	// default): 20 DDIM steps of a random tiny model amplify that to about
	// 1e-2 of the latents' range, not to a different result.
	fixture.Close(t, "edit latents, cuda vs cpu", gpu, cpu, 2e-2, 0)
}

// TestDoctorFlags: doctor's --device, parsed through runF (no runtime):
// cpu by default, cuda when asked, anything else a usage error.
func TestDoctorFlags(t *testing.T) {
	for _, c := range []struct {
		args    []string
		want    string
		wantErr string
	}{
		{nil, "cpu", ""},
		{[]string{"--device", "cuda"}, "cuda", ""},
		{[]string{"--device", "gpu"}, "", "cpu or cuda"},
	} {
		var got *DoctorOptions
		cmd := newCmdDoctor(&globalOptions{Out: io.Discard, Err: io.Discard}, func(_ context.Context, o *DoctorOptions) error {
			got = o
			return nil
		})
		cmd.SetArgs(c.args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		switch {
		case c.wantErr != "":
			if err == nil || !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("doctor %v: error %v, want a usage error mentioning %q", c.args, err, c.wantErr)
			}
		case err != nil:
			t.Errorf("doctor %v: %v", c.args, err)
		case got == nil || got.Device != c.want:
			t.Errorf("doctor %v: options %+v, want device %s", c.args, got, c.want)
		}
	}
}

// standInDriver is the C source of a stand-in for the NVIDIA driver's
// libcuda.so.1: the seven driver API calls doctor makes, answering as
// $STANDIN_CUDA_VERSION and $STANDIN_CUINIT say. No GPU or driver can be had
// where the tests run; this checks doctor's side of the calls (the symbols,
// the calling convention, the reading of the answers), not the driver.
const standInDriver = `#include <stdio.h>
#include <stdlib.h>
static int env(const char* name, int def) { const char* v = getenv(name); return v ? atoi(v) : def; }
int cuDriverGetVersion(int* v) { *v = env("STANDIN_CUDA_VERSION", 13000); return 0; }
int cuInit(unsigned int flags) { return env("STANDIN_CUINIT", 0); }
int cuDeviceGetCount(int* n) { *n = 1; return 0; }
int cuDeviceGet(int* dev, int ordinal) { *dev = ordinal; return 0; }
int cuDeviceGetName(char* name, int len, int dev) { snprintf(name, len, "Stand-in GPU %d", dev); return 0; }
int cuDeviceTotalMem_v2(size_t* bytes, int dev) { *bytes = (size_t)8 << 30; return 0; }
int cuDeviceGetAttribute(int* v, int attr, int dev) { *v = attr == 75 ? 8 : attr == 76 ? 6 : 0; return 0; }
int cuGetErrorName(int e, const char** s) { *s = e == 100 ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_UNKNOWN"; return 0; }
`

// TestDoctorGPU: what doctor makes of the driver's answers, with a stand-in
// libcuda.so.1 (compiled here) and, for the other needed libraries, a real
// shared library under each name, all on $LD_LIBRARY_PATH: a driver too old
// for CUDA 13, no device, and a complete stack.
func TestDoctorGPU(t *testing.T) {
	root := ortRoot(t)
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to compile the stand-in libcuda.so.1")
	}
	ld := t.TempDir()
	src := filepath.Join(t.TempDir(), "cuda.c")
	if err := os.WriteFile(src, []byte(standInDriver), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(ld, "libcuda.so.1"), src).CombinedOutput(); err != nil {
		t.Fatalf("compile the stand-in libcuda.so.1: %v\n%s", err, out)
	}
	for _, lib := range cudaNeeds[:5] {
		copyFile(t, filepath.Join(root, "cuda", "libonnxruntime_providers_shared.so"), filepath.Join(ld, lib))
	}
	for _, c := range []struct {
		name     string
		env      []string
		gpu      []string // in the gpu line
		status   string   // in the cuda line
		nextStep string   // in the next step line
	}{
		{"driver too old", []string{"STANDIN_CUDA_VERSION=12040"},
			[]string{"0: Stand-in GPU 0, 8192 MB, compute capability 8.6", "driver supports CUDA 12.4", "TOO OLD", "needs CUDA 13"},
			"not ready", "update the NVIDIA driver to 580 or newer (CUDA 13)"},
		{"no device", []string{"STANDIN_CUINIT=100"},
			[]string{"NOT VISIBLE: cuInit: CUDA_ERROR_NO_DEVICE", "driver supports CUDA 13.0"},
			"not ready", "nvidia-smi"},
		{"complete", nil,
			[]string{"0: Stand-in GPU 0, 8192 MB, compute capability 8.6 (driver supports CUDA 13.0)"},
			"ready: --device cuda can run", "--device cuda"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := tfMake(t, "", append([]string{"LD_LIBRARY_PATH=" + ld}, c.env...), "doctor", "--model", model(t, "tiny-sd21"))
			if r.Code != 0 {
				t.Fatalf("doctor: %v", r)
			}
			for _, lib := range cudaNeeds {
				if l := reportLine(t, r.Stdout, "needs       "+lib); !strings.Contains(l, filepath.Join(ld, lib)) {
					t.Errorf("%s line %q: want it found in %s", lib, l, ld)
				}
			}
			gpu := reportLine(t, r.Stdout, "gpu")
			for _, w := range c.gpu {
				if !strings.Contains(gpu, w) {
					t.Errorf("gpu line %q does not say %q", gpu, w)
				}
			}
			if l := reportLine(t, r.Stdout, "cuda "); !strings.Contains(l, c.status) {
				t.Errorf("status line %q, want %q", l, c.status)
			}
			if l := reportLine(t, r.Stdout, "next step"); !strings.Contains(l, c.nextStep) {
				t.Errorf("next step %q does not say %q", l, c.nextStep)
			}
		})
	}
}
