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
    size_t n = 0, covered = 0;
    double b = floor(theta); /* floor(kα + θ), carried from the previous k */
    for (size_t k = 0; covered < nw; k++) {
        double a = floor((double)(k + 1) * alpha + theta);
        int is_l = (a - b) >= 0.5;
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

/* One hierarchy level: tile kinds, word starts and spans (in place). */
typedef struct {
    uint8_t  *kind;
    uint32_t *start, *span;
    size_t n;
} level_nodes;

kvq_err qcx_hierarchy(const uint8_t *tiles, size_t n_tiles, qcx_lookup_fn fn, void *opaque)
{
    level_nodes lv = {malloc(n_tiles + 1), malloc((n_tiles + 1) * sizeof(uint32_t)),
                      malloc((n_tiles + 1) * sizeof(uint32_t)), n_tiles};
    if (!lv.kind || !lv.start || !lv.span) {
        free(lv.kind), free(lv.start), free(lv.span);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "hierarchy of %zu tiles", n_tiles);
    }
    uint32_t pos = 0;
    for (size_t i = 0; i < n_tiles; i++) {
        lv.kind[i] = tiles[i];
        lv.start[i] = pos;
        lv.span[i] = tiles[i] == QCX_TL_L ? 2u : 1u;
        pos += lv.span[i];
    }
    for (unsigned k = 1; k <= MAX_MERGES && lv.n >= 2; k++) {
        size_t m = 0;
        for (size_t i = 0; i < lv.n; m++) {
            if (lv.kind[i] == QCX_TL_L && i + 1 < lv.n && lv.kind[i + 1] == QCX_TL_S) {
                lv.kind[m] = QCX_TL_L;
                lv.start[m] = lv.start[i];
                lv.span[m] = lv.span[i] + lv.span[i + 1];
                i += 2;
            } else {
                lv.kind[m] = QCX_TL_S;
                lv.start[m] = lv.start[i];
                lv.span[m] = lv.span[i];
                i += 1;
            }
        }
        lv.n = m;
        if (k >= QCX_HLEVELS) continue; /* no codebook beyond 144 words */
        for (size_t i = 0; i < lv.n; i++)
            if (lv.kind[i] == QCX_TL_L && lv.span[i] == span_at[k]) fn(opaque, k, lv.start[i]);
    }
    free(lv.kind);
    free(lv.start);
    free(lv.span);
    return KVQ_OK;
}

static void mark(void *opaque, unsigned level, size_t pos)
{
    uint16_t *mask = opaque;
    mask[pos] |= (uint16_t)(1u << level);
}

static kvq_err mask_tiling(uint8_t *tiles, size_t n_tiles, uint16_t *mask)
{
    return qcx_hierarchy(tiles, n_tiles, mark, mask);
}

kvq_err qcx_lookup_masks(int mode, size_t nw, uint16_t *mask)
{
    memset(mask, 0, nw * sizeof *mask);
    if (mode == 3 || nw == 0) return KVQ_OK; /* none */
    if (mode == 4) {                         /* allpos */
        for (size_t p = 0; p < nw; p++) mask[p] = (uint16_t)(((1u << QCX_HLEVELS) - 1u) & ~1u);
        return KVQ_OK;
    }
    uint8_t *tiles = malloc(nw);
    KVQ_FAIL_IF(!tiles, KVQ_ERR_NOMEM, "tiling of %zu words", nw);
    kvq_err e = KVQ_OK;
    if (mode == 2) {
        e = mask_tiling(tiles, qcx_tiling_p5(nw, tiles), mask);
        free(tiles);
        return e;
    }
    const double alpha = 1.0 / PHI;
    for (unsigned i = 0; i < N_GOLDEN && e == KVQ_OK; i++) {
        double th = fmod((double)i / PHI, 1.0);
        e = mask_tiling(tiles, qcx_tiling_mech(alpha, th, nw, 1, tiles), mask);
    }
    for (unsigned a = 0; mode == 0 && a < N_MULTI_ALPHA && e == KVQ_OK; a++)
        for (unsigned t = 0; t < 2 && e == KVQ_OK; t++)
            e = mask_tiling(tiles, qcx_tiling_mech(multi_alpha(a), 0.5 * t, nw, 1, tiles), mask);
    free(tiles);
    return e;
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
