/*
 * blocks.h — ggml Q8_0 / Q4_0 block layouts shared by the host (C) and the
 * device (CUDA C++), the ggml-common.h idea (DESIGN.md "kernels/"; issue
 * 9 item 3).  The static asserts tie these structs to the byte counts the
 * CPU kernels use (kernels/kernels.h), so a layout change cannot reach
 * only one side.
 *   Q8_0 (34 B): f16 d (LE bits); int8 qs[32]                 x = d·q
 *   Q4_0 (18 B): f16 d (LE bits); u8 qs[16], byte j = code j | code j+16 << 4
 *                                                             x = d·(q − 8)
 * Blocks are packed back to back; uint16_t alignment (2) divides both
 * sizes, so every block's scale is naturally aligned in an array.
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
KVQ_BLOCKS_ASSERT(KVQ_QK == 32, "a block is one warp of values");

/* Entry points of kernels/cuda/quant.cu (extern "C"; host pointers in and
 * out, device buffers handled inside).  They return a cudaError_t value
 * (0 = success); kvq_cu_error_string() names it.  Only kernels/cuda.c
 * calls them. */
#ifdef __cplusplus
extern "C" {
#endif
int kvq_cu_device_count(int *n);
const char *kvq_cu_error_string(int err);
int kvq_cu_quantize(int type, const float *x, uint8_t *dst, size_t nb);
int kvq_cu_dequantize(int type, const uint8_t *src, float *y, size_t nb);
int kvq_cu_gemv(int type, const uint8_t *w, int rows, int cols, const float *x, float *y);
#ifdef __cplusplus
}
#endif

#endif
