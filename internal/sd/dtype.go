package sd

import (
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/param"
)

// DType is the element type the model's graphs compute in. In fp16 the
// weights and activations are half precision, with normalisations,
// attention (its softmax) and the GELUs kept in float32, exactly as
// `models export --dtype fp16` writes them (models' Float16 graphs); every
// graph still takes and returns float32, casting inside.
type DType string

const (
	FP32 DType = "fp32"
	FP16 DType = "fp16"
)

// ParseDType checks a value of the dtype setting ("float32" and "float16"
// are accepted too); the error is a *param.Error.
func ParseDType(s string) (DType, error) {
	switch s {
	case "fp32", "float32":
		return FP32, nil
	case "fp16", "float16":
		return FP16, nil
	}
	return "", param.Errorf("dtype", s, "want fp16 or fp32")
}

// DefaultDType is the dtype a device runs when none is asked for: fp16 on
// CUDA (half the memory, what the official code runs), fp32 on the CPU
// (whose kernels are float32; fp16 there only rounds).
func DefaultDType(d ort.Device) DType {
	if d == ort.CUDA {
		return FP16
	}
	return FP32
}

// GraphType is the ONNX element type of the weights ("" is fp32).
func (d DType) GraphType() onnx.DataType {
	if d == FP16 {
		return onnx.Float16
	}
	return onnx.Float
}
