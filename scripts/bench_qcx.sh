#!/usr/bin/env bash
# bench_qcx.sh — qcx against xz -9e, zstd -19, brotli -q 11 and bzip2 -9 (issue 8).
#
#   scripts/bench_qcx.sh [-j N] [-o REPORT.md] [--no-fetch] [--modes] [--qcx-only] [--report-only]
#
# Inputs: every file of ../shared/data/corpus/ (or $KVQ_DATA/corpus) and
# ≥ 10 MB of English text from Debian packages (dict-gcide's dictionary,
# jargon-text's Jargon File), fetched with `apt-get download` + `dpkg -x`
# into $BENCH_DIR (default build-qcx/bench) unless --no-fetch.
# Per file and tool: compressed size, ratio, compress and decompress MB/s
# (wall clock of one single-threaded run, MB = 10^6 bytes), and a byte
# comparison of the round trip (any mismatch is reported and fails the run).
# --modes adds qcx's tiling A/B (fib, p5, none, allpos) on the text files.
# -j N runs N files at once (each measurement stays single-threaded).
# --modes runs on files under 10 MB only.  --qcx-only re-measures qcx and
# keeps the other tools' rows of the last run; --report-only rewrites the
# report from the rows of the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=1
REPORT=docs/results/quasicryth.md
FETCH=1
MODES=0
REPORT_ONLY=0
QCX_ONLY=0
CMDLINE="scripts/bench_qcx.sh $*"
while [ $# -gt 0 ]; do
    case "$1" in
    -j) JOBS=$2; shift 2 ;;
    -o) REPORT=$2; shift 2 ;;
    --no-fetch) FETCH=0; shift ;;
    --modes) MODES=1; shift ;;
    --report-only) REPORT_ONLY=1; FETCH=0; shift ;;
    --qcx-only) QCX_ONLY=1; shift ;;
    *) echo "usage: $0 [-j N] [-o REPORT.md] [--no-fetch] [--modes] [--qcx-only] [--report-only]" >&2; exit 2 ;;
    esac
done

QCX=${QCX_BIN:-build/qcx}
[ -x "$QCX" ] || make -j2 "$QCX" >/dev/null
QCX=$(cd "$(dirname "$QCX")" && pwd)/$(basename "$QCX")
DATA=${KVQ_DATA:-../shared/data}/corpus
BENCH_DIR=${BENCH_DIR:-build-qcx/bench}
mkdir -p "$BENCH_DIR/debian" "$BENCH_DIR/tmp"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
for t in xz zstd brotli bzip2 cmp; do
    command -v $t >/dev/null || { echo "bench_qcx: $t not installed" >&2; exit 1; }
done

# ---- Debian English text ---------------------------------------------------
fetch_debian() {
    local d=$BENCH_DIR/debian
    [ -s "$d/gcide.dict" ] && [ -s "$d/jargon.txt" ] && return 0
    (cd "$d" && apt-get download dict-gcide jargon-text >/dev/null 2>&1)
    for deb in "$d"/*.deb; do dpkg -x "$deb" "$d/x"; done
    zcat "$d/x/usr/share/dictd/gcide.dict.dz" > "$d/gcide.dict"
    zcat "$d/x/usr/share/doc/jargon-text/jargon.txt.gz" > "$d/jargon.txt"
}
[ $FETCH -eq 1 ] && fetch_debian

FILES=()
for f in "$DATA"/*/*; do [ -f "$f" ] && FILES+=("$f"); done
for f in "$BENCH_DIR/debian/gcide.dict" "$BENCH_DIR/debian/jargon.txt"; do
    [ -s "$f" ] && FILES+=("$f")
done
[ ${#FILES[@]} -gt 0 ] || { echo "bench_qcx: no input files under $DATA" >&2; exit 1; }

# ---- one file: every tool -------------------------------------------------------
now() { date +%s.%N; }

# measure NAME FILE "compress cmd" "decompress cmd": prints a TSV row
measure() {
    local name=$1 f=$2 c=$3 d=$4 tmp out t0 t1 t2 size ok
    tmp=$(mktemp -d "$BENCH_DIR/tmp/m.XXXXXX")
    t0=$(now)
    bash -c "$c" < "$f" > "$tmp/z"
    t1=$(now)
    bash -c "$d" < "$tmp/z" > "$tmp/u"
    t2=$(now)
    size=$(stat -c %s "$tmp/z")
    if cmp -s "$tmp/u" "$f"; then ok=yes; else ok=NO; fi
    out=$(stat -c %s "$f")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(basename "$f")" "$out" "$name" "$size" \
        "$(echo "$t1 - $t0" | bc -l)" "$(echo "$t2 - $t1" | bc -l)" "$ok"
    rm -rf "$tmp"
}

bench_file() {
    local f=$1
    measure "qcx -6" "$f" "$QCX -c -6 -T1" "$QCX -dc -T1"
    if [ "$QCX_ONLY" -eq 0 ]; then
        measure "xz -9e" "$f" "xz -9e -T1 -c" "xz -dc"
        measure "zstd -19" "$f" "zstd -19 -q -c" "zstd -dq -c"
        measure "brotli -q 11" "$f" "brotli -q 11 -c" "brotli -dc"
        measure "bzip2 -9" "$f" "bzip2 -9 -c" "bzip2 -dc"
    fi
    if [ $MODES -eq 1 ] && [ "$(stat -c %s "$f")" -lt 10000000 ] &&
        [ "$(head -c 8192 "$f" | tr -d '\000' | wc -c)" -eq "$(head -c 8192 "$f" | wc -c)" ]; then
        for m in fib p5 none allpos; do
            measure "qcx --tiling=$m" "$f" "$QCX -c -6 -T1 --tiling=$m" "$QCX -dc -T1"
        done
    fi
}
export -f measure bench_file now
export QCX BENCH_DIR MODES QCX_ONLY

ROWS=$BENCH_DIR/rows.tsv
if [ $QCX_ONLY -eq 1 ]; then
    printf '%s\n' "${FILES[@]}" | xargs -P "$JOBS" -I{} bash -c 'bench_file "$1"' _ {} > "$ROWS.qcx"
    { grep -v "$(printf '\tqcx ')" "$ROWS" || true; cat "$ROWS.qcx"; } > "$ROWS.new"
    mv "$ROWS.new" "$ROWS"
elif [ $REPORT_ONLY -eq 0 ]; then
    printf '%s\n' "${FILES[@]}" | xargs -P "$JOBS" -I{} bash -c 'bench_file "$1"' _ {} > "$ROWS"
fi

# ---- report -------------------------------------------------------------------------
{
    echo "# Quasicryth (qcx) benchmark"
    echo
    echo "Made by \`$CMDLINE\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs"
    echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average"
    echo "$(cut -d' ' -f1-3 /proc/loadavg) at the end), qcx $("$QCX" -V | cut -d' ' -f3),"
    echo "$(xz --version | head -1), zstd $(zstd -V | grep -o 'v[0-9.]*'), $(brotli --version 2>&1 | head -1), bzip2 $(bzip2 --help 2>&1 | head -1 | grep -o 'Version [0-9.]*')."
    echo "Every measurement is one single-threaded run (\`-T1\` for qcx and xz), wall clock,"
    echo "MB = 10^6 bytes of the original; ratio = compressed / original. Round trips are compared"
    echo "byte for byte (column ok). Debian text: dict-gcide's \`gcide.dict\` and jargon-text's"
    echo "\`jargon.txt\`, fetched by the script with \`apt-get download\` + \`dpkg -x\`."
    echo
    awk -F'\t' -v modes=$MODES -f - "$ROWS" <<'AWK'
    BEGIN {   # the five tools of the comparison first, in this order
        nt = split("qcx -6|xz -9e|zstd -19|brotli -q 11|bzip2 -9", tools, "|")
        for (i = 1; i <= nt; i++) tseen[tools[i]] = 1
    }
    {
        key = $1; tool = $3
        if (!(key in seen)) { seen[key] = 1; order[++nf] = key; orig[key] = $2 }
        if (!(tool in tseen)) { tseen[tool] = 1; tools[++nt] = tool }
        size[key, tool] = $4; ct[key, tool] = $5; dt[key, tool] = $6; ok[key, tool] = $7
        if ($7 != "yes") bad++
    }
    function mbs(bytes, t) { return t > 0 ? sprintf("%.2f", bytes / 1e6 / t) : "-" }
    END {
        print "## Sizes (bytes) and ratios"
        print ""
        hdr = "| file | bytes |"; sep = "|---|---:|"
        for (i = 1; i <= nt; i++) { hdr = hdr " " tools[i] " |"; sep = sep "---:|" }
        print hdr; print sep
        for (j = 1; j <= nf; j++) {
            k = order[j]; line = "| " k " | " orig[k] " |"
            best = -1
            for (i = 1; i <= 5 && i <= nt; i++) {
                t = tools[i]
                if (((k, t) in size) && (best < 0 || size[k, t] < best)) best = size[k, t]
            }
            for (i = 1; i <= nt; i++) {
                t = tools[i]
                if (!((k, t) in size)) { line = line " – |"; continue }
                cell = sprintf("%d (%.2f%%)", size[k, t], 100 * size[k, t] / (orig[k] ? orig[k] : 1))
                if (i <= 5 && size[k, t] == best) cell = "**" cell "**"
                line = line " " cell " |"
                tot[t] += size[k, t]; totin[t] += orig[k]
            }
            print line
        }
        line = "| **total** | |"
        for (i = 1; i <= nt; i++) { t = tools[i]; line = line sprintf(" %d (%.2f%%) |", tot[t], 100 * tot[t] / totin[t]) }
        print line
        print ""
        print "## Speed (MB/s, compress / decompress)"
        print ""
        hdr = "| file |"; sep = "|---|"
        for (i = 1; i <= 5; i++) { hdr = hdr " " tools[i] " |"; sep = sep "---:|" }
        print hdr; print sep
        for (j = 1; j <= nf; j++) {
            k = order[j]; line = "| " k " |"
            for (i = 1; i <= 5; i++) {
                t = tools[i]
                line = line " " mbs(orig[k], ct[k, t]) " / " mbs(orig[k], dt[k, t]) " |"
                sct[t] += ct[k, t]; sdt[t] += dt[k, t]; sinp[t] += orig[k]
            }
            print line
        }
        line = "| **all files** |"
        for (i = 1; i <= 5; i++) { t = tools[i]; line = line " " mbs(sinp[t], sct[t]) " / " mbs(sinp[t], sdt[t]) " |" }
        print line
        print ""
        if (bad) print "**ROUND-TRIP FAILURES: " bad "** (column ok in " FILENAME ")"
        else print "All " NR " round trips were byte-exact."
    }
AWK
} > "$REPORT"
echo "bench_qcx: wrote $REPORT"
grep -q 'ROUND-TRIP FAILURES' "$REPORT" && exit 1
exit 0
