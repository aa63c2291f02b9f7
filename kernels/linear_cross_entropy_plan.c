#include "linear_cross_entropy_plan.h"

#include "cross_entropy_check.h"

#include <stdio.h>

/* f32 logits bytes of one default chunk. Every chunk reads W twice (logits
 * and dh GEMMs) and reads and writes dW once, whatever its row count, so
 * rows per chunk are what amortise that traffic; the budget caps the memory.
 * CPU: 30 MiB, 240 rows at V = 32000. GPU: 1 GiB, 2048 rows at V = 128256,
 * where cuBLAS's dW GEMM (inner dimension = chunk rows) runs near peak. The
 * rows do not depend on chunk_dtype: a bf16 chunk of 2048 rows is 0.49 GiB,
 * within 1/8 of what the unfused path holds at 8192 rows (5.87 GiB), where
 * 4096 rows (0.98 GiB) would not be. */
#define CPU_CHUNK_BYTES ((int64_t)30 << 20)
#define CUDA_CHUNK_BYTES ((int64_t)1 << 30)

const char *gs_lce_dtype_name(gs_dtype d) {
  static const char *names[] = {"f64", "f32", "bf16", "f16", "i32", "i64"};
  return (unsigned)d < 6 ? names[d] : "unknown";
}

gs_dtype gs_lce_chunk_dtype(const gs_lce_args *a) {
  return a->chunk_dtype == GS_BF16 || a->chunk_dtype == GS_F16 ? a->chunk_dtype : GS_F32;
}

size_t gs_lce_dtype_size(gs_dtype d) {
  switch (d) {
  case GS_F64: case GS_I64: return 8;
  case GS_F32: case GS_I32: return 4;
  default: return 2;
  }
}

static int float_dtype(gs_dtype d, int wide_ok) {
  return d == GS_F32 || d == GS_BF16 || d == GS_F16 || (wide_ok && d == GS_F64);
}

static gs_status fail(gs_error *err, gs_status st, const char *arg, const char *fmt, double x, double y) {
  err->arg = arg;
  snprintf(err->msg, sizeof err->msg, fmt, x, y);
  return st;
}

static gs_status fail_dtype(gs_error *err, const char *arg, gs_dtype d) {
  err->arg = arg;
  snprintf(err->msg, sizeof err->msg, "%s dtype %s is not supported here", arg, gs_lce_dtype_name(d));
  return GS_ERR_DTYPE;
}

gs_status gs_lce_dtype_error(gs_error *err, const char *arg, gs_dtype got, const char *backend,
                             const char *supported) {
  err->arg = arg;
  snprintf(err->msg, sizeof err->msg, "%s dtype %s is not supported by backend %s (%s)", arg, gs_lce_dtype_name(got),
           backend, supported);
  return GS_ERR_DTYPE;
}

gs_status gs_lce_check_args(const gs_lce_args *a, int backward, int wide_ok, gs_error *err) {
  if (a->n < 0) return fail(err, GS_ERR_ARG, "n", "n = %g is negative", (double)a->n, 0);
  if (a->hidden < 1) return fail(err, GS_ERR_ARG, "h", "H = %g, needs at least one column", (double)a->hidden, 0);
  if (a->v < 1) return fail(err, GS_ERR_ARG, "W", "V = %g, W needs at least one row", (double)a->v, 0);
  if (!float_dtype(a->h_dtype, wide_ok)) return fail_dtype(err, "h", a->h_dtype);
  if (a->w_dtype != a->h_dtype) {
    err->arg = "W";
    snprintf(err->msg, sizeof err->msg, "W dtype %s differs from h dtype %s", gs_lce_dtype_name(a->w_dtype),
             gs_lce_dtype_name(a->h_dtype));
    return GS_ERR_DTYPE;
  }
  if (a->h_stride < a->hidden)
    return fail(err, GS_ERR_ARG, "h", "h row stride %g is smaller than H = %g", (double)a->h_stride, (double)a->hidden);
  if (a->w_stride < a->hidden)
    return fail(err, GS_ERR_ARG, "W", "W row stride %g is smaller than H = %g", (double)a->w_stride, (double)a->hidden);
  if (a->bias && !float_dtype(a->bias_dtype, wide_ok)) return fail_dtype(err, "bias", a->bias_dtype);
  if (a->chunk_rows < 0)
    return fail(err, GS_ERR_ARG, "chunk_rows", "chunk_rows = %g must be >= 1 (or 0 for the default)",
                (double)a->chunk_rows, 0);
  if (a->chunk_dtype != GS_F64 && a->chunk_dtype != GS_F32 && a->chunk_dtype != GS_BF16 &&
      a->chunk_dtype != GS_F16) {
    err->arg = "chunk_dtype";
    snprintf(err->msg, sizeof err->msg, "chunk_dtype = %s (code %d) is not a chunk dtype (f32, bf16 or f16)",
             gs_lce_dtype_name(a->chunk_dtype), (int)a->chunk_dtype);
    return GS_ERR_ARG;
  }
  int want_grad = a->dh || a->dw || a->db;
  if (backward && !want_grad)
    return fail(err, GS_ERR_ARG, "grad", "backward needs at least one of dh, dW, db", 0, 0);
  if (a->dh && !float_dtype(a->dh_dtype, wide_ok)) return fail_dtype(err, "dh", a->dh_dtype);
  if (a->dh && a->dh_stride < a->hidden)
    return fail(err, GS_ERR_ARG, "dh", "dh row stride %g is smaller than H = %g", (double)a->dh_stride, (double)a->hidden);
  if (a->dw && !float_dtype(a->dw_dtype, wide_ok)) return fail_dtype(err, "dW", a->dw_dtype);
  if (a->dw && a->dw_stride < a->hidden)
    return fail(err, GS_ERR_ARG, "dW", "dW row stride %g is smaller than H = %g", (double)a->dw_stride, (double)a->hidden);
  if (a->db && !float_dtype(a->db_dtype, wide_ok)) return fail_dtype(err, "db", a->db_dtype);

  /* The cross-entropy options, target dtype and grad_output: the same checks
   * (and messages) as cross_entropy itself, on the logits the GEMM makes. */
  gs_ce_args ce = {
    .n = a->n, .v = a->v, .logits_dtype = GS_F32, .logits_stride = a->v, .target = a->target,
    .target_dtype = a->target_dtype, .ignore_index = a->ignore_index, .weight = a->weight,
    .label_smoothing = a->label_smoothing, .logit_scale = a->logit_scale, .softcap = a->softcap,
    .lse_square_scale = a->lse_square_scale, .reduction = a->reduction, .loss = a->loss,
    .grad = want_grad ? (void *)a : 0, .grad_dtype = GS_F32, .grad_stride = a->v,
    .grad_output = a->grad_output, .grad_output_n = a->grad_output_n,
  };
  return gs_ce_check_args(&ce, GS_OP_CE, backward, 0, err);
}

gs_status gs_lce_scan_targets(const gs_lce_args *a, double *d, double *count, gs_error *err) {
  return gs_ce_scan_targets(a->target, a->target_dtype, a->n, a->v, a->ignore_index, a->weight, 0, d, count, err);
}

void gs_lce_plan_init(gs_lce_plan *p, const gs_lce_args *a, int backward, double d, double count, double go) {
  int mean = a->reduction == GS_REDUCE_MEAN;
  p->want_loss = !backward;
  p->want_grad = a->dh || a->dw || a->db;
  p->per_row = a->grad_output && a->grad_output_n != 1;
  p->ce_reduction = a->reduction == GS_REDUCE_NONE ? GS_REDUCE_NONE : GS_REDUCE_SUM;
  p->lam = a->lse_square_scale;
  p->zl_fix = 1;
  if (mean && p->lam > 0 && d > 0 && d != count) {
    p->lam = p->lam * d / count;
    p->zl_fix = count / d;
  }
  p->alpha = p->per_row ? 1.0 : (mean ? go / d : go);
  p->loss_div = mean ? d : 1.0;
}

void gs_lce_chunk_args(gs_ce_args *ce, const gs_lce_args *a, const gs_lce_plan *p, int64_t i0, int64_t rows,
                       void *x, gs_dtype xdt, int64_t xstride, void *g, gs_dtype gdt, int64_t gstride,
                       float *loss_sum) {
  *ce = (gs_ce_args){
    .n = rows, .v = a->v, .logits = x, .logits_dtype = xdt, .logits_stride = xstride,
    .target = (const char *)a->target + i0 * (int64_t)gs_lce_dtype_size(a->target_dtype),
    .target_dtype = a->target_dtype, .ignore_index = a->ignore_index, .weight = a->weight,
    .label_smoothing = a->label_smoothing, .logit_scale = a->logit_scale, .softcap = a->softcap,
    .lse_square_scale = p->lam, .reduction = p->ce_reduction, .threads = a->threads,
  };
  if (p->want_loss) {
    ce->loss = p->ce_reduction == GS_REDUCE_NONE ? (void *)((float *)a->loss + i0) : (void *)loss_sum;
    ce->lse = a->lse ? (float *)a->lse + i0 : 0;
    ce->z_loss = a->z_loss ? (float *)a->z_loss + i0 : 0;
  }
  if (p->want_grad) {
    ce->grad = g;
    ce->grad_dtype = gdt;
    ce->grad_stride = gstride;
    if (p->per_row) {
      ce->grad_output = (const float *)a->grad_output + i0;
      ce->grad_output_n = rows;
    }
  }
}

int64_t gs_lce_default_chunk_rows(int64_t n, int64_t v, int cuda) {
  int64_t budget = cuda ? CUDA_CHUNK_BYTES : CPU_CHUNK_BYTES;
  int64_t rows = budget / (v * (int64_t)sizeof(float));
  if (rows >= 1024) rows = rows / 256 * 256; /* whole GEMM tiles */
  else if (rows >= 32) rows = rows / 16 * 16;
  if (rows < 1) rows = 1;
  return rows < n ? rows : (n > 0 ? n : 1);
}
