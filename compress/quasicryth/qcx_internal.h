/*
 * qcx_internal.h — types shared by the Quasicryth files (never installed).
 *
 * Quasicryth (papers/quasicryth.md) turns text into words, words into
 * (level, index) events chosen with Fibonacci tilings, and codes the events
 * with an adaptive arithmetic coder.  The pieces:
 *   ac.c     arithmetic coder, adaptive frequency models, PPM context lists
 *   fib.c    cut-and-project tilings, deflation hierarchy, lookup masks (§6-7, §15)
 *   tok.c    tokenisation with the 255-byte cap, case flags, word interning (§3-4)
 *   cb.c     unigram / bigram / n-gram codebooks and their serialisation (§5)
 *   parse.c  deepest-first parse and word-level LZ77 (§8-9)
 *   events.c context modelling of events and case flags (§10, [ours] PPM)
 *   bytes.c  order-2 PPM byte coder for the spelling sections [ours]
 *   block.c  one block: sections, liblzma back end, stored fallback (§11, §13)
 *   qcx.c    container, streams, threads over blocks, public API
 */
#ifndef QCX_INTERNAL_H
#define QCX_INTERNAL_H

#include "kvq_internal.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- event levels (§7): 0 escape, 1 unigram, 2 bigram, 3..11 n-grams ---- */
#define QCX_NLEV      12          /* encoding levels 0..11                  */
#define QCX_LV_ESC    0
#define QCX_LV_UNI    1
#define QCX_LV_BI     2
#define QCX_LV_NG0    3           /* first n-gram level (3 words)           */
#define QCX_HLEVELS   10          /* hierarchy levels 0..9 (level 0 = tiles) */
#define QCX_TOKEN_MAX 255         /* [ours] token byte cap (§3)             */
#define QCX_KEY_SHIFT 28          /* event key = level << 28 | index        */
#define QCX_KEY(lv, ix) (((uint32_t)(lv) << QCX_KEY_SHIFT) | (uint32_t)(ix))
#define QCX_KEY_LV(k)   ((unsigned)((k) >> QCX_KEY_SHIFT))
#define QCX_KEY_IX(k)   ((k) & ((1u << QCX_KEY_SHIFT) - 1u))
#define QCX_NONE      0xFFFFFFFFu /* "no unigram index"                     */
#define QCX_END       0xFFFFFFFEu /* sentinel after the last token in seq[]  */

/* Words covered by an event of each level. */
extern const unsigned qcx_level_len[QCX_NLEV];

/* ---- arithmetic coder (ac.c) ------------------------------------------- */
typedef struct qcx_enc {
    uint64_t low, high;
    uint64_t pending;
    kvq_buf  out;
    uint64_t bitbuf;          /* the last nbits (< 8) output bits        */
    unsigned nbits;
    kvq_err  err;             /* first allocation error */
} qcx_enc;

typedef struct qcx_dec {
    uint64_t low, high, value;
    const uint8_t *p;
    size_t n, bytepos;        /* next byte to load into win             */
    uint64_t win;             /* next input bits, left-aligned           */
    unsigned nwin;            /* valid bits in win                       */
} qcx_dec;

void qcx_enc_init(qcx_enc *e);
void qcx_enc_code(qcx_enc *e, uint32_t cum, uint32_t freq, uint32_t total);
kvq_err qcx_enc_finish(qcx_enc *e);          /* bytes in e->out */
void qcx_dec_init(qcx_dec *d, const uint8_t *p, size_t n);
uint32_t qcx_dec_target(qcx_dec *d, uint32_t total);
void qcx_dec_code(qcx_dec *d, uint32_t cum, uint32_t freq, uint32_t total);

/* Small adaptive model: n ≤ QCX_SMALL_MAX symbols, linear cumulative sums. */
#define QCX_SMALL_MAX 256
typedef struct qcx_small {
    uint16_t n, inc;
    uint32_t total, limit;
    uint16_t f[];             /* n frequencies */
} qcx_small;
qcx_small *qcx_small_create(unsigned n, unsigned inc, uint32_t limit);
void qcx_small_encode(qcx_small *m, qcx_enc *e, unsigned s);
kvq_err qcx_small_decode(qcx_small *m, qcx_dec *d, unsigned *s);

/* Large adaptive model over n symbols: Fenwick tree of frequencies. */
typedef struct qcx_big {
    uint32_t n, top;          /* top: largest power of two ≤ n */
    uint32_t total, inc, limit;
    uint32_t *tree;           /* 1-based Fenwick array, n + 1 entries */
    uint32_t *f;
} qcx_big;
/* empty: all frequencies start at 0 and symbols enter by qcx_big_activate. */
kvq_err qcx_big_init(qcx_big *m, uint32_t n, uint32_t inc, uint32_t limit, int empty);
void qcx_big_activate(qcx_big *m, uint32_t s);
void qcx_big_free(qcx_big *m);
void qcx_big_encode(qcx_big *m, qcx_enc *e, uint32_t s);
kvq_err qcx_big_decode(qcx_big *m, qcx_dec *d, uint32_t *s);

/* PPM context: a list of (symbol key, count) seen after one context. */
typedef struct qcx_ctx {
    uint32_t *key;
    uint16_t *cnt;
    uint32_t n, cap, sum;
    uint32_t hint;            /* set by encode/decode for the next update */
} qcx_ctx;
#define QCX_CTX_ABSENT  0xFFFFFFFFu /* hint: the symbol is not in the list */
#define QCX_CTX_UNKNOWN 0xFFFFFFFEu /* hint: search                        */
/* Exclusion set: the symbols of the contexts that escaped, as stamps in an
 * array indexed by a dense symbol id (level base + index). */
typedef struct qcx_excl {
    uint32_t *stamp;
    uint32_t base[QCX_NLEV];
    uint32_t cur;
    const qcx_ctx *pend;      /* context added but not stamped yet */
} qcx_excl;
kvq_err qcx_excl_init(qcx_excl *x, const uint32_t n[QCX_NLEV]);
void qcx_excl_free(qcx_excl *x);
void qcx_excl_clear(qcx_excl *x);
/* Marks c's symbols as excluded; c must stay unchanged until the next
 * qcx_excl_clear (the stamps are written when first needed). */
void qcx_excl_add(qcx_excl *x, const qcx_ctx *c);
/* Escape models per order: QCX_SEE_NB distinct-count buckets × QCX_SEE_SB
 * total-count buckets, each a 2-symbol qcx_small (0 = symbol, 1 = escape). */
#define QCX_SEE_NB 4
#define QCX_SEE_SB 12
#define QCX_SEE_N  (QCX_SEE_NB * QCX_SEE_SB)
/* Codes s in c, skipping symbols in x (x may be NULL); returns 1 if coded,
 * 0 if an escape was coded (or nothing was left to code). */
int qcx_ctx_encode(qcx_ctx *c, qcx_excl *x, qcx_small *const *see, qcx_enc *e, uint32_t s);
/* Codes an escape from c for a symbol known to be absent (no list scan). */
void qcx_ctx_encode_escape(qcx_ctx *c, qcx_small *const *see, qcx_enc *e);
/* Decodes: returns 1 and *s, 0 for an escape, -1 for an impossible
 * "hit" (every listed symbol excluded: corrupt input). */
int qcx_ctx_decode(qcx_ctx *c, qcx_excl *x, qcx_small *const *see, qcx_dec *d, uint32_t *s);
kvq_err qcx_ctx_update(qcx_ctx *c, uint32_t s);
void qcx_ctx_free(qcx_ctx *c);

/* Hash map from 64-bit context keys to qcx_ctx (order-2 contexts), the
 * contexts stored in the slots (one cache miss per lookup).  A returned
 * pointer stays valid until the next qcx_ctxmap_get. */
#define QCX_CTXMAP_EMPTY UINT64_MAX /* slot key of an empty slot (never a context) */
typedef struct qcx_ctxent {
    uint64_t key;
    qcx_ctx  ctx;
} qcx_ctxent;
typedef struct qcx_ctxmap {
    qcx_ctxent *tab;
    size_t mask, used;
} qcx_ctxmap;
kvq_err qcx_ctxmap_init(qcx_ctxmap *m, size_t expect);
/* Returns the context for key (created empty when absent) or NULL on OOM. */
qcx_ctx *qcx_ctxmap_get(qcx_ctxmap *m, uint64_t key);
void qcx_ctxmap_free(qcx_ctxmap *m);
/* Starts loading key's slot into the cache (no effect on the map). */
void qcx_ctxmap_prefetch(const qcx_ctxmap *m, uint64_t key);

/* ---- tilings and hierarchy (fib.c) ------------------------------------- */
typedef enum { QCX_TL_L = 1, QCX_TL_S = 0 } qcx_tile;
/* Cut-and-project tiling over nw words (§6) into tiles[] (1 = L); returns
 * the number of tiles.  tiles needs nw entries.  merge_ss: SS → L pass. */
size_t qcx_tiling_mech(double alpha, double theta, size_t nw, int merge_ss, uint8_t *tiles);
/* Period-5 LLSLS tiling (§6). */
size_t qcx_tiling_p5(size_t nw, uint8_t *tiles);
/* Deflates tiles and calls hit(opaque, level, word_pos) for every exact-span
 * super-L start at hierarchy levels 1..9 (§7).  counts[k] += lookups. */
typedef void (*qcx_lookup_fn)(void *opaque, unsigned level, size_t pos);
kvq_err qcx_hierarchy(const uint8_t *tiles, size_t n_tiles, qcx_lookup_fn fn, void *opaque);
/* ORs bit k (hierarchy level k = 1..9) into mask[p] for every lookup of
 * every tiling of mode (0 multi, 1 fib, 2 p5, 3 none, 4 all positions). */
kvq_err qcx_lookup_masks(int mode, size_t nw, uint16_t *mask);
/* Fibonacci word by substitution σ (L → LS, S → L): the first n symbols. */
void qcx_fib_word(size_t n, uint8_t *out);

/* ---- tokens and words (tok.c) ------------------------------------------- */
typedef struct qcx_words {
    uint32_t *id;             /* per token: vocabulary id (lower-cased form) */
    uint8_t  *flag;           /* per token: case flag 0/1/2                  */
    size_t    n;              /* tokens                                      */
    /* vocabulary */
    kvq_buf   bytes;          /* concatenated word bytes                     */
    uint32_t *off;            /* per word: offset in bytes                   */
    uint8_t  *len;            /* per word: length 1..255                     */
    uint32_t *count;          /* per word: occurrences                       */
    size_t    n_vocab, cap_vocab;
    uint32_t *table;          /* open addressing: word id + 1, 0 = empty     */
    size_t    mask;
} qcx_words;
/* Length of the token starting at p (§3 with the [ours] 255-byte cap). */
size_t qcx_token_len(const uint8_t *p, size_t n);
static inline int qcx_is_alpha(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}
kvq_err qcx_words_build(const uint8_t *src, size_t n, qcx_words *w);
void qcx_words_free(qcx_words *w);
/* Re-applies a case flag to a lower-cased token in place (§4). */
void qcx_case_apply(uint8_t *p, size_t n, unsigned flag);

/* ---- codebooks (cb.c) ---------------------------------------------------- */
typedef struct qcx_cb {
    uint32_t n[QCX_NLEV];     /* entries per level (n[0] unused)            */
    /* unigrams: word bytes */
    uint32_t *uni_off;
    uint8_t  *uni_len;
    kvq_buf   uni_bytes;
    /* levels ≥ 2: n[lv] × qcx_level_len[lv] unigram indices */
    uint32_t *gram[QCX_NLEV];
    /* encoder only */
    uint32_t *vocab_to_uni;   /* per vocabulary word: unigram index or NONE */
    uint32_t *seq;            /* per token: unigram index or NONE           */
    uint64_t *prefix;         /* rolling-hash prefixes of seq, n + 1        */
    uint64_t *lut[QCX_NLEV];  /* per level ≥ 2: hash → (hash >> 32) << 32 | entry + 1 */
    size_t    lut_mask[QCX_NLEV];
} qcx_cb;
/* Codebook sizes for nw words at level 1..9 (§5.1 scaled). */
void qcx_cb_sizes(size_t nw, int level, uint32_t n[QCX_NLEV]);
kvq_err qcx_cb_build(qcx_cb *cb, const qcx_words *w, int level, int tiling);
/* Entry index of the n-gram of level lv starting at token p, or QCX_NONE. */
uint32_t qcx_cb_find(const qcx_cb *cb, unsigned lv, size_t p);
/* Drops entries of levels ≥ 2 that keys[] never uses; renumbers keys. */
kvq_err qcx_cb_prune(qcx_cb *cb, uint32_t *keys, size_t n);
kvq_err qcx_cb_serialize(const qcx_cb *cb, kvq_buf *out);
kvq_err qcx_cb_parse(qcx_cb *cb, const uint8_t *p, size_t n);
void qcx_cb_free(qcx_cb *cb);

/* ---- parse + LZ77 (parse.c) --------------------------------------------- */
typedef struct qcx_pstats {
    uint64_t lookups[QCX_HLEVELS], hits[QCX_HLEVELS];
    uint64_t events[QCX_NLEV];
    uint64_t lz_matches, lz_events;
} qcx_pstats;
/* Event stream: keys (level << 28 | index) in text order. */
kvq_err qcx_parse(const qcx_cb *cb, size_t nw, int tiling, uint32_t **keys, size_t *n_keys,
                  qcx_pstats *st);
/* LZ77 over keys: match[i] = (dist, len) where a match starts at i, len 0
 * elsewhere; min_len: shortest match the encoder takes (≥ 3). */
typedef struct qcx_match { uint32_t dist, len; } qcx_match;
kvq_err qcx_lz77(const uint32_t *keys, size_t n, unsigned min_len, qcx_match **out);

/* ---- event and case coding (events.c) ----------------------------------- */
#define QCX_LZ_MIN 3u             /* shortest match (events)            */
#define QCX_LZ_MAX 255u           /* longest match (events)             */
/* Encodes the parsed events; escape words are appended to esc. */
kvq_err qcx_events_encode(const qcx_cb *cb, const qcx_words *w, const uint32_t *keys, size_t n,
                          const qcx_match *m, kvq_buf *out, kvq_buf *esc, qcx_pstats *st);
/* Decodes events until n_words tokens, writing the lower-cased text into
 * text[raw_len]; tok_off/tok_word receive per-token offsets and unigram
 * index (n_uni for escapes). */
typedef struct qcx_dtext {
    uint8_t  *text;
    size_t    raw_len;
    uint32_t *tok_off;        /* n_words + 1 offsets */
    uint32_t *tok_word;
    size_t    n_words;
} qcx_dtext;
kvq_err qcx_events_decode(const qcx_cb *cb, const uint8_t *ac, size_t ac_n, const uint8_t *esc,
                          size_t esc_n, qcx_dtext *t);
kvq_err qcx_case_encode(const qcx_cb *cb, const qcx_words *w, kvq_buf *out);
kvq_err qcx_case_decode(const qcx_cb *cb, const uint8_t *ac, size_t n, qcx_dtext *t);

/* ---- one block (block.c) ------------------------------------------------- */
enum { QCX_BLK_END = 0, QCX_BLK_STORED = 1, QCX_BLK_LZMA = 2, QCX_BLK_TEXT = 3 };
typedef struct qcx_bstats {
    uint64_t sec[5];          /* bytes: header, codebook, events, case, escapes */
    uint64_t n_words;
    qcx_pstats p;
} qcx_bstats;
/* Compresses src[n] into out; *kind receives the block kind chosen. */
kvq_err qcx_block_encode(const uint8_t *src, size_t n, int level, int tiling, kvq_buf *out,
                         unsigned *kind, qcx_bstats *st);
/* Decodes a block payload of kind into dst[raw_len] exactly. */
kvq_err qcx_block_decode(unsigned kind, const uint8_t *p, size_t n, uint8_t *dst, size_t raw_len);

/* ---- order-2 PPM byte coder (bytes.c) ----------------------------------- */
kvq_err qcx_bytes_encode(const uint8_t *p, size_t n, kvq_buf *out);   /* appends */
kvq_err qcx_bytes_decode(const uint8_t *ac, size_t n, uint8_t *dst, size_t raw);

/* ---- LEB128 ------------------------------------------------------------- */
kvq_err qcx_put_leb(kvq_buf *b, uint64_t v);
kvq_err qcx_get_leb(kvq_rd *r, uint64_t *v);

#endif /* QCX_INTERNAL_H */
