// Package ort runs ONNX graphs in ONNX Runtime. It is the only package that
// imports onnxruntime_go; its API carries Go types only.
//
// One ONNX Runtime environment exists per process: Init loads the shared
// library once, and every Session comes from it.
package ort

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"
)

// InstallDir is the folder where `make` puts the ONNX Runtime library
// (set at link time with -ldflags "-X .../internal/ort.InstallDir=...").
var InstallDir = ""

// EnvVar names the environment variable that points at the library.
const EnvVar = "ONNXRUNTIME_LIB"

// ErrNoLibrary is returned when no ONNX Runtime shared library can be found.
var ErrNoLibrary = errors.New("ONNX Runtime library not found")

// ErrNoCUDA is returned when CUDA is asked for and the loaded library has no
// CUDA execution provider.
var ErrNoCUDA = errors.New("the ONNX Runtime library has no CUDA execution provider")

var libNames = []string{"libonnxruntime.so.1", "libonnxruntime.so", "libonnxruntime.dylib", "onnxruntime.dll"}

var state struct {
	sync.Mutex
	path string
	err  error
	done bool
}

// FindLibrary returns the library to load, looking in this order: flagPath
// (--ort-lib), $ONNXRUNTIME_LIB, next to the running binary, InstallDir.
func FindLibrary(flagPath string) (string, error) {
	if flagPath != "" {
		return existing(flagPath, "--ort-lib")
	}
	if p := os.Getenv(EnvVar); p != "" {
		return existing(p, "$"+EnvVar)
	}
	var looked []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		if p, ok := firstLib(dir); ok {
			return p, nil
		}
		looked = append(looked, dir)
	}
	if InstallDir != "" {
		if p, ok := firstLib(InstallDir); ok {
			return p, nil
		}
		looked = append(looked, InstallDir)
	}
	return "", fmt.Errorf("%w (looked in --ort-lib, $%s, %s): run `make deps` or pass --ort-lib /path/to/libonnxruntime.so",
		ErrNoLibrary, EnvVar, strings.Join(looked, ", "))
}

func existing(p, from string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%w: %s (from %s) does not exist", ErrNoLibrary, p, from)
	}
	if st.IsDir() {
		if lib, ok := firstLib(p); ok {
			return lib, nil
		}
		return "", fmt.Errorf("%w: %s (from %s) is a folder without libonnxruntime", ErrNoLibrary, p, from)
	}
	return p, nil
}

func firstLib(dir string) (string, bool) {
	for _, name := range libNames {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, true
		}
	}
	return "", false
}

// Init loads the ONNX Runtime library (found as FindLibrary says) and creates
// the process's environment. Later calls return the first call's result.
func Init(flagPath string) error {
	state.Lock()
	defer state.Unlock()
	if state.done {
		return state.err
	}
	state.done = true
	path, err := FindLibrary(flagPath)
	if err != nil {
		state.err = err
		return err
	}
	ortgo.SetSharedLibraryPath(path)
	// Fatal only: every error ONNX Runtime logs also comes back as the status
	// of the failing call, which we return; logging it too would print a
	// second, coloured copy on stderr.
	if err := ortgo.InitializeEnvironment(ortgo.WithLogLevelFatal()); err != nil {
		state.err = fmt.Errorf("load ONNX Runtime from %s: %s", path, oneLine(err))
		return state.err
	}
	state.path = path
	return nil
}

// LibraryPath is the path of the loaded library ("" before Init succeeds).
func LibraryPath() string {
	state.Lock()
	defer state.Unlock()
	return state.path
}

// Version is the loaded library's version string.
func Version() string {
	if !ortgo.IsInitialized() {
		return ""
	}
	return ortgo.GetVersion()
}

// Providers lists the execution providers the loaded library can use, probed by
// appending each to a throwaway session configuration.
func Providers() []string {
	if !ortgo.IsInitialized() {
		return nil
	}
	out := []string{"CPUExecutionProvider"}
	if cudaAvailable() == nil {
		out = append(out, "CUDAExecutionProvider")
	}
	return out
}

func cudaAvailable() error {
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		return err
	}
	defer so.Destroy()
	return appendCUDA(so, 0)
}

func appendCUDA(so *ortgo.SessionOptions, device int) error {
	cuda, err := ortgo.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("%w (%s): use a GPU build of ONNX Runtime via --ort-lib, or --device cpu", ErrNoCUDA, oneLine(err))
	}
	defer cuda.Destroy()
	if err := cuda.Update(map[string]string{"device_id": fmt.Sprint(device)}); err != nil {
		return fmt.Errorf("%w (%s): use a GPU build of ONNX Runtime via --ort-lib, or --device cpu", ErrNoCUDA, oneLine(err))
	}
	if err := so.AppendExecutionProviderCUDA(cuda); err != nil {
		return fmt.Errorf("%w (%s): use a GPU build of ONNX Runtime via --ort-lib, or --device cpu", ErrNoCUDA, oneLine(err))
	}
	return nil
}

// oneLine keeps the first line of an error from the C library.
func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
