/*
 * test_cuda.c — the CUDA kernels (kernels/cuda/quant.cu through
 * kernels/cuda.c; issue 9 item 4) against the CPU reference table:
 * quantize bytes and dequantized floats exactly equal, the quantized GEMV
 * within GEMV_TOL of Σ|terms| per output.  Without a CUDA build or a GPU
 * every test checks that the wrappers say so (KVQ_ERR_UNSUPPORTED with a
 * detail) and then skips with a printed message.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/kernels.h"
#include "kvq.h"

#define NB        (1u << 15) /* blocks: 2^20 values                  */
#define ROWS      300        /* GEMV rows (not a multiple of 8 warps) */
#define COLS      2048
#define GEMV_TOL  1e-5       /* relative to Σ|w·x| of the row          */

static uint32_t rng = 12345u;
static float unif(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.0f * 2.0f - 1.0f;
}

static void fill(float *x, size_t n)
{
    for (size_t i = 0; i < n; i += KVQ_QK) {
        float s = ldexpf(1.0f, (int)(i / KVQ_QK % 24) - 12);
        for (size_t j = i; j < i + KVQ_QK; j++) x[j] = unif() * s;
        if (i / KVQ_QK % 7 == 0) x[i + 3] = (float)(int)(unif() * 100) + 0.5f; /* rounding ties */
    }
}

/* 1 when a device runs; otherwise checks the refusal and returns 0. */
static int have_gpu(void)
{
    if (kvq_cuda_available()) return 1;
    float x[KVQ_QK] = {0};
    uint8_t q[KVQ_Q8_0_BYTES];
    assert_int_equal(kvq_cuda_quantize(KVQ_KT_Q8_0, x, q, 1), KVQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(kvq_last_error_detail(), "CUDA"));
    printf("SKIP: %s\n", kvq_last_error_detail());
    return 0;
}

static void test_quantize_dequantize_exact(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    const kvq_kernels *ref = kvq_kernels_ref();
    float *x = malloc((size_t)NB * KVQ_QK * sizeof *x), *yg = malloc((size_t)NB * KVQ_QK * sizeof *yg),
          *yc = malloc((size_t)NB * KVQ_QK * sizeof *yc);
    uint8_t *qg = malloc((size_t)NB * KVQ_Q8_0_BYTES), *qc = malloc((size_t)NB * KVQ_Q8_0_BYTES);
    assert_true(x && yg && yc && qg && qc);
    fill(x, (size_t)NB * KVQ_QK);
    for (int t = KVQ_KT_Q8_0; t < KVQ_KT_COUNT; t++) {
        size_t bytes = (size_t)NB * kvq_kern_block_bytes((kvq_kt)t);
        assert_int_equal(kvq_cuda_quantize((kvq_kt)t, x, qg, NB), KVQ_OK);
        ref->quantize[t](x, qc, NB);
        assert_memory_equal(qg, qc, bytes);
        assert_int_equal(kvq_cuda_dequantize((kvq_kt)t, qc, yg, NB), KVQ_OK);
        ref->dequantize[t](qc, yc, NB);
        assert_memory_equal(yg, yc, (size_t)NB * KVQ_QK * sizeof *yg);
    }
    free(x), free(yg), free(yc), free(qg), free(qc);
}

static void test_gemv_tolerance(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    const kvq_kernels *ref = kvq_kernels_ref();
    size_t nb = (size_t)ROWS * COLS / KVQ_QK;
    float *w = malloc((size_t)ROWS * COLS * sizeof *w), *wd = malloc((size_t)ROWS * COLS * sizeof *wd);
    float x[COLS], y[ROWS];
    uint8_t *q = malloc(nb * KVQ_Q8_0_BYTES);
    assert_true(w && wd && q);
    fill(w, (size_t)ROWS * COLS);
    fill(x, COLS);
    for (int t = KVQ_KT_Q8_0; t < KVQ_KT_COUNT; t++) {
        size_t rb = COLS / KVQ_QK * kvq_kern_block_bytes((kvq_kt)t);
        ref->quantize[t](w, q, nb);
        ref->dequantize[t](q, wd, nb);
        assert_int_equal(kvq_cuda_gemv((kvq_kt)t, q, ROWS, COLS, x, y), KVQ_OK);
        for (int r = 0; r < ROWS; r++) {
            double mag = 0;
            for (int c = 0; c < COLS; c++) mag += fabs((double)wd[(size_t)r * COLS + c] * x[c]);
            float cpu = ref->dot[t](q + (size_t)r * rb, x, COLS / KVQ_QK);
            if (fabs((double)y[r] - cpu) > GEMV_TOL * mag + 1e-30)
                fail_msg("type %d row %d: cuda %.9g cpu %.9g", t, r, (double)y[r], (double)cpu);
        }
    }
    free(w), free(wd), free(q);
}

static void test_bad_shape(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    uint8_t q[KVQ_Q8_0_BYTES] = {0};
    float x[KVQ_QK] = {0}, y[1];
    assert_int_equal(kvq_cuda_gemv(KVQ_KT_Q8_0, q, 1, 31, x, y), KVQ_ERR_SHAPE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_dequantize_exact),
        cmocka_unit_test(test_gemv_tolerance),
        cmocka_unit_test(test_bad_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
