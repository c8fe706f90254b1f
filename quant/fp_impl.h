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

#include "kernels/kern_fp.h"
#include "kvq.h"
#include "quant/quant_common.h"

#include <float.h>

#define FP_RUN 32 /* nibble run: one ggml block */
/* The loops behind kernels/kern_fp.h's slots: inlined even into a caller
 * compiled for another target (kernels/cpu/fp_avx2.c), so they vectorise
 * with its registers. */
#define FP_KERN_INLINE static inline __attribute__((always_inline))

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
FP_KERN_INLINE void fp_codes4(const kvq_fp_lut *l, const float *x, int64_t len, float inv, uint8_t *codes)
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

FP_KERN_INLINE void fp_codes_any(const kvq_fp_lut *l, const float *x, int64_t len, float inv, uint8_t *codes)
{
    fp_bitgrid g = fp_bitgrid_of(l);
    int64_t full = len - len % FP_RUN;
    for (int64_t j = 0; j < full; j += FP_RUN) fp_codes_any_run(&g, x + j, FP_RUN, inv, codes + j);
    fp_codes_any_run(&g, x + full, len - full, inv, codes + full);
}

/* Maxima (kvq_absmax_bits) of the groups of g values of x[n], the last
 * possibly shorter; g = 32 (the default group) gets a constant trip count. */
FP_KERN_INLINE void fp_absmax_groups(const float *x, int64_t n, int64_t g, uint32_t *out)
{
    int64_t c = 0, i = 0;
    if (g == FP_RUN)
        for (; c + FP_RUN <= n; c += FP_RUN, i++) out[i] = kvq_absmax_bits(x + c, FP_RUN);
    for (; c < n; c += g, i++) out[i] = kvq_absmax_bits(x + c, (size_t)(n - c < g ? n - c : g));
}

/* Codes of the groups of g values of x[n], group i at reciprocal scale
 * inv[i] (fp_codes4 or fp_codes_any by the format's width). */
FP_KERN_INLINE void fp_codes_groups(const kvq_fp_lut *l, const float *x, int64_t n, int64_t g, const float *inv,
                                   uint8_t *codes)
{
    for (int64_t c = 0, i = 0; c < n; c += g, i++) {
        int64_t len = n - c < g ? n - c : g;
        if (l->n <= 8) fp_codes4(l, x + c, len, inv[i], codes + c);
        else fp_codes_any(l, x + c, len, inv[i], codes + c);
    }
}

/* x[len] at scale sc → codes (may be NULL) and dequantised values q (may be
 * NULL). */
static inline void fp_quant_span(const kvq_fp_lut *l, const float *x, int64_t len, float sc, uint8_t *codes,
                                 float *q)
{
    uint8_t tmp[FP_CHUNK];
    float inv = 1.0f / sc;
    unsigned sb = (unsigned)l->f->e + l->f->m, mask = (1u << sb) - 1;
    const kvq_fp_kernels *kt = kvq_fp_kernels_get();
    for (int64_t c0 = 0; c0 < len; c0 += FP_CHUNK) {
        int64_t k = len - c0 < FP_CHUNK ? len - c0 : FP_CHUNK;
        uint8_t *cd = codes ? codes + c0 : tmp;
        if (l->n <= 8) kt->codes4(l, x + c0, k, inv, cd);
        else kt->codes_any(l, x + c0, k, inv, cd);
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

/* ---- block formats (fp_mx.c): mxfp4 and nvfp4 blocks, here so that
 * kernels/cpu/fp_*.c can compile them for each instruction set ---------- */
#define MX_BLOCK     32
#define MX_BYTES     17      /* e8m0 + 16 bytes of nibbles                 */
#define MX_EMIN_ELEM 2       /* emax of E2M1: e = floor(log2 amax) − 2 + 127 */
#define NV_BLOCK     64
#define NV_SUB       16
#define NV_BYTES     36      /* 4 ue4m3 + 32 bytes of nibbles              */
#define NV_HDR       4       /* f32 per-tensor scale                       */
#define NV_E2M1_MAX  6.0f
#define NV_E4M3_MAX  448.0f

#define MX_E_BITS_MAX 253   /* 2^(127−e) is a normal float for e <= 253      */

/* 2^k for a normal result (−126 <= k <= 127), built from its bits. */
static inline float pow2f(int k)
{
    uint32_t b = (uint32_t)(k + 127) << 23;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* E2M1 values doubled, ggml's kvalues_mxfp4 (index 8 is −0). */
static const float kv_fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* ggml's e: (uint8_t)(floorf(log2f(amax)) − 2 + 127), the float converted
 * through int32 as x86 does (defined here for every finite amax).  For a
 * normal amax whose mantissa is below 2 − 2^-11, floor(log2f) is the
 * exponent field: log2 lies in [k, k + 1 − 7·10^-4], log2f(2^k) = k and a
 * faithful log2f stays on the same side of k + 1 (its ulp is <= 2^-16 for
 * |k| < 128); other values (just below a power of two, subnormals) take
 * log2f itself. */
#define MX_MANT_NEAR_TOP 0x7FF000u

static inline uint8_t mx_exponent(float amax)
{
    if (!(amax > 0.0f)) return 0;
    uint32_t u;
    memcpy(&u, &amax, 4);
    if ((u >> 23) != 0 && (u & 0x7FFFFFu) < MX_MANT_NEAR_TOP)
        return (uint8_t)((int32_t)(u >> 23) - MX_EMIN_ELEM); /* exponent − 127 − 2 + 127 */
    float f = floorf(log2f(amax)) - MX_EMIN_ELEM + 127;
    return (uint8_t)(int32_t)f;
}

/* The E2M1 thresholds of fp_impl.h's table path written out for one block
 * (ties toward zero: strict compares), in int32 lanes so gcc -O2
 * vectorises the 32-value loop; tests/test_fp.c checks it against the
 * table path and ggml's golden bytes. */
FP_KERN_INLINE int mx_encode_block(const float *restrict x, uint8_t *restrict out)
{
    uint8_t c[MX_BLOCK]; /* bytes, so both loops vectorise */
    uint32_t amax = kvq_absmax_bits(x, MX_BLOCK);
    if (amax >= KVQ_F32_INF_BITS) return 1; /* NaN or Inf: nothing written */
    uint8_t e = mx_exponent(kvq_f32_of_bits(amax));
    const float inv = e <= MX_E_BITS_MAX ? pow2f(127 - (int)e) : ldexpf(1.0f, 127 - (int)e); /* 1/2^(e−127) */
    out[0] = e;
    for (int j = 0; j < MX_BLOCK; j++) {
        float a = fabsf(x[j]) * inv;
        int32_t m = (a > 0.25f) + (a > 0.75f) + (a > 1.25f) + (a > 1.75f) + (a > 2.5f) + (a > 3.5f) + (a > 5.0f);
        c[j] = (uint8_t)(m | (((x[j] < 0.0f) & (m != 0)) << 3));
    }
    kvq_nibbles_pack(c, MX_BLOCK, KVQ_NIB_SPLIT_HALF, out + 1);
    return 0;
}

/* ggml's best_index_mxfp4: first index of the smallest |kv·d − x| in f32. */
static inline uint8_t nv_best(float x, float d)
{
    int best = 0;
    float be = fabsf(kv_fp4[0] * d - x);
    for (int i = 1; i < 16; i++) {
        float e = fabsf(kv_fp4[i] * d - x);
        best = e < be ? i : best;
        be = e < be ? e : be;
    }
    return (uint8_t)best;
}

/* nv_best for 16 values at once, valid when d > 0 and every |v| <= 2^20·d
 * (nv_encode_block checks).  Then only the two levels around a = |v| can
 * hold the smallest rounded error: any other level, of either sign, is at
 * least d (the smallest level spacing) farther than the nearer one, a
 * relative gap >= 2^-21 that f32 rounding of the differences cannot close
 * (index 0, never −0 at index 8, wins for a nearest 0).  Between levels
 * D < U the choice is fl(U − a) < fl(a − D): false for a <= (D + U)/2
 * (rounding is monotone), and for a in ((D + U)/2, U] both differences are
 * exact (Sterbenz: a >= U/2, and U <= 2D or D = 0), so true — a tie keeps
 * the smaller index.  The code is the count of midpoints below a,
 * each (kv_i + kv_{i+1})/2·d exact (a few significant bits). */
#define NV_FAST_RANGE 1048576.0f /* 2^20 */

FP_KERN_INLINE void nv_codes_fast(const float *restrict v, float d, uint8_t *restrict packed)
{
    const float m0 = 0.5f * d, m1 = 1.5f * d, m2 = 2.5f * d, m3 = 3.5f * d, m4 = 5.0f * d, m5 = 7.0f * d,
                m6 = 10.0f * d;
    int32_t c[NV_SUB];
    for (int j = 0; j < NV_SUB; j++) {
        float a = fabsf(v[j]);
        int32_t m = (a > m0) + (a > m1) + (a > m2) + (a > m3) + (a > m4) + (a > m5) + (a > m6);
        c[j] = m | (((v[j] < 0.0f) & (m != 0)) << 3);
    }
    for (int j = 0; j < NV_SUB / 2; j++) packed[j] = (uint8_t)(c[j] | c[j + NV_SUB / 2] << 4);
}

/* One block of 64: the four sub-block scales first (independent chains of
 * absmax, division and UE4M3 rounding the CPU overlaps), then the codes
 * (`fast`: nv_codes_fast or an equal SIMD version, a constant the inlining
 * resolves).  1 when the block holds a NaN or Inf (nothing written). */
typedef void (*nv_codes_fn)(const float *v, float d, uint8_t *packed);

FP_KERN_INLINE int nv_encode_block(const float *x, float inv_g, uint8_t *out, nv_codes_fn fast)
{
    float v[NV_BLOCK], d[NV_BLOCK / NV_SUB];
    uint32_t amax[NV_BLOCK / NV_SUB];
    for (int j = 0; j < NV_BLOCK; j++) v[j] = x[j] * inv_g;
    for (int s = 0; s < NV_BLOCK / NV_SUB; s++) amax[s] = kvq_absmax_bits(v + s * NV_SUB, NV_SUB);
    uint32_t top = amax[0] > amax[1] ? amax[0] : amax[1], top2 = amax[2] > amax[3] ? amax[2] : amax[3];
    if ((top > top2 ? top : top2) >= KVQ_F32_INF_BITS) return 1;
    for (int s = 0; s < NV_BLOCK / NV_SUB; s++) {
        out[s] = kvq_ue4m3_from_f32(kvq_f32_of_bits(amax[s]) / NV_E2M1_MAX);
        d[s] = kvq_ue4m3_value(out[s]) * 0.5f;
    }
    for (int s = 0; s < NV_BLOCK / NV_SUB; s++) {
        uint8_t *dst = out + NV_BLOCK / NV_SUB + s * NV_SUB / 2, codes[NV_SUB];
        if (d[s] > 0.0f && kvq_f32_of_bits(amax[s]) <= NV_FAST_RANGE * d[s]) {
            fast(v + s * NV_SUB, d[s], dst); /* packed split-half */
        } else {
            for (int j = 0; j < NV_SUB; j++) codes[j] = nv_best(v[s * NV_SUB + j], d[s]);
            kvq_nibbles_pack(codes, NV_SUB, KVQ_NIB_SPLIT_HALF, dst);
        }
    }
    return 0;
}

/* Blocks [0, nb) of each format: the index of the first block holding a
 * NaN or Inf (nothing written from it on), else nb. */
FP_KERN_INLINE size_t mx_encode_blocks(const float *x, size_t nb, uint8_t *out)
{
    for (size_t b = 0; b < nb; b++)
        if (mx_encode_block(x + b * MX_BLOCK, out + b * MX_BYTES)) return b;
    return nb;
}

FP_KERN_INLINE size_t nv_encode_blocks(const float *x, size_t nb, float inv_g, uint8_t *out, nv_codes_fn fast)
{
    for (size_t b = 0; b < nb; b++)
        if (nv_encode_block(x + b * NV_BLOCK, inv_g, out + b * NV_BYTES, fast)) return b;
    return nb;
}

/* ---- row kernels (kernels/rowkern.h): Σ decode(row)_i·x_i from the codes -------
 * Sums in FP_DOT_LANES partial sums (gcc vectorises them); the order
 * differs from decode + dot, within rowkern.h's tolerance. */
#define FP_DOT_LANES 8
#define FP_DOT_SPLIT 0 /* 4-bit runs of 32 split-half, a shorter last run adjacent */
#define FP_DOT_ADJ   1 /* 4-bit adjacent nibbles (low first)                      */
#define FP_DOT_BYTE  2 /* one code per byte                                       */
#define FP_DOT_I8    4 /* flag (4-bit): v[0..15] are integers in int8, v[16] the
                          factor that scales the sum back (a power of two)      */

/* Σ v[c_j]·x_j over n codes. */
static inline float fp_dot_lut(const uint8_t *c, int64_t n, const float *v, const float *x)
{
    float acc[FP_DOT_LANES] = {0};
    int64_t nv = n - n % FP_DOT_LANES;
    for (int64_t j = 0; j < nv; j += FP_DOT_LANES)
        for (int l = 0; l < FP_DOT_LANES; l++) acc[l] += v[c[j + l]] * x[j + l];
    for (int64_t j = nv; j < n; j++) acc[0] += v[c[j]] * x[j];
    for (int w = FP_DOT_LANES / 2; w; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

/* mxfp4's block scale 2^(e−128) (the element values are doubled). */
static inline float mx_scale(uint8_t e) { return e >= 2 ? pow2f((int)e - 128) : ldexpf(1.0f, (int)e - 128); }

/* One row of nb mxfp4 blocks. */
static inline float mx_row_dot(const uint8_t *p, int64_t nb, const float *x)
{
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++, p += MX_BYTES, x += MX_BLOCK) {
        uint8_t codes[MX_BLOCK];
        kvq_nibbles_unpack(p + 1, MX_BLOCK, KVQ_NIB_SPLIT_HALF, codes);
        acc += mx_scale(p[0]) * fp_dot_lut(codes, MX_BLOCK, kv_fp4, x);
    }
    return acc;
}

/* One row of nb nvfp4 blocks (without the tensor scale). */
static inline float nv_row_dot(const uint8_t *p, int64_t nb, const float *x)
{
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++, p += NV_BYTES)
        for (int s = 0; s < NV_BLOCK / NV_SUB; s++, x += NV_SUB) {
            uint8_t codes[NV_SUB];
            kvq_nibbles_unpack(p + NV_BLOCK / NV_SUB + s * NV_SUB / 2, NV_SUB, KVQ_NIB_SPLIT_HALF, codes);
            acc += kvq_ue4m3_value(p[s]) * 0.5f * fp_dot_lut(codes, NV_SUB, kv_fp4, x);
        }
    return acc;
}

/* Scale of run r (FP_RUN values): one f32 (spr <= 0: the whole row) or an
 * f16 per spr runs. */
static inline float fp_run_scale(const uint8_t *sc, int64_t spr, int64_t r)
{
    if (spr <= 0) return kvq_f32_of_bits((uint32_t)sc[0] | (uint32_t)sc[1] << 8 | (uint32_t)sc[2] << 16 |
                                         (uint32_t)sc[3] << 24);
    const uint8_t *h = sc + 2 * (r / spr);
    return kvq_f16_to_f32((uint16_t)(h[0] | h[1] << 8));
}

/* Codes [c, c + k) of a row of layout `kind` (FP_DOT_*), k = min(FP_RUN,
 * cols − c), c a multiple of FP_RUN. */
static inline int64_t fp_run_unpack(const uint8_t *src, int64_t cols, int kind, int64_t c, uint8_t *codes)
{
    int64_t k = cols - c < FP_RUN ? cols - c : FP_RUN;
    if (kind == FP_DOT_BYTE) {
        memcpy(codes, src + c, (size_t)k);
    } else if (k == FP_RUN) {
        kvq_nibbles_unpack(src + c / 2, FP_RUN, kind == FP_DOT_SPLIT ? KVQ_NIB_SPLIT_HALF : KVQ_NIB_ADJACENT, codes);
    } else {
        int64_t even = k - k % 2;
        kvq_nibbles_unpack(src + c / 2, (size_t)even, KVQ_NIB_ADJACENT, codes);
        if (k % 2) codes[k - 1] = src[(c + even) / 2] & 0x0F;
    }
    return k;
}

/* One row of `cols` codes of layout `kind` through the value table v (16
 * or 256 entries), run r scaled by fp_run_scale(sc, spr, r). */
static inline float fp_runs_dot(const uint8_t *src, int64_t cols, int kind, const float *v, const uint8_t *sc,
                                int64_t spr, const float *x)
{
    float acc = 0.0f;
    for (int64_t c = 0, r = 0; c < cols; c += FP_RUN, r++) {
        uint8_t codes[FP_RUN];
        int64_t k = fp_run_unpack(src, cols, kind & ~FP_DOT_I8, c, codes);
        acc += fp_run_scale(sc, spr, r) * fp_dot_lut(codes, k, v, x + c);
    }
    return kind & FP_DOT_I8 ? acc * v[16] : acc;
}

#endif /* KVQ_QUANT_FP_IMPL_H */
