-- The backend registry. Every backend, the built-in ref, cpu and cuda and a
-- user's own, is one entry here, and the ops dispatch through it alone:
--
--   gs.backend.register(name, {device =, dtypes =, options =, ops = {op = lua_function}})
--   gs.backend.load{name =, library =, device =, dtypes =, options =, ops = {op = "symbol"}}
--
-- An entry declares what it supports: its device, the logits dtypes it
-- takes, the contract options it implements (any other option must stay at
-- its default) and its ops. A call that needs more is "unsupported": inside
-- an `it` that is a skip with the reason ("mine: no label_smoothing"),
-- never a failure and never a silent pass.
local gffi = require("gradspec.ffi")
local ffi, C = gffi.ffi, gffi.C

local M = {}

local registry, order = {}, {}
local builtin_entry

-- The ops a backend can provide, each with the C function type of its
-- entry point, and the built-in entry points (NAME_BACKEND in kernels/*.h).
M.op_ctype, builtin_entry = {}, {
  linear_cross_entropy = "gs_lce_forward", linear_cross_entropy_backward = "gs_lce_backward",
}
for op, d in pairs(require("gradspec.ce_family").ops) do
  M.op_ctype[op], builtin_entry[op] = "gs_ce_fn", d.entry
end

local float_dtypes = { f64 = true, f32 = true, bf16 = true, f16 = true }

local function fail(level, fmt, ...) error(string.format(fmt, ...), level + 1) end

-- The error an unsupported call raises: the runner reports it as a skip of
-- the running `it`; anywhere else it reads as a plain message.
local Unsupported = { __tostring = function(e) return e.reason end }
function M.unsupported(reason, level)
  local skip = require("gradspec.spec").SKIP
  error(setmetatable({ [skip] = true, reason = reason, unsupported = true }, Unsupported), level and level + 1 or 2)
end

function M.is_unsupported(e) return type(e) == "table" and getmetatable(e) == Unsupported end

local function as_set(list, what, name, allowed)
  if list == nil then return nil end
  if type(list) ~= "table" then fail(4, "gs.backend: %s: %s must be a list of names, got %s", name, what, type(list)) end
  local set = {}
  for k, v in pairs(list) do
    local item = type(k) == "number" and v or k
    if type(item) ~= "string" then fail(4, "gs.backend: %s: %s holds %s, not a name", name, what, tostring(item)) end
    if allowed and not allowed[item] then
      local known = {}
      for a in pairs(allowed) do known[#known + 1] = a end
      table.sort(known)
      fail(4, "gs.backend: %s: %s names '%s', which is unknown (known: %s)", name, what, item, table.concat(known, ", "))
    end
    set[item] = true
  end
  return set
end

local function option_names()
  local names = {}
  for _, opts in pairs(require("gradspec.ops").options) do
    for k in pairs(opts) do names[k] = true end
  end
  return names
end

local entry_keys = { device = true, dtypes = true, options = true, ops = true, guard = true, real = true,
  available = true, describe = true }

-- Checks a descriptor and stores it. kind "lua": ops are Lua functions; "c":
-- ops are C entry points of the contract (cdata function pointers).
local function add(name, d, kind)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    fail(3, "gs.backend: the name must be a word of letters, digits and _, got %s", tostring(name))
  end
  if registry[name] and registry[name].builtin then
    fail(3, "gs.backend: %s is a built-in backend and cannot be replaced", name)
  end
  if type(d) ~= "table" then fail(3, "gs.backend: %s: the descriptor must be a table, got %s", name, type(d)) end
  for k in pairs(d) do
    if not entry_keys[k] and k ~= "name" and k ~= "library" then
      fail(3, "gs.backend: %s: unknown field '%s'", name, tostring(k))
    end
  end
  local device = d.device or "cpu"
  if device ~= "cpu" and device ~= "cuda" then
    fail(3, "gs.backend: %s: device = %s is unknown (expected \"cpu\" or \"cuda\")", name, tostring(device))
  end
  if type(d.ops) ~= "table" or next(d.ops) == nil then
    fail(3, "gs.backend: %s: ops must name at least one op (%s)", name, "cross_entropy, log_probs, entropy and their _backward")
  end
  local e = {
    name = name, kind = kind, device = device, ops = {},
    dtypes = as_set(d.dtypes or { "f32" }, "dtypes", name, float_dtypes),
    options = d.options and as_set(d.options, "options", name, option_names()) or nil,
    real = d.real or "f32", guard = d.guard, available = d.available, builtin = false,
  }
  if e.guard == nil then e.guard = true end
  for op, impl in pairs(d.ops) do
    if not M.op_ctype[op] then
      local known = {}
      for k in pairs(M.op_ctype) do known[#known + 1] = k end
      table.sort(known)
      fail(3, "gs.backend: %s: ops.%s is not an op (known: %s)", name, tostring(op), table.concat(known, ", "))
    end
    if kind == "lua" and type(impl) ~= "function" then
      fail(3, "gs.backend: %s: ops.%s must be a function, got %s", name, op, type(impl))
    end
    e.ops[op] = impl
  end
  if registry[name] == nil then order[#order + 1] = name end
  registry[name] = e
  return e
end

-- gs.backend.register(name, {device, dtypes, options, ops = {op = function}}).
-- See docs/your-kernel.md for the signature of each op's function.
function M.register(name, d)
  add(name, d, "lua")
  return name
end

-- gs.backend.load{name, library, device, dtypes, options, ops = {op = "symbol"}}:
-- a shared library written against the C contract (kernels/cross_entropy.h).
local err = ffi.new("gs_error")
local libraries = {} -- keeps every opened library for the life of the process
function M.load(d)
  if type(d) ~= "table" then fail(2, "gs.backend.load: expects a table, got %s", type(d)) end
  local name, path = d.name, d.library
  if type(path) ~= "string" then fail(2, "gs.backend.load: %s: library must be a file name, got %s", tostring(name), type(path)) end
  if type(d.ops) ~= "table" then fail(2, "gs.backend.load: %s: ops must map op names to symbol names", tostring(name)) end
  local f = io.open(path, "rb")
  if not f then fail(2, "gs.backend.load: %s: no such library file: %s", tostring(name), path) end
  f:close()
  ffi.fill(err, ffi.sizeof(err))
  local handle = C.gs_plugin_open(path, err)
  if handle == nil then fail(2, "gs.backend.load: %s: %s", tostring(name), ffi.string(err.msg)) end
  libraries[#libraries + 1] = handle
  local fns = {}
  for op, sym in pairs(d.ops) do
    if type(sym) ~= "string" then
      fail(2, "gs.backend.load: %s: ops.%s must be a symbol name, got %s", tostring(name), tostring(op), type(sym))
    end
    local ctype = M.op_ctype[op]
    if ctype then
      local p = C.gs_plugin_symbol(handle, sym, err)
      if p == nil then fail(2, "gs.backend.load: %s: ops.%s: %s (in %s)", tostring(name), op, ffi.string(err.msg), path) end
      fns[op] = ffi.cast(ctype, p)
    else
      fns[op] = sym -- add() names the unknown op
    end
  end
  local copy = {}
  for k, v in pairs(d) do copy[k] = v end
  copy.ops = fns
  add(name, copy, "c")
  return name
end

-- The built-ins: the same entries, the C entry points found by name.
local function builtin(name, device, real, dtypes)
  local ops = {}
  for op, base in pairs(builtin_entry) do ops[op] = base .. "_" .. name end
  order[#order + 1] = name
  registry[name] = {
    name = name, kind = "c", device = device, ops = ops, real = real, builtin = true, guard = false,
    dtypes = dtypes, options = nil,
  }
end
builtin("ref", "cpu", "f64", { f64 = true, f32 = true, bf16 = true, f16 = true })
builtin("cpu", "cpu", "f32", { f32 = true, bf16 = true, f16 = true })
builtin("cuda", "cuda", "f32", { f32 = true, bf16 = true, f16 = true })

-- The C function of a "c" entry's op.
function M.entry(e, op)
  local impl = e.ops[op]
  if type(impl) == "string" then return C[impl] end
  return impl
end

function M.get(name) return registry[name] end

function M.names()
  local out = {}
  for i, n in ipairs(order) do out[i] = n end
  return out
end

-- Why the CUDA device cannot be used, or nil.
local cuda_reason_cache
function M.cuda_unavailable_reason()
  if C.gs_cuda_built() == 0 then return "gradspec was built without CUDA" end
  ffi.fill(err, ffi.sizeof(err))
  if C.gs_cuda_device_count(err) > 0 then return nil end
  local msg = ffi.string(err.msg)
  return msg ~= "" and msg or "no CUDA device"
end

-- Why backend e cannot run here, or nil.
function M.unavailable_reason(e)
  if e.device == "cuda" then
    if cuda_reason_cache == nil then cuda_reason_cache = M.cuda_unavailable_reason() or false end
    if cuda_reason_cache then return cuda_reason_cache end
  end
  if e.available then
    local ok, why = pcall(e.available)
    if not ok then return "its availability check failed: " .. tostring(why) end
    if why ~= nil and why ~= true then return tostring(why) end
  end
  return nil
end

-- Registered backends that can run here and have op (every op when nil).
function M.available(op)
  local out = {}
  for _, n in ipairs(order) do
    local e = registry[n]
    if (op == nil or e.ops[op]) and not M.unavailable_reason(e) then out[#out + 1] = n end
  end
  return out
end

-- Options about the call rather than the math: every backend takes them
-- (threads is a hint; grad_dtype is checked against the dtypes).
M.call_options = { backend = true, grad = true, grad_output = true, threads = true, grad_dtype = true }

-- Why backend e cannot take this call, or nil: the op, the logits dtype, an
-- option set away from its default that e does not declare.
function M.lacks(e, op, dtype, opts, defaults)
  if not e.ops[op] then return string.format("%s: no %s", e.name, op) end
  if dtype and not e.dtypes[dtype] then return string.format("%s: no %s logits", e.name, dtype) end
  local gdt = opts and opts.grad_dtype
  if gdt and e.kind == "c" and not e.dtypes[gdt] then return string.format("%s: no %s gradients", e.name, gdt) end
  if e.options and opts then
    local names = {}
    for k, v in pairs(opts) do
      if not M.call_options[k] and not e.options[k] and defaults[k] ~= nil and v ~= defaults[k] and v ~= nil then
        names[#names + 1] = k
      end
    end
    if #names > 0 then
      table.sort(names)
      return string.format("%s: no %s", e.name, table.concat(names, ", no "))
    end
  end
  return nil
end

-- The entry an op runs on: opts.backend, else the lead tensor's device's
-- fast kernel. Unknown names are errors listing the registered ones.
function M.pick(op, lead, opts, level)
  local b = opts.backend
  if b == nil or b == false then b = lead.device == "cuda" and "cuda" or "cpu" end
  local e = registry[b]
  if not e then
    local known = {}
    for i, n in ipairs(order) do known[i] = string.format("%q", n) end
    fail(level + 1, "%s: backend = %s is unknown (registered: %s)", op, tostring(b), table.concat(known, ", "))
  end
  return e
end

-- Runs every Lua file in `files` (a list, or a ':'/','-separated string)
-- with the workbench loaded as the global gs: each registers backends.
function M.load_files(files)
  if type(files) == "string" then
    local list = {}
    for f in files:gmatch("[^:,]+") do list[#list + 1] = f end
    files = list
  end
  for _, path in ipairs(files or {}) do
    local chunk, lerr = loadfile(path)
    if not chunk then error("--load " .. path .. ": " .. tostring(lerr), 0) end
    setfenv(chunk, require("gradspec.runner").spec_env())
    local ok, rerr = xpcall(chunk, function(e) return debug.traceback(tostring(e), 2) end)
    if not ok then error("--load " .. path .. ": " .. tostring(rerr), 0) end
  end
end

-- Files named by GRADSPEC_LOAD, loaded once per process.
local env_loaded = false
function M.load_env()
  if env_loaded then return end
  env_loaded = true
  local list = os.getenv("GRADSPEC_LOAD")
  if list and list ~= "" then M.load_files(list) end
end

return M
