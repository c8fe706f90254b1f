/*
 * fuzz_ckpt_gguf.c — libFuzzer harness for the reader of GGUF v1-v3 (metadata, tensor infos, alignment, tokenizer image);
 * see fuzz_ckpt_common.h.  Seeds: tests/fuzz/seeds/fuzz_ckpt_gguf/.
 */
#include "fuzz_ckpt_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_reader_run(data, size, kvq_ckpt_gguf_read);
}
