package video

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	ffmpeg "github.com/u2takey/ffmpeg-go"
)

// DefaultCRF is x264's constant rate factor unless EncodeOptions says
// otherwise: visually close to lossless.
const DefaultCRF = 18

// DefaultVP9CRF is libvpx-vp9's constant quality level for WebM output
// unless EncodeOptions says otherwise (0-63, lower is better; 31 is the
// level Google recommends for HD).
const DefaultVP9CRF = 31

// AudioSource is a stretch of a media file's audio to put under the
// encoded frames: every audio stream of the file is kept. Info.AudioFor
// makes one for a frame range.
type AudioSource struct {
	Path     string
	Start    time.Duration // where in Path the stretch starts
	Duration time.Duration // how long it is; 0 means as long as the video
}

// EncodeOptions says how to encode.
type EncodeOptions struct {
	FPS Rational // frame rate (must be valid unless Times is set)
	// Times, when set, are when each frame starts, from 0, and as a last
	// entry when the last frame ends (one more entry than frames, each
	// later than the one before): the frames are written at those times,
	// as a variable-frame-rate clip, and FPS is only nominal. Info.RangeTimes
	// gives them for a source's range; nil writes frames 1/FPS apart.
	Times     []time.Duration
	CRF       int          // constant rate factor (lower is better): x264's 1-51 (0 means DefaultCRF), VP9's 1-63 for .webm (0 means DefaultVP9CRF)
	Preset    string       // x264 preset; "" means "medium"
	Audio     *AudioSource // audio to copy in (re-encoded to AAC or Opus); nil for none
	NoClobber bool         // refuse to replace an existing file (atomicfile.ErrExist)
	// Notice, when set, is told in one line what the output cannot keep
	// (audio in a GIF), for the caller to show.
	Notice func(msg string)
}

// Encoder writes frames to the format path's extension names (see
// OutputFormat): H.264 (libx264, yuv420p, BT.709) and AAC in MP4 (with
// +faststart), MOV or Matroska, VP9 and Opus in WebM, or a GIF with a
// palette made for the clip. The file appears at its path only when Commit
// succeeds; until then ffmpeg writes a temporary file next to it. Use it as
//
//	enc, err := video.NewEncoder(ctx, path, size, opts)
//	if err != nil { ... }
//	defer enc.Abort()
//	for ... { if err := enc.WriteFrame(f); err != nil { return err } }
//	return enc.Commit()
//
// Any error from WriteFrame or Commit has already stopped ffmpeg and removed
// the temporary file; when ctx ends, ffmpeg is killed. With
// EncodeOptions.Times, exactly len(Times)-1 frames must be written.
type Encoder struct {
	ctx    context.Context
	path   string
	size   Size
	times  []time.Duration
	out    *atomicfile.File
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	script string // filter script file to remove, "" if none
	n      int
	done   bool
}

// NewEncoder starts ffmpeg encoding frames of the given size to path.
func NewEncoder(ctx context.Context, path string, size Size, opts EncodeOptions) (*Encoder, error) {
	if err := ctxErr(ctx, "encode "+path); err != nil {
		return nil, err
	}
	format, err := OutputFormat(path)
	if err != nil {
		return nil, err
	}
	if msg := sizeProblem(size.W, size.H, false); msg != "" {
		return nil, newError(ErrSize, nil, "encode %s: frame size %s: %s", path, size, msg)
	}
	maxCRF := 51
	if format.Name == "webm" {
		maxCRF = 63
	}
	switch {
	case format.Name != "gif" && (size.W%2 != 0 || size.H%2 != 0):
		return nil, newError(ErrSize, nil, "encode %s: frame size %s: %s (yuv420p) needs even width and height", path, size, format.Video)
	case !opts.FPS.Valid() && opts.Times == nil:
		return nil, newError(nil, nil, "encode %s: frame rate %s is not a positive rate", path, opts.FPS)
	case opts.CRF < 0 || opts.CRF > maxCRF:
		return nil, newError(nil, nil, "encode %s: CRF %d: must be between 1 and %d", path, opts.CRF, maxCRF)
	}
	if opts.Times != nil {
		if msg := checkTimes(opts.Times); msg != "" {
			return nil, newError(nil, nil, "encode %s: frame times: %s", path, msg)
		}
	}
	if opts.Audio != nil {
		if _, err := os.Stat(opts.Audio.Path); err != nil {
			return nil, newError(ErrNotFound, err, "encode %s: audio source %s: no such file", path, opts.Audio.Path)
		}
		if format.Audio == "" { // the container holds no audio
			if opts.Notice != nil {
				opts.Notice(fmt.Sprintf("%s: %s files hold no audio; the audio of %s is dropped", path, strings.ToUpper(format.Name), opts.Audio.Path))
			}
			opts.Audio = nil
		}
	}

	out, err := atomicfile.Create(path, 0o666, opts.NoClobber)
	if err != nil {
		return nil, err
	}

	rate, tk := opts.FPS, []int64(nil)
	if t := opts.Times; t != nil {
		// See timing.go: frames timed on a 90 kHz clock by setpts; the
		// nominal input rate gives the last frame its duration.
		tk = make([]int64, len(t))
		for i := range t {
			tk[i] = ticks(t[i])
		}
		rate = Rational{timeBase, int(tk[len(tk)-1] - tk[len(tk)-2])}.reduce()
	}
	v := ffmpeg.Input("pipe:0", ffmpeg.KwArgs{
		"f": "rawvideo", "pix_fmt": "rgb24", "video_size": size.String(), "framerate": rate.String(),
	}).Get("v:0")
	if tk != nil {
		v = v.Filter("settb", ffmpeg.Args{fmt.Sprintf("1/%d", timeBase)}).
			Filter("setpts", ffmpeg.Args{ptsExpr(tk[:len(tk)-1])})
	}
	outArgs := ffmpeg.KwArgs{"f": format.Muxer, "c:v": format.Video, "fps_mode": "passthrough"}
	if opts.Times != nil {
		outArgs["enc_time_base:v"] = fmt.Sprintf("1/%d", timeBase)
	}
	switch format.Name {
	case "gif":
		// One palette for the whole clip, then each frame mapped to it.
		split := v.Split()
		palette := split.Get("0").Filter("palettegen", nil)
		v = ffmpeg.Filter([]*ffmpeg.Stream{split.Get("1"), palette}, "paletteuse", nil)
	default:
		// RGB -> BT.709 limited-range 4:2:0, tagged as such, so players
		// (and our own decoder) convert back with the same matrix.
		v = v.Filter("scale", nil, ffmpeg.KwArgs{"flags": ScaleFlags, "out_color_matrix": "bt709", "out_range": "tv"}).
			Filter("format", ffmpeg.Args{"yuv420p"})
		outArgs["pix_fmt"] = "yuv420p"
		outArgs["colorspace"], outArgs["color_primaries"], outArgs["color_trc"], outArgs["color_range"] = "bt709", "bt709", "bt709", "tv"
	}
	switch format.Video {
	case "libx264":
		outArgs["crf"] = cmp.Or(opts.CRF, DefaultCRF)
		outArgs["preset"] = cmp.Or(opts.Preset, "medium")
	case "libvpx-vp9":
		outArgs["crf"] = cmp.Or(opts.CRF, DefaultVP9CRF)
		outArgs["b:v"] = 0 // constant quality
		outArgs["deadline"], outArgs["cpu-used"], outArgs["row-mt"] = "good", 4, 1
	}
	if format.Muxer == "mp4" || format.Muxer == "mov" {
		outArgs["movflags"] = "+faststart"
	}
	streams := []*ffmpeg.Stream{v}
	if a := opts.Audio; a != nil {
		in := ffmpeg.KwArgs{"ss": seconds(a.Start)}
		if a.Duration > 0 {
			in["t"] = seconds(a.Duration)
		} else {
			outArgs["shortest"] = ""
		}
		// Every audio stream ("a"), not just the first.
		streams = append(streams, ffmpeg.Input(ffmpegInput(a.Path), in).Get("a"))
		outArgs["c:a"], outArgs["b:a"] = format.Audio, format.AudioRate
	}
	// The temporary file exists (atomicfile made it), hence -y.
	cmdStream := ffmpeg.Output(streams, out.Name(), outArgs).OverWriteOutput()

	cmd, stderr, script, err := commandWithScript(ctx, cmdStream)
	if err != nil {
		out.Abort()
		return nil, err
	}
	e := &Encoder{ctx: ctx, path: path, size: size, times: opts.Times, out: out, stderr: stderr, script: script}
	if e.stdin, err = cmd.StdinPipe(); err == nil {
		err = cmd.Start()
	}
	if err != nil {
		e.Abort()
		return nil, newError(ErrFFmpeg, err, "encode %s: cannot start ffmpeg: %v", path, err)
	}
	e.cmd = cmd
	return e, nil
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 6, 64) }

// WriteFrame sends one frame (of the encoder's size) to ffmpeg.
func (e *Encoder) WriteFrame(f Frame) error {
	if e.done {
		return fmt.Errorf("encode %s: encoder already finished", e.path)
	}
	if err := e.ctx.Err(); err != nil {
		return e.fail(err)
	}
	if e.times != nil && e.n == len(e.times)-1 {
		e.Abort()
		return newError(nil, nil, "encode %s: frame %d is one more than the %d frame times given", e.path, f.Index, len(e.times)-1)
	}
	if f.Width != e.size.W || f.Height != e.size.H || len(f.Pix) != e.size.W*e.size.H*3 {
		e.Abort()
		return newError(ErrSize, nil, "encode %s: frame %d is %dx%d with %d bytes, want %s rgb24 (%d bytes)",
			e.path, f.Index, f.Width, f.Height, len(f.Pix), e.size, e.size.W*e.size.H*3)
	}
	if _, err := e.stdin.Write(f.Pix); err != nil {
		return e.fail(err)
	}
	e.n++
	return nil
}

// Commit ends the stream, waits for ffmpeg to finish the file and moves it
// to its path.
func (e *Encoder) Commit() error {
	if e.done {
		return fmt.Errorf("encode %s: encoder already finished", e.path)
	}
	if e.n == 0 {
		e.Abort()
		return newError(ErrNoFrames, nil, "encode %s: no frames to write", e.path)
	}
	if e.times != nil && e.n != len(e.times)-1 {
		e.Abort()
		return newError(nil, nil, "encode %s: %d frames written for %d frame times", e.path, e.n, len(e.times)-1)
	}
	if err := e.stdin.Close(); err != nil {
		return e.fail(err)
	}
	if err := e.cmd.Wait(); err != nil {
		e.cmd = nil // waited
		return e.fail(err)
	}
	e.done = true
	os.Remove(e.script) // the filter script, if any ("" names no file)
	return e.out.Commit()
}

// Abort kills ffmpeg and removes the temporary file. It does nothing after
// Commit, so it is safe to defer.
func (e *Encoder) Abort() error {
	if e.done {
		return nil
	}
	e.done = true
	defer os.Remove(e.script) // the filter script, if any ("" names no file)
	// e.cmd is nil until ffmpeg runs, and once it has been waited for.
	if e.cmd != nil {
		e.stdin.Close()
		e.cmd.Process.Kill()
		e.cmd.Wait()
	}
	return e.out.Abort()
}

// fail stops everything after err and explains it in one line.
func (e *Encoder) fail(err error) error {
	if e.cmd != nil {
		e.stdin.Close()
		e.cmd.Wait() // ffmpeg exits once its input is closed, or was killed
		e.cmd = nil
	}
	e.Abort()
	if cerr := ctxErr(e.ctx, "encode "+e.path); cerr != nil {
		return cerr
	}
	detail := cmp.Or(e.stderr.Summary(e.out.Name()), atomicfile.CauseText(err))
	return newError(ErrFFmpeg, err, "encode %s: ffmpeg failed after %d frames: %s", e.path, e.n, detail)
}
