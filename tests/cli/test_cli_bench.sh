#!/usr/bin/env bash
# test_cli_bench.sh — `kvq bench codecs` on a small tensor: the table is
# printed for the requested codecs, our q8_0/q4_0 bytes equal the in-run
# ggml reference (no "BYTES DIFFER"), bad options exit 2, and `kvq bench`
# lists its sub-benchmarks.
set -u
KVQ=${KVQ_BIN:-build/kvq}
fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; else echo "ok: $1"; fi; }

out=$("$KVQ" bench codecs --rows 64 --cols 256 --seconds 0 --runs 3 --codec q8_0 --codec q4_0 \
      --codec rtn:bits=3,mode=asym 2>&1); rc=$?
check "bench codecs exits 0" '[ $rc -eq 0 ]'
check "header names the tensor" 'grep -q "64 x 256 f32" <<<"$out"'
check "q8_0 row with ratio" 'grep -Eq "^q8_0 +8\.500 .*× ggml-ref" <<<"$out"'
check "q4_0 row with ratio" 'grep -Eq "^q4_0 +4\.500 .*× ggml-ref" <<<"$out"'
check "rtn 3-bit asym row (12 B codes + 4 B d,z per 32)" 'grep -Eq "^rtn:bits=3,mode=asym +4\.000 " <<<"$out"'
check "bytes equal ggml-ref" '! grep -q "BYTES DIFFER" <<<"$out"'

"$KVQ" bench codecs --rows 0 >/dev/null 2>&1; rc=$?
check "--rows 0 is a usage error" '[ $rc -eq 2 ]'
"$KVQ" bench codecs --codec nosuch --rows 4 --cols 32 --seconds 0 --runs 1 >/dev/null 2>"$tmp/err"; rc=$?
check "unknown codec fails with a message" '[ $rc -eq 1 ] && grep -q "unknown codec" "$tmp/err"'
"$KVQ" bench nosuch >/dev/null 2>&1; rc=$?
check "unknown benchmark is a usage error" '[ $rc -eq 2 ]'
check "bench --help lists codecs and decode" '"$KVQ" bench --help | grep -q "^  codecs" && "$KVQ" bench --help | grep -q "^  decode"'
exit $fail
