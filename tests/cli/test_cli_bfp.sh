#!/usr/bin/env bash
# test_cli_bfp.sh — `kvq quantize --ksort/--sort-inputs` (libkvq/ksort.c)
# and the bfp codec from the command line: a K-sorted, input-sorted f32
# .kvq of llama-4.6M still prints llama2.c's greedy text; a bfp K cache
# runs in generate; GGUF refuses a K-sorted model; usage errors.
# Needs KVQ_BIN; the real-data cases skip when ../shared/data is absent.
set -u
KVQ=${KVQ_BIN:?KVQ_BIN not set}
DATA=${KVQ_DATA:-../shared/data}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
pass() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }

# usage errors need no data
if "$KVQ" quantize a.bin b.kvq --codec bfp --ksort norms >/dev/null 2>"$tmp/e"; then bad "bad --ksort key"
elif grep -q "weight or calib" "$tmp/e"; then pass "bad --ksort key"; else bad "bad --ksort key message"; fi
if "$KVQ" quantize a.bin b.kvq --codec bfp --ksort calib >/dev/null 2>"$tmp/e"; then bad "calib key without --calib"
elif grep -q "needs --calib" "$tmp/e"; then pass "calib key without --calib"; else bad "calib key message"; fi

L=$DATA/models/llama-4.6M
V=$DATA/corpus/mixtext/valid.txt
if [ -f "$L/model.bin" ] && [ -f "$V" ]; then
    if "$KVQ" quantize "$L/model.bin" "$tmp/s.kvq" --codec f32 --ksort calib --calib "$V" --calib-tokens 128 \
        --sort-inputs >"$tmp/q" 2>&1 && grep -q "^rearranged channels: K-sort by calibration K + FFN" "$tmp/q"; then
        pass "quantize --ksort calib --sort-inputs"
    else bad "quantize --ksort calib --sort-inputs"; tail -3 "$tmp/q"; fi
    if "$KVQ" generate "$tmp/s.kvq" -z "$L/tok512.bin" -t 0 -p "And God said" >"$tmp/g" 2>/dev/null &&
        cmp -s "$tmp/g" "$L/expected_greedy_t0_prompt.txt"; then pass "K-sorted model keeps its greedy text"
    else bad "K-sorted model keeps its greedy text"; fi
    if "$KVQ" generate "$tmp/s.kvq" -z "$L/tok512.bin" -t 0 -n 40 --kv-k bfp:mant=4,block=32 --kv-v bfp:mant=8 \
        >/dev/null 2>"$tmp/e" && grep -q "^kv cache: .* bits/value" "$tmp/e"; then pass "bfp K/V cache in generate"
    else bad "bfp K/V cache in generate"; head -3 "$tmp/e"; fi
    if "$KVQ" quantize "$L/model.bin" "$tmp/s.gguf" --codec q8_0 --ksort weight >/dev/null 2>"$tmp/e"; then
        bad "GGUF refuses a K-sorted model"
    elif grep -q "GGUF cannot express K-sorted" "$tmp/e" && [ ! -e "$tmp/s.gguf" ]; then pass "GGUF refuses a K-sorted model"
    else bad "GGUF refusal message"; cat "$tmp/e"; fi
    if "$KVQ" quantize "$L/model.bin" "$tmp/i.gguf" --codec q8_0 --sort-inputs >/dev/null 2>&1; then
        pass "input sorting exports to GGUF"
    else bad "input sorting exports to GGUF"; fi
    # report: a K-sorted, input-sorted f32 model scores KL 0 (to 6 decimals) against the base
    if "$KVQ" report "$L/model.bin" --text "$V" --ctx 64 --chunks 1 --out "$tmp/r" \
        --specs 'ksort=weight wsort=1; ksort=calib k=bfp:mant=4,block=32 calib='"$V"' calib_tokens=64' >"$tmp/o" 2>&1 &&
        grep -q "^ksort=weight wsort=1 .*mean KLD 0.000000 " "$tmp/o" && grep -q '"ksort": "calib"' "$tmp/r/report.json"; then
        pass "report ksort= wsort= items"
    else bad "report ksort= wsort= items"; tail -3 "$tmp/o"; fi
    # eval: the same through --ksort / --sort-inputs
    if "$KVQ" eval "$L/model.bin" --text "$V" --ctx 64 --chunks 1 --ksort weight --sort-inputs >"$tmp/o" 2>/dev/null &&
        grep -q "^Mean    KLD: *0.000000 " "$tmp/o"; then pass "eval --ksort --sort-inputs"
    else bad "eval --ksort --sort-inputs"; grep -i kld "$tmp/o" | head -2; fi
else
    echo "skip: $L/model.bin or $V absent"
fi
if "$KVQ" report x.bin --text x.txt --specs 'ksort=norms' >/dev/null 2>"$tmp/e"; then bad "report bad ksort"
elif grep -q "must be weight or calib" "$tmp/e"; then pass "report bad ksort"; else bad "report bad ksort message"; cat "$tmp/e"; fi
exit $fail
