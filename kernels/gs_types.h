/* Types and status codes shared by every kernel, the host and (through the
 * generated FFI cdef) the Lua side. Compiled with -DGS_FFI this header must
 * stay plain C declarations: no includes, no macros that LuaJIT cannot parse. */
#ifndef GS_TYPES_H
#define GS_TYPES_H

#ifndef GS_FFI
#include <stddef.h>
#include <stdint.h>
#endif

typedef enum {
  GS_F64 = 0,
  GS_F32 = 1,
  GS_BF16 = 2,
  GS_F16 = 3,
  GS_I32 = 4,
  GS_I64 = 5
} gs_dtype;

typedef enum {
  GS_REDUCE_NONE = 0,
  GS_REDUCE_SUM = 1,
  GS_REDUCE_MEAN = 2
} gs_reduction;

typedef enum {
  GS_OK = 0,
  GS_ERR_TARGET = 1,    /* err.row, err.value: target outside [0, V), not ignore_index */
  GS_ERR_ARG = 2,       /* err.arg names the field, err.msg says why */
  GS_ERR_DTYPE = 3,     /* err.arg names the field whose dtype is unsupported */
  GS_ERR_NOMEM = 4,
  GS_ERR_CUDA = 5,      /* err.msg holds the CUDA error string */
  GS_ERR_NO_DEVICE = 6  /* built with CUDA, but no usable device */
} gs_status;

/* Filled by a kernel that returns something other than GS_OK. Kernels never
 * print or abort; the host turns this into a Lua error. */
typedef struct {
  int64_t row;
  int64_t value;
  const char *arg;
  char msg[192];
} gs_error;

#endif
