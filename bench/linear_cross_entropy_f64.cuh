// The f64 reference of bench_linear_cross_entropy_cuda, computed on the GPU
// at the full shape (the CPU reference would take hours at 8192 x 4096 x
// 128256): h and W converted exactly to f64, x = h W^T by cublasDgemm, a
// cross entropy of its own in f64 that writes G = dLoss/dx over x, then
// dh = G W and dW = G^T h by cublasDgemm. It covers the benchmark's problem
// only: reduction mean over the rows whose target is not ignore_index, no
// bias, class weights, smoothing, softcap, scale or z-loss.
//
// Then the error of a path's output against it: ||out - ref|| / ||ref|| over
// all elements (the relative norm error), summed in double on the GPU.
#ifndef GS_BENCH_LCE_F64_CUH
#define GS_BENCH_LCE_F64_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "bench_cublas.h"
#include "bench_cuda.h"

namespace f64ref {

__device__ __forceinline__ double load(const void *p, int dt, int64_t k) {
  if (dt == GS_F32) return ((const float *)p)[k];
  if (dt == GS_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[k]);
  if (dt == GS_F16) return __half2float(((const __half *)p)[k]);
  return ((const double *)p)[k];
}

__global__ void widen(double *dst, const void *src, int dt, int64_t count) {
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < count; k += (int64_t)gridDim.x * blockDim.x)
    dst[k] = load(src, dt, k);
}

constexpr int kThreads = 256;

// Block-wide max or sum of one value per thread; every thread gets it.
template <bool kMax> __device__ double block_reduce(double x, double *sh) {
  sh[threadIdx.x] = x;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sh[threadIdx.x] = kMax ? fmax(sh[threadIdx.x], sh[threadIdx.x + s])
                                                     : sh[threadIdx.x] + sh[threadIdx.x + s];
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();  // sh is reused by the next reduction
  return r;
}

// One block per row i of x (v values): loss_i = lse - x_t, and the row of G
// over x: (softmax_j - [j == t]) / count; zeros for an ignored row.
__global__ void __launch_bounds__(kThreads) cross_entropy_rows(double *x, int64_t v, const int64_t *target,
                                                               int64_t ignore, double inv_count, double *row_loss) {
  __shared__ double sh[kThreads];
  double *row = x + (int64_t)blockIdx.x * v;
  const int64_t t = target[blockIdx.x];
  if (t == ignore) {
    for (int64_t j = threadIdx.x; j < v; j += kThreads) row[j] = 0;
    if (threadIdx.x == 0) row_loss[blockIdx.x] = 0;
    return;
  }
  double m = -INFINITY;
  for (int64_t j = threadIdx.x; j < v; j += kThreads) m = fmax(m, row[j]);
  m = block_reduce<true>(m, sh);
  double s = 0;
  for (int64_t j = threadIdx.x; j < v; j += kThreads) s += exp(row[j] - m);
  s = block_reduce<false>(s, sh);
  const double lse = m + log(s);
  const double xt = row[t];
  __syncthreads();  // every thread has read x_t before the row is overwritten
  for (int64_t j = threadIdx.x; j < v; j += kThreads) row[j] = (exp(row[j] - lse) - (j == t ? 1.0 : 0.0)) * inv_count;
  if (threadIdx.x == 0) row_loss[blockIdx.x] = lse - xt;
}

// acc[0] += sum (out - ref)^2, acc[1] += sum ref^2.
__global__ void __launch_bounds__(kThreads) diff_norms(const void *out, int dt, const double *ref, int64_t count,
                                                       double *acc) {
  __shared__ double sh[kThreads];
  double d = 0, r = 0;
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < count; k += (int64_t)gridDim.x * blockDim.x) {
    const double e = load(out, dt, k) - ref[k];
    d += e * e;
    r += ref[k] * ref[k];
  }
  d = block_reduce<false>(d, sh);
  r = block_reduce<false>(r, sh);
  if (threadIdx.x == 0) {
    atomicAdd(acc, d);
    atomicAdd(acc + 1, r);
  }
}

inline unsigned blocks_for(int64_t count) {
  const int64_t b = (count + kThreads - 1) / kThreads;
  return (unsigned)(b < 1 ? 1 : b > 4096 ? 4096 : b);
}


// The reference's outputs, on the device (cudaMalloc: outside the accounted
// memory the benchmark measures).
struct Reference {
  int64_t n = 0, hd = 0, v = 0;
  double loss = 0;
  double *dh = nullptr, *dw = nullptr;  // n x H and V x H, row-major
  void release() {
    CK(cudaFree(dh));
    CK(cudaFree(dw));
    dh = dw = nullptr;
  }
};

// h (n x hd) and w (v x hd), row-major and contiguous in dtype dt; target:
// n device i64 values, `count` of them not ignore_index.
inline Reference compute(cublasHandle_t blas, const void *h, const void *w, int dt, const int64_t *target,
                         int64_t ignore, int64_t n, int64_t hd, int64_t v, int64_t count) {
  Reference r;
  r.n = n, r.hd = hd, r.v = v;
  double *h64 = nullptr, *w64 = nullptr, *x = nullptr, *row_loss = nullptr;
  CK(cudaMalloc(&h64, (size_t)(n * hd) * 8));
  CK(cudaMalloc(&w64, (size_t)(v * hd) * 8));
  CK(cudaMalloc(&x, (size_t)(n * v) * 8));
  CK(cudaMalloc(&row_loss, (size_t)n * 8));
  CK(cudaMalloc(&r.dh, (size_t)(n * hd) * 8));
  CK(cudaMalloc(&r.dw, (size_t)(v * hd) * 8));
  widen<<<blocks_for(n * hd), kThreads>>>(h64, h, dt, n * hd);
  widen<<<blocks_for(v * hd), kThreads>>>(w64, w, dt, v * hd);
  CK(cudaGetLastError());
  const double one = 1, zero = 0;
  // Column-major views of row-major buffers, as in the benchmark: x^T (v x n) = W h^T
  CBLAS(cublasDgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)v, (int)n, (int)hd, &one, w64, (int)hd, h64, (int)hd, &zero,
                    x, (int)v));
  cross_entropy_rows<<<(unsigned)n, kThreads>>>(x, v, target, ignore, 1.0 / (double)count, row_loss);
  CK(cudaGetLastError());
  // dh^T (hd x n) = W^T G^T; dW^T (hd x v) = h^T G
  CBLAS(cublasDgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)hd, (int)n, (int)v, &one, w64, (int)hd, x, (int)v, &zero,
                    r.dh, (int)hd));
  CBLAS(cublasDgemm(blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)hd, (int)v, (int)n, &one, h64, (int)hd, x, (int)v, &zero,
                    r.dw, (int)hd));
  std::vector<double> losses((size_t)n);
  CK(cudaMemcpy(losses.data(), row_loss, (size_t)n * 8, cudaMemcpyDeviceToHost));
  double sum = 0;
  for (double l : losses) sum += l;
  r.loss = sum / (double)count;
  CK(cudaFree(h64));
  CK(cudaFree(w64));
  CK(cudaFree(x));
  CK(cudaFree(row_loss));
  return r;
}

// ||out - ref|| / ||ref|| for count values of out in dtype dt.
inline double rel_norm_error(const void *out, int dt, const double *ref, int64_t count) {
  double *acc = nullptr, host[2];
  CK(cudaMalloc(&acc, 2 * sizeof(double)));
  CK(cudaMemset(acc, 0, 2 * sizeof(double)));
  diff_norms<<<blocks_for(count), kThreads>>>(out, dt, ref, count, acc);
  CK(cudaGetLastError());
  CK(cudaMemcpy(host, acc, sizeof host, cudaMemcpyDeviceToHost));
  CK(cudaFree(acc));
  return host[1] > 0 ? std::sqrt(host[0] / host[1]) : std::sqrt(host[0]);
}

}  // namespace f64ref

#endif
