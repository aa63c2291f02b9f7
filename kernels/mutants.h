/* Deliberately broken kernel variants for `gradspec mutate`. A mutant is
 * compiled into the ordinary kernels behind GS_MUTANT(id) and switched on at
 * run time; with none selected (the default) every check is false. Building
 * with -DGRADSPEC_MUTANTS=OFF compiles them away entirely. */
#ifndef GS_MUTANTS_H
#define GS_MUTANTS_H

#include "gs_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  GS_MUT_NONE = 0,
  GS_MUT_GRAD_SIGN = 1,          /* every gradient negated */
  GS_MUT_SOFTCAP_CHAIN = 2,      /* backward drops (1 - (z/c)^2) */
  GS_MUT_SMOOTH_V_MINUS_1 = 3,   /* smoothing uses eps/(V-1), not eps/V */
  GS_MUT_IGNORED_GRAD = 4,       /* ignored rows get a softmax gradient */
  GS_MUT_MEAN_BY_N = 5,          /* mean divides by N, not D */
  GS_MUT_ZLOSS_FACTOR = 6,       /* z-loss gradient lam*lse*p, missing the 2 */
  GS_MUT_LSE_NO_MAX = 7,         /* lse = log sum exp(z) with no max shift */
  GS_MUT_TARGET_OFF_BY_ONE = 8,  /* reads class (t + 1) mod V */
  GS_MUT_WEIGHT_BACKWARD = 9,    /* class weights ignored in backward */
  GS_MUT_SCALE_BACKWARD = 10,    /* logit_scale missing from backward */
  GS_MUT_LOG_PROBS_SIGN = 11,    /* log_probs returns +CE */
  GS_MUT_ENTROPY_SIGN = 12,      /* entropy negated */
  GS_MUT_CONFIDENT_CANCEL = 13,  /* target's z_t - lse and p_t - 1 from a rounded lse: 0 in confident rows */
  GS_MUT_LSE_ROUNDED = 14,       /* p_j = exp(z_j - (m + log s)): log s lost once |m| >> 1 */
  GS_MUT_SMOOTH_OVERFLOW = 15,   /* smoothing sum overflows where an f32 sum would */
  GS_MUT_TARGET_LAST = 16,       /* target V - 1 rejected as out of range */
  GS_MUT_IGNORE_VALID = 17,      /* an ignore_index inside [0, V) ignores nothing */
  GS_MUT_ZLOSS_MEAN_BY_D = 18,   /* mean z-loss divided by D (target weights), not the row count */
  GS_MUT_SMOOTH_UNWEIGHTED = 19, /* smoothing term without the class weights */
  /* misreadings of the contract that a reference could share with a fast
   * kernel: only independent values (golden_spec, extremes_spec) catch them
   * in every backend at once */
  GS_MUT_SMOOTH_MEAN_BY_ROWS = 20,  /* mean divides the smoothing part by the row count, not D */
  GS_MUT_SMOOTH_TARGET_WEIGHT = 21, /* smoothing weighted by w_t, not w_j: w_t sum_j (lse - z_j) */
  GS_MUT_CAP_BEFORE_SCALE = 22,     /* z = s c tanh(x / c): the softcap before logit_scale */
  GS_MUT_GRAD_OUTPUT_ROW0 = 23,     /* per-row grad_output: every row takes row 0's value */
  /* bugs on one path of the fast CPU kernel alone (cpu_paths_spec reaches each) */
  GS_MUT_PASS2_F64_UNWEIGHTED = 24, /* gradient chunks written in f64 drop the class weights */
  GS_MUT_STREAM_TAIL = 25,          /* streaming stores leave a row's last partial vector unwritten */
  GS_MUT_REDO_STALE_E = 26,         /* a redone chunk leaves pass 2 the terms of its first attempt */
  GS_MUT_COUNT = 27
} gs_mutant_id;

void gs_mutant_set(int id);
int gs_mutant_get(void);
const char *gs_mutant_name(int id);
const char *gs_mutant_describe(int id);
/* The backends whose kernels hold mutant id, e.g. "ref,cpu" (NULL: no such id). */
const char *gs_mutant_backends(int id);

#ifndef GS_FFI
#ifdef GS_WITH_MUTANTS
extern int gs_active_mutant;
#define GS_MUTANT(id) (gs_active_mutant == (id))
#else
#define GS_MUTANT(id) 0
#endif
#endif

#ifdef __cplusplus
}
#endif

#endif
