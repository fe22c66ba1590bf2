package models

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/models/tokenizer"
)

// A single-file checkpoint (one .safetensors in the original CompVis /
// Stability key layout) is opened by turning it, once, into a diffusers
// folder in the user cache: the config files derived from its tensors (or
// from its original inference YAML), the standard tokenizer files, and per component
// one float32 safetensors file with diffusers names, written on first use.
// From there on it is a folder like any other: graphs reference the
// converted files as external data (never inlined: a fp16 SD 1.5 UNet is
// 3.4 GB in float32, beyond protobuf's 2 GiB), and export copies the same
// tokenizer and scheduler files.
//
// The cache folder is <cache>/checkpoints/<key>, the key hashing the file's
// tensor header, size and modification time and the derived configs; every
// file in it is written under a temporary name and renamed into place.

// sourceFile records what a cache folder was made from.
const sourceFile = "source.json"

type singleSource struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // of the whole file: the model's identity
}

// singleFile is the conversion state of a single-file checkpoint.
type singleFile struct {
	path string
	arch *ldmArch
	ema  bool
	log  io.Writer
}

// component is how one diffusers component is made from a single file.
type singleComponent struct {
	prefix string
	table  renameTable
	file   string // weight file name in the diffusers folder
}

func (s *singleFile) component(comp string) (singleComponent, error) {
	a := s.arch
	switch comp {
	case "unet":
		return singleComponent{ldmUNet, unetRenames(len(a.ChannelMult), a.NumResBlocks, a.AttnLevels), "diffusion_pytorch_model.safetensors"}, nil
	case "vae":
		return singleComponent{ldmVAE, vaeRenames(len(a.VAEMult), a.VAEResBlocks), "diffusion_pytorch_model.safetensors"}, nil
	case "text_encoder":
		if a.SD2 {
			return singleComponent{ldmOpenCLIP, openCLIPRenames(a.TextLayers + 1), "model.safetensors"}, nil
		}
		return singleComponent{ldmCLIP, clipRenames, "model.safetensors"}, nil
	}
	return singleComponent{}, fmt.Errorf("%s: no component %q", s.path, comp)
}

// cacheRoot is where converted checkpoints live: root when given, else
// $TOKENFLOW_CACHE, else "tokenflow" in the user cache folder (the
// inversion cache's root).
func cacheRoot(root string) (string, error) {
	if dir := cmp.Or(root, os.Getenv("TOKENFLOW_CACHE")); dir != "" {
		return filepath.Clean(dir), nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache folder for converted single-file checkpoints (%v); set TOKENFLOW_CACHE", err)
	}
	return filepath.Join(dir, "tokenflow"), nil
}

// openSingleFile opens a .safetensors single-file checkpoint.
func openSingleFile(path string, o OpenOptions) (*Checkpoint, error) {
	if !strings.HasSuffix(strings.ToLower(path), ".safetensors") {
		return nil, param.Errorf("model", path, "is a file but not .safetensors (pickle .ckpt files are not read: convert them to safetensors); want a diffusers folder or a single-file .safetensors checkpoint")
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, param.Reasonf("model", "%w", err) // the error starts with the path
	}
	defer f.Close()
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	view := tensorView{path: path, infos: map[string]safetensors.TensorInfo{}}
	for _, n := range f.Names() {
		view.infos[n] = f.Tensor(n)
	}
	arch, err := detectArch(view)
	if err != nil {
		return nil, err
	}
	if o.OriginalConfig != "" {
		doc, err := readYAML(o.OriginalConfig)
		if err != nil {
			return nil, err
		}
		if err := applyYAML(arch, doc, path); err != nil {
			return nil, err
		}
	}
	configs, err := arch.diffusersConfigs(path)
	if err != nil {
		return nil, err
	}
	s := &singleFile{path: path, arch: arch, log: o.Log, ema: slices.ContainsFunc(f.Names(), func(n string) bool {
		return strings.HasPrefix(n, ldmEMA+".") && n != ldmEMA+".decay" && n != ldmEMA+".num_updates"
	})}

	// The cache key: the tensor header, size and time of the file, and
	// what was made of it.
	h := sha256.New()
	fmt.Fprintf(h, "tokenflow single-file cache v1\n%d %d\n", st.Size(), st.ModTime().UnixNano())
	for _, n := range f.Names() {
		t := f.Tensor(n)
		fmt.Fprintf(h, "%s %s %v %d %d\n", n, t.DType, t.Shape, t.Offset, t.Length)
	}
	cb, _ := json.Marshal(configs)
	h.Write(cb)
	root, err := cacheRoot(o.CacheRoot)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "checkpoints", hex.EncodeToString(h.Sum(nil))[:24])
	if _, err := os.Stat(filepath.Join(dir, sourceFile)); err != nil {
		sum, err := fileSHA256(path)
		if err != nil {
			return nil, err
		}
		if err := s.writeFolder(dir, configs, singleSource{File: path, Size: st.Size(), SHA256: sum}); err != nil {
			return nil, fmt.Errorf("cache for %s: %w", path, err)
		}
	}
	if arch.SD2 && o.OriginalConfig == "" && s.log != nil {
		// The tensors of SD 2.x-base (512 px, noise prediction) and SD 2.x
		// (768 px, v-prediction) are alike: only the YAML tells.
		fmt.Fprintf(s.log, "%s: SD 2.x without its original inference YAML: assuming noise prediction (SD 2.x-base); for a 768-v model give its YAML, v2-inference-v.yaml\n", filepath.Base(path))
	}
	if s.ema && s.log != nil {
		fmt.Fprintf(s.log, "%s: has EMA weights (%s.*); using them for the UNet, as the original code does\n", filepath.Base(path), ldmEMA)
	}
	return &Checkpoint{Dir: dir, File: path, single: s}, nil
}

// writeFolder makes the cache folder: configs, tokenizer, scheduler,
// model_index.json and source.json (src: the file and its SHA-256).
func (s *singleFile) writeFolder(dir string, configs map[string]any, src singleSource) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	d, err := atomicfile.CreateDir(dir)
	if err != nil {
		return err
	}
	defer d.Abort()
	pad := tokenizer.PadSD1
	if s.arch.SD2 {
		pad = tokenizer.PadSD2
	}
	if err := tokenizer.WriteBuiltin(filepath.Join(d.Name(), "tokenizer"), pad); err != nil {
		return err
	}
	files := maps.Clone(configs)
	files["model_index.json"] = map[string]any{"_class_name": "StableDiffusionPipeline", "requires_safety_checker": false,
		"unet": []string{"diffusers", "UNet2DConditionModel"}, "vae": []string{"diffusers", "AutoencoderKL"},
		"text_encoder": []string{"transformers", "CLIPTextModel"}, "tokenizer": []string{"transformers", "CLIPTokenizer"},
		"scheduler": []string{"diffusers", "DDIMScheduler"}}
	files[sourceFile] = src
	for name, v := range files {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		p := filepath.Join(d.Name(), filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if err := d.Commit(); err != nil && !errors.Is(err, atomicfile.ErrExist) {
		return err
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// convertTarget is one float32 tensor of a converted component: a renamed
// part of a source tensor.
type convertTarget struct {
	renamed
	source string
	shape  []int64
}

// plan lists the converted tensors of comp, sorted by name.
func (s *singleFile) plan(f *safetensors.File, comp singleComponent, compName string) ([]convertTarget, error) {
	var out []convertTarget
	seen := map[string]string{}
	for _, src := range f.Names() {
		if !strings.HasPrefix(src, comp.prefix+".") {
			continue
		}
		local := src[len(comp.prefix)+1:]
		targets, ok := comp.table.rename(local)
		if !ok {
			return nil, fmt.Errorf("%s: tensor %s has no diffusers %s name (not an SD 1.x/2.x layout?)", s.path, src, compName)
		}
		read := src
		if compName == "unet" && s.ema {
			// LDM's EMA copy: "model_ema." + the name after "model." without dots.
			flat := ldmEMA + "." + strings.ReplaceAll(strings.TrimPrefix(src, "model."), ".", "")
			if f.Has(flat) {
				read = flat
			}
		}
		info := f.Tensor(read)
		for _, t := range targets {
			shape := slices.Clone(info.Shape)
			if t.Parts > 1 {
				if len(shape) == 0 || shape[0]%int64(t.Parts) != 0 {
					return nil, fmt.Errorf("%s: tensor %s of shape %v does not split into %d along its first axis", s.path, src, info.Shape, t.Parts)
				}
				shape[0] /= int64(t.Parts)
			}
			if t.Squeeze && len(shape) == 4 && shape[2] == 1 && shape[3] == 1 {
				shape = shape[:2]
			}
			if prev, dup := seen[t.Name]; dup {
				return nil, fmt.Errorf("%s: tensors %s and %s both map to %s", s.path, prev, src, t.Name)
			}
			seen[t.Name] = src
			out = append(out, convertTarget{renamed: t, source: read, shape: shape})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no %s tensors (nothing under %s.)", s.path, compName, comp.prefix)
	}
	slices.SortFunc(out, func(a, b convertTarget) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// convert writes comp's float32 diffusers weights into dir/comp/ unless
// they are there.
func (s *singleFile) convert(dir, compName string) error {
	comp, err := s.component(compName)
	if err != nil {
		return err
	}
	dst := filepath.Join(dir, compName, comp.file)
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	f, err := safetensors.Open(s.path)
	if err != nil {
		return param.Reasonf("model", "%w", err) // the error starts with the path
	}
	defer f.Close()
	plan, err := s.plan(f, comp, compName)
	if err != nil {
		return err
	}
	if s.log != nil {
		fmt.Fprintf(s.log, "converting the %s of %s to float32 diffusers weights in %s (once)\n", compName, filepath.Base(s.path), filepath.Dir(dst))
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("cache for %s: %w", s.path, err)
	}
	out, err := atomicfile.Create(dst, 0o666, false)
	if err != nil {
		return fmt.Errorf("cache for %s: %w", s.path, err)
	}
	defer out.Abort()
	if err := writeFloat32Tensors(out, f, plan); err != nil {
		return err
	}
	if err := out.Commit(); err != nil {
		return fmt.Errorf("cache for %s: %w", s.path, err)
	}
	return nil
}

// writeFloat32Tensors streams the plan's tensors into a safetensors file,
// one tensor in memory at a time.
func writeFloat32Tensors(w io.Writer, f *safetensors.File, plan []convertTarget) error {
	type entry struct {
		DType   string   `json:"dtype"`
		Shape   []int64  `json:"shape"`
		Offsets [2]int64 `json:"data_offsets"`
	}
	header := map[string]entry{}
	var off int64
	for _, t := range plan {
		n := 4 * safetensors.TensorInfo{Shape: t.shape}.NumElements()
		header[t.Name] = entry{DType: "F32", Shape: t.shape, Offsets: [2]int64{off, off + n}}
		off += n
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return err
	}
	if r := len(hb) % 8; r != 0 {
		hb = append(hb, strings.Repeat(" ", 8-r)...)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(hb))))
	bw.Write(hb)
	for _, t := range plan {
		v, err := f.Float32(t.source)
		if err != nil {
			return err
		}
		if t.Parts > 1 {
			n := len(v) / t.Parts
			v = v[t.Part*n : (t.Part+1)*n]
		}
		bw.Write(safetensors.FromFloat32(t.Name, t.shape, v).Data)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write converted weights: %w", err)
	}
	return nil
}

// readSource reads the cache folder's source.json.
func readSource(dir string) (singleSource, error) {
	var s singleSource
	b, err := os.ReadFile(filepath.Join(dir, sourceFile))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Join(dir, sourceFile), err)
	}
	return s, nil
}
