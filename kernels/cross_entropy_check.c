#include "cross_entropy_check.h"

#include <math.h>
#include <stdio.h>

static gs_status fail(gs_error *err, gs_status st, const char *arg, const char *fmt, double x) {
  err->arg = arg;
  snprintf(err->msg, sizeof err->msg, fmt, x);
  return st;
}

static gs_status fail0(gs_error *err, const char *arg, const char *msg) {
  err->arg = arg;
  snprintf(err->msg, sizeof err->msg, "%s", msg);
  return GS_ERR_ARG;
}

static int float_dtype(gs_dtype d, int wide_ok) {
  return d == GS_F32 || d == GS_BF16 || d == GS_F16 || (wide_ok && d == GS_F64);
}

gs_status gs_ce_check_args(const gs_ce_args *a, gs_ce_op op, int backward, int wide_ok,
                           gs_error *err) {
  if (a->n < 0) return fail(err, GS_ERR_ARG, "n", "n = %g is negative", (double)a->n);
  if (a->v < 1) return fail(err, GS_ERR_ARG, "v", "V = %g, needs at least one class", (double)a->v);
  if (!float_dtype(a->logits_dtype, wide_ok))
    return fail(err, GS_ERR_DTYPE, "logits", "logits dtype %g is not supported here", a->logits_dtype);
  if (a->logits_stride < a->v)
    return fail(err, GS_ERR_ARG, "logits", "row stride %g is smaller than V", (double)a->logits_stride);
  if (op != GS_OP_ENTROPY && a->target_dtype != GS_I32 && a->target_dtype != GS_I64)
    return fail(err, GS_ERR_DTYPE, "target", "target dtype %g is not i32 or i64", a->target_dtype);
  if (!(a->label_smoothing >= 0 && a->label_smoothing <= 1))
    return fail(err, GS_ERR_ARG, "label_smoothing", "label_smoothing = %g is outside [0, 1]", a->label_smoothing);
  if (!(a->softcap >= 0) || isinf(a->softcap))
    return fail(err, GS_ERR_ARG, "softcap", "softcap = %g must be > 0 (or 0 for off)", a->softcap);
  if (!(a->lse_square_scale >= 0) || isinf(a->lse_square_scale))
    return fail(err, GS_ERR_ARG, "lse_square_scale", "lse_square_scale = %g must be >= 0", a->lse_square_scale);
  if (!isfinite(a->logit_scale) || a->logit_scale == 0)
    return fail(err, GS_ERR_ARG, "logit_scale", "logit_scale = %g must be finite and non-zero", a->logit_scale);
  if (a->reduction < GS_REDUCE_NONE || a->reduction > GS_REDUCE_MEAN)
    return fail(err, GS_ERR_ARG, "reduction", "reduction code %g is unknown", a->reduction);
  int wants_grad = backward || a->grad != 0;
  if (wants_grad) {
    if (!a->grad && a->n > 0) return fail0(err, "grad", "backward needs a grad buffer");
    if (!float_dtype(a->grad_dtype, wide_ok))
      return fail(err, GS_ERR_DTYPE, "grad", "grad dtype %g is not supported here", a->grad_dtype);
    if (a->grad_stride < a->v)
      return fail(err, GS_ERR_ARG, "grad", "grad row stride %g is smaller than V", (double)a->grad_stride);
    if (a->grad_output && a->grad_output_n != 1 && a->grad_output_n != a->n)
      return fail(err, GS_ERR_ARG, "grad_output", "grad_output has %g values, needs 1 or n", (double)a->grad_output_n);
    if (op == GS_OP_CE && a->grad_output && a->grad_output_n != 1 && a->reduction != GS_REDUCE_NONE)
      return fail0(err, "grad_output", "per-row grad_output needs reduction \"none\"");
  }
  if (!backward && !a->loss && a->n > 0) return fail0(err, "loss", "forward needs a loss buffer");
  return GS_OK;
}

gs_status gs_ce_target_error(gs_error *err, int64_t row, int64_t value, int64_t v) {
  err->row = row;
  err->value = value;
  err->arg = "target";
  snprintf(err->msg, sizeof err->msg, "target[%lld] = %lld is outside [0, %lld)", (long long)row,
           (long long)value, (long long)v);
  return GS_ERR_TARGET;
}

gs_status gs_ce_scan_targets(const void *target, gs_dtype dtype, int64_t n, int64_t v, int64_t ignore_index,
                             const float *weight, int shift, double *d, double *count, gs_error *err) {
  *d = 0;
  *count = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t t = gs_ce_target_at(target, dtype, i);
    if (t == ignore_index) continue;
    if (t < 0 || t >= v) return gs_ce_target_error(err, i, t, v);
    *d += weight ? weight[(t + shift) % v] : 1.0;
    *count += 1;
  }
  return GS_OK;
}
