-- Runs spec files: finds them, filters its by name and tag, runs each it with
-- its hooks, and turns what happened into result records. By default each
-- file runs in a child process, so a crash or a hang fails that file alone.
local spec = require("gradspec.spec")
local T = require("gradspec.tensor")
local A = require("gradspec.assert")
local track = require("gradspec.track")
local serial = require("gradspec.serial")
local gffi = require("gradspec.ffi")
local ffi, C = gffi.ffi, gffi.C

local R = {}

R.defaults = { seed = 1234, timeout = 600, isolate = true, output = "text" }

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

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
  return nil
end

-- Keeps the traceback frames that help: the spec's own lines and the
-- workbench modules it called, without the runner's machinery.
local function filtered_traceback(msg)
  local tb = debug.traceback("", 3)
  local keep = {}
  for line in tb:gmatch("[^\n]+") do
    if not line:find("gradspec/runner%.lua") and not line:find("gradspec/cli%.lua")
      and not line:find("gradspec/assert%.lua") and not line:find("%[C%]: in function 'xpcall'")
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

-- Runs one it and returns its result record.
function R.run_it(item, options, set_running)
  local res = { ev = "result", name = item.full_name, file = item.file, line = item.line, assertions = 0 }
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
  T.set_seed(options.seed or R.defaults.seed)
  A.reset_count()
  track.begin()
  local t0 = C.gs_now()
  local before, after = spec.hooks(node)
  set_running(true)
  current_item = item
  local ok, err = true, nil
  for _, f in ipairs(before) do
    ok, err = xpcall(f, handler)
    if not ok then break end
  end
  if ok then ok, err = xpcall(node.fn, handler) end
  for _, f in ipairs(after) do
    local ok2, err2 = xpcall(f, handler)
    if ok and not ok2 then ok, err = ok2, err2 end
  end
  set_running(false)
  current_item = nil
  res.time = C.gs_now() - t0
  res.assertions = A.get_count()
  local records = track.finish()
  if not ok and type(err) == "table" and err[spec.SKIP] then
    res.status, res.reason = "skip", err.reason
    return res
  end
  if not ok then
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
-- assertion table (callable like Lua's own assert).
function R.spec_env()
  local gs = require("gradspec")
  local env = setmetatable({ gs = gs, assert = gs.assert }, { __index = _G })
  return env
end

-- Runs one file in this process; emit(record) gets every start and result.
function R.run_file_here(path, options, emit)
  local root = spec.collect(path, R.spec_env())
  if root.load_error then
    emit({ ev = "result", status = "fail", name = path .. " (loading the file)", file = path, line = 0,
      message = tostring(root.load_error), assertions = 0 })
    return
  end
  for _, item in ipairs(spec.flatten(root)) do
    if R.selected(item, options) then
      if options.list then
        local tags = {}
        for t in pairs(item.tags) do tags[#tags + 1] = "#" .. t end
        table.sort(tags)
        emit({ ev = "list", name = item.full_name, file = path, line = item.line, tags = table.concat(tags, " ") })
      else
        emit({ ev = "start", name = item.full_name, file = path, line = item.line })
        local res = R.run_it(item, options, root.set_running)
        emit(res)
        if options.fail_fast and res.status == "fail" then return end
      end
    end
  end
end

-- The command line a child needs to repeat this run's selection on one file.
local function child_argv(path, results_path, options)
  local argv = { ffi.string(C.gs_self_exe()), "run", "--no-isolate", "--child-results", results_path,
    "--seed", tostring(options.seed or R.defaults.seed) }
  if options.filter then argv[#argv + 1] = "--filter"; argv[#argv + 1] = options.filter end
  local function set_arg(flag, set)
    if set and next(set) then
      local list = {}
      for t in pairs(set) do list[#list + 1] = t end
      argv[#argv + 1] = flag
      argv[#argv + 1] = table.concat(list, ",")
    end
  end
  set_arg("--tags", options.tags)
  set_arg("--exclude-tags", options.exclude_tags)
  if options.strict_outputs then argv[#argv + 1] = "--strict-outputs" end
  if options.fail_fast then argv[#argv + 1] = "--fail-fast" end
  if options.list then argv[#argv + 1] = "--list" end
  argv[#argv + 1] = path
  return argv
end

-- Runs one file in a child process and replays its records; a crash or a
-- timeout becomes a failure naming the signal and the it that was running.
function R.run_file_isolated(path, options, emit)
  local results_path = os.tmpname()
  local argv = child_argv(path, results_path, options)
  local cargv = ffi.new("const char *[?]", #argv + 1)
  for i, a in ipairs(argv) do cargv[i - 1] = a end
  local sig, timed_out = ffi.new("int[1]"), ffi.new("int[1]")
  io.stdout:flush()
  local code = C.gs_spawn_wait(cargv, options.timeout or R.defaults.timeout, sig, timed_out)
  local last_start, finished = nil, {}
  local f = io.open(results_path, "r")
  if f then
    for line in f:lines() do
      local rec = serial.decode(line)
      if rec then
        if rec.ev == "start" then last_start = rec
        else
          if rec.ev == "result" then finished[rec.name] = true end
          emit(rec)
        end
      end
    end
    f:close()
  end
  os.remove(results_path)
  local crashed
  if timed_out[0] ~= 0 then
    crashed = string.format("timed out after %g s (--timeout)", options.timeout or R.defaults.timeout)
  elseif sig[0] ~= 0 then
    crashed = "crashed with SIG" .. ffi.string(C.gs_signal_name(sig[0]))
  elseif code ~= 0 and code ~= 1 then
    crashed = "exited with status " .. code
  end
  if crashed then
    local running = last_start and not finished[last_start.name] and last_start or nil
    emit({ ev = "result", status = "fail", file = path, line = running and running.line or 0,
      name = running and running.name or (path .. " (process)"), assertions = 0,
      message = string.format("%s: %s%s", path, crashed,
        running and (" while running '" .. running.name .. "'") or "") })
  end
end

-- Runs every file; returns the list of results. on_record sees each record
-- as it arrives (the text reporter prints progress from it).
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
  for _, path in ipairs(files) do
    if options.isolate then R.run_file_isolated(path, options, watch)
    else R.run_file_here(path, options, watch) end
    if failed and options.fail_fast then break end
  end
  return results
end

function R.counts(results)
  local c = { pass = 0, fail = 0, skip = 0 }
  for _, r in ipairs(results) do
    if r.status then c[r.status] = c[r.status] + 1 end
  end
  return c
end

return R
