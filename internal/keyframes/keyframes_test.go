package keyframes

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    Policy
		wantErr string
	}{
		{in: "random", want: Random},
		{in: "middle", want: Middle},
		{in: "Middle", wantErr: `keyframes Middle: unknown policy: want random or middle`},
		{in: "", wantErr: `keyframes "": unknown policy: want random or middle`},
		{in: "first", wantErr: `keyframes first: unknown policy: want random or middle`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePolicy(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePolicy(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePolicy(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParsePolicy(%q) mismatch (-want +got):\n-%v\n+%v", tt.in, tt.want, got)
			}
			if got.String() != tt.in {
				t.Errorf("%v.String() = %q, want %q (round trip)", got, got.String(), tt.in)
			}
		})
	}
}

func TestScheduleMiddle(t *testing.T) {
	tests := []struct {
		name            string
		steps, n, batch int
		want            [][]int
	}{
		// The conformance fixture (MANIFEST: keyframes per step [2, 6]).
		{name: "reference N=8 B=4", steps: 3, n: 8, batch: 4, want: [][]int{{2, 6}, {2, 6}, {2, 6}}},
		// Remainder batch [8, 9]: start 8 + len 2/2 = 9.
		{name: "remainder N=10 B=4", steps: 1, n: 10, batch: 4, want: [][]int{{2, 6, 9}}},
		// Remainder batch of one frame [8]: 8 + 1/2 = 8.
		{name: "remainder of one N=9 B=4", steps: 1, n: 9, batch: 4, want: [][]int{{2, 6, 8}}},
		// Remainder batch [8, 9, 10]: 8 + 3/2 = 9.
		{name: "remainder N=11 B=4", steps: 1, n: 11, batch: 4, want: [][]int{{2, 6, 9}}},
		// Odd batch size: b*5 + 5/2.
		{name: "odd batch N=10 B=5", steps: 1, n: 10, batch: 5, want: [][]int{{2, 7}}},
		{name: "batch of one", steps: 2, n: 3, batch: 1, want: [][]int{{0, 1, 2}, {0, 1, 2}}},
		{name: "single frame", steps: 2, n: 1, batch: 8, want: [][]int{{0}, {0}}},
		// batch > n is clamped: one batch of 5 frames, middle 2.
		{name: "batch larger than n", steps: 1, n: 5, batch: 8, want: [][]int{{2}}},
		{name: "no steps", steps: 0, n: 8, batch: 4, want: [][]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Schedule(Middle, 1, tt.steps, tt.n, tt.batch)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Schedule(Middle, 1, %d, %d, %d) mismatch (-want +got):\n-%v\n+%v",
					tt.steps, tt.n, tt.batch, tt.want, got)
			}
		})
	}
}

func TestScheduleErrors(t *testing.T) {
	tests := []struct {
		name            string
		policy          Policy
		steps, n, batch int
		wantErr         string
	}{
		{name: "no frames", policy: Random, steps: 1, n: 0, batch: 4, wantErr: "number of frames must be at least 1, got 0"},
		{name: "zero batch", policy: Middle, steps: 1, n: 8, batch: 0, wantErr: "batch size must be at least 1, got 0"},
		{name: "negative batch", policy: Middle, steps: 1, n: 8, batch: -2, wantErr: "batch size must be at least 1, got -2"},
		{name: "negative steps", policy: Random, steps: -1, n: 8, batch: 4, wantErr: "number of steps must not be negative, got -1"},
		{name: "bad policy", policy: Policy(7), steps: 1, n: 8, batch: 4, wantErr: "unknown policy Policy(7)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Schedule(tt.policy, 1, tt.steps, tt.n, tt.batch)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Schedule error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestScheduleRandomGolden pins the random stream: a change of generator,
// seeding or draw order changes users' edits for the same --seed, and must
// be deliberate.
func TestScheduleRandomGolden(t *testing.T) {
	got, err := Schedule(Random, 1, 4, 10, 4)
	if err != nil {
		t.Fatal(err)
	}
	// Re-derived outside Go from the PCG-DXSM recurrence (math/rand/v2
	// pcg.go), state (seed, streamID), and Lemire's draw, batch by batch.
	want := [][]int{{3, 7, 8}, {1, 6, 8}, {3, 7, 9}, {0, 4, 9}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Schedule(Random, 1, 4, 10, 4) mismatch (-want +got):\n-%v\n+%v", want, got)
	}
}

func TestScheduleRandomDeterministic(t *testing.T) {
	a, err := Schedule(Random, 42, 50, 40, 8)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Schedule(Random, 42, 50, 40, 8)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("same seed, different schedules (-first +second):\n-%v\n+%v", a, b)
	}
	for _, seed := range []uint64{0, 1, 43, 1 << 63} {
		c, err := Schedule(Random, seed, 50, 40, 8)
		if err != nil {
			t.Fatal(err)
		}
		if reflect.DeepEqual(a, c) {
			t.Errorf("seeds 42 and %d gave the same 50-step schedule", seed)
		}
	}
}

func TestScheduleRandomInBatch(t *testing.T) {
	tests := []struct{ steps, n, batch int }{
		{steps: 50, n: 8, batch: 4},
		{steps: 50, n: 10, batch: 4},
		{steps: 50, n: 9, batch: 4},
		{steps: 20, n: 1, batch: 1},
		{steps: 20, n: 3, batch: 8},
		{steps: 20, n: 7, batch: 1},
		{steps: 20, n: 200, batch: 8},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("N=%d B=%d", tt.n, tt.batch), func(t *testing.T) {
			got, err := Schedule(Random, 7, tt.steps, tt.n, tt.batch)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.steps {
				t.Fatalf("got %d timesteps, want %d", len(got), tt.steps)
			}
			b := min(tt.batch, tt.n)
			m := (tt.n + b - 1) / b
			for i, ks := range got {
				if len(ks) != m {
					t.Fatalf("step %d: %d keyframes, want %d", i, len(ks), m)
				}
				for j, k := range ks {
					lo, hi := j*b, min((j+1)*b, tt.n)
					if k < lo || k >= hi {
						t.Errorf("step %d batch %d: keyframe %d outside [%d, %d)", i, j, k, lo, hi)
					}
				}
			}
		})
	}
}

// TestScheduleRandomUniform checks with a chi-square statistic that each
// batch's keyframe is uniform over the batch's frames, including a shorter
// remainder batch. The seed is fixed, so the test is deterministic; the
// bounds are the chi-square 0.1% critical values, which a fair draw exceeds
// once in a thousand seeds.
func TestScheduleRandomUniform(t *testing.T) {
	const steps = 20000
	n, batch := 11, 4 // batches [0,4) [4,8) [8,11)
	got, err := Schedule(Random, 2024, steps, n, batch)
	if err != nil {
		t.Fatal(err)
	}
	// chi-square critical values at p = 0.001 by degrees of freedom.
	critical := map[int]float64{2: 13.816, 3: 16.266}
	for b := range 3 {
		lo, hi := b*batch, min((b+1)*batch, n)
		counts := make([]int, hi-lo)
		for _, ks := range got {
			counts[ks[b]-lo]++
		}
		expected := float64(steps) / float64(hi-lo)
		chi2 := 0.0
		for _, c := range counts {
			d := float64(c) - expected
			chi2 += d * d / expected
		}
		if chi2 > critical[hi-lo-1] {
			t.Errorf("batch %d [%d, %d): counts %v, chi-square %.2f > %.2f (df %d)",
				b, lo, hi, counts, chi2, critical[hi-lo-1], hi-lo-1)
		}
	}
}

// fixedSource returns the given words in order.
type fixedSource struct{ words []uint64 }

func (s *fixedSource) Uint64() uint64 {
	w := s.words[0]
	s.words = s.words[1:]
	return w
}

func TestUniformRejects(t *testing.T) {
	tests := []struct {
		name     string
		n        uint64
		words    []uint64
		want     uint64
		consumed int
	}{
		// 2^64 mod 3 = 1: x = 0 gives low word 0 < 1 and is rejected; x = 2^63
		// gives 3*2^63 = 2^64 + 2^63, high word 1.
		{name: "reject then accept", n: 3, words: []uint64{0, 1 << 63}, want: 1, consumed: 2},
		{name: "top of range", n: 3, words: []uint64{^uint64(0)}, want: 2, consumed: 1},
		{name: "one value", n: 1, words: []uint64{12345}, want: 0, consumed: 1},
		{name: "power of two", n: 4, words: []uint64{3 << 62}, want: 3, consumed: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fixedSource{words: append([]uint64(nil), tt.words...)}
			got := uniform(src, tt.n)
			if got != tt.want {
				t.Errorf("uniform(%v, %d) mismatch (-want +got):\n-%d\n+%d", tt.words, tt.n, tt.want, got)
			}
			if c := len(tt.words) - len(src.words); c != tt.consumed {
				t.Errorf("consumed %d words, want %d", c, tt.consumed)
			}
		})
	}
}

var _ rand.Source = (*fixedSource)(nil)
