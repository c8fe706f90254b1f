/*
 * cmd_report.c — `kvq report`: evaluate a grid of candidate configs
 * (weights / activations / KV cache, one spec line each; grammar in
 * cli/report.h and docs/report-schema.md) against one f32 base run on the
 * same text, then write report.md, report.json (schema kvq.report/1) and
 * pareto.svg (bits per value vs mean KL divergence, frontier marked).
 */
#include "report.h"
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_THREADS 256
#define MAX_CONFIGS 256
#define MAX_SPEC_FILE ((size_t)1 << 20)
#define DEFAULT_OUT "report"
#define PATH_CAP 4096            /* DIR/NAME of an output file      */
#define MIN_CTX_ARG 4                     /* --ctx: ctx/2 must leave a scored token */
#define MAX_CTX_ARG (1L << 20)            /* --ctx upper bound (seq_len limits it)  */
#define MAX_CHUNKS_ARG (1L << 30) /* --chunks upper bound           */
#define N_OUTPUTS 3

static const char *const out_names[N_OUTPUTS] = {"report.md", "report.json", "pareto.svg"};

#define MAX_CALIBS 8   /* distinct (calibration file, token count) pairs */

/* Calibration data built once per (file, tokens) and shared by rows. */
typedef struct {
    const char *path[MAX_CALIBS];
    int         tokens[MAX_CALIBS];
    kvq_calib  *cal[MAX_CALIBS];
    int         n;
} calib_cache;

typedef struct {
    const char *model, *tok, *text, *specs, *out, *calib;
    long ctx, chunks, threads, calib_tokens;
    int force;
    calib_cache cc;
} report_args;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kvq report MODEL --text FILE --specs FILE|LIST [options]\n"
            "  -z FILE         tokenizer.bin (default: the model's own)\n"
            "  --text FILE     text to evaluate on\n"
            "  --specs S       a file with one config per line, or configs separated by ';'\n"
            "                  config: items w=SPEC tensor=RE=SPEC act=SPEC kv=SPEC k=SPEC v=SPEC\n"
            "                  window=N page=N depth=NAME[:ARG] keep=0|1 label=TEXT, separated by\n"
            "                  spaces ('#' starts a comment)\n"
            "  --out DIR       output directory (default ./%s)\n"
            "  --ctx N         tokens per chunk (default min(seq_len, 512))\n"
            "  --chunks N      first N chunks only (default all)\n"
            "  --threads N     decoder and quantizer threads (default 1)\n"
            "  --calib FILE    calibration text for codecs that learn from activations (a line's\n"
            "                  calib=FILE overrides it); --calib-tokens N rows kept (default %d)\n"
            "  -f              overwrite existing report files\n"
            "example: kvq report model.bin --text valid.txt --specs 'w=q8_0; w=q4_0; kv=rtn:bits=8'\n",
            DEFAULT_OUT, KVQ_CALIB_TOKENS_DEFAULT);
}

static int parse_args(int argc, char **argv, report_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (!strcmp(o, "-f") || !strcmp(o, "--force")) {
            a->force = 1;
            continue;
        }
        if (o[0] != '-' || !o[1]) {
            if (a->model) return cli_usage_error("report", "more than one MODEL ('%s')", o);
            a->model = o;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("report", "option %s needs a value", o);
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(o, "-z")) a->tok = v;
        else if (!strcmp(o, "--text")) a->text = v;
        else if (!strcmp(o, "--specs")) a->specs = v;
        else if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--ctx")) bad = cli_parse_int(v, MIN_CTX_ARG, MAX_CTX_ARG, &a->ctx);
        else if (!strcmp(o, "--chunks")) bad = cli_parse_int(v, 1, MAX_CHUNKS_ARG, &a->chunks);
        else if (!strcmp(o, "--threads")) bad = cli_parse_int(v, 1, MAX_THREADS, &a->threads);
        else if (!strcmp(o, "--calib")) a->calib = v;
        else if (!strcmp(o, "--calib-tokens")) bad = cli_parse_int(v, 1, 1L << 20, &a->calib_tokens);
        else return cli_usage_error("report", "unknown option %s", o);
        if (bad) return cli_usage_error("report", "bad value '%s' for %s", v, o);
    }
    if (!a->model) return cli_usage_error("report", "no MODEL given");
    if (!a->text) return cli_usage_error("report", "no --text FILE given");
    if (!a->specs) return cli_usage_error("report", "no --specs given");
    return -1;
}

/* The --specs text: the file's contents when it names a readable file,
 * else the argument itself with ';' separating configs. */
static char *specs_text(const char *arg, int *from_file)
{
    FILE *f = fopen(arg, "rb");
    *from_file = f != NULL;
    if (!f) {
        char *s = strdup(arg);
        for (char *p = s; p && *p; p++)
            if (*p == ';') *p = '\n';
        return s;
    }
    char *s = malloc(MAX_SPEC_FILE + 1);
    size_t n = s ? fread(s, 1, MAX_SPEC_FILE, f) : 0;
    int bad = !s || ferror(f) || !feof(f);
    fclose(f);
    if (bad) {
        free(s);
        return NULL;
    }
    s[n] = 0;
    return s;
}

/* Parses every non-empty, non-comment line; returns an exit code. */
static int parse_configs(const report_args *a, report_row *rows, size_t *n)
{
    int from_file = 0;
    char *text = specs_text(a->specs, &from_file);
    if (!text) return fprintf(stderr, "kvq: %s: cannot read the spec file\n", a->specs), CLI_EXIT_FAIL;
    int rc = CLI_EXIT_OK, line_no = 0;
    *n = 0;
    for (char *line = strtok(text, "\n"); line && !rc; line = strtok(NULL, "\n")) {
        line_no++;
        char *hash = strchr(line, '#'), err[256];
        if (hash) *hash = 0;
        if (strspn(line, " \t\r") == strlen(line)) continue;
        if (*n == MAX_CONFIGS) {
            rc = cli_usage_error("report", "more than %d configs", MAX_CONFIGS);
        } else if (report_config_parse(line, &rows[*n].cfg, err, sizeof err) ||
                   (report_config_check(&rows[*n].cfg, err, sizeof err) && (report_config_free(&rows[*n].cfg), 1))) {
            rc = from_file ? (fprintf(stderr, "kvq: %s:%d: %s\n", a->specs, line_no, err), CLI_EXIT_USAGE)
                           : cli_usage_error("report", "config '%s': %s", line, err);
        } else {
            (*n)++;
        }
    }
    free(text);
    if (!rc && *n == 0) rc = cli_usage_error("report", "--specs holds no config");
    return rc;
}

/* Creates DIR if needed and refuses existing outputs without -f. */
static int prepare_out(const report_args *a)
{
    if (mkdir(a->out, 0777) != 0 && errno != EEXIST)
        return fprintf(stderr, "kvq: %s: cannot create the directory: %s\n", a->out, strerror(errno)), CLI_EXIT_FAIL;
    for (int i = 0; i < N_OUTPUTS && !a->force; i++) {
        char path[PATH_CAP];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", a->out, out_names[i]);
        if (stat(path, &st) == 0)
            return fprintf(stderr, "kvq: %s: %s\n", path, kvq_strerror(KVQ_ERR_EXISTS)),
                   CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

static void progress(void *user, int done, int total)
{
    cli_progress((const char *)user, (size_t)done, (size_t)total);
}

/* Sets row->cfg.cal from the line's calib= or --calib (built on first use). */
static int resolve_calib(report_args *a, const kvq_model *base, report_config *c)
{
    const char *path = c->calib ? c->calib : a->calib;
    int tokens = c->calib_tokens ? c->calib_tokens : (int)a->calib_tokens;
    calib_cache *cc = &a->cc;
    c->cal = NULL;
    if (!path) return CLI_EXIT_OK;
    for (int k = 0; k < cc->n; k++)
        if (!strcmp(cc->path[k], path) && cc->tokens[k] == tokens) {
            c->cal = cc->cal[k];
            return CLI_EXIT_OK;
        }
    if (cc->n == MAX_CALIBS) return cli_usage_error("report", "more than %d distinct calibration sets", MAX_CALIBS);
    int rc = report_load_calib(base, a->model, a->tok, path, tokens, (int)a->threads, &cc->cal[cc->n]);
    if (rc) return rc;
    cc->path[cc->n] = path;
    cc->tokens[cc->n] = tokens;
    c->cal = cc->cal[cc->n++];
    return CLI_EXIT_OK;
}

static int run_one(report_args *a, const kvq_model *base, const kvq_eval_base *b, report_row *row, size_t i,
                   size_t n)
{
    kvq_model *cand = NULL;
    int rc = resolve_calib(a, base, &row->cfg);
    if (rc) return rc;
    kvq_err e = report_candidate(base, &row->cfg, (int)a->threads, &cand);
    if (e) return cli_error(row->cfg.label, e);
    kvq_eval_opts o;
    kvq_eval_opts_init(&o);
    o.threads = (int)a->threads;
    report_eval_opts(&row->cfg, &o);
    char label[64];
    snprintf(label, sizeof label, "[%zu/%zu] %s", i + 1, n, row->cfg.label);
    o.progress = progress;
    o.user = label;
    e = kvq_eval_candidate(b, cand ? cand : base, &o, &row->res);
    kvq_model_free(cand);
    if (e) return cli_error(row->cfg.label, e);
    row->x = report_config_x(&row->cfg, &row->res);
    printf("%-40s %7.3f bits/value  PPL %9.4f  mean KLD %.6f ± %.6f  same top %6.2f%%\n", row->cfg.label, row->x,
           row->res.s.ppl_q, row->res.s.kld_mean, row->res.s.kld_unc, 100.0 * row->res.s.same_top);
    fflush(stdout);
    return CLI_EXIT_OK;
}

static int write_outputs(const report_args *a, const kvq_model *m, report_row *rows, size_t n)
{
    report_meta meta = {.model_path = a->model, .text_path = a->text, .model = m, .threads = (int)a->threads};
    report_mark_pareto(rows, n);
    for (int i = 0; i < N_OUTPUTS; i++) {
        report_buf b = {0};
        if (i == 0) report_markdown(&b, &meta, rows, n);
        else if (i == 1) report_json(&b, &meta, rows, n);
        else report_svg(&b, &meta, rows, n);
        char path[PATH_CAP];
        snprintf(path, sizeof path, "%s/%s", a->out, out_names[i]);
        int bad = b.oom ? (errno = ENOMEM, -1) : report_write_file(path, &b, a->force);
        rb_free(&b);
        if (bad) return fprintf(stderr, "kvq: %s: cannot write: %s\n", path, strerror(errno)), CLI_EXIT_FAIL;
        printf("wrote %s\n", path);
    }
    return CLI_EXIT_OK;
}

static int run_report(report_args *a, report_row *rows, size_t n)
{
    kvq_model *m = NULL;
    kvq_err e = kvq_model_load(a->model, &m);
    if (e) return cli_error(a->model, e);
    int *tokens = NULL;
    size_t nt = 0;
    int rc = report_load_tokens(m, a->model, a->tok, a->text, &tokens, &nt);
    kvq_eval_base *b = NULL;
    if (!rc) {
        kvq_eval_opts o;
        kvq_eval_opts_init(&o);
        o.ctx = (int)a->ctx;
        o.max_chunks = (int)a->chunks;
        o.threads = (int)a->threads;
        o.progress = progress;
        o.user = (void *)"f32 base";
        e = kvq_eval_base_create(m, tokens, nt, &o, &b);
        if (e) rc = cli_error(a->model, e);
    }
    for (size_t i = 0; !rc && i < n; i++) rc = run_one(a, m, b, &rows[i], i, n);
    if (!rc) rc = write_outputs(a, m, rows, n);
    for (int k = 0; k < a->cc.n; k++) kvq_calib_free(a->cc.cal[k]);
    for (size_t i = 0; i < n; i++) rows[i].cfg.cal = NULL;
    kvq_eval_base_free(b);
    free(tokens);
    kvq_model_free(m);
    return rc;
}

int kvq_cmd_report(int argc, char **argv)
{
    report_args a = {.out = DEFAULT_OUT, .threads = 1};
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    report_row *rows = calloc(MAX_CONFIGS, sizeof *rows);
    if (!rows) return cli_error("report", KVQ_ERR_NOMEM);
    size_t n = 0;
    rc = parse_configs(&a, rows, &n);
    if (!rc) rc = prepare_out(&a);
    if (!rc) rc = run_report(&a, rows, n);
    for (size_t i = 0; i < n; i++) report_config_free(&rows[i].cfg);
    free(rows);
    return rc;
}
