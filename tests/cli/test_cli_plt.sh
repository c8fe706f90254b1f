#!/usr/bin/env bash
# test_cli_plt.sh — `kvq plt`: usage errors exit 2; on stories260K (skipped
# without ../shared/data) `plt lossless` reports every plt page bit-identical
# to the f16/bf16 rounding with plt smaller than zstd -19 per page, and
# `plt prefix` skips the shared prompt (tokens computed) with identical logits.
set -u
KVQ=${KVQ_BIN:-build/kvq}
D=../shared/data
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; else echo "ok: $1"; fi; }

"$KVQ" plt >/dev/null 2>&1; rc=$?
check "no subcommand is a usage error" '[ $rc -eq 2 ]'
"$KVQ" plt lossless >/dev/null 2>&1; rc=$?
check "lossless without MODEL is a usage error" '[ $rc -eq 2 ]'
"$KVQ" plt prefix m.bin --text t.txt --seqs x >/dev/null 2>&1; rc=$?
check "bad number is a usage error" '[ $rc -eq 2 ]'
check "help names both subcommands" '"$KVQ" plt --help | grep -q "kvq plt lossless" && "$KVQ" plt --help | grep -q "kvq plt prefix"'
"$KVQ" plt lossless /nonexistent.bin --text /nonexistent.txt >/dev/null 2>&1; rc=$?
check "missing model fails" '[ $rc -eq 1 ]'

M=$D/models/stories260K
if [ ! -f "$M/stories260K.bin" ] || [ ! -f "$D/corpus/tinystories/TinyStories-valid-head30k.txt" ]; then
    echo "skip: $M or the TinyStories text absent"
    exit $fail
fi
args="$M/stories260K.bin -z $M/tok512.bin --text $D/corpus/tinystories/TinyStories-valid-head30k.txt"
out=$("$KVQ" plt lossless $args --tokens 512 --page 64 2>/dev/null); rc=$?
check "lossless exits 0" '[ $rc -eq 0 ]'
check "f16 pages bit-exact" 'grep -q "not bit-identical to the f16 rounding: 0$" <<<"$out"'
check "bf16 pages bit-exact" 'grep -q "not bit-identical to the bf16 rounding: 0$" <<<"$out"'
# K+V row: columns 4 (zstd-19 page) and 8 (plt rANS) as "N.NNNx (bytes)"
zp=$(grep -m1 "^| K+V" <<<"$out" | awk -F'|' '{gsub(/.*\(|\).*/, "", $5); print $5}')
pr=$(grep -m1 "^| K+V" <<<"$out" | awk -F'|' '{gsub(/.*\(|\).*/, "", $9); print $9}')
check "plt rANS < zstd -19 per page on f16 ($pr < $zp)" '[ -n "$pr" ] && [ -n "$zp" ] && [ "$pr" -lt "$zp" ]'
out=$("$KVQ" plt prefix $args --seqs 3 --prefix 32 --suffix 16 --page 16 2>/dev/null); rc=$?
check "prefix exits 0" '[ $rc -eq 0 ]'
check "shared prompt computed once (32 + 3x16 tokens)" 'grep -q "tokens computed: 80 of 144" <<<"$out"'
check "logits identical with the store" 'grep -q "identical with and without the store: yes" <<<"$out"'
exit $fail
