/*
 * fp_nupes_rowdot.c — row kernels against decode_rows + an f32 dot
 * (docs/results/fp-nupes.md "Row kernels"): a 1024 x 1024 matrix (uniform
 * values) encoded by each SPEC, then the time of all rows' products three
 * ways: the bound row kernel, decode_rows (8 rows per call) + an 8-lane f32
 * dot, and the f32 dot of the original rows; best of 7, thread CPU time.
 * Build and run (from the project root, after make):
 *   cc -O2 -I. -Ilibkvq scripts/fp_nupes_rowdot.c build/libkvq.a -lzstd -llzma -lm -lpthread \
 *      -o /tmp/rowdot && /tmp/rowdot q4_0 mxfp4 nvfp4 fp:search=none ...
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/rowkern.h"
#include "kvq.h"

#define R 1024
#define C 1024
#define REPS 7
#define LANES 8

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float dot(const float *a, const float *b)
{
    float acc[LANES] = {0};
    for (int i = 0; i < C; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[i + l] * b[i + l];
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

static void run(const char *spec, const float *w, const float *x, float *rows)
{
    kvq_ctx *ctx;
    if (kvq_ctx_create(spec, &ctx)) {
        printf("%-32s %s\n", spec, kvq_last_error_detail());
        return;
    }
    int64_t d[2] = {R, C};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, (void *)w, 2, d);
    size_t cap = kvq_ctx_payload_bound(ctx, &t.shape), n = 0;
    uint8_t *p = malloc(cap);
    kvq_rowkern k;
    if (!p || kvq_ctx_encode_payload(ctx, &t, p, cap, &n) || kvq_rowkern_bind(ctx, p, n, &t.shape, &k)) {
        printf("%-32s no row kernel: %s\n", spec, kvq_last_error_detail());
        free(p);
        kvq_ctx_free(ctx);
        return;
    }
    double best[3] = {1e9, 1e9, 1e9};
    volatile float sink = 0.0f;
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = cpu_now();
        for (int r = 0; r < R; r++) sink += k.dot(&k, r, x);
        double t1 = cpu_now();
        for (int r = 0; r < R; r += 8) {
            kvq_ctx_decode_rows(ctx, p, n, &t.shape, r, r + 8, rows);
            for (int q = 0; q < 8; q++) sink += dot(rows + q * C, x);
        }
        double t2 = cpu_now();
        for (int r = 0; r < R; r++) sink += dot(w + (size_t)r * C, x);
        double t3 = cpu_now(), dt[3] = {t1 - t0, t2 - t1, t3 - t2};
        for (int i = 0; i < 3; i++) best[i] = dt[i] < best[i] ? dt[i] : best[i];
    }
    printf("%-32s row kernel %6.3f ms  decode_rows+dot %6.3f ms (%5.1fx)  f32 dot %6.3f ms (%4.1fx)  fast=%d\n", spec,
           best[0] * 1e3, best[1] * 1e3, best[1] / best[0], best[2] * 1e3, best[2] / best[0], k.fast);
    free(p);
    kvq_ctx_free(ctx);
}

int main(int argc, char **argv)
{
    float *w = malloc(sizeof(float) * R * C), *x = malloc(sizeof(float) * C), *rows = malloc(sizeof(float) * 8 * C);
    if (!w || !x || !rows) return 1;
    uint64_t s = 1;
    for (int64_t i = 0; i < (int64_t)R * C; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        w[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * 0.04f;
    }
    for (int i = 0; i < C; i++) x[i] = (float)(i % 17) * 0.1f - 0.8f;
    for (int a = 1; a < argc; a++) run(argv[a], w, x, rows);
    free(w), free(x), free(rows);
    return 0;
}
