/* Ctrl-C in the REPL: interrupts the running chunk with a Lua error instead
 * of ending the session. A second Ctrl-C before the chunk stops (a loop the
 * JIT compiled checks no hooks) ends the process as usual. */
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <unistd.h>

#include "gs_api.h"
#include "host.h"

static lua_State *host_state;
static volatile sig_atomic_t pending;

void gs_host_set_lua_state(lua_State *L) { host_state = L; }

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  pending = 0;
  luaL_error(L, "interrupted");
}

static void on_sigint(int sig) {
  if (pending || !host_state) {
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  pending = 1;
  static const char note[] = "\n(interrupting; Ctrl-C again ends gradspec)\n";
  ssize_t ignored = write(STDERR_FILENO, note, sizeof note - 1);
  (void)ignored;
  lua_sethook(host_state, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void gs_interrupt_mode(int mode) {
  pending = 0;
  if (host_state) lua_sethook(host_state, NULL, 0, 0);
  if (mode == 1) signal(SIGINT, on_sigint);
  else if (mode == 2) signal(SIGINT, SIG_IGN);
  else signal(SIGINT, SIG_DFL);
}
