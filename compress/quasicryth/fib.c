/*
 * fib.c — Fibonacci / Sturmian tilings and their deflation hierarchy
 * (papers/quasicryth.md §6, §7 and §15).
 *
 * A tiling covers word positions with L (2 words) and S (1 word) tiles.
 * Deflation merges "L followed by S" into a super-L; the start of every
 * super-L at hierarchy level k whose span is exactly SPAN[k] words is a
 * position where the encoder tries an n-gram of that length.  The decoder
 * never needs any of this: tilings only decide where the encoder looks.
 *
 * Multi-α set, Period-5 and "none" follow §6; "allpos" (every position at
 * every level) is the [ours] extension of §16.3.
 */
#include "qcx_internal.h"

#include <math.h>
#include <stdlib.h>

#define MAX_MERGES 10          /* deflation steps (§7)                       */
#define N_GOLDEN   12          /* golden phases θ = frac(i/φ), i = 0..11      */
#define PHI        1.6180339887498948482

/* Words spanned by an exact super-L at hierarchy level k (F_{k+3}). */
static const unsigned span_at[QCX_HLEVELS] = {2, 3, 5, 8, 13, 21, 34, 55, 89, 144};

/* Non-golden α of the Multi set (§6): three quadratic irrationals and the
 * reference's nine tuned values, each used with θ ∈ {0, 0.5}. */
static double multi_alpha(unsigned i)
{
    static const double tuned[9] = {0.502, 0.619, 0.617, 0.616, 0.620, 0.614, 0.621, 0.622, 0.612};
    switch (i) {
    case 0: return sqrt(58.0) - 7.0;
    case 1: return 62.0 * (99.0 - sqrt(5.0)) / 9796.0;
    case 2: return sqrt(13.0) - 3.0;
    default: return tuned[i - 3];
    }
}
#define N_MULTI_ALPHA 12

size_t qcx_tiling_mech(double alpha, double theta, size_t nw, int merge_ss, uint8_t *tiles)
{
    /* floor(kα + θ) as an integer: for the non-negative values here the
     * truncating conversion is exactly floor, without a libm call */
    size_t n = 0, covered = 0;
    int64_t b = (int64_t)floor(theta); /* floor(kα + θ), carried from the previous k */
    for (size_t k = 0; covered < nw; k++) {
        double x = (double)(k + 1) * alpha + theta;
        int64_t a = x >= 0.0 ? (int64_t)x : (int64_t)floor(x);
        int is_l = a - b >= 1;
        b = a;
        if (is_l && covered + 2 > nw) is_l = 0; /* L would overrun: S, then stop */
        tiles[n++] = is_l ? QCX_TL_L : QCX_TL_S;
        covered += is_l ? 2u : 1u;
    }
    if (!merge_ss) return n;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (tiles[i] == QCX_TL_S && i + 1 < n && tiles[i + 1] == QCX_TL_S) {
            tiles[m++] = QCX_TL_L;
            i++;
        } else {
            tiles[m++] = tiles[i];
        }
    }
    return m;
}

size_t qcx_tiling_p5(size_t nw, uint8_t *tiles)
{
    static const uint8_t pat[5] = {QCX_TL_L, QCX_TL_L, QCX_TL_S, QCX_TL_L, QCX_TL_S};
    size_t n = 0, covered = 0;
    for (size_t k = 0; covered < nw; k++) {
        int is_l = pat[k % 5] == QCX_TL_L && covered + 2 <= nw;
        tiles[n++] = is_l ? QCX_TL_L : QCX_TL_S;
        covered += is_l ? 2u : 1u;
    }
    return n;
}

/* Nodes of one hierarchy level, deflated in place: kind[i] (1 = L) and
 * start[i], the first word; node i spans start[i + 1] − start[i] words
 * (start[n] = words covered, kind[n] = L as a sentinel). */
typedef struct {
    uint8_t  *kind;
    uint32_t *start;
} level_nodes;

static kvq_err nodes_alloc(level_nodes *lv, size_t n_tiles)
{
    lv->kind = malloc(n_tiles + 2);
    lv->start = malloc((n_tiles + 2) * sizeof *lv->start);
    if (lv->kind && lv->start) return KVQ_OK;
    free(lv->kind), free(lv->start);
    return KVQ_ERROR(KVQ_ERR_NOMEM, "hierarchy of %zu tiles", n_tiles);
}

/* Deflates the tiles already in lv->kind[0..n_tiles) level by level and
 * reports every exact-span super-L: OR into mask[pos] when mask is set,
 * else through fn. */
static void deflate(level_nodes *lv, size_t n_tiles, uint16_t *mask, qcx_lookup_fn fn,
                    void *opaque)
{
    uint8_t *kind = lv->kind;
    uint32_t *start = lv->start, pos = 0;
    for (size_t i = 0; i < n_tiles; i++) {
        start[i] = pos;
        pos += kind[i] == QCX_TL_L ? 2u : 1u;
    }
    start[n_tiles] = pos;
    kind[n_tiles] = QCX_TL_L;
    size_t n = n_tiles;
    /* level MAX_MERGES would have no codebook (beyond 144 words): stop before */
    for (unsigned k = 1; k < QCX_HLEVELS && k <= MAX_MERGES && n >= 2; k++) {
        size_t m = 0;
        uint32_t span = span_at[k];
        for (size_t i = 0; i < n; m++) {
            /* "L followed by S" merges into a super-L; anything else is S */
            unsigned merge = (kind[i] == QCX_TL_L) & (kind[i + 1] == QCX_TL_S);
            uint32_t s = start[i];
            if (merge && start[i + 2] - s == span) {
                if (mask) mask[s] |= (uint16_t)(1u << k);
                else fn(opaque, k, s);
            }
            kind[m] = (uint8_t)(merge ? QCX_TL_L : QCX_TL_S);
            start[m] = s;
            i += 1 + merge;
        }
        start[m] = pos;
        kind[m] = QCX_TL_L;
        n = m;
    }
}

kvq_err qcx_hierarchy(const uint8_t *tiles, size_t n_tiles, qcx_lookup_fn fn, void *opaque)
{
    level_nodes lv;
    KVQ_TRY(nodes_alloc(&lv, n_tiles));
    memcpy(lv.kind, tiles, n_tiles);
    deflate(&lv, n_tiles, NULL, fn, opaque);
    free(lv.kind);
    free(lv.start);
    return KVQ_OK;
}

kvq_err qcx_lookup_masks(int mode, size_t nw, uint16_t *mask)
{
    memset(mask, 0, nw * sizeof *mask);
    if (mode == 3 || nw == 0) return KVQ_OK; /* none */
    if (mode == 4) {                         /* allpos */
        for (size_t p = 0; p < nw; p++) mask[p] = (uint16_t)(((1u << QCX_HLEVELS) - 1u) & ~1u);
        return KVQ_OK;
    }
    /* one workspace for every tiling: tiles are generated into lv.kind */
    level_nodes lv;
    KVQ_TRY(nodes_alloc(&lv, nw));
    if (mode == 2) {
        deflate(&lv, qcx_tiling_p5(nw, lv.kind), mask, NULL, NULL);
    } else {
        const double alpha = 1.0 / PHI;
        for (unsigned i = 0; i < N_GOLDEN; i++) {
            double th = fmod((double)i / PHI, 1.0);
            deflate(&lv, qcx_tiling_mech(alpha, th, nw, 1, lv.kind), mask, NULL, NULL);
        }
        for (unsigned a = 0; mode == 0 && a < N_MULTI_ALPHA; a++)
            for (unsigned t = 0; t < 2; t++)
                deflate(&lv, qcx_tiling_mech(multi_alpha(a), 0.5 * t, nw, 1, lv.kind), mask, NULL,
                        NULL);
    }
    free(lv.kind);
    free(lv.start);
    return KVQ_OK;
}

void qcx_fib_word(size_t n, uint8_t *out)
{
    /* f = σ^∞(L): generate by substitution, reading the word as it grows. */
    if (n == 0) return;
    size_t len = 1, rd = 0;
    out[0] = QCX_TL_L;
    while (len < n) {
        uint8_t c = out[rd++];
        if (c == QCX_TL_L) {
            /* σ(L) = LS; the first symbol of σ(out[0]) is out[0] itself */
            if (rd == 1) {
                out[len++] = QCX_TL_S;
            } else {
                out[len++] = QCX_TL_L;
                if (len < n) out[len++] = QCX_TL_S;
            }
        } else {
            out[len++] = QCX_TL_L;
        }
    }
}
