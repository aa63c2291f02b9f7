/* The fast CPU backend of the cross-entropy family (contract: ../cross_entropy.h).
 *
 * Each row is read from memory once, in chunks of CHUNK columns. Pass 1
 * keeps an online max m and sum of exp(z - m): most chunks take one loop straight
 * from the logits (convert, scale or softcap, max, exp against the running
 * max, sum); a chunk that raises the max rescales the sums so far. The terms
 * e_j are kept, with the max m_c they were taken against, in a per-worker
 * row buffer that stays in L2. Once lse = m + log s is known, pass 2 writes
 * the gradient from p_j = e_j exp((m_c - m) - log s) (never from a rounded
 * lse, which drops log s once |m| is large): one multiply-add per element
 * and no second exp; the logits are read again (from cache) only where z itself is needed
 * (softcap chain, entropy). The target's column is left out of the f32 sums
 * and handled in f64, so that 1 - p_t keeps its digits as p_t -> 1.
 *
 * Pass 1 is bound by the exp and pass 2 by the gradient's stores, so a row's
 * pass 2 is deferred into the next row's pass 1, a chunk per chunk: for
 * plain cross entropy its stores are made vector by vector inside the fused
 * loop, so that they drain while the exps are computed; otherwise the chunk
 * is written just before. Each worker has two row buffers, used by
 * alternate rows, and its pending row carries over from block to block.
 *
 * bf16 logits are widened 16 at a time into a vector of the even columns
 * and one of the odd ones (vload_x2), and e keeps that order: a bf16
 * gradient is packed back into natural order with one blend.
 *
 * Rows are handed to threads in fixed blocks and each block keeps its own
 * partial sum; the sums are added in block order, so a reduction gives the
 * same bits whatever the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "../cross_entropy.h"
#include "../cross_entropy_check.h"
#include "../gs_half.h"
#include "../mutants.h"
#include "parallel.h"
#include "vec.h"

/* Columns per chunk: each chunk of a row has its own reference max, and
 * costs some scalar work (a reduction of the sums, an exp in f64 for pass 2)
 * that 4096 columns make small; its f32 buffers (16 KiB) stay in L1/L2. */
#define CHUNK 4096
#define BLOCK_WORK ((int64_t)1 << 16)         /* elements per task (a block of whole rows) */
#define STREAM_MIN_BYTES ((int64_t)16 << 20)  /* gradients this large bypass the cache */
#define PREFETCH_BYTES 2048                   /* how far pass 1 reads ahead of itself */
/* exp() of anything below is 0 in f32: clamping z - m there keeps 0 * -inf
 * out of the entropy sums without changing them. */
#define EXP_FLOOR (-104.0f)

/* Which code paths the calls took, for specs that must reach each one
 * (gs_ce_cpu_path_count). Counted per thread with plain increments, at most
 * once per chunk of CHUNK columns, and added to the totals once per block of
 * rows: nothing a benchmark can see. */
enum {
  PATH_FUSED,         /* pass 1 chunk in the one-loop fused form */
  PATH_FUSED_REDO,    /* a fused chunk redone: its max rose past the headroom */
  PATH_LOADED,        /* pass 1 chunk loaded first (smoothing, entropy, a redo) */
  PATH_RESCALE,       /* sums so far rescaled to a larger max */
  PATH_MASKED,        /* a chunk with nothing finite seen yet (-inf, NaN) */
  PATH_SMOOTH_F64,    /* the smoothing sum redone in f64 (near FLT_MAX) */
  PATH_PASS2_ALONG,   /* a chunk of the previous row's gradient written inside the fused loop */
  PATH_PASS2_CHUNK,   /* a gradient chunk written on its own, f32 vectors */
  PATH_PASS2_F64,     /* a gradient chunk in scalar f64 (constants f32 cannot keep) */
  PATH_PASS2_NONFINITE, /* a gradient chunk with non-finite constants */
  PATH_IGNORED_ROW,
  PATH_INPLACE,       /* per call: the gradient overwrites the logits */
  PATH_STREAMING,     /* per call: non-temporal gradient stores */
  PATH_THREADS,       /* per call: more than one worker */
  PATH_BF16_EVEN_ODD, /* per call: bf16 in even/odd order (vload_x2) */
  PATH_MULTI_CHUNK,   /* per call: rows wider than one chunk */
  PATH_COUNT
};
static const char *const path_names[PATH_COUNT] = {
  "fused_chunk", "fused_redo", "loaded_chunk", "rescale", "masked_prefix", "smooth_sum_f64", "pass2_interleaved",
  "pass2_chunk", "pass2_f64", "pass2_nonfinite", "ignored_row", "inplace", "streaming_stores", "threads",
  "bf16_even_odd", "multi_chunk_rows"};
static _Thread_local uint64_t path_local[PATH_COUNT];
static uint64_t path_total[PATH_COUNT];
#define PATH(k) (path_local[k]++)

static void paths_flush(void) {
  for (int k = 0; k < PATH_COUNT; k++) {
    if (path_local[k]) __atomic_fetch_add(&path_total[k], path_local[k], __ATOMIC_RELAXED);
    path_local[k] = 0;
  }
}


/* Everything a row needs, resolved once per call. */
typedef struct {
  gs_ce_op op;
  int64_t n, v;
  const char *x;
  gs_dtype xdt;
  int64_t xstride;       /* bytes */
  char *g;               /* NULL: no gradient */
  gs_dtype gdt;
  int64_t gstride;       /* bytes */
  int stream;            /* gradient written with non-temporal stores */
  int eo;                /* bf16 pairs in even/odd order (vload_x2): logits bf16, gradient none or bf16, no weights */
  const void *tgt;
  gs_dtype tdt;
  int64_t ignore;
  int64_t target_shift;  /* 1 under the TARGET_OFF_BY_ONE mutant */
  const float *w;        /* class weights (forward), NULL when unweighted */
  const float *wgrad;    /* weights for the gradient, padded to whole vectors; NULL: unweighted */
  double wsum, wsum_grad;
  float s, c, s_over_c;  /* logit scale; softcap (0 = off) */
  float zc;              /* softcap: z = zc tanh(s_over_c x); zc = c (s c under CAP_BEFORE_SCALE) */
  double eps, smooth, lam;
  double d, count;       /* mean: the weight sum of the targets, the non-ignored rows */
  double ce_scale, zl_scale;
  double sign;           /* -1: log_probs (= -CE); mutants flip it */
  const float *go;
  int go_rows;
  float cs;              /* chain factor: s, times (1 - (z/c)^2) when cap_chain */
  int cap_chain;
  double zfac;           /* the 2 of d(lam lse^2)/dz */
  int no_max, leak_ignored;
  /* mutants (kernels/mutants.h) */
  int confident_cancel, lse_rounded, smooth_overflow, smooth_unweighted;
  int smooth_target_weight, go_row0;
  double wsum_smooth;    /* W in the smoothing term: wsum (V under SMOOTH_UNWEIGHTED) */
  int fwd, loss_rows;
  float *loss, *lse, *zl;
  int64_t block_rows, nblocks;
  double *part;          /* per block: CE sum, z-loss sum */
  float *scratch;        /* per worker, twice (alternate rows): e (row), then m_c (chunks) */
  int64_t e_len, row_scratch, scratch_stride;
  struct worker_state *ws; /* per worker, with a gradient: its pending pass 2 */
} plan;

typedef struct {
  float m;     /* row max (0 under the LSE_NO_MAX mutant) */
  float zt;    /* the target's z */
  double s;    /* sum_j exp(z_j - m) */
  double log_s;
  double s2;   /* entropy: sum_j exp(z_j - m) (z_j - m) */
  double lin;  /* label smoothing: sum_j w_j (z_j - r) */
  float r;     /* the first chunk's max: near the logits, so that lin does not cancel */
} row_stats;

/* What load_chunk makes of x: z = x (s = 1, the common case, saves a
 * multiply in the busiest loop); z = s x; z = c tanh(s x / c) (softcap); or,
 * for the softcap chain of pass 2, y = s x / c, of which it takes both tanh
 * and its derivative. */
enum { Z_PLAIN, Z_SCALED, Z_CAPPED, Y_PRE_CAP };

ALWAYS_INLINE vf transform(vf x, vf mul, vf c, int mode) {
  if (mode == Z_PLAIN) return x;
  if (mode == Z_SCALED || mode == Y_PRE_CAP) return vmul(x, mul);
  vf d;
  return vmul(c, vtanh_d(vmul(x, mul), &d));
}

/* The last, partial vector of a row: left < VW values from element j, the
 * lanes past the end set to -inf after the transform (the softcap would turn
 * -inf padding into a finite -c). */
ALWAYS_INLINE vf transform_tail(const char *row, int64_t j, int64_t left, vf mul, vf c, gs_dtype dt, int mode) {
  _Alignas(32) float tmp[VW] = {0};
  for (int64_t k = 0; k < left; k++) tmp[k] = x_at(row, dt, j + k);
  return vtail(transform(vload(tmp), mul, c, mode), (int)left, -INFINITY);
}

/* z = transform(x[j0, j0 + n)) into z, padded to whole vectors with -inf.
 * Returns the chunk max over the values that are not NaN (NaN reaches the
 * sums through exp instead). mul and c are locals: through p, every store to
 * z would force them to be reloaded. */
ALWAYS_INLINE float load_chunk_dt(const char *row, int64_t j0, int64_t n, float *z, float mul_s, float cap,
                                  gs_dtype dt, int eo, int mode) {
  const vf mul = vdup(mul_s), c = vdup(cap);
  vf mx = vdup(-INFINITY);
  int64_t j = 0;
  for (; j + 2 * VW <= n; j += 2 * VW) {
    vf z0, z1;
    vload_x2(row, dt, eo, j0 + j, &z0, &z1);
    z0 = transform(z0, mul, c, mode);
    z1 = transform(z1, mul, c, mode);
    vstore(z + j, z0);
    vstore(z + j + VW, z1);
    mx = vmax_dropnan(vmax_dropnan(mx, z0), z1);
  }
  for (; j + VW <= n; j += VW) {
    vf zz = transform(vload_x(row, dt, j0 + j), mul, c, mode);
    vstore(z + j, zz);
    mx = vmax_dropnan(mx, zz);
  }
  if (j < n) {
    vf zz = transform_tail(row, j0 + j, n - j, mul, c, dt, mode);
    vstore(z + j, zz);
    mx = vmax_dropnan(mx, zz);
  }
  return vhmax(mx);
}

ALWAYS_INLINE float load_chunk_as(const plan *p, const char *row, int64_t j0, int64_t n, float *z, gs_dtype dt,
                                  int eo, int mode) {
  switch (mode) {
  case Z_PLAIN: return load_chunk_dt(row, j0, n, z, 1, 0, dt, eo, Z_PLAIN);
  case Z_SCALED: return load_chunk_dt(row, j0, n, z, p->s, 0, dt, eo, Z_SCALED);
  case Z_CAPPED: return load_chunk_dt(row, j0, n, z, p->s_over_c, p->zc, dt, eo, Z_CAPPED);
  default: return load_chunk_dt(row, j0, n, z, p->s_over_c, 0, dt, eo, Y_PRE_CAP);
  }
}

/* pre_cap: y = s x / c rather than z (softcap only). */
static float load_chunk(const plan *p, const char *row, int64_t j0, int64_t n, float *z, int pre_cap) {
  const int mode = p->c > 0 ? (pre_cap ? Y_PRE_CAP : Z_CAPPED) : p->s == 1 ? Z_PLAIN : Z_SCALED;
  switch (p->xdt) {
  case GS_BF16:
    return p->eo ? load_chunk_as(p, row, j0, n, z, GS_BF16, 1, mode) : load_chunk_as(p, row, j0, n, z, GS_BF16, 0, mode);
  case GS_F16: return load_chunk_as(p, row, j0, n, z, GS_F16, 0, mode);
  default: return load_chunk_as(p, row, j0, n, z, GS_F32, 0, mode);
  }
}

/* The common chunk in one loop straight from the logits: z, its max, and
 * e_j = exp(z_j - ref) against the running max ref (finite) rather than the
 * chunk's own max, which is not known yet. z up to ref + FUSED_HEADROOM
 * keeps e and its f32 sum finite; beyond that the caller redoes the chunk.
 * Returns the chunk max; *sum gets sum_j e_j. */
#define FUSED_HEADROOM 64.0f
ALWAYS_INLINE void fused_step(vf zz, vf ref, float *e, int keep_e, vf *mx, vf *acc) {
  *mx = vmax_dropnan(*mx, zz);
  vf ej = vexp_neg(vsub(zz, ref));
  if (keep_e) vstore(e, ej);
  *acc = vadd(*acc, ej);
}

/* The same chunk of the previous row's pass 2, in its simplest form
 * (g_j = k1 e_j - k2, all finite, gradient dtype = logits dtype), written
 * vector by vector inside the fused loop: the stores then drain while the
 * exps are computed, rather than in a burst that stalls them. */
typedef struct {
  const float *e; /* the chunk's e_j */
  char *g;        /* the gradient row */
  int64_t j0;
  vf k1, k2;
  int no_k2;      /* k2 = 0 (no label smoothing): one register fewer in the loop */
  int nt;
} prev_chunk;

/* with_pc: 0 no pass 2 along, 1 g = k1 e - k2, 2 g = k1 e */
enum { PC_NONE, PC_K1_K2, PC_K1 };

ALWAYS_INLINE vf pc_grad(const float *e, vf k1, vf k2, int with_pc) {
  return with_pc == PC_K1 ? vmul(vload(e), k1) : vfms(vload(e), k1, k2);
}

/* Where element o of a chunk of n values sits in z and e. */
static inline int64_t lane_pos(int64_t o, int64_t n, int eo) {
  const int64_t g = o / (2 * VW) * (2 * VW);
  if (!eo || g + 2 * VW > n) return o;
  return g + (o - g) % 2 * VW + (o - g) / 2;
}

/* The vector of z at offset j of a chunk; the target's lane (offset tl,
 * -1: not in this chunk) is taken out into *zt and replaced by -inf. */
ALWAYS_INLINE vf drop_target(vf zz, int64_t j, int64_t tl, float *zt) {
  if ((uint64_t)(tl - j) >= VW) return zz;
  _Alignas(32) float tmp[VW];
  vstore(tmp, zz);
  *zt = tmp[tl - j];
  tmp[tl - j] = -INFINITY;
  return vload(tmp);
}

/* The same for the pair of vectors at offset j, in the pair's order. */
ALWAYS_INLINE void drop_target2(vf *z0, vf *z1, int64_t j, int64_t tl, float *zt, int eo) {
  if ((uint64_t)(tl - j) >= 2 * VW) return;
  _Alignas(32) float tmp[2 * VW];
  vstore(tmp, *z0);
  vstore(tmp + VW, *z1);
  const int64_t k = lane_pos(tl - j, 2 * VW, eo);
  *zt = tmp[k];
  tmp[k] = -INFINITY;
  *z0 = vload(tmp);
  *z1 = vload(tmp + VW);
}

/* Whole pairs of vectors [from, to) of a chunk: the fused step on each, and
 * with pc the same 16 columns of the previous row's gradient. drop: the
 * target lies in these vectors (kept out of the hot loop, which it would
 * slow down). keep_e: e is not NULL. A sum per vector of the pair: shorter
 * chains of adds, each over fewer terms. */
ALWAYS_INLINE void fused_pairs(const char *row, int64_t j0, int64_t from, int64_t to, vf mul, vf c, vf vref, float *e,
                               const float *pe, char *pg, int64_t pj0, vf k1, vf k2, int64_t tl, float *zt, vf *mx,
                               vf *acc0, vf *acc1, gs_dtype dt, int eo, int mode, int with_pc, int nt, int keep_e,
                               int drop) {
  for (int64_t j = from; j < to; j += 2 * VW) {
    /* the hardware prefetcher alone leaves this loop waiting on memory */
    __builtin_prefetch(row + (j0 + j) * (dt == GS_F32 ? 4 : 2) + PREFETCH_BYTES);
    vf z0, z1;
    vload_x2(row, dt, eo, j0 + j, &z0, &z1);
    z0 = transform(z0, mul, c, mode);
    z1 = transform(z1, mul, c, mode);
    if (drop) drop_target2(&z0, &z1, j, tl, zt, eo);
    fused_step(z0, vref, keep_e ? e + j : NULL, keep_e, mx, acc0);
    fused_step(z1, vref, keep_e ? e + j + VW : NULL, keep_e, mx, acc1);
    if (with_pc)
      vstore_g2(pg, dt, eo, pj0 + j, pc_grad(pe + j, k1, k2, with_pc), pc_grad(pe + j + VW, k1, k2, with_pc), nt, 1);
  }
}

ALWAYS_INLINE float fused_chunk_dt(const char *row, int64_t j0, int64_t n, float mul_s, float cap, float ref,
                                   float *e, double *sum, const prev_chunk *pc, int64_t tl, float *zt, gs_dtype dt,
                                   int eo, int mode, int with_pc, int nt, int keep_e) {
  const vf mul = vdup(mul_s), c = vdup(cap), vref = vdup(ref);
  /* pc's fields in locals: through the pointer, every store would reload them */
  const float *pe = with_pc ? pc->e : NULL;
  char *pg = with_pc ? pc->g : NULL;
  const int64_t pj0 = with_pc ? pc->j0 : 0;
  const vf k1 = with_pc ? pc->k1 : vdup(0), k2 = with_pc ? pc->k2 : vdup(0);
  vf mx = vdup(-INFINITY), acc = vdup(0), acc1 = vdup(0);
  const int64_t n2 = n / (2 * VW) * (2 * VW);
  const int64_t tp = tl >= 0 && tl < n2 ? tl / (2 * VW) * (2 * VW) : n2; /* the pair with the target */
#define PAIRS(from, to, drop)                                                                                      \
  fused_pairs(row, j0, from, to, mul, c, vref, e, pe, pg, pj0, k1, k2, tl, zt, &mx, &acc, &acc1, dt, eo, mode, \
              with_pc, nt, keep_e, drop)
  PAIRS(0, tp, 0);
  if (tp < n2) {
    PAIRS(tp, tp + 2 * VW, 1);
    PAIRS(tp + 2 * VW, n2, 0);
  }
#undef PAIRS
  int64_t j = n2;
  for (; j + VW <= n; j += VW) {
    vf zz = drop_target(transform(vload_x(row, dt, j0 + j), mul, c, mode), j, tl, zt);
    fused_step(zz, vref, keep_e ? e + j : NULL, keep_e, &mx, &acc);
    if (with_pc) vstore_g(pg, dt, pj0 + j, pc_grad(pe + j, k1, k2, with_pc), nt, 1);
  }
  if (j < n) {
    vf zz = drop_target(transform_tail(row, j0 + j, n - j, mul, c, dt, mode), j, tl, zt);
    fused_step(zz, vref, keep_e ? e + j : NULL, keep_e, &mx, &acc);
    if (with_pc && !(nt && GS_MUTANT(GS_MUT_STREAM_TAIL))) vstore_g_part(pg, dt, pj0 + j, pc_grad(pe + j, k1, k2, with_pc), n - j);
  }
  *sum = vsum(vadd(acc, acc1));
  return vhmax(mx);
}

ALWAYS_INLINE float fused_chunk_as(const plan *p, const char *row, int64_t j0, int64_t n, float ref, float *e,
                                   double *sum, const prev_chunk *pc, int64_t tl, float *zt, gs_dtype dt, int eo) {
#define FUSED(mul, cap, mode, with_pc, nt, keep_e) \
  fused_chunk_dt(row, j0, n, mul, cap, ref, e, sum, pc, tl, zt, dt, eo, mode, with_pc, nt, keep_e)
  if (p->c > 0) return e ? FUSED(p->s_over_c, p->zc, Z_CAPPED, 0, 0, 1) : FUSED(p->s_over_c, p->zc, Z_CAPPED, 0, 0, 0);
  if (p->s != 1) return e ? FUSED(p->s, 0, Z_SCALED, 0, 0, 1) : FUSED(p->s, 0, Z_SCALED, 0, 0, 0);
  if (!pc) return e ? FUSED(1, 0, Z_PLAIN, 0, 0, 1) : FUSED(1, 0, Z_PLAIN, 0, 0, 0);
  /* a gradient: e is kept */
  if (pc->no_k2) return pc->nt ? FUSED(1, 0, Z_PLAIN, PC_K1, 1, 1) : FUSED(1, 0, Z_PLAIN, PC_K1, 0, 1);
  return pc->nt ? FUSED(1, 0, Z_PLAIN, PC_K1_K2, 1, 1) : FUSED(1, 0, Z_PLAIN, PC_K1_K2, 0, 1);
#undef FUSED
}

/* pc (not NULL only for plain logits: no scale or softcap) is written along;
 * the target at chunk offset tl (-1: none) is left out of the sum, its z in *zt. */
static float fused_chunk(const plan *p, const char *row, int64_t j0, int64_t n, float ref, float *e, double *sum,
                         const prev_chunk *pc, int64_t tl, float *zt) {
  switch (p->xdt) {
  case GS_BF16:
    return p->eo ? fused_chunk_as(p, row, j0, n, ref, e, sum, pc, tl, zt, GS_BF16, 1)
                 : fused_chunk_as(p, row, j0, n, ref, e, sum, pc, tl, zt, GS_BF16, 0);
  case GS_F16: return fused_chunk_as(p, row, j0, n, ref, e, sum, pc, tl, zt, GS_F16, 0);
  default: return fused_chunk_as(p, row, j0, n, ref, e, sum, pc, tl, zt, GS_F32, 0);
  }
}

/* z_0 in scalar code: a finite reference for the first chunk's fused loop,
 * before any max is known (it need not match the vector transform's bits). */
static float first_z(const plan *p, const char *row) {
  float x = x_at(row, p->xdt, 0);
  if (p->c > 0) return p->zc * tanhf(x * p->s_over_c);
  return p->s == 1 ? x : p->s * x;
}

/* sum_j exp(z_j - m) of a row so far. With split, the terms >= 1/2 are kept
 * apart: the max adds exactly 1, and in f32 small terms added to it would
 * vanish, yet 1 - p_max is made of them. (Cross entropy needs no split: it
 * leaves the target's term out and adds it in f64.) */
typedef struct {
  double big, small;
  double s2; /* entropy: sum_j exp(z_j - m) (z_j - m) */
} exp_sums;

ALWAYS_INLINE void expsum_impl(const float *z, int64_t np, float m, float *e, exp_sums *acc, int keep_e, int split,
                               int entropy, int full_range) {
  const vf vm = vdup(m), half = vdup(0.5f);
  vf big = vdup(0), rest = vdup(0), s2 = vdup(0);
  for (int64_t j = 0; j < np; j += VW) {
    vf d = vsub(vload(z + j), vm);
    vf ej = full_range ? vexp_full(d) : vexp_neg(d);
    if (keep_e) vstore(e + j, ej);
    vf b = split ? vkeep_ge(ej, half) : vdup(0);
    if (split) big = vadd(big, b);
    rest = vadd(rest, split ? vsub(ej, b) : ej);
    if (entropy) s2 = vfma(ej, vmax_keepnan(vdup(EXP_FLOOR), d), s2);
  }
  acc->big += vsum(big);
  acc->small += vsum(rest);
  if (entropy) acc->s2 += vsum(s2);
}

/* Adds a padded chunk to the sums; keeps the terms in e when e is not NULL. */
static void chunk_expsum(const plan *p, const float *z, int64_t np, float m, float *e, int split, exp_sums *acc) {
  const int entropy = p->op == GS_OP_ENTROPY;
  if (split || entropy || p->no_max) expsum_impl(z, np, m, e, acc, e != NULL, split, entropy, p->no_max);
  else if (e) expsum_impl(z, np, m, e, acc, 1, 0, 0, 0);
  else expsum_impl(z, np, m, NULL, acc, 0, 0, 0, 0);
}

/* The max grew by shift > 0: rescale what was summed against the old one. */
static void rescale(exp_sums *acc, double shift) {
  if (acc->big + acc->small == 0) return; /* also: nothing finite seen yet */
  PATH(PATH_RESCALE);
  double a = exp(-shift);
  acc->s2 = a * (acc->s2 - shift * (acc->big + acc->small));
  acc->big *= a;
  acc->small *= a;
  if (acc->big < 0.5) {
    acc->small += acc->big;
    acc->big = 0;
  }
}

/* sum_j w_j (z_j - r) over the n real values of a chunk, in f64 (w NULL:
 * all 1): z_j - r of two finite f32 values and the products and sums of
 * such terms never overflow f64. */
static double chunk_linsum_f64(const float *z, const float *w, int64_t n, float r) {
  double s = 0;
  for (int64_t j = 0; j < n; j++) s += (w ? (double)w[j] : 1.0) * ((double)z[j] - r);
  return s;
}

/* sum_j w_j (z_j - r) over the n real values of a chunk (w NULL: all 1),
 * in f32 vectors. For logits near FLT_MAX a difference, a product or the
 * sum itself can overflow f32 although the row's loss is representable
 * (docs/losses.md, section 11): a sum that is not finite is then redone in
 * f64, which also keeps a -inf (masked class) or NaN logit's own result.
 * The check costs one comparison per chunk. f32_only: the SMOOTH_OVERFLOW
 * mutant, which keeps the overflowed sum. */
static double chunk_linsum(const float *z, const float *w, int64_t n, float r, int f32_only) {
  vf vr = vdup(r), acc = vdup(0);
  int64_t j = 0;
  for (; j + VW <= n; j += VW) {
    vf d = vsub(vload(z + j), vr);
    acc = w ? vfma(vloadu(w + j), d, acc) : vadd(acc, d);
  }
  double s = vsum(acc);
  for (; j < n; j++) s += (w ? w[j] : 1.0f) * (z[j] - r);
  if (!isfinite(s) && !f32_only) {
    PATH(PATH_SMOOTH_F64);
    s = chunk_linsum_f64(z, w, n, r);
  }
  return s;
}

static int chunk_has_nan(const float *z, int64_t n) {
  for (int64_t j = 0; j < n; j++)
    if (isnan(z[j])) return 1;
  return 0;
}

static int64_t chunk_len(const plan *p, int64_t j0) { return p->v - j0 < CHUNK ? p->v - j0 : CHUNK; }
static int64_t padded(int64_t n) { return (n + VW - 1) / VW * VW; }

/* A row's pass 2 in progress (defined with pass 2 below). */
typedef struct grad_job grad_job;
static void grad_job_step(const plan *p, grad_job *job);
static int grad_job_chunk_simple(const plan *p, grad_job *job, prev_chunk *pc);
static void grad_job_advance(const plan *p, grad_job *job);

/* Pass 1 over a row: max, sum of exp (and the entropy and smoothing sums),
 * rescaling the sums whenever a chunk raises the max. t >= 0: the target,
 * whose term is left out of the f32 sums and added in f64. e, mc: kept for
 * pass 2 when not NULL. prev: the previous row's pass 2, advanced by a chunk
 * per chunk of this row. */
static void scan_row(const plan *p, const char *row, int64_t t, float *e, float *mc, row_stats *st,
                     grad_job *prev) {
  _Alignas(32) float z[CHUNK];
  float m = p->no_max ? 0.0f : -INFINITY, r = 0, zt = 0;
  exp_sums acc = {0, 0, 0};
  double lin = 0;
  /* the one-loop path needs nothing but z and exp(z - m) */
  const int fused_ok = t >= 0 && !p->no_max && !(p->eps > 0);
  for (int64_t c = 0, j0 = 0; j0 < p->v; c++, j0 += CHUNK) {
    int64_t n = chunk_len(p, j0), np = padded(n);
    /* m is -inf before the first chunk: nothing is summed yet, so any finite
     * reference will do */
    const float ref = c == 0 && fused_ok ? first_z(p, row) : m;
    const int fused = fused_ok && isfinite(ref);
    prev_chunk pc;
    const int along = fused && prev && grad_job_chunk_simple(p, prev, &pc);
    if (prev && !along) grad_job_step(p, prev);
    if (fused) {
      double sum;
      const int64_t tl = t >= j0 && t < j0 + n ? t - j0 : -1;
      float cm = fused_chunk(p, row, j0, n, ref, e ? e + j0 : NULL, &sum, along ? &pc : NULL, tl, &zt);
      if (tl >= 0 && zt > cm) cm = zt; /* the max counts the target (exp(z_t - m) must not overflow) */
      if (along) {
        PATH(PATH_PASS2_ALONG);
        grad_job_advance(p, prev);
      }
      if (!(cm > ref + FUSED_HEADROOM)) {
        PATH(PATH_FUSED);
        m = ref;
        acc.small += sum;
        if (mc) mc[c] = m;
        if (cm > m) {
          rescale(&acc, (double)cm - m);
          m = cm;
        }
        continue;
      }
      PATH(PATH_FUSED_REDO);
    }
    PATH(PATH_LOADED);
    float cm = load_chunk(p, row, j0, n, z, 0);
    if (c == 0 && isfinite(cm)) r = cm;
    if (!p->no_max && cm > m) {
      rescale(&acc, (double)cm - m);
      m = cm;
    }
    if (p->eps > 0) lin += chunk_linsum(z, p->w && !p->smooth_unweighted ? p->w + j0 : NULL, n, r, p->smooth_overflow);
    if (t >= j0 && t < j0 + n) {
      const int64_t k = lane_pos(t - j0, n, p->eo);
      zt = z[k];
      z[k] = -INFINITY;
    }
    if (m == -INFINITY) {
      /* nothing finite so far: exp(z - m) would be exp(-inf + inf); a NaN
       * here (invisible to the max) must still poison the row */
      PATH(PATH_MASKED);
      if (chunk_has_nan(z, n)) m = NAN;
      if (e) memset(e + j0, 0, (size_t)np * sizeof *e);
    } else {
      /* the REDO_STALE_E mutant: a redone chunk's e keeps its fused attempt's terms */
      const int stale = fused && GS_MUTANT(GS_MUT_REDO_STALE_E);
      chunk_expsum(p, z, np, m, e && !stale ? e + j0 : NULL, t < 0, &acc);
    }
    if (mc) mc[c] = m;
  }
  double s, log_s;
  if (t >= 0) {
    /* s = e_t + rest; log1p(expm1(z_t - m) + rest) keeps 1 - p_t (= rest/s
     * when t is the max) even when it is far below f64's epsilon */
    s = exp((double)zt - m) + acc.small;
    log_s = log1p(expm1((double)zt - m) + acc.small);
  } else {
    s = acc.big + acc.small;
    log_s = acc.big >= 0.5 ? log1p((acc.big - 1) + acc.small) : log(s);
  }
  *st = (row_stats){.m = m, .zt = zt, .s = s, .log_s = log_s, .s2 = acc.s2, .lin = lin, .r = r};
}

/* Pass 2 constants: dz_j = a p_j - b w_j (CE) or a p_j (mu - (z_j - m))
 * (entropy), with p_j = e_j f per chunk and the chain factor folded in. */
typedef struct {
  vf k1, k2, mu, m;
  int entropy, cap;
} grad_consts;

/* The gradient at offset j of a chunk: (k1 e - k2 w) chain, or k1 e (mu - (z - m)) chain,
 * chain = 1 - (z/c)^2 from y = s x / c. simple: CE, unweighted, no softcap chain. */
ALWAYS_INLINE vf grad_vec(const grad_consts *k, const float *e, const float *z, const float *y, const float *w,
                          int64_t j, int simple) {
  vf ej = vload(e + j), o;
  if (simple) return vfms(ej, k->k1, k->k2);
  if (k->entropy) o = vmul(vmul(k->k1, ej), vsub(k->mu, vmax_keepnan(vdup(EXP_FLOOR), vsub(vload(z + j), k->m))));
  else if (w) o = vfnma(vload(w + j), k->k2, vmul(ej, k->k1));
  else o = vfms(ej, k->k1, k->k2);
  if (k->cap) {
    vf chain;
    vtanh_d(vload(y + j), &chain);
    o = vmul(o, chain);
  }
  return o;
}

/* How much of grad_vec a chunk needs: everything; only k1 e - k2 (CE,
 * unweighted, no softcap chain); or that with k1, k2 finite, so that no
 * NaN can come out and the bf16 rounding may skip its NaN case. */
enum { GRAD_GENERAL, GRAD_SIMPLE, GRAD_SIMPLE_FINITE };

ALWAYS_INLINE void grad_store_dt(const grad_consts *k, const float *e, const float *z, const float *y, const float *w,
                                 int64_t n, char *grow, int64_t j0, int nt, gs_dtype dt, int eo, int variant) {
  const int simple = variant != GRAD_GENERAL, nonan = variant == GRAD_SIMPLE_FINITE;
  int64_t j = 0;
  for (; j + 2 * VW <= n; j += 2 * VW)
    vstore_g2(grow, dt, eo, j0 + j, grad_vec(k, e, z, y, w, j, simple), grad_vec(k, e, z, y, w, j + VW, simple), nt,
              nonan);
  for (; j + VW <= n; j += VW) vstore_g(grow, dt, j0 + j, grad_vec(k, e, z, y, w, j, simple), nt, nonan);
  if (j < n && !(nt && GS_MUTANT(GS_MUT_STREAM_TAIL)))
    vstore_g_part(grow, dt, j0 + j, grad_vec(k, e, z, y, w, j, simple), n - j);
}

ALWAYS_INLINE void grad_store_as(const grad_consts *k, const float *e, const float *z, const float *y, const float *w,
                                 int64_t n, char *grow, int64_t j0, int nt, gs_dtype dt, int eo, int variant) {
  switch (variant) {
  case GRAD_SIMPLE_FINITE: grad_store_dt(k, e, z, y, w, n, grow, j0, nt, dt, eo, GRAD_SIMPLE_FINITE); break;
  case GRAD_SIMPLE: grad_store_dt(k, e, z, y, w, n, grow, j0, nt, dt, eo, GRAD_SIMPLE); break;
  default: grad_store_dt(k, e, z, y, w, n, grow, j0, nt, dt, eo, GRAD_GENERAL); break;
  }
}

static void grad_store(const plan *p, const grad_consts *k, const float *e, const float *z, const float *y,
                       const float *w, int64_t n, char *grow, int64_t j0, int nt, int finite) {
  int variant = GRAD_GENERAL;
  if (!k->entropy && !k->cap && !w) variant = finite ? GRAD_SIMPLE_FINITE : GRAD_SIMPLE;
  switch (p->gdt) {
  case GS_BF16:
    if (p->eo) grad_store_as(k, e, z, y, w, n, grow, j0, nt, GS_BF16, 1, variant);
    else grad_store_as(k, e, z, y, w, n, grow, j0, nt, GS_BF16, 0, variant);
    break;
  case GS_F16: grad_store_as(k, e, z, y, w, n, grow, j0, nt, GS_F16, 0, variant); break;
  default: grad_store_as(k, e, z, y, w, n, grow, j0, nt, GS_F32, 0, variant); break;
  }
}

/* One row's buffers. */
typedef struct {
  int64_t i;
  const char *x;     /* its logits */
  char *g;           /* its gradient, NULL without one */
  float *e, *mc;     /* pass 2's terms, NULL without a gradient */
  int nt;            /* streaming gradient stores */
} row_ctx;

/* half: which of the worker's two row buffers; the previous row's pass 2
 * may still read the other. */
static row_ctx row_at(const plan *p, float *scratch, int64_t i, int half) {
  row_ctx r = {.i = i, .x = p->x + i * p->xstride};
  if (!p->g) return r;
  r.g = p->g + i * p->gstride;
  r.e = scratch + half * p->row_scratch;
  r.mc = r.e + p->e_len;
  r.nt = p->stream && ((uintptr_t)r.g % 32) == 0; /* then every chunk's stores are aligned */
  return r;
}

/* Pass 2 of one row, a chunk at a time: the gradient from the kept e_j.
 * CE: dz_j = a p_j - b w_j; entropy: dz_j = a p_j (mu - (z_j - m)). Column
 * t >= 0 is then rewritten with dzt, its value computed in f64. */
struct grad_job {
  row_ctx r;
  grad_consts k;
  double a, b, mu;   /* the row's constants, in f64 */
  float m;           /* p_j = e_j exp((m_c - m) - log_s): lse itself is never */
  double log_s;      /* formed, as m + log_s rounds log_s away once |m| > 2^53 log_s */
  float k2;
  int64_t c, j0;     /* the next chunk; j0 >= v: done */
  int64_t t;
  float dzt;
};

static void grad_job_start(const plan *p, grad_job *job, const row_ctx *r, const row_stats *st, double a, double b,
                           double mu, int64_t t, double dzt) {
  *job = (grad_job){.r = *r, .a = a, .b = b, .mu = mu, .m = st->m, .log_s = st->log_s, .k2 = (float)(b * p->cs),
                    .t = t, .dzt = (float)dzt};
  job->k = (grad_consts){.k2 = vdup(job->k2), .mu = vdup((float)mu), .m = vdup(st->m),
                         .entropy = p->op == GS_OP_ENTROPY, .cap = p->cap_chain};
}

/* k1 of the job's next chunk, in f64: a p_j = k1 e_j (the chain's s folded in). */
static double grad_job_k1_f64(const plan *p, const grad_job *job) {
  if (p->lse_rounded) return job->a * exp((double)job->r.mc[job->c] - ((double)job->m + job->log_s)) * p->cs;
  return job->a * exp(((double)job->r.mc[job->c] - job->m) - job->log_s) * p->cs;
}

/* Whether a pass 2 constant keeps its digits in f32: finite, and 0 or
 * normal. The fused pass 1 keeps e_j up to e^FUSED_HEADROOM, so k1 can fall
 * below FLT_MIN (tiny weights or grad_output) while k1 e_j is a normal
 * number that a subnormal k1 would leave with a few digits. */
static int f32_keeps(double k) {
  double a = fabs(k);
  return a == 0 || (a >= 0x1p-126 && a <= 0x1.fffffep127);
}

/* The chunk is done: on to the next; after the last, the target's column. */
static void grad_job_advance(const plan *p, grad_job *job) {
  job->c++;
  job->j0 += CHUNK;
  if (job->j0 >= p->v && job->t >= 0) g_put(job->r.g, p->gdt, job->t, job->dzt);
}

/* A chunk's gradient in scalar f64, for a chunk whose k1 or k2 is finite
 * in f64 but not kept by f32 (f32_keeps): beyond FLT_MAX (z-loss or a large
 * grad_output on logits near FLT_MAX), inf * e_j would make NaN of every
 * column with e_j = 0, whose exact gradient is 0; below FLT_MIN, a
 * subnormal k1 would round every product. Each value is rounded once, at
 * the end. */
static void grad_store_f64(const plan *p, const grad_job *job, double k1, double k2, const float *e, const float *z,
                           const float *y, const float *w, int64_t n, int64_t j0) {
  for (int64_t o = 0; o < n; o++) {
    const int64_t k = lane_pos(o, n, p->eo);
    double dz;
    if (job->k.entropy) {
      double d = (double)z[k] - job->m;
      dz = k1 * e[k] * (job->mu - (d < EXP_FLOOR ? EXP_FLOOR : d)); /* NaN stays NaN */
    } else {
      dz = k1 * e[k] - k2 * (w && !GS_MUTANT(GS_MUT_PASS2_F64_UNWEIGHTED) ? w[k] : 1.0f);
    }
    if (job->k.cap) {
      double ch = cosh((double)y[k]);
      dz /= ch * ch;
    }
    g_put(job->r.g, p->gdt, j0 + o, (float)dz);
  }
}

static void grad_job_step(const plan *p, grad_job *job) {
  if (job->j0 >= p->v) return;
  _Alignas(32) float z[CHUNK], y[CHUNK];
  const row_ctx *r = &job->r;
  int64_t j0 = job->j0, n = chunk_len(p, j0);
  double k1d = grad_job_k1_f64(p, job), k2d = job->b * p->cs;
  float k1 = (float)k1d;
  job->k.k1 = vdup(k1);
  /* z is reloaded exactly as pass 1 did (through memory: an FMA-contracted
   * c tanh(y) - m would differ from it in the last bit) */
  if (job->k.entropy) load_chunk(p, r->x, j0, n, z, 0);
  if (job->k.cap) load_chunk(p, r->x, j0, n, y, 1);
  const float *w = p->wgrad && !p->smooth_unweighted ? p->wgrad + j0 : NULL;
  if (f32_keeps(k1d) && f32_keeps(k2d)) {
    PATH(PATH_PASS2_CHUNK);
    grad_store(p, &job->k, r->e + j0, z, y, w, n, r->g, j0, r->nt, 1);
  } else if (isfinite(k1d) && isfinite(k2d)) {
    PATH(PATH_PASS2_F64);
    grad_store_f64(p, job, k1d, k2d, r->e + j0, z, y, w, n, j0);
  } else {
    PATH(PATH_PASS2_NONFINITE);
    grad_store(p, &job->k, r->e + j0, z, y, w, n, r->g, j0, r->nt, 0);
  }
  grad_job_advance(p, job);
}

/* Whether the job's next chunk has the simplest form (see prev_chunk), and
 * if so its description in *pc. The logits must be plain (no scale or
 * softcap) too: only then does fused_chunk write pc along. */
static int grad_job_chunk_simple(const plan *p, grad_job *job, prev_chunk *pc) {
  if (job->j0 >= p->v || job->k.entropy || job->k.cap || p->wgrad || p->gdt != p->xdt || p->c > 0 || p->s != 1)
    return 0;
  double k1d = grad_job_k1_f64(p, job);
  if (!f32_keeps(k1d) || !f32_keeps(job->b * p->cs)) return 0;
  float k1 = (float)k1d;
  *pc = (prev_chunk){.e = job->r.e + job->j0, .g = job->r.g, .j0 = job->j0, .k1 = vdup(k1), .k2 = vdup(job->k2),
                     .no_k2 = job->k2 == 0, .nt = job->r.nt};
  return 1;
}

static void grad_job_finish(const plan *p, grad_job *job) {
  while (job->j0 < p->v) grad_job_step(p, job);
}

/* Pass 2 of a row at once. */
static void write_grad(const plan *p, const row_ctx *r, const row_stats *st, double a, double b, double mu) {
  grad_job job;
  grad_job_start(p, &job, r, st, a, b, mu, -1, 0);
  grad_job_finish(p, &job);
}

/* One column's chain factor in f64: s (1 - (z/c)^2) = s sech^2(s x / c). */
static double chain_at(const plan *p, float x) {
  if (!p->cap_chain) return p->cs;
  double ch = cosh((double)x * p->s_over_c);
  return p->cs / (ch * ch);
}

static int64_t target_raw(const plan *p, int64_t i) { return gs_ce_target_at(p->tgt, p->tdt, i); }

static float grad_output_at(const plan *p, int64_t i) {
  if (!p->go) return 1.0f;
  return p->go_rows && !p->go_row0 ? p->go[i] : p->go[0];
}

static void ignored_row(const plan *p, const row_ctx *r, double go) {
  PATH(PATH_IGNORED_ROW);
  if (p->fwd) {
    if (p->loss_rows) p->loss[r->i] = 0;
    if (p->lse) p->lse[r->i] = 0;
    if (p->zl) p->zl[r->i] = 0;
  }
  if (!r->g) return;
  if (!p->leak_ignored) {
    memset(r->g, 0, (size_t)p->v * dtype_size(p->gdt));
    return;
  }
  row_stats st;
  scan_row(p, r->x, -1, r->e, r->mc, &st, NULL);
  write_grad(p, r, &st, p->sign * go * p->ce_scale, 0, 0);
}

/* dz_j = g [w_t (1-eps)(p_j - [j==t]) + (eps/V)(W p_j - w_j)] + gz 2 lam lse p_j:
 * the vector pass writes every column as if j != t, then column t is
 * rewritten with p_t - 1 = expm1(z_t - lse), which does not cancel as p_t -> 1. */
static void ce_grad(const plan *p, const row_ctx *r, const row_stats *st, int64_t t, float xt, double dt,
                    double go, grad_job *job) {
  double g = p->sign * go * p->ce_scale, gz = go * p->zl_scale;
  double wt = p->wgrad ? p->wgrad[t] : 1.0, wsum = p->wsum_grad;
  double wt_smooth = wt; /* w_t in the smoothing term */
  if (p->smooth_unweighted) wsum = (double)p->v, wt_smooth = 1.0;
  double smooth = p->smooth * (p->smooth_target_weight ? wt : 1.0); /* the SMOOTH_TARGET_WEIGHT mutant */
  double lse = st->m + st->log_s;
  double zterm = p->lam > 0 ? gz * p->zfac * p->lam * lse : 0.0;
  double a = g * (wt * (1 - p->eps) + smooth * wsum) + zterm, b = g * smooth;
  double pt = exp(dt);
  double pt_minus_1 = p->confident_cancel ? exp(dt) - 1 : expm1(dt);
  double dzt = g * (wt * (1 - p->eps) * pt_minus_1 + smooth * (wsum * pt - wt_smooth)) + zterm * pt;
  grad_job_start(p, job, r, st, a, b, 0, t, dzt * chain_at(p, xt));
}

/* Cross entropy and log_probs (= -CE with no weight, smoothing or z-loss).
 * job: the previous row's pass 2 on entry, this row's on return. */
static void ce_row(const plan *p, const row_ctx *r, double acc[2], grad_job *job) {
  int64_t raw = target_raw(p, r->i);
  double go = grad_output_at(p, r->i);
  if (raw == p->ignore) {
    grad_job_finish(p, job);
    ignored_row(p, r, go);
    return;
  }
  int64_t t = (raw + p->target_shift) % p->v;
  float xt = x_at(r->x, p->xdt, t); /* before an in-place pass 2 overwrites it */
  row_stats st;
  scan_row(p, r->x, t, r->e, r->mc, &st, job);
  grad_job_finish(p, job);
  double lse = st.m + st.log_s;
  double dt = ((double)st.zt - st.m) - st.log_s; /* z_t - lse without rounding lse to f32 */
  if (p->confident_cancel) dt = (double)st.zt - ((double)st.m + st.log_s);
  if (p->fwd) {
    double ce = (1 - p->eps) * -(p->w ? p->w[t] : 1.0) * dt;
    /* lse - r as (m - r) + log s: m + log s would round log s away once |m| >> 1 */
    double lse_r = p->lse_rounded ? ((double)st.m + st.log_s) - st.r : ((double)st.m - st.r) + st.log_s;
    if (p->eps > 0)
      ce += p->smooth * (p->smooth_target_weight ? p->w[t] : 1.0) * (p->wsum_smooth * lse_r - st.lin);
    double zl = p->lam > 0 ? p->lam * lse * lse : 0.0;
    if (p->loss_rows) p->loss[r->i] = (float)(p->sign * (ce + zl));
    if (p->lse) p->lse[r->i] = (float)lse;
    if (p->zl) p->zl[r->i] = (float)zl;
    acc[0] += ce;
    acc[1] += zl;
  }
  if (r->g) ce_grad(p, r, &st, t, xt, dt, go, job);
}

/* entropy = lse - sum_j p_j z_j = log s - s2/s, both terms >= 0 (no
 * cancellation); d/dz_j = p_j (mu - z_j) with mu - z_j = s2/s - (z_j - m). */
static void entropy_row(const plan *p, const row_ctx *r, grad_job *job) {
  row_stats st;
  scan_row(p, r->x, -1, r->e, r->mc, &st, job);
  grad_job_finish(p, job);
  double mu = st.s2 / st.s;
  if (p->fwd) p->loss[r->i] = (float)(p->sign * (st.log_s - mu));
  if (r->g) grad_job_start(p, job, r, &st, p->sign * grad_output_at(p, r->i), 0, mu, -1, 0);
}

/* A worker's pass 2 in progress, kept from block to block (a block may be a
 * single row), and which row buffer its next row takes. */
typedef struct worker_state {
  grad_job job;
  int half;
} worker_state;

static void run_block(void *ctx, int64_t b, int worker) {
  const plan *p = ctx;
  float *scratch = p->scratch ? p->scratch + worker * p->scratch_stride : NULL;
  int64_t i0 = b * p->block_rows, i1 = i0 + p->block_rows < p->n ? i0 + p->block_rows : p->n;
  double acc[2] = {0, 0};
  grad_job none = {.j0 = p->v};
  worker_state *w = p->ws ? &p->ws[worker] : NULL;
  grad_job *job = w ? &w->job : &none;
  for (int64_t i = i0; i < i1; i++) {
    row_ctx r = row_at(p, scratch, i, w ? w->half : 0);
    if (w) w->half ^= 1;
    if (p->op == GS_OP_ENTROPY) entropy_row(p, &r, job);
    else ce_row(p, &r, acc, job);
  }
  if (p->part) {
    p->part[2 * b] = acc[0];
    p->part[2 * b + 1] = acc[1];
  }
  if (p->stream) stream_fence(); /* streaming stores are weakly ordered: drain before the join */
  paths_flush();
}

static gs_status no_memory(gs_error *err, const char *what) {
  err->arg = what;
  snprintf(err->msg, sizeof err->msg, "out of memory for the %s buffer", what);
  return GS_ERR_NOMEM;
}

static void plan_options(plan *p, const gs_ce_args *a, gs_ce_op op) {
  p->s = (float)a->logit_scale;
  p->c = (float)a->softcap;
  p->s_over_c = a->softcap > 0 ? (float)(a->logit_scale / a->softcap) : 0.0f;
  p->zc = p->c;
  if (GS_MUTANT(GS_MUT_CAP_BEFORE_SCALE) && a->softcap > 0) { /* z = s c tanh(x / c); its chain s sech^2(x / c) follows */
    p->s_over_c = (float)(1 / a->softcap);
    p->zc = (float)(a->logit_scale * a->softcap);
  }
  p->go_row0 = GS_MUTANT(GS_MUT_GRAD_OUTPUT_ROW0);
  p->no_max = GS_MUTANT(GS_MUT_LSE_NO_MAX);
  p->leak_ignored = GS_MUTANT(GS_MUT_IGNORED_GRAD);
  p->target_shift = GS_MUTANT(GS_MUT_TARGET_OFF_BY_ONE) ? 1 : 0;
  p->confident_cancel = GS_MUTANT(GS_MUT_CONFIDENT_CANCEL);
  p->lse_rounded = GS_MUTANT(GS_MUT_LSE_ROUNDED);
  p->smooth_overflow = GS_MUTANT(GS_MUT_SMOOTH_OVERFLOW);
  p->smooth_unweighted = GS_MUTANT(GS_MUT_SMOOTH_UNWEIGHTED) || (GS_MUTANT(GS_MUT_SMOOTH_TARGET_WEIGHT) && a->weight);
  p->smooth_target_weight = GS_MUTANT(GS_MUT_SMOOTH_TARGET_WEIGHT) && a->weight;
  if (GS_MUTANT(GS_MUT_IGNORE_VALID) && p->ignore >= 0) p->ignore = INT64_MIN;
  p->zfac = GS_MUTANT(GS_MUT_ZLOSS_FACTOR) ? 1.0 : 2.0;
  double cs = GS_MUTANT(GS_MUT_SCALE_BACKWARD) ? 1.0 : a->logit_scale;
  p->cs = (float)(GS_MUTANT(GS_MUT_GRAD_SIGN) ? -cs : cs);
  p->cap_chain = a->softcap > 0 && !GS_MUTANT(GS_MUT_SOFTCAP_CHAIN);
  p->ce_scale = p->zl_scale = 1;
  if (op == GS_OP_CE) {
    p->w = a->weight;
    p->eps = a->label_smoothing;
    p->lam = a->lse_square_scale;
    int64_t vs = GS_MUTANT(GS_MUT_SMOOTH_V_MINUS_1) && a->v > 1 ? a->v - 1 : a->v;
    p->smooth = p->eps / (double)vs;
    p->sign = 1;
  } else {
    p->sign = op == GS_OP_LOG_PROBS ? (GS_MUTANT(GS_MUT_LOG_PROBS_SIGN) ? 1 : -1)
                                    : (GS_MUTANT(GS_MUT_ENTROPY_SIGN) ? -1 : 1);
  }
  p->wsum = (double)a->v;
  if (p->w) {
    p->wsum = 0;
    for (int64_t j = 0; j < a->v; j++) p->wsum += p->w[j];
  }
  p->wsum_smooth = p->smooth_unweighted ? (double)a->v : p->wsum;
}

static gs_status plan_buffers(plan *p, int workers, gs_error *err) {
  if (p->fwd && p->op == GS_OP_CE && !p->loss_rows && p->nblocks > 0) {
    p->part = malloc((size_t)p->nblocks * 2 * sizeof *p->part);
    if (!p->part) return no_memory(err, "loss");
  }
  if (!p->g) return GS_OK;
  p->e_len = padded(p->v);
  int64_t nchunks = (p->v + CHUNK - 1) / CHUNK;
  p->row_scratch = (p->e_len + nchunks + 15) / 16 * 16; /* 64-byte aligned */
  p->scratch_stride = 2 * p->row_scratch;
  p->scratch = aligned_alloc(64, (size_t)(p->scratch_stride * workers) * sizeof(float));
  p->ws = aligned_alloc(64, ((size_t)workers * sizeof *p->ws + 63) / 64 * 64);
  if (!p->scratch || !p->ws) return no_memory(err, "grad");
  for (int k = 0; k < workers; k++) p->ws[k] = (worker_state){.job = {.j0 = p->v}};
  int weighted = p->w && !GS_MUTANT(GS_MUT_WEIGHT_BACKWARD);
  p->wsum_grad = weighted ? p->wsum : (double)p->v;
  if (weighted) {
    float *w = aligned_alloc(64, (size_t)(p->e_len + 15) / 16 * 16 * sizeof(float));
    if (!w) return no_memory(err, "weight");
    memcpy(w, p->w, (size_t)p->v * sizeof *w);
    memset(w + p->v, 0, (size_t)(p->e_len - p->v) * sizeof *w);
    p->wgrad = w;
  }
  return GS_OK;
}

static void plan_free(plan *p) {
  free(p->ws);
  free(p->part);
  free(p->scratch);
  free((void *)p->wgrad);
}

static gs_status run_cpu(const gs_ce_args *a, gs_ce_op op, int backward, gs_error *err) {
  gs_status st = gs_ce_check_args(a, op, backward, 0, err);
  if (st != GS_OK) return st;
  plan p = {.op = op, .n = a->n, .v = a->v, .x = a->logits, .xdt = a->logits_dtype, .tgt = a->target,
            .tdt = a->target_dtype, .ignore = a->ignore_index, .go = a->grad_output,
            .go_rows = a->grad_output_n != 1, .fwd = !backward};
  p.xstride = a->logits_stride * (int64_t)dtype_size(a->logits_dtype);
  plan_options(&p, a, op);
  int64_t v_check = GS_MUTANT(GS_MUT_TARGET_LAST) && p.v > 1 ? p.v - 1 : p.v; /* the mutant rejects V - 1 */
  if (op != GS_OP_ENTROPY && (st = gs_ce_scan_targets(p.tgt, p.tdt, p.n, v_check, p.ignore, p.w, p.target_shift, &p.d,
                                                     &p.count, err)) != GS_OK)
    return st;
  if (GS_MUTANT(GS_MUT_MEAN_BY_N)) p.d = (double)a->n;
  int mean = op == GS_OP_CE && a->reduction == GS_REDUCE_MEAN;
  if (mean) {
    p.ce_scale = 1 / p.d;
    p.zl_scale = GS_MUTANT(GS_MUT_ZLOSS_MEAN_BY_D) ? 1 / p.d : 1 / p.count;
    if (GS_MUTANT(GS_MUT_SMOOTH_MEAN_BY_ROWS) && p.count > 0) p.smooth *= p.d / p.count;
  }
  if (p.fwd) {
    p.loss = a->loss;
    p.loss_rows = op != GS_OP_CE || a->reduction == GS_REDUCE_NONE;
    if (op == GS_OP_CE) {
      p.lse = a->lse;
      p.zl = a->z_loss;
    }
  }
  if (a->grad && a->n > 0) {
    p.g = a->grad;
    p.gdt = a->grad_dtype;
    p.gstride = a->grad_stride * (int64_t)dtype_size(a->grad_dtype);
    p.stream = a->grad != a->logits && a->n * p.gstride >= STREAM_MIN_BYTES;
  }
  /* natural order only where it matters: weights are read in it, and f32 or
   * f16 gradients are written from it */
  p.eo = p.xdt == GS_BF16 && (!p.g || p.gdt == GS_BF16) && !p.w;
  p.block_rows = BLOCK_WORK / a->v > 1 ? BLOCK_WORK / a->v : 1;
  p.nblocks = (a->n + p.block_rows - 1) / p.block_rows;
  int workers = gs_parallel_workers(a->threads, p.nblocks, a->n * a->v);
  if (p.g && p.g == p.x) PATH(PATH_INPLACE);
  if (p.stream) PATH(PATH_STREAMING);
  if (workers > 1) PATH(PATH_THREADS);
  if (p.eo) PATH(PATH_BF16_EVEN_ODD);
  if (p.v > CHUNK) PATH(PATH_MULTI_CHUNK);
  if ((st = plan_buffers(&p, workers, err)) == GS_OK) {
    gs_parallel_for(workers, p.nblocks, run_block, &p);
    if (p.ws) { /* the last row of each worker */
      for (int k = 0; k < workers; k++) grad_job_finish(&p, &p.ws[k].job);
      if (p.stream) stream_fence();
    }
    if (p.fwd && op == GS_OP_CE && !p.loss_rows) {
      double ce = 0, zl = 0;
      for (int64_t b = 0; b < p.nblocks; b++) {
        ce += p.part[2 * b];
        zl += p.part[2 * b + 1];
      }
      double k = GS_MUTANT(GS_MUT_ZLOSS_MEAN_BY_D) ? p.d : p.count;
      *(float *)a->loss = (float)(mean ? ce / p.d + zl / k : ce + zl);
    }
  }
  plan_free(&p);
  paths_flush();
  return st;
}

gs_status gs_ce_forward_cpu(const gs_ce_args *a, gs_error *err) { return run_cpu(a, GS_OP_CE, 0, err); }
gs_status gs_ce_backward_cpu(const gs_ce_args *a, gs_error *err) { return run_cpu(a, GS_OP_CE, 1, err); }
gs_status gs_log_probs_forward_cpu(const gs_ce_args *a, gs_error *err) { return run_cpu(a, GS_OP_LOG_PROBS, 0, err); }
gs_status gs_log_probs_backward_cpu(const gs_ce_args *a, gs_error *err) { return run_cpu(a, GS_OP_LOG_PROBS, 1, err); }
gs_status gs_entropy_forward_cpu(const gs_ce_args *a, gs_error *err) { return run_cpu(a, GS_OP_ENTROPY, 0, err); }
gs_status gs_entropy_backward_cpu(const gs_ce_args *a, gs_error *err) { return run_cpu(a, GS_OP_ENTROPY, 1, err); }

int64_t gs_ce_cpu_chunk(void) { return CHUNK; }

const char *gs_ce_cpu_path_name(int path) { return path >= 0 && path < PATH_COUNT ? path_names[path] : NULL; }

int64_t gs_ce_cpu_path_count(int path) {
  return path >= 0 && path < PATH_COUNT ? (int64_t)__atomic_load_n(&path_total[path], __ATOMIC_RELAXED) : -1;
}

void gs_ce_cpu_paths_reset(void) {
  for (int k = 0; k < PATH_COUNT; k++) __atomic_store_n(&path_total[k], 0, __ATOMIC_RELAXED);
}
