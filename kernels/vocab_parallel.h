/* Vocabulary-parallel passes of the cross-entropy family (docs/losses.md,
 * section 9): each rank holds columns [vocab_start, vocab_start + v) of
 * the logits, computes per-row statistics of its own columns, and the
 * ranks combine them with collectives between the passes
 * (lua/gradspec/vocab_parallel.lua drives them):
 *
 *   MAX    stat[M_LOCAL] = m = max_j z_j of this shard (+inf when a NaN or
 *          +inf is in the row: such a row is NaN), copied to stat[M], which
 *          is then max-reduced over the ranks; stat[REST] = sum_j exp(z_j - m)
 *          leaving out the shard's first maximum (one read of the logits).
 *   SUMS   with the global M, per row only: stat[REST] = that sum where
 *          M_LOCAL == M, else exp(M_LOCAL - M) (1 + the sum), and
 *          stat[TIES] = [M_LOCAL == M]; both then sum-reduced, so that
 *          lse = M + log1p(REST + TIES - 1) keeps 1 - p_max exact.
 *   TERMS  with M, REST, TIES: stat[L] = lse - M, and the shard's shares of
 *          the row terms: TZ = log p_t and WT = w_t on the shard that owns t
 *          (0 elsewhere), SMOOTH = sum_j w_j (lse - z_j), MU = sum_j p_j
 *          (z_j - M); then sum-reduced.
 *   GRAD   with M, L, WT, MU and the per-row factors G and GZ (grad_output,
 *          1/D and 1/K folded in): this shard's columns of the gradient,
 *          the [j == t] term on the owner only.
 *
 * stat is 11 blocks of n reals (f64 for _ref, f32 for _cpu and _cuda;
 * device memory for _cuda): block k holds statistic k for every row. */
#ifndef GS_VOCAB_PARALLEL_H
#define GS_VOCAB_PARALLEL_H

#include "gs_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  GS_VP_M_LOCAL = 0, GS_VP_M = 1, GS_VP_REST = 2, GS_VP_TIES = 3, GS_VP_L = 4, GS_VP_TZ = 5,
  GS_VP_WT = 6, GS_VP_SMOOTH = 7, GS_VP_MU = 8, GS_VP_G = 9, GS_VP_GZ = 10, GS_VP_STATS = 11
} gs_vp_stat;

typedef enum { GS_VP_MAX = 0, GS_VP_SUMS = 1, GS_VP_TERMS = 2, GS_VP_GRAD = 3 } gs_vp_pass;

typedef struct {
  int64_t n, v;             /* rows; this shard's columns (>= 1) */
  int64_t vocab_start;      /* the shard's first column in the whole vocabulary */
  int64_t vocab_total;      /* V, every shard together */
  const void *logits;       /* n x v, this shard's columns */
  gs_dtype logits_dtype;
  int64_t logits_stride;
  const void *target;       /* n global class indices (checked by the caller); NULL for entropy */
  gs_dtype target_dtype;
  int64_t ignore_index;
  const float *weight;      /* this shard's v class weights, or NULL */
  double label_smoothing, logit_scale, softcap, lse_square_scale;
  double wsum;              /* W over the whole vocabulary (GRAD) */
  int op;                   /* gs_ce_op: 0 cross_entropy, 1 log_probs, 2 entropy (GRAD) */
  void *stat;               /* GS_VP_STATS x n reals */
  void *grad;               /* n x v (GRAD) */
  gs_dtype grad_dtype;
  int64_t grad_stride;
  int threads;              /* _cpu: worker threads, 0 = all cores */
} gs_vp_args;

gs_status gs_vp_pass_ref(const gs_vp_args *a, int pass, gs_error *err);
gs_status gs_vp_pass_cpu(const gs_vp_args *a, int pass, gs_error *err);
gs_status gs_vp_pass_cuda(const gs_vp_args *a, int pass, gs_error *err);

#ifdef __cplusplus
}
#endif

#endif
