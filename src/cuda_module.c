/* Run-time CUDA kernels: NVRTC and the CUDA driver API, both opened with
 * dlopen on first use (see gs_cuda_module.h). The few declarations needed
 * from nvrtc.h and cuda.h are written out here, with the values those
 * headers give them, so that this file builds with or without the CUDA
 * toolkit. */
#define _GNU_SOURCE
#include "gs_cuda_module.h"

#include <dlfcn.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NVRTC ------------------------------------------------------------------ */

typedef int nvrtcResult; /* 0 is NVRTC_SUCCESS */
typedef struct _nvrtcProgram *nvrtcProgram;

static struct {
  int tried;
  void *lib;
  char why[160];
  char path[512];
  const char *(*GetErrorString)(nvrtcResult);
  nvrtcResult (*Version)(int *, int *);
  nvrtcResult (*GetNumSupportedArchs)(int *);
  nvrtcResult (*GetSupportedArchs)(int *);
  nvrtcResult (*CreateProgram)(nvrtcProgram *, const char *, const char *, int, const char *const *,
                               const char *const *);
  nvrtcResult (*CompileProgram)(nvrtcProgram, int, const char *const *);
  nvrtcResult (*DestroyProgram)(nvrtcProgram *);
  nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t *);
  nvrtcResult (*GetProgramLog)(nvrtcProgram, char *);
  nvrtcResult (*GetPTXSize)(nvrtcProgram, size_t *);
  nvrtcResult (*GetPTX)(nvrtcProgram, char *);
  nvrtcResult (*GetCUBINSize)(nvrtcProgram, size_t *);
  nvrtcResult (*GetCUBIN)(nvrtcProgram, char *);
} nv;

struct gs_cu_program {
  char *log, *ptx, *cubin;
  size_t ptx_size, cubin_size;
};

static void set_msg(gs_error *err, const char *arg, const char *fmt, ...) {
  if (!err) return;
  err->arg = arg;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
}

/* A symbol to look up and the function pointer it goes into. Storing
 * dlsym's result through a void ** is the conversion POSIX specifies. */
typedef struct {
  const char *name;
  void **slot;
} symbol;
#define SYM(table, prefix, field) {#prefix #field, (void **)&table.field}

/* Binds every symbol of the list (ended by a NULL name); returns the first
 * missing name, or NULL. */
static const char *bind_all(void *lib, const symbol *syms) {
  for (int i = 0; syms[i].name; i++) {
    *syms[i].slot = dlsym(lib, syms[i].name);
    if (!*syms[i].slot) return syms[i].name;
  }
  return NULL;
}

static void remember_path(void *lib, char *out, size_t len) {
  struct link_map *map = NULL;
  if (dlinfo(lib, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name) snprintf(out, len, "%s", map->l_name);
}

static int load_nvrtc(void) {
  if (nv.tried) return nv.lib != NULL;
  nv.tried = 1;
  char first_error[128] = "";
  const char *forced = getenv("GRADSPEC_NVRTC");
  if (forced && *forced) {
    nv.lib = dlopen(forced, RTLD_NOW | RTLD_LOCAL);
    if (!nv.lib) {
      snprintf(nv.why, sizeof nv.why, "GRADSPEC_NVRTC=%s cannot be loaded: %s", forced, dlerror());
      return 0;
    }
  } else {
    char home[512] = "";
    const char *cuda_home = getenv("CUDA_HOME");
    const char *dirs[] = {"", home, "/usr/local/cuda/lib64/", "/usr/local/cuda/targets/x86_64-linux/lib/"};
    if (cuda_home && *cuda_home) snprintf(home, sizeof home, "%s/lib64/", cuda_home);
    /* CUDA 12's NVRTC will do too: its PTX loads on CUDA 12 and 13 drivers. */
    const char *names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0] && !nv.lib; d++) {
      if (d == 1 && !home[0]) continue;
      for (size_t k = 0; k < sizeof names / sizeof names[0] && !nv.lib; k++) {
        char path[600];
        snprintf(path, sizeof path, "%s%s", dirs[d], names[k]);
        nv.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!nv.lib && !first_error[0]) snprintf(first_error, sizeof first_error, "%s", dlerror());
      }
    }
    if (!nv.lib) {
      snprintf(nv.why, sizeof nv.why,
               "NVRTC is not installed (%s; also searched $CUDA_HOME/lib64 and /usr/local/cuda)", first_error);
      return 0;
    }
  }
  const symbol syms[] = {
      SYM(nv, nvrtc, GetErrorString), SYM(nv, nvrtc, Version), SYM(nv, nvrtc, GetNumSupportedArchs),
      SYM(nv, nvrtc, GetSupportedArchs), SYM(nv, nvrtc, CreateProgram), SYM(nv, nvrtc, CompileProgram),
      SYM(nv, nvrtc, DestroyProgram), SYM(nv, nvrtc, GetProgramLogSize), SYM(nv, nvrtc, GetProgramLog),
      SYM(nv, nvrtc, GetPTXSize), SYM(nv, nvrtc, GetPTX), SYM(nv, nvrtc, GetCUBINSize), SYM(nv, nvrtc, GetCUBIN),
      {NULL, NULL}};
  const char *missing = bind_all(nv.lib, syms);
  if (missing) {
    snprintf(nv.why, sizeof nv.why, "the NVRTC library found lacks %s (too old: CUDA 11.2 or later is needed)",
             missing);
    dlclose(nv.lib);
    nv.lib = NULL;
    return 0;
  }
  remember_path(nv.lib, nv.path, sizeof nv.path);
  return 1;
}

static gs_status nvrtc_missing(gs_error *err) {
  set_msg(err, NULL, "%s", nv.why);
  return GS_ERR_CUDA;
}

gs_status gs_cu_nvrtc_version(int *major, int *minor, gs_error *err) {
  *major = *minor = 0;
  if (!load_nvrtc()) return nvrtc_missing(err);
  nvrtcResult r = nv.Version(major, minor);
  if (r != 0) {
    set_msg(err, NULL, "nvrtcVersion: %s", nv.GetErrorString(r));
    return GS_ERR_CUDA;
  }
  return GS_OK;
}

const char *gs_cu_nvrtc_path(void) { return nv.path; }

int gs_cu_nvrtc_archs(int *archs, int max) {
  int n = 0;
  if (!load_nvrtc() || nv.GetNumSupportedArchs(&n) != 0 || n <= 0) return 0;
  int *all = calloc((size_t)n, sizeof *all);
  if (!all) return 0;
  if (nv.GetSupportedArchs(all) == 0) {
    for (int i = 0; i < n && i < max; i++) archs[i] = all[i];
  } else {
    n = 0;
  }
  free(all);
  return n;
}

/* Copies NVRTC's output of `size` bytes fetched by `get` into a new buffer. */
static char *take(nvrtcProgram prog, nvrtcResult (*get_size)(nvrtcProgram, size_t *),
                  nvrtcResult (*get)(nvrtcProgram, char *), size_t *size) {
  size_t n = 0;
  *size = 0;
  if (get_size(prog, &n) != 0 || n == 0) return NULL;
  char *buf = malloc(n + 1);
  if (!buf) return NULL;
  if (get(prog, buf) != 0) {
    free(buf);
    return NULL;
  }
  buf[n] = 0;
  *size = n;
  return buf;
}

gs_status gs_cu_compile(const char *source, const char *name, int n_headers, const char *const *headers,
                        const char *const *include_names, int n_options, const char *const *options,
                        gs_cu_program **out, gs_error *err) {
  *out = NULL;
  if (!load_nvrtc()) return nvrtc_missing(err);
  gs_cu_program *p = calloc(1, sizeof *p);
  if (!p) {
    set_msg(err, NULL, "out of memory");
    return GS_ERR_NOMEM;
  }
  nvrtcProgram prog = NULL;
  nvrtcResult r = nv.CreateProgram(&prog, source, name, n_headers, headers, include_names);
  if (r != 0) {
    free(p);
    set_msg(err, "source", "nvrtcCreateProgram: %s", nv.GetErrorString(r));
    return GS_ERR_CUDA;
  }
  r = nv.CompileProgram(prog, n_options, options);
  size_t log_size = 0;
  p->log = take(prog, nv.GetProgramLogSize, nv.GetProgramLog, &log_size);
  gs_status st = GS_OK;
  if (r == 0) {
    p->ptx = take(prog, nv.GetPTXSize, nv.GetPTX, &p->ptx_size);
    p->cubin = take(prog, nv.GetCUBINSize, nv.GetCUBIN, &p->cubin_size);
    /* PTX comes with a trailing NUL that is not part of the text. */
    while (p->ptx_size > 0 && p->ptx[p->ptx_size - 1] == 0) p->ptx_size--;
  } else {
    set_msg(err, "source", "%s", nv.GetErrorString(r));
    st = GS_ERR_ARG;
  }
  nv.DestroyProgram(&prog);
  *out = p;
  return st;
}

const char *gs_cu_program_log(const gs_cu_program *p) { return p && p->log ? p->log : ""; }

const char *gs_cu_program_ptx(const gs_cu_program *p, size_t *size) {
  *size = p && p->ptx ? p->ptx_size : 0;
  return *size ? p->ptx : NULL;
}

const char *gs_cu_program_cubin(const gs_cu_program *p, size_t *size) {
  *size = p && p->cubin ? p->cubin_size : 0;
  return *size ? p->cubin : NULL;
}

void gs_cu_program_free(gs_cu_program *p) {
  if (!p) return;
  free(p->log);
  free(p->ptx);
  free(p->cubin);
  free(p);
}

/* The driver --------------------------------------------------------------- */

typedef int CUresult; /* 0 is CUDA_SUCCESS */
typedef int CUdevice;
typedef void *CUcontext, *CUmodule, *CUfunction, *CUstream;

enum {
  CU_NO_DEVICE = 100,
  CU_NOT_FOUND = 500,
  CU_STUB_LIBRARY = 34,
  CU_INSUFFICIENT_DRIVER = 35,
  CU_SYSTEM_DRIVER_MISMATCH = 803,
  CU_COMPAT_NOT_SUPPORTED_ON_DEVICE = 804,
  CU_ATTR_CC_MAJOR = 75,
  CU_ATTR_CC_MINOR = 76,
  CU_FUNC_MAX_THREADS_PER_BLOCK = 0,
  CU_FUNC_SHARED_SIZE_BYTES = 1,
  CU_FUNC_NUM_REGS = 4,
  CU_FUNC_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
  CU_JIT_ERROR_LOG_BUFFER = 5,
  CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
};

static struct {
  int tried;
  void *lib;
  CUresult init_result;
  char why[160];
  CUdevice dev;
  CUcontext ctx;
  int lost;
  char lost_what[160];
  CUresult (*GetErrorName)(CUresult, const char **);
  CUresult (*GetErrorString)(CUresult, const char **);
  CUresult (*Init)(unsigned);
  CUresult (*DeviceGet)(CUdevice *, int);
  CUresult (*DeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*CtxSynchronize)(void);
  CUresult (*ModuleLoadDataEx)(CUmodule *, const void *, unsigned, int *, void **);
  CUresult (*ModuleUnload)(CUmodule);
  CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*FuncGetAttribute)(int *, int, CUfunction);
  CUresult (*FuncSetAttribute)(CUfunction, int, int);
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                           CUstream, void **, void **);
  /* CUDA 12.4 and later only: used to list a module's kernels. */
  CUresult (*ModuleGetFunctionCount)(unsigned *, CUmodule);
  CUresult (*ModuleEnumerateFunctions)(CUfunction *, unsigned, CUmodule);
  CUresult (*FuncGetName)(const char **, CUfunction);
} cu;

static int is_no_device(CUresult r) {
  return r == CU_NO_DEVICE || r == CU_STUB_LIBRARY || r == CU_INSUFFICIENT_DRIVER ||
         r == CU_SYSTEM_DRIVER_MISMATCH || r == CU_COMPAT_NOT_SUPPORTED_ON_DEVICE;
}

/* Errors after which "any further CUDA work will return the same error"
 * (cuda.h): the context cannot be used again in this process. */
static int is_sticky(CUresult r) {
  switch (r) {
    case 214: /* ECC_UNCORRECTABLE */
    case 226: /* CONTAINED */
    case 700: /* ILLEGAL_ADDRESS */
    case 702: /* LAUNCH_TIMEOUT */
    case 710: /* ASSERT */
    case 714: /* HARDWARE_STACK_ERROR */
    case 715: /* ILLEGAL_INSTRUCTION */
    case 716: /* MISALIGNED_ADDRESS */
    case 717: /* INVALID_ADDRESS_SPACE */
    case 718: /* INVALID_PC */
    case 719: /* LAUNCH_FAILED */
    case 721: /* TENSOR_MEMORY_LEAK */
    case 911: /* EXTERNAL_DEVICE */
      return 1;
    default:
      return 0;
  }
}

static void describe(CUresult r, char *out, size_t len) {
  const char *name = NULL, *text = NULL;
  if (cu.GetErrorName) cu.GetErrorName(r, &name);
  if (cu.GetErrorString) cu.GetErrorString(r, &text);
  /* The toolkit's stub library answers every call, these included, with an
   * error: name the codes a machine without a usable driver gives. */
  if (!name && r == CU_STUB_LIBRARY) {
    name = "CUDA_ERROR_STUB_LIBRARY";
    text = "the libcuda.so.1 found is the toolkit's stub, not the NVIDIA driver";
  } else if (!name && r == CU_NO_DEVICE) {
    name = "CUDA_ERROR_NO_DEVICE";
    text = "no CUDA-capable device is detected";
  } else if (!name && r == CU_INSUFFICIENT_DRIVER) {
    name = "CUDA_ERROR_INSUFFICIENT_DRIVER";
    text = "the driver is older than the CUDA runtime";
  }
  if (name)
    snprintf(out, len, "%s: %s", name, text ? text : "no description");
  else
    snprintf(out, len, "CUDA driver error %d", r);
}

/* Fills err from a driver result and remembers a context-losing one. */
static gs_status driver_fail(gs_error *err, CUresult r, const char *what) {
  char text[160];
  describe(r, text, sizeof text);
  if (is_sticky(r) && !cu.lost) {
    cu.lost = 1;
    snprintf(cu.lost_what, sizeof cu.lost_what, "%s", text);
  }
  if (what)
    set_msg(err, NULL, "%s: %s", what, text);
  else
    set_msg(err, NULL, "%s", text);
  return is_no_device(r) ? GS_ERR_NO_DEVICE : GS_ERR_CUDA;
}

static int load_driver(void) {
  if (cu.tried) return cu.lib != NULL && cu.init_result == 0;
  cu.tried = 1;
  /* Only the driver's own soname: a plain libcuda.so is usually the
   * toolkit's link-time stub, which cannot run anything. */
  cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!cu.lib) {
    snprintf(cu.why, sizeof cu.why, "the CUDA driver (libcuda.so.1) cannot be loaded: %s", dlerror());
    return 0;
  }
  const symbol syms[] = {
      SYM(cu, cu, GetErrorName), SYM(cu, cu, GetErrorString), SYM(cu, cu, Init), SYM(cu, cu, DeviceGet),
      SYM(cu, cu, DeviceGetAttribute), SYM(cu, cu, DevicePrimaryCtxRetain), SYM(cu, cu, CtxSetCurrent),
      SYM(cu, cu, CtxSynchronize), SYM(cu, cu, ModuleLoadDataEx), SYM(cu, cu, ModuleUnload),
      SYM(cu, cu, ModuleGetFunction), SYM(cu, cu, FuncGetAttribute), SYM(cu, cu, FuncSetAttribute),
      SYM(cu, cu, LaunchKernel), {NULL, NULL}};
  const char *missing = bind_all(cu.lib, syms);
  if (missing) {
    snprintf(cu.why, sizeof cu.why, "the CUDA driver (libcuda.so.1) lacks %s: it is too old", missing);
    dlclose(cu.lib);
    cu.lib = NULL;
    return 0;
  }
  const symbol optional[] = {SYM(cu, cu, ModuleGetFunctionCount), SYM(cu, cu, ModuleEnumerateFunctions),
                             SYM(cu, cu, FuncGetName), {NULL, NULL}};
  bind_all(cu.lib, optional); /* a missing one stays NULL: kernels are then not listed */
  cu.init_result = cu.Init(0);
  if (cu.init_result == 0) cu.init_result = cu.DeviceGet(&cu.dev, 0);
  if (cu.init_result != 0) {
    char text[128];
    describe(cu.init_result, text, sizeof text);
    snprintf(cu.why, sizeof cu.why, "cuInit: %s", text);
    return 0;
  }
  return 1;
}

static gs_status no_driver(gs_error *err) {
  set_msg(err, NULL, "no CUDA device: %s", cu.why);
  return GS_ERR_NO_DEVICE;
}

/* The driver loaded, the primary context retained (once) and current on
 * this thread, and not lost. */
static gs_status ready(gs_error *err) {
  if (!load_driver()) return no_driver(err);
  if (cu.lost) {
    set_msg(err, NULL, "the CUDA context was lost to an earlier error (%s)", cu.lost_what);
    return GS_ERR_CUDA;
  }
  CUresult r;
  if (!cu.ctx && (r = cu.DevicePrimaryCtxRetain(&cu.ctx, cu.dev)) != 0) {
    cu.ctx = NULL;
    return driver_fail(err, r, "cuDevicePrimaryCtxRetain");
  }
  if ((r = cu.CtxSetCurrent(cu.ctx)) != 0) return driver_fail(err, r, "cuCtxSetCurrent");
  return GS_OK;
}

gs_status gs_cu_device(int *cc_major, int *cc_minor, gs_error *err) {
  *cc_major = *cc_minor = 0;
  if (!load_driver()) return no_driver(err);
  CUresult r = cu.DeviceGetAttribute(cc_major, CU_ATTR_CC_MAJOR, cu.dev);
  if (r == 0) r = cu.DeviceGetAttribute(cc_minor, CU_ATTR_CC_MINOR, cu.dev);
  if (r != 0) return driver_fail(err, r, "cuDeviceGetAttribute");
  return GS_OK;
}

gs_status gs_cu_module_load(const char *image, gs_cu_module **out, char *log, size_t log_size, gs_error *err) {
  *out = NULL;
  if (log_size) log[0] = 0;
  gs_status st = ready(err);
  if (st != GS_OK) return st;
  int keys[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[2] = {log, (void *)(uintptr_t)log_size};
  CUmodule m = NULL;
  CUresult r = cu.ModuleLoadDataEx(&m, image, log_size ? 2 : 0, keys, values);
  if (r != 0) return driver_fail(err, r, "cuModuleLoadDataEx");
  *out = (gs_cu_module *)m;
  return GS_OK;
}

void gs_cu_module_unload(gs_cu_module *m) {
  /* After a lost context the module went with it; nothing is left to free. */
  if (m && cu.lib && !cu.lost) cu.ModuleUnload((CUmodule)m);
}

gs_status gs_cu_module_function(gs_cu_module *m, const char *name, gs_cu_function **out, gs_error *err) {
  *out = NULL;
  gs_status st = ready(err);
  if (st != GS_OK) return st;
  CUfunction f = NULL;
  CUresult r = cu.ModuleGetFunction(&f, (CUmodule)m, name);
  if (r == CU_NOT_FOUND) {
    set_msg(err, "name", "the module has no kernel named '%s'", name);
    return GS_ERR_ARG;
  }
  if (r != 0) return driver_fail(err, r, "cuModuleGetFunction");
  *out = (gs_cu_function *)f;
  return GS_OK;
}

int gs_cu_module_function_names(gs_cu_module *m, char *buf, size_t len) {
  if (len) buf[0] = 0;
  if (ready(NULL) != GS_OK || !cu.ModuleGetFunctionCount || !cu.ModuleEnumerateFunctions || !cu.FuncGetName)
    return -1;
  unsigned n = 0;
  if (cu.ModuleGetFunctionCount(&n, (CUmodule)m) != 0) return -1;
  if (n == 0) return 0;
  CUfunction *fs = calloc(n, sizeof *fs);
  if (!fs) return -1;
  int count = -1;
  if (cu.ModuleEnumerateFunctions(fs, n, (CUmodule)m) == 0) {
    size_t used = 0;
    count = 0;
    for (unsigned i = 0; i < n; i++) {
      const char *name = NULL;
      if (cu.FuncGetName(&name, fs[i]) != 0 || !name) continue;
      int w = snprintf(buf + used, len > used ? len - used : 0, "%s%s", count ? ", " : "", name);
      if (w > 0) used += (size_t)w;
      if (used >= len) used = len;
      count++;
    }
  }
  free(fs);
  return count;
}

gs_status gs_cu_function_info(gs_cu_function *f, int *max_threads_per_block, int *num_regs,
                              int *static_shared_bytes, gs_error *err) {
  gs_status st = ready(err);
  if (st != GS_OK) return st;
  CUresult r = cu.FuncGetAttribute(max_threads_per_block, CU_FUNC_MAX_THREADS_PER_BLOCK, (CUfunction)f);
  if (r == 0) r = cu.FuncGetAttribute(num_regs, CU_FUNC_NUM_REGS, (CUfunction)f);
  if (r == 0) r = cu.FuncGetAttribute(static_shared_bytes, CU_FUNC_SHARED_SIZE_BYTES, (CUfunction)f);
  if (r != 0) return driver_fail(err, r, "cuFuncGetAttribute");
  return GS_OK;
}

gs_status gs_cu_launch(gs_cu_function *f, const uint32_t *grid, const uint32_t *block, uint32_t shared_bytes,
                       void *stream, void **params, int sync, gs_error *err) {
  gs_status st = ready(err);
  if (st != GS_OK) return st;
  CUresult r;
  /* Without this opt-in a launch asking for more than 48 KiB fails. */
  if (shared_bytes > 48 * 1024 &&
      (r = cu.FuncSetAttribute((CUfunction)f, CU_FUNC_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)shared_bytes)) != 0)
    return driver_fail(err, r, NULL);
  r = cu.LaunchKernel((CUfunction)f, grid[0], grid[1], grid[2], block[0], block[1], block[2], shared_bytes,
                      (CUstream)stream, params, NULL);
  if (r == 0 && sync) r = cu.CtxSynchronize();
  if (r != 0) return driver_fail(err, r, NULL);
  return GS_OK;
}

gs_status gs_cu_synchronize(gs_error *err) {
  gs_status st = ready(err);
  if (st != GS_OK) return st;
  CUresult r = cu.CtxSynchronize();
  if (r != 0) return driver_fail(err, r, NULL);
  return GS_OK;
}

int gs_cu_context_lost(void) { return cu.lost; }
