-- The communicator a rank's function receives from gs.dist.run: comm.rank,
-- comm.size, comm.backend and the collectives. Every collective first
-- publishes what it was called with (src/dist_shm.h: a descriptor per rank
-- in shared memory) and compares it with every other rank's, so that ranks
-- that disagree (another collective, dtype, shape, reduction or root) all
-- fail with the same message instead of hanging or mixing bytes. The data
-- then moves through shared memory (backend "cpu") or NCCL (backend "nccl",
-- one GPU per rank).
local T = require("gradspec.tensor")
local gffi = require("gradspec.ffi")
local dtypes = require("gradspec.dtype")
local ffi, C = gffi.ffi, gffi.C

local M = {}

local Comm = {}
Comm.__index = Comm

local OP = { all_reduce = 1, all_gather = 2, broadcast = 3, barrier = 4 }
local OP_NAME = { [0] = "its own code", "all_reduce", "all_gather", "broadcast", "barrier", "finished" }
M.OP_NAME = OP_NAME
local REDUCE = { sum = 0, max = 1 }
local REDUCE_NAME = { [0] = "sum", "max" }

local err = ffi.new("gs_error")

local function fail(level, fmt, ...) error(string.format(fmt, ...), level + 1) end

local function check(what, st, level)
  if st ~= 0 then fail(level + 1, "%s: %s", what, ffi.string(err.msg)) end
end

function M.new(shm, rank, size, backend, nccl)
  return setmetatable({ rank = rank, size = size, backend = backend, _shm = shm, _nccl = nccl }, Comm)
end

local function desc_text(d)
  local name = dtypes.by_code and dtypes.by_code[d.dtype] or nil
  local dname = name and name.name or ("dtype " .. d.dtype)
  local shape
  if d.dims == 0 then shape = "{}"
  elseif d.dims == 1 then shape = string.format("{%d}", tonumber(d.cols))
  else shape = string.format("{%d, %d}", tonumber(d.rows), tonumber(d.cols)) end
  return dname .. " " .. shape
end

-- Publishes this rank's call and checks that every rank made the same one.
function Comm:_agree(op, t, arg, level)
  level = level + 1
  local me = C.gs_shm_desc(self._shm, self.rank)
  me.op = OP[op]
  me.calls = me.calls + 1
  if t then
    me.dtype, me.rows, me.cols, me.dims = dtypes.by_name[t.dtype].code, t.rows, t.cols, t:dim()
  else
    me.dtype, me.rows, me.cols, me.dims = 0, 0, 0, 0
  end
  me.arg = arg or 0
  C.gs_shm_barrier(self._shm)
  local why
  local d0 = C.gs_shm_desc(self._shm, 0)
  for r = 1, self.size - 1 do
    local d = C.gs_shm_desc(self._shm, r)
    if d.op ~= d0.op then
      why = string.format("rank %d called %s while rank 0 called %s", r, OP_NAME[d.op] or "?", OP_NAME[d0.op] or "?")
    elseif d.dtype ~= d0.dtype or d.dims ~= d0.dims or d.rows ~= d0.rows or d.cols ~= d0.cols then
      why = string.format("rank %d passed %s, rank 0 passed %s", r, desc_text(d), desc_text(d0))
    elseif d.arg ~= d0.arg then
      if op == "all_reduce" then
        why = string.format("rank %d reduces with %s, rank 0 with %s", r, REDUCE_NAME[d.arg], REDUCE_NAME[d0.arg])
      else
        why = string.format("rank %d broadcasts from root %d, rank 0 from root %d", r, d.arg, d0.arg)
      end
    end
    if why then break end
  end
  -- nobody rewrites a descriptor before every rank has read them all
  C.gs_shm_barrier(self._shm)
  if why then
    me.op = 0
    fail(level, "%s: the ranks disagree: %s", op, why)
  end
end

local function done(self) C.gs_shm_desc(self._shm, self.rank).op = 0 end

local function need_tensor(op, t, level)
  if not T.is_tensor(t) then fail(level + 1, "%s: expected a tensor, got %s", op, type(t)) end
  if not t:is_contiguous() then
    fail(level + 1, "%s: the tensor of shape %s has a row stride of %d: collectives need contiguous rows (use :contiguous())",
      op, T.shape_string(t), t.stride)
  end
end

-- The tensor on the device the backend moves data on, and how to copy the
-- result back into t afterwards.
local function staged(self, t)
  local want = self.backend == "nccl" and "cuda" or "cpu"
  if t.device == want then return t, function() end end
  local s = t:to(want)
  return s, function(res) t:copy_(res or s) end
end

-- t (in place, also returned) = the elementwise sum or max over the ranks,
-- the same bits on every rank.
function Comm:all_reduce(t, op)
  need_tensor("all_reduce", t, 2)
  op = op or "sum"
  if REDUCE[op] == nil then
    fail(2, "all_reduce: op = %s is unknown (expected \"sum\" or \"max\")", op == nil and "nil" or string.format("%q", tostring(op)))
  end
  self:_agree("all_reduce", t, REDUCE[op], 2)
  local s, back = staged(self, t)
  local code = dtypes.by_name[t.dtype].code
  if t:numel() > 0 then
    if self.backend == "nccl" then
      check("all_reduce", C.gs_nccl_all_reduce(self._nccl, s:data(), s:numel(), code, REDUCE[op], err), 2)
    else
      check("all_reduce", C.gs_shm_all_reduce(self._shm, self.rank, s:data(), s:numel(), code, REDUCE[op], err), 2)
    end
  end
  back()
  done(self)
  return t
end

-- A new tensor holding every rank's t, in rank order: shape {size} for a
-- 0-D t, {size * n} for {n}, {size * r, c} for {r, c}.
function Comm:all_gather(t)
  need_tensor("all_gather", t, 2)
  self:_agree("all_gather", t, 0, 2)
  local s = staged(self, t)
  local shape
  if t:dim() == 0 then shape = { self.size }
  elseif t:dim() == 1 then shape = { self.size * t.cols }
  else shape = { self.size * t.rows, t.cols } end
  local out = T.empty(shape, { dtype = t.dtype, device = s.device })
  local n = t:numel()
  if n > 0 then
    if self.backend == "nccl" then
      check("all_gather", C.gs_nccl_all_gather(self._nccl, s:data(), out:data(), n, dtypes.by_name[t.dtype].code, err), 2)
    else
      C.gs_shm_all_gather(self._shm, self.rank, s:data(), out:data(), n * dtypes.by_name[t.dtype].size)
    end
  end
  done(self)
  if out.device ~= t.device then out = out:to(t.device) end
  return out
end

-- t (in place, also returned) = root's t on every rank.
function Comm:broadcast(t, root)
  need_tensor("broadcast", t, 2)
  if type(root) ~= "number" or root ~= math.floor(root) or root < 0 or root >= self.size then
    fail(2, "broadcast: root = %s is not a rank (0 to %d)", tostring(root), self.size - 1)
  end
  self:_agree("broadcast", t, root, 2)
  local s, back = staged(self, t)
  local n = t:numel()
  if n > 0 then
    if self.backend == "nccl" then
      check("broadcast", C.gs_nccl_broadcast(self._nccl, s:data(), n, dtypes.by_name[t.dtype].code, root, err), 2)
    else
      C.gs_shm_broadcast(self._shm, self.rank, s:data(), n * dtypes.by_name[t.dtype].size, root)
    end
  end
  back()
  done(self)
  return t
end

-- Returns once every rank has called it.
function Comm:barrier()
  self:_agree("barrier", nil, 0, 2)
  done(self)
end

return M
