/*
 * cmd_inspect.c — `kvq inspect FILE [--tensor NAME] [--meta]`: what a
 * checkpoint holds, for every format kvq reads (llama2.c .bin, GGUF v1-v3,
 * safetensors, .kvq): format and version, hyperparameters, tokenizer,
 * metadata, and the tensor table (name, shape, storage type or codec,
 * bytes, bits per weight).  --tensor prints one tensor's statistics and
 * its first values, dequantized; --dump FILE also writes the bytes the
 * tensor is stored as (a codec payload, e.g. ggml's q4_0 blocks), so
 * scripts can compare them with reference encodings.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_VALUES  8   /* values printed by --tensor              */
#define META_SHOWN    40  /* metadata lines shown without --meta      */
#define META_WIDTH    72  /* metadata value characters shown          */

static void usage(FILE *f)
{
    fprintf(f, "usage: kvq inspect FILE [--tensor NAME [--dump OUT]] [--meta]\n"
               "  FILE           .bin (llama2.c), .gguf, .safetensors (file, directory, index.json) or .kvq\n"
               "  --tensor NAME  statistics and first values of one tensor\n"
               "  --dump OUT     write that tensor's stored bytes to OUT\n"
               "  --meta         every metadata key (default: the first %d)\n",
            META_SHOWN);
}

static void print_config(const kvq_model *m)
{
    const kvq_model_config *c = kvq_model_config_get(m);
    printf("arch:      %s\n", kvq_arch_name(c->arch));
    printf("config:    dim %d, hidden %d, layers %d, heads %d, kv heads %d, head size %d, vocab %d, seq_len %d\n",
           c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_size, c->vocab_size, c->seq_len);
    printf("           norm_eps %g, rope_theta %g, rope %s, classifier %s\n", (double)c->norm_eps,
           (double)c->rope_theta, c->rope == KVQ_ROPE_HALF ? "half (HF)" : "adjacent",
           c->shared_classifier ? "shared with token_embd" : "separate");
    size_t tn;
    const void *t = kvq_model_tokenizer(m, &tn);
    if (t) printf("tokenizer: %d tokens (%zu bytes, llama2.c format)\n", c->vocab_size, tn);
    else printf("tokenizer: none\n");
}

static void print_meta(const kvq_model *m, int all)
{
    size_t n = kvq_model_n_meta(m);
    if (!n) return;
    printf("metadata:  %zu keys\n", n);
    for (size_t i = 0; i < n && (all || i < META_SHOWN); i++) {
        const char *k, *v;
        if (kvq_model_meta_at(m, i, &k, &v)) break;
        int cut = strlen(v) > META_WIDTH;
        printf("  %-40s = %.*s%s\n", k, META_WIDTH, v, cut ? "..." : "");
    }
    if (!all && n > META_SHOWN) printf("  ... %zu more (--meta)\n", n - META_SHOWN);
}

static void print_tensors(const kvq_model *m)
{
    size_t n = kvq_model_n_weights(m);
    double bytes = 0, numel = 0;
    printf("tensors:   %zu\n", n);
    printf("  %4s  %-40s %-16s %-14s %12s %8s\n", "#", "name", "shape", "type", "bytes", "bpw");
    for (size_t i = 0; i < n; i++) {
        const kvq_weight *w = kvq_model_weight_at(m, i);
        char shp[80], ty[96];
        printf("  %4zu  %-40s %-16s %-14s %12zu %8.3f\n", i, w->name, kvq_shape_format(&w->shape, shp, sizeof shp),
               kvq_weight_type_name(w, ty, sizeof ty), w->size, kvq_weight_bits(w));
        bytes += (double)w->size;
        numel += (double)kvq_shape_numel(&w->shape);
    }
    printf("total:     %.0f parameters, %.0f bytes, %.3f bits/weight\n", numel, bytes, numel ? 8 * bytes / numel : 0);
}

static int dump_tensor(const kvq_weight *w, const char *out)
{
    FILE *f = fopen(out, "wb");
    int ok = f && fwrite(w->data, 1, w->size, f) == w->size;
    if (f && fclose(f) != 0) ok = 0;
    if (ok) return CLI_EXIT_OK;
    fprintf(stderr, "kvq: %s: cannot write\n", out);
    remove(out);
    return CLI_EXIT_FAIL;
}

static int print_tensor(const kvq_model *m, const char *path, const char *name, const char *dump)
{
    const kvq_weight *w = kvq_model_weight(m, name);
    if (!w) {
        fprintf(stderr, "kvq: %s: no tensor named '%s'\n", path, name);
        return CLI_EXIT_FAIL;
    }
    size_t n = (size_t)kvq_shape_numel(&w->shape);
    float *x = malloc(n ? n * sizeof *x : 1);
    if (!x) {
        fprintf(stderr, "kvq: %s: out of memory\n", path);
        return CLI_EXIT_FAIL;
    }
    kvq_err e = kvq_weight_rows(w, 0, kvq_shape_rows(&w->shape), x);
    if (e) {
        free(x);
        return cli_error(path, e);
    }
    double sum = 0, sq = 0, mn = n ? x[0] : 0, mx = n ? x[0] : 0;
    for (size_t i = 0; i < n; i++) {
        sum += x[i];
        sq += (double)x[i] * x[i];
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    char shp[80], ty[96];
    printf("tensor:    %s %s %s, %zu bytes, %.3f bpw\n", w->name, kvq_shape_format(&w->shape, shp, sizeof shp),
           kvq_weight_type_name(w, ty, sizeof ty), w->size, kvq_weight_bits(w));
    double mean = n ? sum / (double)n : 0;
    printf("stats:     min %.6g, max %.6g, mean %.6g, std %.6g, rms %.6g\n", mn, mx, mean,
           n ? sqrt(fmax(0, sq / (double)n - mean * mean)) : 0, n ? sqrt(sq / (double)n) : 0);
    printf("first:    ");
    for (size_t i = 0; i < n && i < FIRST_VALUES; i++) printf(" %.9g", (double)x[i]);
    printf("\n");
    free(x);
    return dump ? dump_tensor(w, dump) : CLI_EXIT_OK;
}

int kvq_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL, *tensor = NULL, *dump = NULL;
    int all_meta = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (!strcmp(argv[i], "--tensor") && i + 1 < argc) {
            tensor = argv[++i];
        } else if (!strcmp(argv[i], "--dump") && i + 1 < argc) {
            dump = argv[++i];
        } else if (!strcmp(argv[i], "--meta")) {
            all_meta = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
        } else if (!path) {
            path = argv[i];
        } else {
            return cli_usage_error("inspect", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!path) return cli_usage_error("inspect", "need FILE");
    if (dump && !tensor) return cli_usage_error("inspect", "--dump needs --tensor NAME");
    kvq_model *m;
    kvq_err e = kvq_model_load(path, &m);
    if (e) return cli_error("inspect", e);
    printf("file:      %s\n", path);
    printf("format:    %s version %d\n", kvq_format_name(kvq_model_format(m)), kvq_model_format_version(m));
    print_config(m);
    int rc = CLI_EXIT_OK;
    if (tensor) {
        rc = print_tensor(m, path, tensor, dump);
    } else {
        print_meta(m, all_meta);
        print_tensors(m);
    }
    kvq_model_free(m);
    return rc;
}
