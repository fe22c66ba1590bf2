package main

// Bad input through the real binary: each run must fail with one
// "tokenflow: " line on stderr, nothing on stdout, and write nothing.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

func TestBadInput(t *testing.T) {
	sd15 := model(t, "tiny-sd15")
	frames := fixtureFrames(t, "tiny-sd15")
	// Each case runs in its own folder d; out and cache point into it, so
	// that "nothing written" is "d is as it was". The work is tiny, in case
	// a check is missing and the run goes ahead.
	edit := func(d string, extra ...string) []string {
		return append([]string{"edit", "--model", sd15, "--size", "32x32", "--steps", "2", "--inversion-steps", "2",
			"--cache-dir", filepath.Join(d, "cache"), "-o", filepath.Join(d, "out.mp4")}, extra...)
	}
	invert := func(d string, extra ...string) []string {
		return append([]string{"invert", "--model", sd15, "--size", "32x32", "--cache-dir", filepath.Join(d, "cache")}, extra...)
	}
	textFile := func(t *testing.T, d string) {
		if err := os.WriteFile(filepath.Join(d, "notes.mp4"), []byte("these are notes, not a video\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile := func(name, text string) func(*testing.T, string) {
		return func(t *testing.T, d string) {
			if err := os.WriteFile(filepath.Join(d, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, d string)
		args  func(d string) []string
		code  int      // 0: any failure
		want  []string // fragments of the error line; "$D" is the case's folder
	}{
		{name: "edit without --prompt", args: func(d string) []string { return edit(d, frames) },
			code: exitUsage, want: []string{"--prompt is required"}},
		{name: "edit --guidance -1", args: func(d string) []string { return edit(d, "-p", "x", "--guidance", "-1", frames) },
			code: exitUsage, want: []string{"--guidance -1"}},
		{name: "edit --pnp-attn 1.5", args: func(d string) []string { return edit(d, "-p", "x", "--pnp-attn", "1.5", frames) },
			code: exitUsage, want: []string{"--pnp-attn 1.5"}},
		{name: "edit --pnp-conv -0.1", args: func(d string) []string { return edit(d, "-p", "x", "--pnp-conv", "-0.1", frames) },
			code: exitUsage, want: []string{"--pnp-conv -0.1"}},
		{name: "edit --batch-size 0", args: func(d string) []string { return edit(d, "-p", "x", "--batch-size", "0", frames) },
			code: exitUsage, want: []string{"--batch-size 0"}},
		{name: "edit --steps 0", args: func(d string) []string { return edit(d, "-p", "x", "--steps", "0", frames) },
			code: exitUsage, want: []string{"--steps 0"}},
		{name: "edit output exists", setup: writeFile("out.mp4", "an earlier result"),
			args: func(d string) []string { return edit(d, "-p", "x", frames) },
			want: []string{"$D/out.mp4", "already exists", "--force"}},
		{name: "edit config with an unknown key", setup: writeFile("c.yaml", "prompt: x\nn_timestep: 10\n"),
			args: func(d string) []string { return edit(d, "--config", filepath.Join(d, "c.yaml"), frames) },
			code: exitUsage, want: []string{"$D/c.yaml", "line 2", "n_timestep"}},
		{name: "edit config with a wrong type", setup: writeFile("c.yaml", "prompt: x\nn_timesteps: \"ten\"\n"),
			args: func(d string) []string { return edit(d, "--config", filepath.Join(d, "c.yaml"), frames) },
			code: exitUsage, want: []string{"$D/c.yaml", "line 2", "ten"}},
		{name: "edit missing input", args: func(d string) []string { return edit(d, "-p", "x", filepath.Join(d, "missing.mp4")) },
			want: []string{"$D/missing.mp4"}},
		{name: "edit text file named .mp4", setup: textFile,
			args: func(d string) []string { return edit(d, "-p", "x", filepath.Join(d, "notes.mp4")) },
			want: []string{"$D/notes.mp4", "not a video"}},
		{name: "invert --steps 0", args: func(d string) []string { return invert(d, "--steps", "0", frames) },
			code: exitUsage, want: []string{"--steps 0"}},
		// 1000 'leading' steps with steps_offset 1 would reach timestep 1000.
		{name: "invert --steps 1000", args: func(d string) []string { return invert(d, "--steps", "1000", frames) },
			code: exitUsage, want: []string{"--steps 1000", "999 or fewer"}},
		{name: "invert --batch-size 0", args: func(d string) []string { return invert(d, "--batch-size", "0", frames) },
			code: exitUsage, want: []string{"--batch-size 0"}},
		{name: "invert frame range outside the clip", args: func(d string) []string {
			return invert(d, "--steps", "2", "--save-steps", "2", "--start", "100", frames)
		},
			want: []string{"--start 100", "8 frames"}},
		// Root can create folders anywhere, but not under a regular file.
		{name: "invert unwritable cache dir", setup: writeFile("file", "a file, not a folder"),
			args: func(d string) []string {
				return []string{"invert", "--model", sd15, "--size", "32x32", "--steps", "2", "--save-steps", "2",
					"--cache-dir", filepath.Join(d, "file", "sub"), frames}
			},
			want: []string{"$D/file/sub"}},
		{name: "invert missing input", args: func(d string) []string {
			return invert(d, "--steps", "2", "--save-steps", "2", filepath.Join(d, "missing.mp4"))
		},
			want: []string{"$D/missing.mp4", "no such file"}},
		{name: "invert text file named .mp4", setup: textFile,
			args: func(d string) []string {
				return invert(d, "--steps", "2", "--save-steps", "2", filepath.Join(d, "notes.mp4"))
			},
			want: []string{"$D/notes.mp4", "not a video"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, d)
			}
			r := tfRefused(t, d, []string{"out.mp4", "file"}, tc.args(d)...)
			var want []string
			for _, w := range tc.want {
				want = append(want, strings.ReplaceAll(w, "$D", d))
			}
			checkErrorLine(t, r, want...)
			if tc.code != 0 && r.Code != tc.code {
				t.Errorf("exit %d, want %d", r.Code, tc.code)
			}
		})
	}
}

// TestDoctorMissingORT: doctor with --ort-lib naming a missing file fails
// and names the file (its report on stdout says what it looked for).
func TestDoctorMissingORT(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	r := tf(t, "", "doctor", "--ort-lib", missing)
	line := checkErrorLine(t, r, "ONNX Runtime")
	if !strings.Contains(r.Stdout, missing) {
		t.Errorf("doctor's report does not name %s:\n%s", missing, r.Stdout)
	}
	if !strings.Contains(line, missing) {
		t.Errorf("error line %q does not name %s", line, missing)
	}
	if !strings.Contains(r.Stdout, "ffmpeg") {
		t.Errorf("doctor's report does not cover ffmpeg:\n%s", r.Stdout)
	}
}

// TestDoctor: with everything installed, doctor exits 0 and reports the
// ONNX Runtime library it loaded.
func TestDoctor(t *testing.T) {
	lib := testenv.ORTLibrary(t)
	r := tfOK(t, "", "doctor", "--model", model(t, "tiny-sd21")) // doctor fails without a model
	if !strings.Contains(r.Stdout, lib) {
		t.Errorf("doctor does not report %s:\n%s", lib, r.Stdout)
	}
	if r.Stderr != "" {
		t.Errorf("stderr %q, want nothing", r.Stderr)
	}
}
