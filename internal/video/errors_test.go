package video

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

// Bad inputs each give a one-line error naming the file or flag, wrapping
// the sentinel a caller can test.
func TestBadInputs(t *testing.T) {
	t.Parallel()
	testenv.FFmpeg(t)
	dir := t.TempDir()
	ctx := context.Background()

	text := filepath.Join(dir, "notes.mp4")
	os.WriteFile(text, []byte("this is not a video\n"), 0o644)

	// A real clip cut in half: with the index (moov) at the end, as ffmpeg
	// writes by default, nothing is readable; with it at the front
	// (+faststart), the header promises frames the data no longer has.
	full := testClip(t, dir, "full.mp4", "64x48", "25", 25, false)
	cut := filepath.Join(dir, "cut.mp4")
	halve(t, full, cut)
	fast := filepath.Join(dir, "fast.mp4")
	ff(t, "-i", full, "-c", "copy", "-movflags", "+faststart", fast)
	cutFast := filepath.Join(dir, "cut-fast.mp4")
	halve(t, fast, cutFast)

	audio := filepath.Join(dir, "song.m4a")
	ff(t, "-f", "lavfi", "-i", "sine=d=0.5", audio)
	empty := filepath.Join(dir, "empty.mp4")
	ff(t, "-f", "lavfi", "-i", "testsrc2=s=32x32", "-frames:v", "0", empty)
	emptyDir := filepath.Join(dir, "no-frames")
	os.Mkdir(emptyDir, 0o755)
	gapDir, _ := pngFolder(t, 4, 8, 8)
	os.Remove(filepath.Join(gapDir, "00002.png"))

	probeErr := func(path string) func() error {
		return func() error { _, err := Probe(ctx, path, Rational{}); return err }
	}
	decodeErr := func(path string, r Range) func() error {
		return func() error {
			in, err := Probe(ctx, path, Rational{})
			if err != nil {
				return err
			}
			_, err = decodeClip(ctx, in, DecodeOptions{Size: Size{32, 24}, Range: r})
			return err
		}
	}
	tests := []struct {
		name  string
		run   func() error
		kind  error
		names []string // the error must mention each
	}{
		{"missing file", probeErr(filepath.Join(dir, "nope.mp4")), ErrNotFound, []string{"nope.mp4", "no such file"}},
		{"text file named .mp4", probeErr(text), ErrUnreadable, []string{text, "not a video"}},
		{"truncated mp4", probeErr(cut), ErrUnreadable, []string{cut, "moov atom not found"}},
		{"truncated faststart mp4", decodeErr(cutFast, Whole()), ErrTruncated, []string{cutFast, "truncated"}},
		{"audio only", probeErr(audio), ErrNoVideo, []string{audio, "no video stream (audio only)"}},
		{"no streams", probeErr(empty), ErrNoVideo, []string{empty, "no video stream"}},
		{"empty folder", probeErr(emptyDir), ErrNoFrames, []string{emptyDir, "no numbered frames"}},
		{"folder with a gap", probeErr(gapDir), ErrNoFrames, []string{gapDir, "00002.png is missing"}},
		{"start past the end", decodeErr(full, Range{Start: 25, Count: 1}), ErrRange, []string{"start 25", full, "25 frames"}},
		{"frames past the end", decodeErr(full, Range{Start: 20, Count: 6}), ErrRange, []string{"frames 6", "start 20", "give frames 5 or fewer"}},
		{"zero frames", decodeErr(full, Range{Count: 0, Stride: 1}), ErrRange, []string{"frames 0"}},
		{"explicit size not a multiple of 8", func() error { _, err := ParseSize("500x300"); return err }, ErrSize,
			[]string{"size 500x300", "width 500 is not a multiple of 8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if !errors.Is(err, tt.kind) {
				t.Errorf("err = %v, want %v", err, tt.kind)
			}
			testenv.ErrorLine(t, err, tt.names...)
			t.Log(err)
		})
	}
}

func halve(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUnwritableOutput(t *testing.T) {
	t.Parallel()
	testenv.FFmpeg(t)
	ro := testenv.UnwritableDir(t)
	out := filepath.Join(ro, "out.mp4")
	frame := Frame{Width: 16, Height: 16, Pix: make([]byte, 16*16*3)}
	clip := &decoded{Size: Size{16, 16}, FPS: Rational{25, 1}, Frames: []Frame{frame}}

	err := encodeClip(context.Background(), out, clip, EncodeOptions{})
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Encode: %v, want a permission error", err)
	}
	testenv.ErrorLine(t, err, out, "folder "+ro+" is not writable")

	err = writePNGs(ro, []Frame{frame})
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("writePNGs: %v, want a permission error", err)
	}
	testenv.ErrorLine(t, err, filepath.Join(ro, "00000.png"), "folder "+ro+" is not writable")
}
