/*
 * cuda.c — host side of the CUDA kernels (issue 9 item 3): kvq_err
 * wrappers over the extern "C" entry points of kernels/cuda/quant.cu.
 * Built with -DKVQ_HAVE_CUDA when the Makefile found nvcc; otherwise every
 * call reports that the build has no CUDA.  Either way a machine without a
 * GPU gets KVQ_ERR_UNSUPPORTED and a detail saying so, never a crash.
 */
#include "kernels/kernels.h"
#include "kvq_internal.h"

#if defined(KVQ_HAVE_CUDA) && KVQ_HAVE_CUDA
#include "kernels/cuda/blocks.h"

int kvq_cuda_available(void)
{
    int n = 0;
    return kvq_cu_device_count(&n) == 0 && n > 0;
}

static kvq_err check(const char *what, kvq_kt t, int err)
{
    KVQ_FAIL_IF(t != KVQ_KT_Q8_0 && t != KVQ_KT_Q4_0, KVQ_ERR_ARG, "cuda %s: block type %d has no kernel", what,
                (int)t);
    KVQ_FAIL_IF(err, KVQ_ERR_IO, "cuda %s: %s", what, kvq_cu_error_string(err));
    return KVQ_OK;
}

static kvq_err need_device(const char *what)
{
    KVQ_FAIL_IF(!kvq_cuda_available(), KVQ_ERR_UNSUPPORTED, "cuda %s: no CUDA device", what);
    return KVQ_OK;
}

kvq_err kvq_cuda_quantize(kvq_kt t, const float *x, uint8_t *dst, size_t nb)
{
    KVQ_TRY(need_device("quantize"));
    KVQ_TRY(check("quantize", t, 0));
    return check("quantize", t, kvq_cu_quantize((int)t, x, dst, nb));
}

kvq_err kvq_cuda_dequantize(kvq_kt t, const uint8_t *src, float *y, size_t nb)
{
    KVQ_TRY(need_device("dequantize"));
    KVQ_TRY(check("dequantize", t, 0));
    return check("dequantize", t, kvq_cu_dequantize((int)t, src, y, nb));
}

kvq_err kvq_cuda_gemv(kvq_kt t, const uint8_t *w, int rows, int cols, const float *x, float *y)
{
    KVQ_TRY(need_device("gemv"));
    KVQ_TRY(check("gemv", t, 0));
    KVQ_FAIL_IF(rows <= 0 || cols <= 0 || cols % KVQ_QK, KVQ_ERR_SHAPE,
                "cuda gemv: %d x %d weights (columns must be a positive multiple of %d)", rows, cols, KVQ_QK);
    return check("gemv", t, kvq_cu_gemv((int)t, w, rows, cols, x, y));
}

#else /* built without nvcc */

int kvq_cuda_available(void) { return 0; }

static kvq_err no_cuda(const char *what)
{
    return KVQ_ERROR(KVQ_ERR_UNSUPPORTED, "cuda %s: built without CUDA (nvcc not found), so no CUDA device", what);
}

kvq_err kvq_cuda_quantize(kvq_kt t, const float *x, uint8_t *dst, size_t nb)
{
    (void)t, (void)x, (void)dst, (void)nb;
    return no_cuda("quantize");
}

kvq_err kvq_cuda_dequantize(kvq_kt t, const uint8_t *src, float *y, size_t nb)
{
    (void)t, (void)src, (void)y, (void)nb;
    return no_cuda("dequantize");
}

kvq_err kvq_cuda_gemv(kvq_kt t, const uint8_t *w, int rows, int cols, const float *x, float *y)
{
    (void)t, (void)w, (void)rows, (void)cols, (void)x, (void)y;
    return no_cuda("gemv");
}

#endif
