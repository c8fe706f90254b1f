/*
 * kernels.h — the kernel slot table (DESIGN.md "kernels/", STYLE.md
 * "Kernels follow BLIS"; issue 9 items 1–2).
 *
 * A kvq_kernels table holds one function pointer per hot loop: quantize a
 * row of ggml blocks, dequantize a row, the dot product of a quantized row
 * with an f32 vector (the decoder's matmul, dequantization fused into the
 * product), and absmax.  cpu/ref.c fills every slot with the scalar
 * reference; cpu/avx2.c overrides the slots it implements when the CPU has
 * AVX2, FMA and F16C (checked at run time with __builtin_cpu_supports, so the
 * binary still runs without them).  Codecs and the decoder call
 * kvq_kernels_get() and never test for SIMD themselves.
 *
 * KVQ_SIMD=ref in the environment forces the reference table (testing,
 * bisecting); KVQ_SIMD=avx2 or unset picks the best the CPU supports.
 *
 * Block layouts (ggml, byte for byte; kernels/cuda/blocks.h repeats them
 * for the device with static asserts):
 *   Q8_0 (34 B): f16 d (LE); int8 qs[32]                x = d·q
 *   Q4_0 (18 B): f16 d (LE); u8 qs[16] split-half nibbles  x = d·(q − 8)
 * Exactness: quantize and dequantize slots give identical bytes / floats
 * in every table; dot slots differ only by summation order.
 */
#ifndef KVQ_KERNELS_H
#define KVQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kvq.h"

#define KVQ_QK          32 /* values per ggml block (QK8_0 = QK4_0)      */
#define KVQ_Q8_0_BYTES  34 /* bytes of one Q8_0 block                    */
#define KVQ_Q4_0_BYTES  18 /* bytes of one Q4_0 block                    */
#define KVQ_F16_EXP_MASK 0x7C00u /* all-ones exponent: the scale is Inf/NaN */

/* Block types with slots; KVQ_KT_NONE marks "no fused kernel". */
typedef enum { KVQ_KT_NONE = 0, KVQ_KT_Q8_0 = 1, KVQ_KT_Q4_0 = 2, KVQ_KT_COUNT = 3 } kvq_kt;

/* What a quantize slot saw, reported per call (a bit set) so the codec
 * needs no separate pass over its input or output: */
#define KVQ_KERN_NONFINITE   1u /* some input value was NaN or ±Inf        */
#define KVQ_KERN_SCALE_RANGE 2u /* some block's scale left the f16 range   */

/* quantize: nb blocks of 32 values x → blocks at dst (ggml reference
 *   rules, see quant/ggml.c).  Returns 0 or KVQ_KERN_* bits.  The bytes of
 *   a block that set a bit are unspecified (the codec reports an error);
 *   every other block is exact.  Non-finite input is detected from the
 *   block's largest exponent field inside the same pass.
 * dequantize: nb blocks → 32·nb floats.  Scales are not checked.
 * dot: Σ_i dequant(blocks)_i · x_i over nb blocks (scales not checked).
 * dots: out[i] = dot(src + i·stride, x, nb) for i < nrows: several rows
 *   per call with x reused from registers (the decoder's matmul over rows
 *   of a few blocks, where a call per row would dominate). */
typedef unsigned (*kvq_kern_quant_fn)(const float *x, uint8_t *dst, size_t nb);
typedef void (*kvq_kern_dequant_fn)(const uint8_t *src, float *y, size_t nb);
typedef float (*kvq_kern_dot_fn)(const uint8_t *src, const float *x, size_t nb);
typedef void (*kvq_kern_dots_fn)(const uint8_t *src, size_t stride, size_t nrows, const float *x, size_t nb,
                                 float *out);
typedef float (*kvq_kern_absmax_fn)(const float *x, size_t n);
/* dots_f16: out[i] = Σ_j f16(w[i·stride + j]) · x[j], j < n, for i < nrows
 * (plain f16 weights, e.g. a quantizer's fallback tensors; w needs only
 * 2-byte units, no alignment; little-endian f16). */
typedef void (*kvq_kern_dots_f16_fn)(const uint8_t *w, size_t stride, size_t nrows, const float *x, size_t n,
                                     float *out);
/* f16_gather: y[i] = f16(src + i·stride) for i < n (little-endian f16 at
 * any byte offset and stride: a codec's per-group scales). */
typedef void (*kvq_kern_f16_gather_fn)(const uint8_t *src, size_t stride, size_t n, float *y);

/* Integer codes of b bits (2..8) packed LSB first (quant_common.h bit
 * streams), as rtn, bfp and mxint8 store a row's groups / blocks; `codes`
 * is the byte where code 0 starts (a group starting at a multiple of 8
 * values starts on a byte), n any count.
 * codes_dot: *cx = Σ_i (code_i − off) · x_i and *sx = Σ_i x_i (any order:
 *   the codec's product is Σ_g scale_g·cx_g + bias_g·sx_g; off centres the
 *   codes, so a symmetric grid needs no bias term and cancels nothing).
 * codes_dequant: y_i = zero + scale · ((float)code_i − off), exactly these
 *   f32 operations in this order (rtn's and bfp's decode rule), so every
 *   table gives identical floats. */
typedef void (*kvq_kern_codes_dot_fn)(const uint8_t *codes, unsigned bits, size_t n, float off, const float *x,
                                      float *cx, float *sx);
typedef void (*kvq_kern_codes_dequant_fn)(const uint8_t *codes, unsigned bits, size_t n, float scale, float zero,
                                          float off, float *y);
/* codes_quant: code_i = clamp(RHA((x_i − z)·id), lo, hi) + off, packed
 *   at `codes` (rtn's rule: subtract, multiply, round half away from zero
 *   exactly as kvq_round_rha; |(x − z)·id| < 2^30), identical bytes in
 *   every table; lo + off ≥ 0 and hi + off < 2^bits. */
typedef void (*kvq_kern_codes_quant_fn)(const float *x, size_t n, float z, float id, int32_t lo, int32_t hi,
                                        int32_t off, unsigned bits, uint8_t *codes);
/* codes_row_dot: a row's groups of `group` values (the last may be
 * shorter) in one call: Σ_g scale[g]·Σ_{i∈g} (code_i − off)·x_i
 *   + bias[g]·Σ_{i∈g} x_i (bias may be NULL: no term), group a multiple
 * of 8 unless it is the whole row (every group starts on a byte). */
typedef float (*kvq_kern_codes_row_dot_fn)(const uint8_t *codes, unsigned bits, size_t n, size_t group, float off,
                                           const float *scale, const float *bias, const float *x);

typedef struct kvq_kernels {
    const char *name;                      /* "ref", "avx2"                   */
    kvq_kern_quant_fn   quantize[KVQ_KT_COUNT];
    kvq_kern_dequant_fn dequantize[KVQ_KT_COUNT];
    kvq_kern_dot_fn     dot[KVQ_KT_COUNT];
    kvq_kern_dots_fn    dots[KVQ_KT_COUNT];
    kvq_kern_absmax_fn  absmax;
    kvq_kern_dots_f16_fn dots_f16;
    kvq_kern_f16_gather_fn f16_gather;
    kvq_kern_codes_dot_fn     codes_dot;     /* cpu/int_ref.c, int_avx2.c */
    kvq_kern_codes_dequant_fn codes_dequant;
    kvq_kern_codes_row_dot_fn codes_row_dot;
    kvq_kern_codes_quant_fn   codes_quant;
    int fast_dot;  /* 1 when the dot slots beat dequantize + an f32 dot:
                      the decoder then runs them for single tokens (the
                      scalar reference is slower than gcc's vectorised
                      dequantize + dot, so it leaves this 0) */
} kvq_kernels;

/* kvq_kernels_get() : the table in use (thread-safe, chosen once). */
const kvq_kernels *kvq_kernels_get(void);
/* kvq_kernels_ref() : the complete scalar reference table. */
const kvq_kernels *kvq_kernels_ref(void);
/* kvq_kernels_avx2() : the reference with the AVX2/FMA overrides, or NULL
 * when this CPU lacks AVX2 or FMA. */
const kvq_kernels *kvq_kernels_avx2(void);

/* Filled by cpu/ref.c and cpu/avx2.c respectively. */
void kvq_kernels_fill_ref(kvq_kernels *k);
int  kvq_kernels_fill_avx2(kvq_kernels *k); /* 0 when the CPU lacks AVX2/FMA */

/* The integer-code slots, filled by fill_ref / fill_avx2. */
void kvq_kern_int_fill_ref(kvq_kernels *k);
void kvq_kern_int_fill_avx2(kvq_kernels *k); /* only called with AVX2/FMA present */

/* Helpers shared by slots and callers (cpu/ref.c). */
size_t kvq_kern_block_bytes(kvq_kt t);
/* Index of the first of nb blocks whose f16 scale is Inf/NaN, or nb. */
size_t kvq_kern_bad_scale(kvq_kt t, const uint8_t *blocks, size_t nb);
/* The scalar per-block quantizers (ref.c); the AVX2 code falls back to
 * them on blocks whose scale is f32-subnormal (ggml's undefined cases).
 * They return KVQ_KERN_* bits as the quantize slots do. */
unsigned kvq_kern_q8_0_block_ref(const float *x, uint8_t *blk);
unsigned kvq_kern_q4_0_block_ref(const float *x, uint8_t *blk);

/* ---- CUDA (kernels/cuda.c over the .cu files in kernels/cuda/) ----------
 * Host buffers in and out; the device copies are made inside.  Arguments
 * are checked first (KVQ_ERR_ARG / KVQ_ERR_SHAPE, on any machine); then,
 * without a CUDA build or without a device, KVQ_ERR_UNSUPPORTED with the
 * detail "no CUDA device" / "built without CUDA" (tests skip on it).
 *
 * Formats (kvq_cuda_fmt): Q8_0 and Q4_0 keep their kvq_kt values; MXFP4 is
 * the mxfp4 codec's payload (17-byte blocks of 32); NVFP4 is the nvfp4
 * codec's payload with its default tscale=1: a 4-byte f32 tensor scale G,
 * then 36-byte blocks of 64 (quant/fp_mx.c; layouts in kernels/cuda/blocks.h).
 * nb counts blocks of the format; payload bytes are kvq_cuda_payload_bytes.
 * quantize/dequantize equal the CPU codecs exactly (for finite inputs;
 * mxfp4's exponent: see kernels/cuda/fp4.cu); products agree within f32
 * summation order. */
typedef enum {
    KVQ_CF_Q8_0 = KVQ_KT_Q8_0,
    KVQ_CF_Q4_0 = KVQ_KT_Q4_0,
    KVQ_CF_MXFP4 = KVQ_KT_COUNT,
    KVQ_CF_NVFP4,
    KVQ_CF_COUNT
} kvq_cuda_fmt;

#define KVQ_MXFP4_BLOCK  32 /* values per MXFP4 block                     */
#define KVQ_MXFP4_BYTES  17 /* E8M0 + 16 bytes of E2M1 nibbles           */
#define KVQ_NVFP4_BLOCK  64 /* values per NVFP4 block (4 scales of 16)    */
#define KVQ_NVFP4_BYTES  36 /* 4 UE4M3 + 32 bytes of E2M1 nibbles        */
#define KVQ_NVFP4_HDR     4 /* f32 tensor scale in front of the blocks    */

/* Values per block of f (0 for an unknown f). */
int kvq_cuda_block_values(kvq_cuda_fmt f);
/* Bytes of nb blocks of f as the codec stores them (NVFP4: + header); 0
 * for an unknown f. */
size_t kvq_cuda_payload_bytes(kvq_cuda_fmt f, size_t nb);

int kvq_cuda_available(void); /* 1 when a build with CUDA sees a device */
kvq_err kvq_cuda_quantize(kvq_cuda_fmt f, const float *x, uint8_t *dst, size_t nb);
kvq_err kvq_cuda_dequantize(kvq_cuda_fmt f, const uint8_t *src, float *y, size_t nb);
/* y[rows] = W·x, W rows×cols of q8_0/q4_0 blocks (cols % 32 == 0),
 * dequantization in registers (one warp per row). */
kvq_err kvq_cuda_gemv(kvq_kt t, const uint8_t *w, int rows, int cols, const float *x, float *y);
/* Y[nb][rows] = X[nb][cols]·Wᵀ for a batch of nb tokens (prompt
 * processing): W (payload of format f, rows×cols) is dequantized to f32 on
 * the device tile by tile of rows, each tile multiplied by cublasGemmEx
 * (f32 in, f32 compute). */
kvq_err kvq_cuda_gemm(kvq_cuda_fmt f, const uint8_t *w, int rows, int cols, const float *x, int nb, float *y);
/* GEAR's low-rank residual (compress/gear.c) for a page of T tokens, H KV
 * heads of d channels, rank r, through one strided-batched cuBLAS GEMM:
 *   y[t][h·d + c] += Σ_j A[h][j][t] · B[h][j][c]
 * A [H][r][T] are gear's stored A columns, B [H][r][d] its B columns
 * already multiplied by their scales s_j (both widened to f32). */
kvq_err kvq_cuda_lowrank_residual(const float *A, const float *B, int H, int T, int d, int r, float *y);
/* The low-rank term of attention scores without forming A·Bᵀ: for query
 * head h (KV head h / (n_heads / H)),
 *   s[h][t] += (Σ_c q[h][c] · B[kvh][j][c]) · A[kvh][j][t] summed over j,
 * i.e. (q·Bᵀ)·A per KV head: two strided-batched GEMMs.  s is
 * [n_heads][T] (unscaled; the caller divides by sqrtf(d) with its D term). */
kvq_err kvq_cuda_lowrank_scores(const float *A, const float *B, int H, int T, int d, int r, const float *q,
                                int n_heads, float *s);
/* Attention of one query (n_heads heads, GQA) over n_ctx tokens whose K
 * and V rows [n_ctx][n_kv_heads][head_size] are q8_0/q4_0 payloads (a
 * cache's sealed pages back to back), as libkvq/cache.c computes it:
 * score = Σ q·k / sqrtf(head_size), llama2.c softmax, out = Σ p·v; codes
 * are dequantized in registers in both loops.  out is [n_heads][head_size]. */
typedef struct {
    kvq_kt k_type, v_type;
    const uint8_t *k, *v;
    int n_ctx, n_kv_heads, head_size;
} kvq_cuda_kv;
kvq_err kvq_cuda_attend(const kvq_cuda_kv *kv, const float *q, int n_heads, float *out);

#endif
