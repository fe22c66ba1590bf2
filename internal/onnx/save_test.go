package onnx_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// The saved models compute y = x W + b, x [2,K], W [K,N], b [N].
const saveK, saveN = 128, 40 // W is 20 KiB: large enough for ONNX Runtime to map it

type linearWeights struct {
	w, b []float32
}

func newLinearWeights() linearWeights {
	return linearWeights{w: rnd(100, saveK*saveN, -1, 1), b: rnd(101, saveN, -1, 1)}
}

// fakeSafetensors writes W then b behind a header of junk bytes whose length
// is odd, so both tensors sit at unaligned non-zero offsets, as they can in a
// .safetensors file. It returns W's and b's offsets.
func fakeSafetensors(t *testing.T, path string, lw linearWeights) (wOff, bOff int64) {
	t.Helper()
	header := []byte(`{"w":{"dtype":"F32","shape":[128,40]},"b":{"dtype":"F32","shape":[40]}}  `)
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, uint64(len(header)))
	buf.Write(header)
	buf.WriteString("junk") // 8 + 75 + 4 = 87 bytes before W
	wOff = int64(buf.Len())
	buf.Write(rawF32(lw.w))
	bOff = int64(buf.Len())
	buf.Write(rawF32(lw.b))
	buf.WriteString("trailing junk")
	if wOff%4 == 0 {
		t.Fatalf("W at offset %d: want an unaligned offset", wOff)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return wOff, bOff
}

// linearGraph builds y = x W + b with the given initializers for W and b.
func linearGraph(t *testing.T, w, b *onnx.Tensor) *onnx.Model {
	t.Helper()
	g := onnx.NewGraph("linear")
	x := g.Input("x", onnx.Float, onnx.P("batch"), onnx.D(saveK))
	g.Output("y", g.Add(g.MatMul(x, g.Initializer(w)), g.Initializer(b)), onnx.Float, onnx.P("batch"), onnx.D(saveN))
	m, err := g.Model("tokenflow-test", "0")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func inlineLinear(t *testing.T, lw linearWeights) *onnx.Model {
	return linearGraph(t,
		&onnx.Tensor{Name: "w", Type: onnx.Float, Dims: []int64{saveK, saveN}, Raw: rawF32(lw.w)},
		&onnx.Tensor{Name: "b", Type: onnx.Float, Dims: []int64{saveN}, Raw: rawF32(lw.b)})
}

// checkLinear loads path in ONNX Runtime and compares its output with x W + b.
func checkLinear(t *testing.T, path string, lw linearWeights) {
	t.Helper()
	testenv.ORT(t)
	s, err := ort.NewSessionFromFile(path, ort.SessionOptions{Inputs: []string{"x"}, Outputs: []string{"y"}, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := rnd(102, 2*saveK, -1, 1)
	out, err := s.Run(t.Context(), ort.New([]int64{2, saveK}, x))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := refMatMul(x, []int64{2, saveK}, lw.w, []int64{saveK, saveN})
	for i := range want {
		want[i] += lw.b[i%saveN]
	}
	hasShape(t, "y", out[0], 2, saveN)
	// 128-term dot products of values in [-1,1): typical float32 error is
	// sqrt(128)*2^-24*|terms| ~ 1e-6; 1e-4 is far below a wrong weight's error.
	closeTo(t, "x W + b", data[float32](t, out[0]), want, 1e-4, 0)
}

// dirNames lists dir, failing t on leftovers of atomic writes.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	names := testenv.DirNames(t, dir)
	for _, n := range names {
		if strings.Contains(n, ".tmp") {
			t.Errorf("temporary file %s left in %s", n, dir)
		}
	}
	return names
}

func sameNames(t *testing.T, dir string, want ...string) {
	t.Helper()
	got := dirNames(t, dir)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s holds: (-want +got)\n-%q\n+%q", dir, want, got)
	}
}

// isCopy checks that dst is a regular file apart from src, with its bytes.
func isCopy(t *testing.T, src, dst string) {
	t.Helper()
	st, err := os.Lstat(dst)
	if err != nil {
		t.Fatal(err)
	}
	ss, _ := os.Stat(src)
	if !st.Mode().IsRegular() || os.SameFile(st, ss) {
		t.Errorf("%s is not a separate copy of %s (mode %v)", dst, src, st.Mode())
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Errorf("copy %s differs from %s", dst, src)
	}
}

// externalLinear is the linear model with W and b read from the fake
// safetensors file src.
func externalLinear(t *testing.T, src string, wOff, bOff int64) *onnx.Model {
	loc := filepath.Base(src)
	return linearGraph(t,
		&onnx.Tensor{Name: "w", Type: onnx.Float, Dims: []int64{saveK, saveN},
			External: &onnx.External{Location: loc, File: src, Offset: wOff, Length: 4 * saveK * saveN}},
		&onnx.Tensor{Name: "b", Type: onnx.Float, Dims: []int64{saveN},
			External: &onnx.External{Location: loc, File: src, Offset: bOff, Length: 4 * saveN}})
}

func TestSaveExternalIntoAnotherFile(t *testing.T) {
	cases := []struct {
		name  string
		opts  onnx.SaveOptions
		setup func(t testing.TB)
		check func(t *testing.T, src, dst string)
	}{
		{"hard link", onnx.SaveOptions{}, nil, func(t *testing.T, src, dst string) {
			st, err := os.Lstat(dst)
			if err != nil {
				t.Fatal(err)
			}
			ss, _ := os.Stat(src)
			if !st.Mode().IsRegular() || !os.SameFile(st, ss) {
				t.Errorf("%s is not a hard link to %s (mode %v)", dst, src, st.Mode())
			}
		}},
		{"copy when hard links fail", onnx.SaveOptions{}, onnx.FailHardLinks, isCopy},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				c.setup(t)
			}
			lw := newLinearWeights()
			src := filepath.Join(t.TempDir(), "unet.safetensors")
			wOff, bOff := fakeSafetensors(t, src, lw)
			m := externalLinear(t, src, wOff, bOff)
			dir := filepath.Join(t.TempDir(), "out")
			if err := onnx.Save(m, dir, "model.onnx", c.opts); err != nil {
				t.Fatal(err)
			}
			sameNames(t, dir, "model.onnx", "unet.safetensors")
			c.check(t, src, filepath.Join(dir, "unet.safetensors"))
			checkLinear(t, filepath.Join(dir, "model.onnx"), lw)

			// Saving again over the first save replaces it in place.
			if err := onnx.Save(m, dir, "model.onnx", c.opts); err != nil {
				t.Fatalf("second save: %v", err)
			}
			sameNames(t, dir, "model.onnx", "unet.safetensors")
			checkLinear(t, filepath.Join(dir, "model.onnx"), lw)
		})
	}
}

func TestSaveSpillsLargeInitializers(t *testing.T) {
	lw := newLinearWeights()
	m := inlineLinear(t, lw)
	before, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	opts := onnx.SaveOptions{DataFile: "weights.bin", InlineLimit: 1024}
	dir := t.TempDir()
	if err := onnx.Save(m, dir, "model.onnx", opts); err != nil {
		t.Fatal(err)
	}
	sameNames(t, dir, "model.onnx", "weights.bin")
	st, err := os.Stat(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	// W (20 KiB) moved out, b (160 bytes) stayed inline.
	if st.Size() > 2048 {
		t.Errorf("model.onnx is %d bytes: W was not moved to weights.bin", st.Size())
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("model.onnx mode %v, want -rw-r--r--", st.Mode().Perm())
	}
	data, err := os.ReadFile(filepath.Join(dir, "weights.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, rawF32(lw.w)) || bytes.Contains(data, rawF32(lw.b)) {
		t.Errorf("weights.bin (%d bytes) should hold W and not b", len(data))
	}
	checkLinear(t, filepath.Join(dir, "model.onnx"), lw)

	// Save leaves the caller's model as it was: it still marshals with its
	// weights inline, and saves again, elsewhere, just as well.
	after, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("Save changed the model it was given")
	}
	dir2 := t.TempDir()
	if err := onnx.Save(m, dir2, "model.onnx", opts); err != nil {
		t.Fatal(err)
	}
	checkLinear(t, filepath.Join(dir2, "model.onnx"), lw)
	if err := onnx.Save(m, dir, "model.onnx", opts); err != nil {
		t.Fatal(err)
	}
	checkLinear(t, filepath.Join(dir, "model.onnx"), lw)
}

// A model mixing external weights (from a safetensors file) and large inline
// tensors gets both kinds placed next to it.
func TestSaveSpillAndExternal(t *testing.T) {
	lw := newLinearWeights()
	src := filepath.Join(t.TempDir(), "w.safetensors")
	wOff, _ := fakeSafetensors(t, src, lw)
	bigBias := make([]float32, saveN) // b inline, spilled with InlineLimit 0
	copy(bigBias, lw.b)
	m := linearGraph(t,
		&onnx.Tensor{Name: "w", Type: onnx.Float, Dims: []int64{saveK, saveN},
			External: &onnx.External{Location: "w.safetensors", File: src, Offset: wOff, Length: 4 * saveK * saveN}},
		&onnx.Tensor{Name: "b", Type: onnx.Float, Dims: []int64{saveN}, Raw: rawF32(bigBias)})
	dir := t.TempDir()
	if err := onnx.Save(m, dir, "model.onnx", onnx.SaveOptions{DataFile: "rest.bin"}); err != nil {
		t.Fatal(err)
	}
	sameNames(t, dir, "model.onnx", "rest.bin", "w.safetensors")
	checkLinear(t, filepath.Join(dir, "model.onnx"), lw)
}

func TestSaveErrors(t *testing.T) {
	lw := newLinearWeights()
	src := filepath.Join(t.TempDir(), "w.safetensors")
	wOff, bOff := fakeSafetensors(t, src, lw)
	cases := []struct {
		name   string
		change func(w, b *onnx.External)
		opts   onnx.SaveOptions
		want   string // in the error
	}{
		{"missing file", func(w, b *onnx.External) {
			w.File = filepath.Join(filepath.Dir(src), "gone.safetensors")
			b.File = w.File
		}, onnx.SaveOptions{}, "gone.safetensors"},
		{"bytes past the end", func(w, b *onnx.External) { b.Offset = 1 << 20 }, onnx.SaveOptions{}, "beyond the end"},
		{"length not the tensor's size", func(w, b *onnx.External) { b.Length = 2 * saveN }, onnx.SaveOptions{}, "takes 160"},
		{"location outside the folder", func(w, b *onnx.External) { w.Location, b.Location = "../w.safetensors", "../w.safetensors" }, onnx.SaveOptions{}, "not a relative path"},
		{"one location, two files", func(w, b *onnx.External) { b.File = filepath.Join(t.TempDir(), "other") }, onnx.SaveOptions{}, "stands for both"},
		{"location is the DataFile", func(w, b *onnx.External) {}, onnx.SaveOptions{DataFile: "w.safetensors"}, "DataFile"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := externalLinear(t, src, wOff, bOff)
			init := m.Graph.Initializers
			c.change(init[0].External, init[1].External)
			dir := filepath.Join(t.TempDir(), "out")
			err := onnx.Save(m, dir, "model.onnx", c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Save: error %v, want one containing %q", err, c.want)
			}
			if _, err := os.Stat(dir); err == nil {
				sameNames(t, dir) // nothing written, not even temporary files
			}
		})
	}
}

// Save copies rather than symlinks across file systems because ONNX Runtime
// (1.30) refuses external data whose real path is outside the model's
// folder. If this test starts failing, symlinks have become an option again.
func TestORTRefusesSymlinkedExternalData(t *testing.T) {
	lw := newLinearWeights()
	src := filepath.Join(t.TempDir(), "w.safetensors")
	wOff, bOff := fakeSafetensors(t, src, lw)
	m := externalLinear(t, src, wOff, bOff)
	dir := t.TempDir()
	if err := onnx.Save(m, dir, "model.onnx", onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "w.safetensors")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	testenv.ORT(t)
	s, err := ort.NewSessionFromFile(filepath.Join(dir, "model.onnx"), ort.SessionOptions{Inputs: []string{"x"}, Outputs: []string{"y"}})
	if err == nil {
		s.Close()
		t.Fatal("ONNX Runtime loaded external data through a symlink out of the model's folder")
	}
	if !strings.Contains(err.Error(), "escapes model directory") {
		t.Logf("refused with an unexpected message: %v", err)
	}
}

// Saving into the folder that already holds the weights file leaves the file
// alone.
func TestSaveNextToWeights(t *testing.T) {
	lw := newLinearWeights()
	dir := t.TempDir()
	src := filepath.Join(dir, "w.safetensors")
	wOff, bOff := fakeSafetensors(t, src, lw)
	before, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := onnx.Save(externalLinear(t, src, wOff, bOff), dir, "model.onnx", onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	sameNames(t, dir, "model.onnx", "w.safetensors")
	after, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("Save replaced the weights file it was saving next to")
	}
	checkLinear(t, filepath.Join(dir, "model.onnx"), lw)
}
