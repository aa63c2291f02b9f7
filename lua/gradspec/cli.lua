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
  --list-files            list the spec files this run would run (after --shard) and exit
  --output FORMAT         how to report: text (default), tap, junit, or json (one document on
                          stdout; the specs' own output and the summary line go to stderr)
  --junit FILE            also write a JUnit XML report to FILE
  --json FILE             also write the JSON report to FILE
  --html FILE             also write an HTML report to FILE: histograms of each failed comparison's
                          error and a map of where its mismatches are (one self-contained page)
  --html-all              with --html: the histograms of passing comparisons too
  --repeat N              run each selected it N times in a row, the seed advancing by one each
                          time; its that pass in some runs and fail in others are listed as flaky
  --shuffle               run the files, and the its of each block, in a random order; the seed
                          is printed before the summary line
  --shuffle-seed S        shuffle with seed S (the same order as the run that printed it)
  --list-slowest K        list the K slowest its after the run
  -v, --verbose           one line per it
  --no-isolate            run spec files in this process instead of one child process each
  -j, --jobs N            run N spec files at once, each in its child process (default 1;
                          0: one per core); output, results and reports stay in file order
  --shard K/N             run shard K of N: a fixed share of the spec files, so that N machines
                          run the suite once between them (balanced by --timings when given)
  --timings FILE          times of an earlier run (--save-timings): balance --shard, and start
                          the slowest files first under -j
  --save-timings FILE     write each spec file's time to FILE (entries for other files are kept)
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

local RUN_FLAGS = { "--filter", "--tags", "--exclude-tags", "--seed", "--list", "--list-files", "--output", "--junit",
  "--json", "--html", "--html-all", "--repeat", "--shuffle", "--shuffle-seed", "--list-slowest", "-v", "--verbose",
  "--no-isolate", "-j", "--jobs", "--shard", "--timings", "--save-timings", "--timeout", "--strict-outputs",
  "--fail-fast", "--fail-if-nothing-ran", "--load", "-h", "--help" }

local function split_set(s)
  local set = {}
  for x in s:gmatch("[^,%s]+") do set[x] = true end
  return set
end

local function parse_run(args)
  local o = { paths = {}, isolate = true, output = "text", seed = 1234, timeout = 600, load = {}, jobs = 1 }
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
    elseif a == "--list-files" then o.list_files = true
    elseif a == "--output" then
      o.output = value(a)
      if o.output ~= "text" and o.output ~= "tap" and o.output ~= "junit" and o.output ~= "json" then
        error({ usage = "--output must be text, tap, junit or json, got " .. o.output })
      end
    elseif a == "--junit" then o.junit = value(a)
    elseif a == "--json" then o.json = value(a)
    elseif a == "--html" then o.html = value(a)
    elseif a == "--html-all" then o.html_all = true
    elseif a == "--html-capture" then
      -- a child of a run with --html: keep the comparisons for the parent's report
      o.html_capture = value(a)
      if o.html_capture ~= "failed" and o.html_capture ~= "all" then
        error({ usage = "--html-capture must be failed or all, got " .. o.html_capture })
      end
    elseif a == "--repeat" then
      local n = tonumber(value(a))
      if not n or n < 1 or n ~= math.floor(n) then
        error({ usage = "--repeat needs a whole number of runs >= 1, got " .. args[i] })
      end
      o["repeat"] = n
    elseif a == "--shuffle" then o.shuffle = true
    elseif a == "--shuffle-seed" then
      local n = tonumber(value(a))
      if not n or n < 0 or n ~= math.floor(n) or n >= 2 ^ 32 then
        error({ usage = "--shuffle-seed needs a whole number in [0, 2^32), got " .. args[i] })
      end
      o.shuffle, o.shuffle_seed = true, n
    elseif a == "--list-slowest" then
      local n = tonumber(value(a))
      if not n or n < 1 or n ~= math.floor(n) then
        error({ usage = "--list-slowest needs a whole number >= 1, got " .. args[i] })
      end
      o.slowest = n
    elseif a == "-v" or a == "--verbose" then o.verbose = true
    elseif a == "--no-isolate" then o.isolate = false
    elseif a == "-j" or a == "--jobs" or a:match("^%-j%d+$") then
      local v = a:match("^%-j(%d+)$") or value(a)
      local n = tonumber(v)
      if not n or n < 0 or n ~= math.floor(n) then
        error({ usage = "-j needs a whole number of jobs (0: one per core), got " .. tostring(v) })
      end
      o.jobs = n
    elseif a == "--shard" then
      local v = value(a)
      local k, n = v:match("^(%d+)/(%d+)$")
      k, n = tonumber(k), tonumber(n)
      if not k or n < 1 or k < 1 or k > n then
        error({ usage = "--shard needs K/N with 1 <= K <= N (shard K of N), got " .. v })
      end
      o.shard = { k = k, n = n }
    elseif a == "--timings" then o.timings_file = value(a)
    elseif a == "--save-timings" then o.save_timings = value(a)
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
  if o.html_all and not o.html then error({ usage = "--html-all needs --html FILE" }) end
  if o.html then o.html_capture = o.html_all and "all" or "failed" end
  if o.jobs == 0 then o.jobs = tonumber(require("gradspec.ffi").C.gs_cpu_count()) end
  if o.jobs > 1 and not o.isolate then
    error({ usage = "-j runs spec files in child processes: it cannot be used with --no-isolate" })
  end
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
  if o.timings_file then
    local t, n_or_err = runner.read_timings(o.timings_file)
    if t then o.timings = t
    else
      -- the first run of a CI matrix has no timings yet: every file weighs the same
      io.stderr:write("gradspec run: --timings: cannot read ", o.timings_file, " (", tostring(n_or_err),
        "); running without timings\n")
    end
  end
  if o.shard then files = runner.shard(files, o.shard.k, o.shard.n, o.timings) end
  if o.shuffle and not o.child_results then
    -- a fresh seed unless one was given; printed so that the order can be replayed
    if not o.shuffle_seed then
      local C = require("gradspec.ffi").C
      o.shuffle_seed = math.floor((C.gs_now() * 1e6 + os.time() * 7919) % 4294967296)
    end
    files = runner.permuter(runner.mix_seed(o.shuffle_seed, "files"))(files)
  end
  if o.list_files then
    for _, f in ipairs(files) do io.stdout:write(f, "\n") end
    if o.shuffle then io.stderr:write("gradspec run: shuffled with --shuffle-seed ", string.format("%d", o.shuffle_seed), "\n") end
    return 0
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
  -- JSON: stdout holds the document alone; what the specs print goes to stderr
  local C = require("gradspec.ffi").C
  local saved_stdout = nil
  if o.output == "json" then
    o.child_stdout_to_stderr = true
    if not o.isolate then
      io.stdout:flush()
      saved_stdout = C.gs_stdout_to_stderr()
    end
  end
  local started, t0 = os.time(), C.gs_now()
  local results, state = runner.run(files, o, on_record)
  local wall = C.gs_now() - t0
  if saved_stdout then
    io.stdout:flush()
    C.gs_stdout_restore(saved_stdout)
  end
  if flush_file then flush_file() end
  state.shuffle_seed = o.shuffle_seed
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
  local extras = { slowest = o.slowest }
  local function json_doc()
    return report.json(results, counts, state, notes, {
      version = require("gradspec").version, seed = o.seed, shuffle_seed = o.shuffle_seed, ["repeat"] = o["repeat"],
      jobs = o.jobs, shard = o.shard and (o.shard.k .. "/" .. o.shard.n) or nil, slowest = o.slowest })
  end
  if o.output == "text" then report.text_summary(results, counts, io.stdout, notes, extras)
  elseif o.output == "tap" then report.tap(results, counts, io.stdout, notes, extras)
  elseif o.output == "json" then
    io.stdout:write(json_doc())
    io.stdout:flush()
    io.stderr:write(report.extras_text(results, extras))
    for _, n in ipairs(notes) do io.stderr:write(n.text, "\n") end
    io.stderr:write(report.summary_line(counts), "\n")
  else
    io.stdout:write(report.junit(results, counts))
    io.stderr:write(report.extras_text(results, extras))
    for _, n in ipairs(notes) do io.stdout:write(n.text, "\n") end
    io.stdout:write(report.summary_line(counts), "\n")
  end
  if o.json then
    local f, err = io.open(o.json, "w")
    if not f then return run_usage_error("--json: cannot write " .. o.json .. ": " .. tostring(err)) end
    f:write(json_doc())
    f:close()
  end
  if o.save_timings and not o.list then
    local wok, werr = runner.write_timings(o.save_timings, state.file_times)
    if not wok then io.stderr:write("gradspec run: --save-timings: cannot write ", o.save_timings, ": ", tostring(werr), "\n") end
  end
  if o.junit then
    local f, err = io.open(o.junit, "w")
    if not f then return run_usage_error("--junit: cannot write " .. o.junit .. ": " .. tostring(err)) end
    f:write(report.junit(results, counts))
    f:close()
  end
  if o.html then
    local hok, herr = pcall(require("gradspec.html.run_report").write, o.html, results, counts, state, notes, {
      args = args, seed = o.seed, load = o.load, started = started, wall = wall, jobs = o.jobs,
      shuffle_seed = o.shuffle_seed, all = o.html_all })
    if not hok then return run_usage_error("--html: " .. tostring(herr)) end
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
