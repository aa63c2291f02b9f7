/* The vector layer of the fast CPU kernels (cross_entropy.c,
 * vocab_parallel.c): AVX2 with 8 lanes, or plain floats (1 lane) where the
 * compiler targets no AVX2, so that row code is written once for both;
 * with exp and tanh for softmax arguments, and the loads and stores of
 * f32, bf16 and f16 rows. */
#ifndef GS_CPU_VEC_H
#define GS_CPU_VEC_H

#include <math.h>
#include <stdint.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "../gs_half.h"
#include "../gs_types.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

#ifdef __AVX2__
typedef __m256 vf;
#define VW 8

static inline vf vdup(float x) { return _mm256_set1_ps(x); }
static inline vf vload(const float *p) { return _mm256_load_ps(p); }
static inline vf vloadu(const float *p) { return _mm256_loadu_ps(p); }
static inline void vstore(float *p, vf x) { _mm256_store_ps(p, x); }
static inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline float vfirst(vf x) { return _mm256_cvtss_f32(x); }
static inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }   /* a b + c */
static inline vf vfms(vf a, vf b, vf c) { return _mm256_fmsub_ps(a, b, c); }   /* a b - c */
static inline vf vfnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); } /* c - a b */
/* MAXPS returns its second operand when either is NaN: the order picks
 * whether a NaN x is dropped (running max) or kept (clamp). */
static inline vf vmax_dropnan(vf acc, vf x) { return _mm256_max_ps(x, acc); }
static inline vf vmax_keepnan(vf lo, vf x) { return _mm256_max_ps(lo, x); }
static inline vf vkeep_ge(vf x, vf t) { return _mm256_and_ps(_mm256_cmp_ps(x, t, _CMP_GE_OQ), x); } /* else 0 */
static inline vf vkeep_if_nonzero(vf c, vf x) { return _mm256_and_ps(_mm256_cmp_ps(c, vdup(0.0f), _CMP_NEQ_UQ), x); } /* c NaN keeps x */
/* Whether any lane is NaN or +inf. */
static inline int vany_nan_or_inf(vf x) {
  vf bad = _mm256_or_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q), _mm256_cmp_ps(x, vdup(INFINITY), _CMP_EQ_OQ));
  return _mm256_movemask_ps(bad) != 0;
}

ALWAYS_INLINE float vsum(vf x) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

ALWAYS_INLINE float vhmax(vf x) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

/* Lanes n.. of the last vector of a row lie past its end: they become fill. */
ALWAYS_INLINE vf vtail(vf x, int n, float fill) {
  __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane));
  return _mm256_blendv_ps(vdup(fill), x, keep);
}

/* exp(t) = 2^k exp(r), t = k ln2 + r with |r| <= ln2/2. Adding 1.5 * 2^23 + bias
 * rounds t/ln2 to the integer k and leaves k + bias in the low mantissa bits.
 * r = t - k ln2 with ln2 rounded to f32 is off by k 1.9e-9, which matters
 * only far below the max (k = -20: 4e-8 relative). exp(r) = 1 + r + r^2 q(r)
 * with q a cubic fit of relative error 1.1e-7 on that interval: within
 * 3 ulp in all, for 8 multiply-adds. */
#define EXP_ROUND 12582912.0f /* 1.5 * 2^23 */
ALWAYS_INLINE vf exp_poly(vf t, vf kf) {
  vf r = vfnma(kf, vdup(0.693147182464599609375f), t);
  vf q = vfma(vdup(8.312526159e-3f), r, vdup(4.189011455e-2f));
  q = vfma(q, r, vdup(1.666711420e-1f));
  q = vfma(q, r, vdup(4.999923110e-1f));
  return vfma(vmul(r, r), q, vadd(r, vdup(1.0f)));
}

#define EXP_LO (-88.0f)     /* k = -127 here: 2^k has a zero exponent field, so the result is 0 */
#define EXP_HI 88.72283935f /* ln(FLT_MAX): above it, inf */
#define LOG2E 1.44269504088896341f

/* exp for softmax arguments (x <= 0, so 2^k never overflows). Results below
 * FLT_MIN (x < -87.3) may flush to 0; -inf gives 0; NaN stays NaN. */
ALWAYS_INLINE vf vexp_neg(vf x) {
  const vf round = vdup(EXP_ROUND + 127.0f);
  vf t = vmax_keepnan(vdup(EXP_LO), x);
  vf j = vfma(t, vdup(LOG2E), round);
  vf scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(j), 23)); /* 2^k */
  return vmul(exp_poly(t, vsub(j, round)), scale);
}

/* exp over the whole f32 range (k up to 128, applied as two halves of 2^k). */
ALWAYS_INLINE vf vexp_full(vf x) {
  const vf round = vdup(EXP_ROUND);
  vf t = vmax_keepnan(vdup(EXP_LO), _mm256_min_ps(vdup(EXP_HI), x));
  vf j = vfma(t, vdup(LOG2E), round);
  vf y = exp_poly(t, vsub(j, round));
  __m256i k = _mm256_sub_epi32(_mm256_castps_si256(j), _mm256_castps_si256(round));
  __m256i half = _mm256_srai_epi32(k, 1), bias = _mm256_set1_epi32(127);
  vf a = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
  vf b = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(k, half), bias), 23));
  y = vmul(vmul(y, a), b);
  y = _mm256_andnot_ps(_mm256_cmp_ps(x, vdup(-87.33654475f), _CMP_LT_OQ), y);
  return _mm256_blendv_ps(y, vdup(INFINITY), _mm256_cmp_ps(x, vdup(EXP_HI), _CMP_GT_OQ));
}

/* tanh(y), and its derivative 1 - tanh(y)^2 in *d. Below |y| = 0.625, an
 * odd polynomial y + y^3 P(y^2) (relative error 4e-9), and 1 - t^2 >= 0.69
 * does not cancel. Above, with
 * e = exp(-2|y|) <= 0.29: tanh = (1 - e)/(1 + e) and 1 - tanh^2 = 4e/(1 + e)^2,
 * which neither cancel (1 - t^2 from a rounded t near 1 would) nor overflow;
 * y = -inf gives -1 and 0. */
ALWAYS_INLINE vf vtanh_d(vf y, vf *d) {
  const vf sign = vdup(-0.0f), one = vdup(1.0f);
  vf a = _mm256_andnot_ps(sign, y), y2 = vmul(y, y);
  vf p = vdup(-5.7049733587e-3f);
  p = vfma(p, y2, vdup(2.0639074966e-2f));
  p = vfma(p, y2, vdup(-5.3739711642e-2f));
  p = vfma(p, y2, vdup(1.3331441581e-1f));
  p = vfma(p, y2, vdup(-3.3333280683e-1f));
  vf t_small = vfma(vmul(p, y2), y, y);
  vf e = vexp_neg(vmul(vdup(-2.0f), a)), q = vadd(one, e);
  vf t_big = _mm256_or_ps(_mm256_div_ps(vsub(one, e), q), _mm256_and_ps(sign, y));
  vf small = _mm256_cmp_ps(a, vdup(0.625f), _CMP_LT_OQ);
  *d = _mm256_blendv_ps(_mm256_div_ps(vmul(vdup(4.0f), e), vmul(q, q)), vfnma(t_small, t_small, one), small);
  return _mm256_blendv_ps(t_big, t_small, small);
}

ALWAYS_INLINE vf vload_x(const void *row, gs_dtype dt, int64_t j) {
  if (dt == GS_F32) return _mm256_loadu_ps((const float *)row + j);
  __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + j));
  if (dt == GS_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  return _mm256_cvtph_ps(h);
}

/* Pairs of vectors. With eo (even/odd; bf16 only), one 32-byte load gives
 * the even elements of 16 (their bits shifted up) and the odd ones (masked
 * in place), and a pair of gradients is packed back with one blend: the
 * widening and narrowing that natural order needs would cost 4 more vector
 * operations per 16 values (the fused loop does about 45). z and e then hold
 * each whole group of 2 VW values of a chunk as [even | odd] (lane_pos). */
ALWAYS_INLINE void vload_x2(const void *row, gs_dtype dt, int eo, int64_t j, vf *z0, vf *z1) {
  if (eo) {
    __m256i v = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + j));
    *z0 = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *z1 = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
    return;
  }
  *z0 = vload_x(row, dt, j);
  *z1 = vload_x(row, dt, j + VW);
}

/* f32 -> bf16 rounded to nearest, ties away from zero: the bf16 bits end up
 * in the high half of each 32-bit lane (bf16_round_hi) or the low half
 * (bf16_round). A tie is an f32 value exactly halfway between two bf16
 * values (1 in 65536); the f32 gradient is itself off by a few f32 ulps, so
 * it carries no reason to prefer the even neighbour, and ties to even
 * (gs_f32_to_bf16, used for the scalar stores) would cost 4 more operations
 * per 8 values, 5% of the fused bf16 kernel's time. A NaN is kept quiet,
 * which costs a compare and a blend that values known not to be NaN skip. */
ALWAYS_INLINE __m256i bf16_round_hi(vf x, int nonan) {
  __m256i u = _mm256_castps_si256(x);
  __m256i r = _mm256_add_epi32(u, _mm256_set1_epi32(0x8000));
  if (nonan) return r;
  __m256i qnan = _mm256_or_si256(u, _mm256_set1_epi32(0x400000));
  return _mm256_blendv_epi8(r, qnan, _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
}

ALWAYS_INLINE __m256i bf16_round(vf x, int nonan) { return _mm256_srli_epi32(bf16_round_hi(x, nonan), 16); }

/* 8 or 16 values as 16-bit halves; packus works within 128-bit lanes, the
 * qword permute puts them back in order. */
ALWAYS_INLINE __m128i half_pack8(vf x, gs_dtype dt, int nonan) {
  if (dt == GS_F16) return _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256i r = bf16_round(x, nonan);
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
}

ALWAYS_INLINE __m256i half_pack16(vf a, vf b, gs_dtype dt, int eo, int nonan) {
  if (eo) return _mm256_blend_epi16(bf16_round(a, nonan), bf16_round_hi(b, nonan), 0xaa);
  if (dt == GS_F16) return _mm256_set_m128i(half_pack8(b, dt, 0), half_pack8(a, dt, 0));
  return _mm256_permute4x64_epi64(_mm256_packus_epi32(bf16_round(a, nonan), bf16_round(b, nonan)), 0xd8);
}

/* Gradient stores of 8 (vstore_g) or 16 (vstore_g2) values at element j of a
 * row; eo: a and b hold the even and odd elements; nt: streaming stores (the
 * caller checked the alignment); nonan: the values are known not to be NaN. */
ALWAYS_INLINE void vstore_g(void *row, gs_dtype dt, int64_t j, vf x, int nt, int nonan) {
  if (dt == GS_F32) {
    float *d = (float *)row + j;
    if (nt) _mm256_stream_ps(d, x);
    else _mm256_storeu_ps(d, x);
    return;
  }
  __m128i *d = (__m128i *)((uint16_t *)row + j);
  if (nt) _mm_stream_si128(d, half_pack8(x, dt, nonan));
  else _mm_storeu_si128(d, half_pack8(x, dt, nonan));
}

ALWAYS_INLINE void vstore_g2(void *row, gs_dtype dt, int eo, int64_t j, vf a, vf b, int nt, int nonan) {
  if (dt == GS_F32) {
    vstore_g(row, dt, j, a, nt, nonan);
    vstore_g(row, dt, j + VW, b, nt, nonan);
    return;
  }
  __m256i *d = (__m256i *)((uint16_t *)row + j);
  if (nt) _mm256_stream_si256(d, half_pack16(a, b, dt, eo, nonan));
  else _mm256_storeu_si256(d, half_pack16(a, b, dt, eo, nonan));
}

static inline void stream_fence(void) { _mm_sfence(); }

#else /* scalar fallback */
typedef float vf;
#define VW 1

static inline vf vdup(float x) { return x; }
static inline vf vload(const float *p) { return *p; }
static inline vf vloadu(const float *p) { return *p; }
static inline void vstore(float *p, vf x) { *p = x; }
static inline vf vadd(vf a, vf b) { return a + b; }
static inline vf vsub(vf a, vf b) { return a - b; }
static inline vf vmul(vf a, vf b) { return a * b; }
static inline vf vdiv(vf a, vf b) { return a / b; }
static inline float vfirst(vf x) { return x; }
static inline vf vfma(vf a, vf b, vf c) { return fmaf(a, b, c); }
static inline vf vfms(vf a, vf b, vf c) { return fmaf(a, b, -c); }
static inline vf vfnma(vf a, vf b, vf c) { return fmaf(-a, b, c); }
static inline vf vmax_dropnan(vf acc, vf x) { return x > acc ? x : acc; }
static inline vf vmax_keepnan(vf lo, vf x) { return x < lo ? lo : x; }
static inline vf vkeep_ge(vf x, vf t) { return x >= t ? x : 0.0f; }
static inline vf vkeep_if_nonzero(vf c, vf x) { return c != 0 ? x : 0.0f; }
static inline int vany_nan_or_inf(vf x) { return isnan(x) || x == INFINITY; }
ALWAYS_INLINE float vsum(vf x) { return x; }
ALWAYS_INLINE float vhmax(vf x) { return x; }
ALWAYS_INLINE vf vtail(vf x, int n, float fill) { (void)n; (void)fill; return x; }
ALWAYS_INLINE vf vexp_neg(vf x) { return expf(x); }
ALWAYS_INLINE vf vexp_full(vf x) { return expf(x); }
ALWAYS_INLINE vf vtanh_d(vf y, vf *d) {
  float ch = coshf(y);
  *d = 1 / (ch * ch);
  return tanhf(y);
}
static inline float x_at(const void *row, gs_dtype dt, int64_t j);
static inline void g_put(void *row, gs_dtype dt, int64_t j, float g);
ALWAYS_INLINE vf vload_x(const void *row, gs_dtype dt, int64_t j) { return x_at(row, dt, j); }
/* one value per vector: a pair's even/odd order is its natural order */
ALWAYS_INLINE void vload_x2(const void *row, gs_dtype dt, int eo, int64_t j, vf *z0, vf *z1) {
  (void)eo;
  *z0 = x_at(row, dt, j);
  *z1 = x_at(row, dt, j + 1);
}
ALWAYS_INLINE void vstore_g(void *row, gs_dtype dt, int64_t j, vf x, int nt, int nonan) {
  (void)nt;
  (void)nonan;
  g_put(row, dt, j, x);
}
ALWAYS_INLINE void vstore_g2(void *row, gs_dtype dt, int eo, int64_t j, vf a, vf b, int nt, int nonan) {
  (void)eo;
  (void)nt;
  (void)nonan;
  g_put(row, dt, j, a);
  g_put(row, dt, j + 1, b);
}
static inline void stream_fence(void) {}
#endif

static inline float x_at(const void *row, gs_dtype dt, int64_t j) {
  if (dt == GS_F32) return ((const float *)row)[j];
  uint16_t h = ((const uint16_t *)row)[j];
  return dt == GS_BF16 ? gs_bf16_to_f32(h) : gs_f16_to_f32(h);
}

static inline void g_put(void *row, gs_dtype dt, int64_t j, float g) {
  if (dt == GS_F32) ((float *)row)[j] = g;
  else ((uint16_t *)row)[j] = dt == GS_BF16 ? gs_f32_to_bf16(g) : gs_f32_to_f16(g);
}

/* The first n < VW lanes of x into a gradient row at element j: a row's
 * last, partial vector. */
static inline void vstore_g_part(void *row, gs_dtype dt, int64_t j, vf x, int64_t n) {
  _Alignas(32) float lanes[VW];
  vstore(lanes, x);
  for (int64_t q = 0; q < n; q++) g_put(row, dt, j + q, lanes[q]);
}

/* Bytes per element of an f32, bf16 or f16 row. */
static inline size_t dtype_size(gs_dtype dt) { return dt == GS_F32 ? 4 : 2; }

#endif
