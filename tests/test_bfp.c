/*
 * test_bfp.c — block floating point (quant/bfp.c) and K-sort
 * (libkvq/ksort.c), quant-methods.md §3.6:
 *  - golden payload bytes (RNE and RHA), BFP12 levels, saturation, the
 *    all-zero block, the error formula over a (mant, block) sweep,
 *    mxint8 = bfp:mant=8,block=32,round=rha, corrupt payloads refused,
 *    bytes per cached K vector and their split into codes and scales;
 *  - sorting helps a synthetic head with outlier channels in different
 *    blocks, and b = head_dim makes quantization permutation-equivariant;
 *  - K-sort (weight and calibration keys) and the input-channel
 *    rearrangement keep float logits within 1e-5 on the GQA fixture and on
 *    llama-4.6M / stories260K, reproduce the model's own greedy output,
 *    survive a .kvq round trip, order the cached keys, and are refused by
 *    GGUF export and for encoded weights.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "decoder_fixture.h"

#define TOL 1e-5             /* max |Δlogit| / max |logit| (issue 5) */
#define N_TOK 24
#define GREEDY_STEPS 48
#define DATA "../shared/data/"
#define LLAMA46 DATA "models/llama-4.6M/model.bin"
#define S260K DATA "models/stories260K/stories260K.bin"
#define TOK512 DATA "models/stories260K/tok512.bin"
#define VALID DATA "corpus/mixtext/valid.txt"
#define CALIB_BYTES 4000
#define CALIB_TOKENS 96

/* ---- helpers ------------------------------------------------------------------ */
static uint64_t rng = 0x243F6A8885A308D3ull;
static float rnd_normal(void)
{
    double u = 0, v = 0;
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    u = ((rng >> 11) + 0.5) * 0x1p-53;
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    v = (rng >> 11) * 0x1p-53;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* Encodes x[rows][cols] with spec; payload into buf (cap bytes), returns size. */
static size_t encode(const char *spec, const float *x, int64_t rows, int64_t cols, uint8_t *buf, size_t cap)
{
    kvq_ctx *ctx;
    size_t n = 0;
    int64_t d[2] = {rows, cols};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, (void *)x, 2, d);
    assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
    assert_int_equal(kvq_ctx_encode_payload(ctx, &t, buf, cap, &n), KVQ_OK);
    kvq_ctx_free(ctx);
    return n;
}

static void roundtrip(const char *spec, const float *x, int64_t rows, int64_t cols, float *y)
{
    size_t cap = (size_t)(rows * cols) * 2 + 64, n;
    uint8_t *buf = malloc(cap);
    n = encode(spec, x, rows, cols, buf, cap);
    kvq_ctx *ctx;
    int64_t d[2] = {rows, cols};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
    assert_int_equal(kvq_ctx_decode_payload(ctx, buf, n, &t), KVQ_OK);
    kvq_ctx_free(ctx);
    free(buf);
}

/* ---- the format ----------------------------------------------------------------- */
static const float golden_x[16] = {1.0f, -0.5f, 0.25f, 3.0f, 0.0f, 0.75f, -3.5f, 2.0f,
                                   10.0f, -10.0f, 1.0f, 15.9f, -16.0f, 0.0f, 0.5f, 5.0f};

static void test_golden_bytes(void **state)
{
    (void)state;
    /* block 0: amax 3.5 → e 1 (byte 0x80), step 0.5; block 1: amax 16 → e 4
     * (0x83), step 4; significands + 7, two per byte, low nibble first */
    static const uint8_t rne[10] = {0x80, 0x83, 0x69, 0xD7, 0x97, 0xB0, 0x59, 0xB7, 0x73, 0x87};
    static const uint8_t rha[10] = {0x80, 0x83, 0x69, 0xD8, 0x97, 0xB0, 0x4A, 0xB7, 0x73, 0x87};
    uint8_t buf[32];
    assert_int_equal(encode("bfp:mant=4,block=8", golden_x, 1, 16, buf, sizeof buf), 10);
    assert_memory_equal(buf, rne, 10);
    assert_int_equal(encode("bfp:mant=4,block=8,round=rha", golden_x, 1, 16, buf, sizeof buf), 10);
    assert_memory_equal(buf, rha, 10);
    float y[16];
    static const float want[16] = {1.0f, -0.5f, 0.0f, 3.0f, 0.0f, 1.0f, -3.5f, 2.0f,
                                   8.0f, -8.0f, 0.0f, 16.0f, -16.0f, 0.0f, 0.0f, 4.0f};
    roundtrip("bfp:mant=4,block=8", golden_x, 1, 16, y);
    assert_memory_equal(y, want, sizeof want);
}

/* BFP12 levels k·2^(e−2), |k| ≤ 7; unclamped error ≤ step/2; block max
 * relative error < 1/8; [7.5, 8)·step saturates at 7; zeros stay zeros. */
static void test_levels_and_saturation(void **state)
{
    (void)state;
    enum { R = 64, C = 32 };
    float x[R * C], y[R * C];
    for (int i = 0; i < R * C; i++) x[i] = rnd_normal() * ldexpf(1.0f, i / C - 20);
    for (int c = 0; c < C; c++) x[5 * C + c] = 0.0f;                 /* an all-zero block */
    x[7 * C + 3] = 7.75f, x[7 * C + 4] = 1.0f;                        /* row 7: amax 7.75, step 1 */
    for (int c = 5; c < C; c++) x[7 * C + c] = 0.125f * (float)(c % 8);
    roundtrip("bfp", x, R, C, y);
    for (int r = 0; r < R; r++) {
        float amax = 0;
        for (int c = 0; c < C; c++) amax = fmaxf(amax, fabsf(x[r * C + c]));
        if (amax == 0) {
            for (int c = 0; c < C; c++) assert_true(y[r * C + c] == 0.0f && !signbit(y[r * C + c]));
            continue;
        }
        int e;
        frexpf(amax, &e);
        float step = ldexpf(1.0f, e - 1 - 2);
        for (int c = 0; c < C; c++) {
            float k = y[r * C + c] / step, xv = x[r * C + c];
            assert_true(k == truncf(k) && fabsf(k) <= 7);
            if (fabsf(xv) / step < 7.5f) assert_true(fabsf(y[r * C + c] - xv) <= step / 2);
            if (fabsf(xv) == amax) assert_true(fabsf(y[r * C + c] - xv) < amax / 8);
        }
    }
    assert_true(y[7 * C + 3] == 7.0f);
    assert_true(y[7 * C + 4] == 1.0f);
}

/* R² = ((b−1)/4) / (4^(n−2) + (b−1)/4) bounds ‖x̂−x‖²/‖x‖² (quant/bfp.c). */
static void test_error_formula_sweep(void **state)
{
    (void)state;
    enum { R = 48, C = 256 };
    float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) x[i] = rnd_normal() * (i % 37 == 0 ? 30.0f : 1.0f);
    static const int blocks[] = {8, 16, 32, 64, 128};
    for (int n = 2; n <= 8; n++)
        for (int k = 0; k < 5; k++) {
            char spec[64];
            snprintf(spec, sizeof spec, "bfp:mant=%d,block=%d", n, blocks[k]);
            roundtrip(spec, x, R, C, y);
            double b4 = (blocks[k] - 1) / 4.0, bound = sqrt(b4 / (pow(4, n - 2) + b4));
            double r = kvq_err_stats_compute(x, y, R * C).rel_fro;
            if (!(r <= bound)) fail_msg("%s: relative error %.4g above %.4g", spec, r, bound);
        }
    free(x);
    free(y);
}

static void test_mxint8_is_bfp8(void **state)
{
    (void)state;
    enum { R = 16, C = 96 };
    float x[R * C];
    for (int i = 0; i < R * C; i++) x[i] = rnd_normal() * 3.0f;
    uint8_t a[R * C * 2], b[R * C * 2];
    size_t na = encode("mxint8", x, R, C, a, sizeof a), nb = encode("bfp:mant=8,block=32,round=rha", x, R, C, b, sizeof b);
    assert_int_equal(na, (size_t)R * (C + C / 32));  /* 8.25 bits per value */
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
}

/* Decoding (through the kernel table's codes_dequant) equals the format's
 * definition (c − qmax)·2^(e − 127 − (n − 2)) bit for bit, for random valid
 * payloads of every width, a short last block (cols 40, block 16), and
 * exponent bytes down to 0 (subnormal steps). */
static uint32_t next_u32(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 32);
}

static void test_decode_is_definition(void **state)
{
    (void)state;
    enum { COLS = 40, BLK = 16, NBLK = 3 };
    uint8_t buf[NBLK + COLS];
    float y[COLS];
    int64_t d[2] = {1, COLS};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    for (unsigned mant = 2; mant <= 8; mant++) {
        char spec[40];
        snprintf(spec, sizeof spec, "bfp:mant=%u,block=%d", mant, BLK);
        kvq_ctx *ctx;
        assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
        int32_t qmax = (1 << (mant - 1)) - 1;
        for (int rep = 0; rep < 50; rep++) {
            uint8_t codes[COLS];
            for (int b = 0; b < NBLK; b++) buf[b] = (uint8_t)(rep == 0 ? (unsigned)b : next_u32() % 255u);
            for (int i = 0; i < COLS; i++) codes[i] = (uint8_t)(next_u32() % (2u * (unsigned)qmax + 1u));
            memset(buf + NBLK, 0, sizeof buf - NBLK);
            for (int i = 0; i < COLS; i++)
                for (unsigned k = 0; k < mant; k++)
                    if (codes[i] >> k & 1u) buf[NBLK + (i * mant + k) / 8] |= (uint8_t)(1u << ((i * mant + k) % 8));
            size_t n = NBLK + (COLS * mant + 7) / 8;
            assert_int_equal(kvq_ctx_decode_payload(ctx, buf, n, &t), KVQ_OK);
            for (int i = 0; i < COLS; i++) {
                float want = (float)(codes[i] - qmax) * ldexpf(1.0f, buf[i / BLK] - 127 - ((int)mant - 2));
                assert_memory_equal(&y[i], &want, sizeof want);
            }
        }
        kvq_ctx_free(ctx);
    }
}

static void test_corrupt_payloads(void **state)
{
    (void)state;
    uint8_t buf[32];
    float y[16];
    size_t n = encode("bfp:mant=4,block=8", golden_x, 1, 16, buf, sizeof buf);
    kvq_ctx *ctx;
    int64_t d[2] = {1, 16};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    assert_int_equal(kvq_ctx_create("bfp:mant=4,block=8", &ctx), KVQ_OK);
    buf[1] = 0xFF;                                        /* NaN exponent */
    assert_int_equal(kvq_ctx_decode_payload(ctx, buf, n, &t), KVQ_ERR_CORRUPT);
    assert_non_null(strstr(kvq_last_error_detail(), "block 1"));
    buf[1] = 0x83;
    buf[4] = 0xF7;                                        /* code 15 = 2^4 − 1 */
    assert_int_equal(kvq_ctx_decode_payload(ctx, buf, n, &t), KVQ_ERR_CORRUPT);
    assert_non_null(strstr(kvq_last_error_detail(), "invalid code 15"));
    assert_int_equal(kvq_ctx_decode_payload(ctx, buf, n - 1, &t), KVQ_ERR_CORRUPT);
    kvq_ctx_free(ctx);
    assert_int_equal(kvq_ctx_create("bfp:block=12", &ctx), KVQ_ERR_PARAM_RANGE);
    assert_int_equal(kvq_ctx_create("bfp:mant=9", &ctx), KVQ_ERR_PARAM_RANGE);
}

/* §3.6 property 6: a cached K vector costs head_dim·n/8 + head_dim/b bytes;
 * the exponent bytes are reported as scales.  head_dim 8 under block 32
 * (stories260K) is one short block: 4 + 1 bytes, 5 bits per value. */
static void test_kv_page_bytes(void **state)
{
    (void)state;
    enum { P = 16, H = 2, HS = 64 };
    float *x = malloc(sizeof(float) * P * H * HS);
    for (int i = 0; i < P * H * HS; i++) x[i] = rnd_normal();
    int64_t d[3] = {P, H, HS}, d8[3] = {P, H, 8};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 3, d), t8 = kvq_tensor_view(KVQ_DTYPE_F32, x, 3, d8);
    kvq_ctx *ctx;
    uint8_t buf[4096];
    size_t n;
    kvq_codec_parts parts;
    assert_int_equal(kvq_ctx_create("bfp:mant=4,block=32", &ctx), KVQ_OK);
    assert_int_equal(kvq_ctx_encode_payload(ctx, &t, buf, sizeof buf, &n), KVQ_OK);
    assert_int_equal(n, (size_t)P * H * (HS * 4 / 8 + HS / 32));
    assert_int_equal(kvq_ctx_payload_parts(ctx, buf, n, &t.shape, &parts), KVQ_OK);
    assert_int_equal(parts.scales, (uint64_t)P * H * 2);
    assert_int_equal(parts.codes, (uint64_t)P * H * 32);
    assert_int_equal(kvq_ctx_encode_payload(ctx, &t8, buf, sizeof buf, &n), KVQ_OK);
    assert_int_equal(n, (size_t)P * H * (4 + 1));
    kvq_ctx_free(ctx);
    free(x);
}

/* Applies channel order perm[cols] to every row: out[:, j] = x[:, perm[j]]. */
static void permute_cols(const float *x, int rows, int cols, const int *perm, float *out)
{
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) out[r * cols + j] = x[r * cols + perm[j]];
}

/* §3.6 properties 4 and 5. */
static void test_sorting_outliers(void **state)
{
    (void)state;
    enum { T = 64, HD = 128 };
    static const int outl[4] = {5, 40, 77, 100};      /* one in each 32-block */
    float *x = malloc(sizeof(float) * T * HD), *px = malloc(sizeof(float) * T * HD);
    float *y = malloc(sizeof(float) * T * HD), *py = malloc(sizeof(float) * T * HD);
    for (int i = 0; i < T * HD; i++) x[i] = rnd_normal();
    for (int t = 0; t < T; t++)
        for (int k = 0; k < 4; k++) x[t * HD + outl[k]] *= 20.0f;
    int perm[HD], p = 0;                               /* outliers first, others in order */
    for (int k = 0; k < 4; k++) perm[p++] = outl[k];
    for (int c = 0; c < HD; c++)
        if (c != 5 && c != 40 && c != 77 && c != 100) perm[p++] = c;
    permute_cols(x, T, HD, perm, px);
    roundtrip("bfp:mant=4,block=32", x, T, HD, y);
    roundtrip("bfp:mant=4,block=32", px, T, HD, py);
    double e_unsorted = kvq_err_stats_compute(x, y, T * HD).rmse, e_sorted = kvq_err_stats_compute(px, py, T * HD).rmse;
    print_message("synthetic head 128, 4 outliers: RMSE unsorted %.4f, sorted %.4f\n", e_unsorted, e_sorted);
    assert_true(e_sorted < 0.85 * e_unsorted);
    /* b = head_dim: one block per vector, so quant(Px) = P·quant(x) exactly */
    roundtrip("bfp:mant=4,block=128", x, T, HD, y);
    roundtrip("bfp:mant=4,block=128", px, T, HD, py);
    permute_cols(y, T, HD, perm, x);
    assert_memory_equal(x, py, sizeof(float) * T * HD);
    free(x);
    free(px);
    free(y);
    free(py);
}

/* ---- K-sort on models ---------------------------------------------------------------- */
static float *logits_of(const kvq_model *m, const int *toks, int n)
{
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    kvq_decoder *d = NULL;
    assert_int_equal(kvq_decoder_create(m, &o, &d), KVQ_OK);
    int vocab = kvq_model_config_get(m)->vocab_size;
    float *out = malloc((size_t)n * (size_t)vocab * sizeof *out);
    assert_int_equal(kvq_decoder_forward_seq(d, toks, n, 0, out), KVQ_OK);
    kvq_decoder_free(d);
    return out;
}

static void test_tokens(int vocab, int *toks, int n)
{
    for (int i = 0; i < n; i++) toks[i] = i ? (3 + 11 * i) % vocab : 1;
}

static double ksort_err(const kvq_model *a, const kvq_model *b)
{
    int vocab = kvq_model_config_get(a)->vocab_size, toks[N_TOK];
    test_tokens(vocab, toks, N_TOK);
    float *la = logits_of(a, toks, N_TOK), *lb = logits_of(b, toks, N_TOK);
    double e = fx_rel_err(lb, la, N_TOK * vocab);
    free(la);
    free(lb);
    return e;
}

/* The plan sorts each head's pairs by descending key. */
static void check_plan_sorted(const kvq_model *m, kvq_ksort_key key, const kvq_calib *cal, const kvq_model *sorted)
{
    const kvq_model_config *c = kvq_model_config_get(m);
    int half = c->head_size / 2, per = c->n_kv_heads * half;
    int *perm = malloc(sizeof(int) * (size_t)(c->n_layers * per)), *pairs = malloc(sizeof(int) * (size_t)per);
    double *keys = malloc(sizeof(double) * (size_t)per);
    assert_int_equal(kvq_ksort_plan(m, key, cal, perm), KVQ_OK);
    for (int l = 0; l < c->n_layers; l++) {
        assert_int_equal(kvq_ksort_pair_keys(m, l, key, cal, keys), KVQ_OK);
        assert_int_equal(kvq_model_rope_pairs(sorted, l, pairs), KVQ_OK);
        for (int i = 0; i < per; i++) {
            const int *pl = perm + l * per;
            assert_int_equal(pairs[i], pl[i]);   /* frequency travels with the pair */
            if (i % half) assert_true(keys[(i / half) * half + pl[i]] <= keys[(i / half) * half + pl[i - 1]]);
        }
    }
    free(perm);
    free(pairs);
    free(keys);
}

static kvq_model *ksorted(const kvq_model *m, int qk, kvq_ksort_key key, const kvq_calib *cal, int inputs)
{
    kvq_ksort_opts o = {.qk = qk, .key = key, .calib = cal, .inputs = inputs};
    kvq_model *out = NULL;
    kvq_err e = kvq_model_ksort(m, &o, &out);
    if (e) fail_msg("ksort: %s: %s", kvq_strerror(e), kvq_last_error_detail());
    return out;
}

static void test_fixture_ksort(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 0, 51), KVQ_OK);   /* 4 heads over 2 KV heads: GQA */
    int toks[FX_SEQ];
    test_tokens(FX_VOCAB, toks, FX_SEQ);
    kvq_calib *cal = NULL;
    assert_int_equal(kvq_calib_create(fx.model, toks, FX_SEQ, 0, 1, &cal), KVQ_OK);
    for (int variant = 0; variant < 4; variant++) {
        kvq_ksort_key key = variant & 1 ? KVQ_KSORT_CALIB : KVQ_KSORT_WEIGHT;
        kvq_model *s = ksorted(fx.model, 1, key, cal, variant >= 2);
        double e = ksort_err(fx.model, s);
        print_message("fixture, key %s, inputs %d: max |dlogit| / max |logit| = %.2e\n",
                      key == KVQ_KSORT_CALIB ? "calib" : "weight", variant >= 2, e);
        assert_true(e < TOL);
        assert_int_equal(kvq_model_has_rope_pairs(s), 1);
        check_plan_sorted(fx.model, key, cal, s);
        kvq_model_free(s);
    }
    kvq_model *s = ksorted(fx.model, 0, KVQ_KSORT_WEIGHT, NULL, 1);   /* inputs only: no table */
    assert_true(ksort_err(fx.model, s) < TOL);
    assert_int_equal(kvq_model_has_rope_pairs(s), 0);
    kvq_model_free(s);
    kvq_model *half = NULL;                                           /* HF pairs (j, j + hs/2) */
    assert_int_equal(fx_reload(fx.model, KVQ_FORMAT_SAFETENSORS, "safetensors", &half), KVQ_OK);
    assert_int_equal(kvq_model_config_get(half)->rope, KVQ_ROPE_HALF);
    s = ksorted(half, 1, KVQ_KSORT_WEIGHT, NULL, 1);
    double eh = ksort_err(half, s);
    print_message("fixture, HF pair layout: max |dlogit| / max |logit| = %.2e\n", eh);
    assert_true(eh < TOL);
    check_plan_sorted(half, KVQ_KSORT_WEIGHT, NULL, s);
    kvq_model *s2 = ksorted(s, 1, KVQ_KSORT_WEIGHT, NULL, 0);         /* sorting twice composes tables */
    assert_true(ksort_err(half, s2) < TOL);
    kvq_model_free(s2);
    kvq_model_free(s);
    kvq_model_free(half);
    kvq_calib_free(cal);
    fx_free(&fx);
}

/* .kvq keeps the pair table (identical logits after reload); GGUF and
 * safetensors refuse it; encoded weights and bad plans are refused. */
static void test_ksort_files_and_errors(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 1, 52), KVQ_OK);
    kvq_model *s = ksorted(fx.model, 1, KVQ_KSORT_WEIGHT, NULL, 1), *back = NULL;
    assert_int_equal(fx_reload(s, KVQ_FORMAT_KVQ, "kvq", &back), KVQ_OK);
    int toks[N_TOK];
    test_tokens(FX_VOCAB, toks, N_TOK);
    float *a = logits_of(s, toks, N_TOK), *b = logits_of(back, toks, N_TOK);
    assert_memory_equal(a, b, sizeof(float) * N_TOK * FX_VOCAB);
    free(a);
    free(b);
    /* an explicit reversal applied twice restores the weights and composes
     * the pair tables back to the identity: logits bit-identical */
    int rev[FX_LAYERS * FX_KV * FX_HS / 2], pairs[FX_KV * FX_HS / 2];
    for (int i = 0; i < FX_LAYERS * FX_KV * FX_HS / 2; i++) rev[i] = FX_HS / 2 - 1 - i % (FX_HS / 2);
    kvq_ksort_opts orv = {.qk = 1, .perm = rev};
    kvq_model *r1 = NULL, *r2 = NULL;
    assert_int_equal(kvq_model_ksort(fx.model, &orv, &r1), KVQ_OK);
    assert_int_equal(kvq_model_rope_pairs(r1, 1, pairs), KVQ_OK);
    assert_int_equal(pairs[0], FX_HS / 2 - 1);
    assert_int_equal(kvq_model_ksort(r1, &orv, &r2), KVQ_OK);
    assert_int_equal(kvq_model_rope_pairs(r2, 1, pairs), KVQ_OK);
    for (int i = 0; i < FX_KV * FX_HS / 2; i++) assert_int_equal(pairs[i], i % (FX_HS / 2));
    a = logits_of(fx.model, toks, N_TOK);
    b = logits_of(r2, toks, N_TOK);
    assert_memory_equal(a, b, sizeof(float) * N_TOK * FX_VOCAB);
    free(a);
    free(b);
    kvq_model_free(r1);
    kvq_model_free(r2);
    kvq_model *bad = NULL;
    assert_int_equal(fx_reload(s, KVQ_FORMAT_GGUF, "gguf", &bad), KVQ_ERR_UNSUPPORTED);
    assert_int_equal(fx_reload(s, KVQ_FORMAT_SAFETENSORS, "safetensors", &bad), KVQ_ERR_UNSUPPORTED);
    int perm[FX_LAYERS * FX_KV * FX_HS / 2];
    for (int i = 0; i < FX_LAYERS * FX_KV * FX_HS / 2; i++) perm[i] = i % (FX_HS / 2);
    perm[3] = 0;                                                     /* not a permutation */
    kvq_ksort_opts o = {.qk = 1, .perm = perm};
    assert_int_equal(kvq_model_ksort(fx.model, &o, &bad), KVQ_ERR_ARG);
    kvq_ksort_opts oc = {.qk = 1, .key = KVQ_KSORT_CALIB};
    assert_int_equal(kvq_model_ksort(fx.model, &oc, &bad), KVQ_ERR_ARG); /* calib key, no data */
    kvq_quant_opts q = {.spec = "q8_0"};
    kvq_model *enc = NULL;
    assert_int_equal(kvq_model_quantize(fx.model, &q, &enc, NULL), KVQ_OK);
    assert_int_equal(kvq_model_ksort(enc, &o, &bad), KVQ_ERR_ARG);
    perm[3] = 3;
    assert_int_equal(kvq_model_ksort(enc, &o, &bad), KVQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(kvq_last_error_detail(), "before quantizing"));
    kvq_model_free(enc);
    kvq_model_free(back);
    kvq_model_free(s);
    fx_free(&fx);
}

/* Greedy tokens of m from BOS. */
static void greedy(const kvq_model *m, int *out, int n)
{
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    kvq_decoder *d = NULL;
    assert_int_equal(kvq_decoder_create(m, &o, &d), KVQ_OK);
    int vocab = kvq_model_config_get(m)->vocab_size, tok = KVQ_TOKEN_BOS;
    for (int pos = 0; pos < n; pos++) {
        float *lg;
        assert_int_equal(kvq_decoder_forward(d, tok, pos, &lg), KVQ_OK);
        int best = 0;
        for (int i = 1; i < vocab; i++) best = lg[i] > lg[best] ? i : best;
        out[pos] = tok = best;
    }
    kvq_decoder_free(d);
}

/* Calibration tokens: the start of the held-out text. */
static int *calib_tokens(const kvq_model *m, size_t *n)
{
    kvq_tokenizer *tk = NULL;
    FILE *f = fopen(VALID, "rb");
    if (!f || kvq_tokenizer_load(TOK512, kvq_model_config_get(m)->vocab_size, &tk) != KVQ_OK) {
        if (f) fclose(f);
        return NULL;
    }
    char *text = calloc(CALIB_BYTES + 1, 1);
    size_t got = fread(text, 1, CALIB_BYTES, f);
    fclose(f);
    text[got] = 0;
    int *toks = malloc(kvq_tokenizer_encode_bound(got) * sizeof *toks);
    assert_int_equal(kvq_tokenizer_encode(tk, text, 1, 0, toks, kvq_tokenizer_encode_bound(got), n), KVQ_OK);
    free(text);
    kvq_tokenizer_free(tk);
    return toks;
}

/* Mean pair magnitude of the cached keys is non-increasing along each head
 * of a calib-key K-sorted model run over its calibration text. */
static void check_cached_keys_sorted(const kvq_model *s, const int *toks, int n)
{
    const kvq_model_config *c = kvq_model_config_get(s);
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    kvq_decoder *d = NULL;
    assert_int_equal(kvq_decoder_create(s, &o, &d), KVQ_OK);
    assert_int_equal(kvq_decoder_forward_seq(d, toks, n, 0, NULL), KVQ_OK);
    int kvd = c->n_kv_heads * c->head_size, half = c->head_size / 2;
    float *k = malloc(sizeof(float) * (size_t)(n * kvd));
    double *mag = calloc((size_t)(c->n_kv_heads * half), sizeof *mag);
    assert_int_equal(kvq_cache_read(kvq_decoder_cache(d), 0, 0, n, k, NULL), KVQ_OK);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < c->n_kv_heads * half; i++) {
            int g = i / half, j = i % half, a = c->rope == KVQ_ROPE_ADJACENT ? 2 * j : j,
                b = c->rope == KVQ_ROPE_ADJACENT ? 2 * j + 1 : j + half;
            float ka = k[t * kvd + g * c->head_size + a], kb = k[t * kvd + g * c->head_size + b];
            mag[i] += sqrt((double)ka * ka + (double)kb * kb) / n;
        }
    for (int i = 0; i < c->n_kv_heads * half; i++)
        if (i % half) assert_true(mag[i] <= mag[i - 1] * (1 + 1e-4));
    print_message("layer 0, KV head 0: cached pair magnitude %.3f (first) .. %.3f (last)\n", mag[0], mag[half - 1]);
    free(k);
    free(mag);
    kvq_decoder_free(d);
}

static void real_model(const char *path)
{
    kvq_model *m = NULL;
    size_t nt = 0;
    int *toks = NULL;
    if (kvq_model_load(path, &m) != KVQ_OK || !(toks = calib_tokens(m, &nt))) {
        print_message("skipped: %s or %s not available\n", path, VALID);
        kvq_model_free(m);
        skip();
    }
    int n = nt < CALIB_TOKENS ? (int)nt : CALIB_TOKENS;
    kvq_calib *cal = NULL;
    assert_int_equal(kvq_calib_create(m, toks, (size_t)n, n, 1, &cal), KVQ_OK);
    kvq_model *sw = ksorted(m, 1, KVQ_KSORT_WEIGHT, NULL, 1), *sc = ksorted(m, 1, KVQ_KSORT_CALIB, cal, 0);
    double ew = ksort_err(m, sw), ec = ksort_err(m, sc);
    print_message("%s: max |dlogit| / max |logit|: weight key + inputs %.2e, calib key %.2e\n", path, ew, ec);
    assert_true(ew < TOL && ec < TOL);
    check_plan_sorted(m, KVQ_KSORT_CALIB, cal, sc);
    check_cached_keys_sorted(sc, toks, n);
    int g0[GREEDY_STEPS], g1[GREEDY_STEPS], g2[GREEDY_STEPS];
    greedy(m, g0, GREEDY_STEPS);
    greedy(sw, g1, GREEDY_STEPS);
    greedy(sc, g2, GREEDY_STEPS);
    assert_memory_equal(g0, g1, sizeof g0);   /* its own greedy output, unchanged */
    assert_memory_equal(g0, g2, sizeof g0);
    kvq_model_free(sw);
    kvq_model_free(sc);
    kvq_calib_free(cal);
    free(toks);
    kvq_model_free(m);
}

static void test_llama46_ksort(void **state)
{
    (void)state;
    real_model(LLAMA46);
}

static void test_stories260k_ksort(void **state)
{
    (void)state;
    real_model(S260K);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_bytes),        cmocka_unit_test(test_levels_and_saturation),
        cmocka_unit_test(test_error_formula_sweep), cmocka_unit_test(test_mxint8_is_bfp8),
        cmocka_unit_test(test_decode_is_definition),
        cmocka_unit_test(test_corrupt_payloads),    cmocka_unit_test(test_kv_page_bytes),
        cmocka_unit_test(test_sorting_outliers),    cmocka_unit_test(test_fixture_ksort),
        cmocka_unit_test(test_ksort_files_and_errors), cmocka_unit_test(test_llama46_ksort),
        cmocka_unit_test(test_stories260k_ksort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
