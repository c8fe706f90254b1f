/*
 * ksort.c — outlier-channel rearrangement for block formats (K-sort;
 * quant-methods.md §3.2-§3.3, Trukhanov & Soloveychik arXiv 2403.20137),
 * applied offline to a model's weights so nothing is permuted at run time.
 *
 * K-sort.  Keys have channel-wise outliers; a block that mixes them with
 * normal channels takes a large shared exponent.  Per layer and per KV head
 * g we order the head's RoPE pairs by a key (descending, ties by index) and
 * move the rows of W_k (head g) and of W_q (every query head that reads g
 * under GQA) with them, so q·k is unchanged.  RoPE rotates a pair with one
 * frequency, so pairs move as units (§3.3 option a) and each keeps its own
 * frequency: the model records, per layer, the frequency index of every
 * stored pair slot as metadata `kvq.rope_pairs.N` (n_kv_heads·hs/2 integers,
 * head-major, space-separated), which the reference decoder reads into its
 * table-driven RoPE.  GGUF and safetensors have no such field, so the
 * writers refuse a model that carries one (kvq_model_has_rope_pairs).
 * Keys [§3.3 step 1 and 6]:
 *   weight : the pair's row norm in W_k, sqrt(‖w_a‖² + ‖w_b‖²) (the paper);
 *   calib  : the mean magnitude sqrt(k_a² + k_b²) of the pair in the keys of
 *            calibration text.  K = X·W_kᵀ with X the QKV input the
 *            decoder's activation hook captured (libkvq/calib.c); RoPE
 *            rotates the pair, which leaves its magnitude unchanged, so this
 *            is also the magnitude of the cached (post-RoPE) keys. [ours]
 *
 * Input-channel rearrangement for weight blocks [ours].  A codec with
 * blocks along a weight's rows (bfp, q4_0) gains when its large input
 * columns share blocks.  Two inputs can be reordered exactly by moving the
 * producing rows with them: the FFN hidden channels (rows of ffn_gate and
 * ffn_up, columns of ffn_down; SiLU·product is element-wise) and, per KV
 * head, the V channels (rows of attn_v; the matching columns of
 * attn_output for every query head of the group, since each attention
 * output channel is Σ p·v of the same V channel).  Key: the column norm of
 * the reader (ffn_down; attn_output summed over the group's heads).  No
 * metadata is needed, so such a model exports anywhere.
 *
 * Rewrites need plain weights (f32/f16/bf16): permuting encoded blocks is
 * not defined, so run these before kvq_model_quantize.
 */
#include "model_internal.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>

#define PAIRS_KEY_FMT "kvq.rope_pairs.%d"   /* metadata key of layer N's pair table */
#define PAIRS_KEY_PREFIX "kvq.rope_pairs."
#define KEY_BUF 64
#define INT_CHARS 12                        /* "-2147483648 " */

/* ---- pair geometry and the metadata table ---------------------------------------- */
static void pair_rows(const kvq_model_config *c, int j, int *a, int *b)
{
    *a = c->rope == KVQ_ROPE_ADJACENT ? 2 * j : j;
    *b = c->rope == KVQ_ROPE_ADJACENT ? 2 * j + 1 : j + c->head_size / 2;
}

static kvq_err check_llama(const kvq_model *m, const char *what)
{
    KVQ_FAIL_IF(!m, KVQ_ERR_ARG, "%s: NULL model", what);
    const kvq_model_config *c = &m->cfg;
    KVQ_FAIL_IF(c->arch != KVQ_ARCH_LLAMA, KVQ_ERR_UNSUPPORTED, "%s: architecture %s has no Q/K heads", what,
                kvq_arch_name(c->arch));
    KVQ_FAIL_IF(c->n_layers < 1 || c->n_kv_heads < 1 || c->head_size < 2 || c->head_size % 2 ||
                    c->n_heads % c->n_kv_heads,
                KVQ_ERR_SHAPE, "%s: %d layers, head size %d, %d heads over %d KV heads", what, c->n_layers,
                c->head_size, c->n_heads, c->n_kv_heads);
    return KVQ_OK;
}

int kvq_model_has_rope_pairs(const kvq_model *m)
{
    for (size_t i = 0; m && i < m->n_meta; i++)
        if (!strncmp(m->meta[i].key, PAIRS_KEY_PREFIX, strlen(PAIRS_KEY_PREFIX))) return 1;
    return 0;
}

/* Parses one layer's table into pairs[n_kv·half], checking every head's
 * entries form a permutation of 0..half−1. */
static kvq_err parse_pairs(const char *key, const char *v, int n_kv, int half, int *pairs)
{
    unsigned char *seen = calloc((size_t)half, 1);
    KVQ_FAIL_IF(!seen, KVQ_ERR_NOMEM, "%s: out of memory", key);
    kvq_err e = KVQ_OK;
    const char *p = v;
    for (int i = 0; i < n_kv * half && !e; i++) {
        char *end;
        long x = strtol(p, &end, 10);
        if (i % half == 0) memset(seen, 0, (size_t)half);
        if (end == p || x < 0 || x >= half || seen[x])
            e = KVQ_ERROR(KVQ_ERR_CORRUPT, "metadata %s: entry %d is not a pair index of a permutation of 0..%d",
                          key, i, half - 1);
        else seen[x] = 1, pairs[i] = (int)x, p = end;
    }
    while (!e && *p == ' ') p++;
    if (!e && *p) e = KVQ_ERROR(KVQ_ERR_CORRUPT, "metadata %s: more than %d entries", key, n_kv * half);
    free(seen);
    return e;
}

kvq_err kvq_model_rope_pairs(const kvq_model *m, int layer, int *pairs)
{
    KVQ_TRY(check_llama(m, "rope_pairs"));
    const kvq_model_config *c = &m->cfg;
    KVQ_FAIL_IF(layer < 0 || layer >= c->n_layers || !pairs, KVQ_ERR_ARG, "rope_pairs: layer %d of %d", layer,
                c->n_layers);
    int half = c->head_size / 2;
    char key[KEY_BUF];
    snprintf(key, sizeof key, PAIRS_KEY_FMT, layer);
    const char *v = kvq_model_meta_get(m, key);
    if (v) return parse_pairs(key, v, c->n_kv_heads, half, pairs);
    for (int g = 0; g < c->n_kv_heads; g++)
        for (int j = 0; j < half; j++) pairs[g * half + j] = j;
    return KVQ_OK;
}

/* ---- keys ------------------------------------------------------------------------- */
static kvq_err weight_f32(const kvq_model *m, const char *name, float **out, int64_t *rows, int64_t *cols)
{
    const kvq_weight *w = kvq_model_weight(m, name);
    KVQ_FAIL_IF(!w, KVQ_ERR_NOT_FOUND, "ksort: model has no %s", name);
    *rows = kvq_shape_rows(&w->shape);
    *cols = kvq_shape_cols(&w->shape);
    *out = malloc((size_t)(*rows * *cols) * sizeof **out);
    KVQ_FAIL_IF(!*out, KVQ_ERR_NOMEM, "ksort: out of memory for %s", name);
    kvq_err e = kvq_weight_rows(w, 0, *rows, *out);
    if (e) {
        free(*out);
        *out = NULL;
    }
    return e;
}

static double sumsq(const float *x, int64_t n, int64_t stride)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i * stride] * (double)x[i * stride];
    return s;
}

/* Key of every pair of one layer's W_k (pairs in stored order). */
static void weight_keys(const kvq_model_config *c, const float *wk, int64_t cols, double *keys)
{
    int hs = c->head_size, half = hs / 2;
    for (int g = 0; g < c->n_kv_heads; g++)
        for (int j = 0; j < half; j++) {
            int a, b;
            pair_rows(c, j, &a, &b);
            keys[g * half + j] = sqrt(sumsq(wk + (size_t)(g * hs + a) * (size_t)cols, cols, 1) +
                                      sumsq(wk + (size_t)(g * hs + b) * (size_t)cols, cols, 1));
        }
}

static double dotf(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* Mean pair magnitude of K = X·W_kᵀ over the captured tokens. */
static kvq_err calib_keys(const kvq_model_config *c, const kvq_calib *cal, int layer, const float *wk, int64_t cols,
                          double *keys)
{
    kvq_tensor x;
    KVQ_TRY(kvq_calib_input(cal, layer, KVQ_LIN_QKV, &x));
    int64_t T = kvq_shape_rows(&x.shape);
    KVQ_FAIL_IF(kvq_shape_cols(&x.shape) != cols || T < 1, KVQ_ERR_SHAPE,
                "ksort: calibration input of layer %d is %lld x %lld, W_k reads %lld", layer, (long long)T,
                (long long)kvq_shape_cols(&x.shape), (long long)cols);
    int hs = c->head_size, half = hs / 2;
    for (int i = 0; i < c->n_kv_heads * half; i++) keys[i] = 0;
    for (int64_t t = 0; t < T; t++) {
        const float *xt = (const float *)x.data + t * cols;
        for (int g = 0; g < c->n_kv_heads; g++)
            for (int j = 0; j < half; j++) {
                int a, b;
                pair_rows(c, j, &a, &b);
                double ka = dotf(wk + (size_t)(g * hs + a) * (size_t)cols, xt, cols);
                double kb = dotf(wk + (size_t)(g * hs + b) * (size_t)cols, xt, cols);
                keys[g * half + j] += sqrt(ka * ka + kb * kb) / (double)T;
            }
    }
    return KVQ_OK;
}

kvq_err kvq_ksort_pair_keys(const kvq_model *m, int layer, kvq_ksort_key key, const kvq_calib *cal, double *keys)
{
    KVQ_TRY(check_llama(m, "ksort"));
    KVQ_FAIL_IF(layer < 0 || layer >= m->cfg.n_layers || !keys, KVQ_ERR_ARG, "ksort: layer %d of %d", layer,
                m->cfg.n_layers);
    KVQ_FAIL_IF(key != KVQ_KSORT_WEIGHT && key != KVQ_KSORT_CALIB, KVQ_ERR_ARG, "ksort: unknown key %d", (int)key);
    KVQ_FAIL_IF(key == KVQ_KSORT_CALIB && !cal, KVQ_ERR_ARG, "ksort: the calib key needs calibration data");
    char name[KEY_BUF];
    snprintf(name, sizeof name, "blk.%d.attn_k.weight", layer);
    float *wk;
    int64_t rows, cols;
    KVQ_TRY(weight_f32(m, name, &wk, &rows, &cols));
    kvq_err e = rows == (int64_t)m->cfg.n_kv_heads * m->cfg.head_size
                    ? KVQ_OK
                    : KVQ_ERROR(KVQ_ERR_SHAPE, "ksort: %s has %lld rows", name, (long long)rows);
    if (!e && key == KVQ_KSORT_WEIGHT) weight_keys(&m->cfg, wk, cols, keys);
    if (!e && key == KVQ_KSORT_CALIB) e = calib_keys(&m->cfg, cal, layer, wk, cols, keys);
    free(wk);
    return e;
}

/* ---- orders ------------------------------------------------------------------------ */
typedef struct {
    double key;
    int    idx;
} keyed;

static int by_key_desc(const void *pa, const void *pb)
{
    const keyed *a = pa, *b = pb;
    if (a->key != b->key) return a->key > b->key ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* perm[j] = index of the j-th largest of keys[n] (ties by index). */
static kvq_err order_desc(const double *keys, int n, int *perm)
{
    keyed *k = malloc((size_t)n * sizeof *k);
    KVQ_FAIL_IF(!k, KVQ_ERR_NOMEM, "ksort: out of memory");
    for (int i = 0; i < n; i++) k[i] = (keyed){keys[i], i};
    qsort(k, (size_t)n, sizeof *k, by_key_desc);
    for (int i = 0; i < n; i++) perm[i] = k[i].idx;
    free(k);
    return KVQ_OK;
}

kvq_err kvq_ksort_plan(const kvq_model *m, kvq_ksort_key key, const kvq_calib *cal, int *perm)
{
    KVQ_TRY(check_llama(m, "ksort"));
    KVQ_FAIL_IF(!perm, KVQ_ERR_ARG, "ksort: NULL perm");
    const kvq_model_config *c = &m->cfg;
    int half = c->head_size / 2, per_layer = c->n_kv_heads * half;
    double *keys = malloc((size_t)per_layer * sizeof *keys);
    KVQ_FAIL_IF(!keys, KVQ_ERR_NOMEM, "ksort: out of memory");
    kvq_err e = KVQ_OK;
    for (int l = 0; l < c->n_layers && !e; l++) {
        e = kvq_ksort_pair_keys(m, l, key, cal, keys);
        for (int g = 0; g < c->n_kv_heads && !e; g++)
            e = order_desc(keys + g * half, half, perm + (size_t)l * (size_t)per_layer + (size_t)g * (size_t)half);
    }
    free(keys);
    return e;
}

/* ---- rewriting the model ------------------------------------------------------------ */
/* How one weight moves: out row r = in row rowmap[r], out column c = in
 * column colmap[c]; NULL = unchanged. */
typedef struct {
    int *rowmap, *colmap;
    int64_t nrow, ncol;   /* lengths of the maps (what the config implies) */
} wmove;

typedef struct {
    const kvq_model *in;
    wmove *mv;            /* [in->n_w] */
    int   *arena;         /* every map, owned */
    size_t arena_n, arena_used;
} rewrite;

static int *take(rewrite *rw, size_t n)
{
    assert(rw->arena_used + n <= rw->arena_n);
    int *p = rw->arena + rw->arena_used;
    rw->arena_used += n;
    return p;
}

static wmove *move_of(rewrite *rw, const char *what, int layer)
{
    char name[KEY_BUF];
    snprintf(name, sizeof name, "blk.%d.%s.weight", layer, what);
    const kvq_weight *w = kvq_model_weight(rw->in, name);
    return w ? &rw->mv[w - rw->in->w] : NULL;
}

/* Rows of every head of KV group g (and its query heads) for pair perm p. */
static void qk_rowmaps(const kvq_model_config *c, int g, const int *p, int *mk, int *mq)
{
    int hs = c->head_size, kv_mul = c->n_heads / c->n_kv_heads;
    for (int j = 0; j < hs / 2; j++) {
        int da, db, sa, sb;
        pair_rows(c, j, &da, &db);
        pair_rows(c, p[j], &sa, &sb);
        mk[g * hs + da] = g * hs + sa;
        mk[g * hs + db] = g * hs + sb;
        for (int i = 0; i < kv_mul; i++) {
            int h = (g * kv_mul + i) * hs;
            mq[h + da] = h + sa;
            mq[h + db] = h + sb;
        }
    }
}

static kvq_err plan_qk(rewrite *rw, int l, const int *perm)
{
    const kvq_model_config *c = &rw->in->cfg;
    wmove *q = move_of(rw, "attn_q", l), *k = move_of(rw, "attn_k", l);
    KVQ_FAIL_IF(!q || !k, KVQ_ERR_NOT_FOUND, "ksort: layer %d lacks attn_q or attn_k", l);
    q->rowmap = take(rw, (size_t)(q->nrow = c->n_heads * c->head_size));
    k->rowmap = take(rw, (size_t)(k->nrow = c->n_kv_heads * c->head_size));
    int half = c->head_size / 2;
    for (int g = 0; g < c->n_kv_heads; g++)
        qk_rowmaps(c, g, perm + (size_t)l * (size_t)(c->n_kv_heads * half) + (size_t)g * (size_t)half, k->rowmap,
                   q->rowmap);
    return KVQ_OK;
}

/* Column norms² of a weight (f32 copy). */
static kvq_err col_norms(const kvq_model *m, const char *name, double **out, int64_t *ncols)
{
    float *w;
    int64_t rows, cols;
    KVQ_TRY(weight_f32(m, name, &w, &rows, &cols));
    *out = malloc((size_t)cols * sizeof **out);
    if (*out)
        for (int64_t i = 0; i < cols; i++) (*out)[i] = sumsq(w + i, rows, cols);
    free(w);
    KVQ_FAIL_IF(!*out, KVQ_ERR_NOMEM, "ksort: out of memory");
    *ncols = cols;
    return KVQ_OK;
}

/* FFN hidden channels, ordered by ffn_down's column norms. */
static kvq_err plan_ffn(rewrite *rw, int l)
{
    const kvq_model_config *c = &rw->in->cfg;
    wmove *w1 = move_of(rw, "ffn_gate", l), *w3 = move_of(rw, "ffn_up", l),
          *w2 = move_of(rw, "ffn_down", l);
    KVQ_FAIL_IF(!w1 || !w3 || !w2, KVQ_ERR_NOT_FOUND, "ksort: layer %d lacks an FFN weight", l);
    double *key;
    int64_t n;
    KVQ_TRY(col_norms(rw->in, rw->in->w[w2 - rw->mv].name, &key, &n));
    kvq_err e = n == c->hidden_dim ? KVQ_OK : KVQ_ERROR(KVQ_ERR_SHAPE, "ksort: ffn_down of layer %d reads %lld", l,
                                                        (long long)n);
    if (!e) {
        w2->colmap = take(rw, (size_t)n);
        e = order_desc(key, (int)n, w2->colmap);
        w1->rowmap = w3->rowmap = w2->colmap;
        w2->ncol = w1->nrow = w3->nrow = n;
    }
    free(key);
    return e;
}

/* V channels per KV group, ordered by attn_output's column norms summed
 * over the group's query heads. */
static kvq_err plan_v(rewrite *rw, int l)
{
    const kvq_model_config *c = &rw->in->cfg;
    wmove *wv = move_of(rw, "attn_v", l), *wo = move_of(rw, "attn_output", l);
    KVQ_FAIL_IF(!wv || !wo, KVQ_ERR_NOT_FOUND, "ksort: layer %d lacks attn_v or attn_output", l);
    double *key;
    int64_t n;
    KVQ_TRY(col_norms(rw->in, rw->in->w[wo - rw->mv].name, &key, &n));
    int hs = c->head_size, kv_mul = c->n_heads / c->n_kv_heads;
    kvq_err e = n == (int64_t)c->n_heads * hs ? KVQ_OK : KVQ_ERROR(KVQ_ERR_SHAPE, "ksort: attn_output reads %lld", (long long)n);
    double *gk = e ? NULL : malloc((size_t)hs * sizeof *gk);
    int *p = e ? NULL : malloc((size_t)hs * sizeof *p);
    if (!e && (!gk || !p)) e = KVQ_ERROR(KVQ_ERR_NOMEM, "ksort: out of memory");
    if (!e) {
        wv->rowmap = take(rw, (size_t)(wv->nrow = c->n_kv_heads * hs));
        wo->colmap = take(rw, (size_t)(wo->ncol = n));
    }
    for (int g = 0; g < c->n_kv_heads && !e; g++) {
        for (int j = 0; j < hs; j++) {
            gk[j] = 0;
            for (int i = 0; i < kv_mul; i++) gk[j] += key[(g * kv_mul + i) * hs + j];
        }
        e = order_desc(gk, hs, p);
        for (int j = 0; j < hs && !e; j++) {
            wv->rowmap[g * hs + j] = g * hs + p[j];
            for (int i = 0; i < kv_mul; i++) wo->colmap[(g * kv_mul + i) * hs + j] = (g * kv_mul + i) * hs + p[j];
        }
    }
    free(key);
    free(gk);
    free(p);
    return e;
}

/* One weight of the output: plain bytes moved by its maps. */
static kvq_err move_weight(kvq_model *out, const kvq_weight *w, const wmove *mv)
{
    KVQ_FAIL_IF(w->codec, KVQ_ERR_UNSUPPORTED,
                "ksort: %s is encoded (%s); rearrange the f32 model before quantizing it", w->name,
                kvq_ctx_codec(w->codec)->name);
    size_t es = kvq_dtype_size(w->dtype);
    int64_t rows = kvq_shape_rows(&w->shape), cols = kvq_shape_cols(&w->shape);
    KVQ_FAIL_IF((mv->rowmap && rows != mv->nrow) || (mv->colmap && cols != mv->ncol), KVQ_ERR_SHAPE,
                "ksort: %s is %lld x %lld, the configuration implies %lld rows / %lld columns", w->name,
                (long long)rows, (long long)cols, (long long)(mv->rowmap ? mv->nrow : rows),
                (long long)(mv->colmap ? mv->ncol : cols));
    uint8_t *p = malloc(w->size ? w->size : 1);
    KVQ_FAIL_IF(!p, KVQ_ERR_NOMEM, "ksort: out of memory for %s", w->name);
    const uint8_t *src = w->data;
    size_t rb = (size_t)cols * es;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *sr = src + (size_t)(mv->rowmap ? mv->rowmap[r] : r) * rb;
        uint8_t *dr = p + (size_t)r * rb;
        if (!mv->colmap) memcpy(dr, sr, rb);
        else
            for (int64_t c = 0; c < cols; c++) memcpy(dr + (size_t)c * es, sr + (size_t)mv->colmap[c] * es, es);
    }
    KVQ_TRY(kvq_model_own(out, p));
    return kvq_model_add(out, w->name, &w->shape, w->dtype, NULL, p, w->size);
}

/* Layer l's new pair table: slot j takes the frequency of old slot perm[j]. */
static kvq_err put_pairs(kvq_model *out, const kvq_model *in, int l, const int *perm)
{
    const kvq_model_config *c = &in->cfg;
    int half = c->head_size / 2, n = c->n_kv_heads * half;
    int *old = malloc((size_t)n * sizeof *old);
    char *v = malloc((size_t)n * INT_CHARS + 1);
    kvq_err e = !old || !v ? KVQ_ERROR(KVQ_ERR_NOMEM, "ksort: out of memory") : kvq_model_rope_pairs(in, l, old);
    size_t k = 0;
    for (int i = 0; i < n && !e; i++)
        k += (size_t)snprintf(v + k, INT_CHARS + 1, i ? " %d" : "%d", old[(i / half) * half + perm[i]]);
    char key[KEY_BUF];
    snprintf(key, sizeof key, PAIRS_KEY_FMT, l);
    if (!e) e = kvq_model_add_meta(out, key, v);
    free(old);
    free(v);
    return e;
}

static kvq_err assemble(const rewrite *rw, const kvq_ksort_opts *o, const int *perm, kvq_model *out)
{
    const kvq_model *in = rw->in;
    out->cfg = in->cfg;
    out->version = 1;
    for (size_t i = 0; i < in->n_meta; i++)
        if (!o->qk || strncmp(in->meta[i].key, PAIRS_KEY_PREFIX, strlen(PAIRS_KEY_PREFIX)))
            KVQ_TRY(kvq_model_add_meta(out, in->meta[i].key, in->meta[i].value));
    if (in->tok) KVQ_TRY(kvq_model_set_tokenizer(out, in->tok, in->tok_n));
    for (int l = 0; o->qk && l < in->cfg.n_layers; l++)
        KVQ_TRY(put_pairs(out, in, l, perm + (size_t)l * (size_t)(in->cfg.n_kv_heads * (in->cfg.head_size / 2))));
    for (size_t i = 0; i < in->n_w; i++) KVQ_TRY(move_weight(out, &in->w[i], &rw->mv[i]));
    return KVQ_OK;
}

/* Every head's entries of an explicit plan form a permutation of 0..half−1. */
static kvq_err check_plan(const int *perm, size_t n_heads, int half)
{
    unsigned char *seen = malloc((size_t)half);
    KVQ_FAIL_IF(!seen, KVQ_ERR_NOMEM, "ksort: out of memory");
    kvq_err e = KVQ_OK;
    for (size_t h = 0; h < n_heads && !e; h++) {
        memset(seen, 0, (size_t)half);
        for (int j = 0; j < half && !e; j++) {
            int p = perm[h * (size_t)half + (size_t)j];
            if (p < 0 || p >= half || seen[p])
                e = KVQ_ERROR(KVQ_ERR_ARG, "ksort: perm of head %zu is not a permutation of 0..%d (entry %d = %d)",
                              h, half - 1, j, p);
            else seen[p] = 1;
        }
    }
    free(seen);
    return e;
}

static kvq_err plan_all(rewrite *rw, const kvq_ksort_opts *o, const int *perm)
{
    for (int l = 0; l < rw->in->cfg.n_layers; l++) {
        if (o->qk) KVQ_TRY(plan_qk(rw, l, perm));
        if (o->inputs) KVQ_TRY(plan_ffn(rw, l));
        if (o->inputs) KVQ_TRY(plan_v(rw, l));
    }
    return KVQ_OK;
}

kvq_err kvq_model_ksort(const kvq_model *in, const kvq_ksort_opts *o, kvq_model **out)
{
    KVQ_FAIL_IF(!o || !out, KVQ_ERR_ARG, "ksort: NULL argument");
    *out = NULL;
    KVQ_TRY(check_llama(in, "ksort"));
    const kvq_model_config *c = &in->cfg;
    size_t per_layer = (size_t)c->n_kv_heads * (size_t)(c->head_size / 2);
    size_t n_perm = (size_t)c->n_layers * per_layer;
    /* maps: Q and K rows, FFN hidden (shared by three weights), V rows and O columns */
    size_t q_dim = (size_t)c->n_heads * (size_t)c->head_size, kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_size;
    rewrite rw = {in, NULL, NULL, (size_t)c->n_layers * (q_dim + kv_dim + (size_t)c->hidden_dim + kv_dim + q_dim), 0};
    int *plan = o->qk && !o->perm ? malloc(n_perm * sizeof *plan) : NULL;
    rw.mv = calloc(in->n_w ? in->n_w : 1, sizeof *rw.mv);
    rw.arena = malloc(rw.arena_n * sizeof *rw.arena);
    kvq_model *m = NULL;
    kvq_err e = !rw.mv || !rw.arena || (o->qk && !o->perm && !plan) ? KVQ_ERROR(KVQ_ERR_NOMEM, "ksort: out of memory")
                                                                    : KVQ_OK;
    if (!e && plan) e = kvq_ksort_plan(in, o->key, o->calib, plan);
    const int *perm = o->perm ? o->perm : plan;
    if (!e && o->perm) e = check_plan(o->perm, n_perm / (size_t)(c->head_size / 2), c->head_size / 2);
    if (!e) e = plan_all(&rw, o, perm);
    if (!e) e = kvq_model_new(KVQ_FORMAT_KVQ, &m);
    if (!e) e = assemble(&rw, o, perm, m);
    free(plan);
    free(rw.mv);
    free(rw.arena);
    if (e) {
        kvq_model_free(m);
        return e;
    }
    *out = m;
    return KVQ_OK;
}
