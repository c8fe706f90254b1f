#!/bin/sh
# docs/results/fp-nupes.md: kvq report grids for issue 4 (LLM-FP4 / NUPES) on both real models.
# usage: scripts/fp_nupes_report.sh [BUILD_DIR] [OUT_DIR]
#   writes OUT_DIR/{l46m,s260k}/report.{md,json} + pareto.svg (OUT_DIR default /tmp/kvq-fp-report)
# Calibration text is disjoint from the evaluation text: llama-4.6M calibrates on the start of the
# King James Bible (its training text; valid.txt holds the last 5%), stories260K on the TinyStories
# sample (evaluation: the validation head).  512 calibration tokens per linear input.
# The 3rounds rows (LLM-FP4's alternating W/A search, quant/fp_joint.c) were added later and
# measured by scripts/fp_nupes_rounds.sh, which reruns only them beside their one-round rows.
set -e
B=${1:-build}
O=${2:-/tmp/kvq-fp-report}
D=../shared/data
SPECS='w=rtn:gran=row label=rtn-int4-row;
w=rtn label=rtn-int4-g32;
w=q4_0 label=q4_0;
w=mxfp4 label=mxfp4;
w=nvfp4 label=nvfp4;
w=fp:search=none label=fp-e2m1-minmax-row;
w=fp label=fp-e2m1-paper-row;
w=fp:search=clip label=fp-e2m1-clip-row;
w=fp:fmt=auto4 label=fp-auto4-paper-row;
w=fp:gran=group label=fp-e2m1-paper-g32;
w=nupes:driven=0 label=nupes-datafree-g32;
w=nupes label=nupes-datadriven-g32;
w=rtn:gran=row act=rtn:gran=row label=W4A4-rtn-row-dyn-token;
w=fp act=fp label=W4A4-fp-dyn-token;
w=fp act=fpa:pershift=0 label=W4A4-fp-static-tensor-bias;
w=fp act=fpa label=W4A4-fp-static-preshifted;
w=fp act=fpa:fmt=e4m3,pershift=0 label=W4A8-fp-static-tensor-bias;
w=fp act=fpa:fmt=e4m3 label=W4A8-fp-static-preshifted;
w=fp:rounds=3 act=fpa:pershift=0 label=W4A4-fp-3rounds-tensor-bias;
w=fp:rounds=3 act=fpa label=W4A4-fp-3rounds-preshifted;
w=fp:rounds=3 act=fpa:fmt=e4m3 label=W4A8-fp-3rounds-preshifted'
mkdir -p "$O"
$B/kvq report $D/models/llama-4.6M/model.bin --text $D/corpus/mixtext/valid.txt \
    --calib $D/corpus/canterbury_large/bible.txt --calib-tokens 512 \
    --specs "$SPECS" --ctx 256 --chunks 8 --out "$O/l46m" -f
$B/kvq report $D/models/stories260K/stories260K.bin --text $D/corpus/tinystories/TinyStories-valid-head30k.txt \
    --calib $D/corpus/tinystories/tinystories_sample.txt --calib-tokens 512 \
    --specs "$SPECS" --ctx 256 --chunks 8 --out "$O/s260k" -f
