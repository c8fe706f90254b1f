/*
 * test_rans.c — compress/rans.c: table normalisation, golden bytes,
 * round trips over skewed / uniform / single-symbol alphabets, coding cost
 * close to the entropy, LEB128, and rejection of damaged streams.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "compress/plt_internal.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) /* xorshift64*: fixed seed */
{
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}

/* Symbols with P(s) ∝ 2^-s (geometric), capped at nsym-1. */
static void fill_geometric(uint16_t *s, size_t n, unsigned nsym)
{
    for (size_t i = 0; i < n; i++) {
        unsigned k = 0;
        while (k + 1 < nsym && (rnd() & 1)) k++;
        s[i] = (uint16_t)k;
    }
}

static void count(const uint16_t *s, size_t n, uint32_t *c, unsigned nsym)
{
    memset(c, 0, nsym * sizeof *c);
    for (size_t i = 0; i < n; i++) c[s[i]]++;
}

static void roundtrip(const uint16_t *s, size_t n, unsigned nsym, size_t *bytes)
{
    uint32_t *c = calloc(nsym, sizeof *c);
    kvq_rans_table *t = malloc(sizeof *t), *t2 = malloc(sizeof *t2);
    count(s, n, c, nsym);
    assert_int_equal(kvq_rans_table_build(t, c, nsym), KVQ_OK);
    kvq_buf tb = {0}, sb = {0};
    assert_int_equal(kvq_rans_table_write(t, &tb), KVQ_OK);
    assert_int_equal(kvq_rans_encode(t, s, n, &sb), KVQ_OK);
    assert_true(sb.n <= kvq_rans_bound(n));
    kvq_rd r = {.p = tb.p, .n = tb.n, .what = "table"};
    assert_int_equal(kvq_rans_table_read(t2, nsym, &r), KVQ_OK);
    assert_int_equal(r.off, tb.n);
    assert_memory_equal(t->freq, t2->freq, nsym * sizeof t->freq[0]);
    uint16_t *d = malloc(n * sizeof *d + 2);
    assert_int_equal(kvq_rans_decode(t2, sb.p, sb.n, d, n), KVQ_OK);
    assert_memory_equal(s, d, n * sizeof *s);
    *bytes = sb.n;
    free(d), free(c), free(t), free(t2);
    kvq_buf_free(&tb), kvq_buf_free(&sb);
}

static void test_table_normalise(void **state)
{
    (void)state;
    uint32_t c[KVQ_RANS_MAX_SYMS] = {0};
    c[0] = 1000000; /* one giant, 1000 singletons: all present get >= 1 */
    for (unsigned s = 1; s <= 1000; s++) c[s] = 1;
    kvq_rans_table t;
    assert_int_equal(kvq_rans_table_build(&t, c, KVQ_RANS_MAX_SYMS), KVQ_OK);
    unsigned sum = 0;
    for (unsigned s = 0; s < KVQ_RANS_MAX_SYMS; s++) {
        sum += t.freq[s];
        assert_true((c[s] > 0) == (t.freq[s] > 0));
    }
    assert_int_equal(sum, KVQ_RANS_TOTAL);
    assert_int_equal(t.freq[0], KVQ_RANS_TOTAL - 1000);
    /* exact scaling when counts already sum to 4096 */
    uint32_t c2[3] = {2048, 1024, 1024};
    assert_int_equal(kvq_rans_table_build(&t, c2, 3), KVQ_OK);
    assert_int_equal(t.freq[0], 2048);
    assert_int_equal(t.freq[1], 1024);
    assert_int_equal(t.start[2], 3072);
    assert_int_equal(t.lut[3071], 1);
    uint32_t zero[2] = {0, 0};
    assert_int_equal(kvq_rans_table_build(&t, zero, 2), KVQ_ERR_ARG);
    assert_int_equal(kvq_rans_table_build(&t, c2, 0), KVQ_ERR_ARG);
}

/* Golden bytes: counts {2048, 1024, 1024} give freqs equal to the counts;
 * the table is pairs (gap, freq-1) and the stream is fixed by the math. */
static void test_golden(void **state)
{
    (void)state;
    uint32_t c[3] = {2048, 1024, 1024};
    kvq_rans_table t;
    assert_int_equal(kvq_rans_table_build(&t, c, 3), KVQ_OK);
    kvq_buf tb = {0}, sb = {0};
    assert_int_equal(kvq_rans_table_write(&t, &tb), KVQ_OK);
    static const uint8_t table_gold[] = {0x00, 0xFF, 0x0F, 0x00, 0xFF, 0x07, 0x00, 0xFF, 0x07};
    assert_int_equal(tb.n, sizeof table_gold);
    assert_memory_equal(tb.p, table_gold, sizeof table_gold);
    /* 8 symbols at 1, 2, 2, 2 ... bits each: 0 1 2 0 0 1 2 0 = 12 bits */
    static const uint16_t sym[8] = {0, 1, 2, 0, 0, 1, 2, 0};
    assert_int_equal(kvq_rans_encode(&t, sym, 8, &sb), KVQ_OK);
    /* x0 = 2^23; every step multiplies by 1/p: 2^23 · 2^12 = 2^35 needs one
     * byte out: 4 state bytes + 1 renormalisation byte */
    assert_int_equal(sb.n, 5);
    static const uint8_t stream_gold[] = {0xE0, 0x70, 0x00, 0x08, 0x00}; /* from the equations, by hand in Python */
    assert_memory_equal(sb.p, stream_gold, sizeof stream_gold);
    uint16_t d[8];
    assert_int_equal(kvq_rans_decode(&t, sb.p, sb.n, d, 8), KVQ_OK);
    assert_memory_equal(d, sym, sizeof sym);
    kvq_buf_free(&tb), kvq_buf_free(&sb);
}

static void test_roundtrips_and_cost(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint16_t *s = malloc(N * sizeof *s);
    static const unsigned alph[] = {1, 2, 64, 256, 512, KVQ_RANS_MAX_SYMS};
    for (size_t a = 0; a < sizeof alph / sizeof alph[0]; a++) {
        unsigned nsym = alph[a];
        size_t bytes;
        fill_geometric(s, N, nsym); /* entropy → 2 bits/symbol for a large alphabet */
        roundtrip(s, N, nsym, &bytes);
        double h = 0;
        uint32_t *c = calloc(nsym, sizeof *c);
        count(s, N, c, nsym);
        for (unsigned k = 0; k < nsym; k++)
            if (c[k]) h -= (double)c[k] * log2((double)c[k] / N);
        assert_true((double)bytes * 8 <= h * 1.01 + 64); /* within 1% of the entropy */
        free(c);
        for (size_t i = 0; i < N; i++) s[i] = (uint16_t)(rnd() % nsym); /* uniform */
        roundtrip(s, N, nsym, &bytes);
        assert_true((double)bytes * 8 <= N * log2((double)nsym) * 1.01 + 64);
    }
    memset(s, 0, N * sizeof *s); /* a single symbol costs only the state */
    size_t bytes;
    roundtrip(s, N, 4, &bytes);
    assert_int_equal(bytes, 4);
    roundtrip(s, 1, 4, &bytes);
    free(s);
}

static void test_damage(void **state)
{
    (void)state;
    enum { N = 2000 };
    uint16_t s[N], d[N];
    fill_geometric(s, N, 16);
    uint32_t c[16];
    count(s, N, c, 16);
    kvq_rans_table t;
    assert_int_equal(kvq_rans_table_build(&t, c, 16), KVQ_OK);
    kvq_buf sb = {0};
    assert_int_equal(kvq_rans_encode(&t, s, N, &sb), KVQ_OK);
    for (size_t k = 0; k < sb.n; k++) assert_int_not_equal(kvq_rans_decode(&t, sb.p, k, d, N), KVQ_OK);
    /* extra trailing byte, and asking for fewer symbols than were coded */
    assert_int_equal(kvq_buf_u8(&sb, 0), KVQ_OK);
    assert_int_equal(kvq_rans_decode(&t, sb.p, sb.n, d, N), KVQ_ERR_CORRUPT);
    assert_int_not_equal(kvq_rans_decode(&t, sb.p, sb.n - 1, d, N - 1), KVQ_OK);
    /* a symbol outside the table is refused by the encoder */
    uint16_t bad = 15;
    c[15] = 0;
    assert_int_equal(kvq_rans_table_build(&t, c, 16), KVQ_OK);
    kvq_buf b2 = {0};
    assert_int_equal(kvq_rans_encode(&t, &bad, 1, &b2), KVQ_ERR_ARG);
    /* tables: symbol outside the alphabet, sum past the total, truncation */
    static const uint8_t past[] = {0x05, 0x00};
    static const uint8_t over[] = {0x00, 0x80, 0x20};
    static const uint8_t shorttab[] = {0x00, 0xFF};
    kvq_rd r1 = {.p = past, .n = sizeof past, .what = "t"}, r2 = {.p = over, .n = sizeof over, .what = "t"},
           r3 = {.p = shorttab, .n = sizeof shorttab, .what = "t"};
    assert_int_equal(kvq_rans_table_read(&t, 4, &r1), KVQ_ERR_CORRUPT);
    assert_int_equal(kvq_rans_table_read(&t, 4, &r2), KVQ_ERR_CORRUPT);
    assert_int_equal(kvq_rans_table_read(&t, 4, &r3), KVQ_ERR_TRUNCATED);
    kvq_buf_free(&sb), kvq_buf_free(&b2);
}

static void test_leb128(void **state)
{
    (void)state;
    static const uint64_t v[] = {0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX, UINT64_MAX};
    kvq_buf b = {0};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) assert_int_equal(kvq_leb_put(&b, v[i]), KVQ_OK);
    kvq_rd r = {.p = b.p, .n = b.n, .what = "leb"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint64_t x;
        assert_int_equal(kvq_leb_get(&r, &x), KVQ_OK);
        assert_true(x == v[i]);
    }
    assert_int_equal(r.off, b.n);
    assert_memory_equal(b.p, "\x00\x01\x7F\x80\x01\xAC\x02", 7);
    static const uint8_t overlong[11] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x00};
    kvq_rd r2 = {.p = overlong, .n = sizeof overlong, .what = "leb"};
    uint64_t x;
    assert_int_equal(kvq_leb_get(&r2, &x), KVQ_ERR_CORRUPT);
    kvq_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_normalise), cmocka_unit_test(test_golden),
        cmocka_unit_test(test_roundtrips_and_cost), cmocka_unit_test(test_damage),
        cmocka_unit_test(test_leb128),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
