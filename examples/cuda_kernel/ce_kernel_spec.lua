-- The specs of the example CUDA kernel (ce_kernel.cu, registered by
-- register.lua as "cuda_example"): the kernel against gradspec's f64
-- reference on ordinary and nasty inputs, its log_probs sign convention, its
-- target errors, and a check that each planted bug fails these specs.
--
--   gradspec run examples/cuda_kernel/ce_kernel_spec.lua -v
--
-- Every `it` needs a GPU (the describe blocks are tagged #cuda): without
-- one they are reported as skipped, with the reason.
local process = require("gradspec.process")

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
if not gs.backend.get("cuda_example") then dofile(here .. "register.lua") end
-- The kernel is compiled with NVRTC: without it every describe is skipped.
local nvrtc, nvrtc_why = (gs.cuda or require("gradspec.cuda")).nvrtc_version()
local no_nvrtc = "NVRTC is not available: " .. tostring(nvrtc_why)

local inf, nan = math.huge, 0 / 0
local both = { backends = { "ref", "cuda_example" } }

local function i64(values) return gs.tensor(values, { dtype = "i64" }) end

local function with(opts, more)
  local o = {}
  for key, v in pairs(opts or {}) do o[key] = v end
  for key, v in pairs(more or {}) do o[key] = v end
  return o
end

-- The loss, lse and fused gradient of the forward, and the backward's
-- gradient, compared with ref. grad_output: a number, or one value per row
-- (reduction "none"); default 1.
local function agrees(x, t, opts, grad_output)
  local g = grad_output or 1
  assert.backends_agree("cross_entropy", { logits = x, target = t }, with(opts, { grad = true, grad_output = g }), both)
  assert.backends_agree("cross_entropy_backward", { logits = x, target = t, grad_output = g }, opts or {}, both)
end

-- Random logits and targets; rows 1 and n - 2 ignored when there are enough.
local function inputs(n, v, seed, opts)
  opts = opts or {}
  local x = gs.randn({ n, v }, { seed = seed, std = opts.std or 3, stride = opts.stride })
  local t = gs.randint(0, v, { n }, { seed = seed + 1 })
  if n > 3 then
    t:set(1, -100)
    t:set(n - 2, -100)
  end
  return x, t
end

describe("cuda_example against the reference #cuda", function()
  skip_if(nvrtc == nil, no_nvrtc)
  for _, reduction in ipairs({ "mean", "sum", "none" }) do
    it("ordinary logits, reduction " .. reduction, function()
      local x, t = inputs(16, 1000, 1)
      agrees(x, t, { reduction = reduction })
    end)

    it("a grad_output, reduction " .. reduction, function()
      local x, t = inputs(9, 300, 2)
      local g = reduction == "none" and gs.randn({ 9 }, { seed = 3 }) or 0.37
      agrees(x, t, { reduction = reduction }, g)
      if reduction ~= "none" then agrees(x, t, { reduction = reduction }, gs.tensor({ -1.5 })) end
    end)
  end

  it("rows wider than a block, narrower than a warp, and with a stride", function()
    for _, shape in ipairs({ { 5, 5000 }, { 7, 3 }, { 6, 257 } }) do
      local x, t = inputs(shape[1], shape[2], shape[2])
      agrees(x, t, { reduction = "sum" })
    end
    local x, t = inputs(7, 33, 4, { stride = 36 })
    agrees(x, t, {})
    local wide = gs.randn({ 5, 40 }, { seed = 5 })
    agrees(wide:cols_view(3, 30), gs.randint(0, 30, { 5 }, { seed = 6 }), { reduction = "none" })
  end)

  it("V = 1: the loss and the gradient are zero", function()
    local x, t = gs.randn({ 6, 1 }, { seed = 7 }), i64({ 0, 0, -100, 0, 0, 0 })
    agrees(x, t, {})
    local loss, aux = gs.cross_entropy(x:to("cuda"), t:to("cuda"), { backend = "cuda_example", grad = true, reduction = "none" })
    assert.all(loss, "==0")
    assert.all(aux.grad, "==0")
  end)

  it("huge logits: +-1e4, 3e38, equal 1e30s, a confident row", function()
    local x = gs.tensor({
      { 1e4, -1e4, 0, 1 },
      { 3e38, 3e38, -3e38, 0 },
      { 1e30, 1e30, 1e30, 1e30 },
      { 40, 0, 0, 0 },   -- p_t - 1 is about -1e-17: kept, not rounded to 0
      { -1e4, 1e4, 0, 0 },
    })
    local t = i64({ 0, 1, 2, 0, 1 })
    for _, reduction in ipairs({ "mean", "none" }) do agrees(x, t, { reduction = reduction }) end
  end)

  it("NaN, +inf and -inf logits: NaN and +inf rows are NaN, -inf entries have no weight", function()
    local x = gs.tensor({ { 1, nan, 2, 0 }, { 0, inf, 1, 2 }, { 0, -inf, 3, -inf }, { 2, 1, 0, -1 } })
    agrees(x, i64({ 0, 2, 2, 1 }), { reduction = "none" })
  end)

  it("ignored rows: the default -100, another ignore_index, every row ignored", function()
    local x, t = inputs(8, 50, 8)
    agrees(x, t, { reduction = "mean" })
    local t3 = i64({ 3, 0, 3, 7, 3, 1, 2, 3 })
    agrees(x, t3, { ignore_index = 3, reduction = "mean" })
    agrees(x, t3, { ignore_index = 3, reduction = "none" }, gs.randn({ 8 }, { seed = 9 }))
    local all = i64({ -100, -100, -100, -100, -100, -100, -100, -100 })
    agrees(x, all, { reduction = "sum" })
    local loss, aux = gs.cross_entropy(x:to("cuda"), all:to("cuda"), { backend = "cuda_example", grad = true })
    assert.all(loss, "nan") -- mean over no rows, as in PyTorch
    assert.all(aux.grad, "==0")
  end)

  it("no rows", function()
    local x, t = gs.zeros({ 0, 10 }), gs.zeros({ 0 }, { dtype = "i64" })
    for _, reduction in ipairs({ "mean", "sum", "none" }) do agrees(x, t, { reduction = reduction }) end
  end)
end)

describe("cuda_example log_probs #cuda", function()
  skip_if(nvrtc == nil, no_nvrtc)
  it("agrees with ref, is <= 0 and is -cross_entropy per row", function()
    local x, t = inputs(12, 100, 10, { std = 5 })
    assert.backends_agree("log_probs", { logits = x, target = t }, {}, both)
    local dx, dt = x:to("cuda"), t:to("cuda")
    local lp = gs.log_probs(dx, dt, { backend = "cuda_example" })
    assert.all(lp, "<=0")
    local ce = gs.cross_entropy(dx, dt, { backend = "cuda_example", reduction = "none" })
    assert.close(lp, ce:to("cpu"):neg())
  end)
end)

describe("cuda_example errors #cuda", function()
  skip_if(nvrtc == nil, no_nvrtc)
  it("a target outside [0, V) is an error naming the row and the value", function()
    local x = gs.randn({ 4, 5 }, { device = "cuda" })
    local t = i64({ 0, 1, 7, 2 }):to("cuda")
    assert.error(function() gs.cross_entropy(x, t, { backend = "cuda_example", grad = true }) end, "target[2] = 7")
    assert.error(function() gs.cross_entropy_backward(x, t, 1, { backend = "cuda_example" }) end, "target[2] = 7")
    assert.error(function() gs.log_probs(x, t, { backend = "cuda_example" }) end, "target[2] = 7")
  end)
end)

-- Each planted bug, compiled in by GS_EXAMPLE_BUG, must fail this file:
-- specs that pass a kernel with these bugs would prove nothing.
describe("the planted bugs #cuda", function()
  skip_if(nvrtc == nil, no_nvrtc)
  skip_if(os.getenv("GS_EXAMPLE_BUG") ~= nil, "runs only without a planted bug")
  local expect = {
    sign = "disagrees with ref on grad",
    ignore = "disagrees with ref on grad",
    oob = "wrote past the end of gradient row",
  }
  for _, bug in ipairs({ "sign", "ignore", "oob" }) do
    it("GS_EXAMPLE_BUG=" .. bug .. " fails these specs", function()
      local out, code = process.run("GS_EXAMPLE_BUG=" .. bug .. " " .. process.quote(process.self_exe()) .. " run "
        .. process.quote(here .. "ce_kernel_spec.lua") .. " --filter 'against the reference'")
      assert.equal(code, 1, "exit status with GS_EXAMPLE_BUG=" .. bug .. "; output:\n" .. out)
      assert.is_true(out:find(expect[bug], 1, true) ~= nil, "no '" .. expect[bug] .. "' in:\n" .. out)
    end)
  end
end)
