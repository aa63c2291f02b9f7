-- The backend registry: a user's kernel, registered once, gets every check
-- the built-in backends get. The user backends here are Lua functions around
-- the reference (specs/fixtures/backends/lua_backends.lua), each with or
-- without a real bug class; C libraries are in specs/plugin_spec.lua.
local process = require("gradspec.process")

local F = "specs/fixtures/backends/"
gs.backend.load_files({ F .. "lua_backends.lua" })

local function has(out, text) return out:find(text, 1, true) ~= nil end
local function i64(t) return gs.tensor(t, { dtype = "i64" }) end

describe("gs.backend.register", function()
  local ops = { cross_entropy = function() end }
  local cases = {
    { "a name that is not a word", function() gs.backend.register("my ce", { ops = ops }) end, "the name must be a word" },
    { "a built-in name", function() gs.backend.register("cpu", { ops = ops }) end, "cpu is a built-in backend" },
    { "an unknown device", function() gs.backend.register("x1", { device = "gpu", ops = ops }) end,
      "device = gpu is unknown" },
    { "an unknown dtype", function() gs.backend.register("x2", { dtypes = { "f8" }, ops = ops }) end,
      "dtypes names 'f8', which is unknown (known: bf16, f16, f32, f64)" },
    { "a misspelt option", function() gs.backend.register("x3", { options = { "label_smoothin" }, ops = ops }) end,
      "options names 'label_smoothin', which is unknown" },
    { "an unknown op", function() gs.backend.register("x4", { ops = { cross_entropi = function() end } }) end,
      "ops.cross_entropi is not an op" },
    { "an op that is not a function", function() gs.backend.register("x5", { ops = { log_probs = "f" } }) end,
      "ops.log_probs must be a function, got string" },
    { "no ops", function() gs.backend.register("x6", { ops = {} }) end, "ops must name at least one op" },
    { "an unknown field", function() gs.backend.register("x7", { ops = ops, dtype = { "f32" } }) end,
      "unknown field 'dtype'" },
  }
  for _, c in ipairs(cases) do
    it("rejects " .. c[1], function() assert.error(c[2], c[3]) end)
  end

  it("lists registered backends after the built-ins, and an unknown backend names them", function()
    local names = table.concat(gs.backend.names(), ",")
    assert.is_true(names:find("^ref,cpu,cuda,good,negated") ~= nil, names)
    assert.error(function() gs.cross_entropy(gs.zeros({ 2, 3 }), i64({ 0, 1 }), { backend = "mine" }) end,
      "backend = mine is unknown (registered: \"ref\", \"cpu\", \"cuda\", \"good\"")
  end)
end)

describe("a Lua backend", function()
  local x = gs.randn({ 5, 11 }, { std = 4 })
  local t = i64({ 3, -100, 0, 10, 7 })

  it("runs through opts.backend and returns what the reference returns", function()
    local loss, aux = gs.cross_entropy(x, t, { backend = "good", grad = true, softcap = 6 })
    local rl, raux = gs.cross_entropy(x, t, { backend = "ref", grad = true, softcap = 6 })
    assert.close(loss, rl, { rtol = 1e-6 })
    assert.close(aux.grad, raux.grad, { rtol = 1e-5, atol = 1e-7 })
    assert.equal(aux.backend, "good")
  end)

  it("is compared by backends_agree by default, and a negated gradient is caught", function()
    local err = assert.error(function()
      assert.backends_agree("cross_entropy", { logits = x, target = t }, { grad = true })
    end, "cross_entropy: backend negated disagrees with ref on grad")
    assert.is_true(has(err, "actual"), err)
  end)

  it("a dropped softcap chain term is caught, and agrees without softcap", function()
    local o = { backends = { "ref", "nochain" } }
    assert.backends_agree("cross_entropy", { logits = x, target = t }, { grad = true }, o)
    assert.error(function()
      assert.backends_agree("cross_entropy", { logits = x, target = t }, { grad = true, softcap = 5 }, o)
    end, "backend nochain disagrees with ref on grad")
    assert.error(function()
      assert.backends_agree("cross_entropy_backward", { logits = x, target = t, grad_output = 1 }, { softcap = 5 }, o)
    end, "backend nochain disagrees with ref on grad")
  end)

  it("a loss of the wrong shape is an error naming the backend and both shapes", function()
    assert.error(function() gs.cross_entropy(x, t, { backend = "unreduced" }) end,
      "cross_entropy: backend unreduced returned loss of shape {5} (expected {})")
  end)

  it("gradcheck judges a user backend's gradient against finite differences of the reference", function()
    local xs = gs.randn({ 3, 6 }, { seed = 11 })
    local ts = i64({ 0, 5, 2 })
    local f = function(z) return gs.cross_entropy(z, ts, { backend = "ref", softcap = 4, reduction = "sum" }) end
    local o = { softcap = 4, reduction = "sum" }
    o.backend = "good"
    gs.gradcheck(f, xs, gs.cross_entropy_backward(xs, ts, 1, o), { rtol = 1e-4, atol = 1e-6 })
    o.backend = "nochain"
    local bad = gs.cross_entropy_backward(xs, ts, 1, o)
    assert.error(function() gs.gradcheck(f, xs, bad, { rtol = 1e-4, atol = 1e-6 }) end,
      "the gradient disagrees with central finite differences")
  end)
end)

describe("a user backend in a spec file", function()
  local out, code
  local function run()
    if not out then out, code = process.gradspec({ "run", F .. "unasserted.lua", "-v" }) end
    return out, code
  end

  it("a gradient never asserted fails the it, naming the spec line that called the op", function()
    local o, c = run()
    assert.equal(c, 1, o)
    assert.is_true(has(o, "the gradient returned by cross_entropy at " .. F .. "unasserted.lua:9 was never asserted"), o)
    assert.is_true(has(o, "PASS  a user backend asserts the gradient"), o)
  end)

  it("an option or dtype it lacks skips the it with the reason", function()
    local o = run()
    assert.is_true(has(o, "SKIP  a user backend is skipped where it lacks an option (good: no label_smoothing)"), o)
    assert.is_true(has(o, "SKIP  a user backend is skipped where it lacks a dtype (good: no bf16 logits)"), o)
    assert.is_true(has(o, "no backend to compare with ref: good: no lse_square_scale"), o)
  end)

  it("a check that ran on some backends passes and lists the ones skipped, with the reason", function()
    local o = run()
    assert.is_true(has(o, "PASS  backends_agree over every registered backend compares those that can take the call"), o)
    assert.is_true(has(o, "Skipped for some backends (the its ran on the others):\n  1: backends_agree(cross_entropy) skipped good: no label_smoothing"), o)
  end)
end)

describe("gradspec conventions --load", function()
  it("names a user backend whose log_probs returns +CE", function()
    local out, code = process.gradspec({ "conventions", "--load", F .. "lua_backends.lua", "--backends", "ref,good,plus" })
    assert.equal(code, 1, out)
    assert.is_true(has(out, "backend plus returns +CE where -CE is declared"), out)
    assert.is_false(has(out, "backend good returns"), out)
    assert.is_true(has(out, "good: no entropy"), out)
  end)

  it("an unknown --backends name is a usage error listing the registered ones", function()
    local out, code = process.gradspec({ "conventions", "--load", F .. "lua_backends.lua", "--backends", "ref,mine" })
    assert.equal(code, 2, out)
    assert.is_true(has(out, "mine is not a registered backend (registered: ref, cpu, cuda, good, negated"), out)
  end)

  it("--help prints the usage and exits 0", function()
    local out, code = process.gradspec({ "conventions", "--help" })
    assert.equal(code, 0, out)
    assert.is_true(has(out, "usage: gradspec conventions"), out)
  end)
end)

describe("gradspec mutate --backend", function()
  local load = F .. "lua_backends.lua"

  it("kills every perturbation of a user backend with a suite that checks values", function()
    local out, code = process.gradspec({ "mutate", "--backend", "good", "--load", load, F .. "suite.lua" })
    assert.equal(code, 0, out)
    assert.is_true(has(out, "kill rate: 12 of 12 perturbations of good killed"), out)
    assert.is_true(has(out, "log_probs_plus           killed    good log_probs agrees with the reference"), out)
  end)

  it("names what a weak suite lets through, and exits 1", function()
    local out, code = process.gradspec({ "mutate", "--backend", "good", "--load", load, F .. "weak.lua" })
    assert.equal(code, 1, out)
    assert.is_true(has(out, "grad_sign                SURVIVED  nothing noticed: gradient sign flipped"), out)
    assert.is_true(has(out, "log_probs_plus           SURVIVED  not reached: no spec ran good where this applies"), out)
    assert.is_true(has(out, "nan_one                  killed"), out)
  end)

  it("an unknown backend is a usage error naming the registered ones", function()
    local out, code = process.gradspec({ "mutate", "--backend", "mine", "--load", load, F .. "weak.lua" })
    assert.equal(code, 2, out)
    assert.is_true(has(out, "--backend: mine is not a registered backend (registered: ref, cpu, cuda, good"), out)
  end)
end)
