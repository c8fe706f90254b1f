/*
 * cmd_plt.c — `kvq plt`: the measurements of the PLT sequential KV coder
 * (cache-methods.md §3.3; compress/plt.c, plt_trie.c).
 *
 *   kvq plt lossless MODEL --text FILE   real K/V of the f32 model over the
 *       text, cut into pages of T tokens per (layer, K/V); for f16 and bf16
 *       words: raw bytes, zstd -19 and xz -9e (libzstd level 19, liblzma
 *       preset 9|EXTREME, in-process) on the same bytes page by page and as
 *       one stream, order-0 byte entropy, and the plt codec with rANS and
 *       with zstd; every plt page is checked bit for bit.
 *   kvq plt prefix MODEL --text FILE     N sequences = one shared system
 *       prompt + distinct continuations, run without and with the prefix
 *       store: prefill time, tokens computed, store bytes (shared pages
 *       stored once), logits equality, and the paper's d_T = −log2 P_M(prefix)
 *       of each match from the model's own probabilities (a statistic only).
 */
#include "cli.h"
#include "report.h"

#include <lzma.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#define ZSTD_LEVEL     19     /* zstd -19                                  */
#define XZ_PRESET      (9u | LZMA_PRESET_EXTREME) /* xz -9e               */
#define XZ_MIN_DICT    4096u  /* LZMA2 minimum dictionary                  */
#define DEF_TOKENS     1024
#define DEF_PAGE       64     /* §3.3 default T                            */
#define DEF_SEQS       8
#define DEF_PREFIX     128
#define DEF_SUFFIX     64
#define DEF_PREFIX_PAGE 16    /* §3.3 default P                            */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define KVQ_TRY_CLI(x)                                                        \
    do {                                                                      \
        kvq_err e_ = (x);                                                     \
        if (e_) return e_;                                                    \
    } while (0)

/* ---- general-purpose baselines on raw bytes -------------------------------------- */
static size_t zstd_size(const void *p, size_t n)
{
    size_t cap = ZSTD_compressBound(n);
    void *z = malloc(cap);
    size_t r = z ? ZSTD_compress(z, cap, p, n, ZSTD_LEVEL) : 0;
    free(z);
    return z && !ZSTD_isError(r) ? r : 0;
}

/* xz -9e: LZMA2 preset 9|EXTREME in an .xz container (CRC64 as xz writes);
 * the dictionary is cut to the input size, which changes no match. */
static size_t xz_size(const void *p, size_t n)
{
    lzma_options_lzma opt;
    if (lzma_lzma_preset(&opt, XZ_PRESET)) return 0;
    if (opt.dict_size > n) opt.dict_size = n > XZ_MIN_DICT ? (uint32_t)n : XZ_MIN_DICT;
    lzma_filter f[2] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, NULL}};
    size_t cap = lzma_stream_buffer_bound(n), out = 0;
    uint8_t *z = malloc(cap);
    lzma_ret r = z ? lzma_stream_buffer_encode(f, LZMA_CHECK_CRC64, NULL, p, n, z, &out, cap) : LZMA_MEM_ERROR;
    free(z);
    return r == LZMA_OK ? out : 0;
}

static double entropy0_bytes(const uint8_t *p, size_t n)
{
    double h = 0;
    size_t c[256] = {0};
    for (size_t i = 0; i < n; i++) c[p[i]]++;
    for (int b = 0; b < 256; b++)
        if (c[b]) h -= (double)c[b] * log2((double)c[b] / (double)n);
    return h / 8.0;
}

/* ---- capturing K/V ----------------------------------------------------------------- */
typedef struct {
    int L, kvd, ctx, n_chunks;
    float *k, *v;   /* [chunk][L][ctx][kvd] */
} kv_capture;

/* Runs the f32 model over n_chunks chunks of ctx tokens (each from BOS)
 * and keeps every layer's K/V. */
static kvq_err capture_kv(const kvq_model *m, const int *tok, int ctx, int n_chunks, kv_capture *cap)
{
    const kvq_model_config *c = kvq_model_config_get(m);
    cap->L = c->n_layers, cap->kvd = c->n_kv_heads * c->head_size, cap->ctx = ctx, cap->n_chunks = n_chunks;
    size_t per = (size_t)ctx * (size_t)cap->kvd, all = per * (size_t)cap->L * (size_t)n_chunks;
    cap->k = malloc(all * sizeof(float));
    cap->v = malloc(all * sizeof(float));
    kvq_decoder *d = NULL;
    kvq_err e = cap->k && cap->v ? kvq_decoder_create(m, NULL, &d) : KVQ_ERR_NOMEM;
    int *chunk = malloc((size_t)ctx * sizeof *chunk);
    if (!chunk && !e) e = KVQ_ERR_NOMEM;
    for (int ch = 0; ch < n_chunks && !e; ch++) {
        memcpy(chunk, tok + (size_t)ch * (size_t)ctx, (size_t)ctx * sizeof *chunk);
        chunk[0] = KVQ_TOKEN_BOS;
        e = kvq_decoder_reset(d);
        if (!e) e = kvq_decoder_forward_seq(d, chunk, ctx, 0, NULL);
        for (int l = 0; l < cap->L && !e; l++) {
            size_t off = ((size_t)ch * (size_t)cap->L + (size_t)l) * per;
            e = kvq_cache_read(kvq_decoder_cache(d), l, 0, ctx, cap->k + off, cap->v + off);
        }
        cli_progress("capture", (size_t)ch + 1, (size_t)n_chunks);
    }
    free(chunk);
    kvq_decoder_free(d);
    return e;
}

/* ---- lossless ------------------------------------------------------------------------ */
enum { COL_RAW, COL_H0, COL_ZP, COL_XP, COL_ZS, COL_XS, COL_PR, COL_PZ, N_COLS };
static const char *const col_names[N_COLS] = {"raw",          "order-0 H",   "zstd-19 page", "xz-9e page",
                                              "zstd-19 stream", "xz-9e stream", "plt rANS",  "plt zstd"};

typedef struct {
    double bytes[N_COLS];
    uint64_t mismatches;
} side_sum;

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes_acc;

static int acc_put(bytes_acc *a, const void *p, size_t n)
{
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 1 << 20;
        while (cap < a->n + n) cap *= 2;
        uint8_t *q = realloc(a->p, cap);
        if (!q) return -1;
        a->p = q, a->cap = cap;
    }
    memcpy(a->p + a->n, p, n);
    a->n += n;
    return 0;
}

typedef struct {
    kvq_ctx *raw, *plt[2];   /* f16/bf16 codec; plt with rANS, with zstd */
    uint8_t *buf;
    size_t cap;
    float *y, *yr;           /* [page][kvd] decoded plt, decoded raw      */
} page_tools;

/* One page of one side: raw words via the f16/bf16 codec, per-page
 * baselines on those bytes, plt both ways with a bit-exact check. */
static kvq_err measure_page(page_tools *pt, const kvq_tensor *t, bytes_acc *stream, side_sum *s)
{
    size_t nr, n;
    kvq_tensor yr = *t, y = *t;
    yr.data = pt->yr, y.data = pt->y;
    KVQ_TRY_CLI(kvq_ctx_encode_payload(pt->raw, t, pt->buf, pt->cap, &nr));
    KVQ_TRY_CLI(kvq_ctx_decode_payload(pt->raw, pt->buf, nr, &yr));
    if (acc_put(stream, pt->buf, nr)) return KVQ_ERR_NOMEM;
    s->bytes[COL_RAW] += (double)nr;
    s->bytes[COL_ZP] += (double)zstd_size(pt->buf, nr);
    s->bytes[COL_XP] += (double)xz_size(pt->buf, nr);
    size_t nv = nr / 2;
    for (int b = 0; b < 2; b++) {
        KVQ_TRY_CLI(kvq_ctx_encode_payload(pt->plt[b], t, pt->buf, pt->cap, &n));
        KVQ_TRY_CLI(kvq_ctx_decode_payload(pt->plt[b], pt->buf, n, &y));
        s->bytes[b ? COL_PZ : COL_PR] += (double)n;
        if (memcmp(pt->y, pt->yr, nv * sizeof(float))) s->mismatches++;
    }
    return KVQ_OK;
}

static void print_sums(const char *dtype, const side_sum s[2])
{
    printf("\n%s words (ratio = raw bytes / stored bytes; bytes in parentheses)\n\n| side |", dtype);
    for (int c = 0; c < N_COLS; c++) printf(" %s |", col_names[c]);
    printf("\n|---|");
    for (int c = 0; c < N_COLS; c++) printf("---:|");
    printf("\n");
    for (int r = 0; r < 3; r++) {
        double b[N_COLS];
        for (int c = 0; c < N_COLS; c++) b[c] = r == 2 ? s[0].bytes[c] + s[1].bytes[c] : s[r].bytes[c];
        printf("| %s |", r == 0 ? "K" : r == 1 ? "V" : "K+V");
        for (int c = 0; c < N_COLS; c++)
            printf(c == COL_RAW ? " %.0f |" : " %.3fx (%.0f) |", c == COL_RAW ? b[c] : b[COL_RAW] / b[c], b[c]);
        printf("\n");
    }
    printf("\nplt pages not bit-identical to the %s rounding: %llu\n", dtype,
           (unsigned long long)(s[0].mismatches + s[1].mismatches));
}

static kvq_err lossless_dtype(const kv_capture *cap, int page, int bf16, side_sum s[2])
{
    page_tools pt = {0};
    size_t nv = (size_t)page * (size_t)cap->kvd;
    int64_t dims[3] = {page, 1, cap->kvd};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, NULL, 3, dims);
    kvq_err e = kvq_ctx_create(bf16 ? "bf16" : "f16", &pt.raw);
    if (!e) e = kvq_ctx_create(bf16 ? "plt:dtype=bf16" : "plt", &pt.plt[0]);
    if (!e) e = kvq_ctx_create(bf16 ? "plt:dtype=bf16,backend=zstd" : "plt:backend=zstd", &pt.plt[1]);
    pt.cap = e ? 0 : kvq_ctx_payload_bound(pt.plt[1], &t.shape) + kvq_ctx_payload_bound(pt.plt[0], &t.shape);
    pt.buf = malloc(pt.cap + 1), pt.y = malloc(nv * sizeof(float)), pt.yr = malloc(nv * sizeof(float));
    if (!e && (!pt.buf || !pt.y || !pt.yr)) e = KVQ_ERR_NOMEM;
    size_t per = (size_t)cap->ctx * (size_t)cap->kvd;
    for (int side = 0; side < 2 && !e; side++) {
        bytes_acc stream = {0};
        memset(&s[side], 0, sizeof s[side]);
        for (int ch = 0; ch < cap->n_chunks && !e; ch++)
            for (int l = 0; l < cap->L && !e; l++)
                for (int p = 0; p + page <= cap->ctx && !e; p += page) {
                    float *src = (side ? cap->v : cap->k) + ((size_t)ch * (size_t)cap->L + (size_t)l) * per +
                                 (size_t)p * (size_t)cap->kvd;
                    t.data = src;
                    e = measure_page(&pt, &t, &stream, &s[side]);
                }
        if (!e) {
            s[side].bytes[COL_H0] = entropy0_bytes(stream.p, stream.n);
            s[side].bytes[COL_ZS] = (double)zstd_size(stream.p, stream.n);
            s[side].bytes[COL_XS] = (double)xz_size(stream.p, stream.n);
        }
        free(stream.p);
    }
    kvq_ctx_free(pt.raw), kvq_ctx_free(pt.plt[0]), kvq_ctx_free(pt.plt[1]);
    free(pt.buf), free(pt.y), free(pt.yr);
    return e;
}

typedef struct {
    const char *model, *text, *tok, *kv_spec, *store_spec;
    long tokens, page, seqs, prefix, suffix;
} plt_args;

static void plt_usage(FILE *f)
{
    fprintf(f, "usage: kvq plt lossless MODEL --text FILE [-z TOK] [--tokens N] [--page T]\n"
               "       kvq plt prefix MODEL --text FILE [-z TOK] [--seqs N] [--prefix P] [--suffix S]\n"
               "                      [--page P] [--kv SPEC] [--store SPEC]\n"
               "  lossless: K/V of the f32 model over the first N tokens (default %d), pages of T\n"
               "            tokens (default %d): plt vs zstd -19 / xz -9e on the same f16 and bf16 bytes\n"
               "  prefix:   N sequences (default %d) = the first P tokens (default %d) + distinct S-token\n"
               "            continuations (default %d), without and with the prefix store (page default\n"
               "            %d); --kv the cache codec (default f16), --store the store's page codec\n"
               "            (default exact f32 copies)\n",
            DEF_TOKENS, DEF_PAGE, DEF_SEQS, DEF_PREFIX, DEF_SUFFIX, DEF_PREFIX_PAGE);
}

static int parse_args(int argc, char **argv, int lossless, plt_args *a)
{
    *a = (plt_args){.tokens = DEF_TOKENS, .page = lossless ? DEF_PAGE : DEF_PREFIX_PAGE, .seqs = DEF_SEQS,
                    .prefix = DEF_PREFIX, .suffix = DEF_SUFFIX, .kv_spec = "f16"};
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *num = !strcmp(o, "--tokens") ? &a->tokens : !strcmp(o, "--page") ? &a->page
                  : !strcmp(o, "--seqs") ? &a->seqs : !strcmp(o, "--prefix") ? &a->prefix
                  : !strcmp(o, "--suffix") ? &a->suffix : NULL;
        const char **str = !strcmp(o, "--text") ? &a->text : !strcmp(o, "-z") ? &a->tok
                         : !strcmp(o, "--kv") ? &a->kv_spec : !strcmp(o, "--store") ? &a->store_spec : NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            plt_usage(stdout);
            return -1;
        }
        if ((num || str) && !v) return cli_usage_error("plt", "%s needs a value", o);
        if (num && cli_parse_int(v, 1, 1 << 20, num)) return cli_usage_error("plt", "%s: bad number '%s'", o, v);
        if (str) *str = v;
        if (num || str) {
            i++;
            continue;
        }
        if (o[0] == '-' || a->model) return cli_usage_error("plt", "unexpected argument '%s'", o);
        a->model = o;
    }
    if (!a->model || !a->text) return cli_usage_error("plt", "need MODEL and --text FILE");
    return 0;
}

static int cmd_lossless(const plt_args *a, const kvq_model *m, const int *tok, size_t nt)
{
    const kvq_model_config *c = kvq_model_config_get(m);
    int ctx = (c->seq_len / (int)a->page) * (int)a->page;
    if (ctx < 1) return cli_usage_error("plt", "page %ld exceeds the model's seq_len %d", a->page, c->seq_len);
    int n_chunks = (int)((size_t)a->tokens < nt ? (size_t)a->tokens : nt) / ctx;
    if (n_chunks < 1) return cli_usage_error("plt", "fewer than %d tokens (one chunk)", ctx);
    kv_capture cap = {0};
    kvq_err e = capture_kv(m, tok, ctx, n_chunks, &cap);
    printf("# kvq plt lossless: %s, %d chunks x %d tokens from BOS (%d tokens), pages of %ld tokens x %d layers"
           " x K/V, kv_dim %d\n",
           a->model, n_chunks, ctx, n_chunks * ctx, a->page, cap.L, cap.kvd);
    side_sum s[2];
    for (int bf = 0; bf < 2 && !e; bf++) {
        e = lossless_dtype(&cap, (int)a->page, bf, s);
        if (!e) print_sums(bf ? "bf16" : "f16", s);
    }
    free(cap.k), free(cap.v);
    return e ? cli_error(a->model, e) : CLI_EXIT_OK;
}

/* ---- prefix sharing -------------------------------------------------------------- */
typedef struct {
    double secs;            /* prefill wall time, all sequences           */
    uint64_t computed;      /* tokens run through the model               */
    double cache_bytes;     /* Σ cache bytes_total after each prefill     */
    int matched_min, matched_max;
} workload_result;

/* Prefill every sequence (system prompt + its continuation) from an empty
 * cache, through the store when st != NULL; last[i] = the logits of
 * sequence i's last position. */
static kvq_err run_workload(const kvq_model *m, const plt_args *a, int *const *seq, int len, kvq_plt_store *st,
                            float *last, workload_result *r)
{
    const kvq_model_config *c = kvq_model_config_get(m);
    kvq_cache_config cc = kvq_cache_config_default(c->n_layers, c->n_kv_heads, c->head_size, c->seq_len);
    cc.page = (int)a->page;
    cc.k_spec = cc.v_spec = a->kv_spec;
    cc.prefix = st ? kvq_plt_store_iface() : NULL;
    cc.prefix_store = st;
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    o.cache_cfg = &cc;
    kvq_decoder *d = NULL;
    float *lg = malloc((size_t)len * (size_t)c->vocab_size * sizeof *lg);
    kvq_err e = lg ? kvq_decoder_create(m, &o, &d) : KVQ_ERR_NOMEM;
    memset(r, 0, sizeof *r);
    r->matched_min = len;
    for (int i = 0; i < (int)a->seqs && !e; i++) {
        int got = 0;
        double t0 = now_s();
        e = kvq_decoder_reset(d);
        if (!e) e = kvq_cache_prefix_load(kvq_decoder_cache(d), (const int32_t *)seq[i], len, &got);
        if (!e) e = kvq_decoder_forward_seq(d, seq[i] + got, len - got, got, lg);
        r->secs += now_s() - t0;
        kvq_cache_stats cs;
        if (!e) e = kvq_cache_stats_get(kvq_decoder_cache(d), &cs);
        if (e) break;
        r->cache_bytes += (double)cs.bytes_total;
        r->computed += (uint64_t)(len - got);
        r->matched_min = got < r->matched_min ? got : r->matched_min;
        r->matched_max = got > r->matched_max ? got : r->matched_max;
        memcpy(last + (size_t)i * (size_t)c->vocab_size, lg + (size_t)(len - got - 1) * (size_t)c->vocab_size,
               (size_t)c->vocab_size * sizeof *lg);
    }
    kvq_decoder_free(d);
    free(lg);
    return e;
}

/* d_T = −log2 P_M(tokens[1..m)) given BOS: Σ −log2 softmax(logits_{i−1})[tok_i]. */
static kvq_err trie_metric(const kvq_model *m, const int *tok, int n, double *bits)
{
    int V = kvq_model_config_get(m)->vocab_size;
    float *lg = malloc((size_t)n * (size_t)V * sizeof *lg);
    kvq_decoder *d = NULL;
    kvq_err e = lg ? kvq_decoder_create(m, NULL, &d) : KVQ_ERR_NOMEM;
    if (!e) e = kvq_decoder_forward_seq(d, tok, n, 0, lg);
    *bits = 0;
    for (int i = 1; i < n && !e; i++) {
        const float *row = lg + (size_t)(i - 1) * (size_t)V;
        double mx = row[0], z = 0;
        for (int j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
        for (int j = 0; j < V; j++) z += exp((double)row[j] - mx);
        *bits += (log(z) - ((double)row[tok[i]] - mx)) / log(2.0);
    }
    kvq_decoder_free(d);
    free(lg);
    return e;
}

static void print_prefix(const plt_args *a, int len, const workload_result r[2], const kvq_plt_store_stats *ss,
                         int same, double dt_bits)
{
    printf("# kvq plt prefix: %s, %ld sequences x (%ld shared + %ld own tokens), page %ld, cache codec %s,"
           " store pages %s\n\n",
           a->model, a->seqs, a->prefix, a->suffix, a->page, a->kv_spec, a->store_spec ? a->store_spec : "f32 copies");
    printf("| run | prefill s | tokens computed | matched tokens / seq | Σ cache bytes |\n|---|---:|---:|---|---:|\n");
    for (int k = 0; k < 2; k++)
        printf("| %s | %.4f | %llu | %d..%d | %.0f |\n", k ? "with store" : "no store", r[k].secs,
               (unsigned long long)r[k].computed, r[k].matched_min, r[k].matched_max, r[k].cache_bytes);
    printf("\nprefill time saved: %.1f%%; tokens computed: %llu of %llu\n", 100.0 * (1 - r[1].secs / r[0].secs),
           (unsigned long long)r[1].computed, (unsigned long long)a->seqs * (unsigned long long)len);
    printf("last-position logits identical with and without the store: %s\n", same ? "yes (all sequences)" : "NO");
    /* every sequence seals floor(len/P) full pages per layer; the store
     * holds each distinct page once (f32 copies: every page the same size) */
    uint64_t logical = (uint64_t)a->seqs * (uint64_t)(len / a->page) * (uint64_t)a->page;
    uint64_t physical = ss->nodes * (uint64_t)a->page;
    printf("\nstore: %llu nodes (pages of token ids) = %llu tokens held for %llu logical page tokens"
           " (dedup %.2fx);\n%llu layer pages, payload %llu bytes + meta %llu bytes; lookups %llu, hit tokens %llu\n",
           (unsigned long long)ss->nodes, (unsigned long long)physical, (unsigned long long)logical,
           (double)logical / (double)(physical ? physical : 1), (unsigned long long)ss->layer_pages,
           (unsigned long long)ss->bytes_payload, (unsigned long long)ss->bytes_meta, (unsigned long long)ss->lookups,
           (unsigned long long)ss->hit_tokens);
    printf("the live caches still hold one copy each (prefix pages are loaded into them): the sharing is in the"
           " store and in the prefill compute\n");
    printf("d_T = -log2 P_M(matched prefix) = %.1f bits over %d tokens (%.2f bits/token): information only;"
           " matching is exact\n", dt_bits, r[1].matched_max, r[1].matched_max > 1 ? dt_bits / (r[1].matched_max - 1) : 0.0);
}

static int cmd_prefix(const plt_args *a, const kvq_model *m, const int *tok, size_t nt)
{
    const kvq_model_config *c = kvq_model_config_get(m);
    int len = (int)(a->prefix + a->suffix);
    if (len > c->seq_len) return cli_usage_error("plt", "prefix + suffix = %d exceeds seq_len %d", len, c->seq_len);
    if ((size_t)a->prefix + (size_t)a->seqs * (size_t)a->suffix > nt)
        return cli_usage_error("plt", "the text has %zu tokens; the workload needs %ld", nt,
                               a->prefix + a->seqs * a->suffix);
    int **seq = calloc((size_t)a->seqs, sizeof *seq);
    float *last = malloc(2 * (size_t)a->seqs * (size_t)c->vocab_size * sizeof *last);
    kvq_err e = seq && last ? KVQ_OK : KVQ_ERR_NOMEM;
    for (long i = 0; i < a->seqs && !e; i++) {
        seq[i] = malloc((size_t)len * sizeof **seq);
        if (!seq[i]) e = KVQ_ERR_NOMEM;
        else {
            memcpy(seq[i], tok, (size_t)a->prefix * sizeof **seq);
            memcpy(seq[i] + a->prefix, tok + a->prefix + i * a->suffix, (size_t)a->suffix * sizeof **seq);
        }
    }
    kvq_plt_store_config sc = {.n_layers = c->n_layers, .n_kv_heads = c->n_kv_heads, .head_size = c->head_size,
                               .page = (int)a->page, .spec = a->store_spec};
    kvq_plt_store *st = NULL;
    workload_result r[2];
    kvq_plt_store_stats ss = {0};
    double dt = 0;
    if (!e) e = kvq_plt_store_create(&sc, &st);
    if (!e) e = run_workload(m, a, seq, len, NULL, last, &r[0]);
    if (!e) e = run_workload(m, a, seq, len, st, last + (size_t)a->seqs * (size_t)c->vocab_size, &r[1]);
    if (!e) e = kvq_plt_store_stats_get(st, &ss);
    if (!e) e = trie_metric(m, seq[0], r[1].matched_max > 1 ? r[1].matched_max : 1, &dt);
    int same = !e && !memcmp(last, last + (size_t)a->seqs * (size_t)c->vocab_size,
                             (size_t)a->seqs * (size_t)c->vocab_size * sizeof *last);
    if (!e) print_prefix(a, len, r, &ss, same, dt);
    for (long i = 0; seq && i < a->seqs; i++) free(seq[i]);
    free(seq), free(last);
    kvq_plt_store_free(st);
    return e ? cli_error(a->model, e) : CLI_EXIT_OK;
}

int kvq_cmd_plt(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "lossless") && strcmp(argv[1], "prefix"))) {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            plt_usage(stdout);
            return CLI_EXIT_OK;
        }
        plt_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    int lossless = !strcmp(argv[1], "lossless");
    plt_args a;
    int rc = parse_args(argc, argv, lossless, &a);
    if (rc) return rc < 0 ? CLI_EXIT_OK : rc;
    kvq_model *m = NULL;
    kvq_err e = kvq_model_load(a.model, &m);
    if (e) return cli_error(a.model, e);
    if (kvq_model_config_get(m)->arch != KVQ_ARCH_LLAMA) {
        kvq_model_free(m);
        return cli_usage_error("plt", "%s is not a Llama model (no KV cache)", a.model);
    }
    int *tok = NULL;
    size_t nt = 0;
    rc = report_load_tokens(m, a.model, a.tok, a.text, &tok, &nt);
    if (!rc) rc = lossless ? cmd_lossless(&a, m, tok, nt) : cmd_prefix(&a, m, tok, nt);
    free(tok);
    kvq_model_free(m);
    return rc;
}
