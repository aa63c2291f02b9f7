-- The assertions' own behaviour: what passes, what fails, and what the
-- failure message says.

local function message_of(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "the assertion should have failed")
  return tostring(err)
end

describe("assert.close", function()
  it("passes within the dtype's default tolerance", function()
    assert.close(gs.tensor({ 1, 2 }), gs.tensor({ 1 + 1e-7, 2 }))
    assert.close(gs.tensor({ 1 }, { dtype = "bf16" }), gs.tensor({ 1.01 }, { dtype = "f64" }))
  end)

  it("states tolerances per dtype like PyTorch's assert_close", function()
    assert.equal(assert.tolerances.f32, { rtol = 1.3e-6, atol = 1e-5 })
    assert.equal(assert.tolerances.bf16, { rtol = 1.6e-2, atol = 1e-5 })
    assert.equal(assert.tolerances.f16, { rtol = 1e-3, atol = 1e-5 })
    assert.equal(assert.tolerances.f64, { rtol = 1e-7, atol = 1e-7 })
  end)

  it("a failure counts mismatches and names the worst element with both values", function()
    local msg = message_of(function()
      assert.close(gs.tensor({ { 1, 2 }, { 3, 4 } }), gs.tensor({ { 1, 2.5 }, { 3, 7 } }))
    end)
    assert.is_true(msg:find("2 of 4 elements mismatch", 1, true) ~= nil, msg)
    assert.is_true(msg:find("worst at [1, 1]: actual 4 vs expected 7 (abs err 3, rel err 0.428571429)", 1, true) ~= nil, msg)
  end)

  it("NaN never equals NaN unless equal_nan is set, and the message says how NaN compared", function()
    local a, b = gs.tensor({ 0 / 0, 1 }), gs.tensor({ 0 / 0, 1 })
    local msg = message_of(function() assert.close(a, b) end)
    assert.is_true(msg:find("NaN: 1 in actual, 1 in expected, 1 at the same index", 1, true) ~= nil, msg)
    assert.close(a, b, { equal_nan = true })
  end)

  it("NaN against a number fails even with equal_nan", function()
    local msg = message_of(function() assert.close(gs.tensor({ 0 / 0 }), 0, { equal_nan = true }) end)
    assert.is_true(msg:find("NaN: 1 in actual, 0 in expected", 1, true) ~= nil, msg)
  end)

  it("infinities match only infinities of the same sign", function()
    assert.close(gs.tensor({ math.huge, -math.huge }), gs.tensor({ math.huge, -math.huge }))
    local msg = message_of(function() assert.close(gs.tensor({ math.huge }), gs.tensor({ -math.huge })) end)
    assert.is_true(msg:find("actual inf vs expected -inf", 1, true) ~= nil, msg)
    message_of(function() assert.close(gs.tensor({ math.huge }), gs.tensor({ 3.4e38 })) end)
  end)

  it("shape mismatches and unknown options are errors", function()
    local msg = message_of(function() assert.close(gs.zeros({ 2, 3 }), gs.zeros({ 3, 2 })) end)
    assert.is_true(msg:find("shape mismatch: actual {2, 3} vs expected {3, 2}", 1, true) ~= nil, msg)
    msg = message_of(function() assert.close(1, 1, { rtoll = 1 }) end)
    assert.is_true(msg:find("unknown option 'rtoll'", 1, true) ~= nil, msg)
  end)

  -- docs/losses.md, section 11: below the smallest normal number of the
  -- output dtype a value has subnormal precision at best (GPUs and vector
  -- units flush it to 0), so two values both below it are equal.
  it("two values both below the dtype's smallest normal number are equal, whatever the tolerance", function()
    assert.equal(assert.smallest_normal, { f64 = 2.2250738585072014e-308, f32 = 2 ^ -126, bf16 = 2 ^ -126,
      f16 = 2 ^ -14, i32 = 0, i64 = 0 })
    local exact = { atol = 0, rtol = 0 }
    -- the f32 gradients of a property run (seed 1): 4e-42 apart
    assert.close(gs.tensor({ -1.12315894e-39 }), gs.tensor({ -1.12703072e-39 }), exact)
    assert.close(gs.tensor({ 0 }), gs.tensor({ -1.12103877e-44 }), exact)
    assert.close(gs.tensor({ 1e-39, -1e-39 }, { dtype = "bf16" }), gs.tensor({ 0, 1e-40 }, { dtype = "bf16" }), exact)
    assert.close(gs.tensor({ 3e-5 }, { dtype = "f16" }), gs.tensor({ -6e-5 }, { dtype = "f16" }), exact)
    assert.close(gs.tensor({ 1e-310 }, { dtype = "f64" }), gs.tensor({ -2e-309 }, { dtype = "f64" }), exact)
    -- against a plain number (f64) the coarser dtype, f32's, decides
    assert.close(gs.tensor({ 5e-39 }), 1e-39, exact)
    -- one side below, the other not: the tolerance decides
    local msg = message_of(function() assert.close(gs.tensor({ 1e-39 }), gs.tensor({ 2e-38 }), exact) end)
    assert.is_true(msg:find("1 of 1 elements mismatch", 1, true) ~= nil, msg)
  end)

  it("a value just above the smallest normal number is judged by the usual tolerance", function()
    local tiny = 2 ^ -126
    local a, b = gs.tensor({ tiny * 1.5 }), gs.tensor({ tiny * 1.25 })
    local msg = message_of(function() assert.close(a, b, { atol = 0 }) end)
    assert.is_true(msg:find("1 of 1 elements mismatch", 1, true) ~= nil, msg)
    assert.close(a, b, { atol = 0, rtol = 0.25 })
    assert.close(a, b) -- the default atol (1e-5) covers it, as before
    message_of(function() assert.close(gs.tensor({ 1e-5 }, { dtype = "f16" }), gs.tensor({ 7e-5 }, { dtype = "f16" }), { atol = 0 }) end)
    message_of(function() assert.close(gs.tensor({ 3e-308 }, { dtype = "f64" }), 1e-308, { atol = 0 }) end)
    message_of(function() assert.close(gs.tensor({ 1e-310 }, { dtype = "f64" }), 1e-300, { atol = 0 }) end)
  end)

  it("a number as expected is compared with every element", function()
    assert.close(gs.full({ 3, 3 }, 0.5), 0.5)
    message_of(function() assert.close(gs.tensor({ 0.5, 0.6 }), 0.5) end)
  end)
end)

describe("assert.all and friends", function()
  it("assert.all reports how many fail and the first one", function()
    assert.all(gs.tensor({ -1, 0, -3 }), "<=0")
    local msg = message_of(function() assert.all(gs.tensor({ { -1, 2 }, { 3, -4 } }), "<=0") end)
    assert.is_true(msg:find("assert.all(<=0): 2 of 4 elements fail; first at [0, 1] = 2", 1, true) ~= nil, msg)
  end)

  it("NaN fails every comparison condition", function()
    message_of(function() assert.all(gs.tensor({ 0 / 0 }), "<=0") end)
    message_of(function() assert.all(gs.tensor({ 0 / 0 }), ">=0") end)
    message_of(function() assert.finite(gs.tensor({ 1, 0 / 0 })) end)
    message_of(function() assert.in_range(gs.tensor({ 0 / 0 }), 0, 1) end)
  end)

  it("assert.finite names the first non-finite element", function()
    local msg = message_of(function() assert.finite(gs.tensor({ 1, 2, -math.huge })) end)
    assert.is_true(msg:find("first at [2] = -inf", 1, true) ~= nil, msg)
  end)

  it("assert.error checks that an error happened and what it says", function()
    assert.error(function() error("target[3] = 9 is outside [0, 5)") end, "target[3] = 9")
    local msg = message_of(function() assert.error(function() end, "boom") end)
    assert.is_true(msg:find("expected an error matching 'boom', but none was raised", 1, true) ~= nil, msg)
    msg = message_of(function() assert.error(function() error("bang") end, "boom") end)
    assert.is_true(msg:find("does not match 'boom'", 1, true) ~= nil, msg)
  end)

  it("assert.equal compares tables deeply and tensors exactly", function()
    assert.equal({ a = { 1, 2 } }, { a = { 1, 2 } })
    local msg = message_of(function() assert.equal({ a = { 1, 2 } }, { a = { 1, 3 } }) end)
    assert.is_true(msg:find("at key a: at key 2", 1, true) ~= nil, msg)
    message_of(function() assert.equal(gs.tensor({ 0 / 0 }), gs.tensor({ 0 / 0 })) end)
  end)

  it("the assert table is still callable like Lua's assert", function()
    assert(true, "fine")
    local msg = message_of(function() assert(false, "custom message") end)
    assert.is_true(msg:find("custom message", 1, true) ~= nil, msg)
  end)
end)
