#include "mutants.h"

int gs_active_mutant = GS_MUT_NONE;

/* where: the backends whose kernels hold the mutant (NULL: ref and cpu) */
static const struct { const char *name, *what, *where; } mutants[GS_MUT_COUNT] = {
  [GS_MUT_NONE] = {"none", "the kernels as written"},
  [GS_MUT_GRAD_SIGN] = {"grad_sign", "gradient sign flipped"},
  [GS_MUT_SOFTCAP_CHAIN] = {"softcap_chain", "softcap chain-rule term dropped in backward"},
  [GS_MUT_SMOOTH_V_MINUS_1] = {"smooth_v_minus_1", "label smoothing divided by V-1"},
  [GS_MUT_IGNORED_GRAD] = {"ignored_grad", "ignored rows' gradient not zeroed"},
  [GS_MUT_MEAN_BY_N] = {"mean_by_n", "mean divided by N instead of the weight sum"},
  [GS_MUT_ZLOSS_FACTOR] = {"zloss_factor", "z-loss gradient missing its factor 2"},
  [GS_MUT_LSE_NO_MAX] = {"lse_no_max", "lse computed without subtracting the max"},
  [GS_MUT_TARGET_OFF_BY_ONE] = {"target_off_by_one", "target index off by one"},
  [GS_MUT_WEIGHT_BACKWARD] = {"weight_backward", "class weight ignored in backward"},
  [GS_MUT_SCALE_BACKWARD] = {"scale_backward", "logit_scale not applied in backward"},
  [GS_MUT_LOG_PROBS_SIGN] = {"log_probs_sign", "log_probs returns +CE"},
  [GS_MUT_ENTROPY_SIGN] = {"entropy_sign", "entropy with the wrong sign"},
  [GS_MUT_CONFIDENT_CANCEL] = {"confident_cancel", "target loss and p_t - 1 cancel in confident rows"},
  [GS_MUT_LSE_ROUNDED] = {"lse_rounded", "softmax against a rounded lse (logits beyond 2^53)"},
  [GS_MUT_SMOOTH_OVERFLOW] = {"smooth_overflow", "label smoothing sum overflows near FLT_MAX"},
  [GS_MUT_TARGET_LAST] = {"target_last_invalid", "target V - 1 rejected as out of range"},
  [GS_MUT_IGNORE_VALID] = {"ignore_valid_class", "ignore_index inside [0, V) ignores nothing"},
  [GS_MUT_ZLOSS_MEAN_BY_D] = {"zloss_mean_by_d", "mean z-loss divided by the target weights"},
  [GS_MUT_SMOOTH_UNWEIGHTED] = {"smooth_unweighted", "label smoothing without the class weights"},
  [GS_MUT_SMOOTH_MEAN_BY_ROWS] = {"smooth_mean_by_rows", "mean divides the smoothing part by the row count, not the weight sum"},
  [GS_MUT_SMOOTH_TARGET_WEIGHT] = {"smooth_target_weight", "label smoothing weighted by the target's weight, not each class's"},
  [GS_MUT_CAP_BEFORE_SCALE] = {"cap_before_scale", "softcap applied before logit_scale"},
  [GS_MUT_GRAD_OUTPUT_ROW0] = {"grad_output_row0", "per-row grad_output: every row takes row 0's value"},
  [GS_MUT_PASS2_F64_UNWEIGHTED] = {"pass2_f64_unweighted", "gradient chunks written in f64 drop the class weights", "cpu"},
  [GS_MUT_STREAM_TAIL] = {"stream_tail", "streaming stores leave a row's last partial vector unwritten", "cpu"},
  [GS_MUT_REDO_STALE_E] = {"redo_stale_e", "a redone chunk leaves pass 2 the terms of its first attempt", "cpu"},
};

void gs_mutant_set(int id) { gs_active_mutant = (id > 0 && id < GS_MUT_COUNT) ? id : GS_MUT_NONE; }
int gs_mutant_get(void) { return gs_active_mutant; }
const char *gs_mutant_name(int id) { return (id >= 0 && id < GS_MUT_COUNT) ? mutants[id].name : 0; }
const char *gs_mutant_describe(int id) { return (id >= 0 && id < GS_MUT_COUNT) ? mutants[id].what : 0; }
const char *gs_mutant_backends(int id) {
  if (id < 0 || id >= GS_MUT_COUNT) return 0;
  return mutants[id].where ? mutants[id].where : "ref,cpu";
}
