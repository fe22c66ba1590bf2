package video

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"image"
	_ "image/jpeg" // frame folders may hold JPEG frames
	_ "image/png"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
	ffmpeg "github.com/u2takey/ffmpeg-go"
)

// DefaultFolderFPS is the frame rate of a folder of frames unless Probe
// is given another.
var DefaultFolderFPS = Rational{10, 1}

// Probe describes the source at path: a media file ffprobe reads, or a
// folder of numbered frames, whose frame rate is folderFPS (DefaultFolderFPS
// when folderFPS is not a valid rate; a media file's rate is in the file).
func Probe(ctx context.Context, path string, folderFPS Rational) (Info, error) {
	if !folderFPS.Valid() {
		folderFPS = DefaultFolderFPS
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Info{}, newError(ErrNotFound, err, "%s: no such file; check the path", path)
	case err != nil:
		return Info{}, newError(ErrUnreadable, err, "%s: cannot read: %v", path, atomicfile.CauseText(err))
	case st.IsDir():
		return probeFolder(path, folderFPS)
	}
	return probeFile(ctx, path)
}

// ffprobe's JSON, the parts we read.
type probeOutput struct {
	Streams []probeStream `json:"streams"`
	Format  struct {
		Duration  string `json:"duration"`
		StartTime string `json:"start_time"`
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

// maxProbeJSON bounds the ffprobe description we parse: a real one is a
// few KiB per stream.
const maxProbeJSON = 16 << 20

// parseProbe parses ffprobe's -show_format -show_streams JSON for path and
// describes its video: everything in Info but the frame count and times,
// which come from reading the stream (see packetTimes), plus the video
// stream's index and the frame count its header claims (0 if none), which
// is only ever compared with the count read.
func parseProbe(path string, data []byte) (in Info, index, claimed int, err error) {
	if len(data) > maxProbeJSON {
		return Info{}, 0, 0, newError(ErrUnreadable, nil, "%s: ffprobe's description is %d bytes, over the %d this tool reads", path, len(data), maxProbeJSON)
	}
	var p probeOutput
	if err := json.Unmarshal(data, &p); err != nil {
		return Info{}, 0, 0, newError(ErrUnreadable, err, "%s: cannot parse ffprobe's description: %v", path, err)
	}
	in = Info{Path: path}
	var v, audio *probeStream
	for i := range p.Streams {
		s := &p.Streams[i]
		switch {
		case s.CodecType == "video" && s.Disposition["attached_pic"] == 0 && v == nil:
			v = s
		case s.CodecType == "audio":
			in.AudioStreams++
			if audio == nil {
				audio = s
			}
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
		return Info{}, 0, 0, newError(ErrNoVideo, nil, "%s: has no video stream (%s); give a video file or a folder of numbered frames", path, what)
	}
	in.Codec = v.CodecName
	in.Width, in.Height = v.Width, v.Height
	if in.Width <= 0 || in.Height <= 0 {
		return Info{}, 0, 0, newError(ErrUnreadable, nil, "%s: ffprobe cannot tell the video's frame size; is the file complete?", path)
	}
	in.Duration = streamDuration(v, formatDur)
	in.Rotation = rotation(v)
	in.FPS = frameRate(v)
	if n, err := strconv.Atoi(v.NbFrames); err == nil && n > 0 {
		claimed = n
	}
	start, _ := parseTime(p.Format.StartTime)
	in.VideoStart = -start // made relative below, once the first frame is known
	return in, v.Index, claimed, nil
}

// ffprobe runs ffprobe with args (built like ffmpeg-go's Probe) on path and
// returns its standard output.
func ffprobe(ctx context.Context, path string, args ffmpeg.KwArgs) ([]byte, error) {
	args["v"] = "error"
	cmd, stderr, err := command(ctx, "ffprobe", append(ffmpeg.ConvertKwargsToCmdLineArgs(args), ffmpegInput(path))...)
	if err != nil {
		return nil, err
	}
	out, err := cmd.Output()
	if err != nil {
		if cerr := ctxErr(ctx, "probe "+path); cerr != nil {
			return nil, cerr
		}
		return nil, newError(ErrUnreadable, err,
			"%s: not a video ffmpeg can read (%s); give a complete video file or a folder of numbered frames",
			path, cmp.Or(stderr.Summary(ffmpegInput(path)), err.Error()))
	}
	return out, nil
}

func probeFile(ctx context.Context, path string) (Info, error) {
	out, err := ffprobe(ctx, path, ffmpeg.KwArgs{"of": "json", "show_format": "", "show_streams": ""})
	if err != nil {
		return Info{}, err
	}
	in, index, claimed, err := parseProbe(path, out)
	if err != nil {
		return Info{}, err
	}

	// The frames are counted, and their times read, from the stream's own
	// packets: a container's header may claim any count.
	out, err = ffprobe(ctx, path, ffmpeg.KwArgs{
		"of": "csv=p=0", "select_streams": strconv.Itoa(index), "show_entries": "packet=pts_time,duration_time,flags",
	})
	if err != nil {
		return Info{}, err
	}
	pk := parsePackets(out)
	in.Frames = pk.n
	if in.Frames == 0 {
		return Info{}, newError(ErrNoFrames, nil, "%s: its video stream has no frames; give a video with at least one frame", path)
	}
	if claimed > pk.all {
		return Info{}, newError(ErrTruncated, nil, "%s: only %d of the %d frames its header declares can be read; the file may be truncated or damaged",
			path, pk.all, claimed)
	}
	if !in.FPS.Valid() && in.Duration > 0 {
		in.FPS, _ = ParseRational(strconv.FormatFloat(float64(in.Frames)/in.Duration.Seconds(), 'f', 3, 64))
	}
	if !in.FPS.Valid() {
		return Info{}, newError(ErrUnreadable, nil, "%s: ffprobe cannot tell the video's frame rate", path)
	}
	if pk.times != nil {
		in.VideoStart += pk.start
		in.FrameTimes = pk.frameTimes(in.FPS)
	} else {
		in.VideoStart = 0
	}
	if in.Duration == 0 {
		in.Duration = in.FrameTime(in.Frames)
	}
	return in, nil
}

// packets is what a video stream's packets say: how many frames it has
// and, when every packet has a presentation time, when each frame starts.
type packets struct {
	n     int             // frames: packets not flagged discarded
	all   int             // packets, discarded ones too (as a header counts them)
	start time.Duration   // the earliest presentation time, in the file's timeline
	times []time.Duration // presentation times in order, from start; nil if any is missing
	last  time.Duration   // duration of the last frame shown, 0 if unknown
}

// maxPackets bounds the packets parsePackets keeps times for: ten hours
// at 240 fps. Past it the count goes on but the times are dropped.
const maxPackets = 10 * 3600 * 240

// parsePackets reads ffprobe's `-show_entries
// packet=pts_time,duration_time,flags -of csv=p=0` lines
// ("1.033333,0.033333,__"). Packets flagged D (discarded, before an edit
// list's start) are not frames.
func parsePackets(data []byte) packets {
	type pkt struct{ pts, dur time.Duration }
	var ps []pkt
	var p packets
	timed := true
	for line := range bytes.Lines(data) {
		f := strings.Split(strings.TrimSpace(string(line)), ",")
		if len(f) != 3 {
			continue
		}
		p.all++
		if strings.Contains(f[2], "D") {
			continue
		}
		p.n++
		pts, ok := parseTime(f[0])
		if !ok || !timed || p.n > maxPackets {
			timed, ps = false, nil
			continue
		}
		dur, _ := parseTime(f[1])
		ps = append(ps, pkt{pts, max(dur, 0)})
	}
	if !timed || len(ps) == 0 {
		return p
	}
	slices.SortFunc(ps, func(a, b pkt) int { return cmp.Compare(a.pts, b.pts) })
	p.start = ps[0].pts
	p.times = make([]time.Duration, len(ps))
	for i, q := range ps {
		p.times[i] = q.pts - p.start
		if i > 0 && p.times[i] == p.times[i-1] {
			// Two frames at one time: the times cannot be trusted.
			p.times = nil
			return p
		}
	}
	p.last = ps[len(ps)-1].dur
	return p
}

// frameTimes is Info.FrameTimes: each frame's start and, last, the end of
// the last frame (its packet's duration, else the last interval, else one
// frame at fps).
func (p packets) frameTimes(fps Rational) []time.Duration {
	n := len(p.times)
	last := p.last
	if last <= 0 && n > 1 {
		last = p.times[n-1] - p.times[n-2]
	}
	if last <= 0 {
		last = fps.FrameTime(1)
	}
	return append(slices.Clip(p.times), p.times[n-1]+last)
}

// parseTime reads ffprobe's seconds ("1.033333"), which may be negative.
func parseTime(s string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.Abs(f) > 1e9 {
		return 0, false
	}
	return time.Duration(math.Round(f * float64(time.Second))), true
}

// frameRate prefers r_frame_rate (the exact base rate, e.g. 30000/1001) when
// it agrees with the average rate, else the average (variable frame rate).
func frameRate(s *probeStream) Rational {
	r, rerr := ParseRational(s.RFrameRate) // Rational{} on error
	a, aerr := ParseRational(s.AvgFrameRate)
	if aerr != nil || (rerr == nil && math.Abs(r.Float64()-a.Float64()) <= 0.01*a.Float64()) {
		return r
	}
	return a
}

// rotation is the clockwise turn, in degrees 0, 90, 180 or 270, that displays
// the stream upright. ffprobe's display-matrix "rotation" is
// counterclockwise (ffmpeg turns frames by its negation); the legacy "rotate"
// tag is already clockwise.
func rotation(s *probeStream) int {
	deg, err := strconv.ParseFloat(s.Tags["rotate"], 64)
	if err != nil {
		deg = 0
	}
	for _, sd := range s.SideData {
		if f, err := sd.Rotation.Float64(); err == nil {
			deg = -f // the display matrix wins over the tag
			break
		}
	}
	// The nearest quarter turn, as 0, 90, 180 or 270.
	return (int(math.Round(deg/90))%4 + 4) % 4 * 90
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

// parseSeconds is parseTime for a positive duration, 0 when s is none.
func parseSeconds(s string) time.Duration {
	if d, ok := parseTime(s); ok && d > 0 {
		return d
	}
	return 0
}

// parseClock reads Matroska's "00:00:03.000000000", 0 when s is not one.
func parseClock(s string) time.Duration {
	h, rest, ok1 := strings.Cut(s, ":")
	m, sec, ok2 := strings.Cut(rest, ":")
	d, err := time.ParseDuration(h + "h" + m + "m" + sec + "s")
	if !ok1 || !ok2 || err != nil {
		return 0
	}
	return d
}

// probeFolder describes a folder of numbered frames: their count, the size
// of the first (all must match), the given rate and no audio.
func probeFolder(dir string, fps Rational) (Info, error) {
	l, err := listFrames(dir)
	if err != nil {
		return Info{}, err
	}
	var first image.Config
	var codec string
	for i, name := range l.names {
		cfg, format, err := decodeConfig(filepath.Join(dir, name))
		if err != nil {
			return Info{}, newError(ErrUnreadable, err, "%s: not a readable %s image (%v)", filepath.Join(dir, name), strings.ToUpper(l.ext[1:]), atomicfile.CauseText(err))
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
		Path:        dir,
		Folder:      true,
		FPS:         fps,
		Frames:      len(l.names),
		Width:       first.Width,
		Height:      first.Height,
		Duration:    fps.FrameTime(len(l.names)),
		Codec:       codec,
		Pattern:     l.pattern,
		FirstNumber: l.first,
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
