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
static const char *const fp_fmt_fixed_names[] = {"e2m1", "e3m0", "e1m2", "e5m2", "e4m3", "e3m4", "e2m5", "e1m6",
                                                 NULL}; /* no format search (fpa) */
#define FMT_AUTO4 8
#define FMT_AUTO8 9
static const char *const fp_tie_names[] = {"even", "away", "zero", NULL};
static const char *const fp_nib_names[] = {"split", "adjacent", NULL};
/* fmt parameter index → format */
static const kvq_fp_id fp_fmt_ids[8] = {KVQ_FP_E2M1, KVQ_FP_E3M0, KVQ_FP_E1M2, KVQ_FP_E5M2,
                                        KVQ_FP_E4M3, KVQ_FP_E3M4, KVQ_FP_E2M5, KVQ_FP_E1M6};

static inline unsigned fp_mag_bits(const kvq_fpfmt *f) { return (unsigned)f->e + f->m; }

#define FP_CHUNK 256 /* values per pass when the caller wants values only */

/* Codes of n values (n a compile-time constant where it matters) at
 * reciprocal scale inv, 4-bit signed formats, thresholds t[7]: a > t[i]
 * counts code > i, ties included (kvq_fp_lut.thr). */
static inline void fp_codes4_run(const float *t, const float *restrict x, int64_t n, float inv,
                                 uint8_t *restrict codes)
{
    const float t0 = t[0], t1 = t[1], t2 = t[2], t3 = t[3], t4 = t[4], t5 = t[5], t6 = t[6];
    for (int64_t j = 0; j < n; j++) {
        float a = fabsf(x[j]) * inv;
        int32_t c = (a > t0) + (a > t1) + (a > t2) + (a > t3) + (a > t4) + (a > t5) + (a > t6);
        int32_t neg = (x[j] < 0.0f) & (c != 0);
        codes[j] = (uint8_t)(c | neg << 3);
    }
}

/* Whole runs of FP_RUN with a constant trip count (gcc -O2 vectorises
 * those: its cheap cost model wants no epilogue), then the tail. */
static inline void fp_codes4(const kvq_fp_lut *l, const float *x, int64_t len, float inv, uint8_t *codes)
{
    int64_t full = len - len % FP_RUN;
    for (int64_t j = 0; j < full; j += FP_RUN) fp_codes4_run(l->thr, x + j, FP_RUN, inv, codes + j);
    fp_codes4_run(l->thr, x + full, len - full, inv, codes + full);
}

/* The same for any format (8-bit ones: 127 thresholds) without counting
 * or a table: kvq_fp_round_code's rounding done on a's bits.  In a normal
 * binade of the format the code at or below a is a's exponent and top m
 * mantissa bits rebased to the format's bias, and the dropped bits against
 * half a step decide the rounding; in its subnormal binade q = a·2^(bias+m−1)
 * (exact: a power-of-two scaling of a value below 2^(1−bias)) gives
 * trunc(q) and the fraction q − trunc(q) (exact).  A tie rounds up for
 * KVQ_TIE_AWAY, never for KVQ_TIE_ZERO, and to the even code for
 * KVQ_TIE_EVEN (the parity of round_code_d's r is the code's for m >= 1);
 * the result saturates at code_max.  No gather, no branch: gcc -O2
 * vectorises the constant-length runs.  tests/test_fp.c checks it against
 * kvq_fp_round_code at every midpoint and on a million random values. */
typedef struct {
    unsigned shift, sb;
    int32_t  off, cmax, half, dmask, tie_up, tie_even;
    uint32_t e_norm;
    float    sub_lim, sub_mul;
} fp_bitgrid;

static inline fp_bitgrid fp_bitgrid_of(const kvq_fp_lut *l)
{
    const kvq_fpfmt *f = l->f;
    fp_bitgrid g;
    g.shift = 23u - f->m;
    g.sb = (unsigned)f->e + f->m;
    g.off = (127 - f->bias) << f->m;
    g.cmax = (int32_t)f->code_max;
    g.half = 1 << (g.shift - 1);
    g.dmask = (1 << g.shift) - 1;
    g.tie_up = l->tie == KVQ_TIE_AWAY;
    g.tie_even = l->tie == KVQ_TIE_EVEN;
    g.e_norm = (uint32_t)(128 - f->bias); /* f32 exponent field of 2^(1−bias) */
    g.sub_lim = ldexpf(1.0f, 1 - f->bias);
    g.sub_mul = ldexpf(1.0f, f->bias + f->m - 1);
    return g;
}

static inline void fp_codes_any_run(const fp_bitgrid *g, const float *restrict x, int64_t n, float inv,
                                    uint8_t *restrict codes)
{
    const unsigned shift = g->shift, sb = g->sb;
    const int32_t off = g->off, cmax = g->cmax, half = g->half, dmask = g->dmask, tup = g->tie_up,
                  tev = g->tie_even;
    const uint32_t e_norm = g->e_norm;
    const float sub_lim = g->sub_lim, sub_mul = g->sub_mul;
    for (int64_t j = 0; j < n; j++) {
        float a = fabsf(x[j]) * inv, as = a < sub_lim ? a : sub_lim, q = as * sub_mul;
        uint32_t u;
        memcpy(&u, &a, 4);
        int32_t cs = (int32_t)q;
        float fr = q - (float)cs;
        int32_t normal = (u >> 23) >= e_norm, drop = (int32_t)u & dmask, nm = -normal; /* masks, not branches */
        int32_t cf = (((int32_t)(u >> shift) - off) & nm) | (cs & ~nm);
        int32_t gt = (normal & (drop > half)) | (!normal & (fr > 0.5f));
        int32_t eq = (normal & (drop == half)) | (!normal & (fr == 0.5f));
        int32_t c = cf + (gt | (eq & (tup | (tev & cf))));
        c = c < cmax ? c : cmax;
        int32_t neg = (x[j] < 0.0f) & (c != 0);
        codes[j] = (uint8_t)(c | neg << sb);
    }
}

static inline void fp_codes_any(const kvq_fp_lut *l, const float *x, int64_t len, float inv, uint8_t *codes)
{
    fp_bitgrid g = fp_bitgrid_of(l);
    int64_t full = len - len % FP_RUN;
    for (int64_t j = 0; j < full; j += FP_RUN) fp_codes_any_run(&g, x + j, FP_RUN, inv, codes + j);
    fp_codes_any_run(&g, x + full, len - full, inv, codes + full);
}

/* x[len] at scale sc → codes (may be NULL) and dequantised values q (may be
 * NULL). */
static inline void fp_quant_span(const kvq_fp_lut *l, const float *x, int64_t len, float sc, uint8_t *codes,
                                 float *q)
{
    uint8_t tmp[FP_CHUNK];
    float inv = 1.0f / sc;
    unsigned sb = (unsigned)l->f->e + l->f->m, mask = (1u << sb) - 1;
    for (int64_t c0 = 0; c0 < len; c0 += FP_CHUNK) {
        int64_t k = len - c0 < FP_CHUNK ? len - c0 : FP_CHUNK;
        uint8_t *cd = codes ? codes + c0 : tmp;
        if (l->n <= 8) fp_codes4(l, x + c0, k, inv, cd);
        else fp_codes_any(l, x + c0, k, inv, cd);
        for (int64_t j = 0; q && j < k; j++) {
            float v = l->mag[cd[j] & mask] * sc;
            q[c0 + j] = cd[j] >> sb ? -v : v;
        }
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
    /* the layout as a constant in each loop, so each vectorises */
    if (nib == KVQ_NIB_SPLIT_HALF)
        for (; c + FP_RUN <= cols; c += FP_RUN) kvq_nibbles_pack(codes + c, FP_RUN, KVQ_NIB_SPLIT_HALF, dst + c / 2);
    else
        for (; c + FP_RUN <= cols; c += FP_RUN) kvq_nibbles_pack(codes + c, FP_RUN, KVQ_NIB_ADJACENT, dst + c / 2);
    int64_t rest = cols - c, even = rest - rest % 2;
    kvq_nibbles_pack(codes + c, (size_t)even, KVQ_NIB_ADJACENT, dst + c / 2);
    if (rest % 2) dst[(c + even) / 2] = codes[cols - 1] & 0x0F;
}

/* Codes [c, c + k) of a row's code stream, k = min(FP_RUN, cols − c), c a
 * multiple of FP_RUN: one run, so decoders need only a run-sized buffer. */
static inline int64_t fp_unpack_run(const kvq_fpfmt *f, kvq_nib_layout nib, const uint8_t *src, int64_t cols,
                                    int64_t c, uint8_t *codes)
{
    int64_t k = cols - c < FP_RUN ? cols - c : FP_RUN;
    if (kvq_fp_bits(f) != 4) {
        memcpy(codes, src + c, (size_t)k);
    } else if (k == FP_RUN) {
        kvq_nibbles_unpack(src + c / 2, FP_RUN, nib, codes);
    } else {
        int64_t even = k - k % 2;
        kvq_nibbles_unpack(src + c / 2, (size_t)even, KVQ_NIB_ADJACENT, codes);
        if (k % 2) codes[k - 1] = src[(c + even) / 2] & 0x0F;
    }
    return k;
}

#endif /* KVQ_QUANT_FP_IMPL_H */
