/*
 * test_json.c — the strict JSON reader used for safetensors headers,
 * index.json and config.json: values and escapes decoded exactly, integers
 * kept exact, and every malformed, duplicate-keyed or too-deep document
 * refused with a message naming the byte offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

static kvq_json *parse_ok(const char *text)
{
    kvq_json *j = NULL;
    kvq_err e = kvq_json_parse(text, strlen(text), "t.json", &j);
    if (e) fprintf(stderr, "%s\n", kvq_last_error_detail());
    assert_int_equal(e, KVQ_OK);
    return j;
}

static void test_values(void **state)
{
    (void)state;
    kvq_json *j = parse_ok(" {\"a\": [1, -2, 3.5e2, 9007199254740993], \"s\": \"x\\u00e9\\n\\ud83d\\ude00\\/\","
                           " \"t\": true, \"f\": false, \"n\": null, \"o\": {}} \n");
    assert_int_equal(j->type, KVQ_JSON_OBJECT);
    assert_int_equal(j->n, 6);
    const kvq_json *a = kvq_json_get(j, "a");
    assert_int_equal(a->type, KVQ_JSON_ARRAY);
    assert_int_equal(a->n, 4);
    assert_true(a->items[0].is_int && a->items[0].i == 1);
    assert_true(a->items[1].is_int && a->items[1].i == -2);
    assert_false(a->items[2].is_int);
    assert_true(a->items[2].d == 350.0);
    assert_true(a->items[3].is_int && a->items[3].i == 9007199254740993LL); /* exact beyond 2^53 */
    const kvq_json *s = kvq_json_get(j, "s");
    assert_string_equal(s->str, "x\xc3\xa9\n\xf0\x9f\x98\x80/");
    assert_int_equal(s->len, 9);
    assert_int_equal(kvq_json_get(j, "t")->boolean, 1);
    assert_int_equal(kvq_json_get(j, "f")->type, KVQ_JSON_BOOL);
    assert_int_equal(kvq_json_get(j, "f")->boolean, 0);
    assert_int_equal(kvq_json_get(j, "n")->type, KVQ_JSON_NULL);
    assert_int_equal(kvq_json_get(j, "o")->n, 0);
    assert_null(kvq_json_get(j, "missing"));
    assert_null(kvq_json_get(a, "a")); /* not an object */
    kvq_json_free(j);
    kvq_json_free(NULL);
}

static void test_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",        "{",          "{\"a\":1,}",  "[1,]",          "{\"a\" 1}",        "{'a':1}",
        "01",      "1.",         ".5",          "-",             "1e",               "+1",
        "nul",     "tru",        "NaN",         "\"abc",         "\"a\x01\"",        "\"\\x\"",
        "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\u0000\"",  "{\"a\":1,\"a\":2}", "[1] 2",
        "{\"a\":1 \"b\":2}", "// c\n1", "[1 2]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kvq_json *j = NULL;
        kvq_err e = kvq_json_parse(bad[i], strlen(bad[i]), "bad.json", &j);
        if (e == KVQ_OK) fprintf(stderr, "accepted: %s\n", bad[i]);
        assert_int_equal(e, KVQ_ERR_CORRUPT);
        assert_null(j);
        assert_non_null(strstr(kvq_last_error_detail(), "bad.json"));
    }
    kvq_json *j = NULL;
    assert_int_equal(kvq_json_parse("{\"k\":1,\"k\":2}", 13, "dup.json", &j), KVQ_ERR_CORRUPT);
    assert_non_null(strstr(kvq_last_error_detail(), "\"k\" twice"));
    assert_int_equal(kvq_json_parse("[1, x]", 6, "pos.json", &j), KVQ_ERR_CORRUPT);
    assert_non_null(strstr(kvq_last_error_detail(), "at byte 4"));
}

static void test_depth_and_size(void **state)
{
    (void)state;
    char deep[2 * KVQ_JSON_MAX_DEPTH + 8];
    size_t n = 0;
    for (int i = 0; i < KVQ_JSON_MAX_DEPTH; i++) deep[n++] = '[';
    for (int i = 0; i < KVQ_JSON_MAX_DEPTH; i++) deep[n++] = ']';
    kvq_json *j = NULL;
    assert_int_equal(kvq_json_parse(deep, n, "deep.json", &j), KVQ_OK); /* exactly the limit */
    kvq_json_free(j);
    memmove(deep + 1, deep, n);
    deep[0] = '[';
    deep[++n] = ']';
    n++;
    assert_int_equal(kvq_json_parse(deep, n, "deeper.json", &j), KVQ_ERR_CORRUPT);
    assert_non_null(strstr(kvq_last_error_detail(), "nested deeper"));
    /* Many keys: duplicates are found without quadratic work. */
    enum { KEYS = 20000 };
    char *big = malloc(KEYS * 16 + 4);
    size_t o = 0;
    big[o++] = '{';
    for (int i = 0; i < KEYS; i++) o += (size_t)sprintf(big + o, "%s\"k%d\":%d", i ? "," : "", i, i);
    big[o++] = '}';
    assert_int_equal(kvq_json_parse(big, o, "big.json", &j), KVQ_OK);
    assert_int_equal(j->n, KEYS);
    assert_int_equal(kvq_json_get(j, "k19999")->i, 19999);
    kvq_json_free(j);
    memcpy(big + 2, "k1\":0,\"k1", 9); /* "k1" ... "k1": a duplicate */
    assert_int_equal(kvq_json_parse(big, o, "big.json", &j), KVQ_ERR_CORRUPT);
    free(big);
    /* Truncations of a valid document never parse, never crash. */
    const char *doc = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},\"__metadata__\":{\"a\":\"b\"}}";
    for (size_t k = 0; k < strlen(doc); k++) {
        char *p = malloc(k + 1);
        memcpy(p, doc, k);
        assert_int_equal(kvq_json_parse(p, k, "trunc.json", &j), KVQ_ERR_CORRUPT);
        free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_depth_and_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
