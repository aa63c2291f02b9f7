/* The fast CPU vocab-parallel passes: vocab_parallel_rows.h in float, rows
 * spread over threads (each row is written by one task only). The passes
 * over columns (MAX, TERMS' sums and GRAD) run vectorized (vec.h) over
 * chunks of VP_CHUNK columns: the same steps and the same order of
 * operations per column, with exps within 3 ulp of expf, and each chunk's
 * terms summed in f32 over VP_SUM_RUN vectors at a time before they join
 * the row's double sum. Softcap's tanh is vec.h's everywhere, also where a
 * column is computed alone (VP_TANH): z must round the same way in every
 * pass, as the max found by one is compared with the z of another. */
#include <stdio.h>
#include <string.h>

/* z = s x must round the same way in every pass (the max found by one is
 * compared with the z of another): no fused multiply-adds. */
#pragma GCC optimize("fp-contract=off")

#define REAL float
#define VP_EXP expf
#define VP_EXPM1 expm1f
#define VP_LOG1P log1pf
#define VP_TANH vp_tanh_lane
#define VP_COSH coshf
#define VP_GRAD_PUT vp_grad_put_cpu

#include "../gs_half.h"
#include "../vocab_parallel.h"
#include "parallel.h"
#include "vec.h"

static void vp_grad_put_cpu(const gs_vp_args *a, int64_t i, int64_t j, float g) {
  g_put((char *)a->grad + i * a->grad_stride * (int64_t)dtype_size(a->grad_dtype), a->grad_dtype, j, g);
}

static float vp_tanh_lane(float y);
/* TERMS' column sums, vectorized below. */
static void vp_terms_sums_vec(const gs_vp_args *a, int64_t i, float M, float l, int want_smooth, int want_mu,
                              double *smooth, double *mu);
#define VP_TERMS_SUMS vp_terms_sums_vec

#include "vocab_parallel_rows.h"

#define VP_CHUNK 2048
#define VP_SUM_RUN 16

/* tanh(y) as one lane of vtanh_d computes it. */
static float vp_tanh_lane(float y) {
  vf d;
  return vfirst(vtanh_d(vdup(y), &d));
}

/* z of columns [j0, j0 + n) of row i (vp_z_of(vp_y)), padded with -inf to
 * whole vectors; returns the padded count. ch, when given, gets dx/dz
 * (vp_chain) of the whole vectors. */
static int64_t vp_load_z(const gs_vp_args *a, int64_t i, int64_t j0, int64_t n, float *z, float *ch) {
  const char *row = (const char *)a->logits + i * a->logits_stride * (int64_t)dtype_size(a->logits_dtype);
  const float s = (float)a->logit_scale, c = (float)a->softcap;
  int64_t j = 0;
  for (; j + VW <= n; j += VW) {
    vf y = vmul(vdup(s), vload_x(row, a->logits_dtype, j0 + j));
    if (c > 0) {
      vf d;
      vstore(z + j, vmul(vdup(c), vtanh_d(vdiv(y, vdup(c)), &d)));
      if (ch) vstore(ch + j, vmul(vdup(s), d));
    } else {
      vstore(z + j, y);
      if (ch) vstore(ch + j, vdup(s));
    }
  }
  for (; j < n; j++) z[j] = vp_z_of(a, vp_y(a, i, j0 + j));
  for (; j % VW; j++) z[j] = -INFINITY;
  return j;
}

static int64_t vp_chunk_len(const gs_vp_args *a, int64_t j0) { return a->v - j0 < VP_CHUNK ? a->v - j0 : VP_CHUNK; }

/* vp_max_row, a chunk at a time: a chunk that raises the max rescales the
 * sum (the old max's 1 joins it) and leaves its own first maximum out. */
static void vp_max_row_vec(const gs_vp_args *a, int64_t i) {
  _Alignas(32) float z[VP_CHUNK];
  float m = -INFINITY;
  double s = 0;
  int bad = 0;
  if (vp_local_target(a, i) != -2) {
    for (int64_t j0 = 0; j0 < a->v && !bad; j0 += VP_CHUNK) {
      int64_t np = vp_load_z(a, i, j0, vp_chunk_len(a, j0), z, NULL);
      vf mx = vdup(-INFINITY);
      for (int64_t j = 0; j < np; j += VW) {
        vf x = vload(z + j);
        bad |= vany_nan_or_inf(x);
        mx = vmax_dropnan(mx, x);
      }
      if (bad) break; /* the row is NaN: its sum is never used */
      float mc = vhmax(mx);
      if (mc > m) {
        s = (s + 1) * VP_EXP(m - mc);
        m = mc;
        int64_t k = 0;
        while (z[k] != mc) k++;
        z[k] = -INFINITY;
      }
      if (m == -INFINITY) continue; /* only -inf so far */
      for (int64_t j = 0; j < np; j += VP_SUM_RUN * VW) {
        int64_t end = j + VP_SUM_RUN * VW < np ? j + VP_SUM_RUN * VW : np;
        vf acc = vdup(0.0f);
        for (int64_t q = j; q < end; q += VW) acc = vadd(acc, vexp_neg(vsub(vload(z + q), vdup(m))));
        s += vsum(acc);
      }
    }
  }
  vp_stat(a, GS_VP_M_LOCAL)[i] = vp_stat(a, GS_VP_M)[i] = bad ? INFINITY : m;
  vp_stat(a, GS_VP_REST)[i] = (float)s;
}

static void vp_terms_sums_vec(const gs_vp_args *a, int64_t i, float M, float l, int want_smooth, int want_mu,
                              double *smooth, double *mu) {
  _Alignas(32) float z[VP_CHUNK];
  for (int64_t j0 = 0; j0 < a->v; j0 += VP_CHUNK) {
    int64_t n = vp_chunk_len(a, j0), j = 0;
    vp_load_z(a, i, j0, n, z, NULL);
    while (j + VW <= n) {
      int64_t end = j + VP_SUM_RUN * VW;
      vf sm = vdup(0.0f), mm = vdup(0.0f);
      for (; j + VW <= n && j < end; j += VW) {
        vf d = vsub(vload(z + j), vdup(M));
        if (want_smooth) sm = vadd(sm, vmul(a->weight ? vloadu(a->weight + j0 + j) : vdup(1.0f), vsub(vdup(l), d)));
        if (want_mu) {
          vf p = vexp_neg(vsub(d, vdup(l)));
          mm = vadd(mm, vkeep_if_nonzero(p, vmul(p, d))); /* p log p -> 0 where p = 0 */
        }
      }
      *smooth += vsum(sm);
      *mu += vsum(mm);
    }
    vp_terms_sums_range(a, i, j0 + j, j0 + n, M, l, want_smooth, want_mu, smooth, mu); /* the ragged end */
  }
}

/* vp_grad_row, whole vectors at a time; a chunk's ragged end and the
 * target's column go through vp_dx. */
static void vp_grad_row_vec(const gs_vp_args *a, int64_t i) {
  int64_t t = vp_local_target(a, i);
  char *grow = (char *)a->grad + i * a->grad_stride * (int64_t)dtype_size(a->grad_dtype);
  if (t == -2) {
    memset(grow, 0, (size_t)a->v * dtype_size(a->grad_dtype));
    return;
  }
  _Alignas(32) float z[VP_CHUNK], ch[VP_CHUNK];
  const vp_grad_k k = vp_grad_consts(a, i);
  const vf M = vdup(k.M), l = vdup(k.l), g = vdup(k.g), mu = vdup(k.mu);
  const vf a_nll = vdup(k.wt * (1 - k.eps)), smooth = vdup(k.smooth), wsum = vdup(k.wsum), gzl = vdup(k.gz * k.zl);
  const int zloss = a->lse_square_scale > 0;
  for (int64_t j0 = 0; j0 < a->v; j0 += VP_CHUNK) {
    int64_t n = vp_chunk_len(a, j0), j = 0;
    vp_load_z(a, i, j0, n, z, ch);
    const int has_t = t >= j0 && t < j0 + n;
    const float yt = has_t ? vp_y(a, i, t) : 0; /* read before the stores: grad may be the logits */
    for (; j + VW <= n; j += VW) {
      vf d = vsub(vload(z + j), M), p = vexp_neg(vsub(d, l)), dz;
      if (a->op == GS_OP_CE) {
        vf wj = a->weight ? vloadu(a->weight + j0 + j) : vdup(1.0f);
        dz = vmul(g, vadd(vmul(a_nll, p), vmul(smooth, vsub(vmul(wsum, p), wj))));
        if (zloss) dz = vadd(dz, vmul(gzl, p));
      } else if (a->op == GS_OP_LOG_PROBS) {
        dz = vmul(g, vmul(vdup(-1.0f), p));
      } else {
        dz = vkeep_if_nonzero(p, vmul(vmul(g, p), vsub(mu, d)));
      }
      vstore_g(grow, a->grad_dtype, j0 + j, vmul(dz, vload(ch + j)), 0, 0);
    }
    for (; j < n; j++) VP_GRAD_PUT(a, i, j0 + j, vp_dx(a, &k, j0 + j, t, vp_y(a, i, j0 + j))); /* each read before its store */
    if (has_t) VP_GRAD_PUT(a, i, t, vp_dx(a, &k, t, t, yt));
  }
}

typedef struct {
  const gs_vp_args *a;
  int pass;
} vp_task;

static void vp_task_row(void *ctx, int64_t i, int worker) {
  (void)worker;
  const vp_task *t = ctx;
  if (t->pass == GS_VP_MAX) vp_max_row_vec(t->a, i);
  else if (t->pass == GS_VP_GRAD) vp_grad_row_vec(t->a, i);
  else vp_row(t->a, t->pass, i);
}

gs_status gs_vp_pass_cpu(const gs_vp_args *a, int pass, gs_error *err) {
  gs_status st = vp_check(a, pass, 0, err);
  if (st != GS_OK) return st;
  vp_task t = {a, pass};
  int workers = gs_parallel_workers(a->threads, a->n, a->n * a->v);
  gs_parallel_for(workers, a->n, vp_task_row, &t);
  return GS_OK;
}
