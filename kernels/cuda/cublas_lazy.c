/* cuBLAS through dlopen on first use; see cublas_lazy.h. */
#define _GNU_SOURCE
#include "cublas_lazy.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gs_device.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_tried;
static void *g_lib;
static gs_cublas_api g_api;
static char g_why[sizeof(((gs_error *)0)->msg)];

/* The names tried, newest first: the CUDA major this gradspec was built
 * with comes first through the order of the list (13, then 12). */
static const char *const k_names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};

static void *open_lib(const char *path, char *first_error, size_t len) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h && first_error && !first_error[0]) {
    const char *e = dlerror();
    snprintf(first_error, len, "%s", e ? e : "unknown error");
  }
  return h;
}

static void *search(char *first_error, size_t len) {
  char home[512] = "";
  const char *cuda_home = getenv("CUDA_HOME");
  if (cuda_home && *cuda_home) snprintf(home, sizeof home, "%s/lib64/", cuda_home);
  /* "" first: LD_LIBRARY_PATH, the executable's runpath and ld.so.cache. */
  const char *dirs[] = {"", home, "/usr/local/cuda/lib64/", "/usr/local/cuda/targets/x86_64-linux/lib/"};
  for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
    if (d == 1 && !home[0]) continue;
    for (size_t k = 0; k < sizeof k_names / sizeof k_names[0]; k++) {
      char path[600];
      snprintf(path, sizeof path, "%s%s", dirs[d], k_names[k]);
      void *h = open_lib(path, first_error, len);
      if (h) return h;
    }
  }
  return NULL;
}

typedef struct {
  const char *name;
  void **slot;
} symbol;

static int load(void) {
  char first_error[160] = "";
  const char *forced = getenv("GRADSPEC_CUBLAS");
  if (forced && *forced) {
    g_lib = open_lib(forced, first_error, sizeof first_error);
    if (!g_lib) {
      snprintf(g_why, sizeof g_why, "cannot load cuBLAS from GRADSPEC_CUBLAS=%s: %s", forced, first_error);
      return 0;
    }
  } else {
    g_lib = search(first_error, sizeof first_error);
    if (!g_lib) {
      snprintf(g_why, sizeof g_why,
               "cuBLAS not found: no libcublas.so.13, .so.12 or .so on the library path, in $CUDA_HOME/lib64 "
               "or /usr/local/cuda/lib64 (set GRADSPEC_CUBLAS=/path/to/libcublas.so)");
      return 0;
    }
  }
  /* Storing dlsym's result through a void ** is the conversion POSIX specifies. */
  const symbol syms[] = {
      {"cublasCreate_v2", (void **)&g_api.create},
      {"cublasSetMathMode", (void **)&g_api.set_math_mode},
      {"cublasSetStream_v2", (void **)&g_api.set_stream},
      {"cublasSetWorkspace_v2", (void **)&g_api.set_workspace},
      {"cublasGemmEx", (void **)&g_api.gemm_ex},
      {"cublasGetStatusString", (void **)&g_api.status_string},
      {"cublasGetStatusName", (void **)&g_api.status_name},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    *syms[i].slot = dlsym(g_lib, syms[i].name);
    if (!*syms[i].slot) {
      struct link_map *map = NULL;
      const char *where = dlinfo(g_lib, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name ? map->l_name : "cuBLAS";
      snprintf(g_why, sizeof g_why, "%s lacks %s (cuBLAS 11.4 or later is needed)", where, syms[i].name);
      dlclose(g_lib);
      g_lib = NULL;
      memset(&g_api, 0, sizeof g_api);
      return 0;
    }
  }
  struct link_map *map = NULL;
  if (dlinfo(g_lib, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name)
    snprintf(g_api.path, sizeof g_api.path, "%s", map->l_name);
  return 1;
}

const gs_cublas_api *gs_cublas(gs_error *err) {
  pthread_mutex_lock(&g_mu);
  if (!g_tried) {
    g_tried = 1;
    load();
  }
  pthread_mutex_unlock(&g_mu);
  if (g_lib) return &g_api;
  if (err) {
    err->arg = 0;
    snprintf(err->msg, sizeof err->msg, "%s", g_why);
  }
  return NULL;
}

int gs_cuda_blas_load(char *path, size_t len, gs_error *err) {
  if (len) path[0] = 0;
  const gs_cublas_api *api = gs_cublas(err);
  if (!api) return 0;
  if (len) snprintf(path, len, "%s", api->path);
  return 1;
}
