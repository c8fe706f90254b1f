/*
 * mamba2.c — the Mamba-2 block in the reference decoder (quant-methods.md
 * §4.1; Dao & Gu, "Transformers are SSMs", the SSD layer; Hugging Face
 * transformers' Mamba2Mixer reference path for the exact arithmetic).
 *
 * Block l, per token (residual x, width dim):
 *     u        = RMSNorm(x) · norm_l                                (eps cfg)
 *     [z|xBC|dt] = in_proj · u        z, x: d_inner; B, C: ngroups·d_state
 *     xBC      = SiLU(causal depthwise conv1d(xBC) + bias)          (kernel K)
 *     dt       = softplus(dt + dt_bias);  A = −exp(A_log)           (per head)
 *     h_t      = exp(dt·A)·h_{t−1} + dt·B_t·x_tᵀ   (head h reads group h/(H/G))
 *     y_t      = C_t·h_t + D·x_t
 *     x       += out_proj · (RMSNorm(y · SiLU(z)) · gnorm_l)  (one norm over
 *                all d_inner channels, as transformers' torch path does)
 * then RMSNorm(norm_f) and the classifier (tied to the embedding unless
 * lm_head.weight exists).
 *
 * Two algorithms, same function: a single token takes the recurrence
 * above; a chunk of nb tokens takes the SSD quadratic ("dual") form inside
 * the chunk, with cumulative log-decays cum_t = Σ_{r<=t} dt_r·A:
 *     y_t = Σ_{s<=t} (C_t·B_s)·exp(cum_t − cum_s)·dt_s·x_s
 *           + exp(cum_t)·(C_t·h_0) + D·x_t
 *     h_nb = exp(cum_nb)·h_0 + Σ_s exp(cum_nb − cum_s)·dt_s·B_s·x_sᵀ
 * Prefill-then-decode therefore equals whole-sequence prefill up to f32
 * rounding (tested to 1e-4 against the golden logits, which the model's
 * authors computed with the plain recurrence).
 *
 * State: per layer a conv window of the last K−1 xBC inputs and the SSM
 * state h [nheads][headdim][d_state].  When the cache configuration names
 * an SSM-state codec (cache_cfg->k_spec naming a codec that serves
 * KVQ_DOMAIN_SSM), h is held encoded by it: every token takes the
 * recurrence and the state is encoded and decoded back after each one
 * (as a decoder keeping an int8 state cache does, even inside a
 * teacher-forced chunk); the stored bytes are what
 * kvq_decoder_ssm_state_bytes() reports.
 *
 * Activation hooks: in_proj input = KVQ_LIN_QKV, out_proj input =
 * KVQ_LIN_O, classifier input = KVQ_LIN_CLS (flat rows); the SSM input x
 * after the conv = KVQ_LIN_SSM_X as a [1][ngroups][heads/group][headdim]
 * view ([ngroups][heads/group][headdim][1] for quamba2, see ssm_hooks),
 * B and C = KVQ_LIN_SSM_B / _C as [1][ngroups][d_state] views, so a codec
 * sees the SSD group structure it may scale by (Quamba2 §4.2).  Quamba2's
 * other tensors go only to a codec that opts in by parameters named zdt /
 * xbc / state (quamba2): the in_proj outputs z and raw dt (KVQ_LIN_SSM_Z /
 * _DT), x, B and C before the conv (KVQ_LIN_SSM_XI / _BI / _CI), all flat
 * rows, and the SSM state (KVQ_LIN_SSM_H, [ngroups][heads/group]
 * [headdim][d_state], the layer's state codec when no k_spec is set,
 * with scales calibrated on the states captured at each chunk's end).
 *
 * [ours] where transformers is silent: position tracking is our own
 * counter (an SSM cannot rewind, so a forward at position 0 restarts and
 * any other position must continue the sequence); no kvq_cache tokens are
 * stored for Mamba-2 (the decoder's cache stays empty).
 */
#include "decoder_internal.h"

#include <math.h>
#include <stdlib.h>

#define SOFTPLUS_LINEAR 20.0f /* torch.nn.functional.softplus threshold: x above it returns x */
#define GNORM_EPS 1e-5f        /* MambaRMSNormGated eps (data/README.md)                     */

typedef struct m2_layer {
    float *norm;               /* (dim) block RMSNorm weight                     */
    dec_mat in_proj;           /* (d_in_proj, dim)                               */
    float *conv_w;             /* (conv_dim, K) depthwise taps, oldest first     */
    float *conv_b;             /* (conv_dim)                                     */
    float *dt_bias, *A, *D;    /* (nheads); A = −exp(A_log)                      */
    float *gnorm;              /* (d_inner) gated-RMSNorm weight                 */
    dec_mat out_proj;          /* (dim, d_inner)                                 */
    float *conv_state;         /* (K−1, conv_dim) last xBC inputs, oldest first  */
    float *h;                  /* (nheads, headdim, d_state) SSM state           */
    kvq_ctx *hctx;             /* state codec (not owned), or NULL: h f32        */
    kvq_shape h_shape;         /* the view hctx sees h as                        */
    void *h_enc;               /* encoded h, h_enc_n of h_cap bytes              */
    size_t h_enc_n, h_cap;
} m2_layer;

struct kvq_mamba2 {
    int dim, d_inner, d_state, n_groups, n_heads, head_dim, kernel, conv_dim, d_in_proj;
    m2_layer *layer;           /* [n_layers]                                     */
    float *zxbcdt;             /* (B, d_in_proj) in_proj output                  */
    float *xbc;                /* (B, conv_dim) conv + SiLU output               */
    float *y;                  /* (B, d_inner) SSM output, then gated norm       */
    float *dt;                 /* (B, nheads) softplus(dt + bias)                */
    float *cum;                /* (B) cumulative log-decay of one head           */
    float *cb;                 /* (B, B) C_t·B_s of one group                    */
    int pos;                   /* tokens consumed by the state                   */
    kvq_ctx *state_codec;      /* the k_spec state codec (owned), or NULL         */
};

/* ---- binding ------------------------------------------------------------------ */
static kvq_err vec_any(kvq_decoder *d, float **out, const char *name, int n, int required)
{
    if (!required && !kvq_model_weight(d->model, name)) {
        *out = calloc((size_t)n, sizeof **out);
        KVQ_FAIL_IF(!*out, KVQ_ERR_NOMEM, "decoder: out of memory");
        return KVQ_OK;
    }
    return kvq_dec_bind_vec(d, out, name, n);
}

static kvq_err bind_m2_layer(kvq_decoder *d, kvq_mamba2 *mb, int l)
{
    m2_layer *L = &mb->layer[l];
    char nm[96];
#define MNAME(s) (snprintf(nm, sizeof nm, "backbone.layers.%d.%s", l, s), nm)
    KVQ_TRY(kvq_dec_bind_vec(d, &L->norm, MNAME("norm.weight"), mb->dim));
    KVQ_TRY(kvq_dec_bind_mat(d, &L->in_proj, MNAME("mixer.in_proj.weight"), mb->d_in_proj, mb->dim));
    KVQ_TRY(kvq_dec_bind_vec(d, &L->conv_w, MNAME("mixer.conv1d.weight"), mb->conv_dim * mb->kernel));
    KVQ_TRY(vec_any(d, &L->conv_b, MNAME("mixer.conv1d.bias"), mb->conv_dim, 0));
    KVQ_TRY(kvq_dec_bind_vec(d, &L->dt_bias, MNAME("mixer.dt_bias"), mb->n_heads));
    KVQ_TRY(kvq_dec_bind_vec(d, &L->A, MNAME("mixer.A_log"), mb->n_heads));
    KVQ_TRY(kvq_dec_bind_vec(d, &L->D, MNAME("mixer.D"), mb->n_heads));
    KVQ_TRY(kvq_dec_bind_vec(d, &L->gnorm, MNAME("mixer.norm.weight"), mb->d_inner));
    KVQ_TRY(kvq_dec_bind_mat(d, &L->out_proj, MNAME("mixer.out_proj.weight"), mb->dim, mb->d_inner));
#undef MNAME
    for (int h = 0; h < mb->n_heads; h++) L->A[h] = -expf(L->A[h]);
    L->conv_state = calloc((size_t)(mb->kernel - 1) * (size_t)mb->conv_dim + 1, sizeof(float));
    L->h = calloc((size_t)mb->n_heads * (size_t)mb->head_dim * (size_t)mb->d_state, sizeof(float));
    KVQ_FAIL_IF(!L->conv_state || !L->h, KVQ_ERR_NOMEM, "decoder: out of memory for the Mamba-2 state");
    return KVQ_OK;
}

static kvq_err geometry(const kvq_model_config *c, kvq_mamba2 *mb)
{
    mb->dim = c->dim;
    mb->d_inner = c->hidden_dim;
    mb->n_heads = c->n_heads;
    mb->head_dim = c->head_size;
    mb->d_state = c->ssm_state;
    mb->n_groups = c->ssm_groups;
    mb->kernel = c->conv_kernel;
    KVQ_FAIL_IF(mb->dim < 1 || mb->n_heads < 1 || mb->head_dim < 1 || mb->d_state < 1 || mb->n_groups < 1 ||
                    mb->kernel < 1 || mb->n_heads % mb->n_groups || mb->d_inner != mb->n_heads * mb->head_dim ||
                    c->n_layers < 1 || c->vocab_size < 1,
                KVQ_ERR_SHAPE,
                "decoder: bad Mamba-2 config (dim %d, d_inner %d, %d heads of %d, %d groups, state %d, conv %d)",
                mb->dim, mb->d_inner, mb->n_heads, mb->head_dim, mb->n_groups, mb->d_state, mb->kernel);
    mb->conv_dim = mb->d_inner + 2 * mb->n_groups * mb->d_state;
    mb->d_in_proj = mb->d_inner + mb->conv_dim + mb->n_heads;
    return KVQ_OK;
}

static kvq_err alloc_m2(kvq_decoder *d, kvq_mamba2 *mb)
{
    size_t B = KVQ_DEC_BATCH;
    mb->zxbcdt = calloc(B * (size_t)mb->d_in_proj, sizeof(float));
    mb->xbc = calloc(B * (size_t)mb->conv_dim, sizeof(float));
    mb->y = calloc(B * (size_t)mb->d_inner, sizeof(float));
    mb->dt = calloc(B * (size_t)mb->n_heads, sizeof(float));
    mb->cum = calloc(B, sizeof(float));
    mb->cb = calloc(B * B, sizeof(float));
    KVQ_FAIL_IF(!mb->zxbcdt || !mb->xbc || !mb->y || !mb->dt || !mb->cum || !mb->cb, KVQ_ERR_NOMEM,
                "decoder: out of memory for the Mamba-2 run state");
    /* Payload scratch: the largest bound over the views the hooks pass. */
    int64_t flat[2] = {1, mb->d_inner > mb->dim ? mb->d_inner : mb->dim};
    int64_t xq[4] = {mb->n_groups, mb->n_heads / mb->n_groups, mb->head_dim, 1};
    int64_t xg[4] = {1, mb->n_groups, mb->n_heads / mb->n_groups, mb->head_dim};
    int64_t bd[3] = {1, mb->n_groups, mb->d_state};
    kvq_shape shapes[4] = {kvq_shape_make(2, flat), kvq_shape_make(4, xq), kvq_shape_make(4, xg),
                           kvq_shape_make(3, bd)};
    for (int l = 0; l <= d->cfg.n_layers; l++)
        for (int i = 0; i < KVQ_LIN__COUNT; i++) {
            kvq_ctx *ctx = kvq_dec_act_ctx(d, l, i);
            for (int k = 0; ctx && k < 4; k++) {
                size_t b = kvq_ctx_payload_bound(ctx, &shapes[k]);
                if (b > d->act_cap) d->act_cap = b;
            }
        }
    if (d->act_cap) {
        d->act_buf = malloc(d->act_cap);
        KVQ_FAIL_IF(!d->act_buf, KVQ_ERR_NOMEM, "decoder: out of memory for activation codec scratch");
    }
    return KVQ_OK;
}

/* The codec of a Quamba2-only tensor (z, dt, x/B/C before the conv, the
 * state) of layer l: the layer's activation codec for `which` when it
 * serves KVQ_DOMAIN_SSM and opts in through a parameter named `toggle`
 * set to 1 (quamba2's zdt, xbc, state); else NULL and the tensor stays
 * f32, so a generic activation
 * codec (rtn, fp) keeps quantizing only the linear inputs and x, B, C. */
static kvq_ctx *ssm_ctx(const kvq_decoder *d, int l, kvq_linear which, const char *toggle)
{
    kvq_ctx *ctx = kvq_dec_act_ctx(d, l, which);
    if (!ctx || !(kvq_ctx_codec(ctx)->domain & KVQ_DOMAIN_SSM)) return NULL;
    int i = kvq_param_index(kvq_ctx_codec(ctx), toggle);
    return i >= 0 && kvq_ctx_params(ctx)->v[i] != 0 ? ctx : NULL;
}

/* The state codec of every layer: cache_cfg->k_spec when set (one codec,
 * h seen as [heads][head_dim][d_state]); else the layer's KVQ_LIN_SSM_H
 * activation codec (calibrated per layer: static scales), h seen as
 * [n_groups][heads per group][head_dim][d_state]; else none. */
static kvq_err open_state_codec(kvq_decoder *d, kvq_mamba2 *mb)
{
    const char *spec = d->opts.cache_cfg ? d->opts.cache_cfg->k_spec : NULL;
    if (spec) {
        KVQ_TRY(kvq_ctx_create(spec, &mb->state_codec));
        KVQ_FAIL_IF(!(kvq_ctx_codec(mb->state_codec)->domain & KVQ_DOMAIN_SSM), KVQ_ERR_ARG,
                    "decoder: %s does not serve SSM states (Mamba-2 keeps its state, not K/V pages)", spec);
    }
    int64_t d3[3] = {mb->n_heads, mb->head_dim, mb->d_state};
    int64_t d4[4] = {mb->n_groups, mb->n_heads / mb->n_groups, mb->head_dim, mb->d_state};
    for (int l = 0; l < d->cfg.n_layers; l++) {
        m2_layer *L = &mb->layer[l];
        L->hctx = mb->state_codec ? mb->state_codec : ssm_ctx(d, l, KVQ_LIN_SSM_H, "state");
        if (!L->hctx) continue;
        L->h_shape = mb->state_codec ? kvq_shape_make(3, d3) : kvq_shape_make(4, d4);
        L->h_cap = kvq_ctx_payload_bound(L->hctx, &L->h_shape);
        L->h_enc = malloc(L->h_cap);
        KVQ_FAIL_IF(!L->h_enc, KVQ_ERR_NOMEM, "decoder: out of memory for the encoded SSM state");
    }
    return KVQ_OK;
}

kvq_err kvq_mamba2_build(kvq_decoder *d)
{
    const kvq_model_config *c = &d->cfg;
    kvq_mamba2 *mb = calloc(1, sizeof *mb);
    KVQ_FAIL_IF(!mb, KVQ_ERR_NOMEM, "decoder: out of memory");
    d->mamba = mb;
    KVQ_TRY(geometry(c, mb));
    KVQ_TRY(kvq_pool_create(d->opts.threads > 1 ? d->opts.threads : 1, &d->pool));
    mb->layer = calloc((size_t)c->n_layers, sizeof *mb->layer);
    KVQ_FAIL_IF(!mb->layer, KVQ_ERR_NOMEM, "decoder: out of memory");
    KVQ_TRY(kvq_dec_bind_mat(d, &d->embed, "backbone.embeddings.weight", c->vocab_size, c->dim));
    KVQ_TRY(kvq_dec_bind_vec(d, &d->final_norm, "backbone.norm_f.weight", c->dim));
    const char *cls = kvq_model_weight(d->model, "lm_head.weight") ? "lm_head.weight" : "backbone.embeddings.weight";
    KVQ_TRY(kvq_dec_bind_mat(d, &d->cls, cls, c->vocab_size, c->dim));
    for (int l = 0; l < c->n_layers; l++) KVQ_TRY(bind_m2_layer(d, mb, l));
    KVQ_TRY(kvq_dec_alloc_state(d));
    KVQ_TRY(alloc_m2(d, mb));
    KVQ_TRY(open_state_codec(d, mb));
    /* The decoder's kvq_cache stays empty for Mamba-2; it exists so callers
     * that read cache statistics see zero K/V bytes. */
    if (d->opts.cache) {
        d->cache = d->opts.cache;
        return KVQ_OK;
    }
    int max_tokens = c->seq_len > 0 ? c->seq_len : 1;
    kvq_cache_config cc = kvq_cache_config_default(c->n_layers, c->n_heads, c->head_size, max_tokens);
    KVQ_TRY(kvq_cache_create(&cc, &d->cache));
    d->own_cache = 1;
    return KVQ_OK;
}

void kvq_mamba2_free(kvq_decoder *d)
{
    kvq_mamba2 *mb = d->mamba;
    if (!mb) return;
    for (int l = 0; mb->layer && l < d->cfg.n_layers; l++) {
        m2_layer *L = &mb->layer[l];
        float *v[] = {L->norm, L->conv_w, L->conv_b, L->dt_bias, L->A, L->D, L->gnorm, L->conv_state, L->h};
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) free(v[i]);
        free(L->in_proj.owned);
        free(L->out_proj.owned);
        free(L->h_enc);
    }
    free(mb->layer);
    float *bufs[] = {mb->zxbcdt, mb->xbc, mb->y, mb->dt, mb->cum, mb->cb};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    kvq_ctx_free(mb->state_codec);
    free(mb);
    d->mamba = NULL;
}

void kvq_mamba2_reset(kvq_decoder *d)
{
    kvq_mamba2 *mb = d->mamba;
    size_t hn = (size_t)mb->n_heads * (size_t)mb->head_dim * (size_t)mb->d_state;
    for (int l = 0; l < d->cfg.n_layers; l++) {
        memset(mb->layer[l].conv_state, 0, (size_t)(mb->kernel - 1) * (size_t)mb->conv_dim * sizeof(float));
        memset(mb->layer[l].h, 0, hn * sizeof(float));
        mb->layer[l].h_enc_n = 0;
    }
    mb->pos = 0;
}

static size_t mat_bytes(const dec_mat *m)
{
    return m->owned ? (size_t)m->rows * (size_t)m->cols * sizeof(float) : m->w->size;
}

size_t kvq_mamba2_weight_bytes(const kvq_decoder *d)
{
    const kvq_mamba2 *mb = d->mamba;
    size_t vec = (size_t)(2 * mb->dim + mb->conv_dim * (mb->kernel + 1) + 3 * mb->n_heads + mb->d_inner);
    size_t n = mat_bytes(&d->embed) + (d->cls.w != d->embed.w || d->cls.owned ? mat_bytes(&d->cls) : 0);
    for (int l = 0; l < d->cfg.n_layers; l++)
        n += mat_bytes(&mb->layer[l].in_proj) + mat_bytes(&mb->layer[l].out_proj) + vec * sizeof(float);
    return n + (size_t)mb->dim * sizeof(float);
}

size_t kvq_decoder_ssm_state_bytes(const kvq_decoder *d)
{
    if (!d || !d->mamba) return 0;
    const kvq_mamba2 *mb = d->mamba;
    size_t conv = (size_t)(mb->kernel - 1) * (size_t)mb->conv_dim * sizeof(float), n = 0;
    size_t h = (size_t)mb->n_heads * (size_t)mb->head_dim * (size_t)mb->d_state * sizeof(float);
    for (int l = 0; l < d->cfg.n_layers; l++) n += conv + (mb->layer[l].hctx ? mb->layer[l].h_enc_n : h);
    return n;
}

/* ---- the block ------------------------------------------------------------------ */
static float silu(float v) { return v / (1.0f + expf(-v)); }

static float softplus(float v) { return v > SOFTPLUS_LINEAR ? v : log1pf(expf(v)); }

/* Causal depthwise conv over nb tokens of xBC (inside zxbcdt rows), then
 * SiLU into mb->xbc; the window slides in L->conv_state. */
static void conv_silu(kvq_mamba2 *mb, m2_layer *L, int nb)
{
    int K = mb->kernel, cd = mb->conv_dim;
    for (int t = 0; t < nb; t++) {
        const float *in = mb->zxbcdt + (size_t)t * (size_t)mb->d_in_proj + mb->d_inner;
        float *out = mb->xbc + (size_t)t * (size_t)cd;
        for (int c = 0; c < cd; c++) {
            const float *w = L->conv_w + (size_t)c * (size_t)K;
            float acc = L->conv_b[c];
            for (int k = 0; k < K - 1; k++) acc += w[k] * L->conv_state[(size_t)k * (size_t)cd + (size_t)c];
            acc += w[K - 1] * in[c];
            out[c] = silu(acc);
        }
        if (K > 1) {
            memmove(L->conv_state, L->conv_state + cd, (size_t)(K - 2) * (size_t)cd * sizeof(float));
            memcpy(L->conv_state + (size_t)(K - 2) * (size_t)cd, in, (size_t)cd * sizeof(float));
        }
    }
}

/* Capture + codec for one shaped tensor per token (x, B, C, z or dt):
 * token t's values start at base + t·stride; ctx NULL: capture only. */
static kvq_err ssm_hook(kvq_decoder *d, int l, kvq_linear which, kvq_ctx *ctx, float *base, size_t stride, int nb,
                        int ndim, const int64_t *dims)
{
    int n = 1;
    for (int i = 0; i < ndim; i++) n *= (int)dims[i];
    for (int t = 0; t < nb; t++) {
        float *row = base + (size_t)t * stride;
        if (d->opts.capture) d->opts.capture(d->opts.capture_user, l, which, row, n);
        if (!ctx) continue;
        kvq_tensor view = kvq_tensor_view(KVQ_DTYPE_F32, row, ndim, dims);
        size_t used;
        KVQ_TRY(kvq_ctx_encode_payload(ctx, &view, d->act_buf, d->act_cap, &used));
        KVQ_TRY(kvq_ctx_decode_payload(ctx, d->act_buf, used, &view));
    }
    return KVQ_OK;
}

/* The SSM inputs after the conv: x, B and C (their layer's codecs).  x of
 * one token is [1][n_groups][heads per group][head_dim] (rows = heads for
 * row-wise codecs); a codec with Quamba2's switches (a `state` parameter)
 * reads 4-D tensors as [G][Hg][P][N] objects and gets x as [G][Hg][P][1]. */
static kvq_err ssm_hooks(kvq_decoder *d, int l, int nb)
{
    kvq_mamba2 *mb = d->mamba;
    kvq_ctx *xc = kvq_dec_act_ctx(d, l, KVQ_LIN_SSM_X);
    int hpg = mb->n_heads / mb->n_groups, q2 = xc && kvq_param_index(kvq_ctx_codec(xc), "state") >= 0;
    int64_t xd[4] = {q2 ? mb->n_groups : 1, q2 ? hpg : mb->n_groups, q2 ? mb->head_dim : hpg, q2 ? 1 : mb->head_dim};
    int64_t bd[3] = {1, mb->n_groups, mb->d_state};
    size_t gs = (size_t)(mb->n_groups * mb->d_state), cd = (size_t)mb->conv_dim;
    KVQ_TRY(ssm_hook(d, l, KVQ_LIN_SSM_X, xc, mb->xbc, cd, nb, 4, xd));
    KVQ_TRY(ssm_hook(d, l, KVQ_LIN_SSM_B, kvq_dec_act_ctx(d, l, KVQ_LIN_SSM_B), mb->xbc + mb->d_inner, cd, nb, 3,
                     bd));
    return ssm_hook(d, l, KVQ_LIN_SSM_C, kvq_dec_act_ctx(d, l, KVQ_LIN_SSM_C), mb->xbc + mb->d_inner + gs, cd, nb,
                    3, bd);
}

/* The in_proj outputs z, x, B, C (before the conv) and dt (raw, before
 * dt_bias): Quamba2 int8, one scale each (§4.2); x, B, C quantized here
 * are what the conv reads and what its window keeps. */
static kvq_err proj_hooks(kvq_decoder *d, int l, int nb)
{
    kvq_mamba2 *mb = d->mamba;
    int gs = mb->n_groups * mb->d_state;
    int64_t zd[2] = {1, mb->d_inner}, dd[2] = {1, mb->n_heads}, bd[2] = {1, gs};
    size_t W = (size_t)mb->d_in_proj;
    float *x = mb->zxbcdt + mb->d_inner, *B = x + mb->d_inner, *C = B + gs;
    KVQ_TRY(ssm_hook(d, l, KVQ_LIN_SSM_Z, ssm_ctx(d, l, KVQ_LIN_SSM_Z, "zdt"), mb->zxbcdt, W, nb, 2, zd));
    KVQ_TRY(ssm_hook(d, l, KVQ_LIN_SSM_XI, ssm_ctx(d, l, KVQ_LIN_SSM_XI, "xbc"), x, W, nb, 2, zd));
    KVQ_TRY(ssm_hook(d, l, KVQ_LIN_SSM_BI, ssm_ctx(d, l, KVQ_LIN_SSM_BI, "xbc"), B, W, nb, 2, bd));
    KVQ_TRY(ssm_hook(d, l, KVQ_LIN_SSM_CI, ssm_ctx(d, l, KVQ_LIN_SSM_CI, "xbc"), C, W, nb, 2, bd));
    return ssm_hook(d, l, KVQ_LIN_SSM_DT, ssm_ctx(d, l, KVQ_LIN_SSM_DT, "zdt"), C + gs, W, nb, 2, dd);
}

/* The recurrence for head h at token t of the chunk (rows t of xbc, dt, y). */
static void ssd_step(kvq_mamba2 *mb, m2_layer *L, int h, int t)
{
    int P = mb->head_dim, N = mb->d_state, H = mb->n_heads;
    int g = h / (H / mb->n_groups);
    const float *row = mb->xbc + (size_t)t * (size_t)mb->conv_dim;
    const float *x = row + (size_t)h * (size_t)P, *B = row + mb->d_inner + (size_t)g * (size_t)N;
    const float *C = row + mb->d_inner + (size_t)(mb->n_groups + g) * (size_t)N;
    float *hs = L->h + (size_t)h * (size_t)P * (size_t)N, D = L->D[h];
    float dt = mb->dt[(size_t)t * (size_t)H + (size_t)h], dA = expf(dt * L->A[h]);
    float *y = mb->y + (size_t)t * (size_t)mb->d_inner + (size_t)h * (size_t)P;
    for (int p = 0; p < P; p++) {
        float *hp = hs + (size_t)p * (size_t)N, acc = 0.0f, dx = dt * x[p];
        for (int n = 0; n < N; n++) {
            hp[n] = hp[n] * dA + dx * B[n];
            acc += hp[n] * C[n];
        }
        y[p] = acc + D * x[p];
    }
}

/* One head of the SSD scan over nb tokens: the recurrence for nb == 1,
 * the quadratic form inside the chunk otherwise (see the file comment). */
static void ssd_head(kvq_mamba2 *mb, m2_layer *L, int h, int nb)
{
    int P = mb->head_dim, N = mb->d_state, cd = mb->conv_dim, H = mb->n_heads;
    int g = h / (H / mb->n_groups);
    size_t boff = (size_t)mb->d_inner + (size_t)g * (size_t)N;
    size_t coff = (size_t)mb->d_inner + (size_t)mb->n_groups * (size_t)N + (size_t)g * (size_t)N;
    float *hs = L->h + (size_t)h * (size_t)P * (size_t)N, A = L->A[h], D = L->D[h];
    if (nb == 1) {
        ssd_step(mb, L, h, 0);
        return;
    }
    float run = 0.0f;
    for (int t = 0; t < nb; t++) {
        run += mb->dt[(size_t)t * (size_t)H + (size_t)h] * A;
        mb->cum[t] = run;
    }
    for (int t = 0; t < nb; t++) {
        const float *C = mb->xbc + (size_t)t * (size_t)cd + coff;
        for (int s = 0; s <= t; s++) {
            const float *B = mb->xbc + (size_t)s * (size_t)cd + boff;
            float cbv = 0.0f;
            for (int n = 0; n < N; n++) cbv += C[n] * B[n];
            mb->cb[t * nb + s] = cbv * expf(mb->cum[t] - mb->cum[s]) * mb->dt[(size_t)s * (size_t)H + (size_t)h];
        }
        float *y = mb->y + (size_t)t * (size_t)mb->d_inner + (size_t)h * (size_t)P;
        const float *x = mb->xbc + (size_t)t * (size_t)cd + (size_t)h * (size_t)P;
        float decay = expf(mb->cum[t]);
        for (int p = 0; p < P; p++) {
            const float *hp = hs + (size_t)p * (size_t)N;
            float acc = 0.0f, inter = 0.0f;
            for (int n = 0; n < N; n++) inter += C[n] * hp[n];
            for (int s = 0; s <= t; s++)
                acc += mb->cb[t * nb + s] * mb->xbc[(size_t)s * (size_t)cd + (size_t)h * (size_t)P + (size_t)p];
            y[p] = acc + decay * inter + D * x[p];
        }
    }
    /* State at the end of the chunk. */
    float last = mb->cum[nb - 1], total = expf(last);
    for (int p = 0; p < P; p++) {
        float *hp = hs + (size_t)p * (size_t)N;
        for (int n = 0; n < N; n++) hp[n] *= total;
        for (int s = 0; s < nb; s++) {
            const float *B = mb->xbc + (size_t)s * (size_t)cd + boff;
            float w = expf(last - mb->cum[s]) * mb->dt[(size_t)s * (size_t)H + (size_t)h] *
                      mb->xbc[(size_t)s * (size_t)cd + (size_t)h * (size_t)P + (size_t)p];
            for (int n = 0; n < N; n++) hp[n] += w * B[n];
        }
    }
}

/* y·SiLU(z), RMSNorm over d_inner, times the gated-norm weight (in mb->y). */
static void gated_norm(kvq_mamba2 *mb, const m2_layer *L, int nb)
{
    int E = mb->d_inner;
    for (int t = 0; t < nb; t++) {
        float *y = mb->y + (size_t)t * (size_t)E;
        const float *z = mb->zxbcdt + (size_t)t * (size_t)mb->d_in_proj;
        float ss = 0.0f;
        for (int i = 0; i < E; i++) {
            y[i] *= silu(z[i]);
            ss += y[i] * y[i];
        }
        float r = 1.0f / sqrtf(ss / (float)E + GNORM_EPS);
        for (int i = 0; i < E; i++) y[i] = L->gnorm[i] * (y[i] * r);
    }
}

static kvq_err state_load(m2_layer *L)
{
    if (!L->hctx || !L->h_enc_n) return KVQ_OK;
    kvq_tensor v = kvq_tensor_view(KVQ_DTYPE_F32, L->h, L->h_shape.ndim, L->h_shape.dim);
    return kvq_ctx_decode_payload(L->hctx, L->h_enc, L->h_enc_n, &v);
}

static kvq_err state_store(m2_layer *L)
{
    kvq_tensor v = kvq_tensor_view(KVQ_DTYPE_F32, L->h, L->h_shape.ndim, L->h_shape.dim);
    return kvq_ctx_encode_payload(L->hctx, &v, L->h_enc, L->h_cap, &L->h_enc_n);
}

static kvq_err mixer(kvq_decoder *d, int l, int nb)
{
    kvq_mamba2 *mb = d->mamba;
    m2_layer *L = &mb->layer[l];
    size_t W = (size_t)d->wide, dim = (size_t)mb->dim, H = (size_t)mb->n_heads;
    for (int t = 0; t < nb; t++) kvq_dec_rmsnorm(d->xb + t * W, d->x + t * dim, L->norm, mb->dim, d->cfg.norm_eps);
    KVQ_TRY(kvq_dec_act_hook(d, l, KVQ_LIN_QKV, d->xb, W, nb, mb->dim));
    KVQ_TRY(kvq_dec_matmul(d, d->xb, W, nb, &L->in_proj, mb->zxbcdt, (size_t)mb->d_in_proj));
    KVQ_TRY(proj_hooks(d, l, nb));
    conv_silu(mb, L, nb);
    KVQ_TRY(ssm_hooks(d, l, nb));
    for (int t = 0; t < nb; t++)
        for (size_t h = 0; h < H; h++) {
            float raw = mb->zxbcdt[(size_t)t * (size_t)mb->d_in_proj + (size_t)(mb->d_inner + mb->conv_dim) + h];
            mb->dt[(size_t)t * H + h] = softplus(raw + L->dt_bias[h]);
        }
    KVQ_TRY(state_load(L));
    if (L->hctx) {
        /* An encoded state is stored after every token, as decoding keeps
         * it, so a teacher-forced run sees the error generation sees. */
        for (int t = 0; t < nb; t++) {
            for (int h = 0; h < mb->n_heads; h++) ssd_step(mb, L, h, t);
            KVQ_TRY(state_store(L));
            KVQ_TRY(state_load(L));
        }
    } else {
        for (int h = 0; h < mb->n_heads; h++) ssd_head(mb, L, h, nb);
    }
    if (d->opts.capture) /* the state at the chunk's end (calibration of static state scales) */
        d->opts.capture(d->opts.capture_user, l, KVQ_LIN_SSM_H, L->h, mb->n_heads * mb->head_dim * mb->d_state);
    gated_norm(mb, L, nb);
    KVQ_TRY(kvq_dec_act_hook(d, l, KVQ_LIN_O, mb->y, (size_t)mb->d_inner, nb, mb->d_inner));
    KVQ_TRY(kvq_dec_matmul(d, mb->y, (size_t)mb->d_inner, nb, &L->out_proj, d->xb2, W));
    for (int t = 0; t < nb; t++)
        for (size_t i = 0; i < dim; i++) d->x[t * dim + i] += d->xb2[t * W + i];
    return KVQ_OK;
}

kvq_err kvq_mamba2_forward(kvq_decoder *d, const int *tokens, int nb, int pos0, int want_logits)
{
    kvq_mamba2 *mb = d->mamba;
    KVQ_FAIL_IF(pos0 != 0 && pos0 != mb->pos, KVQ_ERR_ARG,
                "decoder: Mamba-2 position %d but its state holds %d tokens (an SSM restarts at 0 only)", pos0,
                mb->pos);
    if (pos0 == 0) kvq_mamba2_reset(d);
    KVQ_TRY(kvq_dec_embed(d, tokens, nb));
    for (int l = 0; l < d->cfg.n_layers; l++) KVQ_TRY(mixer(d, l, nb));
    mb->pos += nb;
    if (!want_logits) return KVQ_OK;
    size_t dim = (size_t)mb->dim;
    for (int t = 0; t < nb; t++) kvq_dec_rmsnorm(d->x + t * dim, d->x + t * dim, d->final_norm, mb->dim, d->cfg.norm_eps);
    KVQ_TRY(kvq_dec_act_hook(d, d->cfg.n_layers, KVQ_LIN_CLS, d->x, dim, nb, mb->dim));
    return kvq_dec_matmul(d, d->x, dim, nb, &d->cls, d->logits, (size_t)d->cfg.vocab_size);
}

kvq_err kvq_mamba2_state(const kvq_decoder *d, int layer, float *h)
{
    KVQ_FAIL_IF(!d || !d->mamba || !h, KVQ_ERR_ARG, "kvq_mamba2_state: not a Mamba-2 decoder, or NULL h");
    KVQ_FAIL_IF(layer < 0 || layer >= d->cfg.n_layers, KVQ_ERR_ARG, "kvq_mamba2_state: layer %d of %d", layer,
                d->cfg.n_layers);
    const kvq_mamba2 *mb = d->mamba;
    size_t n = (size_t)mb->n_heads * (size_t)mb->head_dim * (size_t)mb->d_state;
    memcpy(h, mb->layer[layer].h, n * sizeof *h);
    return KVQ_OK;
}

/* ---- offline rearrangement (Quamba2 §4.4) ------------------------------------------ */
static void permute_f(float *v, const int *src, int n, size_t stride, float *tmp)
{
    for (int i = 0; i < n; i++) memcpy(tmp + (size_t)i * stride, v + (size_t)src[i] * stride, stride * sizeof *tmp);
    memcpy(v, tmp, (size_t)n * stride * sizeof *v);
}

static kvq_err check_perms(const kvq_mamba2 *mb, const int *head_perm, const int *chan_perm, int *src)
{
    int H = mb->n_heads, P = mb->head_dim, per = H / mb->n_groups;
    char *seen = calloc((size_t)(H > P ? H : P), 1);
    KVQ_FAIL_IF(!seen, KVQ_ERR_NOMEM, "reorder: out of memory");
    kvq_err e = KVQ_OK;
    for (int k = 0; !e && k < H; k++) {
        int h = head_perm[k];
        if (h < 0 || h >= H || seen[h] || h / per != k / per)
            e = KVQ_ERROR(KVQ_ERR_ARG, "reorder: head slot %d takes head %d (not a bijection inside SSD groups)", k, h);
        else seen[h] = 1;
    }
    for (int h = 0; !e && h < H; h++) {
        memset(seen, 0, (size_t)P);
        for (int j = 0; !e && j < P; j++) {
            int c = chan_perm[h * P + j];
            if (c < 0 || c >= P || seen[c]) e = KVQ_ERROR(KVQ_ERR_ARG, "reorder: head %d channel slot %d takes %d", h, j, c);
            else seen[c] = 1;
        }
    }
    for (int k = 0; !e && k < H; k++)
        for (int j = 0; j < P; j++) src[k * P + j] = head_perm[k] * P + chan_perm[head_perm[k] * P + j];
    free(seen);
    return e;
}

kvq_err kvq_mamba2_reorder(kvq_decoder *d, int layer, const int *head_perm, const int *chan_perm)
{
    KVQ_FAIL_IF(!d || !d->mamba || !head_perm || !chan_perm, KVQ_ERR_ARG, "reorder: not a Mamba-2 decoder");
    kvq_mamba2 *mb = d->mamba;
    KVQ_FAIL_IF(layer < 0 || layer >= d->cfg.n_layers, KVQ_ERR_ARG, "reorder: layer %d", layer);
    KVQ_FAIL_IF(mb->pos != 0, KVQ_ERR_ARG, "reorder: the state holds %d tokens (reset first)", mb->pos);
    m2_layer *L = &mb->layer[layer];
    int E = mb->d_inner, H = mb->n_heads, K = mb->kernel, dim = mb->dim;
    int *src = malloc((size_t)E * sizeof *src);
    float *tmp = malloc((size_t)E * (size_t)(dim > K ? dim : K) * sizeof *tmp);
    kvq_err e = !src || !tmp ? KVQ_ERROR(KVQ_ERR_NOMEM, "reorder: out of memory") : KVQ_OK;
    if (!e) e = check_perms(mb, head_perm, chan_perm, src);
    if (!e) e = kvq_dec_mat_own(&L->in_proj);
    if (!e) e = kvq_dec_mat_own(&L->out_proj);
    if (!e) {
        float *w = L->in_proj.owned;
        permute_f(w, src, E, (size_t)dim, tmp);                         /* z rows   */
        permute_f(w + (size_t)E * (size_t)dim, src, E, (size_t)dim, tmp); /* x rows */
        permute_f(w + (size_t)(E + mb->conv_dim) * (size_t)dim, head_perm, H, (size_t)dim, tmp); /* dt */
        permute_f(L->conv_w, src, E, (size_t)K, tmp);
        permute_f(L->conv_b, src, E, 1, tmp);
        permute_f(L->gnorm, src, E, 1, tmp);
        float *hv[3] = {L->A, L->D, L->dt_bias};
        for (int i = 0; i < 3; i++) permute_f(hv[i], head_perm, H, 1, tmp);
        float *o = L->out_proj.owned; /* (dim, E): columns follow the channels */
        for (int r = 0; r < dim; r++) permute_f(o + (size_t)r * (size_t)E, src, E, 1, tmp);
    }
    free(src);
    free(tmp);
    return e;
}
