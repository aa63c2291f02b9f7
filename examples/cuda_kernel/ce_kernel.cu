// Cross entropy over f32 logits on the GPU, one block per row: a small,
// readable kernel that gradspec compiles at run time (register.lua) and holds
// to its f64 reference (ce_kernel_spec.lua).
//
// Row i, with target t and g = dLoss/dloss_i:
//   m = max_j x_j,  s = sum_j exp(x_j - m),  lse = m + log s
//   loss_i = (m - x_t) + log s          (never lse - x_t: that loses digits)
//   grad_ij = g * (p_j - [j == t]),     p_j = exp(x_j - m) / s
// A row whose target is ignore_index has loss 0, lse 0 and a zero gradient
// row. Reductions: "none" keeps loss_i; ce_reduce sums them, and divides by
// the count of rows not ignored for "mean" (0/0 = NaN when all are).
// log_probs_i = -loss_i, per row.
//
// Layout: row i of the logits starts at logits + i * x_stride, of the
// gradient at grad + i * g_stride (strides in elements, >= v). Targets are
// int64. grad_output is NULL (every g is grad_scale), one value, or one per
// row; under "mean" every g is further divided by *count.
//
// Planted bugs, to see the spec catch them (register.lua passes -DBUG_SIGN,
// -DBUG_IGNORE or -DBUG_OOB when GS_EXAMPLE_BUG is sign, ignore or oob):
//   BUG_SIGN    the gradient's sign is flipped
//   BUG_IGNORE  ignored rows get g * p_j instead of a zero row
//   BUG_OOB     the gradient loop writes one element past the end of each row

#ifndef CE_BLOCK
#define CE_BLOCK 256  // threads per block; a power of two
#endif

// -inf as its bit pattern: NVRTC compiles without <math.h>'s INFINITY.
#define NEG_INF __int_as_float(0xff800000)

// Block-wide reductions through shared memory: every thread brings a value
// and gets the block's result. Tree halving needs CE_BLOCK a power of two.
__device__ float block_max(float v, float *buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int half = CE_BLOCK / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) buf[threadIdx.x] = fmaxf(buf[threadIdx.x], buf[threadIdx.x + half]);
    __syncthreads();
  }
  float r = buf[0];
  __syncthreads();  // buf is reused by the next reduction
  return r;
}

__device__ float block_sum(float v, float *buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int half = CE_BLOCK / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) buf[threadIdx.x] += buf[threadIdx.x + half];
    __syncthreads();
  }
  float r = buf[0];
  __syncthreads();
  return r;
}

// m and s of one row. fmaxf skips NaN, but a NaN logit still makes s (and
// so the row's results) NaN; a +inf logit gives inf - inf = NaN too.
__device__ void row_stats(const float *x, long long v, float *buf, float *m, float *s) {
  float local = NEG_INF;
  for (long long j = threadIdx.x; j < v; j += CE_BLOCK) local = fmaxf(local, x[j]);
  *m = block_max(local, buf);
  float sum = 0.0f;
  for (long long j = threadIdx.x; j < v; j += CE_BLOCK) sum += expf(x[j] - *m);
  *s = block_sum(sum, buf);
}

// dLoss/dloss_i.
__device__ float row_scale(long long row, const float *grad_output, long long grad_output_n, float grad_scale,
                           const float *count) {
  float g = grad_scale;
  if (grad_output) g *= grad_output[grad_output_n == 1 ? 0 : row];
  if (count) g /= *count;
  return g;
}

__device__ void grad_row(const float *x, long long v, long long t, float m, float s, float g, float *grad) {
  float log_s = logf(s);
#ifdef BUG_OOB
  for (long long j = threadIdx.x; j <= v; j += CE_BLOCK) {
#else
  for (long long j = threadIdx.x; j < v; j += CE_BLOCK) {
#endif
    float z = x[j] - m - log_s;  // log p_j
    // p_t - 1 as expm1(log p_t): no cancellation when p_t is close to 1
    float d = j == t ? expm1f(z) : expf(z);
#ifdef BUG_SIGN
    d = -d;
#endif
    grad[j] = g * d;
  }
}

__device__ void zero_row(float *grad, long long v) {
  for (long long j = threadIdx.x; j < v; j += CE_BLOCK) grad[j] = 0.0f;
}

// The target of a row that is not ignored must lie in [0, v): the first bad
// row goes to *bad_row (which starts above every row index) and nothing of
// that row is written.
__device__ bool target_ok(long long t, long long v, long long row, unsigned long long *bad_row) {
  if (t >= 0 && t < v) return true;
  if (threadIdx.x == 0) atomicMin(bad_row, (unsigned long long)row);
  return false;
}

// Forward: loss_i and lse_i for every row; with grad != NULL also the
// gradient (the fused forward+backward).
extern "C" __global__ void ce_forward(const float *logits, long long x_stride, const long long *target, long long v,
                                      long long ignore_index, float *loss, float *lse, float *grad,
                                      long long g_stride, const float *grad_output, long long grad_output_n,
                                      float grad_scale, const float *count, unsigned long long *bad_row) {
  __shared__ float buf[CE_BLOCK];
  long long row = blockIdx.x;
  const float *x = logits + row * x_stride;
  float *grow = grad ? grad + row * g_stride : nullptr;
  long long t = target[row];
  if (t == ignore_index) {
    if (threadIdx.x == 0) loss[row] = lse[row] = 0.0f;
#ifdef BUG_IGNORE
    if (grow) {
      float m, s;
      row_stats(x, v, buf, &m, &s);
      grad_row(x, v, -1, m, s, row_scale(row, grad_output, grad_output_n, grad_scale, count), grow);
    }
#else
    if (grow) zero_row(grow, v);
#endif
    return;
  }
  if (!target_ok(t, v, row, bad_row)) return;
  float m, s;
  row_stats(x, v, buf, &m, &s);
  if (threadIdx.x == 0) {
    loss[row] = (m - x[t]) + logf(s);
    lse[row] = m + logf(s);
  }
  if (grow) grad_row(x, v, t, m, s, row_scale(row, grad_output, grad_output_n, grad_scale, count), grow);
}

// Backward: the gradient alone.
extern "C" __global__ void ce_backward(const float *logits, long long x_stride, const long long *target, long long v,
                                       long long ignore_index, float *grad, long long g_stride,
                                       const float *grad_output, long long grad_output_n, float grad_scale,
                                       const float *count, unsigned long long *bad_row) {
  __shared__ float buf[CE_BLOCK];
  long long row = blockIdx.x;
  const float *x = logits + row * x_stride;
  float *grow = grad + row * g_stride;
  long long t = target[row];
  if (t == ignore_index) {
#ifdef BUG_IGNORE
    float m, s;
    row_stats(x, v, buf, &m, &s);
    grad_row(x, v, -1, m, s, row_scale(row, grad_output, grad_output_n, grad_scale, count), grow);
#else
    zero_row(grow, v);
#endif
    return;
  }
  if (!target_ok(t, v, row, bad_row)) return;
  float m, s;
  row_stats(x, v, buf, &m, &s);
  grad_row(x, v, t, m, s, row_scale(row, grad_output, grad_output_n, grad_scale, count), grow);
}

// log_probs: out_i = (x_t - m) - log s = -loss_i, always <= 0; 0 for an
// ignored row.
extern "C" __global__ void ce_log_probs(const float *logits, long long x_stride, const long long *target,
                                        long long v, long long ignore_index, float *out,
                                        unsigned long long *bad_row) {
  __shared__ float buf[CE_BLOCK];
  long long row = blockIdx.x;
  const float *x = logits + row * x_stride;
  long long t = target[row];
  if (t == ignore_index) {
    if (threadIdx.x == 0) out[row] = 0.0f;
    return;
  }
  if (!target_ok(t, v, row, bad_row)) return;
  float m, s;
  row_stats(x, v, buf, &m, &s);
  if (threadIdx.x == 0) out[row] = (x[t] - m) - logf(s);
}

// One block: *count = the rows whose target is not ignore_index.
extern "C" __global__ void ce_count(const long long *target, long long n, long long ignore_index, float *count) {
  __shared__ float buf[CE_BLOCK];
  float c = 0.0f;
  for (long long i = threadIdx.x; i < n; i += CE_BLOCK) c += target[i] != ignore_index ? 1.0f : 0.0f;
  c = block_sum(c, buf);
  if (threadIdx.x == 0) *count = c;
}

// One block: *out = sum of the n per-row losses, divided by *count for
// "mean" (count != NULL).
extern "C" __global__ void ce_reduce(const float *loss, long long n, const float *count, float *out) {
  __shared__ float buf[CE_BLOCK];
  float sum = 0.0f;
  for (long long i = threadIdx.x; i < n; i += CE_BLOCK) sum += loss[i];
  sum = block_sum(sum, buf);
  if (threadIdx.x == 0) *out = count ? sum / *count : sum;
}
