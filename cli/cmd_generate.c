/*
 * cmd_generate.c — `kvq generate`: text generation with the reference
 * decoder, printing exactly what llama2.c run.c prints (generate()):
 * the prompt's tokens are echoed as they are forced, every piece passes
 * run.c's safe_printf filter, generation stops at BOS or after N steps,
 * then one "\n" ends stdout.  The "achieved tok/s" line goes to stderr,
 * so stdout is byte-for-byte run.c's stdout for the same model, prompt,
 * temperature, top-p and seed.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_STEPS 256      /* run.c's default -n                        */
#define DEFAULT_TEMP  1.0f     /* run.c's default -t                        */
#define DEFAULT_TOPP  0.9f     /* run.c's default -p (top-p)                */
#define DEFAULT_KV_WINDOW 64   /* f32 recent tokens when a KV codec is set  */
#define DEFAULT_KV_PAGE   32   /* tokens per encoded KV page                */
#define MAX_THREADS 256

typedef struct {
    const char *model, *tok, *prompt, *kv_k, *kv_v;
    long steps, threads, kv_window, kv_page;
    float temp, topp;
    unsigned long long seed;
} gen_args;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kvq generate MODEL [options]\n"
            "  -z FILE         tokenizer.bin (default: the model's own, or tokenizer.bin /\n"
            "                  tok<vocab>.bin beside a llama2.c checkpoint)\n"
            "  -p TEXT         prompt (default empty)\n"
            "  -n N            steps, prompt included (default 256; 0 = seq_len)\n"
            "  -t T            temperature (default 1.0; 0 = greedy)\n"
            "  --top-p P       nucleus sampling threshold (default 0.9)\n"
            "  --seed S        RNG seed (default: time), as run.c -s\n"
            "  --threads N     matmul threads (default 1)\n"
            "  --kv-k SPEC     codec for K cache pages (default f32, exact)\n"
            "  --kv-v SPEC     codec for V cache pages\n"
            "  --kv-window W   f32 recent tokens when a KV codec is set (default %d)\n"
            "  --kv-page P     tokens per encoded page (default %d)\n"
            "stdout is exactly llama2.c run.c's; tok/s goes to stderr.\n",
            DEFAULT_KV_WINDOW, DEFAULT_KV_PAGE);
}

static int parse_float(const char *s, float *out)
{
    char *end;
    float v = strtof(s, &end);
    if (!*s || *end) return -1;
    *out = v;
    return 0;
}

/* Returns -1 to continue, else an exit code. */
static int parse_args(int argc, char **argv, gen_args *a)
{
    *a = (gen_args){.steps = DEFAULT_STEPS, .threads = 1, .kv_window = DEFAULT_KV_WINDOW,
                    .kv_page = DEFAULT_KV_PAGE, .temp = DEFAULT_TEMP, .topp = DEFAULT_TOPP};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (o[0] != '-' || !o[1]) {
            if (a->model) return cli_usage_error("generate", "more than one MODEL ('%s')", o);
            a->model = o;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("generate", "option %s needs a value", o);
        const char *v = argv[++i];
        long seed;
        int bad = 0;
        if (!strcmp(o, "-z")) a->tok = v;
        else if (!strcmp(o, "-p")) a->prompt = v;
        else if (!strcmp(o, "-n")) bad = cli_parse_int(v, 0, 1L << 30, &a->steps);
        else if (!strcmp(o, "-t")) bad = parse_float(v, &a->temp);
        else if (!strcmp(o, "--top-p")) bad = parse_float(v, &a->topp);
        else if (!strcmp(o, "--seed")) bad = cli_parse_int(v, 0, 0x7fffffffffffffffL, &seed), a->seed = (unsigned long long)seed;
        else if (!strcmp(o, "--threads")) bad = cli_parse_int(v, 1, MAX_THREADS, &a->threads);
        else if (!strcmp(o, "--kv-k")) a->kv_k = v;
        else if (!strcmp(o, "--kv-v")) a->kv_v = v;
        else if (!strcmp(o, "--kv-window")) bad = cli_parse_int(v, 0, 1L << 30, &a->kv_window);
        else if (!strcmp(o, "--kv-page")) bad = cli_parse_int(v, 1, 1L << 30, &a->kv_page);
        else return cli_usage_error("generate", "unknown option %s", o);
        if (bad) return cli_usage_error("generate", "bad value '%s' for %s", v, o);
    }
    if (!a->model) return cli_usage_error("generate", "no MODEL given");
    /* run.c's clamps: negative temperature → 0, top-p outside [0, 1] → 0.9. */
    if (a->temp < 0.0f) a->temp = 0.0f;
    if (a->topp < 0.0f || a->topp > 1.0f) a->topp = DEFAULT_TOPP;
    if (a->seed == 0) a->seed = (unsigned long long)time(NULL);
    return -1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct {
    kvq_model *model;
    kvq_tokenizer *tok;
    kvq_sampler *sampler;
    kvq_decoder *dec;
    int *prompt;
    size_t n_prompt;
} gen_state;

static void state_free(gen_state *s)
{
    kvq_decoder_free(s->dec);
    kvq_sampler_free(s->sampler);
    kvq_tokenizer_free(s->tok);
    kvq_model_free(s->model);
    free(s->prompt);
}

static int open_all(const gen_args *a, gen_state *s)
{
    kvq_err e = kvq_model_load(a->model, &s->model);
    if (e) return cli_error(a->model, e);
    const kvq_model_config *c = kvq_model_config_get(s->model);
    if (a->tok) {
        e = kvq_tokenizer_load(a->tok, c->vocab_size, &s->tok);
        if (e) return cli_error(a->tok, e);
    } else {
        size_t n;
        const void *p = kvq_model_tokenizer(s->model, &n);
        if (!p) return cli_usage_error("generate", "%s has no tokenizer; give one with -z", a->model);
        e = kvq_tokenizer_from_bytes(p, n, c->vocab_size, a->model, &s->tok);
        if (e) return cli_error(a->model, e);
    }
    e = kvq_sampler_create(c->vocab_size, a->temp, a->topp, a->seed, &s->sampler);
    if (e) return cli_error("sampler", e);
    kvq_decoder_opts o;
    kvq_decoder_opts_init(&o);
    o.threads = (int)a->threads;
    kvq_cache_config cc = kvq_cache_config_default(c->n_layers, c->n_kv_heads, c->head_size, c->seq_len);
    if (a->kv_k || a->kv_v) {
        cc.k_spec = a->kv_k;
        cc.v_spec = a->kv_v;
        cc.window = (int)a->kv_window;
        cc.page = (int)a->kv_page;
    }
    o.cache_cfg = &cc;
    e = kvq_decoder_create(s->model, &o, &s->dec);
    if (e) return cli_error(a->model, e);
    const char *text = a->prompt ? a->prompt : "";
    size_t cap = kvq_tokenizer_encode_bound(strlen(text));
    s->prompt = malloc(cap * sizeof *s->prompt);
    if (!s->prompt) return cli_error("prompt", KVQ_ERR_NOMEM);
    e = kvq_tokenizer_encode(s->tok, text, 1, 0, s->prompt, cap, &s->n_prompt);
    if (e) return cli_error("prompt", e);
    return CLI_EXIT_OK;
}

/* run.c generate(): returns an exit code. */
static int generate(gen_state *s, long steps)
{
    int token = s->prompt[0], next, pos = 0;
    double start = 0;
    while (pos < steps) {
        float *logits;
        kvq_err e = kvq_decoder_forward(s->dec, token, pos, &logits);
        if (e) return cli_error("forward", e);
        if ((size_t)pos + 1 < s->n_prompt) next = s->prompt[pos + 1];
        else next = kvq_sampler_sample(s->sampler, logits);
        pos++;
        if (next == KVQ_TOKEN_BOS) break;   /* BOS delimits sequences */
        const char *piece = kvq_tokenizer_decode(s->tok, token, next);
        if (kvq_piece_is_safe(piece)) fputs(piece, stdout);
        fflush(stdout);
        token = next;
        if (start == 0) start = now_ms();   /* the first step is slower */
    }
    printf("\n");
    if (pos > 1) fprintf(stderr, "achieved tok/s: %f\n", (pos - 1) / (now_ms() - start) * 1000.0);
    return CLI_EXIT_OK;
}

/* With KV codecs: what the cache (or a Mamba-2 state) holds, measured (stderr). */
static void print_kv_stats(const gen_state *s)
{
    size_t ssm = kvq_decoder_ssm_state_bytes(s->dec);
    if (ssm) { /* Mamba-2: a fixed-size recurrent state instead of K/V */
        fprintf(stderr, "ssm state: %zu bytes (f32 conv windows + SSM states)\n", ssm);
        return;
    }
    kvq_cache_stats st;
    if (kvq_cache_stats_get(kvq_decoder_cache(s->dec), &st) != KVQ_OK) return;
    fprintf(stderr, "kv cache: %llu tokens x layers, %llu bytes (payload %llu, window %llu, meta %llu), "
                    "%.3f bits/value\n",
            (unsigned long long)st.tokens, (unsigned long long)st.bytes_total,
            (unsigned long long)st.bytes_payload, (unsigned long long)st.bytes_window,
            (unsigned long long)st.bytes_meta, st.bits_per_value);
}

int kvq_cmd_generate(int argc, char **argv)
{
    gen_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    gen_state s = {0};
    rc = open_all(&a, &s);
    if (rc == CLI_EXIT_OK) {
        int seq = kvq_model_config_get(s.model)->seq_len;
        long steps = a.steps == 0 || a.steps > seq ? seq : a.steps;
        rc = generate(&s, steps);
        if (rc == CLI_EXIT_OK && (a.kv_k || a.kv_v)) print_kv_stats(&s);
    }
    state_free(&s);
    return rc;
}
