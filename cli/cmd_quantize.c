/*
 * cmd_quantize.c — `kvq quantize IN OUT --codec SPEC [--tensor REGEX=SPEC]...`
 *
 * Mirrors llama-quantize (formats-and-engines.md §5): one line per tensor
 *   [ 3/48] blk.0.attn_q.weight - [64, 64], f32 -> q4_0 .. 16.00 KiB -> 2.25 KiB, 4.500 bpw, SQNR 19.3 dB, max|err| 0.0123
 * then totals (model size, quant size, bits per weight) and the count of
 * tensors that needed a fallback type.  --calib FILE runs the f32 model
 * over that text first (libkvq/calib.c) for codecs that learn from
 * activations.  --ksort KEY and --sort-inputs rearrange channels first
 * (libkvq/ksort.c: Q/K RoPE pairs per KV head by W_k norm or calibration K
 * magnitude; FFN hidden and V channels for weight blocks), leaving the
 * float model's output unchanged.  A progress bar runs on a terminal.
 * The output format comes from --format or OUT's extension; OUT is written
 * through a temp file and renamed, and an existing OUT is refused unless -f.
 */
#include "cli.h"
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_RULES 64
#define KIB 1024.0
#define TOK_MAX_BYTES (16L << 20) /* far above any tokenizer.bin */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kvq quantize IN OUT --codec SPEC [--tensor 'REGEX=SPEC']... [--threads N]\n"
            "                    [--format kvq|gguf|safetensors] [--tokenizer FILE]\n"
            "                    [--calib FILE [--calib-tokens N]] [--ksort weight|calib] [--sort-inputs] [-f]\n"
            "  IN      llama2.c .bin, GGUF, safetensors (file, directory or index.json) or .kvq\n"
            "  OUT     output; format from --format or the extension (.kvq .gguf .safetensors)\n"
            "  --codec SPEC          codec for every matrix, e.g. q4_0, rtn:bits=4,group=64\n"
            "  --tensor REGEX=SPEC   override for tensors whose name matches the POSIX ERE (repeatable,\n"
            "                        first match wins); 1-D tensors stay f32 unless a rule names them\n"
            "  --threads N           worker threads (default 1)\n"
            "  --tokenizer FILE      embed this llama2.c tokenizer.bin\n"
            "  --calib FILE          calibration text (tokenized with the model's tokenizer): the f32\n"
            "                        model's linear inputs feed codecs that learn from activations\n"
            "  --calib-tokens N      calibration tokens kept per linear input (default %d)\n"
            "  --ksort KEY           K-sort: order each KV head's RoPE pairs (and W_q/W_k rows) by KEY =\n"
            "                        weight (W_k row norms) or calib (mean |K| on the --calib text), so\n"
            "                        outlier key channels share blocks; needs a .kvq output\n"
            "  --sort-inputs         order FFN hidden and V channels by the reading weight's column\n"
            "                        norms (ffn_down, attn_output) so large input columns share blocks\n"
            "  -f, --force           overwrite OUT\n",
            KVQ_CALIB_TOKENS_DEFAULT);
}

static void progress(void *opaque, size_t done, size_t total)
{
    cli_progress((const char *)opaque, done, total);
}

static void fmt_size(double bytes, char *buf, size_t cap)
{
    if (bytes >= KIB * KIB) snprintf(buf, cap, "%.2f MiB", bytes / (KIB * KIB));
    else snprintf(buf, cap, "%.2f KiB", bytes / KIB);
}

static void print_stats(const kvq_quant_stat *st, size_t n, double secs)
{
    double in = 0, out = 0, numel = 0;
    size_t fallbacks = 0;
    for (size_t i = 0; i < n; i++) {
        const kvq_quant_stat *s = &st[i];
        char shp[80], a[32], b[32], sq[32];
        fmt_size((double)s->bytes_in, a, sizeof a);
        fmt_size((double)s->bytes_out, b, sizeof b);
        if (isinf(s->sqnr_db)) snprintf(sq, sizeof sq, "exact");
        else snprintf(sq, sizeof sq, "SQNR %.1f dB", s->sqnr_db);
        printf("[%3zu/%3zu] %s - %s, %s -> %s .. %s -> %s, %.3f bpw, %s, max|err| %.4g%s%s%s\n", i + 1, n, s->name,
               kvq_shape_format(&s->shape, shp, sizeof shp), s->src_type, s->dst_type, a, b, s->bpw, sq,
               s->max_abs_err, s->fallback ? " (" : "", s->fallback ? s->note : "", s->fallback ? ")" : "");
        in += (double)s->bytes_in;
        out += (double)s->bytes_out;
        numel += (double)kvq_shape_numel(&s->shape);
        fallbacks += s->fallback != 0;
    }
    char a[32], b[32];
    fmt_size(in, a, sizeof a);
    fmt_size(out, b, sizeof b);
    printf("model size = %s (%.3f bpw)\n", a, numel ? 8 * in / numel : 0);
    printf("quant size = %s (%.3f bpw)\n", b, numel ? 8 * out / numel : 0);
    if (fallbacks) printf("%zu of %zu tensor(s) required fallback quantization\n", fallbacks, n);
    printf("quantize time = %.1f ms\n", secs * 1e3);
}

static int attach_tokenizer(kvq_model *m, const char *path)
{
    FILE *f = fopen(path, "rb");
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    unsigned char *buf = n >= 0 && n <= TOK_MAX_BYTES ? malloc((size_t)n + 1) : NULL;
    int ok = buf && fseek(f, 0, SEEK_SET) == 0 && fread(buf, 1, (size_t)n, f) == (size_t)n;
    if (f) fclose(f);
    if (!ok) {
        free(buf);
        fprintf(stderr, "kvq: %s: cannot read tokenizer (missing, unreadable or over 16 MiB)\n", path);
        return CLI_EXIT_FAIL;
    }
    kvq_err e = kvq_model_set_tokenizer(m, buf, (size_t)n);
    free(buf);
    return e ? cli_error(path, e) : CLI_EXIT_OK;
}

typedef struct {
    const char *in, *out, *fmt, *tok, *calib;
    long calib_tokens;
    kvq_ksort_opts ks;
    const char *rules[MAX_RULES];
    kvq_quant_opts o;
    int force;
} args;

/* Returns -1 to proceed, else the exit code (help, usage error). */
static int parse_args(int argc, char **argv, args *a)
{
    long threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (!strcmp(s, "-f") || !strcmp(s, "--force")) {
            a->force = 1;
        } else if (!strcmp(s, "--codec") && has) {
            a->o.spec = argv[++i];
        } else if (!strcmp(s, "--tensor") && has) {
            if (a->o.n_rules == MAX_RULES) return cli_usage_error("quantize", "more than %d --tensor rules", MAX_RULES);
            a->rules[a->o.n_rules++] = argv[++i];
        } else if (!strcmp(s, "--threads") && has) {
            if (cli_parse_int(argv[++i], 1, 256, &threads))
                return cli_usage_error("quantize", "--threads takes 1..256, got '%s'", argv[i]);
        } else if (!strcmp(s, "--format") && has) {
            a->fmt = argv[++i];
        } else if (!strcmp(s, "--tokenizer") && has) {
            a->tok = argv[++i];
        } else if (!strcmp(s, "--calib") && has) {
            a->calib = argv[++i];
        } else if (!strcmp(s, "--calib-tokens") && has) {
            if (cli_parse_int(argv[++i], 1, 1L << 20, &a->calib_tokens))
                return cli_usage_error("quantize", "--calib-tokens takes 1..1048576, got '%s'", argv[i]);
        } else if (!strcmp(s, "--ksort") && has) {
            const char *k = argv[++i];
            if (strcmp(k, "weight") && strcmp(k, "calib"))
                return cli_usage_error("quantize", "--ksort takes weight or calib, got '%s'", k);
            a->ks.qk = 1;
            a->ks.key = strcmp(k, "calib") ? KVQ_KSORT_WEIGHT : KVQ_KSORT_CALIB;
        } else if (!strcmp(s, "--sort-inputs")) {
            a->ks.inputs = 1;
        } else if (s[0] == '-' && s[1]) {
            return cli_usage_error("quantize", "unknown option '%s'", s);
        } else if (!a->in || !a->out) {
            *(a->in ? &a->out : &a->in) = s;
        } else {
            return cli_usage_error("quantize", "unexpected argument '%s'", s);
        }
    }
    if (!a->in || !a->out) return cli_usage_error("quantize", "need IN and OUT");
    if (!a->o.spec) return cli_usage_error("quantize", "--codec SPEC is required");
    if (a->ks.qk && a->ks.key == KVQ_KSORT_CALIB && !a->calib)
        return cli_usage_error("quantize", "--ksort calib needs --calib FILE");
    a->o.rules = a->rules;
    a->o.n_threads = (int)threads;
    a->o.progress = progress;
    a->o.opaque = (void *)"quantizing";
    return -1;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

#define KSTAT_BLOCK 32    /* channels per block in the printed outlier counts */
#define KSTAT_OUTLIER 2.0 /* a pair counts as an outlier above this × the head's median key */
#define KSTAT_MAX_BLOCKS 64

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One line per layer and KV head: the pair keys K-sort orders by and
 * where their outliers sit among the 32-channel blocks before sorting. */
static void print_key_stats(const kvq_model *m, const kvq_ksort_opts *ks)
{
    const kvq_model_config *c = kvq_model_config_get(m);
    int half = c->head_size / 2, nblk = (c->head_size + KSTAT_BLOCK - 1) / KSTAT_BLOCK;
    double *k = malloc(sizeof(double) * (size_t)(c->n_kv_heads * half)), *srt = malloc(sizeof(double) * (size_t)half);
    for (int l = 0; k && srt && nblk <= KSTAT_MAX_BLOCKS && l < c->n_layers; l++) {
        if (kvq_ksort_pair_keys(m, l, ks->key, ks->calib, k)) break;
        for (int g = 0; g < c->n_kv_heads; g++) {
            const double *kg = k + g * half;
            memcpy(srt, kg, sizeof(double) * (size_t)half);
            qsort(srt, (size_t)half, sizeof *srt, cmp_double);
            double med = srt[half / 2];
            int cnt[KSTAT_MAX_BLOCKS] = {0}, n_out = 0;
            for (int j = 0; j < half; j++)
                if (kg[j] > KSTAT_OUTLIER * med) {
                    n_out++;
                    cnt[(c->rope == KVQ_ROPE_ADJACENT ? 2 * j : j) / KSTAT_BLOCK]++;
                }
            printf("layer %d head %d: pair |K| max %.3f median %.3f min %.3f (max/median %.2f); %d pairs > %gx median,"
                   " per %d-channel block:", l, g, srt[half - 1], med, srt[0], med > 0 ? srt[half - 1] / med : 0.0,
                   n_out, KSTAT_OUTLIER, KSTAT_BLOCK);
            for (int b = 0; b < nblk; b++) printf(" %d", cnt[b]);
            printf("\n");
        }
    }
    free(k);
    free(srt);
}

/* Replaces *m by its rearranged copy; calibration inputs are captured
 * again on it, since reordered FFN/V channels reorder O and DOWN inputs. */
static int rearrange(args *a, kvq_model **m, kvq_calib **cal)
{
    a->ks.calib = *cal;
    kvq_model *s = NULL;
    kvq_err e = kvq_model_ksort(*m, &a->ks, &s);
    if (e) return cli_error("quantize", e);
    if (a->ks.qk) print_key_stats(*m, &a->ks);
    printf("rearranged channels:%s%s%s\n", a->ks.qk ? " K-sort by " : "",
           a->ks.qk ? (a->ks.key == KVQ_KSORT_CALIB ? "calibration K" : "W_k row norms") : "",
           a->ks.inputs ? " + FFN hidden and V channels" : "");
    kvq_model_free(*m);
    *m = s;
    kvq_calib_free(*cal);
    *cal = NULL;
    if (!a->calib) return CLI_EXIT_OK;
    return report_load_calib(s, a->in, NULL, a->calib, (int)a->calib_tokens, a->o.n_threads, cal);
}

int kvq_cmd_quantize(int argc, char **argv)
{
    args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    kvq_format fmt;
    if ((a.fmt ? kvq_format_from_name(a.fmt, &fmt) : kvq_format_from_path(a.out, &fmt)) != KVQ_OK ||
        fmt == KVQ_FORMAT_LLAMA2C)
        return cli_usage_error("quantize", "cannot tell the output format of '%s' (use --format kvq|gguf|safetensors)",
                               a.fmt ? a.fmt : a.out);
    struct stat st;
    if (!a.force && stat(a.out, &st) == 0) {
        fprintf(stderr, "kvq: %s: already exists (use -f to overwrite)\n", a.out);
        return CLI_EXIT_FAIL;
    }
    kvq_model *m = NULL, *q = NULL;
    kvq_quant_stat *stats = NULL;
    kvq_err e = kvq_model_load(a.in, &m);
    if (e) return cli_error("quantize", e);
    rc = a.tok ? attach_tokenizer(m, a.tok) : CLI_EXIT_OK;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kvq_calib *cal = NULL;
    if (!rc && a.calib)
        rc = report_load_calib(m, a.in, NULL, a.calib, (int)a.calib_tokens, a.o.n_threads, &cal);
    if (!rc && (a.ks.qk || a.ks.inputs)) rc = rearrange(&a, &m, &cal);
    a.o.calib = cal;
    e = rc ? KVQ_OK : kvq_model_quantize(m, &a.o, &q, &stats);
    kvq_calib_free(cal);
    if (e) {
        rc = cli_error("quantize", e);
    } else if (!rc) {
        print_stats(stats, kvq_model_n_weights(q), seconds_since(&t0));
        e = kvq_model_save(q, a.out, fmt, a.force);
        if (e) rc = cli_error("quantize", e);
        else printf("wrote %s (%s)\n", a.out, kvq_format_name(fmt));
    }
    free(stats);
    kvq_model_free(q);
    kvq_model_free(m);
    return rc;
}
