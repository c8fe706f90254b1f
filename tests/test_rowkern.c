/*
 * test_rowkern.c — row kernels (kernels/rowkern.h): for every codec that
 * binds one, and for the extra parameter sets in SPECS, the product of a
 * bound row with a vector equals decode_rows + a double-precision dot
 * within ROWKERN_TOL · Σ|terms|; binding refuses inconsistent payloads.
 * A codec that adds a binder is tested here at its defaults without
 * further edits; parameter sets worth covering go into SPECS.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/rowkern.h"
#include "kvq.h"

#define ROWS        37   /* odd, so no codec can rely on pairs of rows   */
#define COLS        256  /* a multiple of every block and group size     */
#define ROWKERN_TOL 1e-5 /* relative to Σ|decode(row)_i · x_i|           */
#define OUTLIER_EVERY 61 /* one value in 61 is 20× larger                */

/* Parameter sets beyond each codec's defaults (codecs append theirs). */
static const char *const SPECS[] = {
    "q8_0",
    "q4_0",
    "rtn:bits=2",
    "rtn:bits=3,mode=asym",
    "rtn:bits=4,gran=row",
    "rtn:bits=5,group=96",
    "rtn:bits=8,mode=asym,group=64",
    "rtn:bits=4,gran=tensor",
    "rtn:bits=6,mode=asym,gran=row",
    "bfp",
    "bfp:mant=8,block=16",
    "bfp:mant=3,block=24,round=rha",
    "bfp:mant=6,block=128",
    "mxint8",
    "nvfp4:tscale=0",
    "fp:search=none",
    "fp:nib=adjacent,search=none",
    "fp:fmt=e4m3,search=none",
    "fp:fmt=e2m5,gran=group,group=64",
    "fp:fmt=e3m0,gran=group,search=none",
    "nupes:a=0.6,driven=0",
    "nupes:a=0.8,bits=8,driven=0",
    "nupes:bits=8,group=64,driven=0",
};

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float unif(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)(rng_state >> 40) / 16777216.0f * 2.0f - 1.0f;
}

static void fill(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) x[i] = unif() * scale * (i % OUTLIER_EVERY == 7 ? 20.0f : 1.0f);
}

/* The optional multi-row product over every sub-range [r0, r1) of a few
 * shapes equals dot() per row within ROWKERN_TOL (of |dot| + its own
 * rounding: both sum the same terms). */
static void check_dots(const kvq_rowkern *k, const float *x, const char *label)
{
    static const int ranges[][2] = {{0, ROWS}, {0, 1}, {3, 8}, {5, ROWS - 1}, {ROWS - 4, ROWS}};
    float out[ROWS];
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        int r0 = ranges[i][0], r1 = ranges[i][1];
        k->dots(k, r0, r1, x, out);
        for (int r = r0; r < r1; r++) {
            double want = k->dot(k, r, x), got = out[r - r0];
            if (fabs(got - want) > ROWKERN_TOL * (fabs(want) + 1.0))
                fail_msg("%s: rows [%d, %d): row %d dots %.9g, dot %.9g", label, r0, r1, r, got, want);
        }
    }
}

/* Encode a ROWS×COLS matrix with ctx, bind, compare every row's product.
 * Returns 0 when the codec/parameters have no row kernel (skipped). */
static int check_ctx(kvq_ctx *ctx, const char *label)
{
    const kvq_codec *c = kvq_ctx_codec(ctx);
    int64_t dims[2] = {ROWS, COLS};
    float *w = malloc(sizeof(float) * ROWS * COLS), *dec = malloc(sizeof(float) * ROWS * COLS);
    float *x = malloc(sizeof(float) * COLS);
    assert_non_null(w);
    assert_non_null(dec);
    assert_non_null(x);
    fill(w, (size_t)ROWS * COLS, 0.05f);
    fill(x, COLS, 1.0f);
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, w, 2, dims);
    if (c->flags & KVQ_FLAG_NEEDS_CALIB) assert_int_equal(kvq_ctx_calibrate(ctx, &t), KVQ_OK);
    size_t cap = kvq_ctx_payload_bound(ctx, &t.shape), n = 0;
    uint8_t *p = malloc(cap);
    assert_non_null(p);
    kvq_err e = kvq_ctx_encode_payload(ctx, &t, p, cap, &n);
    if (e) fail_msg("%s: encode: %s", label, kvq_last_error_detail());
    kvq_rowkern k;
    e = kvq_rowkern_bind(ctx, p, n, &t.shape, &k);
    int bound = e == KVQ_OK;
    if (e && e != KVQ_ERR_UNSUPPORTED) fail_msg("%s: bind: %s", label, kvq_last_error_detail());
    if (bound) {
        assert_int_equal(kvq_ctx_decode_rows(ctx, p, n, &t.shape, 0, ROWS, dec), KVQ_OK);
        assert_int_equal(k.rows, ROWS);
        assert_int_equal(k.cols, COLS);
        for (int r = 0; r < ROWS; r++) {
            double ref = 0.0, mag = 0.0;
            for (int i = 0; i < COLS; i++) {
                double term = (double)dec[r * COLS + i] * (double)x[i];
                ref += term;
                mag += fabs(term);
            }
            double got = k.dot(&k, r, x);
            if (fabs(got - ref) > ROWKERN_TOL * mag + 1e-30)
                fail_msg("%s: row %d: dot %.9g, decode_rows %.9g (tolerance %.3g)", label, r, got, ref,
                         ROWKERN_TOL * mag);
        }
        if (k.dots) check_dots(&k, x, label);
        /* One byte short is refused, never read past. */
        if (n > 0) assert_int_equal(kvq_rowkern_bind(ctx, p, n - 1, &t.shape, &k), KVQ_ERR_CORRUPT);
    }
    free(p);
    free(x);
    free(dec);
    free(w);
    return bound;
}

static void test_every_binder_at_defaults(void **state)
{
    (void)state;
    int tested = 0;
    for (size_t i = 0; kvq_codec_at(i); i++) {
        const kvq_codec *c = kvq_codec_at(i);
        if (!kvq_rowkern_has(c)) continue;
        kvq_ctx *ctx = NULL;
        assert_int_equal(kvq_ctx_create(c->name, &ctx), KVQ_OK);
        tested += check_ctx(ctx, c->name);
        kvq_ctx_free(ctx);
    }
    assert_true(tested >= 2); /* q8_0 and q4_0 at least */
}

static void test_specs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0]; i++) {
        kvq_ctx *ctx = NULL;
        if (kvq_ctx_create(SPECS[i], &ctx)) fail_msg("%s: %s", SPECS[i], kvq_last_error_detail());
        if (!check_ctx(ctx, SPECS[i])) fail_msg("%s: no row kernel bound", SPECS[i]);
        kvq_ctx_free(ctx);
    }
}

/* Plain f16 weights (no codec): F16_COLS leaves a tail after whole
 * 8-value vectors; every row and the multi-row product against a double
 * sum of the widened values. */
#define F16_COLS 172 /* stories260K's ffn_down rows: 21 vectors + 4 */

static void test_f16_plain(void **state)
{
    (void)state;
    int64_t dims[2] = {ROWS, F16_COLS};
    kvq_shape s = kvq_shape_make(2, dims);
    float *w = malloc(sizeof(float) * ROWS * F16_COLS), x[F16_COLS], out[ROWS];
    uint16_t *h = malloc(sizeof(uint16_t) * ROWS * F16_COLS);
    assert_true(w && h);
    fill(w, (size_t)ROWS * F16_COLS, 0.05f);
    fill(x, F16_COLS, 1.0f);
    kvq_f32_to_f16_row(w, h, (size_t)ROWS * F16_COLS);
    kvq_rowkern k;
    size_t n = sizeof(uint16_t) * ROWS * F16_COLS;
    assert_int_equal(kvq_rowkern_bind_f16(h, n, &s, &k), KVQ_OK);
    assert_non_null(k.dots);
    k.dots(&k, 0, ROWS, x, out);
    for (int r = 0; r < ROWS; r++) {
        double ref = 0.0, mag = 0.0;
        for (int i = 0; i < F16_COLS; i++) {
            double term = (double)kvq_f16_to_f32(h[r * F16_COLS + i]) * (double)x[i];
            ref += term;
            mag += fabs(term);
        }
        double got = k.dot(&k, r, x);
        if (fabs(got - ref) > ROWKERN_TOL * mag || fabs((double)out[r] - ref) > ROWKERN_TOL * mag)
            fail_msg("f16 row %d: dot %.9g, dots %.9g, reference %.9g", r, got, (double)out[r], ref);
    }
    check_dots(&k, x, "f16");
    assert_int_equal(kvq_rowkern_bind_f16(h, n - 2, &s, &k), KVQ_ERR_CORRUPT);
    assert_int_equal(kvq_rowkern_bind_f16(NULL, n, &s, &k), KVQ_ERR_ARG);
    free(h);
    free(w);
}

static void test_refusals(void **state)
{
    (void)state;
    kvq_ctx *ctx = NULL;
    assert_int_equal(kvq_ctx_create("f16", &ctx), KVQ_OK);
    assert_false(kvq_rowkern_has(kvq_ctx_codec(ctx)));
    uint8_t buf[64] = {0};
    int64_t dims[2] = {1, 32};
    kvq_shape s = kvq_shape_make(2, dims);
    kvq_rowkern k;
    assert_int_equal(kvq_rowkern_bind(ctx, buf, sizeof buf, &s, &k), KVQ_ERR_UNSUPPORTED);
    kvq_ctx_free(ctx);

    /* q4_0: one block with a NaN scale (f16 0x7E00) is corrupt. */
    assert_int_equal(kvq_ctx_create("q4_0", &ctx), KVQ_OK);
    buf[0] = 0x00;
    buf[1] = 0x7E;
    assert_int_equal(kvq_rowkern_bind(ctx, buf, 18, &s, &k), KVQ_ERR_CORRUPT);
    buf[1] = 0x3C; /* 1.0 */
    assert_int_equal(kvq_rowkern_bind(ctx, buf, 18, &s, &k), KVQ_OK);
    assert_int_equal(kvq_rowkern_bind(ctx, NULL, 18, &s, &k), KVQ_ERR_ARG);
    kvq_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_binder_at_defaults),
        cmocka_unit_test(test_specs),
        cmocka_unit_test(test_f16_plain),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
