package video

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOutputFormat(t *testing.T) {
	for _, tt := range []struct {
		path, want, wantErr string
	}{
		{path: "o.mp4", want: "mp4"},
		{path: "dir.x/O.MOV", want: "mov"},
		{path: "o.mkv", want: "mkv"},
		{path: "o.webm", want: "webm"},
		{path: "o.GIF", want: "gif"},
		{path: "o.avi", wantErr: "o.avi: cannot write .avi files; name the output .mp4, .mov, .mkv, .webm or .gif"},
		{path: "out", wantErr: "out: no extension to tell the output format; name it .mp4, .mov, .mkv, .webm or .gif"},
	} {
		f, err := OutputFormat(tt.path)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrFormat) {
				t.Errorf("OutputFormat(%q) error\n got %v\nwant %s (ErrFormat)", tt.path, err, tt.wantErr)
			}
			continue
		}
		if err != nil || f.Name != tt.want {
			t.Errorf("OutputFormat(%q) = %+v, %v; want %s", tt.path, f, err, tt.want)
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
