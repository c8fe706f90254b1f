/*
 * fuzz_ckpt_kvq.c — libFuzzer harness for the reader of .kvq containers (header/section CRCs, directory, codec parameters);
 * see fuzz_ckpt_common.h.  Seeds: tests/fuzz/seeds/fuzz_ckpt_kvq/.
 */
#include "fuzz_ckpt_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_reader_run(data, size, kvq_ckpt_kvq_read);
}
