//go:build !linux

package ort

import "errors"

// The CUDA stack is checked on Linux only, the one system `make deps-cuda`
// installs the CUDA build for.
var errNotLinux = errors.New("checked on Linux only")

func dlopenCheck(string) (string, error) { return "", errNotLinux }

func probeGPU() GPUStatus { return GPUStatus{Err: errNotLinux} }
