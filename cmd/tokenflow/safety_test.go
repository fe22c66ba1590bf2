package main

// Nothing lost: the input is never an output, the outputs of one run appear
// together or not at all, and our temporary files do not outlive their
// writer. All through the real binary.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// symlinkIn is a setup that makes d/name a symbolic link to target.
func symlinkIn(target, name string) func(t *testing.T, d string) {
	return func(t *testing.T, d string) {
		if err := os.Symlink(target, filepath.Join(d, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOutputIsInput: an output that is the input, by name, through a
// symbolic or hard link, or inside the input's frame folder, is refused
// with one line (exit 2) whether or not --force is given, and the input is
// untouched.
func TestOutputIsInput(t *testing.T) {
	sd15 := model(t, "tiny-sd15")
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, d string) // makes d/in.mp4 or d/frames, and links
		input string                       // relative to d
		args  []string                     // "$D" is the case's folder
		want  string                       // the error line, "$D" as above
	}{
		{name: "--out is the input", input: "in.mp4", args: []string{"--out", "$D/in.mp4", "--force"},
			want: "tokenflow: --out $D/in.mp4: is the input $D/in.mp4: the edit would replace it; give another path"},
		{name: "--out is the input without --force", input: "in.mp4", args: []string{"--out", "$D/in.mp4"},
			want: "tokenflow: --out $D/in.mp4: is the input $D/in.mp4: the edit would replace it; give another path"},
		{name: "--out is a symbolic link to the input", input: "in.mp4", args: []string{"--out", "$D/link.mp4", "--force"},
			setup: symlinkIn("in.mp4", "link.mp4"),
			want:  "tokenflow: --out $D/link.mp4: is the input $D/in.mp4: the edit would replace it; give another path"},
		{name: "--out is a hard link to the input", input: "in.mp4", args: []string{"--out", "$D/hard.mp4", "--force"},
			setup: func(t *testing.T, d string) {
				if err := os.Link(filepath.Join(d, "in.mp4"), filepath.Join(d, "hard.mp4")); err != nil {
					t.Fatal(err)
				}
			},
			want: "tokenflow: --out $D/hard.mp4: is the input $D/in.mp4: the edit would replace it; give another path"},
		{name: "--save-latents is the input", input: "in.mp4", args: []string{"--out", "$D/out.mp4", "--save-latents", "$D/in.mp4", "--force"},
			want: "tokenflow: --save-latents $D/in.mp4: is the input $D/in.mp4: the edit would replace it; give another path"},
		{name: "--frames-dir is the input folder", input: "frames", args: []string{"--out", "$D/out.mp4", "--frames-dir", "$D/frames", "--force"},
			want: "tokenflow: --frames-dir $D/frames: is the input $D/frames: the edit would replace it; give another path"},
		{name: "--frames-dir inside the input folder", input: "frames", args: []string{"--out", "$D/out.mp4", "--frames-dir", "$D/frames/edited"},
			want: "tokenflow: --frames-dir $D/frames/edited: is inside the input folder $D/frames: give a path outside it"},
		{name: "--out inside the input folder through a link", input: "frames", args: []string{"--out", "$D/alias/out.mp4", "--force"},
			setup: symlinkIn("frames", "alias"),
			want:  "tokenflow: --out $D/alias/out.mp4: is inside the input folder $D/frames: give a path outside it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if tc.input == "frames" {
				copyDir(t, fixtureFrames(t, "tiny-sd15"), filepath.Join(d, "frames"))
			} else {
				audioClip(t, d)
			}
			if tc.setup != nil {
				tc.setup(t, d)
			}
			args := []string{"edit", "--model", sd15, "-p", "a red cube", "--size", "32x32", "--steps", "2", "--inversion-steps", "2",
				"--cache-dir", filepath.Join(d, "cache")}
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "$D", d))
			}
			args = append(args, filepath.Join(d, tc.input))
			r := tfRefused(t, d, []string{"in.mp4"}, args...)
			if line := checkErrorLine(t, r); line != strings.ReplaceAll(tc.want, "$D", d) {
				t.Errorf("error line\n%s\nwant\n%s", line, strings.ReplaceAll(tc.want, "$D", d))
			}
			if r.Code != exitUsage {
				t.Errorf("exit %d, want %d", r.Code, exitUsage)
			}
		})
	}
}

// TestStaleTempsSwept: a run killed with SIGKILL leaves the temporary
// names of its outputs (nothing can remove them); the next run writing the
// same outputs removes them, and only them: a name of ours for another
// output, and a name that only looks like ours, stay.
func TestStaleTempsSwept(t *testing.T) {
	d := t.TempDir()
	out := filepath.Join(d, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := []string{".other.mp4.tmp-0123456789abcdef", ".edited.mp4.tmp-notours", ".edited.mp4.tmp-0123456789ABCDEF"}
	for _, name := range keep {
		if err := os.WriteFile(filepath.Join(out, name), []byte("not this run's"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outputs := []string{"-o", filepath.Join(out, "edited.mp4"),
		"--save-latents", filepath.Join(out, "latents.safetensors"), "--frames-dir", filepath.Join(out, "frames")}
	args := append([]string{"edit", "--model", model(t, "tiny-sd15"), "--prompt", "a red cube", "--cache-dir", filepath.Join(d, "cache")}, outputs...)
	frames := fixtureFrames(t, "tiny-sd15")

	r := start(t, tfCommand(t, d, append(args, "--size", "64x64", "--steps", "20", "--inversion-steps", "20", "--batch-size", "4", frames)...))
	if !r.lines.waitFor("inversion:", 2*time.Minute) {
		r.cmd.Process.Kill()
		t.Fatalf("no progress before the run ended:\n%s", r.lines.wait())
	}
	r.signal(syscall.SIGKILL)
	if _, ok := r.exited(time.Minute); !ok {
		t.Fatal("still running after SIGKILL")
	}
	ours := regexp.MustCompile(`^\.(edited\.mp4|latents\.safetensors|frames)\.tmp-[0-9a-f]{16}$`)
	stale := func() []string {
		ents, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			if ours.MatchString(e.Name()) {
				names = append(names, e.Name())
			}
		}
		return names
	}
	if got := stale(); len(got) != 3 {
		t.Fatalf("after SIGKILL the output folder holds %q: want the three outputs' temporary names", listTree(t, out))
	}

	res, _ := tfJSON[editResult](t, d, append(args, "--size", "32x32", "--steps", "2", "--inversion-steps", "2", "--json", frames)...)
	if got := stale(); len(got) != 0 {
		t.Errorf("the next run left the killed run's temporary names: %q", got)
	}
	for _, p := range []string{res.Output, res.Latents, filepath.Join(res.FramesDir, "00007.png")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("next run: %v", err)
		}
	}
	for _, name := range keep {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("the sweep removed %s, which is not a temporary name of this output", name)
		}
	}
}
