/*
 * plt.c — the PLT page codecs (cache-methods.md §3.3, layer 2): predictive
 * coding of KV pages after "Sequential KV Cache Compression via
 * Probabilistic Language Tries" (papers/abstracts.md), in the honest,
 * measurable form of §3.3.  Two codecs:
 *
 *  plt  (id 60) lossless on the f16 / bf16 bit patterns of a page.  Each
 *       16-bit word splits into its sign+exponent field H (f16: 6 bits,
 *       bf16: 9 bits) and its mantissa M.  H is predicted and entropy coded
 *       (rANS, compress/rans.c, or zstd); M is stored as packed bits,
 *       because measured mantissas of real K/V are within a few hundredths
 *       of a bit of uniform, so a table costs more than it saves.  H
 *       predictors, chosen per page by the exact table + stream cost:
 *         raw  : H itself (P0);
 *         prev : sign XOR and exponent difference (mod 2^ebits) against the
 *                same channel of the previous token (P1);
 *         chan : exponent difference against a per-channel reference
 *                exponent (the channel's most frequent one) stored in the
 *                page: a per-channel predictor fitted on the page [ours].
 *       Before that, a token whose whole vector equals an earlier token's
 *       in the page is coded as a back reference [ours]: layer-0 V is a
 *       function of the token id alone, so repeated tokens repeat it
 *       exactly.  When coding would not shrink the page the words are
 *       stored raw, so a page never exceeds 2 bytes per value + header.
 *       The f32 values the cache holds are rounded to the word type first
 *       (RNE, as the f16/bf16 codecs do); from there on every bit,
 *       including NaN payloads and -0, is reproduced.
 *
 *  pltq (id 61) closed-loop lossy DPCM (§3.3 "lossy closed-loop"): the
 *       page is [tokens][channels]; per token and block of PLTQ_BLOCK
 *       channels the encoder picks the prediction (zero, or the previous
 *       token's *reconstructed* values) with the smaller residual range,
 *       quantizes r = x − p̂ with step Δ = max|r| / (2^(b−1) − 1) (stored as
 *       bf16 rounded up) and reconstructs x̂ = p̂ + qΔ exactly as the decoder
 *       will, so |x − x̂| <= Δ/2 at every position with no drift.  The
 *       zigzagged q are rANS coded with one table per page (or packed in
 *       b bits when that is smaller).  axis=channel [ours] instead keeps one
 *       step and one prediction choice per channel for the whole page
 *       (per-channel outliers of K, as KIVI groups keys), sized before the
 *       loop so that closed-loop residuals never clip (see
 *       choose_channel_steps); the same |x − x̂| <= Δ/2 holds.
 *
 * The page's token axis is dim[0] of the tensor (the cache's pages are
 * [page][n_kv_heads][head_size]); channels = everything else.  P2 (previous
 * layer) of §3.3 needs a cross-page dependency that a stateless page codec
 * cannot have, so kvq leaves it out.  Every length, count and table entry
 * of a payload is checked before use.
 */
#include "compress/plt_internal.h"
#include "quant/codecs.h"

#include <math.h>
#include <stdlib.h>
#include <zstd.h>

#define PLT_VERSION      1u
#define PLT_HDR_FIXED    4u        /* version, kind, backend, predictor       */
#define PLT_LEB_MAX      10u
#define PLT_LEB_U32      5u        /* LEB128 bytes of a 32-bit value          */
#define PLT_ZSTD_DEFAULT 19        /* the §3.3 mandatory baseline level        */
#define F16_MAX          65504.0f  /* largest finite binary16                 */
#define F16_REL_ERR      (1.0 / 2048.0) /* RNE to an 11-bit significand       */

#define PLTQ_VERSION     1u
#define PLTQ_HDR         4u        /* version, bits, coding (0 rANS, 1 packed), axis */
#define PLTQ_BLOCK       64        /* channels sharing one step Δ              */
/* Largest |x| pltq codes: residuals (≤ 2·max), steps and reconstructions
 * (≤ 3·max) then stay finite in f32.  Larger values are refused, not
 * silently turned into ±Inf. */
#define PLTQ_MAX_ABS     1e36f
/* ‖x − x̂‖/‖x‖ <= sqrt(BLOCK)/(2L)·(1 + 2^-7) with L = 2^(b−1) − 1 (block
 * error <= BLOCK·Δ²/4, Δ <= max|x_block|/L since the zero prediction is
 * always a candidate, bf16 step rounded up); at the default b = 4:
 * 8/14·1.008 = 0.576. */
#define PLTQ_REL_ERR     0.58

typedef enum { HP_RAW = 0, HP_PREV = 1, HP_CHAN = 2, HP__COUNT } hpred;

typedef struct {
    unsigned ebits, mbits, hbits; /* exponent, mantissa, sign+exponent widths */
} word_layout;

static word_layout layout_of(plt_word k)
{
    word_layout l = {5, 10, 6};
    if (k == PLT_WORD_BF16) l = (word_layout){8, 7, 9};
    return l;
}

/* ---- bit packing of the mantissas (LSB first) ------------------------------ */
static void pack_bits(const uint16_t *v, size_t n, unsigned bits, uint8_t *dst)
{
    uint32_t acc = 0;
    unsigned have = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc |= (uint32_t)v[i] << have;
        for (have += bits; have >= 8; have -= 8, acc >>= 8) dst[o++] = (uint8_t)acc;
    }
    if (have) dst[o] = (uint8_t)acc;
}

static void unpack_bits(const uint8_t *src, size_t n, unsigned bits, uint16_t *v)
{
    uint32_t acc = 0, mask = (1u << bits) - 1;
    unsigned have = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        while (have < bits) acc |= (uint32_t)src[o++] << have, have += 8;
        v[i] = (uint16_t)(acc & mask);
        acc >>= bits;
        have -= bits;
    }
}

static size_t packed_bytes(size_t n, unsigned bits) { return (n * bits + 7) / 8; }

/* ---- the H field and its predictors ---------------------------------------- */
/* Symbol of word i under predictor p (ref: per-channel reference exponents). */
static uint16_t h_symbol(const uint16_t *w, size_t i, int64_t C, word_layout L, hpred p, const uint8_t *ref)
{
    unsigned h = w[i] >> L.mbits, emask = (1u << L.ebits) - 1, sign = h >> L.ebits, e = h & emask;
    if (p == HP_PREV && i >= (size_t)C) {
        unsigned hp = w[i - (size_t)C] >> L.mbits;
        return (uint16_t)(((sign ^ (hp >> L.ebits)) << L.ebits) | ((e - (hp & emask)) & emask));
    }
    if (p == HP_CHAN) return (uint16_t)((sign << L.ebits) | ((e - ref[i % (size_t)C]) & emask));
    return (uint16_t)h;
}

/* The inverse: H of word i given its symbol and the words decoded before. */
static unsigned h_value(const uint16_t *w, size_t i, int64_t C, word_layout L, hpred p, const uint8_t *ref,
                        unsigned s)
{
    unsigned emask = (1u << L.ebits) - 1, sign = s >> L.ebits, d = s & emask;
    if (p == HP_PREV && i >= (size_t)C) {
        unsigned hp = w[i - (size_t)C] >> L.mbits;
        return ((sign ^ (hp >> L.ebits)) << L.ebits) | ((d + (hp & emask)) & emask);
    }
    if (p == HP_CHAN) return (sign << L.ebits) | ((d + ref[i % (size_t)C]) & emask);
    return s;
}

/* ref[c] = the most frequent exponent of channel c (lowest on ties). */
static void channel_refs(const uint16_t *w, int64_t T, int64_t C, word_layout L, uint8_t *ref)
{
    uint32_t hist[256];
    unsigned emask = (1u << L.ebits) - 1;
    for (int64_t c = 0; c < C; c++) {
        memset(hist, 0, sizeof hist);
        for (int64_t t = 0; t < T; t++) hist[(w[t * C + c] >> L.mbits) & emask]++;
        unsigned best = 0;
        for (unsigned e = 1; e <= emask; e++)
            if (hist[e] > hist[best]) best = e;
        ref[c] = (uint8_t)best;
    }
}

/* Bytes the rANS H stream + table would take under predictor p. */
static kvq_err h_cost(const uint16_t *w, size_t N, int64_t C, word_layout L, hpred p, const uint8_t *ref,
                      kvq_rans_table *tab, uint32_t *counts, double *bytes)
{
    unsigned nsym = 1u << L.hbits;
    memset(counts, 0, nsym * sizeof *counts);
    for (size_t i = 0; i < N; i++) counts[h_symbol(w, i, C, L, p, ref)]++;
    KVQ_TRY(kvq_rans_table_build(tab, counts, nsym));
    kvq_buf tb = {0};
    kvq_err e = kvq_rans_table_write(tab, &tb);
    *bytes = kvq_rans_cost_bits(tab, counts) / 8.0 + (double)tb.n + (p == HP_CHAN ? (double)C : 0.0);
    kvq_buf_free(&tb);
    return e;
}

/* ---- lossless page coding ---------------------------------------------------- */
typedef struct {
    const uint16_t *w;
    size_t N;
    int64_t T, C;
    word_layout L;
    hpred p;
    const uint8_t *ref; /* [C] when p == HP_CHAN */
} words_job;

static kvq_err encode_rans(const words_job *j, kvq_rans_table *tab, kvq_buf *out)
{
    uint16_t *sym = malloc(j->N * sizeof *sym + 1);
    KVQ_FAIL_IF(!sym, KVQ_ERR_NOMEM, "plt: out of memory for %zu symbols", j->N);
    for (size_t i = 0; i < j->N; i++) sym[i] = h_symbol(j->w, i, j->C, j->L, j->p, j->ref);
    kvq_buf s = {0};
    kvq_err e = kvq_rans_table_write(tab, out);
    if (!e) e = kvq_rans_encode(tab, sym, j->N, &s);
    if (!e) e = kvq_leb_put(out, s.n);
    if (!e) e = kvq_buf_put(out, s.p, s.n);
    kvq_buf_free(&s);
    free(sym);
    return e;
}

/* zstd backend: the H symbols as one byte plane (f16) or two (bf16: low
 * bytes, then high bytes) in one frame; the packed mantissas follow as in the rANS backend (in the same
 * frame they would share zstd's literal table and hide H's skew). */
static kvq_err encode_zstd(const words_job *j, int level, kvq_buf *out)
{
    size_t hb = j->L.hbits > 8 ? 2 : 1, raw = j->N * hb;
    size_t cap = ZSTD_compressBound(raw);
    uint8_t *plane = malloc(raw + 1), *z = malloc(cap);
    kvq_err e = KVQ_OK;
    if (!plane || !z) e = KVQ_ERROR(KVQ_ERR_NOMEM, "plt: out of memory for a %zu-byte zstd plane", raw);
    if (!e) {
        for (size_t i = 0; i < j->N; i++) {
            uint16_t s = h_symbol(j->w, i, j->C, j->L, j->p, j->ref);
            plane[i] = (uint8_t)s; /* bf16: low bytes, then the sign bits as a second byte plane */
            if (hb == 2) plane[j->N + i] = (uint8_t)(s >> 8);
        }
        size_t zn = ZSTD_compress(z, cap, plane, raw, level);
        if (ZSTD_isError(zn)) e = KVQ_ERROR(KVQ_ERR_IO, "plt: zstd: %s", ZSTD_getErrorName(zn));
        if (!e) e = kvq_leb_put(out, zn);
        if (!e) e = kvq_buf_put(out, z, zn);
    }
    free(plane);
    free(z);
    return e;
}

static kvq_err encode_mantissas(const words_job *j, kvq_buf *out)
{
    size_t nb = packed_bytes(j->N, j->L.mbits);
    uint16_t *m = malloc(j->N * sizeof *m + 1);
    KVQ_FAIL_IF(!m, KVQ_ERR_NOMEM, "plt: out of memory for %zu mantissas", j->N);
    for (size_t i = 0; i < j->N; i++) m[i] = (uint16_t)(j->w[i] & ((1u << j->L.mbits) - 1));
    kvq_err e = kvq_buf_reserve(out, nb);
    if (!e) {
        memset(out->p + out->n, 0, nb);
        pack_bits(m, j->N, j->L.mbits, out->p + out->n);
        out->n += nb;
    }
    free(m);
    return e;
}

/* Rows equal to an earlier row of the page (a token whose vector repeats
 * exactly: layer-0 V is a function of the token id alone): back[t] =
 * t − t' for the nearest equal earlier row t', 0 for a new row, whose words
 * go to `rows` in order.  Returns the number of new rows. */
static int64_t find_repeats(const uint16_t *w, int64_t T, int64_t C, uint32_t *back, uint64_t *hash, uint16_t *rows)
{
    int64_t nn = 0;
    for (int64_t t = 0; t < T; t++) {
        const uint16_t *r = w + t * C;
        uint64_t h = 1469598103934665603ull; /* FNV-1a over the row's words */
        for (int64_t c = 0; c < C; c++) h = (h ^ r[c]) * 1099511628211ull;
        hash[t] = h;
        back[t] = 0;
        for (int64_t u = t - 1; u >= 0; u--)
            if (hash[u] == h && !memcmp(w + u * C, r, (size_t)C * sizeof *r)) {
                back[t] = (uint32_t)(t - u);
                break;
            }
        if (!back[t]) memcpy(rows + nn++ * C, r, (size_t)C * sizeof *r);
    }
    return nn;
}

/* The coded body of the new rows: predictor choice, then rANS or zstd. */
static kvq_err encode_body(words_job *j, plt_backend be, int level, kvq_buf *body)
{
    kvq_rans_table *tab = malloc(sizeof *tab);
    uint32_t *counts = malloc(sizeof(uint32_t) << j->L.hbits);
    uint8_t *ref = malloc((size_t)j->C);
    j->ref = ref;
    kvq_err e = KVQ_OK;
    if (!tab || !counts || !ref) e = KVQ_ERROR(KVQ_ERR_NOMEM, "plt: out of memory for page tables");
    if (!e) channel_refs(j->w, j->T, j->C, j->L, ref);
    double best = 0;
    for (int p = 0; p < HP__COUNT && !e; p++) { /* cheapest predictor, lowest on ties */
        double cost;
        e = h_cost(j->w, j->N, j->C, j->L, (hpred)p, ref, tab, counts, &cost);
        if (!e && (p == 0 || cost < best)) best = cost, j->p = (hpred)p;
    }
    if (!e && j->p == HP_CHAN) e = kvq_buf_put(body, ref, (size_t)j->C);
    if (!e && be == PLT_BACKEND_ZSTD) e = encode_zstd(j, level, body);
    if (!e && be == PLT_BACKEND_RANS) {
        e = h_cost(j->w, j->N, j->C, j->L, j->p, ref, tab, counts, &best); /* rebuild the chosen table */
        if (!e) e = encode_rans(j, tab, body);
    }
    if (!e) e = encode_mantissas(j, body);
    free(tab);
    free(counts);
    free(ref);
    j->ref = NULL;
    return e;
}

kvq_err kvq_plt_words_encode(const uint16_t *w, int64_t tokens, int64_t channels, plt_word kind, plt_backend be,
                             int level, kvq_buf *out)
{
    KVQ_FAIL_IF(tokens < 1 || channels < 1 || tokens > KVQ_MAX_DIM || channels > KVQ_MAX_ELEMENTS / tokens,
                KVQ_ERR_SHAPE, "plt: page of %lld tokens x %lld channels", (long long)tokens, (long long)channels);
    size_t N = (size_t)(tokens * channels);
    uint16_t *rows = malloc(N * sizeof *rows);
    uint32_t *back = malloc((size_t)tokens * sizeof *back);
    uint64_t *hash = malloc((size_t)tokens * sizeof *hash);
    kvq_buf body = {0};
    kvq_err e = rows && back && hash ? KVQ_OK : KVQ_ERROR(KVQ_ERR_NOMEM, "plt: out of memory for a page");
    int64_t nn = e ? 0 : find_repeats(w, tokens, channels, back, hash, rows);
    words_job j = {.w = rows, .N = (size_t)(nn * channels), .T = nn, .C = channels, .L = layout_of(kind)};
    if (!e) e = encode_body(&j, be, level, &body);
    if (!e && body.n >= 2 * j.N) { /* coding does not pay: store the words */
        be = PLT_BACKEND_RAW, j.p = HP_RAW, body.n = 0;
        e = kvq_buf_reserve(&body, 2 * j.N);
        for (size_t i = 0; !e && i < j.N; i++) kvq_wr16(body.p + 2 * i, rows[i]);
        body.n = 2 * j.N;
    }
    uint8_t hdr[PLT_HDR_FIXED] = {PLT_VERSION, (uint8_t)kind, (uint8_t)be, (uint8_t)j.p};
    if (!e) e = kvq_buf_put(out, hdr, sizeof hdr);
    if (!e) e = kvq_leb_put(out, (uint64_t)tokens);
    if (!e) e = kvq_leb_put(out, (uint64_t)channels);
    if (!e) e = kvq_buf_u8(out, nn < tokens);
    for (int64_t t = 1; !e && nn < tokens && t < tokens; t++) e = kvq_leb_put(out, back[t]);
    if (!e) e = kvq_buf_put(out, body.p, body.n);
    kvq_buf_free(&body);
    free(rows), free(back), free(hash);
    return e;
}

/* Rebuild words from H values (sym, decoded in order) and mantissas m. */
static void words_from_fields(const words_job *j, const uint16_t *sym, const uint16_t *m, uint16_t *w)
{
    for (size_t i = 0; i < j->N; i++)
        w[i] = (uint16_t)((h_value(w, i, j->C, j->L, j->p, j->ref, sym[i]) << j->L.mbits) | m[i]);
}

static kvq_err decode_body(kvq_rd *r, const words_job *j, plt_backend be, uint16_t *sym, uint16_t *m, uint16_t *w)
{
    size_t mb = packed_bytes(j->N, j->L.mbits), hb = j->L.hbits > 8 ? 2 : 1;
    uint64_t len;
    const uint8_t *s = NULL, *mp = NULL;
    if (be == PLT_BACKEND_RANS) {
        kvq_rans_table *tab = malloc(sizeof *tab);
        KVQ_FAIL_IF(!tab, KVQ_ERR_NOMEM, "plt: out of memory for a table");
        kvq_err e = kvq_rans_table_read(tab, 1u << j->L.hbits, r);
        if (!e) e = kvq_leb_get(r, &len);
        if (!e) e = kvq_rd_bytes(r, (size_t)len, &s);
        if (!e) e = kvq_rans_decode(tab, s, (size_t)len, sym, j->N);
        free(tab);
        KVQ_TRY(e);
    } else {
        KVQ_TRY(kvq_leb_get(r, &len));
        KVQ_TRY(kvq_rd_bytes(r, (size_t)len, &s));
        uint8_t *plane = malloc(j->N * hb + 1);
        KVQ_FAIL_IF(!plane, KVQ_ERR_NOMEM, "plt: out of memory for a %zu-byte plane", j->N * hb);
        size_t got = ZSTD_decompress(plane, j->N * hb + 1, s, (size_t)len);
        if (ZSTD_isError(got) || got != j->N * hb) {
            free(plane);
            return KVQ_ERROR(KVQ_ERR_CORRUPT, "plt: zstd frame decodes to %s, expected %zu bytes",
                             ZSTD_isError(got) ? ZSTD_getErrorName(got) : "a different size", j->N * hb);
        }
        for (size_t i = 0; i < j->N; i++) sym[i] = (uint16_t)(plane[i] | (hb == 2 ? plane[j->N + i] << 8 : 0));
        free(plane);
    }
    KVQ_FAIL_IF(r->n - r->off != mb, KVQ_ERR_CORRUPT, "plt: %zu mantissa bytes, expected %zu", r->n - r->off, mb);
    KVQ_TRY(kvq_rd_bytes(r, mb, &mp));
    unpack_bits(mp, j->N, j->L.mbits, m);
    for (size_t i = 0; i < j->N; i++)
        KVQ_FAIL_IF(sym[i] >> j->L.hbits, KVQ_ERR_CORRUPT, "plt: H symbol %u at %zu outside %u bits", sym[i], i,
                    j->L.hbits);
    words_from_fields(j, sym, m, w);
    return KVQ_OK;
}

/* The repeat map: back[t] for t >= 1 (back[0] = 0); *nn = new rows. */
static kvq_err read_repeats(kvq_rd *r, int64_t T, uint32_t *back, int64_t *nn)
{
    uint8_t flag;
    KVQ_TRY(kvq_rd_u8(r, &flag));
    KVQ_FAIL_IF(flag > 1, KVQ_ERR_CORRUPT, "plt page: repeat flag %u", flag);
    *nn = 0;
    for (int64_t t = 0; t < T; t++) {
        uint64_t b = 0;
        if (flag && t > 0) KVQ_TRY(kvq_leb_get(r, &b));
        KVQ_FAIL_IF(b > (uint64_t)t, KVQ_ERR_CORRUPT, "plt page: token %lld repeats token %lld", (long long)t,
                    (long long)t - (long long)b);
        back[t] = (uint32_t)b;
        *nn += b == 0;
    }
    return KVQ_OK;
}

static kvq_err decode_rows(kvq_rd *r, const uint8_t *h, words_job *j, uint16_t *rows)
{
    const uint8_t *ref = NULL;
    if (h[2] == PLT_BACKEND_RAW) {
        const uint8_t *p;
        KVQ_FAIL_IF(r->n - r->off != 2 * j->N, KVQ_ERR_CORRUPT, "plt page: %zu stored bytes, expected %zu",
                    r->n - r->off, 2 * j->N);
        KVQ_TRY(kvq_rd_bytes(r, 2 * j->N, &p));
        for (size_t i = 0; i < j->N; i++) rows[i] = kvq_rd16(p + 2 * i);
        return KVQ_OK;
    }
    if (j->p == HP_CHAN) KVQ_TRY(kvq_rd_bytes(r, (size_t)j->C, &ref));
    for (int64_t c = 0; ref && c < j->C; c++)
        KVQ_FAIL_IF(ref[c] >> j->L.ebits, KVQ_ERR_CORRUPT, "plt page: reference exponent %u of channel %lld", ref[c],
                    (long long)c);
    j->ref = ref;
    uint16_t *sym = malloc(j->N * sizeof *sym + 1), *m = malloc(j->N * sizeof *m + 1);
    kvq_err e = (!sym || !m) ? KVQ_ERROR(KVQ_ERR_NOMEM, "plt: out of memory for %zu words", j->N)
                             : decode_body(r, j, (plt_backend)h[2], sym, m, rows);
    free(sym);
    free(m);
    return e;
}

kvq_err kvq_plt_words_decode(const uint8_t *src, size_t n, int64_t tokens, int64_t channels, uint16_t *w)
{
    kvq_rd r = {.p = src, .n = n, .what = "plt page"};
    const uint8_t *h;
    KVQ_TRY(kvq_rd_bytes(&r, PLT_HDR_FIXED, &h));
    KVQ_FAIL_IF(h[0] != PLT_VERSION, KVQ_ERR_VERSION, "plt page: version %u, expected %u", h[0], PLT_VERSION);
    KVQ_FAIL_IF(h[1] > PLT_WORD_BF16 || h[2] > PLT_BACKEND_RAW || h[3] >= HP__COUNT ||
                    (h[2] == PLT_BACKEND_RAW && h[3] != HP_RAW),
                KVQ_ERR_CORRUPT, "plt page: kind %u, backend %u, predictor %u", h[1], h[2], h[3]);
    uint64_t T, C;
    KVQ_TRY(kvq_leb_get(&r, &T));
    KVQ_TRY(kvq_leb_get(&r, &C));
    KVQ_FAIL_IF(T != (uint64_t)tokens || C != (uint64_t)channels, KVQ_ERR_SHAPE,
                "plt page: %llu x %llu recorded, %lld x %lld expected", (unsigned long long)T, (unsigned long long)C,
                (long long)tokens, (long long)channels);
    uint32_t *back = malloc((size_t)tokens * sizeof *back);
    KVQ_FAIL_IF(!back, KVQ_ERR_NOMEM, "plt: out of memory for a page");
    int64_t nn = 0;
    kvq_err e = read_repeats(&r, tokens, back, &nn);
    words_job j = {.N = (size_t)(nn * channels), .T = nn, .C = channels, .L = layout_of((plt_word)h[1]),
                   .p = (hpred)h[3]};
    if (!e) e = decode_rows(&r, h, &j, w); /* new rows first, packed at the front */
    /* expand in place from the back: row t's source (new row k, or an
     * earlier token) is never overwritten before it is read */
    for (int64_t t = tokens - 1, k = nn - 1; !e && t >= 0; t--)
        if (!back[t]) {
            if (k != t) memmove(w + t * channels, w + k * channels, (size_t)channels * sizeof *w);
            k--;
        }
    for (int64_t t = 0; !e && t < tokens; t++)
        if (back[t]) memcpy(w + t * channels, w + (t - back[t]) * channels, (size_t)channels * sizeof *w);
    free(back);
    return e;
}

/* ---- codec glue: plt ------------------------------------------------------------ */
static const char *const dtype_names[] = {"f16", "bf16", NULL};
static const char *const backend_names[] = {"rans", "zstd", NULL};

static const kvq_param plt_params[] = {
    {"dtype", 0, 1, PLT_WORD_F16, 0, dtype_names, "word type the page is stored in (f32 input rounded RNE)"},
    {"backend", 0, 1, PLT_BACKEND_RANS, 0, backend_names, "entropy coder of the predicted sign+exponent field"},
    {"level", 1, 19, PLT_ZSTD_DEFAULT, 1, NULL, "zstd level (backend=zstd)"},
};

typedef struct {
    plt_word    kind;
    plt_backend be;
    int         level;
} plt_state;

static kvq_err plt_init(void *st, const kvq_params *p)
{
    plt_state *s = st;
    s->kind = (plt_word)p->v[0];
    s->be = (plt_backend)p->v[1];
    s->level = (int)p->v[2];
    return KVQ_OK;
}

/* Page tokens = dim[0]; channels = the rest. */
static void page_dims(const kvq_shape *s, int64_t *T, int64_t *C)
{
    int64_t n = kvq_shape_numel(s);
    *T = s->ndim > 1 ? s->dim[0] : 1;
    *C = *T ? n / *T : 0;
}

/* Header, repeat map (LEB128 of a u32: <= 5 bytes per token) and at most
 * the stored words (the encoder falls back to RAW when coding does not
 * pay). */
static size_t plt_bound(const void *st, const kvq_shape *s)
{
    (void)st;
    int64_t T, C;
    page_dims(s, &T, &C);
    return PLT_HDR_FIXED + 2 * PLT_LEB_MAX + 1 + (size_t)T * PLT_LEB_U32 + 2 * (size_t)(T * C);
}

static kvq_err plt_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    const plt_state *s = st;
    int64_t T, C;
    page_dims(&src->shape, &T, &C);
    size_t N = (size_t)(T * C);
    const float *x = src->data;
    uint16_t *w = malloc(N * sizeof *w + 1);
    KVQ_FAIL_IF(!w, KVQ_ERR_NOMEM, "plt: out of memory for %zu words", N);
    for (size_t i = 0; i < N; i++) {
        if (s->kind == PLT_WORD_F16 && isfinite(x[i]) && fabsf(x[i]) > F16_MAX + 16.0f) {
            free(w);
            return KVQ_ERROR(KVQ_ERR_PARAM_RANGE, "plt: element %zu = %g exceeds the f16 range (use dtype=bf16)", i,
                             (double)x[i]);
        }
        w[i] = s->kind == PLT_WORD_F16 ? kvq_f32_to_f16(x[i]) : kvq_f32_to_bf16(x[i]);
    }
    kvq_buf out = {0};
    kvq_err e = N ? kvq_plt_words_encode(w, T, C, s->kind, s->be, s->level, &out) : KVQ_OK;
    free(w);
    if (!e && out.n > cap) e = KVQ_ERROR(KVQ_ERR_DST_TOO_SMALL, "plt: page needs %zu bytes, %zu given", out.n, cap);
    if (!e && out.n) memcpy(dst, out.p, out.n);
    if (!e) *n = out.n;
    kvq_buf_free(&out);
    return e;
}

static kvq_err plt_decode(void *st, const void *src, size_t n, kvq_tensor *dst)
{
    const plt_state *s = st;
    int64_t T, C;
    page_dims(&dst->shape, &T, &C);
    size_t N = (size_t)(T * C);
    if (!N) {
        KVQ_FAIL_IF(n != 0, KVQ_ERR_CORRUPT, "plt: %zu bytes for an empty page", n);
        return KVQ_OK;
    }
    KVQ_FAIL_IF(n < 2 || src == NULL, KVQ_ERR_TRUNCATED, "plt: page of %zu bytes", n);
    KVQ_FAIL_IF(((const uint8_t *)src)[1] != (uint8_t)s->kind, KVQ_ERR_CORRUPT, "plt: page stores %s words, codec set to %s",
                ((const uint8_t *)src)[1] ? "bf16" : "f16", s->kind ? "bf16" : "f16");
    uint16_t *w = malloc(N * sizeof *w);
    KVQ_FAIL_IF(!w, KVQ_ERR_NOMEM, "plt: out of memory for %zu words", N);
    kvq_err e = kvq_plt_words_decode(src, n, T, C, w);
    float *y = dst->data;
    if (!e && s->kind == PLT_WORD_F16) kvq_f16_to_f32_row(w, y, N);
    if (!e && s->kind == PLT_WORD_BF16) kvq_bf16_to_f32_row(w, y, N);
    free(w);
    return e;
}

const kvq_codec kvq_codec_plt = {
    .abi = KVQ_CODEC_ABI, .name = "plt", .id = 60, .domain = KVQ_DOMAIN_KV,
    .flags = KVQ_FLAG_NONFINITE_OK, .state_size = sizeof(plt_state), .params = plt_params,
    .n_params = sizeof plt_params / sizeof plt_params[0], .max_rel_err = F16_REL_ERR * 8.0,
    .summary = "PLT lossless page coder: f16/bf16 words bit-exact, predicted sign+exponent, rANS or zstd",
    .init = plt_init, .bound = plt_bound, .encode = plt_encode, .decode = plt_decode,
};

/* ---- codec glue: pltq (closed-loop DPCM) ------------------------------------------ */
typedef enum { AXIS_TOKEN = 0, AXIS_CHANNEL = 1 } pltq_axis;
static const char *const axis_names[] = {"token", "channel", NULL};

static const kvq_param pltq_params[] = {
    {"bits", 2, 8, 4, 1, NULL, "residual code width: q in [-(2^(b-1)-1), 2^(b-1)-1]"},
    {"axis", 0, 1, AXIS_TOKEN, 0, axis_names,
     "one step per (token, 64 channels) from the closed-loop residual, or per channel over the page"},
};

typedef struct {
    unsigned  bits;
    pltq_axis axis;
} pltq_state;

static kvq_err pltq_init(void *st, const kvq_params *p)
{
    ((pltq_state *)st)->bits = (unsigned)p->v[0];
    ((pltq_state *)st)->axis = (pltq_axis)p->v[1];
    return KVQ_OK;
}

typedef struct {
    int64_t   T, C, nblk;
    int       L;        /* 2^(bits-1) - 1 */
    pltq_axis axis;
    size_t    ngroups;  /* (step, prediction) pairs stored */
} pltq_geom;

static pltq_geom pltq_geometry(const pltq_state *s, const kvq_shape *sh)
{
    pltq_geom g;
    page_dims(sh, &g.T, &g.C);
    g.nblk = (g.C + PLTQ_BLOCK - 1) / PLTQ_BLOCK;
    g.L = (1 << (s->bits - 1)) - 1;
    g.axis = s->axis;
    g.ngroups = g.axis == AXIS_TOKEN ? (size_t)(g.T * g.nblk) : (size_t)g.C;
    return g;
}

static size_t group_of(const pltq_geom *g, int64_t t, int64_t c)
{
    return g->axis == AXIS_TOKEN ? (size_t)(t * g->nblk + c / PLTQ_BLOCK) : (size_t)c;
}

/* Header, steps, prediction bits and at most the packed codes (the
 * encoder stores them packed when rANS would not be smaller). */
static size_t pltq_bound(const void *st, const kvq_shape *s)
{
    pltq_geom g = pltq_geometry(st, s);
    size_t N = (size_t)(g.T * g.C);
    return PLTQ_HDR + 2 * g.ngroups + packed_bytes(g.ngroups, 1) + packed_bytes(N, ((const pltq_state *)st)->bits);
}

/* bf16 step >= d (rounded up), so |r| / step <= L still holds. */
static uint16_t step_up(float d)
{
    uint16_t h = kvq_f32_to_bf16(d);
    if (kvq_bf16_to_f32(h) < d) h++;
    return h;
}

/* The one reconstruction both sides compute (closed loop: same bits). */
static float recon(float p, int q, float d) { return p + (float)q * d; }

/* Quantize x against prediction p with step d; returns x̂, sets the code. */
static float quant_cell(float x, float p, float d, int L, uint16_t *zz)
{
    int q = 0;
    if (d > 0) {
        float r = rintf((x - p) / d);
        q = r > (float)L ? L : r < -(float)L ? -L : (int)r;
    }
    *zz = (uint16_t)(q >= 0 ? 2 * q : -2 * q - 1);
    return recon(p, q, d);
}

/* axis=token: the step of (t, block b) from the closed-loop residual
 * against the previous token's reconstruction or against zero, whichever
 * range is smaller. */
static void choose_token_step(const pltq_geom *g, const float *x, const float *xhat, int64_t t, int64_t b,
                              uint16_t *step, uint8_t *use_prev)
{
    int64_t c0 = b * PLTQ_BLOCK, c1 = c0 + PLTQ_BLOCK < g->C ? c0 + PLTQ_BLOCK : g->C;
    const float *xr = x + t * g->C, *prev = t ? xhat + (t - 1) * g->C : NULL;
    float m0 = 0, m1 = 0;
    for (int64_t c = c0; c < c1; c++) {
        m0 = fmaxf(m0, fabsf(xr[c]));
        if (prev) m1 = fmaxf(m1, fabsf(xr[c] - prev[c]));
    }
    *use_prev = (uint8_t)(prev && m1 < m0);
    *step = step_up((*use_prev ? m1 : m0) / (float)g->L);
}

/* axis=channel: one step per channel for the whole page, chosen before the
 * loop.  With prediction, r_t = (x_t − x_{t−1}) + (x_{t−1} − x̂_{t−1}), so
 * |r_t| <= D + Δ/2 (D = max |x_t − x_{t−1}|) and Δ = max(|x_0|/L,
 * D/(L − 1/2)) keeps every residual within L·Δ: no clamping, no drift. */
static void choose_channel_steps(const pltq_geom *g, const float *x, uint16_t *step, uint8_t *use_prev)
{
    for (int64_t c = 0; c < g->C; c++) {
        float m0 = 0, dmax = 0;
        for (int64_t t = 0; t < g->T; t++) {
            m0 = fmaxf(m0, fabsf(x[t * g->C + c]));
            if (t) dmax = fmaxf(dmax, fabsf(x[t * g->C + c] - x[(t - 1) * g->C + c]));
        }
        float d0 = m0 / (float)g->L, d1 = fmaxf(fabsf(x[c]) / (float)g->L, dmax / ((float)g->L - 0.5f));
        use_prev[c] = (uint8_t)(d1 < d0);
        step[c] = step_up(use_prev[c] ? d1 : d0);
    }
}

/* Closed loop over the page in token order; fills zz and the groups. */
static void pltq_quantize(const pltq_geom *g, const float *x, float *xhat, uint16_t *step, uint8_t *up, uint16_t *zz)
{
    if (g->axis == AXIS_CHANNEL) choose_channel_steps(g, x, step, up);
    for (int64_t t = 0; t < g->T; t++)
        for (int64_t c = 0; c < g->C; c++) {
            size_t k = group_of(g, t, c);
            if (g->axis == AXIS_TOKEN && c % PLTQ_BLOCK == 0)
                choose_token_step(g, x, xhat, t, c / PLTQ_BLOCK, &step[k], &up[k]);
            float p = up[k] && t ? xhat[(t - 1) * g->C + c] : 0.0f;
            xhat[t * g->C + c] = quant_cell(x[t * g->C + c], p, kvq_bf16_to_f32(step[k]), g->L, &zz[t * g->C + c]);
        }
}

/* The codes: rANS with one table, or packed in b bits when not larger. */
static kvq_err pltq_codes(const uint16_t *zz, size_t N, unsigned bits, kvq_buf *codes, int *packed)
{
    uint32_t counts[256] = {0};
    for (size_t i = 0; i < N; i++) counts[zz[i]]++;
    kvq_rans_table *tab = malloc(sizeof *tab);
    KVQ_FAIL_IF(!tab, KVQ_ERR_NOMEM, "pltq: out of memory for a table");
    kvq_err e = N ? kvq_rans_table_build(tab, counts, (1u << bits) - 1) : KVQ_OK;
    if (!e && N) e = kvq_rans_table_write(tab, codes);
    if (!e && N) e = kvq_rans_encode(tab, zz, N, codes);
    free(tab);
    *packed = !e && codes->n >= packed_bytes(N, bits);
    if (*packed) {
        codes->n = 0;
        e = kvq_buf_zeros(codes, packed_bytes(N, bits));
        if (!e) pack_bits(zz, N, bits, codes->p);
    }
    return e;
}

static kvq_err pltq_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    const pltq_state *s = st;
    pltq_geom g = pltq_geometry(s, &src->shape);
    size_t N = (size_t)(g.T * g.C), nb = g.ngroups;
    float *xhat = malloc(N * sizeof *xhat + 1);
    uint16_t *zz = malloc(N * sizeof *zz + 1), *step = malloc(nb * sizeof *step + 1);
    uint8_t *up = calloc(nb + 1, 1);
    kvq_buf out = {0}, codes = {0};
    int packed = 0;
    kvq_err e = (!xhat || !zz || !step || !up) ? KVQ_ERROR(KVQ_ERR_NOMEM, "pltq: out of memory") : KVQ_OK;
    const float *x = src->data;
    for (size_t i = 0; !e && i < N; i++)
        if (!(fabsf(x[i]) <= PLTQ_MAX_ABS))
            e = KVQ_ERROR(KVQ_ERR_PARAM_RANGE, "pltq: element %zu = %g is beyond the codable range ±%g", i,
                          (double)x[i], (double)PLTQ_MAX_ABS);
    if (!e) pltq_quantize(&g, src->data, xhat, step, up, zz);
    if (!e) e = pltq_codes(zz, N, s->bits, &codes, &packed);
    uint8_t hdr[PLTQ_HDR] = {PLTQ_VERSION, (uint8_t)s->bits, (uint8_t)packed, (uint8_t)s->axis};
    if (!e) e = kvq_buf_put(&out, hdr, PLTQ_HDR);
    if (!e) e = kvq_buf_reserve(&out, 2 * nb + packed_bytes(nb, 1));
    if (!e) {
        for (size_t i = 0; i < nb; i++) kvq_wr16(out.p + out.n + 2 * i, step[i]);
        out.n += 2 * nb;
        memset(out.p + out.n, 0, packed_bytes(nb, 1));
        for (size_t i = 0; i < nb; i++) out.p[out.n + i / 8] |= (uint8_t)(up[i] << (i % 8));
        out.n += packed_bytes(nb, 1);
    }
    if (!e) e = kvq_buf_put(&out, codes.p, codes.n);
    if (!e && out.n > cap) e = KVQ_ERROR(KVQ_ERR_DST_TOO_SMALL, "pltq: page needs %zu bytes, %zu given", out.n, cap);
    if (!e) memcpy(dst, out.p, out.n), *n = out.n;
    kvq_buf_free(&out), kvq_buf_free(&codes);
    free(xhat), free(zz), free(step), free(up);
    return e;
}

static kvq_err pltq_decode_codes(const pltq_state *s, kvq_rd *r, const pltq_geom *g, const uint8_t **step,
                                 const uint8_t **up, uint16_t *zz)
{
    size_t N = (size_t)(g->T * g->C), nb = g->ngroups;
    const uint8_t *h;
    KVQ_TRY(kvq_rd_bytes(r, PLTQ_HDR, &h));
    KVQ_FAIL_IF(h[0] != PLTQ_VERSION, KVQ_ERR_VERSION, "pltq: page version %u, expected %u", h[0], PLTQ_VERSION);
    KVQ_FAIL_IF(h[1] != s->bits || h[2] > 1 || h[3] != (uint8_t)s->axis, KVQ_ERR_CORRUPT,
                "pltq: page coded with %u bits, axis %u (codec: %u, %u), coding %u", h[1], h[3], s->bits, s->axis,
                h[2]);
    KVQ_TRY(kvq_rd_bytes(r, 2 * nb, step));
    for (size_t k = 0; k < nb; k++) {
        float d = kvq_bf16_to_f32(kvq_rd16(*step + 2 * k));
        KVQ_FAIL_IF(!(d >= 0 && isfinite(d)), KVQ_ERR_CORRUPT, "pltq: step %zu is %g", k, (double)d);
    }
    KVQ_TRY(kvq_rd_bytes(r, packed_bytes(nb, 1), up));
    if (!N) return r->off == r->n ? KVQ_OK : KVQ_ERROR(KVQ_ERR_CORRUPT, "pltq: trailing bytes in an empty page");
    if (h[2]) { /* packed codes */
        const uint8_t *p;
        KVQ_FAIL_IF(r->n - r->off != packed_bytes(N, s->bits), KVQ_ERR_CORRUPT, "pltq: %zu code bytes, expected %zu",
                    r->n - r->off, packed_bytes(N, s->bits));
        KVQ_TRY(kvq_rd_bytes(r, packed_bytes(N, s->bits), &p));
        unpack_bits(p, N, s->bits, zz);
        for (size_t i = 0; i < N; i++)
            KVQ_FAIL_IF(zz[i] >= (1u << s->bits) - 1, KVQ_ERR_CORRUPT, "pltq: code %u at %zu", zz[i], i);
        return KVQ_OK;
    }
    kvq_rans_table *tab = malloc(sizeof *tab);
    KVQ_FAIL_IF(!tab, KVQ_ERR_NOMEM, "pltq: out of memory for a table");
    kvq_err e = kvq_rans_table_read(tab, (1u << s->bits) - 1, r);
    if (!e) e = kvq_rans_decode(tab, r->p + r->off, r->n - r->off, zz, N);
    free(tab);
    return e;
}

static kvq_err pltq_decode(void *st, const void *src, size_t n, kvq_tensor *dst)
{
    const pltq_state *s = st;
    pltq_geom g = pltq_geometry(s, &dst->shape);
    size_t N = (size_t)(g.T * g.C);
    kvq_rd r = {.p = src, .n = n, .what = "pltq page"};
    const uint8_t *step, *up;
    uint16_t *zz = malloc(N * sizeof *zz + 1);
    KVQ_FAIL_IF(!zz, KVQ_ERR_NOMEM, "pltq: out of memory for %zu codes", N);
    kvq_err e = pltq_decode_codes(s, &r, &g, &step, &up, zz);
    float *y = dst->data;
    for (int64_t t = 0; !e && t < g.T; t++)
        for (int64_t c = 0; c < g.C; c++) {
            size_t k = group_of(&g, t, c);
            unsigned z = zz[t * g.C + c];
            int q = (z & 1) ? -(int)((z + 1) / 2) : (int)(z / 2);
            float p = ((up[k / 8] >> (k % 8)) & 1) && t ? y[(t - 1) * g.C + c] : 0.0f;
            y[t * g.C + c] = recon(p, q, kvq_bf16_to_f32(kvq_rd16(step + 2 * k)));
        }
    free(zz);
    return e;
}

const kvq_codec kvq_codec_pltq = {
    .abi = KVQ_CODEC_ABI, .name = "pltq", .id = 61, .domain = KVQ_DOMAIN_KV,
    .flags = 0, .state_size = sizeof(pltq_state), .params = pltq_params,
    .n_params = sizeof pltq_params / sizeof pltq_params[0], .max_rel_err = PLTQ_REL_ERR,
    .summary = "PLT closed-loop DPCM: per-block previous-token prediction, |err| <= step/2, rANS residuals",
    .init = pltq_init, .bound = pltq_bound, .encode = pltq_encode, .decode = pltq_decode,
};
