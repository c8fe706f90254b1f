#!/usr/bin/env bash
# gpu-check.sh — every CUDA check of issue 9 in one prepared run for a
# session that is lent a GPU (budget: under 8 minutes in all; each step
# has its own timeout and the whole run stops starting steps after
# BUDGET seconds).  Run from the repository root:
#
#   scripts/gpu-check.sh [OUTDIR]        OUTDIR defaults to $OUT, else gpu-out
#
# Steps (each one's output in OUTDIR/<step>.txt, one line per step in
# OUTDIR/summary.txt with its exit code and seconds):
#   env            nvidia-smi, nvcc --version, make info
#   build          make -j$JOBS all + tests/test_cuda (+ test_kernels)
#   test_cuda      the kernels against the CPU reference (exact / tolerance)
#   cli_device     tests/cli/bench_device.sh (the --device cuda CLI paths)
#   codecs_64M     kvq bench codecs --device cuda, 4096x4096 (64 MiB f32)
#   codecs_256M    the same at 8192x8192 (256 MiB: well past the L2 cache)
#   decode_*       kvq bench decode MODEL --device cuda, q8_0 and q4_0, for
#                  each model found (stories260K, llama-4.6M under $KVQ_DATA,
#                  default ../shared/data, or the paths in $MODELS)
#   memcheck       compute-sanitizer memcheck over test_cuda, if installed
# Environment: BUILD (default build-gpu), JOBS (16), BUDGET (450 s),
# KVQ_DATA (the shared data: golden/ and models/), MODELS (space-separated
# model paths), SKIP_BUILD=1 to use an existing $BUILD (e.g. one carried
# to the machine) without running make.
set -u
out=${1:-${OUT:-gpu-out}}
BUILD=${BUILD:-build-gpu}
JOBS=${JOBS:-16}
BUDGET=${BUDGET:-450}
DATA=${KVQ_DATA:-../shared/data}
MODELS=${MODELS:-"$DATA/models/stories260K/stories260K.bin $DATA/models/llama-4.6M/model.bin"}
export KVQ_DATA=$DATA   # test_cuda's golden files
# nvcc off PATH would make the Makefile build without CUDA: name it.
NVCC=${NVCC:-$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })}
mkdir -p "$out"
: >"$out/summary.txt"
SECONDS=0

log() { echo "$*" | tee -a "$out/summary.txt"; }

# step NAME LIMIT CMD...: runs CMD with a timeout of min(LIMIT, what is
# left of BUDGET), output to OUTDIR/NAME.txt.
step() {
  local name=$1 limit=$2 left=$((BUDGET - SECONDS)) t0=$SECONDS rc
  shift 2
  if [ "$left" -lt 10 ]; then log "$name: skipped (budget of ${BUDGET}s spent)"; return 1; fi
  [ "$limit" -gt "$left" ] && limit=$left
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  rc=$?
  log "$name: rc=$rc ($((SECONDS - t0))s, limit ${limit}s)"
  return $rc
}

[ -n "$NVCC" ] || log "warning: no nvcc found: the build will have no CUDA"
step env 30 bash -c "nvidia-smi; $NVCC --version; make BUILD=$BUILD NVCC=$NVCC info"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  step build 240 make BUILD="$BUILD" NVCC="$NVCC" -j"$JOBS" all "$BUILD/tests/test_cuda" "$BUILD/tests/test_kernels"
fi
if [ ! -x "$BUILD/kvq" ]; then log "no $BUILD/kvq: nothing to run (see build.txt)"; exit 1; fi
grep -q "CUDA      : yes" "$out/env.txt" || log "warning: make info does not report a CUDA build (env.txt)"

[ -x "$BUILD/tests/test_cuda" ] && step test_cuda 120 "$BUILD/tests/test_cuda"
step cli_device 90 env KVQ_BIN="$(cd "$BUILD" && pwd)/kvq" bash tests/cli/bench_device.sh
step codecs_64M 60 "$BUILD/kvq" bench codecs --device cuda --rows 4096 --cols 4096 --runs 20
step codecs_256M 90 "$BUILD/kvq" bench codecs --device cuda --rows 8192 --cols 8192 --runs 10
for m in $MODELS; do
  if [ ! -f "$m" ]; then log "decode: $m not found, skipped"; continue; fi
  tag=$(basename "$(dirname "$m")")
  for q in q8_0 q4_0; do
    step "decode_${tag}_$q" 45 "$BUILD/kvq" bench decode "$m" --device cuda --quant "$q" --reps 50
  done
done
if command -v compute-sanitizer >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  [ -x "$BUILD/tests/test_cuda" ] && step memcheck 120 "$cs" --tool memcheck --error-exitcode 3 "$BUILD/tests/test_cuda"
fi
log "total ${SECONDS}s; outputs in $out"
