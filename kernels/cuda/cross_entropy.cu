// Cross entropy, log_probs and entropy on the GPU: the contract of
// kernels/cross_entropy.h, the math of shared/LOSSES.md.
//
// One row is split into K chunks, one per CTA of a thread-block cluster
// (K = 1..8). In the resident mode a CTA copies its chunk from HBM into shared
// memory once, and every pass (max, sums, gradient) reads it from there: the
// logits are read once and the gradient written once, two passes over memory
// instead of three. The CTAs of a row combine their partial statistics
// through distributed shared memory. Rows whose chunks do not fit on chip use
// the streaming mode: the same passes, reading global memory each time.
//
// Per call: a small kernel checks the targets and sums D (the weight of the
// non-ignored rows) and the non-ignored count, so that "mean" can scale the
// fused gradient in the same pass; the row kernel; for "sum" and "mean" a
// one-block kernel that adds the per-row losses in double in a fixed order.
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <mutex>

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
};

__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
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
template <int NV>
__device__ __forceinline__ void store_grad(void *row, int gdtype, int64_t j, const float *g, int nvalid,
                                           bool aligned) {
  if (gdtype == GS_F32) {
    float *p = (float *)row + j;
    if (aligned && nvalid == NV) {
#pragma unroll
      for (int k = 0; k < NV; k += 4) *(float4 *)(p + k) = make_float4(g[k], g[k + 1], g[k + 2], g[k + 3]);
    } else {
      #pragma unroll
      for (int k = 0; k < NV; k++)
        if (k < nvalid) p[k] = g[k];
    }
  } else if (gdtype == GS_BF16) {
    __nv_bfloat16 *p = (__nv_bfloat16 *)row + j;
    if (aligned && nvalid == NV) {
      if (NV == 8) {
        *(uint4 *)p = make_uint4(pack_bf16(g[0], g[1]), pack_bf16(g[2], g[3]), pack_bf16(g[4], g[5]),
                                 pack_bf16(g[6], g[7]));
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
        *(uint4 *)p = make_uint4(pack_f16(g[0], g[1]), pack_f16(g[2], g[3]), pack_f16(g[4], g[5]),
                                 pack_f16(g[6], g[7]));
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

__device__ __forceinline__ void cluster_arrive() { asm volatile("barrier.cluster.arrive.aligned;" ::: "memory"); }
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.aligned;" ::: "memory"); }

// One CTA's statistics over its chunk, relative to its own max m (0 when the
// chunk holds only -inf): r = sum exp(z - m) without the target column,
// q = sum exp(z - m) (z - m) (entropy), wd = sum w (z - m) and ws = sum w
// (label smoothing).
struct Partial {
  float m, r, q, wd, ws;
};

// What every thread of a row needs for the gradient pass.
struct RowInfo {
  float ms;     // row max (0 for an all -inf row)
  float ap;     // CE / log_probs: dz_j = e_j * ap - bw * w_j, e_j = exp(z_j - ms)
  float bw;
  float gp;     // entropy: dz_j = e_j * gp * (qn - (z_j - ms))
  float qn;
  float dxt;    // the target column's gradient, computed without cancellation
};

// GEN = false is the hot path, compiled without softcap, entropy and class
// weights so that it fits 3 CTAs of 256 threads per SM (<= 80 registers).
template <typename T, bool RES, bool GEN>
__global__ void __launch_bounds__(kMaxThreads, GEN ? 1 : 3) ce_rows(Params p) {
  constexpr int NV = Vec<T>::N;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T *buf = reinterpret_cast<T *>(smem_raw);
  __shared__ float red[4][kMaxWarps];
  __shared__ Partial part;
  __shared__ RowInfo info;
  __shared__ float xt_sh, wt_sh;

  cg::cluster_group cl = cg::this_cluster();
  const int K = (int)cl.num_blocks();
  const int rank = (int)cl.block_rank();
  const int tid = threadIdx.x, nthr = blockDim.x;
  const int64_t nclusters = gridDim.x / K;
  const int64_t c0 = (int64_t)rank * p.chunk;
  const int clen = (int)min(p.chunk, p.v - c0);
  const int nvec = (clen + NV - 1) / NV;
  const bool is_ent = GEN && p.op == OP_ENT;
  const bool softcap = GEN && p.softcap;
  const float *weight = GEN ? p.weight : nullptr;
  const bool has_target = !is_ent;
  const bool smooth = p.op == OP_CE && p.eps > 0.f;
  const bool weighted_smooth = smooth && weight;
  const float s = p.s;
  bool pending = false;

  for (int64_t row = blockIdx.x / K; row < p.n; row += nclusters) {
    const T *xrow = (const T *)p.logits + row * p.lstride;
    const T *xc = xrow + c0;
    char *grow = p.grad ? (char *)p.grad + row * p.gstride * (p.gdtype == GS_F32 ? 4 : 2) : nullptr;
    const bool galigned = grow && ((((uintptr_t)grow) + c0 * (p.gdtype == GS_F32 ? 4 : 2)) & 15) == 0;
    const bool leader = rank == 0 && tid == 0;

    int64_t t = -1;
    bool skip = false;
    if (has_target) {
      t = load_target(p.target, p.tgt64, row);
      skip = t == p.ignore || t < 0 || t >= p.v;  // bad targets are reported by the prep kernel
    }
    if (skip) {
      if (grow) {
        const float zero[NV] = {};
        for (int vi = tid; vi < nvec; vi += nthr)
          store_grad<NV>(grow, p.gdtype, c0 + (int64_t)vi * NV, zero, min(NV, clen - vi * NV), galigned);
      }
      if (leader && p.want_loss) {
        if (p.loss) p.loss[row] = 0.f;
        if (p.rowbuf) p.rowbuf[2 * row] = p.rowbuf[2 * row + 1] = 0.f;
        if (p.lse) p.lse[row] = 0.f;
        if (p.zl) p.zl[row] = 0.f;
      }
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
    if (RES) {
      if (xaligned) {
        const int nfull = clen / NV;
        const unsigned sbase = (unsigned)__cvta_generic_to_shared(buf);
        for (int vi = tid; vi < nfull; vi += nthr)
          asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sbase + vi * 16u), "l"(xc + (int64_t)vi * NV)
                       : "memory");
        for (int j = nfull * NV + tid; j < clen; j += nthr) buf[j] = xc[j];
        asm volatile("cp.async.wait_all;\n" ::: "memory");
      } else {
        for (int j = tid; j < clen; j += nthr) buf[j] = xc[j];
      }
      __syncthreads();
    }

    auto load = [&](int vi, float *x, int nvalid) {
      if (RES) {
        if (nvalid == NV) {
          Vec<T>::cvt(*(const uint4 *)(buf + vi * NV), x);
        } else {
          #pragma unroll
          for (int k = 0; k < NV; k++)
            if (k < nvalid) x[k] = Vec<T>::one(buf, vi * NV + k);
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
    // z = s x, or c tanh(s x / c) with softcap.
    auto zof = [&](float x) { return softcap ? p.c * tanhf(x * p.s_over_c) : x * s; };
    // z - m with one rounding when there is no softcap.
    auto dof = [&](float x, float m) { return softcap ? p.c * tanhf(x * p.s_over_c) - m : fmaf(x, s, -m); };

    // Pass 1: this chunk's max. Lanes past the chunk never enter (masking
    // after the transform: a padded lane's z would not be -inf under softcap).
    float mx = -INFINITY;
    for (int vi = tid; vi < nvec; vi += nthr) {
      float x[NV];
      const int nvalid = min(NV, clen - vi * NV);
      load(vi, x, nvalid);
#pragma unroll
      for (int k = 0; k < NV; k++)
        if (k < nvalid) mx = fmaxf(mx, zof(x[k]));
    }
    const float m = block_max(mx, red);
    const float msafe = m == -INFINITY ? 0.f : m;

    // Pass 2: sums relative to this chunk's max.
    float acc[4] = {0.f, 0.f, 0.f, 0.f};  // r, q, wd, ws
    for (int vi = tid; vi < nvec; vi += nthr) {
      float x[NV];
      const int nvalid = min(NV, clen - vi * NV);
      load(vi, x, nvalid);
      const int64_t col0 = c0 + (int64_t)vi * NV;
      const bool ht = (uint64_t)(t - col0) < (uint64_t)NV;
#pragma unroll
      for (int k = 0; k < NV; k++) {
        if (k < nvalid) {
          const float d = dof(x[k], msafe);
          const float e = ex2(d * kLog2e);
          if (!(ht && col0 + k == t)) acc[0] += e;
          if (is_ent) acc[1] += e > 0.f ? e * d : 0.f;
          if (smooth) {
            const float w = weighted_smooth ? weight[col0 + k] : 1.f;
            acc[2] = fmaf(w, d, acc[2]);
            acc[3] += w;
          }
        }
      }
    }
    block_sum<4>(acc, red);

    // The last row's partial may still be read by the other CTAs until they
    // have all arrived: wait for that before overwriting it.
    if (pending) {
      cluster_wait();
      pending = false;
    }
    if (tid == 0) {
      part.m = m;
      part.r = acc[0];
      part.q = acc[1];
      part.wd = acc[2];
      part.ws = acc[3];
    }
    if (K > 1) {
      cluster_arrive();  // every partial of the cluster is visible after the wait
      cluster_wait();
    } else {
      __syncthreads();
    }

    if (tid < 32) {
      const int lane = tid;
      Partial q = {-INFINITY, 0.f, 0.f, 0.f, 0.f};
      if (lane < K) q = *(K > 1 ? cl.map_shared_rank(&part, lane) : &part);
      const float M = warp_max(q.m);
      const float Ms = M == -INFINITY ? 0.f : M;
      const float qms = q.m == -INFINITY ? 0.f : q.m;
      const float f = (lane < K && q.m != -INFINITY) ? ex2((q.m - Ms) * kLog2e) : 0.f;
      const float R = warp_sum(f * q.r);
      const float Q = warp_sum(f != 0.f ? f * (q.q + (qms - Ms) * q.r) : 0.f);
      const float WD = warp_sum(lane < K ? q.wd + (qms - Ms) * q.ws : 0.f);
      const float WS = warp_sum(lane < K ? q.ws : 0.f);

      if (lane == 0) {
        float xt = 0.f, zt = 0.f, dt = 0.f, et = 0.f;
        if (has_target) {
          xt = xt_sh;
          zt = zof(xt);
          dt = dof(xt, Ms);
          et = ex2(dt * kLog2e);
        }
        const float S = R + et;
        const float logS = logf(S);
        const float lse = Ms + logS;
        // lse - z_t: log1p keeps near-certain predictions (loss ~ 1e-10) exact.
        const float nll0 = et > 0.25f ? log1pf(R / et) : logS - dt;
        const float V = (float)p.v;
        const float W = weight ? WS : V;
        const float wt = has_target ? wt_sh : 1.f;

        // Per-row grad_output, then the "mean" divisors.
        float g = 1.f, gz = 1.f;
        if (p.grad) {
          g = p.go ? p.go[p.go_per_row ? row : 0] : 1.f;
          gz = g;
          if (p.op == OP_CE && p.reduction == GS_REDUCE_MEAN) {
            g = (float)((double)g / p.ctrl->d);
            gz = (float)((double)gz / p.ctrl->count);
          }
        }
        const float chain_t = softcap ? s * (1.f - (zt / p.c) * (zt / p.c)) : s;
        RowInfo ri;
        ri.ms = Ms;
        ri.gp = 0.f;
        ri.qn = 0.f;
        ri.bw = 0.f;
        float loss = 0.f, zl = 0.f;
        if (p.op == OP_CE) {
          const float nll = wt * nll0;
          // smo = sum_j w_j (lse - z_j) = W log S - sum_j w_j (z_j - max): two non-negative terms.
          const float smo = smooth ? W * logS - WD : 0.f;
          zl = p.lam * lse * lse;
          loss = (1.f - p.eps) * nll + (smooth ? (p.eps / V) * smo : 0.f) + zl;
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
          const float qn = Q / S;
          loss = logS - qn;
          ri.gp = g / S;
          ri.qn = qn;
          ri.ap = 0.f;
          ri.dxt = 0.f;
        }
        info = ri;
        if (leader && p.want_loss) {
          if (p.loss) p.loss[row] = loss;
          if (p.rowbuf) {
            p.rowbuf[2 * row] = loss - zl;
            p.rowbuf[2 * row + 1] = zl;
          }
          if (p.lse) p.lse[row] = lse;
          if (p.zl) p.zl[row] = zl;
        }
      }
    }
    if (K > 1) {
      cluster_arrive();  // this CTA is done reading the others' partials
      pending = true;
    }
    __syncthreads();

    if (!grow) continue;
    // Pass 3: the gradient.
    const RowInfo ri = info;
    const float ms = ri.ms;
    const float aps = ri.ap * s, bws = ri.bw * s;
    for (int vi = tid; vi < nvec; vi += nthr) {
      float x[NV], gv[NV];
      const int nvalid = min(NV, clen - vi * NV);
      load(vi, x, nvalid);
      const int64_t col0 = c0 + (int64_t)vi * NV;
#pragma unroll
      for (int k = 0; k < NV; k++) {
        float dz = 0.f, chain = s;
        if (softcap) {
          const float z = p.c * tanhf(x[k] * p.s_over_c);
          const float d = z - ms;
          const float e = ex2(d * kLog2e);
          const float u = z / p.c;
          chain = s * (1.f - u * u);
          if (is_ent) {
            dz = e > 0.f ? e * ri.gp * (ri.qn - d) : 0.f;
          } else {
            const float w = (ri.bw != 0.f && weight && k < nvalid) ? weight[col0 + k] : 1.f;
            dz = fmaf(e, ri.ap, -ri.bw * w);
          }
        } else {
          const float d = fmaf(x[k], s, -ms);
          const float e = ex2(d * kLog2e);
          if (is_ent) {
            dz = e > 0.f ? e * ri.gp * (ri.qn - d) : 0.f;
          } else {
            // The chain factor s is folded into aps and bws.
            const float w = (ri.bw != 0.f && weight && k < nvalid) ? weight[col0 + k] : 1.f;
            dz = fmaf(e, aps, -bws * w);
            chain = 1.f;
          }
        }
        gv[k] = dz * chain;
      }
      if ((uint64_t)(t - col0) < (uint64_t)NV) {
#pragma unroll
        for (int k = 0; k < NV; k++)
          if (col0 + k == t) gv[k] = ri.dxt;
      }
      store_grad<NV>(grow, p.gdtype, col0, gv, nvalid, galigned);
    }
  }
  if (pending) cluster_wait();  // our partial stays readable until every CTA has read it
}

// Targets: finds the lowest bad row, and sums D and the non-ignored count in
// double, per block and then over blocks in block order (deterministic).
struct PrepParams {
  const void *target;
  int tgt64;
  int64_t ignore, n, v;
  const float *weight;
  Ctrl *ctrl;
};

__global__ void __launch_bounds__(256) ce_prep(PrepParams p) {
  __shared__ double sd[256], sn[256];
  __shared__ bool last;
  const int tid = threadIdx.x;
  double d = 0.0, cnt = 0.0;
  long long bad = LLONG_MAX;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + tid; i < p.n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = load_target(p.target, p.tgt64, i);
    if (t == p.ignore) continue;
    if (t < 0 || t >= p.v) {
      if (i < bad) bad = i;
      continue;
    }
    d += p.weight ? (double)p.weight[t] : 1.0;
    cnt += 1.0;
  }
  if (bad != LLONG_MAX) atomicMin(&p.ctrl->bad_row, (unsigned long long)bad);
  sd[tid] = d;
  sn[tid] = cnt;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (tid < h) {
      sd[tid] += sd[tid + h];
      sn[tid] += sn[tid + h];
    }
    __syncthreads();
  }
  if (tid == 0) {
    p.ctrl->part_d[blockIdx.x] = sd[0];
    p.ctrl->part_n[blockIdx.x] = sn[0];
    __threadfence();
    last = atomicAdd(&p.ctrl->done, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (last && tid == 0) {
    __threadfence();
    volatile Ctrl *c = p.ctrl;
    double dt = 0.0, nt = 0.0;
    for (unsigned b = 0; b < gridDim.x; b++) {
      dt += c->part_d[b];
      nt += c->part_n[b];
    }
    c->d = dt;
    c->count = nt;
    const unsigned long long br = c->bad_row;
    c->report_row = br == ~0ull ? -1 : (long long)br;
    c->report_value = br == ~0ull ? 0 : (long long)load_target(p.target, p.tgt64, (int64_t)br);
    c->bad_row = ~0ull;
    c->done = 0;
  }
}

// "sum" and "mean" of the per-row losses, in double, in a fixed order.
__global__ void __launch_bounds__(1024) ce_reduce(const float *rowbuf, int64_t n, int mean, int zterm,
                                                  const Ctrl *ctrl, float *out) {
  __shared__ double sa[1024], sb[1024];
  const int tid = threadIdx.x;
  double a = 0.0, b = 0.0;
  for (int64_t i = tid; i < n; i += blockDim.x) {
    a += rowbuf[2 * i];
    b += rowbuf[2 * i + 1];
  }
  sa[tid] = a;
  sb[tid] = b;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (tid < h) {
      sa[tid] += sa[tid + h];
      sb[tid] += sb[tid + h];
    }
    __syncthreads();
  }
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
  int mode = 0;          // 0 auto, 1 resident, 2 streaming
  int chunk_bytes = 0;   // 0: default
  int max_cluster = 0;   // 0: default (8)
  int threads = 0;       // 0: from the chunk size
};

struct Plan {
  int k;
  int64_t chunk;
  int threads;
  size_t smem;
  bool resident;
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
  bool pools = false;
  Ctrl *ctrl = nullptr;
  long long *report = nullptr;  // pinned host: row, value
};

std::mutex g_mu;
Tune g_tune;
unsigned g_tune_gen = 1;
DevState g_dev[16];
char g_last_plan[160];

// kernels[dtype][resident][general]; dtype 0 f32, 1 bf16, 2 f16.
typedef void (*RowKernel)(Params);
const RowKernel kernels[3][2][2] = {
    {{ce_rows<float, false, false>, ce_rows<float, false, true>},
     {ce_rows<float, true, false>, ce_rows<float, true, true>}},
    {{ce_rows<__nv_bfloat16, false, false>, ce_rows<__nv_bfloat16, false, true>},
     {ce_rows<__nv_bfloat16, true, false>, ce_rows<__nv_bfloat16, true, true>}},
    {{ce_rows<__half, false, false>, ce_rows<__half, false, true>},
     {ce_rows<__half, true, false>, ce_rows<__half, true, true>}},
};

gs_status init_device(DevState **out, gs_error *err) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "no CUDA device");
  if (dev < 0 || dev >= 16) return gs_cuda_fail(err, cudaErrorInvalidDevice, "device index");
  DevState &d = g_dev[dev];
  *out = &d;
  if (d.ready) return GS_OK;
  cudaDeviceProp prop;
  e = cudaGetDeviceProperties(&prop, dev);
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaGetDeviceProperties");
  if (prop.major < 9) {
    snprintf(err->msg, sizeof err->msg, "%.100s is sm_%d%d: these kernels are built for sm_90 (clusters)",
             prop.name, prop.major, prop.minor);
    err->arg = 0;
    return GS_ERR_NO_DEVICE;
  }
  d.smem_optin = (int)prop.sharedMemPerBlockOptin;
  int pools = 0;
  cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, dev);
  d.pools = pools != 0;
  for (int i = 0; i < 12; i++) {
    const void *k = (const void *)kernels[i / 4][(i / 2) % 2][i % 2];
    cudaFuncAttributes fa;
    e = cudaFuncGetAttributes(&fa, k);
    if (e == cudaSuccess)
      e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, d.smem_optin - (int)fa.sharedSizeBytes);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaFuncSetAttribute");
  }
  e = cudaMalloc(&d.ctrl, sizeof(Ctrl));
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaMalloc(control block)");
  gs_cuda_account((long long)sizeof(Ctrl));
  Ctrl init;
  memset(&init, 0, sizeof init);
  init.bad_row = ~0ull;
  init.report_row = -1;
  e = cudaMemcpy(d.ctrl, &init, sizeof init, cudaMemcpyHostToDevice);
  if (e == cudaSuccess) e = cudaHostAlloc(&d.report, 2 * sizeof(long long), cudaHostAllocDefault);
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "control block");
  d.ready = true;
  return GS_OK;
}

void cluster_config(cudaLaunchConfig_t &cfg, cudaLaunchAttribute *attr, const Plan &pl, unsigned grid) {
  cfg = cudaLaunchConfig_t{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(pl.threads);
  cfg.dynamicSmemBytes = pl.smem;
  cfg.stream = 0;
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = pl.k;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
}

cudaError_t launch_rows(RowKernel kern, const Plan &pl, Params p) {
  const int64_t cap = INT_MAX / pl.k;
  const int64_t nclusters = p.n < cap ? p.n : cap;
  cudaLaunchConfig_t cfg;
  cudaLaunchAttribute attr[1];
  cluster_config(cfg, attr, pl, (unsigned)(nclusters * pl.k));
  void *args[1] = {&p};
  return cudaLaunchKernelExC(&cfg, (const void *)kern, args);
}

bool schedulable(RowKernel kern, const Plan &pl) {
  cudaLaunchConfig_t cfg;
  cudaLaunchAttribute attr[1];
  cluster_config(cfg, attr, pl, (unsigned)pl.k);
  int nc = 0;
  cudaError_t e = cudaOccupancyMaxActiveClusters(&nc, (const void *)kern, &cfg);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return nc > 0;
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
Plan make_plan(int64_t v, int esize, int vec, bool resident, int64_t k) {
  Plan pl;
  int64_t chunk = (v + k - 1) / k;
  chunk = (chunk + vec - 1) / vec * vec;
  pl.k = (int)((v + chunk - 1) / chunk);
  pl.chunk = chunk;
  pl.threads = threads_for(chunk, vec);
  pl.resident = resident;
  pl.smem = resident ? (size_t)(chunk * esize) : 0;
  return pl;
}

Plan choose_plan(const DevState &d, int dt, bool gen, int64_t v) {
  const int esize = dt == 0 ? 4 : 2, vec = 16 / esize;
  const int64_t rowbytes = v * esize;
  int max_k = g_tune.max_cluster > 0 ? g_tune.max_cluster : 8;
  if (max_k > 16) max_k = 16;
  auto first_k = [&](int64_t target) {
    int64_t k = (rowbytes + target - 1) / target;
    return k < 1 ? (int64_t)1 : k > max_k ? (int64_t)max_k : k;
  };
  if (g_tune.mode != 2) {
    // Resident: chunks of about the target size (64 KB: three CTAs per SM),
    // more CTAs per row when that does not fit or schedule.
    const int64_t target = g_tune.chunk_bytes > 0 ? g_tune.chunk_bytes : 64 * 1024;
    for (int64_t k = first_k(target); k <= max_k; k++) {
      Plan pl = make_plan(v, esize, vec, true, k);
      if (pl.smem + 512 <= (size_t)d.smem_optin && schedulable(kernels[dt][1][gen], pl)) return pl;
    }
  }
  // Streaming: chunks of about 256 KB keep a CTA busy.
  const int64_t st = g_tune.mode == 2 && g_tune.chunk_bytes > 0 ? g_tune.chunk_bytes : 256 * 1024;
  Plan pl = make_plan(v, esize, vec, false, first_k(st));
  if (g_tune.threads == 0) pl.threads = kMaxThreads;
  if (pl.k > 8 && !schedulable(kernels[dt][0][gen], pl)) {
    pl = make_plan(v, esize, vec, false, 8);
    if (g_tune.threads == 0) pl.threads = kMaxThreads;
  }
  return pl;
}

gs_status finish(cudaError_t e, gs_error *err, const char *what) {
  if (e != cudaSuccess) return gs_cuda_fail(err, e, what);
  return GS_OK;
}

gs_status run(const gs_ce_args *a, Op op, int backward, gs_error *err) {
  gs_status st = gs_ce_check_args(a, (gs_ce_op)op, backward, 0, err);
  if (st != GS_OK) return st;
  std::lock_guard<std::mutex> lock(g_mu);
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

  float *rowbuf = nullptr;
  const size_t rowbytes = reduced ? (size_t)n * 2 * sizeof(float) : 0;
  if (reduced) {
    e = d->pools ? cudaMallocAsync((void **)&rowbuf, rowbytes, 0) : cudaMalloc((void **)&rowbuf, rowbytes);
    if (e != cudaSuccess) return gs_cuda_fail(err, e, "scratch for the per-row losses");
    gs_cuda_account((long long)rowbytes);
    p.rowbuf = rowbuf;
  }

  const bool prep = op != OP_ENT;
  if (prep) {
    PrepParams pp;
    pp.target = a->target;
    pp.tgt64 = p.tgt64;
    pp.ignore = a->ignore_index;
    pp.n = n;
    pp.v = a->v;
    pp.weight = p.weight;
    pp.ctrl = d->ctrl;
    int64_t blocks = (n + 4095) / 4096;
    if (blocks > kPrepBlocks) blocks = kPrepBlocks;
    ce_prep<<<(unsigned)blocks, 256>>>(pp);
    e = cudaGetLastError();
  } else {
    e = cudaSuccess;
  }

  Plan pl = {};
  if (e == cudaSuccess) {
    const int dt = a->logits_dtype == GS_F32 ? 0 : a->logits_dtype == GS_BF16 ? 1 : 2;
    const bool gen = p.softcap || op == OP_ENT || p.weight;
    const int key = dt * 2 + gen;
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
      pl = choose_plan(*d, dt, gen, a->v);
      d->plans[d->nplans++ % 32] = PlanCache{key, a->v, g_tune_gen, pl};
    }
    p.chunk = pl.chunk;
    snprintf(g_last_plan, sizeof g_last_plan, "%s%s K=%d chunk=%lld threads=%d smem=%zu",
             pl.resident ? "resident" : "streaming", gen ? "/general" : "", pl.k, (long long)pl.chunk,
             pl.threads, pl.smem);
    e = launch_rows(kernels[dt][pl.resident][gen], pl, p);
  }
  if (e == cudaSuccess && reduced) {
    ce_reduce<<<1, 1024>>>(rowbuf, n, a->reduction == GS_REDUCE_MEAN, p.lam != 0.f, d->ctrl, (float *)a->loss);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess && prep)
    e = cudaMemcpyAsync(d->report, &d->ctrl->report_row, 2 * sizeof(long long), cudaMemcpyDeviceToHost, 0);
  if (rowbuf) {
    cudaError_t e2 = d->pools ? cudaFreeAsync(rowbuf, 0) : cudaFree(rowbuf);
    gs_cuda_account(-(long long)rowbytes);
    if (e == cudaSuccess) e = e2;
  }
  cudaError_t es = cudaStreamSynchronize(0);
  if (e == cudaSuccess) e = es;
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
// (mode 0 auto, 1 resident, 2 streaming), a chunk size in bytes, a cluster
// limit and a block size; 0 keeps the default. gs_ce_cuda_last_plan says
// what the last call ran.
void gs_ce_cuda_tune(int mode, int chunk_bytes, int max_cluster, int threads) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_tune.mode = mode;
  g_tune.chunk_bytes = chunk_bytes;
  g_tune.max_cluster = max_cluster;
  g_tune.threads = threads;
  g_tune_gen++;
}

const char *gs_ce_cuda_last_plan(void) { return g_last_plan; }

}  // extern "C"
