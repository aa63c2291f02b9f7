/* Ctrl-C in the REPL.
 *
 * While a chunk runs (mode 1) Ctrl-C interrupts it with a Lua error instead
 * of ending the session; a second Ctrl-C before the chunk stops (a loop the
 * JIT compiled checks no hooks) ends the process as usual.
 *
 * At the prompt (mode 2) Ctrl-C clears the line being typed, as in Python's
 * REPL: the handler only raises a flag, and the REPL reads its keys through
 * gs_prompt_getc (libedit's rl_getc_function, or the plain line reader),
 * which sees the flag, or the read that the signal cut short, and answers
 * -1: the line reader returns no line, and gs_prompt_interrupted() tells
 * the REPL that this was Ctrl-C and not end of input (Ctrl-D). */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include "gs_api.h"
#include "host.h"

static lua_State *host_state;
static volatile sig_atomic_t pending;
static volatile sig_atomic_t prompt_interrupted;

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

static void on_prompt_sigint(int sig) {
  (void)sig;
  prompt_interrupted = 1;
}

/* Without SA_RESTART, so that a read waiting for a key returns EINTR. */
static void install(void (*fn)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, NULL);
}

void gs_interrupt_mode(int mode) {
  pending = 0;
  prompt_interrupted = 0;
  if (host_state) lua_sethook(host_state, NULL, 0, 0);
  if (mode == 1) install(on_sigint);
  else if (mode == 2) install(on_prompt_sigint);
  else signal(SIGINT, SIG_DFL);
}

int gs_prompt_interrupted(void) {
  int was = prompt_interrupted;
  prompt_interrupted = 0;
  return was;
}

/* One byte from fd; -1 at end of input, on a read error and on Ctrl-C
 * (then gs_prompt_interrupted() says 1). Reads the descriptor directly: no
 * stdio buffer holds back what was typed. */
static int read_byte(int fd) {
  for (;;) {
    if (prompt_interrupted) return -1;
    unsigned char c;
    ssize_t n = read(fd, &c, 1);
    if (n == 1) {
      /* Ctrl-C as a byte: the terminal's ISIG is off, no signal will come. */
      if (c == 3) {
        prompt_interrupted = 1;
        return -1;
      }
      return c;
    }
    if (n == 0) return -1;
    if (errno != EINTR || prompt_interrupted) return -1;
    /* another signal (a window resize): read on */
  }
}

/* The plain line reader's input: one byte of standard input. */
int gs_prompt_getbyte(void) { return read_byte(STDIN_FILENO); }

/* libedit's rl_getc_function: one character, decoded in the current locale
 * as libedit decodes its own input (a sequence that is no character there
 * is dropped, as libedit drops it). stream: libedit's input, NULL for
 * standard input. */
int gs_prompt_getc(FILE *stream) {
  int fd = stream ? fileno(stream) : STDIN_FILENO;
  mbstate_t st;
  memset(&st, 0, sizeof st);
  size_t have = 0;
  for (;;) {
    int b = read_byte(fd);
    if (b < 0) return -1;
    if (b < 0x80 && have == 0) return b;
    char c = (char)b;
    wchar_t wc;
    size_t r = mbrtowc(&wc, &c, 1, &st);
    have++;
    if (r == (size_t)-2 && have < MB_LEN_MAX) continue; /* more bytes to come */
    if (r == (size_t)-1 || r == (size_t)-2) {
      memset(&st, 0, sizeof st);
      have = 0;
      continue;
    }
    return (int)wc;
  }
}
