/*
 * test_core.c — libkvq's core against independent references: f16/bf16
 * conversion (exhaustive over 16-bit patterns, RNE ties, overflow,
 * subnormals, NaN), codec spec parsing, kvq_ctx_set_param bounds, blob
 * header validation and the CRC-32 check value.
 *
 * The conversion references here are written from the IEEE 754 definition
 * with double arithmetic (value = significand · 2^exponent, nearest
 * representable, ties to the even significand), not from the bit tricks
 * libkvq/tensor.c uses, so the two can disagree.
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

#include "kvq.h"

#define F16_MAX       65504.0    /* largest finite binary16 */
#define F16_MIN_SUB   0x1p-24    /* smallest binary16 subnormal */
#define F16_INF       0x7C00u
#define BF16_INF      0x7F80u
#define N_RANDOM      (1u << 21) /* random f32 patterns per conversion test */
#define CRC_CHECK     0xCBF43926u /* CRC-32/ISO-HDLC of "123456789" */

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static float f32_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- independent references ------------------------------------------------- */
/* Value of a binary16 pattern, from the definition. */
static double ref_f16_value(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -24);
    else v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* Nearest binary16 to a finite double, ties to even; overflow to Inf at
 * |v| ≥ 65520 (the midpoint between 65504 and 2^16). */
static uint16_t ref_f32_to_f16(double v)
{
    uint16_t sign = signbit(v) ? 0x8000 : 0;
    double a = fabs(v);
    if (a >= 65520.0) return sign | F16_INF;
    /* binary search for the largest positive pattern whose value ≤ a */
    uint16_t lo = 0, hi = 0x7BFF;
    while (lo < hi) {
        uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
        if (ref_f16_value(mid) <= a) lo = mid;
        else hi = (uint16_t)(mid - 1);
    }
    uint16_t up = (uint16_t)(lo + 1); /* 0x7C00 (Inf) above 65504 */
    double dl = a - ref_f16_value(lo), du = (up == F16_INF ? 65536.0 : ref_f16_value(up)) - a;
    uint16_t r = dl < du ? lo : du < dl ? up : (lo & 1 ? up : lo);
    return sign | r;
}

/* Nearest bfloat16 (8-bit significand) to a finite float, ties to even. */
static uint16_t ref_f32_to_bf16(float f)
{
    uint32_t u = bits_of(f);
    uint16_t lo = (uint16_t)(u >> 16), up = (uint16_t)(lo + 1);
    double x = fabs((double)f), vl = fabs((double)f32_of((uint32_t)lo << 16));
    double vu = (up & 0x7FFF) == BF16_INF ? ldexp(1.0, 128) : fabs((double)f32_of((uint32_t)up << 16));
    double dl = x - vl, du = vu - x;
    return dl < du ? lo : du < dl ? up : (lo & 1 ? up : lo);
}

/* ---- conversions -------------------------------------------------------------- */
static void test_f16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kvq_f16_to_f32((uint16_t)h);
        double want = ref_f16_value((uint16_t)h);
        if (isnan(want)) {
            assert_true(isnan(f));
            assert_true(kvq_f32_to_f16(f) & 0x0200); /* quiet NaN back */
            assert_int_equal(kvq_f32_to_f16(f) & 0xFC00, h & 0xFC00);
            continue;
        }
        assert_true((double)f == want);
        assert_int_equal(signbit(f) != 0, (h >> 15) != 0);
        assert_int_equal(kvq_f32_to_f16(f), h); /* exact round trip */
    }
}

static void test_f16_rounding(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < N_RANDOM; i++) {
        /* bias towards the f16 range: exponents 100..150 most of the time */
        uint32_t u = rnd32();
        if (i & 1) u = (u & 0x807FFFFFu) | ((100u + rnd32() % 50) << 23);
        float f = f32_of(u);
        if (isnan(f)) continue;
        uint16_t want = isinf(f) ? (uint16_t)((u >> 16 & 0x8000) | F16_INF) : ref_f32_to_f16(f);
        if (kvq_f32_to_f16(f) != want)
            fail_msg("f32 0x%08x (%.9g): got f16 0x%04x, reference 0x%04x", u, (double)f, kvq_f32_to_f16(f), want);
    }
    /* named cases: ties to even, overflow, subnormal boundary */
    assert_int_equal(kvq_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);          /* tie → even (down) */
    assert_int_equal(kvq_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);      /* tie → even (up)   */
    assert_int_equal(kvq_f32_to_f16(65504.0f), 0x7BFF);
    assert_int_equal(kvq_f32_to_f16(65519.996f), 0x7BFF);
    assert_int_equal(kvq_f32_to_f16(65520.0f), F16_INF);                /* tie at the top → Inf */
    assert_int_equal(kvq_f32_to_f16(-1e30f), 0x8000 | F16_INF);
    assert_int_equal(kvq_f32_to_f16((float)F16_MIN_SUB), 0x0001);
    assert_int_equal(kvq_f32_to_f16((float)(F16_MIN_SUB / 2)), 0x0000); /* tie → even (0)   */
    assert_int_equal(kvq_f32_to_f16((float)(F16_MIN_SUB * 1.5)), 0x0002); /* tie → even (2) */
    assert_int_equal(kvq_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(kvq_f32_to_f16(0x1p-14f), 0x0400);                 /* smallest normal   */
}

static void test_bf16(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kvq_bf16_to_f32((uint16_t)h);
        assert_int_equal(bits_of(f), h << 16);
        if (isnan(f)) assert_true(isnan(kvq_bf16_to_f32(kvq_f32_to_bf16(f))));
        else assert_int_equal(kvq_f32_to_bf16(f), h);
    }
    for (uint32_t i = 0; i < N_RANDOM; i++) {
        uint32_t u = rnd32();
        float f = f32_of(u);
        if (!isfinite(f)) continue;
        uint16_t want = ref_f32_to_bf16(f);
        if (kvq_f32_to_bf16(f) != want)
            fail_msg("f32 0x%08x: got bf16 0x%04x, reference 0x%04x", u, kvq_f32_to_bf16(f), want);
    }
    assert_int_equal(kvq_f32_to_bf16(f32_of(0x3F808000u)), 0x3F80); /* tie → even (down) */
    assert_int_equal(kvq_f32_to_bf16(f32_of(0x3F818000u)), 0x3F82); /* tie → even (up)   */
    assert_int_equal(kvq_f32_to_bf16(f32_of(0x7F7FFFFFu)), BF16_INF); /* FLT_MAX rounds up */
    assert_true(isnan(kvq_bf16_to_f32(kvq_f32_to_bf16(NAN))));
}

/* ---- spec strings ----------------------------------------------------------------- */
static void test_spec_parse(void **state)
{
    (void)state;
    const kvq_codec *c;
    kvq_params p;
    assert_int_equal(kvq_spec_parse("rtn:bits=4,mode=asym,gran=group,group=64", &c, &p), KVQ_OK);
    assert_string_equal(c->name, "rtn");
    assert_true(p.v[kvq_param_index(c, "bits")] == 4);
    assert_true(p.v[kvq_param_index(c, "mode")] == 1);
    assert_true(p.v[kvq_param_index(c, "gran")] == 2);
    assert_true(p.v[kvq_param_index(c, "group")] == 64);
    char buf[128];
    assert_string_equal(kvq_spec_format(c, &p, buf, sizeof buf), "rtn:mode=asym,group=64");
    assert_int_equal(kvq_spec_parse("q4_0", &c, &p), KVQ_OK);
    static const struct {
        const char *spec;
        kvq_err want;
    } bad[] = {
        {"nosuch", KVQ_ERR_UNKNOWN_CODEC},       {"nosuch:bits=4", KVQ_ERR_UNKNOWN_CODEC},
        {"rtn:width=4", KVQ_ERR_SPEC},           {"rtn:bits=4,bits=5", KVQ_ERR_SPEC},
        {"rtn:bits=9", KVQ_ERR_PARAM_RANGE},     {"rtn:bits=1", KVQ_ERR_PARAM_RANGE},
        {"rtn:bits=3.5", KVQ_ERR_PARAM_RANGE},   {"rtn:bits=four", KVQ_ERR_SPEC},
        {"rtn:bits=", KVQ_ERR_SPEC},             {"rtn:bits=4,,mode=sym", KVQ_ERR_SPEC},
        {"rtn:bits=4,", KVQ_ERR_SPEC},           {"rtn:", KVQ_ERR_SPEC},
        {"rtn:=4", KVQ_ERR_SPEC},                {"rtn:mode=middle", KVQ_ERR_SPEC},
        {"", KVQ_ERR_SPEC},                      {"rtn:group=512", KVQ_ERR_PARAM_RANGE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kvq_err e = kvq_spec_parse(bad[i].spec, &c, &p);
        if (e != bad[i].want)
            fail_msg("spec '%s': got %s, expected %s", bad[i].spec, kvq_strerror(e), kvq_strerror(bad[i].want));
        assert_true(kvq_last_error_detail()[0] != '\0');
    }
}

static void test_ctx_set_param(void **state)
{
    (void)state;
    kvq_ctx *ctx;
    double lo, hi;
    assert_int_equal(kvq_ctx_create("rtn", &ctx), KVQ_OK);
    assert_int_equal(kvq_param_bounds(kvq_ctx_codec(ctx), "bits", &lo, &hi), KVQ_OK);
    assert_true(lo == 2 && hi == 8);
    assert_int_equal(kvq_ctx_set_param(ctx, "bits", 8), KVQ_OK);
    assert_int_equal(kvq_ctx_set_param(ctx, "bits", 9), KVQ_ERR_PARAM_RANGE);
    assert_int_equal(kvq_ctx_set_param(ctx, "bits", 1), KVQ_ERR_PARAM_RANGE);
    assert_int_equal(kvq_ctx_set_param(ctx, "bits", 2.5), KVQ_ERR_PARAM_RANGE);
    assert_int_equal(kvq_ctx_set_param(ctx, "nosuch", 1), KVQ_ERR_NOT_FOUND);
    int bi = kvq_param_index(kvq_ctx_codec(ctx), "bits");
    assert_true(kvq_ctx_params(ctx)->v[bi] == 8); /* failed sets leave the value */
    assert_int_equal(kvq_ctx_reset(ctx), KVQ_OK);
    assert_true(kvq_ctx_params(ctx)->v[bi] == 4);
    kvq_ctx_free(ctx);
    kvq_ctx_free(NULL); /* NULL-safe */
}

/* ---- blobs --------------------------------------------------------------------------- */
static void rewrite_header_crc(uint8_t *b, size_t hs)
{
    uint32_t c = kvq_crc32(0, b, hs - 4);
    for (int i = 0; i < 4; i++) b[hs - 4 + i] = (uint8_t)(c >> (8 * i));
}

static void test_blob_header(void **state)
{
    (void)state;
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = (float)i / 7;
    int64_t d[2] = {2, 32};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create("q8_0", &ctx), KVQ_OK);
    uint8_t b[256], w[256];
    size_t n;
    assert_int_equal(kvq_ctx_encode(ctx, &t, b, sizeof b, &n), KVQ_OK);
    assert_int_equal(kvq_ctx_encode(ctx, &t, b, 20, &n), KVQ_ERR_DST_TOO_SMALL);
    assert_int_equal(kvq_ctx_encode(ctx, &t, b, sizeof b, &n), KVQ_OK);
    kvq_blob_info bi;
    assert_int_equal(kvq_blob_info_read(b, n, &bi), KVQ_OK);
    assert_string_equal(bi.codec->name, "q8_0");
    assert_int_equal(bi.shape.ndim, 2);
    assert_int_equal(bi.shape.dim[1], 32);
    assert_int_equal(bi.payload_size, 2 * 34);
    assert_memory_equal(b, "KVQT", 4);
    size_t hs = bi.header_size;
    memcpy(w, b, n); w[4] = 2;                      /* version 2 */
    assert_int_equal(kvq_blob_info_read(w, n, &bi), KVQ_ERR_VERSION);
    memcpy(w, b, n); w[6] = 0xEE; w[7] = 0xEE;      /* codec id, CRC fixed up */
    assert_int_equal(kvq_blob_info_read(w, n, &bi), KVQ_ERR_CHECKSUM);
    rewrite_header_crc(w, hs);
    assert_int_equal(kvq_blob_info_read(w, n, &bi), KVQ_ERR_UNKNOWN_CODEC);
    memcpy(w, b, n); w[8] = 0;                      /* rank 0 */
    assert_int_equal(kvq_blob_info_read(w, n, &bi), KVQ_ERR_SHAPE);
    memcpy(w, b, n); w[12 + 8 + 7] = 0x40;          /* dim[1] = 2^62 + 32 */
    rewrite_header_crc(w, hs);
    assert_int_equal(kvq_blob_info_read(w, n, &bi), KVQ_ERR_SHAPE);
    memcpy(w, b, n); w[hs - 16] ^= 0x01;            /* payload length ≠ CRC'd value */
    assert_int_equal(kvq_blob_info_read(w, n, &bi), KVQ_ERR_CHECKSUM);
    memcpy(w, b, n); w[hs - 16] = 0xFF;             /* payload longer than the blob */
    rewrite_header_crc(w, hs);
    assert_int_equal(kvq_blob_info_read(w, n, &bi), KVQ_ERR_TRUNCATED);
    float y[64];
    kvq_tensor out = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    memcpy(w, b, n); w[n - 1] ^= 0x80;              /* payload byte */
    assert_int_equal(kvq_blob_decode(w, n, &out), KVQ_ERR_CHECKSUM);
    assert_int_equal(kvq_blob_decode(b, n, &out), KVQ_OK);
    int64_t d3[1] = {63};
    kvq_tensor small = kvq_tensor_view(KVQ_DTYPE_F32, y, 1, d3);
    assert_int_equal(kvq_blob_decode(b, n, &small), KVQ_ERR_SHAPE);
    kvq_ctx_free(ctx);
}

static void test_crc32(void **state)
{
    (void)state;
    assert_int_equal(kvq_crc32(0, "123456789", 9), CRC_CHECK);
    assert_int_equal(kvq_crc32(0, "", 0), 0);
    /* incremental equals one shot */
    assert_int_equal(kvq_crc32(kvq_crc32(0, "1234", 4), "56789", 5), CRC_CHECK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_exhaustive), cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_bf16),           cmocka_unit_test(test_spec_parse),
        cmocka_unit_test(test_ctx_set_param),  cmocka_unit_test(test_blob_header),
        cmocka_unit_test(test_crc32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
