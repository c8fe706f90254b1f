/*
 * gear_attn_bench.c — attention-only timing of compressed KV caches (issues
 * 6 and 9: attention over compressed pages), the number behind the decode
 * tok/s ratios in docs/results/gear-minicache.md without the model around
 * it.  Build and run from the project root after `make BUILD=build-attn`:
 *
 *   cc -O2 -Ilibkvq -o build-attn/gear_attn_bench scripts/gear_attn_bench.c \
 *      build-attn/libkvq.a -lzstd -llzma -lpthread -lm
 *   build-attn/gear_attn_bench [rounds (default 9)]
 *
 * A cache shaped like llama-4.6M's (6 layers, 2 KV heads of 64, 4 query
 * heads, pages of 32 tokens, window 0) holds 256 tokens of uniform random
 * K/V; one "step" is kvq_cache_attend for every layer at contexts 32, 64,
 * …, 256 (the mix of context lengths a 256-token decode sees).  Each config
 * is timed in thread CPU time (less sensitive to other processes than wall
 * time), best of `rounds` interleaved rounds, and printed as µs per step
 * and as a ratio against the f32 cache of the same run.  KVQ_SIMD=ref
 * times the scalar reference kernels instead of AVX2.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include "kvq.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LAYERS   6
#define KV_HEADS 2
#define HEAD     64
#define Q_HEADS  4
#define MAX_TOK  256
#define PAGE     32
#define REPS     10 /* steps per timing */

typedef struct {
    const char *label, *k, *v;
    int keep;
} bench_cfg;

static const bench_cfg configs[] = {
    {"f32", NULL, NULL, 0},
    {"KIVI-2/nokeep", "kivi:bits=2", "kivi:bits=2,axis=token", 0},
    {"KIVI-2/keep", "kivi:bits=2", "kivi:bits=2,axis=token", 1},
    {"KIVI-4/nokeep", "kivi:bits=4", "kivi:bits=4,axis=token", 0},
    {"GEAR-2-r2/nokeep", "gear:bits=2,rank=2,sparse=0", "gear:bits=2,axis=token,rank=2,sparse=0", 0},
    {"GEAR-2-r2/keep", "gear:bits=2,rank=2,sparse=0", "gear:bits=2,axis=token,rank=2,sparse=0", 1},
    {"GEAR-2-r2-s6/nokeep", "gear:bits=2,rank=2,sparse=0.0625", "gear:bits=2,axis=token,rank=2,sparse=0.03125", 0},
    {"q8_0/nokeep", "q8_0", "q8_0", 0},
    {"q4_0/nokeep", "q4_0", "q4_0", 0},
};
#define N_CONFIGS (sizeof configs / sizeof configs[0])

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static kvq_cache *make(const bench_cfg *b, const float *k, const float *v)
{
    kvq_cache_config cfg = kvq_cache_config_default(LAYERS, KV_HEADS, HEAD, MAX_TOK);
    cfg.page = PAGE;
    cfg.k_spec = b->k;
    cfg.v_spec = b->v;
    cfg.keep_decoded = b->keep;
    kvq_cache *c = NULL;
    if (kvq_cache_create(&cfg, &c)) return NULL;
    for (int l = 0; l < LAYERS; l++)
        if (kvq_cache_append(c, l, k, v, MAX_TOK)) {
            kvq_cache_free(c);
            return NULL;
        }
    return c;
}

/* CPU seconds of REPS steps, or a negative value on error. */
static double time_steps(kvq_cache *c, const float *q, float *out)
{
    double t0 = cpu_seconds();
    for (int r = 0; r < REPS; r++)
        for (int l = 0; l < LAYERS; l++)
            for (int n = PAGE; n <= MAX_TOK; n += PAGE)
                if (kvq_cache_attend(c, l, q, Q_HEADS, n, out)) return -1.0;
    return cpu_seconds() - t0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 9;
    size_t nkv = (size_t)MAX_TOK * KV_HEADS * HEAD;
    float *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v), q[Q_HEADS * HEAD], out[Q_HEADS * HEAD];
    kvq_cache *caches[N_CONFIGS] = {NULL};
    double best[N_CONFIGS];
    if (!k || !v || rounds < 1) return 1;
    srand(1);
    for (size_t i = 0; i < nkv; i++) k[i] = (float)rand() / (float)RAND_MAX - 0.5f, v[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    for (int i = 0; i < Q_HEADS * HEAD; i++) q[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    for (size_t i = 0; i < N_CONFIGS; i++) {
        caches[i] = make(&configs[i], k, v);
        if (!caches[i]) {
            fprintf(stderr, "gear_attn_bench: %s: %s\n", configs[i].label, kvq_last_error_detail());
            return 1;
        }
        best[i] = 1e30;
    }
    for (int r = 0; r < rounds; r++)
        for (size_t i = 0; i < N_CONFIGS; i++) {
            double s = time_steps(caches[i], q, out);
            if (s < 0) {
                fprintf(stderr, "gear_attn_bench: %s: %s\n", configs[i].label, kvq_last_error_detail());
                return 1;
            }
            best[i] = s < best[i] ? s : best[i];
        }
    printf("| cache | µs per step (best of %d, CPU time) | vs f32 cache (time ratio) |\n|---|---:|---:|\n", rounds);
    for (size_t i = 0; i < N_CONFIGS; i++) {
        printf("| `%s` | %.1f | %.2fx |\n", configs[i].label, 1e6 * best[i] / REPS, best[i] / best[0]);
        kvq_cache_free(caches[i]);
    }
    free(k);
    free(v);
    return 0;
}
