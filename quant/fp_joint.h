/*
 * fp_joint.h — LLM-FP4's alternating weight/activation search (quant-
 * methods.md §1.4 "rounds") between the `fp` weight codec and the `fpa`
 * activation codec; implemented in quant/fp_joint.c, applied through the
 * hooks at the end of quant/fp.c and quant/fp_act.c.  Internal to libkvq.
 */
#ifndef KVQ_QUANT_FP_JOINT_H
#define KVQ_QUANT_FP_JOINT_H

#include "kvq.h"
#include "quant/quant_common.h"

#define KVQ_FPJ_MAX_ROUNDS 8   /* fp's `rounds` parameter range           */
#define KVQ_FPJ_TOKENS     128 /* calibration rows the search scores on
                                  (evenly spaced over the captured ones)   */

/* What is searched.  Format indices are fp's `fmt` indices (0..7). */
typedef struct kvq_fpj_opts {
    int     rounds;             /* 0: the start state only (one round)   */
    int     w_fmt0, a_fmt0;     /* start formats (the paper: E2M1)        */
    int     w_lo, w_hi;         /* weight formats searched                */
    int     a_lo, a_hi;         /* activation formats searched            */
    int     pershift;           /* fpa: per-channel pre-shifted biases    */
    kvq_tie w_tie, a_tie;
} kvq_fpj_opts;

/* The result for one linear input (a "site") and the weights reading it,
 * stacked as one [m][n] matrix of n_seg tensors.  obj[] is the layer-
 * output error Σ‖X Wᵀ − Xq Ŵᵀ‖² on the scored rows: obj[0] at the start
 * (weights searched on X, ρ by the activation error: what fp + fpa do in
 * one round), then after every weight step (i)+(iii) and every activation
 * step (ii)+(iv), 1 + 2·rounds values, never increasing. */
typedef struct kvq_fpj_result {
    int64_t  m, n, t;           /* rows, width, scored calibration rows   */
    int      n_seg;
    int     *w_fmt;             /* [n_seg] chosen weight format            */
    float   *w_scale;           /* [m] each row's scale in its format      */
    int      a_fmt;             /* chosen activation format                */
    float    a_scale;           /* s = 2^(bias − ρ)                        */
    uint8_t *a_k;               /* [n] pre-shifts k_j of a_fmt             */
    double   obj[1 + 2 * KVQ_FPJ_MAX_ROUNDS];
    int      n_obj;
} kvq_fpj_result;

/* kvq_fpj_search() : the search for X [t_all][n] (f32 calibration inputs)
 * and W [m][n] whose rows split into tensors ending at seg_end[0..n_seg).
 * *r is filled (free with kvq_fpj_result_free). */
kvq_err kvq_fpj_search(const float *X, int64_t t_all, int64_t n, const float *W, int64_t m, const int64_t *seg_end,
                       int n_seg, const kvq_fpj_opts *o, kvq_fpj_result *r);
void kvq_fpj_result_free(kvq_fpj_result *r);

/* kvq_fpj_act_fit() : the activation step (ii)+(iv) alone for fixed
 * quantized weights What [m][n]: the last step of kvq_fpj_search, so with
 * its final Ŵ it gives its final a_fmt, a_scale and a_k (same arithmetic).
 * Fills r->a_* only (r->a_k malloc'd, [n]). */
kvq_err kvq_fpj_act_fit(const float *X, int64_t t_all, int64_t n, const float *W, const float *What, int64_t m,
                        const kvq_fpj_opts *o, kvq_fpj_result *r);

/* ---- model level (libkvq/quantize.c, libkvq/eval_driver.c) --------------------- */
/* A plan: the joint search run for every site whose weights are encoded
 * by `fp` with rounds > 0 (codec_of[i], params_of[i] per weight of m, NULL
 * codec: not encoded), with the activation codec act_spec (NULL: "fpa").
 * Free with kvq_fpj_plan_free. */
typedef struct kvq_fpj_plan kvq_fpj_plan;
kvq_err kvq_fpj_plan_create(const kvq_model *m, const kvq_calib *cal, const kvq_codec *const *codec_of,
                            const kvq_params *params_of, const char *act_spec, kvq_fpj_plan **out);
void kvq_fpj_plan_free(kvq_fpj_plan *p);
/* kvq_fpj_plan_apply() : hands weight i's searched format and row scales to
 * its `fp` context (no-op for weights outside the plan). */
kvq_err kvq_fpj_plan_apply(const kvq_fpj_plan *p, size_t i, kvq_ctx *ctx);
/* kvq_fpj_fit_act_ctx() : when `act` is an `fpa` context (calibrated on X)
 * and cand's weights reading (layer, which) are `fp` with rounds > 0, sets
 * its format, ρ and shifts by the activation step against base's f32
 * weights and cand's quantized ones; else nothing. */
kvq_err kvq_fpj_fit_act_ctx(kvq_ctx *act, const kvq_tensor *X, const kvq_model *base, const kvq_model *cand,
                            int layer, kvq_linear which);

/* ---- hooks in the codecs ----------------------------------------------------- */
/* fp.c: the `rounds` parameter of an fp context's state; the format range
 * it searches (fmt_range) and the start format (its fmt when fixed); preset
 * format fi and per-row scales[rows] that encode() then uses instead of
 * searching (copied). */
int     kvq_fp_state_rounds(const void *st);
void    kvq_fp_state_fmts(const void *st, int *lo, int *hi, int *start, kvq_tie *tie);
kvq_err kvq_fp_state_preset(void *st, int fi, const float *scales, int64_t rows);
/* fp_act.c: an fpa state's settings, and setting format fi, scale s and
 * shifts k[n] (after calibrate: n must be the calibrated width). */
void    kvq_fpa_state_opts(const void *st, int *fmt, int *pershift, kvq_tie *tie);
kvq_err kvq_fpa_state_set(void *st, int fi, float s, const uint8_t *k, int64_t n);

#endif /* KVQ_QUANT_FP_JOINT_H */
