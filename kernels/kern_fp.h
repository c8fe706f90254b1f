/*
 * kern_fp.h — the inner loops of the floating-point and power-exponent
 * codecs (quant/fp.c, fp_mx.c, nupes.c; quant-methods.md §1.1, §2.2, §6)
 * as a small slot table, so each runs with the widest instructions the CPU
 * has (STYLE.md "Kernels follow BLIS").
 *
 * The bodies are the static inline functions of quant/fp_impl.h and
 * quant/nupes.h, compiled once per instruction set: kernels/cpu/fp_ref.c
 * for the baseline ISA, kernels/cpu/fp_avx2.c with target("avx2").
 * Vectorising does not change a single f32 operation (no contraction, no
 * reassociation: max, compares and one multiply per lane), so every slot
 * returns the same bytes in both tables; tests/test_fp.c compares them.
 * The AVX2 table is chosen when the CPU has AVX2 and the main
 * kernel table (kernels/kernels.h) is the AVX2 one, so KVQ_SIMD=ref
 * selects the reference here too.
 */
#ifndef KVQ_KERN_FP_H
#define KVQ_KERN_FP_H

#include <stddef.h>
#include <stdint.h>

struct kvq_fp_lut;
struct kvq_nupes_bucket;

/* the row-kernel slots' types (rowkern binders keep them in kvq_rowkern.aux) */
typedef float (*kvq_fp_blocks_dot_fn)(const uint8_t *blocks, int64_t nb, const float *x);
typedef float (*kvq_fp_runs_dot_fn)(const uint8_t *codes, int64_t cols, int kind, const float *v, const uint8_t *sc,
                                    int64_t spr, const float *x);

typedef struct kvq_fp_kernels {
    const char *name; /* "ref", "avx2" */
    /* kvq_absmax_bits (quant_common.h) */
    uint32_t (*absmax_bits)(const float *x, size_t n);
    /* codes of x[n] at reciprocal scale inv: 4-bit formats (fp_codes4),
     * any format (fp_codes_any) */
    void (*codes4)(const struct kvq_fp_lut *l, const float *x, int64_t n, float inv, uint8_t *codes);
    void (*codes_any)(const struct kvq_fp_lut *l, const float *x, int64_t n, float inv, uint8_t *codes);
    /* per group of g values of x[n]: maxima (fp_absmax_groups), codes at
     * reciprocal scales inv[] (fp_codes_groups) */
    void (*absmax_groups)(const float *x, int64_t n, int64_t g, uint32_t *out);
    void (*codes_groups)(const struct kvq_fp_lut *l, const float *x, int64_t n, int64_t g, const float *inv,
                         uint8_t *codes);
    /* mxfp4 / nvfp4 blocks [0, nb): index of the first block with a NaN or
     * Inf, else nb (mx_encode_blocks, nv_encode_blocks) */
    size_t (*mx_blocks)(const float *x, size_t nb, uint8_t *out);
    size_t (*nv_blocks)(const float *x, size_t nb, float inv_g, uint8_t *out);
    /* nupes codes of up to 4 bits for x[n], n <= KVQ_NUPES_SPAN: nonzero
     * when some amb[j] is set (kvq_nupes_codes4) */
    int32_t (*nu_codes4)(const float *lo, const float *hi, const float *x, int64_t n, float inv, int32_t *q,
                         uint8_t *amb);
    /* nupes codes of 5..8 bits through the bucket table tab (kvq_nupes_codes_tab) */
    int32_t (*nu_codes_tab)(const struct kvq_nupes_bucket *tab, int32_t first, const float *x, int64_t n, float inv,
                            int32_t *q, uint8_t *amb);
    /* row kernels: Σ decode(row)_i·x_i of one row (mx_row_dot, nv_row_dot
     * without the tensor scale, fp_runs_dot; quant/fp_impl.h) */
    kvq_fp_blocks_dot_fn mx_dot, nv_dot;
    kvq_fp_runs_dot_fn runs_dot;
} kvq_fp_kernels;

/* kvq_fp_kernels_get() : the table in use (chosen once, thread-safe). */
const kvq_fp_kernels *kvq_fp_kernels_get(void);
/* kvq_fp_kernels_ref() / _avx2() : a particular table (NULL: the CPU lacks it). */
const kvq_fp_kernels *kvq_fp_kernels_ref(void);
const kvq_fp_kernels *kvq_fp_kernels_avx2(void);

#endif /* KVQ_KERN_FP_H */
