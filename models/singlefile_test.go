package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/param"
	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/scheduler"
)

// The single-file fixtures: testdata/conformance/single-file/ (its
// MANIFEST.md says how they were made).
var singleFiles = []string{"tiny-sd15-ldm", "tiny-sd21-ldm"}

func singlePath(t testing.TB, name, ext string) string {
	return fixture.Path(t, "conformance", "single-file", name+ext)
}

func singleExpected(t testing.TB, name, file string) string {
	return fixture.Path(t, "conformance", "single-file", name+".expected", file)
}

// openSingle opens a fixture single file with its YAML, converting it into
// a cache folder of the test's own.
func openSingle(t testing.TB, name string) *Checkpoint {
	t.Helper()
	c, err := OpenModel(singlePath(t, name, ".safetensors"), OpenOptions{OriginalConfig: singlePath(t, name, ".yaml"), CacheRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eachSingle runs f as a subtest on each single-file fixture, opened.
func eachSingle(t *testing.T, f func(t *testing.T, model string, c *Checkpoint)) {
	for _, model := range singleFiles {
		t.Run(model, func(t *testing.T) { f(t, model, openSingle(t, model)) })
	}
}

// TestSingleFileConformance: every component graph built from a single
// file reproduces diffusers' outputs with the same helper and tolerance
// (compRel, compAbs) as the folder-based conformance tests.
func TestSingleFileConformance(t *testing.T) {
	eachSingle(t, func(t *testing.T, model string, c *Checkpoint) {
		t.Run("text_encoder", func(t *testing.T) {
			s := textEncoderSession(t, c)
			exp := fixture.Open(t, singleExpected(t, model, "text_encoder.safetensors"))
			checkTextEncoder(t, s, exp, model, compRel, compAbs)
		})
		t.Run("vae", func(t *testing.T) {
			checkVAE(t, floatVAE(t, c), fixture.Open(t, singleExpected(t, model, "vae.safetensors")), model, compRel, compAbs)
		})
		t.Run("unet", func(t *testing.T) {
			_, g := unetGraph(t, c)
			// Converted weights stay external: the graph holds none
			// of them inline (protobuf's 2 GiB cap).
			for _, init := range g.Proto().Initializers {
				if strings.Contains(init.Name, ".") && init.External == nil {
					t.Errorf("weight %s is inlined in the graph; want external data", init.Name)
					break
				}
			}
			s := unetSession(t, g)
			exp := fixture.Open(t, singleExpected(t, model, "unet.safetensors"))
			for _, cs := range []string{"a", "b", "c"} {
				checkUNetCase(t, s, exp, model+" unet", cs, compRel, compAbs)
			}
		})
	})
}

// TestSingleFileTokenizer: the builtin tokenizer with the family's pad
// token gives the expected ids.
func TestSingleFileTokenizer(t *testing.T) {
	eachSingle(t, func(t *testing.T, model string, c *Checkpoint) {
		tok, err := c.Tokenizer()
		if err != nil {
			t.Fatal(err)
		}
		var pf struct {
			PadToken string `json:"pad_token"`
			Prompts  []struct {
				Prompt string `json:"prompt"`
			} `json:"prompts"`
		}
		b, err := os.ReadFile(singleExpected(t, model, "tokenizer_prompts.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &pf); err != nil {
			t.Fatal(err)
		}
		var prompts []string
		for _, p := range pf.Prompts {
			prompts = append(prompts, p.Prompt)
		}
		exp := fixture.Open(t, singleExpected(t, model, "tokenizer.safetensors"))
		want, shape := exp.I64("input_ids")
		if int(shape[0]) != len(prompts) {
			t.Fatalf("%d prompts, %d rows of ids", len(prompts), shape[0])
		}
		var got []int64
		for _, p := range prompts {
			row, _ := tok.Encode(p)
			got = append(got, row...)
		}
		if !reflect.DeepEqual(got, want) {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("ids differ first at [%d] (row %d, %q): got %d want %d", i, i/77, prompts[i/77], got[i], want[i])
				}
			}
		}
		wantPad := map[string]int64{"<|endoftext|>": 49407, "!": 0}[pf.PadToken]
		if tok.PadID() != wantPad {
			t.Errorf("pad id %d, want %d (%q)", tok.PadID(), wantPad, pf.PadToken)
		}
	})
}

// TestSingleFileScheduler: the scheduler from the YAML's schedule gives
// diffusers' DDIM timesteps and alphas.
func TestSingleFileScheduler(t *testing.T) {
	eachSingle(t, func(t *testing.T, model string, c *Checkpoint) {
		cfg, err := c.SchedulerConfig()
		if err != nil {
			t.Fatal(err)
		}
		s, err := scheduler.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		exp := fixture.Open(t, singleExpected(t, model, "scheduler.safetensors"))
		for _, n := range []int{10, 50} {
			want, _ := exp.I64("timesteps_" + itoa(n))
			got, err := s.Timesteps(n)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if int64(got[i]) != want[i] {
					t.Fatalf("timesteps(%d) = %v, want %v", n, got, want)
				}
			}
		}
		want, _ := exp.F32("alphas_cumprod")
		// float32 cumulative product in the same order: exact up to a
		// rounding or two.
		fixture.Close(t, model+" alphas_cumprod", s.AlphasCumprod(), want, 1e-6, 0)
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestSingleFileDetection: without the YAML, the tensors give the same
// diffusers configs as the YAML for SD 1.x (8 heads); for the tiny SD 2.x
// file, whose heads are 8 channels wide rather than SD 2's 64, everything
// but the heads is detected, and opening it is refused naming the heads
// and the original config.
func TestSingleFileDetection(t *testing.T) {
	for _, model := range singleFiles {
		t.Run(model, func(t *testing.T) {
			path := singlePath(t, model, ".safetensors")
			f, err := safetensors.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			v := tensorView{path: path, infos: map[string]safetensors.TensorInfo{}}
			for _, n := range f.Names() {
				v.infos[n] = f.Tensor(n)
			}
			det, err := detectArch(v)
			if err != nil {
				t.Fatal(err)
			}
			withYAML, _ := detectArch(v)
			doc, err := readYAML(singlePath(t, model, ".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := applyYAML(withYAML, doc, path); err != nil {
				t.Fatal(err)
			}
			if det.SD2 != (model == "tiny-sd21-ldm") {
				t.Errorf("SD2 = %v for %s", det.SD2, model)
			}
			if !det.SD2 {
				a, err := det.diffusersConfigs(path)
				if err != nil {
					t.Fatal(err)
				}
				b, err := withYAML.diffusersConfigs(path)
				if err != nil {
					t.Fatal(err)
				}
				ja, _ := json.MarshalIndent(a, "", " ")
				jb, _ := json.MarshalIndent(b, "", " ")
				if string(ja) != string(jb) {
					t.Errorf("configs detected from the tensors differ from the YAML's:\n-yaml\n%s\n+detected\n%s", jb, ja)
				}
				return
			}
			// Everything but the heads agrees.
			d2 := *det
			d2.NumHeads, d2.NumHeadChannels = withYAML.NumHeads, withYAML.NumHeadChannels
			if !reflect.DeepEqual(&d2, withYAML) {
				t.Errorf("detected %+v\nwant (YAML) %+v", d2, *withYAML)
			}
			_, err = OpenModel(path, OpenOptions{CacheRoot: t.TempDir()})
			var pe *param.Error
			if !errors.Is(err, ErrArchitecture) || !errors.As(err, &pe) || pe.Name != "model" || pe.Value != path ||
				!strings.Contains(pe.Reason, "{original_config}") || !strings.Contains(pe.Reason, "heads") {
				t.Errorf("open without YAML: %#v; want ErrArchitecture about the model, naming the heads and {original_config}", err)
			}
		})
	}
}

// TestSingleFileSD1WithoutYAML: the SD 1.x file opens without its YAML
// and its UNet reproduces diffusers (its architecture is all in the
// tensors).
func TestSingleFileSD1WithoutYAML(t *testing.T) {
	model := "tiny-sd15-ldm"
	c, err := OpenModel(singlePath(t, model, ".safetensors"), OpenOptions{CacheRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, g := unetGraph(t, c)
	exp := fixture.Open(t, singleExpected(t, model, "unet.safetensors"))
	checkUNetCase(t, unetSession(t, g), exp, model+" unet (no YAML)", "a", compRel, compAbs)
}

// TestSingleFileIdentity: the identity follows the content, not the path;
// the cache folder is reused.
func TestSingleFileIdentity(t *testing.T) {
	root := t.TempDir()
	src := singlePath(t, "tiny-sd15-ldm", ".safetensors")
	open := func(p string) *Checkpoint {
		c, err := OpenModel(p, OpenOptions{OriginalConfig: singlePath(t, "tiny-sd15-ldm", ".yaml"), CacheRoot: root})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := open(src)
	idA, err := a.Identity("")
	if err != nil {
		t.Fatal(err)
	}
	if b := open(src); b.Dir != a.Dir {
		t.Errorf("second open: cache folder %s, first %s", b.Dir, a.Dir)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy.safetensors")
	if err := os.WriteFile(cp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if id, _ := open(cp).Identity(""); id != idA {
		t.Errorf("a copy of the file has identity %s, the original %s", id, idA)
	}
	// One weight changed, same header: another identity.
	data[len(data)-1] ^= 0x40
	changed := filepath.Join(t.TempDir(), "changed.safetensors")
	if err := os.WriteFile(changed, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if id, _ := open(changed).Identity(""); id == idA {
		t.Errorf("a file with other weights has the same identity %s", id)
	}
	if other, _ := openSingle(t, "tiny-sd21-ldm").Identity(""); other == idA {
		t.Errorf("SD 1.x and SD 2.x files share identity %s", idA)
	}
}

// TestSingleFileBadFiles: each bad single file is refused with one line
// saying what is wrong.
func TestSingleFileBadFiles(t *testing.T) {
	src := fixture.Read(t, singlePath(t, "tiny-sd15-ldm", ".safetensors"))
	yamlText := fixture.Read(t, singlePath(t, "tiny-sd15-ldm", ".yaml"))
	d := t.TempDir()
	write, fake := fixture.Writers(t, d)
	textEnc := map[string][]int64{"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": {49408, 64}}
	withText := func(m map[string][]int64) map[string][]int64 {
		for k, v := range textEnc {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		file    string
		yaml    string
		is      error
		wantAll []string
		setting string // the *param.Error's Name; "" for none
	}{
		{"not a checkpoint", fake("lora.safetensors", map[string][]int64{"lora_unet_down_blocks_0.alpha": {}, "foo.weight": {4, 4}}),
			"", nil, []string{"lora.safetensors", "not a Stable Diffusion checkpoint", "model.diffusion_model."}, ""},
		{"SDXL", fake("sdxl.safetensors", map[string][]int64{
			"conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": {49408, 64},
			"model.diffusion_model.input_blocks.0.0.weight":                                    {32, 4, 3, 3},
			"model.diffusion_model.label_emb.0.0.weight":                                       {128, 2816},
		}), "", ErrUnsupported, []string{"sdxl.safetensors", "SDXL", "conditioner.embedders"}, ""},
		{"inpainting", fake("inpaint.safetensors", withText(map[string][]int64{
			"model.diffusion_model.input_blocks.0.0.weight": {32, 9, 3, 3},
		})), "", ErrUnsupported, []string{"inpaint.safetensors", "inpainting", "9 input channels"}, ""},
		{"missing", filepath.Join(d, "gone.safetensors"), "", ErrModelNotFound, []string{"gone.safetensors", "no such file"}, "model"},
		{"truncated", write("truncated.safetensors", src[:len(src)/2]), "", safetensors.ErrInvalid, []string{"truncated.safetensors"}, "model"},
		{"YAML disagrees", write("tiny.safetensors", src),
			write("bad.yaml", bytes.Replace(yamlText, []byte("model_channels: 32"), []byte("model_channels: 64"), 1)),
			nil, []string{"bad.yaml", "model.params.unet_config.params.model_channels", "64", "32"}, "original_config"},
		{"YAML of the other family", write("tiny2.safetensors", src), singlePath(t, "tiny-sd21-ldm", ".yaml"),
			nil, []string{"cond_stage_config.target", "FrozenOpenCLIPEmbedder", "CLIP"}, "original_config"},
		{"no UNet", fake("vae-only.safetensors", withText(map[string][]int64{"first_stage_model.encoder.conv_in.weight": {32, 3, 3, 3}})),
			"", ErrArchitecture, []string{"vae-only.safetensors", "UNet", "model.diffusion_model.input_blocks.0.0.weight"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenModel(tt.file, OpenOptions{OriginalConfig: tt.yaml, CacheRoot: t.TempDir()})
			checkErrorLine(t, err, tt.is, tt.wantAll...)
			var pe *param.Error
			if errors.As(err, &pe) != (tt.setting != "") || pe != nil && pe.Name != tt.setting {
				t.Errorf("error %#v: want a *param.Error for %q", err, tt.setting)
			}
			t.Log(err)
		})
	}
}

// TestSingleFileEMA: a file with EMA copies converts the EMA weights for
// the UNet and says so.
func TestSingleFileEMA(t *testing.T) {
	write, _ := fixture.Writers(t, t.TempDir())
	path := write("ema.safetensors", fixture.Read(t, singlePath(t, "tiny-sd15-ldm", ".safetensors")))
	const convIn = "model.diffusion_model.input_blocks.0.0.weight"
	var orig []float32
	rewriteWeights(t, path, func(ts []safetensors.Tensor) []safetensors.Tensor {
		in, err := safetensors.Open(singlePath(t, "tiny-sd15-ldm", ".safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		for _, name := range in.Names() {
			if !strings.HasPrefix(name, ldmUNet+".") {
				continue
			}
			v, err := in.Float32(name)
			if err != nil {
				t.Fatal(err)
			}
			if name == convIn {
				orig = v
			}
			half := make([]float32, len(v))
			for i, x := range v {
				half[i] = x / 2
			}
			flat := "model_ema." + strings.ReplaceAll(strings.TrimPrefix(name, "model."), ".", "")
			ts = append(ts, safetensors.FromFloat32(flat, in.Tensor(name).Shape, half))
		}
		return append(ts, safetensors.FromFloat32("model_ema.decay", nil, []float32{0.9999}))
	})
	var log bytes.Buffer
	c, err := OpenModel(path, OpenOptions{OriginalConfig: singlePath(t, "tiny-sd15-ldm", ".yaml"), CacheRoot: t.TempDir(), Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	files, err := c.WeightFiles("unet")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "EMA") {
		t.Errorf("log %q does not mention the EMA weights", log.String())
	}
	f := fixture.Open(t, files[0])
	got, _ := f.F32("conv_in.weight")
	for i := range got {
		if got[i] != orig[i]/2 {
			t.Fatalf("conv_in.weight[%d] = %g, want the EMA copy's %g (the plain weight is %g)", i, got[i], orig[i]/2, orig[i])
		}
	}
	for _, n := range f.Names() {
		if strings.HasPrefix(n, "model_ema") || strings.Contains(n, "diffusion_model") {
			t.Errorf("converted UNet holds %s", n)
		}
	}
}
