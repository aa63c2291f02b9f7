-- Workbench overheads, each against a baseline measured in the same run:
--   start-up of `gradspec -e ''` (median time and peak memory) against
--   /bin/true and, with --against, another gradspec binary (a CPU-only
--   build, say), and which CUDA libraries a start maps (none should be);
--   the first CUDA call's cost where a GPU is present;
--   the runner's cost per trivial `it`.
-- Run: build/gradspec bench/workbench.lua [--against OTHER_GRADSPEC] [--starts N] [--its N]
--      (the older positional form [its] [starts] still works)
local ffi = require("ffi")
local C = require("gradspec.ffi").C
local process = require("gradspec.process")
local runner = require("gradspec.runner")

local GOAL_MS, GOAL_MIB = 15, 40

local opts = { its = 10000, starts = 50 }
do
  local positional, i = {}, 1
  while i <= #arg do
    local a = arg[i]
    if a == "--against" or a == "--starts" or a == "--its" then
      local v = arg[i + 1]
      if v == nil then error(a .. " needs a value", 0) end
      if a == "--against" then opts.against = v
      else opts[a:sub(3)] = assert(tonumber(v), a .. " needs a number") end
      i = i + 2
    elseif a == "-h" or a == "--help" then
      print("usage: gradspec bench/workbench.lua [--against OTHER_GRADSPEC] [--starts N] [--its N]")
      return
    else
      positional[#positional + 1] = a
      i = i + 1
    end
  end
  opts.its = tonumber(positional[1]) or opts.its
  opts.starts = tonumber(positional[2]) or opts.starts
end

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  return s[math.floor((#s + 1) / 2)]
end

local function cargv(argv)
  local c = ffi.new("const char *[?]", #argv + 1)
  for i, a in ipairs(argv) do c[i - 1] = a end
  return c
end

-- One run of argv: wall seconds (fork to reaped) and peak RSS in KiB.
local code, sig, cpu, rss = ffi.new("int[1]"), ffi.new("int[1]"), ffi.new("double[1]"), ffi.new("long[1]")
local function spawn_once(argv, out_path)
  local c = cargv(argv)
  local t0 = C.gs_now()
  local pid = C.gs_child_start(c, out_path or "/dev/null", nil)
  if pid < 0 then error("cannot start " .. argv[1], 0) end
  local r = C.gs_child_poll(pid, 1, code, sig, cpu, rss)
  local dt = C.gs_now() - t0
  if r ~= 1 or code[0] ~= 0 then
    error(string.format("%s exited with status %d (signal %d)", table.concat(argv, " "), code[0], sig[0]), 0)
  end
  return dt, tonumber(rss[0])
end

-- Median time and median peak RSS of n runs; the runs of the binaries being
-- compared alternate, so that a slow moment of the machine hits them alike.
local function measure(cases, n)
  for _, case in ipairs(cases) do case.times, case.rss = {}, {} end
  for _ = 1, n do
    for _, case in ipairs(cases) do
      local t, r = spawn_once(case.argv)
      case.times[#case.times + 1], case.rss[#case.rss + 1] = t, r
    end
  end
  for _, case in ipairs(cases) do case.time, case.peak = median(case.times), median(case.rss) end
end

local exe = process.self_exe()
local cases = {
  { label = "gradspec -e ''", argv = { exe, "-e", "" } },
  { label = "/bin/true", argv = { "/bin/true" } },
}
if opts.against then
  local f = io.open(opts.against, "r")
  if not f then error("--against: no such file: " .. opts.against, 0) end
  f:close()
  table.insert(cases, 2, { label = opts.against .. " -e ''", argv = { opts.against, "-e", "" } })
end
for _, case in ipairs(cases) do spawn_once(case.argv) end -- warm the page cache
measure(cases, opts.starts)

print(string.format("start-up, median of %d runs each (alternating):", opts.starts))
print(string.format("  %-40s %8s %10s", "", "time", "peak RSS"))
for _, case in ipairs(cases) do
  print(string.format("  %-40s %6.2f ms %6.1f MiB", case.label, case.time * 1e3, case.peak / 1024))
end
local self = cases[1]
local met = self.time * 1e3 <= GOAL_MS and self.peak / 1024 <= GOAL_MIB
print(string.format("  this gradspec (%s, CUDA %s): %.2f ms and %.1f MiB; goal <= %d ms and <= %d MiB: %s",
  exe, C.gs_cuda_built() ~= 0 and "built in" or "not built", self.time * 1e3, self.peak / 1024, GOAL_MS, GOAL_MIB,
  met and "met" or "NOT MET"))
if opts.against then
  local other = cases[2]
  print(string.format("  against %s: %+.2f ms, %+.1f MiB", opts.against, (self.time - other.time) * 1e3,
    (self.peak - other.peak) / 1024))
end

-- What a start maps: no CUDA library may be loaded before it is used.
local function mapped_cuda_libraries(argv_prefix, code_text)
  local out = os.tmpname()
  local argv = {}
  for i, a in ipairs(argv_prefix) do argv[i] = a end
  argv[#argv + 1] = "-e"
  argv[#argv + 1] = code_text
  local ok, err = pcall(spawn_once, argv, out)
  local f = io.open(out, "r")
  local text = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(out)
  if not ok then return "(failed: " .. tostring(err) .. ")" end
  return text ~= "" and (text:gsub("\n$", ""):gsub("\n", ", ")) or "none"
end
local LIST_MAPS = [[
local seen = {}
for l in io.lines("/proc/self/maps") do
  local lib = l:match("(lib[%w_]*cu[%w_]*%.so[%.%d]*)")
  if lib and not seen[lib] then seen[lib] = true; print(lib) end
end]]
print("CUDA libraries mapped by `gradspec -e ''`: " .. mapped_cuda_libraries({ exe }, LIST_MAPS))
print("CUDA libraries mapped after a CPU cross entropy: " .. mapped_cuda_libraries({ exe },
  "local x = gs.randn({4, 100}); gs.cross_entropy(x, gs.randint(0, 100, {4}))\n" .. LIST_MAPS))

-- The first CUDA call's cost, in a fresh process: the runtime opening the
-- driver and creating the context, then cuBLAS's first load and handle.
local reason = gs.cuda_unavailable_reason()
if reason then
  print("first CUDA use: not measured here (" .. reason .. ")")
else
  local out = os.tmpname()
  local ok, err = pcall(spawn_once, { exe, "-e", [[
local t0 = gs.now()
local x = gs.zeros({ 1 }, { device = "cuda" })
local t1 = gs.now()
local h, W = gs.randn({ 64, 128 }):to("cuda"), gs.randn({ 256, 128 }):to("cuda")
local t = gs.randint(0, 256, { 64 }):to("cuda")
local t2 = gs.now()
local loss = gs.linear_cross_entropy(h, W, t)
local t3 = gs.now()
gs.linear_cross_entropy(h, W, t)
local t4 = gs.now()
print(string.format("%.6f %.6f %.6f", t1 - t0, t3 - t2, t4 - t3))
]] }, out)
  local f = io.open(out, "r")
  local text = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(out)
  local a, b, c = text:match("([%d.]+) ([%d.]+) ([%d.]+)")
  if ok and a then
    print(string.format("first CUDA use: first allocation %.1f ms (runtime + context); first linear cross entropy %.1f ms (cuBLAS loaded, handle, workspace); the second %.2f ms",
      tonumber(a) * 1e3, tonumber(b) * 1e3, tonumber(c) * 1e3))
  else
    print("first CUDA use: the measuring process failed: " .. tostring(err) .. " " .. text)
  end
end

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

local big, one = write_spec(opts.its), write_spec(1)
local t_one = run_time(one)
local t_big, count = run_time(big)
os.remove(big)
os.remove(one)
print(string.format("runner: %d trivial its in %.1f ms; one-it file %.2f ms; %.1f us per it (goal <= 50 us)",
  count, t_big * 1e3, t_one * 1e3, (t_big - t_one) / (count - 1) * 1e6))
