/* The double-precision reference of the cross-entropy family: the formulas of
 * LOSSES.md as plain loops, one row at a time, in f64. It is the oracle the
 * other backends are checked against, so it is written to be read, not to be
 * fast. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../cross_entropy.h"
#include "../cross_entropy_check.h"
#include "../gs_half.h"
#include "../mutants.h"

typedef struct {
  const gs_ce_args *a;
  int backward;     /* 1: write grad only */
  double *y;        /* the current row times the scale: y_j = s x_j */
  double *z;        /* and after the softcap: z_j = c tanh(y_j / c) */
  double m, l;      /* the current row's lse = m + l */
  double wsum;      /* W = sum_j w_j */
  double smooth;    /* eps / V */
  double ce_div;    /* 1/D under mean, else 1 */
  int64_t ignore;   /* the ignore_index in effect (the IGNORE_VALID mutant moves it) */
  double zl_div;    /* 1/(non-ignored rows) under mean, else 1 */
} ref_ctx;

static double logit_at(const gs_ce_args *a, int64_t i, int64_t j) {
  int64_t k = i * a->logits_stride + j;
  switch (a->logits_dtype) {
  case GS_F64: return ((const double *)a->logits)[k];
  case GS_F32: return ((const float *)a->logits)[k];
  case GS_BF16: return gs_bf16_to_f32(((const uint16_t *)a->logits)[k]);
  default: return gs_f16_to_f32(((const uint16_t *)a->logits)[k]);
  }
}

/* f64 -> f32 rounding to odd: the second rounding (to bf16 or f16, which
 * keep far fewer bits) is then the correctly rounded f64 -> half result. */
static float f32_round_odd(double x) {
  float f = (float)x;
  if (fabs((double)f) > fabs(x)) f = nextafterf(f, 0.0f);
  if ((double)f != x && !isnan(x)) f = gs_bits_f32(gs_f32_bits(f) | 1u);
  return f;
}

static void grad_put(const gs_ce_args *a, int64_t i, int64_t j, double g) {
  int64_t k = i * a->grad_stride + j;
  switch (a->grad_dtype) {
  case GS_F64: ((double *)a->grad)[k] = g; break;
  case GS_F32: ((float *)a->grad)[k] = (float)g; break;
  case GS_BF16: ((uint16_t *)a->grad)[k] = gs_f32_to_bf16(f32_round_odd(g)); break;
  default: ((uint16_t *)a->grad)[k] = gs_f32_to_f16(f32_round_odd(g)); break;
  }
}

static int64_t target_raw(const gs_ce_args *a, int64_t i) { return gs_ce_target_at(a->target, a->target_dtype, i); }

static int64_t target_class(const gs_ce_args *a, int64_t raw) {
  return GS_MUTANT(GS_MUT_TARGET_OFF_BY_ONE) ? (raw + 1) % a->v : raw;
}

static double weight_of(const gs_ce_args *a, int64_t j) { return a->weight ? a->weight[j] : 1.0; }

static double grad_output_at(const gs_ce_args *a, int64_t i) {
  const double *go = a->grad_output;
  if (!go) return 1.0;
  return a->grad_output_n == 1 || GS_MUTANT(GS_MUT_GRAD_OUTPUT_ROW0) ? go[0] : go[i];
}

/* Loads row i: y_j = s x_j, z_j = y_j or c tanh(y_j / c) with softcap, and
 * lse = m + l where m is the row max and l = log(1 + sum_{j != k} exp(z_j - m)),
 * k the first index of the max. The shift keeps exp() from overflowing; the
 * split keeps 1 - p_k, made of the other terms alone, even far below 1e-16.
 * A NaN anywhere becomes the "max" and poisons everything; so does +inf. */
static void load_row(ref_ctx *c, int64_t i) {
  const gs_ce_args *a = c->a;
  int64_t k = 0;
  /* the CAP_BEFORE_SCALE mutant: y = x, z = s c tanh(y / c) (its chain, s sech^2(y / c), follows) */
  const int cap_first = GS_MUTANT(GS_MUT_CAP_BEFORE_SCALE) && a->softcap > 0;
  for (int64_t j = 0; j < a->v; j++) {
    c->y[j] = (cap_first ? 1.0 : a->logit_scale) * logit_at(a, i, j);
    c->z[j] = a->softcap > 0 ? (cap_first ? a->logit_scale : 1.0) * a->softcap * tanh(c->y[j] / a->softcap) : c->y[j];
    if (!isnan(c->z[k]) && (isnan(c->z[j]) || c->z[j] > c->z[k])) k = j;
  }
  double rest = 0;
  if (GS_MUTANT(GS_MUT_LSE_NO_MAX)) {
    c->m = 0;
    for (int64_t j = 0; j < a->v; j++) rest += exp(c->z[j]);
    c->l = log(rest);
    return;
  }
  c->m = c->z[k];
  /* A +inf logit poisons its row, as in PyTorch (exp(inf - inf) is NaN
   * there too): the fast kernels make the same choice. A row of -inf
   * logits only has no distribution and is NaN too (docs/losses.md,
   * section 2): with V = 1 there is no other term to make the NaN, and
   * lse would come out as -inf. */
  if (c->m == INFINITY || c->m == -INFINITY) {
    c->l = NAN;
    return;
  }
  for (int64_t j = 0; j < a->v; j++)
    if (j != k) rest += exp(c->z[j] - c->m);
  c->l = log1p(rest);
}

/* log p_j = z_j - lse, without ever rounding lse itself (the LSE_ROUNDED
 * mutant forms lse = m + l first, which drops l once |m| >> l). */
static double log_p(const ref_ctx *c, int64_t j) {
  if (GS_MUTANT(GS_MUT_LSE_ROUNDED)) return c->z[j] - (c->m + c->l);
  return (c->z[j] - c->m) - c->l;
}

/* The target's log p_t, and p_t - 1 from it: expm1, which keeps 1 - p_t
 * when p_t rounds to 1. The CONFIDENT_CANCEL mutant takes z_t - lse from a
 * rounded lse and p_t - 1 as a difference: both 0 for a confident row. */
static double log_p_target(const ref_ctx *c, int64_t t) {
  if (GS_MUTANT(GS_MUT_CONFIDENT_CANCEL)) return c->z[t] - (c->m + c->l);
  return log_p(c, t);
}

static double p_minus_1(double lp) { return GS_MUTANT(GS_MUT_CONFIDENT_CANCEL) ? exp(lp) - 1 : expm1(lp); }

/* dx/dz_j: s (1 - (z_j/c)^2) with softcap, s without. 1 - (z/c)^2 is
 * evaluated as sech^2(y/c), which does not cancel where tanh nears 1. */
static double chain(const ref_ctx *c, int64_t j) {
  const gs_ce_args *a = c->a;
  double d = GS_MUTANT(GS_MUT_SCALE_BACKWARD) ? 1.0 : a->logit_scale;
  if (a->softcap > 0 && !GS_MUTANT(GS_MUT_SOFTCAP_CHAIN)) {
    double ch = cosh(c->y[j] / a->softcap);
    d /= ch * ch;
  }
  return GS_MUTANT(GS_MUT_GRAD_SIGN) ? -d : d;
}

/* An ignored row's gradient is zero; the IGNORED_GRAD mutant leaks g * softmax. */
static void ignored_grad_row(ref_ctx *c, int64_t i, double g) {
  const gs_ce_args *a = c->a;
  if (!GS_MUTANT(GS_MUT_IGNORED_GRAD)) {
    for (int64_t j = 0; j < a->v; j++) grad_put(a, i, j, 0.0);
    return;
  }
  load_row(c, i);
  for (int64_t j = 0; j < a->v; j++) grad_put(a, i, j, g * exp(log_p(c, j)) * chain(c, j));
}

/* dz_j = g [w_t (1-eps)(p_j - [j==t]) + (eps/V)(W p_j - w_j)] + gz 2 lam lse p_j,
 * with p_t - 1 taken as expm1(z_t - lse): no cancellation when p_t -> 1. */
static void ce_grad_row(const ref_ctx *c, int64_t i, int64_t t, double g, double gz) {
  const gs_ce_args *a = c->a;
  int unweighted = GS_MUTANT(GS_MUT_WEIGHT_BACKWARD);
  int smooth_unweighted = unweighted || GS_MUTANT(GS_MUT_SMOOTH_UNWEIGHTED) || GS_MUTANT(GS_MUT_SMOOTH_TARGET_WEIGHT);
  double wt = unweighted ? 1.0 : weight_of(a, t);
  double smooth = c->smooth * (GS_MUTANT(GS_MUT_SMOOTH_TARGET_WEIGHT) ? wt : 1.0);
  double wsum = smooth_unweighted ? (double)a->v : c->wsum;
  double zfac = GS_MUTANT(GS_MUT_ZLOSS_FACTOR) ? 1.0 : 2.0;
  for (int64_t j = 0; j < a->v; j++) {
    double p = exp(log_p(c, j));
    double p_minus_onehot = j == t ? p_minus_1(log_p_target(c, j)) : p;
    double wj = smooth_unweighted ? 1.0 : weight_of(a, j);
    double dz = g * (wt * (1 - a->label_smoothing) * p_minus_onehot + smooth * (wsum * p - wj));
    if (a->lse_square_scale > 0) dz += gz * zfac * a->lse_square_scale * (c->m + c->l) * p;
    grad_put(a, i, j, dz * chain(c, j));
  }
}

static void ce_row(ref_ctx *c, int64_t i, double *ce_sum, double *zl_sum) {
  const gs_ce_args *a = c->a;
  int64_t raw = target_raw(a, i);
  double go = grad_output_at(a, i);
  if (raw == c->ignore) {
    if (!c->backward) {
      if (a->reduction == GS_REDUCE_NONE) ((double *)a->loss)[i] = 0;
      if (a->lse) ((double *)a->lse)[i] = 0;
      if (a->z_loss) ((double *)a->z_loss)[i] = 0;
    }
    if (a->grad) ignored_grad_row(c, i, go * c->ce_div);
    return;
  }
  int64_t t = target_class(a, raw);
  load_row(c, i);
  if (!c->backward) {
    double eps = a->label_smoothing, lse = c->m + c->l;
    double ce = (1 - eps) * -weight_of(a, t) * log_p_target(c, t);
    if (eps > 0) {
      double smo = 0;
      for (int64_t j = 0; j < a->v; j++) {
        int unweighted = GS_MUTANT(GS_MUT_SMOOTH_UNWEIGHTED) || GS_MUTANT(GS_MUT_SMOOTH_TARGET_WEIGHT);
        double term = -(unweighted ? 1.0 : weight_of(a, j)) * log_p(c, j);
        smo += term;
        /* the SMOOTH_OVERFLOW mutant: inf wherever an f32 term or sum would be */
        if (GS_MUTANT(GS_MUT_SMOOTH_OVERFLOW) && (fabs(term) > FLT_MAX || fabs(smo) > FLT_MAX)) smo = INFINITY;
      }
      ce += c->smooth * smo * (GS_MUTANT(GS_MUT_SMOOTH_TARGET_WEIGHT) ? weight_of(a, t) : 1.0);
    }
    double zl = a->lse_square_scale > 0 ? a->lse_square_scale * lse * lse : 0;
    if (a->reduction == GS_REDUCE_NONE) ((double *)a->loss)[i] = ce + zl;
    if (a->lse) ((double *)a->lse)[i] = lse;
    if (a->z_loss) ((double *)a->z_loss)[i] = zl;
    *ce_sum += ce;
    *zl_sum += zl;
  }
  if (a->grad) ce_grad_row(c, i, t, go * c->ce_div, go * c->zl_div);
}

/* log_probs = z_t - lse; d/dz_j = [j==t] - p_j, with 1 - p_t = -expm1(z_t - lse). */
static void log_probs_row(ref_ctx *c, int64_t i) {
  const gs_ce_args *a = c->a;
  double sign = GS_MUTANT(GS_MUT_LOG_PROBS_SIGN) ? -1.0 : 1.0;
  int64_t raw = target_raw(a, i);
  double go = grad_output_at(a, i);
  if (raw == c->ignore) {
    if (!c->backward) ((double *)a->loss)[i] = 0;
    if (a->grad) ignored_grad_row(c, i, -sign * go);
    return;
  }
  int64_t t = target_class(a, raw);
  load_row(c, i);
  if (!c->backward) ((double *)a->loss)[i] = sign * log_p_target(c, t);
  if (!a->grad) return;
  for (int64_t j = 0; j < a->v; j++) {
    double onehot_minus_p = j == t ? -p_minus_1(log_p_target(c, j)) : -exp(log_p(c, j));
    grad_put(a, i, j, sign * go * onehot_minus_p * chain(c, j));
  }
}

/* entropy = lse - sum_j p_j z_j, where p_j z_j is 0 when p_j is (the limit
 * p log p -> 0, so -inf logits add nothing); d/dz_j = p_j (mu - z_j), mu =
 * sum_k p_k z_k. Both are taken relative to the max m: (lse - m) - sum_j p_j
 * (z_j - m) adds two terms >= 0, where lse - mu would cancel for a peaked row. */
static void entropy_row(ref_ctx *c, int64_t i) {
  const gs_ce_args *a = c->a;
  double sign = GS_MUTANT(GS_MUT_ENTROPY_SIGN) ? -1.0 : 1.0;
  load_row(c, i);
  double mu_m = 0;
  for (int64_t j = 0; j < a->v; j++) {
    double p = exp(log_p(c, j));
    if (p != 0) mu_m += p * (c->z[j] - c->m);
  }
  if (!c->backward) ((double *)a->loss)[i] = sign * (c->l - mu_m);
  if (!a->grad) return;
  double g = sign * grad_output_at(a, i);
  for (int64_t j = 0; j < a->v; j++) {
    double p = exp(log_p(c, j));
    double dz = p != 0 ? g * p * (mu_m - (c->z[j] - c->m)) : 0.0;
    grad_put(a, i, j, dz * chain(c, j));
  }
}

static gs_status run_ref(const gs_ce_args *a, gs_ce_op op, int backward, gs_error *err) {
  gs_status st = gs_ce_check_args(a, op, backward, 1, err);
  if (st != GS_OK) return st;
  double d = 0, count = 0;
  /* mutants: an ignore_index in [0, V) that ignores nothing; target V - 1 out of range */
  int64_t ignore = GS_MUTANT(GS_MUT_IGNORE_VALID) && a->ignore_index >= 0 ? INT64_MIN : a->ignore_index;
  int64_t v_check = GS_MUTANT(GS_MUT_TARGET_LAST) && a->v > 1 ? a->v - 1 : a->v;
  if (op != GS_OP_ENTROPY &&
      (st = gs_ce_scan_targets(a->target, a->target_dtype, a->n, v_check, ignore, a->weight,
                               GS_MUTANT(GS_MUT_TARGET_OFF_BY_ONE) ? 1 : 0, &d, &count, err)) != GS_OK)
    return st;
  if (GS_MUTANT(GS_MUT_MEAN_BY_N)) d = (double)a->n;

  ref_ctx c = {.a = a, .backward = backward, .ce_div = 1, .zl_div = 1, .ignore = ignore};
  int64_t v_smooth = GS_MUTANT(GS_MUT_SMOOTH_V_MINUS_1) && a->v > 1 ? a->v - 1 : a->v;
  c.smooth = a->label_smoothing / (double)v_smooth;
  for (int64_t j = 0; j < a->v; j++) c.wsum += weight_of(a, j);
  int mean = op == GS_OP_CE && a->reduction == GS_REDUCE_MEAN;
  if (mean) {
    c.ce_div = 1 / d;
    c.zl_div = GS_MUTANT(GS_MUT_ZLOSS_MEAN_BY_D) ? 1 / d : 1 / count;
    /* the SMOOTH_MEAN_BY_ROWS mutant: (smoothing sum) / K, whatever the weights */
    if (GS_MUTANT(GS_MUT_SMOOTH_MEAN_BY_ROWS) && count > 0) c.smooth *= d / count;
  }
  if (a->n > 0) {
    c.y = malloc((size_t)a->v * sizeof *c.y);
    c.z = malloc((size_t)a->v * sizeof *c.z);
    if (!c.y || !c.z) {
      free(c.y);
      free(c.z);
      err->arg = "logits";
      snprintf(err->msg, sizeof err->msg, "no memory for a row of %lld values", (long long)a->v);
      return GS_ERR_NOMEM;
    }
  }

  double ce_sum = 0, zl_sum = 0;
  for (int64_t i = 0; i < a->n; i++) {
    if (op == GS_OP_CE) ce_row(&c, i, &ce_sum, &zl_sum);
    else if (op == GS_OP_LOG_PROBS) log_probs_row(&c, i);
    else entropy_row(&c, i);
  }
  if (op == GS_OP_CE && !backward && a->reduction != GS_REDUCE_NONE)
    *(double *)a->loss = mean ? ce_sum / d + zl_sum / (GS_MUTANT(GS_MUT_ZLOSS_MEAN_BY_D) ? d : count) : ce_sum + zl_sum;
  free(c.y);
  free(c.z);
  return GS_OK;
}

gs_status gs_ce_forward_ref(const gs_ce_args *a, gs_error *err) { return run_ref(a, GS_OP_CE, 0, err); }
gs_status gs_ce_backward_ref(const gs_ce_args *a, gs_error *err) { return run_ref(a, GS_OP_CE, 1, err); }
gs_status gs_log_probs_forward_ref(const gs_ce_args *a, gs_error *err) { return run_ref(a, GS_OP_LOG_PROBS, 0, err); }
gs_status gs_log_probs_backward_ref(const gs_ce_args *a, gs_error *err) { return run_ref(a, GS_OP_LOG_PROBS, 1, err); }
gs_status gs_entropy_forward_ref(const gs_ce_args *a, gs_error *err) { return run_ref(a, GS_OP_ENTROPY, 0, err); }
gs_status gs_entropy_backward_ref(const gs_ce_args *a, gs_error *err) { return run_ref(a, GS_OP_ENTROPY, 1, err); }
