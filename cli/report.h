/*
 * report.h — what `kvq eval` and `kvq report` share: candidate
 * configurations (the spec-line grammar), loading the model/text/tokens,
 * building a candidate model, and the writers (llama-perplexity-style
 * text block, JSON, Markdown, SVG Pareto plot).  Uses only kvq.h.
 * Configs and the writers live in report.c (no CLI dependencies, so the
 * unit test compiles it); loading and the text block in cmd_eval.c.
 */
#ifndef KVQ_CLI_REPORT_H
#define KVQ_CLI_REPORT_H

#include "kvq.h"

#include <stdio.h>

#define REPORT_MAX_RULES 16     /* --tensor / tensor= rules per config      */
#define REPORT_LABEL_MAX 160
#define REPORT_MAX_COUNT (1L << 30) /* largest window= / page= value */
#define REPORT_DEFAULT_KV_WINDOW 0  /* eval: every full page goes through the codec */
#define REPORT_DEFAULT_KV_PAGE 16   /* eval: vLLM's default block size          */

/* One candidate.  Grammar of a spec line (docs/report-schema.md):
 *   line  := item (WS item)*            items separated by spaces/tabs
 *   item  := w=SPEC | tensor=REGEX=SPEC | act=SPEC | kv=SPEC | k=SPEC |
 *            v=SPEC | window=N | page=N | label=TEXT | calib=FILE |
 *            calib_tokens=N | depth=NAME[:ARG] | keep=0|1 |
 *            ksort=weight|calib | wsort=0|1
 * kv=SPEC sets both k and v.  SPEC is a codec spec (NAME[:K=V,...]).
 * Missing parts stay f32 (the base model's weights, no activation codec,
 * an f32 cache).  The label defaults to the line itself. */
typedef struct report_config {
    char  label[REPORT_LABEL_MAX];
    char *w;                              /* weight codec spec or NULL     */
    char *tensor[REPORT_MAX_RULES];       /* "REGEX=SPEC"                  */
    int   n_tensor;
    char *act, *k, *v;                    /* NULL: none / f32              */
    int   window, page;                   /* KV window and page            */
    char *calib;                          /* calibration text or NULL      */
    int   calib_tokens;                   /* 0: KVQ_CALIB_TOKENS_DEFAULT   */
    char *depth;                          /* KV depth policy "NAME[:ARG]"  */
    int   keep;                           /* 1: cache keeps decoded pages  */
    char *ksort;                          /* K-sort key "weight" / "calib" */
    int   wsort;                          /* 1: FFN hidden + V channels sorted
                                             for weight blocks (ksort.c)   */
    const kvq_calib *cal;                 /* runtime: data made from calib
                                             (not owned), used by
                                             report_candidate / eval_opts */
} report_config;

/* report_config_init() : an all-f32 config with the eval KV defaults. */
void report_config_init(report_config *c);
/* report_config_parse() : one spec line; 0 on success, else -1 with a
 * message in err[cap]. */
int report_config_parse(const char *line, report_config *c, char *err, size_t cap);
void report_config_free(report_config *c);
/* report_config_set() : one item (key w, tensor, act, kv, k, v, window,
 * page or label); 0, or -1 with a message in err[cap]. */
int report_config_set(report_config *c, const char *key, const char *value, char *err, size_t cap);
/* report_config_check() : every codec spec parses and names a codec that
 * serves its domain (weights, activations, key, value); tensor rules hold
 * a spec after the last '='.  0, or -1 with a message in err[cap]. */
int report_config_check(const report_config *c, char *err, size_t cap);
/* report_config_weights_changed() : 1 when w or tensor rules are set. */
int report_config_weights_changed(const report_config *c);
/* report_config_x() : the Pareto plot's x: bits per weight when the config
 * sets weights, else KV bits per value when it sets K/V codecs, else the
 * activation codec's bits per value when it sets one, else 32. */
double report_config_x(const report_config *c, const kvq_eval_result *r);

/* report_load_tokens() : tokenizer (-z path or the model's own) and the
 * text file encoded with BOS; *tokens malloc'd.  Returns an exit code;
 * prints errors. */
int report_load_tokens(const kvq_model *m, const char *model_path, const char *tok_path,
                       const char *text_path, int **tokens, size_t *n);
/* report_load_calib() : tokens of the text file at `path` (tokenizer as
 * report_load_tokens) run through m by kvq_calib_create (max_tokens <= 0:
 * the default).  Returns an exit code; prints errors. */
int report_load_calib(const kvq_model *m, const char *model_path, const char *tok_path, const char *path,
                      int max_tokens, int threads, kvq_calib **out);
/* report_candidate() : *out = the quantized model for c's weights, or NULL
 * when c leaves the weights as they are (use the base).  Returns kvq_err. */
kvq_err report_candidate(const kvq_model *base, const report_config *c, int threads, kvq_model **out);
/* report_eval_opts() : kvq_eval_opts for c (act, kv). */
void report_eval_opts(const report_config *c, kvq_eval_opts *o);

/* ---- writers ---------------------------------------------------------- */
typedef struct report_buf {
    char  *p;
    size_t n, cap;
    int    oom;                /* set when an append failed               */
} report_buf;
void rb_printf(report_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rb_free(report_buf *b);

/* The llama-perplexity-like final block (quant-methods.md §7.3). */
void report_print_block(FILE *f, const report_config *c, const kvq_eval_result *r);

/* Header facts of a report. */
typedef struct report_meta {
    const char *model_path, *text_path;
    const kvq_model *model;
    int threads;
} report_meta;

/* One evaluated row. */
typedef struct report_row {
    report_config    cfg;
    kvq_eval_result  res;
    double           x;       /* report_config_x                         */
    int              group;   /* REPORT_GROUP_* (report_mark_pareto)     */
    int              pareto;  /* on its group's frontier                 */
} report_row;

/* Frontier groups: bits per weight and KV bits per value are different
 * axes, so configs are compared within their group; the all-f32 baseline
 * belongs to every group. */
enum { REPORT_GROUP_BASE = 0, REPORT_GROUP_WEIGHTS = 1, REPORT_GROUP_KV = 2, REPORT_GROUP_ACT = 3, REPORT_N_GROUPS = 4 };
const char *report_group_name(int group);
/* report_mark_pareto() : sets rows[i].group, and rows[i].pareto for the
 * points that no row of the same group (or the baseline) beats on both x
 * and mean KLD (lower is better on both; ties kept). */
void report_mark_pareto(report_row *rows, size_t n);
/* JSON (schema kvq.report/1; one run when n = 1 for kvq eval --json). */
void report_json(report_buf *b, const report_meta *m, const report_row *rows, size_t n);
void report_markdown(report_buf *b, const report_meta *m, const report_row *rows, size_t n);
void report_svg(report_buf *b, const report_meta *m, const report_row *rows, size_t n);
/* report_write_file() : temp file in the same directory + fsync + rename;
 * refuses an existing path unless force.  0 on success, else -1 with
 * errno set (EEXIST for a refused overwrite); prints nothing. */
int report_write_file(const char *path, const report_buf *b, int force);

#endif /* KVQ_CLI_REPORT_H */
