# tokenflow: build, test, benchmark, demo.
#   make          build bin/tokenflow (fetches ONNX Runtime and ffmpeg first)
#   make deps-cuda  also fetch the CUDA build of ONNX Runtime into .ort/cuda/
#                 (the NVIDIA driver, CUDA 13 and cuDNN 9 come from NVIDIA:
#                 see docs/gpu.md; bin/tokenflow doctor --device cuda checks)
#   make test     the test suite against real ffmpeg and ONNX Runtime
#   make bench    benchmarks (speed and memory figures; not pass/fail)
#   make demo     edit a generated clip with the tiny test model

SHELL   := /bin/bash
GO      ?= go
ROOT    := $(abspath .)
ORT_DIR := $(ROOT)/.ort/lib
ORT_LIB := $(ORT_DIR)/libonnxruntime.so.1
ORT_CUDA_DIR := $(ROOT)/.ort/cuda
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PKG     := github.com/tokenflow/tokenflow
LDFLAGS := -X $(PKG)/internal/ort.InstallDir=$(ORT_DIR) -X $(PKG)/internal/ort.CUDADir=$(ORT_CUDA_DIR) -X $(PKG)/internal/version.Version=$(VERSION)
BIN     := bin/tokenflow

export ONNXRUNTIME_LIB := $(ORT_LIB)

.PHONY: all build deps deps-cuda test vet fmt-check bench demo clean

all: build

deps:
	@scripts/deps.sh

deps-cuda:
	@scripts/deps.sh --cuda

build: deps
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/tokenflow

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# TOKENFLOW_REQUIRE_RUNTIME=1 turns "ffmpeg / ONNX Runtime missing" skips into
# failures, so this command can never pass by skipping. deps-cuda installs the
# CUDA build too, so that the CUDA path is checked as far as a machine
# without a GPU allows (doctor, the early failure naming what is missing).
test: deps deps-cuda fmt-check vet
	TOKENFLOW_REQUIRE_RUNTIME=1 $(GO) test -count=1 -timeout 30m ./...

bench: build
	TOKENFLOW_REQUIRE_RUNTIME=1 scripts/bench.sh

demo: build
	@scripts/demo.sh

clean:
	rm -rf bin demo
