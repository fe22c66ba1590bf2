package video

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tokenflow/tokenflow/internal/atomicfile"
)

// Frame folders
//
// A folder of frames holds PNG or JPEG files (extension png, jpg or jpeg, in
// any case) whose names are alike but for one run of digits, the frame
// number: 00000.png, 00001.png, ... as the official TokenFlow data folders
// hold, but also frame_001.jpg, img-0002.PNG or shot7_take_0001.png (where
// only the last number changes). Frames are ordered by that number, which
// must run without gaps, all zero-padded to one width or none padded, so
// that one ffmpeg image2 pattern names them all. Other files (notes.txt,
// sub-folders, hidden files such as macOS's ._00001.png) are ignored; two
// image names that differ elsewhere than in that one number make the folder
// ambiguous and are refused.

// frameExts are the accepted frame extensions, lower case.
var frameExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true}

// nameRuns splits a name into alternating runs of digits and non-digits;
// digitRuns finds the runs of digits.
var (
	nameRuns  = regexp.MustCompile(`[0-9]+|[^0-9]+`)
	digitRuns = regexp.MustCompile(`[0-9]+`)
)

// frameList is a folder's accepted frames in order.
type frameList struct {
	names   []string // file names, in frame order
	first   int      // number of the first frame
	pattern string   // ffmpeg image2 pattern (sequence type), absolute
	ext     string   // extension as written, e.g. ".PNG"
}

// FrameFiles lists the frame files of a folder of frames in frame order,
// as paths under dir: exactly the files Probe and Frames read, and so what a
// cache key must cover. Errors are one line naming dir and an example file.
func FrameFiles(dir string) ([]string, error) {
	l, err := listFrames(dir)
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(l.names))
	for i, n := range l.names {
		paths[i] = filepath.Join(dir, n)
	}
	return paths, nil
}

type frameName struct {
	name  string
	runs  []string // alternating digit / non-digit runs of the name, extension included
	n     int      // the frame number, once known
	digit string   // its digits as written
	// shape is the name, extension included, with every run of digits
	// made "0": names of one shape have the same non-digit runs and
	// extension, and digits in the same places.
	shape string
}

func listFrames(dir string) (frameList, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return frameList{}, newError(ErrUnreadable, err, "%s: cannot list the folder: %v", dir, atomicfile.CauseText(err))
	}
	var files []frameName
	exts := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if strings.HasPrefix(name, ".") || !frameExts[strings.ToLower(ext)] {
			continue
		}
		if !e.Type().IsRegular() {
			// Follow symbolic links to files; skip folders and the rest.
			st, err := os.Stat(filepath.Join(dir, name))
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
		}
		exts[strings.ToLower(ext)] = true
		files = append(files, frameName{name: name, runs: nameRuns.FindAllString(strings.TrimSuffix(name, ext), -1),
			shape: digitRuns.ReplaceAllString(strings.TrimSuffix(name, ext), "0") + ext})
	}
	if len(files) == 0 {
		return frameList{}, newError(ErrNoFrames, nil, "%s: no numbered frames (00000.png, 00001.png, ... or .jpg) in this folder", dir)
	}
	if len(exts) > 1 {
		return frameList{}, newError(ErrUnreadable, nil, "%s: holds frames of several kinds (%s); keep one kind",
			dir, strings.Join(slices.Sorted(maps.Keys(exts)), ", "))
	}
	slices.SortFunc(files, func(a, b frameName) int { return strings.Compare(a.name, b.name) })

	// Every name must have the first one's shape: the same non-digit runs
	// and extension, digits in the same places.
	ref := files[0]
	ext := filepath.Ext(ref.name)
	for _, f := range files[1:] {
		if f.shape != ref.shape {
			return frameList{}, newError(ErrUnreadable, nil,
				"%s: frame names follow no single pattern (%s, %s); keep one numbered sequence, named alike, per folder", dir, ref.name, f.name)
		}
	}

	// The frame number is the one digit run that varies (the first one when
	// there is a single frame). Names are unique and of one shape, so two
	// or more always differ in some digit run.
	num := -1
	for i, r := range ref.runs {
		if !digitRuns.MatchString(r) {
			continue
		}
		switch other := slices.IndexFunc(files, func(f frameName) bool { return f.runs[i] != r }); {
		case other >= 0 && num >= 0:
			return frameList{}, newError(ErrUnreadable, nil,
				"%s: frame names differ in two numbers (%s, %s); keep one numbered sequence per folder", dir, ref.name, files[other].name)
		case other >= 0 || (num < 0 && len(files) == 1):
			num = i
		}
	}
	if num < 0 {
		return frameList{}, newError(ErrNoFrames, nil, "%s: %s has no frame number; name frames like 00000.png, 00001.png or frame_001.png", dir, ref.name)
	}
	for i := range files {
		f := &files[i]
		f.digit = f.runs[num]
		n, err := strconv.Atoi(f.digit)
		if err != nil || n > 1<<31-1 {
			return frameList{}, newError(ErrUnreadable, nil, "%s: frame number %s in %s is too large", dir, f.digit, f.name)
		}
		f.n = n
	}
	slices.SortStableFunc(files, func(a, b frameName) int { return a.n - b.n })

	// One printf pattern must name every frame: zero-padded to the first
	// name's width (%05d), or unpadded (%d); no gaps, no repeats.
	before, after := strings.Join(ref.runs[:num], ""), strings.Join(ref.runs[num+1:], "")+ext
	nameOf := func(digits string) string { return before + digits + after }
	width := len(files[0].digit)
	padded, plain := true, true
	for i, f := range files {
		if i > 0 && f.n == files[i-1].n {
			return frameList{}, newError(ErrUnreadable, nil, "%s: %s and %s are both frame %d; keep one", dir, files[i-1].name, f.name, f.n)
		}
		if f.n != files[0].n+i {
			missing := nameOf(fmt.Sprintf("%0*d", width, files[0].n+i))
			return frameList{}, newError(ErrNoFrames, nil, "%s: frame %s is missing; frames must be numbered without gaps", dir, missing)
		}
		padded = padded && f.digit == fmt.Sprintf("%0*d", width, f.n)
		plain = plain && f.digit == strconv.Itoa(f.n)
	}
	var verb string
	switch {
	case padded:
		verb = fmt.Sprintf("%%0%dd", width)
	case plain:
		verb = "%d"
	default:
		return frameList{}, newError(ErrUnreadable, nil, "%s: frame names mix widths (%s, %s); number them all alike, e.g. %s, %s",
			dir, files[0].name, files[len(files)-1].name, nameOf("00000"), nameOf("00001"))
	}

	esc := func(s string) string { return strings.ReplaceAll(s, "%", "%%") }
	l := frameList{first: files[0].n, ext: ext, names: make([]string, len(files)),
		pattern: filepath.Join(esc(ffmpegInput(dir)), esc(before)+verb+esc(after))}
	for i, f := range files {
		l.names[i] = f.name
	}
	return l, nil
}
