/*
 * quantize.c — the quantization driver behind `kvq quantize`: encode every
 * weight of a model with a codec chosen per tensor, measure what it cost.
 *
 * Conventions follow llama-quantize (formats-and-engines.md §5): a default
 * type for every matrix, `--tensor-type REGEX=TYPE` overrides (here POSIX
 * extended regular expressions, first matching rule wins), 1-D tensors
 * (norms) stay f32 unless a rule names them, and a tensor whose shape the
 * chosen codec cannot take (q4_0 with rows not a multiple of 32) falls back
 * to another type with a note, as llama-quantize's "required fallback
 * quantization".  Each tensor is decoded again after encoding to report
 * bits per weight, SQNR and the largest absolute error
 * (quant-methods.md §7.5 via kvq_err_stats_compute).
 *
 * Tensors are spread over pthreads: a shared counter hands out indices, so
 * large and small tensors balance; results land in per-tensor slots and
 * the output model is assembled in model order on the calling thread.
 * Encoding with the codecs f32/f16/bf16 stores plain dtype weights (their
 * payload is exactly that storage).  With calibration data (libkvq/calib.c)
 * a codec that has calibrate() is first fed its weight's layer inputs X.
 */
#include "model_internal.h"
#include "quant/fp_joint.h"

#include <pthread.h>
#include <regex.h>
#include <stdlib.h>

#define RULES_MAX      64   /* --tensor rules accepted                  */
#define THREADS_MAX    256
#define DEF_FALLBACK   "f16"

typedef struct {
    regex_t          re;
    const kvq_codec *codec;
    kvq_params       params;
} rule;

typedef struct {
    kvq_ctx  *ctx;     /* NULL: plain `dtype` storage */
    kvq_dtype dtype;
    uint8_t  *data;
    size_t    size;
} result;

typedef struct {
    const kvq_model *in;
    const rule      *rules;
    size_t           n_rules;
    const kvq_codec *def_c, *fb_c;
    kvq_params       def_p, fb_p;
    const kvq_quant_opts *opts;
    kvq_quant_stat  *st;
    result          *res;
    kvq_fpj_plan    *plan;    /* fp:rounds=N results (quant/fp_joint.c); NULL: none */
    pthread_mutex_t  mu;
    size_t           next, done;
    kvq_err          err;
    char             detail[512];
} job;

/* ---- choosing a codec ---------------------------------------------------- */
const char *kvq_tensor_rule_spec(const char *txt)
{
    if (!txt) return NULL;
    for (const char *p = strchr(txt, '='); p; p = strchr(p + 1, '=')) {
        char name[64];
        size_t k = strcspn(p + 1, ":");
        if (p == txt || k == 0 || k >= sizeof name) continue;
        memcpy(name, p + 1, k);
        name[k] = '\0';
        if (kvq_codec_find(name)) return p + 1;
    }
    return NULL;
}

static kvq_err parse_rules(const kvq_quant_opts *o, rule *r, size_t *n)
{
    *n = 0;
    KVQ_FAIL_IF(o->n_rules > RULES_MAX, KVQ_ERR_ARG, "more than %d --tensor rules", RULES_MAX);
    for (size_t i = 0; i < o->n_rules; i++) {
        const char *txt = o->rules[i], *spec = kvq_tensor_rule_spec(txt), *eq = strrchr(txt, '=');
        if (spec) eq = spec - 1;
        KVQ_FAIL_IF(!eq || eq == txt || !eq[1], KVQ_ERR_ARG, "tensor rule '%s': expected REGEX=SPEC", txt);
        KVQ_TRY(kvq_spec_parse(eq + 1, &r[i].codec, &r[i].params));
        char *re = malloc((size_t)(eq - txt) + 1);
        KVQ_FAIL_IF(!re, KVQ_ERR_NOMEM, "out of memory");
        memcpy(re, txt, (size_t)(eq - txt));
        re[eq - txt] = '\0';
        int rc = regcomp(&r[i].re, re, REG_EXTENDED | REG_NOSUB);
        free(re);
        KVQ_FAIL_IF(rc, KVQ_ERR_ARG, "tensor rule '%s': invalid regular expression", txt);
        ++*n;
    }
    return KVQ_OK;
}

/* Codec for weight w; NULL codec = keep f32. */
static void choose(const job *j, const kvq_weight *w, const kvq_codec **c, kvq_params *p)
{
    for (size_t i = 0; i < j->n_rules; i++)
        if (regexec(&j->rules[i].re, w->name, 0, NULL, 0) == 0) {
            *c = j->rules[i].codec;
            *p = j->rules[i].params;
            return;
        }
    if (w->shape.ndim == 1) {
        *c = NULL;
        return;
    }
    *c = j->def_c;
    *p = j->def_p;
}

/* ---- one tensor ------------------------------------------------------------ */
/* The calibration sample of weight w for codec c: *x = its linear input
 * when calibration data is given and c learns from it; x->data NULL when
 * none applies.  A codec that needs calibration fails without it. */
static kvq_err calib_sample(const job *j, const kvq_weight *w, const kvq_codec *c, kvq_tensor *x)
{
    memset(x, 0, sizeof *x);
    if (!c->calibrate) return KVQ_OK;
    kvq_err e = j->opts->calib ? kvq_calib_for_weight(j->opts->calib, w->name, x) : KVQ_ERR_NOT_FOUND;
    if (e == KVQ_ERR_NOT_FOUND) {
        x->data = NULL;
        KVQ_FAIL_IF(c->flags & KVQ_FLAG_NEEDS_CALIB, KVQ_ERR_ARG,
                    "codec %s needs calibration data (--calib FILE) for this tensor", c->name);
        return KVQ_OK;
    }
    return e;
}

static kvq_err encode_with(const kvq_codec *c, const kvq_params *p, const kvq_tensor *cal, const kvq_tensor *src,
                           const kvq_fpj_plan *plan, size_t wi, result *r)
{
    kvq_ctx *ctx;
    KVQ_TRY(kvq_ctx_create_params(c, p, &ctx));
    size_t cap = kvq_ctx_payload_bound(ctx, &src->shape), n = 0;
    kvq_err e = cal && cal->data ? kvq_ctx_calibrate(ctx, cal) : KVQ_OK;
    if (!e) e = kvq_fpj_plan_apply(plan, wi, ctx);
    if (!e && !cap && kvq_shape_numel(&src->shape))
        e = KVQ_ERROR(KVQ_ERR_SHAPE, "codec %s cannot encode this shape", c->name);
    uint8_t *buf = e ? NULL : malloc(cap ? cap : 1);
    if (!e && !buf) e = KVQ_ERROR(KVQ_ERR_NOMEM, "out of memory for %zu bytes", cap);
    if (!e) e = kvq_ctx_encode_payload(ctx, src, buf, cap, &n);
    if (e) {
        free(buf);
        kvq_ctx_free(ctx);
        return e;
    }
    r->data = buf;
    r->size = n;
    /* The float codecs' payload is plain little-endian storage. */
    const kvq_ggml_type *gt = kvq_ggml_type_by_name(c->name);
    if (gt && gt->plain) {
        r->ctx = NULL;
        r->dtype = gt->dtype;
        kvq_ctx_free(ctx);
    } else {
        r->ctx = ctx;
    }
    return KVQ_OK;
}

static kvq_err measure(const kvq_weight *w, const float *x, const result *r, kvq_quant_stat *st)
{
    size_t n = (size_t)kvq_shape_numel(&w->shape);
    float *y = malloc(n ? n * sizeof *y : 1);
    KVQ_FAIL_IF(!y, KVQ_ERR_NOMEM, "out of memory");
    kvq_weight tmp = {w->name, w->shape, r->dtype, r->ctx, r->data, r->size};
    kvq_err e = kvq_weight_rows(&tmp, 0, kvq_shape_rows(&w->shape), y);
    if (!e) {
        kvq_err_stats s = kvq_err_stats_compute(x, y, n);
        st->sqnr_db = s.sqnr_db;
        st->max_abs_err = s.max_abs;
        st->bytes_out = r->size;
        st->bpw = kvq_weight_bits(&tmp);
        kvq_weight_type_name(&tmp, st->dst_type, sizeof st->dst_type);
    }
    free(y);
    return e;
}

static kvq_err do_tensor(job *j, size_t i)
{
    const kvq_weight *w = &j->in->w[i];
    kvq_quant_stat *st = &j->st[i];
    result *r = &j->res[i];
    size_t n = (size_t)kvq_shape_numel(&w->shape);
    st->name = w->name;
    st->shape = w->shape;
    st->bytes_in = w->size;
    kvq_weight_type_name(w, st->src_type, sizeof st->src_type);
    float *x = malloc(n ? n * sizeof *x : 1);
    KVQ_FAIL_IF(!x, KVQ_ERR_NOMEM, "%s: out of memory for %zu values", w->name, n);
    kvq_err e = kvq_weight_rows(w, 0, kvq_shape_rows(&w->shape), x);
    const kvq_codec *c;
    kvq_params p;
    choose(j, w, &c, &p);
    if (!c) {
        c = kvq_codec_find("f32");
        p = kvq_params_default(c);
    }
    kvq_tensor src = kvq_tensor_view(KVQ_DTYPE_F32, x, w->shape.ndim, w->shape.dim), cal;
    if (!e) e = calib_sample(j, w, c, &cal);
    if (!e) e = encode_with(c, &p, &cal, &src, j->plan, i, r);
    if (e == KVQ_ERR_SHAPE && c != j->fb_c) {
        snprintf(st->note, sizeof st->note, "fell back to %s: %s", j->fb_c->name, kvq_last_error_detail());
        st->fallback = 1;
        e = calib_sample(j, w, j->fb_c, &cal);
        if (!e) e = encode_with(j->fb_c, &j->fb_p, &cal, &src, NULL, i, r);
    }
    if (!e) e = measure(w, x, r, st);
    if (e) kvq_error_prefix(w->name);
    free(x);
    return e;
}

static void *worker(void *arg)
{
    job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        size_t i = j->next++;
        int stop = j->err != KVQ_OK || i >= j->in->n_w;
        pthread_mutex_unlock(&j->mu);
        if (stop) return NULL;
        kvq_err e = do_tensor(j, i);
        pthread_mutex_lock(&j->mu);
        if (e && !j->err) {
            j->err = e;
            snprintf(j->detail, sizeof j->detail, "%s", kvq_last_error_detail());
        }
        j->done++;
        if (!e && j->opts->progress) j->opts->progress(j->opts->opaque, j->done, j->in->n_w);
        pthread_mutex_unlock(&j->mu);
    }
}

/* ---- the driver -------------------------------------------------------------- */
/* With calibration data, weights whose codec is fp with rounds > 0 are
 * searched jointly with the activation codec first (quant/fp_joint.c). */
static kvq_err joint_plan(job *j)
{
    size_t n = j->in->n_w;
    if (!j->opts->calib || !n) return KVQ_OK;
    const kvq_codec **cs = calloc(n, sizeof *cs);
    kvq_params *ps = calloc(n, sizeof *ps);
    kvq_err e = !cs || !ps ? KVQ_ERROR(KVQ_ERR_NOMEM, "out of memory") : KVQ_OK;
    for (size_t i = 0; !e && i < n; i++) choose(j, &j->in->w[i], &cs[i], &ps[i]);
    if (!e) e = kvq_fpj_plan_create(j->in, j->opts->calib, cs, ps, j->opts->act_spec, &j->plan);
    free(cs);
    free(ps);
    return e;
}

static kvq_err run_threads(job *j, int n_threads)
{
    pthread_t th[THREADS_MAX];
    int n = n_threads < 1 ? 1 : n_threads > THREADS_MAX ? THREADS_MAX : n_threads, started = 0;
    if ((size_t)n > j->in->n_w) n = j->in->n_w ? (int)j->in->n_w : 1;
    for (int t = 1; t < n; t++, started++)
        if (pthread_create(&th[t - 1], NULL, worker, j) != 0) break;
    worker(j);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    if (j->err) return KVQ_ERROR(j->err, "%s", j->detail);
    return KVQ_OK;
}

static kvq_err assemble(const kvq_model *in, const kvq_quant_opts *o, result *res, kvq_model *out)
{
    out->cfg = in->cfg;
    out->version = 1;
    for (size_t i = 0; i < in->n_meta; i++) KVQ_TRY(kvq_model_add_meta(out, in->meta[i].key, in->meta[i].value));
    if (in->tok) KVQ_TRY(kvq_model_set_tokenizer(out, in->tok, in->tok_n));
    char recipe[1024];
    size_t k = (size_t)snprintf(recipe, sizeof recipe, "%s", o->spec);
    for (size_t i = 0; i < o->n_rules && k < sizeof recipe; i++)
        k += (size_t)snprintf(recipe + k, sizeof recipe - k, " %s", o->rules[i]);
    if (!kvq_model_meta_get(out, "kvq.source_format"))
        KVQ_TRY(kvq_model_add_meta(out, "kvq.source_format", kvq_format_name(in->format)));
    KVQ_TRY(kvq_model_add_meta(out, "kvq.recipe", recipe));
    for (size_t i = 0; i < in->n_w; i++) {
        result *r = &res[i];
        kvq_err e = kvq_model_own(out, r->data);
        kvq_ctx *ctx = r->ctx;
        r->data = NULL, r->ctx = NULL;
        if (e) {
            kvq_ctx_free(ctx);
            return e;
        }
        KVQ_TRY(kvq_model_add(out, in->w[i].name, &in->w[i].shape, r->dtype, ctx, out->owned[out->n_owned - 1],
                              r->size));
    }
    return KVQ_OK;
}

static kvq_err setup(job *j, const kvq_model *in, const kvq_quant_opts *o, rule *rules)
{
    memset(j, 0, sizeof *j);
    j->in = in;
    j->opts = o;
    j->rules = rules;
    KVQ_FAIL_IF(!o->spec, KVQ_ERR_ARG, "quantize: no codec spec");
    KVQ_TRY(kvq_spec_parse(o->spec, &j->def_c, &j->def_p));
    KVQ_TRY(kvq_spec_parse(o->fallback_spec ? o->fallback_spec : DEF_FALLBACK, &j->fb_c, &j->fb_p));
    KVQ_TRY(parse_rules(o, rules, &j->n_rules));
    j->st = calloc(in->n_w ? in->n_w : 1, sizeof *j->st);
    j->res = calloc(in->n_w ? in->n_w : 1, sizeof *j->res);
    KVQ_FAIL_IF(!j->st || !j->res, KVQ_ERR_NOMEM, "out of memory");
    return KVQ_OK;
}

kvq_err kvq_model_quantize(const kvq_model *in, const kvq_quant_opts *o, kvq_model **out, kvq_quant_stat **stats)
{
    KVQ_FAIL_IF(!in || !o || !out, KVQ_ERR_ARG, "kvq_model_quantize: NULL argument");
    *out = NULL;
    if (stats) *stats = NULL;
    job j;
    rule rules[RULES_MAX];
    kvq_model *m = NULL;
    kvq_err e = setup(&j, in, o, rules);
    if (!e) e = joint_plan(&j);
    if (!e) e = pthread_mutex_init(&j.mu, NULL) ? KVQ_ERROR(KVQ_ERR_NOMEM, "mutex init failed") : KVQ_OK;
    if (!e) {
        e = run_threads(&j, o->n_threads);
        pthread_mutex_destroy(&j.mu);
    }
    if (!e) e = kvq_model_new(KVQ_FORMAT_KVQ, &m);
    if (!e) e = assemble(in, o, j.res, m);
    for (size_t i = 0; j.res && i < in->n_w; i++) {
        free(j.res[i].data);
        kvq_ctx_free(j.res[i].ctx);
    }
    for (size_t i = 0; i < j.n_rules; i++) regfree(&rules[i].re);
    kvq_fpj_plan_free(j.plan);
    free(j.res);
    if (e) {
        kvq_model_free(m);
        free(j.st);
        return e;
    }
    *out = m;
    if (stats) *stats = j.st;
    else free(j.st);
    return KVQ_OK;
}
