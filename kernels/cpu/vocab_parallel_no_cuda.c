/* The CUDA vocab-parallel passes in a build without CUDA: they say so. */
#include <stdio.h>

#include "../vocab_parallel.h"

gs_status gs_vp_pass_cuda(const gs_vp_args *a, int pass, gs_error *err) {
  (void)a;
  (void)pass;
  snprintf(err->msg, sizeof err->msg, "this gradspec was built without CUDA (nvcc not found or -DGRADSPEC_CUDA=OFF)");
  return GS_ERR_NO_DEVICE;
}
