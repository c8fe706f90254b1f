/*
 * model.c — the model object: weight directory, owned memory and file
 * mappings, embedded tokenizer, metadata; format detection and dispatch
 * to the checkpoint readers (ckpt_*.c) and writers; row access to weights.
 *
 * Formats: formats-and-engines.md §1 (safetensors), §2 (GGUF), §3
 * (llama2.c) and FORMAT.md §2 (.kvq).  Detection follows §4: magic first
 * (GGUF, KVQM, a safetensors header), then the exact size test of a
 * llama2.c v0 file.  Weights are never copied: plain weights point into
 * the mmap'd file, encoded weights at their payloads.
 *
 * Reconstructed where the sources are silent: a llama2.c .bin carries no
 * tokenizer, so loading one picks up `tokenizer.bin` or `tok<vocab>.bin`
 * from the same directory when present (llama2.c's own naming).
 */
#include "model_internal.h"

#include <stdlib.h>
#include <sys/stat.h>

#define TOK_MAX_PIECE 4096 /* longest tokenizer piece we accept (bytes) */

/* ---- names ---------------------------------------------------------------- */
const char *kvq_format_name(kvq_format f)
{
    static const char *const names[] = {"llama2.c", "gguf", "safetensors", "kvq"};
    return (unsigned)f < sizeof names / sizeof names[0] ? names[f] : "?";
}

const char *kvq_arch_name(kvq_arch a)
{
    return a == KVQ_ARCH_LLAMA ? "llama" : a == KVQ_ARCH_MAMBA2 ? "mamba2" : "?";
}

/* ---- building --------------------------------------------------------------- */
kvq_err kvq_model_new(kvq_format f, kvq_model **out)
{
    kvq_model *m = calloc(1, sizeof *m);
    KVQ_FAIL_IF(!m, KVQ_ERR_NOMEM, "out of memory");
    m->format = f;
    m->cfg.norm_eps = 1e-5f;
    m->cfg.rope_theta = 10000.0f;
    *out = m;
    return KVQ_OK;
}

void kvq_model_free(kvq_model *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_w; i++) {
        free((char *)m->w[i].name);
        kvq_ctx_free(m->w[i].codec);
    }
    for (size_t i = 0; i < m->n_maps; i++) kvq_map_close(&m->maps[i]);
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    for (size_t i = 0; i < m->n_meta; i++) {
        free(m->meta[i].key);
        free(m->meta[i].value);
    }
    free(m->w);
    free(m->maps);
    free(m->owned);
    free(m->meta);
    free(m->tok);
    free(m);
}

static kvq_err check_plain_size(const char *name, const kvq_shape *s, kvq_dtype dt, size_t size)
{
    size_t es = kvq_dtype_size(dt), need;
    KVQ_FAIL_IF(dt != KVQ_DTYPE_F32 && dt != KVQ_DTYPE_F16 && dt != KVQ_DTYPE_BF16, KVQ_ERR_UNSUPPORTED,
                "tensor %s: storage type %s is not a weight type", name, kvq_dtype_name(dt));
    KVQ_FAIL_IF(kvq_mul_ov((size_t)kvq_shape_numel(s), es, &need) || need != size, KVQ_ERR_CORRUPT,
                "tensor %s: %zu bytes for %lld %s values", name, size, (long long)kvq_shape_numel(s),
                kvq_dtype_name(dt));
    return KVQ_OK;
}

kvq_err kvq_model_add(kvq_model *m, const char *name, const kvq_shape *s, kvq_dtype dt, kvq_ctx *codec,
                      const void *data, size_t size)
{
    kvq_err e = KVQ_OK;
    if (strlen(name) >= KVQ_NAME_MAX)
        e = KVQ_ERROR(KVQ_ERR_CORRUPT, "tensor name of %zu bytes (max %d)", strlen(name), KVQ_NAME_MAX - 1);
    else if ((e = kvq_shape_check(s)) != KVQ_OK)
        kvq_error_prefix(name);
    else if (!codec)
        e = check_plain_size(name, s, dt, size);
    if (!e && kvq_model_weight(m, name))
        e = KVQ_ERROR(KVQ_ERR_CORRUPT, "tensor %s appears twice", name);
    if (!e && m->n_w >= KVQ_MODEL_MAX_WEIGHTS)
        e = KVQ_ERROR(KVQ_ERR_CORRUPT, "more than %d tensors", KVQ_MODEL_MAX_WEIGHTS);
    if (!e && m->n_w == m->cap_w) {
        size_t cap = m->cap_w ? 2 * m->cap_w : 64;
        kvq_weight *w = realloc(m->w, cap * sizeof *w);
        if (!w) e = KVQ_ERROR(KVQ_ERR_NOMEM, "out of memory for %zu tensors", cap);
        else m->w = w, m->cap_w = cap;
    }
    char *nm = e ? NULL : kvq_strdup(name);
    if (!e && !nm) e = KVQ_ERROR(KVQ_ERR_NOMEM, "out of memory");
    if (e) {
        kvq_ctx_free(codec);
        return e;
    }
    kvq_weight *w = &m->w[m->n_w++];
    w->name = nm;
    w->shape = *s;
    w->dtype = dt;
    w->codec = codec;
    w->data = data;
    w->size = size;
    return KVQ_OK;
}

kvq_err kvq_model_own(kvq_model *m, void *p)
{
    void **o = realloc(m->owned, (m->n_owned + 1) * sizeof *o);
    if (!o) {
        free(p);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "out of memory");
    }
    m->owned = o;
    m->owned[m->n_owned++] = p;
    return KVQ_OK;
}

kvq_err kvq_model_keep_map(kvq_model *m, kvq_map *map)
{
    kvq_map *o = realloc(m->maps, (m->n_maps + 1) * sizeof *o);
    if (!o) {
        kvq_map_close(map);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "out of memory");
    }
    m->maps = o;
    m->maps[m->n_maps++] = *map;
    memset(map, 0, sizeof *map);
    return KVQ_OK;
}

kvq_err kvq_model_add_meta(kvq_model *m, const char *key, const char *value)
{
    kvq_meta_kv *o = realloc(m->meta, (m->n_meta + 1) * sizeof *o);
    KVQ_FAIL_IF(!o, KVQ_ERR_NOMEM, "out of memory");
    m->meta = o;
    char *k = kvq_strdup(key), *v = kvq_strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "out of memory");
    }
    m->meta[m->n_meta].key = k;
    m->meta[m->n_meta++].value = v;
    return KVQ_OK;
}

const char *kvq_model_meta_get(const kvq_model *m, const char *key)
{
    for (size_t i = 0; i < m->n_meta; i++)
        if (!strcmp(m->meta[i].key, key)) return m->meta[i].value;
    return NULL;
}

/* ---- accessors --------------------------------------------------------------- */
kvq_format kvq_model_format(const kvq_model *m) { return m->format; }
int kvq_model_format_version(const kvq_model *m) { return m->version; }
const kvq_model_config *kvq_model_config_get(const kvq_model *m) { return &m->cfg; }
size_t kvq_model_n_weights(const kvq_model *m) { return m->n_w; }
const kvq_weight *kvq_model_weight_at(const kvq_model *m, size_t i) { return i < m->n_w ? &m->w[i] : NULL; }
size_t kvq_model_n_meta(const kvq_model *m) { return m->n_meta; }

const kvq_weight *kvq_model_weight(const kvq_model *m, const char *name)
{
    for (size_t i = 0; i < m->n_w; i++)
        if (!strcmp(m->w[i].name, name)) return &m->w[i];
    return NULL;
}

kvq_err kvq_model_meta_at(const kvq_model *m, size_t i, const char **key, const char **value)
{
    KVQ_FAIL_IF(i >= m->n_meta, KVQ_ERR_ARG, "metadata index %zu of %zu", i, m->n_meta);
    *key = m->meta[i].key;
    *value = m->meta[i].value;
    return KVQ_OK;
}

const void *kvq_model_tokenizer(const kvq_model *m, size_t *n)
{
    if (n) *n = m->tok ? m->tok_n : 0;
    return m->tok;
}

/* ---- tokenizer images ---------------------------------------------------------- */
kvq_err kvq_tokenizer_check(const uint8_t *p, size_t n, int vocab, const char *what)
{
    kvq_rd r = {p, n, 0, what};
    uint32_t maxlen, len, score;
    KVQ_TRY(kvq_rd_u32(&r, &maxlen));
    KVQ_FAIL_IF(maxlen > TOK_MAX_PIECE, KVQ_ERR_CORRUPT, "%s: max_token_length %u", what, maxlen);
    for (int i = 0; i < vocab; i++) {
        const uint8_t *b;
        KVQ_TRY(kvq_rd_u32(&r, &score));
        KVQ_TRY(kvq_rd_u32(&r, &len));
        KVQ_FAIL_IF(len > maxlen, KVQ_ERR_CORRUPT, "%s: token %d has %u bytes, max_token_length %u", what, i,
                    len, maxlen);
        KVQ_TRY(kvq_rd_bytes(&r, len, &b));
    }
    KVQ_FAIL_IF(r.off != n, KVQ_ERR_CORRUPT, "%s: %zu bytes after %d tokens", what, n - r.off, vocab);
    return KVQ_OK;
}

kvq_err kvq_model_set_tokenizer(kvq_model *m, const void *bytes, size_t n)
{
    KVQ_FAIL_IF(!m || (!bytes && n), KVQ_ERR_ARG, "kvq_model_set_tokenizer: NULL argument");
    KVQ_TRY(kvq_tokenizer_check(bytes, n, m->cfg.vocab_size, "tokenizer"));
    uint8_t *t = malloc(n ? n : 1);
    KVQ_FAIL_IF(!t, KVQ_ERR_NOMEM, "out of memory");
    memcpy(t, bytes, n);
    free(m->tok);
    m->tok = t;
    m->tok_n = n;
    return KVQ_OK;
}

/* ---- consistency checks ----------------------------------------------------------- */
#define CFG_MAX_DIM   (1 << 20) /* widest residual / FFN we accept */
#define CFG_MAX_LAYER 4096
#define CFG_MAX_VOCAB (1 << 24)

kvq_err kvq_model_config_check(const kvq_model_config *c, const char *what)
{
    KVQ_FAIL_IF(c->dim <= 0 || c->dim > CFG_MAX_DIM || c->n_layers <= 0 || c->n_layers > CFG_MAX_LAYER ||
                    c->vocab_size <= 0 || c->vocab_size > CFG_MAX_VOCAB || c->seq_len < 0,
                KVQ_ERR_SHAPE, "%s: absurd hyperparameters (dim %d, layers %d, vocab %d, seq_len %d)", what,
                c->dim, c->n_layers, c->vocab_size, c->seq_len);
    if (c->arch != KVQ_ARCH_LLAMA) return KVQ_OK;
    KVQ_FAIL_IF(c->hidden_dim <= 0 || c->hidden_dim > CFG_MAX_DIM || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
                    c->n_heads > c->dim || c->dim % c->n_heads || c->n_heads % c->n_kv_heads ||
                    c->head_size != c->dim / c->n_heads,
                KVQ_ERR_SHAPE, "%s: inconsistent heads (dim %d, hidden %d, heads %d, kv heads %d)", what, c->dim,
                c->hidden_dim, c->n_heads, c->n_kv_heads);
    KVQ_FAIL_IF(c->rope != KVQ_ROPE_ADJACENT && c->rope != KVQ_ROPE_HALF, KVQ_ERR_CORRUPT, "%s: rope layout %d",
                what, (int)c->rope);
    return KVQ_OK;
}

/* Mamba-2 hyperparameters beyond the fixed record (model_internal.h). */
kvq_err kvq_model_mamba2_sync(kvq_model *m, const char *what)
{
    static const char *const keys[3] = {"kvq.ssm_state", "kvq.ssm_groups", "kvq.conv_kernel"};
    int *f[3] = {&m->cfg.ssm_state, &m->cfg.ssm_groups, &m->cfg.conv_kernel};
    for (int i = 0; i < 3; i++) {
        const char *v = kvq_model_meta_get(m, keys[i]);
        if (*f[i] > 0 && !v) {
            char buf[24];
            snprintf(buf, sizeof buf, "%d", *f[i]);
            KVQ_TRY(kvq_model_add_meta(m, keys[i], buf));
            continue;
        }
        KVQ_FAIL_IF(!v, KVQ_ERR_CORRUPT, "%s: Mamba-2 model without %s (config.json state_size, n_groups, "
                    "conv_kernel)", what, keys[i]);
        char *end;
        long n = strtol(v, &end, 10);
        KVQ_FAIL_IF(end == v || *end || n < 1 || n > CFG_MAX_DIM, KVQ_ERR_CORRUPT, "%s: metadata %s = \"%s\"",
                    what, keys[i], v);
        *f[i] = (int)n;
    }
    return KVQ_OK;
}

static kvq_err expect_weight(const kvq_model *m, const char *name, int64_t d0, int64_t d1, const char *what)
{
    const kvq_weight *w = kvq_model_weight(m, name);
    KVQ_FAIL_IF(!w, KVQ_ERR_NOT_FOUND, "%s: tensor %s is missing", what, name);
    int ok = d1 ? (w->shape.ndim == 2 && w->shape.dim[0] == d0 && w->shape.dim[1] == d1)
                : (w->shape.ndim == 1 && w->shape.dim[0] == d0);
    char got[64];
    KVQ_FAIL_IF(!ok, KVQ_ERR_SHAPE, "%s: tensor %s has shape %s, config implies [%lld%s%lld]", what, name,
                kvq_shape_format(&w->shape, got, sizeof got), (long long)d0, d1 ? ", " : "",
                d1 ? (long long)d1 : 0LL);
    return KVQ_OK;
}

kvq_err kvq_model_check_llama(const kvq_model *m, const char *what)
{
    const kvq_model_config *c = &m->cfg;
    int64_t dim = c->dim, kv = (int64_t)c->n_kv_heads * c->head_size, hid = c->hidden_dim;
    char n[64];
    KVQ_TRY(expect_weight(m, "token_embd.weight", c->vocab_size, dim, what));
    KVQ_TRY(expect_weight(m, "output_norm.weight", dim, 0, what));
    if (!c->shared_classifier) KVQ_TRY(expect_weight(m, "output.weight", c->vocab_size, dim, what));
    static const struct {
        const char *suffix;
        int rows, cols; /* 0 dim, 1 kv, 2 hidden; cols -1: 1-D */
    } kinds[] = {{"attn_norm", 0, -1}, {"attn_q", 0, 0}, {"attn_k", 1, 0}, {"attn_v", 1, 0},
                 {"attn_output", 0, 0}, {"ffn_norm", 0, -1}, {"ffn_gate", 2, 0}, {"ffn_down", 0, 2},
                 {"ffn_up", 2, 0}};
    const int64_t size[3] = {dim, kv, hid};
    for (int l = 0; l < c->n_layers; l++)
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            snprintf(n, sizeof n, "blk.%d.%s.weight", l, kinds[k].suffix);
            KVQ_TRY(expect_weight(m, n, size[kinds[k].rows], kinds[k].cols < 0 ? 0 : size[kinds[k].cols], what));
        }
    return KVQ_OK;
}

void kvq_rope_permute_rows(const uint8_t *src, uint8_t *dst, int n_heads, int hs, size_t row_bytes, int to_half)
{
    /* Per head, ADJACENT row 2j is HALF row j and ADJACENT row 2j+1 is HALF
     * row j + hs/2 (formats-and-engines.md §2.3). */
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < hs / 2; j++)
            for (int t = 0; t < 2; t++) {
                size_t adj = (size_t)h * hs + 2 * j + t, half = (size_t)h * hs + j + (size_t)t * (hs / 2);
                size_t from = to_half ? adj : half, to = to_half ? half : adj;
                memcpy(dst + to * row_bytes, src + from * row_bytes, row_bytes);
            }
}

/* ---- weights ------------------------------------------------------------------ */
kvq_err kvq_weight_rows(const kvq_weight *w, int64_t r0, int64_t r1, float *out)
{
    int64_t rows = kvq_shape_rows(&w->shape), cols = kvq_shape_cols(&w->shape);
    KVQ_FAIL_IF(r0 < 0 || r1 < r0 || r1 > rows, KVQ_ERR_ARG, "%s: rows [%lld, %lld) of %lld", w->name,
                (long long)r0, (long long)r1, (long long)rows);
    if (w->codec) {
        kvq_err e = kvq_ctx_decode_rows(w->codec, w->data, w->size, &w->shape, r0, r1, out);
        if (e) kvq_error_prefix(w->name);
        return e;
    }
    size_t n = (size_t)((r1 - r0) * cols), off = (size_t)(r0 * cols);
    const uint8_t *p = w->data;
    if (w->dtype == KVQ_DTYPE_F32) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(out, p + 4 * off, 4 * n); /* stored little-endian: the host's order */
#else
        for (size_t i = 0; i < n; i++) out[i] = kvq_rdf32(p + 4 * (off + i));
#endif
    } else {
        int f16 = w->dtype == KVQ_DTYPE_F16;
        for (size_t i = 0; i < n; i++) {
            uint16_t h = kvq_rd16(p + 2 * (off + i));
            out[i] = f16 ? kvq_f16_to_f32(h) : kvq_bf16_to_f32(h);
        }
    }
    return KVQ_OK;
}

double kvq_weight_bits(const kvq_weight *w)
{
    int64_t n = kvq_shape_numel(&w->shape);
    return n ? 8.0 * (double)w->size / (double)n : 0.0;
}

char *kvq_weight_type_name(const kvq_weight *w, char *buf, size_t cap)
{
    if (w->codec)
        kvq_spec_format(kvq_ctx_codec(w->codec), kvq_ctx_params(w->codec), buf, cap);
    else
        snprintf(buf, cap, "%s", kvq_dtype_name(w->dtype));
    return buf;
}

/* ---- loading -------------------------------------------------------------------- */
static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static kvq_err read_image(const kvq_src *s, const char *dir, kvq_model *m)
{
    if (s->n >= 4 && !memcmp(s->p, KVQ_GGUF_MAGIC, 4)) return kvq_ckpt_gguf_read(s, m);
    if (s->n >= 4 && !memcmp(s->p, KVQ_KVQ_MAGIC, 4)) return kvq_ckpt_kvq_read(s, m);
    if (kvq_ckpt_safetensors_sniff(s)) return kvq_ckpt_safetensors_read(s, dir, m);
    /* Last resort: a llama2.c file, recognised only by the exact size its
     * header implies; the reader's error says what it expected. */
    return kvq_ckpt_llama2c_read(s, m);
}

/* llama2.c files carry no tokenizer: use tokenizer.bin / tok<vocab>.bin
 * beside the checkpoint when one validates. */
static void attach_sibling_tokenizer(kvq_model *m, const char *dir)
{
    char path[4096];
    const char *names[2] = {"tokenizer.bin", NULL};
    char tokn[32];
    snprintf(tokn, sizeof tokn, "tok%d.bin", m->cfg.vocab_size);
    names[1] = tokn;
    for (int i = 0; i < 2 && !m->tok; i++) {
        kvq_map map;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (kvq_map_open(path, &map) != KVQ_OK) continue;
        (void)kvq_model_set_tokenizer(m, map.p, map.n);
        kvq_map_close(&map);
    }
    kvq_clear_error();
}

static void dir_of(const char *path, char *dir, size_t cap)
{
    const char *sl = strrchr(path, '/');
    if (!sl) snprintf(dir, cap, ".");
    else snprintf(dir, cap, "%.*s", (int)(sl - path) > 0 ? (int)(sl - path) : 1, path);
}

static kvq_err load_file(const char *path, kvq_model *m)
{
    char dir[4096];
    kvq_map map;
    dir_of(path, dir, sizeof dir);
    KVQ_TRY(kvq_map_open(path, &map));
    kvq_src s = {map.p, map.n, map.path};
    kvq_err e = read_image(&s, dir, m);
    if (e) {
        kvq_error_prefix(path);
        kvq_map_close(&map);
        return e;
    }
    KVQ_TRY(kvq_model_keep_map(m, &map));
    if (m->format == KVQ_FORMAT_LLAMA2C) attach_sibling_tokenizer(m, dir);
    return KVQ_OK;
}

kvq_err kvq_model_load(const char *path, kvq_model **out)
{
    KVQ_FAIL_IF(!path || !out, KVQ_ERR_ARG, "kvq_model_load: NULL argument");
    *out = NULL;
    kvq_model *m = NULL;
    KVQ_TRY(kvq_model_new(KVQ_FORMAT_LLAMA2C, &m));
    struct stat st;
    kvq_err e;
    char idx[4096];
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", path);
        if (stat(idx, &st) == 0) {
            e = kvq_ckpt_safetensors_read_index(idx, m);
        } else {
            snprintf(idx, sizeof idx, "%s/model.safetensors", path);
            e = load_file(idx, m);
        }
    } else if (has_suffix(path, ".index.json")) {
        e = kvq_ckpt_safetensors_read_index(path, m);
    } else {
        e = load_file(path, m);
    }
    if (e) {
        kvq_model_free(m);
        return e;
    }
    *out = m;
    return KVQ_OK;
}

kvq_err kvq_model_load_memory(const void *data, size_t n, const char *name, kvq_model **out)
{
    KVQ_FAIL_IF(!out || (!data && n), KVQ_ERR_ARG, "kvq_model_load_memory: NULL argument");
    *out = NULL;
    kvq_model *m = NULL;
    KVQ_TRY(kvq_model_new(KVQ_FORMAT_LLAMA2C, &m));
    kvq_src s = {data ? data : (const void *)"", n, name ? name : "memory"};
    kvq_err e = read_image(&s, NULL, m);
    if (e) {
        kvq_model_free(m);
        return e;
    }
    *out = m;
    return KVQ_OK;
}

/* ---- saving ----------------------------------------------------------------------- */
kvq_err kvq_format_from_path(const char *path, kvq_format *f)
{
    static const struct {
        const char *ext;
        kvq_format f;
    } exts[] = {{".kvq", KVQ_FORMAT_KVQ}, {".gguf", KVQ_FORMAT_GGUF}, {".safetensors", KVQ_FORMAT_SAFETENSORS},
                {".bin", KVQ_FORMAT_LLAMA2C}};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (has_suffix(path, exts[i].ext)) {
            *f = exts[i].f;
            return KVQ_OK;
        }
    return KVQ_ERROR(KVQ_ERR_ARG, "%s: cannot tell the format from the name (use .kvq, .gguf or .safetensors)",
                     path);
}

kvq_err kvq_format_from_name(const char *name, kvq_format *f)
{
    for (int i = KVQ_FORMAT_LLAMA2C; i <= KVQ_FORMAT_KVQ; i++)
        if (name && !strcmp(name, kvq_format_name((kvq_format)i))) {
            *f = (kvq_format)i;
            return KVQ_OK;
        }
    return KVQ_ERROR(KVQ_ERR_ARG, "unknown format '%s' (kvq, gguf, safetensors)", name ? name : "(null)");
}

kvq_err kvq_model_save(const kvq_model *m, const char *path, kvq_format fmt, int overwrite)
{
    KVQ_FAIL_IF(!m || !path, KVQ_ERR_ARG, "kvq_model_save: NULL argument");
    kvq_err (*writer)(const kvq_model *, kvq_out *) =
        fmt == KVQ_FORMAT_KVQ ? kvq_ckpt_kvq_write
        : fmt == KVQ_FORMAT_GGUF ? kvq_ckpt_gguf_write
        : fmt == KVQ_FORMAT_SAFETENSORS ? kvq_ckpt_safetensors_write : NULL;
    KVQ_FAIL_IF(!writer, KVQ_ERR_UNSUPPORTED, "%s: writing %s files is not supported", path, kvq_format_name(fmt));
    kvq_out o;
    KVQ_TRY(kvq_out_open(&o, path, overwrite));
    kvq_err e = writer(m, &o);
    if (e) {
        kvq_error_prefix(path);
        kvq_out_abort(&o);
        return e;
    }
    return kvq_out_commit(&o);
}
