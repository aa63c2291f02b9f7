/* Fused linear cross entropy: x = h W^T + b, then cross entropy on x with
 * every option of cross_entropy.h, without ever holding all n x v logits.
 * The math is docs/losses.md (section 8, linear cross entropy).
 *
 * Backends, side by side:
 *   _ref   kernels/cpu/linear_cross_entropy_ref.c  f64 matmul of all the logits, then
 *                                                  gs_ce_*_ref; unchunked, the oracle
 *   _cpu   kernels/cpu/linear_cross_entropy.c      OpenBLAS sgemm per chunk of rows, the
 *                                                  CPU cross-entropy kernel in place; f32
 *   _cuda  kernels/cuda/linear_cross_entropy.cu    cuBLAS (f32 compute) per chunk, the CUDA
 *                                                  cross-entropy kernel; f32, bf16, f16
 *
 * The chunked backends take chunk_rows rows at a time: logits of the chunk
 * (one GEMM), the cross-entropy kernel turns them into G = dLoss/dx in place,
 * then dh rows = G W, dW += G^T h_chunk, db += sum of G's rows (three more
 * GEMMs). Extra memory is the chunk (chunk_rows x v) plus, on the GPU, f32
 * accumulators for dW and db when those are asked for in bf16 or f16:
 * accumulating across chunks in a 16-bit type loses the small terms. _cuda
 * takes that scratch from a caching pool that keeps it for the next call.
 *
 * chunk_dtype is the dtype the chunk's logits are kept in (and G, written
 * over them in place). The math of a 16-bit chunk_dtype is the loss of the
 * rounded logits: x = round(h W^T + b) to nearest even in chunk_dtype, then
 * cross entropy on x, and dh, dW, db are the gradient of that loss with the
 * rounding taken as the identity (G = dLoss/dx of the rounded x, projected
 * as above). GS_F32 (or 0, the code of a zeroed struct) keeps f32 logits
 * and asks for no rounding: the f32 chunk is the backends' working
 * precision, and _ref's logits stay f64. Per backend:
 *   _ref   f32, bf16, f16 for any h: f64 logits rounded once to chunk_dtype
 *   _cpu   f32, bf16, f16: the f32 chunk rounded in place (the same values,
 *          no memory saved: the CPU kernel's G is f32)
 *   _cuda  f32, or h's dtype when h is bf16 or f16: the logits GEMM writes
 *          h's dtype (f32 accumulation, rounded once), the cross-entropy
 *          kernel reads it (f32 arithmetic) and writes G over it: one chunk
 *          buffer of rows x V x 2 bytes instead of f32 logits plus G
 * Anything else (f64's code is 0, the default) is an argument error.
 *
 * "real" means double for _ref and float for _cpu and _cuda: the type of the
 * loss, lse, z_loss and grad_output. Offsets and strides are in elements.
 * Pointers of _cuda calls are device pointers, except `err` and the struct. */
#ifndef GS_LINEAR_CROSS_ENTROPY_H
#define GS_LINEAR_CROSS_ENTROPY_H

#include "gs_types.h"

typedef struct {
  int64_t n;                /* rows (tokens); 0 is allowed */
  int64_t hidden;           /* H, columns of h and W; >= 1 */
  int64_t v;                /* classes (rows of W); >= 1 */

  const void *h;            /* n x H, row i at h + i * h_stride */
  gs_dtype h_dtype;         /* _cpu: f32; _cuda: f32, bf16, f16; _ref: also f64 */
  int64_t h_stride;         /* >= H */
  const void *w;            /* v x H, the projection W, same dtype as h */
  gs_dtype w_dtype;
  int64_t w_stride;         /* >= H */
  const void *bias;         /* NULL, or v values: x = h W^T + bias */
  gs_dtype bias_dtype;      /* a float dtype (_cpu: f32) */

  /* The cross-entropy options, exactly as in gs_ce_args. */
  const void *target;       /* n class indices (0-based) */
  gs_dtype target_dtype;    /* i32 or i64 */
  int64_t ignore_index;
  const float *weight;      /* NULL, or v class weights */
  double label_smoothing;
  double logit_scale;
  double softcap;
  double lse_square_scale;
  gs_reduction reduction;

  /* Outputs of the forward. loss: n values for "none", else 1. lse, z_loss:
   * optional, n values each (0 on ignored rows). */
  void *loss;               /* real */
  void *lse;                /* real, may be NULL */
  void *z_loss;             /* real, may be NULL */

  /* Gradients, each optional (NULL: not computed). Written by the backward,
   * and by the forward when any is non-NULL (the fused forward+backward).
   * dh: n x H; dw: v x H; db: v values. Always accumulated in f32 at least. */
  void *dh;
  gs_dtype dh_dtype;        /* _cpu: f32; _cuda: h's dtype or f32; _ref: any float */
  int64_t dh_stride;        /* >= H */
  void *dw;
  gs_dtype dw_dtype;        /* _cpu: f32; _cuda: f32, bf16, f16; _ref: any float */
  int64_t dw_stride;        /* >= H */
  void *db;
  gs_dtype db_dtype;        /* as dw_dtype */

  /* dLoss/dloss_i: 1 value or n values (reduction "none" only); NULL means 1.
   * A per-row value scales row i of G before it is projected onto W and b. */
  const void *grad_output;  /* real */
  int64_t grad_output_n;    /* 1 or n */

  int64_t chunk_rows;       /* rows per chunk; 0 = the backend's default. _ref ignores it */
  int threads;              /* _cpu: threads of the cross-entropy kernel (0 = all cores);
                               the GEMMs use OpenBLAS's own */
  gs_dtype chunk_dtype;     /* the chunk's logits and G (above): 0 or f32, bf16, f16. Last,
                               so that the fields before it keep their offsets */
} gs_lce_args;

gs_status gs_lce_forward_ref(const gs_lce_args *a, gs_error *err);
gs_status gs_lce_forward_cpu(const gs_lce_args *a, gs_error *err);
gs_status gs_lce_forward_cuda(const gs_lce_args *a, gs_error *err);
gs_status gs_lce_backward_ref(const gs_lce_args *a, gs_error *err);
gs_status gs_lce_backward_cpu(const gs_lce_args *a, gs_error *err);
gs_status gs_lce_backward_cuda(const gs_lce_args *a, gs_error *err);

/* The rows per chunk that _cpu (cuda = 0) or _cuda (cuda = 1) takes when
 * chunk_rows is 0: a fixed budget of f32 logits bytes per chunk, at most n,
 * whatever chunk_dtype is (a 16-bit chunk of these rows holds half the
 * budget: at V = 128256 on the GPU, 2048 rows, 0.49 GiB). */
int64_t gs_lce_default_chunk_rows(int64_t n, int64_t v, int cuda);

#endif
