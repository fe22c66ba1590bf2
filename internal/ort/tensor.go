package ort

import (
	"fmt"

	ortgo "github.com/yalue/onnxruntime_go"
)

// Float16 is an IEEE half-precision number held as its bits.
type Float16 uint16

// Elem lists the element types a Tensor can hold.
type Elem interface {
	float32 | float64 | int64 | int32 | uint8 | bool | Float16
}

// Tensor is a host tensor: a shape and a flat row-major slice of one of the
// Elem types. The slice is shared with ONNX Runtime during Run, not copied.
type Tensor struct {
	Shape []int64
	Data  any
}

// New wraps data as a tensor of the given shape.
func New[T Elem](shape []int64, data []T) Tensor {
	return Tensor{Shape: append([]int64(nil), shape...), Data: data}
}

// Scalar is a rank-0 tensor.
func Scalar[T Elem](v T) Tensor { return Tensor{Shape: []int64{}, Data: []T{v}} }

// Data returns the tensor's elements as []T, or an error naming the actual type.
func Data[T Elem](t Tensor) ([]T, error) {
	d, ok := t.Data.([]T)
	if !ok {
		var zero T
		return nil, fmt.Errorf("tensor holds %T, not []%T", t.Data, zero)
	}
	return d, nil
}

// Len is the number of elements the shape describes.
func (t Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= int(d)
	}
	return n
}

func (t Tensor) value() (ortgo.Value, error) {
	shape := ortgo.NewShape(t.Shape...)
	switch d := t.Data.(type) {
	case []float32:
		return newValue(shape, d)
	case []float64:
		return newValue(shape, d)
	case []int64:
		return newValue(shape, d)
	case []int32:
		return newValue(shape, d)
	case []uint8:
		return newValue(shape, d)
	case []bool:
		return newValue(shape, d)
	case []Float16:
		if len(d) < t.Len() {
			return nil, fmt.Errorf("shape %v needs %d elements, have %d", t.Shape, t.Len(), len(d))
		}
		b := make([]byte, 2*len(d))
		for i, v := range d {
			b[2*i], b[2*i+1] = byte(v), byte(v>>8)
		}
		return ortgo.NewCustomDataTensor(shape, b, ortgo.TensorElementDataTypeFloat16)
	}
	return nil, fmt.Errorf("unsupported tensor data %T", t.Data)
}

func newValue[T ortgo.TensorData](shape ortgo.Shape, d []T) (ortgo.Value, error) {
	if len(shape) == 0 {
		// onnxruntime_go refuses rank-0 shapes in NewTensor; scalars have
		// their own constructor.
		if len(d) < 1 {
			return nil, fmt.Errorf("scalar tensor has no element")
		}
		v, err := ortgo.NewScalar(d[0])
		if err != nil {
			return nil, fmt.Errorf("%s", oneLine(err))
		}
		return v, nil
	}
	if int64(len(d)) < shape.FlattenedSize() {
		return nil, fmt.Errorf("shape %v needs %d elements, have %d", []int64(shape), shape.FlattenedSize(), len(d))
	}
	v, err := ortgo.NewTensor(shape, d)
	if err != nil {
		return nil, fmt.Errorf("%s", oneLine(err))
	}
	return v, nil
}

func fromValue(v ortgo.Value) (Tensor, error) {
	shape := []int64(v.GetShape().Clone())
	switch t := v.(type) {
	case *ortgo.Tensor[float32]:
		return Tensor{Shape: shape, Data: t.GetData()}, nil
	case *ortgo.Tensor[float64]:
		return Tensor{Shape: shape, Data: t.GetData()}, nil
	case *ortgo.Tensor[int64]:
		return Tensor{Shape: shape, Data: t.GetData()}, nil
	case *ortgo.Tensor[int32]:
		return Tensor{Shape: shape, Data: t.GetData()}, nil
	case *ortgo.Tensor[uint8]:
		return Tensor{Shape: shape, Data: t.GetData()}, nil
	case *ortgo.Tensor[bool]:
		return Tensor{Shape: shape, Data: t.GetData()}, nil
	case *ortgo.CustomDataTensor:
		// onnxruntime_go copies one byte per element of non-native types,
		// so a float16 output would be truncated: graphs cast to float32
		// before their outputs instead.
		return Tensor{}, fmt.Errorf("unsupported output element type %d: graphs must output float32", t.DataType())
	}
	return Tensor{}, fmt.Errorf("unsupported output value %T", v)
}
