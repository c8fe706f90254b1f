/*
 * cuda.c — host side of the CUDA kernels (issue 9 item 3): kvq_err
 * wrappers over the extern "C" entries of the kernels/cuda/ .cu files (blocks.h).
 * Every argument is checked here first, on every build, so a bad call is
 * KVQ_ERR_ARG / KVQ_ERR_SHAPE with a detail whether or not a GPU exists
 * (tests/test_cuda.c runs those checks on CPU-only machines).  Then:
 * built with -DKVQ_HAVE_CUDA (the Makefile found nvcc) and a device
 * present → the kernel runs, a CUDA or cuBLAS failure becomes KVQ_ERR_IO
 * naming it; no device → KVQ_ERR_UNSUPPORTED "no CUDA device"; built
 * without CUDA → KVQ_ERR_UNSUPPORTED "built without CUDA".  Never a crash.
 * The public half (kvq.h "CUDA device") is at the end: the device's name
 * and the two measurements behind `kvq bench codecs|decode --device cuda`.
 */
#include "kernels/kernels.h"
#include "kvq_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define CU_DIM_MAX (1 << 30) /* rows, cols, tokens: int-sized with room for products in size_t */
#define LINEARS_PER_LAYER 7  /* wq wk wv wo w1 w2 w3                                       */

/* ---- geometry (every build) ----------------------------------------------------- */
int kvq_cuda_block_values(kvq_cuda_fmt f)
{
    switch (f) {
    case KVQ_CF_Q8_0:
    case KVQ_CF_Q4_0: return KVQ_QK;
    case KVQ_CF_MXFP4: return KVQ_MXFP4_BLOCK;
    case KVQ_CF_NVFP4: return KVQ_NVFP4_BLOCK;
    case KVQ_CF_COUNT: break;
    }
    return 0;
}

size_t kvq_cuda_payload_bytes(kvq_cuda_fmt f, size_t nb)
{
    switch (f) {
    case KVQ_CF_Q8_0: return nb * KVQ_Q8_0_BYTES;
    case KVQ_CF_Q4_0: return nb * KVQ_Q4_0_BYTES;
    case KVQ_CF_MXFP4: return nb * KVQ_MXFP4_BYTES;
    case KVQ_CF_NVFP4: return KVQ_NVFP4_HDR + nb * KVQ_NVFP4_BYTES;
    case KVQ_CF_COUNT: break;
    }
    return 0;
}

/* ---- argument checks (every build) ------------------------------------------------- */
static kvq_err check_fmt(const char *what, kvq_cuda_fmt f)
{
    KVQ_FAIL_IF(!kvq_cuda_block_values(f), KVQ_ERR_ARG, "cuda %s: format %d has no kernel (q8_0 %d, q4_0 %d, "
                "mxfp4 %d, nvfp4 %d)", what, (int)f, KVQ_CF_Q8_0, KVQ_CF_Q4_0, KVQ_CF_MXFP4, KVQ_CF_NVFP4);
    return KVQ_OK;
}

static kvq_err check_kt(const char *what, kvq_kt t)
{
    KVQ_FAIL_IF(t != KVQ_KT_Q8_0 && t != KVQ_KT_Q4_0, KVQ_ERR_ARG, "cuda %s: block type %d has no kernel", what,
                (int)t);
    return KVQ_OK;
}

/* A row length: positive, a whole number of blocks of `block` values. */
static kvq_err check_dim(const char *what, const char *name, long long v, int block)
{
    KVQ_FAIL_IF(v <= 0 || v > CU_DIM_MAX || v % block, KVQ_ERR_SHAPE,
                "cuda %s: %s %lld is not a positive multiple of %d (at most %d)", what, name, v, block, CU_DIM_MAX);
    return KVQ_OK;
}

static kvq_err check_count(const char *what, const char *name, long long v, long long min)
{
    KVQ_FAIL_IF(v < min || v > CU_DIM_MAX, KVQ_ERR_SHAPE, "cuda %s: %s %lld outside [%lld, %d]", what, name, v, min,
                CU_DIM_MAX);
    return KVQ_OK;
}

#define CHECK_PTR(what, p) KVQ_FAIL_IF(!(p), KVQ_ERR_ARG, "cuda %s: %s is NULL", what, #p)

/* ---- the device (CUDA builds) or its absence ----------------------------------------- */
#if defined(KVQ_HAVE_CUDA) && KVQ_HAVE_CUDA
#include "kernels/cuda/blocks.h"

int kvq_cuda_available(void)
{
    int n = 0;
    return kvq_cu_device_count(&n) == 0 && n > 0;
}

static kvq_err need_device(const char *what)
{
    KVQ_FAIL_IF(!kvq_cuda_available(), KVQ_ERR_UNSUPPORTED, "cuda %s: no CUDA device", what);
    return KVQ_OK;
}

static kvq_err cu_result(const char *what, int err)
{
    KVQ_FAIL_IF(err, KVQ_ERR_IO, "cuda %s: %s", what, kvq_cu_error_string(err));
    return KVQ_OK;
}

/* The device call is compiled only where the CUDA objects are linked. */
#define CU_RUN(what, call) cu_result(what, call)

#else /* built without nvcc */

int kvq_cuda_available(void) { return 0; }

static kvq_err need_device(const char *what)
{
    return KVQ_ERROR(KVQ_ERR_UNSUPPORTED, "cuda %s: built without CUDA (nvcc not found), so no CUDA device", what);
}

#define CU_RUN(what, call) need_device(what)

#endif

/* ---- entries ------------------------------------------------------------------------- */
kvq_err kvq_cuda_quantize(kvq_cuda_fmt f, const float *x, uint8_t *dst, size_t nb)
{
    KVQ_TRY(check_fmt("quantize", f));
    CHECK_PTR("quantize", x);
    CHECK_PTR("quantize", dst);
    KVQ_TRY(check_count("quantize", "block count", (long long)nb, 1));
    KVQ_TRY(need_device("quantize"));
    return CU_RUN("quantize", kvq_cu_quantize((int)f, x, dst, nb));
}

kvq_err kvq_cuda_dequantize(kvq_cuda_fmt f, const uint8_t *src, float *y, size_t nb)
{
    KVQ_TRY(check_fmt("dequantize", f));
    CHECK_PTR("dequantize", src);
    CHECK_PTR("dequantize", y);
    KVQ_TRY(check_count("dequantize", "block count", (long long)nb, 1));
    KVQ_TRY(need_device("dequantize"));
    return CU_RUN("dequantize", kvq_cu_dequantize((int)f, src, y, nb));
}

kvq_err kvq_cuda_gemv(kvq_kt t, const uint8_t *w, int rows, int cols, const float *x, float *y)
{
    KVQ_TRY(check_kt("gemv", t));
    CHECK_PTR("gemv", w);
    CHECK_PTR("gemv", x);
    CHECK_PTR("gemv", y);
    KVQ_TRY(check_count("gemv", "rows", rows, 1));
    KVQ_TRY(check_dim("gemv", "cols", cols, KVQ_QK));
    KVQ_TRY(need_device("gemv"));
    return CU_RUN("gemv", kvq_cu_gemv((int)t, w, rows, cols, x, y));
}

kvq_err kvq_cuda_gemm(kvq_cuda_fmt f, const uint8_t *w, int rows, int cols, const float *x, int nb, float *y)
{
    KVQ_TRY(check_fmt("gemm", f));
    CHECK_PTR("gemm", w);
    CHECK_PTR("gemm", x);
    CHECK_PTR("gemm", y);
    KVQ_TRY(check_count("gemm", "rows", rows, 1));
    KVQ_TRY(check_dim("gemm", "cols", cols, kvq_cuda_block_values(f)));
    KVQ_TRY(check_count("gemm", "tokens", nb, 1));
    if (f == KVQ_CF_NVFP4) {
        float g;
        memcpy(&g, w, sizeof g);
        KVQ_FAIL_IF(!(g > 0.0f) || !isfinite(g), KVQ_ERR_CORRUPT, "cuda gemm: nvfp4 tensor scale %g", (double)g);
    }
    KVQ_TRY(need_device("gemm"));
    return CU_RUN("gemm", kvq_cu_gemm((int)f, w, rows, cols, x, nb, y));
}

static kvq_err check_lowrank(const char *what, const float *A, const float *B, int H, int T, int d, int r)
{
    CHECK_PTR(what, A);
    CHECK_PTR(what, B);
    KVQ_TRY(check_count(what, "heads", H, 1));
    KVQ_TRY(check_count(what, "tokens", T, 1));
    KVQ_TRY(check_count(what, "head size", d, 1));
    KVQ_TRY(check_count(what, "rank", r, 1));
    KVQ_FAIL_IF((long long)H * d > CU_DIM_MAX, KVQ_ERR_SHAPE, "cuda %s: %d heads of %d channels", what, H, d);
    return KVQ_OK;
}

kvq_err kvq_cuda_lowrank_residual(const float *A, const float *B, int H, int T, int d, int r, float *y)
{
    KVQ_TRY(check_lowrank("lowrank residual", A, B, H, T, d, r));
    CHECK_PTR("lowrank residual", y);
    KVQ_TRY(need_device("lowrank residual"));
    return CU_RUN("lowrank residual", kvq_cu_lowrank_residual(A, B, H, T, d, r, y));
}

kvq_err kvq_cuda_lowrank_scores(const float *A, const float *B, int H, int T, int d, int r, const float *q,
                                int n_heads, float *s)
{
    KVQ_TRY(check_lowrank("lowrank scores", A, B, H, T, d, r));
    CHECK_PTR("lowrank scores", q);
    CHECK_PTR("lowrank scores", s);
    KVQ_FAIL_IF(n_heads <= 0 || n_heads % H, KVQ_ERR_ARG, "cuda lowrank scores: %d query heads is not a multiple "
                "of %d KV heads", n_heads, H);
    KVQ_TRY(need_device("lowrank scores"));
    return CU_RUN("lowrank scores", kvq_cu_lowrank_scores(A, B, H, T, d, r, q, n_heads, s));
}

kvq_err kvq_cuda_attend(const kvq_cuda_kv *kv, const float *q, int n_heads, float *out)
{
    CHECK_PTR("attend", kv);
    CHECK_PTR("attend", q);
    CHECK_PTR("attend", out);
    CHECK_PTR("attend", kv->k);
    CHECK_PTR("attend", kv->v);
    KVQ_TRY(check_kt("attend K", kv->k_type));
    KVQ_TRY(check_kt("attend V", kv->v_type));
    KVQ_TRY(check_count("attend", "context", kv->n_ctx, 1));
    KVQ_TRY(check_count("attend", "KV heads", kv->n_kv_heads, 1));
    KVQ_TRY(check_dim("attend", "head size", kv->head_size, KVQ_QK));
    KVQ_FAIL_IF(n_heads <= 0 || n_heads % kv->n_kv_heads, KVQ_ERR_ARG,
                "cuda attend: %d query heads is not a multiple of %d KV heads", n_heads, kv->n_kv_heads);
    KVQ_TRY(need_device("attend"));
    return CU_RUN("attend", kvq_cu_attend(kv, q, n_heads, out));
}

/* ---- public: kvq.h "CUDA device" ---------------------------------------------------- */
kvq_err kvq_cuda_device(char *name, size_t cap)
{
    KVQ_FAIL_IF(!name || !cap, KVQ_ERR_ARG, "cuda device: no buffer for the name");
    name[0] = '\0';
    KVQ_TRY(need_device("device"));
    return CU_RUN("device", kvq_cu_device_name(name, cap));
}

static kvq_cuda_fmt fmt_of(const char *codec)
{
    static const struct {
        const char *name;
        kvq_cuda_fmt f;
    } fmts[] = {{"q8_0", KVQ_CF_Q8_0}, {"q4_0", KVQ_CF_Q4_0}, {"mxfp4", KVQ_CF_MXFP4}, {"nvfp4", KVQ_CF_NVFP4}};
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++)
        if (!strcmp(codec, fmts[i].name)) return fmts[i].f;
    return KVQ_CF_COUNT;
}

/* The CPU codec's payload of x (encode) or floats of q (decode). */
static kvq_err cpu_codec(const char *codec, int64_t rows, int64_t cols, const float *x, uint8_t *q, size_t nq,
                         float *y)
{
    kvq_ctx *ctx;
    int64_t d[2] = {rows, cols};
    size_t n = 0;
    KVQ_TRY(kvq_ctx_create(codec, &ctx));
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x ? (void *)x : y, 2, d);
    kvq_err e = x ? kvq_ctx_encode_payload(ctx, &t, q, nq, &n) : kvq_ctx_decode_payload(ctx, q, nq, &t);
    kvq_ctx_free(ctx);
    KVQ_FAIL_IF(!e && x && n != nq, KVQ_ERR_CORRUPT, "cuda bench: %s wrote %zu bytes, the device layout has %zu",
                codec, n, nq);
    return e;
}

kvq_err kvq_cuda_bench_codec(const char *codec, const float *x, int64_t rows, int64_t cols, int reps,
                             kvq_cuda_codec_bench *r)
{
    CHECK_PTR("bench", codec);
    CHECK_PTR("bench", x);
    CHECK_PTR("bench", r);
    kvq_cuda_fmt f = fmt_of(codec);
    KVQ_FAIL_IF(f == KVQ_CF_COUNT, KVQ_ERR_ARG, "cuda bench: codec '%s' has no CUDA kernel (q8_0, q4_0, mxfp4, "
                "nvfp4)", codec);
    KVQ_TRY(check_count("bench", "rows", rows, 1));
    KVQ_TRY(check_dim("bench", "cols", cols, kvq_cuda_block_values(f)));
    KVQ_TRY(check_count("bench", "values", rows * cols, 1));
    KVQ_TRY(check_count("bench", "reps", reps, 1));
    KVQ_TRY(need_device("bench"));
    memset(r, 0, sizeof *r);
    size_t n = (size_t)(rows * cols), nb = n / (size_t)kvq_cuda_block_values(f);
    r->payload_bytes = kvq_cuda_payload_bytes(f, nb);
    uint8_t *qg = calloc(r->payload_bytes, 1), *qc = malloc(r->payload_bytes); /* qg, yg: device results */
    float *yg = calloc(n, sizeof *yg), *yc = malloc(n * sizeof *yc);
    kvq_err e = qg && qc && yg && yc ? KVQ_OK : KVQ_ERROR(KVQ_ERR_NOMEM, "cuda bench: %zu values", n);
    if (!e) e = cpu_codec(codec, rows, cols, x, qc, r->payload_bytes, NULL);
    if (!e) e = CU_RUN("bench", kvq_cu_time_codec((int)f, x, nb, reps, qg, yg, r));
    if (!e) e = cpu_codec(codec, rows, cols, NULL, qg, r->payload_bytes, yc);
    if (!e) {
        r->quantize_exact = !memcmp(qg, qc, r->payload_bytes);
        r->dequantize_exact = !memcmp(yg, yc, n * sizeof *yg);
    }
    free(qg), free(qc), free(yg), free(yc);
    return e;
}

/* The linears of a model: host f32 copies, quantized copies (NULL when
 * the rows are not whole blocks), shapes, and per run the weights and
 * block types handed to the device (f32: all KVQ_KT_NONE). */
typedef struct {
    int n;
    float **f32;
    uint8_t **q;
    const uint8_t **w;
    int *rows, *cols, *types;
} linears;

static void linears_free(linears *l)
{
    for (int i = 0; i < l->n; i++) {
        if (l->f32) free(l->f32[i]);
        if (l->q) free(l->q[i]);
    }
    free(l->f32), free(l->q), free(l->w), free(l->rows), free(l->cols), free(l->types);
}

static kvq_err linears_alloc(linears *l, int n)
{
    l->n = n;
    l->f32 = calloc((size_t)n, sizeof *l->f32), l->q = calloc((size_t)n, sizeof *l->q);
    l->w = calloc((size_t)n, sizeof *l->w);
    l->rows = calloc((size_t)n, sizeof *l->rows), l->cols = calloc((size_t)n, sizeof *l->cols);
    l->types = calloc((size_t)n, sizeof *l->types);
    KVQ_FAIL_IF(!l->f32 || !l->q || !l->w || !l->rows || !l->cols || !l->types, KVQ_ERR_NOMEM,
                "cuda bench: %d linears", n);
    return KVQ_OK;
}

/* Point the device run at f32 weights (quant 0) or at the quantized ones
 * where they exist; returns how many stay f32. */
static int linears_select(linears *l, kvq_kt t, int quant)
{
    int n_f32 = 0;
    for (int i = 0; i < l->n; i++) {
        int q = quant && l->q[i];
        l->w[i] = q ? l->q[i] : (const uint8_t *)l->f32[i];
        l->types[i] = q ? (int)t : KVQ_KT_NONE;
        n_f32 += !q;
    }
    return n_f32;
}

/* Linear i of m: LINEARS_PER_LAYER per layer in forward order, then the
 * classifier (tied to the embedding when the model has no output.weight). */
static const kvq_weight *linear_at(const kvq_model *m, int i, char *name, size_t cap)
{
    static const char *const kinds[LINEARS_PER_LAYER] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                         "ffn_gate", "ffn_down", "ffn_up"};
    int layers = kvq_model_config_get(m)->n_layers;
    if (i < layers * LINEARS_PER_LAYER) {
        snprintf(name, cap, "blk.%d.%s.weight", i / LINEARS_PER_LAYER, kinds[i % LINEARS_PER_LAYER]);
        return kvq_model_weight(m, name);
    }
    snprintf(name, cap, "output.weight");
    const kvq_weight *w = kvq_model_weight(m, name);
    return w ? w : kvq_model_weight(m, "token_embd.weight");
}

static kvq_err linear_load(const kvq_model *m, kvq_kt t, int i, linears *l)
{
    char name[64];
    const kvq_weight *w = linear_at(m, i, name, sizeof name);
    KVQ_FAIL_IF(!w, KVQ_ERR_NOT_FOUND, "cuda bench: model has no %s", name);
    int64_t rows = kvq_shape_rows(&w->shape), cols = kvq_shape_cols(&w->shape);
    KVQ_TRY(check_count("bench", name, rows, 1));
    KVQ_TRY(check_count("bench", name, cols, 1));
    l->rows[i] = (int)rows, l->cols[i] = (int)cols;
    size_t n = (size_t)(rows * cols), nb = n / KVQ_QK;
    l->f32[i] = malloc(n * sizeof(float));
    KVQ_FAIL_IF(!l->f32[i], KVQ_ERR_NOMEM, "cuda bench: %s (%zu values)", name, n);
    KVQ_TRY(kvq_weight_rows(w, 0, rows, l->f32[i]));
    if (cols % KVQ_QK) return KVQ_OK; /* stays f32, as kvq quantize keeps it */
    l->q[i] = malloc(nb * kvq_kern_block_bytes(t));
    KVQ_FAIL_IF(!l->q[i], KVQ_ERR_NOMEM, "cuda bench: %s (%zu blocks)", name, nb);
    (void)kvq_kernels_get()->quantize[t](l->f32[i], l->q[i], nb); /* status bits: weights are finite */
    return KVQ_OK;
}

kvq_err kvq_cuda_bench_matmuls(const kvq_model *m, const char *codec, int reps, kvq_cuda_matmul_bench *r)
{
    CHECK_PTR("bench", m);
    CHECK_PTR("bench", codec);
    CHECK_PTR("bench", r);
    kvq_cuda_fmt f = fmt_of(codec);
    KVQ_FAIL_IF(f != KVQ_CF_Q8_0 && f != KVQ_CF_Q4_0, KVQ_ERR_ARG,
                "cuda bench: matmuls over '%s' weights have no CUDA GEMV (q8_0, q4_0)", codec);
    KVQ_TRY(check_count("bench", "reps", reps, 1));
    KVQ_TRY(need_device("bench"));
    memset(r, 0, sizeof *r);
    kvq_kt t = (kvq_kt)f;
    linears l = {0};
    kvq_err e = linears_alloc(&l, kvq_model_config_get(m)->n_layers * LINEARS_PER_LAYER + 1);
    for (int i = 0; i < l.n && !e; i++) {
        e = linear_load(m, t, i, &l);
        double w = (double)l.rows[i] * l.cols[i];
        r->weights += w;
        r->f32_bytes += (size_t)w * sizeof(float);
        r->q_bytes += l.q[i] ? (size_t)w / KVQ_QK * kvq_kern_block_bytes(t) : (size_t)w * sizeof(float);
    }
    r->n_mats = l.n;
    if (!e) {
        linears_select(&l, t, 0);
        e = CU_RUN("bench", kvq_cu_time_gemvs(l.types, l.w, l.rows, l.cols, l.n, reps, &r->f32_s));
    }
    if (!e) {
        r->n_f32 = linears_select(&l, t, 1);
        e = CU_RUN("bench", kvq_cu_time_gemvs(l.types, l.w, l.rows, l.cols, l.n, reps, &r->q_s));
    }
    linears_free(&l);
    return e;
}
