package safetensors

import "math"

// IEEE 754 binary16 ("half", F16) and bfloat16 (BF16) conversions on raw bit
// patterns. Narrowing conversions round to nearest, ties to even, and handle
// subnormals, infinities and NaN; widening conversions are exact.
//
// binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits. Largest
// finite 65504, smallest normal 2^-14, smallest subnormal 2^-24.
// bfloat16: the top 16 bits of a float32 (8 exponent bits, 7 mantissa bits).

// Float16ToFloat32 widens a binary16 bit pattern to float32 (exact).
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN; the payload moves to the top of float32's mantissa
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal: rebias 15 -> 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign) // signed zero
	default: // subnormal: mant * 2^-24, exact in float32
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
}

// Float32ToFloat16 narrows f to binary16, rounding to nearest even.
func Float32ToFloat16(f float32) uint16 {
	// float32 -> float64 is exact, so rounding once from float64 is correct.
	return Float64ToFloat16(float64(f))
}

// Float64ToFloat16 narrows f to binary16 with a single rounding to nearest
// even (going through float32 first could round twice).
func Float64ToFloat16(f float64) uint16 {
	bits := math.Float64bits(f)
	sign := uint16(bits>>48) & 0x8000
	if math.IsNaN(f) {
		// Quiet NaN keeping the top of the payload.
		return sign | 0x7e00 | uint16(bits>>42)&0x1ff
	}
	a := math.Abs(f)
	switch {
	case a >= 65520:
		// 65520 is halfway between 65504 (max finite) and 65536 (2^16, not
		// representable); the tie goes to the even side, which is infinity.
		return sign | 0x7c00
	case a < 0x1p-14:
		// Subnormal or zero: the value is m * 2^-24 with m in [0, 1024];
		// scaling by a power of two is exact in float64. m == 1024 rounds up
		// into the smallest normal, whose bit pattern is exactly 1024.
		m := math.RoundToEven(a * 0x1p24)
		return sign | uint16(m)
	default:
		// Normal: a = frac * 2^e2 with frac in [0.5, 1); as 1.x * 2^e,
		// e = e2-1 in [-14, 15]. m in [1024, 2048]; m == 2048 carries into
		// the exponent field by plain addition.
		_, e2 := math.Frexp(a)
		e := e2 - 1
		m := math.RoundToEven(math.Ldexp(a, 10-e))
		return sign | (uint16(e+15)<<10 + uint16(m) - 1024)
	}
}

// BFloat16ToFloat32 widens a bfloat16 bit pattern to float32 (exact).
func BFloat16ToFloat32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }
