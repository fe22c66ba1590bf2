// Package inversion turns a clip into the noisy latents a TokenFlow edit
// starts from and is guided by: VAE encoding, DDIM inversion with the
// inversion prompt, the optional DDIM reconstruction, and the on-disk cache
// that lets many edits share one inversion.
package inversion

import (
	"context"
	"fmt"

	"github.com/tokenflow/tokenflow/internal/scheduler"
	"github.com/tokenflow/tokenflow/internal/sd"
)

// Denoiser is the UNet as inversion uses it (sd.Pipeline; tests may count
// its calls).
type Denoiser interface {
	UNet(ctx context.Context, x sd.Latents, t int, text sd.TextEmbeds) (sd.Latents, error)
}

// Params configure an inversion.
type Params struct {
	Steps     int // inversion steps (official default 500)
	SaveSteps int // the editing schedule's length (default 50)
	BatchSize int // frames per UNet call
	// Progress, when set, is told after each UNet call how many frame-steps
	// of total are done.
	Progress func(done, total int)
}

// Invert DDIM-inverts z0 (the VAE latents of the clip, already scaled) with
// cond, the text states of the inversion prompt [1,77,C], used for every
// frame (DESIGN.md section 4, TokenFlow's preprocess.py):
//
//	walk the inversion timesteps ascending; at step i with timestep t,
//	a_t = alphas_cumprod[t], a_prev = alphas_cumprod[walk[i-1]] (final at i=0):
//	1. eps = unet(z, t, cond)
//	2. x0  = (z - sqrt(1 - a_prev) eps) / sqrt(a_prev)
//	3. z   = sqrt(a_t) x0 + sqrt(1 - a_t) eps
//
// and keeps z after every timestep of the editing schedule and after the
// last one.
func Invert(ctx context.Context, d Denoiser, s *scheduler.DDIM, z0 sd.Latents, cond sd.TextEmbeds, p Params) (*Latents, error) {
	plan, err := s.PlanInversion(p.Steps, p.SaveSteps)
	if err != nil {
		return nil, err
	}
	if p.BatchSize < 1 {
		return nil, fmt.Errorf("--batch-size %d: must be at least 1", p.BatchSize)
	}
	n := int(z0.Shape[0])
	keep := map[int]bool{}
	for _, t := range plan.Kept {
		keep[t] = true
	}
	out := &Latents{Shape: z0.Shape, Z0: append([]float32(nil), z0.Data...), Noisy: map[int][]float32{}}
	z := sd.Latents{Shape: z0.Shape, Data: append([]float32(nil), z0.Data...)}
	total, done := len(plan.Walk)*n, 0
	for i, t := range plan.Walk {
		prev := plan.Prev(i)
		for start := 0; start < n; start += p.BatchSize {
			end := min(start+p.BatchSize, n)
			x := z.Range(start, end)
			eps, err := d.UNet(ctx, x, t, cond.Repeat([]int{0}, []int{end - start}))
			if err != nil {
				return nil, err
			}
			next, err := s.InvertStep(eps.Data, t, prev, x.Data)
			if err != nil {
				return nil, err
			}
			copy(x.Data, next)
			done += end - start
			if p.Progress != nil {
				p.Progress(done, total)
			}
		}
		if keep[t] {
			out.Noisy[t] = append([]float32(nil), z.Data...)
		}
	}
	return out, nil
}

// Reconstruct DDIM-samples back from the most inverted latent zT with the
// same prompt over the inversion's own schedule (preprocess.py's
// ddim_sample): how a user sees whether an edit can work on this clip.
func Reconstruct(ctx context.Context, d Denoiser, s *scheduler.DDIM, zT sd.Latents, cond sd.TextEmbeds, p Params) (sd.Latents, error) {
	sched, err := s.Schedule(p.Steps)
	if err != nil {
		return sd.Latents{}, err
	}
	n := int(zT.Shape[0])
	x := sd.Latents{Shape: zT.Shape, Data: append([]float32(nil), zT.Data...)}
	ts := sched.Timesteps()
	total, done := len(ts)*n, 0
	for _, t := range ts {
		for start := 0; start < n; start += p.BatchSize {
			end := min(start+p.BatchSize, n)
			b := x.Range(start, end)
			eps, err := d.UNet(ctx, b, t, cond.Repeat([]int{0}, []int{end - start}))
			if err != nil {
				return sd.Latents{}, err
			}
			next, err := sched.Step(eps.Data, t, b.Data)
			if err != nil {
				return sd.Latents{}, err
			}
			copy(b.Data, next)
			done += end - start
			if p.Progress != nil {
				p.Progress(done, total)
			}
		}
	}
	return x, nil
}
