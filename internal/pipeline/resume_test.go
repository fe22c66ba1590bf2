package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/pipeline"
	"github.com/tokenflow/tokenflow/internal/progress"
	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/video"
)

// stopAt is a progress writer that cancels its run once the inversion's
// progress line says step k is done.
type stopAt struct {
	mu      sync.Mutex
	k       int
	cancel  context.CancelFunc
	stopped bool
}

func (s *stopAt) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range strings.Split(string(p), "\n") {
		var step, steps int
		if _, err := fmt.Sscanf(line, "inversion: step %d/%d done", &step, &steps); err == nil && step >= s.k && !s.stopped {
			s.stopped = true
			s.cancel()
		}
	}
	return len(p), nil
}

// TestInvertResumes interrupts an inversion (cancellation) after step k;
// the same request then resumes at step k or k+1, says so, runs only the
// remaining steps and makes the uninterrupted run's entry, byte for byte;
// with NoResume it starts over instead, and says so.
func TestInvertResumes(t *testing.T) {
	testenv.FFmpeg(t)
	const steps, frames, k = 40, 8, 11
	defer func(d time.Duration) { progress.Interval = d }(progress.Interval)
	progress.Interval = 0 // a progress line at every batch
	work := t.TempDir()
	req := func(cache string, log *bytes.Buffer) pipeline.InvertRequest {
		return pipeline.InvertRequest{
			Source:          pipeline.Source{Input: fixture.Expected(t, "tiny-sd21", "tokenflow_inv10", "input_frames"), Size: video.Size{W: 64, H: 64}, Range: video.Whole()},
			Runtime:         pipeline.Runtime{Model: fixture.Model(t, "tiny-sd21"), ORTLib: testenv.ORTLibrary(t), Threads: 2},
			InversionPrompt: "a ball", InversionSteps: steps, Steps: 10, BatchSize: 4,
			CacheDir: filepath.Join(work, cache), Log: log,
		}
	}
	latents := func(dir string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "latents.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var log bytes.Buffer
	whole, err := pipeline.Invert(context.Background(), req("whole", &log))
	if err != nil {
		t.Fatal(err)
	}
	want := latents(whole.CacheDir)

	interrupted := func(cache string) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var log bytes.Buffer
		r := req(cache, &log)
		stop := &stopAt{k: k, cancel: cancel}
		r.Progress = stop
		if _, err := pipeline.Invert(ctx, r); !errors.Is(err, context.Canceled) {
			t.Fatalf("the interrupted inversion: %v, want context.Canceled (stopped %v)\n%s", err, stop.stopped, log.String())
		}
		states, _ := filepath.Glob(filepath.Join(work, cache, "inversions", ".*.partial", "state.safetensors"))
		if len(states) != 1 {
			t.Fatalf("the interrupted run left states %q, want one", states)
		}
	}

	// resumed
	interrupted("resumed")
	log.Reset()
	res, err := pipeline.Invert(context.Background(), req("resumed", &log))
	if err != nil {
		t.Fatal(err)
	}
	var at, of int
	if _, after, ok := strings.Cut(log.String(), "inversion: resuming at step "); ok {
		fmt.Sscanf(after, "%d of %d", &at, &of)
	}
	if at < k || at > k+1 || of != steps {
		t.Fatalf("resumed at step %d of %d, want %d or %d of %d:\n%s", at, of, k, k+1, steps, log.String())
	}
	if res.Reused || res.UNetFrames != int64((steps-(at-1))*frames) {
		t.Errorf("resumed: reused %v, %d UNet frame evaluations, want %d", res.Reused, res.UNetFrames, (steps-(at-1))*frames)
	}
	if !bytes.Equal(latents(res.CacheDir), want) {
		t.Error("the resumed entry's latents differ from the uninterrupted run's")
	}
	if left, _ := filepath.Glob(filepath.Join(work, "resumed", "inversions", ".*.partial")); len(left) != 0 {
		t.Errorf("left after the resumed run: %q", left)
	}

	// NoResume
	interrupted("over")
	log.Reset()
	r := req("over", &log)
	r.NoResume = true
	res, err = pipeline.Invert(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "{no_resume}: removing the interrupted inversion in ") || strings.Contains(log.String(), "resuming") {
		t.Errorf("NoResume log:\n%s", log.String())
	}
	if res.UNetFrames != steps*frames || !bytes.Equal(latents(res.CacheDir), want) {
		t.Errorf("NoResume: %d UNet frame evaluations (want %d), same latents %v", res.UNetFrames, steps*frames, bytes.Equal(latents(res.CacheDir), want))
	}
}
