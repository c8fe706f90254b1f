/*
 * fp_joint.c — LLM-FP4's three alternating search rounds (quant-methods.md
 * §1.4, issue 4 Build item 2) for the `fp` weight codec with the `fpa`
 * activation codec, per linear input ("site") of the f32 model with its
 * cached calibration inputs X, every site independent.
 *
 *   start   weights in the start format (E2M1), each row's bias searched on
 *           the paper grid against the f32 X (objective ‖X w − X ŵ‖²);
 *           activations in the start format with ρ chosen by the
 *           activation error (`fpa`'s own calibration) — the one-round
 *           result;
 *   round   (i)   every weight format: each row's bias on the paper grid,
 *                 objective ‖X w_c − Xq ŵ_c‖² with the current quantized
 *                 activations Xq;
 *           (iii) per weight tensor, the format with the lowest output error;
 *           (ii)  every activation format: ρ with the current weights Ŵ,
 *                 objective ‖X Wᵀ − Xq(ρ) Ŵᵀ‖²;
 *           (iv)  the activation format with the lowest output error.
 *
 * It is coordinate descent on one objective, so it never increases: in (i)
 * each row's current scale is a candidate, in (iii) the current format, and
 * in (ii) the ρ candidates are a fixed list per format that holds the
 * current one.  Objective values are computed by one routine (row_err, in
 * double), so that holds exactly, not only up to rounding.
 *
 * [ours], for speed on small machines: the objective is scored on
 * KVQ_FPJ_TOKENS calibration rows evenly spaced over the captured ones
 * (channel maxima for fpa's k_j and ρ0 use every row, as fpa does); a
 * row's 100 grid candidates are ranked by the expansion
 * Σ_j D_jj d_j² + 2 gᵀd (d = ŵ − w, D = XqᵀXq, g = Xqᵀ(Xq − X)w, the
 * cross terms of D dropped) and the best FPJ_W_PREFILTER plus the current
 * scale are scored exactly; the ρ candidates of each activation format are
 * the FPJ_A_PREFILTER best of the paper grid by the activation error
 * (fixed for the whole search, so the activation step can be re-run on
 * the final weights alone: kvq_fpj_act_fit, which the evaluator uses to
 * give each `fpa` context the result).  Where the paper's code runs one
 * activation quantizer per linear layer, kvq has one per linear input
 * (wq, wk, wv share theirs): their rows are searched together, each
 * tensor picks its own weight format.
 */
#include "kvq_internal.h"
#include "quant/codecs.h"
#include "quant/fp_impl.h"
#include "quant/fp_joint.h"

#include <stdlib.h>

#define FPJ_GAMMA_N     100   /* paper grid: γ_i = 0.01 + i·1.19/100, i < 100 */
#define FPJ_GAMMA_LO    0.01
#define FPJ_GAMMA_SPAN  1.19
#define FPJ_W_PREFILTER 4     /* weight candidates scored exactly, + current */
#define FPJ_A_PREFILTER 6     /* ρ candidates per activation format          */
#define FPJ_FMTS        8

typedef struct {
    const kvq_fpj_opts *o;
    int64_t t, n, m;
    float  *X;                 /* [t][n] scored rows                          */
    const float *W;            /* [m][n]                                      */
    double *Y;                 /* [t][m] X Wᵀ                                 */
    float  *chmax;             /* [n] max |X| over every captured row          */
    kvq_fp_lut wl[FPJ_FMTS], al[FPJ_FMTS];
    float   acand[FPJ_FMTS][FPJ_A_PREFILTER];
    int     an[FPJ_FMTS];
    uint8_t *ak;               /* [FPJ_FMTS][n] shifts k_j per format         */
    float  *ashift;            /* [FPJ_FMTS][n] 2^−k_j                         */
    int     a_fmt;
    float   a_s;
    float  *Xq, *Xq2;          /* [t][n] current / candidate activations     */
    double *dq;                /* [n] Σ_t Xq²                                  */
    float  *ws;                /* [FPJ_FMTS][m] scale per row (0: none yet)   */
    double *we;                /* [FPJ_FMTS][m] its row error                 */
    float  *What;              /* [m][n] current weights                      */
    float  *tmp;               /* [4n] scratch                                */
    double *u, *g;             /* [t], [n]                                    */
} fpj;

/* ---- setup --------------------------------------------------------------------- */
static void fpj_free(fpj *J)
{
    free(J->X), free(J->Y), free(J->chmax), free(J->ak), free(J->ashift), free(J->Xq), free(J->Xq2);
    free(J->dq), free(J->ws), free(J->we), free(J->What), free(J->tmp), free(J->u), free(J->g);
}

static kvq_err fpj_alloc(fpj *J, const float *X, int64_t t_all, int64_t n, const float *W, int64_t m,
                         const kvq_fpj_opts *o)
{
    memset(J, 0, sizeof *J);
    J->o = o, J->W = W, J->n = n, J->m = m;
    J->t = t_all < KVQ_FPJ_TOKENS ? t_all : KVQ_FPJ_TOKENS;
    size_t tn = (size_t)(J->t * n), fn = (size_t)(FPJ_FMTS * n), fm = (size_t)(FPJ_FMTS * m);
    J->X = malloc(tn * sizeof *J->X), J->Y = malloc((size_t)(J->t * m) * sizeof *J->Y);
    J->chmax = calloc((size_t)n, sizeof *J->chmax), J->ak = calloc(fn, 1), J->ashift = malloc(fn * sizeof(float));
    J->Xq = malloc(tn * sizeof(float)), J->Xq2 = malloc(tn * sizeof(float)), J->dq = malloc((size_t)n * 8);
    J->ws = calloc(fm, sizeof(float)), J->we = calloc(fm, sizeof(double));
    J->What = malloc((size_t)(m * n) * sizeof(float)), J->tmp = malloc((size_t)(4 * n) * sizeof(float));
    J->u = malloc((size_t)J->t * 8), J->g = malloc((size_t)n * 8);
    if (!J->X || !J->Y || !J->chmax || !J->ak || !J->ashift || !J->Xq || !J->Xq2 || !J->dq || !J->ws || !J->we ||
        !J->What || !J->tmp || !J->u || !J->g) {
        fpj_free(J);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "fp joint search: out of memory for a %lld x %lld layer", (long long)m,
                         (long long)n);
    }
    for (int64_t i = 0; i < J->t; i++) /* evenly spaced rows */
        memcpy(J->X + i * n, X + (i * t_all / J->t) * n, (size_t)n * sizeof *X);
    for (int64_t r = 0; r < t_all; r++)
        for (int64_t j = 0; j < n; j++) {
            float a = fabsf(X[r * n + j]);
            if (!isfinite(a)) {
                fpj_free(J);
                return KVQ_ERROR(KVQ_ERR_NONFINITE, "fp joint search: calibration row %lld holds NaN/Inf (column %lld)",
                                 (long long)r, (long long)j);
            }
            J->chmax[j] = a > J->chmax[j] ? a : J->chmax[j];
        }
    for (int64_t i = 0; i < J->t; i++)
        for (int64_t c = 0; c < m; c++) {
            double y = 0.0;
            for (int64_t j = 0; j < n; j++) y += (double)J->X[i * n + j] * (double)W[c * n + j];
            J->Y[i * m + c] = y;
        }
    for (int f = 0; f < FPJ_FMTS; f++) {
        kvq_fp_lut_init(&J->wl[f], kvq_fp_format(fp_fmt_ids[f]), o->w_tie);
        kvq_fp_lut_init(&J->al[f], kvq_fp_format(fp_fmt_ids[f]), o->a_tie);
    }
    return KVQ_OK;
}

/* ---- activations ----------------------------------------------------------------- */
/* Xq = Q(X) in format af at scale s with its shifts: fpa's encode + decode
 * (codes of 2^k_j·x_j at s, values ±mag·s·2^−k_j). */
static void act_quant(const fpj *J, int af, float s, float *Xq)
{
    const float *sh = J->ashift + af * J->n;
    for (int64_t i = 0; i < J->t; i++) {
        float *q = Xq + i * J->n;
        for (int64_t j = 0; j < J->n; j++) J->tmp[j] = J->X[i * J->n + j] / sh[j];
        fp_quant_span(&J->al[af], J->tmp, J->n, s, NULL, q);
        for (int64_t j = 0; j < J->n; j++) q[j] *= sh[j];
    }
}

/* Format af: ρ0 = min_j b̃(chmax_j), k_j (fpa's finalize), then the
 * FPJ_A_PREFILTER grid scales with the lowest activation error, best first. */
static kvq_err act_setup(fpj *J, int af)
{
    const kvq_fpfmt *f = kvq_fp_format(fp_fmt_ids[af]);
    double rho0 = INFINITY, err[FPJ_GAMMA_N];
    float sc[FPJ_GAMMA_N];
    for (int64_t j = 0; j < J->n; j++)
        if (J->chmax[j] > 0.0f) rho0 = fmin(rho0, kvq_fp_bias_for_max(f, J->chmax[j]));
    if (!isfinite(rho0)) rho0 = f->bias;
    int kmax = (1 << f->e) - 1;
    for (int64_t j = 0; j < J->n; j++) {
        long k = J->o->pershift && J->chmax[j] > 0.0f ? lround(kvq_fp_bias_for_max(f, J->chmax[j])) - lround(rho0) : 0;
        J->ak[af * J->n + j] = (uint8_t)(k < 0 ? 0 : k > kmax ? kmax : k);
        J->ashift[af * J->n + j] = ldexpf(1.0f, -(int)J->ak[af * J->n + j]);
    }
    for (int i = 0; i < FPJ_GAMMA_N; i++) {
        double rho = (FPJ_GAMMA_LO + FPJ_GAMMA_SPAN * i / FPJ_GAMMA_N) * rho0;
        sc[i] = (float)exp2((double)f->bias - rho);
        err[i] = INFINITY;
        if (!(sc[i] >= FLT_MIN) || !(sc[i] <= FLT_MAX / kvq_fp_maxval(f))) continue; /* as fpa */
        act_quant(J, af, sc[i], J->Xq2);
        double e = 0.0;
        for (int64_t k = 0; k < J->t * J->n; k++) {
            double d = (double)J->X[k] - (double)J->Xq2[k];
            e += d * d;
        }
        err[i] = e;
    }
    J->an[af] = 0;
    for (int p = 0; p < FPJ_A_PREFILTER; p++) { /* selection: lowest error, lowest index on ties */
        int b = -1;
        for (int i = 0; i < FPJ_GAMMA_N; i++)
            if (err[i] < INFINITY && (b < 0 || err[i] < err[b])) b = i;
        if (b < 0) break;
        J->acand[af][J->an[af]++] = sc[b];
        err[b] = INFINITY;
    }
    KVQ_FAIL_IF(!J->an[af], KVQ_ERR_PARAM_RANGE, "fp joint search: no finite activation scale (ρ0 = %g)", rho0);
    return KVQ_OK;
}

/* Makes (af, s) the current activations: Xq and D's diagonal. */
static void act_set(fpj *J, int af, float s)
{
    J->a_fmt = af, J->a_s = s;
    act_quant(J, af, s, J->Xq);
    for (int64_t j = 0; j < J->n; j++) J->dq[j] = 0.0;
    for (int64_t i = 0; i < J->t; i++)
        for (int64_t j = 0; j < J->n; j++) J->dq[j] += (double)J->Xq[i * J->n + j] * (double)J->Xq[i * J->n + j];
}

/* ---- the objective ----------------------------------------------------------------- */
/* ‖Xq ŵ − X w_c‖² for row c (double; the only place it is computed). */
static double row_err(const fpj *J, const float *Xq, const float *wh, int64_t c)
{
    double e = 0.0;
    for (int64_t i = 0; i < J->t; i++) {
        const float *x = Xq + i * J->n;
        double z = 0.0;
        for (int64_t j = 0; j < J->n; j++) z += (double)x[j] * (double)wh[j];
        z -= J->Y[i * J->m + c];
        e += z * z;
    }
    return e;
}

static double full_obj(const fpj *J, const float *Xq)
{
    double e = 0.0;
    for (int64_t c = 0; c < J->m; c++) e += row_err(J, Xq, J->What + c * J->n, c);
    return e;
}

/* ---- weights --------------------------------------------------------------------- */
/* The stored f32 scale of paper-grid candidate i of a row whose max is M
 * (fp.c's cand_scale + store_scale for one f32 per row). */
static float w_cand(const kvq_fp_lut *l, double M, int i)
{
    double b0 = kvq_fp_bias_for_max(l->f, M), b = (FPJ_GAMMA_LO + FPJ_GAMMA_SPAN * i / FPJ_GAMMA_N) * b0;
    float f = (float)exp2((double)l->f->bias - b), hi = FLT_MAX / l->mag[l->n - 1];
    return !(f >= FLT_MIN) ? FLT_MIN : !(f <= hi) ? hi : f;
}

/* u = (Xq − X) w_c and g = Xqᵀ u for row c (the prefilter's linear term). */
static void row_terms(fpj *J, const float *w)
{
    for (int64_t i = 0; i < J->t; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < J->n; j++) s += ((double)J->Xq[i * J->n + j] - (double)J->X[i * J->n + j]) * w[j];
        J->u[i] = s;
    }
    for (int64_t j = 0; j < J->n; j++) J->g[j] = 0.0;
    for (int64_t i = 0; i < J->t; i++)
        for (int64_t j = 0; j < J->n; j++) J->g[j] += (double)J->Xq[i * J->n + j] * J->u[i];
}

/* Row c in format wf: the best of the current scale (if any) and the
 * FPJ_W_PREFILTER best grid candidates by the prefilter, scored exactly. */
static void w_row(fpj *J, int64_t c, int wf)
{
    const kvq_fp_lut *l = &J->wl[wf];
    const float *w = J->W + c * J->n;
    float *q = J->tmp, sc[FPJ_GAMMA_N];
    double pre[FPJ_GAMMA_N], M = (double)kvq_absmax(w, (size_t)J->n);
    float *cur = J->ws + wf * J->m + c;
    if (!(M > 0)) { /* an all-zero row: any scale, error constant */
        *cur = 1.0f;
        for (int64_t j = 0; j < J->n; j++) q[j] = 0.0f;
        J->we[wf * J->m + c] = row_err(J, J->Xq, q, c);
        return;
    }
    for (int i = 0; i < FPJ_GAMMA_N; i++) {
        sc[i] = w_cand(l, M, i);
        fp_quant_span(l, w, J->n, sc[i], NULL, q);
        double p = 0.0;
        for (int64_t j = 0; j < J->n; j++) {
            double d = (double)q[j] - (double)w[j];
            p += J->dq[j] * d * d + 2.0 * J->g[j] * d;
        }
        pre[i] = p;
    }
    double best = INFINITY;
    float bs = 0.0f;
    if (*cur > 0.0f) {
        fp_quant_span(l, w, J->n, *cur, NULL, q);
        best = row_err(J, J->Xq, q, c), bs = *cur;
    }
    for (int p = 0; p < FPJ_W_PREFILTER; p++) {
        int b = 0;
        for (int i = 1; i < FPJ_GAMMA_N; i++)
            if (pre[i] < pre[b]) b = i;
        pre[b] = INFINITY;
        fp_quant_span(l, w, J->n, sc[b], NULL, q);
        double e = row_err(J, J->Xq, q, c);
        if (e < best) best = e, bs = sc[b];
    }
    *cur = bs;
    J->we[wf * J->m + c] = best;
}

/* Rebuilds Ŵ from each tensor's format and its rows' scales. */
static void w_build(fpj *J, const int64_t *seg_end, int n_seg, const int *w_fmt)
{
    for (int s = 0, c = 0; s < n_seg; s++)
        for (; c < seg_end[s]; c++)
            fp_quant_span(&J->wl[w_fmt[s]], J->W + c * J->n, J->n, J->ws[w_fmt[s] * J->m + c], NULL,
                          J->What + c * J->n);
}

/* (i) every format in [lo, hi] for every row, then (iii) each tensor's
 * format: the current one unless another's summed row error is lower. */
static double w_step(fpj *J, int lo, int hi, const int64_t *seg_end, int n_seg, int *w_fmt)
{
    double total = 0.0;
    for (int64_t c = 0; c < J->m; c++) {
        row_terms(J, J->W + c * J->n);
        for (int wf = lo; wf <= hi; wf++) w_row(J, c, wf);
    }
    for (int s = 0; s < n_seg; s++) {
        int64_t c0 = s ? seg_end[s - 1] : 0;
        double best = INFINITY;
        for (int wf = lo - 1; wf <= hi; wf++) { /* lo − 1 stands for the current format, tried first */
            int f = wf < lo ? w_fmt[s] : wf;
            double e = 0.0;
            for (int64_t c = c0; c < seg_end[s]; c++) e += J->we[f * J->m + c];
            if (e < best) best = e, w_fmt[s] = f;
        }
    }
    w_build(J, seg_end, n_seg, w_fmt);
    for (int s = 0, c = 0; s < n_seg; s++) /* = full_obj(J, J->Xq): the same row_err values, same order */
        for (; c < seg_end[s]; c++) total += J->we[w_fmt[s] * J->m + c];
    return total;
}

/* (ii) every activation format's fixed ρ list against the current Ŵ, (iv)
 * the lowest: a plain argmin in a fixed order (the current state is in
 * the lists), so kvq_fpj_act_fit repeats it exactly. */
static double a_step(fpj *J)
{
    double best = INFINITY;
    int bf = J->a_fmt;
    float bs = J->a_s;
    for (int af = J->o->a_lo; af <= J->o->a_hi; af++)
        for (int i = 0; i < J->an[af]; i++) {
            act_quant(J, af, J->acand[af][i], J->Xq2);
            double e = full_obj(J, J->Xq2);
            if (e < best) best = e, bf = af, bs = J->acand[af][i];
        }
    act_set(J, bf, bs);
    return best;
}

static kvq_err check_opts(const kvq_fpj_opts *o, int64_t n, int64_t m, int64_t t_all)
{
    KVQ_FAIL_IF(n < 1 || m < 1 || t_all < 1, KVQ_ERR_SHAPE, "fp joint search: %lld x %lld weights, %lld rows",
                (long long)m, (long long)n, (long long)t_all);
    KVQ_FAIL_IF(o->rounds < 0 || o->rounds > KVQ_FPJ_MAX_ROUNDS, KVQ_ERR_PARAM_RANGE,
                "fp joint search: %d rounds outside 0..%d", o->rounds, KVQ_FPJ_MAX_ROUNDS);
    KVQ_FAIL_IF(o->w_lo < 0 || o->w_hi >= FPJ_FMTS || o->w_lo > o->w_fmt0 || o->w_fmt0 > o->w_hi || o->a_lo < 0 ||
                    o->a_hi >= FPJ_FMTS || o->a_lo > o->a_fmt0 || o->a_fmt0 > o->a_hi,
                KVQ_ERR_PARAM_RANGE, "fp joint search: bad format ranges");
    return KVQ_OK;
}

static kvq_err act_setup_all(fpj *J)
{
    for (int af = J->o->a_lo; af <= J->o->a_hi; af++) KVQ_TRY(act_setup(J, af));
    return KVQ_OK;
}

static kvq_err copy_act(const fpj *J, kvq_fpj_result *r)
{
    r->a_fmt = J->a_fmt;
    r->a_scale = J->a_s;
    r->a_k = malloc((size_t)J->n);
    KVQ_FAIL_IF(!r->a_k, KVQ_ERR_NOMEM, "fp joint search: out of memory");
    memcpy(r->a_k, J->ak + J->a_fmt * J->n, (size_t)J->n);
    return KVQ_OK;
}

/* Start, then the rounds; J allocated. */
static kvq_err run(fpj *J, const int64_t *seg_end, int n_seg, kvq_fpj_result *r)
{
    const kvq_fpj_opts *o = J->o;
    memcpy(J->Xq, J->X, (size_t)(J->t * J->n) * sizeof *J->Xq); /* start: weights against f32 X */
    for (int64_t j = 0; j < J->n; j++) J->dq[j] = 0.0;
    for (int64_t k = 0; k < J->t * J->n; k++) J->dq[k % J->n] += (double)J->X[k] * (double)J->X[k];
    for (int64_t j = 0; j < J->n; j++) J->g[j] = 0.0;
    for (int64_t c = 0; c < J->m; c++) w_row(J, c, o->w_fmt0);
    for (int s = 0; s < n_seg; s++) r->w_fmt[s] = o->w_fmt0;
    w_build(J, seg_end, n_seg, r->w_fmt);
    KVQ_TRY(act_setup_all(J));
    act_set(J, o->a_fmt0, J->acand[o->a_fmt0][0]); /* fpa's ρ: lowest activation error */
    r->obj[r->n_obj++] = full_obj(J, J->Xq);
    for (int k = 0; k < o->rounds; k++) {
        r->obj[r->n_obj++] = w_step(J, o->w_lo, o->w_hi, seg_end, n_seg, r->w_fmt);
        r->obj[r->n_obj++] = a_step(J);
    }
    for (int s = 0, c = 0; s < n_seg; s++)
        for (; c < seg_end[s]; c++) r->w_scale[c] = J->ws[r->w_fmt[s] * J->m + c];
    return copy_act(J, r);
}

kvq_err kvq_fpj_search(const float *X, int64_t t_all, int64_t n, const float *W, int64_t m, const int64_t *seg_end,
                       int n_seg, const kvq_fpj_opts *o, kvq_fpj_result *r)
{
    memset(r, 0, sizeof *r);
    KVQ_TRY(check_opts(o, n, m, t_all));
    KVQ_FAIL_IF(n_seg < 1 || seg_end[n_seg - 1] != m, KVQ_ERR_ARG, "fp joint search: segments do not end at row %lld",
                (long long)m);
    fpj J;
    KVQ_TRY(fpj_alloc(&J, X, t_all, n, W, m, o));
    r->m = m, r->n = n, r->t = J.t, r->n_seg = n_seg;
    r->w_fmt = malloc((size_t)n_seg * sizeof *r->w_fmt);
    r->w_scale = malloc((size_t)m * sizeof *r->w_scale);
    kvq_err e = !r->w_fmt || !r->w_scale ? KVQ_ERROR(KVQ_ERR_NOMEM, "fp joint search: out of memory")
                                         : run(&J, seg_end, n_seg, r);
    fpj_free(&J);
    if (e) kvq_fpj_result_free(r);
    return e;
}

kvq_err kvq_fpj_act_fit(const float *X, int64_t t_all, int64_t n, const float *W, const float *What, int64_t m,
                        const kvq_fpj_opts *o, kvq_fpj_result *r)
{
    memset(r, 0, sizeof *r);
    KVQ_TRY(check_opts(o, n, m, t_all));
    fpj J;
    KVQ_TRY(fpj_alloc(&J, X, t_all, n, W, m, o));
    memcpy(J.What, What, (size_t)(m * n) * sizeof *What);
    r->m = m, r->n = n, r->t = J.t;
    kvq_err e = act_setup_all(&J);
    if (!e) {
        J.a_fmt = o->a_fmt0, J.a_s = J.acand[o->a_fmt0][0];
        r->obj[r->n_obj++] = a_step(&J);
        e = copy_act(&J, r);
    }
    fpj_free(&J);
    return e;
}

void kvq_fpj_result_free(kvq_fpj_result *r)
{
    if (!r) return;
    free(r->w_fmt), free(r->w_scale), free(r->a_k);
    memset(r, 0, sizeof *r);
}

/* ---- model level ------------------------------------------------------------------ */
#define FPJ_ROUNDS_PARAM 6u /* fp's params[]: fmt gran group search tie nib rounds */
struct kvq_fpj_plan {
    size_t  n_w;
    int    *fmt;        /* [n_w] format index, −1: not planned            */
    float **scale;      /* [n_w] rows' scales (NULL: not planned)          */
    int64_t *rows;      /* [n_w]                                           */
};

void kvq_fpj_plan_free(kvq_fpj_plan *p)
{
    if (!p) return;
    for (size_t i = 0; p->scale && i < p->n_w; i++) free(p->scale[i]);
    free(p->scale), free(p->fmt), free(p->rows), free(p);
}

/* Search options from an fp weight context's state and an fpa one's. */
static void opts_of(const void *fp_st, const void *fpa_st, kvq_fpj_opts *o)
{
    int afmt, wlo, whi, w0;
    memset(o, 0, sizeof *o);
    o->rounds = kvq_fp_state_rounds(fp_st);
    kvq_fp_state_fmts(fp_st, &wlo, &whi, &w0, &o->w_tie);
    o->w_lo = wlo, o->w_hi = whi;
    o->w_fmt0 = w0; /* the paper starts from E2M1: fp's default fmt */
    kvq_fpa_state_opts(fpa_st, &afmt, &o->pershift, &o->a_tie);
    o->a_fmt0 = afmt;
    o->a_lo = afmt <= 2 ? 0 : 3; /* fp's fmt indices: 0..2 4-bit, 3..7 8-bit */
    o->a_hi = afmt <= 2 ? 2 : 7;
}

/* Weight i of m is searched jointly when its codec is fp with rounds > 0
 * and it reads linear input (layer, which). */
static int in_site(const kvq_model *m, size_t i, const kvq_codec *c, const kvq_params *p, int layer,
                   kvq_linear which)
{
    int l;
    kvq_linear w;
    if (c != &kvq_codec_fp || p->n <= FPJ_ROUNDS_PARAM || p->v[FPJ_ROUNDS_PARAM] <= 0) return 0;
    if (kvq_calib_weight_slot(kvq_model_config_get(m), kvq_model_weight_at(m, i)->name, &l, &w)) return 0;
    return l == layer && w == which;
}

/* Rows of the weights idx[0..k) of m stacked into *W (malloc'd). */
static kvq_err stack_rows(const kvq_model *m, const size_t *idx, int k, int64_t n, float **W, int64_t *seg_end)
{
    int64_t rows = 0;
    for (int s = 0; s < k; s++) {
        const kvq_weight *w = kvq_model_weight_at(m, idx[s]);
        KVQ_FAIL_IF(kvq_shape_cols(&w->shape) != n, KVQ_ERR_SHAPE, "fp joint search: %s has rows of %lld, its input %lld",
                    w->name, (long long)kvq_shape_cols(&w->shape), (long long)n);
        rows += kvq_shape_rows(&w->shape);
        seg_end[s] = rows;
    }
    *W = malloc((size_t)(rows * n) * sizeof **W);
    KVQ_FAIL_IF(!*W, KVQ_ERR_NOMEM, "fp joint search: out of memory");
    for (int s = 0; s < k; s++) {
        int64_t r0 = s ? seg_end[s - 1] : 0;
        kvq_err e = kvq_weight_rows(kvq_model_weight_at(m, idx[s]), 0, seg_end[s] - r0, *W + r0 * n);
        if (e) {
            free(*W);
            *W = NULL;
            return e;
        }
    }
    return KVQ_OK;
}

#define FPJ_SITE_MAX 8 /* weights reading one linear input (wq wk wv: 3) */

static kvq_err plan_site(kvq_fpj_plan *p, const kvq_model *m, const kvq_calib *cal, const kvq_codec *const *codec_of,
                         const kvq_params *params_of, const kvq_ctx *act, int layer, kvq_linear which)
{
    size_t idx[FPJ_SITE_MAX];
    int k = 0;
    for (size_t i = 0; i < p->n_w; i++)
        if (in_site(m, i, codec_of[i], &params_of[i], layer, which)) {
            KVQ_FAIL_IF(k == FPJ_SITE_MAX, KVQ_ERR_ARG, "fp joint search: more than %d weights read one input",
                        FPJ_SITE_MAX);
            idx[k++] = i;
        }
    if (!k) return KVQ_OK;
    kvq_tensor x;
    KVQ_TRY(kvq_calib_input(cal, layer, which, &x));
    kvq_ctx *wctx;
    KVQ_TRY(kvq_ctx_create_params(codec_of[idx[0]], &params_of[idx[0]], &wctx));
    kvq_fpj_opts o;
    opts_of(kvq_ctx_state(wctx), kvq_ctx_state(act), &o);
    kvq_ctx_free(wctx);
    int64_t n = kvq_shape_cols(&x.shape), seg_end[FPJ_SITE_MAX];
    float *W = NULL;
    kvq_fpj_result r;
    KVQ_TRY(stack_rows(m, idx, k, n, &W, seg_end));
    kvq_err e = kvq_fpj_search(x.data, kvq_shape_rows(&x.shape), n, W, seg_end[k - 1], seg_end, k, &o, &r);
    free(W);
    for (int s = 0; !e && s < k; s++) {
        int64_t r0 = s ? seg_end[s - 1] : 0;
        p->fmt[idx[s]] = r.w_fmt[s];
        p->rows[idx[s]] = seg_end[s] - r0;
        p->scale[idx[s]] = malloc((size_t)(seg_end[s] - r0) * sizeof(float));
        if (!p->scale[idx[s]]) e = KVQ_ERROR(KVQ_ERR_NOMEM, "fp joint search: out of memory");
        else memcpy(p->scale[idx[s]], r.w_scale + r0, (size_t)(seg_end[s] - r0) * sizeof(float));
    }
    kvq_fpj_result_free(&r);
    return e;
}

kvq_err kvq_fpj_plan_create(const kvq_model *m, const kvq_calib *cal, const kvq_codec *const *codec_of,
                            const kvq_params *params_of, const char *act_spec, kvq_fpj_plan **out)
{
    *out = NULL;
    int any = 0;
    for (size_t i = 0; i < kvq_model_n_weights(m); i++)
        any |= codec_of[i] == &kvq_codec_fp && params_of[i].n > FPJ_ROUNDS_PARAM && params_of[i].v[FPJ_ROUNDS_PARAM] > 0;
    if (!any) return KVQ_OK;
    kvq_ctx *act;
    KVQ_TRY(kvq_ctx_create(act_spec ? act_spec : "fpa", &act));
    if (kvq_ctx_codec(act) != &kvq_codec_fpa) {
        kvq_ctx_free(act);
        return KVQ_ERROR(KVQ_ERR_ARG, "fp:rounds searches weights with the fpa activation codec, not '%s'", act_spec);
    }
    kvq_fpj_plan *p = calloc(1, sizeof *p);
    size_t nw = kvq_model_n_weights(m);
    if (p) {
        p->n_w = nw, p->fmt = malloc((nw + 1) * sizeof *p->fmt), p->scale = calloc(nw + 1, sizeof *p->scale);
        p->rows = calloc(nw + 1, sizeof *p->rows);
    }
    kvq_err e = !p || !p->fmt || !p->scale || !p->rows ? KVQ_ERROR(KVQ_ERR_NOMEM, "fp joint search: out of memory") : KVQ_OK;
    for (size_t i = 0; !e && i < nw; i++) p->fmt[i] = -1;
    int nl = kvq_model_config_get(m)->n_layers;
    static const kvq_linear sites[] = {KVQ_LIN_QKV, KVQ_LIN_O, KVQ_LIN_GATEUP, KVQ_LIN_DOWN, KVQ_LIN_CLS};
    for (int l = 0; !e && l <= nl; l++)
        for (size_t s = 0; !e && s < sizeof sites / sizeof sites[0]; s++)
            if ((l < nl) != (sites[s] == KVQ_LIN_CLS)) e = plan_site(p, m, cal, codec_of, params_of, act, l, sites[s]);
    kvq_ctx_free(act);
    if (e) {
        kvq_fpj_plan_free(p);
        return e;
    }
    *out = p;
    return KVQ_OK;
}

kvq_err kvq_fpj_plan_apply(const kvq_fpj_plan *p, size_t i, kvq_ctx *ctx)
{
    if (!p || i >= p->n_w || !p->scale[i] || kvq_ctx_codec(ctx) != &kvq_codec_fp) return KVQ_OK;
    return kvq_fp_state_preset(kvq_ctx_state(ctx), p->fmt[i], p->scale[i], p->rows[i]);
}

kvq_err kvq_fpj_fit_act_ctx(kvq_ctx *act, const kvq_tensor *X, const kvq_model *base, const kvq_model *cand,
                            int layer, kvq_linear which)
{
    if (kvq_ctx_codec(act) != &kvq_codec_fpa) return KVQ_OK;
    size_t idx[FPJ_SITE_MAX];
    int k = 0;
    const kvq_ctx *wctx = NULL;
    for (size_t i = 0; i < kvq_model_n_weights(cand); i++) {
        const kvq_weight *w = kvq_model_weight_at(cand, i);
        int l;
        kvq_linear s;
        if (!w->codec || kvq_ctx_codec(w->codec) != &kvq_codec_fp || kvq_fp_state_rounds(kvq_ctx_state(w->codec)) <= 0 ||
            kvq_calib_weight_slot(kvq_model_config_get(cand), w->name, &l, &s) || l != layer || s != which)
            continue;
        KVQ_FAIL_IF(k == FPJ_SITE_MAX, KVQ_ERR_ARG, "fp joint search: more than %d weights read one input",
                    FPJ_SITE_MAX);
        KVQ_FAIL_IF(i >= kvq_model_n_weights(base) || strcmp(kvq_model_weight_at(base, i)->name, w->name), KVQ_ERR_ARG,
                    "fp joint search: the base model has no weight %s at %zu", w->name, i);
        idx[k++] = i, wctx = w->codec;
    }
    if (!k) return KVQ_OK;
    kvq_fpj_opts o;
    opts_of(kvq_ctx_state(wctx), kvq_ctx_state(act), &o);
    int64_t n = kvq_shape_cols(&X->shape), seg_end[FPJ_SITE_MAX];
    float *W = NULL, *Wh = NULL;
    KVQ_TRY(stack_rows(base, idx, k, n, &W, seg_end));
    kvq_err e = stack_rows(cand, idx, k, n, &Wh, seg_end);
    kvq_fpj_result r;
    memset(&r, 0, sizeof r);
    if (!e) e = kvq_fpj_act_fit(X->data, kvq_shape_rows(&X->shape), n, W, Wh, seg_end[k - 1], &o, &r);
    if (!e) e = kvq_fpa_state_set(kvq_ctx_state(act), r.a_fmt, r.a_scale, r.a_k, n);
    kvq_fpj_result_free(&r);
    free(W), free(Wh);
    return e;
}
