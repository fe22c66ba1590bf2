package propagate

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

// σ values as float32, computed outside Go (double-precision 1/(1+exp(-r))
// rounded to float32):
const (
	sigHalf      = float32(0.622459352016449)  // σ(1/2)
	sigTwoThirds = float32(0.6607563495635986) // σ(2/3)
	sigThreeQtr  = float32(0.6791787147521973) // σ(3/4)
	sigFourFifth = float32(0.6899744868278503) // σ(4/5)
	sigFiveSixth = float32(0.6970592737197876) // σ(5/6)
	sigOne       = float32(0.7310585975646973) // σ(1)
)

// weightTol allows one float32 ulp near 0.7 (6e-8) twice over: the weights
// are σ evaluated in float64 and rounded once, and the constants above were
// rounded the same way, so they normally agree exactly.
const weightTol = 1.2e-7

func TestPlan(t *testing.T) {
	tests := []struct {
		name      string
		n, batch  int
		keyframes []int
		want      []Batch
	}{
		{
			// The conformance reference: N=8, B=4, keyframes [2, 6].
			// Batch 1, frames 4..7, c_1 = 6, c_0 = 2:
			//   s=4: d1=2 d2=2 -> σ(2/4); s=5: d1=1 d2=3 -> σ(3/4);
			//   s=6: d1=0 d2=4 -> σ(1);   s=7: d1=1 d2=5 -> σ(5/6).
			name: "reference N=8 B=4", n: 8, batch: 4, keyframes: []int{2, 6},
			want: []Batch{
				{Start: 0, End: 4, Pivots: []int{2}, PivotSlots: []int{0}, Weights: []float32{1, 1, 1, 1}},
				{Start: 4, End: 8, Pivots: []int{6, 2}, PivotSlots: []int{1, 0},
					Weights: []float32{sigHalf, sigThreeQtr, sigOne, sigFiveSixth}},
			},
		},
		{
			// Weights depend on the batch centres, not on where the random
			// keyframes fell.
			name: "random keyframes N=8 B=4", n: 8, batch: 4, keyframes: []int{0, 7},
			want: []Batch{
				{Start: 0, End: 4, Pivots: []int{0}, PivotSlots: []int{0}, Weights: []float32{1, 1, 1, 1}},
				{Start: 4, End: 8, Pivots: []int{7, 0}, PivotSlots: []int{1, 0},
					Weights: []float32{sigHalf, sigThreeQtr, sigOne, sigFiveSixth}},
			},
		},
		{
			// Remainder batch [8, 10): c_2 = 8 + 2/2 = 9, c_1 = 6.
			//   s=8: d1=1 d2=2 -> σ(2/3); s=9: d1=0 d2=3 -> σ(1).
			name: "remainder N=10 B=4", n: 10, batch: 4, keyframes: []int{2, 6, 9},
			want: []Batch{
				{Start: 0, End: 4, Pivots: []int{2}, PivotSlots: []int{0}, Weights: []float32{1, 1, 1, 1}},
				{Start: 4, End: 8, Pivots: []int{6, 2}, PivotSlots: []int{1, 0},
					Weights: []float32{sigHalf, sigThreeQtr, sigOne, sigFiveSixth}},
				{Start: 8, End: 10, Pivots: []int{9, 6}, PivotSlots: []int{2, 1},
					Weights: []float32{sigTwoThirds, sigOne}},
			},
		},
		{
			// Remainder batch of one frame [8, 9): c_2 = 8, c_1 = 6:
			// d1=0 d2=2 -> σ(1).
			name: "remainder of one N=9 B=4", n: 9, batch: 4, keyframes: []int{1, 4, 8},
			want: []Batch{
				{Start: 0, End: 4, Pivots: []int{1}, PivotSlots: []int{0}, Weights: []float32{1, 1, 1, 1}},
				{Start: 4, End: 8, Pivots: []int{4, 1}, PivotSlots: []int{1, 0},
					Weights: []float32{sigHalf, sigThreeQtr, sigOne, sigFiveSixth}},
				{Start: 8, End: 9, Pivots: []int{8, 4}, PivotSlots: []int{2, 1}, Weights: []float32{sigOne}},
			},
		},
		{
			// B=1: every frame is its own keyframe and its batch's centre.
			name: "batch of one frame", n: 3, batch: 1, keyframes: []int{0, 1, 2},
			want: []Batch{
				{Start: 0, End: 1, Pivots: []int{0}, PivotSlots: []int{0}, Weights: []float32{1}},
				// c_1 = 1, c_0 = 0: d1=0 d2=1 -> σ(1).
				{Start: 1, End: 2, Pivots: []int{1, 0}, PivotSlots: []int{1, 0}, Weights: []float32{sigOne}},
				{Start: 2, End: 3, Pivots: []int{2, 1}, PivotSlots: []int{2, 1}, Weights: []float32{sigOne}},
			},
		},
		{
			name: "single frame", n: 1, batch: 4, keyframes: []int{0},
			want: []Batch{{Start: 0, End: 1, Pivots: []int{0}, PivotSlots: []int{0}, Weights: []float32{1}}},
		},
		{
			// batch > n is clamped to n: one batch, one pivot.
			name: "batch larger than n", n: 5, batch: 8, keyframes: []int{3},
			want: []Batch{{Start: 0, End: 5, Pivots: []int{3}, PivotSlots: []int{0}, Weights: []float32{1, 1, 1, 1, 1}}},
		},
		{
			// Odd B=5, batch 1 = frames 5..9, c_1 = 5 + 5/2 = 7, c_0 = 2:
			//   s=5: d1=2 d2=3 -> σ(3/5); s=6: d1=1 d2=4 -> σ(4/5);
			//   s=7: d1=0 -> σ(1);       s=8: d1=1 d2=6 -> σ(6/7);
			//   s=9: d1=2 d2=7 -> σ(7/9).
			name: "odd batch N=10 B=5", n: 10, batch: 5, keyframes: []int{2, 7},
			want: []Batch{
				{Start: 0, End: 5, Pivots: []int{2}, PivotSlots: []int{0}, Weights: []float32{1, 1, 1, 1, 1}},
				{Start: 5, End: 10, Pivots: []int{7, 2}, PivotSlots: []int{1, 0},
					Weights: []float32{sig(3, 5), sigFourFifth, sigOne, sig(6, 7), sig(7, 9)}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Plan(tt.n, tt.batch, tt.keyframes)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Plan(%d, %d, %v): %d batches, want %d", tt.n, tt.batch, tt.keyframes, len(got), len(tt.want))
			}
			for b := range got {
				g, w := got[b], tt.want[b]
				if g.Start != w.Start || g.End != w.End ||
					!reflect.DeepEqual(g.Pivots, w.Pivots) || !reflect.DeepEqual(g.PivotSlots, w.PivotSlots) {
					t.Errorf("batch %d layout mismatch (-want +got):\n-%+v\n+%+v", b, w, g)
				}
				if i, ok := closeWeights(w.Weights, g.Weights); !ok {
					t.Errorf("batch %d weights mismatch (-want +got):\n-%v\n+%v\nfirst bad frame %d: want %.9g got %.9g (tol %g)",
						b, w.Weights, g.Weights, w.Start+i, at(w.Weights, i), at(g.Weights, i), weightTol)
				}
			}
		})
	}
}

// sig is σ(num/den) computed in float64, rounded to float32, for ratios not
// in the table of constants.
func sig(num, den int) float32 {
	return float32(1 / (1 + math.Exp(-float64(num)/float64(den))))
}

// closeWeights reports whether want and got agree within weightTol, and the
// first index where they do not.
func closeWeights(want, got []float32) (int, bool) {
	if len(want) != len(got) {
		return min(len(want), len(got)), false
	}
	for i := range want {
		if math.Abs(float64(want[i])-float64(got[i])) > weightTol {
			return i, false
		}
	}
	return 0, true
}

func at(x []float32, i int) float32 {
	if i < len(x) {
		return x[i]
	}
	return float32(math.NaN())
}

// TestPlanFormula checks every weight of many layouts against the official
// formula written out in float64, and the pivot bookkeeping.
func TestPlanFormula(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 8, 9, 16, 23, 40} {
		for _, batch := range []int{1, 2, 3, 4, 5, 8, 50} {
			t.Run(fmt.Sprintf("N=%d B=%d", n, batch), func(t *testing.T) {
				B := min(batch, n)
				m := (n + B - 1) / B
				ks := make([]int, m)
				for b := range ks {
					ks[b] = b * B // any frame of the batch will do
				}
				got, err := Plan(n, batch, ks)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != m {
					t.Fatalf("%d batches, want %d", len(got), m)
				}
				next := 0
				for b, p := range got {
					if p.Start != next || p.End <= p.Start || p.End > n || (b < m-1 && p.End-p.Start != B) {
						t.Fatalf("batch %d = [%d, %d), want a batch of %d frames from %d", b, p.Start, p.End, B, next)
					}
					next = p.End
					for i, w := range p.Weights {
						s := p.Start + i
						want := 1.0
						if b > 0 {
							c1 := float64(p.Start + (p.End-p.Start)/2)
							c0 := float64((b-1)*B + B/2)
							d1, d2 := math.Abs(float64(s)-c1), math.Abs(float64(s)-c0)
							want = 1 / (1 + math.Exp(-d2/(d1+d2)))
						}
						if math.Abs(float64(w)-want) > weightTol {
							t.Errorf("batch %d frame %d: w = %.9g, want %.9g", b, s, w, want)
						}
					}
				}
				if next != n {
					t.Errorf("batches end at %d, want %d", next, n)
				}
			})
		}
	}
}

// TestWeightRange checks the MANIFEST's claim that w is in [0.5, 0.731], and
// the tighter bound [σ(1/2), σ(1)] that holds because a frame of batch b is
// never farther from c_b than from c_{b-1}. σ(1) is reached exactly at the
// batch centre, where the Middle policy puts the keyframe.
func TestWeightRange(t *testing.T) {
	for _, n := range []int{2, 5, 8, 9, 10, 31, 64, 65} {
		for _, batch := range []int{1, 2, 3, 4, 7, 8, 16} {
			B := min(batch, n)
			m := (n + B - 1) / B
			ks := make([]int, m)
			for b := range ks {
				ks[b] = b*B + (min((b+1)*B, n)-b*B)/2
			}
			plan, err := Plan(n, batch, ks)
			if err != nil {
				t.Fatal(err)
			}
			for b, p := range plan[1:] {
				for i, w := range p.Weights {
					s := p.Start + i
					if w < 0.5 || w > 0.7311 {
						t.Errorf("N=%d B=%d batch %d frame %d: w = %v outside [0.5, 0.7311]", n, batch, b+1, s, w)
					}
					if w < sigHalf || w > sigOne {
						t.Errorf("N=%d B=%d batch %d frame %d: w = %v outside [σ(1/2), σ(1)] = [%v, %v]", n, batch, b+1, s, w, sigHalf, sigOne)
					}
					if s == ks[b+1] && w != sigOne {
						t.Errorf("N=%d B=%d batch %d: middle keyframe %d has w = %v, want σ(1) = %v", n, batch, b+1, s, w, sigOne)
					}
				}
			}
		}
	}
}

func TestPlanErrors(t *testing.T) {
	tests := []struct {
		name      string
		n, batch  int
		keyframes []int
		wantErr   string
	}{
		{name: "no frames", n: 0, batch: 4, keyframes: nil, wantErr: "number of frames must be at least 1, got 0"},
		{name: "zero batch", n: 8, batch: 0, keyframes: []int{2, 6}, wantErr: "batch size must be at least 1, got 0"},
		{name: "too few keyframes", n: 10, batch: 4, keyframes: []int{2, 6}, wantErr: "2 keyframes for 3 batches (10 frames, batch size 4)"},
		{name: "too many keyframes", n: 8, batch: 4, keyframes: []int{2, 6, 9}, wantErr: "3 keyframes for 2 batches"},
		{name: "keyframe after batch", n: 8, batch: 4, keyframes: []int{4, 6}, wantErr: "keyframe of batch 0 is frame 4, outside the batch [0, 4)"},
		{name: "keyframe before batch", n: 8, batch: 4, keyframes: []int{2, 3}, wantErr: "keyframe of batch 1 is frame 3, outside the batch [4, 8)"},
		{name: "keyframe past the end", n: 10, batch: 4, keyframes: []int{2, 6, 10}, wantErr: "keyframe of batch 2 is frame 10, outside the batch [8, 10)"},
		{name: "negative keyframe", n: 4, batch: 8, keyframes: []int{-1}, wantErr: "keyframe of batch 0 is frame -1, outside the batch [0, 4)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(tt.n, tt.batch, tt.keyframes)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Plan(%d, %d, %v) error = %v, want it to contain %q", tt.n, tt.batch, tt.keyframes, err, tt.wantErr)
			}
		})
	}
}
