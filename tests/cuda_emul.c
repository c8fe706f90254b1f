/*
 * cuda_emul.c — a CPU stand-in for the extern "C" device layer of
 * kernels/cuda/ (blocks.h: kvq_cu_*), for machines without a GPU (issue 9:
 * "the CUDA code is still compiled and reviewed").  Each entry redoes its
 * kernel in plain C with the kernel's own index arithmetic and roundings
 * (thread loops written out: lanes, warps, parts), and the cuBLAS calls of
 * blas.cu as column-major GEMMs taking the same op/m/n/k/ld/stride
 * arguments.  Linked in place of the .cu objects, it runs test_cuda's GPU
 * tests and the `--device cuda` CLI paths through the real kernels/cuda.c.
 * It checks the tests, the host code, and the kernels' indexing and cuBLAS
 * argument mapping — not CUDA semantics, races or speed (the "timings" are
 * CPU clock readings).  Keep it in step with the .cu files of kernels/cuda/.
 *
 * Built and run by `make test` whenever nvcc is present (Makefile:
 * EMUL_TEST, EMUL_KVQ): $(BUILD)/emul/test_cuda, then
 * tests/cli/bench_device.sh with KVQ_BIN=$(BUILD)/emul/kvq.
 */
#include "kernels/cuda/blocks.h"
#include "kernels/kernels.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WARP    32
#define THREADS 256 /* attn.cu ATT_THREADS */

static const float kv_fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float pow2(int k) { return of_bits(k >= -126 ? (uint32_t)(k + 127) << 23 : 1u << (k + 149)); }
static size_t block_values(int f) { return f == KVQ_CF_NVFP4 ? KVQ_NVFP4_BLOCK : KVQ_QK; }
static size_t header_bytes(int f) { return f == KVQ_CF_NVFP4 ? KVQ_NVFP4_HDR : 0; }

static size_t block_bytes(int f)
{
    return f == KVQ_CF_Q8_0 ? KVQ_Q8_0_BYTES : f == KVQ_CF_Q4_0 ? KVQ_Q4_0_BYTES
         : f == KVQ_CF_MXFP4 ? KVQ_MXFP4_BYTES : KVQ_NVFP4_BYTES;
}

/* ---- quant.cu ---------------------------------------------------------------- */
static float inverse_scale(float d, int *ok)
{
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    *ok = id <= FLT_MAX && id >= -FLT_MAX;
    return *ok ? id : 0.0f;
}

static void quantize_q8_0(const float *v, kvq_block_q8_0 *out)
{
    float amax = 0.0f;
    for (int j = 0; j < KVQ_QK; j++) amax = fmaxf(amax, fabsf(v[j]));
    float d = amax / 127.0f;
    int ok;
    float id = inverse_scale(d, &ok);
    for (int j = 0; j < KVQ_QK; j++) out->qs[j] = (int8_t)(int32_t)roundf(v[j] * id);
    out->d = kvq_f32_to_f16(d);
}

static void quantize_q4_0(const float *v, kvq_block_q4_0 *out)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < KVQ_QK; j++)
        if (fabsf(v[j]) > amax) amax = fabsf(v[j]), max = v[j];
    float d = max / -8.0f;
    int ok;
    float id = inverse_scale(d, &ok);
    uint8_t c[KVQ_QK];
    for (int j = 0; j < KVQ_QK; j++) {
        float t = v[j] * id;
        t = t + 8.5f;
        uint8_t q = (uint8_t)(int32_t)t;
        c[j] = ok ? (q < 15 ? q : 15) : 0;
    }
    for (int j = 0; j < KVQ_QK / 2; j++) out->qs[j] = (uint8_t)(c[j] | c[j + KVQ_QK / 2] << 4);
    out->d = kvq_f32_to_f16(d);
}

/* kvq_cu_code / kvq_cu_value over a raw block of type t */
static int code(int t, const uint8_t *b, int j)
{
    if (t == KVQ_KT_Q8_0) return ((const kvq_block_q8_0 *)(const void *)b)->qs[j];
    uint8_t byte = ((const kvq_block_q4_0 *)(const void *)b)->qs[j % (KVQ_QK / 2)];
    return (j < KVQ_QK / 2 ? byte & 0x0F : byte >> 4) - 8;
}

static float value(int t, const uint8_t *b, int j)
{
    uint16_t d;
    memcpy(&d, b, 2);
    return (float)code(t, b, j) * kvq_f16_to_f32(d);
}

/* ---- fp4.cu -------------------------------------------------------------------- */
static unsigned mx_exponent(float amax)
{
    if (!(amax > 0.0f)) return 0;
    uint32_t u = bits_of(amax);
    if ((u >> 23) != 0 && (u & 0x7FFFFFu) < 0x7FF000u) return (uint8_t)((int)(u >> 23) - 2);
    float f = floorf((float)log2((double)amax)) - 2.0f;
    return (uint8_t)(int32_t)(f + 127.0f);
}

static uint8_t ue4m3_from_f32(float x)
{
    if (!(x > 0.0f)) return 0;
    if (x > 448.0f) x = 448.0f;
    uint32_t b = bits_of(x);
    int ex = (int)((b >> 23) & 0xFF) - 127 + 7;
    unsigned man = (b >> 20) & 7;
    if (ex <= 0) {
        float t = x * 512.0f;
        int sub = (int)(t + 0.5f);
        return (uint8_t)(sub < 1 ? 0 : sub > 7 ? 7 : sub);
    }
    if (ex >= 15) return 0x7E;
    man += (b >> 19) & 1;
    if (man > 7) {
        man = 0;
        if (++ex >= 15) return 0x7E;
    }
    return (uint8_t)((unsigned)ex << 3 | man);
}

static float ue4m3_value(unsigned c)
{
    if ((c & 0x7F) == 0x7F) return 0.0f;
    unsigned ex = (c >> 3) & 0xF, man = c & 7;
    return ex == 0 ? (float)man * 0x1p-9f : of_bits((ex - 7u + 127u) << 23 | man << 20);
}

static unsigned nibble(const uint8_t *qs, int j, int n) { return j < n / 2 ? qs[j] & 0x0F : qs[j - n / 2] >> 4; }

static unsigned count_mid(float a, const float *m)
{
    unsigned c = 0;
    for (int i = 0; i < 7; i++) c += a > m[i];
    return c;
}

static unsigned signed_code(float x, unsigned mag) { return mag | (unsigned)(x < 0.0f && mag) << 3; }

static void quantize_mxfp4(const float *v, kvq_block_mxfp4 *out)
{
    const float mid[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    float amax = 0.0f;
    for (int j = 0; j < KVQ_MXFP4_BLOCK; j++) amax = fmaxf(amax, fabsf(v[j]));
    unsigned e = mx_exponent(amax), c[KVQ_MXFP4_BLOCK];
    float inv = pow2(127 - (int)e);
    for (int j = 0; j < KVQ_MXFP4_BLOCK; j++) {
        float a = fabsf(v[j]) * inv;
        c[j] = signed_code(v[j], count_mid(a, mid));
    }
    for (int j = 0; j < KVQ_MXFP4_BLOCK / 2; j++) out->qs[j] = (uint8_t)(c[j] | c[j + KVQ_MXFP4_BLOCK / 2] << 4);
    out->e = (uint8_t)e;
}

static unsigned nv_best(float x, float d)
{
    unsigned best = 0;
    float p = kv_fp4[0] * d, be = fabsf(p - x);
    for (unsigned i = 1; i < 16; i++) {
        p = kv_fp4[i] * d;
        float e = fabsf(p - x);
        best = e < be ? i : best;
        be = e < be ? e : be;
    }
    return best;
}

static uint8_t nv_sub_block(const float *v, uint8_t *packed)
{
    float amax = 0.0f;
    for (int j = 0; j < 16; j++) amax = fmaxf(amax, fabsf(v[j]));
    uint8_t code6 = ue4m3_from_f32(amax / 6.0f);
    float d = ue4m3_value(code6) * 0.5f, lim = 1048576.0f * d;
    int fast = d > 0.0f && amax <= lim;
    const float mid[7] = {0.5f * d, 1.5f * d, 2.5f * d, 3.5f * d, 5.0f * d, 7.0f * d, 10.0f * d};
    unsigned c[16];
    for (int j = 0; j < 16; j++) c[j] = fast ? signed_code(v[j], count_mid(fabsf(v[j]), mid)) : nv_best(v[j], d);
    for (int j = 0; j < 8; j++) packed[j] = (uint8_t)(c[j] | c[j + 8] << 4);
    return code6;
}

static void quantize_nvfp4(const float *xb, kvq_block_nvfp4 *out, float inv_g)
{
    for (int s = 0; s < 4; s++) {
        float v[16];
        for (int j = 0; j < 16; j++) v[j] = xb[s * 16 + j] * inv_g;
        out->d[s] = nv_sub_block(v, out->qs + s * 8);
    }
}

/* host.cu nv_tensor_scale */
static float nv_tensor_scale(float amax)
{
    float g = amax > 0.0f ? amax / (448.0f * 6.0f) : 1.0f;
    if (!(g >= FLT_MIN)) g = 1.0f;
    while (!isfinite(g * 448.0f * 6.0f)) g = nextafterf(g, 0.0f);
    return g;
}

/* Value i of nb blocks at `blocks` (the dequantize kernels, 4 per thread:
 * value 4i + u has the same block and sub-block as 4i). */
static float dequant_value(int f, const uint8_t *blocks, float g, size_t i)
{
    if (f == KVQ_CF_Q8_0 || f == KVQ_CF_Q4_0) return value(f, blocks + i / KVQ_QK * block_bytes(f), (int)(i % KVQ_QK));
    if (f == KVQ_CF_MXFP4) {
        const kvq_block_mxfp4 *b = (const void *)(blocks + i / KVQ_MXFP4_BLOCK * KVQ_MXFP4_BYTES);
        return kv_fp4[nibble(b->qs, (int)(i % KVQ_MXFP4_BLOCK), KVQ_MXFP4_BLOCK)] * pow2((int)b->e - 128);
    }
    const kvq_block_nvfp4 *b = (const void *)(blocks + i / KVQ_NVFP4_BLOCK * KVQ_NVFP4_BYTES);
    int k = (int)(i % KVQ_NVFP4_BLOCK), s = k / 16;
    float d = ue4m3_value(b->d[s]) * 0.5f, t = kv_fp4[nibble(b->qs + s * 8, k % 16, 16)] * d;
    return t * g;
}

/* ---- host.cu entries ------------------------------------------------------------- */
int kvq_cu_device_count(int *n)
{
    *n = 1;
    return 0;
}

int kvq_cu_device_name(char *name, size_t cap)
{
    snprintf(name, cap, "CPU emulation (scripts/cuda_emul.c)");
    return 0;
}

const char *kvq_cu_error_string(int err)
{
    (void)err;
    return "emulated error";
}

int kvq_cu_quantize(int f, const float *x, uint8_t *dst, size_t nb)
{
    size_t hdr = header_bytes(f), vals = block_values(f);
    float g = 1.0f;
    if (hdr) {
        uint32_t m = 0; /* absmax_bits */
        for (size_t i = 0; i < nb * vals; i++) m = bits_of(fabsf(x[i])) > m ? bits_of(fabsf(x[i])) : m;
        g = nv_tensor_scale(of_bits(m));
        memcpy(dst, &g, 4);
    }
    for (size_t b = 0; b < nb; b++) {
        const float *v = x + b * vals;
        void *o = dst + hdr + b * block_bytes(f);
        if (f == KVQ_CF_Q8_0) quantize_q8_0(v, o);
        else if (f == KVQ_CF_Q4_0) quantize_q4_0(v, o);
        else if (f == KVQ_CF_MXFP4) quantize_mxfp4(v, o);
        else quantize_nvfp4(v, o, 1.0f / g);
    }
    return 0;
}

int kvq_cu_dequantize(int f, const uint8_t *src, float *y, size_t nb)
{
    float g = 1.0f;
    if (header_bytes(f)) memcpy(&g, src, 4);
    for (size_t i = 0; i < nb * block_values(f); i++) y[i] = dequant_value(f, src + header_bytes(f), g, i);
    return 0;
}

/* quant.cu gemv: lane per block, lanes summed by the shuffle tree. */
int kvq_cu_gemv(int t, const uint8_t *w, int rows, int cols, const float *x, float *y)
{
    int bpr = cols / KVQ_QK;
    for (int row = 0; row < rows; row++) {
        float acc[WARP] = {0};
        for (int lane = 0; lane < WARP; lane++)
            for (int b = lane; b < bpr; b += WARP) {
                const uint8_t *blk = w + ((size_t)row * bpr + b) * block_bytes(t);
                float s = 0.0f;
                uint16_t d;
                memcpy(&d, blk, 2);
                for (int j = 0; j < KVQ_QK; j++) s = fmaf((float)code(t, blk, j), x[b * KVQ_QK + j], s);
                acc[lane] = fmaf(s, kvq_f16_to_f32(d), acc[lane]);
            }
        for (int off = WARP / 2; off > 0; off /= 2)
            for (int l = 0; l < off; l++) acc[l] += acc[l + off];
        y[row] = acc[0];
    }
    return 0;
}

/* ---- blas.cu: cuBLAS's column-major GEMM, C = op(A)·op(B) + beta·C ------------- */
static void gemm(int ta, int tb, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int p = 0; p < k; p++)
                s += (double)(ta ? A[p + (size_t)i * lda] : A[i + (size_t)p * lda]) *
                     (tb ? B[j + (size_t)p * ldb] : B[p + (size_t)j * ldb]);
            float *c = &C[i + (size_t)j * ldc];
            *c = (float)(s + (beta != 0.0f ? (double)beta * *c : 0.0));
        }
}

static void gemm_batched(int ta, int tb, int m, int n, int k, const float *A, int lda, long long sa, const float *B,
                         int ldb, long long sb, float beta, float *C, int ldc, long long sc, int batch)
{
    for (int i = 0; i < batch; i++) gemm(ta, tb, m, n, k, A + i * sa, lda, B + i * sb, ldb, beta, C + i * sc, ldc);
}

#define EMUL_TILE_ROWS 100 /* small tiles: exercises the tile loop */

int kvq_cu_gemm(int f, const uint8_t *w, int rows, int cols, const float *x, int nb, float *y)
{
    size_t hdr = header_bytes(f), bpr = (size_t)cols / block_values(f), tile = EMUL_TILE_ROWS;
    float g = 1.0f, *dt = malloc(tile * (size_t)cols * sizeof *dt);
    if (!dt) return 2; /* cudaErrorMemoryAllocation */
    if (hdr) memcpy(&g, w, 4);
    for (size_t r0 = 0; r0 < (size_t)rows; r0 += tile) {
        size_t tr = (size_t)rows - r0 < tile ? (size_t)rows - r0 : tile;
        const uint8_t *blocks = w + hdr + r0 * bpr * block_bytes(f);
        for (size_t i = 0; i < tr * (size_t)cols; i++) dt[i] = dequant_value(f, blocks, g, i);
        gemm(1, 0, (int)tr, nb, cols, dt, cols, x, cols, 0.0f, y + r0, rows);
    }
    free(dt);
    return 0;
}

int kvq_cu_lowrank_residual(const float *A, const float *B, int H, int T, int d, int r, float *y)
{
    gemm_batched(0, 1, d, T, r, B, d, (long long)r * d, A, T, (long long)r * T, 1.0f, y, H * d, d, H);
    return 0;
}

int kvq_cu_lowrank_scores(const float *A, const float *B, int H, int T, int d, int r, const float *q, int n_heads,
                          float *s)
{
    int group = n_heads / H;
    float *W = calloc((size_t)n_heads * (size_t)r, sizeof *W);
    if (!W) return 2;
    gemm_batched(1, 0, r, group, d, B, d, (long long)r * d, q, d, (long long)group * d, 0.0f, W, r,
                 (long long)group * r, H);
    gemm_batched(0, 0, T, group, r, A, T, (long long)r * T, W, r, (long long)group * r, 1.0f, s, T,
                 (long long)group * T, H);
    free(W);
    return 0;
}

/* ---- attn.cu: one query head at a time, threads written out ----------------------- */
static void attend_head(const kvq_cuda_kv *kv, const float *q, int h, int group, float *a, float *out)
{
    const int hs = kv->head_size, bph = hs / KVQ_QK, kvh = h / group, n_ctx = kv->n_ctx;
    const size_t stride = (size_t)kv->n_kv_heads * bph, bk = block_bytes(kv->k_type), bv = block_bytes(kv->v_type);
    const float *qh = q + (size_t)h * hs, denom = sqrtf((float)hs);
    for (int t = 0; t < n_ctx; t++) { /* warp per token, lane per channel of each block, xor tree */
        const uint8_t *row = kv->k + ((size_t)t * stride + (size_t)kvh * bph) * bk;
        float lane[WARP], next[WARP];
        for (int l = 0; l < WARP; l++) {
            lane[l] = 0.0f;
            for (int b = 0; b < bph; b++)
                lane[l] = fmaf(qh[b * KVQ_QK + l], value(kv->k_type, row + b * bk, l), lane[l]);
        }
        for (int off = WARP / 2; off > 0; off /= 2) {
            for (int l = 0; l < WARP; l++) next[l] = lane[l] + lane[l ^ off];
            memcpy(lane, next, sizeof lane);
        }
        a[t] = lane[0] / denom;
    }
    float m = -INFINITY, sum = 0.0f, part_sum[THREADS];
    for (int t = 0; t < n_ctx; t++) m = fmaxf(m, a[t]);
    for (int t = 0; t < n_ctx; t++) sum += (a[t] = expf(a[t] - m));
    const int parts = hs < THREADS ? THREADS / hs : 1;
    float *o = out + (size_t)h * hs;
    for (int tid = 0; tid < THREADS; tid++) {
        int part = tid / hs;
        for (int c = tid % hs; part < parts && c < hs; c += THREADS) {
            float acc = 0.0f;
            for (int t = part; t < n_ctx; t += parts) {
                const uint8_t *row = kv->v + ((size_t)t * stride + (size_t)kvh * bph) * bv;
                acc = fmaf(a[t] / sum, value(kv->v_type, row + (size_t)(c / KVQ_QK) * bv, c % KVQ_QK), acc);
            }
            if (parts == 1) o[c] = acc;
            else part_sum[part * hs + c] = acc;
        }
    }
    for (int c = 0; parts > 1 && c < hs; c++) {
        float acc = part_sum[c];
        for (int p = 1; p < parts; p++) acc += part_sum[p * hs + c];
        o[c] = acc;
    }
}

int kvq_cu_attend(const kvq_cuda_kv *kv, const float *q, int n_heads, float *out)
{
    float *a = malloc((size_t)kv->n_ctx * sizeof *a);
    if (!a) return 2;
    for (int h = 0; h < n_heads; h++) attend_head(kv, q, h, n_heads / kv->n_kv_heads, a, out);
    free(a);
    return 0;
}

/* ---- timing.cu (CPU clock instead of CUDA events) ---------------------------------- */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void lower(double *best, double t0) { *best = fmin(*best, now_s() - t0); }

int kvq_cu_time_codec(int fmt, const float *x, size_t nb, int reps, uint8_t *q, float *y, kvq_cuda_codec_bench *t)
{
    size_t n = nb * block_values(fmt);
    float *copy = malloc(n * sizeof *copy);
    if (!copy) return 2;
    t->quantize_s = t->dequantize_s = t->copy_s = DBL_MAX;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        kvq_cu_quantize(fmt, x, q, nb);
        lower(&t->quantize_s, t0);
        t0 = now_s();
        kvq_cu_dequantize(fmt, q, y, nb);
        lower(&t->dequantize_s, t0);
        t0 = now_s();
        memcpy(copy, y, n * sizeof *copy);
        lower(&t->copy_s, t0);
    }
    free(copy);
    return 0;
}

int kvq_cu_time_gemvs(const int *types, const uint8_t *const *w, const int *rows, const int *cols, int n_mats,
                      int reps, double *sec)
{
    int max_r = 1, max_c = 1;
    for (int i = 0; i < n_mats; i++) {
        max_r = rows[i] > max_r ? rows[i] : max_r;
        max_c = cols[i] > max_c ? cols[i] : max_c;
    }
    float *x = calloc((size_t)max_c, sizeof *x), *y = malloc((size_t)max_r * sizeof *y);
    if (!x || !y) return free(x), free(y), 2;
    *sec = DBL_MAX;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (int i = 0; i < n_mats; i++) {
            if (types[i] != KVQ_KT_NONE) {
                kvq_cu_gemv(types[i], w[i], rows[i], cols[i], x, y);
                continue;
            }
            const float *W = (const float *)(const void *)w[i]; /* cublasSgemv, op T over col-major cols×rows */
            gemm(1, 0, rows[i], 1, cols[i], W, cols[i], x, cols[i], 0.0f, y, rows[i]);
        }
        lower(sec, t0);
    }
    free(x), free(y);
    return 0;
}
