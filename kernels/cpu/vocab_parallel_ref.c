/* The f64 reference of the vocab-parallel passes: vocab_parallel_rows.h in
 * double, one row after another. */
#include <math.h>
#include <stdio.h>

/* z = s x must round the same way in every pass (the max found by one is
 * compared with the z of another): no fused multiply-adds. */
#pragma GCC optimize("fp-contract=off")

#define REAL double
#define VP_EXP exp
#define VP_EXPM1 expm1
#define VP_LOG1P log1p
#define VP_TANH tanh
#define VP_COSH cosh
#define VP_GRAD_PUT vp_grad_put_ref

#include "../gs_half.h"
#include "../vocab_parallel.h"

/* f64 -> f32 rounded to odd, so that the rounding to bf16 or f16 after it is
 * the correctly rounded f64 -> half result. */
static float vp_round_odd(double x) {
  float f = (float)x;
  if (fabs((double)f) > fabs(x)) f = nextafterf(f, 0.0f);
  if ((double)f != x && !isnan(x)) f = gs_bits_f32(gs_f32_bits(f) | 1u);
  return f;
}

static void vp_grad_put_ref(const gs_vp_args *a, int64_t i, int64_t j, double g) {
  int64_t k = i * a->grad_stride + j;
  switch (a->grad_dtype) {
  case GS_F64: ((double *)a->grad)[k] = g; break;
  case GS_F32: ((float *)a->grad)[k] = (float)g; break;
  case GS_BF16: ((uint16_t *)a->grad)[k] = gs_f32_to_bf16(vp_round_odd(g)); break;
  default: ((uint16_t *)a->grad)[k] = gs_f32_to_f16(vp_round_odd(g)); break;
  }
}

#include "vocab_parallel_rows.h"

gs_status gs_vp_pass_ref(const gs_vp_args *a, int pass, gs_error *err) {
  gs_status st = vp_check(a, pass, 1, err);
  if (st != GS_OK) return st;
  for (int64_t i = 0; i < a->n; i++) vp_row(a, pass, i);
  return GS_OK;
}
