// Package models writes Stable Diffusion's networks (UNet, VAE, CLIP text
// encoder) as ONNX graphs, from a diffusers checkpoint's config.json files and
// safetensors weights. Architecture code follows diffusers' module tree: a
// block's weights are found under its diffusers module path.
package models

import (
	"cmp"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/safetensors"
)

// Weights is one component's weight files (e.g. unet/*.safetensors), handed
// out to graph builders as initializers. The first problem met (a missing
// tensor, a wrong shape) is kept and reported by Err: builders add nodes
// without checking errors at every step.
type Weights struct {
	Component string // "unet", "vae", "text_encoder": used in errors
	files     []*safetensors.File
	owner     map[string]*safetensors.File
	// Type is the element type of the weights in the graph (Float, or
	// Float16 for fp16 graphs).
	Type  onnx.DataType
	added map[*onnx.Graph]map[string]onnx.Value
	err   error
	// recorded, when not nil, makes the set a recorder: every tensor a
	// builder asks for is noted with its shape instead of read.
	recorded map[string][]int64
}

// RecordShapes is a weight set with no files that records the name and
// shape of every tensor a builder asks for: the parameter list of an
// architecture, used to write random-weight checkpoints for benchmarks.
func RecordShapes(component string) *Weights {
	return &Weights{Component: component, owner: map[string]*safetensors.File{}, Type: onnx.Float,
		added: map[*onnx.Graph]map[string]onnx.Value{}, recorded: map[string][]int64{}}
}

// Recorded returns the recorded tensor shapes by name.
func (w *Weights) Recorded() map[string][]int64 { return w.recorded }

// OpenWeights opens the safetensors files of a component folder.
func OpenWeights(component string, paths []string, t onnx.DataType) (*Weights, error) {
	w := &Weights{Component: component, owner: map[string]*safetensors.File{}, Type: t, added: map[*onnx.Graph]map[string]onnx.Value{}}
	for _, p := range paths {
		// External data must name the real file: ONNX Runtime refuses a
		// symlink that leads out of the data folder (the Hugging Face cache
		// links snapshots to blobs/).
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		f, err := safetensors.Open(p)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("%s weights: %w", component, err)
		}
		w.files = append(w.files, f)
		for _, name := range f.Names() {
			if prev, dup := w.owner[name]; dup {
				w.Close()
				return nil, fmt.Errorf("%s weights: tensor %q is in both %s and %s", component, name, prev.Path(), p)
			}
			w.owner[name] = f
		}
	}
	return w, nil
}

// Close releases the files.
func (w *Weights) Close() error {
	for _, f := range w.files {
		f.Close()
	}
	w.files = nil
	return nil
}

// DataDir is the folder holding every weight file: ONNX Runtime reads the
// graphs' external data from it.
func (w *Weights) DataDir() (string, error) {
	dir := ""
	for _, f := range w.files {
		d := filepath.Dir(f.Path())
		if dir != "" && d != dir {
			return "", fmt.Errorf("%s weights lie in two folders (%s, %s): keep a component's weight files together", w.Component, dir, d)
		}
		dir = d
	}
	return dir, nil
}

// Err is the first weight problem met while building.
func (w *Weights) Err() error { return w.err }

// Has reports whether the checkpoint holds a tensor.
func (w *Weights) Has(name string) bool {
	_, ok := w.owner[name]
	return ok
}

// Files are the paths of the component's weight files.
func (w *Weights) Files() []string {
	var out []string
	for _, f := range w.files {
		out = append(out, f.Path())
	}
	return out
}

// Info describes a tensor, for architecture probes (e.g. conv vs linear).
func (w *Weights) Info(name string) (safetensors.TensorInfo, bool) {
	f, ok := w.owner[name]
	if !ok {
		return safetensors.TensorInfo{}, false
	}
	return f.Tensor(name), true
}

// Names lists every tensor name, sorted.
func (w *Weights) Names() []string {
	return slices.Sorted(maps.Keys(w.owner))
}

// param adds tensor name to g as an initializer of element type t (Float or
// Float16) and the given shape. Float32 weights wanted as float32 stay in
// the user's file (external data: no copy); anything else is converted.
// After an error (Err reports it) a zero placeholder keeps the graph well
// formed.
func (w *Weights) param(g *onnx.Graph, name string, t onnx.DataType, shape []int64) onnx.Value {
	return w.paramPart(g, name, t, shape, 0, 1)
}

// paramPart is param's part-th of parts equal blocks of rows (along the
// first dimension): for float32 weights, a window of the user's file (no
// copy), under the name "<name>[a:b]" (the rows a to b). parts 1 is the
// whole weight, under its own name.
func (w *Weights) paramPart(g *onnx.Graph, name string, t onnx.DataType, shape []int64, part, parts int64) onnx.Value {
	key := name + "#" + t.String()
	if parts != 1 {
		key += fmt.Sprintf("#%d/%d", part, parts)
	}
	// Initializers live in the root graph; branches of an If share them.
	g = g.Root()
	if v, ok := w.added[g][key]; ok {
		return v
	}
	tp, err := w.tensor(name, t, shape)
	if err == nil && parts != 1 {
		tp, err = rowBlock(tp, part, parts)
	}
	if err != nil {
		w.err = cmp.Or(w.err, err) // the first problem
		dims := slices.Clone(shape)
		if parts > 1 && len(dims) > 0 {
			dims[0] /= parts
		}
		n := safetensors.TensorInfo{Shape: dims}.NumElements()
		tp = &onnx.Tensor{Name: "missing:" + key, Type: t, Dims: dims, Raw: make([]byte, n*int64(t.Size()))}
	}
	v := g.Initializer(tp)
	if w.added[g] == nil {
		w.added[g] = map[string]onnx.Value{}
	}
	w.added[g][key] = v
	return v
}

// rowBlock narrows a weight's initializer to its part-th of parts equal
// blocks of rows: its external data's window, or its bytes.
func rowBlock(tp *onnx.Tensor, part, parts int64) (*onnx.Tensor, error) {
	if len(tp.Dims) == 0 || parts < 1 || part < 0 || part >= parts || tp.Dims[0]%parts != 0 {
		return nil, fmt.Errorf("tensor %q of shape %v cannot be cut into %d blocks of rows", tp.Name, tp.Dims, parts)
	}
	rows := tp.Dims[0] / parts
	out := *tp
	out.Name = fmt.Sprintf("%s[%d:%d]", tp.Name, part*rows, (part+1)*rows)
	out.Dims = append([]int64{rows}, tp.Dims[1:]...)
	size := out.NumElements() * int64(tp.Type.Size())
	switch {
	case tp.External != nil:
		ext := *tp.External
		ext.Offset += part * size
		ext.Length = size
		out.External = &ext
	case tp.Raw != nil:
		out.Raw = tp.Raw[part*size : (part+1)*size]
	}
	return &out, nil
}

// tensor is the initializer of one weight (for a recorder, with no data).
func (w *Weights) tensor(name string, t onnx.DataType, shape []int64) (*onnx.Tensor, error) {
	tp := &onnx.Tensor{Name: name, Type: t, Dims: shape}
	if w.recorded != nil {
		w.recorded[name] = append([]int64(nil), shape...)
		return tp, nil
	}
	f, ok := w.owner[name]
	if !ok {
		return nil, fmt.Errorf("%s: missing weight tensor %q", w.where(), name)
	}
	info := f.Tensor(name)
	if !slices.Equal(info.Shape, shape) {
		return nil, fmt.Errorf("%s: tensor %q has shape %v, the config implies %v", f.Path(), name, info.Shape, shape)
	}
	switch {
	case t == onnx.Float && info.DType == safetensors.F32,
		t == onnx.Float16 && info.DType == safetensors.F16:
		tp.External = &onnx.External{Location: filepath.Base(f.Path()), File: f.Path(), Offset: info.Offset, Length: info.Length}
	case t == onnx.Float:
		v, err := f.Float32(name)
		tp.Raw = safetensors.FromFloat32(name, shape, v).Data
		return tp, err
	case t == onnx.Float16:
		v, err := f.Float16(name)
		tp.Raw = safetensors.FromFloat16(name, shape, v).Data
		return tp, err
	default:
		return nil, fmt.Errorf("%s: tensor %q: cannot give %s weights", w.where(), name, t)
	}
	return tp, nil
}

func (w *Weights) where() string {
	if len(w.files) == 1 {
		return w.files[0].Path()
	}
	return w.Component + " weights"
}

// Scope is a position in the module tree: weight names come from it, never
// from string glue in architecture code (STYLE.md 2).
type Scope struct {
	w    *Weights
	path string
}

// Root is the scope of a component's top module, under prefix (e.g.
// "text_model" for CLIP, "" for the UNet).
func (w *Weights) Root(prefix string) Scope { return Scope{w: w, path: prefix} }

// Sub descends into a named child module.
func (s Scope) Sub(name string) Scope { return Scope{w: s.w, path: join(s.path, name)} }

// Index descends into element i of a ModuleList.
func (s Scope) Index(i int) Scope { return s.Sub(strconv.Itoa(i)) }

// Path is the module path, e.g. "down_blocks.0.attentions.1".
func (s Scope) Path() string { return s.path }

// Name is the full name of one of the module's tensors.
func (s Scope) Name(tensor string) string { return s.Sub(tensor).path }

// Has reports whether the module has the tensor.
func (s Scope) Has(tensor string) bool { return s.w.Has(s.Name(tensor)) }

// Param is one of the module's weights in the graph's weight type.
func (s Scope) Param(g *onnx.Graph, tensor string, shape ...int64) onnx.Value {
	return s.w.param(g, s.Name(tensor), s.w.Type, shape)
}

// ParamPart is the part-th of parts equal blocks of rows of one of the
// module's weights (shape is the whole weight's), in the graph's weight
// type: one half of a fused projection, say.
func (s Scope) ParamPart(g *onnx.Graph, tensor string, part, parts int64, shape ...int64) onnx.Value {
	return s.w.paramPart(g, s.Name(tensor), s.w.Type, shape, part, parts)
}

// ParamF32 is one of the module's weights as float32 (normalisation
// parameters, which fp16 graphs keep in float32).
func (s Scope) ParamF32(g *onnx.Graph, tensor string, shape ...int64) onnx.Value {
	return s.w.param(g, s.Name(tensor), onnx.Float, shape)
}
