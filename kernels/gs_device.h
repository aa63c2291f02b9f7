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

/* Loads cuBLAS now (the first GPU linear cross entropy otherwise does):
 * 1 with the file it was loaded from in path, 0 with err->msg naming the
 * library and where it was looked for. GRADSPEC_CUBLAS names the file to
 * load instead of searching. Needs no GPU. */
int gs_cuda_blas_load(char *path, size_t len, gs_error *err);

#ifdef __cplusplus
}
#endif

#endif
