package edit

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/tokenflow/tokenflow/internal/tensor"
)

// SDEdit makes an edit the official SDEdit variant of TokenFlow
// (omerbt/TokenFlow run_tokenflow_sdedit.py with configs/config_sdedit.yaml):
// the clip's latents are noised to a timestep part-way down the schedule
// and sampled from there with TokenFlow's keyframe and propagation passes,
// without Plug-and-Play injection. docs/sdedit.md lists the official
// quirks kept.
//
// Steps, for a Steps-step schedule ts (descending):
//  1. kept = ts[FirstKept(Start, Steps):], the official
//     timesteps[int(1 - start*len(timesteps)):];
//  2. noise: the inversion's, eps = (z_T - sqrt(a_T) z0)/sqrt(1 - a_T)
//     with z_T the noisiest saved inverted latent (use_ddim_noise true);
//     or, with Gaussian, one seeded standard Gaussian row [1,C,h,w] shared
//     by every frame (use_ddim_noise false, whose official code crashes);
//  3. x = add_noise(z0, noise, kept[0]);
//  4. every kept step as in PnP mode (the source branch on the inverted
//     latents at t with the inversion prompt, which the nearest-neighbour
//     field is computed on; keyframe pass; propagation passes; guidance;
//     DDIM step with the full schedule's spacing), with no injection at
//     all: neither query/key nor feature, nor the official t == 1000 rule.
type SDEdit struct {
	// Start is the official start, in (0, 1]: the share of the schedule
	// to run (see FirstKept for exactly how many steps).
	Start float64
	// Gaussian noises the clip with seeded Gaussian noise shared by all
	// frames instead of the inversion's noise.
	Gaussian bool
}

// FirstKept is the index, in a schedule of steps timesteps, of the first
// timestep the official SDEdit keeps: Python's timesteps[int(1 -
// start*len(timesteps)):], the product and difference in float64 and int()
// truncating toward zero, then slicing (a negative index counts from the
// end, clamped to the list). For start*steps >= 2 that keeps
// floor(start*steps) - 1 timesteps, one fewer than start*steps (start 0.9,
// 50 steps: 44); below 2 it keeps all of them; start 1 keeps steps-1 (when
// steps > 1). start is expected in (0, 1]; anything else is clamped into
// the list.
func FirstKept(start float64, steps int) int {
	p := float64(start * float64(steps)) // rounded alone: no fused multiply-add
	d := 1 - p
	if !(math.Abs(d) < float64(steps)+1) { // NaN, or beyond either end
		d = math.Copysign(float64(steps)+1, d)
		if math.IsNaN(d) {
			d = 0
		}
	}
	i := int(d) // truncation toward zero, as Python's int()
	if i < 0 {
		i = max(steps+i, 0)
	}
	return min(i, steps)
}

// noiseStream is the second PCG seed word of SharedNoise, so that its
// stream differs from the keyframes' with the same seed. ASCII "sdeditnz".
const noiseStream = 0x7364656469746e7a

// SharedNoise is n copies of one standard Gaussian row of shape row
// ([C,h,w]), drawn from seed: the official intent of use_ddim_noise false,
// randn_like(eps[[0]]) repeated for every frame. The numbers are not
// torch's: a PCG generator seeded (seed, "sdeditnz") gives uniform 53-bit
// pairs u1 in (0,1], u2 in [0,1), turned into two normals each by
// Box-Muller, sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2), in row order.
func SharedNoise(seed uint64, n int, row []int64) (tensor.Tensor, error) {
	if n < 1 {
		return tensor.Tensor{}, fmt.Errorf("edit: shared noise for %d frames", n)
	}
	shape := append([]int64{1}, row...)
	one := tensor.Zeros(shape...)
	src := rand.NewPCG(seed, noiseStream)
	const unit = 1.0 / (1 << 53)
	for i := 0; i < len(one.Data); i += 2 {
		u1 := float64(src.Uint64()>>11+1) * unit
		u2 := float64(src.Uint64()>>11) * unit
		r := math.Sqrt(-2 * math.Log(u1))
		s, c := math.Sincos(2 * math.Pi * u2)
		one.Data[i] = float32(r * c)
		if i+1 < len(one.Data) {
			one.Data[i+1] = float32(r * s)
		}
	}
	idx := make([]int, n)
	return one.Gather(idx), nil
}
