/*
 * ckpt_llama2c.c — reader for llama2.c checkpoints (formats-and-engines.md
 * §3.1 version 0 "legacy", §3.3 version 1).
 *
 * v0 is a raw dump: 7 int32 hyperparameters, then fp32 arrays with all
 * layers of one kind stacked.  It has no magic, so the file is accepted
 * only when its size equals exactly what the header implies (checked in
 * 64-bit arithmetic before anything is mapped into weights).  The sign of
 * vocab_size says whether the classifier is shared with the embedding.
 * v1 starts with magic "ak42" (u32 0x616b3432), version 1, the same 7
 * parameters and a shared-classifier byte in a 256-byte header; its arrays
 * come in another order and it drops the legacy RoPE tables.
 *
 * Every stacked array becomes per-layer zero-copy views under canonical
 * GGUF names.  llama2.c fixes what the header omits: RMSNorm eps 1e-5,
 * RoPE base 10000 on ADJACENT pairs (run.c).
 */
#include "model_internal.h"

#define V0_HEADER   28          /* 7 × int32                               */
#define V1_HEADER   256         /* magic, version, 7 × int32, flag, zeros  */
#define V1_MAGIC    0x616b3432u /* "2" "4" "k" "a" on disk                 */
#define L2C_EPS     1e-5f       /* run.c rmsnorm                           */
#define L2C_THETA   10000.0f    /* run.c RoPE base                         */

/* Array kinds of a llama2.c file.  rows/cols are in units chosen by
 * kind_dims(); per_layer kinds are stacked [n_layers][rows][cols]. */
typedef enum {
    K_EMB, K_ATTN_NORM, K_WQ, K_WK, K_WV, K_WO, K_FFN_NORM, K_W1, K_W2, K_W3, K_OUT_NORM, K_ROPE, K_CLS, K__N
} kind;

static const struct {
    const char *name;  /* canonical name; per-layer: blk.N.<name>.weight */
    int         per_layer;
} kinds[K__N] = {
    [K_EMB] = {"token_embd.weight", 0},  [K_ATTN_NORM] = {"attn_norm", 1}, [K_WQ] = {"attn_q", 1},
    [K_WK] = {"attn_k", 1},              [K_WV] = {"attn_v", 1},           [K_WO] = {"attn_output", 1},
    [K_FFN_NORM] = {"ffn_norm", 1},      [K_W1] = {"ffn_gate", 1},         [K_W2] = {"ffn_down", 1},
    [K_W3] = {"ffn_up", 1},
    [K_OUT_NORM] = {"output_norm.weight", 0},    [K_ROPE] = {NULL, 0},
    [K_CLS] = {"output.weight", 0},
};

/* File order of the arrays (K__N ends a list). */
static const kind order_v0[] = {K_EMB, K_ATTN_NORM, K_WQ, K_WK, K_WV, K_WO, K_FFN_NORM,
                                K_W1, K_W2, K_W3, K_OUT_NORM, K_ROPE, K_CLS, K__N};
static const kind order_v1[] = {K_ATTN_NORM, K_FFN_NORM, K_OUT_NORM, K_EMB, K_WQ, K_WK, K_WV,
                                K_WO, K_W1, K_W2, K_W3, K_CLS, K__N};
/* Directory order: the order llama.cpp's converter lists a layer. */
static const kind order_model[] = {K_ATTN_NORM, K_WQ, K_WK, K_WV, K_WO, K_FFN_NORM, K_W1, K_W2, K_W3};

/* rows, cols of one layer's (or the only) slice; cols 0 = 1-D. */
static void kind_dims(const kvq_model_config *c, kind k, int64_t *rows, int64_t *cols)
{
    int64_t dim = c->dim, kv = (int64_t)c->n_kv_heads * c->head_size, hid = c->hidden_dim;
    int64_t r = dim, cl = 0;
    switch (k) {
    case K_EMB: case K_CLS: r = c->vocab_size; cl = dim; break;
    case K_ATTN_NORM: case K_FFN_NORM: case K_OUT_NORM: break;
    case K_WQ: case K_WO: cl = dim; break;
    case K_WK: case K_WV: r = kv; cl = dim; break;
    case K_W1: case K_W3: r = hid; cl = dim; break;
    case K_W2: cl = hid; break;
    case K_ROPE: r = (int64_t)c->seq_len * c->head_size; break; /* freq_cis_real + imag: 2·seq·hs/2 */
    case K__N: r = 0; break;
    }
    *rows = r;
    *cols = cl;
}

static uint64_t kind_bytes(const kvq_model_config *c, kind k)
{
    int64_t r, cl;
    kind_dims(c, k, &r, &cl);
    uint64_t n = (uint64_t)r * (uint64_t)(cl ? cl : 1) * sizeof(float);
    return kinds[k].per_layer ? n * (uint64_t)c->n_layers : n;
}

static kvq_err header_v0(const uint8_t *h, kvq_model_config *c, int *shared, const char *path)
{
    int32_t v[7];
    for (int i = 0; i < 7; i++) v[i] = (int32_t)kvq_rd32(h + 4 * i);
    KVQ_FAIL_IF(v[5] == INT32_MIN, KVQ_ERR_SHAPE, "%s: vocab_size %d", path, v[5]);
    c->arch = KVQ_ARCH_LLAMA;
    c->dim = v[0];
    c->hidden_dim = v[1];
    c->n_layers = v[2];
    c->n_heads = v[3];
    c->n_kv_heads = v[4];
    c->vocab_size = v[5] < 0 ? -v[5] : v[5];
    c->seq_len = v[6];
    *shared = v[5] > 0;
    c->head_size = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    c->norm_eps = L2C_EPS;
    c->rope_theta = L2C_THETA;
    c->rope = KVQ_ROPE_ADJACENT;
    c->shared_classifier = *shared;
    KVQ_FAIL_IF(c->seq_len <= 0 || c->seq_len > (1 << 24), KVQ_ERR_SHAPE, "%s: seq_len %d", path, c->seq_len);
    KVQ_TRY(kvq_model_config_check(c, path));
    KVQ_FAIL_IF(c->head_size % 2, KVQ_ERR_SHAPE, "%s: head size %d is odd (RoPE needs pairs)", path, c->head_size);
    return KVQ_OK;
}

static kvq_err add_views(kvq_model *m, const uint8_t *base, const uint64_t *off)
{
    const kvq_model_config *c = &m->cfg;
    char name[64];
    int64_t r, cl;
    for (int l = -1; l <= c->n_layers; l++) {
        size_t nk = l < 0 || l == c->n_layers ? 1 : sizeof order_model / sizeof order_model[0];
        for (size_t i = 0; i < nk; i++) {
            kind k = l < 0 ? K_EMB : l == c->n_layers ? K_OUT_NORM : order_model[i];
            kind_dims(c, k, &r, &cl);
            uint64_t slice = (uint64_t)r * (uint64_t)(cl ? cl : 1) * sizeof(float);
            uint64_t at = off[k] + (kinds[k].per_layer ? (uint64_t)l * slice : 0);
            int64_t dims[2] = {r, cl};
            kvq_shape s = kvq_shape_make(cl ? 2 : 1, dims);
            if (kinds[k].per_layer)
                snprintf(name, sizeof name, "blk.%d.%s.weight", l, kinds[k].name);
            else
                snprintf(name, sizeof name, "%s", kinds[k].name);
            KVQ_TRY(kvq_model_add(m, name, &s, KVQ_DTYPE_F32, NULL, base + at, (size_t)slice));
        }
    }
    if (!c->shared_classifier) {
        kind_dims(c, K_CLS, &r, &cl);
        int64_t dims[2] = {r, cl};
        kvq_shape s = kvq_shape_make(2, dims);
        KVQ_TRY(kvq_model_add(m, kinds[K_CLS].name, &s, KVQ_DTYPE_F32, NULL, base + off[K_CLS],
                              (size_t)kind_bytes(c, K_CLS)));
    }
    return KVQ_OK;
}

kvq_err kvq_ckpt_llama2c_read(const kvq_src *s, kvq_model *m)
{
    int version = 0, shared;
    size_t hdr = V0_HEADER;
    if (s->n >= 8 && kvq_rd32(s->p) == V1_MAGIC) {
        KVQ_FAIL_IF(s->n < V1_HEADER, KVQ_ERR_TRUNCATED, "%s: llama2.c v1 header needs %d bytes, file has %zu",
                    s->path, V1_HEADER, s->n);
        version = (int)kvq_rd32(s->p + 4);
        KVQ_FAIL_IF(version != 1, KVQ_ERR_VERSION, "%s: llama2.c version %d (this build reads 0 and 1; "
                    "version 2 is runq.c's int8 format)", s->path, version);
        hdr = V1_HEADER;
    }
    KVQ_FAIL_IF(s->n < V0_HEADER, KVQ_ERR_TRUNCATED, "%s: %zu bytes, shorter than a llama2.c header", s->path,
                s->n);
    KVQ_TRY(header_v0(s->p + (version ? 8 : 0), &m->cfg, &shared, s->path));
    if (version) {
        uint8_t flag = s->p[36];
        KVQ_FAIL_IF(flag > 1, KVQ_ERR_CORRUPT, "%s: shared_classifier byte is %u", s->path, flag);
        /* v1 stores vocab_size positive and the flag separately. */
        m->cfg.shared_classifier = flag;
    }
    const kind *ord = version ? order_v1 : order_v0;
    uint64_t off[K__N] = {0}, at = hdr;
    for (size_t i = 0; ord[i] != K__N; i++) {
        kind k = ord[i];
        if (k == K_CLS && m->cfg.shared_classifier) continue;
        off[k] = at;
        at += kind_bytes(&m->cfg, k);
    }
    KVQ_FAIL_IF(at != s->n, at > s->n ? KVQ_ERR_TRUNCATED : KVQ_ERR_CORRUPT,
                "%s: llama2.c v%d header (dim %d, layers %d, vocab %d%s) implies %llu bytes, file has %zu",
                s->path, version, m->cfg.dim, m->cfg.n_layers, m->cfg.vocab_size,
                m->cfg.shared_classifier ? "" : ", own classifier", (unsigned long long)at, s->n);
    m->format = KVQ_FORMAT_LLAMA2C;
    m->version = version;
    return add_views(m, s->p, off);
}
