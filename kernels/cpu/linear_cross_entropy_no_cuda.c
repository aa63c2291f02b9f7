/* Stand-ins for kernels/cuda/linear_cross_entropy.cu in a build without CUDA. */
#include <stdio.h>

#include "../linear_cross_entropy.h"

static gs_status no_cuda(gs_error *err) {
  err->arg = 0;
  snprintf(err->msg, sizeof err->msg, "this gradspec was built without CUDA (nvcc not found or -DGRADSPEC_CUDA=OFF)");
  return GS_ERR_NO_DEVICE;
}

gs_status gs_lce_forward_cuda(const gs_lce_args *a, gs_error *err) { (void)a; return no_cuda(err); }
gs_status gs_lce_backward_cuda(const gs_lce_args *a, gs_error *err) { (void)a; return no_cuda(err); }
