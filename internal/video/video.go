// Package video reads and writes the frames tokenflow edits, through the
// ffmpeg and ffprobe binaries (driven with github.com/u2takey/ffmpeg-go).
// Raw RGB frames travel through pipes; no temporary image files are made.
//
// A source is any file ffmpeg reads, or a folder of numbered frames
// (00000.png, 00001.png, ... as the official TokenFlow data folders hold,
// or frame_001.jpg, img-0002.PNG: see FrameFiles). Frame counts and times
// come from the stream's packets, not from what a header claims, so a
// variable-frame-rate clip keeps its timing. The flow is:
//
//	if _, err := video.OutputFormat("out.webm"); err != nil { ... } // before any work
//	info, err := video.Probe(ctx, "in.mp4", video.DefaultFolderFPS) // frames and their times, size, rotation, audio
//	size := video.DefaultSize(info.DisplaySize())        // or video.ParseSize(flag)
//	r, err := video.Whole().Resolve(info)                // or Range{Start, Count, Stride}
//	for f, err := range video.Frames(ctx, info, video.DecodeOptions{Size: size, Range: r}) { ... } // rgb24 frames
//	enc, err := video.NewEncoder(ctx, "out.webm", size, video.EncodeOptions{
//		FPS: info.RangeFPS(r), Times: info.RangeTimes(r), Audio: info.AudioFor(r)})
//	err = enc.WriteFrame(f) // for each frame; then enc.Commit(), or enc.Abort() on failure
//
// The output's extension picks its container and codecs (see
// OutputFormat); every audio stream of the source is kept where the
// container holds audio.
//
// Errors are one line naming the file or flag, and wrap a sentinel (ErrXxx)
// where a caller may want to tell cases apart.
package video

import (
	"errors"
	"fmt"
	"image"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenflow/tokenflow/internal/param"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrFFmpegMissing: the ffmpeg or ffprobe binary is not on PATH.
	ErrFFmpegMissing = errors.New("ffmpeg not found")
	// ErrNotFound: the input path does not exist.
	ErrNotFound = errors.New("file not found")
	// ErrUnreadable: ffmpeg cannot read the input as media (not a video,
	// damaged, or truncated before its index).
	ErrUnreadable = errors.New("not a readable video")
	// ErrNoVideo: the input has no video stream (e.g. an audio file).
	ErrNoVideo = errors.New("no video stream")
	// ErrNoFrames: the input has no frames at all (e.g. an empty folder).
	ErrNoFrames = errors.New("no frames")
	// ErrTruncated: fewer frames could be decoded than the input declares.
	ErrTruncated = errors.New("truncated video")
	// ErrRange: the frame range (--start, --frames, --stride) is invalid for
	// the input.
	ErrRange = errors.New("bad frame range")
	// ErrSize: a frame size (--size) is invalid.
	ErrSize = errors.New("bad frame size")
	// ErrFormat: the output's extension names no format an Encoder writes.
	ErrFormat = errors.New("unsupported output format")
	// ErrFFmpeg: ffmpeg failed for another reason.
	ErrFFmpeg = errors.New("ffmpeg failed")
)

// Error is this package's error: a one-line message for the user and the
// sentinel (Kind) and underlying cause (Err) for errors.Is and errors.As.
type Error struct {
	Msg  string
	Kind error
	Err  error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the sentinel and the cause.
func (e *Error) Unwrap() []error {
	return slices.DeleteFunc([]error{e.Kind, e.Err}, func(err error) bool { return err == nil })
}

func newError(kind, cause error, format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...), Kind: kind, Err: cause}
}

// Rational is an exact frame rate, Num/Den frames per second (30000/1001
// for NTSC video).
type Rational struct {
	Num, Den int
}

// ParseRational reads "30000/1001", "25" or a decimal such as "29.97".
func ParseRational(s string) (Rational, error) {
	s = strings.TrimSpace(s)
	if n, d, ok := strings.Cut(s, "/"); ok {
		num, err1 := strconv.Atoi(n)
		den, err2 := strconv.Atoi(d)
		if err1 != nil || err2 != nil || num <= 0 || den <= 0 {
			return Rational{}, fmt.Errorf("frame rate %q: want a positive fraction like 30000/1001", s)
		}
		return Rational{num, den}.reduce(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f > 0) || math.IsInf(f, 0) {
		return Rational{}, fmt.Errorf("frame rate %q: want a positive number like 25 or 30000/1001", s)
	}
	// Up to 6 decimals, reduced (25 gives 25/1).
	return Rational{int(math.Round(f * 1e6)), 1_000_000}.reduce(), nil
}

// Valid reports whether r is a positive rate.
func (r Rational) Valid() bool { return r.Num > 0 && r.Den > 0 }

// Float64 is r as a number.
func (r Rational) Float64() float64 { return float64(r.Num) / float64(r.Den) }

// String is "Num/Den", as ffmpeg takes it.
func (r Rational) String() string { return strconv.Itoa(r.Num) + "/" + strconv.Itoa(r.Den) }

// Div is r/k: the rate left when keeping every k-th frame.
func (r Rational) Div(k int) Rational { return Rational{r.Num, r.Den * k}.reduce() }

// FrameTime is when frame i starts at rate r.
func (r Rational) FrameTime(i int) time.Duration {
	return time.Duration(math.Round(float64(i) * float64(r.Den) / float64(r.Num) * float64(time.Second)))
}

func (r Rational) reduce() Rational {
	a, b := r.Num, r.Den
	for b != 0 {
		a, b = b, a%b
	}
	if a <= 1 {
		return r
	}
	return Rational{r.Num / a, r.Den / a}
}

// Size is a frame size in pixels.
type Size struct {
	W, H int
}

// String is "WxH".
func (s Size) String() string { return strconv.Itoa(s.W) + "x" + strconv.Itoa(s.H) }

// IsZero reports whether s is unset.
func (s Size) IsZero() bool { return s.W == 0 && s.H == 0 }

// Info describes a source, as Probe finds it.
type Info struct {
	Path   string // as given to Probe
	Folder bool   // a folder of numbered frames rather than a media file

	FPS    Rational // frames per second
	Frames int      // number of frames
	// Width and Height are the stored frame size; Rotation is how many
	// degrees clockwise (0, 90, 180 or 270) the frames must turn to display
	// upright, from the display matrix or the legacy "rotate" tag (see
	// DisplaySize).
	Width, Height int
	Rotation      int
	Duration      time.Duration // of the video stream
	Codec         string        // e.g. "h264", "png"

	HasAudio      bool
	AudioStreams  int           // how many audio streams; an Encoder keeps them all
	AudioDuration time.Duration // of the first audio stream, 0 without audio

	// FrameTimes are when each frame starts, counted from the first
	// frame's start, and as a last entry when the last frame ends: Frames+1
	// entries, read from the stream's timestamps, so a variable-frame-rate
	// clip keeps its timing. Nil when the source has none (a folder, a raw
	// stream): frames are then 1/FPS apart. VideoStart is when the first
	// frame starts in the file's timeline, where its audio is found.
	FrameTimes []time.Duration
	VideoStart time.Duration

	// For a folder: the ffmpeg image2 pattern of its frames (e.g.
	// "/abs/dir/%05d.png") and the number of the first frame.
	Pattern     string
	FirstNumber int
}

// DisplaySize is the size of the frames as displayed, after rotation:
// what decoding produces.
func (in Info) DisplaySize() Size {
	if in.Rotation == 90 || in.Rotation == 270 {
		return Size{in.Height, in.Width}
	}
	return Size{in.Width, in.Height}
}

// RangeFPS is the frame rate of the clip that r selects: the source's rate
// divided by the stride, so the clip lasts as long as the source span. For
// a variable-frame-rate source it is the average; RangeTimes has the times.
func (in Info) RangeFPS(r Range) Rational { return in.FPS.Div(max(r.Stride, 1)) }

// FrameTime is when source frame n starts, from the first frame's start:
// from FrameTimes when the source has them (n = Frames, or past it, is the
// end of the last frame), else n/FPS.
func (in Info) FrameTime(n int) time.Duration {
	if len(in.FrameTimes) == 0 {
		return in.FPS.FrameTime(n)
	}
	return in.FrameTimes[max(0, min(n, len(in.FrameTimes)-1))]
}

// RangeTimes are the times of the clip that r selects, for
// EncodeOptions.Times: when each of its r.Count frames starts, from 0, and
// as a last entry when the last one ends (where the frame after it in the
// source would start, at most the source's end). Nil when the clip's frames
// are evenly spaced at RangeFPS(r), so that encoding may use a plain
// constant rate. r must be resolved (see Range.Resolve).
func (in Info) RangeTimes(r Range) []time.Duration {
	if len(in.FrameTimes) == 0 || r.Count <= 0 {
		return nil
	}
	stride := max(r.Stride, 1)
	t0 := in.FrameTime(r.Start)
	// Bounded by the times read, never by a claimed count.
	frames := len(in.FrameTimes) - 1
	times := make([]time.Duration, 0, min(r.Count, frames)+1)
	for k := range r.Count {
		n := r.Start + k*stride
		if n >= frames {
			break
		}
		times = append(times, in.FrameTime(n)-t0)
	}
	times = append(times, in.FrameTime(r.Start+len(times)*stride)-t0)
	if evenlySpaced(times, in.RangeFPS(r)) {
		return nil
	}
	return times
}

// evenlySpaced reports whether times[k] is k/fps within a millisecond for
// every k (true for no times).
func evenlySpaced(times []time.Duration, fps Rational) bool {
	if !fps.Valid() {
		return len(times) == 0
	}
	for k, t := range times {
		if d := t - times[0] - fps.FrameTime(k); d < -time.Millisecond || d > time.Millisecond {
			return false
		}
	}
	return true
}

// AudioFor is the source's audio for the span of source frames r covers
// (from frame r.Start for r.Count*r.Stride frames, timed as FrameTime
// says), or nil when the source has no audio. r must be resolved (see
// Range.Resolve).
func (in Info) AudioFor(r Range) *AudioSource {
	if !in.HasAudio || in.Folder {
		return nil
	}
	stride := max(r.Stride, 1)
	start := in.FrameTime(r.Start)
	return &AudioSource{
		Path:     in.Path,
		Start:    in.VideoStart + start,
		Duration: in.FrameTime(r.Start+r.Count*stride) - start,
	}
}

// ToEnd as Range.Count means every frame from Start to the end.
const ToEnd = -1

// Range selects source frames Start, Start+Stride, Start+2*Stride, ...,
// Count of them. Frame k of a decoded clip is source frame Start+k*Stride.
type Range struct {
	Start  int // first source frame, from 0 (--start)
	Count  int // number of frames, or ToEnd (--frames); 0 is an error
	Stride int // keep every Stride-th frame; 0 means 1 (--stride)
}

// Whole is the range of every frame.
func Whole() Range { return Range{Start: 0, Count: ToEnd, Stride: 1} }

// Resolve checks r against the source and returns it with Count and Stride
// made concrete. Errors about the range are *param.Error naming the
// setting (start, frames, stride) and wrapping ErrRange.
func (r Range) Resolve(in Info) (Range, error) {
	if r.Stride == 0 {
		r.Stride = 1
	}
	n := in.Frames
	switch {
	case r.Stride < 0:
		return r, param.Kindf(ErrRange, "stride", r.Stride, "must be 1 or more")
	case r.Start < 0:
		return r, param.Kindf(ErrRange, "start", r.Start, "must be 0 or more")
	case r.Count == 0:
		return r, param.Kindf(ErrRange, "frames", 0, "no frames to process; give 1 or more, or leave {frames} out for the whole video")
	case r.Count < ToEnd:
		return r, param.Kindf(ErrRange, "frames", r.Count, "must be 1 or more")
	case n <= 0:
		return r, newError(ErrNoFrames, nil, "%s: has no frames", in.Path)
	case r.Start >= n:
		return r, param.Kindf(ErrRange, "start", r.Start, "past the end of %s, which has %d frames (0 to %d); give {start} %d or less",
			in.Path, n, n-1, n-1)
	}
	avail := (n-1-r.Start)/r.Stride + 1
	if r.Count == ToEnd {
		r.Count = avail
		return r, nil
	}
	if r.Count > avail {
		by := fmt.Sprintf("{start} %d", r.Start)
		if r.Stride > 1 {
			by += fmt.Sprintf(" and {stride} %d", r.Stride)
		}
		return r, param.Kindf(ErrRange, "frames", r.Count, "with %s that needs frames up to %d, but %s has %d frames (0 to %d); give {frames} %d or fewer",
			by, r.Start+(r.Count-1)*r.Stride, in.Path, n, n-1, avail)
	}
	return r, nil
}

// Frame is one RGB frame: Pix holds Width*Height*3 bytes, rgb24, row by row
// from the top left.
type Frame struct {
	Index         int // source frame number
	Width, Height int
	Pix           []byte
}

// RGBA copies f into an image (alpha 255), e.g. for image/png.
func (f Frame) RGBA() *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, f.Width, f.Height))
	for i, j := 0, 0; i+2 < len(f.Pix); i, j = i+3, j+4 {
		img.Pix[j], img.Pix[j+1], img.Pix[j+2], img.Pix[j+3] = f.Pix[i], f.Pix[i+1], f.Pix[i+2], 255
	}
	return img
}
