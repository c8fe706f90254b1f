/*
 * cmd_bench.c — `kvq bench SUB`: a table of sub-benchmarks, and the first
 * of them, `kvq bench codecs`.
 *
 * kvq bench codecs [--codec SPEC]... [--rows R --cols C] [--seconds S] [--runs N]
 *   For each codec (default q8_0, q4_0, rtn:bits=4, f16): encode and decode
 *   throughput on one thread, in GB/s of f32 data (10^9 bytes of the f32
 *   tensor per second), median over at least N runs and at least S seconds.
 *   The tensor is R×C (default 4096×4096) random normal ×0.02 with one value
 *   in 1024 scaled ×25 (outliers), from a fixed seed.  "encode" is the public
 *   call kvq_ctx_encode_payload (it includes the core's NaN/Inf scan);
 *   "codec" is the codec's own encode function alone.
 *   For q8_0 and q4_0 the same run measures a plain scalar re-implementation
 *   of ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref (written as ggml
 *   writes them: roundf, a running max, one block at a time) on the same
 *   tensor, checks its bytes equal ours, and prints our speed as a ratio.
 *
 * Adding a sub-benchmark: write `int kvq_bench_NAME(int argc, char **argv)`
 * in its own cli/cmd_bench_NAME.c, declare it in cli/cli.h, and add one row
 * to `benches[]` below; argv[0] is then "NAME".
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEF_ROWS     4096
#define DEF_COLS     4096
#define DEF_SECONDS  1.0    /* minimum measuring time per figure      */
#define DEF_RUNS     5      /* minimum runs per figure                */
#define MAX_RUNS     64     /* cap on runs per figure (median buffer) */
#define MAX_CODECS   16
#define MAX_DIM      65536
#define WEIGHT_STD   0.02f  /* std of the synthetic weights           */
#define OUTLIER_EVERY 1024  /* one outlier per this many values       */
#define OUTLIER_GAIN 25.0f
#define BENCH_SEED   1u
#define GB           1e9
#define QK           32     /* ggml block size (QK8_0 = QK4_0)        */
#define CALIB_ROWS   256    /* rows handed to codecs that calibrate   */
#define BENCH_JOBS   3      /* encode jobs timed together: API, codec, ggml-ref */

/* ---- timing ------------------------------------------------------------- */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef enum { OP_ENCODE, OP_CODEC, OP_DECODE, OP_REF } bench_op;

typedef struct {
    bench_op op;
    kvq_ctx *ctx;
    void *state;              /* OP_CODEC: the codec's own state         */
    const kvq_tensor *src;
    kvq_tensor *dst;
    uint8_t *buf;
    size_t cap, n;
    void (*ref)(const float *x, uint8_t *y, size_t nb); /* OP_REF       */
} bench_job;

static kvq_err run_job(bench_job *j)
{
    const kvq_codec *c = kvq_ctx_codec(j->ctx);
    switch (j->op) {
    case OP_ENCODE: return kvq_ctx_encode_payload(j->ctx, j->src, j->buf, j->cap, &j->n);
    case OP_CODEC: return c->encode(j->state, j->src, j->buf, j->cap, &j->n);
    case OP_DECODE: return kvq_ctx_decode_payload(j->ctx, j->buf, j->n, j->dst);
    case OP_REF:
        j->ref(j->src->data, j->buf, (size_t)kvq_shape_numel(&j->src->shape) / QK);
        return KVQ_OK;
    }
    return KVQ_ERR_ARG;
}

/* Median seconds of each of nj jobs, run in turn (A B C A B C ...) for
 * ≥ runs rounds and ≥ seconds: interleaving makes the jobs share whatever
 * the machine is doing, so their ratio is steadier than their speeds. */
static kvq_err time_interleaved(bench_job *const *jobs, int nj, int runs, double seconds, double *med)
{
    double t[BENCH_JOBS][MAX_RUNS], start = now_s();
    int k = 0;
    while (k < MAX_RUNS && (k < runs || now_s() - start < seconds)) {
        for (int i = 0; i < nj; i++) {
            double t0 = now_s();
            kvq_err e = run_job(jobs[i]);
            if (e) return e;
            t[i][k] = now_s() - t0;
        }
        k++;
    }
    for (int i = 0; i < nj; i++) {
        qsort(t[i], (size_t)k, sizeof t[i][0], cmp_double);
        med[i] = k % 2 ? t[i][k / 2] : 0.5 * (t[i][k / 2 - 1] + t[i][k / 2]);
    }
    return KVQ_OK;
}

/* ---- ggml's scalar reference quantizers, as ggml writes them ------------ */
/* ggml-org/ggml src/ggml-quants.c quantize_row_q8_0_ref / _q4_0_ref: one
 * block of 32 at a time, a running max, roundf / truncation per element.
 * The f16 store uses kvq_f32_to_f16 (ggml's GGML_FP32_TO_FP16 without F16C
 * is the same round-to-nearest-even bit conversion). */
typedef struct {
    uint16_t d;
    int8_t qs[QK];
} ref_block_q8_0;

typedef struct {
    uint16_t d;
    uint8_t qs[QK / 2];
} ref_block_q4_0;

static void ref_quantize_q8_0(const float *x, uint8_t *vy, size_t nb)
{
    ref_block_q8_0 *y = (void *)vy;
    for (size_t i = 0; i < nb; i++) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) {
            const float v = x[i * QK + j];
            amax = amax > fabsf(v) ? amax : fabsf(v);
        }
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = kvq_f32_to_f16(d);
        for (int j = 0; j < QK; ++j) {
            const float x0 = x[i * QK + j] * id;
            y[i].qs[j] = (int8_t)roundf(x0);
        }
    }
}

static void ref_quantize_q4_0(const float *x, uint8_t *vy, size_t nb)
{
    ref_block_q4_0 *y = (void *)vy;
    for (size_t i = 0; i < nb; i++) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++) {
            const float v = x[i * QK + j];
            if (amax < fabsf(v)) {
                amax = fabsf(v);
                max = v;
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = kvq_f32_to_f16(d);
        for (int j = 0; j < QK / 2; ++j) {
            const float x0 = x[i * QK + 0 + j] * id;
            const float x1 = x[i * QK + QK / 2 + j] * id;
            const int8_t c0 = (int8_t)(x0 + 8.5f), c1 = (int8_t)(x1 + 8.5f);
            const uint8_t xi0 = (uint8_t)(c0 < 15 ? c0 : 15);
            const uint8_t xi1 = (uint8_t)(c1 < 15 ? c1 : 15);
            y[i].qs[j] = xi0;
            y[i].qs[j] |= (uint8_t)(xi1 << 4);
        }
    }
}

static const struct {
    const char *codec;
    void (*fn)(const float *x, uint8_t *y, size_t nb);
} refs[] = {{"q8_0", ref_quantize_q8_0}, {"q4_0", ref_quantize_q4_0}};

/* ---- the synthetic tensor ------------------------------------------------ */
static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill_weights(float *x, size_t n)
{
    uint64_t s = BENCH_SEED;
    for (size_t i = 0; i < n; i++) {
        double u = ((double)(rng_next(&s) >> 11) + 0.5) * 0x1p-53, v = (double)(rng_next(&s) >> 11) * 0x1p-53;
        float g = (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v)); /* Box–Muller */
        x[i] = WEIGHT_STD * g * (i % OUTLIER_EVERY == OUTLIER_EVERY / 2 ? OUTLIER_GAIN : 1.0f);
    }
}

/* ---- one codec row ------------------------------------------------------- */
typedef struct {
    int64_t rows, cols;
    int runs;
    double seconds;
    const char *specs[MAX_CODECS];
    int n_specs;
    int cuda;                 /* --device cuda: cli/cmd_bench_device.c */
} codecs_args;

typedef struct {
    double bits, enc, codec, dec, ref; /* bits/value; seconds per pass (0: not measured) */
    int ref_equal;
} codec_result;

static kvq_err calibrate_if_needed(kvq_ctx *ctx, const kvq_tensor *x)
{
    if (!(kvq_ctx_codec(ctx)->flags & KVQ_FLAG_NEEDS_CALIB)) return KVQ_OK;
    int64_t d[2] = {x->shape.dim[0] < CALIB_ROWS ? x->shape.dim[0] : CALIB_ROWS, x->shape.dim[1]};
    kvq_tensor s = kvq_tensor_view(KVQ_DTYPE_F32, x->data, 2, d);
    return kvq_ctx_calibrate(ctx, &s);
}

/* A fresh state for the codec's own encode (NULL when the codec needs
 * calibration: only the API figure is measured then). */
static void *codec_state(kvq_ctx *ctx, kvq_err *e)
{
    const kvq_codec *c = kvq_ctx_codec(ctx);
    *e = KVQ_OK;
    if (c->flags & KVQ_FLAG_NEEDS_CALIB) return NULL;
    void *st = calloc(1, c->state_size ? c->state_size : 1);
    if (!st) *e = KVQ_ERR_NOMEM;
    else if (c->init) *e = c->init(st, kvq_ctx_params(ctx));
    return st;
}

static void codec_state_free(kvq_ctx *ctx, void *st)
{
    if (st && kvq_ctx_codec(ctx)->fini) kvq_ctx_codec(ctx)->fini(st);
    free(st);
}

static void (*ref_for(const kvq_codec *c))(const float *, uint8_t *, size_t)
{
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
        if (!strcmp(refs[i].codec, c->name)) return refs[i].fn;
    return NULL;
}

/* Encode jobs (API, codec alone, ggml-ref) timed together, then decode.
 * jobs[0..2] are owned by the caller (buffers and state freed there). */
static kvq_err run_codec(kvq_ctx *ctx, const codecs_args *a, const kvq_tensor *x, kvq_tensor *y,
                         bench_job *jobs, codec_result *r)
{
    static const bench_op ops[BENCH_JOBS] = {OP_ENCODE, OP_CODEC, OP_REF};
    size_t cap = kvq_ctx_payload_bound(ctx, &x->shape);
    kvq_err e = KVQ_OK;
    for (int i = 0; i < BENCH_JOBS; i++) {
        jobs[i] = (bench_job){.op = ops[i], .ctx = ctx, .src = x, .dst = y, .cap = cap};
        if (!(jobs[i].buf = malloc(cap ? cap : 1))) return KVQ_ERR_NOMEM;
    }
    jobs[1].state = codec_state(ctx, &e);
    jobs[2].ref = ref_for(kvq_ctx_codec(ctx));
    if (e) return e;
    bench_job *run[BENCH_JOBS] = {&jobs[0]};
    int nj = 1;
    if (jobs[1].state) run[nj++] = &jobs[1];
    if (jobs[2].ref) run[nj++] = &jobs[2];
    double med[BENCH_JOBS] = {0};
    e = time_interleaved(run, nj, a->runs, a->seconds, med);
    if (e) return e;
    r->enc = med[0];
    for (int i = 1; i < nj; i++) {
        if (run[i]->op == OP_CODEC) r->codec = med[i];
        if (run[i]->op != OP_REF) continue;
        r->ref = med[i];
        r->ref_equal = memcmp(run[i]->buf, jobs[0].buf, jobs[0].n) == 0;
    }
    r->bits = 8.0 * (double)jobs[0].n / (double)kvq_shape_numel(&x->shape);
    jobs[0].op = OP_DECODE;
    return time_interleaved(run, 1, a->runs, a->seconds, &r->dec);
}

static kvq_err bench_one(const char *spec, const codecs_args *a, const kvq_tensor *x, kvq_tensor *y,
                         codec_result *r)
{
    memset(r, 0, sizeof *r);
    kvq_ctx *ctx;
    kvq_err e = kvq_ctx_create(spec, &ctx);
    if (e) return e;
    bench_job jobs[BENCH_JOBS];
    memset(jobs, 0, sizeof jobs);
    e = calibrate_if_needed(ctx, x);
    if (!e) e = run_codec(ctx, a, x, y, jobs, r);
    for (int i = 0; i < BENCH_JOBS; i++) free(jobs[i].buf);
    codec_state_free(ctx, jobs[1].state);
    kvq_ctx_free(ctx);
    return e;
}

/* ---- kvq bench codecs ------------------------------------------------------ */
static const char *const default_specs[] = {"q8_0", "q4_0", "rtn:bits=4", "f16"};

static void codecs_usage(FILE *f)
{
    fprintf(f, "usage: kvq bench codecs [--codec SPEC]... [--rows R --cols C] [--seconds S] [--runs N]\n"
               "                        [--device cpu|cuda]\n"
               "  single-thread encode/decode throughput in GB/s of f32 input, median of runs;\n"
               "  q8_0/q4_0 also against a scalar ggml _ref quantizer measured in the same run\n"
               "  defaults: --codec q8_0 --codec q4_0 --codec rtn:bits=4 --codec f16, %dx%d,\n"
               "            --seconds %.1f (per figure), --runs %d (at least)\n"
               "  --device cuda: quantize/dequantize on the GPU (q8_0 q4_0 mxfp4 nvfp4), best of\n"
               "            --runs, against a device-to-device copy of the same tensor\n",
            DEF_ROWS, DEF_COLS, DEF_SECONDS, DEF_RUNS);
}

/* Returns -1 to go on, else an exit code. */
static int parse_codecs_args(int argc, char **argv, codecs_args *a)
{
    *a = (codecs_args){.rows = DEF_ROWS, .cols = DEF_COLS, .runs = DEF_RUNS, .seconds = DEF_SECONDS};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            codecs_usage(stdout);
            return CLI_EXIT_OK;
        }
        if (!v) return cli_usage_error("bench codecs", "option '%s' needs a value", o);
        i++;
        if (!strcmp(o, "--codec")) {
            if (a->n_specs == MAX_CODECS) return cli_usage_error("bench codecs", "at most %d --codec", MAX_CODECS);
            a->specs[a->n_specs++] = v;
        } else if (!strcmp(o, "--rows") || !strcmp(o, "--cols") || !strcmp(o, "--runs")) {
            long hi = !strcmp(o, "--runs") ? MAX_RUNS : MAX_DIM;
            if (cli_parse_int(v, 1, hi, &n))
                return cli_usage_error("bench codecs", "%s wants an integer in 1..%ld, got '%s'", o, hi, v);
            if (!strcmp(o, "--rows")) a->rows = n;
            else if (!strcmp(o, "--cols")) a->cols = n;
            else a->runs = (int)n;
        } else if (!strcmp(o, "--device")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda"))
                return cli_usage_error("bench codecs", "--device wants cpu or cuda, got '%s'", v);
            a->cuda = !strcmp(v, "cuda");
        } else if (!strcmp(o, "--seconds")) {
            char *end;
            a->seconds = strtod(v, &end);
            if (*end || !(a->seconds >= 0 && a->seconds <= 600))
                return cli_usage_error("bench codecs", "--seconds wants a number in 0..600, got '%s'", v);
        } else {
            return cli_usage_error("bench codecs", "unknown option '%s'", o);
        }
    }
    if (!a->n_specs && !a->cuda)
        for (size_t k = 0; k < sizeof default_specs / sizeof default_specs[0]; k++)
            a->specs[a->n_specs++] = default_specs[k];
    return -1;
}

static void print_row(const char *spec, const codec_result *r, double bytes)
{
    char codec[16] = "-", ref[16] = "-", ratio[48] = "";
    if (r->codec > 0) snprintf(codec, sizeof codec, "%.2f", bytes / r->codec / GB);
    if (r->ref > 0) {
        snprintf(ref, sizeof ref, "%.2f", bytes / r->ref / GB);
        snprintf(ratio, sizeof ratio, "%.2f\xc3\x97 ggml-ref (codec: %.2f\xc3\x97)%s", r->ref / r->enc,
                 r->codec > 0 ? r->ref / r->codec : 0.0, r->ref_equal ? "" : "  BYTES DIFFER");
    }
    printf("%-22s %8.3f %9.2f %9s %9.2f %9s  %s\n", spec, r->bits, bytes / r->enc / GB, codec,
           bytes / r->dec / GB, ref, ratio);
}

static int bench_codecs(int argc, char **argv)
{
    codecs_args a;
    int rc = parse_codecs_args(argc, argv, &a);
    if (rc >= 0) return rc;
    size_t n = (size_t)(a.rows * a.cols);
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return cli_error("bench codecs", KVQ_ERR_NOMEM);
    }
    fill_weights(x, n);
    if (a.cuda) {
        rc = kvq_bench_codecs_cuda(x, (long)a.rows, (long)a.cols, a.specs, a.n_specs, a.runs);
        free(x);
        free(y);
        return rc;
    }
    int64_t d[2] = {a.rows, a.cols};
    kvq_tensor tx = kvq_tensor_view(KVQ_DTYPE_F32, x, 2, d), ty = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    double bytes = (double)n * sizeof(float);
    printf("kvq bench codecs: %lld x %lld f32 (%.1f MiB), normal x%.2f, 1 in %d values x%.0f, seed %u;\n"
           "1 thread, GB/s = 1e9 bytes of f32 per second, median of >= %d runs and >= %.1f s;\n"
           "kernels: %s (KVQ_SIMD=ref forces the scalar reference)\n\n",
           (long long)a.rows, (long long)a.cols, bytes / (1 << 20), (double)WEIGHT_STD, OUTLIER_EVERY,
           (double)OUTLIER_GAIN, BENCH_SEED, a.runs, a.seconds, kvq_kernels_name());
    printf("%-22s %8s %9s %9s %9s %9s  %s\n", "codec", "bits/val", "encode", "(codec)", "decode", "ggml-ref",
           "encode vs ggml-ref");
    int fail = 0;
    for (int i = 0; i < a.n_specs; i++) {
        codec_result r;
        kvq_err e = bench_one(a.specs[i], &a, &tx, &ty, &r);
        if (e) {
            fail = cli_error(a.specs[i], e);
            continue;
        }
        print_row(a.specs[i], &r, bytes);
        if (r.ref > 0 && !r.ref_equal) fail = CLI_EXIT_FAIL;
        fflush(stdout);
    }
    printf("\nencode = kvq_ctx_encode_payload (includes the NaN/Inf scan); (codec) = the codec's encode alone\n");
    free(x);
    free(y);
    return fail ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

/* ---- the sub-benchmark table ------------------------------------------------ */
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] = name */
    const char *help;
} sub_bench;

static const sub_bench benches[] = {
    {"codecs", bench_codecs, "encode/decode GB/s per codec, q8_0/q4_0 vs ggml's scalar reference"},
    {"decode", kvq_bench_decode, "reference decoder tok/s vs a run.c-style baseline"},
};

#define N_BENCHES (sizeof benches / sizeof benches[0])

int kvq_cmd_bench(int argc, char **argv)
{
    if (argc >= 2)
        for (size_t i = 0; i < N_BENCHES; i++)
            if (!strcmp(argv[1], benches[i].name)) return benches[i].run(argc - 1, argv + 1);
    int help = argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"));
    FILE *f = help ? stdout : stderr;
    if (argc >= 2 && !help) fprintf(f, "kvq bench: unknown benchmark '%s'\n", argv[1]);
    fprintf(f, "usage: kvq bench NAME [ARGS...]   (kvq bench NAME --help)\n\nbenchmarks:\n");
    for (size_t i = 0; i < N_BENCHES; i++) fprintf(f, "  %-8s %s\n", benches[i].name, benches[i].help);
    return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}
