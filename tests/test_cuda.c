/*
 * test_cuda.c — the CUDA kernels (the kernels/cuda/ .cu files through kernels/cuda.c;
 * issue 9 item 4) against the CPU reference:
 *   - quantize bytes and dequantized floats exactly equal to the CPU codecs
 *     (q8_0/q4_0 through the kernel slots, mxfp4/nvfp4 quant/fp_mx.c) on
 *     2^20 values, and to ggml's golden bytes in ../shared/data/golden
 *     ($KVQ_DATA/golden when set, as the CLI; skipped with a message when
 *     absent; nvfp4: dequantize only, as ggml stores no tensor scale);
 *   - GEMV, cuBLAS GEMM over dequantized tiles, GEAR's low-rank residual
 *     and scores, and attention over q8_0/q4_0 pages (vs kvq_cache_attend)
 *     within stated tolerances relative to Σ|terms|.
 * Without a CUDA build or a GPU those tests check that a valid call says
 * so (KVQ_ERR_UNSUPPORTED, detail naming CUDA) and skip with a printed
 * message.  The geometry helpers and every argument check run everywhere.
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

#define NB        (1u << 15) /* blocks of 32: 2^20 values                */
#define ROWS      300        /* GEMV/GEMM rows (not a multiple of 8 warps) */
#define COLS      2048
#define TOKENS    5          /* GEMM batch                               */
#define GEMV_TOL  1e-5       /* relative to Σ|w·x| of the output          */
#define BLAS_TOL  1e-4       /* GEMM, low rank: relative to Σ|terms|      */
#define ATT_TOL   1e-4       /* attention: relative to max |v|            */
#define DATA_DIR  "../shared/data"  /* or $KVQ_DATA: golden/ = ggml's encodings */

static uint32_t rng = 12345u;
static float unif(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.0f * 2.0f - 1.0f;
}

/* Blocks of 32 over 24 binades, rounding ties, E2M1 midpoints, zero blocks. */
static void fill(float *x, size_t n)
{
    for (size_t i = 0; i < n; i += KVQ_QK) {
        size_t b = i / KVQ_QK;
        float s = ldexpf(1.0f, (int)(b % 24) - 12);
        for (size_t j = i; j < i + KVQ_QK; j++) x[j] = unif() * s;
        if (b % 7 == 0) x[i + 3] = (float)(int)(unif() * 100) + 0.5f; /* rounding ties */
        if (b % 11 == 0) /* exact E2M1 midpoints at the block's scale (amax 4) */
            for (int j = 0; j < 8; j++) x[i + j] = (j % 2 ? -0.25f : 1.25f) * (float)(j + 1) / 2.0f;
        if (b % 13 == 0) memset(x + i, 0, KVQ_QK * sizeof *x);
    }
}

/* 1 when a device runs; otherwise checks the refusal and returns 0. */
static int have_gpu(void)
{
    if (kvq_cuda_available()) return 1;
    float x[KVQ_QK] = {0};
    uint8_t q[KVQ_Q8_0_BYTES];
    assert_int_equal(kvq_cuda_quantize(KVQ_CF_Q8_0, x, q, 1), KVQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(kvq_last_error_detail(), "CUDA"));
    printf("SKIP: %s\n", kvq_last_error_detail());
    return 0;
}

/* ---- every machine ----------------------------------------------------------- */
static void test_geometry(void **state)
{
    (void)state;
    assert_int_equal(kvq_cuda_block_values(KVQ_CF_Q8_0), 32);
    assert_int_equal(kvq_cuda_block_values(KVQ_CF_Q4_0), 32);
    assert_int_equal(kvq_cuda_block_values(KVQ_CF_MXFP4), 32);
    assert_int_equal(kvq_cuda_block_values(KVQ_CF_NVFP4), 64);
    assert_int_equal(kvq_cuda_block_values(KVQ_CF_COUNT), 0);
    assert_int_equal(kvq_cuda_payload_bytes(KVQ_CF_Q8_0, 3), 3 * 34);
    assert_int_equal(kvq_cuda_payload_bytes(KVQ_CF_Q4_0, 3), 3 * 18);
    assert_int_equal(kvq_cuda_payload_bytes(KVQ_CF_MXFP4, 3), 3 * 17);
    assert_int_equal(kvq_cuda_payload_bytes(KVQ_CF_NVFP4, 3), 4 + 3 * 36);
    assert_int_equal(kvq_cuda_payload_bytes(KVQ_CF_COUNT, 3), 0);
    /* the codecs agree on the payload sizes */
    const char *names[] = {"q8_0", "q4_0", "mxfp4", "nvfp4"};
    const kvq_cuda_fmt fmts[] = {KVQ_CF_Q8_0, KVQ_CF_Q4_0, KVQ_CF_MXFP4, KVQ_CF_NVFP4};
    for (int i = 0; i < 4; i++) {
        kvq_ctx *ctx;
        assert_int_equal(kvq_ctx_create(names[i], &ctx), KVQ_OK);
        int64_t d[2] = {3, 128};
        kvq_shape s = kvq_tensor_view(KVQ_DTYPE_F32, NULL, 2, d).shape;
        size_t nb = 3 * 128 / (size_t)kvq_cuda_block_values(fmts[i]);
        assert_int_equal(kvq_ctx_payload_bound(ctx, &s), kvq_cuda_payload_bytes(fmts[i], nb));
        kvq_ctx_free(ctx);
    }
}

/* e = expected error, and the detail names `what`. */
static void expect(kvq_err got, kvq_err e, const char *what)
{
    if (got != e) fail_msg("%s: got %d, want %d (%s)", what, (int)got, (int)e, kvq_last_error_detail());
    if (!strstr(kvq_last_error_detail(), what)) fail_msg("detail '%s' lacks '%s'", kvq_last_error_detail(), what);
}

static void test_argument_checks(void **state)
{
    (void)state;
    float x[128] = {0}, y[128];
    uint8_t q[256] = {0};
    float bad_g = -1.0f;
    expect(kvq_cuda_quantize(KVQ_CF_COUNT, x, q, 1), KVQ_ERR_ARG, "has no kernel");
    expect(kvq_cuda_quantize((kvq_cuda_fmt)0, x, q, 1), KVQ_ERR_ARG, "format 0");
    expect(kvq_cuda_quantize(KVQ_CF_Q8_0, NULL, q, 1), KVQ_ERR_ARG, "x is NULL");
    expect(kvq_cuda_quantize(KVQ_CF_Q8_0, x, q, 0), KVQ_ERR_SHAPE, "block count 0");
    expect(kvq_cuda_dequantize(KVQ_CF_MXFP4, q, NULL, 1), KVQ_ERR_ARG, "y is NULL");
    expect(kvq_cuda_gemv(KVQ_KT_NONE, q, 1, 32, x, y), KVQ_ERR_ARG, "block type 0");
    expect(kvq_cuda_gemv(KVQ_KT_Q8_0, q, 1, 31, x, y), KVQ_ERR_SHAPE, "cols 31");
    expect(kvq_cuda_gemv(KVQ_KT_Q4_0, q, 0, 32, x, y), KVQ_ERR_SHAPE, "rows 0");
    expect(kvq_cuda_gemm(KVQ_CF_NVFP4, q, 1, 32, x, 1, y), KVQ_ERR_SHAPE, "cols 32 is not a positive multiple of 64");
    expect(kvq_cuda_gemm(KVQ_CF_Q4_0, q, 1, 32, x, 0, y), KVQ_ERR_SHAPE, "tokens 0");
    memcpy(q, &bad_g, sizeof bad_g);
    expect(kvq_cuda_gemm(KVQ_CF_NVFP4, q, 1, 64, x, 1, y), KVQ_ERR_CORRUPT, "nvfp4 tensor scale -1");
    expect(kvq_cuda_lowrank_residual(x, x, 2, 4, 8, 0, y), KVQ_ERR_SHAPE, "rank 0");
    expect(kvq_cuda_lowrank_residual(x, NULL, 2, 4, 8, 1, y), KVQ_ERR_ARG, "B is NULL");
    expect(kvq_cuda_lowrank_scores(x, x, 2, 4, 8, 1, x, 3, y), KVQ_ERR_ARG, "3 query heads");
    kvq_cuda_kv kv = {KVQ_KT_Q8_0, KVQ_KT_Q4_0, q, q, 1, 1, 48};
    expect(kvq_cuda_attend(&kv, x, 1, y), KVQ_ERR_SHAPE, "head size 48");
    kv.head_size = 32, kv.v_type = KVQ_KT_NONE;
    expect(kvq_cuda_attend(&kv, x, 1, y), KVQ_ERR_ARG, "attend V: block type 0");
    kv.v_type = KVQ_KT_Q4_0, kv.n_kv_heads = 2;
    expect(kvq_cuda_attend(&kv, x, 3, y), KVQ_ERR_ARG, "3 query heads");
    kv.n_ctx = 0;
    expect(kvq_cuda_attend(&kv, x, 2, y), KVQ_ERR_SHAPE, "context 0");
    expect(kvq_cuda_attend(NULL, x, 2, y), KVQ_ERR_ARG, "kv is NULL");
    /* the public bench entries (kvq.h "CUDA device") */
    kvq_cuda_codec_bench cb;
    kvq_cuda_matmul_bench mb;
    expect(kvq_cuda_device(NULL, 0), KVQ_ERR_ARG, "no buffer");
    expect(kvq_cuda_bench_codec("f16", x, 1, 64, 1, &cb), KVQ_ERR_ARG, "codec 'f16' has no CUDA kernel");
    expect(kvq_cuda_bench_codec("nvfp4", x, 1, 96, 1, &cb), KVQ_ERR_SHAPE, "cols 96 is not a positive multiple of 64");
    expect(kvq_cuda_bench_codec("q8_0", x, 1, 64, 0, &cb), KVQ_ERR_SHAPE, "reps 0");
    expect(kvq_cuda_bench_matmuls(NULL, "q8_0", 1, &mb), KVQ_ERR_ARG, "m is NULL");
}

/* What kernels/cuda/fp4.cu relies on for mxfp4's exponent: for every
 * float that takes fp_mx.c's log2f branch (subnormal, or a mantissa at or
 * above 0x7FF000), floor(glibc log2f(x)) equals floor of log2 computed in
 * double and rounded once to f32, which is what the device computes. */
#define MX_MANT_NEAR_TOP 0x7FF000u
#define F32_INF_BITS     0x7F800000u

static void test_mx_log2_rounding(void **state)
{
    (void)state;
    long checked = 0, differ = 0;
    for (uint32_t u = 1; u < F32_INF_BITS; u++) {
        if ((u >> 23) != 0 && (u & 0x7FFFFFu) < MX_MANT_NEAR_TOP)
            u = (u & ~0x7FFFFFu) | MX_MANT_NEAR_TOP; /* the binade's first near-top mantissa */
        float x;
        memcpy(&x, &u, sizeof x);
        checked++;
        differ += floorf(log2f(x)) != floorf((float)log2((double)x));
    }
    printf("%ld floats on the log2f branch, %ld differ\n", checked, differ);
    assert_int_equal(checked, 8388607L + 254L * 4096L);
    assert_int_equal(differ, 0);
}

/* Valid calls without a device: KVQ_ERR_UNSUPPORTED naming CUDA. */
static void test_no_device(void **state)
{
    (void)state;
    if (kvq_cuda_available()) skip();
    float x[128] = {0}, y[128];
    uint8_t q[256] = {0};
    float g = 1.0f;
    memcpy(q, &g, sizeof g);
    kvq_cuda_kv kv = {KVQ_KT_Q8_0, KVQ_KT_Q4_0, q, q, 2, 1, 32};
    kvq_err got[] = {
        kvq_cuda_quantize(KVQ_CF_NVFP4, x, q, 1),           kvq_cuda_dequantize(KVQ_CF_MXFP4, q, y, 2),
        kvq_cuda_gemv(KVQ_KT_Q4_0, q, 2, 32, x, y),         kvq_cuda_gemm(KVQ_CF_NVFP4, q, 1, 64, x, 2, y),
        kvq_cuda_lowrank_residual(x, x, 2, 4, 8, 1, y),     kvq_cuda_lowrank_scores(x, x, 2, 4, 8, 1, x, 4, y),
        kvq_cuda_attend(&kv, x, 2, y),
    };
    for (size_t i = 0; i < sizeof got / sizeof got[0]; i++) assert_int_equal(got[i], KVQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(kvq_last_error_detail(), "cuda attend"));
    assert_non_null(strstr(kvq_last_error_detail(), "CUDA"));
    printf("no device: %s\n", kvq_last_error_detail());
}

/* ---- GPU: exact formats ---------------------------------------------------------- */
/* CPU payload of x (rows × cols) by codec name, into q (cap bytes). */
static size_t cpu_encode(const char *codec, const float *x, int64_t rows, int64_t cols, uint8_t *q, size_t cap)
{
    kvq_ctx *ctx;
    size_t n = 0;
    int64_t d[2] = {rows, cols};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, (void *)x, 2, d);
    assert_int_equal(kvq_ctx_create(codec, &ctx), KVQ_OK);
    assert_int_equal(kvq_ctx_encode_payload(ctx, &t, q, cap, &n), KVQ_OK);
    kvq_ctx_free(ctx);
    return n;
}

static void cpu_decode(const char *codec, const uint8_t *q, size_t n, int64_t rows, int64_t cols, float *y)
{
    kvq_ctx *ctx;
    int64_t d[2] = {rows, cols};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    assert_int_equal(kvq_ctx_create(codec, &ctx), KVQ_OK);
    assert_int_equal(kvq_ctx_decode_payload(ctx, q, n, &t), KVQ_OK);
    kvq_ctx_free(ctx);
}

/* First differing byte / float, for a readable failure. */
static void assert_same(const void *a, const void *b, size_t n, const char *what)
{
    const uint8_t *p = a, *q = b;
    for (size_t i = 0; i < n; i++)
        if (p[i] != q[i]) fail_msg("%s: byte %zu differs: cuda 0x%02x cpu 0x%02x", what, i, p[i], q[i]);
}

static void test_quantize_dequantize_exact(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    static const char *const names[] = {"q8_0", "q4_0", "mxfp4", "nvfp4"};
    static const kvq_cuda_fmt fmts[] = {KVQ_CF_Q8_0, KVQ_CF_Q4_0, KVQ_CF_MXFP4, KVQ_CF_NVFP4};
    const size_t n = (size_t)NB * KVQ_QK, cap = kvq_cuda_payload_bytes(KVQ_CF_NVFP4, n / 64) + n;
    const int64_t cols = 1024, rows = (int64_t)n / cols;
    float *x = malloc(n * sizeof *x), *yg = malloc(n * sizeof *yg), *yc = malloc(n * sizeof *yc);
    uint8_t *qg = malloc(cap), *qc = malloc(cap);
    assert_true(x && yg && yc && qg && qc);
    fill(x, n);
    for (int i = 0; i < 4; i++) {
        size_t nb = n / (size_t)kvq_cuda_block_values(fmts[i]), bytes = kvq_cuda_payload_bytes(fmts[i], nb);
        assert_int_equal(cpu_encode(names[i], x, rows, cols, qc, cap), bytes);
        assert_int_equal(kvq_cuda_quantize(fmts[i], x, qg, nb), KVQ_OK);
        assert_same(qg, qc, bytes, names[i]);
        cpu_decode(names[i], qc, bytes, rows, cols, yc);
        assert_int_equal(kvq_cuda_dequantize(fmts[i], qc, yg, nb), KVQ_OK);
        assert_same(yg, yc, n * sizeof *yg, names[i]);
        printf("%s: %zu blocks, quantize and dequantize equal the CPU codec\n", names[i], nb);
    }
    free(x), free(yg), free(yc), free(qg), free(qc);
}

static const char *data_dir(void)
{
    const char *d = getenv("KVQ_DATA");
    return d && *d ? d : DATA_DIR;
}

static void *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *p = NULL;
    if (!fseek(f, 0, SEEK_END) && (*n = (size_t)ftell(f)) > 0 && !fseek(f, 0, SEEK_SET) && (p = malloc(*n + 8)))
        if (fread(p, 1, *n, f) != *n) free(p), p = NULL;
    fclose(f);
    return p;
}

/* One golden input: device quantize == ggml's bytes (q8_0, q4_0, mxfp4);
 * device dequantize of ggml's bytes == the CPU codec's (all four). */
static void golden_case(const char *name)
{
    static const char *const names[] = {"q8_0", "q4_0", "mxfp4", "nvfp4"};
    static const kvq_cuda_fmt fmts[] = {KVQ_CF_Q8_0, KVQ_CF_Q4_0, KVQ_CF_MXFP4, KVQ_CF_NVFP4};
    char path[256];
    size_t nx, ng;
    snprintf(path, sizeof path, "%s/golden/%s.f32", data_dir(), name);
    float *x = read_all(path, &nx);
    assert_non_null(x);
    size_t n = nx / sizeof(float);
    float *yg = malloc(n * sizeof *yg), *yc = malloc(n * sizeof *yc);
    uint8_t *q = malloc(2 * nx + KVQ_NVFP4_HDR), *p = malloc(2 * nx + KVQ_NVFP4_HDR);
    assert_true(yg && yc && q && p);
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/golden/%s.%s", data_dir(), name, names[i]);
        uint8_t *gold = read_all(path, &ng);
        assert_non_null(gold);
        size_t nb = n / (size_t)kvq_cuda_block_values(fmts[i]), hdr = fmts[i] == KVQ_CF_NVFP4 ? KVQ_NVFP4_HDR : 0;
        const float one = 1.0f;
        assert_int_equal(ng + hdr, kvq_cuda_payload_bytes(fmts[i], nb));
        memcpy(p, &one, sizeof one); /* nvfp4: G = 1 in front of ggml's blocks */
        memcpy(p + hdr, gold, ng);
        if (!hdr) {
            assert_int_equal(kvq_cuda_quantize(fmts[i], x, q, nb), KVQ_OK);
            assert_same(q, gold, ng, path);
        }
        assert_int_equal(kvq_cuda_dequantize(fmts[i], p, yg, nb), KVQ_OK);
        cpu_decode(names[i], p, ng + hdr, 1, (int64_t)n, yc);
        assert_same(yg, yc, n * sizeof *yg, path);
        free(gold);
    }
    printf("%s: device bytes equal ggml's (q8_0 q4_0 mxfp4), decodes equal the CPU (all four)\n", name);
    free(x), free(yg), free(yc), free(q), free(p);
}

static void test_golden(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    char path[256];
    snprintf(path, sizeof path, "%s/golden/adversarial.f32", data_dir());
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("SKIP: %s not found (ggml's golden encodings: ../shared/data or $KVQ_DATA)\n", path);
        skip();
    }
    fclose(f);
    golden_case("adversarial");
    golden_case("stories260K.layer0.wq");
    golden_case("stories260K.tok_embeddings");
}

/* ---- GPU: products within tolerance ------------------------------------------------- */
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

/* GEMM over every format: Y[j][r] against Σ_c Ŵ[r][c]·X[j][c] in double,
 * Ŵ the CPU codec's decode. */
static void test_gemm_tolerance(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    static const char *const names[] = {"q8_0", "q4_0", "mxfp4", "nvfp4"};
    static const kvq_cuda_fmt fmts[] = {KVQ_CF_Q8_0, KVQ_CF_Q4_0, KVQ_CF_MXFP4, KVQ_CF_NVFP4};
    const size_t n = (size_t)ROWS * COLS, cap = 2 * n; /* q8_0: 34 bytes per 32 values */
    float *w = malloc(n * sizeof *w), *wd = malloc(n * sizeof *wd), *x = malloc(TOKENS * COLS * sizeof *x);
    float *y = malloc(TOKENS * ROWS * sizeof *y);
    uint8_t *q = malloc(cap);
    assert_true(w && wd && x && y && q);
    fill(w, n);
    fill(x, TOKENS * COLS);
    for (int i = 0; i < 4; i++) {
        size_t bytes = cpu_encode(names[i], w, ROWS, COLS, q, cap);
        cpu_decode(names[i], q, bytes, ROWS, COLS, wd);
        assert_int_equal(kvq_cuda_gemm(fmts[i], q, ROWS, COLS, x, TOKENS, y), KVQ_OK);
        for (int j = 0; j < TOKENS; j++)
            for (int r = 0; r < ROWS; r++) {
                double s = 0, mag = 0;
                for (int c = 0; c < COLS; c++) {
                    double p = (double)wd[(size_t)r * COLS + c] * x[(size_t)j * COLS + c];
                    s += p, mag += fabs(p);
                }
                if (fabs(y[(size_t)j * ROWS + r] - s) > BLAS_TOL * mag + 1e-30)
                    fail_msg("%s token %d row %d: cuda %.9g ref %.9g", names[i], j, r,
                             (double)y[(size_t)j * ROWS + r], s);
            }
    }
    free(w), free(wd), free(x), free(y), free(q);
}

/* GEAR geometry for the low-rank tests: a page of LR_T tokens, LR_H KV
 * heads of LR_D channels, rank LR_R, LR_Q query heads. */
#define LR_T 48
#define LR_H 2
#define LR_D 64
#define LR_R 4
#define LR_Q 6

static void test_lowrank_residual(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    static float A[LR_H * LR_R * LR_T], B[LR_H * LR_R * LR_D], y[LR_T * LR_H * LR_D], ref[LR_T * LR_H * LR_D];
    static double mag[LR_T * LR_H * LR_D];
    fill(A, sizeof A / sizeof A[0]);
    fill(B, sizeof B / sizeof B[0]);
    fill(y, sizeof y / sizeof y[0]);
    for (size_t i = 0; i < sizeof y / sizeof y[0]; i++) ref[i] = y[i], mag[i] = fabs(y[i]);
    /* compress/gear.c apply_lowrank's sum, in double */
    for (int h = 0; h < LR_H; h++)
        for (int t = 0; t < LR_T; t++)
            for (int c = 0; c < LR_D; c++) {
                double s = ref[(t * LR_H + h) * LR_D + c];
                for (int j = 0; j < LR_R; j++) {
                    double p = (double)A[(h * LR_R + j) * LR_T + t] * B[(h * LR_R + j) * LR_D + c];
                    s += p, mag[(t * LR_H + h) * LR_D + c] += fabs(p);
                }
                ref[(t * LR_H + h) * LR_D + c] = (float)s;
            }
    assert_int_equal(kvq_cuda_lowrank_residual(A, B, LR_H, LR_T, LR_D, LR_R, y), KVQ_OK);
    for (size_t i = 0; i < sizeof y / sizeof y[0]; i++)
        if (fabs((double)y[i] - ref[i]) > BLAS_TOL * mag[i] + 1e-30)
            fail_msg("residual %zu: cuda %.9g ref %.9g", i, (double)y[i], (double)ref[i]);
}

static void test_lowrank_scores(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    static float A[LR_H * LR_R * LR_T], B[LR_H * LR_R * LR_D], q[LR_Q * LR_D], s[LR_Q * LR_T];
    fill(A, sizeof A / sizeof A[0]);
    fill(B, sizeof B / sizeof B[0]);
    fill(q, sizeof q / sizeof q[0]);
    fill(s, sizeof s / sizeof s[0]);
    double ref[LR_Q * LR_T], mag[LR_Q * LR_T];
    const int group = LR_Q / LR_H;
    /* q·R_kvh[t] with R = Aᵀ·B formed explicitly, in double */
    for (int h = 0; h < LR_Q; h++)
        for (int t = 0; t < LR_T; t++) {
            int kvh = h / group;
            double acc = s[h * LR_T + t], m = fabs(acc);
            for (int c = 0; c < LR_D; c++) {
                double r = 0, rm = 0;
                for (int j = 0; j < LR_R; j++) {
                    double p = (double)A[(kvh * LR_R + j) * LR_T + t] * B[(kvh * LR_R + j) * LR_D + c];
                    r += p, rm += fabs(p);
                }
                acc += q[h * LR_D + c] * r, m += fabs(q[h * LR_D + c]) * rm;
            }
            ref[h * LR_T + t] = acc, mag[h * LR_T + t] = m;
        }
    assert_int_equal(kvq_cuda_lowrank_scores(A, B, LR_H, LR_T, LR_D, LR_R, q, LR_Q, s), KVQ_OK);
    for (int i = 0; i < LR_Q * LR_T; i++)
        if (fabs((double)s[i] - ref[i]) > BLAS_TOL * mag[i] + 1e-30)
            fail_msg("score %d: cuda %.9g ref %.9g", i, (double)s[i], ref[i]);
}

/* ---- GPU: attention over q8_0 K / q4_0 V pages vs kvq_cache_attend ---------------- */
#define AT_CTX   96 /* tokens: 6 sealed pages of AT_PAGE, no f32 window */
#define AT_PAGE  16
#define AT_KV    2
#define AT_HEADS 6
#define AT_HS    64

/* Uniform values in [-1, 1): scores of order 1, so the softmax is not one
 * token whose weight hangs on the last bits of two nearly equal scores. */
static void fill_uniform(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = unif();
}

static void attend_case(const char *kspec, const char *vspec, kvq_kt kt, kvq_kt vt)
{
    const size_t nkv = (size_t)AT_CTX * AT_KV * AT_HS;
    float *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v), q[AT_HEADS * AT_HS];
    float out_c[AT_HEADS * AT_HS], out_g[AT_HEADS * AT_HS];
    uint8_t *kq = malloc(2 * nkv), *vq = malloc(2 * nkv);
    assert_true(k && v && kq && vq);
    fill_uniform(k, nkv);
    fill_uniform(v, nkv);
    fill_uniform(q, AT_HEADS * AT_HS);
    kvq_cache_config cfg = kvq_cache_config_default(1, AT_KV, AT_HS, AT_CTX);
    cfg.window = 0, cfg.page = AT_PAGE, cfg.k_spec = kspec, cfg.v_spec = vspec;
    kvq_cache *c;
    assert_int_equal(kvq_cache_create(&cfg, &c), KVQ_OK);
    assert_int_equal(kvq_cache_append(c, 0, k, v, AT_CTX), KVQ_OK);
    assert_int_equal(kvq_cache_attend(c, 0, q, AT_HEADS, AT_CTX, out_c), KVQ_OK);
    kvq_cache_free(c);
    /* the pages' bytes: rows of (token, head) encode independently */
    cpu_encode(kspec, k, (int64_t)AT_CTX * AT_KV, AT_HS, kq, 2 * nkv);
    cpu_encode(vspec, v, (int64_t)AT_CTX * AT_KV, AT_HS, vq, 2 * nkv);
    kvq_cuda_kv kv = {kt, vt, kq, vq, AT_CTX, AT_KV, AT_HS};
    assert_int_equal(kvq_cuda_attend(&kv, q, AT_HEADS, out_g), KVQ_OK);
    float vmax = 0.0f;
    for (size_t i = 0; i < nkv; i++) vmax = fmaxf(vmax, fabsf(v[i]));
    for (int i = 0; i < AT_HEADS * AT_HS; i++)
        if (fabsf(out_g[i] - out_c[i]) > ATT_TOL * vmax)
            fail_msg("%s/%s out %d: cuda %.9g cpu %.9g", kspec, vspec, i, (double)out_g[i], (double)out_c[i]);
    free(k), free(v), free(kq), free(vq);
}

static void test_attend(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    attend_case("q8_0", "q4_0", KVQ_KT_Q8_0, KVQ_KT_Q4_0);
    attend_case("q4_0", "q8_0", KVQ_KT_Q4_0, KVQ_KT_Q8_0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry),
        cmocka_unit_test(test_argument_checks),
        cmocka_unit_test(test_mx_log2_rounding),
        cmocka_unit_test(test_no_device),
        cmocka_unit_test(test_quantize_dequantize_exact),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_gemv_tolerance),
        cmocka_unit_test(test_gemm_tolerance),
        cmocka_unit_test(test_lowrank_residual),
        cmocka_unit_test(test_lowrank_scores),
        cmocka_unit_test(test_attend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
