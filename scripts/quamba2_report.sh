#!/bin/sh
# quamba2_report.sh — regenerate docs/results/quamba2.md: Quamba2 (W8A8,
# W4A8, W4A16 with and without sort-and-cluster / Hadamard / GPTQ, rtn
# baselines) on the trained Mamba-2 model, via `kvq report`, plus the
# measured recurrent-state bytes from `kvq generate`.
# Usage (from the project root, after `make all test`):
#     scripts/quamba2_report.sh   # KVQ_BIN=build/kvq, QUAMBA2_TEST=build/tests/test_quamba2
# Runtime: about 20 minutes on one core.  QUAMBA2_REPORT_DIR=DIR takes
# report.md and pareto.svg from a finished `kvq report ... --out DIR` of
# the same command instead of running it again.
set -eu
KVQ=${KVQ_BIN:-build/kvq}
TEST=${QUAMBA2_TEST:-build/tests/test_quamba2}
D=../shared/data
M=$D/models/mamba2-2.9M
OUT=docs/results/quamba2.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -n "${QUAMBA2_REPORT_DIR:-}" ]; then # reuse a finished run of the same command
    cp "$QUAMBA2_REPORT_DIR/report.md" "$QUAMBA2_REPORT_DIR/pareto.svg" "$tmp/"
else
    "$KVQ" report "$M/model.safetensors" -z "$M/tok512.bin" --text "$D/corpus/mixtext/valid.txt" \
        --ctx 256 --chunks 16 --specs scripts/quamba2_specs.txt \
        --calib "$D/corpus/canterbury/alice29.txt" --calib-tokens 2048 --out "$tmp" -f
fi

state() { # bytes of the recurrent state after a 64-token greedy run
    "$KVQ" generate "$M/model.safetensors" -z "$M/tok512.bin" -n 64 -t 0 -p "And God said" --kv-k "$1" \
        2>&1 >/dev/null | sed -n 's/^ssm state: \([0-9]*\) bytes.*/\1/p'
}
f32=$(state f32)
q8=$(state quamba2_state)
# static int8 state (per-layer calibrated quamba2 contexts, as kvq eval
# makes them): measured by test_quamba2's precision-map test
static=$("$TEST" 2>&1 | sed -n 's/.*state bytes \([0-9]*\) (f32.*/\1/p')

{
    echo "# Quamba2 on the trained Mamba-2 (mamba2-2.9M)"
    echo
    echo "Made by \`scripts/quamba2_report.sh\`, which runs:"
    echo
    echo '    kvq report ../shared/data/models/mamba2-2.9M/model.safetensors -z ../shared/data/models/mamba2-2.9M/tok512.bin \'
    echo '        --text ../shared/data/corpus/mixtext/valid.txt --ctx 256 --chunks 16 --specs scripts/quamba2_specs.txt \'
    echo '        --calib ../shared/data/corpus/canterbury/alice29.txt --calib-tokens 2048 --out DIR -f'
    echo '    kvq generate ... -n 64 -t 0 -p "And God said" --kv-k f32 | quamba2_state   # state bytes (stderr)'
    echo '    build/tests/test_quamba2   # static int8 state bytes (test_precision_map)'
    echo
    cat scripts/quamba2_notes.md
    echo
    echo "## Recurrent state (measured, all 6 layers; its size does not depend on the tokens seen)"
    echo
    echo "| state | bytes |"
    echo "|---|---:|"
    echo "| f32 (conv windows + SSM states) | $f32 |"
    echo "| SSM states in int8, dynamic scales (\`k=quamba2_state\`), conv windows f32 | $q8 |"
    echo "| SSM states in int8, static scales (\`act=quamba2\`, state=1), conv windows f32 | $static |"
    echo
    echo "The state does not grow with the sequence (no K/V cache), so the report's KV columns read 0."
    echo
    echo "## kvq report output"
    echo
    sed -e 's/^# kvq report/### kvq report/' -e 's/(pareto.svg)/(quamba2-pareto.svg)/' "$tmp/report.md"
} > "$OUT"
cp "$tmp/pareto.svg" docs/results/quamba2-pareto.svg
echo "wrote $OUT and docs/results/quamba2-pareto.svg"
