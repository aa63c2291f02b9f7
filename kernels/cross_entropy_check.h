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

/* Fills err for a target outside [0, v) and returns GS_ERR_TARGET. */
gs_status gs_ce_target_error(gs_error *err, int64_t row, int64_t value, int64_t v);

#ifdef __cplusplus
}
#endif

#endif
