/*
 * kvq_internal.h — helpers shared across libkvq's own files (never installed).
 *
 * Error recording (zstd style): KVQ_FAIL_IF records file:line plus a
 * formatted detail in the thread-local message and returns the code;
 * KVQ_TRY forwards an error from a call.  Little-endian byte access,
 * bounded readers, mmap'd input files and temp-file + rename output live
 * here so every reader and writer uses the same checked primitives.
 */
#ifndef KVQ_INTERNAL_H
#define KVQ_INTERNAL_H

#include "kvq.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
#define KVQ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define KVQ_LIKELY(x)    __builtin_expect(!!(x), 1)
#define KVQ_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#else
#define KVQ_PRINTF(a, b)
#define KVQ_LIKELY(x)   (x)
#define KVQ_UNLIKELY(x) (x)
#endif

/* ---- errors ------------------------------------------------------------- */
/* kvq_error_set() : records "detail" for this thread and returns err. */
kvq_err kvq_error_set(kvq_err err, const char *file, int line, const char *fmt, ...)
    KVQ_PRINTF(4, 5);
/* kvq_error_prefix() : prepends "prefix: " to the current detail (used to
 * add a file name at the layer that knows it). */
void kvq_error_prefix(const char *prefix);

#define KVQ_ERROR(code, ...) kvq_error_set((code), __FILE__, __LINE__, __VA_ARGS__)
#define KVQ_FAIL_IF(cond, code, ...)                                          \
    do {                                                                      \
        if (KVQ_UNLIKELY(cond)) return KVQ_ERROR((code), __VA_ARGS__);        \
    } while (0)
#define KVQ_TRY(expr)                                                         \
    do {                                                                      \
        kvq_err kvq_try_e_ = (expr);                                          \
        if (kvq_try_e_ != KVQ_OK) return kvq_try_e_;                          \
    } while (0)

/* ---- little-endian access ------------------------------------------------ */
static inline uint16_t kvq_rd16(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint16_t)(b[0] | (b[1] << 8));
}
static inline uint32_t kvq_rd32(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}
static inline uint64_t kvq_rd64(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint64_t)kvq_rd32(b) | ((uint64_t)kvq_rd32(b + 4) << 32);
}
static inline void kvq_wr16(void *p, uint16_t v)
{
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
}
static inline void kvq_wr32(void *p, uint32_t v)
{
    uint8_t *b = (uint8_t *)p;
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}
static inline void kvq_wr64(void *p, uint64_t v)
{
    kvq_wr32(p, (uint32_t)v);
    kvq_wr32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}
static inline float kvq_rdf32(const void *p)
{
    uint32_t u = kvq_rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline double kvq_rdf64(const void *p)
{
    uint64_t u = kvq_rd64(p);
    double d;
    memcpy(&d, &u, 8);
    return d;
}
static inline void kvq_wrf64(void *p, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    kvq_wr64(p, u);
}

/* ---- bounded reader: every read checks the remaining length ------------- */
typedef struct kvq_rd {
    const uint8_t *p;      /* start of the buffer                 */
    size_t         n;      /* its length                          */
    size_t         off;    /* read position                       */
    const char    *what;   /* name used in error details (a path) */
} kvq_rd;

kvq_err kvq_rd_need(kvq_rd *r, size_t k);      /* TRUNCATED if fewer than k left */
kvq_err kvq_rd_u8(kvq_rd *r, uint8_t *v);
kvq_err kvq_rd_u16(kvq_rd *r, uint16_t *v);
kvq_err kvq_rd_u32(kvq_rd *r, uint32_t *v);
kvq_err kvq_rd_u64(kvq_rd *r, uint64_t *v);
kvq_err kvq_rd_f64(kvq_rd *r, double *v);
kvq_err kvq_rd_bytes(kvq_rd *r, size_t k, const uint8_t **out);

/* ---- growable output buffer ---------------------------------------------- */
typedef struct kvq_buf {
    uint8_t *p;
    size_t   n, cap;
} kvq_buf;
kvq_err kvq_buf_reserve(kvq_buf *b, size_t extra);
kvq_err kvq_buf_put(kvq_buf *b, const void *src, size_t k);
kvq_err kvq_buf_zeros(kvq_buf *b, size_t k);
kvq_err kvq_buf_u8(kvq_buf *b, uint8_t v);
kvq_err kvq_buf_u16(kvq_buf *b, uint16_t v);
kvq_err kvq_buf_u32(kvq_buf *b, uint32_t v);
kvq_err kvq_buf_u64(kvq_buf *b, uint64_t v);
kvq_err kvq_buf_f64(kvq_buf *b, double v);
void kvq_buf_free(kvq_buf *b);

/* ---- input files: read-only mmap (empty files map to a 0-length view) --- */
typedef struct kvq_map {
    const uint8_t *p;
    size_t         n;
    char          *path;   /* owned copy */
} kvq_map;
kvq_err kvq_map_open(const char *path, kvq_map *m);
void kvq_map_close(kvq_map *m);

/* ---- output files: temp file in the target's directory, then rename ----- */
typedef struct kvq_out {
    FILE *f;
    char *path;      /* final name            */
    char *tmp;       /* "<path>.kvq-XXXXXX"   */
    kvq_err err;     /* first write error      */
    uint64_t off;    /* bytes written so far   */
} kvq_out;
/* kvq_out_open() : refuses an existing path unless overwrite (KVQ_ERR_EXISTS). */
kvq_err kvq_out_open(kvq_out *o, const char *path, int overwrite);
kvq_err kvq_out_write(kvq_out *o, const void *p, size_t n);
kvq_err kvq_out_pad(kvq_out *o, size_t align);        /* zero bytes up to align */
/* kvq_out_commit() : flush, fsync, rename over path.  On error the temp
 * file is removed and path is untouched. */
kvq_err kvq_out_commit(kvq_out *o);
/* kvq_out_abort() : remove the temp file; NULL-safe on a closed output. */
void kvq_out_abort(kvq_out *o);

/* ---- misc ---------------------------------------------------------------- */
char *kvq_strdup(const char *s);
static inline size_t kvq_align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }
/* Overflow-checked size arithmetic: return 0 on success, 1 on overflow. */
static inline int kvq_mul_ov(size_t a, size_t b, size_t *r) { return __builtin_mul_overflow(a, b, r); }
static inline int kvq_add_ov(size_t a, size_t b, size_t *r) { return __builtin_add_overflow(a, b, r); }

/* A codec's parameter value by name (declaration order lookup at init). */
double kvq_params_get(const kvq_codec *c, const kvq_params *p, const char *name);

/* kvq_nonfinite_check() : KVQ_ERR_NONFINITE naming the first NaN/Inf of
 * x[0..n) (reported as element base + i), KVQ_OK when all are finite.  The
 * core's scan; codecs with KVQ_FLAG_CHECKS_FINITE call it on a block or
 * row whose own pass saw a non-finite value (e.g. amax not finite). */
kvq_err kvq_nonfinite_check(const kvq_codec *c, const float *x, size_t n, size_t base);

/* The codec state of a context (libkvq-internal: row kernels read it). */
void *kvq_ctx_state(const kvq_ctx *ctx);

/* Contiguous f32 view required by codec encode/decode. */
kvq_err kvq_check_f32_contig(const kvq_tensor *t, const char *what);

#endif /* KVQ_INTERNAL_H */
