/*
 * test_kernels.c — the kernel slot table (kernels/kernels.h, issue 9
 * item 2): every AVX2 slot against the scalar reference of cpu/ref.c.
 *
 * Exact where the arithmetic is exact: quantize (bytes) and dequantize
 * (float bit patterns) on 2^21 random values plus adversarial blocks —
 * rounding ties (x·id exactly k + ½), the largest magnitude with both
 * signs, all zeros, subnormal and tiny blocks, one huge outlier, values at
 * the f16 scale limit.  Dot products within a stated tolerance: the two
 * tables sum in different orders, so |avx2 − ref| ≤ DOT_TOL · Σ|d·q·x|
 * (a few ulps of the sum of magnitudes for 32–4096 terms).  Also: the
 * KVQ_SIMD=ref override and the golden ggml bytes through the codec (the
 * golden files themselves are checked by test_codecs).  Skips with a
 * message on a CPU without AVX2/FMA.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/kernels.h"
#include "kvq.h"

#define N_RANDOM   (1u << 21) /* values in the random sweep               */
#define N_ADV_BLK  4096       /* adversarial blocks                       */
#define DOT_TOL    1e-5       /* relative to Σ|terms|: ~80 ulps of f32    */
#define DOT_COLS   4096       /* longest dot row                          */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float unif(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }

/* Codes of `bits` bits, LSB first, as quant_common.h streams (written
 * here independently of the library's packer). */
static void pack_codes(const uint8_t *c, size_t n, unsigned bits, uint8_t *dst)
{
    memset(dst, 0, (n * bits + 7) / 8);
    for (size_t i = 0; i < n; i++)
        for (unsigned b = 0; b < bits; b++)
            if (c[i] >> b & 1u) dst[(i * bits + b) / 8] |= (uint8_t)(1u << ((i * bits + b) % 8));
}

static const kvq_kernels *need_avx2(void)
{
    const kvq_kernels *k = kvq_kernels_avx2();
    if (!k) printf("SKIP: this CPU has no AVX2/FMA; only the reference table runs\n");
    return k;
}

/* Random values of varied magnitude, some groups scaled to extremes. */
static void fill_random(float *x, size_t n)
{
    for (size_t i = 0; i < n; i += KVQ_QK) {
        float s = ldexpf(1.0f, (int)(rnd() % 40) - 20);
        for (size_t j = i; j < i + KVQ_QK && j < n; j++) x[j] = unif() * s;
    }
}

/* Block kind b % 8 of the adversarial set. */
static void adversarial_block(float *x, unsigned b)
{
    for (int j = 0; j < KVQ_QK; j++) x[j] = unif();
    switch (b % 8) {
    case 0: /* q8_0 ties: amax 127 → d = 1, values k + ½ */
        for (int j = 0; j < KVQ_QK; j++) x[j] = (float)((int)(rnd() % 254) - 127) + 0.5f;
        x[rnd() % KVQ_QK] = 127.0f;
        break;
    case 1: /* q4_0 ties: max −8 → d = 1, values k + ½ */
        for (int j = 0; j < KVQ_QK; j++) x[j] = (float)((int)(rnd() % 15) - 7) + 0.5f;
        x[rnd() % KVQ_QK] = -8.0f;
        break;
    case 2: /* the largest magnitude with both signs, first one random */
        x[rnd() % 16] = 3.0f;
        x[16 + rnd() % 16] = -3.0f;
        if (rnd() & 1) { float t = x[0]; x[0] = -3.0f * (t < 0 ? -1.0f : 1.0f); }
        break;
    case 3: /* all zeros, some negative zeros */
        for (int j = 0; j < KVQ_QK; j++) x[j] = (rnd() & 1) ? 0.0f : -0.0f;
        break;
    case 4: /* subnormal and tiny: ggml's undefined cases */
        for (int j = 0; j < KVQ_QK; j++) x[j] = unif() * ldexpf(1.0f, -120 - (int)(rnd() % 30));
        break;
    case 5: /* one outlier */
        x[rnd() % KVQ_QK] = 3e4f * ((rnd() & 1) ? 1.0f : -1.0f);
        break;
    case 6: /* near the f16 scale limit of q4_0 */
        x[rnd() % KVQ_QK] = 5.0e5f;
        break;
    default: /* ties at a power-of-two scale */
        for (int j = 0; j < KVQ_QK; j++) x[j] = ldexpf((float)((int)(rnd() % 254) - 127) + 0.5f, -10);
        x[0] = ldexpf(127.0f, -10);
        break;
    }
}

static void compare_quantize(const kvq_kernels *a, const kvq_kernels *r, const float *x, size_t nb)
{
    for (int t = KVQ_KT_Q8_0; t < KVQ_KT_COUNT; t++) {
        size_t bb = kvq_kern_block_bytes((kvq_kt)t);
        uint8_t *pa = malloc(nb * bb), *pr = malloc(nb * bb);
        assert_non_null(pa);
        assert_non_null(pr);
        assert_int_equal(a->quantize[t](x, pa, nb), r->quantize[t](x, pr, nb));
        for (size_t b = 0; b < nb; b++)
            if (memcmp(pa + b * bb, pr + b * bb, bb) != 0)
                fail_msg("type %d block %zu: avx2 bytes differ from the reference", t, b);
        free(pa);
        free(pr);
    }
}

static void test_quantize_random(void **state)
{
    (void)state;
    const kvq_kernels *a = need_avx2();
    if (!a) skip();
    float *x = malloc(N_RANDOM * sizeof *x);
    assert_non_null(x);
    fill_random(x, N_RANDOM);
    compare_quantize(a, kvq_kernels_ref(), x, N_RANDOM / KVQ_QK);
    free(x);
}

static void test_quantize_adversarial(void **state)
{
    (void)state;
    const kvq_kernels *a = need_avx2();
    if (!a) skip();
    float *x = malloc(N_ADV_BLK * KVQ_QK * sizeof *x);
    assert_non_null(x);
    for (unsigned b = 0; b < N_ADV_BLK; b++) adversarial_block(x + (size_t)b * KVQ_QK, b);
    compare_quantize(a, kvq_kernels_ref(), x, N_ADV_BLK);
    free(x);
}

/* The status a quantize slot reports (kernels.h KVQ_KERN_*), for every
 * table: NaN (either sign), ±Inf anywhere in any block → NONFINITE; a
 * finite value too large for an f16 scale → SCALE_RANGE only; clean → 0. */
#define STATUS_BLOCKS 64
#define SCALE_TOO_BIG 1e7f /* /127 and /8 both exceed the f16 maximum 65504 */

static void check_status(const kvq_kernels *k)
{
    float x[STATUS_BLOCKS * KVQ_QK];
    uint8_t p[STATUS_BLOCKS * KVQ_Q8_0_BYTES];
    uint32_t bad_bits[4] = {0x7FC00000u, 0xFFC00001u, 0x7F800000u, 0xFF800000u}; /* ±NaN, ±Inf */
    for (int t = KVQ_KT_Q8_0; t < KVQ_KT_COUNT; t++)
        for (int rep = 0; rep < 64; rep++) {
            fill_random(x, STATUS_BLOCKS * KVQ_QK);
            size_t nb = 1 + rnd() % STATUS_BLOCKS, at = rnd() % (nb * KVQ_QK);
            assert_int_equal(k->quantize[t](x, p, nb), 0);
            float saved = x[at];
            memcpy(&x[at], &bad_bits[rep % 4], sizeof x[at]);
            if (!(k->quantize[t](x, p, nb) & KVQ_KERN_NONFINITE))
                fail_msg("%s type %d: non-finite value %zu of %zu blocks not reported", k->name, t, at, nb);
            x[at] = SCALE_TOO_BIG * (rep & 1 ? 1.0f : -1.0f);
            assert_int_equal(k->quantize[t](x, p, nb), KVQ_KERN_SCALE_RANGE);
            x[at] = saved;
        }
}

static void test_quantize_status(void **state)
{
    (void)state;
    check_status(kvq_kernels_ref());
    if (kvq_kernels_avx2()) check_status(kvq_kernels_avx2());
}

/* Through the codec: NaN/Inf named by element (no core scan runs for
 * these codecs: KVQ_FLAG_CHECKS_FINITE), a scale overflow by block. */
static void test_codec_reports(void **state)
{
    (void)state;
    static const char *const names[2] = {"q8_0", "q4_0"};
    float x[8 * KVQ_QK];
    uint8_t out[8 * KVQ_Q8_0_BYTES];
    const int64_t dims[2] = {8, KVQ_QK};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, dims);
    for (int i = 0; i < 2; i++) {
        kvq_ctx *c = NULL;
        assert_int_equal(kvq_ctx_create(names[i], &c), KVQ_OK);
        assert_true(kvq_ctx_codec(c)->flags & KVQ_FLAG_CHECKS_FINITE);
        size_t n = 0;
        fill_random(x, 8 * KVQ_QK);
        x[77] = -INFINITY;
        assert_int_equal(kvq_ctx_encode_payload(c, &t, out, sizeof out, &n), KVQ_ERR_NONFINITE);
        assert_non_null(strstr(kvq_last_error_detail(), "element 77 is -inf"));
        x[77] = SCALE_TOO_BIG;
        assert_int_equal(kvq_ctx_encode_payload(c, &t, out, sizeof out, &n), KVQ_ERR_PARAM_RANGE);
        assert_non_null(strstr(kvq_last_error_detail(), "block 2 (element 64)"));
        kvq_ctx_free(c);
    }
}

/* Random blocks: any code byte, a finite f16 scale (normal or subnormal). */
static void random_blocks(kvq_kt t, uint8_t *p, size_t nb)
{
    size_t bb = kvq_kern_block_bytes(t);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *blk = p + b * bb;
        for (size_t j = 2; j < bb; j++) blk[j] = (uint8_t)rnd();
        uint16_t h;
        do h = (uint16_t)rnd();
        while ((h & KVQ_F16_EXP_MASK) == KVQ_F16_EXP_MASK);
        blk[0] = (uint8_t)h;
        blk[1] = (uint8_t)(h >> 8);
    }
}

static void test_dequantize_exact(void **state)
{
    (void)state;
    const kvq_kernels *a = need_avx2(), *r = kvq_kernels_ref();
    if (!a) skip();
    size_t nb = N_RANDOM / KVQ_QK;
    float *ya = malloc(N_RANDOM * sizeof *ya), *yr = malloc(N_RANDOM * sizeof *yr);
    uint8_t *p = malloc(nb * KVQ_Q8_0_BYTES);
    assert_true(ya && yr && p);
    for (int t = KVQ_KT_Q8_0; t < KVQ_KT_COUNT; t++) {
        random_blocks((kvq_kt)t, p, nb);
        a->dequantize[t](p, ya, nb);
        r->dequantize[t](p, yr, nb);
        assert_memory_equal(ya, yr, N_RANDOM * sizeof *ya);
    }
    free(ya);
    free(yr);
    free(p);
}

static void test_dot_tolerance(void **state)
{
    (void)state;
    const kvq_kernels *a = need_avx2(), *r = kvq_kernels_ref();
    if (!a) skip();
    size_t nb = DOT_COLS / KVQ_QK;
    float x[DOT_COLS], y[DOT_COLS];
    uint8_t p[DOT_COLS / KVQ_QK * KVQ_Q8_0_BYTES];
    for (int t = KVQ_KT_Q8_0; t < KVQ_KT_COUNT; t++)
        for (int rep = 0; rep < 200; rep++) {
            size_t n = 1 + rnd() % nb; /* 1 .. 128 blocks */
            fill_random(x, n * KVQ_QK);
            random_blocks((kvq_kt)t, p, n);
            r->dequantize[t](p, y, n);
            double mag = 0.0;
            for (size_t i = 0; i < n * KVQ_QK; i++) mag += fabs((double)y[i] * (double)x[i]);
            float da = a->dot[t](p, x, n), dr = r->dot[t](p, x, n);
            if (fabs((double)da - (double)dr) > DOT_TOL * mag + 1e-37)
                fail_msg("type %d, %zu blocks: avx2 %.9g ref %.9g (Σ|terms| %.9g)", t, n, (double)da, (double)dr,
                         mag);
        }
}

/* dots (several rows per call) equals each table's own dot bit for bit
 * (same per-row summation order), for every row count 1..DOTS_MAX_ROWS. */
#define DOTS_MAX_ROWS 11

static void check_dots(const kvq_kernels *k)
{
    float x[8 * KVQ_QK], out[DOTS_MAX_ROWS];
    uint8_t p[DOTS_MAX_ROWS * 8 * KVQ_Q8_0_BYTES];
    for (int t = KVQ_KT_Q8_0; t < KVQ_KT_COUNT; t++)
        for (size_t nb = 1; nb <= 8; nb++)
            for (size_t rows = 1; rows <= DOTS_MAX_ROWS; rows++) {
                size_t stride = nb * kvq_kern_block_bytes((kvq_kt)t);
                fill_random(x, nb * KVQ_QK);
                random_blocks((kvq_kt)t, p, rows * nb);
                k->dots[t](p, stride, rows, x, nb, out);
                for (size_t r = 0; r < rows; r++) {
                    float want = k->dot[t](p + r * stride, x, nb);
                    if (memcmp(&want, &out[r], sizeof want) != 0)
                        fail_msg("%s type %d, %zu rows of %zu blocks: row %zu dots %.9g, dot %.9g", k->name, t,
                                 rows, nb, r, (double)out[r], (double)want);
                }
            }
}

static void test_dots_equal_dot(void **state)
{
    (void)state;
    check_dots(kvq_kernels_ref());
    if (kvq_kernels_avx2()) check_dots(kvq_kernels_avx2());
}

/* dots_f16: AVX2 against the reference within DOT_TOL, and its 4-row
 * pass equal to its single rows bit for bit (row counts 1..7, widths with
 * and without a tail of < 8 values). */
static void test_dots_f16(void **state)
{
    (void)state;
    const kvq_kernels *a = need_avx2(), *r = kvq_kernels_ref();
    if (!a) skip();
    enum { F16_ROWS = 7, F16_MAXC = 203 };
    float x[F16_MAXC], w[F16_ROWS * F16_MAXC], oa[F16_ROWS], orf[F16_ROWS], one;
    uint16_t h[F16_ROWS * F16_MAXC];
    for (size_t n = 1; n <= F16_MAXC; n += 13)
        for (size_t rows = 1; rows <= F16_ROWS; rows++) {
            fill_random(x, n);
            fill_random(w, rows * n);
            kvq_f32_to_f16_row(w, h, rows * n);
            a->dots_f16((const uint8_t *)h, n, rows, x, n, oa);
            r->dots_f16((const uint8_t *)h, n, rows, x, n, orf);
            for (size_t i = 0; i < rows; i++) {
                double mag = 0.0;
                for (size_t j = 0; j < n; j++) mag += fabs((double)kvq_f16_to_f32(h[i * n + j]) * x[j]);
                if (fabs((double)oa[i] - (double)orf[i]) > DOT_TOL * mag + 1e-37)
                    fail_msg("f16 %zu cols row %zu: avx2 %.9g ref %.9g", n, i, (double)oa[i], (double)orf[i]);
                a->dots_f16((const uint8_t *)(h + i * n), n, 1, x, n, &one);
                assert_memory_equal(&one, &oa[i], sizeof one);
            }
        }
}

/* Integer codes of every width 2..8 (rtn, bfp, mxint8 rows): AVX2
 * dequantize equals the reference float for float, codes_dot within
 * DOT_TOL of Σ|(c − off)·x| (Σ x within DOT_TOL of Σ|x|), for lengths
 * with and without tails, random scale / zero / centre. */
#define CODES_MAX 300 /* longest group tested (rtn gran=row rows are any length) */

/* codes_row_dot over groups of 8, 32 and the whole row, with and without
 * a bias term: AVX2 and reference within DOT_TOL of the double sum. */
static void check_row_dot(const kvq_kernels *a, const kvq_kernels *r, const uint8_t *packed, const uint8_t *codes,
                          unsigned bits, size_t n, float off, const float *x)
{
    static const size_t groups[3] = {8, 32, 0};
    float sc[CODES_MAX], bi[CODES_MAX];
    for (size_t i = 0; i < CODES_MAX; i++) {
        sc[i] = unif() * 0.1f;
        bi[i] = unif();
    }
    for (int gi = 0; gi < 3; gi++)
        for (int use_bias = 0; use_bias < 2; use_bias++) {
            size_t group = groups[gi] ? groups[gi] : n;
            const float *b = use_bias ? bi : NULL;
            double want = 0.0, mag = 0.0;
            for (size_t i = 0; i < n; i++) {
                double t = (double)sc[i / group] * ((double)codes[i] - off) * x[i];
                double u = use_bias ? (double)bi[i / group] * x[i] : 0.0;
                want += t + u;
                mag += fabs(t) + fabs(u);
            }
            float va = a->codes_row_dot(packed, bits, n, group, off, sc, b, x);
            float vr = r->codes_row_dot(packed, bits, n, group, off, sc, b, x);
            if (fabs((double)va - want) > DOT_TOL * mag + 1e-37 || fabs((double)vr - want) > DOT_TOL * mag + 1e-37)
                fail_msg("row dot, %u bits, %zu codes, group %zu, bias %d: avx2 %.9g ref %.9g exact %.9g", bits, n,
                         group, use_bias, (double)va, (double)vr, want);
        }
}

static void test_codes_slots(void **state)
{
    (void)state;
    const kvq_kernels *a = need_avx2(), *r = kvq_kernels_ref();
    if (!a) skip();
    uint8_t codes[CODES_MAX], packed[CODES_MAX];
    float x[CODES_MAX], ya[CODES_MAX], yr[CODES_MAX];
    for (unsigned bits = 2; bits <= 8; bits++)
        for (size_t n = 1; n <= CODES_MAX; n += 1 + n / 4) {
            for (size_t i = 0; i < n; i++) codes[i] = (uint8_t)(rnd() & ((1u << bits) - 1));
            pack_codes(codes, n, bits, packed);
            fill_random(x, n);
            float sc = unif() * 0.1f, z = unif(), off = (float)(rnd() % (1u << bits)) * 0.5f;
            a->codes_dequant(packed, bits, n, sc, z, off, ya);
            r->codes_dequant(packed, bits, n, sc, z, off, yr);
            assert_memory_equal(ya, yr, n * sizeof *ya);
            for (size_t i = 0; i < n; i++) {
                float t = sc * ((float)codes[i] - off); /* two statements: no FMA contraction */
                assert_true(yr[i] == z + t);
            }
            float ca, sa, cr, sr;
            a->codes_dot(packed, bits, n, off, x, &ca, &sa);
            r->codes_dot(packed, bits, n, off, x, &cr, &sr);
            double mc = 0.0, ms = 0.0, want = 0.0;
            for (size_t i = 0; i < n; i++) {
                mc += fabs(((double)codes[i] - off) * x[i]);
                ms += fabs((double)x[i]);
                want += ((double)codes[i] - off) * x[i];
            }
            double tc = DOT_TOL * mc + 1e-37, ts = DOT_TOL * ms + 1e-37;
            if (fabs((double)ca - (double)cr) > tc || fabs((double)cr - want) > tc ||
                fabs((double)sa - (double)sr) > ts)
                fail_msg("%u bits, %zu codes: avx2 %.9g/%.9g ref %.9g/%.9g exact %.9g", bits, n, (double)ca,
                         (double)sa, (double)cr, (double)sr, want);
            check_row_dot(a, r, packed, codes, bits, n, off, x);
        }
}

/* codes_quant (rtn's quantizer): AVX2 bytes equal the reference for every
 * width, sym and asym grids, lengths with tails, values on exact ties
 * (k + ½ steps), beyond the clamp, and ±0. */
static void test_codes_quant(void **state)
{
    (void)state;
    const kvq_kernels *a = need_avx2(), *r = kvq_kernels_ref();
    if (!a) skip();
    float x[CODES_MAX];
    uint8_t pa[CODES_MAX], pr[CODES_MAX];
    for (unsigned bits = 2; bits <= 8; bits++)
        for (int asym = 0; asym < 2; asym++)
            for (size_t n = 1; n <= CODES_MAX; n += 1 + n / 3) {
                int32_t qmax = (1 << (bits - 1)) - 1, lo = asym ? 0 : -qmax;
                int32_t hi = asym ? (1 << bits) - 1 : qmax, off = asym ? 0 : qmax;
                float d = ldexpf(1.0f, (int)(rnd() % 20) - 10), z = asym ? -d * (float)(hi / 2) : 0.0f;
                for (size_t i = 0; i < n; i++) {
                    int kind = (int)(rnd() % 4);
                    float k = (float)((int)(rnd() % (unsigned)(hi - lo + 5)) + lo - 2);
                    float sz = (rnd() & 1) ? 0.0f : -0.0f;
                    x[i] = kind == 0 ? z + d * (k + 0.5f) : kind == 1 ? z + d * k + unif() * d : sz;
                }
                size_t nbytes = (n * bits + 7) / 8;
                memset(pa, 0xAA, sizeof pa);
                memset(pr, 0x55, sizeof pr);
                a->codes_quant(x, n, z, 1.0f / d, lo, hi, off, bits, pa);
                r->codes_quant(x, n, z, 1.0f / d, lo, hi, off, bits, pr);
                if (memcmp(pa, pr, nbytes) != 0)
                    fail_msg("codes_quant %u bits, asym %d, %zu values: avx2 bytes differ from the reference", bits,
                             asym, n);
            }
}

/* f16_gather: every finite f16 (normal, subnormal, ±0) at an odd byte
 * stride, AVX2 floats equal the reference and kvq_f16_to_f32. */
static void test_f16_gather(void **state)
{
    (void)state;
    enum { STRIDE = 3, N = 1 << 16 };
    uint8_t *src = malloc((size_t)N * STRIDE);
    float *ya = malloc(N * sizeof *ya), *yr = malloc(N * sizeof *yr);
    assert_true(src && ya && yr);
    size_t n = 0;
    for (uint32_t h = 0; h < N; h++) {
        if ((h & KVQ_F16_EXP_MASK) == KVQ_F16_EXP_MASK) continue; /* scales are finite */
        src[n * STRIDE] = (uint8_t)h;
        src[n * STRIDE + 1] = (uint8_t)(h >> 8);
        src[n * STRIDE + 2] = 0xEE;
        n++;
    }
    kvq_kernels_ref()->f16_gather(src, STRIDE, n, yr);
    for (size_t i = 0; i < n; i++) {
        float want = kvq_f16_to_f32((uint16_t)(src[i * STRIDE] | src[i * STRIDE + 1] << 8));
        assert_memory_equal(&yr[i], &want, sizeof want);
    }
    if (kvq_kernels_avx2()) {
        kvq_kernels_avx2()->f16_gather(src, STRIDE, n, ya);
        assert_memory_equal(ya, yr, n * sizeof *ya);
    }
    free(src);
    free(ya);
    free(yr);
}

static void test_absmax_exact(void **state)
{
    (void)state;
    const kvq_kernels *a = need_avx2(), *r = kvq_kernels_ref();
    if (!a) skip();
    float x[1000];
    for (size_t n = 0; n <= 1000; n += 7) {
        fill_random(x, 1000);
        if (n) x[rnd() % n] = -1e6f;
        float va = a->absmax(x, n), vr = r->absmax(x, n);
        assert_memory_equal(&va, &vr, sizeof va);
    }
}

/* The codec path: q4_0 through the table in use equals the reference bytes. */
static void test_codec_uses_slots(void **state)
{
    (void)state;
    const kvq_kernels *k = kvq_kernels_get();
    const char *env = getenv("KVQ_SIMD");
    if (env && strcmp(env, "ref") == 0) assert_string_equal(k->name, "ref");
    else if (kvq_kernels_avx2()) assert_string_equal(k->name, "avx2");
    float x[4 * KVQ_QK];
    fill_random(x, 4 * KVQ_QK);
    kvq_ctx *c = NULL;
    assert_int_equal(kvq_ctx_create("q4_0", &c), KVQ_OK);
    const int64_t dims[2] = {4, KVQ_QK};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, dims);
    uint8_t out[4 * KVQ_Q4_0_BYTES], ref[4 * KVQ_Q4_0_BYTES];
    size_t n = 0;
    assert_int_equal(kvq_ctx_encode_payload(c, &t, out, sizeof out, &n), KVQ_OK);
    assert_int_equal(n, sizeof out);
    kvq_kernels_ref()->quantize[KVQ_KT_Q4_0](x, ref, 4);
    assert_memory_equal(out, ref, sizeof ref);
    kvq_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_random),  cmocka_unit_test(test_quantize_adversarial),
        cmocka_unit_test(test_dequantize_exact), cmocka_unit_test(test_dot_tolerance),
        cmocka_unit_test(test_absmax_exact),     cmocka_unit_test(test_codec_uses_slots),
        cmocka_unit_test(test_quantize_status),  cmocka_unit_test(test_codec_reports),
        cmocka_unit_test(test_dots_equal_dot),   cmocka_unit_test(test_dots_f16),
        cmocka_unit_test(test_codes_slots),      cmocka_unit_test(test_codes_quant),
        cmocka_unit_test(test_f16_gather),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
