/*
 * registry.c — the static list of codecs.  The CLI, reports and the
 * conformance test iterate it, so adding a codec means one file and one
 * line here.  On-disk ids are listed in FORMAT.md §3 and never reused.
 */
#include "kvq_internal.h"
#include "quant/codecs.h"

static const kvq_codec *const codecs[] = {
    &kvq_codec_f32,
    &kvq_codec_f16,
    &kvq_codec_bf16,
    &kvq_codec_rtn,
    &kvq_codec_q8_0,
    &kvq_codec_q4_0,
    &kvq_codec_fp,
    &kvq_codec_fpa,
    &kvq_codec_mxfp4,
    &kvq_codec_nvfp4,
    &kvq_codec_nupes,
    &kvq_codec_bfp,
    &kvq_codec_mxint8,
    &kvq_codec_kivi,
    &kvq_codec_gear,
    &kvq_codec_plt,
    &kvq_codec_pltq,
    &kvq_codec_quamba2,
    &kvq_codec_gptq,
    &kvq_codec_quamba2_state,
};

#define N_CODECS (sizeof codecs / sizeof codecs[0])

size_t kvq_codec_count(void) { return N_CODECS; }

const kvq_codec *kvq_codec_at(size_t i) { return i < N_CODECS ? codecs[i] : NULL; }

const kvq_codec *kvq_codec_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < N_CODECS; i++)
        if (strcmp(codecs[i]->name, name) == 0) return codecs[i];
    return NULL;
}

const kvq_codec *kvq_codec_by_id(unsigned id)
{
    for (size_t i = 0; i < N_CODECS; i++)
        if (codecs[i]->id == id) return codecs[i];
    return NULL;
}
