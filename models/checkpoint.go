package models

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/models/tokenizer"
)

// ErrModelNotFound is returned when the model names neither a folder nor a
// hub id in the local Hugging Face cache.
var ErrModelNotFound = errors.New("model not found")

// resolve turns a model (the "model" setting) that is not a file into a
// diffusers folder: a folder path as given, or a hub id ("org/name") looked
// up offline in the Hugging Face hub cache ($HF_HUB_CACHE, $HF_HOME/hub,
// ~/.cache/huggingface/hub), at the snapshot refs/main names (or the only
// snapshot there is).
func resolve(model string) (string, error) {
	if model == "" {
		return "", &param.Error{Name: "model", Reason: "is required", Err: ErrModelNotFound}
	}
	if _, err := os.Stat(model); err == nil {
		return model, nil
	}
	if strings.HasSuffix(strings.ToLower(model), ".safetensors") {
		return "", &param.Error{Name: "model", Value: model, Reason: "no such file", Err: ErrModelNotFound}
	}
	var looked []string
	if isHubID(model) {
		for _, root := range hubCaches() {
			repo := filepath.Join(root, "models--"+strings.ReplaceAll(model, "/", "--"))
			looked = append(looked, repo)
			if snap, ok := snapshot(repo); ok {
				return snap, nil
			}
		}
		return "", fmt.Errorf("%w: %s is not a folder, and no snapshot of it is in the Hugging Face cache (looked in %s): download it once with `huggingface-cli download %s`, or pass a diffusers folder",
			ErrModelNotFound, model, strings.Join(looked, ", "), model)
	}
	return "", &param.Error{Name: "model", Value: model, Err: ErrModelNotFound,
		Reason: "no such folder; pass a diffusers folder, a single-file .safetensors checkpoint or a hub id like stabilityai/stable-diffusion-2-1-base"}
}

func isHubID(s string) bool {
	parts := strings.Split(s, "/")
	return len(parts) == 2 && parts[0] != "" && parts[1] != "" && !strings.HasPrefix(s, ".") && !filepath.IsAbs(s)
}

func hubCaches() []string {
	var out []string
	if v := os.Getenv("HF_HUB_CACHE"); v != "" {
		out = append(out, v)
	}
	if v := os.Getenv("HF_HOME"); v != "" {
		out = append(out, filepath.Join(v, "hub"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		out = append(out, filepath.Join(home, ".cache", "huggingface", "hub"))
	}
	return out
}

// snapshot finds the folder refs/main points at, or the only snapshot.
func snapshot(repo string) (string, bool) {
	if ref, err := os.ReadFile(filepath.Join(repo, "refs", "main")); err == nil {
		dir := filepath.Join(repo, "snapshots", strings.TrimSpace(string(ref)))
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir, true
		}
	}
	entries, err := os.ReadDir(filepath.Join(repo, "snapshots"))
	if err != nil {
		return "", false
	}
	entries = slices.DeleteFunc(entries, func(e os.DirEntry) bool { return !e.IsDir() })
	if len(entries) == 1 {
		return filepath.Join(repo, "snapshots", entries[0].Name()), true
	}
	return "", false
}

// Checkpoint is a diffusers Stable Diffusion folder, or a single-file
// checkpoint turned into one (see singlefile.go).
type Checkpoint struct {
	// Dir is the diffusers folder: the checkpoint itself, or for a single
	// file the folder it was converted into in the cache.
	Dir string
	// File is the single-file checkpoint ("" for a folder).
	File   string
	single *singleFile
}

// OpenOptions configure OpenModel.
type OpenOptions struct {
	// OriginalConfig is the original inference YAML of a single-file
	// checkpoint (the "original_config" setting); "" to detect the architecture from
	// the tensors.
	OriginalConfig string
	// CacheRoot is where single files are converted ("" for
	// $TOKENFLOW_CACHE, else the user cache folder's tokenflow/).
	CacheRoot string
	// Log receives notes (EMA weights used, a conversion running); may be nil.
	Log io.Writer
}

// OpenModel opens a model: a diffusers folder, a hub id in the local
// cache, or a single-file .safetensors checkpoint.
func OpenModel(model string, o OpenOptions) (*Checkpoint, error) {
	if st, err := os.Stat(model); err == nil && !st.IsDir() {
		return openSingleFile(model, o)
	}
	dir, err := resolve(model)
	if err != nil {
		return nil, err
	}
	if o.OriginalConfig != "" {
		return nil, param.Errorf("original_config", o.OriginalConfig, "only for a single-file checkpoint; {model} %s is a diffusers folder, whose config.json files say the architecture", model)
	}
	for _, sub := range []string{"unet", "vae", "text_encoder", "tokenizer", "scheduler"} {
		st, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%s: missing subfolder %s/: not a diffusers Stable Diffusion folder", dir, sub)
		}
	}
	return &Checkpoint{Dir: dir}, nil
}

// Path is a file inside the checkpoint.
func (c *Checkpoint) Path(parts ...string) string {
	return filepath.Join(append([]string{c.Dir}, parts...)...)
}

// WeightFiles lists a component's safetensors files (a sharded checkpoint
// has several; an fp16 "variant" is used only when it is all there is).
func (c *Checkpoint) WeightFiles(component string) ([]string, error) {
	if c.single != nil {
		if err := c.single.convert(c.Dir, component); err != nil {
			return nil, err
		}
	}
	dir := c.Path(component)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	var plain, variant []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".safetensors") {
			continue
		}
		if strings.Contains(strings.TrimSuffix(name, ".safetensors"), ".fp16") {
			variant = append(variant, filepath.Join(dir, name))
		} else {
			plain = append(plain, filepath.Join(dir, name))
		}
	}
	files := plain
	if len(files) == 0 {
		files = variant
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no .safetensors weights (PyTorch .bin checkpoints are not read: convert them to safetensors)", dir)
	}
	slices.Sort(files)
	return files, nil
}

// Weights opens a component's weights for graphs of element type t.
func (c *Checkpoint) Weights(component string, t onnx.DataType) (*Weights, error) {
	files, err := c.WeightFiles(component)
	if err != nil {
		return nil, err
	}
	return OpenWeights(component, files, t)
}

// component reads a component's config.json with load and opens its
// weights for graphs of element type t.
func component[C any](c *Checkpoint, name string, t onnx.DataType, load func(string) (*C, error)) (*C, *Weights, error) {
	cfg, err := load(c.Path(name, "config.json"))
	if err != nil {
		return nil, nil, err
	}
	w, err := c.Weights(name, t)
	return cfg, w, err
}

// UNet loads the UNet's config and weights.
func (c *Checkpoint) UNet(t onnx.DataType) (*UNet, error) {
	cfg, w, err := component(c, "unet", t, LoadUNetConfig)
	if err != nil {
		return nil, err
	}
	return &UNet{Config: cfg, Weights: w}, nil
}

// Source is what the model named: the single file, or the folder.
func (c *Checkpoint) Source() string { return cmp.Or(c.File, c.Dir) }

// UNetConfig reads the UNet's config.
func (c *Checkpoint) UNetConfig() (*UNetConfig, error) {
	return LoadUNetConfig(c.Path("unet", "config.json"))
}

// VAEConfig reads the autoencoder's config.
func (c *Checkpoint) VAEConfig() (*VAEConfig, error) {
	return LoadVAEConfig(c.Path("vae", "config.json"))
}

// TextConfig reads the text encoder's config.
func (c *Checkpoint) TextConfig() (*CLIPTextConfig, error) {
	return LoadCLIPTextConfig(c.Path("text_encoder", "config.json"))
}

// SchedulerConfig reads the scheduler's config (for a single file: the
// standard SD DDIM settings with its YAML's schedule).
func (c *Checkpoint) SchedulerConfig() (scheduler.Config, error) {
	return scheduler.LoadConfig(c.Path("scheduler", "scheduler_config.json"))
}

// Tokenizer loads the tokenizer (for a single file: the standard CLIP BPE
// carried in the binary).
func (c *Checkpoint) Tokenizer() (*tokenizer.Tokenizer, error) {
	return tokenizer.Load(c.Path("tokenizer"))
}

// Identity identifies the model: a hash of its configs and tokenizer files,
// and for a folder its weight headers (names, types, shapes, offsets, file
// sizes) and the SHA-256 of every weight file's bytes, for a single file
// the SHA-256 of its content. Equal identities compute the same functions.
//
// cacheRoot is the cache folder whose weight-hashes.json remembers each
// weight file's hash by path, size, modification time and inode, so that a
// checkpoint's gigabytes are read once, not on every run ("" reads them
// every time).
func (c *Checkpoint) Identity(cacheRoot string) (string, error) {
	h := sha256.New()
	if c.single != nil {
		fmt.Fprintf(h, "tokenflow model id v1 single-file\n")
	} else {
		fmt.Fprintf(h, "tokenflow model id v2\n")
	}
	for _, f := range []string{"unet/config.json", "vae/config.json", "text_encoder/config.json", "scheduler/scheduler_config.json",
		"tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json"} {
		b, err := os.ReadFile(c.Path(filepath.FromSlash(f)))
		if err != nil && !os.IsNotExist(err) {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	if c.single != nil {
		src, err := readSource(c.Dir)
		if err != nil {
			return "", fmt.Errorf("cache for %s: %w", c.File, err)
		}
		fmt.Fprintf(h, "sha256 %s\n", src.SHA256)
		return hex.EncodeToString(h.Sum(nil))[:24], nil
	}
	// Per component: its tensors' headers, then its files' sizes and
	// hashes. Every file is hashed in one call, so that they are read side
	// by side.
	var headers [][]byte
	var files [][]string
	for _, comp := range []string{"unet", "vae", "text_encoder"} {
		w, err := c.Weights(comp, onnx.Float)
		if err != nil {
			return "", err
		}
		var b []byte
		for _, n := range w.Names() { // sorted
			t, _ := w.Info(n)
			b = fmt.Appendf(b, "%s %s %s %v %d %d\n", comp, n, t.DType, t.Shape, t.Offset, t.Length)
		}
		headers, files = append(headers, b), append(files, w.Files())
		w.Close()
	}
	sums, err := weightHashes(cacheRoot, slices.Concat(files...))
	if err != nil {
		return "", err
	}
	for i := range headers {
		h.Write(headers[i])
		for _, f := range files[i] {
			st, err := os.Stat(f)
			if err != nil {
				return "", fmt.Errorf("model identity: %w", err)
			}
			fmt.Fprintf(h, "%s %d sha256 %s\n", filepath.Base(f), st.Size(), sums[0])
			sums = sums[1:]
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}
