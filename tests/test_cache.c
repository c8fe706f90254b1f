/*
 * test_cache.c — the KV cache (libkvq/cache.c): exact f32 storage, paged
 * f32 attention bit-identical to the unpaged cache, window/page sealing at
 * the boundaries, per-layer specs, byte accounting equal to what is
 * stored, 8-bit RTN reconstruction error, argument errors, truncation, and
 * the depth-policy / prefix-store hook points; kivi and gear caches attend
 * through their fused page slots (no keep_decoded), row codecs score
 * through their row kernels, and both agree with the decoded-copy path
 * within FUSED_TOL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "kvq.h"
#include "cache_internal.h" /* the fused-attention slot test */
#include "quant/codecs.h"

#define N_LAYERS 3
#define N_KV 2
#define HS 8
#define KV_DIM (N_KV * HS)
#define N_HEADS 4                 /* GQA: two query heads per KV head */
#define MAX_TOK 64
#define SEED 12345u

/* Deterministic values in [-2, 2) from an LCG (Numerical Recipes). */
static float next_val(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 16384.0f - 2.0f;
}

static void fill(float *x, size_t n, uint32_t seed)
{
    uint32_t s = seed;
    for (size_t i = 0; i < n; i++) x[i] = next_val(&s);
}

/* K/V of every layer: [layer][MAX_TOK][KV_DIM]. */
static float g_k[N_LAYERS][MAX_TOK * KV_DIM], g_v[N_LAYERS][MAX_TOK * KV_DIM];
static float g_q[MAX_TOK][N_HEADS * HS];

static int setup_data(void **state)
{
    (void)state;
    for (int l = 0; l < N_LAYERS; l++) {
        fill(g_k[l], MAX_TOK * KV_DIM, SEED + 2u * (uint32_t)l);
        fill(g_v[l], MAX_TOK * KV_DIM, SEED + 2u * (uint32_t)l + 1u);
    }
    fill(&g_q[0][0], sizeof g_q / sizeof(float), SEED + 99u);
    return 0;
}

static kvq_cache *make_cache(int window, int page, const char *ks, const char *vs, int keep_decoded)
{
    kvq_cache_config cfg = kvq_cache_config_default(N_LAYERS, N_KV, HS, MAX_TOK);
    cfg.window = window;
    cfg.page = page;
    cfg.k_spec = ks;
    cfg.v_spec = vs;
    cfg.keep_decoded = keep_decoded;
    kvq_cache *c = NULL;
    assert_int_equal(kvq_cache_create(&cfg, &c), KVQ_OK);
    return c;
}

/* Decoder-like use: for each token, append to every layer, then attend. */
static void run_steps(kvq_cache *c, int n, float out[N_LAYERS][MAX_TOK][N_HEADS * HS])
{
    for (int t = 0; t < n; t++)
        for (int l = 0; l < N_LAYERS; l++) {
            assert_int_equal(kvq_cache_append(c, l, g_k[l] + t * KV_DIM, g_v[l] + t * KV_DIM, 1), KVQ_OK);
            assert_int_equal(kvq_cache_attend(c, l, g_q[t], N_HEADS, t + 1, out[l][t]), KVQ_OK);
        }
}

static float g_out_a[N_LAYERS][MAX_TOK][N_HEADS * HS], g_out_b[N_LAYERS][MAX_TOK][N_HEADS * HS];

/* Naive attention written independently, in the documented order. */
static void ref_attend(int l, const float *q, int n_ctx, float *out)
{
    float att[MAX_TOK];
    for (int h = 0; h < N_HEADS; h++) {
        int kh = h / (N_HEADS / N_KV);
        float max = -INFINITY, sum = 0.0f;
        for (int t = 0; t < n_ctx; t++) {
            float s = 0.0f;
            for (int i = 0; i < HS; i++) s += q[h * HS + i] * g_k[l][t * KV_DIM + kh * HS + i];
            att[t] = s / sqrtf((float)HS);
            if (att[t] > max) max = att[t];
        }
        for (int t = 0; t < n_ctx; t++) {
            att[t] = expf(att[t] - max);
            sum += att[t];
        }
        for (int t = 0; t < n_ctx; t++) att[t] /= sum;
        for (int i = 0; i < HS; i++) out[h * HS + i] = 0.0f;
        for (int t = 0; t < n_ctx; t++)
            for (int i = 0; i < HS; i++) out[h * HS + i] += att[t] * g_v[l][t * KV_DIM + kh * HS + i];
    }
}

static void test_f32_exact(void **state)
{
    (void)state;
    kvq_cache *c = make_cache(0, 1, NULL, NULL, 0);
    run_steps(c, 40, g_out_a);
    float k[40 * KV_DIM], v[40 * KV_DIM], ref[N_HEADS * HS];
    for (int l = 0; l < N_LAYERS; l++) {
        assert_int_equal(kvq_cache_len(c, l), 40);
        assert_int_equal(kvq_cache_read(c, l, 0, 40, k, v), KVQ_OK);
        assert_memory_equal(k, g_k[l], sizeof k);
        assert_memory_equal(v, g_v[l], sizeof v);
        ref_attend(l, g_q[39], 40, ref);
        assert_memory_equal(ref, g_out_a[l][39], sizeof ref);
    }
    kvq_cache_stats st;
    assert_int_equal(kvq_cache_stats_get(c, &st), KVQ_OK);
    assert_int_equal(st.tokens, 3 * 40);
    assert_int_equal(st.bytes_payload, 0);
    assert_int_equal(st.bytes_window, 3u * 40u * KV_DIM * 4u * 2u);
    assert_true(st.bits_per_value == 32.0);
    kvq_cache_free(c);
}

/* Paged f32 caches (several windows and pages, kept decoded or not) give
 * attention outputs bit-identical to the unpaged cache. */
static void test_paged_f32_bit_identical(void **state)
{
    (void)state;
    kvq_cache *base = make_cache(0, 1, NULL, NULL, 0);
    run_steps(base, MAX_TOK, g_out_a);
    kvq_cache_free(base);
    static const int shapes[][3] = {{0, 1, 0}, {3, 4, 0}, {3, 4, 1}, {0, 16, 0}, {16, 8, 1}, {5, 7, 0}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        kvq_cache *c = make_cache(shapes[i][0], shapes[i][1], "f32", "f32", shapes[i][2]);
        run_steps(c, MAX_TOK, g_out_b);
        assert_memory_equal(g_out_a, g_out_b, sizeof g_out_a);
        kvq_cache_stats st;
        assert_int_equal(kvq_cache_stats_get(c, &st), KVQ_OK);
        assert_true(st.bytes_payload > 0);
        kvq_cache_free(c);
    }
}

/* W = 5, P = 16: seal while >= 21 unsealed, so 37 tokens leave 2 pages and
 * a 5-token window; 36 tokens leave 1 page and 20 in the window. */
static void test_window_page_boundaries(void **state)
{
    (void)state;
    static const struct { int n, pages, win; } cases[] = {{20, 0, 20}, {21, 1, 5}, {36, 1, 20}, {37, 2, 5}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kvq_cache *c = make_cache(5, 16, "f32", NULL, 0);
        /* Append in uneven chunks to cross boundaries inside one call. */
        for (int t = 0; t < cases[i].n;) {
            int m = (t % 3) + 2 < cases[i].n - t ? (t % 3) + 2 : cases[i].n - t;
            assert_int_equal(kvq_cache_append(c, 0, g_k[0] + t * KV_DIM, g_v[0] + t * KV_DIM, m), KVQ_OK);
            t += m;
        }
        kvq_cache_stats st;
        assert_int_equal(kvq_cache_stats_get(c, &st), KVQ_OK);
        assert_int_equal(st.tokens, cases[i].n);
        assert_int_equal(st.bytes_window, (uint64_t)cases[i].win * KV_DIM * 4 * 2);
        assert_int_equal(st.bytes_payload, (uint64_t)cases[i].pages * 16 * KV_DIM * 4 * 2);
        assert_int_equal(st.bytes_meta, (uint64_t)cases[i].pages * KVQ_CACHE_PAGE_META * 2);
        float k[MAX_TOK * KV_DIM], v[MAX_TOK * KV_DIM];
        assert_int_equal(kvq_cache_read(c, 0, 0, cases[i].n, k, v), KVQ_OK);
        assert_memory_equal(k, g_k[0], (size_t)cases[i].n * KV_DIM * 4);
        assert_memory_equal(v, g_v[0], (size_t)cases[i].n * KV_DIM * 4);
        /* A range straddling a page and the window. */
        assert_int_equal(kvq_cache_read(c, 0, 14, cases[i].n, k, NULL), KVQ_OK);
        assert_memory_equal(k, g_k[0] + 14 * KV_DIM, (size_t)(cases[i].n - 14) * KV_DIM * 4);
        kvq_cache_free(c);
    }
}

static double max_rel(const float *x, const float *y, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)x[i] - (double)y[i]) / fabs((double)x[i]);
        if (x[i] != 0 && r > m) m = r;
    }
    return m;
}

/* Layer 0: K f16, V bf16; layer 1: default (NULL) = unpaged; layer 2: V only. */
static void test_per_layer_specs(void **state)
{
    (void)state;
    const char *ks[N_LAYERS] = {"f16", NULL, NULL}, *vs[N_LAYERS] = {"bf16", NULL, "bf16"};
    kvq_cache_config cfg = kvq_cache_config_default(N_LAYERS, N_KV, HS, MAX_TOK);
    cfg.window = 2;
    cfg.page = 4;
    cfg.k_spec_layer = ks;
    cfg.v_spec_layer = vs;
    kvq_cache *c = NULL;
    assert_int_equal(kvq_cache_create(&cfg, &c), KVQ_OK);
    for (int l = 0; l < N_LAYERS; l++) assert_int_equal(kvq_cache_append(c, l, g_k[l], g_v[l], 30), KVQ_OK);
    float k[30 * KV_DIM], v[30 * KV_DIM];
    assert_int_equal(kvq_cache_read(c, 0, 0, 30, k, v), KVQ_OK);
    assert_true(max_rel(g_k[0], k, 28 * KV_DIM) <= 1.0 / 2048.0);
    assert_true(max_rel(g_v[0], v, 28 * KV_DIM) <= 1.0 / 256.0);
    assert_true(max_rel(g_v[0], v, 28 * KV_DIM) > 1.0 / 2048.0); /* really bf16 */
    assert_memory_equal(k + 28 * KV_DIM, g_k[0] + 28 * KV_DIM, 2 * KV_DIM * 4); /* window exact */
    assert_int_equal(kvq_cache_read(c, 1, 0, 30, k, v), KVQ_OK);
    assert_memory_equal(k, g_k[1], sizeof k);
    assert_int_equal(kvq_cache_read(c, 2, 0, 30, k, v), KVQ_OK);
    assert_memory_equal(k, g_k[2], sizeof k); /* K side of layer 2 is lossless f32 */
    assert_ptr_equal(kvq_cache_codec(c, 1, 0), NULL);
    assert_string_equal(kvq_ctx_codec(kvq_cache_codec(c, 0, 0))->name, "f16");
    kvq_cache_stats st;
    assert_int_equal(kvq_cache_stats_get(c, &st), KVQ_OK);
    /* layer 0: 7 pages of 4 tokens, 2 bytes/value both sides; layer 2:
     * 7 pages, K 4 bytes, V 2 bytes; layer 1 unpaged. */
    uint64_t page_vals = 4 * KV_DIM;
    assert_int_equal(st.bytes_payload, 7 * page_vals * (2 + 2) + 7 * page_vals * (4 + 2));
    assert_int_equal(st.bytes_window, (2u * 2u + 30u) * KV_DIM * 4u * 2u);
    assert_int_equal(st.bytes_meta, 14u * KVQ_CACHE_PAGE_META * 2u);
    assert_int_equal(st.bytes_total, st.bytes_payload + st.bytes_window + st.bytes_meta);
    kvq_cache_free(c);
}

/* 8-bit round-to-nearest K/V pages: small reconstruction and attention
 * error (skips until the rtn codec is registered). */
static void test_rtn8_cache(void **state)
{
    (void)state;
    if (!kvq_codec_find("rtn")) {
        printf("skip: codec rtn is not registered in this build\n");
        skip();
    }
    kvq_cache *c = make_cache(4, 8, "rtn:bits=8", "rtn:bits=8", 0);
    run_steps(c, MAX_TOK, g_out_b);
    float k[MAX_TOK * KV_DIM], v[MAX_TOK * KV_DIM];
    for (int l = 0; l < N_LAYERS; l++) {
        assert_int_equal(kvq_cache_read(c, l, 0, MAX_TOK, k, v), KVQ_OK);
        kvq_err_stats ek = kvq_err_stats_compute(g_k[l], k, MAX_TOK * KV_DIM);
        kvq_err_stats ev = kvq_err_stats_compute(g_v[l], v, MAX_TOK * KV_DIM);
        assert_true(ek.rel_fro < 0.01 && ev.rel_fro < 0.01);
        assert_true(ek.rel_fro > 0); /* lossy: really quantized */
        float ref[N_HEADS * HS];
        ref_attend(l, g_q[MAX_TOK - 1], MAX_TOK, ref);
        kvq_err_stats ea = kvq_err_stats_compute(ref, g_out_b[l][MAX_TOK - 1], N_HEADS * HS);
        assert_true(ea.rel_fro < 0.01);
    }
    kvq_cache_stats st;
    assert_int_equal(kvq_cache_stats_get(c, &st), KVQ_OK);
    assert_true(st.bits_per_value < 16.0); /* 8-bit codes + scales + a 4..11-token f32 window */
    kvq_cache_free(c);
}

static void test_bad_args(void **state)
{
    (void)state;
    kvq_cache *c = NULL;
    kvq_cache_config cfg = kvq_cache_config_default(0, N_KV, HS, MAX_TOK);
    assert_int_equal(kvq_cache_create(&cfg, &c), KVQ_ERR_ARG);
    assert_null(c);
    cfg = kvq_cache_config_default(N_LAYERS, N_KV, HS, MAX_TOK);
    cfg.page = 0;
    assert_int_equal(kvq_cache_create(&cfg, &c), KVQ_ERR_ARG);
    cfg.page = 4;
    cfg.window = -1;
    assert_int_equal(kvq_cache_create(&cfg, &c), KVQ_ERR_ARG);
    cfg.window = 0;
    cfg.k_spec = "nosuchcodec";
    assert_int_equal(kvq_cache_create(&cfg, &c), KVQ_ERR_UNKNOWN_CODEC);
    assert_non_null(strstr(kvq_last_error_detail(), "K spec"));
    cfg.k_spec = "f32:bits=3";
    assert_int_equal(kvq_cache_create(&cfg, &c), KVQ_ERR_SPEC);
    assert_int_equal(kvq_cache_create(NULL, &c), KVQ_ERR_ARG);

    c = make_cache(2, 4, "f32", "f32", 0);
    float out[N_HEADS * HS], k[KV_DIM];
    assert_int_equal(kvq_cache_append(c, N_LAYERS, g_k[0], g_v[0], 1), KVQ_ERR_ARG);
    assert_int_equal(kvq_cache_append(c, -1, g_k[0], g_v[0], 1), KVQ_ERR_ARG);
    assert_int_equal(kvq_cache_append(c, 0, NULL, g_v[0], 1), KVQ_ERR_ARG);
    assert_int_equal(kvq_cache_append(c, 0, g_k[0], g_v[0], MAX_TOK + 1), KVQ_ERR_ARG);
    assert_int_equal(kvq_cache_len(c, 0), 0);
    assert_int_equal(kvq_cache_append(c, 0, g_k[0], g_v[0], MAX_TOK), KVQ_OK);
    assert_int_equal(kvq_cache_append(c, 0, g_k[0], g_v[0], 1), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error_detail(), "max_tokens"));
    assert_int_equal(kvq_cache_read(c, 0, 5, 4, k, k), KVQ_ERR_ARG);
    assert_int_equal(kvq_cache_read(c, 1, 0, 1, k, k), KVQ_ERR_ARG); /* layer 1 is empty */
    assert_int_equal(kvq_cache_attend(c, 0, g_q[0], 3, 4, out), KVQ_ERR_ARG);
    assert_int_equal(kvq_cache_attend(c, 0, g_q[0], N_HEADS, 0, out), KVQ_ERR_ARG);
    assert_int_equal(kvq_cache_attend(c, 0, g_q[0], N_HEADS, MAX_TOK + 1, out), KVQ_ERR_ARG);
    assert_int_equal(kvq_cache_attend(c, 0, NULL, N_HEADS, 1, out), KVQ_ERR_ARG);
    assert_int_equal(kvq_cache_truncate(c, 0, MAX_TOK + 1), KVQ_ERR_ARG);
    assert_int_equal(kvq_cache_len(c, N_LAYERS), -1);
    assert_int_equal(kvq_cache_len(NULL, 0), -1);
    assert_int_equal(kvq_cache_stats_get(NULL, NULL), KVQ_ERR_ARG);
    kvq_cache_free(c);
    kvq_cache_free(NULL);
}

/* Truncation inside a page, inside the window, then appending again. */
static void test_truncate_clear(void **state)
{
    (void)state;
    kvq_cache *c = make_cache(3, 5, "f16", "f16", 0), *r = make_cache(3, 5, "f16", "f16", 0);
    assert_int_equal(kvq_cache_append(c, 0, g_k[0], g_v[0], 40), KVQ_OK);
    assert_int_equal(kvq_cache_truncate(c, 0, 38), KVQ_OK); /* window only */
    assert_int_equal(kvq_cache_truncate(c, 0, 12), KVQ_OK); /* into page 2 */
    assert_int_equal(kvq_cache_len(c, 0), 12);
    assert_int_equal(kvq_cache_append(c, 0, g_k[0] + 12 * KV_DIM, g_v[0] + 12 * KV_DIM, 20), KVQ_OK);
    assert_int_equal(kvq_cache_append(r, 0, g_k[0], g_v[0], 32), KVQ_OK);
    /* Tokens 10, 11 went through f16 twice (idempotent), the rest once. */
    float k1[32 * KV_DIM], v1[32 * KV_DIM], k2[32 * KV_DIM], v2[32 * KV_DIM];
    assert_int_equal(kvq_cache_read(c, 0, 0, 32, k1, v1), KVQ_OK);
    assert_int_equal(kvq_cache_read(r, 0, 0, 32, k2, v2), KVQ_OK);
    assert_memory_equal(k1, k2, sizeof k1);
    assert_memory_equal(v1, v2, sizeof v1);
    kvq_cache_stats s1, s2;
    assert_int_equal(kvq_cache_stats_get(c, &s1), KVQ_OK);
    assert_int_equal(kvq_cache_stats_get(r, &s2), KVQ_OK);
    assert_memory_equal(&s1, &s2, sizeof s1);
    assert_int_equal(kvq_cache_clear(c), KVQ_OK);
    assert_int_equal(kvq_cache_len(c, 0), 0);
    assert_int_equal(kvq_cache_stats_get(c, &s1), KVQ_OK);
    assert_int_equal(s1.bytes_total, 0);
    kvq_cache_free(c);
    kvq_cache_free(r);
}

/* ---- hook points ----------------------------------------------------------- */

/* A depth policy that takes every odd page and keeps an f32 copy. */
typedef struct {
    int inits, seals, taken, loads, drops, finis_seen;
    int prev_layer_checked;
    float k[N_LAYERS][MAX_TOK * KV_DIM], v[N_LAYERS][MAX_TOK * KV_DIM];
    int held[N_LAYERS][MAX_TOK];
} odd_policy;

static int g_finis;

static kvq_err odd_init(void *st, const kvq_cache_config *cfg, const void *arg)
{
    odd_policy *p = st;
    assert_ptr_equal(arg, &g_finis);
    assert_int_equal(cfg->n_layers, N_LAYERS);
    p->inits++;
    return KVQ_OK;
}

static kvq_err odd_seal(void *st, kvq_cache *c, const kvq_kv_page *pg, int *taken)
{
    odd_policy *p = st;
    p->seals++;
    if (pg->layer > 0) { /* the same tokens of the layer below are readable */
        float k[16 * KV_DIM];
        int t0 = pg->index * pg->n_tokens;
        assert_true(pg->n_tokens <= 16);
        assert_int_equal(kvq_cache_read(c, pg->layer - 1, t0, t0 + pg->n_tokens, k, NULL), KVQ_OK);
        assert_memory_equal(k, g_k[pg->layer - 1] + t0 * KV_DIM, (size_t)pg->n_tokens * KV_DIM * 4);
        p->prev_layer_checked++;
    }
    *taken = pg->index % 2 == 1;
    if (*taken) {
        size_t at = (size_t)pg->index * (size_t)pg->n_tokens * KV_DIM, n = (size_t)pg->n_tokens * KV_DIM;
        memcpy(p->k[pg->layer] + at, pg->k, n * 4);
        memcpy(p->v[pg->layer] + at, pg->v, n * 4);
        p->held[pg->layer][pg->index] = pg->n_tokens;
        p->taken++;
    }
    return KVQ_OK;
}

static kvq_err odd_load(void *st, int layer, int index, float *k, float *v)
{
    odd_policy *p = st;
    int n = p->held[layer][index];
    assert_true(n > 0);
    memcpy(k, p->k[layer] + (size_t)index * (size_t)n * KV_DIM, (size_t)n * KV_DIM * 4);
    memcpy(v, p->v[layer] + (size_t)index * (size_t)n * KV_DIM, (size_t)n * KV_DIM * 4);
    p->loads++;
    return KVQ_OK;
}

static void odd_drop(void *st, int layer, int index)
{
    odd_policy *p = st;
    assert_true(p->held[layer][index] > 0);
    p->held[layer][index] = 0;
    p->drops++;
}

static void odd_bytes(const void *st, kvq_cache_stats *acc)
{
    const odd_policy *p = st;
    for (int l = 0; l < N_LAYERS; l++)
        for (int i = 0; i < MAX_TOK; i++) acc->bytes_lowrank += (uint64_t)p->held[l][i] * KV_DIM * 4 * 2;
}

static void odd_fini(void *st)
{
    (void)st;
    g_finis++;
}

static const kvq_depth_policy_i odd_policy_i = {
    .abi = KVQ_DEPTH_POLICY_ABI, .name = "odd-pages", .state_size = sizeof(odd_policy),
    .init = odd_init, .seal = odd_seal, .load = odd_load, .drop = odd_drop, .bytes = odd_bytes,
    .fini = odd_fini,
};

static void test_depth_policy_hooks(void **state)
{
    (void)state;
    kvq_cache_config cfg = kvq_cache_config_default(N_LAYERS, N_KV, HS, MAX_TOK);
    cfg.window = 3;
    cfg.page = 8;
    cfg.k_spec = "f32";
    cfg.depth = &odd_policy_i;
    cfg.depth_arg = &g_finis;
    kvq_cache *c = NULL;
    assert_int_equal(kvq_cache_create(&cfg, &c), KVQ_OK);
    g_finis = 0;
    run_steps(c, MAX_TOK, g_out_b);
    kvq_cache *base = make_cache(0, 1, NULL, NULL, 0);
    run_steps(base, MAX_TOK, g_out_a);
    kvq_cache_free(base);
    assert_memory_equal(g_out_a, g_out_b, sizeof g_out_a); /* policy pages are exact too */
    kvq_cache_stats st;
    assert_int_equal(kvq_cache_stats_get(c, &st), KVQ_OK);
    /* 64 tokens, W=3, P=8: 7 pages sealed per layer, 3 of them odd. */
    assert_int_equal(st.bytes_lowrank, 3u * 3u * 8u * KV_DIM * 4u * 2u);
    assert_int_equal(st.bytes_payload, 3u * 4u * 8u * KV_DIM * 4u * 2u);
    assert_int_equal(kvq_cache_truncate(c, 2, 20), KVQ_OK); /* drops pages 2..6 of layer 2 */
    assert_int_equal(kvq_cache_clear(c), KVQ_OK);
    kvq_cache_free(c);
    assert_int_equal(g_finis, 1);
}

/* The policy's counters, read through a second run (state is private to
 * the cache, so count with a shim around the same functions). */
static int g_seal_calls, g_drop_calls, g_load_calls;
static kvq_err count_seal(void *st, kvq_cache *c, const kvq_kv_page *pg, int *taken)
{
    g_seal_calls++;
    return odd_seal(st, c, pg, taken);
}
static kvq_err count_load(void *st, int layer, int index, float *k, float *v)
{
    g_load_calls++;
    return odd_load(st, layer, index, k, v);
}
static void count_drop(void *st, int layer, int index)
{
    g_drop_calls++;
    odd_drop(st, layer, index);
}

static void test_depth_policy_counts(void **state)
{
    (void)state;
    kvq_depth_policy_i pol = odd_policy_i;
    pol.seal = count_seal;
    pol.load = count_load;
    pol.drop = count_drop;
    kvq_cache_config cfg = kvq_cache_config_default(N_LAYERS, N_KV, HS, MAX_TOK);
    cfg.window = 3;
    cfg.page = 8;
    cfg.v_spec = "f32";
    cfg.depth = &pol;
    cfg.depth_arg = &g_finis;
    kvq_cache *c = NULL;
    g_seal_calls = g_drop_calls = g_load_calls = 0;
    assert_int_equal(kvq_cache_create(&cfg, &c), KVQ_OK);
    run_steps(c, MAX_TOK, g_out_b);
    assert_int_equal(g_seal_calls, 3 * 7);
    /* Each attend reads the odd pages twice (K pass, V pass). */
    assert_true(g_load_calls > 0);
    int before = g_load_calls;
    float k[MAX_TOK * KV_DIM];
    assert_int_equal(kvq_cache_read(c, 0, 0, MAX_TOK, k, NULL), KVQ_OK);
    assert_int_equal(g_load_calls - before, 3); /* pages 1, 3, 5 */
    assert_memory_equal(k, g_k[0], sizeof k);
    assert_int_equal(kvq_cache_truncate(c, 1, 20), KVQ_OK); /* pages 2..6: odd 3, 5 */
    assert_int_equal(g_drop_calls, 2);
    assert_int_equal(kvq_cache_clear(c), KVQ_OK); /* 3 + 1 + 3 odd pages left */
    assert_int_equal(g_drop_calls, 2 + 3 + 1 + 3);
    kvq_cache_free(c);
}

/* A one-slot prefix store: keeps the pages of one token sequence. */
typedef struct {
    int32_t tokens[MAX_TOK];
    int n_tokens, publishes, loads;
    float k[N_LAYERS][MAX_TOK * KV_DIM], v[N_LAYERS][MAX_TOK * KV_DIM];
    int pages[N_LAYERS];      /* pages published per layer, in order */
} mini_store;

static kvq_err ms_match(void *store, const int32_t *tokens, int n, int page, int *n_match)
{
    mini_store *s = store;
    int m = 0, full = s->pages[0];
    for (int l = 1; l < N_LAYERS; l++)
        if (s->pages[l] < full) full = s->pages[l];
    while (m < n && m < full * page && tokens[m] == s->tokens[m]) m++;
    *n_match = m / page * page;
    return KVQ_OK;
}

static kvq_err ms_load(void *store, const int32_t *tokens, int layer, int index, int page, float *k, float *v)
{
    mini_store *s = store;
    (void)tokens;
    size_t at = (size_t)index * (size_t)page * KV_DIM, n = (size_t)page * KV_DIM;
    memcpy(k, s->k[layer] + at, n * 4);
    memcpy(v, s->v[layer] + at, n * 4);
    s->loads++;
    return KVQ_OK;
}

static kvq_err ms_publish(void *store, const int32_t *tokens, const kvq_kv_page *pg)
{
    mini_store *s = store;
    int end = (pg->index + 1) * pg->n_tokens;
    assert_int_equal(pg->index, s->pages[pg->layer]); /* pages arrive in order */
    memcpy(s->tokens, tokens, (size_t)end * sizeof *tokens);
    size_t at = (size_t)pg->index * (size_t)pg->n_tokens * KV_DIM, n = (size_t)pg->n_tokens * KV_DIM;
    memcpy(s->k[pg->layer] + at, pg->k, n * 4);
    memcpy(s->v[pg->layer] + at, pg->v, n * 4);
    s->pages[pg->layer]++;
    s->publishes++;
    return KVQ_OK;
}

static const kvq_prefix_store_i mini_store_i = {
    .abi = KVQ_PREFIX_STORE_ABI, .name = "mini", .match = ms_match, .load = ms_load, .publish = ms_publish,
};

static void test_prefix_store_hooks(void **state)
{
    (void)state;
    static mini_store store;
    memset(&store, 0, sizeof store);
    int32_t toks[MAX_TOK];
    for (int i = 0; i < MAX_TOK; i++) toks[i] = 100 + i;
    kvq_cache_config cfg = kvq_cache_config_default(N_LAYERS, N_KV, HS, MAX_TOK);
    cfg.window = 2;
    cfg.page = 8;
    cfg.k_spec = "f32";
    cfg.prefix = &mini_store_i;
    cfg.prefix_store = &store;
    kvq_cache *a = NULL, *b = NULL;
    assert_int_equal(kvq_cache_create(&cfg, &a), KVQ_OK);
    int n_loaded = -1;
    assert_int_equal(kvq_cache_prefix_load(a, toks, 40, &n_loaded), KVQ_OK);
    assert_int_equal(n_loaded, 0); /* empty store */
    run_steps(a, 40, g_out_a);     /* 40 tokens, W=2, P=8: 4 pages per layer */
    assert_int_equal(store.publishes, 4 * N_LAYERS);
    /* A second sequence sharing the first 29 tokens gets 24 of them. */
    int32_t toks2[MAX_TOK];
    memcpy(toks2, toks, sizeof toks2);
    toks2[29] = 7;
    assert_int_equal(kvq_cache_create(&cfg, &b), KVQ_OK);
    assert_int_equal(kvq_cache_prefix_load(b, toks2, 40, &n_loaded), KVQ_OK);
    assert_int_equal(n_loaded, 24);
    assert_int_equal(store.loads, 3 * N_LAYERS);
    for (int l = 0; l < N_LAYERS; l++) {
        float k[24 * KV_DIM], v[24 * KV_DIM];
        assert_int_equal(kvq_cache_len(b, l), 24);
        assert_int_equal(kvq_cache_read(b, l, 0, 24, k, v), KVQ_OK);
        assert_memory_equal(k, g_k[l], sizeof k);
        assert_memory_equal(v, g_v[l], sizeof v);
    }
    assert_int_equal(store.publishes, 4 * N_LAYERS); /* reloaded pages are not republished */
    assert_int_equal(kvq_cache_prefix_load(b, toks2, 40, &n_loaded), KVQ_ERR_ARG); /* not empty */
    kvq_cache_free(a);
    kvq_cache_free(b);
}

/* A fused K kernel (decode + the documented loop) plugged into the slot:
 * it must be called for every encoded page and give identical results. */
static int g_qk_calls;
static kvq_err test_qk(kvq_ctx *ctx, const void *payload, size_t n, const kvq_shape *s, const float *q, int n_heads,
                       int group, int n_tok, float *scores, size_t stride)
{
    float k[16 * KV_DIM];
    assert_true(s->dim[0] <= 16);
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, k, 3, s->dim);
    kvq_err e = kvq_ctx_decode_payload(ctx, payload, n, &t);
    if (e) return e;
    for (int h = 0; h < n_heads; h++)
        for (int tt = 0; tt < n_tok; tt++) {
            float sc = 0.0f;
            for (int i = 0; i < HS; i++) sc += q[h * HS + i] * k[tt * KV_DIM + (h / group) * HS + i];
            scores[(size_t)h * stride + (size_t)tt] = sc / sqrtf((float)HS);
        }
    g_qk_calls++;
    return KVQ_OK;
}

static void test_fused_hook(void **state)
{
    (void)state;
    static const kvq_page_attn_i fused = {.qk = test_qk, .pv = NULL};
    kvq_cache *c = make_cache(3, 8, "f32", "f32", 0);
    for (int l = 0; l < N_LAYERS; l++) c->layers[l].fused[0] = &fused;
    g_qk_calls = 0;
    run_steps(c, MAX_TOK, g_out_b);
    kvq_cache *base = make_cache(0, 1, NULL, NULL, 0);
    run_steps(base, MAX_TOK, g_out_a);
    kvq_cache_free(base);
    assert_memory_equal(g_out_a, g_out_b, sizeof g_out_a);
    /* Step t attends over floor(sealed/8) pages; 7 pages sealed by the end. */
    int expect = 0;
    for (int t = 1; t <= MAX_TOK; t++) expect += (t >= 11 ? (t - 3) / 8 : 0);
    assert_int_equal(g_qk_calls, N_LAYERS * expect);
    kvq_cache_free(c);
}

/* kivi and gear pages: the cache installs the codecs' fused slots, and
 * attention without decoded copies (fused qk/pv over the payloads) equals
 * attention over decoded copies (the f32 loops) within FUSED_TOL of the
 * largest |v| — the scores differ by f32 rounding of Σ|q·k| terms only. */
#define FUSED_TOL 1e-5
static void test_fused_codecs(void **state)
{
    (void)state;
    static const char *const specs[][2] = {
        {"kivi:bits=2,group=8", "kivi:bits=2,axis=token,group=4"},
        {"kivi:bits=3,group=5", "kivi:bits=4,axis=token,group=3"},
        {"gear:bits=2,group=8,rank=2,sparse=0.125", "gear:bits=2,axis=token,group=8,rank=2,sparse=0.25"},
    };
    /* kivi's slots only where the attention kernels are SIMD (kern_attn.h `fast`) */
    const kvq_page_attn_i *kivi = kvq_page_attn_find(&kvq_codec_kivi);
    const kvq_page_attn_i *const slots[] = {kivi, kivi, &kvq_page_attn_gear};
    for (int k = 0; k < 3; k++) {
        kvq_cache *a = make_cache(3, 8, specs[k][0], specs[k][1], 0), *b = make_cache(3, 8, specs[k][0], specs[k][1], 1);
        for (int l = 0; l < N_LAYERS; l++) {
            assert_ptr_equal(a->layers[l].fused[0], slots[k]);
            assert_ptr_equal(a->layers[l].fused[1], slots[k]);
        }
        run_steps(a, MAX_TOK, g_out_a);
        run_steps(b, MAX_TOK, g_out_b);
        float worst = 0.0f;
        for (size_t i = 0; i < sizeof g_out_a / sizeof(float); i++)
            worst = fmaxf(worst, fabsf((&g_out_a[0][0][0])[i] - (&g_out_b[0][0][0])[i]));
        printf("%s / %s: fused vs decoded max |diff| %.3g\n", specs[k][0], specs[k][1], (double)worst);
        assert_true(worst <= FUSED_TOL * 2.0f); /* |v| < 2 */
        assert_true(worst > 0.0f || k == 0 || !slots[k]); /* different arithmetic, really taken */
        kvq_cache_free(a);
        kvq_cache_free(b);
    }
    kvq_cache *f = make_cache(3, 8, "f16", "f32", 0); /* lossless: decode path, bit-identical */
    assert_null(f->layers[0].fused[0]);
    assert_null(f->layers[0].fused[1]);
    kvq_cache_free(f);
}

/* Row codecs (q8_0, q4_0, rtn): where the row kernel is fast (AVX2) the
 * cache scores straight from the codes (qk only; values decode), within
 * FUSED_TOL of the decoded-copy path; head size 64 so blocks fit. */
static void test_fused_row_codecs(void **state)
{
    (void)state;
    enum { RL = 1, RHS = 64, RKV = N_KV * RHS, RT = 96, RP = 32 };
    static float k[RT * RKV], v[RT * RKV], q[RT][N_HEADS * RHS], o[2][N_HEADS * RHS];
    fill(k, RT * RKV, SEED + 7u);
    fill(v, RT * RKV, SEED + 8u);
    fill(&q[0][0], RT * N_HEADS * RHS, SEED + 9u);
    static const char *const specs[] = {"q8_0", "q4_0", "rtn:bits=4,group=32"};
    for (int s = 0; s < 3; s++) {
        kvq_cache *c[2];
        for (int keep = 0; keep < 2; keep++) {
            kvq_cache_config cfg = kvq_cache_config_default(RL, N_KV, RHS, RT);
            cfg.page = RP;
            cfg.k_spec = cfg.v_spec = specs[s];
            cfg.keep_decoded = keep;
            assert_int_equal(kvq_cache_create(&cfg, &c[keep]), KVQ_OK);
        }
        const kvq_page_attn_i *f = c[0]->layers[0].fused[0];
        if (f) {
            assert_non_null(f->qk);
            assert_null(f->pv);
        }
        float worst = 0.0f;
        for (int t = 0; t < RT; t++)
            for (int keep = 0; keep < 2; keep++) {
                assert_int_equal(kvq_cache_append(c[keep], 0, k + t * RKV, v + t * RKV, 1), KVQ_OK);
                assert_int_equal(kvq_cache_attend(c[keep], 0, q[t], N_HEADS, t + 1, o[keep]), KVQ_OK);
                for (int i = 0; keep && i < N_HEADS * RHS; i++) worst = fmaxf(worst, fabsf(o[0][i] - o[1][i]));
            }
        printf("%s: fused scores %s, vs decoded max |diff| %.3g\n", specs[s], f ? "on" : "off (no fast row kernel)",
               (double)worst);
        assert_true(worst <= FUSED_TOL * 2.0f);
        assert_true(f || worst == 0.0f);
        for (int keep = 0; keep < 2; keep++) kvq_cache_free(c[keep]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_exact),
        cmocka_unit_test(test_paged_f32_bit_identical),
        cmocka_unit_test(test_window_page_boundaries),
        cmocka_unit_test(test_per_layer_specs),
        cmocka_unit_test(test_rtn8_cache),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_truncate_clear),
        cmocka_unit_test(test_depth_policy_hooks),
        cmocka_unit_test(test_depth_policy_counts),
        cmocka_unit_test(test_prefix_store_hooks),
        cmocka_unit_test(test_fused_hook),
        cmocka_unit_test(test_fused_codecs),
        cmocka_unit_test(test_fused_row_codecs),
    };
    return cmocka_run_group_tests(tests, setup_data, NULL);
}
