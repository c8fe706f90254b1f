/*
 * threadpool.h — a small persistent pthread pool for libkvq's own loops
 * (internal; never installed).  One job at a time: kvq_pool_run() splits
 * [0, n) into one contiguous range per thread, runs range 0 on the calling
 * thread and returns when every range is done.  No allocation after
 * kvq_pool_create(); workers spin briefly before sleeping so back-to-back
 * small matmuls (latency-bound models) do not pay a wake-up each.
 */
#ifndef KVQ_THREADPOOL_H
#define KVQ_THREADPOOL_H

#include "kvq_internal.h"

typedef struct kvq_pool kvq_pool;

/* fn(ctx, i0, i1, tid): process items [i0, i1) on thread tid (0 = caller). */
typedef void (*kvq_pool_fn)(void *ctx, int64_t i0, int64_t i1, int tid);

/* kvq_pool_create() : n_threads >= 1 (1 = no workers, calls run inline).
 * Free with kvq_pool_free(). */
kvq_err kvq_pool_create(int n_threads, kvq_pool **out);
void kvq_pool_free(kvq_pool *p);                 /* NULL-safe; joins workers */
int kvq_pool_threads(const kvq_pool *p);         /* 1 for NULL */
/* kvq_pool_run() : the parallel for; ranges are split in multiples of
 * `grain` items (>= 1) so callers can keep blocks whole.  Not reentrant:
 * one caller thread at a time. */
void kvq_pool_run(kvq_pool *p, int64_t n, int64_t grain, kvq_pool_fn fn, void *ctx);

#endif /* KVQ_THREADPOOL_H */
