/*
 * plt_internal.h — pieces shared by the PLT sequential KV coder
 * (cache-methods.md §3.3): the rANS entropy coder (compress/rans.c), the
 * page codecs plt / pltq (compress/plt.c) and their tests.  Never
 * installed; the prefix store's public face is in kvq.h, section "PLT".
 */
#ifndef KVQ_PLT_INTERNAL_H
#define KVQ_PLT_INTERNAL_H

#include "kvq_internal.h"

/* ---- rANS (compress/rans.c) ----------------------------------------------
 * Static-model range ANS as in §3.3: 32-bit state, 12-bit probability
 * precision, byte-wise renormalisation.  A table normalises symbol counts
 * to frequencies summing to KVQ_RANS_TOTAL (every present symbol >= 1).
 * Stream layout: the final encoder state (u32 LE) then the renormalisation
 * bytes in the order the decoder consumes them. */
#define KVQ_RANS_PROB_BITS 12u
#define KVQ_RANS_TOTAL     (1u << KVQ_RANS_PROB_BITS)  /* frequencies sum to this  */
#define KVQ_RANS_LOW       (1u << 23)                  /* state lower bound L      */
#define KVQ_RANS_MAX_SYMS  1024u                       /* largest alphabet         */

typedef struct kvq_rans_table {
    unsigned nsym;                        /* alphabet size (1..MAX_SYMS)   */
    uint16_t freq[KVQ_RANS_MAX_SYMS];     /* 0 = absent                    */
    uint16_t start[KVQ_RANS_MAX_SYMS];    /* cumulative frequency          */
    uint16_t lut[KVQ_RANS_TOTAL];         /* slot -> symbol (decode)       */
} kvq_rans_table;

/* kvq_rans_table_build() : normalise counts[nsym] (at least one non-zero).
 * Deterministic: the same counts always give the same table. */
kvq_err kvq_rans_table_build(kvq_rans_table *t, const uint32_t *counts, unsigned nsym);
/* kvq_rans_cost_bits() : bits the stream would take for these counts under
 * table t (Σ count·(PROB_BITS − log2 freq)), without the table. */
double kvq_rans_cost_bits(const kvq_rans_table *t, const uint32_t *counts);
/* kvq_rans_table_write() : LEB128 list of (gap to the next present
 * symbol, freq − 1) pairs, ending when the frequencies reach TOTAL. */
kvq_err kvq_rans_table_write(const kvq_rans_table *t, kvq_buf *out);
/* kvq_rans_table_read() : the inverse; every symbol < nsym, sum exact. */
kvq_err kvq_rans_table_read(kvq_rans_table *t, unsigned nsym, kvq_rd *r);
/* kvq_rans_bound() : worst-case stream bytes for n symbols. */
size_t kvq_rans_bound(size_t n);
/* kvq_rans_encode() : sym[n] (each present in t) appended to out. */
kvq_err kvq_rans_encode(const kvq_rans_table *t, const uint16_t *sym, size_t n, kvq_buf *out);
/* kvq_rans_decode() : exactly `count` symbols from src[n]; the stream must
 * be consumed completely and end in the initial state (else CORRUPT). */
kvq_err kvq_rans_decode(const kvq_rans_table *t, const uint8_t *src, size_t n, uint16_t *sym, size_t count);

/* LEB128 unsigned varints (tables, lengths). */
kvq_err kvq_leb_put(kvq_buf *b, uint64_t v);
kvq_err kvq_leb_get(kvq_rd *r, uint64_t *v);

/* ---- lossless float-word coding (compress/plt.c) ---------------------------
 * A page of 16-bit float words (f16 or bf16 bit patterns) laid out
 * [tokens][channels]; coded bit for bit.  Exposed so tests and the
 * measurement command can feed raw bit patterns (NaN payloads, -0,
 * subnormals) without an f32 round trip. */
typedef enum plt_word { PLT_WORD_F16 = 0, PLT_WORD_BF16 = 1 } plt_word;
/* RAW: the words stored as they are, chosen by the encoder whenever coding
 * would not make the page smaller (so a page never exceeds 2 bytes per
 * value plus its header). */
typedef enum plt_backend { PLT_BACKEND_RANS = 0, PLT_BACKEND_ZSTD = 1, PLT_BACKEND_RAW = 2 } plt_backend;

/* kvq_plt_words_encode() : appends the coded page to out.  level = zstd
 * level for the zstd backend (ignored by rANS). */
kvq_err kvq_plt_words_encode(const uint16_t *w, int64_t tokens, int64_t channels, plt_word kind,
                             plt_backend be, int level, kvq_buf *out);
/* kvq_plt_words_decode() : src[n] -> w[tokens·channels]; shape must match
 * what was encoded (it is recorded and checked). */
kvq_err kvq_plt_words_decode(const uint8_t *src, size_t n, int64_t tokens, int64_t channels, uint16_t *w);

#endif
