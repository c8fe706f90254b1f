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
 * kvq quantize falls back for such tensors as llama-quantize does.
 */
#include "kvq_internal.h"
#include "quant/codecs.h"
#include "quant/fp_impl.h"

#define MX_BLOCK     32
#define MX_BYTES     17      /* e8m0 + 16 bytes of nibbles                 */
#define MX_EMIN_ELEM 2       /* emax of E2M1: e = floor(log2 amax) − 2 + 127 */
#define NV_BLOCK     64
#define NV_SUB       16
#define NV_BYTES     36      /* 4 ue4m3 + 32 bytes of nibbles              */
#define NV_HDR       4       /* f32 per-tensor scale                       */
#define NV_E2M1_MAX  6.0f
#define NV_E4M3_MAX  448.0f

#define MX_E_BITS_MAX 253   /* 2^(127−e) is a normal float for e <= 253      */

/* 2^k for a normal result (−126 <= k <= 127), built from its bits. */
static inline float pow2f(int k)
{
    uint32_t b = (uint32_t)(k + 127) << 23;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* E2M1 values doubled, ggml's kvalues_mxfp4 (index 8 is −0). */
static const float kv_fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* ---- mxfp4 ------------------------------------------------------------------------ */
static size_t mx_bound(const void *st, const kvq_shape *s)
{
    (void)st;
    int64_t cols = kvq_shape_cols(s);
    if (cols % MX_BLOCK) return 0;
    return (size_t)(kvq_shape_numel(s) / MX_BLOCK) * MX_BYTES;
}

/* ggml's e: (uint8_t)(floorf(log2f(amax)) − 2 + 127), the float converted
 * through int32 as x86 does (defined here for every finite amax).  For a
 * normal amax whose mantissa is below 2 − 2^-11, floor(log2f) is the
 * exponent field: log2 lies in [k, k + 1 − 7·10^-4], log2f(2^k) = k and a
 * faithful log2f stays on the same side of k + 1 (its ulp is <= 2^-16 for
 * |k| < 128); other values (just below a power of two, subnormals) take
 * log2f itself. */
#define MX_MANT_NEAR_TOP 0x7FF000u

static uint8_t mx_exponent(float amax)
{
    if (!(amax > 0.0f)) return 0;
    uint32_t u;
    memcpy(&u, &amax, 4);
    if ((u >> 23) != 0 && (u & 0x7FFFFFu) < MX_MANT_NEAR_TOP)
        return (uint8_t)((int32_t)(u >> 23) - MX_EMIN_ELEM); /* exponent − 127 − 2 + 127 */
    float f = floorf(log2f(amax)) - MX_EMIN_ELEM + 127;
    return (uint8_t)(int32_t)f;
}

/* The E2M1 thresholds of fp_impl.h's table path written out for one block
 * (ties toward zero: strict compares), in int32 lanes so gcc -O2
 * vectorises the 32-value loop; tests/test_fp.c checks it against the
 * table path and ggml's golden bytes. */
static int mx_encode_block(const float *restrict x, uint8_t *restrict out)
{
    int32_t c[MX_BLOCK];
    uint32_t amax = kvq_absmax_bits(x, MX_BLOCK);
    if (amax >= KVQ_F32_INF_BITS) return 1; /* NaN or Inf: nothing written */
    uint8_t e = mx_exponent(kvq_f32_of_bits(amax));
    const float inv = e <= MX_E_BITS_MAX ? pow2f(127 - (int)e) : ldexpf(1.0f, 127 - (int)e); /* 1/2^(e−127) */
    out[0] = e;
    for (int j = 0; j < MX_BLOCK; j++) {
        float a = fabsf(x[j]) * inv;
        int32_t m = (a > 0.25f) + (a > 0.75f) + (a > 1.25f) + (a > 1.75f) + (a > 2.5f) + (a > 3.5f) + (a > 5.0f);
        c[j] = m | (((x[j] < 0.0f) & (m != 0)) << 3);
    }
    for (int j = 0; j < MX_BLOCK / 2; j++) out[1 + j] = (uint8_t)(c[j] | c[j + MX_BLOCK / 2] << 4);
    return 0;
}

static kvq_err mx_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    size_t need = mx_bound(st, &src->shape);
    KVQ_FAIL_IF(!need && kvq_shape_numel(&src->shape), KVQ_ERR_SHAPE, "mxfp4: rows of %lld values are not whole blocks of %d",
                (long long)kvq_shape_cols(&src->shape), MX_BLOCK);
    KVQ_FAIL_IF(cap < need, KVQ_ERR_DST_TOO_SMALL, "mxfp4: need %zu bytes, buffer has %zu", need, cap);
    const float *x = src->data;
    uint8_t *out = dst;
    for (size_t b = 0; b < need / MX_BYTES; b++)
        if (mx_encode_block(x + b * MX_BLOCK, out + b * MX_BYTES))
            return kvq_nonfinite_check(&kvq_codec_mxfp4, x + b * MX_BLOCK, MX_BLOCK, b * MX_BLOCK);
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

/* ggml's best_index_mxfp4: first index of the smallest |kv·d − x| in f32. */
static uint8_t nv_best(float x, float d)
{
    int best = 0;
    float be = fabsf(kv_fp4[0] * d - x);
    for (int i = 1; i < 16; i++) {
        float e = fabsf(kv_fp4[i] * d - x);
        best = e < be ? i : best;
        be = e < be ? e : be;
    }
    return (uint8_t)best;
}

/* nv_best for 16 values at once, valid when d > 0 and every |v| <= 2^20·d
 * (nv_encode_block checks).  Then only the two levels around a = |v| can
 * hold the smallest rounded error: any other level, of either sign, is at
 * least d (the smallest level spacing) farther than the nearer one, a
 * relative gap >= 2^-21 that f32 rounding of the differences cannot close
 * (index 0, never −0 at index 8, wins for a nearest 0).  Between levels
 * D < U the choice is fl(U − a) < fl(a − D): false for a <= (D + U)/2
 * (rounding is monotone), and for a in ((D + U)/2, U] both differences are
 * exact (Sterbenz: a >= U/2, and U <= 2D or D = 0), so true — a tie keeps
 * the smaller index.  The code is the count of midpoints below a,
 * each (kv_i + kv_{i+1})/2·d exact (a few significant bits). */
#define NV_FAST_RANGE 1048576.0f /* 2^20 */

static void nv_codes_fast(const float *restrict v, float d, uint8_t *restrict packed)
{
    const float m0 = 0.5f * d, m1 = 1.5f * d, m2 = 2.5f * d, m3 = 3.5f * d, m4 = 5.0f * d, m5 = 7.0f * d,
                m6 = 10.0f * d;
    int32_t c[NV_SUB];
    for (int j = 0; j < NV_SUB; j++) {
        float a = fabsf(v[j]);
        int32_t m = (a > m0) + (a > m1) + (a > m2) + (a > m3) + (a > m4) + (a > m5) + (a > m6);
        c[j] = m | (((v[j] < 0.0f) & (m != 0)) << 3);
    }
    for (int j = 0; j < NV_SUB / 2; j++) packed[j] = (uint8_t)(c[j] | c[j + NV_SUB / 2] << 4);
}

/* One block of 64: the four sub-block scales first (independent chains of
 * absmax, division and UE4M3 rounding the CPU overlaps), then the codes.
 * 1 when the block holds a NaN or Inf (nothing written). */
static int nv_encode_block(const float *x, float inv_g, uint8_t *out)
{
    float v[NV_BLOCK], d[NV_BLOCK / NV_SUB];
    uint32_t amax[NV_BLOCK / NV_SUB];
    for (int j = 0; j < NV_BLOCK; j++) v[j] = x[j] * inv_g;
    for (int s = 0; s < NV_BLOCK / NV_SUB; s++) amax[s] = kvq_absmax_bits(v + s * NV_SUB, NV_SUB);
    uint32_t top = amax[0] > amax[1] ? amax[0] : amax[1], top2 = amax[2] > amax[3] ? amax[2] : amax[3];
    if ((top > top2 ? top : top2) >= KVQ_F32_INF_BITS) return 1;
    for (int s = 0; s < NV_BLOCK / NV_SUB; s++) {
        out[s] = kvq_ue4m3_from_f32(kvq_f32_of_bits(amax[s]) / NV_E2M1_MAX);
        d[s] = kvq_ue4m3_value(out[s]) * 0.5f;
    }
    for (int s = 0; s < NV_BLOCK / NV_SUB; s++) {
        uint8_t *dst = out + NV_BLOCK / NV_SUB + s * NV_SUB / 2, codes[NV_SUB];
        if (d[s] > 0.0f && kvq_f32_of_bits(amax[s]) <= NV_FAST_RANGE * d[s]) {
            nv_codes_fast(v + s * NV_SUB, d[s], dst); /* packed split-half */
        } else {
            for (int j = 0; j < NV_SUB; j++) codes[j] = nv_best(v[s * NV_SUB + j], d[s]);
            kvq_nibbles_pack(codes, NV_SUB, KVQ_NIB_SPLIT_HALF, dst);
        }
    }
    return 0;
}

/* The per-tensor scale G = amax/(448·6) (tscale=1; else 1), kept so that
 * decode stays finite; 1 when the tensor holds a NaN or Inf. */
static int nv_tensor_scale(const nv_state *s, const float *x, size_t n, float *g)
{
    *g = 1.0f;
    if (!s->tscale) return 0; /* no tensor pass: the blocks see NaN/Inf themselves */
    uint32_t ab = kvq_absmax_bits(x, n);
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
    for (size_t b = 0; b < nb; b++)
        if (nv_encode_block(x + b * NV_BLOCK, 1.0f / g, out + NV_HDR + b * NV_BYTES))
            return kvq_nonfinite_check(&kvq_codec_nvfp4, x + b * NV_BLOCK, NV_BLOCK, b * NV_BLOCK);
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
