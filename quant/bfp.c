/*
 * bfp.c — block floating point: codec `bfp` (id 40) and its OCP MX preset
 * `mxint8` (id 41) (quant-methods.md §3.1, §6.2; Trukhanov & Soloveychik,
 * arXiv 2403.20137; d-Matrix dmx-compressor docs/numerics.rst; OCP MX v1.0).
 *
 * BFP[n|8]{b}: `block` = b contiguous values of a row share one 8-bit
 * exponent; each value is an n-bit signed integer significand (`mant` = n,
 * sign included):
 *     e    = floor(log2(max_i |x_i|)), clamped to [−127, 127]
 *     step = 2^(e − (n − 2))          (one bit for the sign, one for the leading 1)
 *     m_i  = clamp(round(x_i / step), −(2^(n−1) − 1), 2^(n−1) − 1)
 *     x̂_i  = m_i · step
 * BFP12 = mant 4 (levels k·2^(e−2), |k| ≤ 7), BFP16 = mant 8.  Bits per value
 * n + 8/b.  x/step and m·step are exact (step is a power of two, and any
 * quotient small enough to lose bits rounds to 0 anyway), so the only
 * rounding is the named one:
 *   round=rne (default): ties to even — our choice, the d-Matrix rule is
 *             not documented (§3.1 "uncertain");
 *   round=rha: ties away from zero (microxcaling's 'nearest').
 * A value with |x|/step in [2^(n−1) − 1/2, 2^(n−1)) saturates at ±(2^(n−1) − 1).
 *
 * mxint8 is exactly BFP[8|8]{32} with round=rha: the MX scale 2^(e − emax)
 * with emax = 0 and the element int8·2^−6 give step = 2^(e − 6), and the
 * E8M0 scale byte is our exponent byte (code = e + 127; 0xFF = NaN is
 * never written and rejected on decode).
 *
 * Payload (little-endian, [ours]: neither source fixes a byte layout):
 * per row, ⌈cols/b⌉ exponent bytes (e + 127), then the row's `cols` codes of
 * n bits, LSB first, padded to a byte (quant_common.h bit streams), each
 * stored as m + 2^(n−1) − 1 ∈ [0, 2^n − 2]; the code 2^n − 1 is invalid.
 * A row's last block may be shorter than b (cols not a multiple of b: a KV
 * page row of head_size 8 under block 32 is one block of 8).  An all-zero
 * block stores exponent code 0 and zero significands and decodes to exact
 * zeros (§3.1 [ours]).  Every row starts at a computable offset, so
 * decode_rows reads any range.
 */
#include "kvq_internal.h"
#include "quant/codecs.h"
#include "quant/quant_common.h"
#include "kernels/kernels.h"
#include "kernels/rowkern.h"

#include <stdlib.h>

#define BFP_EXP_BIAS   127   /* exponent byte = e + 127 (E8M0)                  */
#define BFP_EXP_MIN    (-127)/* smallest shared exponent (E8M0 code 0)           */
#define BFP_EXP_MAX    127   /* largest (code 254); f32 values are < 2^128       */
#define BFP_EXP_NAN    0xFF  /* E8M0 NaN code: never written                     */
#define BFP_BLOCK_QUANTUM 8  /* block sizes are multiples of 8: whole code bytes */
#define BFP_CHUNK      1024  /* values per quantise/pack pass (whole blocks)     */
#define BFP_MAX_BLOCK  128   /* largest block (declared range)                   */
#define MX_BLOCK       32    /* OCP MX block size                                */
#define MX_INT8_MANT   8     /* MXINT8 element: int8 with implicit 2^-6          */

typedef enum { ROUND_RNE = 0, ROUND_RHA = 1 } bfp_round;

static const char *const round_names[] = {"rne", "rha", NULL};

static const kvq_param bfp_params[] = {
    {"mant", 2, 8, 4, 1, NULL, "significand bits n, sign included (4 = BFP12, 8 = BFP16)"},
    {"block", 8, BFP_MAX_BLOCK, 32, 1, NULL, "values sharing one 8-bit exponent, a multiple of 8"},
    {"round", 0, 1, ROUND_RNE, 0, round_names, "ties: rne = to even, rha = away from zero (MX emulator)"},
};

typedef struct {
    unsigned  mant;   /* n                                  */
    int64_t   block;  /* b                                  */
    bfp_round round;
    const char *name; /* codec name for error details      */
} bfp_state;

typedef struct {
    int64_t rows, cols;
    int64_t nblk;       /* exponent bytes per row           */
    size_t  row_bytes;  /* exponents + packed codes         */
    size_t  total;
} bfp_layout;

static int32_t qmax_of(unsigned mant) { return (1 << (mant - 1)) - 1; }

static bfp_layout layout_of(const bfp_state *s, const kvq_shape *sh)
{
    bfp_layout L;
    L.rows = kvq_shape_rows(sh);
    L.cols = kvq_shape_cols(sh);
    L.nblk = (L.cols + s->block - 1) / s->block;
    L.row_bytes = (size_t)L.nblk + kvq_bits_size((size_t)L.cols, s->mant);
    L.total = (size_t)L.rows * L.row_bytes;
    return L;
}

static kvq_err bfp_init(void *st, const kvq_params *p)
{
    bfp_state *s = st;
    s->mant = (unsigned)p->v[0];
    s->block = (int64_t)p->v[1];
    s->round = (bfp_round)p->v[2];
    s->name = "bfp";
    KVQ_FAIL_IF(s->block % BFP_BLOCK_QUANTUM != 0, KVQ_ERR_PARAM_RANGE,
                "bfp: block=%lld must be a multiple of %d (8..128)", (long long)s->block, BFP_BLOCK_QUANTUM);
    return KVQ_OK;
}

static kvq_err mxint8_init(void *st, const kvq_params *p)
{
    (void)p;
    bfp_state *s = st;
    s->mant = MX_INT8_MANT;
    s->block = MX_BLOCK;
    s->round = ROUND_RHA;
    s->name = "mxint8";
    return KVQ_OK;
}

static size_t bfp_bound(const void *st, const kvq_shape *s) { return layout_of(st, s).total; }

/* Shared exponent of a block with largest magnitude amax (finite). */
static int block_exponent(float amax)
{
    if (amax == 0.0f) return BFP_EXP_MIN;
    int k;
    (void)frexpf(amax, &k); /* amax = f·2^k, f ∈ [0.5, 1): floor(log2 amax) = k − 1, exact */
    int e = k - 1;
    return e < BFP_EXP_MIN ? BFP_EXP_MIN : e; /* e ≤ 127 for every finite f32 */
}

/* Codes of one block: the rounding rule is a constant argument (lz4 style),
 * so each call site compiles to one branch-free loop. */
static inline void quant_block(const float *restrict x, int64_t len, float step, int32_t qmax, bfp_round rnd,
                               uint8_t *restrict codes)
{
    for (int64_t i = 0; i < len; i++) {
        float v = x[i] / step; /* exact; |v| < 2^(n−1) ≤ 128, inside both helpers' range */
        int32_t q = rnd == ROUND_RNE ? kvq_round_rne(v) : kvq_round_rha(v);
        q = q < -qmax ? -qmax : q;
        q = q > qmax ? qmax : q;
        codes[i] = (uint8_t)(q + qmax);
    }
}

/* Values [c0, c0+len) of a row: len is whole blocks (except at the row's
 * end) and c0 a multiple of 8, so the codes start on a byte. */
static void encode_chunk(const bfp_state *s, const float *xr, int64_t c0, int64_t len, uint8_t *exps,
                         uint8_t *row_codes)
{
    uint8_t codes[BFP_CHUNK];
    int32_t qmax = qmax_of(s->mant);
    for (int64_t b0 = 0; b0 < len; b0 += s->block) {
        int64_t bl = len - b0 < s->block ? len - b0 : s->block;
        const float *x = xr + c0 + b0;
        int e = block_exponent(kvq_absmax(x, (size_t)bl));
        float step = ldexpf(1.0f, e - ((int)s->mant - 2)); /* ≥ 2^-133: an exact f32 subnormal */
        exps[(c0 + b0) / s->block] = (uint8_t)(e + BFP_EXP_BIAS);
        if (s->round == ROUND_RNE) quant_block(x, bl, step, qmax, ROUND_RNE, codes + b0);
        else quant_block(x, bl, step, qmax, ROUND_RHA, codes + b0);
    }
    kvq_bits_pack(codes, (size_t)len, s->mant, row_codes + (size_t)c0 * s->mant / 8);
}

static int64_t chunk_len(const bfp_state *s) { return BFP_CHUNK / s->block * s->block; }

static kvq_err bfp_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    const bfp_state *s = st;
    bfp_layout L = layout_of(s, &src->shape);
    KVQ_FAIL_IF(cap < L.total, KVQ_ERR_DST_TOO_SMALL, "%s: need %zu bytes, buffer has %zu", s->name, L.total, cap);
    const float *x = src->data;
    int64_t ch = chunk_len(s);
    for (int64_t r = 0; r < L.rows; r++) {
        uint8_t *row = (uint8_t *)dst + (size_t)r * L.row_bytes;
        for (int64_t c0 = 0; c0 < L.cols; c0 += ch)
            encode_chunk(s, x + r * L.cols, c0, L.cols - c0 < ch ? L.cols - c0 : ch, row, row + L.nblk);
    }
    *n = L.total;
    return KVQ_OK;
}

/* Values [c0, c0+len) of a stored row into y (the row's output), block by
 * block through the kernel table's codes_dequant slot: 0 + step·(c − qmax)
 * is (c − qmax)·step exactly (|c − qmax| ≤ 128, step a power of two), and
 * the one invalid code 2·qmax + 1 is the only one decoding above
 * qmax·step, so a max test over the block's floats finds it. */
static kvq_err decode_chunk(const bfp_state *s, const uint8_t *exps, const uint8_t *row_codes, int64_t c0,
                            int64_t len, int64_t row, float *y)
{
    const kvq_kern_codes_dequant_fn deq = kvq_kernels_get()->codes_dequant;
    int32_t qmax = qmax_of(s->mant);
    for (int64_t b0 = 0; b0 < len; b0 += s->block) {
        int64_t bl = len - b0 < s->block ? len - b0 : s->block, blk = (c0 + b0) / s->block;
        KVQ_FAIL_IF(exps[blk] == BFP_EXP_NAN, KVQ_ERR_CORRUPT, "%s: row %lld, block %lld: exponent byte 0xFF (NaN)",
                    s->name, (long long)row, (long long)blk);
        float step = ldexpf(1.0f, exps[blk] - BFP_EXP_BIAS - ((int)s->mant - 2)), lim = step * (float)qmax;
        float *yb = y + c0 + b0;
        deq(row_codes + (size_t)(c0 + b0) * s->mant / 8, s->mant, (size_t)bl, step, 0.0f, (float)qmax, yb);
        uint8_t bad = 0;
        for (int64_t i = 0; i < bl; i++) bad |= (uint8_t)(yb[i] > lim);
        KVQ_FAIL_IF(bad, KVQ_ERR_CORRUPT, "%s: row %lld, block %lld holds the invalid code %d", s->name,
                    (long long)row, (long long)blk, 2 * qmax + 1);
    }
    return KVQ_OK;
}

static kvq_err check_payload(const bfp_state *s, const bfp_layout *L, size_t n)
{
    KVQ_FAIL_IF(n != L->total, KVQ_ERR_CORRUPT, "%s: payload is %zu bytes, shape and parameters need %zu", s->name,
                n, L->total);
    return KVQ_OK;
}

static kvq_err bfp_decode_rows(void *st, const void *src, size_t n, const kvq_shape *sh, int64_t r0, int64_t r1,
                               float *out)
{
    const bfp_state *s = st;
    bfp_layout L = layout_of(s, sh);
    KVQ_TRY(check_payload(s, &L, n));
    int64_t ch = chunk_len(s);
    for (int64_t r = r0; r < r1; r++, out += L.cols) {
        const uint8_t *row = (const uint8_t *)src + (size_t)r * L.row_bytes;
        for (int64_t c0 = 0; c0 < L.cols; c0 += ch)
            KVQ_TRY(decode_chunk(s, row, row + L.nblk, c0, L.cols - c0 < ch ? L.cols - c0 : ch, r, out));
    }
    return KVQ_OK;
}

/* Exponent bytes are the scales, the significands the codes. */
static kvq_err bfp_parts(void *st, const void *src, size_t n, const kvq_shape *sh, kvq_codec_parts *out)
{
    (void)src;
    const bfp_state *s = st;
    bfp_layout L = layout_of(s, sh);
    KVQ_TRY(check_payload(s, &L, n));
    memset(out, 0, sizeof *out);
    out->scales = (uint64_t)L.rows * (uint64_t)L.nblk;
    out->codes = n - out->scales;
    return KVQ_OK;
}

/* ---- row kernel (kernels/rowkern.h) ------------------------------------------
 * Σ_i x̂_i·x_i per block = step·Σ (c_i − qmax)·x_i, a row's blocks summed
 * by the table's codes_row_dot slot (aux); step = lut[exponent byte].  ip = mant,
 * block, exponent bytes per row; fp[0] = qmax.  Binding decodes every row
 * once, so an exponent byte 0xFF or an invalid code is refused there. */
#define BFP_ROW_BLOCKS 64 /* block steps looked up per kernel call */

static float bfp_row_dot(const kvq_rowkern *k, int64_t r, const float *x)
{
    kvq_kern_codes_row_dot_fn rdot = (kvq_kern_codes_row_dot_fn)k->aux;
    const uint8_t *exps = k->p[0] + (size_t)r * k->stride[0], *codes = exps + k->ip[2];
    unsigned bits = (unsigned)k->ip[0];
    int64_t blk = k->ip[1];
    float acc = 0.0f, step[BFP_ROW_BLOCKS];
    for (int64_t b0 = 0; b0 < k->ip[2]; b0 += BFP_ROW_BLOCKS) {
        int64_t nb = k->ip[2] - b0 < BFP_ROW_BLOCKS ? k->ip[2] - b0 : BFP_ROW_BLOCKS, c0 = b0 * blk;
        for (int64_t b = 0; b < nb; b++) step[b] = k->lut[exps[b0 + b]];
        size_t n = (size_t)(k->cols - c0 < nb * blk ? k->cols - c0 : nb * blk);
        acc += rdot(codes + (size_t)c0 * bits / 8, bits, n, (size_t)blk, k->fp[0], step, NULL, x + c0);
    }
    return acc;
}

kvq_err kvq_bfp_rowkern(const void *st, const void *payload, size_t n, const kvq_shape *sh, kvq_rowkern *k)
{
    const bfp_state *s = st;
    bfp_layout L = layout_of(s, sh);
    KVQ_TRY(check_payload(s, &L, n));
    float *row = malloc((size_t)(L.cols ? L.cols : 1) * sizeof *row);
    KVQ_FAIL_IF(!row, KVQ_ERR_NOMEM, "%s: out of memory binding a row kernel", s->name);
    kvq_err e = KVQ_OK;
    void *sv = (void *)(uintptr_t)st; /* decode_rows reads the state only */
    for (int64_t r = 0; r < L.rows && !e; r++) e = bfp_decode_rows(sv, payload, n, sh, r, r + 1, row);
    free(row);
    if (e) return e;
    k->dot = bfp_row_dot;
    k->fast = kvq_kernels_get()->fast_dot;
    k->p[0] = payload;
    k->stride[0] = L.row_bytes;
    k->ip[0] = (int)s->mant;
    k->ip[1] = (int)s->block;
    k->ip[2] = (int)L.nblk;
    k->fp[0] = (float)qmax_of(s->mant);
    for (int c = 0; c < KVQ_ROWKERN_LUT; c++) k->lut[c] = ldexpf(1.0f, c - BFP_EXP_BIAS - ((int)s->mant - 2));
    k->aux = (void (*)(void))kvq_kernels_get()->codes_row_dot;
    return KVQ_OK;
}

/* Declared error bounds (‖x̂−x‖/‖x‖, finite inputs), for the defaults.
 * Per block with step d and max a ∈ [2^(n−2)·d, 2^(n−1)·d): a value that
 * rounds to 0 errs by |x| < d/2, any other unclamped one by ≤ d/2 ≤ |x|, and
 * the clamped maximum (a ≥ (2^(n−1) − 1/2)·d) by ≤ d, a small fraction of
 * a².  Σe²/Σx² is largest with the maximum exactly 2^(n−2)·d (no error) and
 * the b − 1 others at d/2:
 *   R² = ((b−1)/4) / (4^(n−2) + (b−1)/4)
 *   bfp (n 4, b 32): R = sqrt(7.75/23.75) = 0.5712;
 *   mxint8 (n 8, b 32): R = sqrt(7.75/4103.75) = 0.04346.
 * tests/test_bfp.c checks the formula over a (mant, block) sweep. */
#define BFP_REL_ERR    0.575
#define MXINT8_REL_ERR 0.0440

#define BFP_DOMAINS (KVQ_DOMAIN_WEIGHT | KVQ_DOMAIN_ACT | KVQ_DOMAIN_KV)

const kvq_codec kvq_codec_bfp = {
    .abi = KVQ_CODEC_ABI, .name = "bfp", .id = 40, .domain = BFP_DOMAINS, .flags = 0,
    .state_size = sizeof(bfp_state), .params = bfp_params,
    .n_params = sizeof bfp_params / sizeof bfp_params[0], .max_rel_err = BFP_REL_ERR,
    .summary = "block floating point: 8-bit shared exponent per 8-128 values, 2-8-bit significands",
    .init = bfp_init, .bound = bfp_bound, .encode = bfp_encode, .decode = NULL,
    .decode_rows = bfp_decode_rows, .parts = bfp_parts,
};

const kvq_codec kvq_codec_mxint8 = {
    .abi = KVQ_CODEC_ABI, .name = "mxint8", .id = 41, .domain = BFP_DOMAINS, .flags = 0,
    .state_size = sizeof(bfp_state), .params = NULL, .n_params = 0, .max_rel_err = MXINT8_REL_ERR,
    .summary = "OCP MXINT8: 32 values, E8M0 scale + int8 (= bfp:mant=8,block=32,round=rha)",
    .init = mxint8_init, .bound = bfp_bound, .encode = bfp_encode, .decode = NULL,
    .decode_rows = bfp_decode_rows, .parts = bfp_parts,
};
