/*
 * ggml.c — codecs q8_0 (id 20) and q4_0 (id 21): ggml's Q8_0 and Q4_0 block
 * layouts and reference quantizers, reproduced byte for byte
 * (quant-methods.md §6.1; ggml-org/ggml src/ggml-common.h, src/ggml-quants.c
 * quantize_row_q8_0_ref / quantize_row_q4_0_ref, dequantize_row_q*_0).
 *
 * Payload: the ggml blocks back to back, row-major; a row of `cols` values
 * is cols/32 blocks, so cols must be a multiple of 32 (KVQ_ERR_SHAPE if not).
 *   Q8_0 block (34 B): f16 d; int8 qs[32];           x = d·q
 *   Q4_0 block (18 B): f16 d; u8 qs[16] (nibbles);   x = d·(q − 8)
 *   Q4_0 nibbles: byte j = code j (low) | code j+16 (high)  ("split half").
 *
 * Reference rules kept exactly (the golden files in ../shared/data/golden
 * were made by ggml's _ref functions; tests/test_codecs.c compares bytes):
 *   Q8_0: d = amax/127 (f32); id = d ? 1/d : 0; q = roundf(x·id) (RHA).
 *   Q4_0: max = signed value of the first element of largest magnitude;
 *         d = max/−8; id = d ? 1/d : 0; q = min(15, (int8)(x·id + 8.5)).
 *   Both store d rounded to f16 (RNE) but quantise with the f32 d.
 * The block loops live behind the kernel slots (kernels/kernels.h): the
 * scalar reference in kernels/cpu/ref.c (which documents the rounding and
 * what we store where ggml is undefined), AVX2 in kernels/cpu/avx2.c, both
 * byte-identical.  A block whose scale exceeds the f16 range (|x| > ~8.3e6
 * for q8_0, > ~5.2e5 for q4_0) would be stored
 * by ggml as an Inf scale; we reject it with KVQ_ERR_PARAM_RANGE.
 */
#include "kvq_internal.h"
#include "quant/codecs.h"
#include "kernels/kernels.h"
#include "kernels/rowkern.h"

#define QK          KVQ_QK  /* elements per block (ggml QK8_0 = QK4_0 = 32)      */

typedef enum { GG_Q8_0, GG_Q4_0 } gg_type;

typedef struct {
    gg_type type;
} gg_state;

static kvq_kt kern_type(gg_type t) { return t == GG_Q8_0 ? KVQ_KT_Q8_0 : KVQ_KT_Q4_0; }
static size_t block_bytes(gg_type t) { return kvq_kern_block_bytes(kern_type(t)); }
static const char *type_name(gg_type t) { return t == GG_Q8_0 ? "q8_0" : "q4_0"; }

static kvq_err check_shape(gg_type t, const kvq_shape *s)
{
    int64_t cols = kvq_shape_cols(s);
    KVQ_FAIL_IF(cols % QK != 0, KVQ_ERR_SHAPE,
                "%s: rows of %lld values are not a whole number of %d-value blocks "
                "(the innermost dimension must be a multiple of %d)",
                type_name(t), (long long)cols, QK, QK);
    return KVQ_OK;
}

static size_t gg_bound(const void *st, const kvq_shape *s)
{
    gg_type t = ((const gg_state *)st)->type;
    size_t blocks = ((size_t)kvq_shape_numel(s) + QK - 1) / QK;
    return blocks * block_bytes(t);
}

static kvq_err gg_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    gg_type t = ((gg_state *)st)->type;
    KVQ_TRY(check_shape(t, &src->shape));
    size_t nb = (size_t)kvq_shape_numel(&src->shape) / QK, bb = block_bytes(t);
    KVQ_FAIL_IF(cap < nb * bb, KVQ_ERR_DST_TOO_SMALL, "%s: need %zu bytes, buffer has %zu", type_name(t),
                nb * bb, cap);
    uint8_t *o = dst;
    /* One pass: the slot reports NaN/Inf input and out-of-range scales
     * (KVQ_FLAG_CHECKS_FINITE); only a failed call searches for the culprit. */
    unsigned got = kvq_kernels_get()->quantize[kern_type(t)](src->data, o, nb);
    if (KVQ_UNLIKELY(got & KVQ_KERN_NONFINITE))
        KVQ_TRY(kvq_nonfinite_check(t == GG_Q8_0 ? &kvq_codec_q8_0 : &kvq_codec_q4_0, src->data, nb * QK, 0));
    size_t bad = got & KVQ_KERN_SCALE_RANGE ? kvq_kern_bad_scale(kern_type(t), o, nb) : nb;
    KVQ_FAIL_IF(bad < nb, KVQ_ERR_PARAM_RANGE, "%s: block %zu (element %zu): scale %g exceeds the f16 range",
                type_name(t), bad, bad * QK, (double)kvq_f16_to_f32(kvq_rd16(o + bad * bb)));
    *n = nb * bb;
    return KVQ_OK;
}

/* Blocks [b0, b0+nb) of a payload into y[nb·32] (the dequantize slot). */
static kvq_err dequant_blocks(gg_type t, const uint8_t *p, size_t b0, size_t nb, float *restrict y)
{
    size_t bb = block_bytes(t), bad = kvq_kern_bad_scale(kern_type(t), p + b0 * bb, nb);
    KVQ_FAIL_IF(bad < nb, KVQ_ERR_CORRUPT, "%s: block %zu has a non-finite scale (0x%04x)", type_name(t),
                b0 + bad, kvq_rd16(p + (b0 + bad) * bb));
    kvq_kernels_get()->dequantize[kern_type(t)](p + b0 * bb, y, nb);
    return KVQ_OK;
}

static kvq_err check_payload(gg_type t, const kvq_shape *s, size_t n)
{
    KVQ_TRY(check_shape(t, s));
    size_t need = (size_t)kvq_shape_numel(s) / QK * block_bytes(t);
    KVQ_FAIL_IF(n != need, KVQ_ERR_CORRUPT, "%s: payload is %zu bytes, shape needs %zu", type_name(t), n, need);
    return KVQ_OK;
}

static kvq_err gg_decode(void *st, const void *src, size_t n, kvq_tensor *dst)
{
    gg_type t = ((gg_state *)st)->type;
    KVQ_TRY(check_payload(t, &dst->shape, n));
    return dequant_blocks(t, src, 0, (size_t)kvq_shape_numel(&dst->shape) / QK, dst->data);
}

static kvq_err gg_decode_rows(void *st, const void *src, size_t n, const kvq_shape *s, int64_t r0, int64_t r1,
                              float *out)
{
    gg_type t = ((gg_state *)st)->type;
    KVQ_TRY(check_payload(t, s, n));
    size_t bpr = (size_t)kvq_shape_cols(s) / QK; /* blocks per row */
    return dequant_blocks(t, src, (size_t)r0 * bpr, (size_t)(r1 - r0) * bpr, out);
}

static kvq_err init_q8_0(void *st, const kvq_params *p)
{
    (void)p;
    ((gg_state *)st)->type = GG_Q8_0;
    return KVQ_OK;
}

static kvq_err init_q4_0(void *st, const kvq_params *p)
{
    (void)p;
    ((gg_state *)st)->type = GG_Q4_0;
    return KVQ_OK;
}

/* Declared error bounds (‖x̂−x‖/‖x‖, finite inputs whose block scales are
 * f16-normal).  Per block with amax a and step d (a/127, resp. a/8): an
 * element that rounds to 0 has error |x| < d/2; any other has |x| ≥ d/2 and
 * error ≤ d/2 + |q|·d·2^-11 = c (f16 rounding of d, |q| ≤ 127 resp. 8);
 * Q4_0's clamped side (x/d ≥ 7.5) has error ≤ 1.004·d at |x| ≥ 7.5·d, a
 * smaller ratio.  The largest ratio of Σe² to Σx² ≥ a² + Σx_i² therefore
 * puts the 31 other elements at d/2 with error c:
 *   R² = (31c² + (a·2^-11)²) / (a² + 31·d²/4)
 *   q8_0: c = 0.5620·d, a = 127·d → R = 0.02464;  q4_0: c = 0.5039·d,
 *   a = 8·d → R = 0.3312.  Declared with a little headroom. */
#define Q8_0_REL_ERR 0.025
#define Q4_0_REL_ERR 0.335

#define GG_DOMAINS (KVQ_DOMAIN_WEIGHT | KVQ_DOMAIN_ACT | KVQ_DOMAIN_KV)

const kvq_codec kvq_codec_q8_0 = {
    .abi = KVQ_CODEC_ABI, .name = "q8_0", .id = 20, .domain = GG_DOMAINS, .flags = KVQ_FLAG_CHECKS_FINITE,
    .state_size = sizeof(gg_state), .params = NULL, .n_params = 0, .max_rel_err = Q8_0_REL_ERR,
    .summary = "ggml Q8_0: 32-value blocks, f16 scale + int8 (byte-exact with ggml)",
    .init = init_q8_0, .bound = gg_bound, .encode = gg_encode, .decode = gg_decode,
    .decode_rows = gg_decode_rows,
};

const kvq_codec kvq_codec_q4_0 = {
    .abi = KVQ_CODEC_ABI, .name = "q4_0", .id = 21, .domain = GG_DOMAINS, .flags = KVQ_FLAG_CHECKS_FINITE,
    .state_size = sizeof(gg_state), .params = NULL, .n_params = 0, .max_rel_err = Q4_0_REL_ERR,
    .summary = "ggml Q4_0: 32-value blocks, f16 scale + 4-bit codes (byte-exact with ggml)",
    .init = init_q4_0, .bound = gg_bound, .encode = gg_encode, .decode = gg_decode,
    .decode_rows = gg_decode_rows,
};

/* ---- row kernel (kernels/rowkern.h) --------------------------------------------
 * Region 0 is the blocks, one row = cols/32 blocks; ip[0] the block type,
 * ip[1] blocks per row; aux the table's dot slot, aux_rows its dots slot.  Every scale is checked
 * here once, so the products need no checks. */
static float gg_row_dot(const kvq_rowkern *k, int64_t r, const float *x)
{
    kvq_kern_dot_fn dot = (kvq_kern_dot_fn)k->aux;
    return dot(k->p[0] + (size_t)r * k->stride[0], x, (size_t)k->ip[1]);
}

static void gg_row_dots(const kvq_rowkern *k, int64_t r0, int64_t r1, const float *x, float *out)
{
    kvq_kern_dots_fn dots = (kvq_kern_dots_fn)k->aux_rows;
    dots(k->p[0] + (size_t)r0 * k->stride[0], k->stride[0], (size_t)(r1 - r0), x, (size_t)k->ip[1], out);
}

kvq_err kvq_ggml_rowkern(const void *st, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k)
{
    gg_type t = ((const gg_state *)st)->type;
    KVQ_TRY(check_payload(t, s, n));
    size_t nb = n / block_bytes(t), bad = kvq_kern_bad_scale(kern_type(t), payload, nb);
    KVQ_FAIL_IF(bad < nb, KVQ_ERR_CORRUPT, "%s: block %zu has a non-finite scale", type_name(t), bad);
    const kvq_kernels *kt = kvq_kernels_get();
    k->dot = gg_row_dot;
    k->fast = kt->fast_dot;
    k->p[0] = payload;
    k->ip[0] = (int)kern_type(t);
    k->ip[1] = (int)(k->cols / QK);
    k->stride[0] = (size_t)k->ip[1] * block_bytes(t);
    k->aux = (void (*)(void))kt->dot[kern_type(t)];
    k->dots = gg_row_dots;
    k->aux_rows = (void (*)(void))kt->dots[kern_type(t)];
    return KVQ_OK;
}
