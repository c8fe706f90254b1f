/*
 * bfp_kstats.c — why K-sort does or does not help BFP keys on a model
 * (docs/results/bfp.md).  Runs the model over the first N tokens of a text
 * with an exact f32 cache, unsorted and K-sorted (W_k-norm key and
 * calibration key, kvq_model_ksort), reads every layer's cached keys back
 * (kvq_cache_read) and reports per layer:
 *   - ‖K̂ − K‖/‖K‖ of the keys encoded as BFP12 blocks of 32
 *     (bfp:mant=4,block=32), i.e. the cache's own quantisation error;
 *   - the mean gap in binades between the shared exponents of the two
 *     halves of a head vector (block 0 vs block 1; head_size 64 only), the
 *     quantity K-sort is meant to raise: a larger gap means the block of
 *     small channels got a finer step.
 * Uses only kvq.h.  Build and run from the project root:
 *   cc -O2 -Ilibkvq scripts/bfp_kstats.c build/libkvq.a -lm -lpthread -llzma -lzstd -o /tmp/bfp_kstats
 *   /tmp/bfp_kstats MODEL TEXT TOKENIZER N
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvq.h"

#define SPEC "bfp:mant=4,block=32"
#define BLOCK 32
#define TEXT_MAX (1 << 20)

static int die(const char *what, kvq_err e)
{
    fprintf(stderr, "bfp_kstats: %s: %s: %s\n", what, kvq_strerror(e), kvq_last_error_detail());
    return 1;
}

static int block_exp(const float *x, int n)
{
    float m = 0;
    for (int i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    int e = 0;
    if (m > 0) frexpf(m, &e);
    return e;
}

/* One layer's keys [n][kvd]: BFP relative error and mean exponent gap. */
static kvq_err layer_stats(const float *k, int n, const kvq_model_config *c, double *rel, double *gap)
{
    int hs = c->head_size, rows = n * c->n_kv_heads;
    int64_t d[2] = {rows, hs};
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, (void *)k, 2, d);
    kvq_ctx *ctx = NULL;
    kvq_err e = kvq_ctx_create(SPEC, &ctx);
    size_t cap = e ? 0 : kvq_ctx_payload_bound(ctx, &t.shape), nb = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    float *y = malloc(sizeof(float) * (size_t)rows * (size_t)hs);
    kvq_tensor o = kvq_tensor_view(KVQ_DTYPE_F32, y, 2, d);
    if (!e) e = kvq_ctx_encode_payload(ctx, &t, buf, cap, &nb);
    if (!e) e = kvq_ctx_decode_payload(ctx, buf, nb, &o);
    if (!e) *rel = kvq_err_stats_compute(k, y, (size_t)rows * (size_t)hs).rel_fro;
    double g = 0;
    for (int r = 0; !e && hs == 2 * BLOCK && r < rows; r++)
        g += fabs((double)(block_exp(k + (size_t)r * hs, BLOCK) - block_exp(k + (size_t)r * hs + BLOCK, BLOCK)));
    *gap = hs == 2 * BLOCK ? g / rows : 0;
    kvq_ctx_free(ctx);
    free(buf);
    free(y);
    return e;
}

static kvq_err run(const kvq_model *m, const int *toks, int n, double *rel, double *gap)
{
    const kvq_model_config *c = kvq_model_config_get(m);
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    kvq_decoder *d = NULL;
    kvq_err e = kvq_decoder_create(m, &o, &d);
    if (!e) e = kvq_decoder_forward_seq(d, toks, n, 0, NULL);
    float *k = malloc(sizeof(float) * (size_t)n * (size_t)(c->n_kv_heads * c->head_size));
    for (int l = 0; !e && l < c->n_layers; l++) {
        e = kvq_cache_read(kvq_decoder_cache(d), l, 0, n, k, NULL);
        if (!e) e = layer_stats(k, n, c, rel + l, gap + l);
    }
    free(k);
    kvq_decoder_free(d);
    return e;
}

static int *tokens_of(const char *text_path, const char *tok_path, int vocab, size_t *n)
{
    FILE *f = fopen(text_path, "rb");
    kvq_tokenizer *tk = NULL;
    if (!f || kvq_tokenizer_load(tok_path, vocab, &tk)) {
        if (f) fclose(f);
        return NULL;
    }
    char *text = calloc(TEXT_MAX + 1, 1);
    size_t got = fread(text, 1, TEXT_MAX, f);
    fclose(f);
    int *toks = malloc(kvq_tokenizer_encode_bound(got) * sizeof *toks);
    if (kvq_tokenizer_encode(tk, text, 1, 0, toks, kvq_tokenizer_encode_bound(got), n)) *n = 0;
    free(text);
    kvq_tokenizer_free(tk);
    return toks;
}

int main(int argc, char **argv)
{
    if (argc != 5) return fprintf(stderr, "usage: bfp_kstats MODEL TEXT TOKENIZER N\n"), 2;
    kvq_model *m = NULL, *s[2] = {NULL, NULL};
    kvq_err e = kvq_model_load(argv[1], &m);
    if (e) return die(argv[1], e);
    const kvq_model_config *c = kvq_model_config_get(m);
    size_t nt = 0;
    int *toks = tokens_of(argv[2], argv[3], c->vocab_size, &nt), n = atoi(argv[4]);
    if (!toks || nt < 2) return fprintf(stderr, "bfp_kstats: cannot tokenize %s\n", argv[2]), 1;
    n = n > (int)nt ? (int)nt : n > c->seq_len ? c->seq_len : n;
    kvq_calib *cal = NULL;
    if ((e = kvq_calib_create(m, toks, (size_t)n, n, 1, &cal))) return die("calib", e);
    for (int v = 0; v < 2; v++) {
        kvq_ksort_opts o = {.qk = 1, .key = v ? KVQ_KSORT_CALIB : KVQ_KSORT_WEIGHT, .calib = cal};
        if ((e = kvq_model_ksort(m, &o, &s[v]))) return die("ksort", e);
    }
    double rel[3][64], gap[3][64];
    const kvq_model *ms[3] = {m, s[0], s[1]};
    for (int v = 0; v < 3 && c->n_layers <= 64; v++)
        if ((e = run(ms[v], toks, n, rel[v], gap[v]))) return die("run", e);
    printf("%s, %d tokens of %s, keys as %s\n", argv[1], n, argv[2], SPEC);
    printf("| layer | rel. K error unsorted | K-sort W_k | K-sort calib | exponent gap unsorted | W_k | calib |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int l = 0; l < c->n_layers && l < 64; l++)
        printf("| %d | %.4f | %.4f | %.4f | %.3f | %.3f | %.3f |\n", l, rel[0][l], rel[1][l], rel[2][l], gap[0][l],
               gap[1][l], gap[2][l]);
    kvq_calib_free(cal);
    kvq_model_free(s[0]);
    kvq_model_free(s[1]);
    kvq_model_free(m);
    free(toks);
    return 0;
}
