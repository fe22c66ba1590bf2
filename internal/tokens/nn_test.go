package tokens

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
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
			got, margin := NearestCosineMargins(tt.x, rows, tt.pivot, prows, tt.dim)
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
			if idx := NearestCosine(tt.x, rows, tt.pivot, prows, tt.dim); !reflect.DeepEqual(idx, tt.want) {
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
			idx, margin := NearestCosineMargins(tt.x, tt.rows, tt.pivot, tt.prows, tt.dim)
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
			got, margin := NearestCosineMargins(x, c.rows, p, c.prows, c.dim)
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
		writeNNFixture(t, *nnRegen)
	}
	ts := readSafetensors(t, nnFixture)
	checked, skipped := 0, 0
	for _, layer := range nnLayers {
		pivots := ts["step0.pivot."+layer+".norm1_source"] // [K=2, S, C]
		K, S, C := pivots.shape[0], pivots.shape[1], pivots.shape[2]
		if K != 2 {
			t.Fatalf("%s: %d keyframes in the fixture, want 2", layer, K)
		}
		for b := range 2 {
			pass := fmt.Sprintf("step0.batch%d.%s", b, layer)
			x := ts[pass+".norm1_source"] // [n, S, C]
			rows := x.shape[0] * x.shape[1]
			type match struct {
				name, key string
				slot      int // keyframe-pass index of the pivot
			}
			cases := []match{{"cur", ".nn_idx_cur", b}}
			if b > 0 {
				cases = append(cases, match{"prev", ".nn_idx_prev", b - 1})
			}
			for _, c := range cases {
				want := ts[pass+c.key].ints()
				pivot := pivots.floats()[c.slot*S*C : (c.slot+1)*S*C]
				got, margin := NearestCosineMargins(x.floats(), rows, pivot, S, C)
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

// tensor is one safetensors entry: float32 or int64 little-endian data.
type tensor struct {
	dtype string
	shape []int
	data  []byte
}

func (t tensor) floats() []float32 {
	out := make([]float32, len(t.data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.data[4*i:]))
	}
	return out
}

func (t tensor) ints() []int64 {
	out := make([]int64, len(t.data)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(t.data[8*i:]))
	}
	return out
}

type headerEntry struct {
	Dtype       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// readSafetensors reads every tensor of a small safetensors file: 8-byte LE
// header length, JSON header, data.
func readSafetensors(t *testing.T, path string) map[string]tensor {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 {
		t.Fatalf("%s: %d bytes, too short for a safetensors header", path, len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		t.Fatalf("%s: header length %d past the end of the file", path, n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatalf("%s: header: %v", path, err)
	}
	data := b[8+n:]
	out := map[string]tensor{}
	for name, raw := range hdr {
		if name == "__metadata__" {
			continue
		}
		var e headerEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("%s: %s: %v", path, name, err)
		}
		lo, hi := e.DataOffsets[0], e.DataOffsets[1]
		if lo < 0 || hi < lo || hi > int64(len(data)) {
			t.Fatalf("%s: %s: data offsets [%d, %d) outside %d bytes", path, name, lo, hi, len(data))
		}
		out[name] = tensor{dtype: e.Dtype, shape: e.Shape, data: data[lo:hi]}
	}
	return out
}

// writeNNFixture copies the tensors TestNearestCosineConformance needs from
// the reference layers.safetensors into nnFixture, keeping only the source
// branch of the keyframe tokens.
func writeNNFixture(t *testing.T, src string) {
	t.Helper()
	in := readSafetensors(t, src)
	get := func(name string) tensor {
		x, ok := in[name]
		if !ok {
			t.Fatalf("%s: no tensor %s", src, name)
		}
		return x
	}
	out := map[string]tensor{}
	for _, layer := range nnLayers {
		// norm1 of the keyframe pass is [3, K, S, C]; [0] is the source branch.
		norm1 := get("step0.pivot." + layer + ".norm1")
		if norm1.dtype != "F32" || len(norm1.shape) != 4 || norm1.shape[0] != 3 {
			t.Fatalf("%s: step0.pivot.%s.norm1 is %s %v, want F32 [3,K,S,C]", src, layer, norm1.dtype, norm1.shape)
		}
		shape := norm1.shape[1:]
		out["step0.pivot."+layer+".norm1_source"] = tensor{
			dtype: "F32", shape: shape, data: norm1.data[:len(norm1.data)/3],
		}
		for _, name := range []string{
			"step0.batch0." + layer + ".norm1_source",
			"step0.batch0." + layer + ".nn_idx_cur",
			"step0.batch1." + layer + ".norm1_source",
			"step0.batch1." + layer + ".nn_idx_cur",
			"step0.batch1." + layer + ".nn_idx_prev",
		} {
			out[name] = get(name)
		}
	}
	meta := map[string]string{
		"format":  "pt",
		"source":  "tiny-sd15 expected/tokenflow_inv10/layers.safetensors (step 0; pivot norm1 reduced to its source branch [0])",
		"made_by": "go test ./internal/tokens -run TestNearestCosineConformance -nn.regen=<that file>",
	}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	slices.Sort(names)
	hdr := map[string]any{"__metadata__": meta}
	var data []byte
	for _, name := range names {
		x := out[name]
		hdr[name] = headerEntry{Dtype: x.dtype, Shape: x.shape, DataOffsets: [2]int64{int64(len(data)), int64(len(data) + len(x.data))}}
		data = append(data, x.data...)
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	buf := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
	buf = append(append(buf, js...), data...)
	if err := os.MkdirAll(filepath.Dir(nnFixture), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nnFixture, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d tensors, %d bytes", nnFixture, len(names), len(buf))
}
