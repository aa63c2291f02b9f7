#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

/* Below this many elements a thread start costs more than it saves. */
#define GS_PAR_MIN_WORK ((int64_t)1 << 16)
#define GS_PAR_MAX_WORKERS 256

typedef struct {
  atomic_int_fast64_t next;
  int64_t n_tasks;
  gs_task_fn fn;
  void *ctx;
} gs_pool;

typedef struct {
  gs_pool *pool;
  int worker;
} gs_worker;

int gs_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (int)n;
}

int gs_parallel_workers(int threads, int64_t n_tasks, int64_t work) {
  if (work < GS_PAR_MIN_WORK || n_tasks < 2) return 1;
  int w = threads > 0 ? threads : gs_cpu_count();
  if (w > GS_PAR_MAX_WORKERS) w = GS_PAR_MAX_WORKERS;
  if (w > n_tasks) w = (int)n_tasks;
  return w < 1 ? 1 : w;
}

static void drain(gs_pool *pool, int worker) {
  for (;;) {
    int64_t t = atomic_fetch_add_explicit(&pool->next, 1, memory_order_relaxed);
    if (t >= pool->n_tasks) return;
    pool->fn(pool->ctx, t, worker);
  }
}

static void *worker_main(void *arg) {
  gs_worker *w = arg;
  drain(w->pool, w->worker);
  return NULL;
}

void gs_parallel_for(int workers, int64_t n_tasks, gs_task_fn fn, void *ctx) {
  if (n_tasks <= 0) return;
  if (workers <= 1) {
    for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
    return;
  }
  if (workers > GS_PAR_MAX_WORKERS) workers = GS_PAR_MAX_WORKERS;
  gs_pool pool = {.n_tasks = n_tasks, .fn = fn, .ctx = ctx};
  atomic_init(&pool.next, 0);
  pthread_t tid[GS_PAR_MAX_WORKERS];
  gs_worker info[GS_PAR_MAX_WORKERS];
  int started = 0;
  for (int k = 1; k < workers; k++) {
    info[started] = (gs_worker){&pool, k};
    if (pthread_create(&tid[started], NULL, worker_main, &info[started]) == 0) started++;
  }
  drain(&pool, 0);
  /* join is the barrier that publishes every worker's writes to the caller */
  for (int k = 0; k < started; k++) pthread_join(tid[k], NULL);
}
