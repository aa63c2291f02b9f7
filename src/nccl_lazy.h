/* NCCL, opened with dlopen on first use (src/nccl_lazy.c): a build needs
 * neither NCCL's headers nor its library, and a machine without NCCL runs
 * everything else. GRADSPEC_NCCL names the file to load; otherwise
 * libnccl.so.2 (then libnccl.so) is looked up on the library path.
 * Collectives run on the legacy default stream and are waited for. */
#ifndef GS_NCCL_LAZY_H
#define GS_NCCL_LAZY_H

#include "gs_types.h"

/* 1 when loaded, with the file in path and NCCL's version (e.g. 22105) in
 * *version; 0 with err->msg saying what was tried. Touches no GPU. */
int gs_nccl_load(char *path, size_t len, int *version, gs_error *err);
/* Makes `device` the current CUDA device of this process (a rank's GPU:
 * every GPU stays visible, so NCCL can use peer-to-peer copies). */
gs_status gs_nccl_use_device(int device, gs_error *err);
/* NCCL's 128-byte unique id, made by one rank and handed to the others. */
gs_status gs_nccl_unique_id(void *id128, gs_error *err);
/* A communicator of `ranks` ranks on the current device; *comm is opaque. */
gs_status gs_nccl_init(void **comm, int ranks, const void *id128, int rank, gs_error *err);
void gs_nccl_destroy(void *comm);
/* Device buffers. reduce: 0 sum, 1 max. all_gather: dst holds ranks * count. */
gs_status gs_nccl_all_reduce(void *comm, void *buf, int64_t count, gs_dtype dtype, int reduce, gs_error *err);
gs_status gs_nccl_all_gather(void *comm, const void *src, void *dst, int64_t count, gs_dtype dtype, gs_error *err);
gs_status gs_nccl_broadcast(void *comm, void *buf, int64_t count, gs_dtype dtype, int root, gs_error *err);

#endif
