/*
 * kvq.h — the public interface of libkvq, the only header a user includes.
 *
 * libkvq compresses the tensors of large language models: weights,
 * activations and the KV cache.  Every method is a *codec* (tensor → bytes →
 * tensor) described by one `kvq_codec`; a static registry lists them.  A
 * *context* (`kvq_ctx`) binds a codec to parameter values and is what users
 * encode and decode with.  Encoded tensors ("blobs") are self-describing:
 * decoding needs nothing but the bytes (FORMAT.md §1).
 *
 * Conventions (zstd-like):
 *  - fallible functions return `kvq_err`; results travel in out-parameters;
 *    `kvq_strerror()` names the code and `kvq_last_error_detail()` gives a
 *    thread-local sentence ("model.bin: truncated at byte 4096 of 81920");
 *  - `*_bound()` returns the worst-case size of an output the caller owns;
 *  - only `_create`, `_alloc`, `_dup` and `_load` allocate, and each names
 *    its `_free`, which accepts NULL;
 *  - the library never prints, exits or aborts on bad input.
 *
 * Stable API first; the experimental section (KVQ_EXPERIMENTAL) is last.
 */
#ifndef KVQ_H
#define KVQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(KVQ_API)
#define KVQ_API __attribute__((visibility("default")))
#elif !defined(KVQ_API)
#define KVQ_API
#endif

/* ======================================================================== */
/*  Version                                                                 */
/* ======================================================================== */
#define KVQ_VERSION_MAJOR 0
#define KVQ_VERSION_MINOR 1
#define KVQ_VERSION_PATCH 0
#define KVQ_VERSION_NUMBER \
    (KVQ_VERSION_MAJOR * 10000 + KVQ_VERSION_MINOR * 100 + KVQ_VERSION_PATCH)
#define KVQ_VERSION_STRING "0.1.0"

/* kvq_version_number() : run-time twin of KVQ_VERSION_NUMBER. */
KVQ_API unsigned kvq_version_number(void);
KVQ_API const char *kvq_version_string(void);

/* ======================================================================== */
/*  Errors                                                                  */
/* ======================================================================== */
/* Values are fixed and append-only; retired values stay listed as comments. */
typedef enum kvq_err {
    KVQ_OK = 0,
    KVQ_ERR_IO = 1,            /* open/read/write/rename failed (errno in detail) */
    KVQ_ERR_TRUNCATED = 2,     /* input ends before a declared length            */
    KVQ_ERR_BAD_MAGIC = 3,     /* not the format we were asked to read           */
    KVQ_ERR_VERSION = 4,       /* format version we do not read                  */
    KVQ_ERR_SHAPE = 5,         /* absurd, inconsistent or unsupported shape      */
    KVQ_ERR_NONFINITE = 6,     /* NaN or Inf where a codec cannot represent it   */
    KVQ_ERR_PARAM_RANGE = 7,   /* parameter outside its declared range           */
    KVQ_ERR_UNKNOWN_CODEC = 8, /* codec name or id not in the registry           */
    KVQ_ERR_NOMEM = 9,         /* allocation failed                              */
    KVQ_ERR_DST_TOO_SMALL = 10,/* caller's buffer smaller than needed            */
    KVQ_ERR_CORRUPT = 11,      /* structurally invalid data (bad length, index)  */
    KVQ_ERR_CHECKSUM = 12,     /* CRC mismatch                                   */
    KVQ_ERR_UNSUPPORTED = 13,  /* valid input we do not handle (e.g. dtype)      */
    KVQ_ERR_ARG = 14,          /* invalid argument from the caller               */
    KVQ_ERR_EXISTS = 15,       /* output exists and overwriting was not allowed  */
    KVQ_ERR_SPEC = 16,         /* malformed codec spec string                    */
    KVQ_ERR_NOT_FOUND = 17,    /* named tensor / key absent                      */
    KVQ_ERR__COUNT
} kvq_err;

/* kvq_strerror() : static name of an error code ("truncated input").
 * Never NULL; unknown codes give "unknown error". */
KVQ_API const char *kvq_strerror(kvq_err err);

/* kvq_last_error_detail() : the detail message recorded by the most recent
 * failing call *on this thread* ("" when none).  Valid until the next
 * libkvq call on the same thread. */
KVQ_API const char *kvq_last_error_detail(void);

/* kvq_last_error_where() : "file.c:line" of the check that failed. */
KVQ_API const char *kvq_last_error_where(void);

/* kvq_clear_error() : empties this thread's detail message. */
KVQ_API void kvq_clear_error(void);

/* ======================================================================== */
/*  Element types and exact conversions                                     */
/* ======================================================================== */
typedef enum kvq_dtype {
    KVQ_DTYPE_F32 = 0,
    KVQ_DTYPE_F16 = 1,
    KVQ_DTYPE_BF16 = 2,
    KVQ_DTYPE_I8 = 3,
    KVQ_DTYPE_U8 = 4,
    KVQ_DTYPE_I32 = 5,
    KVQ_DTYPE__COUNT
} kvq_dtype;

KVQ_API size_t kvq_dtype_size(kvq_dtype t);        /* bytes per element; 0 if bad */
KVQ_API const char *kvq_dtype_name(kvq_dtype t);    /* "f32", "f16", ...        */

/* IEEE binary16 and bfloat16 conversion.  f32 → f16/bf16 rounds to nearest,
 * ties to even; overflow gives ±Inf; NaN stays NaN (quiet, sign kept);
 * subnormals are produced and read exactly.  The reverse is exact. */
KVQ_API uint16_t kvq_f32_to_f16(float f);
KVQ_API float    kvq_f16_to_f32(uint16_t h);
KVQ_API uint16_t kvq_f32_to_bf16(float f);
KVQ_API float    kvq_bf16_to_f32(uint16_t h);
KVQ_API void kvq_f32_to_f16_row(const float *src, uint16_t *dst, size_t n);
KVQ_API void kvq_f16_to_f32_row(const uint16_t *src, float *dst, size_t n);
KVQ_API void kvq_f32_to_bf16_row(const float *src, uint16_t *dst, size_t n);
KVQ_API void kvq_bf16_to_f32_row(const uint16_t *src, float *dst, size_t n);

/* ======================================================================== */
/*  Tensors                                                                 */
/* ======================================================================== */
#define KVQ_MAX_DIMS 4
/* Limit on any single dimension and on the element count: inputs claiming
 * more are rejected as absurd (KVQ_ERR_SHAPE) before anything is allocated. */
#define KVQ_MAX_DIM      ((int64_t)1 << 32)
#define KVQ_MAX_ELEMENTS ((int64_t)1 << 40)

/* Row-major shape: dim[ndim-1] is the contiguous axis (PyTorch order). */
typedef struct kvq_shape {
    int     ndim;                  /* 1..KVQ_MAX_DIMS                  */
    int64_t dim[KVQ_MAX_DIMS];     /* unused trailing entries are 0    */
} kvq_shape;

/* kvq_tensor : a NON-OWNING view.  stride[] in elements; a contiguous
 * tensor has stride[ndim-1] == 1 and stride[i] = stride[i+1]*dim[i+1]. */
typedef struct kvq_tensor {
    kvq_dtype dtype;
    kvq_shape shape;
    int64_t   stride[KVQ_MAX_DIMS];
    void     *data;
} kvq_tensor;

/* kvq_tensor_view() : contiguous view of `data` with the given shape. */
KVQ_API kvq_tensor kvq_tensor_view(kvq_dtype t, void *data, int ndim, const int64_t *dims);
/* kvq_shape_make() : shape from dims; no validation (see kvq_shape_check). */
KVQ_API kvq_shape kvq_shape_make(int ndim, const int64_t *dims);
/* kvq_shape_check() : KVQ_ERR_SHAPE for ndim outside 1..4, a dimension < 0
 * or > KVQ_MAX_DIM, or more than KVQ_MAX_ELEMENTS elements. */
KVQ_API kvq_err kvq_shape_check(const kvq_shape *s);
KVQ_API int64_t kvq_shape_numel(const kvq_shape *s);
/* Rows and columns as codecs see a tensor: cols = innermost dimension,
 * rows = product of the others (1 for a 1-D tensor). */
KVQ_API int64_t kvq_shape_rows(const kvq_shape *s);
KVQ_API int64_t kvq_shape_cols(const kvq_shape *s);
KVQ_API int kvq_tensor_is_contiguous(const kvq_tensor *t);
/* kvq_shape_format() : "[512, 64]" into buf; returns buf. */
KVQ_API char *kvq_shape_format(const kvq_shape *s, char *buf, size_t cap);

/* ======================================================================== */
/*  Codecs                                                                  */
/* ======================================================================== */
#define KVQ_CODEC_ABI 2      /* 2: `parts` appended */
#define KVQ_MAX_PARAMS 16

/* Domains a codec serves (bit set). */
enum {
    KVQ_DOMAIN_WEIGHT = 1u << 0,
    KVQ_DOMAIN_ACT    = 1u << 1,   /* linear-layer inputs                  */
    KVQ_DOMAIN_KEY    = 1u << 2,   /* K cache pages                        */
    KVQ_DOMAIN_VALUE  = 1u << 3,   /* V cache pages                        */
    KVQ_DOMAIN_SSM    = 1u << 4,   /* SSM inputs / states (Mamba)          */
    KVQ_DOMAIN_TEXT   = 1u << 5,   /* bytes of text (lossless)             */
    KVQ_DOMAIN_KV     = KVQ_DOMAIN_KEY | KVQ_DOMAIN_VALUE
};

/* Codec flags (bit set). */
enum {
    KVQ_FLAG_LOSSLESS    = 1u << 0,  /* decode(encode(x)) == x bit for bit    */
    KVQ_FLAG_NEEDS_CALIB = 1u << 1,  /* calibrate() must run before encode()  */
    KVQ_FLAG_STATEFUL    = 1u << 2,  /* encode output depends on past calls   */
    KVQ_FLAG_NONFINITE_OK = 1u << 3, /* NaN/Inf pass through (else rejected)  */
    KVQ_FLAG_CHECKS_FINITE = 1u << 4 /* encode itself rejects NaN/Inf with
                                        KVQ_ERR_NONFINITE inside its own pass
                                        (the core then skips its scan)        */
};

/* One declared parameter.  Values are doubles; integer parameters must be
 * integral; a parameter with `choices` takes one of those names in a spec
 * and stores its index.  Bounds are data: the parser and
 * kvq_ctx_set_param() enforce them. */
typedef struct kvq_param {
    const char *name;              /* "bits"                                */
    double      min, max, def;     /* inclusive range and default           */
    unsigned    is_int;            /* 1: must be an integer                 */
    const char *const *choices;    /* NULL, or NULL-terminated names        */
    const char *help;              /* one line for `kvq codecs`             */
} kvq_param;

/* Parameter values in declaration order of the codec's params[]. */
typedef struct kvq_params {
    unsigned n;
    double   v[KVQ_MAX_PARAMS];
} kvq_params;

/* The codec descriptor: everything about a codec lives here, and no switch
 * elsewhere knows individual codecs (STYLE.md).  Fields are only appended;
 * `abi` says which are present.  Codecs see contiguous f32 tensors; the
 * encoded *payload* they produce is wrapped in the blob header by the core.
 *
 * init      : fill state (state_size bytes, zeroed by the core) from params;
 *             may reject parameter combinations (KVQ_ERR_PARAM_RANGE).
 * calibrate : feed one sample (rows = tokens, cols = channels); NULL if none.
 * bound     : worst-case payload bytes for a tensor of shape s.
 * encode    : src (f32, contiguous) → payload; *n = bytes written.
 * decode    : payload → dst (f32, contiguous, shape set by the caller);
 *             may be NULL when decode_rows is given (the core then
 *             decodes all rows through it);
 *             must validate every length and index in the payload.
 * fini      : release anything init/calibrate allocated; NULL if none.
 * decode_rows (optional, NULL if absent): rows [r0, r1) of a tensor of
 *             shape s into out[(r1-r0) * cols]; lets the decoder
 *             dequantize a weight block by block inside a matmul.
 * parts     (abi >= 2, optional): split the n bytes of a payload of shape s
 *             by component (the fields of kvq_codec_parts sum to n), so a
 *             KV cache reports scales, outliers and factors apart from the
 *             codes; without it every byte counts as codes. */
/* Bytes of one payload by component (cache-methods.md §0 accounting). */
typedef struct kvq_codec_parts {
    uint64_t codes;             /* quantized values                        */
    uint64_t scales;            /* scales, zero points, norms               */
    uint64_t lowrank;           /* low-rank factors                         */
    uint64_t sparse;            /* outlier values and their indices         */
    uint64_t meta;              /* headers, counts                          */
} kvq_codec_parts;

typedef struct kvq_codec {
    unsigned          abi;
    const char       *name;
    uint16_t          id;          /* on-disk id; never reused             */
    unsigned          domain;
    unsigned          flags;
    size_t            state_size;
    const kvq_param  *params;
    unsigned          n_params;
    double            max_rel_err; /* declared bound on ‖x̂−x‖/‖x‖ for
                                      finite inputs; 0 for lossless       */
    const char       *summary;     /* one line for `kvq codecs`            */
    kvq_err (*init)(void *st, const kvq_params *p);
    kvq_err (*calibrate)(void *st, const kvq_tensor *sample);
    size_t  (*bound)(const void *st, const kvq_shape *s);
    kvq_err (*encode)(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n);
    kvq_err (*decode)(void *st, const void *src, size_t n, kvq_tensor *dst);
    void    (*fini)(void *st);
    kvq_err (*decode_rows)(void *st, const void *src, size_t n, const kvq_shape *s,
                           int64_t r0, int64_t r1, float *out);
    kvq_err (*parts)(void *st, const void *src, size_t n, const kvq_shape *s, kvq_codec_parts *out);
} kvq_codec;

/* Registry look-ups.  kvq_codec_at(i) walks the registry (NULL past the
 * end); names are case-sensitive. */
KVQ_API size_t kvq_codec_count(void);
KVQ_API const kvq_codec *kvq_codec_at(size_t i);
KVQ_API const kvq_codec *kvq_codec_find(const char *name);
KVQ_API const kvq_codec *kvq_codec_by_id(unsigned id);

/* kvq_params_default() : the codec's declared defaults. */
KVQ_API kvq_params kvq_params_default(const kvq_codec *c);
/* kvq_param_index() : index of a parameter by name, -1 if none. */
KVQ_API int kvq_param_index(const kvq_codec *c, const char *name);
/* kvq_param_bounds() : declared range of a named parameter. */
KVQ_API kvq_err kvq_param_bounds(const kvq_codec *c, const char *name, double *min, double *max);

/* kvq_spec_parse() : "NAME[:KEY=VALUE[,KEY=VALUE]...]" → codec + params.
 * Unknown names → KVQ_ERR_UNKNOWN_CODEC; unknown keys, malformed text →
 * KVQ_ERR_SPEC; values out of range or non-integral for integer params →
 * KVQ_ERR_PARAM_RANGE.  Keys not given keep their defaults. */
KVQ_API kvq_err kvq_spec_parse(const char *spec, const kvq_codec **codec, kvq_params *params);
/* kvq_spec_format() : canonical spec (every non-default param, declaration
 * order) into buf; returns buf. */
KVQ_API char *kvq_spec_format(const kvq_codec *c, const kvq_params *p, char *buf, size_t cap);

/* ---- contexts ---------------------------------------------------------- */
typedef struct kvq_ctx kvq_ctx;

/* kvq_ctx_create() : context for a spec string; free with kvq_ctx_free(). */
KVQ_API kvq_err kvq_ctx_create(const char *spec, kvq_ctx **out);
/* kvq_ctx_create_params() : context for a codec and explicit params. */
KVQ_API kvq_err kvq_ctx_create_params(const kvq_codec *c, const kvq_params *p, kvq_ctx **out);
/* kvq_ctx_free() : NULL-safe. */
KVQ_API void kvq_ctx_free(kvq_ctx *ctx);
KVQ_API const kvq_codec *kvq_ctx_codec(const kvq_ctx *ctx);
KVQ_API const kvq_params *kvq_ctx_params(const kvq_ctx *ctx);
/* kvq_ctx_set_param() : checked against the declared range; re-initialises
 * the codec state (calibration is lost).  Settings stay until reset. */
KVQ_API kvq_err kvq_ctx_set_param(kvq_ctx *ctx, const char *name, double value);
/* kvq_ctx_reset() : back to the declared defaults. */
KVQ_API kvq_err kvq_ctx_reset(kvq_ctx *ctx);
/* kvq_ctx_calibrate() : one calibration sample (f32 view, rows = tokens). */
KVQ_API kvq_err kvq_ctx_calibrate(kvq_ctx *ctx, const kvq_tensor *sample);

/* kvq_ctx_bound() : worst-case size of a whole blob (header + payload). */
KVQ_API size_t kvq_ctx_bound(const kvq_ctx *ctx, const kvq_shape *s);
/* kvq_ctx_encode() : src (f32/f16/bf16 view; converted as needed) → blob in
 * dst[cap]; *n = blob bytes.  Not thread-safe per context. */
KVQ_API kvq_err kvq_ctx_encode(kvq_ctx *ctx, const kvq_tensor *src, void *dst, size_t cap, size_t *n);

/* Payload-level calls, for containers that store codec/params/shape
 * themselves (the .kvq directory, GGUF blocks, KV-cache pages). */
KVQ_API size_t kvq_ctx_payload_bound(const kvq_ctx *ctx, const kvq_shape *s);
KVQ_API kvq_err kvq_ctx_encode_payload(kvq_ctx *ctx, const kvq_tensor *src, void *dst,
                                       size_t cap, size_t *n);
/* dst: f32 contiguous view whose shape is the encoded tensor's shape. */
KVQ_API kvq_err kvq_ctx_decode_payload(kvq_ctx *ctx, const void *src, size_t n, kvq_tensor *dst);
/* Rows [r0, r1) of a payload of shape s into out; uses the codec's
 * decode_rows when present, else decodes whole and copies. */
KVQ_API kvq_err kvq_ctx_decode_rows(kvq_ctx *ctx, const void *src, size_t n, const kvq_shape *s,
                                    int64_t r0, int64_t r1, float *out);
/* kvq_ctx_payload_parts() : a payload's bytes by component (the codec's
 * `parts`, or everything as codes when it has none). */
KVQ_API kvq_err kvq_ctx_payload_parts(kvq_ctx *ctx, const void *src, size_t n, const kvq_shape *s,
                                      kvq_codec_parts *out);

/* ---- self-describing blobs (FORMAT.md §1) ------------------------------ */
typedef struct kvq_blob_info {
    const kvq_codec *codec;
    kvq_params       params;
    kvq_shape        shape;
    size_t           header_size;   /* payload starts here                */
    size_t           payload_size;
    uint32_t         payload_crc;
} kvq_blob_info;

/* kvq_blob_info_read() : validate the header (magic, version, header CRC,
 * known codec, params in range, sane shape, length fits n). */
KVQ_API kvq_err kvq_blob_info_read(const void *blob, size_t n, kvq_blob_info *info);
/* kvq_blob_decode() : decode a blob into dst (f32, contiguous, same number
 * of elements as the blob's shape).  Checks the payload CRC. */
KVQ_API kvq_err kvq_blob_decode(const void *blob, size_t n, kvq_tensor *dst);

/* kvq_crc32() : CRC-32/ISO-HDLC (zlib, PNG, gzip); crc = 0 to start. */
KVQ_API uint32_t kvq_crc32(uint32_t crc, const void *data, size_t n);

/* ---- tensor error metrics (quant-methods.md §7.5) ----------------------- */
typedef struct kvq_err_stats {
    double rmse, max_abs, rel_fro, cos, sqnr_db;
} kvq_err_stats;
/* kvq_err_stats_compute() : x = reference, y = reconstruction, n values.
 * sqnr_db = 10·log10(Σx² / Σ(x−y)²), +Inf when exact. */
KVQ_API kvq_err_stats kvq_err_stats_compute(const float *x, const float *y, size_t n);

/* ======================================================================== */
/*  Section: models and checkpoints  (libkvq/model*.c, ckpt_*.c)            */
/* ======================================================================== */
typedef enum kvq_arch { KVQ_ARCH_LLAMA = 0, KVQ_ARCH_MAMBA2 = 1 } kvq_arch;

typedef enum kvq_format {
    KVQ_FORMAT_LLAMA2C = 0,      /* llama2.c .bin (v0; v1 readable)          */
    KVQ_FORMAT_GGUF = 1,         /* GGUF v1-v3                               */
    KVQ_FORMAT_SAFETENSORS = 2,  /* single file or sharded index.json        */
    KVQ_FORMAT_KVQ = 3           /* kvq container (FORMAT.md §2)             */
} kvq_format;

/* Which channel pairs RoPE rotates inside a head of size hs:
 * ADJACENT = (2j, 2j+1) as llama2.c, Meta and GGUF store Q/K;
 * HALF     = (j, j+hs/2) as Hugging Face stores them ("rotate_half"). */
typedef enum kvq_rope { KVQ_ROPE_ADJACENT = 0, KVQ_ROPE_HALF = 1 } kvq_rope;

typedef struct kvq_model_config {
    kvq_arch arch;
    int   dim;              /* residual width                             */
    int   hidden_dim;       /* FFN width                                  */
    int   n_layers;
    int   n_heads;          /* query heads                                */
    int   n_kv_heads;       /* K/V heads (GQA when < n_heads)             */
    int   head_size;        /* dim / n_heads                              */
    int   vocab_size;
    int   seq_len;          /* trained context length                     */
    float norm_eps;         /* RMSNorm epsilon (llama2.c: 1e-5)           */
    float rope_theta;       /* RoPE base (10000)                          */
    kvq_rope rope;          /* channel pairing of the stored Q/K rows     */
    int   shared_classifier;/* 1: output.weight is token_embd.weight     */
    /* ---- appended: Mamba-2 (arch KVQ_ARCH_MAMBA2; 0 for Llama) ----------
     * hidden_dim = d_inner = expand·dim, n_heads = SSM heads, head_size =
     * SSM head dim.  Stored in .kvq / safetensors files as the string
     * metadata kvq.ssm_state, kvq.ssm_groups, kvq.conv_kernel.           */
    int   ssm_state;        /* d_state                                    */
    int   ssm_groups;       /* SSD groups sharing B and C (n_groups)      */
    int   conv_kernel;      /* causal depthwise conv width                */
} kvq_model_config;

/* One weight as the model holds it: either plain (codec == NULL; dtype
 * f32/f16/bf16, little-endian, row-major) or encoded by a codec (data is
 * the codec's payload).  Names are canonical GGUF-style names:
 * token_embd.weight, blk.N.attn_{norm,q,k,v,output}.weight,
 * blk.N.ffn_{norm,gate,up,down}.weight, output_norm.weight, output.weight.
 * Linear weights are [out][in].  data points into the mmap'd file or into
 * memory owned by the model; valid until kvq_model_free(). */
typedef struct kvq_weight {
    const char *name;
    kvq_shape   shape;
    kvq_dtype   dtype;      /* storage type when codec == NULL            */
    kvq_ctx    *codec;      /* owned by the model; NULL for plain storage */
    const void *data;
    size_t      size;       /* bytes at data                              */
} kvq_weight;

typedef struct kvq_model kvq_model;

/* kvq_model_load() : open a checkpoint; the format is detected from its
 * magic (GGUF, KVQ container, safetensors header) or, failing that, checked
 * as a llama2.c .bin by its exact expected size.  A directory or a
 * *.safetensors.index.json opens a sharded safetensors checkpoint.  Weights
 * are mmap'd, not copied.  Free with kvq_model_free().  Errors name the
 * file and the problem in kvq_last_error_detail(). */
KVQ_API kvq_err kvq_model_load(const char *path, kvq_model **out);
/* kvq_model_free() : NULL-safe. */
KVQ_API void kvq_model_free(kvq_model *m);
KVQ_API kvq_format kvq_model_format(const kvq_model *m);
KVQ_API const char *kvq_format_name(kvq_format f);
KVQ_API const kvq_model_config *kvq_model_config_get(const kvq_model *m);
KVQ_API size_t kvq_model_n_weights(const kvq_model *m);
KVQ_API const kvq_weight *kvq_model_weight_at(const kvq_model *m, size_t i);
/* kvq_model_weight() : by canonical name; NULL if absent. */
KVQ_API const kvq_weight *kvq_model_weight(const kvq_model *m, const char *name);
/* kvq_model_tokenizer() : the embedded tokenizer as llama2.c tokenizer.bin
 * bytes (built from GGUF/.kvq metadata), or NULL when the file has none. */
KVQ_API const void *kvq_model_tokenizer(const kvq_model *m, size_t *n);

/* kvq_weight_rows() : rows [r0, r1) of a weight as f32 (dequantized for
 * encoded weights, widened for f16/bf16) into out[(r1-r0)*cols].
 * Concurrent calls are safe for plain weights and for codecs whose decode
 * only reads its state (f32, f16, bf16, rtn, q8_0, q4_0 do). */
KVQ_API kvq_err kvq_weight_rows(const kvq_weight *w, int64_t r0, int64_t r1, float *out);

/* kvq_model_load_memory() : the same readers over bytes the caller owns
 * (one file's image; sharded safetensors need kvq_model_load).  `name`
 * labels error details.  Weights point into `data`, which must outlive
 * the model.  Free with kvq_model_free(). */
KVQ_API kvq_err kvq_model_load_memory(const void *data, size_t n, const char *name, kvq_model **out);
/* kvq_model_format_version() : version of the file read (llama2.c 0/1,
 * GGUF 1-3, safetensors 0, .kvq 1). */
KVQ_API int kvq_model_format_version(const kvq_model *m);
KVQ_API const char *kvq_arch_name(kvq_arch a);
/* String metadata carried with the model (GGUF string keys such as
 * general.name, safetensors __metadata__, .kvq key/values).  Both
 * pointers stay valid until kvq_model_free(). */
KVQ_API size_t kvq_model_n_meta(const kvq_model *m);
KVQ_API kvq_err kvq_model_meta_at(const kvq_model *m, size_t i, const char **key, const char **value);
/* kvq_model_set_tokenizer() : attach llama2.c tokenizer.bin bytes (copied;
 * validated as that format against the model's vocabulary size). */
KVQ_API kvq_err kvq_model_set_tokenizer(kvq_model *m, const void *bytes, size_t n);
/* kvq_weight_bits() : storage bits per value of a weight (size·8/numel). */
KVQ_API double kvq_weight_bits(const kvq_weight *w);
/* kvq_weight_type_name() : codec spec or dtype name ("q4_0", "f32") into
 * buf; returns buf. */
KVQ_API char *kvq_weight_type_name(const kvq_weight *w, char *buf, size_t cap);

/* ---- writing ------------------------------------------------------------ */
/* kvq_format_from_path() : by extension (.kvq, .gguf, .safetensors, .bin);
 * KVQ_ERR_ARG when the extension names none. */
KVQ_API kvq_err kvq_format_from_path(const char *path, kvq_format *f);
/* kvq_format_from_name() : "kvq", "gguf", "safetensors", "llama2.c";
 * KVQ_ERR_ARG otherwise. */
KVQ_API kvq_err kvq_format_from_name(const char *name, kvq_format *f);
/* kvq_model_save() : write m as a .kvq container (FORMAT.md §2), GGUF v3
 * (plain f32/f16/bf16 and the q8_0/q4_0/mxfp4 codecs only; others give
 * KVQ_ERR_UNSUPPORTED naming the tensor) or safetensors (every weight
 * dequantized to f32, HF names, Q/K rows in HF "rotate_half" order).
 * Temp file + rename; an existing path is refused (KVQ_ERR_EXISTS) unless
 * overwrite.  Not llama2.c .bin (KVQ_ERR_UNSUPPORTED). */
KVQ_API kvq_err kvq_model_save(const kvq_model *m, const char *path, kvq_format fmt, int overwrite);

/* ---- quantization driver -------------------------------------------------- */
/* Per-tensor outcome of kvq_model_quantize(). */
typedef struct kvq_quant_stat {
    const char *name;           /* canonical weight name (model-owned)   */
    kvq_shape   shape;
    char        src_type[32];   /* "f32"                                 */
    char        dst_type[96];   /* spec actually used ("q4_0", "f16")    */
    size_t      bytes_in, bytes_out;
    double      bpw;            /* bits per weight of the output          */
    double      sqnr_db;        /* +Inf when exact                        */
    double      max_abs_err;
    int         fallback;       /* 1: requested codec rejected the shape  */
    char        note[160];      /* why it fell back / kept f32 ("")       */
} kvq_quant_stat;

typedef struct kvq_quant_opts {
    const char *spec;           /* default spec for 2-D+ weights          */
    const char *const *rules;   /* "REGEX=SPEC" (POSIX ERE, first match)  */
    size_t      n_rules;
    int         n_threads;      /* <= 0: one                              */
    const char *fallback_spec;  /* NULL: "f16"                            */
    /* Called (serialised, any thread) after each tensor; may be NULL. */
    void      (*progress)(void *opaque, size_t done, size_t total);
    void       *opaque;
    /* ---- appended fields (zero = off) ---------------------------------- */
    /* Calibration inputs (section "calibration"): a weight whose codec has
     * a calibrate() gets kvq_ctx_calibrate(ctx, X) with X = the captured
     * inputs of its linear layer before it is encoded; a codec flagged
     * KVQ_FLAG_NEEDS_CALIB fails (KVQ_ERR_ARG) without them. */
    const struct kvq_calib *calib;
    /* The activation codec the weights will run with (NULL: none given).
     * Weights encoded by `fp` with rounds=N > 0 are searched jointly with
     * it (LLM-FP4's alternating rounds, quant/fp_joint.c; it must be `fpa`,
     * NULL means plain "fpa"); kvq_eval with the same act spec and calib
     * then gives each fpa context the joint result. */
    const char *act_spec;
} kvq_quant_opts;

/* kvq_model_quantize() : encode every weight of `in` into a new model.
 * 1-D weights stay f32 unless a rule names them.  A tensor the chosen
 * codec rejects because of its shape falls back to fallback_spec, with
 * `fallback` and `note` set.  *stats (one per weight, in model order)
 * is malloc'd: free() it; *out: kvq_model_free(). */
KVQ_API kvq_err kvq_model_quantize(const kvq_model *in, const kvq_quant_opts *o, kvq_model **out,
                                   kvq_quant_stat **stats);
/* kvq_tensor_rule_spec() : the SPEC part of a "REGEX=SPEC" rule.  The spec
 * may itself contain '=' (rtn:bits=4) and the regex may too, so the split
 * is the first '=' followed by a registered codec name; NULL when there is
 * none.  Points into `rule`. */
KVQ_API const char *kvq_tensor_rule_spec(const char *rule);

/* ======================================================================== */
/*  Section: reference decoder, tokenizer, sampler                          */
/* ======================================================================== */
/* ---- tokenizer: llama2.c tokenizer.bin (formats-and-engines.md §3.2) ---- */
/* int32 max_token_length, then per token {f32 score, int32 len, bytes}.
 * Encoding and decoding follow llama2.c run.c exactly (BOS = 1, EOS = 2,
 * dummy-prefix " ", UTF-8 code points, <0xHH> byte fallback at id byte+3,
 * greedy merge of the best-scoring adjacent pair, lowest index on ties). */
#define KVQ_TOKEN_BOS 1
#define KVQ_TOKEN_EOS 2

typedef struct kvq_tokenizer kvq_tokenizer;

/* kvq_tokenizer_load() : read `vocab_size` tokens of a tokenizer file
 * (0 = every token the file holds).  Free with kvq_tokenizer_free(). */
KVQ_API kvq_err kvq_tokenizer_load(const char *path, int vocab_size, kvq_tokenizer **out);
/* kvq_tokenizer_from_bytes() : the same from memory (e.g. the bytes of
 * kvq_model_tokenizer()); the bytes are copied.  `what` names them in
 * error details (NULL: "tokenizer"). */
KVQ_API kvq_err kvq_tokenizer_from_bytes(const void *p, size_t n, int vocab_size, const char *what,
                                         kvq_tokenizer **out);
KVQ_API void kvq_tokenizer_free(kvq_tokenizer *t);              /* NULL-safe */
KVQ_API int kvq_tokenizer_vocab_size(const kvq_tokenizer *t);
/* kvq_tokenizer_piece() : token id's stored string (NUL-terminated; NULL
 * for an id out of range); valid until kvq_tokenizer_free(). */
KVQ_API const char *kvq_tokenizer_piece(const kvq_tokenizer *t, int id);
KVQ_API float kvq_tokenizer_score(const kvq_tokenizer *t, int id);
/* kvq_tokenizer_lookup() : id of an exact piece, -1 if none. */
KVQ_API int kvq_tokenizer_lookup(const kvq_tokenizer *t, const char *piece);
/* kvq_tokenizer_encode_bound() : most tokens encode() can produce. */
KVQ_API size_t kvq_tokenizer_encode_bound(size_t text_len);
/* kvq_tokenizer_encode() : NUL-terminated UTF-8 text → token ids in
 * tokens[cap] (cap >= encode_bound(strlen(text))), *n = count.  bos/eos
 * prepend 1 / append 2.  Same result as run.c's encode(), computed with
 * a heap (O(n log n)) so whole corpora encode quickly.  Thread-safe. */
KVQ_API kvq_err kvq_tokenizer_encode(const kvq_tokenizer *t, const char *text, int bos, int eos,
                                     int *tokens, size_t cap, size_t *n);
/* kvq_tokenizer_decode() : the bytes to print for `token` following
 * `prev` as run.c's decode(): a leading space is dropped after BOS and
 * <0xHH> pieces become that one raw byte.  NUL-terminated; static or owned
 * by t.  NULL for an id out of range. */
KVQ_API const char *kvq_tokenizer_decode(const kvq_tokenizer *t, int prev, int token);
/* kvq_piece_is_safe() : run.c's safe_printf() test: 0 for an empty piece
 * or a single byte that is neither printable nor whitespace. */
KVQ_API int kvq_piece_is_safe(const char *piece);

/* ---- sampler (llama2.c run.c: argmax, multinomial, top-p, xorshift) ---- */
typedef struct kvq_sampler kvq_sampler;

/* kvq_sampler_create() : temperature 0 = greedy (argmax, lowest index on
 * ties); else softmax(logits / temperature) sampled with run.c's coin from
 * its xorshift64* state seeded with `seed`; top-p when 0 < topp < 1.
 * Free with kvq_sampler_free(). */
KVQ_API kvq_err kvq_sampler_create(int vocab_size, float temperature, float topp, uint64_t seed,
                                   kvq_sampler **out);
KVQ_API void kvq_sampler_free(kvq_sampler *s);                  /* NULL-safe */
/* kvq_sampler_sample() : next token; like run.c it scales and
 * softmaxes `logits` in place when temperature > 0. */
KVQ_API int kvq_sampler_sample(kvq_sampler *s, float *logits);
/* kvq_rng_u32() / kvq_rng_f32() : run.c's random_u32 / random_f32. */
KVQ_API uint32_t kvq_rng_u32(uint64_t *state);
KVQ_API float kvq_rng_f32(uint64_t *state);

/* ---- reference decoder (Llama: RMSNorm, RoPE, GQA, SwiGLU) ------------- */
/* Forward pass exactly as llama2.c run.c, f32 compute.  Weights stay in
 * their storage (f32 used in place from the mmap; f16/bf16/codec weights
 * dequantized row block by row block inside the matmul) unless
 * dequant_at_load.  K/V live in a kvq_cache (append + attend). */
typedef struct kvq_cache kvq_cache;
typedef struct kvq_decoder kvq_decoder;

/* The linear-layer inputs an activation hook sees. */
typedef enum kvq_linear {
    KVQ_LIN_QKV = 0,   /* attention-norm output, read by wq, wk, wv  [dim]        */
    KVQ_LIN_O = 1,     /* attention output, read by wo               [dim]        */
    KVQ_LIN_GATEUP = 2,/* ffn-norm output, read by w1 and w3          [dim]        */
    KVQ_LIN_DOWN = 3,  /* silu(w1 x) * (w3 x), read by w2             [hidden_dim] */
    KVQ_LIN_CLS = 4,   /* final-norm output, read by the classifier  [dim]        */
    /* Mamba-2 (libkvq/mamba2.c): QKV is the in_proj input [dim], O the
     * out_proj input (gated-norm output) [d_inner]; GATEUP/DOWN unused.
     * The SSM inputs after conv1d + SiLU are passed as shaped views so a
     * codec sees the SSD groups: */
    KVQ_LIN_SSM_X = 5, /* x, [1][n_groups][heads per group][head dim] (quamba2:
                          [n_groups][heads per group][head dim][1])        */
    KVQ_LIN_SSM_B = 6, /* B, [1][n_groups][d_state]                             */
    KVQ_LIN_SSM_C = 7, /* C, [1][n_groups][d_state]                             */
    /* Quamba2's other tensors (applied only by codecs that opt in by a
     * zdt / xbc / state parameter, i.e. quamba2; libkvq/mamba2.c): in_proj
     * outputs z and raw dt, the SSM state (captured at chunk ends), and
     * the in_proj outputs x, B, C before the conv: */
    KVQ_LIN_SSM_Z = 8,  /* z, [1][d_inner]                                      */
    KVQ_LIN_SSM_DT = 9, /* dt before dt_bias and softplus, [1][n_heads]         */
    KVQ_LIN_SSM_H = 10, /* state, [n_groups][heads per group][head dim][d_state] */
    KVQ_LIN_SSM_XI = 11, /* x before the conv, [1][d_inner]                     */
    KVQ_LIN_SSM_BI = 12, /* B before the conv, [1][n_groups·d_state]            */
    KVQ_LIN_SSM_CI = 13, /* C before the conv, [1][n_groups·d_state]            */
    KVQ_LIN__COUNT
} kvq_linear;

/* capture(user, layer, which, x, n): called with every linear input
 * before any activation codec (layer = n_layers for KVQ_LIN_CLS). */
typedef void (*kvq_act_capture_fn)(void *user, int layer, kvq_linear which, const float *x, int n);

typedef struct kvq_decoder_opts {
    int threads;                     /* worker threads for matmuls (<= 1: none) */
    int dequant_at_load;             /* 1: every weight widened to owned f32    */
    const struct kvq_cache_config *cache_cfg; /* NULL: f32 exact, seq_len tokens */
    kvq_cache *cache;                /* caller's cache (not owned); overrides cache_cfg */
    kvq_ctx *act[KVQ_LIN__COUNT];    /* codec applied (encode+decode) to each linear
                                        input; NULL entries: none; not owned       */
    kvq_act_capture_fn capture;      /* NULL: no capture                         */
    void *capture_user;
    /* ---- appended fields (zero = off) ---------------------------------- */
    /* Per-layer activation codecs, [(n_layers + 1) * KVQ_LIN__COUNT]
     * indexed layer * KVQ_LIN__COUNT + which (layer n_layers: KVQ_LIN_CLS);
     * when set it replaces act[]; NULL entries: none; not owned.  Lets a
     * codec calibrated on one layer's inputs serve that layer only. */
    kvq_ctx *const *act_layer;
} kvq_decoder_opts;

/* kvq_decoder_opts_init() : zeroes (1 thread, f32 cache, no hooks). */
KVQ_API void kvq_decoder_opts_init(kvq_decoder_opts *o);
/* kvq_decoder_create() : decoder over a loaded Llama or Mamba-2 model
 * (which must outlive it; Mamba-2 blocks: libkvq/mamba2.c, positions
 * restart at 0 or continue, never rewind).  Free with kvq_decoder_free(). */
KVQ_API kvq_err kvq_decoder_create(const kvq_model *m, const kvq_decoder_opts *o, kvq_decoder **out);
KVQ_API void kvq_decoder_free(kvq_decoder *d);                  /* NULL-safe */
/* kvq_decoder_forward() : one token at position pos (pos must equal the
 * number of tokens already in the cache); *logits = [vocab_size] f32
 * owned by the decoder, valid until the next call. */
KVQ_API kvq_err kvq_decoder_forward(kvq_decoder *d, int token, int pos, float **logits);
/* kvq_decoder_forward_seq() : teacher-forced tokens[n] at positions
 * pos0.. , in chunks whose matmuls share each weight row among the
 * chunk's tokens (bit-identical to n forward() calls); logits_out
 * [n][vocab_size], or NULL to skip the classifier (prefill only; no
 * KVQ_LIN_CLS hook calls then). */
KVQ_API kvq_err kvq_decoder_forward_seq(kvq_decoder *d, const int *tokens, int n, int pos0,
                                        float *logits_out);
/* kvq_decoder_reset() : empty the cache (start a new sequence). */
KVQ_API kvq_err kvq_decoder_reset(kvq_decoder *d);
KVQ_API kvq_cache *kvq_decoder_cache(kvq_decoder *d);
KVQ_API const kvq_model_config *kvq_decoder_config(const kvq_decoder *d);
/* kvq_decoder_weight_bytes() : bytes the decoder reads weights from
 * (stored size for weights read in place or in row blocks, f32 size for
 * owned copies; with dequant_at_load a tied classifier has its own copy,
 * since the transforms untie it). */
KVQ_API size_t kvq_decoder_weight_bytes(const kvq_decoder *d);
/* kvq_decoder_ssm_state_bytes() : Mamba-2 only (0 otherwise): bytes of the
 * recurrent state held now, all layers: the f32 conv windows plus the SSM
 * states, f32 or, with an SSM-state codec, the encoded payloads.  For
 * Mamba-2 models cache_cfg->k_spec, when set, names that state codec (a
 * codec serving KVQ_DOMAIN_SSM) and the K/V cache itself stays empty. */
KVQ_API size_t kvq_decoder_ssm_state_bytes(const kvq_decoder *d);

/* ---- offline transforms (float-logit preserving) ----------------------- */
/* They need a decoder created with dequant_at_load = 1 (owned f32
 * weights) and an empty cache; logits stay equal up to f32 rounding. */
/* kvq_transform_permute_qk() : within every head of KV group `kv_head`
 * of `layer`, move RoPE pair perm[j] to pair slot j (perm is a
 * permutation of 0..head_size/2-1) in wq's and wk's rows; the rotary
 * frequency travels with its pair. */
KVQ_API kvq_err kvq_transform_permute_qk(kvq_decoder *d, int layer, int kv_head, const int *perm);
/* kvq_transform_fold_scales() : divide the RMSNorm weight in front of
 * linear input `which` (QKV, GATEUP or CLS) by s[dim] and multiply the
 * matching columns of the linears reading it by s (SmoothQuant-style). */
KVQ_API kvq_err kvq_transform_fold_scales(kvq_decoder *d, int layer, kvq_linear which, const float *s);
/* kvq_transform_hadamard() : rotate the residual stream by the
 * orthonormal Walsh–Hadamard matrix (dim must be a power of two); RMSNorm
 * weights are folded into the linears first. */
KVQ_API kvq_err kvq_transform_hadamard(kvq_decoder *d);

/* ======================================================================== */
/*  Section: KV cache hooks                                                 */
/* ======================================================================== */
/* The runtime face of kvq: what an inference engine calls.  The reference
 * decoder is its first user.  One cache holds one sequence.
 *
 * Layout.  K/V rows are [n_tokens][n_kv_heads][head_size] f32 (kv_dim =
 * n_kv_heads·head_size values per token and per side).  The newest tokens
 * of each layer live in an f32 *window*; once a layer holds at least
 * window + page unsealed tokens, its oldest `page` of them are *sealed*:
 * encoded by the layer's K codec and V codec (separate contexts) through
 * kvq_ctx_encode_payload() on a 3-D tensor [page][n_kv_heads][head_size].
 * Codecs see rows = page·n_kv_heads and cols = head_size, so every row is
 * one (token, head) vector and groups along the contiguous axis never
 * straddle two heads (per-token-per-head scales, as KIVI's V and ggml's
 * KV types use); a codec that wants per-channel statistics can still read
 * the 3-D shape.  A layer whose K and V specs are both NULL is f32, exact
 * and unpaged; when only one side has a spec the other side is stored by
 * the lossless "f32" codec.
 *
 * Mapping onto Hugging Face transformers (Cache.update):
 *     def update(self, key_states, value_states, layer_idx, cache_kwargs):
 *         # key_states: [batch=1, H_kv, q_len, d] (post-RoPE)
 *         k = key_states[0].permute(1, 0, 2).contiguous().float()
 *         v = value_states[0].permute(1, 0, 2).contiguous().float()
 *         kvq_cache_append(c, layer_idx, k, v, q_len)     # [q_len, H_kv, d]
 *         n = kvq_cache_len(c, layer_idx)
 *         kvq_cache_read(c, layer_idx, 0, n, k_all, v_all)  # [n, H_kv, d]
 *         return k_all.permute(1, 0, 2)[None], v_all.permute(1, 0, 2)[None]
 *     get_seq_length(layer_idx) -> kvq_cache_len(c, layer_idx)
 *     crop(max_len)             -> kvq_cache_truncate(c, l, max_len) per layer
 *     reset()                   -> kvq_cache_clear(c)
 * An engine with its own attention uses update's return value (read); one
 * without uses kvq_cache_attend(), which never materialises more than it
 * must.  Batches map onto one cache per sequence.
 *
 * Thread-safety: a cache is used by one thread at a time; distinct caches
 * are independent.  Errors leave the cache as it was before the call
 * unless stated otherwise. */
typedef struct kvq_cache kvq_cache;
typedef struct kvq_depth_policy_i kvq_depth_policy_i;
typedef struct kvq_prefix_store_i kvq_prefix_store_i;

typedef struct kvq_cache_config {
    int n_layers, n_kv_heads, head_size, max_tokens;
    int window;                 /* W: f32 recent tokens (>= 0)              */
    int page;                   /* P: tokens per encoded page (>= 1)        */
    const char *k_spec;         /* codec spec for K pages; NULL = f32 exact */
    const char *v_spec;         /* codec spec for V pages; NULL = f32 exact */
    const char *const *k_spec_layer; /* optional [n_layers] overrides (NULL entries = k_spec) */
    const char *const *v_spec_layer; /* optional [n_layers] overrides       */
    /* ---- appended fields (zero = off) ---------------------------------- */
    int keep_decoded;           /* 1: keep each sealed page decoded in f32
                                   scratch (attend stops re-decoding; costs
                                   the f32 memory, not counted as stored)  */
    const kvq_depth_policy_i *depth; /* NULL: every layer on its own        */
    const void *depth_arg;      /* passed to depth->init                     */
    const kvq_prefix_store_i *prefix; /* NULL: no prefix sharing            */
    void *prefix_store;         /* the store's state, owned by the caller and
                                   shared by every cache that uses it       */
} kvq_cache_config;

typedef struct kvq_cache_stats {
    uint64_t tokens;            /* tokens held (summed over layers)         */
    uint64_t bytes_payload;     /* encoded page payloads (codes)            */
    uint64_t bytes_scales;      /* scales / zero points, where separable    */
    uint64_t bytes_lowrank;     /* low-rank factors (GEAR)                  */
    uint64_t bytes_sparse;      /* sparse outliers: indices + values        */
    uint64_t bytes_meta;        /* page headers, indices, bookkeeping       */
    uint64_t bytes_window;      /* f32 window                               */
    uint64_t bytes_total;
    double   bits_per_value;    /* 8·bytes_total / (tokens·2·kv_dim)        */
    /* ---- appended: depth policy counters (0 without one) ---------------- */
    uint64_t depth_vectors;     /* (token, head, side) vectors merged so far */
    uint64_t depth_retained;    /* ... of which kept their own vectors       */
} kvq_cache_stats;

/* kvq_cache_config_default() : W = 0, P = 1, no specs (f32, exact,
 * unpaged), no policies. */
KVQ_API kvq_cache_config kvq_cache_config_default(int n_layers, int n_kv_heads, int head_size,
                                                  int max_tokens);
/* kvq_cache_create() : checks the config (sizes > 0, window >= 0, page >= 1,
 * specs parse and name codecs serving the KEY / VALUE domain) and
 * allocates every buffer up front (window, page tables, decode scratch);
 * no allocation happens later except page payload growth.  Free with
 * kvq_cache_free(). */
KVQ_API kvq_err kvq_cache_create(const kvq_cache_config *cfg, kvq_cache **out);
/* kvq_cache_free() : NULL-safe; calls the depth policy's fini. */
KVQ_API void kvq_cache_free(kvq_cache *c);
/* kvq_cache_append() : K/V of n_tokens new tokens of one layer, each
 * [n_tokens][n_kv_heads][head_size] f32, copied.  Seals pages as the
 * window overflows.  KVQ_ERR_ARG past max_tokens or for a bad layer
 * (nothing appended).  When sealing fails (a codec rejects the page, e.g.
 * its shape or a NaN), the tokens copied so far stay appended and the
 * unsealable page stays in the window: kvq_cache_len() tells how many. */
KVQ_API kvq_err kvq_cache_append(kvq_cache *c, int layer, const float *k, const float *v,
                                 int n_tokens);
/* kvq_cache_read() : tokens [t0, t1) of a layer into k_out/v_out
 * ([t1-t0][n_kv_heads][head_size] each; either may be NULL), decoding
 * sealed pages. */
KVQ_API kvq_err kvq_cache_read(kvq_cache *c, int layer, int t0, int t1, float *k_out,
                               float *v_out);
/* kvq_cache_attend() : one query q [n_heads][head_size] against tokens
 * [0, n_ctx) of a layer; out [n_heads][head_size].  Query head h uses KV
 * head h / (n_heads / n_kv_heads) (n_heads must be a multiple of
 * n_kv_heads).  Reference arithmetic, in llama2.c's order: score_t =
 * (Σ_i q_i·k_t,i) / sqrtf(head_size) summed in i order; softmax with the
 * maximum subtracted, expf, sum in t order, divide; out_i = Σ_t p_t·v_t,i
 * in t order.  The order does not depend on window or page sizes, so a
 * paged f32 cache gives results bit-identical to an unpaged one. */
KVQ_API kvq_err kvq_cache_attend(kvq_cache *c, int layer, const float *q, int n_heads, int n_ctx,
                                 float *out);
/* kvq_cache_len() : tokens held by a layer (-1 for a bad layer or NULL). */
KVQ_API int kvq_cache_len(const kvq_cache *c, int layer);
/* kvq_cache_truncate() : keep tokens [0, n) of a layer (HF crop,
 * llama_memory_seq_rm); a partly cut page is decoded back into the window. */
KVQ_API kvq_err kvq_cache_truncate(kvq_cache *c, int layer, int n);
/* kvq_cache_clear() : drop every token of every layer (keeps buffers). */
KVQ_API kvq_err kvq_cache_clear(kvq_cache *c);
/* kvq_cache_stats_get() : bytes by component, summed from what is actually
 * stored: the bytes the codecs wrote for sealed pages, split by the codec's
 * `parts` (kvq_ctx_payload_parts: codes → payload, scales, lowrank, sparse,
 * meta; a codec without `parts` counts all as payload), plus what a depth
 * policy or prefix store reports, meta = the page table
 * entries (KVQ_CACHE_PAGE_META bytes per sealed page and side), window =
 * 4 bytes per f32 value held unsealed.  bits_per_value = 8·total /
 * (tokens·2·kv_dim). */
KVQ_API kvq_err kvq_cache_stats_get(const kvq_cache *c, kvq_cache_stats *st);
/* kvq_cache_codec() : the context that encodes a layer's K (side 0) or V
 * (side 1) pages, e.g. to calibrate it before appending; NULL when that
 * side of the layer is unpaged.  Owned by the cache. */
KVQ_API kvq_ctx *kvq_cache_codec(kvq_cache *c, int layer, int side);
/* Bytes of page-table metadata per sealed page and side: payload offset
 * (u64) + payload length (u32) + owner tag (u32), as a serialised cache
 * would store them. */
#define KVQ_CACHE_PAGE_META 16u

/* ---- plug point 1: depth policies (MiniCache, cache-methods.md §2) ------
 * A depth policy may take over how sealed pages are stored, typically to
 * merge the same tokens of adjacent layers.  Sealing order: an engine that
 * appends layer-major per step (all layers for token t before token t+1,
 * as the reference decoder does) seals page i of layer l before page i of
 * layer l+1, so when layer l's page is offered, layer l-1's page of the
 * same tokens is already sealed and readable through kvq_cache_read().
 * Pattern (sqlite3_vfs): a versioned table of functions; the cache
 * allocates state_size bytes (zeroed) and passes them to every call.
 *
 * seal   : page `pg` of a layer is leaving the window.  Set *taken = 1 to
 *          store it yourself (the cache then stores nothing for it and
 *          asks `load` whenever it needs those tokens); *taken = 0 lets the
 *          layer's codecs encode it.  The policy may call kvq_cache_read()
 *          on other layers (never on pg->layer).  When it takes page i of
 *          layer l it may change how page i of layer l-1 reads (merging);
 *          with keep_decoded the cache then reloads that page's copy.
 * load   : K/V of a page the policy took, [P][n_kv_heads][head_size] each:
 *          its current contents (a policy may revise a page it holds, e.g.
 *          merge it when the next layer's page arrives).
 * drop   : the cache no longer holds page `index` of `layer` (truncate,
 *          clear); the policy frees what it kept for it.
 * bytes  : add the policy's stored bytes into st (payload/scales/lowrank/
 *          sparse/meta); the cache adds its own and computes totals. */
typedef struct kvq_kv_page {
    int layer;                  /* 0..n_layers-1                             */
    int index;                  /* page number in the layer: tokens
                                   [index·P, index·P + n_tokens)             */
    int n_tokens;               /* P                                         */
    int n_kv_heads, head_size;
    const float *k, *v;         /* [n_tokens][n_kv_heads][head_size] f32     */
} kvq_kv_page;

#define KVQ_DEPTH_POLICY_ABI 1
struct kvq_depth_policy_i {
    unsigned    abi;            /* KVQ_DEPTH_POLICY_ABI; fields only appended */
    const char *name;
    size_t      state_size;
    kvq_err (*init)(void *st, const kvq_cache_config *cfg, const void *arg);
    kvq_err (*seal)(void *st, kvq_cache *c, const kvq_kv_page *pg, int *taken);
    kvq_err (*load)(void *st, int layer, int index, float *k, float *v);
    void    (*drop)(void *st, int layer, int index);
    void    (*bytes)(const void *st, kvq_cache_stats *acc);
    void    (*fini)(void *st);  /* NULL if none */
};

/* ---- plug point 2: prefix stores (PLT, cache-methods.md §3.3) ----------
 * A prefix store keeps sealed pages keyed by the token ids of the whole
 * prefix up to the page's end, and hands them to other sequences that
 * start with the same (page-aligned) tokens: exact matches only.  Its
 * state belongs to the caller and outlives caches (cfg.prefix_store).
 * The engine tells the cache the token ids with kvq_cache_set_tokens();
 * the cache then
 *  - on kvq_cache_prefix_load(): asks `match` for the longest stored
 *    prefix, and for every layer and page in it calls `load` and appends
 *    those tokens (so the engine skips their forward pass);
 *  - on every seal whose tokens are known: calls `publish` (after the
 *    depth policy, whatever stored the page) so the store may keep it. */
#define KVQ_PREFIX_STORE_ABI 1
struct kvq_prefix_store_i {
    unsigned    abi;            /* KVQ_PREFIX_STORE_ABI                      */
    const char *name;
    /* *n_match = longest page-aligned prefix of tokens[0, n) stored for
     * every layer (a multiple of page, <= n). */
    kvq_err (*match)(void *store, const int32_t *tokens, int n, int page, int *n_match);
    /* K/V of page `index` of `layer` for the prefix tokens[0, (index+1)·page). */
    kvq_err (*load)(void *store, const int32_t *tokens, int layer, int index, int page,
                    float *k, float *v);
    /* A sealed page; tokens[0, (pg->index+1)·P) is its whole prefix. */
    kvq_err (*publish)(void *store, const int32_t *tokens, const kvq_kv_page *pg);
};

/* kvq_cache_set_tokens() : token ids of positions [t0, t0+n) of the
 * sequence (needed by a prefix store; ignored without one). */
KVQ_API kvq_err kvq_cache_set_tokens(kvq_cache *c, int t0, const int32_t *tokens, int n);
/* kvq_cache_prefix_load() : on an empty cache, fill every layer with the
 * longest stored prefix of tokens[0, n) (which become the cache's token
 * ids); *n_loaded = tokens now held per layer (0 without a store).  The
 * engine starts its forward passes at position *n_loaded.  Loaded pages
 * are appended like new tokens, so they are sealed (re-encoded by this
 * cache's codecs) as usual, and are not published back to the store. */
KVQ_API kvq_err kvq_cache_prefix_load(kvq_cache *c, const int32_t *tokens, int n, int *n_loaded);

/* ======================================================================== */
/*  Section: evaluation                                                     */
/* ======================================================================== */
/* Teacher-forced comparison of a candidate model (quantized weights,
 * activation codec, compressed KV cache) against the f32 model on the same
 * tokens, with llama-perplexity's definitions (quant-methods.md §7), so
 * numbers read like llama.cpp's KL-divergence printout.
 *
 * Differences from llama-perplexity, by design:
 *  - the base logits are held in memory as f32 and KL is computed exactly
 *    over the full softmax, in double precision; llama.cpp stores the base
 *    log-probabilities as uint16 and drops terms with log p_base <= -16,
 *    which gives even f16-vs-itself a small floor.  Here f32 vs f32 is
 *    exactly 0 (every term is p·(x − x) = 0).
 * Statistics: mean ± sqrt(var/(n−1)) (0 when n <= 10); percentiles by
 * linear interpolation on sorted values at index f·(n−1); PPL = exp(mean
 * NLL) ± PPL·unc(NLL); same-top ± sqrt(p(1−p)/(n−1)); ln-ratio and
 * difference uncertainties use the covariance of the two NLL series. */

/* One scored token: candidate vs base. */
typedef struct kvq_eval_token {
    double nll_q, nll_base;     /* −ln p(target)                            */
    double p_q, p_base;         /* p(target)                                */
    double kld;                 /* Σ_i p_base,i·(ln p_base,i − ln p_q,i)    */
    int    same_top;            /* argmax equal (lowest index on ties)      */
} kvq_eval_token;

/* kvq_eval_compare() : softmaxes both logit rows in double (maximum
 * subtracted) and fills *t for the true next token `target`.
 * KVQ_ERR_ARG for a bad target or size, KVQ_ERR_NONFINITE for NaN/Inf
 * logits.  Pure; thread-safe. */
KVQ_API kvq_err kvq_eval_compare(const float *logits_base, const float *logits_q, int n_vocab, int target,
                                 kvq_eval_token *t);

/* Percentile levels, as llama-perplexity prints them (fractions, highest
 * first: max, 99.9%, ... , min). */
#define KVQ_EVAL_N_KLD_LEVELS 11    /* 1 .999 .99 .95 .90 .5 .1 .05 .01 .001 0 */
#define KVQ_EVAL_N_DP_LEVELS 13     /* 1 .999 .99 .95 .90 .75 .5 .25 .1 .05 .01 .001 0 */
KVQ_API const double *kvq_eval_kld_levels(void);
KVQ_API const double *kvq_eval_dp_levels(void);

typedef struct kvq_eval_summary {
    uint64_t n;                 /* tokens scored                            */
    double ppl_q, ppl_q_unc, ppl_base, ppl_base_unc;
    double ln_ppl_cor;          /* Cor(ln PPL(Q), ln PPL(base)), [-1, 1]    */
    double ln_ratio, ln_ratio_unc;   /* mean ln(PPL(Q)/PPL(base))           */
    double ppl_ratio, ppl_ratio_unc; /* PPL(Q)/PPL(base)                    */
    double ppl_diff, ppl_diff_unc;   /* PPL(Q) − PPL(base)                  */
    double kld_mean, kld_unc;
    double kld_pct[KVQ_EVAL_N_KLD_LEVELS];  /* at kvq_eval_kld_levels()      */
    double dp_mean, dp_unc;          /* Δp = p_q − p_base (fraction)        */
    double dp_pct[KVQ_EVAL_N_DP_LEVELS];    /* at kvq_eval_dp_levels()      */
    double dp_rms, dp_rms_unc;
    double same_top, same_top_unc;   /* fraction                            */
} kvq_eval_summary;

/* Accumulates tokens (sums and the per-token KLD / Δp series). */
typedef struct kvq_eval_acc kvq_eval_acc;
/* kvq_eval_acc_create() : empty accumulator; free with kvq_eval_acc_free(). */
KVQ_API kvq_err kvq_eval_acc_create(kvq_eval_acc **out);
KVQ_API void kvq_eval_acc_free(kvq_eval_acc *a);                /* NULL-safe */
KVQ_API kvq_err kvq_eval_acc_add(kvq_eval_acc *a, const kvq_eval_token *t);
KVQ_API uint64_t kvq_eval_acc_count(const kvq_eval_acc *a);
/* kvq_eval_summarize() : every statistic above (zeros when empty). */
KVQ_API kvq_err kvq_eval_summarize(const kvq_eval_acc *a, kvq_eval_summary *s);

/* The pieces, exposed for tests and other reports. */
/* kvq_eval_percentile() : sorted[n] ascending, f in [0, 1]; 0 when n = 0. */
KVQ_API double kvq_eval_percentile(const double *sorted, size_t n, double f);
/* kvq_eval_mean_unc() : mean = sum/n; unc = sqrt((sum2/n − mean²)/(n−1))
 * when that variance is > 0 and n > 10, else 0. */
KVQ_API void kvq_eval_mean_unc(double sum, double sum2, uint64_t n, double *mean, double *unc);

/* ---- the evaluation driver (libkvq/eval_driver.c) ---------------------
 * Teacher-forced, llama-perplexity's chunked mode: the token stream is
 * split into floor(n / ctx) chunks of ctx tokens; each chunk starts from
 * an empty cache with its first token replaced by BOS; logits at
 * positions first = ctx/2 .. ctx−2 are scored against the next token
 * (ctx − 1 − ctx/2 tokens per chunk).  Base and candidate see the same
 * tokens. */
typedef struct kvq_eval_opts {
    int ctx;                    /* tokens per chunk; 0: min(seq_len, 512)   */
    int max_chunks;             /* 0: all                                   */
    int threads;                /* decoder worker threads (<= 1: none)      */
    const char *act_spec;       /* codec on every linear input; NULL: none  */
    const char *kv_k_spec, *kv_v_spec; /* candidate cache codecs; NULL: f32 */
    int kv_window, kv_page;     /* candidate cache W and P (P 0: 32)        */
    /* progress(user, chunks done, chunks total); may be NULL. */
    void (*progress)(void *user, int done, int total);
    void *user;
    /* ---- appended fields (zero = off) ---------------------------------- */
    /* Calibration inputs for the activation codec: when act_spec names a
     * codec with a calibrate(), one context per (layer, linear input) is
     * made and calibrated on that input's captured rows (KVQ_FLAG_NEEDS_CALIB
     * codecs fail with KVQ_ERR_ARG without them). */
    const struct kvq_calib *calib;
    /* Candidate cache depth policy "NAME[:ARG]" (kvq_depth_policy_find;
     * ARG becomes depth_arg), NULL: none; keep_decoded for its cache. */
    const char *kv_depth;
    int kv_keep_decoded;
} kvq_eval_opts;

typedef struct kvq_eval_result {
    kvq_eval_summary s;
    int      ctx, n_chunks;
    uint64_t n_text_tokens;     /* tokens in the stream (with BOS)          */
    uint64_t weight_bytes_base, weight_bytes_q; /* Σ stored weight bytes    */
    uint64_t n_weights;         /* Σ weight values                          */
    double   bpw_base, bpw_q;   /* 8·bytes / values                         */
    double   kv_bytes_per_token;     /* candidate, all layers, K+V, measured
                                        on a full chunk from cache stats    */
    double   kv_bytes_per_token_f32; /* 2·L·kv_dim·4                        */
    double   kv_ratio_f32, kv_ratio_f16; /* f32 / f16 bytes over measured   */
    double   kv_bits_per_value;
    double   seconds;
    double   act_bits_per_value; /* activation codec: 8·Σ payload bytes /
                                    Σ values for one row of each Llama
                                    linear input (the codec's bound, which
                                    is its size for fixed-rate codecs;
                                    activations are never stored); 32
                                    without an activation codec         */
    double   kv_retained_fraction; /* depth policy: retained / merged
                                      (token, head, side) vectors; 0 without */
} kvq_eval_result;

/* kvq_eval_opts_init() : zeroes (ctx from the model, all chunks). */
KVQ_API void kvq_eval_opts_init(kvq_eval_opts *o);

/* The base run, kept to compare several candidates against (llama.cpp's
 * --kl-divergence-base, held in memory as f32): the chunked tokens and the
 * f32 model's logits at every scored position, n_chunks·(ctx−1−ctx/2)·
 * vocab_size floats.  Free with kvq_eval_base_free(). */
typedef struct kvq_eval_base kvq_eval_base;
/* kvq_eval_base_create() : runs `base` (f32 cache, no hooks; uses o->ctx,
 * max_chunks, threads, progress) over tokens[n], the stream with BOS
 * first.  KVQ_ERR_ARG when not one chunk fits.  base must outlive it. */
KVQ_API kvq_err kvq_eval_base_create(const kvq_model *base, const int *tokens, size_t n,
                                     const kvq_eval_opts *o, kvq_eval_base **out);
KVQ_API void kvq_eval_base_free(kvq_eval_base *b);               /* NULL-safe */
/* kvq_eval_candidate() : runs `cand` (quantized weights; o's activation
 * and KV codecs) on the base run's tokens and fills *r.  cand must have
 * the base model's configuration (it may be the same object). */
KVQ_API kvq_err kvq_eval_candidate(const kvq_eval_base *b, const kvq_model *cand, const kvq_eval_opts *o,
                                   kvq_eval_result *r);
/* kvq_eval_run() : kvq_eval_base_create + kvq_eval_candidate + free.
 * Every weight of the model counts in bpw. */
KVQ_API kvq_err kvq_eval_run(const kvq_model *base, const kvq_model *cand, const int *tokens, size_t n,
                             const kvq_eval_opts *o, kvq_eval_result *r);


/* ======================================================================== */
/*  Section: calibration  (libkvq/calib.c)                                  */
/* ======================================================================== */
/* Calibration data for codecs that learn from activations (LLM-FP4's
 * searches, NUPES data-driven, GPTQ-like methods): the f32 decoder runs
 * over calibration tokens and the input rows X (tokens x in) of every
 * linear layer are captured through the decoder's activation hook
 * (quant-methods.md §0 "layer reconstruction": every layer sees the
 * full-precision model's inputs, no error propagation).
 *
 * Use:
 *     kvq_calib *cal;
 *     kvq_calib_create(model, tokens, n, 512, threads, &cal);
 *     kvq_quant_opts o = {.spec = "fp:search=paper", .calib = cal, ...};
 *     kvq_model_quantize(model, &o, &q, NULL);    // calibrate() per weight
 *     kvq_eval_opts e; ...; e.calib = cal;      // per-layer act codecs
 *     kvq_calib_free(cal);
 * A codec's calibrate() then receives X of its weight's layer as one
 * [tokens][in] f32 sample and may accumulate H = XᵀX (quant_common.h
 * kvq_gram_*) to score a candidate Ŵ by the layer-output error
 * ‖XWᵀ − XŴᵀ‖² = Σ_rows (w − ŵ) H (w − ŵ)ᵀ.
 * Memory is bounded: at most max_tokens rows per linear input
 * (≈ max_tokens · 4 · Σ widths bytes; 512 tokens of llama-4.6M ≈ 19 MB). */
#define KVQ_CALIB_TOKENS_DEFAULT 512
typedef struct kvq_calib kvq_calib;

/* kvq_calib_create() : runs m's weights as stored (f32 cache, no activation
 * codecs) over the first min(n, max_tokens) of tokens[n] (BOS first, as
 * the evaluator's streams), in pieces of at most seq_len tokens that each
 * start at position 0 with BOS in front; captures every linear input
 * including the classifier's.  max_tokens <= 0: KVQ_CALIB_TOKENS_DEFAULT.
 * Llama and Mamba-2 models (Mamba-2 also captures KVQ_LIN_SSM_X/B/C as
 * flat rows).  *out holds copies (m may be freed first).
 * Free with kvq_calib_free(). */
KVQ_API kvq_err kvq_calib_create(const kvq_model *m, const int *tokens, size_t n, int max_tokens, int threads,
                                 kvq_calib **out);
KVQ_API void kvq_calib_free(kvq_calib *c);                      /* NULL-safe */
/* kvq_calib_tokens() : rows captured per linear input. */
KVQ_API int kvq_calib_tokens(const kvq_calib *c);
/* kvq_calib_input() : X of linear input `which` of `layer` (layer =
 * n_layers for KVQ_LIN_CLS) as a [tokens][width] f32 view owned by c.
 * KVQ_ERR_ARG for a bad layer/which. */
KVQ_API kvq_err kvq_calib_input(const kvq_calib *c, int layer, kvq_linear which, kvq_tensor *x);
/* kvq_calib_for_weight() : X read by a weight, by canonical name:
 * blk.N.attn_{q,k,v} -> QKV, attn_output -> O, ffn_{gate,up} -> GATEUP,
 * ffn_down -> DOWN, output.weight (token_embd.weight when the classifier
 * is shared) -> CLS; Mamba-2: backbone.layers.N.mixer.in_proj -> QKV,
 * out_proj -> O, lm_head.weight (backbone.embeddings.weight when tied) ->
 * CLS.  KVQ_ERR_NOT_FOUND for weights that read no linear
 * input (norms, an untied embedding). */
KVQ_API kvq_err kvq_calib_for_weight(const kvq_calib *c, const char *name, kvq_tensor *x);
/* kvq_calib_weight_slot() : the (layer, which) a weight name reads, as
 * above; KVQ_ERR_NOT_FOUND otherwise.  Pure. */
KVQ_API kvq_err kvq_calib_weight_slot(const kvq_model_config *cfg, const char *name, int *layer,
                                      kvq_linear *which);


/* ======================================================================== */
/*  Section: Mamba-2 and Quamba2  (libkvq/mamba2.c, quant/quamba2.c)        */
/* ======================================================================== */
/* Quamba2's sort-and-cluster of the SSM input x (quant-methods.md §4.3)
 * and the offline rearrangement that makes its groups contiguous (§4.4).
 * x has n_groups SSD groups of heads_per_group heads of head_dim channels;
 * head h = g·heads_per_group + k belongs to group g. */
typedef struct kvq_quamba2_plan {
    int n_groups, heads_per_group, head_dim;
    int hg, cg;              /* head clusters per group, channel groups per
                                cluster (min of the request and what fits) */
    int *chan_perm;          /* [heads][head_dim]: sorted slot j of head h
                                holds channel chan_perm[h·head_dim + j] of h
                                (ascending s)                              */
    int *head_perm;          /* [heads]: new head slot k holds old head
                                head_perm[k]; clusters contiguous, inside
                                the slot's own SSD group                   */
    int *head_group_size;    /* [n_groups][hg], sums to heads_per_group    */
    int *chan_group_size;    /* [n_groups][hg][cg], sums to head_dim       */
    uint16_t *group_of;      /* [heads·head_dim]: scale group of each
                                original channel, (g·hg + cluster)·cg + cgroup */
} kvq_quamba2_plan;

/* kvq_quamba2_cluster() : the plan for channel statistics s[heads·
 * head_dim] (s_c = max over samples of mean over tokens |x_c|): per-head
 * ascending sort, Ward clustering of the unit-normalised sorted heads of
 * each SSD group into hg clusters, 1-D k-means of sorted positions into
 * cg contiguous groups per cluster.  Deterministic.  Free with
 * kvq_quamba2_plan_free(). */
KVQ_API kvq_err kvq_quamba2_cluster(const float *s, int n_groups, int heads_per_group, int head_dim, int hg,
                                    int cg, kvq_quamba2_plan **out);
KVQ_API void kvq_quamba2_plan_free(kvq_quamba2_plan *p);            /* NULL-safe */

/* kvq_mamba2_reorder() : Quamba2's offline rearrangement of one Mamba-2
 * layer of a decoder whose state is empty: x channel (k, j) becomes old
 * channel chan_perm[head_perm[k]·head_dim + j] of head head_perm[k]; the
 * z and x rows of in_proj, the x channels of conv1d, the gated-norm weight
 * and out_proj's input columns follow the channels, the dt rows of
 * in_proj, A_log, D and dt_bias follow the heads; B and C are untouched.
 * KVQ_ERR_ARG unless both are bijections and every head stays in its SSD
 * group.  Float logits are unchanged up to f32 rounding.  The decoder's
 * in_proj/out_proj become owned f32 copies. */
KVQ_API kvq_err kvq_mamba2_reorder(kvq_decoder *d, int layer, const int *head_perm, const int *chan_perm);

/* kvq_mamba2_state() : copies the SSM state of `layer` as the decoder
 * holds it now (after the last token; the decoded state when a state
 * codec keeps it encoded) into h[n_heads][head_dim][d_state] (caller's).
 * KVQ_ERR_ARG for a decoder that is not Mamba-2 or a bad layer.  Lets a
 * test compare states, e.g. before and after kvq_mamba2_reorder (§4.8.1). */
KVQ_API kvq_err kvq_mamba2_state(const kvq_decoder *d, int layer, float *h);

/* ======================================================================== */
/*  Section: Quasicryth  (compress/quasicryth/, FORMAT.md §4)               */
/* ======================================================================== */
/* Lossless text compression with Fibonacci-tiling n-gram codebooks
 * (papers/quasicryth.md).  Input is cut into independent blocks that are
 * compressed on several threads; binary blocks fall back to xz or stored,
 * so output exceeds input by at most a few dozen bytes. */
#define KVQ_QCX_LEVEL_MIN     1
#define KVQ_QCX_LEVEL_MAX     9
#define KVQ_QCX_LEVEL_DEFAULT 6
#define KVQ_QCX_HLEVELS       10  /* hierarchy levels: 0 = tiles, k = F(k+3)-word super-tiles */
#define KVQ_QCX_ELEVELS       12  /* event levels: 0 escape, 1 unigram, 2 bigram, 3..11 n-grams */
#define KVQ_QCX_THREADS_MAX   256

typedef enum kvq_qcx_tiling {
    KVQ_QCX_TILING_MULTI = 0,   /* 36 tilings: golden phases + multi-α (default, the paper's) */
    KVQ_QCX_TILING_FIB = 1,     /* the 12 golden-ratio tilings only                  */
    KVQ_QCX_TILING_P5 = 2,      /* periodic LLSLS baseline                          */
    KVQ_QCX_TILING_NONE = 3,    /* no tilings and no bigrams (baseline)             */
    KVQ_QCX_TILING_ALLPOS = 4   /* every position at every level ([ours] extension) */
} kvq_qcx_tiling;

typedef struct kvq_qcx_params {
    int            level;       /* KVQ_QCX_LEVEL_MIN..MAX                          */
    kvq_qcx_tiling tiling;
    int            threads;     /* 1..KVQ_QCX_THREADS_MAX; blocks in flight         */
    size_t         block_size;  /* bytes per block; 0 = by level (see FORMAT.md §4) */
} kvq_qcx_params;

typedef struct kvq_qcx_stats {
    uint64_t in_bytes, out_bytes;           /* original and compressed sizes     */
    uint64_t blocks_text, blocks_xz, blocks_stored;
    uint64_t words;                         /* tokens in text blocks             */
    uint64_t bytes_container;               /* header, block headers, trailer    */
    uint64_t bytes_codebook, bytes_events, bytes_case, bytes_escapes;
    uint64_t bytes_other;                   /* xz and stored block payloads      */
    uint64_t lookups[KVQ_QCX_HLEVELS];      /* n-gram lookups per hierarchy level */
    uint64_t hits[KVQ_QCX_HLEVELS];         /* ... that found a codebook entry   */
    uint64_t events[KVQ_QCX_ELEVELS];       /* events coded per level            */
    uint64_t lz_matches, lz_events;         /* word-level LZ77 matches, events covered */
    uint32_t crc32;                         /* CRC-32 of the original            */
    int      level, tiling;                 /* as recorded in the header         */
} kvq_qcx_stats;

/* Stream callbacks.  read: fill up to cap bytes, *got = 0 at end of input.
 * write: consume all n bytes.  Any error they return aborts the call. */
typedef kvq_err (*kvq_qcx_read_fn)(void *opaque, void *buf, size_t cap, size_t *got);
typedef kvq_err (*kvq_qcx_write_fn)(void *opaque, const void *buf, size_t n);

/* kvq_qcx_params_default() : level 6, Multi tiling, 1 thread, block by level. */
KVQ_API kvq_qcx_params kvq_qcx_params_default(void);
/* kvq_qcx_tiling_name() : "multi", "fib", "p5", "none", "allpos" ("?" if bad). */
KVQ_API const char *kvq_qcx_tiling_name(kvq_qcx_tiling t);
/* kvq_qcx_tiling_parse() : the inverse; KVQ_ERR_ARG for an unknown name. */
KVQ_API kvq_err kvq_qcx_tiling_parse(const char *name, kvq_qcx_tiling *t);
/* kvq_qcx_compress_bound() : worst-case compressed size of n bytes. */
KVQ_API size_t kvq_qcx_compress_bound(size_t n);
/* kvq_qcx_compress() : src[n] → dst[cap], *out_n bytes.  st may be NULL.
 * Thread-safe for distinct buffers. */
KVQ_API kvq_err kvq_qcx_compress(const void *src, size_t n, void *dst, size_t cap, size_t *out_n,
                                 const kvq_qcx_params *p, kvq_qcx_stats *st);
/* kvq_qcx_content_size() : original size recorded in a .qcr buffer (walks
 * the block headers, decodes nothing). */
KVQ_API kvq_err kvq_qcx_content_size(const void *src, size_t n, uint64_t *size);
/* kvq_qcx_decompress() : src[n] → dst[cap]; every length, index and
 * checksum is verified, corrupt input is an error, never a crash. */
KVQ_API kvq_err kvq_qcx_decompress(const void *src, size_t n, void *dst, size_t cap, size_t *out_n,
                                   int threads);
/* kvq_qcx_compress_stream() : reads to the end, writes one .qcr stream;
 * memory ≈ threads × 3 × block size. */
KVQ_API kvq_err kvq_qcx_compress_stream(kvq_qcx_read_fn rd, void *rop, kvq_qcx_write_fn wr, void *wop,
                                        const kvq_qcx_params *p, kvq_qcx_stats *st);
/* kvq_qcx_decompress_stream() : wr may be NULL (test: decode and verify
 * only).  Bytes are written only after their block's CRC matched; the
 * whole-stream CRC is checked last, so a caller writing to a temporary
 * file must discard it on error. */
KVQ_API kvq_err kvq_qcx_decompress_stream(kvq_qcx_read_fn rd, void *rop, kvq_qcx_write_fn wr,
                                          void *wop, int threads, kvq_qcx_stats *st);
/* kvq_qcx_list_stream() : walks headers (sizes, block kinds, CRC) without
 * decoding; fills st. */
KVQ_API kvq_err kvq_qcx_list_stream(kvq_qcx_read_fn rd, void *rop, kvq_qcx_stats *st);


/* ======================================================================== */
/*  Section: GEAR, KIVI, MiniCache  (quant/kivi.c, compress/gear.c,          */
/*  compress/minicache.c; cache-methods.md §1, §2, §5)                      */
/* ======================================================================== */
/* The page codecs are in the registry: `kivi` (id 50; keys axis=channel,
 * values axis=token) and `gear` (id 51; KIVI backbone + sparse outliers +
 * per-head low-rank residual); their payloads split their bytes by
 * component through kvq_codec.parts, so kvq_cache_stats_get() reports
 * scales, outliers and factors apart from the codes.
 *
 * kvq_depth_minicache : the MiniCache depth policy (kvq_cache_config.depth).
 * Its depth_arg is NULL (defaults) or a NUL-terminated string
 * "key=value,...": start (first merged layer, -1 = n_layers/2), t (SLERP,
 * 0.6), gamma (retention threshold, 0.05), floor (never retain a distance
 * <= floor, 1e-4), cap (retained fraction per page and head, 0.1), rbits
 * (retained vectors f16 = 16 or f32 = 32).  Merged direction pages are
 * stored through the second layer's page codec of each side (minicache
 * over f16/f32 = "MiniCache alone", over a 4-bit codec = "+ 4-bit"); both
 * layers of a pair must be paged (have codec specs).  The counters
 * depth_vectors / depth_retained of kvq_cache_stats give the retained
 * fraction. */
KVQ_API extern const kvq_depth_policy_i kvq_depth_minicache;
/* kvq_depth_policy_find() : a depth policy by name ("minicache"); NULL if
 * none.  A spec "NAME:ARG" is split by the caller: NAME here, ARG as the
 * policy's depth_arg. */
KVQ_API const kvq_depth_policy_i *kvq_depth_policy_find(const char *name);

/* ======================================================================== */
/*  Section: K-sort, outlier-channel rearrangement  (libkvq/ksort.c)        */
/* ======================================================================== */
/* Offline weight rewrites that group large channels into the same blocks
 * of a block format (bfp, q4_0) while leaving the float model's output
 * unchanged (quant-methods.md §3.2-§3.3):
 *  - K-sort: per layer and KV head, RoPE pairs ordered by a key, largest
 *    first; W_k's rows and those of every query head of the group move
 *    together (q·k unchanged) and each pair keeps its RoPE frequency
 *    through a per-layer table stored as model metadata
 *    "kvq.rope_pairs.N" (n_kv_heads·head_size/2 integers, head-major: the
 *    frequency index of each stored pair slot), which the reference
 *    decoder applies.  GGUF and safetensors cannot express the table, so
 *    kvq_model_save() refuses them for such a model (use .kvq).
 *  - inputs: FFN hidden channels (ffn_gate/ffn_up rows with ffn_down
 *    columns) and, per KV group, V channels (attn_v rows with attn_output
 *    columns) ordered by the reading weight's column norms, for codecs
 *    whose blocks run along those weights' rows.  Needs no metadata.
 * Both need plain (f32/f16/bf16) weights: rearrange, then quantize. */
typedef enum kvq_ksort_key {
    KVQ_KSORT_WEIGHT = 0,   /* ‖pair rows of W_k‖ (the paper's key)            */
    KVQ_KSORT_CALIB = 1     /* mean ‖pair of K‖ on calibration text: K = X·W_kᵀ
                               with X the captured QKV input (kvq_calib); RoPE
                               leaves a pair's magnitude unchanged            */
} kvq_ksort_key;

typedef struct kvq_ksort_opts {
    int qk;                 /* 1: K-sort every layer's Q/K pairs               */
    kvq_ksort_key key;      /* order of the pairs when perm is NULL            */
    const kvq_calib *calib; /* calibration data of the input model (CALIB key) */
    const int *perm;        /* optional explicit plan, as kvq_ksort_plan()     */
    int inputs;             /* 1: reorder FFN hidden and V channels too        */
} kvq_ksort_opts;

/* kvq_ksort_pair_keys() : keys[g·hs/2 + j] of pair slot j of KV head g in
 * `layer`, in stored order.  Pure (reads m, cal). */
KVQ_API kvq_err kvq_ksort_pair_keys(const kvq_model *m, int layer, kvq_ksort_key key, const kvq_calib *cal,
                                    double *keys);
/* kvq_ksort_plan() : perm[(l·n_kv_heads + g)·hs/2 + j] = the stored pair
 * that moves to slot j (descending key, ties by index), every layer. */
KVQ_API kvq_err kvq_ksort_plan(const kvq_model *m, kvq_ksort_key key, const kvq_calib *cal, int *perm);
/* kvq_model_ksort() : a new model (every weight copied; `in` may be freed
 * first) with the rearrangements of *o applied; encoded weights give
 * KVQ_ERR_UNSUPPORTED.  Free with kvq_model_free(). */
KVQ_API kvq_err kvq_model_ksort(const kvq_model *in, const kvq_ksort_opts *o, kvq_model **out);
/* kvq_model_rope_pairs() : layer's pair table into pairs[n_kv_heads·hs/2]
 * (identity when the model has none); KVQ_ERR_CORRUPT for a malformed one. */
KVQ_API kvq_err kvq_model_rope_pairs(const kvq_model *m, int layer, int *pairs);
/* kvq_model_has_rope_pairs() : 1 when m carries a pair table. */
KVQ_API int kvq_model_has_rope_pairs(const kvq_model *m);


/* ======================================================================== */
/*  Section: PLT prefix store  (compress/plt_trie.c)                        */
/* ======================================================================== */
/* Exact prefix sharing across sequences (cache-methods.md §3.3, layer 1;
 * SGLang RadixAttention): a trie over token ids whose edges are whole
 * pages of P tokens, shared by every cache configured with it
 * (kvq_cache_config.prefix = kvq_plt_store_iface(), .prefix_store = the
 * store).  Node = one page of token ids + that page's K/V for every
 * layer (stored by `spec`), a lock count and an LRU clock.  A sequence that
 * starts with a stored prefix gets those pages from kvq_cache_prefix_load()
 * and skips their prefill; only identical page-aligned token prefixes ever
 * match.  One store serves one namespace: one model, one RoPE setting, one
 * page geometry (checked on every call).  Not thread-safe.
 *
 * A decoder starts from a matched prefix with no extra API (the cache
 * fills itself, the decoder continues at the position the cache holds):
 *     cc.page = P; cc.k_spec = cc.v_spec = "f16";
 *     cc.prefix = kvq_plt_store_iface(); cc.prefix_store = store;
 *     o.cache_cfg = &cc;  kvq_decoder_create(model, &o, &d);
 *     for each sequence tokens[n]:
 *         kvq_decoder_reset(d);
 *         kvq_cache_prefix_load(kvq_decoder_cache(d), tokens, n, &m);
 *         kvq_decoder_forward_seq(d, tokens + m, n - m, m, logits);
 *         (generation: kvq_cache_set_tokens(cache, pos, &tok, 1) before
 *          each kvq_decoder_forward(d, tok, pos, ...) so its pages publish)
 * Pages sealed while the rest runs are published to the store, so the
 * next sequence with the same start skips them (tests/test_plt.c checks
 * the logits equal a full prefill bit for bit). */
typedef struct kvq_plt_store kvq_plt_store;

typedef struct kvq_plt_store_config {
    int n_layers, n_kv_heads, head_size, page; /* geometry of the caches served */
    uint64_t budget_bytes;      /* page payload bytes kept; 0 = unlimited  */
    const char *spec;           /* codec for stored pages; NULL: exact f32
                                   copies (loaded prefixes then equal a
                                   recomputation bit for bit)              */
} kvq_plt_store_config;

typedef struct kvq_plt_store_stats {
    uint64_t nodes;             /* pages of token ids in the trie           */
    uint64_t layer_pages;       /* (node, layer) K/V pages held             */
    uint64_t bytes_payload;     /* their encoded bytes (K + V)              */
    uint64_t bytes_meta;        /* token ids + per-page lengths             */
    uint64_t published;         /* layer pages offered by caches            */
    uint64_t dedup;             /* ... already held: stored once            */
    uint64_t bytes_shared;      /* payload bytes those would have taken     */
    uint64_t lookups, hit_tokens; /* match calls, tokens they returned     */
    uint64_t evicted;           /* nodes evicted (LRU, unlocked leaves)     */
    uint64_t rejected;          /* layer pages not kept: budget full of
                                   locked or newer pages                   */
} kvq_plt_store_stats;

/* kvq_plt_store_create() : empty store; free with kvq_plt_store_free().
 * KVQ_ERR_ARG for a bad geometry, the spec's errors for a bad spec. */
KVQ_API kvq_err kvq_plt_store_create(const kvq_plt_store_config *cfg, kvq_plt_store **out);
KVQ_API void kvq_plt_store_free(kvq_plt_store *s);               /* NULL-safe */
/* kvq_plt_store_iface() : the kvq_prefix_store_i to put in a cache config. */
KVQ_API const kvq_prefix_store_i *kvq_plt_store_iface(void);
/* kvq_plt_store_lock() : pin the longest stored prefix of tokens[0, n)
 * (every node on its path) while a sequence uses it; *n_locked = its
 * tokens.  Locked nodes are never evicted.  Each lock needs one unlock
 * with the same tokens and n_locked. */
KVQ_API kvq_err kvq_plt_store_lock(kvq_plt_store *s, const int32_t *tokens, int n, int *n_locked);
KVQ_API kvq_err kvq_plt_store_unlock(kvq_plt_store *s, const int32_t *tokens, int n_locked);
/* kvq_plt_store_evict() : evict least-recently-used unlocked leaves until
 * the payload is <= target_bytes or nothing evictable is left. */
KVQ_API kvq_err kvq_plt_store_evict(kvq_plt_store *s, uint64_t target_bytes);
KVQ_API kvq_err kvq_plt_store_stats_get(const kvq_plt_store *s, kvq_plt_store_stats *st);

/* ======================================================================== */
/*  Kernels (issue 9)                                                       */
/* ======================================================================== */
/* kvq_kernels_name() : the CPU kernel table the library uses, "avx2" or
 * "ref" (chosen once from the CPU; KVQ_SIMD=ref in the environment forces
 * the scalar reference). */
KVQ_API const char *kvq_kernels_name(void);

/* ======================================================================== */
/*  CUDA device  (kernels/cuda.c, kernels/cuda_bench.c, kernels/cuda/)      */
/* ======================================================================== */
/* What `kvq bench codecs|decode --device cuda` measure.  Without a CUDA
 * build or a device every call returns KVQ_ERR_UNSUPPORTED with a detail
 * ("built without CUDA" / "no CUDA device"). */
/* kvq_cuda_device() : KVQ_OK and "NAME (sm_XY, N GiB)" in name[cap]. */
KVQ_API kvq_err kvq_cuda_device(char *name, size_t cap);

typedef struct kvq_cuda_codec_bench {
    double quantize_s, dequantize_s; /* best device seconds of one pass over x  */
    double copy_s;                   /* best device-to-device cudaMemcpy of x   */
    size_t payload_bytes;            /* the encoded tensor                      */
    int quantize_exact;              /* device bytes == the CPU codec's bytes   */
    int dequantize_exact;            /* device floats == the CPU codec's decode */
} kvq_cuda_codec_bench;
/* kvq_cuda_bench_codec() : codec "q8_0", "q4_0", "mxfp4" or "nvfp4" (its
 * defaults) over x [rows][cols] (cols a multiple of the block) on the
 * device, best of reps passes; the device results are compared with the
 * CPU codec's in the same call. */
KVQ_API kvq_err kvq_cuda_bench_codec(const char *codec, const float *x, int64_t rows, int64_t cols, int reps,
                                     kvq_cuda_codec_bench *r);

typedef struct kvq_cuda_matmul_bench {
    int n_mats;                /* matrices per token: 7 per layer + classifier  */
    int n_f32;                 /* of them kept f32 in the quantized run (rows
                                  not whole blocks, as kvq quantize keeps them) */
    double weights;            /* weights multiplied per token                  */
    size_t f32_bytes, q_bytes; /* device bytes of the f32 and quantized weights */
    double f32_s, q_s;         /* best seconds per token: cublasSgemv over f32,
                                  the quantized GEMV (dequantized in registers) */
} kvq_cuda_matmul_bench;
/* kvq_cuda_bench_matmuls() : one token's matmuls of model m (every linear
 * of every layer and the classifier, as GEMVs over a device vector) with
 * the weights as f32 and quantized by codec "q8_0" or "q4_0" (CPU kernels,
 * then uploaded once; a matrix whose rows are not whole blocks stays f32),
 * best of reps tokens.  Only the matmuls: no norms, RoPE, attention or
 * transfers. */
KVQ_API kvq_err kvq_cuda_bench_matmuls(const kvq_model *m, const char *codec, int reps, kvq_cuda_matmul_bench *r);

#ifdef KVQ_EXPERIMENTAL
/* ======================================================================== */
/*  Experimental API: may change between minor versions                     */
/* ======================================================================== */
#endif /* KVQ_EXPERIMENTAL */

#ifdef __cplusplus
}
#endif
#endif /* KVQ_H */
