// Package tokens holds TokenFlow's pivot tokens: what a keyframe pass
// leaves for the propagation passes of the same step (the pivot cache),
// and the host reference of the cosine nearest-neighbour search that the
// propagation graph runs in ONNX Runtime.
package tokens

import "github.com/tokenflow/tokenflow/internal/tensor"

// PivotCache is one keyframe pass's output, per self-attention layer (by
// diffusers module path): the source branch's tokens [K,S,C] (norm1's
// output) and attn1's outputs of the three branches [3K,S,C], K keyframes.
type PivotCache struct {
	Keyframes []int // the frame index of each keyframe slot
	Tokens    map[string]tensor.Tensor
	Attn      map[string]tensor.Tensor
}
