/* Runs a child process with a time limit and reports how it ended, so the
 * runner can isolate each spec file: a crash or a hang fails that file only.
 * The child gets its own process group and dies with this process; a run
 * stopped by SIGINT or SIGTERM (src/run_control.c) kills it at once. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gs_api.h"

const char *gs_self_exe(void) {
  static char path[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) return "";
  path[n] = 0;
  return path;
}

/* Kills the child's process group and reaps the child. */
static void kill_child(pid_t pid, int *status) {
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
  while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
}

int gs_spawn_wait(const char *const *argv, double timeout_s, int *term_signal, int *timed_out) {
  *term_signal = 0;
  *timed_out = 0;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    setpgid(0, 0); /* its own group, so a timeout kills everything it started */
    /* Dies with this process: a child must not outlive a runner that was
     * killed, nor keep running under a runner that was itself a child. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  setpgid(pid, pid);
  double start = gs_now();
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    /* SIGINT or SIGTERM on the runner (src/run_control.c): the child's
     * group does not see the terminal's signal, so it is killed here. */
    if (gs_run_stopped()) {
      kill_child(pid, &status);
      break;
    }
    if (timeout_s > 0 && gs_now() - start > timeout_s) {
      *timed_out = 1;
      kill_child(pid, &status);
      break;
    }
    struct timespec ts = {0, 500000}; /* 0.5 ms: negligible next to a spec file */
    nanosleep(&ts, NULL);
  }
  if (WIFSIGNALED(status)) {
    *term_signal = WTERMSIG(status);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const char *gs_signal_name(int sig) {
  const char *abbrev = sigabbrev_np(sig);
  return abbrev ? abbrev : "UNKNOWN";
}
