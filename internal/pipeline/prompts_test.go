package pipeline

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/param"
)

func TestPromptSlug(t *testing.T) {
	for in, want := range map[string]string{
		"a marble statue":         "a-marble-statue",
		"A Bronze Statue!":        "a-bronze-statue-",
		"watercolor, 4k":          "watercolor--4k",
		"Ölgemälde":               "ölgemälde",
		strings.Repeat("ab ", 20): strings.Repeat("ab-", 13) + "a",
	} {
		if got := PromptSlug(in); got != want {
			t.Errorf("PromptSlug(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTargets: one prompt keeps today's names; several get
// <input>.<n>-<slug>.tokenflow.mp4 or the templates filled in; a path
// without {n} or {slug} for several prompts, and two prompts on one path,
// are refused naming the setting.
func TestTargets(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "clip.mp4")
	base := func() EditRequest {
		return EditRequest{InvertRequest: InvertRequest{Source: Source{Input: in}}, NegativePrompt: "ugly"}
	}
	outs := func(ts []Target) (o, l, f []string) {
		for _, t := range ts {
			o, l, f = append(o, t.Out), append(l, t.SaveLatents), append(f, t.FramesDir)
		}
		return
	}

	r := base()
	r.Prompt = "a marble statue"
	ts, err := r.Targets()
	if err != nil || len(ts) != 1 || ts[0].Out != filepath.Join(dir, "clip.tokenflow.mp4") || ts[0].NegativePrompt != "ugly" {
		t.Errorf("one prompt: %+v, %v", ts, err)
	}

	r = base()
	r.Prompt, r.Prompts = "a marble statue", []string{"A bronze statue"}
	ts, err = r.Targets()
	o, _, _ := outs(ts)
	if want := []string{filepath.Join(dir, "clip.1-a-marble-statue.tokenflow.mp4"), filepath.Join(dir, "clip.2-a-bronze-statue.tokenflow.mp4")}; err != nil || strings.Join(o, ",") != strings.Join(want, ",") {
		t.Errorf("default names %q (%v), want %q", o, err, want)
	}

	r.Out, r.SaveLatents, r.FramesDir = filepath.Join(dir, "{n}.mp4"), filepath.Join(dir, "{slug}.safetensors"), filepath.Join(dir, "frames-{n}-{slug}")
	r.NegativePrompts = []string{"blurry", "dark"}
	ts, err = r.Targets()
	o, l, f := outs(ts)
	if err != nil || o[1] != filepath.Join(dir, "2.mp4") || l[0] != filepath.Join(dir, "a-marble-statue.safetensors") ||
		f[1] != filepath.Join(dir, "frames-2-a-bronze-statue") || ts[1].NegativePrompt != "dark" {
		t.Errorf("templates: %+v, %v", ts, err)
	}

	for _, tc := range []struct {
		name   string
		change func(r *EditRequest)
		want   string
	}{
		{"out without placeholders", func(r *EditRequest) { r.Out = filepath.Join(dir, "out.mp4") }, "out"},
		{"latents without placeholders", func(r *EditRequest) { r.SaveLatents = filepath.Join(dir, "l.safetensors") }, "save_latents"},
		{"frames without placeholders", func(r *EditRequest) { r.FramesDir = filepath.Join(dir, "frames") }, "frames_dir"},
		{"same slug twice", func(r *EditRequest) {
			r.Prompts = []string{"A marble statue"}
			r.Out = filepath.Join(dir, "{slug}.mp4")
		}, "out"},
	} {
		r := base()
		r.Prompt, r.Prompts = "a marble statue", []string{"a bronze statue"}
		tc.change(&r)
		_, err := r.Targets()
		var pe *param.Error
		if !errors.As(err, &pe) || pe.Name != tc.want {
			t.Errorf("%s: %v, want an error about %s", tc.name, err, tc.want)
		}
	}

	r = base()
	r.Prompt, r.Prompts, r.NegativePrompts = "a", []string{"b"}, []string{"x", "y", "z"}
	r.Out = filepath.Join(dir, "{n}.mp4")
	var pe *param.Error
	if err := r.Validate(); !errors.As(err, &pe) || pe.Name != "negative_prompt" {
		t.Errorf("3 negative prompts for 2: %v", err)
	}
	r.NegativePrompts, r.Prompts = nil, []string{" "}
	if err := r.Validate(); !errors.As(err, &pe) || pe.Name != "prompt" {
		t.Errorf("an empty second prompt: %v", err)
	}
}
