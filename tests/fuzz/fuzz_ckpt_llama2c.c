/*
 * fuzz_ckpt_llama2c.c — libFuzzer harness for the reader of llama2.c v0/v1 checkpoints (exact-size rule, header checks);
 * see fuzz_ckpt_common.h.  Seeds: tests/fuzz/seeds/fuzz_ckpt_llama2c/.
 */
#include "fuzz_ckpt_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_reader_run(data, size, kvq_ckpt_llama2c_read);
}
