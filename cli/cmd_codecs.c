/*
 * cmd_codecs.c — `kvq codecs`: the registry as a table (name, id, domains,
 * flags, bits/value, parameters with ranges and defaults).
 *
 * bits/value is measured, not declared: the payload bound of a 256×4096
 * tensor at default parameters (for fixed-grid codecs the bound is the
 * exact size; for lossless entropy coders it is a worst case, marked '≤').
 */
#include "cli.h"

#include <string.h>

#define REF_ROWS 256  /* reference shape for bits/value */
#define REF_COLS 4096

static void domain_text(unsigned d, char *buf, size_t cap)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{KVQ_DOMAIN_WEIGHT, "weight"}, {KVQ_DOMAIN_ACT, "act"}, {KVQ_DOMAIN_KEY, "key"},
                 {KVQ_DOMAIN_VALUE, "value"},   {KVQ_DOMAIN_SSM, "ssm"}, {KVQ_DOMAIN_TEXT, "text"}};
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (d & names[i].bit) {
            if (buf[0]) strncat(buf, ",", cap - strlen(buf) - 1);
            strncat(buf, names[i].name, cap - strlen(buf) - 1);
        }
}

static double bits_per_value(const kvq_codec *c)
{
    kvq_ctx *ctx;
    if (kvq_ctx_create_params(c, NULL, &ctx) != KVQ_OK) return -1;
    int64_t dims[2] = {REF_ROWS, REF_COLS};
    kvq_shape s = kvq_shape_make(2, dims);
    double b = 8.0 * (double)kvq_ctx_payload_bound(ctx, &s) / (REF_ROWS * REF_COLS);
    kvq_ctx_free(ctx);
    return b;
}

static void print_param(const kvq_param *p)
{
    printf("      %-10s ", p->name);
    if (p->choices) {
        printf("{");
        for (unsigned k = 0; p->choices[k]; k++) printf("%s%s", k ? "|" : "", p->choices[k]);
        printf("} default %s", p->choices[(int)p->def]);
    } else {
        printf("%s [%g, %g] default %g", p->is_int ? "int" : "real", p->min, p->max, p->def);
    }
    printf("  %s\n", p->help ? p->help : "");
}

int kvq_cmd_codecs(int argc, char **argv)
{
    int verbose = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: kvq codecs [--brief]\n  list every codec in the registry with its parameters\n");
            return CLI_EXIT_OK;
        } else if (!strcmp(argv[i], "--brief")) {
            verbose = 0;
        } else {
            return cli_usage_error("codecs", "unknown option '%s'", argv[i]);
        }
    }
    printf("%-14s %4s  %-28s %-9s %9s  %s\n", "codec", "id", "domains", "flags", "bits/val", "summary");
    for (size_t i = 0; i < kvq_codec_count(); i++) {
        const kvq_codec *c = kvq_codec_at(i);
        char dom[64], fl[16] = "";
        domain_text(c->domain, dom, sizeof dom);
        if (c->flags & KVQ_FLAG_LOSSLESS) strcat(fl, "L");
        if (c->flags & KVQ_FLAG_NEEDS_CALIB) strcat(fl, "C");
        if (c->flags & KVQ_FLAG_STATEFUL) strcat(fl, "S");
        double b = bits_per_value(c);
        printf("%-14s %4u  %-28s %-9s %s%8.3f  %s\n", c->name, c->id, dom, fl[0] ? fl : "-",
               (c->flags & KVQ_FLAG_LOSSLESS) && c->id != 1 ? "≤" : " ", b, c->summary ? c->summary : "");
        if (verbose)
            for (unsigned k = 0; k < c->n_params; k++) print_param(&c->params[k]);
    }
    printf("\nflags: L lossless, C needs calibration, S stateful.  bits/value: payload of a %dx%d tensor.\n"
           "spec syntax: NAME[:KEY=VALUE[,KEY=VALUE]...], e.g. rtn:bits=4,group=64\n",
           REF_ROWS, REF_COLS);
    return CLI_EXIT_OK;
}
