/* NCCL through dlopen (see nccl_lazy.h). The few types NCCL's API needs are
 * declared here with NCCL's own values, so its header is not needed. */
#include "nccl_lazy.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_device.h"

#ifdef GS_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

typedef struct { char internal[128]; } nccl_unique_id;
typedef void *nccl_comm;
typedef int nccl_result; /* ncclSuccess = 0 */
/* ncclDataType_t: ncclInt32 2, ncclInt64 4, ncclFloat16 6, ncclFloat32 7,
 * ncclFloat64 8, ncclBfloat16 9. ncclRedOp_t: ncclSum 0, ncclMax 2. */
static const int nccl_type_of[] = {[GS_F64] = 8, [GS_F32] = 7, [GS_BF16] = 9, [GS_F16] = 6, [GS_I32] = 2, [GS_I64] = 4};

static struct {
  void *lib;
  char path[512];
  nccl_result (*get_version)(int *);
  nccl_result (*get_unique_id)(nccl_unique_id *);
  nccl_result (*comm_init_rank)(nccl_comm *, int, nccl_unique_id, int);
  nccl_result (*comm_destroy)(nccl_comm);
  const char *(*error_string)(nccl_result);
  nccl_result (*all_reduce)(const void *, void *, size_t, int, int, nccl_comm, void *);
  nccl_result (*all_gather)(const void *, void *, size_t, int, nccl_comm, void *);
  nccl_result (*broadcast)(const void *, void *, size_t, int, int, nccl_comm, void *);
} nccl;

static int bind(void **slot_, const char *name, gs_error *err) {
  *slot_ = dlsym(nccl.lib, name);
  if (!*slot_) {
    snprintf(err->msg, sizeof err->msg, "%.120s has no %s", nccl.path, name);
    return 0;
  }
  return 1;
}

int gs_nccl_load(char *path, size_t len, int *version, gs_error *err) {
  if (!nccl.lib) {
    const char *named = getenv("GRADSPEC_NCCL");
    const char *tries[] = {named && *named ? named : "libnccl.so.2", named && *named ? NULL : "libnccl.so", NULL};
    for (int i = 0; tries[i] && !nccl.lib; i++) {
      nccl.lib = dlopen(tries[i], RTLD_NOW | RTLD_LOCAL);
      if (nccl.lib) snprintf(nccl.path, sizeof nccl.path, "%s", tries[i]);
    }
    if (!nccl.lib) {
      const char *why = dlerror();
      if (named && *named) snprintf(err->msg, sizeof err->msg, "GRADSPEC_NCCL=%s: %s", named, why ? why : "cannot load");
      else snprintf(err->msg, sizeof err->msg, "NCCL not found: neither libnccl.so.2 nor libnccl.so is on the library path (set GRADSPEC_NCCL to the file)");
      return 0;
    }
    if (!bind((void **)&nccl.get_version, "ncclGetVersion", err) ||
        !bind((void **)&nccl.get_unique_id, "ncclGetUniqueId", err) ||
        !bind((void **)&nccl.comm_init_rank, "ncclCommInitRank", err) ||
        !bind((void **)&nccl.comm_destroy, "ncclCommDestroy", err) ||
        !bind((void **)&nccl.error_string, "ncclGetErrorString", err) ||
        !bind((void **)&nccl.all_reduce, "ncclAllReduce", err) ||
        !bind((void **)&nccl.all_gather, "ncclAllGather", err) ||
        !bind((void **)&nccl.broadcast, "ncclBroadcast", err)) {
      dlclose(nccl.lib);
      nccl.lib = NULL;
      return 0;
    }
  }
  if (path && len) snprintf(path, len, "%s", nccl.path);
  if (version) {
    *version = 0;
    nccl.get_version(version);
  }
  return 1;
}

static gs_status need_nccl(gs_error *err) {
  return gs_nccl_load(NULL, 0, NULL, err) ? GS_OK : GS_ERR_ARG;
}

static gs_status check(nccl_result r, const char *what, gs_error *err) {
  if (r == 0) return GS_OK;
  snprintf(err->msg, sizeof err->msg, "%s: %s (ncclResult %d)", what, nccl.error_string(r), r);
  return GS_ERR_CUDA;
}

/* NCCL queues the work on the stream; the tensors are read right after. */
static gs_status wait_done(nccl_result r, const char *what, gs_error *err) {
  gs_status st = check(r, what, err);
  if (st != GS_OK) return st;
  return gs_cuda_synchronize(err);
}

gs_status gs_nccl_unique_id(void *id128, gs_error *err) {
  gs_status st = need_nccl(err);
  if (st != GS_OK) return st;
  return check(nccl.get_unique_id((nccl_unique_id *)id128), "ncclGetUniqueId", err);
}

gs_status gs_nccl_init(void **comm, int ranks, const void *id128, int rank, gs_error *err) {
  gs_status st = need_nccl(err);
  if (st != GS_OK) return st;
  nccl_unique_id id;
  memcpy(&id, id128, sizeof id);
  *comm = NULL;
  return check(nccl.comm_init_rank((nccl_comm *)comm, ranks, id, rank), "ncclCommInitRank", err);
}

void gs_nccl_destroy(void *comm) {
  if (comm && nccl.lib) nccl.comm_destroy(comm);
}

gs_status gs_nccl_all_reduce(void *comm, void *buf, int64_t count, gs_dtype dtype, int reduce, gs_error *err) {
  return wait_done(nccl.all_reduce(buf, buf, (size_t)count, nccl_type_of[dtype], reduce == 1 ? 2 : 0, comm, NULL),
                   "ncclAllReduce", err);
}

gs_status gs_nccl_all_gather(void *comm, const void *src, void *dst, int64_t count, gs_dtype dtype, gs_error *err) {
  return wait_done(nccl.all_gather(src, dst, (size_t)count, nccl_type_of[dtype], comm, NULL), "ncclAllGather", err);
}

gs_status gs_nccl_broadcast(void *comm, void *buf, int64_t count, gs_dtype dtype, int root, gs_error *err) {
  return wait_done(nccl.broadcast(buf, buf, (size_t)count, nccl_type_of[dtype], root, comm, NULL), "ncclBroadcast",
                   err);
}

gs_status gs_nccl_use_device(int device, gs_error *err) {
#ifdef GS_HAVE_CUDA
  cudaError_t e = cudaSetDevice(device);
  if (e == cudaSuccess) return GS_OK;
  snprintf(err->msg, sizeof err->msg, "cudaSetDevice(%d): %s", device, cudaGetErrorString(e));
  return GS_ERR_CUDA;
#else
  (void)device;
  snprintf(err->msg, sizeof err->msg, "this gradspec was built without CUDA (nvcc not found or -DGRADSPEC_CUDA=OFF)");
  return GS_ERR_NO_DEVICE;
#endif
}
