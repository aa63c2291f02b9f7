// The vocab-parallel passes on the GPU (kernels/vocab_parallel.h): one
// block per row for the passes that read the logits (MAX, TERMS with
// smoothing or entropy, GRAD), one thread per row for those that do not.
// Same math as kernels/cpu/vocab_parallel_rows.h, in f32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>

#include "cross_entropy_check.h"
#include "vocab_parallel.h"

namespace {

constexpr int kThreads = 512;

__device__ __forceinline__ float vp_y(const gs_vp_args &a, int64_t i, int64_t j) {
  int64_t k = i * a.logits_stride + j;
  float x;
  switch (a.logits_dtype) {
  case GS_F32: x = static_cast<const float *>(a.logits)[k]; break;
  case GS_BF16: x = __bfloat162float(static_cast<const __nv_bfloat16 *>(a.logits)[k]); break;
  default: x = __half2float(static_cast<const __half *>(a.logits)[k]); break;
  }
  // __fmul_rn: never fused into a later subtraction, so every pass sees the same z
  return __fmul_rn(static_cast<float>(a.logit_scale), x);
}

__device__ __forceinline__ float vp_z_of(const gs_vp_args &a, float y) {
  return a.softcap > 0 ? static_cast<float>(a.softcap) * tanhf(y / static_cast<float>(a.softcap)) : y;
}

__device__ __forceinline__ float vp_chain(const gs_vp_args &a, float y) {
  if (a.softcap <= 0) return static_cast<float>(a.logit_scale);
  float ch = coshf(y / static_cast<float>(a.softcap));
  return static_cast<float>(a.logit_scale) / (ch * ch);
}

__device__ __forceinline__ float *vp_stat(const gs_vp_args &a, int k) { return static_cast<float *>(a.stat) + k * a.n; }

// -1: another shard owns the target; -2: the row is ignored.
__device__ __forceinline__ int64_t vp_local_target(const gs_vp_args &a, int64_t i) {
  if (!a.target) return -1;
  int64_t t = a.target_dtype == GS_I32 ? static_cast<const int32_t *>(a.target)[i] : static_cast<const int64_t *>(a.target)[i];
  if (t == a.ignore_index) return -2;
  t -= a.vocab_start;
  return t >= 0 && t < a.v ? t : -1;
}

__device__ __forceinline__ void vp_grad_put(const gs_vp_args &a, int64_t i, int64_t j, float g) {
  int64_t k = i * a.grad_stride + j;
  switch (a.grad_dtype) {
  case GS_F32: static_cast<float *>(a.grad)[k] = g; break;
  case GS_BF16: static_cast<__nv_bfloat16 *>(a.grad)[k] = __float2bfloat16_rn(g); break;
  default: static_cast<__half *>(a.grad)[k] = __float2half_rn(g); break;
  }
}

// Rows of 2-byte logits (and gradients) that start on 16-byte boundaries
// are read (and written) 8 elements at a time: one 16-byte access per
// thread instead of eight 2-byte ones. The last v % 8 columns go one by one.
__device__ __forceinline__ bool vp_aligned16(const void *p, int64_t stride, gs_dtype d) {
  return (d == GS_BF16 || d == GS_F16) && (reinterpret_cast<uintptr_t>(p) & 15) == 0 && stride % 8 == 0;
}

__device__ __forceinline__ void vp_unpack8(uint4 raw, gs_dtype d, float out[8]) {
  const unsigned short *h = reinterpret_cast<const unsigned short *>(&raw);
#pragma unroll
  for (int k = 0; k < 8; k++) {
    out[k] = d == GS_BF16 ? __bfloat162float(__ushort_as_bfloat16(h[k])) : __half2float(__ushort_as_half(h[k]));
  }
}

__device__ __forceinline__ uint4 vp_pack8(const float in[8], gs_dtype d) {
  uint4 raw;
  unsigned short *h = reinterpret_cast<unsigned short *>(&raw);
#pragma unroll
  for (int k = 0; k < 8; k++) {
    h[k] = d == GS_BF16 ? __bfloat16_as_ushort(__float2bfloat16_rn(in[k])) : __half_as_ushort(__float2half_rn(in[k]));
  }
  return raw;
}

// (m, s): a max and the sum of exp(z - m) over the other elements seen.
struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum merge(MaxSum x, MaxSum y) {
  if (y.m == -INFINITY) return x;
  if (x.m == -INFINITY) return y;
  if (x.m == y.m) return {x.m, x.s + y.s + 1};  // the second max counts as exp(0)
  if (x.m > y.m) return {x.m, x.s + expf(y.m - x.m) * (y.s + 1)};
  return {y.m, y.s + expf(x.m - y.m) * (x.s + 1)};
}

template <typename V, typename F>
__device__ V block_reduce(V v, F f) {
  __shared__ V shared[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    V other;
    if constexpr (sizeof(V) == 8) {
      unsigned long long bits = *reinterpret_cast<unsigned long long *>(&v);
      bits = __shfl_down_sync(0xffffffffu, bits, o);
      other = *reinterpret_cast<V *>(&bits);
    } else {
      other = __shfl_down_sync(0xffffffffu, v, o);
    }
    v = f(v, other);
  }
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  int warps = (blockDim.x + 31) >> 5;
  if (warp == 0) {
    v = lane < warps ? shared[lane] : shared[0];
    bool real = lane < warps;
    for (int o = 16; o > 0; o >>= 1) {
      V other;
      bool other_real = __shfl_down_sync(0xffffffffu, real, o);
      if constexpr (sizeof(V) == 8) {
        unsigned long long bits = *reinterpret_cast<unsigned long long *>(&v);
        bits = __shfl_down_sync(0xffffffffu, bits, o);
        other = *reinterpret_cast<V *>(&bits);
      } else {
        other = __shfl_down_sync(0xffffffffu, v, o);
      }
      if (real && other_real && lane + o < 32) v = f(v, other);
    }
  }
  return v;  // valid in thread 0
}

__global__ void vp_max_kernel(gs_vp_args a) {
  int64_t i = blockIdx.x;
  MaxSum acc = {-INFINITY, 0.f};
  int bad = 0;
  auto see = [&](float z) {
    if (isnan(z) || z == INFINITY) bad = 1;
    else if (z > acc.m) {
      acc.s = acc.m == -INFINITY ? 0.f : (acc.s + 1) * expf(acc.m - z);
      acc.m = z;
    } else if (z != -INFINITY) {
      acc.s += expf(z - acc.m);
    }
  };
  if (vp_local_target(a, i) != -2) {
    int64_t first = 0;
    if (vp_aligned16(a.logits, a.logits_stride, a.logits_dtype)) {
      const uint4 *row = reinterpret_cast<const uint4 *>(static_cast<const unsigned short *>(a.logits) + i * a.logits_stride);
      int64_t vecs = a.v / 8;
      for (int64_t k = threadIdx.x; k < vecs; k += blockDim.x) {
        float x[8];
        vp_unpack8(row[k], a.logits_dtype, x);
#pragma unroll
        for (int e = 0; e < 8; e++) see(vp_z_of(a, __fmul_rn(static_cast<float>(a.logit_scale), x[e])));
      }
      first = vecs * 8;
    }
    for (int64_t j = first + threadIdx.x; j < a.v; j += blockDim.x) see(vp_z_of(a, vp_y(a, i, j)));
  }
  acc = block_reduce(acc, merge);
  bad = block_reduce(bad, [](int x, int y) { return x | y; });
  if (threadIdx.x == 0) {
    float m = bad ? INFINITY : acc.m;
    vp_stat(a, GS_VP_M_LOCAL)[i] = m;
    vp_stat(a, GS_VP_M)[i] = m;
    vp_stat(a, GS_VP_REST)[i] = acc.s;
  }
}

__global__ void vp_sums_kernel(gs_vp_args a) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= a.n) return;
  float M = vp_stat(a, GS_VP_M)[i], ml = vp_stat(a, GS_VP_M_LOCAL)[i], s = vp_stat(a, GS_VP_REST)[i];
  bool tie = isfinite(M) && ml == M;
  float rest = 0;
  if (tie) rest = s;
  else if (isfinite(M) && ml != -INFINITY) rest = expf(ml - M) * (1 + s);
  vp_stat(a, GS_VP_REST)[i] = rest;
  vp_stat(a, GS_VP_TIES)[i] = tie ? 1.f : 0.f;
}

__global__ void vp_terms_kernel(gs_vp_args a, int want_smooth, int want_mu) {
  int64_t i = blockIdx.x;
  float M = vp_stat(a, GS_VP_M)[i];
  float l = isfinite(M) ? log1pf(vp_stat(a, GS_VP_REST)[i] + (vp_stat(a, GS_VP_TIES)[i] - 1)) : NAN;
  int64_t t = vp_local_target(a, i);
  float smooth = 0, mu = 0;
  if (t != -2 && (want_smooth || want_mu)) {
    for (int64_t j = threadIdx.x; j < a.v; j += blockDim.x) {
      float d = vp_z_of(a, vp_y(a, i, j)) - M;
      if (want_smooth) smooth += (a.weight ? a.weight[j] : 1.f) * (l - d);
      if (want_mu) {
        float p = expf(d - l);
        if (p != 0) mu += p * d;
      }
    }
    auto add = [](float x, float y) { return x + y; };
    smooth = block_reduce(smooth, add);
    mu = block_reduce(mu, add);
  }
  if (threadIdx.x == 0) {
    float tz = 0, wt = 0;
    if (t >= 0) {
      tz = (vp_z_of(a, vp_y(a, i, t)) - M) - l;
      wt = a.weight ? a.weight[t] : 1.f;
    }
    vp_stat(a, GS_VP_L)[i] = l;
    vp_stat(a, GS_VP_TZ)[i] = tz;
    vp_stat(a, GS_VP_WT)[i] = wt;
    vp_stat(a, GS_VP_SMOOTH)[i] = t == -2 ? 0.f : smooth;
    vp_stat(a, GS_VP_MU)[i] = t == -2 ? 0.f : mu;
  }
}

__global__ void vp_grad_kernel(gs_vp_args a) {
  int64_t i = blockIdx.x;
  int64_t t = vp_local_target(a, i);
  if (t == -2) {
    for (int64_t j = threadIdx.x; j < a.v; j += blockDim.x) vp_grad_put(a, i, j, 0.f);
    return;
  }
  float M = vp_stat(a, GS_VP_M)[i], l = vp_stat(a, GS_VP_L)[i], wt = vp_stat(a, GS_VP_WT)[i];
  float mu = vp_stat(a, GS_VP_MU)[i], g = vp_stat(a, GS_VP_G)[i], gz = vp_stat(a, GS_VP_GZ)[i];
  float eps = static_cast<float>(a.label_smoothing);
  float smooth = static_cast<float>(a.label_smoothing / static_cast<double>(a.vocab_total));
  float zl = static_cast<float>(2 * a.lse_square_scale) * (M + l), wsum = static_cast<float>(a.wsum);
  auto grad_of = [&](int64_t j, float y) {
    float d = vp_z_of(a, y) - M, logp = d - l, p = expf(logp), dz;
    if (a.op == GS_OP_CE) {
      float pm = j == t ? expm1f(logp) : p;  // p_t - 1 without cancellation
      float wj = a.weight ? a.weight[j] : 1.f;
      dz = g * (wt * (1 - eps) * pm + smooth * (wsum * p - wj));
      if (a.lse_square_scale > 0) dz += gz * zl * p;
    } else if (a.op == GS_OP_LOG_PROBS) {
      dz = g * (j == t ? -expm1f(logp) : -p);
    } else {
      dz = p != 0 ? g * p * (mu - d) : 0.f;
    }
    return dz * vp_chain(a, y);
  };
  int64_t first = 0;
  if (vp_aligned16(a.logits, a.logits_stride, a.logits_dtype) && vp_aligned16(a.grad, a.grad_stride, a.grad_dtype)) {
    const uint4 *in = reinterpret_cast<const uint4 *>(static_cast<const unsigned short *>(a.logits) + i * a.logits_stride);
    uint4 *out = reinterpret_cast<uint4 *>(static_cast<unsigned short *>(a.grad) + i * a.grad_stride);
    int64_t vecs = a.v / 8;
    for (int64_t k = threadIdx.x; k < vecs; k += blockDim.x) {
      float x[8], dx[8];
      vp_unpack8(in[k], a.logits_dtype, x);  // read before the write: grad may be the logits (inplace)
#pragma unroll
      for (int e = 0; e < 8; e++) dx[e] = grad_of(k * 8 + e, __fmul_rn(static_cast<float>(a.logit_scale), x[e]));
      out[k] = vp_pack8(dx, a.grad_dtype);
    }
    first = vecs * 8;
  }
  for (int64_t j = first + threadIdx.x; j < a.v; j += blockDim.x) vp_grad_put(a, i, j, grad_of(j, vp_y(a, i, j)));
}

gs_status launched(const char *what, gs_error *err) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return GS_OK;
  snprintf(err->msg, sizeof err->msg, "vocab-parallel %s: %s", what, cudaGetErrorString(e));
  return GS_ERR_CUDA;
}

}  // namespace

extern "C" gs_status gs_vp_pass_cuda(const gs_vp_args *a, int pass, gs_error *err) {
  const char *bad = nullptr;
  if (a->n < 0) bad = "n";
  else if (a->v < 1 || a->vocab_start < 0 || a->vocab_start + a->v > a->vocab_total) bad = "v";
  else if (a->logits_stride < a->v) bad = "logits_stride";
  else if (!a->stat) bad = "stat";
  else if (pass < GS_VP_MAX || pass > GS_VP_GRAD) bad = "pass";
  else if (pass == GS_VP_GRAD && (!a->grad || a->grad_stride < a->v)) bad = "grad";
  if (bad) {
    err->arg = bad;
    snprintf(err->msg, sizeof err->msg, "vocab-parallel pass %d: bad %s", pass, bad);
    return GS_ERR_ARG;
  }
  if (a->logits_dtype < GS_F32 || a->logits_dtype > GS_F16 ||
      (pass == GS_VP_GRAD && (a->grad_dtype < GS_F32 || a->grad_dtype > GS_F16))) {
    err->arg = "logits_dtype";
    snprintf(err->msg, sizeof err->msg, "vocab-parallel: cuda takes f32, bf16 and f16");
    return GS_ERR_DTYPE;
  }
  if (a->n == 0) return GS_OK;
  if (a->n > 2147483647) {
    err->arg = "n";
    snprintf(err->msg, sizeof err->msg, "vocab-parallel: n = %lld rows is more than one grid holds", (long long)a->n);
    return GS_ERR_ARG;
  }
  unsigned rows = static_cast<unsigned>(a->n);
  switch (pass) {
  case GS_VP_MAX: vp_max_kernel<<<rows, kThreads>>>(*a); break;
  case GS_VP_SUMS: vp_sums_kernel<<<(rows + 255) / 256, 256>>>(*a); break;
  case GS_VP_TERMS:
    vp_terms_kernel<<<rows, kThreads>>>(*a, a->op == GS_OP_CE && a->label_smoothing > 0, a->op == GS_OP_ENTROPY);
    break;
  default: vp_grad_kernel<<<rows, kThreads>>>(*a); break;
  }
  gs_status st = launched("launch", err);
  if (st != GS_OK) return st;
  if (cudaDeviceSynchronize() != cudaSuccess) return launched("run", err);
  return GS_OK;
}
