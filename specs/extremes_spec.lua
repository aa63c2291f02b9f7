-- Extreme and boundary inputs of the cross-entropy family against an oracle
-- written here, in plain Lua f64 from docs/losses.md, independently of the
-- project's reference (kernels/cpu/cross_entropy_ref.c): a misreading of the
-- contract shared by the reference and a fast kernel passes every
-- agreement check, but not this one. Each case runs on ref and cpu, and the
-- same table on cuda (tag cuda) where there is a GPU.
--
-- The classes: confident rows (a logit margin of 40 and more, 1 - p_t far
-- below f32's epsilon), where the target's loss and gradient keep their
-- digits only when taken from the other classes' terms; the last class
-- (target V - 1), in a row's vector tail and past the fast kernel's chunks;
-- targets just outside the classes (V, ignore_index - 1); ignore_index on a
-- valid class; class weights with z-loss, weights with label smoothing,
-- softcap with logit_scale; logits beyond 2^53 and near FLT_MAX, whose
-- results are finite where the contract says so.
local ffi = require("ffi")

local FLT_MAX = 3.4028234663852886e38
local CHUNK = gs.cpu_chunk

local function i64(values) return gs.tensor(values, { dtype = "i64" }) end

-- f64 -> f32 rounding (beyond FLT_MAX: inf), for expected values of f32 outputs.
local function f32(x) return tonumber(ffi.new("float", x)) end

-- The oracle ---------------------------------------------------------------

-- log(1 + r) for r >= 0 that keeps a tiny r: the rounding of u = 1 + r is
-- undone by the factor r / (u - 1) (Goldberg's correction).
local function log1p(r)
  local u = 1 + r
  if u == 1 then return r end
  return math.log(u) * r / (u - 1)
end

-- One row by docs/losses.md (sections 2, 5, 6, 7), relative to its max m:
-- rest = sum of exp(z_j - m) over the classes other than the max, so that
-- lse - z_j = (m - z_j) + log1p(rest) and p_t - 1 = -(sum_{j != t} p_j):
-- every term is a sum of non-negative values, nothing cancels. x: the row
-- (a Lua list); t: the 0-based target, or nil; o: the options with weight
-- as a Lua list.
local function row_oracle(x, t, o)
  local V = #x
  local s, c = o.logit_scale or 1, o.softcap or 0
  local y, z = {}, {}
  for j = 1, V do
    y[j] = s * x[j]
    z[j] = c > 0 and c * math.tanh(y[j] / c) or y[j]
  end
  local k = 1
  for j = 2, V do
    if z[j] > z[k] then k = j end
  end
  local m, rest = z[k], 0
  for j = 1, V do
    if j ~= k then rest = rest + math.exp(z[j] - m) end
  end
  local log_s = log1p(rest)
  local r = { V = V, y = y, z = z, m = m, log_s = log_s, lse = m + log_s, p = {} }
  for j = 1, V do r.p[j] = math.exp(z[j] - m) / (1 + rest) end
  -- dx/dz_j: s, times sech^2(y_j / c) under softcap
  r.chain = {}
  for j = 1, V do
    if c > 0 then
      local ch = math.cosh(y[j] / c)
      r.chain[j] = s / (ch * ch)
    else
      r.chain[j] = s
    end
  end
  if t then
    local tt = t + 1
    r.tt = tt
    r.others = 0 -- 1 - p_t
    for j = 1, V do
      if j ~= tt then r.others = r.others + r.p[j] end
    end
    local w = o.weight
    local function wj(j) return w and w[j] or 1 end
    local W = 0
    for j = 1, V do W = W + wj(j) end
    local eps, lam = o.label_smoothing or 0, o.lse_square_scale or 0
    local ce = (1 - eps) * wj(tt) * ((m - z[tt]) + log_s)
    if eps > 0 then
      local smooth = 0
      for j = 1, V do smooth = smooth + wj(j) * ((m - z[j]) + log_s) end
      ce = ce + eps / V * smooth
    end
    r.ce, r.zl = ce, lam * r.lse * r.lse
    -- the gradient for the CE part's factor g and the z-loss part's gz
    function r.ce_grad(g, gz)
      local out = {}
      for j = 1, V do
        local p_minus_onehot = j == tt and -r.others or r.p[j]
        local dz = g * (wj(tt) * (1 - eps) * p_minus_onehot + eps / V * (W * r.p[j] - wj(j)))
        if lam > 0 then dz = dz + gz * 2 * lam * r.lse * r.p[j] end
        out[j] = dz * r.chain[j]
      end
      return out
    end
  end
  return r
end

local function zeros(n)
  local out = {}
  for j = 1, n do out[j] = 0 end
  return out
end

-- The expected outputs of cross_entropy (loss under the reduction, lse,
-- z_loss) and its gradient for a grad_output (a number, or a list per row).
local function ce_oracle(X, T, o)
  local ignore = o.ignore_index or -100
  local reduction = o.reduction or "mean"
  local rows, D, K = {}, 0, 0
  for i = 1, #X do
    if T[i] ~= ignore then
      rows[i] = row_oracle(X[i], T[i], o)
      D = D + (o.weight and o.weight[T[i] + 1] or 1)
      K = K + 1
    end
  end
  local per_row, lse, zl, ce_sum, zl_sum = {}, {}, {}, 0, 0
  for i = 1, #X do
    local r = rows[i]
    per_row[i], lse[i], zl[i] = r and r.ce + r.zl or 0, r and r.lse or 0, r and r.zl or 0
    if r then ce_sum, zl_sum = ce_sum + r.ce, zl_sum + r.zl end
  end
  local loss
  if reduction == "none" then loss = per_row
  elseif reduction == "sum" then loss = ce_sum + zl_sum
  else loss = ce_sum / D + zl_sum / K end
  local function grad(go)
    local G = {}
    for i = 1, #X do
      local gi = type(go) == "table" and go[i] or go
      local g, gz = gi, gi
      if reduction == "mean" then g, gz = gi / D, gi / K end
      G[i] = rows[i] and rows[i].ce_grad(g, gz) or zeros(#X[i])
    end
    return G
  end
  return { loss = loss, lse = lse, z_loss = zl, grad = grad }
end

-- log_probs = z_t - lse and entropy = sum_j p_j (lse - z_j), with their
-- gradients g ([j == t] - p_j) and g p_j (mu - z_j), mu = sum_k p_k z_k
-- (taken relative to m).
local function log_probs_oracle(X, T, o, go)
  local ignore = o.ignore_index or -100
  local lp, G = {}, {}
  for i = 1, #X do
    if T[i] == ignore then
      lp[i], G[i] = 0, zeros(#X[i])
    else
      local r = row_oracle(X[i], T[i], o)
      lp[i] = -((r.m - r.z[r.tt]) + r.log_s)
      G[i] = {}
      for j = 1, r.V do
        local d = j == r.tt and r.others or -r.p[j]
        G[i][j] = go[i] * d * r.chain[j]
      end
    end
  end
  return lp, G
end

local function entropy_oracle(X, o, go)
  local H, G = {}, {}
  for i = 1, #X do
    local r = row_oracle(X[i], nil, o)
    local h, mu_m = 0, 0 -- mu_m = mu - m
    for j = 1, r.V do
      if r.p[j] > 0 then
        h = h + r.p[j] * ((r.m - r.z[j]) + r.log_s)
        mu_m = mu_m + r.p[j] * (r.z[j] - r.m)
      end
    end
    H[i], G[i] = h, {}
    for j = 1, r.V do
      G[i][j] = r.p[j] > 0 and go[i] * r.p[j] * (mu_m - (r.z[j] - r.m)) * r.chain[j] or 0
    end
  end
  return H, G
end

-- Comparing outputs -------------------------------------------------------

-- expected (a number or nested Lua lists) as an f64 tensor; for an f32
-- output, rounded to f32 first (so that beyond FLT_MAX it is inf).
local function expect(actual, expected)
  local function round(v)
    if type(v) == "table" then
      local out = {}
      for k, x in ipairs(v) do out[k] = round(x) end
      return out
    end
    return actual.dtype == "f32" and f32(v) or v
  end
  local e = round(expected)
  if type(e) == "number" then return e end
  return gs.tensor(e, { dtype = "f64" })
end

local function close(what, actual, expected, tol)
  assert.close(actual, expect(actual, expected), { rtol = tol.rtol, atol = tol.atol or 0, msg = what })
end

-- Tolerances: the reference computes in f64 (its f32 gradient is the f64
-- value rounded once); the fast kernels accumulate in f32. The relative
-- tolerance holds even for a confident row's loss of 1e-18: atol is 0
-- unless a case says otherwise.
local TOL = {
  ref = { real = { rtol = 1e-11 }, grad = { rtol = 2.5e-7 } },
  fast = { real = { rtol = 2e-6 }, grad = { rtol = 1e-5 } },
}

local function tolerances(backend, case)
  local t = backend == "ref" and TOL.ref or TOL.fast
  local own = case.tol and case.tol[backend == "ref" and "ref" or "fast"] or {}
  return own.real or t.real, own.grad or t.grad
end

local function device_of(backend) return backend == "cuda" and "cuda" or "cpu" end

-- The case's inputs as the kernels see them (rounded to the logits dtype
-- and, for the weights, to f32), and as Lua lists for the oracle.
local function inputs(case, backend)
  local x = gs.tensor(case.x, { dtype = case.dtype or "f32" })
  local X = x:to("f64"):totable()
  local o, lua_o = {}, {}
  for k, v in pairs(case.opts or {}) do o[k], lua_o[k] = v, v end
  if case.weight then
    local w = gs.tensor(case.weight, { dtype = "f32" })
    lua_o.weight = w:to("f64"):totable()
    o.weight = w:to(device_of(backend))
  end
  o.backend = backend
  return x:to(device_of(backend)), i64(case.t):to(device_of(backend)), o, X, lua_o
end

local function with(o, extra)
  local out = {}
  for k, v in pairs(o) do out[k] = v end
  for k, v in pairs(extra) do out[k] = v end
  return out
end

-- Every output of cross_entropy (fused forward with the gradient) and of
-- cross_entropy_backward, against the oracle, on one backend.
local function check_case(case, backend)
  local x, t, o, X, lua_o = inputs(case, backend)
  local real_tol, grad_tol = tolerances(backend, case)
  local want = ce_oracle(X, case.t, lua_o)
  local go = case.grad_output or 1
  local go_arg = type(go) == "table" and gs.tensor(go):to(device_of(backend)) or go
  local gopts = case.grad_dtype and { grad_dtype = case.grad_dtype } or {}
  local loss, aux = gs.cross_entropy(x, t, with(o, with(gopts, { grad = true, grad_output = go_arg })))
  close("loss", loss, want.loss, real_tol)
  close("lse", aux.lse, want.lse, real_tol)
  close("z_loss", aux.z_loss, want.z_loss, real_tol)
  close("fused gradient", aux.grad, want.grad(go), grad_tol)
  local grad = gs.cross_entropy_backward(x, t, go_arg, with(o, gopts))
  close("backward gradient", grad, want.grad(go), grad_tol)
  if case.family then
    -- log_probs and entropy of the same rows (no weight, smoothing, z-loss)
    local fo = { backend = backend, logit_scale = lua_o.logit_scale, softcap = lua_o.softcap }
    local lpo = with(fo, { ignore_index = lua_o.ignore_index })
    local g = {}
    for i = 1, #X do g[i] = (i % 3) - 0.5 end
    local gd = gs.tensor(g):to(device_of(backend))
    local lp, lpg = log_probs_oracle(X, case.t, lua_o, g)
    close("log_probs", gs.log_probs(x, t, lpo), lp, real_tol)
    close("log_probs gradient", gs.log_probs_backward(x, t, gd, with(lpo, gopts)), lpg, grad_tol)
    local h, hg = entropy_oracle(X, lua_o, g)
    close("entropy", gs.entropy(x, fo), h, real_tol)
    close("entropy gradient", gs.entropy_backward(x, gd, with(fo, gopts)), hg, grad_tol)
  end
end

-- The cases --------------------------------------------------------------

-- Deterministic filler values in [-a, a].
local function filler(n, a, seed)
  local u = gs.rand({ n }, { seed = seed, low = -a, high = a, dtype = "f64" }):totable()
  return u
end

-- A row of V values in [-1, 1] whose target t (0-based) sits margin above them.
local function confident_row(V, t, margin, seed)
  local r = filler(V, 1, seed)
  r[t + 1] = 1 + margin
  return r
end

local function random_rows(n, V, std, seed)
  local x = gs.randn({ n, V }, { seed = seed, std = std, dtype = "f64" })
  return x:totable()
end

local function confident_rows()
  return {
    confident_row(9, 0, 40, 1),
    confident_row(9, 4, 40, 2),
    confident_row(9, 8, 45, 3),   -- the last class, in the vector tail
    confident_row(9, 8, 80, 4),   -- 1 - p_t = 8e-35: still an f32 normal number
    { 0, 0, 0, 40, 0, 0, 0, 0, 0 }, -- loss = log1p(8 e^-40)
    { -50, -50, -50, -50, -50, -10, -50, -50, -50 },
  }
end

local wide = 2 * CHUNK + 37
local function wide_confident()
  return {
    confident_row(wide, wide - 1, 45, 5),   -- V - 1: the last, partial chunk
    confident_row(wide, CHUNK + 5, 40, 6),  -- in the second chunk
    confident_row(wide, 0, 60, 7),
  }
end

-- zeros with 27 at column c (0-based); the weights: 1e-30 for class 8, 1 for class 4
local function tiny_weight_row(V, c)
  local r = zeros(V)
  r[c + 1] = 27
  return r
end

local function tiny_weights(V)
  local w = {}
  for j = 1, V do w[j] = j == 9 and 1e-30 or (j == 5 and 1 or 0.5) end
  return w
end

local V13 = 13
local T13 = { 0, 12, -100, 5, 12, 7 }           -- V - 1 twice, an ignored row
local W13 = { 0.5, 2, 1, 0.25, 3, 1, 1.5, 0.75, 2.5, 1, 0.1, 4, 1.25 }

local cases = {
  -- confident rows
  { name = "confident rows, margin 40 to 80, per-row grad_output", x = confident_rows(), t = { 0, 4, 8, 8, 3, 5 },
    opts = { reduction = "none" }, grad_output = { 1, -2, 0.5, 3, 1, 0.25 }, family = true },
  { name = "confident rows, sum", x = confident_rows(), t = { 0, 4, 8, 8, 3, 5 }, opts = { reduction = "sum" } },
  { name = "confident rows wider than two chunks, target V - 1 and in a later chunk", x = wide_confident(),
    t = { wide - 1, CHUNK + 5, 0 }, opts = { reduction = "sum" }, family = true },
  { name = "confident rows, bf16 logits, f32 gradient", x = confident_rows(), t = { 0, 4, 8, 8, 3, 5 },
    opts = { reduction = "none" }, dtype = "bf16", grad_dtype = "f32", grad_output = { 1, 1, 1, 1, 1, 1 } },
  { name = "confident rows, f16 logits, f32 gradient", x = confident_rows(), t = { 0, 4, 8, 8, 3, 5 },
    opts = { reduction = "sum" }, dtype = "f16", grad_dtype = "f32" },
  -- the f32 transform rounds z (|z| up to 90) by 5e-6: the margin, and so
  -- the loss e^-margin, carry that relative error
  { name = "confident rows under softcap and logit_scale", x = confident_rows(), t = { 0, 4, 8, 8, 3, 5 },
    opts = { reduction = "sum", softcap = 200, logit_scale = 1.5 }, family = true,
    tol = { fast = { real = { rtol = 2e-5 }, grad = { rtol = 2e-5 } } } },
  -- a tiny target weight and a row whose first logit lies 27 below its
  -- max: the gradient g w_t p_j is a normal f32 number (1e-30) although
  -- w_t e^-27 is not (the case a property run found at seed 999)
  { name = "a target weight of 1e-30, a confident non-target column", x = { tiny_weight_row(23, 5), tiny_weight_row(23, 5) },
    t = { 8, 4 }, weight = tiny_weights(23), opts = { reduction = "sum" } },
  { name = "a target weight of 1e-30, a confident non-target column in a later chunk",
    x = { tiny_weight_row(CHUNK + 9, CHUNK + 3) }, t = { 8 }, weight = tiny_weights(CHUNK + 9), opts = { reduction = "sum" } },

  -- option combinations
  { name = "class weights + z-loss, mean", x = random_rows(6, V13, 3, 11), t = T13, weight = W13,
    opts = { lse_square_scale = 0.05 }, grad_output = 1.5 },
  { name = "class weights + z-loss, none with per-row grad_output", x = random_rows(6, V13, 3, 12), t = T13,
    weight = W13, opts = { reduction = "none", lse_square_scale = 0.3 }, grad_output = { 1, -1, 2, 0.5, 0, 3 } },
  { name = "class weights + label smoothing, mean", x = random_rows(6, V13, 3, 13), t = T13, weight = W13,
    opts = { label_smoothing = 0.3 }, tol = { fast = { grad = { rtol = 1e-5, atol = 1e-7 } } } },
  { name = "class weights + label smoothing, sum", x = random_rows(6, V13, 3, 14), t = T13, weight = W13,
    opts = { label_smoothing = 1, reduction = "sum" }, tol = { fast = { grad = { rtol = 1e-5, atol = 1e-6 } } } },
  { name = "class weights + label smoothing, rows wider than a chunk", x = random_rows(2, CHUNK + 100, 2, 15),
    t = { CHUNK + 99, 3 }, weight = filler(CHUNK + 100, 1, 16), opts = { label_smoothing = 0.2 },
    tol = { fast = { real = { rtol = 1e-5 }, grad = { rtol = 1e-5, atol = 1e-9 } } } },
  -- entropy's p_j (mu - z_j) cancels where z_j is near mu
  { name = "softcap + logit_scale, mean", x = random_rows(6, V13, 4, 17), t = T13,
    opts = { softcap = 4, logit_scale = 2.5 }, family = true, tol = { fast = { grad = { rtol = 1e-5, atol = 1e-8 } } } },
  { name = "softcap + negative logit_scale, none", x = random_rows(6, V13, 4, 18), t = T13,
    opts = { softcap = 10, logit_scale = -0.7, reduction = "none" }, grad_output = { 1, 2, 3, -1, -2, 0.5 }, family = true },
  { name = "softcap + logit_scale, logits far into the cap, rows wider than a chunk", x = random_rows(2, CHUNK + 100, 30, 19),
    t = { 0, CHUNK + 99 }, opts = { softcap = 5, logit_scale = 1.25 }, family = true,
    tol = { fast = { real = { rtol = 1e-5 }, grad = { rtol = 1e-5, atol = 1e-10 } } } },
  { name = "everything: weights, smoothing, z-loss, softcap, scale, ignore_index on a valid class", x = random_rows(6, V13, 3, 20),
    t = { 2, 12, 2, 5, 0, 7 }, weight = W13,
    opts = { label_smoothing = 0.1, lse_square_scale = 0.01, softcap = 6, logit_scale = 0.8, ignore_index = 2 },
    tol = { fast = { grad = { rtol = 1e-5, atol = 1e-8 } } } },
  { name = "ignore_index on a valid class: those rows are ignored, the mean divides by the others", x = random_rows(5, 6, 2, 21),
    t = { 3, 0, 3, 5, 1 }, opts = { ignore_index = 3 }, grad_output = 2 },
  { name = "ignore_index 0: target 0 is ignored", x = random_rows(3, 6, 2, 22), t = { 0, 5, 1 },
    opts = { ignore_index = 0, reduction = "none" }, grad_output = { 1, 1, 1 } },
  { name = "ignore_index V: target V is ignored, not an error, and V - 1 is a class", x = random_rows(3, 6, 2, 23),
    t = { 6, 5, 0 }, opts = { ignore_index = 6, reduction = "sum" }, family = true },

  -- large logits
  { name = "logits of 1e20: the softmax of equal maxima still splits", x = { { 1e20, 1e20, 0 }, { 1e20, 1e20, 0 }, { 1e20, 1e20, 1e20 } },
    t = { 2, 0, 1 }, opts = { reduction = "none" }, grad_output = { 1, 1, 1 }, family = true },
  -- (eps/V)(W p_j - w_j) is 0 for a uniform row, up to the rounding of p_j
  { name = "logits of 1e20 with label smoothing 1: the loss is log V", x = { { 1e20, 1e20, 1e20 }, { 1e20, 1e20, 0 } },
    t = { 0, 1 }, opts = { reduction = "none", label_smoothing = 1 }, grad_output = { 1, 1 },
    tol = { ref = { grad = { rtol = 2.5e-7, atol = 1e-15 } }, fast = { grad = { rtol = 1e-5, atol = 1e-7 } } } },
  { name = "a logit of 3.4e38 with label smoothing 1 gives 7/8 * 3.4e38, not inf",
    x = { { 0, 0, 0, 0, 0, 0, 0, FLT_MAX } }, t = { 0 }, opts = { reduction = "none", label_smoothing = 1 } },
  { name = "{3.4e38, -3.4e38, 0} with label smoothing 1: finite for every target",
    x = { { 3.4e38, -3.4e38, 0 }, { 3.4e38, -3.4e38, 0 }, { 3.4e38, -3.4e38, 0 } }, t = { 0, 1, 2 },
    opts = { reduction = "none", label_smoothing = 1 } },
  { name = "{3.4e38, -3.4e38, 0} with label smoothing 0.5: finite where the exact loss fits f32",
    x = { { 3.4e38, -3.4e38, 0 }, { 3.4e38, -3.4e38, 0 }, { 3.4e38, -3.4e38, 0 } }, t = { 0, 1, 2 },
    opts = { reduction = "none", label_smoothing = 0.5 } },
  { name = "z-loss at 3.4e38: inf where the gradient overflows, 0 (not NaN) where it is 0",
    x = { { 3.4e38, 0, -3.4e38 } }, t = { 1 }, opts = { reduction = "none", lse_square_scale = 1 } },
}

-- Target errors: the lowest bad row and its value are named, and an
-- in-place call leaves the logits as they were.
local function check_target_errors(backend)
  local dev = device_of(backend)
  local x = gs.tensor(confident_rows()):to(dev)
  local function bad(t, opts, text)
    local o = with(opts or {}, { backend = backend })
    local td = i64(t):to(dev)
    assert.error(function() gs.cross_entropy(x, td, o) end, text)
    assert.error(function() gs.cross_entropy_backward(x, td, 1, o) end, text)
    local keep = x:clone()
    assert.error(function() gs.cross_entropy(x, td, with(o, { grad = true, inplace = true })) end, text)
    assert.equal(x:to("cpu"), keep:to("cpu"), "the logits are untouched")
    local lo = { backend = backend, ignore_index = o.ignore_index }
    assert.error(function() gs.log_probs(x, td, lo) end, text)
    assert.error(function() gs.log_probs_backward(x, td, gs.ones({ 6 }):to(dev), lo) end, text)
  end
  bad({ 0, 9, 1, 2, 3, 4 }, nil, "target[1] = 9 is outside [0, 9)")                -- V
  bad({ 0, 1, 2, 3, 10, 9 }, nil, "target[4] = 10 is outside [0, 9)")              -- the lowest row
  bad({ 0, 1, -101, 3, 4, 5 }, nil, "target[2] = -101 is outside [0, 9)")          -- ignore_index - 1
  bad({ 0, 1, 2, -99, 4, 5 }, nil, "target[3] = -99 is outside [0, 9)")            -- ignore_index + 1
  bad({ 0, -1, 2, 3, 4, 5 }, { ignore_index = 0 }, "target[1] = -1 is outside [0, 9)")
  bad({ 0, 1, 2, 3, 4, 9 }, { ignore_index = 8 }, "target[5] = 9 is outside [0, 9)") -- ignore_index + 1 = V
end

local function describe_backend(backend, opts)
  describe("extremes against closed forms: " .. backend, opts or {}, function()
    for _, case in ipairs(cases) do
      it(case.name, function() check_case(case, backend) end)
    end

    -- docs/losses.md, section 2. The reference once gave lse = -inf and
    -- z_loss = inf for V = 1 (no other class to make the NaN) and NaN for
    -- V > 1; a property run found it (seed 3336913893).
    it("a row of -inf logits only has no distribution: NaN loss, lse, z_loss and gradient, V = 1 and V = 3", function()
      local dev = device_of(backend)
      for _, v in ipairs({ 1, 3 }) do
        local x = gs.full({ 2, v }, -math.huge):to(dev)
        x:set(1, 0, 0)
        local t = i64({ 0, 0 }):to(dev)
        local o = { backend = backend, reduction = "none", lse_square_scale = 0.1 }
        local loss, aux = gs.cross_entropy(x, t, with(o, { grad = true }))
        assert.all(loss:at(0), "nan")
        assert.all(aux.lse:at(0), "nan")
        assert.all(aux.z_loss:at(0), "nan")
        assert.all(aux.grad:row(0), "nan")
        assert.finite(loss:at(1))
        assert.finite(aux.grad:row(1))
        assert.all(gs.cross_entropy_backward(x, t, 1, o):row(0), "nan")
        assert.all(gs.log_probs(x, t, { backend = backend }):at(0), "nan")
        assert.all(gs.entropy(x, { backend = backend }):at(0), "nan")
      end
    end)

    it("target V, ignore_index - 1 and ignore_index + 1 are errors naming the row and the value", function()
      check_target_errors(backend)
    end)
  end)
end

describe_backend("ref")
describe_backend("cpu")
describe_backend("cuda", { tags = { "cuda" } })
