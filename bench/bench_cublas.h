/* The cuBLAS counterpart of bench_cuda.h's CK: a failed call ends the run
 * with the file, line, call and cuBLAS's message. */
#ifndef GS_BENCH_CUBLAS_H
#define GS_BENCH_CUBLAS_H

#include <cstdio>
#include <cstdlib>
#include <cublas_v2.h>

#define CBLAS(call)                                                                             \
  do {                                                                                          \
    cublasStatus_t s_ = (call);                                                                 \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                          \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cublasGetStatusString(s_)); \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

#endif
