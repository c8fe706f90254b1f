/*
 * timing.cu — device-resident timings behind `kvq bench codecs --device
 * cuda` and `kvq bench decode --device cuda` (issue 9 items 3 and 5).
 * Inputs are uploaded once; CUDA events bracket the device work alone, so
 * the figures are device throughput, not PCIe.  Each figure is the best of
 * reps passes after one untimed warm-up pass.
 *   kvq_cu_time_codec: quantize (NVFP4: with its device absmax and the
 *     4-byte read-back of it), dequantize, and a device-to-device
 *     cudaMemcpy of the same f32 tensor — the copy bandwidth the issue's
 *     "dequantize ≥ 70 % of copy" criterion compares against.
 *   kvq_cu_time_gemvs: one token's worth of GEMVs (every matrix once, each
 *     over a device input vector of its width); f32 weights (type
 *     KVQ_KT_NONE) go through cublasSgemv: the baseline, and the fallback
 *     for matrices whose rows are not whole blocks.
 */
#include <cublas_v2.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cu_internal.cuh"

/* ---- events ---------------------------------------------------------------- */
typedef struct {
    cudaEvent_t a, b;
} ev_pair;

static cudaError_t ev_create(ev_pair *e)
{
    cudaError_t r = cudaEventCreate(&e->a);
    return r != cudaSuccess ? r : cudaEventCreate(&e->b);
}

static void ev_destroy(ev_pair *e)
{
    if (e->a) cudaEventDestroy(e->a);
    if (e->b) cudaEventDestroy(e->b);
}

/* Lowers *best to the seconds from e->a to e->b once both completed;
 * the warm-up pass (warm = 0) only checks for errors. */
static cudaError_t ev_seconds(ev_pair *e, int warm, double *best)
{
    float ms = 0.0f;
    cudaError_t r = cudaEventSynchronize(e->b);
    if (r == cudaSuccess) r = cudaEventElapsedTime(&ms, e->a, e->b);
    if (r == cudaSuccess && warm && (double)ms * 1e-3 < *best) *best = (double)ms * 1e-3;
    return r;
}

/* ---- codecs --------------------------------------------------------------------- */
enum { TC_X, TC_Q, TC_Y, TC_COPY, TC_AMAX };

static cudaError_t codec_passes(int fmt, void *const *p, size_t nb, int reps, kvq_cuda_codec_bench *t, float *g)
{
    const size_t n = nb * kvq_cu_block_values(fmt);
    ev_pair ev = {};
    cudaError_t e = ev_create(&ev);
    for (int rep = -1; rep < reps && e == cudaSuccess; rep++) {
        int warm = rep >= 0;
        cudaEventRecord(ev.a);
        e = kvq_cu_quantize_dev(fmt, (const float *)p[TC_X], p[TC_Q], nb, (unsigned *)p[TC_AMAX], g);
        cudaEventRecord(ev.b);
        if (e == cudaSuccess) e = ev_seconds(&ev, warm, &t->quantize_s);
        cudaEventRecord(ev.a);
        if (e == cudaSuccess) e = kvq_cu_launch_dequant(fmt, p[TC_Q], *g, (float *)p[TC_Y], nb, 0);
        cudaEventRecord(ev.b);
        if (e == cudaSuccess) e = ev_seconds(&ev, warm, &t->dequantize_s);
        cudaEventRecord(ev.a);
        if (e == cudaSuccess) e = cudaMemcpyAsync(p[TC_COPY], p[TC_Y], n * sizeof(float), cudaMemcpyDeviceToDevice);
        cudaEventRecord(ev.b);
        if (e == cudaSuccess) e = ev_seconds(&ev, warm, &t->copy_s);
    }
    ev_destroy(&ev);
    return e;
}

#define CU_TRY(expr)                                                                                               \
    do {                                                                                                           \
        cudaError_t e_ = (expr);                                                                                   \
        if (e_ != cudaSuccess) {                                                                                   \
            kvq_cu_bufs_free(&bufs);                                                                               \
            return (int)e_;                                                                                        \
        }                                                                                                          \
    } while (0)

extern "C" int kvq_cu_time_codec(int fmt, const float *x, size_t nb, int reps, uint8_t *q, float *y,
                                 kvq_cuda_codec_bench *t)
{
    kvq_cu_bufs bufs = {};
    const size_t n = nb * kvq_cu_block_values(fmt), nq = nb * kvq_cu_block_bytes(fmt);
    const size_t hdr = kvq_cu_header_bytes(fmt);
    float g = 1.0f;
    t->quantize_s = t->dequantize_s = t->copy_s = DBL_MAX;
    CU_TRY(cudaMalloc(&bufs.p[TC_X], n * sizeof(float)));
    CU_TRY(cudaMalloc(&bufs.p[TC_Q], nq));
    CU_TRY(cudaMalloc(&bufs.p[TC_Y], n * sizeof(float)));
    CU_TRY(cudaMalloc(&bufs.p[TC_COPY], n * sizeof(float)));
    CU_TRY(cudaMalloc(&bufs.p[TC_AMAX], sizeof(unsigned)));
    CU_TRY(cudaMemcpy(bufs.p[TC_X], x, n * sizeof(float), cudaMemcpyHostToDevice));
    CU_TRY(codec_passes(fmt, bufs.p, nb, reps, t, &g));
    CU_TRY(cudaMemcpy(q + hdr, bufs.p[TC_Q], nq, cudaMemcpyDeviceToHost));
    CU_TRY(cudaMemcpy(y, bufs.p[TC_Y], n * sizeof(float), cudaMemcpyDeviceToHost));
    if (hdr) memcpy(q, &g, sizeof g);
    kvq_cu_bufs_free(&bufs);
    return 0;
}

/* ---- GEMVs ------------------------------------------------------------------------ */
/* Device copies of n matrices plus the x and y vectors (x: largest width,
 * zeros; y: largest height). */
typedef struct {
    void **w;
    int n;
    float *x, *y;
    cublasHandle_t blas;
} gemv_set;

static void set_free(gemv_set *s)
{
    for (int i = 0; s->w && i < s->n; i++)
        if (s->w[i]) cudaFree(s->w[i]);
    free(s->w);
    if (s->x) cudaFree(s->x);
    if (s->y) cudaFree(s->y);
    if (s->blas) cublasDestroy(s->blas);
}

static int set_upload(gemv_set *s, const int *types, const uint8_t *const *w, const int *rows, const int *cols)
{
    int max_r = 1, max_c = 1, any_f32 = 0;
    cudaError_t e = cudaSuccess;
    for (int i = 0; i < s->n && e == cudaSuccess; i++) {
        size_t bytes = types[i] == KVQ_KT_NONE
                           ? (size_t)rows[i] * (size_t)cols[i] * sizeof(float)
                           : (size_t)rows[i] * (size_t)(cols[i] / KVQ_QK) * kvq_cu_block_bytes(types[i]);
        any_f32 |= types[i] == KVQ_KT_NONE;
        max_r = rows[i] > max_r ? rows[i] : max_r;
        max_c = cols[i] > max_c ? cols[i] : max_c;
        e = cudaMalloc(&s->w[i], bytes);
        if (e == cudaSuccess) e = cudaMemcpy(s->w[i], w[i], bytes, cudaMemcpyHostToDevice);
    }
    if (e == cudaSuccess) e = cudaMalloc((void **)&s->x, (size_t)max_c * sizeof(float));
    if (e == cudaSuccess) e = cudaMemset(s->x, 0, (size_t)max_c * sizeof(float));
    if (e == cudaSuccess) e = cudaMalloc((void **)&s->y, (size_t)max_r * sizeof(float));
    if (e != cudaSuccess) return (int)e;
    cublasStatus_t b = any_f32 ? cublasCreate(&s->blas) : CUBLAS_STATUS_SUCCESS;
    return b == CUBLAS_STATUS_SUCCESS ? 0 : KVQ_CU_BLAS_FAILED + (int)b;
}

/* One token: every matrix once. */
static int set_token(const gemv_set *s, const int *types, const int *rows, const int *cols)
{
    const float one = 1.0f, zero = 0.0f;
    for (int i = 0; i < s->n; i++) {
        if (types[i] != KVQ_KT_NONE) {
            cudaError_t e = kvq_cu_launch_gemv(types[i], s->w[i], rows[i], cols[i], s->x, s->y, 0);
            if (e != cudaSuccess) return (int)e;
            continue;
        }
        /* W row-major rows×cols = col-major cols×rows (ld cols); op_T: y = W·x */
        cublasStatus_t b = cublasSgemv(s->blas, CUBLAS_OP_T, cols[i], rows[i], &one, (const float *)s->w[i],
                                       cols[i], s->x, 1, &zero, s->y, 1);
        if (b != CUBLAS_STATUS_SUCCESS) return KVQ_CU_BLAS_FAILED + (int)b;
    }
    return 0;
}

extern "C" int kvq_cu_time_gemvs(const int *types, const uint8_t *const *w, const int *rows, const int *cols,
                                 int n_mats, int reps, double *sec)
{
    gemv_set s = {};
    s.n = n_mats;
    s.w = (void **)calloc((size_t)n_mats, sizeof *s.w);
    int err = s.w ? set_upload(&s, types, w, rows, cols) : (int)cudaErrorMemoryAllocation;
    ev_pair ev = {};
    if (!err) err = (int)ev_create(&ev);
    *sec = DBL_MAX;
    for (int rep = -1; rep < reps && !err; rep++) {
        cudaEventRecord(ev.a);
        err = set_token(&s, types, rows, cols);
        cudaEventRecord(ev.b);
        if (!err) err = (int)ev_seconds(&ev, rep >= 0, sec);
    }
    ev_destroy(&ev);
    set_free(&s);
    return err;
}
