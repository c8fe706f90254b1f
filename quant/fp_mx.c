/*
 * fp_mx.c — the FP4 block formats peers define, byte for byte:
 *
 *   mxfp4 (id 32): OCP MXFP4 (quant-methods.md §6.2) in ggml's layout and
 *     rounding (§6.1): blocks of 32, one E8M0 byte e = floor(log2 amax) − 2
 *     + 127 (0 for an all-zero block; computed with log2f and an int cast as
 *     ggml does), then 16 bytes of E2M1 nibbles, split-half.  Elements are
 *     the nearest of the 16 grid values at scale 2^(e−127), a tie going to
 *     the smaller magnitude (ggml keeps the first index); above 6·2^(e−127)
 *     they saturate.  The payload is exactly ggml's block_mxfp4 stream, so
 *     GGUF export writes it as type MXFP4.  Threshold counting (E2M1
 *     midpoints, tie ZERO) equals ggml's search: the scale is a power of
 *     two, so x/X is exact and adjacent-level differences are exact
 *     (Sterbenz).
 *
 *   nvfp4 (id 33): NVIDIA NVFP4 (§6.3) as ggml stores it (§6.1): blocks of 64
 *     = four UE4M3 scales (one per 16, ue = ue4m3(amax/6)) + 32 bytes of E2M1
 *     nibbles (sub-block s in bytes 8s..8s+7, element j low, j + 8 high); the
 *     element search is ggml's (|k·d − x| in f32, first minimum).  tscale=1
 *     adds NVIDIA's per-tensor f32 scale G = amax/(448·6) in front (blocks
 *     encode x/G; decode multiplies by G); tscale=0 stores G = 1 and the
 *     blocks are ggml's bytes exactly.
 *
 * Rows must be whole blocks (cols % 32, % 64): bound() is 0 otherwise, so
 * kvq quantize falls back for such tensors as llama-quantize does.  The
 * block loops live in fp_impl.h and run as kernels/kern_fp.h slots; NaN/Inf
 * are found by the block maxima (KVQ_FLAG_CHECKS_FINITE); both bind row
 * kernels (kernels/rowkern.h).
 */
#include "kvq_internal.h"
#include "kernels/rowkern.h"
#include "quant/codecs.h"
#include "quant/fp_impl.h"


/* ---- mxfp4 ------------------------------------------------------------------------ */
static size_t mx_bound(const void *st, const kvq_shape *s)
{
    (void)st;
    int64_t cols = kvq_shape_cols(s);
    if (cols % MX_BLOCK) return 0;
    return (size_t)(kvq_shape_numel(s) / MX_BLOCK) * MX_BYTES;
}

static kvq_err mx_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    size_t need = mx_bound(st, &src->shape);
    KVQ_FAIL_IF(!need && kvq_shape_numel(&src->shape), KVQ_ERR_SHAPE, "mxfp4: rows of %lld values are not whole blocks of %d",
                (long long)kvq_shape_cols(&src->shape), MX_BLOCK);
    KVQ_FAIL_IF(cap < need, KVQ_ERR_DST_TOO_SMALL, "mxfp4: need %zu bytes, buffer has %zu", need, cap);
    const float *x = src->data;
    uint8_t *out = dst;
    size_t nb = need / MX_BYTES, b = kvq_fp_kernels_get()->mx_blocks(x, nb, out);
    if (b < nb) return kvq_nonfinite_check(&kvq_codec_mxfp4, x + b * MX_BLOCK, MX_BLOCK, b * MX_BLOCK);
    *n = need;
    return KVQ_OK;
}

static kvq_err mx_decode_rows(void *st, const void *src, size_t n, const kvq_shape *s, int64_t r0, int64_t r1,
                              float *out)
{
    size_t need = mx_bound(st, s);
    KVQ_FAIL_IF(n != need, KVQ_ERR_CORRUPT, "mxfp4: payload is %zu bytes, shape needs %zu", n, need);
    int64_t bpr = kvq_shape_cols(s) / MX_BLOCK;
    const uint8_t *p = (const uint8_t *)src + (size_t)(r0 * bpr) * MX_BYTES;
    for (int64_t b = 0; b < (r1 - r0) * bpr; b++, p += MX_BYTES, out += MX_BLOCK) {
        uint8_t codes[MX_BLOCK];
        kvq_nibbles_unpack(p + 1, MX_BLOCK, KVQ_NIB_SPLIT_HALF, codes);
        float d = p[0] >= 2 ? pow2f((int)p[0] - 128) : ldexpf(1.0f, (int)p[0] - 128); /* e8m0_to_fp32_half */
        for (int j = 0; j < MX_BLOCK; j++) out[j] = kv_fp4[codes[j]] * d;
    }
    return KVQ_OK;
}

/* ---- nvfp4 ------------------------------------------------------------------------ */
static const kvq_param nv_params[] = {
    {"tscale", 0, 1, 1, 1, NULL, "1: NVIDIA's per-tensor f32 scale in front; 0: ggml's blocks alone"},
};

typedef struct {
    int tscale;
} nv_state;

static kvq_err nv_init(void *st, const kvq_params *p)
{
    ((nv_state *)st)->tscale = (int)p->v[0];
    return KVQ_OK;
}

static size_t nv_bound(const void *st, const kvq_shape *s)
{
    (void)st;
    if (kvq_shape_cols(s) % NV_BLOCK) return 0;
    return NV_HDR + (size_t)(kvq_shape_numel(s) / NV_BLOCK) * NV_BYTES;
}

/* The per-tensor scale G = amax/(448·6) (tscale=1; else 1), kept so that
 * decode stays finite; 1 when the tensor holds a NaN or Inf. */
static int nv_tensor_scale(const nv_state *s, const float *x, size_t n, float *g)
{
    *g = 1.0f;
    if (!s->tscale) return 0; /* no tensor pass: the blocks see NaN/Inf themselves */
    uint32_t ab = kvq_fp_kernels_get()->absmax_bits(x, n);
    if (ab >= KVQ_F32_INF_BITS) return 1;
    float amax = kvq_f32_of_bits(ab);
    if (amax > 0.0f) *g = amax / (NV_E4M3_MAX * NV_E2M1_MAX);
    if (!(*g >= FLT_MIN)) *g = 1.0f; /* amax so small that g underflows: ggml's blocks alone */
    while (!isfinite(*g * NV_E4M3_MAX * NV_E2M1_MAX)) *g = nextafterf(*g, 0.0f); /* decode stays finite */
    return 0;
}

static kvq_err nv_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    const nv_state *s = st;
    size_t need = nv_bound(st, &src->shape);
    KVQ_FAIL_IF(!need, KVQ_ERR_SHAPE, "nvfp4: rows of %lld values are not whole blocks of %d",
                (long long)kvq_shape_cols(&src->shape), NV_BLOCK);
    KVQ_FAIL_IF(cap < need, KVQ_ERR_DST_TOO_SMALL, "nvfp4: need %zu bytes, buffer has %zu", need, cap);
    const float *x = src->data;
    size_t nb = (need - NV_HDR) / NV_BYTES;
    float g;
    if (nv_tensor_scale(s, x, nb * NV_BLOCK, &g)) return kvq_nonfinite_check(&kvq_codec_nvfp4, x, nb * NV_BLOCK, 0);
    uint8_t *out = dst;
    memcpy(out, &g, 4);
    size_t b = kvq_fp_kernels_get()->nv_blocks(x, nb, 1.0f / g, out + NV_HDR);
    if (b < nb) return kvq_nonfinite_check(&kvq_codec_nvfp4, x + b * NV_BLOCK, NV_BLOCK, b * NV_BLOCK);
    *n = need;
    return KVQ_OK;
}

static kvq_err nv_decode_rows(void *st, const void *src, size_t n, const kvq_shape *s, int64_t r0, int64_t r1,
                              float *out)
{
    size_t need = nv_bound(st, s);
    KVQ_FAIL_IF(n != need || !need, KVQ_ERR_CORRUPT, "nvfp4: payload is %zu bytes, shape needs %zu", n, need);
    float g = kvq_rdf32(src);
    KVQ_FAIL_IF(!(g > 0.0f) || !isfinite(g), KVQ_ERR_CORRUPT, "nvfp4: bad tensor scale %g", (double)g);
    int64_t bpr = kvq_shape_cols(s) / NV_BLOCK;
    const uint8_t *p = (const uint8_t *)src + NV_HDR + (size_t)(r0 * bpr) * NV_BYTES;
    for (int64_t b = 0; b < (r1 - r0) * bpr; b++, p += NV_BYTES)
        for (int sb = 0; sb < NV_BLOCK / NV_SUB; sb++, out += NV_SUB) {
            uint8_t codes[NV_SUB];
            kvq_nibbles_unpack(p + NV_BLOCK / NV_SUB + sb * NV_SUB / 2, NV_SUB, KVQ_NIB_SPLIT_HALF, codes);
            float d = kvq_ue4m3_value(p[sb]) * 0.5f;
            for (int j = 0; j < NV_SUB; j++) out[j] = kv_fp4[codes[j]] * d * g;
        }
    return KVQ_OK;
}

/* ---- row kernels (kernels/rowkern.h) ----------------------------------------------
 * Region 0 is the blocks (nvfp4: after the tensor scale, which is fp[0]),
 * a row is ip[0] blocks; aux the kern_fp.h slot.  E8M0 and UE4M3 scales
 * decode to finite values whatever their bits, so only sizes and nvfp4's
 * tensor scale are checked. */
static float mx_rk_dot(const kvq_rowkern *k, int64_t r, const float *x)
{
    return ((kvq_fp_blocks_dot_fn)k->aux)(k->p[0] + (size_t)r * k->stride[0], k->ip[0], x);
}

static float nv_rk_dot(const kvq_rowkern *k, int64_t r, const float *x)
{
    return ((kvq_fp_blocks_dot_fn)k->aux)(k->p[0] + (size_t)r * k->stride[0], k->ip[0], x) * k->fp[0];
}

kvq_err kvq_mxfp4_rowkern(const void *st, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k)
{
    KVQ_FAIL_IF(k->cols % MX_BLOCK, KVQ_ERR_UNSUPPORTED, "mxfp4: rows of %lld values", (long long)k->cols);
    size_t need = mx_bound(st, s);
    KVQ_FAIL_IF(n != need, KVQ_ERR_CORRUPT, "mxfp4: payload is %zu bytes, shape needs %zu", n, need);
    k->dot = mx_rk_dot;
    k->fast = 1;
    k->p[0] = payload;
    k->ip[0] = (int)(k->cols / MX_BLOCK);
    k->stride[0] = (size_t)k->ip[0] * MX_BYTES;
    k->aux = (void (*)(void))kvq_fp_kernels_get()->mx_dot;
    return KVQ_OK;
}

kvq_err kvq_nvfp4_rowkern(const void *st, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k)
{
    KVQ_FAIL_IF(k->cols % NV_BLOCK, KVQ_ERR_UNSUPPORTED, "nvfp4: rows of %lld values", (long long)k->cols);
    size_t need = nv_bound(st, s);
    KVQ_FAIL_IF(n != need, KVQ_ERR_CORRUPT, "nvfp4: payload is %zu bytes, shape needs %zu", n, need);
    float g = kvq_rdf32(payload);
    KVQ_FAIL_IF(!(g > 0.0f) || !isfinite(g), KVQ_ERR_CORRUPT, "nvfp4: bad tensor scale %g", (double)g);
    k->dot = nv_rk_dot;
    k->fast = 1;
    k->p[0] = (const uint8_t *)payload + NV_HDR;
    k->ip[0] = (int)(k->cols / NV_BLOCK);
    k->stride[0] = (size_t)k->ip[0] * NV_BYTES;
    k->fp[0] = g;
    k->aux = (void (*)(void))kvq_fp_kernels_get()->nv_dot;
    return KVQ_OK;
}

/* Bounds, for finite inputs whose block scales are in range (mxfp4: block
 * maxima >= 2^-125, so e does not wrap; nvfp4: amax/(6·G) of every 16 values
 * in UE4M3's normal range, >= 2^-6).  mxfp4: amax lies in [4X, 8X), X =
 * 2^(e−127); the worst mix is one value at 4X and 31 on the tie X/4 (rounded
 * to 0): sqrt((31/16) / (16 + 31/16)) = 0.329; saturation of values in
 * (6X, 8X) errs by less than 25% of each.  nvfp4: the UE4M3 scale is within
 * 1/16 of amax/6 (3 mantissa bits, half up), so saturation costs at most
 * amax/16 and the worst mix of 16 (one maximum, 15 on the first tie) gives
 * sqrt((15/576) / (1 + 15/576)) = 0.16; declared with margin.  Below those
 * ranges a block's scale can round to 0 and the bound degrades to 1. */
#define MX_REL_ERR 0.34
#define NV_REL_ERR 0.30

const kvq_codec kvq_codec_mxfp4 = {
    .abi = KVQ_CODEC_ABI, .name = "mxfp4", .id = 32,
    .domain = KVQ_DOMAIN_WEIGHT | KVQ_DOMAIN_ACT | KVQ_DOMAIN_KV, .flags = KVQ_FLAG_CHECKS_FINITE,
    .state_size = 0, .params = NULL, .n_params = 0, .max_rel_err = MX_REL_ERR,
    .summary = "OCP MXFP4: E2M1 x32 + E8M0 scale, ggml block_mxfp4 bytes and tie rule (4.25 bpw)",
    .bound = mx_bound, .encode = mx_encode, .decode = NULL, .decode_rows = mx_decode_rows,
};

const kvq_codec kvq_codec_nvfp4 = {
    .abi = KVQ_CODEC_ABI, .name = "nvfp4", .id = 33,
    .domain = KVQ_DOMAIN_WEIGHT | KVQ_DOMAIN_ACT | KVQ_DOMAIN_KV, .flags = KVQ_FLAG_CHECKS_FINITE,
    .state_size = sizeof(nv_state), .params = nv_params, .n_params = sizeof nv_params / sizeof nv_params[0],
    .max_rel_err = NV_REL_ERR,
    .summary = "NVFP4: E2M1 x16 + UE4M3 scale (ggml blocks of 64) + per-tensor f32 scale (4.5 bpw)",
    .init = nv_init, .bound = nv_bound, .encode = nv_encode, .decode = NULL, .decode_rows = nv_decode_rows,
};
