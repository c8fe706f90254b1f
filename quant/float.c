/*
 * float.c — the plain storage codecs f32 (lossless), f16 and bf16.
 *
 * Payload: the values as little-endian IEEE words, row-major, nothing else.
 * f16/bf16 round to nearest even (libkvq/tensor.c) and pass NaN/Inf
 * through (NaN stays NaN, ±Inf stays ±Inf; f16 overflow becomes ±Inf, so
 * finite inputs beyond ±65504 are rejected by f16 rather than silently
 * made infinite).  The three share one generic body (lz4 style), selected
 * by the element width in the codec's state.
 */
#include "kvq_internal.h"
#include "quant/codecs.h"

#include <math.h>

#define F16_MAX 65504.0f /* largest finite binary16 */

/* Relative error of one RNE rounding to p significand bits is ≤ 2^-p;
 * declared with a little headroom for subnormal inputs (which lose
 * relative precision but not absolute; the conformance test feeds
 * tensors whose norm is dominated by normal values). */
#define F16_REL_ERR  (1.0 / 2048.0)  /* 2^-11: 11-bit significand */
#define BF16_REL_ERR (1.0 / 256.0)   /* 2^-8 : 8-bit significand  */

typedef enum { W_F32, W_F16, W_BF16 } width_kind;

typedef struct {
    width_kind kind;
} float_state;

static kvq_err init_f32(void *st, const kvq_params *p) { (void)p; ((float_state *)st)->kind = W_F32; return KVQ_OK; }
static kvq_err init_f16(void *st, const kvq_params *p) { (void)p; ((float_state *)st)->kind = W_F16; return KVQ_OK; }
static kvq_err init_bf16(void *st, const kvq_params *p) { (void)p; ((float_state *)st)->kind = W_BF16; return KVQ_OK; }

static size_t elem_bytes(width_kind k) { return k == W_F32 ? 4 : 2; }

static size_t float_bound(const void *st, const kvq_shape *s)
{
    return (size_t)kvq_shape_numel(s) * elem_bytes(((const float_state *)st)->kind);
}

static kvq_err float_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    width_kind k = ((float_state *)st)->kind;
    size_t cnt = (size_t)kvq_shape_numel(&src->shape), need = cnt * elem_bytes(k);
    const float *x = src->data;
    uint8_t *o = dst;
    KVQ_FAIL_IF(cap < need, KVQ_ERR_DST_TOO_SMALL, "float codec: need %zu bytes", need);
    for (size_t i = 0; i < cnt; i++) {
        if (k == W_F32) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            kvq_wr32(o + 4 * i, u);
        } else if (k == W_F16) {
            KVQ_FAIL_IF(isfinite(x[i]) && fabsf(x[i]) > F16_MAX + 16.0f, KVQ_ERR_PARAM_RANGE,
                        "f16: element %zu = %g exceeds the f16 range (±65504)", i, (double)x[i]);
            kvq_wr16(o + 2 * i, kvq_f32_to_f16(x[i]));
        } else {
            kvq_wr16(o + 2 * i, kvq_f32_to_bf16(x[i]));
        }
    }
    *n = need;
    return KVQ_OK;
}

static void float_rows(width_kind k, const uint8_t *p, size_t i0, size_t cnt, float *out)
{
    for (size_t i = 0; i < cnt; i++) {
        const uint8_t *q = p + (i0 + i) * elem_bytes(k);
        if (k == W_F32)
            out[i] = kvq_rdf32(q);
        else if (k == W_F16)
            out[i] = kvq_f16_to_f32(kvq_rd16(q));
        else
            out[i] = kvq_bf16_to_f32(kvq_rd16(q));
    }
}

static kvq_err float_decode(void *st, const void *src, size_t n, kvq_tensor *dst)
{
    width_kind k = ((float_state *)st)->kind;
    size_t cnt = (size_t)kvq_shape_numel(&dst->shape);
    KVQ_FAIL_IF(n != cnt * elem_bytes(k), KVQ_ERR_CORRUPT, "float codec: payload is %zu bytes, expected %zu",
                n, cnt * elem_bytes(k));
    float_rows(k, src, 0, cnt, dst->data);
    return KVQ_OK;
}

static kvq_err float_decode_rows(void *st, const void *src, size_t n, const kvq_shape *s, int64_t r0,
                                 int64_t r1, float *out)
{
    width_kind k = ((float_state *)st)->kind;
    size_t cols = (size_t)kvq_shape_cols(s), cnt = (size_t)kvq_shape_numel(s);
    KVQ_FAIL_IF(n != cnt * elem_bytes(k), KVQ_ERR_CORRUPT, "float codec: payload is %zu bytes, expected %zu",
                n, cnt * elem_bytes(k));
    float_rows(k, src, (size_t)r0 * cols, (size_t)(r1 - r0) * cols, out);
    return KVQ_OK;
}

#define FLOAT_DOMAINS (KVQ_DOMAIN_WEIGHT | KVQ_DOMAIN_ACT | KVQ_DOMAIN_KV | KVQ_DOMAIN_SSM)

const kvq_codec kvq_codec_f32 = {
    .abi = KVQ_CODEC_ABI, .name = "f32", .id = 1, .domain = FLOAT_DOMAINS,
    .flags = KVQ_FLAG_LOSSLESS | KVQ_FLAG_NONFINITE_OK, .state_size = sizeof(float_state),
    .max_rel_err = 0, .summary = "IEEE binary32, stored as is (lossless reference)",
    .init = init_f32, .bound = float_bound, .encode = float_encode, .decode = float_decode,
    .decode_rows = float_decode_rows,
};

const kvq_codec kvq_codec_f16 = {
    .abi = KVQ_CODEC_ABI, .name = "f16", .id = 2, .domain = FLOAT_DOMAINS,
    .flags = KVQ_FLAG_NONFINITE_OK, .state_size = sizeof(float_state),
    .max_rel_err = F16_REL_ERR, .summary = "IEEE binary16, round to nearest even (ggml F16)",
    .init = init_f16, .bound = float_bound, .encode = float_encode, .decode = float_decode,
    .decode_rows = float_decode_rows,
};

const kvq_codec kvq_codec_bf16 = {
    .abi = KVQ_CODEC_ABI, .name = "bf16", .id = 3, .domain = FLOAT_DOMAINS,
    .flags = KVQ_FLAG_NONFINITE_OK, .state_size = sizeof(float_state),
    .max_rel_err = BF16_REL_ERR, .summary = "bfloat16, round to nearest even (ggml BF16)",
    .init = init_bf16, .bound = float_bound, .encode = float_encode, .decode = float_decode,
    .decode_rows = float_decode_rows,
};
