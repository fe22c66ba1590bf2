package models

import (
	"fmt"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/pnp"
	"github.com/tokenflow/tokenflow/internal/propagate"
	"github.com/tokenflow/tokenflow/internal/testenv/ortsession"
)

// tfSession opens the TokenFlow UNet with all its inputs and outputs.
type tfSession struct {
	s       *ort.Session
	inputs  []string
	outputs []string
	layers  []Layer
}

func openTokenFlow(t *testing.T, model string) *tfSession {
	t.Helper()
	u, err := openCheckpoint(t, fixture.Model(t, model)).UNet(onnx.Float)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Weights.Close() })
	g, err := u.TokenFlowGraph(Injection{QK: pnp.QKLayers, Conv: pnp.ConvLayers})
	if err != nil {
		t.Fatal(err)
	}
	ts := &tfSession{layers: u.Config.SelfAttentionLayers()}
	ts.inputs, ts.outputs = ortsession.Ports(g)
	ts.s = session(t, g, ts.inputs, ts.outputs)
	return ts
}

func (ts *tfSession) run(t *testing.T, in map[string]ort.Tensor) map[string]ort.Tensor {
	t.Helper()
	return ortsession.RunNamed(t, ts.s, ts.inputs, ts.outputs, in)
}

// passInputs are the TokenFlow UNet's inputs for one pass: sample,
// timestep and text states, the attention mode, one switch for both
// injections, the pivots and their weights, and every layer's cached
// keyframe tokens and attention inputs empty ([0, keyRows, channels]).
func (ts *tfSession) passInputs(sample, timestep, text ort.Tensor, mode int64, inject bool, pivots []int64, w []float32, keyRows int64) map[string]ort.Tensor {
	in := map[string]ort.Tensor{
		InSample: sample, InTimestep: timestep, InTextEmbeds: text,
		InAttnMode: ort.New([]int64{1}, []int64{mode}), InQKInject: ort.New([]int64{1}, []bool{inject}),
		InConvInject: ort.New([]int64{1}, []bool{inject}), InPivots: ort.New([]int64{2}, pivots),
		InPivotWeights: ort.New([]int64{int64(len(w))}, w),
	}
	for _, l := range ts.layers {
		in[InKeyTokens(l.Path)] = ort.New([]int64{0, keyRows, l.Channels}, []float32{})
		in[InKeyAttn(l.Path)] = ort.New([]int64{0, keyRows, l.Channels}, []float32{})
		in[InAnchorKeys(l.Path)] = ort.New([]int64{0, keyRows, l.Channels}, []float32{})
		in[InAnchorValues(l.Path)] = ort.New([]int64{0, keyRows, l.Channels}, []float32{})
	}
	return in
}

func data(t *testing.T, x ort.Tensor) []float32 {
	t.Helper()
	return ortsession.Data[float32](t, x)
}

// frames picks frames idx of a [N,...] tensor.
func frames(v []float32, shape []int64, idx []int) ([]float32, []int64) {
	n := len(v) / int(shape[0])
	var out []float32
	for _, i := range idx {
		out = append(out, v[i*n:(i+1)*n]...)
	}
	s := append([]int64{int64(len(idx))}, shape[1:]...)
	return out, s
}

// Step0Batch builds the UNet inputs of one pass of the official run at
// step 0: latents [inverted z_t | x | x] of frames idx, text [source |
// negative | prompt] each repeated len(idx) times. It is exported for the
// external tests (nn_test.go).
func Step0Batch(t *testing.T, exp *fixture.File, idx []int) (ort.Tensor, ort.Tensor) {
	src, shape := exp.F32("preprocess.inverted_latents.t0901")
	x, _ := exp.F32("edit.noisy_latents_init")
	a, s := frames(src, shape, idx)
	b, _ := frames(x, shape, idx)
	lat := append(append(append([]float32(nil), a...), b...), b...)
	s[0] *= 3
	pg, _ := exp.F32("edit.pnp_guidance_embeds")
	te, _ := exp.F32("edit.text_embeds")
	half := len(te) / 2
	var text []float32
	for _, part := range [][]float32{pg, te[:half], te[half:]} {
		for range idx {
			text = append(text, part...)
		}
	}
	C := int64(len(pg) / 77)
	return ort.New(s, lat), ort.New([]int64{int64(3 * len(idx)), 77, C}, text)
}

// TestTokenFlowGraphStep0 checks the TokenFlow UNet against the official
// run's step-0 dump: the keyframe pass's tokens and attention outputs
// layer by layer, then every propagation pass's noise prediction. Step 0
// has no near-tie token matches in the fixture (MANIFEST.md: 0 indices
// differ between float32 and float64), so it is compared whole.
func TestTokenFlowGraphStep0(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			ts := openTokenFlow(t, model)
			exp := fixture.Open(t, fixture.Expected(t, model, "tokenflow_inv10", "tokenflow.safetensors"))
			lay := fixture.Open(t, fixture.Expected(t, model, "tokenflow_inv10", "layers.safetensors"))
			kf := []int{2, 6}
			sample, text := Step0Batch(t, exp, kf)
			in := ts.passInputs(sample, ort.Scalar(int64(901)), text, ModeKeyframe, true, []int64{0, 0}, []float32{}, 1)
			out := ts.run(t, in)
			// The attention outputs of the keyframe pass feed every later
			// pass: the reference's own float64 twin is at ~1e-5 relative.
			const rel = 1e-4
			for _, l := range ts.layers {
				block := l.Path[:len(l.Path)-len(".attn1")]
				wantTok, _ := lay.F32("step0.pivot." + block + ".norm1")
				fixture.Close(t, "keyframe tokens "+block, data(t, out[OutTokens(l.Path)]), wantTok[:len(wantTok)/3], rel, 0)
				wantAttn, _ := lay.F32("step0.pivot." + block + ".attn1")
				fixture.Close(t, "keyframe attn1 "+block, data(t, out[OutAttn(l.Path)]), wantAttn, rel, 0)
			}
			wantNoise, _ := lay.F32("step0.pivot.unet.noise_pred")
			fixture.Close(t, "keyframe pass noise", data(t, out[OutSample]), wantNoise, rel, 0)

			// Propagation passes over the batches [0..3], [4..7].
			plan, err := propagate.Plan(8, 4, kf)
			if err != nil {
				t.Fatal(err)
			}
			for b, pb := range plan {
				idx := []int{}
				for f := pb.Start; f < pb.End; f++ {
					idx = append(idx, f)
				}
				sample, text := Step0Batch(t, exp, idx)
				pv := []int64{int64(pb.PivotSlots[0]), int64(pb.PivotSlots[0])}
				if len(pb.PivotSlots) == 2 {
					pv[1] = int64(pb.PivotSlots[1])
				}
				pin := ts.passInputs(sample, ort.Scalar(int64(901)), text, ModePropagate, true, pv, pb.Weights, 1)
				for _, l := range ts.layers {
					pin[InKeyTokens(l.Path)] = out[OutTokens(l.Path)]
					pin[InKeyAttn(l.Path)] = out[OutAttn(l.Path)]
					pin[InAnchorKeys(l.Path)] = ort.New([]int64{0, 1, l.Channels}, []float32{})
					pin[InAnchorValues(l.Path)] = ort.New([]int64{0, 1, l.Channels}, []float32{})
				}
				pout := ts.run(t, pin)
				want, _ := lay.F32(fmt.Sprintf("step0.batch%d.unet.noise_pred", b))
				fixture.Close(t, fmt.Sprintf("propagation pass %d noise", b), data(t, pout[OutSample]), want, rel, 0)
			}

			// Plain mode is the ordinary UNet.
			uexp := fixture.Open(t, fixture.Expected(t, model, "unet.safetensors"))
			x, xs := uexp.F32("a.sample")
			tt, _ := uexp.I64("a.timestep")
			e, es := uexp.F32("a.encoder_hidden_states")
			in[InSample], in[InTimestep], in[InTextEmbeds] = ort.New(xs, x), ort.Scalar(tt[0]), ort.New(es, e)
			in[InAttnMode] = ort.New([]int64{1}, []int64{ModePlain})
			in[InQKInject], in[InConvInject] = ort.New([]int64{1}, []bool{false}), ort.New([]int64{1}, []bool{false})
			want, _ := uexp.F32("a.noise_pred")
			fixture.Close(t, "plain mode", data(t, ts.run(t, in)[OutSample]), want, compRel, compAbs)
		})
	}
}
