/*
 * host.cu — extern "C" entries of the CUDA kernels over host buffers
 * (issue 9 item 3; declared in blocks.h, wrapped into kvq_err calls by
 * kernels/cuda.c, which has checked every argument): device count and
 * name, quantize / dequantize of every format, the quantized GEMV,
 * attention over compressed pages, and the device-resident timings that
 * `kvq bench codecs|decode --device cuda` report (CUDA events around the
 * kernels alone: host↔device transfers are outside the timed spans).
 *
 * NVFP4's tensor scale G follows quant/fp_mx.c nv_encode: the maximum |x|
 * comes from a device reduction (exact in any order), G = amax/(448·6)
 * with its fallbacks computed here on the host, and the blocks encode
 * x·(1/G); the payload starts with G's four bytes.
 */
#include <cublas_v2.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/cuda/cu_internal.cuh"

#define NV_E4M3_MAX 448.0f
#define NV_E2M1_MAX 6.0f

/* Device buffers of one entry point, freed on every path. */
#define CU_TRY(expr)                                                                                               \
    do {                                                                                                           \
        cudaError_t e_ = (expr);                                                                                   \
        if (e_ != cudaSuccess) {                                                                                   \
            kvq_cu_bufs_free(&bufs);                                                                               \
            return (int)e_;                                                                                        \
        }                                                                                                          \
    } while (0)

extern "C" int kvq_cu_device_count(int *n)
{
    *n = 0;
    return (int)cudaGetDeviceCount(n);
}

extern "C" int kvq_cu_device_name(char *name, size_t cap)
{
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, 0);
    if (e == cudaSuccess && cap) snprintf(name, cap, "%s (sm_%d%d, %.0f GiB)", p.name, p.major, p.minor,
                                          (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return (int)e;
}

extern "C" const char *kvq_cu_error_string(int err)
{
    if (err >= KVQ_CU_BLAS_FAILED) return cublasGetStatusString((cublasStatus_t)(err - KVQ_CU_BLAS_FAILED));
    return cudaGetErrorString((cudaError_t)err);
}

/* fp_mx.c nv_encode's G for a tensor maximum amax (tscale=1). */
static float nv_tensor_scale(float amax)
{
    float g = amax > 0.0f ? amax / (NV_E4M3_MAX * NV_E2M1_MAX) : 1.0f;
    if (!(g >= FLT_MIN)) g = 1.0f;
    while (!isfinite(g * NV_E4M3_MAX * NV_E2M1_MAX)) g = nextafterf(g, 0.0f);
    return g;
}

cudaError_t kvq_cu_quantize_dev(int fmt, const float *dx, void *dq, size_t nb, unsigned *amax, float *g)
{
    *g = 1.0f;
    if (fmt == KVQ_CF_Q8_0 || fmt == KVQ_CF_Q4_0) return kvq_cu_launch_quant_gg(fmt, dx, dq, nb, 0);
    if (fmt == KVQ_CF_NVFP4) {
        unsigned bits = 0;
        cudaError_t e = cudaMemset(amax, 0, sizeof *amax);
        if (e == cudaSuccess) e = kvq_cu_launch_absmax(dx, nb * KVQ_NVFP4_BLOCK, amax, 0);
        if (e == cudaSuccess) e = cudaMemcpy(&bits, amax, sizeof bits, cudaMemcpyDeviceToHost);
        if (e != cudaSuccess) return e;
        float a;
        memcpy(&a, &bits, sizeof a);
        *g = nv_tensor_scale(a);
    }
    return kvq_cu_launch_quant_fp4(fmt, dx, dq, nb, 1.0f / *g, 0);
}

extern "C" int kvq_cu_quantize(int fmt, const float *x, uint8_t *dst, size_t nb)
{
    kvq_cu_bufs bufs = {};
    size_t nx = nb * kvq_cu_block_values(fmt) * sizeof(float), nq = nb * kvq_cu_block_bytes(fmt);
    size_t hdr = kvq_cu_header_bytes(fmt);
    float g;
    CU_TRY(cudaMalloc(&bufs.p[0], nx ? nx : 1));
    CU_TRY(cudaMalloc(&bufs.p[1], nq ? nq : 1));
    CU_TRY(cudaMalloc(&bufs.p[2], sizeof(unsigned)));
    CU_TRY(cudaMemcpy(bufs.p[0], x, nx, cudaMemcpyHostToDevice));
    CU_TRY(kvq_cu_quantize_dev(fmt, (const float *)bufs.p[0], bufs.p[1], nb, (unsigned *)bufs.p[2], &g));
    CU_TRY(cudaMemcpy(dst + hdr, bufs.p[1], nq, cudaMemcpyDeviceToHost));
    if (hdr) memcpy(dst, &g, sizeof g);
    kvq_cu_bufs_free(&bufs);
    return 0;
}

extern "C" int kvq_cu_dequantize(int fmt, const uint8_t *src, float *y, size_t nb)
{
    kvq_cu_bufs bufs = {};
    size_t n = nb * kvq_cu_block_values(fmt), nq = nb * kvq_cu_block_bytes(fmt), hdr = kvq_cu_header_bytes(fmt);
    float g = 1.0f;
    if (hdr) memcpy(&g, src, sizeof g);
    CU_TRY(cudaMalloc(&bufs.p[0], nq ? nq : 1));
    CU_TRY(cudaMalloc(&bufs.p[1], n ? n * sizeof(float) : 1));
    CU_TRY(cudaMemcpy(bufs.p[0], src + hdr, nq, cudaMemcpyHostToDevice));
    CU_TRY(kvq_cu_launch_dequant(fmt, bufs.p[0], g, (float *)bufs.p[1], nb, 0));
    CU_TRY(cudaMemcpy(y, bufs.p[1], n * sizeof(float), cudaMemcpyDeviceToHost));
    kvq_cu_bufs_free(&bufs);
    return 0;
}

extern "C" int kvq_cu_gemv(int type, const uint8_t *w, int rows, int cols, const float *x, float *y)
{
    kvq_cu_bufs bufs = {};
    size_t nq = (size_t)rows * (size_t)(cols / KVQ_QK) * kvq_cu_block_bytes(type);
    CU_TRY(cudaMalloc(&bufs.p[0], nq));
    CU_TRY(cudaMalloc(&bufs.p[1], (size_t)cols * sizeof(float)));
    CU_TRY(cudaMalloc(&bufs.p[2], (size_t)rows * sizeof(float)));
    CU_TRY(cudaMemcpy(bufs.p[0], w, nq, cudaMemcpyHostToDevice));
    CU_TRY(cudaMemcpy(bufs.p[1], x, (size_t)cols * sizeof(float), cudaMemcpyHostToDevice));
    CU_TRY(kvq_cu_launch_gemv(type, bufs.p[0], rows, cols, (const float *)bufs.p[1], (float *)bufs.p[2], 0));
    CU_TRY(cudaMemcpy(y, bufs.p[2], (size_t)rows * sizeof(float), cudaMemcpyDeviceToHost));
    kvq_cu_bufs_free(&bufs);
    return 0;
}

extern "C" int kvq_cu_attend(const kvq_cuda_kv *kv, const float *q, int n_heads, float *out)
{
    kvq_cu_bufs bufs = {};
    size_t rows = (size_t)kv->n_ctx * (size_t)kv->n_kv_heads, bpr = (size_t)kv->head_size / KVQ_QK;
    size_t nk = rows * bpr * kvq_cu_block_bytes(kv->k_type), nv = rows * bpr * kvq_cu_block_bytes(kv->v_type);
    size_t nqo = (size_t)n_heads * (size_t)kv->head_size * sizeof(float);
    CU_TRY(cudaMalloc(&bufs.p[0], nk));
    CU_TRY(cudaMalloc(&bufs.p[1], nv));
    CU_TRY(cudaMalloc(&bufs.p[2], nqo));
    CU_TRY(cudaMalloc(&bufs.p[3], (size_t)n_heads * (size_t)kv->n_ctx * sizeof(float)));
    CU_TRY(cudaMalloc(&bufs.p[4], nqo));
    CU_TRY(cudaMemcpy(bufs.p[0], kv->k, nk, cudaMemcpyHostToDevice));
    CU_TRY(cudaMemcpy(bufs.p[1], kv->v, nv, cudaMemcpyHostToDevice));
    CU_TRY(cudaMemcpy(bufs.p[2], q, nqo, cudaMemcpyHostToDevice));
    CU_TRY(kvq_cu_launch_attend(kv, bufs.p[0], bufs.p[1], (const float *)bufs.p[2], n_heads, (float *)bufs.p[3],
                                (float *)bufs.p[4], 0));
    CU_TRY(cudaMemcpy(out, bufs.p[4], nqo, cudaMemcpyDeviceToHost));
    kvq_cu_bufs_free(&bufs);
    return 0;
}
