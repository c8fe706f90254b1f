/*
 * nupes.h — the pieces of the nupes codec that tests and integer kernels
 * use directly (quant-methods.md §2.2, §2.4).
 */
#ifndef KVQ_QUANT_NUPES_H
#define KVQ_QUANT_NUPES_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define KVQ_NUPES_MAX_LEVELS 128 /* Qm + 1 for 8 bits */

/* kvq_nupes_lut() : lvl[k] = (k/Qm)^(1/a), k = 0..Qm (the level table; the
 * full 2^b-entry table is ±lvl). */
void kvq_nupes_lut(unsigned bits, double a, float *lvl);
/* kvq_nupes_code() : q = RNE(Qm·sign(w)·(min(|w|/M, 1))^a); 0 for w = 0 or
 * M <= 0. */
int32_t kvq_nupes_code(unsigned bits, double a, float w, float M);

/* kvq_nupes_lut_fixed() : the integer-only path's table (§2.4):
 * lut[k] = round(k^(1/a)·2^F), k = 0..Qm (F >= 0, k^(1/a)·2^F < 2^31); code q
 * stands for sign(q)·lut[|q|]·R with R = M / (Qm^(1/a)·2^F), so an integer
 * GEMM over LUT-expanded weights is rescaled once by R.  Each entry is
 * within 2^−1 of k^(1/a)·2^F (R·2^−1 in value, i.e. M·2^−(F+1)/Qm^(1/a));
 * exact when 1/a is an integer (lut[k] = k^(1/a)·2^F). */
void kvq_nupes_lut_fixed(unsigned bits, double a, int F, int32_t *lut);

/* kvq_nupes_codes4() : codes of up to 4 bits (Qm <= 7) for x[n] by
 * counting band edges (quant/nupes.c "fast codes"): a = |x_j|·inv, c = #{k :
 * a >= lo[k]}, h = #{k : a >= hi[k]} over k = 1..7; q[j] = ±c with x_j's
 * sign, amb[j] = (c != h) (the caller codes those by the formula); returns
 * nonzero when any amb[j] is set.  Constant-length runs: gcc vectorises. */
#define KVQ_NUPES_RUN 32
#define KVQ_NUPES_INLINE static inline __attribute__((always_inline)) /* also into fp_avx2.c */

KVQ_NUPES_INLINE int32_t kvq_nupes_codes4_run(const float *lo, const float *hi, const float *restrict x, int64_t n,
                                              float inv, int32_t *restrict q, uint8_t *restrict amb)
{
    int32_t any = 0;
    const float a1 = lo[1], a2 = lo[2], a3 = lo[3], a4 = lo[4], a5 = lo[5], a6 = lo[6], a7 = lo[7];
    const float b1 = hi[1], b2 = hi[2], b3 = hi[3], b4 = hi[4], b5 = hi[5], b6 = hi[6], b7 = hi[7];
    for (int64_t j = 0; j < n; j++) {
        float a = fabsf(x[j]) * inv;
        int32_t c = (a >= a1) + (a >= a2) + (a >= a3) + (a >= a4) + (a >= a5) + (a >= a6) + (a >= a7);
        int32_t h = (a >= b1) + (a >= b2) + (a >= b3) + (a >= b4) + (a >= b5) + (a >= b6) + (a >= b7);
        q[j] = x[j] < 0.0f ? -c : c;
        amb[j] = (uint8_t)(c != h);
        any |= c != h;
    }
    return any;
}

KVQ_NUPES_INLINE int32_t kvq_nupes_codes4(const float *lo, const float *hi, const float *x, int64_t n, float inv,
                                          int32_t *q, uint8_t *amb)
{
    int32_t any = 0;
    int64_t full = n - n % KVQ_NUPES_RUN;
    for (int64_t c = 0; c < full; c += KVQ_NUPES_RUN)
        any |= kvq_nupes_codes4_run(lo, hi, x + c, KVQ_NUPES_RUN, inv, q + c, amb + c);
    return any | kvq_nupes_codes4_run(lo, hi, x + full, n - full, inv, q + full, amb + full);
}

/* kvq_nupes_codes_tab() : wider codes (Qm > 7) for x[n] through the bucket
 * table of quant/nupes.c: a = min(|x_j|·inv, 1); the bucket is a's bits
 * >> KVQ_NUPES_TAB_SHIFT less `first` (at least 0); c = base + (a >= lo),
 * h = base + (a >= lo·KVQ_NUPES_HI_MUL); q, amb and the result as in
 * kvq_nupes_codes4. */
#define KVQ_NUPES_TAB_SHIFT 15                /* 23 − 8 mantissa bits kept */
#define KVQ_NUPES_HI_MUL    (1.0f + 0x1p-17f)
#define KVQ_NUPES_ONE_BITS  0x3F800000u       /* 1.0f                      */

typedef struct kvq_nupes_bucket {
    float   lo;     /* the band [lo, lo·KVQ_NUPES_HI_MUL) meeting the bucket, or +inf */
    int32_t base;   /* thresholds whose band lies below the bucket                    */
} kvq_nupes_bucket;

KVQ_NUPES_INLINE int32_t kvq_nupes_codes_tab(const kvq_nupes_bucket *tab, int32_t first, const float *restrict x,
                                             int64_t n, float inv, int32_t *restrict q, uint8_t *restrict amb)
{
    int32_t any = 0;
    for (int64_t j = 0; j < n; j++) {
        float a = fabsf(x[j]) * inv;
        a = a < 1.0f ? a : 1.0f;
        uint32_t u;
        memcpy(&u, &a, 4);
        int32_t i = (int32_t)(u >> KVQ_NUPES_TAB_SHIFT) - first;
        const kvq_nupes_bucket *b = &tab[i > 0 ? i : 0];
        int32_t c = b->base + (a >= b->lo), h = b->base + (a >= b->lo * KVQ_NUPES_HI_MUL);
        q[j] = x[j] < 0.0f ? -c : c;
        amb[j] = (uint8_t)(c != h);
        any |= c != h;
    }
    return any;
}

#endif
