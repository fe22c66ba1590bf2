package video

import (
	"bytes"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/testenv"
)

// folderOf writes each named file into a new folder: a real 8x8 PNG for
// image names (whatever their extension says), "x" for the rest.
func folderOf(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	f := Frame{Width: 8, Height: 8, Pix: make([]byte, 8*8*3)}
	var buf bytes.Buffer
	if err := png.Encode(&buf, f.RGBA()); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		data := []byte("x")
		if frameExts[strings.ToLower(filepath.Ext(n))] {
			data = buf.Bytes()
		}
		if strings.HasSuffix(n, "/") {
			if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFrameFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   []string
		want    []string // in order; nil when an error is wanted
		wantErr []string // the error mentions each
	}{
		{name: "official", files: []string{"00001.png", "00000.png", "00002.png"},
			want: []string{"00000.png", "00001.png", "00002.png"}},
		{name: "upper case", files: []string{"00000.PNG", "00001.PNG"},
			want: []string{"00000.PNG", "00001.PNG"}},
		{name: "prefix and underscore", files: []string{"frame_002.jpg", "frame_001.jpg", "frame_003.jpg"},
			want: []string{"frame_001.jpg", "frame_002.jpg", "frame_003.jpg"}},
		{name: "dash, jpeg any case", files: []string{"img-0002.JPEG", "img-0001.JPEG"},
			want: []string{"img-0001.JPEG", "img-0002.JPEG"}},
		{name: "numeric order, not text order", files: []string{"f9.png", "f10.png", "f8.png", "f11.png"},
			want: []string{"f8.png", "f9.png", "f10.png", "f11.png"}},
		{name: "padding outgrown", files: []string{"998.png", "999.png", "1000.png"},
			want: []string{"998.png", "999.png", "1000.png"}},
		{name: "fixed number kept literal", files: []string{"shot7_001.png", "shot7_002.png"},
			want: []string{"shot7_001.png", "shot7_002.png"}},
		{name: "single frame", files: []string{"take2_0001.png"}, want: []string{"take2_0001.png"}},
		{name: "others ignored", files: []string{"00000.png", "00001.png", "notes.txt", "._00000.png", "sub/"},
			want: []string{"00000.png", "00001.png"}},
		{name: "different prefixes", files: []string{"a_001.png", "b_002.png"},
			wantErr: []string{"no single pattern", "a_001.png", "b_002.png"}},
		{name: "two varying numbers", files: []string{"cam1_001.png", "cam2_002.png"},
			wantErr: []string{"differ in two numbers", "cam1_001.png", "cam2_002.png"}},
		{name: "extension case mixed", files: []string{"00000.png", "00001.PNG"},
			wantErr: []string{"no single pattern", "00000.png", "00001.PNG"}},
		{name: "kinds mixed", files: []string{"00000.png", "00001.jpg"}, wantErr: []string{"several kinds", ".jpg, .png"}},
		{name: "unnumbered image", files: []string{"cover.png", "frame_001.png"},
			wantErr: []string{"no single pattern"}},
		{name: "no number at all", files: []string{"cover.png"}, wantErr: []string{"cover.png has no frame number"}},
		{name: "gap", files: []string{"f_01.png", "f_02.png", "f_04.png"}, wantErr: []string{"frame f_03.png is missing"}},
		{name: "same number twice", files: []string{"1.png", "01.png"}, wantErr: []string{"both frame 1"}},
		{name: "widths mixed", files: []string{"1.png", "02.png"}, wantErr: []string{"mix widths"}},
		{name: "empty", files: []string{"readme.md"}, wantErr: []string{"no numbered frames"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := folderOf(t, tt.files...)
			got, err := FrameFiles(dir)
			if tt.wantErr != nil {
				testenv.ErrorLine(t, err, append([]string{dir}, tt.wantErr...)...)
				if !errors.Is(err, ErrUnreadable) && !errors.Is(err, ErrNoFrames) {
					t.Errorf("err = %v, want ErrUnreadable or ErrNoFrames", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, n := range tt.want {
				want = append(want, filepath.Join(dir, n))
			}
			if !slices.Equal(got, want) {
				t.Errorf("FrameFiles\n got %v\nwant %v", got, want)
			}
		})
	}
}

// Folders named in the new ways decode through ffmpeg, frame by frame in
// numeric order, even with '%' in the folder and file names.
func TestDecodeNamedFolders(t *testing.T) {
	t.Parallel()
	_, frames := pngFolder(t, 11, 16, 8)
	for _, tt := range []struct {
		name string
		file func(i int) string
	}{
		{"frame_%03d.PNG", func(i int) string { return "frame_" + pad(i+1, 3) + ".PNG" }},
		{"img-%d.png from 9", func(i int) string { return "img-" + itoa(i+9) + ".png" }},
		{"100%_shot2_%02d.png", func(i int) string { return "100%_shot2_" + pad(i, 2) + ".png" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "50% done")
			os.Mkdir(dir, 0o755)
			for i, f := range frames {
				var buf bytes.Buffer
				png.Encode(&buf, f.RGBA())
				if err := os.WriteFile(filepath.Join(dir, tt.file(i)), buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			in := probe(t, dir)
			if in.Frames != len(frames) {
				t.Fatalf("%d frames, want %d", in.Frames, len(frames))
			}
			clip := decodeAll(t, in, DecodeOptions{Size: Size{16, 8}, Range: Range{Start: 1, Count: ToEnd, Stride: 2}})
			if len(clip.Frames) != 5 {
				t.Fatalf("decoded %d frames, want 5", len(clip.Frames))
			}
			for k, f := range clip.Frames {
				if d := firstDiff(frames[1+2*k], f); d != "" {
					t.Errorf("frame %d is not file %s: %s", k, tt.file(1+2*k), d)
				}
			}
		})
	}
}

func pad(i, width int) string {
	s := itoa(i)
	for len(s) < width {
		s = "0" + s
	}
	return s
}
