// Package tensor is tokenflow's one host tensor type: a float32 tensor that
// carries its shape. Latents [N,C,h,w], text states [N,77,C], pivot tokens
// [K,S,C] and VAE pixels [N,3,H,W] are all Tensors; conversion to and from
// ONNX Runtime's values and safetensors' records happens once, at those
// boundaries.
//
// Axis 0 is the batch axis everywhere (frames, prompts, keyframes), so the
// operations here are the ones batching needs: views of a row range, gathers
// and concatenation along axis 0. Everything heavier runs in ONNX Runtime.
package tensor

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Tensor is a row-major float32 tensor. Data has exactly the number of
// elements Shape describes; the constructors check it, and a Tensor built
// by hand must keep it.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// New wraps data as a tensor of shape, which must describe len(data)
// elements.
func New(shape []int64, data []float32) (Tensor, error) {
	n, err := count(shape)
	if err != nil {
		return Tensor{}, err
	}
	if n != len(data) {
		return Tensor{}, fmt.Errorf("tensor: shape %v needs %d values, have %d", shape, n, len(data))
	}
	return Tensor{Shape: slices.Clone(shape), Data: data}, nil
}

// Zeros is a new tensor of shape filled with zeros.
func Zeros(shape ...int64) Tensor {
	n, err := count(shape)
	if err != nil {
		panic(err) // shapes given here are the program's own
	}
	return Tensor{Shape: slices.Clone(shape), Data: make([]float32, n)}
}

// maxElements bounds a tensor's size (2^40 floats is 4 TB): shapes read
// from files cannot make a multiplication overflow.
const maxElements = int64(1) << 40

func count(shape []int64) (int, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 || (d > 0 && n > maxElements/d) {
			return 0, fmt.Errorf("tensor: invalid shape %v", shape)
		}
		n *= d
	}
	return int(n), nil
}

// Len is the number of elements.
func (t Tensor) Len() int { return len(t.Data) }

// N is the size of axis 0 (the batch).
func (t Tensor) N() int {
	if len(t.Shape) == 0 {
		return 1
	}
	return int(t.Shape[0])
}

// RowSize is the number of elements of one item along axis 0.
func (t Tensor) RowSize() int {
	n := 1
	for _, d := range t.Shape[1:] {
		n *= int(d)
	}
	return n
}

// Row is item i along axis 0, as a view of shape [1, ...].
func (t Tensor) Row(i int) Tensor { return t.Rows(i, i+1) }

// Rows is items [start, end) along axis 0, as a view sharing t's data.
func (t Tensor) Rows(start, end int) Tensor {
	r := t.RowSize()
	return Tensor{Shape: t.withN(end - start), Data: t.Data[start*r : end*r]}
}

// Gather is a new tensor of the listed items along axis 0, in order.
func (t Tensor) Gather(idx []int) Tensor {
	r := t.RowSize()
	out := Tensor{Shape: t.withN(len(idx)), Data: make([]float32, 0, r*len(idx))}
	for _, i := range idx {
		out.Data = append(out.Data, t.Data[i*r:(i+1)*r]...)
	}
	return out
}

// Repeat is a new tensor in which item rows[k] appears counts[k] times, in
// order.
func (t Tensor) Repeat(rows, counts []int) Tensor {
	var idx []int
	for k, r := range rows {
		for range counts[k] {
			idx = append(idx, r)
		}
	}
	return t.Gather(idx)
}

// Clone is a copy of t that shares nothing with it.
func (t Tensor) Clone() Tensor {
	return Tensor{Shape: slices.Clone(t.Shape), Data: slices.Clone(t.Data)}
}

// Concat joins tensors along axis 0; all must agree on the other axes.
func Concat(ts ...Tensor) (Tensor, error) {
	if len(ts) == 0 {
		return Tensor{}, fmt.Errorf("tensor: nothing to concatenate")
	}
	n, total := 0, 0
	for _, x := range ts {
		if !slices.Equal(x.Shape[1:], ts[0].Shape[1:]) {
			return Tensor{}, fmt.Errorf("tensor: cannot concatenate shapes %v and %v", ts[0].Shape, x.Shape)
		}
		n += x.N()
		total += x.Len()
	}
	out := Tensor{Shape: ts[0].withN(n), Data: make([]float32, 0, total)}
	for _, x := range ts {
		out.Data = append(out.Data, x.Data...)
	}
	return out, nil
}

// SameShape reports whether a and b have equal shapes.
func SameShape(a, b Tensor) bool { return slices.Equal(a.Shape, b.Shape) }

// ErrNonFinite marks a tensor (latents, pixels) that holds NaN or Inf.
var ErrNonFinite = errors.New("NaN or infinite values")

// NonFiniteError says which phase and step of a loop gave NaN or infinite
// latents, and in which frame (the row along axis 0). It is ErrNonFinite.
type NonFiniteError struct {
	Phase    string // "inversion", "reconstruction", "edit"
	Step     int    // 1-based
	Steps    int
	Timestep int
	Frame    int // 0-based row
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("%s step %d of %d (timestep %d) gave NaN or infinite latents (frame %d)", e.Phase, e.Step, e.Steps, e.Timestep, e.Frame)
}

func (e *NonFiniteError) Is(target error) bool { return target == ErrNonFinite }

// CheckFinite returns a *NonFiniteError for phase, step (0-based i of
// steps) and timestep t when x, rows from first on, holds a NaN or Inf.
func CheckFinite(x Tensor, first int, phase string, i, steps, t int) error {
	bad := x.Finite()
	if bad < 0 {
		return nil
	}
	return &NonFiniteError{Phase: phase, Step: i + 1, Steps: steps, Timestep: t, Frame: first + bad/max(x.RowSize(), 1)}
}

// Finite reports the index of the first NaN or Inf in t, or -1 if every
// value is finite.
func (t Tensor) Finite() int {
	for i, v := range t.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return i
		}
	}
	return -1
}

func (t Tensor) withN(n int) []int64 {
	s := slices.Clone(t.Shape)
	s[0] = int64(n)
	return s
}

// Span is the items [Start, End) of a batch along axis 0.
type Span struct{ Start, End int }

// Len is End - Start.
func (s Span) Len() int { return s.End - s.Start }

// Batches splits n items into consecutive spans of size items; the last
// one is smaller when size does not divide n. size is at least 1.
func Batches(n, size int) []Span {
	size = max(size, 1)
	out := make([]Span, 0, (n+size-1)/size)
	for start := 0; start < n; start += size {
		out = append(out, Span{start, min(start+size, n)})
	}
	return out
}
