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
    assert.is_true(out:find("kill rate: %d+ of 13 mutants killed") ~= nil, out)
  end)
end)
