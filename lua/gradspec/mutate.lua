-- gradspec mutate: runs the suite once per deliberately broken variant and
-- reports which spec killed it. A mutant that survives is a bug class the
-- suite would let through. Two families: kernel mutants compiled into the
-- built-in kernels (kernels/mutants.h), and black-box perturbations of any
-- registered backend's outputs (perturb.lua, with --backend).
local mutants = require("gradspec.mutants")
local process = require("gradspec.process")

local M = {}

local USAGE = [[
usage: gradspec mutate [--list] [--backends ref,cpu,all] [--html FILE] [spec paths...]   (default path: specs)
       gradspec mutate --backend NAME [--load FILE]... [--list] [--html FILE] [spec paths...]

Without --backend: runs the specs against every mutant compiled into the
kernels (each in the reference alone, the fast CPU kernel alone, and all
backends at once; --backends picks among ref, cpu, cuda and all) and prints
which it killed each.

With --backend NAME: measures the suite on any registered backend, a user's
included, without touching its code: each black-box perturbation of NAME's
outputs (gradient sign, a row zeroed or scaled, per-row grad_output ignored,
target column not subtracted, mean over N, loss or lse shifted, a NaN, a
gradient for ignored rows, log_probs returning +CE, a write past a row's end)
is switched on in turn and the suite is run once per perturbation. --load
FILE (repeatable; GRADSPEC_LOAD too) registers the backend, in this process
and in every run of the suite.

--html FILE also writes the kill matrix, mutants x spec files, as one
self-contained HTML page. For the matrix each run of the suite goes to its
end instead of stopping at the first failure, which takes longer.

Exit status: 0 when every mutant is killed, 1 when any survives (or is never
reached by the suite), 2 for a usage error or a suite that fails unmutated.
]]

-- Runs the suite with env (name -> value) set; returns the name of the first
-- failing it (nil when everything passed), the exit status and the output.
-- With matrix (--html), the whole suite runs and the results of every it
-- come back too (mutate_report.read_junit).
local function run_suite(paths, env, loads, matrix)
  local parts = {}
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. process.quote(v) end
  parts[#parts + 1] = process.quote(process.self_exe())
  local junit = matrix and os.tmpname() or nil
  parts[#parts + 1] = junit and ("run --output tap --junit " .. process.quote(junit)) or "run --fail-fast --output tap"
  for _, f in ipairs(loads or {}) do parts[#parts + 1] = "--load " .. process.quote(f) end
  for _, p in ipairs(paths) do parts[#parts + 1] = process.quote(p) end
  local out, code = process.run(table.concat(parts, " "))
  local killer = out:match("\nnot ok %d+ %- ([^\n]*)") or out:match("^not ok %d+ %- ([^\n]*)")
  local results = nil
  if junit then
    results = require("gradspec.html.mutate_report").read_junit(junit)
    os.remove(junit)
  end
  return killer, code, out, results
end

local function usage_error(msg)
  io.stderr:write("gradspec mutate: ", msg, "\n(gradspec mutate --help shows the usage)\n")
  return 2
end

-- The suite must pass unmutated, or no kill means anything. Returns false
-- when it fails, else true and (with matrix) its results.
local function baseline(paths, loads, matrix)
  io.stdout:write("baseline: running the specs with no mutant... ")
  io.stdout:flush()
  local killer, code, out, results = run_suite(paths, nil, loads, matrix)
  if code ~= 0 then
    io.stdout:write("FAILED\n\n")
    io.stderr:write("gradspec mutate: the specs fail without any mutant (first failure: ",
      tostring(killer), "); fix them first\n", out:sub(-2000), "\n")
    return false
  end
  io.stdout:write("ok\n\n")
  return true, results
end

-- Writes the kill matrix of --html; returns nil, or a usage error's status.
local function write_matrix(html, title, args, base, rows, t0)
  if not html then return nil end
  local command = { "gradspec", "mutate" }
  for _, a in ipairs(args) do command[#command + 1] = require("gradspec.html.page").shell_quote(a) end
  local ok, err = pcall(require("gradspec.html.mutate_report").write, html, { title = title,
    command = table.concat(command, " "), files = base and base.files or {}, rows = rows, seconds = os.time() - t0 })
  if not ok then return usage_error("--html: " .. tostring(err)) end
  return nil
end

local function kill_rate(killed, total, what, t0)
  io.stdout:write(string.format("\nkill rate: %d of %d %s killed (%.0f%%) in %d s\n", killed, total, what,
    total > 0 and 100 * killed / total or 0, os.time() - t0))
  return killed == total and 0 or 1
end

-- gradspec mutate --backend NAME: the black-box perturbations of perturb.lua.
local function mutate_backend(name, paths, loads, list, html, args)
  local registry = require("gradspec.backend")
  local ok, err = pcall(function()
    registry.load_env()
    registry.load_files(loads)
  end)
  if not ok then return usage_error(tostring(err)) end
  if not registry.get(name) then
    return usage_error(string.format("--backend: %s is not a registered backend (registered: %s)", name,
      table.concat(registry.names(), ", ")))
  end
  local perturb = require("gradspec.perturb")
  if list then
    for _, p in ipairs(perturb.list) do io.stdout:write(string.format("%-24s %s\n", p.name, p.what)) end
    return 0
  end
  local base_ok, base = baseline(paths, loads, html ~= nil)
  if not base_ok then return 2 end
  io.stdout:write(string.format("%-24s %-9s %s\n", "perturbation of " .. name, "result", "killed by"))
  local killed, t0, rows = 0, os.time(), {}
  for _, p in ipairs(perturb.list) do
    local log = os.tmpname()
    local who, c, _, results = run_suite(paths, { GRADSPEC_PERTURB = p.name .. "@" .. name, GRADSPEC_PERTURB_LOG = log },
      loads, html ~= nil)
    local f = io.open(log, "r")
    local reached = f ~= nil and f:read("*a") ~= ""
    if f then f:close() end
    os.remove(log)
    local dead = c ~= 0
    if dead then killed = killed + 1 end
    local note
    if dead then note = who or ("exit status " .. c)
    elseif not reached then note = "not reached: no spec ran " .. name .. " where this applies (" .. p.what .. ")"
    else note = "nothing noticed: " .. p.what end
    io.stdout:write(string.format("%-24s %-9s %s\n", p.name, dead and "killed" or "SURVIVED", note))
    io.stdout:flush()
    rows[#rows + 1] = { label = p.name, what = p.what, dead = dead, killer = who or ("exit status " .. c),
      note = not dead and note or nil, junit = results }
  end
  local werr = write_matrix(html, "gradspec mutate --backend " .. name, args, base, rows, t0)
  if werr then return werr end
  return kill_rate(killed, #perturb.list, "perturbations of " .. name, t0)
end

-- Parses the command line: {paths, backends, list, target, loads} or
-- raises {usage = message}.
local function parse(args)
  -- "all": the mutant in every backend at once, so that agreement between
  -- backends cannot catch it and an independent check must.
  local o = { paths = {}, backends = { "ref", "cpu", "all" }, list = false, loads = {} }
  local known_backends = { ref = true, cpu = true, cuda = true, all = true }
  local i = 1
  local function value(flag)
    i = i + 1
    if args[i] == nil then error({ usage = flag .. " needs a value" }) end
    return args[i]
  end
  while i <= #args do
    local a = args[i]
    if a == "--list" then o.list = true
    elseif a == "--help" or a == "-h" then o.help = true
    elseif a == "--backends" then
      o.backends = {}
      for b in value(a):gmatch("[^,]+") do
        if not known_backends[b] then
          error({ usage = "--backends: " .. b .. " is unknown (compiled-in mutants live in ref, cpu and cuda; all = every one at once)" })
        end
        o.backends[#o.backends + 1] = b
      end
    elseif a == "--backend" then o.target = value(a)
    elseif a == "--load" then o.loads[#o.loads + 1] = value(a)
    elseif a == "--html" then o.html = value(a)
    elseif a:sub(1, 1) == "-" then error({ usage = "unknown option " .. a })
    else o.paths[#o.paths + 1] = a end
    i = i + 1
  end
  if #o.paths == 0 then o.paths = { "specs" } end
  return o
end

function M.main(args)
  local ok, o = pcall(parse, args)
  if not ok then
    if type(o) == "table" and o.usage then return usage_error(o.usage) end
    error(o, 0)
  end
  if o.help then io.stdout:write(USAGE) return 0 end
  if o.target then return mutate_backend(o.target, o.paths, o.loads, o.list, o.html, args) end

  local jobs = {}
  for _, name in ipairs(mutants.names) do
    for _, b in ipairs(o.backends) do
      if mutants.lives_in(name, b) then -- a mutant in cpu alone has nothing to break in ref
        jobs[#jobs + 1] = { name = name, backend = b, what = mutants.kernel[name].what }
      end
    end
  end
  for name, what in pairs(mutants.lua) do jobs[#jobs + 1] = { name = name, what = what } end
  if o.list then
    for _, j in ipairs(jobs) do
      io.stdout:write(string.format("%-20s %-5s %s\n", j.name, j.backend or "", j.what))
    end
    return 0
  end

  local base_ok, base = baseline(o.paths, o.loads, o.html ~= nil)
  if not base_ok then return 2 end
  io.stdout:write(string.format("%-20s %-8s %-9s %s\n", "mutant", "backend", "result", "killed by"))
  local killed, t0, rows = 0, os.time(), {}
  for _, j in ipairs(jobs) do
    local sel = (j.backend and j.backend ~= "all") and (j.name .. "@" .. j.backend) or j.name
    local who, c, _, results = run_suite(o.paths, { GRADSPEC_MUTANT = sel }, o.loads, o.html ~= nil)
    local dead = c ~= 0
    if dead then killed = killed + 1 end
    io.stdout:write(string.format("%-20s %-8s %-9s %s\n", j.name, j.backend or "-", dead and "killed" or "SURVIVED",
      dead and (who or ("exit status " .. c)) or ("nothing noticed: " .. j.what)))
    io.stdout:flush()
    rows[#rows + 1] = { label = sel, what = j.what, dead = dead, killer = who or ("exit status " .. c),
      note = not dead and "nothing noticed" or nil, junit = results }
  end
  local werr = write_matrix(o.html, "gradspec mutate", args, base, rows, t0)
  if werr then return werr end
  return kill_rate(killed, #jobs, "mutants", t0)
end

return M
