/*
 * tokenizer.c — llama2.c's BPE tokenizer: the tokenizer.bin format,
 * encode and decode exactly as karpathy/llama2.c run.c does them
 * (formats-and-engines.md §3.2).
 *
 * File: int32 max_token_length, then per token {f32 score, int32 len, len
 * bytes}.  Pieces are compared as C strings (run.c reads them into
 * NUL-terminated buffers and uses strcmp), so we do the same.
 *
 * Encoding (run.c encode()): optional BOS; a dummy-prefix " " piece when
 * the text is not empty; the text split into UTF-8 code points (at most 4
 * bytes each, continuation bytes beyond that start a new lookup as in
 * run.c), each looked up as a piece or emitted as raw bytes (id byte+3);
 * then, repeatedly, the adjacent pair whose concatenation is the
 * best-scoring piece is merged (lowest position on equal scores; scores
 * must exceed run.c's initial best of -1e10).  run.c rescans every pair
 * after each merge (quadratic); we keep the candidate pairs in a max-heap
 * ordered by (score, position) and drop stale entries when popped, which
 * picks the same pair at every step because merging never reorders the
 * surviving positions.  Reconstructed where run.c is silent: a piece table
 * without " " is an error here (run.c would emit id -1), and byte
 * fallback into an id outside the vocabulary is an error.
 */
#include "kvq_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>

#define RUNC_MIN_SCORE (-1e10f) /* run.c encode(): initial best_score         */
#define BYTE_ID_OFFSET 3        /* run.c: raw byte b is token b + 3           */
#define UTF8_MAX_BYTES 4        /* run.c: code point buffer limit             */
#define MAX_PIECE_LEN  (1 << 20)/* absurd-length guard for one piece (bytes)  */

struct kvq_tokenizer {
    int     vocab_size;
    int     max_len;          /* longest piece (as a C string), bytes  */
    char  **piece;            /* [vocab] NUL-terminated, into `arena`  */
    float  *score;            /* [vocab]                               */
    char   *arena;
    int32_t *slot;            /* open-addressing hash: id or -1        */
    uint32_t mask;            /* slots - 1                             */
    int     space_id;         /* the " " piece, -1 if none             */
    char    byte_piece[256][2];
};

/* ---- lookup: FNV-1a over the C string, linear probing ------------------- */
static uint32_t hash_str(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a offset basis */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u; /* FNV prime */
    return h;
}

static int lookup_n(const kvq_tokenizer *t, const char *s, size_t n)
{
    for (uint32_t h = hash_str(s, n) & t->mask;; h = (h + 1) & t->mask) {
        int32_t id = t->slot[h];
        if (id < 0) return -1;
        const char *p = t->piece[id];
        if (strncmp(p, s, n) == 0 && p[n] == '\0') return id;
    }
}

int kvq_tokenizer_lookup(const kvq_tokenizer *t, const char *piece)
{
    return t && piece ? lookup_n(t, piece, strlen(piece)) : -1;
}

static kvq_err build_hash(kvq_tokenizer *t)
{
    uint32_t n = 16;
    while (n < 2u * (uint32_t)t->vocab_size) n <<= 1;
    t->slot = malloc(n * sizeof *t->slot);
    KVQ_FAIL_IF(!t->slot, KVQ_ERR_NOMEM, "tokenizer: out of memory");
    memset(t->slot, 0xff, n * sizeof *t->slot);
    t->mask = n - 1;
    for (int id = 0; id < t->vocab_size; id++) {
        size_t len = strlen(t->piece[id]);
        if (lookup_n(t, t->piece[id], len) >= 0) continue; /* duplicate: first wins */
        uint32_t h = hash_str(t->piece[id], len) & t->mask;
        while (t->slot[h] >= 0) h = (h + 1) & t->mask;
        t->slot[h] = id;
    }
    t->space_id = lookup_n(t, " ", 1);
    return KVQ_OK;
}

/* ---- loading ------------------------------------------------------------- */
/* Counts the tokens of the file (vocab_size 0) and sizes the arena. */
static kvq_err scan_file(kvq_rd *r, int want, int *count, size_t *arena)
{
    uint32_t len;
    const uint8_t *bytes;
    *count = 0;
    *arena = 0;
    while (r->off < r->n && (want == 0 || *count < want)) {
        KVQ_TRY(kvq_rd_need(r, 8));
        r->off += 4; /* score */
        KVQ_TRY(kvq_rd_u32(r, &len));
        KVQ_FAIL_IF(len > MAX_PIECE_LEN, KVQ_ERR_CORRUPT, "%s: token %d has length %u at byte %zu",
                    r->what, *count, len, r->off - 4);
        KVQ_TRY(kvq_rd_bytes(r, len, &bytes));
        *arena += len + 1;
        KVQ_FAIL_IF(*count == INT32_MAX, KVQ_ERR_CORRUPT, "%s: too many tokens", r->what);
        (*count)++;
    }
    KVQ_FAIL_IF(want > 0 && *count < want, KVQ_ERR_TRUNCATED, "%s: %d tokens, expected %d",
                r->what, *count, want);
    KVQ_FAIL_IF(*count == 0, KVQ_ERR_CORRUPT, "%s: no tokens", r->what);
    return KVQ_OK;
}

static kvq_err fill_tokens(kvq_tokenizer *t, kvq_rd *r)
{
    char *dst = t->arena;
    uint32_t len;
    const uint8_t *bytes;
    for (int id = 0; id < t->vocab_size; id++) {
        KVQ_TRY(kvq_rd_bytes(r, 4, &bytes));
        t->score[id] = kvq_rdf32(bytes);
        KVQ_TRY(kvq_rd_u32(r, &len));
        KVQ_TRY(kvq_rd_bytes(r, len, &bytes));
        memcpy(dst, bytes, len);
        dst[len] = '\0';
        t->piece[id] = dst;
        size_t sl = strlen(dst);
        if ((int)sl > t->max_len) t->max_len = (int)sl;
        dst += len + 1;
    }
    return KVQ_OK;
}

static kvq_err parse(kvq_tokenizer *t, const void *p, size_t n, int vocab_size, const char *what)
{
    kvq_rd r = {p, n, 0, what};
    uint32_t max_token_length;
    int count;
    size_t arena;
    KVQ_FAIL_IF(vocab_size < 0, KVQ_ERR_ARG, "%s: vocab_size %d", what, vocab_size);
    KVQ_TRY(kvq_rd_u32(&r, &max_token_length));
    size_t start = r.off;
    KVQ_TRY(scan_file(&r, vocab_size, &count, &arena));
    t->vocab_size = count;
    t->piece = calloc((size_t)count, sizeof *t->piece);
    t->score = calloc((size_t)count, sizeof *t->score);
    t->arena = malloc(arena ? arena : 1);
    KVQ_FAIL_IF(!t->piece || !t->score || !t->arena, KVQ_ERR_NOMEM, "%s: out of memory", what);
    r.off = start;
    KVQ_TRY(fill_tokens(t, &r));
    for (int b = 0; b < 256; b++) {
        t->byte_piece[b][0] = (char)b;
        t->byte_piece[b][1] = '\0';
    }
    return build_hash(t);
}

kvq_err kvq_tokenizer_from_bytes(const void *p, size_t n, int vocab_size, const char *what,
                                 kvq_tokenizer **out)
{
    KVQ_FAIL_IF(!out || (!p && n), KVQ_ERR_ARG, "tokenizer: NULL argument");
    *out = NULL;
    kvq_tokenizer *t = calloc(1, sizeof *t);
    KVQ_FAIL_IF(!t, KVQ_ERR_NOMEM, "tokenizer: out of memory");
    kvq_err e = parse(t, p, n, vocab_size, what ? what : "tokenizer");
    if (e) {
        kvq_tokenizer_free(t);
        return e;
    }
    *out = t;
    return KVQ_OK;
}

kvq_err kvq_tokenizer_load(const char *path, int vocab_size, kvq_tokenizer **out)
{
    kvq_map m;
    KVQ_FAIL_IF(!path || !out, KVQ_ERR_ARG, "tokenizer: NULL argument");
    KVQ_TRY(kvq_map_open(path, &m));
    kvq_err e = kvq_tokenizer_from_bytes(m.p, m.n, vocab_size, path, out);
    kvq_map_close(&m);
    return e;
}

void kvq_tokenizer_free(kvq_tokenizer *t)
{
    if (!t) return;
    free(t->piece);
    free(t->score);
    free(t->arena);
    free(t->slot);
    free(t);
}

int kvq_tokenizer_vocab_size(const kvq_tokenizer *t) { return t ? t->vocab_size : 0; }

const char *kvq_tokenizer_piece(const kvq_tokenizer *t, int id)
{
    return t && id >= 0 && id < t->vocab_size ? t->piece[id] : NULL;
}

float kvq_tokenizer_score(const kvq_tokenizer *t, int id)
{
    return t && id >= 0 && id < t->vocab_size ? t->score[id] : NAN;
}

/* ---- encode -------------------------------------------------------------- */
size_t kvq_tokenizer_encode_bound(size_t text_len) { return text_len + 3; } /* BOS, " ", EOS */

/* Step 1 of run.c's encode: code points → pieces or raw bytes. */
static kvq_err split_codepoints(const kvq_tokenizer *t, const char *text, int *tok, size_t *n)
{
    char buf[UTF8_MAX_BYTES + 1];
    size_t len = 0;
    for (const char *c = text; *c; c++) {
        if ((*c & 0xC0) != 0x80) len = 0;  /* not a continuation byte: new code point */
        buf[len++] = *c;
        if ((c[1] & 0xC0) == 0x80 && len < UTF8_MAX_BYTES) continue;
        int id = lookup_n(t, buf, len);
        if (id >= 0) {
            tok[(*n)++] = id;
        } else {
            for (size_t i = 0; i < len; i++) {
                int b = (uint8_t)buf[i] + BYTE_ID_OFFSET;
                KVQ_FAIL_IF(b >= t->vocab_size, KVQ_ERR_UNSUPPORTED,
                            "tokenizer: byte 0x%02x needs token %d, vocabulary has %d",
                            (uint8_t)buf[i], b, t->vocab_size);
                tok[(*n)++] = b;
            }
        }
        len = 0;
    }
    return KVQ_OK;
}

typedef struct {
    float score;
    int   pos;      /* left position (index into the initial sequence) */
    int   id;       /* merged piece                                    */
    int   right;    /* right position at push time                     */
    unsigned lv, rv;/* versions of left and right at push time         */
} pair_cand;

typedef struct {
    pair_cand *h;
    size_t n;
} pair_heap;

static int cand_before(const pair_cand *a, const pair_cand *b)
{
    return a->score > b->score || (a->score == b->score && a->pos < b->pos);
}

static void heap_push(pair_heap *hp, pair_cand c)
{
    size_t i = hp->n++;
    while (i > 0 && cand_before(&c, &hp->h[(i - 1) / 2])) {
        hp->h[i] = hp->h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    hp->h[i] = c;
}

static pair_cand heap_pop(pair_heap *hp)
{
    pair_cand top = hp->h[0], last = hp->h[--hp->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= hp->n) break;
        if (c + 1 < hp->n && cand_before(&hp->h[c + 1], &hp->h[c])) c++;
        if (!cand_before(&hp->h[c], &last)) break;
        hp->h[i] = hp->h[c];
        i = c;
    }
    if (hp->n) hp->h[i] = last;
    return top;
}

typedef struct {
    const kvq_tokenizer *t;
    int *tok, *next, *prev;
    unsigned *ver;
    char *cat;          /* concatenation scratch, 2·max_len + 1 */
    pair_heap heap;
} merge_state;

static void consider(merge_state *s, int l)
{
    if (l < 0 || s->next[l] < 0) return;
    int r = s->next[l];
    const char *a = s->t->piece[s->tok[l]], *b = s->t->piece[s->tok[r]];
    size_t la = strlen(a), lb = strlen(b);
    memcpy(s->cat, a, la);
    memcpy(s->cat + la, b, lb);
    int id = lookup_n(s->t, s->cat, la + lb);
    if (id < 0 || !(s->t->score[id] > RUNC_MIN_SCORE)) return;
    pair_cand c = {s->t->score[id], l, id, r, s->ver[l], s->ver[r]};
    heap_push(&s->heap, c);
}

/* Step 2: merge best pairs until none is in the vocabulary. */
static void merge_pairs(merge_state *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        s->next[i] = i + 1 < n ? (int)i + 1 : -1;
        s->prev[i] = (int)i - 1;
        s->ver[i] = 0;
    }
    for (size_t i = 0; i + 1 < n; i++) consider(s, (int)i);
    while (s->heap.n) {
        pair_cand c = heap_pop(&s->heap);
        if (s->ver[c.pos] != c.lv || s->next[c.pos] != c.right || s->ver[c.right] != c.rv) continue;
        s->tok[c.pos] = c.id;
        s->ver[c.pos]++;
        s->ver[c.right]++;          /* the right position dies */
        s->next[c.pos] = s->next[c.right];
        if (s->next[c.pos] >= 0) s->prev[s->next[c.pos]] = c.pos;
        if (s->prev[c.pos] >= 0) consider(s, s->prev[c.pos]);
        consider(s, c.pos);
    }
}

static kvq_err merge_and_emit(const kvq_tokenizer *t, int *tok, size_t *n)
{
    size_t cnt = *n;
    merge_state s = {t, tok, NULL, NULL, NULL, NULL, {NULL, 0}};
    s.next = malloc(cnt * sizeof *s.next);
    s.prev = malloc(cnt * sizeof *s.prev);
    s.ver = malloc(cnt * sizeof *s.ver);
    s.cat = malloc(2 * (size_t)t->max_len + 1);
    /* Each merge pushes at most 2 candidates and there are < cnt merges. */
    s.heap.h = malloc(3 * cnt * sizeof *s.heap.h);
    kvq_err e = KVQ_OK;
    if (!s.next || !s.prev || !s.ver || !s.cat || !s.heap.h) {
        e = KVQ_ERROR(KVQ_ERR_NOMEM, "tokenizer: out of memory encoding %zu tokens", cnt);
    } else {
        merge_pairs(&s, cnt);
        size_t o = 0;
        for (int i = 0; i >= 0; i = s.next[i]) tok[o++] = tok[i];
        *n = o;
    }
    free(s.next);
    free(s.prev);
    free(s.ver);
    free(s.cat);
    free(s.heap.h);
    return e;
}

kvq_err kvq_tokenizer_encode(const kvq_tokenizer *t, const char *text, int bos, int eos,
                             int *tokens, size_t cap, size_t *n)
{
    KVQ_FAIL_IF(!t || !text || !tokens || !n, KVQ_ERR_ARG, "tokenizer_encode: NULL argument");
    size_t len = strlen(text);
    KVQ_FAIL_IF(cap < kvq_tokenizer_encode_bound(len), KVQ_ERR_DST_TOO_SMALL,
                "tokenizer_encode: %zu slots for %zu bytes of text (need %zu)", cap, len,
                kvq_tokenizer_encode_bound(len));
    KVQ_FAIL_IF(t->vocab_size <= KVQ_TOKEN_EOS, KVQ_ERR_UNSUPPORTED,
                "tokenizer: %d tokens, no BOS/EOS", t->vocab_size);
    size_t cnt = 0;
    if (bos) tokens[cnt++] = KVQ_TOKEN_BOS;
    if (text[0]) {
        KVQ_FAIL_IF(t->space_id < 0, KVQ_ERR_UNSUPPORTED, "tokenizer: no \" \" piece for the dummy prefix");
        tokens[cnt++] = t->space_id;
    }
    KVQ_TRY(split_codepoints(t, text, tokens, &cnt));
    if (cnt > 1) KVQ_TRY(merge_and_emit(t, tokens, &cnt));
    if (eos) tokens[cnt++] = KVQ_TOKEN_EOS;
    *n = cnt;
    return KVQ_OK;
}

/* ---- decode -------------------------------------------------------------- */
static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

const char *kvq_tokenizer_decode(const kvq_tokenizer *t, int prev, int token)
{
    if (!t || token < 0 || token >= t->vocab_size) return NULL;
    const char *piece = t->piece[token];
    /* After BOS, sentencepiece strips the leading space (run.c, PR #89). */
    if (prev == KVQ_TOKEN_BOS && piece[0] == ' ') piece++;
    /* run.c: sscanf(piece, "<0x%02hhX>") == 1 → that raw byte; the match
     * succeeds on "<0x" and one or two hex digits. */
    if (strncmp(piece, "<0x", 3) == 0 && hex_val(piece[3]) >= 0) {
        int v = hex_val(piece[3]);
        if (hex_val(piece[4]) >= 0) v = v * 16 + hex_val(piece[4]);
        return t->byte_piece[v];
    }
    return piece;
}

int kvq_piece_is_safe(const char *piece)
{
    if (!piece || !piece[0]) return 0;
    if (!piece[1]) {
        unsigned char b = (unsigned char)piece[0];
        return isprint(b) || isspace(b);
    }
    return 1;
}
