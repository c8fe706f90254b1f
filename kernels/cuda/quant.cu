/*
 * quant.cu — CUDA kernels for ggml Q8_0 / Q4_0 (issue 9 item 3):
 * quantize and dequantize with the CPU reference's exact arithmetic, and a
 * GEMV over quantized weights with dequantization in registers.  The
 * launchers take device pointers (cu_internal.cuh); host.cu holds the
 * extern "C" entries that kernels/cuda.c wraps into kvq_err calls.
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
#include <float.h>

#include "kernels/cuda/cu_internal.cuh"

#define THREADS      KVQ_CU_THREADS
#define WARP         KVQ_CU_WARP
#define ROWS_PER_CTA 8   /* GEMV: warps (rows) per thread block             */
#define DQ_VEC       4   /* dequantize: values per thread (one float4 store) */
#define Q8_0_QMAX    127.0f
#define Q4_0_DIV     (-8.0f)
#define Q4_0_OFFSET  8.5f
#define Q4_0_CODE_MAX 15

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
    out[b].d = kvq_cu_to_f16(d);
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
    out[b].d = kvq_cu_to_f16(d);
}

/* DQ_VEC consecutive values per thread (32 is a multiple, so they share a
 * block): y[i] = (float)q · d, as the CPU reference; one 16-byte store. */
template <typename B> __global__ static void dequantize(const B *src, float4 *y, size_t n4)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    const B *b = src + i / (KVQ_QK / DQ_VEC);
    int j = (int)(i % (KVQ_QK / DQ_VEC)) * DQ_VEC;
    float d = kvq_cu_f16(b->d);
    y[i] = make_float4(__fmul_rn((float)kvq_cu_code(b, j), d), __fmul_rn((float)kvq_cu_code(b, j + 1), d),
                       __fmul_rn((float)kvq_cu_code(b, j + 2), d), __fmul_rn((float)kvq_cu_code(b, j + 3), d));
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
        for (int j = 0; j < KVQ_QK; j++) s = fmaf((float)kvq_cu_code(&wr[b], j), xb[j], s);
        acc = fmaf(s, kvq_cu_f16(wr[b].d), acc);
    }
    for (int off = WARP / 2; off > 0; off /= 2) acc += __shfl_down_sync(KVQ_CU_FULL, acc, off);
    if (lane == 0) y[row] = acc;
}

/* ---- launchers ---------------------------------------------------------------- */
cudaError_t kvq_cu_launch_quant_gg(int type, const float *x, void *blocks, size_t nb, cudaStream_t s)
{
    unsigned grid = kvq_cu_grid(nb, THREADS);
    if (type == KVQ_KT_Q8_0) quantize_q8_0<<<grid, THREADS, 0, s>>>(x, (kvq_block_q8_0 *)blocks, nb);
    else quantize_q4_0<<<grid, THREADS, 0, s>>>(x, (kvq_block_q4_0 *)blocks, nb);
    return cudaGetLastError();
}

cudaError_t kvq_cu_launch_dequant_gg(int type, const void *blocks, float *y, size_t nb, cudaStream_t s)
{
    size_t n4 = nb * (KVQ_QK / DQ_VEC);
    unsigned grid = kvq_cu_grid(n4, THREADS);
    if (type == KVQ_KT_Q8_0) dequantize<<<grid, THREADS, 0, s>>>((const kvq_block_q8_0 *)blocks, (float4 *)y, n4);
    else dequantize<<<grid, THREADS, 0, s>>>((const kvq_block_q4_0 *)blocks, (float4 *)y, n4);
    return cudaGetLastError();
}

cudaError_t kvq_cu_launch_gemv(int type, const void *w, int rows, int cols, const float *x, float *y, cudaStream_t s)
{
    unsigned grid = kvq_cu_grid((size_t)rows, ROWS_PER_CTA);
    if (type == KVQ_KT_Q8_0)
        gemv<<<grid, ROWS_PER_CTA * WARP, 0, s>>>((const kvq_block_q8_0 *)w, x, y, rows, cols);
    else
        gemv<<<grid, ROWS_PER_CTA * WARP, 0, s>>>((const kvq_block_q4_0 *)w, x, y, rows, cols);
    return cudaGetLastError();
}

cudaError_t kvq_cu_launch_dequant(int fmt, const void *blocks, float g, float *y, size_t nb, cudaStream_t s)
{
    if (fmt == KVQ_CF_Q8_0 || fmt == KVQ_CF_Q4_0) return kvq_cu_launch_dequant_gg(fmt, blocks, y, nb, s);
    return kvq_cu_launch_dequant_fp4(fmt, blocks, g, y, nb, s);
}
