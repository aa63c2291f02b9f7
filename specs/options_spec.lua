-- Option values: every option of every op is checked for its value as well
-- as its name. A bad value is an error that names the op, the option and
-- the value, raised before anything runs. The tables below are the
-- contract: an option added to an op without bad values here fails the
-- first describe, so that no option goes unchecked.
local ops = require("gradspec.ops")
local lce = require("gradspec.linear_ce")

local V = 5
local x = gs.randn({ 3, V }, { seed = 1 })
local t = gs.tensor({ 0, 4, 2 }, { dtype = "i64" })
local h, W = gs.randn({ 3, 4 }, { seed = 2 }), gs.randn({ V, 4 }, { seed = 3 })

-- Every op, called on good inputs with `opts`.
local calls = {
  cross_entropy = function(o) return gs.cross_entropy(x, t, o) end,
  cross_entropy_backward = function(o) return gs.cross_entropy_backward(x, t, 1, o) end,
  log_probs = function(o) return gs.log_probs(x, t, o) end,
  log_probs_backward = function(o) return gs.log_probs_backward(x, t, 1, o) end,
  entropy = function(o) return gs.entropy(x, o) end,
  entropy_backward = function(o) return gs.entropy_backward(x, 1, o) end,
  linear_cross_entropy = function(o) return gs.linear_cross_entropy(h, W, t, o) end,
  linear_cross_entropy_backward = function(o) return gs.linear_cross_entropy_backward(h, W, t, 1, o) end,
}

local function all_options()
  local out = {}
  for _, mod in ipairs({ ops, lce }) do
    for op, opts in pairs(mod.options) do out[op] = opts end
  end
  return out
end

local nan, inf = 0 / 0, math.huge
local FLOATS = "(f64, f32, bf16, f16)"

-- option -> { bad value, what the error says after "op: " }
local bad = {
  grad = {
    { "yes", 'grad = "yes" is a string, expected true or false' },
    { 1, "grad = 1 is a number, expected true or false" },
    { {}, "grad = {...} is a table, expected true or false" },
  },
  inplace = {
    { "true", 'inplace = "true" is a string, expected true or false' },
    { 0, "inplace = 0 is a number, expected true or false" },
  },
  threads = {
    { -3, "threads = -3 must be >= 1 (or 0 for all cores)" },
    { 2.5, "threads = 2.5 is not an integer" },
    { nan, "threads = nan is not an integer" },
    { inf, "threads = inf is not an integer" },
    { 2 ^ 40, "threads = 1099511627776 is above 2147483647" },
    { "4", 'threads = "4" is a string, expected an integer' },
  },
  ignore_index = {
    { 1.5, "ignore_index = 1.5 is not an integer" },
    { nan, "ignore_index = nan is not an integer" },
    { -inf, "ignore_index = -inf is not an integer" },
    { 2 ^ 60, "ignore_index = 1152921504606846976 is above 9007199254740992" },
    { "-100", 'ignore_index = "-100" is a string, expected an integer' },
  },
  chunk_rows = {
    { -1, "chunk_rows = -1 must be >= 1 (or 0 for the default)" },
    { 2.5, "chunk_rows = 2.5 is not an integer" },
    { nan, "chunk_rows = nan is not an integer" },
    { "8", 'chunk_rows = "8" is a string, expected an integer' },
  },
  chunk_dtype = {
    { "f64", 'chunk_dtype = "f64" is not a chunk dtype (expected "f32", "bf16" or "f16")' },
    { "i32", 'chunk_dtype = "i32" is not a chunk dtype (expected "f32", "bf16" or "f16")' },
    { 16, 'chunk_dtype = 16 is a number, expected "f32", "bf16" or "f16"' },
  },
  logit_scale = {
    { 0, "logit_scale = 0 must be finite and non-zero" },
    { nan, "logit_scale = nan must be finite and non-zero" },
    { inf, "logit_scale = inf must be finite and non-zero" },
    { "2", 'logit_scale = "2" is a string, expected a number' },
  },
  softcap = {
    { "30", 'softcap = "30" is a string, expected a number' },
    { -1, "softcap = -1 must be > 0 (or 0 for off) and finite" },
    { nan, "softcap = nan must be > 0 (or 0 for off) and finite" },
    { inf, "softcap = inf must be > 0 (or 0 for off) and finite" },
  },
  label_smoothing = {
    { 1.5, "label_smoothing = 1.5 is outside [0, 1]" },
    { -0.1, "label_smoothing = -0.1 is outside [0, 1]" },
    { nan, "label_smoothing = nan is outside [0, 1]" },
    { "0.1", 'label_smoothing = "0.1" is a string, expected a number' },
  },
  lse_square_scale = {
    { -1, "lse_square_scale = -1 must be >= 0 (0 for off) and finite" },
    { nan, "lse_square_scale = nan must be >= 0 (0 for off) and finite" },
    { inf, "lse_square_scale = inf must be >= 0 (0 for off) and finite" },
    { "1e-4", 'lse_square_scale = "1e-4" is a string, expected a number' },
  },
  reduction = {
    { "avg", 'reduction = avg is unknown (expected "none", "sum" or "mean")' },
    { 1, 'reduction = 1 is a number, expected "none", "sum" or "mean"' },
    { true, 'reduction = true is a boolean, expected "none", "sum" or "mean"' },
  },
  grad_dtype = {
    { "i32", "grad_dtype i32 is not a float dtype " .. FLOATS },
    { "i64", "grad_dtype i64 is not a float dtype " .. FLOATS },
    { "f8", "grad_dtype f8 is unknown (known float dtypes: f64, f32, bf16, f16;" },
    { 32, "grad_dtype = 32 is a number, expected a float dtype name " .. FLOATS },
    { true, "grad_dtype = true is a boolean, expected a float dtype name " .. FLOATS },
  },
  backend = {
    { 3, "backend = 3 is a number, expected a backend name" },
    { true, "backend = true is a boolean, expected a backend name" },
  },
  weight = {
    { { 1, 1, 1, 1, 1 }, "weight = {...} is a table, expected a tensor of one weight per class" },
    { 1, "weight = 1 is a number, expected a tensor of one weight per class" },
    { true, "weight = true is a boolean, expected a tensor of one weight per class" },
  },
  bias = {
    { { 0, 0, 0, 0, 0 }, "bias = {...} is a table, expected a tensor of one value per class" },
    { "0", 'bias = "0" is a string, expected a tensor of one value per class' },
  },
  grad_output = {
    { "1", 'grad_output = "1" is a string, expected a number or a tensor' },
    { true, "grad_output = true is a boolean, expected a number or a tensor" },
    { { 1 }, "grad_output = {...} is a table, expected a number or a tensor" },
  },
}

describe("every option of every op has its bad values here", function()
  for op, opts in pairs(all_options()) do
    it(op .. ": each option is covered and the op can be called", function()
      assert.is_true(calls[op] ~= nil, op .. " has no call in specs/options_spec.lua: add one")
      for name in pairs(opts) do
        assert.is_true(bad[name] ~= nil and #bad[name] > 0,
          op .. "." .. name .. " has no bad values in specs/options_spec.lua: add them, and its rule in op_args.lua")
      end
    end)
  end
end)

describe("a bad option value is an error naming the op, the option and the value", function()
  local options = all_options()
  local names = {}
  for op in pairs(options) do names[#names + 1] = op end
  table.sort(names)
  for _, op in ipairs(names) do
    local keys = {}
    for k in pairs(options[op]) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, key in ipairs(keys) do
      for _, case in ipairs(bad[key] or {}) do
        local value, says = case[1], case[2]
        it(op .. ": " .. says, function()
          assert.error(function() calls[op]({ [key] = value }) end, op .. ": " .. says)
        end)
      end
    end
  end

  it("the error points at the line of the call", function()
    local call_line = debug.getinfo(1, "l").currentline + 1
    assert.error(function() gs.cross_entropy(x, t, { grad = "yes" }) end,
      "options_spec.lua:" .. call_line .. ': cross_entropy: grad = "yes"')
  end)

  it("a grad_output argument of the backward ops is checked like the option", function()
    assert.error(function() gs.cross_entropy_backward(x, t, "1") end,
      'cross_entropy_backward: grad_output = "1" is a string, expected a number or a tensor')
    assert.error(function() gs.entropy_backward(x, true) end,
      "entropy_backward: grad_output = true is a boolean, expected a number or a tensor")
    assert.error(function() gs.linear_cross_entropy_backward(h, W, t, { 1 }) end,
      "linear_cross_entropy_backward: grad_output = {...} is a table, expected a number or a tensor")
  end)

  it("an unknown name is reported before a bad value of another option", function()
    assert.error(function() gs.cross_entropy(x, t, { softcap = "30", label_smothing = 0.1 }) end,
      "cross_entropy: unknown option 'label_smothing'")
  end)

  it("opts that are not a table are an error", function()
    assert.error(function() gs.cross_entropy(x, t, "grad") end, "cross_entropy: opts must be a table, got string")
    assert.error(function() gs.entropy(x, x) end, "entropy: opts must be a table, got tensor")
  end)
end)

describe("good option values pass the checks", function()
  -- option -> the opts that exercise a good, non-default value of it
  local good = {
    grad = { grad = true },
    inplace = { grad = true, inplace = true },
    threads = { threads = 2 },
    ignore_index = { ignore_index = -1 },
    chunk_rows = { chunk_rows = 2 },
    chunk_dtype = { chunk_dtype = "bf16" },
    logit_scale = { logit_scale = -0.5 },
    softcap = { softcap = 30 },
    label_smoothing = { label_smoothing = 1 },
    lse_square_scale = { lse_square_scale = 1e-4 },
    reduction = { reduction = "none" },
    grad_dtype = { grad_dtype = "f32" },
    backend = { backend = "ref" },
    weight = { weight = gs.ones({ V }) },
    bias = { bias = gs.zeros({ V }) },
    grad_output = { grad = true, grad_output = 2 },
  }
  for op, opts in pairs(all_options()) do
    it(op .. ": every option takes a good value", function()
      for name in pairs(opts) do
        local o = good[name]
        assert.is_true(o ~= nil, op .. "." .. name .. " has no good value in specs/options_spec.lua")
        local usable = true
        for k in pairs(o) do if opts[k] == nil then usable = false end end
        if usable then
          local r = { pcall(calls[op], o) }
          if name == "inplace" then x = gs.randn({ 3, V }, { seed = 1 }) end -- it overwrote the logits
          local ok, err = r[1], r[2]
          assert.is_true(ok or gs.backend.is_unsupported(err), op .. " with " .. name .. ": " .. tostring(err))
          -- every output the call returned, loose or in aux, is finite
          for i = 2, table.maxn(r) do
            local v = r[i]
            if gs.is_tensor(v) then assert.finite(v) end
            if ok and type(v) == "table" and not gs.is_tensor(v) then
              for _, w in pairs(v) do if gs.is_tensor(w) then assert.finite(w) end end
            end
          end
        end
      end
    end)
  end
end)

describe("op_args helpers for options read by the ops themselves", function()
  local args = require("gradspec.op_args")
  local defaults = { grad = false, threads = 0, grad_dtype = false }

  it("bool_opt returns the boolean or the default and names a bad value", function()
    assert.equal(args.bool_opt("op", {}, defaults, "grad", 1), false)
    assert.equal(args.bool_opt("op", { grad = true }, defaults, "grad", 1), true)
    assert.error(function() args.bool_opt("op", { grad = "no" }, defaults, "grad", 1) end,
      'op: grad = "no" is a string, expected true or false')
  end)

  it("int_opt returns the integer and names a fraction", function()
    assert.equal(args.int_opt("op", { threads = 3 }, defaults, "threads", 1), 3)
    assert.error(function() args.int_opt("op", { threads = 0.5 }, defaults, "threads", 1) end,
      "op: threads = 0.5 is not an integer")
  end)

  it("dtype_opt returns the float dtype record, nil when not set", function()
    assert.equal(args.dtype_opt("op", {}, defaults, "grad_dtype", 1), nil)
    assert.equal(args.dtype_opt("op", { grad_dtype = "bfloat16" }, defaults, "grad_dtype", 1).name, "bf16")
    assert.error(function() args.dtype_opt("op", { grad_dtype = "i32" }, defaults, "grad_dtype", 1) end,
      "op: grad_dtype i32 is not a float dtype (f64, f32, bf16, f16)")
  end)
end)

describe("gradcheck's option values", function()
  local f = function(z) return z:sum() end
  local z = gs.randn({ 2, 2 }, { dtype = "f64", seed = 4 })
  local cases = {
    { { eps = "1e-6" }, 'gradcheck: eps = "1e-6" is a string, expected a number' },
    { { eps = 0 }, "gradcheck: eps = 0 must be finite and > 0" },
    { { rtol = nan }, "gradcheck: rtol = nan must be finite and >= 0" },
    { { atol = -1 }, "gradcheck: atol = -1 must be finite and >= 0" },
    { { directions = 0 }, "gradcheck: directions = 0 must be >= 1" },
    { { directions = 2.5 }, "gradcheck: directions = 2.5 is not an integer" },
    { { seed = 1.5 }, "gradcheck: seed = 1.5 is not an integer" },
    { { full_limit = -1 }, "gradcheck: full_limit = -1 must be >= 0" },
    { { mode = "all" }, 'gradcheck: mode must be "auto", "full" or "directions", got "all"' },
    { { msg = 3 }, "gradcheck: msg = 3 is a number, expected a string" },
    { "fast", "gradcheck: opts must be a table, got string" },
  }
  for _, c in ipairs(cases) do
    it(c[2], function()
      assert.error(function() gs.gradcheck(f, z, gs.ones({ 2, 2 }), c[1]) end, c[2])
    end)
  end

  it("good values still check the gradient", function()
    assert.is_true(gs.gradcheck(f, z, gs.ones({ 2, 2 }), { eps = 1e-6, rtol = 1e-5, atol = 0, mode = "directions",
      directions = 3, seed = 5, full_limit = 0, msg = "sum" }))
  end)
end)
