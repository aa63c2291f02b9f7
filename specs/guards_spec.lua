-- The checks that make gradspec more than a runner: unasserted gradients,
-- declared conventions, gradcheck's failure reports.
local process = require("gradspec.process")

local function has(out, text) return out:find(text, 1, true) ~= nil end

describe("unasserted outputs", function()
  local fixture = "specs/fixtures/guards/softcap_unasserted.lua"

  it("a gradient computed and never asserted fails the it, naming the op and the line", function()
    local out, code = process.gradspec({ "run", fixture, "--filter", "asserts only the loss" })
    assert.equal(code, 1, out)
    assert.is_true(has(out, "the gradient returned by cross_entropy_backward at " .. fixture .. ":8 was never asserted"), out)
  end)

  it("printing, get and totable do not count as asserting", function()
    local out, code = process.gradspec({ "run", fixture, "--filter", "without asserting" })
    assert.equal(code, 1, out)
    assert.is_true(has(out, "the gradient returned by cross_entropy at " .. fixture .. ":15 was never asserted"), out)
  end)

  -- Every op that returns a gradient, each left unasserted in its own it:
  -- the fixture marks each call's line with [name].
  it("every gradient of every op is tracked: cross entropy, log_probs, entropy, linear cross entropy (dh, dW, db)", function()
    local every = "specs/fixtures/guards/every_gradient_unasserted.lua"
    local line_of = {}
    local n = 0
    for line in io.lines(every) do
      n = n + 1
      local mark = line:match("%-%- %[([%w_]+)%]$")
      if mark then line_of[mark] = n end
    end
    local out, code = process.gradspec({ "run", every })
    assert.equal(code, 1, out)
    assert.is_true(has(out, "1 passed, 8 failed, 0 skipped"), out)
    local expected = {
      { "ce_fused", "gradient", "cross_entropy" },
      { "ce_inplace", "gradient", "cross_entropy" },
      { "ce_backward", "gradient", "cross_entropy_backward" },
      { "lp_backward", "gradient", "log_probs_backward" },
      { "ent_backward", "gradient", "entropy_backward" },
      { "lce_fused", "dh", "linear_cross_entropy" },
      { "lce_fused", "dW", "linear_cross_entropy" },
      { "lce_fused", "db", "linear_cross_entropy" },
      { "lce_backward", "dh", "linear_cross_entropy_backward" },
      { "lce_backward", "dW", "linear_cross_entropy_backward" },
      { "lce_backward", "db", "linear_cross_entropy_backward" },
      { "lce_dw_only", "dW", "linear_cross_entropy_backward" },
    }
    for _, e in ipairs(expected) do
      assert.is_true(line_of[e[1]] ~= nil, "the fixture marks [" .. e[1] .. "]")
      local text = string.format("the %s returned by %s at %s:%d was never asserted", e[2], e[3], every, line_of[e[1]])
      assert.is_true(has(out, text), text .. "\n" .. out)
    end
    -- the outputs that were asserted are not named
    for _, what in ipairs({ "dh", "db" }) do
      local text = string.format("the %s returned by linear_cross_entropy_backward at %s:%d", what, every, line_of.lce_dw_only)
      assert.is_false(has(out, text), text)
    end
    local _, count = out:gsub("was never asserted", "")
    assert.equal(count, #expected, out)
  end)

  it("asserting a value computed from the gradient counts", function()
    local out, code = process.gradspec({ "run", fixture, "--filter", "derived" })
    assert.equal(code, 0, out)
    assert.is_true(has(out, "1 passed, 0 failed, 0 skipped"), out)
  end)
end)

describe("gradspec conventions", function()
  it("passes on the kernels as written", function()
    local out, code = process.gradspec({ "conventions" })
    assert.equal(code, 0, out)
    assert.is_true(has(out, "every checked backend keeps every declared convention"), out)
  end)

  it("flags a backend that returns +CE where -CE is declared, by name", function()
    local out, code = process.run("GRADSPEC_MUTANT=log_probs_sign@cpu " .. process.quote(process.self_exe()) .. " conventions")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "backend cpu returns +CE where -CE is declared"), out)
    assert.is_false(has(out, "backend ref returns +CE"), out)
  end)

  it("flags an entropy with the wrong sign", function()
    local out, code = process.run("GRADSPEC_MUTANT=entropy_sign@ref " .. process.quote(process.self_exe()) .. " conventions")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "backend ref returns -entropy"), out)
  end)
end)

describe("gradcheck", function()
  local x = gs.randn({ 3, 5 }, { seed = 3, dtype = "f64" })
  local t = gs.tensor({ 1, 0, 4 }, { dtype = "i64" })
  local opts = { backend = "ref", reduction = "sum" }
  local function f(xx) return gs.cross_entropy(xx, t, opts) end

  it("accepts the right gradient", function()
    gs.gradcheck(f, x, gs.cross_entropy_backward(x, t, 1, opts))
  end)

  -- The power a gradient check needs: a gradient off by a relative 1e-4
  -- (a dropped term of that size, an f32 constant where f64 was meant) is
  -- rejected, in full mode even in a single element, in direction mode
  -- when it is off everywhere; and the exact gradient passes both.
  it("rejects a gradient off by a relative 1e-4 and accepts the exact one, in both modes", function()
    local xs = gs.randn({ 4, 9 }, { seed = 5, std = 2, dtype = "f64" })
    local ts = gs.tensor({ 0, 8, 3, 5 }, { dtype = "i64" })
    local o = { backend = "ref", reduction = "sum", label_smoothing = 0.1, softcap = 5 }
    local function fs(xx) return gs.cross_entropy(xx, ts, o) end
    local exact = gs.cross_entropy_backward(xs, ts, 1, o)
    gs.gradcheck(fs, xs, exact, { mode = "full" })
    gs.gradcheck(fs, xs, exact, { mode = "directions", seed = 11 })
    local off = exact:mul(1 + 1e-4)
    for _, mode in ipairs({ "full", "directions" }) do
      local ok, err = pcall(gs.gradcheck, fs, xs, off, { mode = mode, seed = 11 })
      assert.is_false(ok, mode .. " mode let a gradient off by 1e-4 through")
      assert.is_true(has(err, "the gradient disagrees with central finite differences (" .. mode .. " mode"), err)
    end
    -- one element, the largest, off by 1e-4
    local k, big = 0, 0
    local flat = exact:totable()
    for i, row in ipairs(flat) do
      for j, v in ipairs(row) do
        if math.abs(v) > big then k, big = (i - 1) * 9 + (j - 1), math.abs(v) end
      end
    end
    local one = exact:clone()
    local r, c = math.floor(k / 9), k % 9
    one:set(r, c, one:get(r, c) * (1 + 1e-4))
    local ok, err = pcall(gs.gradcheck, fs, xs, one, { mode = "full" })
    assert.is_false(ok, "one element off by 1e-4 passed")
    assert.is_true(has(err, string.format("worst at element [%d, %d]", r, c)), err)
  end)

  it("reports the worst element, both values and the step for a wrong gradient", function()
    local wrong = gs.cross_entropy_backward(x, t, 1, opts):neg()
    local ok, err = pcall(gs.gradcheck, f, x, wrong)
    assert.is_false(ok)
    assert.is_true(has(err, "the gradient disagrees with central finite differences (full mode"), err)
    assert.is_true(err:find("worst at element %[%d, %d%]: finite differences [-%d.e]+, gradient [-%d.e]+ %(abs err [%d.e-]+%), step 1e%-06") ~= nil, err)
  end)

  it("direction mode reports the seed that reproduces the failure", function()
    local wrong = gs.cross_entropy_backward(x, t, 1, opts):mul(1.01)
    local ok, err = pcall(gs.gradcheck, f, x, wrong, { mode = "directions", seed = 77 })
    assert.is_false(ok)
    assert.is_true(has(err, "reproduce with opts.seed = 77"), err)
    assert.is_true(err:find("worst at direction %d+ %(seed %d+%)") ~= nil, err)
  end)
end)

describe("gradspec mutate", function()
  it("names the mutants a weak suite lets through and exits 1", function()
    local out, code = process.gradspec({ "mutate", "--backends", "cpu", "specs/fixtures/guards/weak.lua" })
    assert.equal(code, 1, out)
    assert.is_true(has(out, "grad_sign            cpu      SURVIVED  nothing noticed: gradient sign flipped"), out)
    -- one run per mutant --list names (a kernel mutant in cpu, and assert_nan)
    local list = process.gradspec({ "mutate", "--list", "--backends", "cpu" })
    local _, jobs = list:gsub("\n", "")
    assert.is_true(jobs >= 20, list)
    assert.is_true(out:find("kill rate: %d+ of " .. jobs .. " mutants killed") ~= nil, out)
  end)
end)
