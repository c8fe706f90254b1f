/*
 * fp_ref.c — the reference table of kernels/kern_fp.h (the fp, mxfp4,
 * nvfp4 and nupes inner loops for the baseline ISA) and the choice between
 * it and kernels/cpu/fp_avx2.c.  The slots are thin wrappers: the bodies
 * are the static inline functions of quant/fp_impl.h and quant/nupes.h.
 */
#include "kernels/kern_fp.h"
#include "kernels/kernels.h"
#include "quant/fp_impl.h"
#include "quant/nupes.h"

#include <pthread.h>
#include <string.h>

static uint32_t absmax_bits_ref(const float *x, size_t n) { return kvq_absmax_bits(x, n); }

static void codes4_ref(const kvq_fp_lut *l, const float *x, int64_t n, float inv, uint8_t *codes)
{
    fp_codes4(l, x, n, inv, codes);
}

static void codes_any_ref(const kvq_fp_lut *l, const float *x, int64_t n, float inv, uint8_t *codes)
{
    fp_codes_any(l, x, n, inv, codes);
}

static void absmax_groups_ref(const float *x, int64_t n, int64_t g, uint32_t *out)
{
    fp_absmax_groups(x, n, g, out);
}

static void codes_groups_ref(const kvq_fp_lut *l, const float *x, int64_t n, int64_t g, const float *inv,
                           uint8_t *codes)
{
    fp_codes_groups(l, x, n, g, inv, codes);
}

static size_t mx_blocks_ref(const float *x, size_t nb, uint8_t *out) { return mx_encode_blocks(x, nb, out); }

static size_t nv_blocks_ref(const float *x, size_t nb, float inv_g, uint8_t *out)
{
    return nv_encode_blocks(x, nb, inv_g, out, nv_codes_fast);
}

static int32_t nu_codes4_ref(const float *lo, const float *hi, const float *x, int64_t n, float inv, int32_t *q,
                             uint8_t *amb)
{
    return kvq_nupes_codes4(lo, hi, x, n, inv, q, amb);
}

static int32_t nu_codes_tab_ref(const kvq_nupes_bucket *tab, int32_t first, const float *x, int64_t n, float inv,
                                int32_t *q, uint8_t *amb)
{
    return kvq_nupes_codes_tab(tab, first, x, n, inv, q, amb);
}

static float mx_dot_ref(const uint8_t *blocks, int64_t nb, const float *x) { return mx_row_dot(blocks, nb, x); }
static float nv_dot_ref(const uint8_t *blocks, int64_t nb, const float *x) { return nv_row_dot(blocks, nb, x); }

static float runs_dot_ref(const uint8_t *codes, int64_t cols, int kind, const float *v, const uint8_t *sc, int64_t spr,
                          const float *x)
{
    return fp_runs_dot(codes, cols, kind, v, sc, spr, x);
}

static const kvq_fp_kernels REF = {
    .name = "ref", .absmax_bits = absmax_bits_ref, .codes4 = codes4_ref, .codes_any = codes_any_ref,
    .mx_blocks = mx_blocks_ref, .nv_blocks = nv_blocks_ref, .nu_codes4 = nu_codes4_ref,
    .nu_codes_tab = nu_codes_tab_ref, .absmax_groups = absmax_groups_ref,
    .codes_groups = codes_groups_ref, .mx_dot = mx_dot_ref, .nv_dot = nv_dot_ref, .runs_dot = runs_dot_ref,
};

static const kvq_fp_kernels *g_best;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* The AVX2 table where the main kernel table is the AVX2 one (so
 * KVQ_SIMD=ref applies here too). */
static void choose(void)
{
    const kvq_fp_kernels *avx2 = kvq_fp_kernels_avx2();
    g_best = avx2 && strcmp(kvq_kernels_get()->name, "avx2") == 0 ? avx2 : &REF;
}

const kvq_fp_kernels *kvq_fp_kernels_get(void)
{
    pthread_once(&g_once, choose);
    return g_best;
}

const kvq_fp_kernels *kvq_fp_kernels_ref(void) { return &REF; }
