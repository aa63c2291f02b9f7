/* gradspec: embeds LuaJIT, points it at the Lua library that sits beside the
 * executable, and hands the command line to lua/gradspec/cli.lua. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host.h"

/* out = a + b; 0 when it does not fit. */
static int join(char *out, size_t len, const char *a, const char *b) {
  int n = snprintf(out, len, "%s%s", a, b);
  return n > 0 && (size_t)n < len;
}

static int is_lua_dir(const char *dir) {
  char probe[PATH_MAX];
  struct stat st;
  return join(probe, sizeof probe, dir, "/gradspec/init.lua") && stat(probe, &st) == 0;
}

/* Where the Lua modules live: $GRADSPEC_LUA_DIR, the install prefix
 * (bin/../share/gradspec/lua), a build tree inside the source tree
 * (build/../lua), the configured install prefix, or the source tree this
 * binary was configured from (a build directory elsewhere). */
static int find_lua_dir(char *out, size_t len) {
  const char *env = getenv("GRADSPEC_LUA_DIR");
  if (env && is_lua_dir(env)) return join(out, len, env, "");
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    const char *rel[] = {"/../share/gradspec/lua", "/../lua", "/../../lua", "/lua"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
      if (join(out, len, exe, rel[i]) && is_lua_dir(out)) return 1;
    }
  }
  if (is_lua_dir(GS_INSTALL_LUA_DIR)) return join(out, len, GS_INSTALL_LUA_DIR, "");
  if (is_lua_dir(GS_SOURCE_LUA_DIR)) return join(out, len, GS_SOURCE_LUA_DIR, "");
  return 0;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

int main(int argc, char **argv) {
  char dir[PATH_MAX];
  if (!find_lua_dir(dir, sizeof dir)) {
    fprintf(stderr, "gradspec: cannot find the Lua library (gradspec/init.lua); set GRADSPEC_LUA_DIR\n");
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "gradspec: cannot create a Lua state\n");
    return 2;
  }
  luaL_openlibs(L);
  gs_host_set_lua_state(L);

  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;./?.lua", dir, dir);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);

  /* arg[0] is the program, arg[1..] its arguments, as in the lua command. */
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_setglobal(L, "arg");

  lua_pushcfunction(L, traceback);
  lua_getglobal(L, "require");
  lua_pushstring(L, "gradspec.cli");
  int status = lua_pcall(L, 1, 1, -3);
  if (status == 0) {
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
    lua_getglobal(L, "arg");
    status = lua_pcall(L, 1, 1, -3);
  }
  int code;
  if (status != 0) {
    fprintf(stderr, "gradspec: %s\n", lua_tostring(L, -1));
    code = 2;
  } else {
    code = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 0;
  }
  fflush(stdout);
  lua_close(L);
  return code;
}
