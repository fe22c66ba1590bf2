package main

// Usage errors from cobra and pflag: typed where they arise (the flag error
// function, the argument validators), exit status 2 through Main, and one
// line saying what to do.

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestArgsUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the whole line after "tokenflow: "
	}{
		// flags
		{[]string{"edit", "--bogus", "in.mp4"}, "unknown flag --bogus: see 'tokenflow edit --help'"},
		{[]string{"edit", "-Z", "in.mp4"}, "unknown flag -Z in -Z: see 'tokenflow edit --help'"},
		{[]string{"invert", "--prompt", "x", "in.mp4"}, "unknown flag --prompt: see 'tokenflow invert --help'"},
		{[]string{"--bogus"}, "unknown flag --bogus: see 'tokenflow --help'"},
		{[]string{"edit", "in.mp4", "--steps"}, "--steps needs a value: see 'tokenflow edit --help'"},
		{[]string{"edit", "in.mp4", "-p"}, "--prompt needs a value: see 'tokenflow edit --help'"},
		{[]string{"edit", "--steps", "ten", "in.mp4"}, `--steps "ten": want a whole number`},
		{[]string{"invert", "--batch-size=1.5", "in.mp4"}, `--batch-size "1.5": want a whole number`},
		{[]string{"edit", "--frames", "99999999999999999999", "in.mp4"}, `--frames "99999999999999999999": out of range`},
		{[]string{"edit", "--seed", "-1", "in.mp4"}, `--seed "-1": want a whole number, 0 or more`},
		{[]string{"edit", "--guidance", "high", "in.mp4"}, `--guidance "high": want a number`},
		{[]string{"edit", "--json=maybe", "in.mp4"}, `--json "maybe": want true or false`},
		// commands
		{[]string{"bogus"}, `unknown command "bogus" for "tokenflow": see 'tokenflow --help'`},
		{[]string{"edt", "in.mp4"}, `unknown command "edt" for "tokenflow": did you mean edit?`},
		{[]string{"models", "exprot"}, `unknown command "exprot" for "tokenflow models": did you mean export?`},
		// arguments
		{[]string{"edit", "in.mp4", "a red car"}, `too many arguments: did you mean --prompt "a red car"?`},
		{[]string{"edit", "a red car", "in.mp4"}, `too many arguments: did you mean --prompt "a red car"?`},
		{[]string{"edit", "clip", "a red car"}, `too many arguments: did you mean --prompt "a red car"?`},
		{[]string{"edit", "in.mp4", "a", "red", "car"}, `too many arguments: did you mean --prompt "a red car"?`},
		{[]string{"edit", "-p", "x", "frames/", "car"}, `too many arguments: did you mean --prompt "car"?`},
		{[]string{"invert", "in.mp4", "a woman running"}, `too many arguments: did you mean --inversion-prompt "a woman running"?`},
		{[]string{"edit", "-p", "x", "a.mp4", "b.mp4"}, `too many arguments: edit takes one video or frame folder, got 2 ("a.mp4", "b.mp4")`},
		{[]string{"invert"}, "no input: give a video file or a folder of frames"},
		{[]string{"doctor", "now"}, `unknown command "now" for "tokenflow doctor": see 'tokenflow doctor --help'`},
		{[]string{"models", "info"}, "accepts 1 arg(s), received 0: see 'tokenflow models info --help'"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(tc.args, &stdout, &stderr)
			want := "tokenflow: " + tc.want + "\n"
			if got := stderr.String(); got != want || code != exitUsage {
				t.Errorf("exit %d, want %d (usage)\n-%s+%s", code, exitUsage, want, got)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}

// TestArgsExistingPaths: an argument that exists is the input, whatever its
// name looks like.
func TestArgsExistingPaths(t *testing.T) {
	d := t.TempDir()
	clip := filepath.Join(d, "my clip")
	if err := os.Mkdir(clip, 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := Main([]string{"edit", "cat.png", clip}, &stdout, &stderr)
	want := `tokenflow: too many arguments: edit takes one video or frame folder, got 2 ("cat.png", "` + clip + `")` + "\n"
	if got := stderr.String(); got != want || code != exitUsage {
		t.Errorf("exit %d\n-%s+%s", code, want, got)
	}
	stderr.Reset()
	code = Main([]string{"edit", clip, "sunset"}, &stdout, &stderr)
	want = `tokenflow: too many arguments: did you mean --prompt "sunset"?` + "\n"
	if got := stderr.String(); got != want || code != exitUsage {
		t.Errorf("exit %d\n-%s+%s", code, want, got)
	}
}

// TestArgsHelp: a command group without a command shows its help and
// succeeds, as before.
func TestArgsHelp(t *testing.T) {
	for _, args := range [][]string{nil, {"models"}, {"edit", "--help"}} {
		var stdout, stderr bytes.Buffer
		if code := Main(args, &stdout, &stderr); code != exitOK || stderr.Len() != 0 || !strings.Contains(stdout.String(), "Usage:") {
			t.Errorf("tokenflow %v: exit %d, stderr %q, stdout %.80q", args, code, stderr.String(), stdout.String())
		}
	}
}
