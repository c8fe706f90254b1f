#!/usr/bin/env bash
# The main job on a default input: install packages, build, then run
# `kvq report` on stories260K over TinyStories text (weights at q8_0/q4_0/rtn-4,
# KV cache at 8/4 bits) and write report/report.{md,json} + report/pareto.svg.
#   bash scripts/demo.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-report}
data=${KVQ_DATA:-../shared/data}
model=$data/models/stories260K/stories260K.bin
text=$data/corpus/tinystories/TinyStories-valid-head30k.txt

bash scripts/setup.sh
make -j"$(nproc 2>/dev/null || echo 2)" all

if [ ! -f "$model" ] || [ ! -f "$text" ]; then
  echo "demo: $model or $text not found." >&2
  echo "demo: point KVQ_DATA at a copy of the shared data (models/stories260K, corpus/tinystories)." >&2
  exit 1
fi
./build/kvq report "$model" --text "$text" --chunks 16 --threads "$(nproc 2>/dev/null || echo 2)" -f \
  --specs 'w=q8_0; w=q4_0; w=rtn:bits=4,gran=group,group=32; kv=rtn:bits=8; kv=rtn:bits=4; w=q8_0 kv=rtn:bits=8 window=16' \
  --out "$out"
echo "demo: wrote $out/report.md, $out/report.json, $out/pareto.svg"
