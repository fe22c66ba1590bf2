package video

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	ffmpeg "github.com/u2takey/ffmpeg-go"
)

// DefaultCRF is x264's constant rate factor unless EncodeOptions says
// otherwise: visually close to lossless.
const DefaultCRF = 18

// AudioSource is a stretch of a media file's first audio stream to put
// under the encoded frames. Info.AudioFor makes one for a frame range.
type AudioSource struct {
	Path     string
	Start    time.Duration // where in Path the stretch starts
	Duration time.Duration // how long it is; 0 means as long as the video
}

// EncodeOptions says how to encode.
type EncodeOptions struct {
	FPS       Rational     // frame rate; Encode defaults it to the clip's
	CRF       int          // x264 constant rate factor 1-51 (lower is better); 0 means DefaultCRF
	Preset    string       // x264 preset; "" means "medium"
	Audio     *AudioSource // audio to copy in (re-encoded to AAC); nil for none
	NoClobber bool         // refuse to replace an existing file (atomicfile.ErrExist)
}

// Encoder writes frames to an H.264 MP4 (libx264, yuv420p, BT.709, with
// +faststart) through one ffmpeg. The file appears at its path only when
// Commit succeeds; until then ffmpeg writes a temporary file next to it.
// Use it as
//
//	enc, err := video.NewEncoder(ctx, path, size, opts)
//	if err != nil { ... }
//	defer enc.Abort()
//	for ... { if err := enc.WriteFrame(f); err != nil { return err } }
//	return enc.Commit()
//
// Any error from WriteFrame or Commit has already stopped ffmpeg and removed
// the temporary file; when ctx ends, ffmpeg is killed.
type Encoder struct {
	ctx    context.Context
	path   string
	size   Size
	out    *atomicfile.File
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	n      int
	done   bool
}

// NewEncoder starts ffmpeg encoding frames of the given size to path.
func NewEncoder(ctx context.Context, path string, size Size, opts EncodeOptions) (*Encoder, error) {
	if err := ctxErr(ctx, "encode "+path); err != nil {
		return nil, err
	}
	if msg := sizeProblem(size.W, size.H, false); msg != "" {
		return nil, newError(ErrSize, nil, "encode %s: frame size %s: %s", path, size, msg)
	}
	switch {
	case size.W%2 != 0 || size.H%2 != 0:
		return nil, newError(ErrSize, nil, "encode %s: frame size %s: H.264 (yuv420p) needs positive, even width and height", path, size)
	case !opts.FPS.Valid():
		return nil, newError(nil, nil, "encode %s: frame rate %s is not a positive rate", path, opts.FPS)
	case opts.CRF < 0 || opts.CRF > 51:
		return nil, newError(nil, nil, "encode %s: CRF %d: must be between 1 and 51", path, opts.CRF)
	}
	crf := opts.CRF
	if crf == 0 {
		crf = DefaultCRF
	}
	preset := opts.Preset
	if preset == "" {
		preset = "medium"
	}
	if opts.Audio != nil {
		if _, err := os.Stat(opts.Audio.Path); err != nil {
			return nil, newError(ErrNotFound, err, "encode %s: audio source %s: no such file", path, opts.Audio.Path)
		}
	}

	var aopts []atomicfile.Option
	if opts.NoClobber {
		aopts = append(aopts, atomicfile.NoClobber())
	}
	out, err := atomicfile.Create(path, aopts...)
	if err != nil {
		return nil, err
	}

	frames := ffmpeg.Input("pipe:0", ffmpeg.KwArgs{
		"f": "rawvideo", "pix_fmt": "rgb24", "video_size": size.String(), "framerate": opts.FPS.String(),
	})
	// RGB -> BT.709 limited-range 4:2:0, tagged as such, so players (and
	// our own decoder) convert back with the same matrix.
	streams := []*ffmpeg.Stream{frames.Get("v:0").
		Filter("scale", nil, ffmpeg.KwArgs{"flags": ScaleFlags, "out_color_matrix": "bt709", "out_range": "tv"}).
		Filter("format", ffmpeg.Args{"yuv420p"})}
	outArgs := ffmpeg.KwArgs{
		"f": "mp4", "c:v": "libx264", "preset": preset, "crf": crf, "pix_fmt": "yuv420p",
		"colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709", "color_range": "tv",
		"movflags": "+faststart", "fps_mode": "passthrough",
	}
	if a := opts.Audio; a != nil {
		in := ffmpeg.KwArgs{"ss": seconds(a.Start)}
		if a.Duration > 0 {
			in["t"] = seconds(a.Duration)
		} else {
			outArgs["shortest"] = ""
		}
		streams = append(streams, ffmpeg.Input(ffmpegInput(a.Path), in).Get("a:0"))
		outArgs["c:a"], outArgs["b:a"] = "aac", "192k"
	}
	// The temporary file exists (atomicfile made it), hence -y.
	cmdStream := ffmpeg.Output(streams, out.Name(), outArgs).OverWriteOutput()

	cmd, stderr, err := command(ctx, cmdStream)
	if err != nil {
		out.Abort()
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		out.Abort()
		return nil, newError(ErrFFmpeg, err, "encode %s: %v", path, err)
	}
	if err := cmd.Start(); err != nil {
		out.Abort()
		return nil, newError(ErrFFmpeg, err, "encode %s: cannot start ffmpeg: %v", path, err)
	}
	return &Encoder{ctx: ctx, path: path, size: size, out: out, cmd: cmd, stdin: stdin, stderr: stderr}, nil
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

// Written is the number of frames written so far.
func (e *Encoder) Written() int { return e.n }

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
	if err := e.stdin.Close(); err != nil {
		return e.fail(err)
	}
	if err := e.cmd.Wait(); err != nil {
		e.cmd = nil // waited
		return e.fail(err)
	}
	e.done = true
	return e.out.Commit()
}

// Abort kills ffmpeg and removes the temporary file. It does nothing after
// Commit, so it is safe to defer.
func (e *Encoder) Abort() error {
	if e.done {
		return nil
	}
	e.done = true
	if e.cmd != nil {
		e.stdin.Close()
		if e.cmd.Process != nil {
			e.cmd.Process.Kill()
		}
		e.cmd.Wait()
	}
	return e.out.Abort()
}

// fail stops everything after err and explains it in one line.
func (e *Encoder) fail(err error) error {
	cmd := e.cmd
	if cmd != nil {
		e.stdin.Close()
		cmd.Wait() // ffmpeg exits once its input is closed, or was killed
		e.cmd = nil
	}
	e.Abort()
	if cerr := ctxErr(e.ctx, "encode "+e.path); cerr != nil {
		return cerr
	}
	detail := e.stderr.Summary(e.out.Name())
	if detail == "" {
		detail = causeText(err)
	}
	return newError(ErrFFmpeg, err, "encode %s: ffmpeg failed after %d frames: %s", e.path, e.n, detail)
}

// Encode writes a whole clip to path; opts.FPS defaults to clip.FPS.
func Encode(ctx context.Context, path string, clip *Clip, opts EncodeOptions) error {
	if len(clip.Frames) == 0 {
		return newError(ErrNoFrames, nil, "encode %s: no frames to write", path)
	}
	if !opts.FPS.Valid() {
		opts.FPS = clip.FPS
	}
	size := clip.Size
	if size.IsZero() {
		size = Size{clip.Frames[0].Width, clip.Frames[0].Height}
	}
	enc, err := NewEncoder(ctx, path, size, opts)
	if err != nil {
		return err
	}
	defer enc.Abort()
	for _, f := range clip.Frames {
		if err := enc.WriteFrame(f); err != nil {
			return err
		}
	}
	return enc.Commit()
}
