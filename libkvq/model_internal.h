/*
 * model_internal.h — the model object shared by libkvq/model.c and the
 * checkpoint readers and writers (ckpt_*.c, quantize.c).
 *
 * A model owns: its weight directory (names copied), the mappings of the
 * files it was read from (weights point into them, zero copy), any memory a
 * reader or the quantizer allocated for decoded or encoded data, the
 * embedded tokenizer (llama2.c tokenizer.bin bytes) and string metadata.
 * Readers fill it through the helpers below; everything is released by
 * kvq_model_free().
 */
#ifndef KVQ_MODEL_INTERNAL_H
#define KVQ_MODEL_INTERNAL_H

#include "kvq_internal.h"

#define KVQ_MODEL_MAX_WEIGHTS 100000 /* refuse directories with more tensors */
#define KVQ_NAME_MAX          256    /* longest tensor / metadata key name   */

typedef struct kvq_meta_kv {
    char *key, *value;
} kvq_meta_kv;

struct kvq_model {
    kvq_format       format;
    int              version;      /* version of the file format read       */
    kvq_model_config cfg;
    kvq_weight      *w;            /* [n_w] weights; names owned            */
    size_t           n_w, cap_w;
    kvq_map         *maps;         /* [n_maps] files the weights point into */
    size_t           n_maps;
    void           **owned;        /* [n_owned] malloc'd blocks to free     */
    size_t           n_owned;
    kvq_meta_kv     *meta;         /* [n_meta] string metadata              */
    size_t           n_meta;
    uint8_t         *tok;          /* llama2.c tokenizer.bin image, or NULL */
    size_t           tok_n;
};

/* One input file image, as readers see it: bytes plus a name for errors. */
typedef struct kvq_src {
    const uint8_t *p;
    size_t         n;
    const char    *path;
} kvq_src;

/* ---- model building (model.c) -------------------------------------------- */
kvq_err kvq_model_new(kvq_format f, kvq_model **out);
/* kvq_model_add() : append a weight (name copied).  For plain storage
 * (codec NULL) size must equal numel·dtype size; shape is checked.  Takes
 * ownership of `codec` even on failure. */
kvq_err kvq_model_add(kvq_model *m, const char *name, const kvq_shape *s, kvq_dtype dt, kvq_ctx *codec,
                      const void *data, size_t size);
/* kvq_model_own() : the model frees p; on failure p is freed at once. */
kvq_err kvq_model_own(kvq_model *m, void *p);
/* kvq_model_keep_map() : the model unmaps *map at free (moved out of *map). */
kvq_err kvq_model_keep_map(kvq_model *m, kvq_map *map);
kvq_err kvq_model_add_meta(kvq_model *m, const char *key, const char *value);
const char *kvq_model_meta_get(const kvq_model *m, const char *key);
/* kvq_tokenizer_check() : validate llama2.c tokenizer.bin bytes for vocab
 * tokens (every length inside the image, no trailing garbage). */
kvq_err kvq_tokenizer_check(const uint8_t *p, size_t n, int vocab, const char *what);
/* kvq_model_config_check() : sane, mutually consistent hyperparameters. */
kvq_err kvq_model_config_check(const kvq_model_config *c, const char *what);
/* kvq_model_canon_llama() : checks a llama model has every canonical weight
 * with the shape its config implies. */
kvq_err kvq_model_check_llama(const kvq_model *m, const char *what);

/* kvq_model_mamba2_sync() : Mamba-2 fields of the config that the fixed
 * hyperparameter records lack (ssm_state, ssm_groups, conv_kernel) travel
 * as metadata kvq.ssm_state, kvq.ssm_groups, kvq.conv_kernel: a config
 * that has them (from config.json) writes them into the metadata, one that
 * lacks them reads them back from it. */
#define KVQ_MAMBA2_SEQ_LEN 4096 /* [ours] decode limit: an SSM has no trained context length */
kvq_err kvq_model_mamba2_sync(kvq_model *m, const char *what);

/* Row permutation between the two RoPE layouts, on rows of `row_bytes`
 * bytes of a [n_heads·hs][...] matrix.  to_half: ADJACENT → HALF, else
 * HALF → ADJACENT. */
void kvq_rope_permute_rows(const uint8_t *src, uint8_t *dst, int n_heads, int hs, size_t row_bytes,
                           int to_half);

/* ---- readers (ckpt_*.c): fill a fresh model from one file image --------- */
kvq_err kvq_ckpt_llama2c_read(const kvq_src *s, kvq_model *m);
kvq_err kvq_ckpt_gguf_read(const kvq_src *s, kvq_model *m);
kvq_err kvq_ckpt_kvq_read(const kvq_src *s, kvq_model *m);
/* Safetensors: one file (config from `dir`/config.json or __metadata__). */
kvq_err kvq_ckpt_safetensors_read(const kvq_src *s, const char *dir, kvq_model *m);
int     kvq_ckpt_safetensors_sniff(const kvq_src *s);
/* A sharded checkpoint: index.json path; maps each shard into m. */
kvq_err kvq_ckpt_safetensors_read_index(const char *index_path, kvq_model *m);
/* kvq_st_llama_name() : canonical name of an HF Llama tensor into buf
 * (to_hf: the reverse); 0 when the name is not a Llama one (kept as is). */
int kvq_st_llama_name(const char *name, int to_hf, char *buf, size_t cap);
/* Hyperparameters of HF checkpoints from config.json text (llama/mamba2). */
kvq_err kvq_ckpt_hf_config(const char *json, size_t n, const char *what, kvq_model_config *c);

/* ggml tensor types we read and write (formats-and-engines.md §2.4). */
typedef struct kvq_ggml_type {
    uint32_t    id;        /* enum ggml_type value                          */
    const char *name;      /* "q4_0"; the kvq codec of that name, if coded  */
    unsigned    block;     /* elements per block                            */
    unsigned    bytes;     /* bytes per block                               */
    int         plain;     /* 1: stored as kvq dtype `dtype`, no codec      */
    kvq_dtype   dtype;
} kvq_ggml_type;
const kvq_ggml_type *kvq_ggml_type_by_id(uint32_t id);
const kvq_ggml_type *kvq_ggml_type_by_name(const char *name);

/* ---- writers ------------------------------------------------------------- */
kvq_err kvq_ckpt_kvq_write(const kvq_model *m, kvq_out *o);
kvq_err kvq_ckpt_gguf_write(const kvq_model *m, kvq_out *o);
kvq_err kvq_ckpt_safetensors_write(const kvq_model *m, kvq_out *o);

#define KVQ_GGUF_MAGIC "GGUF"
#define KVQ_KVQ_MAGIC  "KVQM"

#endif /* KVQ_MODEL_INTERNAL_H */
