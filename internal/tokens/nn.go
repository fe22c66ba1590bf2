package tokens

import "math"

// Host reference for TokenFlow's token matching. In a real run the search
// runs inside the propagation graph; this is what tests check that graph
// against, so it favours clarity and a stable float64 result over speed.
//
// Reference: the official TokenFlow code (omerbt/TokenFlow):
// util.py batch_cosine_sim, and its use in tokenflow_utils.py
// (TokenFlowBlock.forward, non-pivotal pass):
//
//	sim = batch_cosine_sim(tokens.reshape(-1, dim), pivot_tokens.reshape(-1, dim))
//	idx = sim.argmax(dim=-1)
//
// where batch_cosine_sim is x/x.norm(dim=-1) @ (y/y.norm(dim=-1)).T, with no
// eps and no clamp.
//
// Notation:
//
//	x_i    row i of x, 0 <= i < rows (a token of a frame being propagated)
//	p_j    row j of pivot, 0 <= j < prows (a token of one keyframe)
//	D      dim, the length of every row
//	‖v‖    Euclidean norm, sqrt(Σ_k v_k²)
//	c_ij   cosine similarity (x_i/‖x_i‖) · (p_j/‖p_j‖)
//	idx_i  argmax_j c_ij

// NearestCosine returns, for each of the rows rows of x, the index of the
// row of pivot with the largest cosine similarity (the first one on ties).
// x holds rows*dim values and pivot prows*dim, row-major. It returns nils if
// the lengths do not match those shapes, or dim < 1, or prows < 1.
//
// Zero rows behave as in the reference, which has no eps: a zero row
// divides 0 by 0, so every similarity it takes part in is NaN, and torch's
// argmax treats NaN as larger than any number and returns the first NaN:
//
//   - a zero row of x matches pivot row 0;
//   - a zero row of pivot (the first one, if several) is the match of every
//     row of x.
//
// The same holds for rows containing NaN or ±Inf. Norm1 tokens (LayerNorm
// outputs with an affine shift) are not zero in practice.
//
// It also returns, per row of x, the margin c_best - c_second between the
// best and the second-best similarity. A test comparing another
// implementation's indices against these should skip rows whose margin is
// below that implementation's rounding noise. The margin is +Inf when
// prows == 1 (nothing to confuse), 0 on an exact tie, and 0 when the match
// is decided by a NaN (a zero row, see above).
//
// Steps, for each row i of x:
//  1. u = x_i / ‖x_i‖ in float64 (pivot rows likewise, once: q_j = p_j/‖p_j‖).
//  2. c_ij = Σ_k u_k q_jk over the D components, in float64.
//  3. idx_i = the first j whose c_ij is NaN if any; otherwise the first j
//     with the largest c_ij.
//  4. margin_i = c_best - c_second as defined above.
func NearestCosine(x []float32, rows int, pivot []float32, prows int, dim int) ([]int, []float64) {
	if dim < 1 || rows < 0 || prows < 1 || len(x) != rows*dim || len(pivot) != prows*dim {
		return nil, nil
	}

	// 1. Unit pivot rows, float64.
	q := make([]float64, prows*dim)
	for j := range prows {
		unit(q[j*dim:(j+1)*dim], pivot[j*dim:(j+1)*dim])
	}

	idx := make([]int, rows)
	margin := make([]float64, rows)
	u := make([]float64, dim)
	for i := range rows {
		unit(u, x[i*dim:(i+1)*dim])

		best, second := math.Inf(-1), math.Inf(-1)
		bestJ, nanJ := 0, -1
		for j := range prows {
			// 2. Cosine similarity.
			c := 0.0
			for k, qk := range q[j*dim : (j+1)*dim] {
				c += u[k] * qk
			}
			// 3. NaN wins, first one; else the strictly larger value.
			if math.IsNaN(c) {
				if nanJ < 0 {
					nanJ = j
				}
				continue
			}
			switch {
			case c > best:
				second = best
				best, bestJ = c, j
			case c > second:
				second = c
			}
		}

		// 4. Margin.
		switch {
		case nanJ >= 0:
			idx[i], margin[i] = nanJ, 0
		case prows == 1:
			idx[i], margin[i] = bestJ, math.Inf(1)
		default:
			idx[i], margin[i] = bestJ, best-second
		}
	}
	return idx, margin
}

// unit writes v/‖v‖ into dst, in float64. A zero v gives NaNs (0/0), as the
// reference's division does.
func unit(dst []float64, v []float32) {
	ss := 0.0
	for _, a := range v {
		ss += float64(a) * float64(a)
	}
	norm := math.Sqrt(ss)
	for k, a := range v {
		dst[k] = float64(a) / norm
	}
}
