package sd

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/internal/safetensors"
)

// fp16 graphs built from float32 weight files would hold every converted
// weight inside the graph (half of SD's 3.4 GB UNet is beyond what a graph
// held in memory may take, see maxInline). So, with a cache folder, a
// component's weights are converted once into one safetensors file under
// <cache>/fp16/<key>/, which the graphs reference as external data: every
// tensor of two or more axes (the convolution, linear and embedding
// weights) as F16, rounded to nearest even exactly as models' in-memory
// conversion rounds (safetensors.File.Float16), the rest (biases and
// normalisation parameters, which fp16 graphs keep in float32) as they
// are. The graphs compute the same either way. The key hashes the source
// files' paths, sizes, modification times and tensor headers, so a changed
// checkpoint gets a new conversion.

const halfKeyVersion = "tokenflow fp16 weights v1"

// halfDir is the cache folder of fp16 conversions.
const halfDir = "fp16"

// converts reports whether a tensor is stored as F16 for fp16 graphs.
func converts(t safetensors.TensorInfo) bool {
	switch t.DType {
	case safetensors.F32, safetensors.F64, safetensors.BF16:
		return len(t.Shape) >= 2
	}
	return false
}

// halfWeightFiles returns the weight files of component comp to build fp16
// graphs from: files as they are when they need no conversion, else the
// cached conversion, made now if missing (saying so on log).
func halfWeightFiles(root, comp string, files []string, log io.Writer) ([]string, error) {
	var opened []*safetensors.File
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", halfKeyVersion, comp)
	need := false
	for _, path := range files {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		f, err := safetensors.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s weights: %w", comp, err)
		}
		opened = append(opened, f)
		fmt.Fprintf(h, "%s %d %d\n", strconv.Quote(path), st.Size(), st.ModTime().UnixNano())
		for _, name := range f.Names() {
			t := f.Tensor(name)
			fmt.Fprintf(h, "%s %s %v %d %d\n", strconv.Quote(name), t.DType, t.Shape, t.Offset, t.Length)
			need = need || converts(t)
		}
	}
	if !need {
		return files, nil
	}
	dst := filepath.Join(root, halfDir, hex.EncodeToString(h.Sum(nil))[:24], comp+".safetensors")
	if _, err := os.Stat(dst); err == nil {
		return []string{dst}, nil
	}
	if log != nil {
		fmt.Fprintf(log, "converting the %s weights to fp16 in %s (once)\n", comp, filepath.Dir(dst))
	}
	var ts []safetensors.Tensor
	for _, f := range opened {
		for _, name := range f.Names() {
			t := f.Tensor(name)
			if !converts(t) {
				raw, err := f.Raw(name)
				if err != nil {
					return nil, err
				}
				ts = append(ts, safetensors.Tensor{Name: name, DType: t.DType, Shape: t.Shape, Data: raw})
				continue
			}
			v, err := f.Float16(name)
			if err != nil {
				return nil, err
			}
			ts = append(ts, safetensors.FromFloat16(name, t.Shape, v))
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, fmt.Errorf("fp16 weights: %w", err)
	}
	out, err := atomicfile.Create(dst, 0o666, false)
	if err != nil {
		return nil, fmt.Errorf("fp16 weights: %w", err)
	}
	defer out.Abort()
	if err := safetensors.Write(out, ts, map[string]string{"format": "pt", "tokenflow": halfKeyVersion}); err != nil {
		return nil, fmt.Errorf("fp16 weights: %w", err)
	}
	if err := out.Commit(); err != nil {
		return nil, fmt.Errorf("fp16 weights: %w", err)
	}
	return []string{dst}, nil
}
