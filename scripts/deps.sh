#!/usr/bin/env bash
# Installs what tokenflow needs at run time and in tests, once:
#   - ffmpeg and ffprobe (apt-get when missing and running as root; otherwise
#     one line saying what to install);
#   - the ONNX Runtime CPU library, taken out of the onnxruntime-node package
#     of the npm registry (no install scripts run) into .ort/lib/.
# With --cuda (make deps-cuda) also the CUDA build of ONNX Runtime, into
# .ort/cuda/ (Linux x86-64 only), from two npm packages of one ONNX Runtime
# version, fetched with `npm pack --ignore-scripts`:
#   - onnxruntime-node@1.29.0: its core library libonnxruntime.so.1 is built
#     with the CUDA provider bridge (it loads the two files below from its
#     own folder when CUDA is asked for);
#   - com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 (ONNX Runtime 1.29.0
#     for Unity): libonnxruntime_providers_cuda.so (built against CUDA 13 and
#     cuDNN 9) and libonnxruntime_providers_shared.so.
# The NVIDIA driver and the CUDA 13 and cuDNN 9 libraries are not on npm and
# are not installed here: `tokenflow doctor --device cuda` says which are
# missing (docs/gpu.md).
#
# Files are written under temporary names and renamed when complete; a
# version stamp is written last. Repeated runs find everything and download
# nothing. $TOKENFLOW_ORT_DIR moves the install folder (default .ort/ in the
# repository; the tests use it to install into a scratch folder).
set -euo pipefail

ORT_VERSION=1.30.0
CUDA_ORT_VERSION=1.29.0
CUDA_CORE_PKG=onnxruntime-node@$CUDA_ORT_VERSION
CUDA_PROVIDER_PKG=com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9

usage() { echo "usage: scripts/deps.sh [--cuda]" >&2; exit 2; }
cuda=0
for arg in "$@"; do
  case "$arg" in
    --cuda) cuda=1 ;;
    *) usage ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
ortdir=${TOKENFLOW_ORT_DIR:-$root/.ort}
dest="$ortdir/lib"
lib="$dest/libonnxruntime.so.1"
stamp="$ortdir/VERSION"
cudadir="$ortdir/cuda"
cudastamp="$cudadir/VERSION"
cudafiles=(libonnxruntime.so.1 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)
cudawant="$CUDA_CORE_PKG $CUDA_PROVIDER_PKG"

tmp=""
cleanup() { if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT
scratch() {
  if [ -z "$tmp" ]; then tmp=$(mktemp -d); fi
}

need_npm() {
  if ! command -v npm >/dev/null 2>&1; then
    echo "deps: npm is missing: install Node.js with npm (Debian: apt-get install npm), or install $1 yourself and pass --ort-lib" >&2
    exit 1
  fi
}

# fetch PKG@VERSION DIR: npm pack into DIR (no install scripts run), check
# that the tarball is that package at that version, print the tarball path.
fetch() {
  local spec=$1 dir=$2 name=${1%@*} version=${1##*@} tgz got
  mkdir -p "$dir"
  tgz=$(cd "$dir" && npm pack "$spec" --ignore-scripts --loglevel=error 2>"$dir/npm.err" | tail -n 1) || {
    echo "deps: npm pack $spec failed ($(sed -n 's/^npm error code //p' "$dir/npm.err" | head -n 1)): is the registry $(npm config get registry 2>/dev/null) reachable?" >&2
    exit 1
  }
  tgz="$dir/$tgz"
  got=$(tar -xzOf "$tgz" package/package.json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const p=JSON.parse(s);console.log(p.name+"@"+p.version)})')
  if [ "$got" != "$name@$version" ]; then
    echo "deps: npm pack $spec gave $got, not $name@$version: refusing to install it" >&2
    exit 1
  fi
  echo "$tgz"
}

# place SRC DEST: copy under a temporary name beside DEST, then rename.
place() {
  cp "$1" "$2.tmp"
  chmod 0755 "$2.tmp"
  mv -f "$2.tmp" "$2"
}

need_ffmpeg() {
  if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing ffmpeg with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
    return 0
  fi
  echo "deps: ffmpeg and ffprobe are missing: install them (Debian/Ubuntu: sudo apt-get install ffmpeg; macOS: brew install ffmpeg)" >&2
  exit 1
}

need_ort() {
  if [ -f "$lib" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$ORT_VERSION" ]; then
    return 0
  fi
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) arch=x64 ;;
    Linux-aarch64) arch=arm64 ;;
    *) echo "deps: no ONNX Runtime build for $(uname -s)-$(uname -m) in onnxruntime-node: install ONNX Runtime $ORT_VERSION yourself and set ONNXRUNTIME_LIB" >&2; exit 1 ;;
  esac
  need_npm "ONNX Runtime $ORT_VERSION"
  echo "deps: fetching ONNX Runtime $ORT_VERSION (CPU) from the npm registry" >&2
  scratch
  tgz=$(fetch "onnxruntime-node@$ORT_VERSION" "$tmp/cpu")
  member="package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
  tar -xzf "$tgz" -C "$tmp/cpu" "$member"
  mkdir -p "$dest"
  place "$tmp/cpu/$member" "$lib"
  echo "$ORT_VERSION" > "$stamp.tmp"
  mv -f "$stamp.tmp" "$stamp"
}

need_ort_cuda() {
  local have=1 f
  for f in "${cudafiles[@]}"; do
    [ -f "$cudadir/$f" ] || have=0
  done
  if [ "$have" = 1 ] && [ "$(cat "$cudastamp" 2>/dev/null)" = "$cudawant" ]; then
    return 0
  fi
  if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
    echo "deps: the CUDA build on npm is for Linux x86-64 only, not $(uname -s)-$(uname -m): install an ONNX Runtime GPU build yourself and pass --ort-lib" >&2
    exit 1
  fi
  need_npm "an ONNX Runtime $CUDA_ORT_VERSION GPU build"
  echo "deps: fetching ONNX Runtime $CUDA_ORT_VERSION with the CUDA provider from the npm registry ($CUDA_CORE_PKG, $CUDA_PROVIDER_PKG; about 290 MB)" >&2
  scratch
  core=$(fetch "$CUDA_CORE_PKG" "$tmp/core")
  prov=$(fetch "$CUDA_PROVIDER_PKG" "$tmp/prov")
  tar -xzf "$core" -C "$tmp/core" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  tar -xzf "$prov" -C "$tmp/prov" \
    package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so \
    package/Plugins/Linux/x64/libonnxruntime_providers_shared.so
  mkdir -p "$cudadir"
  # The stamp goes first so that an interrupted run is redone in full.
  rm -f "$cudastamp"
  place "$tmp/prov/package/Plugins/Linux/x64/libonnxruntime_providers_shared.so" "$cudadir/libonnxruntime_providers_shared.so"
  place "$tmp/prov/package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so" "$cudadir/libonnxruntime_providers_cuda.so"
  place "$tmp/core/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$cudadir/libonnxruntime.so.1"
  echo "$cudawant" > "$cudastamp.tmp"
  mv -f "$cudastamp.tmp" "$cudastamp"
  echo "deps: installed ONNX Runtime $CUDA_ORT_VERSION (CUDA) in $cudadir; the NVIDIA driver, CUDA 13 and cuDNN 9 must come from NVIDIA: check them with \`tokenflow doctor --device cuda\`" >&2
}

need_ffmpeg
need_ort
if [ "$cuda" = 1 ]; then
  need_ort_cuda
fi
