package testmodel

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/testenv/ortsession"
	"github.com/tokenflow/tokenflow/models"
)

// The parameter counts of the released stabilityai/stable-diffusion-2-1-base
// components (sum of numel over each safetensors file).
func TestSD21BaseParams(t *testing.T) {
	shapes, err := Shapes(SD21Base())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		tensors int
		params  int64
	}{
		{"unet", 686, 865_910_724},
		{"vae", 248, 83_653_863},
		{"text_encoder", 372, 340_387_840},
	} {
		got := shapes[c.name]
		if len(got) != c.tensors || Count(got) != c.params {
			t.Errorf("%s: %d tensors, %d parameters; want %d, %d", c.name, len(got), Count(got), c.tensors, c.params)
		}
	}
}

func TestKindOf(t *testing.T) {
	for _, c := range []struct {
		name  string
		shape []int64
		want  kind
	}{
		{"conv_in.weight", []int64{320, 4, 3, 3}, kindFanIn},
		{"conv_in.bias", []int64{320}, kindZero},
		{"down_blocks.0.resnets.0.norm1.weight", []int64{320}, kindOne},
		{"time_embedding.linear_1.weight", []int64{1280, 320}, kindFanIn},
		{"text_model.embeddings.token_embedding.weight", []int64{49408, 1024}, kindEmbedding},
		{"text_model.embeddings.position_embedding.weight", []int64{77, 1024}, kindEmbedding},
		{"text_model.final_layer_norm.weight", []int64{1024}, kindOne},
		{"text_model.encoder.layers.0.mlp.fc1.weight", []int64{4096, 1024}, kindFanIn},
	} {
		if got := kindOf(c.name, c.shape); got != c.want {
			t.Errorf("kindOf(%q) = %d, want %d", c.name, got, c.want)
		}
	}
}

// tinySpec is tiny-sd21's architecture, read from its config files.
func tinySpec(t *testing.T) (Spec, string) {
	t.Helper()
	assets := fixture.Model(t, "tiny-sd21")
	read := func(parts ...string) map[string]any {
		b, err := os.ReadFile(filepath.Join(append([]string{assets}, parts...)...))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	return Spec{Name: "tiny-sd21", UNet: read("unet", "config.json"), VAE: read("vae", "config.json"),
		TextEncoder: read("text_encoder", "config.json"), ModelIndex: read("model_index.json")}, assets
}

// A written checkpoint is one the models package reads: every graph builds
// from its files, and the values follow the documented initialisation.
func TestWriteReadsBack(t *testing.T) {
	spec, assets := tinySpec(t)
	dir := t.TempDir()
	sum, err := Write(dir, assets, spec, 7)
	if err != nil {
		t.Fatal(err)
	}
	UNetGraph(t, dir)
	c := Open(t, dir)
	v, err := c.VAE(onnx.Float)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Weights.Close()
	te, err := c.TextEncoder(onnx.Float)
	if err != nil {
		t.Fatal(err)
	}
	defer te.Weights.Close()
	for _, build := range []func() (*onnx.Graph, error){v.EncoderGraph, v.DecoderGraph, te.Graph} {
		if _, err := build(); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"} {
		want, _ := os.ReadFile(filepath.Join(assets, sub))
		got, err := os.ReadFile(filepath.Join(dir, sub))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s not copied (%v)", sub, err)
		}
	}
	shapes, err := Shapes(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, comp := range sum.Components {
		if want := Count(shapes[comp.Name]); comp.Params != want {
			t.Errorf("%s: summary says %d parameters, the graphs use %d", comp.Name, comp.Params, want)
		}
	}

	f, err := safetensors.Open(filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range f.Names() {
		info := f.Tensor(name)
		if info.DType != safetensors.F32 {
			t.Fatalf("%s: dtype %s, want F32", name, info.DType)
		}
		if info.Offset%4 != 0 {
			t.Errorf("%s: offset %d not 4-byte aligned", name, info.Offset)
		}
		vals, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range vals {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) || (x != 0 && math.Abs(float64(x)) < 1e-30) {
				t.Fatalf("%s: value %g is not a normal finite float", name, x)
			}
		}
		switch kindOf(name, info.Shape) {
		case kindZero, kindOne:
			want := float32(0)
			if kindOf(name, info.Shape) == kindOne {
				want = 1
			}
			for i, x := range vals {
				if x != want {
					t.Fatalf("%s[%d] = %g, want %g", name, i, x, want)
				}
			}
		case kindFanIn:
			// Var = 1/fan_in; with n draws the sample variance is off by
			// about sqrt(0.8/n) relative (uniform kurtosis 1.8): allow 5
			// standard errors.
			fanIn := numElements(info.Shape[1:])
			var ss float64
			a := math.Sqrt(3 / float64(fanIn))
			for _, x := range vals {
				ss += float64(x) * float64(x)
				if math.Abs(float64(x)) > a {
					t.Fatalf("%s: %g outside ±%g", name, x, a)
				}
			}
			got, want := ss/float64(len(vals))*float64(fanIn), 1.0
			if tol := 5 * math.Sqrt(0.8/float64(len(vals))); math.Abs(got-want) > tol {
				t.Errorf("%s: variance x fan_in = %.4f, want 1 ± %.4f", name, got, tol)
			}
		}
	}
}

func TestWriteDeterministic(t *testing.T) {
	spec, assets := tinySpec(t)
	read := func(seed uint64) []byte {
		dir := t.TempDir()
		if _, err := Write(dir, assets, spec, seed); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "vae", "diffusion_pytorch_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b, c := read(1), read(1), read(2)
	if !bytes.Equal(a, b) {
		t.Error("two writes with seed 1 differ")
	}
	if bytes.Equal(a, c) {
		t.Error("seeds 1 and 2 give the same weights")
	}
}

func TestWriteMissingAssets(t *testing.T) {
	spec, _ := tinySpec(t)
	if _, err := Write(t.TempDir(), t.TempDir(), spec, 1); err == nil {
		t.Fatal("Write with an assets folder lacking tokenizer/ succeeded")
	}
}

func TestCached(t *testing.T) {
	spec, assets := tinySpec(t)
	root := t.TempDir()
	first, err := Cached(root, assets, spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	weights := filepath.Join(first.Dir, "unet", "diffusion_pytorch_model.safetensors")
	st1, err := os.Stat(weights)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Cached(root, assets, spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(weights)
	if again.Dir != first.Dir || !os.SameFile(st1, st2) {
		t.Error("a complete cached folder was written again")
	}
	if len(again.Components) != 3 || again.Components[0].Params != first.Components[0].Params {
		t.Errorf("summary from the marker: %+v, want %+v", again, first)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 {
		t.Errorf("cache root holds %d entries, want 1 (no temporary folders left)", len(entries))
	}

	// Without its marker the folder is incomplete: it is written anew
	// (a stray file in it goes; inode numbers may be reused, so they
	// cannot tell).
	stray := filepath.Join(first.Dir, "stray")
	if err := os.WriteFile(stray, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(first.Dir, markerFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Cached(root, assets, spec, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); err == nil {
		t.Error("a folder without its marker was reused")
	}
	if _, err := readMarker(first.Dir); err != nil {
		t.Errorf("rewritten folder: %v", err)
	}
	// A truncated weight file also makes it incomplete.
	if err := os.Truncate(weights, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := readMarker(first.Dir); err == nil {
		t.Error("a truncated weight file passed as complete")
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv(CacheDirVar, "/some/where")
	if d, err := DefaultCacheDir(); err != nil || d != "/some/where" {
		t.Errorf("DefaultCacheDir() = %q, %v; want $%s", d, err, CacheDirVar)
	}
}

// The random UNet computes finite numbers of moderate size: what the
// initialisation is for.
func TestRandomUNetRuns(t *testing.T) {
	testenv.ORT(t)
	spec, assets := tinySpec(t)
	dir := t.TempDir()
	if _, err := Write(dir, assets, spec, 5); err != nil {
		t.Fatal(err)
	}
	u, g := UNetGraph(t, dir)
	data, err := u.Weights.DataDir()
	if err != nil {
		t.Fatal(err)
	}
	s := ortsession.New(t, g, ort.SessionOptions{Threads: 1,
		Inputs:  []string{models.InSample, models.InTimestep, models.InTextEmbeds},
		Outputs: []string{models.OutSample},
		Config:  map[string]string{"session.model_external_initializers_file_folder_path": data}})
	x := normal(1, 4*16*16)
	e := normal(2, 77*int(u.Config.CrossDims[0]))
	out := ortsession.Run(t, s, ort.New([]int64{1, 4, 16, 16}, x), ort.Scalar(int64(500)),
		ort.New([]int64{1, 77, int64(u.Config.CrossDims[0])}, e))
	rms := FiniteRMS(t, "UNet output", ortsession.Data[float32](t, out[0]))
	t.Logf("random tiny UNet: output rms %.3g", rms)
	if rms < 1e-3 || rms > 1e3 {
		t.Errorf("output rms %g: activations far from unit scale", rms)
	}
}

// normal is deterministic N(0,1)-ish test input.
func normal(seed uint64, n int) []float32 {
	next := sumOf4(tensorSource("input", seed), 1)
	out := make([]float32, n)
	for i := range out {
		out[i] = next()
	}
	return out
}
