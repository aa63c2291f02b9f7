-- The REPL: completion candidates and value printing checked directly, then
-- whole sessions driven through a terminal (tmux) and read off its screen,
-- and stdin from a pipe: run as a script when it is one, else line by line
-- as at the prompt.
local ffi = require("ffi")
local process = require("gradspec.process")
local complete = require("gradspec.complete")
local repl = require("gradspec.repl")

local function has(s, text) return s:find(text, 1, true) ~= nil end

local function contains(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

describe("completion candidates", function()
  local env = setmetatable({ gs = gs, x = gs.randn({ 2, 3 }), s = "abc" }, { __index = _G })

  -- text before the cursor -> every candidate, sorted
  local cases = {
    { "gs.cr", { "gs.cross_entropy", "gs.cross_entropy_backward" } },
    { "gs.options.log_p", { "gs.options.log_probs", "gs.options.log_probs_backward" } },
    { "1+gs.entropy_b", { "1+gs.entropy_backward" } },
    { "x.ro", { "x.row", "x.rows", "x.rows_view" } },
    { "s:up", { "s:upper" } },
    { "nosuch.x", {} },
  }
  for _, c in ipairs(cases) do
    it(string.format("%q completes to exactly the matching names", c[1]), function()
      assert.equal(complete.candidates(c[1], env, false), c[2])
    end)
  end

  it("x: offers a tensor's methods, not its fields or private names", function()
    local list = complete.candidates("x:", env, false)
    for _, m in ipairs({ "x:softmax", "x:sum", "x:to", "x:get" }) do
      assert.is_true(contains(list, m), m .. " missing")
    end
    assert.is_false(contains(list, "x:rows"), "x:rows is a number, not a method")
    assert.is_false(contains(list, "x:_shape"), "private fields stay hidden")
  end)

  it("a bare word completes globals and keywords", function()
    assert.is_true(contains(complete.candidates("pri", env, false), "print"))
    assert.is_true(contains(complete.candidates("fun", env, false), "function"))
    assert.is_true(contains(complete.candidates("g", env, false), "gs"))
  end)

  it("a : at the start of a line completes commands; :load leaves file names to the editor", function()
    assert.equal(complete.candidates(":he", env, true), { ":help" })
    assert.equal(complete.candidates(":", env, true), complete.COMMANDS)
    assert.equal(complete.candidates("sp", env, false, ":load sp"), nil)
  end)

  it("a field lookup that raises an error gives no candidates instead", function()
    local e = setmetatable({ bad = setmetatable({}, { __index = function() error("no") end }) }, { __index = _G })
    assert.equal(complete.candidates("bad.x.y", e, false), {})
  end)
end)

describe("printing values", function()
  local self_ref = {}
  self_ref.me = self_ref
  local cases = {
    { { 1, 2, "a" }, '{ 1, 2, "a" }' },
    { { b = 1, a = { c = true } }, "{ a = { c = true }, b = 1 }" },
    { { [1.5] = 2, ["two words"] = 3 }, '{ [1.5] = 2, ["two words"] = 3 }' },
    { self_ref, "{ me = <cycle> }" },
    { "line\nbreak", '"line\\nbreak"' },
    { 0.1 + 0.2, "0.30000000000000004" },
    { 1 / 0, "inf" },
    { 0 / 0, "nan" },
    { {}, "{}" },
  }
  for _, c in ipairs(cases) do
    it("prints " .. c[2] .. " as Lua would read it back", function()
      assert.equal(repl.format_value(c[1]), c[2])
    end)
  end

  it("a table too wide for one line goes one field per line", function()
    local text = repl.format_value({ alpha = string.rep("a", 40), beta = string.rep("b", 40) })
    assert.equal(text, '{\n  alpha = "' .. string.rep("a", 40) .. '",\n  beta = "' .. string.rep("b", 40) .. '",\n}')
  end)

  it("a tensor inside a table keeps its rows lined up", function()
    local text = repl.format_value({ g = gs.zeros({ 2, 2 }) })
    local first, second = text:match("\n([^\n]*)\n([^\n]*)\n")
    assert.is_true(first ~= nil, text)
    assert.equal(second:find("[", 1, true), first:find("[[", 1, true) + 1, text)
  end)
end)

describe("gradspec from a pipe", function()
  local exe = process.self_exe()

  it("runs stdin as a script", function()
    local out, code = process.run("printf '%s' " .. process.quote("x = 20\nprint(x + 22)") .. " | " .. process.quote(exe))
    assert.equal(code, 0, out)
    assert.equal(out, "42\n")
  end)

  it("exits 1 on an error, with the message and the script's line", function()
    local out, code = process.run("printf '%s' " .. process.quote("local a = 1\nerror('bad value')") ..
      " | " .. process.quote(exe))
    assert.equal(code, 1, out)
    assert.is_true(has(out, "stdin:2: bad value"), out)
    assert.is_true(has(out, "stack traceback:"), out)
  end)

  local function piped(text)
    return process.run("printf '%s' " .. process.quote(text) .. " | " .. process.quote(exe))
  end

  it("a script keeps its locals from line to line and prints only what it prints", function()
    local out, code = piped("local a = 40\nlocal function inc(v) return v + 1 end\nprint(inc(a) + 1)\n")
    assert.equal(code, 0, out)
    assert.equal(out, "42\n")
  end)

  it("bare expressions run line by line and print their values, as at the prompt", function()
    local out, code = piped("1 + 1\nx = 41\nx\n= x + 1\n'text'\n")
    assert.equal(code, 0, out)
    assert.equal(out, '2\n41\n42\n"text"\n')
  end)

  it(":help and :time run as commands, with the Lua around them", function()
    local out, code = piped("n = 3\n:help\n:time gs.randn({n, 8})\nn * 2\n")
    assert.equal(code, 0, out)
    assert.is_true(has(out, "Commands:\n  :help"), out)
    assert.is_true(has(out, "linear_cross_entropy(h, W, target, opts)"), out)
    assert.is_true(out:find("median [%d.]+ %a+ over %d+ runs") ~= nil, out)
    assert.is_true(out:sub(-2) == "6\n", out)
  end)

  it("a statement over several lines runs once it is complete", function()
    local out, code = piped("function sq(v)\n  return v * v\nend\nsq(7)\n:quit\nsq(8)\n")
    assert.equal(code, 0, out)
    assert.equal(out, "49\n")
  end)

  it("an error names its line of the input; the lines after it still run, and the exit status is 1", function()
    local out, code = piped("x = 1\n1 + 1\nerror('bad line')\nx + 1\n")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "stdin:3: bad line"), out)
    assert.is_true(has(out, "2\n"), out)
    assert.is_true(out:sub(-2) == "2\n", out)
  end)

  it("a statement left unfinished at the end is an error, not silence", function()
    local out, code = piped("x = 1\nfunction f()\n  return x\n")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "the input ended inside this statement"), out)
    assert.is_true(has(out, "'end' expected (to close 'function' at line 2)"), out)
  end)

  it("an unknown :command is an error with the exit status 1", function()
    local out, code = piped("1\n:nosuch\n")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "unknown command :nosuch"), out)
  end)
end)

-- A REPL in a tmux pane: keys go in with send-keys, the screen comes back
-- with capture-pane. Each term has its own tmux server on its own socket
-- (-S), killed and removed after the it.
local term = {}
term.__index = term

-- history: the history file to use (default: a fresh one, removed by stop).
function term.new(history)
  local tmp = os.tmpname()
  local socket, status = tmp .. ".tmux", tmp .. ".status"
  return setmetatable({ socket = socket, history = history or tmp, status = status, files = { tmp, socket, status } }, term)
end

function term:tmux(args)
  return process.run("tmux -S " .. process.quote(self.socket) .. " -f /dev/null " .. args)
end

-- env: extra environment for gradspec. Its exit status goes to a file (tmux
-- can be slow to reap a pane's process), and remain-on-exit keeps the last
-- screen for the failure message.
function term:start(env)
  local parts = { "env", "GRADSPEC_HISTORY=" .. process.quote(self.history) }
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. process.quote(v) end
  parts[#parts + 1] = process.quote(process.self_exe())
  parts[#parts + 1] = "; echo $? > " .. process.quote(self.status)
  local out, code = self:tmux("new-session -d -s repl -x 100 -y 40 " .. process.quote(table.concat(parts, " ")) ..
    " \\; set-option -t repl remain-on-exit on")
  assert.equal(code, 0, "tmux new-session failed: " .. out)
  self:ready()
end

function term:screen()
  return (self:tmux("capture-pane -p -J -S - -t repl"))
end

-- Prompt lines on the screen: each line entered leaves one, and gradspec
-- adds one when it is ready for the next. Also whether the last line is a
-- bare prompt (with or without its trailing space).
local function prompts(s)
  local n = 0
  for line in s:gmatch("[^\n]*") do
    if line:match("^>>?$") or line:match("^>>? ") then n = n + 1 end
  end
  return n, s:match("([^\n]*)%s*$"):match("^>>? ?$") ~= nil
end

-- Waits until at least n prompts show and the last line is a fresh one:
-- keys typed before that would reach the terminal before libedit does and
-- be echoed out of place.
function term:ready(n)
  local deadline = gs.now() + 6
  local s = self:screen()
  local count, fresh = prompts(s)
  while not (fresh and count >= (n or 1)) and gs.now() < deadline do
    os.execute("sleep 0.05")
    s = self:screen()
    count, fresh = prompts(s)
  end
  assert.is_true(fresh and count >= (n or 1), "no prompt came back:\n" .. s)
  return s
end

-- Polls the screen for up to `seconds`; returns whether `text` showed, and the screen.
function term:wait_for(text, seconds)
  local deadline = gs.now() + (seconds or 6)
  repeat
    local s = self:screen()
    if has(s, text) then return true, s end
    os.execute("sleep 0.05")
  until gs.now() > deadline
  return false, self:screen()
end

function term:expect(text, seconds)
  local ok, s = self:wait_for(text, seconds)
  assert.is_true(ok, "the screen never showed " .. string.format("%q", text) .. ":\n" .. s)
  return s
end

function term:keys(...)
  local names = {}
  for i = 1, select("#", ...) do names[i] = (select(i, ...)) end
  self:tmux("send-keys -t repl " .. table.concat(names, " "))
end

function term:type(text) self:tmux("send-keys -t repl -l " .. process.quote(text)) end

-- Presses Enter, waits until gradspec prints `shows` (when given) and
-- prompts again; returns the screen.
function term:enter(shows)
  local before = prompts(self:screen())
  self:keys("Enter")
  if shows then self:expect(shows) end
  return self:ready(before + 1)
end

function term:line(text, shows)
  self:type(text)
  return self:enter(shows)
end

-- Presses Ctrl-C at the prompt and waits for the fresh prompt it gives.
function term:ctrl_c(shows)
  local before = prompts(self:screen())
  self:keys("C-c")
  if shows then self:expect(shows) end
  return self:ready(before + 1)
end

function term:pane(field)
  return (self:tmux("display-message -p -t repl '#{" .. field .. "}'"):gsub("%s+$", ""))
end

-- gradspec's exit status once it has ended, or nil if it did not end.
function term:wait_exit()
  local deadline = gs.now() + 6
  repeat
    local f = io.open(self.status, "r")
    local status = f and f:read("*n")
    if f then f:close() end
    if status then return status end
    os.execute("sleep 0.05")
  until gs.now() > deadline
  return nil
end

function term:stop()
  self:tmux("kill-server")
  for _, f in ipairs(self.files) do os.remove(f) end
end

describe("the REPL on a terminal", function()
  local _, tmux_status = process.run("command -v tmux")
  skip_if(tmux_status ~= 0, "tmux is not installed (Debian package tmux); these specs drive the REPL through it")
  local t, others
  before_each(function()
    t, others = term.new(), {}
  end)
  after_each(function()
    t:stop()
    for _, o in ipairs(others) do o:stop() end
  end)

  it("a function typed over several lines continues the statement, then runs", function()
    t:start()
    t:line("function sq(v)", ">> ")
    t:line("return v * v")
    t:line("end")
    local s = t:line("sq(7) + 0.5", "49.5")
    assert.is_true(has(s, "> function sq(v)\n>> return v * v\n>> end\n"), s)
  end)

  it("an error prints its message and traceback and the session keeps its variables", function()
    t:start()
    t:line("kept = 41")
    t:line("function boom() error('kernel said no') end")
    local s = t:line("boom()", "stack traceback:")
    assert.is_true(has(s, "stdin:1: kernel said no"), s)
    assert.is_true(has(s, "in function 'boom'"), s)
    s = t:line("kept + 1", "\n42\n")
    assert.equal(t:pane("pane_dead"), "0", s)
  end)

  it("Ctrl-C interrupts a running chunk and the session goes on", function()
    t:start()
    t:line("kept = 7")
    -- The chunk says when it runs ("spin" is not in its echoed text), so
    -- that Ctrl-C never reaches the prompt before it, however slow the machine.
    t:type('print("sp" .. "in"); n = 0; while true do n = n + collectgarbage("count") end')
    t:keys("Enter")
    t:expect("\nspin")
    t:keys("C-c")
    local s = t:expect("interrupted")
    assert.is_true(has(s, "Ctrl-C again ends gradspec"), s)
    t:ready(3)
    s = t:line("kept * 6", "\n42\n")
    assert.equal(t:pane("pane_dead"), "0", s)
  end)

  -- Ctrl-C at the prompt, with libedit and with plain lines.
  local modes = { { name = "plain lines", env = { GRADSPEC_LINEEDIT = "off" } } }
  if os.getenv("GRADSPEC_LINEEDIT") ~= "off" and pcall(ffi.load, "libedit.so.2") then
    table.insert(modes, 1, { name = "libedit", env = {} })
  end
  for _, mode in ipairs(modes) do
    it(mode.name .. ": Ctrl-C at the prompt clears the line and the session keeps its variables", function()
      t:start(mode.env)
      t:line("x = 41")
      t:type("half typed")
      local s = t:ctrl_c("(Ctrl-C: line cleared; Ctrl-D or :quit to leave)")
      assert.is_true(has(s, "> half typed^C\n(Ctrl-C: line cleared"), s)
      t:ctrl_c()
      s = t:line("= x + 1", "\n42\n")
      assert.equal(t:pane("pane_dead"), "0", s)
      assert.is_false(has(s, "half typed\n"), "the cleared line never ran:\n" .. s)
    end)

    it(mode.name .. ": Ctrl-C in a statement over several lines drops its lines", function()
      t:start(mode.env)
      t:line("function g()", ">> ")
      t:line("return 'pending'")
      local s = t:ctrl_c("(Ctrl-C: the unfinished statement is dropped)")
      s = t:line("g == nil", "\ntrue\n")
      s = t:line("function g() return 'new' end")
      s = t:line("g()", '"new"')
      assert.equal(t:pane("pane_dead"), "0", s)
    end)

    it(mode.name .. ": Ctrl-D after Ctrl-C still leaves, with status 0", function()
      t:start(mode.env)
      t:ctrl_c()
      t:keys("C-d")
      assert.equal(t:wait_exit(), 0, "gradspec did not end with status 0 on Ctrl-D:\n" .. t:screen())
    end)
  end

  it("Ctrl-C interrupts a running :time and the session goes on", function()
    t:start()
    t:line("kept = 6")
    t:type(':time (function() print("sp" .. "in") local n = 0 while true do n = n + collectgarbage("count") end end)()')
    t:keys("Enter")
    t:expect("\nspin")
    t:keys("C-c")
    local s = t:expect("interrupted")
    t:ready(3)
    s = t:line("kept * 7", "\n42\n")
    assert.equal(t:pane("pane_dead"), "0", s)
  end)

  it("a bare expression prints tensors and tables legibly", function()
    t:start()
    local s = t:line("gs.tensor({{1, 2}, {3, 4}}), {a = 1}", "{ a = 1 }")
    assert.is_true(has(s, "tensor([[1., 2.],\n        [3., 4.]], shape={2, 2}, dtype=f32, device=cpu)"), s)
  end)

  it(":help lists every op with its options and defaults", function()
    t:start()
    local s = t:line(":help", "gs.options holds this table")
    for name in pairs(gs.options) do assert.is_true(has(s, "  " .. name .. "(logits"), name .. ":\n" .. s) end
    assert.is_true(has(s, "  linear_cross_entropy(h, W, target, opts)"), s)
    assert.is_true(has(s, "chunk_rows=0"), s)
    assert.is_true(has(s, 'reduction="mean"'), s)
    assert.is_true(has(s, "label_smoothing=0"), s)
    assert.is_true(has(s, "ignore_index=-100"), s)
  end)

  it(":load runs a file in the session, :time prints a median, :reload keeps variables", function()
    local file = os.tmpname()
    t.files[#t.files + 1] = file
    local f = assert(io.open(file, "w"))
    f:write("loaded_value = 99\n")
    f:close()
    t:start()
    t:line(":load " .. file)
    t:line("loaded_value + 1", "\n100\n")
    t:line(":time gs.randn({8, 64})", "median ")
    t:line("logits = gs.randn({2, 5})")
    t:line(":reload", "reloaded ")
    local s = t:line("gs.cross_entropy(logits, gs.tensor({1, 3}, {dtype = 'i64'})):item() > 0", "\ntrue\n")
    assert.is_true(has(s, "over "), s)
  end)

  it("without libedit it says so in one line and still reads input", function()
    t:start({ GRADSPEC_LINEEDIT = "off" })
    local s = t:expect("no line editing (GRADSPEC_LINEEDIT=off); reading plain lines")
    t:line("function f()")
    t:line("return 'plain' end")
    s = t:line("f()", '"plain"')
    assert.is_true(has(s, ">> "), s)
  end)

  describe("with libedit", function()
    skip_if(os.getenv("GRADSPEC_LINEEDIT") == "off", "GRADSPEC_LINEEDIT=off: line editing is turned off in this run")
    skip_if(not pcall(ffi.load, "libedit.so.2"), "libedit.so.2 cannot be loaded (Debian package libedit2)")

    it("Tab completes gs.cr to gs.cross_entropy, a second Tab lists both, x:so completes to x:softmax", function()
      t:start()
      t:type("gs.cr")
      t:keys("Tab")
      t:expect("> gs.cross_entropy")
      t:keys("Tab")
      t:expect("gs.cross_entropy_backward")
      t:keys("C-u")
      t:line("x = gs.randn({2, 3})")
      t:type("x:so")
      t:keys("Tab")
      t:expect("> x:softmax")
      t:type("():sum(1)")
      local s = t:enter("shape={2}, dtype=f64")
      assert.is_true(has(s, "> x:softmax():sum(1)\ntensor([1."), s)
    end)

    it("history typed in one session comes back with Up in the next, and :quit exits 0", function()
      local first = term.new(t.history)
      others[1] = first
      first:start()
      first:line("hist_marker = 1234")
      first:type(":quit")
      first:keys("Enter")
      assert.equal(first:wait_exit(), 0, "gradspec did not end with status 0 on :quit:\n" .. first:screen())
      t:start()
      t:keys("Up")
      t:expect("> :quit")
      t:keys("Up")
      t:expect("> hist_marker = 1234")
      t:enter()
      local s = t:line("hist_marker + 1", "\n1235\n")
      assert.is_true(has(s, "1235"), s)
    end)
  end)
end)
