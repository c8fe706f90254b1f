/*
 * ref.c — the scalar reference kernels: every slot of kernels.h, written
 * once (issue 9 item 1; quant-methods.md §6.1 for the ggml block rules).
 *
 * The ggml quantizers keep ggml's reference arithmetic exactly (the golden
 * files in ../shared/data/golden were made by quantize_row_q*_0_ref and
 * tests/test_codecs.c compares bytes):
 *   Q8_0: d = amax/127 (f32); id = d ? 1/d : 0; q = roundf(x·id) (RHA).
 *   Q4_0: max = signed value of the first element of largest magnitude;
 *         d = max/−8; id = d ? 1/d : 0; q = min(15, (int8)(x·id + 8.5)).
 *   Both store d rounded to f16 (RNE) but quantise with the f32 d.
 * Where ggml is undefined (1/d overflows for a block of subnormal inputs;
 * an f32-subnormal d whose x·id leaves int8) we store what x86 ggml
 * builds store: code 0, wrapped q8_0 codes, Q4_0 codes saturated at 15.
 * The f16 scale of such a block is 0, so it decodes to zeros either way.
 * The per-block loops have a constant trip count of 32 and no branches,
 * so gcc -O2 vectorises them with the baseline ISA; x·id + 8.5 is two
 * statements so nothing contracts it into an FMA.
 */
#include "kernels/kernels.h"
#include "kvq_internal.h"
#include "quant/quant_common.h"

#include <float.h>

#define Q8_0_QMAX     127.0f  /* (1 << 7) − 1: largest |q| of Q8_0           */
#define Q4_0_DIV      (-8.0f) /* Q4_0: d = max / −8, so max maps to code 0    */
#define Q4_0_OFFSET   8.5f    /* Q4_0: code = trunc(x·id + 8.5) = RHA + 8     */
#define Q4_0_CODE_MAX 15      /* largest 4-bit code                           */
#define Q4_0_ZERO     8       /* code of the value 0                          */
#define HALF          (KVQ_QK / 2)

size_t kvq_kern_block_bytes(kvq_kt t)
{
    return t == KVQ_KT_Q8_0 ? KVQ_Q8_0_BYTES : t == KVQ_KT_Q4_0 ? KVQ_Q4_0_BYTES : 0;
}

size_t kvq_kern_bad_scale(kvq_kt t, const uint8_t *blocks, size_t nb)
{
    size_t bb = kvq_kern_block_bytes(t);
    for (size_t b = 0; b < nb; b++)
        if ((kvq_rd16(blocks + b * bb) & KVQ_F16_EXP_MASK) == KVQ_F16_EXP_MASK) return b;
    return nb;
}

/* 1/d as ggml computes it; 0 when it overflowed (see header). */
static inline float inverse_scale(float d, int *ok)
{
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    *ok = id <= FLT_MAX && id >= -FLT_MAX;
    return *ok ? id : 0.0f;
}

/* KVQ_KERN_NONFINITE when a block value is NaN/Inf: a value is finite iff
 * its exponent field is not all ones, so the largest exponent field of the
 * block decides (STATUS_LANES running maxima: gcc vectorises them). */
#define STATUS_LANES 8
#define F32_EXP_MASK 0x7F800000u

static inline unsigned block_nonfinite(const float *x)
{
    uint32_t lane[STATUS_LANES] = {0};
    for (int j = 0; j < KVQ_QK; j += STATUS_LANES)
        for (int l = 0; l < STATUS_LANES; l++) {
            uint32_t u;
            memcpy(&u, &x[j + l], sizeof u);
            u &= F32_EXP_MASK;
            lane[l] = lane[l] > u ? lane[l] : u;
        }
    uint32_t m = 0;
    for (int l = 0; l < STATUS_LANES; l++) m = m > lane[l] ? m : lane[l];
    return m == F32_EXP_MASK ? KVQ_KERN_NONFINITE : 0u;
}

/* Stores the f16 scale; KVQ_KERN_SCALE_RANGE when it rounded to Inf. */
static inline unsigned store_scale(uint8_t *blk, float d)
{
    uint16_t h = kvq_f32_to_f16(d);
    kvq_wr16(blk, h);
    return (h & KVQ_F16_EXP_MASK) == KVQ_F16_EXP_MASK ? KVQ_KERN_SCALE_RANGE : 0u;
}

unsigned kvq_kern_q8_0_block_ref(const float *restrict x, uint8_t *restrict blk)
{
    if (block_nonfinite(x)) return KVQ_KERN_NONFINITE; /* no codes: x·id could leave int range */
    float d = kvq_absmax(x, KVQ_QK) / Q8_0_QMAX;
    int ok;
    float id = inverse_scale(d, &ok);
    int8_t *qs = (int8_t *)(blk + 2);
    for (int j = 0; j < KVQ_QK; j++) qs[j] = (int8_t)kvq_round_rha(x[j] * id);
    return store_scale(blk, d);
}

unsigned kvq_kern_q4_0_block_ref(const float *restrict x, uint8_t *restrict blk)
{
    if (block_nonfinite(x)) return KVQ_KERN_NONFINITE;
    float d = kvq_signed_absmax(x, KVQ_QK) / Q4_0_DIV;
    int ok;
    float id = inverse_scale(d, &ok);
    uint8_t c[KVQ_QK];
    for (int j = 0; j < KVQ_QK; j++) {
        float t = x[j] * id; /* rounded to f32 here, as in ggml ... */
        t = t + Q4_0_OFFSET; /* ... before the offset is added      */
        uint8_t v = (uint8_t)(int32_t)t; /* t ∈ [0.49, 16.5]: 0..16 */
        c[j] = v < Q4_0_CODE_MAX ? v : Q4_0_CODE_MAX;
    }
    if (!ok) memset(c, 0, sizeof c); /* x86 ggml: Inf/NaN → int8 gives 0 */
    kvq_nibbles_pack(c, KVQ_QK, KVQ_NIB_SPLIT_HALF, blk + 2);
    return store_scale(blk, d);
}

static unsigned quant_q8_0(const float *x, uint8_t *dst, size_t nb)
{
    unsigned st = 0;
    for (size_t b = 0; b < nb; b++) st |= kvq_kern_q8_0_block_ref(x + b * KVQ_QK, dst + b * KVQ_Q8_0_BYTES);
    return st;
}

static unsigned quant_q4_0(const float *x, uint8_t *dst, size_t nb)
{
    unsigned st = 0;
    for (size_t b = 0; b < nb; b++) st |= kvq_kern_q4_0_block_ref(x + b * KVQ_QK, dst + b * KVQ_Q4_0_BYTES);
    return st;
}

static void dequant_q8_0(const uint8_t *src, float *restrict y, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += KVQ_Q8_0_BYTES, y += KVQ_QK) {
        const float d = kvq_f16_to_f32(kvq_rd16(src));
        const int8_t *qs = (const int8_t *)(src + 2);
        for (int j = 0; j < KVQ_QK; j++) y[j] = (float)qs[j] * d;
    }
}

static void dequant_q4_0(const uint8_t *src, float *restrict y, size_t nb)
{
    for (size_t b = 0; b < nb; b++, src += KVQ_Q4_0_BYTES, y += KVQ_QK) {
        const float d = kvq_f16_to_f32(kvq_rd16(src));
        const uint8_t *qs = src + 2;
        for (int j = 0; j < HALF; j++) {
            y[j] = (float)((qs[j] & 0x0F) - Q4_0_ZERO) * d;
            y[j + HALF] = (float)((qs[j] >> 4) - Q4_0_ZERO) * d;
        }
    }
}

/* Dots: the block's codes widened to floats, Σ q_j·x_j in DOT_LANES
 * interleaved partial sums (so gcc vectorises it without reassociation
 * flags), each lane scaled by d into a running lane sum, lanes combined
 * pairwise at the end. */
#define DOT_LANES 8

static inline float dot_blocks(kvq_kt t, const uint8_t *src, const float *x, size_t nb)
{
    size_t bb = kvq_kern_block_bytes(t);
    float acc[DOT_LANES] = {0};
    for (size_t b = 0; b < nb; b++, src += bb, x += KVQ_QK) {
        float q[KVQ_QK], s[DOT_LANES] = {0};
        const uint8_t *qs = src + 2;
        if (t == KVQ_KT_Q8_0)
            for (int j = 0; j < KVQ_QK; j++) q[j] = (float)(int8_t)qs[j];
        else
            for (int j = 0; j < HALF; j++) {
                q[j] = (float)((qs[j] & 0x0F) - Q4_0_ZERO);
                q[j + HALF] = (float)((qs[j] >> 4) - Q4_0_ZERO);
            }
        for (int j = 0; j < KVQ_QK; j += DOT_LANES)
            for (int k = 0; k < DOT_LANES; k++) s[k] += q[j + k] * x[j + k];
        const float d = kvq_f16_to_f32(kvq_rd16(src));
        for (int k = 0; k < DOT_LANES; k++) acc[k] += s[k] * d;
    }
    for (int w = DOT_LANES / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

static float dot_q8_0(const uint8_t *src, const float *x, size_t nb) { return dot_blocks(KVQ_KT_Q8_0, src, x, nb); }
static float dot_q4_0(const uint8_t *src, const float *x, size_t nb) { return dot_blocks(KVQ_KT_Q4_0, src, x, nb); }

static void dots_q8_0(const uint8_t *src, size_t stride, size_t nrows, const float *x, size_t nb, float *out)
{
    for (size_t r = 0; r < nrows; r++) out[r] = dot_blocks(KVQ_KT_Q8_0, src + r * stride, x, nb);
}

static void dots_q4_0(const uint8_t *src, size_t stride, size_t nrows, const float *x, size_t nb, float *out)
{
    for (size_t r = 0; r < nrows; r++) out[r] = dot_blocks(KVQ_KT_Q4_0, src + r * stride, x, nb);
}

static float absmax_ref(const float *x, size_t n) { return kvq_absmax(x, n); }

/* Plain f16 rows: values widened one by one, DOT_LANES partial sums. */
static void dots_f16(const uint8_t *w, size_t stride, size_t nrows, const float *x, size_t n, float *out)
{
    for (size_t r = 0; r < nrows; r++) {
        const uint8_t *row = w + r * stride * 2;
        float acc[DOT_LANES] = {0}, tail = 0.0f;
        size_t j = 0;
        for (; j + DOT_LANES <= n; j += DOT_LANES)
            for (int k = 0; k < DOT_LANES; k++) acc[k] += kvq_f16_to_f32(kvq_rd16(row + 2 * (j + k))) * x[j + k];
        for (; j < n; j++) tail += kvq_f16_to_f32(kvq_rd16(row + 2 * j)) * x[j];
        for (int h = DOT_LANES / 2; h > 0; h /= 2)
            for (int k = 0; k < h; k++) acc[k] += acc[k + h];
        out[r] = acc[0] + tail;
    }
}

static void f16_gather(const uint8_t *src, size_t stride, size_t n, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] = kvq_f16_to_f32(kvq_rd16(src + i * stride));
}

void kvq_kernels_fill_ref(kvq_kernels *k)
{
    memset(k, 0, sizeof *k);
    k->name = "ref";
    k->quantize[KVQ_KT_Q8_0] = quant_q8_0;
    k->quantize[KVQ_KT_Q4_0] = quant_q4_0;
    k->dequantize[KVQ_KT_Q8_0] = dequant_q8_0;
    k->dequantize[KVQ_KT_Q4_0] = dequant_q4_0;
    k->dot[KVQ_KT_Q8_0] = dot_q8_0;
    k->dot[KVQ_KT_Q4_0] = dot_q4_0;
    k->dots[KVQ_KT_Q8_0] = dots_q8_0;
    k->dots[KVQ_KT_Q4_0] = dots_q4_0;
    k->absmax = absmax_ref;
    k->dots_f16 = dots_f16;
    k->f16_gather = f16_gather;
    kvq_kern_int_fill_ref(k);
}
