-- Runs spec files: finds them, filters its by name and tag, runs each it with
-- its hooks, and turns what happened into result records. By default each
-- file runs in a child process, so a crash or a hang fails that file alone.
local spec = require("gradspec.spec")
local T = require("gradspec.tensor")
local A = require("gradspec.assert")
local track = require("gradspec.track")
local serial = require("gradspec.serial")
local capture = require("gradspec.html.capture")
local gffi = require("gradspec.ffi")
local ffi, C = gffi.ffi, gffi.C

local R = {}

R.defaults = { seed = 1234, timeout = 600, isolate = true, output = "text" }

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Shuffling (--shuffle): a small generator of our own, so that a seed
-- gives the same order on every machine and the specs' own math.random is
-- left alone. xorshift32 over 32-bit integers.
local bit = require("bit")

-- A seed for one file: the run's seed mixed with the file's path (FNV-1a).
function R.mix_seed(seed, path)
  local h = bit.bxor(bit.tobit(2166136261), bit.tobit(seed % 4294967296))
  for i = 1, #path do
    h = bit.bxor(h, path:byte(i)) % 4294967296
    -- h * 16777619 mod 2^32, as (h << 24) + 403 h: every step exact in a double
    h = bit.tobit(bit.lshift(h, 24) + h * 403)
  end
  return h % 4294967296
end

-- A function that returns a shuffled copy of a list (Fisher-Yates),
-- drawing from one stream seeded by seed.
function R.permuter(seed)
  local x = bit.tobit(seed)
  if x == 0 then x = 2463534242 end
  local function next_u32()
    x = bit.bxor(x, bit.lshift(x, 13))
    x = bit.bxor(x, bit.rshift(x, 17))
    x = bit.bxor(x, bit.lshift(x, 5))
    return x % 4294967296
  end
  return function(list)
    local out = {}
    for i, v in ipairs(list) do out[i] = v end
    for i = #out, 2, -1 do
      local j = next_u32() % i + 1
      out[i], out[j] = out[j], out[i]
    end
    return out
  end
end

-- Spec files under the given paths: directories are searched recursively for
-- *_spec.lua, files are taken as they are.
function R.find_specs(paths)
  local files = {}
  for _, p in ipairs(paths) do
    local f = io.open(p, "r")
    if not f then error("no such file or directory: " .. p, 0) end
    -- reading a directory fails (EISDIR); a file is taken as it is, with no
    -- child process (find), which matters under tools that trace children
    local _, read_err = f:read(0)
    f:close()
    if not read_err then
      files[#files + 1] = p
      goto next_path
    end
    local pipe = io.popen("find " .. shell_quote(p) .. " -type f -name '*_spec.lua' 2>/dev/null | LC_ALL=C sort")
    local found = {}
    for line in pipe:lines() do found[#found + 1] = line end
    pipe:close()
    for _, x in ipairs(found) do files[#files + 1] = x end
    ::next_path::
  end
  return files
end

-- The tags spec files use, found in their text without running them:
-- "#tag" words inside string literals (names) and the strings of
-- `tags = "a"` and `tags = { "a", "b" }` entries. Comments are skipped.
local function tags_in_text(text, known)
  local i, n = 1, #text
  while true do
    local at = text:find("[%-%[\"']", i)
    if not at then break end
    local c = text:sub(at, at)
    if c == "-" then
      if text:sub(at + 1, at + 1) == "-" then
        local eq = text:match("^%[(=*)%[", at + 2)
        if eq then
          local close = text:find("]" .. eq .. "]", at + 2, true)
          i = close and close + #eq + 2 or n + 1
        else
          i = (text:find("\n", at, true) or n) + 1
        end
      else
        i = at + 1
      end
    else
      local body, after
      if c == "[" then
        local eq = text:match("^%[(=*)%[", at)
        if not eq then
          i = at + 1
          goto continue
        end
        local first = at + #eq + 2
        local close = text:find("]" .. eq .. "]", first, true)
        body, after = text:sub(first, (close or n + 1) - 1), close and close + #eq + 2 or n + 1
      else
        local j = at + 1
        while j <= n do
          local d = text:sub(j, j)
          if d == "\\" then j = j + 2
          elseif d == c or d == "\n" then break
          else j = j + 1 end
        end
        body, after = text:sub(at + 1, j - 1), j + 1
      end
      for tag in body:gmatch("#([%w_%-]+)") do known[tag] = true end
      local before = text:sub(math.max(1, at - 300), at - 1)
      if before:match("tags%s*=%s*$") or before:match("tags%s*=%s*{[^{}]*$") then
        if body:match("^[%w_%-]+$") then known[body] = true end
      end
      i = after
    end
    ::continue::
  end
  return known
end

-- Tags the workbench itself gives a meaning to: known whatever the files
-- use, so that `--exclude-tags cuda` works on any selection.
R.builtin_tags = { cuda = true, big = true }

function R.known_tags(files)
  local known = {}
  for t in pairs(R.builtin_tags) do known[t] = true end
  for _, path in ipairs(files) do
    local f = io.open(path, "r")
    if f then
      tags_in_text(f:read("*a") or "", known)
      f:close()
    end
  end
  return known
end

local function matches_filter(name, filter)
  if not filter then return true end
  if name:find(filter, 1, true) then return true end
  local ok, found = pcall(string.find, name, filter)
  return ok and found ~= nil
end

local function has_any(tags, set)
  for t in pairs(set) do if tags[t] then return true end end
  return false
end

function R.selected(item, options)
  if not matches_filter(item.full_name, options.filter) then return false end
  if options.tags and next(options.tags) and not has_any(item.tags, options.tags) then return false end
  if options.exclude_tags and has_any(item.tags, options.exclude_tags) then return false end
  return true
end

-- Tags that need something this machine may lack.
local requirement_cache = {}
local function requirement_missing(tags)
  if tags.cuda then
    if requirement_cache.cuda == nil then
      local reason = require("gradspec.ops").cuda_unavailable_reason()
      requirement_cache.cuda = reason and ("needs a CUDA device: " .. reason) or false
    end
    return requirement_cache.cuda or nil
  end
  -- Forked GPU ranks (gs.dist): GPUs are counted without initialising
  -- CUDA here, which would leave the forked ranks unable to use it.
  for tag, why in pairs({ nccl = function(d) return d.nccl_unavailable_reason(2) end,
    nccl_1gpu = function(d) return d.nccl_unavailable_reason(1) end,
    cuda_ranks = function(d) return d.gpu_unavailable_reason(1) end }) do
    if tags[tag] then
      if requirement_cache[tag] == nil then
        local reason = why(require("gradspec.dist"))
        requirement_cache[tag] = reason and ("needs " .. (tag == "cuda_ranks" and "a GPU" or "NCCL")
          .. ": " .. reason) or false
      end
      if requirement_cache[tag] then return requirement_cache[tag] end
    end
  end
  return nil
end

-- Keeps the traceback frames that help: the spec's own lines and the
-- workbench modules it called, without the runner's machinery.
local function filtered_traceback(msg)
  local tb = debug.traceback("", 3)
  local keep = {}
  for line in tb:gmatch("[^\n]+") do
    if not line:find("gradspec/runner%.lua") and not line:find("gradspec/cli%.lua")
      and not line:find("gradspec/assert%.lua") and not line:find("gradspec/busted%.lua")
      and not line:find("%[C%]: in function 'xpcall'")
      and not line:find("%[C%]: in function 'error'")
      and not line:find("^stack traceback:") and line:match("%S") then
      keep[#keep + 1] = line
    end
  end
  return tostring(msg) .. "\nstack traceback:\n" .. table.concat(keep, "\n")
end

local function handler(e)
  if type(e) == "table" and e[spec.SKIP] then return e end
  local text = filtered_traceback(e) -- not a tail call: that would drop a frame
  return text
end

local function unasserted(records, strict)
  local failures, warnings = {}, {}
  for _, r in ipairs(records) do
    if not r.asserted then
      local text = string.format("the %s returned by %s at %s was never asserted", r.what, r.op, r.where)
      -- Gradients must be asserted; a primary result warns; side outputs
      -- (lse, z-loss) only count under --strict-outputs, which fails on all.
      if r.kind == "gradient" or strict then failures[#failures + 1] = text
      elseif r.kind == "value" then warnings[#warnings + 1] = text end
    end
  end
  return failures, warnings
end

local current_item = nil

-- The it running now ({file, full_name, line, tags}), or nil between its.
function R.current_it() return current_item end

-- While specs run in this process, os.exit raises an error instead of ending
-- it: a spec that ends the process would leave a report cut short and, from
-- os.exit(0), a green exit status. exit_note keeps the message so that an it
-- that caught the error (pcall(os.exit)) still fails.
local phase, exit_note = nil, nil
local function intercepted_exit(...)
  local args = {}
  for i = 1, select("#", ...) do args[i] = tostring((select(i, ...))) end
  local where = phase == "load" and "while loading the file" or "inside this it"
  local msg = string.format("os.exit(%s) called %s: a spec must not end the process", table.concat(args, ", "), where)
  exit_note = exit_note or msg
  error(msg, 2)
end

-- The C exit guard (src/run_control.c), armed while a run goes on in this
-- process and not in a child (whose parent sees that the file ended early).
local guard_on = false
local function guard(what)
  if guard_on then C.gs_run_guard(what) end
end

local function is_skip(e) return type(e) == "table" and e[spec.SKIP] end

local function hook_error(label, e)
  if is_skip(e) then return e end
  return label .. ": " .. tostring(e)
end

-- Runs one it and returns its result record. owner is the file's root node
-- (its set_running and take_finally), or a set_running function; seed
-- defaults to options.seed.
function R.run_it(item, options, owner, seed)
  local set_running, take_finally = owner, nil
  if type(owner) == "table" then set_running, take_finally = owner.set_running, owner.take_finally end
  seed = seed or options.seed or R.defaults.seed
  local res = { ev = "result", name = item.full_name, file = item.file, line = item.line, assertions = 0, seed = seed }
  local node = item.node
  if node.kind == "pending" then
    res.status, res.reason = "skip", "pending"
    return res
  end
  local reason = item.skip_reason or requirement_missing(item.tags)
  if reason then
    res.status, res.reason = "skip", reason
    return res
  end
  T.set_seed(seed)
  A.reset_count()
  A.take_notes()
  track.begin()
  capture.begin()
  local t0 = C.gs_now()
  local before, after = spec.hooks(node)
  guard(string.format("'%s' (%s:%d)", item.full_name, tostring(item.file), item.line or 0))
  set_running(true)
  current_item, phase, exit_note = item, "it", nil
  local ok, err = true, nil
  for _, f in ipairs(before) do
    ok, err = xpcall(f, handler)
    if not ok then
      err = hook_error("before_each", err)
      break
    end
  end
  if ok then ok, err = xpcall(node.fn, handler) end
  -- finally callbacks: the cleanups the it registered, whatever its outcome
  for _, f in ipairs(take_finally and take_finally() or {}) do
    local ok2, err2 = xpcall(f, handler)
    if not ok2 then
      err2 = hook_error("finally", err2)
      if ok or is_skip(err) then ok, err = false, err2
      elseif not is_skip(err2) then err = tostring(err) .. "\n" .. err2 end
    end
  end
  for _, f in ipairs(after) do
    local ok2, err2 = xpcall(f, handler)
    if not ok2 then
      err2 = hook_error("after_each", err2)
      -- an after_each error fails an it that passed or skipped itself, and
      -- is added to the message of one that failed
      if ok or is_skip(err) then ok, err = false, err2
      elseif not is_skip(err2) then err = tostring(err) .. "\n" .. err2 end
    end
  end
  set_running(false)
  local exited = exit_note
  current_item, phase, exit_note = nil, nil, nil
  res.time = C.gs_now() - t0
  res.assertions = A.get_count()
  local notes = A.take_notes() -- checks skipped for one backend while others ran
  if #notes > 0 then res.notes = notes end
  res.compares, res.compares_left_out = capture.take() -- --html only
  local records = track.finish()
  if exited and (ok or is_skip(err)) then ok, err = false, exited end
  if not ok and is_skip(err) then
    res.status, res.reason = "skip", err.reason
    return res
  end
  if not ok then
    if exited and not tostring(err):find(exited, 1, true) then err = tostring(err) .. "\n" .. exited end
    res.status, res.message = "fail", err
    return res
  end
  if res.assertions == 0 then
    res.status, res.message = "fail", "asserted nothing: an it must check something"
    return res
  end
  local failures, warnings = unasserted(records, options.strict_outputs)
  if #failures > 0 then
    res.status, res.message = "fail", table.concat(failures, "\n")
  else
    res.status = "pass"
  end
  if #warnings > 0 then res.warnings = warnings end
  return res
end

-- The environment specs and scripts see: the standard globals, gs, and the
-- assertion table (callable like Lua's own assert), with busted's spellings.
function R.spec_env()
  local gs = require("gradspec")
  require("gradspec.busted").install(gs.assert)
  local env = setmetatable({ gs = gs, assert = gs.assert }, { __index = _G })
  return env
end

local function load_failure(path, line, message)
  return { ev = "result", status = "fail", name = path .. " (loading the file)", file = path, line = line or 0,
    message = message, assertions = 0 }
end

-- Runs one file in this process; emit(record) gets every record, in order:
-- "plan" (every selected it: names and lines), then "start" and "result"
-- for each it (index = its place in the plan), then "done". A child process
-- writes them to its results file; a missing "done" tells the parent that
-- the file did not run to its end. --list emits "list" records instead.
function R.run_file_here(path, options, emit)
  guard(path .. " (loading the file)")
  phase, exit_note = "load", nil
  local root = spec.collect(path, R.spec_env())
  local exited = exit_note
  phase, exit_note = nil, nil
  if root.load_error or exited then
    local message = root.load_error and tostring(root.load_error) or (path .. ": " .. exited)
    if exited and root.load_error and not message:find(exited, 1, true) then message = message .. "\n" .. exited end
    emit(load_failure(path, root.load_line, message))
    emit({ ev = "done", file = path })
    return
  end
  local items = {}
  local permute = options.shuffle_seed and R.permuter(R.mix_seed(options.shuffle_seed, path)) or nil
  for _, item in ipairs(spec.flatten(root, permute)) do
    if R.selected(item, options) then items[#items + 1] = item end
  end
  if options.list then
    for _, item in ipairs(items) do
      local tags = {}
      for t in pairs(item.tags) do tags[#tags + 1] = "#" .. t end
      table.sort(tags)
      emit({ ev = "list", name = item.full_name, file = path, line = item.line, tags = table.concat(tags, " ") })
    end
    emit({ ev = "done", file = path })
    return
  end
  -- The runs: each selected it, --repeat times in a row with the seed
  -- advancing by one each time.
  local repeats = math.max(1, options["repeat"] or 1)
  local base_seed = options.seed or R.defaults.seed
  local runs = {}
  for _, item in ipairs(items) do
    local known_skip = item.node.kind == "pending" or item.skip_reason ~= nil or requirement_missing(item.tags) ~= nil
    for r = 1, repeats do
      runs[#runs + 1] = { item = item, rep = repeats > 1 and r or nil, seed = base_seed + (r - 1), skip = known_skip }
    end
  end
  local names, lines = {}, {}
  for k, run in ipairs(runs) do names[k], lines[k] = run.item.full_name, run.item.line end
  emit({ ev = "plan", file = path, names = names, lines = lines })

  -- setup/teardown of each block (the file's root included): strict hooks
  -- around the block's selected its, lazy ones around those that run (not
  -- skipped before they start). A setup error fails every it of its block.
  local spans = {}
  for k, run in ipairs(runs) do
    for _, b in ipairs(run.item.blocks or {}) do
      local sp = spans[b]
      if not sp then sp = {}; spans[b] = sp end
      sp.first_sel, sp.last_sel = sp.first_sel or k, k
      if not run.skip then sp.first_run, sp.last_run = sp.first_run or k, k end
    end
  end
  local setup_error, torn = {}, {}
  local function run_hooks(b, list, strict, seed)
    for _, h in ipairs(b[list]) do
      if h.strict == strict then
        T.set_seed(seed)
        local ok, err = xpcall(h.fn, handler)
        if not ok and not is_skip(err) then
          local label = h.what .. " (" .. spec.block_name(b) .. ")"
          if list == "setup" then
            setup_error[b] = setup_error[b] or (label .. ": " .. tostring(err))
          else
            emit({ ev = "result", status = "fail", name = spec.block_name(b) .. " (" .. h.what .. ")", file = path,
              line = b.line or 0, assertions = 0, message = label .. ": " .. tostring(err) })
          end
        end
      end
    end
  end
  local function before_run(k, run)
    for _, b in ipairs(run.item.blocks or {}) do
      local sp = spans[b]
      if sp.first_sel == k then run_hooks(b, "setup", true, run.seed) end
      if sp.first_run == k then run_hooks(b, "setup", false, run.seed) end
    end
  end
  local function after_run(k, run, stopping)
    local blocks = run.item.blocks or {}
    for i = #blocks, 1, -1 do
      local b = blocks[i]
      local sp = spans[b]
      torn[b] = torn[b] or {}
      if (sp.last_run == k or (stopping and sp.first_run and sp.first_run <= k)) and not torn[b].lazy then
        torn[b].lazy = true
        run_hooks(b, "teardown", false, run.seed)
      end
      if (sp.last_sel == k or stopping) and not torn[b].strict then
        torn[b].strict = true
        run_hooks(b, "teardown", true, run.seed)
      end
    end
  end
  local function blocked(run)
    for _, b in ipairs(run.item.blocks or {}) do
      if setup_error[b] then return setup_error[b] end
    end
    return nil
  end

  for k, run in ipairs(runs) do
    if C.gs_run_stopped() ~= 0 then
      if k > 1 then after_run(k - 1, runs[k - 1], true) end
      emit({ ev = "done", file = path, stopped = "interrupted" })
      return
    end
    emit({ ev = "start", name = run.item.full_name, file = path, line = run.item.line, index = k })
    before_run(k, run)
    local res
    local why = not run.skip and blocked(run)
    if why then
      res = { ev = "result", name = run.item.full_name, file = path, line = run.item.line, assertions = 0,
        seed = run.seed, status = "fail", message = why }
    else
      res = R.run_it(run.item, options, root, run.seed)
    end
    res.index, res["repeat"] = k, run.rep
    emit(res)
    local stop = options.fail_fast and res.status == "fail"
    after_run(k, run, stop)
    if stop then
      emit({ ev = "done", file = path, stopped = "fail-fast" })
      return
    end
  end
  emit({ ev = "done", file = path })
end

-- Files given to --load, as the child's command line repeats them.
local function load_args(argv, options)
  for _, f in ipairs(options.load or {}) do
    argv[#argv + 1] = "--load"
    argv[#argv + 1] = f
  end
end

-- The command line a child needs to repeat this run's selection on one file.
local function child_argv(path, results_path, options)
  local argv = { ffi.string(C.gs_self_exe()), "run", "--no-isolate", "--child-results", results_path,
    "--seed", string.format("%.17g", options.seed or R.defaults.seed) }
  if options.filter then argv[#argv + 1] = "--filter"; argv[#argv + 1] = options.filter end
  local function set_arg(flag, set)
    if set and next(set) then
      local list = {}
      for t in pairs(set) do list[#list + 1] = t end
      table.sort(list)
      argv[#argv + 1] = flag
      argv[#argv + 1] = table.concat(list, ",")
    end
  end
  set_arg("--tags", options.tags)
  set_arg("--exclude-tags", options.exclude_tags)
  if options.strict_outputs then argv[#argv + 1] = "--strict-outputs" end
  if (options["repeat"] or 1) > 1 then
    argv[#argv + 1] = "--repeat"
    argv[#argv + 1] = tostring(options["repeat"])
  end
  if options.shuffle_seed then
    argv[#argv + 1] = "--shuffle-seed"
    argv[#argv + 1] = string.format("%d", options.shuffle_seed)
  end
  if options.fail_fast then argv[#argv + 1] = "--fail-fast" end
  if options.list then argv[#argv + 1] = "--list" end
  if options.html_capture then
    argv[#argv + 1] = "--html-capture"
    argv[#argv + 1] = options.html_capture
  end
  load_args(argv, options)
  argv[#argv + 1] = "--"
  argv[#argv + 1] = path
  return argv
end

local function signal_name(sig) return "SIG" .. ffi.string(C.gs_signal_name(sig)) end

-- Replays the records a child wrote to results_path (then removes it) and
-- fails whatever the child did not report: the it that was running when the
-- process ended (exit with any status, a signal, a timeout) fails with the
-- reason, and every it after it is "not run: the file ended early".
-- code/sig/timed_out say how the child ended; stopped is the signal that
-- stopped the run (0 when none). Returns stopped.
function R.replay_child(path, results_path, options, emit, code, sig, timed_out, stopped)
  local plan, running, done, finished, failed_any, emitted = nil, nil, nil, {}, false, {}
  local f = io.open(results_path, "r")
  if f then
    for line in f:lines() do
      local rec = serial.decode(line)
      if rec then
        if rec.ev == "plan" then plan = rec
        elseif rec.ev == "start" then running = rec
        elseif rec.ev == "done" then done = rec
        else
          if rec.ev == "result" then
            if rec.index then finished[rec.index] = true end
            if running and rec.index == running.index then running = nil end
            if rec.status == "fail" then failed_any = true end
            emitted[rec.name] = true
          end
          emit(rec)
        end
      end
    end
    f:close()
  end
  os.remove(results_path)

  local function fail(name, line, message)
    emit({ ev = "result", status = "fail", file = path, line = line or 0, name = name, assertions = 0,
      message = path .. ": " .. message })
  end

  if stopped ~= 0 then
    if running then
      fail(running.name, running.line, "interrupted by " .. signal_name(stopped) .. " inside this it")
    end
    return stopped
  end

  -- How the process ended, when it did not end as a finished file does:
  -- status 1 when an it failed, 0 when none did.
  local how
  if timed_out ~= 0 then
    how = string.format("timed out after %g s (--timeout)", options.timeout or R.defaults.timeout)
  elseif sig ~= 0 then
    how = "crashed with " .. signal_name(sig)
  elseif code < 0 then
    how = "could not be started or waited for"
  elseif not done or code ~= (failed_any and 1 or 0) then
    how = "exited with status " .. code
  end

  if done and not how then
    -- A finished file reports every it of its plan, unless --fail-fast
    -- stopped it.
    if plan and not done.stopped then
      for k, name in ipairs(plan.names) do
        if not finished[k] then fail(name, plan.lines[k], "not run: the child process never reported this it") end
      end
    end
    return 0
  end
  if done then
    fail(path .. " (process)", 0, "the process " .. how .. " after the file finished")
    return 0
  end
  if not plan then
    local name = path .. " (loading the file)"
    if emitted[name] then name = path .. " (process)" end
    fail(name, 0, "the process " .. how .. " while loading the file")
    return 0
  end
  local cause, missing = nil, 0
  for k, name in ipairs(plan.names) do
    if not finished[k] then
      missing = missing + 1
      if running and running.index == k then
        fail(name, plan.lines[k], "the process " .. how .. " inside this it")
        cause = "the process " .. how .. " inside '" .. name .. "'"
      else
        fail(name, plan.lines[k], "not run: the file ended early (" .. (cause or ("the process " .. how .. " before this it")) .. ")")
      end
    end
  end
  if missing == 0 then
    fail(path .. " (after the last it)", 0, "the process " .. how .. " after its last it, before the file finished")
  end
  return 0
end

local function temp_file()
  local tmp = C.gs_run_temp_file()
  if tmp == nil then error("gradspec run: cannot create a results file under $TMPDIR or /tmp", 0) end
  return ffi.string(tmp)
end

local function c_argv(argv)
  local cargv = ffi.new("const char *[?]", #argv + 1)
  for i, a in ipairs(argv) do cargv[i - 1] = a end
  return cargv
end

-- Runs one file in a child process and replays its records (see
-- replay_child). Returns the signal that interrupted the run, or 0.
function R.run_file_isolated(path, options, emit)
  local results_path = temp_file()
  local cargv = c_argv(child_argv(path, results_path, options))
  local sig, timed_out = ffi.new("int[1]"), ffi.new("int[1]")
  io.stdout:flush()
  local code = C.gs_spawn_wait(cargv, options.timeout or R.defaults.timeout, sig, timed_out)
  return R.replay_child(path, results_path, options, emit, code, sig[0], timed_out[0], C.gs_run_stopped())
end

-- Copies a child's captured output to out, then removes the file.
local function replay_output(path, out)
  local f = io.open(path, "rb")
  if f then
    while true do
      local chunk = f:read(65536)
      if not chunk then break end
      out:write(chunk)
    end
    f:close()
    out:flush()
  end
  os.remove(path)
end

-- The order in which files start under -j: the slowest first by the
-- timings of an earlier run (--timings), so that a long file does not start
-- last and leave the other workers idle; file order otherwise. Output and
-- reports keep file order whatever the start order.
local function start_order(files, timings)
  local order = {}
  for i = 1, #files do order[i] = i end
  if timings and next(timings) then
    table.sort(order, function(a, b)
      local ta, tb = timings[files[a]] or math.huge, timings[files[b]] or math.huge
      if ta ~= tb then return ta > tb end
      return a < b
    end)
  end
  return order
end

-- Runs files in up to `jobs` child processes at once. Each child's stdout
-- and stderr go to files of their own; a file's output and records are
-- replayed once it and every file before it have finished, so that the
-- output, the results and the reports are in file order, as in a serial
-- run. emit_file(i, records) hands over file i's records; state gets what a
-- serial run's loop would set.
local function run_parallel(files, options, jobs, emit_file, state)
  local timeout = options.timeout or R.defaults.timeout
  local order = start_order(files, options.timings)
  local next_start = 1
  local running = {} -- index -> child
  local n_running = 0
  local finished = {} -- index -> child, records replayed, output still to show
  local next_emit = 1
  local stop_after = math.huge -- --fail-fast: the lowest index of a file that failed
  local code, sig, cpu = ffi.new("int[1]"), ffi.new("int[1]"), ffi.new("double[1]")
  -- where the children's stdout is shown (stderr when stdout is a report)
  local out_stream = options.child_stdout_to_stderr and io.stderr or io.stdout

  local function start(i)
    local path = files[i]
    local child = { index = i, path = path, results = temp_file(), out = temp_file(), err = temp_file() }
    local argv = child_argv(path, child.results, options)
    child.t0 = C.gs_now()
    child.pid = C.gs_child_start(c_argv(argv), child.out, child.err)
    running[i], n_running = child, n_running + 1
    return child
  end

  -- Reads what a child that ended reported; `stopped` as in replay_child.
  local function collect(child, stopped)
    running[child.index], n_running = nil, n_running - 1
    child.time = C.gs_now() - child.t0
    local records, failed = {}, false
    if child.pid < 0 then code[0], sig[0] = -1, 0 end
    R.replay_child(child.path, child.results, options, function(rec)
      if rec.status == "fail" then failed = true end
      records[#records + 1] = rec
    end, code[0], sig[0], child.timed_out and 1 or 0, stopped)
    child.records, child.failed = records, failed
    finished[child.index] = child
    if failed and options.fail_fast and child.index < stop_after then stop_after = child.index end
  end

  local function discard(child)
    for _, p in ipairs({ child.results, child.out, child.err }) do os.remove(p) end
  end

  local function kill_and_reap(child)
    C.gs_child_kill(child.pid)
    C.gs_child_poll(child.pid, 1, code, sig, cpu, nil)
  end

  local function emit_ready()
    while finished[next_emit] and next_emit <= stop_after do
      local child = finished[next_emit]
      finished[next_emit] = nil
      replay_output(child.out, out_stream)
      replay_output(child.err, io.stderr)
      state.file_times[child.path] = child.time
      emit_file(child.index, child.records)
      next_emit = next_emit + 1
    end
  end

  while true do
    local stopped = C.gs_run_stopped()
    if stopped ~= 0 then
      -- Ctrl-C: every child is killed; the files that ran are reported in
      -- order, each running it failing as interrupted.
      local was_running = {}
      for i, child in pairs(running) do
        kill_and_reap(child)
        was_running[#was_running + 1] = i
      end
      table.sort(was_running)
      for _, i in ipairs(was_running) do collect(running[i], stopped) end
      local names = {}
      for _, i in ipairs(was_running) do names[#names + 1] = files[i] end
      state.interrupted, state.file = stopped, #names > 0 and table.concat(names, ", ") or nil
      local never = 0
      for i = 1, #files do
        if not finished[i] and i >= next_emit then never = never + 1 end
      end
      state.not_run = never
      -- what finished is shown in file order; a gap (a file never started)
      -- is skipped
      for i = next_emit, #files do
        local child = finished[i]
        if child then
          finished[i] = nil
          replay_output(child.out, out_stream)
          replay_output(child.err, io.stderr)
          state.file_times[child.path] = child.time
          emit_file(i, child.records)
        end
      end
      return
    end

    while n_running < jobs and next_start <= #order do
      local i = order[next_start]
      next_start = next_start + 1
      if i < stop_after then start(i) end
    end

    local progressed = false
    for i, child in pairs(running) do
      local r = child.pid < 0 and 1 or C.gs_child_poll(child.pid, 0, code, sig, cpu, nil)
      if r == 0 and timeout > 0 and C.gs_now() - child.t0 > timeout then
        child.timed_out = true
        kill_and_reap(child)
        r = 1
      end
      if r ~= 0 then
        collect(child, 0)
        progressed = true
      end
    end
    -- --fail-fast: files after the first failing one are not part of the
    -- run, as in a serial run; those still running are stopped
    for i, child in pairs(running) do
      if i > stop_after then
        kill_and_reap(child)
        running[i], n_running = nil, n_running - 1
        discard(child)
      end
    end
    for i, child in pairs(finished) do
      if i > stop_after then
        finished[i] = nil
        discard(child)
      end
    end
    emit_ready()
    if n_running == 0 and (next_start > #order or next_emit > stop_after) then break end
    if not progressed then C.gs_sleep(0.001) end
  end
  emit_ready()
end

-- Runs every file; returns the list of results and what stopped the run
-- early ({interrupted = signal number or 0, file = the file(s) it stopped in,
-- not_run = files never started, file_times = seconds per file}). on_record
-- sees each record as it arrives (the text reporter prints progress from
-- it), and a {ev = "file_done", file, time} record after each file's.
-- options.jobs > 1 runs that many files at once (isolated runs only).
function R.run(files, options, on_record)
  local results = {}
  local function emit(rec)
    if rec.ev == "result" or rec.ev == "list" then results[#results + 1] = rec end
    if on_record then on_record(rec) end
  end
  local failed = false
  local function watch(rec)
    if rec.status == "fail" then failed = true end
    emit(rec)
  end
  local state = { interrupted = 0, not_run = 0, file_times = {} }
  local in_process, parent = not options.isolate, not options.child_results
  local real_exit = os.exit
  if in_process then os.exit = intercepted_exit end
  guard_on = in_process and parent
  -- SIGINT and SIGTERM stop the run; a child leaves them to its parent.
  if parent then C.gs_run_signals(in_process and 2 or 1) end
  local jobs = options.jobs or 1
  capture.set_mode(options.html_capture)
  local ok, err = xpcall(function()
    -- children side by side; also one at a time when their stdout must
    -- not reach ours (it is captured and shown on stderr)
    if options.isolate and parent and ((jobs > 1 and #files > 1) or options.child_stdout_to_stderr) then
      run_parallel(files, options, jobs, function(i, records)
        for _, rec in ipairs(records) do watch(rec) end
        emit({ ev = "file_done", file = files[i], time = state.file_times[files[i]] })
      end, state)
      return
    end
    for i, path in ipairs(files) do
      local stopped = C.gs_run_stopped()
      if stopped ~= 0 then
        state.interrupted, state.not_run = stopped, #files - i + 1
        break
      end
      local t0 = C.gs_now()
      if options.isolate then stopped = R.run_file_isolated(path, options, watch)
      else
        R.run_file_here(path, options, watch)
        stopped = C.gs_run_stopped()
      end
      state.file_times[path] = C.gs_now() - t0
      if parent then emit({ ev = "file_done", file = path, time = state.file_times[path] }) end
      if stopped ~= 0 then
        state.interrupted, state.file, state.not_run = stopped, path, #files - i
        break
      end
      if failed and options.fail_fast then break end
    end
  end, debug.traceback)
  guard(nil)
  guard_on = false
  capture.set_mode(nil)
  if in_process then os.exit = real_exit end
  if parent then C.gs_run_signals(0) end
  if not ok then error(err, 0) end
  if state.interrupted ~= 0 then state.signal = signal_name(state.interrupted) end
  return results, state
end

-- Timings files (--save-timings, read by --timings): one line per spec
-- file, "seconds<TAB>path", after a comment line. Files from several runs
-- (the shards of a CI matrix) concatenate into one; a path given twice keeps
-- its last time.
R.TIMINGS_HEADER = "# gradspec timings: seconds<TAB>spec file, one per line"

function R.read_timings(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local t, n = {}, 0
  for line in f:lines() do
    local secs, file = line:match("^%s*([%d%.eE%+%-]+)\t(.-)%s*$")
    if secs and tonumber(secs) and file ~= "" then
      t[file] = tonumber(secs)
      n = n + 1
    end
  end
  f:close()
  return t, n
end

-- Writes file_times ({path = seconds}), keeping the entries of an earlier
-- timings file at `path` for files this run did not time.
function R.write_timings(path, file_times)
  local merged = R.read_timings(path) or {}
  for file, secs in pairs(file_times) do merged[file] = secs end
  local files = {}
  for file in pairs(merged) do files[#files + 1] = file end
  table.sort(files)
  local f, err = io.open(path, "w")
  if not f then return nil, err end
  f:write(R.TIMINGS_HEADER, "\n")
  for _, file in ipairs(files) do f:write(string.format("%.3f\t%s\n", merged[file], file)) end
  f:close()
  return true
end

-- Shard k of n (1-based) of the spec files, in their order. Every file goes
-- to exactly one shard, the same one on every machine given the same files
-- and timings: files are taken slowest first (by the timings; a file they
-- do not list counts as their median; without timings every file weighs
-- the same) and each goes to the shard with the least time so far, the
-- lowest-numbered on a tie.
function R.shard(files, k, n, timings)
  timings = timings or {}
  local known = {}
  for _, f in ipairs(files) do
    if timings[f] then known[#known + 1] = timings[f] end
  end
  table.sort(known)
  local default = #known > 0 and known[math.floor((#known + 1) / 2)] or 1
  local order = {}
  for i, f in ipairs(files) do order[i] = { index = i, path = f, weight = timings[f] or default } end
  table.sort(order, function(a, b)
    if a.weight ~= b.weight then return a.weight > b.weight end
    if a.path ~= b.path then return a.path < b.path end
    return a.index < b.index
  end)
  local load, mine = {}, {}
  for s = 1, n do load[s] = 0 end
  for _, e in ipairs(order) do
    local best = 1
    for s = 2, n do
      if load[s] < load[best] then best = s end
    end
    load[best] = load[best] + e.weight
    if best == k then mine[e.index] = true end
  end
  local out = {}
  for i, f in ipairs(files) do
    if mine[i] then out[#out + 1] = f end
  end
  return out, load
end

function R.counts(results)
  local c = { pass = 0, fail = 0, skip = 0 }
  for _, r in ipairs(results) do
    if r.status then c[r.status] = c[r.status] + 1 end
  end
  return c
end

return R
