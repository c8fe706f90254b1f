/*
 * decoder_fixture.h — shared by test_decoder.c and test_transform.c: a
 * small random Llama model written as a llama2.c v0 image (loaded with
 * kvq_model_load_memory), and a naive run.c-style forward pass in double
 * precision to check the decoder against.  Header-only (static functions)
 * because each test is its own binary.
 */
#ifndef KVQ_TEST_DECODER_FIXTURE_H
#define KVQ_TEST_DECODER_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvq.h"

#define FX_DIM    64
#define FX_HIDDEN 96
#define FX_LAYERS 2
#define FX_HEADS  4
#define FX_KV     2
#define FX_VOCAB  64
#define FX_SEQ    32
#define FX_HS     (FX_DIM / FX_HEADS)
#define FX_KVDIM  (FX_KV * FX_HS)

typedef struct {
    uint8_t *image;   /* the v0 file image; must outlive the model */
    size_t   size;
    kvq_model *model;
} fx_model;

static uint64_t fx_rng = 0x9E3779B97F4A7C15ull;
static inline float fx_rand(void) /* uniform in [-1, 1) */
{
    fx_rng ^= fx_rng << 13;
    fx_rng ^= fx_rng >> 7;
    fx_rng ^= fx_rng << 17;
    return (float)((fx_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static inline float *fx_fill(float *p, size_t n, float scale, float offset)
{
    for (size_t i = 0; i < n; i++) p[i] = offset + scale * fx_rand();
    return p + n;
}

/* Random weights, untied classifier when `untied` (negative vocab in the
 * header, llama2.c's convention). */
static inline kvq_err fx_make(fx_model *fx, int untied, uint64_t seed)
{
    size_t L = FX_LAYERS, D = FX_DIM, H = FX_HIDDEN, KV = FX_KVDIM, V = FX_VOCAB;
    size_t floats = V * D + L * D + L * D * D + 2 * L * KV * D + L * D * D + L * D + 3 * L * H * D + D +
                    (size_t)FX_SEQ * FX_HS + (untied ? V * D : 0);
    fx_rng = seed | 1;
    fx->size = 28 + 4 * floats;
    fx->image = malloc(fx->size);
    int32_t hdr[7] = {FX_DIM, FX_HIDDEN, FX_LAYERS, FX_HEADS, FX_KV, untied ? -FX_VOCAB : FX_VOCAB, FX_SEQ};
    memcpy(fx->image, hdr, sizeof hdr);
    float *f = (float *)(void *)(fx->image + 28), wscale = 1.0f / sqrtf((float)D);
    f = fx_fill(f, V * D, 1.0f, 0.0f);              /* embedding           */
    f = fx_fill(f, L * D, 0.2f, 1.0f);              /* attention norms     */
    f = fx_fill(f, L * D * D, wscale, 0.0f);        /* wq                  */
    f = fx_fill(f, 2 * L * KV * D, wscale, 0.0f);   /* wk, wv              */
    f = fx_fill(f, L * D * D, wscale, 0.0f);        /* wo                  */
    f = fx_fill(f, L * D, 0.2f, 1.0f);              /* ffn norms           */
    f = fx_fill(f, 3 * L * H * D, wscale, 0.0f);    /* w1, w2, w3          */
    f = fx_fill(f, D, 0.2f, 1.0f);                  /* final norm          */
    f = fx_fill(f, (size_t)FX_SEQ * FX_HS, 0.0f, 0.0f); /* legacy RoPE tables */
    if (untied) fx_fill(f, V * D, wscale, 0.0f);
    return kvq_model_load_memory(fx->image, fx->size, "fixture.bin", &fx->model);
}

static inline void fx_free(fx_model *fx)
{
    kvq_model_free(fx->model);
    free(fx->image);
}

/* fx_reload() : save m as `fmt` in a fresh temp directory and load it
 * back (safetensors stores Q/K in HF order, so it loads with rope = HALF).
 * The file is removed before returning; the model does not need it
 * (weights are read, or mapped and kept, by the reader). */
static inline kvq_err fx_reload(const kvq_model *m, kvq_format fmt, const char *ext, kvq_model **out)
{
    char dir[] = "/tmp/kvq-fx-XXXXXX", path[64];
    if (!mkdtemp(dir)) return KVQ_ERR_IO;
    snprintf(path, sizeof path, "%s/model.%s", dir, ext);
    kvq_err e = kvq_model_save(m, path, fmt, 0);
    if (!e) e = kvq_model_load(path, out);
    remove(path);
    rmdir(dir);
    return e;
}

/* ---- naive reference: run.c's forward in double, weights via kvq_weight_rows */
typedef struct {
    const kvq_model *m;
    double kc[FX_LAYERS][FX_SEQ][FX_KVDIM], vc[FX_LAYERS][FX_SEQ][FX_KVDIM];
} fx_ref;

static inline void fx_row(const kvq_model *m, const char *name, int r0, int r1, float *out)
{
    const kvq_weight *w = kvq_model_weight(m, name);
    if (!w) w = kvq_model_weight(m, "token_embd.weight");
    kvq_weight_rows(w, r0, r1, out);
}

static inline void fx_lin(const kvq_model *m, const char *name, const double *x, int in, int out, double *y)
{
    float *w = malloc((size_t)in * (size_t)out * sizeof *w);
    fx_row(m, name, 0, out, w);
    for (int i = 0; i < out; i++) {
        double s = 0;
        for (int j = 0; j < in; j++) s += (double)w[(size_t)i * (size_t)in + (size_t)j] * x[j];
        y[i] = s;
    }
    free(w);
}

static inline void fx_norm(const kvq_model *m, const char *name, const double *x, double *o)
{
    float w[FX_DIM];
    double ss = 0;
    fx_row(m, name, 0, 1, w);
    for (int i = 0; i < FX_DIM; i++) ss += x[i] * x[i];
    ss = 1.0 / sqrt(ss / FX_DIM + 1e-5);
    for (int i = 0; i < FX_DIM; i++) o[i] = w[i] * ss * x[i];
}

static inline void fx_rope(double *v, int n_heads, int pos)
{
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < FX_HS / 2; j++) {
            double a = pos * pow(10000.0, -2.0 * j / FX_HS), c = cos(a), s = sin(a);
            double *p = v + h * FX_HS + 2 * j, v0 = p[0], v1 = p[1];
            p[0] = v0 * c - v1 * s;
            p[1] = v0 * s + v1 * c;
        }
}

static inline void fx_attend(fx_ref *r, int l, const double *q, int pos, double *out)
{
    for (int h = 0; h < FX_HEADS; h++) {
        double att[FX_SEQ], mx = -INFINITY, sum = 0;
        const int g = h / (FX_HEADS / FX_KV);
        for (int t = 0; t <= pos; t++) {
            double s = 0;
            for (int i = 0; i < FX_HS; i++) s += q[h * FX_HS + i] * r->kc[l][t][g * FX_HS + i];
            att[t] = s / sqrt((double)FX_HS);
            mx = att[t] > mx ? att[t] : mx;
        }
        for (int t = 0; t <= pos; t++) sum += att[t] = exp(att[t] - mx);
        for (int i = 0; i < FX_HS; i++) {
            double o = 0;
            for (int t = 0; t <= pos; t++) o += att[t] / sum * r->vc[l][t][g * FX_HS + i];
            out[h * FX_HS + i] = o;
        }
    }
}

static inline void fx_ref_forward(fx_ref *r, int token, int pos, double *logits)
{
    double x[FX_DIM], xb[FX_DIM], xb2[FX_DIM], q[FX_DIM], hb[FX_HIDDEN], hb2[FX_HIDDEN];
    float e[FX_DIM];
    char n[64];
    fx_row(r->m, "token_embd.weight", token, token + 1, e);
    for (int i = 0; i < FX_DIM; i++) x[i] = e[i];
#define FXN(s) (snprintf(n, sizeof n, "blk.%d.%s.weight", l, s), n)
    for (int l = 0; l < FX_LAYERS; l++) {
        fx_norm(r->m, FXN("attn_norm"), x, xb);
        fx_lin(r->m, FXN("attn_q"), xb, FX_DIM, FX_DIM, q);
        fx_lin(r->m, FXN("attn_k"), xb, FX_DIM, FX_KVDIM, r->kc[l][pos]);
        fx_lin(r->m, FXN("attn_v"), xb, FX_DIM, FX_KVDIM, r->vc[l][pos]);
        fx_rope(q, FX_HEADS, pos);
        fx_rope(r->kc[l][pos], FX_KV, pos);
        fx_attend(r, l, q, pos, xb);
        fx_lin(r->m, FXN("attn_output"), xb, FX_DIM, FX_DIM, xb2);
        for (int i = 0; i < FX_DIM; i++) x[i] += xb2[i];
        fx_norm(r->m, FXN("ffn_norm"), x, xb);
        fx_lin(r->m, FXN("ffn_gate"), xb, FX_DIM, FX_HIDDEN, hb);
        fx_lin(r->m, FXN("ffn_up"), xb, FX_DIM, FX_HIDDEN, hb2);
        for (int i = 0; i < FX_HIDDEN; i++) hb[i] = hb[i] / (1.0 + exp(-hb[i])) * hb2[i];
        fx_lin(r->m, FXN("ffn_down"), hb, FX_HIDDEN, FX_DIM, xb2);
        for (int i = 0; i < FX_DIM; i++) x[i] += xb2[i];
    }
#undef FXN
    fx_norm(r->m, "output_norm.weight", x, xb);
    fx_lin(r->m, "output.weight", xb, FX_DIM, FX_VOCAB, logits);
}

/* max |a - b| / max |b| over n values */
static inline double fx_rel_err(const float *a, const float *b, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]), m = fabs((double)b[i]);
        num = d > num ? d : num;
        den = m > den ? m : den;
    }
    return den > 0 ? num / den : num;
}

#endif /* KVQ_TEST_DECODER_FIXTURE_H */
