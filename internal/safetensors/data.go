package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
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

// readAs reads the raw bytes of a tensor whose dtype is one of dts, for
// reading as want.
func (f *File) readAs(name, want string, dts ...DType) (TensorInfo, []byte, error) {
	t, err := f.Info(name)
	if err != nil {
		return t, nil, err
	}
	if !slices.Contains(dts, t.DType) {
		return t, nil, fmt.Errorf("%s: tensor %q: dtype %s cannot be read as %s", f.name, t.Name, t.DType, want)
	}
	b, err := f.read(t)
	return t, b, err
}

// Float32 reads a floating-point tensor as float32: F32 as is, F16 and BF16
// widened exactly, F64 rounded to nearest.
func (f *File) Float32(name string) ([]float32, error) {
	t, b, err := f.readAs(name, "float32", F32, F16, BF16, F64)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.NumElements())
	for i := range out {
		out[i] = float32At(t.DType, b, i)
	}
	return out, nil
}

// float32At is element i of the floating-point data b of type dt, as
// Float32 reads it.
func float32At(dt DType, b []byte, i int) float32 {
	le := binary.LittleEndian
	switch dt {
	case F16:
		return Float16ToFloat32(le.Uint16(b[2*i:]))
	case BF16:
		return BFloat16ToFloat32(le.Uint16(b[2*i:]))
	case F64:
		return float32(math.Float64frombits(le.Uint64(b[8*i:])))
	}
	return math.Float32frombits(le.Uint32(b[4*i:]))
}

// Float16 reads a floating-point tensor as IEEE binary16 bit patterns, for
// fp16 export: F16 as is, F32/F64/BF16 rounded to nearest even (overflow to
// infinity, underflow through subnormals to signed zero).
func (f *File) Float16(name string) ([]uint16, error) {
	t, b, err := f.readAs(name, "float16", F32, F16, BF16, F64)
	if err != nil {
		return nil, err
	}
	out := make([]uint16, t.NumElements())
	le := binary.LittleEndian
	for i := range out {
		switch t.DType {
		case F16:
			out[i] = le.Uint16(b[2*i:])
		case F64: // rounded once, from the float64
			out[i] = Float64ToFloat16(math.Float64frombits(le.Uint64(b[8*i:])))
		default: // F32, and BF16 widened exactly to float32
			out[i] = Float32ToFloat16(float32At(t.DType, b, i))
		}
	}
	return out, nil
}

// Int64 reads an integer tensor (I64, or I32 widened) as int64.
func (f *File) Int64(name string) ([]int64, error) {
	t, b, err := f.readAs(name, "int64", I64, I32)
	if err != nil {
		return nil, err
	}
	out := make([]int64, t.NumElements())
	if t.DType == I64 {
		_, err := binary.Decode(b, binary.LittleEndian, out)
		return out, err
	}
	for i := range out {
		out[i] = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
	}
	return out, nil
}
