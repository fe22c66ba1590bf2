package video

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestDefaultSize(t *testing.T) {
	tests := []struct {
		display, want Size
	}{
		{Size{1280, 720}, Size{680, 384}},
		{Size{720, 1280}, Size{384, 680}},
		{Size{640, 640}, Size{512, 512}},
		{Size{1920, 1080}, Size{680, 384}},
		{Size{512, 512}, Size{512, 512}},
		{Size{64, 32}, Size{728, 360}},   // small clips grow to the target area
		{Size{640, 480}, Size{592, 440}}, // 4:3
		{Size{1, 1000}, Size{16, 8192}},  // extreme: never below one multiple, never above MaxSide
		{Size{0, 720}, Size{}},
	}
	for _, tt := range tests {
		if got := DefaultSize(tt.display); got != tt.want {
			t.Errorf("DefaultSize(%v) = %v, want %v", tt.display, got, tt.want)
		}
		if got := DefaultSize(tt.display); !got.IsZero() && (got.W%8 != 0 || got.H%8 != 0) {
			t.Errorf("DefaultSize(%v) = %v, not multiples of 8", tt.display, got)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    Size
		wantErr string
	}{
		{in: "512x512", want: Size{512, 512}},
		{in: "680X384", want: Size{680, 384}},
		{in: " 384x680 ", want: Size{384, 680}},
		{in: "500x300", wantErr: "size 500x300: width 500 is not a multiple of 8; try 496 or 504"},
		{in: "512x300", wantErr: "size 512x300: height 300 is not a multiple of 8; try 296 or 304"},
		{in: "4x8", wantErr: "size 4x8: width 4 is not a multiple of 8; try 8"},
		{in: "0x512", wantErr: "size 0x512: width 0 must be positive"},
		{in: "512", wantErr: "size 512: want WIDTHxHEIGHT, e.g. 512x512"},
		{in: "axb", wantErr: "size axb: want WIDTHxHEIGHT in whole pixels, e.g. 512x512"},
		// Bounds: before any buffer is made (this one used to panic in make).
		{in: "16777216x16777216", wantErr: "size 16777216x16777216: width 16777216 is over the limit of 8192"},
		{in: "512x8200", wantErr: "size 512x8200: height 8200 is over the limit of 8192"},
		{in: "8192x8192", wantErr: "size 8192x8192: 67108864 pixels is over the limit of 16777216 (4096x4096); give a smaller size"},
		{in: "99999999999999999999x512", wantErr: "size 99999999999999999999x512: each side must be at most 8192"},
		{in: "8192x2048", want: Size{8192, 2048}},
		{in: "4096x4096", want: Size{4096, 4096}},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrSize) {
				t.Errorf("ParseSize(%q) error\n got %v\nwant %s (ErrSize)", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseRational(t *testing.T) {
	tests := []struct {
		in   string
		want Rational
		ok   bool
	}{
		{"30000/1001", Rational{30000, 1001}, true},
		{"50/2", Rational{25, 1}, true},
		{"25", Rational{25, 1}, true},
		{"29.97", Rational{2997, 100}, true},
		{"0/0", Rational{}, false},
		{"-25", Rational{}, false},
		{"x", Rational{}, false},
	}
	for _, tt := range tests {
		got, err := ParseRational(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRational(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if got := (Rational{30000, 1001}).Div(2); got != (Rational{15000, 1001}) {
		t.Errorf("30000/1001 / 2 = %v", got)
	}
	if got := (Rational{25, 1}).FrameTime(75); got != 3*time.Second {
		t.Errorf("frame 75 at 25 fps starts at %v, want 3s", got)
	}
}

func TestRangeResolve(t *testing.T) {
	in := Info{Path: "in.mp4", Frames: 30}
	tests := []struct {
		name    string
		r       Range
		want    Range
		wantErr string
	}{
		{name: "whole", r: Whole(), want: Range{0, 30, 1}},
		{name: "stride 0 means 1", r: Range{Start: 5, Count: 3}, want: Range{5, 3, 1}},
		{name: "to the end", r: Range{Start: 10, Count: ToEnd, Stride: 7}, want: Range{10, 3, 7}},
		{name: "exactly the last", r: Range{Start: 2, Count: 10, Stride: 3}, want: Range{2, 10, 3}},
		{name: "start past end", r: Range{Start: 30, Count: 1},
			wantErr: "start 30: past the end of in.mp4, which has 30 frames (0 to 29); give start 29 or less"},
		{name: "count past end", r: Range{Start: 15, Count: 20, Stride: 1},
			wantErr: "frames 20: with start 15 that needs frames up to 34, but in.mp4 has 30 frames (0 to 29); give frames 15 or fewer"},
		{name: "count past end with stride", r: Range{Start: 0, Count: 16, Stride: 2},
			wantErr: "frames 16: with start 0 and stride 2 that needs frames up to 30, but in.mp4 has 30 frames (0 to 29); give frames 15 or fewer"},
		{name: "zero frames", r: Range{Start: 0, Count: 0, Stride: 1},
			wantErr: "frames 0: no frames to process; give 1 or more, or leave frames out for the whole video"},
		{name: "negative count", r: Range{Count: -3}, wantErr: "frames -3: must be 1 or more"},
		{name: "negative start", r: Range{Start: -1, Count: 1}, wantErr: "start -1: must be 0 or more"},
		{name: "negative stride", r: Range{Count: 1, Stride: -2}, wantErr: "stride -2: must be 1 or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.r.Resolve(in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrRange) {
					t.Errorf("error\n got %v\nwant %s (ErrRange)", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Resolve = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestClipFPSAndAudioSpan(t *testing.T) {
	in := Info{Path: "in.mp4", FPS: Rational{30000, 1001}, Frames: 300, HasAudio: true}
	r := Range{Start: 30, Count: 10, Stride: 3}
	if got, want := in.RangeFPS(r), (Rational{10000, 1001}); got != want {
		t.Errorf("RangeFPS = %v, want %v", got, want)
	}
	a := in.AudioFor(r)
	if a == nil || a.Path != "in.mp4" || a.Start != 1001*time.Millisecond || a.Duration != 1001*time.Millisecond {
		t.Errorf("AudioFor = %+v, want in.mp4 from 1.001s for 1.001s", a)
	}
	if (Info{FPS: Rational{25, 1}}).AudioFor(r) != nil {
		t.Error("AudioFor without audio is not nil")
	}
}

func TestSummarize(t *testing.T) {
	stderr := "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x56529fdec1c0] moov atom not found\n/abs/t.mp4: Invalid data found when processing input\nConversion failed!\n"
	if got, want := summarize(stderr, "/abs/t.mp4"), "moov atom not found; Invalid data found when processing input"; got != want {
		t.Errorf("summarize = %q, want %q", got, want)
	}
}

func TestRotationAndRate(t *testing.T) {
	sd := func(rot string) []struct {
		Type     string      `json:"side_data_type"`
		Rotation json.Number `json:"rotation"`
	} {
		return []struct {
			Type     string      `json:"side_data_type"`
			Rotation json.Number `json:"rotation"`
		}{{Type: "Display Matrix", Rotation: json.Number(rot)}}
	}
	tests := []struct {
		name string
		s    probeStream
		want int
	}{
		{"none", probeStream{}, 0},
		{"matrix -90 (turn clockwise)", probeStream{SideData: sd("-90")}, 90},
		{"matrix 90 (turn counterclockwise)", probeStream{SideData: sd("90")}, 270},
		{"matrix 180", probeStream{SideData: sd("180")}, 180},
		{"matrix -180", probeStream{SideData: sd("-180.00")}, 180},
		{"legacy tag", probeStream{Tags: map[string]string{"rotate": "90"}}, 90},
		{"legacy tag 270", probeStream{Tags: map[string]string{"rotate": "270"}}, 270},
		{"matrix wins over tag", probeStream{SideData: sd("-90"), Tags: map[string]string{"rotate": "180"}}, 90},
	}
	for _, tt := range tests {
		if got := rotation(&tt.s); got != tt.want {
			t.Errorf("%s: rotation %d, want %d", tt.name, got, tt.want)
		}
	}

	for _, tt := range []struct {
		r, avg string
		want   Rational
	}{
		{"30000/1001", "30000/1001", Rational{30000, 1001}},
		{"30000/1001", "2997/100", Rational{30000, 1001}}, // the exact base rate
		{"90000/1", "24/1", Rational{24, 1}},              // variable rate: the average
		{"25/1", "0/0", Rational{25, 1}},
		{"0/0", "0/0", Rational{}},
	} {
		if got := frameRate(&probeStream{RFrameRate: tt.r, AvgFrameRate: tt.avg}); got != tt.want {
			t.Errorf("frameRate(%s, %s) = %v, want %v", tt.r, tt.avg, got, tt.want)
		}
	}
}

func TestDefaultSizeAt(t *testing.T) {
	tests := []struct {
		display Size
		side    int
		want    Size
	}{
		{Size{640, 640}, 768, Size{768, 768}},
		{Size{1280, 720}, 768, Size{1024, 576}},
		{Size{720, 1280}, 768, Size{576, 1024}},
		{Size{1280, 720}, 512, Size{680, 384}}, // DefaultSize's
		{Size{1280, 720}, 0, Size{680, 384}},   // no native size: 512
		{Size{0, 720}, 768, Size{}},
	}
	for _, tt := range tests {
		if got := DefaultSizeAt(tt.display, tt.side); got != tt.want {
			t.Errorf("DefaultSizeAt(%v, %d) = %v, want %v", tt.display, tt.side, got, tt.want)
		}
	}
}

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
