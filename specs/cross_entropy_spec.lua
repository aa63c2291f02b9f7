-- The cross-entropy family (cross_entropy, log_probs, entropy) on the CPU:
-- hand-computed values, the fast kernel against the reference, the reference
-- against finite differences, sign conventions, nasty inputs and errors.
-- The contract is docs/losses.md.

local LOG2 = math.log(2)

local cases = require("specs.support.ce_cases")
local i64, option_cases, shapes, make_inputs = cases.i64, cases.option_cases, cases.shapes, cases.make_inputs

describe("cross_entropy: hand-computed values", function()
  it("two equal logits cost log 2 and split the gradient evenly", function()
    local x = gs.tensor({ { 0, 0 } })
    for _, backend in ipairs({ "ref", "cpu" }) do
      local loss, aux = gs.cross_entropy(x, i64({ 0 }), { backend = backend, grad = true })
      assert.close(loss, LOG2, { rtol = 1e-6 })
      assert.close(aux.lse, gs.tensor({ LOG2 }), { rtol = 1e-6 })
      assert.close(aux.grad, gs.tensor({ { -0.5, 0.5 } }))
    end
  end)

  it("matches log-sum-exp minus the target logit, per row", function()
    local x = gs.tensor({ { 1, 2, 3 }, { 1, 0, -1 } }, { dtype = "f64" })
    local l1 = math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 1
    local l2 = math.log(math.exp(1) + math.exp(0) + math.exp(-1)) - (-1)
    local loss = gs.cross_entropy(x, i64({ 0, 2 }), { backend = "ref", reduction = "none" })
    assert.close(loss, gs.tensor({ l1, l2 }, { dtype = "f64" }), { rtol = 1e-14 })
  end)

  it("weight + label smoothing + mean divides by the target weights, as PyTorch does", function()
    -- x = [[0, ln 2]] twice, weights w = {1, 3}, eps = 0.5, targets {0, 1}
    local x = gs.tensor({ { 0, LOG2 }, { 0, LOG2 } }, { dtype = "f64" })
    local w = gs.tensor({ 1, 3 })
    local lse = math.log(3)
    local lp = { 0 - lse, LOG2 - lse }
    local smooth = -(1 * lp[1] + 3 * lp[2])         -- same for both rows
    local row0 = 0.5 * (-1 * lp[1]) + 0.25 * smooth
    local row1 = 0.5 * (-3 * lp[2]) + 0.25 * smooth
    local expected = (row0 + row1) / (1 + 3)
    local loss = gs.cross_entropy(x, i64({ 0, 1 }), { backend = "ref", weight = w, label_smoothing = 0.5 })
    assert.close(loss, expected, { rtol = 1e-14 })
    local fast = gs.cross_entropy(x:to("f32"), i64({ 0, 1 }), { weight = w, label_smoothing = 0.5 })
    assert.close(fast, expected, { rtol = 1e-6 })
  end)

  it("z-loss adds lam * lse^2 per row and is averaged over the non-ignored count", function()
    local x = gs.tensor({ { 0, 0 }, { 5, 5 }, { 1, 2 } }, { dtype = "f64" })
    local t = i64({ 0, -100, 1 })
    local lam = 0.1
    local lse0, lse2 = LOG2, math.log(math.exp(1) + math.exp(2))
    local expected = ((lse0 - 0) + lam * lse0 ^ 2 + (lse2 - 2) + lam * lse2 ^ 2) / 2
    local loss, aux = gs.cross_entropy(x, t, { backend = "ref", lse_square_scale = lam })
    assert.close(loss, expected, { rtol = 1e-14 })
    assert.close(aux.z_loss, gs.tensor({ lam * lse0 ^ 2, 0, lam * lse2 ^ 2 }, { dtype = "f64" }), { rtol = 1e-14 })
  end)

  it("softcap maps logits through c * tanh(s x / c) before the softmax", function()
    local c, s = 2, 1.5
    local x = gs.tensor({ { 3, -1 } }, { dtype = "f64" })
    local z1, z2 = c * math.tanh(s * 3 / c), c * math.tanh(s * -1 / c)
    local expected = math.log(math.exp(z1) + math.exp(z2)) - z2
    local loss = gs.cross_entropy(x, i64({ 1 }), { backend = "ref", softcap = c, logit_scale = s })
    assert.close(loss, expected, { rtol = 1e-14 })
  end)
end)

describe("cross_entropy: fast kernel against the reference", function()
  for _, dtype in ipairs({ "f32", "bf16", "f16" }) do
    for si, shape in ipairs(shapes) do
      for ci, case in ipairs(option_cases) do
        local label = string.format("%s %dx%d%s: %s", dtype, shape.n, shape.v,
          shape.stride and (" stride " .. shape.stride) or "", case.name)
        it(label .. " (loss, lse, z-loss, fused gradient)", function()
          local x, t, opts = make_inputs(shape, dtype, case.opts, 100 * si + ci)
          opts.grad = true
          assert.backends_agree("cross_entropy", { logits = x, target = t }, opts, { backends = { "cpu" } })
        end)
      end
    end
  end

  it("the backward matches the fused gradient and the reference, scalar and per-row grad_output", function()
    local x, t, opts = make_inputs({ n = 9, v = 40 }, "f32", { reduction = "none", label_smoothing = 0.1 }, 7)
    local g = gs.randn({ 9 }, { seed = 8 })
    assert.backends_agree("cross_entropy_backward", { logits = x, target = t, grad_output = g }, opts, { backends = { "cpu" } })
    opts.grad, opts.grad_output = true, g
    local loss, aux = gs.cross_entropy(x, t, opts)
    assert.close(loss, gs.cross_entropy(x, t, { reduction = "none", label_smoothing = 0.1, backend = "ref" }), { rtol = 1e-5 })
    local bwd = gs.cross_entropy_backward(x, t, g, { reduction = "none", label_smoothing = 0.1 })
    assert.close(aux.grad, bwd)
    assert.backends_agree("cross_entropy_backward", { logits = x, target = t, grad_output = 2.5 }, { reduction = "sum" }, { backends = { "cpu" } })
  end)

  it("the fused gradient can overwrite the logits in place, rows wider than a chunk", function()
    for _, dtype in ipairs({ "f32", "bf16" }) do
      local x, t = make_inputs({ n = 5, v = 2 * gs.cpu_chunk + 552 }, dtype, {}, 12)
      local keep = x:clone()
      local loss, aux = gs.cross_entropy(x, t, { grad = true, inplace = true })
      assert.close(loss, gs.cross_entropy(keep, t, { backend = "ref" }), { rtol = 1e-5 })
      assert.is_true(aux.grad == x, "the gradient is the logits tensor")
      assert.close(x, gs.cross_entropy_backward(keep, t, 1, { backend = "ref" }):to(dtype))
    end
  end)

  it("the fused gradient can overwrite the logits in place", function()
    local x, t = make_inputs({ n = 8, v = 100 }, "bf16", {}, 11)
    local keep = x:clone()
    local loss, aux = gs.cross_entropy(x, t, { grad = true, inplace = true })
    assert.close(loss, gs.cross_entropy(keep, t, { backend = "ref" }), { rtol = 1e-5 })
    assert.is_true(aux.grad == x, "the gradient is the logits tensor")
    local expected = gs.cross_entropy_backward(keep, t, 1)
    assert.close(x, expected)
  end)

  -- fast - exact in units of the bf16 spacing at the exact value: at most
  -- half a unit (rounded to nearest) plus the f32 error before rounding, and
  -- on average no bias (truncation would sit half a unit to one side).
  it("bf16 gradients are rounded to nearest, without bias", function()
    for _, opts in ipairs({ {}, { label_smoothing = 0.1 }, { inplace = true } }) do
      local x, t = make_inputs({ n = 4, v = 2 * gs.cpu_chunk + 300 }, "bf16", {}, 21)
      local smooth = opts.label_smoothing
      local exact = gs.cross_entropy_backward(x, t, 1, { backend = "ref", grad_dtype = "f64", label_smoothing = smooth })
      local ref_loss = gs.cross_entropy(x, t, { backend = "ref", label_smoothing = smooth })
      local loss, aux = gs.cross_entropy(x, t, { grad = true, inplace = opts.inplace, label_smoothing = smooth })
      assert.close(loss, ref_loss, { rtol = 1e-5 })
      -- the bf16 spacing at each exact value (its smallest, 2^-133, at 0
      -- and among subnormals), and the value's sign
      local spacing = exact:map(function(e)
        local _, ex = math.frexp(e) -- |e| in [2^(ex-1), 2^ex)
        return e == 0 and 2 ^ -133 or math.max(2 ^ (ex - 8), 2 ^ -133)
      end)
      local sign = exact:map(function(e) return e > 0 and 1 or e < 0 and -1 or 0 end)
      local units = aux.grad:to("f64"):sub(exact):div(spacing)
      assert.in_range(units, -0.51, 0.51, "fast bf16 gradient - exact, in bf16 spacings")
      assert.in_range(units:mul(sign):mean(), -0.02, 0.02, "mean signed error, in bf16 spacings")
    end
  end)

  it("bf16 and f16 gradients can be asked for in f32", function()
    local x, t = make_inputs({ n = 4, v = 50 }, "bf16", {}, 12)
    local g = gs.cross_entropy_backward(x, t, 1, { grad_dtype = "f32" })
    assert.equal(g.dtype, "f32")
    assert.close(g, gs.cross_entropy_backward(x, t, 1, { backend = "ref", grad_dtype = "f64" }), { rtol = 1e-5, atol = 1e-7 })
  end)
end)

describe("cross_entropy: reference gradient against finite differences", function()
  for ci, case in ipairs(option_cases) do
    it(case.name, function()
      local x, t, opts = make_inputs({ n = 4, v = 6 }, "f64", case.opts, 500 + ci)
      opts.backend = "ref"
      local none = opts.reduction == "none"
      local g = none and gs.randn({ 4 }, { seed = 900 + ci, dtype = "f64" }) or 1
      local function f(xx)
        local loss = gs.cross_entropy(xx, t, opts)
        return none and loss:dot(g) or loss
      end
      local grad = gs.cross_entropy_backward(x, t, g, opts)
      gs.gradcheck(f, x, grad)
    end)
  end

  it("softcap with logits as large as the cap, where the chain-rule term matters", function()
    local x = gs.randn({ 3, 8 }, { seed = 21, std = 20, dtype = "f64" })
    local t = i64({ 0, 3, 7 })
    local opts = { backend = "ref", softcap = 15, logit_scale = 1.3, reduction = "sum" }
    local grad = gs.cross_entropy_backward(x, t, 1, opts)
    gs.gradcheck(function(xx) return gs.cross_entropy(xx, t, opts) end, x, grad)
    -- and the term is not negligible here: dropping it changes the gradient a lot
    local z = x:mul(1.3 / 15):map(math.tanh)
    assert.is_true(z:abs():max():item() > 0.9, "some logits sit in tanh's flat part")
  end)

  it("a 128k-wide row is checked by random directions", function()
    local x = gs.randn({ 1, 131072 }, { seed = 22, dtype = "f64" })
    local t = i64({ 5 })
    local opts = { backend = "ref", reduction = "sum", softcap = 2 }
    local grad = gs.cross_entropy_backward(x, t, 1, opts)
    gs.gradcheck(function(xx) return gs.cross_entropy(xx, t, opts) end, x, grad, { directions = 8 })
  end)
end)

describe("cross_entropy: sign conventions", function()
  for _, backend in ipairs({ "ref", "cpu" }) do
    it(backend .. ": losses are >= 0 per row", function()
      local x, t = make_inputs({ n = 32, v = 50 }, "f32", {}, 31)
      assert.all(gs.cross_entropy(x, t, { backend = backend, reduction = "none" }), ">=0")
    end)

    it(backend .. ": gradient rows sum to zero, the target column is the only negative one, |dx| <= |g|", function()
      local x, t = make_inputs({ n = 12, v = 30 }, "f32", {}, 32)
      t:set(1, 3) -- no ignored rows here
      local grad = gs.cross_entropy_backward(x, t, 1, { backend = backend, reduction = "sum" })
      assert.close(grad:sum(1), 0, { atol = 1e-6 })
      local onehot = gs.one_hot(t, 30)
      assert.all(grad:mul(onehot), "<=0")
      assert.all(grad:mul(onehot:neg():add(1)), ">=0")
      assert.all(grad:abs(), "<=1")
      -- dx = softmax(x) - onehot(t), exactly the contract's invariant
      assert.close(grad, x:softmax():sub(onehot), { atol = 1e-6 })
    end)

    it(backend .. ": log_probs is <= 0 and equals -cross_entropy per row", function()
      local x, t = make_inputs({ n = 10, v = 20 }, "f32", {}, 33)
      local lp = gs.log_probs(x, t, { backend = backend })
      assert.all(lp, "<=0")
      local ce = gs.cross_entropy(x, t, { backend = backend, reduction = "none" })
      assert.close(lp, ce:neg(), { rtol = 1e-6, atol = 1e-6 })
    end)

    it(backend .. ": entropy lies in [0, log V]", function()
      local x = gs.randn({ 10, 20 }, { seed = 34, std = 4 })
      x:row(0):fill(0) -- uniform row: entropy = log V exactly
      local h = gs.entropy(x, { backend = backend })
      assert.in_range(h, 0, math.log(20) + 1e-6)
      assert.close(h:get(0), math.log(20), { rtol = 1e-6 })
    end)
  end
end)

describe("log_probs and entropy", function()
  local cases = {
    { name = "plain", opts = {} },
    { name = "softcap + logit_scale", opts = { softcap = 3, logit_scale = 1.5 } },
  }
  for _, dtype in ipairs({ "f32", "bf16", "f16" }) do
    for ci, case in ipairs(cases) do
      it(dtype .. " " .. case.name .. ": fast kernels agree with the reference", function()
        local x, t = make_inputs({ n = 9, v = 77, stride = 80 }, dtype, {}, 40 + ci)
        local g = gs.randn({ 9 }, { seed = 45 })
        assert.backends_agree("log_probs", { logits = x, target = t }, case.opts, { backends = { "cpu" } })
        assert.backends_agree("log_probs_backward", { logits = x, target = t, grad_output = g }, case.opts, { backends = { "cpu" } })
        assert.backends_agree("entropy", { logits = x }, case.opts, { backends = { "cpu" } })
        assert.backends_agree("entropy_backward", { logits = x, grad_output = g }, case.opts, { backends = { "cpu" } })
      end)
    end
  end

  for ci, case in ipairs(cases) do
    it(case.name .. ": reference gradients match finite differences", function()
      local x, t = make_inputs({ n = 3, v = 7 }, "f64", {}, 50 + ci)
      local g = gs.randn({ 3 }, { seed = 55, dtype = "f64" })
      local opts = { backend = "ref" }
      for k, v in pairs(case.opts) do opts[k] = v end
      gs.gradcheck(function(xx) return gs.log_probs(xx, t, opts):dot(g) end, x, gs.log_probs_backward(x, t, g, opts))
      gs.gradcheck(function(xx) return gs.entropy(xx, opts):dot(g) end, x, gs.entropy_backward(x, g, opts))
    end)
  end
end)

describe("cross_entropy: nasty inputs", function()
  for _, backend in ipairs({ "ref", "cpu" }) do
    it(backend .. ": logits of +-1e4 give exact, finite losses", function()
      local x = gs.tensor({ { 1e4, -1e4, 0 }, { -1e4, 1e4, 1e4 } })
      local loss, aux = gs.cross_entropy(x, i64({ 1, 2 }), { backend = backend, reduction = "none", grad = true })
      assert.close(loss, gs.tensor({ 2e4, LOG2 }), { rtol = 1e-6 })
      assert.finite(aux.grad)
      assert.close(aux.grad, gs.tensor({ { 1, -1, 0 }, { 0, 0.5, -0.5 } }), { atol = 1e-6 })
    end)

    it(backend .. ": a target far above every other logit, in the first chunk and in a later one", function()
      for _, v in ipairs({ 10, 2 * gs.cpu_chunk + 100 }) do
        local x = gs.zeros({ 2, v })
        x:set(0, 5, 1e4)
        x:set(1, v - 2, 1e4)
        local loss, aux = gs.cross_entropy(x, i64({ 5, v - 2 }), { backend = backend, reduction = "none", grad = true })
        assert.equal(loss, gs.zeros({ 2 }), "p_t = 1 to the last bit, so the loss is exactly 0")
        assert.equal(aux.grad, gs.zeros({ 2, v }))
      end
    end)

    it(backend .. ": -inf logits (a masked vocabulary) get zero probability and zero gradient", function()
      local ninf = -math.huge
      local x = gs.tensor({ { 0, ninf, 0, ninf } })
      local loss, aux = gs.cross_entropy(x, i64({ 2 }), { backend = backend, grad = true })
      assert.close(loss, LOG2, { rtol = 1e-6 })
      assert.close(aux.grad, gs.tensor({ { 0.5, 0, -0.5, 0 } }))
    end)

    it(backend .. ": under softcap a -inf logit becomes the finite -c, as the math says", function()
      local x = gs.tensor({ { 0, -math.huge } })
      local c = 2
      local loss = gs.cross_entropy(x, i64({ 0 }), { backend = backend, softcap = c })
      assert.close(loss, math.log(1 + math.exp(-c)), { rtol = 1e-6 })
    end)

    it(backend .. ": NaN propagates to its row and to the mean, never hidden", function()
      local x = gs.tensor({ { 1, 0 / 0, 2 }, { 1, 2, 3 } })
      local t = i64({ 0, 1 })
      local none, aux = gs.cross_entropy(x, t, { backend = backend, reduction = "none", grad = true })
      assert.all(none:at(0), "nan")
      assert.finite(none:at(1))
      assert.all(aux.grad:row(0), "nan")
      assert.finite(aux.grad:row(1))
      assert.all(gs.cross_entropy(x, t, { backend = backend }), "nan")
    end)

    it(backend .. ": a +inf logit poisons its row with NaN, as in PyTorch", function()
      local x = gs.tensor({ { 0, math.huge, 1 }, { 1, 2, 3 } })
      local t = i64({ 0, 2 })
      local loss, aux = gs.cross_entropy(x, t, { backend = backend, reduction = "none", grad = true })
      assert.all(loss:at(0), "nan")
      assert.all(aux.lse:at(0), "nan")
      assert.all(aux.grad:row(0), "nan")
      assert.finite(aux.grad:row(1))
      assert.all(gs.log_probs(x, t, { backend = backend }):at(0), "nan")
      assert.all(gs.entropy(x, { backend = backend }):at(0), "nan")
    end)

    it(backend .. ": ignored rows have zero loss, lse, z-loss and gradient", function()
      local x = gs.randn({ 4, 6 }, { seed = 61 })
      local t = i64({ -100, 2, -100, 5 })
      local loss, aux = gs.cross_entropy(x, t, { backend = backend, reduction = "none", grad = true, lse_square_scale = 0.1 })
      assert.equal(loss:at(0), 0)
      assert.equal(loss:at(2), 0)
      assert.equal(aux.lse:at(2), 0)
      assert.equal(aux.z_loss:at(0), 0)
      assert.all(aux.grad:row(0), "==0")
      assert.all(aux.grad:row(2), "==0")
      assert.all(aux.grad:row(1):abs():sum(), ">0")
    end)

    it(backend .. ": every row ignored: mean is NaN, sum is 0, gradient all zeros", function()
      local x = gs.randn({ 3, 5 }, { seed = 62 })
      local t = i64({ -100, -100, -100 })
      local mean, aux = gs.cross_entropy(x, t, { backend = backend, grad = true })
      assert.all(mean, "nan")
      assert.all(aux.grad, "==0")
      local sum = gs.cross_entropy(x, t, { backend = backend, reduction = "sum" })
      assert.close(sum, 0, { atol = 0 })
    end)

    it(backend .. ": per-row grad_output scales each row", function()
      local x = gs.randn({ 3, 4 }, { seed = 63 })
      local t = i64({ 0, 1, 2 })
      local g = gs.tensor({ 2, 0, -1 })
      local grad = gs.cross_entropy_backward(x, t, g, { backend = backend, reduction = "none" })
      local unit = gs.cross_entropy_backward(x, t, 1, { backend = backend, reduction = "sum" })
      assert.close(grad:row(0), unit:row(0):mul(2), { atol = 1e-6 })
      assert.all(grad:row(1), "==0")
      assert.close(grad:row(2), unit:row(2):neg(), { atol = 1e-6 })
    end)

    it(backend .. ": near-certain predictions keep the target gradient's relative accuracy", function()
      -- p_t = 1 - 9e-9: p_t - 1 computed naively in f32 would be 0 or off by 100%.
      local x = gs.zeros({ 1, 10 })
      x:set(0, 3, 20)
      local grad = gs.cross_entropy_backward(x, i64({ 3 }), 1, { backend = backend, reduction = "sum" })
      local expected = -9 * math.exp(-20) / (1 + 9 * math.exp(-20))
      assert.close(grad:at(0, 3), expected, { rtol = 1e-4, atol = 0 })
    end)

    it(backend .. ": V = 1 has zero loss and zero gradient", function()
      local x = gs.randn({ 4, 1 }, { seed = 64 })
      local loss, aux = gs.cross_entropy(x, i64({ 0, 0, 0, 0 }), { backend = backend, grad = true, reduction = "sum" })
      assert.close(loss, 0, { atol = 1e-7 })
      assert.close(aux.grad, 0, { atol = 1e-7 })
    end)

    it(backend .. ": N = 0 gives an empty per-row loss, sum 0 and mean NaN", function()
      local x = gs.zeros({ 0, 7 })
      local t = gs.zeros({ 0 }, { dtype = "i64" })
      assert.close(gs.cross_entropy(x, t, { backend = backend, reduction = "none" }), gs.zeros({ 0 }))
      assert.close(gs.cross_entropy(x, t, { backend = backend, reduction = "sum" }), 0)
      assert.all(gs.cross_entropy(x, t, { backend = backend }), "nan")
    end)
  end
end)

describe("cross_entropy: bad input is an error that names it", function()
  local x = gs.zeros({ 3, 5 })
  local t = i64({ 0, 1, 2 })
  local cases = {
    { "target out of range, with row and value", function() gs.cross_entropy(x, i64({ 0, 7, 1 })) end, "target[1] = 7 is outside [0, 5)" },
    { "negative target that is not ignore_index", function() gs.cross_entropy(x, i64({ 0, 1, -1 }), { backend = "ref" }) end, "target[2] = -1 is outside [0, 5)" },
    { "target of the wrong length", function() gs.cross_entropy(x, i64({ 0, 1 })) end, "target has shape {2} but logits has 3 rows" },
    { "integer logits", function() gs.cross_entropy(gs.zeros({ 3, 5 }, { dtype = "i32" }), t) end, "logits dtype i32 is not supported" },
    { "float targets", function() gs.cross_entropy(x, gs.zeros({ 3 })) end, "target dtype f32 is not i32 or i64" },
    { "1-D logits", function() gs.cross_entropy(gs.zeros({ 5 }), t) end, "logits must be 2-D" },
    { "weight of the wrong length", function() gs.cross_entropy(x, t, { weight = gs.ones({ 4 }) }) end, "weight has shape {4} but there are 5 classes" },
    { "label_smoothing above 1", function() gs.cross_entropy(x, t, { label_smoothing = 1.5 }) end, "label_smoothing = 1.5 is outside [0, 1]" },
    { "label_smoothing below 0", function() gs.cross_entropy(x, t, { label_smoothing = -0.1, backend = "ref" }) end, "label_smoothing = -0.1 is outside [0, 1]" },
    { "negative softcap", function() gs.cross_entropy(x, t, { softcap = -1 }) end, "softcap = -1 must be > 0" },
    { "negative z-loss scale", function() gs.cross_entropy(x, t, { lse_square_scale = -1 }) end, "lse_square_scale = -1 must be >= 0" },
    { "an unknown option (a typo)", function() gs.cross_entropy(x, t, { label_smothing = 0.1 }) end, "unknown option 'label_smothing'" },
    { "an unknown reduction", function() gs.cross_entropy(x, t, { reduction = "avg" }) end, "reduction = avg is unknown" },
    { "an unknown backend", function() gs.cross_entropy(x, t, { backend = "gpu" }) end, "backend = gpu is unknown" },
    { "per-row grad_output with mean", function() gs.cross_entropy_backward(x, t, gs.ones({ 3 })) end, "per-row grad_output needs reduction \"none\"" },
    { "grad_output of the wrong length", function() gs.cross_entropy_backward(x, t, gs.ones({ 2 }), { reduction = "none" }) end, "grad_output has 2 values" },
    { "a string as an option value", function() gs.cross_entropy(x, t, { logit_scale = "2" }) end, 'logit_scale = "2" is a string, expected a number' },
    { "log_probs: an option it does not take", function() gs.log_probs(x, t, { reduction = "sum" }) end, "log_probs: unknown option 'reduction'" },
  }
  for _, case in ipairs(cases) do
    it(case[1], function()
      assert.error(case[2], case[3])
    end)
  end
end)
