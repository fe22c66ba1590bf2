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
	for i, t := range order {
		if i > 0 || len(metadata) > 0 {
			hdr.WriteByte(',')
		}
		end := off + int64(len(t.Data))
		fmt.Fprintf(&hdr, `%s:{"dtype":%s,"shape":%s,"data_offsets":[%d,%d]}`,
			quote(t.Name), quote(string(t.DType)), fmtShape(t.Shape), off, end)
		off = end
	}
	hdr.WriteByte('}')
	// Pad so that 8 + len(header) is a multiple of 8.
	if r := hdr.Len() % 8; r != 0 {
		hdr.WriteString(strings.Repeat(" ", 8-r))
	}

	bw := bufio.NewWriterSize(w, 1<<20)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(hdr.Len()))
	bw.Write(lenBuf[:])
	bw.WriteString(hdr.String())
	for _, t := range order {
		bw.Write(t.Data)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	return nil
}

func checkTensor(t Tensor) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("safetensors: write: tensor %q: %s", t.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case t.Name == "":
		return errors.New("safetensors: write: tensor with an empty name")
	case t.Name == metadataKey:
		return fail("the name is reserved for metadata")
	case !utf8.ValidString(t.Name):
		return fail("the name is not valid UTF-8")
	case !t.DType.Valid():
		return fail("unsupported dtype %q", t.DType)
	}
	n := int64(t.DType.Size())
	for _, d := range t.Shape {
		if d < 0 {
			return fail("negative dimension in shape %s", fmtShape(t.Shape))
		}
		if d != 0 && n > math.MaxInt64/d {
			return fail("shape %s is too large", fmtShape(t.Shape))
		}
		n *= d
	}
	if n != int64(len(t.Data)) {
		return fail("%d data bytes do not match shape %s x %s (%d bytes)", len(t.Data), fmtShape(t.Shape), t.DType, n)
	}
	return nil
}

func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
