-- Fused linear cross entropy (x = h W^T + b, then cross entropy, chunk by
-- chunk): every backend against "matmul in f64, then the reference cross
-- entropy", with dh = G W, dW = G^T h, db = sum_i G_i from the reference
-- backward G = dLoss/dx. Every option, odd shapes, chunk sizes that do and do
-- not divide N, mean across chunks, per-row grad_output, N = 0, every row
-- ignored, finite differences, and errors. The contract is docs/losses.md.
local cases = require("specs.support.ce_cases")
local i64, option_cases = cases.i64, cases.option_cases

local expected = require("specs.support.lce_oracle").expected
local targets_and_options = require("specs.support.lce_inputs").targets_and_options

-- h (N x H), W (V x H) scaled so that the logits have a std of about 3,
-- targets with an ignored row and, for ignore_index = 1 cases, class 1;
-- opts.weight = true and opts.bias = true are drawn here.
local function make_inputs(shape, dtype, opts, seed)
  local h = gs.randn({ shape.n, shape.h }, { seed = seed, dtype = dtype, stride = shape.h_stride })
  local W = gs.randn({ shape.v, shape.h }, { seed = seed + 1, std = 3 / math.sqrt(shape.h), dtype = dtype,
    stride = shape.w_stride })
  local t, o = targets_and_options(shape, opts, seed, function(s)
    return gs.randn({ shape.v }, { seed = s, dtype = dtype })
  end)
  return h, W, t, o
end

local near = require("specs.support.near_scale")

-- Accuracy asked of each backend against the f64 oracle.
local REL = { ref = 1e-10, cpu = 2e-5 }

-- Checks a forward (+ fused gradient) and a backward call against the oracle.
local function check_all(backend, h, W, t, opts, rel, label)
  label = label or ""
  local o = { backend = backend }
  for k, v in pairs(opts) do o[k] = v end
  if backend == "ref" then o.grad_dtype = "f64" end -- by default the reference rounds to h's dtype
  local none = (opts.reduction or "mean") == "none"
  local g = none and gs.randn({ h.rows }, { seed = 77 }) or 0.75
  local exp_fwd = expected(h, W, t, opts, 1)
  local exp_bwd = expected(h, W, t, opts, g)

  o.grad = true
  local loss, aux = gs.linear_cross_entropy(h, W, t, o)
  near(loss, exp_fwd.loss, rel, label .. "loss")
  near(aux.lse, exp_fwd.lse, rel, label .. "lse")
  near(aux.z_loss, exp_fwd.z_loss, rel, label .. "z_loss")
  near(aux.dh, exp_fwd.dh, rel, label .. "dh (fused)")
  near(aux.dW, exp_fwd.dW, rel, label .. "dW (fused)")
  if opts.bias then near(aux.db, exp_fwd.db, rel, label .. "db (fused)") end

  o.grad = nil
  local dh, dW, db = gs.linear_cross_entropy_backward(h, W, t, g, o)
  near(dh, exp_bwd.dh, rel, label .. "dh (backward)")
  near(dW, exp_bwd.dW, rel, label .. "dW (backward)")
  if opts.bias then near(db, exp_bwd.db, rel, label .. "db (backward)") else assert.is_true(db == nil) end
end

local odd = { n = 13, h = 19, v = 37 }
local CHUNKS = { 1, 4, 13, 100, 0 } -- 4 leaves a last chunk of 1 row; 0 is the default

describe("linear_cross_entropy against matmul in f64 then the reference cross entropy", function()
  for ci, case in ipairs(option_cases) do
    for _, bias in ipairs({ false, true }) do
      local label = case.name .. (bias and " + bias" or "")
      it("ref: " .. label, function()
        local opts = {}
        for k, v in pairs(case.opts) do opts[k] = v end
        opts.bias = bias or nil
        local h, W, t, o = make_inputs(odd, "f64", opts, 10 * ci)
        check_all("ref", h, W, t, o, REL.ref)
      end)

      it("cpu, chunks of 1, 4, 13, 100 rows and the default: " .. label, function()
        local opts = {}
        for k, v in pairs(case.opts) do opts[k] = v end
        opts.bias = bias or nil
        local h, W, t, o = make_inputs(odd, "f32", opts, 10 * ci)
        for _, rows in ipairs(CHUNKS) do
          o.chunk_rows = rows
          check_all("cpu", h, W, t, o, REL.cpu, "chunk_rows = " .. rows .. ": ")
        end
      end)
    end
  end

  local shapes = {
    { n = 29, h = 33, v = 1500, chunk = 8, name = "V wider than the cross-entropy kernel's column chunk" },
    { n = 7, h = 1, v = 5, chunk = 3, name = "H = 1" },
    { n = 6, h = 9, v = 1, chunk = 4, name = "V = 1 (zero loss and gradient)" },
    { n = 9, h = 12, v = 21, h_stride = 15, w_stride = 13, chunk = 2, name = "h and W with row strides" },
    { n = 1, h = 5, v = 3, chunk = 1, name = "one row" },
  }
  for si, shape in ipairs(shapes) do
    it("cpu and ref, " .. shape.name .. string.format(" (%dx%d, V = %d)", shape.n, shape.h, shape.v), function()
      local opts = { bias = true, label_smoothing = 0.1, lse_square_scale = 1e-3, reduction = "sum" }
      local h, W, t, o = make_inputs(shape, "f32", opts, 300 + si)
      check_all("ref", h, W, t, o, REL.ref)
      o.chunk_rows = shape.chunk
      check_all("cpu", h, W, t, o, REL.cpu)
    end)
  end

  it("logits in the thousands stay finite and exact (the row max is subtracted before exp)", function()
    local h, W, t, o = make_inputs({ n = 6, h = 8, v = 11 }, "f32", { reduction = "sum", bias = true }, 450)
    h = h:mul(400):to("f32") -- logits with a std of about 1200: exp overflows even in f64
    local exp = expected(h, W, t, o, 1)
    for _, backend in ipairs({ "ref", "cpu" }) do
      local loss, aux = gs.linear_cross_entropy(h, W, t, { backend = backend, reduction = "sum", bias = o.bias,
        grad = true, chunk_rows = 4, grad_dtype = backend == "ref" and "f64" or nil })
      assert.finite(loss)
      near(loss, exp.loss, REL[backend], backend .. ": loss")
      near(aux.dh, exp.dh, REL[backend], backend .. ": dh")
      near(aux.dW, exp.dW, REL[backend], backend .. ": dW")
      near(aux.db, exp.db, REL[backend], backend .. ": db")
    end
  end)

  it("i32 targets give the same result as i64", function()
    local h, W, t, o = make_inputs(odd, "f32", { reduction = "sum", bias = true }, 400)
    o.chunk_rows = 5
    local l64, a64 = gs.linear_cross_entropy(h, W, t, { bias = o.bias, chunk_rows = 5, grad = true })
    local l32, a32 = gs.linear_cross_entropy(h, W, t:to("i32"), { bias = o.bias, chunk_rows = 5, grad = true })
    assert.equal(l32, l64)
    assert.equal(a32.dh, a64.dh)
    assert.equal(a32.dW, a64.dW)
    assert.equal(a32.db, a64.db)
  end)
end)

describe("linear_cross_entropy: mean across chunks", function()
  -- Rows 0-3 ignored (a whole chunk of 4), heavy weights late in the batch:
  -- each chunk's own D differs from the batch's.
  local function uneven()
    local h, W, _, o = make_inputs({ n = 11, h = 10, v = 17 }, "f32", { weight = true }, 500)
    local t = i64({ -100, -100, -100, -100, 3, 16, 0, 5, 5, 9, 2 })
    return h, W, t, o
  end

  it("divides by D of the whole batch, not of each chunk (class weights, a fully ignored chunk)", function()
    local h, W, t, o = uneven()
    local exp = expected(h, W, t, o, 1)
    for _, rows in ipairs({ 1, 3, 4, 5, 11 }) do
      local loss, aux = gs.linear_cross_entropy(h, W, t, { weight = o.weight, chunk_rows = rows, grad = true })
      near(loss, exp.loss, REL.cpu, "loss, chunk_rows = " .. rows)
      near(aux.dh, exp.dh, REL.cpu, "dh, chunk_rows = " .. rows)
      near(aux.dW, exp.dW, REL.cpu, "dW, chunk_rows = " .. rows)
    end
  end)

  it("the z-loss term is divided by the non-ignored count while the rest is divided by D", function()
    local h, W, t, o = uneven()
    o.lse_square_scale, o.label_smoothing = 0.05, 0.1
    local exp = expected(h, W, t, o, 1)
    for _, rows in ipairs({ 2, 4, 11 }) do
      o.chunk_rows, o.grad = rows, true
      local loss, aux = gs.linear_cross_entropy(h, W, t, o)
      near(loss, exp.loss, REL.cpu, "loss, chunk_rows = " .. rows)
      near(aux.z_loss, exp.z_loss, REL.cpu, "z_loss rows, chunk_rows = " .. rows)
      near(aux.dh, exp.dh, REL.cpu, "dh, chunk_rows = " .. rows)
      near(aux.dW, exp.dW, REL.cpu, "dW, chunk_rows = " .. rows)
    end
    -- and the two divisors really differ here: D is the weight sum, not 7
    local d = 0
    for _, c in ipairs({ 3, 16, 0, 5, 5, 9, 2 }) do d = d + o.weight:get(c) end
    assert.is_true(math.abs(d - 7) > 0.5, "D = " .. d)
  end)

  it("the mean is the sum divided by D, whatever the chunking", function()
    local h, W, t, o = uneven()
    local sum = gs.linear_cross_entropy(h, W, t, { weight = o.weight, reduction = "sum", chunk_rows = 3 })
    local mean = gs.linear_cross_entropy(h, W, t, { weight = o.weight, chunk_rows = 2 })
    local d = 0
    for _, c in ipairs({ 3, 16, 0, 5, 5, 9, 2 }) do d = d + o.weight:get(c) end
    assert.close(mean, sum:div(d), { rtol = 1e-6 })
  end)
end)

describe("linear_cross_entropy: grad_output", function()
  it("a per-row grad_output scales each row of G before the projection onto W and b", function()
    local h, W, t, o = make_inputs({ n = 10, h = 8, v = 23 }, "f32", { reduction = "none", bias = true }, 600)
    local g = gs.tensor({ 2, 0, -1, 0.5, 3, 1, -2, 0, 1.5, 4 })
    local exp = expected(h, W, t, o, g)
    for _, rows in ipairs({ 1, 3, 10 }) do
      o.chunk_rows = rows
      local dh, dW, db = gs.linear_cross_entropy_backward(h, W, t, g, o)
      near(dh, exp.dh, REL.cpu, "dh, chunk_rows = " .. rows)
      near(dW, exp.dW, REL.cpu, "dW, chunk_rows = " .. rows)
      near(db, exp.db, REL.cpu, "db, chunk_rows = " .. rows)
      assert.all(dh:row(1), "==0")
      assert.all(dh:row(7), "==0")
    end
    -- scaling after the projection (by the mean of g, say) gives something else
    local mean_g = g:mean():item()
    local unit = expected(h, W, t, o, 1)
    assert.is_false(pcall(assert.close, exp.dW, unit.dW:mul(mean_g), { rtol = 1e-3, atol = 1e-3 }))
  end)

  it("the fused forward takes a per-row grad_output too", function()
    local h, W, t, o = make_inputs({ n = 9, h = 7, v = 15 }, "f32", { reduction = "none", label_smoothing = 0.2 }, 610)
    local g = gs.randn({ 9 }, { seed = 611 })
    o.grad, o.grad_output, o.chunk_rows = true, g, 4
    local loss, aux = gs.linear_cross_entropy(h, W, t, o)
    local exp = expected(h, W, t, o, g)
    near(loss, exp.loss, REL.cpu, "loss")
    near(aux.dh, exp.dh, REL.cpu, "dh")
    near(aux.dW, exp.dW, REL.cpu, "dW")
  end)

  it("a scalar grad_output scales every gradient, under sum and mean", function()
    for _, reduction in ipairs({ "sum", "mean", "none" }) do
      local h, W, t, o = make_inputs({ n = 8, h = 6, v = 11 }, "f32", { reduction = reduction, bias = true }, 620)
      o.chunk_rows = 3
      local exp = expected(h, W, t, o, -2.5)
      local dh, dW, db = gs.linear_cross_entropy_backward(h, W, t, -2.5, o)
      near(dh, exp.dh, REL.cpu, reduction .. ": dh")
      near(dW, exp.dW, REL.cpu, reduction .. ": dW")
      near(db, exp.db, REL.cpu, reduction .. ": db")
    end
  end)
end)

describe("linear_cross_entropy: empty and fully ignored batches", function()
  for _, backend in ipairs({ "ref", "cpu" }) do
    it(backend .. ": N = 0 gives an empty per-row loss, sum 0, mean NaN and zero dW, db", function()
      local h, W = gs.zeros({ 0, 6 }), gs.randn({ 5, 6 }, { seed = 700 })
      local t = gs.zeros({ 0 }, { dtype = "i64" })
      local bias = gs.randn({ 5 }, { seed = 701 })
      local none = gs.linear_cross_entropy(h, W, t, { backend = backend, reduction = "none" })
      assert.close(none, gs.zeros({ 0 }))
      assert.close(gs.linear_cross_entropy(h, W, t, { backend = backend, reduction = "sum" }), 0, { atol = 0 })
      local mean, aux = gs.linear_cross_entropy(h, W, t, { backend = backend, grad = true, bias = bias })
      assert.all(mean, "nan")
      assert.close(aux.dh, gs.zeros({ 0, 6 }))
      assert.all(aux.dW, "==0")
      assert.all(aux.db, "==0")
    end)

    it(backend .. ": every row ignored: mean NaN, sum 0, zero lse and gradients", function()
      local h, W = gs.randn({ 5, 4 }, { seed = 710 }), gs.randn({ 6, 4 }, { seed = 711 })
      local t = i64({ -100, -100, -100, -100, -100 })
      local bias = gs.randn({ 6 }, { seed = 712 })
      local mean, aux = gs.linear_cross_entropy(h, W, t, { backend = backend, grad = true, bias = bias, chunk_rows = 2,
        lse_square_scale = 0.1 })
      assert.all(mean, "nan")
      assert.all(aux.lse, "==0")
      assert.all(aux.z_loss, "==0")
      assert.all(aux.dh, "==0")
      assert.all(aux.dW, "==0")
      assert.all(aux.db, "==0")
      assert.close(gs.linear_cross_entropy(h, W, t, { backend = backend, reduction = "sum" }), 0, { atol = 0 })
    end)
  end
end)

describe("linear_cross_entropy: finite differences", function()
  -- The reference in f64, every option at once: h, W and the bias each.
  local fd_cases = {
    { name = "mean, weight, smoothing, softcap, z-loss, scale", opts = { weight = true, label_smoothing = 0.1,
      softcap = 4, lse_square_scale = 1e-2, logit_scale = 1.3, ignore_index = 1 } },
    { name = "none with a per-row grad_output", opts = { reduction = "none", label_smoothing = 0.05 } },
  }
  for ci, case in ipairs(fd_cases) do
    it("ref gradients of h, W and bias: " .. case.name, function()
      local opts = { bias = true }
      for k, v in pairs(case.opts) do opts[k] = v end
      local h, W, t, o = make_inputs({ n = 5, h = 4, v = 7 }, "f64", opts, 800 + ci)
      o.backend = "ref"
      local none = o.reduction == "none"
      local g = none and gs.randn({ 5 }, { seed = 810, dtype = "f64" }) or 1
      local function loss_of(hh, WW, bb)
        local oo = {}
        for k, v in pairs(o) do oo[k] = v end
        oo.bias = bb
        local l = gs.linear_cross_entropy(hh, WW, t, oo)
        return none and l:dot(g) or l
      end
      local dh, dW, db = gs.linear_cross_entropy_backward(h, W, t, g, o)
      gs.gradcheck(function(x) return loss_of(x, W, o.bias) end, h, dh)
      gs.gradcheck(function(x) return loss_of(h, x, o.bias) end, W, dW)
      gs.gradcheck(function(x) return loss_of(h, W, x) end, o.bias, db)
    end)
  end

  it("cpu gradients match central differences of the cpu loss (f32, loose)", function()
    local h, W, t, o = make_inputs({ n = 6, h = 5, v = 9 }, "f32", { bias = true, softcap = 5, lse_square_scale = 1e-2,
      reduction = "sum" }, 820)
    o.chunk_rows = 4
    local dh, dW, db = gs.linear_cross_entropy_backward(h, W, t, 1, o)
    local fd = { eps = 1e-3, rtol = 1e-2, atol = 2e-3 }
    local function f32(x) return x:to("f32") end
    gs.gradcheck(function(x) return gs.linear_cross_entropy(f32(x), W, t, o) end, h, dh, fd)
    gs.gradcheck(function(x) return gs.linear_cross_entropy(h, f32(x), t, o) end, W, dW, fd)
    local ob = {}
    for k, v in pairs(o) do ob[k] = v end
    gs.gradcheck(function(x) ob.bias = f32(x) return gs.linear_cross_entropy(h, W, t, ob) end, o.bias, db, fd)
  end)
end)

describe("linear_cross_entropy: bad input is an error that names it", function()
  local h, W, t = gs.zeros({ 4, 8 }), gs.zeros({ 7, 8 }), i64({ 0, 1, 2, 3 })
  local err_cases = {
    { "W with a different H than h", function() gs.linear_cross_entropy(h, gs.zeros({ 7, 9 }), t) end,
      "W has shape {7, 9} but h has shape {4, 8}: W needs H = 8 columns" },
    { "bias of the wrong length", function() gs.linear_cross_entropy(h, W, t, { bias = gs.zeros({ 6 }) }) end,
      "bias has shape {6} but W has 7 rows (needs {7})" },
    { "an unknown option (a typo)", function() gs.linear_cross_entropy(h, W, t, { chunk_size = 4 }) end,
      "linear_cross_entropy: unknown option 'chunk_size'" },
    { "backward: an unknown option", function() gs.linear_cross_entropy_backward(h, W, t, 1, { grad = true }) end,
      "linear_cross_entropy_backward: unknown option 'grad'" },
    { "target of the wrong length", function() gs.linear_cross_entropy(h, W, i64({ 0, 1 })) end,
      "target has shape {2} but h has 4 rows (needs {4})" },
    { "target out of range, with its row in the whole batch (not in the chunk)",
      function() gs.linear_cross_entropy(h, W, i64({ 0, 1, 2, 9 }), { chunk_rows = 2 }) end,
      "target[3] = 9 is outside [0, 7)" },
    { "ref: target out of range", function() gs.linear_cross_entropy(h, W, i64({ -3, 1, 2, 3 }), { backend = "ref" }) end,
      "target[0] = -3 is outside [0, 7)" },
    { "1-D h", function() gs.linear_cross_entropy(gs.zeros({ 8 }), W, t) end, "h must be 2-D (N x H)" },
    { "1-D W", function() gs.linear_cross_entropy(h, gs.zeros({ 8 }), t) end, "W must be 2-D (V x H)" },
    { "W in another dtype than h", function() gs.linear_cross_entropy(h, W:to("f64"), t) end,
      "W dtype f64 differs from h dtype f32" },
    { "bf16 h on the cpu backend", function() gs.linear_cross_entropy(h:to("bf16"), W:to("bf16"), t) end,
      "h dtype bf16 is not supported by backend cpu (f32 only)" },
    { "negative chunk_rows", function() gs.linear_cross_entropy(h, W, t, { chunk_rows = -1 }) end,
      "chunk_rows = -1 must be >= 1" },
    { "fractional chunk_rows", function() gs.linear_cross_entropy(h, W, t, { chunk_rows = 2.5 }) end,
      "chunk_rows = 2.5 is not an integer" },
    { "per-row grad_output with mean", function() gs.linear_cross_entropy_backward(h, W, t, gs.ones({ 4 })) end,
      "per-row grad_output needs reduction \"none\"" },
    { "grad_output of the wrong length",
      function() gs.linear_cross_entropy_backward(h, W, t, gs.ones({ 3 }), { reduction = "none" }) end,
      "grad_output has 3 values" },
    { "grad_output without grad", function() gs.linear_cross_entropy(h, W, t, { grad_output = 2 }) end,
      "grad_output needs grad = true" },
    { "label_smoothing above 1", function() gs.linear_cross_entropy(h, W, t, { label_smoothing = 1.5 }) end,
      "label_smoothing = 1.5 is outside [0, 1]" },
    { "weight of the wrong length", function() gs.linear_cross_entropy(h, W, t, { weight = gs.ones({ 8 }) }) end,
      "weight has shape {8} but there are 7 classes" },
    { "an unknown backend", function() gs.linear_cross_entropy(h, W, t, { backend = "gpu" }) end,
      "backend = gpu is unknown" },
    { "a string as an option value", function() gs.linear_cross_entropy(h, W, t, { softcap = "2" }) end,
      'softcap = "2" is a string, expected a number' },
    { "W not a tensor", function() gs.linear_cross_entropy(h, {}, t) end, "W must be a tensor, got table" },
  }
  for _, case in ipairs(err_cases) do
    it(case[1], function() assert.error(case[2], case[3]) end)
  end
end)

-- The GPU: every dtype against the oracle, the f32 accumulation of dW across
-- chunks, per-row grad_output, mean across chunks, memory bounded by the
-- chunk. Skipped where there is no GPU.
describe("linear_cross_entropy on cuda", { tags = { "cuda" } }, function()
  local TOL = { f32 = 2e-5, bf16 = 1.5e-2, f16 = 3e-3 }

  local function on_cuda(o)
    local c = {}
    for k, v in pairs(o) do c[k] = (type(v) == "table" and v.to) and v:to("cuda") or v end
    return c
  end

  for _, dtype in ipairs({ "f32", "bf16", "f16" }) do
    for ci, case in ipairs(option_cases) do
      it(dtype .. ": " .. case.name .. " + bias, chunks of 1, 4 and the default", function()
        local opts = { bias = true }
        for k, v in pairs(case.opts) do opts[k] = v end
        local h, W, t, o = make_inputs(odd, dtype, opts, 10 * ci)
        local none = (o.reduction or "mean") == "none"
        local g = none and gs.randn({ odd.n }, { seed = 77 }) or 0.75
        local exp_fwd, exp_bwd = expected(h, W, t, o, 1), expected(h, W, t, o, g)
        local hc, Wc, tc = h:to("cuda"), W:to("cuda"), t:to("cuda")
        for _, rows in ipairs({ 1, 4, 0 }) do
          local oc = on_cuda(o)
          oc.chunk_rows, oc.grad = rows, true
          local label = string.format("chunk_rows = %d: ", rows)
          local loss, aux = gs.linear_cross_entropy(hc, Wc, tc, oc)
          near(loss, exp_fwd.loss, 2e-5, label .. "loss") -- f32 logits from exact products
          near(aux.lse, exp_fwd.lse, 2e-5, label .. "lse")
          near(aux.dh, exp_fwd.dh, TOL[dtype], label .. "dh")
          near(aux.dW, exp_fwd.dW, TOL[dtype], label .. "dW")
          near(aux.db, exp_fwd.db, TOL[dtype], label .. "db")
          oc.grad = nil
          local dh, dW, db = gs.linear_cross_entropy_backward(hc, Wc, tc, type(g) == "table" and g:to("cuda") or g, oc)
          near(dh, exp_bwd.dh, TOL[dtype], label .. "dh (backward)")
          near(dW, exp_bwd.dW, TOL[dtype], label .. "dW (backward)")
          near(db, exp_bwd.db, TOL[dtype], label .. "db (backward)")
        end
      end)
    end
  end

  it("bf16 dW accumulated over 512 one-row chunks stays as accurate as one chunk (f32 accumulation)", function()
    local shape = { n = 512, h = 16, v = 64 }
    local h, W, t = make_inputs(shape, "bf16", {}, 900)
    local exp = expected(h, W, t, { reduction = "sum" }, 1)
    local hc, Wc, tc = h:to("cuda"), W:to("cuda"), t:to("cuda")
    local dh_many, many = gs.linear_cross_entropy_backward(hc, Wc, tc, 1, { reduction = "sum", chunk_rows = 1 })
    local dh_one, one = gs.linear_cross_entropy_backward(hc, Wc, tc, 1, { reduction = "sum", chunk_rows = 512 })
    near(dh_many, exp.dh, 1.5e-2, "dh from 512 chunks")
    near(dh_one, exp.dh, 1.5e-2, "dh from one chunk")
    -- one bf16 rounding of the result (2^-8 relative) plus bf16 G, nothing that grows with the chunk count
    near(many, exp.dW, 1.5e-2, "dW from 512 chunks")
    near(one, exp.dW, 1.5e-2, "dW from one chunk")
    near(many, one, 8e-3, "512 chunks against one")
  end)

  it("per-row grad_output and the mean's D across chunks", function()
    local h, W, t, o = make_inputs({ n = 11, h = 10, v = 17 }, "f32", { weight = true, lse_square_scale = 0.05 }, 910)
    t = i64({ -100, -100, -100, -100, 3, 16, 0, 5, 5, 9, 2 })
    local exp = expected(h, W, t, o, 1)
    local oc = on_cuda(o)
    oc.chunk_rows, oc.grad = 4, true
    local loss, aux = gs.linear_cross_entropy(h:to("cuda"), W:to("cuda"), t:to("cuda"), oc)
    near(loss, exp.loss, 2e-5, "loss")
    near(aux.z_loss, exp.z_loss, 2e-5, "z_loss")
    near(aux.dW, exp.dW, 2e-5, "dW")
    near(aux.dh, exp.dh, 2e-5, "dh")
    local g = gs.randn({ 11 }, { seed = 911 })
    o.reduction = "none"
    local exp_none = expected(h, W, t, o, g)
    local oc2 = on_cuda(o)
    oc2.chunk_rows = 3
    local dh, dW = gs.linear_cross_entropy_backward(h:to("cuda"), W:to("cuda"), t:to("cuda"), g:to("cuda"), oc2)
    near(dh, exp_none.dh, 2e-5, "dh, per-row grad_output")
    near(dW, exp_none.dW, 2e-5, "dW, per-row grad_output")
  end)

  it("N = 0 and every row ignored", function()
    local W = gs.randn({ 5, 6 }, { seed = 920, device = "cuda" })
    local bias = gs.randn({ 5 }, { seed = 921, device = "cuda" })
    local mean, aux = gs.linear_cross_entropy(gs.zeros({ 0, 6 }, { device = "cuda" }), W,
      gs.zeros({ 0 }, { dtype = "i64", device = "cuda" }), { grad = true, bias = bias })
    assert.all(mean, "nan")
    assert.all(aux.dW, "==0")
    assert.all(aux.db, "==0")
    assert.close(aux.dh, gs.zeros({ 0, 6 }))
    local h = gs.randn({ 3, 6 }, { seed = 922, device = "cuda" })
    local t = i64({ -100, -100, -100 }):to("cuda")
    local m2, a2 = gs.linear_cross_entropy(h, W, t, { grad = true, bias = bias, chunk_rows = 2 })
    assert.all(m2, "nan")
    assert.all(a2.dh, "==0")
    assert.all(a2.dW, "==0")
    assert.all(a2.db, "==0")
  end)

  it("a bad target names its row in the whole batch", function()
    local h, W = gs.zeros({ 4, 8 }, { device = "cuda" }), gs.zeros({ 7, 8 }, { device = "cuda" })
    assert.error(function() gs.linear_cross_entropy(h, W, i64({ 0, 1, 2, 9 }):to("cuda"), { chunk_rows = 2 }) end,
      "target[3] = 9 is outside [0, 7)")
  end)

  it("extra device memory is bounded by the chunk, not by N x V", function()
    local C = require("gradspec.ffi").C
    local n, hd, v, rows = 4096, 64, 4096, 256
    local h = gs.randn({ n, hd }, { seed = 930, dtype = "bf16", device = "cuda" })
    local W = gs.randn({ v, hd }, { seed = 931, dtype = "bf16", std = 0.2, device = "cuda" })
    local t = gs.randint(0, v, { n }, { seed = 932, device = "cuda" })
    local loss, aux = gs.linear_cross_entropy(h, W, t, { grad = true, chunk_rows = rows }) -- warm: cuBLAS workspace
    assert.finite(loss)
    assert.finite(aux.dh)
    assert.finite(aux.dW)
    local outputs = (n * hd + v * hd) * 2 + 3 * n * 4 + 4
    C.gs_cuda_reset_peak()
    local base = tonumber(C.gs_cuda_bytes_in_use())
    local loss2, aux2 = gs.linear_cross_entropy(h, W, t, { grad = true, chunk_rows = rows })
    local extra = tonumber(C.gs_cuda_peak_bytes()) - base - outputs
    local chunk = rows * v * (4 + 2) + v * hd * 4 + rows * 2 -- f32 logits, bf16 G, f32 dW, ones
    assert.is_true(extra <= chunk + 1048576, string.format("extra %d bytes, chunk %d", extra, chunk))
    assert.is_true(extra < n * v * 2, "less than the bf16 logits alone")
    assert.close(loss2, loss, { rtol = 0, atol = 0 })
    assert.equal(aux2.dh, aux.dh)
    assert.equal(aux2.dW, aux.dW)
  end)
end)
