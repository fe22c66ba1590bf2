package testmodel

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"math/rand/v2"
	"path"
	"slices"
	"strings"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/internal/safetensors"
)

// Random initialisation. The point is a network whose activations stay near
// unit scale through every layer, so that timings are those of real
// numbers (no denormals, infinities or NaNs slowing or poisoning kernels):
//
//	tensor                              values
//	*.bias                              0
//	rank-1 *.weight (GroupNorm, LayerNorm) 1
//	nn.Embedding weight (*_embedding.weight, rank 2)
//	                                    ≈ N(0, 0.02²) (sum of 4 uniforms)
//	any other weight [out, in, ...]     U(-a, a), a = sqrt(3 / fan_in),
//	                                    fan_in = product(shape[1:]),
//	                                    so Var = 1 / fan_in
//
// Var(w) = 1/fan_in keeps a linear layer's output variance equal to its
// input's (LeCun); attention scores then have unit variance after the
// 1/sqrt(d) scale. A uniform draw is an int32 times a/2^31: the smallest
// non-zero magnitude is a·2^-31 (≈1e-11 for the widest layer), far above
// float32's smallest normal (1.2e-38).
const embeddingStd = 0.02

// kind is how a tensor is initialised.
type kind int

const (
	kindZero kind = iota
	kindOne
	kindEmbedding
	kindFanIn
)

func kindOf(name string, shape []int64) kind {
	module, tensor := path.Split(strings.ReplaceAll(name, ".", "/"))
	module = path.Base(strings.TrimSuffix(module, "/"))
	switch {
	case tensor == "bias":
		return kindZero
	case len(shape) <= 1:
		return kindOne
	case len(shape) == 2 && strings.HasSuffix(module, "embedding"):
		return kindEmbedding
	default:
		return kindFanIn
	}
}

// newValues returns a tensor's values, one per call, deterministically from
// the seed and the tensor's name (so the order tensors are written in does
// not matter).
func newValues(name string, shape []int64, seed uint64) func() float32 {
	src := tensorSource(name, seed)
	switch kindOf(name, shape) {
	case kindZero:
		return func() float32 { return 0 }
	case kindOne:
		return func() float32 { return 1 }
	case kindEmbedding:
		return sumOf4(src, embeddingStd)
	}
	// kindFanIn: U(-a, a), two values from each 64-bit draw, low half first.
	scale := float32(math.Sqrt(3/float64(numElements(shape[1:]))) / (1 << 31))
	var hi uint32
	var have bool
	return func() float32 {
		if have {
			have = false
			return float32(int32(hi)) * scale
		}
		r := src.Uint64()
		hi, have = uint32(r>>32), true
		return float32(int32(r)) * scale
	}
}

// tensorSource is the random source of the tensor name with seed.
func tensorSource(name string, seed uint64) *rand.PCG {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.NewPCG(seed, h.Sum64())
}

// sumOf4 draws values ≈ N(0, std²) from src, each the sum of 4 U(-1,1)
// (variance 4/3) scaled to std.
func sumOf4(src *rand.PCG, std float64) func() float32 {
	scale := float32(std / math.Sqrt(4.0/3.0) / (1 << 31))
	return func() float32 {
		r1, r2 := src.Uint64(), src.Uint64()
		return (float32(int32(r1)) + float32(int32(r1>>32)) + float32(int32(r2)) + float32(int32(r2>>32))) * scale
	}
}

func numElements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// writeRandomSafetensors streams an F32 safetensors file with random
// values for the given shapes, laid out as internal/safetensors.Write lays
// out F32 tensors (by name, no gaps, a {"format":"pt"} __metadata__ entry
// first, the header padded with spaces to a multiple of 8). That writer
// takes every tensor's bytes in memory, so the header is written here and
// the data generated value by value. It returns the number of parameters
// and the file size.
func writeRandomSafetensors(file string, shapes map[string][]int64, seed uint64) (params, size int64, err error) {
	names := slices.Sorted(maps.Keys(shapes))

	var hdr strings.Builder
	hdr.WriteString(`{"__metadata__":{"format":"pt"}`)
	var off int64
	for _, n := range names {
		shape := shapes[n]
		for _, d := range shape {
			if d < 0 {
				return 0, 0, fmt.Errorf("write %s: tensor %q: negative dimension in %v", file, n, shape)
			}
		}
		q, _ := json.Marshal(n) // a string always marshals
		dims, _ := json.Marshal(shape)
		if shape == nil {
			dims = []byte("[]")
		}
		end := off + 4*numElements(shape)
		fmt.Fprintf(&hdr, `,%s:{"dtype":"F32","shape":%s,"data_offsets":[%d,%d]}`, q, dims, off, end)
		off = end
		params += numElements(shape)
	}
	hdr.WriteByte('}')
	if r := hdr.Len() % 8; r != 0 {
		hdr.WriteString(strings.Repeat(" ", 8-r))
	}

	f, err := atomicfile.Create(file, 0o644, false)
	if err != nil {
		return 0, 0, err
	}
	defer f.Abort()
	w := bufio.NewWriterSize(f, 1<<20)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(hdr.Len()))
	w.Write(lenBuf[:])
	w.WriteString(hdr.String())
	var word [4]byte
	for _, n := range names {
		next := newValues(n, shapes[n], seed)
		for range numElements(shapes[n]) {
			if _, err := w.Write(binary.LittleEndian.AppendUint32(word[:0], math.Float32bits(next()))); err != nil {
				return 0, 0, fmt.Errorf("write %s: %w", file, err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		return 0, 0, fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Commit(); err != nil {
		return 0, 0, err
	}
	// Read the header back with the strict reader: a file this package
	// writes must be one the models package opens.
	st, err := safetensors.Open(file)
	if err != nil {
		return 0, 0, fmt.Errorf("test model: wrote an unreadable file: %w", err)
	}
	defer st.Close()
	if st.Len() != len(names) {
		return 0, 0, fmt.Errorf("test model: %s: wrote %d tensors, reads back %d", file, len(names), st.Len())
	}
	return params, st.Size(), nil
}
