/* cuBLAS opened with dlopen on first use (kernels/cuda/cublas_lazy.c), so
 * that gradspec starts without mapping libcublas and libcublasLt (hundreds of
 * MiB, most of the start-up time of a CUDA build) and runs its CPU work on a
 * machine that has no cuBLAS at all.
 *
 * The table holds the cuBLAS functions gradspec's kernels call, with the
 * signatures of cublas_api.h (the same in cuBLAS 12 and 13). Only the types
 * come from the header; nothing links against libcublas. */
#ifndef GS_CUBLAS_LAZY_H
#define GS_CUBLAS_LAZY_H

#include <cublas_api.h>

#include "gs_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  cublasStatus_t (*create)(cublasHandle_t *handle);                        /* cublasCreate_v2 */
  cublasStatus_t (*set_math_mode)(cublasHandle_t handle, cublasMath_t mode);
  cublasStatus_t (*set_stream)(cublasHandle_t handle, cudaStream_t stream); /* cublasSetStream_v2 */
  cublasStatus_t (*set_workspace)(cublasHandle_t handle, void *workspace, size_t bytes);
  cublasStatus_t (*gemm_ex)(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *a, cudaDataType a_type, int lda, const void *b,
                            cudaDataType b_type, int ldb, const void *beta, void *c, cudaDataType c_type, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo);
  const char *(*status_string)(cublasStatus_t s);
  const char *(*status_name)(cublasStatus_t s);
  char path[256]; /* the file the library was loaded from */
} gs_cublas_api;

/* The table, loading the library on the first call (thread-safe). NULL when
 * it cannot be loaded: err->msg names the library and where it was looked
 * for, and the status to return is GS_ERR_CUDA. A failure is remembered:
 * later calls fail the same way without searching again.
 *
 * GRADSPEC_CUBLAS names the file to load (nothing else is tried then);
 * otherwise libcublas.so.13, libcublas.so.12 and libcublas.so are looked
 * for on the library path, then under $CUDA_HOME/lib64, /usr/local/cuda/lib64
 * and /usr/local/cuda/targets/x86_64-linux/lib. */
const gs_cublas_api *gs_cublas(gs_error *err);

#ifdef __cplusplus
}
#endif

#endif
