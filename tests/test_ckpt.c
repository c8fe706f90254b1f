/*
 * test_ckpt.c — checkpoint I/O: llama2.c (v0 shared/unshared, v1), GGUF,
 * safetensors and .kvq readers; .kvq, GGUF and safetensors writers
 * (round trips, Q/K permutation); the quantization driver (rules,
 * fallback, thread determinism); q4_0 export against ggml's golden bytes;
 * every truncation and header corruption of small synthetic files.
 * Tests on ../shared/data skip with a message when it is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvq.h"
#include "model_internal.h" /* kvq_st_llama_name: HF names for hand-built shards */

#define DATA        "../shared/data/"
#define S260_BIN    DATA "models/stories260K/stories260K.bin"
#define S260_GGUF   DATA "models/stories260K/stories260K-f32.gguf"
#define S260_TOK    DATA "models/stories260K/tok512.bin"
#define L46_BIN     DATA "models/llama-4.6M/model.bin"
#define MAMBA_ST    DATA "models/mamba2-2.9M/model.safetensors"
#define GOLD_WQ     DATA "golden/stories260K.layer0.wq"
#define GOLD_EMB    DATA "golden/stories260K.tok_embeddings"

/* Synthetic llama2.c model: 2 layers, dim 8, hidden 16, 2 heads, 1 KV head. */
enum { S_DIM = 8, S_HID = 16, S_L = 2, S_H = 2, S_KVH = 1, S_V = 16, S_SEQ = 4, S_HS = S_DIM / S_H };

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvq_test_ckpt_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp(const char *name)
{
    static char p[4][128];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    unlink(p[k]);
    return p[k];
}

static int have(const char *path)
{
    if (access(path, R_OK) == 0) return 1;
    printf("SKIP: %s absent\n", path);
    return 0;
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static kvq_model *load_ok(const char *path)
{
    kvq_model *m = NULL;
    kvq_err e = kvq_model_load(path, &m);
    if (e) fprintf(stderr, "load %s: %s: %s\n", path, kvq_strerror(e), kvq_last_error_detail());
    assert_int_equal(e, KVQ_OK);
    return m;
}

/* ---- synthetic llama2.c files --------------------------------------------- */
static size_t put_floats(uint8_t *p, size_t n, float base)
{
    for (size_t i = 0; i < n; i++) {
        float v = base + 0.01f * (float)((i * 37) % 101) - 0.5f;
        memcpy(p + 4 * i, &v, 4);
    }
    return 4 * n;
}

/* v0 image; shared = sign of vocab_size.  Caller frees. */
static uint8_t *make_l2c(int shared, size_t *n)
{
    const size_t kv = S_KVH * S_HS;
    const size_t counts[] = {S_V * S_DIM, S_L * S_DIM, S_L * S_DIM * S_DIM, S_L * kv * S_DIM, S_L * kv * S_DIM,
                             S_L * S_DIM * S_DIM, S_L * S_DIM, S_L * S_HID * S_DIM, S_L * S_DIM * S_HID,
                             S_L * S_HID * S_DIM, S_DIM, S_SEQ * S_HS, shared ? 0 : S_V * S_DIM};
    size_t total = 28;
    for (size_t i = 0; i < 13; i++) total += 4 * counts[i];
    uint8_t *b = calloc(1, total);
    const int32_t h[7] = {S_DIM, S_HID, S_L, S_H, S_KVH, shared ? S_V : -S_V, S_SEQ};
    memcpy(b, h, 28);
    size_t off = 28;
    for (size_t i = 0; i < 13; i++) off += put_floats(b + off, counts[i], (float)i);
    assert_int_equal(off, total);
    *n = total;
    return b;
}

static void expect_load_error(const uint8_t *img, size_t n, const char *what)
{
    uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
    memcpy(copy, img, n);
    kvq_model *m = NULL;
    kvq_err e = kvq_model_load_memory(copy, n, what, &m);
    if (e == KVQ_OK) fprintf(stderr, "%s: %zu-byte prefix loaded\n", what, n);
    assert_int_not_equal(e, KVQ_OK);
    assert_null(m);
    assert_true(strlen(kvq_last_error_detail()) > 0);
    free(copy);
}

/* Loads or fails cleanly; never crashes.  Returns the error. */
static kvq_err load_any(const uint8_t *img, size_t n)
{
    kvq_model *m = NULL;
    kvq_err e = kvq_model_load_memory(img, n, "mutant", &m);
    if (!e) {
        /* Reading every weight must be safe too. */
        for (size_t i = 0; i < kvq_model_n_weights(m); i++) {
            const kvq_weight *w = kvq_model_weight_at(m, i);
            float *f = malloc((size_t)kvq_shape_numel(&w->shape) * sizeof *f + 4);
            (void)kvq_weight_rows(w, 0, kvq_shape_rows(&w->shape), f);
            free(f);
        }
    }
    kvq_model_free(m);
    return e;
}

static void assert_same_weights(const kvq_model *a, const kvq_model *b)
{
    assert_int_equal(kvq_model_n_weights(a), kvq_model_n_weights(b));
    for (size_t i = 0; i < kvq_model_n_weights(a); i++) {
        const kvq_weight *x = kvq_model_weight_at(a, i), *y = kvq_model_weight(b, x->name);
        assert_non_null(y);
        assert_int_equal(x->shape.ndim, y->shape.ndim);
        for (int d = 0; d < x->shape.ndim; d++) assert_int_equal(x->shape.dim[d], y->shape.dim[d]);
        assert_int_equal(x->size, y->size);
        assert_memory_equal(x->data, y->data, x->size);
    }
}

static void assert_same_config(const kvq_model *a, const kvq_model *b)
{
    const kvq_model_config *x = kvq_model_config_get(a), *y = kvq_model_config_get(b);
    assert_int_equal(x->dim, y->dim);
    assert_int_equal(x->hidden_dim, y->hidden_dim);
    assert_int_equal(x->n_layers, y->n_layers);
    assert_int_equal(x->n_heads, y->n_heads);
    assert_int_equal(x->n_kv_heads, y->n_kv_heads);
    assert_int_equal(x->head_size, y->head_size);
    assert_int_equal(x->vocab_size, y->vocab_size);
    assert_int_equal(x->seq_len, y->seq_len);
    assert_true(x->norm_eps == y->norm_eps);
    assert_true(x->rope_theta == y->rope_theta);
}

/* ---- real checkpoints --------------------------------------------------------- */
static void test_llama2c_stories(void **state)
{
    (void)state;
    if (!have(S260_BIN) || !have(GOLD_WQ ".f32")) return;
    kvq_model *m = load_ok(S260_BIN);
    const kvq_model_config *c = kvq_model_config_get(m);
    assert_int_equal(kvq_model_format(m), KVQ_FORMAT_LLAMA2C);
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->hidden_dim, 172);
    assert_int_equal(c->n_layers, 5);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_size, 8);
    assert_int_equal(c->vocab_size, 512);
    assert_int_equal(c->seq_len, 512);
    assert_int_equal(c->shared_classifier, 1);
    assert_int_equal(c->rope, KVQ_ROPE_ADJACENT);
    assert_int_equal(kvq_model_n_weights(m), 47); /* 1 + 5·9 + 1, no output.weight */
    assert_null(kvq_model_weight(m, "output.weight"));
    assert_string_equal(kvq_model_weight_at(m, 2)->name, "blk.0.attn_q.weight");
    size_t n;
    uint8_t *gold = read_all(GOLD_WQ ".f32", &n);
    float row[64 * 64];
    assert_int_equal(kvq_weight_rows(kvq_model_weight(m, "blk.0.attn_q.weight"), 0, 64, row), KVQ_OK);
    assert_int_equal(n, sizeof row);
    assert_memory_equal(row, gold, n);
    free(gold);
    size_t tn;
    assert_non_null(kvq_model_tokenizer(m, &tn)); /* tok512.bin beside it */
    assert_int_equal(tn, 6227);
    kvq_model_free(m);
}

static void test_gguf_equals_bin(void **state)
{
    (void)state;
    if (!have(S260_BIN) || !have(S260_GGUF) || !have(S260_TOK)) return;
    kvq_model *b = load_ok(S260_BIN), *g = load_ok(S260_GGUF);
    assert_int_equal(kvq_model_format(g), KVQ_FORMAT_GGUF);
    assert_int_equal(kvq_model_format_version(g), 1);
    assert_same_config(b, g);
    assert_int_equal(kvq_model_n_weights(g), 48);
    for (size_t i = 0; i < kvq_model_n_weights(b); i++) { /* bit-identical tensors */
        const kvq_weight *x = kvq_model_weight_at(b, i), *y = kvq_model_weight(g, x->name);
        assert_non_null(y);
        assert_int_equal(x->size, y->size);
        assert_memory_equal(x->data, y->data, x->size);
    }
    const kvq_weight *out = kvq_model_weight(g, "output.weight");
    assert_memory_equal(out->data, kvq_model_weight(b, "token_embd.weight")->data, out->size);
    size_t tn, n;
    const void *tok = kvq_model_tokenizer(g, &tn);
    uint8_t *ref = read_all(S260_TOK, &n);
    assert_int_equal(tn, n);
    assert_memory_equal(tok, ref, n);
    free(ref);
    kvq_model_free(b);
    kvq_model_free(g);
}

static void test_llama46m_and_mamba(void **state)
{
    (void)state;
    if (!have(L46_BIN) || !have(MAMBA_ST)) return;
    kvq_model *m = load_ok(L46_BIN);
    const kvq_model_config *c = kvq_model_config_get(m);
    assert_int_equal(c->dim, 256);
    assert_int_equal(c->hidden_dim, 704);
    assert_int_equal(c->n_layers, 6);
    assert_int_equal(c->n_heads, 4);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->seq_len, 256);
    assert_int_equal(kvq_model_n_weights(m), 1 + 6 * 9 + 1);
    kvq_model_free(m);
    m = load_ok(MAMBA_ST);
    c = kvq_model_config_get(m);
    assert_int_equal(kvq_model_format(m), KVQ_FORMAT_SAFETENSORS);
    assert_int_equal(c->arch, KVQ_ARCH_MAMBA2);
    assert_int_equal(c->dim, 256);
    assert_int_equal(c->n_layers, 6);
    assert_int_equal(c->vocab_size, 512);
    assert_int_equal(kvq_model_n_weights(m), 56);
    const kvq_weight *w = kvq_model_weight(m, "backbone.layers.0.mixer.in_proj.weight");
    assert_non_null(w);
    assert_int_equal(w->shape.dim[0], 1296);
    assert_int_equal(w->shape.dim[1], 256);
    /* Mamba-2 round trips through .kvq and safetensors (names kept); GGUF
     * export is limited to llama. */
    const char *pk = tmp("mamba.kvq"), *ps = tmp("mamba.safetensors"), *pg = tmp("mamba.gguf");
    assert_int_equal(kvq_model_save(m, pk, KVQ_FORMAT_KVQ, 0), KVQ_OK);
    assert_int_equal(kvq_model_save(m, ps, KVQ_FORMAT_SAFETENSORS, 0), KVQ_OK);
    assert_int_equal(kvq_model_save(m, pg, KVQ_FORMAT_GGUF, 0), KVQ_ERR_UNSUPPORTED);
    assert_int_equal(access(pg, F_OK), -1); /* nothing left behind */
    for (int pass = 0; pass < 2; pass++) {
        kvq_model *r = load_ok(pass ? ps : pk);
        assert_int_equal(kvq_model_config_get(r)->arch, KVQ_ARCH_MAMBA2);
        assert_int_equal(kvq_model_config_get(r)->dim, 256);
        assert_same_weights(m, r);
        kvq_model_free(r);
    }
    kvq_model_free(m);
}

/* ---- round trips ------------------------------------------------------------- */
static void test_roundtrip_kvq_gguf(void **state)
{
    (void)state;
    if (!have(S260_BIN)) return;
    kvq_model *b = load_ok(S260_BIN);
    const char *pk = tmp("rt.kvq"), *pg = tmp("rt.gguf");
    assert_int_equal(kvq_model_save(b, pk, KVQ_FORMAT_KVQ, 0), KVQ_OK);
    assert_int_equal(kvq_model_save(b, pk, KVQ_FORMAT_KVQ, 0), KVQ_ERR_EXISTS); /* no -f */
    assert_int_equal(kvq_model_save(b, pg, KVQ_FORMAT_GGUF, 0), KVQ_OK);
    kvq_model *k = load_ok(pk), *g = load_ok(pg);
    assert_int_equal(kvq_model_format(k), KVQ_FORMAT_KVQ);
    assert_int_equal(kvq_model_format_version(g), 3);
    assert_same_config(b, k);
    assert_same_config(b, g);
    assert_same_weights(b, k);
    assert_same_weights(b, g);
    size_t n1, n2, n3;
    const void *t1 = kvq_model_tokenizer(b, &n1), *t2 = kvq_model_tokenizer(k, &n2), *t3 = kvq_model_tokenizer(g, &n3);
    assert_int_equal(n1, n2);
    assert_int_equal(n1, n3);
    assert_memory_equal(t1, t2, n1);
    assert_memory_equal(t1, t3, n1);
    assert_int_equal((uintptr_t)kvq_model_weight_at(k, 0)->data % 64, 0); /* 64-byte aligned payloads */
    kvq_model_free(b);
    kvq_model_free(k);
    kvq_model_free(g);
}

static void test_roundtrip_safetensors(void **state)
{
    (void)state;
    if (!have(S260_BIN)) return;
    kvq_model *b = load_ok(S260_BIN);
    const char *ps = tmp("rt.safetensors"), *pg = tmp("rt2.gguf");
    assert_int_equal(kvq_model_save(b, ps, KVQ_FORMAT_SAFETENSORS, 0), KVQ_OK);
    kvq_model *s = load_ok(ps);
    assert_same_config(b, s);
    assert_int_equal(kvq_model_config_get(s)->rope, KVQ_ROPE_HALF);
    assert_int_equal(kvq_model_n_weights(s), kvq_model_n_weights(b));
    /* Q rows now in HF order: HALF row j + t·hs/2 of head h = ADJACENT row 2j + t. */
    float adj[64 * 64], half[64 * 64];
    assert_int_equal(kvq_weight_rows(kvq_model_weight(b, "blk.0.attn_q.weight"), 0, 64, adj), KVQ_OK);
    assert_int_equal(kvq_weight_rows(kvq_model_weight(s, "blk.0.attn_q.weight"), 0, 64, half), KVQ_OK);
    assert_memory_not_equal(adj, half, sizeof adj);
    for (int h = 0; h < 8; h++)
        for (int j = 0; j < 4; j++)
            for (int t = 0; t < 2; t++)
                assert_memory_equal(&half[(h * 8 + j + 4 * t) * 64], &adj[(h * 8 + 2 * j + t) * 64], 64 * sizeof(float));
    assert_memory_equal(kvq_model_weight(s, "blk.0.ffn_down.weight")->data,
                        kvq_model_weight(b, "blk.0.ffn_down.weight")->data, 64 * 172 * 4);
    /* Back to GGUF: the permutation is undone, bytes equal the original. */
    assert_int_equal(kvq_model_save(s, pg, KVQ_FORMAT_GGUF, 0), KVQ_OK);
    kvq_model *g = load_ok(pg);
    assert_same_weights(b, g);
    kvq_model_free(g);
    kvq_model_free(s);
    kvq_model_free(b);
}

/* ---- sharded safetensors with config.json ---------------------------------- */
static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* A safetensors shard holding weights [i0, i1) of m under HF names. */
static void write_shard(const kvq_model *m, size_t i0, size_t i1, const char *path, char *index, size_t cap,
                        const char *file)
{
    char *h = malloc(65536), hf[256];
    size_t o = 0, off = 0;
    o += (size_t)snprintf(h + o, 65536 - o, "{");
    for (size_t i = i0; i < i1; i++) {
        const kvq_weight *w = kvq_model_weight_at(m, i);
        assert_true(kvq_st_llama_name(w->name, 1, hf, sizeof hf));
        o += (size_t)snprintf(h + o, 65536 - o, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld", i > i0 ? "," : "", hf,
                              (long long)w->shape.dim[0]);
        if (w->shape.ndim == 2) o += (size_t)snprintf(h + o, 65536 - o, ",%lld", (long long)w->shape.dim[1]);
        o += (size_t)snprintf(h + o, 65536 - o, "],\"data_offsets\":[%zu,%zu]}", off, off + w->size);
        off += w->size;
        size_t k = strlen(index);
        snprintf(index + k, cap - k, "%s\"%s\":\"%s\"", index[k - 1] == '{' ? "" : ",", hf, file);
    }
    o += (size_t)snprintf(h + o, 65536 - o, "}");
    FILE *f = fopen(path, "wb");
    uint64_t n = o;
    fwrite(&n, 8, 1, f);
    fwrite(h, 1, o, f);
    for (size_t i = i0; i < i1; i++) fwrite(kvq_model_weight_at(m, i)->data, 1, kvq_model_weight_at(m, i)->size, f);
    fclose(f);
    free(h);
}

static void test_sharded_safetensors(void **state)
{
    (void)state;
    size_t n;
    uint8_t *img = make_l2c(0, &n);
    kvq_model *a = NULL, *s = NULL;
    assert_int_equal(kvq_model_load_memory(img, n, "syn.bin", &a), KVQ_OK);
    char dir[128], p1[160], p2[160], ix[160], cfg[160];
    snprintf(dir, sizeof dir, "%s/sharded", tmpdir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    snprintf(ix, sizeof ix, "%s/model.safetensors.index.json", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    char index[8192] = "{\"metadata\":{\"total_size\":1},\"weight_map\":{";
    size_t nw = kvq_model_n_weights(a);
    write_shard(a, 0, 7, p1, index, sizeof index, "model-00001-of-00002.safetensors");
    write_shard(a, 7, nw, p2, index, sizeof index, "model-00002-of-00002.safetensors");
    strcat(index, "}}");
    write_file(ix, index, strlen(index));
    const char *config = "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":16,"
                         "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
                         "\"vocab_size\":16,\"max_position_embeddings\":4,\"rms_norm_eps\":1e-06,"
                         "\"rope_theta\":500000.0,\"tie_word_embeddings\":false}";
    write_file(cfg, config, strlen(config));
    s = load_ok(dir); /* a directory: finds the index */
    assert_int_equal(kvq_model_format(s), KVQ_FORMAT_SAFETENSORS);
    assert_same_weights(a, s);
    const kvq_model_config *c = kvq_model_config_get(s);
    assert_int_equal(c->rope, KVQ_ROPE_HALF);
    assert_true(c->norm_eps == 1e-6f);
    assert_true(c->rope_theta == 500000.0f);
    assert_int_equal(c->shared_classifier, 0);
    kvq_model_free(s);
    s = load_ok(ix); /* the index itself */
    assert_int_equal(kvq_model_n_weights(s), nw);
    kvq_model_free(s);
    /* The index must account for every tensor, and name plain files only. */
    char *extra = strstr(index, "\"model.norm.weight\"");
    assert_non_null(extra);
    memcpy(extra + 1, "model.nrm", 9);
    write_file(ix, index, strlen(index));
    assert_int_not_equal(kvq_model_load(dir, &s), KVQ_OK);
    assert_null(s);
    const char *escape = "{\"weight_map\":{\"a\":\"../x.safetensors\"}}";
    write_file(ix, escape, strlen(escape));
    assert_int_equal(kvq_model_load(ix, &s), KVQ_ERR_CORRUPT);
    assert_non_null(strstr(kvq_last_error_detail(), "plain file name"));
    kvq_model_free(a);
    free(img);
}

/* ---- quantization ----------------------------------------------------------- */
/* Quantize stories260K with a ggml-layout codec, write GGUF and .kvq, read
 * both back: the stored blocks must be ggml's reference bytes. */
static void golden_roundtrip(const char *codec)
{
    char ge_path[128], gq_path[128], gname[32], kname[32];
    snprintf(ge_path, sizeof ge_path, "%s.%s", GOLD_EMB, codec);
    snprintf(gq_path, sizeof gq_path, "%s.%s", GOLD_WQ, codec);
    if (!kvq_codec_find(codec)) {
        printf("SKIP: no %s codec in this build\n", codec);
        return;
    }
    if (!have(S260_BIN) || !have(ge_path) || !have(gq_path)) return;
    kvq_model *b = load_ok(S260_BIN), *q = NULL;
    kvq_quant_opts o = {.spec = codec, .n_threads = 2};
    assert_int_equal(kvq_model_quantize(b, &o, &q, NULL), KVQ_OK);
    snprintf(gname, sizeof gname, "%s.gguf", codec);
    snprintf(kname, sizeof kname, "%s.kvq", codec);
    const char *pg = tmp(gname), *pk = tmp(kname);
    assert_int_equal(kvq_model_save(q, pg, KVQ_FORMAT_GGUF, 0), KVQ_OK);
    assert_int_equal(kvq_model_save(q, pk, KVQ_FORMAT_KVQ, 0), KVQ_OK);
    kvq_model *g = load_ok(pg), *k = load_ok(pk);
    size_t ne, nq;
    uint8_t *ge = read_all(ge_path, &ne), *gq = read_all(gq_path, &nq);
    for (int pass = 0; pass < 2; pass++) {
        const kvq_model *m = pass ? k : g;
        const kvq_weight *e = kvq_model_weight(m, "token_embd.weight"), *w = kvq_model_weight(m, "blk.0.attn_q.weight");
        assert_non_null(e->codec);
        assert_string_equal(kvq_ctx_codec(e->codec)->name, codec);
        assert_int_equal(e->size, ne);
        assert_memory_equal(e->data, ge, ne);
        assert_int_equal(w->size, nq);
        assert_memory_equal(w->data, gq, nq);
    }
    free(ge);
    free(gq);
    kvq_model_free(g);
    kvq_model_free(k);
    kvq_model_free(q);
    kvq_model_free(b);
}

static void test_ggml_golden(void **state)
{
    (void)state;
    golden_roundtrip("q4_0");
    golden_roundtrip("q8_0");
}

static void test_quantize_stats(void **state)
{
    (void)state;
    if (!kvq_codec_find("q4_0") || !have(S260_BIN)) return;
    kvq_model *b = load_ok(S260_BIN), *q = NULL;
    kvq_quant_opts o = {.spec = "q4_0", .n_threads = 2};
    kvq_quant_stat *st = NULL;
    assert_int_equal(kvq_model_quantize(b, &o, &q, &st), KVQ_OK);
    /* ffn_down has 172 columns: not whole q4_0 blocks, falls back to f16. */
    size_t fb = 0;
    for (size_t i = 0; i < kvq_model_n_weights(q); i++) fb += st[i].fallback;
    assert_int_equal(fb, 5);
    assert_string_equal(st[8].name, "blk.0.ffn_down.weight");
    assert_string_equal(st[8].dst_type, "f16");
    assert_non_null(strstr(st[8].note, "fell back to f16"));
    assert_string_equal(st[1].dst_type, "f32"); /* norms stay f32 */
    assert_true(st[1].sqnr_db > 1e300);        /* exact: +Inf */
    assert_true(st[2].sqnr_db > 15 && st[2].sqnr_db < 30);
    assert_true(st[2].bpw == 4.5);
    assert_true(st[2].max_abs_err > 0 && st[2].max_abs_err < 0.2);
    assert_int_equal(st[2].bytes_in, 64 * 64 * 4);
    assert_int_equal(st[2].bytes_out, 64 * 64 / 32 * 18);
    const char *meta = NULL, *key = NULL;
    for (size_t i = 0; i < kvq_model_n_meta(q); i++) {
        assert_int_equal(kvq_model_meta_at(q, i, &key, &meta), KVQ_OK);
        if (!strcmp(key, "kvq.recipe")) break;
    }
    assert_string_equal(key, "kvq.recipe");
    assert_string_equal(meta, "q4_0");
    free(st);
    kvq_model_free(q);
    kvq_model_free(b);
}

static void test_quantize_rules_threads(void **state)
{
    (void)state;
    size_t n;
    uint8_t *img = make_l2c(1, &n);
    kvq_model *b = NULL, *q1 = NULL, *q2 = NULL;
    assert_int_equal(kvq_model_load_memory(img, n, "syn.bin", &b), KVQ_OK);
    const char *rules[] = {"attn_norm=bf16", "^blk\\.1\\..*=f16"};
    kvq_quant_opts o = {.spec = "f16", .rules = rules, .n_rules = 2, .n_threads = 1};
    kvq_quant_stat *s1, *s2;
    assert_int_equal(kvq_model_quantize(b, &o, &q1, &s1), KVQ_OK);
    o.n_threads = 3;
    assert_int_equal(kvq_model_quantize(b, &o, &q2, &s2), KVQ_OK);
    assert_same_weights(q1, q2);
    assert_string_equal(s1[1].name, "blk.0.attn_norm.weight");
    assert_string_equal(s1[1].dst_type, "bf16");
    assert_string_equal(s1[6].dst_type, "f32"); /* blk.0.ffn_norm: 1-D, no rule */
    assert_string_equal(s1[10].dst_type, "bf16"); /* blk.1.attn_norm: first rule wins */
    assert_string_equal(s1[15].dst_type, "f16"); /* blk.1.ffn_norm: second rule */
    const char *bad[] = {"([=f16"};
    o.rules = bad, o.n_rules = 1;
    kvq_model *q3 = NULL;
    assert_int_equal(kvq_model_quantize(b, &o, &q3, NULL), KVQ_ERR_ARG);
    assert_null(q3);
    o.rules = NULL, o.n_rules = 0, o.spec = "nosuchcodec";
    assert_int_equal(kvq_model_quantize(b, &o, &q3, NULL), KVQ_ERR_UNKNOWN_CODEC);
    free(s1);
    free(s2);
    kvq_model_free(q1);
    kvq_model_free(q2);
    kvq_model_free(b);
    free(img);
}

/* ---- synthetic files: variants, truncation, corruption ---------------------- */
static void test_l2c_variants(void **state)
{
    (void)state;
    size_t n0, n1;
    uint8_t *sh = make_l2c(1, &n0), *un = make_l2c(0, &n1);
    kvq_model *a = NULL, *u = NULL;
    assert_int_equal(kvq_model_load_memory(sh, n0, "shared.bin", &a), KVQ_OK);
    assert_int_equal(kvq_model_load_memory(un, n1, "unshared.bin", &u), KVQ_OK);
    assert_int_equal(kvq_model_config_get(u)->shared_classifier, 0);
    assert_int_equal(kvq_model_config_get(u)->vocab_size, S_V);
    const kvq_weight *cls = kvq_model_weight(u, "output.weight");
    assert_non_null(cls);
    assert_ptr_equal(cls->data, un + n1 - S_V * S_DIM * 4); /* classifier is the last array */
    assert_int_equal(kvq_model_n_weights(u), kvq_model_n_weights(a) + 1);
    /* The same weights as a v1 file (256-byte header, other array order). */
    size_t nv1 = 256 + (n0 - 28) - 4 * S_SEQ * S_HS;
    uint8_t *v1 = calloc(1, nv1);
    const uint32_t magic = 0x616b3432u, ver = 1;
    memcpy(v1, &magic, 4);
    memcpy(v1 + 4, &ver, 4);
    memcpy(v1 + 8, sh, 28);
    v1[36] = 1;
    size_t off = 256;
    static const char *const order[] = {"attn_norm", "ffn_norm", NULL, NULL, "attn_q", "attn_k", "attn_v",
                                        "attn_output", "ffn_gate", "ffn_down", "ffn_up"};
    for (size_t k = 0; k < 11; k++) {
        for (int l = 0; l < (order[k] ? S_L : 1); l++) {
            char nm[64];
            if (order[k]) snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, order[k]);
            else snprintf(nm, sizeof nm, "%s", k == 2 ? "output_norm.weight" : "token_embd.weight");
            const kvq_weight *w = kvq_model_weight(a, nm);
            memcpy(v1 + off, w->data, w->size);
            off += w->size;
        }
    }
    assert_int_equal(off, nv1);
    kvq_model *b = NULL;
    assert_int_equal(kvq_model_load_memory(v1, nv1, "v1.bin", &b), KVQ_OK);
    assert_int_equal(kvq_model_format_version(b), 1);
    assert_same_weights(a, b);
    expect_load_error(v1, nv1 - 1, "v1.bin");
    /* Absurd headers. */
    const int32_t huge = 1 << 30, three = 3, dim = S_DIM, heads = S_H, vmin = INT32_MIN;
    memcpy(sh, &huge, 4);
    expect_load_error(sh, n0, "huge.bin");
    memcpy(sh, &dim, 4);
    memcpy(sh + 12, &three, 4); /* 8 % 3 != 0 */
    expect_load_error(sh, n0, "heads.bin");
    memcpy(sh + 12, &heads, 4);
    memcpy(sh + 20, &vmin, 4);
    expect_load_error(sh, n0, "vocab.bin");
    kvq_model_free(a);
    kvq_model_free(u);
    kvq_model_free(b);
    free(sh);
    free(un);
    free(v1);
}

static uint8_t *synthetic_in(kvq_format f, size_t *n)
{
    size_t n0;
    uint8_t *img = make_l2c(0, &n0);
    if (f == KVQ_FORMAT_LLAMA2C) {
        *n = n0;
        return img;
    }
    kvq_model *m = NULL;
    assert_int_equal(kvq_model_load_memory(img, n0, "syn.bin", &m), KVQ_OK);
    const char *p = tmp("syn.out");
    assert_int_equal(kvq_model_save(m, p, f, 1), KVQ_OK);
    kvq_model_free(m);
    free(img);
    return read_all(p, n);
}

static void test_truncation_corruption(void **state)
{
    (void)state;
    const kvq_format fmts[] = {KVQ_FORMAT_LLAMA2C, KVQ_FORMAT_GGUF, KVQ_FORMAT_SAFETENSORS, KVQ_FORMAT_KVQ};
    for (size_t f = 0; f < 4; f++) {
        size_t n;
        uint8_t *img = synthetic_in(fmts[f], &n);
        assert_int_equal(load_any(img, n), KVQ_OK);
        for (size_t k = 0; k < n; k++) expect_load_error(img, k, kvq_format_name(fmts[f]));
        /* Flip every byte of the first 512 (headers, directories): must
         * never crash; the .kvq header is CRC-protected, so always an error. */
        uint8_t *mut = malloc(n);
        for (size_t i = 0; i < n && i < 512; i++) {
            memcpy(mut, img, n);
            mut[i] ^= 0xA5;
            kvq_err e = load_any(mut, n);
            if (fmts[f] == KVQ_FORMAT_KVQ && i < 128) assert_int_not_equal(e, KVQ_OK);
        }
        free(mut);
        free(img);
    }
}

static void test_gguf_rejects(void **state)
{
    (void)state;
    size_t n;
    uint8_t *img = synthetic_in(KVQ_FORMAT_GGUF, &n);
    kvq_model *m = NULL;
    uint8_t *mut = malloc(n);
    memcpy(mut, img, n);
    mut[4] = 0, mut[7] = 3; /* version 0x03000000: a big-endian file */
    assert_int_equal(kvq_model_load_memory(mut, n, "be.gguf", &m), KVQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(kvq_last_error_detail(), "big-endian"));
    memcpy(mut, img, n);
    mut[4] = 4;
    assert_int_equal(kvq_model_load_memory(mut, n, "v4.gguf", &m), KVQ_ERR_VERSION);
    memcpy(mut, img, n);
    memset(mut + 8, 0xFF, 8); /* tensor count 2^64-1 */
    assert_int_not_equal(kvq_model_load_memory(mut, n, "count.gguf", &m), KVQ_OK);
    assert_null(m);
    free(mut);
    free(img);
    /* A .kvq with a q4_0-free codec id: unknown codecs are refused. */
    img = synthetic_in(KVQ_FORMAT_SAFETENSORS, &n);
    mut = malloc(n);
    memcpy(mut, img, n);
    const char *dt = memmem(mut, n, "\"F32\"", 5) ? "\"I32\"" : NULL;
    assert_non_null(dt);
    memcpy(memmem(mut, n, "\"F32\"", 5), dt, 5);
    assert_int_equal(kvq_model_load_memory(mut, n, "i32.safetensors", &m), KVQ_ERR_UNSUPPORTED);
    free(mut);
    free(img);
}

static void test_hf_config(void **state)
{
    (void)state;
    kvq_model_config c;
    const char *by_arch = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":172,"
                          "\"num_hidden_layers\":5,\"num_attention_heads\":8,\"vocab_size\":512}";
    memset(&c, 0, sizeof c);
    assert_int_equal(kvq_ckpt_hf_config(by_arch, strlen(by_arch), "config.json", &c), KVQ_OK);
    assert_int_equal(c.arch, KVQ_ARCH_LLAMA);
    assert_int_equal(c.n_kv_heads, 8); /* defaults to num_attention_heads */
    assert_int_equal(c.head_size, 8);
    assert_int_equal(c.rope, KVQ_ROPE_HALF);
    assert_int_equal(c.shared_classifier, 0);
    assert_true(c.rope_theta == 10000.0f);
    const char *gpt = "{\"model_type\":\"gpt2\",\"hidden_size\":64}";
    assert_int_equal(kvq_ckpt_hf_config(gpt, strlen(gpt), "config.json", &c), KVQ_ERR_UNSUPPORTED);
    const char *none = "{\"hidden_size\":64}";
    assert_int_equal(kvq_ckpt_hf_config(none, strlen(none), "config.json", &c), KVQ_ERR_CORRUPT);
    const char *absurd = "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":172,"
                         "\"num_hidden_layers\":5,\"num_attention_heads\":7,\"vocab_size\":512}";
    assert_int_equal(kvq_ckpt_hf_config(absurd, strlen(absurd), "config.json", &c), KVQ_ERR_SHAPE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2c_stories),     cmocka_unit_test(test_gguf_equals_bin),
        cmocka_unit_test(test_llama46m_and_mamba),  cmocka_unit_test(test_roundtrip_kvq_gguf),
        cmocka_unit_test(test_roundtrip_safetensors), cmocka_unit_test(test_ggml_golden),
        cmocka_unit_test(test_quantize_stats),
        cmocka_unit_test(test_quantize_rules_threads), cmocka_unit_test(test_l2c_variants),
        cmocka_unit_test(test_truncation_corruption), cmocka_unit_test(test_gguf_rejects),
        cmocka_unit_test(test_sharded_safetensors), cmocka_unit_test(test_hf_config),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
