/* Stand-ins for kernels/cuda/ in a build without CUDA: every call says so. */
#include <stdio.h>

#include "../cross_entropy.h"
#include "../gs_device.h"

static gs_status no_cuda(gs_error *err) {
  snprintf(err->msg, sizeof err->msg, "this gradspec was built without CUDA (nvcc not found or -DGRADSPEC_CUDA=OFF)");
  return GS_ERR_NO_DEVICE;
}

int gs_cuda_built(void) { return 0; }
int gs_cuda_device_count(gs_error *err) { no_cuda(err); return 0; }
gs_status gs_cuda_describe(char *buf, size_t len, gs_error *err) {
  if (len) buf[0] = 0;
  return no_cuda(err);
}
gs_status gs_cuda_malloc(void **ptr, size_t bytes, gs_error *err) {
  (void)bytes;
  *ptr = 0;
  return no_cuda(err);
}
void gs_cuda_free(void *ptr) { (void)ptr; }
gs_status gs_cuda_memcpy(void *dst, const void *src, size_t bytes, int kind, gs_error *err) {
  (void)dst; (void)src; (void)bytes; (void)kind;
  return no_cuda(err);
}
gs_status gs_cuda_memset(void *ptr, int value, size_t bytes, gs_error *err) {
  (void)ptr; (void)value; (void)bytes;
  return no_cuda(err);
}
gs_status gs_cuda_synchronize(gs_error *err) { return no_cuda(err); }
size_t gs_cuda_bytes_in_use(void) { return 0; }
size_t gs_cuda_peak_bytes(void) { return 0; }
void gs_cuda_reset_peak(void) {}
int gs_cuda_blas_load(char *path, size_t len, gs_error *err) {
  if (len) path[0] = 0;
  no_cuda(err);
  return 0;
}

gs_status gs_cuda_check_capability(gs_error *err) { return no_cuda(err); }
const char *gs_ce_cuda_plan_name(int i) { (void)i; return 0; }
long long gs_ce_cuda_plan_count(int i) { (void)i; return 0; }
void gs_ce_cuda_reset_plan_counts(void) {}
gs_status gs_ce_cuda_force_plan(const char *name, gs_error *err) { (void)name; return no_cuda(err); }
const char *gs_ce_cuda_forced_plan(void) { return "auto"; }
int gs_ce_cuda_clusters(gs_error *err) { no_cuda(err); return -1; }

#define GS_NO_CUDA_OP(name) \
  gs_status name(const gs_ce_args *a, gs_error *err) { (void)a; return no_cuda(err); }
GS_NO_CUDA_OP(gs_ce_forward_cuda)
GS_NO_CUDA_OP(gs_ce_backward_cuda)
GS_NO_CUDA_OP(gs_log_probs_forward_cuda)
GS_NO_CUDA_OP(gs_log_probs_backward_cuda)
GS_NO_CUDA_OP(gs_entropy_forward_cuda)
GS_NO_CUDA_OP(gs_entropy_backward_cuda)
