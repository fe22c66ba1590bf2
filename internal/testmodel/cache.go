package testmodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
)

// CacheDirVar names the environment variable that overrides DefaultCacheDir.
const CacheDirVar = "TOKENFLOW_BENCH_DIR"

// generator versions the bytes Write produces: change it when the random
// initialisation or the file layout changes, so caches are rewritten.
const generator = "v1"

// markerFile is written last into a complete cached checkpoint; it holds
// the Summary as JSON.
const markerFile = ".tokenflow-testmodel-complete"

// DefaultCacheDir is where benchmarks keep their random checkpoints:
// $TOKENFLOW_BENCH_DIR, else tokenflow-bench in the user's cache folder.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv(CacheDirVar); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("test model cache: %w (set $%s)", err, CacheDirVar)
	}
	return filepath.Join(d, "tokenflow-bench"), nil
}

// Cached returns the checkpoint spec describes with the given seed, kept
// under root (one folder per spec, seed and generator version). A complete
// folder, one whose marker file exists, is reused as it is; otherwise the
// checkpoint is written into a temporary folder next to it, the marker
// written last, and the folder renamed into place, so an interrupted run
// leaves nothing a later run would mistake for complete.
func Cached(root, assets string, spec Spec, seed uint64) (*Summary, error) {
	dir := filepath.Join(root, fmt.Sprintf("%s-random-%s-seed%d", spec.Name, generator, seed))
	if s, err := readMarker(dir); err == nil {
		return s, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("test model cache: %w", err)
	}
	// A folder without its marker is a leftover (e.g. written by hand);
	// it would block the rename.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("test model cache: remove incomplete %s: %w", dir, err)
	}
	tmp, err := atomicfile.CreateDir(dir)
	if err != nil {
		return nil, err
	}
	defer tmp.Abort()
	s, err := Write(tmp.Name(), assets, spec, seed)
	if err != nil {
		return nil, err
	}
	s.Dir = dir
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp.Name(), markerFile), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("test model cache: %w", err)
	}
	if err := tmp.Commit(); err != nil {
		// Another process may have finished the same entry first.
		if errors.Is(err, fs.ErrExist) {
			if s, merr := readMarker(dir); merr == nil {
				return s, nil
			}
		}
		return nil, err
	}
	return s, nil
}

func readMarker(dir string) (*Summary, error) {
	b, err := os.ReadFile(filepath.Join(dir, markerFile))
	if err != nil {
		return nil, err
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, markerFile), err)
	}
	s.Dir = dir
	for _, c := range s.Components {
		st, err := os.Stat(filepath.Join(dir, c.File))
		if err != nil || st.Size() != c.Bytes {
			return nil, fmt.Errorf("%s: %s is missing or has changed", dir, c.File)
		}
	}
	return &s, nil
}
