package pipeline_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

// TestMain points $ONNXRUNTIME_LIB at the library `make deps` installs when
// it is unset, so that the example finds it as `make test` does.
func TestMain(m *testing.M) {
	if os.Getenv("ONNXRUNTIME_LIB") == "" {
		if root := testenv.ModuleRoot(); root != "" {
			os.Setenv("ONNXRUNTIME_LIB", filepath.Join(root, ".ort", "lib", "libonnxruntime.so.1"))
		}
	}
	os.Exit(m.Run())
}
