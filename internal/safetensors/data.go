package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Raw reads the bytes of the tensor called name (little-endian elements).
func (f *File) Raw(name string) ([]byte, error) {
	t, err := f.Info(name)
	if err != nil {
		return nil, err
	}
	return f.read(t)
}

func (f *File) read(t TensorInfo) ([]byte, error) {
	buf := make([]byte, t.Length)
	if t.Length == 0 {
		return buf, nil
	}
	if _, err := f.r.ReadAt(buf, t.Offset); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: read %d bytes at offset %d: %w", f.name, t.Name, t.Length, t.Offset, err)
	}
	return buf, nil
}

func (f *File) wrongType(t TensorInfo, want string) error {
	return fmt.Errorf("%s: tensor %q: dtype %s cannot be read as %s", f.name, t.Name, t.DType, want)
}

// readFloat reads a floating-point tensor's raw bytes, for reading as want.
func (f *File) readFloat(name, want string) (TensorInfo, []byte, error) {
	t, err := f.Info(name)
	if err != nil {
		return t, nil, err
	}
	switch t.DType {
	case F32, F16, BF16, F64:
	default:
		return t, nil, f.wrongType(t, want)
	}
	b, err := f.read(t)
	return t, b, err
}

// Float32 reads a floating-point tensor as float32: F32 as is, F16 and BF16
// widened exactly, F64 rounded to nearest.
func (f *File) Float32(name string) ([]float32, error) {
	t, b, err := f.readFloat(name, "float32")
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.NumElements())
	le := binary.LittleEndian
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = Float16ToFloat32(le.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = BFloat16ToFloat32(le.Uint16(b[2*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	}
	return out, nil
}

// Float16 reads a floating-point tensor as IEEE binary16 bit patterns, for
// fp16 export: F16 as is, F32/F64/BF16 rounded to nearest even (overflow to
// infinity, underflow through subnormals to signed zero).
func (f *File) Float16(name string) ([]uint16, error) {
	t, b, err := f.readFloat(name, "float16")
	if err != nil {
		return nil, err
	}
	out := make([]uint16, t.NumElements())
	le := binary.LittleEndian
	switch t.DType {
	case F16:
		for i := range out {
			out[i] = le.Uint16(b[2*i:])
		}
	case F32:
		for i := range out {
			out[i] = Float32ToFloat16(math.Float32frombits(le.Uint32(b[4*i:])))
		}
	case BF16:
		for i := range out {
			out[i] = Float32ToFloat16(BFloat16ToFloat32(le.Uint16(b[2*i:])))
		}
	case F64:
		for i := range out {
			out[i] = Float64ToFloat16(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	}
	return out, nil
}

// Int64 reads an integer tensor (I64, or I32 widened) as int64.
func (f *File) Int64(name string) ([]int64, error) {
	t, err := f.Info(name)
	if err != nil {
		return nil, err
	}
	if t.DType != I64 && t.DType != I32 {
		return nil, f.wrongType(t, "int64")
	}
	b, err := f.read(t)
	if err != nil {
		return nil, err
	}
	out := make([]int64, t.NumElements())
	le := binary.LittleEndian
	if t.DType == I64 {
		for i := range out {
			out[i] = int64(le.Uint64(b[8*i:]))
		}
	} else {
		for i := range out {
			out[i] = int64(int32(le.Uint32(b[4*i:])))
		}
	}
	return out, nil
}
