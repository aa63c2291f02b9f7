/* Benchmark of the CPU cross-entropy kernels against memory bandwidth.
 *
 * For each shape and dtype it times, in the same run: a memcpy of the
 * logits' bytes (the bandwidth yardstick, on the kernel's threads), the fast
 * kernel's forward, its fused forward+backward into a
 * separate gradient and in place over the logits, and the f64 reference.
 * "rows in cache" runs the fused kernel over and over on one thread on a
 * few rows that stay in cache, and scales the time to the whole shape and
 * the thread count: the arithmetic alone, a floor under the fused time
 * that no memory tuning can go below.
 * The memcpy and the fast kernel run interleaved, round after round, so that
 * they share whatever else the machine is doing; times are medians over the
 * rounds. GB/s counts the bytes a call must move:
 * forward reads the logits; forward+backward reads them and writes the
 * gradient; memcpy reads and writes its bytes. "of memcpy" is the ratio of
 * the two bandwidths.
 *
 *   bench_cross_entropy_cpu [--quick] [--threads N] [--repeats N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/parallel.h"
#include "cross_entropy.h"
#include "gs_half.h"
#include "bench_util.h"

typedef struct {
  int repeats;
  int threads;
  int quick;
} bench_opts;

typedef struct {
  char *dst;
  const char *src;
  size_t bytes, slice;
} copy_job;

static void copy_slice(void *ctx, int64_t task, int worker) {
  (void)worker;
  copy_job *j = ctx;
  size_t off = (size_t)task * j->slice;
  size_t len = off + j->slice < j->bytes ? j->slice : j->bytes - off;
  memcpy(j->dst + off, j->src + off, len);
}

static double time_memcpy_split(void *dst, const void *src, size_t bytes, int workers, size_t slice) {
  copy_job j = {dst, src, bytes, slice};
  double t0 = now_s();
  gs_parallel_for(workers, (int64_t)((bytes + slice - 1) / slice), copy_slice, &j);
  return now_s() - t0;
}

/* glibc's memcpy takes different paths for different sizes, and which split
 * over the threads is fastest varies: the yardstick is the best of one copy
 * on one thread, one piece per thread, and 64 MiB pieces shared out. */
static double time_memcpy(void *dst, const void *src, size_t bytes, int workers) {
  double best = time_memcpy_split(dst, src, bytes, 1, bytes);
  size_t per_worker = (bytes / (size_t)workers + 4095) / 4096 * 4096;
  double t = time_memcpy_split(dst, src, bytes, workers, per_worker);
  if (t < best) best = t;
  t = time_memcpy_split(dst, src, bytes, workers, (size_t)64 << 20);
  return t < best ? t : best;
}

typedef gs_status (*ce_fn)(const gs_ce_args *, gs_error *);

static double time_call(ce_fn fn, const gs_ce_args *a) {
  gs_error err;
  double t0 = now_s();
  gs_status st = fn(a, &err);
  double t = now_s() - t0;
  if (st != GS_OK) {
    fprintf(stderr, "kernel failed: %s\n", err.msg);
    exit(1);
  }
  return t;
}

static void *alloc_bytes(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) {
    fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
    exit(1);
  }
  memset(p, 0, bytes); /* fault the pages in before anything is timed */
  return p;
}

static void fill_logits(void *x, gs_dtype dt, size_t count) {
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (size_t k = 0; k < count; k++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    float v = (float)((double)(s >> 11) * (8.0 / 9007199254740992.0) - 4.0);
    if (dt == GS_F32) ((float *)x)[k] = v;
    else ((uint16_t *)x)[k] = gs_f32_to_bf16(v);
  }
}

static void print_row(const char *shape, const char *dt, const char *what, double sec, double bytes,
                      double memcpy_gbs, const char *note) {
  double gbs = bytes / sec * 1e-9;
  printf("%-12s %-5s %-26s %10.2f %9.2f %9.0f%%  %s\n", shape, dt, what, sec * 1e3, gbs, 100 * gbs / memcpy_gbs, note);
}

/* The goal: fused forward+backward, separate and in place, at this
 * fraction of memcpy's bandwidth or more, for every shape and dtype. */
#define GOAL 0.70
static int goal_met = 1;

static void bench_shape(int64_t n, int64_t v, gs_dtype dt, const bench_opts *o) {
  size_t esize = dt == GS_F32 ? 4 : 2, bytes = (size_t)(n * v) * esize;
  const char *dname = dt == GS_F32 ? "f32" : "bf16";
  char shape[32];
  snprintf(shape, sizeof shape, "%lldx%lld", (long long)n, (long long)v);
  void *x = alloc_bytes(bytes), *g = alloc_bytes(bytes), *scratch = alloc_bytes(bytes);
  int64_t *t = alloc_bytes((size_t)n * sizeof *t);
  fill_logits(x, dt, (size_t)(n * v));
  for (int64_t i = 0; i < n; i++) t[i] = (i * 7919) % v;
  float loss = 0;

  gs_ce_args a = {.n = n, .v = v, .logits = x, .logits_dtype = dt, .logits_stride = v, .target = t,
                  .target_dtype = GS_I64, .ignore_index = -100, .logit_scale = 1, .reduction = GS_REDUCE_MEAN,
                  .loss = &loss, .grad_dtype = dt, .grad_stride = v, .threads = o->threads};
  gs_ce_args fused = a, in_place = a;
  fused.grad = g;
  in_place.logits = in_place.grad = scratch;
  /* Rounds interleave the yardstick and the kernels, so that all of them
   * see the same machine (other load, clock) as far as possible. */
  double t_copy[64], t_fwd[64], t_fused[64], t_in_place[64];
  int workers = o->threads > 0 ? o->threads : gs_cpu_count();
  for (int r = 0; r < o->repeats; r++) {
    t_copy[r] = time_memcpy(g, x, bytes, workers);
    t_fwd[r] = time_call(gs_ce_forward_cpu, &a);
    t_fused[r] = time_call(gs_ce_forward_cpu, &fused);
    memcpy(scratch, x, bytes); /* in place: start from the logits again */
    t_in_place[r] = time_call(gs_ce_forward_cpu, &in_place);
  }
  double tm = median(t_copy, o->repeats);
  double memcpy_gbs = 2.0 * (double)bytes / tm * 1e-9;
  print_row(shape, dname, "memcpy (best split)", tm, 2.0 * (double)bytes, memcpy_gbs, "");
  print_row(shape, dname, "fast forward", median(t_fwd, o->repeats), (double)bytes, memcpy_gbs, "");
  double tf = median(t_fused, o->repeats), tp = median(t_in_place, o->repeats);
  print_row(shape, dname, "fast fwd+bwd", tf, 2.0 * (double)bytes, memcpy_gbs, "");
  print_row(shape, dname, "fast fwd+bwd in place", tp, 2.0 * (double)bytes, memcpy_gbs, "");
  if (tf > tm / GOAL || tp > tm / GOAL) goal_met = 0;

  double t_cached[64];
  int64_t crows = ((int64_t)256 << 10) / (v * (int64_t)esize); /* ~256 KiB of logits */
  crows = crows < 1 ? 1 : crows > n ? n : crows;
  gs_ce_args cached = fused;
  cached.n = crows;
  cached.threads = 1;
  for (int r = 0; r < o->repeats; r++) {
    const int calls = 64;
    t_cached[r] = 0;
    for (int k = 0; k < calls; k++) t_cached[r] += time_call(gs_ce_forward_cpu, &cached);
    t_cached[r] *= (double)n / (double)crows / calls / workers;
  }
  char cnote[64];
  snprintf(cnote, sizeof cnote, "(%lld row%s, 1 thread, scaled)", (long long)crows, crows == 1 ? "" : "s");
  print_row(shape, dname, "fast fwd+bwd, rows in cache", median(t_cached, o->repeats), 2.0 * (double)bytes,
            memcpy_gbs, cnote);

  /* the reference is slow: time a few rows and scale to n */
  int64_t rows = o->quick ? 8 : 32;
  rows = rows * 32000 / v > 0 ? rows * 32000 / v : 1;
  char note[64];
  snprintf(note, sizeof note, "(f64; timed on %lld rows, scaled)", (long long)rows);
  double scale = (double)n / (double)rows;
  int reps = o->repeats < 3 ? o->repeats : 3;
  double lossd = 0, t_ref[3];
  gs_ce_args r = a;
  r.n = rows;
  r.logits = x;
  r.loss = &lossd;
  r.grad = NULL;
  for (int k = 0; k < reps; k++) t_ref[k] = time_call(gs_ce_forward_ref, &r);
  print_row(shape, dname, "reference forward", scale * median(t_ref, reps), (double)bytes, memcpy_gbs, note);
  r.grad = g;
  for (int k = 0; k < reps; k++) t_ref[k] = time_call(gs_ce_forward_ref, &r);
  print_row(shape, dname, "reference fwd+bwd", scale * median(t_ref, reps), 2.0 * (double)bytes, memcpy_gbs, note);
  free(x);
  free(g);
  free(scratch);
  free(t);
}

int main(int argc, char **argv) {
  bench_opts o = {.repeats = 11, .threads = 0, .quick = 0};
  for (int k = 1; k < argc; k++) {
    if (!strcmp(argv[k], "--quick")) {
      o.quick = 1;
      o.repeats = 3;
    } else if (!strcmp(argv[k], "--threads") && k + 1 < argc) {
      o.threads = atoi(argv[++k]);
    } else if (!strcmp(argv[k], "--repeats") && k + 1 < argc) {
      o.repeats = atoi(argv[++k]);
    } else {
      fprintf(stderr, "usage: %s [--quick] [--threads N] [--repeats N]\n", argv[0]);
      return 2;
    }
  }
  if (o.repeats < 1) o.repeats = 1;
  if (o.repeats > 64) o.repeats = 64;
  int threads = o.threads > 0 ? o.threads : gs_cpu_count();
  printf("cross entropy, CPU: %d thread%s, median of %d repeats; reduction mean, no options\n", threads,
         threads == 1 ? "" : "s", o.repeats);
  printf("%-12s %-5s %-26s %10s %9s %10s\n", "shape", "dtype", "kernel", "ms", "GB/s", "of memcpy");
  static const int64_t shapes[][2] = {{4096, 32000}, {1024, 128256}};
  static const gs_dtype dts[] = {GS_F32, GS_BF16};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) bench_shape(shapes[s][0], shapes[s][1], dts[d], &o);
  printf("GB/s: bytes moved per second (forward: logits read; fwd+bwd: logits read + gradient written;\n"
         "memcpy: read + write). of memcpy: GB/s over the memcpy GB/s of the same shape and dtype.\n");
  printf("goal, fused fwd+bwd >= %.0f%% of memcpy (separate and in place, every shape and dtype): %s\n", 100 * GOAL,
         goal_met ? "met" : "missed");
  return 0;
}
