/*
 * decoder.c — the reference decoder: a Llama forward pass (RMSNorm, RoPE,
 * grouped-query attention, SwiGLU, tied or untied classifier) in f32,
 * arithmetic as karpathy/llama2.c run.c does it (formats-and-engines.md
 * §3.1; DESIGN.md "The reference decoder").
 *
 * Weights stay where the model keeps them: plain f32 rows are read in
 * place from the mmap; q8_0/q4_0 weights are multiplied block by block
 * through the kernel dot slot (kernels/kernels.h: dequantization fused
 * into the product, AVX2 when the CPU has it); f16/bf16 and other
 * codec-encoded weights are dequantized KVQ_DEC_GRAIN rows at a time into
 * a per-thread scratch inside the matmul, so a quantized model costs its
 * compressed size.  A codec without
 * row access (decode_rows), misaligned f32 data, or opts.dequant_at_load
 * give an owned f32 copy instead.  K/V go through a kvq_cache (append +
 * attend).  Matmuls run over output rows on the pool; products that share
 * an input (wq/wk/wv, w1/w3) are one job so each token pays fewer
 * hand-offs.
 *
 * Exactness against run.c: RMSNorm, RoPE (frequency
 * 1/powf(theta, 2j/hs), angle pos·freq, cosf/sinf), softmax, SiLU and the
 * residual adds use run.c's operations in run.c's order.  Only the dot
 * products are summed in 8 interleaved partial sums (so the compiler can
 * use SIMD without -ffast-math); logits differ from run.c's by f32
 * rounding, and greedy outputs match the llama2.c references.
 *
 * Activation hooks (issue 3 item 4): every linear input can be captured
 * and/or passed through a codec (encode + decode) before the product.
 */
#include "decoder_internal.h"
#include "kernels/kernels.h"
#include "quant/codecs.h"

#include <math.h>
#include <stdlib.h>

#define DOT_LANES 8   /* interleaved partial sums in dot(): one AVX or two SSE vectors */
#define MAX_JOB_MATS 3 /* wq, wk, wv share one matmul job */
/* q8_0/q4_0 rows are dotted in place for up to this many input rows when
 * the kernel table's dot is fast (kernels.h fast_dot: AVX2); a longer
 * chunk (prompt processing) dequantizes each row block once with the
 * dequantize slot and reuses it for every token, which is faster than
 * unpacking the codes once per token. */
#define FUSED_MAX_TOKENS 2

/* ---- weights ---------------------------------------------------------------- */
kvq_err kvq_dec_mat_own(dec_mat *m)
{
    if (m->owned) return KVQ_OK;
    size_t n = (size_t)m->rows * (size_t)m->cols;
    float *p = malloc(n * sizeof *p);
    KVQ_FAIL_IF(!p, KVQ_ERR_NOMEM, "%s: out of memory for an f32 copy (%zu values)", m->w->name, n);
    kvq_err e = m->f32 ? (memcpy(p, m->f32, n * sizeof *p), KVQ_OK)
                       : kvq_weight_rows(m->w, 0, m->rows, p);
    if (e) {
        free(p);
        return e;
    }
    m->owned = p;
    m->f32 = p;
    return KVQ_OK;
}

static int host_little_endian(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Codes with a row kernel (kernels/rowkern.h: q8_0, q4_0 and the other
 * fixed-grid codecs that bind one), and plain f16 weights: the matmul
 * multiplies straight from the stored codes for single tokens.  Binding
 * checks the payload once (its size, every scale), so the products need
 * no checks.  Parameters without a row kernel fall back to row
 * dequantization. */
static kvq_err bind_fused(dec_mat *m)
{
    const kvq_weight *w = m->w;
    m->fused = 0;
    int plain_f16 = !w->codec && w->dtype == KVQ_DTYPE_F16 && host_little_endian();
    if (!plain_f16 && (!w->codec || !kvq_rowkern_has(kvq_ctx_codec(w->codec)))) return KVQ_OK;
    kvq_err e = plain_f16 ? kvq_rowkern_bind_f16(w->data, w->size, &w->shape, &m->rk)
                          : kvq_rowkern_bind(w->codec, w->data, w->size, &w->shape, &m->rk);
    if (e == KVQ_ERR_UNSUPPORTED) return KVQ_OK;
    if (e) {
        kvq_error_prefix(w->name);
        kvq_error_prefix("decoder");
        return e;
    }
    m->fused = 1;
    return KVQ_OK;
}

static kvq_err bind_mat(kvq_decoder *d, dec_mat *m, const char *name, int rows, int cols)
{
    const kvq_weight *w = kvq_model_weight(d->model, name);
    KVQ_FAIL_IF(!w, KVQ_ERR_NOT_FOUND, "decoder: model has no %s", name);
    KVQ_FAIL_IF(kvq_shape_rows(&w->shape) != rows || kvq_shape_cols(&w->shape) != cols, KVQ_ERR_SHAPE,
                "decoder: %s is %lld x %lld, expected %d x %d", name,
                (long long)kvq_shape_rows(&w->shape), (long long)kvq_shape_cols(&w->shape), rows, cols);
    m->w = w;
    m->rows = rows;
    m->cols = cols;
    int plain_f32 = !w->codec && w->dtype == KVQ_DTYPE_F32 && ((uintptr_t)w->data % sizeof(float)) == 0 &&
                    host_little_endian();
    if (plain_f32) m->f32 = (const float *)w->data;
    /* Row-wise dequantization needs the codec's decode_rows (without it
     * every block would decode the whole tensor), and worker threads call
     * it concurrently, which a stateful codec may not allow. */
    const kvq_codec *cd = w->codec ? kvq_ctx_codec(w->codec) : NULL;
    int rowwise = !cd || (cd->decode_rows && !(cd->flags & KVQ_FLAG_STATEFUL));
    if (d->opts.dequant_at_load || (!plain_f32 && !rowwise)) KVQ_TRY(kvq_dec_mat_own(m));
    if (!m->f32) KVQ_TRY(bind_fused(m));
    if (cols > d->scratch_cols) d->scratch_cols = cols;
    return KVQ_OK;
}

static kvq_err bind_vec(kvq_decoder *d, float **out, const char *name, int n)
{
    const kvq_weight *w = kvq_model_weight(d->model, name);
    KVQ_FAIL_IF(!w, KVQ_ERR_NOT_FOUND, "decoder: model has no %s", name);
    KVQ_FAIL_IF(kvq_shape_numel(&w->shape) != n, KVQ_ERR_SHAPE, "decoder: %s has %lld values, expected %d",
                name, (long long)kvq_shape_numel(&w->shape), n);
    *out = malloc((size_t)n * sizeof **out);
    KVQ_FAIL_IF(!*out, KVQ_ERR_NOMEM, "decoder: out of memory");
    int64_t rows = kvq_shape_rows(&w->shape);
    return kvq_weight_rows(w, 0, rows, *out);
}

static kvq_err bind_layer(kvq_decoder *d, int l)
{
    const kvq_model_config *c = &d->cfg;
    dec_layer *L = &d->layer[l];
    int q_dim = c->n_heads * c->head_size;
    char name[64];
#define LNAME(s) (snprintf(name, sizeof name, "blk.%d.%s.weight", l, s), name)
    KVQ_TRY(bind_vec(d, &L->attn_norm, LNAME("attn_norm"), c->dim));
    KVQ_TRY(bind_vec(d, &L->ffn_norm, LNAME("ffn_norm"), c->dim));
    KVQ_TRY(bind_mat(d, &L->wq, LNAME("attn_q"), q_dim, c->dim));
    KVQ_TRY(bind_mat(d, &L->wk, LNAME("attn_k"), d->kv_dim, c->dim));
    KVQ_TRY(bind_mat(d, &L->wv, LNAME("attn_v"), d->kv_dim, c->dim));
    KVQ_TRY(bind_mat(d, &L->wo, LNAME("attn_output"), c->dim, q_dim));
    KVQ_TRY(bind_mat(d, &L->w1, LNAME("ffn_gate"), c->hidden_dim, c->dim));
    KVQ_TRY(bind_mat(d, &L->w3, LNAME("ffn_up"), c->hidden_dim, c->dim));
    KVQ_TRY(bind_mat(d, &L->w2, LNAME("ffn_down"), c->dim, c->hidden_dim));
#undef LNAME
    int half = c->head_size / 2;
    L->rope_pair = malloc((size_t)c->n_kv_heads * (size_t)half * sizeof *L->rope_pair);
    KVQ_FAIL_IF(!L->rope_pair, KVQ_ERR_NOMEM, "decoder: out of memory");
    return kvq_model_rope_pairs(d->model, l, L->rope_pair); /* identity unless K-sorted (ksort.c) */
}

static kvq_err check_config(const kvq_model_config *c)
{
    KVQ_FAIL_IF(c->arch != KVQ_ARCH_LLAMA, KVQ_ERR_UNSUPPORTED, "decoder: architecture %s is not Llama",
                kvq_arch_name(c->arch));
    KVQ_FAIL_IF(c->dim < 1 || c->hidden_dim < 1 || c->n_layers < 1 || c->n_heads < 1 ||
                    c->n_kv_heads < 1 || c->vocab_size < 1 || c->seq_len < 1,
                KVQ_ERR_SHAPE, "decoder: bad config (dim %d, hidden %d, layers %d, heads %d/%d, vocab %d, seq %d)",
                c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len);
    KVQ_FAIL_IF(c->head_size < 2 || c->head_size % 2 || c->n_heads % c->n_kv_heads, KVQ_ERR_SHAPE,
                "decoder: head size %d, %d heads over %d KV heads", c->head_size, c->n_heads, c->n_kv_heads);
    return KVQ_OK;
}

/* ---- lifetime ----------------------------------------------------------------- */
void kvq_decoder_opts_init(kvq_decoder_opts *o) { memset(o, 0, sizeof *o); }

static float *alloc_rows(int n)
{
    return calloc((size_t)KVQ_DEC_BATCH * (size_t)n, sizeof(float));
}

static kvq_err alloc_state(kvq_decoder *d)
{
    const kvq_model_config *c = &d->cfg;
    int q_dim = c->n_heads * c->head_size;
    int threads = kvq_pool_threads(d->pool);
    d->wide = q_dim > c->dim ? q_dim : c->dim;
    d->x = alloc_rows(c->dim);
    d->xb = alloc_rows(d->wide);
    d->xb2 = alloc_rows(d->wide);
    d->q = alloc_rows(q_dim);
    d->k = alloc_rows(d->kv_dim);
    d->v = alloc_rows(d->kv_dim);
    d->hb = alloc_rows(c->hidden_dim);
    d->hb2 = alloc_rows(c->hidden_dim);
    d->logits = alloc_rows(c->vocab_size);
    d->rope_cos = alloc_rows(c->head_size / 2);
    d->rope_sin = alloc_rows(c->head_size / 2);
    d->scratch = calloc((size_t)threads * KVQ_DEC_GRAIN * (size_t)d->scratch_cols, sizeof(float));
    d->thread_err = calloc((size_t)threads, sizeof *d->thread_err);
    d->thread_err_w = calloc((size_t)threads, sizeof *d->thread_err_w);
    KVQ_FAIL_IF(!d->x || !d->xb || !d->xb2 || !d->q || !d->k || !d->v || !d->hb || !d->hb2 || !d->logits ||
                    !d->rope_cos || !d->rope_sin || !d->scratch || !d->thread_err || !d->thread_err_w,
                KVQ_ERR_NOMEM, "decoder: out of memory for the run state");
    return KVQ_OK;
}

/* The activation codec of one linear input: per layer when act_layer is
 * set, else shared by every layer. */
static kvq_ctx *act_ctx(const kvq_decoder *d, int layer, int which)
{
    if (d->opts.act_layer) return d->opts.act_layer[layer * KVQ_LIN__COUNT + which];
    return d->opts.act[which];
}

/* Payload scratch for the activation codecs: the largest bound over the
 * linear inputs they see ([1][dim] or [1][hidden_dim]). */
static kvq_err alloc_act(kvq_decoder *d)
{
    for (int k = 0; k < (d->cfg.n_layers + 1) * KVQ_LIN__COUNT; k++) {
        int i = k % KVQ_LIN__COUNT;
        kvq_ctx *ctx = act_ctx(d, k / KVQ_LIN__COUNT, i);
        if (!ctx) continue;
        int64_t dims[2] = {1, i == KVQ_LIN_DOWN ? d->cfg.hidden_dim
                              : i == KVQ_LIN_O  ? d->cfg.n_heads * d->cfg.head_size
                                                : d->cfg.dim};
        kvq_shape s = kvq_shape_make(2, dims);
        size_t b = kvq_ctx_payload_bound(ctx, &s);
        if (b > d->act_cap) d->act_cap = b;
    }
    if (!d->act_cap) return KVQ_OK;
    d->act_buf = malloc(d->act_cap);
    KVQ_FAIL_IF(!d->act_buf, KVQ_ERR_NOMEM, "decoder: out of memory for activation codec scratch");
    return KVQ_OK;
}

static kvq_err make_cache(kvq_decoder *d)
{
    if (d->opts.cache) {
        d->cache = d->opts.cache;
        return KVQ_OK;
    }
    kvq_cache_config cc = d->opts.cache_cfg
                              ? *d->opts.cache_cfg
                              : kvq_cache_config_default(d->cfg.n_layers, d->cfg.n_kv_heads,
                                                         d->cfg.head_size, d->cfg.seq_len);
    KVQ_FAIL_IF(cc.n_layers != d->cfg.n_layers || cc.n_kv_heads != d->cfg.n_kv_heads ||
                    cc.head_size != d->cfg.head_size,
                KVQ_ERR_ARG, "decoder: cache config (%d layers, %d KV heads of %d) does not fit the model",
                cc.n_layers, cc.n_kv_heads, cc.head_size);
    KVQ_TRY(kvq_cache_create(&cc, &d->cache));
    d->own_cache = 1;
    return KVQ_OK;
}

static kvq_err build(kvq_decoder *d)
{
    const kvq_model_config *c = &d->cfg;
    if (c->arch == KVQ_ARCH_MAMBA2) return kvq_mamba2_build(d);
    KVQ_TRY(check_config(c));
    d->kv_dim = c->n_kv_heads * c->head_size;
    KVQ_TRY(kvq_pool_create(d->opts.threads > 1 ? d->opts.threads : 1, &d->pool));
    d->layer = calloc((size_t)c->n_layers, sizeof *d->layer);
    KVQ_FAIL_IF(!d->layer, KVQ_ERR_NOMEM, "decoder: out of memory");
    KVQ_TRY(bind_mat(d, &d->embed, "token_embd.weight", c->vocab_size, c->dim));
    KVQ_TRY(bind_vec(d, &d->final_norm, "output_norm.weight", c->dim));
    const char *cls = kvq_model_weight(d->model, "output.weight") ? "output.weight" : "token_embd.weight";
    KVQ_TRY(bind_mat(d, &d->cls, cls, c->vocab_size, c->dim));
    for (int l = 0; l < c->n_layers; l++) KVQ_TRY(bind_layer(d, l));
    KVQ_TRY(alloc_state(d));
    KVQ_TRY(alloc_act(d));
    return make_cache(d);
}

kvq_err kvq_decoder_create(const kvq_model *m, const kvq_decoder_opts *o, kvq_decoder **out)
{
    KVQ_FAIL_IF(!m || !out, KVQ_ERR_ARG, "decoder: NULL argument");
    *out = NULL;
    kvq_decoder *d = calloc(1, sizeof *d);
    KVQ_FAIL_IF(!d, KVQ_ERR_NOMEM, "decoder: out of memory");
    d->model = m;
    d->cfg = *kvq_model_config_get(m);
    if (o) d->opts = *o;
    kvq_err e = build(d);
    if (e) {
        kvq_decoder_free(d);
        return e;
    }
    *out = d;
    return KVQ_OK;
}

static void free_mat(dec_mat *m) { free(m->owned); }

void kvq_decoder_free(kvq_decoder *d)
{
    if (!d) return;
    kvq_mamba2_free(d);
    for (int l = 0; d->layer && l < d->cfg.n_layers; l++) {
        dec_layer *L = &d->layer[l];
        free(L->attn_norm);
        free(L->ffn_norm);
        dec_mat *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) free_mat(mats[i]);
        free(L->rope_pair);
    }
    free(d->layer);
    free_mat(&d->embed);
    free_mat(&d->cls);
    free(d->final_norm);
    if (d->own_cache) kvq_cache_free(d->cache);
    kvq_pool_free(d->pool);
    float *bufs[] = {d->x, d->xb, d->xb2, d->q, d->k, d->v, d->hb, d->hb2, d->logits,
                     d->rope_cos, d->rope_sin, d->scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(d->act_buf);
    free(d->thread_err);
    free(d->thread_err_w);
    free(d);
}

kvq_cache *kvq_decoder_cache(kvq_decoder *d) { return d ? d->cache : NULL; }
const kvq_model_config *kvq_decoder_config(const kvq_decoder *d) { return d ? &d->cfg : NULL; }
kvq_err kvq_decoder_reset(kvq_decoder *d)
{
    KVQ_FAIL_IF(!d, KVQ_ERR_ARG, "decoder: NULL");
    if (d->mamba) kvq_mamba2_reset(d);
    return kvq_cache_clear(d->cache);
}

static size_t mat_bytes(const dec_mat *m)
{
    return m->owned ? (size_t)m->rows * (size_t)m->cols * sizeof(float) : m->w->size;
}

size_t kvq_decoder_weight_bytes(const kvq_decoder *d)
{
    if (!d) return 0;
    if (d->mamba) return kvq_mamba2_weight_bytes(d);
    size_t n = mat_bytes(&d->embed) + (d->cls.w != d->embed.w || d->cls.owned ? mat_bytes(&d->cls) : 0);
    for (int l = 0; l < d->cfg.n_layers; l++) {
        const dec_layer *L = &d->layer[l];
        n += mat_bytes(&L->wq) + mat_bytes(&L->wk) + mat_bytes(&L->wv) + mat_bytes(&L->wo) +
             mat_bytes(&L->w1) + mat_bytes(&L->w2) + mat_bytes(&L->w3) + 2 * (size_t)d->cfg.dim * sizeof(float);
    }
    return n + (size_t)d->cfg.dim * sizeof(float);
}

/* ---- matmul ------------------------------------------------------------------- */
/* Σ w[i]·x[i] in DOT_LANES interleaved partial sums (vectorisable without
 * reassociation flags), combined pairwise, then the tail in order. */
static float dot(const float *restrict w, const float *restrict x, int n)
{
    float acc[DOT_LANES] = {0};
    int i = 0;
    for (; i + DOT_LANES <= n; i += DOT_LANES)
        for (int k = 0; k < DOT_LANES; k++) acc[k] += w[i + k] * x[i + k];
    for (int s = DOT_LANES / 2; s > 0; s /= 2)
        for (int k = 0; k < s; k++) acc[k] += acc[k + s];
    float tail = 0.0f;
    for (; i < n; i++) tail += w[i] * x[i];
    return acc[0] + tail;
}

/* A matmul job: up to MAX_JOB_MATS matrices sharing the same nb input
 * rows x[t·x_stride ...]; matrix k writes out[k][t·out_stride[k] + r]. */
typedef struct {
    kvq_decoder *d;
    const float *x;
    size_t x_stride;
    int nb;
    const dec_mat *m[MAX_JOB_MATS];
    float *out[MAX_JOB_MATS];
    size_t out_stride[MAX_JOB_MATS];
    int n_mats;
} mm_job;

/* Every input row against weight rows w[0 .. r1-r0) (rows r0.. of the matrix). */
static void mm_block(const mm_job *j, int k, const float *w, int r0, int r1)
{
    int cols = j->m[k]->cols;
    for (int r = r0; r < r1; r++) {
        const float *row = w + (size_t)(r - r0) * (size_t)cols;
        for (int t = 0; t < j->nb; t++)
            j->out[k][(size_t)t * j->out_stride[k] + (size_t)r] = dot(row, j->x + (size_t)t * j->x_stride, cols);
    }
}

/* Rows [r0, r1) of a matrix through its row kernel, no dequantized copy:
 * with a multi-row product, all rows per input row in one call (outputs
 * of one input row are contiguous); else each stored row once for all
 * nb input rows. */
static void mm_fused(const mm_job *j, int k, int r0, int r1)
{
    const kvq_rowkern *rk = &j->m[k]->rk;
    if (rk->dots) {
        for (int t = 0; t < j->nb; t++)
            rk->dots(rk, r0, r1, j->x + (size_t)t * j->x_stride, j->out[k] + (size_t)t * j->out_stride[k] + r0);
        return;
    }
    for (int r = r0; r < r1; r++)
        for (int t = 0; t < j->nb; t++)
            j->out[k][(size_t)t * j->out_stride[k] + (size_t)r] = rk->dot(rk, r, j->x + (size_t)t * j->x_stride);
}

/* Rows [r0, r1) of matrix k: in place, fused with the stored blocks, or
 * dequantized a block at a time. */
static void mm_rows(const mm_job *j, int k, int r0, int r1, int tid)
{
    const dec_mat *m = j->m[k];
    kvq_decoder *d = j->d;
    if (m->f32) {
        mm_block(j, k, m->f32 + (size_t)r0 * (size_t)m->cols, r0, r1);
        return;
    }
    if (m->fused && j->nb <= FUSED_MAX_TOKENS && m->rk.fast) {
        mm_fused(j, k, r0, r1);
        return;
    }
    float *blk = d->scratch + (size_t)tid * KVQ_DEC_GRAIN * (size_t)d->scratch_cols;
    for (int b = r0; b < r1; b += KVQ_DEC_GRAIN) {
        int e = b + KVQ_DEC_GRAIN < r1 ? b + KVQ_DEC_GRAIN : r1;
        kvq_err err = kvq_weight_rows(m->w, b, e, blk);
        if (err) {
            if (!d->thread_err[tid]) {
                d->thread_err[tid] = err;
                d->thread_err_w[tid] = m->w;
            }
            continue;
        }
        mm_block(j, k, blk, b, e);
    }
}

/* Pool callback: global rows [i0, i1) over the job's matrices in order. */
static void mm_task(void *ctx, int64_t i0, int64_t i1, int tid)
{
    const mm_job *j = ctx;
    int64_t base = 0;
    for (int k = 0; k < j->n_mats && base < i1; k++) {
        int64_t rows = j->m[k]->rows, lo = i0 > base ? i0 - base : 0, hi = i1 - base < rows ? i1 - base : rows;
        if (lo < hi) mm_rows(j, k, (int)lo, (int)hi, tid);
        base += rows;
    }
}

static kvq_err run_job(kvq_decoder *d, mm_job *j)
{
    int64_t rows = 0;
    for (int k = 0; k < j->n_mats; k++) rows += j->m[k]->rows;
    int threads = kvq_pool_threads(d->pool);
    memset(d->thread_err, 0, (size_t)threads * sizeof *d->thread_err);
    kvq_pool_run(d->pool, rows, KVQ_DEC_GRAIN, mm_task, j);
    for (int t = 0; t < threads; t++)
        KVQ_FAIL_IF(d->thread_err[t], d->thread_err[t], "decoder: %s: cannot dequantize rows (%s)",
                    d->thread_err_w[t]->name, kvq_strerror(d->thread_err[t]));
    return KVQ_OK;
}

/* out[t][.] = m · x[t] for nb rows of width `stride` in x and out. */
static kvq_err matmul(kvq_decoder *d, const float *x, size_t x_stride, int nb, const dec_mat *m, float *out,
                      size_t out_stride)
{
    mm_job j = {d, x, x_stride, nb, {m}, {out}, {out_stride}, 1};
    return run_job(d, &j);
}

/* ---- activation hooks ------------------------------------------------------------ */
/* For each of nb rows: capture, then encode + decode in place with the
 * linear's codec. */
static kvq_err act_hook(kvq_decoder *d, int layer, kvq_linear which, float *x, size_t stride, int nb, int n)
{
    kvq_ctx *ctx = act_ctx(d, layer, which);
    for (int t = 0; t < nb; t++) {
        float *row = x + (size_t)t * stride;
        if (d->opts.capture) d->opts.capture(d->opts.capture_user, layer, which, row, n);
        if (!ctx) continue;
        int64_t dims[2] = {1, n};
        kvq_tensor view = kvq_tensor_view(KVQ_DTYPE_F32, row, 2, dims);
        size_t used;
        KVQ_TRY(kvq_ctx_encode_payload(ctx, &view, d->act_buf, d->act_cap, &used));
        KVQ_TRY(kvq_ctx_decode_payload(ctx, d->act_buf, used, &view));
    }
    return KVQ_OK;
}

/* ---- the forward pass (run.c forward()), nb tokens at positions pos0.. ---------- */
static void rmsnorm(float *o, const float *x, const float *w, int n, float eps)
{
    float ss = 0.0f;
    for (int j = 0; j < n; j++) ss += x[j] * x[j];
    ss /= (float)n;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < n; j++) o[j] = w[j] * (ss * x[j]);
}

static void rope_tables(kvq_decoder *d, int pos0, int nb)
{
    int hs = d->cfg.head_size, half = hs / 2;
    for (int t = 0; t < nb; t++)
        for (int j = 0; j < half; j++) {
            float freq = 1.0f / powf(d->cfg.rope_theta, (float)(2 * j) / (float)hs);
            float val = (float)(pos0 + t) * freq;
            d->rope_cos[t * half + j] = cosf(val);
            d->rope_sin[t * half + j] = sinf(val);
        }
}

/* Rotate n_heads heads of token t's vec; head h is in KV group h / per_group. */
static void rope_apply(const kvq_decoder *d, const dec_layer *L, int t, float *vec, int n_heads, int per_group)
{
    int hs = d->cfg.head_size, half = hs / 2, adjacent = d->cfg.rope == KVQ_ROPE_ADJACENT;
    const float *cs = d->rope_cos + (size_t)t * (size_t)half, *sn = d->rope_sin + (size_t)t * (size_t)half;
    for (int h = 0; h < n_heads; h++) {
        float *head = vec + (size_t)h * (size_t)hs;
        const int *pair = L->rope_pair + (size_t)(h / per_group) * (size_t)half;
        for (int j = 0; j < half; j++) {
            int a = adjacent ? 2 * j : j, b = adjacent ? 2 * j + 1 : j + half;
            float c = cs[pair[j]], s = sn[pair[j]];
            float v0 = head[a], v1 = head[b];
            head[a] = v0 * c - v1 * s;
            head[b] = v0 * s + v1 * c;
        }
    }
}

static kvq_err attention(kvq_decoder *d, int l, int pos0, int nb)
{
    const kvq_model_config *c = &d->cfg;
    dec_layer *L = &d->layer[l];
    size_t W = (size_t)d->wide, dim = (size_t)c->dim, q_dim = (size_t)(c->n_heads * c->head_size);
    size_t kvd = (size_t)d->kv_dim;
    for (int t = 0; t < nb; t++) rmsnorm(d->xb + t * W, d->x + t * dim, L->attn_norm, c->dim, c->norm_eps);
    KVQ_TRY(act_hook(d, l, KVQ_LIN_QKV, d->xb, W, nb, c->dim));
    mm_job j = {d, d->xb, W, nb, {&L->wq, &L->wk, &L->wv}, {d->q, d->k, d->v}, {q_dim, kvd, kvd}, 3};
    KVQ_TRY(run_job(d, &j));
    int kv_mul = c->n_heads / c->n_kv_heads;
    /* One token at a time through the cache, so each query sees exactly
     * what it would see decoding alone (pages seal at the same moments). */
    for (int t = 0; t < nb; t++) {
        rope_apply(d, L, t, d->q + t * q_dim, c->n_heads, kv_mul);
        rope_apply(d, L, t, d->k + t * kvd, c->n_kv_heads, 1);
        KVQ_TRY(kvq_cache_append(d->cache, l, d->k + t * kvd, d->v + t * kvd, 1));
        KVQ_TRY(kvq_cache_attend(d->cache, l, d->q + t * q_dim, c->n_heads, pos0 + t + 1, d->xb + t * W));
    }
    KVQ_TRY(act_hook(d, l, KVQ_LIN_O, d->xb, W, nb, (int)q_dim));
    KVQ_TRY(matmul(d, d->xb, W, nb, &L->wo, d->xb2, W));
    for (int t = 0; t < nb; t++)
        for (size_t i = 0; i < dim; i++) d->x[t * dim + i] += d->xb2[t * W + i];
    return KVQ_OK;
}

static kvq_err ffn(kvq_decoder *d, int l, int nb)
{
    const kvq_model_config *c = &d->cfg;
    dec_layer *L = &d->layer[l];
    size_t W = (size_t)d->wide, dim = (size_t)c->dim, hid = (size_t)c->hidden_dim;
    for (int t = 0; t < nb; t++) rmsnorm(d->xb + t * W, d->x + t * dim, L->ffn_norm, c->dim, c->norm_eps);
    KVQ_TRY(act_hook(d, l, KVQ_LIN_GATEUP, d->xb, W, nb, c->dim));
    mm_job j = {d, d->xb, W, nb, {&L->w1, &L->w3}, {d->hb, d->hb2}, {hid, hid}, 2};
    KVQ_TRY(run_job(d, &j));
    for (size_t i = 0; i < (size_t)nb * hid; i++) {
        float val = d->hb[i];
        val *= 1.0f / (1.0f + expf(-val));   /* SiLU, as run.c */
        val *= d->hb2[i];
        d->hb[i] = val;
    }
    KVQ_TRY(act_hook(d, l, KVQ_LIN_DOWN, d->hb, hid, nb, c->hidden_dim));
    KVQ_TRY(matmul(d, d->hb, hid, nb, &L->w2, d->xb, W));
    for (int t = 0; t < nb; t++)
        for (size_t i = 0; i < dim; i++) d->x[t * dim + i] += d->xb[t * W + i];
    return KVQ_OK;
}

static kvq_err embed_tokens(kvq_decoder *d, const int *tokens, int nb)
{
    const dec_mat *e = &d->embed;
    size_t dim = (size_t)e->cols;
    for (int t = 0; t < nb; t++) {
        KVQ_FAIL_IF(tokens[t] < 0 || tokens[t] >= d->cfg.vocab_size, KVQ_ERR_ARG,
                    "decoder: token %d outside vocabulary of %d", tokens[t], d->cfg.vocab_size);
        if (e->f32) memcpy(d->x + t * dim, e->f32 + (size_t)tokens[t] * dim, dim * sizeof(float));
        else KVQ_TRY(kvq_weight_rows(e->w, tokens[t], tokens[t] + 1, d->x + t * dim));
    }
    return KVQ_OK;
}

/* Positions must continue the cache; an earlier pos rewinds it (crop). */
static kvq_err sync_cache(kvq_decoder *d, int pos)
{
    int len = kvq_cache_len(d->cache, 0);
    KVQ_FAIL_IF(pos < 0 || pos > len, KVQ_ERR_ARG, "decoder: position %d but the cache holds %d tokens", pos,
                len);
    if (pos < len)
        for (int l = 0; l < d->cfg.n_layers; l++) KVQ_TRY(kvq_cache_truncate(d->cache, l, pos));
    return KVQ_OK;
}

/* nb <= KVQ_DEC_BATCH tokens; logits of token t land in d->logits row t
 * when want_logits (else the classifier is skipped). */
static kvq_err forward_chunk(kvq_decoder *d, const int *tokens, int nb, int pos0, int want_logits)
{
    const kvq_model_config *c = &d->cfg;
    if (d->mamba) return kvq_mamba2_forward(d, tokens, nb, pos0, want_logits);
    KVQ_TRY(embed_tokens(d, tokens, nb));
    KVQ_TRY(sync_cache(d, pos0));
    rope_tables(d, pos0, nb);
    for (int l = 0; l < c->n_layers; l++) {
        KVQ_TRY(attention(d, l, pos0, nb));
        KVQ_TRY(ffn(d, l, nb));
    }
    if (!want_logits) return KVQ_OK;
    size_t dim = (size_t)c->dim;
    for (int t = 0; t < nb; t++) rmsnorm(d->x + t * dim, d->x + t * dim, d->final_norm, c->dim, c->norm_eps);
    KVQ_TRY(act_hook(d, c->n_layers, KVQ_LIN_CLS, d->x, dim, nb, c->dim));
    return matmul(d, d->x, dim, nb, &d->cls, d->logits, (size_t)c->vocab_size);
}

kvq_err kvq_decoder_forward(kvq_decoder *d, int token, int pos, float **logits)
{
    KVQ_FAIL_IF(!d || !logits, KVQ_ERR_ARG, "decoder_forward: NULL argument");
    KVQ_TRY(forward_chunk(d, &token, 1, pos, 1));
    *logits = d->logits;
    return KVQ_OK;
}

kvq_err kvq_decoder_forward_seq(kvq_decoder *d, const int *tokens, int n, int pos0, float *logits_out)
{
    KVQ_FAIL_IF(!d || (!tokens && n) || n < 0, KVQ_ERR_ARG, "decoder_forward_seq: bad argument");
    size_t v = (size_t)d->cfg.vocab_size;
    for (int i = 0; i < n; i += KVQ_DEC_BATCH) {
        int nb = n - i < KVQ_DEC_BATCH ? n - i : KVQ_DEC_BATCH;
        KVQ_TRY(forward_chunk(d, tokens + i, nb, pos0 + i, logits_out != NULL));
        if (logits_out) memcpy(logits_out + (size_t)i * v, d->logits, (size_t)nb * v * sizeof(float));
    }
    return KVQ_OK;
}

/* ---- shared with mamba2.c (decoder_internal.h) ------------------------------------ */
kvq_err kvq_dec_bind_mat(kvq_decoder *d, dec_mat *m, const char *name, int rows, int cols)
{
    return bind_mat(d, m, name, rows, cols);
}
kvq_err kvq_dec_bind_vec(kvq_decoder *d, float **out, const char *name, int n) { return bind_vec(d, out, name, n); }
kvq_err kvq_dec_alloc_state(kvq_decoder *d) { return alloc_state(d); }
kvq_err kvq_dec_matmul(kvq_decoder *d, const float *x, size_t x_stride, int nb, const dec_mat *m, float *out,
                       size_t out_stride)
{
    return matmul(d, x, x_stride, nb, m, out, out_stride);
}
void kvq_dec_rmsnorm(float *o, const float *x, const float *w, int n, float eps) { rmsnorm(o, x, w, n, eps); }
kvq_err kvq_dec_embed(kvq_decoder *d, const int *tokens, int nb) { return embed_tokens(d, tokens, nb); }
kvq_ctx *kvq_dec_act_ctx(const kvq_decoder *d, int layer, int which) { return act_ctx(d, layer, which); }
kvq_err kvq_dec_act_hook(kvq_decoder *d, int layer, kvq_linear which, float *x, size_t stride, int nb, int n)
{
    return act_hook(d, layer, which, x, stride, nb, n);
}
