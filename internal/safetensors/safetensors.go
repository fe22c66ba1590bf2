// Package safetensors reads and writes the safetensors weight format
// (https://github.com/huggingface/safetensors, "Format" in its README):
//
//	[8 bytes]  N, little-endian uint64: size of the header
//	[N bytes]  JSON header, UTF-8, starting with '{', possibly padded with spaces:
//	           {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//	            "__metadata__": {"<key>": "<string value>", ...}}
//	[rest]     the data buffer; data_offsets are relative to its start
//
// Open reads and validates only the header, so a 3.4 GB UNet costs a few
// hundred kilobytes to inspect; each tensor is exposed with its ABSOLUTE byte
// offset and length in the file (what ONNX external-data initializers point
// at). Tensor data is read on demand.
//
// Validation is strict: the header must be valid UTF-8 JSON with no duplicate
// keys, only known fields, supported dtypes, non-negative shapes whose byte
// size equals end-begin, offsets inside the file, and no two tensors sharing a
// byte. Every error is one line naming the file and the tensor or field.
// Unlike the reference Rust reader, gaps between tensors and bytes after the
// last one are accepted (they are harmless); overlaps are not.
package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxHeaderSize bounds the JSON header (the reference implementation uses the
// same 100 MB limit); a larger length field means a corrupt or hostile file.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header key holding the string-to-string map.
const metadataKey = "__metadata__"

// ErrInvalid is wrapped by every error about a malformed file.
var ErrInvalid = errors.New("invalid safetensors file")

// ErrNotFound is wrapped when a tensor name is not in the file.
var ErrNotFound = errors.New("tensor not found")

// Error is a malformed-file error. It prints as one line:
//
//	<file>: tensor "<name>": <message>
//
// (or "<file>: <message>" when no tensor is concerned).
type Error struct {
	File   string
	Tensor string // "" when the problem is not about one tensor
	Msg    string
}

func (e *Error) Error() string {
	if e.Tensor != "" {
		return fmt.Sprintf("%s: tensor %q: %s", e.File, e.Tensor, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int64
	// Offset is the absolute byte offset of the tensor's data in the file
	// (8 + header size + data_offsets[0]); Length is its size in bytes.
	Offset int64
	Length int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is an opened safetensors file: its validated header, and a reader for
// tensor data.
type File struct {
	name     string // used in errors: the path given to Open
	r        io.ReaderAt
	closer   io.Closer
	size     int64
	dataBase int64 // absolute offset of the data buffer: 8 + N
	tensors  map[string]TensorInfo
	names    []string // sorted
	metadata map[string]string
}

// Open reads and validates the header of the safetensors file at path. The
// tensor data is not read; the file stays open for the data readers until
// Close.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, err
	}
	f, err := NewReader(fh, st.Size(), path)
	if err != nil {
		fh.Close()
		return nil, err
	}
	f.closer = fh
	return f, nil
}

// NewReader validates the safetensors header of r, whose total size is size;
// name identifies it in errors. The File reads tensor data from r on demand
// and does not close it.
func NewReader(r io.ReaderAt, size int64, name string) (*File, error) {
	f := &File{name: name, r: r, size: size}
	bad := func(format string, args ...any) error {
		return &Error{File: name, Msg: fmt.Sprintf(format, args...)}
	}
	if size < 8 {
		return nil, bad("file is %d bytes, shorter than the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("%s: read header length: %w", name, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	switch {
	case n > MaxHeaderSize:
		return nil, bad("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	case int64(n) > size-8:
		return nil, bad("header length %d runs past the end of the %d-byte file (truncated?)", n, size)
	case n < 2:
		return nil, bad("header length %d is too short for a JSON object", n)
	}
	header := make([]byte, n)
	if _, err := r.ReadAt(header, 8); err != nil {
		return nil, fmt.Errorf("%s: read header: %w", name, err)
	}
	f.dataBase = 8 + int64(n)
	if err := f.parseHeader(header); err != nil {
		return nil, err
	}
	return f, nil
}

// rawTensor is one header entry as written in the JSON.
type rawTensor struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

func (f *File) parseHeader(header []byte) error {
	bad := func(tensor, format string, args ...any) error {
		return &Error{File: f.name, Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
	}
	if !utf8.Valid(header) {
		return bad("", "header is not valid UTF-8")
	}
	if header[0] != '{' {
		return bad("", "header does not start with '{' (not a safetensors file?)")
	}
	members, end, err := objectMembers(header)
	var dup *duplicateKeyError
	switch {
	case errors.As(err, &dup) && dup.key != metadataKey:
		return bad(dup.key, "name appears twice in the header")
	case err != nil:
		return bad("", "header is not valid JSON: %v", err)
	}
	// The spec allows padding with spaces; JSON's other whitespace is accepted
	// too (the reference JSON parser does), anything else is refused.
	if rest := bytes.TrimLeft(header[end:], " \t\r\n"); len(rest) > 0 {
		return bad("", "unexpected %q after the header's JSON object (header byte %d)", clip(rest), len(header)-len(rest))
	}

	dataLen := f.size - f.dataBase
	f.tensors = make(map[string]TensorInfo, len(members))
	for _, m := range members {
		if m.key == metadataKey {
			md, err := parseMetadata(m.value)
			if err != nil {
				return bad("", "%s: %v", metadataKey, err)
			}
			f.metadata = md
			continue
		}
		if m.key == "" {
			return bad("", "tensor with an empty name")
		}
		ti, err := parseTensor(m.key, m.value, dataLen)
		if err != nil {
			return bad(m.key, "%v", err)
		}
		ti.Offset += f.dataBase
		f.tensors[m.key] = ti
		f.names = append(f.names, m.key)
	}
	slices.Sort(f.names)
	return f.checkOverlaps()
}

// parseTensor validates one header entry; the returned Offset is still
// relative to the data buffer.
func parseTensor(name string, raw json.RawMessage, dataLen int64) (TensorInfo, error) {
	if _, _, err := objectMembers(raw); err != nil { // duplicate fields, non-object
		return TensorInfo{}, err
	}
	var rt rawTensor
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rt); err != nil {
		return TensorInfo{}, fmt.Errorf("bad entry: %v", err)
	}
	switch {
	case rt.DType == nil:
		return TensorInfo{}, errors.New(`missing "dtype"`)
	case rt.Shape == nil:
		return TensorInfo{}, errors.New(`missing "shape"`)
	case rt.DataOffsets == nil:
		return TensorInfo{}, errors.New(`missing "data_offsets"`)
	}
	dt := DType(*rt.DType)
	if !dt.Valid() {
		return TensorInfo{}, fmt.Errorf("unsupported dtype %q (supported: F64, F32, F16, BF16, I64, I32, U8, BOOL)", *rt.DType)
	}
	shape := *rt.Shape
	offs := *rt.DataOffsets
	if len(offs) != 2 {
		return TensorInfo{}, fmt.Errorf("data_offsets has %d entries, want [begin, end]", len(offs))
	}
	begin, end := offs[0], offs[1]
	if begin < 0 || end < 0 || begin > end {
		return TensorInfo{}, fmt.Errorf("data_offsets [%d,%d] are not an increasing pair", begin, end)
	}
	if end > dataLen {
		return TensorInfo{}, fmt.Errorf("data_offsets [%d,%d] run past the end of the %d-byte data buffer (truncated file?)", begin, end, dataLen)
	}
	// Byte size, refusing overflow: any product above dataLen cannot match.
	want := int64(dt.Size())
	overflow := false
	for i, d := range shape {
		if d < 0 {
			return TensorInfo{}, fmt.Errorf("shape %s has negative dimension %d at index %d", fmtShape(shape), d, i)
		}
		if d != 0 && want > math.MaxInt64/d {
			overflow = true
			break
		}
		want *= d
	}
	if overflow || want != end-begin {
		size := fmt.Sprintf("%d bytes", want)
		if overflow {
			size = "too many bytes"
		}
		return TensorInfo{}, fmt.Errorf("data_offsets [%d,%d] do not match shape %s x %s (%s)", begin, end, fmtShape(shape), dt, size)
	}
	return TensorInfo{Name: name, DType: dt, Shape: shape, Offset: begin, Length: end - begin}, nil
}

// checkOverlaps refuses two tensors sharing a byte (empty tensors share none).
func (f *File) checkOverlaps() error {
	byOffset := make([]TensorInfo, 0, len(f.tensors))
	for _, name := range f.names {
		if t := f.tensors[name]; t.Length > 0 {
			byOffset = append(byOffset, t)
		}
	}
	slices.SortFunc(byOffset, func(a, b TensorInfo) int {
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), strings.Compare(a.Name, b.Name))
	})
	for i := 1; i < len(byOffset); i++ {
		prev, cur := byOffset[i-1], byOffset[i]
		if cur.Offset < prev.Offset+prev.Length {
			return &Error{File: f.name, Tensor: cur.Name, Msg: fmt.Sprintf(
				"data_offsets [%d,%d] overlap tensor %q [%d,%d]",
				cur.Offset-f.dataBase, cur.Offset-f.dataBase+cur.Length,
				prev.Name, prev.Offset-f.dataBase, prev.Offset-f.dataBase+prev.Length)}
		}
	}
	return nil
}

func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	members, _, err := objectMembers(raw)
	if err != nil {
		return nil, err
	}
	md := make(map[string]string, len(members))
	for _, m := range members {
		var s string
		if err := json.Unmarshal(m.value, &s); err != nil {
			return nil, fmt.Errorf("value of %q is not a string", m.key)
		}
		md[m.key] = s
	}
	return md, nil
}

type duplicateKeyError struct{ key string }

func (e *duplicateKeyError) Error() string { return fmt.Sprintf("duplicate key %q", e.key) }

type member struct {
	key   string
	value json.RawMessage
}

// objectMembers splits a JSON object into its members in order, refusing
// duplicate keys (encoding/json would silently keep the last one). end is the
// byte offset just past the closing brace.
func objectMembers(data []byte) (members []member, end int, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, 0, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, 0, fmt.Errorf("expected a JSON object, found %v", tok)
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, 0, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, 0, fmt.Errorf("expected an object key, found %v", tok)
		}
		if seen[key] {
			return nil, 0, &duplicateKeyError{key}
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, 0, fmt.Errorf("value of %q: %v", key, err)
		}
		members = append(members, member{key, v})
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, 0, err
	}
	return members, int(dec.InputOffset()), nil
}

func fmtShape(shape []int64) string { return strings.ReplaceAll(fmt.Sprint(shape), " ", ",") }

func clip(b []byte) string {
	if len(b) > 16 {
		return string(b[:16]) + "..."
	}
	return string(b)
}

// Close closes the file opened by Open (a no-op for NewReader).
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// Path is the name given to Open or NewReader.
func (f *File) Path() string { return f.name }

// Size is the file size in bytes.
func (f *File) Size() int64 { return f.size }

// DataOffset is the absolute offset of the data buffer (8 + header size).
func (f *File) DataOffset() int64 { return f.dataBase }

// Len is the number of tensors.
func (f *File) Len() int { return len(f.names) }

// Names returns the tensor names in sorted order.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Tensors returns every tensor's description, sorted by name.
func (f *File) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(f.names))
	for i, n := range f.names {
		out[i] = f.Tensor(n)
	}
	return out
}

// Has reports whether the file holds a tensor called name.
func (f *File) Has(name string) bool {
	_, ok := f.tensors[name]
	return ok
}

// Tensor describes the tensor called name (the zero TensorInfo if absent; use
// Has or Info to tell).
func (f *File) Tensor(name string) TensorInfo {
	t := f.tensors[name]
	t.Shape = append([]int64(nil), t.Shape...)
	return t
}

// Info describes the tensor called name, or returns an error wrapping
// ErrNotFound.
func (f *File) Info(name string) (TensorInfo, error) {
	if !f.Has(name) {
		return TensorInfo{}, fmt.Errorf("%s: tensor %q: %w", f.name, name, ErrNotFound)
	}
	return f.Tensor(name), nil
}

// Metadata returns a copy of the __metadata__ map (empty if none).
func (f *File) Metadata() map[string]string {
	md := make(map[string]string, len(f.metadata))
	maps.Copy(md, f.metadata)
	return md
}
