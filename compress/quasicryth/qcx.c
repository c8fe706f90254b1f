/*
 * qcx.c — the Quasicryth container (.qcr, FORMAT.md §4), streams, buffers
 * and threads over blocks: the public kvq_qcx_* API of kvq.h.
 *
 * [ours] (papers/quasicryth.md §13 adapted to streaming): a header with its
 * CRC, then independent blocks, each with kind, sizes, the CRC-32 of its
 * original bytes and a CRC of its own header, then an end record with the
 * total size and the CRC-32 of the whole original.  Compression reads up
 * to `threads` blocks, codes them in parallel (pthreads) and writes them in
 * order; decompression does the same in reverse.  Nothing from a block
 * reaches the writer before that block's CRC matched.
 */
#include "qcx_internal.h"

#include <pthread.h>
#include <stdlib.h>

#define QCX_VERSION     1
#define HDR_SIZE        16           /* magic 4, version, flags, level, LEB ≤ 5, crc 4 */
#define BLOCK_MIN       (1u << 10)   /* smallest block size accepted (1 KiB)   */
#define BLOCK_MAX       (1u << 30)   /* largest block size accepted (1 GiB)    */
#define READ_CHUNK      (1u << 16)   /* first block buffer allocation (64 KiB) */
#define FLAG_TILING     0x07u        /* flags bits 0-2: tiling used (informational) */
#define BLK_HDR_MAX     32           /* kind + 2 LEB128 + 2 CRC                */

static const uint8_t magic[4] = {0x89, 'Q', 'C', 'Y'};

static size_t level_block(int level)
{
    return level <= 3 ? ((size_t)8 << 20) : level <= 6 ? ((size_t)32 << 20) : ((size_t)64 << 20);
}

kvq_qcx_params kvq_qcx_params_default(void)
{
    kvq_qcx_params p = {KVQ_QCX_LEVEL_DEFAULT, KVQ_QCX_TILING_MULTI, 1, 0};
    return p;
}

static const char *const tiling_names[] = {"multi", "fib", "p5", "none", "allpos"};
#define N_TILINGS (sizeof tiling_names / sizeof tiling_names[0])

const char *kvq_qcx_tiling_name(kvq_qcx_tiling t)
{
    return (unsigned)t < N_TILINGS ? tiling_names[t] : "?";
}

kvq_err kvq_qcx_tiling_parse(const char *name, kvq_qcx_tiling *t)
{
    for (unsigned i = 0; i < N_TILINGS; i++)
        if (name && strcmp(name, tiling_names[i]) == 0) {
            *t = (kvq_qcx_tiling)i;
            return KVQ_OK;
        }
    return KVQ_ERROR(KVQ_ERR_ARG, "unknown tiling '%s' (multi, fib, p5, none, allpos)",
                     name ? name : "(null)");
}

size_t kvq_qcx_compress_bound(size_t n)
{
    /* header + per block (stored at worst) + end record */
    return HDR_SIZE + n + (n / BLOCK_MIN + 1) * BLK_HDR_MAX + BLK_HDR_MAX;
}

static kvq_err check_params(const kvq_qcx_params *p, size_t *block)
{
    KVQ_FAIL_IF(p->level < KVQ_QCX_LEVEL_MIN || p->level > KVQ_QCX_LEVEL_MAX, KVQ_ERR_PARAM_RANGE,
                "level %d outside %d..%d", p->level, KVQ_QCX_LEVEL_MIN, KVQ_QCX_LEVEL_MAX);
    KVQ_FAIL_IF((unsigned)p->tiling >= N_TILINGS, KVQ_ERR_PARAM_RANGE, "tiling %d", (int)p->tiling);
    KVQ_FAIL_IF(p->threads < 1 || p->threads > KVQ_QCX_THREADS_MAX, KVQ_ERR_PARAM_RANGE,
                "threads %d outside 1..%d", p->threads, KVQ_QCX_THREADS_MAX);
    *block = p->block_size ? p->block_size : level_block(p->level);
    KVQ_FAIL_IF(*block < BLOCK_MIN || *block > BLOCK_MAX, KVQ_ERR_PARAM_RANGE,
                "block size %zu outside %u..%u", *block, BLOCK_MIN, BLOCK_MAX);
    return KVQ_OK;
}

/* ---- compression ------------------------------------------------------- */
typedef struct cjob {
    uint8_t *src;
    size_t n, cap;            /* bytes read, bytes allocated (≤ block) */
    int level, tiling;
    kvq_buf out;
    unsigned kind;
    qcx_bstats st;
    kvq_err err;
    char detail[256];
} cjob;

static void *cjob_run(void *arg)
{
    cjob *j = arg;
    j->out.n = 0;
    j->err = qcx_block_encode(j->src, j->n, j->level, j->tiling, &j->out, &j->kind, &j->st);
    if (j->err != KVQ_OK) snprintf(j->detail, sizeof j->detail, "%s", kvq_last_error_detail());
    return NULL;
}

/* Runs fn over jobs[0..n) on up to n threads (the caller's thread runs job 0). */
static kvq_err run_jobs(void *(*fn)(void *), void *jobs, size_t size, size_t n)
{
    pthread_t th[KVQ_QCX_THREADS_MAX];
    size_t started = 0;
    for (size_t i = 1; i < n; i++, started++)
        if (pthread_create(&th[i], NULL, fn, (char *)jobs + i * size) != 0) break;
    fn(jobs);
    for (size_t i = started + 1; i < n; i++) fn((char *)jobs + i * size); /* not started: inline */
    for (size_t i = 1; i <= started; i++) pthread_join(th[i], NULL);
    return KVQ_OK;
}

static kvq_err write_header(kvq_qcx_write_fn wr, void *wop, const kvq_qcx_params *p, size_t block,
                            kvq_qcx_stats *st)
{
    kvq_buf h = {0};
    kvq_err e = kvq_buf_put(&h, magic, 4);
    if (e == KVQ_OK) e = kvq_buf_u8(&h, QCX_VERSION);
    if (e == KVQ_OK) e = kvq_buf_u8(&h, (uint8_t)p->tiling);
    if (e == KVQ_OK) e = kvq_buf_u8(&h, (uint8_t)p->level);
    if (e == KVQ_OK) e = qcx_put_leb(&h, block);
    if (e == KVQ_OK) e = kvq_buf_u32(&h, kvq_crc32(0, h.p, h.n));
    if (e == KVQ_OK) e = wr(wop, h.p, h.n);
    st->bytes_container += h.n;
    st->out_bytes += h.n;
    kvq_buf_free(&h);
    return e;
}

/* kind | raw LEB | comp LEB | raw crc | header crc */
static kvq_err write_block_header(kvq_qcx_write_fn wr, void *wop, unsigned kind, uint64_t raw,
                                  uint64_t comp, uint32_t crc, kvq_qcx_stats *st)
{
    kvq_buf h = {0};
    kvq_err e = kvq_buf_u8(&h, (uint8_t)kind);
    if (e == KVQ_OK) e = qcx_put_leb(&h, raw);
    if (e == KVQ_OK && kind != QCX_BLK_END) e = qcx_put_leb(&h, comp);
    if (e == KVQ_OK) e = kvq_buf_u32(&h, crc);
    if (e == KVQ_OK) e = kvq_buf_u32(&h, kvq_crc32(0, h.p, h.n));
    if (e == KVQ_OK) e = wr(wop, h.p, h.n);
    st->bytes_container += h.n;
    st->out_bytes += h.n;
    kvq_buf_free(&h);
    return e;
}

static kvq_err read_full(kvq_qcx_read_fn rd, void *rop, uint8_t *buf, size_t cap, size_t *got)
{
    *got = 0;
    while (*got < cap) {
        size_t k = 0;
        KVQ_TRY(rd(rop, buf + *got, cap - *got, &k));
        if (k == 0) break;
        *got += k;
    }
    return KVQ_OK;
}

/* Reads up to block bytes into j->src, growing the buffer from
 * READ_CHUNK by doubling, so a small input never allocates a whole block. */
static kvq_err read_block(kvq_qcx_read_fn rd, void *rop, cjob *j, size_t block)
{
    j->n = 0;
    for (;;) {
        if (j->n == j->cap) {
            if (j->cap >= block) break;
            size_t nc = j->cap ? j->cap * 2 : READ_CHUNK;
            if (nc > block) nc = block;
            uint8_t *q = realloc(j->src, nc);
            KVQ_FAIL_IF(!q, KVQ_ERR_NOMEM, "block buffer of %zu bytes", nc);
            j->src = q;
            j->cap = nc;
        }
        size_t k = 0;
        KVQ_TRY(rd(rop, j->src + j->n, j->cap - j->n, &k));
        if (k == 0) break;
        j->n += k;
    }
    return KVQ_OK;
}

static void add_block_stats(kvq_qcx_stats *st, const cjob *j)
{
    st->in_bytes += j->n;
    st->out_bytes += j->out.n;
    if (j->kind == QCX_BLK_TEXT) {
        st->blocks_text++;
        st->words += j->st.n_words;
        st->bytes_container += j->st.sec[0];
        st->bytes_codebook += j->st.sec[1];
        st->bytes_events += j->st.sec[2];
        st->bytes_case += j->st.sec[3];
        st->bytes_escapes += j->st.sec[4];
        for (unsigned k = 0; k < KVQ_QCX_HLEVELS; k++) {
            st->lookups[k] += j->st.p.lookups[k];
            st->hits[k] += j->st.p.hits[k];
        }
        for (unsigned k = 0; k < KVQ_QCX_ELEVELS; k++) st->events[k] += j->st.p.events[k];
        st->lz_matches += j->st.p.lz_matches;
        st->lz_events += j->st.p.lz_events;
    } else {
        j->kind == QCX_BLK_LZMA ? st->blocks_xz++ : st->blocks_stored++;
        st->bytes_other += j->out.n;
    }
}

static kvq_err compress_batches(kvq_qcx_read_fn rd, void *rop, kvq_qcx_write_fn wr, void *wop,
                                const kvq_qcx_params *p, size_t block, cjob *jobs,
                                kvq_qcx_stats *st)
{
    uint32_t crc = 0;
    for (int eof = 0; !eof;) {
        size_t n_jobs = 0;
        for (; n_jobs < (size_t)p->threads && !eof; n_jobs++) {
            cjob *j = &jobs[n_jobs];
            KVQ_TRY(read_block(rd, rop, j, block));
            if (j->n < block) eof = 1;
            if (j->n == 0) break;
        }
        if (n_jobs == 0) break;
        run_jobs(cjob_run, jobs, sizeof *jobs, n_jobs);
        for (size_t i = 0; i < n_jobs; i++) {
            cjob *j = &jobs[i];
            if (j->err != KVQ_OK) return KVQ_ERROR(j->err, "block %zu: %s", i, j->detail);
            uint32_t bcrc = kvq_crc32(0, j->src, j->n);
            crc = kvq_crc32(crc, j->src, j->n);
            KVQ_TRY(write_block_header(wr, wop, j->kind, j->n, j->out.n, bcrc, st));
            KVQ_TRY(wr(wop, j->out.p, j->out.n));
            add_block_stats(st, &jobs[i]);
        }
    }
    st->crc32 = crc;
    return write_block_header(wr, wop, QCX_BLK_END, st->in_bytes, 0, crc, st);
}

kvq_err kvq_qcx_compress_stream(kvq_qcx_read_fn rd, void *rop, kvq_qcx_write_fn wr, void *wop,
                                const kvq_qcx_params *p, kvq_qcx_stats *st)
{
    kvq_qcx_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    KVQ_FAIL_IF(!rd || !wr || !p, KVQ_ERR_ARG, "kvq_qcx_compress_stream: NULL argument");
    size_t block = 0;
    KVQ_TRY(check_params(p, &block));
    st->level = p->level;
    st->tiling = (int)p->tiling;
    cjob *jobs = calloc((size_t)p->threads, sizeof *jobs);
    KVQ_FAIL_IF(!jobs, KVQ_ERR_NOMEM, "%d block jobs", p->threads);
    for (int i = 0; i < p->threads; i++) {
        jobs[i].level = p->level;
        jobs[i].tiling = (int)p->tiling;
    }
    kvq_err e = write_header(wr, wop, p, block, st);
    if (e == KVQ_OK) e = compress_batches(rd, rop, wr, wop, p, block, jobs, st);
    for (int i = 0; i < p->threads; i++) {
        free(jobs[i].src);
        kvq_buf_free(&jobs[i].out);
    }
    free(jobs);
    return e;
}

/* ---- reading the container ---------------------------------------------- */
typedef struct rstream {
    kvq_qcx_read_fn rd;
    void *rop;
    uint64_t off;            /* bytes consumed, for messages */
} rstream;

static kvq_err rs_bytes(rstream *s, uint8_t *buf, size_t n, const char *what)
{
    size_t got;
    KVQ_TRY(read_full(s->rd, s->rop, buf, n, &got));
    KVQ_FAIL_IF(got != n, KVQ_ERR_TRUNCATED, "qcr: truncated in %s at byte %llu", what,
                (unsigned long long)(s->off + got));
    s->off += n;
    return KVQ_OK;
}

/* LEB128 from the stream, appended to hdr for the header CRC. */
static kvq_err rs_leb(rstream *s, kvq_buf *hdr, uint64_t *v)
{
    size_t start = hdr->n;
    for (unsigned i = 0; i < 10; i++) {
        uint8_t c;
        KVQ_TRY(rs_bytes(s, &c, 1, "a length"));
        KVQ_TRY(kvq_buf_u8(hdr, c));
        if (!(c & 0x80)) break;
    }
    kvq_rd r = {hdr->p + start, hdr->n - start, 0, "qcr header"};
    return qcx_get_leb(&r, v);
}

static kvq_err read_header(rstream *s, size_t *block, kvq_qcx_stats *st)
{
    kvq_buf h = {0};
    uint8_t b[7], c[4];
    uint64_t bs = 0;
    kvq_err e = rs_bytes(s, b, 7, "the header");
    if (e == KVQ_OK && memcmp(b, magic, 4) != 0)
        e = KVQ_ERROR(KVQ_ERR_BAD_MAGIC, "not a .qcr stream (bad magic)");
    if (e == KVQ_OK && b[4] != QCX_VERSION)
        e = KVQ_ERROR(KVQ_ERR_VERSION, "qcr version %u (this build reads %u)", b[4], QCX_VERSION);
    if (e == KVQ_OK) e = kvq_buf_put(&h, b, 7);
    if (e == KVQ_OK) e = rs_leb(s, &h, &bs);
    if (e == KVQ_OK) e = rs_bytes(s, c, 4, "the header CRC");
    if (e == KVQ_OK && kvq_rd32(c) != kvq_crc32(0, h.p, h.n))
        e = KVQ_ERROR(KVQ_ERR_CHECKSUM, "qcr header checksum mismatch");
    if (e == KVQ_OK && ((b[5] & ~FLAG_TILING) || b[5] >= N_TILINGS))
        e = KVQ_ERROR(KVQ_ERR_CORRUPT, "qcr header: reserved flag bits 0x%02x", b[5]);
    if (e == KVQ_OK && (b[6] < KVQ_QCX_LEVEL_MIN || b[6] > KVQ_QCX_LEVEL_MAX))
        e = KVQ_ERROR(KVQ_ERR_CORRUPT, "qcr header: level %u", b[6]);
    if (e == KVQ_OK && (bs < BLOCK_MIN || bs > BLOCK_MAX))
        e = KVQ_ERROR(KVQ_ERR_CORRUPT, "qcr header: block size %llu", (unsigned long long)bs);
    st->tiling = b[5];
    st->level = b[6];
    st->bytes_container += h.n + 4;
    *block = (size_t)bs;
    kvq_buf_free(&h);
    return e;
}

typedef struct bhdr {
    unsigned kind;
    uint64_t raw, comp;
    uint32_t crc;
    size_t size;
} bhdr;

static kvq_err read_block_header(rstream *s, size_t block, bhdr *b)
{
    kvq_buf h = {0};
    uint8_t k, c[8];
    uint64_t at = s->off;
    kvq_err e = rs_bytes(s, &k, 1, "a block header");
    if (e == KVQ_OK && k > QCX_BLK_TEXT)
        e = KVQ_ERROR(KVQ_ERR_CORRUPT, "qcr: unknown block kind %u at byte %llu", k,
                      (unsigned long long)at);
    if (e == KVQ_OK) e = kvq_buf_u8(&h, k);
    b->comp = 0;
    if (e == KVQ_OK) e = rs_leb(s, &h, &b->raw);
    if (e == KVQ_OK && k != QCX_BLK_END) e = rs_leb(s, &h, &b->comp);
    if (e == KVQ_OK) e = rs_bytes(s, c, 8, "a block header");
    if (e == KVQ_OK) e = kvq_buf_put(&h, c, 4);
    if (e == KVQ_OK && kvq_rd32(c + 4) != kvq_crc32(0, h.p, h.n))
        e = KVQ_ERROR(KVQ_ERR_CHECKSUM, "qcr: block header checksum mismatch at byte %llu",
                      (unsigned long long)at);
    if (e == KVQ_OK && k != QCX_BLK_END &&
        (b->raw == 0 || b->raw > block || b->comp > b->raw))
        e = KVQ_ERROR(KVQ_ERR_CORRUPT, "qcr: block at byte %llu: %llu → %llu bytes (block size %zu)",
                      (unsigned long long)at, (unsigned long long)b->comp,
                      (unsigned long long)b->raw, block);
    b->kind = k;
    b->crc = kvq_rd32(c);
    b->size = h.n + 4;
    kvq_buf_free(&h);
    return e;
}

/* ---- decompression -------------------------------------------------------- */
typedef struct djob {
    bhdr h;
    uint8_t *in, *out;
    size_t cap_in, cap_out;
    kvq_err err;
    char detail[256];
} djob;

static void *djob_run(void *arg)
{
    djob *j = arg;
    j->err = qcx_block_decode(j->h.kind, j->in, (size_t)j->h.comp, j->out, (size_t)j->h.raw);
    if (j->err == KVQ_OK && kvq_crc32(0, j->out, (size_t)j->h.raw) != j->h.crc)
        j->err = KVQ_ERROR(KVQ_ERR_CHECKSUM, "block content checksum mismatch");
    if (j->err != KVQ_OK) snprintf(j->detail, sizeof j->detail, "%s", kvq_last_error_detail());
    return NULL;
}

static void count_block(kvq_qcx_stats *st, const bhdr *h)
{
    st->in_bytes += h->raw;
    st->bytes_container += h->size;
    if (h->kind == QCX_BLK_TEXT) st->blocks_text++;
    else if (h->kind == QCX_BLK_LZMA) st->blocks_xz++;
    else st->blocks_stored++;
    if (h->kind != QCX_BLK_TEXT) st->bytes_other += h->comp;
    else st->bytes_events += h->comp; /* not split further without decoding */
}

static kvq_err end_record(rstream *s, const bhdr *h, uint32_t crc, kvq_qcx_stats *st, int check)
{
    uint8_t extra;
    size_t got;
    KVQ_FAIL_IF(h->raw != st->in_bytes, KVQ_ERR_CORRUPT,
                "qcr: end record says %llu bytes, blocks hold %llu", (unsigned long long)h->raw,
                (unsigned long long)st->in_bytes);
    KVQ_FAIL_IF(check && h->crc != crc, KVQ_ERR_CHECKSUM, "qcr: content checksum mismatch");
    KVQ_TRY(read_full(s->rd, s->rop, &extra, 1, &got));
    KVQ_FAIL_IF(got != 0, KVQ_ERR_CORRUPT, "qcr: trailing bytes after the end record at byte %llu",
                (unsigned long long)s->off);
    st->crc32 = h->crc;
    st->bytes_container += h->size;
    return KVQ_OK;
}

/* Buffers grow to the sizes blocks declare (already checked against the
 * header's block size), so a lying header cannot make us allocate more
 * than the data it comes with justifies, block by block. */
static kvq_err grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap && *p) return KVQ_OK;
    uint8_t *q = realloc(*p, need ? need : 1);
    KVQ_FAIL_IF(!q, KVQ_ERR_NOMEM, "block buffer of %zu bytes", need);
    *p = q;
    *cap = need;
    return KVQ_OK;
}

static kvq_err decode_batches(rstream *s, size_t block, kvq_qcx_write_fn wr, void *wop,
                              int threads, int list_only, uint64_t limit, djob *jobs,
                              kvq_qcx_stats *st)
{
    uint32_t crc = 0;
    for (;;) {
        size_t n = 0;
        bhdr end = {0};
        while (n < (size_t)threads) {
            djob *j = &jobs[n];
            KVQ_TRY(read_block_header(s, block, &j->h));
            if (j->h.kind == QCX_BLK_END) {
                end = j->h;
                break;
            }
            KVQ_FAIL_IF(j->h.raw > limit - st->in_bytes, KVQ_ERR_DST_TOO_SMALL,
                        "qcr: block at byte %llu decodes past the %llu-byte output limit",
                        (unsigned long long)s->off, (unsigned long long)limit);
            KVQ_TRY(grow(&j->in, &j->cap_in, (size_t)j->h.comp));
            if (!list_only) KVQ_TRY(grow(&j->out, &j->cap_out, (size_t)j->h.raw));
            KVQ_TRY(rs_bytes(s, j->in, (size_t)j->h.comp, "a block"));
            count_block(st, &j->h);
            n++;
        }
        if (!list_only) {
            run_jobs(djob_run, jobs, sizeof *jobs, n);
            for (size_t i = 0; i < n; i++) {
                KVQ_FAIL_IF(jobs[i].err != KVQ_OK, jobs[i].err, "block at byte %llu: %s",
                            (unsigned long long)(s->off), jobs[i].detail);
                crc = kvq_crc32(crc, jobs[i].out, (size_t)jobs[i].h.raw);
                if (wr) KVQ_TRY(wr(wop, jobs[i].out, (size_t)jobs[i].h.raw));
            }
        }
        if (n < (size_t)threads) return end_record(s, &end, crc, st, !list_only);
    }
}

static kvq_err decompress_impl(kvq_qcx_read_fn rd, void *rop, kvq_qcx_write_fn wr, void *wop,
                               int threads, int list_only, uint64_t limit, kvq_qcx_stats *st)
{
    kvq_qcx_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    KVQ_FAIL_IF(!rd, KVQ_ERR_ARG, "kvq_qcx_decompress_stream: NULL reader");
    KVQ_FAIL_IF(threads < 1 || threads > KVQ_QCX_THREADS_MAX, KVQ_ERR_PARAM_RANGE, "threads %d",
                threads);
    rstream s = {rd, rop, 0};
    size_t block = 0;
    KVQ_TRY(read_header(&s, &block, st));
    djob *jobs = calloc((size_t)threads, sizeof *jobs);
    KVQ_FAIL_IF(!jobs, KVQ_ERR_NOMEM, "%d block jobs", threads);
    kvq_err e = decode_batches(&s, block, wr, wop, threads, list_only, limit, jobs, st);
    st->out_bytes = s.off;
    for (int i = 0; i < threads; i++) {
        free(jobs[i].in);
        free(jobs[i].out);
    }
    free(jobs);
    return e;
}

kvq_err kvq_qcx_decompress_stream(kvq_qcx_read_fn rd, void *rop, kvq_qcx_write_fn wr, void *wop,
                                  int threads, kvq_qcx_stats *st)
{
    return decompress_impl(rd, rop, wr, wop, threads, 0, UINT64_MAX, st);
}

kvq_err kvq_qcx_list_stream(kvq_qcx_read_fn rd, void *rop, kvq_qcx_stats *st)
{
    return decompress_impl(rd, rop, NULL, NULL, 1, 1, UINT64_MAX, st);
}

/* ---- buffer API over the streams ------------------------------------------ */
typedef struct membuf {
    const uint8_t *src;
    uint8_t *dst;
    size_t n, cap, pos;
} membuf;

static kvq_err mem_read(void *op, void *buf, size_t cap, size_t *got)
{
    membuf *m = op;
    size_t k = m->n - m->pos < cap ? m->n - m->pos : cap;
    if (k) memcpy(buf, m->src + m->pos, k);
    m->pos += k;
    *got = k;
    return KVQ_OK;
}

static kvq_err mem_write(void *op, const void *buf, size_t n)
{
    membuf *m = op;
    KVQ_FAIL_IF(n > m->cap - m->pos, KVQ_ERR_DST_TOO_SMALL, "output buffer of %zu bytes too small",
                m->cap);
    if (n) memcpy(m->dst + m->pos, buf, n);
    m->pos += n;
    return KVQ_OK;
}

kvq_err kvq_qcx_compress(const void *src, size_t n, void *dst, size_t cap, size_t *out_n,
                         const kvq_qcx_params *p, kvq_qcx_stats *st)
{
    KVQ_FAIL_IF((!src && n) || !dst || !out_n, KVQ_ERR_ARG, "kvq_qcx_compress: NULL argument");
    kvq_qcx_params def = kvq_qcx_params_default();
    membuf in = {src, NULL, n, 0, 0}, out = {NULL, dst, 0, cap, 0};
    KVQ_TRY(kvq_qcx_compress_stream(mem_read, &in, mem_write, &out, p ? p : &def, st));
    *out_n = out.pos;
    return KVQ_OK;
}

kvq_err kvq_qcx_decompress(const void *src, size_t n, void *dst, size_t cap, size_t *out_n,
                           int threads)
{
    KVQ_FAIL_IF(!src || (!dst && cap) || !out_n, KVQ_ERR_ARG, "kvq_qcx_decompress: NULL argument");
    membuf in = {src, NULL, n, 0, 0}, out = {NULL, dst, 0, cap, 0};
    /* the caller's capacity bounds every block before it is decoded, so a
     * lying header cannot make us allocate more than cap allows */
    KVQ_TRY(decompress_impl(mem_read, &in, mem_write, &out, threads, 0, cap, NULL));
    *out_n = out.pos;
    return KVQ_OK;
}

kvq_err kvq_qcx_content_size(const void *src, size_t n, uint64_t *size)
{
    KVQ_FAIL_IF(!src || !size, KVQ_ERR_ARG, "kvq_qcx_content_size: NULL argument");
    membuf in = {src, NULL, n, 0, 0};
    kvq_qcx_stats st;
    KVQ_TRY(kvq_qcx_list_stream(mem_read, &in, &st));
    *size = st.in_bytes;
    return KVQ_OK;
}
