// Package sdtest opens the tiny conformance models for tests that run the
// whole Stable Diffusion pipeline.
package sdtest

import (
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// Open loads ONNX Runtime and opens a tiny model of testdata/conformance
// ("tiny-sd15", "tiny-sd21"), closed when the test ends.
func Open(t testing.TB, model string) *sd.Model {
	t.Helper()
	testenv.ORT(t)
	p, err := sd.Open(sd.Options{Model: fixture.Model(t, model), Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
