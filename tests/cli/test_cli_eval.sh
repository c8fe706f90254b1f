#!/usr/bin/env bash
# test_cli_eval.sh — `kvq eval` and `kvq report` on real data (issue 3 "Done
# when"): f32 vs f32 KL exactly 0; q8_0 weights give lower KL than q4_0; an
# 8-bit RTN K/V cache gives mean KL < 1e-3 on stories260K over TinyStories;
# an f32 cache with pages and a window gives bit-identical logits (KL 0,
# same PPL digits) to the unpaged cache; the report writes valid JSON and
# an SVG that rasterizes; usage and input errors exit 2 / 1 with a message.
# Needs KVQ_BIN; skips when ../shared/data is absent.
set -u
KVQ=${KVQ_BIN:?KVQ_BIN not set}
DATA=${KVQ_DATA:-../shared/data}
M=$DATA/models/stories260K/stories260K.bin
TEXT=$DATA/corpus/tinystories/TinyStories-valid-head30k.txt
CHUNKS=4          # 4 chunks of 512 tokens: 1020 scored tokens per run
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
pass() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }

if [ ! -f "$M" ] || [ ! -f "$TEXT" ]; then
    echo "skipped: $M or $TEXT not available (eval CLI tests)"
    exit 0
fi

# json_field FILE GROUP KEY: the number after "KEY": inside "GROUP": {...}.
json_field() {
    sed -n "s/.*\"$2\": {[^}]*\"$3\": \([-0-9.e+]*\).*/\1/p" "$1" | head -n 1
}

# run_eval NAME ARGS... : kvq eval --json into $tmp/NAME.json
run_eval() {
    local name=$1
    shift
    if ! "$KVQ" eval "$M" --text "$TEXT" --chunks $CHUNKS --json "$@" >"$tmp/$name.json" 2>"$tmp/$name.err"; then
        bad "eval $name: $(head -c 300 "$tmp/$name.err")"
        return 1
    fi
}

# ---- f32 vs f32: KL exactly 0 ------------------------------------------------
if run_eval f32; then
    k=$(json_field "$tmp/f32.json" kld mean) kmax=$(json_field "$tmp/f32.json" kld max)
    top=$(json_field "$tmp/f32.json" same_top value)
    if [ "$k" = "0" ] && [ "$kmax" = "0" ] && [ "$top" = "1" ]; then
        pass "f32 vs f32: mean KLD $k, max $kmax, same top $top"
    else
        bad "f32 vs f32: mean KLD '$k' max '$kmax' same top '$top'"
    fi
fi

# ---- paged f32 cache: bit-identical logits -----------------------------------
if run_eval paged --kv-k f32 --kv-v f32 --kv-window 5 --kv-page 7; then
    k=$(json_field "$tmp/paged.json" kld max)
    p1=$(json_field "$tmp/f32.json" ppl q) p2=$(json_field "$tmp/paged.json" ppl q)
    if [ "$k" = "0" ] && [ -n "$p1" ] && [ "$p1" = "$p2" ]; then
        pass "paged f32 cache (W=5, P=7): max KLD 0, PPL $p2 = $p1"
    else
        bad "paged f32 cache: max KLD '$k', PPL '$p2' vs '$p1'"
    fi
fi

# ---- q8_0 weights beat q4_0 --------------------------------------------------
if run_eval q8 --codec q8_0 && run_eval q4 --codec q4_0; then
    k8=$(json_field "$tmp/q8.json" kld mean) k4=$(json_field "$tmp/q4.json" kld mean)
    if awk -v a="$k8" -v b="$k4" 'BEGIN { exit !(a > 0 && a < b) }'; then
        pass "weights: q8_0 mean KLD $k8 < q4_0 $k4"
    else
        bad "weights: q8_0 mean KLD '$k8' vs q4_0 '$k4'"
    fi
fi

# ---- 8-bit RTN K/V cache: mean KL < 1e-3 --------------------------------------
if run_eval kv8 --kv-k rtn:bits=8 --kv-v rtn:bits=8; then
    k=$(json_field "$tmp/kv8.json" kld mean) r=$(json_field "$tmp/kv8.json" kv ratio_vs_f32)
    if awk -v a="$k" 'BEGIN { exit !(a > 0 && a < 1e-3) }'; then
        pass "8-bit rtn K/V cache: mean KLD $k < 1e-3 (KV ratio vs f32 $r)"
    else
        bad "8-bit rtn K/V cache: mean KLD '$k'"
    fi
fi


# ---- a tensor rule whose spec holds '=' (REGEX=SPEC split before the codec) ----
rule='blk\.0\.attn_(q|k)\.weight=rtn:bits=8,gran=tensor'
if "$KVQ" report "$M" --text "$TEXT" --chunks 1 --out "$tmp/rule" --specs "tensor=$rule" >/dev/null 2>"$tmp/rule.err" &&
    grep -q 'rtn:bits=8,gran=tensor' "$tmp/rule/report.json"; then
    pass "report: tensor rule with a parameterised spec"
else
    bad "report: tensor rule '$rule': $(head -c 300 "$tmp/rule.err")"
fi
if "$KVQ" report "$M" --text "$TEXT" --chunks 1 --out "$tmp/rule2" --specs 'tensor=attn=nosuchcodec:bits=8' \
    >/dev/null 2>"$tmp/rule2.err"; then
    bad "report: unknown codec in a tensor rule accepted"
elif grep -q "nosuchcodec" "$tmp/rule2.err"; then
    pass "report: unknown codec in a tensor rule refused by name"
else
    bad "report: unknown-codec message: $(head -c 300 "$tmp/rule2.err")"
fi
# ---- the text block ------------------------------------------------------------
if "$KVQ" eval "$M" --text "$TEXT" --chunks 1 --codec q8_0 >"$tmp/block.txt" 2>"$tmp/block.err" &&
    grep -q "^Mean PPL(Q)                   :" "$tmp/block.txt" &&
    grep -q "^Mean    KLD:" "$tmp/block.txt" && grep -q "^99.9%   KLD:" "$tmp/block.txt" &&
    grep -q "^Same top p:" "$tmp/block.txt" && grep -q "^RMS Δp    :" "$tmp/block.txt"; then
    pass "llama-perplexity-style block printed"
else
    bad "text block"; cat "$tmp/block.txt" "$tmp/block.err"
fi

# ---- kvq report ------------------------------------------------------------------
specs='w=q8_0; w=q4_0; kv=rtn:bits=8; k=rtn:bits=8 v=rtn:bits=4 label=K8V4'
if "$KVQ" report "$M" --text "$TEXT" --chunks 2 --out "$tmp/rep" --specs "$specs" >"$tmp/rep.out" 2>"$tmp/rep.err"; then
    ok=1
    for f in report.md report.json pareto.svg; do [ -s "$tmp/rep/$f" ] || ok=0; done
    grep -q '"schema": "kvq.report/1"' "$tmp/rep/report.json" || ok=0
    [ "$(grep -c '"label":' "$tmp/rep/report.json")" -eq 4 ] || ok=0
    grep -q '<polyline' "$tmp/rep/pareto.svg" || ok=0
    if command -v jq >/dev/null; then
        jq empty "$tmp/rep/report.json" || ok=0
    fi
    if command -v rsvg-convert >/dev/null; then
        rsvg-convert "$tmp/rep/pareto.svg" -o "$tmp/rep/pareto.png" && [ -s "$tmp/rep/pareto.png" ] || ok=0
    fi
    if [ $ok -eq 1 ]; then pass "report: md, json (valid), svg (rasterizes)"; else bad "report outputs"; fi
else
    bad "report: $(cat "$tmp/rep.err")"
fi
if "$KVQ" report "$M" --text "$TEXT" --chunks 1 --out "$tmp/rep" --specs 'w=q8_0' >/dev/null 2>"$tmp/e"; then
    bad "report overwrote without -f"
elif grep -q "use -f" "$tmp/e"; then
    pass "report refuses to overwrite: $(cat "$tmp/e")"
else
    bad "report overwrite message: $(cat "$tmp/e")"
fi

# ---- errors ------------------------------------------------------------------------
"$KVQ" eval "$M" >/dev/null 2>"$tmp/e"
[ $? -eq 2 ] && grep -q -- "--text" "$tmp/e" && pass "eval without --text: usage error" || bad "eval without --text"
"$KVQ" eval "$M" --text "$tmp/none.txt" >/dev/null 2>"$tmp/e"
[ $? -eq 1 ] && grep -q "none.txt" "$tmp/e" && pass "eval on a missing text: $(cat "$tmp/e")" || bad "missing text"
"$KVQ" eval "$M" --text "$TEXT" --kv-k nosuch >/dev/null 2>"$tmp/e"
[ $? -eq 2 ] && grep -q "nosuch" "$tmp/e" && pass "unknown KV codec: $(head -n 1 "$tmp/e")" || bad "unknown KV codec: $(cat "$tmp/e")"
"$KVQ" eval "$M" --text "$TEXT" --kv-k q8_0 --kv-v q8_0 --chunks 1 >/dev/null 2>"$tmp/e"
[ $? -eq 1 ] && grep -q "KV cache layer 0, K page 0" "$tmp/e" && pass "KV codec rejecting head_size 8: $(cut -c1-150 "$tmp/e")" ||
    bad "q8_0 on 8-wide heads: $(cat "$tmp/e")"
"$KVQ" report "$M" --text "$TEXT" --specs 'w=q8_0 bogus' --out "$tmp/r2" >/dev/null 2>"$tmp/e"
[ $? -eq 2 ] && grep -q "bogus" "$tmp/e" && pass "bad spec line: usage error" || bad "bad spec line: $(cat "$tmp/e")"

[ $fail -eq 0 ] && echo "test_cli_eval: all passed" || echo "test_cli_eval: FAILED"
exit $fail
