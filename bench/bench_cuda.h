/* Error checks shared by the CUDA benchmarks: a failed call ends the run
 * with the file, line, call and CUDA's message. */
#ifndef GS_BENCH_CUDA_H
#define GS_BENCH_CUDA_H

#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define CK(call)                                                                              \
  do {                                                                                        \
    cudaError_t e_ = (call);                                                                  \
    if (e_ != cudaSuccess) {                                                                  \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                                \
    }                                                                                         \
  } while (0)

#endif
