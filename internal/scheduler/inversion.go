package scheduler

import (
	"fmt"
	"slices"
)

// InversionPlan is the timestep bookkeeping of TokenFlow's DDIM inversion
// (preprocess.py): which timesteps the inversion visits, in which order, and
// which of its latents are kept for the edit.
type InversionPlan struct {
	// Walk is set_timesteps(steps) reversed (joined with the editing
	// timesteps it misses, see Joined): the inversion visits these
	// timesteps in ascending order.
	Walk []int
	// Edit is set_timesteps(saveSteps), descending: the editing schedule.
	Edit []int
	// Kept lists, ascending, the walk's timesteps whose latents are saved:
	// every editing timestep (all of them lie on the walk), plus the walk's
	// last timestep (preprocess.py saves the final latent again under the
	// last t, so a 20-step inversion with 10 save steps also keeps 951).
	Kept []int
	// Joined says that the inversion's own grid missed editing timesteps,
	// so Walk is the union of both grids.
	Joined bool
}

// Prev is the timestep visited before Walk[i], whose noise level the latent
// has when the UNet is evaluated at Walk[i]; -1 for i = 0, meaning
// final_alpha_cumprod (see DDIM.InvertStep).
func (p InversionPlan) Prev(i int) int {
	if i <= 0 {
		return -1
	}
	return p.Walk[i-1]
}

// Last is the highest kept timestep: the most-inverted latent, from which
// the edit recovers its starting noise.
func (p InversionPlan) Last() int { return p.Kept[len(p.Kept)-1] }

// PlanInversion lays out an inversion of `steps` DDIM steps for an edit of
// `saveSteps` steps. The edit needs the inverted latent at each of its
// timesteps, so every timestep of set_timesteps(saveSteps) must be visited
// by the walk. When the grid of `steps` misses some (e.g. 500 and 30 with
// the SD config: spacings 2 and 33; or fewer inversion than editing
// steps), the walk is the union of both grids, and Joined says so: the
// inversion then takes len(Walk) steps. (The official preprocess.py does
// not check: its edit fails later, looking for a noisy_latents_<t>.pt that
// was never written.) With the official 500 and 50 nothing is joined.
func (s *DDIM) PlanInversion(steps, saveSteps int) (InversionPlan, error) {
	grid, err := s.Timesteps(steps)
	if err != nil {
		return InversionPlan{}, fmt.Errorf("inversion steps: %w", err)
	}
	edit, err := s.Timesteps(saveSteps)
	if err != nil {
		return InversionPlan{}, fmt.Errorf("editing steps: %w", err)
	}
	// Each grid is strictly descending (no repeats), so the walk is joined
	// exactly when it outgrows the inversion's grid, and the kept timesteps
	// are the editing ones, ascending.
	walk := slices.Compact(slices.Sorted(slices.Values(slices.Concat(grid, edit))))
	kept := slices.Clone(edit)
	slices.Reverse(kept)
	if last := walk[len(walk)-1]; kept[len(kept)-1] != last {
		kept = append(kept, last)
	}
	return InversionPlan{Walk: walk, Edit: edit, Kept: kept, Joined: len(walk) > len(grid)}, nil
}

// MaxSteps is the largest step count Timesteps accepts (999 for the SD
// config: 1000 'leading' steps with steps_offset 1 would reach timestep
// 1000).
func (s *DDIM) MaxSteps() int {
	for n := s.cfg.NumTrainTimesteps; n > 1; n-- {
		if _, err := s.Timesteps(n); err == nil {
			return n
		}
	}
	return 1
}
