/*
 * eval_driver.c — teacher-forced evaluation of a candidate model against
 * the f32 model on the same tokens, in llama-perplexity's chunked mode
 * (quant-methods.md §7.1; cache-methods.md §8 "chunked" mode):
 *
 *   - the token stream (BOS + text) is cut into floor(n / ctx) chunks;
 *   - each chunk starts from an empty KV cache and its first token is
 *     replaced by BOS, as llama-perplexity does when the vocabulary adds BOS;
 *   - every token of the chunk is run through the decoder one position at a
 *     time, so the scored positions attend to K/V that went through the
 *     candidate cache's codecs (sealed pages are encoded as they fill);
 *   - logits at positions first = ctx/2 .. ctx−2 are scored against the
 *     next token: ctx − 1 − ctx/2 tokens per chunk (255 for ctx = 512).
 *
 * The base run's scored logits are kept (kvq_eval_base) so a grid of
 * candidates is compared against one base run.  Sizes are measured: weight
 * bytes from the models, KV bytes from the candidate cache's stats on a
 * full chunk.  Statistics: libkvq/eval.c.
 */
#include "kvq_internal.h"
#include "quant/fp_joint.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

#define DEFAULT_CTX_CAP 512   /* llama-perplexity's default n_ctx              */
#define MIN_CTX 4             /* first = ctx/2 must leave one scored position */
#define DEFAULT_KV_PAGE 32    /* candidate cache page when none is given      */
#define F32_BYTES 4.0
#define F16_BYTES 2.0

struct kvq_eval_base {
    const kvq_model *model;
    int       ctx, n_chunks, first, n_scored; /* n_scored per chunk         */
    int       vocab;
    uint64_t  n_text_tokens;
    int      *tokens;       /* [n_chunks][ctx], first token of each = BOS   */
    float    *logits;       /* [n_chunks][n_scored][vocab]                  */
};

void kvq_eval_opts_init(kvq_eval_opts *o)
{
    if (o) memset(o, 0, sizeof *o);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A decoder whose own cache holds one chunk, with the candidate's hooks. */
static kvq_err open_decoder(const kvq_model *m, const kvq_eval_opts *o, int ctx, int candidate,
                            kvq_ctx *const *act, kvq_ctx *const *act_layer, kvq_decoder **out)
{
    const kvq_model_config *c = kvq_model_config_get(m);
    kvq_cache_config cc = kvq_cache_config_default(c->n_layers, c->n_kv_heads, c->head_size, ctx);
    kvq_decoder_opts d;
    kvq_decoder_opts_init(&d);
    d.threads = o->threads;
    if (candidate) {
        if (o->kv_k_spec || o->kv_v_spec) {
            cc.k_spec = o->kv_k_spec;
            cc.v_spec = o->kv_v_spec;
            cc.window = o->kv_window;
            cc.page = o->kv_page > 0 ? o->kv_page : DEFAULT_KV_PAGE;
            cc.keep_decoded = o->kv_keep_decoded;
        }
        if (o->kv_depth) { /* "NAME[:ARG]": the policy parses ARG in its init */
            char name[32];
            const char *colon = strchr(o->kv_depth, ':');
            size_t n = colon ? (size_t)(colon - o->kv_depth) : strlen(o->kv_depth);
            snprintf(name, sizeof name, "%.*s", (int)n, o->kv_depth);
            cc.depth = kvq_depth_policy_find(name);
            cc.depth_arg = colon ? colon + 1 : NULL;
            KVQ_FAIL_IF(!cc.depth, KVQ_ERR_ARG, "eval: unknown depth policy '%s'", o->kv_depth);
        }
        for (int i = 0; i < KVQ_LIN__COUNT; i++) d.act[i] = act ? act[i] : NULL;
        d.act_layer = act_layer;
    }
    d.cache_cfg = &cc;
    return kvq_decoder_create(m, &d, out);
}

/* Runs chunk `ci` through `d`; row j of `scored` = logits at position
 * first + j.  `all` is scratch for [ctx][vocab]. */
static kvq_err run_chunk(const kvq_eval_base *b, kvq_decoder *d, int ci, float *all, float *scored)
{
    KVQ_TRY(kvq_decoder_reset(d));
    KVQ_TRY(kvq_decoder_forward_seq(d, b->tokens + (size_t)ci * (size_t)b->ctx, b->ctx - 1, 0, all));
    memcpy(scored, all + (size_t)b->first * (size_t)b->vocab,
           (size_t)b->n_scored * (size_t)b->vocab * sizeof *scored);
    return KVQ_OK;
}

static kvq_err plan_chunks(kvq_eval_base *b, const kvq_model_config *c, size_t n, const kvq_eval_opts *o)
{
    int ctx = o->ctx > 0 ? o->ctx : (c->seq_len < DEFAULT_CTX_CAP ? c->seq_len : DEFAULT_CTX_CAP);
    KVQ_FAIL_IF(ctx < MIN_CTX || ctx > c->seq_len, KVQ_ERR_ARG,
                "eval: context %d outside [%d, %d] (the model's seq_len)", ctx, MIN_CTX, c->seq_len);
    size_t chunks = n / (size_t)ctx;
    KVQ_FAIL_IF(chunks == 0, KVQ_ERR_ARG,
                "eval: the text gives %zu tokens, which do not fill one chunk of %d (use a smaller ctx)", n, ctx);
    if (o->max_chunks > 0 && chunks > (size_t)o->max_chunks) chunks = (size_t)o->max_chunks;
    KVQ_FAIL_IF(chunks > INT32_MAX / (size_t)ctx, KVQ_ERR_ARG, "eval: %zu chunks is too many", chunks);
    b->ctx = ctx;
    b->n_chunks = (int)chunks;
    b->first = ctx / 2;
    b->n_scored = ctx - 1 - b->first;
    b->vocab = c->vocab_size;
    b->n_text_tokens = n;
    return KVQ_OK;
}

static kvq_err fill_base(kvq_eval_base *b, const int *tokens, const kvq_eval_opts *o)
{
    size_t ntok = (size_t)b->n_chunks * (size_t)b->ctx, nlog, per;
    KVQ_FAIL_IF(kvq_mul_ov((size_t)b->n_scored, (size_t)b->vocab, &per) ||
                    kvq_mul_ov(per, (size_t)b->n_chunks, &nlog) || nlog > SIZE_MAX / sizeof(float),
                KVQ_ERR_NOMEM, "eval: base logits for %d chunks are too large", b->n_chunks);
    b->tokens = malloc(ntok * sizeof *b->tokens);
    b->logits = malloc(nlog * sizeof *b->logits);
    float *all = malloc((size_t)b->ctx * (size_t)b->vocab * sizeof *all);
    kvq_decoder *d = NULL;
    kvq_err e = !b->tokens || !b->logits || !all
                    ? KVQ_ERROR(KVQ_ERR_NOMEM, "eval: out of memory for %zu base logits", nlog)
                    : open_decoder(b->model, o, b->ctx, 0, NULL, NULL, &d);
    if (!e) {
        memcpy(b->tokens, tokens, ntok * sizeof *b->tokens);
        for (int ci = 0; ci < b->n_chunks; ci++) b->tokens[(size_t)ci * (size_t)b->ctx] = KVQ_TOKEN_BOS;
    }
    for (int ci = 0; !e && ci < b->n_chunks; ci++) {
        e = run_chunk(b, d, ci, all, b->logits + (size_t)ci * per);
        if (!e && o->progress) o->progress(o->user, ci + 1, b->n_chunks);
    }
    kvq_decoder_free(d);
    free(all);
    return e;
}

kvq_err kvq_eval_base_create(const kvq_model *base, const int *tokens, size_t n, const kvq_eval_opts *o,
                             kvq_eval_base **out)
{
    KVQ_FAIL_IF(!base || !o || !out || (!tokens && n), KVQ_ERR_ARG, "kvq_eval_base_create: NULL argument");
    *out = NULL;
    const kvq_model_config *c = kvq_model_config_get(base);
    for (size_t i = 0; i < n; i++)
        KVQ_FAIL_IF(tokens[i] < 0 || tokens[i] >= c->vocab_size, KVQ_ERR_ARG,
                    "eval: token %d at position %zu outside the vocabulary of %d", tokens[i], i, c->vocab_size);
    kvq_eval_base *b = calloc(1, sizeof *b);
    KVQ_FAIL_IF(!b, KVQ_ERR_NOMEM, "eval: out of memory");
    b->model = base;
    kvq_err e = plan_chunks(b, c, n, o);
    if (!e) e = fill_base(b, tokens, o);
    if (e) {
        kvq_eval_base_free(b);
        return e;
    }
    *out = b;
    return KVQ_OK;
}

void kvq_eval_base_free(kvq_eval_base *b)
{
    if (!b) return;
    free(b->tokens);
    free(b->logits);
    free(b);
}

/* Σ stored bytes and Σ values over every weight. */
static void weight_totals(const kvq_model *m, uint64_t *bytes, uint64_t *values)
{
    *bytes = *values = 0;
    for (size_t i = 0; i < kvq_model_n_weights(m); i++) {
        const kvq_weight *w = kvq_model_weight_at(m, i);
        *bytes += w->size;
        *values += (uint64_t)kvq_shape_numel(&w->shape);
    }
}

static kvq_err check_same_config(const kvq_model *a, const kvq_model *b)
{
    const kvq_model_config *x = kvq_model_config_get(a), *y = kvq_model_config_get(b);
    KVQ_FAIL_IF(x->dim != y->dim || x->n_layers != y->n_layers || x->n_heads != y->n_heads ||
                    x->n_kv_heads != y->n_kv_heads || x->vocab_size != y->vocab_size || x->seq_len != y->seq_len,
                KVQ_ERR_ARG, "eval: candidate model (dim %d, %d layers, vocab %d) differs from the base "
                "(dim %d, %d layers, vocab %d)", y->dim, y->n_layers, y->vocab_size, x->dim, x->n_layers,
                x->vocab_size);
    return KVQ_OK;
}

/* Sizes: weights from both models, KV from the candidate cache (full chunk). */
static kvq_err measure(const kvq_eval_base *b, const kvq_model *cand, kvq_decoder *d, kvq_eval_result *r)
{
    uint64_t values;
    weight_totals(b->model, &r->weight_bytes_base, &values);
    weight_totals(cand, &r->weight_bytes_q, &r->n_weights);
    r->bpw_base = values ? 8.0 * (double)r->weight_bytes_base / (double)values : 0;
    r->bpw_q = r->n_weights ? 8.0 * (double)r->weight_bytes_q / (double)r->n_weights : 0;
    kvq_cache_stats st;
    KVQ_TRY(kvq_cache_stats_get(kvq_decoder_cache(d), &st));
    const kvq_model_config *c = kvq_model_config_get(cand);
    int held = kvq_cache_len(kvq_decoder_cache(d), 0);
    double values_per_token = 2.0 * c->n_layers * (double)c->n_kv_heads * (double)c->head_size;
    r->kv_bytes_per_token = held > 0 ? (double)st.bytes_total / held : 0;
    r->kv_bytes_per_token_f32 = values_per_token * F32_BYTES;
    r->kv_ratio_f32 = r->kv_bytes_per_token > 0 ? r->kv_bytes_per_token_f32 / r->kv_bytes_per_token : 0;
    r->kv_ratio_f16 = r->kv_bytes_per_token > 0 ? values_per_token * F16_BYTES / r->kv_bytes_per_token : 0;
    r->kv_bits_per_value = st.bits_per_value;
    r->kv_retained_fraction = st.depth_vectors ? (double)st.depth_retained / (double)st.depth_vectors : 0;
    return KVQ_OK;
}

/* Bits per value of the activation codec over one row of every Llama
 * linear input (QKV, O, GATEUP: dim; DOWN: hidden_dim; CLS: dim). */
static double act_bits(const kvq_model *m, kvq_ctx *const *act)
{
    const kvq_model_config *c = kvq_model_config_get(m);
    static const kvq_linear kinds[] = {KVQ_LIN_QKV, KVQ_LIN_O, KVQ_LIN_GATEUP, KVQ_LIN_DOWN, KVQ_LIN_CLS};
    double bytes = 0, values = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        int64_t dims[2] = {1, kinds[i] == KVQ_LIN_DOWN ? c->hidden_dim : c->dim};
        kvq_shape s = kvq_shape_make(2, dims);
        bytes += act[kinds[i]] ? (double)kvq_ctx_payload_bound(act[kinds[i]], &s) : F32_BYTES * (double)dims[1];
        values += (double)dims[1];
    }
    return values > 0 ? 8.0 * bytes / values : 0;
}

static kvq_err open_act(const char *spec, kvq_ctx **act)
{
    for (int i = 0; spec && i < KVQ_LIN__COUNT; i++) {
        kvq_err e = kvq_ctx_create(spec, &act[i]);
        if (e) {
            kvq_error_prefix("eval: --act");
            return e;
        }
    }
    return KVQ_OK;
}

/* A calibrated activation codec gets one context per (layer, input),
 * calibrated on that input's captured rows; *out stays NULL for codecs
 * that learn nothing or when no calibration data is given.  An fpa
 * context whose input feeds fp:rounds=N weights then takes the joint
 * search's activation result against base's f32 weights
 * (quant/fp_joint.c). */
static kvq_err open_act_layers(const kvq_model *base, const kvq_model *m, const kvq_eval_opts *o, kvq_ctx ***out)
{
    *out = NULL;
    const kvq_codec *c = NULL;
    kvq_params p;
    if (!o->act_spec) return KVQ_OK;
    KVQ_TRY(kvq_spec_parse(o->act_spec, &c, &p));
    if (!c->calibrate) return KVQ_OK;
    KVQ_FAIL_IF(!o->calib && (c->flags & KVQ_FLAG_NEEDS_CALIB), KVQ_ERR_ARG,
                "eval: activation codec %s needs calibration data (--calib FILE)", c->name);
    if (!o->calib) return KVQ_OK;
    int n = (kvq_model_config_get(m)->n_layers + 1) * KVQ_LIN__COUNT;
    kvq_ctx **a = calloc((size_t)n, sizeof *a);
    KVQ_FAIL_IF(!a, KVQ_ERR_NOMEM, "eval: out of memory");
    *out = a;
    for (int k = 0; k < n; k++) {
        kvq_tensor x;
        kvq_err e = kvq_calib_input(o->calib, k / KVQ_LIN__COUNT, (kvq_linear)(k % KVQ_LIN__COUNT), &x);
        if (e == KVQ_ERR_NOT_FOUND) continue;
        KVQ_TRY(e);
        KVQ_TRY(kvq_ctx_create_params(c, &p, &a[k]));
        KVQ_TRY(kvq_ctx_calibrate(a[k], &x));
        KVQ_TRY(kvq_fpj_fit_act_ctx(a[k], &x, base, m, k / KVQ_LIN__COUNT, (kvq_linear)(k % KVQ_LIN__COUNT)));
    }
    return KVQ_OK;
}

static void free_act_layers(const kvq_model *m, kvq_ctx **a)
{
    int n = (kvq_model_config_get(m)->n_layers + 1) * KVQ_LIN__COUNT;
    for (int k = 0; a && k < n; k++) kvq_ctx_free(a[k]);
    free(a);
}

/* Scores every chunk of the candidate into acc. */
static kvq_err score_chunks(const kvq_eval_base *b, kvq_decoder *d, const kvq_eval_opts *o, kvq_eval_acc *acc)
{
    size_t per = (size_t)b->n_scored * (size_t)b->vocab;
    float *all = malloc((size_t)b->ctx * (size_t)b->vocab * sizeof *all), *q = malloc(per * sizeof *q);
    kvq_err e = !all || !q ? KVQ_ERROR(KVQ_ERR_NOMEM, "eval: out of memory for candidate logits") : KVQ_OK;
    for (int ci = 0; !e && ci < b->n_chunks; ci++) {
        e = run_chunk(b, d, ci, all, q);
        const int *tok = b->tokens + (size_t)ci * (size_t)b->ctx;
        const float *base = b->logits + (size_t)ci * per;
        for (int j = 0; !e && j < b->n_scored; j++) {
            kvq_eval_token t;
            size_t row = (size_t)j * (size_t)b->vocab;
            e = kvq_eval_compare(base + row, q + row, b->vocab, tok[b->first + j + 1], &t);
            if (!e) e = kvq_eval_acc_add(acc, &t);
        }
        if (!e && o->progress) o->progress(o->user, ci + 1, b->n_chunks);
    }
    free(all);
    free(q);
    return e;
}

kvq_err kvq_eval_candidate(const kvq_eval_base *b, const kvq_model *cand, const kvq_eval_opts *o,
                           kvq_eval_result *r)
{
    KVQ_FAIL_IF(!b || !cand || !o || !r, KVQ_ERR_ARG, "kvq_eval_candidate: NULL argument");
    memset(r, 0, sizeof *r);
    KVQ_TRY(check_same_config(b->model, cand));
    double t0 = now_s();
    kvq_ctx *act[KVQ_LIN__COUNT] = {NULL};
    kvq_decoder *d = NULL;
    kvq_eval_acc *acc = NULL;
    kvq_ctx **act_layer = NULL;
    kvq_err e = open_act(o->act_spec, act);
    if (!e) e = open_act_layers(b->model, cand, o, &act_layer);
    if (!e) e = open_decoder(cand, o, b->ctx, 1, act, act_layer, &d);
    if (!e) e = kvq_eval_acc_create(&acc);
    if (!e) e = score_chunks(b, d, o, acc);
    if (!e) e = kvq_eval_summarize(acc, &r->s);
    if (!e) e = measure(b, cand, d, r);
    if (!e) r->act_bits_per_value = act_bits(cand, act);
    r->ctx = b->ctx;
    r->n_chunks = b->n_chunks;
    r->n_text_tokens = b->n_text_tokens;
    r->seconds = now_s() - t0;
    kvq_eval_acc_free(acc);
    kvq_decoder_free(d);
    for (int i = 0; i < KVQ_LIN__COUNT; i++) kvq_ctx_free(act[i]);
    free_act_layers(cand, act_layer);
    return e;
}

kvq_err kvq_eval_run(const kvq_model *base, const kvq_model *cand, const int *tokens, size_t n,
                     const kvq_eval_opts *o, kvq_eval_result *r)
{
    kvq_eval_base *b = NULL;
    KVQ_TRY(kvq_eval_base_create(base, tokens, n, o, &b));
    kvq_err e = kvq_eval_candidate(b, cand, o, r);
    kvq_eval_base_free(b);
    return e;
}
