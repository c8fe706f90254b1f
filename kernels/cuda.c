/*
 * cuda.c — host side of the CUDA kernels (issue 9 item 3): kvq_err
 * wrappers over the extern "C" entries of the kernels/cuda/ .cu files (blocks.h).
 * Every argument is checked here first, on every build, so a bad call is
 * KVQ_ERR_ARG / KVQ_ERR_SHAPE with a detail whether or not a GPU exists
 * (tests/test_cuda.c runs those checks on CPU-only machines).  Then:
 * built with -DKVQ_HAVE_CUDA (the Makefile found nvcc) and a device
 * present → the kernel runs, a CUDA or cuBLAS failure becomes KVQ_ERR_IO
 * naming it; no device → KVQ_ERR_UNSUPPORTED "no CUDA device"; built
 * without CUDA → KVQ_ERR_UNSUPPORTED "built without CUDA".  Never a crash.
 */
#include "kernels/kernels.h"
#include "kvq_internal.h"

#include <math.h>

#define CU_DIM_MAX (1 << 30) /* rows, cols, tokens: int-sized with room for products in size_t */

/* ---- geometry (every build) ----------------------------------------------------- */
int kvq_cuda_block_values(kvq_cuda_fmt f)
{
    switch (f) {
    case KVQ_CF_Q8_0:
    case KVQ_CF_Q4_0: return KVQ_QK;
    case KVQ_CF_MXFP4: return KVQ_MXFP4_BLOCK;
    case KVQ_CF_NVFP4: return KVQ_NVFP4_BLOCK;
    case KVQ_CF_COUNT: break;
    }
    return 0;
}

size_t kvq_cuda_payload_bytes(kvq_cuda_fmt f, size_t nb)
{
    switch (f) {
    case KVQ_CF_Q8_0: return nb * KVQ_Q8_0_BYTES;
    case KVQ_CF_Q4_0: return nb * KVQ_Q4_0_BYTES;
    case KVQ_CF_MXFP4: return nb * KVQ_MXFP4_BYTES;
    case KVQ_CF_NVFP4: return KVQ_NVFP4_HDR + nb * KVQ_NVFP4_BYTES;
    case KVQ_CF_COUNT: break;
    }
    return 0;
}

/* ---- argument checks (every build) ------------------------------------------------- */
static kvq_err check_fmt(const char *what, kvq_cuda_fmt f)
{
    KVQ_FAIL_IF(!kvq_cuda_block_values(f), KVQ_ERR_ARG, "cuda %s: format %d has no kernel (q8_0 %d, q4_0 %d, "
                "mxfp4 %d, nvfp4 %d)", what, (int)f, KVQ_CF_Q8_0, KVQ_CF_Q4_0, KVQ_CF_MXFP4, KVQ_CF_NVFP4);
    return KVQ_OK;
}

static kvq_err check_kt(const char *what, kvq_kt t)
{
    KVQ_FAIL_IF(t != KVQ_KT_Q8_0 && t != KVQ_KT_Q4_0, KVQ_ERR_ARG, "cuda %s: block type %d has no kernel", what,
                (int)t);
    return KVQ_OK;
}

/* A row length: positive, a whole number of blocks of `block` values. */
static kvq_err check_dim(const char *what, const char *name, long long v, int block)
{
    KVQ_FAIL_IF(v <= 0 || v > CU_DIM_MAX || v % block, KVQ_ERR_SHAPE,
                "cuda %s: %s %lld is not a positive multiple of %d (at most %d)", what, name, v, block, CU_DIM_MAX);
    return KVQ_OK;
}

static kvq_err check_count(const char *what, const char *name, long long v, long long min)
{
    KVQ_FAIL_IF(v < min || v > CU_DIM_MAX, KVQ_ERR_SHAPE, "cuda %s: %s %lld outside [%lld, %d]", what, name, v, min,
                CU_DIM_MAX);
    return KVQ_OK;
}

#define CHECK_PTR(what, p) KVQ_FAIL_IF(!(p), KVQ_ERR_ARG, "cuda %s: %s is NULL", what, #p)

/* ---- the device (CUDA builds) or its absence ----------------------------------------- */
#if defined(KVQ_HAVE_CUDA) && KVQ_HAVE_CUDA
#include "kernels/cuda/blocks.h"

int kvq_cuda_available(void)
{
    int n = 0;
    return kvq_cu_device_count(&n) == 0 && n > 0;
}

static kvq_err need_device(const char *what)
{
    KVQ_FAIL_IF(!kvq_cuda_available(), KVQ_ERR_UNSUPPORTED, "cuda %s: no CUDA device", what);
    return KVQ_OK;
}

static kvq_err cu_result(const char *what, int err)
{
    KVQ_FAIL_IF(err, KVQ_ERR_IO, "cuda %s: %s", what, kvq_cu_error_string(err));
    return KVQ_OK;
}

/* The device call is compiled only where the CUDA objects are linked. */
#define CU_RUN(what, call) cu_result(what, call)

#else /* built without nvcc */

int kvq_cuda_available(void) { return 0; }

static kvq_err need_device(const char *what)
{
    return KVQ_ERROR(KVQ_ERR_UNSUPPORTED, "cuda %s: built without CUDA (nvcc not found), so no CUDA device", what);
}

#define CU_RUN(what, call) need_device(what)

#endif

/* ---- entries ------------------------------------------------------------------------- */
kvq_err kvq_cuda_quantize(kvq_cuda_fmt f, const float *x, uint8_t *dst, size_t nb)
{
    KVQ_TRY(check_fmt("quantize", f));
    CHECK_PTR("quantize", x);
    CHECK_PTR("quantize", dst);
    KVQ_TRY(check_count("quantize", "block count", (long long)nb, 1));
    KVQ_TRY(need_device("quantize"));
    return CU_RUN("quantize", kvq_cu_quantize((int)f, x, dst, nb));
}

kvq_err kvq_cuda_dequantize(kvq_cuda_fmt f, const uint8_t *src, float *y, size_t nb)
{
    KVQ_TRY(check_fmt("dequantize", f));
    CHECK_PTR("dequantize", src);
    CHECK_PTR("dequantize", y);
    KVQ_TRY(check_count("dequantize", "block count", (long long)nb, 1));
    KVQ_TRY(need_device("dequantize"));
    return CU_RUN("dequantize", kvq_cu_dequantize((int)f, src, y, nb));
}

kvq_err kvq_cuda_gemv(kvq_kt t, const uint8_t *w, int rows, int cols, const float *x, float *y)
{
    KVQ_TRY(check_kt("gemv", t));
    CHECK_PTR("gemv", w);
    CHECK_PTR("gemv", x);
    CHECK_PTR("gemv", y);
    KVQ_TRY(check_count("gemv", "rows", rows, 1));
    KVQ_TRY(check_dim("gemv", "cols", cols, KVQ_QK));
    KVQ_TRY(need_device("gemv"));
    return CU_RUN("gemv", kvq_cu_gemv((int)t, w, rows, cols, x, y));
}

kvq_err kvq_cuda_gemm(kvq_cuda_fmt f, const uint8_t *w, int rows, int cols, const float *x, int nb, float *y)
{
    KVQ_TRY(check_fmt("gemm", f));
    CHECK_PTR("gemm", w);
    CHECK_PTR("gemm", x);
    CHECK_PTR("gemm", y);
    KVQ_TRY(check_count("gemm", "rows", rows, 1));
    KVQ_TRY(check_dim("gemm", "cols", cols, kvq_cuda_block_values(f)));
    KVQ_TRY(check_count("gemm", "tokens", nb, 1));
    if (f == KVQ_CF_NVFP4) {
        float g;
        memcpy(&g, w, sizeof g);
        KVQ_FAIL_IF(!(g > 0.0f) || !isfinite(g), KVQ_ERR_CORRUPT, "cuda gemm: nvfp4 tensor scale %g", (double)g);
    }
    KVQ_TRY(need_device("gemm"));
    return CU_RUN("gemm", kvq_cu_gemm((int)f, w, rows, cols, x, nb, y));
}

static kvq_err check_lowrank(const char *what, const float *A, const float *B, int H, int T, int d, int r)
{
    CHECK_PTR(what, A);
    CHECK_PTR(what, B);
    KVQ_TRY(check_count(what, "heads", H, 1));
    KVQ_TRY(check_count(what, "tokens", T, 1));
    KVQ_TRY(check_count(what, "head size", d, 1));
    KVQ_TRY(check_count(what, "rank", r, 1));
    KVQ_FAIL_IF((long long)H * d > CU_DIM_MAX, KVQ_ERR_SHAPE, "cuda %s: %d heads of %d channels", what, H, d);
    return KVQ_OK;
}

kvq_err kvq_cuda_lowrank_residual(const float *A, const float *B, int H, int T, int d, int r, float *y)
{
    KVQ_TRY(check_lowrank("lowrank residual", A, B, H, T, d, r));
    CHECK_PTR("lowrank residual", y);
    KVQ_TRY(need_device("lowrank residual"));
    return CU_RUN("lowrank residual", kvq_cu_lowrank_residual(A, B, H, T, d, r, y));
}

kvq_err kvq_cuda_lowrank_scores(const float *A, const float *B, int H, int T, int d, int r, const float *q,
                                int n_heads, float *s)
{
    KVQ_TRY(check_lowrank("lowrank scores", A, B, H, T, d, r));
    CHECK_PTR("lowrank scores", q);
    CHECK_PTR("lowrank scores", s);
    KVQ_FAIL_IF(n_heads <= 0 || n_heads % H, KVQ_ERR_ARG, "cuda lowrank scores: %d query heads is not a multiple "
                "of %d KV heads", n_heads, H);
    KVQ_TRY(need_device("lowrank scores"));
    return CU_RUN("lowrank scores", kvq_cu_lowrank_scores(A, B, H, T, d, r, q, n_heads, s));
}

kvq_err kvq_cuda_attend(const kvq_cuda_kv *kv, const float *q, int n_heads, float *out)
{
    CHECK_PTR("attend", kv);
    CHECK_PTR("attend", q);
    CHECK_PTR("attend", out);
    CHECK_PTR("attend", kv->k);
    CHECK_PTR("attend", kv->v);
    KVQ_TRY(check_kt("attend K", kv->k_type));
    KVQ_TRY(check_kt("attend V", kv->v_type));
    KVQ_TRY(check_count("attend", "context", kv->n_ctx, 1));
    KVQ_TRY(check_count("attend", "KV heads", kv->n_kv_heads, 1));
    KVQ_TRY(check_dim("attend", "head size", kv->head_size, KVQ_QK));
    KVQ_FAIL_IF(n_heads <= 0 || n_heads % kv->n_kv_heads, KVQ_ERR_ARG,
                "cuda attend: %d query heads is not a multiple of %d KV heads", n_heads, kv->n_kv_heads);
    KVQ_TRY(need_device("attend"));
    return CU_RUN("attend", kvq_cu_attend(kv, q, n_heads, out));
}
