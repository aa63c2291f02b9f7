-- Workbench overheads: start-up of `gradspec -e ''` and the runner's cost per
-- trivial `it`, each against a baseline measured in the same run.
-- Run: build/gradspec bench/workbench.lua [its=10000] [starts=50]
local ffi = require("ffi")
local C = require("gradspec.ffi").C
local process = require("gradspec.process")
local runner = require("gradspec.runner")

local n_its = tonumber(arg[1]) or 10000
local n_starts = tonumber(arg[2]) or 50

local function median(xs)
  table.sort(xs)
  return xs[math.floor((#xs + 1) / 2)]
end

-- Start-up: fork+exec of gradspec -e '' against fork+exec of /bin/true.
local function spawn_time(argv)
  local c = ffi.new("const char *[?]", #argv + 1)
  for i, a in ipairs(argv) do c[i - 1] = a end
  local sig, to = ffi.new("int[1]"), ffi.new("int[1]")
  local times = {}
  for _ = 1, n_starts do
    local t0 = C.gs_now()
    C.gs_spawn_wait(c, 10, sig, to)
    times[#times + 1] = C.gs_now() - t0
  end
  return median(times)
end

local exe = process.self_exe()
local t_true = spawn_time({ "/bin/true" })
local t_gs = spawn_time({ exe, "-e", "" })
print(string.format("start-up: gradspec -e '' %.2f ms (median of %d), /bin/true %.2f ms, difference %.2f ms (goal <= 20 ms)",
  t_gs * 1e3, n_starts, t_true * 1e3, (t_gs - t_true) * 1e3))

-- Per-it: a spec file of n trivial its against one with a single it, both
-- run in this process (no child process) so only the runner is measured.
local function write_spec(n)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write('describe("trivial", function()\n')
  for i = 1, n do f:write(string.format('  it("it %d", function() assert.is_true(true) end)\n', i)) end
  f:write("end)\n")
  f:close()
  return path
end

local function run_time(path)
  local t0 = C.gs_now()
  local results = runner.run({ path }, { isolate = false, seed = 1 })
  local dt = C.gs_now() - t0
  assert(#results > 0 and runner.counts(results).fail == 0, "the trivial specs must pass")
  return dt, #results
end

local big, one = write_spec(n_its), write_spec(1)
local t_one = run_time(one)
local t_big, count = run_time(big)
os.remove(big)
os.remove(one)
print(string.format("runner: %d trivial its in %.1f ms; one-it file %.2f ms; %.1f us per it (goal <= 50 us)",
  count, t_big * 1e3, t_one * 1e3, (t_big - t_one) / (count - 1) * 1e6))
