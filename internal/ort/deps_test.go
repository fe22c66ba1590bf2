package ort_test

// scripts/deps.sh --cuda (make deps-cuda), run for real into scratch
// folders ($TOKENFLOW_ORT_DIR). The full download (about 290 MB from the npm
// registry) runs only with TOKENFLOW_TEST_CUDA_DEPS=1; the other tests use
// the files `make deps-cuda` already installed in .ort/ and an npm that
// cannot reach any registry, so that any download attempt fails the run.

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

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
