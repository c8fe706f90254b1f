/*
 * decoder_internal.h — the reference decoder's state, shared by
 * libkvq/decoder.c (forward pass) and libkvq/transform.c (offline
 * transforms that rewrite the decoder's owned f32 weights).  Never
 * installed.
 */
#ifndef KVQ_DECODER_INTERNAL_H
#define KVQ_DECODER_INTERNAL_H

#include "kvq_internal.h"
#include "threadpool.h"
#include "kernels/rowkern.h"

#define KVQ_DEC_GRAIN 16 /* rows per matmul block: one dequantized scratch block */
#define KVQ_DEC_BATCH 16 /* tokens per teacher-forced chunk: each weight row
                            fetched once is used for up to this many tokens */

/* One linear weight [rows][cols] as the matmul reads it: f32 rows in
 * place (the mmap, or `owned`) or, when f32 == NULL, dequantized block by
 * block from the model's storage through kvq_weight_rows(). */
typedef struct dec_mat {
    const kvq_weight *w;       /* the model's weight (storage)               */
    const float *f32;          /* [rows][cols] readable f32, or NULL         */
    float *owned;              /* f32 copy owned by the decoder, or NULL     */
    int rows, cols;
    int fused;                 /* 1 when rk holds the codec's row kernel:
                                  single tokens then multiply straight
                                  from the stored codes                    */
    kvq_rowkern rk;            /* kernels/rowkern.h (valid when fused)       */
} dec_mat;

typedef struct kvq_mamba2 kvq_mamba2; /* Mamba-2 blocks (mamba2.c)          */

typedef struct dec_layer {
    float *attn_norm;          /* (dim) owned f32                           */
    float *ffn_norm;           /* (dim) owned f32                           */
    dec_mat wq;                /* (n_heads·hs, dim)                          */
    dec_mat wk, wv;            /* (n_kv_heads·hs, dim)                       */
    dec_mat wo;                /* (dim, n_heads·hs)                          */
    dec_mat w1, w3;            /* (hidden_dim, dim): gate, up                */
    dec_mat w2;                /* (dim, hidden_dim): down                    */
    int *rope_pair;            /* (n_kv_heads, hs/2): stored pair slot j of a
                                  head in KV group g rotates with frequency
                                  index rope_pair[g·hs/2 + j] (identity unless
                                  kvq_transform_permute_qk moved pairs)     */
} dec_layer;

struct kvq_decoder {
    const kvq_model *model;
    kvq_model_config cfg;
    kvq_decoder_opts opts;
    int kv_dim;                /* n_kv_heads · head_size                     */
    dec_mat embed;             /* (vocab, dim)                               */
    dec_mat cls;               /* (vocab, dim); shares embed's storage when tied */
    float *final_norm;         /* (dim) owned                                */
    dec_layer *layer;          /* [n_layers]                                 */
    kvq_pool *pool;
    kvq_cache *cache;
    int own_cache;
    /* run state, allocated once (llama2.c RunState), one row per token of
     * a chunk: B = KVQ_DEC_BATCH, wide = max(dim, n_heads·hs) */
    float *x;                  /* (B, dim) residual stream                   */
    float *xb, *xb2;           /* (B, wide)                                  */
    float *q, *k, *v;          /* (B, q_dim), (B, kv_dim), (B, kv_dim)       */
    float *hb, *hb2;           /* (B, hidden_dim)                            */
    float *logits;             /* (B, vocab)                                 */
    float *rope_cos, *rope_sin;/* (B, hs/2) for each token's position        */
    int    wide;
    float *scratch;            /* (threads, KVQ_DEC_GRAIN, max cols)         */
    int    scratch_cols;
    void  *act_buf;            /* activation-codec payload scratch           */
    size_t act_cap;
    kvq_err *thread_err;       /* (threads) first error of each worker       */
    const kvq_weight **thread_err_w;
    kvq_mamba2 *mamba;         /* Mamba-2 model: its blocks and state, else NULL */
};

/* kvq_dec_mat_own() : make m an owned f32 copy (no-op when it already is). */
kvq_err kvq_dec_mat_own(dec_mat *m);

/* Pieces of decoder.c that the Mamba-2 blocks (mamba2.c) reuse: weight
 * binding, the run state, the pooled matmul, RMSNorm, embedding and the
 * activation hooks, each exactly as the Llama path uses them. */
kvq_err kvq_dec_bind_mat(kvq_decoder *d, dec_mat *m, const char *name, int rows, int cols);
kvq_err kvq_dec_bind_vec(kvq_decoder *d, float **out, const char *name, int n);
kvq_err kvq_dec_alloc_state(kvq_decoder *d);
kvq_err kvq_dec_matmul(kvq_decoder *d, const float *x, size_t x_stride, int nb, const dec_mat *m, float *out,
                       size_t out_stride);
void kvq_dec_rmsnorm(float *o, const float *x, const float *w, int n, float eps);
kvq_err kvq_dec_embed(kvq_decoder *d, const int *tokens, int nb);
kvq_ctx *kvq_dec_act_ctx(const kvq_decoder *d, int layer, int which);
kvq_err kvq_dec_act_hook(kvq_decoder *d, int layer, kvq_linear which, float *x, size_t stride, int nb, int n);

/* mamba2.c: the decoder for KVQ_ARCH_MAMBA2 models (d->mamba set). */
kvq_err kvq_mamba2_build(kvq_decoder *d);
void kvq_mamba2_free(kvq_decoder *d);
void kvq_mamba2_reset(kvq_decoder *d);
kvq_err kvq_mamba2_forward(kvq_decoder *d, const int *tokens, int nb, int pos0, int want_logits);
size_t kvq_mamba2_weight_bytes(const kvq_decoder *d);

#endif /* KVQ_DECODER_INTERNAL_H */
