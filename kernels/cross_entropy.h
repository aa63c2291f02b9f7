/* The cross-entropy family's C contract: cross_entropy, log_probs, entropy.
 * The math is docs/losses.md; every backend computes exactly that.
 *
 * Backends, side by side:
 *   _ref   kernels/cpu/cross_entropy_ref.c  f64 plain loops, the oracle
 *   _cpu   kernels/cpu/cross_entropy.c      f32 accumulation, threads, SIMD
 *   _cuda  kernels/cuda/cross_entropy.cu    same contract, device pointers
 *
 * "real" below means double for _ref and float for _cpu and _cuda: it is the
 * type of every floating-point output and of grad_output. Element offsets and
 * strides are in elements, 64-bit. Pointers of _cuda calls are device pointers,
 * except `err` and the args struct itself. */
#ifndef GS_CROSS_ENTROPY_H
#define GS_CROSS_ENTROPY_H

#include "gs_types.h"

/* Changes whenever gs_ce_args below changes layout. */
#define GS_CE_ARGS_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int64_t n;                /* rows; 0 is allowed */
  int64_t v;                /* classes (vocabulary); >= 1 */

  const void *logits;       /* n x v, row i at logits + i * logits_stride */
  gs_dtype logits_dtype;    /* f32, bf16, f16; _ref also takes f64 */
  int64_t logits_stride;    /* >= v */

  const void *target;       /* n class indices (0-based); unused by entropy */
  gs_dtype target_dtype;    /* i32 or i64 */
  int64_t ignore_index;     /* rows with this target are ignored (-100) */

  const float *weight;      /* NULL, or v class weights */
  double label_smoothing;   /* eps in [0, 1] */
  double logit_scale;       /* s, 1 = off */
  double softcap;           /* c, 0 = off */
  double lse_square_scale;  /* lam (z-loss), 0 = off */
  gs_reduction reduction;

  /* Outputs. loss: n values for "none", else 1. lse, z_loss: optional, n
   * values; ignored rows hold 0 in both. */
  void *loss;               /* real */
  void *lse;                /* real, may be NULL */
  void *z_loss;             /* real, may be NULL */

  /* Gradient dLoss/dlogits, n x v. Written by the backward entry points,
   * and by the forward ones when non-NULL (the fused forward+backward).
   * grad == logits with the same stride and dtype updates in place. */
  void *grad;
  gs_dtype grad_dtype;      /* f32, bf16, f16; _ref also takes f64 */
  int64_t grad_stride;      /* >= v */

  /* dLoss/dloss_i: 1 value (a scalar applied to every row; for "mean" the
   * kernel still divides by D) or n values (reduction "none" only).
   * NULL means 1. Used by the backward and by the fused forward. */
  const void *grad_output;  /* real */
  int64_t grad_output_n;    /* 1 or n */

  int threads;              /* _cpu: worker threads, 0 = all cores */
} gs_ce_args;

/* cross_entropy: loss (reduced), lse, z_loss; grad when non-NULL. */
gs_status gs_ce_forward_ref(const gs_ce_args *a, gs_error *err);
gs_status gs_ce_forward_cpu(const gs_ce_args *a, gs_error *err);
gs_status gs_ce_forward_cuda(const gs_ce_args *a, gs_error *err);
gs_status gs_ce_backward_ref(const gs_ce_args *a, gs_error *err);
gs_status gs_ce_backward_cpu(const gs_ce_args *a, gs_error *err);
gs_status gs_ce_backward_cuda(const gs_ce_args *a, gs_error *err);

/* log_probs: loss[i] = z_t - lse (<= 0), 0 on ignored rows; reduction is
 * ignored (always per row). Uses logit_scale, softcap, ignore_index. */
gs_status gs_log_probs_forward_ref(const gs_ce_args *a, gs_error *err);
gs_status gs_log_probs_forward_cpu(const gs_ce_args *a, gs_error *err);
gs_status gs_log_probs_forward_cuda(const gs_ce_args *a, gs_error *err);
gs_status gs_log_probs_backward_ref(const gs_ce_args *a, gs_error *err);
gs_status gs_log_probs_backward_cpu(const gs_ce_args *a, gs_error *err);
gs_status gs_log_probs_backward_cuda(const gs_ce_args *a, gs_error *err);

/* entropy: loss[i] = lse - sum_j p_j z_j, in [0, log v]; per row, no target.
 * Uses logit_scale and softcap. */
gs_status gs_entropy_forward_ref(const gs_ce_args *a, gs_error *err);
gs_status gs_entropy_forward_cpu(const gs_ce_args *a, gs_error *err);
gs_status gs_entropy_forward_cuda(const gs_ce_args *a, gs_error *err);
gs_status gs_entropy_backward_ref(const gs_ce_args *a, gs_error *err);
gs_status gs_entropy_backward_cpu(const gs_ce_args *a, gs_error *err);
gs_status gs_entropy_backward_cuda(const gs_ce_args *a, gs_error *err);

/* _cpu works on a row in chunks of this many columns; specs size rows past
 * it so that the paths between chunks are exercised. */
int64_t gs_ce_cpu_chunk(void);

/* How often each code path of _cpu ran since the last reset (in place,
 * interleaved pass 2, chunk redone, threads, ...), so that specs can show
 * they reach every one. path counts from 0; past the last, NULL and -1. */
const char *gs_ce_cpu_path_name(int path);
int64_t gs_ce_cpu_path_count(int path);
void gs_ce_cpu_paths_reset(void);

#ifdef __cplusplus
}
#endif

#endif
