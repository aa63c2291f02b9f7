/* The FFI boundary: every C declaration that Lua sees, and nothing else.
 * CMake preprocesses this file with -DGS_FFI and embeds the result in the
 * binary; lua/gradspec/ffi.lua cdefs exactly that text. */
#ifndef GS_API_H
#define GS_API_H

#include "gs_types.h"
#include "cross_entropy.h"
#include "linear_cross_entropy.h"
#include "gs_device.h"
#include "mutants.h"
#include "gs_cuda_module.h"
#include "vocab_parallel.h"
#include "dist_shm.h"
#include "nccl_lazy.h"

/* Host buffers: 64-byte aligned, zero-filled; NULL when out of memory. */
void *gs_alloc(size_t bytes);
void gs_free(void *ptr);
size_t gs_dtype_size(gs_dtype d);
size_t gs_host_bytes_in_use(void);

/* Element access with dtype conversion (bf16/f16 round to nearest even). */
double gs_load(const void *base, gs_dtype d, int64_t i);
void gs_store(void *base, gs_dtype d, int64_t i, double x);

/* Copies a rows x cols block between row-strided host buffers, converting. */
void gs_convert(void *dst, gs_dtype dst_dtype, int64_t dst_stride, const void *src,
                gs_dtype src_dtype, int64_t src_stride, int64_t rows, int64_t cols);

/* Counter-based random numbers: element k (row-major, 0-based, ignoring the
 * stride) of a stream depends only on (seed, k), so the same seed gives the
 * same values on every machine and device. dist: 0 uniform [a, b),
 * 1 normal (mean a, std b), 2 integers in [a, b). */
void gs_fill_random(void *dst, gs_dtype d, int64_t rows, int64_t cols, int64_t stride, int dist,
                    uint64_t seed, double a, double b);

const char *gs_version(void);
double gs_now(void);             /* monotonic seconds */
int gs_isatty(int fd);
int gs_cpu_count(void);        /* kernels/cpu/parallel.c */

/* Child processes for crash isolation (src/child.c). gs_spawn_wait returns
 * the exit code, or -1 with *term_signal set (or *timed_out after a kill). */
const char *gs_self_exe(void);
int gs_spawn_wait(const char *const *argv, double timeout_s, int *term_signal, int *timed_out);
const char *gs_signal_name(int sig);

/* Users' kernels in shared libraries (src/plugin.c): a NULL result leaves
 * dlerror's text in err->msg. A found entry point is cast to gs_ce_fn. */
typedef gs_status (*gs_ce_fn)(const gs_ce_args *a, gs_error *err);
void *gs_plugin_open(const char *path, gs_error *err);
void *gs_plugin_symbol(void *handle, const char *name, gs_error *err);

/* SIGINT handling for the REPL (src/interrupt.c): 0 default, 1 interrupt
 * the running Lua chunk with an error, 2 ignore (at the prompt). */
void gs_interrupt_mode(int mode);

/* gradspec run (src/run_control.c). gs_run_signals: 0 default, 1 SIGINT and
 * SIGTERM stop the run (gs_spawn_wait kills the running child), 2 the same
 * with a note that the running it finishes first; gs_run_stopped returns the
 * signal that stopped the run, or 0. gs_run_guard(what) makes an exit from C
 * print what was running and exit non-zero; NULL disarms it.
 * gs_run_temp_file creates an empty file under $TMPDIR or /tmp and returns
 * its path (NULL on failure). */
void gs_run_signals(int mode);
int gs_run_stopped(void);
void gs_run_guard(const char *what);
const char *gs_run_temp_file(void);

/* Children that run side by side (src/child_pool.c), for gradspec run -j
 * and the workbench benchmark. gs_child_start starts argv[0] in its own
 * process group, dying with this process, its stdout and stderr sent to the
 * files named (created; NULL inherits ours); returns the pid or -1.
 * gs_child_poll: 0 while it runs (or, blocking, when a stop signal came),
 * 1 once reaped: *code its exit status, or -1 with *term_signal the
 * signal that ended it; *cpu_s and *max_rss_kb (either may be NULL) its CPU
 * time and peak resident memory; -1 when pid is no child of ours.
 * gs_child_kill sends SIGKILL to its group; poll to reap it. gs_sleep
 * returns early when a stop signal arrives. */
int gs_child_start(const char *const *argv, const char *stdout_path, const char *stderr_path);
int gs_child_poll(int pid, int block, int *code, int *term_signal, double *cpu_s, long *max_rss_kb);
void gs_child_kill(int pid);
void gs_sleep(double seconds);
/* gradspec run --output json --no-isolate: what specs print goes to stderr
 * while stdout is kept for the report. gs_stdout_to_stderr returns the saved
 * stdout (-1 on failure) for gs_stdout_restore. */
int gs_stdout_to_stderr(void);
void gs_stdout_restore(int saved);

#endif
