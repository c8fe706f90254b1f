/*
 * ac.c — Quasicryth entropy coding: a carry-less binary arithmetic coder
 * (Witten–Neal–Cleary, papers/quasicryth.md §10) widened to 32-bit
 * registers, adaptive frequency models (a linear one for small alphabets,
 * a Fenwick tree for codebook indices), and PPM context lists [ours].
 *
 * Reconstructed / ours: the reference uses 24-bit registers and a 2^20
 * frequency limit; with 32-bit registers the range never falls below 2^30,
 * so totals up to QCX_AC_MAX_TOTAL (2^24) keep ≥ 6 bits of precision.
 * The decoder reads zeros past the end of its buffer (as the reference),
 * and its value stays inside [low, high] for any input, so corrupt data
 * decodes to some symbol sequence that the caller then validates.
 */
#include "qcx_internal.h"

#include <stdlib.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define AC_TOP  0xFFFFFFFFull /* 32-bit code registers                  */
#define AC_HALF 0x80000000ull
#define AC_QTR  0x40000000ull
#define QCX_AC_MAX_TOTAL (1u << 24) /* largest model total (see above)     */
#define CTX_MAX_SYMS 4096u          /* PPM list cap per context             */
#define CTX_LIMIT    60000u         /* PPM count sum before halving         */
#define CTX_INC      2u             /* PPM count increment                  */
#define CTXMAP_MIN   64u            /* smallest order-2 map (slots)          */
#define CTX_EXCL_SCAN 64u           /* list entries checked for exclusion   */

/* ---- encoder ------------------------------------------------------------ */
void qcx_enc_init(qcx_enc *e)
{
    memset(e, 0, sizeof *e);
    e->high = AC_TOP;
}

/* Appends the low k (≤ 32) bits of v, most significant first. */
static void put_bits(qcx_enc *e, uint64_t v, unsigned k)
{
    e->bitbuf = (e->bitbuf << k) | (v & ((1ull << k) - 1));
    for (e->nbits += k; e->nbits >= 8;) {
        e->nbits -= 8;
        if (e->err == KVQ_OK) e->err = kvq_buf_u8(&e->out, (uint8_t)(e->bitbuf >> e->nbits));
    }
}

static void emit(qcx_enc *e, unsigned b)
{
    put_bits(e, b, 1);
    uint64_t fill = b ? 0u : 0xFFFFFFFFu; /* the pending opposite bits */
    for (; e->pending >= 32; e->pending -= 32) put_bits(e, fill, 32);
    if (e->pending) put_bits(e, fill, (unsigned)e->pending);
    e->pending = 0;
}

/* Renormalisation as Witten–Neal–Cleary, the E1/E2 steps (low and high
 * share their top bit) done at once for all shared leading bits: the
 * first is emitted with the pending bits, the rest follow as they are. */
void qcx_enc_code(qcx_enc *e, uint32_t cum, uint32_t freq, uint32_t total)
{
    uint64_t r = e->high - e->low + 1;
    uint64_t low = e->low + r * cum / total, high = e->low + r * (cum + freq) / total - 1;
    for (;;) {
        uint32_t same = (uint32_t)~(low ^ high);
        if (same & AC_HALF) {
            unsigned k = (unsigned)__builtin_clz(~same | 1u);
            emit(e, (unsigned)(low >> 31));
            if (k > 1) put_bits(e, low >> (32 - k), k - 1);
            low = (low << k) & AC_TOP;
            high = ((high << k) | ((1ull << k) - 1)) & AC_TOP;
        } else if (low >= AC_QTR && high < 3 * AC_QTR) {
            e->pending++;
            low = (low - AC_QTR) << 1;
            high = ((high - AC_QTR) << 1) | 1;
        } else {
            break;
        }
    }
    e->low = low, e->high = high;
}

kvq_err qcx_enc_finish(qcx_enc *e)
{
    e->pending++;
    emit(e, e->low < AC_QTR ? 0 : 1);
    if (e->nbits) put_bits(e, 0, 8 - e->nbits);
    return e->err;
}

/* ---- decoder ------------------------------------------------------------ */
/* The next k (1 ≤ k ≤ 32) bits of input; zeros past the end. */
static inline uint64_t get_bits(qcx_dec *d, unsigned k)
{
    if (d->nwin < k) {
        for (; d->nwin <= 56; d->nwin += 8, d->bytepos++) {
            uint64_t byte = KVQ_LIKELY(d->bytepos < d->n) ? d->p[d->bytepos] : 0u;
            d->win |= byte << (56 - d->nwin);
        }
    }
    uint64_t v = d->win >> (64 - k);
    d->win <<= k;
    d->nwin -= k;
    return v;
}

void qcx_dec_init(qcx_dec *d, const uint8_t *p, size_t n)
{
    d->p = p;
    d->n = n;
    d->bytepos = 0;
    d->win = 0;
    d->nwin = 0;
    d->low = 0;
    d->high = AC_TOP;
    d->value = get_bits(d, 32);
}

uint32_t qcx_dec_target(qcx_dec *d, uint32_t total)
{
    uint64_t r = d->high - d->low + 1;
    uint64_t t = ((d->value - d->low + 1) * total - 1) / r;
    return t >= total ? total - 1 : (uint32_t)t;
}

/* Renormalisation as the encoder's, bit by bit in effect: while low and
 * high share their top bit (the E1/E2 cases) all three registers shift
 * left; the shared leading bits are shifted out at once. */
void qcx_dec_code(qcx_dec *d, uint32_t cum, uint32_t freq, uint32_t total)
{
    uint64_t r = d->high - d->low + 1;
    uint64_t low = d->low + r * cum / total, high = d->low + r * (cum + freq) / total - 1;
    uint64_t value = d->value;
    for (;;) {
        uint32_t same = (uint32_t)~(low ^ high); /* 1 where the bits agree */
        if (same & AC_HALF) {
            unsigned k = (unsigned)__builtin_clz(~same | 1u); /* leading agreeing bits */
            uint64_t ones = (1ull << k) - 1;
            low = (low << k) & AC_TOP;
            high = ((high << k) | ones) & AC_TOP;
            value = ((value << k) | get_bits(d, k)) & AC_TOP;
        } else if (low >= AC_QTR && high < 3 * AC_QTR) {
            low = (low - AC_QTR) << 1;
            high = ((high - AC_QTR) << 1) | 1;
            value = ((value - AC_QTR) << 1) | get_bits(d, 1);
        } else {
            break;
        }
    }
    d->low = low, d->high = high, d->value = value;
}

/* ---- small models ------------------------------------------------------- */
qcx_small *qcx_small_create(unsigned n, unsigned inc, uint32_t limit)
{
    qcx_small *m = malloc(sizeof *m + n * sizeof m->f[0]);
    if (!m) return NULL;
    m->n = (uint16_t)n;
    m->inc = (uint16_t)inc;
    m->limit = limit < QCX_AC_MAX_TOTAL ? limit : QCX_AC_MAX_TOTAL;
    for (unsigned i = 0; i < n; i++) m->f[i] = 1;
    m->total = n;
    return m;
}

static void small_update(qcx_small *m, unsigned s)
{
    m->f[s] = (uint16_t)(m->f[s] + m->inc);
    m->total += m->inc;
    if (m->total > m->limit || m->f[s] > 65535u - m->inc) {
        m->total = 0;
        for (unsigned i = 0; i < m->n; i++) {
            m->f[i] = (uint16_t)((m->f[i] >> 1) | 1u); /* never zero */
            m->total += m->f[i];
        }
    }
}

void qcx_small_encode(qcx_small *m, qcx_enc *e, unsigned s)
{
    uint32_t cum = 0;
    for (unsigned i = 0; i < s; i++) cum += m->f[i];
    qcx_enc_code(e, cum, m->f[s], m->total);
    small_update(m, s);
}

kvq_err qcx_small_decode(qcx_small *m, qcx_dec *d, unsigned *s)
{
    uint32_t t = qcx_dec_target(d, m->total), cum = 0;
    unsigned i = 0;
    while (i + 1 < m->n && cum + m->f[i] <= t) cum += m->f[i++];
    qcx_dec_code(d, cum, m->f[i], m->total);
    small_update(m, i);
    *s = i;
    return KVQ_OK;
}

/* ---- Fenwick models ------------------------------------------------------ */
kvq_err qcx_big_init(qcx_big *m, uint32_t n, uint32_t inc, uint32_t limit, int empty)
{
    memset(m, 0, sizeof *m);
    if (n == 0) return KVQ_OK;
    KVQ_FAIL_IF(n >= QCX_AC_MAX_TOTAL / 2, KVQ_ERR_CORRUPT, "model alphabet %u too large", n);
    m->tree = calloc((size_t)n + 1, sizeof *m->tree);
    m->f = malloc((size_t)n * sizeof *m->f);
    KVQ_FAIL_IF(!m->tree || !m->f, KVQ_ERR_NOMEM, "model of %u symbols", n);
    m->n = n;
    m->inc = inc;
    m->limit = limit < QCX_AC_MAX_TOTAL ? limit : QCX_AC_MAX_TOTAL;
    if (m->limit < 2 * n + inc) m->limit = 2 * n + inc < QCX_AC_MAX_TOTAL ? 2 * n + inc : QCX_AC_MAX_TOTAL;
    for (m->top = 1; m->top * 2 <= n; m->top *= 2) {}
    if (empty) { /* every symbol inactive (frequency 0) until activated */
        memset(m->f, 0, (size_t)n * sizeof *m->f);
        m->total = 0;
        return KVQ_OK;
    }
    for (uint32_t i = 0; i < n; i++) m->f[i] = 1;
    /* O(n) Fenwick build */
    for (uint32_t i = 1; i <= n; i++) {
        m->tree[i] += 1;
        uint32_t j = i + (i & (0u - i));
        if (j <= n) m->tree[j] += m->tree[i];
    }
    m->total = n;
    return KVQ_OK;
}

void qcx_big_free(qcx_big *m)
{
    free(m->tree);
    free(m->f);
    memset(m, 0, sizeof *m);
}

static uint32_t big_cum(const qcx_big *m, uint32_t s) /* sum of f[0..s) */
{
    uint32_t c = 0;
    for (uint32_t i = s; i > 0; i -= i & (0u - i)) c += m->tree[i];
    return c;
}

static void big_add(qcx_big *m, uint32_t s, uint32_t v)
{
    for (uint32_t i = s + 1; i <= m->n; i += i & (0u - i)) m->tree[i] += v;
}

static void big_update(qcx_big *m, uint32_t s)
{
    m->f[s] += m->inc;
    m->total += m->inc;
    if (m->total <= m->limit) {
        big_add(m, s, m->inc);
        return;
    }
    memset(m->tree, 0, ((size_t)m->n + 1) * sizeof *m->tree);
    m->total = 0;
    for (uint32_t i = 0; i < m->n; i++) {
        if (m->f[i]) m->f[i] = (m->f[i] >> 1) | 1u; /* active stays ≥ 1, inactive 0 */
        m->total += m->f[i];
    }
    for (uint32_t i = 1; i <= m->n; i++) {
        m->tree[i] += m->f[i - 1];
        uint32_t j = i + (i & (0u - i));
        if (j <= m->n) m->tree[j] += m->tree[i];
    }
}

void qcx_big_encode(qcx_big *m, qcx_enc *e, uint32_t s)
{
    qcx_enc_code(e, big_cum(m, s), m->f[s], m->total);
    big_update(m, s);
}

void qcx_big_activate(qcx_big *m, uint32_t s)
{
    if (m->f[s]) return;
    m->f[s] = m->inc;
    m->total += m->inc;
    big_add(m, s, m->inc);
}

kvq_err qcx_big_decode(qcx_big *m, qcx_dec *d, uint32_t *s)
{
    KVQ_FAIL_IF(m->total == 0, KVQ_ERR_CORRUPT, "event refers to an empty codebook level");
    uint32_t t = qcx_dec_target(d, m->total);
    /* Fenwick descent: largest pos with prefix sum ≤ t */
    uint32_t pos = 0, cum = 0;
    for (uint32_t step = m->top; step; step >>= 1) {
        uint32_t nx = pos + step;
        if (nx <= m->n && cum + m->tree[nx] <= t) {
            pos = nx;
            cum += m->tree[nx];
        }
    }
    if (pos >= m->n) pos = m->n - 1, cum = big_cum(m, pos);
    qcx_dec_code(d, cum, m->f[pos], m->total);
    big_update(m, pos);
    *s = pos;
    return KVQ_OK;
}

/* ---- PPM context lists ---------------------------------------------------
 * A context first codes "escape or not" with a learned binary model (see
 * see_index), then a listed symbol with its count.  After an escape from
 * the order-2 context, the symbols it listed are excluded from the order-1
 * one (they cannot be the answer): "exclusion" in PPM terms. */
kvq_err qcx_excl_init(qcx_excl *x, const uint32_t n[QCX_NLEV])
{
    memset(x, 0, sizeof *x);
    size_t total = 1; /* dense id 0: the escape key */
    for (unsigned lv = 1; lv < QCX_NLEV; lv++) {
        x->base[lv] = (uint32_t)total;
        total += n[lv];
    }
    x->stamp = calloc(total, sizeof *x->stamp);
    KVQ_FAIL_IF(!x->stamp, KVQ_ERR_NOMEM, "exclusion stamps for %zu symbols", total);
    return KVQ_OK;
}

void qcx_excl_free(qcx_excl *x)
{
    free(x->stamp);
    x->stamp = NULL;
}

static uint32_t dense(const qcx_excl *x, uint32_t k)
{
    return x->base[QCX_KEY_LV(k)] + QCX_KEY_IX(k);
}

void qcx_excl_clear(qcx_excl *x)
{
    x->cur++; /* one per literal: ≤ 2^30 per block, never wraps */
    x->pend = NULL;
}

/* Stamping is deferred until a coder needs the excluded totals: most
 * order-1 contexts are empty or escape, and then the set is never read. */
void qcx_excl_add(qcx_excl *x, const qcx_ctx *c)
{
    x->pend = c;
}

static void excl_flush(qcx_excl *x)
{
    const qcx_ctx *c = x->pend;
    if (!c) return;
    x->pend = NULL;
    for (uint32_t i = 0; i < c->n; i++) x->stamp[dense(x, c->key[i])] = x->cur;
}

/* Exclusion applies to the first CTX_EXCL_SCAN list entries only: lists
 * stay roughly sorted by count, so that is where the excluded (frequent)
 * symbols sit, and totals then cost O(CTX_EXCL_SCAN), not O(list).
 * Returns the bit mask of excluded entries among them and the count sum
 * left after exclusion. */
static uint64_t excl_mask(qcx_excl *x, const qcx_ctx *c, uint32_t *sum)
{
    excl_flush(x);
    uint32_t lim = c->n < CTX_EXCL_SCAN ? c->n : CTX_EXCL_SCAN, s = c->sum;
    uint64_t mask = 0;
    for (uint32_t i = 0; i < lim; i++) {
        if (x->stamp[dense(x, c->key[i])] != x->cur) continue;
        mask |= 1ull << i;
        s -= c->cnt[i];
    }
    *sum = s;
    return mask;
}

/* Secondary escape estimation: the escape decision is a binary event coded
 * with an adaptive model chosen by the context's shape (distinct symbols,
 * total count), so the escape probability is learned, not assumed. */
static unsigned see_index(uint32_t n, uint32_t sum)
{
    unsigned nb = n >= QCX_SEE_NB ? QCX_SEE_NB - 1 : n - 1, sb = 0;
    while (sb + 1 < QCX_SEE_SB && (sum >> (sb + 1)) >= 2) sb++;
    return nb * QCX_SEE_SB + sb;
}

void qcx_ctx_encode_escape(qcx_ctx *c, qcx_small *const *see, qcx_enc *e)
{
    if (c->n) qcx_small_encode(see[see_index(c->n, c->sum)], e, 1);
    c->hint = QCX_CTX_ABSENT;
}

/* List scans, unrolled (16 lanes with SSE2): most time goes into long
 * order-1 and order-2 lists. */
#if defined(__SSE2__)
static inline __m128i load128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }
#endif

static uint32_t find_key(const uint32_t *key, uint32_t n, uint32_t s)
{
    uint32_t i = 0;
#if defined(__SSE2__)
    const __m128i v = _mm_set1_epi32((int)s);
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_cmpeq_epi32(load128(key + i), v);
        __m128i b = _mm_cmpeq_epi32(load128(key + i + 4), v);
        __m128i c = _mm_cmpeq_epi32(load128(key + i + 8), v);
        __m128i d = _mm_cmpeq_epi32(load128(key + i + 12), v);
        if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)))) break;
    }
#endif
    for (; i + 4 <= n; i += 4)
        if ((key[i] == s) | (key[i + 1] == s) | (key[i + 2] == s) | (key[i + 3] == s)) break;
    while (i < n && key[i] != s) i++;
    return i;
}

/* Sum of 8 counts.  SSE2 has no unsigned 16-bit multiply-add, so the
 * counts are biased to signed (x ^ 0x8000 = x − 32768) and the bias added
 * back: exact for every uint16_t. */
static inline uint32_t sum8(const uint16_t *p)
{
#if defined(__SSE2__)
    __m128i x = _mm_xor_si128(load128(p), _mm_set1_epi16((short)0x8000));
    __m128i s = _mm_madd_epi16(x, _mm_set1_epi16(1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return (uint32_t)_mm_cvtsi128_si32(s) + 8u * 32768u;
#else
    return ((uint32_t)p[0] + p[1]) + ((uint32_t)p[2] + p[3]) + ((uint32_t)p[4] + p[5]) +
           ((uint32_t)p[6] + p[7]);
#endif
}

static uint32_t sum_cnt(const uint16_t *cnt, uint32_t a, uint32_t b) /* cnt[a..b) */
{
    uint32_t s = 0;
#if defined(__SSE2__) /* lanes add up biased pair sums: |lane| ≤ 2^16 × 2^9 blocks */
    __m128i acc = _mm_setzero_si128();
    const __m128i bias = _mm_set1_epi16((short)0x8000), one = _mm_set1_epi16(1);
    uint32_t blocks = 0;
    for (; a + 8 <= b; a += 8, blocks++)
        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_xor_si128(load128(cnt + a), bias), one));
    acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, 0x4E));
    acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, 0xB1));
    s = (uint32_t)_mm_cvtsi128_si32(acc) + blocks * 8u * 32768u;
#endif
    for (; a + 8 <= b; a += 8) s += sum8(cnt + a);
    for (; a < b; a++) s += cnt[a];
    return s;
}

/* First i' ≥ i with *cum + cnt[i'] > t, adding the counts it passes to
 * *cum; n if none (corrupt input: the caller checks). */
static uint32_t scan_cum(const uint16_t *cnt, uint32_t i, uint32_t n, uint32_t *cum, uint32_t t)
{
    uint32_t c = *cum;
    for (; i + 8 <= n; i += 8) {
        uint32_t b = sum8(cnt + i);
        if (c + b > t) break;
        c += b;
    }
    for (; i < n && c + cnt[i] <= t; i++) c += cnt[i];
    *cum = c;
    return i;
}

int qcx_ctx_encode(qcx_ctx *c, qcx_excl *x, qcx_small *const *see, qcx_enc *e, uint32_t s)
{
    c->hint = QCX_CTX_ABSENT;
    if (c->n == 0) return 0;
    /* the escape decision first, from the list's raw shape (O(1)); the
     * excluded totals are needed only when the symbol is in the list */
    qcx_small *m = see[see_index(c->n, c->sum)];
    uint32_t i = find_key(c->key, c->n, s);
    if (i == c->n) {
        qcx_small_encode(m, e, 1);
        return 0;
    }
    c->hint = i;
    qcx_small_encode(m, e, 0);
    uint32_t sum = c->sum, cum = 0;
    if (x) {
        uint64_t mask = excl_mask(x, c, &sum);
        uint32_t lim = i < CTX_EXCL_SCAN ? i : CTX_EXCL_SCAN;
        for (uint32_t k = 0; k < lim; k++)
            if (!(mask >> k & 1u)) cum += c->cnt[k];
        cum += sum_cnt(c->cnt, lim, i);
    } else {
        cum = sum_cnt(c->cnt, 0, i);
    }
    qcx_enc_code(e, cum, c->cnt[i], sum);
    return 1;
}

int qcx_ctx_decode(qcx_ctx *c, qcx_excl *x, qcx_small *const *see, qcx_dec *d, uint32_t *s)
{
    c->hint = QCX_CTX_ABSENT;
    if (c->n == 0) return 0;
    unsigned esc;
    qcx_small_decode(see[see_index(c->n, c->sum)], d, &esc);
    if (esc) return 0;
    uint32_t sum = c->sum, cum = 0, i = 0;
    const uint16_t *cnt = c->cnt;
    if (!x) { /* no exclusion: a plain cumulative scan */
        uint32_t t = qcx_dec_target(d, sum);
        i = scan_cum(cnt, 0, c->n, &cum, t);
        if (i == c->n) return -1; /* unreachable: t < sum */
        qcx_dec_code(d, cum, cnt[i], sum);
        *s = c->key[i];
        c->hint = i;
        return 1;
    }
    uint64_t mask = excl_mask(x, c, &sum);
    if (sum == 0) return -1; /* "hit" with every symbol excluded: corrupt */
    uint32_t t = qcx_dec_target(d, sum), lim = c->n < CTX_EXCL_SCAN ? c->n : CTX_EXCL_SCAN;
    for (; i < lim; i++) {
        if (mask >> i & 1u) continue;
        if (cum + cnt[i] > t) break;
        cum += cnt[i];
    }
    if (i == lim) i = scan_cum(cnt, lim, c->n, &cum, t);
    if (i == c->n) return -1; /* unreachable: t < sum */
    qcx_dec_code(d, cum, cnt[i], sum);
    *s = c->key[i];
    c->hint = i;
    return 1;
}

kvq_err qcx_ctx_update(qcx_ctx *c, uint32_t s)
{
    /* the coder's hint saves the search: the position it coded s at, or
     * "absent" after an escape; anything else is searched */
    uint32_t i = c->hint;
    c->hint = QCX_CTX_UNKNOWN;
    if (i == QCX_CTX_ABSENT) {
        i = c->n;
    } else if (i >= c->n || c->key[i] != s) {
        i = 0;
        while (i < c->n && c->key[i] != s) i++;
    }
    if (i == c->n) {
        if (c->n == CTX_MAX_SYMS) return KVQ_OK; /* full: stays an escape */
        if (c->n == c->cap) {
            uint32_t nc = c->cap ? c->cap * 2 : 4;
            uint32_t *k = realloc(c->key, nc * sizeof *k);
            if (!k) return KVQ_ERROR(KVQ_ERR_NOMEM, "context list of %u", nc);
            c->key = k;
            uint16_t *q = realloc(c->cnt, nc * sizeof *q);
            if (!q) return KVQ_ERROR(KVQ_ERR_NOMEM, "context list of %u", nc);
            c->cnt = q;
            c->cap = nc;
        }
        c->key[i] = s;
        c->cnt[i] = 0;
        c->n++;
    }
    c->cnt[i] = (uint16_t)(c->cnt[i] + CTX_INC);
    c->sum += CTX_INC;
    /* keep frequent symbols near the front: shorter scans, same on both sides */
    if (i > 0 && c->cnt[i] > c->cnt[i - 1]) {
        uint32_t k = c->key[i];
        uint16_t q = c->cnt[i];
        c->key[i] = c->key[i - 1];
        c->cnt[i] = c->cnt[i - 1];
        c->key[i - 1] = k;
        c->cnt[i - 1] = q;
    }
    if (c->sum > CTX_LIMIT) {
        c->sum = 0;
        for (uint32_t j = 0; j < c->n; j++) {
            c->cnt[j] = (uint16_t)((c->cnt[j] >> 1) | 1u);
            c->sum += c->cnt[j];
        }
    }
    return KVQ_OK;
}

void qcx_ctx_free(qcx_ctx *c)
{
    free(c->key);
    free(c->cnt);
    memset(c, 0, sizeof *c);
}

/* ---- order-2 context map -------------------------------------------------- */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static kvq_err ctxmap_alloc(qcx_ctxmap *m, size_t cap)
{
    m->tab = malloc(cap * sizeof *m->tab);
    KVQ_FAIL_IF(!m->tab, KVQ_ERR_NOMEM, "context map of %zu", cap);
    for (size_t i = 0; i < cap; i++) m->tab[i].key = QCX_CTXMAP_EMPTY;
    m->mask = cap - 1;
    return KVQ_OK;
}

kvq_err qcx_ctxmap_init(qcx_ctxmap *m, size_t expect)
{
    memset(m, 0, sizeof *m);
    size_t cap = CTXMAP_MIN;
    while (cap < expect * 2) cap *= 2;
    return ctxmap_alloc(m, cap);
}

static int ctxmap_grow(qcx_ctxmap *m)
{
    qcx_ctxent *old = m->tab;
    size_t old_cap = m->mask + 1;
    if (ctxmap_alloc(m, old_cap * 2) != KVQ_OK) {
        m->tab = old;
        m->mask = old_cap - 1;
        return -1;
    }
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key == QCX_CTXMAP_EMPTY) continue;
        size_t h = mix64(old[i].key) & m->mask;
        while (m->tab[h].key != QCX_CTXMAP_EMPTY) h = (h + 1) & m->mask;
        m->tab[h] = old[i];
    }
    free(old);
    return 0;
}

qcx_ctx *qcx_ctxmap_get(qcx_ctxmap *m, uint64_t key)
{
    size_t h = mix64(key) & m->mask;
    for (; m->tab[h].key != QCX_CTXMAP_EMPTY; h = (h + 1) & m->mask)
        if (m->tab[h].key == key) return &m->tab[h].ctx;
    if ((m->used + 1) * 2 > m->mask + 1) {
        if (ctxmap_grow(m) != 0) return NULL;
        h = mix64(key) & m->mask;
        while (m->tab[h].key != QCX_CTXMAP_EMPTY) h = (h + 1) & m->mask;
    }
    m->used++;
    m->tab[h].key = key;
    memset(&m->tab[h].ctx, 0, sizeof m->tab[h].ctx);
    return &m->tab[h].ctx;
}

void qcx_ctxmap_prefetch(const qcx_ctxmap *m, uint64_t key)
{
    __builtin_prefetch(&m->tab[mix64(key) & m->mask]);
}

void qcx_ctxmap_free(qcx_ctxmap *m)
{
    for (size_t i = 0; m->tab && i <= m->mask; i++)
        if (m->tab[i].key != QCX_CTXMAP_EMPTY) qcx_ctx_free(&m->tab[i].ctx);
    free(m->tab);
    memset(m, 0, sizeof *m);
}

/* ---- LEB128 ------------------------------------------------------------- */
kvq_err qcx_put_leb(kvq_buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t k = 0;
    do {
        t[k] = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v) t[k] |= 0x80;
        k++;
    } while (v);
    return kvq_buf_put(b, t, k);
}

kvq_err qcx_get_leb(kvq_rd *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned sh = 0;; sh += 7) {
        uint8_t c;
        KVQ_TRY(kvq_rd_u8(r, &c));
        KVQ_FAIL_IF(sh == 63 && (c & 0x7E), KVQ_ERR_CORRUPT, "%s: LEB128 overflow at offset %zu",
                    r->what ? r->what : "input", r->off - 1);
        x |= (uint64_t)(c & 0x7F) << sh;
        if (!(c & 0x80)) break;
        KVQ_FAIL_IF(sh >= 63, KVQ_ERR_CORRUPT, "%s: LEB128 too long at offset %zu",
                    r->what ? r->what : "input", r->off - 1);
    }
    *v = x;
    return KVQ_OK;
}
