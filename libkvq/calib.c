/*
 * calib.c — calibration data for codecs that learn from activations
 * (quant-methods.md §0 "layer reconstruction", §1.4 "calibration data",
 * §2.3 data-driven NUPES).
 *
 * The f32 model runs over calibration tokens once; the decoder's capture
 * hook copies each linear input row (QKV, O, GATEUP, DOWN per layer, and
 * the classifier's input) into a per-input matrix X [tokens][width].  As in
 * LLM-FP4's released code, every layer is later calibrated on the
 * full-precision model's inputs (no sequential error propagation).  Rows
 * stop being kept after max_tokens; a slot's rows grow as they arrive
 * (doubling), so an input captured once per chunk (the SSM state, whose
 * rows are large) holds only what it received.
 *
 * Weight names map onto linear inputs by the canonical GGUF-style names
 * (kvq.h "models"): blk.N.attn_{q,k,v}.weight read QKV of layer N, and so
 * on; the classifier (output.weight, or token_embd.weight when tied) reads
 * the final-norm output.
 */
#include "kvq_internal.h"

#include <stdlib.h>

#define CALIB_NAME_MAX 64   /* longest suffix compared in a weight name */

struct kvq_calib {
    kvq_model_config cfg;
    int     max_tokens;     /* rows kept per input                        */
    int     n_slots;        /* (n_layers + 1) · KVQ_LIN__COUNT              */
    int    *rows;           /* [n_slots] rows captured                    */
    int    *width;          /* [n_slots] values per row (0: unused slot)  */
    int    *cap;            /* [n_slots] rows allocated (<= max_tokens)   */
    float **x;              /* [n_slots] [cap][width], NULL until a row   */
    kvq_err err;            /* first capture error                        */
};

static int slot_width(const kvq_model_config *c, int layer, kvq_linear which)
{
    if (layer == c->n_layers) return which == KVQ_LIN_CLS ? c->dim : 0;
    int mamba = c->arch == KVQ_ARCH_MAMBA2;
    switch (which) {
    case KVQ_LIN_QKV: return c->dim;
    case KVQ_LIN_GATEUP: return mamba ? 0 : c->dim;
    case KVQ_LIN_O: return c->n_heads * c->head_size;
    case KVQ_LIN_DOWN: return mamba ? 0 : c->hidden_dim;
    case KVQ_LIN_SSM_X: return mamba ? c->hidden_dim : 0;
    case KVQ_LIN_SSM_B:
    case KVQ_LIN_SSM_C: return mamba ? c->ssm_groups * c->ssm_state : 0;
    case KVQ_LIN_SSM_Z: return mamba ? c->hidden_dim : 0;
    case KVQ_LIN_SSM_DT: return mamba ? c->n_heads : 0;
    case KVQ_LIN_SSM_H: return mamba ? c->n_heads * c->head_size * c->ssm_state : 0;
    case KVQ_LIN_SSM_XI: return mamba ? c->hidden_dim : 0;
    case KVQ_LIN_SSM_BI:
    case KVQ_LIN_SSM_CI: return mamba ? c->ssm_groups * c->ssm_state : 0;
    case KVQ_LIN_CLS:
    case KVQ_LIN__COUNT: break;
    }
    return 0;
}

#define CALIB_ROWS_FIRST 64 /* rows allocated at a slot's first capture */

/* Room for more rows of slot s (doubling, capped at max_tokens); sets
 * c->err on failure. */
static int grow(kvq_calib *c, int s)
{
    int want = c->cap[s] ? 2 * c->cap[s] : CALIB_ROWS_FIRST;
    if (want > c->max_tokens) want = c->max_tokens;
    float *p = realloc(c->x[s], (size_t)want * (size_t)c->width[s] * sizeof *p);
    if (!p) {
        c->err = KVQ_ERROR(KVQ_ERR_NOMEM, "calib: out of memory for %d x %d calibration rows", want, c->width[s]);
        return -1;
    }
    c->x[s] = p;
    c->cap[s] = want;
    return 0;
}

static void capture(void *user, int layer, kvq_linear which, const float *x, int n)
{
    kvq_calib *c = user;
    if (layer < 0 || layer > c->cfg.n_layers || (int)which < 0 || which >= KVQ_LIN__COUNT) return;
    int s = layer * KVQ_LIN__COUNT + (int)which;
    if (!c->width[s] || c->rows[s] >= c->max_tokens || c->err) return;
    if (n != c->width[s]) {
        c->err = KVQ_ERROR(KVQ_ERR_SHAPE, "calib: layer %d input %d has %d values, expected %d", layer,
                           (int)which, n, c->width[s]);
        return;
    }
    if (c->rows[s] == c->cap[s] && grow(c, s)) return;
    memcpy(c->x[s] + (size_t)c->rows[s] * (size_t)n, x, (size_t)n * sizeof *x);
    c->rows[s]++;
}

static kvq_err alloc_slots(kvq_calib *c)
{
    c->n_slots = (c->cfg.n_layers + 1) * KVQ_LIN__COUNT;
    c->rows = calloc((size_t)c->n_slots, sizeof *c->rows);
    c->width = calloc((size_t)c->n_slots, sizeof *c->width);
    c->cap = calloc((size_t)c->n_slots, sizeof *c->cap);
    c->x = calloc((size_t)c->n_slots, sizeof *c->x);
    KVQ_FAIL_IF(!c->rows || !c->width || !c->cap || !c->x, KVQ_ERR_NOMEM, "calib: out of memory");
    for (int s = 0; s < c->n_slots; s++)
        c->width[s] = slot_width(&c->cfg, s / KVQ_LIN__COUNT, (kvq_linear)(s % KVQ_LIN__COUNT));
    return KVQ_OK;
}

/* Runs the model over the first `want` tokens in pieces of seq_len, each
 * from position 0 with BOS first (the evaluator's convention). */
static kvq_err run(kvq_calib *c, kvq_decoder *d, const int *tokens, size_t want)
{
    int piece = c->cfg.seq_len;
    float *logits = malloc((size_t)piece * (size_t)c->cfg.vocab_size * sizeof *logits);
    int *buf = malloc((size_t)piece * sizeof *buf);
    kvq_err e = !logits || !buf ? KVQ_ERROR(KVQ_ERR_NOMEM, "calib: out of memory") : KVQ_OK;
    for (size_t off = 0; !e && off < want; off += (size_t)piece) {
        int len = want - off < (size_t)piece ? (int)(want - off) : piece;
        memcpy(buf, tokens + off, (size_t)len * sizeof *buf);
        buf[0] = KVQ_TOKEN_BOS;
        e = kvq_decoder_reset(d);
        if (!e) e = kvq_decoder_forward_seq(d, buf, len, 0, logits);
        if (!e && c->err) e = c->err;
    }
    free(logits);
    free(buf);
    return e;
}

kvq_err kvq_calib_create(const kvq_model *m, const int *tokens, size_t n, int max_tokens, int threads,
                         kvq_calib **out)
{
    KVQ_FAIL_IF(!m || !tokens || !out, KVQ_ERR_ARG, "kvq_calib_create: NULL argument");
    *out = NULL;
    const kvq_model_config *cfg = kvq_model_config_get(m);
    KVQ_FAIL_IF(n < 2, KVQ_ERR_ARG, "calib: %zu calibration tokens (need at least 2)", n);
    kvq_calib *c = calloc(1, sizeof *c);
    KVQ_FAIL_IF(!c, KVQ_ERR_NOMEM, "calib: out of memory");
    c->cfg = *cfg;
    c->max_tokens = max_tokens > 0 ? max_tokens : KVQ_CALIB_TOKENS_DEFAULT;
    size_t want = n < (size_t)c->max_tokens ? n : (size_t)c->max_tokens;
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    o.threads = threads;
    o.capture = capture;
    o.capture_user = c;
    kvq_decoder *d = NULL;
    kvq_err e = alloc_slots(c);
    if (!e) e = kvq_decoder_create(m, &o, &d);
    if (!e) e = run(c, d, tokens, want);
    kvq_decoder_free(d);
    if (e) {
        kvq_calib_free(c);
        return e;
    }
    *out = c;
    return KVQ_OK;
}

void kvq_calib_free(kvq_calib *c)
{
    if (!c) return;
    for (int s = 0; c->x && s < c->n_slots; s++) free(c->x[s]);
    free(c->x);
    free(c->rows);
    free(c->width);
    free(c->cap);
    free(c);
}

int kvq_calib_tokens(const kvq_calib *c)
{
    return c ? c->rows[KVQ_LIN_QKV] : 0;
}

kvq_err kvq_calib_input(const kvq_calib *c, int layer, kvq_linear which, kvq_tensor *x)
{
    KVQ_FAIL_IF(!c || !x, KVQ_ERR_ARG, "kvq_calib_input: NULL argument");
    KVQ_FAIL_IF(layer < 0 || layer > c->cfg.n_layers || (int)which < 0 || which >= KVQ_LIN__COUNT, KVQ_ERR_ARG,
                "calib: no linear input %d of layer %d", (int)which, layer);
    int s = layer * KVQ_LIN__COUNT + (int)which;
    KVQ_FAIL_IF(!c->x[s] || !c->rows[s], KVQ_ERR_NOT_FOUND, "calib: nothing captured for input %d of layer %d",
                (int)which, layer);
    int64_t dims[2] = {c->rows[s], c->width[s]};
    *x = kvq_tensor_view(KVQ_DTYPE_F32, c->x[s], 2, dims);
    return KVQ_OK;
}

/* Linear weight suffixes after "blk.N." and the input each reads. */
static const struct {
    const char *suffix;
    kvq_linear  which;
} lin_names[] = {
    {"attn_q.weight", KVQ_LIN_QKV},     {"attn_k.weight", KVQ_LIN_QKV},  {"attn_v.weight", KVQ_LIN_QKV},
    {"attn_output.weight", KVQ_LIN_O},  {"ffn_gate.weight", KVQ_LIN_GATEUP},
    {"ffn_up.weight", KVQ_LIN_GATEUP},  {"ffn_down.weight", KVQ_LIN_DOWN},
};

/* Mamba-2 (HF names, libkvq/mamba2.c): in_proj reads QKV, out_proj reads
 * O, lm_head (or the tied embedding) reads CLS. */
static kvq_err mamba2_slot(const kvq_model_config *cfg, const char *name, int *layer, kvq_linear *which)
{
    if (!strcmp(name, "lm_head.weight") || (cfg->shared_classifier && !strcmp(name, "backbone.embeddings.weight"))) {
        *layer = cfg->n_layers;
        *which = KVQ_LIN_CLS;
        return KVQ_OK;
    }
    int l = -1, used = 0;
    if (sscanf(name, "backbone.layers.%d.mixer.%n", &l, &used) == 1 && used > 0 && l >= 0 && l < cfg->n_layers) {
        int in = !strcmp(name + used, "in_proj.weight"), out = !strcmp(name + used, "out_proj.weight");
        if (in || out) {
            *layer = l;
            *which = in ? KVQ_LIN_QKV : KVQ_LIN_O;
            return KVQ_OK;
        }
    }
    return KVQ_ERROR(KVQ_ERR_NOT_FOUND, "calib: weight %s reads no linear input", name);
}

kvq_err kvq_calib_weight_slot(const kvq_model_config *cfg, const char *name, int *layer, kvq_linear *which)
{
    KVQ_FAIL_IF(!cfg || !name || !layer || !which, KVQ_ERR_ARG, "kvq_calib_weight_slot: NULL argument");
    if (cfg->arch == KVQ_ARCH_MAMBA2) return mamba2_slot(cfg, name, layer, which);
    if (!strcmp(name, "output.weight") || (cfg->shared_classifier && !strcmp(name, "token_embd.weight"))) {
        *layer = cfg->n_layers;
        *which = KVQ_LIN_CLS;
        return KVQ_OK;
    }
    int l = -1, used = 0;
    if (sscanf(name, "blk.%d.%n", &l, &used) == 1 && used > 0 && l >= 0 && l < cfg->n_layers &&
        strlen(name + used) < CALIB_NAME_MAX)
        for (size_t i = 0; i < sizeof lin_names / sizeof lin_names[0]; i++)
            if (!strcmp(name + used, lin_names[i].suffix)) {
                *layer = l;
                *which = lin_names[i].which;
                return KVQ_OK;
            }
    return KVQ_ERROR(KVQ_ERR_NOT_FOUND, "calib: weight %s reads no linear input", name);
}

kvq_err kvq_calib_for_weight(const kvq_calib *c, const char *name, kvq_tensor *x)
{
    KVQ_FAIL_IF(!c, KVQ_ERR_ARG, "kvq_calib_for_weight: NULL calibration");
    int layer;
    kvq_linear which;
    KVQ_TRY(kvq_calib_weight_slot(&c->cfg, name, &layer, &which));
    return kvq_calib_input(c, layer, which, x);
}
