/*
 * quant_common.c — the out-of-line parts of quant_common.h: packing whole
 * arrays of b-bit codes (quant-methods.md §0).  The per-element helpers live
 * in the header so that constant-length callers vectorise.
 */
#include "quant/quant_common.h"

#include <assert.h>

void kvq_bits_pack(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst)
{
    assert(bits >= KVQ_CODE_BITS_MIN && bits <= KVQ_CODE_BITS_MAX);
    kvq_bitw w = kvq_bitw_start(dst);
    for (size_t i = 0; i < n; i++) kvq_bitw_put(&w, codes[i], bits);
    kvq_bitw_flush(&w);
}

void kvq_bits_unpack(const uint8_t *src, size_t n, unsigned bits, uint8_t *codes)
{
    assert(bits >= KVQ_CODE_BITS_MIN && bits <= KVQ_CODE_BITS_MAX);
    kvq_bitr r = kvq_bitr_start(src);
    for (size_t i = 0; i < n; i++) codes[i] = (uint8_t)kvq_bitr_get(&r, bits);
}
