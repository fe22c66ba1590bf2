package cache

// An entry in the making, written one tensor at a time, and the state that
// lets a killed inversion continue where it stopped:
//
//	<root>/inversions/.<id>.partial/
//	    latents.safetensors   the header of every tensor the entry will hold,
//	                          then z0, then each kept timestep's latents in
//	                          ascending order, appended as the inversion
//	                          makes them
//	    state.safetensors     "z" [N,C,h,w]: the latents of all frames after
//	                          the last completed step; its metadata
//	                          (stateInfo) says which step, the key, and the
//	                          size and CRC of latents.safetensors then
//
// After every completed step the latents file is flushed to disk, then the
// state is replaced atomically (atomicfile: temporary file, fsync, rename,
// folder fsync), so a state always describes bytes that are on disk. A run
// that dies at any point leaves a state a later run of the same key can
// continue from: it checks the state (its key, format, numerics, schedule,
// the CRC of z) and the latents file's first LatentsSize bytes against the
// state's CRC, cuts what was appended after the state, and goes on. The
// data is appended in the order it is made, so every CRC is computed as the
// bytes are written, never by holding the file. Commit writes
// manifest.json, removes the state and renames the folder into place.
//
// The folder's name is fixed by the key's id, so only the run holding the
// entry's lock (Acquire) touches it. Other keys' folders are left alone
// while they can be resumed; one whose state cannot be read or belongs to
// another id, or that has not advanced for partialMaxAge, is removed (with
// a note) by the next Begin of any key, unless a run holds its lock.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/internal/ctxio"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/version"
)

const (
	partialSuffix = ".partial"
	stateName     = "state.safetensors"
	stateTensor   = "z"
	stateMetaKey  = "tokenflow_inversion_state"
	// stateFormat is the state's layout; a state of another is not used.
	stateFormat = 1
	// partialMaxAge is how long another key's resumable inversion is kept
	// without advancing before a Begin removes it.
	partialMaxAge = 30 * 24 * time.Hour
	// chunk is the bytes converted at a time between float32 and the file.
	chunk = 1 << 20
)

var partialPattern = regexp.MustCompile(`^\.([0-9a-f]{24})\.partial$`)

// stateInfo is the state's metadata: what a resumed run needs besides z.
type stateInfo struct {
	Format   int      `json:"format"`
	Numerics int      `json:"numerics"`
	Tool     string   `json:"tool_version"`
	Key      Key      `json:"key"`
	Kept     []int    `json:"kept_timesteps"`
	Latent   [4]int64 `json:"latent_shape"`
	// Walk is the inversion's timesteps, ascending; Step how many of them
	// are done (z is the latents after them).
	Walk []int `json:"walk"`
	Step int   `json:"step"`
	// Written is how many kept timesteps' latents latents.safetensors
	// holds after z0; LatentsSize and LatentsCRC are its size and CRC-32C
	// then.
	Written     int    `json:"written"`
	LatentsSize int64  `json:"latents_size"`
	LatentsCRC  string `json:"latents_crc32c"`
	// ZCRC is the CRC-32C of z's data.
	ZCRC string `json:"z_crc32c"`
}

// Options configure Begin.
type Options struct {
	// Walk is the inversion's timesteps, ascending, each step of which
	// Checkpoint records; a state of another walk is not resumed. Empty
	// for a store without checkpoints.
	Walk []int
	// NoResume starts over: an interrupted inversion of the key is removed.
	NoResume bool
	// Note, when set, is told in one line about interrupted inversions
	// removed or not used. Settings are named in braces ({no_resume}).
	Note func(string)
}

// Resume is where a resumed inversion continues: Step steps of the walk
// are done, Z is the latents of all frames after them.
type Resume struct {
	Step int
	Z    tensor.Tensor
	Dir  string // the folder it resumes from
}

// Partial is an entry being written: see the top of this file. It is not
// safe for concurrent use; the caller holds the entry's lock throughout.
type Partial struct {
	root, dir string
	m         Manifest
	walk      []int
	f         *os.File
	hdr       []byte
	crc       uint32
	size      int64
	z0        bool // z0 is written
	written   int  // kept timesteps written
	buf       []byte
	done      bool
}

// partialDir is the folder of k's entry in the making.
func partialDir(root string, k Key) string {
	return filepath.Join(root, subdir, "."+k.ID()+partialSuffix)
}

// Begin starts writing the entry of m.Key, or continues an interrupted
// one. m.Kept (ascending) and m.Latent must be set: they fix the file's
// header before any tensor exists. It returns where to continue (nil to
// start from z0: call WriteZ0 first). With o.Walk set, a state left by a
// run of the same key, walk and build continues; any other is removed with
// a note. Begin also removes the temporary folders killed stores left
// (cleanTemps) and stale interrupted inversions of other keys.
func Begin(ctx context.Context, root string, m Manifest, o Options) (*Partial, *Resume, error) {
	if err := prepare(&m); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	note := o.Note
	if note == nil {
		note = func(string) {}
	}
	parent := filepath.Join(root, subdir)
	if err := os.MkdirAll(parent, 0o777); err != nil {
		return nil, nil, writeError(root, err)
	}
	now := time.Now()
	cleanTemps(parent, m.Key.ID(), now)
	cleanPartials(parent, m.Key.ID(), now, note)

	p := &Partial{root: root, dir: partialDir(root, m.Key), m: m, walk: slices.Clone(o.Walk), buf: make([]byte, chunk)}
	p.hdr = latentsHeader(&p.m)
	if _, err := os.Stat(p.dir); err == nil {
		switch {
		case o.NoResume:
			note(fmt.Sprintf("inversion: {no_resume}: removing the interrupted inversion in %s", p.dir))
		case len(o.Walk) == 0:
			// a store without checkpoints: what is there is a leftover
		default:
			r, reason, err := p.resume(ctx)
			if err != nil {
				return nil, nil, err
			}
			if reason == "" {
				return p, r, nil
			}
			note(fmt.Sprintf("inversion: not resuming the interrupted inversion in %s: %s; starting over", p.dir, reason))
		}
		if err := os.RemoveAll(p.dir); err != nil {
			return nil, nil, writeError(root, err)
		}
	}
	if err := os.Mkdir(p.dir, 0o777); err != nil {
		return nil, nil, writeError(root, err)
	}
	f, err := os.OpenFile(filepath.Join(p.dir, latentsName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		os.RemoveAll(p.dir)
		return nil, nil, writeError(root, err)
	}
	p.f = f
	if err := p.write(p.hdr); err != nil {
		p.Discard()
		return nil, nil, writeError(root, err)
	}
	return p, nil, nil
}

// prepare completes m for an entry (format, numerics, tool) and checks
// everything but the latents file's CRC and size.
func prepare(m *Manifest) error {
	if reason := m.Key.checkKey(); reason != "" {
		return fmt.Errorf("inversion cache: store: %s", reason)
	}
	m.Format = Format
	m.Numerics = Numerics
	if m.Tool == "" {
		m.Tool = version.Version
	}
	// Placeholders so that check can judge everything else now; the real
	// values come when the file is complete.
	m.LatentsCRC, m.LatentsSize = "00000000", 1
	if reason := m.check(m.Key); reason != "" {
		return fmt.Errorf("inversion cache: store: %s", strings.Replace(reason, "manifest.json", "the manifest", 1))
	}
	return nil
}

// latentsHeader is the header of m's latents file: z0, then each kept
// timestep ascending, all F32 of shape m.Latent.
func latentsHeader(m *Manifest) []byte {
	specs := make([]safetensors.Spec, 0, 1+len(m.Kept))
	for _, name := range tensorNames(m.Kept) {
		specs = append(specs, safetensors.Spec{Name: name, DType: safetensors.F32, Shape: m.Latent[:]})
	}
	hdr, _ := safetensors.Header(specs, latentsMeta(m.Key)) // names and shapes checked by prepare
	return hdr
}

func latentsMeta(k Key) map[string]string {
	return map[string]string{"tokenflow_inversion": k.ID(), "format": fmt.Sprint(Format), "numerics": fmt.Sprint(Numerics)}
}

// tensorBytes is the size of one stored tensor.
func (p *Partial) tensorBytes() int64 {
	s := p.m.Latent
	return 4 * s[0] * s[1] * s[2] * s[3]
}

// Dir is the folder being filled.
func (p *Partial) Dir() string { return p.dir }

// write appends b to the latents file and its CRC.
func (p *Partial) write(b []byte) error {
	n, err := p.f.Write(b)
	p.crc = crc32.Update(p.crc, crcTable, b[:n])
	p.size += int64(n)
	return err
}

// WriteZ0 appends z0, the VAE latents of the frames: the first tensor.
func (p *Partial) WriteZ0(ctx context.Context, z0 tensor.Tensor) error {
	if p.z0 {
		return errors.New("inversion cache: z0 is already written")
	}
	if err := p.appendTensor(ctx, "z0", z0); err != nil {
		return err
	}
	p.z0 = true
	return nil
}

// Append appends z, the latents at kept timestep t, which must be the next
// kept timestep not yet written.
func (p *Partial) Append(ctx context.Context, t int, z tensor.Tensor) error {
	switch {
	case !p.z0:
		return errors.New("inversion cache: latents appended before z0")
	case p.written >= len(p.m.Kept) || p.m.Kept[p.written] != t:
		return fmt.Errorf("inversion cache: latents of timestep %d appended where the entry wants %s", t, p.next())
	}
	if err := p.appendTensor(ctx, fmt.Sprintf("z_%d", t), z); err != nil {
		return err
	}
	p.written++
	return nil
}

func (p *Partial) next() string {
	if p.written < len(p.m.Kept) {
		return fmt.Sprintf("timestep %d", p.m.Kept[p.written])
	}
	return "none"
}

// appendTensor checks z (shape, finite values) and appends its data,
// converted a chunk at a time.
func (p *Partial) appendTensor(ctx context.Context, name string, z tensor.Tensor) error {
	if err := p.checkTensor(name, z); err != nil {
		return err
	}
	return p.encode(ctx, z.Data, func(b []byte) error {
		if err := p.write(b); err != nil {
			return writeError(p.root, err)
		}
		return nil
	})
}

func (p *Partial) checkTensor(name string, z tensor.Tensor) error {
	if !slices.Equal(z.Shape, p.m.Latent[:]) || int64(len(z.Data))*4 != p.tensorBytes() {
		return fmt.Errorf("inversion cache: store: %s has %d values of shape %v, want shape %v", name, len(z.Data), z.Shape, p.m.Latent)
	}
	// Latents that went NaN or infinite are a failed run, never an entry.
	if bad := z.Finite(); bad >= 0 {
		return fmt.Errorf("inversion cache: store: %s holds %w (frame %d): not stored", name, tensor.ErrNonFinite, bad/z.RowSize())
	}
	return nil
}

// encode hands v's little-endian bytes to fn a chunk at a time, stopping
// when ctx ends.
func (p *Partial) encode(ctx context.Context, v []float32, fn func([]byte) error) error {
	for len(v) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(len(v), len(p.buf)/4)
		b := p.buf[:4*k]
		for i, x := range v[:k] {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		if err := fn(b); err != nil {
			return err
		}
		v = v[k:]
	}
	return nil
}

// Checkpoint records that step steps of the walk are done and z is the
// latents after them: the latents file is flushed, then the state is
// replaced atomically. The latents of every kept timestep among those
// steps must have been appended.
func (p *Partial) Checkpoint(ctx context.Context, step int, z tensor.Tensor) error {
	if step < 0 || step > len(p.walk) {
		return fmt.Errorf("inversion cache: checkpoint of step %d of a %d-step walk", step, len(p.walk))
	}
	if want := keptIn(p.m.Kept, p.walk[:step]); !p.z0 || p.written != want {
		return fmt.Errorf("inversion cache: checkpoint after step %d with %d kept timesteps written, want %d", step, p.written, want)
	}
	if err := p.checkTensor("z", z); err != nil {
		return err
	}
	if err := p.f.Sync(); err != nil {
		return writeError(p.root, err)
	}
	zcrc := uint32(0)
	if err := p.encode(ctx, z.Data, func(b []byte) error { zcrc = crc32.Update(zcrc, crcTable, b); return nil }); err != nil {
		return err
	}
	info := stateInfo{Format: stateFormat, Numerics: Numerics, Tool: p.m.Tool, Key: p.m.Key, Kept: p.m.Kept, Latent: p.m.Latent,
		Walk: p.walk, Step: step, Written: p.written, LatentsSize: p.size, LatentsCRC: fmt.Sprintf("%08x", p.crc), ZCRC: fmt.Sprintf("%08x", zcrc)}
	meta, err := json.Marshal(info)
	if err != nil {
		return err
	}
	hdr, err := safetensors.Header([]safetensors.Spec{{Name: stateTensor, DType: safetensors.F32, Shape: p.m.Latent[:]}},
		map[string]string{stateMetaKey: string(meta)})
	if err != nil {
		return err
	}
	f, err := atomicfile.Create(filepath.Join(p.dir, stateName), 0o666, false)
	if err != nil {
		return writeError(p.root, err)
	}
	defer f.Abort()
	if _, err := f.Write(hdr); err != nil {
		return writeError(p.root, err)
	}
	if err := p.encode(ctx, z.Data, func(b []byte) error { _, err := f.Write(b); return err }); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return writeError(p.root, err)
	}
	if err := f.Commit(); err != nil {
		return writeError(p.root, err)
	}
	return nil
}

// keptIn is how many of kept are in walk.
func keptIn(kept, walk []int) int {
	n := 0
	for _, t := range walk {
		if _, ok := slices.BinarySearch(kept, t); ok {
			n++
		}
	}
	return n
}

// resume reads the folder's state and latents file: where to continue, or
// why not (a reason; the caller removes the folder).
func (p *Partial) resume(ctx context.Context) (*Resume, string, error) {
	sf, err := safetensors.Open(filepath.Join(p.dir, stateName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, "it holds no resumable state", nil
	case err != nil:
		return nil, fmt.Sprintf("its state cannot be read (%s)", oneLine(err.Error())), nil
	}
	defer sf.Close()
	var st stateInfo
	if err := json.Unmarshal([]byte(sf.Metadata()[stateMetaKey]), &st); err != nil {
		return nil, "its state has no valid description", nil
	}
	if reason := p.checkState(&st); reason != "" {
		return nil, reason, nil
	}
	ti, err := sf.Info(stateTensor)
	if err != nil || ti.DType != safetensors.F32 || !slices.Equal(ti.Shape, p.m.Latent[:]) || sf.Len() != 1 {
		return nil, "its state does not hold the latents of every frame", nil
	}
	// z, read a chunk at a time (no copy of its bytes), and its CRC
	fh, err := os.Open(filepath.Join(p.dir, stateName))
	if err != nil {
		return nil, fmt.Sprintf("its state cannot be read (%s)", oneLine(atomicfile.CauseText(err))), nil
	}
	defer fh.Close()
	z := tensor.Zeros(p.m.Latent[:]...)
	zcrc := uint32(0)
	for v, off := z.Data, ti.Offset; len(v) > 0; {
		k := min(len(v), len(p.buf)/4)
		b := p.buf[:4*k]
		if _, err := fh.ReadAt(b, off); err != nil {
			return nil, fmt.Sprintf("its state cannot be read (%s)", oneLine(err.Error())), nil
		}
		zcrc = crc32.Update(zcrc, crcTable, b)
		for i := range v[:k] {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		v, off = v[k:], off+int64(4*k)
	}
	if got := fmt.Sprintf("%08x", zcrc); got != st.ZCRC {
		return nil, fmt.Sprintf("its state is corrupt (CRC-32C %s, the state says %s)", got, st.ZCRC), nil
	}
	if bad := z.Finite(); bad >= 0 {
		return nil, fmt.Sprintf("its state holds NaN or infinite values (frame %d)", bad/z.RowSize()), nil
	}

	// The latents file: the state's bytes, then perhaps some appended
	// after it, which are cut.
	f, err := os.OpenFile(filepath.Join(p.dir, latentsName), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Sprintf("its latents cannot be opened (%s)", oneLine(atomicfile.CauseText(err))), nil
	}
	reason, err := p.adopt(ctx, f, &st)
	if err != nil || reason != "" {
		f.Close()
		return nil, reason, err
	}
	p.f, p.z0, p.written = f, true, st.Written
	return &Resume{Step: st.Step, Z: z, Dir: p.dir}, "", nil
}

// checkState is why st cannot be continued by this run ("" when it can).
func (p *Partial) checkState(st *stateInfo) string {
	switch {
	case st.Format != stateFormat:
		return fmt.Sprintf("its state has format %d, want %d", st.Format, stateFormat)
	case st.Numerics != Numerics:
		return fmt.Sprintf("it was made by tokenflow %s with other numerics (%d, want %d)", oneLine(st.Tool), st.Numerics, Numerics)
	}
	if d := keyDiff(st.Key, p.m.Key); d != "" {
		return "its state is of other settings: " + d
	}
	switch {
	case st.Latent != p.m.Latent:
		return fmt.Sprintf("its state has latents of shape %v, want %v", st.Latent, p.m.Latent)
	case !slices.Equal(st.Kept, p.m.Kept) || !slices.Equal(st.Walk, p.walk):
		return "its state is of another schedule"
	case st.Step < 0 || st.Step > len(st.Walk):
		return fmt.Sprintf("its state is at step %d of %d", st.Step, len(st.Walk))
	case st.Written != keptIn(st.Kept, st.Walk[:st.Step]):
		return fmt.Sprintf("its state has %d kept timesteps written after step %d", st.Written, st.Step)
	case st.LatentsSize != int64(len(p.hdr))+int64(1+st.Written)*p.tensorBytes():
		return fmt.Sprintf("its state gives latents.safetensors %d bytes, want %d", st.LatentsSize, int64(len(p.hdr))+int64(1+st.Written)*p.tensorBytes())
	}
	return ""
}

// adopt checks the first st.LatentsSize bytes of f (this run's header,
// the state's CRC), cuts the rest and leaves f at its end.
func (p *Partial) adopt(ctx context.Context, f *os.File, st *stateInfo) (string, error) {
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("inversion cache: %w", err)
	}
	if fi.Size() < st.LatentsSize {
		return fmt.Sprintf("its latents.safetensors is truncated (%d bytes, the state says %d)", fi.Size(), st.LatentsSize), nil
	}
	hdr := make([]byte, len(p.hdr))
	if _, err := f.ReadAt(hdr, 0); err != nil || string(hdr) != string(p.hdr) {
		return "its latents.safetensors has another header", nil
	}
	h := crc32.New(crcTable)
	n, err := io.CopyBuffer(h, io.LimitReader(ctxio.Reader(ctx, io.NewSectionReader(f, 0, st.LatentsSize)), st.LatentsSize), p.buf)
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	if err != nil {
		return "", fmt.Errorf("inversion cache: read %s: %w", f.Name(), err)
	}
	if got := fmt.Sprintf("%08x", h.Sum32()); n != st.LatentsSize || got != st.LatentsCRC {
		return fmt.Sprintf("its latents.safetensors is corrupt (CRC-32C %s, the state says %s)", got, st.LatentsCRC), nil
	}
	if err := f.Truncate(st.LatentsSize); err != nil {
		return "", writeError(p.root, err)
	}
	if _, err := f.Seek(st.LatentsSize, io.SeekStart); err != nil {
		return "", fmt.Errorf("inversion cache: %w", err)
	}
	p.crc, p.size = h.Sum32(), st.LatentsSize
	return "", nil
}

// Commit completes the entry: every tensor must be written. It writes
// manifest.json (with the file's CRC and size), removes the state, and
// renames the folder into place. A valid entry already there is replaced
// only with replace (else it is kept and returned, as StoreContext does);
// an invalid one, or the one replaced, is moved aside first and removed
// after.
func (p *Partial) Commit(ctx context.Context, replace bool) (*Entry, error) {
	if p.done {
		return nil, errors.New("inversion cache: commit of a closed entry")
	}
	if !p.z0 || p.written != len(p.m.Kept) {
		return nil, fmt.Errorf("inversion cache: commit with %d of %d kept timesteps written", p.written, len(p.m.Kept))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := p.f.Sync(); err != nil {
		return nil, writeError(p.root, err)
	}
	if err := p.f.Close(); err != nil {
		return nil, writeError(p.root, err)
	}
	p.done = true
	m := p.m
	m.LatentsCRC, m.LatentsSize = fmt.Sprintf("%08x", p.crc), p.size
	if m.Created.IsZero() {
		m.Created = time.Now()
	}
	// As it reads back from manifest.json, so the returned Entry is equal
	// to what a later LookupContext gives.
	m.Created = m.Created.UTC().Truncate(time.Second)
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	mp := filepath.Join(p.dir, manifestName)
	if err := os.WriteFile(mp, append(data, '\n'), 0o666); err != nil {
		return nil, writeError(p.root, err)
	}
	if err := atomicfile.Sync(mp); err != nil {
		return nil, writeError(p.root, err)
	}
	if err := os.Remove(filepath.Join(p.dir, stateName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, writeError(p.root, err)
	}
	if !replace {
		if e, _, err := LookupContext(ctx, p.root, m.Key); err != nil || e != nil {
			if e != nil {
				os.RemoveAll(p.dir)
			}
			return e, err
		}
	}
	// Move what is there out of the way (renamed, so that no reader sees
	// it half-deleted), put the new one in its place, then remove the old.
	dir := Dir(p.root, m.Key)
	parent := filepath.Dir(dir)
	old := filepath.Join(parent, "."+filepath.Base(dir)+".old-"+rand.Text())
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, writeError(p.root, err)
	}
	if err := os.Rename(p.dir, dir); err != nil {
		os.Rename(old, dir) // put back what was there
		return nil, writeError(p.root, err)
	}
	atomicfile.Sync(parent) // makes the rename durable; best effort
	os.RemoveAll(old)       // best effort: a leftover is removed by a later Begin
	return &Entry{Dir: dir, Manifest: m}, nil
}

// Close stops writing and keeps what is written, for a later run to
// resume from its last checkpoint.
func (p *Partial) Close() {
	if !p.done && p.f != nil {
		p.f.Close()
	}
	p.done = true
}

// Discard stops writing and removes the folder: nothing of this
// inversion is kept.
func (p *Partial) Discard() {
	p.Close()
	os.RemoveAll(p.dir)
}

// cleanPartials removes, best effort and with a note, the interrupted
// inversions of keys other than id that cannot be resumed: a folder whose
// state cannot be read or is of another id, or that has not advanced for
// partialMaxAge. A folder whose key's lock another run holds is left
// alone.
func cleanPartials(dir, id string, now time.Time, note func(string)) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		m := partialPattern.FindStringSubmatch(e.Name())
		if m == nil || m[1] == id {
			continue
		}
		path := filepath.Join(dir, e.Name())
		reason := ""
		switch fi, err := os.Stat(filepath.Join(path, stateName)); {
		case err != nil:
			reason = "it holds no resumable state"
		case now.Sub(fi.ModTime()) > partialMaxAge:
			reason = fmt.Sprintf("it has not advanced since %s", fi.ModTime().UTC().Format(time.DateOnly))
		default:
			reason = stateOf(filepath.Join(path, stateName), m[1])
		}
		if reason == "" || !lockFree(dir, m[1]) {
			continue
		}
		if os.RemoveAll(path) == nil {
			note(fmt.Sprintf("inversion cache: removed the interrupted inversion in %s: %s", path, reason))
		}
	}
}

// stateOf is why the state file at path is not a resumable state of the
// entry id ("" when it may be).
func stateOf(path, id string) string {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Sprintf("its state cannot be read (%s)", oneLine(err.Error()))
	}
	defer f.Close()
	var st stateInfo
	if err := json.Unmarshal([]byte(f.Metadata()[stateMetaKey]), &st); err != nil {
		return "its state has no valid description"
	}
	switch {
	case st.Format != stateFormat:
		return fmt.Sprintf("its state has format %d, want %d", st.Format, stateFormat)
	case st.Key.ID() != id:
		return "its state is of another key than its folder's"
	}
	return ""
}

// lockFree reports whether no run holds the lock of entry id.
func lockFree(dir, id string) bool {
	f, err := os.OpenFile(filepath.Join(dir, "."+id+".lock"), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return false
	}
	defer f.Close() // drops the lock taken to test
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}
