/* Run-time CUDA kernels (src/cuda_module.c): CUDA C compiled with NVRTC, and
 * PTX, cubin or fatbin images loaded and launched through the CUDA driver API.
 * Both libraries are opened with dlopen on first use, so gradspec starts
 * without them; every call that needs one says why it is missing instead.
 * lua/gradspec/cuda.lua is the Lua side.
 *
 * The driver work happens in the primary context of device 0, the one the
 * CUDA runtime (and so every cuda tensor) uses: device pointers from
 * gs_cuda_malloc are valid kernel arguments. */
#ifndef GS_CUDA_MODULE_H
#define GS_CUDA_MODULE_H

#include "gs_types.h"

typedef struct gs_cu_program gs_cu_program;   /* one NVRTC compilation's results */
typedef struct gs_cu_module gs_cu_module;     /* a CUmodule */
typedef struct gs_cu_function gs_cu_function; /* a CUfunction */

/* NVRTC. GRADSPEC_NVRTC names the library to load (nothing else is tried
 * then); otherwise libnvrtc.so.13, libnvrtc.so.12, libnvrtc.so, and the same
 * names under $CUDA_HOME/lib64 and /usr/local/cuda. GS_ERR_CUDA says why it
 * is missing. */
gs_status gs_cu_nvrtc_version(int *major, int *minor, gs_error *err);
/* The file NVRTC was loaded from ("" before it is loaded). */
const char *gs_cu_nvrtc_path(void);
/* The real architectures NVRTC can compile for (75 for sm_75, ...), at most
 * max of them; returns how many there are (0 when NVRTC is missing). */
int gs_cu_nvrtc_archs(int *archs, int max);

/* Compiles source (NUL-terminated) named `name` in messages. headers and
 * include_names: n_headers sources that #include "<include_name>" finds.
 * On a compile error returns GS_ERR_ARG with *out set: its log says why.
 * *out must be freed with gs_cu_program_free whenever it is non-NULL. */
gs_status gs_cu_compile(const char *source, const char *name, int n_headers, const char *const *headers,
                        const char *const *include_names, int n_options, const char *const *options,
                        gs_cu_program **out, gs_error *err);
const char *gs_cu_program_log(const gs_cu_program *p);
/* PTX text, and the cubin for an sm_XX architecture; NULL, size 0 when absent. */
const char *gs_cu_program_ptx(const gs_cu_program *p, size_t *size);
const char *gs_cu_program_cubin(const gs_cu_program *p, size_t *size);
void gs_cu_program_free(gs_cu_program *p);

/* The driver (libcuda.so.1): cuInit and device 0's compute capability.
 * GS_ERR_NO_DEVICE, with the reason, when there is no driver or device. */
gs_status gs_cu_device(int *cc_major, int *cc_minor, gs_error *err);

/* Loads a PTX (NUL-terminated text), cubin or fatbin image into the primary
 * context, making it current. The JIT's error log (PTX) goes to log. */
gs_status gs_cu_module_load(const char *image, gs_cu_module **out, char *log, size_t log_size, gs_error *err);
void gs_cu_module_unload(gs_cu_module *m);
/* GS_ERR_ARG when the module has no kernel of that (exact, mangled) name. */
gs_status gs_cu_module_function(gs_cu_module *m, const char *name, gs_cu_function **out, gs_error *err);
/* The module's kernel names, separated by ", " (drivers from CUDA 12.4 on);
 * returns their count, or -1 when the driver cannot list them. */
int gs_cu_module_function_names(gs_cu_module *m, char *buf, size_t len);
gs_status gs_cu_function_info(gs_cu_function *f, int *max_threads_per_block, int *num_regs,
                              int *static_shared_bytes, gs_error *err);

/* cuLaunchKernel(f, grid, block, shared_bytes, stream, params), then
 * cuCtxSynchronize when sync != 0. params[i] points at argument i's value.
 * Dynamic shared memory above 48 KiB is enabled for f first. An error's
 * message is "CUDA_ERROR_NAME: description". */
gs_status gs_cu_launch(gs_cu_function *f, const uint32_t *grid, const uint32_t *block, uint32_t shared_bytes,
                       void *stream, void **params, int sync, gs_error *err);
gs_status gs_cu_synchronize(gs_error *err);
/* 1 once an error has left the context unusable (an illegal address, a
 * device-side assert, ...): every later driver call fails, as do the
 * runtime's, until the process ends. */
int gs_cu_context_lost(void);

#endif
