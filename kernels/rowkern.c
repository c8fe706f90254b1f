/*
 * rowkern.c — which codecs have row kernels (kernels/rowkern.h), and the
 * one entry the decoder calls.  A codec adds one line to BINDERS.
 */
#include "kernels/rowkern.h"
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
