// Package progress reports long work on stderr: a bar when stderr is a
// terminal, plain periodic lines otherwise (logs, pipelines). A rate and
// the time left are shown only once they mean something: measured from
// the first report (units done before it, such as the first batch of a
// reporter made at its first report, are not counted as done in no time)
// over at least RateWindow.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Reporter follows one task of a known number of units.
type Reporter interface {
	// Set reports how many units are done.
	Set(done int)
	// Finish ends the report (idempotent).
	Finish()
}

// Interval is how often plain lines are written.
var Interval = 10 * time.Second

// RateWindow is the least time, from the first report, over which a rate
// is measured before it is shown.
var RateWindow = time.Second

// New starts a report of total units named label on w. A bar is drawn when
// w is a terminal; otherwise a line is written at most every Interval, and
// one when done. A nil w reports nothing.
func New(w io.Writer, label, unit string, total int) Reporter {
	if w == nil || total <= 0 {
		return nop{}
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return newBar(w, label, unit, total, time.Now)
	}
	return &lineReporter{w: w, label: label, unit: unit, total: total, start: time.Now(), last: time.Now()}
}

type nop struct{}

func (nop) Set(int) {}
func (nop) Finish() {}

// speed measures units per second from the first report on.
type speed struct {
	started bool
	t0      time.Time
	d0      int
}

// rateText is ", 12.5 frames/s, about 3m left": the units per second
// between the first report and (now, done). It is empty until the rate
// means something (RateWindow has passed and some units were done since),
// and at the first report, which it records.
func (s *speed) rateText(now time.Time, done, total int, unit string) string {
	if !s.started {
		s.started, s.t0, s.d0 = true, now, done
		return ""
	}
	el := now.Sub(s.t0)
	if el < RateWindow || done <= s.d0 {
		return ""
	}
	r := float64(done-s.d0) / el.Seconds()
	text := ", " + formatRate(r, unit)
	if done < total {
		left := time.Duration(float64(total-done) / r * float64(time.Second))
		text += fmt.Sprintf(", about %s left", left.Round(time.Second))
	}
	return text
}

// formatRate is r units per second, per minute when slower than one a
// second.
func formatRate(r float64, unit string) string {
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0f %s/s", r, unit)
	case r >= 1:
		return fmt.Sprintf("%.1f %s/s", r, unit)
	}
	return fmt.Sprintf("%.1f %s/min", 60*r, unit)
}

// barReporter draws progressbar's bar with the count; the rate and the
// time left are ours, in its description (progressbar's own rate counts
// the units done before its first draw as done in no time).
type barReporter struct {
	mu          sync.Mutex
	bar         *progressbar.ProgressBar
	label, unit string
	total       int
	now         func() time.Time
	speed       speed
	desc        string
	described   time.Time
	drawn       time.Time
	once        sync.Once
}

func newBar(w io.Writer, label, unit string, total int, now func() time.Time) *barReporter {
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(label),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionFullWidth(),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionThrottle(0), // ours, below
	)
	return &barReporter{bar: bar, label: label, unit: unit, total: total, now: now, desc: label}
}

// Set draws at most every 100 ms (and the last unit), with the rate
// updated at most once a second, so that it can be read.
func (b *barReporter) Set(done int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if b.speed.started && now.Sub(b.drawn) < 100*time.Millisecond && done < b.total {
		return
	}
	b.drawn = now
	if !b.speed.started || now.Sub(b.described) >= time.Second {
		b.described = now
		if desc := b.label + b.speed.rateText(now, done, b.total, b.unit); desc != b.desc {
			b.desc = desc
			b.bar.Describe(desc)
		}
	}
	b.bar.Set(done)
}

func (b *barReporter) Finish() { b.once.Do(func() { b.bar.Finish() }) }

type lineReporter struct {
	mu          sync.Mutex
	w           io.Writer
	label, unit string
	total, done int
	start, last time.Time
	speed       speed
	once        sync.Once
}

func (l *lineReporter) Set(done int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = done
	now := time.Now()
	if !l.speed.started {
		l.speed.rateText(now, done, l.total, l.unit) // records the start
	}
	if now.Sub(l.last) >= Interval && done < l.total {
		l.last = now
		l.line(now)
	}
}

func (l *lineReporter) Finish() {
	l.once.Do(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.line(time.Now())
	})
}

func (l *lineReporter) line(now time.Time) {
	el := now.Sub(l.start)
	fmt.Fprintf(l.w, "%s: %d/%d %s (%d%%) in %s%s\n", l.label, l.done, l.total, l.unit, 100*l.done/l.total,
		el.Round(100*time.Millisecond), l.speed.rateText(now, l.done, l.total, l.unit))
}
