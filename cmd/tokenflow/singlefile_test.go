package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
)

// singleFile is a single-file fixture (testdata/conformance/single-file/)
// and its original inference YAML.
func singleFile(t *testing.T, name string) (file, yaml string) {
	return fixture.Path(t, "conformance", "single-file", name+".safetensors"),
		fixture.Path(t, "conformance", "single-file", name+".yaml")
}

// tfIn runs the binary with TOKENFLOW_CACHE set to cache (where single
// files are converted), failing unless it exits 0.
func tfIn(t *testing.T, dir, cache string, args ...string) runResult {
	t.Helper()
	cmd := tfCommand(t, dir, args...)
	cmd.Env = append(cmd.Env, "TOKENFLOW_CACHE="+cache) // the last one counts
	r := runCmd(t, cmd)
	if r.Code != 0 {
		t.Fatalf("tokenflow %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// TestSingleFileEndToEnd runs invert, edit, models info and models export
// from each single file with its YAML through the real binary. The
// inversion made from the single file is found again by an edit (the
// model's identity is stable), and the export equals, file for file, the
// export of the diffusers folder the single file was converted into.
func TestSingleFileEndToEnd(t *testing.T) {
	for _, name := range []string{"tiny-sd15-ldm", "tiny-sd21-ldm"} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			file, yaml := singleFile(t, name)
			cache := filepath.Join(d, "cache")
			model := []string{"--model", file, "--original-config", yaml}
			frames := fixtureFrames(t, "tiny-sd15")

			r := tfIn(t, d, cache, append(append([]string{"invert"}, model...), "--inversion-prompt", "a ball", "--frames", "4",
				"--size", "32x32", "--steps", "2", "--save-steps", "2", "--json", frames)...)
			var inv invertResult
			if err := json.Unmarshal([]byte(r.Stdout), &inv); err != nil {
				t.Fatalf("invert stdout: %v\n%v", err, r)
			}
			if inv.Reused || inv.UNetFrames <= 0 || inv.Frames != 4 {
				t.Errorf("invert: %+v; want a fresh inversion of 4 frames", inv)
			}
			if !strings.Contains(r.Stderr, "converting the unet of "+name+".safetensors") {
				t.Errorf("invert stderr does not say the UNet was converted:\n%s", r.Stderr)
			}

			out := filepath.Join(d, "out.mp4")
			r = tfIn(t, d, cache, append(append([]string{"edit"}, model...), "--prompt", "a red cube", "--inversion-prompt", "a ball",
				"--frames", "4", "--size", "32x32", "--steps", "2", "--inversion-steps", "2", "--batch-size", "4",
				"-o", out, "--json", frames)...)
			var ed editResult
			if err := json.Unmarshal([]byte(r.Stdout), &ed); err != nil {
				t.Fatalf("edit stdout: %v\n%v", err, r)
			}
			if !ed.InversionReused || ed.CacheDir != inv.CacheDir {
				t.Errorf("edit: inversion_reused %v, cache %s; want the invert's entry %s reused", ed.InversionReused, ed.CacheDir, inv.CacheDir)
			}
			if st, err := os.Stat(out); err != nil || st.Size() == 0 {
				t.Errorf("edit wrote no video: %v", err)
			}
			if streams := ffprobe(t, out); len(streams) == 0 || streams[0].Width != 32 || streams[0].Height != 32 {
				t.Errorf("edit output streams %+v, want 32x32 video", streams)
			}

			r = tfIn(t, d, cache, "models", "info", "--json", file, "--original-config", yaml)
			var info struct {
				Path   string `json:"path"`
				Family string `json:"family"`
			}
			if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil {
				t.Fatalf("models info stdout: %v\n%v", err, r)
			}
			wantFamily := map[string]string{"tiny-sd15-ldm": "SD 1.x", "tiny-sd21-ldm": "SD 2.x"}[name]
			if info.Path != file || info.Family != wantFamily {
				t.Errorf("models info: path %q family %q; want %q, %q", info.Path, info.Family, file, wantFamily)
			}

			exp1 := filepath.Join(d, "export-single")
			tfIn(t, d, cache, "models", "export", file, "--original-config", yaml, "--out", exp1)
			converted, err := filepath.Glob(filepath.Join(cache, "checkpoints", "*", "model_index.json"))
			if err != nil || len(converted) != 1 {
				t.Fatalf("converted folders %v (%v); want one", converted, err)
			}
			exp2 := filepath.Join(d, "export-folder")
			tfIn(t, d, cache, "models", "export", filepath.Dir(converted[0]), "--out", exp2)
			files1, files2 := listTree(t, exp1), listTree(t, exp2)
			if strings.Join(files1, " ") != strings.Join(files2, " ") {
				t.Fatalf("export of the single file has %v, of the folder %v", files1, files2)
			}
			for _, want := range []string{"text_encoder/model.onnx", "vae_encoder/model.onnx", "vae_decoder/model.onnx", "unet/model.onnx", "tokenizer/vocab.json", "scheduler/scheduler_config.json"} {
				if !strings.Contains(" "+strings.Join(files1, " ")+" ", " "+want+" ") {
					t.Errorf("export lacks %s: %v", want, files1)
				}
			}
			for _, f := range files1 {
				a, err1 := os.ReadFile(filepath.Join(exp1, f))
				b, err2 := os.ReadFile(filepath.Join(exp2, f))
				if err1 != nil || err2 != nil {
					continue // a folder
				}
				if !bytes.Equal(a, b) {
					t.Errorf("export %s differs between the single file and its diffusers folder", f)
				}
			}
		})
	}
}

// TestSingleFileErrors: bad single files give one error line each.
func TestSingleFileErrors(t *testing.T) {
	d := t.TempDir()
	file, yaml := singleFile(t, "tiny-sd15-ldm")
	src, y := fixture.Read(t, file), fixture.Read(t, yaml)
	write, fake := fixture.Writers(t, d)
	text := "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"not a checkpoint", []string{fake("notsd.safetensors", map[string][]int64{"foo.weight": {4, 4}})},
			[]string{"notsd.safetensors", "not a Stable Diffusion checkpoint"}},
		{"SDXL", []string{fake("sdxl.safetensors", map[string][]int64{"conditioner.embedders.0.model.token_embedding.weight": {49408, 64},
			"model.diffusion_model.input_blocks.0.0.weight": {32, 4, 3, 3}})},
			[]string{"sdxl.safetensors", "SDXL"}},
		{"inpainting", []string{fake("inpaint.safetensors", map[string][]int64{text: {49408, 64},
			"model.diffusion_model.input_blocks.0.0.weight": {32, 9, 3, 3}})},
			[]string{"inpaint.safetensors", "inpainting", "9 input channels"}},
		{"truncated", []string{write("cut.safetensors", src[:len(src)*2/3])}, []string{"cut.safetensors", "truncated"}},
		{"YAML disagrees", []string{write("tiny.safetensors", src), "--original-config",
			write("wrong.yaml", bytes.Replace(y, []byte("context_dim: 64"), []byte("context_dim: 768"), 1))},
			[]string{"wrong.yaml", "context_dim", "768", "64"}},
		{"YAML for a folder", []string{model(t, "tiny-sd15"), "--original-config", yaml}, []string{"--original-config", "single-file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tf(t, d, append([]string{"models", "info"}, tt.args...)...)
			t.Log(checkErrorLine(t, r, tt.want...))
		})
	}
}
