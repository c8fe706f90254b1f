/*
 * fp_impl.h — what the floating-point codecs share (quant/fp.c, fp_act.c,
 * fp_mx.c; quant-methods.md §1.1, §6): quantising a span of values on an
 * ExMy grid at a given scale through the threshold table of quant_common.h,
 * the inverse, and the code-stream layout (4-bit codes in runs of 32
 * nibbles in either nibble order, the shorter last run adjacent; 8-bit
 * codes one byte each).  Codes carry the sign bit above the magnitude
 * code; a value that rounds to magnitude 0 gets code 0 (no negative zero).
 */
#ifndef KVQ_QUANT_FP_IMPL_H
#define KVQ_QUANT_FP_IMPL_H

#include "quant/quant_common.h"

#include <float.h>

#define FP_RUN 32 /* nibble run: one ggml block */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fp codecs store f32 scales with memcpy: little-endian hosts only"
#endif

/* Parameter choices shared by fp and fpa (header statics: no unused warnings). */
static const char *const fp_fmt_names[] = {"e2m1", "e3m0", "e1m2", "e5m2", "e4m3", "e3m4", "e2m5", "e1m6",
                                           "auto4", "auto8", NULL};
#define FMT_AUTO4 8
#define FMT_AUTO8 9
static const char *const fp_tie_names[] = {"even", "away", "zero", NULL};
static const char *const fp_nib_names[] = {"split", "adjacent", NULL};
/* fmt parameter index → format */
static const kvq_fp_id fp_fmt_ids[8] = {KVQ_FP_E2M1, KVQ_FP_E3M0, KVQ_FP_E1M2, KVQ_FP_E5M2,
                                        KVQ_FP_E4M3, KVQ_FP_E3M4, KVQ_FP_E2M5, KVQ_FP_E1M6};

static inline unsigned fp_mag_bits(const kvq_fpfmt *f) { return (unsigned)f->e + f->m; }

/* x[len] at scale sc → codes (may be NULL) and dequantised values q (may be
 * NULL).  The 4-bit case has a constant-trip threshold loop (vectorises). */
static inline void fp_quant_span(const kvq_fp_lut *l, const float *restrict x, int64_t len, float sc,
                                 uint8_t *restrict codes, float *restrict q)
{
    float inv = 1.0f / sc;
    unsigned sb = fp_mag_bits(l->f), small = l->n <= 8;
    for (int64_t j = 0; j < len; j++) {
        float a = fabsf(x[j]) * inv;
        unsigned c = small ? kvq_fp_lut_code8(l, a) : kvq_fp_lut_code(l, a);
        unsigned neg = (x[j] < 0.0f) & (c != 0);
        if (codes) codes[j] = (uint8_t)(c | neg << sb);
        if (q) q[j] = (neg ? -l->mag[c] : l->mag[c]) * sc;
    }
}

/* codes[len] at scale sc → y; shift (may be NULL) holds per-value 2^−k
 * factors applied after the scale (exact: powers of two). */
static inline void fp_dequant_span(const kvq_fp_lut *l, const uint8_t *restrict codes, int64_t len, float sc,
                                   const float *restrict shift, float *restrict y)
{
    unsigned sb = fp_mag_bits(l->f), mask = (1u << sb) - 1;
    for (int64_t j = 0; j < len; j++) {
        unsigned c = codes[j] & mask;
        float v = l->mag[c < l->n ? c : 0] * sc;
        v = codes[j] >> sb & 1 ? -v : v;
        y[j] = shift ? v * shift[j] : v;
    }
}

static inline size_t fp_codes_size(const kvq_fpfmt *f, int64_t cols)
{
    return kvq_fp_bits(f) == 4 ? (size_t)(cols + 1) / 2 : (size_t)cols;
}

static inline void fp_pack_codes(const kvq_fpfmt *f, kvq_nib_layout nib, const uint8_t *codes, int64_t cols,
                                 uint8_t *dst)
{
    if (kvq_fp_bits(f) != 4) {
        memcpy(dst, codes, (size_t)cols);
        return;
    }
    int64_t c = 0;
    for (; c + FP_RUN <= cols; c += FP_RUN) kvq_nibbles_pack(codes + c, FP_RUN, nib, dst + c / 2);
    int64_t rest = cols - c, even = rest - rest % 2;
    kvq_nibbles_pack(codes + c, (size_t)even, KVQ_NIB_ADJACENT, dst + c / 2);
    if (rest % 2) dst[(c + even) / 2] = codes[cols - 1] & 0x0F;
}

static inline void fp_unpack_codes(const kvq_fpfmt *f, kvq_nib_layout nib, const uint8_t *src, int64_t cols,
                                   uint8_t *codes)
{
    if (kvq_fp_bits(f) != 4) {
        memcpy(codes, src, (size_t)cols);
        return;
    }
    int64_t c = 0;
    for (; c + FP_RUN <= cols; c += FP_RUN) kvq_nibbles_unpack(src + c / 2, FP_RUN, nib, codes + c);
    int64_t rest = cols - c, even = rest - rest % 2;
    kvq_nibbles_unpack(src + c / 2, (size_t)even, KVQ_NIB_ADJACENT, codes + c);
    if (rest % 2) codes[cols - 1] = src[(c + even) / 2] & 0x0F;
}

#endif /* KVQ_QUANT_FP_IMPL_H */
