package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLinesWhenNotATerminal(t *testing.T) {
	old := Interval
	Interval = 0
	defer func() { Interval = old }()
	var buf bytes.Buffer
	r := New(&buf, "inversion", "frame-steps", 4)
	r.Set(1)
	time.Sleep(time.Millisecond)
	r.Set(2)
	r.Set(4)
	r.Finish()
	r.Finish()
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (two periodic, one final), got %d:\n%s", len(lines), out)
	}
	if !strings.HasPrefix(lines[0], "inversion: 1/4 frame-steps (25%)") || !strings.Contains(lines[0], "left") {
		t.Errorf("first line %q", lines[0])
	}
	if !strings.HasPrefix(lines[2], "inversion: 4/4 frame-steps (100%)") {
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
