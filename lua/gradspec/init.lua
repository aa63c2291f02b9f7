-- The workbench as one table, `gs`: tensors, the loss ops, assertions.
local T = require("gradspec.tensor_math")
local ops = require("gradspec.ops")
local gffi = require("gradspec.ffi")

local gs = {}

for _, name in ipairs({ "tensor", "empty", "zeros", "ones", "full", "arange", "randn", "rand",
  "randint", "one_hot", "is_tensor", "set_seed", "get_seed" }) do
  gs[name] = T[name]
end

for _, name in ipairs({ "cross_entropy", "cross_entropy_backward", "log_probs", "log_probs_backward",
  "entropy", "entropy_backward", "available_backends", "cuda_unavailable_reason" }) do
  gs[name] = ops[name]
end
gs.options = ops.options
local lce = require("gradspec.linear_ce")
gs.linear_cross_entropy, gs.linear_cross_entropy_backward = lce.linear_cross_entropy, lce.linear_cross_entropy_backward
gs.gradcheck = require("gradspec.gradcheck").gradcheck

local gio, prop = require("gradspec.io"), require("gradspec.property")
gs.load_npy, gs.save_npy = gio.load_npy, gio.save_npy
gs.load_safetensors, gs.save_safetensors = gio.load_safetensors, gio.save_safetensors
gs.property, gs.property_search = prop.property, prop.search

gs.assert = setmetatable(require("gradspec.assert"), {
  -- assert(cond, msg) still works as Lua's own, and counts as an assertion.
  __call = function(self, cond, msg, ...)
    self.is_true(not not cond, msg or "assertion failed!")
    return cond, msg, ...
  end,
})

gs.assert.backends_agree = require("gradspec.agree").backends_agree
gs.backend = require("gradspec.backend")
gs.dist = require("gradspec.dist") -- ranks in child processes and their collectives

gs.version = gffi.ffi.string(gffi.C.gs_version())
gs.now = function() return gffi.C.gs_now() end
gs.cpu_chunk = tonumber(gffi.C.gs_ce_cpu_chunk()) -- columns per chunk of the CPU kernel
-- {path = count}: how often each code path of the CPU kernel ran since
-- gs.cpu_paths_reset() (kernels/cpu/cross_entropy.c lists them)
gs.cpu_paths = function()
  local out = {}
  for k = 0, 63 do
    local name = gffi.C.gs_ce_cpu_path_name(k)
    if name == nil then break end
    out[gffi.ffi.string(name)] = tonumber(gffi.C.gs_ce_cpu_path_count(k))
  end
  return out
end
gs.cpu_paths_reset = function() gffi.C.gs_ce_cpu_paths_reset() end
gs.cuda_available = function() return ops.cuda_unavailable_reason() == nil end

-- gs.cuda (users' CUDA kernels compiled or loaded at run time) is loaded on
-- first use, so that start-up costs nothing for those who never touch it.
setmetatable(gs, { __index = function(t, k)
  if k ~= "cuda" then return nil end
  local m = require("gradspec.cuda")
  rawset(t, "cuda", m)
  return m
end })

return gs
