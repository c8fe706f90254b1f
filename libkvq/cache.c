/*
 * cache.c — the KV cache an inference engine drives (kvq.h, "KV cache
 * hooks"): f32 window of recent tokens, sealed pages encoded by per-layer
 * K and V codecs, reference attention (or, over encoded pages, the
 * codecs' fused slots: kivi, gear, row codecs' scores), byte accounting,
 * and the two plug points later methods use (depth policy: MiniCache, cache-methods.md §2;
 * prefix store: exact prefix sharing after PLT/RadixAttention, §3.3, §7).
 *
 * Reconstructed where the papers are silent [ours]:
 *  - sealing rule: a layer seals its oldest P unsealed tokens as soon as it
 *    holds W + P of them, so at least W recent tokens always stay f32 (HF
 *    "residual_length", KIVI's window);
 *  - a page is the tensor [P][n_kv_heads][head_size]; codecs see rows of
 *    one (token, head) each (see kvq.h for why);
 *  - attention follows llama2.c's arithmetic order exactly (dot products in
 *    channel order, division by sqrtf(head_size), softmax with the maximum
 *    subtracted, output accumulated in token order), independent of where
 *    tokens live, so a paged f32 cache is bit-identical to an unpaged one;
 *  - accounting: payload = bytes the codecs wrote, meta = 16 bytes per page
 *    side (offset, length, owner), window = f32 bytes held unsealed.
 */
#include "cache_internal.h"
#include "kernels/kern_attn.h"
#include "kernels/rowkern.h"
#include "quant/codecs.h"

#include <math.h>
#include <stdlib.h>

#define SIDE_K 0
#define SIDE_V 1
#define N_SIDES 2

static size_t row_bytes(const kvq_cache *c) { return (size_t)c->kv_dim * sizeof(float); }

/* ---- configuration ------------------------------------------------------- */

kvq_cache_config kvq_cache_config_default(int n_layers, int n_kv_heads, int head_size, int max_tokens)
{
    kvq_cache_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_layers = n_layers;
    cfg.n_kv_heads = n_kv_heads;
    cfg.head_size = head_size;
    cfg.max_tokens = max_tokens;
    cfg.window = 0;
    cfg.page = 1;
    return cfg;
}

static kvq_err check_config(const kvq_cache_config *cfg)
{
    KVQ_FAIL_IF(cfg->n_layers <= 0 || cfg->n_kv_heads <= 0 || cfg->head_size <= 0 || cfg->max_tokens <= 0,
                KVQ_ERR_ARG, "cache: n_layers %d, n_kv_heads %d, head_size %d, max_tokens %d must all be > 0",
                cfg->n_layers, cfg->n_kv_heads, cfg->head_size, cfg->max_tokens);
    KVQ_FAIL_IF(cfg->window < 0 || cfg->page < 1, KVQ_ERR_ARG,
                "cache: window %d must be >= 0 and page %d >= 1", cfg->window, cfg->page);
    size_t kv_dim, total;
    KVQ_FAIL_IF(kvq_mul_ov((size_t)cfg->n_kv_heads, (size_t)cfg->head_size, &kv_dim) || kv_dim > INT32_MAX ||
                    kvq_mul_ov(kv_dim, (size_t)cfg->max_tokens, &total) ||
                    kvq_mul_ov(total, (size_t)cfg->n_layers * 2 * sizeof(float), &total),
                KVQ_ERR_ARG, "cache: %d layers x %d tokens x %d heads x %d is too large", cfg->n_layers,
                cfg->max_tokens, cfg->n_kv_heads, cfg->head_size);
    const kvq_depth_policy_i *d = cfg->depth;
    KVQ_FAIL_IF(d && (d->abi < 1 || !d->init || !d->seal || !d->load || !d->drop || !d->bytes), KVQ_ERR_ARG,
                "cache: depth policy '%s' lacks required functions", d->name ? d->name : "?");
    const kvq_prefix_store_i *p = cfg->prefix;
    KVQ_FAIL_IF(p && (p->abi < 1 || !p->match || !p->load || !p->publish || !cfg->prefix_store), KVQ_ERR_ARG,
                "cache: prefix store '%s' lacks functions or state", p->name ? p->name : "?");
    return KVQ_OK;
}

static const char *layer_spec(const kvq_cache_config *cfg, int layer, int side)
{
    const char *const *per = side == SIDE_K ? cfg->k_spec_layer : cfg->v_spec_layer;
    if (per && per[layer]) return per[layer];
    return side == SIDE_K ? cfg->k_spec : cfg->v_spec;
}

/* ---- fused scores for row codecs ------------------------------------------------
 * q8_0, q4_0, rtn, ... bind a row kernel (kernels/rowkern.h) over a page
 * [P][n_kv_heads][head_size]: row t·H + h is token t's head h, so a score
 * is one dot straight from the codes (within the row kernel's stated
 * tolerance of decode-then-dot).  Values still go through decode (no
 * axpy-from-codes slot exists for these codecs). */
static kvq_err rowkern_qk(kvq_ctx *ctx, const void *payload, size_t n, const kvq_shape *s, const float *q,
                          int n_heads, int group, int n_tok, float *scores, size_t stride)
{
    kvq_rowkern k;
    KVQ_TRY(kvq_rowkern_bind(ctx, payload, n, s, &k));
    const int64_t H = s->dim[1], hs = s->dim[2];
    KVQ_FAIL_IF(k.rows != s->dim[0] * H || k.cols != hs || n_tok > s->dim[0], KVQ_ERR_CORRUPT,
                "cache: row kernel of a [%lld, %lld, %lld] page binds %lld x %lld", (long long)s->dim[0],
                (long long)H, (long long)hs, (long long)k.rows, (long long)k.cols);
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_heads; h++)
            scores[(size_t)h * stride + (size_t)t] = k.dot(&k, (int64_t)t * H + h / group, q + (size_t)h * (size_t)hs);
    kvq_page_attn_scale(scores, n_heads, n_tok, stride, (int)hs);
    return KVQ_OK;
}

static const kvq_page_attn_i rowkern_slots = {.qk = rowkern_qk, .pv = NULL};

/* A row codec gets rowkern_slots when its row kernel binds a page of this
 * shape (probed on an encoded zero page) and beats decoding (`fast`, set
 * by the SIMD tables).  Lossless codecs keep the decode path (bit-identity
 * with the f32 cache); stateful or calibrated ones are not probed. */
static const kvq_page_attn_i *probe_rowkern(kvq_cache *c, cache_layer *L, int side)
{
    const kvq_codec *codec = kvq_ctx_codec(L->ctx[side]);
    unsigned skip = KVQ_FLAG_LOSSLESS | KVQ_FLAG_STATEFUL | KVQ_FLAG_NEEDS_CALIB;
    if ((codec->flags & skip) || !kvq_rowkern_has(codec)) return NULL;
    int64_t dims[3] = {c->cfg.page, c->cfg.n_kv_heads, c->cfg.head_size};
    kvq_shape s = kvq_shape_make(3, dims);
    float *zero = calloc((size_t)c->cfg.page * (size_t)c->kv_dim, sizeof *zero);
    uint8_t *pay = malloc(L->page_bound[side]);
    kvq_rowkern k;
    size_t n = 0;
    int ok = 0;
    if (zero && pay) {
        kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, zero, 3, s.dim);
        ok = !kvq_ctx_encode_payload(L->ctx[side], &t, pay, L->page_bound[side], &n) &&
             !kvq_rowkern_bind(L->ctx[side], pay, n, &s, &k) && k.fast && k.dot && k.rows == s.dim[0] * s.dim[1] &&
             k.cols == s.dim[2];
    }
    free(zero);
    free(pay);
    return ok ? &rowkern_slots : NULL;
}

/* A side's codec: its spec, or lossless f32 when only the other side has one. */
static kvq_err open_codec(kvq_cache *c, int layer, int side, const char *spec)
{
    static const unsigned domain[N_SIDES] = {KVQ_DOMAIN_KEY, KVQ_DOMAIN_VALUE};
    cache_layer *L = &c->layers[layer];
    kvq_err e = kvq_ctx_create(spec ? spec : "f32", &L->ctx[side]);
    if (e) {
        kvq_error_prefix(side == SIDE_K ? "cache: K spec" : "cache: V spec");
        return e;
    }
    const kvq_codec *codec = kvq_ctx_codec(L->ctx[side]);
    KVQ_FAIL_IF(!(codec->domain & domain[side]), KVQ_ERR_UNSUPPORTED,
                "cache: layer %d: codec %s does not serve %s pages", layer, codec->name,
                side == SIDE_K ? "key" : "value");
    int64_t dims[3] = {c->cfg.page, c->cfg.n_kv_heads, c->cfg.head_size};
    kvq_shape s = kvq_shape_make(3, dims);
    L->page_bound[side] = kvq_ctx_payload_bound(L->ctx[side], &s);
    KVQ_FAIL_IF(L->page_bound[side] == 0 || L->page_bound[side] > UINT32_MAX, KVQ_ERR_SHAPE,
                "cache: layer %d: codec %s cannot bound a page of shape [%d, %d, %d]", layer, codec->name,
                c->cfg.page, c->cfg.n_kv_heads, c->cfg.head_size);
    L->fused[side] = kvq_page_attn_find(codec);
    if (!L->fused[side]) L->fused[side] = probe_rowkern(c, L, side);
    return KVQ_OK;
}

/* kivi's slots only with SIMD kernels (the scalar loops are slower than
 * its vectorised decode + the f32 loops); gear's always (applying the
 * factors directly wins either way). */
const kvq_page_attn_i *kvq_page_attn_find(const kvq_codec *codec)
{
    if (codec == &kvq_codec_kivi && !kvq_kern_attn_get()->fast) return NULL;
    static const struct {
        const kvq_codec *codec;
        const kvq_page_attn_i *slots;
    } fused[] = {{&kvq_codec_kivi, &kvq_page_attn_kivi}, {&kvq_codec_gear, &kvq_page_attn_gear}};
    for (size_t i = 0; i < sizeof fused / sizeof fused[0]; i++)
        if (codec == fused[i].codec) return fused[i].slots;
    return NULL;
}

static void *alloc_floats(size_t rows, size_t cols)
{
    size_t n = rows * cols;
    return malloc(n ? n * sizeof(float) : sizeof(float));
}

static kvq_err open_layer(kvq_cache *c, int layer)
{
    cache_layer *L = &c->layers[layer];
    const char *ks = layer_spec(&c->cfg, layer, SIDE_K), *vs = layer_spec(&c->cfg, layer, SIDE_V);
    L->paged = ks || vs;
    if (L->paged) {
        KVQ_TRY(open_codec(c, layer, SIDE_K, ks));
        KVQ_TRY(open_codec(c, layer, SIDE_V, vs));
    }
    L->wcap = L->paged ? c->cfg.window + c->cfg.page : c->cfg.max_tokens;
    if (L->wcap > c->cfg.max_tokens) L->wcap = c->cfg.max_tokens;
    for (int s = 0; s < N_SIDES; s++) {
        L->win[s] = alloc_floats((size_t)L->wcap, (size_t)c->kv_dim);
        KVQ_FAIL_IF(!L->win[s], KVQ_ERR_NOMEM, "cache: out of memory for a %d-token window", L->wcap);
        if (L->paged && c->cfg.keep_decoded) {
            L->dec[s] = alloc_floats((size_t)c->cfg.max_tokens, (size_t)c->kv_dim);
            KVQ_FAIL_IF(!L->dec[s], KVQ_ERR_NOMEM, "cache: out of memory for decoded pages");
        }
    }
    if (L->paged) {
        L->pages = calloc((size_t)c->max_pages, sizeof *L->pages);
        KVQ_FAIL_IF(!L->pages, KVQ_ERR_NOMEM, "cache: out of memory for %d page entries", c->max_pages);
    }
    return KVQ_OK;
}

static kvq_err open_cache(kvq_cache *c)
{
    const kvq_cache_config *cfg = &c->cfg;
    c->layers = calloc((size_t)cfg->n_layers, sizeof *c->layers);
    KVQ_FAIL_IF(!c->layers, KVQ_ERR_NOMEM, "cache: out of memory");
    for (int l = 0; l < cfg->n_layers; l++) KVQ_TRY(open_layer(c, l));
    for (int s = 0; s < N_SIDES; s++) {
        c->page_scratch[s] = alloc_floats((size_t)cfg->page, (size_t)c->kv_dim);
        KVQ_FAIL_IF(!c->page_scratch[s], KVQ_ERR_NOMEM, "cache: out of memory for page scratch");
    }
    c->tokens = malloc((size_t)cfg->max_tokens * sizeof *c->tokens);
    KVQ_FAIL_IF(!c->tokens, KVQ_ERR_NOMEM, "cache: out of memory for token ids");
    if (cfg->depth) {
        c->depth_state = calloc(1, cfg->depth->state_size ? cfg->depth->state_size : 1);
        KVQ_FAIL_IF(!c->depth_state, KVQ_ERR_NOMEM, "cache: out of memory for depth policy state");
        kvq_err e = cfg->depth->init(c->depth_state, cfg, cfg->depth_arg);
        if (e) {
            free(c->depth_state); /* init failed: fini must not run */
            c->depth_state = NULL;
            return e;
        }
    }
    return KVQ_OK;
}

kvq_err kvq_cache_create(const kvq_cache_config *cfg, kvq_cache **out)
{
    KVQ_FAIL_IF(!cfg || !out, KVQ_ERR_ARG, "kvq_cache_create: NULL argument");
    *out = NULL;
    KVQ_TRY(check_config(cfg));
    kvq_cache *c = calloc(1, sizeof *c);
    KVQ_FAIL_IF(!c, KVQ_ERR_NOMEM, "cache: out of memory");
    c->cfg = *cfg;
    c->kv_dim = cfg->n_kv_heads * cfg->head_size;
    c->max_pages = (cfg->max_tokens + cfg->page - 1) / cfg->page;
    kvq_err e = open_cache(c);
    /* The specs were parsed into contexts; the caller's strings are not kept. */
    c->cfg.k_spec = c->cfg.v_spec = NULL;
    c->cfg.k_spec_layer = c->cfg.v_spec_layer = NULL;
    if (e) {
        kvq_cache_free(c);
        return e;
    }
    *out = c;
    return KVQ_OK;
}

void kvq_cache_free(kvq_cache *c)
{
    if (!c) return;
    if (c->depth_state && c->cfg.depth->fini) c->cfg.depth->fini(c->depth_state);
    free(c->depth_state);
    for (int l = 0; c->layers && l < c->cfg.n_layers; l++) {
        cache_layer *L = &c->layers[l];
        for (int s = 0; s < N_SIDES; s++) {
            kvq_ctx_free(L->ctx[s]);
            free(L->win[s]);
            free(L->dec[s]);
            kvq_buf_free(&L->buf[s]);
        }
        free(L->pages);
    }
    free(c->layers);
    for (int s = 0; s < N_SIDES; s++) free(c->page_scratch[s]);
    free(c->att);
    free(c->tokens);
    free(c);
}

/* ---- sealing -------------------------------------------------------------- */

static kvq_err check_layer(const kvq_cache *c, int layer, const char *fn)
{
    KVQ_FAIL_IF(!c, KVQ_ERR_ARG, "%s: NULL cache", fn);
    KVQ_FAIL_IF(layer < 0 || layer >= c->cfg.n_layers, KVQ_ERR_ARG, "%s: layer %d outside [0, %d)", fn,
                layer, c->cfg.n_layers);
    return KVQ_OK;
}

static kvq_kv_page page_view(const kvq_cache *c, int layer, int index, const float *k, const float *v)
{
    kvq_kv_page pg = {.layer = layer, .index = index, .n_tokens = c->cfg.page,
                      .n_kv_heads = c->cfg.n_kv_heads, .head_size = c->cfg.head_size, .k = k, .v = v};
    return pg;
}

static kvq_shape page_shape(const kvq_cache *c)
{
    int64_t dims[3] = {c->cfg.page, c->cfg.n_kv_heads, c->cfg.head_size};
    return kvq_shape_make(3, dims);
}

/* Encode one side of the window's oldest page into the layer buffer. */
static kvq_err encode_side(kvq_cache *c, cache_layer *L, int side, cache_page *pg)
{
    kvq_shape s = page_shape(c);
    KVQ_TRY(kvq_buf_reserve(&L->buf[side], L->page_bound[side]));
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, L->win[side], 3, s.dim);
    size_t n = 0;
    kvq_err e = kvq_ctx_encode_payload(L->ctx[side], &t, L->buf[side].p + L->buf[side].n, L->page_bound[side], &n);
    if (e) {
        char where[64];
        snprintf(where, sizeof where, "KV cache layer %d, %s page %d", (int)(L - c->layers),
                 side == SIDE_K ? "K" : "V", L->sealed / c->cfg.page);
        kvq_error_prefix(where);
        return e;
    }
    pg->off[side] = L->buf[side].n;
    pg->len[side] = (uint32_t)n;
    L->buf[side].n += n;
    return KVQ_OK;
}

static kvq_err decode_side(kvq_cache *c, cache_layer *L, int side, int index, float *dst)
{
    const cache_page *pg = &L->pages[index];
    kvq_shape s = page_shape(c);
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, dst, 3, s.dim);
    return kvq_ctx_decode_payload(L->ctx[side], L->buf[side].p + pg->off[side], pg->len[side], &t);
}

/* Store the window's oldest page: the depth policy first, else the codecs. */
static kvq_err store_page(kvq_cache *c, int layer, cache_page *pg)
{
    cache_layer *L = &c->layers[layer];
    int index = L->sealed / c->cfg.page, taken = 0;
    memset(pg, 0, sizeof *pg);
    if (c->cfg.depth) {
        kvq_kv_page view = page_view(c, layer, index, L->win[SIDE_K], L->win[SIDE_V]);
        KVQ_TRY(c->cfg.depth->seal(c->depth_state, c, &view, &taken));
    }
    if (taken) {
        pg->owner = CACHE_PAGE_POLICY;
        return KVQ_OK;
    }
    pg->owner = CACHE_PAGE_CODEC;
    KVQ_TRY(encode_side(c, L, SIDE_K, pg));
    kvq_err e = encode_side(c, L, SIDE_V, pg);
    if (e) L->buf[SIDE_K].n = pg->off[SIDE_K]; /* roll back K */
    return e;
}

static kvq_err publish_page(kvq_cache *c, int layer, int index)
{
    int end = (index + 1) * c->cfg.page;
    if (!c->cfg.prefix || end > c->n_tokens || end <= c->no_publish_below) return KVQ_OK;
    cache_layer *L = &c->layers[layer];
    kvq_kv_page view = page_view(c, layer, index, L->win[SIDE_K], L->win[SIDE_V]);
    return c->cfg.prefix->publish(c->cfg.prefix_store, c->tokens, &view);
}

/* A policy that took page `index` of a layer may change how the same page
 * of the layer below reads (MiniCache merges the pair): with keep_decoded,
 * that layer's decoded copy is refreshed. */
static kvq_err refresh_below(kvq_cache *c, int layer, int index)
{
    cache_layer *B = &c->layers[layer];
    if (!B->dec[SIDE_K] || B->sealed <= index * c->cfg.page || B->pages[index].owner != CACHE_PAGE_POLICY)
        return KVQ_OK;
    size_t at = (size_t)index * (size_t)c->cfg.page * (size_t)c->kv_dim;
    return c->cfg.depth->load(c->depth_state, layer, index, B->dec[SIDE_K] + at, B->dec[SIDE_V] + at);
}

static kvq_err seal_page(kvq_cache *c, int layer)
{
    cache_layer *L = &c->layers[layer];
    int P = c->cfg.page, index = L->sealed / P;
    cache_page *pg = &L->pages[index];
    KVQ_TRY(store_page(c, layer, pg));
    kvq_err e = publish_page(c, layer, index);
    if (!e && L->dec[SIDE_K]) {
        float *dk = L->dec[SIDE_K] + (size_t)L->sealed * (size_t)c->kv_dim;
        float *dv = L->dec[SIDE_V] + (size_t)L->sealed * (size_t)c->kv_dim;
        if (pg->owner == CACHE_PAGE_POLICY)
            e = c->cfg.depth->load(c->depth_state, layer, index, dk, dv);
        else if (!(e = decode_side(c, L, SIDE_K, index, dk)))
            e = decode_side(c, L, SIDE_V, index, dv);
        if (!e && pg->owner == CACHE_PAGE_POLICY && layer > 0) e = refresh_below(c, layer - 1, index);
    }
    if (e) { /* undo the page: it stays in the window */
        if (pg->owner == CACHE_PAGE_POLICY)
            c->cfg.depth->drop(c->depth_state, layer, index);
        else
            for (int s = 0; s < N_SIDES; s++) L->buf[s].n = pg->off[s];
        return e;
    }
    size_t keep = (size_t)(L->len - L->sealed - P);
    for (int s = 0; s < N_SIDES; s++)
        memmove(L->win[s], L->win[s] + (size_t)P * (size_t)c->kv_dim, keep * row_bytes(c));
    L->sealed += P;
    return KVQ_OK;
}

kvq_err kvq_cache_append(kvq_cache *c, int layer, const float *k, const float *v, int n_tokens)
{
    KVQ_TRY(check_layer(c, layer, "kvq_cache_append"));
    cache_layer *L = &c->layers[layer];
    KVQ_FAIL_IF(n_tokens < 0 || (n_tokens > 0 && (!k || !v)), KVQ_ERR_ARG,
                "kvq_cache_append: %d tokens with NULL K or V", n_tokens);
    KVQ_FAIL_IF(n_tokens > c->cfg.max_tokens - L->len, KVQ_ERR_ARG,
                "kvq_cache_append: layer %d holds %d tokens; %d more exceed max_tokens %d", layer, L->len,
                n_tokens, c->cfg.max_tokens);
    int done = 0;
    while (done < n_tokens) {
        int held = L->len - L->sealed, m = L->wcap - held;
        if (m > n_tokens - done) m = n_tokens - done;
        size_t off = (size_t)held * (size_t)c->kv_dim, src = (size_t)done * (size_t)c->kv_dim;
        memcpy(L->win[SIDE_K] + off, k + src, (size_t)m * row_bytes(c));
        memcpy(L->win[SIDE_V] + off, v + src, (size_t)m * row_bytes(c));
        L->len += m;
        done += m;
        /* Seal while W + P tokens are unsealed; on failure the tokens
         * appended so far stay (kvq_cache_len tells how many). */
        while (L->paged && L->len - L->sealed >= c->cfg.window + c->cfg.page) KVQ_TRY(seal_page(c, layer));
        KVQ_FAIL_IF(m == 0 && done < n_tokens, KVQ_ERR_ARG, "kvq_cache_append: layer %d window is full", layer);
    }
    return KVQ_OK;
}

int kvq_cache_len(const kvq_cache *c, int layer)
{
    if (!c || layer < 0 || layer >= c->cfg.n_layers) return -1;
    return c->layers[layer].len;
}

/* ---- reading ---------------------------------------------------------------- */

/* Pointers to page `index` of a layer, decoding into the page scratch when
 * it is not kept decoded.  side = SIDE_K, SIDE_V or -1 for both. */
static kvq_err page_rows(kvq_cache *c, int layer, int index, int side, const float **k, const float **v)
{
    cache_layer *L = &c->layers[layer];
    size_t at = (size_t)index * (size_t)c->cfg.page * (size_t)c->kv_dim;
    if (L->dec[SIDE_K]) {
        *k = L->dec[SIDE_K] + at;
        *v = L->dec[SIDE_V] + at;
        return KVQ_OK;
    }
    *k = c->page_scratch[SIDE_K];
    *v = c->page_scratch[SIDE_V];
    if (L->pages[index].owner == CACHE_PAGE_POLICY)
        return c->cfg.depth->load(c->depth_state, layer, index, c->page_scratch[SIDE_K], c->page_scratch[SIDE_V]);
    for (int s = 0; s < N_SIDES; s++)
        if (side < 0 || side == s) KVQ_TRY(decode_side(c, L, s, index, c->page_scratch[s]));
    return KVQ_OK;
}

kvq_err kvq_cache_read(kvq_cache *c, int layer, int t0, int t1, float *k_out, float *v_out)
{
    KVQ_TRY(check_layer(c, layer, "kvq_cache_read"));
    cache_layer *L = &c->layers[layer];
    KVQ_FAIL_IF(t0 < 0 || t1 < t0 || t1 > L->len, KVQ_ERR_ARG,
                "kvq_cache_read: tokens [%d, %d) outside layer %d's [0, %d)", t0, t1, layer, L->len);
    int P = c->cfg.page, side = !k_out ? SIDE_V : !v_out ? SIDE_K : -1;
    size_t rb = row_bytes(c), kd = (size_t)c->kv_dim;
    for (int t = t0; t < t1;) {
        if (t >= L->sealed) { /* the rest is in the window */
            size_t at = (size_t)(t - L->sealed) * kd, n = (size_t)(t1 - t);
            if (k_out) memcpy(k_out + (size_t)(t - t0) * kd, L->win[SIDE_K] + at, n * rb);
            if (v_out) memcpy(v_out + (size_t)(t - t0) * kd, L->win[SIDE_V] + at, n * rb);
            break;
        }
        int index = t / P, end = (index + 1) * P < t1 ? (index + 1) * P : t1;
        const float *pk, *pv;
        KVQ_TRY(page_rows(c, layer, index, side, &pk, &pv));
        size_t in = (size_t)(t - index * P) * kd, n = (size_t)(end - t);
        if (k_out) memcpy(k_out + (size_t)(t - t0) * kd, pk + in, n * rb);
        if (v_out) memcpy(v_out + (size_t)(t - t0) * kd, pv + in, n * rb);
        t = end;
    }
    return KVQ_OK;
}

/* ---- attention ---------------------------------------------------------------- */

typedef struct attn_job {
    const float *q;         /* [n_heads][head_size]                     */
    int n_heads, group, hs, kv_dim;
    float *att;             /* [n_heads][stride] scores, then weights   */
    size_t stride;
    float *out;             /* [n_heads][head_size]                     */
} attn_job;

#define SCORE_TOKENS 4 /* tokens scored together: independent sums (ILP) */

/* Scores of tokens [t0, t0+n) whose K rows start at k ([n][kv_dim]).
 * Every score is one dot product summed in channel order (then divided by
 * sqrtf(head_size)); SCORE_TOKENS tokens run side by side as independent
 * sums, which changes no rounding, only how many chains are in flight. */
static void attn_scores(const attn_job *j, const float *restrict k, int t0, int n)
{
    const float denom = sqrtf((float)j->hs);
    const size_t kd = (size_t)j->kv_dim;
    for (int h = 0; h < j->n_heads; h++) {
        const float *restrict qh = j->q + (size_t)h * (size_t)j->hs;
        const float *kh = k + (size_t)(h / j->group) * (size_t)j->hs;
        float *restrict a = j->att + (size_t)h * j->stride + t0;
        int t = 0;
        for (; t + SCORE_TOKENS <= n; t += SCORE_TOKENS) {
            const float *k0 = kh + (size_t)t * kd;
            float s[SCORE_TOKENS] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int i = 0; i < j->hs; i++) {
                s[0] += qh[i] * k0[i];
                s[1] += qh[i] * k0[kd + (size_t)i];
                s[2] += qh[i] * k0[2 * kd + (size_t)i];
                s[3] += qh[i] * k0[3 * kd + (size_t)i];
            }
            for (int u = 0; u < SCORE_TOKENS; u++) a[t + u] = s[u] / denom;
        }
        for (; t < n; t++) {
            const float *kt = kh + (size_t)t * kd;
            float score = 0.0f;
            for (int i = 0; i < j->hs; i++) score += qh[i] * kt[i];
            a[t] = score / denom;
        }
    }
}

/* llama2.c softmax: subtract the maximum, expf, sum in order, divide. */
static void attn_softmax(const attn_job *j, int n_ctx)
{
    for (int h = 0; h < j->n_heads; h++) {
        float *a = j->att + (size_t)h * j->stride, max = a[0], sum = 0.0f;
        for (int t = 1; t < n_ctx; t++)
            if (a[t] > max) max = a[t];
        for (int t = 0; t < n_ctx; t++) {
            a[t] = expf(a[t] - max);
            sum += a[t];
        }
        for (int t = 0; t < n_ctx; t++) a[t] /= sum;
    }
}

/* o[i] += p·x[i]: written four lanes at a time so the compiler's
 * straight-line (SLP) vectorizer can use one vector multiply-add per four
 * elements at -O2; each element is still one rounding of p·x[i] and one
 * addition, so results equal the plain loop's bit for bit. */
#define AXPY_LANES 4
static inline void axpy(float *restrict o, float p, const float *restrict x, int n)
{
    int i = 0;
    for (; i + AXPY_LANES <= n; i += AXPY_LANES) {
        o[i] += p * x[i];
        o[i + 1] += p * x[i + 1];
        o[i + 2] += p * x[i + 2];
        o[i + 3] += p * x[i + 3];
    }
    for (; i < n; i++) o[i] += p * x[i];
}

/* out[h] += Σ p_t v_t over tokens [t0, t0+n) with V rows at v.  Tokens
 * outer, heads inner: each output element still accumulates in token
 * order, and consecutive updates of one element are far apart (no
 * store-to-load stall chain); restrict lets the compiler keep it simple. */
static void attn_values(const attn_job *j, const float *restrict v, int t0, int n)
{
    const float *restrict att = j->att;
    float *restrict out = j->out;
    for (int t = 0; t < n; t++) {
        const float *vt = v + (size_t)t * (size_t)j->kv_dim;
        const float *at = att + t0 + t;
        float *o = out;
        /* Query heads in KV-head order (h = kvh·group + g): no division. */
        for (int kvh = 0; kvh < j->n_heads / j->group; kvh++)
            for (int g = 0; g < j->group; g++, o += j->hs, at += j->stride)
                axpy(o, *at, vt + (size_t)kvh * (size_t)j->hs, j->hs);
    }
}

/* A codec's fused kernel over the encoded page holding tokens [t, t+n). */
static kvq_err fused_page(kvq_cache *c, cache_layer *L, const attn_job *j, int t, int n, int side)
{
    const cache_page *pg = &L->pages[t / c->cfg.page];
    const uint8_t *payload = L->buf[side].p + pg->off[side];
    kvq_shape s = page_shape(c);
    if (side == SIDE_K)
        return L->fused[side]->qk(L->ctx[side], payload, pg->len[side], &s, j->q, j->n_heads, j->group, n,
                                  j->att + t, j->stride);
    return L->fused[side]->pv(L->ctx[side], payload, pg->len[side], &s, j->att + t, j->n_heads, j->group, n,
                              j->stride, j->out);
}

/* One pass over [0, n_ctx) in token order: scores (side K) or values (V).
 * Sealed tokens come page by page (or from the decoded copy in one
 * stretch), the rest from the window. */
static kvq_err attn_pass(kvq_cache *c, int layer, const attn_job *j, int n_ctx, int side)
{
    cache_layer *L = &c->layers[layer];
    int P = c->cfg.page, sealed = L->sealed < n_ctx ? L->sealed : n_ctx;
    void (*step)(const attn_job *, const float *, int, int) = side == SIDE_K ? attn_scores : attn_values;
    if (sealed > 0 && L->dec[side]) {
        step(j, L->dec[side], 0, sealed);
    } else {
        for (int t = 0; t < sealed; t += P) {
            int n = sealed - t < P ? sealed - t : P;
            const kvq_page_attn_i *f = L->fused[side];
            if (f && (side == SIDE_K ? f->qk != NULL : f->pv != NULL) && L->pages[t / P].owner == CACHE_PAGE_CODEC) {
                KVQ_TRY(fused_page(c, L, j, t, n, side));
                continue;
            }
            const float *pk, *pv;
            KVQ_TRY(page_rows(c, layer, t / P, side, &pk, &pv));
            step(j, side == SIDE_K ? pk : pv, t, n);
        }
    }
    if (n_ctx > sealed) step(j, L->win[side], sealed, n_ctx - sealed);
    return KVQ_OK;
}

static kvq_err ensure_att(kvq_cache *c, int n_heads)
{
    if (n_heads <= c->att_heads) return KVQ_OK;
    float *a = alloc_floats((size_t)n_heads, (size_t)c->cfg.max_tokens);
    KVQ_FAIL_IF(!a, KVQ_ERR_NOMEM, "kvq_cache_attend: out of memory for %d x %d scores", n_heads,
                c->cfg.max_tokens);
    free(c->att);
    c->att = a;
    c->att_heads = n_heads;
    return KVQ_OK;
}

kvq_err kvq_cache_attend(kvq_cache *c, int layer, const float *q, int n_heads, int n_ctx, float *out)
{
    KVQ_TRY(check_layer(c, layer, "kvq_cache_attend"));
    cache_layer *L = &c->layers[layer];
    KVQ_FAIL_IF(!q || !out, KVQ_ERR_ARG, "kvq_cache_attend: NULL q or out");
    KVQ_FAIL_IF(n_heads <= 0 || n_heads % c->cfg.n_kv_heads != 0, KVQ_ERR_ARG,
                "kvq_cache_attend: %d query heads is not a multiple of %d KV heads", n_heads, c->cfg.n_kv_heads);
    KVQ_FAIL_IF(n_ctx <= 0 || n_ctx > L->len, KVQ_ERR_ARG,
                "kvq_cache_attend: n_ctx %d outside [1, %d] for layer %d", n_ctx, L->len, layer);
    KVQ_TRY(ensure_att(c, n_heads));
    attn_job j = {.q = q, .n_heads = n_heads, .group = n_heads / c->cfg.n_kv_heads, .hs = c->cfg.head_size,
                  .kv_dim = c->kv_dim, .att = c->att, .stride = (size_t)c->cfg.max_tokens, .out = out};
    KVQ_TRY(attn_pass(c, layer, &j, n_ctx, SIDE_K));
    attn_softmax(&j, n_ctx);
    memset(out, 0, (size_t)n_heads * (size_t)c->cfg.head_size * sizeof *out);
    return attn_pass(c, layer, &j, n_ctx, SIDE_V);
}

/* ---- truncation ------------------------------------------------------------ */

/* Forget pages [from, end) of a layer.  Codec payloads are appended in page
 * order, so the buffers are cut at the first dropped codec page. */
static void drop_pages(kvq_cache *c, int layer, int from)
{
    cache_layer *L = &c->layers[layer];
    int n_pages = L->sealed / c->cfg.page, cut = 0;
    for (int i = from; i < n_pages; i++) {
        if (L->pages[i].owner == CACHE_PAGE_POLICY) {
            c->cfg.depth->drop(c->depth_state, layer, i);
        } else if (!cut) {
            for (int s = 0; s < N_SIDES; s++) L->buf[s].n = L->pages[i].off[s];
            cut = 1;
        }
    }
}

kvq_err kvq_cache_truncate(kvq_cache *c, int layer, int n)
{
    KVQ_TRY(check_layer(c, layer, "kvq_cache_truncate"));
    cache_layer *L = &c->layers[layer];
    KVQ_FAIL_IF(n < 0 || n > L->len, KVQ_ERR_ARG, "kvq_cache_truncate: %d outside [0, %d] for layer %d", n,
                L->len, layer);
    if (n >= L->sealed) {
        L->len = n;
        return KVQ_OK;
    }
    int P = c->cfg.page, index = n / P, keep = n - index * P;
    if (keep > 0) { /* the cut page's first tokens go back into the window */
        const float *pk, *pv;
        KVQ_TRY(page_rows(c, layer, index, -1, &pk, &pv));
        memcpy(L->win[SIDE_K], pk, (size_t)keep * row_bytes(c));
        memcpy(L->win[SIDE_V], pv, (size_t)keep * row_bytes(c));
    }
    drop_pages(c, layer, index);
    L->sealed = index * P;
    L->len = n;
    return KVQ_OK;
}

kvq_err kvq_cache_clear(kvq_cache *c)
{
    KVQ_FAIL_IF(!c, KVQ_ERR_ARG, "kvq_cache_clear: NULL cache");
    for (int l = 0; l < c->cfg.n_layers; l++) KVQ_TRY(kvq_cache_truncate(c, l, 0));
    c->n_tokens = 0;
    c->no_publish_below = 0;
    return KVQ_OK;
}

/* ---- accounting ---------------------------------------------------------------- */

kvq_err kvq_cache_stats_get(const kvq_cache *c, kvq_cache_stats *st)
{
    KVQ_FAIL_IF(!c || !st, KVQ_ERR_ARG, "kvq_cache_stats_get: NULL argument");
    memset(st, 0, sizeof *st);
    for (int l = 0; l < c->cfg.n_layers; l++) {
        const cache_layer *L = &c->layers[l];
        st->tokens += (uint64_t)L->len;
        st->bytes_window += (uint64_t)(L->len - L->sealed) * row_bytes(c) * N_SIDES;
        for (int i = 0; i < L->sealed / c->cfg.page; i++) {
            st->bytes_meta += (uint64_t)KVQ_CACHE_PAGE_META * N_SIDES;
            for (int s = 0; s < N_SIDES && L->pages[i].owner == CACHE_PAGE_CODEC; s++) {
                /* codecs with `parts` split scales, outliers and factors out */
                kvq_codec_parts pp;
                kvq_shape sh = page_shape(c);
                KVQ_TRY(kvq_ctx_payload_parts(L->ctx[s], L->buf[s].p + L->pages[i].off[s], L->pages[i].len[s], &sh,
                                              &pp));
                st->bytes_payload += pp.codes;
                st->bytes_scales += pp.scales;
                st->bytes_lowrank += pp.lowrank;
                st->bytes_sparse += pp.sparse;
                st->bytes_meta += pp.meta;
            }
        }
    }
    if (c->cfg.depth) c->cfg.depth->bytes(c->depth_state, st);
    st->bytes_total = st->bytes_payload + st->bytes_scales + st->bytes_lowrank + st->bytes_sparse +
                      st->bytes_meta + st->bytes_window;
    double values = (double)st->tokens * 2.0 * (double)c->kv_dim;
    st->bits_per_value = values > 0 ? 8.0 * (double)st->bytes_total / values : 0.0;
    return KVQ_OK;
}

kvq_ctx *kvq_cache_codec(kvq_cache *c, int layer, int side)
{
    if (!c || layer < 0 || layer >= c->cfg.n_layers || side < 0 || side >= N_SIDES) return NULL;
    return c->layers[layer].ctx[side];
}

/* ---- prefix sharing ------------------------------------------------------------ */

kvq_err kvq_cache_set_tokens(kvq_cache *c, int t0, const int32_t *tokens, int n)
{
    KVQ_FAIL_IF(!c || (n > 0 && !tokens), KVQ_ERR_ARG, "kvq_cache_set_tokens: NULL argument");
    KVQ_FAIL_IF(t0 < 0 || n < 0 || t0 > c->n_tokens || n > c->cfg.max_tokens - t0, KVQ_ERR_ARG,
                "kvq_cache_set_tokens: [%d, %d) leaves a gap after %d known ids or passes max_tokens %d", t0,
                t0 + n, c->n_tokens, c->cfg.max_tokens);
    memcpy(c->tokens + t0, tokens, (size_t)n * sizeof *tokens);
    if (t0 + n > c->n_tokens) c->n_tokens = t0 + n;
    return KVQ_OK;
}

kvq_err kvq_cache_prefix_load(kvq_cache *c, const int32_t *tokens, int n, int *n_loaded)
{
    KVQ_FAIL_IF(!c || !n_loaded || (n > 0 && !tokens), KVQ_ERR_ARG, "kvq_cache_prefix_load: NULL argument");
    *n_loaded = 0;
    for (int l = 0; l < c->cfg.n_layers; l++)
        KVQ_FAIL_IF(c->layers[l].len != 0, KVQ_ERR_ARG, "kvq_cache_prefix_load: layer %d is not empty", l);
    c->n_tokens = 0;
    KVQ_TRY(kvq_cache_set_tokens(c, 0, tokens, n));
    if (!c->cfg.prefix) return KVQ_OK;
    int P = c->cfg.page, m = 0;
    KVQ_TRY(c->cfg.prefix->match(c->cfg.prefix_store, tokens, n, P, &m));
    KVQ_FAIL_IF(m < 0 || m > n || m % P != 0, KVQ_ERR_CORRUPT,
                "prefix store '%s': match of %d tokens is not a multiple of page %d within %d", c->cfg.prefix->name,
                m, P, n);
    c->no_publish_below = m; /* the store has these pages already */
    /* Own buffers: a depth policy may read other layers (page scratch)
     * while these pages are appended. */
    size_t page_values = (size_t)P * (size_t)c->kv_dim;
    float *k = alloc_floats(2, page_values), *v = k + page_values;
    KVQ_FAIL_IF(!k, KVQ_ERR_NOMEM, "kvq_cache_prefix_load: out of memory");
    kvq_err e = KVQ_OK;
    for (int l = 0; l < c->cfg.n_layers && !e; l++)
        for (int i = 0; i < m / P && !e; i++) {
            e = c->cfg.prefix->load(c->cfg.prefix_store, tokens, l, i, P, k, v);
            if (!e) e = kvq_cache_append(c, l, k, v, P);
        }
    free(k);
    if (e) {
        kvq_cache_clear(c);
        return e;
    }
    *n_loaded = m;
    return KVQ_OK;
}
