// Cross entropy, log_probs and entropy on the GPU: the contract of
// kernels/cross_entropy.h, the math of docs/losses.md.
//
// One row is split into K chunks, one per CTA of a thread-block cluster
// (K = 1..16). In the resident mode a CTA copies its chunk from HBM into shared
// memory once, and every pass (max, sums, gradient) reads it from there: the
// logits are read once and the gradient written once, two passes over memory
// instead of three. The CTAs of a row combine their partial statistics
// through distributed shared memory. Rows whose chunks do not fit on chip use
// the streaming mode: the same passes, reading global memory each time. A
// double-buffered resident mode (persistent CTAs prefetching their next row)
// is kept for measurement; it lost to plain resident CTAs on the H100.
//
// Per call: a small kernel checks the targets and sums D (the weight of the
// non-ignored rows) and the non-ignored count, so that "mean" can scale the
// fused gradient in the same pass; the row kernel; for "sum" and "mean" a
// one-block kernel that adds the per-row losses in double in a fixed order.
// A bad target stops the row kernel before it writes anything.
//
// The extremes of docs/losses.md, section 11, are handled in every mode by
// the one row kernel, on branches taken per row (or per chunk) from values
// it computes anyway, so that ordinary rows pay a comparison: a smoothing
// sum that overflows f32 (logits near FLT_MAX) is redone in double; a loss
// or gradient constant that overflows f32 is redone in double, and that
// row's gradient written from the double constants; a row of -inf logits
// only is NaN throughout. Entropy keeps the max's term apart from the
// others, as cross entropy keeps the target's, so that a confident row's
// entropy keeps its digits.
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <type_traits>

#include "target_scan.cuh"

extern "C" {
#include "cross_entropy.h"
#include "cross_entropy_check.h"
#include "gs_device.h"
}

namespace cg = cooperative_groups;

extern "C" void gs_cuda_account(long long delta);
extern "C" gs_status gs_cuda_fail(gs_error *err, cudaError_t e, const char *what);

namespace {

constexpr int kMaxThreads = 256;
constexpr int kMaxWarps = kMaxThreads / 32;
constexpr int kPrepBlocks = 128;
// The automatic plan: resident chunks as large as three CTAs per SM allow
// (DevState::auto_chunk, 74 KB on an H100 or H200), one buffer per CTA, up
// to 16 CTAs per row. Measured (bench --sweep): this beat 16-64 KB chunks,
// 64-128 threads, and the double-buffered persistent mode (mode 3: the next
// row prefetched while this one is computed), which ran 10-40% slower at
// every size tried; 74 KB chunks beat 64 KB ones where they take fewer CTAs
// per row (f32 8192 x 128256: 7 instead of 8).
constexpr int kAutoCtasPerSm = 3;
constexpr int kAutoBuffers = 1;
constexpr int kAutoMaxCluster = 16;
constexpr float kLog2e = 1.4426950408889634f;

enum Op { OP_CE = 0, OP_LP = 1, OP_ENT = 2 };

// Device-resident control block, one per device, reused by every call.
struct Ctrl {
  unsigned long long bad_row;  // lowest row with a bad target; ~0 when none
  unsigned int done;           // prep blocks finished (last-block pattern)
  unsigned int pad;
  double d;                    // sum of w[t_i] over non-ignored rows
  double count;                // number of non-ignored rows
  long long report_row;        // copied out for the host; -1 when none
  long long report_value;
  double part_d[kPrepBlocks];
  double part_n[kPrepBlocks];
};

struct Params {
  const void *logits;
  int64_t lstride;
  const void *target;
  int tgt64;
  int64_t ignore;
  const float *weight;
  int64_t n, v;
  int64_t chunk;      // columns per CTA, a multiple of the vector width
  int nbuf;           // resident mode: 2 = double-buffered (next row prefetched)
  int op;
  int reduction;
  float s, c, s_over_c, eps, lam;
  int softcap;
  int want_loss;
  float *loss;        // per row (none, log_probs, entropy) or NULL
  float *rowbuf;      // CE sum/mean: 2 floats per row (loss - zl, zl)
  float *lse;
  float *zl;
  void *grad;         // NULL: no gradient
  int gdtype;
  int64_t gstride;
  const float *go;    // NULL means 1
  int go_per_row;
  const Ctrl *ctrl;
  int phases;         // benchmark hook: kSkip* bits, phases left out for timing
  int whole;          // every chunk is whole 16-byte vectors, 16-byte aligned in every row (the host's test)
};

// Phases the benchmark leaves out to see where the time goes (never set by
// a loss call): the max and sum passes (m = 0, S = 1 + e_t), and the
// gradient's arithmetic (zeros stored without reading the chunk).
constexpr int kSkipStats = 1;
constexpr int kSkipGradMath = 2;
constexpr int kTwoPass = 4;  // the max and sums in two passes, as the other kernels
// cp.async groups of the resident hot kernel's chunk (online stats).
constexpr int kGroups = 4;
// Vectors a streaming thread has in flight in each pass.
constexpr int kBatch = 4;

__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// L2 eviction hints for the streaming plans, which read a chunk twice: its
// first read (the statistics) asks L2 to keep the lines, its second (the
// gradient) and the gradient's stores to drop them first, so that the
// chunks of the CTAs running now stay in L2 between their two reads.
__device__ __forceinline__ uint64_t l2_keep() {
  uint64_t pol;
  asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(pol));
  return pol;
}
__device__ __forceinline__ uint64_t l2_drop() {
  uint64_t pol;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
  return pol;
}
__device__ __forceinline__ uint4 ld_hint(const void *ptr, uint64_t pol) {
  uint4 r;
  asm("ld.global.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(ptr), "l"(pol));
  return r;
}
__device__ __forceinline__ void st_hint(void *ptr, uint4 v, uint64_t pol) {
  asm volatile("st.global.L2::cache_hint.v4.u32 [%0], {%1, %2, %3, %4}, %5;" ::"l"(ptr), "r"(v.x), "r"(v.y),
               "r"(v.z), "r"(v.w), "l"(pol)
               : "memory");
}

__device__ __forceinline__ int64_t load_target(const void *t, int tgt64, int64_t i) {
  return tgt64 ? ((const int64_t *)t)[i] : (int64_t)((const int32_t *)t)[i];
}

template <typename T> struct Vec;
template <> struct Vec<float> {
  static constexpr int N = 4;
  static __device__ __forceinline__ void cvt(const uint4 &r, float *x) {
    x[0] = __uint_as_float(r.x); x[1] = __uint_as_float(r.y);
    x[2] = __uint_as_float(r.z); x[3] = __uint_as_float(r.w);
  }
  static __device__ __forceinline__ float one(const float *p, int64_t j) { return p[j]; }
};
template <> struct Vec<__nv_bfloat16> {
  static constexpr int N = 8;
  static __device__ __forceinline__ void cvt(const uint4 &r, float *x) {
    const unsigned w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
      x[2 * k] = __uint_as_float(w[k] << 16);
      x[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
  }
  static __device__ __forceinline__ float one(const __nv_bfloat16 *p, int64_t j) {
    return __bfloat162float(p[j]);
  }
};
template <> struct Vec<__half> {
  static constexpr int N = 8;
  static __device__ __forceinline__ void cvt(const uint4 &r, float *x) {
    const unsigned w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
      __half2 h = *reinterpret_cast<const __half2 *>(&w[k]);
      float2 f = __half22float2(h);
      x[2 * k] = f.x;
      x[2 * k + 1] = f.y;
    }
  }
  static __device__ __forceinline__ float one(const __half *p, int64_t j) { return __half2float(p[j]); }
};

__device__ __forceinline__ unsigned pack_bf16(float a, float b) {
  __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<unsigned *>(&h);
}
__device__ __forceinline__ unsigned pack_f16(float a, float b) {
  __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<unsigned *>(&h);
}

// Stores NV gradient values at column offset j of a row; aligned says the
// row's chunk start is 16-byte aligned, so whole vectors go out at once.
// HOW whole vectors go: kStorePlain; kStoreHint, with the L2 policy pol
// (streaming plans); kStoreStream, st.global.cs (the register plan: 3% faster
// than the policy on its bf16 rows, H200).
constexpr int kStorePlain = 0, kStoreHint = 1, kStoreStream = 2;
__device__ __forceinline__ void st_stream(void *ptr, uint4 v) {
  asm volatile("st.global.cs.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(ptr), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
}
template <int NV, int HOW = kStorePlain>
__device__ __forceinline__ void store_grad(void *row, int gdtype, int64_t j, const float *g, int nvalid,
                                           bool aligned, uint64_t pol = 0) {
  auto put = [&](void *q, uint4 v) {
    if (HOW == kStoreHint) st_hint(q, v, pol);
    else if (HOW == kStoreStream) st_stream(q, v);
    else *(uint4 *)q = v;
  };
  if (gdtype == GS_F32) {
    float *p = (float *)row + j;
    if (aligned && nvalid == NV) {
#pragma unroll
      for (int k = 0; k < NV; k += 4)
        put(p + k, make_uint4(__float_as_uint(g[k]), __float_as_uint(g[k + 1]), __float_as_uint(g[k + 2]),
                              __float_as_uint(g[k + 3])));
    } else {
      #pragma unroll
      for (int k = 0; k < NV; k++)
        if (k < nvalid) p[k] = g[k];
    }
  } else if (gdtype == GS_BF16) {
    __nv_bfloat16 *p = (__nv_bfloat16 *)row + j;
    if (aligned && nvalid == NV) {
      if (NV == 8) {
        put(p, make_uint4(pack_bf16(g[0], g[1]), pack_bf16(g[2], g[3]), pack_bf16(g[4], g[5]), pack_bf16(g[6], g[7])));
      } else {
        *(uint2 *)p = make_uint2(pack_bf16(g[0], g[1]), pack_bf16(g[2], g[3]));
      }
    } else {
      #pragma unroll
      for (int k = 0; k < NV; k++)
        if (k < nvalid) p[k] = __float2bfloat16_rn(g[k]);
    }
  } else {
    __half *p = (__half *)row + j;
    if (aligned && nvalid == NV) {
      if (NV == 8) {
        put(p, make_uint4(pack_f16(g[0], g[1]), pack_f16(g[2], g[3]), pack_f16(g[4], g[5]), pack_f16(g[6], g[7])));
      } else {
        *(uint2 *)p = make_uint2(pack_f16(g[0], g[1]), pack_f16(g[2], g[3]));
      }
    } else {
      #pragma unroll
      for (int k = 0; k < NV; k++)
        if (k < nvalid) p[k] = __float2half_rn(g[k]);
    }
  }
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Block-wide sums, the same fixed order in every thread, so every thread
// ends with the same bits.
template <int NV>
__device__ __forceinline__ void block_sum(float (&v)[NV], float (*red)[kMaxWarps]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int k = 0; k < NV; k++) v[k] = warp_sum(v[k]);
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < NV; k++) red[k][warp] = v[k];
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < NV; k++) {
    float s = 0.f;
    for (int w = 0; w < nw; w++) s += red[k][w];
    v[k] = s;
  }
  __syncthreads();
}

__device__ __forceinline__ float block_max(float v, float (*red)[kMaxWarps]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  if (lane == 0) red[0][warp] = v;
  __syncthreads();
  float m = -INFINITY;
  for (int w = 0; w < nw; w++) m = fmaxf(m, red[0][w]);
  __syncthreads();
  return m;
}

// The same sums in double, for the rare rows whose f32 sums overflow.
__device__ __forceinline__ double warp_sum_d(double x) {
#pragma unroll
  for (int o = 16; o; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

__device__ __forceinline__ double warp_max_d(double x) {
#pragma unroll
  for (int o = 16; o; o >>= 1) x = fmax(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

__device__ __forceinline__ double block_sum_d(double v, double *red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum_d(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  double s = 0.0;
  for (int w = 0; w < nw; w++) s += red[w];
  __syncthreads();
  return s;
}

__device__ __forceinline__ void cp_async16(unsigned saddr, const void *g) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(saddr), "l"(g) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Softcap: z = c tanh(a), a = x s / c (s / c is one constant, as in the CPU
// kernel), and dz/da / c = 1 - tanh(a)^2 in *sech2. Below |a| = 0.625 an odd
// polynomial a + a^3 P(a^2) (relative error 4e-9; the CPU kernel's), where
// 1 - t^2 >= 0.69 does not cancel. Above, with e = exp(-2|a|) <= 0.29,
// tanh = (1 - e) / (1 + e) and 1 - tanh^2 = 4 e / (1 + e)^2: neither cancels
// where tanh nears 1, as 1 + expm1(-2|a|) (an f32 value near -1 plus 1) or
// 1 - t^2 of a rounded t would, losing the derivative's digits exactly for
// the logits near the cap. a = -inf gives -c and 0; NaN stays NaN. Both
// branches are evaluated and one is selected: no divergence within a warp.
// copysignf keeps c t out of an FMA with whatever the caller subtracts, so
// that z is the same bits in every pass.
__device__ __forceinline__ float softcap_z(float x, float s_over_c, float c, float *sech2) {
  const float a = x * s_over_c;
  const float b = fabsf(a), b2 = b * b;
  float q = -5.7049733587e-3f;
  q = fmaf(q, b2, 2.0639074966e-2f);
  q = fmaf(q, b2, -5.3739711642e-2f);
  q = fmaf(q, b2, 1.3331441581e-1f);
  q = fmaf(q, b2, -3.3333280683e-1f);
  const float t_small = fmaf(q * b2, b, b);
  const float e = expf(-2.f * b);
  const float r = 1.f / (1.f + e);
  const bool small = b < 0.625f;
  if (sech2) *sech2 = small ? fmaf(-t_small, t_small, 1.f) : 4.f * e * r * r;
  return copysignf(c * (small ? t_small : (1.f - e) * r), a);
}

// Thread-block clusters and distributed shared memory exist from sm_90 on.
// Their instructions are compiled for sm_90 and newer only; the kernels of
// cluster plans (CL = true) are empty traps in the sm_80/86/89 code, and the
// host launches them only on a device of compute capability 9.0 or more
// (DevState::clusters). Every other kernel runs one CTA per row (K = 1).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define GS_CE_CLUSTERS 1
#endif

// Programmatic dependent launch (sm_90 and newer): the row kernel may start
// while the target scan (ce_prep) still runs, and waits for it here, before
// it reads the control block; the loss sum (ce_reduce) likewise waits for
// the row kernel. Below sm_90 the launches are ordinary ones and these are
// nothing.
__device__ __forceinline__ void prep_done_wait() {
#ifdef GS_CE_CLUSTERS
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void let_dependents_start() {
#ifdef GS_CE_CLUSTERS
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

template <bool CL> __device__ __forceinline__ int cluster_size() {
#ifdef GS_CE_CLUSTERS
  if (CL) return (int)cg::this_cluster().num_blocks();
#endif
  return 1;
}
template <bool CL> __device__ __forceinline__ int cluster_rank() {
#ifdef GS_CE_CLUSTERS
  if (CL) return (int)cg::this_cluster().block_rank();
#endif
  return 0;
}
// The partial of CTA `rank` of this cluster (distributed shared memory).
template <bool CL, typename P> __device__ __forceinline__ P *cluster_peer(P *mine, int rank) {
#ifdef GS_CE_CLUSTERS
  if (CL) return cg::this_cluster().map_shared_rank(mine, rank);
#endif
  return mine;
}
template <bool CL> __device__ __forceinline__ void cluster_arrive() {
#ifdef GS_CE_CLUSTERS
  if (CL) asm volatile("barrier.cluster.arrive.aligned;" ::: "memory");
#endif
}
template <bool CL> __device__ __forceinline__ void cluster_wait() {
#ifdef GS_CE_CLUSTERS
  if (CL) asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#endif
}

// One CTA's statistics over its chunk, relative to its own max m (0 when the
// chunk holds only -inf): r = sum exp(z - m) without the target column,
// q = sum exp(z - m) (z - m) (entropy), wd = sum w (z - m) and ws = sum w
// (label smoothing). For entropy, whose row has no target to keep 1 - p
// apart, wd holds the terms >= 1/2 instead and r the others, so that the
// max's exact 1 does not swallow the small terms (see the row's log S).
// wd64 is wd in double: the f32 sum converted, or, where that overflowed
// (logits near FLT_MAX), the chunk's sum redone in double. Entropy sums q in
// double (q64; q is unused): its gradient p_j (mean - (z_j - m)) cancels
// where z_j is near the mean, and an f32 sum's rounding, about 1e-7 of a
// mean of a few units, would be most of what is left there. Under softcap
// q64 sums e_j (z64_j - m64): z64 = c tanh(x s / c) in double (the f32 z is
// off by up to half an ulp of c, which that cancellation would magnify),
// relative to m64, the z64 of the chunk's extreme logit, so that the max's
// own column gives exactly 0 (its term e is exactly 1: a confident row's
// entropy is the small rest). m64 is -inf for a chunk without columns. It
// lives beside the partial (part_m64 in ce_rows_body), not in it, so that
// the hot kernels' code, which never uses it, stays as it was.
struct Partial {
  float m, r, q, wd, ws;
  double wd64, q64;
};

// What every thread of a row needs for the gradient pass.
struct RowInfo {
  float ms;     // row max (0 for an all -inf row; NaN when every logit is -inf)
  float ap;     // CE / log_probs: dz_j = e_j * ap - bw * w_j, e_j = exp(z_j - ms)
  float bw;
  float gp;     // entropy: dz_j = e_j * gp * (qn - (z_j - ms))
  float qn;
  double qn64;  // entropy: the mean in double, for qn - (z_j - ms) without its rounding
  float dxt;    // the target column's gradient, computed without cancellation
  int wide;     // ap, bw overflow f32 (or give inf * 0): the gradient from ap64, bw64
  double ap64, bw64;
};

// GEN = false is the hot path, compiled without softcap, entropy and class
// weights so that it fits 3 CTAs of 256 threads per SM (<= 80 registers).
// The rare rows whose f32 scalars overflow (logits near FLT_MAX), redone in
// double; ce_rows_body finds them from values the row has anyway, so that
// ordinary rows pay a comparison. Out of line: inlined, this code took
// registers from the hot kernels' loops, which then spilled.
struct RareRow {
  float Ms, logS, R, S, et, xt, zt, W, wt, g, gz, chain_t, s, eps, lam;
  int64_t v;
};

// The loss: an intermediate may have overflowed where the loss fits f32:
// the smoothing sum (W log S - WD), or z_t - max (their difference exceeds
// FLT_MAX, yet (1 - eps) w_t times it may not, and is 0 for eps = 1, where
// inf * 0 gave NaN). Redone in double from the chunks' double sums (wd:
// this lane's chunk's sum relative to the row max; 0 past the cluster); a
// loss that is inf or NaN exactly (a -inf target, a NaN logit) comes out the
// same. Called by the whole warp (a warp sum).
struct RareLoss {
  float ce, zl, loss;
};
__device__ __noinline__ RareLoss rare_loss(RareRow r, double wd, bool smooth, bool softcap) {
  const double WD64 = smooth ? warp_sum_d(wd) : 0.0;
  const double dt64 = softcap ? (double)r.zt - (double)r.Ms : fma((double)r.xt, (double)r.s, -(double)r.Ms);
  const double nll64 = r.et > 0.25f ? (double)log1pf(r.R / r.et) : (double)r.logS - dt64;
  const double smo64 = smooth ? (double)r.W * r.logS - WD64 : 0.0;
  const double ce64 = (1.0 - (double)r.eps) * r.wt * nll64 + (smooth ? (double)r.eps / (double)r.v * smo64 : 0.0);
  const double lse64 = (double)r.Ms + r.logS;
  const double zl64 = r.lam != 0.f ? (double)r.lam * lse64 * lse64 : 0.0;
  return RareLoss{(float)ce64, (float)zl64, (float)(ce64 + zl64)};
}

// The gradient's constants overflow f32 (z-loss or a large grad_output on
// logits near FLT_MAX: 2 lam lse is inf), so that e_j * ap is inf * 0 = NaN
// where p_j = 0, whose exact gradient is 0 (or -1 in the target column).
// They are taken in double, and pass 3 of this row multiplies in double and
// rounds once. ce: cross entropy, else log_probs.
struct RareGrad {
  double ap64, bw64;
  float dxt;
};
__device__ __noinline__ RareGrad rare_grad(RareRow r, bool ce, bool smooth) {
  RareGrad o;
  if (ce) {
    const double ze64 = smooth ? (double)r.g * ((double)r.eps / (double)r.v) : 0.0;
    const double zz64 = r.lam != 0.f ? (double)r.gz * 2.0 * (double)r.lam * ((double)r.Ms + r.logS) : 0.0;
    const double a_other64 = ze64 * r.W + zz64;
    const double a_nll64 = (double)r.g * (1.0 - (double)r.eps) * r.wt;
    o.ap64 = (a_nll64 + a_other64) / r.S;
    o.bw64 = ze64;
    const double dzt64 = -a_nll64 * ((double)r.R / r.S) + a_other64 * ((double)r.et / r.S) - ze64 * r.wt;
    o.dxt = (float)(dzt64 * r.chain_t);
  } else {
    o.ap64 = -(double)r.g / r.S;
    o.bw64 = 0.0;
    o.dxt = (float)((double)r.g * ((double)r.R / r.S) * r.chain_t);
  }
  return o;
}

// The call's options as the row kernels branch on them (GEN = false: the
// hot kernels, compiled without softcap, entropy and class weights).
struct RowFlags {
  bool is_ent, softcap, has_target, smooth, weighted_smooth;
  const float *weight;
};
template <bool GEN> __device__ __forceinline__ RowFlags row_flags(const Params &p) {
  RowFlags f;
  f.is_ent = GEN && p.op == OP_ENT;
  f.softcap = GEN && p.softcap;
  f.weight = GEN ? p.weight : nullptr;
  f.has_target = !f.is_ent;
  f.smooth = p.op == OP_CE && p.eps > 0.f;
  f.weighted_smooth = f.smooth && f.weight;
  return f;
}

// An ignored row's outputs: its loss, lse and z-loss are 0 (the caller
// writes the gradient's zeros).
__device__ __forceinline__ void ignored_row_outputs(const Params &p, int64_t row) {
  if (!p.want_loss) return;
  if (p.loss) p.loss[row] = 0.f;
  if (p.rowbuf) p.rowbuf[2 * row] = p.rowbuf[2 * row + 1] = 0.f;
  if (p.lse) p.lse[row] = 0.f;
  if (p.zl) p.zl[row] = 0.f;
}

// g scales the loss's gradient, gz the z-loss's: the row's grad_output go
// over the "mean" divisors (d: the weight of the non-ignored rows, count:
// their number), where the call has a gradient.
__device__ __forceinline__ float row_grad_output(const Params &p, int64_t row) {
  return p.grad && p.go ? p.go[p.go_per_row ? row : 0] : 1.f;
}
__device__ __forceinline__ void grad_scales(const Params &p, float go, double d, double count, float *g, float *gz) {
  const bool mean = p.grad && p.op == OP_CE && p.reduction == GS_REDUCE_MEAN;
  *g = mean ? (float)((double)go / d) : go;
  *gz = mean ? (float)((double)go / count) : go;
}

// The row's scalars from its chunks' partials, computed by one whole warp:
// lane < K holds chunk lane's partial q (and, for entropy under softcap, its
// m64 in qm64), the other lanes the empty partial. The sums are butterflies
// and every lane reads the same values, so every lane has the same bits (and
// takes the same branches, which the double sums below need); lane 0 writes
// info (and ms64), the leader the row's outputs. xt_in, wt_in: the target's
// logit and class weight; g, gz: grad_scales'.
template <bool GEN>
__device__ __forceinline__ void row_scalars(const Params &p, int64_t row, int K, int lane, const Partial &q,
                                            double qm64, float xt_in, float wt_in, float g, float gz, bool leader,
                                            RowInfo *info, double *ms64_out) {
  const RowFlags fl = row_flags<GEN>(p);
  const bool is_ent = fl.is_ent, softcap = fl.softcap, has_target = fl.has_target, smooth = fl.smooth;
  const bool weighted_smooth = fl.weighted_smooth;
  const float s = p.s, s_over_c = p.s_over_c;
  auto zof = [&](float x) { return softcap ? softcap_z(x, s_over_c, p.c, nullptr) : x * s; };
  auto dof = [&](float x, float m) { return softcap ? softcap_z(x, s_over_c, p.c, nullptr) - m : fmaf(x, s, -m); };
  const float M = warp_max(q.m);
  const float Ms = M == -INFINITY ? 0.f : M;
  const float qms = q.m == -INFINITY ? 0.f : q.m;
  const float f = (lane < K && q.m != -INFINITY) ? ex2((q.m - Ms) * kLog2e) : 0.f;
  float R, BIG = 0.f;
  double Q64 = 0.0, M64 = 0.0;
  if (is_ent) {
    // The terms >= 1/2 of the chunks at the row max (f = 1 there) stay
    // apart in BIG; every other term, scaled, goes to R. Q64 moves each
    // chunk's sum to the row's reference: Ms, or under softcap M64, the
    // largest m64 (the z64 of the row's extreme logit), which every CTA
    // takes from the same partials.
    const bool at_max = lane < K && q.m == M;
    BIG = warp_sum(at_max ? q.wd : 0.f);
    R = warp_sum(f * q.r + (at_max ? 0.f : f * q.wd));
    if (softcap) {
      M64 = warp_max_d(qm64);
      if (M64 == -INFINITY) M64 = 0.0;
    }
    const double shift = softcap ? qm64 - M64 : (double)qms - (double)Ms;
    Q64 = warp_sum_d(f != 0.f ? (double)f * (q.q64 + shift * ((double)q.r + (double)q.wd)) : 0.0);
  } else {
    R = warp_sum(f * q.r);
  }
  const float WD = smooth ? warp_sum(lane < K ? q.wd + (qms - Ms) * q.ws : 0.f) : 0.f;
  const float WS = weighted_smooth ? warp_sum(lane < K ? q.ws : 0.f) : 0.f;

  float xt = 0.f, zt = 0.f, dt = 0.f, et = 0.f;
  if (has_target) {
    xt = xt_in;
    zt = zof(xt);
    dt = dof(xt, Ms);
    et = ex2(dt * kLog2e);
  }
  // Entropy: S = BIG + R, where BIG >= 1 holds the max's own term, exactly
  // 1. log S = log1p((BIG - 1) + R) keeps R even far below f32's epsilon,
  // where log(1 + R) would round it away: for a confident row (margin 40)
  // the entropy is (1 + 40) R, and log(S) gave 40 R.
  const float S = is_ent ? BIG + R : R + et;
  const float logS = is_ent ? log1pf((BIG - 1.f) + R) : logf(S);
  float lse = Ms + logS;
  // lse - z_t: log1p keeps near-certain predictions (loss ~ 1e-10) exact.
  const float nll0 = et > 0.25f ? log1pf(R / et) : logS - dt;
  const float V = (float)p.v;
  const float W = weighted_smooth ? WS : V;
  const float wt = has_target ? wt_in : 1.f;

  float chain_t = s;
  if (softcap) {
    float sech2;
    softcap_z(xt, s_over_c, p.c, &sech2);
    chain_t = s * sech2;
  }
  RowInfo ri;
  ri.ms = Ms;
  ri.gp = 0.f;
  ri.qn = 0.f;
  ri.qn64 = 0.0;
  ri.bw = 0.f;
  ri.wide = 0;
  ri.ap64 = 0.0;
  ri.bw64 = 0.0;
  float loss = 0.f, ce = 0.f, zl = 0.f;
  if (p.op == OP_CE) {
    const float nll = wt * nll0;
    // smo = sum_j w_j (lse - z_j) = W log S - sum_j w_j (z_j - max): two non-negative terms.
    const float smo = smooth ? W * logS - WD : 0.f;
    zl = p.lam != 0.f ? p.lam * lse * lse : 0.f;
    ce = (1.f - p.eps) * nll + (smooth ? (p.eps / V) * smo : 0.f);
    loss = ce + zl;
    const float ze = smooth ? g * (p.eps / V) : 0.f;  // smoothing coefficient
    const float zz = p.lam != 0.f ? gz * 2.f * p.lam * lse : 0.f;
    const float a_other = ze * W + zz;                 // multiplies p_j
    const float a_nll = g * (1.f - p.eps) * wt;        // multiplies (p_j - [j == t])
    ri.ap = (a_nll + a_other) / S;
    ri.bw = ze;
    // p_t - 1 = -R / S: the rest of the row's mass, no cancellation.
    const float dzt = -a_nll * (R / S) + a_other * (et / S) - ze * wt;
    ri.dxt = dzt * chain_t;
  } else if (p.op == OP_LP) {
    loss = -nll0;
    ri.ap = -g / S;
    ri.dxt = g * (R / S) * chain_t;
  } else {
    const double qn64 = Q64 / (double)S;
    loss = logS - (float)qn64;
    ri.gp = g / S;
    ri.qn = (float)qn64;
    ri.qn64 = qn64;
    ri.ap = 0.f;
    ri.dxt = 0.f;
  }

  if (M == -INFINITY) {
    // Every logit is -inf (a NaN among them is invisible to the max): no
    // distribution, and NaN outputs (docs/losses.md, section 2), also for
    // V = 1, where no other term makes the NaN and lse came out as -inf.
    // ms = NaN makes every z - ms, and so every gradient element, NaN in
    // pass 3 (entropy's included: its e != 0 test lets NaN through).
    const float nan = __int_as_float(0x7fffffff);
    loss = ce = lse = nan;
    zl = p.lam != 0.f ? nan : 0.f;
    ri.ms = ri.ap = ri.bw = ri.gp = ri.qn = ri.dxt = nan;
    ri.qn64 = (double)nan;
  } else {
    // The rare rows whose f32 scalars overflow (logits near FLT_MAX), found
    // from values the row has anyway: ordinary rows pay a comparison.
    if (p.op == OP_CE && p.want_loss && !isfinite(loss)) {
      const RareRow r = {Ms, logS, R, S, et, xt, zt, W, wt, g, gz, chain_t, s, p.eps, p.lam, p.v};
      const double wd = lane < K ? q.wd64 + ((double)qms - (double)Ms) * (double)q.ws : 0.0;
      const RareLoss o = rare_loss(r, wd, smooth, softcap);
      ce = o.ce;
      zl = o.zl;
      loss = o.loss;
    }
    if (p.grad && p.op != OP_ENT && !(isfinite(ri.ap * s) && isfinite(ri.bw * s) && isfinite(ri.dxt))) {
      const RareRow r = {Ms, logS, R, S, et, xt, zt, W, wt, g, gz, chain_t, s, p.eps, p.lam, p.v};
      const RareGrad o = rare_grad(r, p.op == OP_CE, smooth);
      ri.wide = 1;
      ri.ap64 = o.ap64;
      ri.bw64 = o.bw64;
      ri.dxt = o.dxt;
    }
  }

  if (lane == 0) {
    *info = ri;
    if (softcap && is_ent) *ms64_out = M64;
    if (leader && p.want_loss) {
      if (p.loss) p.loss[row] = loss;
      if (p.rowbuf) {
        // ce itself, not loss - zl: that is inf - inf = NaN once the z-loss overflows
        p.rowbuf[2 * row] = ce;
        p.rowbuf[2 * row + 1] = zl;
      }
      if (p.lse) p.lse[row] = lse;
      if (p.zl) p.zl[row] = zl;
    }
  }
}

// CL = false: one CTA per row, on every GPU; CL = true: a cluster of K CTAs
// per row (sm_90 and newer).
template <typename T, bool RES, bool GEN, bool CL>
__device__ __forceinline__ void ce_rows_body(const Params &p) {
  constexpr int NV = Vec<T>::N;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T *buf = reinterpret_cast<T *>(smem_raw);
  __shared__ float red[4][kMaxWarps];
  __shared__ double red64[kMaxWarps];
  __shared__ Partial part;
  __shared__ RowInfo info;
  // Entropy under softcap only (see Partial): this chunk's m64, and the
  // row's, which qn64 and every z64_j - ms64 of the gradient are relative to.
  __shared__ double part_m64, ms64_sh;
  __shared__ float xt_sh, wt_sh;

  const int K = cluster_size<CL>();
  const int rank = cluster_rank<CL>();
  const int tid = threadIdx.x, nthr = blockDim.x;
  const int64_t nclusters = gridDim.x / K;
  const int64_t c0 = (int64_t)rank * p.chunk;
  const int clen = (int)min(p.chunk, p.v - c0);
  const int nvec = (clen + NV - 1) / NV;
  const RowFlags fl = row_flags<GEN>(p);
  const bool is_ent = fl.is_ent, softcap = fl.softcap, has_target = fl.has_target, smooth = fl.smooth;
  const bool weighted_smooth = fl.weighted_smooth;
  const float *weight = fl.weight;
  const float s = p.s, s_over_c = p.s_over_c;
  // Double buffering: while a row is computed, the next row of this cluster
  // is already on its way into the other buffer (cp.async groups, one per row).
  const bool db = RES && p.nbuf == 2;
  bool pending = false;

  auto row_live = [&](int64_t r) {
    if (!has_target) return true;
    const int64_t tt = load_target(p.target, p.tgt64, r);
    return !(tt == p.ignore || tt < 0 || tt >= p.v);
  };
  // The 16-byte part of a chunk goes by cp.async; a ragged tail, or a whole
  // chunk that is not 16-byte aligned, by plain loads when the row is used.
  auto chunk_src = [&](int64_t r) { return (const T *)p.logits + r * p.lstride + c0; };
  auto fetch_async = [&](int64_t r, T *dst) {
    const T *src = chunk_src(r);
    if ((((uintptr_t)src) & 15) != 0) return;
    const unsigned sbase = (unsigned)__cvta_generic_to_shared(dst);
    const int nfull = clen / NV;
    for (int vi = tid; vi < nfull; vi += nthr) cp_async16(sbase + vi * 16u, src + (int64_t)vi * NV);
  };
  auto fetch_rest = [&](int64_t r, T *dst) {
    const T *src = chunk_src(r);
    const int from = (((uintptr_t)src) & 15) == 0 ? clen / NV * NV : 0;
    for (int j = from + tid; j < clen; j += nthr) dst[j] = src[j];
  };

  let_dependents_start();  // the loss sum may be scheduled; it waits for this grid's end
  int64_t row = blockIdx.x / K;
  int cur = 0;
  if (db) {
    if (row < p.n && row_live(row)) fetch_async(row, buf);
    cp_async_commit();
  }
  for (; row < p.n; row += nclusters, cur ^= 1) {
    T *const bcur = buf + (db ? cur * p.chunk : 0);
    const T *xrow = (const T *)p.logits + row * p.lstride;
    const T *xc = xrow + c0;
    char *grow = p.grad ? (char *)p.grad + row * p.gstride * (p.gdtype == GS_F32 ? 4 : 2) : nullptr;
    const bool galigned = grow && ((((uintptr_t)grow) + c0 * (p.gdtype == GS_F32 ? 4 : 2)) & 15) == 0;
    const bool leader = rank == 0 && tid == 0;

    // A bad target anywhere makes the whole call an error, and nothing may
    // be written (docs/losses.md, section 1): not a loss, and not a
    // gradient, which in place would overwrite the logits. The prep kernel,
    // which ran before in the same stream, sets report_row; this kernel may
    // have started before it ended (prep_done_wait), so the row's logits
    // are on their way before report_row is read, and any write comes after.
    // Every CTA of a cluster reads the same value and leaves in its first
    // row, before any write or cluster barrier.
    auto call_failed = [&] {
      prep_done_wait();
      return has_target && p.ctrl->report_row >= 0;
    };
    int64_t t = -1;
    bool skip = false;
    if (has_target) {
      t = load_target(p.target, p.tgt64, row);
      skip = t == p.ignore || t < 0 || t >= p.v;  // bad targets are reported by the prep kernel
    }
    if (db) {
      __syncthreads();  // every thread is done with the other buffer (the previous row)
      const int64_t nrow = row + nclusters;
      if (nrow < p.n && row_live(nrow)) fetch_async(nrow, buf + (cur ^ 1) * p.chunk);
      cp_async_commit();
    }
    // An ignored row's gradient, and the benchmark's kSkipGradMath phase.
    auto store_zeros = [&] {
      const float zero[NV] = {};
      for (int vi = tid; vi < nvec; vi += nthr)
        store_grad<NV>(grow, p.gdtype, c0 + (int64_t)vi * NV, zero, min(NV, clen - vi * NV), galigned);
    };
    if (skip) {
      if (call_failed()) break;
      if (grow) store_zeros();
      if (leader) ignored_row_outputs(p, row);
      continue;
    }

    __syncthreads();  // the previous row's readers of buf, xt_sh and info are done
    // The target logit is read before any CTA of the cluster writes its
    // gradient: with grad == logits it is overwritten later.
    if (tid == 0 && has_target) {
      xt_sh = Vec<T>::one(xrow, t);
      wt_sh = (p.op == OP_CE && weight) ? weight[t] : 1.f;
    }

    const bool xaligned = (((uintptr_t)xc) & 15) == 0;
    // The hot kernel's one-pass statistics (see the stats pass below): whole
    // aligned vectors only, every thread reading back just what it fetched.
    const bool online = !GEN && !db && p.whole && !(p.phases & (kSkipStats | kTwoPass));
    // This thread's vectors vi = tid + i nthr, i < own, fetched in kGroups
    // cp.async groups, so that the stats pass starts on the first group
    // while the others are in flight.
    const int own = tid < clen / NV ? (clen / NV - 1 - tid) / nthr + 1 : 0;
    if (RES && online) {
      const unsigned sbase = (unsigned)__cvta_generic_to_shared(bcur);
#pragma unroll
      for (int g = 0; g < kGroups; g++) {
        for (int i = g * own / kGroups; i < (g + 1) * own / kGroups; i++) {
          const int vi = tid + i * nthr;
          cp_async16(sbase + vi * 16u, xc + (int64_t)vi * NV);
        }
        cp_async_commit();
      }
    } else if (RES) {
      if (db) {
        cp_async_wait<1>();  // this row's group; the next row's may still fly
      } else {
        fetch_async(row, bcur);
        cp_async_commit();
        cp_async_wait<0>();
      }
      fetch_rest(row, bcur);
      __syncthreads();
    }
    if (call_failed()) {
      cp_async_wait<0>();  // no copy may still land in shared memory after the CTA leaves
      break;
    }

    auto load = [&](int vi, float *x, int nvalid) {
      if (RES) {
        if (nvalid == NV) {
          Vec<T>::cvt(*(const uint4 *)(bcur + vi * NV), x);
        } else {
          #pragma unroll
          for (int k = 0; k < NV; k++)
            if (k < nvalid) x[k] = Vec<T>::one(bcur, vi * NV + k);
        }
      } else {
        if (nvalid == NV && xaligned) {
          Vec<T>::cvt(*(const uint4 *)(xc + (int64_t)vi * NV), x);
        } else {
          #pragma unroll
          for (int k = 0; k < NV; k++)
            if (k < nvalid) x[k] = Vec<T>::one(xc, (int64_t)vi * NV + k);
        }
      }
    };
    // Column j of the chunk alone, for the rare smoothing sum in double
    // (element by element: it needs few registers, and the common loops keep
    // theirs).
    auto load_one = [&](int j) { return RES ? Vec<T>::one(bcur, j) : Vec<T>::one(xc, (int64_t)j); };
    // z = s x, or c tanh(s x / c) with softcap.
    auto zof = [&](float x) { return softcap ? softcap_z(x, s_over_c, p.c, nullptr) : x * s; };
    // z - m. Cross entropy and log_probs: with one rounding when there is no
    // softcap. Entropy (from_z true): from the rounded z, with no FMA, so
    // that the max's own column gives exactly 0 and its term exactly 1,
    // which the entropy's log S relies on (see the row's scalars).
    auto dof = [&](float x, float m, auto from_z) {
      if (softcap) return softcap_z(x, s_over_c, p.c, nullptr) - m;
      if (decltype(from_z)::value) return __fsub_rn(__fmul_rn(x, s), m);
      return fmaf(x, s, -m);
    };
    // Entropy under softcap: z in double (see Partial::q64); x s / c is exact.
    // __dmul_rn: c tanh(.) rounded on its own, never fused into an FMA with
    // the "- m64" that follows; otherwise the max's own z64 - m64 is the
    // product's rounding error (~1e-15), not 0, and a confident row's
    // entropy (~1e-26) drowns in it.
    auto z64of = [&](float x) { return __dmul_rn((double)p.c, tanh((double)x * (double)s_over_c)); };

    // Whole vectors in a loop whose lane count is a constant; the one ragged
    // vector at the end of a chunk (if any) in a call of its own.
    const int nfull = clen / NV, rem = clen - nfull * NV;
    const int tail_tid = nfull % nthr;
    auto for_vecs = [&](auto &&body, bool last_read = false) {
      if constexpr (!RES) {
        if (xaligned) {
          // Streaming: kBatch vectors in flight per thread; the gradient's
          // read is the chunk's last, and L2 may drop its lines first.
          const uint64_t pol = last_read ? l2_drop() : l2_keep();
          int vi = tid;
          for (; vi + (kBatch - 1) * nthr < nfull; vi += kBatch * nthr) {
            uint4 raw[kBatch];
#pragma unroll
            for (int u = 0; u < kBatch; u++) raw[u] = ld_hint(xc + (int64_t)(vi + u * nthr) * NV, pol);
#pragma unroll
            for (int u = 0; u < kBatch; u++) {
              float x[NV];
              Vec<T>::cvt(raw[u], x);
              body(vi + u * nthr, x, NV);
            }
          }
          for (; vi < nfull; vi += nthr) {
            float x[NV];
            Vec<T>::cvt(ld_hint(xc + (int64_t)vi * NV, pol), x);
            body(vi, x, NV);
          }
          if (rem && tid == tail_tid) {
            float x[NV];
            load(nfull, x, rem);
            body(nfull, x, rem);
          }
          return;
        }
      }
#pragma unroll 2
      for (int vi = tid; vi < nfull; vi += nthr) {
        float x[NV];
        load(vi, x, NV);
        body(vi, x, NV);
      }
      if (rem && tid == tail_tid) {
        float x[NV];
        load(nfull, x, rem);
        body(nfull, x, rem);
      }
    };
    // The target's column relative to this chunk (-1 when elsewhere).
    const int tloc = (t >= c0 && t < c0 + clen) ? (int)(t - c0) : -1;

    // Pass 1: this chunk's max. Lanes past the chunk never enter (masking
    // after the transform: a padded lane's z would not be -inf under softcap).
    // Without softcap max(s x) = |s| max(sign(s) x), rounding being monotone.
    // Entropy under softcap also finds the logit whose z64 is the chunk's
    // reference m64 (Partial): z is monotone in x s / c, so the max of
    // sg x, sg = +-1 the sign of s / c.
    float mx = -INFINITY, xe = -INFINITY;
    const float sg = s_over_c < 0.f ? -1.f : 1.f;
    const bool skip_stats = p.phases & kSkipStats;
    // acc: r, q, wd, ws (Partial); for entropy, r and wd split the terms.
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    // One pass (online): each thread keeps r and wd relative to its running
    // max mref, rescaled when a vector raises it (a few times per row), and
    // to the chunk max once at the end. ex2 of (z - mref) then times
    // ex2(mref - m) is the two-pass term within a few ulps; the target's
    // column stays out of r as there.
    auto online_stats = [&](auto positive, auto with_smooth) {
      constexpr bool POS = decltype(positive)::value;
      constexpr bool SM = decltype(with_smooth)::value;
      float mref = 0.f;
      auto step = [&](int j0, const float *x) {
          float xm = -INFINITY;
#pragma unroll
          for (int k = 0; k < NV; k++) xm = fmaxf(xm, POS ? x[k] : -x[k]);
          const float zm = POS ? xm * s : xm * -s;  // max(s x) = |s| max(sign(s) x)
          if (zm > mx) {
            // Before the first finite max the sums hold 0, -inf or NaN
            // (columns of -inf or NaN only), which stay as they are.
            if (mx != -INFINITY) {
              const float delta = mref - zm;
              acc[0] *= ex2(delta * kLog2e);
              if (SM) acc[2] = fmaf(delta, acc[3], acc[2]);
            }
            mx = mref = zm;
          }
          float e[NV];
#pragma unroll
          for (int k = 0; k < NV; k++) {
            const float d = fmaf(x[k], s, -mref);
            e[k] = ex2(d * kLog2e);
            if (SM) acc[2] += d;
          }
          if (SM) acc[3] += (float)NV;
          if ((unsigned)(tloc - j0) < (unsigned)NV) {  // the target's vector: its term stays out
#pragma unroll
            for (int k = 0; k < NV; k++)
              if (j0 + k == tloc) e[k] = 0.f;
          }
          // Two chains of adds, not one: half the latency per vector.
          float s0 = e[0], s1 = e[1];
#pragma unroll
          for (int k = 2; k < NV; k += 2) {
            s0 += e[k];
            s1 += e[k + 1];
          }
          acc[0] += s0 + s1;
      };
      if constexpr (RES) {
#pragma unroll
        for (int g = 0; g < kGroups; g++) {
          if (g == 0) cp_async_wait<kGroups - 1>();
          else if (g == 1) cp_async_wait<kGroups - 2>();
          else if (g == 2) cp_async_wait<kGroups - 3>();
          else cp_async_wait<0>();
          for (int i = g * own / kGroups; i < (g + 1) * own / kGroups; i++) {
            const int j0 = (tid + i * nthr) * NV;
            float x[NV];
            Vec<T>::cvt(*(const uint4 *)(bcur + j0), x);
            step(j0, x);
          }
        }
      } else {
        for_vecs([&](int vi, const float *x, int) { step(vi * NV, x); });  // whole aligned vectors (online)
      }
      return mref;
    };
    float mref = 0.f;
    if (skip_stats) {
      mx = 0.f;
    } else if (online) {
      if (smooth)
        mref = s > 0.f ? online_stats(std::true_type(), std::true_type()) : online_stats(std::false_type(), std::true_type());
      else
        mref = s > 0.f ? online_stats(std::true_type(), std::false_type()) : online_stats(std::false_type(), std::false_type());
    } else if (softcap && is_ent) {
      for_vecs([&](int, const float *x, int nvalid) {
#pragma unroll
        for (int k = 0; k < NV; k++) {
          if (k < nvalid) {
            mx = fmaxf(mx, zof(x[k]));
            xe = fmaxf(xe, sg * x[k]);
          }
        }
      });
    } else if (softcap) {
      for_vecs([&](int, const float *x, int nvalid) {
#pragma unroll
        for (int k = 0; k < NV; k++)
          if (k < nvalid) mx = fmaxf(mx, zof(x[k]));
      });
    } else if (s > 0.f) {
      for_vecs([&](int, const float *x, int nvalid) {
#pragma unroll
        for (int k = 0; k < NV; k++)
          if (k < nvalid) mx = fmaxf(mx, x[k]);
      });
      mx *= s;
    } else {
      for_vecs([&](int, const float *x, int nvalid) {
#pragma unroll
        for (int k = 0; k < NV; k++)
          if (k < nvalid) mx = fmaxf(mx, -x[k]);
      });
      mx *= -s;
    }
    const float m = block_max(mx, red);
    const float msafe = m == -INFINITY ? 0.f : m;
    double m64 = -INFINITY;  // no column (or NaN only): the combine skips this chunk
    if (softcap && is_ent) {
      xe = block_max(xe, red);
      if (m != -INFINITY) m64 = z64of(sg * xe);
    }

    // Pass 2: sums relative to this chunk's max. Smoothing and entropy are
    // compile-time choices so that the common loop carries no branch for them.
    double q64 = 0.0;  // entropy's q
    auto pass2 = [&](auto with_smooth, auto with_ent) {
      constexpr bool SM = decltype(with_smooth)::value;
      constexpr bool ENT = decltype(with_ent)::value;
      for_vecs([&](int vi, const float *x, int nvalid) {
        const int j0 = vi * NV;
        const bool ht = (unsigned)(tloc - j0) < (unsigned)NV;
        float e[NV];
#pragma unroll
        for (int k = 0; k < NV; k++) {
          if (k < nvalid) {
            const float d = dof(x[k], msafe, with_ent);
            e[k] = ex2(d * kLog2e);
            if (ENT) q64 += e[k] != 0.f ? (double)e[k] * (softcap ? z64of(x[k]) - m64 : (double)d) : 0.0;  // p log p -> 0; NaN stays
            if (SM) {
              const float w = weighted_smooth ? weight[c0 + j0 + k] : 1.f;
              acc[2] = fmaf(w, d, acc[2]);
              acc[3] += w;
            }
          }
        }
        if (ENT) {
#pragma unroll
          for (int k = 0; k < NV; k++) {
            if (k < nvalid) {
              if (e[k] >= 0.5f) acc[2] += e[k];
              else acc[0] += e[k];  // a NaN term lands here
            }
          }
        } else if (!ht) {
#pragma unroll
          for (int k = 0; k < NV; k++)
            if (k < nvalid) acc[0] += e[k];
        } else {
#pragma unroll
          for (int k = 0; k < NV; k++)
            if (k < nvalid && j0 + k != tloc) acc[0] += e[k];
        }
      });
    };
    if (skip_stats) {
      acc[0] = 1.f;
    } else if (online) {
      if (mx != -INFINITY) {  // this thread's sums, to the chunk max
        const float delta = mref - msafe;  // 0 for the thread that holds the max
        acc[0] *= ex2(delta * kLog2e);
        if (smooth) acc[2] = fmaf(delta, acc[3], acc[2]);
      }
    } else if (is_ent) pass2(std::false_type(), std::true_type());
    else if (smooth) pass2(std::true_type(), std::false_type());
    else pass2(std::false_type(), std::false_type());
    block_sum<4>(acc, red);
    if (is_ent) q64 = block_sum_d(q64, red64);

    // Logits near FLT_MAX: a term w_j (z_j - m), or the chunk's f32 sum of
    // them, can overflow although the smoothing loss fits f32 (docs/losses.md,
    // section 11: {0, ..., 0, 3.4e38} with label_smoothing 1 has the loss
    // 7/8 * 3.4e38). The chunk's sum is then redone in double, where z_j - m
    // of two f32 values, its products with f32 weights and their sums cannot
    // overflow. The test costs one comparison per row (acc is the same in
    // every thread after block_sum); a -inf or NaN logit lands here too, and
    // keeps its -inf or NaN.
    double wd64 = acc[2];
    if (smooth && !isfinite(acc[2])) {
      double sum64 = 0.0;
      for (int j = tid; j < clen; j += nthr) {
        const float x = load_one(j);
        const double w = weighted_smooth ? (double)weight[c0 + j] : 1.0;
        const double d = softcap ? (double)zof(x) - (double)msafe : fma((double)x, (double)s, -(double)msafe);
        sum64 += w * d;
      }
      wd64 = block_sum_d(sum64, red64);
    }

    // The last row's partial may still be read by the other CTAs until they
    // have all arrived: wait for that before overwriting it.
    if (pending) {
      cluster_wait<CL>();
      pending = false;
    }
    if (tid == 0) {
      part.m = m;
      part.r = acc[0];
      part.q = acc[1];
      part.wd = acc[2];
      part.ws = acc[3];
      part.wd64 = wd64;
      part.q64 = q64;
      if (softcap && is_ent) part_m64 = m64;
    }
    if (K > 1) {
      cluster_arrive<CL>();  // every partial of the cluster is visible after the wait
      cluster_wait<CL>();
    } else {
      __syncthreads();
    }

    // The row's scalars (row_scalars), computed by the whole first warp.
    if (tid < 32) {
      const int lane = tid;
      Partial q = {-INFINITY, 0.f, 0.f, 0.f, 0.f, 0.0, 0.0};
      if (lane < K) q = *(K > 1 ? cluster_peer<CL>(&part, lane) : &part);
      double qm64 = -INFINITY;
      if (softcap && is_ent && lane < K) qm64 = *(K > 1 ? cluster_peer<CL>(&part_m64, lane) : &part_m64);
      float g, gz;
      grad_scales(p, row_grad_output(p, row), p.ctrl->d, p.ctrl->count, &g, &gz);
      row_scalars<GEN>(p, row, K, lane, q, qm64, has_target ? xt_sh : 0.f, has_target ? wt_sh : 1.f, g, gz, leader,
                       &info, &ms64_sh);
    }
    if (K > 1) {
      cluster_arrive<CL>();  // this CTA is done reading the others' partials
      pending = true;
    }
    __syncthreads();

    if (!grow) continue;
    // Pass 3: the gradient. Entropy and the rows with double constants
    // (RowInfo::wide) have loops of their own, so that the common loop
    // carries no branch for them.
    const RowInfo ri = info;
    const float ms = ri.ms;
    const double ms64 = softcap && is_ent ? ms64_sh : 0.0;
    auto pass3 = [&](auto with_ent, auto with_wide) {
      constexpr bool ENT = decltype(with_ent)::value;
      constexpr bool WIDE = decltype(with_wide)::value;
      const float aps = ri.ap * s, bws = ri.bw * s;
      const bool weighted = WIDE ? ri.bw64 != 0.0 : ri.bw != 0.f;
      const uint64_t drop = RES ? 0 : l2_drop();
      for_vecs([&](int vi, const float *x, int nvalid) {
        const int j0 = vi * NV;
        float gv[NV];
#pragma unroll
        for (int k = 0; k < NV; k++) {
          const float w = (!ENT && weighted && weight && k < nvalid) ? weight[c0 + j0 + k] : 1.f;
          if (softcap) {
            float sech2;
            const float d = softcap_z(x[k], s_over_c, p.c, &sech2) - ms;
            const float e = ex2(d * kLog2e);
            if (ENT) gv[k] = (e != 0.f ? e * ri.gp * (float)(ri.qn64 - (z64of(x[k]) - ms64)) : 0.f) * (s * sech2);
            else if (WIDE) gv[k] = (float)(((double)e * ri.ap64 - ri.bw64 * w) * ((double)s * sech2));
            else gv[k] = fmaf(e, ri.ap, -ri.bw * w) * (s * sech2);
          } else {
            const float d = dof(x[k], ms, with_ent);
            const float e = ex2(d * kLog2e);
            if (ENT) gv[k] = (e != 0.f ? e * ri.gp * (float)(ri.qn64 - (double)d) : 0.f) * s;
            else if (WIDE) gv[k] = (float)(((double)e * ri.ap64 - ri.bw64 * w) * (double)s);
            else gv[k] = fmaf(e, aps, -bws * w);  // the chain factor s is folded into aps and bws
          }
        }
        if ((unsigned)(tloc - j0) < (unsigned)NV) {
#pragma unroll
          for (int k = 0; k < NV; k++)
            if (j0 + k == tloc) gv[k] = ri.dxt;
        }
        store_grad<NV, RES ? kStorePlain : kStoreHint>(grow, p.gdtype, c0 + j0, gv, nvalid, galigned, drop);
      }, true);
    };
    if (p.phases & kSkipGradMath) store_zeros();
    else if (is_ent) pass3(std::true_type(), std::false_type());
    else if (ri.wide) pass3(std::false_type(), std::true_type());
    else pass3(std::false_type(), std::false_type());
  }
  cp_async_wait<0>();
  if (pending) cluster_wait<CL>();  // our partial stays readable until every CTA has read it
}

template <typename T, bool RES, bool GEN, bool CL>
__global__ void __launch_bounds__(kMaxThreads, GEN ? 1 : RES ? 3 : 2) ce_rows(Params p) {
#if defined(__CUDA_ARCH__) && !defined(GS_CE_CLUSTERS)
  // Below sm_90 a cluster kernel is never launched; it is not compiled either.
  if constexpr (CL) {
    __trap();
  } else
#endif
  {
    ce_rows_body<T, RES, GEN, CL>(p);
  }
}

#include "cross_entropy_register.cuh"

// Targets: finds the lowest bad row, and sums D and the non-ignored count in
// double, per block and then over blocks in block order (deterministic).
struct PrepParams {
  const void *target;
  int tgt64;
  int64_t ignore, n, v;
  const float *weight;
  Ctrl *ctrl;
  // The host's copy of the verdict (pinned, mapped): row, value, and then
  // seq, written last, which tells the waiting host that this call's scan
  // is done.
  volatile long long *host;
  long long seq;
};

// Two block-wide sums in double over one value per thread (a, b in shared
// memory, blockDim.x a power of two), in a fixed tree: the same bits on
// every run. The totals end in a[0] and b[0].
__device__ __forceinline__ void tree_sum2(double *a, double *b) {
  const int tid = threadIdx.x;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (tid < h) {
      a[tid] += a[tid + h];
      b[tid] += b[tid + h];
    }
    __syncthreads();
  }
}

__global__ void __launch_bounds__(256) ce_prep(PrepParams p) {
  __shared__ double sd[256], sn[256];
  __shared__ bool last;
  const int tid = threadIdx.x;
  let_dependents_start();
  const TargetTally mine = tally_targets(p.target, p.tgt64, p.ignore, p.n, p.v, p.weight,
                                      (int64_t)blockIdx.x * blockDim.x + tid, (int64_t)gridDim.x * blockDim.x);
  if (mine.bad != LLONG_MAX) atomicMin(&p.ctrl->bad_row, (unsigned long long)mine.bad);
  sd[tid] = mine.d;
  sn[tid] = mine.count;
  tree_sum2(sd, sn);
  if (tid == 0) {
    p.ctrl->part_d[blockIdx.x] = sd[0];
    p.ctrl->part_n[blockIdx.x] = sn[0];
    __threadfence();
    last = atomicAdd(&p.ctrl->done, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last) return;
  // The last block adds the blocks' partials, each thread loading one (a
  // loop of dependent loads in one thread took microseconds), in a fixed
  // tree: the same bits on every run.
  __threadfence();
  volatile Ctrl *c = p.ctrl;
  sd[tid] = tid < (int)gridDim.x ? c->part_d[tid] : 0.0;
  sn[tid] = tid < (int)gridDim.x ? c->part_n[tid] : 0.0;
  tree_sum2(sd, sn);
  if (tid == 0) {
    c->d = sd[0];
    c->count = sn[0];
    const unsigned long long br = c->bad_row;
    c->report_row = br == ~0ull ? -1 : (long long)br;
    c->report_value = br == ~0ull ? 0 : (long long)load_target(p.target, p.tgt64, (int64_t)br);
    c->bad_row = ~0ull;
    c->done = 0;
    p.host[0] = c->report_row;
    p.host[1] = c->report_value;
    __threadfence_system();
    p.host[2] = p.seq;
  }
}

// "sum" and "mean" of the per-row losses, in double, in a fixed order.
__global__ void __launch_bounds__(1024) ce_reduce(const float *rowbuf, int64_t n, int mean, int zterm,
                                                  const Ctrl *ctrl, float *out) {
  __shared__ double sa[1024], sb[1024];
  const int tid = threadIdx.x;
  prep_done_wait();  // launched while the row kernel still runs: its per-row losses
  if (ctrl->report_row >= 0) return;  // a bad target: the call is an error and writes no loss
  double a = 0.0, b = 0.0;
  for (int64_t i = tid; i < n; i += blockDim.x) {
    a += rowbuf[2 * i];
    b += rowbuf[2 * i + 1];
  }
  sa[tid] = a;
  sb[tid] = b;
  tree_sum2(sa, sb);
  if (tid == 0) {
    double r;
    if (mean) {
      r = sa[0] / ctrl->d;  // all rows ignored: 0 / 0 = NaN, as PyTorch
      if (zterm) r += sb[0] / ctrl->count;
    } else {
      r = sa[0] + sb[0];
    }
    *out = (float)r;
  }
}

// Host side.

struct Tune {
  int mode = 0;          // 0 auto, 1 resident, 2 streaming, 3 resident double-buffered, 4 register
  int chunk_bytes = 0;   // 0: default
  int max_cluster = 0;   // 0: default (8)
  int threads = 0;       // 0: from the chunk size
  int grid_cap = 0;      // > 0: at most this many clusters (rows loop inside); -c: c waves of clusters
};

// The plans a call can take, and the paths counted beside them; the names
// are what gs_ce_cuda_plan_name gives and GRADSPEC_CUDA_PLAN takes (plans
// only). Cluster plans exist on sm_90 and newer; the others everywhere.
enum Counter {
  PLAN_RESIDENT = 0,        // one CTA per row, the row in shared memory
  PLAN_RESIDENT_CLUSTER,    // K CTAs per row, chunks in shared memory, partials through DSMEM
  PLAN_RESIDENT_PREFETCH,   // resident, two buffers: persistent CTAs prefetch their next row
  PLAN_STREAMING,           // one CTA per row, every pass reads global memory
  PLAN_STREAMING_CLUSTER,   // K CTAs per row, reading global memory
  PLAN_REGISTER,            // hot kernel: K CTAs per row (a cluster where K > 1), the chunk's exp values on chip
  kPlanKinds,
  PATH_GENERAL = kPlanKinds,  // the kernel with softcap, entropy and class weights
  PATH_SCAN_MULTIBLOCK,       // the target scan ran in more than one block
  PATH_GRAD_OUTPUT_ROWS,      // a fused forward+backward with a grad_output per row
  PATH_ROWS_LOOP,             // fewer CTAs (clusters) than rows: each loops over rows
  PATH_ONE_PASS,              // hot kernel (resident or streaming), chunks of whole aligned vectors: max and sums in one pass
  PATH_TWO_PASS,              // hot kernel, chunks ragged or unaligned: a pass for the max, one for the sums
  kCounters
};
const char *const kCounterNames[kCounters] = {
    "resident", "resident_cluster", "resident_prefetch", "streaming", "streaming_cluster", "register",
    "general",  "scan_multiblock",  "grad_output_rows",  "rows_loop",
    "one_pass", "two_pass"};
constexpr int kPrepRows = 256;  // target-scan rows per block: one per thread (more made an 8192-row scan take 9 us)

struct Plan {
  int kind;  // Counter, < kPlanKinds
  int k;
  int64_t chunk;
  int threads;
  size_t smem;
  bool resident;
  int nbuf;
  int max_clusters;  // co-resident clusters (occupancy); 0 unknown
};

// The occupancy query behind a plan costs host time; plans depend only on
// the kernel, V and the tuning, so they are kept.
struct PlanCache {
  int key;
  int64_t v;
  unsigned gen;
  Plan pl;
};

struct DevState {
  PlanCache plans[32];
  unsigned nplans = 0;
  bool ready = false;
  int smem_optin = 0;
  int64_t auto_chunk = 0;  // bytes: the largest chunk of which kAutoCtasPerSm CTAs fit an SM
  int sms = 0;
  int major = 0, minor = 0;
  bool clusters = false;  // sm_90 or newer, and GRADSPEC_CUDA_PORTABLE not set
  bool portable = false;
  // Scratch for the per-row losses of "sum" and "mean" (8 B/row), kept
  // from call to call: a cudaMallocAsync/cudaFreeAsync pair per call cost
  // as much as the kernels on small inputs (the default pool returns its
  // memory at every synchronisation). Counted by gs_cuda_account only
  // while a call uses it, as the linear cross entropy's pool does.
  float *rowbuf = nullptr;
  size_t rowbuf_bytes = 0;
  Ctrl *ctrl = nullptr;
  // Pinned host memory the scan writes its verdict to (PrepParams::host),
  // and the number of the last call that waited for one.
  volatile long long *report = nullptr;
  long long *report_dev = nullptr;
  long long seq = 0;
};

std::mutex g_mu;
Tune g_tune;
int g_phases = 0;  // gs_ce_cuda_phases: kSkip* bits for the benchmark
unsigned g_tune_gen = 1;
DevState g_dev[16];
char g_last_plan[160];
std::atomic<long long> g_counts[kCounters];
int g_force = -1;          // a forced plan (Counter), or -1: the automatic choice
bool g_env_read = false;   // GRADSPEC_CUDA_PLAN has been read
char g_env_error[sizeof(((gs_error *)0)->msg)];     // why GRADSPEC_CUDA_PLAN could not be used, or ""

// kernels[dtype][resident][general][cluster]; dtype 0 f32, 1 bf16, 2 f16.
typedef void (*RowKernel)(Params);
#define GS_CE_KERNELS(T)                                                                        \
  {                                                                                             \
    {{ce_rows<T, false, false, false>, ce_rows<T, false, false, true>},                         \
     {ce_rows<T, false, true, false>, ce_rows<T, false, true, true>}},                          \
    {                                                                                           \
      {ce_rows<T, true, false, false>, ce_rows<T, true, false, true>},                          \
      {ce_rows<T, true, true, false>, ce_rows<T, true, true, true>}                             \
    }                                                                                           \
  }
const RowKernel kernels[3][2][2][2] = {GS_CE_KERNELS(float), GS_CE_KERNELS(__nv_bfloat16),
                                       GS_CE_KERNELS(__half)};
#undef GS_CE_KERNELS
// The register plan's kernels: reg_kernels[dtype][cluster].
const RowKernel reg_kernels[3][2] = {{ce_rows_reg<float, false>, ce_rows_reg<float, true>},
                                     {ce_rows_reg<__nv_bfloat16, false>, ce_rows_reg<__nv_bfloat16, true>},
                                     {ce_rows_reg<__half, false>, ce_rows_reg<__half, true>}};
const int reg_cols[3] = {reg_columns<float>(), reg_columns<__nv_bfloat16>(), reg_columns<__half>()};
const int reg_smem_bytes[3] = {reg_smem<float>(), reg_smem<__nv_bfloat16>(), reg_smem<__half>()};

bool env_on(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

// Plans with clusters need compute capability 9.0; the others 8.0 (cp.async).
gs_status init_device(DevState **out, gs_error *err) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "no CUDA device");
  if (dev < 0 || dev >= 16) return gs_cuda_fail(err, cudaErrorInvalidDevice, "device index");
  DevState &d = g_dev[dev];
  *out = &d;
  if (d.ready) return GS_OK;
  if (gs_cuda_check_capability(err) != GS_OK) return GS_ERR_NO_DEVICE;
  cudaDeviceProp prop;
  e = cudaGetDeviceProperties(&prop, dev);
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaGetDeviceProperties");
  d.major = prop.major;
  d.minor = prop.minor;
  d.portable = env_on("GRADSPEC_CUDA_PORTABLE");
  d.clusters = prop.major >= 9 && !d.portable;
  d.smem_optin = (int)prop.sharedMemPerBlockOptin;
  d.sms = prop.multiProcessorCount;
  size_t static_max = 0;
  for (int i = 0; i < 24; i++) {
    const bool cl = i % 2;
    const void *k = (const void *)kernels[i / 8][(i / 4) % 2][(i / 2) % 2][cl];
    cudaFuncAttributes fa;
    e = cudaFuncGetAttributes(&fa, k);
    if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction) {
      snprintf(err->msg, sizeof err->msg,
               "%.60s (sm_%d%d): this gradspec has no code for it; rebuild with -DCMAKE_CUDA_ARCHITECTURES=%d%d",
               prop.name, prop.major, prop.minor, prop.major, prop.minor);
      err->arg = 0;
      cudaGetLastError();
      return GS_ERR_NO_DEVICE;
    }
    if (e == cudaSuccess && fa.sharedSizeBytes > static_max) static_max = fa.sharedSizeBytes;
    if (e == cudaSuccess)
      e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, d.smem_optin - (int)fa.sharedSizeBytes);
    if (e == cudaSuccess && cl && d.clusters)
      e = cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaFuncSetAttribute");
  }
  for (int i = 0; i < 6; i++) {
    const bool cl = i % 2;
    const void *k = (const void *)reg_kernels[i / 2][cl];
    e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, reg_smem_bytes[i / 2]);
    if (e == cudaSuccess && cl && d.clusters)
      e = cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaFuncSetAttribute");
  }
  d.auto_chunk = ((int64_t)prop.sharedMemPerMultiprocessor / kAutoCtasPerSm - (int64_t)prop.reservedSharedMemPerBlock -
                  (int64_t)static_max) / 1024 * 1024;
  if (d.auto_chunk < 16384) d.auto_chunk = 16384;  // never 0 or less, on a GPU with little shared memory per SM
  e = cudaMalloc(&d.ctrl, sizeof(Ctrl));
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaMalloc(control block)");
  gs_cuda_account((long long)sizeof(Ctrl));
  Ctrl init;
  memset(&init, 0, sizeof init);
  init.bad_row = ~0ull;
  init.report_row = -1;
  e = cudaMemcpy(d.ctrl, &init, sizeof init, cudaMemcpyHostToDevice);
  void *rep = nullptr;
  if (e == cudaSuccess) e = cudaHostAlloc(&rep, 3 * sizeof(long long), cudaHostAllocMapped);
  if (e == cudaSuccess) e = cudaHostGetDevicePointer((void **)&d.report_dev, rep, 0);
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "control block");
  d.report = (volatile long long *)rep;
  d.report[2] = 0;
  d.ready = true;
  return GS_OK;
}

// Lets a launch start while the kernel before it in the stream still runs
// (programmatic dependent launch, sm_90 and newer): it waits for that
// kernel with prep_done_wait. attr has room for one more attribute.
void allow_early_start(cudaLaunchConfig_t &cfg, cudaLaunchAttribute *attr) {
  attr[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[cfg.numAttrs].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs++;
}

// A launch of pl: K CTAs per cluster when pl.k > 1, no cluster attribute
// (plain CTAs, any GPU) when pl.k == 1.
void launch_config(cudaLaunchConfig_t &cfg, cudaLaunchAttribute *attr, const Plan &pl, unsigned grid) {
  cfg = cudaLaunchConfig_t{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(pl.threads);
  cfg.dynamicSmemBytes = pl.smem;
  cfg.stream = 0;
  if (pl.k > 1) {
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = pl.k;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
}

RowKernel kernel_for(int dt, const Plan &pl, bool gen) {
  if (pl.kind == PLAN_REGISTER) return reg_kernels[dt][pl.k > 1];
  return kernels[dt][pl.resident][gen][pl.k > 1];
}

// after_prep: the call launched ce_prep just before, on a GPU with
// programmatic dependent launch (sm_90+): the row kernel may start while
// the scan runs (it waits for it before reading the control block).
cudaError_t launch_rows(RowKernel kern, const Plan &pl, Params p, int64_t *nclusters, bool after_prep) {
  // The register kernel has no loop over rows: one cluster per row, always
  // (choose_plan keeps n * K within a grid).
  int64_t cap = pl.kind == PLAN_REGISTER ? p.n : INT_MAX / pl.k;
  if (pl.kind != PLAN_REGISTER) {
    // Double-buffered CTAs are persistent: one wave, each looping over rows.
    if (pl.nbuf == 2 && pl.max_clusters > 0 && pl.max_clusters < cap) cap = pl.max_clusters;
    if (g_tune.grid_cap > 0 && g_tune.grid_cap < cap) cap = g_tune.grid_cap;
    // A negative cap: -c times the clusters that are resident at once (c waves).
    if (g_tune.grid_cap < 0 && pl.max_clusters > 0 && (int64_t)pl.max_clusters * -g_tune.grid_cap < cap)
      cap = (int64_t)pl.max_clusters * -g_tune.grid_cap;
  }
  *nclusters = p.n < cap ? p.n : cap;
  cudaLaunchConfig_t cfg;
  cudaLaunchAttribute attr[2];
  launch_config(cfg, attr, pl, (unsigned)(*nclusters * pl.k));
  if (after_prep) allow_early_start(cfg, attr);
  void *args[1] = {&p};
  return cudaLaunchKernelExC(&cfg, (const void *)kern, args);
}

// How many clusters (CTAs when pl.k == 1) of pl can be resident at once; 0
// when none can.
int schedulable(const DevState &d, RowKernel kern, const Plan &pl) {
  int nc = 0;
  cudaError_t e;
  if (pl.k > 1) {
    cudaLaunchConfig_t cfg;
    cudaLaunchAttribute attr[1];
    launch_config(cfg, attr, pl, (unsigned)pl.k);
    e = cudaOccupancyMaxActiveClusters(&nc, (const void *)kern, &cfg);
  } else {
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nc, (const void *)kern, pl.threads, pl.smem);
    nc *= d.sms;
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return nc;
}

int threads_for(int64_t chunk, int vec) {
  if (g_tune.threads) return g_tune.threads;
  // About 16 vectors per thread: enough work per thread, and 256 threads
  // for a 64 KB chunk (3 such CTAs per SM).
  int64_t nvec = (chunk + vec - 1) / vec;
  int64_t t = ((nvec + 15) / 16 + 31) / 32 * 32;
  if (t < 32) t = 32;
  if (t > kMaxThreads) t = kMaxThreads;
  return (int)t;
}

// A plan of k CTAs per row (fewer when rounding the chunk to whole vectors
// leaves the last ones empty).
Plan make_plan(int64_t v, int esize, int vec, bool resident, int64_t k, int nbuf = 1) {
  Plan pl;
  int64_t chunk = (v + k - 1) / k;
  chunk = (chunk + vec - 1) / vec * vec;
  pl.k = (int)((v + chunk - 1) / chunk);
  pl.chunk = chunk;
  pl.threads = threads_for(chunk, vec);
  pl.resident = resident;
  pl.nbuf = resident ? nbuf : 1;
  pl.smem = resident ? (size_t)(chunk * esize * pl.nbuf) : 0;
  pl.max_clusters = 0;
  pl.kind = !resident ? (pl.k > 1 ? PLAN_STREAMING_CLUSTER : PLAN_STREAMING)
            : pl.nbuf == 2 ? PLAN_RESIDENT_PREFETCH
            : pl.k > 1     ? PLAN_RESIDENT_CLUSTER
                           : PLAN_RESIDENT;
  return pl;
}

const char *dtype_name(int dt) { return dt == 0 ? "f32" : dt == 1 ? "bf16" : "f16"; }

// The register plan for rows of v columns: the fewest CTAs (at least
// k_at_least) whose registers and shared memory hold the row, one per row
// where clusters are off. The fewest, even where more would keep more CTAs
// resident (a cluster takes K slots of one GPC, and slots that K does not
// divide stay empty): on the H200 f32 8192 x 128256 ran 1.15 times the copy
// at K = 5 (235 CTAs resident), 1.25 at K = 8 (240). False when the row
// needs more than 16 CTAs, more than one without clusters, or the plan
// cannot be scheduled.
bool reg_plan(const DevState &d, int dt, int64_t v, int64_t k_at_least, Plan *out) {
  const int vec = dt == 0 ? 4 : 8;
  int64_t k = (v + reg_cols[dt] - 1) / reg_cols[dt];
  if (k < k_at_least) k = k_at_least;
  int64_t chunk = (v + k - 1) / k;
  chunk = (chunk + vec - 1) / vec * vec;
  k = (v + chunk - 1) / chunk;
  if (k > kRegMaxCluster || (k > 1 && !d.clusters)) return false;
  Plan pl;
  pl.kind = PLAN_REGISTER;
  pl.k = (int)k;
  pl.chunk = chunk;
  pl.threads = kRegThreads;
  pl.smem = (size_t)(dt == 0   ? reg_smem_for<float>(chunk)
                     : dt == 1 ? reg_smem_for<__nv_bfloat16>(chunk)
                               : reg_smem_for<__half>(chunk));
  pl.resident = true;
  pl.nbuf = 1;
  pl.max_clusters = schedulable(d, reg_kernels[dt][k > 1], pl);
  *out = pl;
  return pl.max_clusters > 0;
}

// The plan forced by GRADSPEC_CUDA_PLAN or gs_ce_cuda_force_plan, for
// specs that reach every plan on small inputs: clusters of up to 4 CTAs,
// one CTA otherwise. A plan the device or the row cannot take is an error,
// never another plan in silence.
gs_status forced_plan(const DevState &d, int dt, bool gen, int64_t v, Plan *out, gs_error *err) {
  const int esize = dt == 0 ? 4 : 2, vec = 16 / esize;
  const int f = g_force;
  const char *name = kCounterNames[f];
  if (f == PLAN_REGISTER) {
    err->arg = 0;
    if (gen) {
      snprintf(err->msg, sizeof err->msg,
               "CUDA plan register runs the hot kernel only: a call with softcap, entropy or class weights "
               "needs the general kernel of another plan");
      return GS_ERR_ARG;
    }
    const int64_t nvec = (v + vec - 1) / vec;
    if (!reg_plan(d, dt, v, d.clusters ? (nvec < 4 ? nvec : 4) : 1, out)) {
      snprintf(err->msg, sizeof err->msg,
               "CUDA plan register holds %d %s columns per CTA and %s: V = %lld does not fit", reg_cols[dt],
               dtype_name(dt), d.clusters ? "16 CTAs per row" : "one CTA per row without clusters", (long long)v);
      return GS_ERR_ARG;
    }
    return GS_OK;
  }
  const bool cl = f == PLAN_RESIDENT_CLUSTER || f == PLAN_STREAMING_CLUSTER;
  const bool res = f != PLAN_STREAMING && f != PLAN_STREAMING_CLUSTER;
  err->arg = 0;
  if (cl && !d.clusters) {
    snprintf(err->msg, sizeof err->msg, "CUDA plan %s needs thread-block clusters, %s", name,
             d.portable ? "which GRADSPEC_CUDA_PORTABLE=1 turns off"
                        : "which need a GPU of compute capability 9.0 or newer");
    return GS_ERR_ARG;
  }
  const int64_t nvec = (v + vec - 1) / vec;
  int64_t k = 1;
  if (cl) k = nvec < 4 ? nvec : 4;
  Plan pl = make_plan(v, esize, vec, res, k, f == PLAN_RESIDENT_PREFETCH ? 2 : 1);
  if (!res && g_tune.threads == 0) pl.threads = kMaxThreads;
  if (cl && pl.k < 2) {
    snprintf(err->msg, sizeof err->msg, "CUDA plan %s splits a row in chunks of %d %s columns: V = %lld is too narrow",
             name, vec, dtype_name(dt), (long long)v);
    return GS_ERR_ARG;
  }
  if (res && pl.smem + 512 > (size_t)d.smem_optin) {
    snprintf(err->msg, sizeof err->msg,
             "CUDA plan %s: a chunk of %zu bytes (V = %lld %s) does not fit in the %d bytes of shared memory", name,
             pl.smem, (long long)v, dtype_name(dt), d.smem_optin);
    return GS_ERR_ARG;
  }
  pl.max_clusters = schedulable(d, kernels[dt][res][gen][cl], pl);
  if (pl.max_clusters == 0) {
    snprintf(err->msg, sizeof err->msg, "CUDA plan %s (K = %d, %zu bytes of shared memory) cannot be scheduled here",
             name, pl.k, pl.smem);
    return GS_ERR_ARG;
  }
  *out = pl;
  return GS_OK;
}

// The automatic plan. Without clusters (below sm_90, or
// GRADSPEC_CUDA_PORTABLE=1) every plan has one CTA per row: resident where
// the row fits in shared memory, streaming otherwise.
Plan choose_plan(const DevState &d, int dt, bool gen, int64_t v, bool whole, int64_t n) {
  const int esize = dt == 0 ? 4 : 2, vec = 16 / esize;
  // The register plan, for the hot kernel on rows of whole aligned vectors,
  // where a row takes at most 16 CTAs (one without clusters), at least as
  // many CTAs as SMs can run at once (two per SM without clusters), and
  // n * K stays within a grid. Measured fastest (docs/cuda-speed.md).
  if (!gen && whole && (g_tune.mode == 0 || g_tune.mode == 4)) {
    Plan pl;
    // Benchmark (gs_ce_cuda_tune mode 4 with max_cluster): at least that K.
    const int64_t k_at_least = g_tune.mode == 4 && g_tune.max_cluster > 0 ? g_tune.max_cluster : 1;
    if (reg_plan(d, dt, v, k_at_least, &pl) && n <= INT_MAX / pl.k &&
        (int64_t)pl.max_clusters * pl.k >= (int64_t)d.sms * (pl.k > 1 ? 1 : 2))
      return pl;
  }
  const int64_t rowbytes = v * esize;
  int max_k = g_tune.max_cluster > 0 ? g_tune.max_cluster : kAutoMaxCluster;
  if (max_k > 16) max_k = 16;
  if (!d.clusters) max_k = 1;
  auto first_k = [&](int64_t target) {
    int64_t k = (rowbytes + target - 1) / target;
    return k < 1 ? (int64_t)1 : k > max_k ? (int64_t)max_k : k;
  };
  if (g_tune.mode != 2) {
    // Resident: chunks of about the target size, more CTAs per row when that
    // does not fit or schedule.
    const int nbuf = g_tune.mode == 1 ? 1 : g_tune.mode == 3 ? 2 : kAutoBuffers;
    const int64_t target = g_tune.chunk_bytes > 0 ? g_tune.chunk_bytes : d.auto_chunk;
    auto try_k = [&](int64_t k, Plan *out) {
      Plan pl = make_plan(v, esize, vec, true, k, nbuf);
      if (pl.smem + 512 > (size_t)d.smem_optin) return false;
      pl.max_clusters = schedulable(d, kernel_for(dt, pl, gen), pl);
      *out = pl;
      return pl.max_clusters > 0;
    };
    Plan pl;
    const int64_t k0 = first_k(target);
    for (int64_t k = k0; k <= max_k; k++)
      if (try_k(k, &pl)) return pl;
    // Clusters above 8 are not portable: fewer, larger chunks if they fit.
    for (int64_t k = k0 - 1; k >= 1; k--)
      if (try_k(k, &pl)) return pl;
  }
  // Streaming: chunks of about 256 KB keep a CTA busy.
  const int64_t st = g_tune.mode == 2 && g_tune.chunk_bytes > 0 ? g_tune.chunk_bytes : 256 * 1024;
  Plan pl = make_plan(v, esize, vec, false, first_k(st));
  if (g_tune.threads == 0) pl.threads = kMaxThreads;
  if (pl.k > 8 && !schedulable(d, kernel_for(dt, pl, gen), pl)) {
    pl = make_plan(v, esize, vec, false, 8);
    if (g_tune.threads == 0) pl.threads = kMaxThreads;
  }
  return pl;
}

// Looks a plan up by name: its Counter, -1 for "auto", -2 when unknown
// (with the known names in err).
int plan_by_name(const char *name, const char *who, gs_error *err) {
  if (!name || !*name || strcmp(name, "auto") == 0) return -1;
  for (int i = 0; i < kPlanKinds; i++)
    if (strcmp(name, kCounterNames[i]) == 0) return i;
  err->arg = 0;
  snprintf(err->msg, sizeof err->msg, "%s: \"%.40s\" is not a CUDA plan (auto, resident, resident_cluster, "
           "resident_prefetch, streaming, streaming_cluster, register)", who, name);
  return -2;
}

void read_env_plan() {
  if (g_env_read) return;
  g_env_read = true;
  const char *v = getenv("GRADSPEC_CUDA_PLAN");
  gs_error e;
  memset(&e, 0, sizeof e);
  const int f = plan_by_name(v, "GRADSPEC_CUDA_PLAN", &e);
  if (f == -2) memcpy(g_env_error, e.msg, sizeof g_env_error);
  else g_force = f;
}

// The loss sum, launched while the row kernel runs on sm_90 and newer
// (programmatic dependent launch; ce_reduce waits for the rows' losses).
cudaError_t launch_reduce(const float *rowbuf, int64_t n, bool mean, bool zterm, const DevState *d, float *out) {
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute attr[1];
  cfg.gridDim = dim3(1);
  cfg.blockDim = dim3(1024);
  if (d->major >= 9) allow_early_start(cfg, attr);
  return cudaLaunchKernelEx(&cfg, ce_reduce, rowbuf, n, (int)mean, (int)zterm, (const Ctrl *)d->ctrl, out);
}

// Waits for the scan of call seq to write its verdict to d.report. The
// stream is asked now and then, so that a failed launch or a lost device
// ends the wait with its error instead of spinning forever.
cudaError_t wait_verdict(const DevState &d, long long seq) {
  for (unsigned spin = 1;; spin++) {
    if (d.report[2] == seq) return cudaSuccess;
    if (spin % 64 == 0) {
      const cudaError_t q = cudaStreamQuery(0);
      if (q == cudaErrorNotReady) continue;
      if (q != cudaSuccess) return q;
      // The stream is done, so the scan ran and its writes are visible.
      return d.report[2] == seq ? cudaSuccess : cudaErrorUnknown;
    }
  }
}

gs_status finish(cudaError_t e, gs_error *err, const char *what) {
  if (e != cudaSuccess) return gs_cuda_fail(err, e, what);
  return GS_OK;
}

gs_status run(const gs_ce_args *a, Op op, int backward, gs_error *err) {
  gs_status st = gs_ce_check_args(a, (gs_ce_op)op, backward, 0, err);
  if (st != GS_OK) return st;
  std::lock_guard<std::mutex> lock(g_mu);
  read_env_plan();
  if (g_env_error[0]) {
    err->arg = 0;
    memcpy(err->msg, g_env_error, sizeof g_env_error);
    return GS_ERR_ARG;
  }
  DevState *d = nullptr;
  st = init_device(&d, err);
  if (st != GS_OK) return st;

  const bool want_loss = !backward;
  const bool want_grad = backward || a->grad != nullptr;
  const bool reduced = op == OP_CE && want_loss && a->reduction != GS_REDUCE_NONE;
  const int64_t n = a->n;
  cudaError_t e;

  if (n == 0) {
    if (reduced) {
      const float r = a->reduction == GS_REDUCE_MEAN ? NAN : 0.f;
      e = cudaMemcpy(a->loss, &r, sizeof r, cudaMemcpyHostToDevice);
      return finish(e, err, "writing the loss");
    }
    return GS_OK;
  }

  Params p;
  memset(&p, 0, sizeof p);
  p.logits = a->logits;
  p.lstride = a->logits_stride;
  p.target = a->target;
  p.tgt64 = a->target_dtype == GS_I64;
  p.ignore = a->ignore_index;
  p.weight = op == OP_CE ? a->weight : nullptr;
  p.n = n;
  p.v = a->v;
  p.op = op;
  p.reduction = a->reduction;
  p.s = (float)a->logit_scale;
  p.softcap = a->softcap > 0;
  p.c = (float)a->softcap;
  p.s_over_c = p.softcap ? (float)(a->logit_scale / a->softcap) : 0.f;
  p.eps = op == OP_CE ? (float)a->label_smoothing : 0.f;
  p.lam = op == OP_CE ? (float)a->lse_square_scale : 0.f;
  p.want_loss = want_loss;
  if (want_loss) {
    p.loss = reduced ? nullptr : (float *)a->loss;
    p.lse = (float *)a->lse;
    p.zl = op == OP_CE ? (float *)a->z_loss : nullptr;
  }
  if (want_grad) {
    p.grad = a->grad;
    p.gdtype = a->grad_dtype;
    p.gstride = a->grad_stride;
    p.go = (const float *)a->grad_output;
    p.go_per_row = a->grad_output && a->grad_output_n == n && n != 1;
  }
  p.ctrl = d->ctrl;

  // The plan, before anything runs: a forced plan the device or the row
  // cannot take is an error that leaves every output untouched.
  const int dt = a->logits_dtype == GS_F32 ? 0 : a->logits_dtype == GS_BF16 ? 1 : 2;
  const bool gen = p.softcap || op == OP_ENT || p.weight;
  {
    // Chunks start at multiples of whole vectors (make_plan), so this is
    // every chunk's test: the one-pass statistics read whole aligned vectors.
    const int64_t vec = dt == 0 ? 4 : 8;
    p.whole = (uintptr_t)a->logits % 16 == 0 && a->logits_stride % vec == 0 && a->v % vec == 0;
  }
  Plan pl = {};
  if (g_force >= 0) {
    st = forced_plan(*d, dt, gen, a->v, &pl, err);
    if (st != GS_OK) return st;
  } else {
    const int key = (dt * 2 + gen) * 2 + p.whole;
    bool found = false;
    for (unsigned i = 0; i < d->nplans && i < 32; i++) {
      const PlanCache &c = d->plans[i];
      if (c.key == key && c.v == a->v && c.gen == g_tune_gen) {
        pl = c.pl;
        found = true;
        break;
      }
    }
    if (!found) {
      pl = choose_plan(*d, dt, gen, a->v, p.whole, 1);
      d->plans[d->nplans++ % 32] = PlanCache{key, a->v, g_tune_gen, pl};
    }
    // A register plan needs n * K CTAs in one grid: where these rows do not
    // fit, the plan is chosen again for them (and not cached).
    if (pl.kind == PLAN_REGISTER && n > INT_MAX / pl.k) pl = choose_plan(*d, dt, gen, a->v, p.whole, n);
  }
  p.chunk = pl.chunk;
  p.nbuf = pl.nbuf;
  p.phases = g_phases;

  float *rowbuf = nullptr;
  const size_t rowbytes = reduced ? (size_t)n * 2 * sizeof(float) : 0;
  if (reduced) {
    if (d->rowbuf_bytes < rowbytes) {
      if (d->rowbuf) cudaFree(d->rowbuf);  // synchronises: no earlier call still reads it
      d->rowbuf = nullptr;
      d->rowbuf_bytes = 0;
      e = cudaMalloc((void **)&d->rowbuf, rowbytes);
      if (e != cudaSuccess) return gs_cuda_fail(err, e, "scratch for the per-row losses");
      d->rowbuf_bytes = rowbytes;
    }
    rowbuf = d->rowbuf;
    gs_cuda_account((long long)rowbytes);
    p.rowbuf = rowbuf;
  }

  const bool prep = op != OP_ENT;
  int64_t prep_blocks = 0;
  long long pp_seq = 0;
  if (prep) {
    PrepParams pp;
    pp.target = a->target;
    pp.tgt64 = p.tgt64;
    pp.ignore = a->ignore_index;
    pp.n = n;
    pp.v = a->v;
    pp.weight = p.weight;
    pp.ctrl = d->ctrl;
    pp.host = d->report_dev;
    pp.seq = pp_seq = ++d->seq;
    prep_blocks = (n + kPrepRows - 1) / kPrepRows;
    if (prep_blocks > kPrepBlocks) prep_blocks = kPrepBlocks;
    ce_prep<<<(unsigned)prep_blocks, 256>>>(pp);
    e = cudaGetLastError();
  } else {
    e = cudaSuccess;
  }

  int64_t nclusters = 0;
  if (e == cudaSuccess) e = launch_rows(kernel_for(dt, pl, gen), pl, p, &nclusters, prep && d->major >= 9);
  if (e == cudaSuccess && reduced) e = launch_reduce(rowbuf, n, a->reduction == GS_REDUCE_MEAN, p.lam != 0.f, d,
                                                     (float *)a->loss);
  if (e == cudaSuccess) {
    snprintf(g_last_plan, sizeof g_last_plan, "%s%s K=%d chunk=%lld threads=%d smem=%zu resident=%lld%s%s",
             kCounterNames[pl.kind], gen ? "/general" : "", pl.k, (long long)pl.chunk, pl.threads, pl.smem,
             (long long)pl.max_clusters * pl.k,
             g_tune.grid_cap != 0 ? " capped" : "", g_force >= 0 ? " forced" : "");
    g_counts[pl.kind]++;
    if (gen) g_counts[PATH_GENERAL]++;
    if (prep_blocks > 1) g_counts[PATH_SCAN_MULTIBLOCK]++;
    if (!backward && p.grad && p.go_per_row) g_counts[PATH_GRAD_OUTPUT_ROWS]++;
    if (nclusters < n) g_counts[PATH_ROWS_LOOP]++;
    if (!gen && pl.nbuf == 1 && pl.kind != PLAN_REGISTER && !(p.phases & (kSkipStats | kTwoPass)))
      g_counts[p.whole ? PATH_ONE_PASS : PATH_TWO_PASS]++;
  }
  // The call returns once the scan has judged the targets, while the row
  // kernel and the sum still run: their results are ordered before any later
  // work on the stream, as a kernel launch's are. A bad target is this
  // call's error, and nothing is written.
  if (e == cudaSuccess && prep) e = wait_verdict(*d, pp_seq);
  if (rowbuf) gs_cuda_account(-(long long)rowbytes);
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "cross-entropy kernels");
  if (prep && d->report[0] >= 0) return gs_ce_target_error(err, d->report[0], d->report[1], a->v);
  return GS_OK;
}

}  // namespace

extern "C" {

gs_status gs_ce_forward_cuda(const gs_ce_args *a, gs_error *err) { return run(a, OP_CE, 0, err); }
gs_status gs_ce_backward_cuda(const gs_ce_args *a, gs_error *err) { return run(a, OP_CE, 1, err); }
gs_status gs_log_probs_forward_cuda(const gs_ce_args *a, gs_error *err) { return run(a, OP_LP, 0, err); }
gs_status gs_log_probs_backward_cuda(const gs_ce_args *a, gs_error *err) { return run(a, OP_LP, 1, err); }
gs_status gs_entropy_forward_cuda(const gs_ce_args *a, gs_error *err) { return run(a, OP_ENT, 0, err); }
gs_status gs_entropy_backward_cuda(const gs_ce_args *a, gs_error *err) { return run(a, OP_ENT, 1, err); }

// Benchmark and test hooks, not part of the contract: force a path
// (mode 0 auto, 1 resident, 2 streaming, 3 resident double-buffered, 4 the
// register plan where it holds the row), a
// chunk size in bytes, a cluster limit, a block size and a cap on the
// clusters launched (rows then loop inside); 0 keeps the default. gs_ce_cuda_last_plan says
// what the last call ran.
void gs_ce_cuda_tune(int mode, int chunk_bytes, int max_cluster, int threads, int grid_cap) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_tune.mode = mode;
  g_tune.chunk_bytes = chunk_bytes;
  g_tune.max_cluster = max_cluster;
  g_tune.threads = threads;
  g_tune.grid_cap = grid_cap;
  g_tune_gen++;
}

const char *gs_ce_cuda_last_plan(void) { return g_last_plan; }

void gs_ce_cuda_phases(int skip) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_phases = skip;
}

const char *gs_ce_cuda_plan_name(int i) { return i >= 0 && i < kCounters ? kCounterNames[i] : nullptr; }

long long gs_ce_cuda_plan_count(int i) { return i >= 0 && i < kCounters ? g_counts[i].load() : 0; }

void gs_ce_cuda_reset_plan_counts(void) {
  for (int i = 0; i < kCounters; i++) g_counts[i] = 0;
}

gs_status gs_ce_cuda_force_plan(const char *name, gs_error *err) {
  std::lock_guard<std::mutex> lock(g_mu);
  read_env_plan();
  const int f = plan_by_name(name, "gs.cuda.force_plan", err);
  if (f == -2) return GS_ERR_ARG;
  g_force = f;
  g_env_error[0] = 0;  // an explicit choice replaces a bad GRADSPEC_CUDA_PLAN
  g_tune_gen++;
  return GS_OK;
}

const char *gs_ce_cuda_forced_plan(void) {
  std::lock_guard<std::mutex> lock(g_mu);
  read_env_plan();
  return g_force >= 0 ? kCounterNames[g_force] : "auto";
}

int gs_ce_cuda_clusters(gs_error *err) {
  std::lock_guard<std::mutex> lock(g_mu);
  DevState *d = nullptr;
  if (init_device(&d, err) != GS_OK) return -1;
  return d->clusters ? 1 : 0;
}

}  // extern "C"
