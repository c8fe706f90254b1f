/*
 * nupes.h — the pieces of the nupes codec that tests and integer kernels
 * use directly (quant-methods.md §2.2, §2.4).
 */
#ifndef KVQ_QUANT_NUPES_H
#define KVQ_QUANT_NUPES_H

#include <stdint.h>

#define KVQ_NUPES_MAX_LEVELS 128 /* Qm + 1 for 8 bits */

/* kvq_nupes_lut() : lvl[k] = (k/Qm)^(1/a), k = 0..Qm (the level table; the
 * full 2^b-entry table is ±lvl). */
void kvq_nupes_lut(unsigned bits, double a, float *lvl);
/* kvq_nupes_code() : q = RNE(Qm·sign(w)·(min(|w|/M, 1))^a); 0 for w = 0 or
 * M <= 0. */
int32_t kvq_nupes_code(unsigned bits, double a, float w, float M);

/* kvq_nupes_lut_fixed() : the integer-only path's table (§2.4):
 * lut[k] = round(k^(1/a)·2^F), k = 0..Qm (F >= 0, k^(1/a)·2^F < 2^31); code q
 * stands for sign(q)·lut[|q|]·R with R = M / (Qm^(1/a)·2^F), so an integer
 * GEMM over LUT-expanded weights is rescaled once by R.  Each entry is
 * within 2^−1 of k^(1/a)·2^F (R·2^−1 in value, i.e. M·2^−(F+1)/Qm^(1/a));
 * exact when 1/a is an integer (lut[k] = k^(1/a)·2^F). */
void kvq_nupes_lut_fixed(unsigned bits, double a, int F, int32_t *lut);

#endif
