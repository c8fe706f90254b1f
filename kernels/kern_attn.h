/*
 * kern_attn.h — kernel slots for attention over compressed KV pages (issue
 * 9 item 1, "attention of one query over a compressed K/V page"; STYLE.md
 * "Kernels follow BLIS").  Kept apart from kernels.h: the page codecs'
 * fused attention (quant/kivi_attn.c, compress/gear.c) is the only user.
 *
 * The fixed-grid KV codecs (KIVI, GEAR's backbone) store x = z + Δ·c with
 * integer codes c packed LSB first, so one query's score against a token is
 *   q·x = Σ q_i z_i + Σ (q_i Δ_i)·c_i     (Δ, z per channel: keys)
 *       = z·Σ q_i + Δ·Σ q_i c_i           (Δ, z per token group: values)
 * and a value accumulation o += p·x is o_i += (pΔ)·c_i + p·z.  Both reduce
 * to two loops over packed codes, which are the slots:
 *   dot_rows   : out[r] = Σ_{i<n} w[i]·c[r][i] for n_rows rows of codes at
 *                src + r·row_stride (the score loop, w = q∘Δ or q);
 *   axpy_codes : o[r][i] += a[r]·c[i] + b[r] for i < n, for n_out output
 *                rows r (o_stride apart) sharing one row of codes: the
 *                value loop, every query head of a KV head (GQA) at once;
 *   f16_row    : stored f16 factors widened to f32 (exact in every table).
 * Codes are `bits` ∈ {2, 4, 8} wide (8: one byte each, which is also how
 * callers pass other widths, unpacked), starting at bit 0 of src.
 *
 * cpu/attn_ref.c is the scalar reference (each dot summed in channel
 * order; axpy as o + (a·c + b), two roundings); cpu/attn_avx2.c overrides
 * both with AVX2/FMA versions when __builtin_cpu_supports says so.  The
 * SIMD dot sums in 8 lanes with FMA and the axpy fuses a·c + b, so they
 * agree with the reference within f32 rounding of Σ|terms| (the bound
 * tests/test_kernels_attn.c states and checks), not bit for bit.
 *
 * KVQ_SIMD=ref forces the reference, as for kvq_kernels_get().
 */
#ifndef KVQ_KERN_ATTN_H
#define KVQ_KERN_ATTN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef void (*kvq_kern_dot_rows_fn)(const float *w, const uint8_t *src, size_t row_stride, unsigned bits,
                                     size_t n, size_t n_rows, float *out);
typedef void (*kvq_kern_axpy_codes_fn)(float *o, size_t o_stride, const float *a, const float *b, size_t n_out,
                                       const uint8_t *src, unsigned bits, size_t n);
typedef int (*kvq_kern_f16_row_fn)(const uint8_t *src, float *dst, size_t n);

typedef struct kvq_kern_attn {
    const char            *name;      /* "ref", "avx2" */
    kvq_kern_dot_rows_fn   dot_rows;
    kvq_kern_axpy_codes_fn axpy_codes;
    kvq_kern_f16_row_fn    f16_row;   /* n LE halves → floats (GEAR's factors);
                                         1 when one is Inf/NaN (its float is
                                         then meaningless), else 0; exact */
    int fast; /* 1 when KIVI's fused loops beat gcc's vectorised decode +
                 the f32 loops (SIMD tables); the cache then uses them */
} kvq_kern_attn;

/* kvq_kern_attn_get() : the table in use (chosen once, thread-safe). */
const kvq_kern_attn *kvq_kern_attn_get(void);
/* kvq_kern_attn_ref() : the scalar reference. */
const kvq_kern_attn *kvq_kern_attn_ref(void);
/* kvq_kern_attn_avx2() : the AVX2/FMA table, NULL when the CPU lacks them. */
const kvq_kern_attn *kvq_kern_attn_avx2(void);

/* Filled by cpu/attn_ref.c and cpu/attn_avx2.c. */
void kvq_kern_attn_fill_ref(kvq_kern_attn *k);
int  kvq_kern_attn_fill_avx2(kvq_kern_attn *k); /* 0 without AVX2/FMA */

/* Code i of a row of `bits`-wide codes packed LSB first (any width 1..8). */
static inline unsigned kvq_kern_code_at(const uint8_t *src, size_t i, unsigned bits)
{
    size_t bit = i * bits, byte = bit >> 3;
    unsigned sh = (unsigned)(bit & 7), v = src[byte];
    if (sh + bits > 8) v |= (unsigned)src[byte + 1] << 8;
    return (v >> sh) & ((1u << bits) - 1u);
}

#define KVQ_KERN_F16_EXP 0x7C00u /* exponent of all ones: Inf or NaN */

/* f16 → f32, exact for every finite half (callers check the exponent is
 * not all ones first): the bits moved into f32 position and scaled by
 * 2^112 give normals and subnormals exactly, inline and branch-free — the
 * per-group steps, zeros and factors are converted on every attention. */
static inline float kvq_kern_f16_finite(uint16_t h)
{
    uint32_t u = (uint32_t)(h & 0x7FFFu) << 13;
    float f;
    memcpy(&f, &u, sizeof f);
    f *= 0x1p112f;
    return (h & 0x8000u) ? -f : f;
}

#endif
