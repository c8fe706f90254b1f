/*
 * json.h — a small strict JSON reader for checkpoint headers (safetensors
 * headers, model.safetensors.index.json, Hugging Face config.json).
 *
 * RFC 8259 grammar, nothing more: no comments, no trailing commas, no NaN;
 * duplicate keys in an object are an error (safetensors requires it);
 * nesting is limited (KVQ_JSON_MAX_DEPTH) so hostile input cannot exhaust
 * the stack; strings are decoded to UTF-8 and may not contain U+0000.
 * The document is one allocation tree owned by the root: kvq_json_free().
 */
#ifndef KVQ_JSON_H
#define KVQ_JSON_H

#include "kvq_internal.h"

#define KVQ_JSON_MAX_DEPTH 32

typedef enum {
    KVQ_JSON_NULL, KVQ_JSON_BOOL, KVQ_JSON_NUMBER, KVQ_JSON_STRING, KVQ_JSON_ARRAY, KVQ_JSON_OBJECT
} kvq_json_type;

typedef struct kvq_json {
    kvq_json_type    type;
    int              boolean;  /* KVQ_JSON_BOOL                                  */
    int              is_int;   /* number written as an integer that fits int64  */
    int64_t          i;        /* its value when is_int                         */
    double           d;        /* every number as a double                      */
    char            *str;      /* KVQ_JSON_STRING: decoded, NUL-terminated      */
    size_t           len;      /* string bytes                                  */
    char            *key;      /* member name when inside an object, else NULL  */
    struct kvq_json *items;    /* ARRAY/OBJECT: n children, in document order   */
    size_t           n;
} kvq_json;

/* kvq_json_parse() : parse text[0..n) (one value, surrounding whitespace
 * allowed).  `what` names the input in errors ("model.safetensors: header
 * JSON: expected ':' at byte 17").  Free with kvq_json_free(). */
kvq_err kvq_json_parse(const char *text, size_t n, const char *what, kvq_json **out);
void kvq_json_free(kvq_json *j);
/* kvq_json_get() : member of an object by key; NULL if absent or j is not
 * an object. */
const kvq_json *kvq_json_get(const kvq_json *j, const char *key);

#endif /* KVQ_JSON_H */
