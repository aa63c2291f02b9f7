-- The harness checked by itself, for what runner_spec and guards_spec leave
-- open: --seed in every child of a parallel run, an outer before_each that
-- fails nested its, and the never-asserted tracker's fixture kept complete
-- as ops are added (a gradient op missing from it would go unchecked).
local process = require("gradspec.process")

local H = "specs/fixtures/harness/"

local function has(out, text) return out:find(text, 1, true) ~= nil end

local function draw_for(seed)
  local keep = gs.get_seed()
  gs.set_seed(seed)
  local d = string.format("%.17g", gs.randn({ 1 }):get(0))
  gs.set_seed(keep)
  return d
end

describe("harness self-tests", function()
  for _, jobs in ipairs({ "1", "2" }) do
    it("--seed reaches every spec file's child, with -j " .. jobs, function()
      local out, code = process.gradspec({ "run", H .. "seed_a.lua", H .. "seed_b.lua", "-j", jobs, "--seed", "424242" })
      assert.equal(code, 0, out)
      local d = draw_for(424242)
      for _, f in ipairs({ "a", "b" }) do
        assert.is_true(has(out, f .. ": seed 424242, first draw " .. d .. "\n"), out)
      end
      -- and another seed gives other draws: the seed is not ignored
      assert.is_true(draw_for(424243) ~= d, "two seeds, two draws")
    end)
  end

  it("an error in an outer before_each fails the its of nested blocks without running them", function()
    local out, code = process.gradspec({ "run", H .. "outer_hook_error.lua" })
    assert.equal(code, 1, out)
    assert.is_true(has(out, "1 passed, 2 failed, 0 skipped"), out)
    local _, n = out:gsub("before_each: " .. H:gsub("%p", "%%%0") .. "outer_hook_error.lua:4: outer setup broke", "")
    assert.equal(n, 2, out)
    assert.is_false(has(out, "BODY RAN"), out)
  end)

  it("the tracker's fixture calls every op that returns a gradient", function()
    local family = require("gradspec.ce_family")
    local want = { "linear_cross_entropy", "linear_cross_entropy_backward" }
    for op, d in pairs(family.ops) do
      if d.shape == "backward" or (d.options and d.options.grad ~= nil) then want[#want + 1] = op end
    end
    assert.is_true(#want >= 6, "gradient ops found: " .. #want)
    local called = {}
    for line in io.lines("specs/fixtures/guards/every_gradient_unasserted.lua") do
      local op = line:match("gs%.([%w_]+)%(.*%-%- %[[%w_]+%]$")
      if op then called[op] = true end
    end
    for _, op in ipairs(want) do
      assert.is_true(called[op], op .. " returns a gradient but the tracker's fixture never calls it")
    end
  end)
end)
