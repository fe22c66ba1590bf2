package onnx

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
)

// SaveOptions say how Save places weight bytes.
type SaveOptions struct {
	// DataFile receives inline initializers of at least InlineLimit bytes, as
	// external data next to the model ("" keeps every initializer inline;
	// protobuf caps a model at 2 GiB, so large models need it).
	DataFile    string
	InlineLimit int
}

// Save writes m as dir/name with its external data resolved so that the
// folder is self-contained: every External.File is made available in dir
// under its Location (hard-linked, or copied when a hard link is impossible,
// across file systems: symlinks are not an option, ONNX Runtime refuses
// external data that resolves outside the model's folder), and large inline
// tensors go to opts.DataFile. Every
// file is written to a temporary name and renamed when complete. m itself is
// not changed.
func Save(m *Model, dir, name string, opts SaveOptions) error {
	if m.Graph == nil {
		return fmt.Errorf("save model: model has no graph")
	}
	files, err := checkExternal(m.Graph, opts)
	if err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if err := placeExternal(files, dir); err != nil {
		return err
	}
	out := *m
	if opts.DataFile != "" {
		g, err := spill(m.Graph, dir, opts)
		if err != nil {
			return err
		}
		out.Graph = g
	}
	b, err := out.Marshal()
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, name), func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// checkExternal validates the external initializers before anything is
// written: locations inside the model's folder, one source file per location,
// source files that hold the bytes they are said to hold. It returns the
// source file of each location.
func checkExternal(g *GraphProto, opts SaveOptions) (map[string]string, error) {
	files := map[string]string{} // location -> source file
	for _, t := range g.Initializers {
		x := t.External
		if x == nil {
			continue
		}
		if !filepath.IsLocal(x.Location) {
			return nil, fmt.Errorf("initializer %s: external location %q is not a relative path inside the model's folder", t.Name, x.Location)
		}
		if opts.DataFile != "" && filepath.Clean(x.Location) == filepath.Clean(opts.DataFile) {
			return nil, fmt.Errorf("initializer %s: external location %q is also the DataFile Save writes", t.Name, x.Location)
		}
		if want := t.NumElements() * int64(t.Type.Size()); t.Type.Size() > 0 && x.Length != want {
			return nil, fmt.Errorf("initializer %s: external length %d bytes, but %s %v takes %d", t.Name, x.Length, t.Type, t.Dims, want)
		}
		if x.Offset < 0 {
			return nil, fmt.Errorf("initializer %s: negative external offset %d", t.Name, x.Offset)
		}
		if x.File == "" {
			continue
		}
		if prev, ok := files[x.Location]; ok && prev != x.File {
			return nil, fmt.Errorf("initializer %s: external location %q stands for both %s and %s", t.Name, x.Location, prev, x.File)
		}
		files[x.Location] = x.File
		st, err := os.Stat(x.File)
		if err != nil {
			return nil, fmt.Errorf("initializer %s: weights file: %w", t.Name, err)
		}
		if end := x.Offset + x.Length; end > st.Size() {
			return nil, fmt.Errorf("initializer %s: bytes [%d, %d) lie beyond the end of %s (%d bytes)", t.Name, x.Offset, end, x.File, st.Size())
		}
	}
	return files, nil
}

// placeExternal links or copies each source file into dir under its
// location (files maps locations to sources, as checkExternal returns it).
func placeExternal(files map[string]string, dir string) error {
	for _, loc := range slices.Sorted(maps.Keys(files)) {
		src, dst := files[loc], filepath.Join(dir, loc)
		if sameRegular(src, dst) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("save model: %w", err)
		}
		if linkAtomic(src, dst) == nil {
			continue
		}
		if err := copyFile(src, dst); err != nil {
			return err
		}
	}
	return nil
}

// linkFile is os.Link; tests replace it to take the copy fallback.
var linkFile = os.Link

// linkAtomic hard-links src as dst, replacing whatever dst was in one step.
func linkAtomic(src, dst string) error {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	os.Remove(tmp)
	if err := linkFile(src, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// sameRegular reports whether dst is a regular file (not a symlink) that is
// src.
func sameRegular(src, dst string) bool {
	ss, err1 := os.Stat(src)
	ds, err2 := os.Lstat(dst)
	return err1 == nil && err2 == nil && ds.Mode().IsRegular() && os.SameFile(ss, ds)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	defer in.Close()
	return writeAtomic(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in) // copy_file_range where the kernel has it
		return err
	})
}

// spill writes the inline initializers of at least InlineLimit bytes into
// opts.DataFile, each at a 64-byte aligned offset, and returns a copy of g
// whose initializers point there. g is not changed.
func spill(g *GraphProto, dir string, opts SaveOptions) (*GraphProto, error) {
	out := *g
	out.Initializers = slices.Clone(g.Initializers)
	var moved []int
	for i, t := range g.Initializers {
		if t.External == nil && len(t.Raw) > 0 && len(t.Raw) >= opts.InlineLimit {
			moved = append(moved, i)
		}
	}
	if len(moved) == 0 {
		return &out, nil
	}
	path := filepath.Join(dir, opts.DataFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("save model: %w", err)
	}
	err := writeAtomic(path, func(w io.Writer) error {
		var off int64
		for _, i := range moved {
			t := g.Initializers[i]
			if pad := (64 - off%64) % 64; pad > 0 {
				if _, err := w.Write(make([]byte, pad)); err != nil {
					return err
				}
				off += pad
			}
			if _, err := w.Write(t.Raw); err != nil {
				return err
			}
			c := *t
			c.Raw = nil
			c.External = &External{Location: opts.DataFile, File: path, Offset: off, Length: int64(len(t.Raw))}
			out.Initializers[i] = &c
			off += int64(len(t.Raw))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// writeAtomic writes path through a temporary file renamed when complete.
func writeAtomic(path string, fill func(io.Writer) error) error {
	f, err := atomicfile.Create(path, 0o644, false)
	if err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	defer f.Abort()
	if err := fill(f); err != nil {
		return fmt.Errorf("save model %s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}
