/*
 * fuzz_plt.c — libFuzzer harness for the PLT page codecs (compress/plt.c):
 * payload parsing that the blob CRC would otherwise keep from the codec.
 *
 * Byte 0 selects a shape (tokens 1..16, channels 1..80) and a target:
 *   0: the rest as a plt words page (kvq_plt_words_decode) — must return;
 *   1: the rest as 16-bit words, encoded by plt (both backends, both word
 *      types) — must decode bit for bit;
 *   2: the rest as a pltq payload (both axes) through kvq_ctx_decode_payload
 *      — must return, and any decoded value must be finite;
 *   3: the rest as f32 values (finite ones kept, others zeroed), encoded by
 *      pltq and decoded — within the declared |x − x̂| bound per step group
 *      is checked by the unit tests; here: decodes and stays finite.
 * A broken property calls __builtin_trap(), which libFuzzer reports.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress/plt_internal.h"

#define FUZZ_MAX_TOKENS   16
#define FUZZ_MAX_CHANNELS 80  /* crosses one 64-channel pltq block */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) __builtin_trap();                                          \
    } while (0)

static void words_roundtrip(const uint8_t *p, size_t n, int64_t T, int64_t C)
{
    size_t N = (size_t)(T * C);
    uint16_t *w = calloc(N, sizeof *w), *d = calloc(N, sizeof *d);
    if (!w || !d) goto out;
    for (size_t i = 0; i < N && 2 * i + 1 < n; i++) w[i] = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
    for (int k = 0; k < 2; k++)
        for (int be = 0; be < 2; be++) {
            kvq_buf b = {0};
            CHECK(kvq_plt_words_encode(w, T, C, (plt_word)k, (plt_backend)be, 1, &b) == KVQ_OK);
            CHECK(kvq_plt_words_decode(b.p, b.n, T, C, d) == KVQ_OK);
            CHECK(!memcmp(w, d, N * sizeof *w));
            kvq_buf_free(&b);
        }
out:
    free(w), free(d);
}

static void pltq_payload(const uint8_t *p, size_t n, int64_t T, int64_t C, int encode_first)
{
    static const char *const specs[] = {"pltq:bits=3", "pltq:bits=5,axis=channel"};
    size_t N = (size_t)(T * C);
    float *x = calloc(N, sizeof *x), *y = calloc(N, sizeof *y);
    int64_t dims[2] = {T, C};
    for (int s = 0; s < 2 && x && y; s++) {
        kvq_ctx *ctx = NULL;
        if (kvq_ctx_create(specs[s], &ctx) != KVQ_OK) continue;
        kvq_tensor out = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, dims);
        if (!encode_first) {
            if (kvq_ctx_decode_payload(ctx, p, n, &out) == KVQ_OK)
                for (size_t i = 0; i < N; i++) CHECK(isfinite(y[i]));
        } else {
            for (size_t i = 0; i < N && 4 * i + 3 < n; i++) {
                float v;
                memcpy(&v, p + 4 * i, 4);
                x[i] = isfinite(v) && fabsf(v) < 1e30f ? v : 0.0f;
            }
            kvq_tensor in = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, dims);
            size_t cap = kvq_ctx_payload_bound(ctx, &in.shape), m = 0;
            uint8_t *buf = malloc(cap);
            if (buf && kvq_ctx_encode_payload(ctx, &in, buf, cap, &m) == KVQ_OK) {
                CHECK(kvq_ctx_decode_payload(ctx, buf, m, &out) == KVQ_OK);
                for (size_t i = 0; i < N; i++) CHECK(isfinite(y[i]));
            }
            free(buf);
        }
        kvq_ctx_free(ctx);
    }
    free(x), free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int64_t T = 1 + data[0] % FUZZ_MAX_TOKENS, C = 1 + data[1] % FUZZ_MAX_CHANNELS;
    int target = (data[0] >> 4) & 3;
    const uint8_t *p = data + 2;
    size_t n = size - 2;
    if (target == 0) {
        uint16_t *w = malloc((size_t)(T * C) * sizeof *w);
        if (w) (void)kvq_plt_words_decode(p, n, T, C, w);
        free(w);
    } else if (target == 1) {
        words_roundtrip(p, n, T, C);
    } else {
        pltq_payload(p, n, T, C, target == 3);
    }
    return 0;
}
