/*
 * plt_trie.c — the PLT prefix store (cache-methods.md §3.3, layer 1): exact
 * prefix sharing across sequences through a trie over token ids, after
 * SGLang's RadixAttention radix tree, behind the cache's prefix-store plug
 * point (kvq.h "KV cache hooks", plug point 2).
 *
 * The paper (papers/abstracts.md, PLT) shares KV across "semantically
 * equivalent" prefixes scored by d_T = −log2 P_M(s ∧ s'); §3.2 shows why
 * only identical token prefixes reproduce KV, so this store matches exact
 * page-aligned prefixes only, and d_T is reported by the measurement
 * command (cli/cmd_plt.c) as a statistic, never used to merge.
 *
 * [ours] Every edge is exactly one page of P token ids (the cache publishes
 * and loads whole pages, so a match can never end inside an edge and no
 * node split is needed; §3.3's multi-page segments would only merge chains
 * of single-child nodes).  A node holds its page's K/V for every layer as
 * the cache publishes them (layer by layer); match() counts a page only
 * once all layers are present.  Eviction frees least-recently-used
 * unlocked leaves (parents then become leaves), as §3.3 specifies.
 */
#include "kvq_internal.h"

#include <stdlib.h>

#define TRIE_SIDES 2 /* K, V */

typedef struct trie_node {
    struct trie_node  *parent;
    struct trie_node **child;      /* [n_child]                              */
    int                n_child, cap_child;
    int32_t           *tok;        /* [page] ids of this node's page          */
    uint8_t          **kv;         /* [n_layers] K payload then V payload     */
    uint32_t          *len;        /* [n_layers][2] payload bytes (0: absent) */
    int                n_have;     /* layers present                          */
    int                lock;       /* sequences pinning this node             */
    uint64_t           last;       /* LRU clock of the last use               */
} trie_node;

struct kvq_plt_store {
    kvq_plt_store_config cfg;
    kvq_ctx            *ctx;        /* NULL: f32 copies                       */
    trie_node           root;       /* the empty prefix (no page)             */
    uint64_t            clock;
    kvq_plt_store_stats st;
};

static size_t page_values(const kvq_plt_store *s)
{
    return (size_t)s->cfg.page * (size_t)s->cfg.n_kv_heads * (size_t)s->cfg.head_size;
}

/* ---- nodes ------------------------------------------------------------------- */

static trie_node *node_new(kvq_plt_store *s, trie_node *parent, const int32_t *tok)
{
    trie_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->tok = malloc((size_t)s->cfg.page * sizeof *n->tok);
    n->kv = calloc((size_t)s->cfg.n_layers, sizeof *n->kv);
    n->len = calloc((size_t)s->cfg.n_layers * TRIE_SIDES, sizeof *n->len);
    if (parent->n_child == parent->cap_child) {
        int cap = parent->cap_child ? 2 * parent->cap_child : 4;
        trie_node **c = realloc(parent->child, (size_t)cap * sizeof *c);
        if (c) parent->child = c, parent->cap_child = cap;
    }
    if (!n->tok || !n->kv || !n->len || parent->n_child == parent->cap_child) {
        free(n->tok), free(n->kv), free(n->len), free(n);
        return NULL;
    }
    memcpy(n->tok, tok, (size_t)s->cfg.page * sizeof *tok);
    n->parent = parent;
    parent->child[parent->n_child++] = n;
    s->st.nodes++;
    s->st.bytes_meta += (uint64_t)s->cfg.page * sizeof(int32_t);
    return n;
}

/* Free a leaf's pages and unlink it from its parent. */
static void node_drop(kvq_plt_store *s, trie_node *n)
{
    for (int l = 0; l < s->cfg.n_layers; l++)
        if (n->kv[l]) {
            s->st.bytes_payload -= (uint64_t)n->len[2 * l] + n->len[2 * l + 1];
            s->st.bytes_meta -= TRIE_SIDES * sizeof(uint32_t);
            s->st.layer_pages--;
            free(n->kv[l]);
        }
    trie_node *p = n->parent;
    for (int i = 0; i < p->n_child; i++)
        if (p->child[i] == n) {
            p->child[i] = p->child[--p->n_child];
            break;
        }
    s->st.nodes--;
    s->st.bytes_meta -= (uint64_t)s->cfg.page * sizeof(int32_t);
    free(n->child), free(n->tok), free(n->kv), free(n->len), free(n);
}

static void subtree_free(kvq_plt_store *s, trie_node *n)
{
    while (n->n_child) subtree_free(s, n->child[n->n_child - 1]);
    if (n != &s->root) node_drop(s, n);
}

static trie_node *find_child(const kvq_plt_store *s, const trie_node *n, const int32_t *tok)
{
    for (int i = 0; i < n->n_child; i++)
        if (n->child[i]->tok[0] == tok[0] && !memcmp(n->child[i]->tok, tok, (size_t)s->cfg.page * sizeof *tok))
            return n->child[i];
    return NULL;
}

/* Node of page `index` on the path of tokens, or NULL. */
static trie_node *find_page(const kvq_plt_store *s, const int32_t *tokens, int index)
{
    const trie_node *n = &s->root;
    for (int i = 0; i <= index && n; i++) n = find_child(s, n, tokens + (size_t)i * (size_t)s->cfg.page);
    return (trie_node *)(uintptr_t)n;
}

/* ---- eviction ------------------------------------------------------------------ */

/* Least recently used unlocked leaf below n other than `keep`. */
static trie_node *lru_leaf(trie_node *n, const trie_node *keep, trie_node *best)
{
    for (int i = 0; i < n->n_child; i++) {
        trie_node *c = n->child[i];
        if (c->n_child) best = lru_leaf(c, keep, best);
        else if (c != keep && c->lock == 0 && (!best || c->last < best->last)) best = c;
    }
    return best;
}

static void evict_to(kvq_plt_store *s, uint64_t target, const trie_node *keep)
{
    while (s->st.bytes_payload > target) {
        trie_node *v = lru_leaf(&s->root, keep, NULL);
        if (!v) break;
        node_drop(s, v);
        s->st.evicted++;
    }
}

kvq_err kvq_plt_store_evict(kvq_plt_store *s, uint64_t target_bytes)
{
    KVQ_FAIL_IF(!s, KVQ_ERR_ARG, "kvq_plt_store_evict: NULL store");
    evict_to(s, target_bytes, NULL);
    return KVQ_OK;
}

/* ---- create / free ------------------------------------------------------------- */

kvq_err kvq_plt_store_create(const kvq_plt_store_config *cfg, kvq_plt_store **out)
{
    KVQ_FAIL_IF(!cfg || !out, KVQ_ERR_ARG, "kvq_plt_store_create: NULL argument");
    *out = NULL;
    KVQ_FAIL_IF(cfg->n_layers <= 0 || cfg->n_kv_heads <= 0 || cfg->head_size <= 0 || cfg->page <= 0 ||
                    (int64_t)cfg->page * cfg->n_kv_heads * cfg->head_size > KVQ_MAX_DIM,
                KVQ_ERR_ARG, "plt store: layers %d, kv heads %d, head size %d, page %d", cfg->n_layers,
                cfg->n_kv_heads, cfg->head_size, cfg->page);
    kvq_plt_store *s = calloc(1, sizeof *s);
    KVQ_FAIL_IF(!s, KVQ_ERR_NOMEM, "plt store: out of memory");
    s->cfg = *cfg;
    s->cfg.spec = NULL;
    kvq_err e = cfg->spec ? kvq_ctx_create(cfg->spec, &s->ctx) : KVQ_OK;
    if (e) {
        kvq_plt_store_free(s);
        return e;
    }
    *out = s;
    return KVQ_OK;
}

void kvq_plt_store_free(kvq_plt_store *s)
{
    if (!s) return;
    subtree_free(s, &s->root);
    free(s->root.child);
    kvq_ctx_free(s->ctx);
    free(s);
}

kvq_err kvq_plt_store_stats_get(const kvq_plt_store *s, kvq_plt_store_stats *st)
{
    KVQ_FAIL_IF(!s || !st, KVQ_ERR_ARG, "kvq_plt_store_stats_get: NULL argument");
    *st = s->st;
    return KVQ_OK;
}

/* ---- page payloads ------------------------------------------------------------- */

/* Encode K and V of one page into one malloc'd buffer. */
static kvq_err page_encode(kvq_plt_store *s, const float *k, const float *v, uint8_t **out, uint32_t len[2])
{
    size_t nv = page_values(s);
    int64_t dims[3] = {s->cfg.page, s->cfg.n_kv_heads, s->cfg.head_size};
    kvq_shape sh = kvq_shape_make(3, dims);
    size_t cap = s->ctx ? kvq_ctx_payload_bound(s->ctx, &sh) : nv * sizeof(float);
    uint8_t *buf = malloc(TRIE_SIDES * cap);
    KVQ_FAIL_IF(!buf, KVQ_ERR_NOMEM, "plt store: out of memory for a page");
    const float *src[TRIE_SIDES] = {k, v};
    size_t used = 0;
    for (int side = 0; side < TRIE_SIDES; side++) {
        size_t n = nv * sizeof(float);
        kvq_err e = KVQ_OK;
        if (s->ctx) {
            kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, (void *)(uintptr_t)src[side], 3, dims);
            e = kvq_ctx_encode_payload(s->ctx, &t, buf + used, cap, &n);
        } else {
            memcpy(buf + used, src[side], n);
        }
        if (e || n > UINT32_MAX) {
            free(buf);
            return e ? e : KVQ_ERROR(KVQ_ERR_SHAPE, "plt store: page payload of %zu bytes", n);
        }
        len[side] = (uint32_t)n;
        used += n;
    }
    *out = buf;
    return KVQ_OK;
}

static kvq_err page_decode(kvq_plt_store *s, const trie_node *n, int layer, float *k, float *v)
{
    size_t nv = page_values(s);
    int64_t dims[3] = {s->cfg.page, s->cfg.n_kv_heads, s->cfg.head_size};
    float *dst[TRIE_SIDES] = {k, v};
    const uint8_t *p = n->kv[layer];
    for (int side = 0; side < TRIE_SIDES; side++) {
        uint32_t len = n->len[2 * layer + side];
        if (s->ctx) {
            kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, dst[side], 3, dims);
            KVQ_TRY(kvq_ctx_decode_payload(s->ctx, p, len, &t));
        } else {
            memcpy(dst[side], p, nv * sizeof(float));
        }
        p += len;
    }
    return KVQ_OK;
}

/* ---- the kvq_prefix_store_i functions ------------------------------------------ */

static kvq_err check_page(const kvq_plt_store *s, int page, const char *fn)
{
    KVQ_FAIL_IF(page != s->cfg.page, KVQ_ERR_SHAPE, "plt store %s: cache page %d, store page %d", fn, page,
                s->cfg.page);
    return KVQ_OK;
}

static kvq_err store_match(void *store, const int32_t *tokens, int n, int page, int *n_match)
{
    kvq_plt_store *s = store;
    KVQ_TRY(check_page(s, page, "match"));
    trie_node *node = &s->root;
    int m = 0;
    s->st.lookups++;
    s->clock++;
    while (m + page <= n) {
        trie_node *c = find_child(s, node, tokens + m);
        if (!c || c->n_have < s->cfg.n_layers) break;
        c->last = s->clock;
        node = c;
        m += page;
    }
    s->st.hit_tokens += (uint64_t)m;
    *n_match = m;
    return KVQ_OK;
}

static kvq_err store_load(void *store, const int32_t *tokens, int layer, int index, int page, float *k, float *v)
{
    kvq_plt_store *s = store;
    KVQ_TRY(check_page(s, page, "load"));
    KVQ_FAIL_IF(layer < 0 || layer >= s->cfg.n_layers || index < 0, KVQ_ERR_ARG,
                "plt store load: layer %d / page %d outside the store", layer, index);
    const trie_node *n = find_page(s, tokens, index);
    KVQ_FAIL_IF(!n || !n->kv[layer], KVQ_ERR_NOT_FOUND, "plt store: page %d of layer %d is not stored", index,
                layer);
    return page_decode(s, n, layer, k, v);
}

/* Node of page `index` on tokens' path, creating missing nodes (a parent
 * evicted since its own publish comes back empty: match stops there). */
static kvq_err path_node(kvq_plt_store *s, const int32_t *tokens, int index, trie_node **out)
{
    trie_node *n = &s->root;
    for (int i = 0; i <= index; i++) {
        const int32_t *tok = tokens + (size_t)i * (size_t)s->cfg.page;
        trie_node *c = find_child(s, n, tok);
        if (!c) c = node_new(s, n, tok);
        KVQ_FAIL_IF(!c, KVQ_ERR_NOMEM, "plt store: out of memory for a trie node");
        c->last = s->clock;
        n = c;
    }
    *out = n;
    return KVQ_OK;
}

static kvq_err store_publish(void *store, const int32_t *tokens, const kvq_kv_page *pg)
{
    kvq_plt_store *s = store;
    KVQ_TRY(check_page(s, pg->n_tokens, "publish"));
    KVQ_FAIL_IF(pg->layer < 0 || pg->layer >= s->cfg.n_layers || pg->index < 0 || pg->n_kv_heads != s->cfg.n_kv_heads ||
                    pg->head_size != s->cfg.head_size,
                KVQ_ERR_SHAPE, "plt store publish: layer %d page %d of %d x %d does not fit %d layers of %d x %d",
                pg->layer, pg->index, pg->n_kv_heads, pg->head_size, s->cfg.n_layers, s->cfg.n_kv_heads,
                s->cfg.head_size);
    s->clock++;
    s->st.published++;
    trie_node *n = NULL;
    KVQ_TRY(path_node(s, tokens, pg->index, &n));
    if (n->kv[pg->layer]) { /* the same prefix is already stored: share it */
        s->st.dedup++;
        s->st.bytes_shared += (uint64_t)n->len[2 * pg->layer] + n->len[2 * pg->layer + 1];
        return KVQ_OK;
    }
    uint32_t len[TRIE_SIDES];
    KVQ_TRY(page_encode(s, pg->k, pg->v, &n->kv[pg->layer], len));
    n->len[2 * pg->layer] = len[0];
    n->len[2 * pg->layer + 1] = len[1];
    n->n_have++;
    s->st.layer_pages++;
    s->st.bytes_payload += (uint64_t)len[0] + len[1];
    s->st.bytes_meta += TRIE_SIDES * sizeof(uint32_t);
    if (s->cfg.budget_bytes && s->st.bytes_payload > s->cfg.budget_bytes) {
        evict_to(s, s->cfg.budget_bytes, n);
        if (s->st.bytes_payload > s->cfg.budget_bytes) { /* only locked or this page left */
            s->st.bytes_payload -= (uint64_t)len[0] + len[1];
            s->st.bytes_meta -= TRIE_SIDES * sizeof(uint32_t);
            s->st.layer_pages--;
            s->st.rejected++;
            free(n->kv[pg->layer]);
            n->kv[pg->layer] = NULL;
            n->len[2 * pg->layer] = n->len[2 * pg->layer + 1] = 0;
            n->n_have--;
        }
    }
    return KVQ_OK;
}

static const kvq_prefix_store_i plt_iface = {
    .abi = KVQ_PREFIX_STORE_ABI, .name = "plt-trie",
    .match = store_match, .load = store_load, .publish = store_publish,
};

const kvq_prefix_store_i *kvq_plt_store_iface(void) { return &plt_iface; }

/* ---- locks --------------------------------------------------------------------- */

static kvq_err lock_path(kvq_plt_store *s, const int32_t *tokens, int n, int delta, int *done)
{
    KVQ_FAIL_IF(!s || (n > 0 && !tokens) || n < 0, KVQ_ERR_ARG, "plt store lock: bad argument");
    int P = s->cfg.page, m = 0;
    trie_node *node = &s->root;
    while (m + P <= n) {
        trie_node *c = find_child(s, node, tokens + m);
        if (!c || (delta > 0 && c->n_have < s->cfg.n_layers)) break;
        node = c;
        m += P;
    }
    KVQ_FAIL_IF(delta < 0 && m != n, KVQ_ERR_ARG, "plt store unlock: %d tokens were not locked (path ends at %d)", n,
                m);
    for (trie_node *c = node; c != &s->root; c = c->parent) {
        KVQ_FAIL_IF(delta < 0 && c->lock <= 0, KVQ_ERR_ARG, "plt store unlock: node not locked");
        c->lock += delta;
    }
    if (done) *done = m;
    return KVQ_OK;
}

kvq_err kvq_plt_store_lock(kvq_plt_store *s, const int32_t *tokens, int n, int *n_locked)
{
    KVQ_FAIL_IF(!n_locked, KVQ_ERR_ARG, "kvq_plt_store_lock: NULL n_locked");
    return lock_path(s, tokens, n, 1, n_locked);
}

kvq_err kvq_plt_store_unlock(kvq_plt_store *s, const int32_t *tokens, int n_locked)
{
    KVQ_FAIL_IF(s && n_locked % s->cfg.page, KVQ_ERR_ARG, "plt store unlock: %d is not a multiple of page %d",
                n_locked, s->cfg.page);
    return lock_path(s, tokens, n_locked, -1, NULL);
}
