package models

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
)

// The GEGLU feed-forward computes its projection's halves as two Gemms over
// the halves of the weight: its output must be bit for bit the one of the
// whole projection followed by a Split (diffusers' chunk), with the hidden
// half first and the gate second.
func TestFeedForwardHalvesEqualWholeProjection(t *testing.T) {
	u := openUNet(t, openCheckpoint(t, fixture.Model(t, "tiny-sd21")))
	var ff string
	for _, n := range u.Weights.Names() {
		if p, ok := strings.CutSuffix(n, ".net.0.proj.weight"); ok {
			ff = p
			break
		}
	}
	info, ok := u.Weights.Info(ff + ".net.0.proj.weight")
	if ff == "" || !ok {
		t.Fatal("no GEGLU feed-forward in the tiny UNet")
	}
	dim := info.Shape[1]
	s := u.Weights.Root("").Sub(ff)
	build := func(whole bool) []float32 {
		g := onnx.NewGraph("ff")
		x := g.Input("x", onnx.Float, onnx.D(2), onnx.D(16), onnx.D(dim))
		var y onnx.Value
		if whole {
			inner := 4 * dim
			h := linear(g, s.Sub("net").Index(0).Sub("proj"), x, dim, 2*inner, true)
			parts := g.Split(h, -1, 0, inner, inner)
			y = linear(g, s.Sub("net").Index(2), g.Mul(parts[0], gelu(g, s, parts[1])), inner, dim, true)
		} else {
			y = FeedForward{Dim: dim}.Build(g, s, x)
		}
		g.Output("y", y, onnx.Float, onnx.D(2), onnx.D(16), onnx.D(dim))
		if err := u.Weights.Err(); err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(3, 4))
		in := make([]float32, 2*16*dim)
		for i := range in {
			in[i] = float32(r.NormFloat64())
		}
		return runF32(t, session(t, g, []string{"x"}, []string{"y"}), ort.New([]int64{2, 16, dim}, in))[0]
	}
	got, want := build(false), build(true)
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("feed-forward [%d]: halves give %g, whole projection and Split %g", i, got[i], want[i])
		}
	}
}

// rowBlock cuts external data by offset and inline bytes by slicing.
func TestRowBlock(t *testing.T) {
	ext := &onnx.Tensor{Name: "w", Type: onnx.Float, Dims: []int64{4, 3}, External: &onnx.External{Location: "f", File: "/x/f", Offset: 100, Length: 48}}
	got, err := rowBlock(ext, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "w[2:4]" || got.Dims[0] != 2 || got.Dims[1] != 3 || got.External.Offset != 124 || got.External.Length != 24 || ext.External.Offset != 100 {
		t.Errorf("external block: %+v %+v (original %+v)", got, got.External, ext.External)
	}
	raw := &onnx.Tensor{Name: "b", Type: onnx.Float16, Dims: []int64{4}, Raw: []byte{1, 2, 3, 4, 5, 6, 7, 8}}
	if got, err = rowBlock(raw, 0, 2); err != nil || string(got.Raw) != string([]byte{1, 2, 3, 4}) || got.Name != "b[0:2]" {
		t.Errorf("inline block: %+v, %v", got, err)
	}
	if _, err := rowBlock(raw, 0, 3); err == nil {
		t.Error("4 rows cut into 3 blocks: no error")
	}
}
