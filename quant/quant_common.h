/*
 * quant_common.h — building blocks shared by every quantizer in quant/
 * (quant-methods.md §0): group statistics (absmax, min/max, ggml's signed
 * absmax), the rounding rules peers use (RHA = C roundf, RNE), b-bit code
 * streams (2..8 bits, LSB first) and the two 4-bit nibble layouts.
 *
 * The small per-element helpers are `static inline` on purpose: a codec that
 * calls them with a constant length (a 32-element ggml block) gets a loop
 * gcc -O2 vectorises, with no SIMD intrinsics in quant/ (STYLE.md "Kernels").
 * Every helper here is exact: no fast-math, no approximation; the rounding
 * helpers are proven equal to their libm counterparts over a stated range
 * (tests/test_codecs.c checks them on millions of values, ties included).
 */
#ifndef KVQ_QUANT_COMMON_H
#define KVQ_QUANT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define KVQ_RNE_MAGIC     12582912.0f /* 1.5·2^23: adding it rounds to integer */
#define KVQ_CODE_BITS_MIN 2           /* b-bit code streams: 2..8 bits         */
#define KVQ_CODE_BITS_MAX 8

/* ---- rounding ------------------------------------------------------------ */

/* kvq_round_rha() : round half away from zero, equal to (int32_t)roundf(v)
 * for every finite |v| < 2^31.  Why it is exact: t = trunc(v) fits int32;
 * (float)t is exact (either |v| < 2^24, or v is already an integer and
 * t == v); v − t is then exact (Sterbenz for |v| ≥ 1, t = 0 below), so the
 * fraction is compared without rounding.  Branch-free: it vectorises. */
static inline int32_t kvq_round_rha(float v)
{
    int32_t t = (int32_t)v;
    float frac = v - (float)t;
    return t + (int32_t)(frac >= 0.5f) - (int32_t)(frac <= -0.5f);
}

/* kvq_round_rne() : round half to even, equal to (int32_t)nearbyintf(v) in
 * the default rounding mode for finite |v| < 2^22: adding 1.5·2^23 puts the
 * units digit at the last significand bit, so the FPU's own RNE rounds it. */
static inline int32_t kvq_round_rne(float v)
{
    /* Without -ffast-math the compiler may not fold (v + M) − M into v. */
    float r = (v + KVQ_RNE_MAGIC) - KVQ_RNE_MAGIC;
    return (int32_t)r;
}

/* ---- group statistics ------------------------------------------------------ */
#define KVQ_REDUCE_LANES 8 /* independent partial results: a vector's worth */

/* kvq_minmax() : smallest and largest of n ≥ 1 finite values.  The partial
 * results run in KVQ_REDUCE_LANES independent lanes, so gcc vectorises the
 * loop as plain element-wise min/max (minps/maxps) rather than needing a
 * reassociated reduction, which it will not do for floats without
 * -ffast-math.  Exact: min and max do not round. */
static inline void kvq_minmax(const float *x, size_t n, float *mn, float *mx)
{
    float lo[KVQ_REDUCE_LANES], hi[KVQ_REDUCE_LANES];
    for (int l = 0; l < KVQ_REDUCE_LANES; l++) lo[l] = hi[l] = x[0];
    size_t nv = n - n % KVQ_REDUCE_LANES;
    for (size_t c = 0; c < nv; c += KVQ_REDUCE_LANES)
        for (int l = 0; l < KVQ_REDUCE_LANES; l++) {
            float v = x[c + l];
            lo[l] = v < lo[l] ? v : lo[l];
            hi[l] = v > hi[l] ? v : hi[l];
        }
    for (size_t c = nv; c < n; c++) {
        lo[0] = x[c] < lo[0] ? x[c] : lo[0];
        hi[0] = x[c] > hi[0] ? x[c] : hi[0];
    }
    for (int l = 1; l < KVQ_REDUCE_LANES; l++) {
        lo[0] = lo[l] < lo[0] ? lo[l] : lo[0];
        hi[0] = hi[l] > hi[0] ? hi[l] : hi[0];
    }
    *mn = lo[0];
    *mx = hi[0];
}

/* kvq_absmax() : max |x_i| over n finite values (0 for n = 0); lanes as in
 * kvq_minmax (fabsf is a mask, the max does not round: exact). */
static inline float kvq_absmax(const float *x, size_t n)
{
    float m[KVQ_REDUCE_LANES] = {0};
    size_t nv = n - n % KVQ_REDUCE_LANES;
    for (size_t c = 0; c < nv; c += KVQ_REDUCE_LANES)
        for (int l = 0; l < KVQ_REDUCE_LANES; l++) {
            float a = fabsf(x[c + l]);
            m[l] = a > m[l] ? a : m[l];
        }
    for (size_t c = nv; c < n; c++) m[0] = fabsf(x[c]) > m[0] ? fabsf(x[c]) : m[0];
    for (int l = 1; l < KVQ_REDUCE_LANES; l++) m[0] = m[l] > m[0] ? m[l] : m[0];
    return m[0];
}

/* kvq_signed_absmax() : ggml's Q4_0 "max" — the value (sign kept) of the
 * FIRST element whose magnitude is largest; +0 when all are ±0.  The
 * extremes decide it unless the largest magnitude occurs with both signs,
 * the one case that needs the ordered look-up. */
static inline float kvq_signed_absmax(const float *x, size_t n)
{
    if (n == 0) return 0.0f;
    float lo, hi;
    kvq_minmax(x, n, &lo, &hi);
    if (hi == -lo) { /* rare: the largest magnitude occurs with both signs (or all ±0) */
        if (hi == 0.0f) return 0.0f;
        for (size_t i = 0; i < n; i++)
            if (x[i] == hi || x[i] == lo) return x[i];
    }
    return hi > -lo ? hi : lo; /* a select, not a branch: the sign is data */
}

/* ---- b-bit code streams ------------------------------------------------------ */
/* Codes of `bits` bits (2..8) are written LSB first into consecutive bytes:
 * code i occupies stream bits [i·bits, (i+1)·bits).  A stream of n codes
 * takes kvq_bits_size(n, bits) bytes; unused high bits of the last byte are 0. */
static inline size_t kvq_bits_size(size_t n, unsigned bits) { return (n * bits + 7) / 8; }

typedef struct kvq_bitw {
    uint8_t *p;      /* next byte to write              */
    uint32_t acc;    /* pending bits, LSB = oldest      */
    unsigned nacc;   /* number of pending bits (< 8)    */
} kvq_bitw;

static inline kvq_bitw kvq_bitw_start(uint8_t *dst)
{
    kvq_bitw w = {dst, 0, 0};
    return w;
}

/* kvq_bitw_put() : append the low `bits` bits of code. */
static inline void kvq_bitw_put(kvq_bitw *w, uint32_t code, unsigned bits)
{
    w->acc |= (code & ((1u << bits) - 1)) << w->nacc;
    w->nacc += bits;
    while (w->nacc >= 8) {
        *w->p++ = (uint8_t)w->acc;
        w->acc >>= 8;
        w->nacc -= 8;
    }
}

/* kvq_bitw_flush() : write the partial last byte (zero-padded). */
static inline void kvq_bitw_flush(kvq_bitw *w)
{
    if (w->nacc) *w->p++ = (uint8_t)w->acc;
    w->acc = 0;
    w->nacc = 0;
}

typedef struct kvq_bitr {
    const uint8_t *p; /* next byte to read; never read past the stream */
    uint32_t acc;
    unsigned nacc;
} kvq_bitr;

static inline kvq_bitr kvq_bitr_start(const uint8_t *src)
{
    kvq_bitr r = {src, 0, 0};
    return r;
}

/* kvq_bitr_get() : next code of `bits` bits.  Reads a byte only when the
 * pending bits run short, so it never touches bytes past the stream's
 * kvq_bits_size(). */
static inline uint32_t kvq_bitr_get(kvq_bitr *r, unsigned bits)
{
    if (r->nacc < bits) {
        r->acc |= (uint32_t)*r->p++ << r->nacc;
        r->nacc += 8;
    }
    uint32_t c = r->acc & ((1u << bits) - 1);
    r->acc >>= bits;
    r->nacc -= bits;
    return c;
}

/* kvq_bits_pack() / kvq_bits_unpack() : whole arrays of n codes. */
void kvq_bits_pack(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst);
void kvq_bits_unpack(const uint8_t *src, size_t n, unsigned bits, uint8_t *codes);

/* ---- 4-bit nibbles ------------------------------------------------------------ */
/* SPLIT_HALF : ggml Q4_0 / IQ4_NL / MXFP4 — for a block of n codes, byte j
 *              holds code j (low nibble) and code j + n/2 (high nibble).
 * ADJACENT   : ModelOpt / HF FP4 — byte i holds code 2i (low), 2i+1 (high). */
typedef enum kvq_nib_layout { KVQ_NIB_SPLIT_HALF = 0, KVQ_NIB_ADJACENT = 1 } kvq_nib_layout;

/* kvq_nibbles_pack() : n (even) codes < 16 → n/2 bytes. */
static inline void kvq_nibbles_pack(const uint8_t *codes, size_t n, kvq_nib_layout l, uint8_t *dst)
{
    size_t h = n / 2;
    for (size_t j = 0; j < h; j++) {
        uint8_t lo = l == KVQ_NIB_SPLIT_HALF ? codes[j] : codes[2 * j];
        uint8_t hi = l == KVQ_NIB_SPLIT_HALF ? codes[j + h] : codes[2 * j + 1];
        dst[j] = (uint8_t)((lo & 0x0F) | (hi << 4));
    }
}

/* kvq_nibbles_unpack() : n/2 bytes → n codes. */
static inline void kvq_nibbles_unpack(const uint8_t *src, size_t n, kvq_nib_layout l, uint8_t *codes)
{
    size_t h = n / 2;
    for (size_t j = 0; j < h; j++) {
        uint8_t lo = src[j] & 0x0F, hi = src[j] >> 4;
        if (l == KVQ_NIB_SPLIT_HALF) {
            codes[j] = lo;
            codes[j + h] = hi;
        } else {
            codes[2 * j] = lo;
            codes[2 * j + 1] = hi;
        }
    }
}

/* ---- Walsh–Hadamard (quant-methods.md §0, §4.2) ------------------------- */
/* kvq_is_pow2() : n is 2^k, k >= 0. */
static inline int kvq_is_pow2(int64_t n) { return n > 0 && !(n & (n - 1)); }
/* kvq_fwht() : in place, x ← H·x with the orthonormal Walsh–Hadamard
 * matrix of size n = 2^k (Sylvester order, scale 1/√n); H is symmetric and
 * H·H = I, so applying it twice gives x back up to f32 rounding. */
void kvq_fwht(float *x, int64_t n);

#endif /* KVQ_QUANT_COMMON_H */
