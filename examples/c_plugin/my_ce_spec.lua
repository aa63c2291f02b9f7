-- The specs of my_ce (my_ce.c), the way a kernel's author writes them: the
-- kernel against gradspec's f64 reference on ordinary and nasty inputs, its
-- gradient against finite differences, and its sign conventions.
--
--   gradspec run --load register.lua my_ce_spec.lua
--
-- my_ce declares reduction, ignore_index, logit_scale and softcap (see
-- register.lua); a call with any other option would be skipped for it.

local inf, nan = math.huge, 0 / 0
local both = { backends = { "ref", "my_ce" } }

local function i64(values) return gs.tensor(values, { dtype = "i64" }) end

local function with(opts, more)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  for k, v in pairs(more or {}) do o[k] = v end
  return o
end

-- Everything my_ce computes on these inputs, compared with ref: the loss,
-- lse, z_loss and fused gradient of the forward, the backward's gradient,
-- and log_probs. grad_output: a number or a tensor of one value per row
-- (reduction "none" only).
local function agrees(x, t, opts, grad_output)
  opts = opts or {}
  local g = grad_output or 1
  assert.backends_agree("cross_entropy", { logits = x, target = t }, with(opts, { grad = true, grad_output = g }), both)
  assert.backends_agree("cross_entropy_backward", { logits = x, target = t, grad_output = g }, opts, both)
  local lp = { ignore_index = opts.ignore_index, logit_scale = opts.logit_scale, softcap = opts.softcap }
  assert.backends_agree("log_probs", { logits = x, target = t }, lp, both)
end

-- Targets drawn at random, with row 1 ignored when there are enough rows.
local function inputs(n, v, seed, opts)
  opts = opts or {}
  local x = gs.randn({ n, v }, { seed = seed, std = opts.std or 3, stride = opts.stride })
  local t = gs.randint(0, v, { n }, { seed = seed + 1 })
  if n > 2 then t:set(1, -100) end
  return x, t
end

describe("my_ce against the reference", function()
  for _, reduction in ipairs({ "mean", "sum", "none" }) do
    it("ordinary logits, reduction " .. reduction, function()
      local x, t = inputs(16, 1000, 1)
      agrees(x, t, { reduction = reduction })
    end)
  end

  it("softcap and logit_scale, with logits near the cap", function()
    -- std 10 and c = 5: many z sit where tanh is flat, so the chain term
    -- 1 - (z/c)^2 is far from 1
    local x, t = inputs(8, 300, 2, { std = 10 })
    agrees(x, t, { softcap = 5, logit_scale = 1.7 })
    agrees(x, t, { softcap = 30, reduction = "sum" })
    agrees(x, t, { logit_scale = 0.5, reduction = "none" })
  end)

  it("reduction none with one grad_output value per row", function()
    local x, t = inputs(9, 40, 3)
    local g = gs.randn({ 9 }, { seed = 4 })
    agrees(x, t, { reduction = "none" }, g)
    agrees(x, t, { reduction = "none", softcap = 4 }, g)
  end)

  it("a scalar grad_output under mean and sum", function()
    local x, t = inputs(6, 50, 5)
    agrees(x, t, {}, 2.5)
    agrees(x, t, { reduction = "sum" }, -0.75)
  end)

  it("huge and tiny logits", function()
    local x = gs.tensor({
      { 1e4, -1e4, 0, 5 },
      { -1e4, 1e4, 1e4, -3 },
      { 1e30, -1e30, 1e-30, 0 },
      { 1e-30, -1e-30, 1e-38, 0 },
    })
    local t = i64({ 1, 2, 0, 3 })
    agrees(x, t, { reduction = "none" })
    agrees(x, t, { softcap = 20 })
  end)

  it("confident rows keep their digits (loss about 4e-18)", function()
    local x = gs.tensor({ { 40, 0, 0 }, { 0, 0, 45 }, { -3, 37, -3 } })
    agrees(x, i64({ 0, 2, 1 }), { reduction = "none" })
  end)

  it("-inf logits (a masked vocabulary), also on the target", function()
    local x = gs.randn({ 4, 9 }, { seed = 6 })
    for r = 0, 3 do x:set(r, (2 * r + 1) % 9, -inf) end
    agrees(x, i64({ 0, 2, 4, 6 }), { reduction = "none" })
    agrees(x, i64({ 1, 2, 4, 6 }), { reduction = "none" }) -- row 0's target is -inf: loss +inf
  end)

  it("a NaN or +inf logit makes its row NaN, and only its row", function()
    local x = gs.randn({ 3, 6 }, { seed = 7 })
    x:set(0, 2, nan)
    x:set(2, 5, inf)
    agrees(x, i64({ 1, 1, 1 }), { reduction = "none" })
    local loss = gs.cross_entropy(x, i64({ 1, 1, 1 }), { backend = "my_ce", reduction = "none" })
    assert.all(loss:at(0), "nan")
    assert.all(loss:at(2), "nan")
    assert.finite(loss:at(1))
  end)

  it("ignored rows, the default ignore_index and another one", function()
    local x, t = inputs(10, 20, 8)
    t:set(4, -100)
    agrees(x, t, {})
    -- with ignore_index = 7, class 7 marks ignored rows and -100 is an error
    local t7 = i64({ 7, 3, 0, 7, 19, 7, 2, 2, 11, 7 })
    agrees(x, t7, { ignore_index = 7, reduction = "none" })
    agrees(x, t7, { ignore_index = 7 })
    assert.error(function() gs.cross_entropy(x, t, { backend = "my_ce", ignore_index = 7 }) end, "target[1] = -100")
  end)

  it("every row ignored: mean is NaN, sum is 0, the gradient is 0", function()
    local x = gs.randn({ 4, 10 }, { seed = 9 })
    local t = i64({ -100, -100, -100, -100 })
    agrees(x, t, {})
    agrees(x, t, { reduction = "sum" })
    assert.all(gs.cross_entropy(x, t, { backend = "my_ce" }), "nan")
  end)

  it("V = 1: nothing to choose, loss and gradient 0", function()
    local x = gs.randn({ 5, 1 }, { seed = 10 })
    agrees(x, i64({ 0, 0, 0, 0, 0 }), { reduction = "none" })
    agrees(x, i64({ 0, -100, 0, 0, 0 }), { softcap = 2 })
  end)

  it("N = 0: no rows", function()
    local x = gs.zeros({ 0, 10 })
    local t = gs.tensor({}, { dtype = "i64" })
    agrees(x, t, { reduction = "sum" })
    agrees(x, t, { reduction = "none" })
  end)

  it("rows that are not contiguous: a row stride, and a column view", function()
    local x, t = inputs(7, 33, 11, { stride = 36 })
    assert.equal(x.stride, 36)
    agrees(x, t, { softcap = 6 })
    -- columns [2, 35) of a wider tensor: the row stride is 40, the row starts 2 in
    local wide = gs.randn({ 5, 40 }, { seed = 12 })
    local view = wide:cols_view(2, 33)
    agrees(view, gs.randint(0, 33, { 5 }, { seed = 13 }), { reduction = "none" })
  end)

  it("tight tolerances: each value is computed in double and rounded once to float", function()
    -- backends_agree's default tolerance allows f32 accumulation error; this
    -- kernel promises more, so a small bias in the loss or lse shows here
    local x, t = inputs(16, 500, 15)
    local tight = { backends = { "ref", "my_ce" }, tol = { rtol = 1e-6, atol = 1e-9 } }
    assert.backends_agree("cross_entropy", { logits = x, target = t }, { reduction = "none", grad = true }, tight)
    assert.backends_agree("cross_entropy", { logits = x, target = t }, { softcap = 8 }, tight)
    assert.backends_agree("log_probs", { logits = x, target = t }, {}, tight)
  end)

  it("a target outside [0, V) is an error naming the row and the value", function()
    local x = gs.randn({ 3, 5 }, { seed = 14 })
    assert.error(function() gs.cross_entropy(x, i64({ 0, 4, 5 }), { backend = "my_ce" }) end, "target[2] = 5")
    assert.error(function() gs.log_probs(x, i64({ -1, 0, 0 }), { backend = "my_ce" }) end, "target[0] = -1")
  end)
end)

describe("my_ce's gradient against finite differences of the reference", function()
  -- gs.gradcheck perturbs an f64 copy of x and evaluates the f64 reference;
  -- the gradient under test is my_ce's (f32, hence the looser tolerance).
  local tol = { rtol = 1e-4, atol = 1e-6 }

  it("softcap, logit_scale, mean with an ignored row", function()
    local x = gs.randn({ 4, 7 }, { seed = 20, std = 6 })
    local t = i64({ 0, -100, 6, 3 })
    local opts = { softcap = 5, logit_scale = 1.3 }
    local grad = gs.cross_entropy_backward(x, t, 1, with(opts, { backend = "my_ce" }))
    gs.gradcheck(function(xx) return gs.cross_entropy(xx, t, with(opts, { backend = "ref" })) end, x, grad, tol)
  end)

  it("reduction none, weighted by a per-row grad_output", function()
    local x = gs.randn({ 5, 6 }, { seed = 21, std = 3 })
    local t = i64({ 1, 0, 5, -100, 2 })
    local g = gs.randn({ 5 }, { seed = 22 })
    local opts = { reduction = "none", softcap = 3 }
    local grad = gs.cross_entropy_backward(x, t, g, with(opts, { backend = "my_ce" }))
    local g64 = g:to("f64")
    gs.gradcheck(function(xx) return gs.cross_entropy(xx, t, with(opts, { backend = "ref" })):dot(g64) end, x, grad, tol)
  end)
end)

describe("my_ce's conventions", function()
  it("log_probs is -cross_entropy per row, and <= 0", function()
    local x, t = inputs(12, 100, 30)
    for _, opts in ipairs({ {}, { softcap = 4, logit_scale = 2 } }) do
      local lp = gs.log_probs(x, t, with(opts, { backend = "my_ce" }))
      local ce = gs.cross_entropy(x, t, with(opts, { backend = "my_ce", reduction = "none" }))
      assert.all(lp, "<=0")
      assert.close(lp, ce:neg())
    end
  end)

  it("the loss is >= 0, gradient rows sum to 0 and only the target column is negative", function()
    local x, t = inputs(12, 30, 31)
    t:set(1, 3)
    assert.all(gs.cross_entropy(x, t, { backend = "my_ce", reduction = "none" }), ">=0")
    local grad = gs.cross_entropy_backward(x, t, 1, { backend = "my_ce", reduction = "sum" })
    assert.close(grad:sum(1), 0, { atol = 1e-6 })
    local onehot = gs.one_hot(t, 30)
    assert.all(grad:mul(onehot), "<=0")
    assert.all(grad:mul(onehot:neg():add(1)), ">=0")
  end)
end)
