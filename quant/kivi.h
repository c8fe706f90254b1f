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

#include "kvq_internal.h"

typedef enum kvq_kivi_axis { KVQ_KIVI_CHANNEL = 0, KVQ_KIVI_TOKEN = 1 } kvq_kivi_axis;

#define KVQ_KIVI_ENTRY_BYTES 4u /* f16 Δ + f16 z per group */

/* Where things are in a payload of one shape. */
typedef struct kvq_kivi_geom {
    int64_t       T, H, d;      /* tokens, heads, head size               */
    unsigned      bits;
    kvq_kivi_axis axis;
    int64_t       group;        /* G                                      */
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

#endif /* KVQ_QUANT_KIVI_H */
