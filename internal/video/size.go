package video

import (
	"math"
	"strconv"
	"strings"
)

// SizeMultiple is what both sides of a working size must be a multiple of:
// the VAE's downsampling factor.
const SizeMultiple = 8

// TargetArea is the pixel area DefaultSize aims at: that of 512x512, the
// resolution Stable Diffusion 1.x and 2.x base models were trained at.
const TargetArea = 512 * 512

// DefaultSize is the working size for frames displayed at d: the same aspect
// ratio, about TargetArea pixels, each side rounded to the nearest multiple of
// SizeMultiple (at least SizeMultiple). 1280x720 gives 680x384, 720x1280 gives
// 384x680, 640x640 gives 512x512. Pass the displayed (rotated) size.
func DefaultSize(d Size) Size {
	if d.W <= 0 || d.H <= 0 {
		return Size{}
	}
	scale := math.Sqrt(float64(TargetArea) / (float64(d.W) * float64(d.H)))
	side := func(v int) int {
		n := int(math.Round(float64(v) * scale / SizeMultiple))
		return max(n, 1) * SizeMultiple
	}
	return Size{side(d.W), side(d.H)}
}

// ParseSize reads an explicit --size WxH. Both sides must be positive
// multiples of SizeMultiple; errors name the flag and its value.
func ParseSize(s string) (Size, error) {
	bad := func(format string, args ...any) (Size, error) {
		return Size{}, newError(ErrSize, nil, "--size "+s+": "+format, args...)
	}
	ws, hs, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	if !ok {
		return bad("want WIDTHxHEIGHT, e.g. 512x512")
	}
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if err1 != nil || err2 != nil {
		return bad("want WIDTHxHEIGHT in whole pixels, e.g. 512x512")
	}
	for _, side := range []struct {
		name string
		v    int
	}{{"width", w}, {"height", h}} {
		if side.v <= 0 {
			return bad("%s %d must be positive", side.name, side.v)
		}
		if side.v%SizeMultiple != 0 {
			lo := side.v / SizeMultiple * SizeMultiple
			if lo == 0 {
				return bad("%s %d is not a multiple of %d; try %d", side.name, side.v, SizeMultiple, SizeMultiple)
			}
			return bad("%s %d is not a multiple of %d; try %d or %d", side.name, side.v, SizeMultiple, lo, lo+SizeMultiple)
		}
	}
	return Size{w, h}, nil
}
