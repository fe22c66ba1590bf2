// Package ortsession opens small ONNX graphs in ONNX Runtime for tests and
// runs them, failing the test on any error. It is apart from testenv because
// it imports onnx, whose own dependencies' tests use testenv.
package ortsession

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// Marshal builds g into a model's bytes, failing t on construction errors.
func Marshal(t testing.TB, g *onnx.Graph) []byte {
	t.Helper()
	m, err := g.Model("tokenflow-test", "0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// New loads ONNX Runtime and opens g from its marshalled bytes with
// opts; the session is closed when t ends.
func New(t testing.TB, g *onnx.Graph, opts ort.SessionOptions) *ort.Session {
	t.Helper()
	testenv.ORT(t)
	s, err := ort.NewSession(Marshal(t, g), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Saved saves g into a temporary folder (weights linked next to it
// in weights.bin, as `models export` does) and opens model.onnx from there
// with opts; the session is closed when t ends.
func Saved(t testing.TB, g *onnx.Graph, opts ort.SessionOptions) *ort.Session {
	t.Helper()
	testenv.ORT(t)
	m, err := g.Model("tokenflow-test", "0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := onnx.Save(m, dir, "model.onnx", onnx.SaveOptions{DataFile: "weights.bin", InlineLimit: 1 << 16}); err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSessionFromFile(filepath.Join(dir, "model.onnx"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Ports lists g's input and output names in graph order.
func Ports(g *onnx.Graph) (inputs, outputs []string) {
	for _, v := range g.Proto().Inputs {
		inputs = append(inputs, v.Name)
	}
	for _, v := range g.Proto().Outputs {
		outputs = append(outputs, v.Name)
	}
	return inputs, outputs
}

// Run evaluates s on inputs, failing t on error.
func Run(t testing.TB, s *ort.Session, inputs ...ort.Tensor) []ort.Tensor {
	t.Helper()
	out, err := s.Run(context.Background(), inputs...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Data is x's elements, failing t when they are not of type T.
func Data[T ort.Elem](t testing.TB, x ort.Tensor) []T {
	t.Helper()
	d, err := ort.Data[T](x)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// RunF32 evaluates s on inputs and returns every output as float32s.
func RunF32(t testing.TB, s *ort.Session, inputs ...ort.Tensor) [][]float32 {
	t.Helper()
	outs := Run(t, s, inputs...)
	res := make([][]float32, len(outs))
	for i, o := range outs {
		res[i] = Data[float32](t, o)
	}
	return res
}

// RunNamed evaluates s, whose inputs and outputs are the named ones in that
// order, on the values in in, and returns its outputs by name. It fails t
// when in lacks an input.
func RunNamed(t testing.TB, s *ort.Session, inputs, outputs []string, in map[string]ort.Tensor) map[string]ort.Tensor {
	t.Helper()
	args := make([]ort.Tensor, len(inputs))
	for i, name := range inputs {
		v, ok := in[name]
		if !ok {
			t.Fatalf("no value for input %s", name)
		}
		args[i] = v
	}
	outs := Run(t, s, args...)
	res := make(map[string]ort.Tensor, len(outs))
	for i, name := range outputs {
		res[name] = outs[i]
	}
	return res
}
