package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// benchPrompts are the four prompts of the many-prompt benchmark.
var benchPrompts = []string{"a marble statue", "a bronze statue", "a watercolor painting", "a pencil sketch"}

// BenchmarkPrompts times four prompts edited in one run against four
// separate runs of one prompt each, all from one inversion made
// beforehand (not timed), on PERF.md's workload (the full-size SD 2.1-base
// architecture with random weights, 8 frames at 256x256, batch 4, 10+10
// steps, middle keyframes, 2 threads) and the same settings on the tiny
// model. Wall times are the processes' own, model opening included. It
// prints a "prompts:" line for scripts/bench.sh: both wall times, their
// ratio (issue 11's target: at most 0.70) and the peak RSS of each.
// TOKENFLOW_BENCH_FULL=0 leaves out the full-size model.
func BenchmarkPrompts(b *testing.B) {
	benchEach(b, []int{2}, benchPromptsRun)
}

func benchPromptsRun(b *testing.B, w benchWorkload) {
	dir := b.TempDir()
	common := []string{"--model", w.model, "--inversion-prompt", "a test pattern", "--size", w.size, "--batch-size", "4",
		"--threads", fmt.Sprint(w.threads), "--inversion-steps", "10", "--steps", "10", "--cache-dir", filepath.Join(dir, "cache"), "--json"}
	// the shared inversion, not timed
	benchTF(b, append(append([]string{"invert"}, common...), w.input)...)
	edit := append([]string{"edit", "--keyframes", "middle", "--force"}, common...)
	edit = edit[:len(edit):len(edit)] // appends below copy it

	timed := func(args ...string) (time.Duration, benchJSON) {
		start := time.Now()
		r := benchTF(b, args...)
		return time.Since(start), r
	}
	var separate time.Duration
	var sepRSS float64
	for i, p := range benchPrompts {
		d, r := timed(append(edit, "--prompt", p, "--out", filepath.Join(dir, fmt.Sprintf("single-%d.mp4", i+1)), w.input)...)
		separate += d
		sepRSS = max(sepRSS, r.PeakRSSMB)
	}
	args := slices.Clone(edit)
	for _, p := range benchPrompts {
		args = append(args, "--prompt", p)
	}
	one, r := timed(append(args, "--out", filepath.Join(dir, "multi-{n}.mp4"), w.input)...)
	ratio := one.Seconds() / separate.Seconds()
	b.ReportMetric(one.Seconds(), "one-run-s")
	b.ReportMetric(separate.Seconds(), "separate-s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(r.PeakRSSMB, "one-run-peak-rss-MB")
	b.ReportMetric(sepRSS, "separate-peak-rss-MB")
	fmt.Printf("prompts: %s threads=%d, %d prompts: one run %.1fs (%d prompts per UNet call, peak RSS %.0f MB); %d separate runs %.1fs (peak RSS %.0f MB each at most); ratio %.2f (target 0.70 or less); RSS ratio %.2f\n",
		w.name, w.threads, len(benchPrompts), one.Seconds(), r.PerCall, r.PeakRSSMB, len(benchPrompts), separate.Seconds(), sepRSS, ratio, r.PeakRSSMB/sepRSS)
}
