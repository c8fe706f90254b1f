/*
 * kivi_attn.c — one query's attention over a KIVI-encoded KV page without
 * decoding it (issue 9 item 1, "dequantize fused into the score and value
 * loops"; issue 6's decode speed with a compressed cache).  Layout:
 * quant/kivi.h; kernels: kernels/kern_attn.h.  GEAR's backbone
 * (compress/gear.c) runs through the same functions.
 *
 * A value is x̂ = z + Δ·c with (Δ, z) per group, so the grid comes out of
 * the inner loops:
 *   keys per channel (groups of G tokens): for a token group and KV head,
 *     w_i = q_i·Δ_i and s0 = Σ q_i z_i once, then per token
 *     score_t = s0 + Σ w_i c_ti  (slot dot_rows over the packed rows);
 *   keys per token (G channels): score_t = Σ_groups z·Σ_seg q + Δ·Σ_seg q c;
 *   values per token: o_i += (pΔ)·c_i + p·z  (slot axpy_codes);
 *   values per channel: a_i = Σ_t p_t c_ti over the token group (axpy_codes
 *     with b = 0), then o_i += (Σ_t p_t)·z_i + Δ_i·a_i.
 * Codes are read in place when every head (and, per token, every group)
 * starts on a byte and the width is 2, 4 or 8 bits; otherwise the codes
 * in use are first unpacked to bytes in the scratch (kvq_kern_code_at).
 */
#include "kernels/kern_attn.h"
#include "quant/kivi.h"

/* Codes of one KV head over tokens [t0, t1): rows of `stride` bytes. */
typedef struct {
    const uint8_t *p;
    size_t         stride;
    unsigned       bits;
} code_view;

static int packed_in_place(const kvq_kivi_geom *g)
{
    int width_ok = g->bits == 2 || g->bits == 4 || g->bits == 8;
    int heads_ok = (g->d * (int64_t)g->bits) % 8 == 0;
    int groups_ok = g->axis == KVQ_KIVI_CHANNEL || (g->group * (int64_t)g->bits) % 8 == 0;
    return width_ok && heads_ok && groups_ok;
}

static code_view head_codes(const kvq_kivi_geom *g, const uint8_t *src, int64_t t0, int64_t t1, int64_t kvh,
                            uint8_t *buf)
{
    const uint8_t *rows = src + g->entries_bytes;
    if (packed_in_place(g)) {
        code_view v = {rows + (size_t)t0 * g->row_bytes + (size_t)(kvh * g->d) * g->bits / 8, g->row_bytes, g->bits};
        return v;
    }
    for (int64_t t = t0; t < t1; t++)
        for (int64_t c = 0; c < g->d; c++)
            buf[(t - t0) * g->d + c] = (uint8_t)kvq_kern_code_at(rows + (size_t)t * g->row_bytes,
                                                                 (size_t)(kvh * g->d + c), g->bits);
    code_view v = {buf, (size_t)g->d, 8};
    return v;
}

/* Byte offset of code i in a view's row. */
static size_t code_off(const code_view *v, int64_t i) { return (size_t)i * v->bits / 8; }

/* Scratch: z[d], Δ[d], w[d], acc[n_heads][max(d, n_groups)] floats, then
 * T·d bytes of unpacked codes. */
typedef struct {
    float   *z, *dl, *w, *acc, *ca, *cb; /* ca, cb: per-head axpy coefficients */
    uint8_t *codes;
} attn_scratch;

static int64_t acc_width(const kvq_kivi_geom *g) { return g->d > g->n_groups ? g->d : g->n_groups; }

size_t kvq_kivi_attn_scratch(const kvq_kivi_geom *g, int n_heads)
{
    return (size_t)(3 * g->d + n_heads * (acc_width(g) + 2)) * sizeof(float) + (size_t)(g->T * g->d);
}

static attn_scratch split_scratch(const kvq_kivi_geom *g, const kvq_kivi_attn_job *j)
{
    attn_scratch s;
    s.z = j->scratch;
    s.dl = s.z + g->d;
    s.w = s.dl + g->d;
    s.acc = s.w + g->d;
    s.ca = s.acc + (size_t)j->n_heads * (size_t)acc_width(g);
    s.cb = s.ca + j->n_heads;
    s.codes = (uint8_t *)(s.cb + j->n_heads);
    return s;
}

/* z and Δ of channels [0, d) of KV head kvh in token group gt (keys). */
static kvq_err channel_grid(const kvq_kivi_geom *g, const uint8_t *src, int64_t gt, int64_t kvh, float *z,
                            float *dl)
{
    int64_t e0 = gt * g->H * g->d + kvh * g->d;
    for (int64_t c = 0; c < g->d; c++) KVQ_TRY(kvq_kivi_entry(src, e0 + c, &dl[c], &z[c]));
    return KVQ_OK;
}

/* ---- scores --------------------------------------------------------------------- */

static kvq_err qk_channel(const kvq_kivi_geom *g, const uint8_t *src, const kvq_kivi_attn_job *j,
                          const kvq_kern_attn *k)
{
    attn_scratch s = split_scratch(g, j);
    for (int64_t t0 = 0; t0 < j->n_tok; t0 += g->group) {
        int64_t t1 = t0 + g->group < j->n_tok ? t0 + g->group : j->n_tok;
        for (int64_t kvh = 0; kvh < g->H; kvh++) {
            KVQ_TRY(channel_grid(g, src, t0 / g->group, kvh, s.z, s.dl));
            code_view v = head_codes(g, src, t0, t1, kvh, s.codes);
            for (int h = (int)kvh * j->group; h < (int)(kvh + 1) * j->group; h++) {
                const float *q = j->x + (size_t)h * (size_t)g->d;
                float s0 = 0.0f, *out = j->y + (size_t)h * j->stride + t0;
                for (int64_t c = 0; c < g->d; c++) {
                    s.w[c] = q[c] * s.dl[c];
                    s0 += q[c] * s.z[c];
                }
                k->dot_rows(s.w, v.p, v.stride, v.bits, (size_t)g->d, (size_t)(t1 - t0), out);
                for (int64_t t = 0; t < t1 - t0; t++) out[t] += s0;
            }
        }
    }
    return KVQ_OK;
}

static kvq_err qk_token(const kvq_kivi_geom *g, const uint8_t *src, const kvq_kivi_attn_job *j,
                        const kvq_kern_attn *k)
{
    attn_scratch s = split_scratch(g, j);
    const int64_t ng = g->n_groups, G = g->group;
    for (int h = 0; h < j->n_heads; h++) /* Σ q over each channel group */
        for (int64_t b = 0; b < ng; b++) {
            const float *q = j->x + (size_t)h * (size_t)g->d;
            float sum = 0.0f;
            for (int64_t c = b * G; c < (b + 1) * G && c < g->d; c++) sum += q[c];
            s.acc[h * ng + b] = sum;
        }
    for (int64_t t = 0; t < j->n_tok; t++)
        for (int64_t kvh = 0; kvh < g->H; kvh++) {
            code_view v = head_codes(g, src, t, t + 1, kvh, s.codes);
            for (int h = (int)kvh * j->group; h < (int)(kvh + 1) * j->group; h++)
                j->y[(size_t)h * j->stride + (size_t)t] = 0.0f;
            for (int64_t b = 0; b < ng; b++) {
                float dl, z, dot;
                int64_t n = b * G + G < g->d ? G : g->d - b * G;
                KVQ_TRY(kvq_kivi_entry(src, (t * g->H + kvh) * ng + b, &dl, &z));
                for (int h = (int)kvh * j->group; h < (int)(kvh + 1) * j->group; h++) {
                    const float *q = j->x + (size_t)h * (size_t)g->d + b * G;
                    k->dot_rows(q, v.p + code_off(&v, b * G), v.stride, v.bits, (size_t)n, 1, &dot);
                    j->y[(size_t)h * j->stride + (size_t)t] += z * s.acc[h * ng + b] + dl * dot;
                }
            }
        }
    return KVQ_OK;
}

kvq_err kvq_kivi_attn_qk(const kvq_kivi_geom *g, const uint8_t *src, const kvq_kivi_attn_job *j)
{
    const kvq_kern_attn *k = kvq_kern_attn_get();
    return g->axis == KVQ_KIVI_CHANNEL ? qk_channel(g, src, j, k) : qk_token(g, src, j, k);
}

/* ---- values --------------------------------------------------------------------- */

static kvq_err pv_token(const kvq_kivi_geom *g, const uint8_t *src, const kvq_kivi_attn_job *j,
                        const kvq_kern_attn *k)
{
    attn_scratch s = split_scratch(g, j);
    const int64_t ng = g->n_groups, G = g->group;
    for (int64_t t = 0; t < j->n_tok; t++)
        for (int64_t kvh = 0; kvh < g->H; kvh++) {
            code_view v = head_codes(g, src, t, t + 1, kvh, s.codes);
            for (int64_t b = 0; b < ng; b++) {
                float dl, z;
                int64_t n = b * G + G < g->d ? G : g->d - b * G;
                KVQ_TRY(kvq_kivi_entry(src, (t * g->H + kvh) * ng + b, &dl, &z));
                for (int r = 0; r < j->group; r++) { /* the query heads of kvh share the codes */
                    float p = j->x[(size_t)(kvh * j->group + r) * j->stride + (size_t)t];
                    s.ca[r] = p * dl;
                    s.cb[r] = p * z;
                }
                float *o = j->y + (size_t)(kvh * j->group) * (size_t)g->d + b * G;
                k->axpy_codes(o, (size_t)g->d, s.ca, s.cb, (size_t)j->group, v.p + code_off(&v, b * G), v.bits,
                              (size_t)n);
            }
        }
    return KVQ_OK;
}

static kvq_err pv_channel(const kvq_kivi_geom *g, const uint8_t *src, const kvq_kivi_attn_job *j,
                          const kvq_kern_attn *k)
{
    attn_scratch s = split_scratch(g, j);
    for (int64_t t0 = 0; t0 < j->n_tok; t0 += g->group) {
        int64_t t1 = t0 + g->group < j->n_tok ? t0 + g->group : j->n_tok;
        for (int64_t kvh = 0; kvh < g->H; kvh++) {
            KVQ_TRY(channel_grid(g, src, t0 / g->group, kvh, s.z, s.dl));
            code_view v = head_codes(g, src, t0, t1, kvh, s.codes);
            /* a[r][c] = Σ_t p_t c_tc for the query heads r of kvh, codes shared */
            const size_t aw = (size_t)acc_width(g);
            float *a = s.acc + (size_t)(kvh * j->group) * aw;
            memset(a, 0, (size_t)j->group * aw * sizeof *a);
            for (int r = 0; r < j->group; r++) s.cb[r] = 0.0f;
            for (int64_t t = t0; t < t1; t++) {
                for (int r = 0; r < j->group; r++) s.ca[r] = j->x[(size_t)(kvh * j->group + r) * j->stride + (size_t)t];
                k->axpy_codes(a, aw, s.ca, s.cb, (size_t)j->group, v.p + (size_t)(t - t0) * v.stride, v.bits,
                              (size_t)g->d);
            }
            for (int r = 0; r < j->group; r++) {
                const float *p = j->x + (size_t)(kvh * j->group + r) * j->stride;
                float psum = 0.0f, *o = j->y + (size_t)(kvh * j->group + r) * (size_t)g->d, *ar = a + (size_t)r * aw;
                for (int64_t t = t0; t < t1; t++) psum += p[t];
                for (int64_t c = 0; c < g->d; c++) o[c] += psum * s.z[c] + s.dl[c] * ar[c];
            }
        }
    }
    return KVQ_OK;
}

kvq_err kvq_kivi_attn_pv(const kvq_kivi_geom *g, const uint8_t *src, const kvq_kivi_attn_job *j)
{
    const kvq_kern_attn *k = kvq_kern_attn_get();
    return g->axis == KVQ_KIVI_TOKEN ? pv_token(g, src, j, k) : pv_channel(g, src, j, k);
}
