/*
 * int_avx2.c — AVX2/FMA versions of the integer-code slots (kernels.h
 * codes_dot / codes_dequant) for rtn, bfp and mxint8 rows (issue 9 items
 * 1–2; STYLE.md "Kernels follow BLIS").
 *
 * 8-bit codes are bytes already; 4-bit codes (two per byte, low nibble
 * first) are split and interleaved in registers, 16 per step; every other
 * width, and the tail of a group, goes through kvq_bits_unpack into a
 * small buffer first.  Bytes become floats with vpmovzxbd + vcvtdq2ps.
 *   codes_dot: two FMA accumulators for Σ (code − off)·x, one add chain
 *     for Σ x:
 *     a different summation order from int_ref.c (tolerance tests).
 *   codes_dequant: (float)code − off, · scale, + zero as three separate
 *     vector operations (no FMA), identical to the reference float for
 *     float.
 *   codes_quant: x − z, · id, RHA by truncation and the exact fraction,
 *     clamp, + off — the reference's operations, so identical bytes; 8-
 *     and 4-bit codes are packed in registers (nibble pairs by vpmaddubsw
 *     with weights 1 and 16), other widths by the library packer.
 * Compiled with target attributes and installed only by
 * kvq_kernels_fill_avx2() after the CPU check, like cpu/avx2.c.
 */
#include "kernels/kernels.h"
#include "kvq_internal.h"
#include "quant/quant_common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define INT_TARGET __attribute__((target("avx2,fma,f16c")))
#define INT_INLINE __attribute__((always_inline)) inline /* accumulators stay in registers */
#define INT_LANES  8   /* floats per vector                               */
#define NIB_STEP   16  /* 4-bit codes per step (8 bytes)                  */
#define INT_CHUNK  256 /* codes unpacked per pass (whole bytes)           */
#define NIB_MASK   0x0F

INT_TARGET static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INT_TARGET static inline __m256 u8x8(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)); }

INT_TARGET static inline __m128i load8(const uint8_t *p) { return _mm_loadl_epi64((const __m128i *)(const void *)p); }

/* 16 codes of 4 bits from 8 bytes, in order, as 16 bytes. */
INT_TARGET static inline __m128i nibbles16(const uint8_t *p)
{
    const __m128i m = _mm_set1_epi8(NIB_MASK);
    __m128i b = load8(p);
    return _mm_unpacklo_epi8(_mm_and_si128(b, m), _mm_and_si128(_mm_srli_epi16(b, 4), m));
}

typedef struct {
    __m256 c0, c1, s; /* Σ (code − off)·x (two chains), Σ x */
    __m256 off;
    float tc, ts, off1; /* scalar tails, off                  */
} dot_acc;

/* n codes already bytes. */
INT_TARGET static INT_INLINE void u8_dot(const uint8_t *c, size_t n, const float *x, dot_acc *a)
{
    size_t i = 0;
    for (; i + 2 * INT_LANES <= n; i += 2 * INT_LANES) {
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + INT_LANES);
        a->c0 = _mm256_fmadd_ps(_mm256_sub_ps(u8x8(load8(c + i)), a->off), x0, a->c0);
        a->c1 = _mm256_fmadd_ps(_mm256_sub_ps(u8x8(load8(c + i + INT_LANES)), a->off), x1, a->c1);
        a->s = _mm256_add_ps(a->s, _mm256_add_ps(x0, x1));
    }
    for (; i < n; i++) {
        a->tc += ((float)c[i] - a->off1) * x[i];
        a->ts += x[i];
    }
}

INT_TARGET static inline dot_acc acc_start(float off)
{
    dot_acc a = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_set1_ps(off), 0.0f, 0.0f, off};
    return a;
}

/* Codes [0, n) of any width through the unpack buffer, summed into its
 * own accumulators (out of line: the caller's stay in registers). */
INT_TARGET static dot_acc packed_dot(const uint8_t *codes, unsigned bits, size_t n, const float *x, float off)
{
    dot_acc a = acc_start(off);
    uint8_t c[INT_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += INT_CHUNK) {
        size_t k = n - i0 < INT_CHUNK ? n - i0 : INT_CHUNK;
        kvq_bits_unpack(codes + i0 * bits / 8, k, bits, c);
        u8_dot(c, k, x + i0, &a);
    }
    return a;
}

/* The sums of one group into a (any width, any length). */
INT_TARGET static INT_INLINE void group_sums(const uint8_t *codes, unsigned bits, size_t n, const float *x, dot_acc *a)
{
    if (bits == 8) {
        u8_dot(codes, n, x, a);
        return;
    }
    size_t i = 0;
    if (bits == 4)
        for (; i + NIB_STEP <= n; i += NIB_STEP) {
            __m128i c = nibbles16(codes + i / 2);
            __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + INT_LANES);
            a->c0 = _mm256_fmadd_ps(_mm256_sub_ps(u8x8(c), a->off), x0, a->c0);
            a->c1 = _mm256_fmadd_ps(_mm256_sub_ps(u8x8(_mm_srli_si128(c, 8)), a->off), x1, a->c1);
            a->s = _mm256_add_ps(a->s, _mm256_add_ps(x0, x1));
        }
    if (i == n) return;
    dot_acc t = packed_dot(codes + i * bits / 8, bits, n - i, x + i, a->off1);
    a->c0 = _mm256_add_ps(a->c0, _mm256_add_ps(t.c0, t.c1));
    a->s = _mm256_add_ps(a->s, t.s);
    a->tc += t.tc;
    a->ts += t.ts;
}

INT_TARGET static void codes_dot_avx2(const uint8_t *codes, unsigned bits, size_t n, float off, const float *x,
                                      float *cx, float *sx)
{
    dot_acc a = acc_start(off);
    group_sums(codes, bits, n, x, &a);
    *cx = hsum8(_mm256_add_ps(a.c0, a.c1)) + a.tc;
    *sx = hsum8(a.s) + a.ts;
}

/* Each group's vector sums are scaled into one running vector (no
 * horizontal sum per group); scalar tails into one running float.  One
 * body, instantiated with and without the bias term. */
INT_TARGET static INT_INLINE float row_dot(const uint8_t *codes, unsigned bits, size_t n, size_t group, float off,
                                           const float *scale, const float *bias, const float *x, int with_bias)
{
    __m256 acc = _mm256_setzero_ps();
    float tail = 0.0f;
    for (size_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        dot_acc a = acc_start(off);
        group_sums(codes + g0 * bits / 8, bits, n - g0 < group ? n - g0 : group, x + g0, &a);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(scale[g]), _mm256_add_ps(a.c0, a.c1), acc);
        tail += scale[g] * a.tc;
        if (with_bias) {
            acc = _mm256_fmadd_ps(_mm256_set1_ps(bias[g]), a.s, acc);
            tail += bias[g] * a.ts;
        }
    }
    return hsum8(acc) + tail;
}

INT_TARGET static float codes_row_dot_avx2(const uint8_t *codes, unsigned bits, size_t n, size_t group, float off,
                                           const float *scale, const float *bias, const float *x)
{
    return bias ? row_dot(codes, bits, n, group, off, scale, bias, x, 1)
                : row_dot(codes, bits, n, group, off, scale, NULL, x, 0);
}

/* y = zero + scale·(c − off) for 8 codes as bytes. */
INT_TARGET static inline void deq8(__m128i b, __m256 scale, __m256 zero, __m256 off, float *y)
{
    _mm256_storeu_ps(y, _mm256_add_ps(zero, _mm256_mul_ps(scale, _mm256_sub_ps(u8x8(b), off))));
}

INT_TARGET static void u8_dequant(const uint8_t *c, size_t n, float scale, float zero, float off, float *y)
{
    const __m256 vs = _mm256_set1_ps(scale), vz = _mm256_set1_ps(zero), vo = _mm256_set1_ps(off);
    size_t i = 0;
    for (; i + INT_LANES <= n; i += INT_LANES) deq8(load8(c + i), vs, vz, vo, y + i);
    for (; i < n; i++) {
        float t = scale * ((float)c[i] - off); /* own statement: no FMA contraction */
        y[i] = zero + t;
    }
}

INT_TARGET static void codes_dequant_avx2(const uint8_t *codes, unsigned bits, size_t n, float scale, float zero,
                                          float off, float *y)
{
    size_t i = 0;
    if (bits == 8) {
        u8_dequant(codes, n, scale, zero, off, y);
        return;
    }
    if (bits == 4) {
        const __m256 vs = _mm256_set1_ps(scale), vz = _mm256_set1_ps(zero), vo = _mm256_set1_ps(off);
        for (; i + NIB_STEP <= n; i += NIB_STEP) {
            __m128i c = nibbles16(codes + i / 2);
            deq8(c, vs, vz, vo, y + i);
            deq8(_mm_srli_si128(c, 8), vs, vz, vo, y + i + INT_LANES);
        }
    }
    uint8_t c[INT_CHUNK];
    for (size_t i0 = i; i0 < n; i0 += INT_CHUNK) {
        size_t k = n - i0 < INT_CHUNK ? n - i0 : INT_CHUNK;
        kvq_bits_unpack(codes + i0 * bits / 8, k, bits, c);
        u8_dequant(c, k, scale, zero, off, y + i0);
    }
}

/* 8 codes as int32: clamp(RHA((x − z)·id), lo, hi) + off — RHA as
 * kvq_round_rha: t = trunc(v), ±1 when the exact fraction v − t is ≥ ½. */
typedef struct {
    __m256 z, id, half, nhalf;
    __m256i lo, hi, off;
} quant_consts;

INT_TARGET static inline __m256i quant8(const float *x, const quant_consts *k)
{
    __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x), k->z), k->id);
    __m256i t = _mm256_cvttps_epi32(v);
    __m256 f = _mm256_sub_ps(v, _mm256_cvtepi32_ps(t));
    t = _mm256_sub_epi32(t, _mm256_castps_si256(_mm256_cmp_ps(f, k->half, _CMP_GE_OQ)));  /* true = −1 */
    t = _mm256_add_epi32(t, _mm256_castps_si256(_mm256_cmp_ps(f, k->nhalf, _CMP_LE_OQ)));
    t = _mm256_min_epi32(_mm256_max_epi32(t, k->lo), k->hi);
    return _mm256_add_epi32(t, k->off);
}

/* 16 codes (0..255) as 16 bytes in order. */
INT_TARGET static inline __m128i quant16(const float *x, const quant_consts *k)
{
    __m256i w = _mm256_packus_epi32(quant8(x, k), quant8(x + INT_LANES, k)); /* lanes: a0-3 b0-3 | a4-7 b4-7 */
    w = _mm256_permute4x64_epi64(w, 0xD8);
    return _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

INT_TARGET static void codes_quant_avx2(const float *x, size_t n, float z, float id, int32_t lo, int32_t hi,
                                        int32_t off, unsigned bits, uint8_t *codes)
{
    const quant_consts k = {_mm256_set1_ps(z), _mm256_set1_ps(id), _mm256_set1_ps(0.5f), _mm256_set1_ps(-0.5f),
                            _mm256_set1_epi32(lo), _mm256_set1_epi32(hi), _mm256_set1_epi32(off)};
    const __m128i pair = _mm_set1_epi16(0x1001); /* bytes (1, 16): low nibble + 16 · high nibble */
    uint8_t c[INT_CHUNK];
    size_t i = 0;
    if (bits == 8)
        for (; i + NIB_STEP <= n; i += NIB_STEP) _mm_storeu_si128((__m128i *)(void *)(codes + i), quant16(x + i, &k));
    if (bits == 4)
        for (; i + NIB_STEP <= n; i += NIB_STEP) {
            __m128i b = _mm_maddubs_epi16(quant16(x + i, &k), pair); /* 8 × (c0 + 16·c1), < 256 */
            _mm_storel_epi64((__m128i *)(void *)(codes + i / 2), _mm_packus_epi16(b, b));
        }
    for (size_t i0 = i; i0 < n; i0 += INT_CHUNK) { /* other widths, and tails: bytes, then the packer */
        size_t m = n - i0 < INT_CHUNK ? n - i0 : INT_CHUNK, j = 0;
        for (; j + NIB_STEP <= m; j += NIB_STEP) _mm_storeu_si128((__m128i *)(void *)(c + j), quant16(x + i0 + j, &k));
        for (; j < m; j++) {
            int32_t q = kvq_round_rha((x[i0 + j] - z) * id);
            q = q < lo ? lo : q;
            q = q > hi ? hi : q;
            c[j] = (uint8_t)(q + off);
        }
        kvq_bits_pack(c, m, bits, codes + i0 * bits / 8);
    }
}

void kvq_kern_int_fill_avx2(kvq_kernels *k)
{
    k->codes_dot = codes_dot_avx2;
    k->codes_dequant = codes_dequant_avx2;
    k->codes_row_dot = codes_row_dot_avx2;
    k->codes_quant = codes_quant_avx2;
}

#else /* not x86: the reference stays */

void kvq_kern_int_fill_avx2(kvq_kernels *k) { (void)k; }

#endif
