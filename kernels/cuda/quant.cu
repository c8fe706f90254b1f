/*
 * quant.cu — CUDA kernels for ggml Q8_0 / Q4_0 (issue 9 item 3):
 * quantize and dequantize with the CPU reference's exact arithmetic, and a
 * GEMV over quantized weights with dequantization in registers.  Entry
 * points are extern "C" (declared in blocks.h) and take host pointers;
 * kernels/cuda.c wraps them into kvq_err calls.
 *
 * Exactness against kernels/cpu/ref.c: every product and sum that must
 * match is written with __fmul_rn / __fadd_rn, so nvcc cannot contract it
 * into an FMA (it would by default); division is IEEE (no fast-math);
 * roundf is round-half-away like kvq_round_rha; float→int conversions
 * happen only in the int32 range and the wrap to 8 bits is done in
 * integers as on x86 (ref.c documents ggml's undefined cases).
 * GEMV: one warp per output row, each lane one block at a time (32 codes
 * unpacked in registers), the lanes' sums reduced with shuffles; the order
 * differs from the CPU dot, so results agree within f32 rounding.
 */
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <float.h>

#include "kernels/cuda/blocks.h"

#define THREADS      256 /* threads per block for the element-wise kernels */
#define WARP         32
#define ROWS_PER_CTA 8   /* GEMV: warps (rows) per thread block             */
#define Q8_0_QMAX    127.0f
#define Q4_0_DIV     (-8.0f)
#define Q4_0_OFFSET  8.5f
#define Q4_0_ZERO    8
#define Q4_0_CODE_MAX 15

__device__ static inline float f16_to_f32(uint16_t bits)
{
    __half_raw r;
    r.x = bits;
    return __half2float(__half(r));
}

__device__ static inline uint16_t f32_to_f16(float f)
{
    __half_raw r = __half(__float2half_rn(f));
    return r.x;
}

/* 1/d as ggml computes it, 0 when d is 0 or 1/d overflows. */
__device__ static inline float inverse_scale(float d, bool *ok)
{
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    *ok = id <= FLT_MAX && id >= -FLT_MAX;
    return *ok ? id : 0.0f;
}

__global__ static void quantize_q8_0(const float *x, kvq_block_q8_0 *out, size_t nb)
{
    size_t b = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= nb) return;
    const float *v = x + b * KVQ_QK;
    float amax = 0.0f;
    for (int j = 0; j < KVQ_QK; j++) amax = fmaxf(amax, fabsf(v[j]));
    float d = amax / Q8_0_QMAX;
    bool ok;
    float id = inverse_scale(d, &ok);
    for (int j = 0; j < KVQ_QK; j++) out[b].qs[j] = (int8_t)(int32_t)roundf(__fmul_rn(v[j], id));
    out[b].d = f32_to_f16(d);
}

__global__ static void quantize_q4_0(const float *x, kvq_block_q4_0 *out, size_t nb)
{
    size_t b = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= nb) return;
    const float *v = x + b * KVQ_QK;
    float amax = 0.0f, max = 0.0f; /* first value of largest magnitude */
    for (int j = 0; j < KVQ_QK; j++)
        if (fabsf(v[j]) > amax) {
            amax = fabsf(v[j]);
            max = v[j];
        }
    float d = max / Q4_0_DIV;
    bool ok;
    float id = inverse_scale(d, &ok);
    uint8_t c[KVQ_QK];
    for (int j = 0; j < KVQ_QK; j++) {
        float t = __fadd_rn(__fmul_rn(v[j], id), Q4_0_OFFSET);
        uint8_t q = (uint8_t)(int32_t)t;
        c[j] = ok ? (q < Q4_0_CODE_MAX ? q : Q4_0_CODE_MAX) : 0;
    }
    for (int j = 0; j < KVQ_QK / 2; j++) out[b].qs[j] = (uint8_t)(c[j] | c[j + KVQ_QK / 2] << 4);
    out[b].d = f32_to_f16(d);
}

/* Code j of a block as a signed value (Q8_0: q; Q4_0: q − 8). */
__device__ static inline int code_q8_0(const kvq_block_q8_0 *b, int j) { return b->qs[j]; }
__device__ static inline int code_q4_0(const kvq_block_q4_0 *b, int j)
{
    uint8_t byte = b->qs[j % (KVQ_QK / 2)];
    return (j < KVQ_QK / 2 ? byte & 0x0F : byte >> 4) - Q4_0_ZERO;
}

template <typename B> __device__ static inline int code(const B *b, int j);
template <> __device__ inline int code<kvq_block_q8_0>(const kvq_block_q8_0 *b, int j) { return code_q8_0(b, j); }
template <> __device__ inline int code<kvq_block_q4_0>(const kvq_block_q4_0 *b, int j) { return code_q4_0(b, j); }

/* One thread per value: y[i] = (float)q · d, as the CPU reference. */
template <typename B> __global__ static void dequantize(const B *src, float *y, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const B *b = src + i / KVQ_QK;
    y[i] = __fmul_rn((float)code(b, (int)(i % KVQ_QK)), f16_to_f32(b->d));
}

/* y[r] = Σ_c W[r][c]·x[c]: warp per row, lane per block, codes in registers. */
template <typename B> __global__ static void gemv(const B *w, const float *x, float *y, int rows, int cols)
{
    int row = blockIdx.x * ROWS_PER_CTA + threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (row >= rows) return;
    int bpr = cols / KVQ_QK;
    const B *wr = w + (size_t)row * bpr;
    float acc = 0.0f;
    for (int b = lane; b < bpr; b += WARP) {
        const float *xb = x + (size_t)b * KVQ_QK;
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < KVQ_QK; j++) s = fmaf((float)code(&wr[b], j), xb[j], s);
        acc = fmaf(s, f16_to_f32(wr[b].d), acc);
    }
    for (int off = WARP / 2; off > 0; off /= 2) acc += __shfl_down_sync(0xFFFFFFFFu, acc, off);
    if (lane == 0) y[row] = acc;
}

static size_t block_bytes(int type) { return type == KVQ_KT_Q8_0 ? KVQ_Q8_0_BYTES : KVQ_Q4_0_BYTES; }
static unsigned grid_for(size_t n, unsigned per) { return (unsigned)((n + per - 1) / per); }

extern "C" int kvq_cu_device_count(int *n)
{
    *n = 0;
    return (int)cudaGetDeviceCount(n);
}

extern "C" const char *kvq_cu_error_string(int err) { return cudaGetErrorString((cudaError_t)err); }

/* Device copies of up to three buffers, freed on every path. */
typedef struct {
    void *p[3];
} dev_bufs;

static void dev_free(dev_bufs *b)
{
    for (int i = 0; i < 3; i++)
        if (b->p[i]) cudaFree(b->p[i]);
}

#define CU_TRY(expr)                                                                                               \
    do {                                                                                                           \
        cudaError_t e_ = (expr);                                                                                   \
        if (e_ != cudaSuccess) {                                                                                   \
            dev_free(&bufs);                                                                                       \
            return (int)e_;                                                                                        \
        }                                                                                                          \
    } while (0)

extern "C" int kvq_cu_quantize(int type, const float *x, uint8_t *dst, size_t nb)
{
    dev_bufs bufs = {{NULL, NULL, NULL}};
    size_t nx = nb * KVQ_QK * sizeof(float), nq = nb * block_bytes(type);
    CU_TRY(cudaMalloc(&bufs.p[0], nx));
    CU_TRY(cudaMalloc(&bufs.p[1], nq));
    CU_TRY(cudaMemcpy(bufs.p[0], x, nx, cudaMemcpyHostToDevice));
    if (type == KVQ_KT_Q8_0)
        quantize_q8_0<<<grid_for(nb, THREADS), THREADS>>>((const float *)bufs.p[0], (kvq_block_q8_0 *)bufs.p[1], nb);
    else
        quantize_q4_0<<<grid_for(nb, THREADS), THREADS>>>((const float *)bufs.p[0], (kvq_block_q4_0 *)bufs.p[1], nb);
    CU_TRY(cudaGetLastError());
    CU_TRY(cudaMemcpy(dst, bufs.p[1], nq, cudaMemcpyDeviceToHost));
    dev_free(&bufs);
    return 0;
}

extern "C" int kvq_cu_dequantize(int type, const uint8_t *src, float *y, size_t nb)
{
    dev_bufs bufs = {{NULL, NULL, NULL}};
    size_t n = nb * KVQ_QK, nq = nb * block_bytes(type);
    CU_TRY(cudaMalloc(&bufs.p[0], nq));
    CU_TRY(cudaMalloc(&bufs.p[1], n * sizeof(float)));
    CU_TRY(cudaMemcpy(bufs.p[0], src, nq, cudaMemcpyHostToDevice));
    if (type == KVQ_KT_Q8_0)
        dequantize<<<grid_for(n, THREADS), THREADS>>>((const kvq_block_q8_0 *)bufs.p[0], (float *)bufs.p[1], n);
    else
        dequantize<<<grid_for(n, THREADS), THREADS>>>((const kvq_block_q4_0 *)bufs.p[0], (float *)bufs.p[1], n);
    CU_TRY(cudaGetLastError());
    CU_TRY(cudaMemcpy(y, bufs.p[1], n * sizeof(float), cudaMemcpyDeviceToHost));
    dev_free(&bufs);
    return 0;
}

extern "C" int kvq_cu_gemv(int type, const uint8_t *w, int rows, int cols, const float *x, float *y)
{
    dev_bufs bufs = {{NULL, NULL, NULL}};
    size_t nq = (size_t)rows * (size_t)(cols / KVQ_QK) * block_bytes(type);
    CU_TRY(cudaMalloc(&bufs.p[0], nq));
    CU_TRY(cudaMalloc(&bufs.p[1], (size_t)cols * sizeof(float)));
    CU_TRY(cudaMalloc(&bufs.p[2], (size_t)rows * sizeof(float)));
    CU_TRY(cudaMemcpy(bufs.p[0], w, nq, cudaMemcpyHostToDevice));
    CU_TRY(cudaMemcpy(bufs.p[1], x, (size_t)cols * sizeof(float), cudaMemcpyHostToDevice));
    unsigned grid = grid_for((size_t)rows, ROWS_PER_CTA);
    const float *dx = (const float *)bufs.p[1];
    float *dy = (float *)bufs.p[2];
    if (type == KVQ_KT_Q8_0)
        gemv<<<grid, ROWS_PER_CTA * WARP>>>((const kvq_block_q8_0 *)bufs.p[0], dx, dy, rows, cols);
    else
        gemv<<<grid, ROWS_PER_CTA * WARP>>>((const kvq_block_q4_0 *)bufs.p[0], dx, dy, rows, cols);
    CU_TRY(cudaGetLastError());
    CU_TRY(cudaMemcpy(y, dy, (size_t)rows * sizeof(float), cudaMemcpyDeviceToHost));
    dev_free(&bufs);
    return 0;
}
