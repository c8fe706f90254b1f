/*
 * cmd_export.c — `kvq export IN OUT [--format gguf|safetensors|kvq] [-f]`:
 * rewrite a checkpoint in another format without re-quantizing.
 *
 * GGUF takes the weights as they are stored (f32/f16/bf16, q8_0/q4_0
 * blocks copied byte for byte; any other codec is refused, naming the
 * tensor); safetensors gets every weight dequantized to f32 under Hugging
 * Face names; .kvq keeps every codec.  The output is written through a
 * temp file and renamed; an existing OUT is refused unless -f.
 */
#include "cli.h"

#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: kvq export IN OUT [--format gguf|safetensors|kvq] [-f]\n"
               "  IN   any checkpoint kvq reads (.bin, .gguf, .safetensors, .kvq)\n"
               "  OUT  format from --format or the extension; -f overwrites\n");
}

int kvq_cmd_export(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *fmt_s = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "--format") && i + 1 < argc) {
            fmt_s = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("export", "unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            return cli_usage_error("export", "unexpected argument '%s'", a);
        }
    }
    if (!in || !out) return cli_usage_error("export", "need IN and OUT");
    kvq_format fmt;
    if ((fmt_s ? kvq_format_from_name(fmt_s, &fmt) : kvq_format_from_path(out, &fmt)) != KVQ_OK ||
        fmt == KVQ_FORMAT_LLAMA2C)
        return cli_usage_error("export", "cannot tell the output format of '%s' (use --format gguf|safetensors|kvq)",
                               fmt_s ? fmt_s : out);
    struct stat st;
    if (!force && stat(out, &st) == 0) {
        fprintf(stderr, "kvq: %s: already exists (use -f to overwrite)\n", out);
        return CLI_EXIT_FAIL;
    }
    kvq_model *m;
    kvq_err e = kvq_model_load(in, &m);
    if (e) return cli_error("export", e);
    e = kvq_model_save(m, out, fmt, force);
    kvq_model_free(m);
    if (e) return cli_error("export", e);
    printf("wrote %s (%s)\n", out, kvq_format_name(fmt));
    return CLI_EXIT_OK;
}
