/*
 * transform.c — offline, logit-preserving rewrites of a Llama model's
 * weights (issue 3 item 5), applied to a decoder's owned f32 copies
 * (kvq_decoder_opts.dequant_at_load = 1, before any token):
 *
 *  - Q/K channel permutation: RoPE rotates channel pairs of a head with one
 *    frequency per pair, and attention only needs q·k.  Moving whole pairs
 *    (both channels, and the pair's frequency with them) identically in
 *    the query heads of a KV group and in that KV head's key leaves every
 *    q·k, hence the output, unchanged (up to summation order).  This is
 *    the freedom channel-reordering KV quantizers use to group outliers.
 *  - Folded per-channel scales (SmoothQuant, quant-methods.md): RMSNorm
 *    weight g/s feeding linears W·diag(s) computes W·diag(g)·n(x) exactly
 *    as before while the linear's input is divided by s.
 *  - Residual rotation (QuaRot/SpinQuant): with the RMSNorm weights first
 *    folded into the linears that read the norm, RMSNorm commutes with an
 *    orthogonal Q (‖Qx‖ = ‖x‖).  With Q = H, the orthonormal
 *    Walsh–Hadamard matrix (symmetric, H·H = I): embedding rows e → H·e,
 *    readers W → W·H (each row transformed), writers (wo, w2) W → H·W
 *    (each column transformed).  The residual stream is then H·x.
 *
 * Reconstructed where the papers leave it open: the rotation is applied
 * only for power-of-two dim (no Kronecker factors); the classifier is
 * untied by construction (the decoder holds separate owned copies).
 */
#include "decoder_internal.h"

#include <math.h>
#include <stdlib.h>

static kvq_err need_owned(const kvq_decoder *d, const char *what)
{
    KVQ_FAIL_IF(!d, KVQ_ERR_ARG, "%s: NULL decoder", what);
    KVQ_FAIL_IF(!d->opts.dequant_at_load, KVQ_ERR_ARG,
                "%s: needs a decoder created with dequant_at_load = 1 (owned f32 weights)", what);
    KVQ_FAIL_IF(kvq_cache_len(d->cache, 0) != 0, KVQ_ERR_ARG,
                "%s: the cache holds %d tokens; transform before decoding", what, kvq_cache_len(d->cache, 0));
    return KVQ_OK;
}

/* Writable rows of an owned matrix. */
static float *rows_of(dec_mat *m) { return m->owned; }

/* ---- Q/K pair permutation ------------------------------------------------------- */
static void pair_channels(const kvq_decoder *d, int j, int *a, int *b)
{
    int half = d->cfg.head_size / 2;
    *a = d->cfg.rope == KVQ_ROPE_ADJACENT ? 2 * j : j;
    *b = d->cfg.rope == KVQ_ROPE_ADJACENT ? 2 * j + 1 : j + half;
}

/* Rows of one head (hs rows starting at `head_row`): pair perm[j] → slot j. */
static void permute_head_rows(const kvq_decoder *d, dec_mat *m, int head_row, const int *perm, float *tmp)
{
    int hs = d->cfg.head_size, cols = m->cols;
    float *w = rows_of(m) + (size_t)head_row * (size_t)cols;
    size_t rb = (size_t)cols * sizeof *w;
    memcpy(tmp, w, (size_t)hs * rb);
    for (int j = 0; j < hs / 2; j++) {
        int da, db, sa, sb;
        pair_channels(d, j, &da, &db);
        pair_channels(d, perm[j], &sa, &sb);
        memcpy(w + (size_t)da * (size_t)cols, tmp + (size_t)sa * (size_t)cols, rb);
        memcpy(w + (size_t)db * (size_t)cols, tmp + (size_t)sb * (size_t)cols, rb);
    }
}

kvq_err kvq_transform_permute_qk(kvq_decoder *d, int layer, int kv_head, const int *perm)
{
    KVQ_TRY(need_owned(d, "permute_qk"));
    const kvq_model_config *c = &d->cfg;
    KVQ_FAIL_IF(layer < 0 || layer >= c->n_layers || kv_head < 0 || kv_head >= c->n_kv_heads || !perm,
                KVQ_ERR_ARG, "permute_qk: layer %d, KV head %d", layer, kv_head);
    int half = c->head_size / 2, kv_mul = c->n_heads / c->n_kv_heads;
    unsigned char *seen = calloc((size_t)half, 1);
    float *tmp = malloc((size_t)c->head_size * (size_t)c->dim * sizeof *tmp);
    int *old = malloc((size_t)half * sizeof *old);
    kvq_err e = !seen || !tmp || !old ? KVQ_ERROR(KVQ_ERR_NOMEM, "permute_qk: out of memory") : KVQ_OK;
    for (int j = 0; j < half && !e; j++) {
        if (perm[j] < 0 || perm[j] >= half || seen[perm[j]])
            e = KVQ_ERROR(KVQ_ERR_ARG, "permute_qk: perm[%d] = %d is not a permutation of 0..%d", j, perm[j],
                          half - 1);
        else seen[perm[j]] = 1;
    }
    if (!e) {
        dec_layer *L = &d->layer[layer];
        for (int i = 0; i < kv_mul; i++)
            permute_head_rows(d, &L->wq, (kv_head * kv_mul + i) * c->head_size, perm, tmp);
        permute_head_rows(d, &L->wk, kv_head * c->head_size, perm, tmp);
        int *pair = L->rope_pair + (size_t)kv_head * (size_t)half;
        memcpy(old, pair, (size_t)half * sizeof *old);
        for (int j = 0; j < half; j++) pair[j] = old[perm[j]];
    }
    free(seen);
    free(tmp);
    free(old);
    return e;
}

/* ---- folded scales --------------------------------------------------------------- */
static void scale_cols(dec_mat *m, const float *s)
{
    float *w = rows_of(m);
    for (int r = 0; r < m->rows; r++)
        for (int i = 0; i < m->cols; i++) w[(size_t)r * (size_t)m->cols + (size_t)i] *= s[i];
}

/* The norm in front of a linear input and the linears reading it. */
static int norm_readers(kvq_decoder *d, int layer, kvq_linear which, float **norm, dec_mat **mats)
{
    if (which == KVQ_LIN_CLS) {
        *norm = d->final_norm;
        mats[0] = &d->cls;
        return 1;
    }
    dec_layer *L = &d->layer[layer];
    if (which == KVQ_LIN_QKV) {
        *norm = L->attn_norm;
        mats[0] = &L->wq, mats[1] = &L->wk, mats[2] = &L->wv;
        return 3;
    }
    *norm = L->ffn_norm;
    mats[0] = &L->w1, mats[1] = &L->w3;
    return 2;
}

kvq_err kvq_transform_fold_scales(kvq_decoder *d, int layer, kvq_linear which, const float *s)
{
    KVQ_TRY(need_owned(d, "fold_scales"));
    KVQ_FAIL_IF(which != KVQ_LIN_QKV && which != KVQ_LIN_GATEUP && which != KVQ_LIN_CLS, KVQ_ERR_ARG,
                "fold_scales: linear input %d follows no RMSNorm (QKV, GATEUP or CLS only)", (int)which);
    KVQ_FAIL_IF(which != KVQ_LIN_CLS && (layer < 0 || layer >= d->cfg.n_layers), KVQ_ERR_ARG,
                "fold_scales: layer %d", layer);
    KVQ_FAIL_IF(!s, KVQ_ERR_ARG, "fold_scales: NULL scales");
    for (int i = 0; i < d->cfg.dim; i++)
        KVQ_FAIL_IF(!isfinite(s[i]) || s[i] == 0.0f, KVQ_ERR_PARAM_RANGE,
                    "fold_scales: scale %d is %g (need finite, non-zero)", i, (double)s[i]);
    float *norm;
    dec_mat *mats[3];
    int n = norm_readers(d, layer, which, &norm, mats);
    for (int i = 0; i < d->cfg.dim; i++) norm[i] /= s[i];
    for (int k = 0; k < n; k++) scale_cols(mats[k], s);
    return KVQ_OK;
}

/* ---- Hadamard rotation ------------------------------------------------------------ */
/* In-place orthonormal fast Walsh–Hadamard transform of x[n] (n = 2^k),
 * strided so columns can be transformed where they lie. */
static void fwht(float *x, int n, size_t stride)
{
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[(size_t)j * stride], b = x[(size_t)(j + h) * stride];
                x[(size_t)j * stride] = a + b;
                x[(size_t)(j + h) * stride] = a - b;
            }
    float norm = 1.0f / sqrtf((float)n);
    for (int i = 0; i < n; i++) x[(size_t)i * stride] *= norm;
}

static void rotate_rows(dec_mat *m)   /* W → W·H : rows of length dim */
{
    for (int r = 0; r < m->rows; r++) fwht(rows_of(m) + (size_t)r * (size_t)m->cols, m->cols, 1);
}

static void rotate_cols(dec_mat *m)   /* W → H·W : columns of length dim */
{
    for (int c = 0; c < m->cols; c++) fwht(rows_of(m) + c, m->rows, (size_t)m->cols);
}

/* Fold a norm weight into its readers' columns and set it to 1. */
static void fold_norm(float *norm, dec_mat **mats, int n, int dim)
{
    for (int k = 0; k < n; k++) scale_cols(mats[k], norm);
    for (int i = 0; i < dim; i++) norm[i] = 1.0f;
}

kvq_err kvq_transform_hadamard(kvq_decoder *d)
{
    KVQ_TRY(need_owned(d, "hadamard"));
    int dim = d->cfg.dim;
    KVQ_FAIL_IF(dim & (dim - 1), KVQ_ERR_UNSUPPORTED, "hadamard: dim %d is not a power of two", dim);
    float *norm;
    dec_mat *mats[3];
    for (int l = 0; l < d->cfg.n_layers; l++) {
        dec_layer *L = &d->layer[l];
        int n = norm_readers(d, l, KVQ_LIN_QKV, &norm, mats);
        fold_norm(norm, mats, n, dim);
        for (int k = 0; k < n; k++) rotate_rows(mats[k]);
        n = norm_readers(d, l, KVQ_LIN_GATEUP, &norm, mats);
        fold_norm(norm, mats, n, dim);
        for (int k = 0; k < n; k++) rotate_rows(mats[k]);
        rotate_cols(&L->wo);
        rotate_cols(&L->w2);
    }
    int n = norm_readers(d, 0, KVQ_LIN_CLS, &norm, mats);
    fold_norm(norm, mats, n, dim);
    rotate_rows(&d->cls);
    rotate_rows(&d->embed);   /* rows are embeddings: e → H·e (H symmetric) */
    return KVQ_OK;
}
