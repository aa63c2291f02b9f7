-- The interactive REPL: line editing, history and completion when libedit is
-- there (lineedit.lua), statements over several lines, values printed
-- legibly, errors that keep the session, and a few :commands. Ctrl-C at the
-- prompt clears the line (and an unfinished statement); Ctrl-D or :quit
-- leaves. Without a terminal, stdin runs as one script when it is one (a
-- valid Lua chunk without :commands), else line by line as at the prompt.
local ffi = require("ffi")

local M = {}

-- The prompt's side of src/interrupt.c (host functions, not kernels: they
-- are declared here rather than in gs_api.h's FFI boundary).
if not pcall(function() return ffi.C.gs_prompt_getc end) then
  ffi.cdef([[
int gs_prompt_getc(void *stream);
int gs_prompt_getbyte(void);
int gs_prompt_interrupted(void);
]])
end

-- Printing values ------------------------------------------------------------

local MAX_ITEMS, MAX_DEPTH, WIDTH = 40, 4, 78

local function quote(s) return (string.format("%q", s):gsub("\\\n", "\\n")) end

-- The shortest text that reads back as the same double.
local function number_text(x)
  if x ~= x then return "nan" end
  for digits = 14, 16 do
    local s = string.format("%." .. digits .. "g", x)
    if tonumber(s) == x then return s end
  end
  return string.format("%.17g", x)
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return k end
  if type(k) == "string" then return "[" .. quote(k) .. "]" end
  if type(k) == "number" then return "[" .. number_text(k) .. "]" end
  return "[" .. tostring(k) .. "]"
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local format

local function printable(v)
  local mt = type(v) == "table" and getmetatable(v)
  return type(mt) == "table" and mt.__tostring ~= nil
end

local function format_table(t, pad, depth, seen)
  if seen[t] then return "<cycle>" end
  if depth > MAX_DEPTH then return "{...}" end
  seen[t] = true
  local inner = pad .. "  "
  local items, n = {}, #t
  for i = 1, math.min(n, MAX_ITEMS + 1) do items[i] = format(t[i], inner, depth + 1, seen) end
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  for _, k in ipairs(keys) do
    if #items > MAX_ITEMS then break end
    local kt, v = key_text(k), t[k]
    -- a tensor's later rows line up under its first, past "key = "
    local vpad = printable(v) and (inner .. string.rep(" ", #kt + 3)) or inner
    items[#items + 1] = kt .. " = " .. format(v, vpad, depth + 1, seen)
  end
  seen[t] = nil
  local total = n + #keys
  if #items > MAX_ITEMS then
    for i = #items, MAX_ITEMS + 1, -1 do items[i] = nil end
    items[#items + 1] = string.format("... (%d more)", total - MAX_ITEMS)
  end
  if #items == 0 then return "{}" end
  local one = "{ " .. table.concat(items, ", ") .. " }"
  if #pad + #one <= WIDTH and not one:find("\n", 1, true) then return one end
  return "{\n" .. inner .. table.concat(items, ",\n" .. inner) .. ",\n" .. pad .. "}"
end

-- Tensors and other objects with __tostring print as they say; their later
-- lines are indented to sit under the table they are in.
function format(v, pad, depth, seen)
  local t = type(v)
  if t == "string" then return quote(v) end
  if t == "number" then return number_text(v) end
  if printable(v) then return (tostring(v):gsub("\n", "\n" .. pad)) end
  if t == "table" then return format_table(v, pad, depth, seen) end
  return tostring(v)
end

function M.format_value(v) return format(v, "", 1, {}) end

local function show(r)
  for i = 2, r.n do print(M.format_value(r[i])) end
end

-- Running code ---------------------------------------------------------------

local function pack(...) return { n = select("#", ...), ... } end

-- The message and the frames of the user's code, without the REPL's own.
local function handler(e)
  local msg = type(e) == "string" and e or ("error object: " .. M.format_value(e))
  local keep = {}
  for line in debug.traceback("", 2):gmatch("[^\n]+") do
    if line:find("in function 'xpcall'", 1, true) then break end
    if not line:find("^stack traceback:") then keep[#keep + 1] = line end
  end
  return msg .. "\nstack traceback:\n" .. table.concat(keep, "\n")
end

-- Errors reported so far: piped input exits 1 when there was any.
local errors_reported = 0

local function report_error(msg)
  errors_reported = errors_reported + 1
  io.stdout:flush()
  io.stderr:write(msg, "\n")
end

-- Runs f in the session's globals: { n, ok, results... }. An expression
-- compiled by compile() gets pack and returns its values packed.
local interactive = false

local function run(f, env, packed)
  setfenv(f, env)
  local C = require("gradspec.ffi").C
  -- Ctrl-C interrupts the chunk (an "interrupted" error) and the session
  -- goes on; at the prompt it is ignored.
  if interactive then C.gs_interrupt_mode(1) end
  local r = pack(xpcall(f, handler, pack))
  if interactive then C.gs_interrupt_mode(2) end
  if packed and r[1] then return pack(true, unpack(r[2], 1, r[2].n)) end
  return r
end

-- "x" alone prints x: the text is tried as an expression, then as a
-- statement. The expression is an argument of pack, not returned directly,
-- so that a call in it is no tail call and keeps its frame in a traceback.
-- first_line: the line of the input src starts on (default 1), so that
-- messages name the line of piped input. Returns f, err, and whether f is
-- such an expression.
local function compile(src, name, first_line)
  local pad = string.rep("\n", (first_line or 1) - 1)
  local f = loadstring(pad .. "local pack = ... return pack(" .. src .. "\n)", name)
  if f then return f, nil, true end
  return loadstring(pad .. src, name)
end

-- Lua reports a statement cut short as an error "near <eof>".
local function incomplete(err)
  return err ~= nil and err:find("<eof>", 1, true) ~= nil
end

-- Commands -------------------------------------------------------------------

local Session = {}
Session.__index = Session

local HELP = [[
Commands:
  :help          this text
  :load FILE     run a Lua file in this session (its globals stay)
  :time EXPR     run EXPR repeatedly and print the median time
  :reload        reload the gradspec Lua modules (variables are kept)
  :quit          leave (Ctrl-D too)
An expression prints its value (and `_` keeps it; `= expr` works too); an
unfinished statement continues on the next line; Ctrl-C clears the line
(and an unfinished statement) and interrupts a running chunk. Tab completes
globals, fields (gs.cr) and methods (x:). History: $GRADSPEC_HISTORY, else
~/.gradspec_history.
]]

-- "name(a, b, opts)" from the function's own parameter names.
local function signature(name, f)
  local params = {}
  if type(f) == "function" then
    for i = 1, 20 do
      local p = debug.getlocal(f, i)
      if not p then break end
      params[#params + 1] = p
    end
  end
  return name .. "(" .. table.concat(params, ", ") .. ")"
end

local function wrap_words(words, indent, width)
  local lines, line = {}, indent
  for _, w in ipairs(words) do
    if #line > #indent and #line + 2 + #w > width then
      lines[#lines + 1] = line
      line = indent
    end
    line = line .. (#line > #indent and "  " or "") .. w
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\n")
end

function Session:help()
  io.write(HELP, "\nOps: gs.NAME(...), options in the opts table, shown with their defaults:\n")
  local options = {}
  for _, mod in ipairs({ "gradspec.ops", "gradspec.linear_ce" }) do
    for name, opts in pairs(require(mod).options) do options[name] = opts end
  end
  local names = {}
  for name in pairs(options) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local keys, words = {}, {}
    for k in pairs(options[name]) do keys[#keys + 1] = k end
    table.sort(keys)
    for i, k in ipairs(keys) do words[i] = k .. "=" .. M.format_value(options[name][k]) end
    print("  " .. signature(name, self.env.gs[name]))
    print(wrap_words(words, "      ", WIDTH))
  end
  print("  (false: not set; the op picks. gs.options holds this table.)")
end

function Session:load(path)
  path = path:gsub("^([\"'])(.*)%1$", "%2")
  if path == "" then return report_error(":load needs a file name") end
  local f, err = loadfile(path)
  if not f then return report_error(err) end
  local r = run(f, self.env)
  if r[1] then show(r) else report_error(r[2]) end
end

local function time_text(s)
  if s >= 1 then return string.format("%.3f s", s) end
  if s >= 1e-3 then return string.format("%.3f ms", s * 1e3) end
  if s >= 1e-6 then return string.format("%.3f us", s * 1e6) end
  return string.format("%.0f ns", s * 1e9)
end

-- About a second of runs (3 at least, 1000 at most); the median resists the
-- outliers that a collection or a busy core cause.
function Session:time(src)
  if src == "" then return report_error(":time needs an expression, e.g. :time gs.randn({64, 1024})") end
  local f, err = compile(src, "=time")
  if not f then return report_error(err) end
  setfenv(f, self.env)
  local now = self.env.gs.now
  local times = {}
  local function once()
    local t0 = now()
    local ok, e = xpcall(f, handler, pack)
    times[#times + 1] = now() - t0
    if not ok then report_error(e) end
    return ok
  end
  if not once() then return end
  local reps = math.max(3, math.min(1000, math.floor(1 / math.max(times[1], 1e-9))))
  times = {}
  local start = now()
  for _ = 1, reps do
    if not once() then return end
    if now() - start > 3 then break end
  end
  table.sort(times)
  local n = #times
  local median = n % 2 == 1 and times[(n + 1) / 2] or (times[n / 2] + times[n / 2 + 1]) / 2
  print(string.format("median %s over %d runs (min %s, max %s)", time_text(median), n,
    time_text(times[1]), time_text(times[n])))
end

-- Modules that must not run twice in one process: ffi.lua's cdef would be a
-- redefinition, lineedit owns the live completion callback, and this one is
-- running.
local KEEP = { ["gradspec.ffi"] = true, ["gradspec.lineedit"] = true, ["gradspec.repl"] = true }

local function ours(name)
  return (name == "gradspec" or name:find("^gradspec%.") ~= nil) and not KEEP[name]
end

-- Tensors already held in variables (or in tables a few levels down) take
-- the new class: their fields are the same, and the new ops accept only
-- tensors of their own class.
local function adopt_tensors(v, old, new, dtypes, seen, depth)
  if type(v) ~= "table" or seen[v] or depth > MAX_DEPTH then return 0 end
  seen[v] = true
  if getmetatable(v) == old then
    setmetatable(v, new)
    v._dt = dtypes.by_name[v.dtype] or v._dt
    return 1
  end
  local n = 0
  for _, x in pairs(v) do n = n + adopt_tensors(x, old, new, dtypes, seen, depth + 1) end
  return n
end

function Session:reload()
  local saved, count = {}, 0
  for name, mod in pairs(package.loaded) do
    if ours(name) then saved[name], count = mod, count + 1 end
  end
  for name in pairs(saved) do package.loaded[name] = nil end
  local ok, gs = xpcall(function()
    require("gradspec.complete")
    return require("gradspec")
  end, handler)
  if not ok then
    for name in pairs(package.loaded) do
      if ours(name) then package.loaded[name] = nil end
    end
    for name, mod in pairs(saved) do package.loaded[name] = mod end
    return report_error("reload failed, the old modules stay:\n" .. gs)
  end
  local old = saved["gradspec.tensor"] and saved["gradspec.tensor"].Tensor
  local new = require("gradspec.tensor").Tensor
  local vars = {}
  for k, v in pairs(self.env) do if k ~= "gs" then vars[k] = v end end
  local adopted = adopt_tensors(vars, old, new, require("gradspec.dtype"), {}, 0)
  self.env.gs, self.env.assert = gs, gs.assert
  self.complete = require("gradspec.complete")
  print(string.format("reloaded %d modules; %d tensors in variables moved to them", count, adopted))
end

local COMMANDS = {
  help = Session.help, load = Session.load, time = Session.time, reload = Session.reload,
  quit = function(s) s.done = true end,
}
COMMANDS.q = COMMANDS.quit

function Session:command(line)
  local name, arg = line:match("^%s*:(%a+)%s*(.-)%s*$")
  local fn = COMMANDS[name or ""]
  if not fn then return report_error("unknown command " .. line:match("^%s*(%S*)") .. " (:help lists them)") end
  -- Ctrl-C interrupts a command (a long :time) as it interrupts a chunk;
  -- the "interrupted" error may come from the command's own code, so the
  -- whole command is protected.
  local C = ffi.C
  if interactive then C.gs_interrupt_mode(1) end
  local ok, e = xpcall(fn, handler, self, arg)
  if interactive then C.gs_interrupt_mode(2) end
  if not ok then report_error(e) end
end

-- Input ----------------------------------------------------------------------

local function history_path()
  local p = os.getenv("GRADSPEC_HISTORY")
  if p then return p ~= "" and p or nil end
  local home = os.getenv("HOME")
  return home and (home .. "/.gradspec_history") or nil
end

-- The line reader: libedit when it loads, else plain lines with a notice.
-- GRADSPEC_LINEEDIT=off turns editing off; another value names the library.
-- Both read their keys through gs_prompt_getc/getbyte (src/interrupt.c), so
-- that Ctrl-C at the prompt ends the read: self.read(prompt) returns the
-- line, or nil and "interrupt" (Ctrl-C) or "eof" (Ctrl-D, end of input).
function Session:open_input()
  local C = ffi.C
  local choice = os.getenv("GRADSPEC_LINEEDIT")
  local ed, why
  if choice == "off" then
    why = "GRADSPEC_LINEEDIT=off"
  else
    ed, why = require("gradspec.lineedit").open({
      library = choice ~= "" and choice or nil,
      history = history_path(),
      complete = function(text, at_start, line)
        return self.complete.candidates(text, self.env, at_start, line)
      end,
      getc = C.gs_prompt_getc,
    })
  end
  if ed then
    self.echoes_ctrl_c = false -- libedit's raw mode echoes no ^C
    self.read = function(prompt)
      local line = ed:read(prompt)
      if line then return line end
      return nil, C.gs_prompt_interrupted() ~= 0 and "interrupt" or "eof"
    end
    self.remember = function(line) ed:remember(line) end
  else
    print("gradspec: no line editing (" .. why .. "); reading plain lines")
    self.echoes_ctrl_c = true -- the terminal's own line editing echoes ^C
    self.read = function(prompt)
      io.write(prompt)
      io.flush()
      local parts = {}
      while true do
        local b = C.gs_prompt_getbyte()
        if b == 10 then return table.concat(parts) end
        if b < 0 then
          if C.gs_prompt_interrupted() ~= 0 then return nil, "interrupt" end
          if #parts > 0 then return table.concat(parts) end
          return nil, "eof"
        end
        parts[#parts + 1] = string.char(b)
      end
    end
    self.remember = function() end
  end
end

-- Ctrl-C at the prompt: the line typed so far is gone (the line reader
-- dropped it) and so is an unfinished statement; the variables stay.
function Session:interrupted()
  io.write(self.echoes_ctrl_c and "\n" or "^C\n")
  if self.buffer then
    self.buffer = nil
    io.write("(Ctrl-C: the unfinished statement is dropped)\n")
  elseif not self.told_ctrl_c then
    io.write("(Ctrl-C: line cleared; Ctrl-D or :quit to leave)\n")
  end
  self.told_ctrl_c = true
  io.flush()
end

-- Feeds one line: a :command, or Lua that may continue on the next line.
-- `= expr` prints expr, as in Lua 5.1's REPL. lineno: the line's number in
-- piped input (nil at the prompt, where every chunk is stdin:1).
function Session:feed(line, lineno)
  if not self.buffer and line:match("^%s*:%a") then return self:command(line) end
  if not self.buffer then
    line = line:gsub("^%s*=", "", 1)
    self.buffer_line = lineno
  end
  local src = self.buffer and (self.buffer .. "\n" .. line) or line
  if not src:match("%S") then self.buffer = nil return end
  local f, err, packed = compile(src, "=stdin", self.buffer_line)
  if not f and incomplete(err) then
    self.buffer = src
    return
  end
  self.buffer = nil
  if not f then return report_error(err) end
  local r = run(f, self.env, packed)
  if not r[1] then return report_error(r[2]) end
  if r.n >= 2 then self.env._ = r[2] end
  show(r)
end

function M.new()
  return setmetatable({ env = require("gradspec.runner").spec_env(), complete = require("gradspec.complete") }, Session)
end

function M.interactive()
  interactive = true
  require("gradspec.ffi").C.gs_interrupt_mode(2)
  local s = M.new()
  print("gradspec " .. s.env.gs.version .. ": Lua with the workbench as `gs`. :help lists commands and ops; Ctrl-C interrupts; Ctrl-D or :quit leaves.")
  s:open_input()
  while not s.done do
    local line, why = s.read(s.buffer and ">> " or "> ")
    if line == nil and why == "interrupt" then
      s:interrupted()
    elseif line == nil then
      io.write("\n")
      break
    else
      if line:match("%S") then s.remember(line) end
      s:feed(line)
    end
  end
  return 0
end

-- Whether a line of piped input is a REPL command (":help", ":time x").
local function command_line(line)
  local name = line:match("^%s*:(%a+)")
  return name ~= nil and COMMANDS[name] ~= nil
end

-- Piped text line by line, as typed at the prompt (no prompts): values are
-- printed, :commands run, a statement continues over lines, an error is
-- reported with its line and the rest still runs. Exits 1 when any line
-- failed or a statement is unfinished at the end.
function M.lines(text)
  errors_reported = 0
  local s = M.new()
  local n = 0
  for line in (text:gsub("\n$", "") .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    s:feed((line:gsub("\r$", "")), n)
    if s.done then break end
  end
  if s.buffer and not s.done then
    local _, err = compile(s.buffer, "=stdin", s.buffer_line)
    report_error((err or "stdin: unfinished statement") .. " (the input ended inside this statement)")
  end
  io.stdout:flush()
  return errors_reported > 0 and 1 or 0
end

-- stdin from a pipe or a file: one script when it is a valid Lua chunk
-- with no :command lines (errors go to stderr and exit with 1), else line
-- by line as at the prompt (M.lines).
function M.script(text)
  text = text or io.read("*a")
  local f, err = loadstring(text, "=stdin")
  local commands = false
  for line in text:gmatch("[^\n]+") do
    if command_line(line) then commands = true break end
  end
  if not f or commands then return M.lines(text) end
  local env = require("gradspec.runner").spec_env()
  local r = run(f, env)
  if not r[1] then
    report_error("gradspec: " .. r[2])
    return 1
  end
  return 0
end

function M.main()
  if require("gradspec.ffi").C.gs_isatty(0) == 0 then return M.script() end
  return M.interactive()
end

return M
