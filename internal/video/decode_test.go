package video

import (
	"bytes"
	"context"
	"errors"
	"image/jpeg"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

func TestProbeFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name       string
		make       func() string
		wantFPS    Rational
		wantFrames int
		wantSize   Size
		wantAudio  bool
	}{
		{
			name:    "mp4 with audio",
			make:    func() string { return testClip(t, dir, "a.mp4", "64x48", "25", 50, true) },
			wantFPS: Rational{25, 1}, wantFrames: 50, wantSize: Size{64, 48}, wantAudio: true,
		},
		{
			name:    "ntsc rate",
			make:    func() string { return testClip(t, dir, "ntsc.mp4", "32x32", "30000/1001", 12, false) },
			wantFPS: Rational{30000, 1001}, wantFrames: 12, wantSize: Size{32, 32},
		},
		{
			// Matroska has no frame count in its header: Probe counts.
			name: "mkv counted",
			make: func() string {
				p := filepath.Join(dir, "k.mkv")
				ff(t, "-f", "lavfi", "-i", "testsrc2=s=32x16:r=25", "-frames:v", "10", "-c:v", "libx264", "-preset", "ultrafast", p)
				return p
			},
			wantFPS: Rational{25, 1}, wantFrames: 10, wantSize: Size{32, 16},
		},
		{
			// A raw H.264 stream has no timestamps: frames are counted,
			// and timed by the rate.
			name: "raw h264 untimed",
			make: func() string {
				p := filepath.Join(dir, "r.h264")
				ff(t, "-f", "lavfi", "-i", "testsrc2=s=32x32:r=25", "-frames:v", "7", "-c:v", "libx264", "-preset", "ultrafast", "-f", "h264", p)
				return p
			},
			wantFPS: Rational{25, 1}, wantFrames: 7, wantSize: Size{32, 32},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := probe(t, tt.make())
			if variableRate(in) {
				t.Errorf("constant-rate clip reported as variable: %v", in.FrameTimes)
			}
			if r, _ := Whole().Resolve(in); in.RangeTimes(r) != nil {
				t.Errorf("constant-rate clip has clip times %v", in.RangeTimes(r))
			}
			if in.FPS != tt.wantFPS || in.Frames != tt.wantFrames || in.DisplaySize() != tt.wantSize || in.HasAudio != tt.wantAudio || in.Rotation != 0 {
				t.Errorf("Probe = %+v\nwant fps %v, %d frames, %v, audio %v", in, tt.wantFPS, tt.wantFrames, tt.wantSize, tt.wantAudio)
			}
			wantDur := tt.wantFPS.FrameTime(tt.wantFrames)
			if d := in.Duration - wantDur; d < -time.Millisecond*5 || d > time.Millisecond*5 {
				t.Errorf("duration %v, want %v", in.Duration, wantDur)
			}
			if tt.wantAudio {
				if d := in.AudioDuration - wantDur; d < -40*time.Millisecond || d > 40*time.Millisecond {
					t.Errorf("audio duration %v, want %v", in.AudioDuration, wantDur)
				}
			}
		})
	}
}

func TestProbeFolder(t *testing.T) {
	t.Parallel()
	dir, _ := pngFolder(t, 8, 24, 16)
	in := probe(t, dir, Rational{12, 1})
	want := Info{Path: dir, Folder: true, FPS: Rational{12, 1}, Frames: 8, Width: 24, Height: 16,
		Duration: Rational{12, 1}.FrameTime(8), Codec: "png"}
	in.Pattern, in.FirstNumber = "", 0
	if !reflect.DeepEqual(in, want) {
		t.Errorf("Probe = %+v\nwant %+v", in, want)
	}
	if in := probe(t, dir); in.FPS != (Rational{10, 1}) {
		t.Errorf("default folder fps %v, want 10/1", in.FPS)
	}

	// JPEG frames, unpadded numbers starting at 1: decoded close to what Go's
	// own JPEG decoder sees (decoders upsample 4:2:0 chroma differently, so
	// smooth gradients rather than noise).
	jdir := filepath.Join(t.TempDir(), "jpg")
	os.Mkdir(jdir, 0o755)
	var wantJPEG []Frame
	for i := range 3 {
		f := Frame{Width: 32, Height: 16, Pix: make([]byte, 32*16*3)}
		for p := 0; p < len(f.Pix); p += 3 {
			x, y := p/3%32, p/3/32
			f.Pix[p], f.Pix[p+1], f.Pix[p+2] = byte(x*6+i*20), byte(y*12), 128
		}
		var buf bytes.Buffer
		jpeg.Encode(&buf, f.RGBA(), &jpeg.Options{Quality: 95})
		img, err := jpeg.Decode(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		wantJPEG = append(wantJPEG, frameFromImage(i, img))
		os.WriteFile(filepath.Join(jdir, strconv.Itoa(i+1)+".jpg"), buf.Bytes(), 0o644)
	}
	in = probe(t, jdir)
	if in.Frames != 3 || in.Codec != "mjpeg" || in.FirstNumber != 1 || in.DisplaySize() != (Size{32, 16}) {
		t.Fatalf("jpeg folder: %+v", in)
	}
	clip := decodeAll(t, in, DecodeOptions{Size: Size{32, 16}, Range: Whole()})
	for i, f := range clip.Frames {
		if d := meanAbsDiff(wantJPEG[i].Pix, f.Pix); d > 3 {
			t.Errorf("jpeg frame %d: mean abs diff %.2f to Go's decode, want <= 3", i, d)
		}
	}
}

// A folder of PNGs decodes to exactly their pixel values when no resize is
// needed, and a frame range picks exactly the right files.
func TestDecodeFolderExact(t *testing.T) {
	t.Parallel()
	dir, want := pngFolder(t, 8, 40, 24)
	in := probe(t, dir)
	clip := decodeAll(t, in, DecodeOptions{Size: in.DisplaySize(), Range: Whole()})
	if len(clip.Frames) != len(want) {
		t.Fatalf("%d frames, want %d", len(clip.Frames), len(want))
	}
	for i, f := range clip.Frames {
		if d := firstDiff(want[i], f); d != "" || f.Index != i {
			t.Errorf("frame %d (index %d): %s", i, f.Index, d)
		}
	}

	clip = decodeAll(t, in, DecodeOptions{Size: in.DisplaySize(), Range: Range{Start: 1, Count: 3, Stride: 3}})
	for k, f := range clip.Frames {
		src := 1 + 3*k
		if d := firstDiff(want[src], f); d != "" || f.Index != src {
			t.Errorf("range frame %d (index %d, want source %d): %s", k, f.Index, src, d)
		}
	}
	if len(clip.Frames) != 3 || clip.FPS != (Rational{10, 3}) {
		t.Errorf("range gave %d frames at %v, want 3 at 10/3", len(clip.Frames), clip.FPS)
	}
}

// Frame k of a range is source frame start+k*stride, checked against a
// decode of every frame (testsrc2 changes every frame).
func TestDecodeRange(t *testing.T) {
	t.Parallel()
	// testsrc2 needs some size for every frame to differ.
	path := testClip(t, t.TempDir(), "r.mp4", "96x64", "25", 30, false)
	in := probe(t, path)
	size := Size{48, 32}
	all := decodeAll(t, in, DecodeOptions{Size: size, Range: Whole()})
	if len(all.Frames) != 30 {
		t.Fatalf("whole clip: %d frames, want 30", len(all.Frames))
	}
	for i := 1; i < len(all.Frames); i++ {
		if firstDiff(all.Frames[i-1], all.Frames[i]) == "" {
			t.Fatalf("frames %d and %d are identical; the test cannot tell frames apart", i-1, i)
		}
	}
	for _, r := range []Range{
		{Start: 3, Count: 5, Stride: 4},
		{Start: 0, Count: 10, Stride: 3},
		{Start: 29, Count: 1, Stride: 1},
		{Start: 10, Count: ToEnd, Stride: 7},
		{Start: 7, Count: 4, Stride: 1},
	} {
		clip := decodeAll(t, in, DecodeOptions{Size: size, Range: r})
		rr, _ := r.Resolve(in)
		if len(clip.Frames) != rr.Count {
			t.Errorf("%+v: %d frames, want %d", r, len(clip.Frames), rr.Count)
			continue
		}
		for k, f := range clip.Frames {
			src := r.Start + k*r.Stride
			if d := firstDiff(all.Frames[src], f); d != "" || f.Index != src {
				t.Errorf("%+v: frame %d (index %d) is not source frame %d: %s", r, k, f.Index, src, d)
			}
		}
	}
}

func TestDecodeDefaultSize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct {
		size string
		want Size
	}{
		{"1280x720", Size{680, 384}},
		{"720x1280", Size{384, 680}},
		{"640x640", Size{512, 512}},
	} {
		in := probe(t, testClip(t, dir, tt.size+".mp4", tt.size, "25", 2, false))
		clip := decodeAll(t, in, DecodeOptions{Range: Whole()})
		if clip.Size != tt.want || len(clip.Frames) != 2 {
			t.Errorf("%s: decoded %d frames at %v, want 2 at %v", tt.size, len(clip.Frames), clip.Size, tt.want)
		}
		for _, f := range clip.Frames {
			if f.Width != tt.want.W || f.Height != tt.want.H || len(f.Pix) != tt.want.W*tt.want.H*3 {
				t.Errorf("%s: frame %d is %dx%d with %d bytes", tt.size, f.Index, f.Width, f.Height, len(f.Pix))
			}
		}
	}
}

// rotate turns an rgb24 frame by deg degrees clockwise (90 or 270).
func rotate(f Frame, deg int) Frame {
	w, h := f.Width, f.Height
	out := Frame{Index: f.Index, Width: h, Height: w, Pix: make([]byte, len(f.Pix))}
	for y := range h {
		for x := range w {
			var nx, ny int
			if deg == 90 {
				nx, ny = h-1-y, x
			} else {
				nx, ny = y, w-1-x
			}
			copy(out.Pix[(ny*h+nx)*3:][:3], f.Pix[(y*w+x)*3:][:3])
		}
	}
	return out
}

func TestDecodeRotated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	plain := testClip(t, dir, "plain.mp4", "64x32", "25", 3, false)
	rotated := filepath.Join(dir, "rotated.mp4")
	// ffmpeg 5.1 has no -display_rotation; the rotate tag on a stream copy
	// becomes the MP4 display matrix.
	ff(t, "-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated)

	in := probe(t, rotated)
	if in.Rotation != 90 && in.Rotation != 270 {
		t.Fatalf("rotation %d, want 90 or 270", in.Rotation)
	}
	if in.Width != 64 || in.Height != 32 || in.DisplaySize() != (Size{32, 64}) {
		t.Fatalf("stored %dx%d displayed %v, want 64x32 displayed 32x64", in.Width, in.Height, in.DisplaySize())
	}
	if clip := decodeAll(t, in, DecodeOptions{Range: Range{Count: 1}}); clip.Size != DefaultSize(Size{32, 64}) || clip.Size.H <= clip.Size.W {
		t.Errorf("default decode size %v, want %v (portrait)", clip.Size, DefaultSize(Size{32, 64}))
	}

	// The pixels are turned the way Rotation says: compare with the unrotated
	// clip turned in Go. (ffmpeg turns the YUV planes before converting to
	// RGB, we turn RGB, so chroma siting differs slightly.)
	up := decodeAll(t, probe(t, plain), DecodeOptions{Size: Size{64, 32}, Range: Range{Count: 1}}).Frames[0]
	got := decodeAll(t, in, DecodeOptions{Size: Size{32, 64}, Range: Range{Count: 1}}).Frames[0]
	same := meanAbsDiff(rotate(up, in.Rotation).Pix, got.Pix)
	other := meanAbsDiff(rotate(up, 360-in.Rotation).Pix, got.Pix)
	if same > 2 || other < 10 {
		t.Errorf("mean abs diff to the frame turned %d° is %.2f (want <= 2), to the other way %.2f (want >= 10)", in.Rotation, same, other)
	}
}

func TestDecodeStreaming(t *testing.T) {
	t.Parallel()
	path := testClip(t, t.TempDir(), "s.mp4", "32x32", "25", 20, false)
	in := probe(t, path)
	opts := DecodeOptions{Size: Size{16, 16}, Range: Whole()}

	n := 0
	for f, err := range Frames(context.Background(), in, opts) {
		if err != nil {
			t.Fatal(err)
		}
		if f.Index != n {
			t.Errorf("frame %d has index %d", n, f.Index)
		}
		n++
		if n == 5 {
			break
		}
	}
	n = 0
	for _, err := range Frames(context.Background(), in, opts) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 20 {
		t.Errorf("iterator gave %d frames, want 20", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	for _, err = range Frames(ctx, in, opts) {
		cancel()
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Frames after cancel ended with %v, want context.Canceled", err)
	}
}

// A frame count the container claims sizes nothing: an Info claiming 2^40
// frames for a 3-frame clip decodes the 3 frames it has, allocating about
// what they take, and reports the shortfall.
func TestDecodeLyingFrameCount(t *testing.T) {
	path := testClip(t, t.TempDir(), "three.mp4", "32x32", "25", 3, false)
	in := probe(t, path)
	in.Frames = 1 << 40
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := decodeClip(context.Background(), in, DecodeOptions{Size: Size{32, 32}, Range: Whole()})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("err = %v, want ErrTruncated", err)
	}
	testenv.ErrorLine(t, err, path, "only 3 of the 1099511627776 frames")
	if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
		t.Errorf("decoding allocated %d bytes for 3 frames of 3 KiB", got)
	}
}

// A clip cut without re-encoding starts mid-GOP: its edit list hides the
// frames before the cut, which the header still counts. Only the frames
// shown are counted and decoded, timed from the first shown, and audio
// starts with them.
func TestProbeEditList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	full := filepath.Join(dir, "full.mp4")
	ff(t, "-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=1", "-f", "lavfi", "-i", "sine=d=1",
		"-c:v", "libx264", "-preset", "fast", "-bf", "3", "-g", "25", "-c:a", "aac", full)
	cut := filepath.Join(dir, "cut.mp4")
	ff(t, "-ss", "0.32", "-i", full, "-c", "copy", cut)
	in := probe(t, cut)
	clip := decodeAll(t, in, DecodeOptions{Size: Size{64, 48}, Range: Whole()})
	if in.Frames != len(clip.Frames) || in.Frames < 15 || in.Frames > 19 {
		t.Errorf("probe counts %d frames, decoding gives %d; want equal, about 17", in.Frames, len(clip.Frames))
	}
	if variableRate(in) || in.FrameTime(0) != 0 || !within(in.FrameTime(in.Frames), in.FPS.FrameTime(in.Frames), time.Millisecond) {
		t.Errorf("times %v, want 0 to %v at 25 fps", in.FrameTimes, in.FPS.FrameTime(in.Frames))
	}
	t.Logf("%d frames, video starts at %v in the file, audio %v", in.Frames, in.VideoStart, in.AudioDuration)
}
