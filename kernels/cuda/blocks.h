/*
 * blocks.h — block layouts shared by the host (C) and the device (CUDA
 * C++), the ggml-common.h idea (DESIGN.md "kernels/"; issue 9 item 3), and
 * the interface between kernels/cuda.c and the .cu files.  The static
 * asserts tie these structs to the byte counts the CPU side uses
 * (kernels/kernels.h, quant/ggml.c, quant/fp_mx.c), so a layout change
 * cannot reach only one side.
 *   Q8_0  (34 B): f16 d (LE bits); int8 qs[32]                x = d·q
 *   Q4_0  (18 B): f16 d (LE bits); u8 qs[16], byte j = code j | code j+16 << 4
 *                                                             x = d·(q − 8)
 *   MXFP4 (17 B): E8M0 e; u8 qs[16] split-half as Q4_0        x = kv[c]·2^(e−128)
 *   NVFP4 (36 B): UE4M3 d[4] (one per 16); u8 qs[32], sub-block s in bytes
 *                 8s..8s+7, element j low nibble, j + 8 high  x = kv[c]·d_s/2·G
 *   (kv = E2M1 values doubled: 0 1 2 3 4 6 8 12, code bit 3 = sign; G = the
 *   nvfp4 payload's f32 tensor scale in front of its blocks.)
 * Blocks are packed back to back; uint16_t alignment (2) divides the ggml
 * sizes, so every block's scale is naturally aligned in an array; the FP4
 * blocks are bytes only (alignment 1).
 */
#ifndef KVQ_CUDA_BLOCKS_H
#define KVQ_CUDA_BLOCKS_H

#include <stdint.h>

#include "kernels/kernels.h"

#ifdef __cplusplus
#define KVQ_BLOCKS_ASSERT(c, m) static_assert(c, m)
#else
#define KVQ_BLOCKS_ASSERT(c, m) _Static_assert(c, m)
#endif

typedef struct {
    uint16_t d;            /* f16 scale bits (little-endian hosts and GPUs) */
    int8_t   qs[KVQ_QK];
} kvq_block_q8_0;

typedef struct {
    uint16_t d;            /* f16 scale bits                               */
    uint8_t  qs[KVQ_QK / 2];
} kvq_block_q4_0;

KVQ_BLOCKS_ASSERT(sizeof(kvq_block_q8_0) == KVQ_Q8_0_BYTES, "Q8_0 block is 34 bytes (ggml-common.h)");
KVQ_BLOCKS_ASSERT(sizeof(kvq_block_q4_0) == KVQ_Q4_0_BYTES, "Q4_0 block is 18 bytes (ggml-common.h)");
typedef struct {
    uint8_t e;             /* E8M0 exponent                                */
    uint8_t qs[KVQ_MXFP4_BLOCK / 2];
} kvq_block_mxfp4;

typedef struct {
    uint8_t d[KVQ_NVFP4_BLOCK / 16]; /* UE4M3 scale of each 16 values   */
    uint8_t qs[KVQ_NVFP4_BLOCK / 2];
} kvq_block_nvfp4;

KVQ_BLOCKS_ASSERT(KVQ_QK == 32, "a block is one warp of values");
KVQ_BLOCKS_ASSERT(sizeof(kvq_block_mxfp4) == KVQ_MXFP4_BYTES, "MXFP4 block is 17 bytes (ggml block_mxfp4)");
KVQ_BLOCKS_ASSERT(sizeof(kvq_block_nvfp4) == KVQ_NVFP4_BYTES, "NVFP4 block is 36 bytes (ggml block_nvfp4)");
KVQ_BLOCKS_ASSERT(KVQ_MXFP4_BLOCK == KVQ_QK, "an MXFP4 block is one warp of values");

/* Entry points of kernels/cuda/host.cu (extern "C"; host pointers in and
 * out, device buffers handled inside; arguments already checked by
 * kernels/cuda.c).  They return a cudaError_t value (0 = success), or
 * KVQ_CU_BLAS_FAILED + the cublasStatus_t for a cuBLAS failure;
 * kvq_cu_error_string() names either.  Only kernels/cuda.c and
 * kernels/cuda_bench.c call them. */
#define KVQ_CU_BLAS_FAILED 100000

#ifdef __cplusplus
extern "C" {
#endif
int kvq_cu_device_count(int *n);
int kvq_cu_device_name(char *name, size_t cap);
const char *kvq_cu_error_string(int err);
int kvq_cu_quantize(int fmt, const float *x, uint8_t *dst, size_t nb);
int kvq_cu_dequantize(int fmt, const uint8_t *src, float *y, size_t nb);
int kvq_cu_gemv(int type, const uint8_t *w, int rows, int cols, const float *x, float *y);
int kvq_cu_gemm(int fmt, const uint8_t *w, int rows, int cols, const float *x, int nb, float *y);
int kvq_cu_lowrank_residual(const float *A, const float *B, int H, int T, int d, int r, float *y);
int kvq_cu_lowrank_scores(const float *A, const float *B, int H, int T, int d, int r, const float *q,
                          int n_heads, float *s);
int kvq_cu_attend(const kvq_cuda_kv *kv, const float *q, int n_heads, float *out);
/* Device-resident timing of quantize, dequantize (x → payload → y, nb
 * blocks, input x on the host) and of a device-to-device cudaMemcpy of the
 * f32 tensor, best of reps, into t's *_s fields; the payload and the
 * dequantized floats come back to q and y for the caller's exactness check. */
int kvq_cu_time_codec(int fmt, const float *x, size_t nb, int reps, uint8_t *q, float *y, kvq_cuda_codec_bench *t);
/* Seconds of one "token" of n_mats GEMVs (weights w[i], rows[i]×cols[i] of
 * block type types[i], uploaded once), best of reps; KVQ_KT_NONE: f32
 * weights through cublasSgemv. */
int kvq_cu_time_gemvs(const int *types, const uint8_t *const *w, const int *rows, const int *cols, int n_mats,
                      int reps, double *sec);
#ifdef __cplusplus
}
#endif

#endif
