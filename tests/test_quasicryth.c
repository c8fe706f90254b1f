/*
 * test_quasicryth.c — Quasicryth (compress/quasicryth/): the Fibonacci-word
 * mathematics and test vectors of papers/quasicryth.md §15, the coders,
 * round trips of adversarial inputs and corpus files, the container's
 * exact bytes, and rejection of every truncation and bit flip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "kvq.h"
#include "compress/quasicryth/qcx_internal.h"

#define CORPUS "../shared/data/corpus"
#define PHI    1.6180339887498948482
#define NW_BIG 1000000u              /* §15.1 large test vector */

/* ---- helpers ------------------------------------------------------------ */
static uint8_t *xmalloc(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* Compresses, checks the size bound, decompresses, compares. */
static size_t round_trip(const uint8_t *src, size_t n, int level, kvq_qcx_tiling t, int threads,
                         size_t block)
{
    size_t cap = kvq_qcx_compress_bound(n), cn = 0, dn = 0;
    uint8_t *c = xmalloc(cap), *d = xmalloc(n);
    kvq_qcx_params p = kvq_qcx_params_default();
    p.level = level;
    p.tiling = t;
    p.threads = threads;
    p.block_size = block;
    kvq_err e = kvq_qcx_compress(src, n, c, cap, &cn, &p, NULL);
    if (e != KVQ_OK) print_message("compress: %s\n", kvq_last_error_detail());
    assert_int_equal(e, KVQ_OK);
    e = kvq_qcx_decompress(c, cn, d, n, &dn, threads);
    if (e != KVQ_OK) print_message("decompress: %s\n", kvq_last_error_detail());
    assert_int_equal(e, KVQ_OK);
    assert_int_equal(dn, n);
    assert_memory_equal(d, src, n);
    free(c);
    free(d);
    return cn;
}

/* ---- Fibonacci word ------------------------------------------------------ */
static void test_fib_substitution_is_mechanical(void **state)
{
    (void)state;
    const size_t n = NW_BIG;
    uint8_t *f = xmalloc(n);
    qcx_fib_word(n, f);
    static const char first34[] = "LSLLSLSLLSLLSLSLLSLSLLSLLSLSLLSLLS";
    for (size_t i = 0; i < 34; i++) assert_int_equal(f[i], first34[i] == 'L');
    /* θ = α gives f; θ = 0 gives S·f (§15) */
    const double a = 1.0 / PHI;
    size_t bad = 0, bad0 = 0;
    for (size_t k = 0; k < n; k++) {
        int s = (int)(floor((double)(k + 1) * a + a) - floor((double)k * a + a));
        int s0 = (int)(floor((double)(k + 1) * a) - floor((double)k * a));
        bad += s != f[k];
        if (k > 0) bad0 += s0 != f[k - 1];
        else bad0 += s0 != 0;
    }
    assert_int_equal(bad, 0);
    assert_int_equal(bad0, 0);
    /* |σ^n(L)| = F(n+2) with F(n+1) L's: L count of each Fibonacci prefix */
    size_t fa = 1, fb = 2, ls = 0; /* prefix lengths F2=1, F3=2, ... */
    size_t pos = 0;
    while (fb < n) {
        while (pos < fb) ls += f[pos++];
        assert_int_equal(ls, fa); /* F(n+1) L's in the first F(n+2) symbols */
        size_t t = fa + fb;
        fa = fb;
        fb = t;
    }
    free(f);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_fib_sturmian(void **state)
{
    (void)state;
    const size_t n = 60000, maxlen = 200;
    uint8_t *f = xmalloc(n);
    qcx_fib_word(n, f);
    for (size_t i = 0; i + 1 < n; i++) assert_false(f[i] == 0 && f[i + 1] == 0);          /* no SS */
    for (size_t i = 0; i + 2 < n; i++) assert_false(f[i] && f[i + 1] && f[i + 2]);        /* no LLL */
    /* factor complexity p(len) = len + 1 and balance, len ≤ 200 */
    uint64_t *h = malloc(n * sizeof *h);
    assert_non_null(h);
    for (size_t len = 1; len <= maxlen; len++) {
        size_t m = n - maxlen, lo = len, hi = 0;
        for (size_t i = 0; i < m; i++) {
            uint64_t x = 1469598103934665603ull;
            size_t ls = 0;
            for (size_t j = 0; j < len; j++) {
                x = (x ^ f[i + j]) * 1099511628211ull;
                ls += f[i + j];
            }
            h[i] = x;
            lo = ls < lo ? ls : lo;
            hi = ls > hi ? ls : hi;
        }
        qsort(h, m, sizeof *h, cmp_u64);
        size_t distinct = 1;
        for (size_t i = 1; i < m; i++) distinct += h[i] != h[i - 1];
        assert_int_equal(distinct, len + 1);
        assert_true(hi - lo <= 1);
        if (len == 50) assert_true(lo >= 30 && hi <= 31);
        if (len == 30) len = 49; /* sample: 1..30, 50, then every 50th */
        else if (len >= 50) len += 49;
    }
    free(h);
    free(f);
}

typedef struct {
    size_t count[QCX_HLEVELS];
    size_t first[QCX_HLEVELS][6];
    size_t last[QCX_HLEVELS];
    int gaps_ok;
} lookups;

static void collect(void *opaque, unsigned level, size_t pos)
{
    static const size_t span[QCX_HLEVELS] = {2, 3, 5, 8, 13, 21, 34, 55, 89, 144};
    lookups *l = opaque;
    size_t c = l->count[level]++;
    if (c < 6) l->first[level][c] = pos;
    if (c > 0 && level + 1 < QCX_HLEVELS) {
        size_t g = pos - l->last[level];
        if (g != span[level] && g != span[level + 1]) l->gaps_ok = 0;
    }
    l->last[level] = pos;
}

static void hierarchy_of(const uint8_t *tiles, size_t n_tiles, lookups *l)
{
    memset(l, 0, sizeof *l);
    l->gaps_ok = 1;
    assert_int_equal(qcx_hierarchy(tiles, n_tiles, collect, l), KVQ_OK);
}

static void tile_counts(const uint8_t *t, size_t n, size_t *nl, size_t *ns)
{
    *nl = *ns = 0;
    for (size_t i = 0; i < n; i++) t[i] ? (*nl)++ : (*ns)++;
}

static void test_vectors_1000(void **state)
{
    (void)state;
    uint8_t t[1000];
    size_t nl, ns;
    lookups l;
    /* θ = 0: tail SS merged into L */
    size_t n = qcx_tiling_mech(1.0 / PHI, 0.0, 1000, 1, t);
    tile_counts(t, n, &nl, &ns);
    assert_int_equal(n, 618);
    assert_int_equal(nl, 382);
    assert_int_equal(ns, 236);
    hierarchy_of(t, n, &l);
    static const size_t c0[10] = {0, 235, 146, 89, 56, 33, 21, 12, 8, 4};
    for (int k = 1; k < 10; k++) assert_int_equal(l.count[k], c0[k]);
    static const size_t p1[6] = {1, 6, 9, 14, 19, 22}, p2[6] = {1, 9, 14, 22, 30, 35},
                        p3[6] = {1, 14, 22, 35, 48, 56}, p4[6] = {1, 22, 35, 56, 77, 90};
    assert_memory_equal(l.first[1], p1, sizeof p1);
    assert_memory_equal(l.first[2], p2, sizeof p2);
    assert_memory_equal(l.first[3], p3, sizeof p3);
    assert_memory_equal(l.first[4], p4, sizeof p4);
    /* without the merge: 619 tiles and the counts of the "forgotten merge" */
    n = qcx_tiling_mech(1.0 / PHI, 0.0, 1000, 0, t);
    tile_counts(t, n, &nl, &ns);
    assert_int_equal(n, 619);
    assert_int_equal(nl, 381);
    assert_int_equal(ns, 238);
    hierarchy_of(t, n, &l);
    static const size_t cn[10] = {0, 236, 145, 90, 55, 34, 21, 12, 8, 4};
    for (int k = 1; k < 10; k++) assert_int_equal(l.count[k], cn[k]);
    /* θ = α */
    n = qcx_tiling_mech(1.0 / PHI, 1.0 / PHI, 1000, 1, t);
    tile_counts(t, n, &nl, &ns);
    assert_int_equal(n, 618);
    assert_int_equal(nl, 382);
    hierarchy_of(t, n, &l);
    static const size_t ca[10] = {0, 236, 146, 90, 56, 34, 22, 12, 8, 4};
    for (int k = 1; k < 10; k++) assert_int_equal(l.count[k], ca[k]);
    static const size_t a1[6] = {0, 5, 8, 13, 18, 21}, a4[6] = {0, 21, 34, 55, 76, 89};
    assert_memory_equal(l.first[1], a1, sizeof a1);
    assert_memory_equal(l.first[4], a4, sizeof a4);
}

static void test_vectors_million(void **state)
{
    (void)state;
    uint8_t *t = xmalloc(NW_BIG);
    size_t nl, ns;
    lookups l;
    size_t n = qcx_tiling_mech(1.0 / PHI, 0.0, NW_BIG, 1, t);
    tile_counts(t, n, &nl, &ns);
    assert_int_equal(n, 618034);
    assert_int_equal(nl, 381966);
    assert_int_equal(ns, 236068);
    hierarchy_of(t, n, &l);
    static const size_t c[10] = {0, 236067, 145898, 90169, 55728, 34441, 21286, 13155, 8130, 5025};
    static const size_t span[10] = {2, 3, 5, 8, 13, 21, 34, 55, 89, 144};
    for (int k = 1; k < 10; k++) {
        assert_int_equal(l.count[k], c[k]);
        if (k >= 4) { /* Golden Compensation: coverage → φ/√5 within 1% */
            double cov = (double)c[k] * (double)span[k] / NW_BIG;
            assert_true(fabs(cov / (PHI / sqrt(5.0)) - 1.0) < 0.01);
        }
    }
    assert_true(l.gaps_ok); /* interior gaps ∈ {SPAN[k], SPAN[k+1]} */
    /* Period-5 LLSLS collapses: zero exact spans from level 4 on (§15.2) */
    n = qcx_tiling_p5(NW_BIG, t);
    tile_counts(t, n, &nl, &ns);
    assert_int_equal(n, 625000);
    assert_int_equal(nl, 375000);
    hierarchy_of(t, n, &l);
    assert_int_equal(l.count[1], 250000);
    assert_int_equal(l.count[2], 124999);
    assert_int_equal(l.count[3], 124999);
    for (int k = 4; k < 10; k++) assert_int_equal(l.count[k], 0);
    free(t);
}

static void test_periodic_table(void **state)
{
    (void)state;
    static const char *const words[] = {"LS", "LLS", "LSLLS", "LSLLSLSL", "LSLLSLSLLSLLS"};
    static const size_t want[5][6] = {
        {333333, 0, 0, 0, 0, 0},
        {200000, 199999, 1, 0, 0, 0},
        {250000, 125000, 125000, 0, 0, 0},
        {230770, 153845, 76923, 76922, 0, 0},
        {238095, 142857, 95237, 47619, 47618, 0},
    };
    uint8_t *t = xmalloc(NW_BIG);
    for (int w = 0; w < 5; w++) {
        size_t p = strlen(words[w]), n = 0, covered = 0;
        for (size_t k = 0; covered < NW_BIG; k++) {
            int is_l = words[w][k % p] == 'L' && covered + 2 <= NW_BIG;
            t[n++] = (uint8_t)is_l;
            covered += is_l ? 2 : 1;
        }
        lookups l;
        hierarchy_of(t, n, &l);
        for (int k = 1; k <= 6; k++) assert_int_equal(l.count[k], want[w][k - 1]);
    }
    free(t);
}

static void test_golden_phases_distinct(void **state)
{
    (void)state;
    enum { NW = 2000 };
    static uint8_t t[12][NW];
    size_t n[12];
    for (int i = 0; i < 12; i++) n[i] = qcx_tiling_mech(1.0 / PHI, fmod(i / PHI, 1.0), NW, 1, t[i]);
    for (int i = 0; i < 12; i++)
        for (int j = i + 1; j < 12; j++)
            assert_true(n[i] != n[j] || memcmp(t[i], t[j], n[i]) != 0);
    /* nested lookups: level-k positions ⊆ level-(k−1) positions */
    uint16_t *mask = calloc(NW, sizeof *mask);
    assert_non_null(mask);
    assert_int_equal(qcx_lookup_masks(1, NW, mask), KVQ_OK);
    for (int p = 0; p < NW; p++)
        for (int k = 2; k < 10; k++)
            if (mask[p] >> k & 1) assert_true(mask[p] >> (k - 1) & 1);
    free(mask);
}

/* ---- coders -------------------------------------------------------------- */
static void test_coder_round_trip(void **state)
{
    (void)state;
    static const uint32_t alpha[] = {2, 3, 17, 256, 4097, 65536};
    enum { N = 20000 };
    uint32_t *sym = malloc(N * sizeof *sym);
    assert_non_null(sym);
    for (size_t a = 0; a < sizeof alpha / sizeof alpha[0]; a++) {
        qcx_big m;
        assert_int_equal(qcx_big_init(&m, alpha[a], 8, 1u << 20, 0), KVQ_OK);
        qcx_enc e;
        qcx_enc_init(&e);
        for (int i = 0; i < N; i++) {
            uint32_t r = rng();
            /* skewed: half the time a small symbol */
            sym[i] = (r & 1) ? (r >> 1) % alpha[a] : (r >> 1) % (alpha[a] < 4 ? alpha[a] : 4);
            qcx_big_encode(&m, &e, sym[i]);
        }
        assert_int_equal(qcx_enc_finish(&e), KVQ_OK);
        /* Fenwick prefix sums equal naive sums after rescales */
        uint32_t naive = 0;
        for (uint32_t s = 0; s < m.n; s++) {
            assert_true(m.f[s] >= 1);
            naive += m.f[s];
        }
        assert_int_equal(naive, m.total);
        qcx_big_free(&m);
        assert_int_equal(qcx_big_init(&m, alpha[a], 8, 1u << 20, 0), KVQ_OK);
        qcx_dec d;
        qcx_dec_init(&d, e.out.p, e.out.n);
        for (int i = 0; i < N; i++) {
            uint32_t s;
            assert_int_equal(qcx_big_decode(&m, &d, &s), KVQ_OK);
            assert_int_equal(s, sym[i]);
        }
        qcx_big_free(&m);
        kvq_buf_free(&e.out);
    }
    free(sym);
}

static void test_small_model_rescale(void **state)
{
    (void)state;
    qcx_small *m = qcx_small_create(5, 24, 1u << 12);
    assert_non_null(m);
    qcx_enc e;
    qcx_enc_init(&e);
    for (int i = 0; i < 5000; i++) {
        qcx_small_encode(m, &e, i % 7 == 0 ? 4u : 0u);
        assert_true(m->total <= (1u << 12));
        for (int s = 0; s < 5; s++) assert_true(m->f[s] >= 1);
    }
    assert_int_equal(qcx_enc_finish(&e), KVQ_OK);
    kvq_buf_free(&e.out);
    free(m);
}

static void test_lz77_matches(void **state)
{
    (void)state;
    enum { N = 5000 };
    uint32_t k[N];
    for (int i = 0; i < N; i++) k[i] = (i % 700 < 400) ? (uint32_t)(i % 97) : rng() % 5;
    qcx_match *m = NULL;
    assert_int_equal(qcx_lz77(k, N, 3, &m), KVQ_OK);
    size_t matches = 0;
    for (size_t i = 0; i < N;) {
        if (m[i].len) {
            assert_true(m[i].len >= 3 && m[i].len <= 255);
            assert_true(m[i].len <= m[i].dist && m[i].dist <= i); /* non-overlapping */
            for (size_t j = 0; j < m[i].len; j++) assert_int_equal(k[i + j], k[i + j - m[i].dist]);
            i += m[i].len;
            matches++;
        } else {
            i++;
        }
    }
    assert_true(matches > 10);
    free(m);
}

/* ---- tokens ---------------------------------------------------------------- */
static void test_tokens(void **state)
{
    (void)state;
    static const char *const s = "Hello, world!\n3.14  a";
    static const size_t want[] = {5, 2, 5, 2, 1, 1, 1, 3, 1};
    size_t pos = 0, i = 0, n = strlen(s);
    while (pos < n) {
        size_t k = qcx_token_len((const uint8_t *)s + pos, n - pos);
        assert_true(i < sizeof want / sizeof want[0]);
        assert_int_equal(k, want[i++]);
        pos += k;
    }
    assert_int_equal(i, sizeof want / sizeof want[0]);
    uint8_t big[600];
    memset(big, 'x', sizeof big);
    assert_int_equal(qcx_token_len(big, sizeof big), QCX_TOKEN_MAX);
}

/* ---- round trips ------------------------------------------------------------ */
static void test_adversarial(void **state)
{
    (void)state;
    enum { BIG = 300000 };
    uint8_t *b = xmalloc(BIG + 70002);
    assert_int_equal(round_trip(b, 0, 6, KVQ_QCX_TILING_MULTI, 1, 0), 25); /* header + end */
    for (int c = 0; c < 256; c += 17) {
        b[0] = (uint8_t)c;
        assert_true(round_trip(b, 1, 6, KVQ_QCX_TILING_MULTI, 1, 0) <= 1 + 40);
    }
    for (int i = 0; i < 100000; i++) b[i] = (uint8_t)rng();
    assert_true(round_trip(b, 100000, 6, KVQ_QCX_TILING_MULTI, 1, 0) <= 100000 + 48);
    for (int i = 0; i < 200; i++) memset(b + i * 301, 'x', 300), b[i * 301 + 300] = ' ';
    round_trip(b, 200 * 301, 6, KVQ_QCX_TILING_MULTI, 1, 0);
    memset(b, 'a', BIG);
    assert_true(round_trip(b, BIG, 6, KVQ_QCX_TILING_ALLPOS, 1, 0) < 1000);
    memset(b, ' ', 70000);
    round_trip(b, 70000, 6, KVQ_QCX_TILING_FIB, 1, 0);
    b[0] = 'x', memset(b + 1, ' ', 70000), b[70001] = 'y';
    round_trip(b, 70002, 6, KVQ_QCX_TILING_P5, 1, 0);
    static const char *const texts[] = {
        "caf\xc3 \xff\xfe na\xefve \x80\x80 text ",
        "Hello World,\r\nThis is CRLF\ttext.\r\n",
        "THE QUICK BROWN FOX McDonald iPhone \xc3\x89" "COLE A I ",
        "3.14159 2.71828, 1.41421; 42! ",
    };
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        size_t n = 0, k = strlen(texts[t]);
        while (n + k < 60000) memcpy(b + n, texts[t], k), n += k;
        for (int mode = 0; mode < 5; mode++) round_trip(b, n, 1 + 2 * mode, (kvq_qcx_tiling)mode, 2, 0);
    }
    /* binary: NUL in the first 8 KiB, and NUL after it (text mode) */
    for (int i = 0; i < 20000; i++) b[i] = (uint8_t)(i * 7);
    round_trip(b, 20000, 6, KVQ_QCX_TILING_MULTI, 1, 0);
    memset(b, 'e', 9000), b[9000] = 0;
    round_trip(b, 9001, 6, KVQ_QCX_TILING_MULTI, 1, 0);
    free(b);
}

static void test_blocks_and_threads(void **state)
{
    (void)state;
    enum { N = 200000 };
    uint8_t *b = xmalloc(N);
    static const char *const w[] = {"the ", "LORD ", "said ", "unto ", "Moses, ", "and ", "\n"};
    for (size_t n = 0; n < N; n++) b[n] = (uint8_t)w[rng() % 7][0];
    for (size_t n = 0; n + 8 < N;) {
        const char *x = w[rng() % 7];
        size_t k = strlen(x);
        memcpy(b + n, x, k);
        n += k;
    }
    size_t one = round_trip(b, N, 6, KVQ_QCX_TILING_MULTI, 1, 1 << 14);
    size_t four = round_trip(b, N, 6, KVQ_QCX_TILING_MULTI, 4, 1 << 14);
    assert_int_equal(one, four); /* threads never change the bytes */
    free(b);
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = xmalloc((size_t)sz);
    *n = fread(p, 1, (size_t)sz, f);
    fclose(f);
    return p;
}

static void test_corpus_subset(void **state)
{
    (void)state;
    static const char *const files[] = {"canterbury/alice29.txt", "canterbury/fields.c",
                                        "canterbury/kennedy.xls", "calgary/paper1",
                                        "calgary/obj1", "calgary/progc"};
    char path[512];
    int found = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        size_t n;
        snprintf(path, sizeof path, "%s/%s", CORPUS, files[i]);
        uint8_t *p = read_file(path, &n);
        if (!p) continue;
        found++;
        size_t c = round_trip(p, n, 3, KVQ_QCX_TILING_MULTI, 2, 0);
        assert_true(c < n);
        free(p);
    }
    if (!found) {
        print_message("[  SKIPPED ] %s absent\n", CORPUS);
        skip();
    }
}

/* ---- container -------------------------------------------------------------- */
static void test_container_bytes(void **state)
{
    (void)state;
    uint8_t out[64];
    size_t n = 0;
    kvq_qcx_params p = kvq_qcx_params_default();
    assert_int_equal(kvq_qcx_compress("", 0, out, sizeof out, &n, &p, NULL), KVQ_OK);
    /* magic, version 1, tiling 0, level 6, LEB128 32 MiB, header CRC */
    static const uint8_t head[11] = {0x89, 'Q', 'C', 'Y', 1, 0, 6, 0x80, 0x80, 0x80, 0x10};
    assert_int_equal(n, 25);
    assert_memory_equal(out, head, sizeof head);
    assert_int_equal(kvq_rd32(out + 11), kvq_crc32(0, out, 11));
    assert_int_equal(out[15], 0);  /* end record: kind 0, total 0, CRC 0 */
    assert_int_equal(out[16], 0);
    assert_int_equal(kvq_crc32(0, "123456789", 9), 0xCBF43926u);
    uint64_t sz = 1;
    assert_int_equal(kvq_qcx_content_size(out, n, &sz), KVQ_OK);
    assert_int_equal(sz, 0);
    kvq_qcx_tiling t;
    assert_int_equal(kvq_qcx_tiling_parse("allpos", &t), KVQ_OK);
    assert_int_equal(t, KVQ_QCX_TILING_ALLPOS);
    assert_int_equal(kvq_qcx_tiling_parse("golden", &t), KVQ_ERR_ARG);
    p.level = 10;
    assert_int_equal(kvq_qcx_compress("", 0, out, sizeof out, &n, &p, NULL), KVQ_ERR_PARAM_RANGE);
}

static void test_corruption_rejected(void **state)
{
    (void)state;
    static const char text[] = "In the beginning God created the heaven and the earth. "
                               "And the earth was without form, and void; and darkness was "
                               "upon the face of the deep. And God said, Let there be light: "
                               "and there was light. And God saw the light, that it was good.";
    size_t n = 0, on = 0, cap = kvq_qcx_compress_bound(sizeof text);
    uint8_t *c = xmalloc(cap), *d = xmalloc(sizeof text + 64);
    kvq_qcx_params p = kvq_qcx_params_default();
    assert_int_equal(kvq_qcx_compress(text, sizeof text, c, cap, &n, &p, NULL), KVQ_OK);
    for (size_t k = 0; k < n; k++) /* every truncation */
        assert_int_not_equal(kvq_qcx_decompress(c, k, d, sizeof text + 64, &on, 1), KVQ_OK);
    for (size_t bit = 0; bit < n * 8; bit++) { /* every bit flip */
        c[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        kvq_err e = kvq_qcx_decompress(c, n, d, sizeof text + 64, &on, 1);
        c[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (e == KVQ_OK) print_message("bit %zu flip accepted\n", bit);
        assert_int_not_equal(e, KVQ_OK);
    }
    /* a trailing byte is rejected too */
    c[n] = 0;
    assert_int_equal(kvq_qcx_decompress(c, n + 1, d, sizeof text + 64, &on, 1), KVQ_ERR_CORRUPT);
    /* random garbage after a valid header never crashes */
    for (int trial = 0; trial < 300; trial++) {
        for (size_t i = 15; i < n; i++) c[i] = (uint8_t)rng();
        (void)kvq_qcx_decompress(c, n, d, sizeof text + 64, &on, 1);
    }
    free(c);
    free(d);
}

static void test_stats_and_determinism(void **state)
{
    (void)state;
    size_t n = 0;
    uint8_t *p = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/canterbury/alice29.txt", CORPUS);
    p = read_file(path, &n);
    if (!p) {
        print_message("[  SKIPPED ] %s absent\n", path);
        skip();
    }
    size_t cap = kvq_qcx_compress_bound(n), a = 0, b = 0;
    uint8_t *x = xmalloc(cap), *y = xmalloc(cap);
    kvq_qcx_params prm = kvq_qcx_params_default();
    kvq_qcx_stats st;
    assert_int_equal(kvq_qcx_compress(p, n, x, cap, &a, &prm, &st), KVQ_OK);
    assert_int_equal(kvq_qcx_compress(p, n, y, cap, &b, &prm, NULL), KVQ_OK);
    assert_int_equal(a, b);
    assert_memory_equal(x, y, a);
    assert_int_equal(st.in_bytes, n);
    assert_int_equal(st.out_bytes, a);
    assert_int_equal(st.bytes_container + st.bytes_codebook + st.bytes_events + st.bytes_case +
                         st.bytes_escapes + st.bytes_other,
                     a);
    uint64_t words = 0;
    for (int lv = 0; lv < KVQ_QCX_ELEVELS; lv++) words += st.events[lv] * qcx_level_len[lv];
    assert_int_equal(words, st.words);
    for (int k = 1; k < KVQ_QCX_HLEVELS; k++) assert_true(st.hits[k] <= st.lookups[k]);
    assert_true(st.lookups[1] > st.lookups[4]);
    assert_int_equal(st.crc32, kvq_crc32(0, p, n));
    free(x);
    free(y);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fib_substitution_is_mechanical),
        cmocka_unit_test(test_fib_sturmian),
        cmocka_unit_test(test_vectors_1000),
        cmocka_unit_test(test_vectors_million),
        cmocka_unit_test(test_periodic_table),
        cmocka_unit_test(test_golden_phases_distinct),
        cmocka_unit_test(test_coder_round_trip),
        cmocka_unit_test(test_small_model_rescale),
        cmocka_unit_test(test_lz77_matches),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_adversarial),
        cmocka_unit_test(test_blocks_and_threads),
        cmocka_unit_test(test_corpus_subset),
        cmocka_unit_test(test_container_bytes),
        cmocka_unit_test(test_corruption_rejected),
        cmocka_unit_test(test_stats_and_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
