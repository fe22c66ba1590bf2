package scheduler

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrScheduleMismatch is wrapped when the editing schedule asks for inverted
// latents the inversion does not produce.
var ErrScheduleMismatch = errors.New("editing timesteps not in the inversion")

// InversionPlan is the timestep bookkeeping of TokenFlow's DDIM inversion
// (preprocess.py): which timesteps the inversion visits, in which order, and
// which of its latents are kept for the edit.
type InversionPlan struct {
	// Walk is set_timesteps(steps) reversed: the inversion visits these
	// timesteps in ascending order.
	Walk []int
	// Edit is set_timesteps(saveSteps), descending: the editing schedule.
	Edit []int
	// Kept lists, ascending, the walk's timesteps whose latents are saved:
	// every editing timestep (all of them lie on the walk), plus the walk's
	// last timestep (preprocess.py saves the final latent again under the
	// last t, so a 20-step inversion with 10 save steps also keeps 951).
	Kept []int
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

// PlanInversion lays out an inversion of `steps` DDIM steps (--steps) for an
// edit of `saveSteps` steps (--save-steps). The edit needs the inverted
// latent at each of its timesteps, so every timestep of set_timesteps(
// saveSteps) must be visited by the walk; if not (e.g. 30 and 20 with the SD
// config: spacings 33 and 50), the error says which values would work.
// (The official preprocess.py does not check: its edit fails later, looking
// for a noisy_latents_<t>.pt that was never written.)
func (s *DDIM) PlanInversion(steps, saveSteps int) (InversionPlan, error) {
	walkDesc, err := s.Timesteps(steps)
	if err != nil {
		return InversionPlan{}, fmt.Errorf("inversion steps: %w", err)
	}
	if saveSteps > steps {
		return InversionPlan{}, &MismatchError{Steps: steps, SaveSteps: saveSteps}
	}
	edit, err := s.Timesteps(saveSteps)
	if err != nil {
		return InversionPlan{}, fmt.Errorf("editing steps: %w", err)
	}
	walk := make([]int, len(walkDesc))
	onWalk := make(map[int]bool, len(walk))
	for i, t := range walkDesc {
		walk[len(walk)-1-i] = t
		onWalk[t] = true
	}
	for _, t := range edit {
		if !onWalk[t] {
			return InversionPlan{}, &MismatchError{Steps: steps, SaveSteps: saveSteps, Missing: t,
				Walk: describe(walkDesc), Edit: describe(edit), Fits: s.fittingSaveSteps(steps, onWalk, saveSteps)}
		}
	}
	isEdit := make(map[int]bool, len(edit))
	for _, t := range edit {
		isEdit[t] = true
	}
	var kept []int
	for _, t := range walk {
		if isEdit[t] {
			kept = append(kept, t)
		}
	}
	if last := walk[len(walk)-1]; kept[len(kept)-1] != last {
		kept = append(kept, last)
	}
	return InversionPlan{Walk: walk, Edit: edit, Kept: kept}, nil
}

// MismatchError says why an inversion of Steps steps cannot serve an edit
// of SaveSteps steps. It wraps ErrScheduleMismatch; callers word it with
// their own flag names.
type MismatchError struct {
	Steps, SaveSteps int
	// Missing is an editing timestep the inversion does not visit (0 when
	// SaveSteps > Steps); Walk and Edit summarise the two schedules; Fits
	// lists editing step counts that would fit.
	Missing          int
	Walk, Edit, Fits string
}

func (e *MismatchError) Error() string {
	if e.Missing == 0 {
		return fmt.Sprintf("an edit of %d steps cannot use an inversion of %d steps: it needs as many inversion steps at least", e.SaveSteps, e.Steps)
	}
	return fmt.Sprintf("editing timestep %d of a %d-step edit is not visited by the %d-step inversion (timesteps %s vs %s); editing step counts that fit: %s",
		e.Missing, e.SaveSteps, e.Steps, e.Walk, e.Edit, e.Fits)
}

func (e *MismatchError) Unwrap() error { return ErrScheduleMismatch }

// describe summarises a descending timestep list: "981, 961, ..., 1".
func describe(ts []int) string {
	if len(ts) <= 4 {
		return strings.Trim(fmt.Sprint(ts), "[]")
	}
	return fmt.Sprintf("%d, %d, ..., %d", ts[0], ts[1], ts[len(ts)-1])
}

// fittingSaveSteps lists up to 8 save-step counts, nearest to want, whose
// schedules lie on the walk.
func (s *DDIM) fittingSaveSteps(steps int, onWalk map[int]bool, want int) string {
	var ok []int
	for m := 1; m <= steps; m++ {
		ts, err := s.Timesteps(m)
		if err != nil {
			continue
		}
		fits := true
		for _, t := range ts {
			if !onWalk[t] {
				fits = false
				break
			}
		}
		if fits {
			ok = append(ok, m)
		}
	}
	dist := func(m int) int {
		if m > want {
			return m - want
		}
		return want - m
	}
	sort.SliceStable(ok, func(i, j int) bool { return dist(ok[i]) < dist(ok[j]) })
	if len(ok) > 8 {
		ok = ok[:8]
	}
	sort.Ints(ok)
	parts := make([]string, len(ok))
	for i, m := range ok {
		parts[i] = fmt.Sprint(m)
	}
	return strings.Join(parts, ", ")
}
