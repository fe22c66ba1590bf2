package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// editConfig is the YAML file of --config: the official TokenFlow
// config_pnp.yaml keys as they are, plus this tool's own flag names.
type editConfig struct {
	// official keys
	Seed            *uint64  `yaml:"seed"`
	Device          *string  `yaml:"device"`
	OutputPath      *string  `yaml:"output_path"`
	DataPath        *string  `yaml:"data_path"`
	LatentsPath     *string  `yaml:"latents_path"`
	NInversionSteps *int     `yaml:"n_inversion_steps"`
	NFrames         *int     `yaml:"n_frames"`
	SDVersion       *string  `yaml:"sd_version"`
	GuidanceScale   *float64 `yaml:"guidance_scale"`
	NTimesteps      *int     `yaml:"n_timesteps"`
	Prompt          *string  `yaml:"prompt"`
	NegativePrompt  *string  `yaml:"negative_prompt"`
	BatchSize       *int     `yaml:"batch_size"`
	PnPAttnT        *float64 `yaml:"pnp_attn_t"`
	PnPFT           *float64 `yaml:"pnp_f_t"`
	// this tool's own
	Model           *string `yaml:"model"`
	InversionPrompt *string `yaml:"inversion_prompt"`
	Keyframes       *string `yaml:"keyframes"`
	Size            *string `yaml:"size"`
	Start           *int    `yaml:"start"`
	Stride          *int    `yaml:"stride"`
	FPS             *string `yaml:"fps"`
	Out             *string `yaml:"out"`
	Threads         *int    `yaml:"threads"`
	CacheDir        *string `yaml:"cache_dir"`
}

// sdVersions maps the official sd_version values to hub ids.
var sdVersions = map[string]string{
	"1.5": "runwayml/stable-diffusion-v1-5",
	"2.0": "stabilityai/stable-diffusion-2-base",
	"2.1": "stabilityai/stable-diffusion-2-1-base",
}

// loadConfig reads --config strictly: an unknown key or a value of the
// wrong type is an error naming the file and line.
func loadConfig(path string) (*editConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErr("--config %s: %v", path, err)
	}
	var c editConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && err.Error() != "EOF" {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		msg = strings.TrimSpace(strings.TrimPrefix(msg, "yaml: unmarshal errors:; "))
		// name the key of the line a type error points at
		var line int
		if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil && strings.Contains(msg, "cannot unmarshal") {
			if lines := strings.Split(string(b), "\n"); line >= 1 && line <= len(lines) {
				if key, _, ok := strings.Cut(strings.TrimSpace(lines[line-1]), ":"); ok {
					msg = fmt.Sprintf("key %s: %s", key, msg)
				}
			}
		}
		return nil, usageErr("--config %s: %s", path, msg)
	}
	return &c, nil
}

// apply copies the file's values into o for every flag not given on the
// command line (flags override the file).
func (c *editConfig) apply(o *EditOptions, fs *pflag.FlagSet, configPath string) error {
	set := func(flag string, apply func()) {
		if !fs.Changed(flag) {
			apply()
		}
	}
	if c.Seed != nil {
		set("seed", func() { o.Seed = *c.Seed })
	}
	if c.Device != nil {
		set("device", func() { o.Device = *c.Device })
	}
	if c.DataPath != nil && o.Input == "" {
		o.Input = *c.DataPath
	}
	if c.LatentsPath != nil {
		set("cache-dir", func() { o.CacheDir = *c.LatentsPath })
	}
	if c.OutputPath != nil && !fs.Changed("out") && c.Out == nil {
		o.outDir = *c.OutputPath
	}
	if c.NInversionSteps != nil {
		set("inversion-steps", func() { o.InversionSteps = *c.NInversionSteps })
	}
	if c.NFrames != nil {
		set("frames", func() { o.Frames, o.framesSet = *c.NFrames, true })
	}
	if c.SDVersion != nil && c.Model == nil && !fs.Changed("model") {
		id, ok := sdVersions[*c.SDVersion]
		if !ok {
			return usageErr("--config %s: sd_version %q is not supported (use 1.5, 2.0 or 2.1, or give model: a diffusers folder)", configPath, *c.SDVersion)
		}
		o.Model = id
	}
	if c.GuidanceScale != nil {
		set("guidance", func() { o.Guidance = *c.GuidanceScale })
	}
	if c.NTimesteps != nil {
		set("steps", func() { o.Steps = *c.NTimesteps })
	}
	if c.Prompt != nil {
		set("prompt", func() { o.Prompt = *c.Prompt })
	}
	if c.NegativePrompt != nil {
		set("negative-prompt", func() { o.NegativePrompt = *c.NegativePrompt })
	}
	if c.BatchSize != nil {
		set("batch-size", func() { o.BatchSize = *c.BatchSize })
	}
	if c.PnPAttnT != nil {
		set("pnp-attn", func() { o.PnPAttn = *c.PnPAttnT })
	}
	if c.PnPFT != nil {
		set("pnp-conv", func() { o.PnPConv = *c.PnPFT })
	}
	if c.Model != nil {
		set("model", func() { o.Model = *c.Model })
	}
	if c.InversionPrompt != nil {
		set("inversion-prompt", func() { o.InversionPrompt = *c.InversionPrompt })
	}
	if c.Keyframes != nil {
		set("keyframes", func() { o.Keyframes = *c.Keyframes })
	}
	if c.Size != nil {
		set("size", func() { o.Size = *c.Size })
	}
	if c.Start != nil {
		set("start", func() { o.Start = *c.Start })
	}
	if c.Stride != nil {
		set("stride", func() { o.Stride = *c.Stride })
	}
	if c.FPS != nil {
		set("fps", func() { o.FolderFPS = *c.FPS })
	}
	if c.Out != nil {
		set("out", func() { o.Out = *c.Out })
	}
	if c.Threads != nil {
		set("threads", func() { o.Threads = *c.Threads })
	}
	if c.CacheDir != nil {
		set("cache-dir", func() { o.CacheDir = *c.CacheDir })
	}
	return nil
}
