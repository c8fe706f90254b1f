/*
 * quamba2_hadamard.c — Hadamard rotations of size 2^k, 12·2^k and 40·2^k
 * (quant-methods.md §0 "Walsh–Hadamard" and §4.2; Quamba2's
 * quamba/hadamard_utils.py keeps stored 12×12 and 40×40 matrices and
 * applies H_m ⊗ H_{2^k} with scale 1/√n).
 *
 * The base matrices are constructed, not stored ([ours]; any Hadamard
 * matrix of the order serves, the rotation only has to be orthogonal and
 * spread channels evenly):
 *   12 = 11 + 1: Paley's first construction over GF(11) (11 ≡ 3 mod 4):
 *       H = I + S, S = [[0, 1ᵀ], [−1, Q]], Q[i][j] = χ(j − i) with χ the
 *       quadratic character mod q; S is skew with S·Sᵀ = q·I, so
 *       H·Hᵀ = (q + 1)·I.
 *   40 = 2·20: the Paley matrix over GF(19) (order 20) ⊗ [[1, 1], [1, −1]].
 * A vector of n = m·2^k values is read as [m][2^k]: every block of 2^k
 * takes the orthonormal Walsh–Hadamard transform (kvq_fwht), then the m
 * blocks mix through H_m/√m — together (H_m ⊗ H_{2^k})/√n.  H_{2^k} is
 * symmetric, so the transpose only transposes H_m.
 */
#include "quant/quamba2.h"
#include "quant/quant_common.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#define PALEY_Q12 11 /* prime ≡ 3 mod 4 giving order 12 */
#define PALEY_Q20 19 /* prime ≡ 3 mod 4 giving order 20 */

/* χ(a) for a prime q: 1 for a non-zero square mod q, −1 for a non-square,
 * 0 for 0 (q is tiny: search the squares). */
static int chi(int a, int q)
{
    a = ((a % q) + q) % q;
    if (!a) return 0;
    for (int x = 1; x < q; x++)
        if (x * x % q == a) return 1;
    return -1;
}

/* Paley I matrix of order q + 1 into h[(q+1)²]. */
static void paley(int q, int8_t *h)
{
    int m = q + 1;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            int s = i == 0 ? (j == 0 ? 0 : 1) : j == 0 ? -1 : chi(j - i, q);
            h[i * m + j] = (int8_t)(s + (i == j));
        }
}

int kvq_had_matrix(int m, int8_t *h)
{
    if (m == 12) {
        paley(PALEY_Q12, h);
        return 0;
    }
    if (m != 40) return -1;
    int8_t h20[(PALEY_Q20 + 1) * (PALEY_Q20 + 1)];
    paley(PALEY_Q20, h20);
    for (int a = 0; a < 20; a++)
        for (int b = 0; b < 2; b++)
            for (int a2 = 0; a2 < 20; a2++)
                for (int b2 = 0; b2 < 2; b2++)
                    h[(a * 2 + b) * 40 + a2 * 2 + b2] = (int8_t)(h20[a * 20 + a2] * (b && b2 ? -1 : 1));
    return 0;
}

int kvq_had_base(int64_t n)
{
    if (kvq_is_pow2(n)) return 1;
    if (n % 12 == 0 && kvq_is_pow2(n / 12)) return 12;
    if (n % 40 == 0 && kvq_is_pow2(n / 40)) return 40;
    return 0;
}

void kvq_had_apply(float *x, int64_t n, int transpose)
{
    int m = kvq_had_base(n);
    assert(m);
    int64_t b = n / m;
    for (int64_t i = 0; i < m; i++) kvq_fwht(x + i * b, b);
    if (m == 1) return;
    int8_t h[KVQ_HAD_MAX_BASE * KVQ_HAD_MAX_BASE];
    float col[KVQ_HAD_MAX_BASE];
    kvq_had_matrix(m, h);
    float norm = 1.0f / sqrtf((float)m);
    for (int64_t j = 0; j < b; j++) {
        for (int i = 0; i < m; i++) {
            float acc = 0.0f;
            for (int k = 0; k < m; k++) acc += (float)(transpose ? h[k * m + i] : h[i * m + k]) * x[k * b + j];
            col[i] = acc * norm;
        }
        for (int i = 0; i < m; i++) x[i * b + j] = col[i];
    }
}
