#!/usr/bin/env bash
# Installs what tokenflow needs at run time and in tests, once:
#   - ffmpeg and ffprobe (apt-get when missing and running as root; otherwise
#     one line saying what to install);
#   - the ONNX Runtime CPU library, taken out of the onnxruntime-node package
#     of the npm registry (no install scripts run) into .ort/lib/.
# Repeated runs find both and download nothing.
set -euo pipefail

ORT_VERSION=1.30.0
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.ort/lib"
lib="$dest/libonnxruntime.so.1"
stamp="$root/.ort/VERSION"

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
  if ! command -v npm >/dev/null 2>&1; then
    echo "deps: npm is missing: install Node.js with npm (Debian: apt-get install npm), or install ONNX Runtime $ORT_VERSION yourself and set ONNXRUNTIME_LIB" >&2
    exit 1
  fi
  echo "deps: fetching ONNX Runtime $ORT_VERSION (CPU) from the npm registry" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "onnxruntime-node@$ORT_VERSION" --ignore-scripts --silent >/dev/null)
  member="package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
  tar -xzf "$tmp/onnxruntime-node-$ORT_VERSION.tgz" -C "$tmp" "$member"
  mkdir -p "$dest"
  mv "$tmp/$member" "$lib.tmp"
  mv "$lib.tmp" "$lib"
  echo "$ORT_VERSION" > "$stamp"
}

need_ffmpeg
need_ort
