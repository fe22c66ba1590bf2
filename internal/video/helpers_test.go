package video

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

// ff runs the ffmpeg command line to make a fixture; test clips come from
// lavfi sources (testsrc2 for pictures that change every frame, sine for
// audio).
func ff(t testing.TB, args ...string) {
	t.Helper()
	testenv.FFmpeg(t)
	cmd := exec.Command("ffmpeg", append([]string{"-hide_banner", "-nostdin", "-v", "error", "-y"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
}

// testClip writes a testsrc2 clip of the given size, rate and frame count
// (libx264, yuv420p) to dir/name, with a sine audio track as long as the
// video when audio is set, and returns its path.
func testClip(t testing.TB, dir, name, size, rate string, frames int, audio bool) string {
	t.Helper()
	path := filepath.Join(dir, name)
	// Durations on the sources, not -frames:v: that would close the file
	// when the video ends and cut the audio short.
	dur := durationArg(frames, rate)
	args := []string{"-f", "lavfi", "-i", "testsrc2=s=" + size + ":r=" + rate + ":d=" + dur}
	if audio {
		args = append(args, "-f", "lavfi", "-i", "sine=f=440:r=44100:d="+dur, "-c:a", "aac")
	}
	args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
	ff(t, append(args, path)...)
	return path
}

func itoa(i int) string { return strconv.Itoa(i) }

func durationArg(frames int, rate string) string {
	r, err := ParseRational(rate)
	if err != nil {
		panic(err)
	}
	return seconds(r.FrameTime(frames))
}

// pngFolder writes n PNG frames of w x h with varied pixel values (seeded
// noise plus a frame-dependent offset) to a new folder, and returns the
// folder and the frames as rgb24.
func pngFolder(t testing.TB, n, w, h int) (string, []Frame) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "frames")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	frames := pngFrames(t, n, w, h)
	for i, f := range frames {
		var buf bytes.Buffer
		if err := png.Encode(&buf, f.RGBA()); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, FrameFileName(i)), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, frames
}

// pngFrames makes n frames of w x h with varied values: seeded noise in red
// and blue, a frame-dependent ramp in green.
func pngFrames(t testing.TB, n, w, h int) []Frame {
	rng := rand.New(rand.NewPCG(1, 2))
	var frames []Frame
	for i := range n {
		f := Frame{Index: i, Width: w, Height: h, Pix: make([]byte, w*h*3)}
		for p := 0; p < len(f.Pix); p += 3 {
			f.Pix[p] = byte(rng.IntN(256))
			f.Pix[p+1] = byte(p/3 + i*31)
			f.Pix[p+2] = byte(rng.IntN(256) ^ i)
		}
		frames = append(frames, f)
	}
	return frames
}

// probe is Probe, failing t on error; folderFPS is at most one rate.
func probe(t testing.TB, path string, folderFPS ...Rational) Info {
	t.Helper()
	testenv.FFmpeg(t)
	var fps Rational
	if len(folderFPS) > 0 {
		fps = folderFPS[0]
	}
	in, err := Probe(context.Background(), path, fps)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// decoded is a whole clip in memory, for tests to compare.
type decoded struct {
	Size   Size
	FPS    Rational // the clip's own rate (source rate / stride)
	Range  Range    // the resolved source range
	Times  []time.Duration
	Frames []Frame
}

// decodeClip collects every frame opts selects through Frames.
func decodeClip(ctx context.Context, in Info, opts DecodeOptions) (*decoded, error) {
	var frames []Frame
	for f, err := range Frames(ctx, in, opts) {
		if err != nil {
			return nil, err
		}
		frames = append(frames, f)
	}
	r, err := opts.Range.Resolve(in)
	if err != nil {
		return nil, err
	}
	if opts.Size.IsZero() {
		opts.Size = DefaultSize(in.DisplaySize())
	}
	return &decoded{Size: opts.Size, FPS: in.RangeFPS(r), Range: r, Times: in.RangeTimes(r), Frames: frames}, nil
}

func decodeAll(t testing.TB, in Info, opts DecodeOptions) *decoded {
	t.Helper()
	clip, err := decodeClip(context.Background(), in, opts)
	if err != nil {
		t.Fatal(err)
	}
	return clip
}

// encodeClip writes clip through an Encoder; opts.FPS and opts.Times
// default to the clip's.
func encodeClip(ctx context.Context, path string, clip *decoded, opts EncodeOptions) error {
	if !opts.FPS.Valid() {
		opts.FPS = clip.FPS
	}
	if opts.Times == nil {
		opts.Times = clip.Times
	}
	enc, err := NewEncoder(ctx, path, clip.Size, opts)
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

// writePNGs writes frames into dir (made if missing) as FrameFileName(0),
// FrameFileName(1), ..., the way the pipeline writes a frames folder.
func writePNGs(dir string, frames []Frame) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	for i, f := range frames {
		if err := WritePNG(filepath.Join(dir, FrameFileName(i)), f); err != nil {
			return err
		}
	}
	return nil
}

// frameFromImage converts any image to an rgb24 frame (alpha is dropped).
func frameFromImage(index int, img image.Image) Frame {
	b := img.Bounds()
	f := Frame{Index: index, Width: b.Dx(), Height: b.Dy(), Pix: make([]byte, 0, b.Dx()*b.Dy()*3)}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			f.Pix = append(f.Pix, byte(r>>8), byte(g>>8), byte(bl>>8))
		}
	}
	return f
}

// variableRate reports whether the source's frames are unevenly spaced.
func variableRate(in Info) bool { return !evenlySpaced(in.FrameTimes, in.FPS) }

// meanAbsDiff is the mean absolute difference of two equal-length byte
// slices.
func meanAbsDiff(a, b []byte) float64 {
	var sum int
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < 0 {
			d = -d
		}
		sum += d
	}
	return float64(sum) / float64(len(a))
}

// firstDiff reports the first differing pixel of two rgb24 frames, or "".
func firstDiff(want, got Frame) string {
	if want.Width != got.Width || want.Height != got.Height || len(want.Pix) != len(got.Pix) {
		return "size " + Size{got.Width, got.Height}.String() + ", want " + Size{want.Width, want.Height}.String()
	}
	for i := range want.Pix {
		if want.Pix[i] != got.Pix[i] {
			p := i / 3
			return "pixel (" + itoa(p%want.Width) + "," + itoa(p/want.Width) + ") channel " + itoa(i%3) +
				": got " + itoa(int(got.Pix[i])) + ", want " + itoa(int(want.Pix[i]))
		}
	}
	return ""
}
