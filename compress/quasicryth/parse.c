/*
 * parse.c — Quasicryth parse and word-level LZ77 (papers/quasicryth.md
 * §7, §8, §9).
 *
 * Lookups: every (position, level) that some tiling of the chosen set
 * marks is looked up once (the union over tilings gives the same deepest
 * hit per position as the reference's per-tiling maximum).  Parse:
 * deepest level first, non-overlapping, then bigrams anywhere, then
 * unigram or escape.  LZ77: greedy, non-overlapping matches of 3 … 255
 * events found through a hash of three events with four candidates.
 */
#include "qcx_internal.h"

#include <stdlib.h>

#define LZ_WAYS      4            /* candidates per hash bucket (§9)        */
#define LZ_MAX_LOG   22           /* at most 2^22 buckets (§9)              */
#define LZ_GOOD      64           /* stop searching at a match this long    */
#define LV_NONE      0xFF         /* no event starts at this word           */

/* Deepest codebook hit per position over the lookup masks of the tiling. */
static kvq_err deepest_hits(const qcx_cb *cb, size_t nw, int tiling, uint8_t *best_lv,
                            uint32_t *best_ix, qcx_pstats *st)
{
    uint16_t *mask = malloc((nw + 1) * sizeof *mask);
    KVQ_FAIL_IF(!mask, KVQ_ERR_NOMEM, "lookup masks for %zu words", nw);
    kvq_err e = qcx_lookup_masks(tiling, nw, mask);
    for (size_t p = 0; p < nw && e == KVQ_OK; p++) {
        best_lv[p] = 0;
        if (!mask[p] || cb->seq[p] == QCX_NONE) continue;
        for (unsigned k = QCX_HLEVELS - 1; k >= 1; k--) {
            unsigned lv = k + 2; /* hierarchy level k ↔ encoding level k + 2 */
            if (!(mask[p] >> k & 1u) || p + qcx_level_len[lv] > nw) continue;
            st->lookups[k]++;
            uint32_t ix = qcx_cb_find(cb, lv, p);
            if (ix == QCX_NONE) continue;
            st->hits[k]++;
            if (!best_lv[p]) {
                best_lv[p] = (uint8_t)lv;
                best_ix[p] = ix;
            }
        }
    }
    free(mask);
    return e;
}

static int span_free(const uint8_t *covered, size_t p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (covered[p + i]) return 0;
    return 1;
}

kvq_err qcx_parse(const qcx_cb *cb, size_t nw, int tiling, uint32_t **keys, size_t *n_keys,
                  qcx_pstats *st)
{
    uint8_t *best_lv = malloc(nw + 1), *covered = calloc(nw + 1, 1), *ev_lv = malloc(nw + 1);
    uint32_t *best_ix = malloc((nw + 1) * sizeof *best_ix);
    uint32_t *ev_ix = malloc((nw + 1) * sizeof *ev_ix);
    *keys = malloc((nw + 1) * sizeof **keys);
    kvq_err e = best_lv && covered && ev_lv && best_ix && ev_ix && *keys
                    ? KVQ_OK
                    : KVQ_ERROR(KVQ_ERR_NOMEM, "parse arrays for %zu words", nw);
    if (e == KVQ_OK) e = deepest_hits(cb, nw, tiling, best_lv, best_ix, st);
    if (e == KVQ_OK) {
        memset(ev_lv, LV_NONE, nw + 1);
        for (unsigned lv = QCX_NLEV - 1; lv >= QCX_LV_NG0; lv--) {
            size_t len = qcx_level_len[lv];
            for (size_t p = 0; p < nw; p++) {
                if (best_lv[p] != lv || !span_free(covered, p, len)) continue;
                memset(covered + p, 1, len);
                ev_lv[p] = (uint8_t)lv;
                ev_ix[p] = best_ix[p];
            }
        }
        for (size_t p = 0; p + 1 < nw && cb->n[QCX_LV_BI]; p++) {
            if (covered[p] || covered[p + 1] || cb->seq[p] == QCX_NONE ||
                cb->seq[p + 1] == QCX_NONE)
                continue;
            uint32_t ix = qcx_cb_find(cb, QCX_LV_BI, p);
            if (ix == QCX_NONE) continue;
            covered[p] = covered[p + 1] = 1;
            ev_lv[p] = QCX_LV_BI;
            ev_ix[p] = ix;
        }
        size_t n = 0;
        for (size_t p = 0; p < nw; p++) {
            if (!covered[p]) {
                uint32_t u = cb->seq[p];
                (*keys)[n++] = u == QCX_NONE ? QCX_KEY(QCX_LV_ESC, 0) : QCX_KEY(QCX_LV_UNI, u);
            } else if (ev_lv[p] != LV_NONE) {
                (*keys)[n++] = QCX_KEY(ev_lv[p], ev_ix[p]);
            }
        }
        *n_keys = n;
    }
    free(best_lv);
    free(covered);
    free(ev_lv);
    free(best_ix);
    free(ev_ix);
    return e;
}

static uint32_t hash3(const uint32_t *k, unsigned log)
{
    uint64_t h = (k[0] * 0x9E3779B1ull) ^ (k[1] * 0x85EBCA77ull) ^ (k[2] * 0xC2B2AE3Dull);
    h *= 0x27D4EB2F165667C5ull;
    return (uint32_t)(h >> (64 - log));
}

kvq_err qcx_lz77(const uint32_t *keys, size_t n, unsigned min_len, qcx_match **out)
{
    unsigned log = 10;
    while (log < LZ_MAX_LOG && ((size_t)1 << log) < n) log++;
    uint32_t *tab = calloc((size_t)LZ_WAYS << log, sizeof *tab); /* position + 1 */
    qcx_match *m = calloc(n + 1, sizeof *m);
    if (!tab || !m) {
        free(tab);
        free(m);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "LZ77 tables for %zu events", n);
    }
    for (size_t i = 0; i + 3 <= n;) {
        uint32_t *b = tab + ((size_t)hash3(keys + i, log) * LZ_WAYS);
        size_t best = 0, best_d = 0;
        for (unsigned w = 0; w < LZ_WAYS && b[w] && best < LZ_GOOD; w++) {
            size_t c = b[w] - 1, d = i - c, len = 0;
            size_t lim = n - i < QCX_LZ_MAX ? n - i : QCX_LZ_MAX;
            if (lim > d) lim = d; /* non-overlapping: len ≤ distance */
            while (len < lim && keys[c + len] == keys[i + len]) len++;
            if (len > best) best = len, best_d = d;
        }
        memmove(b + 1, b, (LZ_WAYS - 1) * sizeof *b);
        b[0] = (uint32_t)i + 1;
        if (best >= min_len && best >= QCX_LZ_MIN) {
            m[i].dist = (uint32_t)best_d;
            m[i].len = (uint32_t)best;
            i += best;
        } else {
            i++;
        }
    }
    free(tab);
    *out = m;
    return KVQ_OK;
}
