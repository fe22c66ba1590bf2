package video

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Writing frames at given times
//
// Raw frames reach ffmpeg through a pipe without timestamps, at a nominal
// rate. To write a variable-frame-rate clip, the encoder's filter graph
// first moves the frames to a 1/90000 s time base (settb) and then sets
// each frame's timestamp with setpts, whose expression maps the frame
// number N to its time in ticks. The encoder keeps that time base
// (-enc_time_base) and passes timestamps through (-fps_mode passthrough), so
// the container gets the times as given. The last frame lasts as long as
// one frame at the nominal input rate, which is set to 1/(its duration).

// timeBase is the time base, in ticks per second, frames are timed in: the
// 90 kHz clock of MPEG, fine enough for any frame rate.
const timeBase = 90000

// ticks converts d to timeBase ticks, rounded.
func ticks(d time.Duration) int64 {
	return int64(math.Round(d.Seconds() * timeBase))
}

// checkTimes reports what is wrong with frame times (see
// EncodeOptions.Times), or "".
func checkTimes(times []time.Duration) string {
	if len(times) < 2 {
		return fmt.Sprintf("%d times; want one per frame and the end of the last", len(times))
	}
	if times[0] != 0 {
		return fmt.Sprintf("the first frame starts at %v; want 0", times[0])
	}
	for i := 1; i < len(times); i++ {
		if ticks(times[i]) <= ticks(times[i-1]) {
			return fmt.Sprintf("time %v of frame %d is not after %v of the one before (at 1/%d s)", times[i], i, times[i-1], timeBase)
		}
	}
	return ""
}

// ptsExpr is a setpts expression giving frame N (0 to len(t)-1) the time
// t[N] in ticks. Runs of evenly spaced frames become one term a+(N-k)*d,
// and the runs are found by a balanced binary search on N: ffmpeg's if()
// evaluates only the branch taken, so each frame costs O(log runs) and the
// expression nests only that deep.
func ptsExpr(t []int64) string {
	type run struct {
		k    int   // first frame
		t, d int64 // its time, the step to the next
	}
	var runs []run
	for i := 0; i < len(t); {
		r := run{k: i, t: t[i]}
		j := i + 1
		if j < len(t) {
			r.d = t[j] - t[i]
			for j+1 < len(t) && t[j+1]-t[j] == r.d {
				j++
			}
			j++
		}
		runs = append(runs, r)
		i = j
	}
	var b strings.Builder
	var build func(rs []run)
	build = func(rs []run) {
		if len(rs) == 1 {
			r := rs[0]
			switch {
			case r.d == 0:
				fmt.Fprintf(&b, "%d", r.t)
			case r.k == 0:
				fmt.Fprintf(&b, "%d+N*%d", r.t, r.d)
			default:
				fmt.Fprintf(&b, "%d+(N-%d)*%d", r.t, r.k, r.d)
			}
			return
		}
		mid := len(rs) / 2
		fmt.Fprintf(&b, "if(lt(N,%d),", rs[mid].k)
		build(rs[:mid])
		b.WriteByte(',')
		build(rs[mid:])
		b.WriteByte(')')
	}
	build(runs)
	return b.String()
}
