package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tokenflow/tokenflow/internal/progress"
)

// progressIntervalEnv sets how often plain progress lines are written
// when stderr is not a terminal (a log, a pipe): a Go duration, 10s by
// default; 0 writes one at every report.
const progressIntervalEnv = "TOKENFLOW_PROGRESS_INTERVAL"

// progressFromEnv applies $TOKENFLOW_PROGRESS_INTERVAL; a bad value is one
// line on stderr and false.
func progressFromEnv(stderr io.Writer) bool {
	v := os.Getenv(progressIntervalEnv)
	if v == "" {
		return true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		fmt.Fprintf(stderr, "tokenflow: $%s %q: want a duration like 30s or 1m (0 for a line at every step)\n", progressIntervalEnv, v)
		return false
	}
	progress.Interval = d
	return true
}
