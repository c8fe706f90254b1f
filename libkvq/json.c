/*
 * json.c — strict recursive-descent JSON reader (RFC 8259) for checkpoint
 * headers; see json.h for what it accepts.  Every error names the input
 * and the byte offset.  Recursion depth is bounded by KVQ_JSON_MAX_DEPTH.
 */
#include "json.h"

#include <errno.h>
#include <stdlib.h>

typedef struct {
    const char *p;
    size_t      n, off;
    const char *what;
} jp;

static kvq_err parse_value(jp *j, kvq_json *v, int depth);

static void skip_ws(jp *j)
{
    while (j->off < j->n && (j->p[j->off] == ' ' || j->p[j->off] == '\t' || j->p[j->off] == '\n' ||
                             j->p[j->off] == '\r'))
        j->off++;
}

static kvq_err fail(jp *j, const char *expected)
{
    if (j->off >= j->n)
        return KVQ_ERROR(KVQ_ERR_CORRUPT, "%s: JSON ends early (at byte %zu), expected %s", j->what, j->off, expected);
    return KVQ_ERROR(KVQ_ERR_CORRUPT, "%s: JSON: expected %s at byte %zu", j->what, expected, j->off);
}

static int peek(jp *j) { return j->off < j->n ? (unsigned char)j->p[j->off] : -1; }

static kvq_err literal(jp *j, const char *word)
{
    size_t k = strlen(word);
    if (j->n - j->off < k || memcmp(j->p + j->off, word, k)) return fail(j, word);
    j->off += k;
    return KVQ_OK;
}

/* ---- strings ------------------------------------------------------------ */
static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static void put_utf8(kvq_buf *b, uint32_t cp)
{
    uint8_t t[4];
    size_t k;
    if (cp < 0x80) t[0] = (uint8_t)cp, k = 1;
    else if (cp < 0x800) t[0] = (uint8_t)(0xC0 | cp >> 6), t[1] = (uint8_t)(0x80 | (cp & 63)), k = 2;
    else if (cp < 0x10000)
        t[0] = (uint8_t)(0xE0 | cp >> 12), t[1] = (uint8_t)(0x80 | ((cp >> 6) & 63)), t[2] = (uint8_t)(0x80 | (cp & 63)),
        k = 3;
    else
        t[0] = (uint8_t)(0xF0 | cp >> 18), t[1] = (uint8_t)(0x80 | ((cp >> 12) & 63)),
        t[2] = (uint8_t)(0x80 | ((cp >> 6) & 63)), t[3] = (uint8_t)(0x80 | (cp & 63)), k = 4;
    (void)kvq_buf_put(b, t, k); /* allocation failure is caught by the caller via b->n */
}

static kvq_err escape(jp *j, kvq_buf *b)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    int c = peek(j);
    const char *e = c > 0 ? strchr(from, c) : NULL;
    if (e) {
        j->off++;
        return kvq_buf_u8(b, (uint8_t)to[e - from]);
    }
    if (c != 'u' || j->n - j->off < 5) return fail(j, "an escape character");
    int u = hex4(j->p + j->off + 1);
    if (u < 0) return fail(j, "4 hex digits");
    j->off += 5;
    uint32_t cp = (uint32_t)u;
    if (u >= 0xD800 && u <= 0xDBFF) { /* high surrogate: a low one must follow */
        int lo = j->n - j->off >= 6 && j->p[j->off] == '\\' && j->p[j->off + 1] == 'u' ? hex4(j->p + j->off + 2) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) return fail(j, "a low surrogate");
        j->off += 6;
        cp = 0x10000 + (((uint32_t)u - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
    } else if (u >= 0xDC00 && u <= 0xDFFF) {
        return fail(j, "no lone low surrogate");
    }
    if (!cp) return fail(j, "no \\u0000 (strings are NUL-terminated)");
    size_t before = b->n;
    put_utf8(b, cp);
    KVQ_FAIL_IF(b->n == before, KVQ_ERR_NOMEM, "out of memory");
    return KVQ_OK;
}

static kvq_err parse_string(jp *j, char **out, size_t *len)
{
    kvq_buf b = {0};
    kvq_err e = KVQ_OK;
    if (peek(j) != '"') return fail(j, "'\"'");
    j->off++;
    for (;;) {
        int c = peek(j);
        if (c < 0) e = fail(j, "'\"'");
        else if (c == '"') break;
        else if (c < 0x20) e = fail(j, "no control characters in strings");
        else if (c == '\\') j->off++, e = escape(j, &b);
        else e = kvq_buf_u8(&b, (uint8_t)c), j->off++;
        if (e) {
            kvq_buf_free(&b);
            return e;
        }
    }
    j->off++;
    *len = b.n;
    e = kvq_buf_u8(&b, 0);
    if (e) {
        kvq_buf_free(&b);
        return e;
    }
    *out = (char *)b.p;
    return KVQ_OK;
}

/* ---- numbers --------------------------------------------------------------- */
static size_t digits(jp *j)
{
    size_t k = 0;
    while (j->off < j->n && j->p[j->off] >= '0' && j->p[j->off] <= '9') j->off++, k++;
    return k;
}

static kvq_err parse_number(jp *j, kvq_json *v)
{
    size_t start = j->off;
    int integral = 1;
    if (peek(j) == '-') j->off++;
    if (peek(j) == '0') j->off++;
    else if (!digits(j)) return fail(j, "a value");
    if (peek(j) == '.') {
        j->off++, integral = 0;
        if (!digits(j)) return fail(j, "digits after '.'");
    }
    if (peek(j) == 'e' || peek(j) == 'E') {
        j->off++, integral = 0;
        if (peek(j) == '+' || peek(j) == '-') j->off++;
        if (!digits(j)) return fail(j, "exponent digits");
    }
    char tmp[64];
    size_t k = j->off - start;
    KVQ_FAIL_IF(k >= sizeof tmp, KVQ_ERR_CORRUPT, "%s: JSON number of %zu characters at byte %zu", j->what, k, start);
    memcpy(tmp, j->p + start, k);
    tmp[k] = '\0';
    v->type = KVQ_JSON_NUMBER;
    v->d = strtod(tmp, NULL);
    if (integral) {
        errno = 0;
        long long ll = strtoll(tmp, NULL, 10);
        v->is_int = errno == 0;
        v->i = ll;
    }
    return KVQ_OK;
}

/* ---- containers --------------------------------------------------------------- */
static kvq_err push(kvq_json *v, size_t *cap, kvq_json **slot)
{
    if (v->n == *cap) {
        size_t nc = *cap ? 2 * *cap : 8;
        kvq_json *it = realloc(v->items, nc * sizeof *it);
        KVQ_FAIL_IF(!it, KVQ_ERR_NOMEM, "out of memory");
        v->items = it;
        *cap = nc;
    }
    *slot = &v->items[v->n];
    memset(*slot, 0, sizeof **slot);
    v->n++;
    return KVQ_OK;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Duplicate keys, found by sorting (n log n: headers may hold 10^5 keys). */
static kvq_err check_unique(jp *j, const kvq_json *v)
{
    if (v->n < 2) return KVQ_OK;
    const char **keys = malloc(v->n * sizeof *keys);
    KVQ_FAIL_IF(!keys, KVQ_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < v->n; i++) keys[i] = v->items[i].key;
    qsort(keys, v->n, sizeof *keys, cmp_key);
    const char *dup = NULL;
    for (size_t i = 1; i < v->n && !dup; i++)
        if (!strcmp(keys[i - 1], keys[i])) dup = keys[i];
    kvq_err e = dup ? KVQ_ERROR(KVQ_ERR_CORRUPT, "%s: JSON object ending at byte %zu has the key \"%.64s\" twice",
                                j->what, j->off, dup)
                    : KVQ_OK;
    free(keys);
    return e;
}

static kvq_err parse_container(jp *j, kvq_json *v, int depth, int is_obj)
{
    size_t cap = 0;
    char close = is_obj ? '}' : ']';
    v->type = is_obj ? KVQ_JSON_OBJECT : KVQ_JSON_ARRAY;
    KVQ_FAIL_IF(depth >= KVQ_JSON_MAX_DEPTH, KVQ_ERR_CORRUPT, "%s: JSON nested deeper than %d at byte %zu", j->what,
                KVQ_JSON_MAX_DEPTH, j->off);
    j->off++;
    skip_ws(j);
    if (peek(j) == close) {
        j->off++;
        return KVQ_OK;
    }
    for (;;) {
        kvq_json *it = NULL;
        skip_ws(j);
        KVQ_TRY(push(v, &cap, &it));
        if (is_obj) {
            size_t at = j->off, len;
            KVQ_TRY(parse_string(j, &it->key, &len));
            KVQ_FAIL_IF(strlen(it->key) != len, KVQ_ERR_CORRUPT, "%s: JSON key with NUL at byte %zu", j->what, at);
            skip_ws(j);
            if (peek(j) != ':') return fail(j, "':'");
            j->off++;
            skip_ws(j);
        }
        KVQ_TRY(parse_value(j, it, depth + 1));
        skip_ws(j);
        if (peek(j) == close) break;
        if (peek(j) != ',') return fail(j, is_obj ? "',' or '}'" : "',' or ']'");
        j->off++;
    }
    j->off++;
    return is_obj ? check_unique(j, v) : KVQ_OK;
}

static kvq_err parse_value(jp *j, kvq_json *v, int depth)
{
    int c = peek(j);
    switch (c) {
    case '{': return parse_container(j, v, depth, 1);
    case '[': return parse_container(j, v, depth, 0);
    case '"': v->type = KVQ_JSON_STRING; return parse_string(j, &v->str, &v->len);
    case 't': v->type = KVQ_JSON_BOOL, v->boolean = 1; return literal(j, "true");
    case 'f': v->type = KVQ_JSON_BOOL; return literal(j, "false");
    case 'n': v->type = KVQ_JSON_NULL; return literal(j, "null");
    default: return parse_number(j, v);
    }
}

static void free_node(kvq_json *v)
{
    for (size_t i = 0; i < v->n; i++) free_node(&v->items[i]);
    free(v->items);
    free(v->str);
    free(v->key);
}

void kvq_json_free(kvq_json *j)
{
    if (!j) return;
    free_node(j);
    free(j);
}

kvq_err kvq_json_parse(const char *text, size_t n, const char *what, kvq_json **out)
{
    jp j = {text, n, 0, what};
    *out = NULL;
    kvq_json *v = calloc(1, sizeof *v);
    KVQ_FAIL_IF(!v, KVQ_ERR_NOMEM, "out of memory");
    skip_ws(&j);
    kvq_err e = parse_value(&j, v, 0);
    skip_ws(&j);
    if (!e && j.off != n) e = fail(&j, "the end of the JSON text");
    if (e) {
        kvq_json_free(v);
        return e;
    }
    *out = v;
    return KVQ_OK;
}

const kvq_json *kvq_json_get(const kvq_json *j, const char *key)
{
    if (!j || j->type != KVQ_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < j->n; i++)
        if (!strcmp(j->items[i].key, key)) return &j->items[i];
    return NULL;
}
