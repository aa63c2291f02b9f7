// Linear cross entropy on the GPU (contract: kernels/linear_cross_entropy.h).
//
// The chunk loop of the CPU backend with cuBLAS: per chunk of rows,
//   x   = h_c W^T (+ b)       cublasGemmEx, f32 compute, logits in chunk_dtype:
//                             f32, or h's dtype (rounded once from f32)
//   G   = dLoss/dx            gs_ce_forward_cuda / backward_cuda, in h's dtype
//                             (the GEMMs below take one input type): in place
//                             when the chunk is in h's dtype, else written to
//                             a second chunk buffer (f32 logits, 16-bit h)
//   dh_c = alpha G W          straight into dh (each row is written once)
//   dW  += alpha G^T h_c      into an f32 accumulator
//   db  += alpha G^T 1        into an f32 accumulator
// dW and db asked for in bf16 or f16 are accumulated in f32 scratch and
// converted once at the end: added chunk by chunk in a 16-bit type, the
// small contributions of later chunks would round away. Asked for in f32,
// the outputs themselves accumulate; asked for in h's dtype with a single
// chunk (chunk_rows >= n), nothing accumulates and the GEMM writes them
// directly (f32 inside cuBLAS, rounded once). All work is on the legacy
// default stream, like the cross-entropy kernels.
//
// Extra memory of a call, at N = 8192, H = 4096, V = 128256, bf16, 2048 rows:
//   chunk_dtype f32:  2048 x V x (4 + 2) = 1.47 GiB, + 1.96 GiB dW scratch for a bf16 dW
//   chunk_dtype bf16: 2048 x V x 2       = 0.49 GiB, + the same scratch for a bf16 dW
//
// Scratch comes from a stream-ordered memory pool of this file's own that
// keeps freed blocks for the next call, as the frameworks' caching
// allocators do: a cudaMalloc and cudaFree of gigabytes on every call cost
// milliseconds. Between calls the pool holds at most one call's scratch;
// the accounting of gs_device.h counts bytes only while a call holds them.
//
// cuBLAS is not linked: its functions come from the table of
// cublas_lazy.h, which opens the library on the first call, so that
// gradspec starts without it and runs without it where no GPU work asks.
#include <cublas_api.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include "cublas_lazy.h"
#include "target_scan.cuh"

extern "C" {
#include "cross_entropy.h"
#include "cross_entropy_check.h"
#include "gs_device.h"
#include "linear_cross_entropy.h"
#include "linear_cross_entropy_plan.h"
}

extern "C" void gs_cuda_account(long long delta);
extern "C" gs_status gs_cuda_fail(gs_error *err, cudaError_t e, const char *what);

namespace {

constexpr size_t kWorkspaceBytes = (size_t)32 << 20;  // cuBLAS's advice for Hopper

struct PrepOut {
  double d;        // sum of w[t_i] over non-ignored rows
  double count;    // non-ignored rows
  long long bad_row;
  long long bad_value;
};

__device__ __forceinline__ float load_f(const void *p, int dt, int64_t k) {
  if (dt == GS_F32) return ((const float *)p)[k];
  if (dt == GS_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[k]);
  return __half2float(((const __half *)p)[k]);
}

__device__ __forceinline__ void store_f(void *p, int dt, int64_t k, float x) {
  if (dt == GS_F32) ((float *)p)[k] = x;
  else if (dt == GS_BF16) ((__nv_bfloat16 *)p)[k] = __float2bfloat16_rn(x);
  else ((__half *)p)[k] = __float2half_rn(x);
}

// One block: the lowest bad target, D and the count, summed in double in a
// fixed order (the same bits on every run).
__global__ void __launch_bounds__(1024) lce_prep(const void *target, int tgt64, int64_t ignore, int64_t n,
                                                 int64_t v, const float *weight, PrepOut *out) {
  __shared__ double sd[1024], sc[1024];
  __shared__ long long sb[1024];
  const int tid = threadIdx.x;
  const TargetTally mine = tally_targets(target, tgt64, ignore, n, v, weight, tid, blockDim.x);
  sd[tid] = mine.d;
  sc[tid] = mine.count;
  sb[tid] = mine.bad;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) {
      sd[tid] += sd[tid + s];
      sc[tid] += sc[tid + s];
      sb[tid] = min(sb[tid], sb[tid + s]);
    }
    __syncthreads();
  }
  if (tid == 0) {
    out->d = sd[0];
    out->count = sc[0];
    out->bad_row = sb[0] == LLONG_MAX ? -1 : sb[0];
    out->bad_value = sb[0] == LLONG_MAX ? 0 : target_value(target, tgt64, sb[0]);
  }
}

// Row-wise elementwise kernels: blockIdx.y walks the rows, x the columns,
// so that no thread divides a flat index (64-bit division is slow here).
// x (chunk rows of dtype xdt) = the bias: the logits GEMM adds to it (beta 1).
__global__ void bias_rows(void *x, int xdt, int64_t ld, int64_t rows, int64_t v, const void *bias, int bdt) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < v; j += (int64_t)gridDim.x * blockDim.x)
      store_f(x, xdt, r * ld + j, load_f(bias, bdt, j));
}

// dst (rows x cols, dtype dt, row stride) = src (f32, row stride), rounded to nearest even.
__global__ void convert_rows(void *dst, int dt, int64_t dstride, const float *src, int64_t sstride, int64_t rows,
                             int64_t cols) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += (int64_t)gridDim.x * blockDim.x)
      store_f(dst, dt, r * dstride + j, src[r * sstride + j]);
}

dim3 grid_rows(int64_t rows, int64_t cols) {
  int64_t gx = (cols + 255) / 256, gy = rows;
  return dim3((unsigned)(gx < 1 ? 1 : gx > 1024 ? 1024 : gx), (unsigned)(gy < 1 ? 1 : gy > 65535 ? 65535 : gy));
}

__global__ void fill_value(void *p, int dt, int64_t n, float x) {
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
    store_f(p, dt, k, x);
}

__global__ void scale_values(float *p, int64_t n, float f) {
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
    p[k] *= f;
}

unsigned grid_for(int64_t total) {
  int64_t b = (total + 255) / 256;
  return (unsigned)(b < 1 ? 1 : b > 65535 ? 65535 : b);
}

cudaDataType_t cuda_type(gs_dtype d) {
  return d == GS_F32 ? CUDA_R_32F : d == GS_BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

struct DevState {
  bool ready = false;
  const gs_cublas_api *blas = nullptr;
  cublasHandle_t handle = nullptr;
  void *workspace = nullptr;
  cudaMemPool_t pool = nullptr;  // null where pools are unsupported: plain cudaMalloc
};

std::mutex g_mu;
DevState g_dev[16];

gs_status blas_fail(const gs_cublas_api *api, gs_error *err, cublasStatus_t s, const char *what) {
  err->arg = 0;
  snprintf(err->msg, sizeof err->msg, "%s: %s (%s)", what, api->status_string(s), api->status_name(s));
  return GS_ERR_CUDA;
}

gs_status init_device(DevState **out, gs_error *err) {
  int dev = 0, count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaSuccess && count == 0) e = cudaErrorNoDevice;
  if (e == cudaSuccess) e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "no CUDA device");
  if (dev < 0 || dev >= 16) return gs_cuda_fail(err, cudaErrorInvalidDevice, "device index");
  DevState &d = g_dev[dev];
  *out = &d;
  if (d.ready) return GS_OK;
  // The library first: without it nothing below can run.
  const gs_cublas_api *api = gs_cublas(err);
  if (!api) return GS_ERR_CUDA;
  d.blas = api;
  cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
  if (!d.handle) {
    s = api->create(&d.handle);
    if (s != CUBLAS_STATUS_SUCCESS) {
      d.handle = nullptr;
      return blas_fail(api, err, s, "cublasCreate");
    }
  }
  // f32 accumulation everywhere, also inside GEMMs with 16-bit outputs.
  s = api->set_math_mode(d.handle, CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  if (s == CUBLAS_STATUS_SUCCESS) s = api->set_stream(d.handle, 0);
  if (s != CUBLAS_STATUS_SUCCESS) return blas_fail(api, err, s, "cublas setup");
  // The workspace comes from the accounted allocator so that peaks show it.
  gs_status st = d.workspace ? GS_OK : gs_cuda_malloc(&d.workspace, kWorkspaceBytes, err);
  if (st != GS_OK) return st;
  s = api->set_workspace(d.handle, d.workspace, kWorkspaceBytes);
  if (s != CUBLAS_STATUS_SUCCESS) return blas_fail(api, err, s, "cublasSetWorkspace");
  int pools = 0;
  cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, dev);
  if (pools && !d.pool) {
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = dev;
    uint64_t keep = UINT64_MAX;  // never hand freed blocks back to the driver on a sync
    e = cudaMemPoolCreate(&d.pool, &props);
    if (e == cudaSuccess) e = cudaMemPoolSetAttribute(d.pool, cudaMemPoolAttrReleaseThreshold, &keep);
    if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaMemPoolCreate");
  }
  d.ready = true;
  return GS_OK;
}

// Device scratch of one call, from the pool, accounted while held and
// freed on every path.
struct Scratch {
  cudaMemPool_t pool;
  std::vector<std::pair<void *, size_t>> blocks;
  explicit Scratch(cudaMemPool_t p) : pool(p) {}
  ~Scratch() {
    for (auto &b : blocks) {
      if (pool) cudaFreeAsync(b.first, 0);
      else cudaFree(b.first);
      gs_cuda_account(-(long long)b.second);
    }
    cudaGetLastError();
  }
  gs_status take(void **p, size_t bytes, gs_error *err) {
    *p = nullptr;
    if (bytes == 0) return GS_OK;
    cudaError_t e = pool ? cudaMallocFromPoolAsync(p, bytes, pool, 0) : cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
      *p = nullptr;
      char what[80];
      snprintf(what, sizeof what, "device scratch of %zu bytes (lower chunk_rows)", bytes);
      return gs_cuda_fail(err, e, what);
    }
    blocks.push_back({*p, bytes});
    gs_cuda_account((long long)bytes);
    return GS_OK;
  }
};

// Row-major GEMMs through column-major cuBLAS: a row-major M is the
// column-major M^T, so C = A B is computed as C^T = B^T A^T.
struct Blas {
  const gs_cublas_api *api;
  cublasHandle_t h;
  gs_error *err;
  gs_status gemm(const char *what, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k,
                 float alpha, const void *a, gs_dtype adt, int64_t lda, const void *b, int64_t ldb, float beta,
                 void *c, cudaDataType_t ct, int64_t ldc) {
    cublasStatus_t s = api->gemm_ex(h, ta, tb, (int)m, (int)n, (int)k, &alpha, a, cuda_type(adt), (int)lda, b,
                                    cuda_type(adt), (int)ldb, &beta, c, ct, (int)ldc, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? GS_OK : blas_fail(api, err, s, what);
  }
};

gs_status check(cudaError_t e, gs_error *err, const char *what) {
  return e == cudaSuccess ? GS_OK : gs_cuda_fail(err, e, what);
}

gs_status zero_rows(void *p, gs_dtype dt, int64_t rows, int64_t cols, int64_t stride, gs_error *err) {
  if (!p || rows == 0 || cols == 0) return GS_OK;
  const size_t es = gs_lce_dtype_size(dt);
  return check(cudaMemset2D(p, stride * es, 0, cols * es, rows), err, "cudaMemset2D");
}

// No row counts (n = 0 or every target ignored): loss 0 (NaN under mean, as
// PyTorch), every gradient 0, no GEMM.
gs_status nothing_counts(const gs_lce_args *a, const gs_lce_plan *p, gs_error *err) {
  gs_status st = GS_OK;
  if (p->want_loss) {
    if (a->reduction == GS_REDUCE_NONE) {
      st = zero_rows(a->loss, GS_F32, 1, a->n, a->n, err);
    } else {
      const float r = a->reduction == GS_REDUCE_MEAN ? NAN : 0.f;
      st = check(cudaMemcpy(a->loss, &r, sizeof r, cudaMemcpyHostToDevice), err, "writing the loss");
    }
    if (st == GS_OK) st = zero_rows(a->lse, GS_F32, 1, a->n, a->n, err);
    if (st == GS_OK) st = zero_rows(a->z_loss, GS_F32, 1, a->n, a->n, err);
  }
  if (st == GS_OK) st = zero_rows(a->dh, a->dh_dtype, a->n, a->hidden, a->dh_stride, err);
  if (st == GS_OK) st = zero_rows(a->dw, a->dw_dtype, a->v, a->hidden, a->dw_stride, err);
  if (st == GS_OK) st = zero_rows(a->db, a->db_dtype, 1, a->v, a->v, err);
  if (st == GS_OK) st = check(cudaDeviceSynchronize(), err, "zeroing the outputs");
  return st;
}

gs_status check_dtypes(const gs_lce_args *a, gs_error *err) {
  const gs_dtype t = a->h_dtype;
  // the dh GEMM writes its output directly: cuBLAS takes h's type or f32 there
  if (a->dh && a->dh_dtype != t && a->dh_dtype != GS_F32)
    return gs_lce_dtype_error(err, "dh", a->dh_dtype, "cuda", "dh in h's dtype or f32");
  // cuBLAS writes 16-bit logits from inputs of that dtype only, and the
  // gradient GEMMs take G in h's dtype: a 16-bit chunk is h's dtype.
  const gs_dtype cdt = gs_lce_chunk_dtype(a);
  if (cdt != GS_F32 && cdt != t) {
    err->arg = "chunk_dtype";
    snprintf(err->msg, sizeof err->msg,
             "chunk_dtype = %s is not supported by backend cuda with h in %s (f32 or h's dtype)",
             gs_lce_dtype_name(cdt), gs_lce_dtype_name(t));
    return GS_ERR_DTYPE;
  }
  if (a->v > INT_MAX || a->hidden > INT_MAX || a->h_stride > INT_MAX || a->w_stride > INT_MAX ||
      (a->dh && a->dh_stride > INT_MAX) || (a->dw && a->dw_stride > INT_MAX)) {
    err->arg = "W";
    snprintf(err->msg, sizeof err->msg, "sizes and strides above 2^31 - 1 are not supported by cuBLAS");
    return GS_ERR_ARG;
  }
  return GS_OK;
}

gs_status run(const gs_lce_args *a, int backward, gs_error *err) {
  gs_status st = gs_lce_check_args(a, backward, 0, err);
  if (st == GS_OK) st = check_dtypes(a, err);
  if (st != GS_OK) return st;
  std::lock_guard<std::mutex> lock(g_mu);
  DevState *dev = nullptr;
  if ((st = init_device(&dev, err)) != GS_OK) return st;
  Blas blas{dev->blas, dev->handle, err};
  Scratch scratch(dev->pool);
  const int64_t n = a->n, hd = a->hidden, v = a->v;
  const gs_dtype t = a->h_dtype;
  const size_t ts = gs_lce_dtype_size(t);

  // Targets first: an error before anything is written, and the global D.
  PrepOut prep = {0, 0, -1, 0};
  if (n > 0) {
    PrepOut *dprep = nullptr;
    if ((st = scratch.take((void **)&dprep, sizeof *dprep, err)) != GS_OK) return st;
    lce_prep<<<1, 1024>>>(a->target, a->target_dtype == GS_I64, a->ignore_index, n, v, a->weight, dprep);
    st = check(cudaMemcpy(&prep, dprep, sizeof prep, cudaMemcpyDeviceToHost), err, "target scan");
    if (st != GS_OK) return st;
    if (prep.bad_row >= 0) return gs_ce_target_error(err, prep.bad_row, prep.bad_value, v);
  }
  const bool per_row = a->grad_output && a->grad_output_n != 1;
  float go = 1.f;
  if (a->grad_output && !per_row && (a->dh || a->dw || a->db)) {
    st = check(cudaMemcpy(&go, a->grad_output, sizeof go, cudaMemcpyDeviceToHost), err, "reading grad_output");
    if (st != GS_OK) return st;
  }
  gs_lce_plan p;
  gs_lce_plan_init(&p, a, backward, prep.d, prep.count, go);
  if (prep.count == 0) return nothing_counts(a, &p, err);

  const int64_t c = a->chunk_rows > 0 ? (a->chunk_rows < n ? a->chunk_rows : n) : gs_lce_default_chunk_rows(n, v, 1);
  const int64_t nchunks = (n + c - 1) / c;
  const int64_t ldx = (v + 7) / 8 * 8;  // rows on 32 (f32) or 16 (16-bit) bytes, for the vector loads
  const gs_dtype cdt = gs_lce_chunk_dtype(a);
  void *x = nullptr, *g = nullptr, *ones = nullptr;
  float *sums = nullptr;
  if ((st = scratch.take(&x, (size_t)(c * ldx) * gs_lce_dtype_size(cdt), err)) != GS_OK) return st;
  if (p.want_grad && cdt == t) g = x;  // G in place over the logits
  else if (p.want_grad && (st = scratch.take(&g, (size_t)(c * ldx) * ts, err)) != GS_OK) return st;
  // The accumulators of dW and db: the outputs themselves in f32, or in h's
  // dtype when one chunk writes them once; else f32 scratch, converted at the end.
  const bool one_chunk = nchunks == 1;
  void *dw_acc = a->dw, *db_acc = a->db;
  gs_dtype dw_acc_dt = a->dw_dtype, db_acc_dt = a->db_dtype;
  int64_t ldw = a->dw_stride;
  if (a->dw && a->dw_dtype != GS_F32 && !(one_chunk && a->dw_dtype == t)) {
    ldw = hd;
    dw_acc_dt = GS_F32;
    if ((st = scratch.take(&dw_acc, (size_t)(v * hd) * sizeof(float), err)) != GS_OK) return st;
  }
  if (a->db && a->db_dtype != GS_F32 && !(one_chunk && a->db_dtype == t)) {
    db_acc_dt = GS_F32;
    if ((st = scratch.take(&db_acc, (size_t)v * sizeof(float), err)) != GS_OK) return st;
  }
  if (a->db) {
    if ((st = scratch.take(&ones, (size_t)c * ts, err)) != GS_OK) return st;
    fill_value<<<grid_for(c), 256>>>(ones, t, c, 1.f);
  }
  if (p.want_loss && a->reduction != GS_REDUCE_NONE &&
      (st = scratch.take((void **)&sums, (size_t)nchunks * sizeof(float), err)) != GS_OK)
    return st;
  if ((st = check(cudaGetLastError(), err, "setup kernels")) != GS_OK) return st;

  const float alpha = (float)p.alpha;
  for (int64_t i0 = 0, k = 0; i0 < n; i0 += c, k++) {
    const int64_t rows = n - i0 < c ? n - i0 : c;
    const void *hc = (const char *)a->h + i0 * a->h_stride * (int64_t)ts;
    float beta = 0.f;
    if (a->bias) {
      bias_rows<<<grid_rows(rows, v), 256>>>(x, cdt, ldx, rows, v, a->bias, a->bias_dtype);
      if ((st = check(cudaGetLastError(), err, "bias")) != GS_OK) return st;
      beta = 1.f;
    }
    // x^T (v x rows) = W (v x hd) h_c^T: W is the column-major hd x v matrix, transposed.
    st = blas.gemm("cublasGemmEx (logits)", CUBLAS_OP_T, CUBLAS_OP_N, v, rows, hd, 1.f, a->w, t, a->w_stride, hc,
                   a->h_stride, beta, x, cuda_type(cdt), ldx);
    if (st != GS_OK) return st;

    gs_ce_args ce;
    gs_lce_chunk_args(&ce, a, &p, i0, rows, x, cdt, ldx, g, t, ldx, sums ? sums + k : nullptr);
    st = p.want_loss ? gs_ce_forward_cuda(&ce, err) : gs_ce_backward_cuda(&ce, err);
    if (st != GS_OK) return st;
    if (p.want_loss && a->z_loss && p.zl_fix != 1.0) {
      scale_values<<<grid_for(rows), 256>>>((float *)a->z_loss + i0, rows, (float)p.zl_fix);
      if ((st = check(cudaGetLastError(), err, "z_loss")) != GS_OK) return st;
    }
    if (!p.want_grad) continue;

    const float acc = i0 == 0 ? 0.f : 1.f;  // the first chunk overwrites the accumulators
    if (a->dh) {
      // dh_c^T (hd x rows) = W^T (hd x v) G^T (v x rows)
      void *dhc = (char *)a->dh + i0 * a->dh_stride * (int64_t)gs_lce_dtype_size(a->dh_dtype);
      st = blas.gemm("cublasGemmEx (dh)", CUBLAS_OP_N, CUBLAS_OP_N, hd, rows, v, alpha, a->w, t, a->w_stride, g,
                     ldx, 0.f, dhc, cuda_type(a->dh_dtype), a->dh_stride);
      if (st != GS_OK) return st;
    }
    if (a->dw) {
      // dW^T (hd x v) += h_c^T (hd x rows) G (rows x v)
      st = blas.gemm("cublasGemmEx (dW)", CUBLAS_OP_N, CUBLAS_OP_T, hd, v, rows, alpha, hc, t, a->h_stride, g, ldx,
                     acc, dw_acc, cuda_type(dw_acc_dt), ldw);
      if (st != GS_OK) return st;
    }
    if (a->db) {
      // db (v x 1) += G^T (v x rows) 1 (rows x 1)
      st = blas.gemm("cublasGemmEx (db)", CUBLAS_OP_N, CUBLAS_OP_N, v, 1, rows, alpha, g, t, ldx, ones, rows, acc,
                     db_acc, cuda_type(db_acc_dt), v);
      if (st != GS_OK) return st;
    }
  }
  if (a->dw && dw_acc != a->dw)
    convert_rows<<<grid_rows(v, hd), 256>>>(a->dw, a->dw_dtype, a->dw_stride, (const float *)dw_acc, hd, v, hd);
  if (a->db && db_acc != a->db)
    convert_rows<<<grid_rows(1, v), 256>>>(a->db, a->db_dtype, v, (const float *)db_acc, v, 1, v);
  if ((st = check(cudaGetLastError(), err, "converting dW, db")) != GS_OK) return st;
  if (sums) {
    std::vector<float> host((size_t)nchunks);
    st = check(cudaMemcpy(host.data(), sums, host.size() * sizeof(float), cudaMemcpyDeviceToHost), err, "chunk losses");
    if (st != GS_OK) return st;
    double total = 0;
    for (float s : host) total += s;
    const float loss = (float)(total / p.loss_div);
    st = check(cudaMemcpy(a->loss, &loss, sizeof loss, cudaMemcpyHostToDevice), err, "writing the loss");
    if (st != GS_OK) return st;
  }
  return check(cudaDeviceSynchronize(), err, "linear cross-entropy");
}

}  // namespace

extern "C" {

gs_status gs_lce_forward_cuda(const gs_lce_args *a, gs_error *err) { return run(a, 0, err); }
gs_status gs_lce_backward_cuda(const gs_lce_args *a, gs_error *err) { return run(a, 1, err); }

}  // extern "C"
