package video

import (
	"strings"
	"testing"
)

// FuzzProbeJSON feeds arbitrary bytes to what parses ffprobe's output:
// the stream description (parseProbe) and the packet list
// (parsePackets), then to the Info methods that use what they read. Neither
// may panic, allocate from a claimed count, or give an error of more than
// one line.
//
// Seeds: testdata/fuzz/FuzzProbeJSON holds real ffprobe output (of, as
// probeFile asks, `-of json -show_format -show_streams` and `-of csv=p=0
// -show_entries packet=pts_time,duration_time,flags`) for tiny clips made by
// ffmpeg 5.1 from lavfi testsrc2 and sine: an MP4 with AAC, the same with
// a rotate tag, Matroska, WebM (VP9, Opus), GIF, and issue 9's
// variable-rate clip (made as in vfrClip). They are saved rather than made
// at each run: the fuzz engine reruns this setup in every worker it starts,
// and ffmpeg there would slow fuzzing to a crawl.
func FuzzProbeJSON(f *testing.F) {
	f.Add([]byte(`{"streams":[{"index":0,"codec_type":"video","width":64,"height":48,"r_frame_rate":"25/1","nb_frames":"1099511627776"}]}`))
	f.Add([]byte("0.000000,0.040000,K_\n0.040000,0.040000,_D\nN/A,N/A,__\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, index, claimed, err := parseProbe("in.mp4", data)
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error is not one line: %q", msg)
			}
		} else {
			if in.Width <= 0 || in.Height <= 0 || claimed < 0 || in.AudioStreams < 0 {
				t.Errorf("parseProbe gave %+v, stream %d, claimed %d", in, index, claimed)
			}
			if r := in.Rotation; r != 0 && r != 90 && r != 180 && r != 270 {
				t.Errorf("rotation %d", r)
			}
		}
		pk := parsePackets(data)
		if pk.times != nil && len(pk.times) != pk.n {
			t.Fatalf("%d times for %d packets", len(pk.times), pk.n)
		}
		// What Probe makes of them, whatever the header claimed.
		in.Frames = pk.n
		if !in.FPS.Valid() {
			in.FPS = Rational{25, 1}
		}
		if pk.times != nil {
			in.FrameTimes = pk.frameTimes(in.FPS)
		}
		r, err := Whole().Resolve(in)
		if err != nil {
			return
		}
		times := in.RangeTimes(r)
		if times != nil && len(times) != r.Count+1 {
			t.Errorf("RangeTimes gave %d times for %d frames", len(times), r.Count)
		}
		in.HasAudio = true
		_ = in.AudioFor(r)
		_ = variableRate(in)
		_ = in.FrameTime(r.Count)
	})
}
