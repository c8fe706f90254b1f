/*
 * cmd_bench_device.c — the `--device cuda` halves of `kvq bench codecs`
 * and `kvq bench decode` (issue 9 items 3 and 5; kvq.h "CUDA device").
 * cmd_bench.c and cmd_bench_decode.c parse the options and call these.
 *
 * codecs: each codec with a CUDA kernel (default q8_0, q4_0, mxfp4,
 *   nvfp4) quantizes and dequantizes the CPU bench's synthetic tensor on
 *   the device; a device-to-device cudaMemcpy of the same f32 tensor is
 *   timed in the same run.  Device time by CUDA events, best of --runs.
 *   Columns: GB/s of f32 (input for quantize, output for dequantize);
 *   "moved" = bytes read + written per second (dequantize: payload + f32;
 *   copy: 2 × f32); "% copy" = dequantize moved / copy moved, the issue's
 *   ≥ 70 % criterion.  Device bytes and floats are compared with the CPU
 *   codec's in the same run; a difference fails the command.
 * decode: one token's matmuls of the model on the device (every linear of
 *   every layer plus the classifier, as GEMVs over a device vector): f32
 *   weights through cublasSgemv, then --quant q8_0/q4_0 weights through
 *   our GEMV (dequantized in registers).  tok/s = 1 / (seconds of those
 *   matmuls); norms, RoPE, attention and transfers are not included.
 * Without a CUDA build or a device both print the reason and exit 1.
 */
#include "cli.h"

#include <string.h>

#define GB        1e9
#define NAME_CAP  160
#define PCT       100.0

static const char *const device_specs[] = {"q8_0", "q4_0", "mxfp4", "nvfp4"};

/* The device's name, or the error printed (returns CLI_EXIT_FAIL). */
static int device_or_fail(const char *what, char *name)
{
    kvq_err e = kvq_cuda_device(name, NAME_CAP);
    return e ? cli_error(what, e) : CLI_EXIT_OK;
}

int kvq_bench_codecs_cuda(const float *x, long rows, long cols, const char *const *specs, int n_specs, int runs)
{
    char name[NAME_CAP];
    int rc = device_or_fail("bench codecs --device cuda", name);
    if (rc) return rc;
    if (!n_specs) {
        specs = device_specs;
        n_specs = (int)(sizeof device_specs / sizeof device_specs[0]);
    }
    double f32 = (double)rows * (double)cols * sizeof(float);
    printf("kvq bench codecs --device cuda: %ld x %ld f32 (%.1f MiB), the CPU bench's tensor; device %s\n"
           "device time (CUDA events), best of %d passes; GB/s = 1e9 bytes per second; moved = read + written;\n"
           "copy = device-to-device cudaMemcpy of the f32 tensor in the same run\n\n",
           rows, cols, f32 / (1 << 20), name, runs);
    printf("%-8s %8s %9s %9s %9s %9s %7s  %s\n", "codec", "bits/val", "quantize", "dequant", "deq-moved",
           "copy-moved", "% copy", "vs CPU codec");
    int fail = 0;
    for (int i = 0; i < n_specs; i++) {
        kvq_cuda_codec_bench r;
        kvq_err e = kvq_cuda_bench_codec(specs[i], x, rows, cols, runs, &r);
        if (e) {
            fail = cli_error(specs[i], e);
            continue;
        }
        double moved = (f32 + (double)r.payload_bytes) / r.dequantize_s / GB, copy = 2.0 * f32 / r.copy_s / GB;
        int exact = r.quantize_exact && r.dequantize_exact;
        printf("%-8s %8.3f %9.1f %9.1f %9.1f %9.1f %6.1f%%  %s\n", specs[i],
               8.0 * (double)r.payload_bytes / (double)rows / (double)cols, f32 / r.quantize_s / GB,
               f32 / r.dequantize_s / GB, moved, copy, PCT * moved / copy,
               exact ? "bytes and floats equal" : !r.quantize_exact ? "BYTES DIFFER" : "FLOATS DIFFER");
        if (!exact) fail = CLI_EXIT_FAIL;
        fflush(stdout);
    }
    return fail;
}

int kvq_bench_decode_cuda(const kvq_model *m, const char *path, const char *quant, int reps)
{
    char name[NAME_CAP];
    int rc = device_or_fail("bench decode --device cuda", name);
    if (rc) return rc;
    kvq_cuda_matmul_bench r;
    kvq_err e = kvq_cuda_bench_matmuls(m, quant, reps, &r);
    if (e) return cli_error(path, e);
    const kvq_model_config *c = kvq_model_config_get(m);
    printf("model        %s (dim %d, %d layers, vocab %d)\n", path, c->dim, c->n_layers, c->vocab_size);
    printf("device       %s\n", name);
    printf("measures     one token's matmuls on the device: %d GEMVs (%.2f M weights), best of %d tokens;\n"
           "             no norms, RoPE, attention or host transfers\n", r.n_mats, r.weights / 1e6, reps);
    printf("f32          %10.1f tok/s  (cublasSgemv, %.1f GB/s of weights)\n", 1.0 / r.f32_s,
           (double)r.f32_bytes / r.f32_s / GB);
    printf("%-12s %10.1f tok/s  (GEMV, codes dequantized in registers, %.1f GB/s of weights", quant, 1.0 / r.q_s,
           (double)r.q_bytes / r.q_s / GB);
    if (r.n_f32) printf("; %d of %d matrices f32: rows not whole blocks", r.n_f32, r.n_mats);
    printf(")\n");
    printf("ratio        %10.2f\xc3\x97 f32 weights\n", r.f32_s / r.q_s);
    return CLI_EXIT_OK;
}
