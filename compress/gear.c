/*
 * gear.c — codec `gear` (id 51): GEAR (Kang et al., arXiv 2403.05527, v2
 * "GEAR-KIVI"; cache-methods.md §1.1): X ≈ D + S + A·Bᵀ, page by page.
 *
 *   1. sparse S: in every vector (a K channel over the page's tokens with
 *      axis=channel, a V (token, head) row with axis=token) the k = ⌊s·len/2⌋
 *      smallest and k largest values, stored as (index, f16 value);
 *   2. backbone D: the KIVI quantizer of quant/kivi.h on X with each outlier
 *      replaced by the mean of the non-outlier values of its quantization
 *      group (so it cannot stretch the range), then outliers overwritten;
 *   3. low rank per head: R = X − D ([T][d] for each KV head), rank r by
 *      subspace iteration with `iters` passes, orthonormalising every pass
 *      (modified Gram–Schmidt, twice), seeded start P ∈ [0,1)^{d×r} whose
 *      column j depends only on (seed, j): the rank-r start is the first r
 *      columns of the rank-(r+1) start, so the factors are nested and the
 *      error cannot grow with r.  A = orth(R·P) is rounded to its storage
 *      type first and B = Rᵀ·Ã is computed from the rounded A.
 *   Decode: x̂ = D (outliers overwritten) + Ã·B̃ᵀ.
 *
 * Reconstructed or chosen where the paper is silent [ours]:
 *  - the residual is not masked at outlier positions (it holds the f16
 *    rounding of the outlier there), so full rank reconstructs everything;
 *  - the group-local mean (not the vector mean) keeps every non-outlier
 *    inside its group's original range: the backbone's error bound holds;
 *  - B is stored column by column as f16/f32 of b_j/s_j with a power-of-two
 *    f32 scale s_j ≥ max|b_j| (exact to apply; no f16 overflow for large
 *    residuals); A's columns are orthonormal and need no scale;
 *  - a column that Gram–Schmidt shrinks below 1e-6 of its length (R of
 *    lower rank than r) is set to zero.
 *
 * Payload (sizes depend only on shape and parameters):
 *   [KIVI backbone: entries, codes] [sparse: per vector, k smallest then k
 *   largest, each idx (u8 when len ≤ 256, else u16) + f16 value]
 *   [factors: per head, A column-major [r][T], B column-major [r][d] (f16
 *   or f32 each), scales f32 [r]].
 */
#include "cache_internal.h"
#include "kernels/kern_attn.h"
#include "quant/codecs.h"
#include "quant/kivi.h"
#include "quant/quant_common.h"

#include <math.h>
#include <stdlib.h>

#define F16_MAX       65504.0f /* largest finite binary16                      */
#define F16_EXP_MASK  0x7C00u
#define LR_DEGENERATE 1e-6     /* Gram–Schmidt remainder below this fraction: zero */
#define MGS_PASSES    2        /* Gram–Schmidt twice ("twice is enough")        */
#define DEC_CHUNK     256      /* factor values converted per pass in decode    */

typedef enum { FB_F16 = 0, FB_F32 = 1 } gear_fbits;

static const char *const axis_names[] = {"channel", "token", NULL};
static const char *const fbits_names[] = {"f16", "f32", NULL};

static const kvq_param gear_params[] = {
    {"bits", 2, 8, 2, 1, NULL, "backbone code width (GEAR-KIVI: 2 or 4)"},
    {"axis", 0, 1, KVQ_KIVI_CHANNEL, 0, axis_names, "backbone grouping: channel (keys) or token (values)"},
    {"group", 1, 4096, 32, 1, NULL, "backbone group size G"},
    {"sparse", 0, 0.5, 0.02, 0, NULL, "outlier fraction s: k = floor(s*len/2) smallest and largest per vector"},
    {"rank", 0, 256, 2, 1, NULL, "rank r of the residual's approximation per head (capped at min(T, d))"},
    {"iters", 1, 16, 3, 1, NULL, "subspace-iteration passes"},
    {"fbits", 0, 1, FB_F16, 0, fbits_names, "storage of the low-rank factors"},
    {"seed", 0, 2147483647, 1, 1, NULL, "seed of the power-iteration start"},
};

typedef struct {
    unsigned      bits;
    kvq_kivi_axis axis;
    int64_t       group;
    double        sparse;
    int           rank, iters;
    gear_fbits    fbits;
    uint64_t      seed;
    float        *scratch;     /* encode only (contexts are single-threaded) */
    size_t        scratch_cap; /* bytes */
} gear_state;

/* Layout of one payload. */
typedef struct {
    kvq_kivi_geom kv;
    int64_t T, H, d, kd;
    int64_t len, n_vec, k;      /* vector length, vectors, outliers per side  */
    int64_t vstride;            /* element stride along a vector              */
    size_t  idx_bytes, sparse_off, sparse_bytes;
    int64_t r;                  /* effective rank                             */
    size_t  fb, head_lr, lr_off, lr_bytes, total;
} gear_geom;

static kvq_err geom_make(const gear_state *s, const kvq_shape *sh, gear_geom *g)
{
    KVQ_TRY(kvq_kivi_geom_make(sh, s->bits, s->axis, s->group, &g->kv));
    g->T = g->kv.T, g->H = g->kv.H, g->d = g->kv.d, g->kd = g->H * g->d;
    int ch = s->axis == KVQ_KIVI_CHANNEL;
    g->len = ch ? g->T : g->d;
    g->n_vec = ch ? g->kd : g->T * g->H;
    g->vstride = ch ? g->kd : 1;
    g->k = (int64_t)floor(s->sparse * (double)g->len / 2.0);
    KVQ_FAIL_IF(g->k > 0 && g->len > 65536, KVQ_ERR_SHAPE, "gear: vectors of %lld values exceed u16 indices",
                (long long)g->len);
    g->idx_bytes = g->len <= 256 ? 1 : 2;
    g->sparse_off = g->kv.total;
    g->sparse_bytes = (size_t)(g->n_vec * 2 * g->k) * (g->idx_bytes + 2);
    int64_t r = s->rank;
    r = r < g->T ? r : g->T;
    g->r = r < g->d ? r : g->d;
    g->fb = s->fbits == FB_F16 ? 2 : 4;
    g->head_lr = (size_t)((g->T + g->d) * g->r) * g->fb + (size_t)g->r * 4;
    g->lr_off = g->sparse_off + g->sparse_bytes;
    g->lr_bytes = (size_t)g->H * g->head_lr;
    g->total = g->lr_off + g->lr_bytes;
    return KVQ_OK;
}

static kvq_err gear_init(void *st, const kvq_params *p)
{
    gear_state *s = st;
    s->bits = (unsigned)p->v[0];
    s->axis = (kvq_kivi_axis)p->v[1];
    s->group = (int64_t)p->v[2];
    s->sparse = p->v[3];
    s->rank = (int)p->v[4];
    s->iters = (int)p->v[5];
    s->fbits = (gear_fbits)p->v[6];
    s->seed = (uint64_t)p->v[7];
    return KVQ_OK;
}

static void gear_fini(void *st)
{
    gear_state *s = st;
    free(s->scratch);
    s->scratch = NULL;
    s->scratch_cap = 0;
}

static size_t gear_bound(const void *st, const kvq_shape *sh)
{
    gear_geom g;
    return geom_make(st, sh, &g) ? 0 : g.total;
}

/* ---- outliers ------------------------------------------------------------- */

typedef struct {
    float v;
    int32_t i;
} val_idx;

static int cmp_val_idx(const void *a, const void *b)
{
    const val_idx *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i); /* ties by position: deterministic */
}

#define SELECT_MAX 8 /* k up to this: one pass keeps the extremes (no sort) */

/* The k smallest and the k largest of tmp[0, len) in cmp_val_idx's order
 * (value, then position), each run ascending: exactly the first and last
 * k entries qsort would leave, so payloads do not depend on the path.
 * Small k (GEAR's usual 1–2 per vector) by insertion into buf, larger by
 * sorting tmp. */
static void extremes(val_idx *tmp, int64_t len, int64_t k, val_idx *buf, const val_idx **lo, const val_idx **hi)
{
    if (k > SELECT_MAX) {
        qsort(tmp, (size_t)len, sizeof *tmp, cmp_val_idx);
        *lo = tmp;
        *hi = tmp + len - k;
        return;
    }
    val_idx *l = buf, *h = buf + SELECT_MAX;
    int64_t nl = 0, nh = 0;
    for (int64_t i = 0; i < len; i++) {
        const val_idx e = tmp[i];
        if (nl < k || cmp_val_idx(&e, &l[k - 1]) < 0) { /* into l; the largest drops out when full */
            int64_t j = nl < k ? nl++ : k - 1;
            for (; j > 0 && cmp_val_idx(&e, &l[j - 1]) < 0; j--) l[j] = l[j - 1];
            l[j] = e;
        }
        if (nh < k) { /* into h, ascending */
            int64_t j = nh++;
            for (; j > 0 && cmp_val_idx(&e, &h[j - 1]) < 0; j--) h[j] = h[j - 1];
            h[j] = e;
        } else if (cmp_val_idx(&e, &h[0]) > 0) { /* the smallest of h drops out */
            int64_t j = 0;
            for (; j + 1 < k && cmp_val_idx(&e, &h[j + 1]) > 0; j++) h[j] = h[j + 1];
            h[j] = e;
        }
    }
    *lo = l;
    *hi = h;
}

/* Element offset of position i of vector v. */
static int64_t vec_at(const gear_geom *g, const gear_state *s, int64_t v, int64_t i)
{
    if (s->axis == KVQ_KIVI_CHANNEL) return i * g->kd + v;      /* v = h·d + c */
    return v * g->d + i;                                         /* v = t·H + h */
}

/* Marks the outliers of every vector in mask, writes the sparse section,
 * and replaces outliers in xm by their group's non-outlier mean. */
static kvq_err pick_outliers(const gear_geom *g, const gear_state *s, const float *x, float *xm, uint8_t *mask,
                             val_idx *tmp, uint8_t *dst)
{
    uint8_t *sp = dst + g->sparse_off;
    val_idx buf[2 * SELECT_MAX];
    for (int64_t v = 0; v < g->n_vec; v++) {
        const val_idx *lo, *hi;
        for (int64_t i = 0; i < g->len; i++) tmp[i] = (val_idx){x[vec_at(g, s, v, i)], (int32_t)i};
        extremes(tmp, g->len, g->k, buf, &lo, &hi);
        for (int64_t e = 0; e < 2 * g->k; e++) {
            const val_idx *o = e < g->k ? &lo[e] : &hi[e - g->k];
            KVQ_FAIL_IF(fabsf(o->v) > F16_MAX, KVQ_ERR_PARAM_RANGE, "gear: outlier %g exceeds the f16 range",
                        (double)o->v);
            if (g->idx_bytes == 1) *sp = (uint8_t)o->i;
            else kvq_wr16(sp, (uint16_t)o->i);
            kvq_wr16(sp + g->idx_bytes, kvq_f32_to_f16(o->v));
            sp += g->idx_bytes + 2;
            mask[vec_at(g, s, v, o->i)] = 1;
        }
        double all = 0;
        int64_t n_all = 0;
        for (int64_t i = 0; i < g->len; i++)
            if (!mask[vec_at(g, s, v, i)]) all += x[vec_at(g, s, v, i)], n_all++;
        for (int64_t g0 = 0; g0 < g->len && g->k > 0; g0 += s->group) { /* the KIVI groups of this vector */
            int64_t g1 = g0 + s->group < g->len ? g0 + s->group : g->len, n = 0;
            double sum = 0;
            for (int64_t i = g0; i < g1; i++)
                if (!mask[vec_at(g, s, v, i)]) sum += x[vec_at(g, s, v, i)], n++;
            float mean = (float)(n ? sum / (double)n : all / (double)n_all);
            for (int64_t i = g0; i < g1; i++)
                if (mask[vec_at(g, s, v, i)]) xm[vec_at(g, s, v, i)] = mean;
        }
    }
    return KVQ_OK;
}

/* ---- low rank --------------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Start value P[c][j] ∈ [0, 1): depends on (seed, j, c) only (nesting). */
static float start_value(uint64_t seed, int64_t j, int64_t c)
{
    uint64_t z = mix64(seed * 0x9E3779B97F4A7C15ull + (uint64_t)j * 0xD1B54A32D192ED03ull + (uint64_t)c + 1);
    return (float)((z >> 40) * 0x1p-24);
}

static float round_store(float v, gear_fbits fb) { return fb == FB_F16 ? kvq_f16_to_f32(kvq_f32_to_f16(v)) : v; }

/* Column j of Y ([j][n], column-major) made orthonormal to columns < j;
 * zeroed when Gram–Schmidt leaves less than LR_DEGENERATE of its length
 * (it lay in the span of the previous columns: R has rank < j + 1). */
static void mgs_column(float *Y, int64_t n, int64_t j)
{
    float *y = Y + j * n;
    double before = 0, nn = 0;
    for (int64_t i = 0; i < n; i++) before += (double)y[i] * y[i];
    for (int pass = 0; pass < MGS_PASSES; pass++)
        for (int64_t p = 0; p < j; p++) {
            const float *q = Y + p * n;
            double dot = 0;
            for (int64_t i = 0; i < n; i++) dot += (double)q[i] * y[i];
            for (int64_t i = 0; i < n; i++) y[i] -= (float)dot * q[i];
        }
    for (int64_t i = 0; i < n; i++) nn += (double)y[i] * y[i];
    /* double: the norm of a subnormal residual's column underflows in f32 */
    double inv = nn > 0 && nn > LR_DEGENERATE * LR_DEGENERATE * before ? 1.0 / sqrt(nn) : 0.0;
    for (int64_t i = 0; i < n; i++) y[i] = (float)(y[i] * inv);
}

/* Y[j][t] = Σ_c R[t][c]·P[j][c] over head h of R ([T][kd]). */
static void mul_rp(const gear_geom *g, const float *R, int64_t h, const float *P, float *Y)
{
    for (int64_t j = 0; j < g->r; j++)
        for (int64_t t = 0; t < g->T; t++) {
            const float *rt = R + t * g->kd + h * g->d, *pj = P + j * g->d;
            float acc = 0;
            for (int64_t c = 0; c < g->d; c++) acc += rt[c] * pj[c];
            Y[j * g->T + t] = acc;
        }
}

/* P[j][c] = Σ_t R[t][c]·Q[j][t]. */
static void mul_rtq(const gear_geom *g, const float *R, int64_t h, const float *Q, float *P)
{
    memset(P, 0, (size_t)(g->r * g->d) * sizeof *P);
    for (int64_t j = 0; j < g->r; j++)
        for (int64_t t = 0; t < g->T; t++) {
            const float *rt = R + t * g->kd + h * g->d;
            float q = Q[j * g->T + t], *pj = P + j * g->d;
            for (int64_t c = 0; c < g->d; c++) pj[c] += q * rt[c];
        }
}

static void put_value(uint8_t *p, float v, gear_fbits fb)
{
    if (fb == FB_F16) {
        kvq_wr16(p, kvq_f32_to_f16(v));
    } else {
        uint32_t u;
        memcpy(&u, &v, 4);
        kvq_wr32(p, u);
    }
}

/* Factors of head h of the residual R into out (head_lr bytes). */
static void lowrank_head(const gear_geom *g, const gear_state *s, const float *R, int64_t h, float *Q, float *P,
                         uint8_t *out)
{
    for (int64_t j = 0; j < g->r; j++)
        for (int64_t c = 0; c < g->d; c++) P[j * g->d + c] = start_value(s->seed, j, c);
    for (int it = 0; it < s->iters; it++) {
        mul_rp(g, R, h, P, Q);
        for (int64_t j = 0; j < g->r; j++) mgs_column(Q, g->T, j);
        if (it + 1 < s->iters) mul_rtq(g, R, h, Q, P);
    }
    for (int64_t i = 0; i < g->r * g->T; i++) Q[i] = round_store(Q[i], s->fbits);
    mul_rtq(g, R, h, Q, P); /* B from the stored A */
    uint8_t *a = out, *b = a + (size_t)(g->r * g->T) * g->fb, *sc = b + (size_t)(g->r * g->d) * g->fb;
    for (int64_t i = 0; i < g->r * g->T; i++) put_value(a + (size_t)i * g->fb, Q[i], s->fbits);
    for (int64_t j = 0; j < g->r; j++) {
        float *pj = P + j * g->d, mx = kvq_absmax(pj, (size_t)g->d);
        /* power of two ≥ max|b_j|: dividing by it is exact */
        float scale = mx > 0 ? ldexpf(1.0f, (int)ceilf(log2f(mx))) : 0.0f;
        if (scale > 0 && scale < mx) scale *= 2.0f;
        for (int64_t c = 0; c < g->d; c++)
            put_value(b + (size_t)(j * g->d + c) * g->fb, scale > 0 ? pj[c] / scale : 0.0f, s->fbits);
        uint32_t u;
        memcpy(&u, &scale, 4);
        kvq_wr32(sc + 4 * (size_t)j, u);
    }
}

/* ---- encode / decode ----------------------------------------------------------- */

static kvq_err reserve(gear_state *s, size_t bytes)
{
    if (bytes <= s->scratch_cap) return KVQ_OK;
    float *p = malloc(bytes);
    KVQ_FAIL_IF(!p, KVQ_ERR_NOMEM, "gear: out of memory for %zu bytes of scratch", bytes);
    free(s->scratch);
    s->scratch = p;
    s->scratch_cap = bytes;
    return KVQ_OK;
}

static kvq_err gear_encode(void *st, const kvq_tensor *src, void *dst, size_t cap, size_t *n)
{
    gear_state *s = st;
    gear_geom g;
    KVQ_TRY(geom_make(s, &src->shape, &g));
    KVQ_FAIL_IF(cap < g.total, KVQ_ERR_DST_TOO_SMALL, "gear: need %zu bytes, buffer has %zu", g.total, cap);
    size_t nv = (size_t)(g.T * g.kd), fac = (size_t)((g.T + g.d) * g.r);
    KVQ_TRY(reserve(s, (2 * nv + fac) * sizeof(float) + (size_t)g.len * sizeof(val_idx) + nv));
    float *xm = s->scratch, *D = xm + nv, *Q = D + nv, *P = Q + g.T * g.r;
    val_idx *tmp = (val_idx *)(void *)(P + g.d * g.r);
    uint8_t *mask = (uint8_t *)(tmp + g.len), *out = dst;
    const float *x = src->data;
    memcpy(xm, x, nv * sizeof *xm);
    memset(mask, 0, nv);
    if (g.k > 0) KVQ_TRY(pick_outliers(&g, s, x, xm, mask, tmp, out));
    KVQ_TRY(kvq_kivi_encode(&g.kv, xm, out));
    KVQ_TRY(kvq_kivi_decode(&g.kv, out, D));
    for (size_t i = 0; i < nv; i++) {
        if (mask[i]) D[i] = kvq_f16_to_f32(kvq_f32_to_f16(x[i]));
        xm[i] = x[i] - D[i]; /* the residual R */
    }
    for (int64_t h = 0; h < g.H && g.r > 0; h++) lowrank_head(&g, s, xm, h, Q, P, out + g.lr_off + (size_t)h * g.head_lr);
    *n = g.total;
    return KVQ_OK;
}

static float get_value(const uint8_t *p, gear_fbits fb)
{
    if (fb == FB_F16) {
        uint16_t h = kvq_rd16(p); /* non-finite halves stay non-finite: callers test isfinite */
        return (h & F16_EXP_MASK) == F16_EXP_MASK ? kvq_f16_to_f32(h) : kvq_kern_f16_finite(h);
    }
    uint32_t u = kvq_rd32(p);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

static kvq_err apply_sparse(const gear_geom *g, const gear_state *s, const uint8_t *src, float *y)
{
    const uint8_t *sp = src + g->sparse_off;
    for (int64_t v = 0; v < g->n_vec; v++)
        for (int64_t e = 0; e < 2 * g->k; e++, sp += g->idx_bytes + 2) {
            int64_t i = g->idx_bytes == 1 ? sp[0] : kvq_rd16(sp);
            uint16_t hv = kvq_rd16(sp + g->idx_bytes);
            KVQ_FAIL_IF(i >= g->len || (hv & F16_EXP_MASK) == F16_EXP_MASK, KVQ_ERR_CORRUPT,
                        "gear: outlier %lld of vector %lld: index %lld of %lld, value 0x%04x", (long long)e,
                        (long long)v, (long long)i, (long long)g->len, hv);
            y[vec_at(g, s, v, i)] = kvq_f16_to_f32(hv);
        }
    return KVQ_OK;
}

/* n stored factor values from p into out (f16 widened, f32 copied); 0
 * when all are finite, else the index of the first that is not, plus 1. */
static int64_t get_values(const uint8_t *p, int64_t n, gear_fbits fb, float *out)
{
    if (fb == FB_F16) { /* the slot flags an Inf/NaN half, then it is located */
        if (!kvq_kern_attn_get()->f16_row(p, out, (size_t)n)) return 0;
        for (int64_t i = 0; i < n; i++)
            if ((kvq_rd16(p + 2 * (size_t)i) & F16_EXP_MASK) == F16_EXP_MASK) return i + 1;
        return 0;
    }
    for (int64_t i = 0; i < n; i++) out[i] = get_value(p + 4 * (size_t)i, fb);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(out[i])) return i + 1;
    return 0;
}

/* y[t][h][c] += Σ_j A[j][t]·s_j·B̃[j][c], one rank component at a time;
 * damaged (non-finite) factors are refused, so nothing non-finite leaks. */
static kvq_err apply_lowrank(const gear_geom *g, const gear_state *s, const uint8_t *src, float *y)
{
    float bj[DEC_CHUNK], aj[DEC_CHUNK];
    for (int64_t h = 0; h < g->H; h++) {
        const uint8_t *a = src + g->lr_off + (size_t)h * g->head_lr, *b = a + (size_t)(g->r * g->T) * g->fb;
        const uint8_t *sc = b + (size_t)(g->r * g->d) * g->fb;
        for (int64_t j = 0; j < g->r; j++) {
            float scale = get_value(sc + 4 * (size_t)j, FB_F32);
            KVQ_FAIL_IF(!isfinite(scale) || scale < 0, KVQ_ERR_CORRUPT, "gear: head %lld factor %lld scale %g",
                        (long long)h, (long long)j, (double)scale);
            for (int64_t c0 = 0; c0 < g->d; c0 += DEC_CHUNK) {
                int64_t n = g->d - c0 < DEC_CHUNK ? g->d - c0 : DEC_CHUNK;
                KVQ_FAIL_IF(get_values(b + (size_t)(j * g->d + c0) * g->fb, n, s->fbits, bj), KVQ_ERR_CORRUPT,
                            "gear: head %lld: factor B %lld holds a non-finite value", (long long)h, (long long)j);
                for (int64_t c = 0; c < n; c++) bj[c] *= scale;
                for (int64_t t0 = 0; t0 < g->T; t0 += DEC_CHUNK) {
                    int64_t m = g->T - t0 < DEC_CHUNK ? g->T - t0 : DEC_CHUNK;
                    KVQ_FAIL_IF(get_values(a + (size_t)(j * g->T + t0) * g->fb, m, s->fbits, aj), KVQ_ERR_CORRUPT,
                                "gear: head %lld: factor A %lld holds a non-finite value", (long long)h, (long long)j);
                    for (int64_t t = 0; t < m; t++) {
                        float *yt = y + (t0 + t) * g->kd + h * g->d + c0, at = aj[t];
                        for (int64_t c = 0; c < n; c++) yt[c] += at * bj[c];
                    }
                }
            }
        }
    }
    return KVQ_OK;
}

static kvq_err gear_decode(void *st, const void *src, size_t n, kvq_tensor *dst)
{
    const gear_state *s = st;
    gear_geom g;
    KVQ_TRY(geom_make(s, &dst->shape, &g));
    KVQ_FAIL_IF(n != g.total, KVQ_ERR_CORRUPT, "gear: payload is %zu bytes, shape and parameters need %zu", n,
                g.total);
    float *y = dst->data;
    KVQ_TRY(kvq_kivi_decode(&g.kv, src, y));
    KVQ_TRY(apply_sparse(&g, s, src, y));
    return apply_lowrank(&g, s, src, y);
}

static kvq_err gear_parts(void *st, const void *src, size_t n, const kvq_shape *sh, kvq_codec_parts *out)
{
    (void)src;
    gear_geom g;
    KVQ_TRY(geom_make(st, sh, &g));
    KVQ_FAIL_IF(n != g.total, KVQ_ERR_CORRUPT, "gear: payload is %zu bytes, shape and parameters need %zu", n,
                g.total);
    memset(out, 0, sizeof *out);
    out->scales = g.kv.entries_bytes;
    out->codes = g.kv.codes_bytes;
    out->sparse = g.sparse_bytes;
    out->lowrank = g.lr_bytes;
    return KVQ_OK;
}

/* ---- fused attention over a cache page ---------------------------------------
 * x̂ = D (outliers overwritten) + Ã·diag(s)·B̃ᵀ per head, so for one query
 *   q·x̂_t = q·D_t + Σ_outliers q_c·(o − D_tc) + Σ_j Ã[j][t]·(s_j·q·B̃_j)
 *   Σ_t p_t x̂_t = Σ_t p_t D_t + Σ_outliers p_t·(o − D_tc) e_c
 *                 + Σ_j (s_j·Σ_t p_t Ã[j][t])·B̃_j
 * the backbone through quant/kivi_attn.c, the factors at r·(T + d)
 * multiply-adds per head instead of T·d·r for decoding them.  Damaged
 * payloads fail as in decode (non-finite factors, scales or outliers). */

/* Scratch: A [r][T], B [r][d], scales [r] of one head, w [r], then the
 * backbone's. */
static kvq_err attn_setup(kvq_ctx *ctx, size_t n, const kvq_shape *sh, gear_geom *g, kvq_kivi_attn_job *j)
{
    gear_state *s = kvq_ctx_state(ctx);
    KVQ_TRY(geom_make(s, sh, g));
    KVQ_FAIL_IF(n != g->total, KVQ_ERR_CORRUPT, "gear: page payload is %zu bytes, shape and parameters need %zu", n,
                g->total);
    KVQ_FAIL_IF(j->n_heads != g->H * j->group || j->n_tok < 0 || j->n_tok > g->T, KVQ_ERR_ARG,
                "gear: attention of %d heads (group %d) over %d of %lld tokens, %lld KV heads", j->n_heads, j->group,
                j->n_tok, (long long)g->T, (long long)g->H);
    size_t fac = (size_t)(g->r * (g->T + g->d + 2)) * sizeof(float);
    KVQ_TRY(reserve(s, fac + kvq_kivi_attn_scratch(&g->kv, j->n_heads)));
    j->scratch = (uint8_t *)s->scratch + fac;
    return KVQ_OK;
}

/* Factors of KV head h: A [r][T], B̃ [r][d] and the scales s [r] as
 * floats, checked. */
static kvq_err read_factors(const gear_geom *g, const gear_state *s, const uint8_t *src, int64_t h, float *A, float *B,
                           float *scale)
{
    const uint8_t *a = src + g->lr_off + (size_t)h * g->head_lr, *b = a + (size_t)(g->r * g->T) * g->fb;
    const uint8_t *sc = b + (size_t)(g->r * g->d) * g->fb;
    KVQ_FAIL_IF(get_values(a, g->r * g->T, s->fbits, A), KVQ_ERR_CORRUPT,
                "gear: head %lld: factor A holds a non-finite value", (long long)h);
    KVQ_FAIL_IF(get_values(b, g->r * g->d, s->fbits, B), KVQ_ERR_CORRUPT,
                "gear: head %lld: factor B holds a non-finite value", (long long)h);
    for (int64_t j = 0; j < g->r; j++) {
        scale[j] = get_value(sc + 4 * (size_t)j, FB_F32);
        KVQ_FAIL_IF(!isfinite(scale[j]) || scale[j] < 0, KVQ_ERR_CORRUPT, "gear: head %lld factor %lld scale %g",
                    (long long)h, (long long)j, (double)scale[j]);
    }
    return KVQ_OK;
}

/* Outliers: y[h][t] += q_h[c]·δ (qk) or y[h][c] += p_h[t]·δ (pv), δ = o − D,
 * D = z + Δ·c the backbone's value there, as kvq_kivi_decode computes it
 * (the group's entry is read once for consecutive outliers sharing it). */
static kvq_err attn_sparse(const gear_geom *g, const gear_state *s, const uint8_t *src, const kvq_kivi_attn_job *j,
                           int qk)
{
    const kvq_kivi_geom *kv = &g->kv;
    const int ch = s->axis == KVQ_KIVI_CHANNEL;
    const size_t rec = g->idx_bytes + 2, qs = qk ? (size_t)g->d : j->stride, ys = qk ? j->stride : (size_t)g->d;
    const uint8_t *sp = src + g->sparse_off, *rows = src + kv->entries_bytes;
    for (int64_t v = 0; v < g->n_vec; v++) {
        /* vector v: a channel (kvh, c) over the tokens, or the row of (t, kvh) */
        int64_t kvh = ch ? v / g->d : v % g->H, c0 = ch ? v % g->d : 0, t0 = ch ? 0 : v / g->H, last = -1;
        float dl = 0.0f, z = 0.0f;
        for (int64_t e = 0; e < 2 * g->k; e++, sp += rec) {
            int64_t i = g->idx_bytes == 1 ? sp[0] : kvq_rd16(sp);
            uint16_t hv = kvq_rd16(sp + g->idx_bytes);
            KVQ_FAIL_IF(i >= g->len || (hv & F16_EXP_MASK) == F16_EXP_MASK, KVQ_ERR_CORRUPT,
                        "gear: outlier %lld of vector %lld: index %lld of %lld, value 0x%04x", (long long)e,
                        (long long)v, (long long)i, (long long)g->len, hv);
            int64_t t = ch ? i : t0, c = ch ? c0 : i, along = ch ? t : c;
            if (t >= j->n_tok) continue;
            int64_t gi = kv->group_log2 >= 0 ? along >> kv->group_log2 : along / kv->group;
            int64_t at = ch ? gi * g->kd + v : (t0 * g->H + kvh) * kv->n_groups + gi;
            if (at != last) KVQ_TRY(kvq_kivi_entry(src, at, &dl, &z));
            last = at;
            unsigned q = kvq_kern_code_at(rows + (size_t)t * kv->row_bytes, (size_t)(kvh * g->d + c), kv->bits);
            float delta = kvq_kern_f16_finite(hv) - (z + dl * (float)q);
            /* query heads kvh·group … : x at (h, c) or (h, t), y at (h, t) or (h, c) */
            const float *x = j->x + (size_t)(kvh * j->group) * qs + (size_t)(qk ? c : t);
            float *y = j->y + (size_t)(kvh * j->group) * ys + (size_t)(qk ? t : c);
            for (int h = 0; h < j->group; h++) y[(size_t)h * ys] += x[(size_t)h * qs] * delta;
        }
    }
    return KVQ_OK;
}

/* The factor products in fixed runs of LR_RUN (gcc -O2 vectorises only
 * loops of constant length): a dot in LR_RUN partial sums, an axpy. */
#define LR_RUN 8
static float lr_dot(const float *restrict a, const float *restrict b, int64_t n)
{
    float part[LR_RUN] = {0.0f}, acc = 0.0f;
    int64_t i = 0;
    for (; i + LR_RUN <= n; i += LR_RUN)
        for (int k = 0; k < LR_RUN; k++) part[k] += a[i + k] * b[i + k];
    for (int k = 0; k < LR_RUN; k++) acc += part[k];
    for (; i < n; i++) acc += a[i] * b[i];
    return acc;
}

static void lr_axpy(float *restrict y, float w, const float *restrict x, int64_t n)
{
    int64_t i = 0;
    for (; i + LR_RUN <= n; i += LR_RUN)
        for (int k = 0; k < LR_RUN; k++) y[i + k] += w * x[i + k];
    for (; i < n; i++) y[i] += w * x[i];
}

/* Low-rank part of every head: scores (qk) or values (pv). */
static kvq_err attn_lowrank(const gear_geom *g, const gear_state *s, const uint8_t *src, const kvq_kivi_attn_job *j,
                            int qk)
{
    float *A = s->scratch, *B = A + g->r * g->T, *sc = B + g->r * g->d, *w = sc + g->r;
    for (int64_t kvh = 0; kvh < g->H && g->r > 0; kvh++) {
        KVQ_TRY(read_factors(g, s, src, kvh, A, B, sc));
        for (int h = (int)kvh * j->group; h < (int)(kvh + 1) * j->group; h++) {
            const float *x = qk ? j->x + h * g->d : j->x + (size_t)h * j->stride;
            float *y = qk ? j->y + (size_t)h * j->stride : j->y + h * g->d;
            int64_t n_in = qk ? g->d : j->n_tok, n_out = qk ? j->n_tok : g->d;
            const float *in = qk ? B : A, *outf = qk ? A : B; /* w_j = s_j·(x·in_j); y += Σ_j w_j·out_j */
            int64_t in_len = qk ? g->d : g->T, out_len = qk ? g->T : g->d;
            for (int64_t r = 0; r < g->r; r++) w[r] = sc[r] * lr_dot(x, in + r * in_len, n_in);
            for (int64_t r = 0; r < g->r; r++) lr_axpy(y, w[r], outf + r * out_len, n_out);
        }
    }
    return KVQ_OK;
}

static kvq_err gear_qk(kvq_ctx *ctx, const void *payload, size_t n, const kvq_shape *sh, const float *q, int n_heads,
                       int group, int n_tok, float *scores, size_t stride)
{
    gear_geom g;
    kvq_kivi_attn_job j = {.x = q, .y = scores, .n_heads = n_heads, .group = group, .n_tok = n_tok, .stride = stride};
    KVQ_TRY(attn_setup(ctx, n, sh, &g, &j));
    KVQ_TRY(kvq_kivi_attn_qk(&g.kv, payload, &j));
    KVQ_TRY(attn_sparse(&g, kvq_ctx_state(ctx), payload, &j, 1));
    KVQ_TRY(attn_lowrank(&g, kvq_ctx_state(ctx), payload, &j, 1));
    kvq_page_attn_scale(scores, n_heads, n_tok, stride, (int)g.d);
    return KVQ_OK;
}

static kvq_err gear_pv(kvq_ctx *ctx, const void *payload, size_t n, const kvq_shape *sh, const float *p, int n_heads,
                       int group, int n_tok, size_t stride, float *out)
{
    gear_geom g;
    kvq_kivi_attn_job j = {.x = p, .y = out, .n_heads = n_heads, .group = group, .n_tok = n_tok, .stride = stride};
    KVQ_TRY(attn_setup(ctx, n, sh, &g, &j));
    KVQ_TRY(kvq_kivi_attn_pv(&g.kv, payload, &j));
    KVQ_TRY(attn_sparse(&g, kvq_ctx_state(ctx), payload, &j, 0));
    return attn_lowrank(&g, kvq_ctx_state(ctx), payload, &j, 0);
}

const kvq_page_attn_i kvq_page_attn_gear = {.qk = gear_qk, .pv = gear_pv};

/* Declared bound at the defaults (2 bits, G = 32): the backbone's
 * sqrt(G/2)/L = 1.333 (quant/kivi.c) holds for the non-outliers (the group
 * mean keeps their ranges); outliers err by f16 rounding (≤ 2^-11 of
 * themselves); the factors project the residual (‖R − QQᵀR‖ ≤ ‖R‖) up to
 * the f16 rounding of A and B (a few 2^-11·√r of ‖R‖). */
#define GEAR_REL_ERR 1.36

const kvq_codec kvq_codec_gear = {
    .abi = KVQ_CODEC_ABI, .name = "gear", .id = 51, .domain = KVQ_DOMAIN_KV, .flags = 0,
    .state_size = sizeof(gear_state), .params = gear_params,
    .n_params = sizeof gear_params / sizeof gear_params[0], .max_rel_err = GEAR_REL_ERR,
    .summary = "GEAR: KIVI backbone + per-vector sparse outliers + per-head low-rank residual",
    .init = gear_init, .bound = gear_bound, .encode = gear_encode, .decode = gear_decode, .fini = gear_fini,
    .parts = gear_parts,
};
