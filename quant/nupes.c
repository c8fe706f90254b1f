/*
 * nupes.c — codec `nupes` (id 34): NUPES-style power-exponent non-uniform
 * quantization (quant-methods.md §2; a reconstruction — the papers' bodies
 * and code are not available, see §2.1).
 *
 *   q = RNE(Qm · sign(w) · (|w|/M)^a)  in {−Qm..Qm},  Qm = 2^(b−1) − 1
 *   ŵ = sign(q) · M · (|q|/Qm)^(1/a)
 * with M = max|w| per group (f16, codes computed against the stored M) and
 * one exponent a per tensor (f32).  a = 1 is symmetric RTN.
 *
 * Exponent.  a=0 (default) searches it data-free (§2.3): a 17-point grid on
 * [0.2, 1] brackets the minimum of Σ‖W − Ŵ(a)‖², then golden section to
 * 1e-3.  driven=1 with calibration (§2.3 data-driven, [ours]): with
 * H = XᵀX + λI (λ = 0.01·mean diag), each row's codes are refined over the
 * WHOLE grid (every level tried for every column, exact ΔE = −2δ(rH)_j +
 * δ²H_jj, up to NU_SWEEPS sweeps or no change), then a is re-optimised by
 * golden section with the codes fixed (tolerance NU_DRIVEN_TOL), for up to
 * NU_ROUNDS rounds while E decreases.  E never increases (a change is kept
 * only when it lowers E; the new a is kept only when E is lower).
 *
 * Integer-only path (§2.4): decoding reads a level table L[k] =
 * (k/Qm)^(1/a), k = 0..Qm (kvq_nupes_lut); kvq_nupes_lut_fixed gives the
 * integer table round(k^(1/a)·2^F) an integer GEMM uses, with one rescale
 * by M/(Qm^(1/a)·2^F) (nupes.h; tests/test_nupes.c checks both paths agree).
 *
 * Payload (little-endian, [ours]): f32 a, then per row: its groups' f16 M,
 * then `cols` codes of b bits (q + Qm), LSB first (quant_common.h).
 *
 * NaN/Inf are found by the groups' maxima (KVQ_FLAG_CHECKS_FINITE); the
 * code loops are kernels/kern_fp.h slots; kvq_nupes_rowkern binds the
 * LUT row kernel (kernels/rowkern.h) for 4- and 8-bit codes.
 */
#include "kvq_internal.h"
#include "kernels/kern_fp.h"
#include "kernels/rowkern.h"
#include "quant/codecs.h"
#include "quant/fp_impl.h"
#include "quant/nupes.h"
#include "quant/quant_common.h"

#include <float.h>
#include <stdlib.h>

#define NU_A_LO        0.2
#define NU_A_HI        1.0
#define NU_GRID        17
#define NU_TOL         1e-3
#define NU_DRIVEN_TOL  1e-2
#define NU_SWEEPS      4
#define NU_ROUNDS      3
#define NU_LAMBDA      0.01
#define NU_GOLD        0.6180339887498949
#define NU_RUN         256  /* codes unpacked per step when decoding */

static const kvq_param nu_params[] = {
    {"bits", 2, 8, 4, 1, NULL, "code width (levels 2^(b-1)-1 each side)"},
    {"group", 16, 4096, 32, 1, NULL, "values per M along a row"},
    {"a", 0, 1, 0, 0, NULL, "exponent; 0 = search it (data-free)"},
    {"driven", 0, 1, 1, 1, NULL, "1: refine codes and exponent on calibration data when given"},
};

typedef struct {
    unsigned bits;
    int64_t  group;
    double   a_fixed;
    int      driven;
    float   *H;              /* calibration Gram matrix [hn][hn]           */
    int64_t  hn;
} nu_state;

static int32_t nu_qm(unsigned bits) { return (1 << (bits - 1)) - 1; }

void kvq_nupes_lut(unsigned bits, double a, float *lvl)
{
    int32_t qm = nu_qm(bits);
    for (int32_t k = 0; k <= qm; k++) lvl[k] = (float)pow((double)k / qm, 1.0 / a);
}

void kvq_nupes_lut_fixed(unsigned bits, double a, int F, int32_t *lut)
{
    int32_t qm = nu_qm(bits);
    for (int32_t k = 0; k <= qm; k++) lut[k] = (int32_t)llround(ldexp(pow((double)k, 1.0 / a), F));
}

/* |q| for r = min(|w|/M, 1): the one formula both paths below use. */
static int32_t code_of_ratio(int32_t qm, double a, double r)
{
    int32_t q = (int32_t)nearbyint(qm * pow(r, a));
    return q > qm ? qm : q;
}

int32_t kvq_nupes_code(unsigned bits, double a, float w, float M)
{
    if (!(M > 0.0f) || w == 0.0f) return 0;
    double r = fabs((double)w) / (double)M;
    int32_t q = code_of_ratio(nu_qm(bits), a, r > 1.0 ? 1.0 : r);
    return w < 0 ? -q : q;
}

/* ---- fast codes for a fixed exponent ------------------------------------------------
 * |q|(r) is a step function of r, so it is a count of thresholds t_k (the
 * least double r with |q|(r) >= k, found by bisection on the bits of r):
 * no pow per value.  pow is not guaranteed monotone to the last ulp, so a
 * band of relative width NU_BAND around each t_k is left to the formula
 * itself: r inside a band (counts against the band's two edges differ) is
 * coded by code_of_ratio, so the result equals kvq_nupes_code exactly.
 *
 * The f32 path compares a = |w|·fl(1/M) (within 2^-23 of r = |w|/M,
 * relatively, while a is normal) with the per-tensor f32 band edges
 * flo_k = fl(t_k(1 − 2^-19)), fhi_k = fl(t_k(1 + 2^-19)): a < flo_k puts r
 * below t_k(1 − NU_BAND) and a >= fhi_k above t_k(1 + NU_BAND), so an
 * unambiguous f32 count is the double path's count, and an ambiguous one
 * goes to the formula.  It needs flo_1 >= NU_F_MIN (a below that is code 0
 * whatever its rounding).  Up to 4 bits the count is 2·7 compares; wider
 * codes read it from a table of buckets: a's exponent and top
 * NU_TAB_MBITS mantissa bits pick a bucket of relative width <= 2^-8, and
 * since t_{k+1}/t_k >= (Qm + 1/2)/(Qm − 1/2) >= 1 + 2^-7 at most one band
 * meets a bucket (nu_thr_init checks it): code = base + (a >= lo),
 * ambiguous when a >= lo differs from a >= hi. */
#define NU_BAND      0x1p-20 /* >> f32 rounding of the scaled thresholds below */
#define NU_FBAND     0x1p-19 /* f32 band: NU_BAND + a's rounding, with margin  */
#define NU_F_MIN     0x1p-100
#define NU_TAB_MBITS 8
#define NU_TAB_SHIFT KVQ_NUPES_TAB_SHIFT  /* 23 − NU_TAB_MBITS */
#define NU_TAB_MAX   (48 << NU_TAB_MBITS) /* 48 binades below 1 */
#define NU_ONE_BITS  KVQ_NUPES_ONE_BITS
/* The table's bands are [flo_k, fl(flo_k·(1 + 2^-17))), wider than
 * [flo_k, fhi_k) (flo_k·(1 + 2^-17) rounded exceeds t_k(1 + 2^-19)): one
 * float per bucket, the upper edge recomputed by the same multiply. */
#define NU_HI_MUL    KVQ_NUPES_HI_MUL

typedef kvq_nupes_bucket nu_bucket;

typedef struct {
    int32_t qm;
    unsigned steps;                          /* bisection steps: bits − 1     */
    double  a;
    double  lo[KVQ_NUPES_MAX_LEVELS];        /* t_k(1 − band), k = 1..qm; +inf */
    double  hi[KVQ_NUPES_MAX_LEVELS];        /* t_k(1 + band), beyond qm      */
    int     fast;                            /* 1: the f32 bands are usable   */
    float   flo[KVQ_NUPES_MAX_LEVELS + 1];   /* f32 bands (+inf beyond qm)    */
    float   fhi[KVQ_NUPES_MAX_LEVELS + 1];
    nu_bucket *tab;                          /* qm > 7: buckets, or NULL      */
    int32_t tab_first;                       /* bucket 0: bits(2^−E) >> shift */
    int32_t tab_n;
} nu_thr;

static double threshold(int32_t qm, double a, int32_t k)
{
    uint64_t lo = 0, hi = 0x3FF0000000000000ull; /* bits of 0.0 and 1.0: |q|(1) = qm >= k */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        double r;
        memcpy(&r, &mid, 8);
        if (code_of_ratio(qm, a, r) >= k) hi = mid;
        else lo = mid + 1;
    }
    double t;
    memcpy(&t, &lo, 8);
    return t;
}

/* The bucket table of the f32 bands; NULL when a's range is too wide or
 * (never for Qm <= 127) two bands would meet one bucket. */
static nu_bucket *nu_table(nu_thr *t)
{
    uint32_t first = (kvq_f32_bits(t->flo[1]) & KVQ_F32_INF_BITS) >> NU_TAB_SHIFT; /* 2^−E <= flo_1 */
    int32_t n = (int32_t)((NU_ONE_BITS >> NU_TAB_SHIFT) - first) + 1;
    if (n > NU_TAB_MAX) return NULL;
    nu_bucket *tab = malloc((size_t)n * sizeof *tab);
    if (!tab) return NULL;
    int32_t k = 1;
    for (int32_t i = 0; i < n; i++) {
        float b0 = kvq_f32_of_bits((first + (uint32_t)i) << NU_TAB_SHIFT);
        float b1 = kvq_f32_of_bits((first + (uint32_t)i + 1) << NU_TAB_SHIFT);
        while (k <= t->qm && t->flo[k] * NU_HI_MUL <= b0) k++;
        tab[i].base = k - 1;
        int meets = k <= t->qm && t->flo[k] < b1;
        tab[i].lo = meets ? t->flo[k] : INFINITY;
        if (meets && k < t->qm && t->flo[k + 1] < b1) {
            free(tab);
            return NULL;
        }
    }
    t->tab_first = (int32_t)first;
    t->tab_n = n;
    return tab;
}

static void nu_thr_init(nu_thr *t, unsigned bits, double a)
{
    t->qm = nu_qm(bits);
    t->steps = bits - 1;
    t->a = a;
    t->lo[0] = t->hi[0] = -INFINITY;
    t->flo[0] = t->fhi[0] = -INFINITY;
    for (int32_t k = 1; k <= KVQ_NUPES_MAX_LEVELS; k++) {
        double tk = k <= t->qm ? threshold(t->qm, a, k) : INFINITY;
        if (k < KVQ_NUPES_MAX_LEVELS) {
            t->lo[k] = tk * (1.0 - NU_BAND);
            t->hi[k] = tk * (1.0 + NU_BAND);
        }
        t->flo[k] = (float)(tk * (1.0 - NU_FBAND));
        t->fhi[k] = (float)(tk * (1.0 + NU_FBAND));
    }
    t->fast = t->flo[1] >= NU_F_MIN;
    t->tab = t->fast && t->qm > 7 ? nu_table(t) : NULL;
}

static void nu_thr_free(nu_thr *t)
{
    free(t->tab);
    t->tab = NULL;
}

/* #{k : r >= e[k]} for the 2^(bits−1) − 1 thresholds (branch-free bisection). */
static inline int32_t count_ge(const double *e, unsigned steps, double r)
{
    int32_t pos = 0;
    for (int32_t step = 1 << (steps - 1); step; step >>= 1) pos += e[pos + step] <= r ? step : 0;
    return pos;
}

/* The formula for the values a fast path left ambiguous. */
static void nu_fix_ambiguous(const nu_thr *t, const float *x, int64_t k, float M, const uint8_t *amb, int32_t *q)
{
    for (int64_t j = 0; j < k; j++)
        if (amb[j]) {
            double r = fabs((double)x[j]) / (double)M;
            int32_t c = code_of_ratio(t->qm, t->a, r > 1.0 ? 1.0 : r);
            q[j] = x[j] < 0.0f ? -c : c;
        }
}

/* Up to 4 bits: 14 f32 compares of a = |w|·inv against band edges (the
 * f32 bands with inv = 1/M, or the double bands scaled by M with inv = 1)
 * in kvq_nupes_codes4 (nupes.h; the kern_fp.h slot); values whose two
 * counts differ go to the formula. */
#define NU_RUN4  KVQ_NUPES_RUN
#define NU_CHUNK 256

/* 0: done; 1: thresholds too small for f32 (the caller takes the double path). */
static int nu_codes4_span(const nu_thr *t, const float *x, int64_t len, float M, int32_t *q)
{
    float slo[8], shi[8], inv = 1.0f;
    const float *lo = t->flo, *hi = t->fhi;
    if (t->fast) {
        inv = 1.0f / M;
    } else { /* the double bands scaled by M (relative error < 2^-23, far inside the band) */
        slo[0] = shi[0] = -INFINITY;
        for (int k = 1; k < 8; k++) {
            slo[k] = (float)(t->lo[k] * M);
            shi[k] = (float)(t->hi[k] * M);
        }
        if (!(slo[1] >= FLT_MIN)) return 1;
        lo = slo, hi = shi;
    }
    uint8_t amb[NU_CHUNK];
    const kvq_fp_kernels *kt = kvq_fp_kernels_get();
    for (int64_t c0 = 0; c0 < len; c0 += NU_CHUNK) {
        int64_t k = len - c0 < NU_CHUNK ? len - c0 : NU_CHUNK;
        if (kt->nu_codes4(lo, hi, x + c0, k, inv, q + c0, amb)) nu_fix_ambiguous(t, x + c0, k, M, amb, q + c0);
    }
    return 0;
}

/* Wider codes through the bucket table (t->tab set; the kern_fp.h slot). */
static void nu_codes_tab_span(const nu_thr *t, const float *x, int64_t len, float M, int32_t *q)
{
    const kvq_fp_kernels *kt = kvq_fp_kernels_get();
    const float inv = 1.0f / M;
    uint8_t amb[NU_CHUNK];
    for (int64_t c0 = 0; c0 < len; c0 += NU_CHUNK) {
        int64_t k = len - c0 < NU_CHUNK ? len - c0 : NU_CHUNK;
        if (kt->nu_codes_tab(t->tab, t->tab_first, x + c0, k, inv, q + c0, amb))
            nu_fix_ambiguous(t, x + c0, k, M, amb, q + c0);
    }
}

/* Codes of x[len] against one stored maximum M (kvq_nupes_code's values). */
static void nu_codes_span(const nu_thr *t, const float *x, int64_t len, float M, int32_t *q)
{
    if (!(M > 0.0f)) {
        for (int64_t j = 0; j < len; j++) q[j] = 0;
        return;
    }
    if (t->qm <= 7 && !nu_codes4_span(t, x, len, M, q)) return;
    if (t->tab) {
        nu_codes_tab_span(t, x, len, M, q);
        return;
    }
    for (int64_t j = 0; j < len; j++) {
        double r = fabs((double)x[j]) / (double)M;
        r = r > 1.0 ? 1.0 : r;
        int32_t c = count_ge(t->lo, t->steps, r);
        if (c != count_ge(t->hi, t->steps, r)) c = code_of_ratio(t->qm, t->a, r);
        q[j] = x[j] < 0.0f ? -c : c;
    }
}

/* ---- layout --------------------------------------------------------------------- */
typedef struct {
    int64_t rows, cols, gpr;
    size_t  row_bytes, total;
} nu_layout;

static nu_layout nu_layout_of(const nu_state *s, const kvq_shape *sh)
{
    nu_layout L;
    L.rows = kvq_shape_rows(sh);
    L.cols = kvq_shape_cols(sh);
    L.gpr = (L.cols + s->group - 1) / s->group;
    L.row_bytes = (size_t)L.gpr * 2 + kvq_bits_size((size_t)L.cols, s->bits);
    L.total = 4 + (size_t)L.rows * L.row_bytes;
    return L;
}

static kvq_err nu_init(void *st, const kvq_params *p)
{
    nu_state *s = st;
    s->bits = (unsigned)p->v[0];
    s->group = (int64_t)p->v[1];
    s->a_fixed = p->v[2];
    s->driven = (int)p->v[3];
    KVQ_FAIL_IF(s->a_fixed != 0.0 && s->a_fixed < 0.05, KVQ_ERR_PARAM_RANGE, "nupes: a=%g is too small (>= 0.05)",
                s->a_fixed);
    return KVQ_OK;
}

static void nu_fini(void *st)
{
    nu_state *s = st;
    free(s->H);
    s->H = NULL;
}

static kvq_err nu_calibrate(void *st, const kvq_tensor *x)
{
    nu_state *s = st;
    int64_t n = kvq_shape_cols(&x->shape);
    KVQ_FAIL_IF(s->H && n != s->hn, KVQ_ERR_SHAPE, "nupes: calibration width %lld after %lld", (long long)n,
                (long long)s->hn);
    if (!s->H) {
        KVQ_FAIL_IF(n > (1 << 14), KVQ_ERR_SHAPE, "nupes: calibration width %lld too large", (long long)n);
        s->H = calloc((size_t)(n * n) + 1, sizeof *s->H);
        KVQ_FAIL_IF(!s->H, KVQ_ERR_NOMEM, "nupes: out of memory for the Gram matrix");
        s->hn = n;
    }
    kvq_gram_accum(s->H, x->data, kvq_shape_rows(&x->shape), n);
    return KVQ_OK;
}

static size_t nu_bound(const void *st, const kvq_shape *sh) { return nu_layout_of(st, sh).total; }

/* ---- quantising with a given exponent ------------------------------------------------- */
typedef struct {
    const nu_state *s;
    const float *x;
    nu_layout L;
    float *M;                /* [rows][gpr] stored (f16-rounded) maxima      */
    int32_t *q;              /* [rows][cols] codes                          */
    float *y;                /* [cols] scratch                               */
    uint32_t *mb;            /* [gpr] one row's maxima (kvq_absmax_bits)    */
} nu_work;

static void row_codes(const nu_work *w, const nu_thr *t, int64_t r, int32_t *q)
{
    for (int64_t g = 0; g < w->L.gpr; g++) {
        int64_t c0 = g * w->s->group, len = w->L.cols - c0 < w->s->group ? w->L.cols - c0 : w->s->group;
        nu_codes_span(t, w->x + r * w->L.cols + c0, len, w->M[r * w->L.gpr + g], q + c0);
    }
}

static void row_values(const nu_work *w, int64_t r, const float *lvl, float *y)
{
    for (int64_t c = 0; c < w->L.cols; c++) {
        int32_t q = w->q[r * w->L.cols + c];
        float v = w->M[r * w->L.gpr + c / w->s->group] * lvl[q < 0 ? -q : q];
        y[c] = q < 0 ? -v : v;
    }
}

/* Σ‖W − Ŵ‖² (codes requantised for a when requant, else kept). */
static double weight_err(nu_work *w, double a, int requant)
{
    float lvl[KVQ_NUPES_MAX_LEVELS];
    kvq_nupes_lut(w->s->bits, a, lvl);
    nu_thr t;
    if (requant) nu_thr_init(&t, w->s->bits, a);
    double e = 0.0;
    for (int64_t r = 0; r < w->L.rows; r++) {
        if (requant) row_codes(w, &t, r, w->q + r * w->L.cols);
        row_values(w, r, lvl, w->y);
        for (int64_t c = 0; c < w->L.cols; c++) {
            double d = (double)w->x[r * w->L.cols + c] - w->y[c];
            e += d * d;
        }
    }
    if (requant) nu_thr_free(&t);
    return e;
}

/* Σ_rows dᵀHd with the codes held fixed. */
static double output_err(nu_work *w, double a)
{
    float lvl[KVQ_NUPES_MAX_LEVELS];
    kvq_nupes_lut(w->s->bits, a, lvl);
    double e = 0.0;
    for (int64_t r = 0; r < w->L.rows; r++) {
        row_values(w, r, lvl, w->y);
        for (int64_t c = 0; c < w->L.cols; c++) w->y[c] = w->x[r * w->L.cols + c] - w->y[c];
        e += kvq_gram_quad(w->s->H, w->y, w->L.cols);
    }
    return e;
}

typedef double (*nu_objective)(nu_work *w, double a, int requant);

static double out_obj(nu_work *w, double a, int requant)
{
    (void)requant;
    return output_err(w, a);
}

/* Golden-section minimum of f on [lo, hi] to tolerance tol. */
static double golden(nu_work *w, nu_objective f, int requant, double lo, double hi, double tol)
{
    double x1 = hi - NU_GOLD * (hi - lo), x2 = lo + NU_GOLD * (hi - lo);
    double f1 = f(w, x1, requant), f2 = f(w, x2, requant);
    while (hi - lo > tol) {
        if (f1 <= f2) {
            hi = x2, x2 = x1, f2 = f1;
            x1 = hi - NU_GOLD * (hi - lo);
            f1 = f(w, x1, requant);
        } else {
            lo = x1, x1 = x2, f1 = f2;
            x2 = lo + NU_GOLD * (hi - lo);
            f2 = f(w, x2, requant);
        }
    }
    return 0.5 * (lo + hi);
}

/* Data-free exponent: grid bracket, then golden section (§2.3). */
static double search_a(nu_work *w)
{
    int best = 0;
    double be = INFINITY, step = (NU_A_HI - NU_A_LO) / (NU_GRID - 1);
    for (int i = 0; i < NU_GRID; i++) {
        double e = weight_err(w, NU_A_LO + i * step, 1);
        if (e < be) be = e, best = i;
    }
    double lo = NU_A_LO + (best > 0 ? best - 1 : 0) * step, hi = NU_A_LO + (best < NU_GRID - 1 ? best + 1 : best) * step;
    return golden(w, weight_err, 1, lo, hi, NU_TOL);
}

/* ---- data-driven refinement (§2.3) ------------------------------------------------------ */
/* One row's codes over the whole grid; g = rH maintained exactly. */
static void refine_row(nu_work *w, int64_t r, const float *lvl, const float *H, double *g)
{
    int64_t n = w->L.cols;
    int32_t qm = nu_qm(w->s->bits), *q = w->q + r * n;
    float *res = w->y;
    row_values(w, r, lvl, res);
    for (int64_t c = 0; c < n; c++) res[c] = w->x[r * n + c] - res[c];
    for (int64_t j = 0; j < n; j++) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += (double)res[i] * H[i * n + j];
        g[j] = s;
    }
    for (int sweep = 0; sweep < NU_SWEEPS; sweep++) {
        int changed = 0;
        for (int64_t j = 0; j < n; j++) {
            float M = w->M[r * w->L.gpr + j / w->s->group];
            double cur = (q[j] < 0 ? -1.0 : 1.0) * M * lvl[q[j] < 0 ? -q[j] : q[j]], hjj = H[j * n + j];
            double best = 0.0;
            int32_t bq = q[j];
            for (int32_t k = -qm; k <= qm; k++) {
                double d = (k < 0 ? -1.0 : 1.0) * M * lvl[k < 0 ? -k : k] - cur;
                double dE = -2.0 * d * g[j] + d * d * hjj;
                if (dE < best - 1e-12 * fabs(best)) best = dE, bq = k;
            }
            if (bq == q[j]) continue;
            double d = (bq < 0 ? -1.0 : 1.0) * M * lvl[bq < 0 ? -bq : bq] - cur;
            q[j] = bq;
            res[j] -= (float)d;
            for (int64_t i = 0; i < n; i++) g[i] -= d * H[j * n + i];
            changed = 1;
        }
        if (!changed) break;
    }
}

/* H + λI in place (λ = NU_LAMBDA · mean diag). */
static void damp(float *H, int64_t n)
{
    double tr = 0.0;
    for (int64_t j = 0; j < n; j++) tr += H[j * n + j];
    float lam = (float)(NU_LAMBDA * tr / (double)(n ? n : 1));
    if (!(lam > 0.0f)) lam = 1e-8f;
    for (int64_t j = 0; j < n; j++) H[j * n + j] += lam;
}

static kvq_err drive(nu_work *w, double *a)
{
    int64_t n = w->L.cols;
    float *H = malloc((size_t)(n * n) * sizeof *H);
    double *g = malloc((size_t)n * sizeof *g);
    if (!H || !g) {
        free(H);
        free(g);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "nupes: out of memory");
    }
    memcpy(H, w->s->H, (size_t)(n * n) * sizeof *H);
    damp(H, n);
    const float *keep = w->s->H;
    ((nu_state *)w->s)->H = H; /* output_err reads the damped matrix */
    double e = output_err(w, *a);
    for (int round = 0; round < NU_ROUNDS; round++) {
        float lvl[KVQ_NUPES_MAX_LEVELS];
        kvq_nupes_lut(w->s->bits, *a, lvl);
        for (int64_t r = 0; r < w->L.rows; r++) refine_row(w, r, lvl, H, g);
        double na = golden(w, out_obj, 0, NU_A_LO, NU_A_HI, NU_DRIVEN_TOL);
        double en = output_err(w, na), ea = output_err(w, *a);
        if (en < ea) *a = na, ea = en;
        if (!(ea < e)) break;
        e = ea;
    }
    ((nu_state *)w->s)->H = (float *)keep;
    free(H);
    free(g);
    return KVQ_OK;
}

/* ---- encode / decode -------------------------------------------------------------------- */
/* The stored maxima of rows [r0, r1); NaN/Inf are found here
 * (KVQ_FLAG_CHECKS_FINITE: the core does not scan). */
static kvq_err nu_prepare(nu_work *w, int64_t r0, int64_t r1)
{
    const kvq_fp_kernels *kt = kvq_fp_kernels_get();
    for (int64_t r = r0; r < r1; r++) {
        kt->absmax_groups(w->x + r * w->L.cols, w->L.cols, w->s->group, w->mb);
        for (int64_t g = 0; g < w->L.gpr; g++) {
            int64_t c0 = g * w->s->group, len = w->L.cols - c0 < w->s->group ? w->L.cols - c0 : w->s->group;
            if (w->mb[g] >= KVQ_F32_INF_BITS)
                return kvq_nonfinite_check(&kvq_codec_nupes, w->x + r * w->L.cols + c0, (size_t)len,
                                           (size_t)(r * w->L.cols + c0));
            float m = kvq_f32_of_bits(w->mb[g]);
            uint16_t h = kvq_f32_to_f16(m);
            KVQ_FAIL_IF((h & 0x7C00u) == 0x7C00u, KVQ_ERR_PARAM_RANGE,
                        "nupes: row %lld: max %g exceeds the f16 range of the stored maxima", (long long)r, (double)m);
            w->M[r * w->L.gpr + g] = kvq_f16_to_f32(h);
        }
    }
    return KVQ_OK;
}

/* Stream codes q + qm of n values, 4-bit ones packed as adjacent nibbles
 * (bit for bit kvq_bits_pack's LSB-first stream), in constant-length runs
 * with restrict pointers so gcc -O2 vectorises them. */
static inline void nu_run_codes(const int32_t *restrict q, int64_t n, int32_t qm, uint8_t *restrict codes)
{
    for (int64_t j = 0; j < n; j++) codes[j] = (uint8_t)(q[j] + qm);
}

static void nu_pack_row(const int32_t *q, int64_t cols, unsigned bits, int32_t qm, uint8_t *codes, uint8_t *dst)
{
    int64_t c = 0;
    if (bits == 8) { /* the stream is the codes, one byte each */
        for (; c + NU_RUN4 <= cols; c += NU_RUN4) nu_run_codes(q + c, NU_RUN4, qm, dst + c);
        nu_run_codes(q + c, cols - c, qm, dst + c);
        return;
    }
    for (; c + NU_RUN4 <= cols; c += NU_RUN4) {
        nu_run_codes(q + c, NU_RUN4, qm, codes + c);
        if (bits == 4) kvq_nibbles_pack(codes + c, NU_RUN4, KVQ_NIB_ADJACENT, dst + c / 2);
    }
    nu_run_codes(q + c, cols - c, qm, codes + c);
    if (bits != 4) {
        kvq_bits_pack(codes, (size_t)cols, bits, dst);
        return;
    }
    size_t even = (size_t)(cols - c) & ~(size_t)1;
    kvq_nibbles_pack(codes + c, even, KVQ_NIB_ADJACENT, dst + c / 2);
    if ((cols - c) % 2) dst[(c + (int64_t)even) / 2] = codes[cols - 1] & 0x0F;
}

/* Writes the payload.  t NULL: the codes are w->q (rows × cols, from the
 * search or the data-driven refinement); else each row's codes are made
 * here from t into w->q, which then holds one row. */
static kvq_err nu_write(nu_work *w, const nu_thr *t, double a, uint8_t *out)
{
    float af = (float)a;
    memcpy(out, &af, 4);
    uint8_t *codes = (uint8_t *)w->y; /* cols bytes fit in the float scratch */
    int32_t qm = nu_qm(w->s->bits);
    for (int64_t r = 0; r < w->L.rows; r++) {
        uint8_t *row = out + 4 + (size_t)r * w->L.row_bytes;
        const int32_t *q = t ? w->q : w->q + r * w->L.cols;
        if (t) { /* maxima made here too: the row is still in cache for its codes */
            KVQ_TRY(nu_prepare(w, r, r + 1));
            row_codes(w, t, r, w->q);
        }
        for (int64_t g = 0; g < w->L.gpr; g++) kvq_wr16(row + 2 * g, kvq_f32_to_f16(w->M[r * w->L.gpr + g]));
        nu_pack_row(q, w->L.cols, w->s->bits, qm, codes, row + 2 * (size_t)w->L.gpr);
    }
    return KVQ_OK;
}

static kvq_err nu_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    const nu_state *s = st;
    nu_work w = {s, src->data, nu_layout_of(s, &src->shape), NULL, NULL, NULL, NULL};
    KVQ_FAIL_IF(cap < w.L.total, KVQ_ERR_DST_TOO_SMALL, "nupes: need %zu bytes, buffer has %zu", w.L.total, cap);
    size_t cnt = (size_t)(w.L.rows * w.L.cols);
    int drive_it = s->driven && s->H && s->hn == w.L.cols && cnt;
    int direct = s->a_fixed > 0.0 && !drive_it; /* codes made row by row while writing */
    w.M = malloc((size_t)(w.L.rows * w.L.gpr + 1) * sizeof *w.M);
    w.q = malloc(((direct ? (size_t)w.L.cols : cnt) + 1) * sizeof *w.q);
    w.y = malloc((size_t)(w.L.cols + 1) * sizeof *w.y);
    w.mb = malloc((size_t)(w.L.gpr + 1) * sizeof *w.mb);
    kvq_err e = !w.M || !w.q || !w.y || !w.mb ? KVQ_ERROR(KVQ_ERR_NOMEM, "nupes: out of memory")
               : direct ? KVQ_OK : nu_prepare(&w, 0, w.L.rows);
    double a = s->a_fixed > 0.0 ? s->a_fixed : 1.0;
    if (!e && s->a_fixed == 0.0 && cnt) a = search_a(&w);
    if (!e && !direct) weight_err(&w, a, 1); /* codes for a */
    if (!e && drive_it) e = drive(&w, &a);
    if (!e && direct) {
        nu_thr t;
        nu_thr_init(&t, s->bits, a);
        e = nu_write(&w, &t, a, dst);
        nu_thr_free(&t);
    } else if (!e) {
        e = nu_write(&w, NULL, a, dst);
    }
    free(w.M);
    free(w.q);
    free(w.y);
    free(w.mb);
    if (!e) *n = w.L.total;
    return e;
}

static kvq_err nu_decode_rows(void *st, const void *src, size_t n, const kvq_shape *sh, int64_t r0, int64_t r1,
                              float *out)
{
    const nu_state *s = st;
    nu_layout L = nu_layout_of(s, sh);
    KVQ_FAIL_IF(n != L.total, KVQ_ERR_CORRUPT, "nupes: payload is %zu bytes, shape and parameters need %zu", n,
                L.total);
    float a = kvq_rdf32(src), lvl[KVQ_NUPES_MAX_LEVELS], sv[1 << KVQ_CODE_BITS_MAX];
    KVQ_FAIL_IF(!(a >= 0.05f && a <= 1.0f), KVQ_ERR_CORRUPT, "nupes: stored exponent %g outside [0.05, 1]", (double)a);
    kvq_nupes_lut(s->bits, a, lvl);
    int32_t qm = nu_qm(s->bits);
    for (int32_t i = 0; i <= 2 * qm; i++) sv[i] = i < qm ? -lvl[qm - i] : lvl[i - qm]; /* M·(−l) = −(M·l) */
    for (int64_t r = r0; r < r1; r++, out += L.cols) {
        const uint8_t *row = (const uint8_t *)src + 4 + (size_t)r * L.row_bytes;
        for (int64_t c0 = 0; c0 < L.cols; c0 += NU_RUN) { /* NU_RUN % 8 == 0: runs start on a byte */
            uint8_t codes[NU_RUN], top = 0;
            int64_t k = L.cols - c0 < NU_RUN ? L.cols - c0 : NU_RUN;
            kvq_bits_unpack(row + 2 * (size_t)L.gpr + (size_t)c0 * s->bits / 8, (size_t)k, s->bits, codes);
            for (int64_t j = 0; j < k; j++) top = codes[j] > top ? codes[j] : top;
            KVQ_FAIL_IF(top > 2 * qm, KVQ_ERR_CORRUPT, "nupes: row %lld: bad code %d", (long long)r, (int)top - qm);
            for (int64_t g0 = c0; g0 < c0 + k;) { /* the run's pieces of each group */
                int64_t g = g0 / s->group, e = (g + 1) * s->group < c0 + k ? (g + 1) * s->group : c0 + k;
                float M = kvq_f16_to_f32(kvq_rd16(row + 2 * g));
                KVQ_FAIL_IF(!isfinite(M), KVQ_ERR_CORRUPT, "nupes: row %lld: bad maximum", (long long)r);
                for (int64_t j = g0; j < e; j++) out[j] = M * sv[codes[j - c0]];
                g0 = e;
            }
        }
    }
    return KVQ_OK;
}

/* ---- row kernel (kernels/rowkern.h): the integer/LUT path ------------------------
 * lut[q + Qm] = sign(q)·(|q|/Qm)^(1/a), the 2^bits-entry level table; a
 * run of 32 codes is M·Σ lut[code]·x.  4-bit codes are adjacent nibbles
 * and 8-bit ones bytes (kern_fp.h's runs_dot; ip[0] the layout, ip[1]
 * runs per maximum, ip[2] the maxima's bytes); other widths, and groups
 * that are not whole runs of 32, are UNSUPPORTED.  Binding checks the
 * exponent, every maximum (finite) and every code (<= 2·Qm). */
static float nu_rk_dot(const kvq_rowkern *k, int64_t r, const float *x)
{
    const uint8_t *row = k->p[0] + (size_t)r * k->stride[0];
    return ((kvq_fp_runs_dot_fn)k->aux)(row + k->ip[2], k->cols, k->ip[0], k->lut, row, k->ip[1], x);
}

/* Every maximum finite and every code a level (checked once, at bind). */
static kvq_err nu_rk_check(const nu_state *s, const uint8_t *rows, const nu_layout *L)
{
    size_t cb = kvq_bits_size((size_t)L->cols, s->bits);
    unsigned top = 2u * (unsigned)nu_qm(s->bits);
    for (int64_t r = 0; r < L->rows; r++) {
        const uint8_t *row = rows + (size_t)r * L->row_bytes, *c = row + 2 * (size_t)L->gpr;
        for (int64_t g = 0; g < L->gpr; g++)
            KVQ_FAIL_IF(!isfinite(kvq_f16_to_f32(kvq_rd16(row + 2 * g))), KVQ_ERR_CORRUPT,
                        "nupes: row %lld: bad maximum", (long long)r);
        int bad = 0;
        for (size_t i = 0; i < cb; i++)
            bad |= s->bits == 8 ? c[i] > top : (c[i] & 0x0F) > top || (c[i] >> 4) > top;
        KVQ_FAIL_IF(bad, KVQ_ERR_CORRUPT, "nupes: row %lld: bad code", (long long)r);
    }
    return KVQ_OK;
}

kvq_err kvq_nupes_rowkern(const void *st, const void *payload, size_t n, const kvq_shape *sh, kvq_rowkern *k)
{
    const nu_state *s = st;
    KVQ_FAIL_IF((s->bits != 4 && s->bits != 8) || s->group % FP_RUN, KVQ_ERR_UNSUPPORTED,
                "nupes: no row kernel for bits=%u, group=%lld", s->bits, (long long)s->group);
    nu_layout L = nu_layout_of(s, sh);
    KVQ_FAIL_IF(n != L.total, KVQ_ERR_CORRUPT, "nupes: payload is %zu bytes, shape and parameters need %zu", n,
                L.total);
    float a = kvq_rdf32(payload), lvl[KVQ_NUPES_MAX_LEVELS];
    KVQ_FAIL_IF(!(a >= 0.05f && a <= 1.0f), KVQ_ERR_CORRUPT, "nupes: stored exponent %g outside [0.05, 1]", (double)a);
    KVQ_TRY(nu_rk_check(s, (const uint8_t *)payload + 4, &L));
    kvq_nupes_lut(s->bits, a, lvl);
    int32_t qm = nu_qm(s->bits);
    for (int32_t i = 0; i < (1 << s->bits); i++) {
        int32_t q = i - qm;
        k->lut[i] = q > qm ? 0.0f : q < 0 ? -lvl[-q] : lvl[q];
    }
    k->dot = nu_rk_dot;
    k->fast = 1;
    k->p[0] = (const uint8_t *)payload + 4;
    k->stride[0] = L.row_bytes;
    k->ip[0] = s->bits == 8 ? FP_DOT_BYTE : FP_DOT_ADJ;
    k->ip[1] = (int)(s->group / FP_RUN);
    k->ip[2] = (int)(2 * L.gpr);
    k->aux = (void (*)(void))kvq_fp_kernels_get()->runs_dot;
    return KVQ_OK;
}

/* Declared bound (defaults: 4 bits, group 32, a searched in [0.2, 1]): the
 * search minimises the error, so it is at most a = 1's, i.e. sym RTN with
 * f16 maxima: rtn.c's 0.3697; margin for the f16 maximum rounding. */
#define NU_REL_ERR 0.372

const kvq_codec kvq_codec_nupes = {
    .abi = KVQ_CODEC_ABI, .name = "nupes", .id = 34,
    .domain = KVQ_DOMAIN_WEIGHT, .flags = KVQ_FLAG_CHECKS_FINITE,
    .state_size = sizeof(nu_state), .params = nu_params, .n_params = sizeof nu_params / sizeof nu_params[0],
    .max_rel_err = NU_REL_ERR,
    .summary = "NUPES-style power-exponent levels M(k/Qm)^(1/a), exponent searched; data-driven codes with --calib",
    .init = nu_init, .calibrate = nu_calibrate, .bound = nu_bound, .encode = nu_encode, .decode = NULL,
    .fini = nu_fini, .decode_rows = nu_decode_rows,
};
