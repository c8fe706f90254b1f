/*
 * rans.c — static-model range asymmetric numeral systems (rANS) for the PLT
 * page codecs (cache-methods.md §3.3 "Entropy coder").
 *
 * The spec fixes a 32-bit state, 12-bit probabilities and byte-wise
 * renormalisation; this is the classic construction (Duda 2013; the layout
 * popularised by ryg_rans), written from the equations:
 *   encode  x' = (x / f) · M + (x mod f) + c      after emitting bytes while
 *           x >= ((L / M) · 256) · f
 *   decode  s = lut[x mod M];  x = f · (x / M) + (x mod M) − c,  then read
 *           bytes while x < L.
 * Symbols are encoded last to first so the decoder reads forwards.
 * [ours] the encoder starts from x = L and the decoder checks it ends there
 * with every byte consumed, which catches most corruption without a CRC;
 * frequency normalisation (nearest scaled count, at least 1, the rounding
 * difference spread one unit at a time over the most frequent symbols) and
 * the LEB128
 * table layout are ours where the spec only names them.
 */
#include "compress/plt_internal.h"

#include <math.h>
#include <stdlib.h>

#define RANS_STATE_BYTES 4u  /* flushed final state                       */
#define LEB_MAX_BYTES    10u /* a 64-bit LEB128 value                     */

/* ---- LEB128 ---------------------------------------------------------------- */

kvq_err kvq_leb_put(kvq_buf *b, uint64_t v)
{
    uint8_t tmp[LEB_MAX_BYTES];
    size_t k = 0;
    do {
        uint8_t byte = (uint8_t)(v & 0x7F);
        v >>= 7;
        tmp[k++] = (uint8_t)(byte | (v ? 0x80 : 0));
    } while (v);
    return kvq_buf_put(b, tmp, k);
}

kvq_err kvq_leb_get(kvq_rd *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < LEB_MAX_BYTES; i++) {
        uint8_t byte;
        KVQ_TRY(kvq_rd_u8(r, &byte));
        KVQ_FAIL_IF(i == LEB_MAX_BYTES - 1 && byte > 1, KVQ_ERR_CORRUPT, "%s: LEB128 value overflows 64 bits at byte %zu",
                    r->what, r->off - 1);
        x |= (uint64_t)(byte & 0x7F) << (7 * i);
        if (!(byte & 0x80)) {
            *v = x;
            return KVQ_OK;
        }
    }
    return KVQ_ERROR(KVQ_ERR_CORRUPT, "%s: LEB128 value longer than %u bytes at byte %zu", r->what, LEB_MAX_BYTES,
                     r->off);
}

/* ---- tables ---------------------------------------------------------------- */

static void table_finish(kvq_rans_table *t)
{
    uint32_t c = 0;
    for (unsigned s = 0; s < t->nsym; s++) {
        t->start[s] = (uint16_t)c;
        for (uint32_t k = 0; k < t->freq[s]; k++) t->lut[c + k] = (uint16_t)s;
        c += t->freq[s];
    }
}

kvq_err kvq_rans_table_build(kvq_rans_table *t, const uint32_t *counts, unsigned nsym)
{
    KVQ_FAIL_IF(nsym < 1 || nsym > KVQ_RANS_MAX_SYMS, KVQ_ERR_ARG, "rans: alphabet of %u symbols outside 1..%u", nsym,
                KVQ_RANS_MAX_SYMS);
    uint64_t total = 0;
    for (unsigned s = 0; s < nsym; s++) total += counts[s];
    KVQ_FAIL_IF(total == 0, KVQ_ERR_ARG, "rans: no symbols to model");
    memset(t->freq, 0, sizeof t->freq);
    t->nsym = nsym;
    int64_t sum = 0;
    uint16_t order[KVQ_RANS_MAX_SYMS];
    unsigned n_present = 0;
    for (unsigned s = 0; s < nsym; s++) {
        if (!counts[s]) continue;
        uint64_t f = ((uint64_t)counts[s] * KVQ_RANS_TOTAL + total / 2) / total; /* nearest */
        t->freq[s] = (uint16_t)(f ? (f < KVQ_RANS_TOTAL ? f : KVQ_RANS_TOTAL) : 1);
        sum += t->freq[s];
        order[n_present++] = (uint16_t)s;
    }
    /* symbols by descending count, lowest index on ties (stable insertion
     * sort; alphabets are <= 1024) */
    for (unsigned i = 1; i < n_present; i++) {
        uint16_t v = order[i];
        unsigned j = i;
        while (j > 0 && (counts[order[j - 1]] < counts[v])) order[j] = order[j - 1], j--;
        order[j] = v;
    }
    /* rounding leaves |sum − TOTAL| <= n_present; spread it one unit per
     * symbol, largest first (never below 1) */
    while (sum != (int64_t)KVQ_RANS_TOTAL) {
        int64_t before = sum;
        for (unsigned i = 0; i < n_present && sum != (int64_t)KVQ_RANS_TOTAL; i++) {
            uint16_t *f = &t->freq[order[i]];
            if (sum > (int64_t)KVQ_RANS_TOTAL && *f > 1) (*f)--, sum--;
            else if (sum < (int64_t)KVQ_RANS_TOTAL) (*f)++, sum++;
        }
        if (sum == before) break; /* cannot happen: n_present <= TOTAL */
    }
    table_finish(t);
    return KVQ_OK;
}

double kvq_rans_cost_bits(const kvq_rans_table *t, const uint32_t *counts)
{
    double bits = 0;
    for (unsigned s = 0; s < t->nsym; s++)
        if (counts[s]) bits += (double)counts[s] * ((double)KVQ_RANS_PROB_BITS - log2((double)t->freq[s]));
    return bits;
}

kvq_err kvq_rans_table_write(const kvq_rans_table *t, kvq_buf *out)
{
    unsigned prev = 0;
    for (unsigned s = 0; s < t->nsym; s++) {
        if (!t->freq[s]) continue;
        KVQ_TRY(kvq_leb_put(out, s - prev));
        KVQ_TRY(kvq_leb_put(out, (uint64_t)t->freq[s] - 1));
        prev = s + 1;
    }
    return KVQ_OK;
}

kvq_err kvq_rans_table_read(kvq_rans_table *t, unsigned nsym, kvq_rd *r)
{
    KVQ_FAIL_IF(nsym < 1 || nsym > KVQ_RANS_MAX_SYMS, KVQ_ERR_ARG, "rans: alphabet of %u symbols outside 1..%u", nsym,
                KVQ_RANS_MAX_SYMS);
    memset(t->freq, 0, sizeof t->freq);
    t->nsym = nsym;
    uint64_t sum = 0, s = 0;
    while (sum < KVQ_RANS_TOTAL) {
        uint64_t gap, f;
        KVQ_TRY(kvq_leb_get(r, &gap));
        KVQ_TRY(kvq_leb_get(r, &f));
        s += gap;
        KVQ_FAIL_IF(s >= nsym || f >= KVQ_RANS_TOTAL - sum, KVQ_ERR_CORRUPT,
                    "%s: rANS table entry (symbol %llu, freq %llu) outside alphabet %u / total %u at byte %zu",
                    r->what, (unsigned long long)s, (unsigned long long)f + 1, nsym, KVQ_RANS_TOTAL, r->off);
        t->freq[s] = (uint16_t)(f + 1);
        sum += f + 1;
        s++;
    }
    table_finish(t);
    return KVQ_OK;
}

/* ---- coding ---------------------------------------------------------------- */

/* Each symbol emits at most PROB_BITS bits (freq >= 1) plus at most one
 * byte of renormalisation slack; the state adds 4 bytes. */
size_t kvq_rans_bound(size_t n) { return n * 2 + RANS_STATE_BYTES + 8; }

kvq_err kvq_rans_encode(const kvq_rans_table *t, const uint16_t *sym, size_t n, kvq_buf *out)
{
    size_t cap = kvq_rans_bound(n);
    uint8_t *tmp = malloc(cap), *p = tmp + cap;
    KVQ_FAIL_IF(!tmp, KVQ_ERR_NOMEM, "rans: out of memory for %zu symbols", n);
    uint32_t x = KVQ_RANS_LOW;
    for (size_t i = n; i-- > 0;) {
        unsigned s = sym[i];
        if (s >= t->nsym || !t->freq[s]) {
            free(tmp);
            return KVQ_ERROR(KVQ_ERR_ARG, "rans: symbol %u at %zu is not in the table", s, i);
        }
        uint32_t f = t->freq[s];
        uint32_t x_max = ((KVQ_RANS_LOW >> KVQ_RANS_PROB_BITS) << 8) * f;
        while (x >= x_max) {
            *--p = (uint8_t)x;
            x >>= 8;
        }
        x = ((x / f) << KVQ_RANS_PROB_BITS) + (x % f) + t->start[s];
    }
    p -= RANS_STATE_BYTES;
    kvq_wr32(p, x);
    kvq_err e = kvq_buf_put(out, p, (size_t)(tmp + cap - p));
    free(tmp);
    return e;
}

kvq_err kvq_rans_decode(const kvq_rans_table *t, const uint8_t *src, size_t n, uint16_t *sym, size_t count)
{
    KVQ_FAIL_IF(n < RANS_STATE_BYTES, KVQ_ERR_TRUNCATED, "rans: stream of %zu bytes has no state", n);
    uint32_t x = kvq_rd32(src);
    size_t off = RANS_STATE_BYTES;
    KVQ_FAIL_IF(x < KVQ_RANS_LOW, KVQ_ERR_CORRUPT, "rans: initial state %u below %u", x, KVQ_RANS_LOW);
    const uint32_t mask = KVQ_RANS_TOTAL - 1;
    for (size_t i = 0; i < count; i++) {
        unsigned s = t->lut[x & mask];
        sym[i] = (uint16_t)s;
        x = t->freq[s] * (x >> KVQ_RANS_PROB_BITS) + (x & mask) - t->start[s];
        while (x < KVQ_RANS_LOW) {
            KVQ_FAIL_IF(off >= n, KVQ_ERR_TRUNCATED, "rans: stream ends at byte %zu after %zu of %zu symbols", n, i + 1,
                        count);
            x = (x << 8) | src[off++];
        }
    }
    KVQ_FAIL_IF(off != n || x != KVQ_RANS_LOW, KVQ_ERR_CORRUPT,
                "rans: stream of %zu bytes ends at byte %zu in state %u (expected %u)", n, off, x, KVQ_RANS_LOW);
    return KVQ_OK;
}
