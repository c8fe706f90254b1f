/*
 * cu_internal.cuh — what the .cu files of kernels/cuda/ share (issue 9
 * item 3): exact scalar helpers (f16 bits, powers of two from bits, the
 * E2M1 table), the launchers each file exports to the others (device
 * pointers, one stream), and the cleanup helpers of the host entries.
 * C++ only; kernels/cuda.c sees nothing but blocks.h.
 *
 * Exactness rules for every kernel that must equal the CPU bit for bit:
 * products and sums are written with __fmul_rn / __fadd_rn / __fsub_rn so
 * nvcc cannot contract them into FMAs (it does by default); division and
 * log2f are the IEEE/accurate versions (no --use_fast_math, no -ftz).
 */
#ifndef KVQ_CU_INTERNAL_CUH
#define KVQ_CU_INTERNAL_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/blocks.h"

#define KVQ_CU_THREADS 256 /* threads per block of the element-wise kernels */
#define KVQ_CU_WARP    32
#define KVQ_CU_FULL    0xFFFFFFFFu /* all lanes of a warp                       */

/* E2M1 values doubled (ggml kvalues_mxfp4; code 8 is +0 as on the CPU). */
static __constant__ float kvq_cu_kv_fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

__device__ static inline float kvq_cu_f16(uint16_t bits)
{
    __half_raw r;
    r.x = bits;
    return __half2float(__half(r));
}

__device__ static inline uint16_t kvq_cu_to_f16(float f)
{
    __half_raw r = __half(__float2half_rn(f));
    return r.x;
}

/* 2^k for −149 <= k <= 127, built from its bits (normal or subnormal). */
__device__ static inline float kvq_cu_pow2(int k)
{
    return k >= -126 ? __uint_as_float((unsigned)(k + 127) << 23) : __uint_as_float(1u << (k + 149));
}

/* Code j of a ggml block as a signed value (Q8_0: q; Q4_0: q − 8), and
 * the dequantized value code·d (one rounding, as the CPU reference). */
#define KVQ_CU_Q4_0_ZERO 8
__device__ static inline int kvq_cu_code(const kvq_block_q8_0 *b, int j) { return b->qs[j]; }
__device__ static inline int kvq_cu_code(const kvq_block_q4_0 *b, int j)
{
    uint8_t byte = b->qs[j % (KVQ_QK / 2)];
    return (j < KVQ_QK / 2 ? byte & 0x0F : byte >> 4) - KVQ_CU_Q4_0_ZERO;
}
template <typename B> __device__ static inline float kvq_cu_value(const B *b, int j)
{
    return __fmul_rn((float)kvq_cu_code(b, j), kvq_cu_f16(b->d));
}

static inline unsigned kvq_cu_grid(size_t n, unsigned per) { return (unsigned)((n + per - 1) / per); }

/* Host-side geometry of a format (kernels/cuda.c checked fmt already). */
static inline size_t kvq_cu_block_values(int fmt) { return fmt == KVQ_CF_NVFP4 ? KVQ_NVFP4_BLOCK : KVQ_QK; }
static inline size_t kvq_cu_block_bytes(int fmt)
{
    return fmt == KVQ_CF_Q8_0 ? KVQ_Q8_0_BYTES : fmt == KVQ_CF_Q4_0 ? KVQ_Q4_0_BYTES
         : fmt == KVQ_CF_MXFP4 ? KVQ_MXFP4_BYTES : KVQ_NVFP4_BYTES;
}
static inline size_t kvq_cu_header_bytes(int fmt) { return fmt == KVQ_CF_NVFP4 ? KVQ_NVFP4_HDR : 0; }

/* ---- launchers (device pointers; return cudaGetLastError()) -------------- */
/* quant.cu: ggml Q8_0 / Q4_0 */
cudaError_t kvq_cu_launch_quant_gg(int type, const float *x, void *blocks, size_t nb, cudaStream_t s);
cudaError_t kvq_cu_launch_dequant_gg(int type, const void *blocks, float *y, size_t nb, cudaStream_t s);
cudaError_t kvq_cu_launch_gemv(int type, const void *w, int rows, int cols, const float *x, float *y,
                               cudaStream_t s);
/* fp4.cu: MXFP4 / NVFP4 blocks (inv_g, g: NVFP4's tensor scale and its
 * reciprocal; ignored for MXFP4), and max |x| as f32 bits into *amax_bits
 * (which must hold 0 before the launch). */
cudaError_t kvq_cu_launch_quant_fp4(int fmt, const float *x, void *blocks, size_t nb, float inv_g, cudaStream_t s);
cudaError_t kvq_cu_launch_dequant_fp4(int fmt, const void *blocks, float g, float *y, size_t nb, cudaStream_t s);
cudaError_t kvq_cu_launch_absmax(const float *x, size_t n, unsigned *amax_bits, cudaStream_t s);
/* quant.cu: any format (g: NVFP4's tensor scale, else ignored) */
cudaError_t kvq_cu_launch_dequant(int fmt, const void *blocks, float g, float *y, size_t nb, cudaStream_t s);
/* host.cu: quantize nb blocks at x into blocks (no header); NVFP4's tensor
 * scale G goes to *g (1 for the other formats); amax is one device word. */
cudaError_t kvq_cu_quantize_dev(int fmt, const float *x, void *blocks, size_t nb, unsigned *amax, float *g);
/* attn.cu */
cudaError_t kvq_cu_launch_attend(const kvq_cuda_kv *kv, const void *k, const void *v, const float *q, int n_heads,
                                 float *att, float *out, cudaStream_t s);

/* ---- host-side cleanup ----------------------------------------------------- */
#define KVQ_CU_MAX_BUFS 6

/* Device buffers of one host entry, freed on every path. */
typedef struct {
    void *p[KVQ_CU_MAX_BUFS];
} kvq_cu_bufs;

static inline void kvq_cu_bufs_free(kvq_cu_bufs *b)
{
    for (int i = 0; i < KVQ_CU_MAX_BUFS; i++)
        if (b->p[i]) cudaFree(b->p[i]);
}

#endif
