/*
 * attn_ref.c — scalar reference of the compressed-page attention slots
 * (kernels/kern_attn.h; issue 9 item 1) and the choice of table once per
 * process: the reference, overridden by cpu/attn_avx2.c when the CPU has
 * AVX2 and FMA and KVQ_SIMD is not "ref".
 *
 * Arithmetic (what the SIMD versions are measured against):
 *   dot_rows   : per row acc = 0; acc += w[i]·(float)c[i] for i ascending;
 *   axpy_codes : o[r][i] = o[r][i] + (a[r]·(float)c[i] + b[r]).
 * dot_rows scores ROWS_ILP rows side by side (independent sums, the same
 * order per row), as the cache's f32 score loop does.
 */
#include "kernels/kern_attn.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ROWS_ILP 4 /* rows summed side by side */

/* RUN codes starting at code 16·j of a packed row, widened to floats.  One
 * loop of constant length per width (gcc -O2 vectorises only those); a
 * run is 4, 8 or 16 whole bytes. */
#define RUN 16
static inline void widen_run(const uint8_t *restrict src, unsigned bits, size_t j, float *restrict c)
{
    if (bits == 2) {
        const uint8_t *p = src + 4 * j;
        for (int k = 0; k < RUN / 4; k++) {
            c[4 * k] = (float)(p[k] & 3);
            c[4 * k + 1] = (float)((p[k] >> 2) & 3);
            c[4 * k + 2] = (float)((p[k] >> 4) & 3);
            c[4 * k + 3] = (float)(p[k] >> 6);
        }
    } else if (bits == 4) {
        const uint8_t *p = src + 8 * j;
        for (int k = 0; k < RUN / 2; k++) {
            c[2 * k] = (float)(p[k] & 15);
            c[2 * k + 1] = (float)(p[k] >> 4);
        }
    } else {
        const uint8_t *p = src + 16 * j;
        for (int i = 0; i < RUN; i++) c[i] = (float)p[i];
    }
}

static float dot_one(const float *w, const uint8_t *src, unsigned bits, size_t n)
{
    float c[RUN], acc = 0.0f;
    size_t runs = n / RUN;
    for (size_t j = 0; j < runs; j++) {
        widen_run(src, bits, j, c);
        for (int i = 0; i < RUN; i++) acc += w[RUN * j + (size_t)i] * c[i];
    }
    for (size_t i = runs * RUN; i < n; i++) acc += w[i] * (float)kvq_kern_code_at(src, i, bits);
    return acc;
}

static void dot_rows_ref(const float *w, const uint8_t *src, size_t row_stride, unsigned bits, size_t n,
                         size_t n_rows, float *out)
{
    size_t r = 0, runs = n / RUN;
    for (; r + ROWS_ILP <= n_rows; r += ROWS_ILP) {
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f, c[ROWS_ILP][RUN];
        const uint8_t *row = src + r * row_stride;
        for (size_t j = 0; j < runs; j++) {
            for (int u = 0; u < ROWS_ILP; u++) widen_run(row + (size_t)u * row_stride, bits, j, c[u]);
            const float *wj = w + RUN * j;
            for (int i = 0; i < RUN; i++) {
                s0 += wj[i] * c[0][i];
                s1 += wj[i] * c[1][i];
                s2 += wj[i] * c[2][i];
                s3 += wj[i] * c[3][i];
            }
        }
        for (size_t i = runs * RUN; i < n; i++) {
            s0 += w[i] * (float)kvq_kern_code_at(row, i, bits);
            s1 += w[i] * (float)kvq_kern_code_at(row + row_stride, i, bits);
            s2 += w[i] * (float)kvq_kern_code_at(row + 2 * row_stride, i, bits);
            s3 += w[i] * (float)kvq_kern_code_at(row + 3 * row_stride, i, bits);
        }
        out[r] = s0, out[r + 1] = s1, out[r + 2] = s2, out[r + 3] = s3;
    }
    for (; r < n_rows; r++) out[r] = dot_one(w, src + r * row_stride, bits, n);
}

static void axpy_codes_ref(float *o, size_t o_stride, const float *a, const float *b, size_t n_out,
                           const uint8_t *src, unsigned bits, size_t n)
{
    float c[RUN];
    size_t runs = n / RUN;
    for (size_t j = 0; j < runs; j++) {
        widen_run(src, bits, j, c);
        for (size_t r = 0; r < n_out; r++) {
            float *restrict oj = o + r * o_stride + RUN * j;
            const float ar = a[r], br = b[r];
            for (int i = 0; i < RUN; i++) oj[i] = oj[i] + (ar * c[i] + br);
        }
    }
    for (size_t i = runs * RUN; i < n; i++) {
        float ci = (float)kvq_kern_code_at(src, i, bits);
        for (size_t r = 0; r < n_out; r++) o[r * o_stride + i] = o[r * o_stride + i] + (a[r] * ci + b[r]);
    }
}

static int f16_row_ref(const uint8_t *src, float *dst, size_t n)
{
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(src[2 * i] | (unsigned)src[2 * i + 1] << 8);
        bad |= (h & KVQ_KERN_F16_EXP) == KVQ_KERN_F16_EXP;
        dst[i] = kvq_kern_f16_finite(h);
    }
    return bad != 0;
}

void kvq_kern_attn_fill_ref(kvq_kern_attn *k)
{
    k->name = "ref";
    k->dot_rows = dot_rows_ref;
    k->axpy_codes = axpy_codes_ref;
    k->f16_row = f16_row_ref;
    k->fast = 0; /* KIVI pages decode faster than these loops read them */
}

/* ---- the table in use ---------------------------------------------------------- */

static kvq_kern_attn g_ref, g_avx2;
static const kvq_kern_attn *g_best;
static int g_have_avx2;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
    kvq_kern_attn_fill_ref(&g_ref);
    g_have_avx2 = kvq_kern_attn_fill_avx2(&g_avx2);
    const char *env = getenv("KVQ_SIMD");
    g_best = g_have_avx2 && !(env && strcmp(env, "ref") == 0) ? &g_avx2 : &g_ref;
}

const kvq_kern_attn *kvq_kern_attn_get(void)
{
    pthread_once(&g_once, choose);
    return g_best;
}

const kvq_kern_attn *kvq_kern_attn_ref(void)
{
    pthread_once(&g_once, choose);
    return &g_ref;
}

const kvq_kern_attn *kvq_kern_attn_avx2(void)
{
    pthread_once(&g_once, choose);
    return g_have_avx2 ? &g_avx2 : NULL;
}
