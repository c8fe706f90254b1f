/*
 * test_plt.c — the PLT sequential KV coder (compress/plt.c, plt_trie.c;
 * cache-methods.md §3.4): lossless words bit for bit on every f16/bf16
 * pattern and on real llama-4.6M K/V pages (and smaller than zstd -19 on
 * the same bytes), closed-loop lossy error bounded over 1024 tokens, the
 * prefix trie storing a shared prefix once (exact bytes), exact matches
 * only, eviction never freeing a locked page, and a decoder that starts
 * from a matched prefix giving the same logits as a full prefill.
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
#include <zstd.h>

#include "compress/plt_internal.h"
#include "decoder_fixture.h"

#define DATA_DIR   "../shared/data"
#define LLAMA_BIN  DATA_DIR "/models/llama-4.6M/model.bin"
#define LLAMA_TOK  DATA_DIR "/models/llama-4.6M/tok512.bin"
#define VALID_TXT  DATA_DIR "/corpus/mixtext/valid.txt"
#define REAL_TOKENS 128  /* tokens of valid.txt run through the model     */
#define REAL_PAGE   64   /* tokens per page (§3.3 default T)              */
#define ZSTD_REF    19   /* the mandatory baseline level                  */
#define ZSTD_FAST   1    /* plt's zstd backend in round-trip tests         */

static uint64_t rng = 0xD1B54A32D192ED03ull;
static uint32_t rnd(void)
{
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}
static float rnd_normal(void)
{
    float u = ((float)(rnd() >> 8) + 0.5f) * 0x1p-24f, v = (float)(rnd() >> 8) * 0x1p-24f;
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* ---- lossless words ---------------------------------------------------------- */
static void words_roundtrip(const uint16_t *w, int64_t T, int64_t C, plt_word k, plt_backend be, size_t *bytes)
{
    kvq_buf b = {0};
    assert_int_equal(kvq_plt_words_encode(w, T, C, k, be, ZSTD_FAST, &b), KVQ_OK);
    uint16_t *d = malloc((size_t)(T * C) * sizeof *d);
    assert_int_equal(kvq_plt_words_decode(b.p, b.n, T, C, d), KVQ_OK);
    assert_memory_equal(w, d, (size_t)(T * C) * sizeof *d);
    if (bytes) *bytes = b.n;
    free(d);
    kvq_buf_free(&b);
}

/* Every 16-bit pattern (NaN payloads, ±0, subnormals, ±Inf) as f16 and as
 * bf16, in order and shuffled, both backends. */
static void test_words_every_pattern(void **state)
{
    (void)state;
    uint16_t *w = malloc(65536 * sizeof *w);
    for (int shuffled = 0; shuffled < 2; shuffled++) {
        for (uint32_t i = 0; i < 65536; i++) w[i] = (uint16_t)i;
        for (uint32_t i = 65535; shuffled && i > 0; i--) {
            uint32_t j = rnd() % (i + 1);
            uint16_t t = w[i];
            w[i] = w[j], w[j] = t;
        }
        for (int k = 0; k < 2; k++)
            for (int be = 0; be < 2; be++) words_roundtrip(w, 256, 256, (plt_word)k, (plt_backend)be, NULL);
    }
    uint16_t one = 0x8000; /* -0 alone */
    words_roundtrip(&one, 1, 1, PLT_WORD_F16, PLT_BACKEND_RANS, NULL);
    free(w);
}

/* Channels of fixed scale drifting slowly: a structured page compresses
 * below the raw 2 bytes per value and still round-trips. */
static void test_words_structured(void **state)
{
    (void)state;
    enum { T = 64, C = 128 };
    uint16_t w[T * C];
    float x[C] = {0};
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
            x[c] = 0.9f * x[c] + 0.1f * rnd_normal();
            w[t * C + c] = kvq_f32_to_f16(x[c] * (float)(1 << (c % 8)));
        }
    size_t n[2];
    words_roundtrip(w, T, C, PLT_WORD_F16, PLT_BACKEND_RANS, &n[0]);
    words_roundtrip(w, T, C, PLT_WORD_F16, PLT_BACKEND_ZSTD, &n[1]);
    assert_true(n[0] < 2 * T * C * 15 / 16);
    assert_true(n[1] < 2 * T * C);
    kvq_buf b = {0};
    assert_int_equal(kvq_plt_words_encode(w, T, C, PLT_WORD_F16, PLT_BACKEND_RANS, 0, &b), KVQ_OK);
    uint16_t d[T * C];
    for (size_t k = 0; k < b.n; k++) assert_int_not_equal(kvq_plt_words_decode(b.p, k, T, C, d), KVQ_OK);
    assert_int_equal(kvq_plt_words_decode(b.p, b.n, T, C + 1, d), KVQ_ERR_SHAPE);
    b.p[0] ^= 0x40;
    assert_int_equal(kvq_plt_words_decode(b.p, b.n, T, C, d), KVQ_ERR_VERSION);
    b.p[0] ^= 0x40;
    b.p[3] = 7; /* predictor id */
    assert_int_equal(kvq_plt_words_decode(b.p, b.n, T, C, d), KVQ_ERR_CORRUPT);
    kvq_buf_free(&b);
}

/* Repeated token vectors are coded once; incompressible words are stored
 * raw (never more than 2 bytes per value plus the header). */
static void test_words_repeats_and_raw(void **state)
{
    (void)state;
    enum { T = 32, C = 64 };
    uint16_t w[T * C], w2[T * C];
    for (int i = 0; i < T * C; i++) w[i] = kvq_f32_to_f16(rnd_normal());
    memcpy(w2, w, sizeof w);
    for (int t = 16; t < T; t++) memcpy(w + t * C, w + (t % 5) * C, C * sizeof *w); /* rows repeat */
    size_t n_rep, n_new;
    words_roundtrip(w, T, C, PLT_WORD_F16, PLT_BACKEND_RANS, &n_rep);
    words_roundtrip(w2, T, C, PLT_WORD_F16, PLT_BACKEND_RANS, &n_new);
    assert_true(n_rep < n_new * 6 / 10); /* 16 of 32 rows are copies */
    for (int i = 0; i < T * C; i++) w[i] = (uint16_t)rnd(); /* uniform bit patterns */
    for (int be = 0; be < 2; be++) {
        kvq_buf b = {0};
        assert_int_equal(kvq_plt_words_encode(w, T, C, PLT_WORD_F16, (plt_backend)be, ZSTD_REF, &b), KVQ_OK);
        assert_int_equal(b.p[2], PLT_BACKEND_RAW);
        assert_int_equal(b.n, 4 + 1 + 1 + 1 + 2 * T * C); /* header, LEB T, LEB C, repeat flag, words */
        kvq_buf_free(&b);
        words_roundtrip(w, T, C, PLT_WORD_F16, (plt_backend)be, NULL);
    }
}

/* ---- real K/V pages ----------------------------------------------------------- */
typedef struct {
    kvq_model *m;
    int L, kvd, n;
    float *k, *v;      /* [L][n][kvd] */
} real_kv;

static int real_kv_load(real_kv *r)
{
    memset(r, 0, sizeof *r);
    kvq_tokenizer *tk = NULL;
    FILE *f = fopen(VALID_TXT, "rb");
    if (!f || kvq_model_load(LLAMA_BIN, &r->m) || kvq_tokenizer_load(LLAMA_TOK, 512, &tk)) {
        if (f) fclose(f);
        kvq_model_free(r->m);
        return 0;
    }
    char text[4096];
    size_t got = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[got] = 0;
    int *toks = malloc(kvq_tokenizer_encode_bound(got) * sizeof *toks);
    size_t nt;
    assert_int_equal(kvq_tokenizer_encode(tk, text, 1, 0, toks, kvq_tokenizer_encode_bound(got), &nt), KVQ_OK);
    assert_true(nt >= REAL_TOKENS);
    const kvq_model_config *c = kvq_model_config_get(r->m);
    r->L = c->n_layers, r->kvd = c->n_kv_heads * c->head_size, r->n = REAL_TOKENS;
    kvq_decoder *d;
    assert_int_equal(kvq_decoder_create(r->m, NULL, &d), KVQ_OK);
    assert_int_equal(kvq_decoder_forward_seq(d, toks, REAL_TOKENS, 0, NULL), KVQ_OK);
    size_t per = (size_t)r->n * (size_t)r->kvd;
    r->k = malloc((size_t)r->L * per * sizeof(float));
    r->v = malloc((size_t)r->L * per * sizeof(float));
    for (int l = 0; l < r->L; l++)
        assert_int_equal(kvq_cache_read(kvq_decoder_cache(d), l, 0, r->n, r->k + l * per, r->v + l * per), KVQ_OK);
    kvq_decoder_free(d);
    kvq_tokenizer_free(tk);
    free(toks);
    return 1;
}

static void real_kv_free(real_kv *r)
{
    free(r->k), free(r->v);
    kvq_model_free(r->m);
}

/* plt pages equal the f16/bf16 codec's rounding bit for bit, and take
 * fewer bytes than zstd -19 on the same f16/bf16 bytes. */
static void test_real_pages(void **state)
{
    (void)state;
    real_kv r;
    if (!real_kv_load(&r)) {
        print_message("[  SKIPPED ] %s, %s or %s absent\n", LLAMA_BIN, LLAMA_TOK, VALID_TXT);
        skip();
    }
    static const char *const specs[2][2] = {{"plt", "f16"}, {"plt:dtype=bf16", "bf16"}};
    int64_t dims[3] = {REAL_PAGE, 1, r.kvd};
    size_t nv = (size_t)REAL_PAGE * (size_t)r.kvd, zcap = ZSTD_compressBound(2 * nv);
    float *y = malloc(nv * sizeof *y), *ref = malloc(nv * sizeof *ref);
    uint8_t *buf = malloc(zcap + 65536), *raw = malloc(2 * nv);
    for (int k = 0; k < 2; k++) {
        kvq_ctx *plt, *flt;
        assert_int_equal(kvq_ctx_create(specs[k][0], &plt), KVQ_OK);
        assert_int_equal(kvq_ctx_create(specs[k][1], &flt), KVQ_OK);
        kvq_tensor out = kvq_tensor_view(KVQ_DTYPE_F32, y, 3, dims);
        size_t plt_bytes = 0, zstd_bytes = 0, raw_bytes = 0;
        for (int l = 0; l < r.L; l++)
            for (int side = 0; side < 2; side++)
                for (int p = 0; p < r.n / REAL_PAGE; p++) {
                    float *src = (side ? r.v : r.k) + ((size_t)l * (size_t)r.n + (size_t)p * REAL_PAGE) * (size_t)r.kvd;
                    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, src, 3, dims);
                    size_t n, nr;
                    assert_int_equal(kvq_ctx_encode_payload(plt, &t, buf, zcap + 65536, &n), KVQ_OK);
                    assert_int_equal(kvq_ctx_decode_payload(plt, buf, n, &out), KVQ_OK);
                    plt_bytes += n;
                    assert_int_equal(kvq_ctx_encode_payload(flt, &t, raw, 2 * nv, &nr), KVQ_OK);
                    kvq_tensor rt = kvq_tensor_view(KVQ_DTYPE_F32, ref, 3, dims);
                    assert_int_equal(kvq_ctx_decode_payload(flt, raw, nr, &rt), KVQ_OK);
                    assert_memory_equal(y, ref, nv * sizeof *y);  /* bit for bit */
                    raw_bytes += nr;
                    size_t z = ZSTD_compress(buf, zcap, raw, nr, ZSTD_REF);
                    assert_false(ZSTD_isError(z));
                    zstd_bytes += z;
                }
        print_message("[  NOTE    ] llama-4.6M %d tokens %s: raw %zu, zstd-19 %zu (%.3fx), plt %zu (%.3fx)\n", r.n,
                      specs[k][1], raw_bytes, zstd_bytes, (double)raw_bytes / (double)zstd_bytes, plt_bytes,
                      (double)raw_bytes / (double)plt_bytes);
        assert_true(plt_bytes < zstd_bytes);
        kvq_ctx_free(plt);
        kvq_ctx_free(flt);
    }
    free(y), free(ref), free(buf), free(raw);
    real_kv_free(&r);
}

/* ---- closed-loop lossy -------------------------------------------------------- */
enum { QT = 1024, QC = 96, QBITS = 4, QBLOCK = 64 };

/* Encodes x [QT][QC] with spec, decodes into y; returns bits per value. */
static double pltq_run(const char *spec, const float *x, float *y)
{
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
    int64_t dims[2] = {QT, QC};
    kvq_tensor in = kvq_tensor_view(KVQ_DTYPE_F32, (void *)(uintptr_t)x, 2, dims);
    kvq_tensor out = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, dims);
    size_t cap = kvq_ctx_payload_bound(ctx, &in.shape), n;
    uint8_t *buf = malloc(cap);
    assert_int_equal(kvq_ctx_encode_payload(ctx, &in, buf, cap, &n), KVQ_OK);
    assert_int_equal(kvq_ctx_decode_payload(ctx, buf, n, &out), KVQ_OK);
    free(buf);
    kvq_ctx_free(ctx);
    return 8.0 * (double)n / (QT * QC);
}

/* 1024 tokens of drifting channels.  axis=token: |x − x̂| <= max|x_block|/
 * (2L)·(1+2^-7) at every (token, block); axis=channel: <= max_t|x_c|/(2L)
 * ·(1+2^-7) for every channel at every token: no accumulation in either,
 * and entropy coding brings the cost under the nominal `bits`. */
static void test_pltq_bounded(void **state)
{
    (void)state;
    const double L = (1 << (QBITS - 1)) - 1, slack = 1 + 0x1p-7;
    float *x = malloc(QT * QC * sizeof *x), *y = malloc(QT * QC * sizeof *y), s[QC] = {0};
    for (int t = 0; t < QT; t++)
        for (int c = 0; c < QC; c++) {
            s[c] += 0.05f * rnd_normal();
            x[t * QC + c] = s[c] * (c % 3 ? 1.0f : 8.0f) + 0.01f * rnd_normal();
        }
    double bpv = pltq_run("pltq:bits=4", x, y), last_err = 0;
    for (int t = 0; t < QT; t++)
        for (int b = 0; b * QBLOCK < QC; b++) {
            int c1 = (b + 1) * QBLOCK < QC ? (b + 1) * QBLOCK : QC;
            double mx = 0, e = 0;
            for (int c = b * QBLOCK; c < c1; c++) {
                mx = fmax(mx, fabs(x[t * QC + c]));
                e = fmax(e, fabs((double)x[t * QC + c] - y[t * QC + c]));
            }
            if (e > mx / (2 * L) * slack + 1e-6 * mx) fail_msg("token %d block %d: error %g, max %g", t, b, e, mx);
            if (t == QT - 1) last_err = fmax(last_err, e);
        }
    print_message("[  NOTE    ] pltq bits=4 axis=token, %d tokens: %.3f bits/value, last token max |e| %.4g\n", QT,
                  bpv, last_err);
    assert_true(bpv < QBITS);
    bpv = pltq_run("pltq:bits=4,axis=channel", x, y);
    for (int c = 0; c < QC; c++) {
        double mx = 0;
        for (int t = 0; t < QT; t++) mx = fmax(mx, fabs(x[t * QC + c]));
        for (int t = 0; t < QT; t++) {
            double e = fabs((double)x[t * QC + c] - y[t * QC + c]);
            if (e > mx / (2 * L) * slack + 1e-6 * mx) fail_msg("channel %d token %d: error %g, max %g", c, t, e, mx);
        }
    }
    print_message("[  NOTE    ] pltq bits=4 axis=channel: %.3f bits/value\n", bpv);
    assert_true(bpv < QBITS);
    free(x), free(y);
}

/* ---- the prefix trie ---------------------------------------------------------- */
#define TL 2   /* layers   */
#define TH 2   /* kv heads */
#define TD 4   /* head size */
#define TP 4   /* page     */
#define TKV (TH * TD)
#define TMAX 64

/* K/V of position t depend on the whole prefix (as a causal model's do):
 * a rolling hash of tokens[0..t] seeds them. */
static void synth_kv(const int32_t *tok, int n, int layer, float *k, float *v)
{
    uint32_t h = 2166136261u + (uint32_t)layer;
    for (int t = 0; t < n; t++) {
        h = (h ^ (uint32_t)tok[t]) * 16777619u;
        for (int i = 0; i < TKV; i++) {
            k[t * TKV + i] = (float)((h >> (i % 16)) & 0xFF) / 16.0f - 8.0f;
            v[t * TKV + i] = (float)(((h * 31u) >> (i % 16)) & 0xFF) / 32.0f;
        }
    }
}

static kvq_cache *trie_cache(kvq_plt_store *st)
{
    kvq_cache_config cc = kvq_cache_config_default(TL, TH, TD, TMAX);
    cc.page = TP;
    cc.k_spec = cc.v_spec = "f32";
    cc.prefix = kvq_plt_store_iface();
    cc.prefix_store = st;
    kvq_cache *c;
    assert_int_equal(kvq_cache_create(&cc, &c), KVQ_OK);
    return c;
}

/* Run one sequence through a cache: load the stored prefix, append the
 * rest (sealing publishes it), check every token reads back exactly. */
static int run_seq(kvq_plt_store *st, const int32_t *tok, int n)
{
    kvq_cache *c = trie_cache(st);
    float k[TMAX * TKV], v[TMAX * TKV], rk[TMAX * TKV], rv[TMAX * TKV];
    int m = -1;
    assert_int_equal(kvq_cache_prefix_load(c, tok, n, &m), KVQ_OK);
    for (int l = 0; l < TL; l++) {
        synth_kv(tok, n, l, k, v);
        assert_int_equal(kvq_cache_append(c, l, k + m * TKV, v + m * TKV, n - m), KVQ_OK);
        assert_int_equal(kvq_cache_read(c, l, 0, n, rk, rv), KVQ_OK);
        assert_memory_equal(k, rk, (size_t)n * TKV * sizeof(float));
        assert_memory_equal(v, rv, (size_t)n * TKV * sizeof(float));
    }
    kvq_cache_free(c);
    return m;
}

static kvq_plt_store *make_store(uint64_t budget)
{
    kvq_plt_store_config sc = {.n_layers = TL, .n_kv_heads = TH, .head_size = TD, .page = TP, .budget_bytes = budget};
    kvq_plt_store *st;
    assert_int_equal(kvq_plt_store_create(&sc, &st), KVQ_OK);
    return st;
}

#define PAGE_BYTES ((uint64_t)2 * TP * TKV * sizeof(float)) /* K + V of one layer page, f32 */

static void test_trie_shared_prefix(void **state)
{
    (void)state;
    enum { N = 4, PFX = 16 };
    static const int suffix[N] = {8, 12, 4, 16};
    kvq_plt_store *st = make_store(0);
    int32_t tok[TMAX];
    for (int i = 0; i < PFX; i++) tok[i] = 100 + i;
    int expect_pages = PFX / TP;
    for (int s = 0; s < N; s++) {
        for (int i = 0; i < suffix[s]; i++) tok[PFX + i] = 1000 * (s + 1) + i;
        int m = run_seq(st, tok, PFX + suffix[s]);
        assert_int_equal(m, s == 0 ? 0 : PFX); /* later sequences skip the shared prefix */
        expect_pages += suffix[s] / TP;
    }
    kvq_plt_store_stats ss;
    assert_int_equal(kvq_plt_store_stats_get(st, &ss), KVQ_OK);
    /* p + Σ(len_i − p) tokens stored, once per layer (§3.4 property 4) */
    assert_int_equal(ss.nodes, (uint64_t)expect_pages);
    assert_int_equal(ss.layer_pages, (uint64_t)expect_pages * TL);
    assert_int_equal(ss.bytes_payload, (uint64_t)expect_pages * TL * PAGE_BYTES);
    assert_int_equal(ss.hit_tokens, (uint64_t)(N - 1) * PFX);
    /* exact matches only: one token changed inside page 1 keeps page 0 */
    int m;
    tok[5] = 7;
    assert_int_equal(kvq_plt_store_iface()->match(st, tok, 24, TP, &m), KVQ_OK);
    assert_int_equal(m, TP);
    tok[0] = 7;
    assert_int_equal(kvq_plt_store_iface()->match(st, tok, 24, TP, &m), KVQ_OK);
    assert_int_equal(m, 0);
    assert_int_equal(kvq_plt_store_iface()->match(st, tok, 24, TP + 1, &m), KVQ_ERR_SHAPE);
    /* publishing the same sequence again stores nothing new */
    for (int i = 0; i < PFX; i++) tok[i] = 100 + i;
    kvq_cache *c = trie_cache(st);
    float k[TMAX * TKV], v[TMAX * TKV];
    assert_int_equal(kvq_cache_set_tokens(c, 0, tok, PFX), KVQ_OK);
    for (int l = 0; l < TL; l++) {
        synth_kv(tok, PFX, l, k, v);
        assert_int_equal(kvq_cache_append(c, l, k, v, PFX), KVQ_OK);
    }
    kvq_cache_free(c);
    kvq_plt_store_stats s2;
    kvq_plt_store_stats_get(st, &s2);
    assert_int_equal(s2.bytes_payload, ss.bytes_payload);
    assert_int_equal(s2.dedup, ss.dedup + (uint64_t)(PFX / TP) * TL);
    kvq_plt_store_free(st);
}

static void test_trie_evict_locked(void **state)
{
    (void)state;
    enum { LEN = 16, BUDGET_PAGES = 6 };
    kvq_plt_store *st = make_store(BUDGET_PAGES * TL * PAGE_BYTES);
    int32_t a[LEN], b[LEN];
    for (int i = 0; i < LEN; i++) a[i] = 1 + i;
    assert_int_equal(run_seq(st, a, LEN), 0);
    int nl;
    assert_int_equal(kvq_plt_store_lock(st, a, LEN, &nl), KVQ_OK);
    assert_int_equal(nl, LEN);
    for (int s = 0; s < 20; s++) { /* unrelated traffic through a full store */
        for (int i = 0; i < LEN; i++) b[i] = 500 + 50 * s + i;
        run_seq(st, b, LEN);
        kvq_plt_store_stats ss;
        kvq_plt_store_stats_get(st, &ss);
        assert_true(ss.bytes_payload <= BUDGET_PAGES * TL * PAGE_BYTES);
    }
    kvq_plt_store_stats ss;
    kvq_plt_store_stats_get(st, &ss);
    assert_true(ss.evicted > 0);
    assert_true(ss.rejected > 0); /* 4 locked pages leave room for 2 */
    assert_int_equal(run_seq(st, a, LEN), LEN); /* the locked prefix survived, exact */
    assert_int_equal(kvq_plt_store_evict(st, 0), KVQ_OK);
    assert_int_equal(run_seq(st, a, LEN), LEN); /* still locked */
    assert_int_equal(kvq_plt_store_unlock(st, a, 13), KVQ_ERR_ARG); /* not page-aligned */
    assert_int_equal(kvq_plt_store_unlock(st, a, LEN), KVQ_OK);
    assert_int_equal(kvq_plt_store_unlock(st, a, LEN), KVQ_ERR_ARG); /* not locked any more */
    assert_int_equal(kvq_plt_store_evict(st, 0), KVQ_OK);
    kvq_plt_store_stats_get(st, &ss);
    assert_int_equal(ss.bytes_payload, 0);
    assert_int_equal(ss.nodes, 0);
    kvq_plt_store_free(st);
}

/* Random traffic over a small vocabulary (many shared prefixes), random
 * locks and evictions: every locked sequence always reloads exactly. */
static void test_trie_fuzz(void **state)
{
    (void)state;
    enum { SEQS = 8, LEN = 24, ROUNDS = 300 };
    kvq_plt_store *st = make_store(10 * TL * PAGE_BYTES);
    int32_t seq[SEQS][LEN];
    int locked[SEQS] = {0};
    for (int s = 0; s < SEQS; s++)
        for (int i = 0; i < LEN; i++) seq[s][i] = (int32_t)(rnd() % 2);
    for (int r = 0; r < ROUNDS; r++) {
        int s = (int)(rnd() % SEQS), op = (int)(rnd() % 4);
        if (op == 0 && !locked[s]) {
            int nl;
            assert_int_equal(kvq_plt_store_lock(st, seq[s], LEN, &nl), KVQ_OK);
            locked[s] = nl ? nl : -1;
        } else if (op == 1 && locked[s]) {
            assert_int_equal(kvq_plt_store_unlock(st, seq[s], locked[s] > 0 ? locked[s] : 0), KVQ_OK);
            locked[s] = 0;
        } else if (op == 2) {
            assert_int_equal(kvq_plt_store_evict(st, rnd() % (6 * TL * PAGE_BYTES)), KVQ_OK);
        } else {
            int m = run_seq(st, seq[s], LEN); /* checks exact reconstruction */
            if (locked[s] > 0) assert_true(m >= locked[s]);
        }
        for (int q = 0; q < SEQS; q++)
            if (locked[q] > 0) {
                int m;
                assert_int_equal(kvq_plt_store_iface()->match(st, seq[q], LEN, TP, &m), KVQ_OK);
                assert_true(m >= locked[q]);
            }
    }
    kvq_plt_store_free(st);
}

/* ---- the decoder starting from a matched prefix ------------------------------- */
static void test_decoder_prefix_skip(void **state)
{
    (void)state;
    enum { N = 24, PFX = 16 };
    fx_model fx;
    assert_int_equal(fx_make(&fx, 0, 7), KVQ_OK);
    kvq_plt_store_config sc = {.n_layers = FX_LAYERS, .n_kv_heads = FX_KV, .head_size = FX_HS, .page = TP};
    kvq_plt_store *st;
    assert_int_equal(kvq_plt_store_create(&sc, &st), KVQ_OK);
    kvq_cache_config cc = kvq_cache_config_default(FX_LAYERS, FX_KV, FX_HS, FX_SEQ);
    cc.page = TP;
    cc.k_spec = cc.v_spec = "f32";
    cc.prefix = kvq_plt_store_iface();
    cc.prefix_store = st;
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    o.cache_cfg = &cc;
    kvq_decoder *d, *ref;
    assert_int_equal(kvq_decoder_create(fx.model, &o, &d), KVQ_OK);
    assert_int_equal(kvq_decoder_create(fx.model, NULL, &ref), KVQ_OK);
    int a[N], b[N], m;
    for (int i = 0; i < N; i++) a[i] = 1 + (int)(rnd() % (FX_VOCAB - 1)), b[i] = i < PFX ? a[i] : (a[i] + 5) % FX_VOCAB;
    float *la = malloc(sizeof(float) * N * FX_VOCAB), *lb = malloc(sizeof(float) * N * FX_VOCAB);
    float *lr = malloc(sizeof(float) * N * FX_VOCAB);
    assert_int_equal(kvq_cache_prefix_load(kvq_decoder_cache(d), (const int32_t *)a, N, &m), KVQ_OK);
    assert_int_equal(m, 0);
    assert_int_equal(kvq_decoder_forward_seq(d, a, N, 0, la), KVQ_OK);
    assert_int_equal(kvq_decoder_reset(d), KVQ_OK);
    assert_int_equal(kvq_cache_prefix_load(kvq_decoder_cache(d), (const int32_t *)b, N, &m), KVQ_OK);
    assert_int_equal(m, PFX); /* the shared 16 tokens are not recomputed */
    assert_int_equal(kvq_decoder_forward_seq(d, b + m, N - m, m, lb), KVQ_OK);
    assert_int_equal(kvq_decoder_forward_seq(ref, b, N, 0, lr), KVQ_OK);
    assert_memory_equal(lb, lr + PFX * FX_VOCAB, sizeof(float) * (N - PFX) * FX_VOCAB);
    free(la), free(lb), free(lr);
    kvq_decoder_free(d);
    kvq_decoder_free(ref);
    kvq_plt_store_free(st);
    fx_free(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words_every_pattern), cmocka_unit_test(test_words_structured),
        cmocka_unit_test(test_words_repeats_and_raw),
        cmocka_unit_test(test_real_pages),          cmocka_unit_test(test_pltq_bounded),
        cmocka_unit_test(test_trie_shared_prefix),  cmocka_unit_test(test_trie_evict_locked),
        cmocka_unit_test(test_trie_fuzz),           cmocka_unit_test(test_decoder_prefix_skip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
