/*
 * test_minicache.c — the MiniCache depth policy (compress/minicache.c,
 * cache-methods.md §2.5) through the KV cache: identical and scaled layers
 * are lossless and hold no retained token; every restored token keeps its
 * norm; γ = 1 retains nothing and a smaller γ never retains fewer tokens;
 * the cap bounds the retained fraction; retained vectors are exact (f32)
 * or f16-rounded; t = 0 gives layer l−1 its own direction; the bytes the
 * cache reports match the stored layout; keep_decoded copies of the lower
 * layer follow the merge; bad arguments are refused with clear errors; and
 * on llama-4.6M MiniCache over a 4-bit codec runs inside the decoder.
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

#define MODEL "../shared/data/models/llama-4.6M/model.bin"
#define L  4        /* layers: pairs (2, 3) with start = 2, (0, 1) with 0 */
#define H  2
#define D  16
#define KD (H * D)
#define P  8
#define NT 32       /* tokens: 4 pages */
#define NORM_TOL 1e-5

static float g_k[L][NT * KD], g_v[L][NT * KD];

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * 0x1p-23) - 1.0f;
}

/* Layer l = layer 0 scaled by scale[l] plus noise·(random). */
static void make_layers(const float *scale, float noise)
{
    for (int i = 0; i < NT * KD; i++) g_k[0][i] = rnd(), g_v[0][i] = rnd();
    for (int l = 1; l < L; l++)
        for (int i = 0; i < NT * KD; i++) {
            g_k[l][i] = scale[l] * g_k[0][i] + noise * rnd();
            g_v[l][i] = scale[l] * g_v[0][i] + noise * rnd();
        }
}

static kvq_cache *run(const char *spec, const char *arg, int keep)
{
    kvq_cache_config cfg = kvq_cache_config_default(L, H, D, NT);
    cfg.page = P;
    cfg.k_spec = cfg.v_spec = spec;
    cfg.depth = &kvq_depth_minicache;
    cfg.depth_arg = arg;
    cfg.keep_decoded = keep;
    kvq_cache *c = NULL;
    kvq_err e = kvq_cache_create(&cfg, &c);
    if (e) fail_msg("create: %s", kvq_last_error_detail());
    for (int t = 0; t < NT; t += 4) /* layer-major steps of 4 tokens, as a decoder does */
        for (int l = 0; l < L; l++)
            assert_int_equal(kvq_cache_append(c, l, g_k[l] + t * KD, g_v[l] + t * KD, 4), KVQ_OK);
    return c;
}

static double norm(const float *x)
{
    double s = 0;
    for (int i = 0; i < D; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

/* Max relative error of layer l against the originals; norms checked. */
static double check_layer(kvq_cache *c, int l, int check_norms)
{
    static float k[NT * KD], v[NT * KD];
    assert_int_equal(kvq_cache_read(c, l, 0, NT, k, v), KVQ_OK);
    double worst = 0;
    for (int r = 0; r < NT * H; r++)
        for (int s = 0; s < 2; s++) {
            const float *x = (s ? g_v[l] : g_k[l]) + r * D, *y = (s ? v : k) + r * D;
            double nx = norm(x), err = 0;
            for (int i = 0; i < D; i++) err += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
            worst = fmax(worst, sqrt(err) / nx);
            if (check_norms && !(fabs(norm(y) - nx) <= NORM_TOL * nx))
                fail_msg("layer %d row %d: norm %.9g, original %.9g", l, r, norm(y), nx);
        }
    return worst;
}

static void stats(kvq_cache *c, kvq_cache_stats *s) { assert_int_equal(kvq_cache_stats_get(c, s), KVQ_OK); }

static void test_identical_and_scaled(void **st)
{
    (void)st;
    static const float same[L] = {1, 1, 1, 1}, scaled[L] = {1, 2.5f, 0.5f, 3};
    for (int k = 0; k < 2; k++) {
        make_layers(k ? scaled : same, 0);
        kvq_cache *c = run("f32", "start=0", 0);
        for (int l = 0; l < L; l++) assert_true(check_layer(c, l, 1) < 1e-6);
        kvq_cache_stats s;
        stats(c, &s);
        assert_int_equal(s.depth_vectors, (uint64_t)2 * (NT / P) * P * H * 2); /* 2 pairs, K and V */
        assert_int_equal(s.depth_retained, 0);
        kvq_cache_free(c);
    }
}

/* Different layers: norms exact; retention monotone in γ; cap holds. */
static void test_norms_and_retention(void **st)
{
    (void)st;
    static const float scale[L] = {1, 1, 1, 1};
    make_layers(scale, 0.6f);
    static const char *gammas[] = {"1", "0.5", "0.1", "0"};
    uint64_t prev = 0;
    for (int i = 0; i < 4; i++) {
        char arg[96];
        snprintf(arg, sizeof arg, "start=0,cap=1,floor=0,gamma=%s", gammas[i]);
        kvq_cache *c = run("f16", arg, 0);
        for (int l = 0; l < L; l++) check_layer(c, l, 1);
        kvq_cache_stats s;
        stats(c, &s);
        if (i == 0) assert_int_equal(s.depth_retained, 0);
        assert_true(s.depth_retained >= prev);
        prev = s.depth_retained;
        kvq_cache_free(c);
    }
    assert_true(prev > 0);
    kvq_cache *c = run("f16", "start=0,cap=0.25,floor=0,gamma=0", 0); /* ≤ 2 of 8 per page and head */
    kvq_cache_stats s;
    stats(c, &s);
    assert_true(s.depth_retained * 4 <= s.depth_vectors);
    assert_true(s.depth_retained > 0);
    kvq_cache_free(c);
}

/* With everything retained (cap 1, γ 0 keeps all but the closest token of
 * each page and head), retained rows are bit-exact with rbits=32. */
static void test_retained_exact_and_t0(void **st)
{
    (void)st;
    static const float scale[L] = {1, 1, 1, 1};
    make_layers(scale, 0.6f);
    kvq_cache *c = run("f32", "start=0,cap=1,floor=0,gamma=0,rbits=32", 0);
    static float k[NT * KD], v[NT * KD];
    for (int l = 0; l < L; l++) {
        assert_int_equal(kvq_cache_read(c, l, 0, NT, k, v), KVQ_OK);
        int exact = 0;
        for (int r = 0; r < NT * H; r++) exact += !memcmp(k + r * D, g_k[l] + r * D, D * sizeof(float));
        assert_true(exact >= NT * H - (NT / P) * H); /* all but one token per page and head */
    }
    kvq_cache_free(c);
    /* t = 0: layer l−1 keeps its own direction (exact up to rounding) */
    c = run("f32", "start=0,t=0,cap=0", 0);
    assert_true(check_layer(c, 0, 1) < 1e-6);
    assert_true(check_layer(c, 2, 1) < 1e-6);
    assert_true(check_layer(c, 1, 1) > 0.1); /* layer l got layer l−1's direction */
    kvq_cache_free(c);
}

/* Bytes: per pair page and side, direction payload (f16: P·KD·2), both
 * layers' f32 norms (2·P·H·4) and retained vectors (u16 + 2·D·2 each). */
static void test_bytes(void **st)
{
    (void)st;
    static const float scale[L] = {1, 1, 1, 1};
    make_layers(scale, 0.6f);
    kvq_cache *c = run("f16", "start=2,cap=0.25,floor=0,gamma=0", 0);
    kvq_cache_stats s;
    stats(c, &s);
    const uint64_t pages = NT / P, merged = pages * 2; /* pair pages × sides */
    /* layers 0, 1 unmerged: f16 pages of both sides */
    assert_int_equal(s.bytes_payload, 2 * pages * 2 * P * KD * 2 + merged * P * KD * 2);
    assert_int_equal(s.bytes_scales, merged * 2 * P * H * 4);
    assert_int_equal(s.bytes_sparse, s.depth_retained * (2 + 2 * D * 2));
    assert_int_equal(s.bytes_meta, (uint64_t)L * pages * 2 * KVQ_CACHE_PAGE_META);
    assert_int_equal(s.bytes_window, 0);
    kvq_cache_free(c);
}

/* keep_decoded: the lower layer's decoded copy follows the merge. */
static void test_keep_decoded(void **st)
{
    (void)st;
    static const float scale[L] = {1, 1, 1, 1};
    make_layers(scale, 0.6f);
    kvq_cache *a = run("f16", "start=0", 0), *b = run("f16", "start=0", 1);
    static float ka[NT * KD], kb[NT * KD], q[2 * H * D], oa[2 * H * D], ob[2 * H * D];
    for (int i = 0; i < 2 * H * D; i++) q[i] = rnd();
    for (int l = 0; l < L; l++) {
        assert_int_equal(kvq_cache_read(a, l, 0, NT, ka, NULL), KVQ_OK);
        assert_int_equal(kvq_cache_read(b, l, 0, NT, kb, NULL), KVQ_OK);
        assert_memory_equal(ka, kb, sizeof ka);
        assert_int_equal(kvq_cache_attend(a, l, q, 2 * H, NT, oa), KVQ_OK);
        assert_int_equal(kvq_cache_attend(b, l, q, 2 * H, NT, ob), KVQ_OK);
        assert_memory_equal(oa, ob, sizeof oa);
    }
    kvq_cache_free(a);
    kvq_cache_free(b);
}

/* Truncating either layer of a pair (HF crop) and appending again: pages
 * before the cut read as before, the re-sealed pages merge again, every
 * page is accounted for once, and nothing leaks (ASan). */
static void test_truncate(void **st)
{
    (void)st;
    static const float scale[L] = {1, 1, 1, 1};
    make_layers(scale, 0.3f);
    kvq_cache *c = run("f16", "start=0", 0);
    static float before[NT * KD], after[NT * KD];
    assert_int_equal(kvq_cache_read(c, 1, 0, P, before, NULL), KVQ_OK);
    for (int l = 0; l < 2; l++) assert_int_equal(kvq_cache_truncate(c, l, 12 - 4 * l), KVQ_OK); /* 12, 8 */
    assert_int_equal(kvq_cache_append(c, 0, g_k[0] + 12 * KD, g_v[0] + 12 * KD, NT - 12), KVQ_OK);
    assert_int_equal(kvq_cache_append(c, 1, g_k[1] + 8 * KD, g_v[1] + 8 * KD, NT - 8), KVQ_OK);
    assert_int_equal(kvq_cache_read(c, 1, 0, P, after, NULL), KVQ_OK);
    assert_memory_equal(before, after, P * KD * sizeof(float));
    for (int l = 0; l < L; l++) check_layer(c, l, 1);
    kvq_cache_stats s;
    stats(c, &s);
    assert_int_equal(s.bytes_scales, (uint64_t)2 * (NT / P) * 2 * 2 * P * H * 4); /* 2 pairs × pages × sides */
    assert_int_equal(kvq_cache_clear(c), KVQ_OK);
    stats(c, &s);
    assert_int_equal(s.bytes_total, 0);
    kvq_cache_free(c);
}

static void test_bad_args(void **st)
{
    (void)st;
    static const char *bad[] = {"start=x", "gamma=2", "bogus=1", "rbits=24", "t"};
    static const kvq_err want[] = {KVQ_ERR_SPEC, KVQ_ERR_PARAM_RANGE, KVQ_ERR_SPEC, KVQ_ERR_PARAM_RANGE, KVQ_ERR_SPEC};
    for (int i = 0; i < 5; i++) {
        kvq_cache_config cfg = kvq_cache_config_default(L, H, D, NT);
        cfg.page = P;
        cfg.k_spec = cfg.v_spec = "f16";
        cfg.depth = &kvq_depth_minicache;
        cfg.depth_arg = bad[i];
        kvq_cache *c = NULL;
        assert_int_equal(kvq_cache_create(&cfg, &c), want[i]);
        assert_null(c);
        assert_non_null(strstr(kvq_last_error_detail(), "minicache"));
    }
    assert_ptr_equal(kvq_depth_policy_find("minicache"), &kvq_depth_minicache);
    assert_null(kvq_depth_policy_find("maxicache"));
}

/* Real model: MiniCache over 4-bit KIVI from half depth inside the decoder;
 * logits stay finite and close to the f32 cache's. */
static void test_real_model(void **st)
{
    (void)st;
    kvq_model *m = NULL;
    if (kvq_model_load(MODEL, &m)) {
        print_message("[  SKIPPED ] %s absent\n", MODEL);
        skip();
    }
    const kvq_model_config *mc = kvq_model_config_get(m);
    enum { N_TOK = 96 };
    int ids[N_TOK];
    for (int i = 0; i < N_TOK; i++) ids[i] = 3 + (i * 37) % 400;
    static float base[N_TOK * 512], cand[N_TOK * 512];
    assert_true(mc->vocab_size == 512);
    kvq_decoder *d = NULL;
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    assert_int_equal(kvq_decoder_create(m, &o, &d), KVQ_OK);
    assert_int_equal(kvq_decoder_forward_seq(d, ids, N_TOK, 0, base), KVQ_OK);
    kvq_decoder_free(d);
    kvq_cache_config cfg = kvq_cache_config_default(mc->n_layers, mc->n_kv_heads, mc->head_size, mc->seq_len);
    cfg.page = 32;
    cfg.k_spec = "kivi:bits=4";
    cfg.v_spec = "kivi:bits=4,axis=token";
    cfg.depth = &kvq_depth_minicache;
    o.cache_cfg = &cfg;
    assert_int_equal(kvq_decoder_create(m, &o, &d), KVQ_OK);
    assert_int_equal(kvq_decoder_forward_seq(d, ids, N_TOK, 0, cand), KVQ_OK);
    kvq_cache_stats s;
    assert_int_equal(kvq_cache_stats_get(kvq_decoder_cache(d), &s), KVQ_OK);
    assert_int_equal(s.depth_vectors, (uint64_t)(N_TOK / 32) * 32 * mc->n_kv_heads * 2); /* one pair: (3, 4) */
    assert_true(s.depth_retained <= s.depth_vectors / 10);
    double diff = 0, mag = 0;
    for (int i = 0; i < N_TOK * 512; i++) {
        assert_true(isfinite(cand[i]));
        diff += fabs((double)cand[i] - base[i]);
        mag += fabs((double)base[i]);
    }
    assert_true(diff > 0 && diff < 0.2 * mag);
    kvq_decoder_free(d);
    kvq_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical_and_scaled), cmocka_unit_test(test_norms_and_retention),
        cmocka_unit_test(test_retained_exact_and_t0), cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_keep_decoded),         cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_real_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
