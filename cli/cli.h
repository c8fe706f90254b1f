/*
 * cli.h — shared pieces of the `kvq` command line: the subcommand entry
 * points (one cmd_*.c each) and small helpers for errors, options and
 * progress.  The CLI uses nothing but the public kvq.h.
 */
#ifndef KVQ_CLI_H
#define KVQ_CLI_H

#include "kvq.h"

#include <stdio.h>

/* Exit codes: 0 success, 1 operational failure (bad input, I/O), 2 usage. */
#define CLI_EXIT_OK    0
#define CLI_EXIT_FAIL  1
#define CLI_EXIT_USAGE 2

/* Subcommands: argv[0] is the subcommand name. */
int kvq_cmd_codecs(int argc, char **argv);
int kvq_cmd_quantize(int argc, char **argv);
int kvq_cmd_inspect(int argc, char **argv);
int kvq_cmd_export(int argc, char **argv);
int kvq_cmd_generate(int argc, char **argv);
int kvq_cmd_eval(int argc, char **argv);
int kvq_cmd_report(int argc, char **argv);
int kvq_cmd_bench(int argc, char **argv);
/* `kvq bench decode` (dispatched by cmd_bench.c's table) */
int kvq_bench_decode(int argc, char **argv);
/* `kvq bench codecs|decode --device cuda` (cli/cmd_bench_device.c): x is
 * the CPU bench's rows×cols tensor; n_specs 0 = the device defaults. */
int kvq_bench_codecs_cuda(const float *x, long rows, long cols, const char *const *specs, int n_specs, int runs);
int kvq_bench_decode_cuda(const kvq_model *m, const char *path, const char *quant, int reps);
/* `kvq plt lossless|prefix` (cli/cmd_plt.c) */
int kvq_cmd_plt(int argc, char **argv);

/* cli_error() : prints "kvq: <what>: <strerror>: <detail>" to stderr and
 * returns CLI_EXIT_FAIL.  `what` is usually a file name. */
int cli_error(const char *what, kvq_err e);
/* cli_usage_error() : "kvq <cmd>: <message>" + hint; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* cli_parse_int() : strict decimal parse into [min, max]; 0 on success. */
int cli_parse_int(const char *s, long min, long max, long *out);
/* cli_progress() : a one-line progress bar on stderr when it is a terminal. */
void cli_progress(const char *label, size_t done, size_t total);
/* cli_shared_data() : directory of the shared data ($KVQ_DATA or
 * ../shared/data), for default inputs. */
const char *cli_shared_data(void);

#endif
