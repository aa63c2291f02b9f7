-- Which plan the built-in CUDA cross-entropy kernels took, and forcing one,
-- for specs that must reach every plan on small inputs. Exposed as gs.cuda.*:
--
--   gs.cuda.plan_names()        {"resident", ..., "rows_loop"}: plans, then paths
--   gs.cuda.plan_counts()       { resident = 3, streaming = 0, ... } since the last reset
--   gs.cuda.reset_plan_counts()
--   gs.cuda.force_plan("streaming_cluster")   every later call takes it ("auto" or nil: the choice is free again)
--   gs.cuda.forced_plan()       the plan in force, "auto" when none
--   gs.cuda.clusters()          true where cluster plans can run (sm_90+, GRADSPEC_CUDA_PORTABLE unset)
--
-- The plans (one counts each call): resident (one CTA per row, the row in
-- shared memory), resident_cluster (a cluster of CTAs per row, partials through
-- distributed shared memory), resident_prefetch (persistent CTAs prefetching
-- their next row), streaming (one CTA per row, each pass reading global
-- memory), streaming_cluster, register (the hot kernel only: CTAs holding
-- each logit's exp value in registers and shared memory, a cluster of them
-- per row on sm_90+). The paths counted beside them: general (the
-- kernel with softcap, entropy or class weights), scan_multiblock (the target
-- scan in more than one block: over 256 rows), grad_output_rows (a fused
-- forward+backward with one grad_output per row), rows_loop (fewer CTAs than
-- rows, each looping), one_pass (the resident and streaming kernels without
-- softcap, entropy or weights find each chunk's max and sums in one pass:
-- V and the row stride whole 16-byte vectors, rows 16-byte aligned),
-- two_pass (the same kernels otherwise: a pass for the max, one for the sums).
local gffi = require("gradspec.ffi")
local ffi, C = gffi.ffi, gffi.C

local M = {}
local err = ffi.new("gs_error")

function M.plan_names()
  local out, i = {}, 0
  while true do
    local p = C.gs_ce_cuda_plan_name(i)
    if p == nil then return out end
    out[#out + 1] = ffi.string(p)
    i = i + 1
  end
end

function M.plan_counts()
  local out = {}
  for i, name in ipairs(M.plan_names()) do out[name] = tonumber(C.gs_ce_cuda_plan_count(i - 1)) end
  return out
end

function M.reset_plan_counts() C.gs_ce_cuda_reset_plan_counts() end

function M.force_plan(name)
  if name ~= nil and type(name) ~= "string" then
    error(string.format("gs.cuda.force_plan: name is a %s, expected a plan's name or nil", type(name)), 2)
  end
  if C.gs_ce_cuda_force_plan(name, err) ~= 0 then error(ffi.string(err.msg), 2) end
end

function M.forced_plan() return ffi.string(C.gs_ce_cuda_forced_plan()) end

function M.clusters()
  local r = C.gs_ce_cuda_clusters(err)
  if r < 0 then error("gs.cuda.clusters: " .. ffi.string(err.msg), 2) end
  return r == 1
end

return M
