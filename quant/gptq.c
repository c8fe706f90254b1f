/*
 * gptq.c — codec `gptq` (id 71): b-bit symmetric weight quantization with
 * GPTQ's error feedback through the calibration Hessian (Frantar et al.,
 * arXiv 2210.17323; quant-methods.md §4.5 as Quamba2's apply_gptq uses
 * it: group 128, percdamp 0.01, symmetric 4-bit, scale max|w|·2/15, codes
 * 0..15 with offset 8).  Works for any linear weight [out][in] whose input
 * rows X [tokens][in] reach calibrate(): Mamba-2's in_proj / out_proj and
 * Llama's projections alike.
 *
 * Grid (one formula for every b, [code] for b = 4): per group of `group`
 * values along a row, s = max|w|·2/(2^b − 1) stored as f16 (RNE), q =
 * clamp(rne(w/s) + 2^(b−1), 0, 2^b − 1), ŵ = (q − 2^(b−1))·s.  group = 0:
 * one f32 scale for the whole tensor (Quamba2's W8 "per-tensor absmax").
 *
 * GPTQ: H = Σ x·xᵀ over the calibration rows; a column never active gets
 * H_ii = 1 and its weights zeroed; λ = damp·mean(diag H) is added to the
 * diagonal; U = the upper Cholesky factor of H⁻¹.  Columns are quantized
 * left to right; after column j each row's error e = (w_j − ŵ_j)/U_jj is
 * spread over the columns to its right, w_k −= e·U_jk.  A group's scale is
 * taken from the updated weights when its first column is reached (as
 * GPTQ's static_groups = False).  [ours]: the updates are applied column
 * by column (the weights here are at most a few hundred columns wide, so
 * the lazy 128-column batches of the paper would change only speed); if
 * the damped Hessian is not positive definite, λ is multiplied by 10
 * until it is (at most KVQ_GPTQ_DAMP_TRIES times).  opt=rtn, or no
 * calibration, rounds each value on the same grid (H = I).
 *
 * had=1: the input axis is rotated by the orthonormal Hadamard matrix Q
 * of quant/quamba2.h (in = 2^k, 12·2^k or 40·2^k): W' = W·Qᵀ is quantized
 * (with the Hessian of the rotated inputs Q·x) and decode returns Ŵ'·Q,
 * so Ŵ·x = Ŵ'·(Q·x) — the fused form of Quamba2's input-side Hadamard.
 *
 * Payload ([ours]): group = 0: f32 scale, then per row its codes; else per
 * row its f16 scales then its codes; a row's codes are `in` values of b
 * bits, LSB first, padded to a byte, so decode_rows reads any row range.
 */
#include "kvq_internal.h"
#include "quant/codecs.h"
#include "quant/quamba2.h"
#include "quant/quant_common.h"

#include <math.h>
#include <stdlib.h>

#define KVQ_GPTQ_DAMP_TRIES 8   /* ×10 damping retries before giving up      */
#define GPTQ_MAX_COLS  16384    /* widest Hessian accumulated (n² doubles)    */
#define F16_MAX        65504.0f /* largest finite f16: scales beyond it refused */

typedef enum { OPT_RTN = 0, OPT_GPTQ = 1 } gptq_opt;
static const char *const opt_names[] = {"rtn", "gptq", NULL};

static const kvq_param gptq_params[] = {
    {"bits", 2, 8, 4, 1, NULL, "code width in bits"},
    {"group", 0, 1024, 128, 1, NULL, "values per scale along a row; 0: one scale for the whole tensor"},
    {"opt", 0, 1, OPT_GPTQ, 0, opt_names, "gptq: Hessian error feedback (needs calibration); rtn: round only"},
    {"damp", 0, 1, 0.01, 0, NULL, "percdamp: damp·mean(diag H) added to H's diagonal"},
    {"had", 0, 1, 0, 1, NULL, "1: quantize W·Hᵀ (input-side Hadamard, in = 2^k, 12·2^k or 40·2^k) and decode back"},
};

typedef struct {
    unsigned bits;
    int64_t  group;
    gptq_opt opt;
    double   damp;
    int      had;
    double  *H;            /* (n, n) Σ x·xᵀ of calibration rows, or NULL */
    int64_t  n;
} gptq_state;

typedef struct {
    int64_t rows, cols, span, gpr; /* span: values per scale; gpr: scales per row */
    size_t  global, codes, row_bytes;
} gptq_layout;

static gptq_layout layout_of(const gptq_state *st, const kvq_shape *s)
{
    gptq_layout L;
    L.rows = kvq_shape_rows(s);
    L.cols = kvq_shape_cols(s);
    L.span = st->group ? st->group : (L.cols ? L.cols : 1);
    L.gpr = st->group ? (L.cols + L.span - 1) / L.span : 0;
    L.global = st->group ? 0 : sizeof(float);
    L.codes = kvq_bits_size((size_t)L.cols, st->bits);
    L.row_bytes = (size_t)L.gpr * 2 + L.codes;
    return L;
}

static kvq_err gptq_init(void *p, const kvq_params *prm)
{
    gptq_state *st = p;
    st->bits = (unsigned)prm->v[0];
    st->group = (int64_t)prm->v[1];
    st->opt = (gptq_opt)prm->v[2];
    st->damp = prm->v[3];
    st->had = (int)prm->v[4];
    return KVQ_OK;
}

static void gptq_fini(void *p)
{
    gptq_state *st = p;
    free(st->H);
    st->H = NULL;
}

static kvq_err gptq_calibrate(void *p, const kvq_tensor *x)
{
    gptq_state *st = p;
    if (st->opt != OPT_GPTQ) return KVQ_OK;
    int64_t rows = kvq_shape_rows(&x->shape), n = kvq_shape_cols(&x->shape);
    KVQ_FAIL_IF(n < 1 || n > GPTQ_MAX_COLS, KVQ_ERR_SHAPE, "gptq: calibration rows of %lld values", (long long)n);
    KVQ_FAIL_IF(st->H && n != st->n, KVQ_ERR_SHAPE, "gptq: calibration width %lld after %lld", (long long)n,
                (long long)st->n);
    KVQ_FAIL_IF(st->had && !kvq_had_base(n), KVQ_ERR_SHAPE,
                "gptq: had=1 needs a width of 2^k, 12·2^k or 40·2^k, not %lld", (long long)n);
    if (!st->H) {
        st->H = calloc((size_t)(n * n), sizeof *st->H);
        KVQ_FAIL_IF(!st->H, KVQ_ERR_NOMEM, "gptq: out of memory for a %lld² Hessian", (long long)n);
        st->n = n;
    }
    float *row = malloc((size_t)n * sizeof *row);
    KVQ_FAIL_IF(!row, KVQ_ERR_NOMEM, "gptq: out of memory");
    const float *src = x->data;
    for (int64_t r = 0; r < rows; r++) {
        memcpy(row, src + r * n, (size_t)n * sizeof *row);
        if (st->had) kvq_had_apply(row, n, 0);
        for (int64_t i = 0; i < n; i++) {
            double xi = row[i];
            double *hi = st->H + i * n;
            for (int64_t j = i; j < n; j++) hi[j] += xi * row[j];
        }
    }
    free(row);
    return KVQ_OK;
}

static size_t gptq_bound(const void *p, const kvq_shape *s)
{
    gptq_layout L = layout_of(p, s);
    return L.global + (size_t)L.rows * L.row_bytes;
}

/* ---- linear algebra on n×n doubles (row-major) ------------------------------ */
/* In place: A = L·Lᵀ, L lower (upper part left as is).  0 if not PD. */
static int cholesky(double *A, int64_t n)
{
    for (int64_t j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int64_t k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0)) return 0;
        d = sqrt(d);
        A[j * n + j] = d;
        for (int64_t i = j + 1; i < n; i++) {
            double v = A[i * n + j];
            for (int64_t k = 0; k < j; k++) v -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = v / d;
        }
    }
    return 1;
}

/* U (upper) with H⁻¹ = Uᵀ·U, from L (lower, H = L·Lᵀ): H⁻¹ = L⁻ᵀ·L⁻¹,
 * then U = Cholesky(H⁻¹)ᵀ.  inv is scratch (n×n); result in U. */
static int inverse_upper(double *L, double *inv, double *U, int64_t n)
{
    memset(inv, 0, (size_t)(n * n) * sizeof *inv);
    for (int64_t j = 0; j < n; j++) { /* columns of L⁻¹ by forward substitution */
        inv[j * n + j] = 1.0 / L[j * n + j];
        for (int64_t i = j + 1; i < n; i++) {
            double v = 0;
            for (int64_t k = j; k < i; k++) v -= L[i * n + k] * inv[k * n + j];
            inv[i * n + j] = v / L[i * n + i];
        }
    }
    for (int64_t i = 0; i < n; i++) /* H⁻¹ = L⁻ᵀ·L⁻¹ (symmetric) */
        for (int64_t j = 0; j <= i; j++) {
            double v = 0;
            for (int64_t k = i; k < n; k++) v += inv[k * n + i] * inv[k * n + j];
            U[i * n + j] = U[j * n + i] = v;
        }
    if (!cholesky(U, n)) return 0;
    for (int64_t i = 0; i < n; i++) /* transpose the lower factor into the upper */
        for (int64_t j = 0; j < i; j++) {
            U[j * n + i] = U[i * n + j];
            U[i * n + j] = 0;
        }
    return 1;
}

/* U for the columns of w; zeroes dead columns of w.  NULL: no Hessian. */
static kvq_err hessian_factor(const gptq_state *st, float *w, int64_t rows, int64_t n, double **out)
{
    *out = NULL;
    if (st->opt != OPT_GPTQ || !st->H) return KVQ_OK;
    KVQ_FAIL_IF(st->n != n, KVQ_ERR_SHAPE, "gptq: calibrated on %lld inputs, weight has %lld columns",
                (long long)st->n, (long long)n);
    size_t nn = (size_t)(n * n);
    double *A = malloc(nn * sizeof *A), *inv = malloc(nn * sizeof *inv), *U = malloc(nn * sizeof *U);
    kvq_err e = !A || !inv || !U ? KVQ_ERROR(KVQ_ERR_NOMEM, "gptq: out of memory for %lld² factors", (long long)n)
                                 : KVQ_ERR_CORRUPT;
    double mean = 0;
    for (int64_t i = 0; i < n; i++) mean += st->H[i * n + i];
    mean = mean > 0 ? mean / (double)n : 1.0;
    double lambda = st->damp * mean;
    for (int t = 0; A && inv && U && t < KVQ_GPTQ_DAMP_TRIES && e == KVQ_ERR_CORRUPT; t++, lambda *= 10) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) A[i * n + j] = st->H[(i < j ? i : j) * n + (i < j ? j : i)];
        for (int64_t i = 0; i < n; i++) {
            if (st->H[i * n + i] == 0) {
                A[i * n + i] = 1;
                for (int64_t r = 0; r < rows; r++) w[r * n + i] = 0;
            }
            A[i * n + i] += lambda;
        }
        if (cholesky(A, n) && inverse_upper(A, inv, U, n)) e = KVQ_OK;
    }
    free(A);
    free(inv);
    if (e == KVQ_ERR_CORRUPT) e = KVQ_ERROR(KVQ_ERR_NONFINITE, "gptq: damped Hessian not positive definite");
    if (e) {
        free(U);
        return e;
    }
    *out = U;
    return KVQ_OK;
}

/* f16-stored scale for absmax m; KVQ_ERR_PARAM_RANGE beyond f16. */
static kvq_err scale_of(const gptq_state *st, float m, int f16, float *s)
{
    float v = m * 2.0f / (float)((1u << st->bits) - 1);
    KVQ_FAIL_IF(f16 && v > F16_MAX, KVQ_ERR_PARAM_RANGE, "gptq: group scale %g does not fit f16", (double)v);
    *s = f16 ? kvq_f16_to_f32(kvq_f32_to_f16(v)) : v;
    return KVQ_OK;
}

static uint8_t quant_one(const gptq_state *st, float w, float s, float *deq)
{
    int off = 1 << (st->bits - 1), top = (1 << st->bits) - 1;
    int q = s > 0 ? kvq_round_rne(w / s) + off : off;
    q = q < 0 ? 0 : q > top ? top : q;
    *deq = (float)(q - off) * s;
    return (uint8_t)q;
}

/* Column-by-column quantization of w (rows × n, updated in place) into
 * codes and scales (rows × gpr, or one global scale). */
static kvq_err quantize_cols(const gptq_state *st, const gptq_layout *L, float *w, const double *U, uint8_t *codes,
                             float *scales)
{
    int64_t rows = L->rows, n = L->cols;
    if (!st->group) KVQ_TRY(scale_of(st, kvq_absmax(w, (size_t)(rows * n)), 0, scales));
    for (int64_t j = 0; j < n; j++) {
        int64_t g = j / L->span;
        if (st->group && j % L->span == 0) {
            int64_t len = n - j < L->span ? n - j : L->span;
            for (int64_t r = 0; r < rows; r++) {
                float m = 0;
                for (int64_t k = 0; k < len; k++) m = fmaxf(m, fabsf(w[r * n + j + k]));
                KVQ_TRY(scale_of(st, m, 1, &scales[r * L->gpr + g]));
            }
        }
        for (int64_t r = 0; r < rows; r++) {
            float s = st->group ? scales[r * L->gpr + g] : scales[0], deq;
            float *wr = w + r * n;
            codes[r * n + j] = quant_one(st, wr[j], s, &deq);
            if (!U) continue;
            double e = ((double)wr[j] - deq) / U[j * n + j];
            for (int64_t k = j + 1; k < n; k++) wr[k] -= (float)(e * U[j * n + k]);
        }
    }
    return KVQ_OK;
}

static kvq_err gptq_encode(void *p, const kvq_tensor *src, void *dst, size_t cap, size_t *n_out)
{
    gptq_state *st = p;
    gptq_layout L = layout_of(st, &src->shape);
    KVQ_FAIL_IF(st->had && !kvq_had_base(L.cols), KVQ_ERR_SHAPE,
                "gptq: had=1 needs 2^k, 12·2^k or 40·2^k columns, not %lld", (long long)L.cols);
    size_t need = gptq_bound(st, &src->shape), nv = (size_t)(L.rows * L.cols);
    KVQ_FAIL_IF(cap < need, KVQ_ERR_DST_TOO_SMALL, "gptq: %zu bytes needed, %zu given", need, cap);
    float *w = malloc((nv ? nv : 1) * sizeof *w), *scales = malloc((size_t)(L.rows * L.gpr + 1) * sizeof *scales);
    uint8_t *codes = malloc(nv ? nv : 1);
    double *U = NULL;
    kvq_err e = !w || !scales || !codes ? KVQ_ERROR(KVQ_ERR_NOMEM, "gptq: out of memory") : KVQ_OK;
    if (!e) {
        memcpy(w, src->data, nv * sizeof *w);
        for (int64_t r = 0; st->had && r < L.rows; r++) kvq_had_apply(w + r * L.cols, L.cols, 0);
        e = hessian_factor(st, w, L.rows, L.cols, &U);
    }
    if (!e) e = quantize_cols(st, &L, w, U, codes, scales);
    if (!e) {
        uint8_t *o = dst;
        if (!st->group) {
            uint32_t bits;
            memcpy(&bits, &scales[0], sizeof bits);
            kvq_wr32(o, bits);
            o += L.global;
        }
        for (int64_t r = 0; r < L.rows; r++, o += L.row_bytes) {
            for (int64_t g = 0; g < L.gpr; g++) kvq_wr16(o + 2 * g, kvq_f32_to_f16(scales[r * L.gpr + g]));
            kvq_bits_pack(codes + r * L.cols, (size_t)L.cols, st->bits, o + 2 * L.gpr);
        }
        *n_out = need;
    }
    free(w);
    free(scales);
    free(codes);
    free(U);
    return e;
}

static kvq_err gptq_decode_rows(void *p, const void *src, size_t n, const kvq_shape *s, int64_t r0, int64_t r1,
                                float *out)
{
    gptq_state *st = p;
    gptq_layout L = layout_of(st, s);
    KVQ_FAIL_IF(n != gptq_bound(st, s), KVQ_ERR_CORRUPT, "gptq: payload of %zu bytes, shape needs %zu", n,
                gptq_bound(st, s));
    KVQ_FAIL_IF(r0 < 0 || r1 > L.rows || r0 > r1, KVQ_ERR_ARG, "gptq: rows [%lld, %lld)", (long long)r0,
                (long long)r1);
    const uint8_t *b = src;
    float global = 0;
    if (!st->group) {
        uint32_t bits = kvq_rd32(b);
        memcpy(&global, &bits, sizeof global);
    }
    KVQ_FAIL_IF(!isfinite(global) || global < 0, KVQ_ERR_CORRUPT, "gptq: bad tensor scale");
    uint8_t *codes = malloc(L.cols ? (size_t)L.cols : 1);
    KVQ_FAIL_IF(!codes, KVQ_ERR_NOMEM, "gptq: out of memory");
    int off = 1 << (st->bits - 1);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = b + L.global + (size_t)r * L.row_bytes;
        float *o = out + (r - r0) * L.cols;
        kvq_bits_unpack(row + 2 * L.gpr, (size_t)L.cols, st->bits, codes);
        for (int64_t j = 0; j < L.cols; j++) {
            float sc = st->group ? kvq_f16_to_f32(kvq_rd16(row + 2 * (j / L.span))) : global;
            o[j] = (float)(codes[j] - off) * sc;
        }
        if (st->had) kvq_had_apply(o, L.cols, 1);
    }
    free(codes);
    for (int64_t i = 0; i < (r1 - r0) * L.cols; i++)
        KVQ_FAIL_IF(!isfinite(out[i]), KVQ_ERR_CORRUPT, "gptq: non-finite scale in the payload");
    return KVQ_OK;
}

const kvq_codec kvq_codec_gptq = {
    .abi = KVQ_CODEC_ABI,
    .name = "gptq",
    .id = 71,
    .domain = KVQ_DOMAIN_WEIGHT,
    .flags = 0,
    .state_size = sizeof(gptq_state),
    .params = gptq_params,
    .n_params = sizeof gptq_params / sizeof gptq_params[0],
    /* defaults (4 bits, group 128): per value |w − ŵ| <= s/2 = max|w|/15
     * of its group; 0.25 bounds the relative norm with margin */
    .max_rel_err = 0.25,
    .summary = "GPTQ b-bit symmetric, group scales (Hessian error feedback from calibration; Quamba2 W4/W8)",
    .init = gptq_init,
    .calibrate = gptq_calibrate,
    .bound = gptq_bound,
    .encode = gptq_encode,
    .decode = NULL,
    .fini = gptq_fini,
    .decode_rows = gptq_decode_rows,
};
