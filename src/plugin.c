/* Shared libraries of users' kernels: opened with dlopen, their entry points
 * found by name with dlsym. Lua casts a found pointer to the contract's
 * function type (gs_ce_fn), so a plugin's symbols need no declaration. */
#include <dlfcn.h>
#include <stdio.h>

#include "gs_api.h"

static void set_error(gs_error *err, const char *what) {
  const char *why = dlerror();
  snprintf(err->msg, sizeof err->msg, "%s: %s", what, why ? why : "unknown error");
}

void *gs_plugin_open(const char *path, gs_error *err) {
  /* RTLD_LOCAL: two plugins may export the same symbol names. */
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) set_error(err, "cannot load the library");
  return h;
}

void *gs_plugin_symbol(void *handle, const char *name, gs_error *err) {
  dlerror();
  void *p = dlsym(handle, name);
  if (!p) set_error(err, "no such symbol");
  return p;
}
