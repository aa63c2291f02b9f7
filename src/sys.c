/* Small system services the Lua side needs and LuaJIT does not offer. */
#include <time.h>
#include <unistd.h>

#include "gs_api.h"

const char *gs_version(void) { return GS_VERSION; }

double gs_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int gs_isatty(int fd) { return isatty(fd); }
