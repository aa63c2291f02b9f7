-- gs.dist.run(R, fn, opts): runs fn(comm) on R ranks, one child process
-- each, forked from this process (so fn keeps its upvalues), and returns
-- what each rank returned: results[r + 1] for rank r.
--
-- The ranks share memory mapped before the fork (src/dist_shm.h) and talk
-- through comm (dist/comm.lua). A rank that raises an error, crashes or
-- exits fails the call, naming the rank and its message; the other ranks
-- are killed at once (they may be waiting for it in a collective). A rank
-- still running after opts.timeout seconds is killed and the call fails,
-- saying where every unfinished rank was. Inside a rank, assertions count
-- for the `it` that called gs.dist.run, and every gradient a rank computed
-- must be asserted by that rank (or returned, and then asserted here).
local gffi = require("gradspec.ffi")
local T = require("gradspec.tensor")
local A = require("gradspec.assert")
local track = require("gradspec.track")
local wire = require("gradspec.dist.wire")
local comm_mod = require("gradspec.dist.comm")
local ffi, C = gffi.ffi, gffi.C

local M = {}

M.MAX_RANKS = 64
M.DEFAULT_TIMEOUT = 120
local SLOT_BYTES = 1024 * 1024 -- per rank; larger tensors move in chunks

local err = ffi.new("gs_error")

local function fail(level, fmt, ...) error(string.format(fmt, ...), level + 1) end

local function shell_lines(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  if not p then return {} end
  local lines = {}
  for line in p:lines() do lines[#lines + 1] = line end
  p:close()
  return lines
end

-- GPUs this process may use, counted without initialising CUDA (a process
-- that has initialised CUDA cannot hand a GPU to a forked child):
-- CUDA_VISIBLE_DEVICES when set, else the driver's /proc entries, else
-- nvidia-smi.
function M.visible_gpus()
  local vis = os.getenv("CUDA_VISIBLE_DEVICES")
  if vis then
    local list = {}
    for d in vis:gmatch("[^,%s]+") do list[#list + 1] = d end
    return list
  end
  local n = #shell_lines("ls /proc/driver/nvidia/gpus")
  if n == 0 then
    for _, line in ipairs(shell_lines("nvidia-smi -L")) do
      if line:match("^GPU %d") then n = n + 1 end
    end
  end
  local list = {}
  for i = 1, n do list[i] = tostring(i - 1) end
  return list
end

function M.gpu_count() return #M.visible_gpus() end

-- Why `ranks` GPU ranks cannot run here (CUDA build, visible GPUs), or nil.
function M.gpu_unavailable_reason(ranks)
  if C.gs_cuda_built() == 0 then return "gradspec was built without CUDA" end
  local n = M.gpu_count()
  if n < ranks then return string.format("needs %d GPU%s, %d visible", ranks, ranks > 1 and "s" or "", n) end
  return nil
end

-- Why the nccl backend cannot run `ranks` ranks here, or nil.
function M.nccl_unavailable_reason(ranks)
  ranks = ranks or 2
  if C.gs_cuda_built() == 0 then return "gradspec was built without CUDA" end
  if C.gs_nccl_load(nil, 0, nil, err) == 0 then return ffi.string(err.msg) end
  return M.gpu_unavailable_reason(ranks)
end

-- The NCCL library in use and its version, or nil and why not.
function M.nccl_info()
  local path, version = ffi.new("char[512]"), ffi.new("int[1]")
  if C.gs_nccl_load(path, 512, version, err) == 0 then return nil, ffi.string(err.msg) end
  return { path = ffi.string(path), version = version[0] }
end

local function check_args(R, fn, opts, level)
  level = level + 1
  if type(R) ~= "number" or R ~= math.floor(R) or R < 1 or R > M.MAX_RANKS then
    fail(level, "gs.dist.run: ranks = %s is not an integer in [1, %d]", tostring(R), M.MAX_RANKS)
  end
  if type(fn) ~= "function" then fail(level, "gs.dist.run: fn must be a function, got %s", type(fn)) end
  if opts == nil then opts = {} end
  if type(opts) ~= "table" or T.is_tensor(opts) then fail(level, "gs.dist.run: opts must be a table, got %s", type(opts)) end
  for k in pairs(opts) do
    if k ~= "backend" and k ~= "timeout" then
      fail(level, "gs.dist.run: unknown option '%s' (known: backend, timeout)", tostring(k))
    end
  end
  local backend = opts.backend or "cpu"
  if backend ~= "cpu" and backend ~= "nccl" then
    fail(level, "gs.dist.run: backend = %s is unknown (expected \"cpu\" or \"nccl\")",
      type(backend) == "string" and string.format("%q", backend) or tostring(backend))
  end
  local timeout = opts.timeout or M.DEFAULT_TIMEOUT
  if type(timeout) ~= "number" or not (timeout > 0) or timeout == math.huge then
    fail(level, "gs.dist.run: timeout = %s is not a positive number of seconds", tostring(opts.timeout))
  end
  if backend == "nccl" then
    local why = M.nccl_unavailable_reason(R)
    if why then fail(level, "gs.dist.run: backend nccl with %d ranks: %s", R, why) end
  end
  return backend, timeout
end

-- The gradient records of what tensor t was computed from that no
-- assertion has read yet: t goes to the parent, which must assert them.
local function unasserted_sources(t, handed)
  local list, seen = {}, {}
  local function walk(x)
    if type(x) ~= "table" or seen[x] then return end
    seen[x] = true
    local r = x._track
    if r and r.kind == "gradient" and not r.asserted then
      if not handed[r] then list[#list + 1] = { op = r.op, what = r.what, where = r.where } end
      handed[r] = true
    end
    for _, s in pairs(x._sources or {}) do walk(s) end
  end
  walk(t)
  if #list == 0 then return nil end
  return list
end

-- The body of a rank's process; never returns.
local function rank_main(rank, R, backend, fn, shm, path, tracking)
  local res = { rank = rank }
  local ok, e = xpcall(function()
    local nccl = nil
    if backend == "nccl" then
      -- rank r works on device r (of those CUDA_VISIBLE_DEVICES leaves); the
      -- others stay visible, so that NCCL can copy between GPUs directly
      if C.gs_nccl_use_device(rank, err) ~= 0 then error(ffi.string(err.msg), 0) end
      local id = C.gs_shm_scratch(shm)
      if rank == 0 and C.gs_nccl_unique_id(id, err) ~= 0 then error("NCCL: " .. ffi.string(err.msg), 0) end
      C.gs_shm_barrier(shm)
      local box = ffi.new("void *[1]")
      if C.gs_nccl_init(box, R, id, rank, err) ~= 0 then error("NCCL: " .. ffi.string(err.msg), 0) end
      nccl = box[0]
    end
    local comm = comm_mod.new(shm, rank, R, backend, nccl)
    A.reset_count()
    -- outside an `it` (a script, the REPL) nothing is tracked
    if tracking then track.begin() end
    local value = fn(comm)
    C.gs_shm_desc(shm, rank).op = 5
    res.assertions = A.get_count()
    local handed = {}
    res.value = wire.encode(value, { tensor_out = function(t) return unasserted_sources(t, handed) end })
    local unasserted = {}
    for _, r in ipairs(tracking and track.finish() or {}) do
      if r.kind == "gradient" and not r.asserted and not handed[r] then
        unasserted[#unasserted + 1] = string.format("the %s returned by %s at %s was never asserted", r.what, r.op, r.where)
      end
    end
    if #unasserted > 0 then error(table.concat(unasserted, "\n"), 0) end
    if nccl then C.gs_nccl_destroy(nccl) end
  end, function(x) return debug.traceback(tostring(x), 2) end)
  if not ok then res = { rank = rank, error = tostring(e), assertions = A.get_count() } end
  local okw, data = pcall(wire.encode, res)
  if not okw then data = wire.encode({ rank = rank, error = "its result cannot be sent back: " .. tostring(data) }) end
  local f = io.open(path, "wb")
  if f then
    f:write(data)
    f:close()
  end
  C.gs_dist_exit(res.error and 1 or 0)
end

local function read_result(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  if data == "" then return nil end
  local ok, v = pcall(wire.decode, data)
  return ok and v or nil
end

local function where_text(shm, rank)
  local d = C.gs_shm_desc(shm, rank)
  local op = tonumber(d.op)
  if op == 0 then return string.format("running its own code after %d collectives", tonumber(d.calls)) end
  if op == 5 then return "finished" end
  return string.format("waiting in %s (its collective call %d)", comm_mod.OP_NAME[op], tonumber(d.calls))
end

local function short(msg)
  -- the first line carries the message; a rank's traceback follows it
  return (tostring(msg):gsub("\nstack traceback:.*$", ""))
end

function M.run(R, fn, opts)
  local backend, timeout = check_args(R, fn, opts, 2)
  local info = debug.getinfo(2, "Sl")
  local call_site = info and string.format("%s:%d", info.short_src, info.currentline or 0) or "?"
  local shm = C.gs_shm_create(R, SLOT_BYTES, err)
  if shm == nil then fail(2, "gs.dist.run: %s", ffi.string(err.msg)) end
  local paths, pids = {}, {}
  for r = 0, R - 1 do paths[r] = os.tmpname() end
  local function cleanup()
    for r = 0, R - 1 do
      if pids[r] then C.gs_dist_kill(pids[r]) end
    end
    for r = 0, R - 1 do
      if pids[r] then
        local code, sig = ffi.new("int[1]"), ffi.new("int[1]")
        while C.gs_dist_poll(pids[r], code, sig) == 0 do C.gs_sleep(0.001) end
        pids[r] = nil
      end
      os.remove(paths[r])
    end
    C.gs_shm_destroy(shm)
  end
  io.stdout:flush()
  io.stderr:flush()
  for r = 0, R - 1 do
    local pid = C.gs_dist_fork()
    if pid == 0 then rank_main(r, R, backend, fn, shm, paths[r], track.active()) end
    if pid < 0 then
      cleanup()
      fail(2, "gs.dist.run: fork for rank %d failed", r)
    end
    pids[r] = pid
  end

  -- Ranks often fail together (a bad argument every rank sees): after the
  -- first failure the others get GRACE seconds to end, and the lowest rank
  -- that failed is the one reported, so that the message does not depend
  -- on which process the scheduler ran first.
  local GRACE = 0.1
  local t0, failed, failure, deadline = C.gs_now(), {}, nil, nil
  local code, sig = ffi.new("int[1]"), ffi.new("int[1]")
  local left, nap = R, 0.0002
  while left > 0 and not (deadline and C.gs_now() > deadline) do
    for r = 0, R - 1 do
      if pids[r] and C.gs_dist_poll(pids[r], code, sig) == 1 then
        pids[r], left = nil, left - 1
        if code[0] ~= 0 then
          local res = read_result(paths[r])
          if res and res.error then
            failed[r] = string.format("rank %d failed: %s", r, short(res.error))
          elseif code[0] < 0 then
            failed[r] = string.format("rank %d crashed with SIG%s", r, ffi.string(C.gs_signal_name(sig[0])))
          else
            failed[r] = string.format("rank %d exited with status %d", r, code[0])
          end
          deadline = deadline or C.gs_now() + GRACE
        end
      end
    end
    if not deadline and left > 0 and C.gs_now() - t0 > timeout then
      local parts = {}
      for r = 0, R - 1 do
        parts[#parts + 1] = string.format("rank %d %s", r, pids[r] and where_text(shm, r) or "finished")
      end
      failure = string.format("timed out after %g s; killed the ranks still running (%s)", timeout,
        table.concat(parts, "; "))
      break
    end
    if left > 0 then
      C.gs_sleep(nap)
      nap = math.min(nap * 2, 0.005)
    end
  end
  for r = R - 1, 0, -1 do failure = failed[r] or failure end
  if failure then
    cleanup()
    fail(2, "gs.dist.run (%d ranks, backend %s): %s", R, backend, failure)
  end

  local results, assertions = {}, 0
  for r = 0, R - 1 do
    local res = read_result(paths[r])
    if not res then
      cleanup()
      fail(2, "gs.dist.run: rank %d finished but its result could not be read", r)
    end
    assertions = assertions + (res.assertions or 0)
    -- a gradient the rank returned without asserting it is asserted here
    results[r + 1] = wire.decode(res.value, { tensor_in = function(t, list)
      t._sources = t._sources or {}
      for _, h in ipairs(list) do
        local holder = track.record({}, h.op, string.format("%s of rank %d (from %s)", h.what, r, h.where), "gradient")
        if holder._track then holder._track.where = call_site end
        t._sources[#t._sources + 1] = holder
      end
    end })
  end
  cleanup()
  for _ = 1, assertions do A.count_one() end
  return results
end

return M
