package scheduler

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("ParseConfig({}) (-want +got):\n- %+v\n+ %+v", want, cfg)
	}
}

// The tiny models carry the Stable Diffusion PNDMScheduler config; DDIM
// reads its keys, ignores skip_prk_steps and _class_name, and defaults the
// keys it lacks (timestep_spacing, clip_sample_range).
func TestLoadConfigFixture(t *testing.T) {
	for _, model := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(model, func(t *testing.T) {
			cfg := fixtureConfig(t, model)
			want := Config{
				NumTrainTimesteps: 1000,
				BetaStart:         0.00085,
				BetaEnd:           0.012,
				BetaSchedule:      "scaled_linear",
				ClipSample:        false,
				ClipSampleRange:   1,
				SetAlphaToOne:     false,
				StepsOffset:       1,
				PredictionType:    "epsilon",
				TimestepSpacing:   "leading",
			}
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("LoadConfig (-want +got):\n- %+v\n+ %+v", want, cfg)
			}
		})
	}
}

func TestParseConfigNullsAndTrainedBetas(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"num_train_timesteps": 3, "trained_betas": [0.1, 0.2, 0.3], "beta_schedule": "whatever", "steps_offset": null}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.TrainedBetas, []float64{0.1, 0.2, 0.3}) || cfg.StepsOffset != 0 {
		t.Errorf("got %+v", cfg)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		json string
		want string
	}{
		{`[1]`, `scheduler config: not a JSON object`},
		{`{"beta_schedule": "sigmoid"}`, `scheduler config: beta_schedule: "sigmoid" is not supported (linear, scaled_linear, squaredcos_cap_v2)`},
		{`{"prediction_type": "flow"}`, `scheduler config: prediction_type: "flow" is not supported (epsilon, v_prediction, sample)`},
		{`{"timestep_spacing": "karras"}`, `scheduler config: timestep_spacing: "karras" is not supported (leading, trailing, linspace)`},
		{`{"num_train_timesteps": 0}`, `scheduler config: num_train_timesteps: 0 is out of range [1, 1048576]`},
		{`{"num_train_timesteps": "1000"}`, `scheduler config: num_train_timesteps: cannot read "1000": want int`},
		{`{"num_train_timesteps": 2, "trained_betas": [0.1]}`, `scheduler config: trained_betas: has 1 entries, num_train_timesteps is 2`},
		{`{"num_train_timesteps": 2, "trained_betas": [0.1, 1]}`, `scheduler config: trained_betas: entry 1 is 1, want 0 <= beta < 1`},
		{`{"beta_start": -0.1}`, `scheduler config: beta_start: -0.1 is out of range [0, 1)`},
		{`{"beta_end": 1.5}`, `scheduler config: beta_end: 1.5 is out of range [0, 1)`},
		{`{"steps_offset": -1}`, `scheduler config: steps_offset: -1 is out of range [0, 1000)`},
		{`{"clip_sample": true, "clip_sample_range": 0}`, `scheduler config: clip_sample_range: 0 must be positive when clip_sample is true`},
		{`{"thresholding": true}`, `scheduler config: thresholding: dynamic thresholding is not implemented; set it to false`},
		{`{"rescale_betas_zero_snr": true}`, `scheduler config: rescale_betas_zero_snr: zero-terminal-SNR rescaling is not implemented; set it to false`},
		{`{"set_alpha_to_one": "no"}`, `scheduler config: set_alpha_to_one: cannot read "no": want bool`},
	}
	for _, tt := range tests {
		_, err := ParseConfig([]byte(tt.json))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParseConfig(%s) error:\n got: %v\nwant: %s", tt.json, err, tt.want)
			continue
		}
		if !errors.Is(err, ErrConfig) {
			t.Errorf("ParseConfig(%s) error %v does not wrap ErrConfig", tt.json, err)
		}
	}
}

func TestLoadConfigNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "scheduler_config.json")
	if err := os.WriteFile(p, []byte(`{"beta_schedule": "sigmoid"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(p)
	if want := p + `: beta_schedule: "sigmoid" is not supported`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("LoadConfig error = %v, want prefix %q", err, want)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("LoadConfig(missing) error = %v", err)
	}
}
