package video

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	_ "image/jpeg" // frame folders may hold JPEG frames
	_ "image/png"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	ffmpeg "github.com/u2takey/ffmpeg-go"
)

// DefaultFolderFPS is the frame rate of a folder of frames unless
// FolderFPS says otherwise.
var DefaultFolderFPS = Rational{10, 1}

// ProbeOption changes what Probe assumes.
type ProbeOption func(*probeOptions)

type probeOptions struct {
	folderFPS Rational
}

// FolderFPS sets the frame rate of a folder of frames (default 10); it has
// no effect on a media file, whose rate is in the file.
func FolderFPS(r Rational) ProbeOption {
	return func(o *probeOptions) {
		if r.Valid() {
			o.folderFPS = r
		}
	}
}

// Probe describes the source at path: a media file ffprobe reads, or a
// folder of numbered frames.
func Probe(ctx context.Context, path string, opts ...ProbeOption) (Info, error) {
	o := probeOptions{folderFPS: DefaultFolderFPS}
	for _, opt := range opts {
		opt(&o)
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Info{}, newError(ErrNotFound, err, "%s: no such file; check the path", path)
	case err != nil:
		return Info{}, newError(ErrUnreadable, err, "%s: cannot read: %v", path, causeText(err))
	case st.IsDir():
		return probeFolder(path, o.folderFPS)
	}
	return probeFile(ctx, path)
}

// ffprobe's JSON, the parts we read.
type probeOutput struct {
	Streams []probeStream `json:"streams"`
	Format  struct {
		Duration string `json:"duration"`
	} `json:"format"`
}

type probeStream struct {
	Index        int               `json:"index"`
	CodecType    string            `json:"codec_type"`
	CodecName    string            `json:"codec_name"`
	Width        int               `json:"width"`
	Height       int               `json:"height"`
	RFrameRate   string            `json:"r_frame_rate"`
	AvgFrameRate string            `json:"avg_frame_rate"`
	NbFrames     string            `json:"nb_frames"`
	Duration     string            `json:"duration"`
	Tags         map[string]string `json:"tags"`
	Disposition  map[string]int    `json:"disposition"`
	SideData     []struct {
		Type     string      `json:"side_data_type"`
		Rotation json.Number `json:"rotation"`
	} `json:"side_data_list"`
}

// ffprobe runs ffprobe with args (built like ffmpeg-go's Probe) on path and
// returns its standard output.
func ffprobe(ctx context.Context, path string, args ffmpeg.KwArgs) ([]byte, error) {
	bin, err := lookTool("ffprobe")
	if err != nil {
		return nil, err
	}
	args["v"] = "error"
	argv := append(ffmpeg.ConvertKwargsToCmdLineArgs(args), ffmpegInput(path))
	cmd := exec.CommandContext(ctx, bin, argv...)
	var stdout bytes.Buffer
	stderr := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if cerr := ctxErr(ctx, "probe "+path); cerr != nil {
			return nil, cerr
		}
		return nil, newError(ErrUnreadable, err,
			"%s: not a video ffmpeg can read (%s); give a complete video file or a folder of numbered frames",
			path, orText(stderr.Summary(ffmpegInput(path)), err.Error()))
	}
	return stdout.Bytes(), nil
}

func probeFile(ctx context.Context, path string) (Info, error) {
	out, err := ffprobe(ctx, path, ffmpeg.KwArgs{"of": "json", "show_format": "", "show_streams": ""})
	if err != nil {
		return Info{}, err
	}
	var p probeOutput
	if err := json.Unmarshal(out, &p); err != nil {
		return Info{}, newError(ErrUnreadable, err, "%s: cannot parse ffprobe's description: %v", path, err)
	}
	in := Info{Path: path}
	var v *probeStream
	var audio *probeStream
	for i := range p.Streams {
		s := &p.Streams[i]
		switch {
		case s.CodecType == "video" && s.Disposition["attached_pic"] == 0 && v == nil:
			v = s
		case s.CodecType == "audio" && audio == nil:
			audio = s
		}
	}
	formatDur := parseSeconds(p.Format.Duration)
	if audio != nil {
		in.HasAudio = true
		in.AudioDuration = streamDuration(audio, formatDur)
	}
	if v == nil {
		what := "no streams at all"
		if audio != nil {
			what = "audio only"
		}
		return Info{}, newError(ErrNoVideo, nil, "%s: has no video stream (%s); give a video file or a folder of numbered frames", path, what)
	}
	in.Codec = v.CodecName
	in.Width, in.Height = v.Width, v.Height
	if in.Width <= 0 || in.Height <= 0 {
		return Info{}, newError(ErrUnreadable, nil, "%s: ffprobe cannot tell the video's frame size; is the file complete?", path)
	}
	in.Duration = streamDuration(v, formatDur)
	in.Rotation = rotation(v)
	in.DisplayWidth, in.DisplayHeight = in.Width, in.Height
	if in.Rotation == 90 || in.Rotation == 270 {
		in.DisplayWidth, in.DisplayHeight = in.Height, in.Width
	}

	if n, err := strconv.Atoi(v.NbFrames); err == nil && n > 0 {
		in.Frames = n
	} else {
		// The container does not say (Matroska, WebM, raw streams): count.
		n, err := countFrames(ctx, path, v.Index)
		if err != nil {
			return Info{}, err
		}
		in.Frames = n
	}
	if in.Frames == 0 {
		return Info{}, newError(ErrNoFrames, nil, "%s: its video stream has no frames; give a video with at least one frame", path)
	}

	in.FPS = frameRate(v)
	if !in.FPS.Valid() && in.Duration > 0 {
		in.FPS, _ = ParseRational(strconv.FormatFloat(float64(in.Frames)/in.Duration.Seconds(), 'f', 3, 64))
	}
	if !in.FPS.Valid() {
		return Info{}, newError(ErrUnreadable, nil, "%s: ffprobe cannot tell the video's frame rate", path)
	}
	if in.Duration == 0 {
		in.Duration = in.FPS.FrameTime(in.Frames)
	}
	return in, nil
}

// countFrames counts the packets of video stream index, which for video is
// its number of frames.
func countFrames(ctx context.Context, path string, index int) (int, error) {
	out, err := ffprobe(ctx, path, ffmpeg.KwArgs{
		"of": "json", "count_packets": "", "select_streams": strconv.Itoa(index),
		"show_entries": "stream=nb_read_packets",
	})
	if err != nil {
		return 0, err
	}
	var p struct {
		Streams []struct {
			N string `json:"nb_read_packets"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &p); err != nil || len(p.Streams) == 0 {
		return 0, newError(ErrUnreadable, err, "%s: cannot count the video's frames", path)
	}
	n, err := strconv.Atoi(p.Streams[0].N)
	if err != nil {
		return 0, newError(ErrUnreadable, err, "%s: cannot count the video's frames", path)
	}
	return n, nil
}

// frameRate prefers r_frame_rate (the exact base rate, e.g. 30000/1001) when
// it agrees with the average rate, else the average (variable frame rate).
func frameRate(s *probeStream) Rational {
	r, rerr := ParseRational(s.RFrameRate)
	a, aerr := ParseRational(s.AvgFrameRate)
	switch {
	case rerr == nil && aerr == nil:
		if math.Abs(r.Float64()-a.Float64()) <= 0.01*a.Float64() {
			return r
		}
		return a
	case aerr == nil:
		return a
	case rerr == nil:
		return r
	}
	return Rational{}
}

// rotation is the clockwise turn, in degrees 0, 90, 180 or 270, that displays
// the stream upright. ffprobe's display-matrix "rotation" is
// counterclockwise (ffmpeg turns frames by its negation); the legacy "rotate"
// tag is already clockwise.
func rotation(s *probeStream) int {
	deg, found := 0.0, false
	for _, sd := range s.SideData {
		if sd.Rotation == "" {
			continue
		}
		if f, err := sd.Rotation.Float64(); err == nil {
			deg, found = -f, true
			break
		}
	}
	if !found {
		if f, err := strconv.ParseFloat(s.Tags["rotate"], 64); err == nil {
			deg = f
		}
	}
	r := int(math.Round(deg/90)) * 90 % 360
	if r < 0 {
		r += 360
	}
	return r
}

func streamDuration(s *probeStream, fallback time.Duration) time.Duration {
	if d := parseSeconds(s.Duration); d > 0 {
		return d
	}
	// Matroska keeps it as a tag, "00:00:03.000000000".
	for k, v := range s.Tags {
		if strings.EqualFold(k, "DURATION") {
			if d := parseClock(v); d > 0 {
				return d
			}
		}
	}
	return fallback
}

func parseSeconds(s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0
	}
	return time.Duration(math.Round(f * float64(time.Second)))
}

func parseClock(s string) time.Duration {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0
	}
	h, err1 := strconv.Atoi(parts[0])
	m, err2 := strconv.Atoi(parts[1])
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(math.Round(sec*float64(time.Second)))
}

// probeFolder describes a folder of numbered frames: their count, the size
// of the first (all must match), the given rate and no audio.
func probeFolder(dir string, fps Rational) (Info, error) {
	l, err := listFrames(dir)
	if err != nil {
		return Info{}, err
	}
	ext := l.ext
	var first image.Config
	var codec string
	for i, name := range l.names {
		cfg, format, err := decodeConfig(filepath.Join(dir, name))
		if err != nil {
			return Info{}, newError(ErrUnreadable, err, "%s: not a readable %s image (%v)", filepath.Join(dir, name), strings.ToUpper(ext[1:]), causeText(err))
		}
		if i == 0 {
			first, codec = cfg, format
			continue
		}
		if cfg.Width != first.Width || cfg.Height != first.Height {
			return Info{}, newError(ErrUnreadable, nil, "%s: %s is %dx%d but %s is %dx%d; all frames must have one size",
				dir, name, cfg.Width, cfg.Height, l.names[0], first.Width, first.Height)
		}
	}
	if codec == "jpeg" {
		codec = "mjpeg"
	}
	return Info{
		Path:          dir,
		Folder:        true,
		FPS:           fps,
		Frames:        len(l.names),
		Width:         first.Width,
		Height:        first.Height,
		DisplayWidth:  first.Width,
		DisplayHeight: first.Height,
		Duration:      fps.FrameTime(len(l.names)),
		Codec:         codec,
		Pattern:       l.pattern,
		FirstNumber:   l.first,
	}, nil
}

func decodeConfig(path string) (image.Config, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return image.Config{}, "", err
	}
	defer f.Close()
	return image.DecodeConfig(f)
}

func causeText(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

func orText(s, alt string) string {
	if s != "" {
		return s
	}
	return alt
}
