/*
 * cb.c — Quasicryth codebooks (papers/quasicryth.md §5): unigrams,
 * bigrams and n-grams of the Fibonacci lengths 3 … 144, ranked by count.
 *
 * Counting is exact, not the reference's pruned approximation [ours]: an
 * n-gram can repeat only where its shorter prefix repeats, so level k
 * counts only the windows whose level k−1 prefix occurred twice.  Ties are
 * broken by first occurrence, so output does not depend on the C library.
 * Windows are identified by a polynomial rolling hash; a collision can
 * only merge two counts, never corrupt output, because every lookup
 * compares the actual word indices.
 *
 * Serialisation (then LZMA): LEB128 counts n[1..11]; per unigram LEB128
 * length + bytes; per n-gram entry its unigram indices as LEB128.
 */
#include "qcx_internal.h"

#include <pthread.h>
#include <stdlib.h>

#define HASH_BASE 0x9E3779B97F4A7C15ull /* odd multiplier of the rolling hash */
#define N_TIERS   7
#define MAX_UNI   (1u << 22)            /* cap on unigram entries            */

const unsigned qcx_level_len[QCX_NLEV] = {1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144};

/* §5.1, columns uni, bi, 3g … 144g, rows by word count. */
static const size_t tier_limit[N_TIERS] = {5000, 50000, 200000, 500000, 2000000, 10000000,
                                           (size_t)-1};
static const uint32_t tier_size[N_TIERS][QCX_NLEV - 1] = {
    {509, 509, 350, 100, 50, 0, 0, 0, 0, 0, 0},
    {1000, 509, 500, 200, 100, 50, 0, 0, 0, 0, 0},
    {4000, 2000, 1000, 500, 200, 100, 50, 0, 0, 0, 0},
    {8000, 4000, 2000, 1000, 500, 300, 100, 50, 0, 0, 0},
    {16000, 8000, 4000, 2000, 1000, 1000, 500, 200, 100, 0, 0},
    {32000, 16000, 8000, 4000, 2000, 2000, 1000, 500, 200, 200, 100},
    {64000, 32000, 32000, 16000, 4000, 4000, 2000, 2000, 1000, 1000, 500},
};

void qcx_cb_sizes(size_t nw, int level, uint32_t n[QCX_NLEV])
{
    /* level scales the n-gram tables: ×½ at 1-2, ×1 at 3-6, ×2 at 7-8, ×4 at 9 */
    static const unsigned num[10] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 8};
    unsigned t = 0;
    while (nw >= tier_limit[t]) t++;
    n[0] = 0;
    for (unsigned lv = 1; lv < QCX_NLEV; lv++) n[lv] = tier_size[t][lv - 1] * num[level] / 2;
    /* [ours] with context-modelled indices every repeated word is worth a
     * unigram entry; the table value is only a floor */
    n[QCX_LV_UNI] = MAX_UNI;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    return x;
}

static uint64_t window_hash(const qcx_cb *cb, size_t p, unsigned n, const uint64_t *pw)
{
    return cb->prefix[p + n] - cb->prefix[p] * pw[n];
}

typedef struct {
    uint64_t key;
    uint32_t count, first;
} gram_slot;

typedef struct {
    uint32_t count, first, vocab;
} rank_item;

static int rank_cmp(const void *a, const void *b)
{
    const rank_item *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

static kvq_err pick_unigrams(qcx_cb *cb, const qcx_words *w)
{
    rank_item *r = malloc((w->n_vocab + 1) * sizeof *r);
    cb->vocab_to_uni = malloc((w->n_vocab + 1) * sizeof *cb->vocab_to_uni);
    KVQ_FAIL_IF(!r || !cb->vocab_to_uni, KVQ_ERR_NOMEM, "unigram ranking of %zu", w->n_vocab);
    size_t m = 0;
    for (size_t v = 0; v < w->n_vocab; v++) {
        cb->vocab_to_uni[v] = QCX_NONE;
        if (w->count[v] >= 2) r[m++] = (rank_item){w->count[v], (uint32_t)v, (uint32_t)v};
    }
    qsort(r, m, sizeof *r, rank_cmp); /* vocab ids are in first-occurrence order */
    if (m > cb->n[QCX_LV_UNI]) m = cb->n[QCX_LV_UNI];
    cb->n[QCX_LV_UNI] = (uint32_t)m;
    cb->uni_off = malloc((m + 1) * sizeof *cb->uni_off);
    cb->uni_len = malloc(m + 1);
    kvq_err e = cb->uni_off && cb->uni_len ? KVQ_OK : KVQ_ERROR(KVQ_ERR_NOMEM, "unigrams");
    for (size_t i = 0; i < m && e == KVQ_OK; i++) {
        uint32_t v = r[i].vocab;
        cb->vocab_to_uni[v] = (uint32_t)i;
        cb->uni_off[i] = (uint32_t)cb->uni_bytes.n;
        cb->uni_len[i] = w->len[v];
        e = kvq_buf_put(&cb->uni_bytes, w->bytes.p + w->off[v], w->len[v]);
    }
    free(r);
    return e;
}

/* Counts windows of length len at positions with cand[p] set; then clears
 * cand[p] where the window is not repeated and fills rank items. */
static kvq_err count_level(const qcx_cb *cb, size_t nw, unsigned len, uint8_t *cand,
                           const uint64_t *pw, rank_item **items, size_t *n_items)
{
    size_t n_cand = 0;
    for (size_t p = 0; p < nw; p++) n_cand += cand[p];
    size_t cap = 16;
    while (cap < n_cand * 2) cap *= 2;
    gram_slot *t = calloc(cap, sizeof *t);
    KVQ_FAIL_IF(!t, KVQ_ERR_NOMEM, "n-gram table of %zu", cap);
    for (size_t p = 0; p < nw; p++) {
        if (!cand[p]) continue;
        uint64_t k = window_hash(cb, p, len, pw);
        size_t h = mix(k) & (cap - 1);
        while (t[h].count && t[h].key != k) h = (h + 1) & (cap - 1);
        if (!t[h].count) t[h] = (gram_slot){k, 0, (uint32_t)p};
        t[h].count++;
    }
    size_t m = 0;
    for (size_t p = 0; p < nw; p++) {
        if (!cand[p]) continue;
        uint64_t k = window_hash(cb, p, len, pw);
        size_t h = mix(k) & (cap - 1);
        while (t[h].key != k) h = (h + 1) & (cap - 1);
        if (t[h].count < 2) cand[p] = 0;
        else if (t[h].first == p) m++;
    }
    *items = malloc((m + 1) * sizeof **items);
    if (!*items) {
        free(t);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "n-gram ranking of %zu", m);
    }
    *n_items = 0;
    for (size_t h = 0; h < cap; h++)
        if (t[h].count >= 2) (*items)[(*n_items)++] = (rank_item){t[h].count, t[h].first, 0};
    free(t);
    qsort(*items, *n_items, sizeof **items, rank_cmp);
    return KVQ_OK;
}

static kvq_err build_lut(qcx_cb *cb, unsigned lv, const uint64_t *pw, const rank_item *it)
{
    size_t cap = 16, len = qcx_level_len[lv];
    while (cap < (size_t)cb->n[lv] * 2) cap *= 2;
    cb->lut[lv] = calloc(cap, sizeof *cb->lut[lv]);
    cb->gram[lv] = malloc(((size_t)cb->n[lv] * len + 1) * sizeof *cb->gram[lv]);
    KVQ_FAIL_IF(!cb->lut[lv] || !cb->gram[lv], KVQ_ERR_NOMEM, "level %u codebook", lv);
    cb->lut_mask[lv] = cap - 1;
    for (uint32_t i = 0; i < cb->n[lv]; i++) {
        size_t p = it[i].first;
        memcpy(cb->gram[lv] + (size_t)i * len, cb->seq + p, len * sizeof *cb->seq);
        uint64_t k = window_hash(cb, p, (unsigned)len, pw);
        size_t h = mix(k) & (cap - 1);
        while (cb->lut[lv][h]) h = (h + 1) & (cap - 1);
        cb->lut[lv][h] = (k >> 32 << 32) | (i + 1);
    }
    return KVQ_OK;
}

static uint64_t pw_tab[145]; /* HASH_BASE^n, n ≤ 144 */
static pthread_once_t pw_once = PTHREAD_ONCE_INIT;

static void init_pw(void)
{
    pw_tab[0] = 1;
    for (unsigned i = 1; i < 145; i++) pw_tab[i] = pw_tab[i - 1] * HASH_BASE;
}

kvq_err qcx_cb_build(qcx_cb *cb, const qcx_words *w, int level, int tiling)
{
    memset(cb, 0, sizeof *cb);
    size_t nw = w->n;
    qcx_cb_sizes(nw, level, cb->n);
    if (tiling == 3) /* "none": no bigrams and no tilings (§6) */
        for (unsigned lv = QCX_LV_BI; lv < QCX_NLEV; lv++) cb->n[lv] = 0;
    KVQ_TRY(pick_unigrams(cb, w));
    pthread_once(&pw_once, init_pw);
    cb->seq = malloc((nw + 1) * sizeof *cb->seq);
    cb->prefix = malloc((nw + 1) * sizeof *cb->prefix);
    uint8_t *cand = malloc(nw + 1);
    kvq_err e = cb->seq && cb->prefix && cand ? KVQ_OK : KVQ_ERROR(KVQ_ERR_NOMEM, "sequence");
    if (e == KVQ_OK) {
        cb->prefix[0] = 0;
        for (size_t p = 0; p < nw; p++) {
            cb->seq[p] = cb->vocab_to_uni[w->id[p]];
            cb->prefix[p + 1] = cb->prefix[p] * HASH_BASE + (uint64_t)cb->seq[p] + 1;
        }
        cb->seq[nw] = QCX_END;
        for (size_t p = 0; p < nw; p++) cand[p] = cb->seq[p] != QCX_NONE;
    }
    /* levels in increasing length; cand[p] = "window at p still repeated" */
    for (unsigned lv = QCX_LV_BI; lv < QCX_NLEV && e == KVQ_OK; lv++) {
        unsigned len = qcx_level_len[lv], prev = qcx_level_len[lv - 1];
        for (size_t p = 0; p < nw; p++) {
            if (!cand[p]) continue;
            if (p + len > nw) { cand[p] = 0; continue; }
            for (size_t q = p + prev; q < p + len; q++)
                if (cb->seq[q] == QCX_NONE) { cand[p] = 0; break; }
        }
        rank_item *it = NULL;
        size_t m = 0;
        if (cb->n[lv] == 0) continue;
        e = count_level(cb, nw, len, cand, pw_tab, &it, &m);
        if (e == KVQ_OK) {
            if (m < cb->n[lv]) cb->n[lv] = (uint32_t)m;
            e = build_lut(cb, lv, pw_tab, it);
        }
        free(it);
    }
    free(cand);
    return e;
}

uint32_t qcx_cb_find(const qcx_cb *cb, unsigned lv, size_t p)
{
    if (cb->n[lv] == 0) return QCX_NONE;
    size_t len = qcx_level_len[lv];
    uint64_t k = cb->prefix[p + len] - cb->prefix[p] * pw_tab[len];
    /* the slot's hash tag rules out most other windows before the compare */
    for (size_t h = mix(k) & cb->lut_mask[lv]; cb->lut[lv][h]; h = (h + 1) & cb->lut_mask[lv]) {
        uint64_t slot = cb->lut[lv][h];
        uint32_t i = (uint32_t)slot - 1;
        if (slot >> 32 == k >> 32 &&
            memcmp(cb->gram[lv] + (size_t)i * len, cb->seq + p, len * sizeof *cb->seq) == 0)
            return i;
    }
    return QCX_NONE;
}

kvq_err qcx_cb_serialize(const qcx_cb *cb, kvq_buf *out)
{
    for (unsigned lv = 1; lv < QCX_NLEV; lv++) KVQ_TRY(qcx_put_leb(out, cb->n[lv]));
    for (uint32_t i = 0; i < cb->n[QCX_LV_UNI]; i++) {
        KVQ_TRY(qcx_put_leb(out, cb->uni_len[i]));
        KVQ_TRY(kvq_buf_put(out, cb->uni_bytes.p + cb->uni_off[i], cb->uni_len[i]));
    }
    for (unsigned lv = QCX_LV_BI; lv < QCX_NLEV; lv++)
        for (size_t i = 0; i < (size_t)cb->n[lv] * qcx_level_len[lv]; i++)
            KVQ_TRY(qcx_put_leb(out, cb->gram[lv][i]));
    return KVQ_OK;
}

kvq_err qcx_cb_parse(qcx_cb *cb, const uint8_t *p, size_t n)
{
    memset(cb, 0, sizeof *cb);
    kvq_rd r = {p, n, 0, "codebook"};
    uint64_t v;
    for (unsigned lv = 1; lv < QCX_NLEV; lv++) {
        KVQ_TRY(qcx_get_leb(&r, &v));
        /* every entry takes at least one byte per word */
        KVQ_FAIL_IF(v > n / qcx_level_len[lv] || v >= (1u << QCX_KEY_SHIFT) - 1, KVQ_ERR_CORRUPT,
                    "codebook: level %u claims %llu entries in %zu bytes", lv,
                    (unsigned long long)v, n);
        cb->n[lv] = (uint32_t)v;
    }
    uint32_t nu = cb->n[QCX_LV_UNI];
    cb->uni_off = malloc(((size_t)nu + 1) * sizeof *cb->uni_off);
    cb->uni_len = malloc((size_t)nu + 1);
    KVQ_FAIL_IF(!cb->uni_off || !cb->uni_len, KVQ_ERR_NOMEM, "codebook of %u words", nu);
    for (uint32_t i = 0; i < nu; i++) {
        const uint8_t *b;
        KVQ_TRY(qcx_get_leb(&r, &v));
        KVQ_FAIL_IF(v == 0 || v > QCX_TOKEN_MAX, KVQ_ERR_CORRUPT,
                    "codebook: word %u has length %llu at offset %zu", i, (unsigned long long)v,
                    r.off);
        KVQ_TRY(kvq_rd_bytes(&r, (size_t)v, &b));
        cb->uni_off[i] = (uint32_t)cb->uni_bytes.n;
        cb->uni_len[i] = (uint8_t)v;
        KVQ_TRY(kvq_buf_put(&cb->uni_bytes, b, (size_t)v));
    }
    for (unsigned lv = QCX_LV_BI; lv < QCX_NLEV; lv++) {
        size_t m = (size_t)cb->n[lv] * qcx_level_len[lv];
        if (m == 0) continue;
        cb->gram[lv] = malloc(m * sizeof *cb->gram[lv]);
        KVQ_FAIL_IF(!cb->gram[lv], KVQ_ERR_NOMEM, "level %u codebook", lv);
        for (size_t i = 0; i < m; i++) {
            KVQ_TRY(qcx_get_leb(&r, &v));
            KVQ_FAIL_IF(v >= nu, KVQ_ERR_CORRUPT,
                        "codebook: level %u refers to word %llu of %u at offset %zu", lv,
                        (unsigned long long)v, nu, r.off);
            cb->gram[lv][i] = (uint32_t)v;
        }
    }
    KVQ_FAIL_IF(r.off != n, KVQ_ERR_CORRUPT, "codebook: %zu trailing bytes", n - r.off);
    return KVQ_OK;
}

void qcx_cb_free(qcx_cb *cb)
{
    free(cb->uni_off);
    free(cb->uni_len);
    kvq_buf_free(&cb->uni_bytes);
    for (unsigned lv = 0; lv < QCX_NLEV; lv++) {
        free(cb->gram[lv]);
        free(cb->lut[lv]);
    }
    free(cb->vocab_to_uni);
    free(cb->seq);
    free(cb->prefix);
    memset(cb, 0, sizeof *cb);
}

/* First-use order of level lv's entries in keys[]: map[old] = new, or
 * QCX_NONE for entries no key uses; returns how many are used. */
static uint32_t first_use(const uint32_t *keys, size_t n, unsigned lv, uint32_t *map, uint32_t m)
{
    for (uint32_t j = 0; j < m; j++) map[j] = QCX_NONE;
    uint32_t next = 0;
    for (size_t i = 0; i < n; i++)
        if (QCX_KEY_LV(keys[i]) == lv && map[QCX_KEY_IX(keys[i])] == QCX_NONE)
            map[QCX_KEY_IX(keys[i])] = next++;
    return next;
}

/* Reorders the unigram entries by map (a permutation). */
static kvq_err permute_unigrams(qcx_cb *cb, const uint32_t *map)
{
    uint32_t m = cb->n[QCX_LV_UNI];
    uint32_t *off = malloc(((size_t)m + 1) * sizeof *off);
    uint8_t *len = malloc((size_t)m + 1);
    if (!off || !len) {
        free(off), free(len);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "unigram order of %u", m);
    }
    for (uint32_t j = 0; j < m; j++) off[map[j]] = cb->uni_off[j], len[map[j]] = cb->uni_len[j];
    free(cb->uni_off), free(cb->uni_len);
    cb->uni_off = off, cb->uni_len = len;
    return KVQ_OK;
}

/* [ours] Renumbers every level's entries in order of first use, drops the
 * bigram / n-gram entries the parse never used, and rewrites keys[],
 * the n-gram contents and the token sequence to match.  First-use order
 * lets the event coder send a first occurrence as "the next new entry"
 * instead of an index among all entries. */
kvq_err qcx_cb_prune(qcx_cb *cb, uint32_t *keys, size_t n)
{
    uint32_t *map[QCX_NLEV] = {0};
    kvq_err e = KVQ_OK;
    for (unsigned lv = QCX_LV_UNI; lv < QCX_NLEV && e == KVQ_OK; lv++) {
        map[lv] = malloc(((size_t)cb->n[lv] + 1) * sizeof *map[lv]);
        if (!map[lv]) e = KVQ_ERROR(KVQ_ERR_NOMEM, "codebook map of %u", cb->n[lv]);
    }
    for (unsigned lv = QCX_LV_UNI; lv < QCX_NLEV && e == KVQ_OK; lv++) {
        uint32_t used = first_use(keys, n, lv, map[lv], cb->n[lv]);
        if (lv == QCX_LV_UNI) { /* words used only inside n-grams go last */
            for (uint32_t j = 0; j < cb->n[lv]; j++)
                if (map[lv][j] == QCX_NONE) map[lv][j] = used++;
            e = permute_unigrams(cb, map[lv]);
            continue;
        }
        size_t len = qcx_level_len[lv];
        uint32_t *g = malloc(((size_t)used * len + 1) * sizeof *g);
        if (!g) {
            e = KVQ_ERROR(KVQ_ERR_NOMEM, "level %u codebook", lv);
            break;
        }
        for (uint32_t j = 0; j < cb->n[lv]; j++) {
            if (map[lv][j] == QCX_NONE) continue;
            for (size_t w = 0; w < len; w++) /* contents in the new word order */
                g[(size_t)map[lv][j] * len + w] = map[QCX_LV_UNI][cb->gram[lv][(size_t)j * len + w]];
        }
        free(cb->gram[lv]);
        cb->gram[lv] = g;
        cb->n[lv] = used;
        free(cb->lut[lv]); /* no lookups follow */
        cb->lut[lv] = NULL;
    }
    if (e == KVQ_OK) {
        for (size_t i = 0; i < n; i++) {
            unsigned lv = QCX_KEY_LV(keys[i]);
            if (lv != QCX_LV_ESC) keys[i] = QCX_KEY(lv, map[lv][QCX_KEY_IX(keys[i])]);
        }
        for (size_t p = 0; cb->seq && cb->seq[p] != QCX_END; p++)
            if (cb->seq[p] != QCX_NONE) cb->seq[p] = map[QCX_LV_UNI][cb->seq[p]];
    }
    for (unsigned lv = 0; lv < QCX_NLEV; lv++) free(map[lv]);
    return e;
}
