#!/usr/bin/env bash
# bench_device.sh — `kvq bench codecs|decode --device cuda` (issue 9).
# Without a CUDA build or a GPU both exit 1 with a message naming CUDA
# (checked here on every CPU-only machine); with a GPU the codecs table
# has a row per device format whose bytes and floats equal the CPU
# codec's, and decode prints tok/s for f32 and q4_0 weights.  Bad
# --device values are usage errors (2), and --device cpu keeps the CPU
# bench's table.
set -u
KVQ=${KVQ_BIN:-build/kvq}
MODEL=../shared/data/models/stories260K/stories260K.bin
fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; else echo "ok: $1"; fi; }

"$KVQ" bench codecs --device gpu --rows 4 --cols 64 >/dev/null 2>"$tmp/err"; rc=$?
check "codecs --device gpu is a usage error" '[ $rc -eq 2 ] && grep -q "cpu or cuda" "$tmp/err"'
"$KVQ" bench decode model.bin --device >/dev/null 2>&1; rc=$?
check "decode --device without a value is a usage error" '[ $rc -eq 2 ]'
out=$("$KVQ" bench codecs --device cpu --rows 8 --cols 64 --seconds 0 --runs 1 --codec q8_0 2>&1); rc=$?
check "codecs --device cpu is the CPU bench" '[ $rc -eq 0 ] && grep -Eq "^q8_0 +8\.500 .*× ggml-ref" <<<"$out"'
check "codecs --help names --device" '"$KVQ" bench codecs --help | grep -q -- "--device cpu|cuda"'

out=$("$KVQ" bench codecs --device cuda --rows 64 --cols 256 --runs 2 2>&1); rc=$?
if [ $rc -eq 1 ] && grep -Eq "no CUDA device|built without CUDA" <<<"$out"; then
  echo "no GPU here: $out"
  check "codecs --device cuda says why and exits 1" 'grep -q "kvq: bench codecs --device cuda: unsupported" <<<"$out"'
  "$KVQ" bench decode nosuch.bin --device cuda >/dev/null 2>"$tmp/err"; rc=$?
  check "decode --device cuda says why (before loading) and exits 1" \
        '[ $rc -eq 1 ] && grep -Eq "no CUDA device|built without CUDA" "$tmp/err" && ! grep -q nosuch "$tmp/err"'
else
  check "codecs --device cuda exits 0 on a GPU" '[ $rc -eq 0 ]'
  for c in q8_0 q4_0 mxfp4 nvfp4; do
    check "$c device row, equal to the CPU codec" 'grep -Eq "^$c .*bytes and floats equal$" <<<"$out"'
  done
  check "copy bandwidth column" 'grep -q "copy-moved" <<<"$out"'
  if [ -f "$MODEL" ]; then
    out=$("$KVQ" bench decode "$MODEL" --device cuda --reps 3 2>&1); rc=$?
    check "decode --device cuda exits 0" '[ $rc -eq 0 ]'
    check "decode prints f32 and q4_0 tok/s" 'grep -q "^f32 .*tok/s" <<<"$out" && grep -q "^q4_0 .*tok/s" <<<"$out"'
  else
    echo "skip: $MODEL not found (decode on the device not checked)"
  fi
fi
exit $fail
