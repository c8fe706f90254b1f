/*
 * ckpt_gguf_write.c — GGUF version 3 export (formats-and-engines.md §2.1,
 * §2.3, §4 "Rules for llama.cpp-usable output").
 *
 * Llama models only (§4).  Only standard ggml types are written: plain f32/f16/bf16 weights and the
 * q8_0/q4_0/mxfp4 codecs, whose payload is already ggml's block layout, so the
 * export copies bytes and never re-quantizes.  Any other codec is refused
 * with KVQ_ERR_UNSUPPORTED naming the tensor (use .kvq or safetensors).
 *
 * Metadata: general.architecture, general.name (when known),
 * general.alignment = 32, general.quantization_version = 2,
 * general.file_type (the llama_ftype of the dominant matrix type), the
 * llama.* hyperparameters, and the tokenizer as tokenizer.ggml.* arrays
 * rebuilt from the llama2.c tokenizer image (space back to U+2581,
 * "\n<s>\n" back to "<s>", token types: unknown 2, control 3, byte 6,
 * normal 1).  Dimensions are reversed (ne[0] innermost).  A model whose
 * Q/K rows are in HF "rotate_half" order is permuted to the adjacent-pair
 * order GGUF expects, row by row on the stored bytes (§2.3).
 */
#include "model_internal.h"

#include <stdlib.h>

#define GGUF_VERSION     3
#define GGUF_ALIGN       32
#define GGML_QUANT_VER   2       /* general.quantization_version          */
#define GV_U32 4
#define GV_I32 5
#define GV_F32 6
#define GV_STRING 8
#define GV_ARRAY 9
#define TOK_UNKNOWN 2            /* llama_token_type values               */
#define TOK_CONTROL 3
#define TOK_BYTE    6
#define TOK_NORMAL  1

/* llama_ftype of a model whose matrices are mostly of ggml type `id`. */
static uint32_t file_type_of(uint32_t id)
{
    static const uint32_t map[][2] = {{0, 0}, {1, 1}, {2, 2}, {8, 7}, {30, 32}, {39, 38}}; /* 38: MXFP4_MOE */
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i][0] == id) return map[i][1];
    return 0;
}

static kvq_err put_str(kvq_buf *b, const void *s, size_t n)
{
    KVQ_TRY(kvq_buf_u64(b, n));
    return kvq_buf_put(b, s, n);
}

static kvq_err kv_str(kvq_buf *b, const char *k, const char *v)
{
    KVQ_TRY(put_str(b, k, strlen(k)));
    KVQ_TRY(kvq_buf_u32(b, GV_STRING));
    return put_str(b, v, strlen(v));
}

static kvq_err kv_u32(kvq_buf *b, const char *k, uint32_t v)
{
    KVQ_TRY(put_str(b, k, strlen(k)));
    KVQ_TRY(kvq_buf_u32(b, GV_U32));
    return kvq_buf_u32(b, v);
}

static kvq_err kv_f32(kvq_buf *b, const char *k, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    KVQ_TRY(put_str(b, k, strlen(k)));
    KVQ_TRY(kvq_buf_u32(b, GV_F32));
    return kvq_buf_u32(b, u);
}

static kvq_err kv_array_head(kvq_buf *b, const char *k, uint32_t et, uint64_t n)
{
    KVQ_TRY(put_str(b, k, strlen(k)));
    KVQ_TRY(kvq_buf_u32(b, GV_ARRAY));
    KVQ_TRY(kvq_buf_u32(b, et));
    return kvq_buf_u64(b, n);
}

/* ggml type of a weight, or an error naming it. */
static kvq_err type_of(const kvq_weight *w, const kvq_ggml_type **gt)
{
    char name[96];
    kvq_weight_type_name(w, name, sizeof name);
    *gt = kvq_ggml_type_by_name(name);
    /* A float codec (f16, ...) stores exactly the plain layout: accepted. */
    KVQ_FAIL_IF(!*gt, KVQ_ERR_UNSUPPORTED,
                "tensor %s is stored as %s, which has no standard ggml type (GGUF takes f32, f16, bf16, q8_0, q4_0, mxfp4; "
                "write .kvq or safetensors instead)", w->name, name);
    return KVQ_OK;
}

/* ---- tokenizer ---------------------------------------------------------------- */
static uint32_t token_type(const uint8_t *p, size_t n, size_t id)
{
    if (id == 0 && n == 5 && !memcmp(p, "<unk>", 5)) return TOK_UNKNOWN;
    if ((n == 5 && !memcmp(p, "\n<s>\n", 5)) || (n == 6 && !memcmp(p, "\n</s>\n", 6))) return TOK_CONTROL;
    if (n == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>') return TOK_BYTE;
    return TOK_NORMAL;
}

static kvq_err put_piece(kvq_buf *b, const uint8_t *p, size_t n)
{
    if (token_type(p, n, 1) == TOK_CONTROL) return put_str(b, p + 1, n - 2); /* strip the newlines */
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++) spaces += p[i] == ' ';
    KVQ_TRY(kvq_buf_u64(b, n + 2 * spaces)); /* ' ' becomes the 3-byte U+2581 */
    for (size_t i = 0; i < n; i++)
        KVQ_TRY(p[i] == ' ' ? kvq_buf_put(b, "\xE2\x96\x81", 3) : kvq_buf_u8(b, p[i]));
    return KVQ_OK;
}

/* One pass over the tokenizer image fills the three arrays. */
static kvq_err tokenizer_arrays(const kvq_model *m, kvq_buf *tok, kvq_buf *score, kvq_buf *type)
{
    kvq_rd r = {m->tok, m->tok_n, 4, "tokenizer"};
    for (size_t i = 0; i < (size_t)m->cfg.vocab_size; i++) {
        uint32_t sc, len;
        const uint8_t *p;
        KVQ_TRY(kvq_rd_u32(&r, &sc));
        KVQ_TRY(kvq_rd_u32(&r, &len));
        KVQ_TRY(kvq_rd_bytes(&r, len, &p));
        KVQ_TRY(put_piece(tok, p, len));
        KVQ_TRY(kvq_buf_u32(score, sc));
        KVQ_TRY(kvq_buf_u32(type, token_type(p, len, i)));
    }
    return KVQ_OK;
}

static kvq_err put_tokenizer(const kvq_model *m, kvq_buf *b, uint64_t *n_kv)
{
    size_t V = (size_t)m->cfg.vocab_size;
    kvq_buf tok = {0}, score = {0}, type = {0};
    kvq_err e = tokenizer_arrays(m, &tok, &score, &type);
    if (!e) e = kv_str(b, "tokenizer.ggml.model", "llama");
    if (!e) e = kv_array_head(b, "tokenizer.ggml.tokens", GV_STRING, V);
    if (!e) e = kvq_buf_put(b, tok.p, tok.n);
    if (!e) e = kv_array_head(b, "tokenizer.ggml.scores", GV_F32, V);
    if (!e) e = kvq_buf_put(b, score.p, score.n);
    if (!e) e = kv_array_head(b, "tokenizer.ggml.token_type", GV_I32, V);
    if (!e) e = kvq_buf_put(b, type.p, type.n);
    if (!e) e = kv_u32(b, "tokenizer.ggml.bos_token_id", 1);
    if (!e) e = kv_u32(b, "tokenizer.ggml.eos_token_id", 2);
    kvq_buf_free(&tok);
    kvq_buf_free(&score);
    kvq_buf_free(&type);
    *n_kv += 6;
    return e;
}

/* ---- metadata ----------------------------------------------------------------- */
static kvq_err put_metadata(const kvq_model *m, uint32_t ftype, kvq_buf *b, uint64_t *n_kv)
{
    const kvq_model_config *c = &m->cfg;
    const char *arch = kvq_arch_name(c->arch), *name = kvq_model_meta_get(m, "general.name");
    char k[96];
    KVQ_TRY(kv_str(b, "general.architecture", arch));
    KVQ_TRY(kv_u32(b, "general.alignment", GGUF_ALIGN));
    KVQ_TRY(kv_u32(b, "general.quantization_version", GGML_QUANT_VER));
    KVQ_TRY(kv_u32(b, "general.file_type", ftype));
    *n_kv += 4;
    if (name) {
        KVQ_TRY(kv_str(b, "general.name", name));
        ++*n_kv;
    }
    if (c->arch == KVQ_ARCH_LLAMA) {
        const struct {
            const char *key;
            uint32_t v;
        } ints[] = {{"context_length", (uint32_t)c->seq_len},       {"embedding_length", (uint32_t)c->dim},
                    {"block_count", (uint32_t)c->n_layers},         {"feed_forward_length", (uint32_t)c->hidden_dim},
                    {"rope.dimension_count", (uint32_t)c->head_size}, {"attention.head_count", (uint32_t)c->n_heads},
                    {"attention.head_count_kv", (uint32_t)c->n_kv_heads}};
        for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
            snprintf(k, sizeof k, "%s.%s", arch, ints[i].key);
            KVQ_TRY(kv_u32(b, k, ints[i].v));
        }
        snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
        KVQ_TRY(kv_f32(b, k, c->norm_eps));
        snprintf(k, sizeof k, "%s.rope.freq_base", arch);
        KVQ_TRY(kv_f32(b, k, c->rope_theta));
        *n_kv += 9;
    }
    if (m->tok) KVQ_TRY(put_tokenizer(m, b, n_kv));
    return KVQ_OK;
}

/* ---- tensors ------------------------------------------------------------------- */
static int needs_permute(const kvq_model *m, const kvq_weight *w, int *heads)
{
    if (m->cfg.arch != KVQ_ARCH_LLAMA || m->cfg.rope != KVQ_ROPE_HALF) return 0;
    size_t n = strlen(w->name);
    int q = n > 14 && !strcmp(w->name + n - 14, ".attn_q.weight");
    int k = n > 14 && !strcmp(w->name + n - 14, ".attn_k.weight");
    *heads = q ? m->cfg.n_heads : m->cfg.n_kv_heads;
    return q || k;
}

static kvq_err write_data(const kvq_model *m, const kvq_weight *w, kvq_out *o)
{
    int heads;
    KVQ_TRY(kvq_out_pad(o, GGUF_ALIGN));
    if (!needs_permute(m, w, &heads)) return kvq_out_write(o, w->data, w->size);
    size_t rows = (size_t)kvq_shape_rows(&w->shape), rb = w->size / rows;
    uint8_t *tmp = malloc(w->size ? w->size : 1);
    KVQ_FAIL_IF(!tmp, KVQ_ERR_NOMEM, "out of memory");
    kvq_rope_permute_rows(w->data, tmp, heads, m->cfg.head_size, rb, 0);
    kvq_err e = kvq_out_write(o, tmp, w->size);
    free(tmp);
    return e;
}

static kvq_err put_infos(const kvq_model *m, kvq_buf *b, uint32_t *ftype)
{
    uint64_t off = 0;
    size_t count[64] = {0};
    for (size_t i = 0; i < m->n_w; i++) {
        const kvq_weight *w = &m->w[i];
        const kvq_ggml_type *gt;
        KVQ_TRY(type_of(w, &gt));
        KVQ_TRY(put_str(b, w->name, strlen(w->name)));
        KVQ_TRY(kvq_buf_u32(b, (uint32_t)w->shape.ndim));
        for (int d = w->shape.ndim - 1; d >= 0; d--) KVQ_TRY(kvq_buf_u64(b, (uint64_t)w->shape.dim[d]));
        KVQ_TRY(kvq_buf_u32(b, gt->id));
        off = kvq_align_up(off, GGUF_ALIGN);
        KVQ_TRY(kvq_buf_u64(b, off));
        off += w->size;
        if (w->shape.ndim >= 2 && gt->id < 64) count[gt->id]++;
    }
    uint32_t best = 0;
    for (uint32_t t = 0; t < 64; t++)
        if (count[t] > count[best]) best = t;
    *ftype = file_type_of(best);
    return KVQ_OK;
}

kvq_err kvq_ckpt_gguf_write(const kvq_model *m, kvq_out *o)
{
    /* formats-and-engines.md §4: limited to the Llama family (Mamba-2 needs
     * llama.cpp's tensor names and ssm.* keys, which kvq does not map). */
    KVQ_FAIL_IF(m->cfg.arch != KVQ_ARCH_LLAMA, KVQ_ERR_UNSUPPORTED,
                "GGUF export covers llama models; this is %s (write .kvq or safetensors)", kvq_arch_name(m->cfg.arch));
    KVQ_FAIL_IF(kvq_model_has_rope_pairs(m), KVQ_ERR_UNSUPPORTED,
                "GGUF cannot express K-sorted RoPE pairs (kvq.rope_pairs.N metadata); write .kvq");
    kvq_buf infos = {0}, kv = {0}, head = {0};
    uint32_t ftype = 0;
    uint64_t n_kv = 0;
    kvq_err e = put_infos(m, &infos, &ftype);
    if (!e) e = put_metadata(m, ftype, &kv, &n_kv);
    if (!e) e = kvq_buf_put(&head, KVQ_GGUF_MAGIC, 4);
    if (!e) e = kvq_buf_u32(&head, GGUF_VERSION);
    if (!e) e = kvq_buf_u64(&head, m->n_w);
    if (!e) e = kvq_buf_u64(&head, n_kv);
    if (!e) e = kvq_out_write(o, head.p, head.n);
    if (!e) e = kvq_out_write(o, kv.p, kv.n);
    if (!e) e = kvq_out_write(o, infos.p, infos.n);
    if (!e) e = kvq_out_pad(o, GGUF_ALIGN);
    /* Tensor offsets are relative to this aligned point; write_data pads
     * each tensor to GGUF_ALIGN, matching the plan in put_infos. */
    for (size_t i = 0; !e && i < m->n_w; i++) e = write_data(m, &m->w[i], o);
    kvq_buf_free(&infos);
    kvq_buf_free(&kv);
    kvq_buf_free(&head);
    return e;
}
