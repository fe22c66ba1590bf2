package pipeline

import (
	"path/filepath"
	"strconv"
	"strings"
	"unicode"

	"github.com/tokenflow/tokenflow/internal/param"
)

// Target is one prompt of an edit with its outputs.
type Target struct {
	Prompt, NegativePrompt      string
	Out, SaveLatents, FramesDir string // "" for SaveLatents and FramesDir not asked for
}

// AllPrompts is Prompt (when set) followed by Prompts.
func (r *EditRequest) AllPrompts() []string {
	var ps []string
	if r.Prompt != "" {
		ps = append(ps, r.Prompt)
	}
	return append(ps, r.Prompts...)
}

// Template placeholders of the output paths of several prompts.
const (
	PlaceN    = "{n}"    // the prompt's position, from 1
	PlaceSlug = "{slug}" // PromptSlug of the prompt
)

// slugLen is the most runes of a prompt's slug.
const slugLen = 40

// PromptSlug is a prompt as a piece of a file name: lower-cased, every
// rune that is not a letter or a digit replaced by '-', cut to 40 runes
// ("A marble statue!" is "a-marble-statue-").
func PromptSlug(prompt string) string {
	var b strings.Builder
	for i, r := range []rune(strings.ToLower(prompt)) {
		if i == slugLen {
			break
		}
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			r = '-'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// DefaultPromptTemplate is the Out template of several prompts when the
// request names none: <input>.{n}-{slug}.tokenflow.mp4 next to the input.
func DefaultPromptTemplate(input string) string {
	clean := filepath.Clean(input)
	return clean[:len(clean)-len(filepath.Ext(clean))] + "." + PlaceN + "-" + PlaceSlug + ".tokenflow.mp4"
}

// DefaultPromptOut is where Edit writes prompt n (from 1) of several when
// the request names no Out: <input>.<n>-<slug>.tokenflow.mp4.
func DefaultPromptOut(input string, n int, prompt string) string {
	return expand(DefaultPromptTemplate(input), n, prompt)
}

// isTemplate reports whether path holds {n} or {slug}.
func isTemplate(path string) bool {
	return strings.Contains(path, PlaceN) || strings.Contains(path, PlaceSlug)
}

// expand is the template path for prompt n (from 1).
func expand(path string, n int, prompt string) string {
	return strings.NewReplacer(PlaceN, strconv.Itoa(n), PlaceSlug, PromptSlug(prompt)).Replace(path)
}

// Targets are the request's prompts with their outputs, in order. With
// one prompt the paths are the request's own (Out "" is DefaultOut), with
// {n} and {slug} filled in if they hold them. With several, Out ""
// is DefaultPromptOut for each, and every path given must be a template
// holding {n} or {slug}; two prompts may not share a path.
func (r *EditRequest) Targets() ([]Target, error) {
	prompts := r.AllPrompts()
	P := len(prompts)
	for _, o := range []struct{ name, path string }{{"out", r.Out}, {"save_latents", r.SaveLatents}, {"frames_dir", r.FramesDir}} {
		if P > 1 && o.path != "" && !isTemplate(o.path) {
			return nil, param.Errorf(o.name, o.path, "names one file for %d prompts: give a template holding {n} (the prompt's number) or {slug} (its words), e.g. %s", P, exampleTemplate(o.path))
		}
	}
	ts := make([]Target, P)
	seen := map[string]int{}
	for i, p := range prompts {
		n := i + 1
		t := Target{Prompt: p, NegativePrompt: r.NegativePrompt}
		if len(r.NegativePrompts) == P {
			t.NegativePrompt = r.NegativePrompts[i]
		}
		switch {
		case r.Out != "":
			t.Out = expand(r.Out, n, p)
		case P == 1:
			t.Out = DefaultOut(r.Input)
		default:
			t.Out = DefaultPromptOut(r.Input, n, p)
		}
		if r.SaveLatents != "" {
			t.SaveLatents = expand(r.SaveLatents, n, p)
		}
		if r.FramesDir != "" {
			t.FramesDir = expand(r.FramesDir, n, p)
		}
		for _, o := range []struct{ name, path string }{{"out", t.Out}, {"save_latents", t.SaveLatents}, {"frames_dir", t.FramesDir}} {
			if o.path == "" {
				continue
			}
			key := filepath.Clean(o.path)
			if prev, ok := seen[key]; ok {
				return nil, param.Errorf(o.name, o.path, "is the path of prompts %d and %d (the same words): put {n} in the template", prev, n)
			}
			seen[key] = n
		}
		ts[i] = t
	}
	return ts, nil
}

// exampleTemplate is path with "-{n}" before its extension.
func exampleTemplate(path string) string {
	ext := filepath.Ext(path)
	return path[:len(path)-len(ext)] + "-" + PlaceN + ext
}
