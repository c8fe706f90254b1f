/*
 * fuzz_ckpt_safetensors.c — libFuzzer harness for the safetensors reader
 * (header length, strict JSON, tiling of the buffer, dtypes, kvq.*
 * hyperparameters in __metadata__; no config.json is consulted), and for
 * the JSON parser on its own; see fuzz_ckpt_common.h.
 * Seeds: tests/fuzz/seeds/fuzz_ckpt_safetensors/.
 */
#include "fuzz_ckpt_common.h"
#include "json.h"

static kvq_err read_st(const kvq_src *s, kvq_model *m) { return kvq_ckpt_safetensors_read(s, NULL, m); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The bytes after the 8-byte length as a JSON document. */
    if (size > 8) {
        kvq_json *j = NULL;
        if (kvq_json_parse((const char *)data + 8, size - 8, "fuzz", &j) == KVQ_OK && !j) __builtin_trap();
        kvq_json_free(j);
    }
    return fuzz_reader_run(data, size, read_st);
}
