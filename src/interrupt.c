/* Ctrl-C in the REPL.
 *
 * While a chunk runs (mode 1) Ctrl-C interrupts it with a Lua error instead
 * of ending the session; a second Ctrl-C before the chunk stops (a loop the
 * JIT compiled checks no hooks) ends the process as usual.
 *
 * At the prompt (mode 2) Ctrl-C clears the line being typed, as in Python's
 * REPL: the handler raises a flag and writes a byte to a pipe, and the REPL
 * reads its keys through gs_prompt_getc (libedit's rl_getc_function, or the
 * plain line reader), which waits on the terminal and the pipe together and
 * answers -1 once the pipe has the byte: the line reader returns no line,
 * and gs_prompt_interrupted() tells the REPL that this was Ctrl-C and not
 * end of input (Ctrl-D). The pipe, not the read that the signal cuts short,
 * is what wakes the reader: a process-directed SIGINT may run its handler on
 * any thread (OpenBLAS starts several), and then the main thread's read is
 * not interrupted at all. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
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
/* Set by the prompt's handler, possibly on another thread: a lock-free
 * atomic, which a signal handler may write. */
static atomic_int prompt_interrupted;
static int wake_pipe[2] = {-1, -1};

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
  int saved = errno;
  atomic_store(&prompt_interrupted, 1);
  if (wake_pipe[1] >= 0) {
    ssize_t ignored = write(wake_pipe[1], "", 1);
    (void)ignored;
  }
  errno = saved;
}

static void drain_wake_pipe(void) {
  char buf[64];
  if (wake_pipe[0] < 0) return;
  while (read(wake_pipe[0], buf, sizeof buf) > 0) {
  }
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
  if (mode == 2 && wake_pipe[0] < 0 && pipe(wake_pipe) == 0) {
    for (int i = 0; i < 2; i++) {
      fcntl(wake_pipe[i], F_SETFL, fcntl(wake_pipe[i], F_GETFL) | O_NONBLOCK);
      fcntl(wake_pipe[i], F_SETFD, FD_CLOEXEC);
    }
  }
  pending = 0;
  atomic_store(&prompt_interrupted, 0);
  drain_wake_pipe();
  if (host_state) lua_sethook(host_state, NULL, 0, 0);
  if (mode == 1) install(on_sigint);
  else if (mode == 2) install(on_prompt_sigint);
  else signal(SIGINT, SIG_DFL);
}

int gs_prompt_interrupted(void) {
  int was = atomic_exchange(&prompt_interrupted, 0);
  drain_wake_pipe();
  return was;
}

/* One byte from fd; -1 at end of input, on a read error and on Ctrl-C
 * (then gs_prompt_interrupted() says 1). Reads the descriptor directly: no
 * stdio buffer holds back what was typed. */
static int read_byte(int fd) {
  for (;;) {
    if (atomic_load(&prompt_interrupted)) return -1;
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = wake_pipe[0], .events = POLLIN}};
    int ready = poll(p, wake_pipe[0] >= 0 ? 2 : 1, -1);
    if (ready < 0) {
      if (errno == EINTR) continue; /* the flag is checked at the top */
      return -1;
    }
    if (wake_pipe[0] >= 0 && (p[1].revents & POLLIN)) {
      atomic_store(&prompt_interrupted, 1);
      return -1;
    }
    if (!p[0].revents) continue;
    unsigned char c;
    ssize_t n = read(fd, &c, 1);
    if (n == 1) {
      /* Ctrl-C as a byte: the terminal's ISIG is off, no signal will come. */
      if (c == 3) {
        atomic_store(&prompt_interrupted, 1);
        return -1;
      }
      return c;
    }
    if (n == 0) return -1;
    if (errno != EINTR && errno != EAGAIN) return -1;
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
