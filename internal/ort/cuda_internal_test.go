package ort

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The CUDA options sessions use are names and values the real provider
// parses: each is a string in libonnxruntime_providers_cuda.so (ONNX
// Runtime's option parser lives there). Without a GPU this is as close as
// the options get to being applied.
func TestCUDAOptionsKnownToProvider(t *testing.T) {
	// go test runs in internal/ort: the module root is two folders up.
	path := filepath.Join("..", "..", ".ort", "cuda", providersCUDA)
	b, err := os.ReadFile(path)
	if err != nil {
		// testenv would import this package: its rule by hand.
		if os.Getenv("TOKENFLOW_REQUIRE_RUNTIME") == "1" {
			t.Fatalf("the CUDA build of ONNX Runtime is missing (%v) and TOKENFLOW_REQUIRE_RUNTIME=1: `make test` installs it", err)
		}
		t.Skipf("the CUDA build of ONNX Runtime is missing (%v): `make deps-cuda` installs it", err)
	}
	for k, v := range cudaOptions {
		if !bytes.Contains(b, []byte("\x00"+k+"\x00")) {
			t.Errorf("option %q is not a string of %s", k, path)
		}
		if v[0] >= 'A' && !bytes.Contains(b, []byte("\x00"+v+"\x00")) {
			t.Errorf("value %q of %s is not a string of %s", v, k, path)
		}
	}
	// The check can fail: a misspelt option is not there.
	if bytes.Contains(b, []byte("\x00cudnn_conv_algo_serch\x00")) {
		t.Errorf("a misspelt option name is in %s: the check proves nothing", path)
	}
}

// ortMessage keeps the words of an ONNX Runtime error (this one is what
// appending CUDA without cuBLAS says) without its source location and
// status code.
func TestORTMessage(t *testing.T) {
	in := "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:1988 onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library /x/libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: No such file or directory"
	want := "Failed to load library /x/libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: No such file or directory"
	if got := ortMessage(errors.New(in)); got != want {
		t.Errorf("ortMessage:\n got %q\nwant %q", got, want)
	}
	if got := ortMessage(errors.New("plain\nsecond line")); got != "plain" {
		t.Errorf("ortMessage of a plain error = %q, want its first line", got)
	}
}
