/*
 * threadpool.c — the persistent pthread pool behind the decoder's matmuls
 * (DESIGN.md "The reference decoder": threads via a small pthread pool).
 *
 * A job is published by bumping `gen` under the mutex; workers that are
 * spinning see it at once, sleeping ones are woken by the broadcast.  Each
 * worker runs its own static range and decrements `pending`; the caller
 * runs range 0, then waits for `pending` to reach 0 (spinning first, then
 * on a condition variable).  Static ranges keep results deterministic:
 * every output element is computed by the same code whatever the timing.
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_ROUNDS 20000 /* polls before sleeping: ~tens of µs, one token's matmul gap */

struct kvq_pool {
    int           n_threads;
    pthread_t    *th;
    int           n_started;
    pthread_mutex_t mu;
    pthread_cond_t  wake, done;
    atomic_uint   gen;       /* job counter; a change means "new job"     */
    atomic_int    pending;   /* worker ranges still running               */
    atomic_int    stop;
    /* the current job (written before gen is bumped) */
    kvq_pool_fn   fn;
    void         *ctx;
    int64_t       n, grain;
};

typedef struct {
    kvq_pool *p;
    int tid;
} worker_arg;

static void job_range(const kvq_pool *p, int tid, int64_t *i0, int64_t *i1)
{
    int64_t blocks = (p->n + p->grain - 1) / p->grain;
    int64_t b0 = blocks * tid / p->n_threads, b1 = blocks * (tid + 1) / p->n_threads;
    *i0 = b0 * p->grain;
    *i1 = b1 * p->grain < p->n ? b1 * p->grain : p->n;
}

static unsigned wait_new_job(kvq_pool *p, unsigned seen)
{
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
    }
    pthread_mutex_lock(&p->mu);
    unsigned g;
    while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->wake, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg)
{
    worker_arg *wa = arg;
    kvq_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        seen = wait_new_job(p, seen);
        if (atomic_load(&p->stop)) break;
        int64_t i0, i1;
        job_range(p, tid, &i0, &i1);
        if (i0 < i1) p->fn(p->ctx, i0, i1, tid);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

kvq_err kvq_pool_create(int n_threads, kvq_pool **out)
{
    KVQ_FAIL_IF(!out, KVQ_ERR_ARG, "pool: NULL output");
    *out = NULL;
    KVQ_FAIL_IF(n_threads < 1, KVQ_ERR_ARG, "pool: %d threads", n_threads);
    kvq_pool *p = calloc(1, sizeof *p);
    KVQ_FAIL_IF(!p, KVQ_ERR_NOMEM, "pool: out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    if (n_threads > 1) {
        p->th = calloc((size_t)n_threads, sizeof *p->th);
        if (!p->th) {
            kvq_pool_free(p);
            return KVQ_ERROR(KVQ_ERR_NOMEM, "pool: out of memory");
        }
    }
    for (int t = 1; t < n_threads; t++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){p, t};
        if (!wa || pthread_create(&p->th[t], NULL, worker_main, wa) != 0) {
            free(wa);
            kvq_pool_free(p);
            return KVQ_ERROR(KVQ_ERR_NOMEM, "pool: cannot start thread %d of %d", t, n_threads);
        }
        p->n_started = t;
    }
    *out = p;
    return KVQ_OK;
}

void kvq_pool_free(kvq_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t <= p->n_started; t++) pthread_join(p->th[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p);
}

int kvq_pool_threads(const kvq_pool *p) { return p ? p->n_threads : 1; }

void kvq_pool_run(kvq_pool *p, int64_t n, int64_t grain, kvq_pool_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!p || p->n_threads == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    atomic_store(&p->pending, p->n_threads - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    int64_t i0, i1;
    job_range(p, 0, &i0, &i1);
    if (i0 < i1) fn(ctx, i0, i1, 0);
    for (int i = 0; i < SPIN_ROUNDS; i++)
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) return;
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
