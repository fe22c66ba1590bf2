package safetensors

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// Tensor is one tensor to write: its name, element type, shape and raw
// little-endian data (len(Data) must be product(Shape) x DType.Size()).
type Tensor struct {
	Name  string
	DType DType
	Shape []int64
	Data  []byte
}

// FromFloat32 makes an F32 tensor.
func FromFloat32(name string, shape []int64, v []float32) Tensor { return from(name, F32, shape, v) }

// FromFloat16 makes an F16 tensor from binary16 bit patterns (see
// Float32ToFloat16).
func FromFloat16(name string, shape []int64, v []uint16) Tensor { return from(name, F16, shape, v) }

// FromInt64 makes an I64 tensor.
func FromInt64(name string, shape []int64, v []int64) Tensor { return from(name, I64, shape, v) }

func from[T float32 | uint16 | int64](name string, dt DType, shape []int64, v []T) Tensor {
	b := make([]byte, 0, len(v)*dt.Size())
	b, _ = binary.Append(b, binary.LittleEndian, v) // slices of these types always encode
	return Tensor{Name: name, DType: dt, Shape: shape, Data: b}
}

// Write writes tensors and an optional __metadata__ map as a safetensors file
// to w. The caller makes the write atomic (temporary file + rename).
//
// The output is deterministic: tensors are laid out by decreasing element
// size, then by name, with no gaps between them, the way the reference
// writer orders them. The header is padded with spaces so the data buffer
// starts at a multiple of 8; with that order every tensor starts at an offset
// aligned to its element size (8-byte tensors all come first), and the file
// still passes the reference reader's "no holes" check.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	order := slices.Clone(tensors)
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("safetensors: write: %s entry %q is not valid UTF-8", metadataKey, k)
		}
	}
	seen := make(map[string]bool, len(order))
	for _, t := range order {
		if err := checkTensor(t); err != nil {
			return err
		}
		if seen[t.Name] {
			return fmt.Errorf("safetensors: write: duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
	}
	slices.SortStableFunc(order, func(a, b Tensor) int {
		return cmp.Or(cmp.Compare(b.DType.Size(), a.DType.Size()), strings.Compare(a.Name, b.Name))
	})
	specs := make([]Spec, len(order))
	for i, t := range order {
		specs[i] = Spec{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.Write(header(specs, metadata))
	for _, t := range order {
		bw.Write(t.Data)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	return nil
}

// Spec is a tensor of a file whose data is written later (see Header):
// its name, element type and shape.
type Spec struct {
	Name  string
	DType DType
	Shape []int64
}

// Bytes is the size of the tensor's data.
func (s Spec) Bytes() int64 {
	n := int64(s.DType.Size())
	for _, d := range s.Shape {
		n *= d
	}
	return n
}

// Header is the start of a safetensors file holding the tensors specs laid
// out in that order, with no gaps: the 8-byte length, the JSON header and
// its padding. The data follows, tensor after tensor, so that a writer can
// stream each tensor when it has it. Every tensor keeps its alignment when
// they are all of one element size (Write orders tensors of several so
// that it holds).
func Header(specs []Spec, metadata map[string]string) ([]byte, error) {
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("safetensors: write: %s entry %q is not valid UTF-8", metadataKey, k)
		}
	}
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		if err := checkSpec(s); err != nil {
			return nil, err
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("safetensors: write: duplicate tensor name %q", s.Name)
		}
		seen[s.Name] = true
	}
	return header(specs, metadata), nil
}

// header is the file's start for tensors laid out as specs (checked).
func header(specs []Spec, metadata map[string]string) []byte {
	var hdr strings.Builder
	hdr.WriteByte('{')
	if len(metadata) > 0 {
		hdr.WriteString(quote(metadataKey) + ":{")
		for i, k := range slices.Sorted(maps.Keys(metadata)) {
			if i > 0 {
				hdr.WriteByte(',')
			}
			hdr.WriteString(quote(k) + ":" + quote(metadata[k]))
		}
		hdr.WriteByte('}')
	}
	var off int64
	for i, t := range specs {
		if i > 0 || len(metadata) > 0 {
			hdr.WriteByte(',')
		}
		end := off + t.Bytes()
		fmt.Fprintf(&hdr, `%s:{"dtype":%s,"shape":%s,"data_offsets":[%d,%d]}`,
			quote(t.Name), quote(string(t.DType)), fmtShape(t.Shape), off, end)
		off = end
	}
	hdr.WriteByte('}')
	// Pad so that 8 + len(header) is a multiple of 8.
	if r := hdr.Len() % 8; r != 0 {
		hdr.WriteString(strings.Repeat(" ", 8-r))
	}
	out := make([]byte, 8, 8+hdr.Len())
	binary.LittleEndian.PutUint64(out, uint64(hdr.Len()))
	return append(out, hdr.String()...)
}

// checkSpec checks a tensor's name, dtype and shape as checkTensor does,
// without data.
func checkSpec(s Spec) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("safetensors: write: tensor %q: %s", s.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Name == "":
		return errors.New("safetensors: write: tensor with an empty name")
	case s.Name == metadataKey:
		return fail("the name is reserved for metadata")
	case !utf8.ValidString(s.Name):
		return fail("the name is not valid UTF-8")
	case !s.DType.Valid():
		return fail("unsupported dtype %q", s.DType)
	}
	n := int64(s.DType.Size())
	for _, d := range s.Shape {
		if d < 0 {
			return fail("negative dimension in shape %s", fmtShape(s.Shape))
		}
		if d != 0 && n > math.MaxInt64/d {
			return fail("shape %s is too large", fmtShape(s.Shape))
		}
		n *= d
	}
	return nil
}

func checkTensor(t Tensor) error {
	s := Spec{Name: t.Name, DType: t.DType, Shape: t.Shape}
	if err := checkSpec(s); err != nil {
		return err
	}
	if n := s.Bytes(); n != int64(len(t.Data)) {
		return fmt.Errorf("safetensors: write: tensor %q: %d data bytes do not match shape %s x %s (%d bytes)", t.Name, len(t.Data), fmtShape(t.Shape), t.DType, n)
	}
	return nil
}

func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
