/* The double-precision reference of linear cross entropy: every logit of
 * x = h W^T + b in f64 (rounded once to a 16-bit chunk_dtype when one is
 * asked for), the cross-entropy reference on all of them at once, then
 * dh = G W, dW = G^T h, db = sum_i G_i as plain loops. No chunks and no
 * rescaling tricks, so it checks the chunked backends' bookkeeping too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../gs_half.h"
#include "../linear_cross_entropy.h"
#include "../linear_cross_entropy_plan.h"

static double load(const void *base, gs_dtype d, int64_t k) {
  switch (d) {
  case GS_F64: return ((const double *)base)[k];
  case GS_F32: return ((const float *)base)[k];
  case GS_BF16: return gs_bf16_to_f32(((const uint16_t *)base)[k]);
  default: return gs_f16_to_f32(((const uint16_t *)base)[k]);
  }
}

/* f64 -> f32 rounding to odd: the second rounding (to bf16 or f16) is then
 * the correctly rounded f64 -> half result. */
static float f32_round_odd(double x) {
  float f = (float)x;
  if (fabs((double)f) > fabs(x)) f = nextafterf(f, 0.0f);
  if ((double)f != x && !isnan(x)) f = gs_bits_f32(gs_f32_bits(f) | 1u);
  return f;
}

static void store(void *base, gs_dtype d, int64_t k, double x) {
  switch (d) {
  case GS_F64: ((double *)base)[k] = x; break;
  case GS_F32: ((float *)base)[k] = (float)x; break;
  case GS_BF16: ((uint16_t *)base)[k] = gs_f32_to_bf16(f32_round_odd(x)); break;
  default: ((uint16_t *)base)[k] = gs_f32_to_f16(f32_round_odd(x)); break;
  }
}

/* x rounded to nearest even in a 16-bit chunk dtype, as a double. */
static double chunk_round(double x, gs_dtype d) {
  if (d == GS_BF16) return gs_bf16_to_f32(gs_f32_to_bf16(f32_round_odd(x)));
  return gs_f16_to_f32(gs_f32_to_f16(f32_round_odd(x)));
}

static gs_status no_memory(gs_error *err) {
  err->arg = "logits";
  snprintf(err->msg, sizeof err->msg, "out of memory for the reference's f64 logits");
  return GS_ERR_NOMEM;
}

static gs_status run_ref(const gs_lce_args *a, int backward, gs_error *err) {
  gs_status st = gs_lce_check_args(a, backward, 1, err);
  if (st != GS_OK) return st;
  const int64_t n = a->n, hd = a->hidden, v = a->v;
  const int want_grad = a->dh || a->dw || a->db;
  size_t cells = (size_t)(n * v > 0 ? n * v : 1);
  double *x = malloc(cells * sizeof *x);
  double *g = want_grad ? malloc(cells * sizeof *g) : NULL;
  if (!x || (want_grad && !g)) {
    free(x);
    free(g);
    return no_memory(err);
  }
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < v; j++) {
      double s = a->bias ? load(a->bias, a->bias_dtype, j) : 0.0;
      for (int64_t k = 0; k < hd; k++)
        s += load(a->h, a->h_dtype, i * a->h_stride + k) * load(a->w, a->w_dtype, j * a->w_stride + k);
      x[i * v + j] = s;
    }
  }
  /* A 16-bit chunk_dtype: the loss is that of the rounded logits. */
  const gs_dtype cdt = gs_lce_chunk_dtype(a);
  if (cdt != GS_F32)
    for (int64_t k = 0; k < n * v; k++) x[k] = chunk_round(x[k], cdt);
  gs_ce_args ce = {
    .n = n, .v = v, .logits = x, .logits_dtype = GS_F64, .logits_stride = v, .target = a->target,
    .target_dtype = a->target_dtype, .ignore_index = a->ignore_index, .weight = a->weight,
    .label_smoothing = a->label_smoothing, .logit_scale = a->logit_scale, .softcap = a->softcap,
    .lse_square_scale = a->lse_square_scale, .reduction = a->reduction, .loss = a->loss, .lse = a->lse,
    .z_loss = a->z_loss, .grad = g, .grad_dtype = GS_F64, .grad_stride = v,
    .grad_output = a->grad_output, .grad_output_n = a->grad_output_n,
  };
  st = backward ? gs_ce_backward_ref(&ce, err) : gs_ce_forward_ref(&ce, err);
  if (st == GS_OK && a->dh) {
    for (int64_t i = 0; i < n; i++)
      for (int64_t k = 0; k < hd; k++) {
        double s = 0;
        for (int64_t j = 0; j < v; j++) s += g[i * v + j] * load(a->w, a->w_dtype, j * a->w_stride + k);
        store(a->dh, a->dh_dtype, i * a->dh_stride + k, s);
      }
  }
  if (st == GS_OK && a->dw) {
    for (int64_t j = 0; j < v; j++)
      for (int64_t k = 0; k < hd; k++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += g[i * v + j] * load(a->h, a->h_dtype, i * a->h_stride + k);
        store(a->dw, a->dw_dtype, j * a->dw_stride + k, s);
      }
  }
  if (st == GS_OK && a->db) {
    for (int64_t j = 0; j < v; j++) {
      double s = 0;
      for (int64_t i = 0; i < n; i++) s += g[i * v + j];
      store(a->db, a->db_dtype, j, s);
    }
  }
  free(x);
  free(g);
  return st;
}

gs_status gs_lce_forward_ref(const gs_lce_args *a, gs_error *err) { return run_ref(a, 0, err); }
gs_status gs_lce_backward_ref(const gs_lce_args *a, gs_error *err) { return run_ref(a, 1, err); }
