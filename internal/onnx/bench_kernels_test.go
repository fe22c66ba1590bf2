package onnx_test

import (
	"testing"

	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/testenv/ortsession"
)

// BenchmarkKernels measures the rate ONNX Runtime's CPU kernels reach on
// the multiply-add operators of the full-size UNet in PERF.md's workload
// (latent 32x32, a propagation pass's 12 latents), each alone in a graph
// with constant weights as in the UNet, at 2 threads: the ceiling that a
// UNet pass's operators, as scripts/ortprofile.py reports them, can be
// compared with (docs/performance.md).
//
//	go test -run '^$' -bench BenchmarkKernels -benchtime 5x ./internal/onnx/
func BenchmarkKernels(b *testing.B) {
	type kernel struct {
		name               string
		n, cin, side, cout int64 // conv: batch, channels, side; gemm: rows n, k=cin, n=cout
		conv               bool
	}
	for _, k := range []kernel{
		{"conv3x3/12x320x32x32", 12, 320, 32, 320, true},
		{"conv3x3/12x640x16x16", 12, 640, 16, 640, true},
		{"conv3x3/12x1280x8x8", 12, 1280, 8, 1280, true},
		{"conv3x3/12x2560x8x8-1280", 12, 2560, 8, 1280, true},
		{"conv3x3/1x128x256x256", 1, 128, 256, 128, true}, // the VAE at 256x256
		{"gemm/12288x320x320", 12288, 320, 0, 320, false},
		{"gemm/12288x320x1280", 12288, 320, 0, 1280, false},
		{"gemm/12288x1280x320", 12288, 1280, 0, 320, false},
		{"gemm/3072x640x640", 3072, 640, 0, 640, false},
		{"gemm/768x1280x1280", 768, 1280, 0, 1280, false},
	} {
		b.Run(k.name, func(b *testing.B) {
			g := onnx.NewGraph("kernel")
			param := func(name string, dims ...int64) onnx.Value {
				n := int64(1)
				for _, d := range dims {
					n *= d
				}
				return g.Initializer(&onnx.Tensor{Name: name, Type: onnx.Float, Dims: dims, Raw: rawF32(rnd(1, int(n), -0.05, 0.05))})
			}
			var in ort.Tensor
			var flops float64
			if k.conv {
				shape := []int64{k.n, k.cin, k.side, k.side}
				x := g.Input("x", onnx.Float, dims(shape...)...)
				y := g.Conv2D(x, param("w", k.cout, k.cin, 3, 3), param("b", k.cout), onnx.ConvAttrs{Kernel: 3, Stride: 1, Pad: 1, Group: 1})
				g.Output("y", y, onnx.Float, dims(k.n, k.cout, k.side, k.side)...)
				in = ort.New(shape, rnd(2, int(k.n*k.cin*k.side*k.side), -1, 1))
				flops = 2 * float64(k.n*k.side*k.side*k.cout*k.cin*9)
			} else {
				x := g.Input("x", onnx.Float, dims(k.n, k.cin)...)
				g.Output("y", g.Gemm(x, param("w", k.cout, k.cin), param("b", k.cout), false, true), onnx.Float, dims(k.n, k.cout)...)
				in = ort.New([]int64{k.n, k.cin}, rnd(2, int(k.n*k.cin), -1, 1))
				flops = 2 * float64(k.n*k.cin*k.cout)
			}
			s := ortsession.New(b, g, ort.SessionOptions{Inputs: []string{"x"}, Outputs: []string{"y"}, Threads: 2})
			ortsession.Run(b, s, in) // the first run allocates
			runs := 0
			for b.Loop() {
				ortsession.Run(b, s, in)
				runs++
			}
			b.ReportMetric(flops*float64(runs)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
