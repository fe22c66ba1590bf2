package models

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tokenflow/tokenflow/internal/onnx"
)

// ErrModelNotFound is returned when --model names neither a folder nor a
// hub id in the local Hugging Face cache.
var ErrModelNotFound = errors.New("model not found")

// Resolve turns --model into a diffusers folder: a folder path as given, or
// a hub id ("org/name") looked up offline in the Hugging Face hub cache
// ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub), at the snapshot
// refs/main names (or the only snapshot there is).
func Resolve(model string) (string, error) {
	if model == "" {
		return "", fmt.Errorf("%w: no --model given", ErrModelNotFound)
	}
	if st, err := os.Stat(model); err == nil {
		if !st.IsDir() {
			return "", fmt.Errorf("--model %s: is a file; want a diffusers folder (with model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)", model)
		}
		return model, nil
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
	return "", fmt.Errorf("%w: --model %s: no such folder; pass a diffusers folder or a hub id like stabilityai/stable-diffusion-2-1-base", ErrModelNotFound, model)
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
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) == 1 {
		return filepath.Join(repo, "snapshots", dirs[0]), true
	}
	return "", false
}

// Checkpoint is a diffusers Stable Diffusion folder.
type Checkpoint struct {
	Dir string
}

// OpenCheckpoint checks that dir is a diffusers Stable Diffusion folder.
func OpenCheckpoint(model string) (*Checkpoint, error) {
	dir, err := Resolve(model)
	if err != nil {
		return nil, err
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
	sort.Strings(files)
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

// UNet loads the UNet's config and weights.
func (c *Checkpoint) UNet(t onnx.DataType) (*UNet, error) {
	cfg, err := LoadUNetConfig(c.Path("unet", "config.json"))
	if err != nil {
		return nil, err
	}
	w, err := c.Weights("unet", t)
	if err != nil {
		return nil, err
	}
	return &UNet{Config: cfg, Weights: w}, nil
}
