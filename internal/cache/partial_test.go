package cache

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/tensor"
)

// testWalk is an inversion walk whose kept timesteps are testLatents'
// (1, 21, 41) among others.
var testWalk = []int{1, 11, 21, 31, 41}

// testStep is the fake latents after step i of testWalk: a function of i
// alone, so that any run reaches the same values.
func testStep(i int) tensor.Tensor {
	z := testLatents(float32(7 * i)).Z0
	return z
}

// testPartialManifest is testManifest with what Begin needs up front.
func testPartialManifest() Manifest {
	m := testManifest()
	m.Kept = []int{1, 21, 41}
	m.Latent = [4]int64{2, 4, 3, 2}
	return m
}

// testNotes collects Begin's notes.
type testNotes []string

func (n *testNotes) note(s string) { *n = append(*n, s) }

func (n testNotes) has(sub string) bool {
	return slices.ContainsFunc(n, func(s string) bool { return strings.Contains(s, sub) })
}

// testInvert runs the fake inversion through a Partial from where Begin
// says, stopping (without Commit) after step stop (len(testWalk): to the
// end, and commits). It returns the entry when committed.
func testInvert(t *testing.T, root string, k Key, stop int, o Options) (*Entry, *Resume) {
	t.Helper()
	m := testPartialManifest()
	m.Key = k
	o.Walk = testWalk
	p, r, err := Begin(context.Background(), root, m, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	from := 0
	if r != nil {
		from = r.Step
	} else {
		if err := p.WriteZ0(ctx, testLatents(0).Z0); err != nil {
			t.Fatal(err)
		}
		if err := p.Checkpoint(ctx, 0, testLatents(0).Z0); err != nil {
			t.Fatal(err)
		}
	}
	for i := from; i < stop; i++ {
		z := testStep(i)
		if _, ok := slices.BinarySearch(m.Kept, testWalk[i]); ok {
			before := p.size
			if err := p.Append(ctx, testWalk[i], z); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(filepath.Join(p.Dir(), latentsName))
			if err != nil {
				t.Fatal(err)
			}
			// Written as it comes: the file grows by one tensor per kept step.
			if st.Size() != before+p.tensorBytes() || p.size != st.Size() {
				t.Fatalf("after appending z_%d the file has %d bytes, want %d", testWalk[i], st.Size(), before+p.tensorBytes())
			}
		}
		if err := p.Checkpoint(ctx, i+1, z); err != nil {
			t.Fatal(err)
		}
	}
	if stop < len(testWalk) {
		p.Close()
		return nil, r
	}
	e, err := p.Commit(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	return e, r
}

// testWholeLatents is what testInvert stores.
func testWholeLatents() *Latents {
	return &Latents{Z0: testLatents(0).Z0, Noisy: map[int]tensor.Tensor{1: testStep(0), 21: testStep(2), 41: testStep(4)}}
}

// TestPartialStreams: an entry written a tensor at a time, with a state
// after every step, is found by Lookup, read back one timestep at a time
// (Reader.At) bit for bit, leaves no state or partial folder behind, and
// its file is the file StoreContext writes for the same latents.
func TestPartialStreams(t *testing.T) {
	root := t.TempDir()
	e, _ := testInvert(t, root, testKey(), len(testWalk), Options{})
	got := testMustHit(t, root, testKey())
	if got.Manifest.LatentsCRC != e.Manifest.LatentsCRC || !slices.Equal(got.Manifest.Kept, []int{1, 21, 41}) {
		t.Fatalf("Lookup manifest %+v, Commit's %+v", got.Manifest, e.Manifest)
	}
	r, err := got.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := testWholeLatents()
	ctx := context.Background()
	z0, err := r.Latents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	testSameBits(t, "z0", z0.Data, want.Z0.Data)
	for _, ts := range r.Kept() {
		z, err := r.At(ctx, ts)
		if err != nil {
			t.Fatal(err)
		}
		testSameBits(t, fmt.Sprintf("z_%d", ts), z.Data, want.Noisy[ts].Data)
	}
	if _, err := r.At(ctx, 11); err == nil || !strings.Contains(err.Error(), "no latents for timestep 11") {
		t.Errorf("At(11), not kept: %v", err)
	}
	if names := testListing(t, root); !slices.Equal(names, []string{testKey().ID()}) {
		t.Errorf("inversions/ holds %q, want only the entry", names)
	}
	if _, err := os.Stat(filepath.Join(e.Dir, stateName)); err == nil {
		t.Error("the committed entry still holds its state")
	}
	other := t.TempDir()
	s := testStore(t, other, testManifest(), want)
	a, _ := os.ReadFile(filepath.Join(e.Dir, latentsName))
	b, _ := os.ReadFile(filepath.Join(s.Dir, latentsName))
	if !bytes.Equal(a, b) {
		t.Error("the streamed file differs from StoreContext's for the same latents")
	}
}

// TestReaderChecks: a reader reads what the manifest names and checks
// values again; a file that changed size since the lookup is refused.
func TestReaderChecks(t *testing.T) {
	root := t.TempDir()
	e, _ := testInvert(t, root, testKey(), len(testWalk), Options{})
	r, err := e.Open()
	if err != nil {
		t.Fatal(err)
	}
	// A NaN written into z_21 after the lookup: At(21) says so, others read.
	f, err := r.f.Info(noisyName(21))
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(filepath.Join(e.Dir, latentsName), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	nan := []byte{0, 0, 0xc0, 0x7f}
	if _, err := fh.WriteAt(nan, f.Offset+4*30); err != nil { // frame 1 (24 values a frame)
		t.Fatal(err)
	}
	fh.Close()
	ctx := context.Background()
	if _, err := r.At(ctx, 21); err == nil || !strings.Contains(err.Error(), `"noisy_latents_21" holds NaN or infinite values (frame 1)`) {
		t.Errorf("At(21) with a NaN: %v", err)
	}
	if _, err := r.At(ctx, 41); err != nil {
		t.Errorf("At(41): %v", err)
	}
	r.Close()
	if err := os.Truncate(filepath.Join(e.Dir, latentsName), e.Manifest.LatentsSize-4); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Open(); err == nil || !strings.Contains(err.Error(), "manifest says") {
		t.Errorf("Open of a truncated file: %v", err)
	}
	// And the lookup's CRC and size checks see both.
	if _, reason, _ := LookupContext(ctx, root, testKey()); !strings.Contains(reason, "truncated") {
		t.Errorf("Lookup of a truncated file: %q", reason)
	}
}

// TestPartialResume: an inversion stopped after step 3, with bytes
// appended after its last state (a kill in the middle of an append),
// continues from step 3 with the state's latents, and its entry is the
// uninterrupted one's, byte for byte.
func TestPartialResume(t *testing.T) {
	whole, _ := testInvert(t, t.TempDir(), testKey(), len(testWalk), Options{})
	wantBytes, _ := os.ReadFile(filepath.Join(whole.Dir, latentsName))

	root := t.TempDir()
	testInvert(t, root, testKey(), 3, Options{})
	dir := partialDir(root, testKey())
	f, err := os.OpenFile(filepath.Join(dir, latentsName), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte{0xff}, 40))
	f.Close()
	// Another key's store (cleanTemps, cleanPartials) leaves it alone.
	k2 := testKey()
	k2.InversionPrompt = "another"
	m2 := testManifest()
	m2.Key = k2
	testStore(t, root, m2, testLatents(5))
	if _, err := os.Stat(filepath.Join(dir, stateName)); err != nil {
		t.Fatalf("another key's store removed a resumable state: %v", err)
	}

	var notes testNotes
	e, r := testInvert(t, root, testKey(), len(testWalk), Options{Note: notes.note})
	if r == nil || r.Step != 3 || r.Dir != dir {
		t.Fatalf("resume = %+v, want step 3 from %s (notes %q)", r, dir, notes)
	}
	testSameBits(t, "resumed z", r.Z.Data, testStep(2).Data)
	got, _ := os.ReadFile(filepath.Join(e.Dir, latentsName))
	if !bytes.Equal(got, wantBytes) {
		t.Error("the resumed entry's latents differ from the uninterrupted one's")
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("the partial folder remains after the commit")
	}
	if len(notes) != 0 {
		t.Errorf("notes %q", notes)
	}
}

// TestPartialNotResumed: a state of another key (a folder copied under
// this key's name), a corrupt state, a corrupt latents file, another walk,
// or NoResume: never used, a one-line note, and the inversion starts over.
func TestPartialNotResumed(t *testing.T) {
	other := testKey()
	other.InversionSteps = 60 // another key, same shapes
	cases := []struct {
		name   string
		damage func(t *testing.T, root string)
		o      Options
		note   string
	}{
		{"other key", func(t *testing.T, root string) {
			testInvert(t, root, other, 3, Options{})
			if err := os.Rename(partialDir(root, other), partialDir(root, testKey())); err != nil {
				t.Fatal(err)
			}
		}, Options{}, "its state is of other settings: it was made with 60 inversion steps, want 50"},
		{"corrupt state", func(t *testing.T, root string) {
			testInvert(t, root, testKey(), 3, Options{})
			p := filepath.Join(partialDir(root, testKey()), stateName)
			data, _ := os.ReadFile(p)
			data[len(data)-5] ^= 0x10
			os.WriteFile(p, data, 0o666)
		}, Options{}, "its state is corrupt"},
		{"corrupt latents", func(t *testing.T, root string) {
			testInvert(t, root, testKey(), 3, Options{})
			p := filepath.Join(partialDir(root, testKey()), latentsName)
			data, _ := os.ReadFile(p)
			data[len(data)-5] ^= 0x10
			os.WriteFile(p, data, 0o666)
		}, Options{}, "its latents.safetensors is corrupt"},
		{"truncated latents", func(t *testing.T, root string) {
			testInvert(t, root, testKey(), 3, Options{})
			p := filepath.Join(partialDir(root, testKey()), latentsName)
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-8)
		}, Options{}, "its latents.safetensors is truncated"},
		{"state garbage", func(t *testing.T, root string) {
			testInvert(t, root, testKey(), 3, Options{})
			os.WriteFile(filepath.Join(partialDir(root, testKey()), stateName), []byte("garbage"), 0o666)
		}, Options{}, "its state cannot be read"},
		{"no resume", func(t *testing.T, root string) {
			testInvert(t, root, testKey(), 3, Options{})
		}, Options{NoResume: true}, "{no_resume}: removing the interrupted inversion"},
	}
	whole, _ := testInvert(t, t.TempDir(), testKey(), len(testWalk), Options{})
	wantBytes, _ := os.ReadFile(filepath.Join(whole.Dir, latentsName))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			c.damage(t, root)
			var notes testNotes
			o := c.o
			o.Note = notes.note
			e, r := testInvert(t, root, testKey(), len(testWalk), o)
			if r != nil {
				t.Fatalf("resumed at step %d", r.Step)
			}
			if len(notes) != 1 || !notes.has(c.note) || strings.ContainsAny(notes[0], "\n\r") {
				t.Errorf("notes %q, want one line with %q", notes, c.note)
			}
			got, _ := os.ReadFile(filepath.Join(e.Dir, latentsName))
			if !bytes.Equal(got, wantBytes) {
				t.Error("the entry made after starting over is not the uninterrupted one")
			}
		})
	}
}

// TestCleanPartials: another key's resumable inversion survives a Begin;
// one whose state is unreadable, or of a key that is not its folder's, is
// removed with a note; one whose key's lock a run holds is left alone.
func TestCleanPartials(t *testing.T) {
	root := t.TempDir()
	keys := make([]Key, 4)
	for i := range keys {
		keys[i] = testKey()
		keys[i].Start = i + 1
		testInvert(t, root, keys[i], 2, Options{})
	}
	// 1: garbage state; 2: the state of key 3 under key 2's folder, whose
	// lock is held below; 3: key 0's state copied into key 3's folder.
	os.WriteFile(filepath.Join(partialDir(root, keys[1]), stateName), []byte("garbage"), 0o666)
	lock, err := Acquire(context.Background(), root, keys[2], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	os.WriteFile(filepath.Join(partialDir(root, keys[2]), stateName), []byte("garbage"), 0o666)
	data, _ := os.ReadFile(filepath.Join(partialDir(root, keys[0]), stateName))
	os.WriteFile(filepath.Join(partialDir(root, keys[3]), stateName), data, 0o666)

	var notes testNotes
	testInvert(t, root, testKey(), len(testWalk), Options{Note: notes.note})
	exists := func(k Key) bool { _, err := os.Stat(partialDir(root, k)); return err == nil }
	if !exists(keys[0]) || exists(keys[1]) || !exists(keys[2]) || exists(keys[3]) {
		t.Errorf("partial folders left: %v %v %v %v, want true false true false", exists(keys[0]), exists(keys[1]), exists(keys[2]), exists(keys[3]))
	}
	if len(notes) != 2 || !notes.has("its state cannot be read") || !notes.has("its state is of another key than its folder's") {
		t.Errorf("notes %q", notes)
	}
}
