package models

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/testenv/ortsession"
)

// What diffusers' OnnxStableDiffusionPipeline does with an exported folder,
// read from its source (huggingface/diffusers, via the read_file tool; we
// cannot run Python diffusers here, so this test does what that code does):
//
//   - src/diffusers/pipelines/onnx_utils.py, OnnxRuntimeModel.from_pretrained
//     / _from_pretrained / load_model (commit 041bdfb1): each component is
//     ort.InferenceSession(<folder>/model.onnx) (ONNX_WEIGHTS_NAME); __call__
//     runs model.run(None, {name: np.array(value)}), so every declared input
//     must be given by name and all outputs come back in declared order.
//   - src/diffusers/pipelines/stable_diffusion/pipeline_onnx_stable_diffusion.py,
//     OnnxStableDiffusionPipeline.__call__ (commit 5738cdae):
//     text_encoder(input_ids=text_input_ids.astype(np.int32))[0] with
//     text_input_ids [batch, tokenizer.model_max_length] (77), once for the
//     prompt and once for the negative prompt; latents of
//     latents_dtype = text_embeddings.dtype (float32 here) and
//     unet(sample=concat([latents]*2) [2B,4,h,w], timestep=np.array([t]),
//     encoder_hidden_states=[2B,77,C])[0]; then the VAE decoder one image at
//     a time: vae_decoder(latent_sample=latents[i : i + 1])[0] ("a strange
//     result for using half-precision vae decoder if batchsize>1").
//   - The timestep's dtype: later versions read it from the model,
//     timestep_dtype = ORT_TO_NP_TYPE[type of the input named "timestep",
//     default "tensor(float)"], then np.array([t], dtype=timestep_dtype):
//     pipeline_onnx_stable_diffusion_img2img.py,
//     OnnxStableDiffusionImg2ImgPipeline.__call__ (commit 05e181cd), which
//     also feeds the VAE encoder: vae_encoder(sample=init_image)[0], init_image
//     float32 [B,3,H,W] in [-1,1].
//   - scripts/convert_stable_diffusion_checkpoint_to_onnx.py, convert_models
//     (commit ebe428f9): the same folder layout and I/O names
//     (text_encoder/model.onnx input_ids -> last_hidden_state, pooler_output;
//     unet/model.onnx sample, timestep (axis 0 dynamic), encoder_hidden_states
//     -> out_sample, weights as external data; vae_encoder/model.onnx sample
//     -> latent_sample; vae_decoder/model.onnx latent_sample -> sample).

// pipelinePorts are the inputs and outputs each exported graph must
// declare, in order: name, ORT type, rank (-1: any).
var pipelinePorts = map[string]struct{ in, out []portWant }{
	"text_encoder": {
		in:  []portWant{{InInputIDs, "tensor(int32)", 2}},
		out: []portWant{{OutHiddenState, "tensor(float)", 3}, {OutPoolerOutput, "tensor(float)", 2}},
	},
	"unet": {
		in:  []portWant{{InSample, "tensor(float)", 4}, {InTimestep, "tensor(float)", 1}, {InTextEmbeds, "tensor(float)", 3}},
		out: []portWant{{OutSample, "tensor(float)", 4}},
	},
	"vae_encoder": {
		in:  []portWant{{InImage, "tensor(float)", 4}},
		out: []portWant{{OutLatent, "tensor(float)", 4}},
	},
	"vae_decoder": {
		in:  []portWant{{InLatent, "tensor(float)", 4}},
		out: []portWant{{OutImage, "tensor(float)", 4}},
	},
}

type portWant struct {
	name, typ string
	rank      int
}

// exportBound is how far an exported graph fed as the pipeline feeds it may
// be from tokenflow's own graph fed as tokenflow feeds it. The exported
// graphs are the same nodes over the same weights; the only differences are
// the int32 -> int64 cast of the token ids and a float32 instead of an int64
// timestep, both exact for these values; so the results must agree to the
// bit.
const exportRel, exportAbs = 0, 0

// TestExportForOnnxPipeline exports each conformance model and feeds every
// exported graph, opened from its file by ONNX Runtime, exactly what
// diffusers' ONNX pipelines feed (see above). Each output is compared with
// tokenflow's own graph of the component run as tokenflow runs it
// (exportRel/exportAbs), and with diffusers' reference numbers for the
// model (the conformance tolerance compRel/compAbs of unet_test.go).
func TestExportForOnnxPipeline(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			testenv.ORT(t)
			c := openCheckpoint(t, fixture.Model(t, model))
			dir := t.TempDir()
			if err := Export(c, dir, ExportOptions{Type: onnx.Float, Producer: "tokenflow-test", Version: "0"}); err != nil {
				t.Fatal(err)
			}
			checkPipelineIndex(t, filepath.Join(dir, "model_index.json"), "PNDMScheduler")
			for _, f := range []string{"tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
				"tokenizer/special_tokens_map.json", "scheduler/scheduler_config.json"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("export lacks %s: %v", f, err)
				}
			}
			sessions := map[string]*pipelineModel{}
			for comp := range pipelinePorts {
				sessions[comp] = openPipelineModel(t, dir, comp)
			}

			t.Run("text_encoder", func(t *testing.T) {
				exp := fixture.Open(t, fixture.Expected(t, model, "text_encoder.safetensors"))
				ids, shape := exp.I64("input_ids")
				want, _ := exp.F32("last_hidden_state")
				own := textEncoderSession(t, c)
				S := int(shape[1])
				per := len(want) / int(shape[0])
				// One prompt per call, [1,77], as the pipeline encodes a
				// prompt and then its negative prompt.
				for i := 0; i < int(shape[0]); i++ {
					row := ids[i*S : (i+1)*S]
					ids32 := make([]int32, S)
					for j, v := range row {
						ids32[j] = int32(v)
					}
					got := sessions["text_encoder"].run(t, map[string]ort.Tensor{InInputIDs: ort.New([]int64{1, int64(S)}, ids32)})
					mine := runF32(t, own, ort.New([]int64{1, int64(S)}, row))
					fixture.Close(t, "exported last_hidden_state vs tokenflow's", got[0], mine[0], exportRel, exportAbs)
					fixture.Close(t, "exported pooler_output vs tokenflow's", got[1], mine[1], exportRel, exportAbs)
					fixture.Close(t, "exported last_hidden_state vs diffusers", got[0], want[i*per:(i+1)*per], compRel, compAbs)
				}
			})

			t.Run("unet", func(t *testing.T) {
				exp := fixture.Open(t, fixture.Expected(t, model, "unet.safetensors"))
				ts := openTokenFlow(t, model)
				u := sessions["unet"]
				for _, cs := range []string{"a", "b", "c"} {
					x, xs := exp.F32(cs + ".sample")
					step, _ := exp.I64(cs + ".timestep")
					e, es := exp.F32(cs + ".encoder_hidden_states")
					want, _ := exp.F32(cs + ".noise_pred")
					got := u.run(t, map[string]ort.Tensor{
						InSample:     ort.New(xs, x),
						InTimestep:   u.timestep(t, step[0]),
						InTextEmbeds: ort.New(es, e),
					})
					// tokenflow's run: its TokenFlow UNet in plain mode,
					// int64 scalar timestep, as internal/sd calls it.
					in := map[string]ort.Tensor{
						InSample: ort.New(xs, x), InTimestep: ort.Scalar(step[0]), InTextEmbeds: ort.New(es, e),
						InAttnMode: ort.New([]int64{1}, []int64{ModePlain}), InQKInject: ort.New([]int64{1}, []bool{false}),
						InConvInject: ort.New([]int64{1}, []bool{false}), InPivots: ort.New([]int64{2}, []int64{0, 0}),
						InPivotWeights: ort.New([]int64{0}, []float32{}),
					}
					for _, l := range ts.layers {
						in[InKeyTokens(l.Path)] = ort.New([]int64{0, 0, l.Channels}, []float32{})
						in[InKeyAttn(l.Path)] = ort.New([]int64{0, 0, l.Channels}, []float32{})
						in[InAnchorKeys(l.Path)] = ort.New([]int64{0, 0, l.Channels}, []float32{})
						in[InAnchorValues(l.Path)] = ort.New([]int64{0, 0, l.Channels}, []float32{})
					}
					mine := data(t, ts.run(t, in)[OutSample])
					fixture.Close(t, "exported unet case "+cs+" vs tokenflow's", got[0], mine, exportRel, exportAbs)
					fixture.Close(t, "exported unet case "+cs+" vs diffusers", got[0], want, compRel, compAbs)
				}
			})

			t.Run("vae", func(t *testing.T) {
				exp := fixture.Open(t, fixture.Expected(t, model, "vae.safetensors"))
				v := floatVAE(t, c)
				eg, err := v.EncoderGraph()
				if err != nil {
					t.Fatal(err)
				}
				dg, err := v.DecoderGraph()
				if err != nil {
					t.Fatal(err)
				}
				ownEnc := session(t, eg, []string{InImage}, []string{OutLatent})
				ownDec := session(t, dg, []string{InLatent}, []string{OutImage})

				// The encoder gets the whole batch of images, as img2img
				// passes init_image. tokenflow's encoder gives the
				// posterior mean (the conversion script's draws a sample
				// from the posterior; see README).
				x, xs := exp.F32("encode_input")
				mean, _ := exp.F32("encode_mean")
				got := sessions["vae_encoder"].run(t, map[string]ort.Tensor{InImage: ort.New(xs, x)})
				mine := runF32(t, ownEnc, ort.New(xs, x))
				fixture.Close(t, "exported vae_encoder vs tokenflow's", got[0], mine[0], exportRel, exportAbs)
				fixture.Close(t, "exported vae_encoder vs diffusers' posterior mean", got[0], mean, compRel, compAbs)

				// The decoder gets latents[i : i + 1], one image at a time.
				z, zs := exp.F32("decode_input")
				want, _ := exp.F32("decode_output")
				n := int(zs[0])
				zper, oper := len(z)/n, len(want)/n
				one := append([]int64{1}, zs[1:]...)
				for i := 0; i < n; i++ {
					zi := z[i*zper : (i+1)*zper]
					got := sessions["vae_decoder"].run(t, map[string]ort.Tensor{InLatent: ort.New(one, zi)})
					mine := runF32(t, ownDec, ort.New(one, zi))
					fixture.Close(t, "exported vae_decoder vs tokenflow's", got[0], mine[0], exportRel, exportAbs)
					fixture.Close(t, "exported vae_decoder vs diffusers", got[0], want[i*oper:(i+1)*oper], compRel, compAbs)
				}
			})
		})
	}
}

// pipelineModel is an exported graph opened from its file, as
// OnnxRuntimeModel does, with the ports ONNX Runtime reads from it.
type pipelineModel struct {
	s       *ort.Session
	in, out []ort.Port
}

// openPipelineModel opens dir/comp/model.onnx and checks its declared
// ports against pipelinePorts.
func openPipelineModel(t *testing.T, dir, comp string) *pipelineModel {
	t.Helper()
	path := filepath.Join(dir, comp, "model.onnx")
	in, out, err := ort.ModelPorts(path)
	if err != nil {
		t.Fatal(err)
	}
	want := pipelinePorts[comp]
	check := func(kind string, got []ort.Port, want []portWant) {
		if len(got) != len(want) {
			t.Errorf("%s %s: %+v, want %+v", comp, kind, got, want)
			return
		}
		for i, w := range want {
			g := got[i]
			if g.Name != w.name || g.Type != w.typ || (w.rank >= 0 && len(g.Dims) != w.rank) {
				t.Errorf("%s %s %d: %s %s %v, want %s %s of rank %d", comp, kind, i, g.Name, g.Type, g.Dims, w.name, w.typ, w.rank)
			}
		}
	}
	check("input", in, want.in)
	check("output", out, want.out)
	names := func(ps []ort.Port) []string {
		var s []string
		for _, p := range ps {
			s = append(s, p.Name)
		}
		return s
	}
	s, err := ort.NewSessionFromFile(path, ort.SessionOptions{Inputs: names(in), Outputs: names(out), Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &pipelineModel{s: s, in: in, out: out}
}

// run feeds the named inputs (all of them, as model.run(None, inputs) needs)
// and returns every output as float32s.
func (m *pipelineModel) run(t *testing.T, in map[string]ort.Tensor) [][]float32 {
	t.Helper()
	args := make([]ort.Tensor, len(m.in))
	for i, p := range m.in {
		v, ok := in[p.Name]
		if !ok {
			t.Fatalf("no value for declared input %s", p.Name)
		}
		args[i] = v
	}
	return ortsession.RunF32(t, m.s, args...)
}

// timestep is np.array([t], dtype=ORT_TO_NP_TYPE[declared type]): a
// one-element tensor of the type the model declares for "timestep".
func (m *pipelineModel) timestep(t *testing.T, step int64) ort.Tensor {
	t.Helper()
	for _, p := range m.in {
		if p.Name != InTimestep {
			continue
		}
		switch p.Type {
		case "tensor(float)":
			return ort.New([]int64{1}, []float32{float32(step)})
		case "tensor(double)":
			return ort.New([]int64{1}, []float64{float64(step)})
		case "tensor(int64)":
			return ort.New([]int64{1}, []int64{step})
		case "tensor(int32)":
			return ort.New([]int64{1}, []int32{int32(step)})
		}
		t.Fatalf("timestep declared %s", p.Type)
	}
	// diffusers' default when no input is named timestep.
	return ort.New([]int64{1}, []float32{float32(step)})
}

// checkPipelineIndex checks an exported model_index.json: what
// DiffusionPipeline.from_pretrained needs to build an
// OnnxStableDiffusionPipeline from the folder. Its __init__ takes
// vae_encoder, vae_decoder, text_encoder, tokenizer, unet, scheduler,
// safety_checker, feature_extractor and requires_safety_checker
// (pipeline_onnx_stable_diffusion_img2img.py's twin constructor, commit
// 05e181cd: _optional_components = ["safety_checker", "feature_extractor"]);
// pipeline_utils.py's from_pretrained drops [null, null] components
// (load_module) and passes None for optional ones; register_modules writes
// each component as [library, class name].
func checkPipelineIndex(t *testing.T, path, scheduler string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var index map[string]any
	if err := json.Unmarshal(b, &index); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	ortModel := []any{"diffusers", "OnnxRuntimeModel"}
	want := map[string]any{
		"_class_name":             "OnnxStableDiffusionPipeline",
		"vae_encoder":             ortModel,
		"vae_decoder":             ortModel,
		"text_encoder":            ortModel,
		"unet":                    ortModel,
		"tokenizer":               []any{"transformers", "CLIPTokenizer"},
		"scheduler":               []any{"diffusers", scheduler},
		"safety_checker":          []any{nil, nil},
		"feature_extractor":       []any{nil, nil},
		"requires_safety_checker": false,
	}
	for k, w := range want {
		if !reflect.DeepEqual(index[k], w) {
			t.Errorf("model_index.json %s = %#v, want %#v", k, index[k], w)
		}
	}
	if v, ok := index["_diffusers_version"].(string); !ok || v == "" {
		t.Errorf("model_index.json _diffusers_version = %#v, want a version", index["_diffusers_version"])
	}
	for k := range index {
		if _, ok := want[k]; !ok && k != "_diffusers_version" {
			t.Errorf("model_index.json has %s, which OnnxStableDiffusionPipeline does not take", k)
		}
	}
	// Every component folder it names holds model.onnx.
	for _, comp := range []string{"vae_encoder", "vae_decoder", "text_encoder", "unet"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), comp, "model.onnx")); err != nil {
			t.Errorf("model_index.json names %s, but: %v", comp, err)
		}
	}
}
