#!/bin/sh
# fp_nupes_speed.sh — encode/decode speed of the fixed (already searched)
# fp-family formats against q4_0 in the same run (docs/results/fp-nupes.md
# "Encode speed"): the kvq bench codecs command RUNS times, each table in
# full, then per codec the best encode (payload call) of the runs with its
# ratio to q4_0's encode in that same run.
# usage: scripts/fp_nupes_speed.sh [KVQ binary (default build/kvq)] [RUNS (default 3)]
set -e
KVQ=${1:-build/kvq}
RUNS=${2:-3}
T=$(mktemp)
trap 'rm -f "$T" "$T.run"' EXIT
i=0
while [ "$i" -lt "$RUNS" ]; do
    i=$((i + 1))
    echo "== run $i ($(uptime | sed 's/.*load average/load average/'))"
    "$KVQ" bench codecs --codec q4_0 --codec mxfp4 --codec nvfp4 --codec nvfp4:tscale=0 \
        --codec fp:search=none --codec fp:fmt=e4m3,search=none --codec fp:search=none,gran=group \
        --codec nupes:a=0.75 --codec nupes:a=0.75,bits=8 --rows 4096 --cols 4096 --seconds 0.5 --runs 7 > "$T.run"
    cat "$T.run"
    awk -v run="$i" '$2 ~ /^[0-9.]+$/ && NF >= 5 {print run, $1, $3, $5}' "$T.run" >> "$T"
done
echo
echo "best of $RUNS runs (encode = kvq_ctx_encode_payload, GB/s of f32 input, 1 thread):"
awk '$2 == "q4_0" {q[$1] = $3}
     !($2 in best) {name[++k] = $2}
     !($2 in best) || $3 > best[$2] {best[$2] = $3; run[$2] = $1; dec[$2] = $4}
     END {printf "%-28s %8s %8s %8s\n", "codec", "encode", "vs q4_0", "decode";
          for (j = 1; j <= k; j++) {c = name[j]; printf "%-28s %8.2f %7.2fx %8.2f\n", c, best[c], best[c] / q[run[c]], dec[c]}}' "$T"
