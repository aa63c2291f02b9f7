/* The fast CPU vocab-parallel passes: vocab_parallel_rows.h in float, rows
 * spread over threads (each row is written by one task only). */
#include <stdio.h>

/* z = s x must round the same way in every pass (the max found by one is
 * compared with the z of another): no fused multiply-adds. */
#pragma GCC optimize("fp-contract=off")

#define REAL float
#define VP_EXP expf
#define VP_EXPM1 expm1f
#define VP_LOG1P log1pf
#define VP_TANH tanhf
#define VP_COSH coshf
#define VP_GRAD_PUT vp_grad_put_cpu

#include "../gs_half.h"
#include "../vocab_parallel.h"
#include "parallel.h"

static void vp_grad_put_cpu(const gs_vp_args *a, int64_t i, int64_t j, float g) {
  int64_t k = i * a->grad_stride + j;
  switch (a->grad_dtype) {
  case GS_F32: ((float *)a->grad)[k] = g; break;
  case GS_BF16: ((uint16_t *)a->grad)[k] = gs_f32_to_bf16(g); break;
  default: ((uint16_t *)a->grad)[k] = gs_f32_to_f16(g); break;
  }
}

#include "vocab_parallel_rows.h"

typedef struct {
  const gs_vp_args *a;
  int pass;
} vp_task;

static void vp_task_row(void *ctx, int64_t i, int worker) {
  (void)worker;
  const vp_task *t = ctx;
  vp_row(t->a, t->pass, i);
}

gs_status gs_vp_pass_cpu(const gs_vp_args *a, int pass, gs_error *err) {
  gs_status st = vp_check(a, pass, 0, err);
  if (st != GS_OK) return st;
  vp_task t = {a, pass};
  int workers = gs_parallel_workers(a->threads, a->n, a->n * a->v);
  gs_parallel_for(workers, a->n, vp_task_row, &t);
  return GS_OK;
}
