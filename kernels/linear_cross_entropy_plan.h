/* What every linear-cross-entropy backend shares: argument checks (the same
 * bad input gets the same message everywhere) and the chunk plan of the
 * chunked backends. Not part of the FFI boundary. */
#ifndef GS_LINEAR_CROSS_ENTROPY_PLAN_H
#define GS_LINEAR_CROSS_ENTROPY_PLAN_H

#include "cross_entropy.h"
#include "linear_cross_entropy.h"

/* Shapes, strides, dtypes and options; wide_ok: the backend takes f64. */
gs_status gs_lce_check_args(const gs_lce_args *a, int backward, int wide_ok, gs_error *err);

/* Fills err for a dtype the backend does not take; arg names the input. */
gs_status gs_lce_dtype_error(gs_error *err, const char *arg, gs_dtype got, const char *backend,
                             const char *supported);

/* Host targets: the lowest bad row is an error; else D (the weight of the
 * non-ignored targets, as mean divides by it) and the non-ignored count. */
gs_status gs_lce_scan_targets(const gs_lce_args *a, double *d, double *count, gs_error *err);

/* How each chunk calls the cross-entropy kernel. The kernel normalises
 * "mean" by the D of the rows it is given, which for a chunk is the wrong
 * D, so it is called with "sum" (or "none") and the global factors are
 * applied here:
 *   - the gradient it writes is unscaled (grad_output NULL) and the GEMMs
 *     that project it take alpha = grad_output / D (mean) or grad_output;
 *     a per-row grad_output goes to the kernel instead, which scales each
 *     row before the projection;
 *   - the z-loss term is divided by the non-ignored count, not by D: with
 *     class weights (D != count) the kernel gets lam' = lam D / count, so
 *     that alpha lam' = grad_output lam / count, and its z_loss rows are
 *     scaled back by count / D;
 *   - the chunk sums of the loss are added in double and divided by D. */
typedef struct {
  int want_loss;             /* forward: loss, lse, z_loss */
  int want_grad;             /* any of dh, dw, db */
  int per_row;               /* per-row grad_output: handed to the kernel */
  gs_reduction ce_reduction; /* NONE or SUM */
  double lam;                /* lse_square_scale for the kernel */
  double zl_fix;             /* z_loss rows are multiplied by this (1: as written) */
  double alpha;              /* scale of the three projections */
  double loss_div;           /* D under mean, else 1 */
} gs_lce_plan;

/* go: the scalar grad_output (1 when there is none or it is per-row). */
void gs_lce_plan_init(gs_lce_plan *p, const gs_lce_args *a, int backward, double d, double count, double go);

/* The cross-entropy call of rows [i0, i0 + rows): logits x and gradient g
 * (g may be x: in place) hold the chunk. loss_sum receives the chunk's
 * "sum" (unused under "none"). Real values are float (_cpu, _cuda). */
void gs_lce_chunk_args(gs_ce_args *ce, const gs_lce_args *a, const gs_lce_plan *p, int64_t i0, int64_t rows,
                       void *x, gs_dtype xdt, int64_t xstride, void *g, gs_dtype gdt, int64_t gstride,
                       float *loss_sum);

size_t gs_lce_dtype_size(gs_dtype d);

/* A dtype's name as the options spell it ("f32", "bf16", ...). */
const char *gs_lce_dtype_name(gs_dtype d);

/* The dtype the chunk's logits are kept in: chunk_dtype, with 0 read as f32
 * (after gs_lce_check_args, which refuses any other dtype). */
gs_dtype gs_lce_chunk_dtype(const gs_lce_args *a);

#endif
