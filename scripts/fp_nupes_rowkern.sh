#!/bin/sh
# fp_nupes_rowkern.sh — decode speed with the fp family's row kernels
# (docs/results/fp-nupes.md "Row kernels"): kvq bench decode on llama-4.6M
# with the weights quantized in-process by each codec; every line is one
# run (f32 generation in the same run as the codec's).
# usage: scripts/fp_nupes_rowkern.sh [KVQ binary (default build/kvq)] [reps (default 5)]
set -e
KVQ=${1:-build/kvq}
REPS=${2:-5}
MODEL=../shared/data/models/llama-4.6M/model.bin
[ -f "$MODEL" ] || { echo "fp_nupes_rowkern.sh: $MODEL not found" >&2; exit 1; }
for spec in q4_0 mxfp4 nvfp4 nvfp4:tscale=0 fp:search=none fp:search=none,nib=adjacent \
    fp:fmt=e4m3,search=none fp:search=none,gran=group nupes:a=0.75,driven=0 nupes:a=0.75,bits=8,driven=0; do
    "$KVQ" bench decode "$MODEL" -n 128 --reps "$REPS" --quant "$spec" 2>&1 |
        awk -v s="$spec" '/^generation/ {f = $2} /tok\/s generation/ {g = $5}
                          END {printf "%-34s f32 %7.1f tok/s   codec %7.1f tok/s   %5.2fx\n", s, f, g, g / f}'
done
