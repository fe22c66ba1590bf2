package main

// Flag parsing, tested by capturing the options through runF (no model, no
// runtime): defaults, overrides, and --config with the official keys.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/tokenflow/tokenflow/internal/pipeline"
)

// editView is what parsing fills in an EditOptions, flattened for diffs.
type editView struct {
	Input, Model, Size, FolderFPS, Device, CacheDir string
	OriginalConfig                                  string
	Start, Frames, Stride, Threads, BatchSize       int
	FramesSet, JSON                                 bool
	Prompt, NegativePrompt, InversionPrompt         string
	InversionSteps, Steps                           int
	Guidance, PnPAttn, PnPConv                      float64
	Keyframes                                       string
	Seed                                            uint64
	Out, SaveLatents, FramesDir, Config, OutDir     string
	Force, NoResume                                 bool
	DType                                           string
	Prompts, NegativePrompts                        []string
	PromptsFile                                     string
	PromptsPerCall                                  int
	KeyframeWindow                                  int

	Mode      string
	Strength  float64
	DDIMNoise bool

	InversionBatch int
}

func viewEdit(o *EditOptions) editView {
	return editView{
		Input: o.Input, Model: o.Model, Size: o.Size, FolderFPS: o.FolderFPS, Device: o.Device, CacheDir: o.CacheDir,
		OriginalConfig: o.OriginalConfig,
		Start:          o.Start, Frames: o.Frames, Stride: o.Stride, Threads: o.Threads, BatchSize: o.BatchSize,
		FramesSet: o.framesSet, JSON: o.JSON,
		Prompt: o.Prompt, NegativePrompt: o.NegativePrompt, InversionPrompt: o.InversionPrompt,
		InversionSteps: o.InversionSteps, Steps: o.Steps, Guidance: o.Guidance, PnPAttn: o.PnPAttn, PnPConv: o.PnPConv,
		Keyframes: o.Keyframes, Seed: o.Seed, Out: o.Out, SaveLatents: o.SaveLatents, FramesDir: o.FramesDir,
		Config: o.Config, OutDir: o.outDir, Force: o.Force, NoResume: o.NoResume, DType: o.DType,
		Prompts: o.Prompts, NegativePrompts: o.NegativePrompts, PromptsFile: o.PromptsFile, PromptsPerCall: o.PromptsPerCall, KeyframeWindow: o.KeyframeWindow,
		Mode: o.Mode, Strength: o.Strength, DDIMNoise: o.DDIMNoise,
		InversionBatch: o.InvBatch,
	}
}

// invertView is what parsing fills in an InvertOptions.
type invertView struct {
	Input, Model, Size, FolderFPS, Device, CacheDir string
	Start, Frames, Stride, Threads, BatchSize       int
	FramesSet, JSON                                 bool
	InversionPrompt                                 string
	InversionSteps, Steps, SaveSteps                int
	Reconstruct, Force, NoResume                    bool
}

func viewInvert(o *InvertOptions) invertView {
	return invertView{
		Input: o.Input, Model: o.Model, Size: o.Size, FolderFPS: o.FolderFPS, Device: o.Device, CacheDir: o.CacheDir,
		Start: o.Start, Frames: o.Frames, Stride: o.Stride, Threads: o.Threads, BatchSize: o.BatchSize,
		FramesSet: o.framesSet, JSON: o.JSON, InversionPrompt: o.InversionPrompt, InversionSteps: o.InversionSteps, Steps: o.Steps, SaveSteps: o.SaveSteps,
		Reconstruct: o.Reconstruct, Force: o.Force, NoResume: o.NoResume,
	}
}

// diffFields lists the fields of two values of one struct type that differ,
// one "Field: -want +got" line each ("" when equal).
func diffFields(want, got any) string {
	w, g := reflect.ValueOf(want), reflect.ValueOf(got)
	var b strings.Builder
	for i := range w.NumField() {
		if wf, gf := w.Field(i).Interface(), g.Field(i).Interface(); !reflect.DeepEqual(wf, gf) {
			fmt.Fprintf(&b, "%s: -%#v +%#v\n", w.Type().Field(i).Name, wf, gf)
		}
	}
	return b.String()
}

// parseArgs runs the command newCmd makes on args, its output discarded,
// with a runF that keeps the options: what the flags gave (nil when the
// command failed before runF), the command and its error. A command that
// succeeds without calling runF fails t.
func parseArgs[O any](t testing.TB, newCmd func(*globalOptions, func(context.Context, *O) error) *cobra.Command, args ...string) (*O, *cobra.Command, error) {
	t.Helper()
	var got *O
	cmd := newCmd(&globalOptions{Out: io.Discard, Err: io.Discard}, func(_ context.Context, o *O) error {
		got = o
		return nil
	})
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.Execute()
	if err == nil && got == nil {
		t.Fatal("runF was not called")
	}
	return got, cmd, err
}

// parseView is parseArgs' options seen through view.
func parseView[O, V any](t *testing.T, newCmd func(*globalOptions, func(context.Context, *O) error) *cobra.Command, view func(*O) V, args []string) (V, error) {
	t.Helper()
	o, _, err := parseArgs(t, newCmd, args...)
	if err != nil {
		var zero V
		return zero, err
	}
	return view(o), nil
}

func parseEdit(t *testing.T, args ...string) (editView, error) {
	t.Helper()
	return parseView(t, newCmdEdit, viewEdit, args)
}

func parseInvert(t *testing.T, args ...string) (invertView, error) {
	t.Helper()
	return parseView(t, newCmdInvert, viewInvert, args)
}

// parseCase is a command line and what it changes in the default options.
type parseCase[V any] struct {
	name   string
	args   []string
	change func(*V)
}

// checkParseCases runs checkParsed on each case, as a subtest.
func checkParseCases[V any](t *testing.T, parse func(*testing.T, ...string) (V, error), defaults V, cases []parseCase[V]) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkParsed(t, parse, defaults, tc.args, tc.change)
		})
	}
}

// checkParsed parses args and checks every field of what they give against
// defaults with change applied; it returns what they gave.
func checkParsed[V any](t *testing.T, parse func(*testing.T, ...string) (V, error), defaults V, args []string, change func(*V)) V {
	t.Helper()
	got, err := parse(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	want := defaults
	change(&want)
	if d := diffFields(want, got); d != "" {
		t.Errorf("%s (-want +got):\n%s", strings.Join(args, " "), d)
	}
	return got
}

// editDefaults is edit with no flags: the official TokenFlow defaults
// (config_pnp.yaml and preprocess.py).
var editDefaults = editView{
	Model: pipeline.DefaultModel, FolderFPS: "10", Device: "cpu", Stride: 1, BatchSize: 8,
	NegativePrompt: "ugly, blurry, low res, unrealistic, unaesthetic",
	InversionSteps: 500, Steps: 50, Guidance: 7.5, PnPAttn: 0.5, PnPConv: 0.8,
	Keyframes: "random", Seed: 1, KeyframeWindow: pipeline.DefaultKeyframeWindow,
	Mode: "pnp", Strength: 0.9, DDIMNoise: true,
}

var invertDefaults = invertView{
	Model: pipeline.DefaultModel, FolderFPS: "10", Device: "cpu", Stride: 1, BatchSize: 8,
	InversionSteps: 500, Steps: 50, SaveSteps: 50,
}

func TestEditFlags(t *testing.T) {
	t.Setenv("TOKENFLOW_MODEL", "")
	checkParseCases(t, parseEdit, editDefaults, []parseCase[editView]{
		{"defaults", []string{"in.mp4"}, func(v *editView) { v.Input = "in.mp4" }},
		{"no input yet (checked by runEdit)", nil, func(*editView) {}},
		{"overrides", []string{
			"--prompt", "a red cube", "--negative-prompt", "", "--inversion-prompt", "a ball",
			"--inversion-steps", "10", "--steps", "10", "--guidance", "5", "--pnp-attn", "0.25", "--pnp-conv", "1",
			"--keyframes", "middle", "--seed", "42", "--out", "o.mp4", "--force", "--save-latents", "l.safetensors",
			"--frames-dir", "fr", "--model", "m", "--size", "64x32", "--start", "2", "--frames", "5", "--stride", "3",
			"--fps", "30000/1001", "--device", "cuda", "--threads", "2", "--cache-dir", "c", "--batch-size", "4", "--json",
			"--keyframe-window", "0", "clip"}, func(v *editView) {
			*v = editView{Input: "clip", Model: "m", Size: "64x32", FolderFPS: "30000/1001", Device: "cuda", CacheDir: "c",
				Start: 2, Frames: 5, Stride: 3, Threads: 2, BatchSize: 4, FramesSet: true, JSON: true,
				Prompt: "a red cube", NegativePrompt: "", InversionPrompt: "a ball", InversionSteps: 10, Steps: 10,
				Guidance: 5, PnPAttn: 0.25, PnPConv: 1, Keyframes: "middle", Seed: 42, KeyframeWindow: 0,
				Out: "o.mp4", SaveLatents: "l.safetensors", FramesDir: "fr", Force: true,
				Mode: "pnp", Strength: 0.9, DDIMNoise: true}
		}},
		{"short flags", []string{"-p", "x", "-o", "y.mp4", "in"}, func(v *editView) { v.Prompt, v.Out, v.Input = "x", "y.mp4", "in" }},
		{"--frames 0 is recorded as given", []string{"--frames", "0", "in"}, func(v *editView) { v.Input, v.FramesSet = "in", true }},
	})
}

func TestEditFlagsModelFromEnv(t *testing.T) {
	t.Setenv("TOKENFLOW_MODEL", "/models/sd15")
	got, err := parseEdit(t, "in")
	if err != nil {
		t.Fatal(err)
	}
	if got.Model != "/models/sd15" {
		t.Errorf("model %q, want $TOKENFLOW_MODEL /models/sd15", got.Model)
	}
	if got, _ = parseEdit(t, "--model", "m", "in"); got.Model != "m" {
		t.Errorf("--model m: model %q", got.Model)
	}
}

func TestInvertFlags(t *testing.T) {
	t.Setenv("TOKENFLOW_MODEL", "")
	checkParseCases(t, parseInvert, invertDefaults, []parseCase[invertView]{
		{"defaults", []string{"in.mp4"}, func(v *invertView) { v.Input = "in.mp4" }},
		{"overrides", []string{"--inversion-prompt", "a ball", "--steps", "10", "--save-steps", "5", "--reconstruct", "--force",
			"--model", "m", "--size", "32x32", "--start", "1", "--frames", "4", "--stride", "2", "--fps", "12",
			"--threads", "1", "--cache-dir", "c", "--batch-size", "3", "--json", "--no-resume", "dir"}, func(v *invertView) {
			*v = invertView{Input: "dir", Model: "m", Size: "32x32", FolderFPS: "12", Device: "cpu", CacheDir: "c",
				Start: 1, Frames: 4, Stride: 2, Threads: 1, BatchSize: 3, FramesSet: true, JSON: true,
				InversionPrompt: "a ball", InversionSteps: 500, Steps: 10, SaveSteps: 5, Reconstruct: true, Force: true, NoResume: true}
		}},
	})
}

// officialConfig is a config_pnp.yaml as the official TokenFlow repository
// ships it, with this test's values.
const officialConfig = `# general
seed: 7
device: 'cuda'
output_path: 'tokenflow-results'

# data
data_path: 'data/woman-running'
latents_path: 'latents'
n_inversion_steps: 20
n_frames: 16

# diffusion
sd_version: '2.1'
guidance_scale: 6.5
n_timesteps: 10
prompt: "a marble sculpture of a woman running"
negative_prompt: "ugly, blurry"
batch_size: 4

# pnp params -- injection thresholds ∈ [0, 1]
pnp_attn_t: 0.4
pnp_f_t: 0.7
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config_pnp.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEditConfig(t *testing.T) {
	t.Setenv("TOKENFLOW_MODEL", "")
	official := writeConfig(t, officialConfig)
	fromFile := func(v *editView) {
		v.Config = official
		v.Seed, v.Device, v.OutDir = 7, "cuda", "tokenflow-results"
		v.Input, v.CacheDir, v.InversionSteps, v.Frames, v.FramesSet = "data/woman-running", "latents", 20, 16, true
		v.Model = "stabilityai/stable-diffusion-2-1-base"
		v.Guidance, v.Steps, v.Prompt, v.NegativePrompt, v.BatchSize = 6.5, 10, "a marble sculpture of a woman running", "ugly, blurry", 4
		v.PnPAttn, v.PnPConv = 0.4, 0.7
	}
	checkParseCases(t, parseEdit, editDefaults, []parseCase[editView]{
		{"official keys", []string{"--config", official}, fromFile},
		{"flags override the file", []string{"--config", official, "--steps", "5", "--prompt", "a bronze statue",
			"--guidance", "7.5", "--batch-size", "2", "--frames", "8", "--seed", "3", "--cache-dir", "c",
			"--pnp-attn", "0.5", "--pnp-conv", "0.8", "--inversion-steps", "50", "--negative-prompt", "", "--device", "cpu",
			"--model", "m"}, func(v *editView) {
			fromFile(v)
			v.Steps, v.Prompt, v.Guidance, v.BatchSize, v.Frames, v.Seed, v.CacheDir = 5, "a bronze statue", 7.5, 2, 8, 3, "c"
			v.PnPAttn, v.PnPConv, v.InversionSteps, v.NegativePrompt, v.Device, v.Model = 0.5, 0.8, 50, "", "cpu", "m"
		}},
		{"the input argument overrides data_path", []string{"--config", official, "clip.mp4"}, func(v *editView) {
			fromFile(v)
			v.Input = "clip.mp4"
		}},
		{"--out overrides output_path", []string{"--config", official, "-o", "x.mp4"}, func(v *editView) {
			fromFile(v)
			v.Out, v.OutDir = "x.mp4", ""
		}},
	})
}

func TestEditConfigOwnKeys(t *testing.T) {
	t.Setenv("TOKENFLOW_MODEL", "")
	cfg := writeConfig(t, `prompt: a cat
model: testdata/tiny
inversion_prompt: a dog
keyframes: middle
size: 64x48
start: 2
stride: 2
fps: "24"
out: cat.mp4
threads: 1
cache_dir: cache
sd_version: "1.5"   # model: wins over it
`)
	checkParsed(t, parseEdit, editDefaults, []string{"--config", cfg, "in"}, func(want *editView) {
		want.Config, want.Input, want.Prompt, want.Model, want.InversionPrompt, want.Keyframes = cfg, "in", "a cat", "testdata/tiny", "a dog", "middle"
		want.Size, want.Start, want.Stride, want.FolderFPS, want.Out, want.Threads, want.CacheDir = "64x48", 2, 2, "24", "cat.mp4", 1, "cache"
	})
	// The official sd_version names a hub model, unless --model is given.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "runwayml/stable-diffusion-v1-5"},
		{[]string{"--model", "m"}, "m"},
	} {
		cfg := writeConfig(t, "sd_version: '1.5'\nprompt: x\n")
		got, err := parseEdit(t, append([]string{"--config", cfg, "in"}, tc.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if got.Model != tc.want {
			t.Errorf("sd_version 1.5 %v: model %q, want %q", tc.args, got.Model, tc.want)
		}
	}
}

func TestEditConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "prompt: x\nbogus_key: 1\n", []string{"line 2", "bogus_key"}},
		{"wrong type", "prompt: x\nn_timesteps: \"ten\"\n", []string{"line 2", "ten"}},
		{"unsupported sd_version", "sd_version: '3.0'\n", []string{"sd_version", "3.0"}},
		{"not YAML", "prompt: [unclosed\n", []string{"config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, tc.yaml)
			var stdout, stderr bytes.Buffer
			code := Main([]string{"edit", "--config", cfg, "in.mp4"}, &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit %d, want %d (usage)", code, exitUsage)
			}
			line := stderr.String()
			if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || !strings.HasPrefix(line, "tokenflow: --config "+cfg+": ") {
				t.Errorf("stderr %q: want one line \"tokenflow: --config %s: ...\"", line, cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("stderr %q does not mention %q", line, w)
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		missing := filepath.Join(t.TempDir(), "nope.yaml")
		if code := Main([]string{"edit", "--config", missing, "in.mp4"}, &stdout, &stderr); code != exitUsage {
			t.Errorf("exit %d, want %d", code, exitUsage)
		}
		if !strings.Contains(stderr.String(), missing) {
			t.Errorf("stderr %q does not name %s", stderr.String(), missing)
		}
	})
}

// TestUsageErrors runs Main in process for errors found before any work:
// exit 2 and one "tokenflow: " line naming the flag.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"edit", "--bogus", "in"}, "--bogus"},
		{[]string{"edit", "-p", "x", "a.mp4", "b.mp4"}, "too many arguments"},
		{[]string{"invert"}, "no input"},
		{[]string{"edit", "--steps", "ten", "in"}, "--steps"},
		{[]string{"edit", "in.mp4"}, "--prompt is required"},
		{[]string{"edit", "-p", "   ", "in.mp4"}, "--prompt is required"},
		{[]string{"edit", "-p", "x"}, "no input"},
		{[]string{"edit", "-p", "x", "--keyframes", "first", "in.mp4"}, "--keyframes"},
		{[]string{"edit", "-p", "x", "--keyframe-window", "1", "in.mp4"}, "--keyframe-window 1"},
		{[]string{"edit", "-p", "x", "--keyframe-window", "-2", "in.mp4"}, "--keyframe-window -2"},
		{[]string{"edit", "-p", "x", "--size", "63x64", "in.mp4"}, "63x64"},
		{[]string{"edit", "-p", "x", "--inversion-steps", "0", "in.mp4"}, "--inversion-steps 0"},
		{[]string{"edit", "-p", "x", "--guidance", "NaN", "in.mp4"}, "--guidance"},
		{[]string{"edit", "-p", "x", "--pnp-attn", "NaN", "in.mp4"}, "--pnp-attn"},
		{[]string{"edit", "-p", "x", "--stride", "0", "in.mp4"}, "--stride 0"},
		{[]string{"edit", "-p", "x", "--start", "-1", "in.mp4"}, "--start -1"},
		{[]string{"edit", "-p", "x", "--frames", "0", "in.mp4"}, "--frames 0"},
		{[]string{"edit", "-p", "x", "--threads", "-1", "in.mp4"}, "--threads -1"},
		{[]string{"edit", "-p", "x", "--fps", "fast", "in.mp4"}, "--fps fast"},
		{[]string{"edit", "-p", "x", "--device", "tpu", "in.mp4"}, "tpu"},
		{[]string{"invert", "--save-steps", "0", "in.mp4"}, "--save-steps 0"},
		{[]string{"models", "info", "--size", "big", "m"}, "big"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(tc.args, &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit %d, want %d (usage); stderr %q", code, exitUsage, stderr.String())
			}
			line := stderr.String()
			if strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "tokenflow: ") {
				t.Errorf("stderr %q: want one \"tokenflow: \" line", line)
			}
			if !strings.Contains(line, tc.want) {
				t.Errorf("stderr %q does not mention %q", line, tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}
