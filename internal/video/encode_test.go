package video

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

func within(got, want, tol time.Duration) bool { return got >= want-tol && got <= want+tol }

// A 3-second 25 fps clip with a sine track, decoded at a new size and
// encoded again, keeps its frame count, rate and audio duration.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := testClip(t, dir, "src.mp4", "64x48", "25", 75, true)
	in := probe(t, src)
	if in.Frames != 75 || in.FPS != (Rational{25, 1}) || !in.HasAudio {
		t.Fatalf("source: %+v", in)
	}
	frame := Rational{25, 1}.FrameTime(1)

	tests := []struct {
		name       string
		r          Range
		wantFrames int
		wantFPS    Rational
		wantDur    time.Duration // of the clip, video and audio alike
	}{
		{"whole", Whole(), 75, Rational{25, 1}, 3 * time.Second},
		{"range with stride", Range{Start: 25, Count: 25, Stride: 2}, 25, Rational{25, 2}, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := Size{96, 64}
			clip := decodeAll(t, in, DecodeOptions{Size: size, Range: tt.r})
			out := filepath.Join(dir, tt.name+".mp4")
			err := encodeClip(context.Background(), out, clip, EncodeOptions{Audio: in.AudioFor(clip.Range)})
			if err != nil {
				t.Fatal(err)
			}
			got := probe(t, out)
			if got.Frames != tt.wantFrames || got.FPS != tt.wantFPS || got.DisplaySize() != size || got.Codec != "h264" {
				t.Errorf("output: %d frames at %v, %v, %s; want %d at %v, %v, h264",
					got.Frames, got.FPS, got.DisplaySize(), got.Codec, tt.wantFrames, tt.wantFPS, size)
			}
			if !within(got.Duration, tt.wantDur, frame) {
				t.Errorf("video lasts %v, want %v", got.Duration, tt.wantDur)
			}
			if !got.HasAudio || !within(got.AudioDuration, tt.wantDur, frame) {
				t.Errorf("audio %v lasting %v, want %v within %v", got.HasAudio, got.AudioDuration, tt.wantDur, frame)
			}
			if n := testenv.DirNames(t, dir); slices.ContainsFunc(n, func(s string) bool { return s[0] == '.' }) {
				t.Errorf("temporary files left: %v", n)
			}
		})
	}
}

// Encoding is close to the frames given: decode(encode(frames)) differs only
// by compression.
func TestEncodeFidelity(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := probe(t, testClip(t, dir, "src.mp4", "64x64", "25", 4, false))
	clip := decodeAll(t, in, DecodeOptions{Size: Size{64, 64}, Range: Whole()})
	out := filepath.Join(dir, "out.mp4")
	if err := encodeClip(context.Background(), out, clip, EncodeOptions{CRF: 1}); err != nil {
		t.Fatal(err)
	}
	got := decodeAll(t, probe(t, out), DecodeOptions{Size: Size{64, 64}, Range: Whole()})
	for i := range clip.Frames {
		// Solid colours come back within a level; testsrc2's sharp colour
		// edges through 4:2:0 chroma subsampling (again) cost about 4 levels
		// on average even at CRF 1.
		if d := meanAbsDiff(clip.Frames[i].Pix, got.Frames[i].Pix); d > 6 {
			t.Errorf("frame %d: mean abs diff %.2f after encoding, want <= 6", i, d)
		}
	}

	// Solid colours: the BT.709 matrix we encode with is the one the decoder
	// reads back from the stream's tags (a 601/709 mix-up shifts colours by
	// 10 levels or more).
	solid := Frame{Width: 64, Height: 64, Pix: make([]byte, 64*64*3)}
	for i := 0; i < len(solid.Pix); i += 3 {
		solid.Pix[i], solid.Pix[i+1], solid.Pix[i+2] = 200, 30, 60
	}
	out = filepath.Join(dir, "solid.mp4")
	if err := encodeClip(context.Background(), out, &decoded{Size: Size{64, 64}, FPS: Rational{25, 1}, Frames: []Frame{solid, solid}}, EncodeOptions{}); err != nil {
		t.Fatal(err)
	}
	back := decodeAll(t, probe(t, out), DecodeOptions{Size: Size{64, 64}, Range: Whole()}).Frames[1]
	for i, v := range back.Pix {
		if d := int(v) - int(solid.Pix[i]); d < -2 || d > 2 {
			t.Fatalf("solid colour: byte %d is %d, want %d within 2", i, v, solid.Pix[i])
		}
	}
}

func TestEncodeCancel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	size := Size{64, 64}
	enc, err := NewEncoder(ctx, filepath.Join(dir, "out.mp4"), size, EncodeOptions{FPS: Rational{25, 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Abort()
	f := Frame{Width: 64, Height: 64, Pix: make([]byte, 64*64*3)}
	for range 3 {
		if err := enc.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	// ffmpeg is killed; a later write or the commit reports the cancellation.
	for range 100 {
		if err = enc.WriteFrame(f); err != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err == nil {
		err = enc.Commit()
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("after cancel: %v, want context.Canceled", err)
	}
	testenv.ErrorLine(t, err, "out.mp4")
	if n := testenv.DirNames(t, dir); len(n) != 0 {
		t.Errorf("left behind: %v", n)
	}
}

func TestEncodeFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	silent := testClip(t, dir, "silent.mp4", "32x32", "25", 2, false)
	out := filepath.Join(t.TempDir(), "out.mp4")
	clip := &decoded{Size: Size{32, 32}, FPS: Rational{25, 1}, Frames: []Frame{{Width: 32, Height: 32, Pix: make([]byte, 32*32*3)}}}
	// A source without audio as the audio source: ffmpeg refuses the map.
	err := encodeClip(context.Background(), out, clip, EncodeOptions{Audio: &AudioSource{Path: silent}})
	if !errors.Is(err, ErrFFmpeg) {
		t.Errorf("err = %v, want ErrFFmpeg", err)
	}
	testenv.ErrorLine(t, err, out, "ffmpeg")
	if n := testenv.DirNames(t, filepath.Dir(out)); len(n) != 0 {
		t.Errorf("left behind: %v", n)
	}
}

func TestEncodeNoClobber(t *testing.T) {
	t.Parallel()
	testenv.FFmpeg(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.mp4")
	if err := os.WriteFile(out, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	clip := &decoded{Size: Size{16, 16}, FPS: Rational{25, 1}, Frames: []Frame{{Width: 16, Height: 16, Pix: make([]byte, 16*16*3)}}}
	err := encodeClip(context.Background(), out, clip, EncodeOptions{NoClobber: true})
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("err = %v, want ErrExist", err)
	}
	testenv.ErrorLine(t, err, out)
	if b, _ := os.ReadFile(out); string(b) != "precious" {
		t.Errorf("existing file now holds %q", b)
	}
	if err := encodeClip(context.Background(), out, clip, EncodeOptions{}); err != nil {
		t.Fatalf("replacing without NoClobber: %v", err)
	}
	if n := testenv.DirNames(t, dir); !slices.Equal(n, []string{"out.mp4"}) {
		t.Errorf("folder holds %v", n)
	}
}

func TestWritePNGFolder(t *testing.T) {
	t.Parallel()
	_, frames := pngFolder(t, 3, 16, 8)
	dir := filepath.Join(t.TempDir(), "out", "frames")
	if err := writePNGs(dir, frames); err != nil {
		t.Fatal(err)
	}
	if n := testenv.DirNames(t, dir); !slices.Equal(n, []string{"00000.png", "00001.png", "00002.png"}) {
		t.Errorf("folder holds %v", n)
	}
	// Read back as a source: the same pixels.
	in := probe(t, dir)
	got := decodeAll(t, in, DecodeOptions{Size: Size{16, 8}, Range: Whole()})
	for i := range frames {
		if d := firstDiff(frames[i], got.Frames[i]); d != "" {
			t.Errorf("frame %d: %s", i, d)
		}
	}
}

// Each format is written with real ffmpeg and probed back: its container,
// codecs, frame count and size, and audio where the container holds it.
func TestEncodeFormats(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := testClip(t, dir, "src.mp4", "48x32", "10", 10, true)
	in := probe(t, src)
	clip := decodeAll(t, in, DecodeOptions{Size: Size{48, 32}, Range: Whole()})
	for _, tt := range []struct {
		ext, container, video, audio string // container as containerOf tells it
	}{
		{"mp4", "mp4", "h264", "aac"},
		{"mov", "mov", "h264", "aac"},
		{"mkv", "matroska", "h264", "aac"},
		{"webm", "webm", "vp9", "opus"},
		{"gif", "gif", "gif", ""},
	} {
		t.Run(tt.ext, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(dir, "out."+tt.ext)
			var notices []string
			err := encodeClip(context.Background(), out, clip, EncodeOptions{Audio: in.AudioFor(clip.Range), Preset: "ultrafast",
				Notice: func(msg string) { notices = append(notices, msg) }})
			if err != nil {
				t.Fatal(err)
			}
			got := probe(t, out)
			format := containerOf(t, out)
			if format != tt.container || got.Codec != tt.video || got.Frames != 10 || got.DisplaySize() != (Size{48, 32}) {
				t.Errorf("%s: %s with %s, %d frames at %v; want %s with %s, 10 frames at 48x32",
					out, format, got.Codec, got.Frames, got.DisplaySize(), tt.container, tt.video)
			}
			if tt.audio == "" {
				want := []string{out + ": GIF files hold no audio; the audio of " + src + " is dropped"}
				if got.HasAudio || !slices.Equal(notices, want) {
					t.Errorf("audio %v, notices %q; want no audio and %q", got.HasAudio, notices, want)
				}
				return
			}
			if codecs := audioCodecs(t, out); !slices.Equal(codecs, []string{tt.audio}) || len(notices) != 0 {
				t.Errorf("audio streams %v, notices %q; want [%s] and none", codecs, notices, tt.audio)
			}
			if !within(got.AudioDuration, time.Second, 30*time.Millisecond) {
				t.Errorf("audio lasts %v, want 1s", got.AudioDuration)
			}
		})
	}

	// An unknown extension is refused before anything is written.
	err := encodeClip(context.Background(), filepath.Join(dir, "out.avi"), clip, EncodeOptions{})
	if !errors.Is(err, ErrFormat) {
		t.Errorf("out.avi: %v, want ErrFormat", err)
	}
	if _, serr := os.Stat(filepath.Join(dir, "out.avi")); serr == nil {
		t.Error("out.avi was written")
	}
}

// A clip with two audio streams comes out with both.
func TestEncodeKeepsEveryAudioStream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "two.mkv")
	ff(t, "-f", "lavfi", "-i", "testsrc2=s=32x32:r=10:d=1",
		"-f", "lavfi", "-i", "sine=f=440:r=48000:d=1",
		"-f", "lavfi", "-i", "sine=f=880:r=48000:d=1",
		"-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", src)
	in := probe(t, src)
	if in.AudioStreams != 2 {
		t.Fatalf("source has %d audio streams, want 2", in.AudioStreams)
	}
	clip := decodeAll(t, in, DecodeOptions{Size: Size{32, 32}, Range: Range{Start: 2, Count: 5, Stride: 1}})
	for _, ext := range []string{"mp4", "webm"} {
		out := filepath.Join(dir, "out."+ext)
		if err := encodeClip(context.Background(), out, clip, EncodeOptions{Audio: in.AudioFor(clip.Range), Preset: "ultrafast"}); err != nil {
			t.Fatal(err)
		}
		got := probe(t, out)
		if got.AudioStreams != 2 || len(audioCodecs(t, out)) != 2 {
			t.Errorf("%s: %d audio streams, want 2", out, got.AudioStreams)
		}
		if !within(got.AudioDuration, 500*time.Millisecond, 30*time.Millisecond) {
			t.Errorf("%s: audio lasts %v, want 0.5s", out, got.AudioDuration)
		}
	}
}

// containerOf tells the container of path from its first bytes, which
// ffprobe's format names do not (mp4 and mov are both "mov,mp4,...", mkv
// and webm both "matroska,webm"): the ISO file type box's major brand
// ("isom" for MP4, "qt  " for QuickTime), the EBML DocType, or GIF's magic.
func containerOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head := string(b[:min(len(b), 64)])
	switch {
	case strings.HasPrefix(head, "GIF89a") || strings.HasPrefix(head, "GIF87a"):
		return "gif"
	case len(head) >= 12 && head[4:8] == "ftyp" && head[8:12] == "qt  ":
		return "mov"
	case len(head) >= 12 && head[4:8] == "ftyp":
		return "mp4"
	case strings.HasPrefix(head, "\x1a\x45\xdf\xa3") && strings.Contains(head, "webm"):
		return "webm"
	case strings.HasPrefix(head, "\x1a\x45\xdf\xa3") && strings.Contains(head, "matroska"):
		return "matroska"
	}
	return "unknown"
}

// audioCodecs lists the codecs of path's audio streams.
func audioCodecs(t *testing.T, path string) []string {
	t.Helper()
	out, err := ffprobe(context.Background(), path, map[string]any{"of": "csv=p=0", "select_streams": "a", "show_entries": "stream=codec_name"})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}
