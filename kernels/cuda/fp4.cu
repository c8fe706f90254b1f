/*
 * fp4.cu — CUDA quantize and dequantize for the FP4 block formats of
 * quant/fp_mx.c (issue 9 item 3; quant-methods.md §6.2 MXFP4, §6.3 NVFP4),
 * byte for byte and float for float equal to the CPU codecs:
 *
 *   mxfp4: one thread per block of 32.  e = the exponent field of amax − 2
 *     when amax is normal with a mantissa below 0x7FF000, else
 *     (uint8)(int32)(floorf(log2f(amax)) − 2 + 127) (fp_mx.c mx_exponent);
 *     codes count the E2M1 midpoints 0.25 0.75 … 5 that |x|·2^(127−e)
 *     exceeds (ties toward zero), sign bit 3 for non-zero magnitudes.
 *     Decode: kv[c] · 2^(e−128).  The log2f branch (a block maximum
 *     within 2^-11 relative below a power of two, or subnormal) takes log2
 *     in double rounded once to f32: CUDA's f32 log2f errs by up to 1 ulp,
 *     which moves floor() whenever log2(amax) rounds to an integer.  For
 *     every one of the 9,428,991 floats on that branch floor() of glibc's
 *     log2f equals floor() of the correctly rounded log2, and log2 stays
 *     >= 2.4e-10 relative away from each f32 rounding boundary below an
 *     integer (checked exhaustively on the CPU), far beyond the few ulps
 *     of CUDA's double log2: the exponent equals the CPU's for all inputs.
 *   nvfp4: one thread per block of 64.  v = x·(1/G); per 16 values
 *     amax → UE4M3 code of amax/6 (ggml's rounding, quant_common.h
 *     kvq_ue4m3_from_f32), d = value/2; codes by counting the midpoints
 *     (d·0.5 … d·10) when d > 0 and amax <= 2^20·d, else ggml's first
 *     minimum of |kv·d − v|.  Decode: (kv[c]·d)·G.  The tensor scale G is
 *     computed by the host from a device absmax (host.cu).
 *
 * Every product/difference is __fmul_rn/__fsub_rn/__fadd_rn: no FMA
 * contraction, the same single roundings as the CPU code.
 */
#include "kernels/cuda/cu_internal.cuh"

#define THREADS          KVQ_CU_THREADS
#define DQ_VEC           4          /* dequantize: values per thread (float4)  */
#define MX_EMIN_ELEM     2          /* emax of E2M1                            */
#define MX_MANT_NEAR_TOP 0x7FF000u  /* fp_mx.c: below this, floor(log2) = exp  */
#define NV_SUB           16         /* values per UE4M3 scale                  */
#define NV_SUBS          (KVQ_NVFP4_BLOCK / NV_SUB)
#define NV_E2M1_MAX      6.0f
#define NV_FAST_RANGE    1048576.0f /* 2^20: fp_mx.c nv_codes_fast's validity   */
#define UE4M3_SAT        0x7Eu      /* 448                                     */
#define UE4M3_NAN_LIKE   0x7Fu      /* decodes to 0                            */
#define UE4M3_MAX        448.0f
#define UE4M3_SUB_MUL    512.0f     /* subnormal step 2^-9                     */

/* ---- scale formats --------------------------------------------------------- */
__device__ static inline unsigned mx_exponent(float amax)
{
    if (!(amax > 0.0f)) return 0;
    unsigned u = __float_as_uint(amax);
    if ((u >> 23) != 0 && (u & 0x7FFFFFu) < MX_MANT_NEAR_TOP) return (uint8_t)((int)(u >> 23) - MX_EMIN_ELEM);
    float l = __double2float_rn(log2((double)amax)); /* log2f, correctly rounded */
    float f = __fadd_rn(__fsub_rn(floorf(l), (float)MX_EMIN_ELEM), 127.0f);
    return (uint8_t)(int32_t)f;
}

__device__ static inline uint8_t ue4m3_from_f32(float x)
{
    if (!(x > 0.0f)) return 0;
    if (x > UE4M3_MAX) x = UE4M3_MAX;
    unsigned bits = __float_as_uint(x);
    int ex = (int)((bits >> 23) & 0xFF) - 127 + 7;
    unsigned man = (bits >> 20) & 7;
    if (ex <= 0) {
        int sub = (int)__fadd_rn(__fmul_rn(x, UE4M3_SUB_MUL), 0.5f);
        return (uint8_t)(sub < 1 ? 0 : sub > 7 ? 7 : sub);
    }
    if (ex >= 15) return UE4M3_SAT;
    man += (bits >> 19) & 1; /* half up on the first dropped bit */
    if (man > 7) {
        man = 0;
        if (++ex >= 15) return UE4M3_SAT;
    }
    return (uint8_t)((unsigned)ex << 3 | man);
}

__device__ static inline float ue4m3_value(unsigned code)
{
    if ((code & 0x7F) == UE4M3_NAN_LIKE) return 0.0f;
    unsigned ex = (code >> 3) & 0xF, man = code & 7;
    if (ex == 0) return __fmul_rn((float)man, 0x1p-9f);
    return __uint_as_float((ex - 7u + 127u) << 23 | man << 20);
}

/* Nibble j (< n) of a split-half run of n codes at qs. */
__device__ static inline unsigned nibble(const uint8_t *qs, int j, int n)
{
    return j < n / 2 ? qs[j] & 0x0F : qs[j - n / 2] >> 4;
}

/* Magnitude code of a >= 0 against the 7 E2M1 midpoints m[] (ties down). */
__device__ static inline unsigned count_mid(float a, const float *m)
{
    unsigned c = 0;
#pragma unroll
    for (int i = 0; i < 7; i++) c += a > m[i];
    return c;
}

__device__ static inline unsigned signed_code(float x, unsigned mag) { return mag | ((x < 0.0f && mag) << 3); }

/* ---- mxfp4 ------------------------------------------------------------------ */
__global__ static void quantize_mxfp4(const float *x, kvq_block_mxfp4 *out, size_t nb)
{
    size_t b = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= nb) return;
    const float *v = x + b * KVQ_MXFP4_BLOCK;
    const float mid[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    float amax = 0.0f;
    for (int j = 0; j < KVQ_MXFP4_BLOCK; j++) amax = fmaxf(amax, fabsf(v[j]));
    unsigned e = mx_exponent(amax);
    float inv = kvq_cu_pow2(127 - (int)e); /* 1 / 2^(e−127); e = 254, 255 give subnormals */
    uint8_t c[KVQ_MXFP4_BLOCK];
    for (int j = 0; j < KVQ_MXFP4_BLOCK; j++)
        c[j] = (uint8_t)signed_code(v[j], count_mid(__fmul_rn(fabsf(v[j]), inv), mid));
    for (int j = 0; j < KVQ_MXFP4_BLOCK / 2; j++)
        out[b].qs[j] = (uint8_t)(c[j] | c[j + KVQ_MXFP4_BLOCK / 2] << 4);
    out[b].e = (uint8_t)e;
}

/* DQ_VEC consecutive values of one block per thread, one 16-byte store:
 * kv[c] · 2^(e−128) (fp_mx.c e8m0_to_fp32_half). */
__global__ static void dequantize_mxfp4(const kvq_block_mxfp4 *src, float4 *y, size_t n4)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    const kvq_block_mxfp4 *b = src + i / (KVQ_MXFP4_BLOCK / DQ_VEC);
    int j = (int)(i % (KVQ_MXFP4_BLOCK / DQ_VEC)) * DQ_VEC;
    float d = kvq_cu_pow2((int)b->e - 128), v[DQ_VEC];
#pragma unroll
    for (int u = 0; u < DQ_VEC; u++) v[u] = __fmul_rn(kvq_cu_kv_fp4[nibble(b->qs, j + u, KVQ_MXFP4_BLOCK)], d);
    y[i] = make_float4(v[0], v[1], v[2], v[3]);
}

/* ---- nvfp4 ------------------------------------------------------------------ */
/* ggml's best_index_mxfp4: first index of the smallest |kv·d − x|. */
__device__ static inline unsigned nv_best(float x, float d)
{
    unsigned best = 0;
    float be = fabsf(__fsub_rn(__fmul_rn(kvq_cu_kv_fp4[0], d), x));
    for (unsigned i = 1; i < 16; i++) {
        float e = fabsf(__fsub_rn(__fmul_rn(kvq_cu_kv_fp4[i], d), x));
        best = e < be ? i : best;
        be = e < be ? e : be;
    }
    return best;
}

/* One sub-block of 16 scaled values v: its UE4M3 code, packed nibbles. */
__device__ static inline uint8_t nv_sub_block(const float *v, uint8_t *packed)
{
    float amax = 0.0f;
    for (int j = 0; j < NV_SUB; j++) amax = fmaxf(amax, fabsf(v[j]));
    uint8_t code = ue4m3_from_f32(amax / NV_E2M1_MAX);
    float d = __fmul_rn(ue4m3_value(code), 0.5f);
    bool fast = d > 0.0f && amax <= __fmul_rn(NV_FAST_RANGE, d);
    /* midpoints (kv_i + kv_{i+1})/2 · d: exact (few significant bits) */
    const float mid[7] = {__fmul_rn(0.5f, d), __fmul_rn(1.5f, d), __fmul_rn(2.5f, d), __fmul_rn(3.5f, d),
                          __fmul_rn(5.0f, d), __fmul_rn(7.0f, d), __fmul_rn(10.0f, d)};
    unsigned c[NV_SUB];
    for (int j = 0; j < NV_SUB; j++) c[j] = fast ? signed_code(v[j], count_mid(fabsf(v[j]), mid)) : nv_best(v[j], d);
    for (int j = 0; j < NV_SUB / 2; j++) packed[j] = (uint8_t)(c[j] | c[j + NV_SUB / 2] << 4);
    return code;
}

__global__ static void quantize_nvfp4(const float *x, kvq_block_nvfp4 *out, size_t nb, float inv_g)
{
    size_t b = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= nb) return;
    const float *xb = x + b * KVQ_NVFP4_BLOCK;
    for (int s = 0; s < NV_SUBS; s++) {
        float v[NV_SUB];
        for (int j = 0; j < NV_SUB; j++) v[j] = __fmul_rn(xb[s * NV_SUB + j], inv_g);
        out[b].d[s] = nv_sub_block(v, out[b].qs + s * NV_SUB / 2);
    }
}

/* DQ_VEC consecutive values of one sub-block per thread: (kv[c] · d) · G. */
__global__ static void dequantize_nvfp4(const kvq_block_nvfp4 *src, float g, float4 *y, size_t n4)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    const kvq_block_nvfp4 *b = src + i / (KVQ_NVFP4_BLOCK / DQ_VEC);
    int k = (int)(i % (KVQ_NVFP4_BLOCK / DQ_VEC)) * DQ_VEC, s = k / NV_SUB;
    const uint8_t *qs = b->qs + s * NV_SUB / 2;
    float d = __fmul_rn(ue4m3_value(b->d[s]), 0.5f), v[DQ_VEC];
#pragma unroll
    for (int u = 0; u < DQ_VEC; u++)
        v[u] = __fmul_rn(__fmul_rn(kvq_cu_kv_fp4[nibble(qs, k % NV_SUB + u, NV_SUB)], d), g);
    y[i] = make_float4(v[0], v[1], v[2], v[3]);
}

/* ---- absmax (for NVFP4's tensor scale) ---------------------------------------- */
/* |x| of finite floats orders like its bits as unsigned integers, so one
 * atomicMax per warp on the bits is the exact maximum in any order. */
__global__ static void absmax_bits(const float *x, size_t n, unsigned *out)
{
    unsigned m = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        m = max(m, __float_as_uint(fabsf(x[i])));
    for (int off = KVQ_CU_WARP / 2; off > 0; off /= 2) m = max(m, __shfl_down_sync(KVQ_CU_FULL, m, off));
    if (threadIdx.x % KVQ_CU_WARP == 0) atomicMax(out, m);
}

/* ---- launchers ------------------------------------------------------------------ */
#define ABSMAX_MAX_GRID 4096u /* grid-stride loop beyond this many blocks */

cudaError_t kvq_cu_launch_quant_fp4(int fmt, const float *x, void *blocks, size_t nb, float inv_g, cudaStream_t s)
{
    unsigned grid = kvq_cu_grid(nb, THREADS);
    if (fmt == KVQ_CF_MXFP4) quantize_mxfp4<<<grid, THREADS, 0, s>>>(x, (kvq_block_mxfp4 *)blocks, nb);
    else quantize_nvfp4<<<grid, THREADS, 0, s>>>(x, (kvq_block_nvfp4 *)blocks, nb, inv_g);
    return cudaGetLastError();
}

cudaError_t kvq_cu_launch_dequant_fp4(int fmt, const void *blocks, float g, float *y, size_t nb, cudaStream_t s)
{
    /* y is 16-byte aligned (cudaMalloc'd, or a tile of whole rows in blas.cu) */
    size_t n4 = nb * kvq_cu_block_values(fmt) / DQ_VEC;
    unsigned grid = kvq_cu_grid(n4, THREADS);
    if (fmt == KVQ_CF_MXFP4)
        dequantize_mxfp4<<<grid, THREADS, 0, s>>>((const kvq_block_mxfp4 *)blocks, (float4 *)y, n4);
    else
        dequantize_nvfp4<<<grid, THREADS, 0, s>>>((const kvq_block_nvfp4 *)blocks, g, (float4 *)y, n4);
    return cudaGetLastError();
}

cudaError_t kvq_cu_launch_absmax(const float *x, size_t n, unsigned *amax_bits, cudaStream_t s)
{
    unsigned grid = kvq_cu_grid(n, THREADS);
    absmax_bits<<<grid < ABSMAX_MAX_GRID ? (grid ? grid : 1) : ABSMAX_MAX_GRID, THREADS, 0, s>>>(x, n, amax_bits);
    return cudaGetLastError();
}
