/*
 * ckpt_gguf.c — GGUF reader, versions 1 to 3 (formats-and-engines.md §2.1,
 * §2.2), and the table of ggml tensor types kvq handles (§2.4).
 *
 * Layout: header (magic, version, counts), metadata key/values, tensor
 * infos, padding to general.alignment (32 when absent), tensor data.
 * v1 differs only in widths: counts, string lengths, array counts and
 * dimensions are u32 there.  Big-endian files are recognised the way ggml
 * does ((version & 0xFFFF) == 0 read as little-endian) and refused.
 *
 * Every count is capped and checked against the bytes left before it is
 * trusted, strings are bounded, nesting of arrays is limited, each tensor
 * must lie wholly inside the file at an aligned offset, and its size must
 * be what its type and dimensions imply.  Dimensions are reversed into
 * row-major order (ne[0] is the contiguous axis).  f32/f16/bf16 tensors are
 * plain zero-copy views; q8_0/q4_0/mxfp4 tensors become weights encoded by the
 * codecs of those names, whose payload is exactly ggml's blocks.
 *
 * Scalar metadata is kept as text in the model's metadata (so `kvq
 * inspect` can show it); the llama hyperparameters are read back from it.
 * tokenizer.ggml.tokens/scores become an in-memory llama2.c tokenizer.bin.
 */
#include "model_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#define GGUF_MAX_TENSORS  65536     /* tensor infos we accept            */
#define GGUF_MAX_KV       65536     /* metadata pairs we accept          */
#define GGUF_MAX_KEY      65535     /* key bytes (spec limit)            */
#define GGUF_MAX_STRING   (1 << 24) /* bytes of one string value         */
#define GGUF_MAX_NAME     (KVQ_NAME_MAX - 1)
#define GGUF_MAX_DEPTH    2         /* arrays of arrays, no deeper       */
#define GGUF_ALIGN_DEF    32        /* general.alignment when absent     */
#define GGUF_ALIGN_MAX    (1 << 16)
#define GGUF_MAX_DIMS     4
#define SP_SPACE          "\xE2\x96\x81" /* U+2581, SentencePiece's space */

enum {
    GV_U8 = 0, GV_I8 = 1, GV_U16 = 2, GV_I16 = 3, GV_U32 = 4, GV_I32 = 5, GV_F32 = 6, GV_BOOL = 7,
    GV_STRING = 8, GV_ARRAY = 9, GV_U64 = 10, GV_I64 = 11, GV_F64 = 12, GV__N
};

/* ---- ggml types ------------------------------------------------------------- */
static const kvq_ggml_type ggml_types[] = {
    {0, "f32", 1, 4, 1, KVQ_DTYPE_F32},   {1, "f16", 1, 2, 1, KVQ_DTYPE_F16},
    {30, "bf16", 1, 2, 1, KVQ_DTYPE_BF16}, {8, "q8_0", 32, 34, 0, KVQ_DTYPE_F32},
    {2, "q4_0", 32, 18, 0, KVQ_DTYPE_F32}, {39, "mxfp4", 32, 17, 0, KVQ_DTYPE_F32},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

const kvq_ggml_type *kvq_ggml_type_by_id(uint32_t id)
{
    for (size_t i = 0; i < N_GGML_TYPES; i++)
        if (ggml_types[i].id == id) return &ggml_types[i];
    return NULL;
}

const kvq_ggml_type *kvq_ggml_type_by_name(const char *name)
{
    for (size_t i = 0; i < N_GGML_TYPES; i++)
        if (!strcmp(ggml_types[i].name, name)) return &ggml_types[i];
    return NULL;
}

/* ---- primitive reads ----------------------------------------------------------- */
typedef struct {
    kvq_rd r;
    int    version;
    size_t tok_off, tok_n;    /* tokenizer.ggml.tokens elements, or 0   */
    size_t score_off, score_n;
} gguf_rd;

static kvq_err rd_count(gguf_rd *g, uint64_t *v)
{
    if (g->version == 1) {
        uint32_t u;
        KVQ_TRY(kvq_rd_u32(&g->r, &u));
        *v = u;
        return KVQ_OK;
    }
    return kvq_rd_u64(&g->r, v);
}

static kvq_err rd_str(gguf_rd *g, size_t max, const uint8_t **p, size_t *n)
{
    uint64_t len;
    size_t at = g->r.off;
    KVQ_TRY(rd_count(g, &len));
    KVQ_FAIL_IF(len > max, KVQ_ERR_CORRUPT, "%s: string of %" PRIu64 " bytes at offset %zu (max %zu)",
                g->r.what, len, at, max);
    *n = (size_t)len;
    return kvq_rd_bytes(&g->r, (size_t)len, p);
}

static size_t scalar_size(uint32_t t)
{
    static const uint8_t sz[GV__N] = {[GV_U8] = 1, [GV_I8] = 1, [GV_U16] = 2, [GV_I16] = 2, [GV_U32] = 4,
                                      [GV_I32] = 4, [GV_F32] = 4, [GV_BOOL] = 1, [GV_U64] = 8,
                                      [GV_I64] = 8, [GV_F64] = 8};
    return t < GV__N ? sz[t] : 0;
}

/* Reads one scalar as text (for metadata) and as a double. */
static kvq_err rd_scalar(gguf_rd *g, uint32_t t, char *txt, size_t cap)
{
    const uint8_t *b;
    KVQ_FAIL_IF(g->version == 1 && t >= GV_U64, KVQ_ERR_CORRUPT, "%s: value type %u at offset %zu is not in GGUF v1",
                g->r.what, t, g->r.off);
    KVQ_TRY(kvq_rd_bytes(&g->r, scalar_size(t), &b));
    switch (t) {
    case GV_U8: snprintf(txt, cap, "%u", b[0]); break;
    case GV_I8: snprintf(txt, cap, "%d", (int8_t)b[0]); break;
    case GV_U16: snprintf(txt, cap, "%u", kvq_rd16(b)); break;
    case GV_I16: snprintf(txt, cap, "%d", (int16_t)kvq_rd16(b)); break;
    case GV_U32: snprintf(txt, cap, "%" PRIu32, kvq_rd32(b)); break;
    case GV_I32: snprintf(txt, cap, "%" PRId32, (int32_t)kvq_rd32(b)); break;
    case GV_F32: snprintf(txt, cap, "%.9g", (double)kvq_rdf32(b)); break;
    case GV_U64: snprintf(txt, cap, "%" PRIu64, kvq_rd64(b)); break;
    case GV_I64: snprintf(txt, cap, "%" PRId64, (int64_t)kvq_rd64(b)); break;
    case GV_F64: snprintf(txt, cap, "%.17g", kvq_rdf64(b)); break;
    case GV_BOOL:
        KVQ_FAIL_IF(b[0] > 1, KVQ_ERR_CORRUPT, "%s: bool value %u at offset %zu", g->r.what, b[0], g->r.off - 1);
        snprintf(txt, cap, "%s", b[0] ? "true" : "false");
        break;
    default: return KVQ_ERROR(KVQ_ERR_CORRUPT, "%s: value type %u at offset %zu", g->r.what, t, g->r.off);
    }
    return KVQ_OK;
}

static kvq_err skip_value(gguf_rd *g, uint32_t t, int depth);

static kvq_err skip_array(gguf_rd *g, int depth, uint32_t *et, uint64_t *cnt, size_t *first)
{
    KVQ_FAIL_IF(depth >= GGUF_MAX_DEPTH, KVQ_ERR_CORRUPT, "%s: arrays nested deeper than %d at offset %zu",
                g->r.what, GGUF_MAX_DEPTH, g->r.off);
    KVQ_TRY(kvq_rd_u32(&g->r, et));
    KVQ_TRY(rd_count(g, cnt));
    /* Every element takes at least one byte (a string at least its length
     * field): a count beyond the bytes left is a lie, refuse it now. */
    size_t wide = g->version == 1 ? 4 : 8; /* width of a count in this version */
    size_t min = *et == GV_STRING ? wide : *et == GV_ARRAY ? 4 + wide : scalar_size(*et);
    KVQ_FAIL_IF(!min, KVQ_ERR_CORRUPT, "%s: array element type %u at offset %zu", g->r.what, *et, g->r.off);
    KVQ_FAIL_IF(*cnt > (g->r.n - g->r.off) / min, KVQ_ERR_TRUNCATED,
                "%s: array of %" PRIu64 " elements at offset %zu exceeds the file", g->r.what, *cnt, g->r.off);
    *first = g->r.off;
    if (*et != GV_STRING && *et != GV_ARRAY) return kvq_rd_bytes(&g->r, (size_t)*cnt * min, &(const uint8_t *){0});
    for (uint64_t i = 0; i < *cnt; i++) KVQ_TRY(skip_value(g, *et, depth + 1));
    return KVQ_OK;
}

static kvq_err skip_value(gguf_rd *g, uint32_t t, int depth)
{
    const uint8_t *p;
    size_t n, first;
    uint32_t et;
    uint64_t cnt;
    char txt[64];
    if (t == GV_STRING) return rd_str(g, GGUF_MAX_STRING, &p, &n);
    if (t == GV_ARRAY) return skip_array(g, depth, &et, &cnt, &first);
    return rd_scalar(g, t, txt, sizeof txt);
}

/* ---- metadata ---------------------------------------------------------------------- */
static kvq_err add_meta_bytes(kvq_model *m, const char *key, const uint8_t *p, size_t n)
{
    char *v = malloc(n + 1);
    KVQ_FAIL_IF(!v, KVQ_ERR_NOMEM, "out of memory");
    memcpy(v, p, n);
    v[n] = '\0';
    kvq_err e = kvq_model_add_meta(m, key, v);
    free(v);
    return e;
}

static kvq_err read_kv(gguf_rd *g, kvq_model *m)
{
    const uint8_t *kp;
    size_t kn, at = g->r.off;
    uint32_t t;
    char key[KVQ_NAME_MAX], txt[64];
    KVQ_TRY(rd_str(g, GGUF_MAX_KEY, &kp, &kn));
    KVQ_TRY(kvq_rd_u32(&g->r, &t));
    if (kn >= sizeof key) return skip_value(g, t, 0); /* keys we never look up */
    memcpy(key, kp, kn);
    key[kn] = '\0';
    KVQ_FAIL_IF(strlen(key) != kn, KVQ_ERR_CORRUPT, "%s: key with a NUL byte at offset %zu", g->r.what, at);
    KVQ_FAIL_IF(kvq_model_meta_get(m, key), KVQ_ERR_CORRUPT, "%s: key %s appears twice", g->r.what, key);
    if (t == GV_ARRAY) {
        uint32_t et;
        uint64_t cnt;
        size_t first;
        KVQ_TRY(skip_array(g, 0, &et, &cnt, &first));
        if (!strcmp(key, "tokenizer.ggml.tokens") && et == GV_STRING) g->tok_off = first, g->tok_n = (size_t)cnt;
        if (!strcmp(key, "tokenizer.ggml.scores") && et == GV_F32) g->score_off = first, g->score_n = (size_t)cnt;
        snprintf(txt, sizeof txt, "[%" PRIu64 " values of type %u]", cnt, et);
        return kvq_model_add_meta(m, key, txt);
    }
    if (t == GV_STRING) {
        const uint8_t *p;
        size_t n;
        KVQ_TRY(rd_str(g, GGUF_MAX_STRING, &p, &n));
        return add_meta_bytes(m, key, p, n);
    }
    KVQ_FAIL_IF(!scalar_size(t), KVQ_ERR_CORRUPT, "%s: key %s has value type %u", g->r.what, key, t);
    KVQ_TRY(rd_scalar(g, t, txt, sizeof txt));
    return kvq_model_add_meta(m, key, txt);
}

/* A numeric metadata value; def when absent.  Integers must be integral. */
static kvq_err meta_num(const kvq_model *m, const char *arch, const char *suffix, double def, int is_int,
                        double *out, const char *what)
{
    char key[128];
    snprintf(key, sizeof key, "%s%s%s", arch ? arch : "", arch ? "." : "", suffix);
    const char *v = kvq_model_meta_get(m, key);
    *out = def;
    if (!v) return KVQ_OK;
    char *end;
    double d = strtod(v, &end);
    KVQ_FAIL_IF(end == v || *end || !isfinite(d) || (is_int && (d != floor(d) || fabs(d) > INT32_MAX)),
                KVQ_ERR_CORRUPT, "%s: %s = '%s' is not a valid %s", what, key, v, is_int ? "integer" : "number");
    *out = d;
    return KVQ_OK;
}

static kvq_err build_tokenizer(gguf_rd *g, kvq_model *m)
{
    if (!g->tok_n) return KVQ_OK;
    kvq_buf b = {0};
    kvq_rd save = g->r;
    uint32_t maxlen = 0;
    kvq_err e = kvq_buf_u32(&b, 0);
    g->r.off = g->tok_off;
    for (size_t i = 0; !e && i < g->tok_n; i++) {
        const uint8_t *p;
        size_t n;
        float score = i < g->score_n ? kvq_rdf32(g->r.p + g->score_off + 4 * i) : 0.0f;
        uint32_t sb;
        memcpy(&sb, &score, 4);
        e = rd_str(g, GGUF_MAX_STRING, &p, &n);
        if (!e) e = kvq_buf_u32(&b, sb);
        size_t at = b.n;
        if (!e) e = kvq_buf_u32(&b, 0);
        /* SentencePiece writes a space as U+2581; llama2.c's tokenizer.bin
         * (export.py) stores a plain space. */
        size_t len = 0;
        int ctl = !e && ((n == 3 && !memcmp(p, "<s>", 3)) || (n == 4 && !memcmp(p, "</s>", 4)));
        /* ... and wraps BOS/EOS in newlines ("\n<s>\n"). */
        if (ctl) e = kvq_buf_u8(&b, '\n'), len++;
        for (size_t k = 0; !e && k < n; len++)
            if (n - k >= 3 && !memcmp(p + k, SP_SPACE, 3)) e = kvq_buf_u8(&b, ' '), k += 3;
            else e = kvq_buf_u8(&b, p[k++]);
        if (!e && ctl) e = kvq_buf_u8(&b, '\n'), len++;
        if (!e) kvq_wr32(b.p + at, (uint32_t)len);
        if (len > maxlen) maxlen = (uint32_t)len;
    }
    g->r = save;
    if (!e) {
        kvq_wr32(b.p, maxlen);
        /* vocab_size may still be unknown; the image is checked against it
         * in read_config. */
        m->tok = b.p;
        m->tok_n = b.n;
        return KVQ_OK;
    }
    kvq_buf_free(&b);
    return e;
}

static kvq_err read_config(kvq_model *m, const char *what)
{
    kvq_model_config *c = &m->cfg;
    const char *arch = kvq_model_meta_get(m, "general.architecture");
    KVQ_FAIL_IF(!arch, KVQ_ERR_CORRUPT, "%s: no general.architecture", what);
    KVQ_FAIL_IF(strcmp(arch, "llama") && strcmp(arch, "mamba2"), KVQ_ERR_UNSUPPORTED,
                "%s: architecture '%s' (kvq reads llama and mamba2)", what, arch);
    c->arch = strcmp(arch, "llama") ? KVQ_ARCH_MAMBA2 : KVQ_ARCH_LLAMA;
    double dim, hid, nl, nh, nkv, eps, theta, ctx;
    KVQ_TRY(meta_num(m, arch, "embedding_length", 0, 1, &dim, what));
    KVQ_TRY(meta_num(m, arch, "feed_forward_length", 0, 1, &hid, what));
    KVQ_TRY(meta_num(m, arch, "block_count", 0, 1, &nl, what));
    KVQ_TRY(meta_num(m, arch, "attention.head_count", 0, 1, &nh, what));
    KVQ_TRY(meta_num(m, arch, "attention.head_count_kv", nh, 1, &nkv, what));
    KVQ_TRY(meta_num(m, arch, "attention.layer_norm_rms_epsilon", 1e-5, 0, &eps, what));
    KVQ_TRY(meta_num(m, arch, "rope.freq_base", 10000.0, 0, &theta, what));
    KVQ_TRY(meta_num(m, arch, "context_length", 0, 1, &ctx, what));
    c->dim = (int)dim, c->hidden_dim = (int)hid, c->n_layers = (int)nl;
    c->n_heads = (int)nh, c->n_kv_heads = (int)nkv, c->seq_len = (int)ctx;
    c->head_size = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    c->norm_eps = (float)eps;
    c->rope_theta = (float)theta;
    c->rope = KVQ_ROPE_ADJACENT;
    const kvq_weight *emb = kvq_model_weight(m, "token_embd.weight");
    c->vocab_size = emb && emb->shape.ndim == 2 ? (int)emb->shape.dim[0] : 0;
    c->shared_classifier = kvq_model_weight(m, "output.weight") == NULL;
    KVQ_TRY(kvq_model_config_check(c, what));
    if (m->tok && kvq_tokenizer_check(m->tok, m->tok_n, c->vocab_size, what) != KVQ_OK) {
        /* A vocabulary that does not match the embedding (padded rows, say)
         * cannot be a llama2.c tokenizer: keep the weights, drop it, say so. */
        KVQ_TRY(kvq_model_add_meta(m, "kvq.tokenizer_dropped", kvq_last_error_detail()));
        kvq_clear_error();
        free(m->tok);
        m->tok = NULL;
        m->tok_n = 0;
    }
    return c->arch == KVQ_ARCH_LLAMA ? kvq_model_check_llama(m, what) : KVQ_OK;
}

/* ---- tensors -------------------------------------------------------------------------- */
typedef struct {
    char     name[KVQ_NAME_MAX];
    kvq_shape shape;
    uint32_t type;
    uint64_t offset;
} tinfo;

static kvq_err read_tinfo(gguf_rd *g, tinfo *ti)
{
    const uint8_t *p;
    size_t n, at = g->r.off;
    uint32_t nd;
    KVQ_TRY(rd_str(g, GGUF_MAX_NAME, &p, &n));
    memcpy(ti->name, p, n);
    ti->name[n] = '\0';
    KVQ_FAIL_IF(strlen(ti->name) != n || !n, KVQ_ERR_CORRUPT, "%s: bad tensor name at offset %zu", g->r.what, at);
    KVQ_TRY(kvq_rd_u32(&g->r, &nd));
    KVQ_FAIL_IF(nd < 1 || nd > GGUF_MAX_DIMS, KVQ_ERR_SHAPE, "%s: tensor %s has %u dimensions", g->r.what,
                ti->name, nd);
    memset(&ti->shape, 0, sizeof ti->shape);
    ti->shape.ndim = (int)nd;
    for (uint32_t i = 0; i < nd; i++) {
        uint64_t d;
        KVQ_TRY(rd_count(g, &d));
        KVQ_FAIL_IF(d > (uint64_t)KVQ_MAX_DIM, KVQ_ERR_SHAPE, "%s: tensor %s dimension %u is %" PRIu64, g->r.what,
                    ti->name, i, d);
        ti->shape.dim[nd - 1 - i] = (int64_t)d; /* ne[0] is innermost */
    }
    KVQ_TRY(kvq_rd_u32(&g->r, &ti->type));
    KVQ_TRY(kvq_rd_u64(&g->r, &ti->offset));
    kvq_err e = kvq_shape_check(&ti->shape);
    if (e) kvq_error_prefix(ti->name);
    return e;
}

static kvq_err add_tensor(kvq_model *m, const kvq_src *s, size_t data0, size_t align, const tinfo *ti)
{
    const kvq_ggml_type *gt = kvq_ggml_type_by_id(ti->type);
    KVQ_FAIL_IF(!gt, KVQ_ERR_UNSUPPORTED, "%s: tensor %s has ggml type %u (kvq reads f32, f16, bf16, q8_0, q4_0, mxfp4)",
                s->path, ti->name, ti->type);
    int64_t ne0 = kvq_shape_cols(&ti->shape), numel = kvq_shape_numel(&ti->shape);
    KVQ_FAIL_IF(ne0 % gt->block, KVQ_ERR_SHAPE, "%s: tensor %s: %s rows of %lld values are not whole blocks of %u",
                s->path, ti->name, gt->name, (long long)ne0, gt->block);
    uint64_t size = (uint64_t)(numel / gt->block) * gt->bytes;
    KVQ_FAIL_IF(ti->offset % align, KVQ_ERR_CORRUPT, "%s: tensor %s offset %" PRIu64 " is not a multiple of %zu",
                s->path, ti->name, ti->offset, align);
    KVQ_FAIL_IF(ti->offset > s->n - data0 || size > s->n - data0 - ti->offset, KVQ_ERR_TRUNCATED,
                "%s: tensor %s (%" PRIu64 " bytes at data offset %" PRIu64 ") extends past the end of the file "
                "(%zu bytes)", s->path, ti->name, size, ti->offset, s->n);
    const uint8_t *p = s->p + data0 + ti->offset;
    if (gt->plain) return kvq_model_add(m, ti->name, &ti->shape, gt->dtype, NULL, p, (size_t)size);
    const kvq_codec *c = kvq_codec_find(gt->name);
    KVQ_FAIL_IF(!c, KVQ_ERR_UNSUPPORTED, "%s: tensor %s is %s, and this build has no %s codec", s->path, ti->name,
                gt->name, gt->name);
    kvq_ctx *ctx;
    KVQ_TRY(kvq_ctx_create_params(c, NULL, &ctx));
    return kvq_model_add(m, ti->name, &ti->shape, KVQ_DTYPE_F32, ctx, p, (size_t)size);
}

static kvq_err read_header(gguf_rd *g, uint64_t *n_tensors, uint64_t *n_kv)
{
    const uint8_t *magic;
    uint32_t ver;
    KVQ_TRY(kvq_rd_bytes(&g->r, 4, &magic));
    KVQ_FAIL_IF(memcmp(magic, KVQ_GGUF_MAGIC, 4), KVQ_ERR_BAD_MAGIC, "%s: not a GGUF file", g->r.what);
    KVQ_TRY(kvq_rd_u32(&g->r, &ver));
    KVQ_FAIL_IF((ver & 0xFFFFu) == 0 && ver, KVQ_ERR_UNSUPPORTED,
                "%s: big-endian GGUF (version field 0x%08x); kvq reads little-endian files only", g->r.what, ver);
    KVQ_FAIL_IF(ver < 1 || ver > 3, KVQ_ERR_VERSION, "%s: GGUF version %u (kvq reads 1 to 3)", g->r.what, ver);
    g->version = (int)ver;
    KVQ_TRY(rd_count(g, n_tensors));
    KVQ_TRY(rd_count(g, n_kv));
    KVQ_FAIL_IF(*n_tensors > GGUF_MAX_TENSORS, KVQ_ERR_CORRUPT, "%s: %" PRIu64 " tensors (max %d)", g->r.what,
                *n_tensors, GGUF_MAX_TENSORS);
    KVQ_FAIL_IF(*n_kv > GGUF_MAX_KV, KVQ_ERR_CORRUPT, "%s: %" PRIu64 " metadata pairs (max %d)", g->r.what, *n_kv,
                GGUF_MAX_KV);
    return KVQ_OK;
}

kvq_err kvq_ckpt_gguf_read(const kvq_src *s, kvq_model *m)
{
    gguf_rd g = {{s->p, s->n, 0, s->path}, 0, 0, 0, 0, 0};
    uint64_t nt, nkv;
    double align;
    KVQ_TRY(read_header(&g, &nt, &nkv));
    m->format = KVQ_FORMAT_GGUF;
    m->version = g.version;
    for (uint64_t i = 0; i < nkv; i++) KVQ_TRY(read_kv(&g, m));
    KVQ_TRY(meta_num(m, NULL, "general.alignment", GGUF_ALIGN_DEF, 1, &align, s->path));
    size_t al = (size_t)align;
    KVQ_FAIL_IF(al < 8 || al > GGUF_ALIGN_MAX || (al & (al - 1)), KVQ_ERR_CORRUPT,
                "%s: general.alignment %zu is not a power of two in [8, %d]", s->path, al, GGUF_ALIGN_MAX);
    /* Tensor infos are read whole before any data is looked at. */
    KVQ_FAIL_IF(nt > (s->n - g.r.off) / 16, KVQ_ERR_TRUNCATED, "%s: %" PRIu64 " tensor infos cannot fit in the file",
                s->path, nt);
    tinfo *ti = malloc((size_t)(nt ? nt : 1) * sizeof *ti);
    KVQ_FAIL_IF(!ti, KVQ_ERR_NOMEM, "out of memory");
    kvq_err e = KVQ_OK;
    for (uint64_t i = 0; !e && i < nt; i++) e = read_tinfo(&g, &ti[i]);
    size_t data0 = kvq_align_up(g.r.off, al);
    if (!e && data0 > s->n)
        e = KVQ_ERROR(KVQ_ERR_TRUNCATED, "%s: tensor data would start at %zu, file has %zu bytes", s->path, data0, s->n);
    for (uint64_t i = 0; !e && i < nt; i++) e = add_tensor(m, s, data0, al, &ti[i]);
    free(ti);
    KVQ_TRY(e);
    KVQ_TRY(build_tokenizer(&g, m));
    return read_config(m, s->path);
}
