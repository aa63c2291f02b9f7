/* A small pthreads parallel-for for the CPU kernels. No OpenMP: the binary
 * must run where libgomp is absent. */
#ifndef GS_PARALLEL_H
#define GS_PARALLEL_H

#include <stdint.h>

/* One task of a parallel loop. worker is in [0, workers): the calling thread
 * is worker 0, so per-worker scratch can be indexed by it. */
typedef void (*gs_task_fn)(void *ctx, int64_t task, int worker);

/* Online cores (at least 1). */
int gs_cpu_count(void);

/* How many workers to use: 1 when the problem is small (work counts elements
 * touched), else threads (0 = all cores), never more than n_tasks. */
int gs_parallel_workers(int threads, int64_t n_tasks, int64_t work);

/* Runs fn(ctx, task, worker) once for every task in [0, n_tasks). Tasks are
 * handed out in order from a shared counter; which worker runs a task varies
 * from run to run, so anything reduced across tasks must be stored per task.
 * If a thread cannot be started, the others (and the caller) do its share. */
void gs_parallel_for(int workers, int64_t n_tasks, gs_task_fn fn, void *ctx);

#endif
