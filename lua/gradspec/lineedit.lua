-- Line editing, history and tab completion through the system's libedit
-- (Debian package libedit2), loaded at run time with ffi.load so that the
-- gradspec binary never links it: where it is missing, open() says why and
-- the REPL reads plain lines instead.
local ffi = require("ffi")
local C = ffi.C

local M = {}

M.LIBRARY = "libedit.so.2"

-- The few entry points of libedit's readline-compatible layer that we use
-- (editline/readline.h). A system library, not our C API: declared here.
local CDEF = [[
typedef char **lineedit_completion_fn(const char *text, int start, int end);
typedef int lineedit_getc_fn(void *stream);
char *readline(const char *prompt);
int add_history(const char *line);
void stifle_history(int max);
int read_history(const char *path);
int write_history(const char *path);
extern lineedit_completion_fn *rl_attempted_completion_function;
extern lineedit_getc_fn *rl_getc_function;
extern int rl_catch_signals;
extern int rl_attempted_completion_over;
extern const char *rl_basic_word_break_characters;
extern char *rl_completer_word_break_characters;
extern int rl_completion_append_character;
extern const char *rl_readline_name;
extern char *rl_line_buffer;
void free(void *p);
void *calloc(size_t n, size_t size);
char *strdup(const char *s);
]]

-- libedit cuts the word to complete at these; the completer splits Lua
-- operators itself, so that "x+gs.cr" and ":load dir/file" both arrive whole.
local BREAK = " \t\n\"'`(){}[],;="

-- One editor per process: the readline layer is global state in libedit,
-- and the callback and strings it points to must outlive every call.
local editor

local function declare()
  if pcall(ffi.typeof, "lineedit_completion_fn") then return true end
  return pcall(ffi.cdef, CDEF)
end

-- The longest prefix that every candidate shares.
local function common_prefix(list)
  local p = list[1]
  for i = 2, #list do
    local s, n = list[i], 0
    while n < #p and n < #s and p:byte(n + 1) == s:byte(n + 1) do n = n + 1 end
    p = p:sub(1, n)
  end
  return p
end

-- libedit frees the array and each string with free(), so both come from
-- calloc/strdup. Slot 0 replaces the word; libedit reads slot 2 even for a
-- single match, so the array always ends with spare NULLs.
local function match_array(list)
  local n = #list
  local arr = ffi.cast("char **", C.calloc(n + 3, ffi.sizeof("char *")))
  if arr == nil then return nil end
  arr[0] = C.strdup(common_prefix(list))
  for i = 1, n do arr[i] = C.strdup(list[i]) end
  return arr
end

local Editor = {}
Editor.__index = Editor

local HISTORY_SIZE = 1000

-- Points libedit at our settings, callback and history; raises if the
-- library lacks a symbol (GRADSPEC_LINEEDIT may name another library).
local function setup(ed, lib)
  -- libedit reads rl_getc_function and rl_catch_signals once, when it
  -- first initialises, which the history calls below already do: they are
  -- set first. A caller that reads the keys handles SIGINT itself (as
  -- Python's REPL does); libedit's own handler would raise SIGINT a second
  -- time, for the whole process group, from inside the first.
  if ed.getc ~= nil then
    lib.rl_getc_function = ffi.cast("lineedit_getc_fn *", ed.getc)
    lib.rl_catch_signals = 0
  end
  ed.name = ffi.new("char[?]", 9, "gradspec")
  ed.breaks = ffi.new("char[?]", #BREAK + 1, BREAK)
  lib.rl_readline_name = ed.name
  lib.rl_basic_word_break_characters = ed.breaks
  lib.rl_completer_word_break_characters = ed.breaks
  lib.rl_completion_append_character = 0
  -- Runs inside readline(): a Lua error must not unwind through libedit, so
  -- anything wrong becomes "no candidates".
  ed.callback = ffi.cast("lineedit_completion_fn *", function(text, start)
    local ok, arr = pcall(function()
      local word = ffi.string(text)
      local line = lib.rl_line_buffer ~= nil and ffi.string(lib.rl_line_buffer) or word
      local list = ed.complete(word, start == 0, line)
      if list == nil then return nil end
      lib.rl_attempted_completion_over = 1
      if #list == 0 then return nil end
      return match_array(list)
    end)
    if not ok then
      lib.rl_attempted_completion_over = 1
      return nil
    end
    return arr
  end)
  lib.rl_attempted_completion_function = ed.callback
  if ed.history then
    lib.stifle_history(HISTORY_SIZE)
    lib.read_history(ed.history)
  end
end

-- opts.library: the library to load (default libedit.so.2).
-- opts.history: file to read now and rewrite after each line (nil: none).
-- opts.complete(text, at_start, line): a list of candidates, each the whole
-- word completed; nil to let libedit complete a file name.
-- opts.getc: a C function int (FILE *) that libedit reads each key with
-- (nil: libedit reads the terminal itself); returning -1 ends the line
-- with no result, as end of input does. With it, libedit leaves the
-- signals to the caller (rl_catch_signals = 0).
-- Returns the editor (the same one on later calls), or nil and why libedit
-- cannot be used.
function M.open(opts)
  if editor then return editor end
  if not declare() then return nil, "cannot declare the libedit functions" end
  local ok, lib = pcall(ffi.load, opts.library or M.LIBRARY)
  if not ok then return nil, tostring(lib) end
  local ed = setmetatable({ lib = lib, history = opts.history, complete = opts.complete, getc = opts.getc }, Editor)
  local set, err = pcall(setup, ed, lib)
  if not set then return nil, (tostring(err):gsub("^[^:]*:%d+: ", "")) end
  editor = ed
  return ed
end

-- One line without its newline, or nil at end of input (Ctrl-D) or when
-- opts.getc ended the line.
function Editor:read(prompt)
  io.stdout:flush()
  local p = self.lib.readline(prompt)
  if p == nil then return nil end
  local s = ffi.string(p)
  C.free(p)
  return s
end
-- readline() calls back into Lua for completion, which LuaJIT forbids from
-- a C call made by compiled code: this call always stays interpreted.
jit.off(Editor.read)

-- Adds a line to the history and rewrites the file, so that history
-- survives a session that ends without :quit.
function Editor:remember(line)
  self.lib.add_history(line)
  if self.history then self.lib.write_history(self.history) end
end

return M
