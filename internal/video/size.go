package video

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tokenflow/tokenflow/internal/param"
)

// SizeMultiple is what both sides of a working size must be a multiple of:
// the VAE's downsampling factor.
const SizeMultiple = 8

// TargetArea is the pixel area DefaultSize aims at: that of 512x512, the
// resolution Stable Diffusion 1.x and 2.x base models were trained at.
const TargetArea = 512 * 512

// Limits on a working size, checked before any buffer is made.
//
// MaxSide: 8192 is the largest side H.264's level 6.2 allows (8192x4320)
// and twice what any Stable Diffusion model was trained at; a latent of
// 1024 cells per side is already far past where the UNet's attention fits
// in memory.
//
// MaxPixels: 4096x4096 (16.8 Mpx, 4x a 4K UHD frame) bounds one rgb24
// frame to 48 MiB and its float32 latent-space work to a size a single
// machine can hold; anything larger would need hundreds of GiB of attention
// maps per frame, so it is refused up front rather than failing hours in.
const (
	MaxSide   = 8192
	MaxPixels = 4096 * 4096
)

// sizeProblem says what is wrong with a w x h size, or "": out of bounds,
// or, when multiple is set, not made of multiples of SizeMultiple.
func sizeProblem(w, h int, multiple bool) string {
	for _, side := range []struct {
		name string
		v    int
	}{{"width", w}, {"height", h}} {
		if side.v <= 0 {
			return fmt.Sprintf("%s %d must be positive", side.name, side.v)
		}
		if side.v > MaxSide {
			return fmt.Sprintf("%s %d is over the limit of %d", side.name, side.v, MaxSide)
		}
		if multiple && side.v%SizeMultiple != 0 {
			lo := side.v / SizeMultiple * SizeMultiple
			if lo == 0 {
				return fmt.Sprintf("%s %d is not a multiple of %d; try %d", side.name, side.v, SizeMultiple, SizeMultiple)
			}
			return fmt.Sprintf("%s %d is not a multiple of %d; try %d or %d", side.name, side.v, SizeMultiple, lo, lo+SizeMultiple)
		}
	}
	if w*h > MaxPixels {
		return fmt.Sprintf("%d pixels is over the limit of %d (4096x4096); give a smaller size", w*h, MaxPixels)
	}
	return ""
}

// DefaultSize is the working size for frames displayed at d: the same aspect
// ratio, about TargetArea pixels, each side rounded to the nearest multiple of
// SizeMultiple (at least SizeMultiple, at most MaxSide). 1280x720 gives 680x384, 720x1280 gives
// 384x680, 640x640 gives 512x512. Pass the displayed (rotated) size.
func DefaultSize(d Size) Size { return DefaultSizeAt(d, 0) }

// DefaultSizeAt is DefaultSize aiming at native x native pixels instead of
// TargetArea: a model's native resolution (768 for the SD 2.x 768 models).
// native 0 or less means TargetArea (512x512).
func DefaultSizeAt(d Size, native int) Size {
	if d.W <= 0 || d.H <= 0 {
		return Size{}
	}
	area := TargetArea
	if native > 0 {
		area = native * native
	}
	scale := math.Sqrt(float64(area) / (float64(d.W) * float64(d.H)))
	side := func(v int) int {
		n := int(math.Round(float64(v) * scale / SizeMultiple))
		return min(max(n, 1)*SizeMultiple, MaxSide)
	}
	return Size{side(d.W), side(d.H)}
}

// ParseSize reads an explicit --size WxH. Both sides must be positive
// multiples of SizeMultiple within MaxSide, and the whole within MaxPixels
// (see MaxPixels); errors name the flag and its value.
func ParseSize(s string) (Size, error) {
	bad := func(format string, args ...any) (Size, error) {
		return Size{}, param.Kindf(ErrSize, "size", s, "%s", fmt.Sprintf(format, args...))
	}
	ws, hs, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	if !ok {
		return bad("want WIDTHxHEIGHT, e.g. 512x512")
	}
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	for _, err := range []error{err1, err2} {
		if errors.Is(err, strconv.ErrRange) {
			return bad("each side must be at most %d", MaxSide)
		}
	}
	if err1 != nil || err2 != nil {
		return bad("want WIDTHxHEIGHT in whole pixels, e.g. 512x512")
	}
	if msg := sizeProblem(w, h, true); msg != "" {
		return bad("%s", msg)
	}
	return Size{w, h}, nil
}
