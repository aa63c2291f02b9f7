/* Fused, chunked linear cross entropy on the CPU against the unfused path,
 * both measured in the same run on the same inputs:
 *
 *   unfused  x = h W^T for all N rows (one sgemm), the cross-entropy kernel's
 *            fused forward+backward over x in place, dh = G W and dW = G^T h
 *            (two sgemms); N x V floats of logits live at once
 *   fused    gs_lce_forward_cpu: the same four steps chunk_rows rows at a time
 *
 * For each: the median time of the whole forward+backward, and the peak of
 * heap bytes allocated during the call beyond its inputs and outputs. The
 * peak is measured by wrapping malloc, calloc, realloc, free and the aligned
 * allocators of this process (the kernels' buffers and OpenBLAS's and
 * glibc's own mallocs); OpenBLAS's mmap'd GEMM buffers are set up on the
 * warm-up call and are the same for both paths.
 *
 *   bench_linear_cross_entropy_cpu [--reps R] [--chunk-rows C] [--sweep C1,C2,...]
 *                                  [--n N] [--h H] [--v V] [--bias] [--check]
 *
 * Goals (N=2048, H=1024, V=32000): fused peak memory <= 1/8 of unfused, time
 * <= 1.1x. --check compares the two paths on small odd shapes (PASS/FAIL). */
#define _GNU_SOURCE
#include <cblas.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cross_entropy.h"
#include "linear_cross_entropy.h"
#include "bench_util.h"

/* ---- heap accounting: every allocation of the process goes through here ---- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static size_t g_in_use, g_peak;

static void note_alloc(void *p) {
  if (!p) return;
  size_t now = __atomic_add_fetch(&g_in_use, malloc_usable_size(p), __ATOMIC_RELAXED);
  size_t peak = __atomic_load_n(&g_peak, __ATOMIC_RELAXED);
  while (now > peak && !__atomic_compare_exchange_n(&g_peak, &peak, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

static void note_free(void *p) {
  if (p) __atomic_sub_fetch(&g_in_use, malloc_usable_size(p), __ATOMIC_RELAXED);
}

void *malloc(size_t n) {
  void *p = __libc_malloc(n);
  note_alloc(p);
  return p;
}

void *calloc(size_t k, size_t n) {
  void *p = __libc_calloc(k, n);
  note_alloc(p);
  return p;
}

void *realloc(void *old, size_t n) {
  note_free(old);
  void *p = __libc_realloc(old, n);
  note_alloc(p ? p : (n ? old : NULL)); /* a failed realloc keeps the old block */
  return p;
}

void free(void *p) {
  note_free(p);
  __libc_free(p);
}

void *memalign(size_t align, size_t n) {
  void *p = __libc_memalign(align, n);
  note_alloc(p);
  return p;
}

void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void **out, size_t align, size_t n) {
  void *p = memalign(align, n);
  if (!p) return 12; /* ENOMEM */
  *out = p;
  return 0;
}

static void reset_peak(void) { __atomic_store_n(&g_peak, __atomic_load_n(&g_in_use, __ATOMIC_RELAXED), __ATOMIC_RELAXED); }
static size_t in_use(void) { return __atomic_load_n(&g_in_use, __ATOMIC_RELAXED); }
static size_t peak(void) { return __atomic_load_n(&g_peak, __ATOMIC_RELAXED); }

/* ---- the two paths ---- */

typedef struct {
  int64_t n, hd, v;
  float *h, *w, *bias;
  int64_t *target;
} problem;

typedef struct {
  float loss;
  float *dh, *dw, *db;
} result;

static void die(const char *what, gs_status st, const gs_error *err) {
  fprintf(stderr, "%s failed: status %d: %s\n", what, (int)st, err->msg);
  exit(1);
}

static gs_lce_args lce_args(const problem *p, result *r, int64_t chunk_rows) {
  gs_lce_args a = {
    .n = p->n, .hidden = p->hd, .v = p->v, .h = p->h, .h_dtype = GS_F32, .h_stride = p->hd, .w = p->w,
    .w_dtype = GS_F32, .w_stride = p->hd, .bias = p->bias, .bias_dtype = GS_F32, .target = p->target,
    .target_dtype = GS_I64, .ignore_index = -100, .logit_scale = 1, .reduction = GS_REDUCE_MEAN, .loss = &r->loss,
    .dh = r->dh, .dh_dtype = GS_F32, .dh_stride = p->hd, .dw = r->dw, .dw_dtype = GS_F32, .dw_stride = p->hd,
    .db = p->bias ? r->db : NULL, .db_dtype = GS_F32, .chunk_rows = chunk_rows,
  };
  return a;
}

static void run_fused(const problem *p, result *r, int64_t chunk_rows) {
  gs_error err = {0};
  gs_lce_args a = lce_args(p, r, chunk_rows);
  gs_status st = gs_lce_forward_cpu(&a, &err);
  if (st != GS_OK) die("gs_lce_forward_cpu", st, &err);
}

static void run_unfused(const problem *p, result *r) {
  const int64_t n = p->n, hd = p->hd, v = p->v, ld = (v + 15) / 16 * 16;
  float *x = aligned_alloc(64, (size_t)(n * ld) * sizeof *x);
  float *ones = p->bias ? malloc((size_t)n * sizeof *ones) : NULL;
  if (!x || (p->bias && !ones)) {
    fprintf(stderr, "out of memory for the unfused logits\n");
    exit(1);
  }
  float beta = 0;
  if (p->bias) {
    for (int64_t i = 0; i < n; i++) memcpy(x + i * ld, p->bias, (size_t)v * sizeof *x);
    for (int64_t i = 0; i < n; i++) ones[i] = 1;
    beta = 1;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)v, (int)hd, 1.0f, p->h, (int)hd, p->w, (int)hd,
              beta, x, (int)ld);
  gs_ce_args ce = {
    .n = n, .v = v, .logits = x, .logits_dtype = GS_F32, .logits_stride = ld, .target = p->target,
    .target_dtype = GS_I64, .ignore_index = -100, .logit_scale = 1, .reduction = GS_REDUCE_MEAN, .loss = &r->loss,
    .grad = x, .grad_dtype = GS_F32, .grad_stride = ld,
  };
  gs_error err = {0};
  gs_status st = gs_ce_forward_cpu(&ce, &err);
  if (st != GS_OK) die("gs_ce_forward_cpu", st, &err);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)hd, (int)v, 1.0f, x, (int)ld, p->w, (int)hd,
              0.0f, r->dh, (int)hd);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)v, (int)hd, (int)n, 1.0f, x, (int)ld, p->h, (int)hd, 0.0f,
              r->dw, (int)hd);
  if (p->bias) cblas_sgemv(CblasRowMajor, CblasTrans, (int)n, (int)v, 1.0f, x, (int)ld, ones, 1, 0.0f, r->db, 1);
  free(ones);
  free(x);
}

/* ---- inputs ---- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_u64(void) {
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double uniform(void) { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

static float normal(void) {
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static void *checked_alloc(size_t bytes) {
  void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) {
    fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
    exit(1);
  }
  return p;
}

/* Logits with a std of about 3, every 17th row ignored. */
static problem make_problem(int64_t n, int64_t hd, int64_t v, int bias) {
  problem p = {.n = n, .hd = hd, .v = v};
  p.h = checked_alloc((size_t)(n * hd) * sizeof(float));
  p.w = checked_alloc((size_t)(v * hd) * sizeof(float));
  p.target = checked_alloc((size_t)n * sizeof(int64_t));
  for (int64_t k = 0; k < n * hd; k++) p.h[k] = normal();
  const float ws = 3.0f / sqrtf((float)hd);
  for (int64_t k = 0; k < v * hd; k++) p.w[k] = ws * normal();
  for (int64_t i = 0; i < n; i++) p.target[i] = i % 17 == 5 ? -100 : (int64_t)(next_u64() % (uint64_t)v);
  if (bias) {
    p.bias = checked_alloc((size_t)v * sizeof(float));
    for (int64_t j = 0; j < v; j++) p.bias[j] = 0.5f * normal();
  }
  return p;
}

static void free_problem(problem *p) {
  free(p->h);
  free(p->w);
  free(p->target);
  free(p->bias);
}

static result make_result(const problem *p) {
  result r = {0};
  r.dh = checked_alloc((size_t)(p->n * p->hd) * sizeof(float));
  r.dw = checked_alloc((size_t)(p->v * p->hd) * sizeof(float));
  r.db = checked_alloc((size_t)p->v * sizeof(float));
  return r;
}

static void free_result(result *r) {
  free(r->dh);
  free(r->dw);
  free(r->db);
}

/* max |a - b| / max |b|: the error relative to the output's scale. */
static double rel_diff(const float *a, const float *b, int64_t n) {
  double d = 0, s = 0;
  for (int64_t k = 0; k < n; k++) {
    double e = fabs((double)a[k] - b[k]);
    if (e > d || isnan(e)) d = isnan(e) ? INFINITY : e;
    if (fabs((double)b[k]) > s) s = fabs((double)b[k]);
  }
  return s > 0 ? d / s : d;
}

/* ---- modes ---- */

typedef struct {
  double ms;
  size_t peak_bytes;
} measure;

static double timed(const problem *p, result *r, int64_t chunk_rows, size_t *peak_bytes) {
  size_t base = in_use();
  reset_peak();
  double t0 = now_s();
  if (chunk_rows < 0) run_unfused(p, r);
  else run_fused(p, r, chunk_rows);
  double t = now_s() - t0;
  if (peak_bytes) *peak_bytes = peak() - base;
  return t;
}

/* Runs the two paths as pairs, in alternating order (warm-up first), and
 * takes each one's median time and heap peak. The time ratio is the median
 * of the pairs' ratios: a pair runs back to back, so that load from other
 * processes, which comes and goes, mostly cancels in it. */
static double compare(const problem *p, int64_t chunk_rows, int reps, measure *fused, measure *unfused, result *rf,
                      result *ru) {
  double tf[64], tu[64], ratio[64];
  run_fused(p, rf, chunk_rows);
  run_unfused(p, ru);
  for (int k = 0; k < reps; k++) {
    size_t *pf = k == 0 ? &fused->peak_bytes : NULL, *pu = k == 0 ? &unfused->peak_bytes : NULL;
    if (k % 2 == 0) {
      tf[k] = timed(p, rf, chunk_rows, pf);
      tu[k] = timed(p, ru, -1, pu);
    } else {
      tu[k] = timed(p, ru, -1, pu);
      tf[k] = timed(p, rf, chunk_rows, pf);
    }
    ratio[k] = tf[k] / tu[k];
  }
  fused->ms = 1e3 * median(tf, reps);
  unfused->ms = 1e3 * median(tu, reps);
  return median(ratio, reps);
}

static int check_mode(void) {
  static const struct { int64_t n, hd, v, chunk; int bias; } cases[] = {
    {13, 19, 37, 4, 1}, {29, 33, 1500, 8, 0}, {64, 17, 301, 64, 1}, {100, 40, 257, 7, 1}, {5, 3, 2, 1, 0},
  };
  int fails = 0;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    problem p = make_problem(cases[c].n, cases[c].hd, cases[c].v, cases[c].bias);
    result rf = make_result(&p), ru = make_result(&p);
    run_fused(&p, &rf, cases[c].chunk);
    run_unfused(&p, &ru);
    double e_loss = fabs((double)rf.loss - ru.loss) / fabs((double)ru.loss);
    double e_dh = rel_diff(rf.dh, ru.dh, p.n * p.hd), e_dw = rel_diff(rf.dw, ru.dw, p.v * p.hd);
    double e_db = p.bias ? rel_diff(rf.db, ru.db, p.v) : 0;
    int ok = e_loss < 1e-5 && e_dh < 1e-5 && e_dw < 1e-5 && e_db < 1e-5;
    fails += !ok;
    printf("%s  N=%lld H=%lld V=%lld chunk_rows=%lld%s: loss %.1e, dh %.1e, dW %.1e, db %.1e (relative to scale)\n",
           ok ? "PASS" : "FAIL", (long long)p.n, (long long)p.hd, (long long)p.v, (long long)cases[c].chunk,
           p.bias ? " bias" : "", e_loss, e_dh, e_dw, e_db);
    free_result(&rf);
    free_result(&ru);
    free_problem(&p);
  }
  printf("%s\n", fails ? "FAIL" : "PASS");
  return fails ? 1 : 0;
}

int main(int argc, char **argv) {
  int64_t n = 2048, hd = 1024, v = 32000, chunk_rows = 0;
  int reps = 5, sweep = 0, bias = 0;
  int64_t sweep_rows[16];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--check")) return check_mode();
    else if (val && !strcmp(a, "--sweep")) {
      for (char *tok = strtok(argv[++i], ","); tok && sweep < 16; tok = strtok(NULL, ",")) sweep_rows[sweep++] = atoll(tok);
    }
    else if (!strcmp(a, "--bias")) bias = 1;
    else if (val && !strcmp(a, "--reps")) reps = atoi(argv[++i]);
    else if (val && !strcmp(a, "--chunk-rows")) chunk_rows = atoll(argv[++i]);
    else if (val && !strcmp(a, "--n")) n = atoll(argv[++i]);
    else if (val && !strcmp(a, "--h")) hd = atoll(argv[++i]);
    else if (val && !strcmp(a, "--v")) v = atoll(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--reps R] [--chunk-rows C] [--sweep C1,C2,...] [--n N] [--h H] [--v V] [--bias] [--check]\n",
              argv[0]);
      return 2;
    }
  }
  if (reps < 1) reps = 1;
  if (reps > 64) reps = 64;

  problem p = make_problem(n, hd, v, bias);
  result rf = make_result(&p), ru = make_result(&p);
  printf("linear cross entropy on the CPU: N=%lld H=%lld V=%lld f32, reduction mean%s; OpenBLAS %d threads; "
         "median of %d\n",
         (long long)n, (long long)hd, (long long)v, bias ? ", bias" : "", openblas_get_num_threads(), reps);
  printf("peak = heap bytes allocated during the call beyond its inputs and outputs\n\n");

  int nrows = sweep ? sweep : 1;
  int ok = 1;
  printf("%-34s %12s %14s %10s %10s\n", "path", "median ms", "peak MiB", "time", "memory");
  for (int s = 0; s < nrows; s++) {
    int64_t rows = sweep ? sweep_rows[s] : chunk_rows;
    int64_t used = rows > 0 ? (rows < n ? rows : n) : gs_lce_default_chunk_rows(n, v, 0);
    measure mf = {0}, mu = {0};
    double tr = compare(&p, rows > 0 ? rows : 0, reps, &mf, &mu, &rf, &ru);
    printf("%-34s %12.1f %14.2f %10s %10s\n", "unfused (all logits)", mu.ms, mu.peak_bytes / 1048576.0, "1", "1");
    char name[64];
    snprintf(name, sizeof name, "fused, chunk_rows = %lld%s", (long long)used, rows > 0 ? "" : " (default)");
    double mr = (double)mf.peak_bytes / (double)mu.peak_bytes;
    printf("%-34s %12.1f %14.2f %9.3fx %9.4fx\n", name, mf.ms, mf.peak_bytes / 1048576.0, tr, mr);
    if (!sweep) ok = tr <= 1.1 && mr <= 0.125;
  }
  printf("\ntime: the median over the pairs of fused / unfused, each pair run back to back\n");
  double e_loss = fabs((double)rf.loss - ru.loss) / fabs((double)ru.loss);
  printf("\nfused vs unfused, max error relative to scale: loss %.1e, dh %.1e, dW %.1e\n", e_loss,
         rel_diff(rf.dh, ru.dh, n * hd), rel_diff(rf.dw, ru.dw, v * hd));
  if (!sweep) printf("goals (time <= 1.1x, memory <= 0.125x): %s\n", ok ? "met" : "NOT met");
  free_result(&rf);
  free_result(&ru);
  free_problem(&p);
  return 0;
}
