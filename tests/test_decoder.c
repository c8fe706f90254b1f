/*
 * test_decoder.c — the reference decoder: a random GQA model with an
 * untied classifier against a double-precision run.c-style forward;
 * threads and dequant-at-load give bit-identical logits; activation hooks
 * (capture counts, a lossless codec changes nothing, f16 changes a
 * little); bad tokens and positions are errors; and with ../shared/data:
 * llama2.c's greedy texts through the library API, GGUF logits equal to
 * the .bin's bit for bit, q8_0 weights close to f32 and closer than q4_0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "decoder_fixture.h"

#define DATA "../shared/data/models/"
#define S260K DATA "stories260K/"
#define L46M DATA "llama-4.6M/"
#define N_POS 20           /* positions checked on the fixture            */
#define REF_TOL 1e-4       /* f32 decoder vs double reference (relative)  */

static kvq_decoder *make_dec(const kvq_model *m, int threads, int dequant)
{
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    o.threads = threads;
    o.dequant_at_load = dequant;
    kvq_decoder *d = NULL;
    assert_int_equal(kvq_decoder_create(m, &o, &d), KVQ_OK);
    return d;
}

static const int fx_tokens[N_POS] = {1, 5, 9, 63, 0, 17, 17, 2, 40, 33, 8, 12, 60, 61, 3, 4, 29, 50, 7, 1};

static void test_fixture_vs_reference(void **state)
{
    (void)state;
    for (int untied = 0; untied <= 1; untied++) {
        fx_model fx;
        assert_int_equal(fx_make(&fx, untied, 11 + (uint64_t)untied), KVQ_OK);
        assert_int_equal(kvq_model_config_get(fx.model)->shared_classifier, !untied);
        kvq_decoder *d = make_dec(fx.model, 1, 0);
        fx_ref *ref = calloc(1, sizeof *ref);
        ref->m = fx.model;
        for (int pos = 0; pos < N_POS; pos++) {
            float *lg, want[FX_VOCAB];
            double dl[FX_VOCAB];
            assert_int_equal(kvq_decoder_forward(d, fx_tokens[pos], pos, &lg), KVQ_OK);
            fx_ref_forward(ref, fx_tokens[pos], pos, dl);
            for (int i = 0; i < FX_VOCAB; i++) want[i] = (float)dl[i];
            assert_true(fx_rel_err(lg, want, FX_VOCAB) < REF_TOL);
        }
        free(ref);
        kvq_decoder_free(d);
        fx_free(&fx);
    }
}

/* Logits of N_POS fixture tokens, [N_POS][vocab]. */
static void run_seq(kvq_decoder *d, float *out)
{
    assert_int_equal(kvq_decoder_reset(d), KVQ_OK);
    assert_int_equal(kvq_decoder_forward_seq(d, fx_tokens, N_POS, 0, out), KVQ_OK);
}

static void test_threads_and_dequant_identical(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 1, 5), KVQ_OK);
    static float a[N_POS * FX_VOCAB], b[N_POS * FX_VOCAB], c[N_POS * FX_VOCAB];
    kvq_decoder *d1 = make_dec(fx.model, 1, 0), *d3 = make_dec(fx.model, 3, 0), *dq = make_dec(fx.model, 1, 1);
    run_seq(d1, a);
    run_seq(d3, b);
    run_seq(dq, c);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(a, c, sizeof a);
    /* Token-by-token forward equals the chunked teacher-forced pass. */
    assert_int_equal(kvq_decoder_reset(d3), KVQ_OK);
    for (int p = 0; p < N_POS; p++) {
        float *l1;
        assert_int_equal(kvq_decoder_forward(d3, fx_tokens[p], p, &l1), KVQ_OK);
        assert_memory_equal(l1, a + p * FX_VOCAB, FX_VOCAB * sizeof *l1);
    }
    /* Rewinding to an earlier position recomputes the same logits. */
    float *lg;
    assert_int_equal(kvq_decoder_forward(d1, fx_tokens[5], 5, &lg), KVQ_OK);
    assert_memory_equal(lg, a + 5 * FX_VOCAB, FX_VOCAB * sizeof *lg);
    assert_int_equal(kvq_cache_len(kvq_decoder_cache(d1), 0), 6);
    /* f32 in place reads the mapping; dequant_at_load owns a copy. */
    assert_int_equal(kvq_decoder_weight_bytes(d1), kvq_decoder_weight_bytes(dq));
    kvq_decoder_free(d1);
    kvq_decoder_free(d3);
    kvq_decoder_free(dq);
    fx_free(&fx);
}

typedef struct {
    int calls[KVQ_LIN__COUNT];
    int bad;
} capture_count;

static void count_cb(void *user, int layer, kvq_linear which, const float *x, int n)
{
    capture_count *c = user;
    int want = which == KVQ_LIN_DOWN ? FX_HIDDEN : FX_DIM;
    if (n != want || !x || layer < 0 || layer > FX_LAYERS || (which == KVQ_LIN_CLS) != (layer == FX_LAYERS))
        c->bad++;
    c->calls[which]++;
}

static void run_hooked(const kvq_model *m, const char *spec, capture_count *cnt, float *out)
{
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    kvq_ctx *ctx = NULL;
    if (spec) {
        assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
        for (int i = 0; i < KVQ_LIN_CLS; i++) o.act[i] = ctx;
    }
    o.capture = cnt ? count_cb : NULL;
    o.capture_user = cnt;
    kvq_decoder *d = NULL;
    assert_int_equal(kvq_decoder_create(m, &o, &d), KVQ_OK);
    run_seq(d, out);
    kvq_decoder_free(d);
    kvq_ctx_free(ctx);
}

static void test_activation_hooks(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 0, 7), KVQ_OK);
    static float plain[N_POS * FX_VOCAB], hooked[N_POS * FX_VOCAB];
    capture_count cnt = {{0}, 0};
    run_hooked(fx.model, NULL, &cnt, plain);
    assert_int_equal(cnt.bad, 0);
    for (int w = 0; w < KVQ_LIN_CLS; w++) assert_int_equal(cnt.calls[w], N_POS * FX_LAYERS);
    assert_int_equal(cnt.calls[KVQ_LIN_CLS], N_POS);
    /* A lossless codec on every input changes nothing. */
    run_hooked(fx.model, "f32", NULL, hooked);
    assert_memory_equal(plain, hooked, sizeof plain);
    /* bf16 inputs (8-bit significand) move logits, but only a little. */
    run_hooked(fx.model, "bf16", NULL, hooked);
    assert_memory_not_equal(plain, hooked, sizeof plain);
    double e = fx_rel_err(hooked, plain, N_POS * FX_VOCAB);
    assert_true(e > 0 && e < 5e-2);
    fx_free(&fx);
}

/* The same weights through safetensors (HF rotate_half Q/K order, decoded
 * with HALF pairs) and the .kvq container give the same logits. */
static void test_rope_half_and_containers(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 1, 9), KVQ_OK);
    kvq_model *st = NULL, *kq = NULL;
    assert_int_equal(fx_reload(fx.model, KVQ_FORMAT_SAFETENSORS, "safetensors", &st), KVQ_OK);
    assert_int_equal(fx_reload(fx.model, KVQ_FORMAT_KVQ, "kvq", &kq), KVQ_OK);
    assert_int_equal(kvq_model_config_get(st)->rope, KVQ_ROPE_HALF);
    static float a[N_POS * FX_VOCAB], b[N_POS * FX_VOCAB], c[N_POS * FX_VOCAB];
    kvq_decoder *da = make_dec(fx.model, 1, 0), *db = make_dec(st, 1, 0), *dc = make_dec(kq, 2, 0);
    run_seq(da, a);
    run_seq(db, b);
    run_seq(dc, c);
    assert_true(fx_rel_err(b, a, N_POS * FX_VOCAB) < 1e-6); /* q·k summed in another channel order */
    assert_memory_equal(a, c, sizeof a);
    kvq_decoder_free(da);
    kvq_decoder_free(db);
    kvq_decoder_free(dc);
    kvq_model_free(st);
    kvq_model_free(kq);
    fx_free(&fx);
}

static void test_errors(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 0, 3), KVQ_OK);
    kvq_decoder *d = make_dec(fx.model, 1, 0);
    float *lg;
    assert_int_equal(kvq_decoder_forward(d, FX_VOCAB, 0, &lg), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error_detail(), "token 64"));
    assert_int_equal(kvq_decoder_forward(d, -1, 0, &lg), KVQ_ERR_ARG);
    assert_int_equal(kvq_decoder_forward(d, 1, 3, &lg), KVQ_ERR_ARG); /* gap: cache empty */
    assert_non_null(strstr(kvq_last_error_detail(), "position 3"));
    for (int p = 0; p < FX_SEQ; p++) assert_int_equal(kvq_decoder_forward(d, 1, p, &lg), KVQ_OK);
    assert_int_not_equal(kvq_decoder_forward(d, 1, FX_SEQ, &lg), KVQ_OK); /* cache full */
    kvq_decoder_free(d);
    /* A cache config that does not fit the model is refused. */
    kvq_cache_config cc = kvq_cache_config_default(FX_LAYERS + 1, FX_KV, FX_HS, FX_SEQ);
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    o.cache_cfg = &cc;
    assert_int_equal(kvq_decoder_create(fx.model, &o, &d), KVQ_ERR_ARG);
    assert_null(d);
    fx_free(&fx);
}

/* ---- real models -------------------------------------------------------------- */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *p = malloc(1 << 16);
    *n = fread(p, 1, (1 << 16) - 1, f);
    p[*n] = '\0';
    fclose(f);
    return p;
}

/* Greedy text as run.c prints it (prompt echoed, stop at BOS, "\n"). */
static char *greedy_text(const char *model, const char *tok_path, const char *prompt)
{
    kvq_model *m = NULL;
    kvq_tokenizer *t = NULL;
    if (kvq_model_load(model, &m) != KVQ_OK) return NULL;
    const kvq_model_config *c = kvq_model_config_get(m);
    assert_int_equal(kvq_tokenizer_load(tok_path, c->vocab_size, &t), KVQ_OK);
    kvq_decoder *d = make_dec(m, 1, 0);
    int toks[64];
    size_t n;
    assert_int_equal(kvq_tokenizer_encode(t, prompt, 1, 0, toks, 64, &n), KVQ_OK);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    int token = toks[0], steps = c->seq_len < 256 ? c->seq_len : 256;
    for (int pos = 0; pos < steps; pos++) {
        float *lg;
        assert_int_equal(kvq_decoder_forward(d, token, pos, &lg), KVQ_OK);
        int next = (size_t)pos + 1 < n ? toks[pos + 1] : 0;
        if ((size_t)pos + 1 >= n)
            for (int i = 1; i < c->vocab_size; i++) next = lg[i] > lg[next] ? i : next;
        if (next == KVQ_TOKEN_BOS) break;
        const char *p = kvq_tokenizer_decode(t, token, next);
        if (kvq_piece_is_safe(p) && len + strlen(p) + 2 < cap) len += (size_t)sprintf(out + len, "%s", p);
        token = next;
    }
    strcat(out, "\n");
    kvq_decoder_free(d);
    kvq_tokenizer_free(t);
    kvq_model_free(m);
    return out;
}

static void expect_text(const char *model, const char *tok, const char *prompt, const char *expected)
{
    size_t n;
    char *want = slurp(expected, &n);
    char *got = want ? greedy_text(model, tok, prompt) : NULL;
    if (!got) {
        free(want);
        print_message("skipped: %s or %s not available\n", model, expected);
        skip();
    }
    assert_string_equal(got, want);
    free(got);
    free(want);
}

static void test_golden_stories260k(void **state)
{
    (void)state;
    expect_text(S260K "stories260K.bin", S260K "tok512.bin", "", S260K "expected_greedy_t0.txt");
}

static void test_golden_llama46m(void **state)
{
    (void)state;
    expect_text(L46M "model.bin", L46M "tok512.bin", "", L46M "expected_greedy_t0.txt");
    expect_text(L46M "model.bin", L46M "tok512.bin", "And God said", L46M "expected_greedy_t0_prompt.txt");
}

/* Logits of the first n greedy-free tokens 1, 2+i·7 mod vocab. */
static float *model_logits(const kvq_model *m, int n, int threads)
{
    int vocab = kvq_model_config_get(m)->vocab_size;
    int *toks = malloc((size_t)n * sizeof *toks);
    for (int i = 0; i < n; i++) toks[i] = i ? (2 + 7 * i) % vocab : KVQ_TOKEN_BOS;
    float *out = malloc((size_t)n * (size_t)vocab * sizeof *out);
    kvq_decoder *d = make_dec(m, threads, 0);
    assert_int_equal(kvq_decoder_forward_seq(d, toks, n, 0, out), KVQ_OK);
    kvq_decoder_free(d);
    free(toks);
    return out;
}

static void test_gguf_equals_bin(void **state)
{
    (void)state;
    enum { N = 48 };
    kvq_model *a = NULL, *b = NULL;
    if (kvq_model_load(S260K "stories260K.bin", &a) || kvq_model_load(S260K "stories260K-f32.gguf", &b)) {
        kvq_model_free(a);
        print_message("skipped: stories260K .bin/.gguf not available\n");
        skip();
    }
    float *la = model_logits(a, N, 1), *lb = model_logits(b, N, 2);
    assert_memory_equal(la, lb, (size_t)N * 512 * sizeof *la);
    free(la);
    free(lb);
    kvq_model_free(a);
    kvq_model_free(b);
}

static double rel_rms(const float *x, const float *ref, size_t n)
{
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)x[i] - ref[i]) * ((double)x[i] - ref[i]);
        s += (double)ref[i] * ref[i];
    }
    return sqrt(e / s);
}

static void test_quantized_weights(void **state)
{
    (void)state;
    enum { N = 24 };
    kvq_model *f = NULL, *q8 = NULL, *q4 = NULL;
    if (kvq_model_load(L46M "model.bin", &f)) {
        print_message("skipped: %s not available\n", L46M "model.bin");
        skip();
    }
    kvq_quant_opts o = {0};
    kvq_quant_stat *st = NULL;
    o.spec = "q8_0";
    assert_int_equal(kvq_model_quantize(f, &o, &q8, &st), KVQ_OK);
    free(st);
    o.spec = "f16";                      /* f16 rows widened inside the matmul */
    kvq_model *h = NULL;
    assert_int_equal(kvq_model_quantize(f, &o, &h, &st), KVQ_OK);
    free(st);
    float *lf0 = model_logits(f, N, 1), *lh = model_logits(h, N, 1);
    double eh = rel_rms(lh, lf0, N * 512);
    assert_true(eh > 0 && eh < 1e-3);
    free(lf0);
    free(lh);
    kvq_model_free(h);
    o.spec = "q4_0";
    assert_int_equal(kvq_model_quantize(f, &o, &q4, &st), KVQ_OK);
    free(st);
    size_t vocab = 512;
    float *lf = model_logits(f, N, 1), *l8 = model_logits(q8, N, 2), *l4 = model_logits(q4, N, 1);
    double e8 = rel_rms(l8, lf, N * vocab), e4 = rel_rms(l4, lf, N * vocab);
    print_message("relative RMS logit error: q8_0 %.2e, q4_0 %.2e\n", e8, e4);
    assert_true(e8 > 0 && e8 < 2e-2);
    assert_true(e4 > e8);
    /* Weights stay compressed: q8_0 is 34 bytes per 32 values. */
    kvq_decoder *df = make_dec(f, 1, 0), *d8 = make_dec(q8, 1, 0), *d8w = make_dec(q8, 1, 1);
    double ratio = (double)kvq_decoder_weight_bytes(d8) / (double)kvq_decoder_weight_bytes(df);
    assert_true(ratio < 0.3);
    /* Dequantizing at load gives the very same logits as row blocks (chunks
     * of more than 2 tokens dequantize rows); token by token the matmul runs
     * the fused q8_0 dot slot (kernels.h, when its fast_dot is set: AVX2),
     * equal up to summation order. */
    float *l8w = malloc(N * vocab * sizeof *l8w);
    int toks[N];
    for (int i = 0; i < N; i++) toks[i] = i ? (2 + 7 * i) % 512 : KVQ_TOKEN_BOS;
    assert_int_equal(kvq_decoder_forward_seq(d8w, toks, N, 0, l8w), KVQ_OK);
    assert_memory_equal(l8w, l8, N * vocab * sizeof *l8w);
    assert_int_equal(kvq_decoder_reset(d8), KVQ_OK);
    double ew = 0;
    for (int i = 0; i < N; i++) {
        float *lg = NULL;
        assert_int_equal(kvq_decoder_forward(d8, toks[i], i, &lg), KVQ_OK);
        double e = rel_rms(lg, l8w + (size_t)i * vocab, vocab);
        ew = e > ew ? e : ew;
    }
    print_message("fused q8_0 dot vs dequantized rows: relative RMS logit difference <= %.2e\n", ew);
    assert_true(ew < 1e-5);
    /* f32 copies; the tied classifier gets its own (transforms untie it). */
    assert_int_equal(kvq_decoder_weight_bytes(d8w), kvq_decoder_weight_bytes(df) + vocab * 256 * sizeof(float));
    free(l8w);
    kvq_decoder_free(d8w);
    kvq_decoder_free(df);
    kvq_decoder_free(d8);
    free(lf);
    free(l8);
    free(l4);
    kvq_model_free(f);
    kvq_model_free(q8);
    kvq_model_free(q4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_vs_reference), cmocka_unit_test(test_threads_and_dequant_identical),
        cmocka_unit_test(test_activation_hooks),     cmocka_unit_test(test_errors),
        cmocka_unit_test(test_rope_half_and_containers),
        cmocka_unit_test(test_golden_stories260k),   cmocka_unit_test(test_golden_llama46m),
        cmocka_unit_test(test_gguf_equals_bin),      cmocka_unit_test(test_quantized_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
