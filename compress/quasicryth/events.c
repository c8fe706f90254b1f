/*
 * events.c — Quasicryth event and case-flag modelling
 * (papers/quasicryth.md §4, §9, §10, going beyond it where marked [ours]).
 *
 * Per event: a match flag; a match codes its distance (bit length, then
 * the bits below the MSB with per-position binary models) and length − 3
 * exactly as §10.  [ours] A literal event (level, index) is one symbol of
 * a PPM model over word contexts instead of the reference's level models
 * and move-to-front caches: order 2 (the two previous words), then order 1
 * (the previous word), then order 0 = the §10 level model with context
 * (previous level, level before) followed by an adaptive model of the
 * index for that level.  Every event, coded or copied by a match, updates
 * the order-1/2 contexts identically on both sides.
 *
 * [ours] Case flags are coded only for alpha tokens, with a per-word
 * context (the word's own capitalisation habit) split by what precedes it
 * (sentence end, newline, other), falling back to a shared context while
 * the word is new.
 */
#include "qcx_internal.h"

#include <stdlib.h>

#define DIST_BITS_SYMS 32      /* bit lengths of a distance: 1 … 32      */
#define DIST_OWN_BITS  7       /* bit positions 0 … 6 have own models     */
#define LEN_SYMS       (QCX_LZ_MAX - QCX_LZ_MIN + 1)
#define LV_SYMS        (2 * QCX_NLEV - 1) /* levels 0..11 + "new entry" of 1..11 */
#define MATCH_SKIPS_O1 1u     /* copied events update order 2 only       */
#define FAST_INC       24      /* small-model increment (fast adaptation) */
#define FAST_LIMIT     (1u << 16)
#define SEE_INC        32      /* escape-model increment                  */
#define SEE_LIMIT      (1u << 13)
#define IDX_INC        8       /* order-0 index model increment           */
#define IDX_LIMIT      (1u << 22)
#define CASE_WORDS     (1u << 16) /* words with their own case context     */
#define CASE_CLASSES   4       /* what precedes: word, .!?, newline, other */
#define CASE_INC       8
#define CASE_LIMIT     2048u
#define CASE_MIN_SEEN  (3u + 2u * CASE_INC) /* word context trusted after 2 */

typedef struct model {
    const qcx_cb *cb;
    uint32_t n_uni;
    qcx_small *mflag[2], *nbits, *dbit[DIST_OWN_BITS + 1], *len;
    qcx_small *lv[QCX_NLEV * QCX_NLEV];
    qcx_small *see[2][QCX_SEE_N]; /* escape models of orders 2 and 1 */
    qcx_big idx[QCX_NLEV];
    qcx_ctx *o1;          /* n_uni + 1 contexts: previous word */
    qcx_ctxmap o2;        /* (word before, previous word)      */
    qcx_excl excl;        /* order-2 symbols excluded at order 1 */
    uint32_t w1, w2;      /* previous words, n_uni = escape/none */
    unsigned l1, l2;      /* previous levels                   */
    unsigned last_match;
    unsigned skip_o1;     /* the last key came from order 2 or a match */
    uint32_t next_new[QCX_NLEV]; /* entries are numbered in order of first use */
    uint64_t *seen;       /* encoder: (word, key) pairs ever added at order 1 */
    size_t seen_mask, seen_used;
} model;

static void model_free(model *m)
{
    free(m->mflag[0]), free(m->mflag[1]), free(m->nbits), free(m->len);
    for (unsigned i = 0; i <= DIST_OWN_BITS; i++) free(m->dbit[i]);
    for (unsigned i = 0; i < QCX_NLEV * QCX_NLEV; i++) free(m->lv[i]);
    for (unsigned i = 0; i < 2 * QCX_SEE_N; i++) free(m->see[i / QCX_SEE_N][i % QCX_SEE_N]);
    for (unsigned i = 0; i < QCX_NLEV; i++) qcx_big_free(&m->idx[i]);
    if (m->o1)
        for (uint32_t i = 0; i <= m->n_uni; i++) qcx_ctx_free(&m->o1[i]);
    free(m->o1);
    qcx_excl_free(&m->excl);
    free(m->seen);
    qcx_ctxmap_free(&m->o2);
}

static kvq_err model_init(model *m, const qcx_cb *cb, size_t n_hint)
{
    memset(m, 0, sizeof *m);
    m->cb = cb;
    m->n_uni = cb->n[QCX_LV_UNI];
    int ok = 1;
    for (unsigned i = 0; i < 2; i++) ok &= (m->mflag[i] = qcx_small_create(2, FAST_INC, FAST_LIMIT)) != NULL;
    ok &= (m->nbits = qcx_small_create(DIST_BITS_SYMS, FAST_INC, FAST_LIMIT)) != NULL;
    for (unsigned i = 0; i <= DIST_OWN_BITS; i++)
        ok &= (m->dbit[i] = qcx_small_create(2, FAST_INC, FAST_LIMIT)) != NULL;
    ok &= (m->len = qcx_small_create(LEN_SYMS, FAST_INC, FAST_LIMIT)) != NULL;
    for (unsigned i = 0; i < QCX_NLEV * QCX_NLEV; i++)
        ok &= (m->lv[i] = qcx_small_create(LV_SYMS, FAST_INC, FAST_LIMIT)) != NULL;
    for (unsigned i = 0; i < 2 * QCX_SEE_N; i++)
        ok &= (m->see[i / QCX_SEE_N][i % QCX_SEE_N] = qcx_small_create(2, SEE_INC, SEE_LIMIT)) != NULL;
    m->o1 = calloc((size_t)m->n_uni + 1, sizeof *m->o1);
    if (!ok || !m->o1) {
        model_free(m);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "event models");
    }
    kvq_err e = KVQ_OK;
    for (unsigned lv = 1; lv < QCX_NLEV && e == KVQ_OK; lv++)
        e = qcx_big_init(&m->idx[lv], cb->n[lv], IDX_INC, IDX_LIMIT, 1);
    if (e == KVQ_OK) e = qcx_ctxmap_init(&m->o2, n_hint / 4);
    if (e == KVQ_OK) e = qcx_excl_init(&m->excl, cb->n);
    if (e != KVQ_OK) {
        model_free(m);
        return e;
    }
    m->w1 = m->w2 = m->n_uni;
    m->l1 = m->l2 = QCX_LV_UNI;
    return KVQ_OK;
}

/* The order-2 context of the next event.  (An order-3 context was tried:
 * it cost 0.1-0.3% on every corpus file, so it is not used.) */
static uint64_t ctx_key(const model *m)
{
    return (uint64_t)m->w2 * ((uint64_t)m->n_uni + 1) + m->w1;
}

static kvq_err fetch_ctx(model *m, qcx_ctx **c2)
{
    *c2 = qcx_ctxmap_get(&m->o2, ctx_key(m));
    KVQ_FAIL_IF(!*c2, KVQ_ERR_NOMEM, "word contexts");
    return KVQ_OK;
}

/* ---- encoder-only set of (word, key) pairs at order 1 ---------------------
 * A superset of what the order-1 lists hold, so "absent here" is certain
 * and the encoder codes the escape without scanning a long list. */
#define SEEN_MIN 4096
#define SEEN_TAG (1ull << 63)

static uint64_t pair_key(uint32_t w, uint32_t key) { return ((uint64_t)w << 32 | key) | SEEN_TAG; }

static size_t pair_slot(uint64_t k, size_t mask)
{
    k ^= k >> 29;
    k *= 0xbf58476d1ce4e5b9ull;
    return (size_t)(k ^ (k >> 32)) & mask;
}

static int seen_has(const model *m, uint64_t k)
{
    for (size_t h = pair_slot(k, m->seen_mask); m->seen[h]; h = (h + 1) & m->seen_mask)
        if (m->seen[h] == k) return 1;
    return 0;
}

static kvq_err seen_add(model *m, uint64_t k)
{
    if ((m->seen_used + 1) * 2 > m->seen_mask + 1) {
        size_t cap = (m->seen_mask + 1) * 2;
        uint64_t *t = calloc(cap, sizeof *t);
        KVQ_FAIL_IF(!t, KVQ_ERR_NOMEM, "context pair set of %zu", cap);
        for (size_t i = 0; i <= m->seen_mask; i++) {
            if (!m->seen[i]) continue;
            size_t h = pair_slot(m->seen[i], cap - 1);
            while (t[h]) h = (h + 1) & (cap - 1);
            t[h] = m->seen[i];
        }
        free(m->seen);
        m->seen = t;
        m->seen_mask = cap - 1;
    }
    size_t h = pair_slot(k, m->seen_mask);
    for (; m->seen[h]; h = (h + 1) & m->seen_mask)
        if (m->seen[h] == k) return KVQ_OK;
    m->seen[h] = k;
    m->seen_used++;
    return KVQ_OK;
}

/* After an event (coded or copied): learn it in the word contexts, then
 * shift the word and level history. */
static kvq_err advance(model *m, uint32_t key, qcx_ctx *c2)
{
    /* the next contexts are known first: fetch them from memory while the
     * lists of this event are updated */
    uint32_t w1 = m->w1;
    unsigned lv = QCX_KEY_LV(key);
    uint32_t ix = QCX_KEY_IX(key);
    if (lv == QCX_LV_ESC) {
        m->w2 = m->w1, m->w1 = m->n_uni;
    } else if (lv == QCX_LV_UNI) {
        m->w2 = m->w1, m->w1 = ix;
    } else {
        size_t len = qcx_level_len[lv];
        const uint32_t *g = m->cb->gram[lv] + (size_t)ix * len;
        m->w2 = g[len - 2], m->w1 = g[len - 1]; /* n-grams have ≥ 2 words */
    }
    m->l2 = m->l1, m->l1 = lv;
    qcx_ctxmap_prefetch(&m->o2, ctx_key(m));
    __builtin_prefetch(&m->o1[m->w1]);
    KVQ_TRY(qcx_ctx_update(c2, key));
    /* update exclusion: a key the order-2 context predicted (or a match
     * copied) leaves the order-1 statistics alone, as in PPM */
    if (!m->skip_o1) {
        KVQ_TRY(qcx_ctx_update(&m->o1[w1], key));
        if (m->seen) KVQ_TRY(seen_add(m, pair_key(w1, key)));
    }
    return KVQ_OK;
}

static void encode_match(model *m, qcx_enc *e, uint32_t dist, uint32_t len)
{
    unsigned nb = 0;
    while (nb < 32 && (dist >> nb) > 1) nb++; /* nb = bit length − 1 */
    qcx_small_encode(m->nbits, e, nb);
    for (int b = (int)nb - 1; b >= 0; b--)
        qcx_small_encode(m->dbit[b < DIST_OWN_BITS ? b : DIST_OWN_BITS], e, (dist >> b) & 1u);
    qcx_small_encode(m->len, e, len - QCX_LZ_MIN);
}

static kvq_err encode_literal(model *m, qcx_enc *e, uint32_t key, qcx_ctx *c2)
{
    m->skip_o1 = (unsigned)qcx_ctx_encode(c2, NULL, m->see[0], e, key);
    if (m->skip_o1) return KVQ_OK;
    qcx_excl_clear(&m->excl);
    qcx_excl_add(&m->excl, c2);
    if (!seen_has(m, pair_key(m->w1, key))) qcx_ctx_encode_escape(&m->o1[m->w1], m->see[1], e);
    else if (qcx_ctx_encode(&m->o1[m->w1], &m->excl, m->see[1], e, key)) return KVQ_OK;
    unsigned lv = QCX_KEY_LV(key);
    uint32_t ix = QCX_KEY_IX(key);
    qcx_small *lm = m->lv[m->l1 * QCX_NLEV + m->l2];
    if (lv == QCX_LV_ESC) {
        qcx_small_encode(lm, e, lv);
    } else if (ix == m->next_new[lv]) { /* first use: "next new entry of lv" */
        qcx_small_encode(lm, e, QCX_NLEV - 1 + lv);
        qcx_big_activate(&m->idx[lv], ix);
        m->next_new[lv]++;
    } else {
        qcx_small_encode(lm, e, lv);
        qcx_big_encode(&m->idx[lv], e, ix);
    }
    return KVQ_OK;
}

static kvq_err put_escape(const qcx_words *w, size_t tok, kvq_buf *esc)
{
    uint32_t v = w->id[tok];
    KVQ_TRY(kvq_buf_u8(esc, w->len[v]));
    return kvq_buf_put(esc, w->bytes.p + w->off[v], w->len[v]);
}

kvq_err qcx_events_encode(const qcx_cb *cb, const qcx_words *w, const uint32_t *keys, size_t n,
                          const qcx_match *mt, kvq_buf *out, kvq_buf *esc, qcx_pstats *st)
{
    model m;
    KVQ_TRY(model_init(&m, cb, n));
    m.seen = calloc(SEEN_MIN, sizeof *m.seen);
    m.seen_mask = SEEN_MIN - 1;
    if (!m.seen) {
        model_free(&m);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "context pair set");
    }
    qcx_enc e;
    qcx_enc_init(&e);
    kvq_err err = KVQ_OK;
    size_t tok = 0;
    for (size_t i = 0; i < n && err == KVQ_OK;) {
        size_t run = mt[i].len ? mt[i].len : 1;
        qcx_small_encode(m.mflag[m.last_match], &e, mt[i].len != 0);
        if (mt[i].len) {
            encode_match(&m, &e, mt[i].dist, mt[i].len);
            st->lz_matches++;
            st->lz_events += run;
        }
        for (size_t j = i; j < i + run && err == KVQ_OK; j++) {
            qcx_ctx *c2 = NULL;
            err = fetch_ctx(&m, &c2);
            m.skip_o1 = MATCH_SKIPS_O1;
            if (err == KVQ_OK && !mt[i].len) err = encode_literal(&m, &e, keys[j], c2);
            if (err == KVQ_OK && QCX_KEY_LV(keys[j]) == QCX_LV_ESC) err = put_escape(w, tok, esc);
            if (err == KVQ_OK) err = advance(&m, keys[j], c2);
            st->events[QCX_KEY_LV(keys[j])]++;
            tok += qcx_level_len[QCX_KEY_LV(keys[j])];
        }
        m.last_match = mt[i].len != 0;
        i += run;
    }
    if (err == KVQ_OK) err = qcx_enc_finish(&e);
    if (err == KVQ_OK) *out = e.out, e.out = (kvq_buf){0};
    kvq_buf_free(&e.out);
    model_free(&m);
    return err;
}

/* ---- decoder ---------------------------------------------------------- */
typedef struct dstate {
    qcx_dtext *t;
    size_t tokens, pos;         /* tokens and bytes produced */
    kvq_rd esc;
} dstate;

static kvq_err put_word(dstate *s, uint32_t word, const uint8_t *p, size_t len)
{
    qcx_dtext *t = s->t;
    KVQ_FAIL_IF(s->tokens >= t->n_words, KVQ_ERR_CORRUPT, "events: more than %zu words",
                t->n_words);
    KVQ_FAIL_IF(len > t->raw_len - s->pos, KVQ_ERR_CORRUPT,
                "events: text longer than the block's %zu bytes", t->raw_len);
    memcpy(t->text + s->pos, p, len);
    t->tok_off[s->tokens] = (uint32_t)s->pos;
    t->tok_word[s->tokens++] = word;
    s->pos += len;
    return KVQ_OK;
}

static kvq_err emit(dstate *s, const qcx_cb *cb, uint32_t key)
{
    unsigned lv = QCX_KEY_LV(key);
    uint32_t ix = QCX_KEY_IX(key);
    if (lv == QCX_LV_ESC) {
        uint8_t len;
        const uint8_t *b;
        KVQ_TRY(kvq_rd_u8(&s->esc, &len));
        KVQ_FAIL_IF(len == 0, KVQ_ERR_CORRUPT, "escapes: empty word at offset %zu", s->esc.off);
        KVQ_TRY(kvq_rd_bytes(&s->esc, len, &b));
        return put_word(s, cb->n[QCX_LV_UNI], b, len);
    }
    if (lv == QCX_LV_UNI)
        return put_word(s, ix, cb->uni_bytes.p + cb->uni_off[ix], cb->uni_len[ix]);
    size_t len = qcx_level_len[lv];
    for (size_t i = 0; i < len; i++) {
        uint32_t u = cb->gram[lv][(size_t)ix * len + i];
        KVQ_TRY(put_word(s, u, cb->uni_bytes.p + cb->uni_off[u], cb->uni_len[u]));
    }
    return KVQ_OK;
}

static kvq_err decode_literal(model *m, qcx_dec *d, qcx_ctx *c2, uint32_t *key)
{
    int r = qcx_ctx_decode(c2, NULL, m->see[0], d, key);
    m->skip_o1 = r > 0;
    if (r == 0) {
        qcx_excl_clear(&m->excl);
        qcx_excl_add(&m->excl, c2);
        r = qcx_ctx_decode(&m->o1[m->w1], &m->excl, m->see[1], d, key);
    }
    KVQ_FAIL_IF(r < 0, KVQ_ERR_CORRUPT, "events: a context hit with no symbol left");
    if (r > 0) return KVQ_OK;
    unsigned lv;
    uint32_t ix = 0;
    KVQ_TRY(qcx_small_decode(m->lv[m->l1 * QCX_NLEV + m->l2], d, &lv));
    if (lv >= QCX_NLEV) { /* the next new entry of level lv − 11 */
        lv -= QCX_NLEV - 1;
        ix = m->next_new[lv]++;
        KVQ_FAIL_IF(ix >= m->cb->n[lv], KVQ_ERR_CORRUPT,
                    "events: new entry %u of level %u beyond its %u entries", ix, lv, m->cb->n[lv]);
        qcx_big_activate(&m->idx[lv], ix);
    } else if (lv != QCX_LV_ESC) {
        KVQ_TRY(qcx_big_decode(&m->idx[lv], d, &ix));
    }
    *key = QCX_KEY(lv, ix);
    return KVQ_OK;
}

static kvq_err decode_match(model *m, qcx_dec *d, size_t have, uint32_t *dist, uint32_t *len)
{
    unsigned nb, bit, l;
    KVQ_TRY(qcx_small_decode(m->nbits, d, &nb));
    uint64_t v = 1;
    for (int b = (int)nb - 1; b >= 0; b--) {
        KVQ_TRY(qcx_small_decode(m->dbit[b < DIST_OWN_BITS ? b : DIST_OWN_BITS], d, &bit));
        v = (v << 1) | bit;
    }
    KVQ_TRY(qcx_small_decode(m->len, d, &l));
    l += QCX_LZ_MIN;
    KVQ_FAIL_IF(v > have || l > v, KVQ_ERR_CORRUPT,
                "events: match distance %llu length %u after %zu events",
                (unsigned long long)v, l, have);
    *dist = (uint32_t)v;
    *len = l;
    return KVQ_OK;
}

static kvq_err decode_loop(model *m, qcx_dec *d, const qcx_cb *cb, dstate *s, uint32_t *keys)
{
    size_t n = 0;
    while (s->tokens < s->t->n_words) {
        unsigned is_match;
        uint32_t dist = 0, len = 1;
        KVQ_TRY(qcx_small_decode(m->mflag[m->last_match], d, &is_match));
        if (is_match) KVQ_TRY(decode_match(m, d, n, &dist, &len));
        for (uint32_t j = 0; j < len; j++) {
            qcx_ctx *c2;
            KVQ_TRY(fetch_ctx(m, &c2));
            m->skip_o1 = MATCH_SKIPS_O1;
            if (is_match) keys[n] = keys[n - dist];
            else KVQ_TRY(decode_literal(m, d, c2, &keys[n]));
            KVQ_TRY(emit(s, cb, keys[n]));
            KVQ_TRY(advance(m, keys[n], c2));
            n++;
        }
        m->last_match = is_match;
    }
    return KVQ_OK;
}

kvq_err qcx_events_decode(const qcx_cb *cb, const uint8_t *ac, size_t ac_n, const uint8_t *esc,
                          size_t esc_n, qcx_dtext *t)
{
    model m;
    KVQ_TRY(model_init(&m, cb, t->n_words));
    uint32_t *keys = malloc((t->n_words + 1) * sizeof *keys);
    if (!keys) {
        model_free(&m);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "events for %zu words", t->n_words);
    }
    qcx_dec d;
    qcx_dec_init(&d, ac, ac_n);
    dstate s = {t, 0, 0, {esc, esc_n, 0, "escapes"}};
    kvq_err err = decode_loop(&m, &d, cb, &s, keys);
    if (err == KVQ_OK && s.pos != t->raw_len)
        err = KVQ_ERROR(KVQ_ERR_CORRUPT, "events: %zu bytes of text, block says %zu", s.pos,
                        t->raw_len);
    if (err == KVQ_OK && s.esc.off != esc_n)
        err = KVQ_ERROR(KVQ_ERR_CORRUPT, "escapes: %zu unused bytes", esc_n - s.esc.off);
    if (err == KVQ_OK) t->tok_off[t->n_words] = (uint32_t)s.pos;
    free(keys);
    model_free(&m);
    return err;
}

/* ---- case flags -------------------------------------------------------- */
typedef struct case_model {
    uint16_t *f;          /* (words + 1) × CASE_CLASSES × 2 contexts × 3 */
    uint32_t words;       /* min(n_uni, CASE_WORDS): words with own contexts */
    uint16_t shared[CASE_CLASSES * 2 * 3];
} case_model;

static unsigned prev_class(const uint8_t *p, size_t n)
{
    if (n == 0) return 2;
    if (p[0] == '.' || p[0] == '!' || p[0] == '?') return 1;
    if (memchr(p, '\n', n)) return 2;
    return qcx_is_alpha(p[0]) ? 0 : 3;
}

static void case_init(uint16_t *f, size_t n_ctx)
{
    for (size_t i = 0; i < n_ctx * 3; i++) f[i] = 1;
}

static void case_update(uint16_t *f, unsigned s)
{
    f[s] = (uint16_t)(f[s] + CASE_INC);
    if ((uint32_t)f[0] + f[1] + f[2] > CASE_LIMIT)
        for (unsigned i = 0; i < 3; i++) f[i] = (uint16_t)((f[i] >> 1) | 1u);
}

/* Context of a token: its word's own model (own) and the shared one for
 * the same surroundings; *use is the one to code with. */
typedef struct case_pick {
    uint16_t *own, *shared, *use;
} case_pick;

static case_pick case_ctx(case_model *cm, uint32_t word, uint32_t n_uni, unsigned cls,
                          unsigned prev_flag)
{
    uint32_t wc = word >= n_uni ? cm->words : (word < cm->words ? word : cm->words - 1);
    size_t sub = (size_t)cls * 2 + (prev_flag == 2);
    case_pick k;
    k.own = cm->f + ((size_t)wc * CASE_CLASSES * 2 + sub) * 3;
    k.shared = cm->shared + sub * 3;
    k.use = (uint32_t)k.own[0] + k.own[1] + k.own[2] >= CASE_MIN_SEEN ? k.own : k.shared;
    return k;
}

static void case_learn(case_pick k, unsigned s)
{
    case_update(k.own, s);
    case_update(k.shared, s);
}

static kvq_err case_alloc(case_model *cm, uint32_t n_uni)
{
    cm->words = n_uni < CASE_WORDS ? n_uni : CASE_WORDS;
    size_t n_ctx = ((size_t)cm->words + 1) * CASE_CLASSES * 2;
    cm->f = malloc(n_ctx * 3 * sizeof *cm->f);
    KVQ_FAIL_IF(!cm->f, KVQ_ERR_NOMEM, "case models");
    case_init(cm->f, n_ctx);
    case_init(cm->shared, CASE_CLASSES * 2);
    return KVQ_OK;
}

kvq_err qcx_case_encode(const qcx_cb *cb, const qcx_words *w, kvq_buf *out)
{
    case_model cm;
    KVQ_TRY(case_alloc(&cm, cb->n[QCX_LV_UNI]));
    qcx_enc e;
    qcx_enc_init(&e);
    unsigned prev_flag = 0, cls = 2;
    uint32_t n_uni = cb->n[QCX_LV_UNI];
    for (size_t t = 0; t < w->n; t++) {
        uint32_t v = w->id[t];
        const uint8_t *p = w->bytes.p + w->off[v];
        if (qcx_is_alpha(p[0])) {
            case_pick k = case_ctx(&cm, cb->seq[t] == QCX_NONE ? n_uni : cb->seq[t], n_uni, cls,
                                   prev_flag);
            unsigned s = w->flag[t];
            const uint16_t *f = k.use;
            uint32_t cum = s == 0 ? 0u : s == 1 ? f[0] : (uint32_t)f[0] + f[1];
            qcx_enc_code(&e, cum, f[s], (uint32_t)f[0] + f[1] + f[2]);
            case_learn(k, s);
            prev_flag = s;
        }
        cls = prev_class(p, w->len[v]);
    }
    kvq_err err = qcx_enc_finish(&e);
    if (err == KVQ_OK) *out = e.out, e.out = (kvq_buf){0};
    kvq_buf_free(&e.out);
    free(cm.f);
    return err;
}

kvq_err qcx_case_decode(const qcx_cb *cb, const uint8_t *ac, size_t n, qcx_dtext *t)
{
    case_model cm;
    KVQ_TRY(case_alloc(&cm, cb->n[QCX_LV_UNI]));
    qcx_dec d;
    qcx_dec_init(&d, ac, n);
    unsigned prev_flag = 0, cls = 2;
    uint32_t n_uni = cb->n[QCX_LV_UNI];
    for (size_t i = 0; i < t->n_words; i++) {
        uint8_t *p = t->text + t->tok_off[i];
        size_t len = t->tok_off[i + 1] - t->tok_off[i];
        if (qcx_is_alpha(p[0])) {
            case_pick k = case_ctx(&cm, t->tok_word[i], n_uni, cls, prev_flag);
            const uint16_t *f = k.use;
            uint32_t total = (uint32_t)f[0] + f[1] + f[2], x = qcx_dec_target(&d, total);
            unsigned s = x < f[0] ? 0u : x < (uint32_t)f[0] + f[1] ? 1u : 2u;
            uint32_t cum = s == 0 ? 0u : s == 1 ? f[0] : (uint32_t)f[0] + f[1];
            qcx_dec_code(&d, cum, f[s], total);
            case_learn(k, s);
            qcx_case_apply(p, len, s);
            prev_flag = s;
        }
        cls = prev_class(p, len);
    }
    free(cm.f);
    return KVQ_OK;
}
