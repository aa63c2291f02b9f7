/* The four vocab-parallel passes on one row (kernels/vocab_parallel.h), as
 * plain loops over the shard's columns in the type REAL: included by
 * vocab_parallel_ref.c (REAL double) and vocab_parallel.c (REAL float, rows
 * spread over threads). Sums over columns are accumulated in double by both. */
#include <math.h>
#include <stdint.h>

#include "../cross_entropy_check.h"
#include "../gs_half.h"
#include "../vocab_parallel.h"

static inline REAL vp_y(const gs_vp_args *a, int64_t i, int64_t j) {
  int64_t k = i * a->logits_stride + j;
  REAL x;
  switch (a->logits_dtype) {
  case GS_F64: x = (REAL)((const double *)a->logits)[k]; break;
  case GS_F32: x = ((const float *)a->logits)[k]; break;
  case GS_BF16: x = gs_bf16_to_f32(((const uint16_t *)a->logits)[k]); break;
  default: x = gs_f16_to_f32(((const uint16_t *)a->logits)[k]); break;
  }
  return (REAL)a->logit_scale * x;
}

static inline REAL vp_z_of(const gs_vp_args *a, REAL y) {
  return a->softcap > 0 ? (REAL)a->softcap * VP_TANH(y / (REAL)a->softcap) : y;
}

/* dx/dz: s, times sech^2(y/c) with softcap (no cancellation near the cap). */
static inline REAL vp_chain(const gs_vp_args *a, REAL y) {
  if (a->softcap <= 0) return (REAL)a->logit_scale;
  REAL ch = VP_COSH(y / (REAL)a->softcap);
  return (REAL)a->logit_scale / (ch * ch);
}

static inline REAL *vp_stat(const gs_vp_args *a, int k) { return (REAL *)a->stat + (int64_t)k * a->n; }

/* The row's target as a column of this shard, -1 when another shard owns
 * it, -2 when the row is ignored (entropy has no target and ignores none). */
static inline int64_t vp_local_target(const gs_vp_args *a, int64_t i) {
  if (!a->target) return -1;
  int64_t t = gs_ce_target_at(a->target, a->target_dtype, i);
  if (t == a->ignore_index) return -2;
  t -= a->vocab_start;
  return t >= 0 && t < a->v ? t : -1;
}

/* One pass over the shard's row: its max m and s = sum_j exp(z_j - m)
 * without the first maximum's own 1, rescaled whenever the max grows. */
static void vp_max_row(const gs_vp_args *a, int64_t i) {
  REAL m = -INFINITY;
  double s = 0;
  int bad = 0;
  if (vp_local_target(a, i) != -2) {
    for (int64_t j = 0; j < a->v; j++) {
      REAL z = vp_z_of(a, vp_y(a, i, j));
      if (isnan(z) || z == INFINITY) bad = 1;
      else if (z > m) {
        s = (s + 1) * VP_EXP(m - z); /* 0 while m is -inf */
        m = z;
      } else if (z != -INFINITY) {
        s += VP_EXP(z - m);
      }
    }
  }
  vp_stat(a, GS_VP_M_LOCAL)[i] = vp_stat(a, GS_VP_M)[i] = bad ? INFINITY : m;
  vp_stat(a, GS_VP_REST)[i] = (REAL)s;
}

/* With the global M: the shard holding a maximum keeps its s (the max's 1
 * is counted once, through TIES); the others scale theirs to M. */
static void vp_sums_row(const gs_vp_args *a, int64_t i) {
  REAL M = vp_stat(a, GS_VP_M)[i], ml = vp_stat(a, GS_VP_M_LOCAL)[i], s = vp_stat(a, GS_VP_REST)[i];
  int tie = isfinite(M) && ml == M;
  REAL rest = 0;
  if (tie) rest = s;
  else if (isfinite(M) && ml != -INFINITY) rest = VP_EXP(ml - M) * (1 + s);
  vp_stat(a, GS_VP_REST)[i] = rest;
  vp_stat(a, GS_VP_TIES)[i] = (REAL)tie;
}

/* TERMS' sums over the shard's columns: smoothing's sum_j w_j (lse - z_j)
 * and entropy's sum_j p_j (z_j - M). VP_TERMS_SUMS, when the includer
 * defines it, is its own version of this loop. */
static void vp_terms_sums_range(const gs_vp_args *a, int64_t i, int64_t j0, int64_t j1, REAL M, REAL l,
                                int want_smooth, int want_mu, double *smooth, double *mu) {
  for (int64_t j = j0; j < j1; j++) {
    REAL d = vp_z_of(a, vp_y(a, i, j)) - M;
    if (want_smooth) *smooth += (a->weight ? a->weight[j] : 1.0) * ((double)l - (double)d);
    if (want_mu) {
      REAL p = VP_EXP(d - l);
      if (p != 0) *mu += (double)p * d; /* p log p -> 0 where p = 0 */
    }
  }
}
#ifndef VP_TERMS_SUMS
static void vp_terms_sums_plain(const gs_vp_args *a, int64_t i, REAL M, REAL l, int want_smooth, int want_mu,
                                double *smooth, double *mu) {
  vp_terms_sums_range(a, i, 0, a->v, M, l, want_smooth, want_mu, smooth, mu);
}
#define VP_TERMS_SUMS vp_terms_sums_plain
#endif

static void vp_terms_row(const gs_vp_args *a, int64_t i) {
  REAL M = vp_stat(a, GS_VP_M)[i];
  /* a row with a NaN or +inf (M = +inf), or of -inf only, has no distribution */
  REAL l = isfinite(M) ? (REAL)VP_LOG1P(vp_stat(a, GS_VP_REST)[i] + (vp_stat(a, GS_VP_TIES)[i] - 1)) : (REAL)NAN;
  int64_t t = vp_local_target(a, i);
  vp_stat(a, GS_VP_L)[i] = l;
  REAL tz = 0, wt = 0;
  double smooth = 0, mu = 0;
  if (t != -2) {
    if (t >= 0) {
      tz = (vp_z_of(a, vp_y(a, i, t)) - M) - l;
      wt = a->weight ? a->weight[t] : 1;
    }
    int want_smooth = a->op == GS_OP_CE && a->label_smoothing > 0, want_mu = a->op == GS_OP_ENTROPY;
    if (want_smooth || want_mu) VP_TERMS_SUMS(a, i, M, l, want_smooth, want_mu, &smooth, &mu);
  }
  vp_stat(a, GS_VP_TZ)[i] = tz;
  vp_stat(a, GS_VP_WT)[i] = wt;
  vp_stat(a, GS_VP_SMOOTH)[i] = (REAL)smooth;
  vp_stat(a, GS_VP_MU)[i] = (REAL)mu;
}

/* What the gradient of row i needs besides its columns. */
typedef struct {
  REAL M, l, wt, mu, g, gz, eps, smooth, zl, wsum;
} vp_grad_k;

static inline vp_grad_k vp_grad_consts(const gs_vp_args *a, int64_t i) {
  vp_grad_k k;
  k.M = vp_stat(a, GS_VP_M)[i], k.l = vp_stat(a, GS_VP_L)[i], k.wt = vp_stat(a, GS_VP_WT)[i];
  k.mu = vp_stat(a, GS_VP_MU)[i], k.g = vp_stat(a, GS_VP_G)[i], k.gz = vp_stat(a, GS_VP_GZ)[i];
  k.eps = (REAL)a->label_smoothing, k.smooth = (REAL)(a->label_smoothing / (double)a->vocab_total);
  k.zl = (REAL)(2 * a->lse_square_scale) * (k.M + k.l), k.wsum = (REAL)a->wsum;
  return k;
}

/* dx_j of column j (t: the row's local target, vp_local_target) from y_j = s x_j. */
static inline REAL vp_dx(const gs_vp_args *a, const vp_grad_k *k, int64_t j, int64_t t, REAL y) {
  REAL d = vp_z_of(a, y) - k->M, logp = d - k->l, p = VP_EXP(logp), dz;
  if (a->op == GS_OP_CE) {
    /* p_t - 1 as expm1(log p_t): no cancellation for a confident row */
    REAL pm = j == t ? VP_EXPM1(logp) : p;
    REAL wj = a->weight ? a->weight[j] : 1;
    dz = k->g * (k->wt * (1 - k->eps) * pm + k->smooth * (k->wsum * p - wj));
    if (a->lse_square_scale > 0) dz += k->gz * k->zl * p;
  } else if (a->op == GS_OP_LOG_PROBS) {
    dz = k->g * (j == t ? -VP_EXPM1(logp) : -p);
  } else {
    dz = p != 0 ? k->g * p * (k->mu - d) : 0;
  }
  return dz * vp_chain(a, y);
}

static void vp_grad_row(const gs_vp_args *a, int64_t i) {
  int64_t t = vp_local_target(a, i);
  if (t == -2) {
    for (int64_t j = 0; j < a->v; j++) VP_GRAD_PUT(a, i, j, 0.0);
    return;
  }
  vp_grad_k k = vp_grad_consts(a, i);
  for (int64_t j = 0; j < a->v; j++) VP_GRAD_PUT(a, i, j, vp_dx(a, &k, j, t, vp_y(a, i, j)));
}

static void vp_row(const gs_vp_args *a, int pass, int64_t i) {
  switch (pass) {
  case GS_VP_MAX: vp_max_row(a, i); break;
  case GS_VP_SUMS: vp_sums_row(a, i); break;
  case GS_VP_TERMS: vp_terms_row(a, i); break;
  default: vp_grad_row(a, i); break;
  }
}

/* The checks both backends make before a pass. */
static gs_status vp_check(const gs_vp_args *a, int pass, int wide_ok, gs_error *err) {
  const char *bad = NULL;
  if (a->n < 0) bad = "n";
  else if (a->v < 1 || a->vocab_start < 0 || a->vocab_start + a->v > a->vocab_total) bad = "v";
  else if (a->logits_stride < a->v) bad = "logits_stride";
  else if (!a->stat) bad = "stat";
  else if (pass < GS_VP_MAX || pass > GS_VP_GRAD) bad = "pass";
  else if (pass == GS_VP_GRAD && (!a->grad || a->grad_stride < a->v)) bad = "grad";
  if (bad) {
    err->arg = bad;
    snprintf(err->msg, sizeof err->msg, "vocab-parallel pass %d: bad %s", pass, bad);
    return GS_ERR_ARG;
  }
  if ((a->logits_dtype == GS_F64 && !wide_ok) || a->logits_dtype > GS_F16 ||
      (pass == GS_VP_GRAD && ((a->grad_dtype == GS_F64 && !wide_ok) || a->grad_dtype > GS_F16))) {
    err->arg = "logits_dtype";
    snprintf(err->msg, sizeof err->msg, "vocab-parallel: dtype not supported by this backend");
    return GS_ERR_DTYPE;
  }
  return GS_OK;
}
