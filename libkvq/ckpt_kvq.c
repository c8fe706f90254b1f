/*
 * ckpt_kvq.c — the .kvq container: writer and reader (FORMAT.md §2).
 *
 * A fixed 128-byte header (magic "KVQM", version, section offsets and
 * sizes, CRC32 of each section and of the header itself), then the
 * metadata section (model hyperparameters + string key/values), the
 * embedded llama2.c tokenizer, the tensor directory (name, shape, storage
 * dtype or codec id + parameters, offset, size, CRC32) and the data, each
 * tensor at a 64-byte aligned offset so the file can be mmap'd and its
 * payloads used in place (DESIGN.md "Files").
 *
 * The reader trusts nothing: header CRC first, exact file size, every
 * section inside the file, the directory parsed to its exact length, each
 * tensor inside the data section at an aligned offset with the size its
 * shape implies (plain storage), its codec known and its parameters in
 * range.  Tensor CRCs are verified at load, eagerly, for every tensor (one
 * pass over the mapped data), so a loaded model never holds corrupt bytes.
 */
#include "model_internal.h"

#include <inttypes.h>
#include <stdlib.h>

#define KVQ_FILE_VERSION 1
#define HEADER_SIZE      128  /* bytes of the fixed header                     */
#define HEADER_CRC_AT    124  /* header CRC covers bytes [0, 124)              */
#define DATA_ALIGN       64   /* every tensor payload starts on this boundary */
#define CONFIG_SIZE      52   /* 13 × 4-byte fields of kvq_model_config        */
#define META_MAX_PAIRS   4096
#define META_MAX_STRING  (1 << 20)

/* Header field offsets (FORMAT.md §2.1). */
enum {
    H_MAGIC = 0, H_VERSION = 4, H_FLAGS = 6, H_NTENSORS = 8, H_NMETA = 12, H_FILESIZE = 16,
    H_META = 24, H_TOK = 40, H_DIR = 56, H_DATA = 72, H_META_CRC = 88, H_TOK_CRC = 92, H_DIR_CRC = 96
};

/* ---- writing --------------------------------------------------------------- */
static kvq_err put_config(kvq_buf *b, const kvq_model_config *c)
{
    const int32_t iv[8] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_size,
                           c->vocab_size, c->seq_len};
    uint32_t u;
    KVQ_TRY(kvq_buf_u32(b, (uint32_t)c->arch));
    for (int i = 0; i < 8; i++) KVQ_TRY(kvq_buf_u32(b, (uint32_t)iv[i]));
    memcpy(&u, &c->norm_eps, 4);
    KVQ_TRY(kvq_buf_u32(b, u));
    memcpy(&u, &c->rope_theta, 4);
    KVQ_TRY(kvq_buf_u32(b, u));
    KVQ_TRY(kvq_buf_u32(b, (uint32_t)c->rope));
    return kvq_buf_u32(b, (uint32_t)c->shared_classifier);
}

static kvq_err put_str32(kvq_buf *b, const char *s)
{
    KVQ_TRY(kvq_buf_u32(b, (uint32_t)strlen(s)));
    return kvq_buf_put(b, s, strlen(s));
}

static kvq_err build_meta(const kvq_model *m, kvq_buf *b, uint32_t *n_pairs)
{
    KVQ_TRY(put_config(b, &m->cfg));
    *n_pairs = 0;
    for (size_t i = 0; i < m->n_meta; i++) {
        if (!strcmp(m->meta[i].key, "kvq.version")) continue;
        KVQ_TRY(put_str32(b, m->meta[i].key));
        KVQ_TRY(put_str32(b, m->meta[i].value));
        ++*n_pairs;
    }
    KVQ_TRY(put_str32(b, "kvq.version"));
    KVQ_TRY(put_str32(b, kvq_version_string()));
    ++*n_pairs;
    return KVQ_OK;
}

static kvq_err build_dir(const kvq_model *m, kvq_buf *b, uint64_t *data_size)
{
    uint64_t off = 0;
    for (size_t i = 0; i < m->n_w; i++) {
        const kvq_weight *w = &m->w[i];
        const kvq_params *p = w->codec ? kvq_ctx_params(w->codec) : NULL;
        KVQ_TRY(kvq_buf_u16(b, (uint16_t)strlen(w->name)));
        KVQ_TRY(kvq_buf_put(b, w->name, strlen(w->name)));
        KVQ_TRY(kvq_buf_u8(b, (uint8_t)w->shape.ndim));
        KVQ_TRY(kvq_buf_u8(b, (uint8_t)(w->codec ? 0 : w->dtype)));
        KVQ_TRY(kvq_buf_u16(b, w->codec ? kvq_ctx_codec(w->codec)->id : 0));
        KVQ_TRY(kvq_buf_u8(b, (uint8_t)(p ? p->n : 0)));
        KVQ_TRY(kvq_buf_zeros(b, 3));
        for (int d = 0; d < w->shape.ndim; d++) KVQ_TRY(kvq_buf_u64(b, (uint64_t)w->shape.dim[d]));
        for (unsigned k = 0; p && k < p->n; k++) KVQ_TRY(kvq_buf_f64(b, p->v[k]));
        off = kvq_align_up(off, DATA_ALIGN);
        KVQ_TRY(kvq_buf_u64(b, off));
        KVQ_TRY(kvq_buf_u64(b, w->size));
        KVQ_TRY(kvq_buf_u32(b, kvq_crc32(0, w->data, w->size)));
        off += w->size;
    }
    *data_size = off;
    return KVQ_OK;
}

static void fill_header(uint8_t *h, const kvq_model *m, uint32_t n_meta, const kvq_buf *meta, const kvq_buf *dir,
                        uint64_t data_size)
{
    uint64_t meta_off = HEADER_SIZE, tok_off = meta_off + meta->n, dir_off = tok_off + m->tok_n;
    uint64_t data_off = kvq_align_up(dir_off + dir->n, DATA_ALIGN);
    memset(h, 0, HEADER_SIZE);
    memcpy(h + H_MAGIC, KVQ_KVQ_MAGIC, 4);
    kvq_wr16(h + H_VERSION, KVQ_FILE_VERSION);
    kvq_wr32(h + H_NTENSORS, (uint32_t)m->n_w);
    kvq_wr32(h + H_NMETA, n_meta);
    kvq_wr64(h + H_FILESIZE, data_off + data_size);
    kvq_wr64(h + H_META, meta_off);
    kvq_wr64(h + H_META + 8, meta->n);
    kvq_wr64(h + H_TOK, tok_off);
    kvq_wr64(h + H_TOK + 8, m->tok_n);
    kvq_wr64(h + H_DIR, dir_off);
    kvq_wr64(h + H_DIR + 8, dir->n);
    kvq_wr64(h + H_DATA, data_off);
    kvq_wr64(h + H_DATA + 8, data_size);
    kvq_wr32(h + H_META_CRC, kvq_crc32(0, meta->p, meta->n));
    kvq_wr32(h + H_TOK_CRC, kvq_crc32(0, m->tok, m->tok_n));
    kvq_wr32(h + H_DIR_CRC, kvq_crc32(0, dir->p, dir->n));
    kvq_wr32(h + HEADER_CRC_AT, kvq_crc32(0, h, HEADER_CRC_AT));
}

kvq_err kvq_ckpt_kvq_write(const kvq_model *m, kvq_out *o)
{
    kvq_buf meta = {0}, dir = {0};
    uint8_t h[HEADER_SIZE];
    uint32_t n_meta = 0;
    uint64_t data_size = 0;
    kvq_err e = build_meta(m, &meta, &n_meta);
    if (!e) e = build_dir(m, &dir, &data_size);
    if (!e) {
        fill_header(h, m, n_meta, &meta, &dir, data_size);
        e = kvq_out_write(o, h, HEADER_SIZE);
    }
    if (!e) e = kvq_out_write(o, meta.p, meta.n);
    if (!e) e = kvq_out_write(o, m->tok, m->tok_n);
    if (!e) e = kvq_out_write(o, dir.p, dir.n);
    if (!e) e = kvq_out_pad(o, DATA_ALIGN);
    uint64_t data0 = o->off;
    for (size_t i = 0; !e && i < m->n_w; i++) {
        /* Offsets were planned in build_dir; padding relative to data0 is
         * the same because data0 is itself aligned. */
        e = kvq_out_pad(o, DATA_ALIGN);
        if (!e) e = kvq_out_write(o, m->w[i].data, m->w[i].size);
    }
    if (!e && o->off - data0 != data_size)
        e = KVQ_ERROR(KVQ_ERR_IO, "wrote %" PRIu64 " data bytes, planned %" PRIu64, o->off - data0, data_size);
    kvq_buf_free(&meta);
    kvq_buf_free(&dir);
    return e;
}

/* ---- reading --------------------------------------------------------------- */
typedef struct {
    uint64_t off, size;
} section;

static kvq_err get_section(const kvq_src *s, const uint8_t *h, int at, int crc_at, const char *what, section *sec)
{
    sec->off = kvq_rd64(h + at);
    sec->size = kvq_rd64(h + at + 8);
    KVQ_FAIL_IF(sec->off < HEADER_SIZE || sec->off > s->n || sec->size > s->n - sec->off, KVQ_ERR_CORRUPT,
                "%s: %s section [%" PRIu64 ", +%" PRIu64 ") outside the file (%zu bytes)", s->path, what, sec->off,
                sec->size, s->n);
    if (crc_at >= 0)
        KVQ_FAIL_IF(kvq_crc32(0, s->p + sec->off, (size_t)sec->size) != kvq_rd32(h + crc_at), KVQ_ERR_CHECKSUM,
                    "%s: %s section CRC mismatch", s->path, what);
    return KVQ_OK;
}

static kvq_err read_str32(kvq_rd *r, char **out)
{
    uint32_t n;
    const uint8_t *p;
    KVQ_TRY(kvq_rd_u32(r, &n));
    KVQ_FAIL_IF(n > META_MAX_STRING, KVQ_ERR_CORRUPT, "%s: metadata string of %u bytes at offset %zu", r->what, n,
                r->off - 4);
    KVQ_TRY(kvq_rd_bytes(r, n, &p));
    KVQ_FAIL_IF(memchr(p, 0, n), KVQ_ERR_CORRUPT, "%s: metadata string with a NUL byte at offset %zu", r->what,
                r->off - n);
    *out = malloc(n + 1);
    KVQ_FAIL_IF(!*out, KVQ_ERR_NOMEM, "out of memory");
    memcpy(*out, p, n);
    (*out)[n] = '\0';
    return KVQ_OK;
}

static kvq_err read_meta(const kvq_src *s, section sec, uint32_t n_meta, kvq_model *m)
{
    kvq_rd r = {s->p + sec.off, (size_t)sec.size, 0, s->path};
    uint32_t v[13];
    KVQ_FAIL_IF(n_meta > META_MAX_PAIRS, KVQ_ERR_CORRUPT, "%s: %u metadata pairs", s->path, n_meta);
    for (int i = 0; i < 13; i++) KVQ_TRY(kvq_rd_u32(&r, &v[i]));
    kvq_model_config *c = &m->cfg;
    KVQ_FAIL_IF(v[0] > KVQ_ARCH_MAMBA2 || v[11] > KVQ_ROPE_HALF || v[12] > 1, KVQ_ERR_CORRUPT,
                "%s: bad arch/rope/classifier fields (%u, %u, %u)", s->path, v[0], v[11], v[12]);
    c->arch = (kvq_arch)v[0];
    c->dim = (int32_t)v[1], c->hidden_dim = (int32_t)v[2], c->n_layers = (int32_t)v[3];
    c->n_heads = (int32_t)v[4], c->n_kv_heads = (int32_t)v[5], c->head_size = (int32_t)v[6];
    c->vocab_size = (int32_t)v[7], c->seq_len = (int32_t)v[8];
    memcpy(&c->norm_eps, &v[9], 4);
    memcpy(&c->rope_theta, &v[10], 4);
    c->rope = (kvq_rope)v[11];
    c->shared_classifier = (int)v[12];
    KVQ_TRY(kvq_model_config_check(c, s->path));
    for (uint32_t i = 0; i < n_meta; i++) {
        char *k = NULL, *val = NULL;
        kvq_err e = read_str32(&r, &k);
        if (!e) e = read_str32(&r, &val);
        if (!e) e = kvq_model_add_meta(m, k, val);
        free(k);
        free(val);
        KVQ_TRY(e);
    }
    KVQ_FAIL_IF(r.off != r.n, KVQ_ERR_CORRUPT, "%s: %zu stray bytes after the metadata", s->path, r.n - r.off);
    return KVQ_OK;
}

static kvq_err read_entry(kvq_rd *r, const kvq_src *s, section data, kvq_model *m)
{
    uint16_t nl, cid;
    uint8_t ndim, dt, np;
    const uint8_t *name, *pad;
    char nm[KVQ_NAME_MAX];
    KVQ_TRY(kvq_rd_u16(r, &nl));
    KVQ_FAIL_IF(nl == 0 || nl >= KVQ_NAME_MAX, KVQ_ERR_CORRUPT, "%s: tensor name of %u bytes at directory offset %zu",
                s->path, nl, r->off - 2);
    KVQ_TRY(kvq_rd_bytes(r, nl, &name));
    memcpy(nm, name, nl);
    nm[nl] = '\0';
    KVQ_FAIL_IF(strlen(nm) != nl, KVQ_ERR_CORRUPT, "%s: tensor name with a NUL byte", s->path);
    KVQ_TRY(kvq_rd_u8(r, &ndim));
    KVQ_TRY(kvq_rd_u8(r, &dt));
    KVQ_TRY(kvq_rd_u16(r, &cid));
    KVQ_TRY(kvq_rd_u8(r, &np));
    KVQ_TRY(kvq_rd_bytes(r, 3, &pad));
    KVQ_FAIL_IF(ndim < 1 || ndim > KVQ_MAX_DIMS || np > KVQ_MAX_PARAMS, KVQ_ERR_CORRUPT,
                "%s: tensor %s: rank %u, %u parameters", s->path, nm, ndim, np);
    kvq_shape sh;
    memset(&sh, 0, sizeof sh);
    sh.ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        uint64_t v;
        KVQ_TRY(kvq_rd_u64(r, &v));
        KVQ_FAIL_IF(v > (uint64_t)KVQ_MAX_DIM, KVQ_ERR_SHAPE, "%s: tensor %s dimension %d is %" PRIu64, s->path, nm,
                    d, v);
        sh.dim[d] = (int64_t)v;
    }
    kvq_params prm = {np, {0}};
    for (unsigned k = 0; k < np; k++) KVQ_TRY(kvq_rd_f64(r, &prm.v[k]));
    uint64_t off, size;
    uint32_t crc;
    KVQ_TRY(kvq_rd_u64(r, &off));
    KVQ_TRY(kvq_rd_u64(r, &size));
    KVQ_TRY(kvq_rd_u32(r, &crc));
    KVQ_FAIL_IF(off % DATA_ALIGN || off > data.size || size > data.size - off, KVQ_ERR_CORRUPT,
                "%s: tensor %s at data offset %" PRIu64 " (+%" PRIu64 ") is unaligned or outside the data section",
                s->path, nm, off, size);
    const uint8_t *p = s->p + data.off + off;
    KVQ_FAIL_IF(kvq_crc32(0, p, (size_t)size) != crc, KVQ_ERR_CHECKSUM, "%s: tensor %s: data CRC mismatch", s->path, nm);
    kvq_ctx *ctx = NULL;
    if (cid) {
        const kvq_codec *c = kvq_codec_by_id(cid);
        KVQ_FAIL_IF(!c, KVQ_ERR_UNKNOWN_CODEC, "%s: tensor %s uses codec id %u, not in this build", s->path, nm, cid);
        kvq_err e = kvq_ctx_create_params(c, &prm, &ctx);
        if (e) {
            kvq_error_prefix(nm);
            kvq_error_prefix(s->path);
            return e;
        }
    } else {
        KVQ_FAIL_IF(np || dt >= KVQ_DTYPE__COUNT, KVQ_ERR_CORRUPT, "%s: tensor %s: storage type %u", s->path, nm, dt);
    }
    kvq_err e = kvq_model_add(m, nm, &sh, (kvq_dtype)(cid ? 0 : dt), ctx, p, (size_t)size);
    if (e) kvq_error_prefix(s->path);
    return e;
}

kvq_err kvq_ckpt_kvq_read(const kvq_src *s, kvq_model *m)
{
    KVQ_FAIL_IF(s->n < HEADER_SIZE, KVQ_ERR_TRUNCATED, "%s: %zu bytes, a .kvq header needs %d", s->path, s->n,
                HEADER_SIZE);
    const uint8_t *h = s->p;
    KVQ_FAIL_IF(memcmp(h, KVQ_KVQ_MAGIC, 4), KVQ_ERR_BAD_MAGIC, "%s: not a .kvq file", s->path);
    KVQ_FAIL_IF(kvq_crc32(0, h, HEADER_CRC_AT) != kvq_rd32(h + HEADER_CRC_AT), KVQ_ERR_CHECKSUM,
                "%s: header CRC mismatch", s->path);
    KVQ_FAIL_IF(kvq_rd16(h + H_VERSION) != KVQ_FILE_VERSION, KVQ_ERR_VERSION, "%s: .kvq version %u (this build reads %d)",
                s->path, kvq_rd16(h + H_VERSION), KVQ_FILE_VERSION);
    KVQ_FAIL_IF(kvq_rd16(h + H_FLAGS), KVQ_ERR_UNSUPPORTED, "%s: unknown flags 0x%04x", s->path, kvq_rd16(h + H_FLAGS));
    uint64_t fsz = kvq_rd64(h + H_FILESIZE);
    KVQ_FAIL_IF(fsz != s->n, fsz > s->n ? KVQ_ERR_TRUNCATED : KVQ_ERR_CORRUPT,
                "%s: header says %" PRIu64 " bytes, file has %zu", s->path, fsz, s->n);
    section meta, tok, dir, data;
    KVQ_TRY(get_section(s, h, H_META, H_META_CRC, "metadata", &meta));
    KVQ_TRY(get_section(s, h, H_TOK, H_TOK_CRC, "tokenizer", &tok));
    KVQ_TRY(get_section(s, h, H_DIR, H_DIR_CRC, "directory", &dir));
    KVQ_TRY(get_section(s, h, H_DATA, -1, "data", &data));
    KVQ_FAIL_IF(data.off % DATA_ALIGN, KVQ_ERR_CORRUPT, "%s: data section at %" PRIu64 " is not %d-byte aligned",
                s->path, data.off, DATA_ALIGN);
    m->format = KVQ_FORMAT_KVQ;
    m->version = KVQ_FILE_VERSION;
    KVQ_TRY(read_meta(s, meta, kvq_rd32(h + H_NMETA), m));
    if (tok.size) KVQ_TRY(kvq_model_set_tokenizer(m, s->p + tok.off, (size_t)tok.size));
    uint32_t nt = kvq_rd32(h + H_NTENSORS);
    KVQ_FAIL_IF(nt > KVQ_MODEL_MAX_WEIGHTS, KVQ_ERR_CORRUPT, "%s: %u tensors", s->path, nt);
    kvq_rd r = {s->p + dir.off, (size_t)dir.size, 0, s->path};
    for (uint32_t i = 0; i < nt; i++) KVQ_TRY(read_entry(&r, s, data, m));
    KVQ_FAIL_IF(r.off != r.n, KVQ_ERR_CORRUPT, "%s: %zu stray bytes after the tensor directory", s->path, r.n - r.off);
    return m->cfg.arch == KVQ_ARCH_LLAMA ? kvq_model_check_llama(m, s->path) : kvq_model_mamba2_sync(m, s->path);
}
