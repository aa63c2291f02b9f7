/* The CPU backend of linear cross entropy (contract: ../linear_cross_entropy.h).
 *
 * Rows go chunk_rows at a time through one buffer of chunk_rows x V floats:
 *   x  = h_c W^T (+ b)                 sgemm, the chunk's logits
 *   x := dLoss/dx                      gs_ce_forward_cpu / backward_cpu, in place
 *   dh_c = alpha x W                   sgemm, these rows of dh and no others
 *   dW  += alpha x^T h_c               sgemm with beta = 1 after the first chunk
 *   db  += alpha x^T 1                 sgemv
 * A 16-bit chunk_dtype rounds x in place after the first sgemm: the same
 * logits as a chunk kept in that dtype, in the f32 buffer (G stays f32).
 * dh, dW, db are f32 outputs, so they accumulate in place: the chunk buffer
 * is the only extra memory. alpha and the other global factors (mean's D,
 * the z-loss count) come from the plan in ../linear_cross_entropy_plan.h.
 * The GEMMs run on OpenBLAS's threads, the cross-entropy kernel on its own. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cross_entropy.h"
#include "../gs_half.h"
#include "../linear_cross_entropy.h"
#include "../linear_cross_entropy_plan.h"

static gs_status no_memory(gs_error *err, size_t bytes) {
  err->arg = "chunk_rows";
  snprintf(err->msg, sizeof err->msg, "out of memory for a chunk of %zu bytes (lower chunk_rows)", bytes);
  return GS_ERR_NOMEM;
}

static gs_status check_dtypes(const gs_lce_args *a, gs_error *err) {
  if (a->h_dtype != GS_F32) return gs_lce_dtype_error(err, "h", a->h_dtype, "cpu", "f32 only");
  if (a->bias && a->bias_dtype != GS_F32) return gs_lce_dtype_error(err, "bias", a->bias_dtype, "cpu", "f32 only");
  if (a->dh && a->dh_dtype != GS_F32) return gs_lce_dtype_error(err, "dh", a->dh_dtype, "cpu", "f32 only");
  if (a->dw && a->dw_dtype != GS_F32) return gs_lce_dtype_error(err, "dW", a->dw_dtype, "cpu", "f32 only");
  if (a->db && a->db_dtype != GS_F32) return gs_lce_dtype_error(err, "db", a->db_dtype, "cpu", "f32 only");
  return GS_OK;
}

/* Rows of the chunk rounded to nearest even in d (bf16 or f16), kept as f32. */
static void round_rows(float *x, int64_t rows, int64_t v, int64_t ld, gs_dtype d) {
  for (int64_t r = 0; r < rows; r++) {
    float *row = x + r * ld;
    if (d == GS_BF16)
      for (int64_t j = 0; j < v; j++) row[j] = gs_bf16_to_f32(gs_f32_to_bf16(row[j]));
    else
      for (int64_t j = 0; j < v; j++) row[j] = gs_f16_to_f32(gs_f32_to_f16(row[j]));
  }
}

static void zero_rows(float *p, int64_t rows, int64_t cols, int64_t stride) {
  if (cols == 0) return;
  for (int64_t r = 0; r < rows; r++) memset(p + r * stride, 0, (size_t)cols * sizeof *p);
}

/* No row counts (n = 0, or every target ignored): the loss is 0 (NaN under
 * mean, 0/0 as in PyTorch) and every gradient is 0; no GEMM is needed. */
static void nothing_counts(const gs_lce_args *a, const gs_lce_plan *p) {
  if (p->want_loss) {
    if (a->reduction == GS_REDUCE_NONE) zero_rows(a->loss, 1, a->n, a->n);
    else *(float *)a->loss = a->reduction == GS_REDUCE_MEAN ? NAN : 0.0f;
    if (a->lse) zero_rows(a->lse, 1, a->n, a->n);
    if (a->z_loss) zero_rows(a->z_loss, 1, a->n, a->n);
  }
  if (a->dh) zero_rows(a->dh, a->n, a->hidden, a->dh_stride);
  if (a->dw) zero_rows(a->dw, a->v, a->hidden, a->dw_stride);
  if (a->db) zero_rows(a->db, 1, a->v, a->v);
}

static gs_status run_cpu(const gs_lce_args *a, int backward, gs_error *err) {
  gs_status st = gs_lce_check_args(a, backward, 0, err);
  if (st == GS_OK) st = check_dtypes(a, err);
  double d, count;
  if (st == GS_OK) st = gs_lce_scan_targets(a, &d, &count, err);
  if (st != GS_OK) return st;
  const int64_t n = a->n, hd = a->hidden, v = a->v;
  const int per_row = a->grad_output && a->grad_output_n != 1;
  double go = a->grad_output && !per_row ? ((const float *)a->grad_output)[0] : 1.0;
  gs_lce_plan p;
  gs_lce_plan_init(&p, a, backward, d, count, go);
  if (count == 0) {
    nothing_counts(a, &p);
    return GS_OK;
  }

  const float *h = a->h, *w = a->w, *bias = a->bias;
  float *dh = a->dh, *dw = a->dw, *db = a->db;
  const int64_t c = a->chunk_rows > 0 ? (a->chunk_rows < n ? a->chunk_rows : n) : gs_lce_default_chunk_rows(n, v, 0);
  const int64_t ld = (v + 15) / 16 * 16; /* rows start on 64-byte lines */
  const size_t bytes = (size_t)(c * ld) * sizeof(float);
  float *x = aligned_alloc(64, bytes);
  float *ones = db ? malloc((size_t)c * sizeof *ones) : NULL;
  if (!x || (db && !ones)) {
    free(x);
    free(ones);
    return no_memory(err, bytes);
  }
  for (int64_t r = 0; db && r < c; r++) ones[r] = 1.0f;

  const float alpha = (float)p.alpha;
  const gs_dtype cdt = gs_lce_chunk_dtype(a);
  double total = 0;
  for (int64_t i0 = 0; i0 < n && st == GS_OK; i0 += c) {
    const int64_t rows = n - i0 < c ? n - i0 : c;
    const float *hc = h + i0 * a->h_stride;
    float beta = 0.0f;
    if (bias) {
      for (int64_t r = 0; r < rows; r++) memcpy(x + r * ld, bias, (size_t)v * sizeof *x);
      beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)v, (int)hd, 1.0f, hc, (int)a->h_stride,
                w, (int)a->w_stride, beta, x, (int)ld);
    if (cdt != GS_F32) round_rows(x, rows, v, ld, cdt);

    gs_ce_args ce;
    float chunk_loss = 0;
    gs_lce_chunk_args(&ce, a, &p, i0, rows, x, GS_F32, ld, x, GS_F32, ld, &chunk_loss);
    st = p.want_loss ? gs_ce_forward_cpu(&ce, err) : gs_ce_backward_cpu(&ce, err);
    if (st != GS_OK) break;
    total += chunk_loss;
    if (p.want_loss && a->z_loss && p.zl_fix != 1.0)
      for (int64_t r = 0; r < rows; r++) ((float *)a->z_loss)[i0 + r] *= (float)p.zl_fix;

    if (!p.want_grad) continue;
    const float acc = i0 == 0 ? 0.0f : 1.0f; /* the first chunk overwrites dW and db */
    if (dh)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)hd, (int)v, alpha, x, (int)ld, w,
                  (int)a->w_stride, 0.0f, dh + i0 * a->dh_stride, (int)a->dh_stride);
    if (dw)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)v, (int)hd, (int)rows, alpha, x, (int)ld, hc,
                  (int)a->h_stride, acc, dw, (int)a->dw_stride);
    if (db) cblas_sgemv(CblasRowMajor, CblasTrans, (int)rows, (int)v, alpha, x, (int)ld, ones, 1, acc, db, 1);
  }
  if (st == GS_OK && p.want_loss && a->reduction != GS_REDUCE_NONE) *(float *)a->loss = (float)(total / p.loss_div);
  free(x);
  free(ones);
  return st;
}

gs_status gs_lce_forward_cpu(const gs_lce_args *a, gs_error *err) { return run_cpu(a, 0, err); }
gs_status gs_lce_backward_cpu(const gs_lce_args *a, gs_error *err) { return run_cpu(a, 1, err); }
