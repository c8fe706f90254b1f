/*
 * int_ref.c — scalar reference of the integer-code slots (kernels.h
 * codes_dot / codes_dequant; issue 9 item 1 for rtn, bfp and mxint8:
 * quant-methods.md §5 RTN, §3.1/§6.2 block floating point and MXINT8).
 *
 * The codes of a group are unpacked INT_CHUNK at a time with
 * kvq_bits_unpack (any width 2..8, LSB first), then summed in INT_LANES
 * interleaved partial sums (vectorisable without reassociation flags) and
 * combined pairwise; the dequantize loop is the codecs' own formula
 * zero + scale·((float)code − off), evaluated in that order (product and
 * sum in separate statements, so clang's default -ffp-contract=on cannot
 * fuse them: every compiler and table gives the same floats).
 */
#include "kernels/kernels.h"
#include "kvq_internal.h"
#include "quant/quant_common.h"

#define INT_CHUNK 256 /* codes unpacked per pass: a multiple of 8 (whole bytes) */
#define INT_LANES 8   /* independent partial sums                               */

static void codes_dot_ref(const uint8_t *codes, unsigned bits, size_t n, float off, const float *x, float *cx,
                          float *sx)
{
    float ac[INT_LANES] = {0}, as[INT_LANES] = {0}, tc = 0.0f, ts = 0.0f;
    uint8_t c[INT_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += INT_CHUNK) {
        size_t k = n - i0 < INT_CHUNK ? n - i0 : INT_CHUNK, j = 0;
        kvq_bits_unpack(codes + i0 * bits / 8, k, bits, c);
        const float *xs = x + i0;
        for (; j + INT_LANES <= k; j += INT_LANES)
            for (int l = 0; l < INT_LANES; l++) {
                ac[l] += ((float)c[j + l] - off) * xs[j + l];
                as[l] += xs[j + l];
            }
        for (; j < k; j++) {
            tc += ((float)c[j] - off) * xs[j];
            ts += xs[j];
        }
    }
    for (int w = INT_LANES / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++) {
            ac[l] += ac[l + w];
            as[l] += as[l + w];
        }
    *cx = ac[0] + tc;
    *sx = as[0] + ts;
}

static void codes_dequant_ref(const uint8_t *codes, unsigned bits, size_t n, float scale, float zero, float off,
                              float *y)
{
    uint8_t c[INT_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += INT_CHUNK) {
        size_t k = n - i0 < INT_CHUNK ? n - i0 : INT_CHUNK;
        kvq_bits_unpack(codes + i0 * bits / 8, k, bits, c);
        for (size_t j = 0; j < k; j++) {
            float t = scale * ((float)c[j] - off); /* own statement: never contracted into an FMA */
            y[i0 + j] = zero + t;
        }
    }
}

static float codes_row_dot_ref(const uint8_t *codes, unsigned bits, size_t n, size_t group, float off,
                               const float *scale, const float *bias, const float *x)
{
    float acc = 0.0f;
    for (size_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        float cx, sx;
        codes_dot_ref(codes + g0 * bits / 8, bits, n - g0 < group ? n - g0 : group, off, x + g0, &cx, &sx);
        acc += scale[g] * cx + (bias ? bias[g] * sx : 0.0f);
    }
    return acc;
}

/* rtn's quantizer, INT_CHUNK codes at a time, then packed. */
static void codes_quant_ref(const float *x, size_t n, float z, float id, int32_t lo, int32_t hi, int32_t off,
                            unsigned bits, uint8_t *codes)
{
    uint8_t c[INT_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += INT_CHUNK) {
        size_t k = n - i0 < INT_CHUNK ? n - i0 : INT_CHUNK;
        for (size_t j = 0; j < k; j++) {
            int32_t q = kvq_round_rha((x[i0 + j] - z) * id);
            q = q < lo ? lo : q;
            q = q > hi ? hi : q;
            c[j] = (uint8_t)(q + off);
        }
        kvq_bits_pack(c, k, bits, codes + i0 * bits / 8);
    }
}

void kvq_kern_int_fill_ref(kvq_kernels *k)
{
    k->codes_dot = codes_dot_ref;
    k->codes_dequant = codes_dequant_ref;
    k->codes_row_dot = codes_row_dot_ref;
    k->codes_quant = codes_quant_ref;
}
