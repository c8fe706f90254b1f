#!/usr/bin/env bash
# test_cli_generate.sh — `kvq generate` must print exactly llama2.c run.c's
# stdout (greedy, -t 0) for stories260K (.bin and GGUF) and llama-4.6M
# (empty prompt and "And God said"); plus usage and bad-input errors.
# Needs KVQ_BIN; the real-data cases skip when ../shared/data is absent.
set -u
KVQ=${KVQ_BIN:?KVQ_BIN not set}
DATA=${KVQ_DATA:-../shared/data}/models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
pass() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }

# same_output NAME EXPECTED_FILE ARGS... : stdout must equal the file byte for byte
same_output() {
    local name=$1 exp=$2
    shift 2
    if "$KVQ" generate "$@" >"$tmp/out" 2>"$tmp/err" && cmp -s "$tmp/out" "$exp"; then
        pass "$name"
    else
        bad "$name"; cmp "$tmp/out" "$exp"; head -3 "$tmp/err"
    fi
}

S=$DATA/stories260K
L=$DATA/llama-4.6M
if [ -f "$S/stories260K.bin" ] && [ -f "$L/model.bin" ]; then
    same_output "stories260K greedy" "$S/expected_greedy_t0.txt" "$S/stories260K.bin" -z "$S/tok512.bin" -t 0
    same_output "stories260K GGUF greedy" "$S/expected_greedy_t0.txt" "$S/stories260K-f32.gguf" -z "$S/tok512.bin" -t 0
    same_output "stories260K GGUF embedded tokenizer" "$S/expected_greedy_t0.txt" "$S/stories260K-f32.gguf" -t 0
    same_output "stories260K 2 threads" "$S/expected_greedy_t0.txt" "$S/stories260K.bin" -z "$S/tok512.bin" -t 0 --threads 2
    same_output "llama-4.6M greedy" "$L/expected_greedy_t0.txt" "$L/model.bin" -z "$L/tok512.bin" -t 0
    same_output "llama-4.6M greedy prompt" "$L/expected_greedy_t0_prompt.txt" "$L/model.bin" -z "$L/tok512.bin" -t 0 -p "And God said"
    # an f32 cache with pages and a window changes nothing
    same_output "stories260K paged f32 cache" "$S/expected_greedy_t0.txt" "$S/stories260K.bin" -z "$S/tok512.bin" -t 0 --kv-k f32 --kv-v f32 --kv-window 8 --kv-page 4
    if grep -q "^kv cache: .* bits/value" "$tmp/err"; then pass "kv stats on stderr"; else bad "kv stats on stderr"; fi
    # the tok/s line goes to stderr, never stdout
    "$KVQ" generate "$S/stories260K.bin" -z "$S/tok512.bin" -t 0 -n 20 >"$tmp/o" 2>"$tmp/e"
    if grep -q "^achieved tok/s: " "$tmp/e" && ! grep -q "achieved" "$tmp/o"; then pass "tok/s on stderr"; else bad "tok/s on stderr"; fi
    # -n 20 prints a prefix of the 256-step text, then the newline
    n=$(($(wc -c <"$tmp/o") - 1))
    if [ "$n" -gt 20 ] && cmp -s <(head -c "$n" "$tmp/o") <(head -c "$n" "$S/expected_greedy_t0.txt"); then
        pass "-n 20 prefix"; else bad "-n 20 prefix"; fi
    # sampling is reproducible with a seed
    "$KVQ" generate "$S/stories260K.bin" -z "$S/tok512.bin" -t 1 --seed 7 -n 60 >"$tmp/a" 2>/dev/null
    "$KVQ" generate "$S/stories260K.bin" -z "$S/tok512.bin" -t 1 --seed 7 -n 60 >"$tmp/b" 2>/dev/null
    "$KVQ" generate "$S/stories260K.bin" -z "$S/tok512.bin" -t 1 --seed 8 -n 60 >"$tmp/c" 2>/dev/null
    if cmp -s "$tmp/a" "$tmp/b" && ! cmp -s "$tmp/a" "$tmp/c"; then pass "seeded sampling"; else bad "seeded sampling"; fi
    # q8_0 weights (dequantized row block by row block): .kvq and GGUF agree,
    # and the forced prompt is echoed first
    "$KVQ" quantize "$L/model.bin" "$tmp/q8.kvq" --codec q8_0 --tokenizer "$L/tok512.bin" >/dev/null 2>&1
    "$KVQ" quantize "$L/model.bin" "$tmp/q8.gguf" --codec q8_0 --tokenizer "$L/tok512.bin" >/dev/null 2>&1
    "$KVQ" generate "$tmp/q8.kvq" -t 0 -p "And God said" -n 40 >"$tmp/k" 2>/dev/null
    "$KVQ" generate "$tmp/q8.gguf" -t 0 -p "And God said" -n 40 >"$tmp/g" 2>/dev/null
    if [ -s "$tmp/k" ] && cmp -s "$tmp/k" "$tmp/g" && [ "$(head -c 12 "$tmp/k")" = "And God said" ]; then
        pass "q8_0 .kvq == GGUF"; else bad "q8_0 .kvq == GGUF"; fi
else
    echo "skipped: $S or $L not available (real-data generate tests)"
fi

# usage and errors: exit 2 for usage, 1 for bad input with the file named
"$KVQ" generate >/dev/null 2>&1; [ $? -eq 2 ] && pass "no model: usage" || bad "no model: usage"
"$KVQ" generate x.bin --bogus 1 >/dev/null 2>&1; [ $? -eq 2 ] && pass "unknown option" || bad "unknown option"
"$KVQ" generate "$tmp/missing.bin" -t 0 >/dev/null 2>"$tmp/e"; rc=$?
if [ $rc -eq 1 ] && grep -q "missing.bin" "$tmp/e"; then pass "missing model"; else bad "missing model"; fi
head -c 1000 /dev/urandom >"$tmp/junk.bin"
"$KVQ" generate "$tmp/junk.bin" -t 0 >/dev/null 2>"$tmp/e"; rc=$?
if [ $rc -eq 1 ] && grep -q "junk.bin" "$tmp/e"; then pass "junk model"; else bad "junk model"; fi
"$KVQ" generate --help | grep -q "usage: kvq generate" && pass "help" || bad "help"
exit $fail
