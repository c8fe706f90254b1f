/*
 * kivi.c — codec `kivi` (id 50): KIVI's tuning-free asymmetric KV
 * quantization (Liu et al., ICML 2024; cache-methods.md §5): keys per
 * channel (groups of G tokens of one channel), values per token (groups of
 * G channels of one token), min/max with a zero point, 2/3/4 bits (2..8
 * accepted).  The layout and the quantizer are in quant/kivi.h; GEAR
 * (compress/gear.c) reuses them as its backbone.
 *
 * Mapping onto the KV cache (kvq.h, "KV cache hooks"): a sealed page is
 * [P][n_kv_heads][head_size], so axis=channel groups tokens inside one page
 * (G ≤ P; KIVI flushes keys every R tokens: page P = R, window W = 0 gives
 * exactly that) and axis=token groups the channels of one (token, head)
 * row.  KIVI's full-precision residual is the cache's f32 window.  The
 * cache names one spec per side, so the K side says axis=channel (the
 * default) and the V side axis=token.
 *
 * Reconstructed where the paper is silent [ours]: f16 Δ and z (the paper's
 * fp16 tensors), codes computed against the stored f16 values, round half
 * away from zero, rows padded to a byte, shorter last group.
 */
#include "quant/kivi.h"
#include "cache_internal.h"
#include "kernels/kern_attn.h"
#include "quant/codecs.h"
#include "quant/quant_common.h"

#define F16_EXP_MASK 0x7C00u /* all-ones exponent: Inf or NaN            */
#define KIVI_CHUNK   256     /* codes per pass; a multiple of 8, so every
                                chunk starts on a byte of its row       */

/* ---- layout ---------------------------------------------------------------- */

kvq_err kvq_kivi_geom_make(const kvq_shape *s, unsigned bits, kvq_kivi_axis axis, int64_t group, kvq_kivi_geom *g)
{
    KVQ_TRY(kvq_shape_check(s));
    KVQ_FAIL_IF(group < 1 || bits < KVQ_CODE_BITS_MIN || bits > KVQ_CODE_BITS_MAX, KVQ_ERR_PARAM_RANGE,
                "kivi: bits %u / group %lld out of range", bits, (long long)group);
    memset(g, 0, sizeof *g);
    const int64_t *D = s->dim;
    switch (s->ndim) {
    case 1: g->T = 1, g->H = 1, g->d = D[0]; break;
    case 2: g->T = D[0], g->H = 1, g->d = D[1]; break;
    case 3: g->T = D[0], g->H = D[1], g->d = D[2]; break;
    default: g->T = D[0] * D[1], g->H = D[2], g->d = D[3]; break;
    }
    g->bits = bits;
    g->axis = axis;
    g->group = group;
    g->group_log2 = -1;
    for (int b = 0; b < 31 && g->group_log2 < 0; b++)
        if (group == (int64_t)1 << b) g->group_log2 = b;
    int64_t kd = g->H * g->d;
    if (axis == KVQ_KIVI_CHANNEL) {
        g->n_groups = (g->T + group - 1) / group;
        g->n_entries = g->n_groups * kd;
    } else {
        g->n_groups = (g->d + group - 1) / group;
        g->n_entries = g->T * g->H * g->n_groups;
    }
    g->entries_bytes = (size_t)g->n_entries * KVQ_KIVI_ENTRY_BYTES;
    g->row_bytes = kvq_bits_size((size_t)kd, bits);
    g->codes_bytes = (size_t)g->T * g->row_bytes;
    g->total = g->entries_bytes + g->codes_bytes;
    return KVQ_OK;
}

/* ---- hot loops: constant trip counts and code widths ------------------------------ */
/* gcc -O2's vectoriser takes loops of known length only (as quant/rtn.c
 * does with its 32-value runs), and kvq_bits_unpack's runtime width costs
 * more than the dequantisation; so 2- and 4-bit codes are unpacked in
 * fixed runs, other widths by kvq_bits_unpack, and values dequantised in
 * runs of KIVI_VEC. */
#define KIVI_VEC  32

/* KIVI_VEC codes of 2 or 4 bits, LSB first as kvq_bits_pack writes them;
 * written out per byte so gcc's straight-line vectoriser takes them. */
static inline void unpack_run4(const uint8_t *restrict src, uint8_t *restrict codes)
{
    for (unsigned j = 0; j < KIVI_VEC / 2; j++) {
        codes[2 * j] = src[j] & 0x0F;
        codes[2 * j + 1] = src[j] >> 4;
    }
}

static inline void unpack_run2(const uint8_t *restrict src, uint8_t *restrict codes)
{
    for (unsigned j = 0; j < KIVI_VEC / 4; j++) {
        codes[4 * j] = src[j] & 3;
        codes[4 * j + 1] = (src[j] >> 2) & 3;
        codes[4 * j + 2] = (src[j] >> 4) & 3;
        codes[4 * j + 3] = src[j] >> 6;
    }
}

static void unpack_codes(const uint8_t *src, size_t n, unsigned bits, uint8_t *codes)
{
    size_t full = n - n % KIVI_VEC, i = 0;
    if (bits == 2)
        for (; i < full; i += KIVI_VEC) unpack_run2(src + i * 2 / 8, codes + i);
    else if (bits == 4)
        for (; i < full; i += KIVI_VEC) unpack_run4(src + i * 4 / 8, codes + i);
    if (i < n) kvq_bits_unpack(src + i * bits / 8, n - i, bits, codes + i); /* i·bits is whole bytes */
}

/* y = z + Δ·q over n values with per-value (channel) or one (token) grid. */
static inline void dequant_vec(const uint8_t *restrict q, const float *restrict z, const float *restrict d,
                               float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = z[i] + d[i] * (float)q[i];
}

static inline void dequant_one(const uint8_t *restrict q, float z, float d, float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = z + d * (float)q[i];
}

/* ---- one group's grid --------------------------------------------------------- */

typedef struct {
    float d, z, id; /* stored step and zero (f16-rounded), 1/d (0 when d = 0) */
} kivi_grid;

static kvq_err make_grid(float lo, float hi, unsigned bits, uint8_t *entry, kivi_grid *g, int64_t where)
{
    float d = (hi - lo) / (float)((1u << bits) - 1);
    uint16_t hd = kvq_f32_to_f16(d), hz = kvq_f32_to_f16(lo);
    KVQ_FAIL_IF((hd & F16_EXP_MASK) == F16_EXP_MASK || (hz & F16_EXP_MASK) == F16_EXP_MASK, KVQ_ERR_PARAM_RANGE,
                "kivi: group %lld: step %g / zero %g exceed the f16 range of the stored scales", (long long)where,
                (double)d, (double)lo);
    kvq_wr16(entry, hd);
    kvq_wr16(entry + 2, hz);
    g->d = kvq_f16_to_f32(hd);
    g->z = kvq_f16_to_f32(hz);
    g->id = g->d != 0.0f ? 1.0f / g->d : 0.0f; /* a non-zero f16 step is ≥ 2^-24: finite */
    return KVQ_OK;
}

kvq_err kvq_kivi_bad_entry(int64_t e, uint16_t hd, uint16_t hz)
{
    return KVQ_ERROR(KVQ_ERR_CORRUPT, "kivi: entry %lld holds a non-finite step or zero (0x%04x, 0x%04x)",
                     (long long)e, hd, hz);
}

static kvq_err read_grid(const uint8_t *src, int64_t e, kivi_grid *g) { return kvq_kivi_entry(src, e, &g->d, &g->z); }

/* q = clamp(round((x − z)/Δ), 0, L).  |v| stays far below 2^31 (the range
 * of kvq_round_rha): |x − z| ≤ (max − min) + 2^-11·|min| and 1/Δ ≤ 2^24. */
static inline uint8_t quant_one(float x, float z, float id, int32_t levels)
{
    int32_t q = kvq_round_rha((x - z) * id);
    q = q < 0 ? 0 : q;
    return (uint8_t)(q > levels ? levels : q);
}

/* ---- keys: groups of G tokens per (head, channel) ------------------------------ */

/* Token group [t0, t1), columns [c0, c0+n) of the H·d row. */
static kvq_err encode_channel_block(const kvq_kivi_geom *g, const float *x, int64_t gt, int64_t t0, int64_t t1,
                                    int64_t c0, int64_t n, uint8_t *dst)
{
    const int64_t kd = g->H * g->d;
    const int32_t levels = (int32_t)((1u << g->bits) - 1);
    float lo[KIVI_CHUNK], hi[KIVI_CHUNK], z[KIVI_CHUNK], id[KIVI_CHUNK];
    uint8_t codes[KIVI_CHUNK];
    for (int64_t j = 0; j < n; j++) lo[j] = hi[j] = x[t0 * kd + c0 + j];
    for (int64_t t = t0 + 1; t < t1; t++) {
        const float *xr = x + t * kd + c0;
        for (int64_t j = 0; j < n; j++) {
            lo[j] = xr[j] < lo[j] ? xr[j] : lo[j];
            hi[j] = xr[j] > hi[j] ? xr[j] : hi[j];
        }
    }
    for (int64_t j = 0; j < n; j++) {
        int64_t e = gt * kd + c0 + j;
        kivi_grid gr;
        KVQ_TRY(make_grid(lo[j], hi[j], g->bits, dst + (size_t)e * KVQ_KIVI_ENTRY_BYTES, &gr, e));
        z[j] = gr.z;
        id[j] = gr.id;
    }
    uint8_t *rows = dst + g->entries_bytes;
    for (int64_t t = t0; t < t1; t++) {
        const float *xr = x + t * kd + c0;
        for (int64_t j = 0; j < n; j++) codes[j] = quant_one(xr[j], z[j], id[j], levels);
        kvq_bits_pack(codes, (size_t)n, g->bits, rows + (size_t)t * g->row_bytes + (size_t)c0 * g->bits / 8);
    }
    return KVQ_OK;
}

static kvq_err decode_channel_block(const kvq_kivi_geom *g, const uint8_t *src, int64_t gt, int64_t t0,
                                    int64_t t1, int64_t c0, int64_t n, float *y)
{
    const int64_t kd = g->H * g->d;
    float z[KIVI_CHUNK], d[KIVI_CHUNK];
    uint8_t codes[KIVI_CHUNK];
    for (int64_t j = 0; j < n; j++) {
        int64_t e = gt * kd + c0 + j;
        kivi_grid gr;
        KVQ_TRY(read_grid(src, e, &gr));
        z[j] = gr.z;
        d[j] = gr.d;
    }
    const uint8_t *rows = src + g->entries_bytes;
    const int64_t full = n - n % KIVI_VEC;
    for (int64_t t = t0; t < t1; t++) {
        unpack_codes(rows + (size_t)t * g->row_bytes + (size_t)c0 * g->bits / 8, (size_t)n, g->bits, codes);
        float *yr = y + t * kd + c0;
        for (int64_t j = 0; j < full; j += KIVI_VEC) dequant_vec(codes + j, z + j, d + j, yr + j, KIVI_VEC);
        dequant_vec(codes + full, z + full, d + full, yr + full, (size_t)(n - full));
    }
    return KVQ_OK;
}

/* ---- values: groups of G channels per (token, head) ----------------------------- */

/* Segment of row t that shares one entry: [j, end) inside [c0, c0+n). */
static int64_t segment_end(const kvq_kivi_geom *g, int64_t j, int64_t stop)
{
    int64_t in_head = j % g->d, end = j - in_head % g->group + g->group;
    int64_t head_end = j - in_head + g->d;
    end = end < head_end ? end : head_end;
    return end < stop ? end : stop;
}

static int64_t token_entry(const kvq_kivi_geom *g, int64_t t, int64_t j)
{
    return (t * g->H + j / g->d) * g->n_groups + (j % g->d) / g->group;
}

static kvq_err encode_token_row(const kvq_kivi_geom *g, const float *x, int64_t t, uint8_t *dst)
{
    const int64_t kd = g->H * g->d;
    const int32_t levels = (int32_t)((1u << g->bits) - 1);
    const float *xr = x + t * kd;
    uint8_t codes[KIVI_CHUNK], *row = dst + g->entries_bytes + (size_t)t * g->row_bytes;
    for (int64_t j = 0; j < kd;) { /* entries first: every group of the row */
        int64_t end = segment_end(g, j, kd), e = token_entry(g, t, j);
        float lo, hi;
        kvq_minmax(xr + j, (size_t)(end - j), &lo, &hi);
        kivi_grid gr;
        KVQ_TRY(make_grid(lo, hi, g->bits, dst + (size_t)e * KVQ_KIVI_ENTRY_BYTES, &gr, e));
        j = end;
    }
    for (int64_t c0 = 0; c0 < kd; c0 += KIVI_CHUNK) {
        int64_t stop = kd - c0 < KIVI_CHUNK ? kd : c0 + KIVI_CHUNK;
        for (int64_t j = c0; j < stop;) {
            int64_t end = segment_end(g, j, stop);
            kivi_grid gr;
            KVQ_TRY(read_grid(dst, token_entry(g, t, j), &gr));
            float id = gr.d != 0.0f ? 1.0f / gr.d : 0.0f;
            for (int64_t i = j; i < end; i++) codes[i - c0] = quant_one(xr[i], gr.z, id, levels);
            j = end;
        }
        kvq_bits_pack(codes, (size_t)(stop - c0), g->bits, row + (size_t)c0 * g->bits / 8);
    }
    return KVQ_OK;
}

static kvq_err decode_token_row(const kvq_kivi_geom *g, const uint8_t *src, int64_t t, float *y)
{
    const int64_t kd = g->H * g->d;
    const uint8_t *row = src + g->entries_bytes + (size_t)t * g->row_bytes;
    uint8_t codes[KIVI_CHUNK];
    float *yr = y + t * kd;
    for (int64_t c0 = 0; c0 < kd; c0 += KIVI_CHUNK) {
        int64_t stop = kd - c0 < KIVI_CHUNK ? kd : c0 + KIVI_CHUNK;
        unpack_codes(row + (size_t)c0 * g->bits / 8, (size_t)(stop - c0), g->bits, codes);
        for (int64_t j = c0; j < stop;) {
            int64_t end = segment_end(g, j, stop), e = token_entry(g, t, j);
            kivi_grid gr;
            KVQ_TRY(read_grid(src, e, &gr));
            const uint8_t *q = codes + (j - c0);
            float *o = yr + j;
            if (end - j == KIVI_VEC) dequant_one(q, gr.z, gr.d, o, KIVI_VEC);
            else dequant_one(q, gr.z, gr.d, o, (size_t)(end - j));
            j = end;
        }
    }
    return KVQ_OK;
}

/* ---- whole tensors ---------------------------------------------------------------- */

kvq_err kvq_kivi_encode(const kvq_kivi_geom *g, const float *x, uint8_t *dst)
{
    const int64_t kd = g->H * g->d;
    memset(dst + g->entries_bytes, 0, g->codes_bytes); /* row padding bits are 0 */
    if (g->axis == KVQ_KIVI_TOKEN) {
        for (int64_t t = 0; t < g->T; t++) KVQ_TRY(encode_token_row(g, x, t, dst));
        return KVQ_OK;
    }
    for (int64_t gt = 0; gt < g->n_groups; gt++) {
        int64_t t0 = gt * g->group, t1 = t0 + g->group < g->T ? t0 + g->group : g->T;
        for (int64_t c0 = 0; c0 < kd; c0 += KIVI_CHUNK)
            KVQ_TRY(encode_channel_block(g, x, gt, t0, t1, c0, kd - c0 < KIVI_CHUNK ? kd - c0 : KIVI_CHUNK, dst));
    }
    return KVQ_OK;
}

kvq_err kvq_kivi_decode(const kvq_kivi_geom *g, const uint8_t *src, float *y)
{
    const int64_t kd = g->H * g->d;
    if (g->axis == KVQ_KIVI_TOKEN) {
        for (int64_t t = 0; t < g->T; t++) KVQ_TRY(decode_token_row(g, src, t, y));
        return KVQ_OK;
    }
    for (int64_t gt = 0; gt < g->n_groups; gt++) {
        int64_t t0 = gt * g->group, t1 = t0 + g->group < g->T ? t0 + g->group : g->T;
        for (int64_t c0 = 0; c0 < kd; c0 += KIVI_CHUNK)
            KVQ_TRY(decode_channel_block(g, src, gt, t0, t1, c0, kd - c0 < KIVI_CHUNK ? kd - c0 : KIVI_CHUNK, y));
    }
    return KVQ_OK;
}

/* ---- the codec ---------------------------------------------------------------------- */

static const char *const axis_names[] = {"channel", "token", NULL};

static const kvq_param kivi_params[] = {
    {"bits", 2, 8, 2, 1, NULL, "code width in bits (KIVI-2, KIVI-4)"},
    {"axis", 0, 1, KVQ_KIVI_CHANNEL, 0, axis_names,
     "channel: groups of G tokens per channel (keys); token: G channels per token (values)"},
    {"group", 1, 4096, 32, 1, NULL, "values per group G (KIVI's default 32)"},
};

typedef struct {
    unsigned      bits;
    kvq_kivi_axis axis;
    int64_t       group;
    kvq_buf       scratch; /* fused attention (contexts are single-threaded) */
} kivi_state;

static kvq_err kivi_init(void *st, const kvq_params *p)
{
    kivi_state *s = st;
    s->bits = (unsigned)p->v[0];
    s->axis = (kvq_kivi_axis)p->v[1];
    s->group = (int64_t)p->v[2];
    return KVQ_OK;
}

static void kivi_fini(void *st)
{
    kivi_state *s = st;
    kvq_buf_free(&s->scratch);
}

static size_t kivi_bound(const void *st, const kvq_shape *sh)
{
    const kivi_state *s = st;
    kvq_kivi_geom g;
    return kvq_kivi_geom_make(sh, s->bits, s->axis, s->group, &g) ? 0 : g.total;
}

static kvq_err kivi_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    const kivi_state *s = st;
    kvq_kivi_geom g;
    KVQ_TRY(kvq_kivi_geom_make(&src->shape, s->bits, s->axis, s->group, &g));
    KVQ_FAIL_IF(cap < g.total, KVQ_ERR_DST_TOO_SMALL, "kivi: need %zu bytes, buffer has %zu", g.total, cap);
    KVQ_TRY(kvq_kivi_encode(&g, src->data, dst));
    *n = g.total;
    return KVQ_OK;
}

static kvq_err kivi_decode(void *st, const void *src, size_t n, kvq_tensor *dst)
{
    const kivi_state *s = st;
    kvq_kivi_geom g;
    KVQ_TRY(kvq_kivi_geom_make(&dst->shape, s->bits, s->axis, s->group, &g));
    KVQ_FAIL_IF(n != g.total, KVQ_ERR_CORRUPT, "kivi: payload is %zu bytes, shape and parameters need %zu", n,
                g.total);
    return kvq_kivi_decode(&g, src, dst->data);
}

static kvq_err kivi_parts(void *st, const void *src, size_t n, const kvq_shape *sh, kvq_codec_parts *out)
{
    (void)src;
    const kivi_state *s = st;
    kvq_kivi_geom g;
    KVQ_TRY(kvq_kivi_geom_make(sh, s->bits, s->axis, s->group, &g));
    KVQ_FAIL_IF(n != g.total, KVQ_ERR_CORRUPT, "kivi: payload is %zu bytes, shape and parameters need %zu", n,
                g.total);
    memset(out, 0, sizeof *out);
    out->scales = g.entries_bytes;
    out->codes = g.codes_bytes;
    return KVQ_OK;
}

/* ---- fused attention over a cache page (the work is in quant/kivi_attn.c) ---- */

static kvq_err attn_setup(kvq_ctx *ctx, size_t n, const kvq_shape *sh, kvq_kivi_geom *g, kvq_kivi_attn_job *j)
{
    kivi_state *s = kvq_ctx_state(ctx);
    KVQ_TRY(kvq_kivi_geom_make(sh, s->bits, s->axis, s->group, g));
    KVQ_FAIL_IF(n != g->total, KVQ_ERR_CORRUPT, "kivi: page payload is %zu bytes, shape and parameters need %zu", n,
                g->total);
    KVQ_FAIL_IF(j->n_heads != g->H * j->group || j->n_tok < 0 || j->n_tok > g->T, KVQ_ERR_ARG,
                "kivi: attention of %d heads (group %d) over %d of %lld tokens, %lld KV heads", j->n_heads, j->group,
                j->n_tok, (long long)g->T, (long long)g->H);
    s->scratch.n = 0;
    KVQ_TRY(kvq_buf_reserve(&s->scratch, kvq_kivi_attn_scratch(g, j->n_heads)));
    j->scratch = s->scratch.p;
    return KVQ_OK;
}

static kvq_err kivi_qk(kvq_ctx *ctx, const void *payload, size_t n, const kvq_shape *sh, const float *q, int n_heads,
                       int group, int n_tok, float *scores, size_t stride)
{
    kvq_kivi_geom g;
    kvq_kivi_attn_job j = {.x = q, .y = scores, .n_heads = n_heads, .group = group, .n_tok = n_tok, .stride = stride};
    KVQ_TRY(attn_setup(ctx, n, sh, &g, &j));
    KVQ_TRY(kvq_kivi_attn_qk(&g, payload, &j));
    kvq_page_attn_scale(scores, n_heads, n_tok, stride, (int)g.d);
    return KVQ_OK;
}

static kvq_err kivi_pv(kvq_ctx *ctx, const void *payload, size_t n, const kvq_shape *sh, const float *p, int n_heads,
                       int group, int n_tok, size_t stride, float *out)
{
    kvq_kivi_geom g;
    kvq_kivi_attn_job j = {.x = p, .y = out, .n_heads = n_heads, .group = group, .n_tok = n_tok, .stride = stride};
    KVQ_TRY(attn_setup(ctx, n, sh, &g, &j));
    return kvq_kivi_attn_pv(&g, payload, &j);
}

const kvq_page_attn_i kvq_page_attn_kivi = {.qk = kivi_qk, .pv = kivi_pv};

/* Declared error bound at the defaults (2 bits, G = 32).  In a group with
 * range [m, M] every value errs by at most Δ/2 (plus f16 rounding of Δ and
 * z, < 2^-10 of the range), while Σx² over the group is at least
 * (M − m)²/2 (its two extremes alone).  So per group, and hence for the
 * whole tensor, ‖x̂ − x‖²/‖x‖² ≤ G·(Δ/2)²/((M − m)²/2) = G/(2L²) with
 * L = 2^b − 1: sqrt(32/2)/3 = 1.333; the slack covers the f16 rounding. */
#define KIVI_REL_ERR 1.34

const kvq_codec kvq_codec_kivi = {
    .abi = KVQ_CODEC_ABI, .name = "kivi", .id = 50, .domain = KVQ_DOMAIN_KV, .flags = 0,
    .state_size = sizeof(kivi_state), .params = kivi_params,
    .n_params = sizeof kivi_params / sizeof kivi_params[0], .max_rel_err = KIVI_REL_ERR,
    .summary = "KIVI: asymmetric min/max groups, keys per channel, values per token, f16 step+zero",
    .init = kivi_init, .fini = kivi_fini, .bound = kivi_bound, .encode = kivi_encode, .decode = kivi_decode, .parts = kivi_parts,
};
