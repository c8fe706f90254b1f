/*
 * gear_residual.c — why GEAR's low-rank term buys little on small pages:
 * on real K/V pages of llama-4.6M (every layer, pages of 32 tokens over
 * valid.txt's first 256 tokens) it prints the relative error of KIVI-2 and
 * of GEAR-2 at ranks 1, 2, 4, 8 and with outliers, the share of the
 * backbone residual's energy that rank r removes, what an isotropic
 * (white-noise) residual of the same shape would give (r/min(T, d)), and
 * the bits per value each costs (payload only).
 *
 * Build and run from the project root (after make):
 *   cc -O2 -Ilibkvq -I. scripts/gear_residual.c build/libkvq.a -lzstd -llzma -lpthread -lm -o /tmp/gear_residual
 *   /tmp/gear_residual ../shared/data
 */
#include "kvq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define CTX  256
#define PAGE 32
#define MAXV (PAGE * 16 * 128) /* page values: up to 16 KV heads of 128 */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    if (p) p[n] = 0;
    return p;
}

/* Σ‖x − x̂‖² and the payload bytes of one page through spec. */
static double page_err(const char *spec, const float *x, int64_t *dims, size_t *bytes)
{
    static float y[MAXV];
    static unsigned char buf[1 << 20];
    kvq_ctx *ctx;
    if (kvq_ctx_create(spec, &ctx)) return -1;
    kvq_tensor t = kvq_tensor_view(KVQ_DTYPE_F32, (void *)x, 3, dims), o = kvq_tensor_view(KVQ_DTYPE_F32, y, 3, dims);
    size_t n = 0;
    if (kvq_ctx_encode_payload(ctx, &t, buf, sizeof buf, &n) || kvq_ctx_decode_payload(ctx, buf, n, &o)) n = 0;
    kvq_ctx_free(ctx);
    double e = 0;
    for (int64_t i = 0; i < dims[0] * dims[1] * dims[2]; i++) e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    *bytes += n;
    return e;
}

int main(int argc, char **argv)
{
    const char *data = argc > 1 ? argv[1] : "../shared/data";
    char path[512];
    kvq_model *m;
    kvq_tokenizer *tok;
    snprintf(path, sizeof path, "%s/models/llama-4.6M/model.bin", data);
    if (kvq_model_load(path, &m)) return fprintf(stderr, "%s: %s\n", path, kvq_last_error_detail()), 1;
    snprintf(path, sizeof path, "%s/models/llama-4.6M/tok512.bin", data);
    if (kvq_tokenizer_load(path, 512, &tok)) return fprintf(stderr, "%s\n", kvq_last_error_detail()), 1;
    snprintf(path, sizeof path, "%s/corpus/mixtext/valid.txt", data);
    char *text = slurp(path);
    if (!text) return fprintf(stderr, "%s: cannot read\n", path), 1;
    text[4096] = 0;
    size_t n, cap = kvq_tokenizer_encode_bound(strlen(text));
    int *ids = malloc(cap * sizeof *ids);
    if (!ids || kvq_tokenizer_encode(tok, text, 1, 0, ids, cap, &n) || n < CTX)
        return fprintf(stderr, "tokenize: %s\n", kvq_last_error_detail()), 1;
    kvq_decoder *d;
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    if (kvq_decoder_create(m, &o, &d) || kvq_decoder_forward_seq(d, ids, CTX, 0, NULL))
        return fprintf(stderr, "decode: %s\n", kvq_last_error_detail()), 1;
    const kvq_model_config *c = kvq_model_config_get(m);
    int64_t dims[3] = {PAGE, c->n_kv_heads, c->head_size};
    static const char *specs[] = {"kivi:bits=2", "gear:bits=2,sparse=0,rank=1", "gear:bits=2,sparse=0,rank=2",
                                  "gear:bits=2,sparse=0,rank=4", "gear:bits=2,sparse=0,rank=8",
                                  "gear:bits=2,sparse=0.0625,rank=0", "kivi:bits=3"};
    enum { NS = sizeof specs / sizeof specs[0] };
    static const int rank[NS] = {0, 1, 2, 4, 8, 0, 0};
    static float k[CTX * 2048], v[CTX * 2048];
    for (int side = 0; side < 2; side++) {
        double err[NS] = {0}, energy = 0;
        size_t bytes[NS] = {0};
        for (int l = 0; l < c->n_layers; l++) {
            kvq_cache_read(kvq_decoder_cache(d), l, 0, CTX, k, v);
            for (int p = 0; p < CTX / PAGE; p++) {
                const float *x = (side ? v : k) + (size_t)p * PAGE * dims[1] * dims[2];
                for (int64_t i = 0; i < PAGE * dims[1] * dims[2]; i++) energy += (double)x[i] * x[i];
                for (int s = 0; s < NS; s++) {
                    char spec[96];
                    snprintf(spec, sizeof spec, "%s%s", specs[s], side ? ",axis=token" : "");
                    err[s] += page_err(spec, x, dims, &bytes[s]);
                }
            }
        }
        double values = (double)c->n_layers * CTX * dims[1] * dims[2];
        printf("%s pages (%d layers x %d pages of [%d][%d][%d]):\n\n", side ? "V" : "K", c->n_layers, CTX / PAGE, PAGE,
               (int)dims[1], (int)dims[2]);
        printf("| codec | rel. error | residual energy removed | isotropic r/min(T,d) | payload bits/value |\n");
        printf("|---|---:|---:|---:|---:|\n");
        for (int s = 0; s < NS; s++) {
            double removed = 1 - err[s] / err[0], iso = rank[s] / (double)(PAGE < dims[2] ? PAGE : dims[2]);
            printf("| `%s%s` | %.4f | %.1f%% | %.1f%% | %.3f |\n", specs[s], side ? ",axis=token" : "",
                   sqrt(err[s] / energy), 100 * removed, 100 * iso, 8.0 * (double)bytes[s] / values);
        }
        printf("\n");
    }
    kvq_decoder_free(d);
    kvq_tokenizer_free(tok);
    kvq_model_free(m);
    free(text);
    free(ids);
    return 0;
}
