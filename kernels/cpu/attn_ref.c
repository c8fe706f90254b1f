/*
 * attn_ref.c — scalar reference of the compressed-page attention slots
 * (kernels/kern_attn.h; issue 9 item 1) and the choice of table once per
 * process: the reference, overridden by cpu/attn_avx2.c when the CPU has
 * AVX2 and FMA and KVQ_SIMD is not "ref".
 *
 * Arithmetic (what the SIMD versions are measured against):
 *   dot_rows   : per row acc = 0; acc += w[i]·(float)c[i] for i ascending;
 *   axpy_codes : o[i] = o[i] + (a·(float)c[i] + b).
 * dot_rows scores ROWS_ILP rows side by side (independent sums, the same
 * order per row), as the cache's f32 score loop does.
 */
#include "kernels/kern_attn.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ROWS_ILP 4 /* rows summed side by side */

/* Codes [i0, i0+m) of a packed row widened to floats. */
static void widen(const uint8_t *src, unsigned bits, size_t i0, size_t m, float *c)
{
    if (bits == 8) {
        for (size_t i = 0; i < m; i++) c[i] = (float)src[i0 + i];
        return;
    }
    for (size_t i = 0; i < m; i++) c[i] = (float)kvq_kern_code_at(src, i0 + i, bits);
}

#define WIDEN_CHUNK 64 /* codes widened per pass */

static float dot_one(const float *w, const uint8_t *src, unsigned bits, size_t n)
{
    float c[WIDEN_CHUNK], acc = 0.0f;
    for (size_t i0 = 0; i0 < n; i0 += WIDEN_CHUNK) {
        size_t m = n - i0 < WIDEN_CHUNK ? n - i0 : WIDEN_CHUNK;
        widen(src, bits, i0, m, c);
        for (size_t i = 0; i < m; i++) acc += w[i0 + i] * c[i];
    }
    return acc;
}

static void dot_rows_ref(const float *w, const uint8_t *src, size_t row_stride, unsigned bits, size_t n,
                         size_t n_rows, float *out)
{
    size_t r = 0;
    for (; r + ROWS_ILP <= n_rows; r += ROWS_ILP) {
        float acc[ROWS_ILP] = {0.0f, 0.0f, 0.0f, 0.0f}, c[ROWS_ILP][WIDEN_CHUNK];
        for (size_t i0 = 0; i0 < n; i0 += WIDEN_CHUNK) {
            size_t m = n - i0 < WIDEN_CHUNK ? n - i0 : WIDEN_CHUNK;
            for (int u = 0; u < ROWS_ILP; u++) widen(src + (r + (size_t)u) * row_stride, bits, i0, m, c[u]);
            for (size_t i = 0; i < m; i++)
                for (int u = 0; u < ROWS_ILP; u++) acc[u] += w[i0 + i] * c[u][i];
        }
        for (int u = 0; u < ROWS_ILP; u++) out[r + (size_t)u] = acc[u];
    }
    for (; r < n_rows; r++) out[r] = dot_one(w, src + r * row_stride, bits, n);
}

static void axpy_codes_ref(float *o, float a, float b, const uint8_t *src, unsigned bits, size_t n)
{
    float c[WIDEN_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += WIDEN_CHUNK) {
        size_t m = n - i0 < WIDEN_CHUNK ? n - i0 : WIDEN_CHUNK;
        widen(src, bits, i0, m, c);
        for (size_t i = 0; i < m; i++) o[i0 + i] = o[i0 + i] + (a * c[i] + b);
    }
}

void kvq_kern_attn_fill_ref(kvq_kern_attn *k)
{
    k->name = "ref";
    k->dot_rows = dot_rows_ref;
    k->axpy_codes = axpy_codes_ref;
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
