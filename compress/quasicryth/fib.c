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
     * truncating conversion is exactly floor, without a libm call.  The SS
     * → L pass (greedy, left to right) runs on the fly: a raw S right after
     * an unpaired raw S turns that S into L. */
    size_t n = 0, covered = 0;
    int64_t b = (int64_t)floor(theta); /* floor(kα + θ), carried from the previous k */
    unsigned lone_s = 0;
    for (size_t k = 0; covered < nw; k++) {
        double x = (double)(k + 1) * alpha + theta;
        int64_t a = x >= 0.0 ? (int64_t)x : (int64_t)floor(x);
        unsigned is_l = a - b >= 1;
        b = a;
        if (is_l && covered + 2 > nw) is_l = 0; /* L would overrun: S, then stop */
        covered += 1u + is_l;
        if (!is_l && lone_s && merge_ss) {
            tiles[n - 1] = QCX_TL_L;
            lone_s = 0;
            continue;
        }
        tiles[n++] = is_l ? QCX_TL_L : QCX_TL_S;
        lone_s = !is_l;
    }
    return n;
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

/* Nodes of one hierarchy level, deflated in place: node[i] = first word
 * × 2 + (1 if L); node i spans start(i + 1) − start(i) words, and
 * node[n] = (words covered) × 2 + 1 is a sentinel L.  Blocks hold fewer
 * than 2^31 words (BLOCK_MAX), so a node fits 32 bits. */
typedef struct {
    uint8_t  *tiles;
    uint32_t *node;
} level_nodes;

static kvq_err nodes_alloc(level_nodes *lv, size_t n_tiles)
{
    KVQ_FAIL_IF(n_tiles >= (1u << 31), KVQ_ERR_PARAM_RANGE, "hierarchy of %zu tiles", n_tiles);
    lv->tiles = malloc(n_tiles + 1);
    lv->node = malloc((n_tiles + 2) * sizeof *lv->node);
    if (lv->tiles && lv->node) return KVQ_OK;
    free(lv->tiles), free(lv->node);
    return KVQ_ERROR(KVQ_ERR_NOMEM, "hierarchy of %zu tiles", n_tiles);
}

/* Deflates lv->tiles[0..n_tiles) level by level and reports every
 * exact-span super-L: OR into mask[pos] when mask is set, else via fn. */
static void deflate(level_nodes *lv, size_t n_tiles, uint16_t *mask, qcx_lookup_fn fn,
                    void *opaque)
{
    uint32_t *nd = lv->node, pos = 0;
    for (size_t i = 0; i < n_tiles; i++) {
        unsigned is_l = lv->tiles[i] == QCX_TL_L;
        nd[i] = pos << 1 | is_l;
        pos += 1u + is_l;
    }
    nd[n_tiles] = pos << 1 | 1u;
    size_t n = n_tiles;
    /* level MAX_MERGES would have no codebook (beyond 144 words): stop before */
    for (unsigned k = 1; k < QCX_HLEVELS && k <= MAX_MERGES && n >= 2; k++) {
        size_t m = 0;
        uint32_t span = span_at[k];
        for (size_t i = 0; i < n; m++) {
            /* "L followed by S" merges into a super-L; anything else is S */
            uint32_t a = nd[i];
            unsigned merge = a & ~nd[i + 1] & 1u;
            if (merge && (nd[i + 2] >> 1) - (a >> 1) == span) {
                if (mask) mask[a >> 1] |= (uint16_t)(1u << k);
                else fn(opaque, k, a >> 1);
            }
            nd[m] = (a & ~1u) | merge;
            i += 1 + merge;
        }
        nd[m] = pos << 1 | 1u;
        n = m;
    }
}

kvq_err qcx_hierarchy(const uint8_t *tiles, size_t n_tiles, qcx_lookup_fn fn, void *opaque)
{
    level_nodes lv;
    KVQ_TRY(nodes_alloc(&lv, n_tiles));
    memcpy(lv.tiles, tiles, n_tiles);
    deflate(&lv, n_tiles, NULL, fn, opaque);
    free(lv.tiles);
    free(lv.node);
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
    /* one workspace for every tiling */
    level_nodes lv;
    KVQ_TRY(nodes_alloc(&lv, nw));
    if (mode == 2) {
        deflate(&lv, qcx_tiling_p5(nw, lv.tiles), mask, NULL, NULL);
    } else {
        const double alpha = 1.0 / PHI;
        for (unsigned i = 0; i < N_GOLDEN; i++) {
            double th = fmod((double)i / PHI, 1.0);
            deflate(&lv, qcx_tiling_mech(alpha, th, nw, 1, lv.tiles), mask, NULL, NULL);
        }
        for (unsigned a = 0; mode == 0 && a < N_MULTI_ALPHA; a++)
            for (unsigned t = 0; t < 2; t++)
                deflate(&lv, qcx_tiling_mech(multi_alpha(a), 0.5 * t, nw, 1, lv.tiles), mask, NULL,
                        NULL);
    }
    free(lv.tiles);
    free(lv.node);
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
