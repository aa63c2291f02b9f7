-- Lua binding of fused linear cross entropy: x = h W^T + bias, then cross
-- entropy, computed chunk by chunk so that the N x V logits never exist at
-- once. The C contract is kernels/linear_cross_entropy.h; the math is
-- docs/losses.md (linear_cross_entropy).
--
--   gs.linear_cross_entropy(h, W, target, opts) -> loss, aux {lse, z_loss[, dh, dW, db]}
--   gs.linear_cross_entropy_backward(h, W, target, grad_output, opts) -> dh, dW, db
--
-- h: N x H, W: V x H, target: N class indices, opts.bias: V values. db is
-- returned only with a bias. Gradients come in h's dtype (db in the bias's)
-- unless opts.grad_dtype says otherwise. opts.chunk_dtype ("f32", "bf16",
-- "f16"; default f32) is the dtype the chunk's logits are kept in: a 16-bit
-- one makes the loss that of the logits rounded to it (docs/losses.md).
local gffi = require("gradspec.ffi")
local T = require("gradspec.tensor")
local dtypes = require("gradspec.dtype")
local track = require("gradspec.track")
local args = require("gradspec.op_args")
local ffi, C = gffi.ffi, gffi.C

local M = {}

-- Every option, with its default. A name not listed is an error.
local shared = {
  backend = false, threads = 0, chunk_rows = 0, chunk_dtype = false, bias = false, grad_dtype = false,
  reduction = "mean", ignore_index = -100, weight = false, label_smoothing = 0,
  logit_scale = 1, softcap = 0, lse_square_scale = 0,
}
M.options = {
  linear_cross_entropy = { grad = false, grad_output = false },
  linear_cross_entropy_backward = {},
}
for _, opts in pairs(M.options) do
  for k, v in pairs(shared) do opts[k] = v end
end

local fail, need_tensor, need_device = args.fail, args.need_tensor, args.need_device
local call = args.call

local function check_opts(op, opts, level)
  local checked = args.check_opts(op, M.options[op], opts, level + 1)
  return checked -- not a tail call: `level` counts this frame
end

-- Builds the gs_lce_args of one call and the Lua objects that must outlive it.
local function prepare(op, h, W, target, opts, level)
  level = level + 1
  need_tensor(op, "h", h, level)
  need_tensor(op, "W", W, level)
  if h:dim() ~= 2 then fail(level, "%s: h must be 2-D (N x H), got shape %s", op, T.shape_string(h)) end
  if W:dim() ~= 2 then fail(level, "%s: W must be 2-D (V x H), got shape %s", op, T.shape_string(W)) end
  if W.cols ~= h.cols then
    fail(level, "%s: W has shape %s but h has shape %s: W needs H = %d columns", op, T.shape_string(W),
      T.shape_string(h), h.cols)
  end
  local backend, device = args.backend(op, h, opts, level)
  need_device(op, "h", h, device, backend, level)
  need_device(op, "W", W, device, backend, level)
  local hdt = dtypes.by_name[h.dtype]
  if not hdt.float then fail(level, "%s: h dtype %s is not a float dtype", op, h.dtype) end
  if W.dtype ~= h.dtype then fail(level, "%s: W dtype %s differs from h dtype %s", op, W.dtype, h.dtype) end

  local a = ffi.new("gs_lce_args")
  local keep = { h = h, W = W }
  a.n, a.hidden, a.v = h.rows, h.cols, W.rows
  a.h, a.h_dtype, a.h_stride = h:data(), hdt.code, h.stride
  a.w, a.w_dtype, a.w_stride = W:data(), hdt.code, W.stride

  target = args.target(op, target, h.rows, "h", device, backend, level)
  keep.target = target
  a.target, a.target_dtype = target:data(), dtypes.by_name[target.dtype].code

  local bias = opts.bias
  if bias then
    need_tensor(op, "bias", bias, level)
    need_device(op, "bias", bias, device, backend, level)
    if bias:dim() ~= 1 or bias:numel() ~= W.rows then
      fail(level, "%s: bias has shape %s but W has %d rows (needs {%d})", op, T.shape_string(bias), W.rows, W.rows)
    end
    if not dtypes.by_name[bias.dtype].float then fail(level, "%s: bias dtype %s is not a float dtype", op, bias.dtype) end
    bias = bias:contiguous()
    keep.bias = bias
    a.bias, a.bias_dtype = bias:data(), dtypes.by_name[bias.dtype].code
  end

  local function number_opt(key) return args.number_opt(op, opts, M.options[op], key, level) end
  a.ignore_index = number_opt("ignore_index")
  a.label_smoothing = number_opt("label_smoothing")
  a.logit_scale = number_opt("logit_scale")
  a.softcap = number_opt("softcap")
  a.lse_square_scale = number_opt("lse_square_scale")
  a.threads = number_opt("threads")
  local rows = number_opt("chunk_rows")
  if rows ~= math.floor(rows) then fail(level, "%s: chunk_rows = %s is not an integer", op, tostring(rows)) end
  a.chunk_rows = rows
  if opts.chunk_dtype then a.chunk_dtype = dtypes.lookup(opts.chunk_dtype).code end
  a.reduction = args.reduction(op, opts, M.options[op], level)
  if opts.weight then
    keep.weight = args.weight(op, opts.weight, W.rows, device, backend, level)
    a.weight = ffi.cast("const float *", keep.weight:data())
  end
  return a, keep, backend, device
end

local set_grad_output = args.set_grad_output

-- dh (N x H), dW (V x H) and, with a bias, db (V).
local function alloc_grads(a, keep, opts, device)
  local gdt = opts.grad_dtype
  if gdt then dtypes.get(gdt, "grad_dtype") end
  local h, W, bias = keep.h, keep.W, keep.bias
  local dh = T.empty({ h.rows, h.cols }, { dtype = gdt or h.dtype, device = device })
  local dW = T.empty({ W.rows, W.cols }, { dtype = gdt or W.dtype, device = device })
  a.dh, a.dh_dtype, a.dh_stride = dh:data(), dtypes.by_name[dh.dtype].code, dh.stride
  a.dw, a.dw_dtype, a.dw_stride = dW:data(), dtypes.by_name[dW.dtype].code, dW.stride
  local db
  if bias then
    db = T.empty({ W.rows }, { dtype = gdt or bias.dtype, device = device })
    a.db, a.db_dtype = db:data(), dtypes.by_name[db.dtype].code
  end
  keep.grads = { dh, dW, db }
  return dh, dW, db
end

local function record_grads(op, dh, dW, db)
  track.record(dh, op, "dh", "gradient")
  track.record(dW, op, "dW", "gradient")
  if db then track.record(db, op, "db", "gradient") end
end

function M.linear_cross_entropy(h, W, target, opts)
  local op = "linear_cross_entropy"
  opts = check_opts(op, opts, 2)
  local a, keep, backend, device = prepare(op, h, W, target, opts, 2)
  local rdt = args.real_dtype[backend]
  local loss = a.reduction == 0 and T.empty({ h.rows }, { dtype = rdt, device = device })
    or T.empty({}, { dtype = rdt, device = device })
  local lse = T.empty({ h.rows }, { dtype = rdt, device = device })
  local zl = T.empty({ h.rows }, { dtype = rdt, device = device })
  a.loss, a.lse, a.z_loss = loss:data(), lse:data(), zl:data()
  local aux = { lse = lse, z_loss = zl, backend = backend }
  if opts.grad then
    aux.dh, aux.dW, aux.db = alloc_grads(a, keep, opts, device)
    set_grad_output(op, a, keep, opts.grad_output, backend, device, 2)
  elseif opts.grad_output then
    fail(2, "%s: grad_output needs grad = true", op)
  end
  call(op, "gs_lce_forward", backend, a, 2)
  track.record(loss, op, "loss", "value")
  track.record(lse, op, "lse", "aux")
  track.record(zl, op, "z_loss", "aux")
  if opts.grad then record_grads(op, aux.dh, aux.dW, aux.db) end
  return loss, aux
end

function M.linear_cross_entropy_backward(h, W, target, grad_output, opts)
  local op = "linear_cross_entropy_backward"
  opts = check_opts(op, opts, 2)
  local a, keep, backend, device = prepare(op, h, W, target, opts, 2)
  local dh, dW, db = alloc_grads(a, keep, opts, device)
  set_grad_output(op, a, keep, grad_output, backend, device, 2)
  call(op, "gs_lce_backward", backend, a, 2)
  record_grads(op, dh, dW, db)
  return dh, dW, db
end

-- The rows per chunk a backend takes by default (0 = its own choice).
function M.default_chunk_rows(n, v, backend)
  return tonumber(C.gs_lce_default_chunk_rows(n, v, backend == "cuda" and 1 or 0))
end

return M
