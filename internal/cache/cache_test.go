package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// testKey is a small but complete key: 2 frames of 16x24 pixels, so
// latents of [2,4,3,2].
func testKey() Key {
	return Key{
		VideoSHA256:     strings.Repeat("ab", 32),
		ModelID:         "model-0123",
		Width:           16,
		Height:          24,
		Start:           0,
		Count:           2,
		Stride:          1,
		InversionPrompt: "a woman running",
		InversionSteps:  50,
		SaveSteps:       3,
	}
}

func testManifest() Manifest {
	return Manifest{
		Key:   testKey(),
		Video: VideoInfo{Path: "in.mp4", FPS: "30000/1001", Frames: 2, Width: 16, Height: 24},
		Model: ModelInfo{Ref: "sd-1.5", Dir: "/models/sd-1.5", ID: "model-0123"},
	}
}

// testLatents makes latents whose values differ by tensor and index,
// with the float32 values a byte-level round trip must keep: -0, a
// subnormal, the largest finite magnitudes and a value one ulp above 1.
// (NaN and Inf are refused by Store: see TestCacheNonFinite.)
func testLatents(seed float32) *Latents {
	shape := []int64{2, 4, 3, 2}
	n := 2 * 4 * 3 * 2
	fill := func(base float32) tensor.Tensor {
		v := make([]float32, n)
		for i := range v {
			v[i] = base + float32(i)*0.125
		}
		v[1] = float32(math.Copysign(0, -1))
		v[2] = math.Float32frombits(1) // smallest subnormal
		v[3] = math.MaxFloat32
		v[4] = -math.MaxFloat32
		v[5] = math.Float32frombits(0x3f800001)
		return tensor.Tensor{Shape: shape, Data: v}
	}
	return &Latents{
		Z0:    fill(seed),
		Noisy: map[int]tensor.Tensor{1: fill(seed + 100), 21: fill(seed + 200), 41: fill(seed + 300)},
	}
}

// testSameBits fails unless got and want hold the same float32 bit
// patterns (exact: the cache must not change a single bit).
func testSameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v (%#08x), want %v (%#08x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

func testSameLatents(t *testing.T, got, want *Latents) {
	t.Helper()
	if !tensor.SameShape(got.Z0, want.Z0) {
		t.Fatalf("shape %v, want %v", got.Z0.Shape, want.Z0.Shape)
	}
	testSameBits(t, "z0", got.Z0.Data, want.Z0.Data)
	if len(got.Noisy) != len(want.Noisy) {
		t.Fatalf("%d noisy latents, want %d", len(got.Noisy), len(want.Noisy))
	}
	for ts, w := range want.Noisy {
		testSameBits(t, fmt.Sprintf("z_%d", ts), got.Noisy[ts].Data, w.Data)
	}
}

func testStore(t *testing.T, root string, m Manifest, l *Latents) *Entry {
	t.Helper()
	e, err := StoreContext(context.Background(), root, m, l, false)
	if err != nil {
		t.Fatalf("Store: %v", err)
	}
	return e
}

// testMustHit looks k up and fails unless a valid entry comes back.
func testMustHit(t *testing.T, root string, k Key) *Entry {
	t.Helper()
	e, reason, err := LookupContext(context.Background(), root, k)
	if err != nil || reason != "" || e == nil {
		t.Fatalf("Lookup = (%v, %q, %v), want a valid entry", e, reason, err)
	}
	return e
}

// testListing is the sorted names in root/inversions.
func testListing(t *testing.T, root string) []string {
	t.Helper()
	return testenv.DirNames(t, filepath.Join(root, "inversions"))
}

// testEditManifest rewrites dir/manifest.json through edit, as a user
// with a text editor would.
func testEditManifest(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "manifest.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if data, err = json.MarshalIndent(m, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o666); err != nil {
		t.Fatal(err)
	}
}

// setManifest is a corruption that sets the manifest's field at path (a
// field of the key: "key", "video_sha256") to v.
func setManifest(v any, path ...string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		testEditManifest(t, dir, func(m map[string]any) {
			for _, k := range path[:len(path)-1] {
				m = m[k].(map[string]any)
			}
			m[path[len(path)-1]] = v
		})
	}
}

// testRewriteLatents replaces dir/latents.safetensors with tensors and
// makes the manifest's CRC and size agree, so that only the tensor checks can
// catch what is wrong.
func testRewriteLatents(t *testing.T, dir string, tensors []safetensors.Tensor) {
	t.Helper()
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, tensors, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "latents.safetensors"), buf.Bytes(), 0o666); err != nil {
		t.Fatal(err)
	}
	crc := fmt.Sprintf("%08x", crc32.Checksum(buf.Bytes(), crc32.MakeTable(crc32.Castagnoli)))
	testEditManifest(t, dir, func(m map[string]any) {
		m["latents_crc32c"] = crc
		m["latents_size"] = buf.Len()
	})
}

func testTensors(l *Latents, dtype safetensors.DType, shape []int64) []safetensors.Tensor {
	mk := func(name string, v []float32) safetensors.Tensor {
		if dtype == safetensors.F16 {
			h := make([]uint16, len(v))
			for i, x := range v {
				h[i] = safetensors.Float32ToFloat16(x)
			}
			return safetensors.FromFloat16(name, shape, h)
		}
		return safetensors.FromFloat32(name, shape, v)
	}
	ts := []safetensors.Tensor{mk("latents", l.Z0.Data)}
	for _, t := range []int{1, 21, 41} {
		ts = append(ts, mk(fmt.Sprintf("noisy_latents_%d", t), l.Noisy[t].Data))
	}
	return ts
}

func TestCacheRoundTrip(t *testing.T) {
	root := t.TempDir()
	want := testLatents(1)
	stored := testStore(t, root, testManifest(), want)

	if wantDir := filepath.Join(root, "inversions", testKey().ID()); stored.Dir != wantDir {
		t.Errorf("entry in %s, want %s", stored.Dir, wantDir)
	}
	m := stored.Manifest
	if m.Format != Format || !slices.Equal(m.Kept, []int{1, 21, 41}) || m.Latent != [4]int64(want.Z0.Shape) || m.Tool == "" || m.Created.IsZero() || len(m.LatentsCRC) != 8 || m.LatentsSize <= 0 {
		t.Errorf("Store filled in the manifest as %+v", m)
	}
	if got := testListing(t, root); !slices.Equal(got, []string{testKey().ID()}) {
		t.Errorf("inversions/ holds %q, want only the entry", got)
	}

	e := testMustHit(t, root, testKey())
	if !reflect.DeepEqual(e.Manifest, stored.Manifest) {
		t.Errorf("Lookup manifest differs from Store's:\n-want %+v\n+got  %+v", stored.Manifest, e.Manifest)
	}
	got, err := e.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	testSameLatents(t, got, want)
	if p := e.ReconstructionPath(); p != filepath.Join(e.Dir, "reconstruction.mp4") {
		t.Errorf("ReconstructionPath = %s", p)
	}
}

func TestCacheMissWithoutEntry(t *testing.T) {
	root := filepath.Join(t.TempDir(), "never-made")
	e, reason, err := LookupContext(context.Background(), root, testKey())
	if e != nil || reason != "" || err != nil {
		t.Errorf("Lookup in an empty root = (%v, %q, %v), want a plain miss", e, reason, err)
	}
}

func TestCacheKeyFields(t *testing.T) {
	root := t.TempDir()
	base := testKey()
	testStore(t, root, testManifest(), testLatents(0))

	changes := []struct {
		field string
		edit  func(k *Key)
	}{
		{"video bytes", func(k *Key) { k.VideoSHA256 = strings.Repeat("cd", 32) }},
		{"model", func(k *Key) { k.ModelID = "model-4567" }},
		{"width", func(k *Key) { k.Width = 24 }},
		{"height", func(k *Key) { k.Height = 16 }},
		{"start", func(k *Key) { k.Start = 1 }},
		{"count", func(k *Key) { k.Count = 3 }},
		{"stride", func(k *Key) { k.Stride = 2 }},
		{"inversion prompt", func(k *Key) { k.InversionPrompt = "a man running" }},
		{"empty inversion prompt", func(k *Key) { k.InversionPrompt = "" }},
		{"inversion steps", func(k *Key) { k.InversionSteps = 500 }},
		{"editing steps", func(k *Key) { k.SaveSteps = 50 }},
		{"folder fps", func(k *Key) { k.FolderFPS = "25" }},
		{"dtype", func(k *Key) { k.DType = "fp16" }},
		// Quoting keeps fields apart: moving text across a field boundary
		// must not give the same encoding.
		{"prompt spilling into fps", func(k *Key) { k.InversionPrompt += "\"\ninversion_steps 50"; k.FolderFPS = "" }},
	}
	seen := map[string]string{base.ID(): "base"}
	for _, c := range changes {
		t.Run(c.field, func(t *testing.T) {
			k := base
			c.edit(&k)
			id := k.ID()
			if !regexp.MustCompile(`^[0-9a-f]{24}$`).MatchString(id) {
				t.Fatalf("ID %q is not 24 lowercase hex digits", id)
			}
			if other, ok := seen[id]; ok {
				t.Fatalf("ID %s is the same as for %s", id, other)
			}
			seen[id] = c.field
			if e, reason, err := LookupContext(context.Background(), root, k); e != nil || reason != "" || err != nil {
				t.Errorf("Lookup = (%v, %q, %v), want a miss", e, reason, err)
			}
		})
	}
	if base.ID() != testKey().ID() {
		t.Error("ID is not stable across calls")
	}
	// Golden, made outside Go: the canonical text (canonical) piped
	// through `sha256sum | cut -c1-24`. Changing the encoding must come with
	// a new keyVersion, and this value changes with it.
	if got, want := base.ID(), "ddfbbff4f3c06819330f9104"; got != want {
		t.Errorf("ID = %s, want %s", got, want)
	}
	// An fp16 key: the same text and a last line `dtype "fp16"` (a float32
	// key has no dtype line, so its ID above did not change with the field).
	half := base
	half.DType = "fp16"
	if got, want := half.ID(), "d4bae3594a89a3033e3a367a"; got != want {
		t.Errorf("fp16 ID = %s, want %s", got, want)
	}
}

func TestCacheInvalidEntries(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string // substring of the reason
	}{
		{"truncated latents", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "latents.safetensors")
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, "latents.safetensors is truncated"},
		{"flipped byte in latents", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "latents.safetensors")
			data, _ := os.ReadFile(p)
			data[len(data)-3] ^= 0x40
			os.WriteFile(p, data, 0o666)
		}, "CRC"},
		{"bytes appended to latents", func(t *testing.T, dir string) {
			f, _ := os.OpenFile(filepath.Join(dir, "latents.safetensors"), os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("more"))
			f.Close()
		}, "manifest says"},
		{"latents missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "latents.safetensors"))
		}, "latents.safetensors is missing"},
		{"manifest missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "manifest.json"))
		}, "manifest.json is missing"},
		{"manifest garbage", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "manifest.json"), []byte("{\"format\": 1, \x00garbage"), 0o666)
		}, "manifest.json is not valid JSON"},
		{"manifest of the wrong shape", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`{"format": "one"}`), 0o666)
		}, "manifest.json is not a manifest"},
		{"edited prompt", setManifest("a cat", "key", "inversion_prompt"), "another inversion prompt"},
		{"edited video hash", setManifest("00", "key", "video_sha256"), "another video"},
		{"edited steps", setManifest(49, "key", "inversion_steps"), "49 inversion steps, want 50"},
		{"edited dtype", setManifest("fp16", "key", "dtype"), "made with fp16 graphs, want fp32"},
		{"format 0", func(t *testing.T, dir string) {
			testEditManifest(t, dir, func(m map[string]any) { delete(m, "format") })
		}, "format 0, want 1"},
		{"latent shape disagrees with the frame count", setManifest([]int{3, 4, 3, 2}, "latent_shape"), "latents for 3 frames"},
		{"latent shape disagrees with the size", setManifest([]int{2, 4, 2, 3}, "latent_shape"), "latents of 3x2"},
		{"no kept timesteps", setManifest([]int{}, "kept_timesteps"), "no kept timesteps"},
		{"kept timesteps out of order", setManifest([]int{21, 1, 41}, "kept_timesteps"), "ascending"},
		{"kept timesteps repeated", setManifest([]int{1, 21, 21, 41}, "kept_timesteps"), "unique"},
		{"kept timestep with no tensor", setManifest([]int{1, 21, 61}, "kept_timesteps"), `no tensor "noisy_latents_61"`},
		{"edited crc", setManifest("zz", "latents_crc32c"), "no valid CRC"},
		{"tensor of the wrong dtype", func(t *testing.T, dir string) {
			testRewriteLatents(t, dir, testTensors(testLatents(1), safetensors.F16, []int64{2, 4, 3, 2}))
		}, "is F16, want F32"},
		{"tensor of the wrong shape", func(t *testing.T, dir string) {
			testRewriteLatents(t, dir, testTensors(testLatents(1), safetensors.F32, []int64{2, 4, 2, 3}))
		}, "has shape [2 4 2 3], want [2 4 3 2]"},
		{"extra tensor", func(t *testing.T, dir string) {
			l := testLatents(1)
			testRewriteLatents(t, dir, append(testTensors(l, safetensors.F32, []int64{2, 4, 3, 2}),
				safetensors.FromFloat32("noisy_latents_999", []int64{2, 4, 3, 2}, l.Z0.Data)))
		}, `unexpected tensor "noisy_latents_999"`},
		{"latents not a safetensors file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "latents.safetensors")
			st, _ := os.Stat(p)
			junk := bytes.Repeat([]byte{0xff}, int(st.Size()))
			os.WriteFile(p, junk, 0o666)
			crc := fmt.Sprintf("%08x", crc32.Checksum(junk, crc32.MakeTable(crc32.Castagnoli)))
			testEditManifest(t, dir, func(m map[string]any) { m["latents_crc32c"] = crc })
		}, "latents.safetensors: header length"},
		{"NaN in a stored tensor", func(t *testing.T, dir string) {
			l := testLatents(1)
			l.Noisy[21].Data[30] = float32(math.NaN()) // frame 1 (24 values a frame)
			testRewriteLatents(t, dir, testTensors(l, safetensors.F32, []int64{2, 4, 3, 2}))
		}, `tensor "noisy_latents_21" holds NaN or infinite values (frame 1)`},
		{"Inf in the last value", func(t *testing.T, dir string) {
			l := testLatents(1)
			l.Noisy[41].Data[47] = float32(math.Inf(-1))
			testRewriteLatents(t, dir, testTensors(l, safetensors.F32, []int64{2, 4, 3, 2}))
		}, `tensor "noisy_latents_41" holds NaN or infinite values (frame 1)`},
		{"entry is a file", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
			os.WriteFile(dir, []byte("x"), 0o666)
		}, "it is not a folder"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			k := testKey()
			stored := testStore(t, root, testManifest(), testLatents(1))
			c.damage(t, stored.Dir)

			e, reason, err := LookupContext(context.Background(), root, k)
			if err != nil {
				t.Fatalf("Lookup error: %v", err)
			}
			if e != nil {
				t.Fatalf("Lookup accepted the damaged entry")
			}
			if !strings.Contains(reason, c.want) {
				t.Errorf("reason = %q, want it to contain %q", reason, c.want)
			}
			t.Logf("reason: %s", reason)
			if strings.ContainsAny(reason, "\r\n") {
				t.Errorf("reason %q is not one line", reason)
			}

			// The rebuild replaces the damaged entry and leaves nothing else.
			want := testLatents(2)
			if _, err := StoreContext(context.Background(), root, testManifest(), want, false); err != nil {
				t.Fatalf("Store over the damaged entry: %v", err)
			}
			got, err := testMustHit(t, root, k).Load()
			if err != nil {
				t.Fatalf("Load after rebuild: %v", err)
			}
			testSameLatents(t, got, want)
			if names := testListing(t, root); !slices.Equal(names, []string{k.ID()}) {
				t.Errorf("inversions/ holds %q after the rebuild, want only the entry", names)
			}
		})
	}
}

func TestCacheLoadChecksTensors(t *testing.T) {
	root := t.TempDir()
	e := testStore(t, root, testManifest(), testLatents(1))
	// A manifest (already checked by Lookup) that names a timestep the file
	// lacks: Load refuses it rather than hand out fewer latents.
	stale := *e
	stale.Manifest.Kept = []int{1, 21, 42}
	if _, err := stale.Load(); err == nil || !strings.Contains(err.Error(), `no tensor "noisy_latents_42"`) {
		t.Errorf("Load = %v, want a missing-tensor error", err)
	}
	// An entry that passed Lookup, then changed under it: Load must still
	// refuse a tensor of the wrong dtype rather than hand out wrong numbers.
	stale = *e
	testRewriteLatents(t, e.Dir, testTensors(testLatents(1), safetensors.F16, []int64{2, 4, 3, 2}))
	stale.Manifest.LatentsSize = testMustSize(t, filepath.Join(e.Dir, "latents.safetensors"))
	if _, err := stale.Load(); err == nil || !strings.Contains(err.Error(), "want F32") {
		t.Errorf("Load = %v, want a dtype error", err)
	}
	// And one whose file shrank: the size check catches it first.
	stale.Manifest.LatentsSize++
	if _, err := stale.Load(); err == nil || !strings.Contains(err.Error(), "manifest says") {
		t.Errorf("Load = %v, want a size error", err)
	}
}

// TestCacheNumerics: an entry made with other numerics is rebuilt, with a
// reason naming the tool version that made it; one that differs only in
// the tool version is reused.
func TestCacheNumerics(t *testing.T) {
	root := t.TempDir()
	k := testKey()
	e := testStore(t, root, testManifest(), testLatents(1))
	if e.Manifest.Numerics != Numerics {
		t.Fatalf("stored numerics %d, want %d", e.Manifest.Numerics, Numerics)
	}

	testEditManifest(t, e.Dir, func(m map[string]any) { m["tool_version"] = "v0.0.1-other" })
	testMustHit(t, root, k)

	testEditManifest(t, e.Dir, func(m map[string]any) { m["numerics"] = Numerics + 1 })
	got, reason, err := LookupContext(context.Background(), root, k)
	want := fmt.Sprintf("it was made by tokenflow v0.0.1-other with other numerics (%d, want %d)", Numerics+1, Numerics)
	if err != nil || got != nil || reason != want {
		t.Fatalf("Lookup = (%v, %q, %v), want (nil, %q, nil)", got, reason, err, want)
	}
	// A manifest from before numerics were recorded is rebuilt too.
	testEditManifest(t, e.Dir, func(m map[string]any) { delete(m, "numerics"); delete(m, "tool_version") })
	_, reason, _ = LookupContext(context.Background(), root, k)
	if want := fmt.Sprintf("it was made by tokenflow (version not recorded) with other numerics (0, want %d)", Numerics); reason != want {
		t.Errorf("reason %q, want %q", reason, want)
	}
	// The rebuild replaces it.
	if _, err := StoreContext(context.Background(), root, testManifest(), testLatents(2), false); err != nil {
		t.Fatal(err)
	}
	if e := testMustHit(t, root, k); e.Manifest.Numerics != Numerics {
		t.Errorf("rebuilt entry has numerics %d", e.Manifest.Numerics)
	}
}

// TestCacheLoadRefusesNonFinite: an entry that passed Lookup and then got
// a NaN (the file rewritten under it) is refused by Load, as ErrNonFinite.
func TestCacheLoadRefusesNonFinite(t *testing.T) {
	root := t.TempDir()
	e := testStore(t, root, testManifest(), testLatents(1))
	l := testLatents(1)
	l.Z0.Data[40] = float32(math.NaN())
	testRewriteLatents(t, e.Dir, testTensors(l, safetensors.F32, []int64{2, 4, 3, 2}))
	e.Manifest.LatentsSize = testMustSize(t, filepath.Join(e.Dir, "latents.safetensors"))
	_, err := e.Load()
	if !errors.Is(err, tensor.ErrNonFinite) || !strings.Contains(err.Error(), `tensor "latents" holds NaN or infinite values (frame 1)`) {
		t.Errorf("Load = %v, want a NaN error naming the tensor and frame", err)
	}
}

// TestFiniteScanSplitReads: the scan finds the same first NaN however the
// file is cut into reads (short reads split float32 words).
func TestFiniteScanSplitReads(t *testing.T) {
	l := testLatents(1)
	l.Noisy[21].Data[13] = float32(math.NaN())
	l.Noisy[41].Data[2] = float32(math.Inf(1))
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, testTensors(l, safetensors.F32, []int64{2, 4, 3, 2}), nil); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "x")
	if err != nil {
		t.Fatal(err)
	}
	want := f.Tensor("noisy_latents_21").Offset + 13*4
	for _, chunk := range []int{1, 3, 5, 7, 4096} {
		bad, n, err := firstNonFinite(&chunkReader{b: buf.Bytes(), chunk: chunk})
		if bad != want || n != int64(buf.Len()) || err != nil {
			t.Errorf("reads of %d bytes: first non-finite at %d after %d bytes (%v), want %d after %d", chunk, bad, n, err, want, buf.Len())
		}
	}
}

// chunkReader reads b at most chunk bytes at a time.
type chunkReader struct {
	b     []byte
	chunk int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.chunk)], r.b)
	r.b = r.b[n:]
	return n, nil
}

func testMustSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// An interrupted Store leaves a temporary folder; even a complete one (cut
// off just before the rename) is not an entry. A later Store removes
// leftovers older than a day and leaves younger ones (a run may still be
// filling them).
func TestCacheLeftoverTemp(t *testing.T) {
	root := t.TempDir()
	k := testKey()
	other := t.TempDir()
	done := testStore(t, other, testManifest(), testLatents(1))

	inv := filepath.Join(root, "inversions")
	if err := os.MkdirAll(inv, 0o777); err != nil {
		t.Fatal(err)
	}
	oldTmp := filepath.Join(inv, "."+k.ID()+".tmp-0123456789abcdef")
	youngTmp := filepath.Join(inv, "."+k.ID()+".tmp-fedcba9876543210")
	oldAside := filepath.Join(inv, "."+k.ID()+".old-ABCDEFGH")
	for _, d := range []string{oldTmp, youngTmp, oldAside} {
		if err := os.CopyFS(d, os.DirFS(done.Dir)); err != nil {
			t.Fatal(err)
		}
	}
	dayAgo := time.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(oldTmp, dayAgo, dayAgo); err != nil {
		t.Fatal(err)
	}

	if e, reason, err := LookupContext(context.Background(), root, k); e != nil || reason != "" || err != nil {
		t.Fatalf("Lookup with only temporary folders = (%v, %q, %v), want a miss", e, reason, err)
	}

	// A different key's Store removes what is surely stale.
	k2 := k
	k2.InversionPrompt = "something else"
	m2 := testManifest()
	m2.Key = k2
	testStore(t, root, m2, testLatents(3))
	want := []string{"." + k.ID() + ".tmp-fedcba9876543210", k2.ID()}
	slices.Sort(want)
	if got := testListing(t, root); !slices.Equal(got, want) {
		t.Errorf("inversions/ holds %q, want %q", got, want)
	}
	if e, reason, err := LookupContext(context.Background(), root, k); e != nil || reason != "" || err != nil {
		t.Errorf("Lookup = (%v, %q, %v), want a miss", e, reason, err)
	}
	// The key's own Store (under its lock) removes its young leftover too.
	testStore(t, root, testManifest(), testLatents(4))
	want = []string{k.ID(), k2.ID()}
	slices.Sort(want)
	if got := testListing(t, root); !slices.Equal(got, want) {
		t.Errorf("inversions/ holds %q, want %q", got, want)
	}
}

// When a valid entry for the key is already there (another run finished
// first), Store keeps it and returns it.
func TestCacheStoreKeepsValidEntry(t *testing.T) {
	root := t.TempDir()
	first := testLatents(1)
	testStore(t, root, testManifest(), first)
	e := testStore(t, root, testManifest(), testLatents(2))
	got, err := e.Load()
	if err != nil {
		t.Fatal(err)
	}
	testSameLatents(t, got, first)
}

// Runs on the same key at once (as processes would), each holding the
// entry's lock from lookup to store: exactly one computes and stores, the
// others wait and reuse its entry; one valid entry and its lock file remain.
func TestCacheConcurrentRuns(t *testing.T) {
	root := t.TempDir()
	k := testKey()
	// Start from a damaged entry, so that the first run replaces it.
	e := testStore(t, root, testManifest(), testLatents(0))
	os.Truncate(filepath.Join(e.Dir, "latents.safetensors"), 10)

	const runs = 8
	var stored atomic.Int32
	errs := make(chan error, runs)
	for i := range runs {
		go func() {
			lock, err := Acquire(context.Background(), root, k, nil)
			if err != nil {
				errs <- err
				return
			}
			defer lock.Release()
			e, _, err := LookupContext(context.Background(), root, k)
			if err == nil && e == nil {
				stored.Add(1)
				e, err = StoreContext(context.Background(), root, testManifest(), testLatents(float32(i)), false)
			}
			if err == nil {
				_, err = e.Load()
			}
			errs <- err
		}()
	}
	for range runs {
		if err := <-errs; err != nil {
			t.Errorf("concurrent run: %v", err)
		}
	}
	if n := stored.Load(); n != 1 {
		t.Errorf("%d runs stored the entry, want 1", n)
	}
	got, err := testMustHit(t, root, k).Load()
	if err != nil {
		t.Fatal(err)
	}
	if z := got.Z0.Data[0]; z != float32(int(z)) || z < 0 || z >= runs {
		t.Errorf("the entry holds z0[0] = %v, not one run's latents", got.Z0.Data[0])
	}
	want := []string{"." + k.ID() + ".lock", k.ID()}
	if names := testListing(t, root); !slices.Equal(names, want) {
		t.Errorf("inversions/ holds %q, want %q", names, want)
	}
}

// A second holder waits, is told so once, and gets the lock when the first
// releases it; a wait ends with its context.
func TestCacheLockWaits(t *testing.T) {
	root := t.TempDir()
	k := testKey()
	first, err := Acquire(context.Background(), root, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx, root, k, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire while held = %v, want it to wait until its context ends", err)
	}
	told := make(chan string, 2)
	got := make(chan error, 1)
	go func() {
		l, err := Acquire(context.Background(), root, k, func(path string) { told <- path })
		if err == nil {
			l.Release()
		}
		got <- err
	}()
	path := <-told
	if want := filepath.Join(root, "inversions", "."+k.ID()+".lock"); path != want {
		t.Errorf("waiting on %s, want %s", path, want)
	}
	select {
	case err := <-got:
		t.Fatalf("second Acquire returned (%v) while the first held the lock", err)
	case <-time.After(300 * time.Millisecond):
	}
	first.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if len(told) != 0 {
		t.Error("waiting was called more than once")
	}
	other := k
	other.InversionPrompt = "another entry"
	if l, err := Acquire(context.Background(), root, other, func(string) { t.Error("another entry's lock waited") }); err != nil {
		t.Fatal(err)
	} else {
		l.Release()
	}
}

// Replacing builds the new entry aside and swaps it in: the old one stays
// valid until the new one is complete, and a failed replacement keeps it.
func TestCacheStoreReplace(t *testing.T) {
	root := t.TempDir()
	testStore(t, root, testManifest(), testLatents(1))
	bad := testManifest()
	bad.Key.Count = 3 // disagrees with the latents: refused before any write
	if _, err := StoreContext(context.Background(), root, bad, testLatents(2), true); err == nil {
		t.Fatal("an inconsistent replacement was stored")
	}
	got, err := testMustHit(t, root, testKey()).Load()
	if err != nil {
		t.Fatal(err)
	}
	testSameLatents(t, got, testLatents(1))
	e, err := StoreContext(context.Background(), root, testManifest(), testLatents(2), true)
	if err != nil {
		t.Fatal(err)
	}
	if got, err = e.Load(); err != nil {
		t.Fatal(err)
	}
	testSameLatents(t, got, testLatents(2))
	if names := testListing(t, root); !slices.Equal(names, []string{testKey().ID()}) {
		t.Errorf("inversions/ holds %q, want only the entry", names)
	}
}

func TestCacheStoreRejectsInconsistentInput(t *testing.T) {
	cases := []struct {
		name string
		edit func(m *Manifest, l *Latents)
		want string
	}{
		{"no latents", func(m *Manifest, l *Latents) { *l = Latents{} }, "shape"},
		{"short z0", func(m *Manifest, l *Latents) { l.Z0.Data = l.Z0.Data[1:] }, "z0 has 47 values"},
		{"short z_t", func(m *Manifest, l *Latents) { l.Noisy[21] = l.Noisy[21].Rows(0, 1) }, "z_21 has 24 values"},
		{"no kept timesteps", func(m *Manifest, l *Latents) { l.Noisy = nil }, "no kept timesteps"},
		{"count disagrees", func(m *Manifest, l *Latents) { m.Key.Count = 3 }, "latents for 2 frames, the key says 3"},
		{"kept disagrees", func(m *Manifest, l *Latents) { m.Kept = []int{1, 21} }, "manifest keeps timesteps [1 21]"},
		{"no video hash", func(m *Manifest, l *Latents) { m.Key.VideoSHA256 = "" }, "no video hash"},
		{"two model ids", func(m *Manifest, l *Latents) { m.Model.ID = "x" }, "two different model ids"},
		{"NaN in z_t", func(m *Manifest, l *Latents) { l.Noisy[21].Data[25] = float32(math.NaN()) }, "z_21 holds NaN or infinite values (frame 1): not stored"},
		{"Inf in z0", func(m *Manifest, l *Latents) { l.Z0.Data[0] = float32(math.Inf(1)) }, "z0 holds NaN or infinite values (frame 0): not stored"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			m, l := testManifest(), testLatents(1)
			c.edit(&m, l)
			_, err := StoreContext(context.Background(), root, m, l, false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Store = %v, want an error containing %q", err, c.want)
			}
			if _, err := os.Stat(Dir(root, m.Key)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused Store left %s (%v)", Dir(root, m.Key), err)
			}
		})
	}
}

// testReadOnlyDir makes dir read-only and skips the test when that does
// not stop writes (running as root).
// testBlock makes dir unusable for writing: read-only by its mode where
// that binds, else (as root, whom modes do not stop) replaced by a regular
// file, which stops even root. It returns the wording and the error the
// failure must carry.
func testBlock(t *testing.T, dir string) (phrase string, is error) {
	t.Helper()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o666); err != nil {
		return "is not writable", fs.ErrPermission
	}
	os.Remove(probe)
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	return "is not usable", syscall.ENOTDIR
}

func TestCacheUnwritableRoot(t *testing.T) {
	for _, c := range []struct {
		name  string
		block func(root string) string // which folder to block
	}{
		{"root", func(root string) string { return root }},
		{"inversions folder", func(root string) string {
			inv := filepath.Join(root, "inversions")
			os.Mkdir(inv, 0o777)
			return inv
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "cache")
			if err := os.Mkdir(root, 0o777); err != nil {
				t.Fatal(err)
			}
			phrase, is := testBlock(t, c.block(root))

			_, err := StoreContext(context.Background(), root, testManifest(), testLatents(1), false)
			if err == nil {
				t.Fatal("Store into a blocked cache succeeded")
			}
			msg := err.Error()
			t.Logf("Store: %s", msg)
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			var pe *param.Error
			if !errors.As(err, &pe) || pe.Name != "cache_dir" || pe.Value != root || !strings.HasPrefix(pe.Reason, phrase) || !strings.Contains(msg, "use another") {
				t.Errorf("error = %q, want a cache_dir error: %s %s, suggesting another folder", msg, root, phrase)
			}
			if !errors.Is(err, is) {
				t.Errorf("errors.Is(%v, %v) = false", err, is)
			}
		})
	}
}

func TestRoot(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", xdg)
	t.Setenv("TOKENFLOW_CACHE", "/env/cache/")

	got, err := Root("/flag/cache")
	if err != nil || got != "/flag/cache" {
		t.Errorf("with a flag: Root = (%q, %v), want /flag/cache", got, err)
	}
	got, err = Root("")
	if err != nil || got != "/env/cache" {
		t.Errorf("with $TOKENFLOW_CACHE: Root = (%q, %v), want /env/cache", got, err)
	}

	t.Setenv("TOKENFLOW_CACHE", "")
	user, err := os.UserCacheDir()
	if err != nil {
		t.Skipf("no user cache dir here: %v", err)
	}
	got, err = Root("")
	if want := filepath.Join(user, "tokenflow"); err != nil || got != want {
		t.Errorf("with neither: Root = (%q, %v), want %q", got, err, want)
	}
	if runtime.GOOS == "linux" && got != filepath.Join(xdg, "tokenflow") {
		t.Errorf("on linux Root = %q, want it under $XDG_CACHE_HOME %s", got, xdg)
	}

	if runtime.GOOS == "linux" {
		t.Setenv("XDG_CACHE_HOME", "")
		t.Setenv("HOME", "")
		var pe *param.Error
		if got, err := Root(""); !errors.As(err, &pe) || pe.Name != "cache_dir" {
			t.Errorf("with no home: Root = (%q, %v), want a cache_dir error", got, err)
		}
	}
}

// TestCacheLookupCancelled: the full read of the latents stops with the
// context (a first Ctrl-C during a long CRC read).
func TestCacheLookupCancelled(t *testing.T) {
	root := t.TempDir()
	testStore(t, root, testManifest(), testLatents(1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if e, _, err := LookupContext(ctx, root, testKey()); e != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("LookupContext after cancel = (%v, %v), want context.Canceled", e, err)
	}
	if e, _, err := LookupContext(context.Background(), root, testKey()); e == nil || err != nil {
		t.Errorf("LookupContext = (%v, %v), want the entry", e, err)
	}
}

// TestCacheStoreCancelled: a store stops with its context and leaves
// nothing, not even a temporary folder.
func TestCacheStoreCancelled(t *testing.T) {
	root := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if e, err := StoreContext(ctx, root, testManifest(), testLatents(1), false); e != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("StoreContext after cancel = (%v, %v), want context.Canceled", e, err)
	}
	if names := testListing(t, root); len(names) != 0 {
		t.Errorf("the cancelled store left %q", names)
	}
}
