package ort

// The CUDA stack, layer by layer, as ONNX Runtime's CUDA execution provider
// meets it when a session appends it:
//
//  1. the core library (libonnxruntime.so.1), a build with the provider
//     bridge: it loads the two provider libraries from its own folder;
//  2. libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so;
//  3. the libraries the CUDA provider is linked against (its ELF NEEDED
//     entries: cuBLAS, cuRAND, the CUDA runtime, the driver's libcuda.so.1),
//     found by the dynamic loader's search, plus cuDNN, which it opens
//     itself at run time;
//  4. a GPU the driver can see, with a driver new enough for the CUDA
//     version the provider was built with.
//
// InspectCUDA checks 1-4 without loading ONNX Runtime (doctor reports each
// line); InitDevice adds the last step (checkCUDA), the provider appended for
// real, once the library is loaded. Either names what is missing and what to
// do.

import (
	"cmp"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/tokenflow/tokenflow/internal/param"
)

// CUDADir is the folder where `make deps-cuda` puts the CUDA build of ONNX
// Runtime (set at link time with -ldflags "-X .../internal/ort.CUDADir=...").
// When empty, the folder "cuda" beside InstallDir.
var CUDADir = ""

// The files of the CUDA stack that are looked for by name.
const (
	providersShared = "libonnxruntime_providers_shared.so"
	providersCUDA   = "libonnxruntime_providers_cuda.so"
	driverLib       = "libcuda.so.1"
	// cuDNN is not among the provider's NEEDED entries: the provider opens
	// it when the first convolution runs.
	cudnnLib = "libcudnn.so.9"
	// stampFile, beside the library, names the npm packages make deps-cuda
	// took it from.
	stampFile = "VERSION"
)

// defaultNeeds are the NEEDED entries of the CUDA provider `make deps-cuda`
// installs (readelf -d libonnxruntime_providers_cuda.so of
// com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9, ONNX Runtime 1.29.0):
// what doctor checks before that provider is installed.
var defaultNeeds = []string{"libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcudart.so.13", driverLib}

// systemLibs are NEEDED entries every Linux system has; they are not part
// of the CUDA stack.
var systemLibs = []string{"libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0",
	"libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}

// minDriver is the oldest Linux driver branch each CUDA major version runs on
// (NVIDIA's CUDA toolkit release notes: 525.60.13 for 12.x, 580.65.06 for 13.x).
var minDriver = map[int]string{12: "525", 13: "580"}

// CUDAStack is what the CUDA device needs on this machine, each part found or
// not. It is checked without loading ONNX Runtime.
type CUDAStack struct {
	Library    string // the ONNX Runtime library the CUDA device loads ("" when none is found)
	From       string // where Library comes from: "{ort_lib}" (the setting, in braces), "$ONNXRUNTIME_LIB" or "make deps-cuda"
	LibraryErr error  // why no library was found
	Installed  string // the packages make deps-cuda installed it from (its VERSION stamp), if any
	Providers  []Lib  // the provider libraries beside Library
	Needs      []Lib  // the libraries the CUDA provider loads
	NeedsFrom  string // the provider whose NEEDED entries Needs lists ("" for defaultNeeds)
	CUDAMajor  int    // the CUDA major version the provider is built for (from libcudart.so.N); 0 if unknown
	GPU        GPUStatus
}

// Lib is one shared library of the stack, found or not.
type Lib struct {
	Name string // file name (for Needs, the name the loader searches for)
	What string // what it is part of ("cuBLAS", "NVIDIA driver", ...)
	Path string // where it was found
	Err  error  // why it was not
}

// GPUStatus is what the NVIDIA driver reports.
type GPUStatus struct {
	DriverCUDA int         // the CUDA version the driver supports (13000 is 13.0); 0 when unknown
	Devices    []GPUDevice // the devices it sees
	DeviceNode bool        // /dev/nvidia0 exists
	Err        error       // why no GPU can be used
}

// GPUDevice is one GPU.
type GPUDevice struct {
	Index      int
	Name       string
	MemoryMB   int
	Capability string // compute capability, "8.6"
}

// CUDAError says why the CUDA execution provider cannot run: what is
// missing, by file name, and what to do. It wraps ErrNoCUDA. Its Step (and
// its Err, when ErrNoLibrary) names settings in braces: see Words.
type CUDAError struct {
	What    string   // what is wrong ("missing <files> in <folder>", "no usable GPU (...)")
	Missing []string // files the stack lacks, by name
	Err     error    // FindLibrary's error, or ONNX Runtime's own when it is the one that failed
	Step    string   // what to do, naming settings in braces ({ort_lib}, {device})
}

func (e *CUDAError) Error() string { return e.Words(param.Plain) }

// Words is the message with every setting named by name(setting).
func (e *CUDAError) Words(name func(string) string) string {
	var le *libraryError
	if errors.As(e.Err, &le) {
		// FindLibrary's error says where it looked and what to do.
		return "CUDA: " + le.Words(name)
	}
	return "CUDA: " + e.What + ": " + param.Render(e.Step, name)
}

func (e *CUDAError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrNoCUDA, e.Err}
	}
	return []error{ErrNoCUDA}
}

// InspectCUDA checks what the CUDA device would need, without loading ONNX
// Runtime: the library FindLibrary(flagPath, CUDA) finds, the provider
// libraries beside it, each library the provider loads (dlopen'ed by name,
// as the provider's loader will), and the GPU.
func InspectCUDA(flagPath string) CUDAStack {
	path, from, err := findLibrary(flagPath, CUDA) // path is "" on error
	s := CUDAStack{Library: path, From: from, LibraryErr: err}
	s.inspect()
	return s
}

// inspectLoaded is InspectCUDA for the library Init loaded.
func inspectLoaded() CUDAStack {
	state.Lock()
	s := CUDAStack{Library: state.path, From: state.from}
	state.Unlock()
	s.inspect()
	return s
}

func (s *CUDAStack) inspect() {
	needs := defaultNeeds
	if s.Library != "" {
		dir := filepath.Dir(s.Library)
		if b, err := os.ReadFile(filepath.Join(dir, stampFile)); err == nil {
			s.Installed = strings.TrimSpace(string(b))
		}
		for _, name := range []string{providersShared, providersCUDA} {
			l := Lib{Name: name, What: "ONNX Runtime CUDA provider"}
			if p := filepath.Join(dir, name); fileExists(p) {
				l.Path = p
			} else {
				l.Err = fmt.Errorf("not in %s", dir)
			}
			s.Providers = append(s.Providers, l)
		}
		if p := s.Providers[1].Path; p != "" {
			n, err := providerNeeds(p)
			if err != nil {
				s.Providers[1].Err = err
				s.Providers[1].Path = ""
			} else {
				needs, s.NeedsFrom = n, p
			}
		}
	}
	for _, name := range withCuDNN(needs) {
		l := Lib{Name: name, What: libWhat(name)}
		l.Path, l.Err = dlopenCheck(name)
		s.Needs = append(s.Needs, l)
		if m := cudartRe.FindStringSubmatch(name); m != nil {
			s.CUDAMajor, _ = strconv.Atoi(m[1])
		}
	}
	s.GPU = probeGPU()
}

var cudartRe = regexp.MustCompile(`^libcudart\.so\.(\d+)$`)

// providerNeeds reads the CUDA provider's NEEDED entries, without the
// system's own libraries.
func providerNeeds(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("not a shared library: %v", err)
	}
	defer f.Close()
	all, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("cannot read its dependencies: %v", err)
	}
	var out []string
	for _, n := range all {
		if !slices.Contains(systemLibs, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// withCuDNN adds cuDNN to the provider's needs, before the driver.
func withCuDNN(needs []string) []string {
	out := slices.Clone(needs)
	if slices.Contains(out, cudnnLib) {
		return out
	}
	if i := slices.Index(out, driverLib); i >= 0 {
		return slices.Insert(out, i, cudnnLib)
	}
	return append(out, cudnnLib)
}

// libWhat names the NVIDIA component a library belongs to.
func libWhat(name string) string {
	for _, p := range []struct{ prefix, what string }{
		{"libcublas", "cuBLAS"},
		{"libcurand", "cuRAND"},
		{"libcudart", "CUDA runtime"},
		{"libcudnn", "cuDNN 9"},
		{"libcufft", "cuFFT"},
		{"libnvrtc", "NVRTC"},
		{"libcuda.so", "NVIDIA driver"},
	} {
		if strings.HasPrefix(name, p.prefix) {
			return p.what
		}
	}
	return ""
}

// DriverTooOld reports whether the driver supports an older CUDA than the
// provider is built for.
func (s CUDAStack) DriverTooOld() bool {
	return s.CUDAMajor > 0 && s.GPU.DriverCUDA > 0 && s.GPU.DriverCUDA/1000 < s.CUDAMajor
}

// Err is nil when the stack is complete, else a *CUDAError saying what is
// missing and what to do.
func (s CUDAStack) Err() error {
	const install = "`make deps-cuda` (ONNX Runtime 1.29 with its CUDA provider, into .ort/cuda)"
	providers, needs := missingNames(s.Providers), missingNames(s.Needs)
	switch {
	case s.LibraryErr != nil:
		return &CUDAError{Err: s.LibraryErr, Step: "run " + install + ", or pass {ort_lib} a GPU build of ONNX Runtime, or use {device} cpu"}
	case len(providers) > 0:
		dir := filepath.Dir(s.Library)
		step := "the install in " + dir + " is incomplete: run `make deps-cuda` again, or use {device} cpu"
		if s.From != fromMakeGPU {
			step = fmt.Sprintf("%s (from %s) is not a GPU build of ONNX Runtime with its providers beside it: pass {ort_lib} a GPU build, or leave {ort_lib} and $%s unset to use %s, or use {device} cpu",
				s.Library, s.From, EnvVar, install)
		}
		return &CUDAError{What: "missing " + strings.Join(providers, ", ") + " in " + dir, Missing: providers, Step: step}
	case len(needs) > 0:
		what := "missing " + strings.Join(needs, ", ") + " (needed by " + cmp.Or(s.NeedsFrom, providersCUDA) + ")"
		return &CUDAError{What: what, Missing: needs, Step: s.installStep()}
	case s.DriverTooOld():
		return &CUDAError{
			What: fmt.Sprintf("no usable GPU (the NVIDIA driver supports CUDA %d.%d, the provider needs CUDA %d)", s.GPU.DriverCUDA/1000, s.GPU.DriverCUDA%1000/10, s.CUDAMajor),
			Step: fmt.Sprintf("update the NVIDIA driver to %s or newer (CUDA %d), or use {device} cpu", s.driverBranch(), s.CUDAMajor),
		}
	case s.GPU.Err != nil:
		return &CUDAError{
			What: "no usable GPU (" + oneLine(s.GPU.Err) + ")",
			Step: "make a GPU visible to this process: check that `nvidia-smi` lists one (in a container, start it with the GPUs, e.g. docker run --gpus all), or use {device} cpu",
		}
	}
	return nil
}

func missingNames(libs []Lib) []string {
	var out []string
	for _, l := range libs {
		if l.Err != nil {
			out = append(out, l.Name)
		}
	}
	return out
}

// Step is the next thing to do, in one sentence ("" when nothing is),
// naming settings in braces ({ort_lib}, {device}).
func (s CUDAStack) Step() string {
	var e *CUDAError
	if errors.As(s.Err(), &e) {
		return e.Step
	}
	return ""
}

// installStep says which NVIDIA components to install for the missing
// needs.
func (s CUDAStack) installStep() string {
	var parts, cuda []string
	driver, cudnn := false, false
	for _, l := range s.Needs {
		if l.Err == nil {
			continue
		}
		switch {
		case l.Name == driverLib:
			driver = true
		case strings.HasPrefix(l.Name, "libcudnn"):
			cudnn = true
		case l.What != "" && !slices.Contains(cuda, l.What):
			cuda = append(cuda, l.What)
		case l.What == "":
			cuda = append(cuda, l.Name)
		}
	}
	ver := "CUDA"
	if s.CUDAMajor > 0 {
		ver = fmt.Sprintf("CUDA %d", s.CUDAMajor)
	}
	if driver {
		parts = append(parts, "the NVIDIA driver ("+s.driverBranch()+" or newer)")
	}
	if len(cuda) > 0 {
		parts = append(parts, "the "+ver+" libraries ("+strings.Join(cuda, ", ")+")")
	}
	if cudnn {
		parts = append(parts, "cuDNN 9 for "+ver)
	}
	list := parts[0]
	if len(parts) > 1 {
		list = strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
	}
	return "install " + list + " where the dynamic loader finds them (ldconfig, or LD_LIBRARY_PATH; see docs/gpu.md), then check with `tokenflow doctor {device} cuda`; or use {device} cpu"
}

// driverBranch is the oldest driver for the provider's CUDA version.
func (s CUDAStack) driverBranch() string {
	if b, ok := minDriver[s.CUDAMajor]; ok {
		return b
	}
	return "a driver for CUDA " + strconv.Itoa(s.CUDAMajor)
}

// checkCUDA makes sure the loaded library can run sessions on CUDA: first
// the checks of InspectCUDA, for the loaded library, then the provider
// itself, appended with the options sessions use to a throwaway session
// configuration (this is where ONNX Runtime loads it). The error is a
// *CUDAError.
func checkCUDA() error {
	if err := inspectLoaded().Err(); err != nil {
		return err
	}
	if err := cudaAvailable(); err != nil {
		return providerError(err)
	}
	return nil
}

// providerError is ONNX Runtime's own failure to start the CUDA provider.
func providerError(err error) error {
	return &CUDAError{
		What: "ONNX Runtime cannot start its CUDA provider (" + oneLine(err) + ")",
		Err:  err,
		Step: "see docs/gpu.md; `tokenflow doctor {device} cuda` lists the CUDA stack; or use {device} cpu",
	}
}

// cudaOptions are the CUDA provider options of every session, as ONNX
// Runtime documents them (docs: CUDA Execution Provider, Configuration
// Options; Performance, Tune performance, Convolution-heavy models), chosen
// for Stable Diffusion's UNet and VAE: convolution-heavy graphs run many
// times at few shapes, with activations of hundreds of MB.
//
//   - cudnn_conv_algo_search EXHAUSTIVE: cuDNN benchmarks the convolution
//     algorithms once per shape and keeps the fastest; the cost is paid on
//     the first step of a batch size and repaid over the 50 steps (it is
//     ONNX Runtime's default: set so that it stays whatever the default).
//   - cudnn_conv_use_max_workspace 1: that search may pick algorithms that
//     need a large workspace, the documented advice for convolution-heavy
//     models.
//   - arena_extend_strategy kSameAsRequested: the GPU memory arena grows by
//     what is asked, not to the next power of two, which with SD's
//     activations would reserve GBs that are never used.
//   - do_copy_in_default_stream 1: copies on the compute stream, the setting
//     the docs recommend (others may race).
//
// use_tf32 is left at ONNX Runtime's default (on: Ampere and newer GPUs run
// float32 matrix products in TF32, as PyTorch does for convolutions).
var cudaOptions = map[string]string{
	"device_id":                    "0",
	"cudnn_conv_algo_search":       "EXHAUSTIVE",
	"cudnn_conv_use_max_workspace": "1",
	"arena_extend_strategy":        "kSameAsRequested",
	"do_copy_in_default_stream":    "1",
}

// appendCUDA appends the CUDA provider (device 0) to so; the error is ONNX
// Runtime's.
func appendCUDA(so *ortgo.SessionOptions) error {
	cuda, err := ortgo.NewCUDAProviderOptions()
	if err != nil {
		return errors.New(ortMessage(err))
	}
	defer cuda.Destroy()
	// Setting the options is where ONNX Runtime loads the provider library.
	if err := cuda.Update(cudaOptions); err != nil {
		return errors.New(ortMessage(err))
	}
	if err := so.AppendExecutionProviderCUDA(cuda); err != nil {
		return errors.New(ortMessage(err))
	}
	return nil
}

// ortStatus matches the source location and status code ONNX Runtime puts
// before its messages ("/onnxruntime_src/...cc:1988 ... [ONNXRuntimeError] :
// 1 : FAIL : ").
var ortStatus = regexp.MustCompile(`^.*\[ONNXRuntimeError\] : \d+ : [A-Z_]+ : `)

// ortMessage is the first line of an ONNX Runtime error without its source
// location and status code.
func ortMessage(err error) string {
	return ortStatus.ReplaceAllString(oneLine(err), "")
}

// cudaSessionError explains a failure to append the CUDA provider to a
// session: what the stack lacks when something is missing, else ONNX
// Runtime's own error.
func cudaSessionError(err error) error {
	if e := inspectLoaded().Err(); e != nil {
		return e
	}
	return providerError(err)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
