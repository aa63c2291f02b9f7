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

-- Option values ---------------------------------------------------------------
-- Every option's value is checked as well as its name: a string where a
-- number belongs, 2.5 threads or a label_smoothing of 3 must fail at the
-- call, naming the op, the option and the value, instead of being converted
-- by the FFI, truncated, or caught (or not) deep in a kernel.

local dtypes = require("gradspec.dtype")

-- A value as a message shows it: strings quoted, numbers in full.
function M.value_text(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "number" then return T.num_text(v) end
  if T.is_tensor(v) then return "tensor of shape " .. T.shape_string(v) end
  if type(v) == "table" then return "{...}" end
  return tostring(v)
end

local function kind(v)
  if T.is_tensor(v) then return "tensor" end
  return type(v)
end

local function is_a(key, v, expected)
  return string.format("%s = %s is a %s, expected %s", key, M.value_text(v), kind(v), expected)
end

local finite = function(x) return x - x == 0 end

-- Rules: each takes the option's name and value and returns nil when the
-- value is good, else the message (without the op's name).
local rule = {}

function rule.boolean(key, v)
  if type(v) ~= "boolean" then return is_a(key, v, "true or false") end
end

function rule.number(key, v)
  if type(v) ~= "number" then return is_a(key, v, "a number") end
end

-- An integer in [lo, hi]; `low` words the message for a value below lo.
function rule.integer(lo, hi, low)
  return function(key, v)
    if type(v) ~= "number" then return is_a(key, v, "an integer") end
    if not finite(v) or v ~= math.floor(v) then
      return string.format("%s = %s is not an integer", key, T.num_text(v))
    end
    if v < lo then
      return string.format("%s = %s %s", key, T.num_text(v), low or ("is below " .. T.num_text(lo)))
    end
    if v > hi then return string.format("%s = %s is above %s", key, T.num_text(v), T.num_text(hi)) end
  end
end

-- A number for which ok(v) holds; `want` words the message otherwise. NaN
-- fails every such test.
function rule.range(ok, want)
  return function(key, v)
    if type(v) ~= "number" then return is_a(key, v, "a number") end
    if not ok(v) then return string.format("%s = %s %s", key, T.num_text(v), want) end
  end
end

-- `false` (not set: the op picks) or a value that `inner` accepts.
function rule.optional(inner)
  return function(key, v)
    if v == false then return nil end
    return inner(key, v)
  end
end

function rule.tensor(what)
  return function(key, v)
    if not T.is_tensor(v) then return is_a(key, v, what) end
  end
end

-- The rule builders, for other option tables (gradcheck's).
M.rules = rule

-- Every option of ops.lua and linear_ce.lua, by name.
M.option_rules = {
  grad = rule.boolean,
  inplace = rule.boolean,
  threads = rule.integer(0, 2 ^ 31 - 1, "must be >= 1 (or 0 for all cores)"),
  ignore_index = rule.integer(-2 ^ 53, 2 ^ 53),
  chunk_rows = rule.integer(0, 2 ^ 53, "must be >= 1 (or 0 for the default)"),
  logit_scale = rule.range(function(x) return finite(x) and x ~= 0 end, "must be finite and non-zero"),
  softcap = rule.range(function(x) return x >= 0 and finite(x) end, "must be > 0 (or 0 for off) and finite"),
  label_smoothing = rule.range(function(x) return x >= 0 and x <= 1 end, "is outside [0, 1]"),
  lse_square_scale = rule.range(function(x) return x >= 0 and finite(x) end, "must be >= 0 (0 for off) and finite"),
  reduction = function(key, v)
    if type(v) ~= "string" then return is_a(key, v, '"none", "sum" or "mean"') end
    if M.reductions[v] == nil then
      return string.format('%s = %s is unknown (expected "none", "sum" or "mean")', key, v)
    end
  end,
  grad_dtype = rule.optional(function(key, v)
    local d, why = dtypes.float(v)
    if d then return nil end
    if type(v) == "string" then return string.format("%s %s %s", key, v, why) end
    return string.format("%s = %s %s", key, M.value_text(v), why)
  end),
  -- linear_cross_entropy: the dtype of the chunk's logits (the backends take
  -- some of these; kernels/linear_cross_entropy.h says which).
  chunk_dtype = rule.optional(function(key, v)
    if type(v) ~= "string" then return is_a(key, v, '"f32", "bf16" or "f16"') end
    local d = dtypes.lookup(v)
    if d and (d.name == "f32" or d.name == "bf16" or d.name == "f16") then return nil end
    return string.format('%s = %s is not a chunk dtype (expected "f32", "bf16" or "f16")', key, M.value_text(v))
  end),
  backend = rule.optional(function(key, v)
    if type(v) ~= "string" then return is_a(key, v, "a backend name") end
  end),
  weight = rule.optional(rule.tensor("a tensor of one weight per class")),
  bias = rule.optional(rule.tensor("a tensor of one value per class")),
  grad_output = rule.optional(function(key, v)
    if type(v) ~= "number" and not T.is_tensor(v) then return is_a(key, v, "a number or a tensor") end
  end),
}

-- The rule for an option: its own, else one from its default's type (a
-- default of false means "not set" and says nothing about the type).
function M.rule_for(key, default)
  local r = M.option_rules[key]
  if r then return r end
  if type(default) == "number" then return rule.number end
  if type(default) == "string" then
    return function(k, v) if type(v) ~= "string" then return is_a(k, v, "a string") end end
  end
  if default == true then return rule.boolean end
  return nil
end

-- nil when `v` is a good value for option `key`, else why not.
function M.check_value(key, v, default)
  local r = M.rule_for(key, default)
  if r then return r(key, v) end
  return nil
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- opts must be a table whose keys are all in `allowed` (a typo must never
-- be silently ignored) and whose values each pass their option's rule.
function M.check_opts(op, allowed, opts, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" or T.is_tensor(opts) then
    M.fail(level + 1, "%s: opts must be a table, got %s", op, kind(opts))
  end
  local keys = sorted_keys(opts)
  for _, k in ipairs(keys) do
    if allowed[k] == nil then
      M.fail(level + 1, "%s: unknown option '%s' (known: %s)", op, tostring(k), table.concat(sorted_keys(allowed), ", "))
    end
  end
  for _, k in ipairs(keys) do
    local why = M.check_value(k, opts[k], allowed[k])
    if why then M.fail(level + 1, "%s: %s", op, why) end
  end
  return opts
end

-- One option's value (or its default), checked by its rule.
local function checked(op, opts, defaults, key, level)
  local v = M.opt(opts, defaults, key)
  local why = M.check_value(key, v, defaults[key])
  if why then M.fail(level + 1, "%s: %s", op, why) end
  return v
end

function M.bool_opt(op, opts, defaults, key, level)
  local v = checked(op, opts, defaults, key, level + 1)
  if type(v) ~= "boolean" then M.fail(level + 1, "%s: %s", op, rule.boolean(key, v)) end
  return v
end

function M.int_opt(op, opts, defaults, key, level)
  local v = checked(op, opts, defaults, key, level + 1)
  local why = rule.integer(-2 ^ 53, 2 ^ 53)(key, v)
  if why then M.fail(level + 1, "%s: %s", op, why) end
  return v
end

-- A float dtype option: its dtype record, or nil when not set (false).
function M.dtype_opt(op, opts, defaults, key, level)
  local v = M.opt(opts, defaults, key)
  if v == nil or v == false then return nil end
  local why = M.option_rules.grad_dtype(key, v)
  if why then M.fail(level + 1, "%s: %s", op, why) end
  return dtypes.float(v)
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
  local v = checked(op, opts, defaults, key, level + 1)
  if type(v) ~= "number" then M.fail(level + 1, "%s: %s", op, rule.number(key, v)) end
  return v
end

-- opts.reduction as its C code.
function M.reduction(op, opts, defaults, level)
  local r = checked(op, opts, defaults, "reduction", level + 1)
  if M.reductions[r] == nil then
    M.fail(level + 1, "%s: %s", op, M.option_rules.reduction("reduction", r))
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
  local why = M.option_rules.grad_output("grad_output", g)
  if why then M.fail(level + 1, "%s: %s", op, why) end
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
