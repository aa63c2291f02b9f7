-- Lua bindings of the cross-entropy family: option checking, dispatch
-- through the backend registry (backend.lua), output allocation, tracking
-- of what the op returned. The C contract is kernels/cross_entropy.h; the
-- math is docs/losses.md.
--
-- One dispatch path serves every backend. A "c" backend (ref, cpu, cuda, a
-- user's shared library) gets a gs_ce_args with outputs allocated here (in
-- guard bands for a user's kernel); a "lua" backend is called with the
-- tensors and its outputs are checked for shape and device.
local gffi = require("gradspec.ffi")
local T = require("gradspec.tensor")
local dtypes = require("gradspec.dtype")
local track = require("gradspec.track")
local args = require("gradspec.op_args")
local backend = require("gradspec.backend")
local ffi = gffi.ffi

local M = {}

local family = require("gradspec.ce_family")

-- Every option each op accepts, with its default (ce_family.lua). A name not
-- listed is an error: a typo must never be silently ignored.
M.options = {}
-- How each op is called: "forward" (loss, lse, z_loss and the fused grad),
-- "per_row" (one value per row), "backward" (grad).
M.shape = {}
local has_target = {}
for op, d in pairs(family.ops) do
  M.options[op], M.shape[op], has_target[op] = d.options, d.shape, d.target
end

local fail, need_tensor, need_device = args.fail, args.need_tensor, args.need_device

local function check_opts(op, opts, level)
  local checked = args.check_opts(op, M.options[op], opts, level + 1)
  return checked -- not a tail call: `level` counts this frame
end

-- The checks every backend's call gets: logits, the backend's support for
-- this call (unsupported: a skip with the reason), target.
local function check_inputs(op, e, logits, target, opts, level)
  level = level + 1
  need_tensor(op, "logits", logits, level)
  if logits:dim() ~= 2 then
    fail(level, "%s: logits must be 2-D (N x V), got shape %s", op, T.shape_string(logits))
  end
  if not dtypes.by_name[logits.dtype].float then
    fail(level, "%s: logits dtype %s is not supported: logits must be a float dtype", op, logits.dtype)
  end
  local why = backend.lacks(e, op, logits.dtype, opts, M.options[op])
  if why then backend.unsupported(why, level) end
  need_device(op, "logits", logits, e.device, e.name, level)
  if not has_target[op] then return nil end
  local t = args.target(op, target, logits.rows, "logits", e.device, e.name, level)
  return t -- not a tail call: `level` counts this frame
end

local function number_opt(op, opts, key, level) return args.number_opt(op, opts, M.options[op], key, level + 1) end

-- The gs_ce_args of a call to a "c" backend, and the Lua objects that must
-- outlive it.
local function c_args(op, e, logits, target, opts, level)
  level = level + 1
  local defaults = M.options[op]
  local a = ffi.new("gs_ce_args")
  local keep = { logits = logits, target = target }
  a.n, a.v = logits.rows, logits.cols
  a.logits, a.logits_dtype, a.logits_stride = logits:data(), dtypes.by_name[logits.dtype].code, logits.stride
  if target then a.target, a.target_dtype = target:data(), dtypes.by_name[target.dtype].code end
  a.logit_scale = number_opt(op, opts, "logit_scale", level)
  a.softcap = number_opt(op, opts, "softcap", level)
  if defaults.ignore_index then a.ignore_index = number_opt(op, opts, "ignore_index", level) end
  if defaults.reduction then
    a.label_smoothing = number_opt(op, opts, "label_smoothing", level)
    a.lse_square_scale = number_opt(op, opts, "lse_square_scale", level)
    a.reduction = args.reduction(op, opts, defaults, level)
    if opts.weight then
      keep.weight = args.weight(op, opts.weight, logits.cols, e.device, e.name, level)
      a.weight = ffi.cast("const float *", keep.weight:data())
    end
  end
  a.threads = number_opt(op, opts, "threads", level)
  return a, keep
end

local function grad_dtype(op, logits, opts, level)
  local gdt = opts.grad_dtype or logits.dtype
  dtypes.get(gdt, "grad_dtype")
  return gdt
end

-- Calls a "c" backend: outputs allocated here (guarded for a user's kernel),
-- filled by the kernel.
local function run_c(op, e, logits, target, grad_output, opts, level)
  level = level + 1
  local a, keep = c_args(op, e, logits, target, opts, level)
  local n, shape = logits.rows, M.shape[op]
  local guards = e.guard and require("gradspec.guard").new() or nil
  local function out(name, dims, dt)
    if guards then return guards:empty(name, dims, dt, e.device) end
    return T.empty(dims, { dtype = dt, device = e.device })
  end
  local outs = {}
  local function want_grad(inplace)
    if inplace then
      if opts.grad_dtype and opts.grad_dtype ~= logits.dtype then
        fail(level, "%s: inplace needs grad_dtype = logits dtype (%s), got %s", op, logits.dtype, tostring(opts.grad_dtype))
      end
      outs.grad = logits
    else
      outs.grad = out("gradient", { n, logits.cols }, grad_dtype(op, logits, opts, level))
    end
    local g = outs.grad
    a.grad, a.grad_dtype, a.grad_stride = g:data(), dtypes.by_name[g.dtype].code, g.stride
    args.set_grad_output(op, a, keep, grad_output, e.name, e.device, level)
  end
  if shape == "forward" then
    outs.loss = out("loss", a.reduction == 0 and { n } or {}, e.real)
    outs.lse, outs.z_loss = out("lse", { n }, e.real), out("z_loss", { n }, e.real)
    a.loss, a.lse, a.z_loss = outs.loss:data(), outs.lse:data(), outs.z_loss:data()
    if opts.grad then want_grad(opts.inplace)
    elseif opts.inplace or opts.grad_output then fail(level, "%s: inplace and grad_output need grad = true", op) end
  elseif shape == "per_row" then
    outs.result = out("result", { n }, e.real)
    a.loss = outs.result:data()
  else
    want_grad(false)
  end
  args.invoke(op, backend.entry(e, op), e.name, a, level)
  return outs, guards
end

-- What a "lua" backend returned, checked against what the op promises.
local function check_output(op, e, what, t, dims, level)
  if not T.is_tensor(t) then
    fail(level + 1, "%s: backend %s returned %s as %s, not a tensor", op, e.name, what, type(t))
  end
  local want = "{" .. table.concat(dims, ", ") .. "}"
  if T.shape_string(t) ~= want then
    fail(level + 1, "%s: backend %s returned %s of shape %s (expected %s)", op, e.name, what, T.shape_string(t), want)
  end
  if t.device ~= e.device then
    fail(level + 1, "%s: backend %s returned %s on %s (it is declared on %s)", op, e.name, what, t.device, e.device)
  end
  return t
end

-- Every option of op with its value or default: what a "lua" backend sees.
local function full_opts(op, opts, weight)
  local o = {}
  for k, v in pairs(M.options[op]) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  if weight then o.weight = weight end
  return o
end

-- Calls a "lua" backend; its calls to other ops are not tracked (only what
-- it returns is).
local function run_lua(op, e, logits, target, grad_output, opts, level)
  level = level + 1
  local n, v, shape = logits.rows, logits.cols, M.shape[op]
  local weight = opts.weight and args.weight(op, opts.weight, v, e.device, e.name, level) or nil
  local o = full_opts(op, opts, weight)
  local fn = e.ops[op]
  local outs = {}
  if shape == "forward" then
    local reduction = args.reduction(op, opts, M.options[op], level)
    if not opts.grad and (opts.inplace or opts.grad_output) then
      fail(level, "%s: inplace and grad_output need grad = true", op)
    end
    local loss, aux = track.untracked(fn, logits, target, o)
    aux = aux or {}
    outs.loss = check_output(op, e, "loss", loss, reduction == 0 and { n } or {}, level)
    for _, k in ipairs({ "lse", "z_loss" }) do
      if aux[k] ~= nil then outs[k] = check_output(op, e, k, aux[k], { n }, level) end
    end
    if opts.grad then
      local g = aux.grad
      if g == nil then
        if not e.ops.cross_entropy_backward then
          backend.unsupported(e.name .. ": no gradient (cross_entropy returned no aux.grad and there is no cross_entropy_backward)", level)
        end
        g = track.untracked(e.ops.cross_entropy_backward, logits, target, grad_output or 1, o)
      end
      outs.grad = check_output(op, e, "gradient", g, { n, v }, level)
    end
  elseif shape == "per_row" then
    local r = target and track.untracked(fn, logits, target, o) or track.untracked(fn, logits, o)
    outs.result = check_output(op, e, "result", r, { n }, level)
  else
    local g = target and track.untracked(fn, logits, target, grad_output, o) or track.untracked(fn, logits, grad_output, o)
    outs.grad = check_output(op, e, "gradient", g, { n, v }, level)
  end
  if outs.grad and opts.grad_dtype and outs.grad.dtype ~= opts.grad_dtype and outs.grad ~= logits then
    outs.grad = outs.grad:to(grad_dtype(op, logits, opts, level))
  end
  return outs
end

-- The active black-box perturbation (gradspec mutate --backend), if any.
local perturb = os.getenv("GRADSPEC_PERTURB") and require("gradspec.perturb") or nil

-- Runs op on the backend opts picks and returns its named outputs
-- ({loss, lse, z_loss, grad} or {result} or {grad}), each tracked.
function M.run(op, logits, target, grad_output, opts, level)
  level = (level or 1) + 1
  -- logits holding some of the vocabulary's columns, the rest on other ranks
  if type(opts) == "table" and not T.is_tensor(opts) and (opts.comm ~= nil or opts.vocab_start ~= nil) then
    return require("gradspec.vocab_parallel").run(op, logits, target, grad_output, opts, level)
  end
  opts = check_opts(op, opts, level)
  need_tensor(op, "logits", logits, level)
  local e = backend.pick(op, logits, opts, level)
  -- the fused forward takes its grad_output as an option
  if M.shape[op] == "forward" then grad_output = opts.grad_output or nil end
  target = check_inputs(op, e, logits, target, opts, level)
  local p = perturb and perturb.active(e.name, op)
  if p then grad_output, opts = p.inputs(logits, target, grad_output, opts) end
  local outs, guards
  if e.kind == "c" then outs, guards = run_c(op, e, logits, target, grad_output, opts, level)
  else outs = run_lua(op, e, logits, target, grad_output, opts, level) end
  if p then p.outputs(outs, logits, target, grad_output, opts) end
  if guards then guards:check(e.name, op, level) end
  track.record_outputs(outs, op)
  outs.backend = e.name
  return outs
end

-- gs.cross_entropy(logits, target, opts) -> loss, aux {lse, z_loss[, grad]}
function M.cross_entropy(logits, target, opts)
  local o = M.run("cross_entropy", logits, target, nil, opts, 2)
  return o.loss, { lse = o.lse, z_loss = o.z_loss, grad = o.grad, backend = o.backend }
end

function M.cross_entropy_backward(logits, target, grad_output, opts)
  return M.run("cross_entropy_backward", logits, target, grad_output, opts, 2).grad
end

function M.log_probs(logits, target, opts)
  return M.run("log_probs", logits, target, nil, opts, 2).result
end

function M.log_probs_backward(logits, target, grad_output, opts)
  return M.run("log_probs_backward", logits, target, grad_output, opts, 2).grad
end

function M.entropy(logits, opts)
  return M.run("entropy", logits, nil, nil, opts, 2).result
end

function M.entropy_backward(logits, grad_output, opts)
  return M.run("entropy_backward", logits, nil, grad_output, opts, 2).grad
end

-- Which backends can run here (every op when op is nil).
function M.available_backends(op) return backend.available(op) end

-- Why cuda is unavailable, or nil when it is available.
M.cuda_unavailable_reason = backend.cuda_unavailable_reason

return M
