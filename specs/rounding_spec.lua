-- Low-precision gradients are rounded to nearest, without bias: bf16 and
-- f16, from logits of that dtype and from f32 logits (grad_dtype), on cpu
-- and (tag cuda) cuda. The error of each element, fast - exact, is measured
-- in units of the dtype's spacing at the exact value (f64, from the
-- reference): at most half a unit plus the f32 error before rounding, and
-- on average no bias. Truncation would sit half a unit towards zero on
-- average, a rounding to the wrong neighbour a whole unit off somewhere.
local cases = require("specs.support.ce_cases")

-- Significand bits after the point, the smallest normal, the smallest
-- spacing (subnormals), and 4 f32 units in spacings of the format.
local FORMATS = {
  bf16 = { bits = 7, normal = 2 ^ -126, tiny = 2 ^ -133, f32_units = 4 * 2 ^ -16 },
  f16 = { bits = 10, normal = 2 ^ -14, tiny = 2 ^ -24, f32_units = 4 * 2 ^ -13 },
}

-- The spacing of a format at x.
local function spacing(f, x)
  if x == 0 then return f.tiny end
  local _, ex = math.frexp(x) -- |x| in [2^(ex-1), 2^ex)
  return math.max(2 ^ (ex - 1 - f.bits), f.tiny)
end

-- A 2-D tensor's values, row after row, in a flat Lua list.
local function flat(t)
  local out = {}
  for _, row in ipairs(t:to("f64"):totable()) do
    for _, v in ipairs(row) do out[#out + 1] = v end
  end
  return out
end

-- Errors of `low` against `ref` in spacings of format f at ref: the largest
-- |error| (and where), and the mean error towards ref's sign over the
-- elements in f's normal range. Below it every value under half a spacing
-- rounds to 0, "towards zero" by construction, whatever the rounding.
local function errors(low, ref, f)
  local worst, at, sum, count = 0, 0, 0, 0
  for k = 1, #ref do
    local u = (low[k] - ref[k]) / spacing(f, ref[k])
    if math.abs(u) > worst then worst, at = math.abs(u), k end
    if math.abs(ref[k]) >= f.normal then
      sum = sum + (ref[k] > 0 and u or -u)
      count = count + 1
    end
  end
  return { max = worst, at = at, bias = count > 0 and sum / count or 0, count = count }
end

-- Bias bound, in spacings: round to nearest gives 0 on average, within a
-- few standard deviations (0.29 / sqrt(count)); truncation -0.5.
local MAX_BIAS = 0.02

-- Rows wide enough for the CPU kernel's chunks and the GPU's cluster plans,
-- with a ragged tail and an ignored row.
local SHAPE = { n = 6, v = 2 * gs.cpu_chunk + 300 }

local OPTION_SETS = {
  { name = "plain", opts = {} },
  { name = "label_smoothing 0.1, z-loss 1e-3", opts = { label_smoothing = 0.1, lse_square_scale = 1e-3 } },
  { name = "softcap 20, logit_scale 1.5", opts = { softcap = 20, logit_scale = 1.5 } },
}

-- Two measures. The rounding step itself: the low-precision gradient
-- against the same backend's f32 gradient (the value it rounds), at most
-- half a spacing, no bias. Against the exact gradient (f64 reference): no
-- bias, and at most half a spacing beyond the f32 gradient's own error,
-- which is large in spacings only where the gradient's terms cancel (label
-- smoothing near p_j = 1/V).
local function check(backend, logits_dtype, grad_dtype, set, seed)
  local f = FORMATS[grad_dtype]
  local x, t = cases.make_inputs(SHAPE, logits_dtype, {}, seed)
  local device = backend == "cuda" and "cuda" or "cpu"
  local function opts(extra)
    local o = { reduction = "sum" }
    for k, v in pairs(set.opts) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end
  local exact_t = gs.cross_entropy_backward(x, t, 1, opts({ backend = "ref", grad_dtype = "f64" }))
  local exact = flat(exact_t)
  local xd, td = x:to(device), t:to(device)
  local loss, aux = gs.cross_entropy(xd, td, opts({ grad = true, grad_dtype = grad_dtype }))
  local loss32, aux32 = gs.cross_entropy(xd, td, opts({ grad = true, grad_dtype = "f32" }))
  local ref_loss = gs.cross_entropy(x, t, opts({ backend = "ref" }))
  assert.close(loss:to("cpu"), ref_loss, { rtol = 1e-5 })
  assert.close(loss32:to("cpu"), ref_loss, { rtol = 1e-5 })
  assert.equal(aux.grad.dtype, grad_dtype)
  assert.finite(aux.grad)
  assert.close(aux32.grad:to("cpu"):to("f64"), exact_t, { rtol = 1e-4, atol = 1e-6 })
  local low, g32 = flat(aux.grad:to("cpu")), flat(aux32.grad:to("cpu"))
  local what = string.format("%s %s gradient of %s logits (%s)", backend, grad_dtype, logits_dtype, set.name)

  -- half a spacing, plus a few f32 units where the kernel's low-precision
  -- path computes the value before rounding in another order than its f32 path
  local r = errors(low, g32, f)
  assert.is_true(r.max <= 0.5 + f.f32_units, string.format("%s - its f32 gradient: %.4f spacings at element %d (%.9g vs %.9g)",
    what, r.max, r.at - 1, low[r.at] or 0, g32[r.at] or 0))
  assert.is_true(math.abs(r.bias) <= MAX_BIAS, string.format("%s - its f32 gradient: mean error %.4f spacings over %d elements",
    what, r.bias, r.count))

  local e = errors(low, exact, f)
  -- the figures, for the log: a regression shows before it fails
  print(string.format("%s: rounding step max %.4f, bias %+.4f; against exact: bias %+.4f, max %.4f (%d normal elements)",
    what, r.max, r.bias, e.bias, e.max, e.count))
  assert.is_true(math.abs(e.bias) <= MAX_BIAS, string.format("%s - exact: mean error %.4f spacings over %d elements",
    what, e.bias, e.count))
  for k = 1, #exact do
    local s = spacing(f, exact[k])
    local beyond = math.abs(low[k] - exact[k]) / s - math.abs(g32[k] - exact[k]) / s
    if beyond > 0.5 + 1e-6 then
      error(string.format("%s - exact at element %d: %.4f spacings beyond the f32 gradient's error (%.9g, exact %.9g)",
        what, k - 1, beyond, low[k], exact[k]))
    end
  end
end

local function rounding_specs(backend)
  for _, grad_dtype in ipairs({ "bf16", "f16" }) do
    for _, logits_dtype in ipairs({ grad_dtype, "f32" }) do
      for si, set in ipairs(OPTION_SETS) do
        it(string.format("%s gradients from %s logits (%s): nearest, no bias", grad_dtype, logits_dtype, set.name), function()
          check(backend, logits_dtype, grad_dtype, set, 300 + 10 * si + #logits_dtype)
        end)
      end
    end
  end
end

describe("rounding of low-precision gradients on cpu", function() rounding_specs("cpu") end)
describe("rounding of low-precision gradients on cuda", { tags = { "cuda" } }, function() rounding_specs("cuda") end)

describe("the rounding measure itself", function()
  -- The measure must see a biased rounding: the exact gradient truncated
  -- towards zero sits about half a spacing below, beyond the bound.
  it("truncation towards zero is caught as bias, a wrong neighbour as a whole spacing", function()
    -- values of both signs over many binades, as a gradient has
    local exact = flat(gs.randn({ 4, 20000 }, { seed = 77, dtype = "f64" }):exp():mul(gs.randn({ 4, 20000 }, { seed = 78, dtype = "f64" })))
    for _, dtype in ipairs({ "bf16", "f16" }) do
      local f = FORMATS[dtype]
      local truncated, off = {}, {}
      for k, v in ipairs(exact) do
        local s = spacing(f, v)
        truncated[k] = (v < 0 and -1 or 1) * math.floor(math.abs(v) / s) * s
        off[k] = v + (k == 1000 and s or 0)
      end
      local r = errors(truncated, exact, f)
      assert.is_true(r.bias < -0.3, string.format("%s truncation: bias %.3f spacings, expected about -0.5", dtype, r.bias))
      assert.is_true(r.bias < -MAX_BIAS, "the bound rejects it")
      assert.is_true(r.max < 1, string.format("%s truncation stays within a spacing: %.4f", dtype, r.max))
      local o = errors(off, exact, f)
      assert.is_true(math.abs(o.max - 1) < 1e-9 and o.at == 1000, string.format("%s: one element a spacing off: %.4f at %d", dtype, o.max, o.at))
    end
  end)
end)
