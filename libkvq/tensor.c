/*
 * tensor.c — element types, exact f32 <-> f16/bf16 conversion, shapes and
 * tensor-level error metrics (quant-methods.md §7.5).
 *
 * The conversions are bit-exact IEEE 754: round to nearest, ties to even;
 * overflow to ±Inf; subnormal f16 produced and read; NaN kept quiet with its
 * sign (and, for bf16, the top payload bits).  They are the reference every
 * SIMD path must match.
 */
#include "kvq_internal.h"

#include <math.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[KVQ_DTYPE__COUNT] = {
    [KVQ_DTYPE_F32] = {"f32", 4}, [KVQ_DTYPE_F16] = {"f16", 2}, [KVQ_DTYPE_BF16] = {"bf16", 2},
    [KVQ_DTYPE_I8] = {"i8", 1},   [KVQ_DTYPE_U8] = {"u8", 1},   [KVQ_DTYPE_I32] = {"i32", 4},
};

size_t kvq_dtype_size(kvq_dtype t) { return (unsigned)t < KVQ_DTYPE__COUNT ? dtypes[t].size : 0; }
const char *kvq_dtype_name(kvq_dtype t) { return (unsigned)t < KVQ_DTYPE__COUNT ? dtypes[t].name : "?"; }

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- binary16 ------------------------------------------------------------ */
#define F16_EXP_BIAS  15
#define F32_EXP_BIAS  127

uint16_t kvq_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) /* Inf or NaN: keep NaN quiet, keep top payload */
        return (uint16_t)(sign | 0x7C00u | (ax > 0x7F800000u ? 0x0200u | ((ax >> 13) & 0x3FFu) : 0));
    if (ax >= 0x477FF000u) /* ≥ 65520 rounds to Inf */
        return (uint16_t)(sign | 0x7C00u);
    if (ax < 0x38800000u) { /* below 2^-14: f16 subnormal or zero */
        if (ax < 0x33000000u) return sign; /* < 2^-25 (half the smallest subnormal): 0 */
        /* value = m · 2^(e-150) with implicit bit; f16 subnormal unit 2^-24 */
        uint32_t e = ax >> 23, m = (ax & 0x7FFFFFu) | 0x800000u;
        unsigned shift = 126 - e; /* 14..24 → bits to drop to reach units of 2^-24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent, round 23→10 mantissa bits, ties to even;
     * a carry into the exponent is exactly right (including to Inf). */
    uint32_t r = ax + 0xFFFu + ((ax >> 13) & 1u);
    return (uint16_t)(sign | (((r >> 13) - ((F32_EXP_BIAS - F16_EXP_BIAS) << 10)) & 0x7FFFu));
}

float kvq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F) return bits_f32(sign | 0x7F800000u | (m << 13));
    if (e == 0) { /* zero or subnormal: m · 2^-24, exact in f32 */
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((e + F32_EXP_BIAS - F16_EXP_BIAS) << 23) | (m << 13));
}

/* ---- bfloat16 ------------------------------------------------------------ */
uint16_t kvq_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x0040u); /* quiet NaN */
    x += 0x7FFFu + ((x >> 16) & 1u); /* RNE; overflow carries into Inf */
    return (uint16_t)(x >> 16);
}

float kvq_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

void kvq_f32_to_f16_row(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = kvq_f32_to_f16(src[i]);
}
void kvq_f16_to_f32_row(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = kvq_f16_to_f32(src[i]);
}
void kvq_f32_to_bf16_row(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = kvq_f32_to_bf16(src[i]);
}
void kvq_bf16_to_f32_row(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = kvq_bf16_to_f32(src[i]);
}

/* ---- shapes and views ------------------------------------------------------ */
kvq_shape kvq_shape_make(int ndim, const int64_t *dims)
{
    kvq_shape s;
    memset(&s, 0, sizeof s);
    s.ndim = ndim;
    for (int i = 0; i < ndim && i < KVQ_MAX_DIMS; i++) s.dim[i] = dims[i];
    return s;
}

kvq_tensor kvq_tensor_view(kvq_dtype t, void *data, int ndim, const int64_t *dims)
{
    kvq_tensor v;
    memset(&v, 0, sizeof v);
    v.dtype = t;
    v.data = data;
    v.shape = kvq_shape_make(ndim, dims);
    int64_t st = 1;
    for (int i = ndim - 1; i >= 0 && i < KVQ_MAX_DIMS; i--) {
        v.stride[i] = st;
        st *= dims[i];
    }
    return v;
}

kvq_err kvq_shape_check(const kvq_shape *s)
{
    KVQ_FAIL_IF(s->ndim < 1 || s->ndim > KVQ_MAX_DIMS, KVQ_ERR_SHAPE,
                "tensor rank %d outside 1..%d", s->ndim, KVQ_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) {
        KVQ_FAIL_IF(s->dim[i] < 0 || s->dim[i] > KVQ_MAX_DIM, KVQ_ERR_SHAPE,
                    "dimension %d is %lld (allowed 0..%lld)", i, (long long)s->dim[i],
                    (long long)KVQ_MAX_DIM);
        if (s->dim[i] && n > KVQ_MAX_ELEMENTS / s->dim[i])
            return KVQ_ERROR(KVQ_ERR_SHAPE, "tensor has more than %lld elements",
                             (long long)KVQ_MAX_ELEMENTS);
        n *= s->dim[i];
    }
    return KVQ_OK;
}

int64_t kvq_shape_numel(const kvq_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= s->dim[i];
    return n;
}

int64_t kvq_shape_cols(const kvq_shape *s) { return s->ndim > 0 ? s->dim[s->ndim - 1] : 0; }

int64_t kvq_shape_rows(const kvq_shape *s)
{
    int64_t r = 1;
    for (int i = 0; i + 1 < s->ndim; i++) r *= s->dim[i];
    return r;
}

int kvq_tensor_is_contiguous(const kvq_tensor *t)
{
    int64_t st = 1;
    for (int i = t->shape.ndim - 1; i >= 0; i--) {
        if (t->shape.dim[i] != 1 && t->stride[i] != st) return 0;
        st *= t->shape.dim[i];
    }
    return 1;
}

char *kvq_shape_format(const kvq_shape *s, char *buf, size_t cap)
{
    size_t o = 0;
    if (!cap) return buf;
    buf[0] = '\0';
    o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "[");
    for (int i = 0; i < s->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)s->dim[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
    return buf;
}

kvq_err kvq_check_f32_contig(const kvq_tensor *t, const char *what)
{
    KVQ_FAIL_IF(!t || !t->data, KVQ_ERR_ARG, "%s: NULL tensor", what);
    KVQ_FAIL_IF(t->dtype != KVQ_DTYPE_F32, KVQ_ERR_ARG, "%s: expected f32, got %s", what,
                kvq_dtype_name(t->dtype));
    KVQ_TRY(kvq_shape_check(&t->shape));
    KVQ_FAIL_IF(!kvq_tensor_is_contiguous(t), KVQ_ERR_ARG, "%s: tensor is not contiguous", what);
    return KVQ_OK;
}

/* ---- error metrics --------------------------------------------------------- */
kvq_err_stats kvq_err_stats_compute(const float *x, const float *y, size_t n)
{
    kvq_err_stats s = {0, 0, 0, 0, 0};
    double sxx = 0, syy = 0, sxy = 0, see = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double a = x[i], b = y[i], e = a - b;
        sxx += a * a;
        syy += b * b;
        sxy += a * b;
        see += e * e;
        if (fabs(e) > mx || e != e) mx = fabs(e);
    }
    s.rmse = n ? sqrt(see / (double)n) : 0;
    s.max_abs = mx;
    s.rel_fro = sxx > 0 ? sqrt(see / sxx) : (see > 0 ? INFINITY : 0);
    s.cos = (sxx > 0 && syy > 0) ? sxy / sqrt(sxx * syy) : (sxx == syy ? 1 : 0);
    s.sqnr_db = see > 0 ? 10 * log10(sxx / see) : INFINITY;
    return s;
}
