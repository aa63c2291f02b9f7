// bench_linear_cross_entropy_cuda: fused, chunked linear cross entropy with
// cuBLAS (gs_lce_forward_cuda) against the unfused path, on the same inputs
// in the same run:
//
//   unfused      x = h W^T for all N rows in f32 (one cublasGemmEx), the CUDA
//                cross-entropy kernel's fused forward+backward writing G in
//                h's dtype, dh = G W and dW = G^T h (two GEMMs, f32 compute,
//                straight into the outputs): the fused path's numerics with
//                N x V logits held at once; the baseline of every ratio
//   unfused-16   the same with the logits in h's dtype and G written over
//                them: the leanest unfused path, at a precision cost
//   fused        chunk_rows rows at a time, chunk_dtype f32 (f32 logits and
//                G in h's dtype), dW in h's dtype through an f32 accumulator
//   GOAL         chunk_dtype = h's dtype (the logits GEMM writes them, G goes
//                over them) and dW returned in f32, which is its own
//                accumulator: the path the goals below are about
//   frontier     chunk_dtype = h's dtype over chunk sizes, dW returned in h's
//                dtype (an f32 accumulator of V x H, except with one chunk,
//                which writes dW once) and in f32
//
// Each is timed (median over the repeats, whole forward+backward, synchronised)
// and its peak extra device memory taken: gs_cuda_peak_bytes over the call,
// beyond its inputs and outputs. Every device allocation of the kernels and of
// this file is accounted (kernels/gs_device.h); the cuBLAS workspaces are set
// up on the warm-up call. The unfused path takes its scratch from a caching
// stream-ordered pool, as the fused kernel does, so that neither pays for
// cudaMalloc and cudaFree of gigabytes on every call. Each path's loss, dh
// and dW are compared with an f64 reference computed once on the GPU
// (linear_cross_entropy_f64.cuh): relative error of the loss, relative norm
// error ||out - ref|| / ||ref|| of dh and dW.
//
// The goals (issue 16), printed last as met or MISSED: at the default shape,
// the GOAL path's extra memory plus its 32 MiB cuBLAS workspace at most 1/8
// of the unfused path's extra, and its time at most 1.05x the unfused path's.
//
//   bench_linear_cross_entropy_cuda --check           small cases: fused, unfused and
//                                                     the f64 reference agree (PASS/FAIL)
//   bench_linear_cross_entropy_cuda [--reps R] [--chunk-rows C] [--sweep C1,C2,...]
//                                   [--n N] [--h H] [--v V] [--dtype bf16|f16|f32]
//
// Defaults: N=8192, H=4096, V=128256, bf16, reduction mean; --chunk-rows sets
// the fused and GOAL rows' chunk (default: the kernel's), --sweep the
// frontier's (default 512,1024,2048,4096,8192).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

extern "C" void gs_cuda_account(long long delta);  // kernels/cuda/device.cu

extern "C" {
#include "cross_entropy.h"
#include "gs_device.h"
#include "gs_half.h"
#include "linear_cross_entropy.h"
}

#include "bench_cuda.h"
#include "linear_cross_entropy_f64.cuh"

namespace {

constexpr double kWorkspaceGiB = 32.0 / 1024.0;  // the fused kernel's cuBLAS workspace, held across calls



void ok_or_die(const char *what, gs_status st, const gs_error &err) {
  if (st != GS_OK) {
    fprintf(stderr, "%s failed: status %d: %s\n", what, (int)st, err.msg);
    exit(1);
  }
}

size_t dsize(gs_dtype d) { return d == GS_F64 || d == GS_I64 ? 8 : d == GS_F32 || d == GS_I32 ? 4 : 2; }
const char *dname(gs_dtype d) { return d == GS_F32 ? "f32" : d == GS_BF16 ? "bf16" : d == GS_F16 ? "f16" : "f64"; }
cudaDataType_t ctype(gs_dtype d) { return d == GS_F32 ? CUDA_R_32F : d == GS_BF16 ? CUDA_R_16BF : CUDA_R_16F; }

void *dev_alloc(size_t bytes) {
  void *p = nullptr;
  gs_error err = {};
  ok_or_die("gs_cuda_malloc", gs_cuda_malloc(&p, bytes, &err), err);
  return p;
}

// Scratch of the unfused path: a pool that keeps freed blocks, accounted.
cudaMemPool_t g_pool = nullptr;

void *scratch_alloc(size_t bytes) {
  if (!g_pool) {
    int dev = 0;
    CK(cudaGetDevice(&dev));
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = dev;
    uint64_t keep = UINT64_MAX;
    CK(cudaMemPoolCreate(&g_pool, &props));
    CK(cudaMemPoolSetAttribute(g_pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }
  void *p = nullptr;
  CK(cudaMallocFromPoolAsync(&p, bytes, g_pool, 0));
  gs_cuda_account((long long)bytes);
  return p;
}

void scratch_free(void *p, size_t bytes) {
  if (!p) return;
  CK(cudaFreeAsync(p, 0));
  gs_cuda_account(-(long long)bytes);
}

__device__ __forceinline__ void store_as(void *p, int dt, int64_t k, float x) {
  if (dt == GS_F32) ((float *)p)[k] = x;
  else if (dt == GS_BF16) ((__nv_bfloat16 *)p)[k] = __float2bfloat16_rn(x);
  else ((__half *)p)[k] = __float2half_rn(x);
}

__device__ __forceinline__ float load_as(const void *p, int dt, int64_t k) {
  if (dt == GS_F32) return ((const float *)p)[k];
  if (dt == GS_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[k]);
  return __half2float(((const __half *)p)[k]);
}

// Uniform in [-scale, scale) from a hash of (seed, k): fills gigabytes in
// milliseconds. step > 0 rounds each value to a multiple of step.
__global__ void fill_uniform(void *p, int dt, int64_t n, uint64_t seed, float scale, float step) {
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + (uint64_t)k * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    float x = scale * (2.0f * (float)(z >> 40) * (1.0f / 16777216.0f) - 1.0f);
    if (step > 0) x = rintf(x / step) * step;
    store_as(p, dt, k, x);
  }
}

__global__ void fill_const(void *p, int dt, int64_t n, float x) {
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
    store_as(p, dt, k, x);
}

__global__ void bias_rows(void *x, int xdt, int64_t ld, int64_t rows, int64_t v, const void *bias, int bdt) {
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < rows * v; k += (int64_t)gridDim.x * blockDim.x)
    store_as(x, xdt, (k / v) * ld + k % v, load_as(bias, bdt, k % v));
}

unsigned grid_for(int64_t n) { return (unsigned)std::min<int64_t>(std::max<int64_t>((n + 255) / 256, 1), 65535); }

uint64_t g_rng = 0x1234567ull;
uint64_t next_u64() {
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// One problem on the device, and the options both paths are given.
struct Problem {
  int64_t n, hd, v;
  gs_dtype dt;
  void *h, *w, *bias;  // bias: NULL or v values in dt
  int64_t *target;
  float *weight;       // NULL or v class weights
  double eps, softcap, lam, scale;
  gs_reduction reduction;
};

// dyadic: h, W and the bias on grids of 1/16, 1/128 and 1/16, values of at
// most 8 significant bits whose products and sums (H up to ~1000) are exact
// in f32, so that cuBLAS's logits are the exact ones and a 16-bit chunk
// rounds them as the f64 reference does.
Problem make_problem(int64_t n, int64_t hd, int64_t v, gs_dtype dt, bool bias, bool weight, uint64_t seed,
                     bool dyadic = false) {
  Problem p{};
  p.n = n, p.hd = hd, p.v = v, p.dt = dt, p.scale = 1, p.reduction = GS_REDUCE_MEAN;
  p.h = dev_alloc((size_t)(n * hd) * dsize(dt));
  p.w = dev_alloc((size_t)(v * hd) * dsize(dt));
  // logits of std ~2: h uniform in [-1.7, 1.7), W scaled by 1/sqrt(H)
  fill_uniform<<<grid_for(n * hd), 256>>>(p.h, dt, n * hd, seed, 1.7f, dyadic ? 1.f / 16 : 0.f);
  fill_uniform<<<grid_for(v * hd), 256>>>(p.w, dt, v * hd, seed + 1, 2.0f / sqrtf((float)hd), dyadic ? 1.f / 128 : 0.f);
  if (bias) {
    p.bias = dev_alloc((size_t)v * dsize(dt));
    fill_uniform<<<grid_for(v), 256>>>(p.bias, dt, v, seed + 2, 0.5f, dyadic ? 1.f / 16 : 0.f);
  }
  std::vector<int64_t> t((size_t)n);
  for (int64_t i = 0; i < n; i++) t[(size_t)i] = i % 17 == 5 ? -100 : (int64_t)(next_u64() % (uint64_t)v);
  p.target = (int64_t *)dev_alloc((size_t)n * 8);
  if (n) CK(cudaMemcpy(p.target, t.data(), (size_t)n * 8, cudaMemcpyHostToDevice));
  if (weight) {
    std::vector<float> w((size_t)v);
    for (auto &x : w) x = 0.5f + 1.5f * (float)(next_u64() >> 40) / 16777216.0f;
    p.weight = (float *)dev_alloc((size_t)v * 4);
    CK(cudaMemcpy(p.weight, w.data(), (size_t)v * 4, cudaMemcpyHostToDevice));
  }
  CK(cudaDeviceSynchronize());
  return p;
}

void free_problem(Problem &p) {
  gs_cuda_free(p.h);
  gs_cuda_free(p.w);
  gs_cuda_free(p.bias);
  gs_cuda_free(p.target);
  gs_cuda_free(p.weight);
}

// Outputs: dh, dW in dw_dt (default: the input dtype), db in f32, loss.
struct Outputs {
  void *dh, *dw;
  gs_dtype dw_dt;
  float *db, *loss;
};

Outputs make_outputs(const Problem &p, gs_dtype dw_dt) {
  Outputs o{};
  o.dh = dev_alloc((size_t)(p.n * p.hd) * dsize(p.dt));
  o.dw = dev_alloc((size_t)(p.v * p.hd) * dsize(dw_dt));
  o.dw_dt = dw_dt;
  o.db = p.bias ? (float *)dev_alloc((size_t)p.v * 4) : nullptr;
  o.loss = (float *)dev_alloc(4);
  return o;
}

void free_outputs(Outputs &o) {
  gs_cuda_free(o.dh);
  gs_cuda_free(o.dw);
  gs_cuda_free(o.db);
  gs_cuda_free(o.loss);
}

void run_fused(const Problem &p, Outputs &o, int64_t chunk_rows, gs_dtype chunk_dt) {
  gs_lce_args a = {};
  a.n = p.n, a.hidden = p.hd, a.v = p.v;
  a.h = p.h, a.h_dtype = p.dt, a.h_stride = p.hd;
  a.w = p.w, a.w_dtype = p.dt, a.w_stride = p.hd;
  a.bias = p.bias, a.bias_dtype = p.dt;
  a.target = p.target, a.target_dtype = GS_I64, a.ignore_index = -100, a.weight = p.weight;
  a.label_smoothing = p.eps, a.logit_scale = p.scale, a.softcap = p.softcap, a.lse_square_scale = p.lam;
  a.reduction = p.reduction, a.loss = o.loss;
  a.dh = o.dh, a.dh_dtype = p.dt, a.dh_stride = p.hd;
  a.dw = o.dw, a.dw_dtype = o.dw_dt, a.dw_stride = p.hd;
  a.db = o.db, a.db_dtype = GS_F32;
  a.chunk_rows = chunk_rows, a.chunk_dtype = chunk_dt;
  gs_error err = {};
  ok_or_die("gs_lce_forward_cuda", gs_lce_forward_cuda(&a, &err), err);
}

struct Blas {
  cublasHandle_t h = nullptr;
  void *ws = nullptr;
  void init() {
    CBLAS(cublasCreate(&h));
    CBLAS(cublasSetMathMode(h, CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
    ws = dev_alloc((size_t)32 << 20);
    CBLAS(cublasSetWorkspace(h, ws, (size_t)32 << 20));
  }
  void gemm(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, float alpha, const void *a,
            gs_dtype adt, int64_t lda, const void *b, int64_t ldb, float beta, void *c, cudaDataType_t ct,
            int64_t ldc) {
    CBLAS(cublasGemmEx(h, ta, tb, (int)m, (int)n, (int)k, &alpha, a, ctype(adt), (int)lda, b, ctype(adt), (int)ldb, &beta,
                    c, ct, (int)ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
};
Blas g_blas;

// All N x V logits at once. lean: logits in the input dtype and G over them.
void run_unfused(const Problem &p, Outputs &o, bool lean) {
  const int64_t n = p.n, hd = p.hd, v = p.v, ld = (v + 7) / 8 * 8;
  const gs_dtype xdt = lean ? p.dt : GS_F32;
  const size_t xbytes = (size_t)(n * ld) * dsize(xdt), gbytes = (size_t)(n * ld) * dsize(p.dt);
  const size_t obytes = (size_t)n * dsize(p.dt);
  void *x = scratch_alloc(xbytes);
  void *g = (lean || p.dt == GS_F32) ? x : scratch_alloc(gbytes);
  void *ones = p.bias ? scratch_alloc(obytes) : nullptr;
  float beta = 0;
  if (p.bias) {
    fill_const<<<grid_for(n), 256>>>(ones, p.dt, n, 1.f);
    bias_rows<<<grid_for(n * v), 256>>>(x, xdt, ld, n, v, p.bias, p.dt);
    beta = 1;
  }
  // x^T (v x n) = W h^T, column-major views of the row-major buffers
  g_blas.gemm(CUBLAS_OP_T, CUBLAS_OP_N, v, n, hd, 1.f, p.w, p.dt, hd, p.h, hd, beta, x, ctype(xdt), ld);
  gs_ce_args ce = {};
  ce.n = n, ce.v = v, ce.logits = x, ce.logits_dtype = xdt, ce.logits_stride = ld;
  ce.target = p.target, ce.target_dtype = GS_I64, ce.ignore_index = -100, ce.weight = p.weight;
  ce.label_smoothing = p.eps, ce.logit_scale = p.scale, ce.softcap = p.softcap, ce.lse_square_scale = p.lam;
  ce.reduction = p.reduction, ce.loss = o.loss;
  ce.grad = g, ce.grad_dtype = p.dt, ce.grad_stride = ld;
  gs_error err = {};
  ok_or_die("gs_ce_forward_cuda", gs_ce_forward_cuda(&ce, &err), err);
  g_blas.gemm(CUBLAS_OP_N, CUBLAS_OP_N, hd, n, v, 1.f, p.w, p.dt, hd, g, ld, 0.f, o.dh, ctype(p.dt), hd);
  g_blas.gemm(CUBLAS_OP_N, CUBLAS_OP_T, hd, v, n, 1.f, p.h, p.dt, hd, g, ld, 0.f, o.dw, ctype(o.dw_dt), hd);
  if (p.bias) g_blas.gemm(CUBLAS_OP_N, CUBLAS_OP_N, v, 1, n, 1.f, g, p.dt, ld, ones, n, 0.f, o.db, CUDA_R_32F, v);
  scratch_free(ones, obytes);
  if (g != x) scratch_free(g, gbytes);
  scratch_free(x, xbytes);
  CK(cudaDeviceSynchronize());
}

// Device values as doubles.
std::vector<double> fetch(const void *p, gs_dtype dt, int64_t n) {
  std::vector<uint8_t> raw((size_t)n * dsize(dt));
  if (n) CK(cudaMemcpy(raw.data(), p, raw.size(), cudaMemcpyDeviceToHost));
  std::vector<double> out((size_t)n);
  for (int64_t k = 0; k < n; k++) {
    if (dt == GS_F32) out[(size_t)k] = ((const float *)raw.data())[k];
    else if (dt == GS_BF16) out[(size_t)k] = gs_bf16_to_f32(((const uint16_t *)raw.data())[k]);
    else out[(size_t)k] = gs_f16_to_f32(((const uint16_t *)raw.data())[k]);
  }
  return out;
}

std::vector<uint8_t> fetch_raw(const void *p, size_t bytes) {
  std::vector<uint8_t> raw(bytes);
  if (bytes) CK(cudaMemcpy(raw.data(), p, bytes, cudaMemcpyDeviceToHost));
  return raw;
}

// max |a - b| over max |b|: the error relative to the output's scale.
double rel_err(const std::vector<double> &a, const std::vector<double> &b) {
  double d = 0, s = 0;
  for (size_t k = 0; k < a.size(); k++) {
    double e = std::fabs(a[k] - b[k]);
    d = std::isnan(e) ? INFINITY : std::max(d, e);
    s = std::max(s, std::fabs(b[k]));
  }
  return s > 0 ? d / s : d;
}

struct Ref {
  double loss;
  std::vector<double> dh, dw, db;
};

// The f64 reference of kernels/cpu/linear_cross_entropy_ref.c on host copies,
// with the logits rounded to a 16-bit chunk_dt as the contract says.
Ref reference(const Problem &p, gs_dtype chunk_dt) {
  auto h = fetch_raw(p.h, (size_t)(p.n * p.hd) * dsize(p.dt));
  auto w = fetch_raw(p.w, (size_t)(p.v * p.hd) * dsize(p.dt));
  auto b = p.bias ? fetch_raw(p.bias, (size_t)p.v * dsize(p.dt)) : std::vector<uint8_t>();
  auto t = fetch_raw(p.target, (size_t)p.n * 8);
  std::vector<float> wt;
  if (p.weight) {
    auto raw = fetch_raw(p.weight, (size_t)p.v * 4);
    wt.assign((const float *)raw.data(), (const float *)raw.data() + p.v);
  }
  Ref r;
  r.dh.resize((size_t)(p.n * p.hd));
  r.dw.resize((size_t)(p.v * p.hd));
  r.db.resize((size_t)p.v);
  gs_lce_args a = {};
  a.n = p.n, a.hidden = p.hd, a.v = p.v;
  a.h = h.data(), a.h_dtype = p.dt, a.h_stride = p.hd;
  a.w = w.data(), a.w_dtype = p.dt, a.w_stride = p.hd;
  a.bias = p.bias ? b.data() : nullptr, a.bias_dtype = p.dt;
  a.target = t.data(), a.target_dtype = GS_I64, a.ignore_index = -100, a.weight = p.weight ? wt.data() : nullptr;
  a.label_smoothing = p.eps, a.logit_scale = p.scale, a.softcap = p.softcap, a.lse_square_scale = p.lam;
  a.reduction = p.reduction, a.loss = &r.loss;
  a.dh = r.dh.data(), a.dh_dtype = GS_F64, a.dh_stride = p.hd;
  a.dw = r.dw.data(), a.dw_dtype = GS_F64, a.dw_stride = p.hd;
  a.db = p.bias ? r.db.data() : nullptr, a.db_dtype = GS_F64;
  a.chunk_dtype = chunk_dt;
  gs_error err = {};
  ok_or_die("gs_lce_forward_ref", gs_lce_forward_ref(&a, &err), err);
  return r;
}

// Small cases: the fused kernel against the CPU f64 reference of the same
// chunk_dtype and against the unfused path (unfused-16 for a 16-bit chunk:
// the same rounded logits). A 16-bit chunk takes dyadic inputs, whose logits
// cuBLAS computes exactly, so that it and the reference round equal values.
int check_mode() {
  struct Case {
    int64_t n, hd, v, chunk;
    gs_dtype dt;
    bool bias, weight;
    double eps, softcap, lam;
    gs_dtype chunk_dt, dw_dt;  // dw_dt f64 (0): h's dtype
    const char *what;
  };
  const Case cases[] = {
      {13, 19, 37, 4, GS_F32, true, false, 0, 0, 0, GS_F32, GS_F64, "odd sizes, bias"},
      {13, 19, 37, 4, GS_BF16, true, true, 0.1, 0, 0.01, GS_F32, GS_F64, "weight, smoothing, z-loss, bias"},
      {300, 64, 1000, 64, GS_BF16, false, true, 0, 0, 1e-3, GS_F32, GS_F64, "weight, z-loss (mean: D != count)"},
      {257, 96, 4099, 100, GS_F16, true, false, 0.05, 30, 0, GS_F32, GS_F64, "softcap, smoothing, last chunk of 57"},
      {512, 64, 8000, 1, GS_BF16, false, false, 0, 0, 0, GS_F32, GS_F64, "512 chunks of one row: f32 dW accumulator"},
      {600, 64, 5000, 0, GS_BF16, true, false, 0, 0, 0, GS_F32, GS_F64, "the default chunk"},
      {13, 19, 37, 4, GS_BF16, true, true, 0.1, 0, 0.01, GS_BF16, GS_F64, "bf16 chunk: weight, smoothing, z-loss"},
      {300, 64, 1000, 64, GS_BF16, false, true, 0, 0, 1e-3, GS_BF16, GS_F32, "bf16 chunk, dW in f32"},
      {257, 96, 4099, 100, GS_F16, true, false, 0.05, 30, 0, GS_F16, GS_F32, "f16 chunk, dW in f32, last chunk 57"},
      {512, 64, 8000, 1, GS_BF16, false, false, 0, 0, 0, GS_BF16, GS_F64, "bf16 chunk, 512 chunks of one row"},
      {600, 64, 5000, 600, GS_BF16, true, false, 0, 0, 0, GS_BF16, GS_F64, "bf16 chunk, one chunk: dW written once"},
      {600, 64, 5000, 0, GS_BF16, true, false, 0, 0, 0, GS_BF16, GS_F32, "bf16 chunk, the default chunk, dW in f32"},
  };
  int fails = 0;
  for (const Case &c : cases) {
    const bool chunk16 = c.chunk_dt != GS_F32;
    Problem p = make_problem(c.n, c.hd, c.v, c.dt, c.bias, c.weight, 42 + c.n, chunk16);
    p.eps = c.eps, p.softcap = c.softcap, p.lam = c.lam;
    const gs_dtype dw_dt = c.dw_dt == GS_F64 ? p.dt : c.dw_dt;
    Outputs of = make_outputs(p, dw_dt), ou = make_outputs(p, dw_dt);
    run_fused(p, of, c.chunk, c.chunk_dt);
    run_unfused(p, ou, chunk16);
    Ref r = reference(p, c.chunk_dt);
    const double tol = c.dt == GS_F32 ? 2e-5 : c.dt == GS_F16 ? 4e-3 : 2e-2;
    auto fl = fetch(of.loss, GS_F32, 1), ul = fetch(ou.loss, GS_F32, 1);
    auto fdh = fetch(of.dh, p.dt, p.n * p.hd), udh = fetch(ou.dh, p.dt, p.n * p.hd);
    auto fdw = fetch(of.dw, dw_dt, p.v * p.hd), udw = fetch(ou.dw, dw_dt, p.v * p.hd);
    double e[8] = {std::fabs(fl[0] - r.loss) / std::fabs(r.loss), rel_err(fdh, r.dh), rel_err(fdw, r.dw), 0,
                   std::fabs(fl[0] - ul[0]) / std::fabs(ul[0]), rel_err(fdh, udh), rel_err(fdw, udw), 0};
    if (p.bias) {
      auto fdb = fetch(of.db, GS_F32, p.v), udb = fetch(ou.db, GS_F32, p.v);
      e[3] = rel_err(fdb, r.db);
      e[7] = rel_err(fdb, udb);
    }
    bool ok = e[0] < 2e-5 && e[4] < 2e-5;
    for (int k : {1, 2, 3, 5, 6, 7}) ok = ok && e[k] < tol;
    fails += !ok;
    printf("%s  %s N=%lld H=%lld V=%lld chunk_rows=%lld chunk %s dW %s (%s)\n", ok ? "PASS" : "FAIL", dname(p.dt),
           (long long)p.n, (long long)p.hd, (long long)p.v, (long long)c.chunk, dname(c.chunk_dt), dname(dw_dt),
           c.what);
    printf("      fused vs f64 ref: loss %.1e dh %.1e dW %.1e db %.1e | fused vs %s: loss %.1e dh %.1e dW %.1e "
           "db %.1e (tol %.0e)\n",
           e[0], e[1], e[2], e[3], chunk16 ? "unfused-16" : "unfused", e[4], e[5], e[6], e[7], tol);
    free_outputs(of);
    free_outputs(ou);
    free_problem(p);
  }
  printf("check: %s (%d failed)\n", fails ? "FAIL" : "PASS", fails);
  return fails ? 1 : 0;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Measure {
  double ms;
  double extra_gib;
};

template <typename F> Measure measure(F &&fn, int reps) {
  fn();  // warm-up: cuBLAS heuristics, workspaces, plan caches
  CK(cudaDeviceSynchronize());
  std::vector<double> t;
  Measure m{};
  for (int k = 0; k < reps; k++) {
    gs_cuda_reset_peak();
    const size_t base = gs_cuda_bytes_in_use();
    const double t0 = now_s();
    fn();
    CK(cudaDeviceSynchronize());
    t.push_back(1e3 * (now_s() - t0));
    if (k == 0) m.extra_gib = (double)(gs_cuda_peak_bytes() - base) / (1024.0 * 1024.0 * 1024.0);
  }
  std::sort(t.begin(), t.end());
  m.ms = t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
  return m;
}

// The unfused path's three GEMMs, each timed alone: logits = h W^T (f32 out),
// dh = G W and dW = G^T h. They bound what any schedule can reach: one that
// holds neither all N x V logits nor a V x H f32 dW accumulator must finish
// each block of dW rows in one pass over all N rows, which needs every row's
// lse first, so it computes the logits twice: at least 2 logits + dh + dW.
struct GemmTimes {
  double logits, dh, dw;
};

GemmTimes time_gemms(const Problem &p, Outputs &o, int reps) {
  const int64_t n = p.n, hd = p.hd, v = p.v, ld = (v + 7) / 8 * 8;
  const size_t xbytes = (size_t)(n * ld) * 4, gbytes = (size_t)(n * ld) * dsize(p.dt);
  void *x = scratch_alloc(xbytes), *g = scratch_alloc(gbytes);
  CK(cudaMemset(g, 0, gbytes));
  GemmTimes t{};
  t.logits = measure([&] { g_blas.gemm(CUBLAS_OP_T, CUBLAS_OP_N, v, n, hd, 1.f, p.w, p.dt, hd, p.h, hd, 0.f, x,
                                       CUDA_R_32F, ld); }, reps).ms;
  t.dh = measure([&] { g_blas.gemm(CUBLAS_OP_N, CUBLAS_OP_N, hd, n, v, 1.f, p.w, p.dt, hd, g, ld, 0.f, o.dh,
                                   ctype(p.dt), hd); }, reps).ms;
  t.dw = measure([&] { g_blas.gemm(CUBLAS_OP_N, CUBLAS_OP_T, hd, v, n, 1.f, p.h, p.dt, hd, g, ld, 0.f, o.dw,
                                   ctype(o.dw_dt), hd); }, reps).ms;
  scratch_free(g, gbytes);
  scratch_free(x, xbytes);
  return t;
}

// One timed path and its errors against the f64 reference.
struct Row {
  Measure m;
  double loss_err, dh_err, dw_err;
};

Row time_and_check(const Problem &p, Outputs &o, const f64ref::Reference &ref, int reps,
                   const std::function<void()> &fn) {
  Row r{};
  r.m = measure(fn, reps);  // the outputs hold the last repeat's results
  auto loss = fetch(o.loss, GS_F32, 1);
  r.loss_err = std::fabs(loss[0] - ref.loss) / std::fabs(ref.loss);
  r.dh_err = f64ref::rel_norm_error(o.dh, p.dt, ref.dh, p.n * p.hd);
  r.dw_err = f64ref::rel_norm_error(o.dw, o.dw_dt, ref.dw, p.v * p.hd);
  return r;
}

void print_row(const char *name, const Row &r, const Row &base, const char *note) {
  printf("%-52s %9.2f %9.3f %7.3fx %7.3fx | %8.1e %8.1e %8.1e%s%s\n", name, r.m.ms, r.m.extra_gib, r.m.ms / base.m.ms,
         r.m.extra_gib / base.m.extra_gib, r.loss_err, r.dh_err, r.dw_err, note[0] ? "  " : "", note);
}

void print_header(const char *first) {
  printf("%-52s %9s %9s %8s %8s | %8s %8s %8s\n", first, "median ms", "extra GiB", "time", "memory", "loss err",
         "dh err", "dW err");
}

}  // namespace

int main(int argc, char **argv) {
  int64_t n = 8192, hd = 4096, v = 128256, chunk_rows = 0;
  std::vector<int64_t> sweep;
  int reps = 10;
  gs_dtype dt = GS_BF16;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--check") {
      g_blas.init();
      return check_mode();
    } else if (a == "--reps" && val) reps = atoi(argv[++i]);
    else if (a == "--chunk-rows" && val) chunk_rows = atoll(argv[++i]);
    else if (a == "--n" && val) n = atoll(argv[++i]);
    else if (a == "--h" && val) hd = atoll(argv[++i]);
    else if (a == "--v" && val) v = atoll(argv[++i]);
    else if (a == "--sweep" && val) {
      for (char *tok = strtok(argv[++i], ","); tok; tok = strtok(nullptr, ",")) sweep.push_back(atoll(tok));
    } else if (a == "--dtype" && val) {
      std::string d = argv[++i];
      dt = d == "f32" ? GS_F32 : d == "f16" ? GS_F16 : GS_BF16;
    } else {
      fprintf(stderr,
              "usage: %s [--check] [--reps R] [--chunk-rows C] [--sweep C1,C2,...] [--n N] [--h H] [--v V] "
              "[--dtype bf16|f16|f32]\n",
              argv[0]);
      return 2;
    }
  }
  reps = std::max(reps, 1);
  if (sweep.empty()) sweep = {512, 1024, 2048, 4096, 8192};
  for (auto &rows : sweep) rows = std::min(std::max<int64_t>(rows, 1), n);
  sweep.erase(std::unique(sweep.begin(), sweep.end()), sweep.end());
  g_blas.init();
  char desc[256];
  gs_error err = {};
  ok_or_die("gs_cuda_describe", gs_cuda_describe(desc, sizeof desc, &err), err);

  Problem p = make_problem(n, hd, v, dt, false, false, 7);
  Outputs o = make_outputs(p, dt), o32 = make_outputs(p, GS_F32);
  const double gib = 1024.0 * 1024.0 * 1024.0;
  printf("linear cross entropy on cuda: %s\n", desc);
  printf("N=%lld H=%lld V=%lld %s, reduction mean, median of %d; f32 logits alone are %.2f GiB\n", (long long)n,
         (long long)hd, (long long)v, dname(dt), reps, (double)(n * v) * 4 / gib);
  printf("extra = peak device bytes during the call beyond its inputs and outputs; time and memory: ratios to the\n"
         "unfused path; errors against f64 (loss: relative; dh, dW: ||out - ref|| / ||ref||)\n");

  int64_t count = 0;  // the rows make_problem does not ignore
  for (int64_t i = 0; i < n; i++) count += i % 17 != 5;
  const double t_ref = now_s();
  f64ref::Reference ref = f64ref::compute(g_blas.h, p.h, p.w, p.dt, p.target, -100, n, hd, v, count);
  CK(cudaDeviceSynchronize());
  printf("f64 reference (cublasDgemm, on the GPU): %.2f s, loss %.10f\n\n", now_s() - t_ref, ref.loss);

  char name[96];
  snprintf(name, sizeof name, "unfused (f32 logits, G in %s)", dname(dt));
  print_header("path");
  Row mu = time_and_check(p, o, ref, reps, [&] { run_unfused(p, o, false); });
  print_row(name, mu, mu, "");
  snprintf(name, sizeof name, "unfused-16 (%s logits, G in place)", dname(dt));
  print_row(name, time_and_check(p, o, ref, reps, [&] { run_unfused(p, o, true); }), mu, "");
  const int64_t used = chunk_rows > 0 ? std::min(chunk_rows, n) : gs_lce_default_chunk_rows(n, v, 1);
  const char *dflt = chunk_rows > 0 ? "" : ", default";
  snprintf(name, sizeof name, "fused (f32 chunk, dW %s; %lld rows%s)", dname(dt), (long long)used, dflt);
  print_row(name, time_and_check(p, o, ref, reps, [&] { run_fused(p, o, chunk_rows, GS_F32); }), mu,
            dt != GS_F32 ? "dW through an f32 accumulator" : "");
  snprintf(name, sizeof name, "GOAL: fused (%s chunk, dW f32; %lld rows%s)", dname(dt), (long long)used, dflt);
  Row goal = time_and_check(p, o32, ref, reps, [&] { run_fused(p, o32, chunk_rows, dt); });
  print_row(name, goal, mu, "");

  const double acc_gib = (double)(v * hd) * 4 / gib;
  printf("\nfrontier over chunk rows, chunk in %s (rows x V x %zu bytes); the memory goal is extra + %.3f GiB\n"
         "of cuBLAS workspace <= 1/8 of unfused\n",
         dname(dt), dsize(dt), kWorkspaceGiB);
  std::vector<gs_dtype> dw_dts = {dt};
  if (dt != GS_F32) dw_dts.push_back(GS_F32);
  for (gs_dtype dw_dt : dw_dts) {
    Outputs &out = dw_dt == GS_F32 ? o32 : o;
    printf("\ndW returned in %s%s\n", dname(dw_dt),
           dw_dt == GS_F32 ? " (its own accumulator)"
                           : "; an f32 accumulator of V x H unless there is one chunk, which writes dW once");
    if (dw_dt != GS_F32) printf("(the accumulator: %.3f GiB)\n", acc_gib);
    print_header("chunk rows");
    for (int64_t rows : sweep) {
      Row r = time_and_check(p, out, ref, reps, [&] { run_fused(p, out, rows, dt); });
      const bool fits = r.m.extra_gib + kWorkspaceGiB <= mu.m.extra_gib / 8;
      std::string note = fits ? "within 1/8" : "over 1/8";
      if (dw_dt != GS_F32 && dt != GS_F32) note += rows >= n ? "; one chunk: dW written directly" : "; f32 accumulator";
      snprintf(name, sizeof name, "%lld", (long long)rows);
      print_row(name, r, mu, note.c_str());
    }
  }

  GemmTimes gt = time_gemms(p, o, reps);
  const double bound = 2 * gt.logits + gt.dh + gt.dw;
  printf("\nGEMMs alone (median ms): logits %.2f, dh %.2f, dW %.2f; all three %.2f = %.3fx the unfused path\n",
         gt.logits, gt.dh, gt.dw, gt.logits + gt.dh + gt.dw, (gt.logits + gt.dh + gt.dw) / mu.m.ms);
  printf("without an f32 dW accumulator (%.3f GiB = %.3fx the unfused extra) nor all logits held, the logits GEMM\n"
         "runs twice: at least %.2f ms = %.3fx the unfused path\n",
         acc_gib, acc_gib / mu.m.extra_gib, bound, bound / mu.m.ms);

  // The goals of issue 16, on the GOAL row.
  const double mem_ratio = (goal.m.extra_gib + kWorkspaceGiB) / mu.m.extra_gib, time_ratio = goal.m.ms / mu.m.ms;
  printf("\ngoal: extra memory <= 1/8 of unfused (%.3f): %s\n", mem_ratio, mem_ratio <= 0.125 ? "met" : "MISSED");
  printf("goal: time <= 1.05x unfused (%.3f): %s\n", time_ratio, time_ratio <= 1.05 ? "met" : "MISSED");
  ref.release();
  free_outputs(o);
  free_outputs(o32);
  free_problem(p);
  return 0;
}
