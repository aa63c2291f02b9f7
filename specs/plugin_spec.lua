-- A user's kernel in a C shared library (gs.backend.load): the example
-- plugin (examples/c_plugin) built here, a planted out-of-bounds write
-- caught by the guard bands, and load errors that say what is wrong.
-- examples/c_plugin/check.sh runs the example's own suite and every
-- planted bug end to end.
local process = require("gradspec.process")

local build = "examples/c_plugin/build.sh"
local cc_missing = process.run("command -v ${CC:-cc}") == ""

-- Builds the example with planted bug `bug` (0: none) in a fresh directory
-- and returns the library's path and a function that removes the directory
-- (a loaded library stays mapped after its file is gone).
local function lib(bug)
  local dir = os.tmpname()
  os.remove(dir)
  local out, code = process.run("sh " .. process.quote(build) .. " -o " .. process.quote(dir) .. " " .. bug)
  assert(code == 0, "building the example plugin failed:\n" .. out)
  return dir .. "/libmy_ce.so", function() process.run("rm -rf " .. process.quote(dir)) end
end

local declared = { "reduction", "ignore_index", "logit_scale", "softcap" }
local function load(name, path, ops)
  local cleanup
  if type(path) == "number" then path, cleanup = lib(path) end
  local ok, err = pcall(gs.backend.load, { name = name, library = path, device = "cpu", dtypes = { "f32" }, options = declared,
    ops = ops or { cross_entropy = "my_ce_forward", cross_entropy_backward = "my_ce_backward",
      log_probs = "my_log_probs_forward" } })
  if cleanup then cleanup() end
  if not ok then error(err, 2) end
end

local function i64(t) return gs.tensor(t, { dtype = "i64" }) end

describe("gs.backend.load", function()
  it("a missing library file is an error naming it", function()
    assert.error(function() load("m1", "no/such/libmine.so") end,
      "gs.backend.load: m1: no such library file: no/such/libmine.so")
  end)

  it("a file that is not a shared library is an error with the loader's reason", function()
    assert.error(function() load("m2", "README.md") end, "gs.backend.load: m2: cannot load the library: README.md")
  end)

  describe("the example plugin", function()
    skip_if(cc_missing, "no C compiler (cc) to build examples/c_plugin")

    it("a symbol the library lacks is an error naming it and the library", function()
      local msg = assert.error(function() load("m3", 0, { cross_entropy = "my_ce_forwrd" }) end,
        "gs.backend.load: m3: ops.cross_entropy: no such symbol: ")
      assert.is_true(msg:find("my_ce_forwrd", 1, true) ~= nil and msg:find("libmy_ce.so", 1, true) ~= nil, msg)
    end)

    it("agrees with the reference through the C contract, fused, backward and log_probs", function()
      load("my_ce", 0)
      local x = gs.randn({ 7, 300 }, { std = 4, stride = 307 })
      local t = i64({ 5, -100, 0, 299, 17, 42, -100 })
      local both = { backends = { "ref", "my_ce" } }
      for _, o in ipairs({ { reduction = "mean" }, { reduction = "sum", softcap = 20, logit_scale = 1.5 } }) do
        o.grad = true
        assert.backends_agree("cross_entropy", { logits = x, target = t }, o, both)
      end
      assert.backends_agree("cross_entropy_backward", { logits = x, target = t, grad_output = gs.rand({ 7 }) },
        { reduction = "none" }, both)
      assert.backends_agree("log_probs", { logits = x, target = t }, {}, both)
    end)

    it("a target out of range comes back as the kernel's error with the row and the value", function()
      load("my_ce", 0)
      assert.error(function() gs.cross_entropy(gs.randn({ 3, 4 }), i64({ 0, 9, 1 }), { backend = "my_ce" }) end,
        "cross_entropy: my_ce: target[1] = 9 is outside [0, 4)")
    end)

    it("a write past the end of a gradient row is caught by the guard bands, naming the output and the row", function()
      load("my_ce_oob", 4)
      local x = gs.randn({ 3, 10 })
      local t = i64({ 1, 2, 3 })
      assert.error(function() gs.cross_entropy_backward(x, t, 1, { backend = "my_ce_oob" }) end,
        "cross_entropy_backward: backend my_ce_oob wrote out of bounds: gradient row 0 written 1 element past its end (column 10 of a row of 10)")
    end)
  end)
end)
