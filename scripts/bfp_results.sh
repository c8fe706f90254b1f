#!/usr/bin/env bash
# bfp_results.sh — the runs behind docs/results/bfp.md (issue 5): kvq report
# on llama-4.6M (valid.txt) and stories260K (TinyStories), bfp with and
# without K-sort / input sorting against rtn, q4_0/q8_0 and mxint8, for the
# K cache, the V cache and the weights; then the K-channel statistics that
# K-sort reads (kvq quantize --ksort prints them).  Writes
# docs/results/bfp/{llama-4.6M,stories260K}/report.{md,json,svg} and
# docs/results/bfp/kstats-*.txt.  Run from the project root after `make`.
set -eu
KVQ=${KVQ_BIN:-./build/kvq}
D=${KVQ_DATA:-../shared/data}
OUT=docs/results/bfp
CHUNKS=${CHUNKS:-16}
mkdir -p "$OUT"
L=$D/models/llama-4.6M/model.bin
S=$D/models/stories260K/stories260K.bin
VL=$D/corpus/mixtext/valid.txt
VS=$D/corpus/tinystories/TinyStories-valid-head30k.txt
"$KVQ" report "$L" --text "$VL" --ctx 256 --chunks "$CHUNKS" --calib "$VL" --calib-tokens 512 \
    --specs scripts/bfp_llama46.specs --out "$OUT/llama-4.6M" -f
"$KVQ" report "$S" --text "$VS" --ctx 256 --chunks "$CHUNKS" --calib "$VS" --calib-tokens 512 \
    -z "$D/models/stories260K/tok512.bin" --specs scripts/bfp_stories260k.specs --out "$OUT/stories260K" -f
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$KVQ" quantize "$L" "$tmp/l.kvq" --codec f32 --ksort calib --calib "$VL" --calib-tokens 512 |
    grep -E "^(layer|rearranged)" >"$OUT/kstats-llama-4.6M.txt"
"$KVQ" quantize "$S" "$tmp/s.kvq" --codec f32 --ksort calib --calib "$VS" --calib-tokens 512 |
    grep -E "^(layer|rearranged)" >"$OUT/kstats-stories260K.txt"
for m in llama-4.6M stories260K; do
    scripts/bfp_kcache.sh "$OUT/$m/report.json" >"$OUT/kcache-$m.md"
done
cc -std=c11 -D_GNU_SOURCE -O2 -I"libkvq" scripts/bfp_kstats.c "$(dirname "$KVQ")/libkvq.a" -lm -lpthread -llzma -lzstd \
    -o "$tmp/bfp_kstats"
"$tmp/bfp_kstats" "$L" "$VL" "$D/models/llama-4.6M/tok512.bin" 256 >"$OUT/kerr-llama-4.6M.md"
"$tmp/bfp_kstats" "$S" "$VS" "$D/models/stories260K/tok512.bin" 256 >"$OUT/kerr-stories260K.md"
