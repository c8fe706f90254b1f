/*
 * avx2.c — AVX2/FMA overrides of the kernel slots (issue 9 item 2;
 * STYLE.md "Kernels follow BLIS": only what is faster is overridden).
 *
 * Every function carries __attribute__((target("avx2,fma,f16c"))) and the
 * table is filled only when __builtin_cpu_supports says the CPU has all
 * three, so the rest of the binary keeps the baseline ISA and runs
 * anywhere.
 *
 * Exactness against cpu/ref.c (tests/test_kernels.c checks it):
 *   quantize: the same f32 operations in the same order — d = amax/127 or
 *     max/−8 computed in scalar, x·id as one multiply per lane (no FMA),
 *     RHA as trunc + compare of the exact fraction (as kvq_round_rha),
 *     Q4_0 as x·id then + 8.5 then truncation.  Blocks whose scale is an
 *     f32 subnormal (ggml's undefined cases, see ref.c) and Q4_0 blocks
 *     whose largest magnitude occurs with both signs go to the reference.
 *   dequantize: (float)q · d per lane, identical to the reference.
 *   dot: per block Σ q·x in four 8-lane FMA accumulators, then d·s into
 *     the running sum: summation order differs from ref.c, so results
 *     agree within f32 rounding (tolerance in tests/test_kernels.c).
 *   dots: four rows per pass over x, each row summed exactly as dot().
 */
#include "kernels/kernels.h"
#include "kvq_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <float.h>
#include <immintrin.h>
#include <math.h>

#define AVX_TARGET __attribute__((target("avx2,fma,f16c")))
#define LANES      8
#define Q8_0_QMAX  127.0f
#define Q4_0_DIV   (-8.0f)
#define Q4_0_OFFSET 8.5f
#define Q4_0_CODE_MAX 15
#define Q4_0_ZERO  8
#define F32_ABS_MASK 0x7FFFFFFF /* all bits but the sign                    */
#define F32_EXP_MASK 0x7F800000u /* |x| bits at or above this: Inf or NaN     */

AVX_TARGET static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX_TARGET static inline float hmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX_TARGET static float absmax_avx2(const float *x, size_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    float r = hmax(m);
    for (; i < n; i++) r = fabsf(x[i]) > r ? fabsf(x[i]) : r;
    return r;
}

/* Round half away from zero of integral-range lanes, exactly as
 * kvq_round_rha: t = trunc(v), then ±1 when the exact fraction is ≥ ½. */
AVX_TARGET static inline __m256i round_rha(__m256 v)
{
    const __m256 half = _mm256_set1_ps(0.5f), nhalf = _mm256_set1_ps(-0.5f), one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(v, t);
    t = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(f, half, _CMP_GE_OQ), one));
    t = _mm256_sub_ps(t, _mm256_and_ps(_mm256_cmp_ps(f, nhalf, _CMP_LE_OQ), one));
    return _mm256_cvttps_epi32(t);
}

static inline int subnormal_scale(float d) { return d != 0.0f && fabsf(d) < FLT_MIN; }

/* The largest |x| bit pattern of four vectors, lane-wise.  For finite
 * values the integer order of |x|'s bits is the float order, and NaN/Inf
 * have the largest patterns, so one running maximum over a call both gives
 * each block's amax and detects non-finite input (as ref.c's exponent
 * maximum does) without a separate pass. */
AVX_TARGET static inline __m256i abs_bits_max(const __m256 v[4])
{
    const __m256i mag = _mm256_set1_epi32(F32_ABS_MASK);
    __m256i a0 = _mm256_and_si256(_mm256_castps_si256(v[0]), mag);
    __m256i a1 = _mm256_and_si256(_mm256_castps_si256(v[1]), mag);
    __m256i a2 = _mm256_and_si256(_mm256_castps_si256(v[2]), mag);
    __m256i a3 = _mm256_and_si256(_mm256_castps_si256(v[3]), mag);
    return _mm256_max_epi32(_mm256_max_epi32(a0, a1), _mm256_max_epi32(a2, a3));
}

AVX_TARGET static inline uint32_t hmax_u31(__m256i v)
{
    __m128i s = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_max_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_max_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return (uint32_t)_mm_cvtsi128_si32(s);
}

/* Call status from the running |x| maximum and the OR of scale checks. */
AVX_TARGET static inline unsigned call_status(__m256i amax, unsigned st)
{
    return st | (hmax_u31(amax) >= F32_EXP_MASK ? KVQ_KERN_NONFINITE : 0u);
}

/* f16 scales through F16C: both directions are IEEE conversions (RNE to
 * f16, exact to f32), the same values kvq_f32_to_f16 / kvq_f16_to_f32
 * compute, without a library call per block. */
AVX_TARGET static inline float f16_load(const uint8_t *p)
{
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(kvq_rd16(p))));
}

AVX_TARGET static inline uint16_t f16_of(float d)
{
    return (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(d), _MM_FROUND_TO_NEAREST_INT), 0);
}

AVX_TARGET static inline unsigned store_scale(uint8_t *blk, float d)
{
    uint16_t h = f16_of(d);
    kvq_wr16(blk, h);
    return (h & KVQ_F16_EXP_MASK) == KVQ_F16_EXP_MASK ? KVQ_KERN_SCALE_RANGE : 0u;
}

/* Quantizes one block; *amax accumulates the |x| bit maxima. */
AVX_TARGET static unsigned q8_0_block(const float *x, uint8_t *blk, __m256i *amax)
{
    __m256 v[4];
    for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(x + LANES * i);
    __m256i m = abs_bits_max(v);
    *amax = _mm256_max_epi32(*amax, m);
    uint32_t mb = hmax_u31(m);
    float a;
    memcpy(&a, &mb, sizeof a);
    float d = a / Q8_0_QMAX;
    if (subnormal_scale(d)) return kvq_kern_q8_0_block_ref(x, blk);
    /* A non-finite block makes d Inf/NaN and id 0/NaN: the codes below are
     * then garbage but defined (cvtt gives INT_MIN), and the call reports it. */
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i q[4];
    for (int i = 0; i < 4; i++) q[i] = round_rha(_mm256_mul_ps(v[i], id));
    /* int32 → int8: the two packs interleave 128-bit lanes; the permute
     * restores element order. */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(void *)(blk + 2), p);
    return store_scale(blk, d);
}

AVX_TARGET static unsigned q4_0_block(const float *x, uint8_t *blk, __m256i *amax)
{
    __m256 v[4];
    for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(x + LANES * i);
    *amax = _mm256_max_epi32(*amax, abs_bits_max(v));
    __m256 lo = _mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3]));
    __m256 hi = _mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3]));
    float mn = -hmax(_mm256_sub_ps(_mm256_setzero_ps(), lo)), mx = hmax(hi);
    float d = (mx > -mn ? mx : mn) / Q4_0_DIV;
    if (mx == -mn || subnormal_scale(d)) /* tie of signs, or ggml's undefined cases */
        return kvq_kern_q4_0_block_ref(x, blk);
    const __m256 id = _mm256_set1_ps(1.0f / d), off = _mm256_set1_ps(Q4_0_OFFSET);
    const __m256i cmax = _mm256_set1_epi32(Q4_0_CODE_MAX);
    __m256i c[4];
    for (int i = 0; i < 4; i++)
        c[i] = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v[i], id), off)), cmax);
    /* byte j = code j | code j+16 << 4 */
    __m256i e0 = _mm256_or_si256(c[0], _mm256_slli_epi32(c[2], 4));
    __m256i e1 = _mm256_or_si256(c[1], _mm256_slli_epi32(c[3], 4));
    __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(e0, e1), 0xD8); /* quads 0,2,1,3 */
    __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    _mm_storeu_si128((__m128i *)(void *)(blk + 2), b);
    return store_scale(blk, d);
}

AVX_TARGET static unsigned quant_q8_0(const float *x, uint8_t *dst, size_t nb)
{
    __m256i amax = _mm256_setzero_si256();
    unsigned st = 0;
    for (size_t b = 0; b < nb; b++) st |= q8_0_block(x + b * KVQ_QK, dst + b * KVQ_Q8_0_BYTES, &amax);
    return call_status(amax, st);
}

AVX_TARGET static unsigned quant_q4_0(const float *x, uint8_t *dst, size_t nb)
{
    __m256i amax = _mm256_setzero_si256();
    unsigned st = 0;
    for (size_t b = 0; b < nb; b++) st |= q4_0_block(x + b * KVQ_QK, dst + b * KVQ_Q4_0_BYTES, &amax);
    return call_status(amax, st);
}

/* The 32 codes of a block as four 8-lane float vectors (Q8_0: q; Q4_0: q − 8). */
AVX_TARGET static inline void codes_q8_0(const uint8_t *qs, __m256 f[4])
{
    for (int i = 0; i < 4; i++)
        f[i] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(qs + 8 * i))));
}

AVX_TARGET static inline void codes_q4_0(const uint8_t *qs, __m256 f[4])
{
    const __m128i mask = _mm_set1_epi8(0x0F), zero = _mm_set1_epi8(Q4_0_ZERO);
    __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)qs);
    __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, mask), zero);
    __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), mask), zero);
    f[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    f[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    f[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    f[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

AVX_TARGET static inline void codes(kvq_kt t, const uint8_t *blk, __m256 f[4])
{
    if (t == KVQ_KT_Q8_0) codes_q8_0(blk + 2, f);
    else codes_q4_0(blk + 2, f);
}

/* One generic body per operation; t is a compile-time constant at each call. */
AVX_TARGET static inline void dequant(kvq_kt t, const uint8_t *src, float *y, size_t nb)
{
    size_t bb = kvq_kern_block_bytes(t);
    for (size_t b = 0; b < nb; b++, src += bb, y += KVQ_QK) {
        __m256 f[4], d = _mm256_set1_ps(f16_load(src));
        codes(t, src, f);
        for (int i = 0; i < 4; i++) _mm256_storeu_ps(y + LANES * i, _mm256_mul_ps(f[i], d));
    }
}

AVX_TARGET static inline float dot(kvq_kt t, const uint8_t *src, const float *x, size_t nb)
{
    size_t bb = kvq_kern_block_bytes(t);
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; b++, src += bb, x += KVQ_QK) {
        __m256 f[4];
        codes(t, src, f);
        __m256 s0 = _mm256_mul_ps(f[0], _mm256_loadu_ps(x));
        __m256 s1 = _mm256_mul_ps(f[1], _mm256_loadu_ps(x + LANES));
        s0 = _mm256_fmadd_ps(f[2], _mm256_loadu_ps(x + 2 * LANES), s0);
        s1 = _mm256_fmadd_ps(f[3], _mm256_loadu_ps(x + 3 * LANES), s1);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_load(src)), _mm256_add_ps(s0, s1), acc);
    }
    return hsum(acc);
}

/* DOTS_ROWS rows against one x: each block of x is loaded once for all
 * rows.  Every row keeps dot()'s own accumulator, and the final reduction
 * is hsum()'s order for each row (halves added, a 4×4 transpose, then
 * (0 + 2) + (1 + 3)), so dots() equals dot() bit for bit, whatever rows a
 * thread is given. */
#define DOTS_ROWS 4

AVX_TARGET static inline void dots4(kvq_kt t, const uint8_t *src, size_t stride, const float *x, size_t nb,
                                    float *out)
{
    size_t bb = kvq_kern_block_bytes(t);
    __m256 acc[DOTS_ROWS];
    for (int r = 0; r < DOTS_ROWS; r++) acc[r] = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; b++, x += KVQ_QK) {
        __m256 xv[4];
        for (int i = 0; i < 4; i++) xv[i] = _mm256_loadu_ps(x + LANES * i);
        for (int r = 0; r < DOTS_ROWS; r++) {
            const uint8_t *blk = src + (size_t)r * stride + b * bb;
            __m256 f[4];
            codes(t, blk, f);
            __m256 s0 = _mm256_mul_ps(f[0], xv[0]);
            __m256 s1 = _mm256_mul_ps(f[1], xv[1]);
            s0 = _mm256_fmadd_ps(f[2], xv[2], s0);
            s1 = _mm256_fmadd_ps(f[3], xv[3], s1);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(f16_load(blk)), _mm256_add_ps(s0, s1), acc[r]);
        }
    }
    __m128 h[DOTS_ROWS];
    for (int r = 0; r < DOTS_ROWS; r++)
        h[r] = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
    _MM_TRANSPOSE4_PS(h[0], h[1], h[2], h[3]);
    _mm_storeu_ps(out, _mm_add_ps(_mm_add_ps(h[0], h[2]), _mm_add_ps(h[1], h[3])));
}

AVX_TARGET static inline void dots(kvq_kt t, const uint8_t *src, size_t stride, size_t nrows, const float *x,
                                   size_t nb, float *out)
{
    size_t r = 0;
    for (; r + DOTS_ROWS <= nrows; r += DOTS_ROWS) dots4(t, src + r * stride, stride, x, nb, out + r);
    for (; r < nrows; r++) out[r] = dot(t, src + r * stride, x, nb);
}

AVX_TARGET static void dequant_q8_0(const uint8_t *s, float *y, size_t nb) { dequant(KVQ_KT_Q8_0, s, y, nb); }
AVX_TARGET static void dequant_q4_0(const uint8_t *s, float *y, size_t nb) { dequant(KVQ_KT_Q4_0, s, y, nb); }
AVX_TARGET static float dot_q8_0(const uint8_t *s, const float *x, size_t nb) { return dot(KVQ_KT_Q8_0, s, x, nb); }
AVX_TARGET static float dot_q4_0(const uint8_t *s, const float *x, size_t nb) { return dot(KVQ_KT_Q4_0, s, x, nb); }

AVX_TARGET static void dots_q8_0(const uint8_t *s, size_t stride, size_t nrows, const float *x, size_t nb, float *o)
{
    dots(KVQ_KT_Q8_0, s, stride, nrows, x, nb, o);
}

AVX_TARGET static void dots_q4_0(const uint8_t *s, size_t stride, size_t nrows, const float *x, size_t nb, float *o)
{
    dots(KVQ_KT_Q4_0, s, stride, nrows, x, nb, o);
}

/* Plain f16 rows: F16C widens 8 values per instruction, DOTS_ROWS rows per
 * pass over x, one FMA accumulator per row, the n % 8 tail in scalar. */
AVX_TARGET static inline __m256 f16x8(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

AVX_TARGET static float dot_f16_row(const uint8_t *w, const float *x, size_t n)
{
    __m256 acc = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + LANES <= n; j += LANES) acc = _mm256_fmadd_ps(f16x8(w + 2 * j), _mm256_loadu_ps(x + j), acc);
    float s = hsum(acc);
    for (; j < n; j++) s += f16_load(w + 2 * j) * x[j];
    return s;
}

AVX_TARGET static void dots_f16(const uint8_t *w, size_t stride, size_t nrows, const float *x, size_t n, float *out)
{
    size_t r = 0, sb = stride * 2;
    for (; r + DOTS_ROWS <= nrows; r += DOTS_ROWS) {
        const uint8_t *row = w + r * sb;
        __m256 acc[DOTS_ROWS];
        for (int i = 0; i < DOTS_ROWS; i++) acc[i] = _mm256_setzero_ps();
        size_t j = 0;
        for (; j + LANES <= n; j += LANES) {
            __m256 xv = _mm256_loadu_ps(x + j);
            for (int i = 0; i < DOTS_ROWS; i++) acc[i] = _mm256_fmadd_ps(f16x8(row + i * sb + 2 * j), xv, acc[i]);
        }
        for (int i = 0; i < DOTS_ROWS; i++) {
            float s = hsum(acc[i]);
            for (size_t t = j; t < n; t++) s += f16_load(row + i * sb + 2 * t) * x[t];
            out[r + (size_t)i] = s;
        }
    }
    for (; r < nrows; r++) out[r] = dot_f16_row(w + r * sb, x, n);
}

/* F16C from CPUID leaf 1 (clang's __builtin_cpu_supports does not know
 * "f16c"; the AVX2 check already covers the OS's YMM state). */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

AVX_TARGET static void f16_gather(const uint8_t *src, size_t stride, size_t n, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] = f16_load(src + i * stride);
}

int kvq_kernels_fill_avx2(kvq_kernels *k)
{
    kvq_kernels_fill_ref(k);
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !cpu_has_f16c()) return 0;
    k->name = "avx2";
    k->quantize[KVQ_KT_Q8_0] = quant_q8_0;
    k->quantize[KVQ_KT_Q4_0] = quant_q4_0;
    k->dequantize[KVQ_KT_Q8_0] = dequant_q8_0;
    k->dequantize[KVQ_KT_Q4_0] = dequant_q4_0;
    k->dot[KVQ_KT_Q8_0] = dot_q8_0;
    k->dot[KVQ_KT_Q4_0] = dot_q4_0;
    k->dots[KVQ_KT_Q8_0] = dots_q8_0;
    k->dots[KVQ_KT_Q4_0] = dots_q4_0;
    k->absmax = absmax_avx2;
    k->dots_f16 = dots_f16;
    k->f16_gather = f16_gather;
    kvq_kern_int_fill_avx2(k);
    k->fast_dot = 1;
    return 1;
}

#else /* not x86: the reference stays in every slot */

int kvq_kernels_fill_avx2(kvq_kernels *k)
{
    kvq_kernels_fill_ref(k);
    return 0;
}

#endif
