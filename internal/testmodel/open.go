package testmodel

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/models"
)

// UNet opens the checkpoint folder dir and its float32 UNet for a test;
// the UNet's weights are closed when t ends.
func UNet(t testing.TB, dir string) *models.UNet {
	t.Helper()
	u, err := Open(t, dir).UNet(onnx.Float)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Weights.Close() })
	return u
}

// UNetGraph is the plain (no injection) graph of dir's float32 UNet.
func UNetGraph(t testing.TB, dir string) (*models.UNet, *onnx.Graph) {
	t.Helper()
	u := UNet(t, dir)
	g, err := u.Graph(models.UNetGraphOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u, g
}

// TokenFlowGraph is the TokenFlow graph of dir's float32 UNet with inj.
func TokenFlowGraph(t testing.TB, dir string, inj models.Injection) (*models.UNet, *onnx.Graph) {
	t.Helper()
	u := UNet(t, dir)
	g, err := u.TokenFlowGraph(inj)
	if err != nil {
		t.Fatal(err)
	}
	return u, g
}

// Open opens the checkpoint folder dir for a test.
func Open(t testing.TB, dir string) *models.Checkpoint {
	t.Helper()
	c, err := models.OpenModel(dir, models.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FiniteRMS fails t when y holds NaN or Inf and returns y's root mean
// square.
func FiniteRMS(t testing.TB, what string, y []float32) float64 {
	t.Helper()
	var ss float64
	for _, v := range y {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("%s holds %g", what, v)
		}
		ss += float64(v) * float64(v)
	}
	return math.Sqrt(ss / float64(len(y)))
}

// Randn is a source of N(0,1) values drawn from a PCG seeded with (seed1,
// seed2): each call returns the next n.
func Randn(seed1, seed2 uint64) func(n int) []float32 {
	r := rand.New(rand.NewPCG(seed1, seed2))
	return func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
}

// FullSD21Base is the full-size Stable Diffusion 2.1-base architecture with
// random weights (seed 1) and the tokenizer and scheduler files of assets,
// written once into DefaultCacheDir and reused by later runs.
func FullSD21Base(t testing.TB, assets string) *Summary {
	t.Helper()
	root, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Cached(root, assets, SD21Base(), 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
