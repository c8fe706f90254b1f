#!/usr/bin/env bash
# bfp_kcache.sh — K-cache table for docs/results/bfp.md from the kvq report
# JSON written by scripts/bfp_results.sh: for every run that compresses only
# the K side (V stays f16, no weight codec), the measured K-cache bytes per
# token are the run's total KV bytes per token minus the V half of the
# all-f16 run (same cache layout, so the same V bytes and page-table
# entries), and the saving is relative to an f16 K cache measured the same
# way.  K bits/value = 2 * the run's bits/value - the all-f16 run's.
#
# Usage: scripts/bfp_kcache.sh REPORT.json > table.md
# Needs jq (fields) and awk (arithmetic, formatting).
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 REPORT.json" >&2
    exit 2
fi
json=$1
[ -r "$json" ] || { echo "bfp_kcache: cannot read $json" >&2; exit 1; }

# One tab-separated line per run: kind (B = the all-f16 baseline, the
# first k=f16 v=f16 run; R = a K-only run; both can hold for one run), label,
# bytes/token, bits/value, mean KLD, its uncertainty, same-top fraction.
jq -r '
    (first(.runs[] | select(.config.k == "f16" and .config.v == "f16")) // null) as $base
    | if $base == null then error("no run with k=f16 v=f16") else . end
    | ($base | ["B", .label, .kv.bytes_per_token, .kv.bits_per_value, 0, 0, 0]),
      (.runs[]
       | select(.config.v == "f16" and (.config.w // "") == "" and (.config.k // "") != "")
       | ["R", .label, .kv.bytes_per_token, .kv.bits_per_value,
          .kld.mean, .kld.unc, .same_top.value])
    | map(tostring) | join("\t")
' "$json" | awk -F '\t' '
    $1 == "B" {
        v_half = $3 / 2
        k_f16 = $3 - v_half
        bits_f16 = $4 + 0
        print "| K cache (V f16) | K bytes/token | K bits/value | saving vs f16 K | mean KLD | ± | same top |"
        print "|---|---:|---:|---:|---:|---:|---:|"
        next
    }
    $1 == "R" {
        kb = $3 - v_half
        per_value = $4 * 2 - bits_f16
        printf "| `%s` | %.1f | %.3f | %.2fx | %.6f | %.6f | %.2f%% |\n", \
            $2, kb, per_value, k_f16 / kb, $5, $6, 100 * $7
    }
'
