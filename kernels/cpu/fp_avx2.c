/*
 * fp_avx2.c — the AVX2 table of kernels/kern_fp.h: the same static inline
 * bodies as kernels/cpu/fp_ref.c (quant/fp_impl.h, quant/nupes.h) compiled
 * with target("avx2"), so gcc's vectoriser uses 8-lane registers.
 * No FMA in the encoders' target: a multiply and an add stay two roundings,
 * and the bytes equal the reference's (tests/test_fp.c checks both
 * tables); the row kernels' dot products (any summation order) use FMA.
 */
#include "kernels/kern_fp.h"

#if defined(__x86_64__) || defined(__i386__)
#include "quant/fp_impl.h"
#include "quant/nupes.h"

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#define FP_AVX2 __attribute__((target("avx2")))

FP_AVX2 static uint32_t absmax_bits_avx2(const float *x, size_t n) { return kvq_absmax_bits(x, n); }

FP_AVX2 static void codes4_avx2(const kvq_fp_lut *l, const float *x, int64_t n, float inv, uint8_t *codes)
{
    fp_codes4(l, x, n, inv, codes);
}

FP_AVX2 static void codes_any_avx2(const kvq_fp_lut *l, const float *x, int64_t n, float inv, uint8_t *codes)
{
    fp_codes_any(l, x, n, inv, codes);
}

/* Groups of 32 (the default): four 8-lane integer maxima of |x|'s bits,
 * then a shuffle tree; other group sizes by the inline body. */
FP_AVX2 static uint32_t absmax32_avx2(const float *x)
{
    const __m256i mask = _mm256_set1_epi32((int)KVQ_F32_ABS_MASK);
    __m256i m0 = _mm256_and_si256(_mm256_loadu_si256((const void *)x), mask);
    __m256i m1 = _mm256_and_si256(_mm256_loadu_si256((const void *)(x + 8)), mask);
    __m256i m2 = _mm256_and_si256(_mm256_loadu_si256((const void *)(x + 16)), mask);
    __m256i m3 = _mm256_and_si256(_mm256_loadu_si256((const void *)(x + 24)), mask);
    __m256i m = _mm256_max_epi32(_mm256_max_epi32(m0, m1), _mm256_max_epi32(m2, m3));
    __m128i h = _mm_max_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    h = _mm_max_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_max_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
    return (uint32_t)_mm_cvtsi128_si32(h);
}

FP_AVX2 static void absmax_groups_avx2(const float *x, int64_t n, int64_t g, uint32_t *out)
{
    if (g != FP_RUN) {
        fp_absmax_groups(x, n, g, out);
        return;
    }
    int64_t c = 0, i = 0;
    for (; c + FP_RUN <= n; c += FP_RUN, i++) out[i] = absmax32_avx2(x + c);
    if (c < n) out[i] = kvq_absmax_bits(x + c, (size_t)(n - c));
}

FP_AVX2 static void codes_groups_avx2(const kvq_fp_lut *l, const float *x, int64_t n, int64_t g, const float *inv,
                                    uint8_t *codes)
{
    fp_codes_groups(l, x, n, g, inv, codes);
}

FP_AVX2 static size_t mx_blocks_avx2(const float *x, size_t nb, uint8_t *out)
{
    return mx_encode_blocks(x, nb, out);
}

/* nv_codes_fast in two 8-lane halves (elements j and j + 8 share a byte):
 * the same midpoints d·k (scalar products, as there), counts of a > m_k,
 * the sign above a nonzero count, packed by packus. */
FP_AVX2 static void nv_codes_avx2(const float *v, float d, uint8_t *packed)
{
    static const float mk[7] = {0.5f, 1.5f, 2.5f, 3.5f, 5.0f, 7.0f, 10.0f};
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32((int)KVQ_F32_ABS_MASK)), fzero = _mm256_setzero_ps();
    __m256 x0 = _mm256_loadu_ps(v), x1 = _mm256_loadu_ps(v + 8);
    __m256 a0 = _mm256_and_ps(x0, absmask), a1 = _mm256_and_ps(x1, absmask);
    __m256i c0 = _mm256_setzero_si256(), c1 = _mm256_setzero_si256();
    for (int k = 0; k < 7; k++) {
        __m256 m = _mm256_set1_ps(mk[k] * d);
        c0 = _mm256_sub_epi32(c0, _mm256_castps_si256(_mm256_cmp_ps(a0, m, _CMP_GT_OQ)));
        c1 = _mm256_sub_epi32(c1, _mm256_castps_si256(_mm256_cmp_ps(a1, m, _CMP_GT_OQ)));
    }
    const __m256i eight = _mm256_set1_epi32(8), zero = _mm256_setzero_si256();
    __m256i s0 = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(x0, fzero, _CMP_LT_OQ)), eight);
    __m256i s1 = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(x1, fzero, _CMP_LT_OQ)), eight);
    c0 = _mm256_or_si256(c0, _mm256_andnot_si256(_mm256_cmpeq_epi32(c0, zero), s0));
    c1 = _mm256_or_si256(c1, _mm256_andnot_si256(_mm256_cmpeq_epi32(c1, zero), s1));
    __m256i b = _mm256_or_si256(c0, _mm256_slli_epi32(c1, 4));
    __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    _mm_storel_epi64((void *)packed, _mm_packus_epi16(w, w));
}

FP_AVX2 static size_t nv_blocks_avx2(const float *x, size_t nb, float inv_g, uint8_t *out)
{
    return nv_encode_blocks(x, nb, inv_g, out, nv_codes_avx2);
}

/* kvq_nupes_codes4 8 values at a time: c counts a >= lo[k] (k = 1..7);
 * the bands are disjoint and ordered, so the count against hi differs from
 * c exactly when a < hi[c] (hi[0] = −inf), one vpermps of hi[0..7]; the
 * n % 8 tail by the inline body. */
FP_AVX2 static int32_t nu_codes4_avx2(const float *lo, const float *hi, const float *x, int64_t n, float inv,
                                      int32_t *q, uint8_t *amb)
{
    const __m256 vinv = _mm256_set1_ps(inv), fzero = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32((int)KVQ_F32_ABS_MASK));
    const __m256 hiv = _mm256_loadu_ps(hi);
    const __m256 l1 = _mm256_set1_ps(lo[1]), l2 = _mm256_set1_ps(lo[2]), l3 = _mm256_set1_ps(lo[3]),
                 l4 = _mm256_set1_ps(lo[4]), l5 = _mm256_set1_ps(lo[5]), l6 = _mm256_set1_ps(lo[6]),
                 l7 = _mm256_set1_ps(lo[7]);
    int32_t any = 0;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 xv = _mm256_loadu_ps(x + j);
        __m256 a = _mm256_mul_ps(_mm256_and_ps(xv, absmask), vinv);
        /* −(a >= l_k) masks summed as a tree (no chain through one register) */
        __m256i g1 = _mm256_castps_si256(_mm256_cmp_ps(a, l1, _CMP_GE_OQ));
        __m256i g2 = _mm256_castps_si256(_mm256_cmp_ps(a, l2, _CMP_GE_OQ));
        __m256i g3 = _mm256_castps_si256(_mm256_cmp_ps(a, l3, _CMP_GE_OQ));
        __m256i g4 = _mm256_castps_si256(_mm256_cmp_ps(a, l4, _CMP_GE_OQ));
        __m256i g5 = _mm256_castps_si256(_mm256_cmp_ps(a, l5, _CMP_GE_OQ));
        __m256i g6 = _mm256_castps_si256(_mm256_cmp_ps(a, l6, _CMP_GE_OQ));
        __m256i g7 = _mm256_castps_si256(_mm256_cmp_ps(a, l7, _CMP_GE_OQ));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(g1, g2), _mm256_add_epi32(g3, g4)),
                                     _mm256_add_epi32(_mm256_add_epi32(g5, g6), g7));
        __m256i c = _mm256_sub_epi32(_mm256_setzero_si256(), s);
        __m256 hc = _mm256_permutevar8x32_ps(hiv, c);
        __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(xv, fzero, _CMP_LT_OQ));
        _mm256_storeu_si256((void *)(q + j), _mm256_sub_epi32(_mm256_xor_si256(c, neg), neg));
        int m = _mm256_movemask_ps(_mm256_cmp_ps(a, hc, _CMP_LT_OQ));
        memset(amb + j, 0, 8);
        for (int k = 0; m && k < 8; k++) amb[j + k] = (uint8_t)(m >> k & 1);
        any |= m;
    }
    return any | kvq_nupes_codes4(lo, hi, x + j, n - j, inv, q + j, amb + j);
}

/* kvq_nupes_codes_tab 8 values at a time: the bucket's lo and base by two
 * gathers (scale 8: the bucket's size), the same compares, q = ±c as
 * (c ^ neg) − neg; amb bytes only where a lane is ambiguous (rare); the
 * n % 8 tail by the inline body. */
FP_AVX2 static int32_t nu_codes_tab_avx2(const kvq_nupes_bucket *tab, int32_t first, const float *x, int64_t n,
                                         float inv, int32_t *q, uint8_t *amb)
{
    const __m256 vinv = _mm256_set1_ps(inv), one = _mm256_set1_ps(1.0f), himul = _mm256_set1_ps(KVQ_NUPES_HI_MUL);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32((int)KVQ_F32_ABS_MASK)), fzero = _mm256_setzero_ps();
    const __m256i vfirst = _mm256_set1_epi32(first), zero = _mm256_setzero_si256();
    const float *lo_p = &tab[0].lo;
    const int *base_p = (const int *)&tab[0].base;
    int32_t any = 0;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 xv = _mm256_loadu_ps(x + j);
        __m256 a = _mm256_min_ps(_mm256_mul_ps(_mm256_and_ps(xv, absmask), vinv), one);
        __m256i idx = _mm256_max_epi32(_mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(a), KVQ_NUPES_TAB_SHIFT),
                                                        vfirst), zero);
        __m256 lo = _mm256_i32gather_ps(lo_p, idx, (int)sizeof *tab);
        __m256i base = _mm256_i32gather_epi32(base_p, idx, (int)sizeof *tab);
        __m256i ge_lo = _mm256_castps_si256(_mm256_cmp_ps(a, lo, _CMP_GE_OQ));
        __m256i ge_hi = _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_mul_ps(lo, himul), _CMP_GE_OQ));
        __m256i c = _mm256_sub_epi32(base, ge_lo);
        __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(xv, fzero, _CMP_LT_OQ));
        _mm256_storeu_si256((void *)(q + j), _mm256_sub_epi32(_mm256_xor_si256(c, neg), neg));
        int m = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_xor_si256(ge_lo, ge_hi)));
        memset(amb + j, 0, 8);
        for (int k = 0; m && k < 8; k++) amb[j + k] = (uint8_t)(m >> k & 1);
        any |= m;
    }
    return any | kvq_nupes_codes_tab(tab, first, x + j, n - j, inv, q + j, amb + j);
}

/* ---- row kernels: 8-lane FMA sums (order differs from the reference,
 * within rowkern.h's tolerance) ---------------------------------------- */
#define FP_DOT_AVX2 __attribute__((target("avx2,fma,f16c")))

FP_DOT_AVX2 static inline float hsum8(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* the low 8 int8 lanes of v as floats */
FP_DOT_AVX2 static inline __m256 i8x8_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

/* E2M1 values doubled as int8: kv_fp4 through pshufb */
#define KV_FP4_I8 _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)

FP_DOT_AVX2 static float mx_dot_avx2(const uint8_t *p, int64_t nb, const float *x)
{
    const __m128i kv = KV_FP4_I8, m4 = _mm_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, p += MX_BYTES, x += MX_BLOCK) {
        __m128i q = _mm_loadu_si128((const void *)(p + 1));
        __m128i lo = _mm_shuffle_epi8(kv, _mm_and_si128(q, m4));
        __m128i hi = _mm_shuffle_epi8(kv, _mm_and_si128(_mm_srli_epi16(q, 4), m4));
        __m256 s = _mm256_mul_ps(i8x8_ps(lo), _mm256_loadu_ps(x));
        s = _mm256_fmadd_ps(i8x8_ps(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(x + 8), s);
        s = _mm256_fmadd_ps(i8x8_ps(hi), _mm256_loadu_ps(x + 16), s);
        s = _mm256_fmadd_ps(i8x8_ps(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(x + 24), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(mx_scale(p[0])), s, acc);
    }
    return hsum8(acc);
}

FP_DOT_AVX2 static float nv_dot_avx2(const uint8_t *p, int64_t nb, const float *x)
{
    const __m128i kv = KV_FP4_I8, m4 = _mm_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, p += NV_BYTES)
        for (int s = 0; s < NV_BLOCK / NV_SUB; s++, x += NV_SUB) {
            __m128i q = _mm_loadl_epi64((const void *)(p + NV_BLOCK / NV_SUB + s * NV_SUB / 2));
            __m128i lo = _mm_shuffle_epi8(kv, _mm_and_si128(q, m4));
            __m128i hi = _mm_shuffle_epi8(kv, _mm_and_si128(_mm_srli_epi16(q, 4), m4));
            __m256 v = _mm256_mul_ps(i8x8_ps(lo), _mm256_loadu_ps(x));
            v = _mm256_fmadd_ps(i8x8_ps(hi), _mm256_loadu_ps(x + 8), v);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(kvq_ue4m3_value(p[s]) * 0.5f), v, acc);
        }
    return hsum8(acc);
}

/* v[idx] for 8 indices: a 16-entry table as two vpermps and a blend on
 * bit 3 (vpermps reads the low 3 bits), a 256-entry one by a gather. */
FP_DOT_AVX2 static inline __m256 lut8(__m256i idx, int wide, const float *v, __m256 vlo, __m256 vhi)
{
    if (wide) return _mm256_i32gather_ps(v, idx, 4);
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(vlo, idx), _mm256_permutevar8x32_ps(vhi, idx),
                            _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

/* Σ v[c_j]·x_j over one full run of 32 codes, 8 lanes. */
FP_DOT_AVX2 static inline __m256 run32(const uint8_t *src, int kind, const float *v, __m256 vlo, __m256 vhi,
                                       const float *x)
{
    const int wide = kind == FP_DOT_BYTE;
    __m128i lo, hi;
    if (wide) {
        lo = _mm_loadu_si128((const void *)src);
        hi = _mm_loadu_si128((const void *)(src + 16));
    } else {
        const __m128i m4 = _mm_set1_epi8(0x0F);
        __m128i q = _mm_loadu_si128((const void *)src);
        lo = _mm_and_si128(q, m4);
        hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
        if (kind == FP_DOT_ADJ) { /* byte i holds codes 2i (low) and 2i + 1 (high) */
            __m128i a = _mm_unpacklo_epi8(lo, hi);
            hi = _mm_unpackhi_epi8(lo, hi);
            lo = a;
        }
    }
    __m256 t = _mm256_mul_ps(lut8(_mm256_cvtepu8_epi32(lo), wide, v, vlo, vhi), _mm256_loadu_ps(x));
    t = _mm256_fmadd_ps(lut8(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)), wide, v, vlo, vhi), _mm256_loadu_ps(x + 8),
                        t);
    t = _mm256_fmadd_ps(lut8(_mm256_cvtepu8_epi32(hi), wide, v, vlo, vhi), _mm256_loadu_ps(x + 16), t);
    return _mm256_fmadd_ps(lut8(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)), wide, v, vlo, vhi),
                           _mm256_loadu_ps(x + 24), t);
}

/* The same with int8 values through pshufb (FP_DOT_I8), as mx_dot_avx2. */
FP_DOT_AVX2 static inline __m256 run32_i8(const uint8_t *src, int kind, __m128i kv, const float *x)
{
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m128i q = _mm_loadu_si128((const void *)src);
    __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
    if (kind == FP_DOT_ADJ) {
        __m128i a = _mm_unpacklo_epi8(lo, hi);
        hi = _mm_unpackhi_epi8(lo, hi);
        lo = a;
    }
    lo = _mm_shuffle_epi8(kv, lo);
    hi = _mm_shuffle_epi8(kv, hi);
    __m256 t = _mm256_mul_ps(i8x8_ps(lo), _mm256_loadu_ps(x));
    t = _mm256_fmadd_ps(i8x8_ps(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(x + 8), t);
    t = _mm256_fmadd_ps(i8x8_ps(hi), _mm256_loadu_ps(x + 16), t);
    return _mm256_fmadd_ps(i8x8_ps(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(x + 24), t);
}

/* fp_runs_dot: a row scale (spr <= 0) multiplies the sum once; f16 scales
 * (every spr runs) are widened by F16C (exact; finite: checked at bind). */
FP_DOT_AVX2 static float runs_dot_avx2(const uint8_t *src, int64_t cols, int kind, const float *v, const uint8_t *sc,
                                       int64_t spr, const float *x)
{
    const int i8 = kind & FP_DOT_I8;
    kind &= ~FP_DOT_I8;
    const __m256 vlo = _mm256_loadu_ps(v), vhi = _mm256_loadu_ps(v + 8);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(_mm256_cvtps_epi32(vlo)),
                                      _mm256_extracti128_si256(_mm256_cvtps_epi32(vlo), 1)),
                  w2 = _mm_packs_epi32(_mm256_castsi256_si128(_mm256_cvtps_epi32(vhi)),
                                       _mm256_extracti128_si256(_mm256_cvtps_epi32(vhi), 1)),
                  kv = _mm_packs_epi16(w, w2); /* the int8 table (used when i8) */
    const int64_t full = cols / FP_RUN, step = kind == FP_DOT_BYTE ? FP_RUN : FP_RUN / 2;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t r = 0; r < full; r++) {
        const uint8_t *p = src + r * step;
        __m256 t = i8 ? run32_i8(p, kind, kv, x + r * FP_RUN) : run32(p, kind, v, vlo, vhi, x + r * FP_RUN);
        if (spr <= 0) {
            acc = _mm256_add_ps(acc, t);
        } else {
            uint16_t h;
            memcpy(&h, sc + 2 * (r / spr), 2);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)))), t, acc);
        }
    }
    float sum = hsum8(acc) * (spr <= 0 ? fp_run_scale(sc, spr, 0) : 1.0f);
    if (full * FP_RUN < cols) { /* the shorter last run */
        uint8_t codes[FP_RUN];
        int64_t k = fp_run_unpack(src, cols, kind, full * FP_RUN, codes);
        sum += fp_run_scale(sc, spr, full) * fp_dot_lut(codes, k, v, x + full * FP_RUN);
    }
    return i8 ? sum * v[16] : sum;
}

static const kvq_fp_kernels AVX2 = {
    .name = "avx2", .absmax_bits = absmax_bits_avx2, .codes4 = codes4_avx2, .codes_any = codes_any_avx2,
    .mx_blocks = mx_blocks_avx2, .nv_blocks = nv_blocks_avx2, .nu_codes4 = nu_codes4_avx2,
    .nu_codes_tab = nu_codes_tab_avx2, .absmax_groups = absmax_groups_avx2,
    .codes_groups = codes_groups_avx2, .mx_dot = mx_dot_avx2, .nv_dot = nv_dot_avx2, .runs_dot = runs_dot_avx2,
};

const kvq_fp_kernels *kvq_fp_kernels_avx2(void)
{
    __builtin_cpu_init();
    unsigned a, b, c, d; /* F16C from CPUID leaf 1 (not every compiler's __builtin_cpu_supports knows it) */
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c ? &AVX2 : NULL;
}

#else /* not x86: the reference only */

const kvq_fp_kernels *kvq_fp_kernels_avx2(void) { return NULL; }

#endif
