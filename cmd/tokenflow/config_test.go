package main

// --config: every key of the table, set through the flag's parser, gives
// what the flag gives; a bad value gives the flag's message with the key and
// the line.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// checkConfig parses edit --config with a file holding yaml (args after
// it) and checks the options against edit's defaults with that file and
// change applied; it returns what they gave.
func checkConfig(t *testing.T, yaml string, args []string, change func(*editView)) editView {
	t.Helper()
	cfg := writeConfig(t, yaml)
	return checkParsed(t, parseEdit, editDefaults, append([]string{"--config", cfg}, args...), func(v *editView) {
		v.Config = cfg
		change(v)
	})
}

func TestConfigKeys(t *testing.T) {
	t.Setenv("TOKENFLOW_MODEL", "")
	tested := map[string]bool{}
	defer func() {
		for _, k := range configKeysSorted() {
			if !tested[k] {
				t.Errorf("config key %s has no case", k)
			}
		}
	}()
	for _, tc := range []struct {
		yaml   string
		flags  []string // the same setting as flags; nil for keys that set no flag
		change func(*editView)
	}{
		// official config_pnp.yaml keys
		{"prompt: a cat", []string{"--prompt", "a cat"}, func(v *editView) { v.Prompt = "a cat" }},
		{"negative_prompt: ''", []string{"--negative-prompt", ""}, func(v *editView) { v.NegativePrompt = "" }},
		{"n_timesteps: 10", []string{"--steps", "10"}, func(v *editView) { v.Steps = 10 }},
		{"guidance_scale: 6.5", []string{"--guidance", "6.5"}, func(v *editView) { v.Guidance = 6.5 }},
		{"pnp_attn_t: 0.25", []string{"--pnp-attn", "0.25"}, func(v *editView) { v.PnPAttn = 0.25 }},
		{"pnp_f_t: 0.75", []string{"--pnp-conv", "0.75"}, func(v *editView) { v.PnPConv = 0.75 }},
		{"batch_size: 4", []string{"--batch-size", "4"}, func(v *editView) { v.BatchSize = 4 }},
		{"n_frames: 16", []string{"--frames", "16"}, func(v *editView) { v.Frames, v.FramesSet = 16, true }},
		{"n_inversion_steps: 20", []string{"--inversion-steps", "20"}, func(v *editView) { v.InversionSteps = 20 }},
		{"inversion_batch: 12", []string{"--inversion-batch", "12"}, func(v *editView) { v.InversionBatch = 12 }},
		{"seed: 7", []string{"--seed", "7"}, func(v *editView) { v.Seed = 7 }},
		{"device: 'cuda'", []string{"--device", "cuda"}, func(v *editView) { v.Device = "cuda" }},
		{"latents_path: 'latents'", []string{"--cache-dir", "latents"}, func(v *editView) { v.CacheDir = "latents" }},
		{"sd_version: '2.0'", []string{"--model", "stabilityai/stable-diffusion-2-base"}, func(v *editView) { v.Model = "stabilityai/stable-diffusion-2-base" }},
		{"data_path: 'data/woman-running'", []string{"data/woman-running"}, func(v *editView) { v.Input = "data/woman-running" }},
		{"output_path: 'tokenflow-results'", nil, func(v *editView) { v.OutDir = "tokenflow-results" }},
		// this tool's flags
		{"model: m", []string{"--model", "m"}, func(v *editView) { v.Model = "m" }},
		{"original_config: v1.yaml", []string{"--original-config", "v1.yaml"}, func(v *editView) { v.OriginalConfig = "v1.yaml" }},
		{"size: 64x48", []string{"--size", "64x48"}, func(v *editView) { v.Size = "64x48" }},
		{"start: 2", []string{"--start", "2"}, func(v *editView) { v.Start = 2 }},
		{"stride: 3", []string{"--stride", "3"}, func(v *editView) { v.Stride = 3 }},
		{"fps: 30000/1001", []string{"--fps", "30000/1001"}, func(v *editView) { v.FolderFPS = "30000/1001" }},
		{"dtype: fp16", []string{"--dtype", "fp16"}, func(v *editView) { v.DType = "fp16" }},
		{"threads: 2", []string{"--threads", "2"}, func(v *editView) { v.Threads = 2 }},
		{"cache_dir: c", []string{"--cache-dir", "c"}, func(v *editView) { v.CacheDir = "c" }},
		{"json: true", []string{"--json"}, func(v *editView) { v.JSON = true }},
		{"inversion_prompt: a dog", []string{"--inversion-prompt", "a dog"}, func(v *editView) { v.InversionPrompt = "a dog" }},
		{"inversion_steps: 100", []string{"--inversion-steps", "100"}, func(v *editView) { v.InversionSteps = 100 }},
		{"steps: 25", []string{"--steps", "25"}, func(v *editView) { v.Steps = 25 }},
		{"guidance: 0", []string{"--guidance", "0"}, func(v *editView) { v.Guidance = 0 }},
		{"pnp_attn: 1", []string{"--pnp-attn", "1"}, func(v *editView) { v.PnPAttn = 1 }},
		{"pnp_conv: 0", []string{"--pnp-conv", "0"}, func(v *editView) { v.PnPConv = 0 }},
		{"keyframes: middle", []string{"--keyframes", "middle"}, func(v *editView) { v.Keyframes = "middle" }},
		{"out: o.webm", []string{"--out", "o.webm"}, func(v *editView) { v.Out = "o.webm" }},
		{"save_latents: l.safetensors", []string{"--save-latents", "l.safetensors"}, func(v *editView) { v.SaveLatents = "l.safetensors" }},
		{"frames_dir: fr", []string{"--frames-dir", "fr"}, func(v *editView) { v.FramesDir = "fr" }},
		{"prompts: p.txt", []string{"--prompts", "p.txt"}, func(v *editView) { v.PromptsFile = "p.txt" }},
		{"prompts_per_call: 2", []string{"--prompts-per-call", "2"}, func(v *editView) { v.PromptsPerCall = 2 }},
		{"no_resume: true", []string{"--no-resume"}, func(v *editView) { v.NoResume = true }},
		{"keyframe_window: 16", []string{"--keyframe-window", "16"}, func(v *editView) { v.KeyframeWindow = 16 }},
		// lists: several prompts, a negative prompt for each
		{"prompt: [a, b, c]", []string{"--prompt", "a", "--prompt", "b", "--prompt", "c"}, func(v *editView) { v.Prompt, v.Prompts = "a", []string{"b", "c"} }},
		{"prompt:\n  - a\n  - ~", []string{"--prompt", "a", "--prompt", ""}, func(v *editView) { v.Prompt, v.Prompts = "a", []string{""} }},
		{"negative_prompt: [x, y]", nil, func(v *editView) { v.NegativePrompts = []string{"x", "y"} }},
		// SDEdit: the official config_sdedit.yaml's keys (its use_ddim_noise
		// makes the edit an SDEdit one, where start is the official start)
		// and this tool's
		{"use_ddim_noise: False", []string{"--mode", "sdedit", "--ddim-noise=false"}, func(v *editView) { v.Mode, v.DDIMNoise = "sdedit", false }},
		{"mode: sdedit", []string{"--mode", "sdedit"}, func(v *editView) { v.Mode = "sdedit" }},
		{"strength: 0.5", []string{"--strength", "0.5"}, func(v *editView) { v.Strength = 0.5 }},
		{"ddim_noise: false", []string{"--ddim-noise=false"}, func(v *editView) { v.DDIMNoise = false }},
		// YAML forms of one value
		{"prompt: ~", []string{"--prompt", ""}, func(*editView) {}},
		{"seed: 0x10", []string{"--seed", "0x10"}, func(v *editView) { v.Seed = 16 }},
		{"prompt: &p a cat\ninversion_prompt: *p", []string{"--prompt", "a cat", "--inversion-prompt", "a cat"}, func(v *editView) { v.Prompt, v.InversionPrompt = "a cat", "a cat" }},
	} {
		key, _, _ := strings.Cut(tc.yaml, ":")
		tested[key] = true
		t.Run(tc.yaml, func(t *testing.T) {
			got := checkConfig(t, tc.yaml+"\n", nil, tc.change)
			if tc.flags == nil {
				return
			}
			byFlags, err := parseEdit(t, tc.flags...)
			if err != nil {
				t.Fatal(err)
			}
			got.Config, byFlags.Config = "", ""
			if d := diffFields(byFlags, got); d != "" {
				t.Errorf("config %q against flags %q (-flags +config):\n%s", tc.yaml, tc.flags, d)
			}
		})
	}
}

// TestConfigKeysTable: the table names edit's flags, and every edit flag
// but config, force (overwriting is asked for on the command line) and
// help has a key.
func TestConfigKeysTable(t *testing.T) {
	fs := newCmdEdit(&globalOptions{}, nil).Flags()
	keyed := map[string]bool{}
	for key, flag := range configKeys {
		if flag == "" {
			continue
		}
		if fs.Lookup(flag) == nil {
			t.Errorf("config key %s: edit has no flag --%s", key, flag)
		}
		keyed[flag] = true
	}
	var missing []string
	fs.VisitAll(func(f *pflag.Flag) {
		if !keyed[f.Name] && f.Name != "config" && f.Name != "force" && f.Name != "help" {
			missing = append(missing, f.Name)
		}
	})
	if len(missing) > 0 {
		t.Errorf("edit flags without a config key: %v", missing)
	}
}

// TestConfigBadValues: a value the flag's parser refuses gives the flag's
// own message, with the key and the line.
func TestConfigBadValues(t *testing.T) {
	for _, tc := range []struct{ key, flag, value string }{
		{"n_timesteps", "steps", "ten"},
		{"n_frames", "frames", "2.5"},
		{"batch_size", "batch-size", "99999999999999999999"},
		{"seed", "seed", "-1"},
		{"guidance_scale", "guidance", "high"},
		{"pnp_attn_t", "pnp-attn", ".inf"},
		{"threads", "threads", ""},
		{"json", "json", "yes"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main([]string{"edit", "--" + tc.flag + "=" + tc.value, "in.mp4"}, &stdout, &stderr); code != exitUsage {
				t.Fatalf("--%s=%s: exit %d, want %d; stderr %q", tc.flag, tc.value, code, exitUsage, stderr.String())
			}
			why, ok := strings.CutPrefix(stderr.String(), "tokenflow: --"+tc.flag+" ")
			if !ok {
				t.Fatalf("--%s=%s: stderr %q does not start with the flag", tc.flag, tc.value, stderr.String())
			}
			cfg := writeConfig(t, "prompt: x\n"+tc.key+": "+strconv.Quote(tc.value)+"\n")
			want := "tokenflow: --config " + cfg + ": line 2: " + tc.key + " " + why
			stdout.Reset()
			stderr.Reset()
			code := Main([]string{"edit", "--config", cfg, "in.mp4"}, &stdout, &stderr)
			if got := stderr.String(); got != want || code != exitUsage {
				t.Errorf("exit %d, want %d\n-%s+%s", code, exitUsage, want, got)
			}
			// The flag overrides the file, but the file's value is still checked.
			stderr.Reset()
			if code := Main([]string{"edit", "--config", cfg, "--" + tc.flag + "=1", "in.mp4"}, &stdout, &stderr); code != exitUsage || stderr.String() != want {
				t.Errorf("with --%s=1: exit %d\n-%s+%s", tc.flag, code, want, stderr.String())
			}
		})
	}
}

// TestConfigFileErrors: what is wrong with the file itself, named by line.
func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"prompt: x\nn_timestep: 10\n", `line 2: unknown key "n_timestep": did you mean n_timesteps?`},
		{"prompt: x\nbogus_key: 1\n", `line 2: unknown key "bogus_key": see 'tokenflow edit --help' for the keys`},
		{"prompt: x\nprompt: y\n", "line 2: prompt is already set on line 1: keep one"},
		{"latents_path: a\ncache_dir: b\n", "line 2: cache_dir and latents_path (line 1) both set --cache-dir: keep one"},
		{"n_timesteps: 10\nsteps: 20\n", "line 2: steps and n_timesteps (line 1) both set --steps: keep one"},
		{"seed: [1, 2]\n", "line 1: seed: want a single value, found a list"},
		{"prompt:\n  text: x\n", "line 1: prompt: want a single value or a list, found a mapping"},
		{"prompt: []\n", "line 1: prompt: an empty list: give one or more"},
		{"prompt:\n  - a\n  - [b]\n", "line 3: prompt: want a list of single values, found a list"},
		{"- prompt: x\n", "line 1: want key: value lines, found a list"},
		{"a cat\n", `line 1: want key: value lines, found "a cat"`},
		{"[a]: x\n", "line 1: want a key such as n_timesteps, found a list"},
		{"prompt: x\n---\nseed: 2\n", "line 2: a second YAML document: give the settings as one mapping of key: value lines"},
		{"sd_version: 3.0\n", `line 1: sd_version "3.0" is not supported: use 1.5, 2.0 or 2.1, or give model: a diffusers folder`},
		{"prompt: [unclosed\n", "yaml: line 1: did not find expected ',' or ']'"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			cfg := writeConfig(t, tc.yaml)
			var stdout, stderr bytes.Buffer
			code := Main([]string{"edit", "--config", cfg, "in.mp4"}, &stdout, &stderr)
			want := "tokenflow: --config " + cfg + ": " + tc.want + "\n"
			if got := stderr.String(); got != want || code != exitUsage {
				t.Errorf("exit %d, want %d\n-%s+%s", code, exitUsage, want, got)
			}
		})
	}
}

// TestConfigEmpty: a file with no settings changes nothing.
func TestConfigEmpty(t *testing.T) {
	t.Setenv("TOKENFLOW_MODEL", "")
	for _, text := range []string{"", "# only a comment\n", "---\n", "~\n", "{}\n"} {
		cfg := writeConfig(t, text)
		got, err := parseEdit(t, "--config", cfg, "in")
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		want := editDefaults
		want.Config, want.Input = cfg, "in"
		if d := diffFields(want, got); d != "" {
			t.Errorf("config %q (-want +got):\n%s", text, d)
		}
	}
}

// configKeysSorted is the table's keys in order, for messages.
func configKeysSorted() []string {
	var keys []string
	for k := range configKeys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// FuzzConfig feeds any bytes to --config through the real path (a fresh
// edit command, runF capturing the options): it must not panic, and it
// either fails with one usage line naming the file, or gives the options the
// same settings give as flags, which then pass or fail the same checks.
// The seeds in testdata/fuzz/FuzzConfig are written by hand, except
// official_config_pnp*: the two versions of configs/config_pnp.yaml in the
// official TokenFlow repository (the older one has skip_steps, refused),
// and official_config_sdedit, its configs/config_sdedit.yaml.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(officialConfig))
	dir := f.TempDir()
	path := filepath.Join(dir, "config.yaml")
	noInput := filepath.Join(dir, "no-such-input") // check stops there, before making output_path
	parse := func(t *testing.T, args ...string) (*EditOptions, *pflag.FlagSet, error) {
		o, cmd, err := parseArgs(t, newCmdEdit, args...)
		return o, cmd.Flags(), err
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		o, fs, err := parse(t, "--config", path)
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "--config "+path+": ") || !errors.Is(err, errUsage) {
				t.Fatalf("error %q: want one usage line starting \"--config %s: \"", msg, path)
			}
			return
		}
		var args []string
		fs.Visit(func(f *pflag.Flag) {
			if f.Name != "config" {
				args = append(args, "--"+f.Name+"="+f.Value.String())
			}
		})
		if o.Input != "" {
			args = append(args, "--", o.Input)
		}
		byFlags, _, err := parse(t, args...)
		if err != nil {
			t.Fatalf("the config's settings as flags %q: %v", args, err)
		}
		got, want := viewEdit(o), viewEdit(byFlags)
		got.Config, got.OutDir = "", ""
		if d := diffFields(want, got); d != "" {
			t.Fatalf("config against flags %q (-flags +config):\n%s", args, d)
		}
		o.Input, byFlags.Input = noInput, noInput
		errConfig, errFlags := o.check(), byFlags.check()
		if fmt.Sprint(errConfig) != fmt.Sprint(errFlags) {
			t.Fatalf("check: config gives %v, flags %q give %v", errConfig, args, errFlags)
		}
		if strings.Contains(fmt.Sprint(errConfig), "\n") {
			t.Fatalf("check: %q is not one line", errConfig)
		}
	})
}

// officialSDEditConfig is configs/config_sdedit.yaml of the official
// TokenFlow repository (omerbt/TokenFlow), as it is.
const officialSDEditConfig = `# general
seed: 1
device: 'cuda'
output_path: 'tokenflow-results'

# data
data_path: 'wolf-part'
latents_path: 'latents' # should be the same as 'save_dir' arg used in preprocess
n_inversion_steps: 100 # for retrieving the latents of the inversion
n_frames: 40

# diffusion
sd_version: '2.1'
guidance_scale: 7.5
n_timesteps: 50
prompt: a shiny silver robotic wolf
negative_prompt: "ugly, blurry, low res, unrealistic, unaesthetic"
batch_size: 8

# SDEdit params 
start: 0.9 # start sampling from t = start * 1000
use_ddim_noise: True # use ddim noise to noise the images. better structure preservation`

// TestConfigSDEdit: the official config_sdedit.yaml works as it is (an
// SDEdit edit, start its strength); start is the first frame in a PnP
// edit and the strength in an SDEdit one, whichever says the mode.
func TestConfigSDEdit(t *testing.T) {
	t.Setenv("TOKENFLOW_MODEL", "")
	official := writeConfig(t, officialSDEditConfig)
	got, err := parseEdit(t, "--config", official)
	if err != nil {
		t.Fatal(err)
	}
	want := editDefaults
	want.Config, want.Seed, want.Device, want.OutDir = official, 1, "cuda", "tokenflow-results"
	want.Input, want.CacheDir, want.InversionSteps, want.Frames, want.FramesSet = "wolf-part", "latents", 100, 40, true
	want.Model, want.Guidance, want.Steps, want.Prompt, want.BatchSize = "stabilityai/stable-diffusion-2-1-base", 7.5, 50, "a shiny silver robotic wolf", 8
	want.Mode, want.Strength, want.DDIMNoise = "sdedit", 0.9, true
	if d := diffFields(want, got); d != "" {
		t.Errorf("official config_sdedit.yaml (-want +got):\n%s", d)
	}

	for _, tc := range []struct {
		name, yaml string
		args       []string
		change     func(*editView)
	}{
		{"start in a PnP edit is the first frame", "start: 2\n", nil, func(v *editView) { v.Start = 2 }},
		{"start with mode: sdedit", "mode: sdedit\nstart: 0.6\n", nil, func(v *editView) { v.Mode, v.Strength = "sdedit", 0.6 }},
		{"start after mode: sdedit", "start: 0.6\nmode: sdedit\n", nil, func(v *editView) { v.Mode, v.Strength = "sdedit", 0.6 }},
		{"start with --mode sdedit", "start: 0.6\n", []string{"--mode", "sdedit"}, func(v *editView) { v.Mode, v.Strength = "sdedit", 0.6 }},
		{"--strength overrides start", "use_ddim_noise: true\nstart: 0.6\n", []string{"--strength", "0.3"}, func(v *editView) { v.Mode, v.Strength = "sdedit", 0.3 }},
		{"--mode pnp overrides use_ddim_noise's sdedit", "use_ddim_noise: true\n", []string{"--mode", "pnp"}, func(*editView) {}},
		{"--mode pnp: start is the first frame", "start: 3\nuse_ddim_noise: true\n", []string{"--mode", "pnp"}, func(v *editView) { v.Start = 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkConfig(t, tc.yaml, tc.args, tc.change)
		})
	}

	// Errors: one usage line naming the file's line or the flag.
	for _, tc := range []struct {
		yaml string
		args []string
		want string
	}{
		{"mode: sdedit\nstart: 0.6\nstrength: 0.5\n", nil, "--config %s: line 3: strength and start (line 2) both set --strength: keep one"},
		{"use_ddim_noise: true\nddim_noise: true\n", nil, "--config %s: line 2: ddim_noise and use_ddim_noise (line 1) both set --ddim-noise: keep one"},
		{"use_ddim_noise: maybe\n", nil, "--config %s: line 1: use_ddim_noise \"maybe\": "},
		{"mode: sdedit\nstart: most\n", nil, "--config %s: line 2: start \"most\": "},
		{"start: 0.6\n", nil, "--config %s: line 1: start \"0.6\": "}, // a PnP edit: the first frame
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			cfg := writeConfig(t, tc.yaml)
			var stdout, stderr bytes.Buffer
			code := Main(append([]string{"edit", "--config", cfg, "in.mp4"}, tc.args...), &stdout, &stderr)
			want := "tokenflow: " + fmt.Sprintf(tc.want, cfg)
			if got := stderr.String(); !strings.HasPrefix(got, want) || strings.Count(got, "\n") != 1 || code != exitUsage {
				t.Errorf("exit %d, want %d\n-%s\n+%s", code, exitUsage, want, got)
			}
		})
	}
}
