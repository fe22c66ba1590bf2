package edit_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/tokenflow/tokenflow/internal/edit"
	"github.com/tokenflow/tokenflow/internal/keyframes"
	"github.com/tokenflow/tokenflow/internal/tensor"
)

func TestWindowPlan(t *testing.T) {
	for _, tc := range []struct {
		K, W    int
		anchors []int
		chunks  [][]int
	}{
		{K: 3, W: 0, chunks: [][]int{{0, 1, 2}}},
		{K: 8, W: 8, chunks: [][]int{{0, 1, 2, 3, 4, 5, 6, 7}}},
		{K: 5, W: 1, chunks: [][]int{{0, 1, 2, 3, 4}}},
		// A = 1: the middle keyframe; chunks of W - A = 1
		{K: 3, W: 2, anchors: []int{1}, chunks: [][]int{{0}, {2}}},
		// A = 2: floor(K/4), floor(3K/4); chunks of 2
		{K: 10, W: 4, anchors: []int{2, 7}, chunks: [][]int{{0, 1}, {3, 4}, {5, 6}, {8, 9}}},
		// odd W: A = 2, chunks of 3
		{K: 9, W: 5, anchors: []int{2, 6}, chunks: [][]int{{0, 1, 3}, {4, 5, 7}, {8}}},
		// the test model's case: 96 frames, batch 4, W 8
		{K: 24, W: 8, anchors: []int{3, 9, 15, 21}, chunks: [][]int{{0, 1, 2, 4}, {5, 6, 7, 8}, {10, 11, 12, 13}, {14, 16, 17, 18}, {19, 20, 22, 23}}},
	} {
		w := edit.WindowPlan(tc.K, tc.W)
		if !slices.Equal(w.Anchors, tc.anchors) || fmt.Sprint(w.Chunks) != fmt.Sprint(tc.chunks) {
			t.Errorf("WindowPlan(%d, %d) = %v %v, want %v %v", tc.K, tc.W, w.Anchors, w.Chunks, tc.anchors, tc.chunks)
		}
		if w.Windowed() != (len(tc.anchors) > 0) {
			t.Errorf("WindowPlan(%d, %d).Windowed() = %v", tc.K, tc.W, w.Windowed())
		}
	}
}

// TestEditWindowSchedule: 40 frames in batches of 4 (K = 10 middle
// keyframes, frames 4b+2) under a window of 4: the anchors' pass (slots
// 2 and 7: frames 10 and 30) keeps its keys/values; the other keyframes
// go two at a time, each chunk just before the first batch that needs it,
// attending to the anchors; every propagation pass gets a cache of
// exactly its two pivots, and a slot's pivots are dropped once the batch
// after it is done: at most W = 4 held.
func TestEditWindowSchedule(t *testing.T) {
	const steps = 2
	ddim, ts := defaultDDIM(t, steps)
	f := &heldUNet{}
	e, err := edit.New(f, ddim, fakeInputs(40, ts), edit.Params{Steps: steps, Guidance: 7.5, PnPAttn: 1, PnPConv: 1, BatchSize: 4, Keyframes: keyframes.Middle, KeyframeWindow: 4})
	if err != nil {
		t.Fatal(err)
	}
	f.e = e
	if _, err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, t := range ts {
		qk, conv := true, true
		key := func(kf []int, anchors []int, keep bool) string {
			var a []int
			if anchors != nil {
				a = anchors
			}
			return fmt.Sprintf("t%d key %v anchors=%v keep=%v qk=%v conv=%v", t, kf, a, keep, qk, conv)
		}
		prop := func(p0, p1 int, held []int, cache []int) string {
			return fmt.Sprintf("t%d prop n=4 pivots=%d,%d conv=%v held=%v cache=%v", t, p0, p1, conv, held, cache)
		}
		anchors := []int{10, 30}
		want = append(want,
			key(anchors, nil, true),
			key([]int{2, 6}, anchors, false),
			prop(2, 2, []int{2, 6, 10, 30}, []int{2}),
			prop(6, 2, []int{2, 6, 10, 30}, []int{6, 2}),
			prop(10, 6, []int{6, 10, 30}, []int{10, 6}),
			key([]int{14, 18}, anchors, false),
			prop(14, 10, []int{10, 14, 18, 30}, []int{14, 10}),
			prop(18, 14, []int{14, 18, 30}, []int{18, 14}),
			key([]int{22, 26}, anchors, false),
			prop(22, 18, []int{18, 22, 26, 30}, []int{22, 18}),
			prop(26, 22, []int{22, 26, 30}, []int{26, 22}),
			prop(30, 26, []int{26, 30}, []int{30, 26}),
			key([]int{34, 38}, anchors, false),
			prop(34, 30, []int{30, 34, 38}, []int{34, 30}),
			prop(38, 34, []int{34, 38}, []int{38, 34}),
		)
	}
	if !slices.Equal(f.calls, want) {
		t.Errorf("passes mismatch:\nwant %q\ngot  %q", want, f.calls)
	}
	if e.PeakPivots != 4 {
		t.Errorf("at most %d keyframes' pivots held, want 4", e.PeakPivots)
	}
	if h := e.HeldPivots(); len(h) != 0 {
		t.Errorf("pivots %v still held after the edit", h)
	}
}

// TestEditWindowOfficialWhenItFits: with K <= W (and with no window) the
// step is the official one: one keyframe pass of all K keyframes through
// KeyframePass, the propagation passes reading its cache.
func TestEditWindowOfficialWhenItFits(t *testing.T) {
	ddim, ts := defaultDDIM(t, 1)
	for _, W := range []int{0, 3, 8} {
		f := &fakeUNet{}
		e, err := edit.New(f, ddim, fakeInputs(10, ts), edit.Params{Steps: 1, Guidance: 7.5, PnPAttn: 1, PnPConv: 1, BatchSize: 4, Keyframes: keyframes.Middle, KeyframeWindow: W})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := []string{
			fmt.Sprintf("t%d key [2 6 9] qk=true conv=true", ts[0]),
			fmt.Sprintf("t%d prop n=4 pivots=2,2 conv=true", ts[0]),
			fmt.Sprintf("t%d prop n=4 pivots=6,2 conv=true", ts[0]),
			fmt.Sprintf("t%d prop n=2 pivots=9,6 conv=true", ts[0]),
		}
		if !slices.Equal(f.calls, want) {
			t.Errorf("W=%d: passes %q, want %q", W, f.calls, want)
		}
		if e.PeakPivots != 0 {
			t.Errorf("W=%d: PeakPivots %d for an official step", W, e.PeakPivots)
		}
	}
}

// TestEditWindowPromptsEqualSingleRuns: windowed steps (10 keyframes,
// window 4) of three prompts edited together, in one call and in calls of
// two, give each prompt exactly its own single-prompt windowed edit; and
// the window changes the result (the anchors' keys/values reach the other
// keyframes).
func TestEditWindowPromptsEqualSingleRuns(t *testing.T) {
	const steps, P = 2, 3
	ddim, ts := defaultDDIM(t, steps)
	params := edit.Params{Steps: steps, Guidance: 7.5, PnPAttn: 0.5, PnPConv: 0.8, BatchSize: 4, Keyframes: keyframes.Random, Seed: 3, KeyframeWindow: 4}
	all := promptInputs(40, ts, P)
	want := make([]tensor.Tensor, P)
	for p := range P {
		in := all
		in.Prompt = all.Prompt.Row(p)
		e, err := edit.New(&groupUNet{}, ddim, in, params)
		if err != nil {
			t.Fatal(err)
		}
		if want[p], err = e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		official := params
		official.KeyframeWindow = 0
		if e, err = edit.New(&groupUNet{}, ddim, in, official); err != nil {
			t.Fatal(err)
		}
		o, err := e.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(o.Data, want[p].Data) {
			t.Errorf("prompt %d: the windowed edit equals the official one: the anchors had no effect", p)
		}
	}
	for _, per := range []int{0, 2} {
		p := params
		p.PromptsPerCall = per
		e, err := edit.New(&groupUNet{}, ddim, all, p)
		if err != nil {
			t.Fatal(err)
		}
		xs, errs, err := e.RunPrompts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for q := range P {
			if errs[q] != nil {
				t.Fatal(errs[q])
			}
			if !slices.Equal(xs[q].Data, want[q].Data) {
				t.Errorf("%d prompts per call: prompt %d differs from its single windowed edit", per, q)
			}
		}
	}
}
