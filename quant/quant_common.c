/*
 * quant_common.c — the out-of-line parts of quant_common.h: packing whole
 * arrays of b-bit codes (quant-methods.md §0).  The per-element helpers live
 * in the header so that constant-length callers vectorise.
 */
#include "quant/quant_common.h"

#include <assert.h>
#include <math.h>

/* Eight codes of b bits fill exactly b bytes, so whole octets are packed
 * through one 64-bit word (no per-code branches); the tail goes through the
 * bit writer.  Same stream as kvq_bitw_put, code for code. */
#define OCTET 8

void kvq_bits_pack(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst)
{
    assert(bits >= KVQ_CODE_BITS_MIN && bits <= KVQ_CODE_BITS_MAX);
    size_t i = 0;
    for (; i + OCTET <= n; i += OCTET, dst += bits) {
        uint64_t acc = 0;
        for (unsigned k = 0; k < OCTET; k++) acc |= (uint64_t)codes[i + k] << (k * bits);
        for (unsigned k = 0; k < bits; k++) dst[k] = (uint8_t)(acc >> (8 * k));
    }
    kvq_bitw w = kvq_bitw_start(dst);
    for (; i < n; i++) kvq_bitw_put(&w, codes[i], bits);
    kvq_bitw_flush(&w);
}

void kvq_bits_unpack(const uint8_t *src, size_t n, unsigned bits, uint8_t *codes)
{
    assert(bits >= KVQ_CODE_BITS_MIN && bits <= KVQ_CODE_BITS_MAX);
    const uint64_t mask = (1u << bits) - 1;
    size_t i = 0;
    for (; i + OCTET <= n; i += OCTET, src += bits) {
        uint64_t acc = 0;
        for (unsigned k = 0; k < bits; k++) acc |= (uint64_t)src[k] << (8 * k);
        for (unsigned k = 0; k < OCTET; k++) codes[i + k] = (uint8_t)((acc >> (k * bits)) & mask);
    }
    kvq_bitr r = kvq_bitr_start(src);
    for (; i < n; i++) codes[i] = (uint8_t)kvq_bitr_get(&r, bits);
}

void kvq_fwht(float *x, int64_t n)
{
    assert(kvq_is_pow2(n));
    for (int64_t h = 1; h < n; h *= 2)
        for (int64_t i = 0; i < n; i += 2 * h)
            for (int64_t j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    float norm = 1.0f / sqrtf((float)n);
    for (int64_t i = 0; i < n; i++) x[i] *= norm;
}
