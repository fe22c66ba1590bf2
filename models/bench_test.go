package models_test

// Benchmarks of the model graphs in ONNX Runtime: graph building, session
// creation, full-size UNet speed, and peak memory with a UNet session open.
// scripts/bench.sh (make bench) runs them and summarises the figures.
//
// The full-size model is Stable Diffusion 2.1-base with random weights,
// written once by internal/testmodel into $TOKENFLOW_BENCH_DIR (default
// ~/.cache/tokenflow-bench, 5.2 GB, about a minute). TOKENFLOW_BENCH_FULL=0
// skips every benchmark that needs it.
//
// This is an external test package: internal/testmodel imports models.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenflow/tokenflow/internal/fixture"
	"github.com/tokenflow/tokenflow/internal/onnx"
	"github.com/tokenflow/tokenflow/internal/ort"
	"github.com/tokenflow/tokenflow/internal/testenv"
	"github.com/tokenflow/tokenflow/internal/testenv/ortsession"
	"github.com/tokenflow/tokenflow/internal/testmodel"
	"github.com/tokenflow/tokenflow/models"
)

const (
	// benchFullVar set to 0 skips the full-size benchmarks.
	benchFullVar = "TOKENFLOW_BENCH_FULL"
	// benchChildVar carries a memory job to a re-executed test binary.
	benchChildVar = "TOKENFLOW_BENCH_CHILD"
	// benchRSSConfigsVar adds configurations to BenchmarkUNetPeakRSS:
	// "name:key=value,key=value;name2:..." (session config entries).
	benchRSSConfigsVar = "TOKENFLOW_BENCH_RSS_CONFIGS"
	// benchRSSThreadsVar and benchRSSEvalsVar set the intra-op threads
	// (default 2) and timed evaluations (default 3) of the memory child.
	benchRSSThreadsVar = "TOKENFLOW_BENCH_RSS_THREADS"
	benchRSSEvalsVar   = "TOKENFLOW_BENCH_RSS_EVALS"
	// benchSeed picks the random weights of the full-size model.
	benchSeed = 1
	// benchUNetGFLOP is the work of one UNet evaluation of one 32x32 latent
	// (PERF.md: about 181 GFLOP), to turn speed into GFLOP/s.
	benchUNetGFLOP = 181
	// benchExternalFolder is the session config entry that points an in-memory
	// model's external initializers at the checkpoint's folder.
	benchExternalFolder = "session.model_external_initializers_file_folder_path"
	// benchLimitRatio is the peak-RSS budget with a UNet session open, as a
	// multiple of the UNet weights' size.
	benchLimitRatio = 1.3
)

// benchModel is a checkpoint to benchmark.
type benchModel struct {
	name string
	dir  string
	// unetBytes is the size of the UNet weights (full-size model only).
	unetBytes int64
}

var benchFull struct {
	once  sync.Once
	model benchModel
	err   error
}

// benchFullModel returns the random full-size SD 2.1-base checkpoint, writing it
// on first use, or skips b when TOKENFLOW_BENCH_FULL=0.
func benchFullModel(b *testing.B) benchModel {
	b.Helper()
	if os.Getenv(benchFullVar) == "0" {
		b.Skipf("%s=0: full-size SD 2.1-base benchmarks skipped", benchFullVar)
	}
	assets := fixture.Model(b, "tiny-sd21")
	benchFull.once.Do(func() {
		root, err := testmodel.DefaultCacheDir()
		if err != nil {
			benchFull.err = err
			return
		}
		start := time.Now()
		s, err := testmodel.Cached(root, assets, testmodel.SD21Base(), benchSeed)
		if err != nil {
			benchFull.err = err
			return
		}
		u, _ := s.Component("unet")
		benchFull.model = benchModel{name: "sd21-base", dir: s.Dir, unetBytes: u.Bytes}
		var parts []string
		for _, c := range s.Components {
			parts = append(parts, fmt.Sprintf("%s %d params %.1f MB", c.Name, c.Params, float64(c.Bytes)/1e6))
		}
		fmt.Printf("full-model: %s (%s; ready in %.1fs)\n", s.Dir, strings.Join(parts, ", "), time.Since(start).Seconds())
	})
	if benchFull.err != nil {
		b.Fatal(benchFull.err)
	}
	return benchFull.model
}

func benchTinyModels(b *testing.B) []benchModel {
	return []benchModel{{name: "tiny-sd15", dir: fixture.Model(b, "tiny-sd15")}, {name: "tiny-sd21", dir: fixture.Model(b, "tiny-sd21")}}
}

// benchComponent is one graph of a checkpoint: open reads its config and weight
// headers and returns the builder.
type benchComponent struct {
	name          string
	inputs, outps []string
	open          func(c *models.Checkpoint) (build func() (*onnx.Graph, error), w *models.Weights, err error)
}

// vaeComponent opens the VAE for the graph that graph builds.
func vaeComponent(graph func(*models.VAE) (*onnx.Graph, error)) func(*models.Checkpoint) (func() (*onnx.Graph, error), *models.Weights, error) {
	return func(c *models.Checkpoint) (func() (*onnx.Graph, error), *models.Weights, error) {
		v, err := c.VAE(onnx.Float)
		if err != nil {
			return nil, nil, err
		}
		return func() (*onnx.Graph, error) { return graph(v) }, v.Weights, nil
	}
}

var benchComponents = []benchComponent{
	{"unet", []string{models.InSample, models.InTimestep, models.InTextEmbeds}, []string{models.OutSample},
		func(c *models.Checkpoint) (func() (*onnx.Graph, error), *models.Weights, error) {
			u, err := c.UNet(onnx.Float)
			if err != nil {
				return nil, nil, err
			}
			return func() (*onnx.Graph, error) { return u.Graph(models.UNetGraphOptions{}) }, u.Weights, nil
		}},
	{"vae_encoder", []string{models.InImage}, []string{models.OutLatent}, vaeComponent((*models.VAE).EncoderGraph)},
	{"vae_decoder", []string{models.InLatent}, []string{models.OutImage}, vaeComponent((*models.VAE).DecoderGraph)},
	{"text_encoder", []string{models.InInputIDs}, []string{models.OutHiddenState, models.OutPoolerOutput},
		func(c *models.Checkpoint) (func() (*onnx.Graph, error), *models.Weights, error) {
			m, err := c.TextEncoder(onnx.Float)
			if err != nil {
				return nil, nil, err
			}
			return m.Graph, m.Weights, nil
		}},
}

// benchOpen opens a component's weights; they are closed with b.
func benchOpen(b *testing.B, dir string, comp benchComponent) (func() (*onnx.Graph, error), *models.Weights) {
	b.Helper()
	c, err := models.OpenModel(dir, models.OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	build, w, err := comp.open(c)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	return build, w
}

// benchMarshal builds a graph and serializes it: what a command does before
// handing a model to ONNX Runtime.
func benchMarshal(build func() (*onnx.Graph, error)) ([]byte, error) {
	g, err := build()
	if err != nil {
		return nil, err
	}
	m, err := g.Model("tokenflow-bench", "0")
	if err != nil {
		return nil, err
	}
	return m.Marshal()
}

// benchEachComponent runs f as sub-benchmarks <model>/<component> over the
// tiny models and the full-size one.
func benchEachComponent(b *testing.B, f func(b *testing.B, m benchModel, comp benchComponent)) {
	for _, m := range append(benchTinyModels(b), benchModel{name: "sd21-base"}) {
		for _, comp := range benchComponents {
			b.Run(m.name+"/"+comp.name, func(b *testing.B) {
				if m.dir == "" {
					m = benchFullModel(b)
				}
				f(b, m, comp)
			})
		}
	}
}

// BenchmarkGraphBuild is building a graph and marshalling it to ModelProto
// bytes (weights opened beforehand: only their headers are read).
func BenchmarkGraphBuild(b *testing.B) {
	benchEachComponent(b, func(b *testing.B, m benchModel, comp benchComponent) {
		build, _ := benchOpen(b, m.dir, comp)
		var size int
		for b.Loop() {
			buf, err := benchMarshal(build)
			if err != nil {
				b.Fatal(err)
			}
			size = len(buf)
		}
		b.ReportMetric(float64(size)/1e3, "proto-kB")
	})
}

// BenchmarkSessionCreate is ONNX Runtime loading a marshalled graph whose
// weights it reads from the checkpoint's own files (default options).
func BenchmarkSessionCreate(b *testing.B) {
	benchEachComponent(b, func(b *testing.B, m benchModel, comp benchComponent) {
		testenv.ORT(b)
		build, w := benchOpen(b, m.dir, comp)
		buf, err := benchMarshal(build)
		if err != nil {
			b.Fatal(err)
		}
		opts := benchSessionOptions(b, w, comp, 0, nil)
		win := benchStart()
		for b.Loop() {
			s, err := ort.NewSession(buf, opts)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
		b.ReportMetric(win.others(), "others-%")
	})
}

func benchSessionOptions(tb testing.TB, w *models.Weights, comp benchComponent, threads int, config map[string]string) ort.SessionOptions {
	tb.Helper()
	dir, err := w.DataDir()
	if err != nil {
		tb.Fatal(err)
	}
	cfg := map[string]string{benchExternalFolder: dir}
	for k, v := range config {
		cfg[k] = v
	}
	return ort.SessionOptions{Threads: threads, Inputs: comp.inputs, Outputs: comp.outps, Config: cfg}
}

// benchUNetInputs is one 32x32 latent (a 256x256 frame), a mid timestep and a
// text embedding of the UNet's width, all N(0,1).
func benchUNetInputs(crossDim int) []ort.Tensor {
	randn := testmodel.Randn(1, 2)
	return []ort.Tensor{
		ort.New([]int64{1, 4, 32, 32}, randn(4*32*32)),
		ort.Scalar(int64(501)),
		ort.New([]int64{1, 77, int64(crossDim)}, randn(77*crossDim)),
	}
}

// benchCheckFinite fails on NaN or Inf and returns the rms.
func benchCheckFinite(tb testing.TB, out ort.Tensor) float64 {
	tb.Helper()
	return testmodel.FiniteRMS(tb, "UNet output", ortsession.Data[float32](tb, out))
}

// BenchmarkUNetEval is full-size UNet evaluations of one 32x32 latent on
// CPU with 1 and 2 intra-op threads (in-memory model, external weights,
// default options). Run it with -benchtime Nx: one evaluation takes
// seconds.
func BenchmarkUNetEval(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			m := benchFullModel(b)
			testenv.ORT(b)
			comp := benchComponents[0]
			u := testmodel.UNet(b, m.dir)
			buf, err := benchMarshal(func() (*onnx.Graph, error) { return u.Graph(models.UNetGraphOptions{}) })
			if err != nil {
				b.Fatal(err)
			}
			s, err := ort.NewSession(buf, benchSessionOptions(b, u.Weights, comp, threads, nil))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			in := benchUNetInputs(u.Config.CrossDims[0])
			ctx := context.Background()
			// The first run allocates and tunes; it is not timed.
			warm := time.Now()
			out, err := s.Run(ctx, in...)
			if err != nil {
				b.Fatal(err)
			}
			first := time.Since(warm)
			rms := benchCheckFinite(b, out[0])
			win, cpu0 := benchStart(), benchCPUTime()
			for b.Loop() {
				if _, err := s.Run(ctx, in...); err != nil {
					b.Fatal(err)
				}
			}
			cpu := (benchCPUTime() - cpu0).Seconds() / float64(b.N)
			others := win.others()
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(1/sec, "evals/s")
			b.ReportMetric(benchUNetGFLOP/sec, "GFLOP/s")
			b.ReportMetric(cpu, "cpu-s/eval")
			b.ReportMetric(first.Seconds(), "first-eval-s")
			b.ReportMetric(others, "others-%")
			fmt.Printf("unet-eval: threads=%d evals/s=%.3f s/eval=%.3f GFLOP/s=%.1f cpu-s/eval=%.2f first-eval-s=%.2f n=%d output-rms=%.3g others=%.0f%%\n",
				threads, 1/sec, sec, benchUNetGFLOP/sec, cpu, first.Seconds(), b.N, rms, others)
		})
	}
}

// benchRSSConfig is one session configuration measured for memory.
type benchRSSConfig struct {
	name   string
	config map[string]string
}

func benchRSSConfigs(b *testing.B) []benchRSSConfig {
	cs := []benchRSSConfig{
		{"default", nil},
		{"no-prepack", map[string]string{"session.disable_prepacking": "1"}},
	}
	extra := os.Getenv(benchRSSConfigsVar)
	for _, item := range strings.Split(extra, ";") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		name, kvs, ok := strings.Cut(item, ":")
		if !ok {
			b.Fatalf("%s: %q: want name:key=value,...", benchRSSConfigsVar, item)
		}
		c := benchRSSConfig{name: name, config: map[string]string{}}
		for _, kv := range strings.Split(kvs, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				b.Fatalf("%s: %q: want key=value", benchRSSConfigsVar, kv)
			}
			c.config[k] = v
		}
		cs = append(cs, c)
	}
	return cs
}

// BenchmarkUNetPeakRSS measures the peak resident memory of a process that
// opens the full-size UNet and evaluates it, against the size of the UNet
// weights (budget: 1.3x). Each measurement runs in a fresh child process
// (this test binary re-executed, see init), so nothing else the benchmarks
// did counts. Models are loaded two ways: "memory" (ModelProto bytes with
// external data read from the checkpoint's folder, as the commands do) and
// "file" (onnx.Save into a temporary folder with the weights hard-linked,
// as `models export` does). The child also times session creation and
// evaluations (2 threads and 3 timed evaluations unless
// TOKENFLOW_BENCH_RSS_THREADS and TOKENFLOW_BENCH_RSS_EVALS say otherwise).
func BenchmarkUNetPeakRSS(b *testing.B) {
	for _, load := range []string{"memory", "file"} {
		for _, rc := range benchRSSConfigs(b) {
			b.Run(load+"/"+rc.name, func(b *testing.B) {
				m := benchFullModel(b)
				job := benchChildJob{Lib: testenv.ORTLibrary(b), Model: m.dir, Config: rc.config,
					Threads: benchEnvInt(b, benchRSSThreadsVar, 2), Evals: benchEnvInt(b, benchRSSEvalsVar, 3)}
				if load == "file" {
					job.File = benchSaveUNet(b, m.dir)
				}
				var r benchChildResult
				for b.Loop() {
					r = benchRunChild(b, job)
				}
				w := float64(m.unetBytes)
				ratio := float64(r.HWMAfterKB) * 1024 / w
				b.ReportMetric(float64(r.HWMAfterKB)/1024, "peak-MiB")
				b.ReportMetric(ratio, "x-weights")
				b.ReportMetric(r.CreateSec, "create-s")
				b.ReportMetric(1/r.EvalSec, "evals/s")
				b.ReportMetric(r.EvalCPUSec, "cpu-s/eval")
				b.ReportMetric(r.OthersPct, "others-%")
				verdict := "meets"
				if ratio >= benchLimitRatio {
					verdict = "EXCEEDS"
				}
				fmt.Printf("peak-rss: load=%s config=%s [%s] peak=%.0fMiB (after create %.0f, after first eval %.0f) rss=%.0fMiB anon=%.0fMiB file=%.0fMiB weights=%.0fMiB ratio=%.3f %s %.1fx; base=%.0fMiB build=%.2fs create=%.2fs first-eval=%.2fs evals/s=%.3f cpu-s/eval=%.2f (%d threads, %d evals) others=%.0f%%\n",
					load, rc.name, benchConfigString(rc.config), float64(r.HWMAfterKB)/1024, float64(r.HWMCreateKB)/1024, float64(r.HWMFirstKB)/1024,
					float64(r.RSSKB)/1024, float64(r.AnonKB)/1024, float64(r.FileKB)/1024, w/(1<<20), ratio, verdict, benchLimitRatio,
					float64(r.BaseKB)/1024, r.BuildSec, r.CreateSec, r.FirstSec, 1/r.EvalSec, r.EvalCPUSec, job.Threads, job.Evals, r.OthersPct)
			})
		}
	}
}

// benchEnvInt reads a positive integer from the environment.
func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// benchSaveUNet writes the full UNet as model.onnx with its weights hard-linked
// beside it, in a temporary folder, and returns the file.
func benchSaveUNet(b *testing.B, dir string) string {
	b.Helper()
	_, g := testmodel.UNetGraph(b, dir)
	m, err := g.Model("tokenflow-bench", "0")
	if err != nil {
		b.Fatal(err)
	}
	out := b.TempDir()
	if err := onnx.Save(m, out, "model.onnx", onnx.SaveOptions{DataFile: "weights.bin", InlineLimit: 1024}); err != nil {
		b.Fatal(err)
	}
	return filepath.Join(out, "model.onnx")
}

// benchChildJob is what a re-executed test binary measures.
type benchChildJob struct {
	Lib     string            // ONNX Runtime library
	Model   string            // checkpoint folder
	File    string            // saved model.onnx; "" builds the graph in memory
	Config  map[string]string // session config entries
	Threads int
	Evals   int // timed evaluations after the first
}

// benchChildResult is what the child reports. Memory in KiB from
// /proc/self/status: VmHWM is the peak resident set, VmRSS the current one,
// RssAnon and RssFile its anonymous and file-backed parts.
type benchChildResult struct {
	BaseKB      int64   // VmRSS once ONNX Runtime is loaded, before the model
	HWMCreateKB int64   // VmHWM after the session is created
	HWMFirstKB  int64   // VmHWM after the first evaluation
	HWMAfterKB  int64   // VmHWM after the timed evaluations
	RSSKB       int64   // VmRSS at the end
	AnonKB      int64   // RssAnon at the end
	FileKB      int64   // RssFile at the end
	BuildSec    float64 // graph build + marshal (memory loading)
	CreateSec   float64 // ort.NewSession / NewSessionFromFile
	FirstSec    float64 // first evaluation
	EvalSec     float64 // mean of the timed evaluations
	EvalCPUSec  float64 // process CPU time per timed evaluation
	OthersPct   float64 // share of the cores other processes used meanwhile
	Err         string
}

const benchChildPrefix = "tokenflow-bench-child: "

func benchRunChild(b *testing.B, job benchChildJob) benchChildResult {
	b.Helper()
	j, err := json.Marshal(job)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.CommandContext(b.Context(), os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), benchChildVar+"="+string(j))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var r benchChildResult
	found := false
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), benchChildPrefix); ok {
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				b.Fatalf("child result %q: %v", line, err)
			}
			found = true
		}
	}
	switch {
	case !found:
		b.Fatalf("memory child process: %v; no result\nstdout: %s\nstderr: %s", runErr, stdout.String(), stderr.String())
	case r.Err != "":
		b.Fatalf("memory child process: %s", r.Err)
	case runErr != nil:
		b.Fatalf("memory child process: %v\nstderr: %s", runErr, stderr.String())
	}
	return r
}

// init turns a re-executed test binary into a memory child: it does the
// job and exits before any test or benchmark runs.
func init() {
	if j := os.Getenv(benchChildVar); j != "" {
		var job benchChildJob
		r := benchChildResult{}
		if err := json.Unmarshal([]byte(j), &job); err != nil {
			r.Err = fmt.Sprintf("bad job %s: %v", benchChildVar, err)
		} else if err := job.run(&r); err != nil {
			r.Err = err.Error()
		}
		out, _ := json.Marshal(r)
		fmt.Printf("%s%s\n", benchChildPrefix, out)
		os.Exit(0)
	}
}

func (job benchChildJob) run(r *benchChildResult) error {
	if err := ort.Init(job.Lib); err != nil {
		return err
	}
	st, err := benchProcStatus()
	if err != nil {
		return err
	}
	r.BaseKB = st["VmRSS"]
	c, err := models.OpenModel(job.Model, models.OpenOptions{})
	if err != nil {
		return err
	}
	cfg, err := models.LoadUNetConfig(c.Path("unet", "config.json"))
	if err != nil {
		return err
	}
	comp := benchComponents[0]
	opts := ort.SessionOptions{Threads: job.Threads, Inputs: comp.inputs, Outputs: comp.outps, Config: map[string]string{}}
	for k, v := range job.Config {
		opts.Config[k] = v
	}
	var s *ort.Session
	if job.File != "" {
		start := time.Now()
		if s, err = ort.NewSessionFromFile(job.File, opts); err != nil {
			return err
		}
		r.CreateSec = time.Since(start).Seconds()
	} else {
		start := time.Now()
		u, err := c.UNet(onnx.Float)
		if err != nil {
			return err
		}
		buf, err := benchMarshal(func() (*onnx.Graph, error) { return u.Graph(models.UNetGraphOptions{}) })
		if err != nil {
			return err
		}
		dir, err := u.Weights.DataDir()
		if err != nil {
			return err
		}
		u.Weights.Close()
		opts.Config[benchExternalFolder] = dir
		r.BuildSec = time.Since(start).Seconds()
		start = time.Now()
		if s, err = ort.NewSession(buf, opts); err != nil {
			return err
		}
		r.CreateSec = time.Since(start).Seconds()
	}
	defer s.Close()
	if st, err = benchProcStatus(); err != nil {
		return err
	}
	r.HWMCreateKB = st["VmHWM"]
	in := benchUNetInputs(cfg.CrossDims[0])
	ctx := context.Background()
	start := time.Now()
	out, err := s.Run(ctx, in...)
	if err != nil {
		return err
	}
	r.FirstSec = time.Since(start).Seconds()
	y, _ := ort.Data[float32](out[0])
	for _, v := range y {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("UNet output holds %g", v)
		}
	}
	if st, err = benchProcStatus(); err != nil {
		return err
	}
	r.HWMFirstKB = st["VmHWM"]
	start, cpu0, win := time.Now(), benchCPUTime(), benchStart()
	for i := 0; i < job.Evals; i++ {
		if _, err := s.Run(ctx, in...); err != nil {
			return err
		}
	}
	r.EvalSec = time.Since(start).Seconds() / float64(max(job.Evals, 1))
	r.EvalCPUSec = (benchCPUTime() - cpu0).Seconds() / float64(max(job.Evals, 1))
	r.OthersPct = win.others()
	if st, err = benchProcStatus(); err != nil {
		return err
	}
	r.HWMAfterKB, r.RSSKB, r.AnonKB, r.FileKB = st["VmHWM"], st["VmRSS"], st["RssAnon"], st["RssFile"]
	return nil
}

// benchProcStatus reads the "kB" fields of /proc/self/status.
func benchProcStatus() (map[string]int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("peak memory is measured on Linux only: %w", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	for _, k := range []string{"VmHWM", "VmRSS", "RssAnon", "RssFile"} {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("/proc/self/status has no %s", k)
		}
	}
	return out, nil
}

// benchConfigString prints a config map deterministically (for logs).
func benchConfigString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// benchCPUTime is the process's user + system CPU time so far.
func benchCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchWindow is a point in time from which benchmarks measure how much of
// the machine other processes took: timings are only meaningful on an
// otherwise idle machine, and this says whether it was.
type benchWindow struct {
	wall      time.Time
	busy, own time.Duration
}

func benchStart() benchWindow {
	return benchWindow{wall: time.Now(), busy: benchBusy(), own: benchCPUTime()}
}

// others is the share (in %) of all cores' time used by other processes
// (and stolen by the hypervisor) since w; -1 when /proc/stat is unreadable.
func (w benchWindow) others() float64 {
	busy := benchBusy()
	if busy == 0 || w.busy == 0 {
		return -1
	}
	wall := time.Since(w.wall)
	o := (busy - w.busy) - (benchCPUTime() - w.own)
	return max(0, 100*o.Seconds()/(wall.Seconds()*float64(runtime.NumCPU())))
}

// benchBusy is the CPU time all processes have used since boot, from the
// first line of /proc/stat (user nice system idle iowait irq softirq steal,
// in USER_HZ = 100 ticks per second), steal included.
func benchBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
