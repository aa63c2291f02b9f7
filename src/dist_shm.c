/* Shared memory, a barrier and collectives between rank processes on one
 * machine, and the fork/wait/kill that gs.dist needs (see dist_shm.h). */
#define _GNU_SOURCE
#include "dist_shm.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gs_half.h"

#define GS_SHM_MAX_RANKS 64

struct gs_shm {
  pthread_barrier_t barrier;
  int ranks;
  size_t slot_bytes;
  size_t map_bytes;
  gs_coll_desc desc[GS_SHM_MAX_RANKS];
  unsigned char scratch[256];
  /* then `ranks` slots of slot_bytes, 64-byte aligned */
};

static unsigned char *slot(gs_shm *s, int rank) {
  size_t head = (sizeof(gs_shm) + 63) & ~(size_t)63;
  return (unsigned char *)s + head + (size_t)rank * s->slot_bytes;
}

gs_shm *gs_shm_create(int ranks, size_t slot_bytes, gs_error *err) {
  if (ranks < 1 || ranks > GS_SHM_MAX_RANKS) {
    snprintf(err->msg, sizeof err->msg, "ranks = %d is outside [1, %d]", ranks, GS_SHM_MAX_RANKS);
    return NULL;
  }
  slot_bytes = (slot_bytes + 63) & ~(size_t)63;
  if (slot_bytes == 0) slot_bytes = 64;
  size_t bytes = ((sizeof(gs_shm) + 63) & ~(size_t)63) + (size_t)ranks * slot_bytes;
  /* MAP_NORESERVE: the slots are touched only as far as the largest chunk */
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    snprintf(err->msg, sizeof err->msg, "mmap of %zu shared bytes failed: %s", bytes, strerror(errno));
    return NULL;
  }
  gs_shm *s = p;
  memset(s, 0, sizeof *s);
  pthread_barrierattr_t attr;
  pthread_barrierattr_init(&attr);
  pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  int rc = pthread_barrier_init(&s->barrier, &attr, (unsigned)ranks);
  pthread_barrierattr_destroy(&attr);
  if (rc != 0) {
    munmap(p, bytes);
    snprintf(err->msg, sizeof err->msg, "process-shared barrier: %s", strerror(rc));
    return NULL;
  }
  s->ranks = ranks;
  s->slot_bytes = slot_bytes;
  s->map_bytes = bytes;
  return s;
}

void gs_shm_destroy(gs_shm *s) {
  if (!s) return;
  /* no pthread_barrier_destroy: it waits for ranks that a kill may have
   * stopped inside the barrier; unmapping the region is all it needs */
  munmap(s, s->map_bytes);
}

gs_coll_desc *gs_shm_desc(gs_shm *s, int rank) { return &s->desc[rank]; }
void *gs_shm_scratch(gs_shm *s) { return s->scratch; }
void gs_shm_barrier(gs_shm *s) { pthread_barrier_wait(&s->barrier); }

static double load_elem(const void *p, gs_dtype d, int64_t i) {
  switch (d) {
  case GS_F64: return ((const double *)p)[i];
  case GS_F32: return ((const float *)p)[i];
  case GS_BF16: return gs_bf16_to_f32(((const uint16_t *)p)[i]);
  case GS_F16: return gs_f16_to_f32(((const uint16_t *)p)[i]);
  default: return 0;
  }
}

static void store_elem(void *p, gs_dtype d, int64_t i, double x) {
  switch (d) {
  case GS_F64: ((double *)p)[i] = x; break;
  case GS_F32: ((float *)p)[i] = (float)x; break;
  case GS_BF16: ((uint16_t *)p)[i] = gs_f32_to_bf16((float)x); break;
  case GS_F16: ((uint16_t *)p)[i] = gs_f32_to_f16((float)x); break;
  default: break;
  }
}

static double reduce2(double a, double b, int reduce) {
  if (reduce == 0) return a + b;
  if (isnan(a) || isnan(b)) return NAN;
  return b > a ? b : a;
}

/* out[k] = slot_0[k] (op) slot_1[k] (op) ... in rank order. Floats are
 * combined in the dtype they are stored in (f32 sums in f32, as NCCL does;
 * bf16 and f16 through f32, rounded once at the end). */
static void reduce_chunk(gs_shm *s, void *out, int64_t first, int64_t count, gs_dtype d, int reduce) {
  if (d == GS_I32 || d == GS_I64) {
    for (int64_t k = 0; k < count; k++) {
      int64_t acc = 0;
      for (int r = 0; r < s->ranks; r++) {
        const unsigned char *src = slot(s, r);
        int64_t x = d == GS_I32 ? ((const int32_t *)src)[k] : ((const int64_t *)src)[k];
        acc = r == 0 ? x : reduce == 0 ? acc + x : (x > acc ? x : acc);
      }
      if (d == GS_I32) ((int32_t *)out)[first + k] = (int32_t)acc;
      else ((int64_t *)out)[first + k] = acc;
    }
    return;
  }
  for (int64_t k = 0; k < count; k++) {
    if (d == GS_F32) {
      float acc = ((const float *)slot(s, 0))[k];
      for (int r = 1; r < s->ranks; r++) acc = (float)reduce2(acc, ((const float *)slot(s, r))[k], reduce);
      ((float *)out)[first + k] = acc;
    } else if (d == GS_F64) {
      double acc = ((const double *)slot(s, 0))[k];
      for (int r = 1; r < s->ranks; r++) acc = reduce2(acc, ((const double *)slot(s, r))[k], reduce);
      ((double *)out)[first + k] = acc;
    } else {
      float acc = (float)load_elem(slot(s, 0), d, k);
      for (int r = 1; r < s->ranks; r++) acc = (float)reduce2(acc, load_elem(slot(s, r), d, k), reduce);
      store_elem(out, d, first + k, acc);
    }
  }
}

gs_status gs_shm_all_reduce(gs_shm *s, int rank, void *buf, int64_t count, gs_dtype dtype, int reduce,
                            gs_error *err) {
  size_t esize = dtype == GS_F64 || dtype == GS_I64 ? 8 : dtype == GS_F32 || dtype == GS_I32 ? 4 : 2;
  if (dtype < GS_F64 || dtype > GS_I64 || (reduce != 0 && reduce != 1)) {
    err->arg = "dtype";
    snprintf(err->msg, sizeof err->msg, "all_reduce: dtype %d or reduction %d is not supported", (int)dtype, reduce);
    return GS_ERR_ARG;
  }
  int64_t per = (int64_t)(s->slot_bytes / esize);
  for (int64_t first = 0; first < count; first += per) {
    int64_t n = count - first < per ? count - first : per;
    memcpy(slot(s, rank), (unsigned char *)buf + first * esize, (size_t)n * esize);
    gs_shm_barrier(s);
    reduce_chunk(s, buf, first, n, dtype, reduce);
    gs_shm_barrier(s); /* the slots are free again */
  }
  return GS_OK;
}

void gs_shm_all_gather(gs_shm *s, int rank, const void *src, void *dst, size_t bytes) {
  for (size_t first = 0; first < bytes; first += s->slot_bytes) {
    size_t n = bytes - first < s->slot_bytes ? bytes - first : s->slot_bytes;
    memcpy(slot(s, rank), (const unsigned char *)src + first, n);
    gs_shm_barrier(s);
    for (int r = 0; r < s->ranks; r++) memcpy((unsigned char *)dst + (size_t)r * bytes + first, slot(s, r), n);
    gs_shm_barrier(s);
  }
}

void gs_shm_broadcast(gs_shm *s, int rank, void *buf, size_t bytes, int root) {
  for (size_t first = 0; first < bytes; first += s->slot_bytes) {
    size_t n = bytes - first < s->slot_bytes ? bytes - first : s->slot_bytes;
    if (rank == root) memcpy(slot(s, root), (unsigned char *)buf + first, n);
    gs_shm_barrier(s);
    if (rank != root) memcpy((unsigned char *)buf + first, slot(s, root), n);
    gs_shm_barrier(s);
  }
}

int gs_dist_fork(void) {
  fflush(NULL);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    /* a rank must not outlive the process that waits for it */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(125);
  }
  return (int)pid;
}

int gs_dist_poll(int pid, int *code, int *term_signal) {
  int status = 0;
  pid_t r;
  do r = waitpid((pid_t)pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r < 0) return -1;
  if (r == 0) return 0;
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  *term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return 1;
}

void gs_dist_kill(int pid) {
  if (pid > 0) kill((pid_t)pid, SIGKILL);
}

void gs_dist_exit(int code) {
  fflush(NULL);
  _exit(code);
}

int gs_dist_getpid(void) { return (int)getpid(); }
