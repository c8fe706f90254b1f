/*
 * test_eval.c — llama-perplexity statistics (libkvq/eval.c) against values
 * computed by hand: percentiles by linear interpolation, mean uncertainty
 * (and its n <= 10 rule), KL exactly 0 for identical logits, KL of a
 * two-token distribution, PPL and its uncertainty, Δp, RMS Δp, same-top;
 * and the driver on stories260K (skipped when ../shared/data is absent):
 * chunking and scored counts, f32 vs f32 KL exactly 0, measured KV bytes,
 * a lossy KV cache giving small positive KL, argument errors.
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

#define TOL 1e-12
#define STORIES "../shared/data/models/stories260K/stories260K.bin"
#define DRV_CTX 64
#define DRV_TOKENS 200

static void test_percentile(void **state)
{
    (void)state;
    const double v[4] = {1, 2, 3, 4};
    assert_float_equal(kvq_eval_percentile(v, 4, 0.5), 2.5, TOL);    /* index 1.5 */
    assert_float_equal(kvq_eval_percentile(v, 4, 0.999), 3.997, TOL); /* index 2.997 */
    assert_float_equal(kvq_eval_percentile(v, 4, 0.1), 1.3, TOL);     /* index 0.3 */
    assert_float_equal(kvq_eval_percentile(v, 4, 0.0), 1.0, TOL);
    assert_float_equal(kvq_eval_percentile(v, 4, 1.0), 4.0, TOL);
    assert_float_equal(kvq_eval_percentile(v, 1, 0.3), 1.0, TOL);
    assert_float_equal(kvq_eval_percentile(v, 0, 0.3), 0.0, TOL);
    assert_float_equal(kvq_eval_kld_levels()[5], 0.5, 0);
    assert_float_equal(kvq_eval_dp_levels()[KVQ_EVAL_N_DP_LEVELS - 1], 0.0, 0);
}

static void test_mean_unc(void **state)
{
    (void)state;
    double m, u;
    /* 1..11: mean 6, E[x²] = 46, var 10, unc = sqrt(10 / 10) = 1. */
    kvq_eval_mean_unc(66, 506, 11, &m, &u);
    assert_float_equal(m, 6, TOL);
    assert_float_equal(u, 1, TOL);
    /* 1..10: uncertainty is reported as 0 for n <= 10. */
    kvq_eval_mean_unc(55, 385, 10, &m, &u);
    assert_float_equal(m, 5.5, TOL);
    assert_float_equal(u, 0, 0);
    kvq_eval_mean_unc(0, 0, 0, &m, &u);
    assert_float_equal(m, 0, 0);
}

static void test_identical_kl_zero(void **state)
{
    (void)state;
    float x[512];
    for (int i = 0; i < 512; i++) x[i] = (float)sin(i * 0.37) * 7.0f;
    kvq_eval_token t;
    assert_int_equal(kvq_eval_compare(x, x, 512, 17, &t), KVQ_OK);
    assert_true(t.kld == 0.0); /* exactly */
    assert_true(t.p_q == t.p_base);
    assert_true(t.nll_q == t.nll_base);
    assert_int_equal(t.same_top, 1);
}

/* base logits (0, 0) → p = (1/2, 1/2); candidate (ln 3, 0) → q = (3/4, 1/4).
 * KL = ½ ln(½ / ¾) + ½ ln(½ / ¼) = ½ ln(4/3). */
static void test_two_token_kl(void **state)
{
    (void)state;
    const float b[2] = {0.0f, 0.0f};
    const float q[2] = {(float)log(3.0), 0.0f};
    kvq_eval_token t;
    assert_int_equal(kvq_eval_compare(b, q, 2, 1, &t), KVQ_OK);
    double q0 = exp((double)q[0]) / (exp((double)q[0]) + 1); /* 3/4 up to the float rounding of ln 3 */
    assert_float_equal(t.kld, 0.5 * log(0.5 / q0) + 0.5 * log(0.5 / (1 - q0)), 1e-15);
    assert_float_equal(t.kld, 0.5 * log(4.0 / 3.0), 1e-7);
    assert_float_equal(t.nll_base, log(2.0), TOL);
    assert_float_equal(t.nll_q, log(4.0), 1e-7);
    assert_float_equal(t.p_q - t.p_base, -0.25, 1e-7);
    assert_int_equal(t.same_top, 1); /* base tie → index 0; candidate argmax 0 */
    /* Reversed: base (ln 3, 0), candidate (0, 0) → KL = ¾ ln(3/2) + ¼ ln(1/2). */
    assert_int_equal(kvq_eval_compare(q, b, 2, 0, &t), KVQ_OK);
    assert_float_equal(t.kld, 0.75 * log(1.5) + 0.25 * log(0.5), 1e-7);
}

static void test_bad_input(void **state)
{
    (void)state;
    const float b[2] = {0.0f, 1.0f}, nan2[2] = {0.0f, NAN};
    kvq_eval_token t;
    assert_int_equal(kvq_eval_compare(b, b, 2, 2, &t), KVQ_ERR_ARG);
    assert_int_equal(kvq_eval_compare(b, b, 2, -1, &t), KVQ_ERR_ARG);
    assert_int_equal(kvq_eval_compare(b, nan2, 2, 0, &t), KVQ_ERR_NONFINITE);
    assert_non_null(strstr(kvq_last_error_detail(), "candidate logit 1"));
    assert_int_equal(kvq_eval_compare(NULL, b, 2, 0, &t), KVQ_ERR_ARG);
}

/* 20 hand-made tokens: NLLs alternate 1 and 3 (base 1 and 2), Δp = ±0.1
 * alternating, KLD = i/100, top-1 agrees on 15 of 20. */
static void test_summary(void **state)
{
    (void)state;
    kvq_eval_acc *a = NULL;
    assert_int_equal(kvq_eval_acc_create(&a), KVQ_OK);
    for (int i = 0; i < 20; i++) {
        kvq_eval_token t = {.nll_q = i % 2 ? 3 : 1, .nll_base = i % 2 ? 2 : 1, .p_base = 0.5,
                            .p_q = i % 2 ? 0.6 : 0.4, .kld = i / 100.0, .same_top = i < 15};
        assert_int_equal(kvq_eval_acc_add(a, &t), KVQ_OK);
    }
    kvq_eval_summary s;
    assert_int_equal(kvq_eval_summarize(a, &s), KVQ_OK);
    assert_int_equal(s.n, 20);
    /* NLL(Q): mean 2, var 1, unc sqrt(1/19). */
    assert_float_equal(s.ppl_q, exp(2.0), 1e-9);
    assert_float_equal(s.ppl_q_unc, exp(2.0) * sqrt(1.0 / 19), 1e-9);
    /* NLL(base): mean 1.5, var 0.25, unc sqrt(0.25/19); cov = (E[xy] − 2·1.5)/19
     * with E[xy] = (1 + 6)/2 = 3.5 → 0.5/19; correlation = 1. */
    assert_float_equal(s.ppl_base, exp(1.5), 1e-9);
    assert_float_equal(s.ln_ppl_cor, 1.0, 1e-9);
    assert_float_equal(s.ln_ratio, 0.5, 1e-12);
    double cov = 0.5 / 19, uq = sqrt(1.0 / 19), ub = sqrt(0.25 / 19);
    assert_float_equal(s.ln_ratio_unc, sqrt(uq * uq + ub * ub - 2 * cov), 1e-9);
    assert_float_equal(s.ppl_ratio, exp(0.5), 1e-12);
    /* KLD: mean 0.095; E[k²] = Σi²/(100²·20) = 2470/200000; percentiles. */
    assert_float_equal(s.kld_mean, 0.095, 1e-12);
    double var = 2470.0 / 200000 - 0.095 * 0.095;
    assert_float_equal(s.kld_unc, sqrt(var / 19), 1e-12);
    assert_float_equal(s.kld_pct[0], 0.19, 1e-12);            /* max */
    assert_float_equal(s.kld_pct[5], 0.095, 1e-12);           /* median at index 9.5 */
    assert_float_equal(s.kld_pct[4], 0.171, 1e-12);           /* 90%: index 17.1 */
    assert_float_equal(s.kld_pct[KVQ_EVAL_N_KLD_LEVELS - 1], 0.0, 0);
    /* Δp: mean 0, RMS 0.1 exactly (Δp² constant → unc 0). */
    assert_float_equal(s.dp_mean, 0.0, 1e-12);
    assert_float_equal(s.dp_rms, 0.1, 1e-12);
    assert_float_equal(s.dp_rms_unc, 0.0, 1e-9);
    assert_float_equal(s.dp_pct[0], 0.1, 1e-12);
    assert_float_equal(s.dp_pct[6], 0.0, 1e-12);              /* median between −0.1 and 0.1 */
    /* Same top: 15/20 ± sqrt(0.75·0.25/19). */
    assert_float_equal(s.same_top, 0.75, 1e-12);
    assert_float_equal(s.same_top_unc, sqrt(0.75 * 0.25 / 19), 1e-12);
    kvq_eval_acc_free(a);
    /* Empty: zeros. */
    assert_int_equal(kvq_eval_acc_create(&a), KVQ_OK);
    assert_int_equal(kvq_eval_summarize(a, &s), KVQ_OK);
    assert_int_equal(s.n, 0);
    assert_float_equal(s.ppl_q, 0, 0);
    kvq_eval_acc_free(a);
}

/* Growth past the initial capacity keeps every value. */
static void test_many_tokens(void **state)
{
    (void)state;
    kvq_eval_acc *a = NULL;
    assert_int_equal(kvq_eval_acc_create(&a), KVQ_OK);
    for (int i = 0; i < 5000; i++) {
        kvq_eval_token t = {.nll_q = 1, .nll_base = 1, .p_q = 0.5, .p_base = 0.5, .kld = (double)(4999 - i),
                            .same_top = 1};
        assert_int_equal(kvq_eval_acc_add(a, &t), KVQ_OK);
    }
    kvq_eval_summary s;
    assert_int_equal(kvq_eval_summarize(a, &s), KVQ_OK);
    assert_int_equal(kvq_eval_acc_count(a), 5000);
    assert_float_equal(s.kld_pct[0], 4999, 0);
    assert_float_equal(s.kld_pct[5], 2499.5, 1e-9);
    assert_float_equal(s.kld_pct[1], 0.999 * 4999, 1e-9);
    assert_float_equal(s.ppl_q, exp(1.0), 1e-12);
    assert_float_equal(s.ppl_q_unc, 0, 0);
    assert_float_equal(s.same_top_unc, 0, 0);
    kvq_eval_acc_free(a);
}

static void test_driver(void **state)
{
    (void)state;
    kvq_model *m = NULL;
    if (kvq_model_load(STORIES, &m) != KVQ_OK) {
        printf("skip: %s not available\n", STORIES);
        skip();
    }
    const kvq_model_config *c = kvq_model_config_get(m);
    int tokens[DRV_TOKENS];
    for (int i = 0; i < DRV_TOKENS; i++) tokens[i] = (i * 37 + 11) % c->vocab_size; /* fixed, arbitrary */
    kvq_eval_opts o;
    kvq_eval_opts_init(&o);
    o.ctx = DRV_CTX;
    kvq_eval_result r;
    assert_int_equal(kvq_eval_run(m, m, tokens, DRV_TOKENS, &o, &r), KVQ_OK);
    assert_int_equal(r.n_chunks, DRV_TOKENS / DRV_CTX);                 /* 3 */
    assert_int_equal(r.s.n, 3 * (DRV_CTX - 1 - DRV_CTX / 2));          /* 31 per chunk */
    assert_true(r.s.kld_mean == 0.0 && r.s.kld_pct[0] == 0.0);          /* exactly */
    assert_true(r.s.same_top == 1.0 && r.s.ppl_q == r.s.ppl_base);
    double f32_per_token = 2.0 * c->n_layers * c->n_kv_heads * c->head_size * 4;
    assert_true(r.kv_bytes_per_token_f32 == f32_per_token);
    assert_true(r.kv_bytes_per_token == f32_per_token); /* unpaged f32 cache: window only */
    assert_true(r.bpw_q == 32.0 && r.act_bits_per_value == 32.0);
    /* Lossy pages: small positive KL, measured compression. */
    if (kvq_codec_find("rtn")) {
        o.kv_k_spec = o.kv_v_spec = "rtn:bits=8";
        o.kv_page = 16;
        assert_int_equal(kvq_eval_run(m, m, tokens, DRV_TOKENS, &o, &r), KVQ_OK);
        assert_true(r.s.kld_mean > 0 && r.s.kld_mean < 1e-2);
        assert_true(r.kv_ratio_f32 > 2.0);
        o.kv_k_spec = o.kv_v_spec = NULL;
    }
    /* Errors: context beyond seq_len, too few tokens, token outside the vocabulary. */
    o.ctx = c->seq_len + 1;
    assert_int_equal(kvq_eval_run(m, m, tokens, DRV_TOKENS, &o, &r), KVQ_ERR_ARG);
    o.ctx = DRV_CTX;
    assert_int_equal(kvq_eval_run(m, m, tokens, DRV_CTX - 1, &o, &r), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error_detail(), "63 tokens, which do not fill one chunk of 64"));
    tokens[5] = c->vocab_size;
    assert_int_equal(kvq_eval_run(m, m, tokens, DRV_TOKENS, &o, &r), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error_detail(), "position 5"));
    kvq_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentile),     cmocka_unit_test(test_mean_unc),
        cmocka_unit_test(test_identical_kl_zero), cmocka_unit_test(test_two_token_kl),
        cmocka_unit_test(test_bad_input),      cmocka_unit_test(test_summary),
        cmocka_unit_test(test_many_tokens),    cmocka_unit_test(test_driver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
