/* my_ce: a cross entropy written against gradspec's C contract
 * (cross_entropy.h; the math is docs/losses.md), the way you would write your
 * own kernel before testing it with gradspec.
 *
 *   my_ce_forward         cross_entropy: loss, lse, z_loss; the fused gradient
 *                         when a->grad is non-NULL
 *   my_ce_backward        cross_entropy_backward: the gradient only
 *   my_log_probs_forward  log_probs: z_t - lse per row (<= 0)
 *
 * What it supports, and says so in register.lua: f32 logits, f32 gradients,
 * i32/i64 targets, reduction, ignore_index, logit_scale and softcap. Weights,
 * label smoothing and the z-loss are rejected with GS_ERR_ARG (gradspec never
 * sends them, since the backend does not declare them). Every float output
 * is float (the contract's "real" for backends other than the reference).
 * Each row is computed in double and stored as float.
 *
 * Build: cc -shared -fPIC -O2 -I<gradspec>/kernels my_ce.c -o libmy_ce.so -lm
 *
 * -DPLANT_BUG=N compiles a deliberately broken variant, to show that the
 * specs catch it (check.sh builds each one):
 *   1  log_probs returns +CE instead of -CE (its sign flipped)
 *   2  the softcap chain term is dropped from the gradient
 *   3  the gradient is negated
 *   4  one element is written past the end of every gradient row
 *   5  an ignored row makes the process exit(1), as CHECK macros do */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cross_entropy.h"

#ifndef PLANT_BUG
#define PLANT_BUG 0
#endif

#if GS_CE_ARGS_VERSION != 1
#error "my_ce.c was written for version 1 of gs_ce_args"
#endif

#define MY_EXPORT __attribute__((visibility("default")))

/* ---- reading the arguments ---------------------------------------------- */

static const float *logits_row(const gs_ce_args *a, int64_t i) {
  return (const float *)a->logits + i * a->logits_stride;
}

static float *grad_row(const gs_ce_args *a, int64_t i) { return (float *)a->grad + i * a->grad_stride; }

static int64_t target_of(const gs_ce_args *a, int64_t i) {
  if (a->target_dtype == GS_I32) return ((const int32_t *)a->target)[i];
  return ((const int64_t *)a->target)[i];
}

/* dLoss/dloss_i: NULL means 1; one value applies to every row. */
static double grad_output_of(const gs_ce_args *a, int64_t i) {
  const float *go = a->grad_output;
  if (!go) return 1.0;
  return a->grad_output_n == 1 ? go[0] : go[i];
}

/* z = s x, then c tanh(z / c) with softcap c > 0. */
static double z_of(const gs_ce_args *a, float x) {
  double y = a->logit_scale * (double)x;
  return a->softcap > 0 ? a->softcap * tanh(y / a->softcap) : y;
}

/* dz/dx: s, times 1 - (z/c)^2 with softcap. That factor equals
 * 1 / cosh(y/c)^2, which does not cancel where tanh is close to 1. */
static double chain_of(const gs_ce_args *a, float x) {
  double s = a->logit_scale;
#if PLANT_BUG == 2
  (void)x;
  return s; /* BUG: the softcap factor is forgotten */
#else
  if (a->softcap > 0) {
    double ch = cosh(s * (double)x / a->softcap);
    return s / (ch * ch);
  }
  return s;
#endif
}

/* ---- checks --------------------------------------------------------------- */

static gs_status bad(gs_error *err, gs_status st, const char *arg, const char *msg) {
  err->arg = arg;
  snprintf(err->msg, sizeof err->msg, "my_ce: %s", msg);
  return st;
}

/* is_ce: cross_entropy (1) or log_probs (0); wants_grad: a gradient will be
 * written. */
static gs_status check_args(const gs_ce_args *a, int is_ce, int wants_loss, int wants_grad, gs_error *err) {
  if (a->n < 0) return bad(err, GS_ERR_ARG, "n", "n is negative");
  if (a->v < 1) return bad(err, GS_ERR_ARG, "v", "V must be at least 1");
  if (a->logits_dtype != GS_F32) return bad(err, GS_ERR_DTYPE, "logits_dtype", "logits must be f32");
  if (a->logits_stride < a->v) return bad(err, GS_ERR_ARG, "logits_stride", "logits_stride is smaller than V");
  if (a->target_dtype != GS_I32 && a->target_dtype != GS_I64)
    return bad(err, GS_ERR_DTYPE, "target_dtype", "target must be i32 or i64");
  if (!isfinite(a->logit_scale) || a->logit_scale == 0)
    return bad(err, GS_ERR_ARG, "logit_scale", "logit_scale must be finite and non-zero");
  if (!(a->softcap >= 0) || isinf(a->softcap)) return bad(err, GS_ERR_ARG, "softcap", "softcap must be >= 0 and finite");
  if (a->weight) return bad(err, GS_ERR_ARG, "weight", "class weights are not supported");
  if (a->label_smoothing != 0) return bad(err, GS_ERR_ARG, "label_smoothing", "label smoothing is not supported");
  if (a->lse_square_scale != 0) return bad(err, GS_ERR_ARG, "lse_square_scale", "the z-loss is not supported");
  if (a->reduction != GS_REDUCE_NONE && a->reduction != GS_REDUCE_SUM && a->reduction != GS_REDUCE_MEAN)
    return bad(err, GS_ERR_ARG, "reduction", "unknown reduction");
  if (wants_loss && !a->loss && (a->n > 0 || (is_ce && a->reduction != GS_REDUCE_NONE)))
    return bad(err, GS_ERR_ARG, "loss", "no loss buffer");
  if (wants_grad) {
    if (!a->grad && a->n > 0) return bad(err, GS_ERR_ARG, "grad", "no gradient buffer");
    if (a->grad_dtype != GS_F32) return bad(err, GS_ERR_DTYPE, "grad_dtype", "the gradient must be f32");
    if (a->grad_stride < a->v) return bad(err, GS_ERR_ARG, "grad_stride", "grad_stride is smaller than V");
    if (a->grad_output && a->grad_output_n != 1 && a->grad_output_n != a->n)
      return bad(err, GS_ERR_ARG, "grad_output", "grad_output needs 1 or n values");
    if (is_ce && a->grad_output && a->grad_output_n != 1 && a->reduction != GS_REDUCE_NONE)
      return bad(err, GS_ERR_ARG, "grad_output", "one grad_output value per row needs reduction \"none\"");
  }
  return GS_OK;
}

#if PLANT_BUG == 5
/* BUG: a CHECK macro that ends the process, and a range check that forgets
 * that ignore_index is a legal target. */
#define MY_CHECK(cond)                                                  \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "my_ce.c:%d: check failed: %s\n", __LINE__, #cond); \
      exit(1);                                                          \
    }                                                                   \
  } while (0)
#endif

/* Every target is checked before anything is written; the lowest bad row is
 * reported. *count gets the number of rows that are not ignored. */
static gs_status check_targets(const gs_ce_args *a, int64_t *count, gs_error *err) {
  *count = 0;
  for (int64_t i = 0; i < a->n; i++) {
    int64_t t = target_of(a, i);
#if PLANT_BUG == 5
    MY_CHECK(t >= 0 && t < a->v);
#endif
    if (t == a->ignore_index) continue;
    if (t < 0 || t >= a->v) {
      err->row = i;
      err->value = t;
      err->arg = "target";
      snprintf(err->msg, sizeof err->msg, "my_ce: target[%lld] = %lld is outside [0, %lld)", (long long)i,
               (long long)t, (long long)a->v);
      return GS_ERR_TARGET;
    }
    *count += 1;
  }
  return GS_OK;
}

/* ---- one row -------------------------------------------------------------- */

/* lse = m + l, with m the row maximum of z and l = log(1 + sum of
 * exp(z_j - m) over every j but the (first) maximum). Keeping the two parts
 * apart keeps a confident row's digits: log p_t = (z_t - m) - l, and 1 - p_t
 * is -expm1(log p_t), never 1 minus a rounded p_t. A NaN or +inf logit
 * makes l (and so everything in the row) NaN. */
typedef struct {
  double m, l;
} row_lse;

static row_lse lse_of(const gs_ce_args *a, const float *x) {
  row_lse r = {-INFINITY, 0.0};
  int64_t k = 0;
  for (int64_t j = 0; j < a->v; j++) {
    double z = z_of(a, x[j]);
    if (isnan(z)) return (row_lse){NAN, NAN};
    if (z > r.m) {
      r.m = z;
      k = j;
    }
  }
  if (r.m == INFINITY || r.m == -INFINITY) return (row_lse){r.m, NAN}; /* +inf, or every logit -inf */
  double rest = 0;
  for (int64_t j = 0; j < a->v; j++)
    if (j != k) rest += exp(z_of(a, x[j]) - r.m);
  r.l = log1p(rest);
  return r;
}

/* log p_j = z_j - lse */
static double log_p(const gs_ce_args *a, row_lse r, float x) { return (z_of(a, x) - r.m) - r.l; }

/* Row i of the gradient: dx_j = g (p_j - [j == t]) dz/dx_j. cross_entropy
 * passes g = its dLoss/dloss_i, log_probs passes -g. */
static void write_grad_row(const gs_ce_args *a, int64_t i, int64_t t, row_lse r, double g) {
  const float *x = logits_row(a, i);
  float *dx = grad_row(a, i);
#if PLANT_BUG == 3
  g = -g; /* BUG: the gradient's sign */
#endif
  for (int64_t j = 0; j < a->v; j++) {
    double lp = log_p(a, r, x[j]);
    double p_minus_onehot = j == t ? expm1(lp) : exp(lp);
    dx[j] = (float)(g * p_minus_onehot * chain_of(a, x[j]));
  }
#if PLANT_BUG == 4
  dx[a->v] = 0.0f; /* BUG: one element past the end of the row */
#endif
}

static void zero_grad_row(const gs_ce_args *a, int64_t i) {
  float *dx = grad_row(a, i);
  for (int64_t j = 0; j < a->v; j++) dx[j] = 0.0f;
#if PLANT_BUG == 4
  dx[a->v] = 0.0f; /* BUG: one element past the end of the row */
#endif
}

/* ---- cross entropy -------------------------------------------------------- */

/* backward = 1: the gradient only. Otherwise the loss, lse and z_loss, and
 * the gradient too when a->grad is set (the fused forward+backward). */
static gs_status cross_entropy(const gs_ce_args *a, int backward, gs_error *err) {
  int wants_grad = backward || a->grad != NULL;
  gs_status st = check_args(a, 1, !backward, wants_grad, err);
  if (st != GS_OK) return st;
  int64_t count;
  if ((st = check_targets(a, &count, err)) != GS_OK) return st;

  /* "mean" divides by the number of rows that are not ignored: 0/0 = NaN
   * when there are none, as in PyTorch. Its gradient carries the same 1/count. */
  int mean = a->reduction == GS_REDUCE_MEAN;
  double scale = mean ? 1.0 / (double)count : 1.0;
  float *loss = a->loss, *lse_out = a->lse, *zl_out = a->z_loss;
  double total = 0;

  for (int64_t i = 0; i < a->n; i++) {
    int64_t t = target_of(a, i);
    if (t == a->ignore_index) {
      if (!backward) {
        if (a->reduction == GS_REDUCE_NONE) loss[i] = 0.0f;
        if (lse_out) lse_out[i] = 0.0f;
        if (zl_out) zl_out[i] = 0.0f;
      }
      if (wants_grad) zero_grad_row(a, i);
      continue;
    }
    const float *x = logits_row(a, i);
    row_lse r = lse_of(a, x);
    if (!backward) {
      double ce = -log_p(a, r, x[t]);
      if (a->reduction == GS_REDUCE_NONE) loss[i] = (float)ce;
      total += ce;
      if (lse_out) lse_out[i] = (float)(r.m + r.l);
      if (zl_out) zl_out[i] = 0.0f; /* no z-loss here */
    }
    /* In the fused forward the gradient is written after the whole row was
     * read, so the gradient may overwrite the logits in place. */
    if (wants_grad) write_grad_row(a, i, t, r, grad_output_of(a, i) * scale);
  }
  if (!backward && a->reduction != GS_REDUCE_NONE) loss[0] = (float)(mean ? total / (double)count : total);
  return GS_OK;
}

MY_EXPORT gs_status my_ce_forward(const gs_ce_args *a, gs_error *err) { return cross_entropy(a, 0, err); }

MY_EXPORT gs_status my_ce_backward(const gs_ce_args *a, gs_error *err) { return cross_entropy(a, 1, err); }

/* ---- log_probs ------------------------------------------------------------ */

/* loss[i] = z_t - lse = log p_t, per row (reduction does not apply); 0 on
 * ignored rows. With a->grad set, also its gradient g ([j == t] - p_j). */
MY_EXPORT gs_status my_log_probs_forward(const gs_ce_args *a, gs_error *err) {
  int wants_grad = a->grad != NULL;
  gs_status st = check_args(a, 0, 1, wants_grad, err);
  if (st != GS_OK) return st;
  int64_t count;
  if ((st = check_targets(a, &count, err)) != GS_OK) return st;
  float *out = a->loss;
  for (int64_t i = 0; i < a->n; i++) {
    int64_t t = target_of(a, i);
    if (t == a->ignore_index) {
      out[i] = 0.0f;
      if (wants_grad) zero_grad_row(a, i);
      continue;
    }
    const float *x = logits_row(a, i);
    row_lse r = lse_of(a, x);
#if PLANT_BUG == 1
    out[i] = (float)-log_p(a, r, x[t]); /* BUG: +CE, the sign flipped */
#else
    out[i] = (float)log_p(a, r, x[t]);
#endif
    if (wants_grad) write_grad_row(a, i, t, r, -grad_output_of(a, i));
  }
  return GS_OK;
}
