-- The tensor wrapper: construction, indexing, views, conversions, printing,
-- the seeded generator and the f64 helpers specs rely on.

describe("tensor construction", function()
  it("builds 2-D tensors from nested tables with 0-based indexing", function()
    local t = gs.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    assert.equal(t:shape(), { 2, 3 })
    assert.equal(t.dtype, "f32")
    assert.equal(t.device, "cpu")
    assert.equal(t:get(0, 0), 1)
    assert.equal(t:get(1, 2), 6)
  end)

  it("rejects ragged rows, naming the row", function()
    assert.error(function() gs.tensor({ { 1, 2 }, { 3 } }) end, "row 2 has 1 elements, row 1 has 2")
  end)

  it("rejects non-numbers, naming the element", function()
    assert.error(function() gs.tensor({ 1, "x" }) end, "element [2] is x")
  end)

  it("zeros, ones, full and arange fill as asked", function()
    assert.equal(gs.zeros({ 2, 2 }):totable(), { { 0, 0 }, { 0, 0 } })
    assert.equal(gs.ones(3, { dtype = "i32" }):totable(), { 1, 1, 1 })
    assert.equal(gs.full({ 1, 2 }, -2.5, { dtype = "f64" }):totable(), { { -2.5, -2.5 } })
    assert.equal(gs.arange(4):totable(), { 0, 1, 2, 3 })
    assert.equal(gs.arange(1, 2, 0.25, { dtype = "f64" }):totable(), { 1, 1.25, 1.5, 1.75 })
  end)

  it("scalars are 0-D and item() reads them", function()
    local s = gs.tensor(3.5, { dtype = "f64" })
    assert.equal(s:dim(), 0)
    assert.equal(s:item(), 3.5)
    assert.error(function() gs.zeros(3):item() end, "item() needs exactly one")
  end)

  it("unknown dtypes and devices are errors that list the valid ones", function()
    assert.error(function() gs.zeros(2, { dtype = "f8" }) end, "unknown dtype f8")
    assert.error(function() gs.zeros(2, { device = "tpu" }) end, "unknown device tpu")
    assert.error(function() gs.zeros({ 2, -1 }) end, "shape[2] = -1")
  end)
end)

describe("tensor sizes are checked before anything is allocated", function()
  -- Each product of sizes, stride and element size is checked: one that
  -- would wrap around in C (2^61 f64 elements are 2^64 bytes, 0 after the
  -- wrap) is an error naming the function and the shape, never a tiny
  -- buffer that the next write overruns.
  local huge = 2 ^ 61
  local cases = {
    { "2^61 f64 elements", function() gs.zeros({ huge }, { dtype = "f64" }) end,
      "zeros: shape {2305843009213693952} of f64 needs 1.845e+19 bytes" },
    { "2^31 x 2^31", function() gs.zeros({ 2 ^ 31, 2 ^ 31 }) end,
      "zeros: shape {2147483648, 2147483648} of f32 needs 1.845e+19 bytes" },
    { "an infinite size", function() gs.zeros({ math.huge }) end,
      "zeros: shape {inf}: shape[1] = inf is not a non-negative integer" },
    { "a negative size", function() gs.zeros({ -1 }) end,
      "zeros: shape {-1}: shape[1] = -1 is not a non-negative integer" },
    { "a fractional size", function() gs.zeros({ 2.5 }) end,
      "zeros: shape {2.5}: shape[1] = 2.5 is not a non-negative integer" },
    { "a NaN size", function() gs.zeros({ 3, 0 / 0 }) end,
      "zeros: shape {3, nan}: shape[2] = nan is not a non-negative integer" },
    { "a size that is not a number", function() gs.zeros({ "4" }) end,
      'zeros: shape {"4"}: shape[1] = "4" is not a non-negative integer' },
    { "three sizes", function() gs.zeros({ 2, 3, 4 }) end, "zeros: shape {2, 3, 4} has 3 sizes" },
    { "a table with holes", function() gs.zeros({ [1] = 2, [3] = 4 }) end, "zeros: shape must be a list of sizes" },
    { "a stride smaller than the width", function() gs.zeros({ 2, 3 }, { stride = 2 }) end,
      "zeros: stride = 2 is smaller than the row length 3 of shape {2, 3}" },
    { "a fractional stride", function() gs.zeros({ 2, 3 }, { stride = 3.5 }) end,
      "zeros: stride = 3.5 for shape {2, 3} is not an integer" },
    { "a NaN stride", function() gs.zeros({ 2, 3 }, { stride = 0 / 0 }) end,
      "zeros: stride = nan for shape {2, 3} is not an integer" },
    { "a stride whose span overflows", function() gs.zeros({ 2 ^ 20, 3 }, { stride = 2 ^ 50 }) end,
      "zeros: shape {1048576, 3} with stride 1125899906842624 of f32 needs" },
    { "full with a huge count", function() gs.full({ 2 ^ 62 }, 1) end, "full: shape {4611686018427387904} of f32" },
    { "full with a value that is not a number", function() gs.full({ 2 }, "1") end, 'full: value "1" is not a number' },
    { "ones with a negative size", function() gs.ones({ 2, -3 }) end, "ones: shape {2, -3}: shape[2] = -3" },
    { "empty with a huge count", function() gs.empty({ 2 ^ 40, 2 ^ 40 }) end, "empty: shape {1099511627776, 1099511627776}" },
    { "randn with a huge count", function() gs.randn({ 2 ^ 62 }) end, "randn: shape {4611686018427387904} of f32" },
    { "rand with a NaN size", function() gs.rand({ 0 / 0 }) end, "rand: shape {nan}: shape[1] = nan" },
    { "randint with a fractional size", function() gs.randint(0, 5, { 2.5 }) end, "randint: shape {2.5}" },
    { "randint with a NaN bound", function() gs.randint(0, 0 / 0, { 2 }) end, "randint: high = nan is not a finite number" },
    { "randn with a std that is not a number", function() gs.randn({ 2 }, { std = "1" }) end,
      'randn: std = "1" is not a finite number' },
    { "a fractional seed", function() gs.randn({ 2 }, { seed = 1.5 }) end, "randn: seed = 1.5 is not an integer" },
    { "arange with a huge count", function() gs.arange(2 ^ 62) end,
      "arange: 4.612e+18 elements from 0 to 4611686018427387904 by 1 are more than a tensor can hold" },
    { "arange to infinity", function() gs.arange(0, math.huge) end, "arange: stop = inf is not a finite number" },
    { "arange with a NaN step", function() gs.arange(0, 4, 0 / 0) end, "arange: step = nan is not a finite number" },
    { "tensor with a bad stride", function() gs.tensor({ { 1, 2 } }, { stride = 1 }) end,
      "tensor: stride = 1 is smaller than the row length 2 of shape {1, 2}" },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. " is an error naming the shape", function()
      assert.error(c[2], c[3])
    end)
  end

  it("an allocation too large for memory is an error, not a crash", function()
    -- 2^50 bytes: under the 2^53 limit, far over any machine's memory and
    -- the 2^47 bytes of user address space of x86-64 and arm64.
    assert.error(function() gs.zeros({ 2 ^ 48 }) end,
      "zeros: out of host memory allocating 1125899906842624 bytes for shape {281474976710656}")
    assert.error(function() gs.zeros({ 2 ^ 24, 2 ^ 24 }, { dtype = "bf16" }) end,
      "zeros: out of host memory allocating 562949953421312 bytes for shape {16777216, 16777216}")
  end)

  it("a large buffer comes zeroed, and the byte count goes back to where it was", function()
    local C = require("gradspec.ffi").C
    collectgarbage()
    collectgarbage()
    local before = tonumber(C.gs_host_bytes_in_use())
    do
      local big = gs.zeros({ 1024, 1024 }, { dtype = "f64", stride = 1030 })
      assert.equal(tonumber(C.gs_host_bytes_in_use()) - before, ((1024 - 1) * 1030 + 1024) * 8)
      assert.equal(big:get(1023, 1023), 0)
      assert.equal(big:sum():item(), 0)
      big:set(1023, 1023, 5)
      assert.equal(big:get(1023, 1023), 5)
    end
    collectgarbage()
    collectgarbage()
    assert.equal(tonumber(C.gs_host_bytes_in_use()), before)
  end)

  it("sizes up to the limit still work: 0-sized, empty rows, a wide stride", function()
    assert.equal(gs.zeros({ 0, 2 ^ 40 }):numel(), 0)
    assert.equal(gs.zeros({ 2 ^ 40, 0 }):numel(), 0)
    assert.equal(gs.zeros({ 1, 3 }, { stride = 2 ^ 40 }):sum():item(), 0)
    assert.equal(gs.arange(0):numel(), 0)
    assert.equal(gs.arange(5, 0):numel(), 0)
  end)
end)

describe("tensor indexing", function()
  it("bounds checks name the dim and the valid range", function()
    local t = gs.zeros({ 2, 3 })
    assert.error(function() t:get(2, 0) end, "index 2 is outside [0, 2) for dim 0")
    assert.error(function() t:get(0, 3) end, "index 3 is outside [0, 3) for dim 1")
    assert.error(function() t:get(-1, 0) end, "index -1 is outside")
    assert.error(function() t:get(0) end, "needs two indices")
    assert.error(function() gs.zeros(4):set(4, 1) end, "index 4 is outside [0, 4)")
  end)

  it("fractional, NaN and non-number indices are errors naming the index, never a read elsewhere", function()
    local t = gs.zeros({ 4, 4 })
    local cases = {
      { function() t:get(0.5, 0) end, "index 0.5 is not an integer (for dim 0 of shape {4, 4})" },
      { function() t:get(0, 0 / 0) end, "index nan is not an integer (for dim 1 of shape {4, 4})" },
      { function() t:set(1.5, 0, 1) end, "index 1.5 is not an integer (for dim 0 of shape {4, 4})" },
      { function() t:at(0, 2.25) end, "index 2.25 is not an integer (for dim 1 of shape {4, 4})" },
      { function() gs.zeros(4):get(0 / 0) end, "index nan is not an integer (for shape {4})" },
      { function() gs.zeros(4):get("1") end, 'index "1" is not an integer (for shape {4})' },
      { function() t:row(0.5) end, "row 0.5 is not an integer (shape {4, 4})" },
      { function() t:row(0 / 0) end, "row nan is not an integer (shape {4, 4})" },
      { function() t:row(4) end, "row 4 is outside [0, 4) (shape {4, 4})" },
      { function() t:rows_view(0.5, 1) end, "rows_view: first = 0.5 is not an integer (shape {4, 4})" },
      { function() t:rows_view(0, 0 / 0) end, "rows_view: count = nan is not an integer (shape {4, 4})" },
      { function() t:rows_view(2, 3) end, "rows_view: rows [2, 5) are outside [0, 4) (shape {4, 4})" },
      { function() t:cols_view(0 / 0, 1) end, "cols_view: first = nan is not an integer (shape {4, 4})" },
      { function() t:cols_view(1, 1.5) end, "cols_view: count = 1.5 is not an integer (shape {4, 4})" },
      { function() t:cols_view(-1, 2) end, "cols_view: columns [-1, 1) are outside [0, 4) (shape {4, 4})" },
      { function() t:fill("x") end, 'fill: value "x" is not a number' },
    }
    for _, c in ipairs(cases) do assert.error(c[1], c[2]) end
  end)

  it("set writes one element and returns the tensor", function()
    local t = gs.zeros({ 2, 2 }, { dtype = "f64" })
    t:set(1, 0, 7):set(0, 1, -1)
    assert.equal(t:totable(), { { 0, -1 }, { 7, 0 } })
  end)

  it("row views share storage with their parent", function()
    local t = gs.zeros({ 3, 4 })
    local r = t:row(1)
    r:set(2, 9)
    assert.equal(t:get(1, 2), 9)
    assert.equal(r:shape(), { 4 })
  end)

  it("strided tensors keep their padding out of every value", function()
    local t = gs.full({ 2, 3 }, 1, { stride = 5 })
    assert.equal(t.stride, 5)
    assert.is_false(t:is_contiguous())
    assert.equal(t:sum():item(), 6)
    local c = t:contiguous()
    assert.is_true(c:is_contiguous())
    assert.equal(c:totable(), t:totable())
  end)

  it("column views are non-contiguous windows of the same rows", function()
    local t = gs.tensor({ { 1, 2, 3, 4 }, { 5, 6, 7, 8 } })
    local v = t:cols_view(1, 2)
    assert.equal(v:totable(), { { 2, 3 }, { 6, 7 } })
    assert.equal(v.stride, 4)
    assert.error(function() t:cols_view(3, 2) end, "columns [3, 5) are outside [0, 4)")
  end)
end)

describe("dtype conversion", function()
  it("bf16 rounds to nearest even", function()
    -- 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to even (1).
    local t = gs.tensor({ 1 + 2 ^ -8, 1 + 3 * 2 ^ -8, 1 + 2 ^ -9 }, { dtype = "f64" }):to("bf16")
    assert.equal(t:totable(), { 1, 1 + 2 ^ -6, 1 })
  end)

  it("f16 rounds to nearest even and overflows to inf", function()
    local t = gs.tensor({ 1 + 2 ^ -11, 1 + 3 * 2 ^ -11, 65504, 65520, 2 ^ -24, 2 ^ -26 }, { dtype = "f64" }):to("f16")
    assert.equal(t:totable(), { 1, 1 + 2 ^ -9, 65504, math.huge, 2 ^ -24, 0 })
  end)

  for _, dt in ipairs({ "bf16", "f16", "f32" }) do
    it(dt .. " keeps NaN, infinities and signed zero", function()
      local t = gs.tensor({ 0 / 0, math.huge, -math.huge, -0.0 }, { dtype = "f64" }):to(dt):to("f64")
      local v = t:totable()
      assert.is_true(v[1] ~= v[1], "NaN survives")
      assert.equal(v[2], math.huge)
      assert.equal(v[3], -math.huge)
      assert.equal(1 / v[4], -math.huge, "negative zero keeps its sign")
    end)
  end

  it("to() converts, keeps shape and leaves the source untouched", function()
    local a = gs.tensor({ { 1.5, -2 } }, { dtype = "f64" })
    local b = a:to("i32")
    assert.equal(b.dtype, "i32")
    assert.equal(b:totable(), { { 1, -2 } })
    assert.equal(a.dtype, "f64")
    assert.error(function() a:to("gpu") end, "neither a dtype")
  end)

  it("cuda tensors need a device", function()
    skip_if(gs.cuda_available(), "a CUDA device is present: this checks the no-device error")
    assert.error(function() gs.zeros(3, { device = "cuda" }) end, "cannot allocate on cuda")
  end)

  it("a CUDA build without a GPU says in plain words that no CUDA device was found", function()
    local C = require("gradspec.ffi").C
    skip_if(C.gs_cuda_built() == 0, "gradspec was built without CUDA: there is no CUDA runtime to ask")
    skip_if(gs.cuda_available(), "a CUDA device is present: this checks the no-device reason")
    local reason = gs.cuda_unavailable_reason()
    assert.is_true(reason:find("no CUDA device", 1, true) == 1, "the reason starts otherwise: " .. reason)
    -- the plain words come first, CUDA's own text follows in the parentheses
    assert.is_true(reason:match("^no CUDA device found %(.+: .+%)$") ~= nil, reason)
    assert.error(function() gs.zeros(3, { device = "cuda" }) end,
      "zeros: cannot allocate on cuda 12 bytes for shape {3}: " .. reason)
  end)
end)

describe("seeded random tensors", function()
  it("the same seed gives the same values, a different seed different ones", function()
    local a = gs.randn({ 4, 5 }, { seed = 42 })
    local b = gs.randn({ 4, 5 }, { seed = 42 })
    local c = gs.randn({ 4, 5 }, { seed = 43 })
    assert.equal(a, b)
    assert.is_true(a:sub(c):abs():max():item() > 0)
  end)

  it("values do not depend on the row stride or dtype width", function()
    local a = gs.randn({ 3, 4 }, { seed = 7, dtype = "f64" })
    local b = gs.randn({ 3, 4 }, { seed = 7, dtype = "f64", stride = 9 })
    assert.equal(a:totable(), b:contiguous():totable())
  end)

  it("known values pin the generator across machines", function()
    local u = gs.rand({ 3 }, { seed = 1, dtype = "f64" })
    local again = gs.rand({ 3 }, { seed = 1, dtype = "f64" })
    assert.equal(u, again)
    assert.in_range(u, 0, 1)
    -- randint covers its range and stays inside it
    local r = gs.randint(0, 5, { 2000 }, { seed = 3 })
    assert.in_range(r, 0, 4)
    assert.equal(r:min():item(), 0)
    assert.equal(r:max():item(), 4)
  end)

  it("normal samples have about the asked mean and spread", function()
    local x = gs.randn({ 20000 }, { seed = 5, mean = 2, std = 3, dtype = "f64" })
    local m = x:mean():item()
    local var = x:sub(m):mul(x:sub(m)):mean():item()
    assert.close(m, 2, { atol = 0.1 })
    assert.close(math.sqrt(var), 3, { atol = 0.1 })
  end)

  it("calls without a seed follow the run's --seed", function()
    gs.set_seed(99)
    local a = gs.randn(5)
    gs.set_seed(99)
    local b = gs.randn(5)
    local c = gs.randn(5)
    assert.equal(a, b)
    assert.is_true(b:sub(c):abs():sum():item() > 0)
  end)
end)

describe("f64 helpers", function()
  it("softmax rows sum to one and log_softmax matches its log", function()
    local x = gs.tensor({ { 1, 2, 3 }, { 1000, 1000, -1000 } })
    assert.close(x:softmax():sum(1), 1, { rtol = 0, atol = 1e-15 })
    assert.close(x:log_softmax():row(0), x:softmax():log():row(0), { atol = 1e-12 })
    -- where softmax underflows to 0, log_softmax stays finite
    assert.close(x:log_softmax():get(1, 2), -2000 - math.log(2), { rtol = 1e-15 })
    assert.close(x:softmax():row(1), gs.tensor({ 0.5, 0.5, 0 }, { dtype = "f64" }))
  end)

  it("reductions work over everything and along each dim", function()
    local x = gs.tensor({ { 1, -2 }, { 3, 4 } })
    assert.equal(x:sum():item(), 6)
    assert.equal(x:sum(1):totable(), { -1, 7 })
    assert.equal(x:sum(0):totable(), { 4, 2 })
    assert.equal(x:max():item(), 4)
    assert.equal(x:min(1):totable(), { -2, 3 })
    assert.equal(x:abs():totable(), { { 1, 2 }, { 3, 4 } })
  end)

  it("max propagates NaN instead of hiding it", function()
    local x = gs.tensor({ 1, 0 / 0, 3 })
    assert.all(x:max(), "nan")
  end)

  it("comparisons give masks and all/any read them", function()
    local x = gs.tensor({ -1, 0, 2 })
    assert.equal(x:le(0):totable(), { 1, 1, 0 })
    assert.is_false(x:le(0):all())
    assert.is_true(x:gt(1):any())
  end)

  it("one_hot and gather_rows use 0-based class indices", function()
    local t = gs.tensor({ 2, 0 }, { dtype = "i64" })
    assert.equal(gs.one_hot(t, 3):totable(), { { 0, 0, 1 }, { 1, 0, 0 } })
    local x = gs.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    assert.equal(x:gather_rows(t):totable(), { 3, 4 })
  end)

  it("matmul multiplies in f64", function()
    local a = gs.tensor({ { 1, 2 }, { 3, 4 } })
    local b = gs.tensor({ { 5 }, { 6 } })
    assert.equal(a:matmul(b):totable(), { { 17 }, { 39 } })
    assert.equal(a:t():totable(), { { 1, 3 }, { 2, 4 } })
  end)
end)

describe("printing", function()
  it("shows values, shape, dtype and device", function()
    local s = tostring(gs.tensor({ { 1.5, -2 } }))
    assert.is_true(s:find("[[ 1.5000, -2.0000]]", 1, true) ~= nil, s)
    assert.is_true(s:find("shape={1, 2}, dtype=f32, device=cpu", 1, true) ~= nil, s)
  end)

  it("elides the middle of big tensors", function()
    local s = tostring(gs.arange(5000))
    assert.is_true(s:find("...", 1, true) ~= nil, s)
    assert.is_true(#s < 200, "printed " .. #s .. " characters")
  end)

  it("prints nan and inf by name", function()
    local s = tostring(gs.tensor({ 0 / 0, math.huge, -math.huge }))
    assert.is_true(s:find("nan", 1, true) and s:find("-inf", 1, true) and true or false, s)
  end)
end)

describe("memory", function()
  it("host buffers are freed when their tensors are collected", function()
    local C = require("gradspec.ffi").C
    collectgarbage()
    collectgarbage()
    local before = tonumber(C.gs_host_bytes_in_use())
    do
      local big = gs.zeros({ 256, 1024 })
      local view = big:row(3)
      assert.equal(view:numel(), 1024)
    end
    collectgarbage()
    collectgarbage()
    assert.equal(tonumber(C.gs_host_bytes_in_use()), before)
  end)
end)
