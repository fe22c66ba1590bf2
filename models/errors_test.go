package models

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// copyModel copies a tiny fixture model into a temporary folder to break.
func copyModel(t *testing.T, name string) string {
	t.Helper()
	src := fixture.Model(t, name)
	dst := filepath.Join(t.TempDir(), name)
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "expected" {
			return filepath.SkipDir
		}
		out := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(f, in)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// editJSON rewrites a config.json through f.
func editJSON(t *testing.T, path string, f func(map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// rewriteWeights rewrites a safetensors file, letting f change the tensors.
func rewriteWeights(t *testing.T, path string, f func([]safetensors.Tensor) []safetensors.Tensor) {
	t.Helper()
	in, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, name := range in.Names() {
		v, err := in.Float32(name)
		if err != nil {
			// position_ids (int64) and the like
			iv, err := in.Int64(name)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, safetensors.FromInt64(name, in.Tensor(name).Shape, iv))
			continue
		}
		ts = append(ts, safetensors.FromFloat32(name, in.Tensor(name).Shape, v))
	}
	in.Close()
	ts = f(ts)
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := safetensors.Write(out, ts, nil); err != nil {
		t.Fatal(err)
	}
}

// setVAEBlocks gives a VAE config n blocks of 32 channels each.
func setVAEBlocks(m map[string]any, n int) {
	var ch []int
	var down, up []string
	for range n {
		ch, down, up = append(ch, 32), append(down, "DownEncoderBlock2D"), append(up, "UpDecoderBlock2D")
	}
	m["block_out_channels"], m["down_block_types"], m["up_block_types"] = ch, down, up
}

// loadConfigs reads the configs sd.Open reads, before any weight file.
func loadConfigs(model string) error {
	c, err := OpenModel(model, OpenOptions{})
	if err != nil {
		return err
	}
	if _, err := c.UNetConfig(); err != nil {
		return err
	}
	_, err = c.VAEConfig()
	return err
}

// buildAll builds every graph of a checkpoint and returns the first error.
func buildAll(model string) error {
	c, err := OpenModel(model, OpenOptions{})
	if err != nil {
		return err
	}
	u, err := c.UNet(onnx.Float)
	if err != nil {
		return err
	}
	defer u.Weights.Close()
	if _, err := u.Graph(UNetGraphOptions{}); err != nil {
		return err
	}
	v, err := c.VAE(onnx.Float)
	if err != nil {
		return err
	}
	defer v.Weights.Close()
	if _, err := v.EncoderGraph(); err != nil {
		return err
	}
	te, err := c.TextEncoder(onnx.Float)
	if err != nil {
		return err
	}
	defer te.Weights.Close()
	_, err = te.Graph()
	return err
}

func TestBadCheckpoints(t *testing.T) {
	unetWeights := "unet/diffusion_pytorch_model.safetensors"
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string) string // returns the --model value
		want   []string                              // substrings of the one-line error
		is     error
	}{
		{"missing model folder", func(t *testing.T, dir string) string { return filepath.Join(dir, "nope") },
			[]string{"nope", "no such folder"}, ErrModelNotFound},
		{"missing hub id", func(t *testing.T, dir string) string {
			t.Setenv("HF_HUB_CACHE", dir)
			t.Setenv("HF_HOME", dir)
			return "someorg/some-model"
		}, []string{"someorg/some-model", "Hugging Face cache", "models--someorg--some-model"}, ErrModelNotFound},
		{"missing subfolder", func(t *testing.T, dir string) string {
			os.RemoveAll(filepath.Join(dir, "vae"))
			return dir
		}, []string{"missing subfolder vae/"}, nil},
		{"missing weight tensor", func(t *testing.T, dir string) string {
			rewriteWeights(t, filepath.Join(dir, unetWeights), func(ts []safetensors.Tensor) []safetensors.Tensor {
				var out []safetensors.Tensor
				for _, x := range ts {
					if x.Name != "mid_block.resnets.0.conv1.weight" {
						out = append(out, x)
					}
				}
				return out
			})
			return dir
		}, []string{unetWeights, `missing weight tensor "mid_block.resnets.0.conv1.weight"`}, nil},
		{"tensor of the wrong shape", func(t *testing.T, dir string) string {
			rewriteWeights(t, filepath.Join(dir, unetWeights), func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i, x := range ts {
					if x.Name == "conv_in.bias" {
						ts[i] = safetensors.FromFloat32(x.Name, []int64{8}, make([]float32, 8))
					}
				}
				return ts
			})
			return dir
		}, []string{unetWeights, `"conv_in.bias" has shape [8]`, "[16]"}, nil},
		{"truncated safetensors", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, unetWeights)
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()/2); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{unetWeights}, safetensors.ErrInvalid},
		{"corrupt config.json", func(t *testing.T, dir string) string {
			os.WriteFile(filepath.Join(dir, "unet", "config.json"), []byte(`{"block_out_channels": [16, 32,`), 0o644)
			return dir
		}, []string{"unet/config.json", "not a valid config.json"}, nil},
		{"config field of the wrong type", func(t *testing.T, dir string) string {
			editJSON(t, filepath.Join(dir, "unet", "config.json"), func(m map[string]any) { m["layers_per_block"] = "two" })
			return dir
		}, []string{"unet/config.json", "layers_per_block"}, nil},
		{"unsupported architecture", func(t *testing.T, dir string) string {
			editJSON(t, filepath.Join(dir, "unet", "config.json"), func(m map[string]any) { m["addition_embed_type"] = "text_time" })
			return dir
		}, []string{"unet/config.json", "addition_embed_type", "text_time"}, ErrUnsupported},
		{"transformer layers per block", func(t *testing.T, dir string) string {
			editJSON(t, filepath.Join(dir, "unet", "config.json"), func(m map[string]any) { m["transformer_layers_per_block"] = []int{1, 2, 10, 1} })
			return dir
		}, []string{"unet/config.json", "transformer_layers_per_block"}, ErrUnsupported},
		{"inconsistent head list", func(t *testing.T, dir string) string {
			editJSON(t, filepath.Join(dir, "unet", "config.json"), func(m map[string]any) { m["attention_head_dim"] = []int{2, 4} })
			return dir
		}, []string{"unet/config.json", "attention_head_dim: has 2 entries, block_out_channels has 4"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyModel(t, "tiny-sd15")
			checkErrorLine(t, buildAll(tc.break_(t, dir)), tc.is, tc.want...)
		})
	}
}

// TestGeometryRefusedAtLoad: a model whose geometry the pipeline cannot
// use (VAE scale factor, RGB, latent channels; depth or inpainting UNets)
// is refused when its configs are read, as sd.Open reads them, before any
// weight: one line naming the config file and field. (A real depth or
// inpainting checkpoint has weights that match its config, so nothing
// later would catch it before ONNX Runtime.)
func TestGeometryRefusedAtLoad(t *testing.T) {
	cases := []struct {
		name, config string // the config.json edited, and how
		edit         func(m map[string]any)
		want         []string
	}{
		{"VAE with 5 blocks", "vae", func(m map[string]any) { setVAEBlocks(m, 5) },
			[]string{"vae/config.json", "block_out_channels: has 5 entries", "scale factor of 8"}},
		{"VAE with 3 blocks", "vae", func(m map[string]any) { setVAEBlocks(m, 3) },
			[]string{"vae/config.json", "block_out_channels: has 3 entries", "scale factor of 8"}},
		{"VAE out_channels 1", "vae", func(m map[string]any) { m["out_channels"] = 1 },
			[]string{"vae/config.json", "out_channels: 1", "RGB"}},
		{"VAE latent_channels 8", "vae", func(m map[string]any) { m["latent_channels"] = 8 },
			[]string{"vae/config.json", "latent_channels: 8", "in_channels and out_channels"}},
		{"inpainting UNet", "unet", func(m map[string]any) { m["in_channels"] = 9 },
			[]string{"unet/config.json", "in_channels: 9 is an inpainting UNet", "in_channels 4"}},
		{"depth UNet", "unet", func(m map[string]any) { m["in_channels"] = 5 },
			[]string{"unet/config.json", "in_channels: 5 is a depth-conditioned UNet", "in_channels 4"}},
		{"UNet out_channels 8", "unet", func(m map[string]any) { m["out_channels"] = 8 },
			[]string{"unet/config.json", "out_channels: 8"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyModel(t, "tiny-sd15")
			editJSON(t, filepath.Join(dir, tc.config, "config.json"), tc.edit)
			checkErrorLine(t, loadConfigs(dir), ErrUnsupported, tc.want...)
		})
	}
}

// TestUNetOddLatent runs the UNet at a latent size that is neither square
// nor a multiple of 8: the upsamplers must resize to their skip's size.
func TestUNetOddLatent(t *testing.T) {
	_, g := unetGraph(t, openCheckpoint(t, fixture.Model(t, "tiny-sd21")))
	s := unetSession(t, g)
	for _, hw := range [][2]int64{{12, 8}, {9, 13}} {
		h, w := hw[0], hw[1]
		x := make([]float32, 2*4*h*w)
		for i := range x {
			x[i] = float32(i%17)/8 - 1
		}
		ctx := make([]float32, 2*77*40)
		for i := range ctx {
			ctx[i] = float32(i%13)/6 - 1
		}
		outs, err := s.Run(t.Context(), ort.New([]int64{2, 4, h, w}, x), ort.New([]int64{2}, []int64{501, 21}), ort.New([]int64{2, 77, 40}, ctx))
		if err != nil {
			t.Fatalf("%dx%d: %v", h, w, err)
		}
		if got, want := outs[0].Shape, []int64{2, 4, h, w}; !slices.Equal(got, want) {
			t.Fatalf("%dx%d: out shape %v, want %v", h, w, got, want)
		}
		d, _ := ort.Data[float32](outs[0])
		for i, v := range d {
			if v != v || v > 1e6 || v < -1e6 {
				t.Fatalf("%dx%d: out[%d] = %g", h, w, i, v)
			}
		}
	}
}

// checkErrorLine fails t unless err is an error of one line that mentions
// every one of want and, when is is not nil, is is.
func checkErrorLine(t *testing.T, err, is error, want ...string) {
	t.Helper()
	testenv.ErrorLine(t, err, want...)
	if is != nil && !errors.Is(err, is) {
		t.Errorf("error %q is not %v", err, is)
	}
}
