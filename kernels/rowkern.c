/*
 * rowkern.c — which codecs have row kernels (kernels/rowkern.h), and the
 * one entry the decoder calls.  A codec adds one line to BINDERS.
 */
#include "kernels/rowkern.h"
#include "kernels/kernels.h"
#include "kvq_internal.h"
#include "quant/codecs.h"

#include <string.h>

typedef struct {
    const kvq_codec    *codec;
    kvq_rowkern_bind_fn bind;
} rowkern_entry;

static const rowkern_entry BINDERS[] = {
    {&kvq_codec_q8_0, kvq_ggml_rowkern},
    {&kvq_codec_q4_0, kvq_ggml_rowkern},
    {&kvq_codec_rtn, kvq_rtn_rowkern},
    {&kvq_codec_bfp, kvq_bfp_rowkern},
    {&kvq_codec_mxint8, kvq_bfp_rowkern},
    {&kvq_codec_mxfp4, kvq_mxfp4_rowkern},
    {&kvq_codec_nvfp4, kvq_nvfp4_rowkern},
    {&kvq_codec_fp, kvq_fp_rowkern},
    {&kvq_codec_nupes, kvq_nupes_rowkern},
};

static kvq_rowkern_bind_fn find(const kvq_codec *c)
{
    for (size_t i = 0; i < sizeof BINDERS / sizeof BINDERS[0]; i++)
        if (BINDERS[i].codec == c) return BINDERS[i].bind;
    return NULL;
}

int kvq_rowkern_has(const kvq_codec *c) { return c && find(c) != NULL; }

kvq_err kvq_rowkern_bind(kvq_ctx *ctx, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k)
{
    KVQ_FAIL_IF(!ctx || !s || !k || (!payload && n), KVQ_ERR_ARG, "kvq_rowkern_bind: NULL argument");
    const kvq_codec *c = kvq_ctx_codec(ctx);
    kvq_rowkern_bind_fn bind = find(c);
    KVQ_FAIL_IF(!bind, KVQ_ERR_UNSUPPORTED, "%s: no row kernel", c->name);
    KVQ_TRY(kvq_shape_check(s));
    memset(k, 0, sizeof *k);
    k->rows = kvq_shape_rows(s);
    k->cols = kvq_shape_cols(s);
    return bind(kvq_ctx_state(ctx), payload, n, s, k);
}

/* ---- plain f16 weights: the kernel table's dots_f16 slot ---------------- */
static void f16_row_dots(const kvq_rowkern *k, int64_t r0, int64_t r1, const float *x, float *out)
{
    kvq_kern_dots_f16_fn dots = (kvq_kern_dots_f16_fn)k->aux;
    dots(k->p[0] + (size_t)r0 * k->stride[0], (size_t)k->cols, (size_t)(r1 - r0), x, (size_t)k->cols, out);
}

static float f16_row_dot(const kvq_rowkern *k, int64_t r, const float *x)
{
    float v;
    f16_row_dots(k, r, r + 1, x, &v);
    return v;
}

kvq_err kvq_rowkern_bind_f16(const void *data, size_t n, const kvq_shape *s, kvq_rowkern *k)
{
    KVQ_FAIL_IF(!s || !k || (!data && n), KVQ_ERR_ARG, "kvq_rowkern_bind_f16: NULL argument");
    KVQ_TRY(kvq_shape_check(s));
    size_t need = (size_t)kvq_shape_numel(s) * sizeof(uint16_t);
    KVQ_FAIL_IF(n != need, KVQ_ERR_CORRUPT, "f16 weights: %zu bytes, shape needs %zu", n, need);
    const kvq_kernels *kt = kvq_kernels_get();
    memset(k, 0, sizeof *k);
    k->rows = kvq_shape_rows(s);
    k->cols = kvq_shape_cols(s);
    k->dot = f16_row_dot;
    k->dots = f16_row_dots;
    k->fast = kt->fast_dot;
    k->p[0] = data;
    k->stride[0] = (size_t)k->cols * sizeof(uint16_t);
    k->aux = (void (*)(void))kt->dots_f16;
    return KVQ_OK;
}
