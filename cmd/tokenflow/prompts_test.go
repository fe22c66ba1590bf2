package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
)

// Several prompts in one run (README "Several prompts"), through the real
// binary, ONNX Runtime and ffmpeg.

// promptRunArgs are the settings of the runs compared below: the inv10
// fixture's, with random keyframes (so that the runs must draw the same).
func promptRunArgs(t *testing.T, name, cacheDir string) []string {
	return []string{"edit", "--model", model(t, name), "--inversion-prompt", "a ball",
		"--inversion-steps", "10", "--steps", "10", "--batch-size", "4", "--keyframes", "random", "--seed", "7",
		"--size", "64x64", "--fps", "10", "--cache-dir", cacheDir, "--json"}
}

// TestEditPromptsMatchSingleRuns: three prompts edited in one run give
// each prompt's --save-latents equal to a run of that prompt alone (same
// seed and settings), bit for bit: the one run's UNet calls hold
// [source | uncond_1..3 | cond_1..3] where the single runs' hold [source |
// uncond | cond], and ONNX Runtime's CPU kernels compute each batch row on
// its own (models.TestTokenFlowGraphPrompts checks that per pass). The one
// run inverts once and makes 1 + 2x3 = 7 UNet branch evaluations per frame
// and pass where three runs make 9.
func TestEditPromptsMatchSingleRuns(t *testing.T) {
	prompts := []string{"a red cube", "a bronze statue", "a watercolor painting"}
	for _, name := range []string{"tiny-sd15", "tiny-sd21"} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			in := fixtureFrames(t, name)
			args := func(cache string) []string { return promptRunArgs(t, name, filepath.Join(d, cache)) }
			var want [][]float32
			for i, p := range prompts {
				lat := filepath.Join(d, fmt.Sprintf("single%d.safetensors", i+1))
				res, _ := tfJSON[editResult](t, d, append(args("single-cache"), "--prompt", p,
					"-o", filepath.Join(d, fmt.Sprintf("single%d.mp4", i+1)), "--save-latents", lat, in)...)
				if len(res.Prompts) != 1 || res.Prompts[0].Prompt != p || res.Output == "" {
					t.Fatalf("single run of %q: %+v", p, res)
				}
				got, _ := fixture.Open(t, lat).F32("latents")
				want = append(want, got)
			}

			res, r := tfJSON[editResult](t, d, append(args("multi-cache"), "--prompt", prompts[0], "--prompt", prompts[1], "--prompt", prompts[2],
				"-o", filepath.Join(d, "multi-{n}-{slug}.mp4"), "--save-latents", filepath.Join(d, "multi-{n}.safetensors"), in)...)
			if res.InversionReused {
				t.Error("the run reused an inversion from an empty cache")
			}
			// one inversion (10 steps x 8 frames), then 10 steps x 7 branches
			// x (2 keyframes + 8 frames)
			if wantEvals := int64(10*8 + 10*7*(2+8)); res.UNetFrames != wantEvals || res.PromptsPerCall != 3 {
				t.Errorf("unet_frame_evaluations %d, prompts_per_call %d; want %d and 3", res.UNetFrames, res.PromptsPerCall, wantEvals)
			}
			if !strings.Contains(r.Stderr, "3 prompts, 3 per UNet call: 7 branches per frame") {
				t.Errorf("stderr does not announce the shared passes:\n%s", r.Stderr)
			}
			if len(res.Prompts) != 3 {
				t.Fatalf("%d JSON entries, want 3: %+v", len(res.Prompts), res.Prompts)
			}
			for i, p := range res.Prompts {
				wantOut := filepath.Join(d, fmt.Sprintf("multi-%d-%s.mp4", i+1, strings.ReplaceAll(prompts[i], " ", "-")))
				if p.Prompt != prompts[i] || p.Output != wantOut || p.Error != "" || p.Latents != filepath.Join(d, fmt.Sprintf("multi-%d.safetensors", i+1)) {
					t.Errorf("entry %d: %+v, want output %s", i+1, p, wantOut)
				}
				if _, err := os.Stat(p.Output); err != nil {
					t.Errorf("prompt %d: %v", i+1, err)
				}
				got, _ := fixture.Open(t, p.Latents).F32("latents")
				diff := fixture.Close(t, fmt.Sprintf("prompt %d (%q) of the one run vs its own run", i+1, prompts[i]), got, want[i], 0, 0)
				t.Logf("prompt %d: max|diff| %g", i+1, diff.MaxAbs)
			}
			if slices.Equal(want[0], want[1]) {
				t.Fatal("two prompts gave the same latents: the comparison above would not see a prompt swapped")
			}

			// Two prompts per UNet call: the calls [source | uncond_1,2 |
			// cond_1,2] and [source | uncond_3 | cond_3], the same latents.
			if name == "tiny-sd21" {
				res, _ := tfJSON[editResult](t, d, append(args("multi-cache"), "--prompt", prompts[0], "--prompt", prompts[1], "--prompt", prompts[2],
					"--prompts-per-call", "2", "-o", filepath.Join(d, "two-{n}.mp4"), "--save-latents", filepath.Join(d, "two-{n}.safetensors"), in)...)
				if wantEvals := int64(10 * (5 + 3) * (2 + 8)); res.UNetFrames != wantEvals || res.PromptsPerCall != 2 || !res.InversionReused {
					t.Errorf("--prompts-per-call 2: unet_frame_evaluations %d, prompts_per_call %d, inversion reused %v; want %d, 2, true", res.UNetFrames, res.PromptsPerCall, res.InversionReused, wantEvals)
				}
				for i, p := range res.Prompts {
					got, _ := fixture.Open(t, p.Latents).F32("latents")
					fixture.Close(t, fmt.Sprintf("prompt %d, two per call, vs its own run", i+1), got, want[i], 0, 0)
				}
			}

			// Without --json: one output path per line, in order.
			rr := tfOK(t, d, append(slices.DeleteFunc(args("multi-cache"), func(s string) bool { return s == "--json" }),
				"--prompt", prompts[0], "--prompt", prompts[1], "-o", filepath.Join(d, "plain-{n}.mp4"), in)...)
			if got := strings.Fields(rr.Stdout); !slices.Equal(got, []string{filepath.Join(d, "plain-1.mp4"), filepath.Join(d, "plain-2.mp4")}) {
				t.Errorf("stdout %q", rr.Stdout)
			}
		})
	}
}

// TestEditPromptsOneFails: one prompt of two goes infinite (guidance 3e38
// overflows float32 wherever its cond and uncond noise differ by more than
// about 1), the other does not (it is the negative prompt itself, so its
// cond and uncond noise are equal and the guidance adds exactly 0). The
// other one's outputs are written and equal its own run's; the failed
// one's are not; the exit status is 1 and the last line names the prompt.
func TestEditPromptsOneFails(t *testing.T) {
	const name = "tiny-sd21"
	d := t.TempDir()
	in := fixtureFrames(t, name)
	args := append(promptRunArgs(t, name, filepath.Join(d, "cache")), "--guidance", "3e38", "--negative-prompt", "a ball")
	single := filepath.Join(d, "single.safetensors")
	tfJSON[editResult](t, d, append(args, "--prompt", "a ball", "-o", filepath.Join(d, "single.mp4"), "--save-latents", single, in)...)

	r := tf(t, d, append(args, "--prompt", "a ball", "--prompt", "a red cube",
		"-o", filepath.Join(d, "out-{n}.mp4"), "--save-latents", filepath.Join(d, "out-{n}.safetensors"), in)...)
	if r.Code != exitError {
		t.Fatalf("exit %d, want %d\n%v", r.Code, exitError, r)
	}
	checkErrorLine(t, r, "1 of 2 prompts failed, the others' outputs are written", `prompt 2 ("a red cube")`,
		"edit step 1 of 10", "NaN or infinite latents", "nothing was written for it")
	var res editResult
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("stdout is not the JSON result: %v\n%v", err, r)
	}
	if len(res.Prompts) != 2 || res.Prompts[0].Error != "" || res.Prompts[1].Error == "" || res.Prompts[1].Output != "" {
		t.Fatalf("entries %+v", res.Prompts)
	}
	for _, p := range []string{"out-2.mp4", "out-2.safetensors"} {
		if _, err := os.Stat(filepath.Join(d, p)); err == nil {
			t.Errorf("the failed prompt's %s was written", p)
		}
	}
	want, _ := fixture.Open(t, single).F32("latents")
	got, _ := fixture.Open(t, filepath.Join(d, "out-1.safetensors")).F32("latents")
	fixture.Close(t, "the prompt that finished vs its own run", got, want, 0, 0)
	if _, err := os.Stat(filepath.Join(d, "out-1.mp4")); err != nil {
		t.Error(err)
	}
}

// TestEditPromptsNaming: the default names of several prompts, --prompts
// FILE, and the usage errors: one path for several prompts, two prompts on
// one path, an existing output of any prompt; all before any work.
func TestEditPromptsNaming(t *testing.T) {
	const name = "tiny-sd21"
	d := t.TempDir()
	in := filepath.Join(d, "clip")
	copyDir(t, fixtureFrames(t, name), in)
	list := filepath.Join(d, "prompts.txt")
	if err := os.WriteFile(list, []byte("# styles\nA Marble statue!\n\n   \n  a bronze statue  \n# done\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(d, "cache")
	base := []string{"edit", "--model", model(t, name), "--inversion-steps", "2", "--steps", "2", "--frames", "2",
		"--size", "64x64", "--keyframes", "middle", "--cache-dir", cache}

	// usage errors first: nothing is done, not even the cache folder
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--prompt", "a", "--prompt", "b", "-o", filepath.Join(d, "x.mp4")},
			[]string{"--out " + filepath.Join(d, "x.mp4") + ": names one file for 2 prompts: give a template holding {n} (the prompt's number) or {slug} (its words), e.g. " + filepath.Join(d, "x-{n}.mp4")}},
		{[]string{"--prompt", "a", "--prompts", list, "--save-latents", filepath.Join(d, "l.safetensors")},
			[]string{"--save-latents", "names one file for 3 prompts"}},
		{[]string{"--prompt", "a b", "--prompt", "A B", "-o", filepath.Join(d, "{slug}.mp4")},
			[]string{"--out " + filepath.Join(d, "a-b.mp4") + ": is the path of prompts 1 and 2 (the same words): put {n} in the template"}},
		{[]string{"--prompts", filepath.Join(d, "missing.txt")}, []string{"--prompts " + filepath.Join(d, "missing.txt") + ": no such file or directory"}},
	} {
		r := tf(t, d, append(append(slices.Clone(base), tc.args...), in)...)
		if r.Code != exitUsage {
			t.Errorf("%q: exit %d, want %d\n%v", tc.args, r.Code, exitUsage, r)
			continue
		}
		checkErrorLine(t, r, tc.want...)
	}
	// an existing output of the second prompt stops the run before any work
	second := filepath.Join(d, "clip.2-a-bronze-statue.tokenflow.mp4")
	if err := os.WriteFile(second, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := tf(t, d, append(append(slices.Clone(base), "--prompts", list), in)...)
	checkErrorLine(t, r, second+" already exists: pass --force to overwrite it")
	if _, err := os.Stat(cache); err == nil {
		t.Errorf("the refused run made the cache folder %s", cache)
	}
	if _, err := os.Stat(filepath.Join(d, "clip.1-a-marble-statue-.tokenflow.mp4")); err == nil {
		t.Error("the refused run wrote the first prompt's output")
	}
	if err := os.Remove(second); err != nil {
		t.Fatal(err)
	}

	// --prompts FILE and the default names
	res, _ := tfJSON[editResult](t, d, append(append(slices.Clone(base), "--json", "--prompts", list, "--frames-dir", filepath.Join(d, "frames-{n}")), in)...)
	var got []string
	for _, p := range res.Prompts {
		got = append(got, p.Prompt, filepath.Base(p.Output), filepath.Base(p.FramesDir))
	}
	want := []string{"A Marble statue!", "clip.1-a-marble-statue-.tokenflow.mp4", "frames-1", "a bronze statue", "clip.2-a-bronze-statue.tokenflow.mp4", "frames-2"}
	if !slices.Equal(got, want) {
		t.Errorf("prompts and outputs (-want +got):\n-%q\n+%q", want, got)
	}
	for _, p := range res.Prompts {
		for _, f := range []string{p.Output, filepath.Join(p.FramesDir, "00001.png")} {
			if _, err := os.Stat(f); err != nil {
				t.Error(err)
			}
		}
	}
}

// TestPromptFlags: --prompt repeats in order; the command line's prompts
// replace a config's list, its --negative-prompt the config's list.
func TestPromptFlags(t *testing.T) {
	v, err := parseEdit(t, "--prompt", "a", "-p", "b", "--prompt", "c", "--prompts", "f.txt", "in")
	if err != nil || v.Prompt != "a" || !slices.Equal(v.Prompts, []string{"b", "c"}) || v.PromptsFile != "f.txt" {
		t.Errorf("repeated --prompt: %+v, %v", v, err)
	}
	cfg := writeConfig(t, "prompt: [x, y]\nnegative_prompt: [n1, n2]\n")
	v, err = parseEdit(t, "--config", cfg, "--prompt", "a", "--negative-prompt", "m", "in")
	if err != nil || v.Prompt != "a" || len(v.Prompts) != 0 || v.NegativePrompt != "m" || v.NegativePrompts != nil {
		t.Errorf("flags over a config's lists: %+v, %v", v, err)
	}
	v, err = parseEdit(t, "--config", cfg, "in")
	if err != nil || v.Prompt != "x" || !slices.Equal(v.Prompts, []string{"y"}) || !slices.Equal(v.NegativePrompts, []string{"n1", "n2"}) {
		t.Errorf("a config's lists: %+v, %v", v, err)
	}
}
