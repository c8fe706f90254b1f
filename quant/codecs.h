/*
 * codecs.h — the descriptors of every codec, for registry.c (and tests).
 * Each codec file exports exactly its descriptor(s); ids are in FORMAT.md §3.
 */
#ifndef KVQ_QUANT_CODECS_H
#define KVQ_QUANT_CODECS_H

#include "kvq.h"

/* quant/float.c : plain IEEE storage (ids 1-3) */
extern const kvq_codec kvq_codec_f32;
extern const kvq_codec kvq_codec_f16;
extern const kvq_codec kvq_codec_bf16;

/* quant/rtn.c : round-to-nearest integer baseline (id 10) */
extern const kvq_codec kvq_codec_rtn;

/* quant/ggml.c : ggml block layouts, byte-exact (ids 20-21) */
extern const kvq_codec kvq_codec_q8_0;
extern const kvq_codec kvq_codec_q4_0;

/* quant/bfp.c : block floating point and its OCP MXINT8 preset (ids 40-41) */
extern const kvq_codec kvq_codec_bfp;
extern const kvq_codec kvq_codec_mxint8;

/* quant/kivi.c : KIVI per-channel keys / per-token values (id 50) */
extern const kvq_codec kvq_codec_kivi;
/* compress/gear.c : GEAR quantized backbone + sparse + low rank (id 51) */
extern const kvq_codec kvq_codec_gear;
/* compress/plt.c : PLT lossless page coder and closed-loop DPCM (ids 60-61) */
extern const kvq_codec kvq_codec_plt;
extern const kvq_codec kvq_codec_pltq;

/* quant/quamba2.c : Quamba2 static int8 activations (id 70) */
extern const kvq_codec kvq_codec_quamba2;
/* quant/quamba2.c : Quamba2 int8 SSM state (id 72) */
extern const kvq_codec kvq_codec_quamba2_state;
/* quant/gptq.c : GPTQ b-bit group weights (id 71) */
extern const kvq_codec kvq_codec_gptq;

/* quant/fp.c, fp_act.c, fp_mx.c : LLM-FP4 family (ids 30-31) and OCP/ggml FP4 (ids 32-33) */
extern const kvq_codec kvq_codec_fp;
extern const kvq_codec kvq_codec_fpa;
extern const kvq_codec kvq_codec_mxfp4;
extern const kvq_codec kvq_codec_nvfp4;

/* quant/nupes.c : power-exponent non-uniform quantizer (id 34) */
extern const kvq_codec kvq_codec_nupes;

#endif
