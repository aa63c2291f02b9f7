// Device memory for tensors on "cuda" (kernels/gs_device.h), with byte
// accounting so that tests and benchmarks can see what a kernel allocates.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <unistd.h>

extern "C" {
#include "gs_device.h"
}

namespace {

std::atomic<size_t> g_in_use{0};
std::atomic<size_t> g_peak{0};
std::mutex g_sizes_mu;
std::unordered_map<void *, size_t> g_sizes;

void note_peak(size_t now) {
  size_t p = g_peak.load(std::memory_order_relaxed);
  while (now > p && !g_peak.compare_exchange_weak(p, now, std::memory_order_relaxed)) {
  }
}

// No device and no driver are "no device", not a CUDA failure: a build with
// CUDA must still run its CPU work on a machine without a GPU.
bool is_no_device(cudaError_t e) {
  return e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
         e == cudaErrorInvalidDevice || e == cudaErrorCompatNotSupportedOnDevice;
}

}  // namespace

extern "C" {

// Shared with cross_entropy.cu: scratch memory a kernel call takes for itself
// is counted like memory the caller takes, so the peak shows it.
void gs_cuda_account(long long delta) {
  if (delta >= 0) {
    note_peak(g_in_use.fetch_add((size_t)delta) + (size_t)delta);
  } else {
    g_in_use.fetch_sub((size_t)(-delta));
  }
}

gs_status gs_cuda_fail(gs_error *err, cudaError_t e, const char *what) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  if (err) {
    err->arg = 0;
    snprintf(err->msg, sizeof err->msg, "%s: %s (%s)", what, cudaGetErrorString(e),
             cudaGetErrorName(e));
  }
  return is_no_device(e) ? GS_ERR_NO_DEVICE : GS_ERR_CUDA;
}

int gs_cuda_built(void) { return 1; }

// Checked once per process: the capability does not change, and the device
// count and every allocation ask.
gs_status gs_cuda_check_capability(gs_error *err) {
  static std::mutex mu;
  static int state = 0;  // 0 unchecked, 1 usable, 2 too old
  static char why[sizeof(((gs_error *)0)->msg)];
  std::lock_guard<std::mutex> lock(mu);
  if (state == 0) {
    int dev = 0;
    cudaDeviceProp p;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&p, dev);
    if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaGetDeviceProperties");
    int major = p.major, minor = p.minor;
    const char *pretend = getenv("GRADSPEC_CUDA_PRETEND_CC");
    if (pretend && *pretend) sscanf(pretend, "%d.%d", &major, &minor);
    if (major < 8) {
      snprintf(why, sizeof why,
               "%.60s (device %d) has compute capability %d.%d: gradspec's CUDA kernels need 8.0 or newer "
               "(A100, L4, RTX 30xx and later)",
               p.name, dev, major, minor);
      state = 2;
    } else {
      state = 1;
    }
  }
  if (state == 1) return GS_OK;
  if (err) {
    err->arg = 0;
    memcpy(err->msg, why, sizeof why);
  }
  return GS_ERR_NO_DEVICE;
}

// Why cudaGetDeviceCount found nothing, in plain words, for the message
// that starts "no CUDA device found". An insufficient-driver error is what
// the runtime reports when no NVIDIA driver is loaded at all (a machine
// without a GPU) as well as when the driver is older than the runtime: the
// kernel module's /proc entry tells the two apart.
static const char *no_device_cause(cudaError_t e) {
  switch (e) {
    case cudaErrorInsufficientDriver:
      if (access("/proc/driver/nvidia/version", F_OK) != 0) return "no NVIDIA driver is loaded on this machine";
      return "the NVIDIA driver is older than this CUDA runtime needs";
    case cudaErrorNoDevice:
      return "the NVIDIA driver sees no GPU";
    case cudaErrorCompatNotSupportedOnDevice:
      return "the CUDA forward-compatibility driver does not support this GPU";
    default:
      return "cudaGetDeviceCount failed";
  }
}

int gs_cuda_device_count(gs_error *err) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n <= 0) {
    if (e == cudaSuccess) e = cudaErrorNoDevice;
    cudaGetLastError();
    if (err) {
      err->arg = 0;
      snprintf(err->msg, sizeof err->msg, "no CUDA device found (%s: %s)", no_device_cause(e),
               cudaGetErrorString(e));
    }
    return 0;
  }
  if (gs_cuda_check_capability(err) != GS_OK) return 0;
  return n;
}

gs_status gs_cuda_describe(char *buf, size_t len, gs_error *err) {
  if (len) buf[0] = 0;
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  cudaDeviceProp p;
  if (e == cudaSuccess) e = cudaGetDeviceProperties(&p, dev);
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaGetDeviceProperties");
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  snprintf(buf, len, "%s, sm_%d%d, %d SMs, %.1f GiB, L2 %d MiB, driver %d.%d, runtime %d.%d",
           p.name, p.major, p.minor, p.multiProcessorCount,
           (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), p.l2CacheSize >> 20,
           drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
  return GS_OK;
}

gs_status gs_cuda_malloc(void **ptr, size_t bytes, gs_error *err) {
  *ptr = 0;
  if (bytes == 0) return GS_OK;
  if (gs_cuda_check_capability(err) != GS_OK) return GS_ERR_NO_DEVICE;
  cudaError_t e = cudaMalloc(ptr, bytes);
  if (e != cudaSuccess) {
    *ptr = 0;
    char what[64];
    snprintf(what, sizeof what, "cudaMalloc(%zu bytes)", bytes);
    return gs_cuda_fail(err, e, what);
  }
  {
    std::lock_guard<std::mutex> lock(g_sizes_mu);
    g_sizes[*ptr] = bytes;
  }
  gs_cuda_account((long long)bytes);
  return GS_OK;
}

void gs_cuda_free(void *ptr) {
  if (!ptr) return;
  size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(g_sizes_mu);
    auto it = g_sizes.find(ptr);
    if (it == g_sizes.end()) return;  // not ours: freeing it would corrupt the count
    bytes = it->second;
    g_sizes.erase(it);
  }
  cudaFree(ptr);
  cudaGetLastError();
  gs_cuda_account(-(long long)bytes);
}

gs_status gs_cuda_memcpy(void *dst, const void *src, size_t bytes, int kind, gs_error *err) {
  static const cudaMemcpyKind kinds[3] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                                          cudaMemcpyDeviceToDevice};
  if (kind < 0 || kind > 2) {
    err->arg = "kind";
    snprintf(err->msg, sizeof err->msg, "memcpy kind %d is not 0, 1 or 2", kind);
    return GS_ERR_ARG;
  }
  if (bytes == 0) return GS_OK;
  cudaError_t e = cudaMemcpy(dst, src, bytes, kinds[kind]);
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaMemcpy");
  return GS_OK;
}

gs_status gs_cuda_memset(void *ptr, int value, size_t bytes, gs_error *err) {
  if (bytes == 0) return GS_OK;
  cudaError_t e = cudaMemset(ptr, value, bytes);
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaMemset");
  return GS_OK;
}

gs_status gs_cuda_synchronize(gs_error *err) {
  cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) return gs_cuda_fail(err, e, "cudaDeviceSynchronize");
  return GS_OK;
}

size_t gs_cuda_bytes_in_use(void) { return g_in_use.load(); }
size_t gs_cuda_peak_bytes(void) { return g_peak.load(); }
void gs_cuda_reset_peak(void) { g_peak.store(g_in_use.load()); }

}  // extern "C"
