-- linear_cross_entropy's chunk_dtype: the chunk's logits kept in bf16 or
-- f16. The contract (docs/losses.md, section 8): the loss is that of the
-- logits rounded to nearest even in chunk_dtype, x = round(h W^T + b), and
-- dh, dW, db differentiate that loss with respect to the rounded logits and
-- then project G = dLoss/dx as usual: the chain rule takes the rounding as
-- the identity (its true derivative is 0 almost everywhere). The oracle
-- here rounds f64 logits in plain Lua, independently of the kernels' C
-- conversions, and takes the reference cross entropy of them.
local cases = require("specs.support.ce_cases")
local i64, option_cases = cases.i64, cases.option_cases

local oracle = require("specs.support.lce_oracle")
local targets_and_options = require("specs.support.lce_inputs").targets_and_options

-- Significand bits and the exponent of the smallest normal number.
local FORMATS = { bf16 = { bits = 8, emin = -126 }, f16 = { bits = 11, emin = -14, max = 65504 } }

local function round_half_even(y)
  local f = math.floor(y)
  local d = y - f
  if d > 0.5 or (d == 0.5 and f % 2 == 1) then return f + 1 end
  return f
end

-- x rounded to nearest even in dtype: |x| in [2^(e-1), 2^e) has a quantum
-- of 2^(e - bits) (subnormals: that of the smallest normal binade).
local function round_to(x, dtype)
  if x == 0 or x ~= x or x == math.huge or x == -math.huge then return x end
  local f = FORMATS[dtype]
  local _, e = math.frexp(math.abs(x))
  local q = 2 ^ math.max(e - f.bits, f.emin - f.bits + 1)
  local r = round_half_even(x / q) * q
  if f.max and math.abs(r) > f.max then return r > 0 and math.huge or -math.huge end
  return r
end

-- h (N x H) and W (V x H) with logits of std about 3. dyadic: every value a
-- multiple of 1/8 (h) or 1/64 (W and the bias, 1/16) with at most 8
-- significant bits, so that each product and every partial sum of h W^T is
-- exact in f32: the chunked backends' f32 GEMMs then give the exact logits
-- and round them exactly as the oracle does.
local function make_inputs(shape, dtype, opts, seed, dyadic)
  local function q(t, step) return dyadic and t:map(function(v) return math.floor(v / step + 0.5) * step end) or t end
  local h = q(gs.randn({ shape.n, shape.h }, { seed = seed, dtype = "f64" }), 1 / 8):to(dtype)
  local W = q(gs.randn({ shape.v, shape.h }, { seed = seed + 1, std = 3 / math.sqrt(shape.h), dtype = "f64" }),
    1 / 64):to(dtype)
  local t, o = targets_and_options(shape, opts, seed, function(s)
    return q(gs.randn({ shape.v }, { seed = s, dtype = "f64" }), 1 / 16):to(dtype)
  end)
  return h, W, t, o
end

-- The oracle of chunk_dtype: f64 logits rounded to it (none for f32).
local function expected(h, W, t, opts, grad_output, chunk_dtype)
  return oracle.expected(h, W, t, opts, grad_output,
    chunk_dtype ~= "f32" and function(v) return round_to(v, chunk_dtype) end or nil)
end

local near = require("specs.support.near_scale")

-- The fused forward (loss, lse, z_loss, gradients) and the backward of one
-- backend with opts against the oracle of chunk_dtype. row_rel (default rel)
-- is the accuracy of the per-row lse and z_loss.
local function check_all(backend, h, W, t, opts, chunk_dtype, rel, grad_rel, label, row_rel)
  local o = { backend = backend, chunk_dtype = chunk_dtype, grad = true }
  for k, v in pairs(opts) do o[k] = v end
  local none = (opts.reduction or "mean") == "none"
  local g = none and gs.randn({ h.rows }, { seed = 77 }) or 0.75
  local exp_fwd = expected(h, W, t, opts, 1, chunk_dtype)
  local exp_bwd = expected(h, W, t, opts, g, chunk_dtype)
  local loss, aux = gs.linear_cross_entropy(h, W, t, o)
  near(loss, exp_fwd.loss, rel, label .. "loss")
  near(aux.lse, exp_fwd.lse, row_rel or rel, label .. "lse")
  near(aux.z_loss, exp_fwd.z_loss, row_rel or rel, label .. "z_loss")
  near(aux.dh, exp_fwd.dh, grad_rel, label .. "dh (fused)")
  near(aux.dW, exp_fwd.dW, grad_rel, label .. "dW (fused)")
  if opts.bias then near(aux.db, exp_fwd.db, grad_rel, label .. "db (fused)") end
  o.grad = nil
  if type(g) == "table" and h.device == "cuda" then g = g:to("cuda") end
  local dh, dW, db = gs.linear_cross_entropy_backward(h, W, t, g, o)
  near(dh, exp_bwd.dh, grad_rel, label .. "dh (backward)")
  near(dW, exp_bwd.dW, grad_rel, label .. "dW (backward)")
  if opts.bias then near(db, exp_bwd.db, grad_rel, label .. "db (backward)") end
end

local odd = { n = 13, h = 19, v = 37 }

describe("linear_cross_entropy chunk_dtype: the loss of the rounded logits", function()
  it("the spec's own rounding: ties to even, the bf16 and f16 quanta, f16 overflow and subnormals", function()
    assert.equal(round_to(1 + 2 ^ -8, "bf16"), 1)              -- tie, even below
    assert.equal(round_to(1 + 3 * 2 ^ -8, "bf16"), 1 + 2 ^ -6)  -- tie, even above
    assert.equal(round_to(-(1 + 2 ^ -8 + 2 ^ -20), "bf16"), -(1 + 2 ^ -7))
    assert.equal(round_to(3.14159, "bf16"), 3.140625)
    assert.equal(round_to(3.14159, "f16"), 3.140625)
    assert.equal(round_to(1000.3, "f16"), 1000.5)
    assert.equal(round_to(65519, "f16"), 65504)
    assert.equal(round_to(65520, "f16"), math.huge)
    assert.equal(round_to(3 * 2 ^ -26, "f16"), 2 ^ -24) -- subnormal quantum 2^-24
  end)

  for _, cdt in ipairs({ "bf16", "f16" }) do
    for ci, case in ipairs(option_cases) do
      it("ref, " .. cdt .. ": " .. case.name .. " + bias", function()
        local opts = { bias = true, grad_dtype = "f64" }
        for k, v in pairs(case.opts) do opts[k] = v end
        local h, W, t, o = make_inputs(odd, "f64", opts, 20 * ci, false)
        check_all("ref", h, W, t, o, cdt, 1e-10, 1e-10, "")
      end)
    end

    it("cpu, " .. cdt .. ", exact products: chunks of 1, 4, 13 and the default, every option", function()
      for ci, case in ipairs({ option_cases[1], option_cases[3], option_cases[11], option_cases[12] }) do
        local opts = { bias = true }
        for k, v in pairs(case.opts) do opts[k] = v end
        local h, W, t, o = make_inputs(odd, "f32", opts, 300 + ci, true)
        for _, rows in ipairs({ 1, 4, 13, 0 }) do
          o.chunk_rows = rows
          check_all("cpu", h, W, t, o, cdt, 2e-5, 2e-5, string.format("%s, chunk_rows = %d: ", case.name, rows))
        end
      end
    end)
  end

  it("bf16 logits change the loss; f32 leaves the reference's f64 logits as they are", function()
    local h, W, t, o = make_inputs(odd, "f64", { reduction = "sum" }, 400, false)
    o.backend = "ref"
    local exact = gs.linear_cross_entropy(h, W, t, o)
    o.chunk_dtype = "bf16"
    local rounded = gs.linear_cross_entropy(h, W, t, o)
    o.chunk_dtype = "f32"
    local f32 = gs.linear_cross_entropy(h, W, t, o)
    assert.equal(f32, exact) -- f32 asks for no rounding: the reference keeps f64 logits
    near(rounded, exact, 1e-2, "bf16 logits")
    local rel = math.abs(rounded:item() - exact:item()) / math.abs(exact:item())
    assert.is_true(rel > 1e-5, "relative change " .. rel)
  end)

  it("chunk_dtype f32 is the default, bit for bit, on ref and cpu", function()
    local h, W, t, o = make_inputs(odd, "f32", { bias = true, label_smoothing = 0.1 }, 410, false)
    for _, backend in ipairs({ "ref", "cpu" }) do
      local base = { backend = backend, bias = o.bias, label_smoothing = 0.1, grad = true, chunk_rows = 4 }
      local l0, a0 = gs.linear_cross_entropy(h, W, t, base)
      base.chunk_dtype = "f32"
      local l1, a1 = gs.linear_cross_entropy(h, W, t, base)
      assert.equal(l1, l0)
      assert.equal(a1.dh, a0.dh)
      assert.equal(a1.dW, a0.dW)
      assert.equal(a1.db, a0.db)
    end
  end)

  it("the gradient goes straight through the rounding: it is close to the unrounded one, not 0", function()
    local h, W, t, o = make_inputs({ n = 9, h = 7, v = 15 }, "f64", { reduction = "sum" }, 420, false)
    o.backend, o.grad_dtype = "ref", "f64"
    local dh, dW = gs.linear_cross_entropy_backward(h, W, t, 1, o)
    o.chunk_dtype = "bf16"
    local dh16, dW16 = gs.linear_cross_entropy_backward(h, W, t, 1, o)
    near(dh16, dh, 2e-2, "dh")
    near(dW16, dW, 2e-2, "dW")
    assert.is_false(pcall(assert.close, dh16, dh, { rtol = 1e-9, atol = 1e-9 }), "the rounding changed nothing")
  end)
end)

describe("linear_cross_entropy chunk_dtype: the default chunk on the GPU", function()
  it("at 8192 x 128256, a bf16 chunk and the cuBLAS workspace are within 1/8 of the unfused logits and G", function()
    local n, v = 8192, 128256
    local ldx = math.ceil(v / 8) * 8
    local rows = require("gradspec.linear_ce").default_chunk_rows(n, v, "cuda")
    assert.equal(rows, 2048) -- cuBLAS's GEMMs near peak; twice the rows would not fit below
    local unfused = n * ldx * (4 + 2) -- f32 logits and G in bf16
    local fused = rows * ldx * 2 + 32 * 2 ^ 20
    assert.is_true(fused <= unfused / 8, string.format("%d bytes against %d / 8", fused, unfused))
    assert.is_true(2 * rows * ldx * 2 > unfused / 8, "a chunk of twice the rows fits too: the budget could grow")
  end)
end)

describe("linear_cross_entropy chunk_dtype: bad values are errors that name it", function()
  local h, W, t = gs.zeros({ 4, 8 }), gs.zeros({ 7, 8 }), i64({ 0, 1, 2, 3 })
  local err_cases = {
    { "f64", 'chunk_dtype = "f64" is not a chunk dtype (expected "f32", "bf16" or "f16")' },
    { "i32", 'chunk_dtype = "i32" is not a chunk dtype (expected "f32", "bf16" or "f16")' },
    { "b16", 'chunk_dtype = "b16" is not a chunk dtype' },
    { 2, 'chunk_dtype = 2 is a number, expected "f32", "bf16" or "f16"' },
    { true, 'chunk_dtype = true is a boolean, expected "f32", "bf16" or "f16"' },
  }
  for _, case in ipairs(err_cases) do
    it(string.format("chunk_dtype = %s", tostring(case[1])), function()
      assert.error(function() gs.linear_cross_entropy(h, W, t, { chunk_dtype = case[1] }) end,
        "linear_cross_entropy: " .. case[2])
      assert.error(function() gs.linear_cross_entropy_backward(h, W, t, 1, { chunk_dtype = case[1] }) end,
        "linear_cross_entropy_backward: " .. case[2])
    end)
  end

  it("aliases name the same dtypes", function()
    local l1 = gs.linear_cross_entropy(h, W, t, { chunk_dtype = "bfloat16" })
    local l2 = gs.linear_cross_entropy(h, W, t, { chunk_dtype = "bf16" })
    assert.equal(l1, l2)
  end)

  -- Past the Lua checks: the C contract refuses any other code itself, on
  -- every backend, naming the field and the value.
  it("the C entry points refuse an integer or unknown chunk_dtype code", function()
    local gffi = require("gradspec.ffi")
    local ffi, C = gffi.ffi, gffi.C
    local hh, WW = gs.randn({ 2, 3 }, { seed = 1 }), gs.randn({ 4, 3 }, { seed = 2 })
    local tt = i64({ 0, 3 })
    local loss = gs.zeros({})
    for _, code in ipairs({ { 4, "i32 (code 4)" }, { 5, "i64 (code 5)" }, { 9, "unknown (code 9)" } }) do
      for _, backend in ipairs({ "ref", "cpu" }) do
        local a = ffi.new("gs_lce_args")
        a.n, a.hidden, a.v = 2, 3, 4
        a.h, a.h_dtype, a.h_stride = hh:data(), 1, 3
        a.w, a.w_dtype, a.w_stride = WW:data(), 1, 3
        a.target, a.target_dtype, a.ignore_index = tt:data(), 5, -100
        a.logit_scale, a.reduction = 1, 1
        a.loss = (backend == "ref" and loss:to("f64") or loss):data()
        a.chunk_dtype = code[1]
        local err = ffi.new("gs_error")
        local st = C["gs_lce_forward_" .. backend](a, err)
        assert.equal(tonumber(st), 2, backend .. ": status")
        assert.equal(ffi.string(err.arg), "chunk_dtype")
        assert.equal(ffi.string(err.msg), "chunk_dtype = " .. code[2] .. " is not a chunk dtype (f32, bf16 or f16)")
      end
    end
  end)
end)

-- The GPU: the chunk in h's dtype (bf16, f16) against the reference of the
-- same chunk_dtype, on inputs whose logits cuBLAS computes exactly, so that
-- both round the same values. dW in h's dtype (f32 scratch across chunks,
-- written directly by a single chunk) and in f32 (accumulated in place).
describe("linear_cross_entropy chunk_dtype on cuda", { tags = { "cuda" } }, function()
  local TOL = { bf16 = 1.5e-2, f16 = 3e-3 }

  local function on_cuda(o)
    local c = {}
    for k, v in pairs(o) do c[k] = (type(v) == "table" and v.to) and v:to("cuda") or v end
    return c
  end

  for _, dtype in ipairs({ "bf16", "f16" }) do
    for ci, case in ipairs({ option_cases[1], option_cases[3], option_cases[4], option_cases[11], option_cases[12] }) do
      it(dtype .. " chunk: " .. case.name .. " + bias; chunks of 1, 4, 5 (last of 3), 13 (one) and the default; "
        .. "dW in " .. dtype .. " and f32", function()
        local opts = { bias = true }
        for k, v in pairs(case.opts) do opts[k] = v end
        local h, W, t, o = make_inputs(odd, dtype, opts, 500 + ci, true)
        local hc, Wc, tc = h:to("cuda"), W:to("cuda"), t:to("cuda")
        for _, gdt in ipairs({ false, "f32" }) do
          for _, rows in ipairs({ 1, 4, 5, 13, 0 }) do
            local oc = on_cuda(o)
            oc.chunk_rows, oc.grad_dtype = rows, gdt
            -- the loss from logits equal to the oracle's: f32 arithmetic alone
            check_all("cuda", hc, Wc, tc, oc, dtype, 2e-5, TOL[dtype],
              string.format("grad_dtype %s, chunk_rows = %d: ", tostring(gdt or dtype), rows))
          end
        end
      end)
    end
  end

  it("bf16 chunk on random inputs: within a bf16 step of the reference's rounded logits", function()
    local h, W, t, o = make_inputs({ n = 64, h = 96, v = 300 }, "bf16", { bias = true }, 600, false)
    -- an f32 sum may land on the other side of a rounding boundary than the
    -- exact one (about 1 logit in 2000 here): one logit a bf16 step away
    -- (1/16 below 16) moves the mean loss by < 1e-3 and its row's lse by
    -- < 1/16, within 1e-2 of lse's of about 8
    check_all("cuda", h:to("cuda"), W:to("cuda"), t:to("cuda"), on_cuda(o), "bf16", 1e-3, 1.5e-2, "random: ", 1e-2)
  end)

  it("refused: a 16-bit chunk other than h's dtype", function()
    local W = gs.zeros({ 7, 8 }, { device = "cuda" })
    local h, t = gs.zeros({ 4, 8 }, { device = "cuda" }), i64({ 0, 1, 2, 3 }):to("cuda")
    assert.error(function() gs.linear_cross_entropy(h, W, t, { chunk_dtype = "bf16" }) end,
      "chunk_dtype = bf16 is not supported by backend cuda with h in f32 (f32 or h's dtype)")
    assert.error(function() gs.linear_cross_entropy(h:to("bf16"), W:to("bf16"), t, { chunk_dtype = "f16" }) end,
      "chunk_dtype = f16 is not supported by backend cuda with h in bf16 (f32 or h's dtype)")
  end)

  -- Extra memory: the bf16 chunk alone (G over the logits), no second
  -- buffer, no dW scratch for an f32 dW, and none for a bf16 dW in one chunk.
  local function extra_bytes(h, W, t, opts, outputs)
    local C = require("gradspec.ffi").C
    local loss, aux = gs.linear_cross_entropy(h, W, t, opts) -- warm: cuBLAS workspace, pool
    assert.finite(loss)
    assert.finite(aux.dW)
    assert.finite(aux.dh)
    C.gs_cuda_reset_peak()
    local base = tonumber(C.gs_cuda_bytes_in_use())
    local loss2, aux2 = gs.linear_cross_entropy(h, W, t, opts)
    local extra = tonumber(C.gs_cuda_peak_bytes()) - base - outputs
    assert.close(loss2, loss, { rtol = 0, atol = 0 })
    assert.equal(aux2.dW, aux.dW)
    assert.equal(aux2.dh, aux.dh) -- the same bits: nothing in the call depends on its scheduling
    return extra
  end

  it("extra device memory: rows x V x 2 bytes for a bf16 chunk, nothing else", function()
    local n, hd, v, rows = 4096, 64, 4096, 256
    local h = gs.randn({ n, hd }, { seed = 930, dtype = "bf16", device = "cuda" })
    local W = gs.randn({ v, hd }, { seed = 931, dtype = "bf16", std = 0.2, device = "cuda" })
    local t = gs.randint(0, v, { n }, { seed = 932, device = "cuda" })
    local losses = 2 * n * 4 + 4 -- lse and z_loss rows, the mean
    -- the chunk losses, the target scan and the cross-entropy kernel's row
    -- sums (8 bytes a row): less than the 1 MiB dW scratch and the 2 MiB chunk
    local small = 262144

    local f32_dw = extra_bytes(h, W, t, { grad = true, chunk_rows = rows, chunk_dtype = "bf16", grad_dtype = "f32" },
      losses + (n * hd + v * hd) * 4)
    assert.is_true(f32_dw <= rows * v * 2 + small,
      string.format("dW f32: extra %d bytes, chunk %d", f32_dw, rows * v * 2))

    local bf16_dw = extra_bytes(h, W, t, { grad = true, chunk_rows = rows, chunk_dtype = "bf16" },
      losses + (n * hd + v * hd) * 2)
    local scratch = v * hd * 4
    assert.is_true(bf16_dw >= scratch and bf16_dw <= rows * v * 2 + scratch + small,
      string.format("dW bf16 over %d chunks: extra %d bytes, chunk %d + f32 scratch %d", n / rows, bf16_dw,
        rows * v * 2, scratch))

    local one = extra_bytes(h, W, t, { grad = true, chunk_rows = n, chunk_dtype = "bf16" },
      losses + (n * hd + v * hd) * 2)
    assert.is_true(one <= n * v * 2 + small, string.format("dW bf16 in one chunk: extra %d bytes, chunk %d", one,
      n * v * 2))
  end)
end)
