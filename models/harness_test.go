package models

import (
	"context"
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// session saves g into a temporary folder (weights linked next to it, as
// `models export` does) and opens it in ONNX Runtime.
func session(t testing.TB, g *onnx.Graph, inputs, outputs []string) *ort.Session {
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
	s, err := ort.NewSessionFromFile(dir+"/model.onnx", ort.SessionOptions{Inputs: inputs, Outputs: outputs, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func runF32(t testing.TB, s *ort.Session, inputs ...ort.Tensor) [][]float32 {
	t.Helper()
	outs, err := s.Run(context.Background(), inputs...)
	if err != nil {
		t.Fatal(err)
	}
	res := make([][]float32, len(outs))
	for i, o := range outs {
		d, err := ort.Data[float32](o)
		if err != nil {
			t.Fatal(err)
		}
		res[i] = d
	}
	return res
}

func openCheckpoint(t testing.TB, dir string) *Checkpoint {
	t.Helper()
	c, err := OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
