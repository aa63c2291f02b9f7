-- Argument checks shared by the op bindings (ops.lua, linear_ce.lua): every
-- message names the op, the argument and the bad value. `level` counts stack
-- frames from the caller of the check, as error() does, so that the message
-- points at the spec line that made the call.
local T = require("gradspec.tensor")
local gffi = require("gradspec.ffi")
local mutants = require("gradspec.mutants")
local ffi, C = gffi.ffi, gffi.C

local M = {}

M.reductions = { none = 0, sum = 1, mean = 2 }
-- The type of losses and grad_output per backend ("real" in the C
-- contracts): f64 for ref, f32 for every other backend.
M.real_dtype = setmetatable({}, { __index = function(_, name)
  local e = require("gradspec.backend").get(name)
  return e and e.real or nil
end })

function M.fail(level, fmt, ...) error(string.format(fmt, ...), level + 1) end

-- opts must be a table whose keys are all in `allowed`: a typo must never be
-- silently ignored.
function M.check_opts(op, allowed, opts, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then M.fail(level + 1, "%s: opts must be a table, got %s", op, type(opts)) end
  for k in pairs(opts) do
    if allowed[k] == nil then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      M.fail(level + 1, "%s: unknown option '%s' (known: %s)", op, tostring(k), table.concat(names, ", "))
    end
  end
  return opts
end

-- The option's value, or its default from `defaults`.
function M.opt(opts, defaults, key)
  local v = opts[key]
  if v == nil then v = defaults[key] end
  return v
end

function M.need_tensor(op, name, x, level)
  if not T.is_tensor(x) then M.fail(level + 1, "%s: %s must be a tensor, got %s", op, name, type(x)) end
end

function M.need_device(op, name, t, device, backend, level)
  if t.device ~= device then
    M.fail(level + 1, "%s: %s is on %s but backend %s needs %s tensors; use :to(\"%s\")", op, name,
      t.device, backend, device, device)
  end
end

-- The backend an op runs on (opts.backend, else the device of `lead`), as
-- its name and device; one it lacks or cannot take is unsupported.
function M.backend(op, lead, opts, level)
  local B = require("gradspec.backend")
  local e = B.pick(op, lead, opts, level + 1)
  local why = B.lacks(e, op, nil, nil, nil)
  if why then B.unsupported(why, level + 1) end
  return e.name, e.device
end

-- A class-index target with one value per row; returns it contiguous.
function M.target(op, target, rows, what, device, backend, level)
  M.need_tensor(op, "target", target, level + 1)
  M.need_device(op, "target", target, device, backend, level + 1)
  if target.dtype ~= "i32" and target.dtype ~= "i64" then
    M.fail(level + 1, "%s: target dtype %s is not i32 or i64", op, target.dtype)
  end
  if target:numel() ~= rows or target:dim() > 1 then
    M.fail(level + 1, "%s: target has shape %s but %s has %d rows (needs {%d})", op, T.shape_string(target),
      what, rows, rows)
  end
  return target:contiguous()
end

function M.number_opt(op, opts, defaults, key, level)
  local v = M.opt(opts, defaults, key)
  if type(v) ~= "number" then M.fail(level + 1, "%s: %s = %s is not a number", op, key, tostring(v)) end
  return v
end

-- opts.reduction as its C code.
function M.reduction(op, opts, defaults, level)
  local r = M.opt(opts, defaults, "reduction")
  if M.reductions[r] == nil then
    M.fail(level + 1, "%s: reduction = %s is unknown (expected \"none\", \"sum\" or \"mean\")", op, tostring(r))
  end
  return M.reductions[r]
end

-- Class weights: one per class, returned as contiguous f32.
function M.weight(op, w, classes, device, backend, level)
  M.need_tensor(op, "weight", w, level + 1)
  M.need_device(op, "weight", w, device, backend, level + 1)
  if w:numel() ~= classes or w:dim() ~= 1 then
    M.fail(level + 1, "%s: weight has shape %s but there are %d classes (needs {%d})", op, T.shape_string(w),
      classes, classes)
  end
  return w:to("f32"):contiguous()
end

-- grad_output: a number, or a tensor of 1 or N values; returned as a tensor
-- of the backend's real dtype, or nil when absent.
function M.grad_output(op, g, device, backend, level)
  if g == nil or g == false then return nil end
  local rdt = M.real_dtype[backend]
  if type(g) == "number" then return T.full({ 1 }, g, { dtype = rdt, device = device }) end
  M.need_tensor(op, "grad_output", g, level + 1)
  M.need_device(op, "grad_output", g, device, backend, level + 1)
  return g:to(rdt):contiguous()
end

-- Sets a.grad_output from g (see M.grad_output); keep holds the tensor for
-- the duration of the call.
function M.set_grad_output(op, a, keep, g, backend, device, level)
  local t = M.grad_output(op, g, device, backend, level + 1)
  if not t then return end
  keep.grad_output = t
  a.grad_output, a.grad_output_n = t:data(), t:numel()
end

local status_names = { [1] = "target", [2] = "argument", [3] = "dtype", [4] = "out of memory", [5] = "cuda",
  [6] = "no cuda device" }
local err = ffi.new("gs_error")

-- Calls a C entry point of the contract (with the selected mutant, if any,
-- live for that backend) and turns a bad status into an error carrying the
-- kernel's message.
function M.invoke(op, fn, backend, a, level)
  ffi.fill(err, ffi.sizeof(err))
  mutants.enter(backend)
  local st = fn(a, err)
  mutants.leave()
  if st ~= 0 then
    local msg = ffi.string(err.msg)
    if msg == "" and st == 1 then
      msg = string.format("target[%d] = %d is outside [0, %d)", tonumber(err.row), tonumber(err.value), tonumber(a.v))
    end
    if msg == "" then msg = status_names[st] or ("status " .. st) end
    M.fail(level + 1, "%s: %s", op, msg)
  end
end

-- The built-in entry point fn_name .. "_" .. backend.
function M.call(op, fn_name, backend, a, level)
  M.invoke(op, C[fn_name .. "_" .. backend], backend, a, level + 1)
end

return M
