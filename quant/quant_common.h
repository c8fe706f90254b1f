/*
 * quant_common.h — building blocks shared by every quantizer in quant/
 * (quant-methods.md §0): group statistics (absmax, min/max, ggml's signed
 * absmax), the rounding rules peers use (RHA = C roundf, RNE), b-bit code
 * streams (2..8 bits, LSB first), the two 4-bit nibble layouts, the small
 * floating-point formats (one ExMy rounding routine with selectable tie
 * rule; E8M0/UE4M3 scales) and the Gram-matrix helpers behind the
 * layer-output objective ‖XWᵀ − XŴᵀ‖².
 *
 * The small per-element helpers are `static inline` on purpose: a codec that
 * calls them with a constant length (a 32-element ggml block) gets a loop
 * gcc -O2 vectorises, with no SIMD intrinsics in quant/ (STYLE.md "Kernels").
 * Every helper here is exact: no fast-math, no approximation; the rounding
 * helpers are proven equal to their libm counterparts over a stated range
 * (tests/test_codecs.c checks them on millions of values, ties included).
 */
#ifndef KVQ_QUANT_COMMON_H
#define KVQ_QUANT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define KVQ_RNE_MAGIC     12582912.0f /* 1.5·2^23: adding it rounds to integer */
#define KVQ_CODE_BITS_MIN 2           /* b-bit code streams: 2..8 bits         */
#define KVQ_CODE_BITS_MAX 8

/* ---- rounding ------------------------------------------------------------ */

/* kvq_round_rha() : round half away from zero, equal to (int32_t)roundf(v)
 * for every finite |v| < 2^31.  Why it is exact: t = trunc(v) fits int32;
 * (float)t is exact (either |v| < 2^24, or v is already an integer and
 * t == v); v − t is then exact (Sterbenz for |v| ≥ 1, t = 0 below), so the
 * fraction is compared without rounding.  Branch-free: it vectorises. */
static inline int32_t kvq_round_rha(float v)
{
    int32_t t = (int32_t)v;
    float frac = v - (float)t;
    return t + (int32_t)(frac >= 0.5f) - (int32_t)(frac <= -0.5f);
}

/* kvq_round_rne() : round half to even, equal to (int32_t)nearbyintf(v) in
 * the default rounding mode for finite |v| < 2^22: adding 1.5·2^23 puts the
 * units digit at the last significand bit, so the FPU's own RNE rounds it. */
static inline int32_t kvq_round_rne(float v)
{
    /* Without -ffast-math the compiler may not fold (v + M) − M into v. */
    float r = (v + KVQ_RNE_MAGIC) - KVQ_RNE_MAGIC;
    return (int32_t)r;
}

/* ---- group statistics ------------------------------------------------------ */
#define KVQ_REDUCE_LANES 8 /* independent partial results: a vector's worth */

/* kvq_minmax() : smallest and largest of n ≥ 1 finite values.  The partial
 * results run in KVQ_REDUCE_LANES independent lanes, so gcc vectorises the
 * loop as plain element-wise min/max (minps/maxps) rather than needing a
 * reassociated reduction, which it will not do for floats without
 * -ffast-math.  Exact: min and max do not round. */
static inline void kvq_minmax(const float *x, size_t n, float *mn, float *mx)
{
    float lo[KVQ_REDUCE_LANES], hi[KVQ_REDUCE_LANES];
    for (int l = 0; l < KVQ_REDUCE_LANES; l++) lo[l] = hi[l] = x[0];
    size_t nv = n - n % KVQ_REDUCE_LANES;
    for (size_t c = 0; c < nv; c += KVQ_REDUCE_LANES)
        for (int l = 0; l < KVQ_REDUCE_LANES; l++) {
            float v = x[c + l];
            lo[l] = v < lo[l] ? v : lo[l];
            hi[l] = v > hi[l] ? v : hi[l];
        }
    for (size_t c = nv; c < n; c++) {
        lo[0] = x[c] < lo[0] ? x[c] : lo[0];
        hi[0] = x[c] > hi[0] ? x[c] : hi[0];
    }
    for (int l = 1; l < KVQ_REDUCE_LANES; l++) {
        lo[0] = lo[l] < lo[0] ? lo[l] : lo[0];
        hi[0] = hi[l] > hi[0] ? hi[l] : hi[0];
    }
    *mn = lo[0];
    *mx = hi[0];
}

/* kvq_absmax() : max |x_i| over n finite values (0 for n = 0); lanes as in
 * kvq_minmax (fabsf is a mask, the max does not round: exact). */
static inline float kvq_absmax(const float *x, size_t n)
{
    float m[KVQ_REDUCE_LANES] = {0};
    size_t nv = n - n % KVQ_REDUCE_LANES;
    for (size_t c = 0; c < nv; c += KVQ_REDUCE_LANES)
        for (int l = 0; l < KVQ_REDUCE_LANES; l++) {
            float a = fabsf(x[c + l]);
            m[l] = a > m[l] ? a : m[l];
        }
    for (size_t c = nv; c < n; c++) m[0] = fabsf(x[c]) > m[0] ? fabsf(x[c]) : m[0];
    for (int l = 1; l < KVQ_REDUCE_LANES; l++) m[0] = m[l] > m[0] ? m[l] : m[0];
    return m[0];
}

/* kvq_absmax_bits() : max |x_i| over n values (0 for n = 0) as the bits of
 * a binary32, with non-finite input visible: the result is >=
 * KVQ_F32_INF_BITS iff some x_i is Inf or NaN.  Non-negative binary32
 * values order like their bit patterns and NaNs lie above Inf, so the
 * integer maximum of |x_i|'s bits is both (kvq_absmax's value when all are
 * finite: max does not round).  Lanes as in kvq_absmax. */
#define KVQ_F32_ABS_MASK 0x7FFFFFFFu
#define KVQ_F32_INF_BITS 0x7F800000u

static inline uint32_t kvq_absmax_bits(const float *x, size_t n)
{
    int32_t m[KVQ_REDUCE_LANES] = {0}; /* < 2^31: signed compares vectorise on SSE2 */
    size_t nv = n - n % KVQ_REDUCE_LANES;
    for (size_t c = 0; c < nv; c += KVQ_REDUCE_LANES)
        for (int l = 0; l < KVQ_REDUCE_LANES; l++) {
            uint32_t u;
            memcpy(&u, &x[c + l], 4);
            int32_t a = (int32_t)(u & KVQ_F32_ABS_MASK);
            m[l] = a > m[l] ? a : m[l];
        }
    for (size_t c = nv; c < n; c++) {
        uint32_t u;
        memcpy(&u, &x[c], 4);
        int32_t a = (int32_t)(u & KVQ_F32_ABS_MASK);
        m[0] = a > m[0] ? a : m[0];
    }
    for (int l = 1; l < KVQ_REDUCE_LANES; l++) m[0] = m[l] > m[0] ? m[l] : m[0];
    return (uint32_t)m[0];
}

/* kvq_f32_bits() : the bits of a binary32. */
static inline uint32_t kvq_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* kvq_f32_of_bits() : the binary32 with bits u. */
static inline float kvq_f32_of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* kvq_signed_absmax() : ggml's Q4_0 "max" — the value (sign kept) of the
 * FIRST element whose magnitude is largest; +0 when all are ±0.  The
 * extremes decide it unless the largest magnitude occurs with both signs,
 * the one case that needs the ordered look-up. */
static inline float kvq_signed_absmax(const float *x, size_t n)
{
    if (n == 0) return 0.0f;
    float lo, hi;
    kvq_minmax(x, n, &lo, &hi);
    if (hi == -lo) { /* rare: the largest magnitude occurs with both signs (or all ±0) */
        if (hi == 0.0f) return 0.0f;
        for (size_t i = 0; i < n; i++)
            if (x[i] == hi || x[i] == lo) return x[i];
    }
    return hi > -lo ? hi : lo; /* a select, not a branch: the sign is data */
}

/* ---- b-bit code streams ------------------------------------------------------ */
/* Codes of `bits` bits (2..8) are written LSB first into consecutive bytes:
 * code i occupies stream bits [i·bits, (i+1)·bits).  A stream of n codes
 * takes kvq_bits_size(n, bits) bytes; unused high bits of the last byte are 0. */
static inline size_t kvq_bits_size(size_t n, unsigned bits) { return (n * bits + 7) / 8; }

typedef struct kvq_bitw {
    uint8_t *p;      /* next byte to write              */
    uint32_t acc;    /* pending bits, LSB = oldest      */
    unsigned nacc;   /* number of pending bits (< 8)    */
} kvq_bitw;

static inline kvq_bitw kvq_bitw_start(uint8_t *dst)
{
    kvq_bitw w = {dst, 0, 0};
    return w;
}

/* kvq_bitw_put() : append the low `bits` bits of code. */
static inline void kvq_bitw_put(kvq_bitw *w, uint32_t code, unsigned bits)
{
    w->acc |= (code & ((1u << bits) - 1)) << w->nacc;
    w->nacc += bits;
    while (w->nacc >= 8) {
        *w->p++ = (uint8_t)w->acc;
        w->acc >>= 8;
        w->nacc -= 8;
    }
}

/* kvq_bitw_flush() : write the partial last byte (zero-padded). */
static inline void kvq_bitw_flush(kvq_bitw *w)
{
    if (w->nacc) *w->p++ = (uint8_t)w->acc;
    w->acc = 0;
    w->nacc = 0;
}

typedef struct kvq_bitr {
    const uint8_t *p; /* next byte to read; never read past the stream */
    uint32_t acc;
    unsigned nacc;
} kvq_bitr;

static inline kvq_bitr kvq_bitr_start(const uint8_t *src)
{
    kvq_bitr r = {src, 0, 0};
    return r;
}

/* kvq_bitr_get() : next code of `bits` bits.  Reads a byte only when the
 * pending bits run short, so it never touches bytes past the stream's
 * kvq_bits_size(). */
static inline uint32_t kvq_bitr_get(kvq_bitr *r, unsigned bits)
{
    if (r->nacc < bits) {
        r->acc |= (uint32_t)*r->p++ << r->nacc;
        r->nacc += 8;
    }
    uint32_t c = r->acc & ((1u << bits) - 1);
    r->acc >>= bits;
    r->nacc -= bits;
    return c;
}

/* kvq_bits_pack() / kvq_bits_unpack() : whole arrays of n codes. */
void kvq_bits_pack(const uint8_t *codes, size_t n, unsigned bits, uint8_t *dst);
void kvq_bits_unpack(const uint8_t *src, size_t n, unsigned bits, uint8_t *codes);

/* ---- 4-bit nibbles ------------------------------------------------------------ */
/* SPLIT_HALF : ggml Q4_0 / IQ4_NL / MXFP4 — for a block of n codes, byte j
 *              holds code j (low nibble) and code j + n/2 (high nibble).
 * ADJACENT   : ModelOpt / HF FP4 — byte i holds code 2i (low), 2i+1 (high). */
typedef enum kvq_nib_layout { KVQ_NIB_SPLIT_HALF = 0, KVQ_NIB_ADJACENT = 1 } kvq_nib_layout;

/* kvq_nibbles_pack() : n (even) codes < 16 → n/2 bytes (not overlapping:
 * restrict lets gcc -O2 vectorise without a run-time overlap test). */
static inline void kvq_nibbles_pack(const uint8_t *restrict codes, size_t n, kvq_nib_layout l, uint8_t *restrict dst)
{
    size_t h = n / 2;
    for (size_t j = 0; j < h; j++) {
        uint8_t lo = l == KVQ_NIB_SPLIT_HALF ? codes[j] : codes[2 * j];
        uint8_t hi = l == KVQ_NIB_SPLIT_HALF ? codes[j + h] : codes[2 * j + 1];
        dst[j] = (uint8_t)((lo & 0x0F) | (hi << 4));
    }
}

/* kvq_nibbles_unpack() : n/2 bytes → n codes (not overlapping). */
static inline void kvq_nibbles_unpack(const uint8_t *restrict src, size_t n, kvq_nib_layout l, uint8_t *restrict codes)
{
    size_t h = n / 2;
    for (size_t j = 0; j < h; j++) {
        uint8_t lo = src[j] & 0x0F, hi = src[j] >> 4;
        if (l == KVQ_NIB_SPLIT_HALF) {
            codes[j] = lo;
            codes[j + h] = hi;
        } else {
            codes[2 * j] = lo;
            codes[2 * j + 1] = hi;
        }
    }
}

/* ---- Walsh–Hadamard (quant-methods.md §0, §4.2) ------------------------- */
/* kvq_is_pow2() : n is 2^k, k >= 0. */
static inline int kvq_is_pow2(int64_t n) { return n > 0 && !(n & (n - 1)); }
/* kvq_fwht() : in place, x ← H·x with the orthonormal Walsh–Hadamard
 * matrix of size n = 2^k (Sylvester order, scale 1/√n); H is symmetric and
 * H·H = I, so applying it twice gives x back up to f32 rounding. */
void kvq_fwht(float *x, int64_t n);


/* ---- small floating-point formats (quant-methods.md §0, §1.1, §6.2-6.3) ------
 * One descriptor covers every ExMy format kvq uses: e exponent bits, m
 * mantissa bits, an integer standard bias, signed or not, and the largest
 * finite magnitude code (LLM-FP4's formats use every code; OCP E4M3 loses
 * S.1111.111 to NaN, E5M2 its top binade to Inf/NaN; UE4M3 as ggml uses it
 * saturates at 0x7E).  Magnitude code c = exp << m | mant; exp 0 is the
 * subnormal binade: value = mant·2^(1−bias−m), else (2^m + mant)·2^(exp−bias−m).
 * A real-valued bias b̃ is a scale on this grid (§1.1 scale identity):
 * Q_b̃(x) = s·Q_b0(x/s) with s = 2^(b0 − b̃). */
typedef enum kvq_tie {
    KVQ_TIE_EVEN = 0,  /* RNE: to the even code (IEEE, torch.round, CUDA cvt.rn)   */
    KVQ_TIE_AWAY = 1,  /* RHA: away from zero (C roundf, microxcaling "nearest") */
    KVQ_TIE_ZERO = 2   /* to the smaller magnitude (ggml MXFP4/NVFP4 _ref search) */
} kvq_tie;

typedef enum kvq_fp_id {
    KVQ_FP_E2M1 = 0, KVQ_FP_E3M0, KVQ_FP_E1M2,            /* 4-bit, all codes finite   */
    KVQ_FP_E5M2, KVQ_FP_E4M3, KVQ_FP_E3M4, KVQ_FP_E2M5, KVQ_FP_E1M6, /* 8-bit, LLM-FP4  */
    KVQ_FP_E4M3_OCP, KVQ_FP_E5M2_OCP,                    /* OCP FP8 (NaN/Inf codes)   */
    KVQ_FP_UE4M3,                                        /* unsigned, ggml NVFP4 scale */
    KVQ_FP__COUNT                                        /* E8M0: kvq_e8m0_value()     */
} kvq_fp_id;

#define KVQ_FP_MAX_LEVELS 256 /* magnitude codes of an 8-bit unsigned format */

typedef struct kvq_fpfmt {
    const char *name;      /* "e2m1"                                       */
    uint8_t     e, m;      /* exponent and mantissa bits                   */
    uint8_t     is_signed; /* 1: a sign bit above the magnitude code       */
    int         bias;      /* standard integer exponent bias               */
    unsigned    code_max;  /* largest finite magnitude code                */
} kvq_fpfmt;

/* kvq_fp_format() : the descriptor of a format (NULL past the end). */
const kvq_fpfmt *kvq_fp_format(kvq_fp_id id);
/* kvq_fp_bits() : 1 + e + m for signed formats, e + m for unsigned ones. */
static inline unsigned kvq_fp_bits(const kvq_fpfmt *f) { return (unsigned)f->is_signed + f->e + f->m; }
/* kvq_fp_mag() : value of magnitude code c (c <= code_max), exact. */
float kvq_fp_mag(const kvq_fpfmt *f, unsigned c);
/* kvq_fp_maxval() : largest finite magnitude, kvq_fp_mag(f, code_max). */
static inline float kvq_fp_maxval(const kvq_fpfmt *f) { return kvq_fp_mag(f, f->code_max); }
/* kvq_fp_round_code() : THE rounding routine: magnitude code nearest to
 * |y| on f's standard grid with tie rule t, saturating at code_max
 * (NaN is not an input: codecs screen it).  Reference implementation
 * (frexp, no table): p = max(floor(log2|y|), 1 − bias), v = 2^(p − m),
 * r = round_t(|y|/v), code from (p, r). */
unsigned kvq_fp_round_code(const kvq_fpfmt *f, float y, kvq_tie t);
/* kvq_fp_round() : sign(y)·kvq_fp_mag(round_code(y)) — Q_b0(y). */
float kvq_fp_round(const kvq_fpfmt *f, float y, kvq_tie t);
/* kvq_fp_round_d() : kvq_fp_round in double (same grid; finite y). */
double kvq_fp_round_d(const kvq_fpfmt *f, double y, kvq_tie t);
/* kvq_fp_round_bias() : Q with a real bias b̃: s·Q_b0(y/s), s = 2^(bias−b̃),
 * in double (the paper's quantizer; used by tests and searches). */
double kvq_fp_round_bias(const kvq_fpfmt *f, double y, double bias, kvq_tie t);
/* kvq_fp_bias_for_max() : b̃(M) = 2^e − 1 + log2(2 − 2^−m) − log2(M), the
 * real bias whose maxval is M (M > 0) for an all-codes-finite format. */
double kvq_fp_bias_for_max(const kvq_fpfmt *f, double M);

/* Fast path: a table of the thresholds between adjacent magnitudes, so a
 * code is a count of compares (vectorisable) and equals kvq_fp_round_code
 * bit for bit (tests/test_fp.c checks every format and tie rule). */
typedef struct kvq_fp_lut {
    const kvq_fpfmt *f;
    kvq_tie  tie;
    unsigned n;                          /* magnitude codes: code_max + 1   */
    float    mag[KVQ_FP_MAX_LEVELS];     /* value of each magnitude code    */
    float    mid[KVQ_FP_MAX_LEVELS];     /* mid[i] between mag[i], mag[i+1] */
    uint8_t  up_at_tie[KVQ_FP_MAX_LEVELS]; /* 1: a tie at mid[i] rounds up  */
    float    thr[KVQ_FP_MAX_LEVELS];     /* a > thr[i] ⟺ code > i: mid[i], or
                                            the float below it when ties go up */
} kvq_fp_lut;

void kvq_fp_lut_init(kvq_fp_lut *l, const kvq_fpfmt *f, kvq_tie t);

/* kvq_fp_lut_code() : magnitude code of a = |y| (a >= 0, finite). */
static inline unsigned kvq_fp_lut_code(const kvq_fp_lut *l, float a)
{
    unsigned c = 0;
    for (unsigned i = 0; i + 1 < l->n; i++) c += a > l->thr[i];
    return c;
}

/* kvq_fp_lut_code8() : the same for formats of at most 8 magnitudes (4-bit
 * signed), written with a constant trip count so it vectorises. */
static inline unsigned kvq_fp_lut_code8(const kvq_fp_lut *l, float a)
{
    unsigned c = 0;
    for (unsigned i = 0; i < 7; i++) c += a > l->thr[i];
    return c;
}

/* ---- scale formats: E8M0 (OCP MX) and UE4M3 (ggml NVFP4) ------------------ */
/* kvq_e8m0_value() : 2^(code − 127) for code 0..254 (255 is NaN). */
float kvq_e8m0_value(uint8_t code);
/* kvq_ue4m3_from_f32() : ggml's fp32 → UE4M3: x <= 0 → 0; saturates at 448
 * (0x7E); mantissa rounded half up; subnormals (code exp 0) rounded by
 * (int)(x·512 + 0.5) and clamped to 1..7 (0 below 1). */
/* kvq_ue4m3_value() : the UE4M3 value (0x7F and 0xFF decode to 0).
 * Both inline: nvfp4 calls them once per 16 values. */
#define KVQ_UE4M3_SAT      0x7Eu  /* 448 */
#define KVQ_UE4M3_NAN_LIKE 0x7Fu  /* decodes to 0 */
#define KVQ_UE4M3_MAX      448.0f

static inline uint8_t kvq_ue4m3_from_f32(float x)
{
    if (!(x > 0.0f)) return 0;
    if (x > KVQ_UE4M3_MAX) x = KVQ_UE4M3_MAX;
    uint32_t bits;
    memcpy(&bits, &x, 4);
    int ex = (int)((bits >> 23) & 0xFF) - 127 + 7;
    unsigned man = (bits >> 20) & 7;
    if (ex <= 0) {
        int sub = (int)(x * 512.0f + 0.5f);
        return (uint8_t)(sub < 1 ? 0 : sub > 7 ? 7 : sub);
    }
    if (ex >= 15) return KVQ_UE4M3_SAT;
    man += (bits >> 19) & 1; /* round half up on the first dropped bit */
    if (man > 7) {
        man = 0;
        if (++ex >= 15) return KVQ_UE4M3_SAT;
    }
    return (uint8_t)((unsigned)ex << 3 | man);
}

static inline float kvq_ue4m3_value(uint8_t code)
{
    if ((code & 0x7F) == KVQ_UE4M3_NAN_LIKE) return 0.0f;
    unsigned ex = (code >> 3) & 0xF, man = code & 7;
    if (ex == 0) return (float)man * 0x1p-9f; /* exact: a power-of-two multiple */
    /* (1 + man/8)·2^(ex − 7) built from its f32 bits (no ldexpf) */
    uint32_t bits = (ex - 7u + 127u) << 23 | man << 20;
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

/* ---- layer-output objective (quant-methods.md §0 "layer reconstruction") ---
 * With H = XᵀX over calibration rows X [T][n], the output error of one
 * weight row w against ŵ is ‖X(w − ŵ)‖² = dᵀHd, d = w − ŵ. */
/* kvq_gram_accum() : H[n][n] += XᵀX for X [t][n] (float H, double sums per
 * block of rows). */
void kvq_gram_accum(float *H, const float *X, int64_t t, int64_t n);
/* kvq_gram_quad() : dᵀHd for d[n] (double accumulation). */
double kvq_gram_quad(const float *H, const float *d, int64_t n);

#endif /* KVQ_QUANT_COMMON_H */
