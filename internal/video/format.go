package video

import (
	"path/filepath"
	"slices"
	"strings"
)

// Format is an output container, chosen by the output's extension, and
// the codecs an Encoder writes into it.
type Format struct {
	Name  string // the extension, lower case, without the dot: "mp4"
	Muxer string // ffmpeg's -f
	Video string // ffmpeg video encoder
	Audio string // ffmpeg audio encoder; "" when the container holds no audio
	// AudioRate is the audio bit rate (ffmpeg's -b:a).
	AudioRate string
}

// formats are the output formats, in the order error messages list them.
var formats = []Format{
	{Name: "mp4", Muxer: "mp4", Video: "libx264", Audio: "aac", AudioRate: "192k"},
	{Name: "mov", Muxer: "mov", Video: "libx264", Audio: "aac", AudioRate: "192k"},
	{Name: "mkv", Muxer: "matroska", Video: "libx264", Audio: "aac", AudioRate: "192k"},
	{Name: "webm", Muxer: "webm", Video: "libvpx-vp9", Audio: "libopus", AudioRate: "128k"},
	{Name: "gif", Muxer: "gif", Video: "gif"},
}

// OutputFormat is the format the extension of path names (in any case):
// .mp4, .mov and .mkv get H.264 and AAC, .webm VP9 and Opus, .gif a
// palette GIF without audio. Other extensions are refused with ErrFormat,
// which a caller may check for before any work.
func OutputFormat(path string) (Format, error) {
	ext := filepath.Ext(path)
	name := strings.ToLower(strings.TrimPrefix(ext, "."))
	if i := slices.IndexFunc(formats, func(f Format) bool { return f.Name == name }); i >= 0 {
		return formats[i], nil
	}
	var names []string
	for _, f := range formats {
		names = append(names, "."+f.Name)
	}
	list := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	if ext == "" {
		return Format{}, newError(ErrFormat, nil, "%s: no extension to tell the output format; name it %s", path, list)
	}
	return Format{}, newError(ErrFormat, nil, "%s: cannot write %s files; name the output %s", path, ext, list)
}
