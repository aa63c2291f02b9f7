-- Black-box mutants: documented perturbations of a backend's outputs (or
-- inputs) that imitate real bug classes, for any backend, with no change to
-- its code. `gradspec mutate --backend NAME` runs the suite once per
-- perturbation; GRADSPEC_PERTURB=name@backend switches one on by hand.
local T = require("gradspec.tensor")
local gffi = require("gradspec.ffi")
local ffi, C = gffi.ffi, gffi.C

local M = {}

local ce_grad_ops = { cross_entropy = true, cross_entropy_backward = true }
local grad_ops = { cross_entropy = true, cross_entropy_backward = true, log_probs_backward = true,
  entropy_backward = true }
local value_ops = { cross_entropy = true, log_probs = true, entropy = true }

-- Applies fn to a host copy of t ({rows, cols, get, set} in f64) and writes
-- the result back where t lives.
local function edit(t, fn)
  local h = t.device == "cpu" and t or t:to("cpu")
  fn(h)
  if h ~= t then t:copy_(h) end
end

local function rows_of(t) return t:dim() == 2 and t.rows or 1 end

-- g_i, the factor each row's gradient carries: grad_output (1 value or N),
-- divided by D under mean.
local function row_factor(i, ctx)
  local go = ctx.grad_output
  local g = 1
  if type(go) == "number" then g = go
  elseif go then g = go:to("cpu"):get(go:numel() > 1 and i or 0) end
  if ctx.reduction == "mean" then g = g / ctx.d end
  return g
end

-- The rows that are not ignored, and D (the sum of their targets' weights).
local function context(logits, target, grad_output, opts)
  local ctx = { grad_output = grad_output, reduction = opts.reduction or "mean", n = logits.rows, v = logits.cols,
    rows = {}, d = 0, ignored = {} }
  if not target then return ctx end
  local t = target:to("cpu")
  local w = opts.weight and opts.weight:to("cpu") or nil
  local ignore = opts.ignore_index or -100
  for i = 0, t:numel() - 1 do
    local ti = t:get(i)
    if ti == ignore then ctx.ignored[#ctx.ignored + 1] = i
    else
      ctx.rows[#ctx.rows + 1] = { i = i, t = ti }
      ctx.d = ctx.d + (w and w:get(ti) or 1)
    end
  end
  return ctx
end

-- Writes x one element past the end of row 0 of t: into the gap before the
-- next row, or the next row's first element when rows are packed.
local function poke_past_row(t)
  if t:dim() ~= 2 or t.rows == 0 then return end
  if t.stride == t.cols and t.rows < 2 then return end -- past the buffer: nothing safe to touch
  local size = t._dt.size
  local at = ffi.cast("uint8_t *", t:data()) + t.cols * size
  local one = T.full({ 1 }, 7.5, { dtype = t.dtype })
  if t.device == "cpu" then ffi.copy(at, one:data(), size)
  else
    local e = ffi.new("gs_error")
    C.gs_cuda_memcpy(at, one:data(), size, 0, e)
  end
end

M.list = {
  { name = "grad_sign", what = "gradient sign flipped", ops = grad_ops,
    outputs = function(o) edit(o.grad, function(g) g:copy_(g:neg()) end) end },
  { name = "grad_row_zero", what = "gradient of row 0 zeroed", ops = grad_ops,
    outputs = function(o)
      edit(o.grad, function(g) for j = 0, g.cols - 1 do if g.rows > 0 then g:set(0, j, 0) end end end)
    end },
  { name = "grad_row_scale", what = "gradient of the last row scaled by 1.5", ops = grad_ops,
    outputs = function(o)
      edit(o.grad, function(g)
        local r = g.rows - 1
        if r >= 0 then for j = 0, g.cols - 1 do g:set(r, j, 1.5 * g:get(r, j)) end end
      end)
    end },
  { name = "grad_output_ignored", what = "per-row grad_output ignored (taken as 1)", ops = grad_ops,
    inputs = function(logits, target, grad_output, opts)
      if grad_output == nil or type(grad_output) == "number" or grad_output:numel() < 2 then return grad_output, opts end
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.grad_output = nil
      return nil, o
    end },
  { name = "target_not_subtracted", what = "target column of the gradient not subtracted", ops = ce_grad_ops,
    outputs = function(o, ctx, opts)
      local eps, s = opts.label_smoothing or 0, opts.logit_scale or 1
      local w = opts.weight and opts.weight:to("cpu") or nil
      edit(o.grad, function(g)
        for _, r in ipairs(ctx.rows) do
          local wt = w and w:get(r.t) or 1
          g:set(r.i, r.t, g:get(r.i, r.t) + row_factor(r.i, ctx) * wt * (1 - eps) * s)
        end
      end)
    end },
  { name = "mean_over_n", what = "mean divides by N, not by the non-ignored count (loss and gradient)",
    ops = ce_grad_ops,
    outputs = function(o, ctx)
      if ctx.reduction ~= "mean" or ctx.n == 0 then return end
      local f = ctx.d / ctx.n
      edit(o.loss or o.grad, function(x) x:copy_(x:mul(f)) end)
      if o.loss and o.grad then edit(o.grad, function(x) x:copy_(x:mul(f)) end) end
    end },
  { name = "loss_shift", what = "loss shifted by a relative 1e-5", ops = value_ops,
    outputs = function(o)
      edit(o.loss or o.result, function(x) x:copy_(x:add(x:abs():mul(1e-5)):add(1e-6)) end)
    end },
  { name = "lse_shift", what = "lse shifted by 1e-3", ops = { cross_entropy = true },
    outputs = function(o) if o.lse then edit(o.lse, function(x) x:copy_(x:add(1e-3)) end) end end },
  { name = "nan_one", what = "one element set to NaN (the gradient's last, else the value's first)",
    ops = { cross_entropy = true, cross_entropy_backward = true, log_probs = true, log_probs_backward = true,
      entropy = true, entropy_backward = true },
    outputs = function(o)
      local t = o.grad or o.loss or o.result
      edit(t, function(x)
        if x:numel() == 0 then return end
        if x:dim() == 2 then x:set(x.rows - 1, x.cols - 1, 0 / 0)
        elseif x:dim() == 1 then x:set(0, 0 / 0)
        else x:set(0 / 0) end
      end)
    end },
  { name = "ignored_rows_grad", what = "ignored rows get a non-zero gradient", ops = ce_grad_ops,
    outputs = function(o, ctx)
      edit(o.grad, function(g) for _, i in ipairs(ctx.ignored) do g:set(i, 0, 1e-3) end end)
    end },
  { name = "log_probs_plus", what = "log_probs returns +CE where -CE is declared", ops = { log_probs = true },
    outputs = function(o) edit(o.result, function(x) x:copy_(x:neg()) end) end },
  { name = "past_row_end", what = "writes one element past the end of the gradient's first row",
    ops = grad_ops, outputs = function(o) poke_past_row(o.grad) end },
}
M.by_name = {}
for _, p in ipairs(M.list) do M.by_name[p.name] = p end

local selected, target_backend
do
  local spec = os.getenv("GRADSPEC_PERTURB")
  if spec and spec ~= "" then
    local name, b = spec:match("^([%w_]+)@([%w_]+)$")
    if not name or not M.by_name[name] then
      error("GRADSPEC_PERTURB: '" .. spec .. "' is not NAME@BACKEND with a known NAME (gradspec mutate --list-perturbations)", 0)
    end
    selected, target_backend = M.by_name[name], b
  end
end

-- Records that the perturbation was applied, for mutate's "not reached".
local function mark_reached()
  local log = os.getenv("GRADSPEC_PERTURB_LOG")
  if not log then return end
  local f = io.open(log, "a")
  if f then f:write("reached\n") f:close() end
end

-- The perturbation live for this call, or nil: {inputs(...), outputs(...)}.
function M.active(backend_name, op)
  if not selected or backend_name ~= target_backend or not selected.ops[op] then return nil end
  local p = selected
  local ctx
  return {
    inputs = function(logits, target, grad_output, opts)
      ctx = context(logits, target, grad_output, opts)
      if p.inputs then
        local g2, o2 = p.inputs(logits, target, grad_output, opts)
        if g2 ~= grad_output or o2 ~= opts then mark_reached() end
        return g2, o2
      end
      return grad_output, opts
    end,
    outputs = function(outs, logits, target, grad_output, opts)
      if p.outputs then
        p.outputs(outs, ctx, opts)
        mark_reached()
      end
    end,
  }
end

return M
