/*
 * cache_internal.h — the KV cache's internal layout (libkvq/cache.c), for
 * libkvq files that extend it (fused attention kernels over encoded pages).
 *
 * Per layer the cache holds an f32 window of unsealed tokens and a table of
 * sealed pages; each page side (K, V) is a codec payload appended to one
 * growable per-layer buffer, or is held by the depth policy.  Design notes
 * and the engine mapping are in kvq.h, section "KV cache hooks".
 */
#ifndef KVQ_CACHE_INTERNAL_H
#define KVQ_CACHE_INTERNAL_H

#include "kvq_internal.h"

#include <math.h>

/* Who stores a sealed page. */
typedef enum cache_owner {
    CACHE_PAGE_CODEC = 0,   /* payloads in the layer's K/V buffers        */
    CACHE_PAGE_POLICY = 1   /* the depth policy took it (load() reads it) */
} cache_owner;

/* One sealed page: where its payloads sit in the layer buffers. */
typedef struct cache_page {
    uint64_t    off[2];     /* payload offsets in buf[0] (K), buf[1] (V)   */
    uint32_t    len[2];     /* payload lengths (0 when the policy owns it) */
    cache_owner owner;
} cache_page;

/* Fused attention over one encoded page side: the hook point for codecs
 * whose kernels compute q·k or p·v on codes directly (cache-methods.md §7,
 * kvq_kv_qk / kvq_kv_pv).  kivi (quant/kivi.c) and gear (compress/gear.c)
 * fill it, lossy row codecs with a fast row kernel get a qk slot (cache.c);
 * for other codecs the cache decodes the page and runs the reference
 * loops, so lossless pages (f32, f16) keep their bit-identity.  Lossy fused slots equal decode-then-
 * reference within f32 rounding of Σ|terms| (they sum in another order).
 *   qk : scores[h·stride + t] = (Σ_i q[h][i]·k[t][h/group][i]) / sqrtf(hs)
 *        for the page's n_tok first tokens;
 *   pv : out[h][i] += Σ_t p[h·stride + t]·v[t][h/group][i], t ascending. */
typedef struct kvq_page_attn_i {
    kvq_err (*qk)(kvq_ctx *ctx, const void *payload, size_t n, const kvq_shape *s, const float *q,
                  int n_heads, int group, int n_tok, float *scores, size_t stride);
    kvq_err (*pv)(kvq_ctx *ctx, const void *payload, size_t n, const kvq_shape *s, const float *p,
                  int n_heads, int group, int n_tok, size_t stride, float *out);
} kvq_page_attn_i;

/* The fused slots of a codec, or NULL (cache.c). */
const kvq_page_attn_i *kvq_page_attn_find(const kvq_codec *codec);
extern const kvq_page_attn_i kvq_page_attn_kivi; /* quant/kivi.c    */
extern const kvq_page_attn_i kvq_page_attn_gear; /* compress/gear.c */

/* scores[h·stride + t] /= sqrtf(hs) for t < n_tok: the reference's scaling
 * of a raw dot, for fused qk slots that sum the dots first. */
static inline void kvq_page_attn_scale(float *scores, int n_heads, int n_tok, size_t stride, int hs)
{
    const float denom = sqrtf((float)hs);
    for (int h = 0; h < n_heads; h++)
        for (int t = 0; t < n_tok; t++) scores[(size_t)h * stride + (size_t)t] /= denom;
}

/* One layer.  Tokens [0, sealed) are in pages, [sealed, len) in the window
 * (win[side] holds them from row 0).  Unpaged layers never seal. */
typedef struct cache_layer {
    int         paged;          /* 1 when the layer has codec specs         */
    kvq_ctx    *ctx[2];         /* K, V codec contexts (NULL when unpaged)  */
    const kvq_page_attn_i *fused[2]; /* fused attention slots (NULL = none) */
    size_t      page_bound[2];  /* worst-case payload bytes of one page     */
    int         len, sealed;    /* tokens held; tokens in sealed pages      */
    int         wcap;           /* window capacity in tokens                */
    float      *win[2];         /* [wcap][kv_dim]                           */
    float      *dec[2];         /* keep_decoded: [max_tokens][kv_dim]       */
    kvq_buf     buf[2];         /* concatenated page payloads               */
    cache_page *pages;          /* [max_pages]                              */
} cache_layer;

struct kvq_cache {
    kvq_cache_config cfg;       /* copy; spec pointers are not kept         */
    int          kv_dim;        /* n_kv_heads · head_size                   */
    int          max_pages;     /* ceil(max_tokens / page)                  */
    cache_layer *layers;        /* [n_layers]                               */
    float       *page_scratch[2]; /* [page][kv_dim]: one decoded page       */
    float       *att;           /* [att_heads][max_tokens] attention scores */
    int          att_heads;
    void        *depth_state;   /* depth->state_size bytes                  */
    int32_t     *tokens;        /* [max_tokens] ids, valid in [0, n_tokens) */
    int          n_tokens;
    int          no_publish_below; /* pages ending at or before this token
                                      came from the prefix store           */
};

#endif /* KVQ_CACHE_INTERNAL_H */
