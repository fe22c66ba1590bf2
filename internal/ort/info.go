package ort

import (
	"fmt"

	ortgo "github.com/yalue/onnxruntime_go"
)

// Port is a model input or output as ONNX Runtime declares it: what a
// program that loads the model learns before running it.
type Port struct {
	Name string
	// Type is ONNX Runtime's type string, as its Python API's NodeArg.type
	// gives it: "tensor(float)", "tensor(int64)", "tensor(int32)", ...
	Type string
	// Dims are the declared dimensions, -1 for a symbolic one.
	Dims []int64
}

// typeNames are ONNX Runtime's names of tensor element types (the keys
// diffusers' onnx_utils.ORT_TO_NP_TYPE maps to numpy types).
var typeNames = map[ortgo.TensorElementDataType]string{
	ortgo.TensorElementDataTypeBool:    "tensor(bool)",
	ortgo.TensorElementDataTypeInt8:    "tensor(int8)",
	ortgo.TensorElementDataTypeUint8:   "tensor(uint8)",
	ortgo.TensorElementDataTypeInt16:   "tensor(int16)",
	ortgo.TensorElementDataTypeUint16:  "tensor(uint16)",
	ortgo.TensorElementDataTypeInt32:   "tensor(int32)",
	ortgo.TensorElementDataTypeUint32:  "tensor(uint32)",
	ortgo.TensorElementDataTypeInt64:   "tensor(int64)",
	ortgo.TensorElementDataTypeUint64:  "tensor(uint64)",
	ortgo.TensorElementDataTypeFloat16: "tensor(float16)",
	ortgo.TensorElementDataTypeFloat:   "tensor(float)",
	ortgo.TensorElementDataTypeDouble:  "tensor(double)",
}

// ModelPorts loads the model file at path (resolving its external data)
// and lists its declared inputs and outputs in order.
func ModelPorts(path string) (inputs, outputs []Port, err error) {
	if !ortgo.IsInitialized() {
		return nil, nil, fmt.Errorf("ONNX Runtime is not initialised: call ort.Init first")
	}
	in, out, err := ortgo.GetInputOutputInfo(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s", path, oneLine(err))
	}
	conv := func(infos []ortgo.InputOutputInfo) ([]Port, error) {
		ports := make([]Port, len(infos))
		for i, x := range infos {
			if x.OrtValueType != ortgo.ONNXTypeTensor {
				return nil, fmt.Errorf("%s: %s is not a tensor", path, x.Name)
			}
			name, ok := typeNames[x.DataType]
			if !ok {
				name = x.DataType.String()
			}
			ports[i] = Port{Name: x.Name, Type: name, Dims: append([]int64(nil), x.Dimensions...)}
		}
		return ports, nil
	}
	if inputs, err = conv(in); err != nil {
		return nil, nil, err
	}
	if outputs, err = conv(out); err != nil {
		return nil, nil, err
	}
	return inputs, outputs, nil
}
