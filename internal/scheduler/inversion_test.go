package scheduler

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The kept timesteps of the official preprocess.py runs behind the
// conformance fixtures (run_info.json: saved_inversion_timesteps, with the
// --steps and --save_steps they were made with).
func TestPlanInversionFixtures(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		cfg := fixtureConfig(t, model)
		s := mustNew(t, cfg)
		for _, run := range []string{"tokenflow_inv10", "tokenflow_inv20"} {
			t.Run(model+"/"+run, func(t *testing.T) {
				data, err := os.ReadFile(fixture(model, "expected", run, "run_info.json"))
				if err != nil {
					t.Fatal(err)
				}
				var info struct {
					Saved []int `json:"saved_inversion_timesteps"`
					Opt   struct {
						Steps     int `json:"steps"`
						SaveSteps int `json:"save_steps"`
					} `json:"preprocess_opt"`
				}
				// run_info.json is written by Python's json module, which
				// spells unbounded nn_margins as a bare Infinity (not JSON);
				// those entries are not read here, so make them parse.
				data = regexp.MustCompile(`\bInfinity\b`).ReplaceAll(data, []byte("1e999"))
				data = regexp.MustCompile(`\bNaN\b`).ReplaceAll(data, []byte("null"))
				if err := json.Unmarshal(data, &info); err != nil {
					t.Fatal(err)
				}
				plan, err := s.PlanInversion(info.Opt.Steps, info.Opt.SaveSteps)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(plan.Kept, info.Saved) {
					t.Errorf("PlanInversion(%d, %d).Kept (-want +got):\n- %v\n+ %v", info.Opt.Steps, info.Opt.SaveSteps, info.Saved, plan.Kept)
				}
				if plan.Last() != info.Saved[len(info.Saved)-1] {
					t.Errorf("Last() = %d, want %d", plan.Last(), info.Saved[len(info.Saved)-1])
				}
			})
		}
	}
}

func TestPlanInversion(t *testing.T) {
	s := mustNew(t, sdConfig())
	tests := []struct {
		steps, save int
		walk        int   // len(Walk) when the grids are joined (0: steps)
		keptLen     int   // len(Kept)
		keptHead    []int // first Kept values
		last        int
		err         string // substring of the error, "" for success
	}{
		{steps: 500, save: 50, keptLen: 51, keptHead: []int{1, 21, 41}, last: 999},
		{steps: 10, save: 10, keptLen: 10, keptHead: []int{1, 101, 201}, last: 901},
		{steps: 20, save: 10, keptLen: 11, keptHead: []int{1, 101, 201}, last: 951},
		{steps: 50, save: 50, keptLen: 50, keptHead: []int{1, 21}, last: 981},
		{steps: 50, save: 10, keptLen: 11, keptHead: []int{1, 101}, last: 981},
		// Grids that miss editing timesteps are joined: 30 (1, 34, ..., 958)
		// and 20 (1, 51, ..., 951) share only 1; 10 lies inside 20.
		{steps: 30, save: 20, walk: 49, keptLen: 21, keptHead: []int{1, 51, 101}, last: 958},
		{steps: 10, save: 20, walk: 20, keptLen: 20, keptHead: []int{1, 51, 101}, last: 951},
		{steps: 500, save: 30, walk: 515, keptLen: 31, keptHead: []int{1, 34, 67}, last: 999},
		{steps: 0, save: 1, err: "inversion steps: timestep out of range: 0 inference steps"},
		{steps: 10, save: 0, err: "editing steps: timestep out of range: 0 inference steps"},
	}
	for _, tt := range tests {
		plan, err := s.PlanInversion(tt.steps, tt.save)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("PlanInversion(%d, %d) error:\n got: %v\nwant: ...%s...", tt.steps, tt.save, err, tt.err)
			}
			if !errors.Is(err, ErrTimestep) {
				t.Errorf("PlanInversion(%d, %d) error %v does not wrap ErrTimestep", tt.steps, tt.save, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("PlanInversion(%d, %d): %v", tt.steps, tt.save, err)
			continue
		}
		walk := tt.walk
		if walk == 0 {
			walk = tt.steps
		}
		if len(plan.Walk) != walk || len(plan.Edit) != tt.save || plan.Joined != (tt.walk != 0) {
			t.Errorf("PlanInversion(%d, %d): walk %d, edit %d timesteps, joined %v", tt.steps, tt.save, len(plan.Walk), len(plan.Edit), plan.Joined)
		}
		if len(plan.Kept) != tt.keptLen || !reflect.DeepEqual(plan.Kept[:len(tt.keptHead)], tt.keptHead) || plan.Last() != tt.last {
			t.Errorf("PlanInversion(%d, %d).Kept = %v, want %d values starting %v ending %d", tt.steps, tt.save, plan.Kept, tt.keptLen, tt.keptHead, tt.last)
		}
		for i := 1; i < len(plan.Walk); i++ {
			if plan.Walk[i] <= plan.Walk[i-1] || plan.Prev(i) != plan.Walk[i-1] {
				t.Fatalf("walk not ascending at %d: %v", i, plan.Walk)
			}
		}
		if plan.Prev(0) != -1 {
			t.Errorf("Prev(0) = %d, want -1 (final alpha)", plan.Prev(0))
		}
		// Every editing timestep has a kept latent.
		kept := map[int]bool{}
		for _, k := range plan.Kept {
			kept[k] = true
		}
		for _, e := range plan.Edit {
			if !kept[e] {
				t.Errorf("PlanInversion(%d, %d): editing timestep %d not kept", tt.steps, tt.save, e)
			}
		}
	}
}

func TestMaxSteps(t *testing.T) {
	s := mustNew(t, sdConfig())
	if got := s.MaxSteps(); got != 999 {
		t.Errorf("MaxSteps = %d, want 999 (1000 leading steps with steps_offset 1 reach timestep 1000)", got)
	}
}
