-- The cross-entropy family on the GPU: every CPU case again on cuda against
-- the reference, device-side target errors, tensor moves, and N x V above
-- 2^31 elements. Tagged `cuda`: reported as skipped where there is no GPU.
local cases = require("specs.support.ce_cases")
local i64, option_cases, shapes, make_inputs = cases.i64, cases.option_cases, cases.shapes, cases.make_inputs

describe("cuda cross_entropy against the reference", { tags = { "cuda" } }, function()
  for _, dtype in ipairs({ "f32", "bf16", "f16" }) do
    for si, shape in ipairs(shapes) do
      for ci, case in ipairs(option_cases) do
        local label = string.format("%s %dx%d%s: %s", dtype, shape.n, shape.v,
          shape.stride and (" stride " .. shape.stride) or "", case.name)
        it(label .. " (loss, lse, z-loss, fused gradient, backward)", function()
          local x, t, opts = make_inputs(shape, dtype, case.opts, 100 * si + ci)
          local g = opts.reduction == "none" and gs.randn({ shape.n }, { seed = si }) or 0.5
          assert.backends_agree("cross_entropy_backward", { logits = x, target = t, grad_output = g }, opts, { backends = { "cuda" } })
          opts.grad = true
          assert.backends_agree("cross_entropy", { logits = x, target = t }, opts, { backends = { "cuda" } })
        end)
      end
    end
  end

  for _, dtype in ipairs({ "f32", "bf16", "f16" }) do
    it(dtype .. ": log_probs and entropy with their backwards", function()
      local x, t = make_inputs({ n = 9, v = 1000, stride = 1003 }, dtype, {}, 40)
      local g = gs.randn({ 9 }, { seed = 45 })
      local opts = { softcap = 3, logit_scale = 1.5 }
      assert.backends_agree("log_probs", { logits = x, target = t }, opts, { backends = { "cuda" } })
      assert.backends_agree("log_probs_backward", { logits = x, target = t, grad_output = g }, opts, { backends = { "cuda" } })
      assert.backends_agree("entropy", { logits = x }, opts, { backends = { "cuda" } })
      assert.backends_agree("entropy_backward", { logits = x, grad_output = g }, opts, { backends = { "cuda" } })
    end)
  end

  it("nasty rows: +-1e4, -inf, NaN, ignored, near-certain, +inf", function()
    local ninf = -math.huge
    local x = gs.tensor({ { 1e4, -1e4, 0, 1 }, { 0, ninf, 0, ninf }, { 1, 0 / 0, 2, 0 }, { 3, 1, 2, 0 }, { 0, 0, 20, 0 },
      { 0, math.huge, 1, 2 } })
    local t = i64({ 1, 2, 0, -100, 2, 3 })
    for _, dtype in ipairs({ "f32", "bf16" }) do
      assert.backends_agree("cross_entropy", { logits = x:to(dtype), target = t }, { reduction = "none", grad = true }, { backends = { "cuda" } })
    end
  end)

  it("the fused gradient overwrites the logits in place", function()
    local x, t = make_inputs({ n = 64, v = 32000 }, "bf16", {}, 7)
    local dx = x:to("cuda")
    local loss, aux = gs.cross_entropy(dx, t:to("cuda"), { grad = true, inplace = true })
    assert.is_true(aux.grad == dx)
    assert.close(loss:to("cpu"), gs.cross_entropy(x, t, { backend = "ref" }), { rtol = 1e-5 })
    assert.close(dx:to("cpu"), gs.cross_entropy_backward(x, t, 1, { backend = "ref" }))
  end)

  it("all rows ignored: mean is NaN, gradient zero", function()
    local x = gs.randn({ 3, 50 }, { device = "cuda" })
    local t = i64({ -100, -100, -100 }):to("cuda")
    local loss, aux = gs.cross_entropy(x, t, { grad = true })
    assert.all(loss, "nan")
    assert.all(aux.grad, "==0")
  end)
end)

describe("cuda errors and tensors", { tags = { "cuda" } }, function()
  it("an invalid target is found on the device and reported with its row and value", function()
    local x = gs.zeros({ 40, 100 }, { device = "cuda" })
    local t = gs.zeros({ 40 }, { dtype = "i64" })
    t:set(17, 40000)
    assert.error(function() gs.cross_entropy(x, t:to("cuda")) end, "target[17] = 40000 is outside [0, 100)")
    assert.error(function() gs.cross_entropy(x, t:to("cuda"), { grad = true }) end, "target[17] = 40000 is outside [0, 100)")
  end)

  it("a cpu tensor with backend cuda is an error that says what to do", function()
    assert.error(function() gs.cross_entropy(gs.zeros({ 2, 3 }), i64({ 0, 1 }), { backend = "cuda" }) end,
      "logits is on cpu but backend cuda needs cuda tensors")
  end)

  it("to('cuda') and back keeps values, dtype and row stride", function()
    local x = gs.randn({ 5, 7 }, { dtype = "bf16", stride = 9 })
    local d = x:to("cuda")
    assert.equal(d.device, "cuda")
    assert.equal(d.stride, 9)
    assert.equal(d:to("cpu"), x)
    assert.equal(d:get(3, 4), x:get(3, 4))
  end)

  it("copy_ between devices, each way, converting the dtype and keeping the row stride", function()
    local x = gs.randn({ 4, 6 }, { dtype = "f32" })
    local d = x:to("cuda")
    local host = gs.zeros({ 4, 6 }, { dtype = "f64", stride = 8 })
    host:copy_(d)                                   -- cuda -> cpu
    assert.equal(host, x:to("f64"))
    local dev = gs.zeros({ 4, 6 }, { dtype = "bf16", device = "cuda" })
    dev:copy_(x)                                    -- cpu -> cuda
    assert.equal(dev:to("cpu"), x:to("bf16"))
    local dev2 = gs.zeros({ 4, 6 }, { dtype = "f32", device = "cuda" })
    dev2:copy_(d)                                   -- cuda -> cuda
    assert.equal(dev2:to("cpu"), x)
  end)
end)

describe("cuda 64-bit offsets", { tags = { "cuda", "big" } }, function()
  it("16384 x 262144 bf16 (2^32 elements) matches the CPU kernel on sampled rows", function()
    local n, v, block = 16384, 262144, 64
    local base = gs.randn({ block, v }, { dtype = "bf16", seed = 5, std = 2 })
    local x = gs.empty({ n, v }, { dtype = "bf16", device = "cuda" })
    for r = 0, n - 1, block do x:rows_view(r, block):copy_(base) end
    -- targets differ per row, so a row read from the wrong place shows
    local t = gs.arange(0, n, { dtype = "i64" }):map(function(i) return (i * 7919) % v end):to("i64")
    local loss, aux = gs.cross_entropy(x, t:to("cuda"), { reduction = "none", grad = true, inplace = true })
    local rows = { 0, 1, 8191, 8192, 12345, 16320, 16383 }
    local hl, hlse = loss:to("cpu"), aux.lse:to("cpu")
    for _, r in ipairs(rows) do
      local xr = base:rows_view(r % block, 1)
      local tr = i64({ t:get(r) })
      local el, eaux = gs.cross_entropy(xr, tr, { reduction = "none", grad = true })
      assert.close(hl:at(r), el:at(0), { rtol = 1e-5, atol = 1e-5, msg = "loss of row " .. r })
      assert.close(hlse:at(r), eaux.lse:at(0), { rtol = 1e-5, msg = "lse of row " .. r })
      assert.close(x:rows_view(r, 1):to("cpu"), eaux.grad, { msg = "gradient of row " .. r })
    end
  end)
end)
