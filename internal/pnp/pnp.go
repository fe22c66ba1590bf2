// Package pnp holds the Plug-and-Play injection schedules of a TokenFlow edit:
// at which timesteps, and in which UNet layers, the edited branches (uncond
// and cond) take features from the source branch.
//
// References: Tumanyan et al., "Plug-and-Play Diffusion Features for
// Text-Driven Image-to-Image Translation" (CVPR 2023), and the official
// TokenFlow code (omerbt/TokenFlow): run_tokenflow_pnp.py
// (TokenFlow.edit_video, TokenFlow.init_method) and tokenflow_utils.py
// (register_extended_attention_pnp, register_conv_injection, register_time).
//
// Notation:
//
//	ts        editing timesteps in sampling order (descending), from the
//	          DDIM scheduler's set_timesteps(T)
//	T         len(ts), the number of editing steps
//	a         pnp_attn_t (--pnp-attn), in [0, 1]
//	f         pnp_f_t (--pnp-conv), in [0, 1]
//	QKSteps   ts[:int(T*a)]: timesteps with query/key injection
//	ConvSteps ts[:int(T*f)]: timesteps with feature (conv) injection
//	t         the timestep being denoised
//
// Two kinds of injection:
//
//   - query/key: in the self-attention attn1 of the layers in QKLayers, the
//     uncond and cond branches use the source branch's queries and keys
//     (frame for frame); values stay their own. Keyframe pass only: the
//     propagation passes do not evaluate attn1.
//   - feature: in the resnet ConvLayers, the residual branch's output (after
//     conv2, before the shortcut is added) of uncond and cond is replaced by
//     the source branch's. Every pass, keyframe and propagation alike.
//
// The official code also injects whenever t == 1000, whatever the schedules
// say, and then in every attn1 of the UNet, not just those in QKLayers: each
// attn1 gets an injection schedule (empty outside QKLayers) and the test is
// "t in schedule or t == 1000". We inject at t == 1000 in the QKLayers only:
// t == 1000 does not occur, since only a 1000-step 'leading' schedule with
// steps_offset 1 reaches it, and that schedule also indexes
// alphas_cumprod[1000], one past the end of the 1000 training steps (the
// scheduler refuses it).
package pnp

import (
	"math"
	"slices"
)

// AlwaysOn is the timestep at which the official code injects regardless of
// the schedules.
const AlwaysOn = 1000

// QKLayers are the self-attention modules, by diffusers module path, whose
// queries and keys are injected at QKSteps: the decoder's transformer blocks
// except the first one at the lowest resolution (official res_dict
// {1: [1, 2], 2: [0, 1, 2], 3: [0, 1, 2]}, transformer_blocks[0] only).
var QKLayers = []string{
	"up_blocks.1.attentions.1.transformer_blocks.0.attn1",
	"up_blocks.1.attentions.2.transformer_blocks.0.attn1",
	"up_blocks.2.attentions.0.transformer_blocks.0.attn1",
	"up_blocks.2.attentions.1.transformer_blocks.0.attn1",
	"up_blocks.2.attentions.2.transformer_blocks.0.attn1",
	"up_blocks.3.attentions.0.transformer_blocks.0.attn1",
	"up_blocks.3.attentions.1.transformer_blocks.0.attn1",
	"up_blocks.3.attentions.2.transformer_blocks.0.attn1",
}

// ConvLayers are the resnet modules, by diffusers module path, whose conv2
// output is injected at ConvSteps (official: unet.up_blocks[1].resnets[1]).
var ConvLayers = []string{
	"up_blocks.1.resnets.1",
}

// Schedule says at which timesteps each injection is on.
type Schedule struct {
	// QKSteps are the timesteps with query/key injection: ts[:int(T*a)].
	QKSteps []int
	// ConvSteps are the timesteps with feature injection: ts[:int(T*f)].
	ConvSteps []int
}

// NewSchedule builds the injection schedule for the editing timesteps ts
// (in sampling order), attnT = pnp_attn_t and convT = pnp_f_t, each in
// [0, 1] (the caller validates them; values outside are clamped).
//
// Steps:
//  1. k_qk = int(T*a), k_conv = int(T*f): the product in float64, then
//     truncation toward zero, exactly as Python's int(n_timesteps * pnp_attn_t)
//     (so T=50, a=0.58 gives int(28.999999999999996) = 28).
//  2. QKSteps = ts[:k_qk], ConvSteps = ts[:k_conv] (copies).
func NewSchedule(ts []int, attnT, convT float64) Schedule {
	return Schedule{
		QKSteps:   append([]int{}, ts[:prefixLen(len(ts), attnT)]...),
		ConvSteps: append([]int{}, ts[:prefixLen(len(ts), convT)]...),
	}
}

// prefixLen is Python's int(T * x): float64 product, truncated, clamped to
// [0, T].
func prefixLen(T int, x float64) int {
	switch {
	case !(x >= 0):
		return 0
	case x >= 1:
		return T
	}
	return int(math.Trunc(float64(T) * x))
}

// Injection is which injections are on in one UNet pass.
type Injection struct {
	QK   bool // query/key injection in the QKLayers
	Conv bool // feature injection in the ConvLayers
}

// At is the injection at timestep t: query/key injection in the layers of
// QKLayers when t is in QKSteps, feature injection in the layers of
// ConvLayers when t is in ConvSteps, and both when t == 1000.
func (s Schedule) At(t int) Injection {
	return Injection{
		QK:   t == AlwaysOn || slices.Contains(s.QKSteps, t),
		Conv: t == AlwaysOn || slices.Contains(s.ConvSteps, t),
	}
}
