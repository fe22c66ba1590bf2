package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// rawFile builds file bytes from a header string and a data buffer, with the
// length field set to the header's true length.
func rawFile(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func writeTemp(t *testing.T, name string, content []byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), filepath.Dir(name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(name))
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sampleTensors() []Tensor {
	return []Tensor{
		{Name: "frames", DType: U8, Shape: []int64{1, 3}, Data: []uint8{1, 2, 255}},
		FromFloat32("latents", []int64{2, 3}, []float32{0, 1, -2.5, 3.25, float32(math.Inf(1)), 1e-30}),
		FromInt64("timesteps", []int64{3}, []int64{901, -1, 1 << 40}),
		FromFloat16("half", []int64{2}, []uint16{0x3c00, 0xc000}),
		FromFloat32("scalar", []int64{}, []float32{7}),
		FromFloat32("empty", []int64{0, 4}, nil),
		{Name: "i32", DType: I32, Shape: []int64{2}, Data: []byte{0xff, 0xff, 0xff, 0xff, 5, 0, 0, 0}},
		{Name: "bf16", DType: BF16, Shape: []int64{1}, Data: []byte{0xc0, 0x3f}},
		{Name: "f64", DType: F64, Shape: []int64{1}, Data: binary.LittleEndian.AppendUint64(nil, math.Float64bits(0.1))},
	}
}

func TestWriteOpenRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	md := map[string]string{"format": "pt", "note": `quotes " and \ and ünïcode`}
	if err := Write(&buf, sampleTensors(), md); err != nil {
		t.Fatal(err)
	}
	p := writeTemp(t, "latents.safetensors", buf.Bytes())
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	if f.DataOffset()%8 != 0 {
		t.Errorf("data buffer starts at %d, not a multiple of 8", f.DataOffset())
	}
	wantNames := []string{"bf16", "empty", "f64", "frames", "half", "i32", "latents", "scalar", "timesteps"}
	if got := f.Names(); !reflect.DeepEqual(got, wantNames) {
		t.Errorf("Names() (-want +got):\n- %v\n+ %v", wantNames, got)
	}
	if got := f.Metadata(); !reflect.DeepEqual(got, md) {
		t.Errorf("Metadata() = %v, want %v", got, md)
	}
	// Absolute offsets point at the right bytes, aligned to the element size,
	// with no holes (so the reference reader accepts the file).
	end := f.DataOffset()
	var infos []TensorInfo
	for _, ti := range f.Tensors() {
		infos = append(infos, ti)
	}
	for _, want := range sampleTensors() {
		ti := f.Tensor(want.Name)
		if ti.DType != want.DType || !reflect.DeepEqual(append([]int64{}, ti.Shape...), append([]int64{}, want.Shape...)) {
			t.Errorf("%s: got %s %v, want %s %v", want.Name, ti.DType, ti.Shape, want.DType, want.Shape)
		}
		if ti.Offset%int64(ti.DType.Size()) != 0 {
			t.Errorf("%s: offset %d not aligned to %d", want.Name, ti.Offset, ti.DType.Size())
		}
		if got := buf.Bytes()[ti.Offset : ti.Offset+ti.Length]; !bytes.Equal(got, want.Data) && len(want.Data) > 0 {
			t.Errorf("%s: bytes at [%d,%d) = %v, want %v", want.Name, ti.Offset, ti.Offset+ti.Length, got, want.Data)
		}
		raw, err := f.Raw(want.Name)
		if err != nil || !bytes.Equal(raw, want.Data) && len(want.Data) > 0 {
			t.Errorf("Raw(%s) = %v, %v; want %v", want.Name, raw, err, want.Data)
		}
		if ti.Offset+ti.Length > end {
			end = ti.Offset + ti.Length
		}
	}
	if end != int64(buf.Len()) {
		t.Errorf("tensors end at %d, file is %d bytes", end, buf.Len())
	}
	var sum int64
	for _, ti := range infos {
		sum += ti.Length
	}
	if sum != int64(buf.Len())-f.DataOffset() {
		t.Errorf("tensor bytes %d != data buffer %d: the writer left holes", sum, int64(buf.Len())-f.DataOffset())
	}

	checkF32 := func(name string, want []float32) {
		t.Helper()
		got, err := f.Float32(name)
		if err != nil {
			t.Fatalf("Float32(%s): %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Float32(%s) = %v, want %v", name, got, want)
		}
	}
	checkF32("latents", []float32{0, 1, -2.5, 3.25, float32(math.Inf(1)), 1e-30})
	checkF32("half", []float32{1, -2})
	checkF32("bf16", []float32{1.5})
	checkF32("f64", []float32{0.1})
	checkF32("scalar", []float32{7})
	checkF32("empty", []float32{})

	if got, err := f.Int64("timesteps"); err != nil || !reflect.DeepEqual(got, []int64{901, -1, 1 << 40}) {
		t.Errorf("Int64(timesteps) = %v, %v", got, err)
	}
	if got, err := f.Int64("i32"); err != nil || !reflect.DeepEqual(got, []int64{-1, 5}) {
		t.Errorf("Int64(i32) = %v, %v", got, err)
	}
	if got, err := f.Float16("latents"); err != nil || !reflect.DeepEqual(got, []uint16{0, 0x3c00, 0xc100, 0x4280, 0x7c00, 0}) {
		t.Errorf("Float16(latents) = %#04x, %v", got, err)
	}
	if got, err := f.Float16("half"); err != nil || !reflect.DeepEqual(got, []uint16{0x3c00, 0xc000}) {
		t.Errorf("Float16(half) = %#04x, %v", got, err)
	}
	if got, err := f.Float16("f64"); err != nil || !reflect.DeepEqual(got, []uint16{0x2e66}) {
		t.Errorf("Float16(f64) = %#04x, %v", got, err)
	}

	// Wrong types and missing names.
	if _, err := f.Float32("timesteps"); err == nil || !strings.Contains(err.Error(), `tensor "timesteps": dtype I64 cannot be read as float32`) {
		t.Errorf("Float32(timesteps) error = %v", err)
	}
	if _, err := f.Int64("latents"); err == nil {
		t.Error("Int64(latents) succeeded on F32")
	}
	if _, err := f.Raw("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), p) {
		t.Errorf("Raw(nope) error = %v, want ErrNotFound naming the file", err)
	}
}

func TestWriteDeterministic(t *testing.T) {
	ts := sampleTensors()
	var a, b bytes.Buffer
	if err := Write(&a, ts, map[string]string{"b": "2", "a": "1"}); err != nil {
		t.Fatal(err)
	}
	rev := make([]Tensor, len(ts))
	for i := range ts {
		rev[i] = ts[len(ts)-1-i]
	}
	if err := Write(&b, rev, map[string]string{"a": "1", "b": "2"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("Write output depends on the input order")
	}
	// No metadata: no __metadata__ key.
	var c bytes.Buffer
	if err := Write(&c, ts[:1], nil); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(c.Bytes(), []byte(metadataKey)) {
		t.Error("empty metadata written")
	}
	f, err := NewReader(bytes.NewReader(c.Bytes()), int64(c.Len()), "mem")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Metadata()) != 0 {
		t.Errorf("Metadata() = %v, want empty", f.Metadata())
	}
}

func TestWriteRefusesBadTensors(t *testing.T) {
	tests := []struct {
		name    string
		tensors []Tensor
		want    string
	}{
		{"size", []Tensor{{Name: "x", DType: F32, Shape: []int64{2}, Data: make([]byte, 4)}}, `tensor "x": 4 data bytes do not match shape [2] x F32 (8 bytes)`},
		{"dtype", []Tensor{{Name: "x", DType: "F8_E4M3", Shape: []int64{1}, Data: make([]byte, 1)}}, `tensor "x": unsupported dtype "F8_E4M3"`},
		{"duplicate", []Tensor{FromInt64("x", []int64{1}, []int64{1}), FromInt64("x", []int64{1}, []int64{2})}, `duplicate tensor name "x"`},
		{"reserved", []Tensor{FromInt64(metadataKey, []int64{1}, []int64{1})}, `tensor "__metadata__": the name is reserved`},
		{"empty name", []Tensor{FromInt64("", []int64{1}, []int64{1})}, `empty name`},
		{"negative", []Tensor{{Name: "x", DType: U8, Shape: []int64{-1}}}, `negative dimension`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(&bytes.Buffer{}, tt.tensors, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Write error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// The checked-in conformance fixture (written by the reference Rust writer
// through safetensors.torch.save_file) opens and reads.
func TestOpenFixture(t *testing.T) {
	p := filepath.Join("..", "..", "testdata", "conformance", "tiny-sd15", "expected", "scheduler.safetensors")
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Metadata()["format"]; got != "pt" {
		t.Errorf(`metadata["format"] = %q, want "pt"`, got)
	}
	ti, err := f.Info("alphas_cumprod")
	if err != nil {
		t.Fatal(err)
	}
	if ti.DType != F32 || !reflect.DeepEqual(ti.Shape, []int64{1000}) || ti.Length != 4000 {
		t.Errorf("alphas_cumprod: %+v", ti)
	}
	ts, err := f.Int64("timesteps_10")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}; !reflect.DeepEqual(ts, want) {
		t.Errorf("timesteps_10 = %v, want %v", ts, want)
	}
	fa, err := f.Info("final_alpha_cumprod")
	if err != nil {
		t.Fatal(err)
	}
	if len(fa.Shape) != 0 || fa.NumElements() != 1 || fa.Length != 4 {
		t.Errorf("final_alpha_cumprod: %+v, want a scalar", fa)
	}
}

func TestOpenRejects(t *testing.T) {
	f32 := func(n int) []byte { return make([]byte, 4*n) }
	const file = "unet/diffusion_pytorch_model.safetensors"
	tests := []struct {
		name    string
		content []byte
		want    string // the whole error after "<path>: "
	}{
		{
			name:    "shape/size mismatch",
			content: rawFile(`{"conv_in.weight":{"dtype":"F32","shape":[320,4,3,3],"data_offsets":[0,100]}}`, make([]byte, 100)),
			want:    `tensor "conv_in.weight": data_offsets [0,100] do not match shape [320,4,3,3] x F32 (46080 bytes)`,
		},
		{
			name:    "truncated data",
			content: rawFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, f32(2)),
			want:    `tensor "a": data_offsets [0,16] run past the end of the 8-byte data buffer (truncated file?)`,
		},
		{
			name:    "offsets past the end",
			content: rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[100,104]}}`, f32(2)),
			want:    `tensor "b": data_offsets [100,104] run past the end of the 8-byte data buffer (truncated file?)`,
		},
		{
			name:    "header length larger than the file",
			content: append(binary.LittleEndian.AppendUint64(nil, 1000), `{"a":{}}`...),
			want:    `header length 1000 runs past the end of the 16-byte file (truncated?)`,
		},
		{
			name:    "huge header length",
			content: append(binary.LittleEndian.AppendUint64(nil, 1<<62), `{}`...),
			want:    `header length 4611686018427387904 exceeds the 100000000-byte limit`,
		},
		{
			name:    "shorter than 8 bytes",
			content: []byte{1, 2, 3},
			want:    `file is 3 bytes, shorter than the 8-byte header length`,
		},
		{
			name:    "overlapping tensors",
			content: rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, f32(3)),
			want:    `tensor "b": data_offsets [4,12] overlap tensor "a" [0,8]`,
		},
		{
			name:    "same offsets",
			content: rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}`, f32(2)),
			want:    `tensor "b": data_offsets [0,8] overlap tensor "a" [0,8]`,
		},
		{
			name:    "duplicate names",
			content: rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32(2)),
			want:    `tensor "a": name appears twice in the header`,
		},
		{
			name:    "duplicate field",
			content: rawFile(`{"a":{"dtype":"F32","shape":[1],"dtype":"F16","data_offsets":[0,4]}}`, f32(1)),
			want:    `tensor "a": duplicate key "dtype"`,
		},
		{
			name:    "unknown dtype",
			content: rawFile(`{"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}`, f32(1)),
			want:    `tensor "w": unsupported dtype "F8_E4M3" (supported: F64, F32, F16, BF16, I64, I32, U8, BOOL)`,
		},
		{
			name:    "not JSON",
			content: rawFile(`{"a": nope}`, nil),
			want:    `header is not valid JSON: value of "a": invalid character 'o' in literal null (expecting 'u')`,
		},
		{
			name:    "not an object",
			content: rawFile(`[1,2,3]`, nil),
			want:    `header does not start with '{' (not a safetensors file?)`,
		},
		{
			name:    "trailing garbage",
			content: rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}  xx`, []byte{1}),
			want:    `unexpected "xx" after the header's JSON object (header byte 55)`,
		},
		{
			name:    "two objects",
			content: rawFile(`{}{}`, nil),
			want:    `unexpected "{}" after the header's JSON object (header byte 2)`,
		},
		{
			name:    "unterminated",
			content: rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}`, []byte{1}),
			want:    `header is not valid JSON: EOF`,
		},
		{
			name:    "missing field",
			content: rawFile(`{"a":{"dtype":"U8","shape":[1]}}`, []byte{1}),
			want:    `tensor "a": missing "data_offsets"`,
		},
		{
			name:    "unknown field",
			content: rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"stride":[1]}}`, []byte{1}),
			want:    `tensor "a": bad entry: json: unknown field "stride"`,
		},
		{
			name:    "reversed offsets",
			content: rawFile(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}`, []byte{1}),
			want:    `tensor "a": data_offsets [1,0] are not an increasing pair`,
		},
		{
			name:    "three offsets",
			content: rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, []byte{1, 2}),
			want:    `tensor "a": data_offsets has 3 entries, want [begin, end]`,
		},
		{
			name:    "negative dimension",
			content: rawFile(`{"a":{"dtype":"U8","shape":[-1,-1],"data_offsets":[0,1]}}`, []byte{1}),
			want:    `tensor "a": shape [-1,-1] has negative dimension -1 at index 0`,
		},
		{
			name:    "overflowing shape",
			content: rawFile(`{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil),
			want:    `tensor "a": data_offsets [0,0] do not match shape [4294967296,4294967296] x F64 (too many bytes)`,
		},
		{
			name:    "fractional shape",
			content: rawFile(`{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`, []byte{1}),
			want:    `tensor "a": bad entry: json: cannot unmarshal number 1.5 into Go struct field rawTensor.shape of type int64`,
		},
		{
			name:    "metadata not strings",
			content: rawFile(`{"__metadata__":{"format":1}}`, nil),
			want:    `__metadata__: value of "format" is not a string`,
		},
		{
			name:    "entry not an object",
			content: rawFile(`{"a":5}`, nil),
			want:    `tensor "a": expected a JSON object, found 5`,
		},
		{
			name:    "empty name",
			content: rawFile(`{"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{1}),
			want:    `tensor with an empty name`,
		},
		{
			name:    "invalid UTF-8",
			content: rawFile("{\"\xff\":{}}", nil),
			want:    `header is not valid UTF-8`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeTemp(t, file, tt.content)
			f, err := Open(p)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want error %q", tt.want)
			}
			want := p + ": " + tt.want
			if err.Error() != want {
				t.Errorf("Open error:\n got: %s\nwant: %s", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

// Things the spec allows: whitespace padding, empty and zero-size tensors,
// gaps between tensors, null metadata.
func TestOpenAccepts(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		tensors int
	}{
		{"empty header", rawFile(`{}`, nil), 0},
		{"space padding", rawFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}      `, []byte{1, 2}), 1},
		{"newline padding", rawFile("{}\n\t ", nil), 0},
		{"zero-size tensors share an offset", rawFile(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[3,0],"data_offsets":[0,0]}}`, nil), 2},
		{"gap and trailing bytes", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}`, []byte{0, 0, 7, 0}), 1},
		{"null metadata", rawFile(`{"__metadata__":null}`, nil), 0},
		{"bool", rawFile(`{"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}`, []byte{0, 1}), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewReader(bytes.NewReader(tt.content), int64(len(tt.content)), "mem")
			if err != nil {
				t.Fatal(err)
			}
			if f.Len() != tt.tensors {
				t.Errorf("Len() = %d, want %d", f.Len(), tt.tensors)
			}
		})
	}
}

// Open reads nothing but the header: a file whose data buffer is a sparse
// multi-gigabyte hole opens instantly.
func TestOpenReadsOnlyHeader(t *testing.T) {
	header := `{"big":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}`
	p := writeTemp(t, "big.safetensors", rawFile(header, nil))
	if err := os.Truncate(p, int64(8+len(header))+4_000_000_000); err != nil {
		t.Skipf("cannot make a sparse file: %v", err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ti := f.Tensor("big")
	if ti.Offset != int64(8+len(header)) || ti.Length != 4_000_000_000 {
		t.Errorf("big: offset %d length %d", ti.Offset, ti.Length)
	}
}

func FuzzOpen(f *testing.F) {
	var valid bytes.Buffer
	if err := Write(&valid, sampleTensors(), map[string]string{"format": "pt"}); err != nil {
		f.Fatal(err)
	}
	v := valid.Bytes()
	f.Add(v)
	for _, n := range []int{0, 4, 8, 12, 40, len(v) / 2, len(v) - 1} {
		f.Add(v[:n]) // truncated
	}
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 8)))                                                     // lies about its size
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}`, make([]byte, 8))) // overlap
	f.Add(rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2)))   // duplicate
	f.Add(append(binary.LittleEndian.AppendUint64(nil, math.MaxUint64), '{', '}'))

	f.Fuzz(func(t *testing.T, content []byte) {
		file, err := NewReader(bytes.NewReader(content), int64(len(content)), "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz: ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error not one line naming the file: %q", err)
			}
			return
		}
		type span struct{ begin, end int64 }
		var spans []span
		for _, ti := range file.Tensors() {
			if ti.Offset < file.DataOffset() || ti.Length < 0 || ti.Offset+ti.Length > int64(len(content)) {
				t.Fatalf("tensor %q [%d,%d) outside data [%d,%d)", ti.Name, ti.Offset, ti.Offset+ti.Length, file.DataOffset(), len(content))
			}
			if ti.NumElements()*int64(ti.DType.Size()) != ti.Length {
				t.Fatalf("tensor %q: %d elements of %s in %d bytes", ti.Name, ti.NumElements(), ti.DType, ti.Length)
			}
			for _, s := range spans {
				if ti.Length > 0 && ti.Offset < s.end && s.begin < ti.Offset+ti.Length {
					t.Fatalf("tensor %q [%d,%d) overlaps [%d,%d)", ti.Name, ti.Offset, ti.Offset+ti.Length, s.begin, s.end)
				}
			}
			if ti.Length > 0 {
				spans = append(spans, span{ti.Offset, ti.Offset + ti.Length})
			}
			raw, err := file.Raw(ti.Name)
			if err != nil || int64(len(raw)) != ti.Length {
				t.Fatalf("Raw(%q) = %d bytes, %v", ti.Name, len(raw), err)
			}
			switch ti.DType {
			case F32, F16, BF16, F64:
				if _, err := file.Float32(ti.Name); err != nil {
					t.Fatal(err)
				}
				if _, err := file.Float16(ti.Name); err != nil {
					t.Fatal(err)
				}
			case I64, I32:
				if _, err := file.Int64(ti.Name); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkOpen measures header parsing for a checkpoint-sized header (an SD
// UNet has ~690 tensors; this has 5000).
func BenchmarkOpen(b *testing.B) {
	var hdr strings.Builder
	hdr.WriteByte('{')
	const n = 5000
	for i := 0; i < n; i++ {
		if i > 0 {
			hdr.WriteByte(',')
		}
		fmt.Fprintf(&hdr, `"down_blocks.%d.attentions.%d.transformer_blocks.0.attn1.to_q.weight":{"dtype":"F32","shape":[4,4],"data_offsets":[%d,%d]}`, i/10, i%10, 64*i, 64*(i+1))
	}
	hdr.WriteByte('}')
	content := rawFile(hdr.String(), make([]byte, 64*n))
	p := filepath.Join(b.TempDir(), "bench.safetensors")
	if err := os.WriteFile(p, content, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(hdr.String())))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := Open(p)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
