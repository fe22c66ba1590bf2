package video

import (
	"context"
	"fmt"
	"io"
	"iter"
	"os/exec"

	ffmpeg "github.com/u2takey/ffmpeg-go"
)

// ScaleFlags are the swscale flags for every resize and colour conversion:
// Lanczos (the official TokenFlow tool resizes with PIL's LANCZOS), with
// accurate rounding and full chroma interpolation, so that frames that need
// no resize come out with exactly the source's RGB values.
const ScaleFlags = "lanczos+accurate_rnd+full_chroma_int+full_chroma_inp"

// DecodeOptions says what to decode.
type DecodeOptions struct {
	// Size of the output frames; zero means DefaultSize(in.DisplaySize()).
	// Frames are resized to exactly this size (the aspect ratio is the
	// caller's choice).
	Size Size
	// Range of source frames; use Whole() for all of them. It is checked
	// with Range.Resolve, so errors name --start, --frames and --stride.
	Range Range
}

// Frames streams the frames opts selects from the source in, as rgb24 at
// opts.Size, turned upright by the source's rotation, in order; the caller
// owns each Frame's Pix. Breaking out of the loop stops ffmpeg; after an
// error the iteration ends.
func Frames(ctx context.Context, in Info, opts DecodeOptions) iter.Seq2[Frame, error] {
	return func(yield func(Frame, error) bool) {
		d, err := openDecoder(ctx, in, opts)
		if err != nil {
			yield(Frame{}, err)
			return
		}
		defer func() {
			if !d.done { // the caller stopped early: stop ffmpeg
				d.cmd.Process.Kill()
				d.cmd.Wait()
			}
		}()
		for d.got < d.r.Count {
			// Frames may still sit in the pipe when ctx ends; stop at once
			// regardless.
			if d.ctx.Err() != nil {
				yield(Frame{}, d.finish(false))
				return
			}
			f := Frame{
				Index:  d.r.Start + d.got*d.r.Stride,
				Width:  d.size.W,
				Height: d.size.H,
				Pix:    make([]byte, d.size.W*d.size.H*3),
			}
			if _, err := io.ReadFull(d.stdout, f.Pix); err != nil {
				yield(Frame{}, d.finish(false))
				return
			}
			d.got++
			if !yield(f, nil) {
				return
			}
		}
		d.finish(true)
	}
}

// decoder runs one ffmpeg that writes the selected frames, rgb24, to a pipe.
type decoder struct {
	in     Info
	size   Size
	r      Range
	ctx    context.Context
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr *tailBuffer
	got    int
	done   bool
}

func openDecoder(ctx context.Context, in Info, opts DecodeOptions) (*decoder, error) {
	if err := ctxErr(ctx, "decode "+in.Path); err != nil {
		return nil, err
	}
	r, err := opts.Range.Resolve(in)
	if err != nil {
		return nil, err
	}
	size := opts.Size
	if size.IsZero() {
		size = DefaultSize(in.DisplaySize())
	}
	if msg := sizeProblem(size.W, size.H, false); msg != "" {
		return nil, newError(ErrSize, nil, "decode %s: frame size %s: %s", in.Path, size, msg)
	}

	// Frame k of the output is source frame r.Start + k*r.Stride: select by
	// frame number n, pass frames through unchanged in number
	// (fps_mode passthrough), stop after r.Count.
	var input *ffmpeg.Stream
	start := r.Start
	if in.Folder {
		// The image2 demuxer can start at the first wanted file, so the
		// frames before it are never read.
		input = ffmpeg.Input(in.Pattern, ffmpeg.KwArgs{
			"f": "image2", "pattern_type": "sequence", "framerate": in.FPS.String(), "start_number": in.FirstNumber + r.Start,
		})
		start = 0
	} else {
		input = ffmpeg.Input(ffmpegInput(in.Path))
	}
	v := input.Get("v:0")
	if expr := selectExpr(start, r.Stride); expr != "" {
		v = v.Filter("select", ffmpeg.Args{expr})
	}
	v = v.Filter("scale", ffmpeg.Args{fmt.Sprintf("%d:%d", size.W, size.H)}, ffmpeg.KwArgs{"flags": ScaleFlags}).
		Filter("format", ffmpeg.Args{"rgb24"})
	out := v.Output("pipe:1", ffmpeg.KwArgs{"f": "rawvideo", "fps_mode": "passthrough", "frames:v": r.Count})

	cmd, stderr, err := command(ctx, "ffmpeg", ffmpegArgs(out)...)
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		return nil, newError(ErrFFmpeg, err, "decode %s: cannot start ffmpeg: %v", in.Path, err)
	}
	return &decoder{in: in, size: size, r: r, ctx: ctx, cmd: cmd, stdout: stdout, stderr: stderr}, nil
}

// selectExpr is the select filter expression keeping frames start,
// start+stride, ..., or "" when every frame is kept.
func selectExpr(start, stride int) string {
	switch {
	case start == 0 && stride == 1:
		return ""
	case stride == 1:
		return fmt.Sprintf("gte(n,%d)", start)
	case start == 0:
		return fmt.Sprintf("not(mod(n,%d))", stride)
	}
	return fmt.Sprintf("gte(n,%d)*not(mod(n-%d,%d))", start, start, stride)
}

// finish waits for ffmpeg and returns the outcome: nil when every frame
// was read (ffmpeg's exit status then does not matter), else an error.
func (d *decoder) finish(complete bool) error {
	d.done = true
	if complete {
		io.Copy(io.Discard, d.stdout)
	}
	werr := d.cmd.Wait()
	cerr := ctxErr(d.ctx, "decode "+d.in.Path)
	switch {
	case complete:
		return nil
	case cerr != nil:
		return cerr
	}
	msg := fmt.Sprintf("%s: could decode only %d of the %d frames asked for; the file may be truncated or damaged", d.in.Path, d.got, d.r.Count)
	if summary := d.stderr.Summary(ffmpegInput(d.in.Path), d.in.Pattern); summary != "" {
		msg += " (ffmpeg: " + summary + ")"
	}
	return newError(ErrTruncated, werr, "%s", msg)
}
