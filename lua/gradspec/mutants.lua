-- The deliberately broken variants `gradspec mutate` runs the suite against.
-- Kernel mutants live in the C kernels (kernels/mutants.h) and are switched
-- on per call, for one backend or all; "assert_nan" breaks assert.close.
-- GRADSPEC_MUTANT=name or name@backend selects one for a whole process.
local gffi = require("gradspec.ffi")
local ffi, C = gffi.ffi, gffi.C

local M = {}

M.kernel = {}   -- name -> {id, what}
M.names = {}    -- kernel mutant names in id order
for id = 1, 64 do
  local name = C.gs_mutant_name(id)
  if name == nil then break end
  name = ffi.string(name)
  local where = {}
  for b in ffi.string(C.gs_mutant_backends(id)):gmatch("[%w_]+") do where[b] = true end
  M.kernel[name] = { id = id, what = ffi.string(C.gs_mutant_describe(id)), backends = where }
  M.names[#M.names + 1] = name
end
M.lua = { assert_nan = "assert.close passes when both sides are NaN" }

-- The active selection: {name, id, backend} or nil.
local active = nil

function M.parse(spec)
  if spec == nil or spec == "" then return nil end
  local name, backend = spec:match("^([%w_]+)@?([%w_]*)$")
  if not name or (not M.kernel[name] and not M.lua[name]) then
    error("GRADSPEC_MUTANT: unknown mutant '" .. tostring(spec) .. "' (gradspec mutate --list shows them)", 0)
  end
  if backend ~= "" and backend ~= "ref" and backend ~= "cpu" and backend ~= "cuda" then
    error("GRADSPEC_MUTANT: unknown backend '" .. backend .. "' in '" .. spec .. "'", 0)
  end
  return { name = name, id = M.kernel[name] and M.kernel[name].id or 0, backend = backend ~= "" and backend or nil }
end

active = M.parse(os.getenv("GRADSPEC_MUTANT"))

function M.active() return active end

-- Whether kernel mutant name is compiled into backend's kernels ("all": any).
function M.lives_in(name, backend)
  return backend == "all" or (M.kernel[name] ~= nil and M.kernel[name].backends[backend] == true)
end

-- Called around every kernel call: the mutant is live only for its backend.
function M.enter(backend)
  if active and active.id > 0 and (active.backend == nil or active.backend == backend) then
    C.gs_mutant_set(active.id)
  end
end

function M.leave()
  if active then C.gs_mutant_set(0) end
end

return M
