package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/safetensors"
	"github.com/tokenflow/tokenflow/internal/testenv"
)

// BenchmarkFrames measures how a run grows with the clip's length: the
// full-size Stable Diffusion 2.1-base architecture (random weights) edits
// clips of 16, 64 and 256 frames at 128x128 with 2 inversion and 2 edit
// steps, batch 8, the default keyframe window, one process each; it
// reports the peak RSS and the seconds per frame of the phases that grow
// with the clip (framePhases). TOKENFLOW_BENCH_FRAMES
// ("16,64,256") picks the lengths.
//
// With TOKENFLOW_BENCH_BASE set to another tokenflow binary (an older
// build), the first length also runs through it with the same settings and
// the final latents of the two are compared byte for byte.
func BenchmarkFrames(b *testing.B) {
	if os.Getenv("TOKENFLOW_BENCH_FULL") == "0" {
		b.Skip("TOKENFLOW_BENCH_FULL=0: the frames benchmark needs the full-size model")
	}
	testenv.FFmpeg(b)
	s := fullModel(b)
	lengths := []int{16, 64, 256}
	if v := os.Getenv("TOKENFLOW_BENCH_FRAMES"); v != "" {
		lengths = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("TOKENFLOW_BENCH_FRAMES=%q: want frame counts separated by commas", v)
			}
			lengths = append(lengths, n)
		}
	}
	base := os.Getenv("TOKENFLOW_BENCH_BASE")
	var perFrame, rss, totals []float64
	for i, n := range lengths {
		b.Run(fmt.Sprintf("frames=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			clip := patternClip(b, filepath.Join(dir, "clip.mp4"), "128x128", n)
			args := func(tag string) []string {
				return []string{"edit", "--model", s.Dir, "--prompt", "a marble statue", "--inversion-prompt", "a test pattern",
					"--size", "128x128", "--batch-size", "8", "--inversion-steps", "2", "--steps", "2", "--keyframes", "middle",
					"--threads", "2", "--json", "--cache-dir", filepath.Join(dir, "cache-"+tag),
					"--out", filepath.Join(dir, tag+".mp4"), "--save-latents", filepath.Join(dir, tag+".safetensors"), clip}
			}
			for k := 0; k < b.N; k++ {
				r := benchTF(b, args("new")...)
				sec := framePhases(r)
				pf := sec / float64(n)
				b.ReportMetric(r.PeakRSSMB, "peak-rss-MB")
				b.ReportMetric(pf, "s/frame")
				fmt.Printf("frames: %d frames: total %.1fs, of which %.1fs in the phases that grow with the frames (decode, VAE encode, inversion, edit, VAE decode, write): %.3f s/frame; peak RSS %.0f MB\n",
					n, r.Seconds["total"], sec, pf, r.PeakRSSMB)
				perFrame, rss = append(perFrame, pf), append(rss, r.PeakRSSMB)
				totals = append(totals, r.Seconds["total"])
			}
			if base == "" || i > 0 {
				return
			}
			r := benchExternal(b, base, args("base")...)
			same, err := sameLatents(filepath.Join(dir, "new.safetensors"), filepath.Join(dir, "base.safetensors"))
			if err != nil {
				b.Fatal(err)
			}
			fmt.Printf("frames: %d frames with %s: total %.1fs (this build / it: %.3f, whole processes); peak RSS %.0f MB (this build / it: %.3f); final latents identical: %v\n",
				n, base, r.Seconds["total"], totals[len(totals)-1]/r.Seconds["total"], r.PeakRSSMB, rss[len(rss)-1]/r.PeakRSSMB, same)
			if !same {
				b.Errorf("the final latents differ from %s's", base)
			}
		})
	}
	for i := 1; i < len(perFrame) && len(perFrame) == len(lengths); i++ {
		fmt.Printf("frames: %d -> %d frames: peak RSS x%.3f, s/frame x%.3f\n", lengths[i-1], lengths[i], rss[i]/rss[i-1], perFrame[i]/perFrame[i-1])
	}
}

// framePhases is the seconds a run spent in the phases whose work grows
// with the clip's frames: the rest (probing, the model's identity, making
// sessions) is the same for every length.
func framePhases(r benchJSON) float64 {
	var sec float64
	for _, p := range []string{"decode video", "vae encode", "inversion", "edit", "vae decode", "write video"} {
		sec += r.Seconds[p]
	}
	return sec
}

// benchExternal runs another tokenflow binary as benchTF runs ours.
func benchExternal(b *testing.B, bin string, args ...string) benchJSON {
	b.Helper()
	saved := tfBin
	tfBin = bin
	defer func() { tfBin = saved }()
	return benchTF(b, args...)
}

// sameLatents says whether two --save-latents files hold the same
// "latents" tensor, byte for byte.
func sameLatents(a, b string) (bool, error) {
	var raw [2][]byte
	for i, p := range []string{a, b} {
		f, err := safetensors.Open(p)
		if err != nil {
			return false, err
		}
		raw[i], err = f.Raw("latents")
		f.Close()
		if err != nil {
			return false, err
		}
	}
	return bytes.Equal(raw[0], raw[1]), nil
}
