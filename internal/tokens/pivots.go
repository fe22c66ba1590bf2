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

// AnchorKV is what a windowed step keeps of its anchors' keyframe pass
// (package edit, Window): per self-attention layer, the keys and values
// the edited groups attended to, after Plug-and-Play query/key injection,
// [2P,A*S,C] for P prompts and A anchors of S tokens. Later keyframe
// passes of the step attend to them as well as to their own.
type AnchorKV struct {
	Keyframes []int // the anchors' frame indices, in order
	Keys      map[string]tensor.Tensor
	Values    map[string]tensor.Tensor
}

// Bytes is the memory the keys and values hold.
func (a *AnchorKV) Bytes() int64 { return float32Bytes(a.Keys, a.Values) }

// Bytes is the memory the pivot cache holds.
func (c *PivotCache) Bytes() int64 { return float32Bytes(c.Tokens, c.Attn) }

// float32Bytes is the memory the float32 tensors of the maps hold.
func float32Bytes(maps ...map[string]tensor.Tensor) int64 {
	var n int64
	for _, m := range maps {
		for _, v := range m {
			n += 4 * int64(v.Len())
		}
	}
	return n
}
