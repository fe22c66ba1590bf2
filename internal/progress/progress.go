// Package progress reports long work on stderr: a bar when stderr is a
// terminal, plain periodic lines otherwise (logs, pipelines). Each says
// how much is done, the time elapsed, and the process's resident memory
// (RSS; Linux only); a rate and the time left are shown only once they
// mean something: measured from the first report (units done before it,
// such as the first batch of a reporter made at its first report, or the
// steps an earlier run did before a resume, are not counted as done in no
// time) over at least RateWindow.
//
// Work done in steps (the edit's denoising steps) is reported by a
// StepReporter: its bar and lines also say which step runs, and its plain
// output has one line at the end of every step, so that a log shows each
// step as it completes.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
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

// StepReporter follows a task done in steps.
type StepReporter interface {
	Reporter
	// StepDone reports that the first step steps are done, with done
	// units; plain output writes a line for it.
	StepDone(step, done int)
}

// Interval is how often plain lines are written.
var Interval = 10 * time.Second

// RateWindow is the least time, from the first report, over which a rate
// is measured before it is shown.
var RateWindow = time.Second

// rss is how the lines read the resident memory (tests set it).
var rss = RSS

// New starts a report of total units named label on w. A bar is drawn when
// w is a terminal; otherwise a line is written at most every Interval, and
// one when done. A nil w reports nothing.
func New(w io.Writer, label, unit string, total int) Reporter {
	if w == nil || total <= 0 {
		return nop{}
	}
	return newReporter(w, meter{label: label, unit: unit, total: total}, time.Now)
}

// NewSteps starts a report of total units in steps steps, of which an
// earlier run did the first fromStep, fromDone units (0, 0 for a run from
// the start). Those count as done but not in the rate: the clock starts
// now, at fromDone. Otherwise as New.
func NewSteps(w io.Writer, label, unit string, total, steps, fromStep, fromDone int) StepReporter {
	if w == nil || total <= 0 || steps <= 0 {
		return nop{}
	}
	return newReporter(w, stepMeter(label, unit, total, steps, fromStep, fromDone, time.Now()), time.Now)
}

func stepMeter(label, unit string, total, steps, fromStep, fromDone int, now time.Time) meter {
	return meter{label: label, unit: unit, total: total, steps: steps, step: fromStep, done: fromDone,
		speed: speed{started: true, t0: now, d0: fromDone}}
}

func newReporter(w io.Writer, m meter, now func() time.Time) StepReporter {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return newBar(w, m, now)
	}
	return newLines(w, m, now)
}

type nop struct{}

func (nop) Set(int)           {}
func (nop) StepDone(int, int) {}
func (nop) Finish()           {}

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

// meter is what a report knows: the units and steps done, and the rate.
type meter struct {
	label, unit string
	total, done int
	steps, step int // steps 0: a report without steps; step: steps done
	speed       speed
}

// stepText is "step 4/50" while step 4 runs (3 done), "step 3/50 done"
// at its end; "" without steps.
func (m *meter) stepText(ended bool) string {
	switch {
	case m.steps == 0:
		return ""
	case ended:
		return fmt.Sprintf("step %d/%d done", m.step, m.steps)
	}
	return fmt.Sprintf("step %d/%d", min(m.step+1, m.steps), m.steps)
}

// rssText is ", RSS 812 MiB", or "" where it cannot be read.
func rssText() string {
	if n, ok := rss(); ok {
		return ", RSS " + formatBytes(n)
	}
	return ""
}

// line is a plain line: "edit: step 4/50, 96/2000 frame-passes (4%) in
// 1m2s, 1.5 frame-passes/s, about 21m left, RSS 812 MiB".
func (m *meter) line(now, start time.Time, stepEnded bool) string {
	var b strings.Builder
	b.WriteString(m.label + ": ")
	if s := m.stepText(stepEnded); s != "" {
		b.WriteString(s + ", ")
	}
	fmt.Fprintf(&b, "%d/%d %s (%d%%) in %s", m.done, m.total, m.unit, 100*m.done/m.total, now.Sub(start).Round(100*time.Millisecond))
	b.WriteString(m.speed.rateText(now, m.done, m.total, m.unit))
	b.WriteString(rssText())
	return b.String()
}

// description is the bar's text before it (progressbar draws the count
// and the time elapsed): "edit step 4/50, 1.5 frame-passes/s, about 21m
// left, RSS 812 MiB".
func (m *meter) description(now time.Time) string {
	desc := m.label
	if s := m.stepText(false); s != "" {
		desc += " " + s
	}
	return desc + m.speed.rateText(now, m.done, m.total, m.unit) + rssText()
}

// barReporter draws progressbar's bar with the count and the time
// elapsed; the step, the rate, the time left and the memory are ours, in
// its description (progressbar's own rate counts the units done before
// its first draw as done in no time).
type barReporter struct {
	mu        sync.Mutex
	bar       *progressbar.ProgressBar
	m         meter
	now       func() time.Time
	desc      string
	described time.Time
	drawn     time.Time
	once      sync.Once
}

func newBar(w io.Writer, m meter, now func() time.Time) *barReporter {
	bar := progressbar.NewOptions(m.total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(m.label),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionFullWidth(),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionThrottle(0), // ours, below
	)
	b := &barReporter{bar: bar, m: m, now: now, desc: m.label}
	if m.steps > 0 { // a resumed run shows where it starts at once
		b.set(m.done, true)
	}
	return b
}

// Set draws at most every 100 ms (and the last unit), with the text
// updated at most once a second, so that it can be read.
func (b *barReporter) Set(done int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set(done, false)
}

// StepDone draws the new step at once.
func (b *barReporter) StepDone(step, done int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m.step = step
	b.set(done, true)
}

func (b *barReporter) set(done int, force bool) {
	now := b.now()
	b.m.done = done
	if !force && b.m.speed.started && now.Sub(b.drawn) < 100*time.Millisecond && done < b.m.total {
		return
	}
	b.drawn = now
	if force || !b.m.speed.started || now.Sub(b.described) >= time.Second {
		b.described = now
		if desc := b.m.description(now); desc != b.desc {
			b.desc = desc
			b.bar.Describe(desc)
		}
	}
	b.bar.Set(done)
}

func (b *barReporter) Finish() { b.once.Do(func() { b.bar.Finish() }) }

// lineReporter writes plain lines: every Interval, at the end of every
// step, and one when done.
type lineReporter struct {
	mu          sync.Mutex
	w           io.Writer
	m           meter
	now         func() time.Time
	start, last time.Time
	// ended is the done count of the last step's line, -1 before it: the
	// final line repeats nothing.
	ended int
	once  sync.Once
}

func newLines(w io.Writer, m meter, now func() time.Time) *lineReporter {
	t := now()
	return &lineReporter{w: w, m: m, now: now, start: t, last: t, ended: -1}
}

func (l *lineReporter) Set(done int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m.done = done
	now := l.now()
	if !l.m.speed.started {
		l.m.speed.rateText(now, done, l.m.total, l.m.unit) // records the start
	}
	if now.Sub(l.last) >= Interval && done < l.m.total {
		l.last = now
		fmt.Fprintln(l.w, l.m.line(now, l.start, false))
	}
}

func (l *lineReporter) StepDone(step, done int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m.step, l.m.done = step, done
	now := l.now()
	l.last = now
	fmt.Fprintln(l.w, l.m.line(now, l.start, true))
	if step >= l.m.steps {
		l.ended = done
	}
}

func (l *lineReporter) Finish() {
	l.once.Do(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.ended == l.m.done {
			return // the last step's line said it all
		}
		fmt.Fprintln(l.w, l.m.line(l.now(), l.start, false))
	})
}
