-- The gradspec command line.
local M = {}

-- The options of gradspec run, for its --help, gradspec --help and the
-- message an unknown option gets.
local RUN_OPTIONS = [[
  --filter PATTERN        only its whose full name contains PATTERN (plain text or Lua pattern)
  --tags a,b              only its tagged with one of these
  --exclude-tags a,b      leave out its tagged with one of these
                          (a tag that no selected spec file uses is a usage error)
  --seed N                seed of the random tensors (default 1234)
  --list                  list the selected its without running them
  --output text|tap|junit how to report (default text)
  --junit FILE            also write a JUnit XML report to FILE
  -v, --verbose           one line per it
  --no-isolate            run spec files in this process instead of one child process each
  --timeout SECONDS       per-file time limit when isolated (default 600)
  --strict-outputs        fail, not warn, on any op output that was never asserted
  --fail-fast             stop at the first failing it
  --fail-if-nothing-ran   exit 1 when no it ran (every one filtered out or skipped)
  --load FILE             run FILE (a Lua file that registers backends) first, here and in
                          every child process; repeatable; GRADSPEC_LOAD=a.lua:b.lua too
  -h, --help              this help
]]

local RUN_EXIT = [[
Exit status: 0 when nothing failed, 1 when something failed, 2 for a usage error,
130 when interrupted by Ctrl-C (143 by SIGTERM).
]]

local USAGE = [[
usage: gradspec [command] [options]

  gradspec                      interactive REPL on a terminal; reads stdin otherwise (a script, or lines like the REPL's)
  gradspec run [paths...]       run specs (directories are searched for *_spec.lua; default: specs)
  gradspec FILE.lua [args...]   run a script with the workbench loaded (global gs)
  gradspec -e 'code'            run a chunk of Lua with the workbench loaded
  gradspec conventions          check every backend of every op against its declared conventions
  gradspec mutate [paths...]    run the specs against deliberately broken kernels; list survivors
  gradspec --help | --version

run options:
]] .. RUN_OPTIONS .. "\n" .. RUN_EXIT

local RUN_USAGE = [[
usage: gradspec run [options] [paths...]

Runs spec files: the paths are files or directories (searched for *_spec.lua;
default: specs). Each file runs in its own child process. A file that does not
run to its end fails: the it that was running fails with the reason (an exit
with any status, a signal, a timeout) and every it after it fails as "not run".
Ctrl-C stops the children and the run.

options:
]] .. RUN_OPTIONS .. "\n" .. RUN_EXIT

local function usage_error(msg)
  io.stderr:write("gradspec: ", msg, "\n(gradspec --help lists the options)\n")
  return 2
end

local function run_usage_error(msg)
  io.stderr:write("gradspec run: ", msg, "\n(gradspec run --help describes the options)\n")
  return 2
end

local RUN_FLAGS = { "--filter", "--tags", "--exclude-tags", "--seed", "--list", "--output", "--junit", "-v",
  "--verbose", "--no-isolate", "--timeout", "--strict-outputs", "--fail-fast", "--fail-if-nothing-ran", "--load",
  "-h", "--help" }

local function split_set(s)
  local set = {}
  for x in s:gmatch("[^,%s]+") do set[x] = true end
  return set
end

local function parse_run(args)
  local o = { paths = {}, isolate = true, output = "text", seed = 1234, timeout = 600, load = {} }
  local i = 1
  local function value(flag)
    i = i + 1
    if args[i] == nil then error({ usage = flag .. " needs a value" }) end
    return args[i]
  end
  local only_paths = false
  while i <= #args do
    local a = args[i]
    if only_paths then o.paths[#o.paths + 1] = a
    elseif a == "--" then only_paths = true
    elseif a == "-h" or a == "--help" then o.help = true
    elseif a == "--filter" then o.filter = value(a)
    elseif a == "--tags" then o.tags = split_set(value(a))
    elseif a == "--exclude-tags" then o.exclude_tags = split_set(value(a))
    elseif a == "--seed" then
      o.seed = tonumber(value(a))
      if not o.seed then error({ usage = "--seed needs a number, got " .. args[i] }) end
    elseif a == "--list" then o.list = true
    elseif a == "--output" then
      o.output = value(a)
      if o.output ~= "text" and o.output ~= "tap" and o.output ~= "junit" then
        error({ usage = "--output must be text, tap or junit, got " .. o.output })
      end
    elseif a == "--junit" then o.junit = value(a)
    elseif a == "-v" or a == "--verbose" then o.verbose = true
    elseif a == "--no-isolate" then o.isolate = false
    elseif a == "--timeout" then
      o.timeout = tonumber(value(a))
      if not o.timeout or o.timeout <= 0 then error({ usage = "--timeout needs a positive number of seconds" }) end
    elseif a == "--strict-outputs" then o.strict_outputs = true
    elseif a == "--fail-fast" then o.fail_fast = true
    elseif a == "--fail-if-nothing-ran" then o.fail_if_nothing_ran = true
    elseif a == "--load" then o.load[#o.load + 1] = value(a)
    elseif a == "--child-results" then o.child_results = value(a)
    elseif a:sub(1, 1) == "-" then
      error({ usage = "unknown option " .. a .. "; the options are " .. table.concat(RUN_FLAGS, " ") })
    else o.paths[#o.paths + 1] = a end
    i = i + 1
  end
  if #o.paths == 0 then o.paths = { "specs" } end
  return o
end

-- Runs the files of GRADSPEC_LOAD and of --load, in that order. A child
-- inherits GRADSPEC_LOAD and gets --load on its command line, so it loads
-- the same files once each.
local function load_backends(o)
  local env_list = os.getenv("GRADSPEC_LOAD")
  local from_env = env_list ~= nil and env_list:find("[^:,]") ~= nil
  if not from_env and #o.load == 0 then return true end
  local backend = require("gradspec.backend")
  return pcall(function()
    if from_env then
      if backend.load_env then backend.load_env()
      else
        local list = {}
        for f in env_list:gmatch("[^:,]+") do list[#list + 1] = f end
        backend.load_files(list)
      end
    end
    if #o.load > 0 then backend.load_files(o.load) end
  end)
end

-- --tags and --exclude-tags must name tags some selected file uses: a typo
-- would otherwise select nothing, or exclude nothing, in silence.
local function check_tags(o, files, runner)
  if not (o.tags and next(o.tags)) and not (o.exclude_tags and next(o.exclude_tags)) then return nil end
  local known = runner.known_tags(files)
  local unknown = {}
  for _, set in ipairs({ o.tags or {}, o.exclude_tags or {} }) do
    for t in pairs(set) do
      if not known[t] then unknown[#unknown + 1] = t end
    end
  end
  if #unknown == 0 then return nil end
  table.sort(unknown)
  local list = {}
  for t in pairs(known) do list[#list + 1] = t end
  table.sort(list)
  return string.format("no selected spec file uses the tag%s %s (known tags: %s)", #unknown == 1 and "" or "s",
    table.concat(unknown, ", "), #list > 0 and table.concat(list, ", ") or "none")
end

-- gradspec run: returns the exit status.
function M.run(args)
  local ok, o = pcall(parse_run, args)
  if not ok then
    if type(o) == "table" and o.usage then return run_usage_error(o.usage) end
    error(o, 0)
  end
  if o.help then
    io.stdout:write(RUN_USAGE)
    return 0
  end
  local runner = require("gradspec.runner")
  local report = require("gradspec.report")
  local serial = require("gradspec.serial")
  local fok, files = pcall(runner.find_specs, o.paths)
  if not fok then return run_usage_error(tostring(files)) end
  if not o.child_results then
    local bad_tags = check_tags(o, files, runner)
    if bad_tags then return run_usage_error(bad_tags) end
  end
  local lok, lerr = load_backends(o)
  if not lok then
    io.stderr:write("gradspec run: ", tostring(lerr), "\n")
    return 2
  end
  -- Specs that run in this process print unbuffered: what a spec printed
  -- before a crash reaches the output.
  if not o.isolate then io.stdout:setvbuf("no") end

  -- A child writes its records to a file for the parent; its stdout is the
  -- spec's own output.
  if o.child_results then
    local f = assert(io.open(o.child_results, "w"))
    local failed = false
    runner.run(files, o, function(rec)
      if rec.status == "fail" then failed = true end
      f:write(serial.encode(rec), "\n")
      f:flush()
    end)
    f:close()
    return failed and 1 or 0
  end

  local on_record, flush_file
  if o.output == "text" then on_record, flush_file = report.text_progress(o.verbose, io.stdout) end
  local results, state = runner.run(files, o, on_record)
  if flush_file then flush_file() end
  local counts = runner.counts(results)
  local interrupted = state.interrupted ~= 0
  if o.list then
    if interrupted then
      io.stderr:write("gradspec run: ", report.notes(counts, state)[1].text, "\n")
      return 128 + state.interrupted
    end
    return counts.fail > 0 and 1 or 0
  end
  local notes = report.notes(counts, state)
  if o.output == "text" then report.text_summary(results, counts, io.stdout, notes)
  elseif o.output == "tap" then report.tap(results, counts, io.stdout, notes)
  else
    io.stdout:write(report.junit(results, counts))
    for _, n in ipairs(notes) do io.stdout:write(n.text, "\n") end
    io.stdout:write(report.summary_line(counts), "\n")
  end
  if o.junit then
    local f, err = io.open(o.junit, "w")
    if not f then return run_usage_error("--junit: cannot write " .. o.junit .. ": " .. tostring(err)) end
    f:write(report.junit(results, counts))
    f:close()
  end
  if #files == 0 then io.stderr:write("gradspec: no *_spec.lua files under ", table.concat(o.paths, " "), "\n") end
  if interrupted then return 128 + state.interrupted end
  if counts.fail > 0 then return 1 end
  if o.fail_if_nothing_ran and counts.pass + counts.fail == 0 then return 1 end
  return 0
end

-- Runs a chunk with the workbench loaded; returns the exit status.
local function run_chunk(chunk, name, script_args)
  local env = require("gradspec.runner").spec_env()
  env.arg = script_args
  setfenv(chunk, env)
  local ok, err = xpcall(function() return chunk(unpack(script_args or {})) end,
    function(e) return debug.traceback(tostring(e), 2) end)
  if not ok then
    io.stderr:write("gradspec: ", name, ": ", tostring(err), "\n")
    return 1
  end
  return 0
end

function M.main(argv)
  -- GRADSPEC_JIT=off runs the interpreter only: compute-sanitizer and
  -- LuaJIT's machine-code area do not get along (the process dies).
  if os.getenv("GRADSPEC_JIT") == "off" then jit.off() end
  local args = {}
  for i = 1, #argv do args[i] = argv[i] end
  local cmd = args[1]
  if cmd == "--help" or cmd == "-h" or cmd == "help" then
    io.stdout:write(USAGE)
    return 0
  elseif cmd == "--version" then
    io.stdout:write("gradspec ", require("gradspec").version, "\n")
    return 0
  elseif cmd == "run" then
    return M.run({ select(2, unpack(args)) })
  elseif cmd == "mutate" then
    return require("gradspec.mutate").main({ select(2, unpack(args)) })
  elseif cmd == "conventions" then
    return require("gradspec.conventions").main({ select(2, unpack(args)) })
  elseif cmd == "-e" then
    if not args[2] then return usage_error("-e needs a chunk of code") end
    local chunk, err = loadstring(args[2], "=(command line)")
    if not chunk then return usage_error(err) end
    return run_chunk(chunk, "-e", { [0] = "-e", select(3, unpack(args)) })
  elseif cmd == nil then
    return require("gradspec.repl").main()
  elseif cmd:sub(1, 1) == "-" then
    return usage_error("unknown option " .. cmd)
  elseif cmd:match("_spec%.lua$") then
    -- a spec file run as a script would only build its tree and run no it
    return usage_error(cmd .. " is a spec file: use gradspec run " .. cmd)
  else
    local chunk, err = loadfile(cmd)
    if not chunk then return usage_error(err) end
    local script_args = { [0] = cmd, select(2, unpack(args)) }
    return run_chunk(chunk, cmd, script_args)
  end
end

return M
