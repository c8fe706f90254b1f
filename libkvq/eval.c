/*
 * eval.c — llama-perplexity's quality statistics over per-token results
 * (quant-methods.md §7.1–7.3; llama.cpp tools/perplexity): perplexity with
 * its uncertainty, KL divergence, Δp, RMS Δp, same-top-token rate, the
 * correlation and ratio of the two log-perplexities, and percentiles.
 *
 * Pure functions over arrays: testable without a model.  The one
 * deliberate difference from llama.cpp (documented in kvq.h): the base
 * distribution is exact f32 logits, softmaxed in double, and KL sums every
 * vocabulary term, so identical logits give KL = 0 exactly.
 *
 * Reconstructed where the reference is terse [ours]: the covariance of the
 * two NLL series uses the same n−1 normalisation as the means, and the
 * correlation is 0 when either uncertainty is 0.
 */
#include "kvq_internal.h"

#include <math.h>
#include <stdlib.h>

#define MIN_COUNT_FOR_UNC 10  /* llama.cpp reports 0 uncertainty for n <= 10 */
#define MIN_COUNT_FOR_COV 10  /* llama.cpp's covariance is 0 below 10 tokens  */
#define ACC_INITIAL_CAP 1024  /* per-token series start with this many slots */

static const double kld_levels[KVQ_EVAL_N_KLD_LEVELS] = {1.0, 0.999, 0.99, 0.95, 0.90, 0.5,
                                                         0.10, 0.05, 0.01, 0.001, 0.0};
static const double dp_levels[KVQ_EVAL_N_DP_LEVELS] = {1.0, 0.999, 0.99, 0.95, 0.90, 0.75, 0.5,
                                                       0.25, 0.10, 0.05, 0.01, 0.001, 0.0};

const double *kvq_eval_kld_levels(void) { return kld_levels; }
const double *kvq_eval_dp_levels(void) { return dp_levels; }

/* ---- one token ------------------------------------------------------------- */

/* ln Σ exp(x_i − max) and the argmax (lowest index on ties). */
static void log_norm(const float *x, int n, double *max, double *lse, int *arg)
{
    int a = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[a]) a = i;
    double m = x[a], sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - m);
    *max = m;
    *lse = log(sum);
    *arg = a;
}

static kvq_err check_finite_row(const float *x, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        KVQ_FAIL_IF(!isfinite(x[i]), KVQ_ERR_NONFINITE, "eval: %s logit %d is %g", what, i, (double)x[i]);
    return KVQ_OK;
}

kvq_err kvq_eval_compare(const float *lb, const float *lq, int n_vocab, int target, kvq_eval_token *t)
{
    KVQ_FAIL_IF(!lb || !lq || !t, KVQ_ERR_ARG, "kvq_eval_compare: NULL argument");
    KVQ_FAIL_IF(n_vocab <= 0 || target < 0 || target >= n_vocab, KVQ_ERR_ARG,
                "kvq_eval_compare: target %d outside a vocabulary of %d", target, n_vocab);
    KVQ_TRY(check_finite_row(lb, n_vocab, "base"));
    KVQ_TRY(check_finite_row(lq, n_vocab, "candidate"));
    double mb, lseb, mq, lseq;
    int ab, aq;
    log_norm(lb, n_vocab, &mb, &lseb, &ab);
    log_norm(lq, n_vocab, &mq, &lseq, &aq);
    double kld = 0;
    for (int i = 0; i < n_vocab; i++) {
        double lpb = (double)lb[i] - mb - lseb, lpq = (double)lq[i] - mq - lseq;
        kld += exp(lpb) * (lpb - lpq);
    }
    t->nll_base = -((double)lb[target] - mb - lseb);
    t->nll_q = -((double)lq[target] - mq - lseq);
    t->p_base = exp(-t->nll_base);
    t->p_q = exp(-t->nll_q);
    t->kld = kld;
    t->same_top = ab == aq;
    return KVQ_OK;
}

/* ---- accumulation ------------------------------------------------------------ */

struct kvq_eval_acc {
    uint64_t n, n_same_top;
    double sum_nll, sum_nll2, sum_nll_base, sum_nll_base2, sum_nll_nll_base;
    double sum_kld, sum_kld2, sum_dp, sum_dp2, sum_dp4;
    double *kld, *dp;       /* per-token series [cap] */
    size_t cap;
};

kvq_err kvq_eval_acc_create(kvq_eval_acc **out)
{
    KVQ_FAIL_IF(!out, KVQ_ERR_ARG, "kvq_eval_acc_create: NULL out");
    kvq_eval_acc *a = calloc(1, sizeof *a);
    KVQ_FAIL_IF(!a, KVQ_ERR_NOMEM, "eval: out of memory");
    *out = a;
    return KVQ_OK;
}

void kvq_eval_acc_free(kvq_eval_acc *a)
{
    if (!a) return;
    free(a->kld);
    free(a->dp);
    free(a);
}

uint64_t kvq_eval_acc_count(const kvq_eval_acc *a) { return a ? a->n : 0; }

static kvq_err grow(kvq_eval_acc *a)
{
    size_t cap = a->cap ? a->cap * 2 : ACC_INITIAL_CAP;
    double *k = realloc(a->kld, cap * sizeof *k);
    KVQ_FAIL_IF(!k, KVQ_ERR_NOMEM, "eval: out of memory for %zu tokens", cap);
    a->kld = k;
    double *d = realloc(a->dp, cap * sizeof *d);
    KVQ_FAIL_IF(!d, KVQ_ERR_NOMEM, "eval: out of memory for %zu tokens", cap);
    a->dp = d;
    a->cap = cap;
    return KVQ_OK;
}

kvq_err kvq_eval_acc_add(kvq_eval_acc *a, const kvq_eval_token *t)
{
    KVQ_FAIL_IF(!a || !t, KVQ_ERR_ARG, "kvq_eval_acc_add: NULL argument");
    if (a->n == a->cap) KVQ_TRY(grow(a));
    double dp = t->p_q - t->p_base;
    a->kld[a->n] = t->kld;
    a->dp[a->n] = dp;
    a->n++;
    a->n_same_top += t->same_top ? 1 : 0;
    a->sum_nll += t->nll_q;
    a->sum_nll2 += t->nll_q * t->nll_q;
    a->sum_nll_base += t->nll_base;
    a->sum_nll_base2 += t->nll_base * t->nll_base;
    a->sum_nll_nll_base += t->nll_q * t->nll_base;
    a->sum_kld += t->kld;
    a->sum_kld2 += t->kld * t->kld;
    a->sum_dp += dp;
    a->sum_dp2 += dp * dp;
    a->sum_dp4 += dp * dp * dp * dp;
    return KVQ_OK;
}

/* ---- statistics ---------------------------------------------------------------- */

void kvq_eval_mean_unc(double sum, double sum2, uint64_t n, double *mean, double *unc)
{
    if (n == 0) {
        *mean = *unc = 0;
        return;
    }
    double m = sum / (double)n, var = sum2 / (double)n - m * m;
    *mean = m;
    *unc = var > 0 && n > MIN_COUNT_FOR_UNC ? sqrt(var / (double)(n - 1)) : 0;
}

double kvq_eval_percentile(const double *sorted, size_t n, double f)
{
    if (n == 0) return 0;
    if (f <= 0) return sorted[0];
    if (f >= 1) return sorted[n - 1];
    double p = f * (double)(n - 1);
    size_t i = (size_t)p;
    double frac = p - (double)i;
    size_t j = i + 1 < n ? i + 1 : n - 1;
    return (1 - frac) * sorted[i] + frac * sorted[j];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentiles of a series at `levels` (sorted copy; the series stays). */
static kvq_err percentiles(const double *v, uint64_t n, const double *levels, int n_levels, double *out)
{
    double *s = malloc(n ? (size_t)n * sizeof *s : 1);
    KVQ_FAIL_IF(!s, KVQ_ERR_NOMEM, "eval: out of memory sorting %llu values", (unsigned long long)n);
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    for (int i = 0; i < n_levels; i++) out[i] = kvq_eval_percentile(s, (size_t)n, levels[i]);
    free(s);
    return KVQ_OK;
}

/* Perplexity block: both PPLs, their correlation, ratio and difference. */
static void ppl_stats(const kvq_eval_acc *a, kvq_eval_summary *s)
{
    double lq, lq_unc, lb, lb_unc;
    kvq_eval_mean_unc(a->sum_nll, a->sum_nll2, a->n, &lq, &lq_unc);
    kvq_eval_mean_unc(a->sum_nll_base, a->sum_nll_base2, a->n, &lb, &lb_unc);
    s->ppl_q = exp(lq);
    s->ppl_q_unc = s->ppl_q * lq_unc;
    s->ppl_base = exp(lb);
    s->ppl_base_unc = s->ppl_base * lb_unc;
    double n = (double)a->n, cov = 0;
    if (a->n >= MIN_COUNT_FOR_COV)
        cov = (a->sum_nll_nll_base / n - (a->sum_nll / n) * (a->sum_nll_base / n)) / (n - 1);
    s->ln_ppl_cor = lq_unc > 0 && lb_unc > 0 ? cov / (lq_unc * lb_unc) : 0;
    s->ln_ratio = lq - lb;
    double v = lq_unc * lq_unc + lb_unc * lb_unc - 2 * cov;
    s->ln_ratio_unc = v > 0 ? sqrt(v) : 0;
    s->ppl_ratio = exp(s->ln_ratio);
    s->ppl_ratio_unc = s->ppl_ratio * s->ln_ratio_unc;
    s->ppl_diff = s->ppl_q - s->ppl_base;
    double pc = s->ppl_q * s->ppl_base * cov;
    v = s->ppl_q_unc * s->ppl_q_unc + s->ppl_base_unc * s->ppl_base_unc - 2 * pc;
    s->ppl_diff_unc = v > 0 ? sqrt(v) : 0;
}

kvq_err kvq_eval_summarize(const kvq_eval_acc *a, kvq_eval_summary *s)
{
    KVQ_FAIL_IF(!a || !s, KVQ_ERR_ARG, "kvq_eval_summarize: NULL argument");
    memset(s, 0, sizeof *s);
    s->n = a->n;
    if (a->n == 0) return KVQ_OK;
    ppl_stats(a, s);
    kvq_eval_mean_unc(a->sum_kld, a->sum_kld2, a->n, &s->kld_mean, &s->kld_unc);
    kvq_eval_mean_unc(a->sum_dp, a->sum_dp2, a->n, &s->dp_mean, &s->dp_unc);
    double mse, mse_unc;
    kvq_eval_mean_unc(a->sum_dp2, a->sum_dp4, a->n, &mse, &mse_unc);
    s->dp_rms = sqrt(mse);
    s->dp_rms_unc = s->dp_rms > 0 ? 0.5 / s->dp_rms * mse_unc : 0;
    double p = (double)a->n_same_top / (double)a->n;
    s->same_top = p;
    s->same_top_unc = a->n > 1 ? sqrt(p * (1 - p) / (double)(a->n - 1)) : 0;
    KVQ_TRY(percentiles(a->kld, a->n, kld_levels, KVQ_EVAL_N_KLD_LEVELS, s->kld_pct));
    return percentiles(a->dp, a->n, dp_levels, KVQ_EVAL_N_DP_LEVELS, s->dp_pct);
}
