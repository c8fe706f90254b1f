/*
 * ckpt_safetensors.c — safetensors reader: single files and sharded
 * checkpoints (model.safetensors.index.json), with the Hugging Face
 * config.json beside them (formats-and-engines.md §1).
 *
 * Layout: u64 N, N bytes of JSON header, the byte buffer.  Every check of
 * the reference reader (§1.3) is made: N ≤ 100,000,000; the JSON parses
 * with no duplicate keys; entries sorted by BEGIN tile the buffer from 0
 * with no hole and no overlap; END − BEGIN = numel · bits / 8 (sub-byte
 * dtypes end on a byte); 8 + N + buffer end == file size exactly.
 * Tensors are zero-copy views of the mapped file.  kvq holds F32, F16 and
 * BF16 weights; other valid dtypes give KVQ_ERR_UNSUPPORTED naming the
 * tensor.  Rank-0 tensors become shape [1]; rank above 4 is refused.
 *
 * Names: Llama checkpoints (model_type "llama") are renamed to canonical
 * GGUF names (model.layers.N.self_attn.q_proj.weight → blk.N.attn_q.weight
 * ...) and keep HF's "rotate_half" Q/K row order (rope = HALF); any other
 * name (Mamba-2's backbone.*) is kept as is so the model can still be
 * inspected and quantized.  Hyperparameters come from kvq.* keys in
 * __metadata__ (files kvq wrote) or else from config.json.
 */
#include "model_internal.h"
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#define ST_MAX_HEADER 100000000ull /* reference reader's limit (bytes) */
#define ST_MAX_SHARDS 4096

/* safetensors dtypes: bits per element; kvq dtype when a weight type. */
static const struct {
    const char *name;
    unsigned    bits;
    int         kvq;   /* kvq_dtype, or -1 */
} st_dtypes[] = {
    {"F32", 32, KVQ_DTYPE_F32}, {"F16", 16, KVQ_DTYPE_F16},  {"BF16", 16, KVQ_DTYPE_BF16}, {"BOOL", 8, -1},
    {"F4", 4, -1},             {"F6_E2M3", 6, -1},         {"F6_E3M2", 6, -1},           {"U8", 8, -1},
    {"I8", 8, -1},             {"F8_E5M2", 8, -1},         {"F8_E4M3", 8, -1},           {"F8_E8M0", 8, -1},
    {"F8_E4M3FNUZ", 8, -1},    {"F8_E5M2FNUZ", 8, -1},     {"I16", 16, -1},              {"U16", 16, -1},
    {"I32", 32, -1},           {"U32", 32, -1},            {"C64", 64, -1},              {"F64", 64, -1},
    {"I64", 64, -1},           {"U64", 64, -1},
};

/* HF Llama names ↔ canonical (per layer: "model.layers.N." + hf ↔ "blk.N." + gg). */
static const struct {
    const char *hf, *gg;
} llama_layer_names[] = {
    {"self_attn.q_proj.weight", "attn_q.weight"},      {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},      {"self_attn.o_proj.weight", "attn_output.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},       {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},       {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
}, llama_global_names[] = {
    {"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

int kvq_st_llama_name(const char *name, int to_hf, char *buf, size_t cap)
{
    for (size_t i = 0; i < sizeof llama_global_names / sizeof llama_global_names[0]; i++)
        if (!strcmp(name, to_hf ? llama_global_names[i].gg : llama_global_names[i].hf))
            return snprintf(buf, cap, "%s", to_hf ? llama_global_names[i].hf : llama_global_names[i].gg) > 0;
    const char *pre = to_hf ? "blk." : "model.layers.";
    size_t pl = strlen(pre);
    if (strncmp(name, pre, pl)) return 0;
    char *end;
    long l = strtol(name + pl, &end, 10);
    if (end == name + pl || *end != '.' || l < 0 || l > INT32_MAX) return 0;
    for (size_t i = 0; i < sizeof llama_layer_names / sizeof llama_layer_names[0]; i++)
        if (!strcmp(end + 1, to_hf ? llama_layer_names[i].gg : llama_layer_names[i].hf))
            return snprintf(buf, cap, "%s%ld.%s", to_hf ? "model.layers." : "blk.", l,
                            to_hf ? llama_layer_names[i].hf : llama_layer_names[i].gg) > 0;
    return 0;
}

int kvq_ckpt_safetensors_sniff(const kvq_src *s)
{
    if (s->n < 9) return 0;
    uint64_t n = kvq_rd64(s->p);
    return n >= 2 && n <= ST_MAX_HEADER && n <= s->n - 8 && s->p[8] == '{';
}

/* ---- one file's header ---------------------------------------------------- */
typedef struct {
    const char *name;
    int         dt;       /* index into st_dtypes */
    kvq_shape   shape;
    uint64_t    begin, end;
} st_entry;

static int cmp_begin(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static kvq_err parse_entry(const kvq_json *v, const char *path, st_entry *e)
{
    const kvq_json *dt = kvq_json_get(v, "dtype"), *sh = kvq_json_get(v, "shape"),
                   *off = kvq_json_get(v, "data_offsets");
    e->name = v->key;
    KVQ_FAIL_IF(v->type != KVQ_JSON_OBJECT || !dt || dt->type != KVQ_JSON_STRING || !sh || sh->type != KVQ_JSON_ARRAY ||
                    !off || off->type != KVQ_JSON_ARRAY || off->n != 2 || v->n != 3,
                KVQ_ERR_CORRUPT, "%s: tensor %s: expected {dtype, shape, data_offsets}", path, v->key);
    e->dt = -1;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(dt->str, st_dtypes[i].name)) e->dt = (int)i;
    KVQ_FAIL_IF(e->dt < 0, KVQ_ERR_CORRUPT, "%s: tensor %s: unknown dtype \"%s\"", path, v->key, dt->str);
    KVQ_FAIL_IF(sh->n > KVQ_MAX_DIMS, KVQ_ERR_UNSUPPORTED, "%s: tensor %s has rank %zu (kvq holds up to %d)", path,
                v->key, sh->n, KVQ_MAX_DIMS);
    memset(&e->shape, 0, sizeof e->shape);
    e->shape.ndim = sh->n ? (int)sh->n : 1;
    e->shape.dim[0] = 1;
    for (size_t i = 0; i < sh->n; i++) {
        const kvq_json *d = &sh->items[i];
        KVQ_FAIL_IF(d->type != KVQ_JSON_NUMBER || !d->is_int || d->i < 0 || d->i > KVQ_MAX_DIM, KVQ_ERR_SHAPE,
                    "%s: tensor %s: dimension %zu is not a size", path, v->key, i);
        e->shape.dim[i] = d->i;
    }
    kvq_err err = kvq_shape_check(&e->shape);
    if (err) {
        kvq_error_prefix(v->key);
        kvq_error_prefix(path);
        return err;
    }
    for (int i = 0; i < 2; i++)
        KVQ_FAIL_IF(off->items[i].type != KVQ_JSON_NUMBER || !off->items[i].is_int || off->items[i].i < 0,
                    KVQ_ERR_CORRUPT, "%s: tensor %s: data_offsets must be two non-negative integers", path, v->key);
    e->begin = (uint64_t)off->items[0].i;
    e->end = (uint64_t)off->items[1].i;
    uint64_t bits = (uint64_t)kvq_shape_numel(&e->shape) * st_dtypes[e->dt].bits;
    KVQ_FAIL_IF(e->end < e->begin || bits % 8 || e->end - e->begin != bits / 8, KVQ_ERR_CORRUPT,
                "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 ") do not hold %lld %s values", path, v->key,
                e->begin, e->end, (long long)kvq_shape_numel(&e->shape), st_dtypes[e->dt].name);
    return KVQ_OK;
}

static kvq_err add_meta(const kvq_json *md, const char *path, kvq_model *m)
{
    KVQ_FAIL_IF(md->type != KVQ_JSON_OBJECT, KVQ_ERR_CORRUPT, "%s: __metadata__ is not an object", path);
    for (size_t i = 0; i < md->n; i++) {
        KVQ_FAIL_IF(md->items[i].type != KVQ_JSON_STRING, KVQ_ERR_CORRUPT, "%s: __metadata__ value of \"%s\" is not a "
                    "string", path, md->items[i].key);
        KVQ_TRY(kvq_model_add_meta(m, md->items[i].key, md->items[i].str));
    }
    return KVQ_OK;
}

/* Validates the tiling of the buffer and adds every tensor (raw names). */
static kvq_err add_entries(const kvq_src *s, uint64_t data0, st_entry *e, size_t n, kvq_model *m)
{
    qsort(e, n, sizeof *e, cmp_begin);
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        KVQ_FAIL_IF(e[i].begin != at, KVQ_ERR_CORRUPT, "%s: tensor %s starts at buffer byte %" PRIu64 ", expected %" PRIu64
                    " (hole or overlap)", s->path, e[i].name, e[i].begin, at);
        at = e[i].end;
    }
    KVQ_FAIL_IF(data0 + at != s->n, data0 + at > s->n ? KVQ_ERR_TRUNCATED : KVQ_ERR_CORRUPT,
                "%s: header describes %" PRIu64 " bytes of tensors, the file holds %" PRIu64, s->path, at, s->n - data0);
    for (size_t i = 0; i < n; i++) {
        KVQ_FAIL_IF(st_dtypes[e[i].dt].kvq < 0, KVQ_ERR_UNSUPPORTED, "%s: tensor %s is %s (kvq reads F32, F16, BF16)",
                    s->path, e[i].name, st_dtypes[e[i].dt].name);
        KVQ_TRY(kvq_model_add(m, e[i].name, &e[i].shape, (kvq_dtype)st_dtypes[e[i].dt].kvq, NULL,
                              s->p + data0 + e[i].begin, (size_t)(e[i].end - e[i].begin)));
    }
    return KVQ_OK;
}

static kvq_err read_file(const kvq_src *s, kvq_model *m)
{
    KVQ_FAIL_IF(s->n < 8, KVQ_ERR_TRUNCATED, "%s: %zu bytes, shorter than a safetensors header length", s->path, s->n);
    uint64_t hn = kvq_rd64(s->p);
    KVQ_FAIL_IF(hn > ST_MAX_HEADER, KVQ_ERR_CORRUPT, "%s: header of %" PRIu64 " bytes (limit %llu)", s->path, hn,
                ST_MAX_HEADER);
    KVQ_FAIL_IF(hn > s->n - 8, KVQ_ERR_TRUNCATED, "%s: header of %" PRIu64 " bytes, file has %zu", s->path, hn, s->n);
    KVQ_FAIL_IF(hn < 2 || s->p[8] != '{', KVQ_ERR_CORRUPT, "%s: header does not start with '{'", s->path);
    kvq_json *h;
    KVQ_TRY(kvq_json_parse((const char *)s->p + 8, (size_t)hn, s->path, &h));
    kvq_err e = h->type == KVQ_JSON_OBJECT ? KVQ_OK : KVQ_ERROR(KVQ_ERR_CORRUPT, "%s: header is not an object", s->path);
    st_entry *ent = e ? NULL : malloc((h->n ? h->n : 1) * sizeof *ent);
    if (!e && !ent) e = KVQ_ERROR(KVQ_ERR_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; !e && i < h->n; i++) {
        if (!strcmp(h->items[i].key, "__metadata__")) e = add_meta(&h->items[i], s->path, m);
        else e = parse_entry(&h->items[i], s->path, &ent[n++]);
    }
    if (!e) e = add_entries(s, 8 + hn, ent, n, m);
    free(ent);
    kvq_json_free(h);
    return e;
}

/* ---- configuration ------------------------------------------------------------ */
static double jnum(const kvq_json *o, const char *key, double def)
{
    const kvq_json *v = kvq_json_get(o, key);
    return v && v->type == KVQ_JSON_NUMBER ? v->d : def;
}

static int jint(const kvq_json *o, const char *key, int def)
{
    double d = jnum(o, key, def);
    return d >= 0 && d <= INT32_MAX && d == floor(d) ? (int)d : -1;
}

/* "llama" / "mamba2" from model_type, else from architectures[0]
 * ("LlamaForCausalLM", "Mamba2ForCausalLM"); NULL when neither says. */
static const char *hf_model_type(const kvq_json *j)
{
    const kvq_json *mt = kvq_json_get(j, "model_type"), *ar = kvq_json_get(j, "architectures");
    if (mt && mt->type == KVQ_JSON_STRING) return mt->str;
    if (!ar || ar->type != KVQ_JSON_ARRAY || !ar->n || ar->items[0].type != KVQ_JSON_STRING) return NULL;
    if (!strncmp(ar->items[0].str, "Llama", 5)) return "llama";
    if (!strncmp(ar->items[0].str, "Mamba2", 6)) return "mamba2";
    return ar->items[0].str;
}

static kvq_err hf_config_json(const kvq_json *j, const char *what, kvq_model_config *c)
{
    const char *type = hf_model_type(j);
    KVQ_FAIL_IF(!type, KVQ_ERR_CORRUPT, "%s: neither \"model_type\" nor \"architectures\"", what);
    const kvq_json *tie = kvq_json_get(j, "tie_word_embeddings");
    c->dim = jint(j, "hidden_size", 0);
    c->n_layers = jint(j, "num_hidden_layers", 0);
    c->vocab_size = jint(j, "vocab_size", 0);
    c->norm_eps = (float)jnum(j, "rms_norm_eps", 1e-5);
    c->rope_theta = (float)jnum(j, "rope_theta", 10000.0);
    if (!strcmp(type, "llama")) {
        c->arch = KVQ_ARCH_LLAMA;
        c->hidden_dim = jint(j, "intermediate_size", 0);
        c->n_heads = jint(j, "num_attention_heads", 0);
        c->n_kv_heads = jint(j, "num_key_value_heads", c->n_heads);
        c->head_size = c->n_heads > 0 ? c->dim / c->n_heads : 0;
        c->seq_len = jint(j, "max_position_embeddings", 0);
        c->rope = KVQ_ROPE_HALF;
        c->shared_classifier = tie && tie->type == KVQ_JSON_BOOL && tie->boolean;
    } else if (!strcmp(type, "mamba2")) {
        c->arch = KVQ_ARCH_MAMBA2;
        c->hidden_dim = jint(j, "expand", 2) * c->dim;
        c->n_heads = jint(j, "num_heads", 0);
        c->n_kv_heads = c->n_heads;
        c->head_size = jint(j, "head_dim", 0);
        c->seq_len = KVQ_MAMBA2_SEQ_LEN;
        c->ssm_state = jint(j, "state_size", 0);
        c->ssm_groups = jint(j, "n_groups", 1);
        c->conv_kernel = jint(j, "conv_kernel", 4);
        c->shared_classifier = !tie || tie->type != KVQ_JSON_BOOL || tie->boolean;
    } else {
        return KVQ_ERROR(KVQ_ERR_UNSUPPORTED, "%s: model type \"%s\" (kvq reads llama and mamba2)", what, type);
    }
    return kvq_model_config_check(c, what);
}

kvq_err kvq_ckpt_hf_config(const char *json, size_t n, const char *what, kvq_model_config *c)
{
    kvq_json *j;
    KVQ_TRY(kvq_json_parse(json, n, what, &j));
    kvq_err e = hf_config_json(j, what, c);
    kvq_json_free(j);
    return e;
}

/* Hyperparameters kvq wrote into __metadata__ (ckpt_safetensors_write.c). */
static int config_from_meta(const kvq_model *m, kvq_model_config *c)
{
    static const char *const keys[] = {"kvq.arch", "kvq.dim", "kvq.hidden_dim", "kvq.n_layers", "kvq.n_heads",
                                       "kvq.n_kv_heads", "kvq.head_size", "kvq.vocab_size", "kvq.seq_len",
                                       "kvq.norm_eps", "kvq.rope_theta", "kvq.rope", "kvq.shared_classifier"};
    double v[13];
    for (int i = 0; i < 13; i++) {
        const char *s = kvq_model_meta_get(m, keys[i]);
        char *end;
        if (!s) return 0;
        v[i] = strtod(s, &end);
        if (end == s || *end || !isfinite(v[i]) || fabs(v[i]) > INT32_MAX) return -1;
    }
    c->arch = v[0] == 1 ? KVQ_ARCH_MAMBA2 : KVQ_ARCH_LLAMA;
    c->dim = (int)v[1], c->hidden_dim = (int)v[2], c->n_layers = (int)v[3], c->n_heads = (int)v[4];
    c->n_kv_heads = (int)v[5], c->head_size = (int)v[6], c->vocab_size = (int)v[7], c->seq_len = (int)v[8];
    c->norm_eps = (float)v[9], c->rope_theta = (float)v[10];
    c->rope = v[11] == 1 ? KVQ_ROPE_HALF : KVQ_ROPE_ADJACENT;
    c->shared_classifier = v[12] != 0;
    return 1;
}

static kvq_err load_config(kvq_model *m, const char *dir, const char *what)
{
    int r = config_from_meta(m, &m->cfg);
    KVQ_FAIL_IF(r < 0, KVQ_ERR_CORRUPT, "%s: malformed kvq.* hyperparameters in __metadata__", what);
    if (r > 0) return kvq_model_config_check(&m->cfg, what);
    KVQ_FAIL_IF(!dir, KVQ_ERR_NOT_FOUND, "%s: no kvq.* hyperparameters and no config.json to read them from", what);
    char path[4096];
    kvq_map map;
    snprintf(path, sizeof path, "%s/config.json", dir);
    kvq_err e = kvq_map_open(path, &map);
    if (e) return KVQ_ERROR(KVQ_ERR_NOT_FOUND, "%s: hyperparameters need %s beside it: %s", what, path,
                            kvq_last_error_detail());
    e = kvq_ckpt_hf_config((const char *)map.p, map.n, path, &m->cfg);
    kvq_map_close(&map);
    return e;
}

/* Renames HF Llama tensors to canonical names; checks the set. */
static kvq_err finish(kvq_model *m, const char *what)
{
    if (m->cfg.arch == KVQ_ARCH_MAMBA2) return kvq_model_mamba2_sync(m, what);
    if (m->cfg.arch != KVQ_ARCH_LLAMA) return KVQ_OK;
    for (size_t i = 0; i < m->n_w; i++) {
        char nm[KVQ_NAME_MAX];
        if (!kvq_st_llama_name(m->w[i].name, 0, nm, sizeof nm)) continue;
        char *d = kvq_strdup(nm);
        KVQ_FAIL_IF(!d, KVQ_ERR_NOMEM, "out of memory");
        free((char *)m->w[i].name);
        m->w[i].name = d;
    }
    /* Renaming must not make two tensors share a name (a file holding both
     * model.norm.weight and output_norm.weight). */
    for (size_t i = 0; i < m->n_w; i++)
        KVQ_FAIL_IF(kvq_model_weight(m, m->w[i].name) != &m->w[i], KVQ_ERR_CORRUPT,
                    "%s: tensor %s appears twice after mapping HF names", what, m->w[i].name);
    if (kvq_model_weight(m, "output.weight")) m->cfg.shared_classifier = 0;
    return kvq_model_check_llama(m, what);
}

kvq_err kvq_ckpt_safetensors_read(const kvq_src *s, const char *dir, kvq_model *m)
{
    m->format = KVQ_FORMAT_SAFETENSORS;
    m->version = 0;
    KVQ_TRY(read_file(s, m));
    KVQ_TRY(load_config(m, dir, s->path));
    return finish(m, s->path);
}

/* ---- sharded checkpoints ---------------------------------------------------------- */
static kvq_err read_shard(kvq_model *m, const char *dir, const char *file)
{
    char path[4096];
    kvq_map map;
    KVQ_FAIL_IF(!*file || strchr(file, '/') || !strcmp(file, "..") || !strcmp(file, "."), KVQ_ERR_CORRUPT,
                "index names shard \"%s\" (a plain file name is required)", file);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    KVQ_TRY(kvq_map_open(path, &map));
    kvq_src s = {map.p, map.n, map.path};
    kvq_err e = read_file(&s, m);
    if (e) {
        kvq_map_close(&map);
        return e;
    }
    return kvq_model_keep_map(m, &map);
}

static kvq_err read_index(const kvq_json *j, const char *dir, const char *what, kvq_model *m)
{
    const kvq_json *wm = kvq_json_get(j, "weight_map");
    KVQ_FAIL_IF(!wm || wm->type != KVQ_JSON_OBJECT, KVQ_ERR_CORRUPT, "%s: no \"weight_map\" object", what);
    for (size_t i = 0; i < wm->n; i++) {
        const kvq_json *f = &wm->items[i];
        KVQ_FAIL_IF(f->type != KVQ_JSON_STRING, KVQ_ERR_CORRUPT, "%s: weight_map[\"%s\"] is not a file name", what, f->key);
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++) seen = !strcmp(wm->items[k].str, f->str);
        if (seen) continue;
        KVQ_FAIL_IF(m->n_maps >= ST_MAX_SHARDS, KVQ_ERR_CORRUPT, "%s: more than %d shards", what, ST_MAX_SHARDS);
        kvq_err e = read_shard(m, dir, f->str);
        if (e) {
            kvq_error_prefix(what);
            return e;
        }
    }
    /* Every tensor of every shard must be the one the index places there. */
    KVQ_FAIL_IF(m->n_w != wm->n, KVQ_ERR_CORRUPT, "%s: index lists %zu tensors, the shards hold %zu", what, wm->n, m->n_w);
    for (size_t i = 0; i < wm->n; i++)
        KVQ_FAIL_IF(!kvq_model_weight(m, wm->items[i].key), KVQ_ERR_CORRUPT, "%s: tensor %s is in no shard", what,
                    wm->items[i].key);
    return KVQ_OK;
}

kvq_err kvq_ckpt_safetensors_read_index(const char *index_path, kvq_model *m)
{
    char dir[4096];
    const char *sl = strrchr(index_path, '/');
    snprintf(dir, sizeof dir, "%.*s", sl ? (int)(sl - index_path) : 1, sl ? index_path : ".");
    kvq_map map;
    KVQ_TRY(kvq_map_open(index_path, &map));
    kvq_json *j = NULL;
    kvq_err e = kvq_json_parse((const char *)map.p, map.n, index_path, &j);
    kvq_map_close(&map);
    m->format = KVQ_FORMAT_SAFETENSORS;
    if (!e) e = read_index(j, dir, index_path, m);
    kvq_json_free(j);
    if (!e) e = load_config(m, dir, index_path);
    if (!e) e = finish(m, index_path);
    return e;
}
