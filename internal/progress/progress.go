// Package progress reports long work on stderr: a bar with ETA when stderr
// is a terminal, plain periodic lines otherwise (logs, pipelines).
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

// New starts a report of total units named label on w. A bar is drawn when
// w is a terminal; otherwise a line is written at most every Interval, and
// one when done. A nil w reports nothing.
func New(w io.Writer, label, unit string, total int) Reporter {
	if w == nil || total <= 0 {
		return nop{}
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar := progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(label),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString(unit),
			progressbar.OptionShowIts(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionFullWidth(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
		return &barReporter{bar: bar}
	}
	return &lineReporter{w: w, label: label, unit: unit, total: total, start: time.Now(), last: time.Now()}
}

type nop struct{}

func (nop) Set(int) {}
func (nop) Finish() {}

type barReporter struct {
	bar  *progressbar.ProgressBar
	once sync.Once
}

func (b *barReporter) Set(done int) { b.bar.Set(done) }
func (b *barReporter) Finish()      { b.once.Do(func() { b.bar.Finish() }) }

type lineReporter struct {
	mu          sync.Mutex
	w           io.Writer
	label, unit string
	total, done int
	start, last time.Time
	finished    bool
}

func (l *lineReporter) Set(done int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = done
	if now := time.Now(); now.Sub(l.last) >= Interval && done < l.total {
		l.last = now
		l.line(now)
	}
}

func (l *lineReporter) Finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.finished {
		return
	}
	l.finished = true
	l.line(time.Now())
}

func (l *lineReporter) line(now time.Time) {
	el := now.Sub(l.start)
	eta := ""
	if l.done > 0 && l.done < l.total {
		left := time.Duration(float64(el) * float64(l.total-l.done) / float64(l.done))
		eta = fmt.Sprintf(", about %s left", left.Round(time.Second))
	}
	fmt.Fprintf(l.w, "%s: %d/%d %s (%d%%) in %s%s\n", l.label, l.done, l.total, l.unit, 100*l.done/l.total, el.Round(100*time.Millisecond), eta)
}
