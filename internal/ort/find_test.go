package ort_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// fakeLib writes an empty file called name in dir: FindLibrary only looks
// for files, it does not load them.
func fakeLib(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// isolate clears every place FindLibrary looks, except next to the test
// binary, which holds no library.
func isolate(t *testing.T) {
	t.Helper()
	t.Setenv(ort.EnvVar, "")
	old, oldCUDA := ort.InstallDir, ort.CUDADir
	ort.InstallDir, ort.CUDADir = "", ""
	t.Cleanup(func() { ort.InstallDir, ort.CUDADir = old, oldCUDA })
}

func TestFindLibraryOrder(t *testing.T) {
	isolate(t)
	flagDir, envDir, installDir := t.TempDir(), t.TempDir(), t.TempDir()
	flagLib := fakeLib(t, flagDir, "libonnxruntime.so.1")
	envLib := fakeLib(t, envDir, "libonnxruntime.so")
	installLib := fakeLib(t, installDir, "libonnxruntime.so.1")
	fakeLib(t, installDir, "libonnxruntime.so") // .so.1 is preferred
	custom := fakeLib(t, t.TempDir(), "my-onnxruntime-build.so")

	cases := []struct {
		name    string
		flag    string
		env     string
		install string
		want    string
	}{
		{"flag file wins over everything", flagLib, envLib, installDir, flagLib},
		{"flag folder", flagDir, envLib, installDir, flagLib},
		{"flag file with any name", custom, envLib, installDir, custom},
		{"env file", "", envLib, installDir, envLib},
		{"env folder", "", envDir, installDir, envLib},
		{"install dir, .so.1 first", "", "", installDir, installLib},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(ort.EnvVar, c.env)
			ort.InstallDir = c.install
			got, err := ort.FindLibrary(c.flag, ort.CPU)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("FindLibrary(%q) = %s, want %s", c.flag, got, c.want)
			}
		})
	}
}

// The library next to the running binary comes after the flag and the
// variable, before InstallDir. The test binary's folder is a scratch folder
// of `go test`, so the test may put a file there.
func TestFindLibraryNextToBinary(t *testing.T) {
	isolate(t)
	exe, err := os.Executable()
	if err != nil {
		t.Skip("no executable path:", err)
	}
	dir := filepath.Dir(exe)
	lib := filepath.Join(dir, "libonnxruntime.so.1")
	if _, err := os.Stat(lib); err == nil {
		t.Skipf("%s already exists", lib)
	}
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Skipf("cannot write next to the test binary: %v", err)
	}
	t.Cleanup(func() { os.Remove(lib) })
	ort.InstallDir = t.TempDir()
	fakeLib(t, ort.InstallDir, "libonnxruntime.so.1")

	if got, err := ort.FindLibrary("", ort.CPU); err != nil || got != lib {
		t.Errorf("FindLibrary(\"\") = %s, %v; want %s", got, err, lib)
	}
	envLib := fakeLib(t, t.TempDir(), "libonnxruntime.so.1")
	t.Setenv(ort.EnvVar, envLib)
	if got, err := ort.FindLibrary("", ort.CPU); err != nil || got != envLib {
		t.Errorf("with $%s set: FindLibrary(\"\") = %s, %v; want %s", ort.EnvVar, got, err, envLib)
	}
}

func TestFindLibraryErrors(t *testing.T) {
	isolate(t)
	empty := t.TempDir()
	missing := filepath.Join(empty, "nope", "libonnxruntime.so.1")
	exe, _ := os.Executable()
	cases := []struct {
		name    string
		flag    string
		env     string
		install string
		want    []string // each in the message
	}{
		{"flag path missing", missing, "", "", []string{missing, "--ort-lib", "does not exist"}},
		// A wrong --ort-lib is an error even when the variable would work.
		{"flag path missing, env set", missing, fakeLib(t, t.TempDir(), "libonnxruntime.so.1"), "", []string{missing, "--ort-lib"}},
		{"flag folder without library", empty, "", "", []string{empty, "--ort-lib", "folder without"}},
		{"env path missing", "", missing, "", []string{missing, "$" + ort.EnvVar}},
		{"env folder without library", "", empty, "", []string{empty, "$" + ort.EnvVar}},
		{"nothing anywhere", "", "", empty, []string{"--ort-lib", "$" + ort.EnvVar, filepath.Dir(exe), empty, "make"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(ort.EnvVar, c.env)
			ort.InstallDir = c.install
			got, err := ort.FindLibrary(c.flag, ort.CPU)
			if err == nil {
				t.Fatalf("FindLibrary(%q) = %s, want an error", c.flag, got)
			}
			if !errors.Is(err, ort.ErrNoLibrary) {
				t.Errorf("error %q does not wrap ErrNoLibrary", err)
			}
			testenv.OneLine(t, flagWords(err), c.want...)
		})
	}
}

// For CUDA the order is --ort-lib, $ONNXRUNTIME_LIB, then CUDADir (or the
// folder "cuda" beside InstallDir); the CPU library in InstallDir is never
// taken for CUDA.
func TestFindLibraryForCUDA(t *testing.T) {
	isolate(t)
	flagLib := fakeLib(t, t.TempDir(), "libonnxruntime.so.1")
	envLib := fakeLib(t, t.TempDir(), "libonnxruntime.so.1")
	cudaDir := t.TempDir()
	cudaLib := fakeLib(t, cudaDir, "libonnxruntime.so.1")
	ortRoot := t.TempDir() // a make install: lib/ and cuda/ side by side
	installDir, siblingDir := filepath.Join(ortRoot, "lib"), filepath.Join(ortRoot, "cuda")
	for _, d := range []string{installDir, siblingDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fakeLib(t, installDir, "libonnxruntime.so.1")
	siblingLib := fakeLib(t, siblingDir, "libonnxruntime.so.1")

	cases := []struct {
		name, flag, env, install, cuda, want string
	}{
		{"flag wins", flagLib, envLib, installDir, cudaDir, flagLib},
		{"env before the CUDA folder", "", envLib, installDir, cudaDir, envLib},
		{"CUDADir", "", "", installDir, cudaDir, cudaLib},
		{"beside InstallDir when CUDADir is unset", "", "", installDir, "", siblingLib},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(ort.EnvVar, c.env)
			ort.InstallDir, ort.CUDADir = c.install, c.cuda
			got, err := ort.FindLibrary(c.flag, ort.CUDA)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("FindLibrary(%q, cuda) = %s, want %s", c.flag, got, c.want)
			}
			// The CPU search is unchanged by the CUDA folder.
			if c.flag == "" && c.env == "" {
				if cpu, err := ort.FindLibrary("", ort.CPU); err != nil || filepath.Dir(cpu) != installDir {
					t.Errorf("FindLibrary(\"\", cpu) = %s, %v; want the library in %s", cpu, err, installDir)
				}
			}
		})
	}

	t.Run("not installed", func(t *testing.T) {
		t.Setenv(ort.EnvVar, "")
		empty := t.TempDir()
		ort.InstallDir, ort.CUDADir = installDir, empty
		got, err := ort.FindLibrary("", ort.CUDA)
		if err == nil {
			t.Fatalf("FindLibrary with an empty CUDA folder = %s, want an error (not the CPU library)", got)
		}
		if !errors.Is(err, ort.ErrNoLibrary) {
			t.Errorf("error %q does not wrap ErrNoLibrary", err)
		}
		for _, w := range []string{empty, "make deps-cuda", "--ort-lib"} {
			if !strings.Contains(flagWords(err), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
	})
}

// flagWords is err's message with the settings it names worded as flags
// (ort_lib as --ort-lib), as the command line words them.
func flagWords(err error) string {
	var w interface {
		error
		Words(func(string) string) string
	}
	if !errors.As(err, &w) {
		return err.Error()
	}
	flag := func(setting string) string { return "--" + strings.ReplaceAll(setting, "_", "-") }
	return strings.Replace(err.Error(), w.Error(), w.Words(flag), 1)
}
