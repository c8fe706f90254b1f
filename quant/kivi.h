/*
 * kivi.h — the KIVI-style asymmetric group quantizer of quant/kivi.c, as a
 * building block for other KV codecs (compress/gear.c uses it as GEAR's
 * quantized backbone, so GEAR with rank 0 and no outliers is this quantizer
 * bit for bit).  cache-methods.md §5 (KIVI) and §1.1 step 2 (GEAR-KIVI).
 *
 * A tensor is seen as [T][H][d] (tokens, heads, head size): a 3-D KV page
 * as the cache shapes it; a 2-D tensor [rows][cols] is [rows][1][cols]; a
 * 1-D one [1][1][n]; a 4-D one [d0·d1][d2][d3].  Groups:
 *   KVQ_KIVI_CHANNEL (keys)  : G consecutive tokens of one (head, channel);
 *   KVQ_KIVI_TOKEN   (values): G consecutive channels of one (token, head).
 * Each group stores f16 Δ = (max − min)/(2^b − 1) and f16 z = min; codes
 * q = clamp(round((x − z)/Δ), 0, 2^b − 1) are computed against the stored
 * (f16-rounded) Δ and z and decode to z + Δ·q.
 *
 * Payload: every (Δ, z) entry (4 bytes), then the codes row by row (one
 * row = one token's H·d codes, b bits each LSB first, padded to a byte).
 * Entry order: CHANNEL [token group][head][channel]; TOKEN [token][head]
 * [channel group].  The size depends only on shape and parameters.
 */
#ifndef KVQ_QUANT_KIVI_H
#define KVQ_QUANT_KIVI_H

#include "kernels/kern_attn.h"
#include "kvq_internal.h"

typedef enum kvq_kivi_axis { KVQ_KIVI_CHANNEL = 0, KVQ_KIVI_TOKEN = 1 } kvq_kivi_axis;

#define KVQ_KIVI_ENTRY_BYTES 4u /* f16 Δ + f16 z per group */
#define KVQ_KIVI_F16_EXP     0x7C00u /* an f16 exponent of all ones: Inf/NaN */

/* Where things are in a payload of one shape. */
typedef struct kvq_kivi_geom {
    int64_t       T, H, d;      /* tokens, heads, head size               */
    unsigned      bits;
    kvq_kivi_axis axis;
    int64_t       group;        /* G                                      */
    int           group_log2;   /* log2(G) when G is a power of two, or -1 */
    int64_t       n_groups;     /* per vector: ceil(T/G) or ceil(d/G)     */
    int64_t       n_entries;    /* (Δ, z) pairs                           */
    size_t        entries_bytes, row_bytes, codes_bytes, total;
} kvq_kivi_geom;

/* kvq_kivi_geom_make() : layout of shape s; KVQ_ERR_SHAPE when absurd. */
kvq_err kvq_kivi_geom_make(const kvq_shape *s, unsigned bits, kvq_kivi_axis axis, int64_t group,
                           kvq_kivi_geom *g);
/* kvq_kivi_encode() : x [T][H][d] finite → g->total bytes at dst.
 * KVQ_ERR_PARAM_RANGE when a group's Δ or z leaves the f16 range. */
kvq_err kvq_kivi_encode(const kvq_kivi_geom *g, const float *x, uint8_t *dst);
/* kvq_kivi_decode() : g->total bytes → y [T][H][d]; KVQ_ERR_CORRUPT for a
 * non-finite stored entry.  Reads only src; thread-safe. */
kvq_err kvq_kivi_decode(const kvq_kivi_geom *g, const uint8_t *src, float *y);

/* kvq_kivi_entry() : group e's stored step d and zero z (src = the
 * payload); KVQ_ERR_CORRUPT, through kvq_kivi_bad_entry(), when either is
 * not finite.  Inline: attention reads entries in its inner loops. */
kvq_err kvq_kivi_bad_entry(int64_t e, uint16_t hd, uint16_t hz);
static inline kvq_err kvq_kivi_entry(const uint8_t *src, int64_t e, float *d, float *z)
{
    const uint8_t *p = src + (size_t)e * KVQ_KIVI_ENTRY_BYTES;
    uint16_t hd = kvq_rd16(p), hz = kvq_rd16(p + 2);
    *d = kvq_kern_f16_finite(hd); /* finite garbage for a bad half: refused below */
    *z = kvq_kern_f16_finite(hz);
    if ((hd & KVQ_KIVI_F16_EXP) == KVQ_KIVI_F16_EXP || (hz & KVQ_KIVI_F16_EXP) == KVQ_KIVI_F16_EXP)
        return kvq_kivi_bad_entry(e, hd, hz);
    return KVQ_OK;
}

/* ---- attention over an encoded page (quant/kivi_attn.c) -------------------
 * One query's attention over the first n_tok tokens of a payload of shape
 * [T][H][d] without decoding it: codes are read packed (kernels/kern_attn.h
 * slots) and each group's Δ and z are applied once per group instead of
 * once per value.  Query head h reads KV head h / group.
 *   qk : y[h·stride + t] = Σ_i x[h·d + i]·x̂[t][h/group][i]  (raw dot, not
 *        scaled; written);
 *   pv : y[h·d + i] += Σ_t x[h·stride + t]·x̂[t][h/group][i]  (added).
 * x̂ = z + Δ·c is what kvq_kivi_decode() gives; results equal decode then
 * the f32 loops up to f32 rounding (the grid is applied to sums, not to
 * each value): |error| ≲ n·2^-23·Σ|terms| (tests/test_gear.c checks 1e-5
 * relative to Σ|x_i|·max|x̂|, with x̂'s z and Δ·c bounded by 3·max|x̂|). */
typedef struct kvq_kivi_attn_job {
    const float *x;       /* qk: q [n_heads][d]; pv: weights [n_heads][stride] */
    float       *y;       /* qk: scores [n_heads][stride]; pv: out [n_heads][d] */
    int          n_heads, group, n_tok;
    size_t       stride;
    void        *scratch; /* kvq_kivi_attn_scratch() bytes, aligned for float */
} kvq_kivi_attn_job;

/* kvq_kivi_attn_scratch() : bytes of scratch one qk or pv call needs. */
size_t kvq_kivi_attn_scratch(const kvq_kivi_geom *g, int n_heads);
/* kvq_kivi_attn_qk() / _pv() : see above; KVQ_ERR_CORRUPT for a non-finite
 * stored entry (nothing non-finite is produced from a damaged payload). */
kvq_err kvq_kivi_attn_qk(const kvq_kivi_geom *g, const uint8_t *src, const kvq_kivi_attn_job *j);
kvq_err kvq_kivi_attn_pv(const kvq_kivi_geom *g, const uint8_t *src, const kvq_kivi_attn_job *j);

#endif /* KVQ_QUANT_KIVI_H */
