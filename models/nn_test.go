package models_test

// External test package: internal/tokens (the host reference) imports
// models, so an in-package test could not import it.

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/pnp"
	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/testenv/ortsession"
	"github.com/tokenflow/tokenflow/internal/testmodel"
	"github.com/tokenflow/tokenflow/internal/tokens"
	"github.com/tokenflow/tokenflow/models"
)

// nnMarginBound is how close (in float64 cosine) the best and second-best
// pivot tokens may be before float32 rounding in the graph can swap them,
// for C-channel tokens.
//
// The graph computes, in float32 (unit roundoff u = 2^-24, γ_C ≈ C·u):
// s = Σ x_k² (relative error ≤ γ_C), r = sqrt(s) (≤ γ_C/2 + u), x_k/r
// (≤ γ_C/2 + 2u), the same for the pivot rows, then c = Σ u_k q_k, whose
// error is ≤ γ_C Σ|u_k q_k| plus the two unit vectors' errors; with
// Σ|u_k q_k| ≤ ‖u‖‖q‖ = 1 that is ≤ (2C+4)u per cosine, so (4C+8)u for the
// difference of two (first order, any summation order ONNX Runtime picks).
// The host reference works in float64: its own error is ~1e-15. C = 64
// gives 1.6e-5, C = 8 2.4e-6.
func nnMarginBound(C int) float64 { return float64(4*C+8) * 0x1p-24 }

// nnSession opens models.NearestGraph for C channels, in float32, from
// its marshalled bytes.
func nnSession(t *testing.T, C int) *ort.Session {
	t.Helper()
	g, err := models.NearestGraph(int64(C), onnx.Float)
	if err != nil {
		t.Fatal(err)
	}
	return ortsession.New(t, g, ort.SessionOptions{
		Inputs:  []string{models.NNInX, models.NNInKfTokens, models.NNInKfAttn, models.NNInPivots, models.NNInWeights},
		Outputs: []string{models.NNOutIdx, models.NNOutAttn},
		Threads: 2,
	})
}

// nnCase is one random propagation problem: n frames of S tokens of C
// channels, K keyframes, two pivot slots.
type nnCase struct {
	n, S, C, K int
	pivots     [2]int64
}

// nnData is a case's inputs.
type nnData struct {
	x        []float32 // [3n,S,C]; only the first third is matched
	kfTokens []float32 // [K,S,C]
	kfAttn   []float32 // [3K,S,C]
	weights  []float32 // [n]
	planted  int       // source rows set next to a duplicated pivot row
	copied   [][]bool  // [K][S]: keyframe row has a planted (near-)copy or is one
}

// nnGen draws tokens as LayerNorm outputs look: unit noise around a
// per-channel offset shared by all tokens, which makes positive cosines
// and close matches common. Then, in every keyframe, about one row in
// five is replaced by a copy of an earlier row of the same keyframe
// (possibly itself a copy): exact (bitwise: an exact tie for the graph
// and the host), doubled (the same direction: an exact tie for the host
// only, as 2p's float32 unit vector need not be p's when p is itself a
// perturbed copy), or perturbed by a relative 1e-7, 1e-5 or 1e-3
// (near-duplicates; 1e-7 often rounds to an exact copy). A quarter of the
// source rows are then put next to one of those rows of a pivot, so the
// ties and near-ties decide their match.
func nnGen(r *rand.Rand, c nnCase) nnData {
	n, S, C, K := c.n, c.S, c.C, c.K
	offset := make([]float32, C)
	for k := range offset {
		offset[k] = float32(r.NormFloat64() * 0.7)
	}
	draw := func(rows int) []float32 {
		v := make([]float32, rows*C)
		for i := range v {
			v[i] = float32(r.NormFloat64()) + offset[i%C]
		}
		return v
	}
	d := nnData{x: draw(3 * n * S), kfTokens: draw(K * S), kfAttn: make([]float32, 3*K*S*C)}
	for i := range d.kfAttn {
		d.kfAttn[i] = float32(r.NormFloat64())
	}
	row := func(v []float32, i int) []float32 { return v[i*C : (i+1)*C] }

	// Duplicates and near-duplicates inside each keyframe.
	dup := make([][]int, K) // per keyframe: the rows that have a copy
	d.copied = make([][]bool, K)
	for k := range K {
		d.copied[k] = make([]bool, S)
		kf := d.kfTokens[k*S*C : (k+1)*S*C]
		for j2 := 1; j2 < S; j2++ {
			if r.IntN(5) != 0 {
				continue
			}
			j := r.IntN(j2)
			src, dst := row(kf, j), row(kf, j2)
			switch kind := r.IntN(5); kind {
			case 0:
				copy(dst, src)
			case 1:
				for i := range dst {
					dst[i] = 2 * src[i]
				}
			default:
				rel := []float64{1e-7, 1e-5, 1e-3}[kind-2]
				for i := range dst {
					dst[i] = src[i] * float32(1+rel*r.NormFloat64())
				}
			}
			dup[k] = append(dup[k], j)
			d.copied[k][j], d.copied[k][j2] = true, true
		}
	}

	// Source rows next to a duplicated row of either pivot.
	for i := range n * S {
		k := int(c.pivots[r.IntN(2)])
		if len(dup[k]) == 0 || r.IntN(4) != 0 {
			continue
		}
		p := row(d.kfTokens[k*S*C:], dup[k][r.IntN(len(dup[k]))])
		xi := row(d.x, i)
		for m := range xi {
			xi[m] = p[m] * float32(1+1e-3*r.NormFloat64())
		}
		d.planted++
	}

	d.weights = make([]float32, n)
	for f := range d.weights {
		d.weights[f] = r.Float32()
	}
	// The blend's two ends, exactly.
	d.weights[0] = 1
	if n > 1 {
		d.weights[n-1] = 0
	}
	return d
}

// TestNNGraphMatchesHost runs the propagation branch's nodes
// (models.NearestGraph) in ONNX Runtime on random tokens and checks:
//
//   - idx: each source token's nearest token of each pivot by cosine
//     similarity is tokens.NearestCosine's, row for row, except rows whose
//     float64 top-2 margin is below nnMarginBound(C), where float32
//     rounding may legitimately pick the other one (there the graph's pick
//     must still be within the bound of the best). Exact ties between
//     bitwise copies of a pivot row (margin 0, every other row clear by
//     the bound) are compared: both must give the first index;
//   - out: the gathered, blended attention is w·G1 + (1-w)·G2 computed on
//     the host at the graph's own idx, bit for bit (the same float32
//     operations in the same order: Mul, Sub, Mul, Add).
func TestNNGraphMatchesHost(t *testing.T) {
	cases := []nnCase{
		{n: 1, S: 1, C: 8, K: 2, pivots: [2]int64{0, 1}},
		{n: 2, S: 7, C: 8, K: 2, pivots: [2]int64{1, 0}},
		{n: 4, S: 16, C: 16, K: 1, pivots: [2]int64{0, 0}},
		{n: 3, S: 64, C: 32, K: 3, pivots: [2]int64{2, 0}},
		{n: 4, S: 100, C: 24, K: 2, pivots: [2]int64{0, 1}},
		{n: 2, S: 256, C: 40, K: 3, pivots: [2]int64{1, 2}},
		{n: 1, S: 300, C: 64, K: 2, pivots: [2]int64{1, 1}},
		{n: 4, S: 300, C: 64, K: 2, pivots: [2]int64{0, 1}},
	}
	sessions := map[int]*ort.Session{} // by C, closed when the test ends
	for _, c := range cases {
		if sessions[c.C] == nil {
			sessions[c.C] = nnSession(t, c.C)
		}
	}
	var total, compared, skipped, ties, lone, near, flipped int
	for ci, c := range cases {
		t.Run(fmt.Sprintf("n%d_S%d_C%d_K%d_p%d%d", c.n, c.S, c.C, c.K, c.pivots[0], c.pivots[1]), func(t *testing.T) {
			s := sessions[c.C]
			n, S, C, K := c.n, c.S, c.C, c.K
			d := nnGen(rand.New(rand.NewPCG(3, uint64(ci))), c)
			outs, err := s.Run(context.Background(),
				ort.New([]int64{int64(3 * n), int64(S), int64(C)}, d.x),
				ort.New([]int64{int64(K), int64(S), int64(C)}, d.kfTokens),
				ort.New([]int64{int64(3 * K), int64(S), int64(C)}, d.kfAttn),
				ort.New([]int64{2}, c.pivots[:]),
				ort.New([]int64{int64(n)}, d.weights))
			if err != nil {
				t.Fatal(err)
			}
			idx, err := ort.Data[int64](outs[0])
			if err != nil {
				t.Fatal(err)
			}
			if want := []int64{2, int64(n * S)}; fmt.Sprint(outs[0].Shape) != fmt.Sprint(want) {
				t.Fatalf("idx shape %v, want %v", outs[0].Shape, want)
			}
			rows := n * S
			src := d.x[:rows*C]
			bound := nnMarginBound(C)
			var cCompared, cSkipped, cTies, cLone, cClose, cFlipped int
			for p := range 2 {
				k := int(c.pivots[p])
				pivot := d.kfTokens[k*S*C : (k+1)*S*C]
				want, margin := tokens.NearestCosine(src, rows, pivot, S, C)
				got := idx[p*rows : (p+1)*rows]
				for i := range rows {
					if got[i] < 0 || got[i] >= int64(S) {
						t.Fatalf("pivot %d row %d: index %d outside [0,%d)", p, i, got[i], S)
					}
					switch {
					case margin[i] >= bound:
						cCompared++
						if margin[i] < 1e-3 {
							cClose++
						}
					case margin[i] == 0 && nnTieMargin(src[i*C:(i+1)*C], pivot, want[i], C) >= bound:
						// An exact tie between bitwise copies of one pivot
						// row, every other row clear of it: the graph's
						// cosines for the copies are the same float32
						// value, so it must take the first index too.
						cTies++
					default:
						cSkipped++
						if !d.copied[k][want[i]] {
							cLone++
						}
						if got[i] != int64(want[i]) {
							// Still only a near-tie: the graph's pick must be
							// within rounding of the best.
							cFlipped++
							xi := src[i*C : (i+1)*C]
							gap := nnCos(xi, pivot[want[i]*C:(want[i]+1)*C]) - nnCos(xi, pivot[got[i]*int64(C):(got[i]+1)*int64(C)])
							if gap >= bound {
								t.Errorf("pivot %d (slot %d) row %d: graph picked %d, %.3g below the best %d (bound %.3g)", p, k, i, got[i], gap, want[i], bound)
							}
						}
						continue
					}
					if got[i] != int64(want[i]) {
						t.Errorf("pivot %d (slot %d) row %d (frame %d token %d) mismatch (-want +got):\n-%d\n+%d\n(host top-2 margin %.3g, bound %.3g)",
							p, k, i, i/S, i%S, want[i], got[i], margin[i], bound)
					}
				}
			}
			if c.pivots[0] == c.pivots[1] {
				for i := range rows {
					if idx[i] != idx[rows+i] {
						t.Errorf("row %d: pivots are the same keyframe but idx %d != %d", i, idx[i], idx[rows+i])
					}
				}
			}
			t.Logf("%d rows x 2 pivots: %d compared (%d with margin < 1e-3), %d exact ties (first index), %d near-ties skipped (margin < %.3g; %d chose differently), %d of them at a pivot row without a planted copy; %d source rows planted next to copied pivot rows",
				rows, cCompared, cClose, cTies, cSkipped, bound, cFlipped, cLone, d.planted)
			total += 2 * rows
			compared += cCompared
			skipped += cSkipped
			ties += cTies
			lone += cLone
			near += cClose
			flipped += cFlipped

			// Blend at the graph's own indices.
			got, err := ort.Data[float32](outs[1])
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float32, 3*rows*C)
			for b := range 3 {
				g1 := d.kfAttn[(b*K+int(c.pivots[0]))*S*C:]
				g2 := d.kfAttn[(b*K+int(c.pivots[1]))*S*C:]
				for i := range rows {
					w := d.weights[i/S]
					j1, j2 := int(idx[i]), int(idx[rows+i])
					o := want[(b*rows+i)*C : (b*rows+i+1)*C]
					for m := range o {
						// float32() rounds each product, as the graph's
						// Mul nodes do (no fused multiply-add).
						o[m] = float32(w*g1[j1*C+m]) + float32((1-w)*g2[j2*C+m])
					}
				}
			}
			// Exact: the host repeats the graph's float32 operations.
			fixture.Close(t, "blended attention", got, want, 0, 0)
		})
	}
	t.Logf("total: %d rows, %d compared (%d with margin < 1e-3), %d exact ties, %d near-ties skipped (%d chose differently; %d at a pivot row without a planted copy)",
		total, compared, near, ties, skipped, flipped, lone)
	// Near-ties at copied pivot rows are there on purpose; others are rare.
	if lone*100 > total {
		t.Errorf("%d of %d rows skipped as near-ties at pivot rows without a planted copy: the test checks too little", lone, total)
	}
	if ties == 0 {
		t.Error("no exact ties drawn: the first-index rule went unchecked")
	}
}

// TestNNPropagateOntoItself runs the tiny-sd15 TokenFlow UNet's keyframe
// pass on K frames, then a propagation pass on the same K frames with the
// keyframe pass's own cache, each frame propagated from its own slot
// (weight 1 on it, 0 on the other pivot). That is an exact identity:
//
//   - the source third does not see the other thirds (per-frame
//     attention, convolutions, GroupNorm per sample; PnP and conv
//     injection only write into uncond and cond), so by induction over the
//     layers its norm1 tokens in the propagation pass are the keyframe
//     pass's, bit for bit;
//   - then each token's nearest neighbour in its own frame is itself,
//     provided no other token of the frame is within rounding of parallel
//     to it (checked below with the host reference);
//   - so every branch's attn1 output is gathered at the token's own place
//     from the keyframe pass's output for that branch: 1·G + 0·G' = G
//     exactly (and 0.5·G + 0.5·G = G);
//   - the rest of each block is the same nodes on the same values, and the
//     uncond and cond thirds' attn1 outputs are replaced by the keyframe
//     pass's too, so all three thirds of out_sample match the keyframe
//     pass's, bit for bit. The source third is the one the identity is
//     about; the uncond and cond thirds follow from it.
func TestNNPropagateOntoItself(t *testing.T) {
	testenv.ORT(t)
	const model = "tiny-sd15"
	u, g := testmodel.TokenFlowGraph(t, fixture.Model(t, model), models.Injection{QK: pnp.QKLayers, Conv: pnp.ConvLayers})
	inputs, outputs := ortsession.Ports(g)
	s := ortsession.Saved(t, g, ort.SessionOptions{Inputs: inputs, Outputs: outputs, Threads: 2})
	run := func(t *testing.T, in map[string]ort.Tensor) map[string]ort.Tensor {
		t.Helper()
		return ortsession.RunNamed(t, s, inputs, outputs, in)
	}
	f32 := ortsession.Data[float32]
	layers := u.Config.SelfAttentionLayers()
	exp := fixture.Open(t, fixture.Expected(t, model, "tokenflow_inv10", "tokenflow.safetensors"))

	for _, tc := range []struct {
		frames  []int
		pivots  []int64
		weights []float32
		control bool // not an identity: each frame propagated from the other
	}{
		{frames: []int{2}, pivots: []int64{0, 0}, weights: []float32{1}},
		{frames: []int{2}, pivots: []int64{0, 0}, weights: []float32{0.5}},
		{frames: []int{2, 6}, pivots: []int64{0, 1}, weights: []float32{1, 0}},
		{frames: []int{2, 6}, pivots: []int64{1, 0}, weights: []float32{0, 1}},
		{frames: []int{2, 6}, pivots: []int64{0, 1}, weights: []float32{0, 1}, control: true},
	} {
		t.Run(fmt.Sprintf("frames%v_pivots%v_w%v", tc.frames, tc.pivots, tc.weights), func(t *testing.T) {
			K := len(tc.frames)
			sample, text := models.Step0Batch(t, exp, tc.frames)
			in := map[string]ort.Tensor{
				models.InSample: sample, models.InTimestep: ort.Scalar(int64(901)), models.InTextEmbeds: text,
				models.InAttnMode: ort.New([]int64{1}, []int64{models.ModeKeyframe}), models.InQKInject: ort.New([]int64{1}, []bool{true}),
				models.InConvInject: ort.New([]int64{1}, []bool{true}), models.InPivots: ort.New([]int64{2}, []int64{0, 0}),
				models.InPivotWeights: ort.New([]int64{0}, []float32{}),
			}
			for _, l := range layers {
				in[models.InKeyTokens(l.Path)] = ort.New([]int64{0, 1, l.Channels}, []float32{})
				in[models.InKeyAttn(l.Path)] = ort.New([]int64{0, 1, l.Channels}, []float32{})
				in[models.InAnchorKeys(l.Path)] = ort.New([]int64{0, 1, l.Channels}, []float32{})
				in[models.InAnchorValues(l.Path)] = ort.New([]int64{0, 1, l.Channels}, []float32{})
			}
			key := run(t, in)

			// The identity's premise: in every layer, each keyframe token's
			// nearest token of its own frame is itself, by more than float32
			// rounding.
			for _, l := range layers {
				tok := key[models.OutTokens(l.Path)]
				S, C := int(tok.Shape[1]), int(tok.Shape[2])
				v := f32(t, tok)
				worst := math.Inf(1)
				for f := range K {
					fr := v[f*S*C : (f+1)*S*C]
					idx, margin := tokens.NearestCosine(fr, S, fr, S, C)
					for i := range S {
						if idx[i] != i || margin[i] < nnMarginBound(C) {
							t.Fatalf("%s frame %d token %d: nearest own token %d, margin %.3g: not an identity case", l.Path, f, i, idx[i], margin[i])
						}
						worst = min(worst, margin[i])
					}
				}
				t.Logf("%s: S=%d C=%d, smallest self-match margin %.3g", l.Path, S, C, worst)
			}

			in[models.InAttnMode] = ort.New([]int64{1}, []int64{models.ModePropagate})
			in[models.InPivots] = ort.New([]int64{2}, tc.pivots)
			in[models.InPivotWeights] = ort.New([]int64{int64(K)}, tc.weights)
			for _, l := range layers {
				in[models.InKeyTokens(l.Path)] = key[models.OutTokens(l.Path)]
				in[models.InKeyAttn(l.Path)] = key[models.OutAttn(l.Path)]
			}
			prop := run(t, in)

			want, got := f32(t, key[models.OutSample]), f32(t, prop[models.OutSample])
			third := len(want) / 3
			if tc.control {
				// Frame 2 from frame 6's cache and back: the pass really
				// propagates, so the identity above is not vacuous.
				if d := fixture.Compare(got[:third], want[:third]); d.MaxAbs < 1e-3 {
					t.Errorf("propagating each frame from the other keyframe changed the source third by only %v", d)
				} else {
					t.Logf("control: source third %v", d)
				}
				return
			}
			// Exact: the same nodes on the same values (see above).
			fixture.Close(t, "source third of out_sample", got[:third], want[:third], 0, 0)
			fixture.Close(t, "uncond third of out_sample", got[third:2*third], want[third:2*third], 0, 0)
			fixture.Close(t, "cond third of out_sample", got[2*third:], want[2*third:], 0, 0)
		})
	}
}

// nnCos is the cosine similarity of a and b in float64.
func nnCos(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		ab += x * y
		aa += x * x
		bb += y * y
	}
	return ab / (math.Sqrt(aa) * math.Sqrt(bb))
}

// nnTieMargin is the top-2 margin of x against pivot with the bitwise
// copies of pivot row best (other than best itself) left out: how far the
// best other candidate is from an exact tie.
func nnTieMargin(x, pivot []float32, best, C int) float64 {
	b := pivot[best*C : (best+1)*C]
	var rest []float32
	for j := range len(pivot) / C {
		if r := pivot[j*C : (j+1)*C]; j == best || !slices.Equal(r, b) {
			rest = append(rest, r...)
		}
	}
	_, margin := tokens.NearestCosine(x, 1, rest, len(rest)/C, C)
	return margin[0]
}
