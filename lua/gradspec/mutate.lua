-- gradspec mutate: runs the suite once per deliberately broken kernel variant
-- and reports which spec killed it. A mutant that survives is a bug class the
-- suite would let through.
local mutants = require("gradspec.mutants")
local process = require("gradspec.process")

local M = {}

local USAGE = [[
usage: gradspec mutate [--list] [--backends ref,cpu,all] [spec paths...]   (default path: specs)
Runs the specs against every mutant (each kernel mutant in the reference
alone, the fast CPU kernel alone, and all backends at once) and prints which
it killed it. Exit status 1 when any mutant survives.
]]

-- Runs the suite under one mutant; returns the name of the first failing it
-- (nil when everything passed) and the exit status.
local function run_suite(paths, mutant)
  local parts = {}
  if mutant then parts[#parts + 1] = "GRADSPEC_MUTANT=" .. process.quote(mutant) end
  parts[#parts + 1] = process.quote(process.self_exe())
  parts[#parts + 1] = "run --fail-fast --output tap"
  for _, p in ipairs(paths) do parts[#parts + 1] = process.quote(p) end
  local out, code = process.run(table.concat(parts, " "))
  local killer = out:match("\nnot ok %d+ %- ([^\n]*)") or out:match("^not ok %d+ %- ([^\n]*)")
  return killer, code, out
end

function M.main(args)
  -- "all": the mutant in every backend at once, so that agreement between
  -- backends cannot catch it and an independent check must.
  local paths, backends, list = {}, { "ref", "cpu", "all" }, false
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--list" then list = true
    elseif a == "--backends" then
      i = i + 1
      backends = {}
      for b in (args[i] or ""):gmatch("[^,]+") do backends[#backends + 1] = b end
    elseif a == "--help" or a == "-h" then io.stdout:write(USAGE) return 0
    elseif a:sub(1, 1) == "-" then
      io.stderr:write("gradspec mutate: unknown option ", a, "\n")
      return 2
    else paths[#paths + 1] = a end
    i = i + 1
  end
  if #paths == 0 then paths = { "specs" } end

  local jobs = {}
  for _, name in ipairs(mutants.names) do
    for _, b in ipairs(backends) do
      jobs[#jobs + 1] = { name = name, backend = b, what = mutants.kernel[name].what }
    end
  end
  for name, what in pairs(mutants.lua) do jobs[#jobs + 1] = { name = name, what = what } end
  if list then
    for _, j in ipairs(jobs) do
      io.stdout:write(string.format("%-20s %-5s %s\n", j.name, j.backend or "", j.what))
    end
    return 0
  end

  io.stdout:write("baseline: running the specs with no mutant... ")
  io.stdout:flush()
  local killer, code, out = run_suite(paths, nil)
  if code ~= 0 then
    io.stdout:write("FAILED\n\n")
    io.stderr:write("gradspec mutate: the specs fail without any mutant (first failure: ",
      tostring(killer), "); fix them first\n", out:sub(-2000), "\n")
    return 2
  end
  io.stdout:write("ok\n\n")
  io.stdout:write(string.format("%-20s %-8s %-9s %s\n", "mutant", "backend", "result", "killed by"))
  local killed, t0 = 0, os.time()
  for _, j in ipairs(jobs) do
    local sel = (j.backend and j.backend ~= "all") and (j.name .. "@" .. j.backend) or j.name
    local who, c = run_suite(paths, sel)
    local dead = c ~= 0
    if dead then killed = killed + 1 end
    io.stdout:write(string.format("%-20s %-8s %-9s %s\n", j.name, j.backend or "-", dead and "killed" or "SURVIVED",
      dead and (who or ("exit status " .. c)) or ("nothing noticed: " .. j.what)))
    io.stdout:flush()
  end
  io.stdout:write(string.format("\nkill rate: %d of %d mutants killed (%.0f%%) in %d s\n", killed, #jobs,
    100 * killed / #jobs, os.time() - t0))
  return killed == #jobs and 0 or 1
end

return M
