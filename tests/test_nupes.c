/*
 * test_nupes.c — the nupes codec against quant-methods.md §2.6: a = 1 is
 * symmetric RTN (codes RNE(Qm·w/M), values M·q/Qm); the a = 0.5 level set
 * is {0, ±1, ±4, ..., ±49}·M/49; codes odd, monotone, |ŵ| ≤ M, requantising
 * ŵ returns the same codes; the integer LUT path equals the float path
 * (exactly when 1/a ∈ ℕ); on Gaussian and Laplace data the data-free a* < 1
 * and golden section matches a dense grid; the data-driven mode never
 * raises the layer-output error; w = 0, M = 0 and tiny a are safe; with a
 * fixed exponent the threshold-counting encoder gives kvq_nupes_code's codes
 * (5 to 8 bits through the bucket table too, over exponents whose table
 * spans few or many binades or is not built at all).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "kvq.h"
#include "quant/nupes.h"
#include "quant/quant_common.h"

#define QM4 7

static uint64_t rng = 0xC0FFEE1234567ull;
static double urand(void) /* (0, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static float gauss(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }
static float laplace(void)
{
    double u = urand() - 0.5;
    return (float)(u < 0 ? log(1 + 2 * u) : -log(1 - 2 * u));
}

/* Encodes x [rows][cols] with spec; decodes into y; returns the blob. */
static uint8_t *roundtrip(const char *spec, const float *x, int64_t rows, int64_t cols, float *y, const kvq_tensor *cal,
                          size_t *n)
{
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
    if (cal) assert_int_equal(kvq_ctx_calibrate(ctx, cal), KVQ_OK);
    int64_t d[2] = {rows, cols};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, (void *)x, 2, d), o = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    size_t cap = kvq_ctx_bound(ctx, &t.shape);
    uint8_t *b = malloc(cap);
    assert_int_equal(kvq_ctx_encode(ctx, &t, b, cap, n), KVQ_OK);
    assert_int_equal(kvq_blob_decode(b, *n, &o), KVQ_OK);
    kvq_ctx_free(ctx);
    return b;
}

static float stored_a(const uint8_t *blob, size_t n)
{
    kvq_blob_info bi;
    assert_int_equal(kvq_blob_info_read(blob, n, &bi), KVQ_OK);
    float a;
    memcpy(&a, blob + bi.header_size, 4);
    return a;
}

static void test_a1_is_rtn(void **state)
{
    (void)state;
    enum { R = 8, C = 64 };
    float x[R * C], y[R * C];
    for (int i = 0; i < R * C; i++) x[i] = gauss();
    size_t n;
    free(roundtrip("nupes:a=1,driven=0", x, R, C, y, NULL, &n));
    for (int r = 0; r < R; r++)
        for (int g = 0; g < C / 32; g++) {
            float M = 0;
            for (int j = 0; j < 32; j++) M = fmaxf(M, fabsf(x[r * C + g * 32 + j]));
            M = kvq_f16_to_f32(kvq_f32_to_f16(M));
            for (int j = 0; j < 32; j++) {
                float w = x[r * C + g * 32 + j];
                int32_t q = (int32_t)nearbyint(fmin(1.0, fabs(w) / M) * QM4) * (w < 0 ? -1 : 1);
                assert_int_equal(kvq_nupes_code(4, 1.0, w, M), q);
                assert_true(fabsf(y[r * C + g * 32 + j] - M * (float)q / QM4) <= 1e-6f * M);
            }
        }
}

static void test_levels_and_codes(void **state)
{
    (void)state;
    float lvl[KVQ_NUPES_MAX_LEVELS];
    kvq_nupes_lut(4, 0.5, lvl);
    for (int k = 0; k <= QM4; k++) assert_true(fabsf(lvl[k] - (float)(k * k) / 49.0f) <= 1e-7f);
    for (double a = 0.05; a <= 1.0; a += 0.05) {
        int32_t prev = -QM4 - 1;
        kvq_nupes_lut(4, a, lvl);
        for (float w = -1.2f; w <= 1.2f; w += 0.001f) {
            int32_t q = kvq_nupes_code(4, a, w, 1.0f);
            assert_true(q >= prev && q >= -QM4 && q <= QM4);         /* monotone, bounded */
            assert_int_equal(kvq_nupes_code(4, a, -w, 1.0f), -q);    /* odd               */
            float wh = (q < 0 ? -1.0f : 1.0f) * lvl[q < 0 ? -q : q];
            assert_true(fabsf(wh) <= 1.0f && isfinite(wh));          /* |ŵ| ≤ M, no NaN   */
            assert_int_equal(kvq_nupes_code(4, a, wh, 1.0f), q);     /* idempotent        */
            prev = q;
        }
    }
    assert_int_equal(kvq_nupes_code(4, 0.3, 0.0f, 1.0f), 0); /* w = 0 */
    assert_int_equal(kvq_nupes_code(4, 0.3, 0.5f, 0.0f), 0); /* M = 0 */
}

static void test_integer_lut(void **state)
{
    (void)state;
    enum { F = 12, N = 256 };
    int32_t lut[KVQ_NUPES_MAX_LEVELS], q[N], xi[N];
    float lvl[KVQ_NUPES_MAX_LEVELS];
    const double as[3] = {0.5, 1.0 / 3.0, 0.37};
    for (int t = 0; t < 3; t++) {
        double a = as[t], qa = pow(QM4, 1.0 / a);
        kvq_nupes_lut(4, a, lvl);
        kvq_nupes_lut_fixed(4, a, F, lut);
        int exact = fabs(1.0 / a - nearbyint(1.0 / a)) < 1e-9;
        for (int k = 0; k <= QM4; k++) {
            double err = fabs((double)lut[k] / ldexp(qa, F) - (double)lvl[k]);
            assert_true(err <= ldexp(1.0, -F - 1) / qa + 1e-7);
            if (exact) assert_true(lut[k] == (int32_t)llround(pow(k, 1.0 / a)) << F);
        }
        /* integer GEMM row (int activations × LUT-expanded codes) vs float */
        long long acc = 0;
        double ref = 0, exact_ref = 0, M = 0.73;
        for (int j = 0; j < N; j++) {
            q[j] = (int32_t)(urand() * 15) - QM4, xi[j] = (int32_t)(urand() * 255) - 127;
            acc += (long long)xi[j] * (q[j] < 0 ? -lut[-q[j]] : lut[q[j]]);
            ref += xi[j] * M * (q[j] < 0 ? -(double)lvl[-q[j]] : (double)lvl[q[j]]);
            exact_ref += xi[j] * M * (q[j] < 0 ? -1.0 : 1.0) * pow(abs(q[j]), 1.0 / a) / qa;
        }
        double got = (double)acc * M / ldexp(qa, F);
        assert_true(fabs(got - ref) <= N * 127 * M * (ldexp(1.0, -F - 1) / qa + 1e-7));
        if (exact) assert_true(fabs(got - exact_ref) <= 1e-12 * fabs(exact_ref) + 1e-12); /* only double rounding */
    }
}

static double dense_err(const float *x, int n, double a)
{
    float lvl[KVQ_NUPES_MAX_LEVELS];
    kvq_nupes_lut(4, a, lvl);
    double e = 0;
    for (int g = 0; g < n / 32; g++) {
        float M = 0;
        for (int j = 0; j < 32; j++) M = fmaxf(M, fabsf(x[g * 32 + j]));
        M = kvq_f16_to_f32(kvq_f32_to_f16(M));
        for (int j = 0; j < 32; j++) {
            int32_t q = kvq_nupes_code(4, a, x[g * 32 + j], M);
            double v = (q < 0 ? -1.0 : 1.0) * M * lvl[q < 0 ? -q : q], d = x[g * 32 + j] - v;
            e += d * d;
        }
    }
    return e;
}

static void test_datafree_search(void **state)
{
    (void)state;
    enum { R = 32, C = 256 };
    float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C);
    for (int dist = 0; dist < 2; dist++) {
        for (int i = 0; i < R * C; i++) x[i] = dist ? laplace() : gauss();
        size_t n;
        uint8_t *b = roundtrip("nupes:driven=0", x, R, C, y, NULL, &n);
        double a = stored_a(b, n), best = INFINITY, ba = 0;
        free(b);
        for (int i = 0; i <= 800; i++) {
            double e = dense_err(x, R * C, 0.2 + i * 0.001);
            if (e < best) best = e, ba = 0.2 + i * 0.001;
        }
        print_message("[  INFO    ] %s: a* = %.4f (golden), %.4f (dense grid)\n", dist ? "laplace" : "gauss", a, ba);
        /* unimodal on [0.2, 1]: on a 0.05 grid the error falls, then rises */
        int turns = 0;
        double prev = dense_err(x, R * C, 0.2), slope = -1;
        for (double g = 0.25; g <= 1.0001; g += 0.05) {
            double e = dense_err(x, R * C, g), sl = e < prev ? -1 : 1;
            turns += sl != slope;
            slope = sl, prev = e;
        }
        assert_true(turns <= 1);
        assert_true(a < 1.0);
        assert_true(dense_err(x, R * C, a) <= best * (1 + 1e-3));
        assert_true(dense_err(x, R * C, a) < dense_err(x, R * C, 1.0));
    }
    free(x), free(y);
}

/* Σ rows (w − ŵ) XᵀX (w − ŵ)ᵀ */
static double out_err(const float *x, const float *y, const float *X, int R, int C, int T)
{
    double e = 0;
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) {
            double s = 0;
            for (int j = 0; j < C; j++) s += (double)X[t * C + j] * (x[r * C + j] - y[r * C + j]);
            e += s * s;
        }
    return e;
}

static void test_datadriven(void **state)
{
    (void)state;
    enum { R = 16, C = 64, T = 128 };
    float *w = malloc(sizeof(float) * R * C), *X = malloc(sizeof(float) * T * C);
    float *y0 = malloc(sizeof(float) * R * C), *y1 = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) w[i] = gauss();
    for (int i = 0; i < T * C; i++) X[i] = gauss() * (float)(1 + (i % C) % 5); /* uneven channels */
    int64_t d[2] = {T, C};
    kvq_tensor cal = kvq_tensor_view(KVQ_DTYPE_F32, X, 2, d);
    size_t n0, n1;
    free(roundtrip("nupes:driven=0", w, R, C, y0, &cal, &n0));
    free(roundtrip("nupes:driven=1", w, R, C, y1, &cal, &n1));
    double e0 = out_err(w, y0, X, R, C, T), e1 = out_err(w, y1, X, R, C, T);
    print_message("[  INFO    ] layer-output error: data-free %.4g, data-driven %.4g\n", e0, e1);
    assert_true(e1 < e0);
    /* zeros and a tiny exponent: finite, exact zeros */
    memset(w, 0, sizeof(float) * R * C);
    w[3] = 1e-30f;
    free(roundtrip("nupes:a=0.05,driven=1", w, R, C, y1, &cal, &n1));
    for (int i = 0; i < R * C; i++) assert_true(isfinite(y1[i]) && (i == 3 || y1[i] == 0.0f));
    free(w), free(X), free(y0), free(y1);
}

/* A fixed exponent codes by threshold counting: every code of the payload
 * equals kvq_nupes_code (pow per value) against the stored f16 maximum, on
 * a million values (Gaussian, Laplace, zeros, exact group maxima, values
 * above the f16-rounded maximum) for 4 and 8 bits and three exponents. */
static void test_fixed_a_fast_codes(void **state)
{
    (void)state;
    enum { R = 128, C = 2048, G = 32 };
    float *x = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) {
        x[i] = i % 3 ? gauss() : laplace();
        if (i % 97 == 0) x[i] = 0.0f;
        if (i % 101 == 0) x[i] = (float)ldexp(urand(), -20 - (int)(urand() * 10));
    }
    static const char *const specs[] = {"nupes:a=0.37,driven=0", "nupes:a=0.5,bits=8,driven=0",
                                        "nupes:a=0.8125,bits=3,driven=0", "nupes:a=0.61,driven=0"};
    static const unsigned bits[] = {4, 8, 3, 4};
    static const double as[] = {0.37, 0.5, 0.8125, 0.61};
    for (int k = 0; k < 4; k++) {
        kvq_ctx *ctx;
        assert_int_equal(kvq_ctx_create(specs[k], &ctx), KVQ_OK);
        int64_t d[2] = {R, C};
        kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
        size_t cap = kvq_ctx_payload_bound(ctx, &t.shape), n, rb = 2 * (C / G) + ((size_t)C * bits[k] + 7) / 8;
        uint8_t *p = malloc(cap), codes[C];
        assert_int_equal(kvq_ctx_encode_payload(ctx, &t, p, cap, &n), KVQ_OK);
        assert_int_equal(n, 4 + R * rb);
        int32_t qm = (1 << (bits[k] - 1)) - 1;
        for (int r = 0; r < R; r++) {
            const uint8_t *row = p + 4 + r * rb;
            kvq_bits_unpack(row + 2 * (C / G), C, bits[k], codes);
            for (int c = 0; c < C; c++) {
                uint16_t h = (uint16_t)(row[2 * (c / G)] | row[2 * (c / G) + 1] << 8);
                int32_t want = kvq_nupes_code(bits[k], as[k], x[r * C + c], kvq_f16_to_f32(h));
                if ((int32_t)codes[c] - qm != want)
                    fail_msg("%s: x[%d][%d] = %a codes %d, pow path %d", specs[k], r, c, (double)x[r * C + c],
                             (int)codes[c] - qm, (int)want);
            }
        }
        kvq_ctx_free(ctx);
        free(p);
    }
    /* odd widths: the packed stream equals kvq_bits_pack of the codes */
    for (int64_t cols = 33; cols <= 71; cols += 19) {
        kvq_ctx *ctx;
        assert_int_equal(kvq_ctx_create("nupes:a=0.45,driven=0", &ctx), KVQ_OK);
        int64_t d[2] = {3, cols}, gpr = (cols + G - 1) / G;
        kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
        size_t cap = kvq_ctx_payload_bound(ctx, &t.shape), n, rb = 2 * (size_t)gpr + ((size_t)cols * 4 + 7) / 8;
        uint8_t *p = malloc(cap), codes[80], want[40];
        assert_int_equal(kvq_ctx_encode_payload(ctx, &t, p, cap, &n), KVQ_OK);
        for (int r = 0; r < 3; r++) {
            const uint8_t *row = p + 4 + r * rb;
            for (int64_t c = 0; c < cols; c++) {
                uint16_t h = (uint16_t)(row[2 * (c / G)] | row[2 * (c / G) + 1] << 8);
                codes[c] = (uint8_t)(kvq_nupes_code(4, 0.45, x[r * cols + c], kvq_f16_to_f32(h)) + 7);
            }
            kvq_bits_pack(codes, (size_t)cols, 4, want);
            assert_memory_equal(row + 2 * gpr, want, rb - 2 * (size_t)gpr);
        }
        kvq_ctx_free(ctx);
        free(p);
    }
    free(x);
}

/* 5..8-bit codes with a fixed exponent (the bucket table, or the double
 * path where the first threshold is below the table's range) equal
 * kvq_nupes_code against the stored maxima, values at exact group maxima,
 * above them (f16 rounding) and tiny ones included. */
static void test_fixed_a_table_codes(void **state)
{
    (void)state;
    enum { R = 32, C = 512, G = 32 };
    float *x = malloc(sizeof(float) * R * C);
    uint8_t *codes = malloc(C);
    for (int i = 0; i < R * C; i++) {
        x[i] = i % 3 ? gauss() : laplace();
        if (i % 89 == 0) x[i] = (float)ldexp(urand(), -30 - (int)(urand() * 40));
    }
    static const double as[] = {0.06, 0.2, 0.33, 0.75, 1.0};
    for (unsigned bits = 5; bits <= 8; bits++)
        for (size_t ai = 0; ai < sizeof as / sizeof as[0]; ai++) {
            char spec[64];
            snprintf(spec, sizeof spec, "nupes:a=%g,bits=%u,driven=0", as[ai], bits);
            kvq_ctx *ctx;
            assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
            int64_t d[2] = {R, C};
            kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
            size_t cap = kvq_ctx_payload_bound(ctx, &t.shape), n, rb = 2 * (C / G) + ((size_t)C * bits + 7) / 8;
            uint8_t *p = malloc(cap);
            assert_int_equal(kvq_ctx_encode_payload(ctx, &t, p, cap, &n), KVQ_OK);
            assert_int_equal(n, 4 + R * rb);
            int32_t qm = (1 << (bits - 1)) - 1;
            for (int r = 0; r < R; r++) {
                const uint8_t *row = p + 4 + r * rb;
                kvq_bits_unpack(row + 2 * (C / G), C, bits, codes);
                for (int c = 0; c < C; c++) {
                    uint16_t h = (uint16_t)(row[2 * (c / G)] | row[2 * (c / G) + 1] << 8);
                    int32_t want = kvq_nupes_code(bits, as[ai], x[r * C + c], kvq_f16_to_f32(h));
                    if ((int32_t)codes[c] - qm != want)
                        fail_msg("%s: x[%d][%d] = %a codes %d, pow path %d", spec, r, c, (double)x[r * C + c],
                                 (int)codes[c] - qm, (int)want);
                }
            }
            kvq_ctx_free(ctx);
            free(p);
        }
    free(x);
    free(codes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a1_is_rtn),       cmocka_unit_test(test_levels_and_codes),
        cmocka_unit_test(test_integer_lut),     cmocka_unit_test(test_datafree_search),
        cmocka_unit_test(test_datadriven), cmocka_unit_test(test_fixed_a_fast_codes),
        cmocka_unit_test(test_fixed_a_table_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
