package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/testenv/ortsession"
)

// exportedPorts are the declared inputs of an export, as diffusers'
// OnnxStableDiffusionPipeline feeds them (models/export_pipeline_test.go
// cites its source): name and ONNX Runtime type, in order.
var exportedPorts = map[string][]string{
	"text_encoder": {"input_ids tensor(int32)"},
	"unet":         {"sample tensor(float)", "timestep tensor(float)", "encoder_hidden_states tensor(float)"},
	"vae_encoder":  {"sample tensor(float)"},
	"vae_decoder":  {"latent_sample tensor(float)"},
}

// checkExportFolder checks an export folder the way a loader of the
// diffusers ONNX layout meets it: model_index.json of an
// OnnxStableDiffusionPipeline, each component's model.onnx opening in ONNX
// Runtime with the declared inputs the pipeline feeds, the tokenizer and
// scheduler files, and no symlinks (ONNX Runtime refuses external data
// that resolves outside the model's folder).
func checkExportFolder(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "model_index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index map[string]any
	if err := json.Unmarshal(b, &index); err != nil {
		t.Fatalf("model_index.json: %v", err)
	}
	ortModel := []any{"diffusers", "OnnxRuntimeModel"}
	for k, want := range map[string]any{"_class_name": "OnnxStableDiffusionPipeline", "vae_encoder": ortModel, "vae_decoder": ortModel,
		"text_encoder": ortModel, "unet": ortModel, "tokenizer": []any{"transformers", "CLIPTokenizer"},
		"scheduler": []any{"diffusers", "PNDMScheduler"}, "safety_checker": []any{nil, nil}, "feature_extractor": []any{nil, nil},
		"requires_safety_checker": false} {
		if !reflect.DeepEqual(index[k], want) {
			t.Errorf("model_index.json %s = %#v, want %#v", k, index[k], want)
		}
	}
	for _, f := range []string{"tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("export lacks %s: %v", f, err)
		}
	}
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode()&os.ModeSymlink != 0 {
			t.Errorf("%s is a symlink", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Each graph with its weights in weights.pb, the one external data
	// file diffusers' OnnxRuntimeModel.save_pretrained copies along.
	for comp := range exportedPorts {
		if got := testenv.DirNames(t, filepath.Join(dir, comp)); strings.Join(got, " ") != "model.onnx weights.pb" {
			t.Errorf("%s/ holds %v, want model.onnx and weights.pb", comp, got)
		}
	}
	testenv.ORT(t)
	for comp, want := range exportedPorts {
		in, _, err := ort.ModelPorts(filepath.Join(dir, comp, "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range in {
			got = append(got, p.Name+" "+p.Type)
		}
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Errorf("%s inputs %v, want %v", comp, got, want)
		}
	}
}

// TestModelsExport runs `models export` on a diffusers folder through the
// binary: the folder it prints holds what the diffusers ONNX pipeline
// loads; a second export into it is refused without --force and done
// with it; --dtype fp16 writes the same ports (float32 I/O) and its UNet,
// fed as the pipeline feeds it, gives diffusers' noise prediction within
// fp16's tolerance (TestFP16Graphs: 3% of the output's range).
func TestModelsExport(t *testing.T) {
	for _, name := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			out := filepath.Join(d, "onnx")
			r := tfOK(t, d, "models", "export", model(t, name), "--out", out)
			if strings.TrimSpace(r.Stdout) != out {
				t.Errorf("stdout %q, want the folder %s", r.Stdout, out)
			}
			for _, comp := range []string{"text_encoder", "vae_encoder", "vae_decoder", "unet"} {
				if !strings.Contains(r.Stderr, "wrote "+filepath.Join(out, comp, "model.onnx")+"\n") {
					t.Errorf("stderr does not say %s was written:\n%s", comp, r.Stderr)
				}
			}
			checkExportFolder(t, out)

			before := listTree(t, out)
			r = tf(t, d, "models", "export", model(t, name), "--out", out)
			checkErrorLine(t, r, "--out "+out, "already holds an export", "--force")
			if after := listTree(t, out); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("a refused export changed the folder: %v, was %v", after, before)
			}
			tfOK(t, d, "models", "export", model(t, name), "--out", out, "--force")
			checkExportFolder(t, out)

			if name != "tiny-sd21" {
				return
			}
			half := filepath.Join(d, "onnx-fp16")
			tfOK(t, d, "models", "export", model(t, name), "--out", half, "--dtype", "fp16")
			checkExportFolder(t, half)
			exp := fixture.Open(t, fixture.Expected(t, name, "unet.safetensors"))
			x, xs := exp.F32("a.sample")
			step, _ := exp.I64("a.timestep")
			e, es := exp.F32("a.encoder_hidden_states")
			want, _ := exp.F32("a.noise_pred")
			s, err := ort.NewSessionFromFile(filepath.Join(half, "unet", "model.onnx"), ort.SessionOptions{
				Inputs: []string{"sample", "timestep", "encoder_hidden_states"}, Outputs: []string{"out_sample"}, Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got := ortsession.RunF32(t, s, ort.New(xs, x), ort.New([]int64{1}, []float32{float32(step[0])}), ort.New(es, e))
			fixture.Close(t, "fp16 export unet, fed as the pipeline feeds it", got[0], want, 3e-2, 0)
		})
	}
}

// TestModelsInfo runs `models info` on a diffusers folder, as text and as
// JSON: the family, parameter counts and bytes (the sums over the weight
// files' tensors), and the self-attention layers with their token grids at
// a frame size whose latent sides are odd (each downsampler rounds up).
func TestModelsInfo(t *testing.T) {
	for _, tc := range []struct {
		name, family string
		width        int // unet/config.json cross_attention_dim
	}{{"tiny-sd15", "SD 1.x", 32}, {"tiny-sd21", "SD 2.x", 40}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := model(t, tc.name)
			info, _ := tfJSON[modelInfo](t, "", "models", "info", dir, "--size", "72x40", "--json")
			if info.Path != dir || info.Family != tc.family || info.CrossDim != tc.width || info.Frame != "72x40" || info.Latent != "9x5" {
				t.Errorf("info %+v; want path %s, family %s, width %d, frame 72x40, latent 9x5", info, dir, tc.family, tc.width)
			}
			for comp, file := range map[string]string{"unet": "unet/diffusion_pytorch_model.safetensors",
				"vae": "vae/diffusion_pytorch_model.safetensors", "text_encoder": "text_encoder/model.safetensors"} {
				f, err := safetensors.Open(filepath.Join(dir, file))
				if err != nil {
					t.Fatal(err)
				}
				var n, bytes int64
				for _, name := range f.Names() {
					ti, _ := f.Info(name)
					n += ti.NumElements()
					bytes += ti.Length
				}
				f.Close()
				if info.Components[comp] != n || info.Bytes[comp] != bytes {
					t.Errorf("%s: %d parameters, %d bytes; the weights hold %d, %d", comp, info.Components[comp], info.Bytes[comp], n, bytes)
				}
			}
			// 3 cross-attention levels of 2 down and 3 up layers, and the
			// mid block: 16 layers, as in SD 1.5 and 2.1. Latent 9x5, each
			// level halves rounding up: 9x5, 5x3, 3x2, and 2x1 in the mid.
			grids := map[string]string{}
			for _, l := range info.Layers {
				grids[l.Path] = fmt.Sprintf("%dx%d=%d", l.Height, l.Width, l.Tokens)
			}
			if len(info.Layers) != 16 {
				t.Errorf("%d self-attention layers, want 16: %v", len(info.Layers), grids)
			}
			for path, want := range map[string]string{
				"down_blocks.0.attentions.0.transformer_blocks.0.attn1": "5x9=45",
				"down_blocks.1.attentions.1.transformer_blocks.0.attn1": "3x5=15",
				"down_blocks.2.attentions.0.transformer_blocks.0.attn1": "2x3=6",
				"mid_block.attentions.0.transformer_blocks.0.attn1":     "1x2=2",
				"up_blocks.3.attentions.2.transformer_blocks.0.attn1":   "5x9=45",
			} {
				if grids[path] != want {
					t.Errorf("layer %s: %q, want %s", path, grids[path], want)
				}
			}

			r := tfOK(t, "", "models", "info", dir, "--size", "72x40")
			for _, want := range []string{"model       " + dir + "\n", "family      " + tc.family + "\n",
				"frame       72x40 (latent 9x5)\n", "mid_block.attentions.0.transformer_blocks.0.attn1"} {
				if !strings.Contains(r.Stdout, want) {
					t.Errorf("models info output lacks %q:\n%s", want, r.Stdout)
				}
			}
		})
	}
}

// hubRepo lays src out as the Hugging Face hub cache does under root:
// models--org--name/blobs/<sha256> holding the files,
// snapshots/<rev>/<path> relative links to them, and refs/main naming
// rev when main is true. It returns the snapshot folder.
func hubRepo(t *testing.T, root, id, rev, src string, main bool) string {
	t.Helper()
	repo := filepath.Join(root, "models--"+strings.ReplaceAll(id, "/", "--"))
	snap := filepath.Join(repo, "snapshots", rev)
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if strings.HasPrefix(rel, "expected") {
			return nil // the references are not part of the model
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		blob := filepath.Join(repo, "blobs", hex.EncodeToString(sum[:]))
		if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(blob, b, 0o644); err != nil {
			return err
		}
		link := filepath.Join(snap, rel)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		target, err := filepath.Rel(filepath.Dir(link), blob)
		if err != nil {
			return err
		}
		return os.Symlink(target, link)
	})
	if err != nil {
		t.Fatal(err)
	}
	if main {
		if err := os.MkdirAll(filepath.Join(repo, "refs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, "refs", "main"), []byte(rev), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// TestModelsFromHubCache finds a hub id in a Hugging Face cache folder
// built as the hub builds it, through $HF_HUB_CACHE, $HF_HOME/hub and
// ~/.cache/huggingface/hub in that order of precedence: the snapshot
// refs/main names is used even when another snapshot is there, `models
// info` names that snapshot, and `models export` from the hub id writes a
// folder of real files (the weights are links into blobs/) that loads.
// An id that is not in the cache is one error line naming where it looked.
func TestModelsFromHubCache(t *testing.T) {
	const id = "tokenflow-test/tiny-sd"
	d := t.TempDir()
	main := hubRepo(t, filepath.Join(d, "hub"), id, "4f2a9c0e1b7d", model(t, "tiny-sd15"), true)
	// A second, older snapshot of another model: refs/main decides.
	hubRepo(t, filepath.Join(d, "hub"), id, "0000000stale", model(t, "tiny-sd21"), false)
	// The same id under $HF_HOME/hub and the home cache, each another model.
	homeSnap := hubRepo(t, filepath.Join(d, "hfhome", "hub"), id, "aaaa", model(t, "tiny-sd21"), true)
	userSnap := hubRepo(t, filepath.Join(d, "user", ".cache", "huggingface", "hub"), id, "bbbb", model(t, "tiny-sd15"), true)

	run := func(env []string, args ...string) runResult {
		cmd := tfCommand(t, d, args...)
		cmd.Env = append(cmd.Env, env...)
		return runCmd(t, cmd)
	}
	home := "HOME=" + filepath.Join(d, "user")
	for _, tc := range []struct {
		name   string
		env    []string
		snap   string
		family string
	}{
		{"HF_HUB_CACHE", []string{"HF_HUB_CACHE=" + filepath.Join(d, "hub"), "HF_HOME=" + filepath.Join(d, "hfhome"), home}, main, "SD 1.x"},
		{"HF_HOME", []string{"HF_HUB_CACHE=", "HF_HOME=" + filepath.Join(d, "hfhome"), home}, homeSnap, "SD 2.x"},
		{"home cache", []string{"HF_HUB_CACHE=", "HF_HOME=", home}, userSnap, "SD 1.x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(tc.env, "models", "info", id, "--json")
			if r.Code != 0 {
				t.Fatalf("models info %s: %v", id, r)
			}
			var info modelInfo
			if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil {
				t.Fatalf("models info stdout: %v\n%v", err, r)
			}
			if info.Path != tc.snap || info.Family != tc.family {
				t.Errorf("models info %s: path %s, family %s; want %s, %s", id, info.Path, info.Family, tc.snap, tc.family)
			}
		})
	}

	t.Run("export", func(t *testing.T) {
		out := filepath.Join(d, "export")
		env := []string{"HF_HUB_CACHE=" + filepath.Join(d, "hub"), home}
		if r := run(env, "models", "export", id, "--out", out); r.Code != 0 {
			t.Fatalf("models export %s: %v", id, r)
		}
		checkExportFolder(t, out)
		// The UNet's weights are the blob's bytes, linked or copied.
		in, _, err := ort.ModelPorts(filepath.Join(out, "unet", "model.onnx"))
		if err != nil || len(in) != 3 {
			t.Errorf("exported unet from the hub cache: %v %v", in, err)
		}
	})

	t.Run("missing", func(t *testing.T) {
		r := run([]string{"HF_HUB_CACHE=" + filepath.Join(d, "hub"), "HF_HOME=", home}, "models", "info", "tokenflow-test/absent")
		checkErrorLine(t, r, "tokenflow-test/absent", filepath.Join(d, "hub", "models--tokenflow-test--absent"), "huggingface-cli download tokenflow-test/absent")
	})
}
