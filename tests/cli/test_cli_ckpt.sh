#!/usr/bin/env bash
# test_cli_ckpt.sh — `kvq quantize | inspect | export` (issue 2 "Done when"):
# q4_0 quantization of stories260K to .kvq and GGUF whose blocks equal
# ggml's reference bytes, inspect on every input format and the outputs,
# overwrite refusal, and bad inputs (truncated, corrupted, absurd shapes)
# giving one error line naming the file, a non-zero exit and no output.
# Needs KVQ_BIN; the real-data cases skip when ../shared/data is absent.
set -u
KVQ=${KVQ_BIN:?KVQ_BIN not set}
DATA=${KVQ_DATA:-../shared/data}
S=$DATA/models/stories260K
G=$DATA/golden
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
pass() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }

# must_fail NAME FILE_NAMED OUT ARGS... : non-zero exit, exactly one stderr
# line that names FILE_NAMED, OUT not created, no temp file left beside it.
must_fail() {
    local name=$1 named=$2 out=$3
    shift 3
    if "$KVQ" "$@" >"$tmp/o" 2>"$tmp/e"; then bad "$name (exit 0)"; return; fi
    if [ "$(wc -l <"$tmp/e")" -ne 1 ] || ! grep -qF "$named" "$tmp/e"; then
        bad "$name (stderr)"; cat "$tmp/e"; return
    fi
    if [ -n "$out" ] && { [ -e "$out" ] || ls "$out".kvq-* >/dev/null 2>&1; }; then bad "$name (output left)"; return; fi
    pass "$name: $(cut -c1-110 "$tmp/e")"
}

if [ ! -f "$S/stories260K.bin" ] || [ ! -f "$G/stories260K.tok_embeddings.q4_0" ]; then
    echo "skipped: $S or $G not available (checkpoint CLI tests)"
    exit 0
fi

# ---- quantize to .kvq, export GGUF, compare q4_0 blocks with ggml's -------
if "$KVQ" quantize "$S/stories260K.bin" "$tmp/out.kvq" --codec q4_0 >"$tmp/q.txt" 2>"$tmp/q.err"; then
    pass "quantize .bin -> .kvq"
else
    bad "quantize .bin -> .kvq"; cat "$tmp/q.err"
fi
grep -qF "[  3/ 47] blk.0.attn_q.weight - [64, 64], f32 -> q4_0 .. 16.00 KiB -> 2.25 KiB, 4.500 bpw, SQNR " "$tmp/q.txt" &&
    grep -q "^quant size = " "$tmp/q.txt" && grep -q "^5 of 47 tensor(s) required fallback quantization" "$tmp/q.txt" &&
    pass "per-tensor lines and totals" || { bad "per-tensor lines and totals"; head -5 "$tmp/q.txt"; }
"$KVQ" export "$tmp/out.kvq" "$tmp/out.gguf" >/dev/null && pass "export .kvq -> GGUF" || bad "export .kvq -> GGUF"
"$KVQ" quantize "$S/stories260K.bin" "$tmp/direct.gguf" --codec q4_0 --threads 2 >/dev/null && pass "quantize -> GGUF" ||
    bad "quantize -> GGUF"
for f in out.kvq out.gguf direct.gguf; do
    for t in "token_embd.weight tok_embeddings" "blk.0.attn_q.weight layer0.wq"; do
        set -- $t
        rm -f "$tmp/blk"
        if "$KVQ" inspect "$tmp/$f" --tensor "$1" --dump "$tmp/blk" >/dev/null && cmp -s "$tmp/blk" "$G/stories260K.$2.q4_0"; then
            pass "$f $1 == ggml q4_0 bytes"
        else
            bad "$f $1 == ggml q4_0 bytes"
        fi
    done
done

# ---- inspect reads every input format and every output ----------------------
"$KVQ" export "$S/stories260K.bin" "$tmp/exp.safetensors" >/dev/null || bad "export safetensors"
check_inspect() {
    local file=$1 fmt=$2
    if "$KVQ" inspect "$file" >"$tmp/i" 2>&1 && grep -q "^format:    $fmt" "$tmp/i" && grep -q "^tensors: " "$tmp/i"; then
        pass "inspect $(basename "$file") ($fmt)"
    else
        bad "inspect $file"; head -3 "$tmp/i"
    fi
}
check_inspect "$S/stories260K.bin" "llama2.c version 0"
check_inspect "$S/stories260K-f32.gguf" "gguf version 1"
[ -f "$DATA/models/mamba2-2.9M/model.safetensors" ] && check_inspect "$DATA/models/mamba2-2.9M/model.safetensors" "safetensors"
check_inspect "$tmp/out.kvq" "kvq version 1"
check_inspect "$tmp/out.gguf" "gguf version 3"
check_inspect "$tmp/exp.safetensors" "safetensors"
"$KVQ" inspect "$S/stories260K-f32.gguf" --tensor blk.0.attn_q.weight >"$tmp/t" &&
    grep -q "^first:     0.0443927869 0.0797477067" "$tmp/t" && pass "inspect --tensor values" || bad "inspect --tensor values"

# ---- overwrite and bad inputs ------------------------------------------------
cp "$tmp/out.kvq" "$tmp/keep.kvq"
must_fail "refuse overwrite" "already exists" "" quantize "$S/stories260K.bin" "$tmp/out.kvq" --codec q4_0
cmp -s "$tmp/out.kvq" "$tmp/keep.kvq" && pass "existing output untouched" || bad "existing output untouched"
"$KVQ" quantize "$S/stories260K.bin" "$tmp/out.kvq" --codec q8_0 -f >/dev/null && ! cmp -s "$tmp/out.kvq" "$tmp/keep.kvq" &&
    pass "-f overwrites" || bad "-f overwrites"

head -c 100000 "$S/stories260K.bin" >"$tmp/trunc.bin"
must_fail "truncated .bin" "trunc.bin" "$tmp/x.kvq" quantize "$tmp/trunc.bin" "$tmp/x.kvq" --codec q4_0
head -c 5000 "$S/stories260K-f32.gguf" >"$tmp/trunc.gguf"
must_fail "truncated GGUF" "trunc.gguf" "$tmp/x.kvq" quantize "$tmp/trunc.gguf" "$tmp/x.kvq" --codec q4_0
head -c 700000 "$tmp/exp.safetensors" >"$tmp/trunc.safetensors"
must_fail "truncated safetensors" "trunc.safetensors" "$tmp/x.gguf" export "$tmp/trunc.safetensors" "$tmp/x.gguf"
head -c 3000 "$tmp/keep.kvq" >"$tmp/trunc.kvq"
must_fail "truncated .kvq" "trunc.kvq" "" inspect "$tmp/trunc.kvq"
cp "$S/stories260K-f32.gguf" "$tmp/bad.gguf"
printf '\x07' | dd of="$tmp/bad.gguf" bs=1 seek=4 conv=notrunc 2>/dev/null
must_fail "GGUF version 7" "bad.gguf" "$tmp/x.kvq" quantize "$tmp/bad.gguf" "$tmp/x.kvq" --codec q4_0
cp "$tmp/keep.kvq" "$tmp/flip.kvq"
printf '\x55' | dd of="$tmp/flip.kvq" bs=1 seek=20000 conv=notrunc 2>/dev/null
must_fail "corrupt .kvq data (CRC)" "flip.kvq" "$tmp/x.gguf" export "$tmp/flip.kvq" "$tmp/x.gguf"
cp "$S/stories260K.bin" "$tmp/absurd.bin"
printf '\x00\x00\x00\x40' | dd of="$tmp/absurd.bin" bs=1 seek=0 conv=notrunc 2>/dev/null
must_fail "absurd dim" "absurd.bin" "$tmp/x.kvq" quantize "$tmp/absurd.bin" "$tmp/x.kvq" --codec q4_0
must_fail "no such file" "nosuch.bin" "" inspect "$tmp/nosuch.bin"
must_fail "GGUF cannot hold rtn" "rtn" "$tmp/r.gguf" quantize "$S/stories260K.bin" "$tmp/r.gguf" --codec rtn:bits=3

if [ $fail -ne 0 ]; then echo "test_cli_ckpt: FAILED"; exit 1; fi
echo "test_cli_ckpt: all passed"
