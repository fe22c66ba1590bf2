package tokens

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/safetensors"
)

func TestNearestCosine(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name       string
		x          []float32
		pivot      []float32
		dim        int
		want       []int
		wantMargin []float64
	}{
		{
			// sims: row 0 [1 0 -1], row 1 [0 1 0], row 2 [.707 .707 -.707]
			// (tie: first index), row 3 [-1 0 1]. Scale does not matter.
			name:       "axes",
			x:          []float32{1, 0, 0, 5, 1, 1, -2, 0},
			pivot:      []float32{1, 0, 0, 2, -3, 0},
			dim:        2,
			want:       []int{0, 1, 0, 2},
			wantMargin: []float64{1, 1, 0, 1},
		},
		{
			// Same direction, different lengths: an exact tie, first wins.
			name:       "parallel pivots tie",
			x:          []float32{1, 2, 3},
			pivot:      []float32{-1, 0, 0, 2, 4, 6, 1, 2, 3, 0.5, 1, 1.5},
			dim:        3,
			want:       []int{1},
			wantMargin: []float64{0},
		},
		{
			// Cosine, not dot product: the long pivot [10 0] has the larger
			// dot product with [1 1.5] (10 > 2.5) but the smaller cosine.
			name:       "cosine not dot",
			x:          []float32{1, 1.5},
			pivot:      []float32{10, 0, 1, 1},
			dim:        2,
			want:       []int{1},
			wantMargin: []float64{(2.5/math.Sqrt(2) - 1) / math.Sqrt(3.25)},
		},
		{
			name:       "one pivot row",
			x:          []float32{1, 0, -1, 0, 0, 3},
			pivot:      []float32{0, 1},
			dim:        2,
			want:       []int{0, 0, 0},
			wantMargin: []float64{inf, inf, inf},
		},
		{
			// A zero row of x: every similarity is NaN, torch's argmax
			// returns the first NaN, row 0.
			name:       "zero query row",
			x:          []float32{0, 0, 0, 1},
			pivot:      []float32{1, 0, 0, 1},
			dim:        2,
			want:       []int{0, 1},
			wantMargin: []float64{0, 1},
		},
		{
			// A zero pivot row: its column is NaN for every query, so it
			// is everybody's match (the first zero row, if several).
			name:       "zero pivot row",
			x:          []float32{1, 0, 0, 1, -1, 0},
			pivot:      []float32{1, 0, 0, 0, 0, 1, 0, 0},
			dim:        2,
			want:       []int{1, 1, 1},
			wantMargin: []float64{0, 0, 0},
		},
		{
			name:       "no rows",
			x:          []float32{},
			pivot:      []float32{1, 2},
			dim:        2,
			want:       []int{},
			wantMargin: []float64{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, prows := len(tt.x)/tt.dim, len(tt.pivot)/tt.dim
			got, margin := NearestCosine(tt.x, rows, tt.pivot, prows, tt.dim)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("indices mismatch (-want +got):\n-%v\n+%v", tt.want, got)
			}
			if len(margin) != len(tt.wantMargin) {
				t.Fatalf("margins mismatch (-want +got):\n-%v\n+%v", tt.wantMargin, margin)
			}
			for i := range margin {
				w, g := tt.wantMargin[i], margin[i]
				if !(w == g || math.Abs(w-g) <= 1e-12) {
					t.Errorf("margins mismatch (-want +got):\n-%v\n+%v\nrow %d: want %.17g got %.17g (tol 1e-12)", tt.wantMargin, margin, i, w, g)
				}
			}
			if idx, _ := NearestCosine(tt.x, rows, tt.pivot, prows, tt.dim); !reflect.DeepEqual(idx, tt.want) {
				t.Errorf("NearestCosine mismatch (-want +got):\n-%v\n+%v", tt.want, idx)
			}
		})
	}
}

func TestNearestCosineBadShapes(t *testing.T) {
	tests := []struct {
		name       string
		x          []float32
		rows       int
		pivot      []float32
		prows, dim int
	}{
		{name: "x too short", x: []float32{1, 2, 3}, rows: 2, pivot: []float32{1, 2}, prows: 1, dim: 2},
		{name: "pivot too long", x: []float32{1, 2}, rows: 1, pivot: []float32{1, 2, 3}, prows: 1, dim: 2},
		{name: "no pivot rows", x: []float32{1, 2}, rows: 1, pivot: []float32{}, prows: 0, dim: 2},
		{name: "zero dim", x: []float32{}, rows: 1, pivot: []float32{}, prows: 1, dim: 0},
		{name: "negative rows", x: []float32{}, rows: -1, pivot: []float32{1}, prows: 1, dim: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx, margin := NearestCosine(tt.x, tt.rows, tt.pivot, tt.prows, tt.dim)
			if idx != nil || margin != nil {
				t.Errorf("got %v, %v; want nil, nil", idx, margin)
			}
		})
	}
}

// naiveNearest is the textbook definition, c_ij = x_i·p_j / (‖x_i‖‖p_j‖),
// all in float64, with no care for ties or NaN.
func naiveNearest(x []float32, rows int, pivot []float32, prows, dim int) (idx []int, margin []float64) {
	dot := func(a, b []float32) float64 {
		s := 0.0
		for k := range a {
			s += float64(a[k]) * float64(b[k])
		}
		return s
	}
	for i := range rows {
		xi := x[i*dim : (i+1)*dim]
		sims := make([]float64, prows)
		for j := range prows {
			pj := pivot[j*dim : (j+1)*dim]
			sims[j] = dot(xi, pj) / (math.Sqrt(dot(xi, xi)) * math.Sqrt(dot(pj, pj)))
		}
		best := 0
		for j := range sims {
			if sims[j] > sims[best] {
				best = j
			}
		}
		sorted := slices.Clone(sims)
		slices.Sort(sorted)
		idx = append(idx, best)
		margin = append(margin, sorted[prows-1]-sorted[prows-2])
	}
	return idx, margin
}

// TestNearestCosineRandom compares against naiveNearest on random tokens.
// The two sum in different orders, so they may only disagree on rows whose
// top two similarities are within float64 rounding (1e-12 is far above it
// for dim <= 320); such rows are skipped, and must be rare.
func TestNearestCosineRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ rows, prows, dim int }{
		{rows: 64, prows: 16, dim: 8},
		{rows: 256, prows: 64, dim: 16},
		{rows: 100, prows: 300, dim: 320},
		{rows: 50, prows: 2, dim: 1},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d", c.rows, c.prows, c.dim), func(t *testing.T) {
			x := make([]float32, c.rows*c.dim)
			p := make([]float32, c.prows*c.dim)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			for i := range p {
				p[i] = float32(r.NormFloat64()*2 + 0.3)
			}
			got, margin := NearestCosine(x, c.rows, p, c.prows, c.dim)
			want, wantMargin := naiveNearest(x, c.rows, p, c.prows, c.dim)
			skipped := 0
			for i := range want {
				if wantMargin[i] < 1e-12 {
					skipped++
					continue
				}
				if got[i] != want[i] {
					t.Errorf("row %d mismatch (-want +got):\n-%d\n+%d (margin %g)", i, want[i], got[i], wantMargin[i])
				}
				if d := math.Abs(margin[i] - wantMargin[i]); d > 1e-12 {
					t.Errorf("row %d margin: want %.17g got %.17g", i, wantMargin[i], margin[i])
				}
			}
			// dim 1 has many exact ties (sign only); elsewhere they are rare.
			if c.dim > 1 && skipped > c.rows/100 {
				t.Errorf("%d of %d rows skipped as near-ties", skipped, c.rows)
			}
		})
	}
}

// The conformance fixture: a subset of tiny-sd15 tokenflow_inv10/layers.safetensors
// (step 0, both batches, four layers), regenerated with
//
//	go test ./internal/tokens -run TestNearestCosineConformance \
//	    -nn.regen=<shared>/conformance/tiny-sd15/expected/tokenflow_inv10/layers.safetensors
//
// Its __metadata__ says the same.
const nnFixture = "testdata/nn_tiny-sd15_step0.safetensors"

var nnRegen = flag.String("nn.regen", "", "rewrite "+nnFixture+" from this layers.safetensors")

// nnLayers are the layers kept in the fixture: S = 4, 1, 16 and 64 tokens;
// up_blocks.3.attentions.1 has the run's smallest top-2 margin (3.5e-6).
var nnLayers = []string{
	"down_blocks.2.attentions.1.transformer_blocks.0",
	"mid_block.attentions.0.transformer_blocks.0",
	"up_blocks.2.attentions.1.transformer_blocks.0",
	"up_blocks.3.attentions.1.transformer_blocks.0",
}

// TestNearestCosineConformance matches the official indices (nn_idx_cur,
// nn_idx_prev: util.batch_cosine_sim + argmax in float32) of step 0 of the
// reference edit, N=8, B=4, keyframes [2, 6]. Rows whose float64 top-2
// margin is below 1e-5 are skipped: float32 cosines of 16..32-dim unit
// vectors carry ~1e-7 of rounding, so only matches that close can flip.
func TestNearestCosineConformance(t *testing.T) {
	if *nnRegen != "" {
		writeNNFixture(t, *nnRegen, nnFixture)
	}
	ts := fixture.Open(t, nnFixture)
	checked, skipped := 0, 0
	for _, layer := range nnLayers {
		pivots, pshape := ts.F32("step0.pivot." + layer + ".norm1_source") // [K=2, S, C]
		K, S, C := int(pshape[0]), int(pshape[1]), int(pshape[2])
		if K != 2 {
			t.Fatalf("%s: %d keyframes in the fixture, want 2", layer, K)
		}
		for b := range 2 {
			pass := fmt.Sprintf("step0.batch%d.%s", b, layer)
			x, xshape := ts.F32(pass + ".norm1_source") // [n, S, C]
			rows := int(xshape[0] * xshape[1])
			type match struct {
				name, key string
				slot      int // keyframe-pass index of the pivot
			}
			cases := []match{{"cur", ".nn_idx_cur", b}}
			if b > 0 {
				cases = append(cases, match{"prev", ".nn_idx_prev", b - 1})
			}
			for _, c := range cases {
				want, _ := ts.I64(pass + c.key)
				pivot := pivots[c.slot*S*C : (c.slot+1)*S*C]
				got, margin := NearestCosine(x, rows, pivot, S, C)
				if len(got) != len(want) {
					t.Fatalf("%s %s: %d indices, want %d", pass, c.name, len(got), len(want))
				}
				for i := range want {
					if margin[i] < 1e-5 {
						skipped++
						continue
					}
					checked++
					if got[i] != int(want[i]) {
						t.Errorf("%s %s row %d mismatch (-want +got):\n-%d\n+%d (margin %.3g)", pass, c.name, i, want[i], got[i], margin[i])
					}
				}
			}
		}
	}
	t.Logf("%d matches checked, %d near-ties skipped", checked, skipped)
	if checked < 1000 {
		t.Errorf("only %d matches checked; the fixture holds 1020", checked)
	}
}

// TestNNFixtureFromSource regenerates the fixture from the conformance
// layers.safetensors into a temporary folder and checks it holds the same
// tensors as the checked-in one: the fixture is what its comment says.
func TestNNFixtureFromSource(t *testing.T) {
	src := fixture.Expected(t, "tiny-sd15", "tokenflow_inv10", "layers.safetensors")
	dst := filepath.Join(t.TempDir(), "nn.safetensors")
	writeNNFixture(t, src, dst)
	want, got := fixture.Open(t, nnFixture), fixture.Open(t, dst)
	if w, g := want.Names(), got.Names(); !slices.Equal(w, g) {
		t.Fatalf("tensor names mismatch (-want +got):\n-%v\n+%v", w, g)
	}
	for _, name := range want.Names() {
		if strings.Contains(name, ".nn_idx_") {
			w, ws := want.I64(name)
			g, gs := got.I64(name)
			if !slices.Equal(ws, gs) || !slices.Equal(w, g) {
				t.Errorf("%s differs: shape %v vs %v", name, ws, gs)
			}
			continue
		}
		w, ws := want.F32(name)
		g, gs := got.F32(name)
		if !slices.Equal(ws, gs) || !slices.Equal(w, g) {
			t.Errorf("%s differs: shape %v vs %v", name, ws, gs)
		}
	}
}

// writeNNFixture copies the tensors TestNearestCosineConformance needs from
// the reference layers.safetensors src into dst, keeping only the source
// branch of the keyframe tokens.
func writeNNFixture(t *testing.T, src, dst string) {
	t.Helper()
	in, err := safetensors.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	get := func(name string, dtype safetensors.DType) (safetensors.TensorInfo, []byte) {
		info, err := in.Info(name)
		if err != nil {
			t.Fatal(err)
		}
		if info.DType != dtype {
			t.Fatalf("%s: %s is %s, want %s", src, name, info.DType, dtype)
		}
		b, err := in.Raw(name)
		if err != nil {
			t.Fatal(err)
		}
		return info, b
	}
	var out []safetensors.Tensor
	for _, layer := range nnLayers {
		// norm1 of the keyframe pass is [3, K, S, C]; [0] is the source branch.
		name := "step0.pivot." + layer + ".norm1"
		info, _ := get(name, safetensors.F32)
		if len(info.Shape) != 4 || info.Shape[0] != 3 {
			t.Fatalf("%s: %s is %s %v, want F32 [3,K,S,C]", src, name, info.DType, info.Shape)
		}
		norm1, err := in.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, safetensors.FromFloat32(name+"_source", info.Shape[1:], norm1[:len(norm1)/3]))
		for _, name := range []string{
			"step0.batch0." + layer + ".norm1_source",
			"step0.batch1." + layer + ".norm1_source",
		} {
			info, b := get(name, safetensors.F32)
			out = append(out, safetensors.Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: b})
		}
		for _, name := range []string{
			"step0.batch0." + layer + ".nn_idx_cur",
			"step0.batch1." + layer + ".nn_idx_cur",
			"step0.batch1." + layer + ".nn_idx_prev",
		} {
			info, b := get(name, safetensors.I64)
			out = append(out, safetensors.Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: b})
		}
	}
	meta := map[string]string{
		"format":  "pt",
		"source":  "tiny-sd15 expected/tokenflow_inv10/layers.safetensors (step 0; pivot norm1 reduced to its source branch [0])",
		"made_by": "go test ./internal/tokens -run TestNearestCosineConformance -nn.regen=<that file>",
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := atomicfile.Create(dst, 0o644, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(f, out, meta); err != nil {
		f.Abort()
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d tensors", dst, len(out))
}
