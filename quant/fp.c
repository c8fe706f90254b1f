/*
 * fp.c — codec `fp` (id 30): LLM-FP4-family weights and dynamic (per-row)
 * activations (quant-methods.md §1.1–1.4).  The paper's static activation
 * quantizer with the pre-shifted exponent bias is `fpa` (fp_act.c); the
 * OCP/ggml presets mxfp4 and nvfp4 are in fp_mx.c; shared code in fp_impl.h.
 *
 * Quantizer.  An ExMy grid (quant_common.h) with a real-valued bias b̃,
 * held as the scale s = 2^(b0 − b̃) on the standard grid (§1.1 scale
 * identity): x̂ = s·Q_b0(x/s).  Codes are the sign bit above the magnitude
 * code, computed by threshold counting against x·(1/s) (the reciprocal is
 * the f32 one: [ours]).  Formats use every exponent code (LLM-FP4's
 * convention; E2M1 equals OCP E2M1).
 *
 * Search.  One bias per row (the paper) or per group of `group` values.
 * search=paper scans the paper's grid b̃ = γ_i·b̃(max), γ_i = 0.01 +
 * i·1.19/100, i = 0..99; search=clip scans the scale-invariant clip grid
 * clip = r_i·max, r_i = 0.3 + i·0.7/99 ([ours], §1.4); search=none is
 * MinMax (γ = 1).  The objective is the layer-output error dᵀHd (H = XᵀX
 * from calibrate(), §1.4 "L2_norm") when calibrated and gran=row, else the
 * weight error Σd² (with calibration and gran=group: Σ H_jj d_j², [ours]).
 * [ours] speed-up: every candidate is ranked by Σ H_jj d_j² first and only
 * the best FP_PREFILTER get the full dᵀHd.  fmt=auto4/auto8 searches the
 * formats of that width (§1.4 format search) per tensor by the same
 * objective.  The paper's three rounds alternate weight and activation
 * searches: rounds=N runs them with `fpa` (quant/fp_joint.c, driven by
 * kvq_model_quantize and the evaluator), which hands each tensor's format
 * and row scales to its context (kvq_fp_state_preset); rounds=0 calibrates
 * weights alone on the f32 model's inputs, one round.
 *
 * Payload (little-endian, [ours]): u8 format index, then per row: scale(s)
 * (f32 per row, or f16 per group, codes computed against the stored value),
 * then the row's codes: 4-bit formats in runs of 32 nibbles, split-half
 * (ggml) or adjacent (ModelOpt) per `nib`, a shorter last run adjacent;
 * 8-bit formats one byte each.
 *
 * NaN/Inf are found by the spans' maxima (KVQ_FLAG_CHECKS_FINITE); the
 * inner loops are kernels/kern_fp.h slots; kvq_fp_rowkern binds the row
 * kernel (kernels/rowkern.h) for groups of whole runs of 32 or row bias.
 */
#include "kvq_internal.h"
#include "kernels/rowkern.h"
#include "quant/codecs.h"
#include "quant/fp_impl.h"
#include "quant/fp_joint.h"

#include <stdlib.h>

#define FP_GAMMA_N    100     /* paper grid: i = 0..99 (γ = 1.2 never tried) */
#define FP_GAMMA_LO   0.01
#define FP_GAMMA_SPAN 1.19
#define FP_CLIP_LO    0.3
#define FP_CLIP_HI    1.0
#define FP_PREFILTER  12      /* candidates scored by the full dᵀHd         */

typedef enum { SEARCH_NONE = 0, SEARCH_PAPER = 1, SEARCH_CLIP = 2 } fp_search;

static const char *const gran_names[] = {"row", "group", NULL};
static const char *const search_names[] = {"none", "paper", "clip", NULL};

static const kvq_param fp_params[] = {
    {"fmt", 0, 9, 0, 0, fp_fmt_names, "element format (LLM-FP4: every code finite); auto4/auto8 search them"},
    {"gran", 0, 1, 0, 0, gran_names, "one real bias per row (paper) or per group"},
    {"group", 16, 256, 32, 1, NULL, "values per group (gran=group), even"},
    {"search", 0, 2, SEARCH_PAPER, 0, search_names, "bias search: none = MinMax, paper grid, clip-ratio grid"},
    {"tie", 0, 2, KVQ_TIE_EVEN, 0, fp_tie_names, "tie rule of the rounding"},
    {"nib", 0, 1, KVQ_NIB_SPLIT_HALF, 0, fp_nib_names, "4-bit nibble order"},
    {"rounds", 0, KVQ_FPJ_MAX_ROUNDS, 0, 1, NULL,
     "alternating W/A search rounds with fpa (fp_joint.c; needs calibration, gran=row, paper grid)"},
};


typedef struct {
    int        fmt;         /* 0..7 or FMT_AUTO4/8                          */
    int        gran_group;
    int64_t    group;
    fp_search  search;
    kvq_tie    tie;
    kvq_nib_layout nib;
    kvq_fp_lut lut[8];      /* per format index, for this tie rule (read-only
                               after init: concurrent decodes are safe)     */
    float      sval[8][KVQ_FP_MAX_LEVELS]; /* signed value of every code     */
    float      rk4[8][17];  /* 4-bit formats: the row kernel's table (int8
                               integers when rk4_i8, [16] the factor back)   */
    int        rk4_i8[8];
    float     *H;           /* [hn][hn] Gram matrix of calibration inputs   */
    int64_t    hn;
    int        rounds;      /* fp_joint.c rounds (0: none)                  */
    int        preset_fmt;  /* format and row scales set by fp_joint.c      */
    float     *preset;      /* [preset_rows], NULL: search in encode()      */
    int64_t    preset_rows;
} fp_state;

/* ---- the objective --------------------------------------------------------------- */
typedef struct {
    const float *H;         /* NULL: weight MSE                              */
    int64_t      n, c0;     /* H order, first column of the span             */
    int          full;      /* 1: dᵀHd (whole rows)                          */
} fp_obj;

static double obj_diag(const fp_obj *o, const float *d, int64_t len)
{
    double e = 0.0;
    for (int64_t j = 0; j < len; j++) {
        double w = o->H ? (double)o->H[(o->c0 + j) * o->n + o->c0 + j] : 1.0;
        e += w * (double)d[j] * (double)d[j];
    }
    return e;
}

/* ---- candidates ---------------------------------------------------------------------- */
/* Scale of candidate i for a span whose max |x| is M. */
static double cand_scale(fp_search s, const kvq_fpfmt *f, double M, int i)
{
    double maxv = (double)kvq_fp_maxval(f);
    if (s == SEARCH_CLIP) return (FP_CLIP_LO + (FP_CLIP_HI - FP_CLIP_LO) * i / (FP_GAMMA_N - 1)) * M / maxv;
    double b0 = kvq_fp_bias_for_max(f, M);
    double b = s == SEARCH_PAPER ? (FP_GAMMA_LO + FP_GAMMA_SPAN * i / FP_GAMMA_N) * b0 : b0;
    return exp2((double)f->bias - b);
}

/* (float)cand_scale(SEARCH_NONE, f, M, 0) without log2/exp2: that scale is
 * 2^(bias − b̃(M)) = M/maxval exactly in real arithmetic (maxval = (2 −
 * 2^−m)·2^(2^e − 1 − bias)), and cand_scale's double evaluation is within
 * 2^-42 of it relatively.  So M/maxval in double rounds to the same f32
 * unless it lies within 2^-36 of the midpoint between two floats; there
 * (rarely) cand_scale itself decides. */
#define FP_SCALE_BAND 0x1p-36

static float minmax_scale(const kvq_fp_lut *l, double M)
{
    double s = M / (double)l->mag[l->n - 1];
    float r = (float)s, below, above;
    uint32_t u;
    memcpy(&u, &r, 4);
    if (u > 0 && u < 0x7F800000u) { /* positive finite: the neighbours are the adjacent bit patterns */
        uint32_t ub = u - 1, ua = u + 1;
        memcpy(&below, &ub, 4);
        memcpy(&above, &ua, 4);
    } else {
        below = nextafterf(r, -INFINITY), above = nextafterf(r, INFINITY);
    }
    double lo = 0.5 * ((double)r + (double)below), hi = 0.5 * ((double)r + (double)above);
    if (s - lo > s * FP_SCALE_BAND && hi - s > s * FP_SCALE_BAND) return r;
    return (float)cand_scale(SEARCH_NONE, l->f, M, 0);
}

/* The stored form of a scale: f32 per row, f16 per group; kept in
 * [FLT_MIN, FLT_MAX/maxval] so 1/s and maxval·s stay finite. */
static float store_scale(double s, int as_f16, float maxval)
{
    float f = (float)s, hi = FLT_MAX / maxval;
    f = !(f >= FLT_MIN) ? FLT_MIN : !(f <= hi) ? hi : f;
    if (as_f16) {
        f = kvq_f16_to_f32(kvq_f32_to_f16(f));
        if (!(f > 0.0f)) f = kvq_f16_to_f32(1); /* smallest f16 subnormal */
        if (isinf(f)) f = kvq_f16_to_f32(0x7BFF);
    }
    return f;
}

/* Best scale of x[len] (max M > 0) by search s; d is scratch [len]. */
static float search_span(const fp_state *st, const kvq_fp_lut *l, const fp_obj *o, const float *x, int64_t len,
                         double M, float *d, double *best_e)
{
    int n = st->search == SEARCH_NONE ? 1 : FP_GAMMA_N, f16 = st->gran_group;
    double diag[FP_GAMMA_N];
    float sc[FP_GAMMA_N];
    for (int i = 0; i < n; i++) {
        sc[i] = store_scale(cand_scale(st->search, l->f, M, i), f16, l->mag[l->n - 1]);
        fp_quant_span(l, x, len, sc[i], NULL, d);
        for (int64_t j = 0; j < len; j++) d[j] = x[j] - d[j];
        diag[i] = obj_diag(o, d, len);
    }
    int best = 0;
    for (int i = 1; i < n; i++)
        if (diag[i] < diag[best]) best = i;
    *best_e = diag[best];
    if (!o->full || n == 1) return sc[best];
    /* rank by the diagonal objective, score the best few exactly */
    int pick[FP_PREFILTER], np = 0;
    uint8_t used[FP_GAMMA_N] = {0};
    for (; np < FP_PREFILTER && np < n; np++) {
        int b = -1;
        for (int i = 0; i < n; i++)
            if (!used[i] && (b < 0 || diag[i] < diag[b])) b = i;
        used[b] = 1;
        pick[np] = b;
    }
    double be = INFINITY;
    for (int k = 0; k < np; k++) {
        fp_quant_span(l, x, len, sc[pick[k]], NULL, d);
        for (int64_t j = 0; j < len; j++) d[j] = x[j] - d[j];
        double e = kvq_gram_quad(o->H, d, len);
        if (e < be || (e == be && pick[k] < best)) be = e, best = pick[k];
    }
    *best_e = be;
    return sc[best];
}

/* ---- fp: layout ------------------------------------------------------------------------- */
typedef struct {
    int64_t rows, cols, span, gpr;
    size_t  entry, codes, row_bytes, total;
} fp_layout;

static fp_layout fp_layout_of(const fp_state *s, const kvq_fpfmt *f, const kvq_shape *sh)
{
    fp_layout L;
    L.rows = kvq_shape_rows(sh);
    L.cols = kvq_shape_cols(sh);
    L.span = s->gran_group ? s->group : L.cols;
    L.gpr = s->gran_group ? (L.cols + s->group - 1) / s->group : 1;
    L.entry = s->gran_group ? 2 : 4;
    L.codes = fp_codes_size(f, L.cols);
    L.row_bytes = (size_t)L.gpr * L.entry + L.codes;
    L.total = 1 + (size_t)L.rows * L.row_bytes;
    return L;
}

/* The row kernel's table of a 4-bit format (fp_rk_table): its 16 values
 * times 2^e when, for some e <= FP_I8_EMAX, all are integers in int8 (E2M1
 * ×2, E3M0 and E1M2 ×4: the int8 path, FP_DOT_I8, kernels multiply by 2^−e
 * = v[16] once per row), else the values themselves. */
#define FP_I8_EMAX 6

static int fp_rk_table(const float *sval, float *v)
{
    for (int e = 0; e <= FP_I8_EMAX; e++) {
        int ok = 1;
        for (int c = 0; c < 16; c++) {
            float t = ldexpf(sval[c], e);
            ok &= t == truncf(t) && fabsf(t) <= 127.0f;
        }
        if (!ok) continue;
        for (int c = 0; c < 16; c++) v[c] = ldexpf(sval[c], e);
        v[16] = ldexpf(1.0f, -e);
        return 1;
    }
    memcpy(v, sval, 16 * sizeof *v);
    v[16] = 1.0f;
    return 0;
}

static kvq_err fp_init(void *st, const kvq_params *p)
{
    fp_state *s = st;
    s->fmt = (int)p->v[0];
    s->gran_group = (int)p->v[1];
    s->group = (int64_t)p->v[2];
    s->search = (fp_search)p->v[3];
    s->tie = (kvq_tie)p->v[4];
    s->nib = (kvq_nib_layout)p->v[5];
    s->rounds = (int)p->v[6];
    KVQ_FAIL_IF(s->rounds && (s->gran_group || s->search != SEARCH_PAPER), KVQ_ERR_PARAM_RANGE,
                "fp: rounds=%d needs gran=row and search=paper", s->rounds);
    KVQ_FAIL_IF(s->group % 2, KVQ_ERR_PARAM_RANGE, "fp: group=%lld must be even", (long long)s->group);
    for (int i = 0; i < 8; i++) {
        kvq_fp_lut *l = &s->lut[i];
        kvq_fp_lut_init(l, kvq_fp_format(fp_fmt_ids[i]), s->tie);
        unsigned sb = fp_mag_bits(l->f), mask = (1u << sb) - 1;
        for (unsigned c = 0; c < (1u << (sb + 1)); c++) s->sval[i][c] = c >> sb ? -l->mag[c & mask] : l->mag[c & mask];
        if (sb == 3) s->rk4_i8[i] = fp_rk_table(s->sval[i], s->rk4[i]);
    }
    return KVQ_OK;
}

static void fp_fini(void *st)
{
    fp_state *s = st;
    free(s->H);
    free(s->preset);
    s->H = NULL;
    s->preset = NULL;
}

/* H += XᵀX of a calibration sample (the inputs of this weight's layer). */
static kvq_err fp_calibrate(void *st, const kvq_tensor *x)
{
    fp_state *s = st;
    int64_t n = kvq_shape_cols(&x->shape), t = kvq_shape_rows(&x->shape);
    KVQ_FAIL_IF(s->H && n != s->hn, KVQ_ERR_SHAPE, "fp: calibration width %lld after %lld", (long long)n,
                (long long)s->hn);
    if (!s->H) {
        size_t nn;
        KVQ_FAIL_IF(kvq_mul_ov((size_t)n, (size_t)n, &nn) || nn > ((size_t)1 << 28), KVQ_ERR_SHAPE,
                    "fp: calibration width %lld too large", (long long)n);
        s->H = calloc(nn ? nn : 1, sizeof *s->H);
        KVQ_FAIL_IF(!s->H, KVQ_ERR_NOMEM, "fp: out of memory for a %lld^2 Gram matrix", (long long)n);
        s->hn = n;
    }
    kvq_gram_accum(s->H, x->data, t, n);
    return KVQ_OK;
}

/* Format indices a spec may produce: one, or the 4-bit (0..2) / 8-bit
 * (3..7) set that fmt=auto4 / auto8 searches. */
static void fmt_range(const fp_state *s, int *lo, int *hi)
{
    int four = s->fmt <= 2 || s->fmt == FMT_AUTO4; /* fp_fmt_names: 0..2 are 4-bit */
    *lo = s->fmt < 8 && !s->rounds ? s->fmt : four ? 0 : 3; /* rounds: every format of the width */
    *hi = s->fmt < 8 && !s->rounds ? s->fmt : four ? 2 : 7;
}

/* Exact for a fixed format; the largest over the searched set for auto. */
static size_t fp_bound(const void *st, const kvq_shape *sh)
{
    const fp_state *s = st;
    int lo, hi;
    fmt_range(s, &lo, &hi);
    size_t best = 0;
    for (int i = lo; i <= hi; i++) {
        fp_layout L = fp_layout_of(s, kvq_fp_format(fp_fmt_ids[i]), sh);
        best = L.total > best ? L.total : best;
    }
    return best;
}

/* Quantises the whole tensor with format index fi into out (NULL: the
 * objective only, into *obj).  NaN/Inf are seen by the spans' maxima
 * (KVQ_FLAG_CHECKS_FINITE: the core does not scan). */
static kvq_err fp_encode_fmt(const fp_state *s, int fi, const float *x, const fp_layout *L, uint8_t *out,
                             float *scratch, double *obj)
{
    const kvq_fp_lut *lut = &s->lut[fi];
    int have_h = s->H && s->hn == L->cols;
    double total = 0.0;
    float *d = scratch;
    uint8_t *codes = (uint8_t *)(scratch + 2 * L->cols);
    for (int64_t r = 0; r < L->rows; r++) {
        const float *xr = x + r * L->cols;
        uint8_t *row = out ? out + 1 + (size_t)r * L->row_bytes : NULL;
        for (int64_t g = 0, c0 = 0; c0 < L->cols; g++, c0 += L->span) {
            int64_t len = L->cols - c0 < L->span ? L->cols - c0 : L->span;
            fp_obj o = {have_h ? s->H : NULL, L->cols, c0, have_h && !s->gran_group};
            uint32_t mb = kvq_fp_kernels_get()->absmax_bits(xr + c0, (size_t)len);
            if (mb >= KVQ_F32_INF_BITS)
                return kvq_nonfinite_check(&kvq_codec_fp, xr + c0, (size_t)len, (size_t)(xr + c0 - x));
            double M = (double)kvq_f32_of_bits(mb), e = 0.0;
            float sc = !(M > 0) ? store_scale(1.0, s->gran_group, lut->mag[lut->n - 1])
                                : search_span(s, lut, &o, xr + c0, len, M, d, &e);
            total += e;
            fp_quant_span(lut, xr + c0, len, sc, codes + c0, NULL);
            if (!row) continue;
            if (s->gran_group) kvq_wr16(row + 2 * g, kvq_f32_to_f16(sc));
            else memcpy(row, &sc, 4); /* little-endian hosts only: checked in fp_impl.h */
        }
        if (row) fp_pack_codes(lut->f, s->nib, codes, L->cols, row + (size_t)L->gpr * L->entry);
    }
    if (obj) *obj = total;
    return KVQ_OK;
}

/* The payload of format fi without a search (search=none: every span's
 * scale is search_span's single candidate, MinMax), row by row: the
 * spans' maxima, their scales, then the codes (kern_fp.h slots, one call
 * each per row).  mb and inv hold gpr entries, codes cols bytes. */
static kvq_err fp_write_minmax(const fp_state *s, int fi, const float *x, const fp_layout *L, uint8_t *out,
                               uint32_t *mb, float *inv, uint8_t *codes)
{
    const kvq_fp_lut *lut = &s->lut[fi];
    const kvq_fp_kernels *kt = kvq_fp_kernels_get();
    float maxval = lut->mag[lut->n - 1];
    for (int64_t r = 0; r < L->rows; r++) {
        const float *xr = x + r * L->cols;
        uint8_t *row = out + 1 + (size_t)r * L->row_bytes;
        kt->absmax_groups(xr, L->cols, L->span, mb);
        for (int64_t g = 0; g < L->gpr; g++) {
            int64_t c0 = g * L->span, len = L->cols - c0 < L->span ? L->cols - c0 : L->span;
            if (mb[g] >= KVQ_F32_INF_BITS)
                return kvq_nonfinite_check(&kvq_codec_fp, xr + c0, (size_t)len, (size_t)(xr + c0 - x));
            double M = (double)kvq_f32_of_bits(mb[g]);
            float sc = store_scale(M > 0 ? minmax_scale(lut, M) : 1.0, s->gran_group, maxval);
            inv[g] = 1.0f / sc;
            if (s->gran_group) kvq_wr16(row + 2 * g, kvq_f32_to_f16(sc));
            else memcpy(row, &sc, 4); /* little-endian hosts only: checked in fp_impl.h */
        }
        kt->codes_groups(lut, xr, L->cols, L->span, inv, codes);
        fp_pack_codes(lut->f, s->nib, codes, L->cols, row + (size_t)L->gpr * L->entry);
    }
    return KVQ_OK;
}

/* The payload from the format and row scales fp_joint.c found (checked
 * against the tensor); codes as fp_encode_fmt computes them. */
static kvq_err fp_write_preset(const fp_state *s, const float *x, const fp_layout *L, uint8_t *out, uint8_t *codes)
{
    const kvq_fp_lut *lut = &s->lut[s->preset_fmt];
    KVQ_FAIL_IF(L->rows != s->preset_rows, KVQ_ERR_SHAPE, "fp: %lld rows, the joint search set %lld",
                (long long)L->rows, (long long)s->preset_rows);
    for (int64_t r = 0; r < L->rows; r++) {
        const float *xr = x + r * L->cols;
        uint8_t *row = out + 1 + (size_t)r * L->row_bytes;
        if (kvq_fp_kernels_get()->absmax_bits(xr, (size_t)L->cols) >= KVQ_F32_INF_BITS)
            return kvq_nonfinite_check(&kvq_codec_fp, xr, (size_t)L->cols, (size_t)(xr - x));
        fp_quant_span(lut, xr, L->cols, s->preset[r], codes, NULL);
        memcpy(row, &s->preset[r], 4); /* little-endian hosts only: checked in fp_impl.h */
        fp_pack_codes(lut->f, s->nib, codes, L->cols, row + 4);
    }
    return KVQ_OK;
}

static kvq_err fp_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    const fp_state *s = st;
    int lo, hi;
    fmt_range(s, &lo, &hi);
    fp_layout L = fp_layout_of(s, kvq_fp_format(fp_fmt_ids[lo]), &src->shape);
    KVQ_FAIL_IF(cap < L.total, KVQ_ERR_DST_TOO_SMALL, "fp: need %zu bytes, buffer has %zu", L.total, cap);
    float *scratch = malloc((size_t)(3 * L.cols + 1) * sizeof(float));
    uint32_t *mb = malloc((size_t)(L.gpr + 1) * sizeof *mb);
    if (!scratch || !mb) {
        free(scratch);
        free(mb);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "fp: out of memory");
    }
    int best = s->preset ? s->preset_fmt : lo;
    kvq_err err = KVQ_OK;
    double be = INFINITY;
    for (int i = lo; !s->preset && hi > lo && i <= hi && !err; i++) {
        fp_layout Li = fp_layout_of(s, kvq_fp_format(fp_fmt_ids[i]), &src->shape);
        double e = INFINITY;
        err = fp_encode_fmt(s, i, src->data, &Li, NULL, scratch, &e);
        if (e < be) be = e, best = i;
    }
    L = fp_layout_of(s, kvq_fp_format(fp_fmt_ids[best]), &src->shape);
    uint8_t *out = dst;
    out[0] = (uint8_t)best;
    uint8_t *codes = (uint8_t *)(scratch + 2 * L.cols);
    if (!err && s->preset) err = fp_write_preset(s, src->data, &L, out, codes);
    else if (!err && s->search == SEARCH_NONE) err = fp_write_minmax(s, best, src->data, &L, out, mb, scratch, codes);
    else if (!err) err = fp_encode_fmt(s, best, src->data, &L, out, scratch, NULL);
    free(scratch);
    free(mb);
    if (!err) *n = L.total;
    return err;
}

/* Scale g of a row, checked (a non-finite one can only come from damage). */
static kvq_err row_scale(const fp_state *s, const uint8_t *row, int64_t g, int64_t r, float *sc)
{
    *sc = s->gran_group ? kvq_f16_to_f32(kvq_rd16(row + 2 * g)) : kvq_rdf32(row);
    KVQ_FAIL_IF(!isfinite(*sc), KVQ_ERR_CORRUPT, "fp: row %lld holds a non-finite scale", (long long)r);
    return KVQ_OK;
}

/* Rows [r0, r1), one run of codes at a time (no allocation: decode_rows
 * runs inside the decoder's matmul).  A value is sval[code]·scale, equal
 * to ±(mag·scale) (negation is exact); spans that are whole runs take one
 * scale per run, others (gran=group, group % 32 != 0) one per value. */
static kvq_err fp_decode_rows(void *st, const void *src, size_t n, const kvq_shape *sh, int64_t r0, int64_t r1,
                              float *out)
{
    const fp_state *s = st;
    const uint8_t *p = src;
    KVQ_FAIL_IF(n < 1 || p[0] >= 8, KVQ_ERR_CORRUPT, "fp: bad format byte");
    const kvq_fpfmt *f = kvq_fp_format(fp_fmt_ids[p[0]]);
    const float *sv = s->sval[p[0]];
    fp_layout L = fp_layout_of(s, f, sh);
    KVQ_FAIL_IF(n != L.total, KVQ_ERR_CORRUPT, "fp: payload is %zu bytes, shape and parameters need %zu", n,
                L.total);
    int per_run = L.span % FP_RUN == 0 || L.span == L.cols;
    for (int64_t r = r0; r < r1; r++, out += L.cols) {
        const uint8_t *row = p + 1 + (size_t)r * L.row_bytes;
        int64_t g = -1;
        float sc = 0.0f;
        for (int64_t c = 0; c < L.cols; c += FP_RUN) {
            uint8_t codes[FP_RUN];
            int64_t k = fp_unpack_run(f, s->nib, row + (size_t)L.gpr * L.entry, L.cols, c, codes);
            if (per_run) {
                if (c / L.span != g) KVQ_TRY(row_scale(s, row, g = c / L.span, r, &sc));
                for (int64_t j = 0; j < k; j++) out[c + j] = sv[codes[j]] * sc;
                continue;
            }
            for (int64_t j = 0; j < k; j++) {
                if ((c + j) / L.span != g) KVQ_TRY(row_scale(s, row, g = (c + j) / L.span, r, &sc));
                out[c + j] = sv[codes[j]] * sc;
            }
        }
    }
    return KVQ_OK;
}

/* ---- row kernel (kernels/rowkern.h) ------------------------------------------------
 * Region 0 is the rows (after the format byte); ip[0] the code layout
 * (FP_DOT_*), ip[1] runs of 32 per stored scale (0: one f32 per row),
 * ip[2] the scale bytes before a row's codes; lut the signed value of
 * every code.  Groups must be whole runs of 32 (else UNSUPPORTED); every
 * scale is checked finite here. */
static float fp_rk_dot(const kvq_rowkern *k, int64_t r, const float *x)
{
    const uint8_t *row = k->p[0] + (size_t)r * k->stride[0];
    return ((kvq_fp_runs_dot_fn)k->aux)(row + k->ip[2], k->cols, k->ip[0], k->lut, row, k->ip[1], x);
}

kvq_err kvq_fp_rowkern(const void *st, const void *payload, size_t n, const kvq_shape *sh, kvq_rowkern *k)
{
    const fp_state *s = st;
    const uint8_t *p = payload;
    KVQ_FAIL_IF(s->gran_group && s->group % FP_RUN, KVQ_ERR_UNSUPPORTED, "fp: group=%lld is not whole runs of %d",
                (long long)s->group, FP_RUN);
    KVQ_FAIL_IF(n < 1 || p[0] >= 8, KVQ_ERR_CORRUPT, "fp: bad format byte");
    const kvq_fp_lut *l = &s->lut[p[0]];
    fp_layout L = fp_layout_of(s, l->f, sh);
    KVQ_FAIL_IF(n != L.total, KVQ_ERR_CORRUPT, "fp: payload is %zu bytes, shape and parameters need %zu", n,
                L.total);
    for (int64_t r = 0; r < L.rows; r++)
        for (int64_t g = 0; g < L.gpr; g++) {
            float sc;
            KVQ_TRY(row_scale(s, p + 1 + (size_t)r * L.row_bytes, g, r, &sc));
        }
    int four = kvq_fp_bits(l->f) == 4;
    if (four) memcpy(k->lut, s->rk4[p[0]], sizeof s->rk4[0]);
    else memcpy(k->lut, s->sval[p[0]], sizeof s->sval[0]);
    k->ip[0] = !four ? FP_DOT_BYTE : s->nib == KVQ_NIB_SPLIT_HALF ? FP_DOT_SPLIT : FP_DOT_ADJ;
    if (four && s->rk4_i8[p[0]]) k->ip[0] |= FP_DOT_I8;
    k->dot = fp_rk_dot;
    k->fast = 1;
    k->p[0] = p + 1;
    k->stride[0] = L.row_bytes;
    k->ip[1] = s->gran_group ? (int)(s->group / FP_RUN) : 0;
    k->ip[2] = (int)(L.gpr * (int64_t)L.entry);
    k->aux = (void (*)(void))kvq_fp_kernels_get()->runs_dot;
    return KVQ_OK;
}

/* Declared bound: every element rounds to the nearest point of a grid that
 * holds 0, or saturates with its sign kept and |x̂| < |x|, so |x̂ − x| ≤ |x|
 * and ‖x̂ − x‖ ≤ ‖x‖.  Nothing tighter holds for one scale per row of any
 * width: a row of one maximum and many values on the first tie below the
 * smallest level approaches 1 as the row grows (rtn's 0.37 is for groups
 * of 32).  Real weights measure far lower: kvq quantize prints SQNR. */
#define FP_REL_ERR 1.0

const kvq_codec kvq_codec_fp = {
    .abi = KVQ_CODEC_ABI, .name = "fp", .id = 30,
    .domain = KVQ_DOMAIN_WEIGHT | KVQ_DOMAIN_ACT | KVQ_DOMAIN_KV, .flags = KVQ_FLAG_CHECKS_FINITE,
    .state_size = sizeof(fp_state), .params = fp_params,
    .n_params = sizeof fp_params / sizeof fp_params[0], .max_rel_err = FP_REL_ERR,
    .summary = "LLM-FP4 ExMy with real per-row/group bias, paper or clip search (layer-output MSE when calibrated)",
    .init = fp_init, .calibrate = fp_calibrate, .bound = fp_bound, .encode = fp_encode, .decode = NULL,
    .fini = fp_fini, .decode_rows = fp_decode_rows,
};

/* ---- hooks for fp_joint.c (fp_joint.h) ------------------------------------------- */
int kvq_fp_state_rounds(const void *st) { return ((const fp_state *)st)->rounds; }

void kvq_fp_state_fmts(const void *st, int *lo, int *hi, int *start, kvq_tie *tie)
{
    const fp_state *s = st;
    fmt_range(s, lo, hi);
    *start = s->fmt < 8 ? s->fmt : *lo; /* a fixed fmt, else the set's first (auto4: E2M1) */
    *tie = s->tie;
}

kvq_err kvq_fp_state_preset(void *st, int fi, const float *scales, int64_t rows)
{
    fp_state *s = st;
    int lo, hi;
    fmt_range(s, &lo, &hi);
    KVQ_FAIL_IF(fi < lo || fi > hi || rows < 0 || s->gran_group, KVQ_ERR_ARG,
                "fp: preset format %d outside %d..%d (or per-group scales)", fi, lo, hi);
    for (int64_t r = 0; r < rows; r++)
        KVQ_FAIL_IF(!(scales[r] >= FLT_MIN) || !(scales[r] <= FLT_MAX / s->lut[fi].mag[s->lut[fi].n - 1]),
                    KVQ_ERR_ARG, "fp: preset scale %g of row %lld", (double)scales[r], (long long)r);
    float *p = malloc((size_t)(rows + 1) * sizeof *p);
    KVQ_FAIL_IF(!p, KVQ_ERR_NOMEM, "fp: out of memory");
    memcpy(p, scales, (size_t)rows * sizeof *p);
    free(s->preset);
    s->preset = p;
    s->preset_rows = rows;
    s->preset_fmt = fi;
    return KVQ_OK;
}
