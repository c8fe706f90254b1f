/*
 * rtn.c — codec `rtn` (id 10): round-to-nearest integer quantisation, the
 * baseline every method is compared with (quant-methods.md §5).
 *
 *   symmetric  : d = amax/(2^(b−1) − 1), q = clamp(round(x/d)), x̂ = d·q
 *   asymmetric : d = (max − min)/(2^b − 1), z = min, q = clamp(round((x−z)/d)),
 *                x̂ = z + d·q
 * with one (d[, z]) per tensor, per row, or per group of `group` values
 * along a row (a shorter last group when cols is not a multiple of it).
 * d and z are stored as f16 (RNE) and the codes are computed against the
 * STORED values, so encoder and decoder agree on the grid.  Rounding is RHA
 * (C roundf), by multiplication with 1/d.
 *
 * Payload (all little-endian; [ours], the paper fixes no layout):
 *   gran=tensor : d[, z] once, then each row's codes
 *   gran=row|group : per row, its groups' d[, z] entries, then its codes
 *   codes of a row: `cols` codes of b bits, LSB first, padded to a byte
 *   (quant_common.h), stored as q + (2^(b−1) − 1) (sym) or q (asym).
 * Every row starts at a computable offset, so decode_rows reads any range.
 * Scales that do not fit f16 (|x| beyond about 65504·qmax) are refused with
 * KVQ_ERR_PARAM_RANGE rather than stored as Inf.
 */
#include "kvq_internal.h"
#include "quant/codecs.h"
#include "quant/quant_common.h"
#include "kernels/kernels.h"
#include "kernels/rowkern.h"

#define RTN_GROUP_QUANTUM 32  /* group sizes are multiples of this (ggml block) */
#define F16_EXP_MASK      0x7C00u /* all-ones exponent: Inf or NaN */

typedef enum { MODE_SYM = 0, MODE_ASYM = 1 } rtn_mode;
typedef enum { GRAN_TENSOR = 0, GRAN_ROW = 1, GRAN_GROUP = 2 } rtn_gran;

static const char *const mode_names[] = {"sym", "asym", NULL};
static const char *const gran_names[] = {"tensor", "row", "group", NULL};

static const kvq_param rtn_params[] = {
    {"bits", 2, 8, 4, 1, NULL, "code width in bits"},
    {"mode", 0, 1, MODE_SYM, 0, mode_names, "sym: d = amax/(2^(b-1)-1); asym: d = (max-min)/(2^b-1), z = min"},
    {"gran", 0, 2, GRAN_GROUP, 0, gran_names, "one scale per tensor, per row, or per group of values"},
    {"group", 32, 256, 32, 1, NULL, "values per group along a row (gran=group), a multiple of 32"},
};

typedef struct {
    unsigned bits;
    rtn_mode mode;
    rtn_gran gran;
    int64_t  group;
} rtn_state;

/* Where things are in a payload of a given shape. */
typedef struct {
    int64_t rows, cols;
    int64_t span;        /* values per scale along a row          */
    int64_t gpr;         /* scale entries stored per row          */
    size_t  entry;       /* bytes per scale entry: d or d,z       */
    size_t  global;      /* bytes of the tensor-wide entry        */
    size_t  row_bytes;   /* entries + packed codes of one row     */
    size_t  total;
} rtn_layout;

/* One group's grid, as stored (f16-rounded) and its reciprocal step. */
typedef struct {
    float d, z, id;
} rtn_grid;

static kvq_err rtn_init(void *st, const kvq_params *p)
{
    rtn_state *s = st;
    s->bits = (unsigned)p->v[0];
    s->mode = (rtn_mode)p->v[1];
    s->gran = (rtn_gran)p->v[2];
    s->group = (int64_t)p->v[3];
    KVQ_FAIL_IF(s->group % RTN_GROUP_QUANTUM != 0, KVQ_ERR_PARAM_RANGE,
                "rtn: group=%lld must be a multiple of %d (32..256)", (long long)s->group, RTN_GROUP_QUANTUM);
    return KVQ_OK;
}

static int32_t qmax_sym(unsigned bits) { return (1 << (bits - 1)) - 1; }
static int32_t levels_asym(unsigned bits) { return (1 << bits) - 1; }

static rtn_layout layout_of(const rtn_state *s, const kvq_shape *sh)
{
    rtn_layout L;
    L.rows = kvq_shape_rows(sh);
    L.cols = kvq_shape_cols(sh);
    L.entry = s->mode == MODE_ASYM ? 4 : 2;
    L.span = s->gran == GRAN_GROUP ? s->group : L.cols;
    L.gpr = s->gran == GRAN_TENSOR ? 0 : s->gran == GRAN_ROW ? 1 : (L.cols + s->group - 1) / s->group;
    L.global = s->gran == GRAN_TENSOR ? L.entry : 0;
    L.row_bytes = (size_t)L.gpr * L.entry + kvq_bits_size((size_t)L.cols, s->bits);
    L.total = L.global + (size_t)L.rows * L.row_bytes;
    return L;
}

static size_t rtn_bound(const void *st, const kvq_shape *s) { return layout_of(st, s).total; }

/* The grid of n values: fills the stored entry at e and the grid g. */
static kvq_err make_grid(const rtn_state *s, const float *x, size_t n, uint8_t *e, rtn_grid *g, int64_t row,
                         int64_t grp)
{
    float lo = 0.0f, hi = 0.0f, d;
    if (s->mode == MODE_SYM) {
        d = kvq_absmax(x, n) / (float)qmax_sym(s->bits);
    } else {
        if (n) kvq_minmax(x, n, &lo, &hi);
        d = (hi - lo) / (float)levels_asym(s->bits);
    }
    uint16_t hd = kvq_f32_to_f16(d), hz = kvq_f32_to_f16(lo);
    KVQ_FAIL_IF((hd & F16_EXP_MASK) == F16_EXP_MASK || (hz & F16_EXP_MASK) == F16_EXP_MASK, KVQ_ERR_PARAM_RANGE,
                "rtn: row %lld, group %lld: scale %g / zero %g exceed the f16 range of the stored scales",
                (long long)row, (long long)grp, (double)d, (double)lo);
    kvq_wr16(e, hd);
    if (s->mode == MODE_ASYM) kvq_wr16(e + 2, hz);
    g->d = kvq_f16_to_f32(hd);
    g->z = s->mode == MODE_ASYM ? kvq_f16_to_f32(hz) : 0.0f;
    g->id = g->d != 0.0f ? 1.0f / g->d : 0.0f; /* d ≥ 2^-24 when non-zero: finite */
    return KVQ_OK;
}

/* Reads a stored entry back; a non-finite value can only come from damage. */
static kvq_err read_grid(const rtn_state *s, const uint8_t *e, rtn_grid *g, int64_t row)
{
    uint16_t hd = kvq_rd16(e), hz = s->mode == MODE_ASYM ? kvq_rd16(e + 2) : 0;
    KVQ_FAIL_IF((hd & F16_EXP_MASK) == F16_EXP_MASK || (hz & F16_EXP_MASK) == F16_EXP_MASK, KVQ_ERR_CORRUPT,
                "rtn: row %lld holds a non-finite scale (0x%04x, 0x%04x)", (long long)row, hd, hz);
    g->d = kvq_f16_to_f32(hd);
    g->z = kvq_f16_to_f32(hz);
    g->id = 0.0f;
    return KVQ_OK;
}

/* Codes of n values: one branch-free formula serves both modes (z = 0 and
 * lo = −off for sym). */
/* Columns [c0, c0+len) of one row on grid g through the kernel table's
 * quantize slot (c0 a multiple of 8: the codes start on a byte).  |v| =
 * |(x − z)·id| < 2^30, inside kvq_round_rha's range: |x − z| ≤ (max − min)
 * + 2^-11·|min| ≤ 1.5·2^b·d + 32, and a non-zero d is ≥ 2^-24. */
static void encode_span(const rtn_state *s, const float *x, int64_t c0, int64_t len, const rtn_grid *g,
                        uint8_t *row_codes)
{
    int32_t lo = s->mode == MODE_SYM ? -qmax_sym(s->bits) : 0;
    int32_t hi = s->mode == MODE_SYM ? qmax_sym(s->bits) : levels_asym(s->bits);
    int32_t off = s->mode == MODE_SYM ? qmax_sym(s->bits) : 0;
    kvq_kernels_get()->codes_quant(x + c0, (size_t)len, g->z, g->id, lo, hi, off, s->bits,
                                   row_codes + (size_t)c0 * s->bits / 8);
}

/* Values [c0, c0+len) of a row through the kernel table's dequantize
 * slot (c0 a multiple of 8: the codes start on a byte; exact floats). */
static void decode_span(const rtn_state *s, const uint8_t *row_codes, int64_t c0, int64_t len, const rtn_grid *g,
                        float *y)
{
    const float off = (float)(s->mode == MODE_SYM ? qmax_sym(s->bits) : 0);
    kvq_kernels_get()->codes_dequant(row_codes + (size_t)c0 * s->bits / 8, s->bits, (size_t)len, g->d, g->z, off,
                                     y + c0);
}

static kvq_err rtn_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    const rtn_state *s = st;
    rtn_layout L = layout_of(s, &src->shape);
    KVQ_FAIL_IF(cap < L.total, KVQ_ERR_DST_TOO_SMALL, "rtn: need %zu bytes, buffer has %zu", L.total, cap);
    const float *x = src->data;
    uint8_t *out = dst;
    rtn_grid g = {0, 0, 0};
    /* NaN/Inf are screened here, group by group just before the group's
     * own passes (KVQ_FLAG_CHECKS_FINITE): the values are then read from
     * cache instead of in a separate pass of the core over the tensor. */
    if (s->gran == GRAN_TENSOR) {
        KVQ_TRY(kvq_nonfinite_check(&kvq_codec_rtn, x, (size_t)(L.rows * L.cols), 0));
        KVQ_TRY(make_grid(s, x, (size_t)(L.rows * L.cols), out, &g, 0, 0));
    }
    for (int64_t r = 0; r < L.rows; r++) {
        uint8_t *row = out + L.global + (size_t)r * L.row_bytes;
        const float *xr = x + r * L.cols;
        for (int64_t c0 = 0, k = 0; c0 < L.cols; c0 += L.span, k++) {
            int64_t len = L.cols - c0 < L.span ? L.cols - c0 : L.span;
            if (s->gran != GRAN_TENSOR) {
                KVQ_TRY(kvq_nonfinite_check(&kvq_codec_rtn, xr + c0, (size_t)len, (size_t)(r * L.cols + c0)));
                KVQ_TRY(make_grid(s, xr + c0, (size_t)len, row + (size_t)k * L.entry, &g, r, k));
            }
            encode_span(s, xr, c0, len, &g, row + (size_t)L.gpr * L.entry);
        }
    }
    *n = L.total;
    return KVQ_OK;
}

/* Rows [r0, r1) of a payload already checked against the layout. */
static kvq_err decode_range(const rtn_state *s, const rtn_layout *L, const uint8_t *p, int64_t r0, int64_t r1,
                            float *y)
{
    rtn_grid g = {0, 0, 0};
    if (s->gran == GRAN_TENSOR) KVQ_TRY(read_grid(s, p, &g, 0));
    for (int64_t r = r0; r < r1; r++, y += L->cols) {
        const uint8_t *row = p + L->global + (size_t)r * L->row_bytes;
        for (int64_t c0 = 0, k = 0; c0 < L->cols; c0 += L->span, k++) {
            int64_t len = L->cols - c0 < L->span ? L->cols - c0 : L->span;
            if (s->gran != GRAN_TENSOR) KVQ_TRY(read_grid(s, row + (size_t)k * L->entry, &g, r));
            decode_span(s, row + (size_t)L->gpr * L->entry, c0, len, &g, y);
        }
    }
    return KVQ_OK;
}

static kvq_err rtn_decode_rows(void *st, const void *src, size_t n, const kvq_shape *sh, int64_t r0, int64_t r1,
                               float *out)
{
    const rtn_state *s = st;
    rtn_layout L = layout_of(s, sh);
    KVQ_FAIL_IF(n != L.total, KVQ_ERR_CORRUPT, "rtn: payload is %zu bytes, shape and parameters need %zu", n,
                L.total);
    return decode_range(s, &L, src, r0, r1, out);
}

/* ---- row kernel (kernels/rowkern.h) ------------------------------------------
 * x̂ = z + d·(c − off) = (z + d·m) + d·(c − m) with m the grid's centre
 * (off for sym, where z = 0; (2^b − 1)/2 for asym), so per group
 *   Σ x̂_i·x_i = d·Σ (c_i − m)·x_i + (z + d·m)·Σ x_i,
 * the table's codes_row_dot slot (aux) sums a row's groups; centring keeps the
 * terms as small as the values (no cancellation of large sums).  p[0] is
 * row 0 (past a tensor-wide entry), stride[0] the row bytes; ip = bits,
 * span, gpr, entry bytes; fp = m, and the tensor-wide d, z; aux_rows the
 * table's f16_gather (F16C with AVX2) widening the row's scales.  Binding
 * reads every stored scale. */
#define RTN_ROW_GROUPS 64 /* group scales widened per kernel call */

static float rtn_row_dot(const kvq_rowkern *k, int64_t r, const float *x)
{
    kvq_kern_codes_row_dot_fn rdot = (kvq_kern_codes_row_dot_fn)k->aux;
    kvq_kern_f16_gather_fn gather = (kvq_kern_f16_gather_fn)k->aux_rows;
    const uint8_t *row = k->p[0] + (size_t)r * k->stride[0];
    const uint8_t *codes = row + (size_t)k->ip[2] * (size_t)k->ip[3];
    unsigned bits = (unsigned)k->ip[0];
    int asym = k->ip[3] == 4;
    float m = k->fp[0], sc[RTN_ROW_GROUPS], bi[RTN_ROW_GROUPS];
    if (!k->ip[2]) { /* one tensor-wide grid */
        sc[0] = k->fp[1];
        bi[0] = k->fp[2] + k->fp[1] * m;
        return rdot(codes, bits, (size_t)k->cols, (size_t)k->cols, m, sc, asym ? bi : NULL, x);
    }
    int64_t span = k->ip[1];
    float acc = 0.0f;
    for (int64_t g0 = 0; g0 < k->ip[2]; g0 += RTN_ROW_GROUPS) {
        int64_t ng = k->ip[2] - g0 < RTN_ROW_GROUPS ? k->ip[2] - g0 : RTN_ROW_GROUPS, c0 = g0 * span;
        const uint8_t *e = row + (size_t)g0 * (size_t)k->ip[3];
        gather(e, (size_t)k->ip[3], (size_t)ng, sc);
        if (asym) {
            gather(e + 2, (size_t)k->ip[3], (size_t)ng, bi);
            for (int64_t g = 0; g < ng; g++) bi[g] += sc[g] * m;
        }
        size_t n = (size_t)(k->cols - c0 < ng * span ? k->cols - c0 : ng * span);
        acc += rdot(codes + (size_t)c0 * bits / 8, bits, n, (size_t)span, m, sc, asym ? bi : NULL, x + c0);
    }
    return acc;
}

kvq_err kvq_rtn_rowkern(const void *st, const void *payload, size_t n, const kvq_shape *sh, kvq_rowkern *k)
{
    const rtn_state *s = st;
    rtn_layout L = layout_of(s, sh);
    KVQ_FAIL_IF(n != L.total, KVQ_ERR_CORRUPT, "rtn: payload is %zu bytes, shape and parameters need %zu", n,
                L.total);
    const uint8_t *p = payload;
    rtn_grid g = {0, 0, 0};
    if (s->gran == GRAN_TENSOR) KVQ_TRY(read_grid(s, p, &g, 0));
    for (int64_t r = 0; r < L.rows; r++)
        for (int64_t e = 0; e < L.gpr; e++)
            KVQ_TRY(read_grid(s, p + L.global + (size_t)r * L.row_bytes + (size_t)e * L.entry, &g, r));
    const kvq_kernels *kt = kvq_kernels_get();
    k->dot = rtn_row_dot;
    k->fast = kt->fast_dot;
    k->p[0] = p + L.global;
    k->stride[0] = L.row_bytes;
    k->ip[0] = (int)s->bits;
    k->ip[1] = (int)L.span;
    k->ip[2] = (int)L.gpr;
    k->ip[3] = (int)L.entry;
    k->fp[0] = s->mode == MODE_SYM ? (float)qmax_sym(s->bits) : 0.5f * (float)levels_asym(s->bits);
    k->fp[1] = s->gran == GRAN_TENSOR ? g.d : 0.0f;
    k->fp[2] = s->gran == GRAN_TENSOR ? g.z : 0.0f;
    k->aux = (void (*)(void))kt->codes_row_dot;
    k->aux_rows = (void (*)(void))kt->f16_gather;
    return KVQ_OK;
}

/* Declared error bound, for the default parameters (bits=4, sym, group=32)
 * and finite inputs whose scales are f16-normal.  Per group with amax a and
 * stored step d (within 2^-11 of a/7): a value that rounds to 0 has error
 * |x| < d/2; any other has |x| ≥ d/2 and error ≤ d/2 (the grid is the
 * stored one; the clamped extreme errs by ≤ a·2^-11).  Σe²/Σx² is largest
 * with the 31 other values at d/2:
 *   R² = 31·(d/2)² / (a² + 31·(d/2)²) = 7.75 / (49·(1 − 2^-10) + 7.75)
 * → R = 0.3697.  Other parameters: R = sqrt((G−1)/((G−1) + 4·qmax²)) for
 * sym with G values per scale; tests/test_codecs.c checks a sweep. */
#define RTN_REL_ERR 0.372

const kvq_codec kvq_codec_rtn = {
    .abi = KVQ_CODEC_ABI, .name = "rtn", .id = 10,
    .domain = KVQ_DOMAIN_WEIGHT | KVQ_DOMAIN_ACT | KVQ_DOMAIN_KV | KVQ_DOMAIN_SSM, .flags = KVQ_FLAG_CHECKS_FINITE,
    .state_size = sizeof(rtn_state), .params = rtn_params,
    .n_params = sizeof rtn_params / sizeof rtn_params[0], .max_rel_err = RTN_REL_ERR,
    .summary = "round to nearest, 2-8 bits, sym/asym, per tensor/row/group, f16 scales",
    .init = rtn_init, .bound = rtn_bound, .encode = rtn_encode, .decode = NULL,
    .decode_rows = rtn_decode_rows,
};
