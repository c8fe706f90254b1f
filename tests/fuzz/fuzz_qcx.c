/*
 * fuzz_qcx.c — libFuzzer harness for the Quasicryth decoder (issue 8).
 *
 * Any input is fed to kvq_qcx_decompress (which must return an error or
 * the exact bytes, never crash, hang or read out of bounds); inputs that
 * decode are compressed again and must round-trip.  Short inputs are also
 * compressed directly as text, so the encoder sees fuzzed text too.
 */
#include "kvq.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define OUT_CAP   (1u << 22)  /* decoded bytes accepted (4 MiB)  */
#define TEXT_MAX  4096u       /* inputs also compressed as text   */

static void round_trip(const uint8_t *p, size_t n)
{
    size_t cap = kvq_qcx_compress_bound(n), cn = 0, dn = 0;
    uint8_t *c = malloc(cap), *d = malloc(n ? n : 1);
    if (!c || !d) abort();
    kvq_qcx_params prm = kvq_qcx_params_default();
    prm.level = 1;
    if (kvq_qcx_compress(p, n, c, cap, &cn, &prm, NULL) != KVQ_OK) abort();
    if (kvq_qcx_decompress(c, cn, d, n, &dn, 1) != KVQ_OK) abort();
    if (dn != n || (n && memcmp(d, p, n) != 0)) abort();
    free(c);
    free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* one output buffer for the whole run: a fresh 4 MiB allocation per
     * input (poisoned and unpoisoned by ASan) cost more than decoding */
    static uint8_t *out;
    if (!out && !(out = malloc(OUT_CAP))) return 0;
    size_t n = 0;
    if (kvq_qcx_decompress(data, size, out, OUT_CAP, &n, 1) == KVQ_OK) round_trip(out, n);
    if (size <= TEXT_MAX) round_trip(data, size);
    return 0;
}
