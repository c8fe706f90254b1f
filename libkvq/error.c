/*
 * error.c — error codes, their names, and the thread-local detail message.
 *
 * The detail is per thread (never a global, unlike stb's failure reason) so
 * that worker threads quantizing different tensors do not overwrite each
 * other's diagnostics.
 */
#include "kvq_internal.h"

#include <stdio.h>

#define KVQ_DETAIL_MAX 512 /* bytes of one detail message, NUL included */

static _Thread_local char detail[KVQ_DETAIL_MAX];
static _Thread_local char where[64]; /* "io.c:97": the check that failed */

static const char *const err_names[KVQ_ERR__COUNT] = {
    [KVQ_OK] = "success",
    [KVQ_ERR_IO] = "I/O error",
    [KVQ_ERR_TRUNCATED] = "truncated input",
    [KVQ_ERR_BAD_MAGIC] = "bad magic (not this format)",
    [KVQ_ERR_VERSION] = "unsupported format version",
    [KVQ_ERR_SHAPE] = "invalid shape",
    [KVQ_ERR_NONFINITE] = "non-finite value (NaN or Inf)",
    [KVQ_ERR_PARAM_RANGE] = "parameter out of range",
    [KVQ_ERR_UNKNOWN_CODEC] = "unknown codec",
    [KVQ_ERR_NOMEM] = "out of memory",
    [KVQ_ERR_DST_TOO_SMALL] = "destination buffer too small",
    [KVQ_ERR_CORRUPT] = "corrupt data",
    [KVQ_ERR_CHECKSUM] = "checksum mismatch",
    [KVQ_ERR_UNSUPPORTED] = "unsupported",
    [KVQ_ERR_ARG] = "invalid argument",
    [KVQ_ERR_EXISTS] = "output exists (use -f to overwrite)",
    [KVQ_ERR_SPEC] = "malformed codec spec",
    [KVQ_ERR_NOT_FOUND] = "not found",
};

const char *kvq_strerror(kvq_err err)
{
    if ((unsigned)err >= KVQ_ERR__COUNT || !err_names[err]) return "unknown error";
    return err_names[err];
}

const char *kvq_last_error_detail(void) { return detail; }
const char *kvq_last_error_where(void) { return where; }

void kvq_clear_error(void)
{
    detail[0] = '\0';
    where[0] = '\0';
}

kvq_err kvq_error_set(kvq_err err, const char *file, int line, const char *fmt, ...)
{
    /* Users read the sentence; developers find the check through
     * kvq_last_error_where(). */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    snprintf(where, sizeof where, "%s:%d", base ? base + 1 : file, line);
    return err;
}

void kvq_error_prefix(const char *prefix)
{
    char tmp[KVQ_DETAIL_MAX];
    size_t lp = strlen(prefix);
    /* Do not prefix twice (a reader may add the path at two layers). */
    if (strncmp(detail, prefix, lp) == 0 && detail[lp] == ':') return;
    snprintf(tmp, sizeof tmp, "%s: %s", prefix, detail);
    memcpy(detail, tmp, sizeof detail);
}

unsigned kvq_version_number(void) { return KVQ_VERSION_NUMBER; }
const char *kvq_version_string(void) { return KVQ_VERSION_STRING; }
