package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/testmodel"
)

// The pipeline benchmark runs the real binary on PERF.md's workload: the
// full-size Stable Diffusion 2.1-base architecture with random weights, 8
// frames at 256x256 (latent 32x32), batch 4, 10 inversion and 10 editing
// steps, guidance 7.5, pnp 0.5/0.8, keyframes at batch middles; and the same
// settings on the tiny model. Figures are printed as "pipeline:" lines for
// scripts/bench.sh and reported as benchmark metrics.

// perEvalGFLOP is the work of one UNet evaluation of one 32x32 latent
// (a 256x256 frame) of the SD 2.1-base architecture: about 181 GFLOP by
// the official code's count (PERF.md; two FLOPs a multiply-add). Keyframe
// and propagation evaluations are counted at the same nominal figure, so
// that GFLOP/s compares the phases' throughput per frame-evaluation.
const perEvalGFLOP = 181

// officialSeconds is the official implementation's total on the workload
// (PERF.md), by thread count, including its reconstruction.
var officialSeconds = map[int]float64{1: 1184, 2: 923}

type benchJSON struct {
	Seconds    map[string]float64 `json:"seconds"`
	PeakRSSMB  float64            `json:"peak_rss_mb"`
	UNetFrames int64              `json:"unet_frame_evaluations"`
	PerCall    int                `json:"prompts_per_call"`
	evals      phaseEvals
}

// phaseEvals are a run's UNet frame evaluations per phase, read from its
// "UNet frame evaluations: N (inversion S steps x F frames, edit S steps x
// G x (K keyframes + F frames))" log line.
type phaseEvals struct{ inversion, keyframe, propagation int }

var evalsLine = regexp.MustCompile(`UNet frame evaluations: \d+ \((?:inversion (\d+) steps x (\d+) frames)?(?:, )?(?:edit (\d+) steps x (\d+) x \((\d+) keyframes? \+ (\d+) frames\))?`)

func parseEvals(log string) phaseEvals {
	m := evalsLine.FindStringSubmatch(log)
	if m == nil {
		return phaseEvals{}
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	return phaseEvals{inversion: n(1) * n(2), keyframe: n(3) * n(4) * n(5), propagation: n(3) * n(4) * n(6)}
}

func benchTF(b *testing.B, args ...string) benchJSON {
	b.Helper()
	cmd := exec.Command(tfBin, args...)
	cmd.Env = append(os.Environ(), "ONNXRUNTIME_LIB="+testenv.ORTLibrary(b))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		b.Fatalf("tokenflow %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	var r benchJSON
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		b.Fatalf("tokenflow %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	r.evals = parseEvals(errb.String())
	return r
}

type benchWorkload struct {
	name      string
	gflop     float64 // per frame-evaluation; 0 when not known
	model     string
	input     string
	size      string
	weightsMB float64
	threads   int
	official  float64 // 0 when there is no official figure
}

func BenchmarkPipeline(b *testing.B) {
	threads := []int{1, 2}
	if v := os.Getenv("PIPELINE_THREADS"); v != "" {
		threads = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("PIPELINE_THREADS=%s: want thread counts like 1,2", v)
			}
			threads = append(threads, n)
		}
	}
	benchEach(b, threads, benchWorkloadRun)
}

// fullModel is PERF.md's model: the full-size Stable Diffusion 2.1-base
// architecture with random weights, written once into the test model cache.
func fullModel(b *testing.B) *testmodel.Summary {
	root, err := testmodel.DefaultCacheDir()
	if err != nil {
		b.Fatal(err)
	}
	s, err := testmodel.Cached(root, fixture.Model(b, "tiny-sd21"), testmodel.SD21Base(), 1)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// patternClip writes at path an H.264 clip of ffmpeg's testsrc2 pattern,
// size WxH at 10 fps, frames long.
func patternClip(b *testing.B, path, size string, frames int) string {
	gen := exec.Command("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size="+size+":rate=10",
		"-frames:v", strconv.Itoa(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p", path)
	if out, err := gen.CombinedOutput(); err != nil {
		b.Fatalf("make the clip: %v\n%s", err, out)
	}
	return path
}

// benchEach runs run as a sub-benchmark on each workload: the tiny model
// on the fixture clip at 2 threads, and (unless TOKENFLOW_BENCH_FULL=0)
// PERF.md's full-size model and clip at each of threads.
func benchEach(b *testing.B, threads []int, run func(*testing.B, benchWorkload)) {
	testenv.FFmpeg(b)
	loads := []benchWorkload{{name: "tiny-sd21", model: fixture.Model(b, "tiny-sd21"),
		input: fixture.Expected(b, "tiny-sd21", "tokenflow_inv10", "input_frames"), size: "64x64", threads: 2}}
	if os.Getenv("TOKENFLOW_BENCH_FULL") != "0" {
		s := fullModel(b)
		var mb float64
		for _, c := range s.Components {
			mb += float64(c.Bytes) / (1 << 20)
		}
		clip := patternClip(b, filepath.Join(b.TempDir(), "perf.mp4"), "256x256", 8)
		for _, th := range threads {
			loads = append(loads, benchWorkload{name: "sd21-base-256", gflop: perEvalGFLOP, model: s.Dir, input: clip, size: "256x256", weightsMB: mb, threads: th, official: officialSeconds[th]})
		}
	}
	for _, w := range loads {
		b.Run(fmt.Sprintf("%s/threads=%d", w.name, w.threads), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				run(b, w)
			}
		})
	}
}

func benchWorkloadRun(b *testing.B, w benchWorkload) {
	common := []string{"--model", w.model, "--inversion-prompt", "a test pattern", "--size", w.size, "--batch-size", "4",
		"--threads", fmt.Sprint(w.threads), "--json"}
	editArgs := append([]string{"edit", "--prompt", "a marble statue", "--inversion-steps", "10", "--steps", "10",
		"--keyframes", "middle", "--force"}, common...)

	// 1. the default path: edit inverts (no reconstruction), one process
	dir := b.TempDir()
	e := benchTF(b, append(editArgs, "--cache-dir", filepath.Join(dir, "cache"), "--out", filepath.Join(dir, "out.mp4"), w.input)...)
	s := e.Seconds
	total := s["total"]
	outside := 100 * (total - s["in onnxruntime"]) / total
	vae := s["vae encode"] + s["vae decode"]
	b.ReportMetric(total, "total-s")
	b.ReportMetric(s["inversion"], "inversion-s")
	b.ReportMetric(s["edit keyframe passes"], "keyframe-s")
	b.ReportMetric(s["edit propagation passes"], "propagation-s")
	b.ReportMetric(vae, "vae-s")
	b.ReportMetric(outside, "outside-ort-%")
	b.ReportMetric(e.PeakRSSMB, "peak-rss-MB")
	b.ReportMetric(100*s["session creation"]/total, "sessions-%")
	// The model's identity hashes its weights once per cache folder (each
	// run here has a fresh one): said apart, as a repeated run skips it.
	identity := 100 * s["model identity"] / total
	line := fmt.Sprintf("%s threads=%d: total %.1fs (sessions %.1fs waited = %.1f%%, %.1fs made in all; inversion %.1fs, keyframe passes %.1fs, propagation passes %.1fs, VAE %.1fs); outside ONNX Runtime %.2f%% (of which the model's identity, once per cache folder, %.2f%%); peak RSS %.0f MB",
		w.name, w.threads, total, s["session creation"], 100*s["session creation"]/total, s["session creation (all)"], s["inversion"], s["edit keyframe passes"], s["edit propagation passes"], vae, outside, identity, e.PeakRSSMB)
	// per phase: seconds, frame-evaluations, GFLOP/s
	phase := func(label, key string, evals int) {
		sec := s[key]
		p := fmt.Sprintf("pipeline-phase: %s threads=%d %-22s %7.1fs", w.name, w.threads, label, sec)
		if evals > 0 {
			p += fmt.Sprintf(" %4d frame-evaluations %6.2f s/eval", evals, sec/float64(evals))
			if w.gflop > 0 && sec > 0 {
				p += fmt.Sprintf(" %6.1f GFLOP/s", w.gflop*float64(evals)/sec)
			}
		}
		fmt.Println(p)
	}
	n := e.evals
	phase("session creation", "session creation", 0)
	phase("model identity", "model identity", 0)
	phase("probe+hash", "probe+hash", 0)
	phase("decode video", "decode video", 0)
	phase("vae encode", "vae encode", 0)
	phase("inversion", "inversion", n.inversion)
	phase("edit keyframe passes", "edit keyframe passes", n.keyframe)
	phase("edit propagation", "edit propagation passes", n.propagation)
	phase("vae decode", "vae decode", 0)
	phase("write video", "write video", 0)
	phase("total", "total", n.inversion+n.keyframe+n.propagation)
	if w.gflop > 0 && n.inversion > 0 && n.propagation > 0 && s["inversion"] > 0 && s["edit propagation passes"] > 0 {
		ratio := (float64(n.inversion) / s["inversion"]) / (float64(n.propagation) / s["edit propagation passes"])
		b.ReportMetric(ratio, "inversion/propagation")
		line += fmt.Sprintf("; inversion throughput %.2fx the propagation passes'", ratio)
	}
	if w.weightsMB > 0 {
		b.ReportMetric(e.PeakRSSMB/w.weightsMB, "rss/weights")
		line += fmt.Sprintf(" = %.2fx the weights (%.0f MB)", e.PeakRSSMB/w.weightsMB, w.weightsMB)
	}

	// 2. the official's outputs (reconstruction included): invert
	// --reconstruct, then edit reusing the inversion (PIPELINE_RECON=0
	// skips it)
	if os.Getenv("PIPELINE_RECON") == "0" {
		fmt.Println("pipeline: " + line)
		return
	}
	dir = b.TempDir()
	cache := filepath.Join(dir, "cache")
	inv := benchTF(b, append([]string{"invert", "--inversion-steps", "10", "--steps", "10", "--reconstruct", "--cache-dir", cache}, append(common, w.input)...)...)
	e2 := benchTF(b, append(editArgs, "--cache-dir", cache, "--out", filepath.Join(dir, "out.mp4"), w.input)...)
	withRecon := inv.Seconds["total"] + e2.Seconds["total"]
	b.ReportMetric(withRecon, "with-recon-s")
	line += fmt.Sprintf("; with reconstruction %.1fs", withRecon)
	if w.official > 0 {
		b.ReportMetric(w.official/total, "speedup")
		b.ReportMetric(w.official/withRecon, "speedup-recon")
		line += fmt.Sprintf("; vs official %.0fs: %.2fx (default path), %.2fx (with reconstruction)", w.official, w.official/total, w.official/withRecon)
	}
	fmt.Println("pipeline: " + line)
}
