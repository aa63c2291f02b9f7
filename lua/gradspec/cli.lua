-- The gradspec command line.
local M = {}

local USAGE = [[
usage: gradspec [command] [options]

  gradspec                      interactive REPL on a terminal; reads stdin as a script otherwise
  gradspec run [paths...]       run specs (directories are searched for *_spec.lua; default: specs)
  gradspec FILE.lua [args...]   run a script with the workbench loaded (global gs)
  gradspec -e 'code'            run a chunk of Lua with the workbench loaded
  gradspec conventions          check every backend of every op against its declared conventions
  gradspec mutate [paths...]    run the specs against deliberately broken kernels; list survivors
  gradspec --help | --version

run options:
  --filter PATTERN        only its whose full name contains PATTERN (plain text or Lua pattern)
  --tags a,b              only its tagged with one of these
  --exclude-tags a,b      leave out its tagged with one of these
  --seed N                seed of the random tensors (default 1234)
  --list                  list the selected its without running them
  --output text|tap|junit how to report (default text)
  --junit FILE            also write a JUnit XML report to FILE
  -v, --verbose           one line per it
  --no-isolate            run spec files in this process instead of one child process each
  --timeout SECONDS       per-file time limit when isolated (default 600)
  --strict-outputs        fail, not warn, on any op output that was never asserted
  --fail-fast             stop at the first failing it

Exit status: 0 when nothing failed, 1 when something failed, 2 for a usage error.
]]

local function usage_error(msg)
  io.stderr:write("gradspec: ", msg, "\n(gradspec --help lists the options)\n")
  return 2
end

local function split_set(s)
  local set = {}
  for x in s:gmatch("[^,%s]+") do set[x] = true end
  return set
end

local function parse_run(args)
  local o = { paths = {}, isolate = true, output = "text", seed = 1234, timeout = 600 }
  local i = 1
  local function value(flag)
    i = i + 1
    if args[i] == nil then error({ usage = flag .. " needs a value" }) end
    return args[i]
  end
  while i <= #args do
    local a = args[i]
    if a == "--filter" then o.filter = value(a)
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
    elseif a == "--child-results" then o.child_results = value(a)
    elseif a:sub(1, 1) == "-" then error({ usage = "unknown option " .. a })
    else o.paths[#o.paths + 1] = a end
    i = i + 1
  end
  if #o.paths == 0 then o.paths = { "specs" } end
  return o
end

-- gradspec run: returns the exit status.
function M.run(args)
  local ok, o = pcall(parse_run, args)
  if not ok then
    if type(o) == "table" and o.usage then return usage_error(o.usage) end
    error(o, 0)
  end
  local runner = require("gradspec.runner")
  local report = require("gradspec.report")
  local serial = require("gradspec.serial")
  local fok, files = pcall(runner.find_specs, o.paths)
  if not fok then return usage_error(tostring(files)) end

  -- A child writes its records to a file for the parent and prints nothing.
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
  local results = runner.run(files, o, on_record)
  if flush_file then flush_file() end
  if o.list then return 0 end
  local counts = runner.counts(results)
  if o.output == "text" then report.text_summary(results, counts, io.stdout)
  elseif o.output == "tap" then report.tap(results, counts, io.stdout)
  else io.stdout:write(report.junit(results, counts)); io.stdout:write(report.summary_line(counts), "\n") end
  if o.junit then
    local f, err = io.open(o.junit, "w")
    if not f then return usage_error("--junit: cannot write " .. o.junit .. ": " .. tostring(err)) end
    f:write(report.junit(results, counts))
    f:close()
  end
  if #files == 0 then io.stderr:write("gradspec: no *_spec.lua files under ", table.concat(o.paths, " "), "\n") end
  return counts.fail > 0 and 1 or 0
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
  else
    local chunk, err = loadfile(cmd)
    if not chunk then return usage_error(err) end
    local script_args = { [0] = cmd, select(2, unpack(args)) }
    return run_chunk(chunk, cmd, script_args)
  end
end

return M
