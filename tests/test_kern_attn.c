/*
 * test_kern_attn.c — the compressed-page attention slots
 * (kernels/kern_attn.h): the scalar reference against a plain loop written
 * here (exact: same order), and the AVX2 slots against the reference
 * within the stated tolerance (skipped with a message on CPUs without
 * AVX2/FMA), for 2-, 4- and 8-bit codes, lengths with and without a tail,
 * and rows at odd strides.
 *
 * Tolerance (SIMD vs reference): |Δ| ≤ 4·n·2^-24·Σ_i|w_i·c_i| for a dot of
 * n terms (two summation orders, each within (n−1)·2^-24·Σ|terms|), and
 * 2^-22·(|o| + |a·c| + |b|) per axpy element (one FMA vs two roundings).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/kern_attn.h"
#include "kvq.h"

#define MAX_N    200
#define N_ROWS   7
#define STRIDE   203 /* bytes between rows: odd, ≥ 200 8-bit codes */

static uint32_t g_seed = 2463534242u;
static uint32_t next_u32(void) /* xorshift32 */
{
    g_seed ^= g_seed << 13;
    g_seed ^= g_seed >> 17;
    g_seed ^= g_seed << 5;
    return g_seed;
}
static float next_f(void) { return (float)(next_u32() >> 8) * 0x1p-23f - 1.0f; }

static const unsigned widths[] = {2, 4, 8};
static const size_t lengths[] = {1, 15, 16, 17, 32, 64, 100, 128, 200};

/* n codes of `bits` packed LSB first; returns their values in c. */
static void make_codes(uint8_t *row, size_t n, unsigned bits, unsigned *c)
{
    memset(row, 0, STRIDE);
    for (size_t i = 0; i < n; i++) {
        c[i] = next_u32() & ((1u << bits) - 1u);
        size_t bit = i * bits;
        row[bit / 8] |= (uint8_t)(c[i] << (bit % 8));
    }
}

static uint8_t g_rows[N_ROWS * STRIDE];
static unsigned g_c[N_ROWS][MAX_N];
static float g_w[MAX_N];

static void make_case(unsigned bits, size_t n)
{
    for (int r = 0; r < N_ROWS; r++) make_codes(g_rows + r * STRIDE, n, bits, g_c[r]);
    for (size_t i = 0; i < n; i++) g_w[i] = next_f() * 3.0f;
}

static void test_ref_exact(void **st)
{
    (void)st;
    const kvq_kern_attn *k = kvq_kern_attn_ref();
    assert_string_equal(k->name, "ref");
    for (size_t wi = 0; wi < 3; wi++)
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            unsigned bits = widths[wi];
            size_t n = lengths[li];
            make_case(bits, n);
            float out[N_ROWS];
            k->dot_rows(g_w, g_rows, STRIDE, bits, n, N_ROWS, out);
            for (int r = 0; r < N_ROWS; r++) {
                float acc = 0.0f;
                for (size_t i = 0; i < n; i++) acc += g_w[i] * (float)g_c[r][i];
                assert_true(acc == out[r]);
                assert_int_equal(kvq_kern_code_at(g_rows + r * STRIDE, n - 1, bits), g_c[r][n - 1]);
            }
            float o[2][MAX_N], e[2][MAX_N], a[2] = {0.75f, -1.5f}, b[2] = {-0.125f, 0.5f};
            for (size_t i = 0; i < n; i++) o[0][i] = e[0][i] = next_f(), o[1][i] = e[1][i] = next_f();
            k->axpy_codes(&o[0][0], MAX_N, a, b, 2, g_rows, bits, n);
            for (int r = 0; r < 2; r++)
                for (size_t i = 0; i < n; i++) e[r][i] = e[r][i] + (a[r] * (float)g_c[0][i] + b[r]);
            assert_memory_equal(o[0], e[0], n * sizeof(float));
            assert_memory_equal(o[1], e[1], n * sizeof(float));
        }
}

static void test_avx2_within_tolerance(void **st)
{
    (void)st;
    const kvq_kern_attn *ref = kvq_kern_attn_ref(), *simd = kvq_kern_attn_avx2();
    if (!simd) {
        printf("test_kern_attn: this CPU lacks AVX2/FMA; SIMD comparison skipped\n");
        skip();
    }
    for (size_t wi = 0; wi < 3; wi++)
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            unsigned bits = widths[wi];
            size_t n = lengths[li];
            make_case(bits, n);
            float a[N_ROWS], b[N_ROWS];
            ref->dot_rows(g_w, g_rows, STRIDE, bits, n, N_ROWS, a);
            simd->dot_rows(g_w, g_rows, STRIDE, bits, n, N_ROWS, b);
            for (int r = 0; r < N_ROWS; r++) {
                double mag = 0;
                for (size_t i = 0; i < n; i++) mag += fabs((double)g_w[i] * g_c[r][i]);
                assert_true(fabs((double)a[r] - b[r]) <= 4.0 * (double)n * 0x1p-24 * mag);
            }
            float o1[3][MAX_N], o2[3][MAX_N], ca[3] = {0.3f, -2.0f, 0.01f}, cb[3] = {1.7f, 0.0f, -3.0f};
            for (int r = 0; r < 3; r++)
                for (size_t i = 0; i < n; i++) o1[r][i] = o2[r][i] = next_f();
            ref->axpy_codes(&o1[0][0], MAX_N, ca, cb, 3, g_rows + STRIDE, bits, n);
            simd->axpy_codes(&o2[0][0], MAX_N, ca, cb, 3, g_rows + STRIDE, bits, n);
            for (int r = 0; r < 3; r++)
                for (size_t i = 0; i < n; i++) {
                    double mag = fabs(o1[r][i]) + fabs(ca[r]) * g_c[1][i] + fabs(cb[r]) + 2.0;
                    assert_true(fabs((double)o1[r][i] - o2[r][i]) <= 0x1p-22 * mag);
                }
        }
}

/* The inline f16 conversion and the f16_row slots (every table) equal
 * kvq_f16_to_f32 on every finite half; f16_row flags Inf/NaN halves. */
static uint8_t g_halves[2 * 0x10000];
static float g_wide[0x10000];

static void test_f16_finite(void **st)
{
    (void)st;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        g_halves[2 * h] = (uint8_t)h;
        g_halves[2 * h + 1] = (uint8_t)(h >> 8);
        if ((h & 0x7C00u) == 0x7C00u) continue;
        float a = kvq_kern_f16_finite((uint16_t)h), b = kvq_f16_to_f32((uint16_t)h);
        assert_memory_equal(&a, &b, sizeof a);
    }
    const kvq_kern_attn *tabs[2] = {kvq_kern_attn_ref(), kvq_kern_attn_avx2()};
    for (int k = 0; k < 2 && tabs[k]; k++) {
        assert_int_equal(tabs[k]->f16_row(g_halves, g_wide, 0x7C00), 0);  /* +0 .. +65504 */
        assert_int_equal(tabs[k]->f16_row(g_halves + 2 * 0x8000, g_wide + 0x8000, 0x7C00), 0); /* negatives */
        for (uint32_t h = 0; h < 0x10000u; h++) {
            if ((h & 0x7FFFu) >= 0x7C00u) continue;
            float b = kvq_f16_to_f32((uint16_t)h);
            assert_memory_equal(&g_wide[h], &b, sizeof b);
        }
        assert_int_equal(tabs[k]->f16_row(g_halves + 2 * 0x7BF0, g_wide, 17), 1); /* ends on +Inf */
        assert_int_equal(tabs[k]->f16_row(g_halves + 2 * 0x7BFE, g_wide, 16), 1); /* Inf in the first 8 */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_exact),
        cmocka_unit_test(test_avx2_within_tolerance),
        cmocka_unit_test(test_f16_finite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
