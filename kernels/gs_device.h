/* Device memory for tensors on "cuda". Implemented in kernels/cuda/device.cu
 * when CUDA is built, and by kernels/cpu/no_device.c (every call answers
 * GS_ERR_NO_DEVICE) when it is not.
 *
 * Nothing of CUDA is loaded at start-up: the CUDA runtime (linked
 * statically) opens the driver on its first call, and cuBLAS is opened with
 * dlopen by the first call that needs it (kernels/cuda/cublas_lazy.h). */
#ifndef GS_DEVICE_H
#define GS_DEVICE_H

#include "gs_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the build has CUDA code in it at all. */
int gs_cuda_built(void);
/* Number of usable devices; 0 with err->msg saying why when there is none. */
int gs_cuda_device_count(gs_error *err);
/* A one-line description of device 0 ("NVIDIA H100 80GB HBM3, sm_90"). */
gs_status gs_cuda_describe(char *buf, size_t len, gs_error *err);

gs_status gs_cuda_malloc(void **ptr, size_t bytes, gs_error *err);
void gs_cuda_free(void *ptr);
/* kind: 0 host->device, 1 device->host, 2 device->device. */
gs_status gs_cuda_memcpy(void *dst, const void *src, size_t bytes, int kind, gs_error *err);
gs_status gs_cuda_memset(void *ptr, int value, size_t bytes, gs_error *err);
gs_status gs_cuda_synchronize(gs_error *err);
/* Bytes currently allocated by gs_cuda_malloc, and the peak since the last reset. */
size_t gs_cuda_bytes_in_use(void);
size_t gs_cuda_peak_bytes(void);
void gs_cuda_reset_peak(void);

/* Device 0's compute capability against what the kernels need (8.0; plans
 * with thread-block clusters 9.0, chosen at run time): GS_OK, or
 * GS_ERR_NO_DEVICE with err->msg naming the device and its capability.
 * Checked once, at the start of CUDA use (device count, first allocation,
 * first kernel call). GRADSPEC_CUDA_PRETEND_CC=7.5 makes it see another
 * capability, for specs of the message. */
gs_status gs_cuda_check_capability(gs_error *err);

/* The cross-entropy kernels' plans and paths (kernels/cuda/cross_entropy.cu):
 * the name of counter i (NULL past the last; the first five are plans, the
 * others paths counted beside them), how many calls took it since the last
 * reset, and the reset. */
const char *gs_ce_cuda_plan_name(int i);
long long gs_ce_cuda_plan_count(int i);
void gs_ce_cuda_reset_plan_counts(void);
/* Forces a plan by name on every later call ("auto" or NULL: the automatic
 * choice); GRADSPEC_CUDA_PLAN does the same from the start. A plan the device
 * or the row cannot take makes the call an error. gs_ce_cuda_forced_plan
 * names the plan in force ("auto" when none). */
gs_status gs_ce_cuda_force_plan(const char *name, gs_error *err);
const char *gs_ce_cuda_forced_plan(void);
/* 1 when plans with thread-block clusters can run (compute capability 9.0 or
 * newer, and GRADSPEC_CUDA_PORTABLE unset or 0), 0 when not, -1 with err->msg
 * when the device cannot be used. */
int gs_ce_cuda_clusters(gs_error *err);

/* Loads cuBLAS now (the first GPU linear cross entropy otherwise does):
 * 1 with the file it was loaded from in path, 0 with err->msg naming the
 * library and where it was looked for. GRADSPEC_CUBLAS names the file to
 * load instead of searching. Needs no GPU. */
int gs_cuda_blas_load(char *path, size_t len, gs_error *err);

#ifdef __cplusplus
}
#endif

#endif
