/*
 * test_codecs.c — the registry-wide conformance test (DESIGN.md, STYLE.md
 * "Tests"), plus the exactness checks of quant/ggml.c, quant/rtn.c and
 * quant/quant_common.h.
 *
 * One cmocka_unit_test_prestate per registry entry, built by walking
 * kvq_codec_at(), so a codec added to the registry is tested without an
 * edit here.  For every codec at its default parameters: payload within
 * bound(); ‖x̂−x‖/‖x‖ ≤ max_rel_err on real stories260K weights and on
 * adversarial tensors; lossless codecs bit-exact; deterministic bytes;
 * decode_rows equal to the rows of a full decode; NaN/Inf rejected with
 * KVQ_ERR_NONFINITE unless the codec declares KVQ_FLAG_NONFINITE_OK (then
 * they pass through); every truncated prefix and a flipped magic, header
 * or payload byte of a blob rejected with an error; every parameter at its
 * extremes either refused at init or round-tripping.  Real data comes from
 * ../shared/data; tests that need it skip with a message when it is absent.
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
#include "quant/quant_common.h"

#define DATA_DIR  "../shared/data"
#define MODEL_BIN DATA_DIR "/models/stories260K/stories260K.bin"
#define GOLDEN    DATA_DIR "/golden/"
#define HDR_INTS  7          /* llama2.c v0 header: dim hidden layers heads kv vocab seq */
#define F16_MAX   65504.0f   /* largest finite binary16 */
#define OUTLIER   1e4f       /* the adversarial outlier */
#define ADV_ROWS  4
#define ADV_COLS  64

/* ---- small utilities ------------------------------------------------------ */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void) /* splitmix64: fixed seed, reproducible */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rng_uniform(void) { return (float)((rng_next() >> 40) * 0x1p-24); }

static float rng_normal(void)
{
    float u = rng_uniform() + 0x1p-25f, v = rng_uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static void *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(len > 0 ? (size_t)len : 1);
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return p;
}

static double rel_err(const float *x, const float *y, size_t n)
{
    return kvq_err_stats_compute(x, y, n).rel_fro;
}

/* ---- test tensors ------------------------------------------------------------ */
typedef struct {
    const char *name;
    int64_t rows, cols;
    float *data;
} sample;

/* stories260K weights at known offsets (llama2.c v0 order: token embedding
 * [vocab][dim], rms_att [L][dim], wq [L][dim][dim], ...). */
static int load_model_samples(sample *out)
{
    size_t n;
    uint8_t *bin = read_file(MODEL_BIN, &n);
    if (!bin) return 0;
    int32_t h[HDR_INTS];
    memcpy(h, bin, sizeof h);
    int64_t dim = h[0], layers = h[2], vocab = h[5] < 0 ? -h[5] : h[5];
    size_t emb = (size_t)(vocab * dim), off_wq = HDR_INTS * 4 + 4 * (emb + (size_t)(layers * dim));
    assert_true(off_wq + 4 * (size_t)(dim * dim) <= n);
    out[0] = (sample){"tok_embeddings", vocab, dim, malloc(4 * emb)};
    out[1] = (sample){"layer0.wq", dim, dim, malloc(4 * (size_t)(dim * dim))};
    memcpy(out[0].data, bin + HDR_INTS * 4, 4 * emb);
    memcpy(out[1].data, bin + off_wq, 4 * (size_t)(dim * dim));
    free(bin);
    return 2;
}

static float *adv_alloc(void) { return calloc(ADV_ROWS * ADV_COLS, sizeof(float)); }

/* Adversarial tensors, all finite.  "denormal" keeps one row of ordinary
 * values so that ‖x‖ is meaningful; a pure-subnormal tensor is checked on
 * its own (see check_subnormal). */
static int make_adversarial(sample *out)
{
    static const char *names[] = {"zeros", "constant", "outlier", "denormal", "f16 extremes"};
    int k = 0;
    for (int i = 0; i < 5; i++) out[i] = (sample){names[i], ADV_ROWS, ADV_COLS, adv_alloc()};
    for (int i = 0; i < ADV_ROWS * ADV_COLS; i++) {
        out[1].data[i] = -3.0f;
        out[2].data[i] = 0.02f * rng_normal();
        out[3].data[i] = i < ADV_COLS ? rng_normal() : (float)(i % 7 - 3) * 0x1p-140f;
        out[4].data[i] = (i % 2 ? F16_MAX : -F16_MAX) * (i % 3 ? 1.0f : 0.5f);
    }
    out[2].data[77] = OUTLIER;
    k = 5;
    return k;
}

static void free_samples(sample *s, int n)
{
    for (int i = 0; i < n; i++) free(s[i].data);
}

/* ---- per-codec checks ------------------------------------------------------------ */
/* Codecs that need data get a 64×64 normal sample first. */
static void calibrate_ctx(kvq_ctx *ctx)
{
    if (!(kvq_ctx_codec(ctx)->flags & KVQ_FLAG_NEEDS_CALIB)) return;
    enum { CAL_ROWS = 64, CAL_COLS = 64 };
    float *cal = malloc(sizeof(float) * CAL_ROWS * CAL_COLS);
    for (int i = 0; i < CAL_ROWS * CAL_COLS; i++) cal[i] = rng_normal();
    int64_t d[2] = {CAL_ROWS, CAL_COLS};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, cal, 2, d);
    assert_int_equal(kvq_ctx_calibrate(ctx, &t), KVQ_OK);
    free(cal);
}

static kvq_ctx *make_ctx(const kvq_codec *c)
{
    kvq_ctx *ctx = NULL;
    assert_int_equal(kvq_ctx_create_params(c, NULL, &ctx), KVQ_OK);
    calibrate_ctx(ctx);
    return ctx;
}

/* Encodes s as a blob; returns it (caller frees) and its size. */
static uint8_t *encode_blob(kvq_ctx *ctx, const sample *s, size_t *n, kvq_err *err)
{
    int64_t d[2] = {s->rows, s->cols};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, s->data, 2, d);
    size_t cap = kvq_ctx_bound(ctx, &t.shape);
    assert_true(cap > 0);
    uint8_t *blob = malloc(cap);
    *err = kvq_ctx_encode(ctx, &t, blob, cap, n);
    if (*err == KVQ_OK) {
        kvq_blob_info bi;
        assert_int_equal(kvq_blob_info_read(blob, *n, &bi), KVQ_OK);
        assert_true(bi.payload_size <= kvq_ctx_payload_bound(ctx, &t.shape));
        assert_true(*n <= cap);
    }
    return blob;
}

static void check_sample(const kvq_codec *c, kvq_ctx *ctx, const sample *s)
{
    size_t n, n2, cnt = (size_t)(s->rows * s->cols);
    kvq_err e;
    uint8_t *blob = encode_blob(ctx, s, &n, &e);
    if (e != KVQ_OK) fail_msg("%s: encode of '%s' failed: %s: %s", c->name, s->name, kvq_strerror(e),
                              kvq_last_error_detail());
    uint8_t *again = encode_blob(ctx, s, &n2, &e);
    assert_int_equal(e, KVQ_OK);
    assert_int_equal(n, n2);
    assert_memory_equal(blob, again, n); /* deterministic */
    float *y = malloc(4 * cnt), *rows = malloc(4 * cnt);
    int64_t d[2] = {s->rows, s->cols};
    kvq_tensor out = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    assert_int_equal(kvq_blob_decode(blob, n, &out), KVQ_OK);
    if (c->flags & KVQ_FLAG_LOSSLESS) assert_memory_equal(s->data, y, 4 * cnt);
    double r = rel_err(s->data, y, cnt);
    if (!(r <= c->max_rel_err))
        fail_msg("%s on '%s': relative error %.6g exceeds the declared %.6g", c->name, s->name, r, c->max_rel_err);
    /* decode_rows of the middle rows equals those rows of the full decode */
    kvq_blob_info bi;
    assert_int_equal(kvq_blob_info_read(blob, n, &bi), KVQ_OK);
    int64_t r0 = s->rows / 4, r1 = s->rows - s->rows / 4;
    assert_int_equal(kvq_ctx_decode_rows(ctx, blob + bi.header_size, bi.payload_size, &bi.shape, r0, r1, rows),
                     KVQ_OK);
    assert_memory_equal(rows, y + r0 * s->cols, 4 * (size_t)((r1 - r0) * s->cols));
    free(blob);
    free(again);
    free(y);
    free(rows);
}

/* A tensor of only subnormals: encodes, decodes to finite values, and the
 * error never exceeds the values themselves (scales may underflow to 0). */
static void check_subnormal(kvq_ctx *ctx)
{
    sample s = {"subnormal", ADV_ROWS, ADV_COLS, adv_alloc()};
    float mx = 0;
    for (int i = 0; i < ADV_ROWS * ADV_COLS; i++) {
        s.data[i] = (float)(i % 13 - 6) * 0x1p-136f;
        mx = fabsf(s.data[i]) > mx ? fabsf(s.data[i]) : mx;
    }
    size_t n;
    kvq_err e;
    uint8_t *blob = encode_blob(ctx, &s, &n, &e);
    assert_int_equal(e, KVQ_OK);
    float y[ADV_ROWS * ADV_COLS];
    int64_t d[2] = {ADV_ROWS, ADV_COLS};
    kvq_tensor out = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    assert_int_equal(kvq_blob_decode(blob, n, &out), KVQ_OK);
    for (int i = 0; i < ADV_ROWS * ADV_COLS; i++) {
        assert_true(isfinite(y[i]));
        assert_true(fabsf(y[i] - s.data[i]) <= mx);
    }
    free(blob);
    free(s.data);
}

static void check_nonfinite(const kvq_codec *c, kvq_ctx *ctx)
{
    sample s = {"nonfinite", ADV_ROWS, ADV_COLS, adv_alloc()};
    for (int i = 0; i < ADV_ROWS * ADV_COLS; i++) s.data[i] = 0.01f * (float)(i % 9);
    s.data[5] = NAN;
    s.data[70] = INFINITY;
    s.data[140] = -INFINITY;
    size_t n;
    kvq_err e;
    uint8_t *blob = encode_blob(ctx, &s, &n, &e);
    if (!(c->flags & KVQ_FLAG_NONFINITE_OK)) {
        assert_int_equal(e, KVQ_ERR_NONFINITE);
    } else {
        assert_int_equal(e, KVQ_OK);
        float y[ADV_ROWS * ADV_COLS];
        int64_t d[2] = {ADV_ROWS, ADV_COLS};
        kvq_tensor out = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
        assert_int_equal(kvq_blob_decode(blob, n, &out), KVQ_OK);
        assert_true(isnan(y[5]));
        assert_true(isinf(y[70]) && y[70] > 0);
        assert_true(isinf(y[140]) && y[140] < 0);
    }
    free(blob);
    free(s.data);
}

/* Every truncated prefix, and a flipped magic / header / payload byte. */
static void check_blob_damage(kvq_ctx *ctx, const sample *s)
{
    size_t n;
    kvq_err e;
    uint8_t *blob = encode_blob(ctx, s, &n, &e);
    assert_int_equal(e, KVQ_OK);
    float *y = malloc(4 * (size_t)(s->rows * s->cols));
    int64_t d[2] = {s->rows, s->cols};
    kvq_tensor out = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    for (size_t k = 0; k < n; k++) assert_int_not_equal(kvq_blob_decode(blob, k, &out), KVQ_OK);
    kvq_blob_info bi;
    assert_int_equal(kvq_blob_info_read(blob, n, &bi), KVQ_OK);
    blob[0] ^= 0x20;
    assert_int_equal(kvq_blob_decode(blob, n, &out), KVQ_ERR_BAD_MAGIC);
    blob[0] ^= 0x20;
    for (size_t k = 4; k < bi.header_size; k++) { /* version onwards */
        blob[k] ^= 0x01;
        assert_int_not_equal(kvq_blob_decode(blob, n, &out), KVQ_OK);
        blob[k] ^= 0x01;
    }
    if (bi.payload_size) {
        blob[bi.header_size + bi.payload_size / 2] ^= 0x10;
        assert_int_equal(kvq_blob_decode(blob, n, &out), KVQ_ERR_CHECKSUM);
        blob[bi.header_size + bi.payload_size / 2] ^= 0x10;
        /* a payload of the wrong length handed straight to the codec */
        kvq_err pe = kvq_ctx_decode_payload(ctx, blob + bi.header_size, bi.payload_size - 1, &out);
        assert_int_not_equal(pe, KVQ_OK);
    }
    assert_int_equal(kvq_blob_decode(blob, n, &out), KVQ_OK);
    free(blob);
    free(y);
}

/* Every declared parameter at its minimum and at its maximum (one at a
 * time, choices included): the codec either refuses the combination at
 * init with KVQ_ERR_PARAM_RANGE or round-trips within bound(), decodes,
 * is deterministic and serves decode_rows.  max_rel_err is declared for the
 * defaults, so only finiteness of the result is required here. */
static void check_param_extremes(const kvq_codec *c, const sample *s)
{
    for (unsigned i = 0; i < c->n_params; i++)
        for (int end = 0; end < 2; end++) {
            kvq_params p = kvq_params_default(c);
            p.v[i] = end ? c->params[i].max : c->params[i].min;
            kvq_ctx *ctx = NULL;
            kvq_err e = kvq_ctx_create_params(c, &p, &ctx);
            if (e == KVQ_ERR_PARAM_RANGE) continue;
            assert_int_equal(e, KVQ_OK);
            calibrate_ctx(ctx);
            size_t n, n2, cnt = (size_t)(s->rows * s->cols);
            uint8_t *blob = encode_blob(ctx, s, &n, &e), *again = encode_blob(ctx, s, &n2, &e);
            assert_int_equal(e, KVQ_OK);
            assert_int_equal(n, n2);
            assert_memory_equal(blob, again, n);
            float *y = malloc(4 * cnt);
            int64_t d[2] = {s->rows, s->cols};
            kvq_tensor out = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
            assert_int_equal(kvq_blob_decode(blob, n, &out), KVQ_OK);
            for (size_t k = 0; k < cnt; k++) assert_true(isfinite(y[k]));
            free(blob);
            free(again);
            free(y);
            kvq_ctx_free(ctx);
        }
}

static void test_conformance(void **state)
{
    const kvq_codec *c = *state;
    if (c->domain & KVQ_DOMAIN_TEXT) {
        print_message("[  SKIPPED ] %s: text codec, tensor checks do not apply\n", c->name);
        skip();
    }
    kvq_ctx *ctx = make_ctx(c);
    sample adv[8], real[2];
    int na = make_adversarial(adv);
    for (int i = 0; i < na; i++) check_sample(c, ctx, &adv[i]);
    check_subnormal(ctx);
    check_nonfinite(c, ctx);
    check_blob_damage(ctx, &adv[2]);
    check_param_extremes(c, &adv[2]);
    int nr = load_model_samples(real);
    if (!nr) print_message("[  NOTE    ] %s: %s absent, real-tensor checks skipped\n", c->name, MODEL_BIN);
    for (int i = 0; i < nr; i++) check_sample(c, ctx, &real[i]);
    free_samples(adv, na);
    free_samples(real, nr);
    kvq_ctx_free(ctx);
}

/* ---- golden ggml bytes ------------------------------------------------------------ */
static void test_ggml_golden(void **state)
{
    (void)state;
    static const char *inputs[] = {"adversarial", "stories260K.layer0.wq", "stories260K.tok_embeddings"};
    static const char *types[] = {"q8_0", "q4_0"};
    size_t nx;
    float *probe = read_file(GOLDEN "adversarial.f32", &nx);
    if (!probe) {
        print_message("[  SKIPPED ] %s absent\n", GOLDEN);
        skip();
    }
    free(probe);
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < 2; t++) {
            char path[256];
            size_t ng, np;
            snprintf(path, sizeof path, GOLDEN "%s.f32", inputs[i]);
            float *x = read_file(path, &nx);
            snprintf(path, sizeof path, GOLDEN "%s.%s", inputs[i], types[t]);
            uint8_t *g = read_file(path, &ng);
            assert_non_null(x);
            assert_non_null(g);
            kvq_ctx *ctx;
            assert_int_equal(kvq_ctx_create(types[t], &ctx), KVQ_OK);
            int64_t d[2] = {(int64_t)(nx / 4 / 32), 32};
            kvq_tensor tx = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
            uint8_t *p = malloc(ng + 64);
            assert_int_equal(kvq_ctx_encode_payload(ctx, &tx, p, ng + 64, &np), KVQ_OK);
            assert_int_equal(np, ng);
            assert_memory_equal(p, g, ng);
            kvq_ctx_free(ctx);
            free(x);
            free(g);
            free(p);
        }
}

/* ---- quantizers against plain scalar references ------------------------------------ */
/* ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref, written plainly. */
static void ref_q8_0(const float *x, uint8_t *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        uint16_t h = kvq_f32_to_f16(d);
        memcpy(y, &h, 2);
        for (int j = 0; j < 32; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

static void ref_q4_0(const float *x, uint8_t *y, size_t nb)
{
    for (size_t i = 0; i < nb; i++, x += 32, y += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8, id = d ? 1.0f / d : 0.0f;
        uint16_t h = kvq_f32_to_f16(d);
        memcpy(y, &h, 2);
        for (int j = 0; j < 16; j++) {
            const float x0 = x[j] * id, x1 = x[16 + j] * id;
            int a = (int8_t)(x0 + 8.5f), b = (int8_t)(x1 + 8.5f);
            y[2 + j] = (uint8_t)((a < 15 ? a : 15) | ((b < 15 ? b : 15) << 4));
        }
    }
}

/* Blocks that stress the rules: random scales over 55 binades, values on
 * exact half steps (ties), ±amax repeated in either order. */
static void fill_blocks(float *x, size_t nb)
{
    for (size_t b = 0; b < nb; b++) {
        float sc = ldexpf(1.0f, (int)(rng_next() % 55) - 40), *v = x + 32 * b; /* ≤ 2^14: f16 scales */
        unsigned kind = (unsigned)(rng_next() % 4);
        for (int j = 0; j < 32; j++) {
            float u = 2 * rng_uniform() - 1;
            if (kind == 1) u = ((float)((int)(rng_next() % 254) - 127) + 0.5f) / 127; /* q8_0 ties */
            v[j] = sc * u;
        }
        if (kind == 1) v[0] = sc;
        if (kind == 2) { v[3] = sc; v[9] = -sc; }
        if (kind == 3) { v[3] = -sc; v[29] = sc; }
    }
}

static void test_ggml_vs_scalar_ref(void **state)
{
    (void)state;
    enum { NB = 1 << 16 }; /* 2M values per codec */
    float *x = malloc(sizeof(float) * 32 * NB);
    uint8_t *a = malloc(34 * NB), *b = malloc(34 * NB);
    fill_blocks(x, NB);
    int64_t d[2] = {NB, 32};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
    static const char *types[] = {"q8_0", "q4_0"};
    for (int k = 0; k < 2; k++) {
        kvq_ctx *ctx;
        size_t n;
        assert_int_equal(kvq_ctx_create(types[k], &ctx), KVQ_OK);
        assert_int_equal(kvq_ctx_encode_payload(ctx, &t, a, 34 * NB, &n), KVQ_OK);
        if (k == 0) ref_q8_0(x, b, NB);
        else ref_q4_0(x, b, NB);
        assert_int_equal(n, (k == 0 ? 34u : 18u) * NB);
        assert_memory_equal(a, b, n);
        kvq_ctx_free(ctx);
    }
    free(x);
    free(a);
    free(b);
}

static void test_rounding_helpers(void **state)
{
    (void)state;
    enum { N = 1 << 22 };
    for (uint32_t i = 0; i < N; i++) {
        float v = (2 * rng_uniform() - 1) * ldexpf(1.0f, (int)(rng_next() % 24));
        float tie = (float)((int32_t)(rng_next() % 4096) - 2048) + 0.5f; /* exact tie */
        assert_int_equal(kvq_round_rha(v), (int32_t)roundf(v));
        assert_int_equal(kvq_round_rha(tie), (int32_t)roundf(tie));
        assert_int_equal(kvq_round_rne(tie), (int32_t)nearbyintf(tie));
        if (fabsf(v) < 0x1p22f) assert_int_equal(kvq_round_rne(v), (int32_t)nearbyintf(v));
    }
    /* the float just below 0.5 — the case v + 0.5 tricks get wrong */
    assert_int_equal(kvq_round_rha(nextafterf(0.5f, 0.0f)), 0);
    assert_int_equal(kvq_round_rha(-2.5f), -3);
    assert_int_equal(kvq_round_rne(-2.5f), -2);
    assert_int_equal(kvq_round_rne(3.5f), 4);
}

static void test_packing(void **state)
{
    (void)state;
    /* golden: 3-bit codes 1..7,0 LSB first */
    const uint8_t c3[8] = {1, 2, 3, 4, 5, 6, 7, 0}, g3[3] = {0xD1, 0x58, 0x1F};
    uint8_t out[64], back[64];
    kvq_bits_pack(c3, 8, 3, out);
    assert_memory_equal(out, g3, 3);
    for (unsigned bits = KVQ_CODE_BITS_MIN; bits <= KVQ_CODE_BITS_MAX; bits++)
        for (size_t n = 1; n <= 40; n++) {
            uint8_t codes[40];
            for (size_t i = 0; i < n; i++) codes[i] = (uint8_t)(rng_next() & ((1u << bits) - 1));
            memset(out, 0xAA, sizeof out);
            kvq_bits_pack(codes, n, bits, out);
            kvq_bits_unpack(out, n, bits, back);
            assert_memory_equal(codes, back, n);
            assert_int_equal(out[kvq_bits_size(n, bits)], 0xAA); /* nothing written past the end */
        }
    uint8_t codes[32], nib[16];
    for (int i = 0; i < 32; i++) codes[i] = (uint8_t)(i & 15);
    kvq_nibbles_pack(codes, 32, KVQ_NIB_SPLIT_HALF, nib);
    assert_int_equal(nib[0], 0x00);
    assert_int_equal(nib[1], 0x11);
    assert_int_equal(nib[15], 0xFF);
    kvq_nibbles_unpack(nib, 32, KVQ_NIB_SPLIT_HALF, back);
    assert_memory_equal(codes, back, 32);
    kvq_nibbles_pack(codes, 32, KVQ_NIB_ADJACENT, nib);
    assert_int_equal(nib[0], 0x10);
    assert_int_equal(nib[1], 0x32);
    kvq_nibbles_unpack(nib, 32, KVQ_NIB_ADJACENT, back);
    assert_memory_equal(codes, back, 32);
    float v[37];
    for (int i = 0; i < 37; i++) v[i] = (float)(i - 20);
    v[30] = 20.0f; /* +20 after... */
    v[0] = -20.0f; /* ...−20 first: ggml keeps the first */
    assert_true(kvq_signed_absmax(v, 37) == -20.0f);
    assert_true(kvq_absmax(v, 37) == 20.0f);
}

/* ---- rtn over its parameter space ---------------------------------------------------- */
/* Worst-case relative error per scale group of G values (derivations in
 * quant/rtn.c): sym sqrt((G−1)/((G−1)+4·qmax²)); asym
 * sqrt(G)·(√2/(2L) + 2.5·2^-11), L = 2^b − 1; with slack for f16 scales. */
static double rtn_bound(unsigned bits, int asym, int64_t G)
{
    if (!asym) {
        double q = (1 << (bits - 1)) - 1;
        return sqrt((double)(G - 1) / ((double)(G - 1) + 4 * q * q)) * (1 + 0x1p-9);
    }
    double L = (1 << bits) - 1;
    return sqrt((double)G) * (sqrt(2.0) * (1 + 0x1p-11) / (2 * L) + 2.5 * 0x1p-11);
}

static void test_rtn_sweep(void **state)
{
    (void)state;
    enum { R = 12, C = 172 }; /* 172 = 5·32 + 12: a partial last group */
    float x[R * C], y[R * C], rows[R * C];
    for (int i = 0; i < R * C; i++) x[i] = 0.05f * rng_normal() + (i % C == 7 ? 0.5f : 0.0f);
    int64_t d[2] = {R, C};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d), out = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    static const char *grans[] = {"tensor", "row", "group"};
    static const int groups[] = {32, 64, 256};
    uint8_t buf[4 * R * C];
    for (unsigned bits = 2; bits <= 8; bits++)
        for (int asym = 0; asym < 2; asym++)
            for (int g = 0; g < 3; g++)
                for (int gi = 0; gi < (g == 2 ? 3 : 1); gi++) {
                    char spec[96];
                    snprintf(spec, sizeof spec, "rtn:bits=%u,mode=%s,gran=%s,group=%d", bits, asym ? "asym" : "sym",
                             grans[g], groups[gi]);
                    kvq_ctx *ctx;
                    size_t n;
                    assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
                    assert_int_equal(kvq_ctx_encode_payload(ctx, &t, buf, sizeof buf, &n), KVQ_OK);
                    int64_t G = g == 0 ? R * C : g == 1 ? C : groups[gi], gpr = g == 2 ? (C + G - 1) / G : g;
                    size_t entry = asym ? 4 : 2, want = (g == 0 ? entry : 0) +
                                                        (size_t)R * ((size_t)gpr * entry + (C * bits + 7) / 8);
                    assert_int_equal(n, want);
                    assert_int_equal(kvq_ctx_decode_payload(ctx, buf, n, &out), KVQ_OK);
                    double r = rel_err(x, y, R * C), b = rtn_bound(bits, asym, G);
                    if (!(r <= b)) fail_msg("%s: relative error %.5g above the derived %.5g", spec, r, b);
                    assert_int_equal(kvq_ctx_decode_rows(ctx, buf, n, &t.shape, 3, 7, rows), KVQ_OK);
                    assert_memory_equal(rows, y + 3 * C, 4 * 4 * C);
                    kvq_ctx_free(ctx);
                }
}

static void test_shape_and_param_errors(void **state)
{
    (void)state;
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create("rtn:gran=group,group=48", &ctx), KVQ_ERR_PARAM_RANGE);
    assert_int_equal(kvq_ctx_create("rtn:bits=9", &ctx), KVQ_ERR_PARAM_RANGE);
    float x[2 * 40] = {0}, big[32];
    uint8_t buf[512];
    size_t n;
    int64_t d[2] = {2, 40}, d1[1] = {32};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(kvq_ctx_create(k ? "q4_0" : "q8_0", &ctx), KVQ_OK);
        assert_int_equal(kvq_ctx_encode_payload(ctx, &t, buf, sizeof buf, &n), KVQ_ERR_SHAPE);
        assert_non_null(strstr(kvq_last_error_detail(), "multiple of 32"));
        for (int i = 0; i < 32; i++) big[i] = 1e7f * (float)(i + 1); /* scale beyond f16 */
        kvq_tensor tb = kvq_tensor_view(KVQ_DTYPE_F32, big, 1, d1);
        assert_int_equal(kvq_ctx_encode_payload(ctx, &tb, buf, sizeof buf, &n), KVQ_ERR_PARAM_RANGE);
        kvq_ctx_free(ctx);
    }
}

/* ---- registration ------------------------------------------------------------------- */
int main(void)
{
    size_t nc = kvq_codec_count();
    struct CMUnitTest *tests = calloc(nc + 7, sizeof *tests);
    char (*names)[64] = calloc(nc, 64);
    size_t k = 0;
    for (size_t i = 0; i < nc; i++) {
        const kvq_codec *c = kvq_codec_at(i);
        snprintf(names[i], 64, "conformance/%s", c->name);
        tests[k] = (struct CMUnitTest)cmocka_unit_test_prestate(test_conformance, (void *)c);
        tests[k++].name = names[i];
    }
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_ggml_golden);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_ggml_vs_scalar_ref);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_rounding_helpers);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_packing);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_rtn_sweep);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_shape_and_param_errors);
    int rc = _cmocka_run_group_tests("codecs", tests, k, NULL, NULL);
    free(tests);
    free(names);
    return rc;
}
