package sd

import (
	"context"
	"fmt"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/pnp"
	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/version"
	"github.com/tokenflow/tokenflow/models"
)

// benchModelDir is the checkpoint TOKENFLOW_SD_BENCH_MODEL names, with
// ONNX Runtime loaded; unset, b is skipped.
func benchModelDir(b *testing.B) string {
	dir := os.Getenv("TOKENFLOW_SD_BENCH_MODEL")
	if dir == "" {
		b.Skip("TOKENFLOW_SD_BENCH_MODEL unset")
	}
	if err := ort.Init(testenv.ORTLibrary(b)); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkUNetSessionStages times the stages of creating the full-size
// TokenFlow UNet session the way a run does: opening the weights, building
// the graph in Go, marshalling it, and ONNX Runtime's session creation.
// TOKENFLOW_SD_BENCH_MODEL names the checkpoint folder (the random
// SD 2.1-base that internal/testmodel caches); unset, it is skipped.
func BenchmarkUNetSessionStages(b *testing.B) {
	dir := benchModelDir(b)
	for b.Loop() {
		p, err := Open(Options{Model: dir, Threads: 2})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		w, err := p.componentWeights("unet")
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		g, err := (&models.UNet{Config: p.UNetConfig, Weights: w}).TokenFlowGraph(models.Injection{QK: pnp.QKLayers, Conv: pnp.ConvLayers})
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		m, err := g.Model("tokenflow", version.Version)
		if err != nil {
			b.Fatal(err)
		}
		buf, err := m.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		var inputs, outputs []string
		for _, v := range g.Proto().Inputs {
			inputs = append(inputs, v.Name)
		}
		for _, v := range g.Proto().Outputs {
			outputs = append(outputs, v.Name)
		}
		dd, _ := w.DataDir()
		cfg := map[string]string{"session.model_external_initializers_file_folder_path": dd}
		for _, kv := range strings.Split(os.Getenv("TOKENFLOW_SD_BENCH_CONFIG"), ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				cfg[k] = v
			}
		}
		var c0 struct{ u, s float64 }
		c0.u, c0.s = cpuTime()
		s, err := ort.NewSession(buf, ort.SessionOptions{Threads: 2, Inputs: inputs, Outputs: outputs, Config: cfg})
		if err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		u, sy := cpuTime()
		fmt.Printf("unet-session: weights %.2fs build %.2fs marshal %.2fs (%d kB) ort %.2fs (user %.2fs sys %.2fs) config %v\n",
			t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), t3.Sub(t2).Seconds(), len(buf)>>10, t4.Sub(t3).Seconds(), u-c0.u, sy-c0.s, cfg)
		s.Close()
		p.Close()
	}
}

func cpuTime() (user, sys float64) {
	var r syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r)
	return float64(r.Utime.Nano()) / 1e9, float64(r.Stime.Nano()) / 1e9
}

// BenchmarkUNetBatch evaluates the full-size UNet in plain mode (the
// inversion's) on the same 12 latents in batches of 4, 6 and 12, and
// reports the CPU and wall time per latent and whether every batching
// gives bit-identical outputs (TOKENFLOW_SD_BENCH_MODEL as above).
func BenchmarkUNetBatch(b *testing.B) {
	dir := benchModelDir(b)
	p, err := Open(Options{Model: dir, Threads: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	const n = 12
	randn := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, n*4*32*32)
	for i := range x {
		x[i] = float32(randn.NormFloat64())
	}
	c := p.UNetConfig.CrossDims[0]
	txt := make([]float32, 77*c)
	for i := range txt {
		txt[i] = float32(randn.NormFloat64())
	}
	lat, _ := tensor.New([]int64{n, 4, 32, 32}, x)
	one, _ := tensor.New([]int64{1, 77, int64(c)}, txt)
	ctx := context.Background()
	// warm: creates the session, first run allocates
	if _, err := p.UNet(ctx, lat.Rows(0, 1), 501, one); err != nil {
		b.Fatal(err)
	}
	var ref []float32
	for b.Loop() {
		for _, bs := range []int{4, 6, 12, 4} {
			out := make([]float32, 0, len(x))
			u0, s0 := cpuTime()
			w0 := time.Now()
			for _, r := range tensor.Batches(n, bs) {
				y, err := p.UNet(ctx, lat.Rows(r.Start, r.End), 501, one.Repeat([]int{0}, []int{r.Len()}))
				if err != nil {
					b.Fatal(err)
				}
				out = append(out, y.Data...)
			}
			u1, s1 := cpuTime()
			same := "reference"
			if ref == nil {
				ref = out
			} else {
				same = fmt.Sprint(slices.Equal(ref, out))
				if !slices.Equal(ref, out) {
					var m float64
					for i := range out {
						m = max(m, math.Abs(float64(out[i]-ref[i])))
					}
					same += fmt.Sprintf(" (max abs diff %g)", m)
				}
			}
			fmt.Printf("unet-batch: batch %d: wall %.2fs/latent cpu %.2fs/latent (user %.1f sys %.1f) identical to batch 4: %s\n",
				bs, time.Since(w0).Seconds()/n, (u1-u0+s1-s0)/n, u1-u0, s1-s0, same)
		}
	}
}
