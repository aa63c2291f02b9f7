/* What `gradspec run` needs from C beyond spawning children (src/child.c):
 * - SIGINT and SIGTERM stop a run cleanly: the handler only records the
 *   signal; gs_spawn_wait kills the running child's process group at once and
 *   the runner removes its temporary files and says the run was interrupted.
 *   A second signal ends the process the usual way.
 * - An exit guard for runs in this process (--no-isolate): a spec that ends
 *   the process from C (exit(), not os.exit, which the runner intercepts)
 *   would otherwise leave exit status 0 and a report cut short.
 * - Results files created with mkstemp under $TMPDIR (or /tmp), so that a
 *   run's temporary files live where the caller asked. */
#define _GNU_SOURCE
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gs_api.h"

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t stop_mode;

static void on_stop(int sig) {
  if (stop_signal) {
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  stop_signal = sig;
  if (stop_mode == 2) {
    static const char note[] =
        "\ngradspec: interrupted; stopping after the running it (again to end gradspec now)\n";
    ssize_t ignored = write(STDERR_FILENO, note, sizeof note - 1);
    (void)ignored;
  }
}

void gs_run_signals(int mode) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sa.sa_handler = mode ? on_stop : SIG_DFL;
  stop_mode = mode;
  stop_signal = 0;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int gs_run_stopped(void) { return stop_signal; }

static char guard_what[1024];
static int guard_registered;

static void exit_guard(int status, void *arg) {
  (void)arg;
  if (!guard_what[0]) return;
  fflush(stdout);
  fprintf(stderr, "gradspec: the process exited inside %s before the run finished (exit status %d)\n",
          guard_what, status);
  fflush(stderr);
  _exit(status != 0 ? status : 1);
}

void gs_run_guard(const char *what) {
  if (!what) {
    guard_what[0] = 0;
    return;
  }
  if (!guard_registered) {
    if (on_exit(exit_guard, NULL) != 0) return;
    guard_registered = 1;
  }
  snprintf(guard_what, sizeof guard_what, "%s", what);
}

static int make_temp(char *path, size_t len, const char *dir) {
  int n = snprintf(path, len, "%s/gradspec-XXXXXX", dir);
  if (n <= 0 || (size_t)n >= len) return 0;
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  close(fd);
  return 1;
}

const char *gs_run_temp_file(void) {
  static char path[PATH_MAX];
  const char *dir = getenv("TMPDIR");
  if (dir && *dir && make_temp(path, sizeof path, dir)) return path;
  if (make_temp(path, sizeof path, "/tmp")) return path;
  return NULL;
}
