/*
 * fuzz_blob.c — libFuzzer harness for the self-describing blob decoder and
 * for every registry codec's encode → decode round trip (STYLE.md "Tests":
 * fuzz targets that check round trips, as zstd's do).
 *
 * Part 1: the input as a blob.  kvq_blob_info_read() and kvq_blob_decode()
 *         must return, never crash; shapes above FUZZ_MAX_ELEMS are not
 *         decoded (bounded output allocation).
 * Part 2: the input as little-endian floats after a selector byte, encoded
 *         by the selected registry codec at its defaults, then decoded.  An
 *         encode may refuse (NaN, scale range, shape), but a blob it wrote
 *         must decode; lossless codecs must be bit-exact; codecs that take
 *         finite values only must give finite values back; decode_rows must
 *         equal the full decode.
 * A broken property calls __builtin_trap(), which libFuzzer reports.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "kvq.h"

#define FUZZ_MAX_ELEMS ((int64_t)1 << 22) /* largest shape the harness decodes */
#define FUZZ_COLS      32                 /* row width of the round-trip tensor */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) __builtin_trap();                                          \
    } while (0)

static void fuzz_decode(const uint8_t *data, size_t size)
{
    kvq_blob_info bi;
    if (kvq_blob_info_read(data, size, &bi) != KVQ_OK) return;
    int64_t n = kvq_shape_numel(&bi.shape);
    if (n > FUZZ_MAX_ELEMS) return;
    float *out = malloc(n ? (size_t)n * sizeof *out : 1);
    if (!out) return;
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, out, bi.shape.ndim, bi.shape.dim);
    (void)kvq_blob_decode(data, size, &t);
    free(out);
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static void check_round_trip(const kvq_codec *c, const float *x, int64_t rows, int64_t cols)
{
    kvq_ctx *ctx;
    if (kvq_ctx_create_params(c, NULL, &ctx) != KVQ_OK) return;
    int64_t d[2] = {rows, cols};
    size_t cnt = (size_t)(rows * cols), n = 0;
    kvq_tensor src = kvq_tensor_view(KVQ_DTYPE_F32, (void *)x, 2, d);
    size_t cap = kvq_ctx_bound(ctx, &src.shape);
    uint8_t *blob = malloc(cap ? cap : 1);
    float *y = malloc(cnt * sizeof *y), *r = malloc(cnt * sizeof *r);
    if (blob && y && r && !(c->flags & KVQ_FLAG_NEEDS_CALIB) &&
        kvq_ctx_encode(ctx, &src, blob, cap, &n) == KVQ_OK) {
        CHECK(n <= cap);
        kvq_tensor out = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
        CHECK(kvq_blob_decode(blob, n, &out) == KVQ_OK);
        if (c->flags & KVQ_FLAG_LOSSLESS) CHECK(memcmp(x, y, cnt * sizeof *y) == 0);
        if (!(c->flags & KVQ_FLAG_NONFINITE_OK)) CHECK(all_finite(y, cnt));
        kvq_blob_info bi;
        CHECK(kvq_blob_info_read(blob, n, &bi) == KVQ_OK);
        CHECK(kvq_ctx_decode_rows(ctx, blob + bi.header_size, bi.payload_size, &bi.shape, 0, rows, r) == KVQ_OK);
        CHECK(memcmp(r, y, cnt * sizeof *y) == 0);
    }
    free(blob);
    free(y);
    free(r);
    kvq_ctx_free(ctx);
}

static void fuzz_round_trip(const uint8_t *data, size_t size)
{
    if (size < 1 + 4) return;
    const kvq_codec *c = kvq_codec_at(data[0] % kvq_codec_count());
    if (c->domain & KVQ_DOMAIN_TEXT) return;
    size_t nf = (size - 1) / 4;
    int64_t cols = nf >= FUZZ_COLS ? FUZZ_COLS : (int64_t)nf, rows = (int64_t)nf / cols;
    float *x = malloc((size_t)(rows * cols) * sizeof *x);
    if (!x) return;
    memcpy(x, data + 1, (size_t)(rows * cols) * sizeof *x); /* host order = LE on our targets */
    check_round_trip(c, x, rows, cols);
    free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_decode(data, size);
    fuzz_round_trip(data, size);
    return 0;
}
