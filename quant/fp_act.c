/*
 * fp_act.c — codec `fpa` (id 31): LLM-FP4's static activation quantizer
 * with the pre-shifted exponent bias (quant-methods.md §1.3), calibrated on
 * the inputs the decoder's hooks capture (libkvq/calib.c).
 *
 * Calibration (every sample of one linear input, at most FPA_ROWS rows
 * kept for the search):
 *   b_j = b̃(max_t |X[t,j]|)                        per input channel
 *   ρ0  = min_j b_j                                 the widest channel
 *   k_j = clamp(round(b_j) − round(ρ0), 0, 2^e − 1) pershift=1 (else 0:
 *                                                   the FPQ baseline's one
 *                                                   bias per tensor)
 * then ρ is searched on the paper's grid γ_i·ρ0 (γ_i = 0.01 + i·1.19/100,
 * i < 100; §1.4) with k_j fixed.  [ours]: the score is the activation
 * error Σ (X − Q(X))² over the kept rows; the paper scores ρ by the layer
 * output, which needs the weights this codec does not see.  When the
 * weights are `fp` with rounds > 0, the evaluator instead sets format, ρ
 * and k_j from quant/fp_joint.c's layer-output search
 * (kvq_fpa_state_set).
 *
 * Encoding x_j: code of 2^k_j·x_j/s on the standard grid, s = 2^(bias − ρ);
 * decoding: ±2^−k_j·s·mag(code) = Q_(ρ+k_j)(x_j).  That is exactly the
 * number the re-parameterised GEMM uses when 2^−k_j is folded into weight
 * column j (§1.3 step 4; the pre-shift identity is bit-exact, see
 * tests/test_fp.c), so evaluating with this codec measures the folded
 * W4A4 model.
 *
 * Payload (little-endian, [ours]): u8 format index (as `fp`), u8 pershift,
 * f32 s, then (pershift=1) the cols shifts k_j as max(e, 2)-bit codes LSB
 * first; then every row's codes (fp's code layout).  The shift table is
 * repeated in every blob only so blobs stay self-describing; deployed, it
 * lives in the weights.
 */
#include "kvq_internal.h"
#include "quant/codecs.h"
#include "quant/fp_impl.h"
#include "quant/fp_joint.h"

#include <stdlib.h>

#define FPA_ROWS      256   /* calibration rows kept for the ρ search      */
#define FPA_GAMMA_N   100
#define FPA_GAMMA_LO  0.01
#define FPA_GAMMA_SPAN 1.19
#define FPA_MAX_COLS  (1 << 16)

static const kvq_param fpa_params[] = {
    {"fmt", 0, 7, 0, 0, fp_fmt_fixed_names, "element format (every exponent code finite)"},
    {"pershift", 0, 1, 1, 1, NULL, "1: per-channel pre-shifted exponent bias; 0: one bias per tensor"},
    {"tie", 0, 2, KVQ_TIE_EVEN, 0, fp_tie_names, "tie rule of the rounding"},
    {"nib", 0, 1, KVQ_NIB_SPLIT_HALF, 0, fp_nib_names, "4-bit nibble order"},
};

typedef struct {
    int       fmt, pershift;
    kvq_tie   tie;
    kvq_nib_layout nib;
    int64_t   n;          /* calibrated width (0: not calibrated)        */
    float    *chmax;      /* [n] max |X| per channel                     */
    float    *rows;       /* [FPA_ROWS][n] kept calibration rows         */
    int64_t   nrows;
    int       ready;      /* s and k computed from the current samples   */
    float     s;
    uint8_t  *k;          /* [n]                                         */
    float    *shift;      /* [n] 2^−k_j                                  */
    kvq_fp_lut lut;       /* the format's table (read-only after init)   */
} fpa_state;

static const kvq_fpfmt *fpa_fmt(const fpa_state *s) { return kvq_fp_format(fp_fmt_ids[s->fmt]); }

static unsigned k_bits(const kvq_fpfmt *f) { return f->e < 2 ? 2u : f->e; }

static kvq_err fpa_init(void *st, const kvq_params *p)
{
    fpa_state *s = st;
    s->fmt = (int)p->v[0];
    s->pershift = (int)p->v[1];
    s->tie = (kvq_tie)p->v[2];
    s->nib = (kvq_nib_layout)p->v[3];
    kvq_fp_lut_init(&s->lut, fpa_fmt(s), s->tie);
    return KVQ_OK;
}

static void fpa_fini(void *st)
{
    fpa_state *s = st;
    free(s->chmax);
    free(s->rows);
    free(s->k);
    free(s->shift);
}

static kvq_err fpa_calibrate(void *st, const kvq_tensor *x)
{
    fpa_state *s = st;
    int64_t n = kvq_shape_cols(&x->shape), t = kvq_shape_rows(&x->shape);
    KVQ_FAIL_IF(n < 1 || n > FPA_MAX_COLS, KVQ_ERR_SHAPE, "fpa: calibration width %lld outside 1..%d", (long long)n,
                FPA_MAX_COLS);
    KVQ_FAIL_IF(s->n && n != s->n, KVQ_ERR_SHAPE, "fpa: calibration width %lld after %lld", (long long)n,
                (long long)s->n);
    if (!s->n) {
        s->chmax = calloc((size_t)n, sizeof *s->chmax);
        s->rows = malloc((size_t)(n * FPA_ROWS) * sizeof *s->rows);
        s->k = calloc((size_t)n, 1);
        s->shift = malloc((size_t)n * sizeof *s->shift);
        KVQ_FAIL_IF(!s->chmax || !s->rows || !s->k || !s->shift, KVQ_ERR_NOMEM, "fpa: out of memory");
        s->n = n;
    }
    const float *xs = x->data;
    for (int64_t r = 0; r < t; r++) {
        for (int64_t j = 0; j < n; j++) {
            float a = fabsf(xs[r * n + j]);
            KVQ_FAIL_IF(!isfinite(a), KVQ_ERR_NONFINITE, "fpa: calibration row %lld holds NaN/Inf", (long long)r);
            s->chmax[j] = a > s->chmax[j] ? a : s->chmax[j];
        }
        if (s->nrows < FPA_ROWS) memcpy(s->rows + s->nrows++ * n, xs + r * n, (size_t)n * sizeof *xs);
    }
    s->ready = 0;
    return KVQ_OK;
}

/* Σ (X − Q(X))² over the kept rows at scale sc with the current shifts. */
static double act_err(const fpa_state *s, const kvq_fp_lut *l, float sc, float *tmp, float *q)
{
    double e = 0.0;
    for (int64_t r = 0; r < s->nrows; r++) {
        const float *x = s->rows + r * s->n;
        for (int64_t j = 0; j < s->n; j++) tmp[j] = x[j] / s->shift[j]; /* 2^k_j·x_j, exact */
        fp_quant_span(l, tmp, s->n, sc, NULL, q);
        for (int64_t j = 0; j < s->n; j++) {
            double d = (double)x[j] - (double)(q[j] * s->shift[j]);
            e += d * d;
        }
    }
    return e;
}

/* ρ0, k_j, then the ρ search; sets s->s. */
static kvq_err finalize(fpa_state *s)
{
    const kvq_fpfmt *f = fpa_fmt(s);
    double rho0 = INFINITY;
    for (int64_t j = 0; j < s->n; j++)
        if (s->chmax[j] > 0.0f) rho0 = fmin(rho0, kvq_fp_bias_for_max(f, s->chmax[j]));
    if (!isfinite(rho0)) rho0 = f->bias; /* all-zero calibration: the standard grid */
    int kmax = (1 << f->e) - 1;
    for (int64_t j = 0; j < s->n; j++) {
        long k = 0;
        if (s->pershift && s->chmax[j] > 0.0f)
            k = lround(kvq_fp_bias_for_max(f, s->chmax[j])) - lround(rho0);
        s->k[j] = (uint8_t)(k < 0 ? 0 : k > kmax ? kmax : k);
        s->shift[j] = ldexpf(1.0f, -(int)s->k[j]);
    }
    float *tmp = malloc((size_t)(2 * s->n) * sizeof *tmp);
    KVQ_FAIL_IF(!tmp, KVQ_ERR_NOMEM, "fpa: out of memory");
    double best = INFINITY;
    for (int i = 0; i < FPA_GAMMA_N; i++) {
        double rho = (FPA_GAMMA_LO + FPA_GAMMA_SPAN * i / FPA_GAMMA_N) * rho0;
        float sc = (float)exp2((double)f->bias - rho);
        if (!(sc >= FLT_MIN) || !(sc <= FLT_MAX / kvq_fp_maxval(f))) continue; /* 1/s, maxval·s finite */
        double e = act_err(s, &s->lut, sc, tmp, tmp + s->n);
        if (e < best) best = e, s->s = sc;
    }
    free(tmp);
    KVQ_FAIL_IF(!(best < INFINITY), KVQ_ERR_PARAM_RANGE, "fpa: no finite scale on the bias grid (ρ0 = %g)", rho0);
    s->ready = 1;
    return KVQ_OK;
}

static size_t k_bytes(const fpa_state *s, int64_t cols)
{
    return s->pershift ? kvq_bits_size((size_t)cols, k_bits(fpa_fmt(s))) : 0;
}

static size_t fpa_bound(const void *st, const kvq_shape *sh)
{
    const fpa_state *s = st;
    int64_t cols = kvq_shape_cols(sh);
    return 6 + k_bytes(s, cols) + (size_t)kvq_shape_rows(sh) * fp_codes_size(fpa_fmt(s), cols);
}

static kvq_err fpa_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    fpa_state *s = st;
    int64_t rows = kvq_shape_rows(&src->shape), cols = kvq_shape_cols(&src->shape);
    KVQ_FAIL_IF(!s->n, KVQ_ERR_ARG, "fpa: not calibrated (static activation scales need --calib)");
    KVQ_FAIL_IF(cols != s->n, KVQ_ERR_SHAPE, "fpa: rows of %lld values, calibrated on %lld", (long long)cols,
                (long long)s->n);
    size_t need = fpa_bound(st, &src->shape), cb = fp_codes_size(fpa_fmt(s), cols);
    KVQ_FAIL_IF(cap < need, KVQ_ERR_DST_TOO_SMALL, "fpa: need %zu bytes, buffer has %zu", need, cap);
    if (!s->ready) KVQ_TRY(finalize(s));
    const kvq_fpfmt *f = fpa_fmt(s);
    uint8_t *out = dst, *codes = malloc((size_t)cols + 1);
    float *tmp = malloc((size_t)cols * sizeof *tmp);
    if (!codes || !tmp) {
        free(codes), free(tmp);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "fpa: out of memory");
    }
    out[0] = (uint8_t)s->fmt;
    out[1] = (uint8_t)s->pershift;
    memcpy(out + 2, &s->s, 4);
    if (s->pershift) kvq_bits_pack(s->k, (size_t)cols, k_bits(f), out + 6);
    uint8_t *p = out + 6 + k_bytes(s, cols);
    const float *x = src->data;
    for (int64_t r = 0; r < rows; r++, p += cb) {
        for (int64_t j = 0; j < cols; j++) tmp[j] = x[r * cols + j] / s->shift[j];
        fp_quant_span(&s->lut, tmp, cols, s->s, codes, NULL);
        fp_pack_codes(f, s->nib, codes, cols, p);
    }
    free(codes), free(tmp);
    *n = need;
    return KVQ_OK;
}

/* Shifts 2^−k_j of columns [c, c + k) (c a multiple of FP_RUN, so the k
 * codes start on a byte), checked against the format's range. */
static kvq_err run_shifts(const fpa_state *s, const uint8_t *ktab, int64_t c, int64_t k, float *shift)
{
    const kvq_fpfmt *f = fpa_fmt(s);
    uint8_t kj[FP_RUN] = {0};
    if (s->pershift) kvq_bits_unpack(ktab + (size_t)c * k_bits(f) / 8, (size_t)k, k_bits(f), kj);
    for (int64_t j = 0; j < k; j++) {
        KVQ_FAIL_IF(kj[j] > (1 << f->e) - 1, KVQ_ERR_CORRUPT, "fpa: shift %d of channel %lld", kj[j],
                    (long long)(c + j));
        shift[j] = ldexpf(1.0f, -(int)kj[j]);
    }
    return KVQ_OK;
}

/* Rows [r0, r1), one run of FP_RUN columns at a time (no allocation). */
static kvq_err fpa_decode_rows(void *st, const void *src, size_t n, const kvq_shape *sh, int64_t r0, int64_t r1,
                               float *out)
{
    const fpa_state *s = st;
    const uint8_t *p = src;
    int64_t cols = kvq_shape_cols(sh);
    size_t need = fpa_bound(st, sh), cb = fp_codes_size(fpa_fmt(s), cols);
    KVQ_FAIL_IF(n != need || n < 6 || p[0] != s->fmt || p[1] != s->pershift, KVQ_ERR_CORRUPT,
                "fpa: payload is %zu bytes (header %u/%u), shape and parameters need %zu", n, n ? p[0] : 0,
                n > 1 ? p[1] : 0, need);
    float sc = kvq_rdf32(p + 2);
    KVQ_FAIL_IF(!(sc > 0.0f) || !isfinite(sc), KVQ_ERR_CORRUPT, "fpa: bad scale %g", (double)sc);
    const uint8_t *c0 = p + 6 + k_bytes(s, cols);
    for (int64_t c = 0; c < cols; c += FP_RUN) {
        float shift[FP_RUN];
        uint8_t codes[FP_RUN];
        int64_t k = cols - c < FP_RUN ? cols - c : FP_RUN;
        KVQ_TRY(run_shifts(s, p + 6, c, k, shift));
        for (int64_t r = r0; r < r1; r++) {
            fp_unpack_run(s->lut.f, s->nib, c0 + (size_t)r * cb, cols, c, codes);
            fp_dequant_span(&s->lut, codes, k, sc, shift, out + (r - r0) * cols + c);
        }
    }
    return KVQ_OK;
}

/* Rounding to the nearest grid point never errs by more than |x| (0 is on
 * the grid) and saturation keeps the sign with |x̂| < |x|: ‖x̂ − x‖ ≤ ‖x‖.
 * A static scale bounds nothing tighter (inputs beyond the calibration
 * range saturate). */
#define FPA_REL_ERR 1.0

const kvq_codec kvq_codec_fpa = {
    .abi = KVQ_CODEC_ABI, .name = "fpa", .id = 31,
    .domain = KVQ_DOMAIN_ACT, .flags = KVQ_FLAG_NEEDS_CALIB,
    .state_size = sizeof(fpa_state), .params = fpa_params,
    .n_params = sizeof fpa_params / sizeof fpa_params[0], .max_rel_err = FPA_REL_ERR,
    .summary = "LLM-FP4 static activations: calibrated bias per tensor, pre-shifted per channel (folded into weights)",
    .init = fpa_init, .calibrate = fpa_calibrate, .bound = fpa_bound, .encode = fpa_encode, .decode = NULL,
    .fini = fpa_fini, .decode_rows = fpa_decode_rows,
};

/* ---- hooks for fp_joint.c (fp_joint.h) ------------------------------------------- */
void kvq_fpa_state_opts(const void *st, int *fmt, int *pershift, kvq_tie *tie)
{
    const fpa_state *s = st;
    *fmt = s->fmt, *pershift = s->pershift, *tie = s->tie;
}

kvq_err kvq_fpa_state_set(void *st, int fi, float sc, const uint8_t *k, int64_t n)
{
    fpa_state *s = st;
    KVQ_FAIL_IF(!s->n || n != s->n, KVQ_ERR_ARG, "fpa: joint result for width %lld, calibrated on %lld",
                (long long)n, (long long)s->n);
    KVQ_FAIL_IF(fi < 0 || fi > 7 || !(sc >= FLT_MIN) || !isfinite(sc), KVQ_ERR_ARG, "fpa: joint format %d, scale %g",
                fi, (double)sc);
    const kvq_fpfmt *f = kvq_fp_format(fp_fmt_ids[fi]);
    for (int64_t j = 0; j < n; j++)
        KVQ_FAIL_IF(k[j] > (1 << f->e) - 1 || (k[j] && !s->pershift), KVQ_ERR_ARG, "fpa: joint shift %d of channel %lld",
                    k[j], (long long)j);
    s->fmt = fi;
    kvq_fp_lut_init(&s->lut, f, s->tie);
    for (int64_t j = 0; j < n; j++) {
        s->k[j] = k[j];
        s->shift[j] = ldexpf(1.0f, -(int)k[j]);
    }
    s->s = sc;
    s->ready = 1;
    return KVQ_OK;
}
