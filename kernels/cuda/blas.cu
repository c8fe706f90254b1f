/*
 * blas.cu — the cuBLAS products of issue 9 item 3, as extern "C" entries
 * over host buffers (declared in blocks.h, wrapped by kernels/cuda.c):
 *
 *   kvq_cu_gemm: batched prompt processing, Y[nb][rows] = X[nb][cols]·Wᵀ.
 *     W stays quantized on the device; GEMM_TILE_VALUES floats of it at a
 *     time are dequantized (quant.cu / fp4.cu kernels, exact) into one
 *     tile buffer and multiplied by cublasGemmEx in f32 with f32 compute
 *     (CUBLAS_COMPUTE_32F: no TF32), so device memory holds the quantized
 *     weights plus one f32 tile, never the whole f32 matrix.
 *   kvq_cu_lowrank_residual: GEAR's per-head A·Bᵀ added into a page
 *     (compress/gear.c apply_lowrank), one strided-batched GEMM over heads.
 *   kvq_cu_lowrank_scores: the low-rank term of attention scores as
 *     (q·Bᵀ)·A per KV head — two strided-batched GEMMs, rank-r work instead
 *     of materialising the T×d residual.
 *
 * cuBLAS is column-major: a row-major [m][n] array is a column-major n×m
 * matrix with leading dimension n.  Each call below says which view it uses.
 */
#include <cublas_v2.h>
#include <string.h>

#include "kernels/cuda/cu_internal.cuh"

#define GEMM_TILE_VALUES (1u << 24) /* f32 values of one dequantized tile (64 MiB) */

/* One call's cuBLAS handle and device buffers, released on every path. */
typedef struct {
    kvq_cu_bufs bufs;
    cublasHandle_t blas;
} blas_call;

static int blas_end(blas_call *c, int err)
{
    if (c->blas) cublasDestroy(c->blas);
    kvq_cu_bufs_free(&c->bufs);
    return err;
}

#define CALL_TRY(expr)                                                                                             \
    do {                                                                                                           \
        cudaError_t e_ = (expr);                                                                                   \
        if (e_ != cudaSuccess) return blas_end(&call, (int)e_);                                                    \
    } while (0)
#define BLAS_TRY(expr)                                                                                             \
    do {                                                                                                           \
        cublasStatus_t s_ = (expr);                                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) return blas_end(&call, KVQ_CU_BLAS_FAILED + (int)s_);                     \
    } while (0)

/* Copy n bytes of host memory into a new device buffer call.bufs.p[i]. */
static cudaError_t upload(blas_call *c, int i, const void *src, size_t n)
{
    cudaError_t e = cudaMalloc(&c->bufs.p[i], n ? n : 1);
    return e != cudaSuccess || !src ? e : cudaMemcpy(c->bufs.p[i], src, n, cudaMemcpyHostToDevice);
}

extern "C" int kvq_cu_gemm(int fmt, const uint8_t *w, int rows, int cols, const float *x, int nb, float *y)
{
    blas_call call = {};
    const size_t bpr = (size_t)cols / kvq_cu_block_values(fmt), bb = kvq_cu_block_bytes(fmt);
    const size_t hdr = kvq_cu_header_bytes(fmt);
    float g = 1.0f;
    if (hdr) memcpy(&g, w, sizeof g);
    size_t tile = GEMM_TILE_VALUES / (size_t)cols;
    tile = tile < 1 ? 1 : tile < (size_t)rows ? tile : (size_t)rows;
    CALL_TRY(upload(&call, 0, w + hdr, (size_t)rows * bpr * bb));
    CALL_TRY(upload(&call, 1, x, (size_t)nb * (size_t)cols * sizeof(float)));
    CALL_TRY(upload(&call, 2, NULL, (size_t)nb * (size_t)rows * sizeof(float)));
    CALL_TRY(upload(&call, 3, NULL, tile * (size_t)cols * sizeof(float)));
    BLAS_TRY(cublasCreate(&call.blas));
    const uint8_t *dw = (const uint8_t *)call.bufs.p[0];
    float *dx = (float *)call.bufs.p[1], *dy = (float *)call.bufs.p[2], *dt = (float *)call.bufs.p[3];
    const float one = 1.0f, zero = 0.0f;
    for (size_t r0 = 0; r0 < (size_t)rows; r0 += tile) {
        size_t tr = (size_t)rows - r0 < tile ? (size_t)rows - r0 : tile;
        CALL_TRY(kvq_cu_launch_dequant(fmt, dw + r0 * bpr * bb, g, dt, tr * bpr, 0));
        /* C (tr×nb, ld rows) = op_T(tile: col-major cols×tr) · X (col-major cols×nb):
         * C(i, j) = Σ_c W[r0+i][c]·X[j][c] = Y[j][r0+i]. */
        BLAS_TRY(cublasGemmEx(call.blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)tr, nb, cols, &one, dt, CUDA_R_32F, cols,
                              dx, CUDA_R_32F, cols, &zero, dy + r0, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
    }
    CALL_TRY(cudaMemcpy(y, dy, (size_t)nb * (size_t)rows * sizeof(float), cudaMemcpyDeviceToHost));
    return blas_end(&call, 0);
}

extern "C" int kvq_cu_lowrank_residual(const float *A, const float *B, int H, int T, int d, int r, float *y)
{
    blas_call call = {};
    const size_t ny = (size_t)T * (size_t)H * (size_t)d;
    CALL_TRY(upload(&call, 0, A, (size_t)H * (size_t)r * (size_t)T * sizeof(float)));
    CALL_TRY(upload(&call, 1, B, (size_t)H * (size_t)r * (size_t)d * sizeof(float)));
    CALL_TRY(upload(&call, 2, y, ny * sizeof(float)));
    BLAS_TRY(cublasCreate(&call.blas));
    const float one = 1.0f;
    /* Head h: C_h (d×T, ld H·d, at y + h·d) += B_h (col-major d×r, ld d) ·
     * op_T(A_h: col-major T×r, ld T), i.e. C(c, t) += Σ_j B[h][j][c]·A[h][j][t]. */
    BLAS_TRY(cublasGemmStridedBatchedEx(call.blas, CUBLAS_OP_N, CUBLAS_OP_T, d, T, r, &one, call.bufs.p[1],
                                        CUDA_R_32F, d, (long long)r * d, call.bufs.p[0], CUDA_R_32F, T,
                                        (long long)r * T, &one, call.bufs.p[2], CUDA_R_32F, H * d, d, H,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    CALL_TRY(cudaMemcpy(y, call.bufs.p[2], ny * sizeof(float), cudaMemcpyDeviceToHost));
    return blas_end(&call, 0);
}

extern "C" int kvq_cu_lowrank_scores(const float *A, const float *B, int H, int T, int d, int r, const float *q,
                                     int n_heads, float *s)
{
    blas_call call = {};
    const int group = n_heads / H;
    const size_t ns = (size_t)n_heads * (size_t)T;
    CALL_TRY(upload(&call, 0, A, (size_t)H * (size_t)r * (size_t)T * sizeof(float)));
    CALL_TRY(upload(&call, 1, B, (size_t)H * (size_t)r * (size_t)d * sizeof(float)));
    CALL_TRY(upload(&call, 2, q, (size_t)n_heads * (size_t)d * sizeof(float)));
    CALL_TRY(upload(&call, 3, s, ns * sizeof(float)));
    CALL_TRY(upload(&call, 4, NULL, (size_t)n_heads * (size_t)r * sizeof(float)));
    BLAS_TRY(cublasCreate(&call.blas));
    const float one = 1.0f, zero = 0.0f;
    /* W (col-major r×group per KV head, ld r: W(j, g) = Σ_c B[kvh][j][c]·q[kvh·group + g][c])
     *   = op_T(B_kvh: col-major d×r, ld d) · Q_kvh (col-major d×group, ld d). */
    BLAS_TRY(cublasGemmStridedBatchedEx(call.blas, CUBLAS_OP_T, CUBLAS_OP_N, r, group, d, &one, call.bufs.p[1],
                                        CUDA_R_32F, d, (long long)r * d, call.bufs.p[2], CUDA_R_32F, d,
                                        (long long)group * d, &zero, call.bufs.p[4], CUDA_R_32F, r,
                                        (long long)group * r, H, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    /* S_kvh (col-major T×group, ld T: S(t, g) = s[kvh·group + g][t]) +=
     *   A_kvh (col-major T×r, ld T) · W (col-major r×group, ld r). */
    BLAS_TRY(cublasGemmStridedBatchedEx(call.blas, CUBLAS_OP_N, CUBLAS_OP_N, T, group, r, &one, call.bufs.p[0],
                                        CUDA_R_32F, T, (long long)r * T, call.bufs.p[4], CUDA_R_32F, r,
                                        (long long)group * r, &one, call.bufs.p[3], CUDA_R_32F, T,
                                        (long long)group * T, H, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    CALL_TRY(cudaMemcpy(s, call.bufs.p[3], ns * sizeof(float), cudaMemcpyDeviceToHost));
    return blas_end(&call, 0);
}
