/*
 * cmd_eval.c — `kvq eval`: one candidate (weight codec, activation codec,
 * K/V cache codecs) against the f32 model on the same text, teacher-forced
 * in llama-perplexity's chunked mode (libkvq/eval_driver.c), printed as
 * llama-perplexity's KL-divergence final block (quant-methods.md §7.3) or
 * as JSON (schema kvq.report/1, docs/report-schema.md).
 *
 * Also the pieces `kvq report` shares (cli/report.h): the spec-line
 * grammar, loading the text and tokens, building the candidate model.
 */
#include "report.h"
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREADS 256
#define MAX_TEXT_BYTES ((size_t)1 << 31)  /* refuse absurd text files   */
#define READ_STEP ((size_t)64 << 10)     /* bytes per fread of the text    */
#define READ_INITIAL ((size_t)1 << 20)    /* first text buffer size         */
#define MIN_CTX_ARG 4                     /* --ctx: ctx/2 must leave a scored token */
#define MAX_CTX_ARG (1L << 20)            /* --ctx upper bound (seq_len limits it)  */
#define MAX_CHUNKS_ARG (1L << 30)         /* --chunks upper bound           */
#define MIN_TOKENS_FOR_BLOCK 100          /* llama.cpp prints the final
                                             block from 100 tokens on   */

void report_eval_opts(const report_config *c, kvq_eval_opts *o)
{
    o->act_spec = c->act;
    o->kv_k_spec = c->k;
    o->kv_v_spec = c->v;
    o->kv_window = c->window;
    o->kv_page = c->page;
    o->calib = c->cal;
    o->kv_depth = c->depth;
    o->kv_keep_decoded = c->keep;
}

/* ksort= / wsort=: the base rearranged (libkvq/ksort.c), float-identical
 * up to f32 rounding; quantization then runs on the rearranged weights. */
static kvq_err rearranged(const kvq_model *base, const report_config *c, kvq_model **out)
{
    kvq_ksort_opts ks;
    memset(&ks, 0, sizeof ks);
    ks.qk = c->ksort != NULL;
    ks.key = c->ksort && !strcmp(c->ksort, "calib") ? KVQ_KSORT_CALIB : KVQ_KSORT_WEIGHT;
    ks.calib = c->cal;
    ks.inputs = c->wsort;
    return kvq_model_ksort(base, &ks, out);
}

kvq_err report_candidate(const kvq_model *base, const report_config *c, int threads, kvq_model **out)
{
    *out = NULL;
    kvq_model *sorted = NULL;
    if (c->ksort || c->wsort) {
        kvq_err e = rearranged(base, c, &sorted);
        if (e) return e;
    }
    if (!report_config_weights_changed(c)) {
        *out = sorted;
        return KVQ_OK;
    }
    kvq_quant_opts q;
    memset(&q, 0, sizeof q);
    q.spec = c->w ? c->w : "f32";
    q.rules = (const char *const *)c->tensor;
    q.n_rules = (size_t)c->n_tensor;
    q.n_threads = threads;
    q.calib = c->cal;
    q.act_spec = c->act; /* fp:rounds=N searches weights with it */
    kvq_err e = kvq_model_quantize(sorted ? sorted : base, &q, out, NULL);
    kvq_model_free(sorted);
    return e;
}

/* ---- loading ------------------------------------------------------------------ */

static char *read_text(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, len = 0, got;
    do {
        if (len + READ_STEP + 1 > cap) {
            cap = cap ? cap * 2 : READ_INITIAL;
            char *nb = cap <= MAX_TEXT_BYTES ? realloc(buf, cap) : NULL;
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        got = fread(buf + len, 1, READ_STEP, f);
        len += got;
    } while (got > 0);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    *n = len;
    return buf;
}

static int open_tokenizer(const kvq_model *m, const char *model_path, const char *tok_path, kvq_tokenizer **t)
{
    int vocab = kvq_model_config_get(m)->vocab_size;
    kvq_err e;
    if (tok_path) {
        e = kvq_tokenizer_load(tok_path, vocab, t);
        return e ? cli_error(tok_path, e) : CLI_EXIT_OK;
    }
    size_t n;
    const void *p = kvq_model_tokenizer(m, &n);
    if (!p) {
        fprintf(stderr, "kvq: %s: the model has no tokenizer; give one with -z\n", model_path);
        return CLI_EXIT_FAIL;
    }
    e = kvq_tokenizer_from_bytes(p, n, vocab, model_path, t);
    return e ? cli_error(model_path, e) : CLI_EXIT_OK;
}

int report_load_tokens(const kvq_model *m, const char *model_path, const char *tok_path, const char *text_path,
                       int **tokens, size_t *n)
{
    kvq_tokenizer *t = NULL;
    int rc = open_tokenizer(m, model_path, tok_path, &t);
    if (rc) return rc;
    size_t len = 0;
    char *text = read_text(text_path, &len);
    if (!text) {
        kvq_tokenizer_free(t);
        fprintf(stderr, "kvq: %s: cannot read the text: %s\n", text_path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    size_t cap = kvq_tokenizer_encode_bound(strlen(text));
    *tokens = malloc(cap * sizeof **tokens);
    kvq_err e = *tokens ? kvq_tokenizer_encode(t, text, 1, 0, *tokens, cap, n) : KVQ_ERR_NOMEM;
    free(text);
    kvq_tokenizer_free(t);
    if (e) {
        free(*tokens);
        *tokens = NULL;
        return cli_error(text_path, e);
    }
    return CLI_EXIT_OK;
}

int report_load_calib(const kvq_model *m, const char *model_path, const char *tok_path, const char *path,
                      int max_tokens, int threads, kvq_calib **out)
{
    int *tokens = NULL;
    size_t n = 0;
    *out = NULL;
    int rc = report_load_tokens(m, model_path, tok_path, path, &tokens, &n);
    if (rc) return rc;
    kvq_err e = kvq_calib_create(m, tokens, n, max_tokens, threads, out);
    free(tokens);
    return e ? cli_error(path, e) : CLI_EXIT_OK;
}

/* ---- the final block ---------------------------------------------------------- */

/* "Maximum", "99.9%  ", "Median ", " 5.0%  ", "Minimum": llama.cpp's labels. */
static const char *level_label(double f, char *buf, size_t cap)
{
    if (f >= 1) return "Maximum";
    if (f <= 0) return "Minimum";
    if (f == 0.5) return "Median ";
    snprintf(buf, cap, "%4.1f%%  ", 100.0 * f);
    return buf;
}

static void print_sizes(FILE *f, const report_config *c, const kvq_eval_result *r)
{
    fprintf(f, "config            : %s\n", c->label);
    fprintf(f, "weights           : %s, %.4f bits/weight (%llu bytes; f32 model %.4f bits/weight, %llu bytes)\n",
            c->w ? c->w : (c->n_tensor ? "per-tensor rules" : "as loaded"), r->bpw_q,
            (unsigned long long)r->weight_bytes_q, r->bpw_base, (unsigned long long)r->weight_bytes_base);
    fprintf(f, "activations       : %s\n", c->act ? c->act : "f32 (no codec)");
    fprintf(f, "KV cache          : K %s, V %s, window %d, page %d: %.1f bytes/token, %.4f bits/value, "
               "%.3fx vs f32, %.3fx vs f16\n",
            c->k ? c->k : "f32", c->v ? c->v : "f32", c->window, c->page, r->kv_bytes_per_token,
            r->kv_bits_per_value, r->kv_ratio_f32, r->kv_ratio_f16);
    fprintf(f, "evaluation        : %d chunks of %d tokens, %llu scored (positions %d..%d of each chunk), "
               "%llu text tokens, %.1f s\n",
            r->n_chunks, r->ctx, (unsigned long long)r->s.n, r->ctx / 2, r->ctx - 2,
            (unsigned long long)r->n_text_tokens, r->seconds);
}

void report_print_block(FILE *f, const report_config *c, const kvq_eval_result *r)
{
    const kvq_eval_summary *s = &r->s;
    char lb[16];
    print_sizes(f, c, r);
    if (s->n < MIN_TOKENS_FOR_BLOCK)
        fprintf(f, "note: only %llu tokens scored; llama-perplexity prints this block from %d on\n",
                (unsigned long long)s->n, MIN_TOKENS_FOR_BLOCK);
    fprintf(f, "\n====== Perplexity statistics ======\n");
    fprintf(f, "Mean PPL(Q)                   : %10.6f ± %10.6f\n", s->ppl_q, s->ppl_q_unc);
    fprintf(f, "Mean PPL(base)                : %10.6f ± %10.6f\n", s->ppl_base, s->ppl_base_unc);
    fprintf(f, "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * s->ln_ppl_cor);
    fprintf(f, "Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", s->ln_ratio, s->ln_ratio_unc);
    fprintf(f, "Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", s->ppl_ratio, s->ppl_ratio_unc);
    fprintf(f, "Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n", s->ppl_diff, s->ppl_diff_unc);
    fprintf(f, "\n====== KL divergence statistics ======\n");
    fprintf(f, "Mean    KLD: %10.6f ± %10.6f\n", s->kld_mean, s->kld_unc);
    for (int i = 0; i < KVQ_EVAL_N_KLD_LEVELS; i++)
        fprintf(f, "%s KLD: %10.6f\n", level_label(kvq_eval_kld_levels()[i], lb, sizeof lb), s->kld_pct[i]);
    fprintf(f, "\n====== Token probability statistics ======\n");
    fprintf(f, "Mean    Δp: %6.3f ± %5.3f %%\n", 100.0 * s->dp_mean, 100.0 * s->dp_unc);
    for (int i = 0; i < KVQ_EVAL_N_DP_LEVELS; i++)
        fprintf(f, "%s Δp: %6.3f%%\n", level_label(kvq_eval_dp_levels()[i], lb, sizeof lb), 100.0 * s->dp_pct[i]);
    fprintf(f, "RMS Δp    : %6.3f ± %5.3f %%\n", 100.0 * s->dp_rms, 100.0 * s->dp_rms_unc);
    fprintf(f, "Same top p: %6.3f ± %5.3f %%\n", 100.0 * s->same_top, 100.0 * s->same_top_unc);
}

/* ---- kvq eval ---------------------------------------------------------------------- */

typedef struct {
    const char *model, *tok, *text;
    report_config cfg;
    long ctx, chunks, threads;
    int json;
} eval_args;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kvq eval MODEL --text FILE [options]\n"
            "  -z FILE            tokenizer.bin (default: the model's own)\n"
            "  --text FILE        text to evaluate on (tokenized with BOS)\n"
            "  --codec SPEC       weight codec for every 2-D weight (e.g. q4_0)\n"
            "  --tensor RE=SPEC   per-tensor codec rule (POSIX ERE on canonical names; repeatable)\n"
            "  --act SPEC         codec applied to every linear-layer input\n"
            "  --kv-k SPEC        codec for K cache pages    --kv-v SPEC  for V pages\n"
            "  --kv-window W      f32 recent tokens (default %d)\n"
            "  --kv-page P        tokens per encoded page (default %d)\n"
            "  --calib FILE       calibration text: linear inputs captured from the f32 model feed\n"
            "                     codecs that learn from activations (fp searches, nupes data-driven)\n"
            "  --calib-tokens N   calibration tokens kept per linear input (default %d)\n"
            "  --ksort KEY        K-sort the model first: RoPE pairs of each KV head by KEY = weight\n"
            "                     (W_k row norms) or calib (key magnitude on the --calib text)\n"
            "  --sort-inputs      also order FFN hidden and V channels for weight blocks\n"
            "  --ctx N            tokens per chunk (default min(seq_len, 512))\n"
            "  --chunks N         evaluate the first N chunks only (default all)\n"
            "  --threads N        decoder threads (default 1)\n"
            "  --json             print JSON (schema kvq.report/1) instead of the text block\n"
            "Chunks start from an empty cache with BOS; the second half of each chunk is scored\n"
            "against the f32 model on the same tokens (llama-perplexity's KL-divergence mode).\n",
            REPORT_DEFAULT_KV_WINDOW, REPORT_DEFAULT_KV_PAGE, KVQ_CALIB_TOKENS_DEFAULT);
}

static int parse_option(eval_args *a, const char *o, const char *v)
{
    report_config *c = &a->cfg;
    char err[256];
    int bad = 0;
    const char *key = NULL;
    if (!strcmp(o, "-z")) a->tok = v;
    else if (!strcmp(o, "--text")) a->text = v;
    else if (!strcmp(o, "--codec")) key = "w";
    else if (!strcmp(o, "--tensor")) key = "tensor";
    else if (!strcmp(o, "--act")) key = "act";
    else if (!strcmp(o, "--kv-k")) key = "k";
    else if (!strcmp(o, "--kv-v")) key = "v";
    else if (!strcmp(o, "--kv-window")) key = "window";
    else if (!strcmp(o, "--kv-page")) key = "page";
    else if (!strcmp(o, "--calib")) key = "calib";
    else if (!strcmp(o, "--calib-tokens")) key = "calib_tokens";
    else if (!strcmp(o, "--ksort")) key = "ksort";
    else if (!strcmp(o, "--ctx")) bad = cli_parse_int(v, MIN_CTX_ARG, MAX_CTX_ARG, &a->ctx);
    else if (!strcmp(o, "--chunks")) bad = cli_parse_int(v, 1, MAX_CHUNKS_ARG, &a->chunks);
    else if (!strcmp(o, "--threads")) bad = cli_parse_int(v, 1, MAX_THREADS, &a->threads);
    else return cli_usage_error("eval", "unknown option %s", o);
    if (key && report_config_set(c, key, v, err, sizeof err))
        return cli_usage_error("eval", "%s: %s", o, err);
    if (bad) return cli_usage_error("eval", "bad value '%s' for %s", v, o);
    return -1;
}

/* Returns -1 to continue, else an exit code. */
static int parse_args(int argc, char **argv, eval_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (!strcmp(o, "--json")) {
            a->json = 1;
            continue;
        }
        if (!strcmp(o, "--sort-inputs")) {
            a->cfg.wsort = 1;
            continue;
        }
        if (o[0] != '-' || !o[1]) {
            if (a->model) return cli_usage_error("eval", "more than one MODEL ('%s')", o);
            a->model = o;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("eval", "option %s needs a value", o);
        int rc = parse_option(a, o, argv[++i]);
        if (rc >= 0) return rc;
    }
    if (!a->model) return cli_usage_error("eval", "no MODEL given");
    if (!a->text) return cli_usage_error("eval", "no --text FILE given");
    char err[512];
    if (report_config_check(&a->cfg, err, sizeof err)) return cli_usage_error("eval", "%s", err);
    return -1;
}

static void eval_progress(void *user, int done, int total)
{
    cli_progress((const char *)user, (size_t)done, (size_t)total);
}

static void label_from_args(report_config *c)
{
    report_buf b = {0};
    if (c->w) rb_printf(&b, "w=%s ", c->w);
    for (int i = 0; i < c->n_tensor; i++) rb_printf(&b, "tensor=%s ", c->tensor[i]);
    if (c->act) rb_printf(&b, "act=%s ", c->act);
    if (c->k) rb_printf(&b, "k=%s ", c->k);
    if (c->v) rb_printf(&b, "v=%s ", c->v);
    snprintf(c->label, sizeof c->label, "%s", b.n ? b.p : "f32");
    if (b.n && c->label[strlen(c->label) - 1] == ' ') c->label[strlen(c->label) - 1] = 0;
    rb_free(&b);
}

static int run_eval(eval_args *a, kvq_model *base, const int *tokens, size_t n)
{
    kvq_model *cand = NULL;
    kvq_calib *cal = NULL;
    if (a->cfg.calib) {
        int rc = report_load_calib(base, a->model, a->tok, a->cfg.calib, a->cfg.calib_tokens, (int)a->threads, &cal);
        if (rc) return rc;
        a->cfg.cal = cal;
    }
    kvq_err e = report_candidate(base, &a->cfg, (int)a->threads, &cand);
    if (e) {
        kvq_calib_free(cal);
        return cli_error(a->model, e);
    }
    kvq_eval_opts o;
    kvq_eval_opts_init(&o);
    o.ctx = (int)a->ctx;
    o.max_chunks = (int)a->chunks;
    o.threads = (int)a->threads;
    report_eval_opts(&a->cfg, &o);
    o.progress = eval_progress;
    kvq_eval_base *b = NULL;
    report_row row = {.cfg = a->cfg};
    o.user = (void *)"f32 base";
    e = kvq_eval_base_create(base, tokens, n, &o, &b);
    o.user = (void *)"candidate";
    if (!e) e = kvq_eval_candidate(b, cand ? cand : base, &o, &row.res);
    kvq_eval_base_free(b);
    kvq_model_free(cand);
    kvq_calib_free(cal);
    a->cfg.cal = NULL;
    if (e) return cli_error(a->model, e);
    row.x = report_config_x(&a->cfg, &row.res);
    if (a->json) {
        report_buf j = {0};
        report_meta m = {.model_path = a->model, .text_path = a->text, .model = base, .threads = (int)a->threads};
        report_mark_pareto(&row, 1);
        report_json(&j, &m, &row, 1);
        if (j.oom) return cli_error("json", KVQ_ERR_NOMEM);
        fwrite(j.p, 1, j.n, stdout);
        rb_free(&j);
    } else {
        report_print_block(stdout, &a->cfg, &row.res);
    }
    return CLI_EXIT_OK;
}

int kvq_cmd_eval(int argc, char **argv)
{
    eval_args a;
    memset(&a, 0, sizeof a);
    report_config_init(&a.cfg);
    a.threads = 1;
    int rc = parse_args(argc, argv, &a);
    if (rc < 0) {
        label_from_args(&a.cfg);
        kvq_model *m = NULL;
        kvq_err e = kvq_model_load(a.model, &m);
        int *tokens = NULL;
        size_t n = 0;
        rc = e ? cli_error(a.model, e) : report_load_tokens(m, a.model, a.tok, a.text, &tokens, &n);
        if (!rc) rc = run_eval(&a, m, tokens, n);
        free(tokens);
        kvq_model_free(m);
    }
    report_config_free(&a.cfg);
    return rc;
}
