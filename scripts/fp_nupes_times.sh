#!/bin/sh
# Search / quantize times and encode throughput for docs/results/fp-nupes.md.
# usage: scripts/fp_nupes_times.sh [BUILD_DIR]   (prints a Markdown table; 1 thread)
set -e
B=${1:-build}
D=../shared/data
M=$D/models/llama-4.6M/model.bin
C=$D/corpus/canterbury_large/bible.txt
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
echo "| weights | calibration | quantize time (s, wall, 1 thread) | model bpw |"
echo "|---|---|---:|---:|"
# SPEC:CAL pairs; "rtn:gran=row yes" measures the calibration forward pass alone (rtn ignores it)
for pair in rtn:gran=row,no rtn:gran=row,yes rtn,no q4_0,no mxfp4,no nvfp4,no fp:search=none,no fp,no fp,yes \
            fp:search=clip,yes fp:fmt=auto4,yes fp:gran=group,yes nupes:driven=0,no nupes,yes; do
    spec=${pair%,*}
    cal=${pair##*,}
    extra=
    [ "$cal" = yes ] && extra="--calib $C --calib-tokens 512"
    out=$($B/kvq quantize $M $T/q.kvq --codec $spec $extra -f 2>/dev/null)
    ms=$(echo "$out" | sed -n 's/^quantize time = \([0-9.]*\) ms$/\1/p')
    bpw=$(echo "$out" | sed -n 's/^quant size = .*(\([0-9.]*\) bpw)$/\1/p')
    echo "| $spec | $cal | $(echo "$ms" | awk '{printf "%.2f", $1/1000}') | $bpw |"
done
echo
$B/kvq bench codecs --codec mxfp4 --codec nvfp4 --codec fp:search=none --codec q4_0 --codec nupes:a=0.75 \
    --rows 1024 --cols 4096 --seconds 0.5 --runs 3
