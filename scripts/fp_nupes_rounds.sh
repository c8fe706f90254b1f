#!/bin/sh
# docs/results/fp-nupes.md, "The paper's three rounds": LLM-FP4's alternating
# W/A search (fp:rounds=N with fpa, quant/fp_joint.c) beside the one-round
# rows it replaces, on both real models (same report settings as
# scripts/fp_nupes_report.sh: 512 calibration tokens, ctx 256, 8 chunks),
# then quantize times of the searches (llama-4.6M, 1 thread, best of REPS).
# usage: scripts/fp_nupes_rounds.sh [BUILD_DIR] [OUT_DIR] [REPS]
#   writes OUT_DIR/{l46m,s260k}/report.{md,json} + pareto.svg (default /tmp/kvq-fp-rounds)
set -e
B=${1:-build}
O=${2:-/tmp/kvq-fp-rounds}
R=${3:-3}
D=../shared/data
SPECS='w=fp act=fpa:pershift=0 label=W4A4-fp-static-tensor-bias;
w=fp act=fpa label=W4A4-fp-static-preshifted;
w=fp:rounds=1 act=fpa:pershift=0 label=W4A4-fp-1round-joint-tensor-bias;
w=fp:rounds=3 act=fpa:pershift=0 label=W4A4-fp-3rounds-tensor-bias;
w=fp:rounds=1 act=fpa label=W4A4-fp-1round-joint-preshifted;
w=fp:rounds=3 act=fpa label=W4A4-fp-3rounds-preshifted;
w=fp act=fpa:fmt=e4m3 label=W4A8-fp-static-preshifted;
w=fp:rounds=3 act=fpa:fmt=e4m3 label=W4A8-fp-3rounds-preshifted'
mkdir -p "$O"
$B/kvq report $D/models/llama-4.6M/model.bin --text $D/corpus/mixtext/valid.txt \
    --calib $D/corpus/canterbury_large/bible.txt --calib-tokens 512 \
    --specs "$SPECS" --ctx 256 --chunks 8 --out "$O/l46m" -f
$B/kvq report $D/models/stories260K/stories260K.bin --text $D/corpus/tinystories/TinyStories-valid-head30k.txt \
    --calib $D/corpus/tinystories/tinystories_sample.txt --calib-tokens 512 \
    --specs "$SPECS" --ctx 256 --chunks 8 --out "$O/s260k" -f
# quantize times: fp:rounds=N searches with plain fpa (E2M1, pre-shifted), the kvq quantize default
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
echo "| weights (llama-4.6M, --calib 512 tokens) | quantize time (s, wall, 1 thread, best of $R) | vs fp |"
echo "|---|---:|---:|"
base=
for spec in fp fp:fmt=auto4 fp:rounds=1 fp:rounds=3; do
    best=
    for i in $(seq "$R"); do
        out=$($B/kvq quantize $D/models/llama-4.6M/model.bin $T/q.kvq --codec $spec \
              --calib $D/corpus/canterbury_large/bible.txt --calib-tokens 512 -f 2>/dev/null)
        ms=$(echo "$out" | sed -n 's/^quantize time = \([0-9.]*\) ms$/\1/p')
        best=$(echo "$ms ${best:-$ms}" | awk '{ print ($1 < $2) ? $1 : $2 }')
    done
    [ -z "$base" ] && base=$best
    echo "| $spec | $(echo "$best" | awk '{printf "%.2f", $1/1000}') | $(echo "$best $base" | awk '{printf "%.2fx", $1/$2}') |"
done
