package main

// The inversion cache through `tokenflow invert`: reuse, what makes a new
// entry, and damaged entries rebuilt.

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// changePixel rewrites a PNG with its top-left pixel changed.
func changePixel(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	b := src.Bounds()
	img := image.NewNRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			img.Set(x, y, src.At(x, y))
		}
	}
	r, g, bl, _ := img.At(b.Min.X, b.Min.Y).RGBA()
	img.Set(b.Min.X, b.Min.Y, color.NRGBA{R: uint8(r>>8) ^ 0x80, G: uint8(g >> 8), B: uint8(bl >> 8), A: 255})
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(out, img); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestInvertCache(t *testing.T) {
	d := t.TempDir()
	cache := filepath.Join(d, "cache")
	frames := fixtureFrames(t, "tiny-sd15")
	const steps, n = 2, 4
	invert := func(input string, extra ...string) (invertResult, runResult) {
		t.Helper()
		args := []string{"invert", "--model", model(t, "tiny-sd15"), "--inversion-prompt", "a ball", "--frames", "4", "--cache-dir", cache, "--json"}
		flags := map[string]string{"--size": "32x32", "--steps": "2", "--save-steps": "2"}
		for i := 0; i+1 < len(extra); i += 2 {
			if _, ok := flags[extra[i]]; ok {
				flags[extra[i]] = extra[i+1]
			} else {
				args = append(args, extra[i], extra[i+1])
			}
		}
		for _, f := range []string{"--size", "--steps", "--save-steps"} {
			args = append(args, f, flags[f])
		}
		return tfJSON[invertResult](t, d, append(args, input)...)
	}
	computed := func(what string, res invertResult) {
		t.Helper()
		if res.Reused || res.UNetFrames <= 0 {
			t.Errorf("%s: reused %v, unet_frame_evaluations %d: want a fresh inversion", what, res.Reused, res.UNetFrames)
		}
	}
	reused := func(what string, res invertResult, dir string) {
		t.Helper()
		if !res.Reused || res.UNetFrames != 0 || res.CacheDir != dir {
			t.Errorf("%s: reused %v, unet_frame_evaluations %d, folder %s: want the entry %s reused with no UNet work",
				what, res.Reused, res.UNetFrames, res.CacheDir, dir)
		}
	}

	first, _ := invert(frames)
	computed("first run", first)
	if first.UNetFrames != steps*n || first.Frames != n || first.Size != "32x32" {
		t.Errorf("first run: %+v: want %d UNet frame evaluations on %d frames of 32x32", first, steps*n, n)
	}
	dir := first.CacheDir
	if !strings.HasPrefix(dir, filepath.Join(cache, "inversions")+string(filepath.Separator)) {
		t.Fatalf("cache folder %s is not under %s/inversions", dir, cache)
	}
	for _, f := range []string{"manifest.json", "latents.safetensors"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}

	t.Run("same arguments", func(t *testing.T) {
		res, _ := invert(frames)
		reused("second run", res, dir)
		// Without --json the folder is the one line on stdout.
		r := tfOK(t, d, "invert", "--model", model(t, "tiny-sd15"), "--inversion-prompt", "a ball", "--frames", "4",
			"--cache-dir", cache, "--size", "32x32", "--steps", "2", "--save-steps", "2", frames)
		if r.Stdout != dir+"\n" {
			t.Errorf("stdout %q, want %q", r.Stdout, dir+"\n")
		}
	})
	t.Run("a copy of the clip", func(t *testing.T) {
		// The key is the content, not the path.
		cp := filepath.Join(t.TempDir(), "copy")
		copyDir(t, frames, cp)
		res, _ := invert(cp)
		reused("a byte-identical copy", res, dir)
	})

	others := map[string]string{dir: "the first run"}
	for _, tc := range []struct {
		name  string
		input func(t *testing.T) string
		extra []string
	}{
		{"one frame changed", func(t *testing.T) string {
			cp := filepath.Join(t.TempDir(), "changed")
			copyDir(t, frames, cp)
			changePixel(t, filepath.Join(cp, "00001.png"))
			return cp
		}, nil},
		{"another inversion prompt", nil, []string{"--inversion-prompt", "a cube"}},
		{"more inversion steps", nil, []string{"--steps", "4"}},
		{"another size", nil, []string{"--size", "40x32"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := frames
			if tc.input != nil {
				input = tc.input(t)
			}
			res, _ := invert(input, tc.extra...)
			computed(tc.name, res)
			if prev, ok := others[res.CacheDir]; ok {
				t.Errorf("%s: same cache folder %s as %s", tc.name, res.CacheDir, prev)
			}
			others[res.CacheDir] = tc.name
			if filepath.Dir(res.CacheDir) != filepath.Dir(dir) {
				t.Errorf("%s: folder %s is not beside %s", tc.name, res.CacheDir, dir)
			}
		})
	}

	// A damaged entry is detected, said on stderr, recomputed, and valid
	// again afterwards.
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T)
	}{
		{"truncated latents", func(t *testing.T) {
			p := filepath.Join(dir, "latents.safetensors")
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, st.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"edited manifest", func(t *testing.T) {
			p := filepath.Join(dir, "manifest.json")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			edited := strings.Replace(string(b), `"inversion_prompt": "a ball"`, `"inversion_prompt": "a cube"`, 1)
			if edited == string(b) {
				t.Fatalf("manifest.json has no \"inversion_prompt\": \"a ball\":\n%s", b)
			}
			if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.damage(t)
			res, r := invert(frames)
			computed("after damage", res)
			if res.CacheDir != dir {
				t.Errorf("rebuilt into %s, want %s", res.CacheDir, dir)
			}
			var said bool
			for _, l := range strings.Split(r.Stderr, "\n") {
				if strings.Contains(l, "rebuilding") && strings.Contains(l, dir) {
					said = true
				}
			}
			if !said {
				t.Errorf("no line naming %s and \"rebuilding\" on stderr:\n%s", dir, r.Stderr)
			}
			res, r = invert(frames)
			reused("the run after the rebuild", res, dir)
			if strings.Contains(r.Stderr, "rebuilding") {
				t.Errorf("the rebuilt entry is rebuilt again:\n%s", r.Stderr)
			}
		})
	}
}
