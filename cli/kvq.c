/*
 * kvq.c — `kvq`, the command line of libkvq: a table of subcommands, each in
 * its own cmd_*.c, plus the helpers they share.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} subcommand;

static const subcommand commands[] = {
    {"codecs", kvq_cmd_codecs, "list codecs: domains, parameters and ranges, bits/value"},
    {"quantize", kvq_cmd_quantize, "quantize a checkpoint: IN OUT --codec SPEC [--tensor REGEX=SPEC]..."},
    {"inspect", kvq_cmd_inspect, "show a checkpoint: format, config, metadata, tensor table"},
    {"export", kvq_cmd_export, "rewrite a checkpoint as GGUF, safetensors or .kvq"},
    {"generate", kvq_cmd_generate, "generate text with the reference decoder (llama2.c run.c output)"},
    {"eval", kvq_cmd_eval, "KL divergence / PPL of a candidate vs the f32 model (llama-perplexity)"},
    {"report", kvq_cmd_report, "evaluate a grid of specs: report.md, report.json, Pareto SVG"},
    {"bench", kvq_cmd_bench, "benchmarks: codecs (encode/decode GB/s), decode (tok/s)"},
    {"plt", kvq_cmd_plt, "PLT KV coding: lossless ratio vs zstd/xz, prefix-sharing workload"},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "kvq %s — compress LLM weights, activations and KV caches\n\n", kvq_version_string());
    fprintf(f, "usage: kvq COMMAND [ARGS...]   (kvq COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int cli_error(const char *what, kvq_err e)
{
    const char *d = kvq_last_error_detail();
    if (d && *d)
        fprintf(stderr, "kvq: %s: %s: %s\n", what, kvq_strerror(e), d);
    else
        fprintf(stderr, "kvq: %s: %s\n", what, kvq_strerror(e));
    return CLI_EXIT_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "kvq %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(try 'kvq %s --help')\n", cmd);
    return CLI_EXIT_USAGE;
}

int cli_parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max) return -1;
    *out = v;
    return 0;
}

void cli_progress(const char *label, size_t done, size_t total)
{
    enum { BAR = 30 }; /* characters of bar */
    if (!isatty(STDERR_FILENO) || !total) return;
    size_t fill = done * BAR / total;
    fprintf(stderr, "\r%-24.24s [", label);
    for (size_t i = 0; i < BAR; i++) fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %zu/%zu", done, total);
    if (done == total) fputs("\r\033[K", stderr);
    fflush(stderr);
}

const char *cli_shared_data(void)
{
    const char *d = getenv("KVQ_DATA");
    return d && *d ? d : "../shared/data";
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf("kvq %s\n", kvq_version_string());
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "kvq: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
