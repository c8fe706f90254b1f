/*
 * report.c — the writers behind `kvq report` and `kvq eval --json`: JSON
 * (schema kvq.report/1, docs/report-schema.md), a Markdown table, and a
 * hand-written SVG Pareto plot (x = bits per value, y = mean KL divergence
 * on a log scale with ± uncertainty bars, the non-dominated points joined
 * by the frontier polyline, every point labelled), plus the temp-file +
 * rename file writer, and the spec-line grammar of candidate configs.
 * Only kvq.h and libc: tests/test_report.c compiles this file directly.
 * Output is deterministic: the same rows give the same
 * bytes (fixed number formats, no clock, no locale-dependent text).
 */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- configurations --------------------------------------------------------- */

void report_config_init(report_config *c)
{
    memset(c, 0, sizeof *c);
    c->window = REPORT_DEFAULT_KV_WINDOW;
    c->page = REPORT_DEFAULT_KV_PAGE;
    /* Decoded pages are deterministic, so keeping them changes no number,
     * only stops every attend step from decoding all pages again. */
    c->keep = 1;
}

void report_config_free(report_config *c)
{
    free(c->w);
    free(c->act);
    free(c->k);
    free(c->v);
    free(c->calib);
    free(c->depth);
    free(c->ksort);
    for (int i = 0; i < c->n_tensor; i++) free(c->tensor[i]);
    report_config_init(c);
}

int report_config_weights_changed(const report_config *c) { return c->w || c->n_tensor > 0; }

double report_config_x(const report_config *c, const kvq_eval_result *r)
{
    if (report_config_weights_changed(c)) return r->bpw_q;
    if (c->k || c->v) return r->kv_bits_per_value;
    if (c->act) return r->act_bits_per_value;
    return 32.0;
}

static int set_str(char **dst, const char *v, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) return -1;
    memcpy(s, v, n);
    s[n] = 0;
    free(*dst);
    *dst = s;
    return 0;
}

/* Strict decimal in [min, 2^30]; 0 on success. */
static int parse_count(const char *s, long min, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > REPORT_MAX_COUNT) return -1;
    *out = v;
    return 0;
}

static int key_is(const char *key, size_t klen, const char *name)
{
    return klen == strlen(name) && !strncmp(key, name, klen);
}

static int parse_item(report_config *c, const char *key, size_t klen, const char *v, size_t vlen, char *err,
                      size_t cap)
{
    char num[32];
    long n = 0;
    int bad = 0;
    if (key_is(key, klen, "wsort")) {
        if (vlen != 1 || (v[0] != '0' && v[0] != '1'))
            return snprintf(err, cap, "wsort='%.*s' must be 0 or 1", (int)vlen, v), -1;
        c->wsort = v[0] == '1';
        return 0;
    }
    if (key_is(key, klen, "ksort")) {
        if (!key_is(v, vlen, "weight") && !key_is(v, vlen, "calib"))
            return snprintf(err, cap, "ksort='%.*s' must be weight or calib", (int)vlen, v), -1;
        return set_str(&c->ksort, v, vlen) ? (snprintf(err, cap, "out of memory"), -1) : 0;
    }
    if (key_is(key, klen, "keep")) {
        if (vlen != 1 || (v[0] != '0' && v[0] != '1'))
            return snprintf(err, cap, "keep='%.*s' must be 0 or 1", (int)vlen, v), -1;
        c->keep = v[0] == '1';
        return 0;
    }
    if (key_is(key, klen, "window") || key_is(key, klen, "page") || key_is(key, klen, "calib_tokens")) {
        int is_win = key_is(key, klen, "window");
        if (vlen == 0 || vlen >= sizeof num) bad = 1;
        else {
            memcpy(num, v, vlen);
            num[vlen] = 0;
            bad = parse_count(num, is_win ? 0 : 1, &n);
        }
        if (bad) return snprintf(err, cap, "bad number '%.*s' for %.*s", (int)vlen, v, (int)klen, key), -1;
        *(is_win ? &c->window : key_is(key, klen, "page") ? &c->page : &c->calib_tokens) = (int)n;
        return 0;
    }
    if (vlen == 0) return snprintf(err, cap, "empty value for %.*s", (int)klen, key), -1;
    if (key_is(key, klen, "w")) bad = set_str(&c->w, v, vlen);
    else if (key_is(key, klen, "act")) bad = set_str(&c->act, v, vlen);
    else if (key_is(key, klen, "k")) bad = set_str(&c->k, v, vlen);
    else if (key_is(key, klen, "v")) bad = set_str(&c->v, v, vlen);
    else if (key_is(key, klen, "kv")) bad = set_str(&c->k, v, vlen) || set_str(&c->v, v, vlen);
    else if (key_is(key, klen, "calib")) bad = set_str(&c->calib, v, vlen);
    else if (key_is(key, klen, "depth")) bad = set_str(&c->depth, v, vlen);
    else if (key_is(key, klen, "label")) snprintf(c->label, sizeof c->label, "%.*s", (int)vlen, v);
    else if (key_is(key, klen, "tensor")) {
        if (c->n_tensor == REPORT_MAX_RULES)
            return snprintf(err, cap, "more than %d tensor rules", REPORT_MAX_RULES), -1;
        if (!memchr(v, '=', vlen)) return snprintf(err, cap, "tensor rule '%.*s' is not REGEX=SPEC", (int)vlen, v), -1;
        bad = set_str(&c->tensor[c->n_tensor], v, vlen);
        if (!bad) c->n_tensor++;
    } else
        return snprintf(err, cap,
                        "unknown key '%.*s' (w, tensor, act, kv, k, v, window, page, label, calib, "
                        "calib_tokens, depth, keep, ksort, wsort)",
                        (int)klen, key),
               -1;
    if (bad) return snprintf(err, cap, "out of memory"), -1;
    return 0;
}

static int check_spec(const char *what, const char *spec, unsigned domain, char *err, size_t cap)
{
    const kvq_codec *codec;
    kvq_params params;
    if (!spec) return 0;
    kvq_err e = kvq_spec_parse(spec, &codec, &params);
    if (e) return snprintf(err, cap, "%s '%s': %s: %s", what, spec, kvq_strerror(e), kvq_last_error_detail()), -1;
    if (!(codec->domain & domain))
        return snprintf(err, cap, "%s '%s': codec %s does not serve this domain", what, spec, codec->name), -1;
    return 0;
}

int report_config_check(const report_config *c, char *err, size_t cap)
{
    if (check_spec("w", c->w, KVQ_DOMAIN_WEIGHT, err, cap) || check_spec("act", c->act, KVQ_DOMAIN_ACT, err, cap) ||
        /* k= of a Mamba-2 model names its SSM-state codec (libkvq/mamba2.c) */
        check_spec("k", c->k, KVQ_DOMAIN_KEY | KVQ_DOMAIN_SSM, err, cap) ||
        check_spec("v", c->v, KVQ_DOMAIN_VALUE, err, cap))
        return -1;
    for (int i = 0; i < c->n_tensor; i++) {
        /* REGEX=SPEC where the spec may hold '=' too (rtn:bits=8,gran=tensor) */
        const char *spec = kvq_tensor_rule_spec(c->tensor[i]);
        if (!spec) spec = strrchr(c->tensor[i], '=') + 1; /* names the unknown codec */
        if (check_spec("tensor", spec, KVQ_DOMAIN_WEIGHT, err, cap)) return -1;
    }
    if (c->depth) {
        size_t n = strcspn(c->depth, ":");
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)n, c->depth);
        if (!kvq_depth_policy_find(name)) return snprintf(err, cap, "depth '%s': unknown depth policy", c->depth), -1;
        if (!c->k && !c->v) return snprintf(err, cap, "depth '%s' needs paged layers: set kv=, k= or v=", c->depth), -1;
    }
    /* fp:rounds=N: the evaluator fits fpa against the base's weights, not rearranged ones */
    if ((c->ksort || c->wsort) && c->w && strstr(c->w, "rounds="))
        return snprintf(err, cap, "w '%s': fp rounds cannot be combined with ksort/wsort", c->w), -1;
    return 0;
}

int report_config_set(report_config *c, const char *key, const char *value, char *err, size_t cap)
{
    return parse_item(c, key, strlen(key), value, strlen(value), err, cap);
}

int report_config_parse(const char *line, report_config *c, char *err, size_t cap)
{
    report_config_init(c);
    const char *p = line;
    size_t trimmed = strlen(line);
    while (trimmed && strchr(" \t\r\n", line[trimmed - 1])) trimmed--;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) break;
        size_t len = strcspn(p, " \t\r\n");
        const char *eq = memchr(p, '=', len);
        if (!eq) {
            snprintf(err, cap, "'%.*s' is not KEY=VALUE", (int)len, p);
            report_config_free(c);
            return -1;
        }
        if (parse_item(c, p, (size_t)(eq - p), eq + 1, len - (size_t)(eq - p) - 1, err, cap)) {
            report_config_free(c);
            return -1;
        }
        p += len;
    }
    while (*line == ' ' || *line == '\t') line++, trimmed--;
    if (!c->label[0]) snprintf(c->label, sizeof c->label, "%.*s", (int)trimmed, line);
    if (!c->label[0]) snprintf(c->label, sizeof c->label, "f32");
    return 0;
}

#define RB_INITIAL_CAP 4096 /* first allocation of a report buffer, bytes */

/* ---- growable text buffer --------------------------------------------------- */

void rb_printf(report_buf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : RB_INITIAL_CAP;
        while (cap <= b->n + (size_t)k) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void rb_free(report_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- Pareto frontier ----------------------------------------------------------- */

const char *report_group_name(int group)
{
    static const char *const names[REPORT_N_GROUPS] = {"f32", "weights", "kv", "act"};
    return group >= 0 && group < REPORT_N_GROUPS ? names[group] : "?";
}

static int config_group(const report_config *c)
{
    if (report_config_weights_changed(c)) return REPORT_GROUP_WEIGHTS;
    if (c->k || c->v) return REPORT_GROUP_KV;
    return c->act ? REPORT_GROUP_ACT : REPORT_GROUP_BASE;
}

/* Rows of group a and b are compared when equal or either is the base. */
static int comparable(int a, int b) { return a == b || a == REPORT_GROUP_BASE || b == REPORT_GROUP_BASE; }

void report_mark_pareto(report_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) rows[i].group = config_group(&rows[i].cfg);
    for (size_t i = 0; i < n; i++) {
        double xi = rows[i].x, yi = rows[i].res.s.kld_mean;
        rows[i].pareto = 1;
        for (size_t j = 0; j < n && rows[i].pareto; j++) {
            double xj = rows[j].x, yj = rows[j].res.s.kld_mean;
            if (j != i && comparable(rows[i].group, rows[j].group) && xj <= xi && yj <= yi && (xj < xi || yj < yi))
                rows[i].pareto = 0;
        }
    }
}

/* ---- JSON ------------------------------------------------------------------------ */

static void json_str(report_buf *b, const char *s)
{
    rb_printf(b, "\"");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') rb_printf(b, "\\%c", c);
        else if (c < 0x20) rb_printf(b, "\\u%04x", c);
        else rb_printf(b, "%c", c);
    }
    rb_printf(b, "\"");
}

/* Finite numbers with 9 significant digits (round-trips a float); null else. */
static void json_num(report_buf *b, double v)
{
    if (isfinite(v)) rb_printf(b, "%.9g", v);
    else rb_printf(b, "null");
}

static void json_key_num(report_buf *b, const char *k, double v, int last)
{
    rb_printf(b, "\"%s\": ", k);
    json_num(b, v);
    rb_printf(b, last ? "" : ", ");
}

static void json_key_str(report_buf *b, const char *k, const char *v, int last)
{
    rb_printf(b, "\"%s\": ", k);
    if (v) json_str(b, v);
    else rb_printf(b, "null");
    rb_printf(b, last ? "" : ", ");
}

/* "p99_9", "p99", "median", "max", "min": JSON keys of percentile levels. */
static const char *level_key(double f, char *buf, size_t cap)
{
    if (f >= 1) return "max";
    if (f <= 0) return "min";
    if (f == 0.5) return "median";
    double pct = 100.0 * f;
    if (fabs(pct - floor(pct + 0.5)) < 1e-9) snprintf(buf, cap, "p%d", (int)floor(pct + 0.5));
    else snprintf(buf, cap, "p%d_%d", (int)pct, (int)floor((pct - floor(pct)) * 10 + 0.5));
    return buf;
}

static void json_levels(report_buf *b, const char *name, const double *levels, const double *v, int n, double mean,
                        double unc)
{
    char kb[16];
    rb_printf(b, "\"%s\": {", name);
    json_key_num(b, "mean", mean, 0);
    json_key_num(b, "unc", unc, 0);
    for (int i = 0; i < n; i++) json_key_num(b, level_key(levels[i], kb, sizeof kb), v[i], i == n - 1);
    rb_printf(b, "}");
}

static void json_config(report_buf *b, const report_config *c)
{
    rb_printf(b, "\"config\": {");
    json_key_str(b, "w", c->w, 0);
    rb_printf(b, "\"tensor\": [");
    for (int i = 0; i < c->n_tensor; i++) {
        json_str(b, c->tensor[i]);
        if (i + 1 < c->n_tensor) rb_printf(b, ", ");
    }
    rb_printf(b, "], ");
    json_key_str(b, "act", c->act, 0);
    json_key_str(b, "k", c->k, 0);
    json_key_str(b, "v", c->v, 0);
    json_key_num(b, "window", c->window, 0);
    json_key_num(b, "page", c->page, 0);
    json_key_str(b, "calib", c->calib, 0);
    json_key_num(b, "calib_tokens", c->calib_tokens, 0);
    json_key_str(b, "depth", c->depth, 0);
    json_key_str(b, "ksort", c->ksort, 0);
    json_key_num(b, "wsort", c->wsort, 0);
    json_key_num(b, "keep_decoded", c->keep, 1);
    rb_printf(b, "}");
}

static void json_run(report_buf *b, const report_row *row)
{
    const kvq_eval_result *r = &row->res;
    const kvq_eval_summary *s = &r->s;
    rb_printf(b, "    {");
    json_key_str(b, "label", row->cfg.label, 0);
    json_config(b, &row->cfg);
    rb_printf(b, ",\n     \"weights\": {");
    json_key_num(b, "bytes", (double)r->weight_bytes_q, 0);
    json_key_num(b, "bits_per_weight", r->bpw_q, 1);
    rb_printf(b, "},\n     \"kv\": {");
    json_key_num(b, "bytes_per_token", r->kv_bytes_per_token, 0);
    json_key_num(b, "bits_per_value", r->kv_bits_per_value, 0);
    json_key_num(b, "ratio_vs_f32", r->kv_ratio_f32, 0);
    json_key_num(b, "ratio_vs_f16", r->kv_ratio_f16, 0);
    json_key_num(b, "retained_fraction", r->kv_retained_fraction, 1);
    rb_printf(b, "},\n     \"activations\": {");
    json_key_num(b, "bits_per_value", r->act_bits_per_value, 1);
    rb_printf(b, "},\n     ");
    json_key_num(b, "x_bits_per_value", row->x, 0);
    json_key_num(b, "scored_tokens", (double)s->n, 0);
    rb_printf(b, "\n     \"ppl\": {");
    json_key_num(b, "q", s->ppl_q, 0);
    json_key_num(b, "q_unc", s->ppl_q_unc, 0);
    json_key_num(b, "base", s->ppl_base, 0);
    json_key_num(b, "base_unc", s->ppl_base_unc, 0);
    json_key_num(b, "cor_ln", s->ln_ppl_cor, 0);
    json_key_num(b, "ln_ratio", s->ln_ratio, 0);
    json_key_num(b, "ln_ratio_unc", s->ln_ratio_unc, 0);
    json_key_num(b, "ratio", s->ppl_ratio, 0);
    json_key_num(b, "ratio_unc", s->ppl_ratio_unc, 0);
    json_key_num(b, "diff", s->ppl_diff, 0);
    json_key_num(b, "diff_unc", s->ppl_diff_unc, 1);
    rb_printf(b, "},\n     ");
    json_levels(b, "kld", kvq_eval_kld_levels(), s->kld_pct, KVQ_EVAL_N_KLD_LEVELS, s->kld_mean, s->kld_unc);
    rb_printf(b, ",\n     ");
    json_levels(b, "delta_p", kvq_eval_dp_levels(), s->dp_pct, KVQ_EVAL_N_DP_LEVELS, s->dp_mean, s->dp_unc);
    rb_printf(b, ",\n     \"rms_delta_p\": {");
    json_key_num(b, "value", s->dp_rms, 0);
    json_key_num(b, "unc", s->dp_rms_unc, 1);
    rb_printf(b, "}, \"same_top\": {");
    json_key_num(b, "value", s->same_top, 0);
    json_key_num(b, "unc", s->same_top_unc, 1);
    rb_printf(b, "},\n     \"group\": \"%s\", \"pareto\": %s, ", report_group_name(row->group),
              row->pareto ? "true" : "false");
    json_key_num(b, "seconds", r->seconds, 1);
    rb_printf(b, "}");
}

static void json_model(report_buf *b, const report_meta *m)
{
    rb_printf(b, "  \"model\": {");
    json_key_str(b, "path", m->model_path, !m->model);
    if (!m->model) { /* unit tests: no model loaded */
        rb_printf(b, "},\n");
        return;
    }
    const kvq_model_config *c = kvq_model_config_get(m->model);
    json_key_str(b, "format", kvq_format_name(kvq_model_format(m->model)), 0);
    json_key_num(b, "dim", c->dim, 0);
    json_key_num(b, "n_layers", c->n_layers, 0);
    json_key_num(b, "n_heads", c->n_heads, 0);
    json_key_num(b, "n_kv_heads", c->n_kv_heads, 0);
    json_key_num(b, "head_size", c->head_size, 0);
    json_key_num(b, "vocab_size", c->vocab_size, 0);
    json_key_num(b, "seq_len", c->seq_len, 1);
    rb_printf(b, "},\n");
}

void report_json(report_buf *b, const report_meta *m, const report_row *rows, size_t n)
{
    const kvq_eval_result *r0 = n ? &rows[0].res : NULL;
    rb_printf(b, "{\n  \"schema\": \"kvq.report/1\",\n  ");
    json_key_str(b, "kvq_version", kvq_version_string(), 1);
    rb_printf(b, ",\n");
    json_model(b, m);
    rb_printf(b, "  \"text\": {");
    json_key_str(b, "path", m->text_path, 0);
    json_key_num(b, "tokens", r0 ? (double)r0->n_text_tokens : 0, 1);
    rb_printf(b, "},\n  \"eval\": {");
    json_key_str(b, "mode",
                 "chunked (llama-perplexity): BOS starts each chunk, tokens appended to the cache one at a time, "
                 "second half scored",
                 0);
    json_key_str(b, "kl", "exact, full softmax, f32 base logits", 0);
    json_key_num(b, "ctx", r0 ? r0->ctx : 0, 0);
    json_key_num(b, "chunks", r0 ? r0->n_chunks : 0, 0);
    json_key_num(b, "threads", m->threads, 0);
    json_key_num(b, "base_bits_per_weight", r0 ? r0->bpw_base : 0, 0);
    json_key_num(b, "base_weight_bytes", r0 ? (double)r0->weight_bytes_base : 0, 0);
    json_key_num(b, "kv_bytes_per_token_f32", r0 ? r0->kv_bytes_per_token_f32 : 0, 1);
    rb_printf(b, "},\n  \"runs\": [\n");
    for (size_t i = 0; i < n; i++) {
        json_run(b, &rows[i]);
        rb_printf(b, i + 1 < n ? ",\n" : "\n");
    }
    rb_printf(b, "  ]\n}\n");
}

/* ---- Markdown -------------------------------------------------------------------- */

static const char *base_name(const char *p)
{
    const char *s = p ? strrchr(p, '/') : NULL;
    return s ? s + 1 : p ? p : "";
}

void report_markdown(report_buf *b, const report_meta *m, const report_row *rows, size_t n)
{
    const kvq_eval_result *r0 = n ? &rows[0].res : NULL;
    rb_printf(b, "# kvq report: %s on %s\n\n", base_name(m->model_path), base_name(m->text_path));
    if (m->model) {
        const kvq_model_config *c = kvq_model_config_get(m->model);
        rb_printf(b, "- model: `%s` (%s; %d layers, dim %d, %d heads / %d KV heads of %d, vocab %d, seq_len %d)\n",
                  m->model_path, kvq_format_name(kvq_model_format(m->model)), c->n_layers, c->dim, c->n_heads,
                  c->n_kv_heads, c->head_size, c->vocab_size, c->seq_len);
    }
    if (r0)
        rb_printf(b, "- text: `%s`, %llu tokens; %d chunks of %d tokens, %llu scored per run\n", m->text_path,
                  (unsigned long long)r0->n_text_tokens, r0->n_chunks, r0->ctx, (unsigned long long)r0->s.n);
    rb_printf(b, "- every run is teacher-forced on the same tokens as the f32 model; KL divergence is exact\n"
                 "  (full softmax, f32 base logits); chunks start empty with BOS, second half scored\n"
                 "  (llama-perplexity); sizes are measured bytes\n\n");
    rb_printf(b, "| config | bits/weight | KV bits/value | KV vs f16 | act bits/value | PPL | ln(PPL(Q)/PPL(base)) | "
                 "mean KLD | "
                 "median KLD | 99%% KLD | max KLD | same top | RMS Δp | Pareto |\n");
    rb_printf(b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|\n");
    for (size_t i = 0; i < n; i++) {
        const kvq_eval_result *r = &rows[i].res;
        const kvq_eval_summary *s = &r->s;
        rb_printf(b, "| `%s` | %.3f | %.3f | %.2fx | %.3f | %.4f ± %.4f | %.5f ± %.5f | %.6f ± %.6f | %.6f | %.6f "
                     "| %.6f "
                     "| %.2f%% | %.3f%% | %s |\n",
                  rows[i].cfg.label, r->bpw_q, r->kv_bits_per_value, r->kv_ratio_f16, r->act_bits_per_value, s->ppl_q,
                  s->ppl_q_unc,
                  s->ln_ratio, s->ln_ratio_unc, s->kld_mean, s->kld_unc, s->kld_pct[5], s->kld_pct[2], s->kld_pct[0],
                  100.0 * s->same_top, 100.0 * s->dp_rms, rows[i].pareto ? "yes" : "");
    }
    if (r0) rb_printf(b, "\nBase (f32) perplexity: %.4f ± %.4f.\n", r0->s.ppl_base, r0->s.ppl_base_unc);
    rb_printf(b, "\n![bits per value vs mean KL divergence](pareto.svg)\n\n"
                 "x: bits per weight for configs that change weights, else KV bits per value, else the\n"
                 "activation codec's bits per value (32 for f32); one frontier per group;\n"
                 "y: mean KL divergence (log scale; error bars ± one standard error; KL = 0 drawn at the\n"
                 "bottom edge).  Lines join the Pareto-optimal configs of each group.\n");
}

/* ---- SVG Pareto plot ------------------------------------------------------------ */

#define SVG_W 900.0             /* canvas, px                                */
#define SVG_H 560.0
#define PLOT_L 90.0             /* plot area margins, px                     */
#define PLOT_R 40.0
#define PLOT_T 70.0
#define PLOT_B 70.0
#define KLD_FLOOR_DEFAULT 1e-6  /* bottom of the y axis when no KLD is > 0   */
#define X_TICKS_TARGET 8        /* about this many x ticks                   */

typedef struct plot {
    double x0, x1;              /* x data range                              */
    double ly0, ly1;            /* log10 y range (decades)                   */
} plot;

static double px(const plot *p, double x) { return PLOT_L + (x - p->x0) / (p->x1 - p->x0) * (SVG_W - PLOT_L - PLOT_R); }

static double py(const plot *p, double y)
{
    double ly = y > 0 ? log10(y) : p->ly0;
    if (ly < p->ly0) ly = p->ly0;
    return SVG_H - PLOT_B - (ly - p->ly0) / (p->ly1 - p->ly0) * (SVG_H - PLOT_T - PLOT_B);
}

/* 1, 2 or 5 times a power of ten, so that span/step is about `target`. */
static double nice_step(double span, int target)
{
    double raw = span / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static plot plot_range(const report_row *rows, size_t n)
{
    plot p = {0, 1, log10(KLD_FLOOR_DEFAULT), 0};
    double xmax = 0, ymin = INFINITY, ymax = 0;
    for (size_t i = 0; i < n; i++) {
        const kvq_eval_summary *s = &rows[i].res.s;
        if (rows[i].x > xmax) xmax = rows[i].x;
        if (s->kld_mean > 0 && s->kld_mean < ymin) ymin = s->kld_mean;
        if (s->kld_mean + s->kld_unc > ymax) ymax = s->kld_mean + s->kld_unc;
    }
    double step = nice_step(xmax > 0 ? xmax : 1, X_TICKS_TARGET);
    p.x1 = ceil((xmax > 0 ? xmax : 1) * 1.05 / step) * step;
    if (isfinite(ymin)) p.ly0 = floor(log10(ymin)) - 1;
    p.ly1 = ymax > 0 ? ceil(log10(ymax)) : p.ly0 + 1;
    if (p.ly1 <= p.ly0) p.ly1 = p.ly0 + 1;
    return p;
}

static void svg_text(report_buf *b, double x, double y, const char *anchor, int size, const char *s)
{
    rb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\">", x, y, anchor, size);
    for (; *s; s++) {
        if (*s == '<') rb_printf(b, "&lt;");
        else if (*s == '>') rb_printf(b, "&gt;");
        else if (*s == '&') rb_printf(b, "&amp;");
        else if (*s == '"') rb_printf(b, "&quot;");
        else rb_printf(b, "%c", *s);
    }
    rb_printf(b, "</text>\n");
}

static void svg_axes(report_buf *b, const plot *p)
{
    double xl = PLOT_L, xr = SVG_W - PLOT_R, yt = PLOT_T, yb = SVG_H - PLOT_B;
    char t[32];
    rb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", xl,
              yt, xr - xl, yb - yt);
    double step = nice_step(p->x1 - p->x0, X_TICKS_TARGET);
    for (double x = p->x0; x <= p->x1 + step * 1e-9; x += step) {
        double X = px(p, x);
        rb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", X, yt, X, yb);
        snprintf(t, sizeof t, "%g", x);
        svg_text(b, X, yb + 18, "middle", 12, t);
    }
    for (double ly = p->ly0; ly <= p->ly1 + 1e-9; ly += 1) {
        double Y = py(p, pow(10, ly));
        rb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", xl, Y, xr, Y);
        snprintf(t, sizeof t, "1e%d", (int)ly);
        svg_text(b, xl - 8, Y + 4, "end", 12, t);
    }
    svg_text(b, (xl + xr) / 2, SVG_H - 28, "middle", 13,
             "bits per value (bits/weight, else KV bits/value, else activation bits/value)");
    rb_printf(b, "<text x=\"22\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" "
                 "transform=\"rotate(-90 22 %.1f)\">mean KL divergence vs f32 (nats, log scale)</text>\n",
              (yt + yb) / 2, (yt + yb) / 2);
}

static const char *const group_color[REPORT_N_GROUPS] = {"#7f7f7f", "#d62728", "#2ca02c", "#9467bd"};

/* Indices of group g's frontier (with the baseline) by increasing x, then y. */
static size_t frontier(const report_row *rows, size_t n, int g, size_t *idx)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (rows[i].pareto && comparable(rows[i].group, g)) idx[k++] = i;
    for (size_t i = 1; i < k; i++) /* insertion sort: a handful of points */
        for (size_t j = i; j > 0; j--) {
            const report_row *a = &rows[idx[j - 1]], *c = &rows[idx[j]];
            if (a->x < c->x || (a->x == c->x && a->res.s.kld_mean <= c->res.s.kld_mean)) break;
            size_t t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    return k;
}

static void svg_frontiers(report_buf *b, const plot *p, const report_row *rows, size_t n, size_t *idx)
{
    for (int g = REPORT_GROUP_WEIGHTS; g < REPORT_N_GROUPS; g++) {
        size_t k = frontier(rows, n, g, idx), own = 0;
        for (size_t i = 0; i < k; i++) own += rows[idx[i]].group == g;
        if (k < 2 || own == 0) continue;
        rb_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", group_color[g]);
        for (size_t i = 0; i < k; i++)
            rb_printf(b, "%s%.1f,%.1f", i ? " " : "", px(p, rows[idx[i]].x), py(p, rows[idx[i]].res.s.kld_mean));
        rb_printf(b, "\"/>\n");
    }
}

#define LABEL_CHAR_W 6.2  /* px per character at font-size 11 (estimate)  */
#define LABEL_LINE_H 13.0 /* px between stacked labels                     */
#define MARKER_R 5.0      /* point marker radius, px                       */

/* A label's y: the point's, moved past labels already placed that would
 * overlap it (boxes[] holds x0, x1, y of placed labels) in direction dir
 * (+1 down, -1 up). */
static double shift_label(double x0, double x1, double y, const double (*boxes)[3], size_t n_boxes, int dir)
{
    for (int moved = 1; moved;) {
        moved = 0;
        for (size_t i = 0; i < n_boxes; i++)
            if (x0 < boxes[i][1] && boxes[i][0] < x1 && fabs(y - boxes[i][2]) < LABEL_LINE_H) {
                y = boxes[i][2] + dir * LABEL_LINE_H;
                moved = 1;
            }
    }
    return y;
}

/* Down first; upwards when that would leave the plot (points at the floor). */
static double place_label(double x0, double x1, double y, const double (*boxes)[3], size_t n_boxes)
{
    double down = shift_label(x0, x1, y, boxes, n_boxes, 1);
    return down <= SVG_H - PLOT_B - 2 ? down : shift_label(x0, x1, y, boxes, n_boxes, -1);
}

static void svg_point(report_buf *b, const plot *p, const report_row *r, double (*boxes)[3], size_t *n_boxes)
{
    const kvq_eval_summary *s = &r->res.s;
    double X = px(p, r->x), Y = py(p, s->kld_mean);
    if (s->kld_unc > 0)
        rb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\"/>\n", X,
                  py(p, s->kld_mean - s->kld_unc), X, py(p, s->kld_mean + s->kld_unc));
    const char *fill = s->kld_mean <= 0 ? "white" : r->pareto ? group_color[r->group] : "#1f77b4";
    rb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.0f\" fill=\"%s\" stroke=\"#222\"/>\n", X, Y, MARKER_R,
              fill);
    char label[REPORT_LABEL_MAX + 16];
    snprintf(label, sizeof label, "%s%s", r->cfg.label, s->kld_mean <= 0 ? " (KL = 0)" : "");
    double w = LABEL_CHAR_W * (double)strlen(label), lx = X + 9;
    if (lx + w > SVG_W - 4) lx = X - 9 - w; /* keep labels inside the canvas */
    double ly = place_label(lx, lx + w, Y + 4, (const double (*)[3])boxes, *n_boxes);
    if (fabs(ly - (Y + 4)) > 1) /* moved: a leader line from the marker */
        rb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#aaa\"/>\n", X, Y,
                  lx < X ? lx + w : lx, ly - 4);
    svg_text(b, lx, ly, "start", 11, label);
    boxes[*n_boxes][0] = lx;
    boxes[*n_boxes][1] = lx + w;
    boxes[*n_boxes][2] = ly;
    (*n_boxes)++;
}

static void svg_points(report_buf *b, const plot *p, const report_row *rows, size_t n)
{
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    double (*boxes)[3] = malloc((n ? 2 * n : 1) * sizeof *boxes);
    if (!idx || !boxes) {
        free(idx);
        free(boxes);
        b->oom = 1;
        return;
    }
    svg_frontiers(b, p, rows, n, idx);
    /* Labels top to bottom so the stacking is stable. */
    for (size_t i = 0; i < n; i++) idx[i] = i;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && rows[idx[j]].res.s.kld_mean > rows[idx[j - 1]].res.s.kld_mean; j--) {
            size_t t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    /* Every marker is an obstacle for every label. */
    size_t n_boxes = n;
    for (size_t i = 0; i < n; i++) {
        double X = px(p, rows[i].x), Y = py(p, rows[i].res.s.kld_mean);
        boxes[i][0] = X - MARKER_R - 1;
        boxes[i][1] = X + MARKER_R + 1;
        boxes[i][2] = Y + 4;
    }
    for (size_t i = 0; i < n; i++) svg_point(b, p, &rows[idx[i]], boxes, &n_boxes);
    free(idx);
    free(boxes);
}

void report_svg(report_buf *b, const report_meta *m, const report_row *rows, size_t n)
{
    plot p = plot_range(rows, n);
    rb_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                 "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
              SVG_W, SVG_H, SVG_W, SVG_H);
    rb_printf(b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    char title[256];
    snprintf(title, sizeof title, "kvq report: %s, mean KL divergence vs bits per value", base_name(m->model_path));
    svg_text(b, SVG_W / 2, 28, "middle", 16, title);
    svg_text(b, SVG_W / 2, 44, "middle", 11,
             "frontiers: red = weights (x = bits/weight), green = KV cache (x = KV bits/value), "
             "purple = activations (x = codec bits/value)");
    svg_text(b, SVG_W / 2, 57, "middle", 11,
             "blue: dominated; white: KL = 0, drawn at the axis floor; bars: ± 1 s.e.");
    svg_axes(b, &p);
    svg_points(b, &p, rows, n);
    rb_printf(b, "</svg>\n");
}

/* ---- files ---------------------------------------------------------------------- */

/* mkstemp makes 0600 files; give the report the usual 0666 & ~umask. */
static int set_mode(int fd)
{
    mode_t mask = umask(0);
    umask(mask);
    return fchmod(fd, (mode_t)0666 & ~mask);
}

int report_write_file(const char *path, const report_buf *b, int force)
{
    struct stat st;
    if (!force && stat(path, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (!tmp) return -1;
    snprintf(tmp, n + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    size_t off = 0;
    int err = 0;
    while (!err && off < b->n) {
        ssize_t w = write(fd, b->p + off, b->n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) err = errno ? errno : EIO;
        else off += (size_t)w;
    }
    if (!err && set_mode(fd) != 0) err = errno;
    if (!err && fsync(fd) != 0) err = errno;
    if (close(fd) != 0 && !err) err = errno;
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) unlink(tmp);
    free(tmp);
    errno = err;
    return err ? -1 : 0;
}
