/*
 * sampler.c — next-token sampling as llama2.c run.c does it: argmax for
 * temperature 0, else softmax(logits / T) and a coin from run.c's
 * xorshift64* generator, drawn from the full distribution or from the
 * top-p nucleus (run.c sample_topp: candidates below (1-p)/(n-1) are
 * dropped before sorting, the nucleus ends at the first index whose
 * cumulative probability exceeds p).
 *
 * Reproducing run.c: `--seed S` gives the same stream as run.c's
 * `-s S`.  run.c sorts the candidates with qsort and a comparator that
 * leaves equal probabilities unordered; we break those ties by token id
 * (what glibc's merge-sort qsort yields), so results do not depend on the
 * C library.
 */
#include "kvq_internal.h"

#include <math.h>
#include <stdlib.h>

#define XORSHIFT_MULT 0x2545F4914F6CDD1Dull /* xorshift64* multiplier (run.c) */
#define COIN_SCALE    16777216.0f           /* 2^24: random_f32's divisor       */

typedef struct {
    float prob;
    int   index;
} prob_index;

struct kvq_sampler {
    int        vocab_size;
    float      temperature;
    float      topp;
    uint64_t   rng;
    prob_index *cand;        /* [vocab_size] top-p scratch, allocated once */
};

uint32_t kvq_rng_u32(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * XORSHIFT_MULT) >> 32);
}

float kvq_rng_f32(uint64_t *state) { return (float)(kvq_rng_u32(state) >> 8) / COIN_SCALE; }

kvq_err kvq_sampler_create(int vocab_size, float temperature, float topp, uint64_t seed,
                           kvq_sampler **out)
{
    KVQ_FAIL_IF(!out, KVQ_ERR_ARG, "sampler: NULL output");
    *out = NULL;
    KVQ_FAIL_IF(vocab_size < 1, KVQ_ERR_ARG, "sampler: vocab_size %d", vocab_size);
    KVQ_FAIL_IF(!(temperature >= 0.0f) || isinf(temperature), KVQ_ERR_PARAM_RANGE,
                "sampler: temperature %g (need >= 0)", (double)temperature);
    KVQ_FAIL_IF(isnan(topp), KVQ_ERR_PARAM_RANGE, "sampler: top-p is NaN");
    kvq_sampler *s = calloc(1, sizeof *s);
    KVQ_FAIL_IF(!s, KVQ_ERR_NOMEM, "sampler: out of memory");
    s->cand = malloc((size_t)vocab_size * sizeof *s->cand);
    if (!s->cand) {
        free(s);
        return KVQ_ERROR(KVQ_ERR_NOMEM, "sampler: out of memory for %d candidates", vocab_size);
    }
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->topp = topp;
    s->rng = seed;
    *out = s;
    return KVQ_OK;
}

void kvq_sampler_free(kvq_sampler *s)
{
    if (!s) return;
    free(s->cand);
    free(s);
}

static int argmax(const float *p, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (p[i] > p[best]) best = i;     /* strict: lowest index wins ties */
    return best;
}

static void softmax(float *x, int n)
{
    float max = x[0], sum = 0.0f;
    for (int i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

static int sample_mult(const float *p, int n, float coin)
{
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += p[i];
        if (coin < cdf) return i;
    }
    return n - 1;   /* rounding left the cdf below the coin */
}

static int cmp_prob_desc(const void *a, const void *b)
{
    const prob_index *x = a, *y = b;
    if (x->prob > y->prob) return -1;
    if (x->prob < y->prob) return 1;
    return (x->index > y->index) - (x->index < y->index);
}

static int sample_topp(kvq_sampler *s, const float *p, float coin)
{
    int n = s->vocab_size, n0 = 0;
    /* Tokens below this cannot be in the nucleus (run.c's pre-filter). */
    const float cutoff = (1.0f - s->topp) / (float)(n - 1);
    for (int i = 0; i < n; i++)
        if (p[i] >= cutoff) s->cand[n0++] = (prob_index){p[i], i};
    if (n0 == 0) return argmax(p, n);  /* p so small no token passes (run.c reads cand[-1]) */
    qsort(s->cand, (size_t)n0, sizeof *s->cand, cmp_prob_desc);
    float cum = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cum += s->cand[i].prob;
        if (cum > s->topp) {
            last = i;
            break;
        }
    }
    float r = coin * cum, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += s->cand[i].prob;
        if (r < cdf) return s->cand[i].index;
    }
    return s->cand[last].index;
}

int kvq_sampler_sample(kvq_sampler *s, float *logits)
{
    if (s->temperature == 0.0f) return argmax(logits, s->vocab_size);
    for (int i = 0; i < s->vocab_size; i++) logits[i] /= s->temperature;
    softmax(logits, s->vocab_size);
    float coin = kvq_rng_f32(&s->rng);
    if (s->topp <= 0.0f || s->topp >= 1.0f || s->vocab_size < 2)
        return sample_mult(logits, s->vocab_size, coin);
    return sample_topp(s, logits, coin);
}
