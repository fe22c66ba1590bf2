package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fakeRSS makes the lines' memory 812 MiB for one test.
func fakeRSS(t *testing.T, n int64, ok bool) {
	old := rss
	rss = func() (int64, bool) { return n, ok }
	t.Cleanup(func() { rss = old })
}

// testClock is the reporters' clock in a test: it stands at t0 (Unix
// 1000) plus the duration last set.
type testClock struct{ t0, t time.Time }

func newClock() *testClock {
	t0 := time.Unix(1000, 0)
	return &testClock{t0: t0, t: t0}
}

// set moves the clock to d after t0.
func (c *testClock) set(d time.Duration) { c.t = c.t0.Add(d) }

func (c *testClock) now() time.Time { return c.t }

// TestStepLines: a resumed run of 10 steps, 3 done by an earlier process
// (30 of 100 units). Each step's end is a line; the periodic line says the
// step that runs; the rate counts only this process's units over its own
// time (10 units in 2 s is 5/s, not 40 in 2 s); the last step's line is
// the last line.
func TestStepLines(t *testing.T) {
	fakeRSS(t, 812<<20, true)
	c := newClock()
	var buf bytes.Buffer
	l := newLines(&buf, stepMeter("edit", "frame-passes", 100, 10, 3, 30, c.now()), c.now)
	c.set(2 * time.Second)
	l.Set(35) // within Interval: no line
	if buf.Len() != 0 {
		t.Fatalf("a line within the interval: %q", buf.String())
	}
	l.StepDone(4, 40)
	c.set(15 * time.Second)
	l.Set(60)
	c.set(16 * time.Second)
	l.Set(61) // 1 s after the last line: none
	c.set(35 * time.Second)
	l.StepDone(10, 100)
	l.Finish()
	l.Finish()
	want := []string{
		"edit: step 4/10 done, 40/100 frame-passes (40%) in 2s, 5.0 frame-passes/s, about 12s left, RSS 812 MiB",
		"edit: step 5/10, 60/100 frame-passes (60%) in 15s, 2.0 frame-passes/s, about 20s left, RSS 812 MiB",
		"edit: step 10/10 done, 100/100 frame-passes (100%) in 35s, 2.0 frame-passes/s, RSS 812 MiB",
	}
	if got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestStepLinesFinishEarly: a run that stops before its last step (every
// prompt failed) still ends with a line; without a readable RSS the lines
// leave it out; a run from the start shows no rate within RateWindow.
func TestStepLinesFinishEarly(t *testing.T) {
	fakeRSS(t, 0, false)
	c := newClock()
	var buf bytes.Buffer
	l := newLines(&buf, stepMeter("edit", "u", 40, 4, 0, 0, c.now()), c.now)
	c.set(RateWindow / 2)
	l.StepDone(1, 10)
	c.set(4 * time.Second)
	l.Set(20)
	l.Finish()
	want := "edit: step 1/4 done, 10/40 u (25%) in 500ms\n" +
		"edit: step 2/4, 20/40 u (50%) in 4s, 5.0 u/s, about 4s left\n"
	if buf.String() != want {
		t.Errorf("lines:\n%swant:\n%s", buf.String(), want)
	}
}

// TestPlainLineHasRSS: the reports without steps say the memory too.
func TestPlainLineHasRSS(t *testing.T) {
	fakeRSS(t, 3<<30+300<<20, true)
	c := newClock()
	var buf bytes.Buffer
	l := newLines(&buf, meter{label: "vae decode", unit: "frames", total: 8}, c.now)
	l.Set(8)
	l.Finish()
	if want := "vae decode: 8/8 frames (100%) in 0s, RSS 3.3 GiB\n"; buf.String() != want {
		t.Errorf("line %q, want %q", buf.String(), want)
	}
}

// TestStepBar: the terminal bar of a resumed run shows the step to run at
// once, and after a step's end the next one with this process's rate.
func TestStepBar(t *testing.T) {
	fakeRSS(t, 812<<20, true)
	c := newClock()
	var buf bytes.Buffer
	b := newBar(&buf, stepMeter("edit", "frame-passes", 100, 10, 3, 30, c.now()), c.now)
	if first := buf.String(); !strings.Contains(first, "edit step 4/10, RSS 812 MiB") || !strings.Contains(first, "30/100") || strings.Contains(first, "/s") {
		t.Errorf("first draw %q: want step 4/10, the count 30/100, no rate", first)
	}
	buf.Reset()
	c.set(2 * time.Second)
	b.StepDone(4, 40)
	if got := buf.String(); !strings.Contains(got, "edit step 5/10, 5.0 frame-passes/s, about 12s left, RSS 812 MiB") || !strings.Contains(got, "40/100") {
		t.Errorf("draw after step 4: %q", got)
	}
	b.Finish()
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\ttokenflow\nVmPeak:\t  900000 kB\nVmRSS:\t  831488 kB\nRssAnon:\t 1 kB\n"
	if n, ok := parseVmRSS([]byte(status)); !ok || n != 831488<<10 {
		t.Errorf("parseVmRSS = %d, %v; want %d", n, ok, 831488<<10)
	}
	for _, bad := range []string{"", "VmRSS: lots\n", "VmRSS:\t12 MB\n", "VmHWM:\t12 kB\n"} {
		if n, ok := parseVmRSS([]byte(bad)); ok {
			t.Errorf("parseVmRSS(%q) = %d, ok", bad, n)
		}
	}
	for n, want := range map[int64]string{812 << 20: "812 MiB", 1<<20 - 1: "1 MiB", 1536 << 20: "1.5 GiB", 24 << 30: "24 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
