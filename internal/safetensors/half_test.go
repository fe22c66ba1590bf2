package safetensors

import (
	"math"
	"math/rand"
	"testing"
)

func TestFloat32ToFloat16KnownBits(t *testing.T) {
	tests := []struct {
		in   float64 // exact float32 values except where noted
		want uint16
	}{
		{0, 0x0000},
		{math.Copysign(0, -1), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.1, 0x2e66}, // 0.0999755859375
		{1.0 / 3, 0x3555},
		{65504, 0x7bff},                    // largest finite
		{65519, 0x7bff},                    // below the halfway point
		{65520, 0x7c00},                    // halfway to 2^16: ties to even = inf
		{1e6, 0x7c00},                      // overflow
		{-1e6, 0xfc00},                     // negative overflow
		{0x1p-14, 0x0400},                  // smallest normal
		{0x1p-24, 0x0001},                  // smallest subnormal
		{1023 * 0x1p-24, 0x03ff},           // largest subnormal
		{0x1p-25, 0x0000},                  // half of the smallest subnormal: tie to even (0)
		{3 * 0x1p-25, 0x0002},              // tie between 1 and 2 subnormal ulps: to even (2)
		{0x1p-25 + 0x1p-40, 0x0001},        // just above the tie
		{0x1p-14 - 0x1p-25, 0x0400},        // tie between 0x03ff and 0x0400: to even (0x0400)
		{1 + 0x1p-11, 0x3c00},              // tie: to even
		{1 + 3*0x1p-11, 0x3c02},            // tie: to even (up)
		{1 + 0x1p-11 + 0x1p-20, 0x3c01},    // above the tie
		{-(1 + 0x1p-11 + 0x1p-20), 0xbc01}, // sign
		{2047 * 0x1p5, 0x7bff},             // 65504 = 2047 x 2^5
		{math.Inf(1), 0x7c00},
		{math.Inf(-1), 0xfc00},
	}
	for _, tt := range tests {
		if got := Float32ToFloat16(float32(tt.in)); got != tt.want {
			t.Errorf("Float32ToFloat16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
		}
		if got := Float64ToFloat16(float64(float32(tt.in))); got != tt.want {
			t.Errorf("Float64ToFloat16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
	for _, nan := range []float32{float32(math.NaN()), math.Float32frombits(0x7f800001), math.Float32frombits(0xffc00000)} {
		h := Float32ToFloat16(nan)
		if h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
			t.Errorf("Float32ToFloat16(NaN %#08x) = %#04x, not a NaN", math.Float32bits(nan), h)
		}
		if h&0x8000 != uint16(math.Float32bits(nan)>>16)&0x8000 {
			t.Errorf("Float32ToFloat16(NaN %#08x) = %#04x lost the sign", math.Float32bits(nan), h)
		}
	}
}

// Float64ToFloat16 rounds once: a value just above a float16 tie that
// float32 would round onto the tie must still round up.
func TestFloat64ToFloat16SingleRounding(t *testing.T) {
	x := 1 + 0x1p-11 + 0x1p-40 // float32(x) == 1 + 2^-11, an exact tie -> 0x3c00
	if got := Float64ToFloat16(x); got != 0x3c01 {
		t.Errorf("Float64ToFloat16(1+2^-11+2^-40) = %#04x, want 0x3c01", got)
	}
}

func TestFloat16ToFloat32KnownBits(t *testing.T) {
	tests := []struct {
		in   uint16
		want float64
	}{
		{0x0000, 0},
		{0x3c00, 1},
		{0xc000, -2},
		{0x7bff, 65504},
		{0x0400, 0x1p-14},
		{0x0001, 0x1p-24},
		{0x03ff, 1023 * 0x1p-24},
		{0x8001, -0x1p-24},
		{0x3555, 0.333251953125},
		{0x7c00, math.Inf(1)},
		{0xfc00, math.Inf(-1)},
	}
	for _, tt := range tests {
		if got := Float16ToFloat32(tt.in); float64(got) != tt.want {
			t.Errorf("Float16ToFloat32(%#04x) = %g, want %g", tt.in, got, tt.want)
		}
	}
	if got := Float16ToFloat32(0x8000); got != 0 || !math.Signbit(float64(got)) {
		t.Errorf("Float16ToFloat32(0x8000) = %g, want -0", got)
	}
	for _, h := range []uint16{0x7e00, 0x7c01, 0xfe00} {
		if got := Float16ToFloat32(h); got == got {
			t.Errorf("Float16ToFloat32(%#04x) = %g, want NaN", h, got)
		}
	}
}

// Every binary16 value survives widening and narrowing unchanged.
func TestFloat16RoundTripAll(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := Float16ToFloat32(h)
		got := Float32ToFloat16(f)
		if f != f {
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("NaN %#04x -> %#04x is not a NaN", h, got)
			}
			continue
		}
		if got != h {
			t.Fatalf("%#04x -> %g -> %#04x", h, f, got)
		}
	}
}

// Narrowing random float32 values picks the nearest binary16 value, the even
// one on ties: checked against both neighbours of the result.
func TestFloat32ToFloat16Nearest(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200000; i++ {
		// Exponents around the binary16 range, including subnormals.
		x := float32(math.Ldexp(rng.Float64()*2-1, rng.Intn(44)-28))
		h := Float32ToFloat16(x)
		if h&0x7fff == 0x7c00 {
			if math.Abs(float64(x)) < 65520 {
				t.Fatalf("%g -> inf", x)
			}
			continue
		}
		v := float64(Float16ToFloat32(h))
		err := math.Abs(float64(x) - v)
		for _, nb := range []uint16{h - 1, h + 1} {
			if nb&0x7fff >= 0x7c00 || (h&0x7fff == 0 && nb&0x7fff == 0x7fff) {
				continue
			}
			w := float64(Float16ToFloat32(nb))
			if math.Signbit(w) != math.Signbit(v) && v != 0 {
				continue
			}
			e := math.Abs(float64(x) - w)
			if e < err || (e == err && h&1 == 1) {
				t.Fatalf("%g (%#08x) -> %#04x (%g), but %#04x (%g) is nearer or even", x, math.Float32bits(x), h, v, nb, w)
			}
		}
	}
}

func TestBFloat16(t *testing.T) {
	for b, want := range map[uint16]float32{0x3fc0: 1.5, 0x3f80: 1, 0xc000: -2, 0x0001: 0x1p-133, 0x7f80: float32(math.Inf(1))} {
		if got := BFloat16ToFloat32(b); got != want {
			t.Errorf("BFloat16ToFloat32(%#04x) = %g, want %g", b, got, want)
		}
	}
}
