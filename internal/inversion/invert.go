// Package inversion is DDIM inversion and reconstruction of a batch of
// frames' latents (docs/ARCHITECTURE.md, "The inversion"): the math and the
// loop, driving the model through the Denoiser interface in host tensors.
// Where the frames come from and where the latents go (the cache) is the
// pipeline's business.
package inversion

import (
	"context"
	"fmt"

	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/tensor"
)

// Denoiser is the UNet as inversion uses it (sd.Model implements it):
// latents x [B,C,h,w] at timestep t with text states [B,77,C] -> the
// model's output [B,C,h,w]: the predicted noise, or v for a v-prediction
// model. The scheduler's prediction_type says which; its InvertStep and
// StepTo convert the output to eps and x0 (scheduler.DDIM.Epsilon).
type Denoiser interface {
	UNet(ctx context.Context, x tensor.Tensor, t int, text tensor.Tensor) (tensor.Tensor, error)
}

// Params configure an inversion; the pipeline has checked them (Steps,
// SaveSteps and BatchSize at least 1, the plan valid for the scheduler).
type Params struct {
	Steps     int // inversion steps (official default 500)
	SaveSteps int // the editing schedule's length (default 50)
	BatchSize int // frames per UNet call
	// Progress, when set, is told after each UNet call how many frame-steps
	// of total are done.
	Progress func(done, total int)
	// From is how many steps of the walk are already done (a resumed
	// inversion): Invert starts at step From from the latents after it.
	From int
}

// Sink takes the inversion's latents z of all frames after each completed
// step (0-based) of the walk, at timestep t; kept says whether t is one of
// the kept timesteps. z is the inversion's own, updated in place by the
// next step: the sink writes it out or copies it, it does not keep it. An
// error from the sink ends the inversion with that error.
type Sink func(ctx context.Context, step, t int, z tensor.Tensor, kept bool) error

// Invert DDIM-inverts z (the VAE latents of the frames, already scaled)
// with cond, the text states of the inversion prompt [1,77,C], used for
// every frame (the official preprocess.py), and hands z after every step
// to sink, which keeps the kept timesteps (every timestep of the editing
// schedule, and the last one):
//
//	walk the inversion timesteps ascending; at step i with timestep t,
//	a_t = alphas_cumprod[t], a_prev = alphas_cumprod[walk[i-1]] (final at i=0):
//	1. eps = unet(z, t, cond)  (v-prediction: sqrt(a_t) v + sqrt(1 - a_t) z)
//	2. x0  = (z - sqrt(1 - a_prev) eps) / sqrt(a_prev)
//	3. z   = sqrt(a_t) x0 + sqrt(1 - a_t) eps
//
// z is updated in place: only the current step's latents of all frames are
// held. With p.From > 0, z is the latents after that many steps and the
// walk continues from there; each step's arithmetic depends on z alone, so
// a resumed inversion gives the same latents, bit for bit.
//
// A step that gives NaN or infinite latents ends the inversion with a
// *tensor.NonFiniteError naming the step, its timestep and the frame.
func Invert(ctx context.Context, d Denoiser, s *scheduler.DDIM, z, cond tensor.Tensor, p Params, sink Sink) error {
	plan, err := s.PlanInversion(p.Steps, p.SaveSteps)
	if err != nil {
		return err
	}
	if p.From < 0 || p.From > len(plan.Walk) {
		return fmt.Errorf("inversion: resume at step %d of a %d-step walk", p.From, len(plan.Walk))
	}
	keep := map[int]bool{}
	for _, t := range plan.Kept {
		keep[t] = true
	}
	n := z.N()
	total, done := len(plan.Walk)*n, p.From*n
	for i := p.From; i < len(plan.Walk); i++ {
		t, prev := plan.Walk[i], plan.Prev(i)
		for _, b := range tensor.Batches(n, p.BatchSize) {
			x := z.Rows(b.Start, b.End)
			eps, err := d.UNet(ctx, x, t, cond.Repeat([]int{0}, []int{b.Len()}))
			if err != nil {
				return err
			}
			next, err := s.InvertStep(eps.Data, t, prev, x.Data)
			if err != nil {
				return err
			}
			copy(x.Data, next)
			// Cheap, on the host: a NaN would otherwise run through every
			// later step and into the cache.
			if err := tensor.CheckFinite(x, b.Start, "inversion", i, len(plan.Walk), t); err != nil {
				return err
			}
			done += b.Len()
			if p.Progress != nil {
				p.Progress(done, total)
			}
		}
		if err := sink(ctx, i, t, z, keep[t]); err != nil {
			return err
		}
	}
	return nil
}

// Reconstruct DDIM-samples back from the most inverted latent zT with the
// same prompt along the inversion's own walk, descending (preprocess.py's
// ddim_sample): how a user sees whether an edit can work on this video.
// Each step is diffusers' DDIMScheduler.step for the model's
// prediction_type (v: x0 = sqrt(a_t) x - sqrt(1 - a_t) v, eps = sqrt(a_t) v
// + sqrt(1 - a_t) x).
func Reconstruct(ctx context.Context, d Denoiser, s *scheduler.DDIM, zT, cond tensor.Tensor, p Params) (tensor.Tensor, error) {
	plan, err := s.PlanInversion(p.Steps, max(p.SaveSteps, 1))
	if err != nil {
		return tensor.Tensor{}, err
	}
	x := zT.Clone()
	n := x.N()
	total, done := len(plan.Walk)*n, 0
	for i := len(plan.Walk) - 1; i >= 0; i-- {
		t, prev := plan.Walk[i], plan.Prev(i)
		for _, b := range tensor.Batches(n, p.BatchSize) {
			xb := x.Rows(b.Start, b.End)
			eps, err := d.UNet(ctx, xb, t, cond.Repeat([]int{0}, []int{b.Len()}))
			if err != nil {
				return tensor.Tensor{}, err
			}
			next, err := s.StepTo(eps.Data, t, prev, xb.Data)
			if err != nil {
				return tensor.Tensor{}, err
			}
			copy(xb.Data, next)
			if err := tensor.CheckFinite(xb, b.Start, "reconstruction", len(plan.Walk)-1-i, len(plan.Walk), t); err != nil {
				return tensor.Tensor{}, err
			}
			done += b.Len()
			if p.Progress != nil {
				p.Progress(done, total)
			}
		}
	}
	return x, nil
}
