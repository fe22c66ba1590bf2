package main

// Libraries name settings ("model", "original_config", "ort_lib",
// "device"); the command words them as its flags. Through the real binary,
// each kind of library error is printed naming the flag, never the setting.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

// bareSetting matches a setting a library named, left unworded.
var bareSetting = regexp.MustCompile(`\{[a-z_]+\}|original_config|ort_lib|(^|[ (])device (cpu|cuda)`)

func TestSettingErrorsNameFlags(t *testing.T) {
	lib := testenv.ORTLibrary(t)
	sd15 := model(t, "tiny-sd15")
	frames := fixtureFrames(t, "tiny-sd15")
	sd21File, _ := singleFile(t, "tiny-sd21-ldm")
	_, sd15YAML := singleFile(t, "tiny-sd15-ldm")
	edit := func(d string, extra ...string) []string {
		args := []string{"edit", "-p", "x", "--size", "32x32", "--steps", "2", "--inversion-steps", "2",
			"--cache-dir", filepath.Join(d, "cache"), "-o", filepath.Join(d, "out.mp4")}
		return append(append(args, extra...), frames)
	}
	for _, tc := range []struct {
		name string
		args func(d string) []string
		code int
		want []string // in the error line; "$D" is the case's folder
		not  []string // not in it
	}{
		{"model is a text file", func(d string) []string { return edit(d, "--model", filepath.Join(d, "notes.txt")) },
			exitError, []string{"--model $D/notes.txt: is a file but not .safetensors"}, nil},
		{"model not found", func(d string) []string {
			return []string{"invert", "--model", filepath.Join(d, "nope"), "--cache-dir", filepath.Join(d, "cache"), frames}
		}, exitError, []string{"--model $D/nope: no such folder"}, nil},
		{"model architecture needs the YAML", func(d string) []string { return edit(d, "--model", sd21File) },
			exitError, []string{"--model " + sd21File + ": cannot determine the architecture", "pass --original-config with num_head_channels"}, nil},
		{"original config for a folder", func(d string) []string { return edit(d, "--model", sd15, "--original-config", sd15YAML) },
			exitError, []string{"--original-config " + sd15YAML + ": only for a single-file checkpoint; --model " + sd15 + " is a diffusers folder"}, nil},
		{"original config missing", func(d string) []string {
			return edit(d, "--model", sd21File, "--original-config", filepath.Join(d, "gone.yaml"))
		}, exitError, []string{"--original-config $D/gone.yaml: no such file or directory"}, nil},
		{"ort lib missing", func(d string) []string { return edit(d, "--model", sd15, "--ort-lib", filepath.Join(d, "gone.so")) },
			exitError, []string{"ONNX Runtime library not found: $D/gone.so (from --ort-lib) does not exist"}, nil},
		{"device unknown", func(d string) []string { return edit(d, "--model", sd15, "--device", "tpu") },
			exitUsage, []string{"--device tpu: want cpu or cuda"}, nil},
		{"cuda on the CPU build", func(d string) []string {
			return edit(d, "--model", sd15, "--device", "cuda", "--ort-lib", lib)
		}, exitError, []string{"CUDA: missing", "(from --ort-lib) is not a GPU build", "pass --ort-lib a GPU build", "use --device cpu"}, nil},
		{"doctor device unknown", func(string) []string { return []string{"doctor", "--device", "gpu"} },
			exitUsage, []string{"--device gpu: want cpu or cuda"}, nil},
		// models export and info take the model as their argument: no --model.
		{"models info of a text file", func(d string) []string { return []string{"models", "info", filepath.Join(d, "notes.txt")} },
			exitError, []string{"model $D/notes.txt: is a file but not .safetensors"}, []string{"--model"}},
		{"models export of a missing model", func(d string) []string {
			return []string{"models", "export", filepath.Join(d, "nope"), "--out", filepath.Join(d, "out")}
		}, exitError, []string{"model $D/nope: no such folder"}, []string{"--model"}},
		{"models info needs the YAML", func(string) []string { return []string{"models", "info", sd21File} },
			exitError, []string{"model " + sd21File + ": cannot determine", "pass --original-config"}, []string{"--model"}},
		{"models info with a YAML for a folder", func(string) []string {
			return []string{"models", "info", sd15, "--original-config", sd15YAML}
		}, exitError, []string{"--original-config " + sd15YAML + ": only for a single-file checkpoint; model " + sd15}, []string{"--model"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if err := os.WriteFile(filepath.Join(d, "notes.txt"), []byte("notes, not a model\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			r := tf(t, d, tc.args(d)...)
			var want []string
			for _, w := range tc.want {
				want = append(want, strings.ReplaceAll(w, "$D", d))
			}
			line := checkErrorLine(t, r, want...)
			if r.Code != tc.code {
				t.Errorf("exit %d, want %d", r.Code, tc.code)
			}
			// (the folder's name has the test's in it)
			if m := bareSetting.FindString(strings.ReplaceAll(line, d, "$D")); m != "" {
				t.Errorf("error line %q says %q: a setting not worded as the command's flag", line, m)
			}
			for _, w := range tc.not {
				if strings.Contains(line, w) {
					t.Errorf("error line %q says %q", line, w)
				}
			}
		})
	}
}
