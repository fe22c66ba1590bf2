package ort_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/testenv/ortsession"
)

// startORT loads the library for the package's tests. Init keeps its first
// result for the whole process, so every test goes through here with the
// real library.
func startORT(t testing.TB) string {
	t.Helper()
	lib := testenv.ORTLibrary(t)
	if err := ort.Init(lib); err != nil {
		t.Fatal(err)
	}
	return lib
}

// newSession loads g with one intra-op thread; it is closed when t ends.
func newSession(t testing.TB, g *onnx.Graph, inputs, outputs []string) *ort.Session {
	t.Helper()
	return ortsession.New(t, g, ort.SessionOptions{Inputs: inputs, Outputs: outputs, Threads: 1})
}

// addGraph is y = a + b on float32 [n].
func addGraph() *onnx.Graph {
	g := onnx.NewGraph("add")
	a := g.Input("a", onnx.Float, onnx.P("n"))
	b := g.Input("b", onnx.Float, onnx.P("n"))
	g.Output("y", g.Add(a, b), onnx.Float, onnx.P("n"))
	return g
}

func TestInitOnce(t *testing.T) {
	lib := startORT(t)
	if got := ort.LibraryPath(); got != lib {
		t.Errorf("LibraryPath() = %q, want %q", got, lib)
	}
	// Later calls return the first result, whatever they ask for.
	if err := ort.Init("/nonexistent/libonnxruntime.so.1"); err != nil {
		t.Errorf("second Init with another path: %v, want the first call's nil", err)
	}
	if got := ort.LibraryPath(); got != lib {
		t.Errorf("after a second Init, LibraryPath() = %q, want %q", got, lib)
	}
}

func TestVersionAndProviders(t *testing.T) {
	startORT(t)
	v := ort.Version()
	if v == "" || !strings.HasPrefix(v, "1.") {
		t.Errorf("Version() = %q, want 1.x", v)
	}
	t.Logf("ONNX Runtime %s", v)
	p := ort.Providers()
	if !slices.Contains(p, "CPUExecutionProvider") {
		t.Errorf("Providers() = %v, want CPUExecutionProvider among them", p)
	}
	// The test library is the CPU build.
	if slices.Contains(p, "CUDAExecutionProvider") {
		t.Logf("this library has CUDA; the CPU-only checks below will be skipped")
	}
}

func TestCUDAOnCPUBuild(t *testing.T) {
	startORT(t)
	if slices.Contains(ort.Providers(), "CUDAExecutionProvider") {
		t.Skip("the library has a CUDA execution provider")
	}
	_, err := ort.NewSession(ortsession.Marshal(t, addGraph()), ort.SessionOptions{Device: ort.CUDA, Inputs: []string{"a", "b"}, Outputs: []string{"y"}})
	if !errors.Is(err, ort.ErrNoCUDA) {
		t.Fatalf("NewSession with CUDA on a CPU build: %v, want ErrNoCUDA", err)
	}
	msg := flagWords(err)
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans several lines: %q", msg)
	}
	// The CPU build has no provider libraries beside it: the error names
	// them and the command that installs a build that has.
	for _, hint := range []string{"--ort-lib", "--device cpu", "libonnxruntime_providers_cuda.so", "make deps-cuda"} {
		if !strings.Contains(msg, hint) {
			t.Errorf("error %q does not say what to do (%s)", msg, hint)
		}
	}
}

func TestParseDevice(t *testing.T) {
	for _, c := range []struct {
		in   string
		want ort.Device
		ok   bool
	}{
		{"cpu", ort.CPU, true},
		{"cuda", ort.CUDA, true},
		{"", "", false},
		{"gpu", "", false},
		{"CPU", "", false},
	} {
		got, err := ort.ParseDevice(c.in)
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("ParseDevice(%q) = %q, %v; want %q, ok %v", c.in, got, err, c.want, c.ok)
		}
		var pe *param.Error
		if err != nil && (!errors.As(err, &pe) || pe.Name != "device" || !strings.Contains(pe.Reason, "cpu or cuda")) {
			t.Errorf("ParseDevice(%q): error %#v is not about the device setting, listing the choices", c.in, err)
		}
	}
}

func TestNewSessionErrors(t *testing.T) {
	startORT(t)
	good := ortsession.Marshal(t, addGraph())
	cases := []struct {
		name  string
		model []byte
		opts  ort.SessionOptions
		want  string
	}{
		{"no input names", good, ort.SessionOptions{Outputs: []string{"y"}}, "input and output names"},
		{"unknown device", good, ort.SessionOptions{Device: "tpu", Inputs: []string{"a", "b"}, Outputs: []string{"y"}}, "tpu"},
		{"not a model", []byte("not protobuf"), ort.SessionOptions{Inputs: []string{"a", "b"}, Outputs: []string{"y"}}, "create session"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ort.NewSession(c.model, c.opts)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := ort.NewSessionFromFile("/nonexistent/model.onnx", ort.SessionOptions{Inputs: []string{"a"}, Outputs: []string{"y"}})
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/model.onnx") {
			t.Errorf("NewSessionFromFile on a missing file: %v, want an error naming it", err)
		}
	})
}
