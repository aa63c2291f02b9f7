-- The vocabulary-parallel path of the cross-entropy family: an op called
-- with opts.comm (a gs.dist communicator) and opts.vocab_start treats its
-- logits as columns [vocab_start, vocab_start + cols) of the whole
-- vocabulary, the other columns being held by the other ranks. The loss,
-- lse, log_probs and entropy equal the unsharded ones on every rank; the
-- gradient is this rank's slice of the unsharded gradient
-- (docs/losses.md, section 9).
--
-- The kernels (kernels/vocab_parallel.h: _ref, _cpu, _cuda) compute per-row
-- statistics of the local columns in passes; between the passes the ranks
-- combine them: max of the row maxima, sum of exp relative to it, then the
-- target's log-probability, its weight and the smoothing and entropy sums.
-- Row results are assembled here from the combined statistics (f64), the
-- same on every rank. The shards must tile [0, V) in rank order.
local gffi = require("gradspec.ffi")
local T = require("gradspec.tensor")
local dtypes = require("gradspec.dtype")
local track = require("gradspec.track")
local args = require("gradspec.op_args")
local backend = require("gradspec.backend")
local family = require("gradspec.ce_family")
local ffi, C = gffi.ffi, gffi.C

local M = {}

local fail = args.fail
local OPS = {
  cross_entropy = { code = 0, shape = "forward" }, cross_entropy_backward = { code = 0, shape = "backward" },
  log_probs = { code = 1, shape = "per_row" }, log_probs_backward = { code = 1, shape = "backward" },
  entropy = { code = 2, shape = "per_row" }, entropy_backward = { code = 2, shape = "backward" },
}
local ENTRY = { ref = "gs_vp_pass_ref", cpu = "gs_vp_pass_cpu", cuda = "gs_vp_pass_cuda" }
local S = { M_LOCAL = 0, M = 1, REST = 2, TIES = 3, L = 4, TZ = 5, WT = 6, SMOOTH = 7, MU = 8, G = 9, GZ = 10, COUNT = 11 }
local PASS = { MAX = 0, SUMS = 1, TERMS = 2, GRAD = 3 }

local err = ffi.new("gs_error")

local function is_comm(c)
  return type(c) == "table" and type(c.rank) == "number" and type(c.size) == "number" and type(c.all_reduce) == "function"
end

-- opts without comm and vocab_start, checked like any call of op.
local function split_opts(op, opts, level)
  level = level + 1
  local comm, v0 = opts.comm, opts.vocab_start
  if not is_comm(comm) then
    fail(level, "%s: comm = %s is not a communicator (the comm gs.dist.run passes to each rank)", op, args.value_text(comm))
  end
  if type(v0) ~= "number" or v0 ~= math.floor(v0) or v0 < 0 or v0 - v0 ~= 0 then
    fail(level, "%s: vocab_start = %s must be the first column this rank holds (an integer >= 0) when comm is given",
      op, args.value_text(v0))
  end
  local rest = {}
  for k, v in pairs(opts) do if k ~= "comm" and k ~= "vocab_start" then rest[k] = v end end
  return comm, v0, rest
end

local function invoke(fn, a, pass, op, level)
  ffi.fill(err, ffi.sizeof(err))
  local st = fn(a, pass, err)
  if st ~= 0 then fail(level + 1, "%s (vocab-parallel): %s", op, ffi.string(err.msg)) end
end

-- Every rank's (rows, vocab_start, cols); the shards must tile [0, V) in
-- rank order. Returns V.
local function layout(op, comm, n, v0, cols, level)
  local mine = T.tensor({ n, v0, cols }, { dtype = "i64" })
  local all = comm:all_gather(mine)
  local next_start = 0
  for r = 0, comm.size - 1 do
    local rn, rs, rc = all:get(3 * r), all:get(3 * r + 1), all:get(3 * r + 2)
    if rn ~= n then
      fail(level + 1, "%s: rank %d has %d rows of logits, rank %d has %d: every rank holds the same rows", op, r, rn,
        comm.rank, n)
    end
    if rs ~= next_start then
      fail(level + 1, "%s: rank %d has vocab_start = %d, but the shards must tile the vocabulary in rank order: "
        .. "ranks 0 to %d hold columns [0, %d), so rank %d must start at %d", op, r, rs, r - 1, next_start, r, next_start)
    end
    next_start = rs + rc
  end
  return next_start
end

-- Host copies of the targets: the class of each row, or nil when ignored.
-- The lowest bad row is an error, the same on every rank.
local function targets(op, target, n, V, ignore, level)
  local h = target:to({ device = "cpu", dtype = "f64" })
  local hp = h:ptr()
  local cls, count = {}, 0
  for i = 0, n - 1 do
    local t = hp[i]
    if t == ignore then
      cls[i] = nil
    elseif t < 0 or t >= V then
      fail(level + 1, "%s: target[%d] = %d is outside [0, %d)", op, i, t, V)
    else
      cls[i] = t
      count = count + 1
    end
  end
  return cls, count
end

-- Runs op on this rank's columns (see the header comment). Returns the
-- outputs the way ops.run does, each tracked.
function M.run(op, logits, target, grad_output, opts, level)
  level = level + 1
  local desc = OPS[op]
  local comm, v0, o = split_opts(op, opts, level)
  local known = family.ops[op].options
  o = args.check_opts(op, known, o, level)
  args.need_tensor(op, "logits", logits, level)
  local e = backend.pick(op, logits, o, level)
  if not ENTRY[e.name] then
    fail(level, "%s: backend %s has no vocab-parallel path (ref, cpu and cuda have one)", op, e.name)
  end
  if logits:dim() ~= 2 then
    fail(level, "%s: logits must be 2-D (N x V/ranks), got shape %s", op, T.shape_string(logits))
  end
  if not e.dtypes[logits.dtype] then fail(level, "%s: backend %s takes no %s logits", op, e.name, logits.dtype) end
  args.need_device(op, "logits", logits, e.device, e.name, level)
  if backend.unavailable_reason(e) then backend.unsupported(e.name .. ": " .. backend.unavailable_reason(e), level) end
  local n, cols = logits.rows, logits.cols
  local V = layout(op, comm, n, v0, cols, level)

  local defaults = known
  local a = ffi.new("gs_vp_args")
  local keep = { logits = logits }
  a.n, a.v, a.vocab_start, a.vocab_total = n, cols, v0, V
  a.logits, a.logits_dtype, a.logits_stride = logits:data(), dtypes.by_name[logits.dtype].code, logits.stride
  a.logit_scale = args.number_opt(op, o, defaults, "logit_scale", level)
  a.softcap = args.number_opt(op, o, defaults, "softcap", level)
  if a.logit_scale == 0 or a.logit_scale - a.logit_scale ~= 0 then
    fail(level, "%s: logit_scale = %s must be finite and non-zero", op, T.num_text(a.logit_scale))
  end
  if a.softcap < 0 or a.softcap - a.softcap ~= 0 then
    fail(level, "%s: softcap = %s must be finite and >= 0", op, T.num_text(a.softcap))
  end
  a.threads = args.number_opt(op, o, defaults, "threads", level)
  a.op = desc.code
  local reduction, eps, lam = 2, 0, 0
  local cls, count = {}, n
  if family.ops[op].target then
    target = args.target(op, target, n, "logits", e.device, e.name, level)
    keep.target = target
    a.target, a.target_dtype = target:data(), dtypes.by_name[target.dtype].code
    a.ignore_index = args.number_opt(op, o, defaults, "ignore_index", level)
    cls, count = targets(op, target, n, V, a.ignore_index, level)
  else
    for i = 0, n - 1 do cls[i] = true end
  end
  local wsum = V
  if family.ops[op].ce_options then
    eps = args.number_opt(op, o, defaults, "label_smoothing", level)
    lam = args.number_opt(op, o, defaults, "lse_square_scale", level)
    if not (eps >= 0 and eps <= 1) then fail(level, "%s: label_smoothing = %s is outside [0, 1]", op, T.num_text(eps)) end
    if not (lam >= 0) or lam == math.huge then
      fail(level, "%s: lse_square_scale = %s must be finite and >= 0", op, T.num_text(lam))
    end
    reduction = args.reduction(op, o, defaults, level)
    a.label_smoothing, a.lse_square_scale = eps, lam
    if o.weight then
      keep.weight = args.weight(op, o.weight, cols, e.device, e.name, level)
      a.weight = ffi.cast("const float *", keep.weight:data())
      local w = T.tensor({ keep.weight:to("cpu"):sum():item() }, { dtype = "f64" })
      wsum = comm:all_reduce(w, "sum"):get(0)
    end
  end
  a.wsum = wsum

  local stat = T.zeros({ S.COUNT, math.max(n, 1) }, { dtype = e.real, device = e.device })
  keep.stat = stat
  a.stat = stat:data()
  local fn = C[ENTRY[e.name]]
  -- statistics k..k+c-1 of every row, contiguous (stat has a column even for n = 0)
  local function block(first, c) return stat:rows_view(first, c) end
  invoke(fn, a, PASS.MAX, op, level)
  comm:all_reduce(block(S.M, 1), "max")
  invoke(fn, a, PASS.SUMS, op, level)
  comm:all_reduce(block(S.REST, 2), "sum")
  invoke(fn, a, PASS.TERMS, op, level)
  comm:all_reduce(block(S.TZ, 4), "sum")

  local h = stat:to({ device = "cpu", dtype = "f64" })
  -- raw pointers: these loops run over every row on every call
  local hp, width = h:ptr(), h.cols
  local function st(k, i) return hp[k * width + i] end
  local outs = {}
  local real = { dtype = e.real }
  local D, K = 0, count
  for i = 0, n - 1 do if cls[i] then D = D + st(S.WT, i) end end
  if desc.shape == "forward" then
    local loss_rows, lse, zl = T.zeros({ n }, real), T.zeros({ n }, real), T.zeros({ n }, real)
    local lp, sp, zp = loss_rows:ptr(), lse:ptr(), zl:ptr()
    local ce_sum, zl_sum = 0, 0
    for i = 0, n - 1 do
      if cls[i] then
        local l = st(S.M, i) + st(S.L, i)
        local ce = (1 - eps) * -st(S.WT, i) * st(S.TZ, i)
        if eps > 0 then ce = ce + eps / V * st(S.SMOOTH, i) end
        local z = lam > 0 and lam * l * l or 0
        lp[i], sp[i], zp[i] = ce + z, l, z
        ce_sum, zl_sum = ce_sum + ce, zl_sum + z
      end
    end
    if reduction == 0 then outs.loss = loss_rows
    elseif reduction == 1 then outs.loss = T.full({}, ce_sum + zl_sum, real)
    else outs.loss = T.full({}, ce_sum / D + zl_sum / K, real) end
    outs.lse, outs.z_loss = lse, zl
  elseif desc.shape == "per_row" then
    local r = T.zeros({ n }, real)
    local rp = r:ptr()
    for i = 0, n - 1 do
      if cls[i] then rp[i] = desc.code == 1 and st(S.TZ, i) or st(S.L, i) - st(S.MU, i) end
    end
    outs.result = r
  end
  for k, t in pairs(outs) do if e.device ~= "cpu" then outs[k] = t:to(e.device) end end

  local want_grad = desc.shape == "backward" or o.grad
  if desc.shape == "forward" then
    if o.grad then grad_output = o.grad_output or nil
    elseif o.inplace or o.grad_output then fail(level, "%s: inplace and grad_output need grad = true", op) end
  end
  if want_grad then
    local go = args.grad_output(op, grad_output, e.device, e.name, level)
    local goh = go and go:to({ device = "cpu", dtype = "f64" }) or nil
    if goh and goh:numel() ~= 1 and goh:numel() ~= n then
      fail(level, "%s: grad_output has %d values: it takes 1 or N = %d", op, goh:numel(), n)
    end
    if goh and goh:numel() ~= 1 and desc.code == 0 and reduction ~= 0 then
      fail(level, "%s: grad_output of %d values needs reduction = \"none\"", op, goh:numel())
    end
    local gh = T.zeros({ 2, math.max(n, 1) }, { dtype = "f64" })
    local ghp, gw = gh:ptr(), gh.cols
    local gop, per_row = goh and goh:ptr(), goh and goh:numel() ~= 1
    for i = 0, n - 1 do
      if cls[i] then
        local g = gop and gop[per_row and i or 0] or 1
        local gz = g
        if desc.code == 0 and reduction == 2 then g, gz = g / D, g / K end
        ghp[i], ghp[gw + i] = g, gz
      end
    end
    block(S.G, 2):copy_(gh)
    local grad
    if o.inplace then
      if o.grad_dtype and o.grad_dtype ~= logits.dtype then
        fail(level, "%s: inplace needs grad_dtype = logits dtype (%s), got %s", op, logits.dtype, tostring(o.grad_dtype))
      end
      grad = logits
    else
      local gdt = o.grad_dtype or logits.dtype
      dtypes.get(gdt, "grad_dtype")
      if not e.dtypes[gdt] then fail(level, "%s: backend %s gives no %s gradients", op, e.name, gdt) end
      grad = T.empty({ n, cols }, { dtype = gdt, device = e.device })
    end
    a.grad, a.grad_dtype, a.grad_stride = grad:data(), dtypes.by_name[grad.dtype].code, grad.stride
    invoke(fn, a, PASS.GRAD, op, level)
    outs.grad = grad
  end

  track.record_outputs(outs, op)
  outs.backend = e.name
  return outs
end

return M
