/*
 * attn_avx2.c — AVX2/FMA versions of the compressed-page attention slots
 * (kernels/kern_attn.h; issue 9 item 2).  Every function carries
 * target("avx2,fma") and the table is filled only when
 * __builtin_cpu_supports reports both, so the binary runs anywhere.
 *
 * Codes are widened 16 at a time without a table: the packed word is
 * broadcast to every lane and shifted right by a per-lane amount
 * (vpsrlvd), masked to `bits` and converted to float; 8-bit codes are
 * zero-extended (vpmovzxbd).  A run of 16 codes is 4, 8 or 16 whole bytes
 * for 2, 4 and 8 bits, so runs start on a byte; the tail (n mod 16) is
 * widened one code at a time.
 *
 * Against cpu/attn_ref.c: dot_rows sums in two 8-lane FMA accumulators
 * (then a horizontal sum and the tail in order), axpy_codes computes
 * fma(a, c, b) then adds o — within f32 rounding of Σ|terms| of the
 * reference, not bit for bit (tests/test_kern_attn.c states the bound).
 */
#include "kernels/kern_attn.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#define AVX_TARGET __attribute__((target("avx2,fma")))
#define RUN        16 /* codes widened per step */

AVX_TARGET static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline uint32_t rd32(const uint8_t *p)
{
    uint32_t u;
    memcpy(&u, p, sizeof u);
    return u; /* x86 is little-endian: code 0 is in the low bits */
}

/* Codes [16j, 16j+16) of a packed row as two vectors of 8 floats. */
AVX_TARGET static inline void widen16(const uint8_t *src, unsigned bits, size_t j, __m256 *lo, __m256 *hi)
{
    if (bits == 2) {
        const __m256i sh0 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        const __m256i sh1 = _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30), m = _mm256_set1_epi32(3);
        __m256i v = _mm256_set1_epi32((int)rd32(src + 4 * j));
        *lo = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(v, sh0), m));
        *hi = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(v, sh1), m));
    } else if (bits == 4) {
        const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), m = _mm256_set1_epi32(15);
        __m256i v0 = _mm256_set1_epi32((int)rd32(src + 8 * j)), v1 = _mm256_set1_epi32((int)rd32(src + 8 * j + 4));
        *lo = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(v0, sh), m));
        *hi = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(v1, sh), m));
    } else {
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + 16 * j));
        *lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
        *hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(b, b)));
    }
}

AVX_TARGET static float dot_one(const float *w, const uint8_t *src, unsigned bits, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t runs = n / RUN;
    for (size_t j = 0; j < runs; j++) {
        __m256 lo, hi;
        widen16(src, bits, j, &lo, &hi);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + RUN * j), lo, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + RUN * j + 8), hi, a1);
    }
    float acc = hsum(_mm256_add_ps(a0, a1));
    for (size_t i = runs * RUN; i < n; i++) acc += w[i] * (float)kvq_kern_code_at(src, i, bits);
    return acc;
}

AVX_TARGET static void dot_rows_avx2(const float *w, const uint8_t *src, size_t row_stride, unsigned bits, size_t n,
                                     size_t n_rows, float *out)
{
    for (size_t r = 0; r < n_rows; r++) out[r] = dot_one(w, src + r * row_stride, bits, n);
}

AVX_TARGET static void axpy_codes_avx2(float *o, size_t o_stride, const float *a, const float *b, size_t n_out,
                                       const uint8_t *src, unsigned bits, size_t n)
{
    size_t runs = n / RUN;
    for (size_t j = 0; j < runs; j++) {
        __m256 lo, hi;
        widen16(src, bits, j, &lo, &hi); /* once for every output row */
        for (size_t r = 0; r < n_out; r++) {
            const __m256 va = _mm256_set1_ps(a[r]), vb = _mm256_set1_ps(b[r]);
            float *oj = o + r * o_stride + RUN * j;
            _mm256_storeu_ps(oj, _mm256_add_ps(_mm256_loadu_ps(oj), _mm256_fmadd_ps(va, lo, vb)));
            _mm256_storeu_ps(oj + 8, _mm256_add_ps(_mm256_loadu_ps(oj + 8), _mm256_fmadd_ps(va, hi, vb)));
        }
    }
    for (size_t i = runs * RUN; i < n; i++) {
        float ci = (float)kvq_kern_code_at(src, i, bits);
        for (size_t r = 0; r < n_out; r++) o[r * o_stride + i] = o[r * o_stride + i] + (a[r] * ci + b[r]);
    }
}

/* Eight halves at a time by the same bit move and 2^112 scaling as
 * kvq_kern_f16_finite (exact); the sign is OR-ed back in. */
AVX_TARGET static int f16_row_avx2(const uint8_t *src, float *dst, size_t n)
{
    const __m256i mag = _mm256_set1_epi32(0x7FFF), sgn = _mm256_set1_epi32(0x8000);
    const __m256i ex = _mm256_set1_epi32((int)KVQ_KERN_F16_EXP);
    const __m256 scale = _mm256_set1_ps(0x1p112f);
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i)));
        __m256 f = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(h, mag), 13)), scale);
        f = _mm256_or_ps(f, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(h, sgn), 16)));
        _mm256_storeu_ps(dst + i, f);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(_mm256_and_si256(h, ex), ex));
    }
    unsigned tail = 0;
    for (; i < n; i++) {
        uint16_t h = (uint16_t)(src[2 * i] | (unsigned)src[2 * i + 1] << 8);
        tail |= (h & KVQ_KERN_F16_EXP) == KVQ_KERN_F16_EXP;
        dst[i] = kvq_kern_f16_finite(h);
    }
    return !_mm256_testz_si256(bad, bad) || tail;
}

int kvq_kern_attn_fill_avx2(kvq_kern_attn *k)
{
    kvq_kern_attn_fill_ref(k);
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    k->name = "avx2";
    k->dot_rows = dot_rows_avx2;
    k->axpy_codes = axpy_codes_avx2;
    k->f16_row = f16_row_avx2;
    k->fast = 1;
    return 1;
}

#else /* not x86: the reference stays in every slot */

int kvq_kern_attn_fill_avx2(kvq_kern_attn *k)
{
    kvq_kern_attn_fill_ref(k);
    return 0;
}

#endif
