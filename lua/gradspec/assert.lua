-- Assertions that explain their failures. Each call counts towards the
-- running `it` (an `it` that asserts nothing fails) and marks the tensors it
-- read as asserted (see track.lua).
local T = require("gradspec.tensor")
local dtypes = require("gradspec.dtype")
local track = require("gradspec.track")
local capture = require("gradspec.html.capture")

local A = {}

local count = 0
function A.reset_count() count = 0 end
function A.get_count() return count end
-- For checks that live outside this module (gradcheck, property) and count
-- as one assertion each.
function A.count_one() count = count + 1 end

-- Notes for the report of the running `it`: a check that was skipped for
-- one backend while others were checked ("mine: no label_smoothing").
local notes = {}
function A.note(text) notes[#notes + 1] = text end
function A.take_notes()
  local out = notes
  notes = {}
  return out
end

-- Set by `gradspec mutate` only: a broken assert.close that lets NaN == NaN
-- pass, to prove the suite notices.
A.mutant_nan_passes = (os.getenv("GRADSPEC_MUTANT") or ""):match("^assert_nan") ~= nil

local function fail(msg) error(msg, 3) end

local function fmt(x)
  if type(x) ~= "number" then return tostring(x) end
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  return string.format("%.9g", x)
end

-- Enough digits to tell x from y when the short form would print them alike.
local function fmt_pair(x, y)
  if fmt(x) == fmt(y) and x ~= y and type(x) == "number" then return string.format("%.17g", x) end
  return fmt(x)
end

local function as_tensor(x, what)
  if T.is_tensor(x) then return x end
  if type(x) == "number" then return T.tensor(x, { dtype = "f64" }) end
  fail(string.format("%s must be a tensor or a number, got %s", what, type(x)))
end

local function index_string(t, k)
  if t:dim() == 2 then return string.format("[%d, %d]", math.floor(k / t.cols), k % t.cols) end
  if t:dim() == 1 then return string.format("[%d]", k) end
  return "[]"
end

-- Default tolerances by dtype, those of PyTorch's assert_close.
A.tolerances = {
  f64 = { rtol = 1e-7, atol = 1e-7 },
  f32 = { rtol = 1.3e-6, atol = 1e-5 },
  bf16 = { rtol = 1.6e-2, atol = 1e-5 },
  f16 = { rtol = 1e-3, atol = 1e-5 },
  i32 = { rtol = 0, atol = 0 },
  i64 = { rtol = 0, atol = 0 },
}

-- The smallest normal number of each dtype (integers have none). Below it a
-- value carries only subnormal precision, or is flushed to zero by GPUs and
-- vector units: docs/losses.md (section 11) counts two values that both lie
-- below it as equal.
A.smallest_normal = {
  f64 = 2.2250738585072014e-308,
  f32 = 2 ^ -126,
  bf16 = 2 ^ -126,
  f16 = 2 ^ -14,
  i32 = 0,
  i64 = 0,
}

-- The threshold for two tensors: the coarser dtype's.
local function subnormal_bound(a, b)
  return math.max(A.smallest_normal[a.dtype] or 0, A.smallest_normal[b.dtype] or 0)
end

-- The looser of the two dtypes' tolerances.
local function default_tol(a, b)
  local ta, tb = A.tolerances[a.dtype], A.tolerances[b.dtype]
  return math.max(ta.rtol, tb.rtol), math.max(ta.atol, tb.atol)
end

local close_opts = { rtol = true, atol = true, equal_nan = true, msg = true }

-- assert.close(actual, expected, {rtol, atol, equal_nan, msg}): elementwise
-- |a - e| <= atol + rtol * |e|. expected may be a number (compared with every
-- element) or a tensor of the same shape. inf must match inf of the same
-- sign; NaN matches NaN only with equal_nan = true. Two values that both lie
-- below the smallest normal number of the coarser of the two dtypes
-- (A.smallest_normal) are equal, whatever the tolerance.
function A.close(actual, expected, opts)
  count = count + 1
  opts = opts or {}
  for k in pairs(opts) do
    if not close_opts[k] then fail("assert.close: unknown option '" .. tostring(k) .. "'") end
  end
  local a = as_tensor(actual, "assert.close: actual")
  local e = as_tensor(expected, "assert.close: expected")
  track.mark(actual)
  track.mark(expected)
  -- A number or 0-D expected is compared with every element.
  local scalar_e = e:numel() == 1 and (e:dim() == 0 or a:numel() ~= 1)
  if not scalar_e and (a.rows ~= e.rows or a.cols ~= e.cols or a:dim() ~= e:dim()) then
    fail(string.format("assert.close: shape mismatch: actual %s vs expected %s", T.shape_string(a), T.shape_string(e)))
  end
  local rtol0, atol0 = default_tol(a, e)
  local tiny = subnormal_bound(a, e)
  local rtol, atol = opts.rtol or rtol0, opts.atol or atol0
  local equal_nan = opts.equal_nan or A.mutant_nan_passes
  local av, ev = a:to({ dtype = "f64", device = "cpu" }):contiguous(), e:to({ dtype = "f64", device = "cpu" }):contiguous()
  local pa, pe = av:ptr(), ev:ptr()
  local n = a:numel()
  local bad, worst_k, worst_abs, worst_rel = 0, nil, -1, 0
  local nan_a, nan_e, nan_both = 0, 0, 0
  local e0 = scalar_e and pe[0] or nil
  for k = 0, n - 1 do
    local x, y = pa[k], e0 or pe[k]
    local ok
    if x ~= x or y ~= y then
      if x ~= x then nan_a = nan_a + 1 end
      if y ~= y then nan_e = nan_e + 1 end
      ok = (x ~= x and y ~= y) and equal_nan
      if x ~= x and y ~= y then nan_both = nan_both + 1 end
    elseif x == y then
      ok = true -- covers equal infinities
    elseif x == math.huge or x == -math.huge or y == math.huge or y == -math.huge then
      ok = false -- rtol * |inf| would otherwise accept any value
    elseif math.abs(x) < tiny and math.abs(y) < tiny then
      ok = true -- both subnormal (or zero) in the output dtype
    else
      local d = math.abs(x - y)
      ok = d <= atol + rtol * math.abs(y)
    end
    if not ok then
      bad = bad + 1
      local d = math.abs(x - y)
      if d ~= d then d = math.huge end
      if worst_k == nil or d > worst_abs then
        worst_k, worst_abs = k, d
        worst_rel = y ~= 0 and d / math.abs(y) or math.huge
      end
    end
  end
  -- for gradspec run --html only: the data its pictures are drawn from
  if capture.mode then
    capture.comparison({ kind = "assert.close", label = opts.msg and tostring(opts.msg):match("[^\n]*") or "assert.close",
      failed = bad > 0, actual = pa, expected = pe, scalar = e0, n = n, rows = a.rows, cols = a.cols, dim = a:dim(),
      rtol = rtol, atol = atol, tiny = tiny, equal_nan = equal_nan, adtype = a.dtype, edtype = e.dtype })
  end
  if bad == 0 then return true end
  local wx, wy = pa[worst_k], e0 or pe[worst_k]
  local lines = {
    string.format("assert.close: %d of %d elements mismatch (rtol=%g, atol=%g; actual %s, expected %s)",
      bad, n, rtol, atol, a.dtype, e.dtype),
    string.format("  worst at %s: actual %s vs expected %s (abs err %s, rel err %s)",
      index_string(a, worst_k), fmt_pair(wx, wy), fmt_pair(wy, wx), fmt(worst_abs), fmt(worst_rel)),
  }
  if nan_a + nan_e > 0 then
    lines[#lines + 1] = string.format("  NaN: %d in actual, %d in expected, %d at the same index (%s)",
      nan_a, nan_e, nan_both, equal_nan and "equal_nan: NaN == NaN" or "NaN never equals NaN; pass equal_nan = true to allow it")
  end
  if opts.msg then table.insert(lines, 1, opts.msg) end
  fail(table.concat(lines, "\n"))
end

-- Deep equality for numbers, strings, booleans and tables; exact elementwise
-- equality for tensors (NaN is never equal).
local function deep_equal(a, b, seen)
  -- a one-element tensor against a number compares its value
  if T.is_tensor(a) and type(b) == "number" and a:numel() == 1 then return a:item() == b end
  if T.is_tensor(b) and type(a) == "number" and b:numel() == 1 then return b:item() == a end
  if T.is_tensor(a) or T.is_tensor(b) then
    if not (T.is_tensor(a) and T.is_tensor(b)) then return false, "a tensor compared with a " .. type(T.is_tensor(a) and b or a) end
    if a.rows ~= b.rows or a.cols ~= b.cols then return false, "shapes " .. T.shape_string(a) .. " and " .. T.shape_string(b) end
    local ta, tb = a:totable(), b:totable()
    if a:dim() < 2 then ta, tb = { ta }, { tb } end
    for r = 1, #ta do
      local ra, rb = ta[r], tb[r]
      if type(ra) ~= "table" then ra, rb = { ra }, { rb } end
      for c = 1, #ra do
        if ra[c] ~= rb[c] then
          return false, string.format("at %s: %s vs %s", a:dim() == 2 and ("[" .. (r - 1) .. ", " .. (c - 1) .. "]") or ("[" .. (c - 1) .. "]"), fmt(ra[c]), fmt(rb[c]))
        end
      end
    end
    return true
  end
  if type(a) ~= type(b) then return false, type(a) .. " vs " .. type(b) end
  if type(a) ~= "table" then return a == b, nil end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    local ok, why = deep_equal(v, b[k], seen)
    if not ok then return false, "at key " .. tostring(k) .. ": " .. (why or (tostring(v) .. " vs " .. tostring(b[k]))) end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, "key " .. tostring(k) .. " only in expected" end
  end
  return true
end

function A.equal(actual, expected, msg)
  count = count + 1
  track.mark(actual)
  track.mark(expected)
  local ok, why = deep_equal(actual, expected)
  if ok then return true end
  local text = string.format("assert.equal: expected %s, got %s", fmt(expected), fmt(actual))
  if T.is_tensor(actual) or type(actual) == "table" then text = "assert.equal: values differ" end
  if why and why ~= "" then text = text .. " (" .. why .. ")" end
  if msg then text = msg .. "\n" .. text end
  fail(text)
end

function A.is_true(x, msg)
  count = count + 1
  if x == true then return true end
  fail((msg and (msg .. ": ") or "") .. "assert.is_true: got " .. fmt(x))
end

function A.is_false(x, msg)
  count = count + 1
  if x == false then return true end
  fail((msg and (msg .. ": ") or "") .. "assert.is_false: got " .. fmt(x))
end

-- assert.error(fn, pattern): fn must raise an error whose message contains
-- pattern (as plain text, or as a Lua pattern).
function A.error(fn, pattern)
  count = count + 1
  if type(fn) ~= "function" then fail("assert.error: first argument must be a function, got " .. type(fn)) end
  local ok, err = pcall(fn)
  if ok then
    fail("assert.error: expected an error" .. (pattern and (" matching '" .. pattern .. "'") or "") .. ", but none was raised")
  end
  if pattern == nil then return tostring(err) end
  local msg = tostring(err)
  if msg:find(pattern, 1, true) then return msg end
  local pok, found = pcall(string.find, msg, pattern)
  if pok and found then return msg end
  fail(string.format("assert.error: the error message does not match '%s':\n  %s", pattern, msg))
end

-- Conditions for assert.all: "<=0", ">= -1e-6", "==0", "finite", "nan",
-- or a function of the value.
local comparators = {
  ["<="] = function(x, y) return x <= y end, [">="] = function(x, y) return x >= y end,
  ["<"] = function(x, y) return x < y end, [">"] = function(x, y) return x > y end,
  ["=="] = function(x, y) return x == y end, ["~="] = function(x, y) return x ~= y end,
}

local function parse_condition(cond)
  if type(cond) == "function" then return cond, "the predicate" end
  if cond == "finite" then return function(x) return x == x and x ~= math.huge and x ~= -math.huge end, "finite" end
  if cond == "nan" then return function(x) return x ~= x end, "NaN" end
  if type(cond) == "string" then
    local op, num = cond:match("^%s*([<>=~]=?)%s*(%S+)%s*$")
    local y = tonumber(num)
    if op and comparators[op] and y then
      local f = comparators[op]
      return function(x) return f(x, y) end, cond
    end
  end
  fail("assert.all: condition must be like '<=0', '>= -1e-6', 'finite', 'nan' or a function, got " .. tostring(cond))
end

function A.all(t, cond, msg)
  count = count + 1
  local x = as_tensor(t, "assert.all: value")
  track.mark(t)
  local pred, desc = parse_condition(cond)
  local h = x:to({ dtype = "f64", device = "cpu" }):contiguous()
  local p = h:ptr()
  local bad, first = 0, nil
  for k = 0, x:numel() - 1 do
    if not pred(p[k]) then
      bad = bad + 1
      first = first or k
    end
  end
  if bad == 0 then return true end
  fail(string.format("%sassert.all(%s): %d of %d elements fail; first at %s = %s",
    msg and (msg .. "\n") or "", desc, bad, x:numel(), index_string(x, first), fmt(p[first])))
end

function A.finite(t, msg) return A.all(t, "finite", msg) end

-- Every element in [lo, hi] (NaN fails).
function A.in_range(t, lo, hi, msg)
  return A.all(t, function(x) return x >= lo and x <= hi end, msg or string.format("values must lie in [%s, %s]", fmt(lo), fmt(hi)))
end

function A.fail(msg)
  count = count + 1
  fail(msg or "assert.fail")
end

return A
