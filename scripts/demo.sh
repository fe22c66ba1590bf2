#!/usr/bin/env bash
# make demo: edit a short generated clip with the tiny test model.
#
# The model in testdata/ is tiny and randomly initialised: the demo shows the
# whole pipeline (ffmpeg decode, VAE, DDIM inversion, TokenFlow edit, encode
# with the source's frame rate and audio), not a good edit. For real edits
# pass --model a Stable Diffusion 1.5/2.1 diffusers folder or hub id.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/demo"
mkdir -p "$out"
clip="$out/clip.mp4"
if [ ! -f "$clip" ]; then
  # 2 seconds, 12 fps, a moving test pattern with a 440 Hz tone.
  ffmpeg -v error -y -f lavfi -i "testsrc2=size=192x128:rate=12" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
    -t 2 -c:v libx264 -pix_fmt yuv420p -c:a aac -shortest "$clip"
fi
"$root/bin/tokenflow" edit \
  --model "$root/testdata/conformance/tiny-sd21" \
  --prompt "a red cube on a wooden table" \
  --inversion-prompt "a test pattern" \
  --size 96x64 --inversion-steps 20 --steps 10 --batch-size 8 \
  --cache-dir "$out/cache" --out "$out/clip.tokenflow.mp4" --force \
  "$clip"
