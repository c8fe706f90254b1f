/*
 * io.c — checked byte I/O shared by every reader and writer: a bounded
 * reader over memory, a growable buffer, read-only mmap of input files,
 * temp-file + rename output, and CRC-32.
 *
 * Nothing here trusts a length it did not check: readers ask kvq_rd_need()
 * before touching bytes, so a truncated file becomes KVQ_ERR_TRUNCATED with
 * the offset, never an out-of-bounds read.
 */
#include "kvq_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <pthread.h>
#include <unistd.h>

/* ---- CRC-32 (reflected polynomial 0xEDB88320), slicing-by-4 ------------- */
#define CRC32_POLY 0xEDB88320u /* CRC-32/ISO-HDLC, as zlib */

static uint32_t crc_table[4][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (CRC32_POLY & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 4; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

uint32_t kvq_crc32(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = (const uint8_t *)data;
    uint32_t c = ~crc;
    while (n >= 4) {
        c ^= kvq_rd32(p);
        c = crc_table[3][c & 0xFF] ^ crc_table[2][(c >> 8) & 0xFF] ^
            crc_table[1][(c >> 16) & 0xFF] ^ crc_table[0][c >> 24];
        p += 4;
        n -= 4;
    }
    while (n--) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
    return ~c;
}

/* ---- bounded reader ------------------------------------------------------ */
kvq_err kvq_rd_need(kvq_rd *r, size_t k)
{
    if (r->off > r->n || r->n - r->off < k)
        return KVQ_ERROR(KVQ_ERR_TRUNCATED, "%s: truncated: need %zu bytes at offset %zu of %zu",
                         r->what ? r->what : "input", k, r->off, r->n);
    return KVQ_OK;
}

kvq_err kvq_rd_u8(kvq_rd *r, uint8_t *v)
{
    KVQ_TRY(kvq_rd_need(r, 1));
    *v = r->p[r->off++];
    return KVQ_OK;
}

kvq_err kvq_rd_u16(kvq_rd *r, uint16_t *v)
{
    KVQ_TRY(kvq_rd_need(r, 2));
    *v = kvq_rd16(r->p + r->off);
    r->off += 2;
    return KVQ_OK;
}

kvq_err kvq_rd_u32(kvq_rd *r, uint32_t *v)
{
    KVQ_TRY(kvq_rd_need(r, 4));
    *v = kvq_rd32(r->p + r->off);
    r->off += 4;
    return KVQ_OK;
}

kvq_err kvq_rd_u64(kvq_rd *r, uint64_t *v)
{
    KVQ_TRY(kvq_rd_need(r, 8));
    *v = kvq_rd64(r->p + r->off);
    r->off += 8;
    return KVQ_OK;
}

kvq_err kvq_rd_f64(kvq_rd *r, double *v)
{
    KVQ_TRY(kvq_rd_need(r, 8));
    *v = kvq_rdf64(r->p + r->off);
    r->off += 8;
    return KVQ_OK;
}

kvq_err kvq_rd_bytes(kvq_rd *r, size_t k, const uint8_t **out)
{
    KVQ_TRY(kvq_rd_need(r, k));
    *out = r->p + r->off;
    r->off += k;
    return KVQ_OK;
}

/* ---- growable buffer ----------------------------------------------------- */
kvq_err kvq_buf_reserve(kvq_buf *b, size_t extra)
{
    size_t need;
    if (kvq_add_ov(b->n, extra, &need)) return KVQ_ERROR(KVQ_ERR_NOMEM, "buffer size overflow");
    if (need <= b->cap) return KVQ_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->p, cap);
    KVQ_FAIL_IF(!p, KVQ_ERR_NOMEM, "cannot grow buffer to %zu bytes", cap);
    b->p = p;
    b->cap = cap;
    return KVQ_OK;
}

kvq_err kvq_buf_put(kvq_buf *b, const void *src, size_t k)
{
    KVQ_TRY(kvq_buf_reserve(b, k));
    if (k) memcpy(b->p + b->n, src, k);
    b->n += k;
    return KVQ_OK;
}

kvq_err kvq_buf_zeros(kvq_buf *b, size_t k)
{
    KVQ_TRY(kvq_buf_reserve(b, k));
    memset(b->p + b->n, 0, k);
    b->n += k;
    return KVQ_OK;
}

kvq_err kvq_buf_u8(kvq_buf *b, uint8_t v) { return kvq_buf_put(b, &v, 1); }
kvq_err kvq_buf_u16(kvq_buf *b, uint16_t v) { uint8_t t[2]; kvq_wr16(t, v); return kvq_buf_put(b, t, 2); }
kvq_err kvq_buf_u32(kvq_buf *b, uint32_t v) { uint8_t t[4]; kvq_wr32(t, v); return kvq_buf_put(b, t, 4); }
kvq_err kvq_buf_u64(kvq_buf *b, uint64_t v) { uint8_t t[8]; kvq_wr64(t, v); return kvq_buf_put(b, t, 8); }
kvq_err kvq_buf_f64(kvq_buf *b, double v) { uint8_t t[8]; kvq_wrf64(t, v); return kvq_buf_put(b, t, 8); }

void kvq_buf_free(kvq_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

char *kvq_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- mmap'd input -------------------------------------------------------- */
kvq_err kvq_map_open(const char *path, kvq_map *m)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    KVQ_FAIL_IF(fd < 0, KVQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        close(fd);
        return KVQ_ERROR(KVQ_ERR_IO, "%s: not a regular file%s%s", path, e ? ": " : "",
                         e ? strerror(e) : "");
    }
    m->n = (size_t)st.st_size;
    if (m->n > 0) {
        void *p = mmap(NULL, m->n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return KVQ_ERROR(KVQ_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
        }
        m->p = p;
    } else {
        m->p = (const uint8_t *)"";
    }
    close(fd);
    m->path = kvq_strdup(path);
    if (!m->path) {
        kvq_map_close(m);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "%s: out of memory", path);
    }
    return KVQ_OK;
}

void kvq_map_close(kvq_map *m)
{
    if (!m) return;
    if (m->p && m->n) munmap((void *)m->p, m->n);
    free(m->path);
    memset(m, 0, sizeof *m);
}

/* ---- temp file + rename output ------------------------------------------ */
kvq_err kvq_out_open(kvq_out *o, const char *path, int overwrite)
{
    memset(o, 0, sizeof *o);
    struct stat st;
    if (!overwrite && stat(path, &st) == 0)
        return KVQ_ERROR(KVQ_ERR_EXISTS, "%s: already exists (use -f to overwrite)", path);
    size_t n = strlen(path);
    o->path = kvq_strdup(path);
    o->tmp = malloc(n + 16);
    if (!o->path || !o->tmp) {
        kvq_out_abort(o);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(o->tmp, n + 16, "%s.kvq-XXXXXX", path);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        int e = errno;
        free(o->tmp);
        o->tmp = NULL;
        kvq_out_abort(o);
        return KVQ_ERROR(KVQ_ERR_IO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    o->f = fdopen(fd, "wb");
    if (!o->f) {
        close(fd);
        kvq_out_abort(o);
        return KVQ_ERROR(KVQ_ERR_IO, "%s: fdopen failed", path);
    }
    return KVQ_OK;
}

kvq_err kvq_out_write(kvq_out *o, const void *p, size_t n)
{
    if (o->err) return o->err;
    if (n && fwrite(p, 1, n, o->f) != n)
        o->err = KVQ_ERROR(KVQ_ERR_IO, "%s: write failed at byte %llu: %s", o->path,
                           (unsigned long long)o->off, strerror(errno));
    else
        o->off += n;
    return o->err;
}

kvq_err kvq_out_pad(kvq_out *o, size_t align)
{
    static const uint8_t zeros[64];
    size_t pad = (size_t)(kvq_align_up((size_t)o->off, align) - o->off);
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        KVQ_TRY(kvq_out_write(o, zeros, k));
        pad -= k;
    }
    return KVQ_OK;
}

kvq_err kvq_out_commit(kvq_out *o)
{
    kvq_err e = o->err;
    if (!e && (fflush(o->f) != 0 || fsync(fileno(o->f)) != 0))
        e = KVQ_ERROR(KVQ_ERR_IO, "%s: flush failed: %s", o->path, strerror(errno));
    if (fclose(o->f) != 0 && !e)
        e = KVQ_ERROR(KVQ_ERR_IO, "%s: close failed: %s", o->path, strerror(errno));
    o->f = NULL;
    if (!e) {
        /* mkstemp creates 0600; give the output the usual 0644 less umask. */
        mode_t um = umask(0);
        umask(um);
        (void)chmod(o->tmp, 0666 & ~um);
        if (rename(o->tmp, o->path) != 0)
            e = KVQ_ERROR(KVQ_ERR_IO, "%s: rename failed: %s", o->path, strerror(errno));
    }
    if (e) {
        kvq_out_abort(o);
        return e;
    }
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    return KVQ_OK;
}

void kvq_out_abort(kvq_out *o)
{
    if (!o) return;
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
}
