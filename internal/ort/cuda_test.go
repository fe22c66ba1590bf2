package ort_test

import (
	"debug/elf"
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

// scripts/deps.sh --cuda (make deps-cuda), run for real into scratch
// folders ($TOKENFLOW_ORT_DIR). The full download (about 290 MB from the npm
// registry) runs only with TOKENFLOW_TEST_CUDA_DEPS=1; the other tests use
// the files `make deps-cuda` already installed in .ort/ and an npm that
// cannot reach any registry, so that any download attempt fails the run.

var cudaFiles = []string{"libonnxruntime.so.1", "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"}

// deps runs scripts/deps.sh with args, installing into ortDir, with extra
// environment entries.
func deps(t *testing.T, ortDir string, env []string, args ...string) (code int, stderr string) {
	t.Helper()
	script := filepath.Join(testenv.ModuleRoot(), "scripts", "deps.sh")
	cmd := exec.Command(script, args...)
	cmd.Env = append(append(os.Environ(), "TOKENFLOW_ORT_DIR="+ortDir), env...)
	var errb strings.Builder
	cmd.Stderr = &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), errb.String()
	} else if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return 0, errb.String()
}

// offline is an npm that can reach no registry and has no cache: any
// `npm pack` fails at once.
func offline(t *testing.T) []string {
	return []string{
		"npm_config_registry=http://127.0.0.1:9/",
		"npm_config_cache=" + t.TempDir(),
		"npm_config_fetch_retries=0",
		"npm_config_fetch_timeout=2000",
		"npm_config_offline=false",
	}
}

// seedCPU links the installed CPU build into ortDir, stamped as deps.sh
// stamps it, so that deps.sh has nothing to fetch for it.
func seedCPU(t *testing.T, ortDir string) {
	t.Helper()
	real := filepath.Join(testenv.ModuleRoot(), ".ort")
	stamp, err := os.ReadFile(filepath.Join(real, "VERSION"))
	if err != nil {
		testenv.Missing(t, "ONNX Runtime CPU build in "+real+" (make deps)")
	}
	if err := os.MkdirAll(filepath.Join(ortDir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(real, "lib", "libonnxruntime.so.1"), filepath.Join(ortDir, "lib", "libonnxruntime.so.1")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ortDir, "VERSION"), stamp, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDepsCUDANothingToDownload: with the CUDA build in place and stamped,
// deps.sh --cuda downloads nothing (npm could not), changes nothing and says
// nothing. With the stamp of another version it fetches again: offline, the
// run fails with one line naming the package and the registry, and leaves
// the installed files as they were.
func TestDepsCUDANothingToDownload(t *testing.T) {
	dir := installedCUDA(t)
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		testenv.Missing(t, "ffmpeg")
	}
	ortDir := t.TempDir()
	seedCPU(t, ortDir)
	cudaDir := filepath.Join(ortDir, "cuda")
	if err := os.Mkdir(cudaDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range cudaFiles {
		if err := os.Symlink(filepath.Join(dir, f), filepath.Join(cudaDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cudaDir, "VERSION"), []byte(cudaStamp+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := func() {
		t.Helper()
		entries, _ := os.ReadDir(cudaDir)
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
			if e.Name() != "VERSION" && e.Type()&os.ModeSymlink == 0 {
				t.Errorf("%s was replaced", e.Name())
			}
		}
		if want := append(slices.Clone(cudaFiles), "VERSION"); !sameSet(got, want) {
			t.Errorf("%s holds %v, want %v", cudaDir, got, want)
		}
	}

	code, stderr := deps(t, ortDir, offline(t), "--cuda")
	if code != 0 || stderr != "" {
		t.Fatalf("deps.sh --cuda with everything installed: exit %d, stderr %q; want 0 and nothing (no download)", code, stderr)
	}
	links()

	if err := os.WriteFile(filepath.Join(cudaDir, "VERSION"), []byte("onnxruntime-node@1.28.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stderr = deps(t, ortDir, offline(t), "--cuda")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if code == 0 {
		t.Fatalf("deps.sh --cuda with another version stamped and npm offline succeeded:\n%s", stderr)
	}
	for _, w := range []string{"npm pack onnxruntime-node@1.29.0 failed", "http://127.0.0.1:9/"} {
		if !strings.Contains(last, w) {
			t.Errorf("last stderr line %q does not say %q", last, w)
		}
	}
	if !strings.Contains(stderr, "fetching ONNX Runtime 1.29.0") {
		t.Errorf("stderr does not say it fetches:\n%s", stderr)
	}
	links()
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestDepsCUDAInstall downloads the two npm packages for real and installs
// the CUDA build into a scratch folder, then runs again offline and
// downloads nothing. About 290 MB: only with TOKENFLOW_TEST_CUDA_DEPS=1.
func TestDepsCUDAInstall(t *testing.T) {
	if os.Getenv("TOKENFLOW_TEST_CUDA_DEPS") != "1" {
		t.Skip("downloads about 290 MB from the npm registry: set TOKENFLOW_TEST_CUDA_DEPS=1 to run it")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatal("npm is missing: make deps-cuda needs it")
	}
	ortDir := t.TempDir()
	seedCPU(t, ortDir)
	code, stderr := deps(t, ortDir, nil, "--cuda")
	if code != 0 {
		t.Fatalf("deps.sh --cuda: exit %d\n%s", code, stderr)
	}
	t.Logf("deps.sh --cuda:\n%s", stderr)
	cudaDir := filepath.Join(ortDir, "cuda")
	got := testenv.DirNames(t, cudaDir)
	if want := append(slices.Clone(cudaFiles), "VERSION"); !sameSet(got, want) {
		t.Errorf("%s holds %v, want %v (nothing left under a temporary name)", cudaDir, got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(cudaDir, "VERSION")); strings.TrimSpace(string(b)) != cudaStamp {
		t.Errorf("stamp %q, want %q", b, cudaStamp)
	}
	// Each file is the shared library it is named after.
	for _, f := range cudaFiles {
		e, err := elf.Open(filepath.Join(cudaDir, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		soname, _ := e.DynString(elf.DT_SONAME)
		needed, _ := e.ImportedLibraries()
		e.Close()
		switch f {
		case "libonnxruntime_providers_cuda.so":
			for _, n := range cudaNeeds[:4] {
				if !slices.Contains(needed, n) {
					t.Errorf("%s does not need %s: not the CUDA 13 provider", f, n)
				}
			}
		default:
			if len(soname) != 1 || soname[0] != f {
				t.Errorf("%s has soname %v", f, soname)
			}
		}
	}
	// The core is 1.29.0, the providers' version.
	core, err := os.ReadFile(filepath.Join(cudaDir, "libonnxruntime.so.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(core), "1.29.0") {
		t.Errorf("libonnxruntime.so.1 has no version string 1.29.0")
	}

	code, stderr = deps(t, ortDir, offline(t), "--cuda")
	if code != 0 || stderr != "" {
		t.Errorf("second run, offline: exit %d, stderr %q; want 0 and nothing (no download)", code, stderr)
	}
}
