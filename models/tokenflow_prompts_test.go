package models

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/propagate"
)

// groupBatch stacks groups of n rows each into one batch tensor.
func groupBatch(shape []int64, groups ...[]float32) ort.Tensor {
	var v []float32
	for _, g := range groups {
		v = append(v, g...)
	}
	s := slices.Clone(shape)
	s[0] = int64(len(v) / (len(groups[0]) / int(shape[0])))
	return ort.New(s, v)
}

// group is group i of a batch of groups of equal size.
func group(v []float32, groups, i int) []float32 {
	n := len(v) / groups
	return v[i*n : (i+1)*n]
}

// TestTokenFlowGraphPrompts: one pass over two prompts, [source | uncond_1
// uncond_2 | cond_1 cond_2], gives each prompt's groups exactly what a
// pass of that prompt alone, [source | uncond | cond], gives: in the
// keyframe pass (noise, tokens, attention outputs) and in the propagation
// passes from either cache, with injection on and off. Every group is
// computed by the same nodes on the same values, and ONNX Runtime's CPU
// kernels compute each batch row on its own, so the results are equal bit
// for bit.
func TestTokenFlowGraphPrompts(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			ts := openTokenFlow(t, model)
			exp := fixture.Open(t, fixture.Expected(t, model, "tokenflow_inv10", "tokenflow.safetensors"))
			src, shape := exp.F32("preprocess.inverted_latents.t0901")
			x1, _ := exp.F32("edit.noisy_latents_init")
			r := rand.New(rand.NewPCG(11, uint64(len(model))))
			randn := func(n int) []float32 {
				v := make([]float32, n)
				for i := range v {
					v[i] = float32(r.NormFloat64())
				}
				return v
			}
			x2 := randn(len(x1))
			pg, _ := exp.F32("edit.pnp_guidance_embeds")
			te, _ := exp.F32("edit.text_embeds")
			neg, p1 := te[:len(te)/2], te[len(te)/2:]
			p2 := randn(len(p1))
			C := int64(len(pg) / 77)
			rep := func(row []float32, n int) []float32 {
				var v []float32
				for range n {
					v = append(v, row...)
				}
				return v
			}
			kf := []int{2, 6}
			plan, err := propagate.Plan(8, 4, kf)
			if err != nil {
				t.Fatal(err)
			}
			// pass runs one pass of mode over frames idx for the prompts'
			// latents and text (one or two prompts).
			pass := func(mode int64, inject bool, idx []int, xs, texts [][]float32, pv []int64, w []float32, cache map[string]ort.Tensor) map[string]ort.Tensor {
				s, fs := frames(src, shape, idx)
				lat := [][]float32{s}
				text := [][]float32{rep(pg, len(idx))}
				for range xs {
					text = append(text, rep(neg, len(idx)))
				}
				for i, x := range xs {
					f, _ := frames(x, shape, idx)
					lat = append(lat, f)
					text = append(text, rep(texts[i], len(idx)))
				}
				for _, x := range xs {
					f, _ := frames(x, shape, idx)
					lat = append(lat, f)
				}
				// lat is [source | x_1..x_P | x_1..x_P]: uncond and cond
				// groups take the same latents.
				in := map[string]ort.Tensor{
					InSample: groupBatch(fs, lat...), InTimestep: ort.Scalar(int64(901)),
					InTextEmbeds: groupBatch([]int64{int64(len(idx)), 77, C}, text...),
					InAttnMode:   ort.New([]int64{1}, []int64{mode}), InQKInject: ort.New([]int64{1}, []bool{inject}),
					InConvInject: ort.New([]int64{1}, []bool{inject}), InPivots: ort.New([]int64{2}, pv),
					InPivotWeights: ort.New([]int64{int64(len(w))}, w),
				}
				for _, l := range ts.layers {
					in[InKeyTokens(l.Path)] = ort.New([]int64{0, 1, l.Channels}, []float32{})
					in[InKeyAttn(l.Path)] = ort.New([]int64{0, 1, l.Channels}, []float32{})
					in[InAnchorKeys(l.Path)] = ort.New([]int64{0, 1, l.Channels}, []float32{})
					in[InAnchorValues(l.Path)] = ort.New([]int64{0, 1, l.Channels}, []float32{})
				}
				for name, v := range cache {
					in[name] = v
				}
				return ts.run(t, in)
			}
			exact := func(what string, got, want []float32) {
				t.Helper()
				fixture.Close(t, what, got, want, 0, 0)
			}
			for _, inject := range []bool{true, false} {
				xs, texts := [][]float32{x1, x2}, [][]float32{p1, p2}
				// the keyframe pass of two prompts gives K weights (its
				// groups' size); one prompt's gives none, as before.
				both := pass(ModeKeyframe, inject, kf, xs, texts, []int64{0, 0}, []float32{1, 1}, nil)
				single := make([]map[string]ort.Tensor, 2)
				for p := range 2 {
					single[p] = pass(ModeKeyframe, inject, kf, xs[p:p+1], texts[p:p+1], []int64{0, 0}, nil, nil)
					// [source | uncond_p | cond_p] of the pair is groups 0, 1+p, 3+p
					for _, name := range append([]string{OutSample}, outNames(ts.layers)...) {
						got, want := data(t, both[name]), data(t, single[p][name])
						if strings.HasPrefix(name, "tokens/") { // the source group's only
							exact(fmt.Sprintf("inject=%v prompt %d keyframe %s", inject, p+1, name), got, want)
							continue
						}
						for gi, g := range []int{0, 1 + p, 3 + p} {
							exact(fmt.Sprintf("inject=%v prompt %d keyframe %s group %d", inject, p+1, name, gi),
								group(got, 5, g), group(want, 3, gi))
						}
					}
				}
				cache := func(out map[string]ort.Tensor) map[string]ort.Tensor {
					c := map[string]ort.Tensor{}
					for _, l := range ts.layers {
						c[InKeyTokens(l.Path)] = out[OutTokens(l.Path)]
						c[InKeyAttn(l.Path)] = out[OutAttn(l.Path)]
					}
					return c
				}
				for b, pb := range plan {
					var idx []int
					for f := pb.Start; f < pb.End; f++ {
						idx = append(idx, f)
					}
					pv := []int64{int64(pb.PivotSlots[0]), int64(pb.PivotSlots[0])}
					if len(pb.PivotSlots) == 2 {
						pv[1] = int64(pb.PivotSlots[1])
					}
					got := data(t, pass(ModePropagate, inject, idx, xs, texts, pv, pb.Weights, cache(both))[OutSample])
					for p := range 2 {
						want := data(t, pass(ModePropagate, inject, idx, xs[p:p+1], texts[p:p+1], pv, pb.Weights, cache(single[p]))[OutSample])
						for gi, g := range []int{0, 1 + p, 3 + p} {
							exact(fmt.Sprintf("inject=%v prompt %d propagation batch %d group %d", inject, p+1, b, gi), group(got, 5, g), group(want, 3, gi))
						}
					}
				}
			}
		})
	}
}

func outNames(layers []Layer) []string {
	var names []string
	for _, l := range layers {
		names = append(names, OutTokens(l.Path), OutAttn(l.Path))
	}
	return names
}
