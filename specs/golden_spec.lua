-- Golden values from outside the project: every backend against PyTorch
-- (float64), so that a misreading of the contract that the reference and a
-- fast kernel share (smoothing normalised wrongly, a weight in the wrong
-- place) fails here although every agreement check passes.
--
-- specs/fixtures/golden/ holds the cases (made by scripts/golden_torch.py;
-- manifest.lua lists them). "torch" cases are F.cross_entropy itself, for
-- the options PyTorch has with the contract's meaning; "composed" cases are
-- the options PyTorch lacks (softcap, logit_scale, z-loss, log_probs,
-- entropy, linear cross entropy) written as PyTorch expressions. Those are
-- checked a second time here against a closed form in plain Lua f64 (below),
-- so that the composition itself is not a single point of failure.
--
-- The logits are values bf16 holds exactly and the weights are f32 values,
-- so every dtype of every backend sees exactly the golden inputs: the
-- tolerances below only cover the backend's own arithmetic and rounding.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "specs"
local DIR = here .. "/fixtures/golden/"
local cases = dofile(DIR .. "manifest.lua")

local function load(case, key) return gs.load_npy(DIR .. case.name .. "/" .. key .. ".npy") end
local function has(case, key)
  for _, f in ipairs(case.files) do
    if f == key then return true end
  end
  return false
end

local function max_abs(t)
  local m = t:abs():max():item()
  return m > 0 and m or 1
end

-- Tolerances, per output kind:
--  ref f64:   the same f64 formulas in another order: 1e-12 relative; a
--             gradient entry that cancels ((eps/V)(W p_j - w_j), p_j (mu - z_j))
--             keeps an error of a few f64 ulps of the row's largest entry.
--  ref bf16:  the reference rounds its f64 gradient once, to nearest: within
--             half a bf16 spacing (8 significant bits), 2^-8 relative.
--  fast f32:  f32 accumulation over 37 classes and the f32 transform (scale,
--             tanh): a few units of 2^-24 per term, 1e-5 relative; cancelling
--             entries keep about 1e-6 of the largest entry.
--  fast bf16: the f32 gradient rounded once to nearest (ties away from
--             zero): half a bf16 spacing, 2^-8 relative, plus the f32 error
--             above, which can carry a value across a rounding boundary.
local TOL = {
  ref_f64 = { real = { rtol = 1e-12, atol = 1e-14 }, grad = { rtol = 1e-12, atol_rel = 1e-13 } },
  ref_bf16 = { real = { rtol = 1e-12, atol = 1e-14 }, grad = { rtol = 2 ^ -8 + 1e-9, atol_rel = 1e-13 } },
  fast_f32 = { real = { rtol = 1e-5, atol = 1e-6 }, grad = { rtol = 1e-5, atol_rel = 1e-6 } },
  fast_bf16 = { real = { rtol = 1e-5, atol = 1e-6 }, grad = { rtol = 2 ^ -8 + 1e-5, atol_rel = 1e-6 } },
}

local function close_real(what, actual, expected, tol)
  assert.close(actual:to("cpu"):to("f64"), expected, { rtol = tol.real.rtol, atol = tol.real.atol, msg = what })
end

local function close_grad(what, actual, expected, tol)
  assert.close(actual:to("cpu"):to("f64"), expected,
    { rtol = tol.grad.rtol, atol = tol.grad.atol_rel * max_abs(expected), msg = what })
end

local function with(o, extra)
  local out = {}
  for k, v in pairs(o) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

-- The case's inputs on a device, the logits in dtype.
local function inputs(case, dtype, device)
  local x = has(case, "logits") and load(case, "logits"):to(dtype):to(device) or nil
  local t = has(case, "target") and load(case, "target"):to(device) or nil
  local o = {}
  for k, v in pairs(case.opts) do o[k] = v end
  if has(case, "weight") then o.weight = load(case, "weight"):to("f32"):to(device) end
  local go = has(case, "grad_output") and load(case, "grad_output"):to(device) or case.grad_output
  return x, t, o, go
end

local as_tensor

-- One case, one backend, one logits dtype: every output and gradient,
-- against the golden files or, given expected ({name = Lua value}), those.
local function check(case, backend, dtype, tol, expected)
  local device = backend == "cuda" and "cuda" or "cpu"
  local x, t, o, go = inputs(case, dtype, device)
  o.backend = backend
  local gopts = dtype == "f64" and {} or { grad_dtype = dtype }
  local function want(key) return expected and as_tensor(expected[key]) or load(case, key) end
  local grad = want("grad")
  if case.op == "cross_entropy" then
    local loss, aux = gs.cross_entropy(x, t, with(o, with(gopts, { grad = true, grad_output = go })))
    close_real("loss", loss, want("loss"), tol)
    close_real("lse", aux.lse, want("lse"), tol)
    close_real("z_loss", aux.z_loss, want("z_loss"), tol)
    close_grad("fused gradient", aux.grad, grad, tol)
    close_grad("backward gradient", gs.cross_entropy_backward(x, t, go, with(o, gopts)), grad, tol)
  elseif case.op == "log_probs" then
    close_real("log_probs", gs.log_probs(x, t, o), want("loss"), tol)
    close_grad("log_probs gradient", gs.log_probs_backward(x, t, go, with(o, gopts)), grad, tol)
  else
    close_real("entropy", gs.entropy(x, o), want("loss"), tol)
    close_grad("entropy gradient", gs.entropy_backward(x, go, with(o, gopts)), grad, tol)
  end
end

-- The closed form ----------------------------------------------------------
-- docs/losses.md sections 2 to 8 as plain loops over Lua numbers, written
-- for these moderate inputs (|z| < 40): exp(z_j - m) never under- or
-- overflows, so no care beyond the max shift is needed.

local function row_closed(x, t, o, w)
  local V, s, c = #x, o.logit_scale or 1, o.softcap or 0
  local z, chain = {}, {}
  for j = 1, V do
    local y = s * x[j]
    z[j] = c > 0 and c * math.tanh(y / c) or y
    chain[j] = c > 0 and s / math.cosh(y / c) ^ 2 or s
  end
  local m = -math.huge
  for j = 1, V do m = math.max(m, z[j]) end
  local sum = 0
  for j = 1, V do sum = sum + math.exp(z[j] - m) end
  local lse, p = m + math.log(sum), {}
  for j = 1, V do p[j] = math.exp(z[j] - lse) end
  local r = { z = z, p = p, lse = lse, chain = chain }
  if t then
    local eps, lam = o.label_smoothing or 0, o.lse_square_scale or 0
    local W = 0
    for j = 1, V do W = W + w[j] end
    local smooth = 0
    for j = 1, V do smooth = smooth + w[j] * (lse - z[j]) end
    r.ce = (1 - eps) * w[t + 1] * (lse - z[t + 1]) + eps / V * smooth
    r.zl = lam * lse * lse
    function r.grad(g, gz)
      local d = {}
      for j = 1, V do
        local onehot = j == t + 1 and 1 or 0
        d[j] = (g * (w[t + 1] * (1 - eps) * (p[j] - onehot) + eps / V * (W * p[j] - w[j]))
          + gz * 2 * lam * lse * p[j]) * chain[j]
      end
      return d
    end
  end
  return r
end

-- cross entropy of rows X (Lua lists) under o: loss (number or list), lse,
-- z_loss and the gradient G for grad_output go (number or list).
local function ce_closed(X, T, o, weight, go)
  local ignore, red = o.ignore_index or -100, o.reduction or "mean"
  local w = {}
  for j = 1, #X[1] do w[j] = weight and weight[j] or 1 end
  local rows, D, K, ce, zl = {}, 0, 0, 0, 0
  for i = 1, #X do
    if T[i] ~= ignore then
      rows[i] = row_closed(X[i], T[i], o, w)
      D, K = D + w[T[i] + 1], K + 1
      ce, zl = ce + rows[i].ce, zl + rows[i].zl
    end
  end
  local out = { lse = {}, z_loss = {}, G = {}, loss = {} }
  for i = 1, #X do
    local r = rows[i]
    out.lse[i], out.z_loss[i] = r and r.lse or 0, r and r.zl or 0
    out.loss[i] = r and r.ce + r.zl or 0
    local gi = type(go) == "table" and go[i] or go
    local g, gz = gi, gi
    if red == "mean" then g, gz = gi / D, gi / K end
    if r then out.G[i] = r.grad(g, gz)
    else
      out.G[i] = {}
      for j = 1, #X[i] do out.G[i][j] = 0 end
    end
  end
  if red == "sum" then out.loss = ce + zl elseif red == "mean" then out.loss = ce / D + zl / K end
  return out
end

local function tolist(t) return t and t:totable() or nil end

function as_tensor(v) return gs.tensor(v, { dtype = "f64" }) end

-- x = h W^T + b, and after the cross entropy dh = G W, dW = G^T h, db = sum_i G_i.
local function linear_closed(case)
  local h, W = load(case, "h"):totable(), load(case, "W"):totable()
  local b = has(case, "bias") and load(case, "bias"):totable() or nil
  local X = {}
  for i = 1, #h do
    X[i] = {}
    for j = 1, #W do
      local s = b and b[j] or 0
      for k = 1, #h[1] do s = s + h[i][k] * W[j][k] end
      X[i][j] = s
    end
  end
  local go = has(case, "grad_output") and tolist(load(case, "grad_output")) or case.grad_output
  local out = ce_closed(X, tolist(load(case, "target")), case.opts,
    has(case, "weight") and tolist(load(case, "weight")) or nil, go)
  local G = out.G
  local dh, dW, db = {}, {}, {}
  for i = 1, #h do
    dh[i] = {}
    for k = 1, #h[1] do
      local s = 0
      for j = 1, #W do s = s + G[i][j] * W[j][k] end
      dh[i][k] = s
    end
  end
  for j = 1, #W do
    dW[j], db[j] = {}, 0
    for i = 1, #h do db[j] = db[j] + G[i][j] end
    for k = 1, #h[1] do
      local s = 0
      for i = 1, #h do s = s + G[i][j] * h[i][k] end
      dW[j][k] = s
    end
  end
  return { loss = out.loss, dh = dh, dW = dW, db = b and db or nil }
end

-- The closed form of a composed case's outputs: {name = Lua value}.
local function closed_form(case)
  if case.op == "linear_cross_entropy" then return linear_closed(case) end
  local X = load(case, "logits"):totable()
  local go = has(case, "grad_output") and tolist(load(case, "grad_output")) or case.grad_output
  if case.op == "cross_entropy" then
    local out = ce_closed(X, tolist(load(case, "target")), case.opts,
      has(case, "weight") and tolist(load(case, "weight")) or nil, go)
    return { loss = out.loss, lse = out.lse, z_loss = out.z_loss, grad = out.G }
  end
  local T = has(case, "target") and tolist(load(case, "target")) or nil
  local ignore = case.opts.ignore_index or -100
  local loss, G = {}, {}
  for i = 1, #X do
    local gi = type(go) == "table" and go[i] or go
    G[i] = {}
    if case.op == "log_probs" and T[i] == ignore then
      loss[i] = 0
      for j = 1, #X[i] do G[i][j] = 0 end
    else
      local r = row_closed(X[i], nil, case.opts)
      if case.op == "log_probs" then
        loss[i] = r.z[T[i] + 1] - r.lse
        for j = 1, #X[i] do G[i][j] = gi * ((j == T[i] + 1 and 1 or 0) - r.p[j]) * r.chain[j] end
      else
        local H, mu = 0, 0
        for j = 1, #X[i] do
          H = H + r.p[j] * (r.lse - r.z[j])
          mu = mu + r.p[j] * r.z[j]
        end
        loss[i] = H
        for j = 1, #X[i] do G[i][j] = gi * r.p[j] * (mu - r.z[j]) * r.chain[j] end
      end
    end
  end
  return { loss = loss, grad = G }
end

-- The specs -----------------------------------------------------------------

local function check_linear(case, backend, dtype, tol, expected)
  local device = backend == "cuda" and "cuda" or "cpu"
  local o = with(case.opts, { backend = backend, grad = true })
  if has(case, "weight") then o.weight = load(case, "weight"):to("f32"):to(device) end
  if has(case, "bias") then o.bias = load(case, "bias"):to(dtype):to(device) end
  o.grad_output = has(case, "grad_output") and load(case, "grad_output"):to(device) or case.grad_output
  local h, W = load(case, "h"):to(dtype):to(device), load(case, "W"):to(dtype):to(device)
  local loss, aux = gs.linear_cross_entropy(h, W, load(case, "target"):to(device), o)
  local want = expected or {}
  local function get(key) return want[key] and as_tensor(want[key]) or load(case, key) end
  close_real("loss", loss, get("loss"), tol)
  close_grad("dh", aux.dh, get("dh"), tol)
  close_grad("dW", aux.dW, get("dW"), tol)
  if has(case, "bias") then close_grad("db", aux.db, get("db"), tol) end
  local go = o.grad_output
  o.grad, o.grad_output = nil, nil
  local dh, dW, db = gs.linear_cross_entropy_backward(h, W, load(case, "target"):to(device), go, o)
  close_grad("backward dh", dh, get("dh"), tol)
  close_grad("backward dW", dW, get("dW"), tol)
  if has(case, "bias") then close_grad("backward db", db, get("db"), tol) end
end

-- Backends and the logits dtypes each is checked with.
local RUNS = {
  { backend = "ref", dtype = "f64", tol = TOL.ref_f64 },
  { backend = "ref", dtype = "bf16", tol = TOL.ref_bf16 },
  { backend = "cpu", dtype = "f32", tol = TOL.fast_f32 },
  { backend = "cpu", dtype = "bf16", tol = TOL.fast_bf16 },
  { backend = "cuda", dtype = "f32", tol = TOL.fast_f32, tags = { "cuda" } },
  { backend = "cuda", dtype = "bf16", tol = TOL.fast_bf16, tags = { "cuda" } },
}

-- Linear cross entropy: ref in f64, the fused CPU kernel in f32 (OpenBLAS),
-- CUDA in f32 and bf16 (cuBLAS, f32 accumulation) where there is a GPU.
local LINEAR_RUNS = {
  { backend = "ref", dtype = "f64", tol = TOL.ref_f64 },
  { backend = "cpu", dtype = "f32", tol = TOL.fast_f32 },
  { backend = "cuda", dtype = "f32", tol = TOL.fast_f32, tags = { "cuda" } },
}

describe("golden fixtures", function()
  it("cover every option of the contract and the combinations PyTorch defines", function()
    local seen, combos = {}, {}
    for _, case in ipairs(cases) do
      seen[case.op] = true
      for k in pairs(case.opts) do seen[k] = true end
      if has(case, "weight") then seen.weight = true end
      if has(case, "grad_output") then seen.grad_output_rows = true end
      combos[(has(case, "weight") and "w" or "") .. ((case.opts.label_smoothing or 0) > 0 and "s" or "")
        .. (case.opts.reduction or "")] = true
    end
    for _, k in ipairs({ "cross_entropy", "log_probs", "entropy", "linear_cross_entropy", "reduction", "ignore_index",
      "label_smoothing", "logit_scale", "softcap", "lse_square_scale", "weight", "grad_output_rows" }) do
      assert.is_true(seen[k], "a golden case with " .. k)
    end
    for _, k in ipairs({ "wsmean", "wssum", "wsnone", "smean", "snone", "wmean", "wsum", "wnone" }) do
      assert.is_true(combos[k], "a golden case with weight/smoothing/reduction combination " .. k)
    end
  end)

  it("composed cases agree with a closed form written in Lua", function()
    local n = 0
    for _, case in ipairs(cases) do
      if case.source == "composed" then
        local want = closed_form(case)
        for key, v in pairs(want) do
          local expected = load(case, key)
          assert.close(as_tensor(v), expected, { rtol = 1e-10, atol = 1e-12 * max_abs(expected), msg = case.name .. " " .. key })
        end
        n = n + 1
      end
    end
    assert.is_true(n >= 10, "composed cases checked: " .. n)
  end)
end)

for _, run in ipairs(RUNS) do
  describe(string.format("golden values: %s, %s logits", run.backend, run.dtype), { tags = run.tags }, function()
    for _, case in ipairs(cases) do
      if case.op ~= "linear_cross_entropy" then
        it(case.name .. " (" .. case.source .. ")", function() check(case, run.backend, run.dtype, run.tol) end)
        if case.source == "composed" then
          it(case.name .. " against the closed form", function()
            check(case, run.backend, run.dtype, run.tol, closed_form(case))
          end)
        end
      end
    end
  end)
end

for _, run in ipairs(LINEAR_RUNS) do
  describe(string.format("golden values: linear cross entropy, %s, %s", run.backend, run.dtype), { tags = run.tags },
    function()
      for _, case in ipairs(cases) do
        if case.op == "linear_cross_entropy" then
          it(case.name .. " against PyTorch", function() check_linear(case, run.backend, run.dtype, run.tol) end)
          it(case.name .. " against the closed form", function()
            check_linear(case, run.backend, run.dtype, run.tol, closed_form(case))
          end)
        end
      end
    end)
end
