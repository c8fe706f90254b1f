/*
 * quamba2.c — Quamba2's activation and state quantizers for Mamba-2
 * (Chiang et al., ICML 2025; quant-methods.md §4.2–4.6; code
 * enyac-group/Quamba quamba/reorder_utils.py, qMamba2.py):
 *
 *  - codec `quamba2` (id 70): static symmetric int8 (b-bit) activations
 *    with scales max|x|/qmax from calibration (clip ratio 1.0).  What it
 *    scales by follows the shape it is handed (libkvq/mamba2.c passes
 *    each SSM input with its structure):
 *      2-D [tokens][n]      one scale per tensor (in_proj / out_proj /
 *                           classifier inputs); had=1 rotates each row by
 *                           the Hadamard matrix Q of quant/quamba2.h (2^k,
 *                           12·2^k or 40·2^k wide) first and by Qᵀ after
 *                           decoding (the online Hadamard fused with the
 *                           int8 quantization, §4.2);
 *      3-D [t][G][N]        one scale per SSD group (B and C);
 *      4-D [G][Hg][P][N]    one object (no token axis): sort-and-cluster
 *                           (cluster=1: the plan of §4.3 on the (h, p)
 *                           channels, `hg` head clusters × `cg` channel
 *                           groups per SSD group, one scale per (group, n),
 *                           so hg·cg·N scales per SSD group) or one scale
 *                           (cluster=0).  x after the conv comes as
 *                           [G][Hg][P][1] (16 scales per group, §4.3); the
 *                           SSM state as [G][Hg][P][d_state]: the static
 *                           state scales per (SSD group, head group,
 *                           channel group, d_state) of §4.2.
 *    Calibration keeps per value max|x| and s = max over calibration
 *    samples of mean over tokens |x|; the clusters are computed the first
 *    time a 4-D tensor is encoded (its shape gives G, Hg, P, N) from s
 *    averaged over n.  [ours]: for the state the paper reuses x's groups;
 *    here the state's own channel statistics make its plan (a codec
 *    context sees one tensor).  zdt, xbc and state are switches read by
 *    libkvq/mamba2.c, which hands z and dt, x/B/C before the conv (one
 *    scale each, 2-D views), and the state to this codec only when they
 *    are 1.
 *  - codec `quamba2_state` (id 72): the SSM state [heads][headdim][d_state]
 *    in int8 with one f16 scale per (head, state column), recomputed from
 *    each state (dynamic, no calibration) — the alternative to the static
 *    scales above, at least as fine.
 *  - kvq_quamba2_cluster(): the sort-and-cluster plan itself (per-head
 *    channel sort, Ward clustering of unit-normalised sorted heads inside
 *    each SSD group, 1-D k-means of sorted channel positions with fixed
 *    initial centres at positions i·P/cg), used by the codec and by the
 *    offline rearrangement (kvq_mamba2_reorder, libkvq/mamba2.c).
 *
 * [ours] where the code is silent: Ward by naive O(n³) merging (ties: the
 * lowest pair); head clusters are ordered by their lowest head; k-means
 * runs at most QB_KMEANS_ITERS iterations and, should its labels not be
 * monotone in position (the code asserts they are), the channel groups
 * fall back to equal contiguous splits.  Payload of `quamba2`: u16 scale
 * count S, S f32 scales, then (3-D, 4-D with cluster=1) a u16 group per
 * channel entry (C/N of them: per channel for 3-D, per (h, p) for 4-D),
 * then one signed byte per value; flat value i has channel c = i mod C (C
 * = values per token, all values of a 4-D tensor) and scale
 * S[group(c / N)·N + c mod N], so decode_rows reads any range.
 */
#include "kvq_internal.h"
#include "quant/codecs.h"
#include "quant/quamba2.h"
#include "quant/quant_common.h"

#include <math.h>
#include <stdlib.h>

#define QB_KMEANS_ITERS 100   /* §4.6: 1-D k-means iteration cap            */
#define QB_MAX_GROUPS   65535 /* scales per tensor (u16 count and ids)      */
#define QB_MAX_CHANNELS (1 << 20)

static const kvq_param qb_params[] = {
    {"bits", 4, 8, 8, 1, NULL, "code width (int8: 8)"},
    {"cluster", 0, 1, 1, 1, NULL, "4-D SSM input x: 1 sort-and-cluster scales, 0 one scale"},
    {"hg", 1, 16, 4, 1, NULL, "head clusters per SSD group (sort-and-cluster)"},
    {"cg", 1, 16, 4, 1, NULL, "channel groups per head cluster (sort-and-cluster)"},
    {"had", 0, 1, 0, 1, NULL, "2-D inputs: Hadamard rotation before quantization (2^k, 12·2^k or 40·2^k wide)"},
    {"zdt", 0, 1, 1, 1, NULL, "Mamba-2: also quantize the in_proj outputs z and dt (read by libkvq/mamba2.c)"},
    {"xbc", 0, 1, 1, 1, NULL, "Mamba-2: also quantize x, B, C as in_proj outputs, before the conv (read by mamba2.c)"},
    {"state", 0, 1, 1, 1, NULL, "Mamba-2: hold the SSM state in int8 with static scales (read by libkvq/mamba2.c)"},
};

typedef struct {
    unsigned bits;
    int cluster, hg, cg, had;
    int64_t n;              /* calibrated channels (0: none yet)            */
    float *amax;            /* (n) max |x_c|                                */
    float *smean;           /* (n) max over samples of mean |x_c|           */
    float amax_rot;         /* max |H·x| over calibration rows (had)        */
    int64_t plan_dims[5];   /* kind, C, dim1, G (4-D), N: what the cache is for */
    uint16_t *group_of;     /* (n / N) group of each channel (SSD group of
                               B/C, sort-and-cluster group of x / state)   */
    float *gscale;          /* (n_scales) group scales; 4-D: [group][N]     */
    int n_scales;
} qb_state;

/* ---- the sort-and-cluster plan ---------------------------------------------------- */
static int cmp_chan(const void *a, const void *b, const float *s)
{
    int i = *(const int *)a, j = *(const int *)b;
    return s[i] < s[j] ? -1 : s[i] > s[j] ? 1 : i - j;
}

/* Insertion sort of head channels by s (P is small; stable, no globals). */
static void sort_head(int *idx, int P, const float *s)
{
    for (int i = 0; i < P; i++) idx[i] = i;
    for (int i = 1; i < P; i++)
        for (int j = i; j > 0 && cmp_chan(&idx[j - 1], &idx[j], s) > 0; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
}

/* Ward clustering of m unit vectors v[m][P] into k clusters: label[m]
 * numbered by each cluster's lowest member. */
static kvq_err ward(const double *v, int m, int P, int k, int *label)
{
    double *cen = malloc((size_t)m * (size_t)P * sizeof *cen);
    int *size = malloc((size_t)m * sizeof *size), *root = malloc((size_t)m * sizeof *root);
    KVQ_FAIL_IF(!cen || !size || !root, KVQ_ERR_NOMEM, "quamba2: out of memory for clustering");
    memcpy(cen, v, (size_t)m * (size_t)P * sizeof *cen);
    for (int i = 0; i < m; i++) size[i] = 1, root[i] = i;
    for (int live = m; live > k; live--) {
        int ba = -1, bb = -1;
        double best = INFINITY;
        for (int a = 0; a < m; a++)
            for (int b = a + 1; b < m && size[a]; b++) {
                if (!size[b]) continue;
                double d = 0;
                for (int p = 0; p < P; p++) d += (cen[a * P + p] - cen[b * P + p]) * (cen[a * P + p] - cen[b * P + p]);
                d *= (double)size[a] * size[b] / (size[a] + size[b]);
                if (d < best) best = d, ba = a, bb = b;
            }
        for (int p = 0; p < P; p++)
            cen[ba * P + p] = (cen[ba * P + p] * size[ba] + cen[bb * P + p] * size[bb]) / (size[ba] + size[bb]);
        size[ba] += size[bb];
        size[bb] = 0;
        for (int i = 0; i < m; i++)
            if (root[i] == bb) root[i] = ba;
    }
    int next = 0;
    for (int i = 0; i < m; i++) label[i] = -1;
    for (int i = 0; i < m; i++) {
        if (label[i] >= 0) continue;
        for (int j = i; j < m; j++)
            if (root[j] == root[i]) label[j] = next;
        next++;
    }
    free(cen);
    free(size);
    free(root);
    return KVQ_OK;
}

/* 1-D k-means of P positions with features f[P][d] into k contiguous
 * groups; sizes[k].  Fixed initial centres at positions i·P/k. */
static kvq_err kmeans_positions(const double *f, int P, int dm, int k, int *sizes)
{
    double *cen = malloc((size_t)k * (size_t)dm * sizeof *cen), *acc = malloc((size_t)k * (size_t)dm * sizeof *acc);
    int *lab = malloc((size_t)P * sizeof *lab), *cnt = malloc((size_t)k * sizeof *cnt);
    KVQ_FAIL_IF(!cen || !acc || !lab || !cnt, KVQ_ERR_NOMEM, "quamba2: out of memory for k-means");
    for (int c = 0; c < k; c++) memcpy(cen + c * dm, f + (size_t)(c * P / k) * (size_t)dm, (size_t)dm * sizeof *cen);
    for (int it = 0; it < QB_KMEANS_ITERS; it++) {
        int moved = 0;
        for (int p = 0; p < P; p++) {
            int bc = 0;
            double bd = INFINITY;
            for (int c = 0; c < k; c++) {
                double d = 0;
                for (int j = 0; j < dm; j++) d += (f[p * dm + j] - cen[c * dm + j]) * (f[p * dm + j] - cen[c * dm + j]);
                if (d < bd) bd = d, bc = c;
            }
            moved += it == 0 || lab[p] != bc;
            lab[p] = bc;
        }
        if (!moved) break;
        memset(acc, 0, (size_t)k * (size_t)dm * sizeof *acc);
        memset(cnt, 0, (size_t)k * sizeof *cnt);
        for (int p = 0; p < P; p++) {
            cnt[lab[p]]++;
            for (int j = 0; j < dm; j++) acc[lab[p] * dm + j] += f[p * dm + j];
        }
        for (int c = 0; c < k; c++)
            for (int j = 0; cnt[c] && j < dm; j++) cen[c * dm + j] = acc[c * dm + j] / cnt[c];
    }
    int mono = 1;
    for (int p = 1; p < P; p++) mono &= lab[p] >= lab[p - 1];
    for (int c = 0; c < k; c++) sizes[c] = 0;
    for (int p = 0; p < P; p++) sizes[mono ? lab[p] : p * k / P]++;
    free(cen);
    free(acc);
    free(lab);
    free(cnt);
    return KVQ_OK;
}

void kvq_quamba2_plan_free(kvq_quamba2_plan *p)
{
    if (!p) return;
    free(p->chan_perm);
    free(p->head_perm);
    free(p->head_group_size);
    free(p->chan_group_size);
    free(p->group_of);
    free(p);
}

static kvq_err plan_alloc(kvq_quamba2_plan *p)
{
    int H = p->n_groups * p->heads_per_group, C = H * p->head_dim;
    p->chan_perm = malloc((size_t)C * sizeof *p->chan_perm);
    p->head_perm = malloc((size_t)H * sizeof *p->head_perm);
    p->head_group_size = calloc((size_t)(p->n_groups * p->hg), sizeof *p->head_group_size);
    p->chan_group_size = calloc((size_t)(p->n_groups * p->hg * p->cg), sizeof *p->chan_group_size);
    p->group_of = malloc((size_t)C * sizeof *p->group_of);
    KVQ_FAIL_IF(!p->chan_perm || !p->head_perm || !p->head_group_size || !p->chan_group_size || !p->group_of,
                KVQ_ERR_NOMEM, "quamba2: out of memory for a plan");
    return KVQ_OK;
}

/* One SSD group: heads [g·Hg, (g+1)·Hg) (their channels already sorted
 * in chan_perm); v scratch [Hg][P]; fills head_perm, sizes and group_of. */
static kvq_err plan_group(kvq_quamba2_plan *p, const float *s, int g, double *v, double *feat, int *label)
{
    int Hg = p->heads_per_group, P = p->head_dim, h0 = g * Hg;
    for (int k = 0; k < Hg; k++) {
        double nrm = 0;
        for (int j = 0; j < P; j++) {
            double x = s[(size_t)(h0 + k) * (size_t)P + (size_t)p->chan_perm[(h0 + k) * P + j]];
            v[k * P + j] = x;
            nrm += x * x;
        }
        nrm = nrm > 0 ? sqrt(nrm) : 1;
        for (int j = 0; j < P; j++) v[k * P + j] /= nrm;
    }
    KVQ_TRY(ward(v, Hg, P, p->hg, label));
    int slot = h0;
    for (int c = 0; c < p->hg; c++) {
        int m = 0;
        for (int k = 0; k < Hg; k++)
            if (label[k] == c) p->head_perm[slot++] = h0 + k, m++;
        p->head_group_size[g * p->hg + c] = m;
        for (int j = 0; j < P; j++) /* features: the cluster's sorted values at position j */
            for (int k = 0, q = 0; k < Hg; k++)
                if (label[k] == c) feat[j * m + q++] = v[k * P + j];
        int *cs = p->chan_group_size + (g * p->hg + c) * p->cg;
        KVQ_TRY(kmeans_positions(feat, P, m, p->cg, cs));
        for (int k = 0; k < Hg; k++) {
            if (label[k] != c) continue;
            for (int cgi = 0, pos = 0; cgi < p->cg; cgi++)
                for (int q = 0; q < cs[cgi]; q++, pos++)
                    p->group_of[(h0 + k) * P + p->chan_perm[(h0 + k) * P + pos]] =
                        (uint16_t)((g * p->hg + c) * p->cg + cgi);
        }
    }
    return KVQ_OK;
}

kvq_err kvq_quamba2_cluster(const float *s, int n_groups, int heads_per_group, int head_dim, int hg, int cg,
                            kvq_quamba2_plan **out)
{
    KVQ_FAIL_IF(!s || !out, KVQ_ERR_ARG, "kvq_quamba2_cluster: NULL argument");
    *out = NULL;
    KVQ_FAIL_IF(n_groups < 1 || heads_per_group < 1 || head_dim < 1 || hg < 1 || cg < 1 ||
                    (int64_t)n_groups * heads_per_group * head_dim > QB_MAX_CHANNELS ||
                    (int64_t)n_groups * hg * cg > QB_MAX_GROUPS,
                KVQ_ERR_SHAPE, "quamba2: cluster plan for %d groups x %d heads x %d channels, %d x %d groups",
                n_groups, heads_per_group, head_dim, hg, cg);
    kvq_quamba2_plan *p = calloc(1, sizeof *p);
    KVQ_FAIL_IF(!p, KVQ_ERR_NOMEM, "quamba2: out of memory");
    *p = (kvq_quamba2_plan){n_groups, heads_per_group, head_dim, hg < heads_per_group ? hg : heads_per_group,
                            cg < head_dim ? cg : head_dim, NULL, NULL, NULL, NULL, NULL};
    int H = n_groups * heads_per_group, P = head_dim;
    double *v = malloc((size_t)heads_per_group * (size_t)P * sizeof *v);
    double *feat = malloc((size_t)heads_per_group * (size_t)P * sizeof *feat);
    int *label = malloc((size_t)heads_per_group * sizeof *label);
    kvq_err e = !v || !feat || !label ? KVQ_ERROR(KVQ_ERR_NOMEM, "quamba2: out of memory") : plan_alloc(p);
    for (int h = 0; !e && h < H; h++) sort_head(p->chan_perm + h * P, P, s + (size_t)h * (size_t)P);
    for (int g = 0; !e && g < n_groups; g++) e = plan_group(p, s, g, v, feat, label);
    free(v);
    free(feat);
    free(label);
    if (e) {
        kvq_quamba2_plan_free(p);
        return e;
    }
    *out = p;
    return KVQ_OK;
}

/* ---- codec `quamba2` ---------------------------------------------------------------- */
static kvq_err qb_init(void *p, const kvq_params *prm)
{
    qb_state *st = p;
    st->bits = (unsigned)prm->v[0];
    st->cluster = (int)prm->v[1];
    st->hg = (int)prm->v[2];
    st->cg = (int)prm->v[3];
    st->had = (int)prm->v[4];
    return KVQ_OK;
}

static void qb_fini(void *p)
{
    qb_state *st = p;
    free(st->amax);
    free(st->smean);
    free(st->group_of);
    free(st->gscale);
    memset(st, 0, sizeof *st);
}

static kvq_err qb_calibrate(void *p, const kvq_tensor *x)
{
    qb_state *st = p;
    int64_t rows = kvq_shape_rows(&x->shape), n = kvq_shape_cols(&x->shape);
    KVQ_FAIL_IF(n < 1 || n > QB_MAX_CHANNELS || rows < 1, KVQ_ERR_SHAPE, "quamba2: calibration sample of %lld x %lld",
                (long long)rows, (long long)n);
    KVQ_FAIL_IF(st->n && st->n != n, KVQ_ERR_SHAPE, "quamba2: calibration width %lld after %lld", (long long)n,
                (long long)st->n);
    if (!st->n) {
        st->amax = calloc((size_t)n, sizeof *st->amax);
        st->smean = calloc((size_t)n, sizeof *st->smean);
        KVQ_FAIL_IF(!st->amax || !st->smean, KVQ_ERR_NOMEM, "quamba2: out of memory");
        st->n = n;
    }
    float *rot = st->had && kvq_had_base(n) ? malloc((size_t)n * sizeof *rot) : NULL;
    KVQ_FAIL_IF(st->had && kvq_had_base(n) && !rot, KVQ_ERR_NOMEM, "quamba2: out of memory");
    const float *src = x->data;
    for (int64_t c = 0; c < n; c++) {
        double sum = 0;
        for (int64_t r = 0; r < rows; r++) {
            float a = fabsf(src[r * n + c]);
            sum += a;
            st->amax[c] = fmaxf(st->amax[c], a);
        }
        st->smean[c] = fmaxf(st->smean[c], (float)(sum / (double)rows));
    }
    for (int64_t r = 0; rot && r < rows; r++) {
        memcpy(rot, src + r * n, (size_t)n * sizeof *rot);
        kvq_had_apply(rot, n, 0);
        st->amax_rot = fmaxf(st->amax_rot, kvq_absmax(rot, (size_t)n));
    }
    free(rot);
    free(st->group_of); /* new data: any cached plan is stale */
    free(st->gscale);
    st->group_of = NULL;
    st->gscale = NULL;
    return KVQ_OK;
}

/* The scale structure implied by the shape: C = channels (values per
 * token; a 4-D tensor is one object, all its values), N = values per
 * channel-group entry that keep their own scale (d_state of a 4-D state,
 * else 1), so channel c has group group_of[c / N] and scale
 * gscale[group_of[c / N]·N + c % N]. */
typedef enum { QB_TENSOR, QB_PER_DIM1, QB_CLUSTER } qb_kind;

static qb_kind kind_of(const qb_state *st, const kvq_shape *s, int64_t *C, int64_t *N)
{
    *N = s->ndim == 4 && st->cluster ? s->dim[3] : 1;
    *C = s->ndim == 4 ? kvq_shape_numel(s)
         : s->ndim == 3 ? kvq_shape_numel(s) / (s->dim[0] ? s->dim[0] : 1)
                        : kvq_shape_cols(s);
    if (s->ndim == 3) return QB_PER_DIM1;
    if (s->ndim == 4 && st->cluster) return QB_CLUSTER;
    return QB_TENSOR;
}

static float qmax_of(const qb_state *st) { return (float)((1 << (st->bits - 1)) - 1); }

/* The sort-and-cluster groups of a 4-D [G][Hg][P][N] tensor: the plan is
 * made on s_(h,p) = mean over n of the calibrated mean |x| (N = 1: x
 * itself), so each (h, p) gets a group and each (group, n) a scale. */
static kvq_err cluster_groups(qb_state *st, int64_t G, int64_t Hg, int64_t P, int64_t N, int *n_groups)
{
    int64_t K = G * Hg * P;
    float *sp = malloc((size_t)K * sizeof *sp);
    KVQ_FAIL_IF(!sp, KVQ_ERR_NOMEM, "quamba2: out of memory");
    for (int64_t k = 0; k < K; k++) {
        double acc = 0;
        for (int64_t n = 0; n < N; n++) acc += st->smean[k * N + n];
        sp[k] = (float)(acc / (double)N);
    }
    kvq_quamba2_plan *plan = NULL;
    kvq_err e = kvq_quamba2_cluster(sp, (int)G, (int)Hg, (int)P, st->hg, st->cg, &plan);
    free(sp);
    KVQ_TRY(e);
    *n_groups = (int)G * plan->hg * plan->cg;
    memcpy(st->group_of, plan->group_of, (size_t)K * sizeof *st->group_of);
    kvq_quamba2_plan_free(plan);
    return KVQ_OK;
}

/* Scales for a tensor of shape s: *ns scales, group of each channel (of
 * C / N) in *gid (NULL when one scale).  Pointers into st or scale1. */
static kvq_err scales_for(qb_state *st, const kvq_shape *s, float *scale1, const float **sc, const uint16_t **gid,
                          int *ns)
{
    int64_t C, N;
    qb_kind k = kind_of(st, s, &C, &N);
    KVQ_FAIL_IF(!st->n, KVQ_ERR_ARG, "quamba2: not calibrated (static scales come from calibration)");
    *gid = NULL;
    if (k == QB_TENSOR) {
        float m = 0;
        for (int64_t c = 0; c < st->n; c++) m = fmaxf(m, st->amax[c]);
        if (st->had && s->ndim == 2 && kvq_had_base(C)) m = st->amax_rot;
        *scale1 = m / qmax_of(st);
        *sc = scale1;
        *ns = 1;
        return KVQ_OK;
    }
    KVQ_FAIL_IF(C != st->n, KVQ_ERR_SHAPE, "quamba2: %lld channels per token, calibrated on %lld", (long long)C,
                (long long)st->n);
    int64_t key[5] = {k, C, s->dim[1], s->ndim == 4 ? s->dim[0] : 0, N};
    if (st->group_of && !memcmp(st->plan_dims, key, sizeof key)) {
        *sc = st->gscale, *gid = st->group_of, *ns = st->n_scales;
        return KVQ_OK;
    }
    free(st->group_of);
    free(st->gscale);
    st->gscale = NULL;
    st->group_of = malloc((size_t)(C / N) * sizeof *st->group_of);
    KVQ_FAIL_IF(!st->group_of, KVQ_ERR_NOMEM, "quamba2: out of memory");
    int ng = (int)s->dim[1];
    if (k == QB_CLUSTER) {
        kvq_err e = cluster_groups(st, s->dim[0], s->dim[1], s->dim[2], N, &ng);
        if (!e && (int64_t)ng * N > QB_MAX_GROUPS)
            e = KVQ_ERROR(KVQ_ERR_SHAPE, "quamba2: %d groups x %lld state columns exceed %d scales", ng, (long long)N,
                          QB_MAX_GROUPS);
        if (e) {
            free(st->group_of);
            st->group_of = NULL;
            return e;
        }
    } else {
        for (int64_t c = 0; c < C; c++) st->group_of[c] = (uint16_t)(c / (C / ng));
    }
    st->n_scales = (int)(ng * N);
    st->gscale = calloc((size_t)st->n_scales, sizeof *st->gscale);
    KVQ_FAIL_IF(!st->gscale, KVQ_ERR_NOMEM, "quamba2: out of memory");
    for (int64_t c = 0; c < C; c++) {
        float *g = &st->gscale[st->group_of[c / N] * N + c % N];
        *g = fmaxf(*g, st->amax[c] / qmax_of(st));
    }
    memcpy(st->plan_dims, key, sizeof key);
    *sc = st->gscale, *gid = st->group_of, *ns = st->n_scales;
    return KVQ_OK;
}

static size_t qb_bound(const void *p, const kvq_shape *s)
{
    int64_t C, N;
    qb_kind k = kind_of(p, s, &C, &N);
    /* a plan has at most one group per (h, p) (hg <= heads, cg <= P), so
     * at most C scales, and never more than the u16 count allows */
    size_t scales = k == QB_TENSOR ? 1 : k == QB_PER_DIM1 ? (size_t)s->dim[1] : (size_t)C;
    if (scales > QB_MAX_GROUPS) scales = QB_MAX_GROUPS;
    return 2 + 4 * scales + (k == QB_TENSOR ? 0 : 2 * (size_t)(C / N)) + (size_t)kvq_shape_numel(s);
}

static kvq_err qb_encode(void *p, const kvq_tensor *src, void *dst, size_t cap, size_t *n_out)
{
    qb_state *st = p;
    const kvq_shape *s = &src->shape;
    float one;
    const float *sc;
    const uint16_t *gid;
    int ns;
    KVQ_TRY(scales_for(st, s, &one, &sc, &gid, &ns));
    int64_t C, N, nv = kvq_shape_numel(s);
    kind_of(st, s, &C, &N);
    int rotate = st->had && s->ndim == 2 && kvq_had_base(C);
    size_t need = 2 + 4 * (size_t)ns + (gid ? 2 * (size_t)(C / N) : 0) + (size_t)nv;
    KVQ_FAIL_IF(cap < need, KVQ_ERR_DST_TOO_SMALL, "quamba2: %zu bytes needed, %zu given", need, cap);
    uint8_t *o = dst;
    kvq_wr16(o, (uint16_t)ns);
    for (int i = 0; i < ns; i++) {
        uint32_t b;
        memcpy(&b, &sc[i], 4);
        kvq_wr32(o + 2 + 4 * i, b);
    }
    o += 2 + 4 * (size_t)ns;
    for (int64_t c = 0; gid && c < C / N; c++, o += 2) kvq_wr16(o, gid[c]);
    float *row = rotate ? malloc((size_t)C * sizeof *row) : NULL;
    KVQ_FAIL_IF(rotate && !row, KVQ_ERR_NOMEM, "quamba2: out of memory");
    const float *x = src->data, qm = qmax_of(st);
    for (int64_t t = 0; t < nv / C; t++) {
        const float *xr = x + t * C;
        if (rotate) {
            memcpy(row, xr, (size_t)C * sizeof *row);
            kvq_had_apply(row, C, 0);
            xr = row;
        }
        for (int64_t e = 0, c = 0; e < C / N; e++) { /* channel entry e: values c = e·N .. */
            const float *de = sc + (gid ? gid[e] * N : 0);
            for (int64_t n = 0; n < N; n++, c++) {
                float d = de[gid ? n : 0];
                float q = d > 0 ? (float)kvq_round_rne(xr[c] / d) : 0.0f;
                q = q > qm ? qm : q < -qm ? -qm : q;
                o[t * C + c] = (uint8_t)(int8_t)q;
            }
        }
    }
    free(row);
    *n_out = need;
    return KVQ_OK;
}

/* Checks a payload's scales and group indices against shape s. */
static kvq_err check_payload(const uint8_t *b, size_t n, qb_kind k, int64_t C, int64_t N, int64_t nv)
{
    KVQ_FAIL_IF(n < 2, KVQ_ERR_CORRUPT, "quamba2: payload of %zu bytes", n);
    int ns = kvq_rd16(b), has_gid = k != QB_TENSOR;
    size_t need = 2 + 4 * (size_t)ns + (has_gid ? 2 * (size_t)(C / N) : 0) + (size_t)nv;
    KVQ_FAIL_IF(ns < 1 || (!has_gid && ns != 1) || ns % N || n != need, KVQ_ERR_CORRUPT,
                "quamba2: payload of %zu bytes with %d scales, shape needs %zu", n, ns, need);
    for (int i = 0; i < ns; i++) {
        uint32_t u = kvq_rd32(b + 2 + 4 * i);
        float sc;
        memcpy(&sc, &u, 4);
        KVQ_FAIL_IF(!isfinite(sc) || sc < 0, KVQ_ERR_CORRUPT, "quamba2: scale %d is %g", i, (double)sc);
    }
    const uint8_t *gid = b + 2 + 4 * (size_t)ns;
    for (int64_t c = 0; has_gid && c < C / N; c++)
        KVQ_FAIL_IF(kvq_rd16(gid + 2 * c) >= ns / N, KVQ_ERR_CORRUPT, "quamba2: channel %lld in group %u of %lld",
                    (long long)c, kvq_rd16(gid + 2 * c), (long long)(ns / N));
    return KVQ_OK;
}

static kvq_err qb_decode_rows(void *p, const void *src, size_t n, const kvq_shape *s, int64_t r0, int64_t r1,
                              float *out)
{
    qb_state *st = p;
    int64_t C, N, cols = kvq_shape_cols(s), nv = kvq_shape_numel(s);
    qb_kind k = kind_of(st, s, &C, &N);
    const uint8_t *b = src;
    KVQ_TRY(check_payload(b, n, k, C, N, nv));
    KVQ_FAIL_IF(r0 < 0 || r1 > kvq_shape_rows(s) || r0 > r1, KVQ_ERR_ARG, "quamba2: rows [%lld, %lld)",
                (long long)r0, (long long)r1);
    int ns = kvq_rd16(b), has_gid = k != QB_TENSOR;
    const uint8_t *gid = b + 2 + 4 * (size_t)ns, *codes = gid + (has_gid ? 2 * (size_t)(C / N) : 0);
    float *sc = malloc((size_t)ns * sizeof *sc);
    KVQ_FAIL_IF(!sc, KVQ_ERR_NOMEM, "quamba2: out of memory");
    for (int i = 0; i < ns; i++) {
        uint32_t u = kvq_rd32(b + 2 + 4 * i);
        memcpy(&sc[i], &u, 4);
    }
    /* value i: channel c = i mod C, entry c / N, column c mod N; walk
     * entries so the group index is read once per N values */
    for (int64_t i = r0 * cols; i < r1 * cols;) {
        int64_t c = i % C, e = c / N, col = c % N;
        const float *se = sc + (has_gid ? kvq_rd16(gid + 2 * e) * N : 0);
        for (; col < N && i < r1 * cols; col++, i++) out[i - r0 * cols] = (float)(int8_t)codes[i] * se[has_gid ? col : 0];
    }
    free(sc);
    int rotate = st->had && s->ndim == 2 && kvq_had_base(C);
    for (int64_t r = r0; rotate && r < r1; r++) kvq_had_apply(out + (r - r0) * cols, cols, 1);
    return KVQ_OK;
}

const kvq_codec kvq_codec_quamba2 = {
    .abi = KVQ_CODEC_ABI,
    .name = "quamba2",
    .id = 70,
    .domain = KVQ_DOMAIN_ACT | KVQ_DOMAIN_SSM,
    .flags = KVQ_FLAG_NEEDS_CALIB,
    .state_size = sizeof(qb_state),
    .params = qb_params,
    .n_params = sizeof qb_params / sizeof qb_params[0],
    /* static scales clip what calibration never saw; clipping and rounding
     * both keep |x̂ − x| <= |x| per value (same sign, |x̂| <= 2|x| or 0),
     * so ‖x̂ − x‖ <= ‖x‖ always — the only bound a static scale allows */
    .max_rel_err = 1.0,
    .summary = "Quamba2 static int8: per tensor, per SSD group, sort-and-cluster x and SSM state; optional Hadamard",
    .init = qb_init,
    .calibrate = qb_calibrate,
    .bound = qb_bound,
    .encode = qb_encode,
    .decode = NULL,
    .fini = qb_fini,
    .decode_rows = qb_decode_rows,
};

/* ---- codec `quamba2_state` ------------------------------------------------------------ */
/* The SSM state seen as [A][P][N] (3-D as given; 2-D [rows][cols] as
 * [1][rows][cols]): one f16 scale max_p |h[a][p][n]|/127 per (a, n), then
 * int8 codes.  Payload: A·N f16 scales, then A·P·N signed bytes. */
#define QS_QMAX 127.0f

typedef struct {
    int64_t A, P, N;
} qs_dims;

static qs_dims qs_dims_of(const kvq_shape *s)
{
    qs_dims d = {1, kvq_shape_rows(s), kvq_shape_cols(s)};
    if (s->ndim == 3) d.A = s->dim[0], d.P = s->dim[1], d.N = s->dim[2];
    return d;
}

static size_t qs_bound(const void *p, const kvq_shape *s)
{
    (void)p;
    qs_dims d = qs_dims_of(s);
    return (size_t)(d.A * d.N) * 2 + (size_t)kvq_shape_numel(s);
}

static kvq_err qs_encode(void *p, const kvq_tensor *src, void *dst, size_t cap, size_t *n_out)
{
    qs_dims d = qs_dims_of(&src->shape);
    size_t need = qs_bound(p, &src->shape);
    KVQ_FAIL_IF(cap < need, KVQ_ERR_DST_TOO_SMALL, "quamba2_state: %zu bytes needed, %zu given", need, cap);
    const float *x = src->data;
    uint8_t *o = dst, *codes = o + 2 * (size_t)(d.A * d.N);
    for (int64_t a = 0; a < d.A; a++)
        for (int64_t n = 0; n < d.N; n++) {
            float m = 0;
            for (int64_t q = 0; q < d.P; q++) m = fmaxf(m, fabsf(x[(a * d.P + q) * d.N + n]));
            uint16_t h = kvq_f32_to_f16(m / QS_QMAX);
            float s = kvq_f16_to_f32(h);
            KVQ_FAIL_IF(!isfinite(s), KVQ_ERR_PARAM_RANGE, "quamba2_state: scale %g does not fit f16",
                        (double)(m / QS_QMAX));
            kvq_wr16(o + 2 * (a * d.N + n), h);
            for (int64_t q = 0; q < d.P; q++) {
                int64_t i = (a * d.P + q) * d.N + n;
                float c = s > 0 ? (float)kvq_round_rne(x[i] / s) : 0.0f;
                codes[i] = (uint8_t)(int8_t)(c > QS_QMAX ? QS_QMAX : c < -QS_QMAX ? -QS_QMAX : c);
            }
        }
    *n_out = need;
    return KVQ_OK;
}

static kvq_err qs_decode_rows(void *p, const void *src, size_t n, const kvq_shape *s, int64_t r0, int64_t r1,
                              float *out)
{
    qs_dims d = qs_dims_of(s);
    int64_t cols = kvq_shape_cols(s);
    KVQ_FAIL_IF(n != qs_bound(p, s), KVQ_ERR_CORRUPT, "quamba2_state: payload of %zu bytes, shape needs %zu", n,
                qs_bound(p, s));
    KVQ_FAIL_IF(r0 < 0 || r1 > kvq_shape_rows(s) || r0 > r1, KVQ_ERR_ARG, "quamba2_state: rows [%lld, %lld)",
                (long long)r0, (long long)r1);
    const uint8_t *b = src, *codes = b + 2 * (size_t)(d.A * d.N);
    for (int64_t r = r0; r < r1; r++) {
        int64_t a = r / d.P;
        for (int64_t c = 0; c < cols; c++) {
            float sc = kvq_f16_to_f32(kvq_rd16(b + 2 * (a * d.N + c)));
            KVQ_FAIL_IF(!isfinite(sc) || sc < 0, KVQ_ERR_CORRUPT, "quamba2_state: bad scale at (%lld, %lld)",
                        (long long)a, (long long)c);
            out[(r - r0) * cols + c] = (float)(int8_t)codes[r * cols + c] * sc;
        }
    }
    return KVQ_OK;
}

const kvq_codec kvq_codec_quamba2_state = {
    .abi = KVQ_CODEC_ABI,
    .name = "quamba2_state",
    .id = 72,
    .domain = KVQ_DOMAIN_SSM,
    .flags = 0,
    .state_size = 0,
    .params = NULL,
    .n_params = 0,
    /* |h − ĥ| <= s/2 = max_p|h|/254 per value, so the relative norm is at
     * most sqrt(P)/254 (P = 512 rows of the largest conformance sample) */
    .max_rel_err = 0.1,
    .summary = "Quamba2 SSM state cache: int8, one f16 scale per (head, state column)",
    .bound = qs_bound,
    .encode = qs_encode,
    .decode = NULL,
    .decode_rows = qs_decode_rows,
};
