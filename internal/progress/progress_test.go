package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLinesWhenNotATerminal(t *testing.T) {
	oldI, oldW := Interval, RateWindow
	Interval, RateWindow = 0, time.Millisecond
	defer func() { Interval, RateWindow = oldI, oldW }()
	var buf bytes.Buffer
	r := New(&buf, "inversion", "frame-steps", 4)
	r.Set(1)
	time.Sleep(2 * time.Millisecond)
	r.Set(2)
	r.Set(4)
	r.Finish()
	r.Finish()
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (two periodic, one final), got %d:\n%s", len(lines), out)
	}
	// The first report starts the clock: no rate, no time left yet.
	if !strings.HasPrefix(lines[0], "inversion: 1/4 frame-steps (25%)") || strings.Contains(lines[0], "/s") || strings.Contains(lines[0], "left") {
		t.Errorf("first line %q: want the count without a rate", lines[0])
	}
	if !strings.HasPrefix(lines[1], "inversion: 2/4 frame-steps (50%)") || !strings.Contains(lines[1], "frame-steps/s, about") {
		t.Errorf("second line %q: want a rate and the time left", lines[1])
	}
	if !strings.HasPrefix(lines[2], "inversion: 4/4 frame-steps (100%)") || strings.Contains(lines[2], "left") {
		t.Errorf("last line %q", lines[2])
	}
}

func TestQuietByInterval(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf, "x", "u", 100)
	for i := 1; i < 100; i++ {
		r.Set(i)
	}
	if buf.Len() != 0 {
		t.Errorf("lines written within the interval: %q", buf.String())
	}
	r.Finish()
	if !strings.Contains(buf.String(), "100/100") && !strings.Contains(buf.String(), "99/100") {
		t.Errorf("final line %q", buf.String())
	}
}

func TestNilWriter(t *testing.T) {
	r := New(nil, "x", "u", 10)
	r.Set(5)
	r.Finish()
}

// TestSpeed: the rate counts from the first report, and only once
// RateWindow has passed: a reporter made when 300 units were already done
// does not claim they took no time.
func TestSpeed(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var s speed
	for _, c := range []struct {
		after time.Duration
		done  int
		want  string
	}{
		{0, 300, ""},                                       // the first report: the clock starts
		{time.Microsecond, 310, ""},                        // 10 units in 1 µs is no rate
		{RateWindow / 2, 400, ""},                          // still within the window
		{2 * time.Second, 500, ", 100 u/s, about 5s left"}, // (500-300)/2 s
		{20 * time.Second, 505, ", 10 u/s, about 48s left"},
		{200 * time.Second, 1000, ", 3.5 u/s"}, // done: no time left
	} {
		if got := s.rateText(t0.Add(c.after), c.done, 1000, "u"); got != c.want {
			t.Errorf("after %v at %d: %q, want %q", c.after, c.done, got, c.want)
		}
	}
	if got := formatRate(0.5, "frames"); got != "30.0 frames/min" {
		t.Errorf("half a frame a second: %q", got)
	}
}

// TestBarFirstTickHasNoRate: the terminal bar's first draw, right after
// many units were reported at once, shows the count but no rate (it showed
// "35607 frames/s"); once RateWindow has passed the rate is the real one.
func TestBarFirstTickHasNoRate(t *testing.T) {
	c := newClock()
	var buf bytes.Buffer
	b := newBar(&buf, meter{label: "vae encode", unit: "frames", total: 100}, c.now)
	b.Set(40)
	if first := buf.String(); !strings.Contains(first, "40/100") || strings.Contains(first, "/s") || strings.Contains(first, "/min") {
		t.Errorf("first draw %q: want the count, no rate", first)
	}
	buf.Reset()
	c.set(4 * time.Second)
	b.Set(60)
	if second := buf.String(); !strings.Contains(second, "60/100") || !strings.Contains(second, "vae encode, 5.0 frames/s, about 8s left") {
		t.Errorf("draw after 4 s: %q: want 5.0 frames/s ((60-40)/4 s) and 8s left", second)
	}
	b.Finish()
}
