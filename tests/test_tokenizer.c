/*
 * test_tokenizer.c — llama2.c tokenizer: file parsing, run.c's encode
 * (dummy prefix, code points, byte fallback, best-pair merges with ties
 * to the lowest position), decode and safe printing; the sampler's
 * run.c-compatible RNG, argmax and top-p.  Real-data checks (tok512
 * golden tokens, Llama 2's 32000-token file) skip when ../shared/data is
 * absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvq.h"

#define DATA "../shared/data/"
#define TOK512 DATA "models/stories260K/tok512.bin"
#define LLAMA2_TOK DATA "models/llama2_tokenizer/tokenizer.bin"
#define GOLDEN_TOK DATA "models/mamba2-2.9M/golden_tokens.i32"
#define VALID_TXT DATA "corpus/mixtext/valid.txt"
#define N_GOLDEN 64

typedef struct {
    const char *s;
    float score;
} tok_def;

/* A toy vocabulary: <unk> <s> </s>, 256 byte tokens, then merges. */
static size_t put_tok(unsigned char *p, const char *s, float score)
{
    uint32_t len = (uint32_t)strlen(s);
    memcpy(p, &score, 4);
    memcpy(p + 4, &len, 4);
    memcpy(p + 8, s, len);
    return 8 + len;
}

static kvq_tokenizer *toy_tokenizer(void)
{
    static const tok_def extra[] = {
        {" ", -1.0f}, {"a", -2.0f}, {"b", -3.0f}, {"c", -4.0f},
        {"ab", -5.0f}, {"bc", -5.0f}, /* equal scores: leftmost pair wins */
        {" a", -9.0f}, {"abc", -1.5f}, {"\xc3\xa9", -6.0f},
    };
    size_t n_extra = sizeof extra / sizeof extra[0];
    unsigned char *buf = malloc(65536);
    size_t off = 4;
    uint32_t maxlen = 8;
    memcpy(buf, &maxlen, 4);
    off += put_tok(buf + off, "<unk>", 0.0f);
    off += put_tok(buf + off, "<s>", 0.0f);
    off += put_tok(buf + off, "</s>", 0.0f);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        off += put_tok(buf + off, name, 0.0f);
    }
    for (size_t i = 0; i < n_extra; i++) off += put_tok(buf + off, extra[i].s, extra[i].score);
    kvq_tokenizer *t = NULL;
    assert_int_equal(kvq_tokenizer_from_bytes(buf, off, 0, "toy", &t), KVQ_OK);
    assert_int_equal(kvq_tokenizer_vocab_size(t), 259 + (int)n_extra);
    free(buf);
    return t;
}

static void encode(const kvq_tokenizer *t, const char *text, int bos, int eos, int *out, size_t *n)
{
    size_t cap = kvq_tokenizer_encode_bound(strlen(text));
    assert_int_equal(kvq_tokenizer_encode(t, text, bos, eos, out, cap, n), KVQ_OK);
}

static void test_toy_encode(void **state)
{
    (void)state;
    kvq_tokenizer *t = toy_tokenizer();
    int tok[64];
    size_t n;
    const int sp = 259, a = 260, c = 262, ab = 263, abc = 266, e_acute = 267;
    /* " abc": " "+"a" (-9) loses to "a"+"b" (-5) and "b"+"c"; "ab"+"c" →
     * "abc" (-1.5); then " "+"abc" is not a piece. */
    encode(t, "abc", 1, 1, tok, &n);
    assert_int_equal(n, 4);
    assert_int_equal(tok[0], KVQ_TOKEN_BOS);
    assert_int_equal(tok[1], sp);
    assert_int_equal(tok[2], abc);
    assert_int_equal(tok[3], KVQ_TOKEN_EOS);
    /* "abcab": first pass ab,bc tie at -5 → leftmost "ab" merges; → ab c ab
     * → "abc" merges; then abc+ab is no piece. */
    encode(t, "abcab", 0, 0, tok, &n);
    assert_int_equal(n, 3);
    assert_int_equal(tok[0], sp);
    assert_int_equal(tok[1], abc);
    assert_int_equal(tok[2], ab);
    /* "ca" stays split; " a"(-9) merges after nothing better exists. */
    encode(t, "ac", 0, 0, tok, &n);
    assert_int_equal(n, 2);
    assert_int_equal(tok[0], 265); /* " a" */
    assert_int_equal(tok[1], c);
    /* UTF-8: é is a piece; ü is not → its two bytes +3; 'z' byte fallback. */
    encode(t, "\xc3\xa9\xc3\xbcz", 0, 0, tok, &n);
    assert_int_equal(n, 5);
    assert_int_equal(tok[1], e_acute);
    assert_int_equal(tok[2], 0xc3 + 3);
    assert_int_equal(tok[3], 0xbc + 3);
    assert_int_equal(tok[4], 'z' + 3);
    /* Empty text: no dummy prefix. */
    encode(t, "", 1, 0, tok, &n);
    assert_int_equal(n, 1);
    (void)a;
    /* Too small a buffer is an error, not an overflow. */
    assert_int_equal(kvq_tokenizer_encode(t, "abc", 1, 1, tok, 5, &n), KVQ_ERR_DST_TOO_SMALL);
    kvq_tokenizer_free(t);
}

static void test_toy_decode(void **state)
{
    (void)state;
    kvq_tokenizer *t = toy_tokenizer();
    /* After BOS the leading space is stripped; elsewhere kept. */
    assert_string_equal(kvq_tokenizer_decode(t, KVQ_TOKEN_BOS, 265), "a");
    assert_string_equal(kvq_tokenizer_decode(t, 260, 265), " a");
    /* <0x41> → "A"; <0x0A> → "\n"; <0x00> → "" (never printed). */
    assert_string_equal(kvq_tokenizer_decode(t, 5, 3 + 0x41), "A");
    assert_string_equal(kvq_tokenizer_decode(t, 5, 3 + 0x0A), "\n");
    assert_string_equal(kvq_tokenizer_decode(t, 5, 3), "");
    assert_null(kvq_tokenizer_decode(t, 5, 100000));
    assert_int_equal(kvq_piece_is_safe("\n"), 1);
    assert_int_equal(kvq_piece_is_safe("A"), 1);
    assert_int_equal(kvq_piece_is_safe("\x01"), 0);
    assert_int_equal(kvq_piece_is_safe(""), 0);
    assert_int_equal(kvq_piece_is_safe("\xc3\xa9"), 1);
    assert_int_equal(kvq_tokenizer_lookup(t, "abc"), 266);
    assert_int_equal(kvq_tokenizer_lookup(t, "abcd"), -1);
    kvq_tokenizer_free(t);
}

static void test_bad_files(void **state)
{
    (void)state;
    kvq_tokenizer *t = NULL;
    unsigned char buf[64] = {0};
    /* header only: no tokens */
    assert_int_equal(kvq_tokenizer_from_bytes(buf, 4, 0, "x", &t), KVQ_ERR_CORRUPT);
    /* a token whose length runs past the end */
    size_t off = 4 + put_tok(buf + 4, "ab", 0.0f);
    assert_int_equal(kvq_tokenizer_from_bytes(buf, off - 1, 0, "x", &t), KVQ_ERR_TRUNCATED);
    assert_non_null(strstr(kvq_last_error_detail(), "x"));
    /* asking for more tokens than the file holds */
    assert_int_equal(kvq_tokenizer_from_bytes(buf, off, 2, "x", &t), KVQ_ERR_TRUNCATED);
    assert_null(t);
    assert_int_equal(kvq_tokenizer_load("/nonexistent/tok.bin", 0, &t), KVQ_ERR_IO);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)len + 1);
    *n = fread(p, 1, (size_t)len, f);
    p[*n] = '\0';
    fclose(f);
    return p;
}

static void test_tok512_golden(void **state)
{
    (void)state;
    size_t n_text, n_gold;
    char *text = slurp(VALID_TXT, &n_text);
    char *gold = slurp(GOLDEN_TOK, &n_gold);
    kvq_tokenizer *t = NULL;
    if (!text || !gold || kvq_tokenizer_load(TOK512, 512, &t) != KVQ_OK) {
        free(text);
        free(gold);
        print_message("skipped: %s / %s / %s not available\n", TOK512, VALID_TXT, GOLDEN_TOK);
        skip();
    }
    assert_int_equal(n_gold, N_GOLDEN * 4);
    size_t cap = kvq_tokenizer_encode_bound(n_text), n;
    int *tok = malloc(cap * sizeof *tok);
    assert_int_equal(kvq_tokenizer_encode(t, text, 1, 0, tok, cap, &n), KVQ_OK);
    assert_true(n > N_GOLDEN);
    for (int i = 0; i < N_GOLDEN; i++) {
        int32_t g;
        memcpy(&g, gold + 4 * i, 4);
        assert_int_equal(tok[i], g);
    }
    /* Decoding the tokens back gives the text (tok512 covers every byte). */
    size_t o = 0;
    for (size_t i = 1; i < n && o < n_text; i++) {
        const char *p = kvq_tokenizer_decode(t, tok[i - 1], tok[i]);
        size_t l = strlen(p);
        assert_memory_equal(text + o, p, l);
        o += l;
    }
    assert_int_equal(o, n_text);
    free(tok);
    free(text);
    free(gold);
    kvq_tokenizer_free(t);
}

static void test_llama2_tokenizer(void **state)
{
    (void)state;
    kvq_tokenizer *t = NULL;
    if (kvq_tokenizer_load(LLAMA2_TOK, 32000, &t) != KVQ_OK) {
        print_message("skipped: %s not available\n", LLAMA2_TOK);
        skip();
    }
    assert_int_equal(kvq_tokenizer_vocab_size(t), 32000);
    int tok[64];
    size_t n;
    /* Llama 2's sentencepiece: "Hello world" → <s> ▁Hello ▁world. */
    encode(t, "Hello world", 1, 0, tok, &n);
    assert_int_equal(n, 3);
    assert_int_equal(tok[0], 1);
    assert_int_equal(tok[1], 15043);
    assert_int_equal(tok[2], 3186);
    assert_string_equal(kvq_tokenizer_decode(t, 1, 15043), "Hello");
    assert_string_equal(kvq_tokenizer_piece(t, 13), "<0x0A>");
    assert_string_equal(kvq_tokenizer_decode(t, 15043, 13), "\n");
    kvq_tokenizer_free(t);
}

/* ---- sampler ------------------------------------------------------------- */
static void test_rng_and_greedy(void **state)
{
    (void)state;
    /* run.c: state ^= >>12, <<25, >>27; (state * 0x2545F4914F6CDD1D) >> 32. */
    uint64_t s = 42;
    uint64_t x = 42;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    assert_int_equal(kvq_rng_u32(&s), (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32));
    assert_int_equal(s, x);
    float f = kvq_rng_f32(&s);
    assert_true(f >= 0.0f && f < 1.0f);

    kvq_sampler *sp = NULL;
    assert_int_equal(kvq_sampler_create(5, 0.0f, 0.9f, 1, &sp), KVQ_OK);
    float logits[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    assert_int_equal(kvq_sampler_sample(sp, logits), 1); /* lowest index of the tie */
    kvq_sampler_free(sp);
    assert_int_equal(kvq_sampler_create(5, -1.0f, 0.9f, 1, &sp), KVQ_ERR_PARAM_RANGE);
}

static void test_topp_reproducible(void **state)
{
    (void)state;
    enum { V = 16, DRAWS = 2000 };
    int count[V] = {0};
    kvq_sampler *a = NULL, *b = NULL;
    assert_int_equal(kvq_sampler_create(V, 1.0f, 0.5f, 1234, &a), KVQ_OK);
    assert_int_equal(kvq_sampler_create(V, 1.0f, 0.5f, 1234, &b), KVQ_OK);
    for (int d = 0; d < DRAWS; d++) {
        float la[V], lb[V];
        for (int i = 0; i < V; i++) la[i] = lb[i] = (float)(V - i) * 0.5f;
        int x = kvq_sampler_sample(a, la), y = kvq_sampler_sample(b, lb);
        assert_int_equal(x, y);
        count[x]++;
    }
    /* softmax of 8, 7.5, 7, ...: p0 ≈ 0.39, p0+p1 ≈ 0.63 > 0.5 → only
     * tokens 0 and 1 are ever drawn, in ratio e^0.5. */
    assert_int_equal(count[0] + count[1], DRAWS);
    assert_true(count[0] > count[1]);
    kvq_sampler_free(a);
    kvq_sampler_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toy_encode),      cmocka_unit_test(test_toy_decode),
        cmocka_unit_test(test_bad_files),       cmocka_unit_test(test_tok512_golden),
        cmocka_unit_test(test_llama2_tokenizer), cmocka_unit_test(test_rng_and_greedy),
        cmocka_unit_test(test_topp_reproducible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
