/*
 * tok.c — Quasicryth tokenisation and case separation
 * (papers/quasicryth.md §3 and §4).
 *
 * A token is an alpha run plus trailing whitespace, or one non-alpha byte
 * plus trailing whitespace; bytes ≥ 0x80 count as letters.  [ours] Tokens
 * are capped at QCX_TOKEN_MAX bytes (a longer run continues in a new token
 * of the same class), so every length fits a byte and no input can break
 * the round trip.  Case: flag 1 = Capitalised, 2 = ALL CAPS, 0 = as is;
 * a flag is kept only if re-applying it reproduces the original bytes,
 * otherwise the original (mixed-case) bytes become their own word.
 * Classification uses explicit ASCII tests, never the C locale.
 */
#include "qcx_internal.h"

#include <stdlib.h>

#define TABLE_MIN 4096 /* initial vocabulary hash slots */

static int is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
static int is_upper(uint8_t c) { return c >= 'A' && c <= 'Z'; }
static int is_lower(uint8_t c) { return c >= 'a' && c <= 'z'; }

size_t qcx_token_len(const uint8_t *p, size_t n)
{
    size_t cap = n < QCX_TOKEN_MAX ? n : QCX_TOKEN_MAX, i = 1;
    if (qcx_is_alpha(p[0]))
        while (i < cap && qcx_is_alpha(p[i])) i++;
    while (i < cap && is_ws(p[i])) i++;
    return i;
}

void qcx_case_apply(uint8_t *p, size_t n, unsigned flag)
{
    if (flag == 1) {
        if (n && is_lower(p[0])) p[0] = (uint8_t)(p[0] - 'a' + 'A');
    } else if (flag == 2) {
        for (size_t i = 0; i < n; i++)
            if (is_lower(p[i])) p[i] = (uint8_t)(p[i] - 'a' + 'A');
    }
}

/* Case flag of an alpha token and its lower-cased form in low[]; returns
 * 0 with the original bytes when the flag would not reproduce them. */
static unsigned case_split(const uint8_t *p, size_t n, uint8_t *low)
{
    size_t alen = 0;
    while (alen < n && qcx_is_alpha(p[alen])) alen++;
    int any_up = 0, any_low = 0;
    for (size_t i = 0; i < alen; i++) {
        any_up |= is_upper(p[i]);
        any_low |= is_lower(p[i]);
    }
    for (size_t i = 0; i < n; i++) low[i] = is_upper(p[i]) ? (uint8_t)(p[i] - 'A' + 'a') : p[i];
    unsigned flag = 0;
    if (!any_up) return 0;
    if (!any_low && alen > 1) flag = 2;
    else if (is_upper(p[0])) flag = 1;
    uint8_t chk[QCX_TOKEN_MAX];
    memcpy(chk, low, n);
    qcx_case_apply(chk, n, flag);
    if (flag == 0 || memcmp(chk, p, n) != 0) {
        memcpy(low, p, n);
        return 0;
    }
    return flag;
}

static uint32_t hash_bytes(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static kvq_err table_grow(qcx_words *w)
{
    size_t cap = (w->mask + 1) * 2;
    uint32_t *t = calloc(cap, sizeof *t);
    KVQ_FAIL_IF(!t, KVQ_ERR_NOMEM, "vocabulary table of %zu", cap);
    for (size_t i = 0; i < w->n_vocab; i++) {
        size_t h = hash_bytes(w->bytes.p + w->off[i], w->len[i]) & (cap - 1);
        while (t[h]) h = (h + 1) & (cap - 1);
        t[h] = (uint32_t)i + 1;
    }
    free(w->table);
    w->table = t;
    w->mask = cap - 1;
    return KVQ_OK;
}

static kvq_err vocab_add(qcx_words *w, const uint8_t *p, size_t n, uint32_t *id)
{
    size_t h = hash_bytes(p, n) & w->mask;
    for (; w->table[h]; h = (h + 1) & w->mask) {
        uint32_t v = w->table[h] - 1;
        if (w->len[v] == n && memcmp(w->bytes.p + w->off[v], p, n) == 0) {
            w->count[v]++;
            *id = v;
            return KVQ_OK;
        }
    }
    if (w->n_vocab == w->cap_vocab) {
        size_t nc = w->cap_vocab ? w->cap_vocab * 2 : 1024;
        uint32_t *o = realloc(w->off, nc * sizeof *o);
        if (o) w->off = o;
        uint8_t *l = realloc(w->len, nc);
        if (l) w->len = l;
        uint32_t *c = realloc(w->count, nc * sizeof *c);
        if (c) w->count = c;
        KVQ_FAIL_IF(!o || !l || !c, KVQ_ERR_NOMEM, "vocabulary of %zu words", nc);
        w->cap_vocab = nc;
    }
    uint32_t v = (uint32_t)w->n_vocab++;
    w->off[v] = (uint32_t)w->bytes.n;
    w->len[v] = (uint8_t)n;
    w->count[v] = 1;
    KVQ_TRY(kvq_buf_put(&w->bytes, p, n));
    w->table[h] = v + 1;
    *id = v;
    if (w->n_vocab * 2 > w->mask + 1) KVQ_TRY(table_grow(w));
    return KVQ_OK;
}

kvq_err qcx_words_build(const uint8_t *src, size_t n, qcx_words *w)
{
    memset(w, 0, sizeof *w);
    /* tokens ≤ n; sized for the worst case (one byte per token) */
    size_t cap = n ? n : 1;
    w->id = malloc(cap * sizeof *w->id);
    w->flag = malloc(cap);
    w->table = calloc(TABLE_MIN, sizeof *w->table);
    w->mask = TABLE_MIN - 1;
    KVQ_FAIL_IF(!w->id || !w->flag || !w->table, KVQ_ERR_NOMEM, "token arrays for %zu bytes", n);
    uint8_t low[QCX_TOKEN_MAX];
    for (size_t pos = 0; pos < n;) {
        size_t k = qcx_token_len(src + pos, n - pos);
        unsigned flag = 0;
        if (qcx_is_alpha(src[pos])) flag = case_split(src + pos, k, low);
        else memcpy(low, src + pos, k);
        KVQ_TRY(vocab_add(w, low, k, &w->id[w->n]));
        w->flag[w->n++] = (uint8_t)flag;
        pos += k;
    }
    return KVQ_OK;
}

void qcx_words_free(qcx_words *w)
{
    free(w->id);
    free(w->flag);
    kvq_buf_free(&w->bytes);
    free(w->off);
    free(w->len);
    free(w->count);
    free(w->table);
    memset(w, 0, sizeof *w);
}
