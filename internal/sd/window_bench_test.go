package sd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/pnp"
	"github.com/tokenflow/tokenflow/internal/sd"
	"github.com/tokenflow/tokenflow/internal/tensor"
	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/testmodel"
	"github.com/tokenflow/tokenflow/internal/tokens"
)

// BenchmarkKeyframePassRSS measures the peak resident memory and the time
// of one keyframe pass of the full-size Stable Diffusion 2.1-base
// architecture (random weights, internal/testmodel) at 512x512 (latent
// 64x64), one prompt, for K keyframes (TOKENFLOW_BENCH_KEYFRAMES, default
// "2,4,8"), each in a fresh child process so that every peak is its own.
// It prints "keyframe-pass:" lines; docs/ARCHITECTURE.md ("Bounded
// keyframe attention") records the figures that chose the default window.
// It needs TOKENFLOW_BENCH_FULL=1: it takes minutes and several GB.
//
// With TOKENFLOW_BENCH_ANCHORS=A the child runs a windowed step's chunk
// pass instead: K keyframes that also attend to A anchors' kept
// keys/values (W = K + A; the peak includes the kept keys/values).
func BenchmarkKeyframePassRSS(b *testing.B) {
	if os.Getenv("TOKENFLOW_BENCH_FULL") != "1" {
		b.Skip("set TOKENFLOW_BENCH_FULL=1 to measure the full-size keyframe pass")
	}
	s := testmodel.FullSD21Base(b, fixture.Model(b, "tiny-sd21"))
	ks := os.Getenv("TOKENFLOW_BENCH_KEYFRAMES")
	if ks == "" {
		ks = "2,4,8"
	}
	anchors := os.Getenv("TOKENFLOW_BENCH_ANCHORS")
	for _, k := range strings.Split(ks, ",") {
		cmd := exec.CommandContext(b.Context(), os.Args[0], "-test.run=^$", "-test.bench=^$")
		cmd.Env = append(os.Environ(), kfChildVar+"="+s.Dir+"|"+k+"|"+anchors, "ONNXRUNTIME_LIB="+testenv.ORTLibrary(b))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			b.Fatalf("K=%s: %v\n%s\n%s", k, err, out.String(), errb.String())
		}
		var r kfResult
		for _, line := range strings.Split(out.String(), "\n") {
			if j, ok := strings.CutPrefix(line, kfChildPrefix); ok {
				if err := json.Unmarshal([]byte(j), &r); err != nil {
					b.Fatal(err)
				}
			}
		}
		if r.Err != "" {
			b.Fatalf("K=%s: %s", k, r.Err)
		}
		fmt.Printf("keyframe-pass: K=%s anchors=%q 512x512 fp32 cpu: peak RSS %.0f MiB (after session %.0f MiB, base %.0f MiB; pass adds %.0f MiB); pivot cache %.0f MiB; kept K/V %.0f MiB; pass %.1fs\n",
			k, anchors, r.PeakKB/1024, r.SessionKB/1024, r.BaseKB/1024, (r.PeakKB-r.SessionKB)/1024, r.CacheMB, r.KVMB, r.Seconds)
	}
}

const (
	kfChildVar    = "TOKENFLOW_KFBENCH_CHILD"
	kfChildPrefix = "tokenflow-kfbench: "
)

type kfResult struct {
	BaseKB, SessionKB, PeakKB float64
	CacheMB, KVMB, Seconds    float64
	Err                       string
}

func init() {
	job := os.Getenv(kfChildVar)
	if job == "" {
		return
	}
	var r kfResult
	if err := kfChild(job, &r); err != nil {
		r.Err = err.Error()
	}
	j, _ := json.Marshal(r)
	fmt.Printf("%s%s\n", kfChildPrefix, j)
	os.Exit(0)
}

func procKB(field string) float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			n, _ := strconv.ParseFloat(f[0], 64)
			return n
		}
	}
	return 0
}

func kfChild(job string, r *kfResult) error {
	parts := strings.Split(job, "|")
	K, err := strconv.Atoi(parts[1])
	if err != nil {
		return err
	}
	A := 0
	if parts[2] != "" {
		if A, err = strconv.Atoi(parts[2]); err != nil {
			return err
		}
	}
	if err := ort.Init(os.Getenv("ONNXRUNTIME_LIB")); err != nil {
		return err
	}
	r.BaseKB = procKB("VmRSS")
	p, err := sd.Open(sd.Options{Model: parts[0], Threads: 2})
	if err != nil {
		return err
	}
	defer p.Close()
	ctx := context.Background()
	text, err := p.EncodeText(ctx, "a photo")
	if err != nil {
		return err
	}
	p.Release("text_encoder")
	// A tiny plain pass opens the UNet session: its memory is not the
	// keyframe pass's.
	if _, err := p.UNet(ctx, tensor.Zeros(1, 4, 8, 8), 1, text); err != nil {
		return err
	}
	r.SessionKB = procKB("VmHWM")
	randn := testmodel.Randn(7, uint64(K))
	latents := func(k int) tensor.Tensor {
		x := tensor.Zeros(int64(3*k), 4, 64, 64)
		copy(x.Data, randn(len(x.Data)))
		return x
	}
	inj := pnp.Injection{QK: true, Conv: true}
	var kv *tokens.AnchorKV
	if A > 0 {
		// The anchors' kept keys/values, of the right shapes: a chunk
		// pass's memory and time do not depend on their values (the
		// anchors' own pass is an official pass of A keyframes, measured
		// as such).
		kv = &tokens.AnchorKV{Keys: map[string]tensor.Tensor{}, Values: map[string]tensor.Tensor{}}
		for _, l := range p.UNetConfig.SelfAttentionLayers() {
			S := int64(64/l.Down) * int64(64/l.Down)
			for _, m := range []map[string]tensor.Tensor{kv.Keys, kv.Values} {
				v := tensor.Zeros(2, int64(A)*S, l.Channels)
				copy(v.Data, randn(len(v.Data)))
				m[l.Path] = v
			}
		}
		r.KVMB = float64(kv.Bytes()) / (1 << 20)
	}
	kfs := make([]int, K)
	for i := range kfs {
		kfs[i] = A + i
	}
	start := time.Now()
	c, _, err := p.WindowKeyframePass(ctx, latents(K), 981, text.Repeat([]int{0}, []int{3 * K}), inj, kfs, kv, false)
	if err != nil {
		return err
	}
	r.Seconds = time.Since(start).Seconds()
	r.PeakKB = procKB("VmHWM")
	r.CacheMB = float64(c.Bytes()) / (1 << 20)
	return nil
}
