package scheduler

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
)

// Config is a diffusers scheduler configuration, read from a checkpoint's
// scheduler/scheduler_config.json. Keys and defaults are those of diffusers
// v0.20.2's DDIMScheduler (its constructor arguments ARE the config keys).
// Stable Diffusion checkpoints ship a PNDMScheduler config; DDIM reads the
// same keys from it and ignores the rest (skip_prk_steps, _class_name, ...),
// as DDIMScheduler.from_pretrained does.
type Config struct {
	NumTrainTimesteps int     `json:"num_train_timesteps"` // T, default 1000
	BetaStart         float64 `json:"beta_start"`          // default 0.0001
	BetaEnd           float64 `json:"beta_end"`            // default 0.02
	// BetaSchedule is "linear", "scaled_linear" or "squaredcos_cap_v2"
	// (default "linear"); ignored when TrainedBetas is set.
	BetaSchedule string    `json:"beta_schedule"`
	TrainedBetas []float64 `json:"trained_betas"` // null, or T betas
	// ClipSample clamps the predicted x0 to [-ClipSampleRange,
	// ClipSampleRange] (defaults true and 1; SD configs say false).
	ClipSample      bool    `json:"clip_sample"`
	ClipSampleRange float64 `json:"clip_sample_range"`
	// SetAlphaToOne: the alpha_cumprod "before" timestep 0 is 1 (true,
	// default) or alphas_cumprod[0] (false, Stable Diffusion).
	SetAlphaToOne bool `json:"set_alpha_to_one"`
	StepsOffset   int  `json:"steps_offset"` // added to "leading" timesteps, default 0
	// PredictionType is what the UNet predicts: "epsilon" (default),
	// "v_prediction" or "sample".
	PredictionType string `json:"prediction_type"`
	// TimestepSpacing is "leading" (default), "trailing" or "linspace"
	// (Table 2 of arXiv 2305.08891).
	TimestepSpacing string `json:"timestep_spacing"`
	// Thresholding (dynamic thresholding) and RescaleBetasZeroSNR are not
	// implemented; a config that turns them on is refused rather than
	// silently computed differently.
	Thresholding        bool `json:"thresholding"`
	RescaleBetasZeroSNR bool `json:"rescale_betas_zero_snr"`
}

// DefaultConfig returns diffusers v0.20.2 DDIMScheduler's defaults.
func DefaultConfig() Config {
	return Config{
		NumTrainTimesteps: 1000,
		BetaStart:         0.0001,
		BetaEnd:           0.02,
		BetaSchedule:      "linear",
		ClipSample:        true,
		ClipSampleRange:   1,
		SetAlphaToOne:     true,
		StepsOffset:       0,
		PredictionType:    "epsilon",
		TimestepSpacing:   "leading",
	}
}

// ErrConfig is wrapped by every invalid-configuration error.
var ErrConfig = errors.New("invalid scheduler config")

// ConfigError names the configuration field at fault.
type ConfigError struct {
	File  string // "" when parsed from bytes
	Field string // the JSON key
	Msg   string
}

func (e *ConfigError) Error() string {
	file := cmp.Or(e.File, "scheduler config")
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", file, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", file, e.Field, e.Msg)
}

// Unwrap makes errors.Is(err, ErrConfig) true.
func (e *ConfigError) Unwrap() error { return ErrConfig }

// ParseConfig reads a scheduler_config.json document: missing keys take
// DefaultConfig's values, unknown keys are ignored, and the result is
// validated.
func ParseConfig(data []byte) (Config, error) {
	cfg := DefaultConfig()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, &ConfigError{Msg: "not a JSON object: " + err.Error()}
	}
	// Every field of Config is read under its JSON key.
	fields := reflect.ValueOf(&cfg).Elem()
	for i := range fields.NumField() {
		key := fields.Type().Field(i).Tag.Get("json")
		// A null (diffusers would pass None) keeps the default:
		// json.Unmarshal leaves a value as it is for null, and a slice nil.
		if v, ok := raw[key]; ok {
			if err := json.Unmarshal(v, fields.Field(i).Addr().Interface()); err != nil {
				return Config{}, &ConfigError{Field: key, Msg: fmt.Sprintf("cannot read %s: %v", shorten(string(v)), typeMsg(err))}
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// LoadConfig reads and validates the scheduler config at path; errors name
// the file and the field.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load scheduler config: %w", err)
	}
	cfg, err := ParseConfig(data)
	var ce *ConfigError
	if errors.As(err, &ce) {
		ce.File = path
	}
	return cfg, err
}

// maxTrainTimesteps bounds num_train_timesteps (and so the tables' size).
const maxTrainTimesteps = 1 << 20

// Validate checks the fields DDIM uses; errors name the JSON key.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if c.NumTrainTimesteps < 1 || c.NumTrainTimesteps > maxTrainTimesteps {
		return bad("num_train_timesteps", "%d is out of range [1, %d]", c.NumTrainTimesteps, maxTrainTimesteps)
	}
	if c.TrainedBetas != nil {
		if len(c.TrainedBetas) != c.NumTrainTimesteps {
			return bad("trained_betas", "has %d entries, num_train_timesteps is %d", len(c.TrainedBetas), c.NumTrainTimesteps)
		}
		for i, b := range c.TrainedBetas {
			if !(b >= 0 && b < 1) {
				return bad("trained_betas", "entry %d is %g, want 0 <= beta < 1", i, b)
			}
		}
	} else {
		if err := oneOf("beta_schedule", c.BetaSchedule, "linear", "scaled_linear", "squaredcos_cap_v2"); err != nil {
			return err
		}
		if c.BetaSchedule != "squaredcos_cap_v2" {
			if !(c.BetaStart >= 0 && c.BetaStart < 1) {
				return bad("beta_start", "%g is out of range [0, 1)", c.BetaStart)
			}
			if !(c.BetaEnd >= 0 && c.BetaEnd < 1) {
				return bad("beta_end", "%g is out of range [0, 1)", c.BetaEnd)
			}
		}
	}
	if err := oneOf("prediction_type", c.PredictionType, "epsilon", "v_prediction", "sample"); err != nil {
		return err
	}
	if err := oneOf("timestep_spacing", c.TimestepSpacing, "leading", "trailing", "linspace"); err != nil {
		return err
	}
	if c.StepsOffset < 0 || c.StepsOffset >= c.NumTrainTimesteps {
		return bad("steps_offset", "%d is out of range [0, %d)", c.StepsOffset, c.NumTrainTimesteps)
	}
	if c.ClipSample && !(c.ClipSampleRange > 0) {
		return bad("clip_sample_range", "%g must be positive when clip_sample is true", c.ClipSampleRange)
	}
	if c.Thresholding {
		return bad("thresholding", "dynamic thresholding is not implemented; set it to false")
	}
	if c.RescaleBetasZeroSNR {
		return bad("rescale_betas_zero_snr", "zero-terminal-SNR rescaling is not implemented; set it to false")
	}
	return nil
}

// oneOf checks that field's value v is one of the supported values.
func oneOf(field, v string, supported ...string) error {
	if slices.Contains(supported, v) {
		return nil
	}
	return &ConfigError{Field: field, Msg: fmt.Sprintf("%q is not supported (%s)", v, strings.Join(supported, ", "))}
}

func typeMsg(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "want " + te.Type.String()
	}
	return err.Error()
}

func shorten(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
