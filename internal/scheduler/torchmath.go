package scheduler

import "math"

// float32 arithmetic as the reference computes it. The reference tensors are
// float32 and every PyTorch op rounds its result to float32, so we do the
// same op by op. Products are wrapped in float32(...) so that no Go compiler
// fuses a*b+c into one FMA (the spec allows fusing otherwise, and arm64 does).

// sqrt32 is PyTorch's x ** 0.5 on a float32 tensor: a correctly rounded
// float32 square root. Rounding float64's correctly rounded root to float32
// is correct (53 >= 2*24+2, no double-rounding error for sqrt).
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// fma32 is a single-rounding float32 fused multiply-add, a*b+c, as the
// vfmadd instructions compute it. float64(a)*float64(b) is exact; the sum is
// formed exactly as hi+lo (TwoSum) and rounded to odd in float64 before the
// final rounding to float32, which makes the double rounding harmless
// (round-to-odd with >= 24+2 bits, Boldo & Melquiond 2008).
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	cc := float64(c)
	hi := p + cc
	bv := hi - p
	lo := (p - (hi - bv)) + (cc - bv)
	if lo != 0 && !math.IsInf(hi, 0) {
		bits := math.Float64bits(hi)
		if bits&1 == 0 { // even: step one ulp toward the exact value (odd)
			if (lo > 0) == (hi > 0) {
				bits++
			} else {
				bits--
			}
			hi = math.Float64frombits(bits)
		}
	}
	return float32(hi)
}

// linspace32 reproduces torch.linspace(start, end, n, dtype=torch.float32) on
// the CPU bit for bit, as the reference (PyTorch 1.13, one thread) computed
// the fixtures' betas. Its kernel (aten/src/ATen/native/cpu/
// RangeFactoriesKernel.cpp) computes, in float32:
//
//	step = (end - start) / (n - 1)
//	v[i] = start + step*i          for i < n/2
//	v[i] = end - step*(n - 1 - i)  otherwise
//
// but through the vectorised loop: 8 floats at a time (AVX2), two vectors per
// iteration, each vector built as base + j*step (j = 0..7) from the base of
// its first element, with the "which half" test made once per vector; the
// last n mod 16 elements use the scalar formula. The AVX2 build lets the
// compiler contract a + b*c into an FMA, so every multiply-add above rounds
// once. Only this exact combination reproduces the fixtures' 1000 betas
// (checked against the plain formula, float64 evaluation, no FMA, and
// 16-float vectors, which each get 100+ of them wrong by an ulp).
func linspace32(start, end float32, n int) []float32 {
	out := make([]float32, n)
	if n == 1 {
		out[0] = start // torch special-cases a single step
		return out
	}
	step := (end - start) / float32(n-1)
	half := n / 2
	scalar := func(i int) float32 {
		if i < half {
			return fma32(step, float32(i), start)
		}
		return fma32(-step, float32(n-1-i), end)
	}
	const vec = 8
	vectorised := n - n%(2*vec)
	for base := 0; base < vectorised; base += vec {
		b := scalar(base)
		for j := 0; j < vec; j++ {
			out[base+j] = fma32(float32(j), step, b)
		}
	}
	for i := vectorised; i < n; i++ {
		out[i] = scalar(i)
	}
	return out
}
