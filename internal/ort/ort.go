// Package ort runs ONNX graphs in ONNX Runtime. It is the only package that
// imports onnxruntime_go; its API carries Go types only.
//
// One ONNX Runtime environment exists per process: Init loads the shared
// library once, and every Session comes from it.
//
// Where a text of this package mentions a setting of its caller, it names
// it in braces, as package param does: {ort_lib} is the library to load
// (the flagPath of FindLibrary and Init), {device} the execution device.
// Errors with such texts have a method Words(name func(string) string)
// string that names each setting by name(setting), in the caller's terms;
// their Error names the settings plainly.
package ort

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/tokenflow/tokenflow/internal/param"
)

// InstallDir is the folder where `make` puts the ONNX Runtime library
// (set at link time with -ldflags "-X .../internal/ort.InstallDir=...").
var InstallDir = ""

// EnvVar names the environment variable that points at the library.
const EnvVar = "ONNXRUNTIME_LIB"

// ErrNoLibrary is returned when no ONNX Runtime shared library can be found
// (the errors say where it was looked for, naming {ort_lib}: see Words).
var ErrNoLibrary = errors.New("ONNX Runtime library not found")

// ErrNoCUDA is returned when CUDA is asked for and the CUDA execution
// provider cannot run (the errors are *CUDAError, which say what is missing).
var ErrNoCUDA = errors.New("the CUDA execution provider cannot run")

var libNames = []string{"libonnxruntime.so.1", "libonnxruntime.so", "libonnxruntime.dylib", "onnxruntime.dll"}

// Where a library was found (CUDAStack.From).
const (
	fromFlag    = "{ort_lib}"
	fromEnv     = "$" + EnvVar
	fromBinary  = "next to the binary"
	fromMake    = "make deps"
	fromMakeGPU = "make deps-cuda"
)

var state struct {
	sync.Mutex
	path string
	from string
	err  error
	done bool
}

// FindLibrary returns the library to load for a device. For the CPU it
// looks in this order: flagPath (the ort_lib setting), $ONNXRUNTIME_LIB, next
// to the running binary, InstallDir. For CUDA the order is flagPath,
// $ONNXRUNTIME_LIB, then the folder of `make deps-cuda` (CUDADir): the CPU
// library next to the binary or in InstallDir is never taken for CUDA.
func FindLibrary(flagPath string, dev Device) (string, error) {
	p, _, err := findLibrary(flagPath, dev)
	return p, err
}

// findLibrary also says where the library was found.
func findLibrary(flagPath string, dev Device) (path, from string, err error) {
	if flagPath != "" {
		p, err := existing(flagPath, fromFlag)
		return p, fromFlag, err
	}
	if p := os.Getenv(EnvVar); p != "" {
		p, err := existing(p, fromEnv)
		return p, fromEnv, err
	}
	if dev == CUDA {
		dir := CUDADir
		if dir == "" && InstallDir != "" {
			dir = filepath.Join(filepath.Dir(InstallDir), "cuda")
		}
		if dir != "" {
			if p, ok := firstLib(dir); ok {
				return p, fromMakeGPU, nil
			}
		} else {
			dir = "no make deps-cuda folder (this binary was not built by make)"
		}
		return "", "", libraryErrorf(" for CUDA (looked in {ort_lib}, $%s, %s): run `make deps-cuda`, or pass {ort_lib} /path/to/a GPU build of libonnxruntime.so",
			EnvVar, dir)
	}
	var looked []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		if p, ok := firstLib(dir); ok {
			return p, fromBinary, nil
		}
		looked = append(looked, dir)
	}
	if InstallDir != "" {
		if p, ok := firstLib(InstallDir); ok {
			return p, fromMake, nil
		}
		looked = append(looked, InstallDir)
	}
	return "", "", libraryErrorf(" (looked in {ort_lib}, $%s, %s): run `make deps` or pass {ort_lib} /path/to/libonnxruntime.so",
		EnvVar, strings.Join(looked, ", "))
}

func existing(p, from string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", libraryErrorf(": %s (from %s) does not exist", p, from)
	}
	if st.IsDir() {
		if lib, ok := firstLib(p); ok {
			return lib, nil
		}
		return "", libraryErrorf(": %s (from %s) is a folder without libonnxruntime", p, from)
	}
	return p, nil
}

// libraryError is ErrNoLibrary followed by where the library was looked for
// and what to do: text, which names settings in braces.
type libraryError struct{ text string }

// libraryErrorf formats the text after ErrNoLibrary's: " (looked in ...)",
// ": path ...".
func libraryErrorf(format string, a ...any) error {
	return &libraryError{ErrNoLibrary.Error() + fmt.Sprintf(format, a...)}
}

func (e *libraryError) Error() string                         { return param.Render(e.text, param.Plain) }
func (e *libraryError) Words(name func(string) string) string { return param.Render(e.text, name) }
func (e *libraryError) Unwrap() error                         { return ErrNoLibrary }

func firstLib(dir string) (string, bool) {
	for _, name := range libNames {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p, true
		}
	}
	return "", false
}

// Init loads the ONNX Runtime library (found as FindLibrary says) and creates
// the process's environment. Later calls return the first call's result.
func Init(flagPath string) error { return InitDevice(flagPath, CPU) }

// InitDevice is Init for a device. For CUDA the library is found as
// FindLibrary says, and once it is loaded the CUDA provider is probed
// (checkCUDA; the error is a *CUDAError), so that a missing part of the CUDA
// stack is reported when the run starts, before any work. The library is
// loaded once per process; the probe runs on every call for CUDA.
func InitDevice(flagPath string, dev Device) error {
	if err := load(flagPath, dev); err != nil {
		return err
	}
	if dev == CUDA {
		return checkCUDA()
	}
	return nil
}

func load(flagPath string, dev Device) error {
	state.Lock()
	defer state.Unlock()
	if state.done {
		return state.err
	}
	state.done = true
	path, from, err := findLibrary(flagPath, dev)
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
	state.path, state.from = path, from
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
	return appendCUDA(so)
}

// oneLine keeps the first line of an error from the C library.
func oneLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return strings.TrimSpace(s)
}
