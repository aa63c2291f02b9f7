/* Child processes that run side by side: `gradspec run -j N` keeps N spec
 * files running at once, and bench/workbench.lua measures a child's time and
 * peak memory. src/child.c runs one child and waits for it; here a child is
 * started, polled and killed by its pid, so that the caller can watch many.
 *
 * Like src/child.c, a child gets its own process group (a timeout or Ctrl-C
 * kills everything it started) and dies with this process. Its stdout and
 * stderr can go to files, so that output of children running at once is
 * kept apart and shown per file, in order. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gs_api.h"

/* In the child, before exec: fd = the file at path (created, truncated). */
static int redirect(const char *path, int fd) {
  if (!path) return 1;
  int f = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (f < 0) return 0;
  if (dup2(f, fd) < 0) return 0; /* dup2's copy does not keep O_CLOEXEC */
  close(f);
  return 1;
}

int gs_child_start(const char *const *argv, const char *stdout_path, const char *stderr_path) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    if (!redirect(stdout_path, STDOUT_FILENO) || !redirect(stderr_path, STDERR_FILENO)) _exit(127);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  setpgid(pid, pid);
  return (int)pid;
}

/* How a reaped child ended, in the terms of gs_spawn_wait. */
static void ended(int status, const struct rusage *ru, int *code, int *term_signal, double *cpu_s,
                  long *max_rss_kb) {
  *term_signal = 0;
  if (WIFSIGNALED(status)) {
    *term_signal = WTERMSIG(status);
    *code = -1;
  } else {
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  if (cpu_s) {
    *cpu_s = (double)ru->ru_utime.tv_sec + 1e-6 * (double)ru->ru_utime.tv_usec + (double)ru->ru_stime.tv_sec +
             1e-6 * (double)ru->ru_stime.tv_usec;
  }
  if (max_rss_kb) *max_rss_kb = ru->ru_maxrss;
}

int gs_child_poll(int pid, int block, int *code, int *term_signal, double *cpu_s, long *max_rss_kb) {
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  for (;;) {
    pid_t r = wait4((pid_t)pid, &status, block ? 0 : WNOHANG, &ru);
    if (r == (pid_t)pid) break;
    if (r == 0) return 0;
    if (errno == EINTR) {
      if (block && gs_run_stopped()) return 0;
      continue;
    }
    *code = -1;
    *term_signal = 0;
    return -1;
  }
  ended(status, &ru, code, term_signal, cpu_s, max_rss_kb);
  return 1;
}

void gs_child_kill(int pid) {
  if (pid <= 0) return;
  kill(-(pid_t)pid, SIGKILL);
  kill((pid_t)pid, SIGKILL);
}

int gs_stdout_to_stderr(void) {
  fflush(stdout);
  int saved = dup(STDOUT_FILENO);
  if (saved < 0) return -1;
  if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
    close(saved);
    return -1;
  }
  return saved;
}

void gs_stdout_restore(int saved) {
  if (saved < 0) return;
  fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(saved);
}

void gs_sleep(double seconds) {
  if (seconds <= 0) return;
  struct timespec ts;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !gs_run_stopped()) {
  }
}
