/*
 * fp_nupes_rounds_obj.c — what LLM-FP4's alternating rounds (quant/fp_joint.c)
 * do per linear input of a real model (docs/results/fp-nupes.md "The
 * paper's three rounds"): for each site the layer-output objective at the
 * start (one round: weights on f32 X, ρ by activation error) and after
 * each weight / activation step, the formats chosen, and the time.  Uses
 * the first TOKENS tokens of the calibration text, as `kvq report --calib
 * ... --calib-tokens TOKENS` does.
 *
 *   cc -O2 -I. -Ilibkvq scripts/fp_nupes_rounds_obj.c build/libkvq.a -lzstd -llzma -lm -lpthread -o /tmp/rounds_obj
 *   /tmp/rounds_obj MODEL TOKENIZER CALIB_TEXT TOKENS ROUNDS PERSHIFT AFMT
 *   (AFMT: fp format index of the activations, 0 = E2M1, 4 = E4M3)
 */
#define _POSIX_C_SOURCE 200809L
#include "kvq.h"
#include "kvq_internal.h"
#include "quant/fp_joint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TEXT_MAX (1 << 20) /* bytes of calibration text read: far more than TOKENS need */

static const char *const fmt_name[8] = {"E2M1", "E3M0", "E1M2", "E5M2", "E4M3", "E3M4", "E2M5", "E1M6"};
static const char *const site_name[5] = {"qkv", "o", "gate/up", "down", "cls"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static kvq_calib *load_calib(const kvq_model *m, const char *tok_path, const char *text_path, int tokens)
{
    kvq_tokenizer *t = NULL;
    char *text = calloc(TEXT_MAX + 1, 1);
    FILE *f = fopen(text_path, "rb");
    if (!text || !f || kvq_tokenizer_load(tok_path, kvq_model_config_get(m)->vocab_size, &t)) return NULL;
    size_t len = fread(text, 1, TEXT_MAX, f), cap = kvq_tokenizer_encode_bound(len), n = 0;
    fclose(f);
    int *ids = malloc(cap * sizeof *ids);
    kvq_calib *c = NULL;
    if (ids && !kvq_tokenizer_encode(t, text, 1, 0, ids, cap, &n)) kvq_calib_create(m, ids, n, tokens, 1, &c);
    free(ids), free(text);
    kvq_tokenizer_free(t);
    return c;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: %s MODEL TOKENIZER CALIB_TEXT TOKENS ROUNDS PERSHIFT AFMT\n", argv[0]);
        return 2;
    }
    kvq_model *m = NULL;
    if (kvq_model_load(argv[1], &m)) return fprintf(stderr, "%s\n", kvq_last_error_detail()), 1;
    kvq_calib *cal = load_calib(m, argv[2], argv[3], atoi(argv[4]));
    if (!cal) return fprintf(stderr, "calibration failed: %s\n", kvq_last_error_detail()), 1;
    int afmt = atoi(argv[7]), four = afmt <= 2;
    kvq_fpj_opts o = {.rounds = atoi(argv[5]), .w_fmt0 = 0, .w_lo = 0, .w_hi = 2, .a_fmt0 = afmt,
                      .a_lo = four ? 0 : 3, .a_hi = four ? 2 : 7, .pershift = atoi(argv[6]),
                      .w_tie = KVQ_TIE_EVEN, .a_tie = KVQ_TIE_EVEN};
    const kvq_model_config *cfg = kvq_model_config_get(m);
    double total = 0, t_all = 0, s0 = 0, s1 = 0;
    for (int l = 0; l <= cfg->n_layers; l++)
        for (int w = 0; w < 5; w++) {
            if ((l < cfg->n_layers) == (w == KVQ_LIN_CLS)) continue;
            size_t idx[4];
            int k = 0;
            for (size_t i = 0; i < kvq_model_n_weights(m) && k < 4; i++) {
                int wl;
                kvq_linear ww;
                if (!kvq_calib_weight_slot(cfg, kvq_model_weight_at(m, i)->name, &wl, &ww) && wl == l && (int)ww == w)
                    idx[k++] = i;
            }
            kvq_tensor x;
            if (!k || kvq_calib_input(cal, l, (kvq_linear)w, &x)) continue;
            int64_t n = kvq_shape_cols(&x.shape), seg[4], rows = 0;
            for (int s = 0; s < k; s++) seg[s] = rows += kvq_shape_rows(&kvq_model_weight_at(m, idx[s])->shape);
            float *W = malloc((size_t)(rows * n) * sizeof *W);
            for (int s = 0; s < k; s++)
                kvq_weight_rows(kvq_model_weight_at(m, idx[s]), 0, seg[s] - (s ? seg[s - 1] : 0), W + (s ? seg[s - 1] : 0) * n);
            kvq_fpj_result r;
            double t0 = now_s();
            if (kvq_fpj_search(x.data, kvq_shape_rows(&x.shape), n, W, rows, seg, k, &o, &r))
                return fprintf(stderr, "%s\n", kvq_last_error_detail()), 1;
            double dt = now_s() - t0;
            printf("layer %d %-7s %4lld x %3lld  %6.2f s  objective", l, site_name[w], (long long)rows, (long long)n, dt);
            for (int i = 0; i < r.n_obj; i++) printf(" %.4g", r.obj[i]);
            printf("  (start/final %.3fx)  weights", r.obj[0] / r.obj[r.n_obj - 1]);
            for (int s = 0; s < k; s++) printf(" %s", fmt_name[r.w_fmt[s]]);
            printf("  act %s\n", fmt_name[r.a_fmt]);
            s0 += r.obj[0], s1 += r.obj[r.n_obj - 1], t_all += dt, total++;
            kvq_fpj_result_free(&r);
            free(W);
        }
    printf("%g sites: summed objective start %.6g final %.6g (%.3fx), search %.1f s\n", total, s0, s1, s0 / s1, t_all);
    kvq_calib_free(cal);
    kvq_model_free(m);
    return 0;
}
