/*
 * bytes.c — [ours] an order-2 PPM byte coder for the word-spelling
 * sections (codebook, escapes), an alternative to LZMA that the block
 * encoder takes when it is smaller (papers/quasicryth.md §11 uses LZMA
 * only).  A list of distinct words has almost no long repeats for LZ77 to
 * find but strong letter-to-letter structure, which a context model of
 * the two previous bytes captures.
 *
 * Model: order 2 (previous two bytes) → order 1 (previous byte, with the
 * order-2 bytes excluded) → order 0 (adaptive over 256 bytes), with the
 * same context lists, learned escapes and update exclusion as the event
 * coder (ac.c).  Deterministic, so decoder and encoder stay in step.
 */
#include "qcx_internal.h"

#include <stdlib.h>

#define O1_CTX   256u     /* contexts of order 1: previous byte      */
#define O2_EXPECT 4096u   /* most order-2 contexts expected at first (grows) */
#define O0_INC   16u      /* order-0 increment                       */
#define O0_LIMIT (1u << 16)
#define ESC_INC  32u      /* escape-model increment                  */
#define ESC_LIMIT (1u << 13)

typedef struct bmodel {
    qcx_ctxmap o2;        /* keyed by the previous two bytes (made on demand) */
    qcx_ctx *o1;
    qcx_small *o0;
    qcx_small *see[2][QCX_SEE_N];
    qcx_excl excl;
    unsigned p1, p2;      /* previous two bytes */
} bmodel;

static void bmodel_free(bmodel *m)
{
    qcx_ctxmap_free(&m->o2);
    for (uint32_t i = 0; m->o1 && i < O1_CTX; i++) qcx_ctx_free(&m->o1[i]);
    free(m->o1);
    free(m->o0);
    for (unsigned i = 0; i < 2 * QCX_SEE_N; i++) free(m->see[i / QCX_SEE_N][i % QCX_SEE_N]);
    qcx_excl_free(&m->excl);
}

/* n: bytes to code (a short input gets a small map) */
static kvq_err bmodel_init(bmodel *m, size_t n_bytes)
{
    memset(m, 0, sizeof *m);
    uint32_t n[QCX_NLEV] = {0, 256};
    m->o1 = calloc(O1_CTX, sizeof *m->o1);
    m->o0 = qcx_small_create(256, O0_INC, O0_LIMIT);
    int ok = m->o1 && m->o0;
    for (unsigned i = 0; i < 2 * QCX_SEE_N; i++)
        ok &= (m->see[i / QCX_SEE_N][i % QCX_SEE_N] = qcx_small_create(2, ESC_INC, ESC_LIMIT)) != NULL;
    kvq_err e = ok ? qcx_excl_init(&m->excl, n) : KVQ_ERROR(KVQ_ERR_NOMEM, "byte models");
    if (e == KVQ_OK) e = qcx_ctxmap_init(&m->o2, n_bytes < O2_EXPECT ? n_bytes : O2_EXPECT);
    if (e != KVQ_OK) bmodel_free(m);
    return e;
}

/* After a byte: learn it (order 1 only if order 2 did not predict it). */
static kvq_err learn(bmodel *m, qcx_ctx *c2, unsigned b, int from_o2)
{
    KVQ_TRY(qcx_ctx_update(c2, QCX_KEY(QCX_LV_UNI, b)));
    if (!from_o2) KVQ_TRY(qcx_ctx_update(&m->o1[m->p1], QCX_KEY(QCX_LV_UNI, b)));
    m->p2 = m->p1;
    m->p1 = b;
    return KVQ_OK;
}

kvq_err qcx_bytes_encode(const uint8_t *p, size_t n, kvq_buf *out)
{
    bmodel m;
    KVQ_TRY(bmodel_init(&m, n));
    qcx_enc e;
    qcx_enc_init(&e);
    kvq_err err = KVQ_OK;
    for (size_t i = 0; i < n && err == KVQ_OK; i++) {
        uint32_t key = QCX_KEY(QCX_LV_UNI, p[i]);
        qcx_ctx *c2 = qcx_ctxmap_get(&m.o2, m.p2 << 8 | m.p1);
        if (!c2) {
            err = KVQ_ERROR(KVQ_ERR_NOMEM, "byte contexts");
            break;
        }
        int hit2 = qcx_ctx_encode(c2, NULL, m.see[0], &e, key);
        if (!hit2) {
            qcx_excl_clear(&m.excl);
            qcx_excl_add(&m.excl, c2);
            if (!qcx_ctx_encode(&m.o1[m.p1], &m.excl, m.see[1], &e, key))
                qcx_small_encode(m.o0, &e, p[i]);
        }
        err = learn(&m, c2, p[i], hit2);
    }
    if (err == KVQ_OK) err = qcx_enc_finish(&e);
    if (err == KVQ_OK) err = kvq_buf_put(out, e.out.p, e.out.n);
    kvq_buf_free(&e.out);
    bmodel_free(&m);
    return err;
}

kvq_err qcx_bytes_decode(const uint8_t *ac, size_t n, uint8_t *dst, size_t raw)
{
    bmodel m;
    KVQ_TRY(bmodel_init(&m, raw));
    qcx_dec d;
    qcx_dec_init(&d, ac, n);
    kvq_err err = KVQ_OK;
    for (size_t i = 0; i < raw && err == KVQ_OK; i++) {
        uint32_t key = 0;
        unsigned b;
        qcx_ctx *c2 = qcx_ctxmap_get(&m.o2, m.p2 << 8 | m.p1);
        if (!c2) {
            err = KVQ_ERROR(KVQ_ERR_NOMEM, "byte contexts");
            break;
        }
        int r = qcx_ctx_decode(c2, NULL, m.see[0], &d, &key), hit2 = r > 0;
        if (r == 0) {
            qcx_excl_clear(&m.excl);
            qcx_excl_add(&m.excl, c2);
            r = qcx_ctx_decode(&m.o1[m.p1], &m.excl, m.see[1], &d, &key);
        }
        if (r < 0) {
            err = KVQ_ERROR(KVQ_ERR_CORRUPT, "byte coder: a context hit with no symbol left");
            break;
        }
        if (r > 0) b = QCX_KEY_IX(key) & 0xFFu;
        else qcx_small_decode(m.o0, &d, &b);
        dst[i] = (uint8_t)b;
        err = learn(&m, c2, b, hit2);
    }
    bmodel_free(&m);
    return err;
}
