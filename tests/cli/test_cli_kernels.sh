#!/usr/bin/env bash
# test_cli_kernels.sh — the kernel table is chosen at run time (issue 9
# item 2): KVQ_SIMD=ref runs the complete scalar reference, and the
# default picks AVX2/FMA/F16C where the CPU has them.  With either table
# the q8_0/q4_0 bytes equal the in-run ggml reference quantizer, every
# fixed-grid codec with row kernels (rtn, bfp, mxint8) encodes and
# decodes, and the decoder generates with q4_0 weights (fused products,
# or row dequantization on the reference table).
set -u
KVQ=${KVQ_BIN:-build/kvq}
MODEL=../shared/data/models/stories260K/stories260K.bin
SPECS=(--codec q8_0 --codec q4_0 --codec rtn:bits=4 --codec rtn:bits=3,mode=asym --codec bfp --codec mxint8)
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; else echo "ok: $1"; fi; }

have_avx2=0
grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo && have_avx2=1

for simd in ref default; do
  if [ $simd = ref ]; then want=ref; else want=$([ $have_avx2 = 1 ] && echo avx2 || echo ref); fi
  out=$(if [ $simd = ref ]; then KVQ_SIMD=ref "$KVQ" bench codecs "${SPECS[@]}" --rows 8 --cols 256 --seconds 0 --runs 1
        else env -u KVQ_SIMD "$KVQ" bench codecs "${SPECS[@]}" --rows 8 --cols 256 --seconds 0 --runs 1; fi 2>&1)
  rc=$?
  check "$simd: bench codecs runs" '[ $rc -eq 0 ]'
  check "$simd: table is $want" 'grep -q "^kernels: $want" <<<"$out"'
  check "$simd: q8_0/q4_0 bytes equal ggml's reference" \
        '[ $(grep -Ec "^q[48]_0 .*× ggml-ref" <<<"$out") -eq 2 ] && ! grep -q "BYTES DIFFER" <<<"$out"'
  check "$simd: rtn, bfp, mxint8 rows" '[ $(grep -Ec "^(rtn|bfp|mxint8)" <<<"$out") -eq 4 ]'
  if [ -f "$MODEL" ]; then
    out=$(if [ $simd = ref ]; then KVQ_SIMD=ref "$KVQ" bench decode "$MODEL" -n 16 --reps 1
          else env -u KVQ_SIMD "$KVQ" bench decode "$MODEL" -n 16 --reps 1; fi 2>&1)
    rc=$?
    check "$simd: bench decode with q4_0 weights" \
          '[ $rc -eq 0 ] && grep -Eq "^q4_0 .*tok/s generation \(kernels: $want\)" <<<"$out"'
  else
    echo "SKIP: $MODEL absent: no decode check"
  fi
done
exit $fail
