/*
 * test_gear.c — the KIVI (quant/kivi.c) and GEAR (compress/gear.c) page
 * codecs, cache-methods.md §1.5 and §5: GEAR with rank 0 and no outliers is
 * the KIVI quantizer byte for byte; full rank reconstructs (f32 factors to
 * float tolerance); the error never grows with the rank on real K/V pages
 * of llama-4.6M; the stored A is orthonormal; outliers decode to their f16
 * values; KIVI errs by at most Δ/2 per value; pages already sealed never
 * change while tokens stream in; the cache's byte accounting splits codes,
 * scales, outliers and factors exactly as the layout says; damaged
 * outlier indices are rejected; attention over an encoded page through
 * the fused slots (quant/kivi_attn.c, gear.c) equals decode-then-reference
 * within FUSED_TOL of Σ|terms| for every axis, width, group and part, and
 * damaged payloads fail there as in decode; the stored outliers are those
 * a full sort picks (one-pass selection for small k, ties included).  Real pages come from ../shared/data
 * (skipped with a message when absent).
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
#include "cache_internal.h" /* the fused page-attention slots */

#define MODEL "../shared/data/models/llama-4.6M/model.bin"
#define TOKENIZER "../shared/data/models/llama-4.6M/tok512.bin"
#define TEXT "And God said, Let there be light: and there was light. And God saw the light, that it was good: " \
             "and God divided the light from the darkness. And God called the light Day, and the darkness he " \
             "called Night. And the evening and the morning were the first day."
#define T  64  /* tokens per page         */
#define H  2   /* KV heads (llama-4.6M)   */
#define D  64  /* head size               */
#define N  (T * H * D)
#define F16_TOL 2e-3 /* relative error of f16-stored factors at full rank */
#define FUSED_TOL 1e-5 /* fused vs decode-then-reference, relative to Σ|x_i|·4·max|page| */
#define QH 4           /* query heads in the fused tests (GQA group 2)   */

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float rnd(void) /* uniform [-1, 1), xorshift64 */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * 0x1p-23) - 1.0f;
}

static void fill_page(float *x)
{
    for (int i = 0; i < N; i++) x[i] = rnd() + (i % D == 5 ? 4.0f : 0.0f) + (i % 97 == 0 ? 9.0f * rnd() : 0.0f);
}

static kvq_tensor page_view(float *x)
{
    int64_t dims[3] = {T, H, D};
    return kvq_tensor_view(KVQ_DTYPE_F32, x, 3, dims);
}

/* Encodes x with spec; returns the payload (caller frees), its size, and
 * the decoded values in y. */
static uint8_t *roundtrip(const char *spec, float *x, float *y, size_t *n)
{
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
    kvq_tensor t = page_view(x), o = page_view(y);
    size_t cap = kvq_ctx_payload_bound(ctx, &t.shape);
    uint8_t *p = malloc(cap);
    kvq_err e = kvq_ctx_encode_payload(ctx, &t, p, cap, n);
    if (e) fail_msg("%s: %s", spec, kvq_last_error_detail());
    assert_int_equal(*n, cap); /* fixed layout: the bound is the size */
    assert_int_equal(kvq_ctx_decode_payload(ctx, p, *n, &o), KVQ_OK);
    kvq_ctx_free(ctx);
    return p;
}

static double rel(const float *x, const float *y) { return kvq_err_stats_compute(x, y, N).rel_fro; }

/* ---- real pages ------------------------------------------------------------ */
static float real_k[N], real_v[N];

/* K and V of layer 3 for the first 64 tokens of TEXT; 0 when absent. */
static int load_real(void)
{
    static int state = -1;
    if (state >= 0) return state;
    kvq_model *m = NULL;
    kvq_tokenizer *tok = NULL;
    kvq_decoder *d = NULL;
    state = 0;
    if (kvq_model_load(MODEL, &m) || kvq_tokenizer_load(TOKENIZER, 512, &tok)) goto done;
    int ids[512];
    size_t n;
    assert_int_equal(kvq_tokenizer_encode(tok, TEXT, 1, 0, ids, 512, &n), KVQ_OK);
    assert_true(n >= T);
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    assert_int_equal(kvq_decoder_create(m, &o, &d), KVQ_OK);
    assert_int_equal(kvq_decoder_forward_seq(d, ids, T, 0, NULL), KVQ_OK);
    assert_int_equal(kvq_cache_read(kvq_decoder_cache(d), 3, 0, T, real_k, real_v), KVQ_OK);
    state = 1;
done:
    kvq_decoder_free(d);
    kvq_tokenizer_free(tok);
    kvq_model_free(m);
    return state;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_rank0_is_kivi(void **st)
{
    (void)st;
    static float x[N], yk[N], yg[N];
    fill_page(x);
    static const char *axes[] = {"channel", "token"};
    for (int bits = 2; bits <= 4; bits++)
        for (int a = 0; a < 2; a++)
            for (int g = 16; g <= 64; g *= 2) {
                char ks[96], gs[128];
                snprintf(ks, sizeof ks, "kivi:bits=%d,axis=%s,group=%d", bits, axes[a], g);
                snprintf(gs, sizeof gs, "gear:bits=%d,axis=%s,group=%d,rank=0,sparse=0", bits, axes[a], g);
                size_t nk, ng;
                uint8_t *pk = roundtrip(ks, x, yk, &nk), *pg = roundtrip(gs, x, yg, &ng);
                assert_int_equal(nk, ng);
                assert_memory_equal(pk, pg, nk);
                assert_memory_equal(yk, yg, sizeof yk);
                free(pk);
                free(pg);
            }
}

/* KIVI: every value within Δ/2 of its group (+ f16 rounding of Δ and z),
 * for the fixed-run 2/4-bit unpackers and the generic 3-bit one, keys
 * (groups of 32 tokens of a channel) and values (32 channels of a row). */
static void check_half_step(const float *x, const float *y, int bits, int token_axis)
{
    const float levels = (float)((1 << bits) - 1);
    for (int a = 0; a < (token_axis ? T * H : H * D); a++)
        for (int g0 = 0; g0 < (token_axis ? D : T); g0 += 32) {
            /* element i of group (a, g0): channel axis walks tokens, token axis channels */
            int at0 = token_axis ? a * D + g0 : g0 * H * D + a, step_i = token_axis ? 1 : H * D;
            float lo = x[at0], hi = lo;
            for (int i = 0; i < 32; i++) {
                float v = x[at0 + i * step_i];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            float step = (hi - lo) / levels, slack = 0x1p-10f * (hi - lo) + 0x1p-10f * fabsf(lo);
            for (int i = 0; i < 32; i++)
                assert_true(fabsf(y[at0 + i * step_i] - x[at0 + i * step_i]) <= step / 2 + slack);
        }
}

static void test_kivi_half_step(void **st)
{
    (void)st;
    static float x[N], y[N];
    fill_page(x);
    for (int bits = 2; bits <= 4; bits++)
        for (int tok = 0; tok < 2; tok++) {
            char spec[64];
            size_t n;
            snprintf(spec, sizeof spec, "kivi:bits=%d,axis=%s,group=32", bits, tok ? "token" : "channel");
            uint8_t *p = roundtrip(spec, x, y, &n);
            check_half_step(x, y, bits, tok);
            /* entries: 2 token groups per channel, or 2 channel groups per row; then the codes */
            assert_int_equal(n, (size_t)((tok ? T * H * 2 : 2 * H * D) * 4 + T * H * D * bits / 8));
            free(p);
        }
}

static void test_full_rank(void **st)
{
    (void)st;
    static float x[N], y[N];
    fill_page(x);
    size_t n;
    uint8_t *p = roundtrip("gear:bits=2,rank=64,sparse=0,fbits=f32", x, y, &n);
    assert_true(rel(x, y) < 1e-5);
    free(p);
    p = roundtrip("gear:bits=2,axis=token,rank=64,sparse=0.1,fbits=f32", x, y, &n);
    assert_true(rel(x, y) < 1e-5);
    free(p);
    p = roundtrip("gear:bits=4,rank=64,sparse=0.1,fbits=f16", x, y, &n);
    assert_true(rel(x, y) < F16_TOL);
    free(p);
}

/* Error non-increasing in rank: nested starts make nested factors. */
static void check_monotone(const char *base, float *x)
{
    static const int ranks[] = {0, 1, 2, 4, 8, 16, 32};
    static float y[N];
    double prev = INFINITY;
    for (size_t i = 0; i < sizeof ranks / sizeof ranks[0]; i++) {
        char spec[128];
        size_t n;
        snprintf(spec, sizeof spec, "%s,rank=%d", base, ranks[i]);
        free(roundtrip(spec, x, y, &n));
        double e = rel(x, y);
        if (!(e <= prev * (1 + 1e-6))) fail_msg("%s: error %.6g above rank's predecessor %.6g", spec, e, prev);
        if (ranks[i] == 0) assert_true(e > 0.05); /* 2-bit backbone errs visibly */
        prev = e;
    }
    assert_true(isfinite(prev));
}

static void test_rank_monotone_real(void **st)
{
    (void)st;
    if (!load_real()) {
        print_message("[  SKIPPED ] %s absent\n", MODEL);
        skip();
    }
    check_monotone("gear:bits=2,sparse=0,fbits=f32", real_k);
    check_monotone("gear:bits=2,axis=token,sparse=0,fbits=f32", real_v);
    check_monotone("gear:bits=2,sparse=0.0625", real_k);
    check_monotone("gear:bits=2,axis=token,sparse=0.0625", real_v);
    /* and GEAR at equal settings beats its backbone on real keys */
    static float yk[N], yg[N];
    size_t n;
    free(roundtrip("kivi:bits=2", real_k, yk, &n));
    free(roundtrip("gear:bits=2,rank=4,sparse=0.0625", real_k, yg, &n));
    assert_true(rel(real_k, yg) < 0.9 * rel(real_k, yk));
}

/* A (f32 storage) is orthonormal; located by the FORMAT.md §3 layout. */
static void test_orthonormal(void **st)
{
    (void)st;
    static float x[N], y[N];
    fill_page(x);
    size_t nk, ng;
    free(roundtrip("kivi:bits=2", x, y, &nk));
    enum { R = 4 };
    uint8_t *p = roundtrip("gear:bits=2,rank=4,sparse=0,fbits=f32", x, y, &ng);
    assert_int_equal(ng, nk + (size_t)H * ((T + D) * R * 4 + R * 4));
    for (int h = 0; h < H; h++) {
        const uint8_t *a = p + nk + (size_t)h * ((T + D) * R * 4 + R * 4);
        for (int i = 0; i < R; i++)
            for (int j = 0; j < R; j++) {
                double dot = 0;
                for (int t = 0; t < T; t++) {
                    float u, v;
                    memcpy(&u, a + 4 * (size_t)(i * T + t), 4);
                    memcpy(&v, a + 4 * (size_t)(j * T + t), 4);
                    dot += (double)u * v;
                }
                assert_true(fabs(dot - (i == j)) < 1e-5);
            }
    }
    free(p);
}

/* Rank 0: the k smallest and k largest of each vector decode to f16(x). */
static void test_outliers_exact(void **st)
{
    (void)st;
    static float x[N], y[N];
    fill_page(x);
    size_t n;
    uint8_t *p = roundtrip("gear:bits=2,axis=token,rank=0,sparse=0.0625", x, y, &n); /* k = 2 per 64 */
    for (int r = 0; r < T * H; r++) {
        const float *xr = x + r * D;
        int lo = 0, hi = 0;
        for (int c = 1; c < D; c++) {
            lo = xr[c] < xr[lo] ? c : lo;
            hi = xr[c] > xr[hi] ? c : hi;
        }
        assert_true(y[r * D + lo] == kvq_f16_to_f32(kvq_f32_to_f16(xr[lo])));
        assert_true(y[r * D + hi] == kvq_f16_to_f32(kvq_f32_to_f16(xr[hi])));
    }
    /* a damaged index is refused: the first sparse entry follows the backbone */
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create("gear:bits=2,axis=token,rank=0,sparse=0.0625", &ctx), KVQ_OK);
    size_t nk;
    free(roundtrip("kivi:bits=2,axis=token", x, y, &nk));
    p[nk] = 200; /* index ≥ 64 */
    kvq_tensor o = page_view(y);
    assert_int_equal(kvq_ctx_decode_payload(ctx, p, n, &o), KVQ_ERR_CORRUPT);
    kvq_ctx_free(ctx);
    free(p);
}

/* Fused qk and pv over x's page encoded with spec, for the first n_tok
 * tokens, against the reference loops over the decoded page; returns the
 * worst |error| / bound seen. */
static double check_fused(const char *spec, float *x, int n_tok)
{
    static float y[N], q[QH * D], sc[QH * T], ref[QH * T], p[QH * T], o[QH * D], oref[QH * D];
    size_t n;
    uint8_t *pay = roundtrip(spec, x, y, &n);
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
    const kvq_page_attn_i *f = strncmp(spec, "kivi", 4) == 0 ? &kvq_page_attn_kivi : &kvq_page_attn_gear;
    float m = 0.0f, worst = 0.0f;
    for (int i = 0; i < N; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    m *= 4.0f; /* bounds |z|, |Δ·c|, |D| and the factor terms of a page */
    for (int i = 0; i < QH * D; i++) q[i] = rnd(), o[i] = oref[i] = rnd();
    for (int i = 0; i < QH * T; i++) p[i] = 0.5f * (rnd() + 1.0f);
    int64_t dims[3] = {T, H, D};
    kvq_shape sh = kvq_shape_make(3, dims);
    kvq_err e = f->qk(ctx, pay, n, &sh, q, QH, QH / H, n_tok, sc, T);
    if (e) fail_msg("%s: qk: %s", spec, kvq_last_error_detail());
    assert_int_equal(f->pv(ctx, pay, n, &sh, p, QH, QH / H, n_tok, T, o), KVQ_OK);
    for (int h = 0; h < QH; h++) {
        const float *yk = y + (h / (QH / H)) * D;
        float qabs = 0.0f;
        for (int i = 0; i < D; i++) qabs += fabsf(q[h * D + i]);
        for (int t = 0; t < n_tok; t++) {
            float s = 0.0f;
            for (int i = 0; i < D; i++) s += q[h * D + i] * yk[t * H * D + i];
            ref[h * T + t] = s / sqrtf((float)D);
            float bound = FUSED_TOL * qabs * m / sqrtf((float)D), err = fabsf(sc[h * T + t] - ref[h * T + t]);
            worst = fmaxf(worst, err / bound);
        }
        float pabs = 0.0f;
        for (int t = 0; t < n_tok; t++) {
            pabs += p[h * T + t];
            for (int i = 0; i < D; i++) oref[h * D + i] += p[h * T + t] * yk[t * H * D + i];
        }
        for (int i = 0; i < D; i++) worst = fmaxf(worst, fabsf(o[h * D + i] - oref[h * D + i]) / (FUSED_TOL * pabs * m));
    }
    if (worst > 1.0f) fail_msg("%s, %d tokens: fused error %.3g x the bound", spec, n_tok, (double)worst);
    kvq_ctx_free(ctx);
    free(pay);
    return worst;
}

static const char *const fused_specs[] = {
    "kivi:bits=2", "kivi:bits=2,axis=token", "kivi:bits=4,group=64", "kivi:bits=4,axis=token,group=5",
    "kivi:bits=3,group=7", "kivi:bits=3,axis=token,group=7", "kivi:bits=8,group=16", "kivi:bits=8,axis=token",
    "gear:bits=2,rank=2,sparse=0.06", "gear:bits=2,axis=token,rank=2,sparse=0.06",
    "gear:bits=4,axis=token,rank=3,sparse=0.1,fbits=f32", "gear:bits=3,group=7,rank=1,sparse=0.04",
    "gear:bits=2,group=32,rank=0,sparse=0",
};

static void test_fused_page_attention(void **st)
{
    (void)st;
    static float x[N];
    fill_page(x);
    double worst = 0;
    for (size_t i = 0; i < sizeof fused_specs / sizeof fused_specs[0]; i++) {
        worst = fmax(worst, check_fused(fused_specs[i], x, T));
        worst = fmax(worst, check_fused(fused_specs[i], x, 37));
    }
    if (load_real()) {
        for (size_t i = 0; i < sizeof fused_specs / sizeof fused_specs[0]; i++) {
            worst = fmax(worst, check_fused(fused_specs[i], real_k, T));
            worst = fmax(worst, check_fused(fused_specs[i], real_v, 50));
        }
    }
    printf("fused page attention: worst error %.3g of the bound\n", worst);
}

/* A damaged payload fails in the fused slots as in decode. */
static void test_fused_corrupt(void **st)
{
    (void)st;
    static float x[N], y[N], q[QH * D], sc[QH * T];
    fill_page(x);
    for (int i = 0; i < QH * D; i++) q[i] = rnd();
    int64_t dims[3] = {T, H, D};
    kvq_shape sh = kvq_shape_make(3, dims);
    static const char *const specs[] = {"kivi:bits=2", "gear:bits=2,axis=token,rank=2,sparse=0.06"};
    for (int k = 0; k < 2; k++) {
        size_t n;
        uint8_t *pay = roundtrip(specs[k], x, y, &n);
        kvq_ctx *ctx;
        assert_int_equal(kvq_ctx_create(specs[k], &ctx), KVQ_OK);
        const kvq_page_attn_i *f = k == 0 ? &kvq_page_attn_kivi : &kvq_page_attn_gear;
        assert_int_equal(f->qk(ctx, pay, n - 1, &sh, q, QH, QH / H, T, sc, T), KVQ_ERR_CORRUPT);
        if (k == 1) { /* an f16 B value of the last head: +Inf */
            pay[n - 4 * 2 - 2] = 0x00;
            pay[n - 4 * 2 - 1] = 0x7C;
            assert_int_equal(f->qk(ctx, pay, n, &sh, q, QH, QH / H, T, sc, T), KVQ_ERR_CORRUPT);
            assert_int_equal(f->pv(ctx, pay, n, &sh, sc, QH, QH / H, T, T, q), KVQ_ERR_CORRUPT);
        }
        pay[1] = 0x7C; /* entry 0's step: Inf */
        pay[0] = 0x00;
        assert_int_equal(f->qk(ctx, pay, n, &sh, q, QH, QH / H, T, sc, T), KVQ_ERR_CORRUPT);
        assert_int_equal(f->pv(ctx, pay, n, &sh, sc, QH, QH / H, T, T, q), KVQ_ERR_CORRUPT);
        assert_int_equal(f->qk(ctx, pay, n, &sh, q, QH, QH / H, T + 1, sc, T), KVQ_ERR_ARG);
        kvq_ctx_free(ctx);
        free(pay);
    }
}

/* The stored outliers of every vector are the k smallest and k largest in
 * (value, position) order, as a full sort gives them — for the one-pass
 * selection (k ≤ 8) and the sorted path (k > 8), with many ties. */
static int cmp_vi(const void *a, const void *b)
{
    const float *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

static void test_outlier_selection(void **st)
{
    (void)st;
    static float x[N], y[N], vi[T > D ? T : D][2];
    for (int i = 0; i < N; i++) x[i] = roundf(rnd() * 4.0f) / 4.0f; /* 9 distinct values: ties everywhere */
    static const char *const specs[][2] = {
        {"gear:bits=2,rank=0,sparse=0.0625", "kivi:bits=2"},                         /* k = 2  */
        {"gear:bits=2,rank=0,sparse=0.25", "kivi:bits=2"},                           /* k = 8  */
        {"gear:bits=2,rank=0,sparse=0.3", "kivi:bits=2"},                            /* k = 9  */
        {"gear:bits=2,axis=token,rank=0,sparse=0.1", "kivi:bits=2,axis=token"},      /* k = 3  */
        {"gear:bits=2,axis=token,rank=0,sparse=0.5", "kivi:bits=2,axis=token"},      /* k = 16 */
    };
    for (int k_ = 0; k_ < 5; k_++) {
        size_t n, nk;
        uint8_t *p = roundtrip(specs[k_][0], x, y, &n);
        free(roundtrip(specs[k_][1], x, y, &nk));
        int ch = strstr(specs[k_][0], "token") == NULL, len = ch ? T : D, n_vec = ch ? H * D : T * H;
        int k = (int)(n - nk) / (n_vec * 2 * 3); /* records: u8 index + f16 value */
        assert_true(k >= 2);
        const uint8_t *sp = p + nk;
        for (int v = 0; v < n_vec; v++) {
            for (int i = 0; i < len; i++) {
                vi[i][0] = ch ? x[i * H * D + v] : x[v * D + i];
                vi[i][1] = (float)i;
            }
            qsort(vi, (size_t)len, sizeof vi[0], cmp_vi);
            for (int e = 0; e < 2 * k; e++, sp += 3) assert_int_equal(sp[0], (int)vi[e < k ? e : len - 2 * k + e][1]);
        }
        free(p);
    }
}

/* Streaming: pages sealed earlier decode the same after more tokens. */
static void test_streaming_and_stats(void **st)
{
    (void)st;
    enum { L = 2, P = 16, MAXT = 96 };
    static float k[MAXT * H * D], v[MAXT * H * D], first[P * H * D], again[P * H * D];
    for (int i = 0; i < MAXT * H * D; i++) k[i] = rnd(), v[i] = rnd();
    kvq_cache_config cfg = kvq_cache_config_default(L, H, D, MAXT);
    cfg.page = P;
    cfg.k_spec = "gear:bits=2,rank=2,sparse=0.125"; /* k = 1 per 16-token channel */
    cfg.v_spec = "gear:bits=4,axis=token,rank=2,sparse=0.0625";
    kvq_cache *c;
    assert_int_equal(kvq_cache_create(&cfg, &c), KVQ_OK);
    for (int l = 0; l < L; l++) assert_int_equal(kvq_cache_append(c, l, k, v, P), KVQ_OK);
    assert_int_equal(kvq_cache_read(c, 1, 0, P, first, NULL), KVQ_OK);
    for (int t = P; t < MAXT - 5; t++)
        for (int l = 0; l < L; l++)
            assert_int_equal(kvq_cache_append(c, l, k + t * H * D, v + t * H * D, 1), KVQ_OK);
    assert_int_equal(kvq_cache_read(c, 1, 0, P, again, NULL), KVQ_OK);
    assert_memory_equal(first, again, sizeof first);
    kvq_cache_stats s;
    assert_int_equal(kvq_cache_stats_get(c, &s), KVQ_OK);
    /* 91 tokens per layer: 5 pages sealed, 11 tokens in the f32 window */
    const uint64_t pages = 5 * L;
    uint64_t k_codes = P * H * D * 2 / 8, v_codes = P * H * D * 4 / 8;
    uint64_t k_scales = H * D * 4, v_scales = P * H * (D / 32) * 4;
    uint64_t k_sparse = H * D * 2 * 1 * 3, v_sparse = P * H * 2 * 2 * 3;
    uint64_t lowrank = 2 * (uint64_t)H * ((P + D) * 2 * 2 + 2 * 4);
    assert_int_equal(s.bytes_payload, pages * (k_codes + v_codes));
    assert_int_equal(s.bytes_scales, pages * (k_scales + v_scales));
    assert_int_equal(s.bytes_sparse, pages * (k_sparse + v_sparse));
    assert_int_equal(s.bytes_lowrank, pages * lowrank);
    assert_int_equal(s.bytes_meta, pages * 2 * KVQ_CACHE_PAGE_META);
    assert_int_equal(s.bytes_window, (uint64_t)L * 11 * H * D * 4 * 2);
    assert_int_equal(s.bytes_total, s.bytes_payload + s.bytes_scales + s.bytes_sparse + s.bytes_lowrank +
                                        s.bytes_meta + s.bytes_window);
    kvq_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank0_is_kivi),       cmocka_unit_test(test_kivi_half_step),
        cmocka_unit_test(test_full_rank),           cmocka_unit_test(test_rank_monotone_real),
        cmocka_unit_test(test_orthonormal),         cmocka_unit_test(test_outliers_exact),
        cmocka_unit_test(test_streaming_and_stats), cmocka_unit_test(test_fused_page_attention),
        cmocka_unit_test(test_fused_corrupt),       cmocka_unit_test(test_outlier_selection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
