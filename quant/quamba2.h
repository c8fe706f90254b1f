/*
 * quamba2.h — building blocks shared by Quamba2's codecs (quant/quamba2.c,
 * quant/gptq.c): Hadamard rotations of the sizes Quamba2 uses
 * (quant-methods.md §0 and §4.2: 2^k, 12·2^k and 40·2^k, scale 1/√n;
 * code enyac-group/Quamba quamba/hadamard_utils.py).  Internal, never
 * installed.
 */
#ifndef KVQ_QUANT_QUAMBA2_H
#define KVQ_QUANT_QUAMBA2_H

#include <stdint.h>

#define KVQ_HAD_MAX_BASE 40 /* largest stored (constructed) base matrix */

/* kvq_had_base() : the non-power-of-two factor m of a Hadamard size n =
 * m·2^k that kvq_had_apply() accepts: 1 (n = 2^k), 12 or 40; 0 when n has
 * no such form. */
int kvq_had_base(int64_t n);

/* kvq_had_matrix() : the m×m ±1 Hadamard matrix (m = 12 or 40) into
 * h[m·m], row-major, with h·hᵀ = m·I: Paley's first construction over
 * GF(11) for 12; the Paley matrix over GF(19) (order 20) ⊗ [[1,1],[1,−1]]
 * for 40.  @return 0, or -1 for another m (h untouched).  Pure. */
int kvq_had_matrix(int m, int8_t *h);

/* kvq_had_apply() : in place, x ← Q·x (transpose = 0) or Qᵀ·x (1) with the
 * orthonormal Q = (H_m ⊗ H_{2^k})/√n, H_{2^k} the Sylvester matrix (as
 * kvq_fwht; symmetric) and H_m from kvq_had_matrix (m = 1: Q = kvq_fwht's
 * matrix, so powers of two keep their exact old results).  x is read as
 * [m][2^k] (block i holds entries i·2^k ..).  n must satisfy
 * kvq_had_base(n) != 0 (asserted).  Thread-safe. */
void kvq_had_apply(float *x, int64_t n, int transpose);

#endif /* KVQ_QUANT_QUAMBA2_H */
