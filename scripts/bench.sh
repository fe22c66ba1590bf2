#!/usr/bin/env bash
# Runs tokenflow's benchmarks (make bench) and prints a summary of the
# figures at the end; the raw `go test -bench` output goes to bench.out.
#
# Packages: internal/video, internal/ort, models, and internal/inversion and
# internal/edit once they exist (a package without a Benchmark function is
# skipped). The full-size benchmarks in models use a random-weight Stable
# Diffusion 2.1-base written on first use into $TOKENFLOW_BENCH_DIR (default
# ~/.cache/tokenflow-bench; 5.2 GB, about a minute); TOKENFLOW_BENCH_FULL=0
# skips them. A default run takes about 10 minutes on 2 cores.
#
# Environment:
#   BENCH         regexp of benchmarks to run (default: all); e.g.
#                 BenchmarkPrompts for only the many-prompt comparison,
#                 BenchmarkFrames for the clip-length one (16, 64, 256
#                 frames; TOKENFLOW_BENCH_FRAMES picks others, and
#                 TOKENFLOW_BENCH_BASE=<older tokenflow binary> compares
#                 the first length's latents and speed with that build)
#   BENCHTIME     -benchtime for the quick benchmarks (default 1s)
#   UNET_EVALS    timed full-size UNet evaluations per thread count (default 5)
#   PIPELINE_TIME -benchtime for internal/inversion and internal/edit (default 1x)
#   PIPELINE_THREADS  thread counts of the full-size pipeline runs (default 1,2)
#   PIPELINE_RECON=0  skip the pipeline benchmark's second part (invert
#                 --reconstruct, then edit from the cache)
#   BENCH_OUT     raw output file (default bench.out)
#   TOKENFLOW_BENCH_RSS_CONFIGS  extra session configs for the memory
#                 benchmark: "name:key=value,key=value;name2:..."
#   TOKENFLOW_BENCH_RSS_THREADS, TOKENFLOW_BENCH_RSS_EVALS  threads (2) and
#                 timed evaluations (3) of the memory benchmark's child
#   TOKENFLOW_BENCH_FULL=0  skip everything that needs the full-size model
# Timings assume an otherwise idle machine: the load average is printed at
# the start and the end, and the ONNX Runtime benchmarks in models report
# others-%, the share of all cores other processes used while they ran
# (above a few % their timings are not to be trusted).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
GO=${GO:-go}
BENCH=${BENCH:-.}
BENCHTIME=${BENCHTIME:-1s}
UNET_EVALS=${UNET_EVALS:-5}
PIPELINE_TIME=${PIPELINE_TIME:-1x}
out=${BENCH_OUT:-bench.out}

has_bench() {
  [ -d "$1" ] && grep -qs '^func Benchmark' "$1"/*_test.go
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"; }

# busy_pct: how busy the machine is right now, in % of all cores over 3 s
# (from /proc/stat: everything but idle and iowait; steal counts as busy).
busy_pct() {
  local a b
  a=$(head -1 /proc/stat 2>/dev/null) || { echo 0; return; }
  sleep 3
  b=$(head -1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {
    n = split(a, x, " "); split(b, y, " ")
    for (i = 2; i <= n; i++) { d = y[i] - x[i]; t += d; if (i == 5 || i == 6) idle += d }
    printf "%d", (t > 0 ? 100 * (t - idle) / t : 0)
  }'
}

: >"$out"
log() { echo "$*" | tee -a "$out"; }

start=$(date +%s)
busy=$(busy_pct)
log "bench: $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -m), $(nproc) cores, load average $(loadavg), ${busy}% busy before starting"
if [ "$busy" -gt 10 ]; then
  log "bench: WARNING: other processes keep ${busy}% of the cores busy: timings will be slow and noisy (see others-% per benchmark)"
fi

# gotest PKG BENCHTIME [extra go test flags...]
gotest() {
  local pkg=$1 bt=$2
  shift 2
  log "bench: go test $pkg -bench '$BENCH' -benchtime $bt $*"
  # -count=1: never a cached result; the full-size model is written on
  # first use, so allow time for it.
  $GO test -count=1 -timeout 120m -run '^$' -bench "$BENCH" -benchtime "$bt" "$@" "$pkg" 2>&1 | tee -a "$out"
}

status=0
for pkg in internal/video internal/ort models cmd/tokenflow; do
  if ! has_bench "$pkg"; then
    log "bench: ./$pkg: no benchmarks, skipped"
    continue
  fi
  case $pkg in
  models)
    # UNet evaluations take seconds each: a fixed count, not a duration.
    gotest "./$pkg" "$BENCHTIME" -skip 'BenchmarkUNetEval' || status=1
    if echo "BenchmarkUNetEval" | grep -Eq -- "$BENCH"; then
      BENCH=BenchmarkUNetEval gotest "./$pkg" "${UNET_EVALS}x" || status=1
    fi
    ;;
  cmd/tokenflow)
    # whole CLI runs on PERF.md's workload: one run each
    gotest "./$pkg" "$PIPELINE_TIME" || status=1
    ;;
  *)
    gotest "./$pkg" "$BENCHTIME" || status=1
    ;;
  esac
done
log "bench: done in $(($(date +%s) - start))s, load average $(loadavg)"

# Summary: every benchmark line with ns/op in readable units and its
# metrics, then the memory and speed lines the models benchmarks print.
{
  echo
  echo "================ summary ================"
  awk '
    function human(ns) {
      if (ns >= 1e9) return sprintf("%.2f s", ns / 1e9)
      if (ns >= 1e6) return sprintf("%.2f ms", ns / 1e6)
      if (ns >= 1e3) return sprintf("%.2f us", ns / 1e3)
      return sprintf("%.0f ns", ns)
    }
    /^pkg: / { printf "\n%s\n", $2; next }
    /^Benchmark/ && / ns\/op/ {
      name = $1; sub(/^Benchmark/, "", name); sub(/-[0-9]+$/, "", name)
      line = sprintf("  %-44s %10s/op", name, human($3))
      for (i = 5; i < NF; i += 2) {
        if ($(i + 1) ~ /^(B\/op|allocs\/op)$/) continue
        line = line sprintf("  %s %s", $i, $(i + 1))
      }
      print line
    }
  ' "$out"
  if grep -q '^full-model:' "$out"; then
    echo
    grep -m1 '^full-model:' "$out"
  fi
  # section TAG TITLE: the benchmarks' "TAG: ..." lines under TITLE, if any.
  section() {
    if grep -q "^$1:" "$out"; then
      echo
      echo "$2"
      grep "^$1:" "$out" | sed "s/^$1: /  /"
    fi
  }
  section unet-eval "UNet speed (full size, 32x32 latent, batch 1; PERF.md: 181 GFLOP per evaluation):"
  section peak-rss "Peak RSS with the full-size UNet session open (budget 1.3x the UNet weights):"
  section pipeline "Whole runs (tokenflow edit; PERF.md workload for sd21-base-256; official: 1184 s at 1 thread, 923 s at 2):"
  section pipeline-phase "Whole runs per phase (GFLOP/s at 181 GFLOP per 32x32 frame-evaluation, PERF.md; session creation is the time the run waited for sessions):"
  section prompts "Four prompts in one run vs four runs of one prompt, one inversion shared (issue 11; target ratio 0.70 or less):"
  section frames "Clip length (issue 10: full-size SD 2.1, 128x128, 2+2 steps, batch 8; peak RSS and s/frame flat within 15 % from 64 to 256 frames):"
  if grep -q -- '--- FAIL\|^FAIL' "$out"; then
    echo
    echo "FAILURES:"
    grep -- '--- FAIL\|^FAIL' "$out" | sed 's/^/  /'
  fi
} | tee -a "$out"
exit $status
