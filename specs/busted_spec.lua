-- busted's spellings (lua/gradspec/busted.lua): the assertions count and
-- mark what they read like gradspec's own, an unknown name lists the close
-- ones, setup/teardown run once around a block (strict and lazy), and
-- finally cleans up after an it whatever its outcome.
local process = require("gradspec.process")

local B = "specs/fixtures/busted/"

local function has(out, text) return out:find(text, 1, true) ~= nil end
local function last_line(out) return out:match("([^\n]+)\n*$") end

local function run(...)
  return process.gradspec({ "run", ... })
end

-- The message an erroring call raises (without failing this it).
local function message_of(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

describe("busted's assertion spellings", function()
  it("pass on what they accept", function()
    assert.are.same({ a = { 1, 2 }, b = "x" }, { a = { 1, 2 }, b = "x" })
    assert.are.equal(3, 3)
    assert.are.equal("s", "s")
    local t = {}
    assert.are.equal(t, t)
    assert.are_not.equal({}, {})
    assert.are_not.same({ 1 }, { 2 })
    assert.truthy(0)
    assert.truthy("")
    assert.falsy(false)
    assert.falsy(nil)
    assert.is_nil(nil)
    assert.is_not_nil(false)
    assert.is_not.Nil(0)
    assert.is.truthy(true)
    assert.is.falsy(nil)
    assert.has_error(function() error("boom: bad thing") end, "bad thing")
    assert.has.error(function() error("x") end)
    assert.has_no.errors(function() end)
    assert.are.same(gs.tensor({ 1, 2 }), gs.tensor({ 1, 2 }))
  end)

  it("fail with busted's argument order (expected first) and a message that says what was wrong", function()
    assert.is_true(has(message_of(function() assert.are.same({ 1, 2 }, { 1, 3 }) end), "at key 2: 3 vs 2"))
    assert.is_true(has(message_of(function() assert.are.equal(1, 2) end), "assert.equal: expected 1, got 2"))
    assert.is_true(has(message_of(function() assert.are.equal({ 1 }, { 1 }) end),
      "assert.are.equal: two different tables (assert.are.same compares their contents)"))
    assert.is_true(has(message_of(function() assert.truthy(nil) end), "assert.truthy: got nil"))
    assert.is_true(has(message_of(function() assert.falsy("yes") end), 'assert.falsy: got "yes"'))
    assert.is_true(has(message_of(function() assert.is_nil(0) end), "assert.is_nil: got 0"))
    assert.is_true(has(message_of(function() assert.has_error(function() end) end), "expected an error, but none was raised"))
    assert.is_true(has(message_of(function() assert.has_no.error(function() error("oops") end) end), "the function raised: "))
    assert.is_true(has(message_of(function() assert.are_not.equal(2, 2) end), "assert.are_not.equal: both are 2"))
  end)

  it("an unknown name is an error listing the close ones", function()
    assert.equal(message_of(function() return assert.are.smae end):match("assert%.are%.smae.*$"),
      "assert.are.smae is not an assertion; did you mean assert.are.same?")
    assert.is_true(has(message_of(function() return assert.truthyy end),
      "assert.truthyy is not an assertion; did you mean assert.truthy"))
    assert.is_true(has(message_of(function() return assert.is_nill end), "did you mean assert.is_nil"))
    assert.is_true(has(message_of(function() return assert.has.erorr end), "assert.has.erorr is not an assertion; did you mean assert.has.error"))
    -- nothing close: the whole list
    local far = message_of(function() return assert.zzzzzzzzz end)
    assert.is_true(has(far, "assert.zzzzzzzzz is not an assertion; the assertions are "), far)
    assert.is_true(has(far, "assert.close") and has(far, "assert.are_same") and has(far, "assert.truthy"), far)
    -- the error points at the line that used the name
    local line = debug.getinfo(1, "l").currentline + 1
    local at = message_of(function() return assert.are.smae end)
    assert.is_true(has(at, "busted_spec.lua:" .. line .. ":"), at)
  end)

  it("each counts as an assertion, points at the spec's line, and marks the tensors it read", function()
    local out, code = run(B .. "spellings.lua", "-v")
    assert.equal(code, 1, out)
    for _, name in ipairs({ "are.same", "are.equal", "truthy", "falsy", "is_nil", "has_error",
      "is.truthy and is_not.nil", "the gradient checked with are.same" }) do
      assert.is_true(has(out, "PASS  passes " .. name .. " ("), name .. "\n" .. out)
    end
    assert.is_false(has(out, "asserted nothing"), out)
    for line, text in pairs({ [22] = "at key 2: 3 vs 2", [23] = "two different tables", [24] = "assert.truthy: got false",
      [25] = "assert.falsy: got 0", [26] = "assert.is_nil: got 5", [27] = "expected an error" }) do
      assert.is_true(has(out, "specs/fixtures/busted/spellings.lua:" .. line .. ": ") and has(out, text), text .. "\n" .. out)
    end
    -- the tracker is on: a gradient no assertion read fails its it
    assert.is_true(has(out, "the gradient returned by cross_entropy at specs/fixtures/busted/spellings.lua:30 was never asserted"), out)
    assert.equal(last_line(out), "8 passed, 7 failed, 0 skipped")
  end)
end)

describe("setup, teardown and finally", function()
  local EXPECTED = table.concat({
    "file setup", "outer setup", "outer lazy_setup",
    "before_each", "first", "finally 2", "finally 1", "after_each",
    "inner strict_setup", "before_each", "second", "after_each", "inner strict_teardown",
    "before_each", "third", "finally of third", "after_each",
    "outer lazy_teardown", "outer teardown",
    "pending strict_setup", "pending strict_teardown",
    "file teardown",
  }, "\n")

  local function log_of(out)
    local lines = {}
    for l in out:gmatch("> ([^\n]+)") do lines[#lines + 1] = l end
    return table.concat(lines, "\n")
  end

  for _, mode in ipairs({ "isolated", "--no-isolate" }) do
    it("run once around their block, in order, lazy ones only when an it runs (" .. mode .. ")", function()
      local out, code = run(B .. "hooks.lua", "-v", mode == "isolated" and "--seed" or mode, mode == "isolated" and "1" or nil)
      assert.equal(code, 1, out)
      assert.equal(log_of(out), EXPECTED)
      assert.is_true(has(out, "FAIL  outer third fails, finally still runs"), out)
      assert.equal(last_line(out), "2 passed, 1 failed, 1 skipped")
    end)
  end

  it("under --repeat a block's setup still runs once", function()
    local out = run(B .. "hooks.lua", "--repeat", "2")
    local _, n = log_of(out):gsub("outer setup", "")
    assert.equal(n, 1, out)
    local _, m = log_of(out):gsub("finally 1", "")
    assert.equal(m, 2, out)
  end)

  it("a block none of whose its is selected runs none of its hooks", function()
    local out = run(B .. "hooks.lua", "--filter", "second")
    assert.equal(log_of(out), table.concat({ "file setup", "outer setup", "outer lazy_setup", "inner strict_setup",
      "before_each", "second", "after_each", "inner strict_teardown", "outer lazy_teardown", "outer teardown",
      "file teardown" }, "\n"))
  end)

  it("a failing setup fails its block's its; a failing teardown or finally is reported", function()
    local out, code = run(B .. "hook_errors.lua", "-v")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "FAIL  broken setup one\n  FAIL  broken setup two\n"), out)
    assert.is_true(has(out, "setup (broken setup): specs/fixtures/busted/hook_errors.lua:5: no database"), out)
    assert.is_true(has(out, "FAIL  broken teardown (teardown)"), out)
    assert.is_true(has(out, "teardown (broken teardown): specs/fixtures/busted/hook_errors.lua:11: cannot clean up"), out)
    assert.is_true(has(out, "finally: specs/fixtures/busted/hook_errors.lua:17: finally broke"), out)
    assert.is_true(has(out, "PASS  unaffected passes"), out)
    assert.equal(last_line(out), "2 passed, 4 failed, 0 skipped")
  end)

  it("finally outside a running it is an error at its line", function()
    local out, code = run(B .. "finally_outside.lua")
    assert.equal(code, 1, out)
    assert.is_true(has(out, "specs/fixtures/busted/finally_outside.lua:3: finally: can only be called inside a running it"), out)
    assert.is_false(has(out, "busted.lua"), out)
  end)
end)
