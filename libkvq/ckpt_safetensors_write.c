/*
 * ckpt_safetensors_write.c — safetensors export (formats-and-engines.md
 * §1.1, §1.4, §2.3).
 *
 * Every encoded weight is dequantized to F32; plain F32/F16/BF16 weights are
 * copied as stored.  Llama tensors get Hugging Face names
 * (blk.N.attn_q.weight → model.layers.N.self_attn.q_proj.weight ...), and
 * when the model holds Q/K rows in the adjacent-pair order (llama2.c, GGUF)
 * they are permuted into HF's "rotate_half" order — the inverse of the
 * HF→GGUF converter's permutation (§2.3) — so the file is what
 * transformers expects.  Tensors are ordered by descending element size,
 * then name; the JSON header is padded with spaces so the buffer starts at
 * a multiple of 8 (§1.4).  __metadata__ carries {"format": "pt"} and the
 * hyperparameters as kvq.* strings, which kvq's reader uses when no
 * config.json is beside the file.
 */
#include "model_internal.h"

#include <stdlib.h>

#define ST_ALIGN 8 /* buffer start alignment the reference writer keeps */

typedef struct {
    const kvq_weight *w;
    char        name[KVQ_NAME_MAX];
    const char *dtype;     /* "F32", "F16", "BF16"           */
    size_t      esize;
    int         heads;     /* > 0: permute rows ADJACENT→HALF */
    uint64_t    begin, end;
} st_out;

static int cmp_out(const void *a, const void *b)
{
    const st_out *x = a, *y = b;
    if (x->esize != y->esize) return x->esize > y->esize ? -1 : 1;
    return strcmp(x->name, y->name);
}

static kvq_err put_json_str(kvq_buf *b, const char *s)
{
    KVQ_TRY(kvq_buf_u8(b, '"'));
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') snprintf(esc, sizeof esc, "\\%c", *p);
        else if (*p < 0x20) snprintf(esc, sizeof esc, "\\u%04x", *p);
        else esc[0] = (char)*p, esc[1] = '\0';
        KVQ_TRY(kvq_buf_put(b, esc, strlen(esc)));
    }
    return kvq_buf_u8(b, '"');
}

static kvq_err put_meta_kv(kvq_buf *b, const char *k, const char *v)
{
    KVQ_TRY(kvq_buf_u8(b, ','));
    KVQ_TRY(put_json_str(b, k));
    KVQ_TRY(kvq_buf_u8(b, ':'));
    return put_json_str(b, v);
}

static kvq_err put_metadata(const kvq_model *m, int rope, kvq_buf *b)
{
    const kvq_model_config *c = &m->cfg;
    char v[13][32];
    static const char *const keys[13] = {"kvq.arch", "kvq.dim", "kvq.hidden_dim", "kvq.n_layers", "kvq.n_heads",
                                         "kvq.n_kv_heads", "kvq.head_size", "kvq.vocab_size", "kvq.seq_len",
                                         "kvq.norm_eps", "kvq.rope_theta", "kvq.rope", "kvq.shared_classifier"};
    const int iv[9] = {(int)c->arch, c->dim, c->hidden_dim, c->n_layers, c->n_heads,
                       c->n_kv_heads, c->head_size, c->vocab_size, c->seq_len};
    for (int i = 0; i < 9; i++) snprintf(v[i], sizeof v[i], "%d", iv[i]);
    snprintf(v[9], sizeof v[9], "%.9g", (double)c->norm_eps);
    snprintf(v[10], sizeof v[10], "%.9g", (double)c->rope_theta);
    snprintf(v[11], sizeof v[11], "%d", rope);
    snprintf(v[12], sizeof v[12], "%d", c->shared_classifier);
    KVQ_TRY(kvq_buf_put(b, "\"__metadata__\":{\"format\":\"pt\"", 29));
    for (int i = 0; i < 13; i++) KVQ_TRY(put_meta_kv(b, keys[i], v[i]));
    for (size_t i = 0; i < m->n_meta; i++) {
        const char *k = m->meta[i].key;
        int skip = strncmp(k, "kvq.", 4) != 0 || !strcmp(k, "kvq.version");
        for (int j = 0; j < 13 && !skip; j++) skip = !strcmp(k, keys[j]);
        if (!skip) KVQ_TRY(put_meta_kv(b, k, m->meta[i].value));
    }
    KVQ_TRY(put_meta_kv(b, "kvq.version", kvq_version_string()));
    return kvq_buf_u8(b, '}');
}

static void plan_one(const kvq_model *m, const kvq_weight *w, int permute, st_out *o)
{
    o->w = w;
    if (m->cfg.arch != KVQ_ARCH_LLAMA || !kvq_st_llama_name(w->name, 1, o->name, sizeof o->name))
        snprintf(o->name, sizeof o->name, "%s", w->name);
    int plain16 = !w->codec && w->dtype != KVQ_DTYPE_F32;
    o->dtype = plain16 ? (w->dtype == KVQ_DTYPE_F16 ? "F16" : "BF16") : "F32";
    o->esize = plain16 ? 2 : 4;
    size_t n = strlen(w->name);
    o->heads = 0;
    if (permute && n > 14 && !strcmp(w->name + n - 14, ".attn_q.weight")) o->heads = m->cfg.n_heads;
    if (permute && n > 14 && !strcmp(w->name + n - 14, ".attn_k.weight")) o->heads = m->cfg.n_kv_heads;
}

static kvq_err build_header(const kvq_model *m, int rope, st_out *t, kvq_buf *b)
{
    uint64_t off = 0;
    char num[64];
    KVQ_TRY(kvq_buf_u8(b, '{'));
    KVQ_TRY(put_metadata(m, rope, b));
    for (size_t i = 0; i < m->n_w; i++) {
        t[i].begin = off;
        off += (uint64_t)kvq_shape_numel(&t[i].w->shape) * t[i].esize;
        t[i].end = off;
        KVQ_TRY(kvq_buf_u8(b, ','));
        KVQ_TRY(put_json_str(b, t[i].name));
        snprintf(num, sizeof num, ":{\"dtype\":\"%s\",\"shape\":[", t[i].dtype);
        KVQ_TRY(kvq_buf_put(b, num, strlen(num)));
        for (int d = 0; d < t[i].w->shape.ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t[i].w->shape.dim[d]);
            KVQ_TRY(kvq_buf_put(b, num, strlen(num)));
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)t[i].begin,
                 (unsigned long long)t[i].end);
        KVQ_TRY(kvq_buf_put(b, num, strlen(num)));
    }
    KVQ_TRY(kvq_buf_u8(b, '}'));
    while ((8 + b->n) % ST_ALIGN) KVQ_TRY(kvq_buf_u8(b, ' '));
    return KVQ_OK;
}

/* One tensor's bytes: plain storage as is, else little-endian f32. */
static kvq_err write_tensor(const kvq_model *m, const st_out *t, kvq_out *o)
{
    const kvq_weight *w = t->w;
    size_t n = (size_t)kvq_shape_numel(&w->shape), bytes = n * t->esize;
    if (!w->codec && !t->heads && (w->dtype != KVQ_DTYPE_F32 || t->esize == 4)) return kvq_out_write(o, w->data, w->size);
    uint8_t *buf = malloc(2 * bytes + 1);
    float *f = malloc(n * sizeof *f + 1);
    kvq_err e = buf && f ? KVQ_OK : KVQ_ERROR(KVQ_ERR_NOMEM, "out of memory for tensor %s", w->name);
    if (!e && w->codec) e = kvq_weight_rows(w, 0, kvq_shape_rows(&w->shape), f);
    for (size_t i = 0; !e && w->codec && i < n; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        kvq_wr32(buf + 4 * i, u);
    }
    if (!e && !w->codec) memcpy(buf, w->data, bytes);
    const uint8_t *src = buf;
    if (!e && t->heads) {
        size_t rows = (size_t)kvq_shape_rows(&w->shape);
        kvq_rope_permute_rows(buf, buf + bytes, t->heads, m->cfg.head_size, bytes / rows, 1);
        src = buf + bytes;
    }
    if (!e) e = kvq_out_write(o, src, bytes);
    free(buf);
    free(f);
    return e;
}

kvq_err kvq_ckpt_safetensors_write(const kvq_model *m, kvq_out *o)
{
    KVQ_FAIL_IF(kvq_model_has_rope_pairs(m), KVQ_ERR_UNSUPPORTED,
                "safetensors cannot express K-sorted RoPE pairs (kvq.rope_pairs.N metadata); write .kvq");
    int permute = m->cfg.arch == KVQ_ARCH_LLAMA && m->cfg.rope == KVQ_ROPE_ADJACENT;
    int rope = m->cfg.arch == KVQ_ARCH_LLAMA ? KVQ_ROPE_HALF : (int)m->cfg.rope;
    st_out *t = malloc((m->n_w ? m->n_w : 1) * sizeof *t);
    KVQ_FAIL_IF(!t, KVQ_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_w; i++) plan_one(m, &m->w[i], permute, &t[i]);
    qsort(t, m->n_w, sizeof *t, cmp_out);
    kvq_buf h = {0};
    uint8_t len[8];
    kvq_err e = build_header(m, rope, t, &h);
    if (!e) {
        kvq_wr64(len, h.n);
        e = kvq_out_write(o, len, 8);
    }
    if (!e) e = kvq_out_write(o, h.p, h.n);
    for (size_t i = 0; !e && i < m->n_w; i++) e = write_tensor(m, &t[i], o);
    kvq_buf_free(&h);
    free(t);
    return e;
}
