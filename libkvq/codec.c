/*
 * codec.c — codec parameters, spec strings, contexts and the self-describing
 * blob format (FORMAT.md §1).
 *
 * A context binds a registry codec to parameter values and owns the codec's
 * state (state_size bytes, allocated here, filled by the codec's init), in
 * the manner of sqlite3_vfs's szOsFile.  Codecs only ever produce and read
 * *payloads*; the header that makes a blob self-describing is written and
 * validated here, once.
 */
#include "kvq_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#define BLOB_MAGIC   "KVQT"
#define BLOB_VERSION 1
#define BLOB_FIXED   12  /* magic, version, codec id, ndim, n_params, flags */
#define BLOB_TRAILER 16  /* payload length u64, payload CRC, header CRC    */
#define SPEC_MAX     256 /* longest spec string accepted                   */

struct kvq_ctx {
    const kvq_codec *codec;
    kvq_params       params;
    void            *state;     /* codec->state_size bytes, or NULL */
    int              inited;    /* state holds a successful init    */
};

/* ---- parameters ------------------------------------------------------------ */
kvq_params kvq_params_default(const kvq_codec *c)
{
    kvq_params p;
    memset(&p, 0, sizeof p);
    p.n = c->n_params;
    for (unsigned i = 0; i < c->n_params && i < KVQ_MAX_PARAMS; i++) p.v[i] = c->params[i].def;
    return p;
}

int kvq_param_index(const kvq_codec *c, const char *name)
{
    for (unsigned i = 0; i < c->n_params; i++)
        if (strcmp(c->params[i].name, name) == 0) return (int)i;
    return -1;
}

double kvq_params_get(const kvq_codec *c, const kvq_params *p, const char *name)
{
    int i = kvq_param_index(c, name);
    return i >= 0 && (unsigned)i < p->n ? p->v[i] : NAN;
}

kvq_err kvq_param_bounds(const kvq_codec *c, const char *name, double *min, double *max)
{
    int i = kvq_param_index(c, name);
    KVQ_FAIL_IF(i < 0, KVQ_ERR_NOT_FOUND, "codec %s has no parameter '%s'", c->name, name);
    if (min) *min = c->params[i].min;
    if (max) *max = c->params[i].max;
    return KVQ_OK;
}

static kvq_err param_check(const kvq_codec *c, unsigned i, double v)
{
    const kvq_param *d = &c->params[i];
    KVQ_FAIL_IF(!(v >= d->min && v <= d->max), KVQ_ERR_PARAM_RANGE,
                "%s: %s=%g outside [%g, %g]", c->name, d->name, v, d->min, d->max);
    KVQ_FAIL_IF((d->is_int || d->choices) && v != floor(v), KVQ_ERR_PARAM_RANGE,
                "%s: %s=%g must be an integer", c->name, d->name, v);
    return KVQ_OK;
}

static kvq_err params_check(const kvq_codec *c, const kvq_params *p)
{
    KVQ_FAIL_IF(p->n != c->n_params, KVQ_ERR_PARAM_RANGE, "%s: %u parameters given, codec has %u",
                c->name, p->n, c->n_params);
    for (unsigned i = 0; i < p->n; i++) KVQ_TRY(param_check(c, i, p->v[i]));
    return KVQ_OK;
}

/* ---- spec strings: NAME[:KEY=VALUE[,KEY=VALUE]...] -------------------------- */
static kvq_err parse_value(const kvq_codec *c, unsigned i, const char *txt, double *out)
{
    const kvq_param *d = &c->params[i];
    if (d->choices) {
        for (unsigned k = 0; d->choices[k]; k++)
            if (strcmp(d->choices[k], txt) == 0) {
                *out = k;
                return KVQ_OK;
            }
    }
    char *end;
    errno = 0;
    double v = strtod(txt, &end);
    if (end == txt || *end || errno == ERANGE || !isfinite(v)) {
        if (d->choices) {
            char list[128] = "";
            for (unsigned k = 0; d->choices[k]; k++) {
                strncat(list, k ? "|" : "", sizeof list - strlen(list) - 1);
                strncat(list, d->choices[k], sizeof list - strlen(list) - 1);
            }
            return KVQ_ERROR(KVQ_ERR_SPEC, "%s: %s='%s' is not one of %s", c->name, d->name, txt, list);
        }
        return KVQ_ERROR(KVQ_ERR_SPEC, "%s: %s='%s' is not a number", c->name, d->name, txt);
    }
    *out = v;
    return param_check(c, i, v);
}

kvq_err kvq_spec_parse(const char *spec, const kvq_codec **codec, kvq_params *params)
{
    KVQ_FAIL_IF(!spec || !*spec, KVQ_ERR_SPEC, "empty codec spec");
    size_t len = strlen(spec);
    KVQ_FAIL_IF(len >= SPEC_MAX, KVQ_ERR_SPEC, "codec spec longer than %d bytes", SPEC_MAX - 1);
    char buf[SPEC_MAX];
    memcpy(buf, spec, len + 1);
    char *colon = strchr(buf, ':');
    if (colon) *colon = '\0';
    const kvq_codec *c = kvq_codec_find(buf);
    KVQ_FAIL_IF(!c, KVQ_ERR_UNKNOWN_CODEC, "unknown codec '%s' (see `kvq codecs`)", buf);
    kvq_params p = kvq_params_default(c);
    unsigned seen = 0;
    if (colon) {
        char *save = NULL;
        KVQ_FAIL_IF(!colon[1], KVQ_ERR_SPEC, "'%s': nothing after ':'", spec);
        for (char *kv = strtok_r(colon + 1, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            KVQ_FAIL_IF(!eq || eq == kv || !eq[1], KVQ_ERR_SPEC,
                        "'%s': expected KEY=VALUE, got '%s'", spec, kv);
            *eq = '\0';
            int i = kvq_param_index(c, kv);
            KVQ_FAIL_IF(i < 0, KVQ_ERR_SPEC, "codec %s has no parameter '%s'", c->name, kv);
            KVQ_FAIL_IF(seen & (1u << i), KVQ_ERR_SPEC, "'%s': parameter '%s' given twice", spec, kv);
            seen |= 1u << i;
            KVQ_TRY(parse_value(c, (unsigned)i, eq + 1, &p.v[i]));
        }
        /* strtok_r skips empty fields: reject "a=1,,b=2" and trailing ','. */
        KVQ_FAIL_IF(strstr(spec, ",,") || spec[len - 1] == ',', KVQ_ERR_SPEC,
                    "'%s': empty KEY=VALUE field", spec);
    }
    *codec = c;
    *params = p;
    return KVQ_OK;
}

char *kvq_spec_format(const kvq_codec *c, const kvq_params *p, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "%s", c->name);
    char sep = ':';
    for (unsigned i = 0; i < c->n_params && i < p->n && o < cap; i++) {
        const kvq_param *d = &c->params[i];
        if (p->v[i] == d->def) continue;
        if (d->choices)
            o += (size_t)snprintf(buf + o, cap - o, "%c%s=%s", sep, d->name, d->choices[(int)p->v[i]]);
        else
            o += (size_t)snprintf(buf + o, cap - o, "%c%s=%.10g", sep, d->name, p->v[i]);
        sep = ',';
    }
    return buf;
}

/* ---- contexts ------------------------------------------------------------- */
static kvq_err ctx_init(kvq_ctx *ctx)
{
    const kvq_codec *c = ctx->codec;
    if (ctx->inited && c->fini) c->fini(ctx->state);
    ctx->inited = 0;
    if (ctx->state) memset(ctx->state, 0, c->state_size);
    if (c->init) KVQ_TRY(c->init(ctx->state, &ctx->params));
    ctx->inited = 1;
    return KVQ_OK;
}

kvq_err kvq_ctx_create_params(const kvq_codec *c, const kvq_params *p, kvq_ctx **out)
{
    KVQ_FAIL_IF(!c || !out, KVQ_ERR_ARG, "kvq_ctx_create: NULL argument");
    KVQ_FAIL_IF(c->abi < 1 || c->n_params > KVQ_MAX_PARAMS || (!c->decode && !c->decode_rows), KVQ_ERR_ARG,
                "codec %s: bad descriptor", c->name);
    *out = NULL;
    kvq_params prm = p ? *p : kvq_params_default(c);
    KVQ_TRY(params_check(c, &prm));
    kvq_ctx *ctx = calloc(1, sizeof *ctx);
    KVQ_FAIL_IF(!ctx, KVQ_ERR_NOMEM, "out of memory");
    ctx->codec = c;
    ctx->params = prm;
    if (c->state_size) {
        ctx->state = calloc(1, c->state_size);
        if (!ctx->state) {
            free(ctx);
            return KVQ_ERROR(KVQ_ERR_NOMEM, "out of memory");
        }
    }
    kvq_err e = ctx_init(ctx);
    if (e) {
        kvq_ctx_free(ctx);
        return e;
    }
    *out = ctx;
    return KVQ_OK;
}

kvq_err kvq_ctx_create(const char *spec, kvq_ctx **out)
{
    const kvq_codec *c;
    kvq_params p;
    KVQ_FAIL_IF(!out, KVQ_ERR_ARG, "kvq_ctx_create: NULL out");
    *out = NULL;
    KVQ_TRY(kvq_spec_parse(spec, &c, &p));
    return kvq_ctx_create_params(c, &p, out);
}

void kvq_ctx_free(kvq_ctx *ctx)
{
    if (!ctx) return;
    if (ctx->inited && ctx->codec->fini) ctx->codec->fini(ctx->state);
    free(ctx->state);
    free(ctx);
}

const kvq_codec *kvq_ctx_codec(const kvq_ctx *ctx) { return ctx->codec; }
void *kvq_ctx_state(const kvq_ctx *ctx) { return ctx->state; }
const kvq_params *kvq_ctx_params(const kvq_ctx *ctx) { return &ctx->params; }

kvq_err kvq_ctx_set_param(kvq_ctx *ctx, const char *name, double value)
{
    int i = kvq_param_index(ctx->codec, name);
    KVQ_FAIL_IF(i < 0, KVQ_ERR_NOT_FOUND, "codec %s has no parameter '%s'", ctx->codec->name, name);
    KVQ_TRY(param_check(ctx->codec, (unsigned)i, value));
    ctx->params.v[i] = value;
    return ctx_init(ctx);
}

kvq_err kvq_ctx_reset(kvq_ctx *ctx)
{
    ctx->params = kvq_params_default(ctx->codec);
    return ctx_init(ctx);
}

kvq_err kvq_ctx_calibrate(kvq_ctx *ctx, const kvq_tensor *sample)
{
    KVQ_FAIL_IF(!ctx->inited, KVQ_ERR_ARG, "%s: context not initialised", ctx->codec->name);
    if (!ctx->codec->calibrate) return KVQ_OK; /* data-free codec: nothing to learn */
    KVQ_TRY(kvq_check_f32_contig(sample, "calibration sample"));
    return ctx->codec->calibrate(ctx->state, sample);
}

size_t kvq_ctx_payload_bound(const kvq_ctx *ctx, const kvq_shape *s)
{
    if (kvq_shape_check(s) != KVQ_OK) return 0;
    return ctx->codec->bound(ctx->state, s);
}

static size_t header_size(unsigned ndim, unsigned n_params)
{
    return BLOB_FIXED + 8u * ndim + 8u * n_params + BLOB_TRAILER;
}

size_t kvq_ctx_bound(const kvq_ctx *ctx, const kvq_shape *s)
{
    size_t pb = kvq_ctx_payload_bound(ctx, s), hs = header_size((unsigned)s->ndim, ctx->params.n), r;
    if (!pb && kvq_shape_numel(s) != 0) return 0;
    return kvq_add_ov(pb, hs, &r) ? 0 : r;
}

/* Encoders see contiguous f32; f16/bf16 sources are widened exactly here. */
static kvq_err widen_f32(const kvq_tensor *src, kvq_tensor *out, float **owned)
{
    *owned = NULL;
    KVQ_FAIL_IF(!src || !src->data, KVQ_ERR_ARG, "encode: NULL tensor");
    KVQ_TRY(kvq_shape_check(&src->shape));
    KVQ_FAIL_IF(!kvq_tensor_is_contiguous(src), KVQ_ERR_ARG, "encode: tensor is not contiguous");
    if (src->dtype == KVQ_DTYPE_F32) {
        *out = *src;
        return KVQ_OK;
    }
    KVQ_FAIL_IF(src->dtype != KVQ_DTYPE_F16 && src->dtype != KVQ_DTYPE_BF16, KVQ_ERR_UNSUPPORTED,
                "encode: cannot encode %s tensors", kvq_dtype_name(src->dtype));
    size_t n = (size_t)kvq_shape_numel(&src->shape);
    float *f = malloc(n ? n * sizeof *f : 1);
    KVQ_FAIL_IF(!f, KVQ_ERR_NOMEM, "encode: out of memory for %zu values", n);
    if (src->dtype == KVQ_DTYPE_F16)
        kvq_f16_to_f32_row(src->data, f, n);
    else
        kvq_bf16_to_f32_row(src->data, f, n);
    *out = kvq_tensor_view(KVQ_DTYPE_F32, f, src->shape.ndim, src->shape.dim);
    *owned = f;
    return KVQ_OK;
}

/* NaN/Inf screening before a codec that cannot represent them.  A value is
 * finite iff its exponent field is not all ones, so the block's largest
 * exponent field decides; the scan keeps 8 independent lane maxima (which
 * gcc -O2 turns into vector max instructions) and only a block that fails
 * is searched for the element to name. */
#define FINITE_BLOCK 1024        /* values per branch-free scan block */
#define FINITE_LANES 8           /* independent running maxima        */
#define F32_EXP_MASK 0x7F800000u /* exponent field of a binary32       */

static int block_nonfinite(const float *x, size_t n)
{
    uint32_t lane[FINITE_LANES] = {0}, m = 0;
    size_t i = 0;
    for (; i + FINITE_LANES <= n; i += FINITE_LANES)
        for (int l = 0; l < FINITE_LANES; l++) {
            uint32_t u;
            memcpy(&u, &x[i + l], 4);
            u &= F32_EXP_MASK;
            lane[l] = lane[l] > u ? lane[l] : u;
        }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u &= F32_EXP_MASK;
        m = m > u ? m : u;
    }
    for (int l = 0; l < FINITE_LANES; l++) m = m > lane[l] ? m : lane[l];
    return m == F32_EXP_MASK;
}

kvq_err kvq_nonfinite_check(const kvq_codec *c, const float *x, size_t n, size_t base)
{
    for (size_t b = 0; b < n; b += FINITE_BLOCK) {
        size_t k = n - b < FINITE_BLOCK ? n - b : FINITE_BLOCK;
        if (KVQ_LIKELY(!block_nonfinite(x + b, k))) continue;
        for (size_t i = b; i < b + k; i++)
            KVQ_FAIL_IF(!isfinite(x[i]), KVQ_ERR_NONFINITE,
                        "%s: element %zu is %g; codec %s takes finite values only", c->name, base + i,
                        (double)x[i], c->name);
    }
    return KVQ_OK;
}

static kvq_err check_finite(const kvq_codec *c, const kvq_tensor *t)
{
    if (c->flags & (KVQ_FLAG_NONFINITE_OK | KVQ_FLAG_CHECKS_FINITE)) return KVQ_OK;
    return kvq_nonfinite_check(c, t->data, (size_t)kvq_shape_numel(&t->shape), 0);
}

kvq_err kvq_ctx_encode_payload(kvq_ctx *ctx, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    kvq_tensor t;
    float *owned;
    KVQ_TRY(widen_f32(src, &t, &owned));
    kvq_err e = check_finite(ctx->codec, &t);
    if (!e && cap < kvq_ctx_payload_bound(ctx, &t.shape))
        e = KVQ_ERROR(KVQ_ERR_DST_TOO_SMALL, "%s: payload needs up to %zu bytes, buffer has %zu",
                      ctx->codec->name, kvq_ctx_payload_bound(ctx, &t.shape), cap);
    if (!e) e = ctx->codec->encode(ctx->state, &t, dst, cap, n);
    free(owned);
    return e;
}

kvq_err kvq_ctx_encode(kvq_ctx *ctx, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    KVQ_FAIL_IF(!src || !dst || !n, KVQ_ERR_ARG, "kvq_ctx_encode: NULL argument");
    KVQ_TRY(kvq_shape_check(&src->shape));
    size_t hs = header_size((unsigned)src->shape.ndim, ctx->params.n), pn = 0;
    KVQ_FAIL_IF(cap < hs, KVQ_ERR_DST_TOO_SMALL, "blob header needs %zu bytes, buffer has %zu", hs, cap);
    uint8_t *h = dst, *payload = h + hs;
    KVQ_TRY(kvq_ctx_encode_payload(ctx, src, payload, cap - hs, &pn));
    memcpy(h, BLOB_MAGIC, 4);
    kvq_wr16(h + 4, BLOB_VERSION);
    kvq_wr16(h + 6, ctx->codec->id);
    h[8] = (uint8_t)src->shape.ndim;
    h[9] = (uint8_t)ctx->params.n;
    kvq_wr16(h + 10, 0); /* flags: none defined in version 1 */
    uint8_t *q = h + BLOB_FIXED;
    for (int i = 0; i < src->shape.ndim; i++, q += 8) kvq_wr64(q, (uint64_t)src->shape.dim[i]);
    for (unsigned i = 0; i < ctx->params.n; i++, q += 8) kvq_wrf64(q, ctx->params.v[i]);
    kvq_wr64(q, pn);
    kvq_wr32(q + 8, kvq_crc32(0, payload, pn));
    kvq_wr32(q + 12, kvq_crc32(0, h, (size_t)(q + 12 - h)));
    *n = hs + pn;
    return KVQ_OK;
}

kvq_err kvq_ctx_decode_payload(kvq_ctx *ctx, const void *src, size_t n, kvq_tensor *dst)
{
    KVQ_TRY(kvq_check_f32_contig(dst, "decode destination"));
    KVQ_FAIL_IF(!src && n, KVQ_ERR_ARG, "decode: NULL payload");
    if (ctx->codec->decode) return ctx->codec->decode(ctx->state, src, n, dst);
    /* Row-addressable codecs need no separate whole-tensor decode. */
    return ctx->codec->decode_rows(ctx->state, src, n, &dst->shape, 0, kvq_shape_rows(&dst->shape),
                                   dst->data);
}

kvq_err kvq_ctx_decode_rows(kvq_ctx *ctx, const void *src, size_t n, const kvq_shape *s,
                            int64_t r0, int64_t r1, float *out)
{
    KVQ_TRY(kvq_shape_check(s));
    int64_t rows = kvq_shape_rows(s), cols = kvq_shape_cols(s);
    KVQ_FAIL_IF(r0 < 0 || r1 < r0 || r1 > rows, KVQ_ERR_ARG, "decode_rows: rows [%lld, %lld) of %lld",
                (long long)r0, (long long)r1, (long long)rows);
    if (ctx->codec->decode_rows) return ctx->codec->decode_rows(ctx->state, src, n, s, r0, r1, out);
    /* Fallback for codecs without row access: decode whole, copy the range. */
    size_t total = (size_t)kvq_shape_numel(s);
    float *all = malloc(total ? total * sizeof *all : 1);
    KVQ_FAIL_IF(!all, KVQ_ERR_NOMEM, "decode_rows: out of memory");
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, all, s->ndim, s->dim);
    kvq_err e = kvq_ctx_decode_payload(ctx, src, n, &t);
    if (!e) memcpy(out, all + r0 * cols, (size_t)((r1 - r0) * cols) * sizeof *out);
    free(all);
    return e;
}

kvq_err kvq_ctx_payload_parts(kvq_ctx *ctx, const void *src, size_t n, const kvq_shape *s, kvq_codec_parts *out)
{
    KVQ_FAIL_IF(!ctx || !s || !out || (!src && n), KVQ_ERR_ARG, "kvq_ctx_payload_parts: NULL argument");
    KVQ_TRY(kvq_shape_check(s));
    memset(out, 0, sizeof *out);
    if (ctx->codec->abi < 2 || !ctx->codec->parts) {
        out->codes = n;
        return KVQ_OK;
    }
    KVQ_TRY(ctx->codec->parts(ctx->state, src, n, s, out));
    uint64_t sum = out->codes + out->scales + out->lowrank + out->sparse + out->meta;
    KVQ_FAIL_IF(sum != n, KVQ_ERR_CORRUPT, "%s: payload parts add up to %llu of %zu bytes", ctx->codec->name,
                (unsigned long long)sum, n);
    return KVQ_OK;
}

/* ---- blobs ----------------------------------------------------------------- */
kvq_err kvq_blob_info_read(const void *blob, size_t n, kvq_blob_info *info)
{
    kvq_rd r = {blob, n, 0, "blob"};
    const uint8_t *magic;
    uint16_t ver, id, flags;
    uint8_t ndim, np;
    KVQ_FAIL_IF(!blob && n, KVQ_ERR_ARG, "blob: NULL");
    memset(info, 0, sizeof *info);
    KVQ_TRY(kvq_rd_bytes(&r, 4, &magic));
    KVQ_FAIL_IF(memcmp(magic, BLOB_MAGIC, 4) != 0, KVQ_ERR_BAD_MAGIC, "blob: bad magic (expected 'KVQT')");
    KVQ_TRY(kvq_rd_u16(&r, &ver));
    KVQ_FAIL_IF(ver != BLOB_VERSION, KVQ_ERR_VERSION, "blob: version %u, this build reads %d", ver, BLOB_VERSION);
    KVQ_TRY(kvq_rd_u16(&r, &id));
    KVQ_TRY(kvq_rd_u8(&r, &ndim));
    KVQ_TRY(kvq_rd_u8(&r, &np));
    KVQ_TRY(kvq_rd_u16(&r, &flags));
    KVQ_FAIL_IF(ndim < 1 || ndim > KVQ_MAX_DIMS, KVQ_ERR_SHAPE, "blob: rank %u outside 1..%d", ndim, KVQ_MAX_DIMS);
    KVQ_FAIL_IF(np > KVQ_MAX_PARAMS, KVQ_ERR_CORRUPT, "blob: %u parameters (max %d)", np, KVQ_MAX_PARAMS);
    size_t hs = header_size(ndim, np);
    KVQ_TRY(kvq_rd_need(&r, hs - r.off));
    /* Header CRC before interpreting anything else: a flipped bit anywhere
     * in the header is reported as a checksum error, not as a wrong shape. */
    uint32_t hcrc = kvq_rd32((const uint8_t *)blob + hs - 4);
    KVQ_FAIL_IF(kvq_crc32(0, blob, hs - 4) != hcrc, KVQ_ERR_CHECKSUM, "blob: header CRC mismatch");
    KVQ_FAIL_IF(flags != 0, KVQ_ERR_UNSUPPORTED, "blob: unknown flags 0x%04x", flags);
    const kvq_codec *c = kvq_codec_by_id(id);
    KVQ_FAIL_IF(!c, KVQ_ERR_UNKNOWN_CODEC, "blob: codec id %u is not in this build", id);
    KVQ_FAIL_IF(np != c->n_params, KVQ_ERR_CORRUPT, "blob: %u parameters, codec %s has %u", np, c->name,
                c->n_params);
    info->shape.ndim = ndim;
    for (unsigned i = 0; i < ndim; i++) {
        uint64_t d;
        KVQ_TRY(kvq_rd_u64(&r, &d));
        KVQ_FAIL_IF(d > (uint64_t)KVQ_MAX_DIM, KVQ_ERR_SHAPE, "blob: dimension %u is %llu", i,
                    (unsigned long long)d);
        info->shape.dim[i] = (int64_t)d;
    }
    KVQ_TRY(kvq_shape_check(&info->shape));
    info->params.n = np;
    for (unsigned i = 0; i < np; i++) KVQ_TRY(kvq_rd_f64(&r, &info->params.v[i]));
    KVQ_TRY(params_check(c, &info->params));
    uint64_t plen;
    KVQ_TRY(kvq_rd_u64(&r, &plen));
    KVQ_TRY(kvq_rd_u32(&r, &info->payload_crc));
    KVQ_FAIL_IF(plen > n - hs, KVQ_ERR_TRUNCATED, "blob: payload of %llu bytes, only %zu present",
                (unsigned long long)plen, n - hs);
    info->codec = c;
    info->header_size = hs;
    info->payload_size = (size_t)plen;
    return KVQ_OK;
}

kvq_err kvq_blob_decode(const void *blob, size_t n, kvq_tensor *dst)
{
    kvq_blob_info bi;
    KVQ_TRY(kvq_blob_info_read(blob, n, &bi));
    KVQ_TRY(kvq_check_f32_contig(dst, "decode destination"));
    KVQ_FAIL_IF(kvq_shape_numel(&dst->shape) != kvq_shape_numel(&bi.shape), KVQ_ERR_SHAPE,
                "blob holds %lld values, destination has %lld", (long long)kvq_shape_numel(&bi.shape),
                (long long)kvq_shape_numel(&dst->shape));
    const uint8_t *payload = (const uint8_t *)blob + bi.header_size;
    KVQ_FAIL_IF(kvq_crc32(0, payload, bi.payload_size) != bi.payload_crc, KVQ_ERR_CHECKSUM,
                "blob: payload CRC mismatch");
    kvq_ctx *ctx;
    KVQ_TRY(kvq_ctx_create_params(bi.codec, &bi.params, &ctx));
    kvq_tensor view = kvq_tensor_view(KVQ_DTYPE_F32, dst->data, bi.shape.ndim, bi.shape.dim);
    kvq_err e = kvq_ctx_decode_payload(ctx, payload, bi.payload_size, &view);
    kvq_ctx_free(ctx);
    return e;
}
