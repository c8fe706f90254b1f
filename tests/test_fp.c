/*
 * test_fp.c — LLM-FP4 machinery and the FP4 presets (quant-methods.md §1.8,
 * §6): value sets of E2M1/E3M0/E1M2, the table path equals the reference
 * rounding for every format and tie rule, Q idempotent/odd/monotone/
 * bounded, the tie cases of §1.8.4, maxval(b̃(M)) = M, scale and pre-shift
 * identities (the latter bit-exact in float64, hence the re-parameterised
 * GEMM), search sanity (search=none is MinMax; the search never loses to
 * it on the weight objective), determinism, and mxfp4 = ggml's golden
 * bytes (nvfp4 with tscale=0 too); mxfp4 encode speed is printed.  The
 * encode fast paths equal what they replace: 8-bit codes from the value's
 * bits = the reference rounding, nvfp4's midpoint count = ggml's 16-code
 * search, mxfp4's exponent = floorf(log2f), MinMax scale = 2^(b0 − b̃(M)).
 * The kern_fp.h slot tables (reference, AVX2) give identical results on
 * every slot, and fp, mxfp4, nvfp4 and nupes (which skip the core's NaN/Inf
 * scan) reject NaN, +Inf and −Inf at every position of a tensor, naming
 * the first one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <math.h>
#include <time.h>

#include <cmocka.h>

#include "kvq.h"
#include "quant/quant_common.h"
#include "quant/fp_impl.h"
#include "quant/nupes.h"
#include "kernels/kern_fp.h"

#define GOLDEN "../shared/data/golden/"
#define N_RAND 200000

static uint64_t rng = 0x1234567887654321ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void test_value_sets(void **state)
{
    (void)state;
    static const float e2m1[8] = {0, .5f, 1, 1.5f, 2, 3, 4, 6}, e3m0[8] = {0, .25f, .5f, 1, 2, 4, 8, 16},
                       e1m2[8] = {0, .5f, 1, 1.5f, 2, 2.5f, 3, 3.5f};
    const float *want[3] = {e2m1, e3m0, e1m2};
    for (int f = 0; f < 3; f++)
        for (unsigned c = 0; c < 8; c++) assert_true(kvq_fp_mag(kvq_fp_format((kvq_fp_id)f), c) == want[f][c]);
    assert_true(kvq_fp_maxval(kvq_fp_format(KVQ_FP_E4M3_OCP)) == 448.0f);
    assert_true(kvq_fp_maxval(kvq_fp_format(KVQ_FP_E5M2_OCP)) == 57344.0f);
    assert_true(kvq_fp_maxval(kvq_fp_format(KVQ_FP_UE4M3)) == 448.0f);
    /* at most 2^bits - 1 distinct outputs for any real bias */
    const kvq_fpfmt *f = kvq_fp_format(KVQ_FP_E2M1);
    double seen[64];
    int ns = 0;
    for (int i = 0; i < 20000; i++) {
        double v = kvq_fp_round_bias(f, 10.0 * frand(), 0.37, KVQ_TIE_EVEN), *p = seen;
        while (p < seen + ns && *p != v) p++;
        if (p == seen + ns) {
            assert_true(ns < 15);
            seen[ns++] = v;
        }
    }
    assert_int_equal(ns, 15);
}

static void test_lut_equals_reference(void **state)
{
    (void)state;
    for (int id = 0; id < KVQ_FP__COUNT; id++)
        for (int t = 0; t < 3; t++) {
            const kvq_fpfmt *f = kvq_fp_format((kvq_fp_id)id);
            kvq_fp_lut l;
            kvq_fp_lut_init(&l, f, (kvq_tie)t);
            float mx = kvq_fp_maxval(f);
            for (unsigned i = 0; i + 1 < l.n; i++) { /* every midpoint and its neighbours */
                float m = l.mid[i], v[3] = {m, nextafterf(m, 0), nextafterf(m, INFINITY)};
                for (int k = 0; k < 3; k++) assert_int_equal(kvq_fp_lut_code(&l, v[k]), kvq_fp_round_code(f, v[k], (kvq_tie)t));
            }
            for (int i = 0; i < N_RAND / 20; i++) {
                float a = fabsf(frand()) * mx * 1.3f;
                assert_int_equal(kvq_fp_lut_code(&l, a), kvq_fp_round_code(f, a, (kvq_tie)t));
                if (l.n <= 8) assert_int_equal(kvq_fp_lut_code8(&l, a), kvq_fp_round_code(f, a, (kvq_tie)t));
            }
        }
}

static void test_quantizer_properties(void **state)
{
    (void)state;
    const kvq_fpfmt *f = kvq_fp_format(KVQ_FP_E2M1);
    /* §1.8.4 ties, E2M1 b = 1, RNE */
    assert_true(kvq_fp_round(f, 0.75f, KVQ_TIE_EVEN) == 1.0f && kvq_fp_round(f, 1.75f, KVQ_TIE_EVEN) == 2.0f);
    assert_true(kvq_fp_round(f, 3.5f, KVQ_TIE_EVEN) == 4.0f && kvq_fp_round(f, 5.0f, KVQ_TIE_EVEN) == 4.0f);
    /* ggml's rule: ties toward zero */
    assert_true(kvq_fp_round(f, 0.75f, KVQ_TIE_ZERO) == 0.5f && kvq_fp_round(f, 1.75f, KVQ_TIE_ZERO) == 1.5f);
    assert_true(kvq_fp_round(f, 3.5f, KVQ_TIE_ZERO) == 3.0f && kvq_fp_round(f, 5.0f, KVQ_TIE_ZERO) == 4.0f);
    assert_true(kvq_fp_round(f, 5.0f, KVQ_TIE_AWAY) == 6.0f && kvq_fp_round(f, 0.25f, KVQ_TIE_AWAY) == 0.5f);
    for (int id = 0; id < 3; id++) {
        f = kvq_fp_format((kvq_fp_id)id);
        double bias = 0.8 + 0.3 * id, prev = -INFINITY;
        double mx = kvq_fp_maxval(f) * exp2(f->bias - bias);
        for (int i = 0; i < N_RAND / 10; i++) {
            double x = 12.0 * frand(), q = kvq_fp_round_bias(f, x, bias, KVQ_TIE_EVEN);
            assert_true(kvq_fp_round_bias(f, q, bias, KVQ_TIE_EVEN) == q);     /* idempotent */
            assert_true(kvq_fp_round_bias(f, -x, bias, KVQ_TIE_EVEN) == -q);   /* odd        */
            assert_true(fabs(q) <= mx);                                        /* bounded    */
            if (fabs(x) <= mx) {                                               /* |x−Q| ≤ v/2 */
                int k;
                frexp(fabs(x) / exp2(f->bias - bias), &k);
                int p = k - 1 < 1 - f->bias ? 1 - f->bias : k - 1;
                assert_true(fabs(x - q) <= 0.5 * ldexp(1.0, p - f->m) * exp2(f->bias - bias) * (1 + 1e-12));
            }
        }
        for (double x = -15; x < 15; x += 0.01) { /* monotone */
            double q = kvq_fp_round_bias(f, x, bias, KVQ_TIE_EVEN);
            assert_true(q >= prev);
            prev = q;
        }
        for (double M = 0.01; M < 100; M *= 1.37) { /* maxval(b̃(M)) = M, Q(±M) = ±M */
            double b = kvq_fp_bias_for_max(f, M);
            assert_true(fabs(kvq_fp_maxval(f) * exp2(f->bias - b) - M) <= 1e-12 * M);
            assert_true(fabs(kvq_fp_round_bias(f, M, b, KVQ_TIE_EVEN) - M) <= 1e-12 * M);
            assert_true(fabs(kvq_fp_round_bias(f, -M, b, KVQ_TIE_EVEN) + M) <= 1e-12 * M);
        }
    }
}

/* §1.1 identities and §1.3 step 4: Σ_j W·Q_(ρ+k_j)(x_j) = Σ_j (2^−k_j W)·Q_ρ(2^k_j x_j), bit-exact. */
static void test_identities(void **state)
{
    (void)state;
    const kvq_fpfmt *f = kvq_fp_format(KVQ_FP_E2M1);
    enum { N = 64 };
    for (int trial = 0; trial < 200; trial++) {
        double rho = 0.5 + 2.0 * fabs((double)frand()), w[N], x[N], lhs = 0, rhs = 0;
        int k[N];
        for (int j = 0; j < N; j++) {
            w[j] = frand(), x[j] = 4.0 * frand(), k[j] = (int)(fabs((double)frand()) * 4) % 4;
            double b0 = f->bias, s = kvq_fp_round_bias(f, x[j], rho, KVQ_TIE_EVEN);
            /* scale identity against integer bias b0 */
            assert_true(s == exp2(b0 - rho) * kvq_fp_round_d(f, x[j] * exp2(rho - b0), KVQ_TIE_EVEN));
            double a = kvq_fp_round_bias(f, x[j], rho + k[j], KVQ_TIE_EVEN);
            double b = ldexp(kvq_fp_round_bias(f, ldexp(x[j], k[j]), rho, KVQ_TIE_EVEN), -k[j]);
            assert_true(a == b); /* pre-shift identity */
            lhs += w[j] * a;
            rhs += ldexp(w[j], -k[j]) * kvq_fp_round_bias(f, ldexp(x[j], k[j]), rho, KVQ_TIE_EVEN);
        }
        assert_true(lhs == rhs); /* re-parameterised GEMM, bit for bit */
    }
}

static float weight_err(const char *spec, const float *x, int64_t rows, int64_t cols, uint8_t **blob, size_t *n)
{
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
    int64_t d[2] = {rows, cols};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, (void *)x, 2, d);
    size_t cap = kvq_ctx_bound(ctx, &t.shape);
    *blob = malloc(cap);
    assert_int_equal(kvq_ctx_encode(ctx, &t, *blob, cap, n), KVQ_OK);
    float *y = malloc(sizeof(float) * (size_t)(rows * cols));
    kvq_tensor o = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    assert_int_equal(kvq_blob_decode(*blob, *n, &o), KVQ_OK);
    double e = 0;
    for (int64_t i = 0; i < rows * cols; i++) e += (double)(x[i] - y[i]) * (x[i] - y[i]);
    free(y);
    kvq_ctx_free(ctx);
    return (float)e;
}

static void test_search(void **state)
{
    (void)state;
    enum { R = 16, C = 4096 };
    float *x = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) { /* Gaussian rows (Box-Muller) */
        double u = 0.5 * (frand() + 1.0) + 1e-12, v = frand();
        x[i] = (float)(0.05 * sqrt(-2.0 * log(u)) * cos(M_PI * v));
    }
    uint8_t *b0, *b1, *b2;
    size_t n0, n1, n2;
    float e_mm = weight_err("fp:search=none", x, R, C, &b0, &n0);
    float e_p = weight_err("fp:search=paper", x, R, C, &b1, &n1);
    float e_c = weight_err("fp:search=clip", x, R, C, &b2, &n2);
    assert_true(e_p < e_mm && e_c < e_mm);
    /* MinMax: each row's scale is max/6 (stored f32), so the row max is exact */
    float sc;
    kvq_blob_info bi;
    assert_int_equal(kvq_blob_info_read(b0, n0, &bi), KVQ_OK);
    memcpy(&sc, b0 + bi.header_size + 1, 4);
    float mx = 0;
    for (int j = 0; j < C; j++) mx = fabsf(x[j]) > mx ? fabsf(x[j]) : mx;
    assert_true(fabsf(sc * 6.0f - mx) <= 1e-6f * mx);
    /* the searched clip is below the max on Gaussian data */
    assert_int_equal(kvq_blob_info_read(b1, n1, &bi), KVQ_OK);
    memcpy(&sc, b1 + bi.header_size + 1, 4);
    print_message("[  INFO    ] row 0: max %.5f, searched clip %.5f\n", (double)mx, (double)(sc * 6.0f));
    assert_true(sc * 6.0f < mx);
    /* determinism */
    uint8_t *b3;
    size_t n3;
    weight_err("fp:search=paper", x, R, C, &b3, &n3);
    assert_int_equal(n1, n3);
    assert_memory_equal(b1, b3, n1);
    free(b0), free(b1), free(b2), free(b3), free(x);
}

static void *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)len + 1);
    *n = fread(p, 1, (size_t)len, f);
    fclose(f);
    return p;
}

static void check_golden(const char *spec, const char *ext, size_t hdr, int block)
{
    static const char *inputs[] = {"adversarial", "stories260K.layer0.wq", "stories260K.tok_embeddings"};
    for (int i = 0; i < 3; i++) {
        char path[256];
        size_t nx, ng, np;
        snprintf(path, sizeof path, GOLDEN "%s.f32", inputs[i]);
        float *x = read_file(path, &nx);
        snprintf(path, sizeof path, GOLDEN "%s.%s", inputs[i], ext);
        uint8_t *g = read_file(path, &ng);
        if (!x || !g) {
            free(x), free(g);
            print_message("[  SKIPPED ] %s absent\n", path);
            skip();
        }
        kvq_ctx *ctx;
        assert_int_equal(kvq_ctx_create(spec, &ctx), KVQ_OK);
        int64_t d[2] = {(int64_t)(nx / 4 / (size_t)block), block};
        kvq_tensor tx = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
        uint8_t *p = malloc(ng + hdr + 64);
        assert_int_equal(kvq_ctx_encode_payload(ctx, &tx, p, ng + hdr + 64, &np), KVQ_OK);
        assert_int_equal(np, ng + hdr);
        assert_memory_equal(p + hdr, g, ng);
        kvq_ctx_free(ctx);
        free(x), free(g), free(p);
    }
}

static void test_mxfp4_golden(void **state)
{
    (void)state;
    check_golden("mxfp4", "mxfp4", 0, 32);
}

static void test_nvfp4_golden(void **state)
{
    (void)state;
    check_golden("nvfp4:tscale=0", "nvfp4", 4, 64);
}

static void test_mxfp4_speed(void **state)
{
    (void)state;
    enum { R = 256, C = 4096 };
    float *x = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) x[i] = frand();
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create("mxfp4", &ctx), KVQ_OK);
    int64_t d[2] = {R, C};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
    size_t cap = kvq_ctx_payload_bound(ctx, &t.shape), n;
    uint8_t *p = malloc(cap);
    struct timespec t0, t1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    for (int k = 0; k < 4; k++) assert_int_equal(kvq_ctx_encode_payload(ctx, &t, p, cap, &n), KVQ_OK);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    print_message("[  INFO    ] mxfp4 encode: %.2f GB/s of f32 input per core (thread CPU time)\n", 4.0 * R * C * 4 / s / 1e9);
    kvq_ctx_free(ctx);
    free(p), free(x);
}

/* The 8-bit code path (codes read off the value's bits, one threshold)
 * equals the reference rounding: every midpoint and its neighbours, then a
 * million random f32 bit patterns from f32 subnormals to past maxval. */
static void test_fast_codes_any(void **state)
{
    (void)state;
    enum { NV = 1 << 20 };
    float *x = malloc(sizeof(float) * NV);
    uint8_t *c = malloc(NV);
    static const kvq_fp_id ids[] = {KVQ_FP_E5M2, KVQ_FP_E4M3, KVQ_FP_E3M4, KVQ_FP_E2M5, KVQ_FP_E1M6,
                                    KVQ_FP_E4M3_OCP, KVQ_FP_E5M2_OCP};
    for (size_t id = 0; id < sizeof ids / sizeof ids[0]; id++)
        for (int t = 0; t < 3; t++) {
            const kvq_fpfmt *f = kvq_fp_format(ids[id]);
            kvq_fp_lut l;
            kvq_fp_lut_init(&l, f, (kvq_tie)t);
            int64_t n = 0;
            for (unsigned i = 0; i + 1 < l.n; i++) {
                x[n++] = l.mid[i], x[n++] = -nextafterf(l.mid[i], 0), x[n++] = nextafterf(l.mid[i], INFINITY);
                x[n++] = l.mag[i];
            }
            int64_t per = id == 0 && t == 0 ? NV : NV / 16; /* millions for one, fewer for the rest */
            while (n < per) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                uint32_t u = (uint32_t)(rng >> 32) & 0x7FFFFFFFu;
                uint32_t ex = (uint32_t)(rng & 0xFF) % 40 + 127 - 30; /* 2^-30 .. 2^9 */
                u = (rng >> 8) % 7 == 0 ? u % 0x800000u : (u & 0x807FFFFFu) | ex << 23;
                memcpy(&x[n++], &u, 4);
            }
            unsigned sb = kvq_fp_bits(f) - 1;
            fp_codes_any(&l, x, n, 1.0f, c);
            for (int64_t j = 0; j < n; j++) {
                unsigned want = kvq_fp_round_code(f, x[j], (kvq_tie)t);
                unsigned got = c[j] & ((1u << sb) - 1), neg = c[j] >> sb;
                if (got != want || neg != (unsigned)(x[j] < 0 && want != 0))
                    fail_msg("%s tie %d: x = %a gives code %u (sign %u), reference %u", f->name, t, (double)x[j],
                             got, neg, want);
            }
        }
    free(x), free(c);
}

/* nvfp4 (tscale=0) equals a direct transcription of ggml's encoder (first
 * index of the smallest fl(|k·d − x|) over all 16 codes) on a million
 * values: exact ties at midpoints and one ulp either side, random blocks,
 * f32 subnormal-scale blocks and blocks past UE4M3's saturation. */
static void test_nvfp4_fast_equals_search(void **state)
{
    (void)state;
    static const float kv[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    enum { R = 256, C = 4096 };
    float *x = malloc(sizeof(float) * R * C);
    for (int b = 0; b < R * C / 16; b++) {
        float *v = x + 16 * b, sc = ldexpf(1.0f, b % 48 - 30);
        int kind = b % 5;
        for (int j = 0; j < 16; j++) {
            int i = (int)((unsigned)(b * 7 + j) % 7);
            float mid = (kv[i] + kv[i + 1]) * 0.25f * sc; /* between levels kv·d, d = sc/2 */
            v[j] = kind == 0 ? mid : kind == 1 ? nextafterf(mid, 0) : kind == 2 ? nextafterf(mid, INFINITY)
                 : frand() * sc * 6.0f;
            if (kind == 4 && j == 3) v[j] = frand() * 1e6f; /* saturating outlier */
            if (frand() < 0) v[j] = -v[j];
        }
        if (kind < 3) v[15] = 6.0f * sc; /* amax/6 = sc: d = sc/2, levels kv·sc/2 */
    }
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create("nvfp4:tscale=0", &ctx), KVQ_OK);
    int64_t d[2] = {R, C};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
    size_t cap = kvq_ctx_payload_bound(ctx, &t.shape), n;
    uint8_t *p = malloc(cap);
    assert_int_equal(kvq_ctx_encode_payload(ctx, &t, p, cap, &n), KVQ_OK);
    for (int b = 0; b < R * C / 64; b++)
        for (int sblk = 0; sblk < 4; sblk++) {
            const float *v = x + 64 * b + 16 * sblk;
            const uint8_t *blk = p + 4 + 36 * b;
            uint8_t ue = kvq_ue4m3_from_f32(kvq_absmax(v, 16) / 6.0f), cd[16];
            float dd = kvq_ue4m3_value(ue) * 0.5f;
            assert_int_equal(blk[sblk], ue);
            for (int j = 0; j < 16; j++) {
                int best = 0;
                float be = fabsf(kv[0] * dd - v[j]);
                for (int i = 1; i < 16; i++)
                    if (fabsf(kv[i] * dd - v[j]) < be) be = fabsf(kv[i] * dd - v[j]), best = i;
                cd[j] = (uint8_t)best;
            }
            for (int j = 0; j < 8; j++)
                if (blk[4 + 8 * sblk + j] != (uint8_t)(cd[j] | cd[j + 8] << 4))
                    fail_msg("block %d sub %d byte %d: %02x, ggml search gives %02x", b, sblk, j,
                             blk[4 + 8 * sblk + j], cd[j] | cd[j + 8] << 4);
        }
    kvq_ctx_free(ctx);
    free(p), free(x);
}

/* mxfp4's shared exponent read off amax's bits equals ggml's
 * floorf(log2f(amax)) on 2^17 block maxima: every f32 binade (subnormals
 * included), mantissas at random and packed just below the next power of
 * two, where log2f rounds up to it. */
static void test_mxfp4_exponent(void **state)
{
    (void)state;
    enum { NB = 1 << 17 };
    float *x = calloc((size_t)NB * 32, sizeof(float));
    for (int b = 0; b < NB; b++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        uint32_t ex = (uint32_t)(b % 254), man = (uint32_t)(rng >> 41);
        if (b % 3 == 0) man = 0x7FFFFFu - (uint32_t)(rng >> 60) * (uint32_t)(b % 7 + 1);
        if (b % 3 == 1) man = 0x7FF000u - 1 - (uint32_t)(rng >> 62);
        uint32_t u = ex << 23 | man;
        memcpy(&x[32 * b + b % 32], &u, 4);
    }
    kvq_ctx *ctx;
    assert_int_equal(kvq_ctx_create("mxfp4", &ctx), KVQ_OK);
    int64_t d[2] = {NB, 32};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
    size_t cap = kvq_ctx_payload_bound(ctx, &t.shape), n;
    uint8_t *p = malloc(cap);
    assert_int_equal(kvq_ctx_encode_payload(ctx, &t, p, cap, &n), KVQ_OK);
    for (int b = 0; b < NB; b++) {
        float a = fabsf(x[32 * b + b % 32]);
        uint8_t want = a > 0.0f ? (uint8_t)(int32_t)(floorf(log2f(a)) - 2 + 127) : 0;
        if (p[17 * b] != want) fail_msg("amax %a: e = %u, ggml %u", (double)a, p[17 * b], want);
    }
    kvq_ctx_free(ctx);
    free(p), free(x);
}

/* fp with search=none stores the MinMax scale (float)2^(bias − b̃(M)) —
 * computed as M/maxval with a guard band — for 2^17 row maxima over the
 * whole f32 range, in a 4-bit and an 8-bit format. */
static void test_minmax_scale(void **state)
{
    (void)state;
    enum { R = 1 << 17, C = 2 };
    float *x = malloc(sizeof(float) * R * C);
    for (int r = 0; r < R; r++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        uint32_t u = (uint32_t)(r % 253 + 1) << 23 | (uint32_t)(rng >> 41);
        memcpy(&x[C * r], &u, 4);
        x[C * r + 1] = -x[C * r] * 0.5f;
    }
    static const char *const specs[] = {"fp:fmt=e2m1,search=none", "fp:fmt=e4m3,search=none"};
    static const kvq_fp_id ids[] = {KVQ_FP_E2M1, KVQ_FP_E4M3};
    for (int k = 0; k < 2; k++) {
        const kvq_fpfmt *f = kvq_fp_format(ids[k]);
        float maxv = kvq_fp_maxval(f);
        kvq_ctx *ctx;
        assert_int_equal(kvq_ctx_create(specs[k], &ctx), KVQ_OK);
        int64_t d[2] = {R, C};
        kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
        size_t cap = kvq_ctx_payload_bound(ctx, &t.shape), n, rb = 4 + (k ? 2 : 1);
        uint8_t *p = malloc(cap);
        assert_int_equal(kvq_ctx_encode_payload(ctx, &t, p, cap, &n), KVQ_OK);
        for (int r = 0; r < R; r++) {
            float want = (float)exp2((double)f->bias - kvq_fp_bias_for_max(f, (double)x[C * r])), got;
            want = !(want >= FLT_MIN) ? FLT_MIN : want > FLT_MAX / maxv ? FLT_MAX / maxv : want;
            memcpy(&got, p + 1 + r * rb, 4);
            if (got != want) fail_msg("%s: M = %a stores scale %a, reference %a", specs[k], (double)x[C * r],
                                      (double)got, (double)want);
        }
        kvq_ctx_free(ctx);
        free(p);
    }
    free(x);
}

/* ---- the kern_fp.h tables ------------------------------------------------------- */
#define KT_N 4099 /* not a multiple of any run or block length */

/* Values of every magnitude class: normal, subnormal, zeros, and exact
 * mxfp4/nvfp4 midpoints (multiples of 1/4). */
static void kt_fill(float *x, int n)
{
    for (int i = 0; i < n; i++) {
        float v = frand();
        x[i] = i % 7 == 0 ? (float)((int)(v * 64)) * 0.25f : i % 11 == 0 ? v * 1e-40f : i % 13 == 0 ? 0.0f : v * 3;
    }
}

static void kt_codes(const kvq_fp_kernels *a, const kvq_fp_kernels *b, const float *x)
{
    uint8_t ca[KT_N], cb[KT_N];
    float inv[KT_N / 16 + 1];
    for (int i = 0; i < KT_N / 16 + 1; i++) inv[i] = 0.5f + (float)i * 0.37f;
    for (int id = KVQ_FP_E2M1; id <= KVQ_FP_E1M6; id++)
        for (int t = 0; t < 3; t++) {
            kvq_fp_lut l;
            kvq_fp_lut_init(&l, kvq_fp_format((kvq_fp_id)id), (kvq_tie)t);
            if (l.n <= 8) a->codes4(&l, x, KT_N, 1.7f, ca), b->codes4(&l, x, KT_N, 1.7f, cb);
            else a->codes_any(&l, x, KT_N, 1.7f, ca), b->codes_any(&l, x, KT_N, 1.7f, cb);
            assert_memory_equal(ca, cb, KT_N);
            for (int64_t g = 16; g <= 48; g += 16) {
                a->codes_groups(&l, x, KT_N, g, inv, ca);
                b->codes_groups(&l, x, KT_N, g, inv, cb);
                assert_memory_equal(ca, cb, KT_N);
            }
        }
}

static void kt_nupes(const kvq_fp_kernels *a, const kvq_fp_kernels *b, const float *x)
{
    int32_t qa[KT_N], qb[KT_N];
    uint8_t aa[KT_N], ab[KT_N];
    /* bands [lo_k, hi_k) around 0.1·k^1.5, one of them wide enough to catch values */
    float lo[8] = {-INFINITY}, hi[8] = {-INFINITY};
    for (int k = 1; k < 8; k++) lo[k] = 0.1f * powf((float)k, 1.5f), hi[k] = lo[k] * (k == 3 ? 1.2f : 1.0001f);
    assert_int_equal(a->nu_codes4(lo, hi, x, KT_N, 0.8f, qa, aa) != 0,
                     b->nu_codes4(lo, hi, x, KT_N, 0.8f, qb, ab) != 0);
    assert_memory_equal(qa, qb, sizeof qa);
    assert_memory_equal(aa, ab, sizeof aa);
    /* a bucket table over [2^-10, 1]: 10·256 + 1 buckets of arbitrary content */
    enum { NB = 10 * 256 + 1 };
    static kvq_nupes_bucket tab[NB];
    int32_t first = (int32_t)(kvq_f32_bits(0x1p-10f) >> KVQ_NUPES_TAB_SHIFT);
    for (int i = 0; i < NB; i++) {
        tab[i].base = i / 21;
        float b0 = kvq_f32_of_bits((uint32_t)(first + i) << KVQ_NUPES_TAB_SHIFT);
        tab[i].lo = i % 3 ? INFINITY : b0 * (i % 2 ? 1.0f : 1.001f);
    }
    assert_int_equal(a->nu_codes_tab(tab, first, x, KT_N, 0.9f, qa, aa) != 0,
                     b->nu_codes_tab(tab, first, x, KT_N, 0.9f, qb, ab) != 0);
    assert_memory_equal(qa, qb, sizeof qa);
    assert_memory_equal(aa, ab, sizeof aa);
}

/* The row-kernel dot slots: AVX2 (FMA, other summation order) within
 * 1e-5 of Σ|terms| of the reference, on random code bytes. */
static void kt_dots(const kvq_fp_kernels *a, const kvq_fp_kernels *b, const float *x)
{
    enum { COLS = 1024 + 17, NB = 1024 / 64 };
    static uint8_t blk[NB * 36 * 2 + 64], codes[COLS], sc[4 * COLS];
    float v[256], mag = 0.0f;
    for (size_t i = 0; i < sizeof blk; i++) blk[i] = (uint8_t)(frand() * 127.0f + 128.0f);
    for (int i = 0; i < COLS; i++) codes[i] = (uint8_t)(frand() * 127.0f + 128.0f), mag += fabsf(x[i]) * 12.0f;
    for (int i = 0; i < 256; i++) v[i] = frand();
    for (int k = 0; k < 2 * NB; k++) blk[k * 17] = (uint8_t)(120 + k % 16); /* E8M0 scales 2^-8 .. 2^7 */
    for (int i = 0; i < COLS / 32 + 1; i++) {
        uint16_t h = kvq_f32_to_f16(0.5f + frand() * 0.25f);
        sc[2 * i] = (uint8_t)h, sc[2 * i + 1] = (uint8_t)(h >> 8);
    }
    assert_float_equal(a->mx_dot(blk, 2 * NB, x), b->mx_dot(blk, 2 * NB, x), 1e-5 * mag * 128);
    assert_float_equal(a->nv_dot(blk, NB, x), b->nv_dot(blk, NB, x), 1e-5 * mag * 224);
    static const int kinds[] = {FP_DOT_SPLIT, FP_DOT_ADJ, FP_DOT_BYTE, FP_DOT_SPLIT | FP_DOT_I8,
                                FP_DOT_ADJ | FP_DOT_I8};
    for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++)
        for (int64_t spr = 0; spr <= 2; spr++) {
            int kind = kinds[ki];
            if (kind & FP_DOT_I8) /* int8-valued table and its factor */
                for (int i = 0; i <= 16; i++) v[i] = i < 16 ? (float)(i * 7 % 25 - 12) : 0.25f;
            int64_t cols = kind == FP_DOT_BYTE ? COLS : COLS - 10; /* a tail of 17 or 7 codes */
            float ra = a->runs_dot(codes, cols, kind, v, sc, spr, x);
            float rb = b->runs_dot(codes, cols, kind, v, sc, spr, x);
            assert_float_equal(ra, rb, 1e-5 * mag);
        }
}

/* Every slot of the AVX2 table equals the reference's (skipped without AVX2). */
static void test_kernel_tables_agree(void **state)
{
    (void)state;
    const kvq_fp_kernels *a = kvq_fp_kernels_ref(), *b = kvq_fp_kernels_avx2();
    if (!b) {
        printf("  (no AVX2/F16C on this CPU: only the reference table exists)\n");
        skip();
    }
    static float x[KT_N + 64];
    kt_fill(x, KT_N + 64);
    for (int n = 0; n < 100; n++) assert_int_equal(a->absmax_bits(x + n, (size_t)n), b->absmax_bits(x + n, (size_t)n));
    uint32_t ma[KT_N], mb[KT_N];
    for (int64_t g = 16; g <= 64; g += 16) {
        a->absmax_groups(x, KT_N, g, ma);
        b->absmax_groups(x, KT_N, g, mb);
        assert_memory_equal(ma, mb, sizeof(uint32_t) * (size_t)((KT_N + g - 1) / g));
    }
    kt_codes(a, b, x);
    kt_nupes(a, b, x);
    kt_dots(a, b, x);
    enum { NBLK = 64 };
    static uint8_t oa[NBLK * 36 + 64], ob[NBLK * 36 + 64];
    assert_int_equal(a->mx_blocks(x, NBLK, oa), NBLK);
    assert_int_equal(b->mx_blocks(x, NBLK, ob), NBLK);
    assert_memory_equal(oa, ob, NBLK * 17);
    assert_int_equal(a->nv_blocks(x, NBLK / 2, 0.7f, oa), NBLK / 2);
    assert_int_equal(b->nv_blocks(x, NBLK / 2, 0.7f, ob), NBLK / 2);
    assert_memory_equal(oa, ob, NBLK / 2 * 36);
    x[5 * 64 + 9] = NAN; /* both stop at the block holding it */
    assert_int_equal(a->mx_blocks(x, NBLK, oa), 10);
    assert_int_equal(b->mx_blocks(x, NBLK, ob), 10);
    assert_int_equal(a->nv_blocks(x, NBLK / 2, 1.0f, oa), 5);
    assert_int_equal(b->nv_blocks(x, NBLK / 2, 1.0f, ob), 5);
}

/* ---- NaN/Inf found by the codecs themselves (KVQ_FLAG_CHECKS_FINITE) --------- */
static void test_nonfinite_every_position(void **state)
{
    (void)state;
    static const char *const specs[] = {
        "mxfp4", "nvfp4", "nvfp4:tscale=0", "fp:search=none", "fp", "fp:search=clip,gran=group",
        "fp:fmt=e4m3,search=none", "fp:fmt=auto4,search=none", "fp:gran=group,search=none",
        "nupes:a=0.75", "nupes:a=0.75,bits=8", "nupes:a=0.5,bits=3", "nupes:driven=0",
    };
    enum { R = 2, C = 64, N = R * C };
    static const float bad[3] = {NAN, INFINITY, -INFINITY};
    float x[N];
    int64_t d[2] = {R, C};
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        kvq_ctx *ctx;
        assert_int_equal(kvq_ctx_create(specs[k], &ctx), KVQ_OK);
        assert_true(kvq_ctx_codec(ctx)->flags & KVQ_FLAG_CHECKS_FINITE);
        kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d);
        size_t cap = kvq_ctx_payload_bound(ctx, &t.shape), n;
        uint8_t *p = malloc(cap);
        for (int pos = 0; pos < N; pos++)
            for (int b = 0; b < 3; b++) {
                for (int i = 0; i < N; i++) x[i] = frand() * 0.05f;
                x[pos] = bad[b];
                if (pos + 37 < N) x[pos + 37] = NAN; /* a later one is not the one named */
                kvq_err e = kvq_ctx_encode_payload(ctx, &t, p, cap, &n);
                char want[64];
                snprintf(want, sizeof want, "element %d is", pos);
                if (e != KVQ_ERR_NONFINITE || !strstr(kvq_last_error_detail(), want))
                    fail_msg("%s: %g at %d: error %d, \"%s\"", specs[k], (double)bad[b], pos, (int)e,
                             kvq_last_error_detail());
            }
        free(p);
        kvq_ctx_free(ctx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_sets),   cmocka_unit_test(test_lut_equals_reference),
        cmocka_unit_test(test_quantizer_properties), cmocka_unit_test(test_identities),
        cmocka_unit_test(test_search),       cmocka_unit_test(test_mxfp4_golden),
        cmocka_unit_test(test_nvfp4_golden), cmocka_unit_test(test_mxfp4_speed),
        cmocka_unit_test(test_fast_codes_any), cmocka_unit_test(test_nvfp4_fast_equals_search),
        cmocka_unit_test(test_mxfp4_exponent), cmocka_unit_test(test_minmax_scale),
        cmocka_unit_test(test_kernel_tables_agree), cmocka_unit_test(test_nonfinite_every_position),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
