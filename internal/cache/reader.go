package cache

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/tensor"
)

// Reader reads an entry's latents one tensor of all frames at a time: the
// edit asks for z0 once and for one timestep's latents per step, so no
// more than one tensor (and a chunk of bytes) is in memory for it. It
// holds the file open: the entry may be replaced or removed by another
// run meanwhile (a committed entry's file is never written again), the
// reader keeps reading the file it opened.
type Reader struct {
	e   *Entry
	fh  *os.File
	f   *safetensors.File
	buf []byte
}

// Open opens the entry's latents for reading, checking the file's size and
// every tensor's name, dtype and shape against the manifest. (LookupContext
// has checked its CRC and values; each read checks its values again.)
func (e *Entry) Open() (*Reader, error) {
	fail := func(format string, args ...any) (*Reader, error) {
		return nil, fmt.Errorf("inversion cache %s: %s", e.Dir, fmt.Sprintf(format, args...))
	}
	m := &e.Manifest
	if reason := m.check(m.Key); reason != "" {
		return fail("%s", reason)
	}
	path := filepath.Join(e.Dir, latentsName)
	fh, err := os.Open(path)
	if err != nil {
		return fail("%s", oneLine(err.Error()))
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return fail("%s", oneLine(err.Error()))
	}
	if st.Size() != m.LatentsSize {
		fh.Close()
		return fail("latents.safetensors has %d bytes, manifest says %d", st.Size(), m.LatentsSize)
	}
	f, err := safetensors.NewReader(fh, st.Size(), path)
	if err != nil {
		fh.Close()
		return fail("%s", oneLine(err.Error()))
	}
	if reason := checkTensors(f, m); reason != "" {
		fh.Close()
		return fail("%s", reason)
	}
	return &Reader{e: e, fh: fh, f: f, buf: make([]byte, chunk)}, nil
}

// Shape is the shape [N,C,h,w] of every tensor.
func (r *Reader) Shape() []int64 { return r.e.Manifest.Latent[:] }

// Kept is the kept timesteps, ascending.
func (r *Reader) Kept() []int { return slices.Clone(r.e.Manifest.Kept) }

// Latents reads z0, the VAE latents of the frames.
func (r *Reader) Latents(ctx context.Context) (tensor.Tensor, error) {
	return r.read(ctx, z0Tensor)
}

// At reads the inverted latents at kept timestep t.
func (r *Reader) At(ctx context.Context, t int) (tensor.Tensor, error) {
	if _, ok := slices.BinarySearch(r.e.Manifest.Kept, t); !ok {
		return tensor.Tensor{}, fmt.Errorf("inversion cache %s: no latents for timestep %d (kept: %v)", r.e.Dir, t, r.e.Manifest.Kept)
	}
	return r.read(ctx, noisyName(t))
}

// read reads one tensor a chunk at a time, stopping when ctx ends, and
// checks its values are finite.
func (r *Reader) read(ctx context.Context, name string) (tensor.Tensor, error) {
	ti := r.f.Tensor(name) // checked by Open
	x := tensor.Zeros(r.e.Manifest.Latent[:]...)
	if int64(len(x.Data))*4 != ti.Length {
		return tensor.Tensor{}, fmt.Errorf("inversion cache %s: tensor %q has %d bytes, want %d", r.e.Dir, name, ti.Length, len(x.Data)*4)
	}
	v := x.Data
	off := ti.Offset
	for len(v) > 0 {
		if err := ctx.Err(); err != nil {
			return tensor.Tensor{}, err
		}
		k := min(len(v), len(r.buf)/4)
		b := r.buf[:4*k]
		if _, err := r.fh.ReadAt(b, off); err != nil {
			return tensor.Tensor{}, fmt.Errorf("inversion cache %s: read tensor %q: %w", r.e.Dir, name, err)
		}
		for i := range v[:k] {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		v, off = v[k:], off+int64(4*k)
	}
	// LookupContext checked this, but the file may have changed since.
	if bad := x.Finite(); bad >= 0 {
		return tensor.Tensor{}, fmt.Errorf("inversion cache %s: tensor %q holds %w (frame %d): delete the entry's folder to rebuild it", r.e.Dir, name, tensor.ErrNonFinite, bad/x.RowSize())
	}
	return x, nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.fh.Close() }
