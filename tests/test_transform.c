/*
 * test_transform.c — offline transforms keep float logits: Q/K pair
 * permutation (and the K cache really holds permuted pairs), folded
 * per-channel scales, Hadamard rotation of the residual stream, and all
 * three together, each within 1e-5 of the logit scale of the untouched
 * model, on the random fixture and (when present) stories260K.  Bad
 * arguments are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "decoder_fixture.h"

#define N_TOK 24
#define TOL 1e-5           /* max |Δlogit| / max |logit| (issue 3 item 5) */
#define S260K "../shared/data/models/stories260K/stories260K.bin"

typedef void (*transform_fn)(kvq_decoder *d);

static kvq_decoder *owned_dec(const kvq_model *m)
{
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    o.dequant_at_load = 1;
    kvq_decoder *d = NULL;
    assert_int_equal(kvq_decoder_create(m, &o, &d), KVQ_OK);
    return d;
}

static float *logits_of(kvq_decoder *d, int n)
{
    int vocab = kvq_decoder_config(d)->vocab_size;
    int toks[N_TOK];
    for (int i = 0; i < n; i++) toks[i] = i ? (3 + 11 * i) % vocab : 1;
    float *out = malloc((size_t)n * (size_t)vocab * sizeof *out);
    assert_int_equal(kvq_decoder_forward_seq(d, toks, n, 0, out), KVQ_OK);
    return out;
}

/* A fixed "reversed, then rotated by 1" pair permutation. */
static void make_perm(int half, int *perm, int salt)
{
    for (int j = 0; j < half; j++) perm[j] = (half - 1 - j + salt) % half;
}

static void tf_permute(kvq_decoder *d)
{
    const kvq_model_config *c = kvq_decoder_config(d);
    int perm[256];
    for (int l = 0; l < c->n_layers; l++)
        for (int g = 0; g < c->n_kv_heads; g++) {
            make_perm(c->head_size / 2, perm, l + g);
            assert_int_equal(kvq_transform_permute_qk(d, l, g, perm), KVQ_OK);
        }
}

static void tf_scales(kvq_decoder *d)
{
    const kvq_model_config *c = kvq_decoder_config(d);
    float *s = malloc((size_t)c->dim * sizeof *s);
    for (int l = 0; l <= c->n_layers; l++)
        for (int w = 0; w < 2; w++) {
            kvq_linear which = l == c->n_layers ? KVQ_LIN_CLS : w ? KVQ_LIN_GATEUP : KVQ_LIN_QKV;
            for (int i = 0; i < c->dim; i++) s[i] = 0.25f + (float)((i * 7 + l * 3 + w) % 13) * 0.3f;
            if (l < c->n_layers || w == 0) assert_int_equal(kvq_transform_fold_scales(d, l, which, s), KVQ_OK);
        }
    free(s);
}

static void tf_hadamard(kvq_decoder *d) { assert_int_equal(kvq_transform_hadamard(d), KVQ_OK); }

static void tf_all(kvq_decoder *d)
{
    tf_scales(d);
    tf_permute(d);
    tf_hadamard(d);
}

static void check_transform(const kvq_model *m, transform_fn fn, const char *name)
{
    kvq_decoder *ref = owned_dec(m), *d = owned_dec(m);
    fn(d);
    int vocab = kvq_model_config_get(m)->vocab_size;
    float *a = logits_of(ref, N_TOK), *b = logits_of(d, N_TOK);
    double e = fx_rel_err(b, a, N_TOK * vocab);
    print_message("%-10s max |dlogit| / max |logit| = %.2e\n", name, e);
    assert_true(e > 0 && e < TOL);   /* > 0: the weights did change */
    free(a);
    free(b);
    kvq_decoder_free(ref);
    kvq_decoder_free(d);
}

static void run_all(const kvq_model *m)
{
    check_transform(m, tf_permute, "permute");
    check_transform(m, tf_scales, "scales");
    check_transform(m, tf_hadamard, "hadamard");
    check_transform(m, tf_all, "all three");
}

static void test_fixture_transforms(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 0, 21), KVQ_OK);
    run_all(fx.model);
    fx_free(&fx);
    assert_int_equal(fx_make(&fx, 1, 22), KVQ_OK); /* untied classifier */
    run_all(fx.model);
    kvq_model *half = NULL;                        /* HF pair order (j, j + hs/2) */
    assert_int_equal(fx_reload(fx.model, KVQ_FORMAT_SAFETENSORS, "safetensors", &half), KVQ_OK);
    assert_int_equal(kvq_model_config_get(half)->rope, KVQ_ROPE_HALF);
    run_all(half);
    kvq_model_free(half);
    fx_free(&fx);
}

static void test_stories260k_transforms(void **state)
{
    (void)state;
    kvq_model *m = NULL;
    if (kvq_model_load(S260K, &m) != KVQ_OK) {
        print_message("skipped: %s not available\n", S260K);
        skip();
    }
    run_all(m);
    kvq_model_free(m);
}

/* The K cache of a permuted model holds the same keys with whole pairs moved. */
static void test_permuted_keys(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 0, 23), KVQ_OK);
    kvq_decoder *ref = owned_dec(fx.model), *d = owned_dec(fx.model);
    int perm[FX_HS / 2];
    make_perm(FX_HS / 2, perm, 1);
    assert_int_equal(kvq_transform_permute_qk(d, 0, 1, perm), KVQ_OK);
    float *lg;
    for (int pos = 0; pos < 3; pos++) {
        assert_int_equal(kvq_decoder_forward(ref, 5 + pos, pos, &lg), KVQ_OK);
        assert_int_equal(kvq_decoder_forward(d, 5 + pos, pos, &lg), KVQ_OK);
    }
    float ka[FX_KVDIM], kb[FX_KVDIM], va[FX_KVDIM], vb[FX_KVDIM];
    assert_int_equal(kvq_cache_read(kvq_decoder_cache(ref), 0, 2, 3, ka, va), KVQ_OK);
    assert_int_equal(kvq_cache_read(kvq_decoder_cache(d), 0, 2, 3, kb, vb), KVQ_OK);
    assert_memory_equal(va, vb, sizeof va);                         /* V untouched        */
    assert_memory_equal(ka, kb, FX_HS * sizeof *ka);                 /* KV head 0 untouched */
    for (int j = 0; j < FX_HS / 2; j++) {                            /* head 1: pairs moved */
        assert_true(kb[FX_HS + 2 * j] == ka[FX_HS + 2 * perm[j]]);
        assert_true(kb[FX_HS + 2 * j + 1] == ka[FX_HS + 2 * perm[j] + 1]);
    }
    kvq_decoder_free(ref);
    kvq_decoder_free(d);
    fx_free(&fx);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 0, 24), KVQ_OK);
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    kvq_decoder *inplace = NULL, *d = owned_dec(fx.model);
    assert_int_equal(kvq_decoder_create(fx.model, &o, &inplace), KVQ_OK);
    assert_int_equal(kvq_transform_hadamard(inplace), KVQ_ERR_ARG);   /* weights not owned */
    assert_non_null(strstr(kvq_last_error_detail(), "dequant_at_load"));
    int perm[FX_HS / 2] = {0, 1, 2, 3, 4, 5, 6, 6};                    /* not a permutation */
    assert_int_equal(kvq_transform_permute_qk(d, 0, 0, perm), KVQ_ERR_ARG);
    assert_int_equal(kvq_transform_permute_qk(d, FX_LAYERS, 0, perm), KVQ_ERR_ARG);
    float s[FX_DIM];
    for (int i = 0; i < FX_DIM; i++) s[i] = 1.0f;
    s[3] = 0.0f;
    assert_int_equal(kvq_transform_fold_scales(d, 0, KVQ_LIN_QKV, s), KVQ_ERR_PARAM_RANGE);
    s[3] = 1.0f;
    assert_int_equal(kvq_transform_fold_scales(d, 0, KVQ_LIN_O, s), KVQ_ERR_ARG);   /* no norm before wo */
    float *lg;
    assert_int_equal(kvq_decoder_forward(d, 1, 0, &lg), KVQ_OK);
    assert_int_equal(kvq_transform_hadamard(d), KVQ_ERR_ARG);         /* cache not empty */
    kvq_decoder_free(inplace);
    kvq_decoder_free(d);
    fx_free(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_transforms), cmocka_unit_test(test_stories260k_transforms),
        cmocka_unit_test(test_permuted_keys),      cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
