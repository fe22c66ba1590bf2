package onnx_test

import "math"

// Reference implementations of the operators under test: plain loops over
// row-major float32 data, accumulating in float64, written from the ONNX
// operator specs (and torch's definitions where the builder promises torch
// behaviour). They are slow and obvious on purpose.

func numel(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// unravel turns a flat row-major offset into an index.
func unravel(i int, shape []int64) []int64 {
	idx := make([]int64, len(shape))
	for k := len(shape) - 1; k >= 0; k-- {
		idx[k] = int64(i) % shape[k]
		i /= int(shape[k])
	}
	return idx
}

// offset is the flat row-major offset of idx. When idx is longer than shape,
// its leading entries are ignored, and a dim of 1 always takes index 0:
// numpy broadcasting seen from the input's side.
func offset(idx []int64, shape []int64) int {
	idx = idx[len(idx)-len(shape):]
	off := 0
	for k, d := range shape {
		i := idx[k]
		if d == 1 {
			i = 0
		}
		off = off*int(d) + int(i)
	}
	return off
}

// broadcastShape is numpy's broadcast of two shapes (assumed compatible).
func broadcastShape(a, b []int64) []int64 {
	if len(a) < len(b) {
		a, b = b, a
	}
	out := append([]int64(nil), a...)
	for i := range b {
		j := len(a) - len(b) + i
		if b[i] != 1 {
			out[j] = b[i]
		}
	}
	return out
}

// refBinary applies f elementwise with numpy broadcasting.
func refBinary(a []float32, as []int64, b []float32, bs []int64, f func(x, y float64) float64) ([]float32, []int64) {
	os := broadcastShape(as, bs)
	out := make([]float32, numel(os))
	for i := range out {
		idx := unravel(i, os)
		out[i] = float32(f(float64(a[offset(idx, as)]), float64(b[offset(idx, bs)])))
	}
	return out, os
}

func refUnary(x []float32, f func(float64) float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(f(float64(v)))
	}
	return out
}

// refMatMul multiplies a [..., M, K] by b [K, N].
func refMatMul(a []float32, as []int64, b []float32, bs []int64) ([]float32, []int64) {
	r := len(as)
	m, k, n := int(as[r-2]), int(as[r-1]), int(bs[1])
	batch := numel(as[:r-2])
	out := make([]float32, batch*m*n)
	for p := 0; p < batch; p++ {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for q := 0; q < k; q++ {
					s += float64(a[(p*m+i)*k+q]) * float64(b[q*n+j])
				}
				out[(p*m+i)*n+j] = float32(s)
			}
		}
	}
	os := append(append([]int64(nil), as[:r-1]...), int64(n))
	return out, os
}

// refConv2D is ONNX Conv on x [N,C,H,W] with w [M,C/group,K,K], square
// stride and symmetric zero padding; b may be nil.
func refConv2D(x []float32, xs []int64, w []float32, ws []int64, b []float32, stride, pad, group int) ([]float32, []int64) {
	n, c, h, wd := int(xs[0]), int(xs[1]), int(xs[2]), int(xs[3])
	m, cg, k := int(ws[0]), int(ws[1]), int(ws[2])
	oh := (h+2*pad-k)/stride + 1
	ow := (wd+2*pad-k)/stride + 1
	mg := m / group
	out := make([]float32, n*m*oh*ow)
	for bi := 0; bi < n; bi++ {
		for oc := 0; oc < m; oc++ {
			g := oc / mg
			for oy := 0; oy < oh; oy++ {
				for ox := 0; ox < ow; ox++ {
					var s float64
					if b != nil {
						s = float64(b[oc])
					}
					for ic := 0; ic < cg; ic++ {
						cin := g*cg + ic
						for ky := 0; ky < k; ky++ {
							iy := oy*stride - pad + ky
							if iy < 0 || iy >= h {
								continue
							}
							for kx := 0; kx < k; kx++ {
								ix := ox*stride - pad + kx
								if ix < 0 || ix >= wd {
									continue
								}
								s += float64(x[((bi*c+cin)*h+iy)*wd+ix]) * float64(w[((oc*cg+ic)*k+ky)*k+kx])
							}
						}
					}
					out[((bi*m+oc)*oh+oy)*ow+ox] = float32(s)
				}
			}
		}
	}
	return out, []int64{int64(n), int64(m), int64(oh), int64(ow)}
}

// lanes calls f with the flat offsets of every 1-D lane of shape along axis.
func lanes(shape []int64, axis int, f func(offs []int)) {
	outer := numel(shape[:axis])
	size := int(shape[axis])
	inner := numel(shape[axis+1:])
	offs := make([]int, size)
	for o := 0; o < outer; o++ {
		for in := 0; in < inner; in++ {
			for i := range offs {
				offs[i] = (o*size+i)*inner + in
			}
			f(offs)
		}
	}
}

func refSoftmax(x []float32, shape []int64, axis int) []float32 {
	out := make([]float32, len(x))
	lanes(shape, axis, func(offs []int) {
		mx := math.Inf(-1)
		for _, o := range offs {
			mx = math.Max(mx, float64(x[o]))
		}
		var sum float64
		for _, o := range offs {
			sum += math.Exp(float64(x[o]) - mx)
		}
		for _, o := range offs {
			out[o] = float32(math.Exp(float64(x[o])-mx) / sum)
		}
	})
	return out
}

// refLayerNorm normalizes over the last axis (biased variance, eps inside
// the square root), then scales and shifts.
func refLayerNorm(x []float32, shape []int64, scale, bias []float32, eps float64) []float32 {
	out := make([]float32, len(x))
	lanes(shape, len(shape)-1, func(offs []int) {
		var mean, v float64
		for _, o := range offs {
			mean += float64(x[o])
		}
		mean /= float64(len(offs))
		for _, o := range offs {
			d := float64(x[o]) - mean
			v += d * d
		}
		v /= float64(len(offs))
		for i, o := range offs {
			out[o] = float32((float64(x[o])-mean)/math.Sqrt(v+eps)*float64(scale[i]) + float64(bias[i]))
		}
	})
	return out
}

// refGroupNorm is torch.nn.GroupNorm on x [N,C,H,W]: mean and biased
// variance over each group's C/groups x H x W values, eps inside the square
// root, then the per-channel affine.
func refGroupNorm(x []float32, shape []int64, groups int, scale, bias []float32, eps float64) []float32 {
	n, c := int(shape[0]), int(shape[1])
	hw := numel(shape[2:])
	cg := c / groups
	out := make([]float32, len(x))
	for b := 0; b < n; b++ {
		for g := 0; g < groups; g++ {
			start := (b*c + g*cg) * hw
			span := x[start : start+cg*hw]
			var mean, v float64
			for _, e := range span {
				mean += float64(e)
			}
			mean /= float64(len(span))
			for _, e := range span {
				d := float64(e) - mean
				v += d * d
			}
			v /= float64(len(span))
			for i, e := range span {
				ch := g*cg + i/hw
				out[start+i] = float32((float64(e)-mean)/math.Sqrt(v+eps)*float64(scale[ch]) + float64(bias[ch]))
			}
		}
	}
	return out
}

// refResizeNearest is torch's F.interpolate(mode="nearest", size=(oh, ow))
// on x [N,C,H,W]: source index floor(dst * in / out).
func refResizeNearest(x []float32, shape []int64, oh, ow int) []float32 {
	nc := numel(shape[:2])
	h, w := int(shape[2]), int(shape[3])
	out := make([]float32, nc*oh*ow)
	for p := 0; p < nc; p++ {
		for y := 0; y < oh; y++ {
			sy := min(y*h/oh, h-1)
			for xx := 0; xx < ow; xx++ {
				sx := min(xx*w/ow, w-1)
				out[(p*oh+y)*ow+xx] = x[(p*h+sy)*w+sx]
			}
		}
	}
	return out
}

// refReduce sums x over the axes (mean divides by the count reduced); the
// result keeps the reduced axes as 1s.
func refReduce(x []float32, shape []int64, mean bool, axes ...int) ([]float32, []int64) {
	os := append([]int64(nil), shape...)
	count := 1
	for _, a := range axes {
		count *= int(os[a])
		os[a] = 1
	}
	sums := make([]float64, numel(os))
	for i, v := range x {
		sums[offset(unravel(i, shape), os)] += float64(v)
	}
	out := make([]float32, len(sums))
	for i, s := range sums {
		if mean {
			s /= float64(count)
		}
		out[i] = float32(s)
	}
	return out, os
}

// refMHA is multi-head attention on q [B,S,D], k and v [B,L,D]: per head h
// (columns h*D/heads ...), softmax(q k^T * scale) v.
func refMHA(q, k, v []float32, b, s, l, d, heads int, scale float64) []float32 {
	hd := d / heads
	out := make([]float32, b*s*d)
	p := make([]float64, l)
	for bi := 0; bi < b; bi++ {
		for h := 0; h < heads; h++ {
			for i := 0; i < s; i++ {
				mx := math.Inf(-1)
				for j := 0; j < l; j++ {
					var dot float64
					for e := 0; e < hd; e++ {
						dot += float64(q[(bi*s+i)*d+h*hd+e]) * float64(k[(bi*l+j)*d+h*hd+e])
					}
					p[j] = dot * scale
					mx = math.Max(mx, p[j])
				}
				var sum float64
				for j := range p {
					p[j] = math.Exp(p[j] - mx)
					sum += p[j]
				}
				for e := 0; e < hd; e++ {
					var acc float64
					for j := 0; j < l; j++ {
						acc += p[j] / sum * float64(v[(bi*l+j)*d+h*hd+e])
					}
					out[(bi*s+i)*d+h*hd+e] = float32(acc)
				}
			}
		}
	}
	return out
}
