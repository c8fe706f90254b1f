/*
 * qcx.c — the `qcx` command line: Quasicryth text compression with xz/zstd
 * conventions (papers/quasicryth.md §17, issue 8).
 *
 *   qcx [-z|-d|-t|-l] [-c] [-o FILE] [-k] [-f] [-1..-9] [--tiling=MODE]
 *       [-T N] [-v] [-q] [--stats] [FILE...]
 *
 * Like xz: no FILE or "-" means stdin → stdout; FILE becomes FILE.qcr and
 * the source is removed after success unless -k or -c; decompression
 * strips ".qcr".  Output goes to a temporary file in the target directory,
 * is fsync'd and renamed; on any error the temporary file is removed and
 * the source is kept.  Exit status: 0 success, 1 error, 2 warning only.
 * Uses nothing but kvq.h and libc.
 */
#include "kvq.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SUFFIX       ".qcr"
#define EXIT_OK      0
#define EXIT_ERR     1
#define EXIT_WARN    2
#define THREADS_AUTO 4      /* default -T: blocks in flight */
#define IO_CHUNK     (1u << 16)

typedef enum { OP_COMPRESS, OP_DECOMPRESS, OP_TEST, OP_LIST } op_kind;

typedef struct opts {
    op_kind op;
    int to_stdout, keep, force, verbose, quiet, stats;
    const char *out_name;
    kvq_qcx_params p;
} opts;

static const char *prog = "qcx";

static void msg(const opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void msg(const opts *o, const char *fmt, ...)
{
    if (o && o->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int lib_error(const char *what, kvq_err e)
{
    const char *d = kvq_last_error_detail();
    fprintf(stderr, "%s: %s: %s%s%s\n", prog, what, kvq_strerror(e), d[0] ? ": " : "", d);
    return EXIT_ERR;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s [OPTION]... [FILE]...\n"
            "Compress or decompress FILEs with Quasicryth (Fibonacci-tiling text coding).\n\n"
            "  -z, --compress     compress (default)\n"
            "  -d, --decompress   decompress\n"
            "  -t, --test         decompress and verify, write nothing\n"
            "  -l, --list         list sizes, ratio, blocks and checksum\n"
            "  -c, --stdout       write to standard output, keep input files\n"
            "  -o FILE            write to FILE (one input only)\n"
            "  -k, --keep         keep (don't delete) input files\n"
            "  -f, --force        overwrite outputs; allow terminals\n"
            "  -1 .. -9           level (default 6): codebook sizes, block size, xz effort\n"
            "  --tiling=MODE      multi (default) | fib | p5 | none | allpos\n"
            "  -T, --threads=N    blocks compressed in parallel (0 = %d)\n"
            "  -v, --verbose      ratio, speed and the stream breakdown\n"
            "      --stats        per-level lookup positions and hits (hierarchy table, stderr)\n"
            "  -q, --quiet        no warnings\n"
            "  -h, --help         this text;  -V, --version  the version\n\n"
            "With no FILE, or when FILE is -, read standard input.  Exit status:\n"
            "0 success, 1 error, 2 warning.\n",
            prog, THREADS_AUTO);
}

/* ---- I/O callbacks -------------------------------------------------------- */
typedef struct fio {
    FILE *f;
    const char *name;
    uint64_t n;
} fio;

static kvq_err f_read(void *op, void *buf, size_t cap, size_t *got)
{
    fio *io = op;
    *got = fread(buf, 1, cap, io->f);
    if (*got == 0 && ferror(io->f)) return KVQ_ERR_IO;
    io->n += *got;
    return KVQ_OK;
}

static kvq_err f_write(void *op, const void *buf, size_t n)
{
    fio *io = op;
    if (n && fwrite(buf, 1, n, io->f) != n) return KVQ_ERR_IO;
    io->n += n;
    return KVQ_OK;
}

/* ---- output: temp file + rename -------------------------------------------- */
typedef struct outfile {
    FILE *f;
    char *tmp;
    const char *path;
} outfile;

static int out_open(outfile *o, const char *path, int force, const struct stat *src_st)
{
    struct stat st;
    o->path = path;
    o->f = NULL;
    if (!force && lstat(path, &st) == 0) {
        fprintf(stderr, "%s: %s: File exists\n", prog, path);
        return EXIT_ERR;
    }
    size_t n = strlen(path);
    o->tmp = malloc(n + 16);
    if (!o->tmp) return EXIT_ERR;
    snprintf(o->tmp, n + 16, "%s.qcx-XXXXXX", path);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
        free(o->tmp);
        return EXIT_ERR;
    }
    if (src_st) (void)fchmod(fd, src_st->st_mode & 0777);
    o->f = fdopen(fd, "wb");
    if (!o->f) {
        close(fd);
        unlink(o->tmp);
        free(o->tmp);
        return EXIT_ERR;
    }
    return EXIT_OK;
}

static void out_abort(outfile *o)
{
    if (!o->f) return;
    fclose(o->f);
    unlink(o->tmp);
    free(o->tmp);
    o->f = NULL;
}

static int out_commit(outfile *o)
{
    int bad = fflush(o->f) != 0 || fsync(fileno(o->f)) != 0;
    bad |= fclose(o->f) != 0;
    o->f = NULL;
    if (!bad && rename(o->tmp, o->path) == 0) {
        free(o->tmp);
        return EXIT_OK;
    }
    fprintf(stderr, "%s: %s: %s\n", prog, o->path, strerror(errno));
    unlink(o->tmp);
    free(o->tmp);
    return EXIT_ERR;
}

/* ---- reports -------------------------------------------------------------- */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double pct(uint64_t a, uint64_t b) { return b ? 100.0 * (double)a / (double)b : 0.0; }

static void report_verbose(const char *name, const kvq_qcx_stats *s, double secs, int decomp)
{
    double mb = (double)s->in_bytes / 1e6;
    fprintf(stderr, "%s: %s: %llu -> %llu bytes (%.2f%%), %.2f MB/s %s\n", prog, name,
            (unsigned long long)(decomp ? s->out_bytes : s->in_bytes),
            (unsigned long long)(decomp ? s->in_bytes : s->out_bytes),
            pct(s->out_bytes, s->in_bytes), secs > 0 ? mb / secs : 0.0,
            decomp ? "decompress" : "compress");
    if (decomp) return;
    fprintf(stderr,
            "  blocks: %llu text, %llu xz, %llu stored; words %llu\n"
            "  bytes: events %llu, escapes %llu, case %llu, codebook %llu, container %llu, "
            "xz/stored %llu\n"
            "  events: escape %llu, unigram %llu, bigram %llu, n-gram",
            (unsigned long long)s->blocks_text, (unsigned long long)s->blocks_xz,
            (unsigned long long)s->blocks_stored, (unsigned long long)s->words,
            (unsigned long long)s->bytes_events, (unsigned long long)s->bytes_escapes,
            (unsigned long long)s->bytes_case, (unsigned long long)s->bytes_codebook,
            (unsigned long long)s->bytes_container, (unsigned long long)s->bytes_other,
            (unsigned long long)s->events[0], (unsigned long long)s->events[1],
            (unsigned long long)s->events[2]);
    for (int k = 3; k < KVQ_QCX_ELEVELS; k++) fprintf(stderr, " %llu", (unsigned long long)s->events[k]);
    fprintf(stderr, "\n  LZ77: %llu matches covering %llu events\n",
            (unsigned long long)s->lz_matches, (unsigned long long)s->lz_events);
}

static void report_stats(const char *name, const kvq_qcx_stats *s)
{
    static const int span[KVQ_QCX_HLEVELS] = {2, 3, 5, 8, 13, 21, 34, 55, 89, 144};
    fprintf(stderr, "%s: tiling %s, level %d\n", name, kvq_qcx_tiling_name((kvq_qcx_tiling)s->tiling),
           s->level);
    fprintf(stderr, "%-6s %-6s %12s %12s %8s %12s\n", "level", "words", "lookups", "hits", "hit%", "events");
    for (int k = 1; k < KVQ_QCX_HLEVELS; k++)
        fprintf(stderr, "%-6d %-6d %12llu %12llu %7.2f%% %12llu\n", k, span[k],
               (unsigned long long)s->lookups[k], (unsigned long long)s->hits[k],
               pct(s->hits[k], s->lookups[k]), (unsigned long long)s->events[k + 2]);
}

static void report_list(const char *name, const kvq_qcx_stats *s)
{
    printf("%12s %12s %7s %6s %6s %6s %8s %-8s %s\n", "compressed", "original", "ratio", "text",
           "xz", "stored", "level", "tiling", "crc32  name");
    printf("%12llu %12llu %6.2f%% %6llu %6llu %6llu %8d %-8s %08x  %s\n",
           (unsigned long long)s->out_bytes, (unsigned long long)s->in_bytes,
           pct(s->out_bytes, s->in_bytes), (unsigned long long)s->blocks_text,
           (unsigned long long)s->blocks_xz, (unsigned long long)s->blocks_stored, s->level,
           kvq_qcx_tiling_name((kvq_qcx_tiling)s->tiling), (unsigned)s->crc32, name);
}

/* ---- one input ------------------------------------------------------------ */
static int has_suffix(const char *s)
{
    size_t n = strlen(s), k = strlen(SUFFIX);
    return n > k && strcmp(s + n - k, SUFFIX) == 0;
}

/* Runs the operation from in to out (out NULL for -t and -l). */
static kvq_err run_op(const opts *o, fio *in, fio *out, kvq_qcx_stats *st)
{
    switch (o->op) {
    case OP_COMPRESS:
        return kvq_qcx_compress_stream(f_read, in, f_write, out, &o->p, st);
    case OP_DECOMPRESS:
        return kvq_qcx_decompress_stream(f_read, in, f_write, out, o->p.threads, st);
    case OP_TEST:
        return kvq_qcx_decompress_stream(f_read, in, NULL, NULL, o->p.threads, st);
    case OP_LIST:
        return kvq_qcx_list_stream(f_read, in, st);
    }
    return KVQ_ERR_ARG;
}

static void after_success(const opts *o, const char *name, const kvq_qcx_stats *st, double t)
{
    if (o->op == OP_LIST) report_list(name, st);
    if (o->verbose && o->op != OP_LIST) report_verbose(name, st, t, o->op != OP_COMPRESS);
    if (o->stats && o->op == OP_COMPRESS) report_stats(name, st);
}

static int process_stdin(const opts *o)
{
    int writes = o->op == OP_COMPRESS || o->op == OP_DECOMPRESS;
    if (!o->force && o->op == OP_COMPRESS && !o->out_name && isatty(STDOUT_FILENO)) {
        msg(NULL, "Compressed data cannot be written to a terminal");
        return EXIT_ERR;
    }
    if (!o->force && o->op != OP_COMPRESS && isatty(STDIN_FILENO)) {
        msg(NULL, "Compressed data cannot be read from a terminal");
        return EXIT_ERR;
    }
    fio in = {stdin, "(stdin)", 0}, out = {stdout, "(stdout)", 0};
    outfile of = {0};
    if (writes && o->out_name) {
        if (out_open(&of, o->out_name, o->force, NULL) != EXIT_OK) return EXIT_ERR;
        out.f = of.f;
    }
    kvq_qcx_stats st;
    double t0 = now_s();
    kvq_err e = run_op(o, &in, writes ? &out : NULL, &st);
    if (e == KVQ_OK && writes && !o->out_name && fflush(stdout) != 0) e = KVQ_ERR_IO;
    if (e != KVQ_OK) {
        out_abort(&of);
        return lib_error("(stdin)", e);
    }
    if (of.f && out_commit(&of) != EXIT_OK) return EXIT_ERR;
    after_success(o, "(stdin)", &st, now_s() - t0);
    return EXIT_OK;
}

/* Output name for a file input: NULL with *rc set when it must be skipped. */
static char *output_name(const opts *o, const char *name, int *rc)
{
    size_t n = strlen(name);
    if (o->op == OP_COMPRESS) {
        if (has_suffix(name)) {
            msg(o, "%s: File already has '%s' suffix, skipping", name, SUFFIX);
            *rc = EXIT_WARN;
            return NULL;
        }
        char *s = malloc(n + sizeof SUFFIX);
        if (s) memcpy(s, name, n), memcpy(s + n, SUFFIX, sizeof SUFFIX);
        return s;
    }
    if (!has_suffix(name)) {
        msg(o, "%s: Filename has an unknown suffix, skipping", name);
        *rc = EXIT_WARN;
        return NULL;
    }
    char *s = malloc(n + 1);
    if (s) memcpy(s, name, n - strlen(SUFFIX)), s[n - strlen(SUFFIX)] = 0;
    return s;
}

static int process_file(const opts *o, const char *name)
{
    struct stat sst;
    if (stat(name, &sst) != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, name, strerror(errno));
        return EXIT_ERR;
    }
    if (!S_ISREG(sst.st_mode) && !o->force) {
        msg(o, "%s: Not a regular file, skipping", name);
        return EXIT_WARN;
    }
    int writes = o->op == OP_COMPRESS || o->op == OP_DECOMPRESS, rc = EXIT_OK;
    int derived = writes && !o->to_stdout && !o->out_name;
    char *oname = derived ? output_name(o, name, &rc) : NULL;
    if (derived && !oname) return rc ? rc : EXIT_ERR;
    if (writes && o->to_stdout && o->op == OP_COMPRESS && !o->force && isatty(STDOUT_FILENO)) {
        free(oname);
        msg(NULL, "Compressed data cannot be written to a terminal");
        return EXIT_ERR;
    }
    fio in = {fopen(name, "rb"), name, 0}, out = {stdout, "(stdout)", 0};
    if (!in.f) {
        fprintf(stderr, "%s: %s: %s\n", prog, name, strerror(errno));
        free(oname);
        return EXIT_ERR;
    }
    outfile of = {0};
    const char *target = oname ? oname : o->out_name;
    if (writes && target) {
        if (out_open(&of, target, o->force, &sst) != EXIT_OK) {
            fclose(in.f);
            free(oname);
            return EXIT_ERR;
        }
        out.f = of.f;
    }
    kvq_qcx_stats st;
    double t0 = now_s();
    kvq_err e = run_op(o, &in, writes ? &out : NULL, &st);
    fclose(in.f);
    if (e == KVQ_OK && writes && !target && fflush(stdout) != 0) e = KVQ_ERR_IO;
    if (e != KVQ_OK) {
        out_abort(&of);
        free(oname);
        return lib_error(name, e);
    }
    if (of.f && out_commit(&of) != EXIT_OK) {
        free(oname);
        return EXIT_ERR;
    }
    after_success(o, name, &st, now_s() - t0);
    if (derived && !o->keep && unlink(name) != 0) {
        fprintf(stderr, "%s: %s: cannot remove: %s\n", prog, name, strerror(errno));
        rc = EXIT_WARN;
    }
    free(oname);
    return rc;
}

/* ---- options ---------------------------------------------------------------- */
static int parse_threads(const char *s, opts *o)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < 0 || v > KVQ_QCX_THREADS_MAX) {
        msg(NULL, "invalid thread count '%s' (0..%d)", s, KVQ_QCX_THREADS_MAX);
        return -1;
    }
    o->p.threads = v == 0 ? THREADS_AUTO : (int)v;
    return 0;
}

static int parse_long(const char *a, opts *o, char **argv, int *i, int argc)
{
    if (!strcmp(a, "--compress")) o->op = OP_COMPRESS;
    else if (!strcmp(a, "--decompress") || !strcmp(a, "--uncompress")) o->op = OP_DECOMPRESS;
    else if (!strcmp(a, "--test")) o->op = OP_TEST;
    else if (!strcmp(a, "--list")) o->op = OP_LIST;
    else if (!strcmp(a, "--stdout") || !strcmp(a, "--to-stdout")) o->to_stdout = 1;
    else if (!strcmp(a, "--keep")) o->keep = 1;
    else if (!strcmp(a, "--force")) o->force = 1;
    else if (!strcmp(a, "--verbose")) o->verbose = 1;
    else if (!strcmp(a, "--quiet")) o->quiet = 1;
    else if (!strcmp(a, "--stats")) o->stats = 1;
    else if (!strncmp(a, "--tiling=", 9)) {
        kvq_qcx_tiling t;
        if (kvq_qcx_tiling_parse(a + 9, &t) != KVQ_OK) {
            msg(NULL, "%s", kvq_last_error_detail());
            return -1;
        }
        o->p.tiling = t;
    } else if (!strncmp(a, "--threads=", 10)) return parse_threads(a + 10, o);
    else if (!strcmp(a, "--threads") && *i + 1 < argc) return parse_threads(argv[++*i], o);
    else if (!strcmp(a, "--help")) { usage(stdout); exit(EXIT_OK); }
    else if (!strcmp(a, "--version")) { printf("qcx (kvq) %s\n", kvq_version_string()); exit(EXIT_OK); }
    else {
        msg(NULL, "unknown option '%s'", a);
        return -1;
    }
    return 0;
}

/* Short options, possibly grouped ("-dkf", "-9", "-T4", "-T 4", "-o F"). */
static int parse_short(const char *a, opts *o, char **argv, int *i, int argc)
{
    for (const char *c = a + 1; *c; c++) {
        switch (*c) {
        case 'z': o->op = OP_COMPRESS; break;
        case 'd': o->op = OP_DECOMPRESS; break;
        case 't': o->op = OP_TEST; break;
        case 'l': o->op = OP_LIST; break;
        case 'c': o->to_stdout = 1; break;
        case 'k': o->keep = 1; break;
        case 'f': o->force = 1; break;
        case 'v': o->verbose = 1; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); exit(EXIT_OK);
        case 'V': printf("qcx (kvq) %s\n", kvq_version_string()); exit(EXIT_OK);
        case 'T':
        case 'o': {
            const char *v = c[1] ? c + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
            if (!v) {
                msg(NULL, "option -%c needs a value", *c);
                return -1;
            }
            if (*c == 'o') o->out_name = v;
            else if (parse_threads(v, o) != 0) return -1;
            return 0;
        }
        default:
            if (*c >= '1' && *c <= '9') {
                o->p.level = *c - '0';
                break;
            }
            msg(NULL, "unknown option '-%c'", *c);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    memset(&o, 0, sizeof o);
    o.p = kvq_qcx_params_default();
    o.p.threads = THREADS_AUTO;
    char **files = calloc((size_t)argc + 1, sizeof *files);
    int n_files = 0, only_files = 0;
    if (!files) return EXIT_ERR;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int bad = 0;
        if (only_files || a[0] != '-' || !strcmp(a, "-")) files[n_files++] = argv[i];
        else if (!strcmp(a, "--")) only_files = 1;
        else if (a[1] == '-') bad = parse_long(a, &o, argv, &i, argc);
        else bad = parse_short(a, &o, argv, &i, argc);
        if (bad) {
            fprintf(stderr, "Try '%s --help' for more information.\n", prog);
            free(files);
            return EXIT_ERR;
        }
    }
    if (o.out_name && n_files > 1) {
        msg(NULL, "-o takes a single input");
        free(files);
        return EXIT_ERR;
    }
    int rc = EXIT_OK;
    if (n_files == 0) files[n_files++] = "-";
    for (int i = 0; i < n_files; i++) {
        int r = !strcmp(files[i], "-") ? process_stdin(&o) : process_file(&o, files[i]);
        if (r == EXIT_ERR || (r == EXIT_WARN && rc == EXIT_OK)) rc = r;
    }
    free(files);
    return rc;
}
