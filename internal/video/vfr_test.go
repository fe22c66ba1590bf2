package video

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"
)

// vfrClip writes issue 9's clip: source frames 0, 3, ..., 27 of a 30 fps
// run (10 frames at 10 fps, 0.0-0.9 s), then frames 30-47 (18 at 30 fps,
// 1.0-1.6 s), with 1.6 s of audio. Each frame is a flat grey of luma
// 16+4n (limited range) for its 30 fps source number n, so any decoded
// frame tells which source frame it is.
func vfrClip(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "vfr.mp4")
	ff(t, "-f", "lavfi", "-i", "color=c=black:s=32x32:r=30:d=1.6",
		"-f", "lavfi", "-i", "sine=f=440:r=44100:d=1.6",
		"-vf", "format=yuv420p,geq=lum='16+N*4':cb=128:cr=128,select='if(lt(n,30),not(mod(n,3)),1)'",
		"-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "1", "-c:a", "aac", path)
	return path
}

// sourceNumber reads the 30 fps source number a frame of vfrClip shows.
func sourceNumber(f Frame) int {
	var sum int
	for i := 0; i < len(f.Pix); i += 3 {
		sum += int(f.Pix[i+1])
	}
	// RGB level g is luma 16 + g*219/255.
	return int(math.Round(float64(sum) / float64(len(f.Pix)/3) * 219 / 255 / 4))
}

// vfrNumber is the 30 fps source number of frame i of vfrClip.
func vfrNumber(i int) int {
	if i < 10 {
		return 3 * i
	}
	return 20 + i
}

// shownAt is the frame of in shown at time at: the last starting at or
// before it.
func shownAt(in Info, at time.Duration) int {
	k := 0
	for n := range in.Frames {
		if in.FrameTime(n) <= at {
			k = n
		}
	}
	return k
}

// A variable-frame-rate clip keeps its timing through decode and encode:
// video and audio last as long as the source's, and each frame plays when
// it did in the source.
func TestVariableFrameRate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := probe(t, vfrClip(t, dir))
	const frame = time.Second / 30 // the tolerance: one frame at the fast rate
	if in.Frames != 28 || !variableRate(in) || len(in.FrameTimes) != 29 {
		t.Fatalf("source: %d frames, variable %v, %d times; want 28 frames, variable, 29 times", in.Frames, variableRate(in), len(in.FrameTimes))
	}
	for n := range 29 {
		want := time.Duration(n) * 100 * time.Millisecond
		if n > 10 {
			want = time.Second + time.Duration(n-10)*time.Second/30
		}
		if !within(in.FrameTime(n), want, time.Millisecond) {
			t.Errorf("source frame %d starts at %v, want %v", n, in.FrameTime(n), want)
		}
	}

	for _, tt := range []struct {
		name    string
		r       Range
		wantDur time.Duration // of the output, video and audio alike
	}{
		{"whole", Whole(), 1600 * time.Millisecond},
		// From frame 5 (0.5 s) every other frame: 0.5-1.6 s.
		{"stride 2 from 5", Range{Start: 5, Count: ToEnd, Stride: 2}, 1100 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clip := decodeAll(t, in, DecodeOptions{Size: Size{32, 32}, Range: tt.r})
			if clip.Times == nil {
				t.Fatal("decoded clip has no frame times")
			}
			out := filepath.Join(dir, "out-"+tt.name+".mp4")
			if err := encodeClip(context.Background(), out, clip, EncodeOptions{Audio: in.AudioFor(clip.Range), Preset: "ultrafast", CRF: 1}); err != nil {
				t.Fatal(err)
			}
			got := probe(t, out)
			t.Logf("%s: %d frames, video %v, audio %v (want %v)", tt.name, got.Frames, got.Duration, got.AudioDuration, tt.wantDur)
			if got.Frames != len(clip.Frames) {
				t.Errorf("%d frames, want %d", got.Frames, len(clip.Frames))
			}
			if !within(got.Duration, tt.wantDur, frame) || !within(got.AudioDuration, tt.wantDur, frame) {
				t.Errorf("video lasts %v and audio %v, want %v within %v", got.Duration, got.AudioDuration, tt.wantDur, frame)
			}
			// Every frame starts when it did in the source (counted from
			// the clip's first frame).
			t0 := in.FrameTime(clip.Range.Start)
			for k := range clip.Frames {
				src := clip.Range.Start + k*clip.Range.Stride
				if want := in.FrameTime(src) - t0; !within(got.FrameTime(k), want, time.Millisecond) {
					t.Errorf("output frame %d (source %d) starts at %v, want %v", k, src, got.FrameTime(k), want)
				}
			}
			// What plays at 1.0 s in the source (of the frames the range
			// keeps) plays at 1.0 s - t0 in the output, by its pixels.
			back := decodeAll(t, got, DecodeOptions{Size: Size{32, 32}, Range: Whole()})
			at := time.Second - t0
			k := shownAt(got, at)
			want, wantAt := 0, time.Duration(0)
			for j := range clip.Frames {
				if src := clip.Range.Start + j*clip.Range.Stride; in.FrameTime(src) <= time.Second {
					want, wantAt = vfrNumber(src), in.FrameTime(src)
				}
			}
			if n := sourceNumber(back.Frames[k]); n != want {
				t.Errorf("at %v the output shows source frame %d (of 30 fps numbering), want %d", at, n, want)
			}
			if !within(got.FrameTime(k)+t0, wantAt, frame) {
				t.Errorf("it plays from %v in the output (%v in source time), want %v", got.FrameTime(k), got.FrameTime(k)+t0, wantAt-t0)
			}
			t.Logf("%s: the frame shown at 1.000 s in the source (number %d, from %v) plays from %v in the output, %v in source time",
				tt.name, want, wantAt, got.FrameTime(k), got.FrameTime(k)+t0)
		})
	}
}

// Times for thousands of unevenly spaced frames make a filter graph too
// long for the command line: it goes through a script file, and every
// frame still lands on its time.
func TestEncodeManyFrameTimes(t *testing.T) {
	t.Parallel()
	const n = 4000
	rng := rand.New(rand.NewPCG(3, 4))
	times := make([]time.Duration, n+1)
	for i := 1; i <= n; i++ {
		times[i] = times[i-1] + time.Duration(20+rng.IntN(30))*time.Millisecond + time.Duration(rng.IntN(1000))*time.Microsecond
	}
	tk := make([]int64, n)
	for i := range tk {
		tk[i] = ticks(times[i])
	}
	if l := len(ptsExpr(tk)); l <= maxFilterArg {
		t.Fatalf("expression is %d bytes; the test needs more than %d", l, maxFilterArg)
	}
	f := Frame{Width: 8, Height: 8, Pix: make([]byte, 8*8*3)}
	clip := &decoded{Size: Size{8, 8}, FPS: Rational{30, 1}, Times: times}
	for range n {
		clip.Frames = append(clip.Frames, f)
	}
	out := filepath.Join(t.TempDir(), "many.mkv")
	if err := encodeClip(context.Background(), out, clip, EncodeOptions{Preset: "ultrafast"}); err != nil {
		t.Fatal(err)
	}
	got := probe(t, out)
	if got.Frames != n {
		t.Fatalf("%d frames, want %d", got.Frames, n)
	}
	// Matroska keeps milliseconds.
	bad := 0
	for i := 0; i <= n; i++ {
		if !within(got.FrameTime(i), times[i], time.Millisecond) {
			if bad++; bad <= 3 {
				t.Errorf("frame %d at %v, want %v", i, got.FrameTime(i), times[i])
			}
		}
	}
}

func TestPtsExpr(t *testing.T) {
	for _, tt := range []struct {
		ticks []int64
		want  string
	}{
		{[]int64{0}, "0"},
		{[]int64{0, 3000, 6000, 9000}, "0+N*3000"},
		{[]int64{0, 9000, 18000, 21000, 24000}, "if(lt(N,3),0+N*9000,21000+(N-3)*3000)"},
		{[]int64{0, 1, 3, 6}, "if(lt(N,2),0+N*1,3+(N-2)*3)"},
		{[]int64{0, 5, 7, 20, 21}, "if(lt(N,2),0+N*5,if(lt(N,4),7+(N-2)*13,21))"},
	} {
		if got := ptsExpr(tt.ticks); got != tt.want {
			t.Errorf("ptsExpr(%v) = %s, want %s", tt.ticks, got, tt.want)
		}
	}
}

// TestEncodeBadTimes: frame times that cannot time a clip are refused in
// one line before ffmpeg starts (fewer than two used to panic).
func TestEncodeBadTimes(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, tt := range []struct {
		times []time.Duration
		want  string
	}{
		{[]time.Duration{}, "frame times: 0 times; want one per frame and the end of the last"},
		{[]time.Duration{0}, "frame times: 1 times; want one per frame and the end of the last"},
		{[]time.Duration{5 * ms, 40 * ms}, "frame times: the first frame starts at 5ms; want 0"},
		{[]time.Duration{0, 40 * ms, 40 * ms}, "frame times: time 40ms of frame 2 is not after 40ms of the one before (at 1/90000 s)"},
	} {
		out := filepath.Join(t.TempDir(), "out.mp4")
		enc, err := NewEncoder(context.Background(), out, Size{8, 8}, EncodeOptions{Times: tt.times})
		if err == nil {
			enc.Abort()
			t.Errorf("times %v: no error", tt.times)
			continue
		}
		if want := "encode " + out + ": " + tt.want; err.Error() != want {
			t.Errorf("times %v:\n got %v\nwant %s", tt.times, err, want)
		}
	}
}
