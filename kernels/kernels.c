/*
 * kernels.c — choosing the kernel table once per process (issue 9 item 2;
 * STYLE.md "Kernels follow BLIS"): the reference fills every slot, then
 * the AVX2/FMA overrides are applied when the CPU has them and KVQ_SIMD
 * does not say "ref".
 */
#include "kernels/kernels.h"
#include "kvq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static kvq_kernels g_ref, g_avx2, *g_best;
static int g_have_avx2;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
    kvq_kernels_fill_ref(&g_ref);
    g_have_avx2 = kvq_kernels_fill_avx2(&g_avx2);
    const char *env = getenv("KVQ_SIMD");
    int force_ref = env && strcmp(env, "ref") == 0;
    g_best = g_have_avx2 && !force_ref ? &g_avx2 : &g_ref;
}

const kvq_kernels *kvq_kernels_get(void)
{
    pthread_once(&g_once, choose);
    return g_best;
}

const kvq_kernels *kvq_kernels_ref(void)
{
    pthread_once(&g_once, choose);
    return &g_ref;
}

const kvq_kernels *kvq_kernels_avx2(void)
{
    pthread_once(&g_once, choose);
    return g_have_avx2 ? &g_avx2 : NULL;
}

const char *kvq_kernels_name(void) { return kvq_kernels_get()->name; }
