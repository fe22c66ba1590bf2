package onnx

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// SaveOptions say how Save places weight bytes.
type SaveOptions struct {
	// DataFile receives inline initializers of at least InlineLimit bytes, as
	// external data next to the model ("" keeps every initializer inline;
	// protobuf caps a model at 2 GiB, so large models need it).
	DataFile    string
	InlineLimit int
	// CopyExternal copies the source files of external initializers into the
	// model's folder; otherwise they are hard-linked, or symlinked across
	// file systems.
	CopyExternal bool
}

// Save writes m as dir/name with its external data resolved so that the
// folder is self-contained: every External.File is made available in dir
// under its Location, and large inline tensors go to opts.DataFile. The
// model is written to a temporary name and renamed when complete.
func Save(m *Model, dir, name string, opts SaveOptions) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if err := placeExternal(m.Graph, dir, opts.CopyExternal); err != nil {
		return err
	}
	if opts.DataFile != "" {
		if err := spill(m.Graph, dir, opts); err != nil {
			return err
		}
	}
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, name), func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// placeExternal links or copies each distinct external source file into dir.
func placeExternal(g *GraphProto, dir string, copyFiles bool) error {
	done := map[string]bool{}
	for _, t := range g.Initializers {
		x := t.External
		if x == nil || x.File == "" || done[x.Location] {
			continue
		}
		done[x.Location] = true
		dst := filepath.Join(dir, x.Location)
		if same(x.File, dst) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("save model: %w", err)
		}
		os.Remove(dst)
		if copyFiles {
			if err := copyFile(x.File, dst); err != nil {
				return err
			}
			continue
		}
		if err := os.Link(x.File, dst); err == nil {
			continue
		}
		abs, err := filepath.Abs(x.File)
		if err != nil {
			return fmt.Errorf("save model: %w", err)
		}
		if err := os.Symlink(abs, dst); err != nil {
			return fmt.Errorf("save model: link weights %s: %w", x.File, err)
		}
	}
	return nil
}

func same(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	defer in.Close()
	return writeAtomic(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// spill moves inline initializers of at least InlineLimit bytes into
// opts.DataFile, each at a 64-byte aligned offset.
func spill(g *GraphProto, dir string, opts SaveOptions) error {
	return writeAtomic(filepath.Join(dir, opts.DataFile), func(w io.Writer) error {
		var off int64
		for _, t := range g.Initializers {
			if t.External != nil || len(t.Raw) < opts.InlineLimit || len(t.Raw) == 0 {
				continue
			}
			if pad := (64 - off%64) % 64; pad > 0 {
				if _, err := w.Write(make([]byte, pad)); err != nil {
					return err
				}
				off += pad
			}
			if _, err := w.Write(t.Raw); err != nil {
				return err
			}
			t.External = &External{Location: opts.DataFile, Offset: off, Length: int64(len(t.Raw))}
			off += int64(len(t.Raw))
			t.Raw = nil
		}
		return nil
	})
}

// writeAtomic writes path through a temporary file renamed when complete.
func writeAtomic(path string, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := fill(f); err != nil {
		f.Close()
		return fmt.Errorf("save model %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save model %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}
