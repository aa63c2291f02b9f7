/* Host buffers and dtype conversion for tensors. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gs_api.h"
#include "gs_half.h"

/* A 64-byte header before each buffer remembers its size (for accounting)
 * and how it was obtained. Buffers of GS_MAP_MIN bytes or more are mapped
 * straight from the kernel: their pages arrive zeroed, so a large tensor
 * costs no memset and no page is touched until it is used, and a request the
 * system cannot back fails here (NULL, a Lua error) rather than part way
 * through filling it. Smaller ones come from posix_memalign. */
#define GS_ALIGN 64
#define GS_MAP_MIN ((size_t)1 << 20)
enum { GS_FROM_MALLOC = 0, GS_FROM_MMAP = 1 };
static _Atomic size_t host_bytes;

typedef struct {
  size_t bytes;
  int from;
} gs_header;

void *gs_alloc(size_t bytes) {
  /* The header must fit in front: bytes + GS_ALIGN must not wrap around. */
  if (bytes > SIZE_MAX - GS_ALIGN) return NULL;
  size_t total = bytes + GS_ALIGN;
  void *raw = NULL;
  int from;
  if (total >= GS_MAP_MIN) {
    raw = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    from = GS_FROM_MMAP;
  } else {
    if (posix_memalign(&raw, GS_ALIGN, total) != 0) return NULL;
    memset(raw, 0, total);
    from = GS_FROM_MALLOC;
  }
  gs_header *h = (gs_header *)raw;
  h->bytes = bytes;
  h->from = from;
  atomic_fetch_add(&host_bytes, bytes);
  return (char *)raw + GS_ALIGN;
}

void gs_free(void *ptr) {
  if (!ptr) return;
  char *raw = (char *)ptr - GS_ALIGN;
  gs_header *h = (gs_header *)raw;
  size_t bytes = h->bytes;
  atomic_fetch_sub(&host_bytes, bytes);
  if (h->from == GS_FROM_MMAP) munmap(raw, bytes + GS_ALIGN);
  else free(raw);
}

size_t gs_host_bytes_in_use(void) { return atomic_load(&host_bytes); }

size_t gs_dtype_size(gs_dtype d) {
  switch (d) {
    case GS_F64: case GS_I64: return 8;
    case GS_F32: case GS_I32: return 4;
    case GS_BF16: case GS_F16: return 2;
  }
  return 0;
}

double gs_load(const void *base, gs_dtype d, int64_t i) {
  switch (d) {
    case GS_F64: return ((const double *)base)[i];
    case GS_F32: return ((const float *)base)[i];
    case GS_BF16: return gs_bf16_to_f32(((const uint16_t *)base)[i]);
    case GS_F16: return gs_f16_to_f32(((const uint16_t *)base)[i]);
    case GS_I32: return ((const int32_t *)base)[i];
    case GS_I64: return (double)((const int64_t *)base)[i];
  }
  return 0;
}

/* Integers saturate instead of invoking undefined behaviour; NaN becomes 0. */
static int64_t to_int(double x, double lo, double hi) {
  if (x != x) return 0;
  if (x <= lo) return (int64_t)lo;
  if (x >= hi) return (int64_t)hi;
  return (int64_t)x;
}

void gs_store(void *base, gs_dtype d, int64_t i, double x) {
  switch (d) {
    case GS_F64: ((double *)base)[i] = x; break;
    /* bf16/f16 round from the f32 value: double -> f32 -> half can double-round,
     * but every caller stores values that were computed in f32 or are exact. */
    case GS_F32: ((float *)base)[i] = (float)x; break;
    case GS_BF16: ((uint16_t *)base)[i] = gs_f32_to_bf16((float)x); break;
    case GS_F16: ((uint16_t *)base)[i] = gs_f32_to_f16((float)x); break;
    case GS_I32: ((int32_t *)base)[i] = (int32_t)to_int(x, -2147483648.0, 2147483647.0); break;
    case GS_I64: ((int64_t *)base)[i] = to_int(x, -9223372036854775808.0, 9223372036854774784.0); break;
  }
}

void gs_convert(void *dst, gs_dtype dst_dtype, int64_t dst_stride, const void *src,
                gs_dtype src_dtype, int64_t src_stride, int64_t rows, int64_t cols) {
  size_t es = gs_dtype_size(dst_dtype);
  for (int64_t r = 0; r < rows; r++) {
    const char *s = (const char *)src + (size_t)(r * src_stride) * gs_dtype_size(src_dtype);
    char *o = (char *)dst + (size_t)(r * dst_stride) * es;
    if (src_dtype == dst_dtype) {
      memmove(o, s, (size_t)cols * es);
      continue;
    }
    for (int64_t c = 0; c < cols; c++) gs_store(o, dst_dtype, c, gs_load(s, src_dtype, c));
  }
}
