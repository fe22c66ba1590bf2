// Package propagate plans the propagation passes of a TokenFlow edit: for
// each batch of frames, which keyframes ("pivots") its tokens are matched
// against and with what weight each frame blends the two matches.
//
// Reference: the official TokenFlow code (omerbt/TokenFlow,
// tokenflow_utils.py, make_tokenflow_attention_block, the non-pivotal
// branch of TokenFlowBlock.forward), DESIGN.md section 4 step 4.
//
// Notation:
//
//	N      number of frames (n)
//	B      frames per batch (batch), clamped to N when larger
//	M      number of batches, ceil(N/B)
//	b      batch index; batch b holds frames [b*B, min((b+1)*B, N))
//	len_b  frames in batch b; only the last batch can have len_b < B
//	k_b    keyframe of batch b: the b-th entry of the keyframe list, and the
//	       b-th frame of the keyframe pass
//	c_b    nominal centre of batch b: b*B + len_b/2 (integer division);
//	       b*B + B/2 for a full batch, as the official p1/p2
//	s      global frame index
//	d1     |s - c_b|,     distance to the current batch's centre
//	d2     |s - c_{b-1}|, distance to the previous batch's centre
//	w      weight of the first pivot k_b; 1 - w goes to k_{b-1}
//	σ      logistic sigmoid, σ(x) = 1/(1 + e^-x)
//
// Batch 0 has the single pivot k_0 and w = 1. Batch b > 0 has pivots k_b
// (first) and k_{b-1} (second) and
//
//	w(s) = σ(d2 / (d1 + d2))
//
// Note the σ of a ratio in [0, 1]: w never reaches 1, so even the keyframe
// itself is blended with the previous pivot. Within batch b, d2 >= d1, so the
// ratio lies in [1/2, 1] and w in [σ(1/2), σ(1)] = [0.6225, 0.7311]; the
// ratio is 1, and w is σ(1), exactly at s = c_b.
//
// Differences from the official code, which only runs full batches (it trims
// N to a multiple of B):
//
//   - The official centres are computed from the pass's own frame count n
//     (p = b*n + n//2, and s = b*n + arange(n)), which equals B for full
//     batches. For the shorter last batch we use global frame indices and
//     c_b = b*B + len_b/2, the frame the Middle keyframe policy picks, so that
//     with --keyframes middle the keyframe is exactly at its batch's centre.
//     Any centre in [b*B, b*B + B/2] keeps d2 >= d1; c_b > c_{b-1} keeps
//     d1 + d2 >= c_b - c_{b-1} >= 1, so the ratio is always defined.
//   - The official weights are float32: d1, d2 are int64 tensors, and
//     d2/(d1+d2) is true division, which yields torch's default dtype
//     float32; torch.sigmoid then runs in float32. Here the ratio is an IEEE
//     float32 division of the same exact integers (bit-identical), and σ is
//     evaluated in float64 and rounded once to float32, which can differ from
//     torch's float32 sigmoid by an ulp (~6e-8).
package propagate

import (
	"fmt"
	"math"

	"github.com/tokenflow/tokenflow/internal/tensor"
)

// Batch is the plan of one propagation pass.
type Batch struct {
	// Start and End bound the batch's frames: [Start, End).
	Start, End int
	// Pivots are the frame indices of the keyframes this batch propagates
	// from: [k_b] for batch 0, [k_b, k_{b-1}] after.
	Pivots []int
	// PivotSlots are the positions of those keyframes in the keyframe list,
	// which is also their position in the keyframe pass: [b] or [b, b-1].
	PivotSlots []int
	// Weights are the first pivot's weight w for each frame Start..End-1;
	// the second pivot gets 1 - w. All 1 when there is one pivot.
	Weights []float32
}

// Plan returns the propagation passes for n frames in batches of batch
// frames, given the keyframe of each batch at this timestep (keyframes[b]
// inside batch b, as keyframes.Schedule returns them).
//
// Steps:
//  1. Validate n >= 1, batch >= 1; clamp batch to n; M = ceil(n/batch);
//     len(keyframes) == M and each keyframe inside its batch.
//  2. For each batch b: Start = b*B, End = min(Start + B, N).
//  3. b == 0: Pivots [k_0], PivotSlots [0], Weights all 1.
//  4. b > 0: Pivots [k_b, k_{b-1}], PivotSlots [b, b-1], and for each frame s
//     in [Start, End): d1 = |s - c_b|, d2 = |s - c_{b-1}|,
//     r = float32(d2) / float32(d1 + d2), w = σ(r) rounded to float32.
func Plan(n, batch int, keyframes []int) ([]Batch, error) {
	// 1. Validate.
	if n < 1 {
		return nil, fmt.Errorf("propagate: number of frames must be at least 1, got %d", n)
	}
	if batch < 1 {
		return nil, fmt.Errorf("propagate: batch size must be at least 1, got %d", batch)
	}
	spans := tensor.Batches(n, min(batch, n))
	if len(keyframes) != len(spans) {
		return nil, fmt.Errorf("propagate: %d keyframes for %d batches (%d frames, batch size %d)",
			len(keyframes), len(spans), n, min(batch, n))
	}
	for b, k := range keyframes {
		if sp := spans[b]; k < sp.Start || k >= sp.End {
			return nil, fmt.Errorf("propagate: keyframe of batch %d is frame %d, outside the batch [%d, %d)", b, k, sp.Start, sp.End)
		}
	}

	plan := make([]Batch, len(spans))
	for b, sp := range spans {
		// 2. Frames of the batch.
		p := Batch{Start: sp.Start, End: sp.End, Weights: make([]float32, sp.Len())}

		// 3. First batch: one pivot.
		if b == 0 {
			p.Pivots, p.PivotSlots = []int{keyframes[0]}, []int{0}
			for i := range p.Weights {
				p.Weights[i] = 1
			}
			plan[b] = p
			continue
		}

		// 4. Two pivots, weights by distance to the two batch centres.
		p.Pivots, p.PivotSlots = []int{keyframes[b], keyframes[b-1]}, []int{b, b - 1}
		cur, prev := centre(sp), centre(spans[b-1])
		for s := sp.Start; s < sp.End; s++ {
			d1, d2 := abs(s-cur), abs(s-prev)
			r := float32(d2) / float32(d1+d2)
			p.Weights[s-sp.Start] = float32(1 / (1 + math.Exp(-float64(r))))
		}
		plan[b] = p
	}
	return plan, nil
}

// centre is c_b for the batch of frames sp: start_b + len_b/2.
func centre(sp tensor.Span) int { return sp.Start + sp.Len()/2 }

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
