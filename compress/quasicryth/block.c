/*
 * block.c — one Quasicryth block: binary detection, the text pipeline's
 * sections, the liblzma back end and the stored fallback
 * (papers/quasicryth.md §2, §11, §13; FORMAT.md §4).
 *
 * A text block's payload is LEB128 n_words followed by four sections in
 * fixed order (codebook, events, case, escapes), each
 *   id u8 | method u8 | raw_len LEB128 | comp_len LEB128 | crc32 u32 | data
 * Binary input (a NUL in the first 8 KiB, §2) goes to an xz block; any
 * block whose coding is not smaller than its input is stored, so output
 * grows by at most the container's few dozen bytes.
 */
#include "qcx_internal.h"

#include <lzma.h>
#include <stdlib.h>

#define BINARY_PROBE   8192u        /* bytes checked for NUL (§2)            */
#define N_SECTIONS     4
#define SEC_CODEBOOK   1
#define SEC_EVENTS     2
#define SEC_CASE       3
#define SEC_ESCAPES    4
#define M_STORED       0
#define M_AC           1
#define M_LZMA         2
#define M_PPM          3            /* order-2 PPM bytes (bytes.c)           */
#define CB_RAW_FACTOR  16u          /* codebook raw_len ≤ 16 × block + slack */
#define CB_RAW_SLACK   (1u << 20)
#define LZ_MIN_LEN     4u           /* shortest LZ77 match the encoder takes */

/* xz effort by level: sections (codebook, escapes) and binary blocks */
static uint32_t lzma_preset_for(int level)
{
    return level >= 6 ? (9u | LZMA_PRESET_EXTREME) : level >= 4 ? 9u : 6u;
}

/* Raw LZMA2 (no xz container: its ~60 bytes of framing matter for the
 * small sections) with the preset's options and a dictionary no larger
 * than the input, which the decoder re-derives from the raw length. */
static uint32_t lzma_dict_for(size_t n)
{
    return n > LZMA_DICT_SIZE_MIN ? (uint32_t)n : LZMA_DICT_SIZE_MIN;
}

static kvq_err xz_encode(const uint8_t *src, size_t n, uint32_t preset, kvq_buf *out)
{
    size_t cap = lzma_stream_buffer_bound(n), pos = 0;
    KVQ_TRY(kvq_buf_reserve(out, cap));
    lzma_options_lzma opt;
    KVQ_FAIL_IF(lzma_lzma_preset(&opt, preset), KVQ_ERR_ARG, "liblzma preset %u", preset);
    if (opt.dict_size > n) opt.dict_size = lzma_dict_for(n);
    lzma_filter filters[2] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, NULL}};
    lzma_ret r = lzma_raw_buffer_encode(filters, NULL, src, n, out->p + out->n, &pos, cap);
    KVQ_FAIL_IF(r != LZMA_OK, KVQ_ERR_NOMEM, "liblzma encoder failed (%d)", (int)r);
    out->n += pos;
    return KVQ_OK;
}

static kvq_err xz_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t raw, const char *what)
{
    lzma_options_lzma opt;
    memset(&opt, 0, sizeof opt);
    opt.dict_size = lzma_dict_for(raw);
    lzma_filter filters[2] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, NULL}};
    size_t in_pos = 0, out_pos = 0;
    lzma_ret r = lzma_raw_buffer_decode(filters, NULL, src, &in_pos, n, dst, &out_pos, raw);
    KVQ_FAIL_IF(r != LZMA_OK || in_pos != n || out_pos != raw, KVQ_ERR_CORRUPT,
                "%s: LZMA2 data invalid (liblzma %d, %zu of %zu bytes out)", what, (int)r,
                out_pos, raw);
    return KVQ_OK;
}

static kvq_err put_section(kvq_buf *out, unsigned id, unsigned method, const kvq_buf *raw,
                           const uint8_t *data, size_t n)
{
    KVQ_TRY(kvq_buf_u8(out, (uint8_t)id));
    KVQ_TRY(kvq_buf_u8(out, (uint8_t)method));
    KVQ_TRY(qcx_put_leb(out, raw->n));
    KVQ_TRY(qcx_put_leb(out, n));
    KVQ_TRY(kvq_buf_u32(out, kvq_crc32(0, data, n)));
    return kvq_buf_put(out, data, n);
}

/* A spelling section (codebook, escapes) as the smallest of LZMA2, PPM
 * bytes and stored. */
static kvq_err put_xz_section(kvq_buf *out, unsigned id, const kvq_buf *raw, int level)
{
    kvq_buf z = {0}, q = {0};
    kvq_err e = raw->n ? xz_encode(raw->p, raw->n, lzma_preset_for(level), &z) : KVQ_OK;
    if (e == KVQ_OK && raw->n) e = qcx_bytes_encode(raw->p, raw->n, &q);
    if (e == KVQ_OK) {
        if (raw->n && q.n < z.n && q.n < raw->n) e = put_section(out, id, M_PPM, raw, q.p, q.n);
        else if (z.n < raw->n) e = put_section(out, id, M_LZMA, raw, z.p, z.n);
        else e = put_section(out, id, M_STORED, raw, raw->p, raw->n);
    }
    kvq_buf_free(&z);
    kvq_buf_free(&q);
    return e;
}

static kvq_err text_encode(const uint8_t *src, size_t n, int level, int tiling, kvq_buf *out,
                           qcx_bstats *st)
{
    qcx_words w;
    qcx_cb cb;
    memset(&cb, 0, sizeof cb);
    uint32_t *keys = NULL;
    qcx_match *mt = NULL;
    size_t n_keys = 0;
    kvq_buf cbraw = {0}, ev = {0}, cs = {0}, esc = {0};
    kvq_err e = qcx_words_build(src, n, &w);
    if (e == KVQ_OK) e = qcx_cb_build(&cb, &w, level, tiling);
    if (e == KVQ_OK) e = qcx_parse(&cb, w.n, tiling, &keys, &n_keys, &st->p);
    if (e == KVQ_OK) e = qcx_cb_prune(&cb, keys, n_keys);
    if (e == KVQ_OK) e = qcx_lz77(keys, n_keys, LZ_MIN_LEN, &mt);
    if (e == KVQ_OK) e = qcx_events_encode(&cb, &w, keys, n_keys, mt, &ev, &esc, &st->p);
    if (e == KVQ_OK) e = qcx_case_encode(&cb, &w, &cs);
    if (e == KVQ_OK) e = qcx_cb_serialize(&cb, &cbraw);
    size_t at = out->n;
    if (e == KVQ_OK) e = qcx_put_leb(out, w.n);
    st->sec[0] = out->n - at;
    size_t mark = out->n;
    if (e == KVQ_OK) e = put_xz_section(out, SEC_CODEBOOK, &cbraw, level);
    st->sec[1] = out->n - mark, mark = out->n;
    if (e == KVQ_OK) e = put_section(out, SEC_EVENTS, M_AC, &ev, ev.p, ev.n);
    st->sec[2] = out->n - mark, mark = out->n;
    if (e == KVQ_OK) e = put_section(out, SEC_CASE, M_AC, &cs, cs.p, cs.n);
    st->sec[3] = out->n - mark, mark = out->n;
    if (e == KVQ_OK) e = put_xz_section(out, SEC_ESCAPES, &esc, level);
    st->sec[4] = out->n - mark;
    st->n_words = w.n;
    kvq_buf_free(&cbraw), kvq_buf_free(&ev), kvq_buf_free(&cs), kvq_buf_free(&esc);
    free(keys);
    free(mt);
    qcx_cb_free(&cb);
    qcx_words_free(&w);
    return e;
}

kvq_err qcx_block_encode(const uint8_t *src, size_t n, int level, int tiling, kvq_buf *out,
                         unsigned *kind, qcx_bstats *st)
{
    memset(st, 0, sizeof *st);
    size_t probe = n < BINARY_PROBE ? n : BINARY_PROBE;
    int binary = memchr(src, 0, probe) != NULL;
    kvq_buf tmp = {0};
    kvq_err e;
    if (binary) e = xz_encode(src, n, lzma_preset_for(level), &tmp);
    else e = text_encode(src, n, level, tiling, &tmp, st);
    if (e == KVQ_OK && tmp.n < n) {
        *kind = binary ? QCX_BLK_LZMA : QCX_BLK_TEXT;
        e = kvq_buf_put(out, tmp.p, tmp.n);
    } else if (e == KVQ_OK) {
        *kind = QCX_BLK_STORED;
        memset(st->sec, 0, sizeof st->sec);
        e = kvq_buf_put(out, src, n);
    }
    kvq_buf_free(&tmp);
    return e;
}

/* ---- decoding ------------------------------------------------------------ */
typedef struct section {
    unsigned method;
    uint64_t raw;
    const uint8_t *data;
    size_t n;
} section;

static kvq_err get_section(kvq_rd *r, unsigned id, section *s)
{
    uint8_t sid, method;
    uint32_t crc;
    uint64_t comp;
    size_t at = r->off;
    KVQ_TRY(kvq_rd_u8(r, &sid));
    KVQ_FAIL_IF(sid != id, KVQ_ERR_CORRUPT, "block: section %u expected, found id %u at offset %zu",
                id, sid, at);
    KVQ_TRY(kvq_rd_u8(r, &method));
    int ok = id == SEC_EVENTS || id == SEC_CASE ? method == M_AC
                                                : method == M_LZMA || method == M_STORED ||
                                                      method == M_PPM;
    KVQ_FAIL_IF(!ok, KVQ_ERR_CORRUPT, "block: section %u has method %u", id, method);
    KVQ_TRY(qcx_get_leb(r, &s->raw));
    KVQ_TRY(qcx_get_leb(r, &comp));
    KVQ_TRY(kvq_rd_u32(r, &crc));
    KVQ_FAIL_IF(comp > r->n - r->off, KVQ_ERR_TRUNCATED,
                "block: section %u length %llu beyond the block (offset %zu)", id,
                (unsigned long long)comp, r->off);
    KVQ_FAIL_IF((method == M_STORED || method == M_AC) && s->raw != comp, KVQ_ERR_CORRUPT,
                "block: section %u raw length %llu differs from its %llu bytes", id,
                (unsigned long long)s->raw, (unsigned long long)comp);
    KVQ_TRY(kvq_rd_bytes(r, (size_t)comp, &s->data));
    s->n = (size_t)comp;
    s->method = method;
    KVQ_FAIL_IF(kvq_crc32(0, s->data, s->n) != crc, KVQ_ERR_CHECKSUM,
                "block: section %u checksum mismatch", id);
    return KVQ_OK;
}

/* Raw bytes of an xz/stored section in *buf (owned by the caller). */
static kvq_err section_raw(const section *s, uint64_t limit, const char *what, uint8_t **buf)
{
    KVQ_FAIL_IF(s->raw > limit, KVQ_ERR_CORRUPT, "%s: raw length %llu exceeds %llu", what,
                (unsigned long long)s->raw, (unsigned long long)limit);
    *buf = malloc((size_t)s->raw + 1);
    KVQ_FAIL_IF(!*buf, KVQ_ERR_NOMEM, "%s: %llu bytes", what, (unsigned long long)s->raw);
    if (s->method == M_STORED) {
        memcpy(*buf, s->data, s->n);
        return KVQ_OK;
    }
    if (s->method == M_PPM) return qcx_bytes_decode(s->data, s->n, *buf, (size_t)s->raw);
    return xz_decode(s->data, s->n, *buf, (size_t)s->raw, what);
}

static kvq_err text_decode(const uint8_t *p, size_t n, uint8_t *dst, size_t raw_len)
{
    kvq_rd r = {p, n, 0, "text block"};
    uint64_t nw;
    section sec[N_SECTIONS + 1];
    KVQ_TRY(qcx_get_leb(&r, &nw));
    KVQ_FAIL_IF(nw == 0 || nw > raw_len, KVQ_ERR_CORRUPT, "block: %llu words for %zu bytes",
                (unsigned long long)nw, raw_len);
    for (unsigned id = 1; id <= N_SECTIONS; id++) KVQ_TRY(get_section(&r, id, &sec[id]));
    KVQ_FAIL_IF(r.off != n, KVQ_ERR_CORRUPT, "block: %zu bytes after the last section", n - r.off);
    uint8_t *cbraw = NULL, *esc = NULL;
    qcx_cb cb;
    memset(&cb, 0, sizeof cb);
    qcx_dtext t = {dst, raw_len, NULL, NULL, (size_t)nw};
    uint64_t cb_limit = (uint64_t)raw_len * CB_RAW_FACTOR + CB_RAW_SLACK;
    kvq_err e = section_raw(&sec[SEC_CODEBOOK], cb_limit, "codebook", &cbraw);
    if (e == KVQ_OK) e = section_raw(&sec[SEC_ESCAPES], 2 * (uint64_t)raw_len, "escapes", &esc);
    if (e == KVQ_OK) e = qcx_cb_parse(&cb, cbraw, (size_t)sec[SEC_CODEBOOK].raw);
    if (e == KVQ_OK) {
        t.tok_off = malloc(((size_t)nw + 1) * sizeof *t.tok_off);
        t.tok_word = malloc(((size_t)nw + 1) * sizeof *t.tok_word);
        if (!t.tok_off || !t.tok_word) e = KVQ_ERROR(KVQ_ERR_NOMEM, "%llu words", (unsigned long long)nw);
    }
    if (e == KVQ_OK)
        e = qcx_events_decode(&cb, sec[SEC_EVENTS].data, sec[SEC_EVENTS].n, esc,
                              (size_t)sec[SEC_ESCAPES].raw, &t);
    if (e == KVQ_OK) e = qcx_case_decode(&cb, sec[SEC_CASE].data, sec[SEC_CASE].n, &t);
    free(t.tok_off);
    free(t.tok_word);
    free(cbraw);
    free(esc);
    qcx_cb_free(&cb);
    return e;
}

kvq_err qcx_block_decode(unsigned kind, const uint8_t *p, size_t n, uint8_t *dst, size_t raw_len)
{
    switch (kind) {
    case QCX_BLK_STORED:
        KVQ_FAIL_IF(n != raw_len, KVQ_ERR_CORRUPT, "stored block of %zu bytes claims %zu", n,
                    raw_len);
        memcpy(dst, p, n);
        return KVQ_OK;
    case QCX_BLK_LZMA:
        return xz_decode(p, n, dst, raw_len, "xz block");
    case QCX_BLK_TEXT:
        return text_decode(p, n, dst, raw_len);
    default:
        return KVQ_ERROR(KVQ_ERR_CORRUPT, "unknown block kind %u", kind);
    }
}
