package edit_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/sdtest"
)

// fixtureInputs are the official run's own edit inputs, so that the edit
// is checked apart from encoding and inversion.
func fixtureInputs(t *testing.T, exp *fixture.File) edit.Inputs {
	z0, shape := exp.F32("edit.latents")
	in := edit.Inputs{Z0: sd.Latents{Shape: [4]int64{shape[0], shape[1], shape[2], shape[3]}, Data: z0}, Noisy: map[int][]float32{}}
	for _, name := range exp.Names() {
		var ts int
		if _, err := fmt.Sscanf(name, "preprocess.inverted_latents.t%04d", &ts); err == nil {
			in.Noisy[ts], _ = exp.F32(name)
		}
	}
	pg, _ := exp.F32("edit.pnp_guidance_embeds")
	te, _ := exp.F32("edit.text_embeds")
	row := func(d []float32) sd.TextEmbeds { return sd.TextEmbeds{N: 1, Seq: 77, Width: len(d) / 77, Data: d} }
	in.Source, in.Negative, in.Prompt = row(pg), row(te[:len(te)/2]), row(te[len(te)/2:])
	return in
}

var params = edit.Params{Steps: 10, Guidance: 7.5, PnPAttn: 0.5, PnPConv: 0.8, BatchSize: 4, Keyframes: keyframes.Middle}

// Tolerance: MANIFEST.md's float64 twin of the inv10 runs deviates by
// 1.4e-5..2.5e-5 relative per step; another float32 implementation adds
// about as much again, compounded over 10 steps. 1e-3 of max|ref| leaves
// a margin while still catching any real change (a wrong injection switch
// or pivot moves the latents by 1e-1 relative and more).
const stepRel = 1e-3

func TestEditConformanceEndToEnd(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			ctx := context.Background()
			p := sdtest.Open(t, model)
			exp := fixture.Open(t, fixture.Expected(t, model, "tokenflow_inv10", "tokenflow.safetensors"))
			e, err := edit.New(p, p.Scheduler, fixtureInputs(t, exp), params)
			if err != nil {
				t.Fatal(err)
			}
			kf, _ := exp.I64("edit.keyframes")
			for i := range e.Timesteps() {
				if got, want := e.Keyframes(i), kf[2*i:2*i+2]; got[0] != int(want[0]) || got[1] != int(want[1]) {
					t.Errorf("step %d keyframes %v, want %v", i, got, want)
				}
			}
			x, err := e.Start()
			if err != nil {
				t.Fatal(err)
			}
			want, _ := exp.F32("edit.noisy_latents_init")
			fixture.Close(t, "start latents", x.Data, want, 1e-6, 0)
			for i := range e.Timesteps() {
				if x, err = e.Step(ctx, i, x); err != nil {
					t.Fatal(err)
				}
				want, _ := exp.F32(fmt.Sprintf("edit.latents_after_step%d", i))
				fixture.Close(t, fmt.Sprintf("end to end, after step %d", i), x.Data, want, stepRel, 0)
			}
		})
	}
}

// TestEditConformanceStepwise runs each denoising step of the inv20 runs
// from the reference's own input latents (teacher forcing): in those runs a
// near-tie token match flips between float32 and float64 from step 0 on,
// which an end-to-end comparison would compound.
func TestEditConformanceStepwise(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			ctx := context.Background()
			p := sdtest.Open(t, model)
			exp := fixture.Open(t, fixture.Expected(t, model, "tokenflow_inv20", "tokenflow.safetensors"))
			e, err := edit.New(p, p.Scheduler, fixtureInputs(t, exp), params)
			if err != nil {
				t.Fatal(err)
			}
			for i := range e.Timesteps() {
				inName := "edit.noisy_latents_init"
				if i > 0 {
					inName = fmt.Sprintf("edit.latents_after_step%d", i-1)
				}
				in, shape := exp.F32(inName)
				x, err := e.Step(ctx, i, sd.Latents{Shape: [4]int64{shape[0], shape[1], shape[2], shape[3]}, Data: in})
				if err != nil {
					t.Fatal(err)
				}
				want, _ := exp.F32(fmt.Sprintf("edit.latents_after_step%d", i))
				fixture.Close(t, fmt.Sprintf("step %d from the reference's input", i), x.Data, want, stepRel, 0)
			}
		})
	}
}

func TestEditBadSettings(t *testing.T) {
	p := sdtest.Open(t, "tiny-sd15")
	exp := fixture.Open(t, fixture.Expected(t, "tiny-sd15", "tokenflow_inv10", "tokenflow.safetensors"))
	in := fixtureInputs(t, exp)
	for _, tc := range []struct {
		change func(*edit.Params)
		want   string
	}{
		{func(p *edit.Params) { p.Steps = 0 }, "--steps 0"},
		{func(p *edit.Params) { p.Steps = 20 }, "--save-steps 20"},
		{func(p *edit.Params) { p.BatchSize = 0 }, "--batch-size 0"},
		{func(p *edit.Params) { p.Guidance = -1 }, "--guidance -1"},
		{func(p *edit.Params) { p.PnPAttn = 1.5 }, "--pnp-attn"},
		{func(p *edit.Params) { p.PnPConv = -0.1 }, "--pnp-conv"},
	} {
		pp := params
		tc.change(&pp)
		_, err := edit.New(p, p.Scheduler, in, pp)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one naming %q", err, tc.want)
		}
	}
}
