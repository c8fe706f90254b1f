/*
 * fuzz_tokenizer.c — libFuzzer harness for libkvq/tokenizer.c.
 *
 * Part 1: the input as a tokenizer.bin; parsing must return, never crash,
 *         and a parsed tokenizer must encode a fixed text into ids inside
 *         its vocabulary, within encode_bound().
 * Part 2: the input as text for a toy vocabulary with tied merge scores:
 *         the heap-based encoder must give exactly the tokens of run.c's
 *         quadratic algorithm (rescan every pair after every merge, the
 *         first best pair wins), re-implemented here naively; and decoding
 *         the tokens must give the text back byte for byte.
 * A broken property calls __builtin_trap(), which libFuzzer reports.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvq.h"

#define MAX_TEXT 256     /* bytes of text for the quadratic reference */
#define BYTE_OFFSET 3    /* run.c: raw byte b is token b + 3          */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) __builtin_trap();                                          \
    } while (0)

static void fuzz_parse(const uint8_t *data, size_t size)
{
    kvq_tokenizer *t = NULL;
    if (kvq_tokenizer_from_bytes(data, size, 0, "fuzz", &t) != KVQ_OK) return;
    static const char text[] = "Once upon a time, \xc3\xa9t\xc3\xa9 \xf0\x9f\x99\x82!";
    int tok[sizeof text + 3];
    size_t n;
    if (kvq_tokenizer_encode(t, text, 1, 1, tok, sizeof tok / sizeof tok[0], &n) == KVQ_OK) {
        CHECK(n <= kvq_tokenizer_encode_bound(strlen(text)));
        for (size_t i = 0; i < n; i++) {
            CHECK(tok[i] >= 0 && tok[i] < kvq_tokenizer_vocab_size(t));
            CHECK(kvq_tokenizer_decode(t, i ? tok[i - 1] : 0, tok[i]) != NULL);
        }
    }
    kvq_tokenizer_free(t);
}

static kvq_tokenizer *toy(void)
{
    static const struct {
        const char *s;
        float score;
    } extra[] = {{" ", -1}, {"a", -2}, {"b", -2}, {"c", -3}, {"ab", -4}, {"bc", -4}, {"ca", -4},
                 {"abc", -4}, {"bca", -5}, {"cab", -4}, {" a", -6}, {"aa", -4}, {"aaa", -4},
                 {" ab", -3}, {"\xc3\xa9", -2}, {"b\xc3\xa9", -4}};
    static uint8_t buf[8192];
    size_t off = 4;
    memset(buf, 0, 4);
    char name[8];
    for (int i = 0; i < 259 + (int)(sizeof extra / sizeof extra[0]); i++) {
        const char *s = i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : name;
        float score = 0.0f;
        if (i >= 3 && i < 259) snprintf(name, sizeof name, "<0x%02X>", i - 3);
        if (i >= 259) s = extra[i - 259].s, score = extra[i - 259].score;
        uint32_t len = (uint32_t)strlen(s);
        memcpy(buf + off, &score, 4);
        memcpy(buf + off + 4, &len, 4);
        memcpy(buf + off + 8, s, len);
        off += 8 + len;
    }
    kvq_tokenizer *t = NULL;
    CHECK(kvq_tokenizer_from_bytes(buf, off, 0, "toy", &t) == KVQ_OK);
    return t;
}

/* run.c encode(), quadratic merge loop, for comparison. */
static size_t naive_encode(const kvq_tokenizer *t, const char *text, int *tok)
{
    size_t n = 0, len = 0;
    char cp[5], cat[64];
    tok[n++] = 1;
    if (text[0]) tok[n++] = kvq_tokenizer_lookup(t, " ");
    for (const char *c = text; *c; c++) {
        if ((*c & 0xC0) != 0x80) len = 0;
        cp[len++] = *c;
        cp[len] = '\0';
        if ((c[1] & 0xC0) == 0x80 && len < 4) continue;
        int id = kvq_tokenizer_lookup(t, cp);
        if (id >= 0) tok[n++] = id;
        else
            for (size_t i = 0; i < len; i++) tok[n++] = (uint8_t)cp[i] + BYTE_OFFSET;
        len = 0;
    }
    for (;;) {
        float best = -1e10f;
        int best_id = -1;
        size_t best_i = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            snprintf(cat, sizeof cat, "%s%s", kvq_tokenizer_piece(t, tok[i]), kvq_tokenizer_piece(t, tok[i + 1]));
            int id = kvq_tokenizer_lookup(t, cat);
            if (id >= 0 && kvq_tokenizer_score(t, id) > best) best = kvq_tokenizer_score(t, id), best_id = id, best_i = i;
        }
        if (best_id < 0) break;
        tok[best_i] = best_id;
        memmove(tok + best_i + 1, tok + best_i + 2, (n - best_i - 2) * sizeof *tok);
        n--;
    }
    return n;
}

static void fuzz_encode(const uint8_t *data, size_t size)
{
    static const char alphabet[] = {'a', 'b', 'c', ' ', '\xc3', '\xa9', 'x', '\n'};
    char text[MAX_TEXT + 1];
    size_t len = size < MAX_TEXT ? size : MAX_TEXT;
    /* Half the inputs as raw bytes, half mapped onto the toy alphabet. */
    int raw = size && (data[0] & 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = raw ? (char)data[i] : alphabet[data[i] % sizeof alphabet];
        if (ch) text[o++] = ch;
    }
    text[o] = '\0';
    kvq_tokenizer *t = toy();
    int got[MAX_TEXT + 3], want[MAX_TEXT + 3];
    size_t n;
    CHECK(kvq_tokenizer_encode(t, text, 1, 0, got, MAX_TEXT + 3, &n) == KVQ_OK);
    size_t m = naive_encode(t, text, want);
    CHECK(n == m && !memcmp(got, want, n * sizeof *got));
    char back[4 * MAX_TEXT + 1];
    size_t b = 0;
    for (size_t i = 1; i < n; i++) {
        const char *p = kvq_tokenizer_decode(t, got[i - 1], got[i]);
        size_t l = strlen(p);
        CHECK(b + l <= 4 * MAX_TEXT);
        memcpy(back + b, p, l);
        b += l;
    }
    CHECK(b == o && !memcmp(back, text, o));
    kvq_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parse(data, size);
    fuzz_encode(data, size);
    return 0;
}
