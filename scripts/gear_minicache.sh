#!/usr/bin/env bash
# gear_minicache.sh — issue 6 results (KIVI, GEAR, MiniCache KV caches).
#
# Runs `kvq report` over four spec files and writes docs/results/gear-minicache.md
# (template scripts/gear_minicache.md.in) from the report.json files, kept with
# each report.md and pareto.svg under docs/results/gear-minicache/:
#
#   llama     llama-4.6M over corpus/mixtext/valid.txt   scripts/gear_minicache_llama.specs
#   stories   stories260K over TinyStories (30 KB head)  scripts/gear_minicache_stories.specs
#   minicache llama-4.6M, MiniCache knobs                scripts/gear_minicache_mc.specs
#   speed     llama-4.6M, interleaved rounds for tok/s   scripts/gear_minicache_speed.specs
#
# The residual table is the output of scripts/gear_residual.c, built against
# the libkvq.a beside the kvq binary and run on ../shared/data.
#
# Usage (from the project root, after `make`):
#   scripts/gear_minicache.sh [--kvq build/kvq] [--skip-runs] [--runs llama,stories,minicache,speed]
#     --skip-runs  only rewrite the markdown from the kept JSON
#     --runs       which reports to (re)run (default: all four)
# Needs jq (fields), awk (arithmetic, formatting) and cc.
#
# Derived columns (everything else is copied from report.json):
#   page bits/value  the measured bits with the f32 window taken out: at the end of
#                    a chunk every layer holds ctx-1 tokens, floor((ctx-1)/P)*P of
#                    them in sealed pages (window 0); the window's bytes are exactly
#                    (ctx-1-sealed) * 2 * L * kv_dim * 4, so
#                    page bits = 8 * (bytes_per_token*(ctx-1) - window) / (sealed*2*L*kv_dim)
#   KIVI at x        KIVI's mean KLD interpolated at x measured bits/value between its
#                    2/3/4-bit points of the same page size, linearly in log(KLD)
#   tok/s            n_chunks * (ctx-1) decoded tokens / the run's seconds, best of
#                    the interleaved rounds
set -euo pipefail

DATA=../shared/data
OUT=docs/results/gear-minicache
TEMPLATE=scripts/gear_minicache.md.in
DOC=docs/results/gear-minicache.md
NAMES="llama stories minicache speed"
LLAMA="$DATA/models/llama-4.6M/model.bin -z $DATA/models/llama-4.6M/tok512.bin --text $DATA/corpus/mixtext/valid.txt"
STORIES="$DATA/models/stories260K/stories260K.bin -z $DATA/models/stories260K/tok512.bin"
STORIES="$STORIES --text $DATA/corpus/tinystories/TinyStories-valid-head30k.txt"

usage() {
    echo "usage: $0 [--kvq PATH] [--skip-runs] [--runs LIST]" >&2
    exit 2
}

kvq=build/kvq
skip=0
runs="llama,stories,minicache,speed"
while [ $# -gt 0 ]; do
    case $1 in
    --kvq) [ $# -ge 2 ] || usage; kvq=$2; shift 2 ;;
    --kvq=*) kvq=${1#--kvq=}; shift ;;
    --runs) [ $# -ge 2 ] || usage; runs=$2; shift 2 ;;
    --runs=*) runs=${1#--runs=}; shift ;;
    --skip-runs) skip=1; shift ;;
    -h | --help) usage ;;
    *) echo "gear_minicache: unknown argument '$1'" >&2; usage ;;
    esac
done

# command NAME: the `kvq report` line of run NAME, words separated by one space
# (paths hold no spaces; the same string is run and printed in the doc).
command_of() {
    local args specs ctx chunks
    case $1 in
    llama) args=$LLAMA specs=llama ctx=256 chunks=12 ;;
    stories) args=$STORIES specs=stories ctx=512 chunks=8 ;;
    minicache) args=$LLAMA specs=mc ctx=256 chunks=12 ;;
    speed) args=$LLAMA specs=speed ctx=256 chunks=3 ;;
    *) echo "gear_minicache: unknown run '$1'" >&2; exit 2 ;;
    esac
    echo "$kvq report $args --ctx $ctx --chunks $chunks --threads 1" \
        "--specs scripts/gear_minicache_$specs.specs --out $OUT/$1 -f"
}

# quality_table REPORT.json: one row per run.  jq emits the model/eval fields
# (M), the KIVI points sorted by (page, bits, KLD) (K) and every run (R); awk
# derives page bits, the interpolated KIVI KLD and the GEAR/KIVI ratio.
quality_table() {
    jq -r '
        (["M", .eval.ctx, .model.n_layers, .model.n_kv_heads, .model.head_size]),
        ([.runs[] | select(.label | startswith("KIVI-"))
          | [.config.page, .kv.bits_per_value, .kld.mean]] | sort | .[] | ["K"] + .),
        (.runs[] | ["R", .label, .config.page, .kv.bits_per_value, .kv.bytes_per_token,
                    .kv.ratio_vs_f16, .kld.mean, .kld.unc, .ppl.q, .same_top.value,
                    (.kv.retained_fraction // 0)])
        | map(tostring) | join("\t")
    ' "$1" | awk -F '\t' '
        function fmt(ok, v, nd) { return ok ? sprintf("%." nd "f", v) : "–" }
        # KIVI KLD at x bits for page size p, linear in log(KLD); sets found.
        function interp(p, x,    i, x0, y0, x1, y1, f) {
            found = 0
            for (i = 1; i < nk[p]; i++) {
                x0 = kx[p, i]; y0 = ky[p, i]; x1 = kx[p, i + 1]; y1 = ky[p, i + 1]
                if (x0 <= x && x <= x1 && y0 > 0 && y1 > 0) {
                    f = (x - x0) / (x1 - x0)
                    found = 1
                    return exp(log(y0) + f * (log(y1) - log(y0)))
                }
            }
            return 0
        }
        $1 == "M" { held = $2 - 1; nl = $3; kvd = $4 * $5; next }
        $1 == "K" { p = $2 + 0; nk[p]++; kx[p, nk[p]] = $3 + 0; ky[p, nk[p]] = $4 + 0; next }
        BEGIN {
            print "| config | KV bits/value (measured) | page bits/value | vs f16 | mean KLD ± unc | PPL | same top | " \
                  "retained | KIVI KLD at same bits | GEAR / KIVI |"
            printf "%s", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        }
        $1 == "R" {
            label = $2; page = $3 + 0; x = $4 + 0; mean = $7 + 0; ret = $11 + 0
            sealed = int(held / page) * page
            window = (held - sealed) * 2 * nl * kvd * 4
            pb = sealed ? 8 * ($5 * held - window) / (sealed * 2 * nl * kvd) : 0
            kivi = 0; found = 0; has_kivi = 0
            if (substr(label, 1, 4) == "GEAR") { kivi = interp(page, x); has_kivi = found && kivi != 0 }
            printf "\n| `%s` | %.3f | %s | %.2fx | %.6f ± %.6f | %.4f | %.2f%% | %s | %s | %s |", \
                label, x, fmt(sealed != 0, pb, 3), $6, mean, $8, $9, 100 * $10, \
                ret != 0 ? fmt(1, 100 * ret, 1) "%" : "–", \
                fmt(found, kivi, 6), fmt(has_kivi, has_kivi ? mean / kivi : 0, 2)
        }
    '
}

# speed_table REPORT.json: best tok/s per cache (label up to "~") over the
# interleaved rounds, in order of first appearance, against the f32 cache's
# best; and the median over rounds of the ratio to the f32 run of the same
# round (label suffix "~N"), steadier when other processes load the cores.
speed_table() {
    jq -r '
        (["M", .eval.chunks, .eval.ctx]),
        (.runs[] | ["R", (.label | split("~")[0]), (.label | split("~")[1] // "1"), .seconds])
        | map(tostring) | join("\t")
    ' "$1" | awk -F '\t' '
        $1 == "M" { tokens = $2 * ($3 - 1); next }
        {
            tps = tokens / $4
            if (!($2 in best)) { order[++n] = $2; best[$2] = 0 }
            if (tps > best[$2]) best[$2] = tps
            rounds[$2]++
            at[$2, $3] = tps
            if (!($3 in seen)) { seen[$3] = 1; round[++nr] = $3 }
        }
        function median(label,    k, m, i, j, t, v) {
            m = 0
            for (k = 1; k <= nr; k++)
                if ((label, round[k]) in at && ("f32", round[k]) in at) v[++m] = at[label, round[k]] / at["f32", round[k]]
            for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
            return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
        }
        END {
            if (!("f32" in best)) { print "gear_minicache: no f32 run in the speed report" > "/dev/stderr"; exit 1 }
            printf "| cache | tok/s (best of %d) | vs f32 cache (best / best) | vs f32 cache (median of per-round ratios) |\n%s", \
                rounds["f32"], "|---|---:|---:|---:|"
            for (i = 1; i <= n; i++)
                printf "\n| `%s` | %.1f | %.2fx | %.2fx |", order[i], best[order[i]], best[order[i]] / best["f32"], \
                    median(order[i])
        }
    '
}

# fill TEMPLATE DIR: TEMPLATE with every {{KEY}} replaced by the contents of
# DIR/KEY (files without a trailing newline); unknown keys stay as they are.
fill() {
    awk -v dir="$2" -v keys="$(cd "$2" && echo *)" '
        BEGIN { n = split(keys, k, " "); for (i = 1; i <= n; i++) present[k[i]] = 1 }
        function value(key,    path, line, v, n) {
            path = dir "/" key
            v = ""; n = 0
            while ((getline line < path) > 0) v = v (n++ ? "\n" : "") line
            close(path)
            return v
        }
        {
            out = ""; rest = $0
            while ((i = index(rest, "{{")) > 0) {
                j = index(substr(rest, i + 2), "}}")
                if (j == 0) break
                key = substr(rest, i + 2, j - 1)
                if (key in present) {
                    out = out substr(rest, 1, i - 1) value(key)
                    rest = substr(rest, i + j + 3)
                } else {
                    out = out substr(rest, 1, i + 1)
                    rest = substr(rest, i + 2)
                }
            }
            print out rest
        }
    ' "$1"
}

if [ "$skip" -eq 0 ]; then
    for n in $NAMES; do
        case ",$runs," in *",$n,"*) ;; *) continue ;; esac
        mkdir -p "$OUT/$n"
        read -r -a cmd <<<"$(command_of "$n")"
        echo "+ ${cmd[*]}" >&2
        "${cmd[@]}"
    done
fi
for n in $NAMES; do
    [ -r "$OUT/$n/report.json" ] || { echo "gear_minicache: missing $OUT/$n/report.json" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/v"
cc -O2 -Ilibkvq -I. scripts/gear_residual.c "$(dirname "$kvq")/libkvq.a" -lzstd -llzma -lpthread -lm \
    -o "$tmp/gear_residual"
"$tmp/gear_residual" "$DATA" >"$tmp/residual"
# the output without leading and trailing white space
awk '{ all = all (NR > 1 ? "\n" : "") $0 }
     END { sub(/^[ \t\n\r]+/, "", all); sub(/[ \t\n\r]+$/, "", all); printf "%s", all }' \
    "$tmp/residual" >"$tmp/v/RESIDUAL"
for n in $NAMES; do
    key=$(echo "$n" | tr '[:lower:]' '[:upper:]')
    printf '%s' "$(command_of "$n")" >"$tmp/v/CMD_$key"
done
printf '%s' "$kvq" >"$tmp/v/KVQ"
quality_table "$OUT/llama/report.json" >"$tmp/v/TABLE_LLAMA"
quality_table "$OUT/stories/report.json" >"$tmp/v/TABLE_STORIES"
quality_table "$OUT/minicache/report.json" >"$tmp/v/TABLE_MC"
speed_table "$OUT/speed/report.json" >"$tmp/v/TABLE_SPEED"
fill "$TEMPLATE" "$tmp/v" >"$tmp/doc.md"
mv "$tmp/doc.md" "$DOC"
echo "wrote $DOC" >&2
