#!/bin/sh
# docs/results/fp-nupes.md: kvq report grids for issue 4 (LLM-FP4 / NUPES) on both real models.
# usage: scripts/fp_nupes_report.sh [BUILD_DIR]   (writes /tmp/kvq-fp-report-{s260k,l46m}/)
set -e
B=${1:-build}
D=../shared/data
SPECS='w=rtn label=rtn-int4-g32;
w=q4_0 label=q4_0;
w=mxfp4 label=mxfp4;
w=nvfp4 label=nvfp4;
w=fp:search=none label=fp-e2m1-minmax-row;
w=fp label=fp-e2m1-paper-search-row;
w=fp:search=clip label=fp-e2m1-clip-search-row;
w=fp:fmt=auto4 label=fp-auto4-paper-search-row;
w=nupes:driven=0 label=nupes-datafree-g32;
w=nupes label=nupes-datadriven-g32;
w=rtn act=rtn:gran=row label=W4A4-rtn-int4-per-token;
w=fp act=fp label=W4A4-fp-e2m1-per-token;
w=fp act=fp:fmt=e4m3 label=W4A8-fp-e4m3-per-token;
w=mxfp4 act=mxfp4 label=W4A4-mxfp4'
$B/kvq report $D/models/stories260K/stories260K.bin --text $D/corpus/tinystories/TinyStories-valid-head30k.txt \
    --calib $D/corpus/tinystories/tinystories_sample.txt --calib-tokens 512 \
    --specs "$SPECS" --ctx 256 --chunks 8 --out /tmp/kvq-fp-report-s260k -f
$B/kvq report $D/models/llama-4.6M/model.bin --text $D/corpus/mixtext/valid.txt \
    --calib $D/corpus/canterbury_large/bible.txt --calib-tokens 512 \
    --specs "$SPECS" --ctx 256 --chunks 8 --out /tmp/kvq-fp-report-l46m -f
