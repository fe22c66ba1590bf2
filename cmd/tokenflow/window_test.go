package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// windowResult is the part of edit's --json this test reads.
type windowResult struct {
	UNetFrames   int64            `json:"unet_frame_evaluations"`
	KeyframeRule keyframeRuleJSON `json:"keyframe_rule"`
}

// TestEditKeyframeWindow: the real binary on 8 frames in batches of 2 (K
// = 4 keyframes a step): under --keyframe-window 2 the steps are windowed
// (one anchor, chunks of one), the run says so on stderr and in its JSON,
// and the UNet evaluates as many frames as the official run (each
// keyframe goes through one pass); under the default window (8 >= 4) the
// run says it used the official rule.
func TestEditKeyframeWindow(t *testing.T) {
	d := t.TempDir()
	in := fixtureFrames(t, "tiny-sd21")
	args := func(out string, more ...string) []string {
		return append([]string{"edit", "--model", model(t, "tiny-sd21"), "--prompt", "a red cube", "--inversion-steps", "2", "--steps", "2",
			"--batch-size", "2", "--keyframes", "middle", "--size", "64x64", "--fps", "10", "--cache-dir", filepath.Join(d, "cache"), "--json",
			"-o", filepath.Join(d, out)}, append(more, in)...)
	}
	win, r := tfJSON[windowResult](t, d, args("windowed.mp4", "--keyframe-window", "2")...)
	// The anchor is slot 2; batch 0 runs chunk [0], batch 1 chunk [1]
	// (held: 0, 1 and the anchor, the peak), then slot 0 goes; batch 3
	// runs chunk [3] after slot 1 went: at most 3 = W + 1 held.
	if want := (keyframeRuleJSON{Rule: "windowed", K: 4, W: 2, A: 1, Chunk: 1, PeakPivots: 3}); win.KeyframeRule != want {
		t.Errorf("keyframe_rule %+v, want %+v", win.KeyframeRule, want)
	}
	if !strings.Contains(r.Stderr, "keyframe pass: windowed (K=4 keyframes > W=2: A=1 anchors, then chunks of at most 1") {
		t.Errorf("stderr does not say the windowed rule was used:\n%s", r.Stderr)
	}
	off, r := tfJSON[windowResult](t, d, args("official.mp4")...)
	if want := (keyframeRuleJSON{Rule: "official", K: 4, W: 8}); off.KeyframeRule != want {
		t.Errorf("default window: keyframe_rule %+v, want %+v", off.KeyframeRule, want)
	}
	if !strings.Contains(r.Stderr, "keyframe pass: official (K=4 keyframes in one pass, K <= W=8)") {
		t.Errorf("stderr does not say the official rule was used:\n%s", r.Stderr)
	}
	// the second run reuses the inversion: it evaluates the edit only
	if want := int64(2 * 3 * (4 + 8)); off.UNetFrames != want || win.UNetFrames != want+2*8 {
		t.Errorf("unet_frame_evaluations: windowed %d (inversion included), official %d; want %d and %d", win.UNetFrames, off.UNetFrames, want+2*8, want)
	}
}
