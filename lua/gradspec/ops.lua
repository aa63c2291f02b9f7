-- Lua bindings of the cross-entropy family: option checking, backend
-- dispatch, output allocation and error translation. The C contract is
-- kernels/cross_entropy.h; the math is shared/LOSSES.md.
local gffi = require("gradspec.ffi")
local T = require("gradspec.tensor")
local dtypes = require("gradspec.dtype")
local track = require("gradspec.track")
local args = require("gradspec.op_args")
local ffi, C = gffi.ffi, gffi.C

local M = {}

M.backends = { "ref", "cpu", "cuda" }

-- Every option each op accepts, with its default. A name not listed here is
-- an error: a typo must never be silently ignored.
local common = {
  backend = false, threads = 0, logit_scale = 1, softcap = 0, grad_dtype = false,
}
local ce_only = {
  reduction = "mean", ignore_index = -100, weight = false, label_smoothing = 0,
  lse_square_scale = 0,
}
M.options = {
  cross_entropy = { grad = false, inplace = false, grad_output = false },
  cross_entropy_backward = {},
  log_probs = { ignore_index = -100 },
  log_probs_backward = { ignore_index = -100 },
  entropy = {},
  entropy_backward = {},
}
for name, opts in pairs(M.options) do
  for k, v in pairs(common) do opts[k] = v end
  if name:find("^cross_entropy") then
    for k, v in pairs(ce_only) do opts[k] = v end
  end
end

local fail, need_tensor, need_device = args.fail, args.need_tensor, args.need_device
local real_dtype = args.real_dtype
local call = args.call

local function check_opts(op, opts, level)
  return args.check_opts(op, M.options[op], opts, level + 1)
end

-- Builds the gs_ce_args for one call and the Lua objects that must outlive it.
local function prepare(op, logits, target, opts, level)
  level = level + 1
  local defaults = M.options[op]
  need_tensor(op, "logits", logits, level)
  if logits:dim() ~= 2 then
    fail(level, "%s: logits must be 2-D (N x V), got shape %s", op, T.shape_string(logits))
  end
  local backend, device = args.backend(op, logits, opts, level)
  need_device(op, "logits", logits, device, backend, level)
  local ldt = dtypes.by_name[logits.dtype]
  if not ldt.float or (ldt.name == "f64" and backend ~= "ref") then
    fail(level, "%s: logits dtype %s is not supported by backend %s (f32, bf16, f16%s)", op,
      logits.dtype, backend, backend == "ref" and ", f64" or "")
  end

  local a = ffi.new("gs_ce_args")
  local keep = { logits = logits }
  a.n, a.v = logits.rows, logits.cols
  a.logits, a.logits_dtype, a.logits_stride = logits:data(), ldt.code, logits.stride

  if target ~= nil then
    target = args.target(op, target, logits.rows, "logits", device, backend, level)
    keep.target = target
    a.target, a.target_dtype = target:data(), dtypes.by_name[target.dtype].code
  end

  local function number_opt(key) return args.number_opt(op, opts, defaults, key, level) end
  a.logit_scale = number_opt("logit_scale")
  a.softcap = number_opt("softcap")
  if defaults.ignore_index then a.ignore_index = number_opt("ignore_index") end
  if defaults.reduction then
    a.label_smoothing = number_opt("label_smoothing")
    a.lse_square_scale = number_opt("lse_square_scale")
    a.reduction = args.reduction(op, opts, defaults, level)
    if opts.weight then
      keep.weight = args.weight(op, opts.weight, logits.cols, device, backend, level)
      a.weight = ffi.cast("const float *", keep.weight:data())
    end
  end
  a.threads = number_opt("threads")
  return a, keep, backend, device
end

local set_grad_output = args.set_grad_output

local function alloc_grad(op, a, keep, logits, opts, backend, device, inplace)
  local gdt = opts.grad_dtype or logits.dtype
  if inplace then
    if opts.grad_dtype and opts.grad_dtype ~= logits.dtype then
      fail(4, "%s: inplace needs grad_dtype = logits dtype (%s), got %s", op, logits.dtype, tostring(opts.grad_dtype))
    end
    keep.grad = logits
  else
    keep.grad = T.empty({ logits.rows, logits.cols }, { dtype = gdt, device = device })
  end
  local g = keep.grad
  a.grad, a.grad_dtype, a.grad_stride = g:data(), dtypes.get(gdt, "grad_dtype").code, g.stride
  return g
end

local function per_row_out(n, backend, device)
  return T.empty({ n }, { dtype = real_dtype[backend], device = device })
end

-- gs.cross_entropy(logits, target, opts) -> loss, aux {lse, z_loss[, grad]}
function M.cross_entropy(logits, target, opts)
  local op = "cross_entropy"
  opts = check_opts(op, opts, 2)
  local a, keep, backend, device = prepare(op, logits, target, opts, 2)
  local loss = a.reduction == 0 and per_row_out(logits.rows, backend, device)
    or T.empty({}, { dtype = real_dtype[backend], device = device })
  local lse, zl = per_row_out(logits.rows, backend, device), per_row_out(logits.rows, backend, device)
  a.loss, a.lse, a.z_loss = loss:data(), lse:data(), zl:data()
  local aux = { lse = lse, z_loss = zl, backend = backend }
  if opts.grad then
    aux.grad = alloc_grad(op, a, keep, logits, opts, backend, device, opts.inplace)
    set_grad_output(op, a, keep, opts.grad_output, backend, device, 2)
  elseif opts.inplace or opts.grad_output then
    fail(2, "%s: inplace and grad_output need grad = true", op)
  end
  call(op, "gs_ce_forward", backend, a, 2)
  track.record(loss, op, "loss", "value")
  track.record(lse, op, "lse", "aux")
  track.record(zl, op, "z_loss", "aux")
  if aux.grad then track.record(aux.grad, op, "gradient", "gradient") end
  return loss, aux
end

-- Shared body of the three backward ops.
local function backward(op, fn_name, logits, target, grad_output, opts)
  opts = check_opts(op, opts, 3)
  local a, keep, backend, device = prepare(op, logits, target, opts, 3)
  local grad = alloc_grad(op, a, keep, logits, opts, backend, device, false)
  set_grad_output(op, a, keep, grad_output, backend, device, 3)
  call(op, fn_name, backend, a, 3)
  return track.record(grad, op, "gradient", "gradient")
end

function M.cross_entropy_backward(logits, target, grad_output, opts)
  return backward("cross_entropy_backward", "gs_ce_backward", logits, target, grad_output, opts)
end

-- Shared body of the per-row forward ops.
local function per_row(op, fn_name, logits, target, opts)
  opts = check_opts(op, opts, 3)
  local a, keep, backend, device = prepare(op, logits, target, opts, 3)
  local out = per_row_out(logits.rows, backend, device)
  a.loss = out:data()
  call(op, fn_name, backend, a, 3)
  return track.record(out, op, "result", "value")
end

function M.log_probs(logits, target, opts)
  return per_row("log_probs", "gs_log_probs_forward", logits, target, opts)
end

function M.log_probs_backward(logits, target, grad_output, opts)
  return backward("log_probs_backward", "gs_log_probs_backward", logits, target, grad_output, opts)
end

function M.entropy(logits, opts)
  return per_row("entropy", "gs_entropy_forward", logits, nil, opts)
end

function M.entropy_backward(logits, grad_output, opts)
  return backward("entropy_backward", "gs_entropy_backward", logits, nil, grad_output, opts)
end

local err = ffi.new("gs_error")

-- Which backends can run here: ref and cpu always, cuda with a device.
function M.available_backends()
  local out = { "ref", "cpu" }
  if C.gs_cuda_built() ~= 0 and C.gs_cuda_device_count(err) > 0 then out[#out + 1] = "cuda" end
  return out
end

-- Why cuda is unavailable, or nil when it is available.
function M.cuda_unavailable_reason()
  if C.gs_cuda_built() == 0 then return "gradspec was built without CUDA" end
  ffi.fill(err, ffi.sizeof(err))
  if C.gs_cuda_device_count(err) > 0 then return nil end
  local msg = ffi.string(err.msg)
  return msg ~= "" and msg or "no CUDA device"
end

return M
