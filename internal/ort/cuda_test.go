package ort_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// What `make deps-cuda` installs, and what its CUDA provider needs: its
// NEEDED entries (readelf -d) without the system's libraries, and cuDNN,
// which it opens itself.
const cudaStamp = "onnxruntime-node@1.29.0 com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9"

var cudaNeeds = []string{"libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudart.so.13", "libcudnn.so.9", "libcuda.so.1"}

// installedCUDA is the .ort/cuda folder of `make deps-cuda`; without it the
// test is skipped, or fails under make test, which installs it.
func installedCUDA(t *testing.T) string {
	t.Helper()
	root := testenv.ModuleRoot()
	if root == "" {
		t.Skip("no module root")
	}
	dir := filepath.Join(root, ".ort", "cuda")
	for _, f := range []string{"libonnxruntime.so.1", "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			testenv.Missing(t, fmt.Sprintf("the CUDA build of ONNX Runtime (%s; `make deps-cuda` installs it)", filepath.Join(dir, f)))
		}
	}
	return dir
}

// loaderFinds says, without dlopen, whether the dynamic loader's search
// finds name: the test's own answer to compare InspectCUDA's with.
func loaderFinds(t *testing.T, name string) bool {
	t.Helper()
	return testenv.LoaderFinds(t, os.Getenv("LD_LIBRARY_PATH"), name)
}

// readelfNeeds is the provider's NEEDED entries as binutils' readelf reads
// them (a second reader beside debug/elf).
func readelfNeeds(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("readelf", "-d", path).Output()
	if err != nil {
		t.Skipf("readelf -d: %v", err)
	}
	var needs []string
	for _, line := range strings.Split(string(out), "\n") {
		if _, rest, ok := strings.Cut(line, "(NEEDED)"); ok {
			if i, j := strings.Index(rest, "["), strings.Index(rest, "]"); i >= 0 && j > i {
				needs = append(needs, rest[i+1:j])
			}
		}
	}
	return needs
}

func names(libs []ort.Lib) []string {
	var out []string
	for _, l := range libs {
		out = append(out, l.Name)
	}
	return out
}

// TestInspectCUDAInstalled checks the real files of `make deps-cuda`: the
// library and both providers are found, the needs are the provider's real
// NEEDED entries plus cuDNN, each found or missing as the loader's search
// says, and the error names every missing one and the step.
func TestInspectCUDAInstalled(t *testing.T) {
	dir := installedCUDA(t)
	isolate(t)
	ort.CUDADir = dir
	s := ort.InspectCUDA("")
	if want := filepath.Join(dir, "libonnxruntime.so.1"); s.Library != want || s.From != "make deps-cuda" || s.LibraryErr != nil {
		t.Fatalf("library %q from %q (%v), want %s from make deps-cuda", s.Library, s.From, s.LibraryErr, want)
	}
	if s.Installed != cudaStamp {
		t.Errorf("installed %q, want %q", s.Installed, cudaStamp)
	}
	if got, want := names(s.Providers), []string{"libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"}; !slices.Equal(got, want) {
		t.Errorf("providers %v, want %v", got, want)
	}
	for _, p := range s.Providers {
		if p.Err != nil || p.Path != filepath.Join(dir, p.Name) {
			t.Errorf("provider %s: path %q, error %v; want %s", p.Name, p.Path, p.Err, filepath.Join(dir, p.Name))
		}
	}
	provider := filepath.Join(dir, "libonnxruntime_providers_cuda.so")
	if s.NeedsFrom != provider {
		t.Errorf("needs read from %q, want %s", s.NeedsFrom, provider)
	}
	if got := names(s.Needs); !slices.Equal(got, cudaNeeds) {
		t.Errorf("needs (-want +got):\n-%v\n+%v", cudaNeeds, got)
	}
	// readelf agrees on every NEEDED entry that is not a system library.
	for _, n := range readelfNeeds(t, provider) {
		if strings.HasPrefix(n, "libcu") && !slices.Contains(names(s.Needs), n) {
			t.Errorf("readelf lists %s, InspectCUDA does not", n)
		}
	}
	if s.CUDAMajor != 13 {
		t.Errorf("CUDA major %d, want 13 (libcudart.so.13)", s.CUDAMajor)
	}
	var missing []string
	for _, l := range s.Needs {
		finds := loaderFinds(t, l.Name)
		switch {
		case finds && l.Err != nil:
			t.Errorf("%s: the loader's search finds it, InspectCUDA says %v", l.Name, l.Err)
		case !finds && l.Err == nil:
			t.Errorf("%s: not in the loader's search, InspectCUDA found it at %s", l.Name, l.Path)
		case l.Err == nil && l.Path == "":
			t.Errorf("%s: found without a path", l.Name)
		}
		if l.What == "" {
			t.Errorf("%s: no component named", l.Name)
		}
		if l.Err != nil {
			missing = append(missing, l.Name)
		}
	}
	t.Logf("missing here: %v; gpu: %+v", missing, s.GPU)
	if !loaderFinds(t, "libcuda.so.1") && (s.GPU.Err == nil || !strings.Contains(s.GPU.Err.Error(), "libcuda.so.1")) {
		t.Errorf("without libcuda.so.1 the GPU status is %v, want an error naming libcuda.so.1", s.GPU.Err)
	}
	if len(missing) == 0 {
		if s.GPU.Err == nil && s.Err() != nil {
			t.Errorf("nothing missing and a GPU visible, but not ready: %v", s.Err())
		}
		return
	}
	err := s.Err()
	var ce *ort.CUDAError
	if !errors.As(err, &ce) || !errors.Is(err, ort.ErrNoCUDA) {
		t.Fatalf("Err() = %v, want a *CUDAError wrapping ErrNoCUDA", err)
	}
	if !slices.Equal(ce.Missing, missing) {
		t.Errorf("error lists %v; want %v", ce.Missing, missing)
	}
	testenv.OneLine(t, flagWords(err), append(missing, provider, "install", "docs/gpu.md", "--device cpu")...)
	steps := map[string]string{"libcuda.so.1": "NVIDIA driver (580 or newer)", "libcudnn.so.9": "cuDNN 9 for CUDA 13", "libcublas.so.13": "cuBLAS", "libcurand.so.10": "cuRAND"}
	for lib, w := range steps {
		if slices.Contains(missing, lib) && !strings.Contains(s.Step(), w) {
			t.Errorf("%s is missing, the step %q does not say %q", lib, s.Step(), w)
		}
	}
}

// Before `make deps-cuda`, InspectCUDA says to run it, and still lists what
// the build it installs will need.
func TestInspectCUDANotInstalled(t *testing.T) {
	isolate(t)
	empty := t.TempDir()
	ort.CUDADir = empty
	s := ort.InspectCUDA("")
	if s.Library != "" || !errors.Is(s.LibraryErr, ort.ErrNoLibrary) {
		t.Fatalf("library %q, error %v; want none, ErrNoLibrary", s.Library, s.LibraryErr)
	}
	if got := names(s.Needs); !slices.Equal(got, cudaNeeds) {
		t.Errorf("needs %v, want those of the build make deps-cuda installs %v", got, cudaNeeds)
	}
	if s.Providers != nil || s.NeedsFrom != "" {
		t.Errorf("providers %v, needs from %q: want none", s.Providers, s.NeedsFrom)
	}
	err := s.Err()
	if !errors.Is(err, ort.ErrNoCUDA) || !errors.Is(err, ort.ErrNoLibrary) {
		t.Errorf("Err() = %v, want ErrNoCUDA and ErrNoLibrary", err)
	}
	for _, w := range []string{empty, "make deps-cuda", "--ort-lib"} {
		if !strings.Contains(flagWords(err), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if !strings.Contains(s.Step(), "make deps-cuda") {
		t.Errorf("step %q does not say make deps-cuda", s.Step())
	}
}

// The CPU build, named by --ort-lib, has no providers beside it: the step
// says it is not a GPU build and how to get one.
func TestInspectCUDACPUBuild(t *testing.T) {
	lib := testenv.ORTLibrary(t)
	isolate(t)
	s := ort.InspectCUDA(lib)
	if s.Library != lib || s.From != "{ort_lib}" {
		t.Fatalf("library %q from %q, want %s from {ort_lib}", s.Library, s.From, lib)
	}
	for _, p := range s.Providers {
		if p.Err == nil {
			t.Errorf("provider %s found beside the CPU build at %s", p.Name, p.Path)
		}
	}
	msg := flagWords(s.Err())
	for _, w := range []string{"libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so", filepath.Dir(lib), "not a GPU build", "--ort-lib", "make deps-cuda"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
}

// A provider file that is not a shared library is reported as such, and
// the needs fall back to those of the build make deps-cuda installs.
func TestInspectCUDABrokenProvider(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	for _, f := range []string{"libonnxruntime.so.1", "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("not ELF"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := ort.InspectCUDA(filepath.Join(dir, "libonnxruntime.so.1"))
	if p := s.Providers[1]; p.Err == nil || !strings.Contains(p.Err.Error(), "not a shared library") {
		t.Errorf("provider %s: error %v, want \"not a shared library\"", p.Name, p.Err)
	}
	if s.NeedsFrom != "" || !slices.Equal(names(s.Needs), cudaNeeds) {
		t.Errorf("needs %v from %q, want the default %v", names(s.Needs), s.NeedsFrom, cudaNeeds)
	}
	var ce *ort.CUDAError
	if !errors.As(s.Err(), &ce) || !slices.Contains(ce.Missing, "libonnxruntime_providers_cuda.so") {
		t.Errorf("Err() = %v, want a *CUDAError listing the provider among the missing", s.Err())
	}
}
