/*
 * cmd_bench_decode.c — `kvq bench decode MODEL`: prompt-processing and
 * generation speed of the reference decoder, and, measured in the same
 * run over the same tokens, a plain single-file baseline written the way
 * llama2.c run.c is (naive loops, one running sum per dot product, its own
 * f32 weight copies and K/V arrays).  The target is generation
 * speed ≥ 1.0× this baseline at the same thread count (aim 1.5×).
 *
 * Both decoders run greedy from BOS for N steps (BOS predictions do not
 * stop the bench); the baseline's token sequence is compared with ours, so
 * the bench also says whether the two agree.  Each figure is the best of
 * --reps runs.  The same run then quantizes the weights in memory with
 * --quant SPEC (default q4_0; "none" skips it) and measures our decoder
 * again, so the quantized matmul (the kernel dot slot, kernels/kernels.h)
 * is compared with f32 weights on the same model and tokens.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TOKENS 512  /* issue 3: stories260K over 512 tokens */
#define DEFAULT_REPS   5
#define MAX_THREADS    256
#define DEFAULT_QUANT  "q4_0"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the run.c-style baseline -------------------------------------------------- */
typedef struct {
    kvq_model_config c;
    float *emb, *cls, *final_norm;          /* (vocab, dim), (vocab, dim), (dim) */
    float *att_norm, *ffn_norm;             /* (layer, dim)                      */
    float *wq, *wk, *wv, *wo;               /* (layer, out, in)                  */
    float *w1, *w2, *w3;
    float *x, *xb, *xb2, *hb, *hb2, *q, *att, *logits;
    float *kc, *vc;                         /* (layer, seq, kv_dim)              */
} base_model;

/* Weights of one kind, every layer back to back ("attn_q" → blk.N.attn_q.weight;
 * layers 0: a global tensor named `kind`). */
static float *load_all(const kvq_model *m, const char *kind, int layers, size_t per, kvq_err *e)
{
    int n = layers ? layers : 1;
    float *p = malloc((size_t)n * per * sizeof *p);
    if (!p && !*e) *e = KVQ_ERR_NOMEM;
    for (int l = 0; l < n && !*e; l++) {
        char name[64];
        if (layers) snprintf(name, sizeof name, "blk.%d.%s.weight", l, kind);
        else snprintf(name, sizeof name, "%s", kind);
        const kvq_weight *w = kvq_model_weight(m, name);
        if (!w && !strcmp(name, "output.weight")) w = kvq_model_weight(m, "token_embd.weight");
        *e = !w ? KVQ_ERR_NOT_FOUND : kvq_weight_rows(w, 0, kvq_shape_rows(&w->shape), p + (size_t)l * per);
    }
    return p;
}

static void base_free(base_model *b)
{
    float *all[] = {b->emb, b->cls, b->final_norm, b->att_norm, b->ffn_norm, b->wq, b->wk, b->wv, b->wo,
                    b->w1, b->w2, b->w3, b->x, b->xb, b->xb2, b->hb, b->hb2, b->q, b->att, b->logits,
                    b->kc, b->vc};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

static kvq_err base_load(const kvq_model *m, base_model *b)
{
    memset(b, 0, sizeof *b);
    b->c = *kvq_model_config_get(m);
    const kvq_model_config *c = &b->c;
    size_t dim = (size_t)c->dim, hid = (size_t)c->hidden_dim, kv = (size_t)(c->n_kv_heads * c->head_size);
    int L = c->n_layers;
    kvq_err e = KVQ_OK;
    b->emb = load_all(m, "token_embd.weight", 0, (size_t)c->vocab_size * dim, &e);
    b->cls = load_all(m, "output.weight", 0, (size_t)c->vocab_size * dim, &e);
    b->final_norm = load_all(m, "output_norm.weight", 0, dim, &e);
    b->att_norm = load_all(m, "attn_norm", L, dim, &e);
    b->ffn_norm = load_all(m, "ffn_norm", L, dim, &e);
    b->wq = load_all(m, "attn_q", L, dim * dim, &e);
    b->wk = load_all(m, "attn_k", L, kv * dim, &e);
    b->wv = load_all(m, "attn_v", L, kv * dim, &e);
    b->wo = load_all(m, "attn_output", L, dim * dim, &e);
    b->w1 = load_all(m, "ffn_gate", L, hid * dim, &e);
    b->w2 = load_all(m, "ffn_down", L, dim * hid, &e);
    b->w3 = load_all(m, "ffn_up", L, hid * dim, &e);
    if (e) return e;
    b->x = calloc(dim, 4), b->xb = calloc(dim, 4), b->xb2 = calloc(dim, 4);
    b->hb = calloc(hid, 4), b->hb2 = calloc(hid, 4), b->q = calloc(dim, 4);
    b->att = calloc((size_t)c->n_heads * (size_t)c->seq_len, 4);
    b->logits = calloc((size_t)c->vocab_size, 4);
    b->kc = calloc((size_t)L * (size_t)c->seq_len * kv, 4);
    b->vc = calloc((size_t)L * (size_t)c->seq_len * kv, 4);
    if (!b->x || !b->xb || !b->xb2 || !b->hb || !b->hb2 || !b->q || !b->att || !b->logits || !b->kc || !b->vc)
        return KVQ_ERR_NOMEM;
    return KVQ_OK;
}

static void base_rmsnorm(float *o, const float *x, const float *w, int n, float eps)
{
    float ss = 0.0f;
    for (int j = 0; j < n; j++) ss += x[j] * x[j];
    ss = 1.0f / sqrtf(ss / (float)n + eps);
    for (int j = 0; j < n; j++) o[j] = w[j] * (ss * x[j]);
}

static void base_softmax(float *x, int n)
{
    float max = x[0], sum = 0.0f;
    for (int i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    for (int i = 0; i < n; i++) sum += (x[i] = expf(x[i] - max));
    for (int i = 0; i < n; i++) x[i] /= sum;
}

static void base_matmul(float *out, const float *x, const float *w, int n, int d)
{
    for (int i = 0; i < d; i++) {
        float val = 0.0f;
        for (int j = 0; j < n; j++) val += w[(size_t)i * (size_t)n + (size_t)j] * x[j];
        out[i] = val;
    }
}

static void base_attention(base_model *b, int l, int pos)
{
    const kvq_model_config *c = &b->c;
    int hs = c->head_size, kv_dim = c->n_kv_heads * hs, kv_mul = c->n_heads / c->n_kv_heads;
    size_t loff = (size_t)l * (size_t)c->seq_len * (size_t)kv_dim;
    for (int h = 0; h < c->n_heads; h++) {
        const float *q = b->q + h * hs;
        float *att = b->att + (size_t)h * (size_t)c->seq_len, *xb = b->xb + h * hs;
        for (int t = 0; t <= pos; t++) {
            const float *k = b->kc + loff + (size_t)t * (size_t)kv_dim + (size_t)(h / kv_mul * hs);
            float score = 0.0f;
            for (int i = 0; i < hs; i++) score += q[i] * k[i];
            att[t] = score / sqrtf((float)hs);
        }
        base_softmax(att, pos + 1);
        memset(xb, 0, (size_t)hs * sizeof *xb);
        for (int t = 0; t <= pos; t++) {
            const float *v = b->vc + loff + (size_t)t * (size_t)kv_dim + (size_t)(h / kv_mul * hs);
            for (int i = 0; i < hs; i++) xb[i] += att[t] * v[i];
        }
    }
}

static void base_rope(const base_model *b, float *k, int pos)
{
    const kvq_model_config *c = &b->c;
    int hs = c->head_size, kv_dim = c->n_kv_heads * hs;
    for (int i = 0; i < c->dim; i += 2) {
        float freq = 1.0f / powf(c->rope_theta, (float)(i % hs) / (float)hs), val = (float)pos * freq;
        float fcr = cosf(val), fci = sinf(val);
        for (int v = 0; v < (i < kv_dim ? 2 : 1); v++) {
            float *vec = v == 0 ? b->q : k, v0 = vec[i], v1 = vec[i + 1];
            vec[i] = v0 * fcr - v1 * fci;
            vec[i + 1] = v0 * fci + v1 * fcr;
        }
    }
}

static float *base_forward(base_model *b, int token, int pos)
{
    const kvq_model_config *c = &b->c;
    int dim = c->dim, hid = c->hidden_dim, kv_dim = c->n_kv_heads * c->head_size;
    memcpy(b->x, b->emb + (size_t)token * (size_t)dim, (size_t)dim * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        size_t ld = (size_t)l * (size_t)dim, lkv = (size_t)l * (size_t)kv_dim * (size_t)dim;
        size_t lh = (size_t)l * (size_t)hid * (size_t)dim;
        float *k = b->kc + ((size_t)l * (size_t)c->seq_len + (size_t)pos) * (size_t)kv_dim;
        float *v = b->vc + ((size_t)l * (size_t)c->seq_len + (size_t)pos) * (size_t)kv_dim;
        base_rmsnorm(b->xb, b->x, b->att_norm + ld, dim, c->norm_eps);
        base_matmul(b->q, b->xb, b->wq + ld * (size_t)dim, dim, dim);
        base_matmul(k, b->xb, b->wk + lkv, dim, kv_dim);
        base_matmul(v, b->xb, b->wv + lkv, dim, kv_dim);
        base_rope(b, k, pos);
        base_attention(b, l, pos);
        base_matmul(b->xb2, b->xb, b->wo + ld * (size_t)dim, dim, dim);
        for (int i = 0; i < dim; i++) b->x[i] += b->xb2[i];
        base_rmsnorm(b->xb, b->x, b->ffn_norm + ld, dim, c->norm_eps);
        base_matmul(b->hb, b->xb, b->w1 + lh, dim, hid);
        base_matmul(b->hb2, b->xb, b->w3 + lh, dim, hid);
        for (int i = 0; i < hid; i++) b->hb[i] = b->hb[i] / (1.0f + expf(-b->hb[i])) * b->hb2[i];
        base_matmul(b->xb, b->hb, b->w2 + lh, hid, dim);
        for (int i = 0; i < dim; i++) b->x[i] += b->xb[i];
    }
    base_rmsnorm(b->x, b->x, b->final_norm, dim, c->norm_eps);
    base_matmul(b->logits, b->x, b->cls, dim, c->vocab_size);
    return b->logits;
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* ---- timing -------------------------------------------------------------------- */
/* Greedy from BOS for n steps; tokens[n] receives the sequence. */
static kvq_err run_ours(kvq_decoder *d, int n, int *tokens, double *secs)
{
    kvq_err e = kvq_decoder_reset(d);
    if (e) return e;
    int tok = KVQ_TOKEN_BOS;
    double t0 = now_s();
    for (int pos = 0; pos < n; pos++) {
        float *lg;
        if ((e = kvq_decoder_forward(d, tok, pos, &lg))) return e;
        tokens[pos] = tok = argmax(lg, kvq_decoder_config(d)->vocab_size);
    }
    *secs = now_s() - t0;
    return KVQ_OK;
}

static double run_base(base_model *b, int n, int *tokens)
{
    int tok = KVQ_TOKEN_BOS;
    double t0 = now_s();
    for (int pos = 0; pos < n; pos++) tokens[pos] = tok = argmax(base_forward(b, tok, pos), b->c.vocab_size);
    return now_s() - t0;
}

static kvq_err run_prompt(kvq_decoder *d, const int *tokens, int n, double *secs)
{
    kvq_err e = kvq_decoder_reset(d);
    if (e) return e;
    double t0 = now_s();
    e = kvq_decoder_forward_seq(d, tokens, n, 0, NULL);
    *secs = now_s() - t0;
    return e;
}

typedef struct {
    const char *model, *quant;
    long n, threads, reps;
    int cuda;                 /* --device cuda: cli/cmd_bench_device.c */
} bench_args;

static int parse(int argc, char **argv, bench_args *a)
{
    *a = (bench_args){NULL, DEFAULT_QUANT, 0, 1, DEFAULT_REPS, 0};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            printf("usage: kvq bench decode MODEL [-n TOKENS (default min(512, seq_len))] [--threads T]\n"
                   "                              [--reps R (default %d)] [--quant SPEC|none (default %s)]\n"
                   "                              [--device cpu|cuda]\n"
                   "  prompt-processing and generation tok/s, and generation against a plain\n"
                   "  run.c-style C forward pass over the same tokens in the same run; then\n"
                   "  the same with the weights quantized by SPEC\n"
                   "  --device cuda: one token's matmuls on the GPU (f32 cuBLAS vs SPEC = q8_0|q4_0\n"
                   "  GEMV), best of --reps tokens\n", DEFAULT_REPS, DEFAULT_QUANT);
            return CLI_EXIT_OK;
        }
        if (!strcmp(o, "--device")) {
            if (i + 1 >= argc || (strcmp(argv[i + 1], "cpu") && strcmp(argv[i + 1], "cuda")))
                return cli_usage_error("bench decode", "--device wants cpu or cuda");
            a->cuda = !strcmp(argv[++i], "cuda");
            continue;
        }
        if (!strcmp(o, "--quant")) {
            if (i + 1 >= argc) return cli_usage_error("bench decode", "missing value for --quant");
            a->quant = argv[++i];
            continue;
        }
        long *dst = !strcmp(o, "-n") ? &a->n : !strcmp(o, "--threads") ? &a->threads
                  : !strcmp(o, "--reps") ? &a->reps : NULL;
        if (dst) {
            if (i + 1 >= argc || cli_parse_int(argv[++i], 1, dst == &a->threads ? MAX_THREADS : 1L << 30, dst))
                return cli_usage_error("bench decode", "bad or missing value for %s", o);
        } else if (o[0] != '-' && !a->model) {
            a->model = o;
        } else {
            return cli_usage_error("bench decode", "unexpected argument '%s'", o);
        }
    }
    if (!a->model) return cli_usage_error("bench decode", "no MODEL given");
    return -1;
}

typedef struct {
    double pp, gen, base;       /* best seconds over the reps */
    int agree;                  /* greedy tokens identical     */
} bench_result;

static int measure(const bench_args *a, kvq_model *m, int n, bench_result *r)
{
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    o.threads = (int)a->threads;
    kvq_decoder *d = NULL;
    base_model b = {0};
    int *ours = malloc((size_t)n * sizeof *ours), *theirs = malloc((size_t)n * sizeof *theirs);
    kvq_err e = !ours || !theirs ? KVQ_ERR_NOMEM : kvq_decoder_create(m, &o, &d);
    if (!e) e = base_load(m, &b);
    *r = (bench_result){INFINITY, INFINITY, INFINITY, 1};
    for (long rep = 0; rep < a->reps && !e; rep++) {
        double t;
        if ((e = run_ours(d, n, ours, &t))) break;
        r->gen = fmin(r->gen, t);
        /* prompt processing: teacher-force the generated sequence */
        if ((e = run_prompt(d, ours, n, &t))) break;
        r->pp = fmin(r->pp, t);
        r->base = fmin(r->base, run_base(&b, n, theirs));
        r->agree &= !memcmp(ours, theirs, (size_t)n * sizeof *ours);
    }
    base_free(&b);
    kvq_decoder_free(d);
    free(ours);
    free(theirs);
    return e ? cli_error(a->model, e) : CLI_EXIT_OK;
}

/* Our decoder over m's weights quantized by spec: best prompt and
 * generation seconds over the reps. */
static int measure_quant(const bench_args *a, kvq_model *m, int n, double *pp, double *gen)
{
    kvq_quant_opts qo = {0};
    kvq_quant_stat *st = NULL;
    kvq_model *q = NULL;
    qo.spec = a->quant;
    kvq_err e = kvq_model_quantize(m, &qo, &q, &st);
    free(st);
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    o.threads = (int)a->threads;
    kvq_decoder *d = NULL;
    int *toks = malloc((size_t)n * sizeof *toks);
    if (!e) e = !toks ? KVQ_ERR_NOMEM : kvq_decoder_create(q, &o, &d);
    *pp = *gen = INFINITY;
    for (long rep = 0; rep < a->reps && !e; rep++) {
        double t;
        if ((e = run_ours(d, n, toks, &t))) break;
        *gen = fmin(*gen, t);
        if ((e = run_prompt(d, toks, n, &t))) break;
        *pp = fmin(*pp, t);
    }
    kvq_decoder_free(d);
    kvq_model_free(q);
    free(toks);
    return e ? cli_error(a->quant, e) : CLI_EXIT_OK;
}

int kvq_bench_decode(int argc, char **argv)
{
    bench_args a;
    int rc = parse(argc, argv, &a);
    if (rc >= 0) return rc;
    char device[2];
    kvq_err e = a.cuda ? kvq_cuda_device(device, sizeof device) : KVQ_OK; /* no device: say so before loading */
    if (e) return cli_error("bench decode --device cuda", e);
    kvq_model *m = NULL;
    e = kvq_model_load(a.model, &m);
    if (e) return cli_error(a.model, e);
    if (a.cuda) {
        rc = kvq_bench_decode_cuda(m, a.model, a.quant, (int)a.reps);
        kvq_model_free(m);
        return rc;
    }
    const kvq_model_config *c = kvq_model_config_get(m);
    int n = (int)(a.n ? a.n : (DEFAULT_TOKENS < c->seq_len ? DEFAULT_TOKENS : c->seq_len));
    if (n > c->seq_len) {
        kvq_model_free(m);
        return cli_usage_error("bench decode", "-n %d exceeds the model's seq_len %d", n, c->seq_len);
    }
    bench_result r;
    rc = measure(&a, m, n, &r);
    if (rc == CLI_EXIT_OK) {
        printf("model        %s (%s; dim %d, %d layers, %d/%d heads, vocab %d)\n", a.model,
               kvq_format_name(kvq_model_format(m)), c->dim, c->n_layers, c->n_heads, c->n_kv_heads,
               c->vocab_size);
        printf("setup        %d tokens from BOS, greedy, %ld thread%s, best of %ld\n", n, a.threads,
               a.threads == 1 ? "" : "s", a.reps);
        printf("prompt       %10.1f tok/s\n", n / r.pp);
        printf("generation   %10.1f tok/s\n", n / r.gen);
        printf("run.c-style  %10.1f tok/s  (plain loops, 1 thread, same tokens%s)\n", n / r.base,
               r.agree ? ", same greedy output" : "; greedy outputs DIFFER");
        printf("ratio        %10.2f\xc3\x97 run.c-style (generation, %ld vs 1 thread)\n", r.base / r.gen,
               a.threads);
    }
    double qpp, qgen;
    if (rc == CLI_EXIT_OK && strcmp(a.quant, "none") && (rc = measure_quant(&a, m, n, &qpp, &qgen)) == CLI_EXIT_OK) {
        printf("%-12s %10.1f tok/s prompt, %.1f tok/s generation (kernels: %s)\n", a.quant, n / qpp, n / qgen,
               kvq_kernels_name());
        printf("ratio        %10.2f\xc3\x97 f32 weights (generation), %.2f\xc3\x97 (prompt)\n", r.gen / qgen,
               r.pp / qpp);
    }
    kvq_model_free(m);
    return rc;
}
