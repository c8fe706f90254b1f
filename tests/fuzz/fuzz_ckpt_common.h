/*
 * fuzz_ckpt_common.h — the body shared by the checkpoint-reader harnesses
 * fuzz_ckpt_{llama2c,gguf,safetensors,kvq}.c: feed the input to one reader
 * (internal entry point, no format sniffing, so each harness stays on its
 * format), and when it is accepted read every weight back as f32.  The
 * reader must return an error or a model whose every weight decodes; a
 * crash, a sanitizer report or a broken property (__builtin_trap) is a
 * finding.  The input is copied to an exact-size buffer so ASan sees any
 * read past its end.
 */
#ifndef FUZZ_CKPT_COMMON_H
#define FUZZ_CKPT_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

#define FUZZ_MAX_ELEMS ((int64_t)1 << 22) /* largest weight the harness decodes */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef kvq_err (*fuzz_reader)(const kvq_src *s, kvq_model *m);

static void fuzz_read_weights(const kvq_model *m)
{
    for (size_t i = 0; i < kvq_model_n_weights(m); i++) {
        const kvq_weight *w = kvq_model_weight_at(m, i);
        int64_t n = kvq_shape_numel(&w->shape);
        if (n > FUZZ_MAX_ELEMS) continue;
        float *f = malloc((size_t)n * sizeof *f + 1);
        if (!f) continue;
        kvq_err e = kvq_weight_rows(w, 0, kvq_shape_rows(&w->shape), f);
        /* Plain weights were size-checked at load: reading cannot fail. */
        if (e && !w->codec) __builtin_trap();
        free(f);
    }
}

static int fuzz_reader_run(const uint8_t *data, size_t size, fuzz_reader rd)
{
    uint8_t *copy = malloc(size ? size : 1);
    kvq_model *m = NULL;
    if (!copy || kvq_model_new(KVQ_FORMAT_LLAMA2C, &m) != KVQ_OK) {
        free(copy);
        return 0;
    }
    memcpy(copy, data, size);
    kvq_src s = {copy, size, "fuzz"};
    kvq_err e = rd(&s, m);
    if (e == KVQ_OK) fuzz_read_weights(m);
    else if (!kvq_last_error_detail()[0]) __builtin_trap(); /* every error says why */
    kvq_model_free(m);
    free(copy);
    return 0;
}

#endif /* FUZZ_CKPT_COMMON_H */
