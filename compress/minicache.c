/*
 * minicache.c — depth policy `minicache` (Liu et al., NeurIPS 2024, arXiv
 * 2405.14366; cache-methods.md §2): from a start layer S on, the pages of
 * adjacent layers (l−1, l) share one SLERP-merged direction per token and
 * KV head, plus both norms; tokens whose angular distance exceeds the
 * retention threshold keep their own vectors.
 *
 * Per pair page (P tokens), per side (K, V), per KV head and token, with
 * x = layer l−1's vector, y = layer l's (cache-methods.md §2.1):
 *   Ω = arccos(⟨x,y⟩/(‖x‖‖y‖)), d = Ω/π;
 *   e = sin((1−t)Ω)/sin Ω · x/‖x‖ + sin(tΩ)/sin Ω · y/‖y‖;
 *   retained: d > d_min + (d_max − d_min)·γ over the page's tokens of
 *   that head, and (guards the paper lacks, §2.4) d > `floor`, and at most
 *   ⌊cap·P⌋ tokens per head (largest d first);
 *   restore: x̂ = ‖x‖·ê/‖ê‖, ŷ = ‖y‖·ê/‖ê‖; retained tokens overwritten.
 * The direction page [P][n_kv_heads][head_size] is stored through the
 * layer-l codec of that side (so "MiniCache + 4-bit" is minicache over a
 * 4-bit page codec; minicache alone runs over f16 or f32); ê is
 * renormalised at restore, so every token keeps its stored norm exactly.
 *
 * Streaming [ours]: the cache seals page i of layer l−1 before page i of
 * layer l (kvq.h, depth policies).  Layer l−1's page is kept as f32 until
 * its partner arrives ("pending", counted as f32 payload), then both are
 * merged.  Layers below S and an unpaired last layer are left to their
 * codecs.  Norms are stored as f32; retained vectors as f16 (`rbits=16`,
 * rescaled to the stored norm at restore) or f32 (exact), with a u16
 * index (token·H + head) each.
 * Numerics [ours, §2.4]: double for norms, dot products and the angle;
 * cos clamped to [−1, 1]; sin Ω < 1e-6 uses normalised LERP; a zero vector
 * takes the other's direction (both zero: e = 0).
 *
 * The argument (cfg.depth_arg) is NULL or a string "key=value,..." with
 * keys start, t, gamma, floor, cap, rbits (defaults below).
 */
#include "kvq_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#define SIN_EPS    1e-6  /* below: directions nearly (anti)parallel, use NLERP */
#define ARG_MAX    256   /* longest argument string                         */
#define N_SIDES    2
#define SIDE_IDX_K 0
#define SIDE_IDX_V 1
#define PI_D       3.14159265358979323846

/* Parameters, as a codec declares them (name, min, max, default). */
static const kvq_param mc_params[] = {
    {"start", -1, 65535, -1, 1, NULL, "first merged layer S (-1: n_layers/2)"},
    {"t", 0, 1, 0.6, 0, NULL, "SLERP interpolation: 0 = layer l-1's direction, 1 = layer l's"},
    {"gamma", 0, 1, 0.05, 0, NULL, "retention threshold between the page's d_min (0) and d_max (1)"},
    {"floor", 0, 1, 1e-4, 0, NULL, "never retain a token with angular distance <= floor"},
    {"cap", 0, 1, 0.1, 0, NULL, "retain at most this fraction of a page's tokens per head"},
    {"rbits", 16, 32, 16, 1, NULL, "retained vectors stored as f16 (16) or f32 (32)"},
};
enum { P_START, P_T, P_GAMMA, P_FLOOR, P_CAP, P_RBITS, N_PARAMS };

typedef enum { MC_NONE = 0, MC_PENDING = 1, MC_MERGED = 2 } mc_kind;

/* One merged pair page. */
typedef struct mc_pair {
    uint8_t  *dir[N_SIDES];     /* direction payloads (layer l's codec)     */
    size_t    dir_len[N_SIDES];
    float    *norm[N_SIDES];    /* [2 layers][P][H]                          */
    int       n_ret[N_SIDES];   /* retained (token, head) vectors            */
    uint16_t *ret_at[N_SIDES];  /* [n_ret]: token·H + head                   */
    uint8_t  *ret[N_SIDES];     /* [n_ret][2 layers][hs] f16 or f32          */
    int       refs;             /* entries pointing here (1 or 2)            */
} mc_pair;

typedef struct {
    mc_kind  kind;
    float   *raw;               /* PENDING: K then V, [P][kv_dim] each       */
    mc_pair *pair;              /* MERGED                                    */
} mc_entry;

typedef struct {
    int       n_layers, H, hs, P, kd, max_pages, start, rbytes;
    double    t, gamma, floor, cap;
    kvq_ctx **ctx;              /* [n_layers][2]: second layers of pairs only */
    mc_entry *tab;              /* [n_layers][max_pages]                      */
    float    *scratch;          /* [3][P][kd]: partner page K, V; direction e   */
    uint64_t  n_merged, n_retained; /* (token, head) vectors, both sides      */
} mc_state;

/* ---- arguments ---------------------------------------------------------------- */

static kvq_err parse_arg(const char *arg, double *v)
{
    for (int i = 0; i < N_PARAMS; i++) v[i] = mc_params[i].def;
    if (!arg || !*arg) return KVQ_OK;
    KVQ_FAIL_IF(strlen(arg) >= ARG_MAX, KVQ_ERR_SPEC, "minicache: argument longer than %d bytes", ARG_MAX - 1);
    char buf[ARG_MAX], *save = NULL;
    strcpy(buf, arg);
    for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '='), *end;
        KVQ_FAIL_IF(!eq, KVQ_ERR_SPEC, "minicache: expected KEY=VALUE, got '%s'", kv);
        *eq = 0;
        int i = 0;
        while (i < N_PARAMS && strcmp(mc_params[i].name, kv)) i++;
        KVQ_FAIL_IF(i == N_PARAMS, KVQ_ERR_SPEC, "minicache: no parameter '%s' (start, t, gamma, floor, cap, rbits)",
                    kv);
        errno = 0;
        double x = strtod(eq + 1, &end);
        KVQ_FAIL_IF(end == eq + 1 || *end || errno, KVQ_ERR_SPEC, "minicache: %s='%s' is not a number", kv, eq + 1);
        KVQ_FAIL_IF(!(x >= mc_params[i].min && x <= mc_params[i].max) || (mc_params[i].is_int && x != floor(x)),
                    KVQ_ERR_PARAM_RANGE, "minicache: %s=%g outside [%g, %g]%s", kv, x, mc_params[i].min,
                    mc_params[i].max, mc_params[i].is_int ? " (integer)" : "");
        v[i] = x;
    }
    KVQ_FAIL_IF(v[P_RBITS] != 16 && v[P_RBITS] != 32, KVQ_ERR_PARAM_RANGE, "minicache: rbits must be 16 or 32");
    return KVQ_OK;
}

/* ---- life cycle ------------------------------------------------------------------ */

static int is_first(const mc_state *m, int l) { return l >= m->start && (l - m->start) % 2 == 0 && l + 1 < m->n_layers; }
static int is_second(const mc_state *m, int l) { return l > m->start && (l - m->start) % 2 == 1; }

static const char *side_spec(const kvq_cache_config *cfg, int l, int side)
{
    const char *const *per = side ? cfg->v_spec_layer : cfg->k_spec_layer;
    if (per && per[l]) return per[l];
    const char *s = side ? cfg->v_spec : cfg->k_spec;
    return s ? s : "f32";
}

static void mc_fini(void *st);

static kvq_err mc_init(void *st, const kvq_cache_config *cfg, const void *arg)
{
    mc_state *m = st;
    double v[N_PARAMS];
    KVQ_TRY(parse_arg(arg, v));
    m->n_layers = cfg->n_layers, m->H = cfg->n_kv_heads, m->hs = cfg->head_size, m->P = cfg->page;
    m->kd = m->H * m->hs;
    m->max_pages = (cfg->max_tokens + cfg->page - 1) / cfg->page;
    m->start = v[P_START] < 0 ? cfg->n_layers / 2 : (int)v[P_START];
    m->t = v[P_T], m->gamma = v[P_GAMMA], m->floor = v[P_FLOOR], m->cap = v[P_CAP];
    m->rbytes = (int)v[P_RBITS] / 8;
    KVQ_FAIL_IF(m->P * m->H > 65536, KVQ_ERR_ARG, "minicache: page %d x %d heads exceeds u16 token indices", m->P,
                m->H);
    m->ctx = calloc((size_t)m->n_layers * N_SIDES, sizeof *m->ctx);
    m->tab = calloc((size_t)m->n_layers * (size_t)m->max_pages, sizeof *m->tab);
    m->scratch = malloc((size_t)3 * (size_t)m->P * (size_t)m->kd * sizeof *m->scratch);
    kvq_err e = !m->ctx || !m->tab || !m->scratch ? KVQ_ERROR(KVQ_ERR_NOMEM, "minicache: out of memory") : KVQ_OK;
    for (int l = 0; l < m->n_layers && !e; l++)
        for (int s = 0; s < N_SIDES && !e && is_second(m, l); s++) {
            e = kvq_ctx_create(side_spec(cfg, l, s), &m->ctx[l * N_SIDES + s]);
            if (e) kvq_error_prefix("minicache: direction codec");
        }
    if (e) mc_fini(m); /* the cache does not call fini after a failed init */
    return e;
}

static void free_pair(mc_pair *p)
{
    for (int s = 0; s < N_SIDES; s++) {
        free(p->dir[s]);
        free(p->norm[s]);
        free(p->ret_at[s]);
        free(p->ret[s]);
    }
    free(p);
}

static void mc_drop(void *st, int layer, int index)
{
    mc_state *m = st;
    mc_entry *e = &m->tab[(size_t)layer * (size_t)m->max_pages + (size_t)index];
    free(e->raw);
    if (e->pair && --e->pair->refs == 0) free_pair(e->pair);
    memset(e, 0, sizeof *e);
}

static void mc_fini(void *st)
{
    mc_state *m = st;
    for (int l = 0; m->tab && l < m->n_layers; l++)
        for (int i = 0; i < m->max_pages; i++) mc_drop(m, l, i);
    for (int i = 0; m->ctx && i < m->n_layers * N_SIDES; i++) kvq_ctx_free(m->ctx[i]);
    free(m->ctx);
    free(m->tab);
    free(m->scratch);
    memset(m, 0, sizeof *m);
}

/* ---- merging -------------------------------------------------------------------- */

/* Direction e of one (token, head) and the angular distance d. */
static double merge_vec(const float *x, const float *y, int n, double t, float *e, float *nx, float *ny)
{
    double xx = 0, yy = 0, xy = 0;
    for (int i = 0; i < n; i++) xx += (double)x[i] * x[i], yy += (double)y[i] * y[i], xy += (double)x[i] * y[i];
    double a = sqrt(xx), b = sqrt(yy), wx, wy, dist = 0;
    *nx = (float)a, *ny = (float)b;
    if (a == 0 || b == 0) { /* one side carries no direction: take the other's */
        wx = a > 0 ? 1 / a : 0, wy = a > 0 ? 0 : b > 0 ? 1 / b : 0;
    } else {
        double cs = xy / (a * b);
        cs = cs > 1 ? 1 : cs < -1 ? -1 : cs;
        double om = acos(cs), so = sin(om);
        dist = om / PI_D;
        if (so < SIN_EPS) { /* NLERP; antiparallel pairs are retained anyway */
            double u = (1 - t) / a, w = t / b, nn = 0;
            for (int i = 0; i < n; i++) nn += (u * x[i] + w * y[i]) * (u * x[i] + w * y[i]);
            nn = sqrt(nn);
            wx = nn > 0 ? u / nn : 1 / a, wy = nn > 0 ? w / nn : 0;
        } else {
            wx = sin((1 - t) * om) / so / a, wy = sin(t * om) / so / b;
        }
    }
    for (int i = 0; i < n; i++) e[i] = (float)(wx * x[i] + wy * y[i]);
    return dist;
}

typedef struct {
    double d;
    int    t;
} tok_dist;

static int cmp_dist(const void *a, const void *b)
{
    const tok_dist *x = a, *y = b;
    if (x->d != y->d) return x->d > y->d ? -1 : 1;
    return (x->t > y->t) - (x->t < y->t);
}

static void put_vec(uint8_t *p, const float *x, int n, int rbytes)
{
    for (int i = 0; i < n; i++) {
        if (rbytes == 2) {
            kvq_wr16(p + 2 * (size_t)i, kvq_f32_to_f16(x[i]));
        } else {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            kvq_wr32(p + 4 * (size_t)i, u);
        }
    }
}

/* Retention of one head: marks chosen tokens in keep[P]; returns the count. */
static int choose_retained(const mc_state *m, const double *dist, tok_dist *tmp, uint8_t *keep)
{
    double lo = dist[0], hi = dist[0];
    for (int t = 1; t < m->P; t++) lo = dist[t] < lo ? dist[t] : lo, hi = dist[t] > hi ? dist[t] : hi;
    double thr = lo + (hi - lo) * m->gamma;
    int n = 0, limit = (int)floor(m->cap * m->P);
    for (int t = 0; t < m->P; t++)
        if (dist[t] > thr && dist[t] > m->floor) tmp[n++] = (tok_dist){dist[t], t};
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_dist);
    n = n < limit ? n : limit;
    memset(keep, 0, (size_t)m->P);
    for (int i = 0; i < n; i++) keep[tmp[i].t] = 1;
    return n;
}

/* Merges one side of a pair page: x (layer l−1), y (layer l) [P][kd]. */
static kvq_err merge_side(mc_state *m, mc_pair *p, int s, int second, const float *x, const float *y, float *e)
{
    size_t nt = (size_t)m->P * (size_t)m->H, vec = (size_t)m->hs * (size_t)m->rbytes;
    double *dist = malloc(nt * sizeof *dist);
    tok_dist *tmp = malloc((size_t)m->P * sizeof *tmp);
    uint8_t *keep = malloc(nt);
    p->norm[s] = malloc(2 * nt * sizeof(float));
    p->ret_at[s] = malloc(nt * sizeof(uint16_t));
    p->ret[s] = malloc(nt * 2 * vec);
    kvq_err err = !dist || !tmp || !keep || !p->norm[s] || !p->ret_at[s] || !p->ret[s]
                      ? KVQ_ERROR(KVQ_ERR_NOMEM, "minicache: out of memory") : KVQ_OK;
    for (size_t k = 0; !err && k < nt; k++) { /* k = token·H + head */
        size_t at = k * (size_t)m->hs;
        dist[(k % (size_t)m->H) * (size_t)m->P + k / (size_t)m->H] =
            merge_vec(x + at, y + at, m->hs, m->t, e + at, &p->norm[s][k], &p->norm[s][nt + k]);
    }
    for (int h = 0; !err && h < m->H; h++) {
        choose_retained(m, dist + (size_t)h * (size_t)m->P, tmp, keep + (size_t)h * (size_t)m->P);
    }
    for (size_t k = 0; !err && k < nt; k++) {
        if (!keep[(k % (size_t)m->H) * (size_t)m->P + k / (size_t)m->H]) continue;
        int r = p->n_ret[s]++;
        p->ret_at[s][r] = (uint16_t)k;
        put_vec(p->ret[s] + (size_t)r * 2 * vec, x + k * (size_t)m->hs, m->hs, m->rbytes);
        put_vec(p->ret[s] + ((size_t)r * 2 + 1) * vec, y + k * (size_t)m->hs, m->hs, m->rbytes);
    }
    if (!err) { /* the direction page through layer l's codec of this side */
        kvq_ctx *ctx = m->ctx[second * N_SIDES + s];
        int64_t dims[3] = {m->P, m->H, m->hs};
        kvq_tensor te = kvq_tensor_view(KVQ_DTYPE_F32, e, 3, dims);
        size_t cap = kvq_ctx_payload_bound(ctx, &te.shape);
        p->dir[s] = malloc(cap ? cap : 1);
        err = !p->dir[s] ? KVQ_ERROR(KVQ_ERR_NOMEM, "minicache: out of memory")
                         : kvq_ctx_encode_payload(ctx, &te, p->dir[s], cap, &p->dir_len[s]);
    }
    m->n_merged += nt;
    m->n_retained += (uint64_t)p->n_ret[s];
    free(dist);
    free(tmp);
    free(keep);
    return err;
}

static kvq_err mc_seal(void *st, kvq_cache *c, const kvq_kv_page *pg, int *taken)
{
    mc_state *m = st;
    *taken = 0;
    size_t pv = (size_t)m->P * (size_t)m->kd;
    mc_entry *me = &m->tab[(size_t)pg->layer * (size_t)m->max_pages + (size_t)pg->index];
    if (is_first(m, pg->layer)) {
        me->raw = malloc(2 * pv * sizeof *me->raw);
        KVQ_FAIL_IF(!me->raw, KVQ_ERR_NOMEM, "minicache: out of memory for a pending page");
        memcpy(me->raw, pg->k, pv * sizeof *me->raw);
        memcpy(me->raw + pv, pg->v, pv * sizeof *me->raw);
        me->kind = MC_PENDING;
        *taken = 1;
        return KVQ_OK;
    }
    if (!is_second(m, pg->layer)) return KVQ_OK;
    int first = pg->layer - 1;
    mc_entry *fe = &m->tab[(size_t)first * (size_t)m->max_pages + (size_t)pg->index];
    if (fe->kind == MC_NONE) return KVQ_OK; /* partner page not ours: codecs store this one */
    float *xk = m->scratch, *xv = xk + pv, *e = xv + pv;
    int t0 = pg->index * m->P;
    KVQ_TRY(kvq_cache_read(c, first, t0, t0 + m->P, xk, xv)); /* pending raw, or restored */
    mc_pair *p = calloc(1, sizeof *p);
    KVQ_FAIL_IF(!p, KVQ_ERR_NOMEM, "minicache: out of memory");
    kvq_err err = merge_side(m, p, SIDE_IDX_K, pg->layer, xk, pg->k, e);
    if (!err) err = merge_side(m, p, SIDE_IDX_V, pg->layer, xv, pg->v, e);
    if (err) {
        free_pair(p);
        return err;
    }
    mc_drop(m, first, pg->index);
    p->refs = 2;
    fe->kind = me->kind = MC_MERGED;
    fe->pair = me->pair = p;
    *taken = 1;
    return KVQ_OK;
}

/* ---- restoring ------------------------------------------------------------------ */

static void get_vec(const uint8_t *p, float *x, int n, int rbytes)
{
    for (int i = 0; i < n; i++) {
        if (rbytes == 2) {
            x[i] = kvq_f16_to_f32(kvq_rd16(p + 2 * (size_t)i));
        } else {
            uint32_t u = kvq_rd32(p + 4 * (size_t)i);
            memcpy(&x[i], &u, 4);
        }
    }
}

/* One side of layer `which` (0: l−1, 1: l) of a merged pair into out. */
static kvq_err restore_side(const mc_state *m, const mc_pair *p, int second, int which, int s, float *out)
{
    kvq_ctx *ctx = m->ctx[second * N_SIDES + s];
    int64_t dims[3] = {m->P, m->H, m->hs};
    kvq_tensor te = kvq_tensor_view(KVQ_DTYPE_F32, out, 3, dims);
    KVQ_TRY(kvq_ctx_decode_payload(ctx, p->dir[s], p->dir_len[s], &te));
    size_t nt = (size_t)m->P * (size_t)m->H, vec = (size_t)m->hs * (size_t)m->rbytes;
    const float *norm = p->norm[s] + (size_t)which * nt;
    for (size_t k = 0; k < nt; k++) { /* ‖x̂‖ = stored norm: renormalise ê */
        float *o = out + k * (size_t)m->hs;
        double nn = 0;
        for (int i = 0; i < m->hs; i++) nn += (double)o[i] * o[i];
        double f = nn > 0 ? norm[k] / sqrt(nn) : 0.0;
        for (int i = 0; i < m->hs; i++) o[i] = (float)(o[i] * f);
    }
    for (int r = 0; r < p->n_ret[s]; r++) {
        size_t k = p->ret_at[s][r];
        float *o = out + k * (size_t)m->hs;
        get_vec(p->ret[s] + ((size_t)r * 2 + (size_t)which) * vec, o, m->hs, m->rbytes);
        if (m->rbytes == 4) continue; /* f32: the original, bit for bit */
        double nn = 0; /* f16: rescaled to the stored norm as well */
        for (int i = 0; i < m->hs; i++) nn += (double)o[i] * o[i];
        double f = nn > 0 ? norm[k] / sqrt(nn) : 0.0;
        for (int i = 0; i < m->hs; i++) o[i] = (float)(o[i] * f);
    }
    return KVQ_OK;
}

static kvq_err mc_load(void *st, int layer, int index, float *k, float *v)
{
    mc_state *m = st;
    const mc_entry *e = &m->tab[(size_t)layer * (size_t)m->max_pages + (size_t)index];
    size_t pv = (size_t)m->P * (size_t)m->kd;
    if (e->kind == MC_PENDING) {
        memcpy(k, e->raw, pv * sizeof *k);
        memcpy(v, e->raw + pv, pv * sizeof *v);
        return KVQ_OK;
    }
    KVQ_FAIL_IF(e->kind != MC_MERGED, KVQ_ERR_ARG, "minicache: layer %d page %d is not held", layer, index);
    int second = is_second(m, layer) ? layer : layer + 1, which = layer == second;
    KVQ_TRY(restore_side(m, e->pair, second, which, SIDE_IDX_K, k));
    return restore_side(m, e->pair, second, which, SIDE_IDX_V, v);
}

/* ---- accounting ------------------------------------------------------------------ */

static void pair_bytes(const mc_state *m, const mc_pair *p, int second, kvq_cache_stats *acc)
{
    size_t nt = (size_t)m->P * (size_t)m->H, vec = (size_t)m->hs * (size_t)m->rbytes;
    int64_t dims[3] = {m->P, m->H, m->hs};
    kvq_shape sh = kvq_shape_make(3, dims);
    for (int s = 0; s < N_SIDES; s++) {
        kvq_codec_parts pp;
        if (kvq_ctx_payload_parts(m->ctx[second * N_SIDES + s], p->dir[s], p->dir_len[s], &sh, &pp)) {
            memset(&pp, 0, sizeof pp);
            pp.codes = p->dir_len[s];
        }
        acc->bytes_payload += pp.codes;
        acc->bytes_scales += pp.scales + 2 * nt * sizeof(float); /* + both layers' norms */
        acc->bytes_lowrank += pp.lowrank;
        acc->bytes_sparse += pp.sparse + (uint64_t)p->n_ret[s] * (sizeof(uint16_t) + 2 * vec);
        acc->bytes_meta += pp.meta;
    }
}

static void mc_bytes(const void *st, kvq_cache_stats *acc)
{
    const mc_state *m = st;
    size_t pv = (size_t)m->P * (size_t)m->kd;
    for (int l = 0; l < m->n_layers; l++)
        for (int i = 0; i < m->max_pages; i++) {
            const mc_entry *e = &m->tab[(size_t)l * (size_t)m->max_pages + (size_t)i];
            if (e->kind == MC_PENDING) acc->bytes_payload += 2 * pv * sizeof(float);
            if (e->kind != MC_MERGED) continue;
            /* a pair page counts once: at its second layer, or at the first
             * when the second no longer points to it */
            const mc_entry *partner = is_first(m, l) ? e + m->max_pages : NULL;
            if (partner && partner->pair == e->pair) continue;
            pair_bytes(m, e->pair, is_second(m, l) ? l : l + 1, acc);
        }
    acc->depth_vectors += m->n_merged;
    acc->depth_retained += m->n_retained;
}

const kvq_depth_policy_i kvq_depth_minicache = {
    .abi = KVQ_DEPTH_POLICY_ABI, .name = "minicache", .state_size = sizeof(mc_state),
    .init = mc_init, .seal = mc_seal, .load = mc_load, .drop = mc_drop, .bytes = mc_bytes, .fini = mc_fini,
};

const kvq_depth_policy_i *kvq_depth_policy_find(const char *name)
{
    return name && !strcmp(name, kvq_depth_minicache.name) ? &kvq_depth_minicache : NULL;
}
