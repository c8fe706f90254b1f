/*
 * test_fp_joint.c — LLM-FP4's alternating W/A search rounds
 * (quant/fp_joint.c, quant-methods.md §1.4): on a synthetic layer with
 * outlier input channels the objective never increases round by round and
 * ends no higher than the one-round start; the formats and scales found are
 * exactly what the `fp` and `fpa` codecs then encode with; the activation
 * step alone on the final weights repeats the search's activation result;
 * determinism; bad input refused.  A model-level run on the random
 * fixture model (decoder_fixture.h) checks kvq_model_quantize's plan and
 * the evaluator's fpa fit against kvq_fpj_search on the same data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <math.h>

#include <cmocka.h>

#include "decoder_fixture.h"
#include "kvq_internal.h"
#include "quant/fp_impl.h"
#include "quant/fp_joint.h"

#define T_ROWS   512   /* calibration rows                          */
#define N_IN     64    /* input width                               */
#define M_A      32    /* rows of the first tensor                  */
#define M_B      16    /* rows of the second (shares the input)     */
#define M_ALL    (M_A + M_B)
#define OUTLIER  24.0f /* scale of the outlier channels             */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float gauss(void) { return (frand() + frand() + frand() + frand()) * 0.87f; }

typedef struct {
    float X[T_ROWS * N_IN], W[M_ALL * N_IN];
    int64_t seg_end[2];
} layer;

/* Channels 3, 17 and 40 are outliers (as LLM activations have), weights
 * Gaussian with a few large entries. */
static void make_layer(layer *L)
{
    rng = 0x9E3779B97F4A7C15ull;
    for (int t = 0; t < T_ROWS; t++)
        for (int j = 0; j < N_IN; j++) L->X[t * N_IN + j] = gauss() * (j == 3 || j == 17 || j == 40 ? OUTLIER : 1.0f);
    for (int i = 0; i < M_ALL * N_IN; i++) L->W[i] = 0.05f * gauss() * (i % 97 == 0 ? 6.0f : 1.0f);
    L->seg_end[0] = M_A, L->seg_end[1] = M_ALL;
}

static kvq_fpj_opts opts4(int rounds)
{
    kvq_fpj_opts o = {.rounds = rounds, .w_fmt0 = 0, .a_fmt0 = 0, .w_lo = 0, .w_hi = 2, .a_lo = 0, .a_hi = 2,
                      .pershift = 1, .w_tie = KVQ_TIE_EVEN, .a_tie = KVQ_TIE_EVEN};
    return o;
}

static void test_rounds_monotone(void **state)
{
    (void)state;
    static layer L;
    make_layer(&L);
    kvq_fpj_opts o0 = opts4(0), o3 = opts4(3);
    kvq_fpj_result r0, r3;
    assert_int_equal(kvq_fpj_search(L.X, T_ROWS, N_IN, L.W, M_ALL, L.seg_end, 2, &o0, &r0), KVQ_OK);
    assert_int_equal(kvq_fpj_search(L.X, T_ROWS, N_IN, L.W, M_ALL, L.seg_end, 2, &o3, &r3), KVQ_OK);
    assert_int_equal(r0.n_obj, 1);
    assert_int_equal(r3.n_obj, 7);
    assert_int_equal(r3.t, KVQ_FPJ_TOKENS);
    /* the same start: E2M1 weights searched on X, E2M1 ρ by activation error */
    assert_true(r0.obj[0] == r3.obj[0]);
    assert_int_equal(r0.w_fmt[0], 0);
    assert_int_equal(r0.a_fmt, 0);
    for (int i = 0; i + 1 < r3.n_obj; i++) {
        printf("    objective after step %d: %.6g\n", i, r3.obj[i]);
        assert_true(r3.obj[i + 1] <= r3.obj[i]); /* coordinate descent: exact, no tolerance */
    }
    printf("    objective after step %d: %.6g (start / final %.3fx)\n", r3.n_obj - 1, r3.obj[r3.n_obj - 1],
           r3.obj[0] / r3.obj[r3.n_obj - 1]);
    /* the rounds must buy something on a layer with outlier channels */
    assert_true(r3.obj[r3.n_obj - 1] < 0.99 * r3.obj[0]);
    kvq_fpj_result_free(&r0);
    kvq_fpj_result_free(&r3);
}

static void test_deterministic(void **state)
{
    (void)state;
    static layer L;
    make_layer(&L);
    kvq_fpj_opts o = opts4(2);
    kvq_fpj_result a, b;
    assert_int_equal(kvq_fpj_search(L.X, T_ROWS, N_IN, L.W, M_ALL, L.seg_end, 2, &o, &a), KVQ_OK);
    assert_int_equal(kvq_fpj_search(L.X, T_ROWS, N_IN, L.W, M_ALL, L.seg_end, 2, &o, &b), KVQ_OK);
    assert_memory_equal(a.w_scale, b.w_scale, M_ALL * sizeof(float));
    assert_memory_equal(a.w_fmt, b.w_fmt, 2 * sizeof(int));
    assert_memory_equal(a.a_k, b.a_k, N_IN);
    assert_true(a.a_scale == b.a_scale && a.a_fmt == b.a_fmt);
    assert_memory_equal(a.obj, b.obj, sizeof a.obj);
    kvq_fpj_result_free(&a);
    kvq_fpj_result_free(&b);
}

/* Ŵ of the result, row by row as the search builds it. */
static void quant_weights(const layer *L, const kvq_fpj_result *r, float *What)
{
    for (int s = 0, c = 0; s < 2; s++) {
        kvq_fp_lut l;
        kvq_fp_lut_init(&l, kvq_fp_format(fp_fmt_ids[r->w_fmt[s]]), KVQ_TIE_EVEN);
        for (; c < L->seg_end[s]; c++) fp_quant_span(&l, L->W + c * N_IN, N_IN, r->w_scale[c], NULL, What + c * N_IN);
    }
}

/* fp with the preset encodes exactly Ŵ; fpa with the set result encodes
 * exactly the search's Xq; the activation step alone repeats the result. */
static void test_codecs_use_result(void **state)
{
    (void)state;
    static layer L;
    static float What[M_ALL * N_IN], dec[M_ALL * N_IN];
    make_layer(&L);
    kvq_fpj_opts o = opts4(3);
    kvq_fpj_result r, fit;
    assert_int_equal(kvq_fpj_search(L.X, T_ROWS, N_IN, L.W, M_ALL, L.seg_end, 2, &o, &r), KVQ_OK);
    quant_weights(&L, &r, What);
    for (int s = 0; s < 2; s++) { /* each tensor through its own fp context */
        int64_t r0 = s ? L.seg_end[0] : 0, rows = L.seg_end[s] - r0, dims[2] = {rows, N_IN};
        kvq_ctx *ctx;
        assert_int_equal(kvq_ctx_create("fp:rounds=3", &ctx), KVQ_OK);
        assert_int_equal(kvq_fp_state_preset(kvq_ctx_state(ctx), r.w_fmt[s], r.w_scale + r0, rows), KVQ_OK);
        kvq_tensor src = kvq_tensor_view(KVQ_DTYPE_F32, L.W + r0 * N_IN, 2, dims);
        kvq_shape sh = kvq_shape_make(2, dims);
        size_t cap = kvq_ctx_payload_bound(ctx, &sh), n = 0;
        uint8_t *buf = malloc(cap);
        assert_int_equal(kvq_ctx_encode_payload(ctx, &src, buf, cap, &n), KVQ_OK);
        assert_int_equal(buf[0], r.w_fmt[s]);
        assert_int_equal(kvq_ctx_decode_rows(ctx, buf, n, &sh, 0, rows, dec), KVQ_OK);
        assert_memory_equal(dec, What + r0 * N_IN, (size_t)(rows * N_IN) * sizeof(float));
        free(buf);
        kvq_ctx_free(ctx);
    }
    /* fpa: calibrate on X, take the result, encode every row */
    kvq_ctx *act;
    int64_t xd[2] = {T_ROWS, N_IN};
    kvq_tensor x = kvq_tensor_view(KVQ_DTYPE_F32, L.X, 2, xd);
    assert_int_equal(kvq_ctx_create("fpa", &act), KVQ_OK);
    assert_int_equal(kvq_ctx_calibrate(act, &x), KVQ_OK);
    assert_int_equal(kvq_fpa_state_set(kvq_ctx_state(act), r.a_fmt, r.a_scale, r.a_k, N_IN), KVQ_OK);
    kvq_shape xs = kvq_shape_make(2, xd);
    size_t cap = kvq_ctx_payload_bound(act, &xs), n = 0;
    uint8_t *buf = malloc(cap);
    float *xq = malloc(sizeof(float) * T_ROWS * N_IN), tmp[N_IN];
    assert_int_equal(kvq_ctx_encode_payload(act, &x, buf, cap, &n), KVQ_OK);
    assert_int_equal(buf[0], r.a_fmt);
    assert_int_equal(kvq_ctx_decode_rows(act, buf, n, &xs, 0, T_ROWS, xq), KVQ_OK);
    kvq_fp_lut al;
    kvq_fp_lut_init(&al, kvq_fp_format(fp_fmt_ids[r.a_fmt]), KVQ_TIE_EVEN);
    for (int t = 0; t < T_ROWS; t++) {
        float q[N_IN];
        for (int j = 0; j < N_IN; j++) tmp[j] = L.X[t * N_IN + j] * ldexpf(1.0f, r.a_k[j]);
        fp_quant_span(&al, tmp, N_IN, r.a_scale, NULL, q);
        for (int j = 0; j < N_IN; j++) assert_true(xq[t * N_IN + j] == q[j] * ldexpf(1.0f, -r.a_k[j]));
    }
    /* the evaluator's path: the activation step on the final Ŵ */
    assert_int_equal(kvq_fpj_act_fit(L.X, T_ROWS, N_IN, L.W, What, M_ALL, &o, &fit), KVQ_OK);
    assert_int_equal(fit.a_fmt, r.a_fmt);
    assert_true(fit.a_scale == r.a_scale);
    assert_memory_equal(fit.a_k, r.a_k, N_IN);
    assert_true(fit.obj[0] == r.obj[r.n_obj - 1]);
    kvq_fpj_result_free(&fit);
    free(buf), free(xq);
    kvq_ctx_free(act);
    kvq_fpj_result_free(&r);
}

static void test_bad_input(void **state)
{
    (void)state;
    static layer L;
    make_layer(&L);
    kvq_fpj_opts o = opts4(9);
    kvq_fpj_result r;
    assert_int_equal(kvq_fpj_search(L.X, T_ROWS, N_IN, L.W, M_ALL, L.seg_end, 2, &o, &r), KVQ_ERR_PARAM_RANGE);
    o = opts4(1);
    o.w_fmt0 = 4; /* outside the searched 4-bit set */
    assert_int_equal(kvq_fpj_search(L.X, T_ROWS, N_IN, L.W, M_ALL, L.seg_end, 2, &o, &r), KVQ_ERR_PARAM_RANGE);
    o = opts4(1);
    int64_t bad_end[2] = {M_A, M_ALL - 1};
    assert_int_equal(kvq_fpj_search(L.X, T_ROWS, N_IN, L.W, M_ALL, bad_end, 2, &o, &r), KVQ_ERR_ARG);
    L.X[100 * N_IN + 5] = NAN;
    assert_int_equal(kvq_fpj_search(L.X, T_ROWS, N_IN, L.W, M_ALL, L.seg_end, 2, &o, &r), KVQ_ERR_NONFINITE);
    assert_non_null(strstr(kvq_last_error_detail(), "row 100"));
    /* the codec hooks check what they are given */
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create("fp:rounds=3,gran=group", &ctx), KVQ_ERR_PARAM_RANGE);
    assert_int_equal(kvq_ctx_create("fp:rounds=3,search=clip", &ctx), KVQ_ERR_PARAM_RANGE);
    assert_int_equal(kvq_ctx_create("fp:rounds=3", &ctx), KVQ_OK);
    float sc[2] = {1.0f, -1.0f};
    assert_int_equal(kvq_fp_state_preset(kvq_ctx_state(ctx), 0, sc, 2), KVQ_ERR_ARG);
    assert_int_equal(kvq_fp_state_preset(kvq_ctx_state(ctx), 4, sc, 1), KVQ_ERR_ARG); /* 8-bit: not searched */
    assert_int_equal(kvq_fp_state_preset(kvq_ctx_state(ctx), 1, sc, 1), KVQ_OK);
    int64_t dims[2] = {2, N_IN}; /* preset for 1 row, tensor of 2 */
    kvq_tensor src = kvq_tensor_view(KVQ_DTYPE_F32, L.W, 2, dims);
    kvq_shape sh = kvq_shape_make(2, dims);
    size_t cap = kvq_ctx_payload_bound(ctx, &sh), n;
    uint8_t *buf = malloc(cap);
    assert_int_equal(kvq_ctx_encode_payload(ctx, &src, buf, cap, &n), KVQ_ERR_SHAPE);
    free(buf);
    kvq_ctx_free(ctx);
    kvq_ctx *act;
    uint8_t k[N_IN] = {0};
    assert_int_equal(kvq_ctx_create("fpa", &act), KVQ_OK);
    assert_int_equal(kvq_fpa_state_set(kvq_ctx_state(act), 0, 1.0f, k, N_IN), KVQ_ERR_ARG); /* not calibrated */
    kvq_ctx_free(act);
}

#define FX_TOK 48 /* calibration tokens of the fixture run */

/* Site (layer 0, QKV) of the fixture: wq, wk, wv quantized by the driver
 * equal the search's Ŵ, and the evaluator's fit gives fpa its result. */
static void test_model_level(void **state)
{
    (void)state;
    fx_model fx;
    assert_int_equal(fx_make(&fx, 0, 7), KVQ_OK);
    int tok[FX_TOK];
    tok[0] = KVQ_TOKEN_BOS;
    for (int i = 1; i < FX_TOK; i++) tok[i] = (i * 11 + 5) % FX_VOCAB;
    kvq_calib *cal = NULL;
    assert_int_equal(kvq_calib_create(fx.model, tok, FX_TOK, 0, 1, &cal), KVQ_OK);
    kvq_quant_opts q;
    memset(&q, 0, sizeof q);
    q.spec = "fp:rounds=2";
    q.calib = cal;
    q.act_spec = "fpa";
    kvq_model *cand = NULL;
    assert_int_equal(kvq_model_quantize(fx.model, &q, &cand, NULL), KVQ_OK);
    static const char *const names[3] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"};
    static float W[(FX_DIM + 2 * FX_KVDIM) * FX_DIM], What[(FX_DIM + 2 * FX_KVDIM) * FX_DIM],
        dec[(FX_DIM + 2 * FX_KVDIM) * FX_DIM];
    int64_t seg_end[3] = {FX_DIM, FX_DIM + FX_KVDIM, FX_DIM + 2 * FX_KVDIM};
    for (int s = 0; s < 3; s++) {
        int64_t r0 = s ? seg_end[s - 1] : 0;
        assert_int_equal(kvq_weight_rows(kvq_model_weight(fx.model, names[s]), 0, seg_end[s] - r0, W + r0 * FX_DIM),
                         KVQ_OK);
        assert_int_equal(kvq_weight_rows(kvq_model_weight(cand, names[s]), 0, seg_end[s] - r0, dec + r0 * FX_DIM),
                         KVQ_OK);
    }
    kvq_tensor x;
    assert_int_equal(kvq_calib_input(cal, 0, KVQ_LIN_QKV, &x), KVQ_OK);
    kvq_fpj_opts o = opts4(2);
    kvq_fpj_result r;
    assert_int_equal(kvq_fpj_search(x.data, kvq_shape_rows(&x.shape), FX_DIM, W, seg_end[2], seg_end, 3, &o, &r),
                     KVQ_OK);
    for (int s = 0, c = 0; s < 3; s++) {
        kvq_fp_lut l;
        kvq_fp_lut_init(&l, kvq_fp_format(fp_fmt_ids[r.w_fmt[s]]), KVQ_TIE_EVEN);
        for (; c < seg_end[s]; c++) fp_quant_span(&l, W + c * FX_DIM, FX_DIM, r.w_scale[c], NULL, What + c * FX_DIM);
    }
    assert_memory_equal(dec, What, sizeof What);
    for (int i = 0; i + 1 < r.n_obj; i++) assert_true(r.obj[i + 1] <= r.obj[i]);
    kvq_ctx *act;
    assert_int_equal(kvq_ctx_create("fpa", &act), KVQ_OK);
    assert_int_equal(kvq_ctx_calibrate(act, &x), KVQ_OK);
    assert_int_equal(kvq_fpj_fit_act_ctx(act, &x, fx.model, cand, 0, KVQ_LIN_QKV), KVQ_OK);
    int fmt, pershift;
    kvq_tie tie;
    kvq_fpa_state_opts(kvq_ctx_state(act), &fmt, &pershift, &tie);
    assert_int_equal(fmt, r.a_fmt);
    int64_t one[2] = {1, FX_DIM};
    kvq_shape sh = kvq_shape_make(2, one);
    size_t cap = kvq_ctx_payload_bound(act, &sh), n;
    uint8_t *buf = malloc(cap);
    kvq_tensor row = kvq_tensor_view(KVQ_DTYPE_F32, (float *)x.data, 2, one);
    assert_int_equal(kvq_ctx_encode_payload(act, &row, buf, cap, &n), KVQ_OK);
    float s_stored;
    memcpy(&s_stored, buf + 2, 4); /* fpa payload: fmt, pershift, f32 s */
    assert_true(s_stored == r.a_scale);
    free(buf);
    kvq_ctx_free(act);
    /* an activation codec other than fpa is refused for rounds */
    kvq_model *bad = NULL;
    q.act_spec = "rtn";
    assert_int_equal(kvq_model_quantize(fx.model, &q, &bad, NULL), KVQ_ERR_ARG);
    kvq_fpj_result_free(&r);
    kvq_model_free(cand);
    kvq_calib_free(cal);
    fx_free(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounds_monotone),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_codecs_use_result),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_model_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
