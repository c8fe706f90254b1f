/*
 * quant_common.c — the out-of-line parts of quant_common.h: packing whole
 * arrays of b-bit codes, the ExMy reference rounding and its threshold table,
 * E8M0/UE4M3 scales and the Gram-matrix objective (quant-methods.md §0,
 * §1.1, §6).  The per-element helpers live
 * in the header so that constant-length callers vectorise.
 */
#include "quant/quant_common.h"

#include <assert.h>
#include <math.h>
#include <string.h>
#include <math.h>

/* Eight codes of b bits fill exactly b bytes, so whole octets are packed
 * through one 64-bit word (no per-code branches); the tail goes through the
 * bit writer.  Same stream as kvq_bitw_put, code for code. */
#define OCTET 8

void kvq_bits_pack(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst)
{
    assert(bits >= KVQ_CODE_BITS_MIN && bits <= KVQ_CODE_BITS_MAX);
    size_t i = 0;
    for (; i + OCTET <= n; i += OCTET, dst += bits) {
        uint64_t acc = 0;
        for (unsigned k = 0; k < OCTET; k++) acc |= (uint64_t)codes[i + k] << (k * bits);
        for (unsigned k = 0; k < bits; k++) dst[k] = (uint8_t)(acc >> (8 * k));
    }
    kvq_bitw w = kvq_bitw_start(dst);
    for (; i < n; i++) kvq_bitw_put(&w, codes[i], bits);
    kvq_bitw_flush(&w);
}

void kvq_bits_unpack(const uint8_t *src, size_t n, unsigned bits, uint8_t *codes)
{
    assert(bits >= KVQ_CODE_BITS_MIN && bits <= KVQ_CODE_BITS_MAX);
    const uint64_t mask = (1u << bits) - 1;
    size_t i = 0;
    for (; i + OCTET <= n; i += OCTET, src += bits) {
        uint64_t acc = 0;
        for (unsigned k = 0; k < bits; k++) acc |= (uint64_t)src[k] << (8 * k);
        for (unsigned k = 0; k < OCTET; k++) codes[i + k] = (uint8_t)((acc >> (k * bits)) & mask);
    }
    kvq_bitr r = kvq_bitr_start(src);
    for (; i < n; i++) codes[i] = (uint8_t)kvq_bitr_get(&r, bits);
}

void kvq_fwht(float *x, int64_t n)
{
    assert(kvq_is_pow2(n));
    for (int64_t h = 1; h < n; h *= 2)
        for (int64_t i = 0; i < n; i += 2 * h)
            for (int64_t j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    float norm = 1.0f / sqrtf((float)n);
    for (int64_t i = 0; i < n; i++) x[i] *= norm;
}

/* ---- small floating-point formats -------------------------------------------- */
static const kvq_fpfmt fp_formats[KVQ_FP__COUNT] = {
    [KVQ_FP_E2M1] = {"e2m1", 2, 1, 1, 1, 7},       [KVQ_FP_E3M0] = {"e3m0", 3, 0, 1, 3, 7},
    [KVQ_FP_E1M2] = {"e1m2", 1, 2, 1, 0, 7},       [KVQ_FP_E5M2] = {"e5m2", 5, 2, 1, 15, 127},
    [KVQ_FP_E4M3] = {"e4m3", 4, 3, 1, 7, 127},     [KVQ_FP_E3M4] = {"e3m4", 3, 4, 1, 3, 127},
    [KVQ_FP_E2M5] = {"e2m5", 2, 5, 1, 1, 127},     [KVQ_FP_E1M6] = {"e1m6", 1, 6, 1, 0, 127},
    [KVQ_FP_E4M3_OCP] = {"e4m3fn", 4, 3, 1, 7, 126}, /* S.1111.111 is NaN: max 448      */
    [KVQ_FP_E5M2_OCP] = {"e5m2ocp", 5, 2, 1, 15, 123}, /* exp 31 is Inf/NaN: max 57344 */
    [KVQ_FP_UE4M3] = {"ue4m3", 4, 3, 0, 7, 126},   /* 0x7F decodes to 0 in ggml        */
};

const kvq_fpfmt *kvq_fp_format(kvq_fp_id id)
{
    return (unsigned)id < KVQ_FP__COUNT ? &fp_formats[id] : NULL;
}

float kvq_fp_mag(const kvq_fpfmt *f, unsigned c)
{
    unsigned ex = c >> f->m, mant = c & ((1u << f->m) - 1);
    if (ex == 0) return ldexpf((float)mant, 1 - f->bias - f->m);
    return ldexpf((float)((1u << f->m) + mant), (int)ex - f->bias - f->m);
}

/* The reference rounding of a = |y| (finite, double): code of the nearest
 * grid point with tie rule t, saturated.  In the binade of p the step is
 * v = 2^(p−m); r = round_t(a/v) (exact division); code = ((p + bias − 1)
 * << m) + r, which also covers the subnormal binade (p = 1 − bias) and r
 * reaching 2^(m+1) (the next binade's first code). */
static unsigned round_code_d(const kvq_fpfmt *f, double a, kvq_tie t)
{
    if (a >= (double)kvq_fp_maxval(f)) return f->code_max;
    if (a == 0.0) return 0;
    int k;
    (void)frexp(a, &k); /* a = fr·2^k, fr in [0.5, 1): floor(log2 a) = k − 1 */
    int p = k - 1 < 1 - f->bias ? 1 - f->bias : k - 1;
    double q = ldexp(a, f->m - p), fl = floor(q), frac = q - fl;
    long r = (long)fl;
    if (frac > 0.5) r++;
    else if (frac == 0.5) r += t == KVQ_TIE_AWAY ? 1 : t == KVQ_TIE_EVEN ? (r & 1) : 0;
    long code = ((long)(p + f->bias - 1) << f->m) + r;
    return code > (long)f->code_max ? f->code_max : (unsigned)code;
}

unsigned kvq_fp_round_code(const kvq_fpfmt *f, float y, kvq_tie t) { return round_code_d(f, fabs((double)y), t); }

float kvq_fp_round(const kvq_fpfmt *f, float y, kvq_tie t)
{
    float v = kvq_fp_mag(f, kvq_fp_round_code(f, y, t));
    return y < 0 ? -v : v;
}

double kvq_fp_round_d(const kvq_fpfmt *f, double y, kvq_tie t)
{
    double v = (double)kvq_fp_mag(f, round_code_d(f, fabs(y), t));
    return y < 0 ? -v : v;
}

double kvq_fp_round_bias(const kvq_fpfmt *f, double y, double bias, kvq_tie t)
{
    double s = exp2((double)f->bias - bias);
    return s * kvq_fp_round_d(f, y / s, t);
}

double kvq_fp_bias_for_max(const kvq_fpfmt *f, double M)
{
    return (double)((1 << f->e) - 1) + log2(2.0 - ldexp(1.0, -f->m)) - log2(M);
}

void kvq_fp_lut_init(kvq_fp_lut *l, const kvq_fpfmt *f, kvq_tie t)
{
    memset(l, 0, sizeof *l);
    l->f = f;
    l->tie = t;
    l->n = f->code_max + 1;
    for (unsigned i = 0; i < l->n; i++) l->mag[i] = kvq_fp_mag(f, i);
    for (unsigned i = 0; i + 1 < l->n; i++) {
        l->mid[i] = (l->mag[i] + l->mag[i + 1]) * 0.5f; /* exact: few significant bits */
        l->up_at_tie[i] = round_code_d(f, (double)l->mid[i], t) == i + 1;
        l->thr[i] = l->up_at_tie[i] ? nextafterf(l->mid[i], 0.0f) : l->mid[i];
    }
    for (unsigned i = l->n ? l->n - 1 : 0; i < KVQ_FP_MAX_LEVELS; i++) l->mid[i] = l->thr[i] = INFINITY;
}

/* ---- scale formats ------------------------------------------------------------- */
#define E8M0_BIAS     127

float kvq_e8m0_value(uint8_t code) { return code == 0xFF ? NAN : ldexpf(1.0f, (int)code - E8M0_BIAS); }

/* ---- layer-output objective ------------------------------------------------------ */
void kvq_gram_accum(float *H, const float *X, int64_t t, int64_t n)
{
    for (int64_t r = 0; r < t; r++) {
        const float *x = X + r * n;
        for (int64_t i = 0; i < n; i++) {
            float xi = x[i];
            float *h = H + i * n;
            if (xi == 0.0f) continue;
            for (int64_t j = 0; j < n; j++) h[j] += xi * x[j];
        }
    }
}

double kvq_gram_quad(const float *H, const float *d, int64_t n)
{
    double acc = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (d[i] == 0.0f) continue;
        const float *h = H + i * n;
        float lane[KVQ_REDUCE_LANES] = {0};
        int64_t nv = n - n % KVQ_REDUCE_LANES;
        for (int64_t j = 0; j < nv; j += KVQ_REDUCE_LANES)
            for (int l = 0; l < KVQ_REDUCE_LANES; l++) lane[l] += h[j + l] * d[j + l];
        float s = 0.0f;
        for (int64_t j = nv; j < n; j++) s += h[j] * d[j];
        for (int l = 0; l < KVQ_REDUCE_LANES; l++) s += lane[l];
        acc += (double)d[i] * (double)s;
    }
    return acc;
}
