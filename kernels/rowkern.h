/*
 * rowkern.h — row kernels: matrix-vector products straight from a codec's
 * codes (issue 9 item 1, "dot product of a quantized row with an f32
 * vector"; DESIGN.md "kernels/").
 *
 * A weight matrix encoded by a fixed-grid codec (q8_0, q4_0, rtn, mxfp4,
 * nvfp4, fp with a searched bias, bfp, ...) keeps each row's codes and
 * scales at fixed offsets of its payload.  The codec describes that layout
 * once per tensor by filling a kvq_rowkern (its `bind` function, listed in
 * kernels/rowkern.c), checking the payload's size and every value the
 * kernel will trust (finite scales, valid exponents) so the products need
 * no checks.  The decoder's matmul then calls dot() per output row instead
 * of decoding rows to f32.
 *
 * dot() may sum in any order: it equals Σ_i decode(row)_i · x_i within the
 * tolerance tests/test_kernels.c checks for every bound codec
 * (ROWKERN_TOL · Σ|decode(row)_i · x_i|).  A codec's kernels live in
 * kernels/cpu/ (scalar reference + SIMD overrides chosen at run time);
 * `bind` picks the variant from kvq_kernels_get()->name or its own
 * selector, honouring KVQ_SIMD=ref.
 */
#ifndef KVQ_ROWKERN_H
#define KVQ_ROWKERN_H

#include <stddef.h>
#include <stdint.h>

#include "kvq.h"

#define KVQ_ROWKERN_REGIONS 4    /* payload regions a layout may name     */
#define KVQ_ROWKERN_LUT     256  /* table entries (codes of up to 8 bits) */

typedef struct kvq_rowkern kvq_rowkern;

/* Σ_i decode(row r)_i · x_i over the tensor's `cols` values. */
typedef float (*kvq_rowkern_dot_fn)(const kvq_rowkern *k, int64_t r, const float *x);
/* out[i] = dot(r0 + i) for rows [r0, r1): several rows per call, x kept in
 * registers (rows of a few blocks, where a call per row dominates).
 * Optional (NULL: the caller loops over dot); where present it must give
 * dot()'s value within the same tolerance. */
typedef void (*kvq_rowkern_dots_fn)(const kvq_rowkern *k, int64_t r0, int64_t r1, const float *x, float *out);

struct kvq_rowkern {
    kvq_rowkern_dot_fn  dot;
    kvq_rowkern_dots_fn dots; /* optional, see above                      */
    int      fast;      /* 1 when dot beats decode_rows + an f32 dot: the
                           decoder then uses it for single tokens         */
    int64_t  rows, cols;
    /* Codec-defined layout: region i starts at p[i] and row r's part of it
     * at p[i] + r·stride[i] (e.g. codes, per-row or per-block scales). */
    const uint8_t *p[KVQ_ROWKERN_REGIONS];
    size_t   stride[KVQ_ROWKERN_REGIONS];
    int      ip[4];     /* codec-defined integers (bits, group, format)  */
    float    fp[4];     /* codec-defined constants (per-tensor scale)    */
    void   (*aux)(void); /* codec-defined helper kernel (cast back to its
                            own type before the call)                   */
    void   (*aux_rows)(void); /* a second one (e.g. the multi-row slot)  */
    float    lut[KVQ_ROWKERN_LUT]; /* code → value table where useful     */
};

/* A codec's binder: fill *k for `payload` (n bytes, shape s, at least 2-D
 * or 1-D rows), or KVQ_ERR_UNSUPPORTED when these parameters have no row
 * kernel, KVQ_ERR_CORRUPT when the payload is inconsistent. */
typedef kvq_err (*kvq_rowkern_bind_fn)(const void *state, const void *payload, size_t n, const kvq_shape *s,
                                       kvq_rowkern *k);

/* kvq_rowkern_bind() : the row kernel of an encoded tensor; the payload
 * must outlive *k.  KVQ_ERR_UNSUPPORTED when the codec (or these
 * parameters) has none. */
kvq_err kvq_rowkern_bind(kvq_ctx *ctx, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k);

/* kvq_rowkern_has() : 1 when the codec has a binder (parameters may still
 * make a particular tensor unsupported). */
int kvq_rowkern_has(const kvq_codec *c);

/* kvq_rowkern_bind_f16() : the row kernel of plain little-endian f16
 * weights (no codec: e.g. the f16 fallback of kvq_model_quantize for
 * tensors a codec cannot take), n = rows·cols·2 bytes at data. */
kvq_err kvq_rowkern_bind_f16(const void *data, size_t n, const kvq_shape *s, kvq_rowkern *k);

/* The binders (one per codec file; kernels/rowkern.c lists them). */
kvq_err kvq_ggml_rowkern(const void *state, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k);
kvq_err kvq_rtn_rowkern(const void *state, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k);
kvq_err kvq_bfp_rowkern(const void *state, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k);
kvq_err kvq_mxfp4_rowkern(const void *state, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k);
kvq_err kvq_nvfp4_rowkern(const void *state, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k);
kvq_err kvq_fp_rowkern(const void *state, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k);
kvq_err kvq_nupes_rowkern(const void *state, const void *payload, size_t n, const kvq_shape *s, kvq_rowkern *k);

#endif
