/* Argument checks shared by every cross-entropy backend, so that each one
 * rejects the same bad input with the same message. */
#ifndef GS_CROSS_ENTROPY_CHECK_H
#define GS_CROSS_ENTROPY_CHECK_H

#include "cross_entropy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { GS_OP_CE = 0, GS_OP_LOG_PROBS = 1, GS_OP_ENTROPY = 2 } gs_ce_op;

/* Checks shapes, dtypes and option ranges (not target values: those are
 * checked where the rows are read). wide_ok: the backend accepts f64. */
gs_status gs_ce_check_args(const gs_ce_args *a, gs_ce_op op, int backward, int wide_ok,
                           gs_error *err);

/* Row i's target as stored (i32 or i64). */
static inline int64_t gs_ce_target_at(const void *target, gs_dtype dtype, int64_t i) {
  return dtype == GS_I32 ? ((const int32_t *)target)[i] : ((const int64_t *)target)[i];
}

/* Checks every target before anything is written (the lowest bad row is
 * reported) and sums D, the weights of the targets, and the count of
 * non-ignored rows, both needed by "mean". shift moves the class whose
 * weight is read (the off-by-one mutant); 0 otherwise. */
gs_status gs_ce_scan_targets(const void *target, gs_dtype dtype, int64_t n, int64_t v, int64_t ignore_index,
                             const float *weight, int shift, double *d, double *count, gs_error *err);

/* Fills err for a target outside [0, v) and returns GS_ERR_TARGET. */
gs_status gs_ce_target_error(gs_error *err, int64_t row, int64_t value, int64_t v);

#ifdef __cplusplus
}
#endif

#endif
