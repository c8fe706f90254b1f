/*
 * test_calib.c — calibration plumbing (libkvq/calib.c): the captured rows
 * are exactly the decoder's linear inputs (same bytes as a capture hook
 * sees), pieces restart at position 0 with BOS, the token cap holds,
 * weight names map onto the right inputs, bad calls are errors, and the
 * quantize driver hands the rows to codecs that learn from them.
 * Uses the random fixture model of decoder_fixture.h (no data needed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "decoder_fixture.h"

#define N_TOK   40   /* more than one FX_SEQ piece              */
#define CAP_TOK 36   /* kept rows: a full piece of 32 + 4       */

typedef struct {
    float *x;        /* rows of one (layer, which) slot */
    int    layer, which, n, width;
} ref_capture;

static void ref_hook(void *user, int layer, kvq_linear which, const float *x, int n)
{
    ref_capture *r = user;
    if (layer != r->layer || (int)which != r->which || r->n >= FX_SEQ) return;
    memcpy(r->x + (size_t)r->n * (size_t)n, x, (size_t)n * sizeof *x);
    r->width = n;
    r->n++;
}

static void make_tokens(int *t)
{
    t[0] = KVQ_TOKEN_BOS;
    for (int i = 1; i < N_TOK; i++) t[i] = (i * 7 + 3) % FX_VOCAB;
}

/* The first piece's rows of slot (layer, which) as a plain capture sees them. */
static void reference_rows(const kvq_model *m, const int *tok, int layer, int which, ref_capture *r)
{
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    o.capture = ref_hook;
    o.capture_user = r;
    r->layer = layer;
    r->which = which;
    r->n = 0;
    kvq_decoder *d = NULL;
    float *lg = malloc(sizeof(float) * FX_SEQ * FX_VOCAB);
    assert_int_equal(kvq_decoder_create(m, &o, &d), KVQ_OK);
    assert_int_equal(kvq_decoder_forward_seq(d, tok, FX_SEQ, 0, lg), KVQ_OK);
    kvq_decoder_free(d);
    free(lg);
}

static void test_rows_equal_capture(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 0, 5), KVQ_OK);
    int tok[N_TOK];
    make_tokens(tok);
    kvq_calib *c = NULL;
    assert_int_equal(kvq_calib_create(fx.model, tok, N_TOK, CAP_TOK, 1, &c), KVQ_OK);
    assert_int_equal(kvq_calib_tokens(c), CAP_TOK);
    ref_capture r = {.x = malloc(sizeof(float) * FX_SEQ * FX_HIDDEN)};
    static const int widths[KVQ_LIN__COUNT] = {FX_DIM, FX_DIM, FX_DIM, FX_HIDDEN, FX_DIM};
    for (int layer = 0; layer <= FX_LAYERS; layer++)
        for (int w = 0; w < KVQ_LIN__COUNT; w++) {
            kvq_tensor x;
            kvq_err e = kvq_calib_input(c, layer, (kvq_linear)w, &x);
            if ((layer == FX_LAYERS) != (w == KVQ_LIN_CLS) || w >= KVQ_LIN_SSM_X) { /* SSM: Mamba-2 only */
                assert_int_equal(e, KVQ_ERR_NOT_FOUND);
                continue;
            }
            assert_int_equal(e, KVQ_OK);
            assert_int_equal(x.shape.dim[0], CAP_TOK);
            assert_int_equal(x.shape.dim[1], widths[w]);
            reference_rows(fx.model, tok, layer, w, &r);
            assert_int_equal(r.n, FX_SEQ);
            assert_memory_equal(x.data, r.x, sizeof(float) * FX_SEQ * (size_t)widths[w]);
            /* row 32 starts the second piece: BOS at position 0 again, so the
             * first layer's attention input equals row 0 */
            const float *xs = x.data;
            if (layer == 0 && w == KVQ_LIN_QKV)
                assert_memory_equal(xs + (size_t)FX_SEQ * FX_DIM, xs, sizeof(float) * FX_DIM);
        }
    free(r.x);
    kvq_calib_free(c);
    fx_free(&fx);
}

static void test_weight_slots(void **state)
{
    (void)state;
    kvq_model_config cfg = {.n_layers = 3, .shared_classifier = 1};
    static const struct {
        const char *name;
        int layer, which;
    } ok[] = {
        {"blk.0.attn_q.weight", 0, KVQ_LIN_QKV},      {"blk.2.attn_v.weight", 2, KVQ_LIN_QKV},
        {"blk.1.attn_output.weight", 1, KVQ_LIN_O},   {"blk.1.ffn_up.weight", 1, KVQ_LIN_GATEUP},
        {"blk.2.ffn_gate.weight", 2, KVQ_LIN_GATEUP}, {"blk.0.ffn_down.weight", 0, KVQ_LIN_DOWN},
        {"output.weight", 3, KVQ_LIN_CLS},            {"token_embd.weight", 3, KVQ_LIN_CLS},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int layer = -1;
        kvq_linear w = KVQ_LIN__COUNT;
        assert_int_equal(kvq_calib_weight_slot(&cfg, ok[i].name, &layer, &w), KVQ_OK);
        assert_int_equal(layer, ok[i].layer);
        assert_int_equal(w, ok[i].which);
    }
    static const char *const none[] = {"blk.3.attn_q.weight", "blk.0.attn_norm.weight", "output_norm.weight",
                                       "blk.x.attn_q.weight", "blk.0.attn_q.weightX", "blk.-1.attn_q.weight"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        int layer;
        kvq_linear w;
        assert_int_equal(kvq_calib_weight_slot(&cfg, none[i], &layer, &w), KVQ_ERR_NOT_FOUND);
    }
    cfg.shared_classifier = 0;
    int layer;
    kvq_linear w;
    assert_int_equal(kvq_calib_weight_slot(&cfg, "token_embd.weight", &layer, &w), KVQ_ERR_NOT_FOUND);
}

static void test_errors(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 1, 9), KVQ_OK);
    int tok[N_TOK];
    make_tokens(tok);
    kvq_calib *c = NULL;
    assert_int_equal(kvq_calib_create(fx.model, tok, 1, 0, 1, &c), KVQ_ERR_ARG);
    assert_null(c);
    assert_int_equal(kvq_calib_create(NULL, tok, N_TOK, 0, 1, &c), KVQ_ERR_ARG);
    tok[5] = FX_VOCAB; /* out of the vocabulary: the decoder refuses it */
    assert_int_not_equal(kvq_calib_create(fx.model, tok, N_TOK, 0, 1, &c), KVQ_OK);
    assert_null(c);
    make_tokens(tok);
    assert_int_equal(kvq_calib_create(fx.model, tok, N_TOK, 0, 2, &c), KVQ_OK);
    assert_int_equal(kvq_calib_tokens(c), N_TOK); /* fewer tokens than the default cap */
    kvq_tensor x;
    assert_int_equal(kvq_calib_input(c, FX_LAYERS + 1, KVQ_LIN_QKV, &x), KVQ_ERR_ARG);
    assert_int_equal(kvq_calib_for_weight(c, "token_embd.weight", &x), KVQ_ERR_NOT_FOUND); /* untied */
    assert_int_equal(kvq_calib_for_weight(c, "output.weight", &x), KVQ_OK);
    assert_int_equal(x.shape.dim[1], FX_DIM);
    kvq_calib_free(c);
    kvq_calib_free(NULL);
    fx_free(&fx);
}

/* The quantize driver feeds calibration to codecs with calibrate(): the
 * layer-output search of fp picks other scales than its weight-error
 * search, and a codec that needs calibration fails without it. */
static void test_quantize_with_calib(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 0, 21), KVQ_OK);
    int tok[N_TOK];
    make_tokens(tok);
    kvq_calib *c = NULL;
    assert_int_equal(kvq_calib_create(fx.model, tok, N_TOK, 0, 1, &c), KVQ_OK);
    kvq_quant_opts o;
    memset(&o, 0, sizeof o);
    o.spec = "fp";
    kvq_model *plain = NULL, *cal = NULL;
    assert_int_equal(kvq_model_quantize(fx.model, &o, &plain, NULL), KVQ_OK);
    o.calib = c;
    assert_int_equal(kvq_model_quantize(fx.model, &o, &cal, NULL), KVQ_OK);
    const kvq_weight *a = kvq_model_weight(plain, "blk.0.ffn_down.weight"), *b = kvq_model_weight(cal, "blk.0.ffn_down.weight");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->size, b->size);
    assert_memory_not_equal(a->data, b->data, a->size);
    kvq_model_free(plain);
    kvq_model_free(cal);
    kvq_model *q = NULL;
    kvq_quant_stat *st = NULL;
    o.spec = "fpa";
    o.calib = NULL;
    assert_int_equal(kvq_model_quantize(fx.model, &o, &q, &st), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error_detail(), "needs calibration"));
    assert_null(q);
    kvq_calib_free(c);
    fx_free(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_equal_capture),
        cmocka_unit_test(test_weight_slots),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_quantize_with_calib),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
